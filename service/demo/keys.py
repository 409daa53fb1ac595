"""The demo platform's signing key: RSA-2048, generated once and kept in a file.

The key lives in ``<data_dir>/demo/platform-key.pem`` (mode 0600), so restarts keep the
same ``kid`` and the tool's cached key set stays valid. Its ``kid`` is the RFC 7638
thumbprint of the public key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from service import jws

__all__ = ["load_or_create"]

_lock = threading.Lock()


def _thumbprint(pem: bytes) -> str:
    probe = jws.load_private_key(pem, kid="probe", alg="RS256")
    # RFC 7638 §3.2: the required members only, sorted, no whitespace.
    required = {k: probe.public.jwk[k] for k in ("e", "kty", "n")}
    digest = hashlib.sha256(json.dumps(required, separators=(",", ":")).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def load_or_create(path: Path) -> jws.PrivateKey:
    """Load the key at ``path``, creating it (0600) on first use."""
    with _lock:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
            os.replace(tmp, path)
        pem = path.read_bytes()
    return jws.load_private_key(pem, kid=_thumbprint(pem), alg="RS256")
