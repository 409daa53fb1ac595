"""Certification known-bad payloads, forged tokens, replay under concurrency, mix-up between
platforms sharing an issuer, platform key rotation (security.md S1, S2, S4, S5, S6)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete
from sqlmodel import select

from service.db.engine import session as db_session
from service.db.models import Person, PlatformKeySet
from service.lti import jwks
from service.settings import Settings
from tests.lti.platform import MEMBERSHIP, C, FakePlatform, Network, b64, public_jwk, rsa_key

pytestmark = pytest.mark.usefixtures("registered")

Mutator = Callable[[FakePlatform, str], tuple[str, dict[str, str]]]


def _claims_without(*names: str) -> Mutator:
    def mutate(p: FakePlatform, nonce: str) -> tuple[str, dict[str, str]]:
        claims = p.claims(nonce)
        for n in names:
            claims.pop(n, None)
        return p.token(claims), {}

    return mutate


def _claims_with(**changes: Any) -> Mutator:
    def mutate(p: FakePlatform, nonce: str) -> tuple[str, dict[str, str]]:
        return p.token(p.claims(nonce) | changes), {}

    return mutate


def _times(iat: int, exp: int) -> Mutator:
    """``iat`` and ``exp`` this many seconds from the moment the token is made (not from
    collection: a long suite would turn "in the future" into "now")."""

    def mutate(p: FakePlatform, nonce: str) -> tuple[str, dict[str, str]]:
        now = int(time.time())
        return p.token(p.claims(nonce) | {"iat": now + iat, "exp": now + exp}), {}

    return mutate


def _header(**header: Any) -> Mutator:
    def mutate(p: FakePlatform, nonce: str) -> tuple[str, dict[str, str]]:
        return p.token(p.claims(nonce), **header), {}

    return mutate


def _raw(make: Callable[[FakePlatform, dict[str, Any]], str]) -> Mutator:
    def mutate(p: FakePlatform, nonce: str) -> tuple[str, dict[str, str]]:
        return make(p, p.claims(nonce)), {}

    return mutate


def _unsigned(p: FakePlatform, claims: dict[str, Any]) -> str:
    head = b64(json.dumps({"alg": "none", "kid": p.kid}).encode())
    return f"{head}.{b64(json.dumps(claims).encode())}."


def _hs256_with_public_key(p: FakePlatform, claims: dict[str, Any]) -> str:
    secret = json.dumps(public_jwk(p.key, p.kid)).encode()
    head = b64(json.dumps({"alg": "HS256", "kid": p.kid}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def _other_key(p: FakePlatform, claims: dict[str, Any]) -> str:
    from tests.lti.platform import sign_raw

    return sign_raw({"alg": "RS256", "kid": p.kid}, claims, rsa_key(5))


def _jku_attack(p: FakePlatform, claims: dict[str, Any]) -> str:
    from tests.lti.platform import sign_raw

    head = {
        "alg": "RS256",
        "kid": "evil",
        "jku": "https://evil.test/jwks",
        "jwk": public_jwk(rsa_key(5), "evil"),
    }
    return sign_raw(head, claims, rsa_key(5))


def _tampered(p: FakePlatform, claims: dict[str, Any]) -> str:
    head, _, sig = p.token(claims).split(".")
    forged = claims | {"sub": "admin"}
    return f"{head}.{b64(json.dumps(forged).encode())}.{sig}"


# Certification §6.1 "known bad payloads", then the forged-token corpus (security.md S2).
BAD: dict[str, Mutator] = {
    "cert: no KID": _header(kid=None),
    "cert: incorrect KID": _header(kid="not-a-key-of-this-platform"),
    "cert: wrong LTI version": _claims_with(**{C + "version": "1.2.0"}),
    "cert: no LTI version": _claims_without(C + "version"),
    "cert: invalid LTI message (2 parts)": lambda p, n: ("eyJhbGciOiJSUzI1NiJ9.e30", {}),
    "cert: invalid LTI message (garbage)": lambda p, n: ("%%%.###.$$$", {}),
    "cert: missing LTI claims": lambda p, n: (
        p.token(
            {
                "iss": p.issuer,
                "aud": p.client_id,
                "sub": "u",
                "nonce": n,
                "iat": int(time.time()),
                "exp": int(time.time()) + 60,
            }
        ),
        {},
    ),
    "cert: timestamps incorrect": _times(iat=-7200, exp=-3600),
    "cert: message type claim missing": _claims_without(C + "message_type"),
    "cert: role claim missing": _claims_without(C + "roles"),
    "cert: deployment id missing": _claims_without(C + "deployment_id"),
    "cert: resource link id missing": _claims_with(**{C + "resource_link": {"title": "x"}}),
    "cert: user claim missing": _claims_without("sub"),
    "alg none": _raw(_unsigned),
    "HS256 keyed with the platform's public key": _raw(_hs256_with_public_key),
    "signed by another key": _raw(_other_key),
    "jku/jwk header pointing at the attacker": _raw(_jku_attack),
    "payload tampered after signing": _raw(_tampered),
    "exp missing": _claims_without("exp"),
    "iat missing": _claims_without("iat"),
    "iat in the future": _times(iat=600, exp=700),
    "iat too old": _times(iat=-1000, exp=60),
    "nonce missing": _claims_without("nonce"),
    "nonce not the issued one": _claims_with(nonce="made-up-nonce"),
    "nonce with non-ASCII characters": _claims_with(nonce="nönce-✓"),
    "aud without our client id": _claims_with(aud="someone-else"),
    "aud with an extra untrusted party": lambda p, n: (
        p.token(p.claims(n, aud=[p.client_id, "evil-client"], azp=p.client_id)),
        {},
    ),
    "azp not us": _claims_with(azp="evil-client"),
    "iss unknown": _claims_with(iss="https://evil.test"),
    "deployment unknown": _claims_with(**{C + "deployment_id": "999"}),
    "message type unsupported": _claims_with(**{C + "message_type": "DataPrivacyLaunchRequest"}),
    "message type garbage": _claims_with(**{C + "message_type": {"a": 1}}),
    "resource link not an object": _claims_with(**{C + "resource_link": "rl-1"}),
    # found by tests/lti/test_launch_mutations.py: accepted, with the id quietly dropped
    "resource link id a number": _claims_with(**{C + "resource_link": {"id": 7}}),
    "resource link id true": _claims_with(**{C + "resource_link": {"id": True}}),
    "resource link id empty": _claims_with(**{C + "resource_link": {"id": ""}}),
    "resource link id too long": _claims_with(**{C + "resource_link": {"id": "r" * 256}}),
    "roles not a list": _claims_with(**{C + "roles": 5}),
    "target_link_uri foreign": _claims_with(**{C + "target_link_uri": "https://evil.test/x"}),
    "target_link_uri differs from login": _claims_with(
        **{C + "target_link_uri": "https://tool.test/lti/launch/other"}
    ),
    "body is a JSON list": lambda p, n: (
        f"{b64(json.dumps({'alg': 'RS256', 'kid': p.kid}).encode())}.{b64(b'[1,2]')}.x",
        {},
    ),
    "oversized token": lambda p, n: ("a" * 70_000 + ".b.c", {}),
    "state missing": lambda p, n: (p.token(p.claims(n)), {"state": ""}),
    "state unknown": lambda p, n: (p.token(p.claims(n)), {"state": "state-made-up"}),
    "state with non-ASCII characters": lambda p, n: (p.token(p.claims(n)), {"state": "stäte"}),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_launch_is_a_clean_4xx(client: TestClient, moodle: FakePlatform, case: str) -> None:
    state, nonce, _ = moodle.login(client)
    token, override = BAD[case](moodle, nonce)
    resp = client.post(
        "/lti/launch",
        data={"id_token": token, "state": state} | override,
        headers={"accept": "text/html"},
        follow_redirects=False,
    )
    assert 400 <= resp.status_code < 500, (case, resp.status_code, resp.text[:300])
    assert "Traceback" not in resp.text and 'File "' not in resp.text
    assert "What to do" in resp.text  # the page says what to check
    assert "mc_session" not in resp.headers.get("location", "")


VALID: dict[str, dict[str, Any]] = {
    "instructor": {"roles": [MEMBERSHIP + "Instructor"]},
    "student": {"roles": [MEMBERSHIP + "Learner"]},
    "multiple roles": {
        "roles": [
            MEMBERSHIP + "Learner",
            MEMBERSHIP + "Mentor",
            MEMBERSHIP[:-1] + "/Instructor#TeachingAssistant",
        ]
    },
    "short roles": {"roles": ["Instructor", "Learner"]},
    "unknown roles": {"roles": ["http://example.edu/roles#Wizard", "Sorcerer"]},
    "empty roles": {"roles": []},
    "no PII": {"name": None, "given_name": None, "family_name": None, "email": None},
    "email only": {"name": None, "given_name": None, "family_name": None},
    "names only": {"email": None},
    "no context": {C + "context": None},
    "unknown extra claims": {"https://example.edu/claim/anything": {"x": [1, 2]}},
    "aud as a one-element list": {"aud": ["moodle-client-1"]},
    "aud list with azp": {"aud": ["moodle-client-1"], "azp": "moodle-client-1"},
}


@pytest.mark.parametrize("case", list(VALID), ids=list(VALID))
def test_valid_variants_are_accepted(client: TestClient, moodle: FakePlatform, case: str) -> None:
    changes = dict(VALID[case])
    roles = changes.pop("roles", None)
    state, nonce, _ = moodle.login(client)
    claims = moodle.claims(nonce, roles=roles)
    for k, v in changes.items():
        if v is None:
            claims.pop(k, None)
        else:
            claims[k] = v
    resp = moodle.launch(client, moodle.token(claims), state)
    assert resp.status_code == 303, (case, resp.text[:300])
    page = client.get(resp.headers["location"])
    assert page.status_code == 200
    expected = "Micro-credentials for" if case in ("instructor", "short roles") else "Your micro"
    if case == "multiple roles":
        expected = "Micro-credentials for"  # TeachingAssistant is an Instructor sub-role
    assert expected in page.text


def test_lti_data_is_escaped_on_pages(client: TestClient, moodle: FakePlatform) -> None:
    evil = "<script>alert(1)</script>"
    resp = moodle.full_launch(
        client, name=evil, **{C + "context": {"id": "c1", "title": evil + "<img src=x onerror=1>"}}
    )
    page = client.get(resp.headers["location"])
    assert "<script>alert" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;" in page.text


@pytest.mark.parametrize(
    ("keys_cached", "returning"),
    [(False, True), (True, True), (True, False)],
    ids=["key-set-fetched", "keys-cached", "keys-cached-sqlite-before-3.35"],
)
def test_twenty_concurrent_posts_of_one_token_are_accepted_once(
    client: TestClient,
    moodle: FakePlatform,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    keys_cached: bool,
    returning: bool,
) -> None:
    # Keys cached: each launch validates and consumes in one transaction, on the event
    # loop (UPDATE ... RETURNING takes the state as it reads it; SQLite before 3.35 has no
    # RETURNING and consumes at completion); otherwise it fetches the key set and consumes
    # in a second transaction.
    if not returning:
        if engine.dialect.name != "sqlite":
            pytest.skip("SQLite's version decides whether RETURNING is used")
        monkeypatch.setattr(engine.dialect, "update_returning", False)
    if keys_cached:
        assert moodle.full_launch(client).status_code == 303
    state, nonce, _ = moodle.login(client)
    token = moodle.token(moodle.claims(nonce))
    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(pool.map(lambda _: moodle.launch(client, token, state).status_code, range(20)))
    assert codes.count(303) == 1, codes
    assert codes.count(400) == 19, codes


def test_login_nonces_are_random_and_do_not_carry_the_hosts_mac_address(
    client: TestClient, moodle: FakePlatform
) -> None:
    """pylti1p3's nonce ends in a uuid1 (this host's MAC address and clock)."""
    import uuid

    nonces = {moodle.login(client)[1] for _ in range(5)}
    assert len(nonces) == 5
    mac = f"{uuid.getnode():012x}"
    for nonce in nonces:
        assert len(base64.urlsafe_b64decode(nonce + "=")) == 32  # 256 random bits
        assert mac not in nonce


def test_unknown_kid_refetches_once_then_rate_limits(
    client: TestClient, moodle: FakePlatform
) -> None:
    assert moodle.full_launch(client).status_code == 303
    assert moodle.jwks_fetches == 1
    for i in range(10):
        state, nonce, _ = moodle.login(client)
        bad = moodle.token(moodle.claims(nonce), kid=f"unknown-kid-{i}")
        assert moodle.launch(client, bad, state).status_code == 400
    assert moodle.jwks_fetches == 1 + 3  # a burst of 3 refetches per minute, then none


def test_a_bogus_kid_probe_does_not_block_a_real_rotation(
    client: TestClient, moodle: FakePlatform
) -> None:
    assert moodle.full_launch(client).status_code == 303
    state, nonce, _ = moodle.login(client)
    bogus = moodle.token(moodle.claims(nonce), kid="not-a-key-of-this-platform")
    assert moodle.launch(client, bogus, state).status_code == 400
    moodle.rotate("moodle-key-2", key_index=2)
    assert moodle.full_launch(client).status_code == 303


def test_platform_key_rotation_needs_exactly_one_fetch(
    client: TestClient, moodle: FakePlatform
) -> None:
    assert moodle.full_launch(client).status_code == 303
    moodle.rotate("moodle-key-2", key_index=2)
    for _ in range(3):
        assert moodle.full_launch(client).status_code == 303
    assert moodle.jwks_fetches == 2


def test_a_rotation_is_refetched_when_only_this_process_remembers_the_key_set(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    """The process's copy of a key set outlived the database's (a restored database; in
    the tests, tables emptied between tests while the process runs on): a new kid still
    refetches, since no row means no refetch was spent on that URL lately."""
    assert moodle.full_launch(client).status_code == 303
    with db_session(engine, write=True) as s:
        s.exec(delete(PlatformKeySet))
        s.commit()
    moodle.rotate("moodle-key-2", key_index=2)
    assert moodle.full_launch(client).status_code == 303
    assert moodle.jwks_fetches == 2


def test_a_key_source_without_a_client_serves_the_cache_and_claims_no_refetch(
    client: TestClient, moodle: FakePlatform, engine: Engine, settings: Settings
) -> None:
    """The launch's first try on the event loop (SQLite) has no HTTP client: a fetch must
    send it to the thread pool without spending the refetch budget (security.md L11)."""

    assert moodle.full_launch(client).status_code == 303
    source = jwks.KeySetSource(engine, None, settings)
    assert [k.kid for k in jwks.keys_for(source, moodle.jwks_url, moodle.kid)] == [moodle.kid]
    with pytest.raises(jwks.FetchNeeded):
        jwks.keys_for(source, moodle.jwks_url, "rotated-away")
    with pytest.raises(jwks.FetchNeeded):
        source.keys("https://other-lms.test/jwks")
    with db_session(engine) as s:
        row = s.exec(select(PlatformKeySet).where(PlatformKeySet.url == moodle.jwks_url)).one()
    assert (row.refetched_at, row.refetch_count) == (None, 0)
    assert moodle.jwks_fetches == 1
    moodle.rotate("moodle-key-2", key_index=2)  # the full launch still refetches once
    assert moodle.full_launch(client).status_code == 303
    assert moodle.jwks_fetches == 2


def test_cached_keys_keep_working_while_the_jwks_is_down(
    client: TestClient, moodle: FakePlatform, network: Network
) -> None:
    assert moodle.full_launch(client).status_code == 303
    network.down = True

    jwks.forget_memory_cache()  # another process: only the database cache is warm
    assert moodle.full_launch(client).status_code == 303


def test_unreachable_jwks_is_a_clean_4xx(
    client: TestClient, moodle: FakePlatform, network: Network
) -> None:
    network.down = True
    resp = moodle.full_launch(client)
    assert resp.status_code == 400
    assert "JWKS URL" in resp.text


# --- two registrations sharing one issuer (Canvas Cloud) -------------------------------------


@pytest.fixture
def canvas_b(engine: Engine, canvas: FakePlatform, network: Network) -> FakePlatform:
    other = FakePlatform(
        issuer=canvas.issuer,
        client_id="10000000000002",
        deployment_id="12:aa11bb22",
        key_index=canvas.key_index,
        kid=canvas.kid,
        family="canvas",
        token_lifetime=3600,
    )
    other.published = canvas.published  # Canvas signs every tenant with the same keys
    with db_session(engine, write=True) as s:
        other.register(s)
        s.commit()
    return other


def test_token_for_tenant_b_on_a_login_of_tenant_a_is_rejected(
    client: TestClient, canvas: FakePlatform, canvas_b: FakePlatform
) -> None:
    state, nonce, _ = canvas.login(client)
    token = canvas_b.token(canvas_b.claims(nonce))
    resp = canvas.launch(client, token, state)
    assert resp.status_code == 400
    assert "different platform" in resp.text


def test_deployment_of_tenant_b_under_tenant_a_is_rejected(
    client: TestClient, canvas: FakePlatform, canvas_b: FakePlatform
) -> None:
    state, nonce, _ = canvas.login(client)
    claims = canvas.claims(nonce, **{C + "deployment_id": canvas_b.deployment_id})
    resp = canvas.launch(client, canvas.token(claims), state)
    assert resp.status_code == 403
    assert f"--deployment {canvas_b.deployment_id}" in resp.text  # the signed id, for the admin


def test_login_without_client_id_is_refused_when_the_issuer_is_shared(
    client: TestClient, canvas: FakePlatform, canvas_b: FakePlatform
) -> None:
    _, _, resp = canvas.login(client, client_id="")
    assert resp.status_code == 400
    assert "client_id" in resp.text


def test_same_sub_on_two_tenants_is_two_people(
    client: TestClient, canvas: FakePlatform, canvas_b: FakePlatform, engine: Engine
) -> None:
    assert canvas.full_launch(client).status_code == 303
    assert canvas_b.full_launch(client).status_code == 303
    with db_session(engine) as s:
        people = s.exec(select(Person).where(Person.sub == "user-42")).all()
    assert len({p.platform_id for p in people}) == 2


def test_inactive_platform_is_refused_with_the_activation_command(
    client: TestClient, engine: Engine, network: Network
) -> None:
    p = FakePlatform(issuer="https://pending.test", client_id="c9", key_index=3, kid="k3")
    network.platforms.append(p)
    with db_session(engine, write=True) as s:
        p.register(s, active=False)
        s.commit()
    _, _, resp = p.login(client)
    assert resp.status_code == 403
    assert f"microcred platform activate {p.row.id}" in resp.text  # type: ignore[union-attr]


def test_login_to_a_foreign_target_is_refused(client: TestClient, moodle: FakePlatform) -> None:
    _, _, resp = moodle.login(client, target_link_uri="https://evil.test/phish")
    assert resp.status_code == 400


def test_unknown_platform_login_is_refused(client: TestClient) -> None:
    resp = client.post(
        "/lti/login",
        data={
            "iss": "https://nobody.test",
            "login_hint": "1",
            "target_link_uri": "https://tool.test/lti/launch",
        },
    )
    assert resp.status_code == 400
    assert "not registered" in resp.text


def test_missing_login_parameters_are_named(client: TestClient) -> None:
    resp = client.post("/lti/login", data={"iss": "https://x.test"})
    assert resp.status_code == 400 and "login_hint" in resp.text


@pytest.mark.parametrize("name", ["login_hint", "lti_message_hint"])
def test_oversized_login_hints_are_refused_not_echoed(
    client: TestClient, moodle: FakePlatform, name: str
) -> None:
    # found by tests/lti/test_launch_mutations.py: a 70 KB hint came back in the Location
    _, _, resp = moodle.login(client, **{name: "A" * 70_000})
    assert resp.status_code == 400, resp.status_code
    assert "longer than 2048 characters" in resp.text and "location" not in resp.headers
    _, _, fine = moodle.login(client, **{name: "A" * 2048})
    assert fine.status_code == 302


def test_b64_helper_is_sane() -> None:
    assert base64.urlsafe_b64decode(b64(b"abc") + "=") == b"abc"


def test_deactivated_platform_launch_fetches_nothing(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    state, nonce, _ = moodle.login(client)
    with db_session(engine, write=True) as s:
        row = s.get(type(moodle.row), moodle.row.id)  # type: ignore[union-attr,arg-type]
        row.active = False
        s.add(row)
        s.commit()
    resp = moodle.launch(client, moodle.token(moodle.claims(nonce)), state)
    assert resp.status_code == 403
    assert moodle.jwks_fetches == 0


@pytest.mark.parametrize("field", ["iss", "client_id", "login_hint"])
def test_nul_in_login_parameters_is_a_clean_4xx(
    client: TestClient, moodle: FakePlatform, field: str
) -> None:
    _, _, resp = moodle.login(client, **{field: "x\x00y"})
    assert resp.status_code in (400, 422)


def test_nul_in_a_claim_is_a_clean_4xx(client: TestClient, moodle: FakePlatform) -> None:
    resp = moodle.full_launch(client, name="Ada\x00Lovelace")
    assert resp.status_code == 400


def test_concurrent_first_launches_of_one_user_make_one_person(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    logins = [moodle.login(client)[:2] for _ in range(8)]
    tokens = [
        (moodle.token(moodle.claims(nonce, sub="new-user")), state) for state, nonce in logins
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(lambda ts: moodle.launch(client, *ts).status_code, tokens))
    assert codes == [303] * 8
    with db_session(engine) as s:
        assert len(s.exec(select(Person).where(Person.sub == "new-user")).all()) == 1
