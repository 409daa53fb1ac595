#!/usr/bin/env python3
"""Back up, restore and check a microcred deployment (docs/operations.md "Backup and restore").

Reads the same MICROCRED_* settings as the service (database URL, data dir, master key).

  backup DIR    the database (SQLite online backup, or pg_dump custom format), the development
                master key file if there is one, and a manifest (revision, counts, sha256)
  restore DIR   into the configured database, which must be empty (a new SQLite path, a new
                PostgreSQL database); the key file into the data dir when the backup has one
  check         every credential verifies (a revoked one fails on its status only), and every
                status list signs again with the restored keys (in a transaction rolled back)
  drill DIR     backup, destroy (the database and the key file), restore, check: the whole
                procedure against a scratch deployment. Never point it at production.

Exit status 0 when everything holds, 1 when a check fails, 2 on a usage or setup error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlmodel import select

from service import secretbox
from service.db.engine import make_engine
from service.db.engine import session as db_session
from service.db.models import Credential, StatusList
from service.db.types import utcnow
from service.issuer import identity
from service.issuer import service as issuer_service
from service.settings import Settings, get_settings

DUMP = "microcred.dump"
SQLITE = "microcred.db"
KEYFILE = "secret.key"
MANIFEST = "manifest.json"


class Failed(Exception):
    """A step that did not hold; the message says which and what to do."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _libpq(url: URL) -> str:
    """The SQLAlchemy URL as pg_dump and pg_restore read it."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise Failed("an in-memory SQLite database cannot be backed up")
    return Path(url.database)


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise Failed(
            f"{name} is not installed: install PostgreSQL's client tools "
            "(Debian: apt-get install postgresql-client) in the server's major version"
        )
    return found


def _counts(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            return {
                "alembic_revision": revision,
                "credentials": conn.execute(text("SELECT count(*) FROM credential")).scalar(),
                "status_lists": conn.execute(text("SELECT count(*) FROM status_list")).scalar(),
                "issuer_keys": conn.execute(text("SELECT count(*) FROM issuer_key")).scalar(),
            }
    finally:
        engine.dispose()


def backup(settings: Settings, dest: Path) -> dict[str, Any]:
    url = make_url(settings.resolved_database_url)
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o700)  # the key file and everyone's personal data
    files = []
    if url.get_backend_name() == "sqlite":
        target = dest / SQLITE
        src = sqlite3.connect(_sqlite_path(url))
        out = sqlite3.connect(target)
        try:
            src.backup(out)  # consistent while the service writes (SQLite online backup)
        finally:
            out.close()
            src.close()
        files.append(target)
    else:
        target = dest / DUMP
        subprocess.run(  # noqa: S603 - PostgreSQL's own tool, no shell
            [_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(target), _libpq(url)],
            check=True,
        )
        files.append(target)
    keyfile = Path(settings.data_dir) / KEYFILE
    if keyfile.is_file():
        shutil.copy2(keyfile, dest / KEYFILE)
        os.chmod(dest / KEYFILE, 0o600)
        files.append(dest / KEYFILE)
    manifest = {
        "created_at": utcnow().isoformat(),
        "database": url.get_backend_name(),
        "base_url": settings.public_base_url,
        "master_key": "file" if keyfile.is_file() else "MICROCRED_SECRET_KEY (not in the backup)",
        "files": {f.name: _sha256(f) for f in files},
    } | _counts(settings.resolved_database_url)
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _empty(url: str) -> bool:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return not inspect(conn).get_table_names()
    finally:
        engine.dispose()


def restore(settings: Settings, src: Path) -> dict[str, Any]:
    manifest = json.loads((src / MANIFEST).read_text())
    for name, digest in manifest["files"].items():
        if _sha256(src / name) != digest:
            raise Failed(f"{src / name} differs from the backup's manifest: a damaged copy")
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() != manifest["database"]:
        raise Failed(
            f"the backup is of a {manifest['database']} database and MICROCRED_DATABASE_URL "
            f"names a {url.get_backend_name()} one"
        )
    if url.get_backend_name() == "sqlite":
        path = _sqlite_path(url)
        if path.exists() and path.stat().st_size > 0:
            raise Failed(f"{path} exists: restore into a new path, or move it away first")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / SQLITE, path)
    else:
        if not _empty(settings.resolved_database_url):
            raise Failed(f"database {url.database} has tables: restore into an empty database")
        subprocess.run(  # noqa: S603 - PostgreSQL's own tool, no shell
            [
                _tool("pg_restore"),
                "--no-owner",
                "--exit-on-error",
                "--dbname",
                _libpq(url),
                str(src / DUMP),
            ],
            check=True,
        )
    if (src / KEYFILE).is_file():
        keyfile = Path(settings.data_dir) / KEYFILE
        keyfile.parent.mkdir(parents=True, exist_ok=True)
        if keyfile.exists() and keyfile.read_bytes() != (src / KEYFILE).read_bytes():
            raise Failed(f"{keyfile} exists and holds another key: move it away first")
        shutil.copy2(src / KEYFILE, keyfile)
        os.chmod(keyfile, 0o600)
    return manifest


def check(settings: Settings, *, expect: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every credential verifies offline; every status list signs again (rolled back)."""
    if settings.secret_key is None and not (Path(settings.data_dir) / KEYFILE).is_file():
        raise Failed(
            f"no master key: neither MICROCRED_SECRET_KEY nor {Path(settings.data_dir) / KEYFILE}; "
            "set the key the backed-up deployment ran with (the signing keys and stored "
            "secrets are encrypted with it)"
        )
    secretbox.configure(secretbox.load_master_key(settings))
    engine = make_engine(settings.resolved_database_url)
    problems: list[str] = []
    verified = revoked = resigned = 0
    try:
        settings = identity.settle(engine, settings, strict=False)
        now = utcnow()
        with db_session(engine) as s:
            for cred in s.exec(select(Credential).order_by(Credential.id)):  # type: ignore[arg-type]
                for form in [cred.document] + ([cred.jwt] if cred.jwt else []):
                    report = issuer_service.verify_input(s, settings, form, now=now)
                    failed = [c.name for c in report.checks if not c.ok]
                    if cred.revoked and failed == ["status"]:
                        revoked += 1
                    elif report.valid and not cred.revoked:
                        verified += 1
                    else:
                        problems.append(f"credential {cred.uuid}: {'; '.join(report.reasons)}")
        # Re-signing needs the private keys, decrypted with the master key: flip one
        # credential's bit on each list (the list is signed anew), verify, roll back.
        with db_session(engine, write=True) as s:
            for status in s.exec(select(StatusList).order_by(StatusList.id)):  # type: ignore[arg-type]
                cred = s.exec(
                    select(Credential).where(Credential.status_list_id == status.id)
                ).first()
                if cred is None:
                    continue
                flip = issuer_service.unrevoke if cred.revoked else issuer_service.revoke
                before = status.version
                flip(
                    s,
                    settings=settings,
                    uuid=cred.uuid,
                    reason="restore check",
                    actor="check",
                    now=now,
                )
                report = issuer_service.verify_input(s, settings, cred.document, now=now)
                status_ok = next(c.ok for c in report.checks if c.name == "status")
                if status.version != before + 1 or status_ok != (not cred.revoked):
                    problems.append(f"status list {status.id} did not sign again")
                else:
                    resigned += 1
            s.rollback()
    except secretbox.SecretBoxError as exc:
        problems.append(f"{exc.detail}: {exc.hint or ''}")
    finally:
        engine.dispose()
    counts = _counts(settings.resolved_database_url)
    if expect is not None:
        for key in ("alembic_revision", "credentials", "status_lists", "issuer_keys"):
            if counts[key] != expect[key]:
                problems.append(f"{key}: {counts[key]} after restore, {expect[key]} backed up")
    result = counts | {
        "verified": verified,
        "revoked_and_verified": revoked,
        "status_lists_resigned": resigned,
        "problems": problems,
    }
    if problems:
        raise Failed(json.dumps(result, indent=2))
    return result


def destroy(settings: Settings) -> None:
    """Lose the database and the key file, as a dead machine would (drill only)."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        path = _sqlite_path(url)
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)
    else:
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE "{url.database}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{url.database}"'))
        finally:
            admin.dispose()
    (Path(settings.data_dir) / KEYFILE).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("backup", "restore", "drill"):
        sub.add_parser(name).add_argument("dir", type=Path)
    sub.add_parser("check")
    args = parser.parse_args(argv)
    settings = get_settings()
    try:
        if args.command == "backup":
            out: dict[str, Any] = backup(settings, args.dir)
        elif args.command == "restore":
            out = restore(settings, args.dir)
        elif args.command == "check":
            out = check(settings)
        else:
            manifest = backup(settings, args.dir)
            destroy(settings)
            restore(settings, args.dir)
            out = check(settings, expect=manifest)
    except Failed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
