"""The retry schedule: full jitter within a doubling, capped window; never before Retry-After."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service import httpretry as backoff

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


class _Top(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


def test_window_doubles_then_caps() -> None:
    top = _Top()
    assert [backoff.next_delay(n, rng=top) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff.next_delay(9, rng=top) == 300.0
    assert backoff.next_delay(500, rng=top) == 300.0


def test_retry_after_is_a_floor_even_above_the_cap() -> None:
    assert backoff.next_delay(1, retry_after=30, rng=random.Random(1)) == 30
    assert backoff.next_delay(20, retry_after=900, rng=random.Random(1)) == 900


def test_attempt_counts_from_one() -> None:
    with pytest.raises(ValueError):
        backoff.next_delay(0)


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    retry_after=st.none() | st.floats(min_value=0, max_value=10_000),
    seed=st.integers(),
)
def test_delay_bounds(attempt: int, retry_after: float | None, seed: int) -> None:
    d = backoff.next_delay(attempt, retry_after=retry_after, rng=random.Random(seed))
    assert d >= 0
    assert d <= max(300.0, retry_after or 0)
    if retry_after is not None:
        assert d >= retry_after


def test_full_jitter_spreads_over_the_window() -> None:
    rng = random.Random(7)
    ds = [backoff.next_delay(5, rng=rng) for _ in range(2000)]
    assert min(ds) < 3 and max(ds) > 29  # window is [0, 32)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("Sat, 28 Nov 2026 12:01:30 GMT", 90.0),
        ("Sat, 28 Nov 2026 11:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("-3", None),
        ("²", None),  # a superscript digit: isdigit() but not a number
        ("1²", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert backoff.parse_retry_after(value, now=NOW) == expected
