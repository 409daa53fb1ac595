"""Multibase and multicodec encodings used by Data Integrity proofs and status lists.

- base58btc with the ``z`` prefix: proof values and Multikey public keys
  (W3C Controller Documents §2.2.2 Multikey; vc-di-eddsa §2.1.1).
- base64url without padding with the ``u`` prefix: Bitstring Status List ``encodedList``
  (vc-bitstring-status-list §2.1).
"""

from __future__ import annotations

import base64

__all__ = [
    "ED25519_PUB_HEADER",
    "MultibaseError",
    "decode_base58btc",
    "decode_base64url",
    "decode_multikey_ed25519",
    "encode_base58btc",
    "encode_base64url",
    "encode_multikey_ed25519",
]

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}

# Multicodec varint header: ed25519-pub 0xed (as a varint).
ED25519_PUB_HEADER = b"\xed\x01"


class MultibaseError(ValueError):
    """A value is not valid multibase / multicodec data."""


def encode_base58btc(data: bytes) -> str:
    """Multibase base58btc (``z`` prefix): Bitcoin base58, leading zero bytes as ``1``."""
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, rem = divmod(n, 58)
        out.append(_ALPHABET[rem])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "z" + "1" * pad + "".join(reversed(out))


def decode_base58btc(text: str) -> bytes:
    """Bytes of a multibase base58btc (``z``) value."""
    if not text.startswith("z"):
        raise MultibaseError("expected a base58btc multibase value (prefix 'z')")
    digits, n = text[1:], 0
    for ch in digits:
        try:
            n = n * 58 + _INDEX[ch]
        except KeyError:
            raise MultibaseError(f"{ch!r} is not a base58 character") from None
    pad = len(digits) - len(digits.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * pad + body


def encode_base64url(data: bytes) -> str:
    """Multibase base64url without padding (``u`` prefix)."""
    return "u" + base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode_base64url(text: str) -> bytes:
    """Bytes of a multibase base64url (``u``) value."""
    if not text.startswith("u"):
        raise MultibaseError("expected a base64url multibase value (prefix 'u')")
    body = text[1:]
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError as exc:
        raise MultibaseError(f"invalid base64url: {exc}") from exc


def encode_multikey_ed25519(public_key: bytes) -> str:
    """The Multikey ``publicKeyMultibase`` of a raw 32-byte Ed25519 key (``z6Mk…``)."""
    if len(public_key) != 32:
        raise MultibaseError("an Ed25519 public key has 32 bytes")
    return encode_base58btc(ED25519_PUB_HEADER + public_key)


def decode_multikey_ed25519(value: str) -> bytes:
    """The raw 32-byte Ed25519 key inside a ``z6Mk…`` Multikey value."""
    raw = decode_base58btc(value)
    if not raw.startswith(ED25519_PUB_HEADER) or len(raw) != 34:
        raise MultibaseError("not an Ed25519 Multikey public key (expected z6Mk…)")
    return raw[2:]
