"""The verifier's work is bounded for any input (security review H1, L1).

Bounds are asserted as work counts and sizes; one generous wall-clock guard catches only
unbounded work (the poison graph with 8 nodes took 48 s of CPU before the limits).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyld import jsonld
from sqlalchemy import Engine

from service import jws
from service.db.engine import session
from service.issuer import canon, contexts, dataintegrity, limits, service, verify
from service.settings import Settings
from tests.issuer import hostile, samples

LOADER = contexts.loader_for("https://tool.test")
OFFLINE = verify.Resolver(keyring=None, status_list=lambda url: None)
NOW = samples.NOW


def _plain(doc: dict[str, Any]) -> str:
    nquads: str = jsonld.normalize(
        doc, {"algorithm": "URDNA2015", "format": "application/n-quads", "documentLoader": LOADER}
    )
    return nquads


def _work(doc: dict[str, Any], bounds: limits.Limits = limits.DEFAULT) -> limits.Work:
    work = limits.Work()
    canon.canonicalize(dataintegrity.unsecured(doc), LOADER, bounds=bounds, work=work)
    return work


def _failed(report: Any, name: str) -> str:
    return next(c.detail for c in report.checks if c.name == name and not c.ok)


def test_the_poison_graph_is_invalid_after_bounded_work() -> None:
    doc = hostile.poison_graph(8)
    assert len(json.dumps(doc)) < 3000  # the review's 2 KB credential
    started = time.monotonic()
    report = verify.verify(json.dumps(doc), resolver=OFFLINE, now=NOW)
    # generous: the unbounded algorithm needs about 48 s here, the bounded one milliseconds
    assert time.monotonic() - started < 10
    assert not report.valid
    assert "too alike to put in canonical order" in _failed(report, "proof")
    # every other check still ran and reported
    assert [c.name for c in report.checks] == [
        "format",
        "contexts",
        "proof",
        "issuer_key",
        "status",
        "dates",
        "schema",
    ]


@pytest.mark.parametrize("n", [5, 6, 8, 9, 12])
def test_refused_blank_node_work_stops_at_its_budget(n: int) -> None:
    work = limits.Work()
    doc = dataintegrity.unsecured(hostile.poison_graph(n))
    with pytest.raises(limits.LimitExceeded, match="too alike"):
        canon.canonicalize(doc, LOADER, work=work)
    assert work.budget == limits.DEFAULT.work_budget(n)
    # the last step charged may overshoot by one node's quads or one permutation
    assert work.budget < work.used <= work.budget + 4 * n


def test_the_budget_is_capped_however_many_nodes_are_alike() -> None:
    bounds = limits.DEFAULT
    assert bounds.work_budget(bounds.max_blank_nodes) == bounds.max_work
    work = limits.Work()
    doc = dataintegrity.unsecured(hostile.many_poison_graphs(100, 4))
    with pytest.raises(limits.LimitExceeded):
        canon.canonicalize(doc, LOADER, work=work)
    assert work.budget == bounds.max_work
    assert work.used <= bounds.max_work + 4 * 400


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(hostile.poison_graph(2), id="2 alike"),
        pytest.param(hostile.poison_graph(4), id="4 alike"),
        pytest.param(hostile.many_poison_graphs(3, 3), id="3 groups of 3"),
    ],
)
def test_bounded_canonical_form_equals_plain_pyld(doc: dict[str, Any]) -> None:
    """Hash N-Degree Quads written out with a budget: byte for byte pyld's result."""
    body = dataintegrity.unsecured(doc)
    work = limits.Work()
    assert canon.canonicalize(body, LOADER, work=work) == _plain(body)
    assert work.used > 0  # the graphs above do reach Hash N-Degree Quads


def test_duplicate_nested_objects_stay_well_inside_the_budget() -> None:
    """Two identical alignments, each with three identical alignments: blank nodes alike
    in twos and sixes, as an issuer might produce by accident, on a small budget."""
    doc = hostile.base_credential()
    leaf = {"type": ["Alignment"], "targetName": "x", "targetUrl": "https://x.test/"}
    parent = {**leaf, "targetName": "parent", "alignment": [leaf] * 3}
    doc["credentialSubject"]["alignment"] = [parent, copy.deepcopy(parent)]
    body = dataintegrity.unsecured(hostile.with_fake_proof(doc))
    work = limits.Work()
    assert canon.canonicalize(body, LOADER, work=work) == _plain(body)
    assert 0 < work.used < limits.DEFAULT.work_base // 10


def test_published_vectors_and_our_credentials_need_no_blank_node_work(
    engine: Engine, settings: Settings
) -> None:
    vector = hostile.base_credential()
    assert _work(vector).used == 0
    with session(engine, write=True) as s:
        row = service.issue(s, settings=settings, award=samples.award(), now=NOW, actor="t")
        s.commit()
    assert _work(row.document).used == 0


def test_sizes_are_refused_before_canonicalization() -> None:
    small = limits.Limits(max_quads=10)
    work = limits.Work()
    with pytest.raises(limits.LimitExceeded, match="RDF statements"):
        canon.canonicalize(hostile.base_credential(), LOADER, bounds=small, work=work)
    assert work.used == 0 and work.budget is None  # Hash N-Degree Quads never started
    few = limits.Limits(max_blank_nodes=3)
    with pytest.raises(limits.LimitExceeded, match="blank nodes"):
        canon.canonicalize(hostile.poison_graph(4), LOADER, bounds=few, work=work)
    assert work.budget is None


def test_many_values_of_one_property_are_refused_before_the_node_map() -> None:
    """pyld compares each new value of a property with all earlier ones (n²/2)."""
    doc = hostile.many_statements(4000)  # 1,000 alignments: 500,000 comparisons
    report = verify.verify(doc, resolver=OFFLINE, now=NOW)
    assert "1000 values for one property" in _failed(report, "proof")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("[" * 70 + "]" * 70, "nests deeper than 64 levels"),
        (json.dumps({"proof": [], "x": list(range(10_001))}), "more than 10000 JSON values"),
        (" " * 1_000_001, "larger than 1000000 bytes"),
    ],
)
def test_documents_over_the_limits_are_refused_unread(data: str, reason: str) -> None:
    report = verify.verify(data, resolver=OFFLINE, now=NOW)
    assert report.format == "unknown" and reason in report.checks[0].detail


def test_too_many_proofs_or_status_entries_fail_their_check() -> None:
    doc = hostile.poison_graph(2)
    doc["proof"] = doc["proof"] * 5
    report = verify.verify(doc, resolver=OFFLINE, now=NOW)
    assert "5 proofs; a verifier checks at most 4" in _failed(report, "proof")
    doc = hostile.poison_graph(2)
    entry = {
        "id": "https://tool.test/status/1#3",
        "type": "BitstringStatusListEntry",
        "statusPurpose": "revocation",
        "statusListIndex": "3",
        "statusListCredential": "https://tool.test/status/1",
    }
    doc["credentialStatus"] = [entry] * 5
    report = verify.verify(doc, resolver=OFFLINE, now=NOW)
    assert "5 status entries" in _failed(report, "status")


@pytest.fixture
def issued(engine: Engine, settings: Settings) -> Iterator[tuple[dict[str, Any], str, Any]]:
    with session(engine, write=True) as s:
        row = service.issue(s, settings=settings, award=samples.award(), now=NOW, actor="t")
        s.commit()
    with session(engine) as s:
        assert row.jwt is not None
        yield row.document, row.jwt, service.resolver(s, settings)


def test_a_status_list_is_fetched_and_verified_once_per_credential(
    issued: tuple[dict[str, Any], str, Any],
) -> None:
    doc, _, resolver = issued
    calls: list[str] = []

    def counted(url: str) -> Any:
        calls.append(url)
        return resolver.status_list(url)

    counting = verify.Resolver(keyring=resolver.keyring, status_list=counted)
    entry = doc["credentialStatus"]
    several = {**dataintegrity.unsecured(doc), "credentialStatus": [entry] * 4}
    check = verify._check_status(several, counting, NOW, limits.DEFAULT)
    assert check.ok, check.detail
    assert calls == [entry["statusListCredential"]]


def _b64(data: Any) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _token_with_header(token: str, header: Any) -> str:
    _, payload, signature = token.split(".")
    return f"{_b64(header)}.{payload}.{signature}"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"alg": ["ES256"]}, "alg is ['ES256'], not ES256 or RS256"),
        ({"alg": 256}, "alg is 256"),
        ({"alg": None}, "alg is None"),
        ({"alg": {"x": 1}}, "alg is {'x': 1}"),
        ({"alg": "HS256"}, "alg is 'HS256'"),
        ({"alg": "ES256", "kid": None}, "no kid"),
        ({"alg": "ES256", "kid": "k" * 5000}, "kid is longer than 2048"),
        (["ES256"], "must be a json object"),
        ({"alg": "ES256", "x": "y" * 200_000}, "forbids"),
    ],
)
def test_malformed_jose_headers_fail_the_proof_check(
    issued: tuple[dict[str, Any], str, Any],
    header: Any,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, token, resolver = issued
    real = jws.unverified_header(token)
    if isinstance(header, dict) and "kid" not in header:
        header = {**header, "kid": real["kid"]}  # a key this verifier does hold
    with caplog.at_level(logging.INFO):
        report = verify.verify(_token_with_header(token, header), resolver=resolver, now=NOW)
    assert not report.valid and report.format == "jwt"
    assert reason in _failed(report, "proof")
    assert not caplog.records


def test_an_unexpected_error_in_a_check_fails_that_check_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken_fetch(url: str) -> Any:
        raise RuntimeError("the resolver broke")

    doc = hostile.base_credential()
    doc["issuer"]["id"] = "did:web:issuer.test"
    doc = {**doc, "proof": [{**hostile.poison_graph(2)["proof"][0]}]}
    doc["proof"][0]["verificationMethod"] = "did:web:issuer.test#key-1"
    resolver = verify.Resolver(keyring=None, status_list=lambda url: None, fetch=broken_fetch)
    with caplog.at_level(logging.WARNING):
        report = verify.verify(doc, resolver=resolver, now=NOW)
    assert not report.valid
    assert "could not be completed (RuntimeError)" in _failed(report, "proof")
    assert [c.name for c in report.checks][-3:] == ["status", "dates", "schema"]
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is None
    assert "the resolver broke" in caplog.records[0].getMessage()


HEADER_VALUES = st.none() | st.booleans() | st.integers() | st.text(max_size=30)
HEADERS = st.dictionaries(
    st.sampled_from(["alg", "kid", "typ", "jwk", "crit", "b64", "x"]),
    HEADER_VALUES | st.lists(HEADER_VALUES, max_size=3),
    max_size=5,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=HEADERS | st.lists(HEADER_VALUES, max_size=3) | HEADER_VALUES)
def test_any_jose_header_gives_a_failed_report(header: Any) -> None:
    token = f"{_b64(header)}.{_b64({'iss': 'x'})}.{_b64(b'sig')}"
    report = verify.verify(token, resolver=OFFLINE, now=NOW)
    assert not report.valid and report.format == "jwt"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(min_value=2, max_value=14),
    extra_links=st.lists(st.tuples(st.integers(0, 13), st.integers(0, 13)), max_size=20),
)
def test_any_small_graph_of_blank_nodes_is_answered_within_the_budget(
    n: int, extra_links: list[tuple[int, int]]
) -> None:
    doc = hostile.poison_graph(n)
    nodes = doc["credentialSubject"]["alignment"]
    for a, b in extra_links:
        if a < n and b < n:
            nodes[a]["alignment"].append({"id": f"_:n{b}"})
    report = verify.verify(doc, resolver=OFFLINE, now=NOW)
    assert not report.valid  # a random signature; the point is that it answers
    work = limits.Work()
    with contextlib.suppress(limits.LimitExceeded):
        canon.canonicalize(dataintegrity.unsecured(doc), LOADER, work=work)
    assert work.used <= limits.DEFAULT.max_work + 4 * (n + len(extra_links))
