"""Baking and unbaking per OB 3.0 docformat: PNG iTXt and SVG openbadges:credential."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.issuer import badge_image, baking

JWS = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImtleS0xIiwidHlwIjoiSldUIn0.eyJqdGkiOiJ1cm46dXVpZDoxIn0.c2ln"
DOC: dict[str, Any] = {
    "@context": ["https://www.w3.org/ns/credentials/v2"],
    "id": "urn:uuid:1",
    "type": ["VerifiableCredential", "OpenBadgeCredential"],
    "name": "Données — ünïcode ✓ and ]]> and <tags>",
}


def png() -> bytes:
    return badge_image.default_badge_png(level="Intermediate", rank=2)


def svg() -> bytes:
    return badge_image.default_badge_svg(level="Intermediate", rank=2, title="A badge")


def itxt_chunks(data: bytes) -> list[bytes]:
    return [body for kind, body in baking.png_chunks(data) if kind == b"iTXt"]


# --- PNG ---------------------------------------------------------------------------------


def test_png_json_round_trip_and_chunk_layout() -> None:
    baked = baking.bake_png(png(), DOC)
    result = baking.unbake_png(baked)
    assert result is not None and result.format == "json"
    assert result.document == DOC
    kinds = [k for k, _ in baking.png_chunks(baked)]
    assert kinds[-2:] == [b"iTXt", b"IEND"]  # placed just before IEND
    (body,) = itxt_chunks(baked)
    keyword, rest = body.split(b"\x00", 1)
    assert keyword == b"openbadgecredential"
    assert rest[0] == 0 and rest[1] == 0  # compression flag and method: uncompressed
    assert rest[2:4] == b"\x00\x00"  # empty language tag and translated keyword


def test_png_jwt_round_trip_bakes_the_compact_jws_itself() -> None:
    baked = baking.bake_png(png(), JWS)
    (body,) = itxt_chunks(baked)
    assert body.endswith(JWS.encode())
    result = baking.unbake_png(baked)
    assert result == baking.BakedCredential(text=JWS, format="jwt")
    assert result.document is None


def test_png_double_bake_is_refused_and_replace_keeps_one_chunk() -> None:
    baked = baking.bake_png(png(), DOC)
    with pytest.raises(baking.BakingError, match="already carries"):
        baking.bake_png(baked, DOC)
    replaced = baking.bake_png(baked, JWS, replace=True)
    assert len(itxt_chunks(replaced)) == 1
    assert baking.unbake_png(replaced) == baking.BakedCredential(JWS, "jwt")


def test_unbaked_png_has_nothing() -> None:
    assert baking.unbake_png(png()) is None


def test_png_with_two_credential_chunks_is_rejected() -> None:
    baked = baking.bake_png(png(), DOC)
    chunks = baking.png_chunks(baked)
    doubled = [*chunks[:-1], chunks[-2], chunks[-1]]
    data = baking.PNG_SIGNATURE + b"".join(
        struct.pack(">I", len(b)) + k + b + struct.pack(">I", zlib.crc32(k + b)) for k, b in doubled
    )
    with pytest.raises(baking.BakingError, match="more than one"):
        baking.unbake_png(data)


def test_compressed_itxt_written_by_another_baker_is_still_read() -> None:
    text = zlib.compress(b'{"id":"urn:uuid:2"}')
    body = b"openbadgecredential\x00\x01\x00\x00\x00" + text
    chunk = (
        struct.pack(">I", len(body))
        + b"iTXt"
        + body
        + struct.pack(">I", zlib.crc32(b"iTXt" + body))
    )
    plain = png()
    data = plain[:-12] + chunk + plain[-12:]
    result = baking.unbake_png(data)
    assert result is not None and result.document == {"id": "urn:uuid:2"}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"GIF89a" + d[6:], "not a PNG"),
        (lambda d: d[:40], "truncated"),
        (lambda d: d[:-12], "no IEND"),
        (lambda d: d[:30] + bytes([d[30] ^ 0xFF]) + d[31:], "CRC mismatch"),
    ],
    ids=["signature", "truncated", "no-iend", "crc"],
)
def test_malformed_png_is_rejected_with_a_reason(mutate: Any, message: str) -> None:
    damaged = mutate(png())
    with pytest.raises(baking.BakingError, match=message):
        baking.bake_png(damaged, DOC)
    with pytest.raises(baking.BakingError, match=message):
        baking.unbake_png(damaged)


def test_ob2_png_is_named_as_such() -> None:
    body = b"openbadges\x00\x00\x00\x00\x00" + b'{"type":"Assertion"}'
    chunk = (
        struct.pack(">I", len(body))
        + b"iTXt"
        + body
        + struct.pack(">I", zlib.crc32(b"iTXt" + body))
    )
    plain = png()
    with pytest.raises(baking.BakingError, match=r"Open Badges 2\.0"):
        baking.unbake_png(plain[:-12] + chunk + plain[-12:])


def test_payload_must_be_a_dict_or_a_jws() -> None:
    with pytest.raises(baking.BakingError, match="not a compact JWS"):
        baking.bake_png(png(), "hello world")


def test_garbage_in_the_chunk_is_reported() -> None:
    body = b"openbadgecredential\x00\x00\x00\x00\x00not json at all"
    chunk = (
        struct.pack(">I", len(body))
        + b"iTXt"
        + body
        + struct.pack(">I", zlib.crc32(b"iTXt" + body))
    )
    plain = png()
    with pytest.raises(baking.BakingError, match="neither JSON nor a compact JWS"):
        baking.unbake_png(plain[:-12] + chunk + plain[-12:])


def test_oversized_image_is_refused() -> None:
    with pytest.raises(baking.BakingError, match="limited"):
        baking.bake_png(baking.PNG_SIGNATURE + b"\x00" * (baking.MAX_IMAGE_BYTES + 1), DOC)


# --- SVG ---------------------------------------------------------------------------------

NS = "{https://purl.imsglobal.org/ob/v3p0}credential"


def test_svg_json_round_trip_with_cdata_and_first_child() -> None:
    baked = baking.bake_svg(svg(), DOC)
    assert b'xmlns:openbadges="https://purl.imsglobal.org/ob/v3p0"' in baked
    assert baked.count(b"xmlns:openbadges") == 1
    assert b"<![CDATA[" in baked
    root = ET.fromstring(baked)
    assert root[0].tag == NS  # directly after <svg>
    result = baking.unbake_svg(baked)
    assert result is not None and result.document == DOC  # "]]>" survived the CDATA split


def test_svg_jwt_goes_in_the_verify_attribute() -> None:
    baked = baking.bake_svg(svg(), JWS)
    root = ET.fromstring(baked)
    assert root[0].tag == NS and root[0].get("verify") == JWS
    assert baking.unbake_svg(baked) == baking.BakedCredential(JWS, "jwt")


def test_svg_double_bake_is_refused_and_replace_keeps_one() -> None:
    baked = baking.bake_svg(svg(), DOC)
    with pytest.raises(baking.BakingError, match="already carries"):
        baking.bake_svg(baked, DOC)
    replaced = baking.bake_svg(baked, JWS, replace=True)
    assert replaced.count(b"<openbadges:credential") == 1
    assert replaced.count(b"xmlns:openbadges") == 1
    assert baking.unbake_svg(replaced) == baking.BakedCredential(JWS, "jwt")


def test_svg_keeps_prolog_and_handles_self_closing_root() -> None:
    image = (
        b'<?xml version="1.0"?>\n<!-- a > comment -->'
        b'<svg xmlns="http://www.w3.org/2000/svg" data-x="a>b"/>'
    )
    baked = baking.bake_svg(image, DOC)
    assert baked.startswith(b'<?xml version="1.0"?>\n<!-- a > comment -->')
    result = baking.unbake(baked)
    assert result is not None and result.document == DOC
    assert ET.fromstring(baked).get("data-x") == "a>b"


def test_unbaked_svg_has_nothing() -> None:
    assert baking.unbake_svg(svg()) is None


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (b"<svg xmlns='http://www.w3.org/2000/svg'><g></svg>", "not well-formed"),
        (b"<html xmlns='http://www.w3.org/1999/xhtml'/>", "not an SVG"),
        (b"<svg/>", "not an SVG"),  # no SVG namespace
        (
            b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
            b'<svg xmlns="http://www.w3.org/2000/svg">&b;</svg>',
            "entities",
        ),
        (
            b'<!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<svg xmlns="http://www.w3.org/2000/svg">&x;</svg>',
            "entities",
        ),
    ],
    ids=["broken", "html", "no-namespace", "billion-laughs", "external-entity"],
)
def test_malformed_svg_is_rejected(image: bytes, message: str) -> None:
    with pytest.raises(baking.BakingError, match=message):
        baking.bake_svg(image, DOC)
    with pytest.raises(baking.BakingError, match=message):
        baking.unbake_svg(image)


def test_svg_prefix_bound_elsewhere_is_refused() -> None:
    image = b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:openbadges="http://openbadges.org"/>'
    with pytest.raises(baking.BakingError, match="another namespace"):
        baking.bake_svg(image, DOC)


def test_ob2_svg_is_named_as_such() -> None:
    image = (
        b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:openbadges="http://openbadges.org">'
        b'<openbadges:assertion verify="https://x.test/a"/></svg>'
    )
    with pytest.raises(baking.BakingError, match=r"Open Badges 2\.0"):
        baking.unbake_svg(image)


def test_empty_credential_element_is_reported() -> None:
    image = (
        b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:openbadges="https://purl.imsglobal.org/ob/v3p0">'
        b"<openbadges:credential/></svg>"
    )
    with pytest.raises(baking.BakingError, match="empty"):
        baking.unbake_svg(image)


# --- dispatch ----------------------------------------------------------------------------


def test_bake_dispatches_on_the_image_kind() -> None:
    assert baking.unbake(baking.bake(png(), DOC)) == baking.unbake_png(baking.bake_png(png(), DOC))
    assert baking.unbake(baking.bake(svg(), JWS)) == baking.BakedCredential(JWS, "jwt")
    with pytest.raises(baking.BakingError, match="neither a PNG nor an SVG"):
        baking.bake(b"GIF89a....", DOC)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(), json_values, min_size=1, max_size=6))
def test_any_json_credential_round_trips_through_both_formats(doc: dict[str, Any]) -> None:
    for image in (png(), svg()):
        result = baking.unbake(baking.bake(image, doc))
        assert result is not None and result.format == "json" and result.document == doc


@pytest.mark.parametrize("text", ["\ufffe", "\uffff", "\ud800", "a\udfffb"])
def test_text_that_xml_or_utf8_cannot_hold_round_trips_as_json_escapes(text: str) -> None:
    # found by the property test above: U+FFFE broke the SVG, a lone surrogate both formats
    doc = {"name": text, text: [text]}
    for image in (png(), svg()):
        result = baking.unbake(baking.bake(image, doc))
        assert result is not None and result.document == doc
