"""Fuzzing the forms of the LTI app (/app/*, which OpenAPI leaves out: tests/test_api_fuzz.py
lists them): an instructor and a learner, each after a real launch and with their session's
CSRF token, post random values to every form and open odd credential links. Never a 5xx."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.flows.conftest import Live, Tab, launch

pytestmark = [pytest.mark.db, pytest.mark.fuzz]

ODD = [
    "",
    " ",
    "0",
    "-1",
    "¹",
    "٣",
    "1.5",
    "1e9",
    str(2**31),
    str(2**63),
    "x" * 300,
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "%00",
    "\u202e",
]
text = st.sampled_from(ODD) | st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)
number = st.integers(min_value=-(2**70), max_value=2**70).map(str) | text
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

INSTRUCTOR_FORMS: dict[str, tuple[st.SearchStrategy[str], dict[str, st.SearchStrategy[Any]]]] = {
    "/app/course/attest": (
        st.just(""),
        {"person_id": number, "item_id": text, "level": text, "attempt": text, "note": text},
    ),
    "/app/course/awards/{}/approve": (number, {}),
    "/app/course/awards/{}/revoke": (number, {"reason": text}),
    "/app/course/awards/{}/keep": (number, {}),
    "/app/setup/competencies/{}": (
        text,
        {
            "items": st.lists(text, max_size=3),
            "threshold_beginning": text,
            "threshold_advanced": text,
        },
    ),
    "/app/setup/competencies": (st.just(""), {"key": text}),
    "/app/setup/rules": (st.just(""), {"on_lower": text, "approval_required": text}),
    "/app/course/reevaluate": (st.just(""), {}),
}


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert found, page[:500]
    return found.group(1)


def _fields(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    # each field present or not: a missing field must be a clear error too
    return {k: draw(v) for k, v in fields.items() if draw(st.booleans())}


@pytest.mark.parametrize("form", list(INSTRUCTOR_FORMS))
def test_instructor_forms_never_fail(live: Live, form: str) -> None:
    instructor = launch(live, "u-instr-1")
    csrf = _csrf(instructor.get("/app/course").text)
    in_path, fields = INSTRUCTOR_FORMS[form]

    @FUZZ
    @given(data=st.data())
    def post(data: st.DataObject) -> None:
        path = form.format(quote(data.draw(in_path), safe=""))
        body = data.draw(st.composite(lambda draw: _fields(draw, fields))())
        resp = instructor.post(path, body, csrf=csrf)
        assert resp.status_code < 500, (path, body, resp.status_code, resp.text[:300])

    post()


def test_learner_forms_and_links_never_fail(live: Live) -> None:
    learner: Tab = launch(live, "u-learn-1")
    page = learner.get("/app/me").text
    csrf = _csrf(page) if 'name="csrf"' in page else None

    @FUZZ
    @given(
        credential=text,
        repository=number,
        granted=text,
        suffix=st.sampled_from(["credential.json", "credential.jwt"]),
    )
    def act(credential: str, repository: str, granted: str, suffix: str) -> None:
        body = {"credential_id": credential, "repository_id": repository, "granted": granted}
        resp = learner.post("/app/me/consent", body, csrf=csrf)
        assert resp.status_code < 500, (body, resp.status_code, resp.text[:300])
        link = learner.get(f"/app/me/credentials/{quote(credential, safe='')}/{suffix}")
        assert link.status_code < 500, (credential, link.status_code, link.text[:300])

    act()


def test_odd_numbers_in_instructor_forms_are_clear_errors(live: Live) -> None:
    """Found by the fuzzer above (award ids) and by reading (attempt): both were 500s."""
    instructor = launch(live, "u-instr-1")
    csrf = _csrf(instructor.get("/app/course").text)
    for action in ("approve", "revoke", "keep"):
        resp = instructor.post(f"/app/course/awards/{2**63}/{action}", {}, csrf=csrf)
        assert resp.status_code == 422, (action, resp.status_code)
        assert "2147483647" in resp.text
    body = {"person_id": "1", "item_id": "21", "level": "supervised", "attempt": "¹"}
    resp = instructor.post("/app/course/attest", body, csrf=csrf)
    assert resp.status_code == 422 and "attempt: a number" in resp.text


def test_an_odd_repository_id_in_the_learners_consent_is_a_clear_error(live: Live) -> None:
    learner = launch(live, "u-learn-1")
    page = learner.get("/app/me").text
    csrf = _csrf(page) if 'name="csrf"' in page else None
    body = {"credential_id": "c-1", "repository_id": str(2**63), "granted": "yes"}
    resp = learner.post("/app/me/consent", body, csrf=csrf)
    assert resp.status_code == 422 and "2147483647" in resp.text
