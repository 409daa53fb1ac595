"""Encryption of secrets at rest (private keys, API tokens, client secrets).

AES-256-GCM with a key derived (HKDF-SHA256) from the master key ``MICROCRED_SECRET_KEY``.
Ciphertext format: ``v1.<urlsafe-b64(nonce || ciphertext+tag)>``. The master key is read
once per process; in development it is generated into ``DATA_DIR/secret.key`` (mode 0600).

Values are never logged: ``Secret`` wraps plaintext so that ``repr``/``str`` show ``***``.

A random token that is only ever compared (an API token, a web session's) is stored as its
``token_hash`` instead.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from service.errors import ServiceError
from service.settings import Settings

__all__ = [
    "SecretBoxError",
    "configure",
    "decrypt",
    "encrypt",
    "load_master_key",
    "token_hash",
]

log = logging.getLogger(__name__)

_PREFIX = "v1."
_aead: AESGCM | None = None


class SecretBoxError(ServiceError):
    code = "secret_key"
    status_code = 500
    title = "Secrets cannot be decrypted"


def load_master_key(settings: Settings) -> bytes:
    """The master key from settings, or the development key file (created if missing)."""
    if settings.secret_key is not None:
        raw = settings.secret_key.get_secret_value().encode()
        if len(raw) < 32:
            raise SecretBoxError(
                "MICROCRED_SECRET_KEY is too short",
                hint="Use at least 32 random characters, e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))'`.",
            )
        return raw
    if settings.environment == "production":
        raise SecretBoxError(
            "MICROCRED_SECRET_KEY is not set",
            hint="Production needs a master key for secrets at rest; set MICROCRED_SECRET_KEY.",
        )
    path = Path(settings.data_dir) / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
        log.warning("generated a development master key at %s", path)
    return path.read_text().strip().encode()


def configure(master_key: bytes) -> None:
    """Derive the data key from the master key (the app factory and the CLI, at start-up)."""
    global _aead
    data_key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"microcred-secretbox", info=b"v1"
    ).derive(master_key)
    _aead = AESGCM(data_key)  # one reference swapped: readers see the old box or the new


def _box() -> AESGCM:
    if _aead is None:
        raise SecretBoxError(
            "secret box used before configure()",
            hint="The app factory and CLI configure it from settings at start-up.",
        )
    return _aead


def encrypt(plaintext: str, *, context: str = "") -> str:
    """Encrypt ``plaintext``; ``context`` (e.g. table.column) is bound as associated data."""
    nonce = os.urandom(12)
    ct = _box().encrypt(nonce, plaintext.encode(), context.encode())
    return _PREFIX + base64.urlsafe_b64encode(nonce + ct).decode()


def decrypt(token: str, *, context: str = "") -> str:
    if not token.startswith(_PREFIX):
        raise SecretBoxError("stored secret has an unknown format")
    blob = base64.urlsafe_b64decode(token[len(_PREFIX) :])
    try:
        return _box().decrypt(blob[:12], blob[12:], context.encode()).decode()
    except InvalidTag as exc:
        raise SecretBoxError(
            "a stored secret could not be decrypted",
            hint="MICROCRED_SECRET_KEY differs from the key the secret was stored with.",
        ) from exc


def token_hash(token: str) -> str:
    """What is stored for a random token: its SHA-256, hex. The tokens carry 256 bits of
    entropy, so a plain SHA-256 (not a slow password hash) makes a stolen row useless."""
    return hashlib.sha256(token.encode()).hexdigest()
