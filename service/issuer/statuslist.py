"""Bitstring Status List v1.0 (W3C Recommendation, May 2025): revocation bits.

- A list holds at least 131,072 entries (§6.1: smaller lists are rejected by verifiers as
  a privacy risk); index 0 is the most significant bit of the first byte (§3.2 step 4).
- ``encodedList`` is multibase base64url (``u`` prefix) of the GZIP of the bitstring
  (§2.1); gzip runs with ``mtime=0`` so the same bits always give the same string.
- Each credential gets a random unused index (§6.1 group privacy), never a sequence.
"""

from __future__ import annotations

import gzip
import secrets
import zlib
from collections.abc import Mapping
from typing import Any

from service.issuer import contexts, multibase

__all__ = [
    "MIN_SIZE",
    "StatusListError",
    "build_list_credential",
    "decode_list",
    "encode_list",
    "entry",
    "get_bit",
    "list_url",
    "random_index",
    "set_bit",
]

MIN_SIZE = 131072
MAX_DECODED = 16 * 1024 * 1024  # a 128-million-entry list; refuse gzip bombs beyond it


class StatusListError(ValueError):
    """A status list or entry is malformed."""


def empty(size: int = MIN_SIZE) -> bytes:
    """An all-zero bitstring of ``size`` entries."""
    if size < MIN_SIZE or size % 8:
        raise StatusListError(f"a status list needs at least {MIN_SIZE} entries, a multiple of 8")
    return bytes(size // 8)


def get_bit(bits: bytes, index: int) -> bool:
    """Whether entry ``index`` is set (index 0 = most significant bit of byte 0)."""
    if not 0 <= index < len(bits) * 8:
        raise StatusListError(f"index {index} is outside the list of {len(bits) * 8} entries")
    return bool(bits[index // 8] & (0x80 >> (index % 8)))


def set_bit(bits: bytes, index: int, value: bool) -> bytes:
    """A copy of ``bits`` with entry ``index`` set to ``value``."""
    if not 0 <= index < len(bits) * 8:
        raise StatusListError(f"index {index} is outside the list of {len(bits) * 8} entries")
    data = bytearray(bits)
    if value:
        data[index // 8] |= 0x80 >> (index % 8)
    else:
        data[index // 8] &= ~(0x80 >> (index % 8)) & 0xFF
    return bytes(data)


def encode_list(bits: bytes) -> str:
    """The ``encodedList`` of a bitstring: multibase base64url of its GZIP."""
    return multibase.encode_base64url(gzip.compress(bits, mtime=0))


def decode_list(encoded: str) -> bytes:
    """The bitstring of an ``encodedList`` (bounded: refuses decompression bombs)."""
    try:
        compressed = multibase.decode_base64url(encoded)
    except multibase.MultibaseError as exc:
        raise StatusListError(f"encodedList is not multibase base64url: {exc}") from None
    inflater = zlib.decompressobj(wbits=31)
    try:
        bits = inflater.decompress(compressed, MAX_DECODED + 1)
    except zlib.error as exc:
        raise StatusListError(f"encodedList is not gzip data: {exc}") from None
    if len(bits) > MAX_DECODED:
        raise StatusListError("encodedList decompresses beyond the size limit")
    if len(bits) * 8 < MIN_SIZE:
        raise StatusListError(
            f"status list has {len(bits) * 8} entries, fewer than the minimum {MIN_SIZE}"
        )
    return bits


def random_index(size: int) -> int:
    """A uniformly random index below ``size`` (cryptographic RNG)."""
    return secrets.randbelow(size)


def list_url(base_url: str, list_id: int) -> str:
    """The URL of a status list credential."""
    return f"{base_url.rstrip('/')}/status/{list_id}"


def entry(url: str, index: int, purpose: str = "revocation") -> dict[str, Any]:
    """The ``BitstringStatusListEntry`` a credential carries (§2.1)."""
    return {
        "id": f"{url}#{index}",
        "type": "BitstringStatusListEntry",
        "statusPurpose": purpose,
        "statusListIndex": str(index),
        "statusListCredential": url,
    }


def build_list_credential(
    *,
    url: str,
    issuer_id: str,
    bits: bytes,
    valid_from: str,
    purpose: str = "revocation",
) -> dict[str, Any]:
    """The unsigned ``BitstringStatusListCredential`` (§2.2); verifiers may cache it for
    five minutes (``ttl``, in milliseconds)."""
    return {
        "@context": [contexts.VC_V2],
        "id": url,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": issuer_id,
        "validFrom": valid_from,
        "credentialSubject": {
            "id": f"{url}#list",
            "type": "BitstringStatusList",
            "statusPurpose": purpose,
            "encodedList": encode_list(bits),
            "ttl": 300_000,
        },
    }


def parse_entry(status: Any) -> tuple[str, int, str]:
    """``(list URL, index, purpose)`` of a ``BitstringStatusListEntry``.

    Raises:
        StatusListError: not a Bitstring Status List entry, or malformed.
    """
    if not isinstance(status, Mapping):
        raise StatusListError("credentialStatus is not an object")
    if status.get("type") != "BitstringStatusListEntry":
        raise StatusListError(f"status type {status.get('type')!r} is not supported")
    url = status.get("statusListCredential")
    raw_index = status.get("statusListIndex")
    if not (
        isinstance(url, str)
        and isinstance(raw_index, str)
        and raw_index.isascii()
        and raw_index.isdigit()
    ):
        raise StatusListError("statusListCredential / statusListIndex are missing or malformed")
    if status.get("statusSize", 1) not in (1, "1"):
        raise StatusListError("only statusSize 1 is supported")
    return url, int(raw_index), str(status.get("statusPurpose", ""))
