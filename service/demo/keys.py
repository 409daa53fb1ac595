"""The demo platform's signing key: RSA-2048, generated once and kept in a file.

The key lives in ``<data_dir>/demo/platform-key.pem`` (mode 0600), so restarts keep the
same ``kid`` and the tool's cached key set stays valid. Its ``kid`` is the RFC 7638
thumbprint of the public key.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from service import jws

__all__ = ["load_or_create"]

_lock = threading.Lock()


def load_or_create(path: Path) -> jws.PrivateKey:
    """Load the key at ``path``, creating it (0600) on first use."""
    with _lock:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(jws.new_rsa_pem())
            os.replace(tmp, path)
        pem = path.read_bytes()
    return jws.thumbprinted(pem)
