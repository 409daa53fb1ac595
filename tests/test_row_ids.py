"""Ids in paths that name no row are refused with a 4xx, never a 500 (found by the API fuzzer,
tests/test_api_fuzz.py): numbers beyond the INTEGER columns, which the database driver
cannot bind, and digits that are not ASCII, which ``int`` refuses although ``isdigit`` says yes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from service.apitoken import SCOPES
from service.db.types import row_id

TOO_BIG = str(2**31)  # one past the largest INTEGER; 2**63 overflows SQLite's driver too
ID_PATHS = [
    ("get", "/status/{}"),
    ("get", "/api/courses/{}/evidence"),
    ("get", "/api/policies/courses/{}"),
    ("get", "/api/policies/courses/{}/export"),
    ("get", "/api/policies/courses/{}/effective/k"),
    ("get", "/api/policies/decisions/{}"),
    ("post", "/api/delivery/email-mismatches/{}/resend"),
    ("post", "/api/delivery/email-mismatches/{}/dismiss"),
]


@pytest.mark.parametrize(("method", "path"), ID_PATHS)
@pytest.mark.parametrize("number", [TOO_BIG, str(2**63), "0", "-1"])
def test_path_ids_out_of_range_are_refused_with_the_range(
    client: TestClient,
    api_headers: Callable[..., dict[str, str]],
    method: str,
    path: str,
    number: str,
) -> None:
    resp = client.request(method, path.format(number), headers=api_headers(*SCOPES))
    assert resp.status_code == 422, resp.text
    assert "2147483647" in resp.text or "greater than or equal to 1" in resp.text


@pytest.mark.parametrize("ref", ["¹", "²³", TOO_BIG, str(2**64)])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/outbox/{}"),
        ("post", "/api/outbox/{}/retry"),
        ("post", "/api/outbox/{}/redeliver"),
        ("post", "/api/outbox/{}/cancel"),
    ],
)
def test_outbox_refs_that_name_no_row_are_not_found(
    client: TestClient,
    api_headers: Callable[..., dict[str, str]],
    method: str,
    path: str,
    ref: str,
) -> None:
    resp = client.request(method, path.format(ref), headers=api_headers("delivery:admin"))
    assert resp.status_code == 404, resp.text
    assert "no outbox row" in resp.json()["detail"]


def test_row_id_reads_only_ascii_numbers_that_fit_the_column() -> None:
    assert row_id("42") == 42 and row_id(7) == 7
    assert row_id("2147483647") == 2**31 - 1
    assert [row_id(r) for r in ["¹", "٣", TOO_BIG, "0x1", "", "4-2", "01234567890"]] == [None] * 7


@pytest.mark.parametrize(
    ("path", "scope", "body"),
    [
        ("/api/evidence", "evidence:write", {"course_id": 2**63}),
        ("/api/evidence", "evidence:write", {"course_id": -(2**64)}),
        (
            "/api/credentials/c-1/consent",
            "delivery:admin",
            {"repository_id": 2**63, "granted": True},
        ),
        (
            "/api/credentials",
            "credentials:write",
            {"learner": {"lti_user_id": "u", "person_id": 2**31}},
        ),
    ],
)
def test_ids_in_bodies_beyond_the_column_are_refused(
    client: TestClient,
    api_headers: Callable[..., dict[str, str]],
    path: str,
    scope: str,
    body: dict[str, object],
) -> None:
    resp = client.post(path, json=body, headers=api_headers(scope))
    assert resp.status_code == 422, resp.text
    assert "2147483647" in resp.text or "greater than or equal to 1" in resp.text


def test_an_attempt_number_beyond_the_column_is_refused(
    client: TestClient, api_headers: Callable[..., dict[str, str]]
) -> None:
    result = {
        "learner": {"lti_user_id": "u"},
        "item_id": "q1",
        "kind": "quiz",
        "score": 1,
        "max_score": 2,
        "attempt": 2**31,
    }
    resp = client.post(
        "/api/evidence",
        json={"course_id": 1, "results": [result]},
        headers=api_headers("evidence:write"),
    )
    assert resp.status_code == 422, resp.text
    assert "attempt" in resp.text


def test_digits_that_int_refuses_are_malformed_input_everywhere() -> None:
    """The other places that read numbers out of text (found after the fuzzer's row ids):
    each refuses '²' and friends as malformed, where ``int`` would have raised."""
    from service.assessment import reading
    from service.assessment.types import PolicyError
    from service.delivery.providers import webhook
    from service.issuer import statuslist

    entry = {
        "type": "BitstringStatusListEntry",
        "statusListCredential": "https://tool.test/status/1",
        "statusListIndex": "²",
    }
    with pytest.raises(statuslist.StatusListError, match="malformed"):
        statuslist.parse_entry(entry)
    with pytest.raises(statuslist.StatusListError, match="statusSize 1"):
        statuslist.parse_entry(entry | {"statusListIndex": "7", "statusSize": "abc"})
    assert statuslist.parse_entry(entry | {"statusListIndex": "7", "statusSize": "1"})[1] == 7
    assert webhook.verify("s", "t=²,v1=00", b"{}", now=0) is False
    with pytest.raises(PolicyError, match="number of days"):
        reading.days("²", "recency")
