"""``microcred verify``, ``credential revoke/unrevoke`` and ``issuer rotate-keys``."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from service import cli
from service.db.engine import session
from service.issuer import service
from service.settings import Settings, get_settings
from tests.issuer import samples


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("MICROCRED_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("MICROCRED_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MICROCRED_BASE_URL", settings.base_url)
    assert settings.secret_key is not None
    monkeypatch.setenv("MICROCRED_SECRET_KEY", settings.secret_key.get_secret_value())
    monkeypatch.setenv("MICROCRED_ENVIRONMENT", "test")
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def _issue(engine: Engine, settings: Settings) -> tuple[str, dict, str]:  # type: ignore[type-arg]
    from service.db.types import utcnow

    with session(engine, write=True) as s:
        row = service.issue(
            s,
            settings=settings,
            award=samples.award(awarded_at=utcnow()),
            now=utcnow(),
            actor="test",
        )
        s.commit()
    assert row.jwt is not None
    return row.uuid, row.document, row.jwt


def test_verify_file_valid_then_revoked_then_tampered(
    env: Settings, engine: Engine, tmp_path: Path
) -> None:
    runner = CliRunner()
    uuid, doc, token = _issue(engine, env)
    good = tmp_path / "cred.json"
    good.write_text(json.dumps(doc))
    result = runner.invoke(cli.app, ["verify", str(good)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["valid"] is True
    jwt_file = tmp_path / "cred.jwt"
    jwt_file.write_text(token + "\n")
    assert runner.invoke(cli.app, ["verify", str(jwt_file)]).exit_code == 0

    revoked = runner.invoke(cli.app, ["credential", "revoke", uuid, "--reason", "cheating"])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    result = runner.invoke(cli.app, ["verify", str(good)])
    assert result.exit_code == 1
    assert "invalid because it has been revoked" in result.stderr
    assert runner.invoke(cli.app, ["credential", "unrevoke", uuid, "--reason", "ok"]).exit_code == 0
    assert runner.invoke(cli.app, ["verify", str(good)]).exit_code == 0

    bad = copy.deepcopy(doc)
    bad["validFrom"] = "2020-01-01T00:00:00Z"
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(bad))
    result = runner.invoke(cli.app, ["verify", str(tampered)])
    assert result.exit_code == 1 and "proof fails" in result.stderr


def test_verify_unknown_format_and_missing_file(env: Settings, tmp_path: Path) -> None:
    runner = CliRunner()
    junk = tmp_path / "junk.txt"
    junk.write_text("not a credential")
    result = runner.invoke(cli.app, ["verify", str(junk)])
    assert result.exit_code == 1 and "unknown format" in result.stderr
    missing = runner.invoke(cli.app, ["verify", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2 and "neither a file nor" in missing.stderr


def test_verify_has_the_same_limits_as_the_service(env: Settings, tmp_path: Path) -> None:
    """H1 for the CLI: the poison graph and an oversized file are invalid, quickly."""
    from tests.issuer import hostile

    runner = CliRunner()
    poison = tmp_path / "poison.json"
    poison.write_text(json.dumps(hostile.poison_graph(8)))
    result = runner.invoke(cli.app, ["verify", str(poison)])
    assert result.exit_code == 1 and "too alike to put in canonical order" in result.stderr
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps({"proof": [], "pad": "x" * 2_000_000}))
    result = runner.invoke(cli.app, ["verify", str(huge)])
    assert result.exit_code == 1 and "larger than 1000000 bytes" in result.stderr


def test_revoke_unknown_credential_fails(env: Settings, engine: Engine) -> None:
    result = CliRunner().invoke(cli.app, ["credential", "revoke", "nope", "--reason", "x"])
    assert result.exit_code == 1 and "no credential nope" in result.stderr


def test_rotate_keys_keeps_old_credentials_valid(
    env: Settings, engine: Engine, tmp_path: Path
) -> None:
    runner = CliRunner()
    _, doc, _ = _issue(engine, env)
    result = runner.invoke(cli.app, ["issuer", "rotate-keys"])
    assert result.exit_code == 0 and "new issuer keys" in result.stdout
    _, doc2, _ = _issue(engine, env)
    assert doc["proof"][0]["verificationMethod"] != doc2["proof"][0]["verificationMethod"]
    for d in (doc, doc2):
        f = tmp_path / "c.json"
        f.write_text(json.dumps(d))
        assert runner.invoke(cli.app, ["verify", str(f)]).exit_code == 0


def test_verify_url_fetches_from_a_running_server(env: Settings, engine: Engine) -> None:
    from service.app import create_app
    from tests.threaded_server import serving

    uuid, _, _ = _issue(engine, env)
    with serving(create_app(env, engine=engine), lifespan="off") as port:
        url = f"http://127.0.0.1:{port}/credentials/{uuid}"
        result = CliRunner().invoke(cli.app, ["verify", url])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["valid"] is True and report["format"] == "ldp"
        missing = CliRunner().invoke(cli.app, ["verify", f"http://127.0.0.1:{port}/credentials/x"])
        assert missing.exit_code == 2 and "HTTP 404" in missing.stderr


def test_verify_expired_and_foreign_key_give_reasons(
    env: Settings, engine: Engine, tmp_path: Path
) -> None:
    import datetime as dt

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from service.db.types import utcnow
    from service.issuer import contexts, dataintegrity, multibase

    past = utcnow() - dt.timedelta(days=3)
    award = samples.award(awarded_at=past, template=samples.template(valid_for_days=1))
    with session(engine, write=True) as s:
        row = service.issue(s, settings=env, award=award, now=past, actor="test")
        s.commit()
    expired = tmp_path / "expired.json"
    expired.write_text(json.dumps(row.document))
    result = CliRunner().invoke(cli.app, ["verify", str(expired)])
    assert result.exit_code == 1 and "invalid because it expired on" in result.stderr

    stranger = Ed25519PrivateKey.generate()
    mb = multibase.encode_multikey_ed25519(stranger.public_key().public_bytes_raw())
    forged = dataintegrity.sign(
        dataintegrity.unsecured(row.document),
        key=stranger,
        verification_method=f"{row.document['issuer']['id']}#{mb}",
        created=row.document["proof"][0]["created"],
        loader=contexts.loader_for(env.public_base_url),
    )
    wrong = tmp_path / "wrong-key.json"
    wrong.write_text(json.dumps(forged))
    result = CliRunner().invoke(cli.app, ["verify", str(wrong)])
    assert result.exit_code == 1
    assert "is not an assertion key in the issuer's DID document" in result.stderr


def test_verify_reads_a_baked_png_and_svg_badge(
    env: Settings, engine: Engine, tmp_path: Path
) -> None:
    from service.issuer import baking

    _, doc, token = _issue(engine, env)
    png = baking.write_png(1, 1, [b"\x00\x80\x00\xff"])
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"></svg>'
    runner = CliRunner()
    for name, image, credential, fmt in [
        ("badge.png", png, doc, "ldp"),
        ("badge.svg", svg, doc, "ldp"),
        ("jwt.png", png, token, "jwt"),
    ]:
        path = tmp_path / name
        path.write_bytes(baking.bake(image, credential))
        result = runner.invoke(cli.app, ["verify", str(path)])
        assert result.exit_code == 0, (name, result.output)
        report = json.loads(result.stdout)
        assert report["valid"] is True and report["format"] == fmt, name
    plain = tmp_path / "plain.png"
    plain.write_bytes(png)
    result = runner.invoke(cli.app, ["verify", str(plain)])
    assert result.exit_code == 2 and "carries no credential" in result.stderr


def test_allow_network_fetches_another_issuers_vc_jwt_key(
    engine: Engine, settings: Settings
) -> None:
    import httpx

    from service.db.types import utcnow
    from service.issuer import fetch as issuer_fetch
    from service.issuer import keys, repository

    theirs = settings.model_copy(update={"base_url": "https://them.example"})
    with session(engine, write=True) as s:
        row = service.issue(
            s, settings=theirs, award=samples.award(awarded_at=utcnow()), now=utcnow(), actor="t"
        )
        their_ring = service.keyring(s, theirs)
        status_url = row.document["credentialStatus"]["statusListCredential"]
        status_list = repository.status_list(s, int(status_url.rsplit("/", 1)[1]))
        assert status_list is not None
        their_list = status_list.document
        s.commit()
    assert row.jwt is not None
    asked: list[str] = []

    def their_server(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        if str(request.url) == status_url:
            return httpx.Response(200, json=their_list)
        if request.url.path == "/.well-known/did.json":
            return httpx.Response(200, json=keys.did_document(their_ring))
        name = str(request.url).rsplit("/", 1)[-1]
        jwk = their_ring.jwk(name)
        return httpx.Response(200, json=jwk) if jwk else httpx.Response(404)

    client = httpx.Client(transport=httpx.MockTransport(their_server))
    ours = settings.model_copy(update={"base_url": "https://ours.example"})
    with session(engine) as s:
        offline = service.verify_input(s, ours, row.jwt, now=utcnow())
        assert offline.valid is False and asked == []
        online = service.verify_input(
            s,
            ours,
            row.jwt,
            now=utcnow(),
            fetch=lambda url: issuer_fetch.fetch_json(url, client=client),
        )
    assert asked and asked[0].startswith("https://them.example/issuer/keys/")
    assert online.valid is True, online.reasons
    with session(engine) as s:
        unreachable = service.verify_input(
            s,
            ours,
            row.jwt,
            now=utcnow(),
            fetch=lambda url: issuer_fetch.fetch_json(
                url,
                client=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(503))),
            ),
        )
    # A key that cannot be fetched is a reason in the report, not an aborted verification.
    assert unreachable.valid is False
    assert any("503" in r for r in unreachable.reasons), unreachable.reasons
