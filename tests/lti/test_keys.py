"""The tool's keys: created on first use, encrypted at rest, rotated with a grace period."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from service import jws
from service.db.engine import session as db_session
from service.db.types import utcnow
from service.lti import keys


def test_jwks_creates_the_first_key_and_keeps_it_encrypted(
    client: TestClient, engine: Engine
) -> None:
    body = client.get("/lti/jwks")
    assert body.status_code == 200
    (key,) = body.json()["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
    assert "d" not in key and "p" not in key  # public parts only
    assert client.get("/lti/jwks").json()["keys"] == [key]  # stable
    with engine.connect() as conn:
        raw = conn.exec_driver_sql("SELECT private_pem FROM tool_key").scalar_one()
    assert "PRIVATE KEY" not in raw and raw.startswith("v1.")


def test_rotation_keeps_the_old_key_published_for_the_grace_period(
    client: TestClient, engine: Engine
) -> None:
    first = client.get("/lti/jwks").json()["keys"][0]["kid"]
    with db_session(engine, write=True) as s:
        old, new = keys.rotate(s)
        s.commit()
        assert old is not None and old.kid == first
        assert keys.signing_key(s).kid == new.kid
    kids = [k["kid"] for k in client.get("/lti/jwks").json()["keys"]]
    assert kids == [new.kid, first]
    with db_session(engine) as s:
        later = utcnow() + dt.timedelta(days=15)
        assert [k["kid"] for k in keys.published_jwks(s, grace_days=14, now=later)["keys"]] == [
            new.kid
        ]


def test_signatures_verify_with_the_published_key(client: TestClient, engine: Engine) -> None:
    with db_session(engine, write=True) as s:
        key = keys.signing_key(s)
        s.commit()
    token = jws.sign({"iss": "x", "iat": 1, "exp": 2}, key)
    published = [jws.public_key_from_jwk(k) for k in client.get("/lti/jwks").json()["keys"]]
    assert jws.verify(token, published, algorithms=["RS256"], now=1)["iss"] == "x"
