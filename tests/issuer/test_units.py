"""Pure helpers: multibase, status bits, did:web, Accept negotiation, input parsing."""

from __future__ import annotations

import gzip

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.issuer import keys, multibase, statuslist, verify


@given(st.binary(max_size=80))
def test_base58_round_trip(data: bytes) -> None:
    assert multibase.decode_base58btc(multibase.encode_base58btc(data)) == data


@given(st.binary(max_size=200))
def test_base64url_round_trip(data: bytes) -> None:
    encoded = multibase.encode_base64url(data)
    assert encoded.startswith("u") and "=" not in encoded
    assert multibase.decode_base64url(encoded) == data


def test_multikey_rejects_other_codecs() -> None:
    with pytest.raises(multibase.MultibaseError):
        multibase.decode_multikey_ed25519(multibase.encode_base58btc(b"\x12\x00" + bytes(32)))
    with pytest.raises(multibase.MultibaseError):
        multibase.decode_base58btc("z0OIl")


@given(st.sets(st.integers(min_value=0, max_value=131071), max_size=30))
def test_status_bits_round_trip(indexes: set[int]) -> None:
    bits = statuslist.empty()
    for i in indexes:
        bits = statuslist.set_bit(bits, i, True)
    decoded = statuslist.decode_list(statuslist.encode_list(bits))
    assert all(statuslist.get_bit(decoded, i) for i in indexes)
    assert int.from_bytes(decoded, "big").bit_count() == len(indexes)


def test_status_bit_order_is_msb_first() -> None:
    bits = statuslist.set_bit(statuslist.empty(), 0, True)
    assert bits[0] == 0x80
    assert statuslist.set_bit(bits, 0, False) == statuslist.empty()


def test_status_list_refuses_short_lists_and_bombs() -> None:
    with pytest.raises(statuslist.StatusListError, match="fewer than"):
        statuslist.decode_list(multibase.encode_base64url(gzip.compress(bytes(100))))
    bomb = multibase.encode_base64url(gzip.compress(bytes(20 * 1024 * 1024)))
    with pytest.raises(statuslist.StatusListError, match="size limit"):
        statuslist.decode_list(bomb)
    with pytest.raises(statuslist.StatusListError, match="gzip"):
        statuslist.decode_list("uAAAA")
    with pytest.raises(statuslist.StatusListError):
        statuslist.empty(1000)


def test_spec_example_empty_list_decodes() -> None:
    # vc-bitstring-status-list §2.2 example encodedList (an empty 16 KB list).
    example = "uH4sIAAAAAAAAA-3BMQEAAADCoPVPbQwfoAAAAAAAAAAAAAAAAAAAAIC3AYbSVKsAQAAA"
    assert statuslist.decode_list(example) == bytes(16384)


@pytest.mark.parametrize(
    ("base", "did", "url"),
    [
        ("https://tool.test", "did:web:tool.test", "https://tool.test/.well-known/did.json"),
        (
            "https://tool.test:8443/",
            "did:web:tool.test%3A8443",
            "https://tool.test:8443/.well-known/did.json",
        ),
        (
            "https://uni.example/micro/cred",
            "did:web:uni.example:micro:cred",
            "https://uni.example/micro/cred/did.json",
        ),
    ],
)
def test_did_web(base: str, did: str, url: str) -> None:
    assert keys.did_web(base) == did
    assert keys.did_web_url(did) == url


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        ('{"proof": [], "id": "x"}', "ldp"),
        ('{"id": "x"}', "unknown"),
        ("aaa.bbb.ccc", "jwt"),
        ('"aaa.bbb.ccc"', "jwt"),
        ("[1, 2]", "unknown"),
        ("plain text", "unknown"),
        (b"\xff\xfe", "unknown"),
    ],
)
def test_parse_input(data: str | bytes, fmt: str) -> None:
    assert verify.parse_input(data)[0] == fmt
