"""OB 2.0 hosted assertions: the documents Badgr's importer and Moodle need, walked like a
hosted verifier does (fetch assertion → badge → issuer), with revocation by 410."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, create_engine

from service.issuer import baking, ob2, ob2_router
from service.web import credential_samples

BASE = "https://tool.test"
DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def documents() -> dict[str, dict[str, Any]]:
    docs = {name: credential_samples.sample(name)[0] for name in ("valid", "revoked", "expired")}
    lti_only = copy.deepcopy(docs["valid"])
    lti_only["credentialSubject"]["identifier"] = [
        i
        for i in lti_only["credentialSubject"]["identifier"]
        if i["identityType"] != "emailAddress"
    ]
    docs["lti-only"] = lti_only
    return docs


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    docs = documents()
    revoked = {"revoked": "Grade corrected after appeal."}

    def load(_session: Session, key: str) -> ob2_router.Ob2Credential | None:
        if key not in docs:
            return None
        return ob2_router.Ob2Credential(docs[key], key in revoked, revoked.get(key))

    def load_achievement(_session: Session, achievement_id: str) -> dict[str, Any] | None:
        for doc in docs.values():
            if doc["credentialSubject"]["achievement"]["id"] == achievement_id:
                return doc["credentialSubject"]["achievement"]  # type: ignore[no-any-return]
        return None

    app = FastAPI()
    app.state.engine = create_engine("sqlite://")  # for SessionDep; the loaders never read
    app.include_router(
        ob2_router.make_router(
            load,
            load_achievement=load_achievement,
            load_issuer=lambda _r: docs["valid"]["issuer"],
            list_revoked=lambda _s: list(revoked.items()),
        )
    )
    with TestClient(app, base_url=BASE) as c:
        yield c


def fetch(client: TestClient, url: str, status: int = 200) -> dict[str, Any]:
    """GET an absolute URL on the app, as a hosted verifier would."""
    assert url.startswith(BASE + "/"), url
    r = client.get(url[len(BASE) :], headers={"accept": "application/ld+json, application/json"})
    assert r.status_code == status, (url, r.status_code, r.text)
    body: dict[str, Any] = r.json()
    return body


def test_hosted_verification_walk(client: TestClient) -> None:
    url = f"{BASE}/ob2/assertions/valid"
    a = fetch(client, url)
    # Assertion: required id, type, recipient, badge, verification, issuedOn (OB 2.0 §3)
    assert a["@context"] == "https://w3id.org/openbadges/v2"
    assert a["type"] == "Assertion"
    assert a["id"] == url  # hosted: the id is where it is served
    assert a["verification"] == {"type": "HostedBadge"}
    assert DATETIME.match(a["issuedOn"]) and DATETIME.match(a["expires"])
    badge = fetch(client, a["badge"])
    for field in ("id", "type", "name", "description", "image", "criteria", "issuer"):
        assert badge.get(field), field
    assert badge["type"] == "BadgeClass" and badge["id"] == a["badge"]
    assert badge["criteria"]["id"].startswith("https://") and badge["criteria"]["narrative"]
    issuer = fetch(client, badge["issuer"])
    assert issuer["type"] == "Issuer" and issuer["id"] == badge["issuer"]
    assert issuer["name"] == "University of Leuvenstad"
    assert issuer["url"] == "https://www.uni-example.eu"
    assert issuer["email"] == "micro-credentials@uni-example.eu"
    # HostedBadge: the assertion must live on the issuer's origin (default allowed origin)
    assert urlsplit(a["id"]).netloc == urlsplit(issuer["id"]).netloc
    # images are fetchable PNGs
    assert client.get(badge["image"][len(BASE) :]).headers["content-type"] == "image/png"
    image = client.get(a["image"][len(BASE) :])
    assert image.status_code == 200 and image.content.startswith(baking.PNG_SIGNATURE)
    (baked,) = [b for k, b in baking.png_chunks(image.content) if k == b"iTXt"]
    assert baked.startswith(b"openbadges\x00\x00\x00\x00\x00")
    assert json.loads(baked.split(b"\x00", 5)[5]) == a


def test_recipient_is_the_salted_hash_and_matches_the_email(client: TestClient) -> None:
    a = fetch(client, f"{BASE}/ob2/assertions/valid")
    r = a["recipient"]
    assert r["type"] == "email" and r["hashed"] is True and r["salt"]
    digest = hashlib.sha256((credential_samples.LEARNER_EMAIL + r["salt"]).encode()).hexdigest()
    assert r["identity"] == f"sha256${digest}"
    assert credential_samples.LEARNER_EMAIL not in json.dumps(a)


def test_alignments_and_narrative_carry_over(client: TestClient) -> None:
    a = fetch(client, f"{BASE}/ob2/assertions/valid")
    assert a["narrative"] == "Level reached: Intermediate"
    assert a["evidence"][0]["id"].startswith("https://moodle.")
    badge = fetch(client, a["badge"])
    names = [al["targetName"] for al in badge["alignment"]]
    assert "Analyse data using statistical methods" in names
    assert all(al["targetUrl"].startswith("http") for al in badge["alignment"])


def test_assertions_of_one_achievement_share_a_badge_class(client: TestClient) -> None:
    docs = documents()
    urls = ob2.Ob2Urls(BASE)
    first = ob2.assertion(docs["valid"], key="a", urls=urls)
    other = docs["expired"] | {"credentialSubject": docs["valid"]["credentialSubject"]}
    second = ob2.assertion(other, key="b", urls=urls)
    assert first["badge"] == second["badge"]
    assert first["badge"] != fetch(client, f"{BASE}/ob2/assertions/revoked", 410).get("badge")


def test_revoked_assertion_is_gone_and_listed(client: TestClient) -> None:
    body = fetch(client, f"{BASE}/ob2/assertions/revoked", 410)
    assert body == {
        "@context": "https://w3id.org/openbadges/v2",
        "type": "Assertion",
        "id": f"{BASE}/ob2/assertions/revoked",
        "revoked": True,
        "revocationReason": "Grade corrected after appeal.",
    }
    issuer = fetch(client, f"{BASE}/ob2/issuer")
    revocations = fetch(client, issuer["revocationList"])
    assert revocations["type"] == "RevocationList" and revocations["issuer"] == issuer["id"]
    assert revocations["revokedAssertions"] == [
        {
            "id": f"{BASE}/ob2/assertions/revoked",
            "revocationReason": "Grade corrected after appeal.",
        }
    ]
    assert client.get("/ob2/assertions/revoked/image").status_code == 404
    r = client.get("/ob2/assertions/revoked")
    assert r.headers["cache-control"] == "no-cache"


def test_credential_without_email_has_no_ob2_form(client: TestClient) -> None:
    r = client.get("/ob2/assertions/lti-only")
    assert r.status_code == 404
    assert "hashed email recipient" in r.json()["detail"]


def test_unknown_keys_are_404(client: TestClient) -> None:
    assert client.get("/ob2/assertions/nope").status_code == 404
    assert client.get("/ob2/badges/not-base64!").status_code == 404
    assert client.get(f"/ob2/badges/{ob2.badge_key('https://x.test/a')}").status_code == 404


def test_badge_key_is_reversible_and_url_safe() -> None:
    aid = "https://credentials.uni-example.eu/achievements/data-analysis/intermediate?x=1&y=ü"
    key = ob2.badge_key(aid)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", key)
    assert ob2.achievement_id_from_key(key) == aid
    assert (
        ob2.achievement_id_from_key(key + "A") is None
        or ob2.achievement_id_from_key(key + "A") != aid
    )


def test_issuer_without_url_is_refused() -> None:
    with pytest.raises(ob2.NotExpressible, match="name and an http"):
        ob2.issuer_profile({"id": "did:web:x", "name": "X"}, urls=ob2.Ob2Urls(BASE))


def test_preview_app_serves_ob2_samples() -> None:
    from service.web import credential_preview

    app = FastAPI()
    app.state.engine = create_engine("sqlite://")  # for SessionDep; the loaders never read
    app.include_router(credential_preview.ob2_preview_router)
    with TestClient(app, base_url=BASE) as c:
        a = c.get("/_preview/ob2/assertions/valid").json()
        assert a["badge"].startswith(f"{BASE}/_preview/ob2/badges/")
        assert c.get(a["badge"][len(BASE) :]).json()["type"] == "BadgeClass"
        assert c.get("/_preview/ob2/assertions/revoked").status_code == 410
