"""Baking: carry a credential inside its badge image, and read it back.

Open Badges 3.0 §"Baked badges" (``ob_v3p0/docformat.md``):

* PNG — exactly one ``iTXt`` chunk with keyword ``openbadgecredential``, uncompressed; its
  text is the credential JSON (embedded proof) or the compact JWS of a VC-JWT.
* SVG — the root ``<svg>`` declares ``xmlns:openbadges="https://purl.imsglobal.org/ob/v3p0"``
  and its first child is ``<openbadges:credential>``: a JWS goes in the ``verify``
  attribute, JSON goes in the element content as CDATA.

Errors::

    BadInput
     └── BakingError   not a PNG/SVG, broken chunks or XML, already baked, unusable payload

Baking an image that already carries a credential is refused (the spec forbids a second
chunk and lets the implementer choose between refusing and overwriting); pass
``replace=True`` to overwrite on purpose.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Literal
from xml.parsers import expat

from service.errors import BadInput

__all__ = [
    "OB3_SVG_NAMESPACE",
    "PNG_KEYWORD",
    "BakedCredential",
    "BakingError",
    "bake",
    "bake_png",
    "bake_png_ob2",
    "bake_svg",
    "png_chunks",
    "unbake",
    "unbake_png",
    "unbake_svg",
    "write_png",
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_KEYWORD = b"openbadgecredential"
OB2_PNG_KEYWORD = b"openbadges"
OB3_SVG_NAMESPACE = "https://purl.imsglobal.org/ob/v3p0"
OB2_SVG_NAMESPACE = "http://openbadges.org"
SVG_NAMESPACE = "http://www.w3.org/2000/svg"

# Badge images are small; anything larger is a mistake or an attack on the parser.
MAX_IMAGE_BYTES = 8 * 1024 * 1024
# A baked credential is a few KB; a compressed iTXt from elsewhere must not inflate without end.
MAX_TEXT_BYTES = 2 * 1024 * 1024

_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+$")


class BakingError(BadInput):
    code = "baking_failed"
    title = "The badge image cannot be baked or read"


@dataclass(frozen=True)
class BakedCredential:
    """What an image carries: the text exactly as baked, and which form it is."""

    text: str
    format: Literal["json", "jwt"]

    @property
    def document(self) -> dict[str, Any] | None:
        """The credential as a dict for the JSON form; ``None`` for a JWS."""
        if self.format != "json":
            return None
        value = json.loads(self.text)
        return value if isinstance(value, dict) else None


_NOT_XML_TEXT = re.compile("[\ud800-\udfff\ufffe\uffff]")


def _payload(credential: dict[str, Any] | str) -> BakedCredential:
    if isinstance(credential, dict):
        text = json.dumps(credential, ensure_ascii=False, separators=(",", ":"))
        # Lone surrogates cannot be encoded as UTF-8 and U+FFFE/U+FFFF are not XML
        # characters: written as JSON escapes they read back as the same document.
        text = _NOT_XML_TEXT.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
        return BakedCredential(text=text, format="json")
    if isinstance(credential, str):
        stripped = credential.strip()
        if _JWS.match(stripped):
            return BakedCredential(text=stripped, format="jwt")
        raise BakingError(
            "the credential to bake is a string but not a compact JWS (three base64url parts)",
            hint="Pass the credential as a dict for JSON, or the VC-JWT string as issued.",
        )
    raise BakingError(f"cannot bake a {type(credential).__name__}; expected a dict or a JWS")


def _classify(text: str, where: str) -> BakedCredential:
    stripped = text.strip()
    if _JWS.match(stripped):
        return BakedCredential(text=stripped, format="jwt")
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise BakingError(
            f"the {where} holds text that is neither JSON nor a compact JWS ({exc.msg})"
        ) from None
    if not isinstance(value, dict):
        raise BakingError(f"the {where} holds JSON that is not an object")
    return BakedCredential(text=stripped, format="json")


def _check_size(data: bytes) -> None:
    if len(data) > MAX_IMAGE_BYTES:
        raise BakingError(
            f"the image is {len(data)} bytes; badge images are limited to {MAX_IMAGE_BYTES}",
            hint="Use a smaller badge image (a few hundred KB at most is typical).",
        )


# --- PNG ---------------------------------------------------------------------------------


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Split a PNG into ``(type, body)`` chunks, checking signature, lengths and CRCs.

    Raises:
        BakingError: the bytes are not a well-formed PNG.
    """
    _check_size(data)
    if not data.startswith(PNG_SIGNATURE):
        raise BakingError("the file is not a PNG image (its signature is missing)")
    chunks: list[tuple[bytes, bytes]] = []
    pos = len(PNG_SIGNATURE)
    while pos < len(data):
        if pos + 8 > len(data):
            raise BakingError("the PNG is truncated inside a chunk header")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 8 + length + 4
        if end > len(data):
            raise BakingError(f"the PNG is truncated inside a {kind!r} chunk")
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(kind + body) != crc:
            raise BakingError(f"the PNG is damaged: CRC mismatch in a {kind!r} chunk")
        chunks.append((kind, body))
        pos = end
        if kind == b"IEND":
            break
    if not chunks or chunks[0][0] != b"IHDR":
        raise BakingError("the PNG does not start with an IHDR chunk")
    if chunks[-1][0] != b"IEND":
        raise BakingError("the PNG has no IEND chunk (it is truncated)")
    return chunks


def _itxt_fields(body: bytes) -> tuple[bytes, str] | None:
    """Return ``(keyword, text)`` of an iTXt body, or None if it is malformed."""
    keyword, sep, rest = body.partition(b"\x00")
    if not sep or len(rest) < 2:
        return None
    compressed, method = rest[0], rest[1]
    rest = rest[2:]
    _language, sep1, rest = rest.partition(b"\x00")
    _translated, sep2, text = rest.partition(b"\x00")
    if not (sep1 and sep2):
        return None
    if compressed:
        if method != 0:
            return None
        inflater = zlib.decompressobj()
        try:
            text = inflater.decompress(text, MAX_TEXT_BYTES)
        except zlib.error:
            return None
        if inflater.unconsumed_tail:
            return None
    try:
        return keyword, text.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _credential_chunks(chunks: list[tuple[bytes, bytes]]) -> list[int]:
    found = []
    for i, (kind, body) in enumerate(chunks):
        if kind == b"iTXt" and body.split(b"\x00", 1)[0] == PNG_KEYWORD:
            found.append(i)
    return found


def _insert_itxt(chunks: list[tuple[bytes, bytes]], keyword: bytes, text: str) -> bytes:
    # keyword NUL, compression flag 0, method 0, empty language tag NUL, empty translation NUL
    body = keyword + b"\x00\x00\x00" + b"\x00" + b"\x00" + text.encode("utf-8")
    out = [PNG_SIGNATURE]
    for kind, chunk_body in chunks[:-1]:
        out.append(_chunk(kind, chunk_body))
    out.append(_chunk(b"iTXt", body))
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


def bake_png_ob2(image: bytes, assertion: dict[str, Any]) -> bytes:
    """Bake an Open Badges 2.0 hosted assertion (``iTXt`` keyword ``openbadges``, JSON).

    Raises:
        BakingError: not a PNG, damaged, or already carrying an OB 2.0 assertion.
    """
    chunks = png_chunks(image)
    if any(
        kind in (b"iTXt", b"tEXt") and body.split(b"\x00", 1)[0] == OB2_PNG_KEYWORD
        for kind, body in chunks
    ):
        raise BakingError("the image already carries an Open Badges 2.0 assertion")
    return _insert_itxt(chunks, OB2_PNG_KEYWORD, json.dumps(assertion, separators=(",", ":")))


def bake_png(image: bytes, credential: dict[str, Any] | str, *, replace: bool = False) -> bytes:
    """Bake a credential into a PNG badge image (OB 3.0 docformat, PNG).

    Args:
        image: The PNG badge image.
        credential: The credential as a dict (baked as JSON) or a compact JWS (VC-JWT).
        replace: Overwrite a credential already baked into the image instead of refusing.

    Returns:
        The PNG with one uncompressed ``iTXt`` chunk ``openbadgecredential`` before IEND.

    Raises:
        BakingError: not a PNG, damaged, already baked (without ``replace``), bad payload.
    """
    payload = _payload(credential)
    chunks = png_chunks(image)
    existing = _credential_chunks(chunks)
    if existing and not replace:
        raise BakingError(
            "the image already carries a baked credential; a PNG may hold only one",
            hint="Bake into the original, unbaked badge image (or pass replace=True).",
        )
    drop = set(existing)
    kept = [c for i, c in enumerate(chunks) if i not in drop]
    return _insert_itxt(kept, PNG_KEYWORD, payload.text)


def unbake_png(image: bytes) -> BakedCredential | None:
    """Read the credential baked into a PNG.

    Returns:
        The baked credential, or None when the PNG carries none.

    Raises:
        BakingError: not a PNG, damaged, more than one credential chunk, unreadable text,
            or an Open Badges 2.0 bake (keyword ``openbadges``), which this reader names.
    """
    chunks = png_chunks(image)
    found = _credential_chunks(chunks)
    if len(found) > 1:
        raise BakingError("the PNG carries more than one openbadgecredential chunk")
    if not found:
        for kind, body in chunks:
            if kind in (b"iTXt", b"tEXt") and body.split(b"\x00", 1)[0] == OB2_PNG_KEYWORD:
                raise BakingError(
                    "the PNG carries an Open Badges 2.0 assertion (keyword 'openbadges'), "
                    "not an Open Badges 3.0 credential"
                )
        return None
    fields = _itxt_fields(chunks[found[0]][1])
    if fields is None:
        raise BakingError("the openbadgecredential chunk is malformed")
    return _classify(fields[1], "openbadgecredential chunk")


def write_png(width: int, height: int, rgba_rows: list[bytes]) -> bytes:
    """Encode 8-bit RGBA rows (``width * 4`` bytes each) as a PNG."""
    if len(rgba_rows) != height or any(len(r) != width * 4 for r in rgba_rows):
        raise ValueError("rows do not match the image size")
    raw = b"".join(b"\x00" + row for row in rgba_rows)  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"".join(
        [
            PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(raw, 9)),
            _chunk(b"IEND", b""),
        ]
    )


# --- SVG ---------------------------------------------------------------------------------


@dataclass
class _SvgScan:
    root_start: int = -1
    root_name: str = ""
    depth: int = 0
    credentials: int = 0
    ob2_assertions: int = 0
    verify: str | None = None
    text: list[str] | None = None
    in_credential: bool = False
    declared_prefix: str | None = None


def _scan_svg(data: bytes) -> _SvgScan:
    """Parse an SVG with entity declarations refused, and note where things are."""
    _check_size(data)
    scan = _SvgScan()
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def refuse_entities(*_args: object) -> int:
        # Entity declarations are how "billion laughs" and external entities get in.
        raise BakingError("the SVG declares XML entities, which are refused for safety")

    def start(name: str, attrs: dict[str, str]) -> None:
        if scan.depth == 0:
            scan.root_start = parser.CurrentByteIndex
            scan.root_name = name
        if name == f"{OB3_SVG_NAMESPACE} credential":
            scan.credentials += 1
            scan.verify = attrs.get("verify")
            scan.text = []
            scan.in_credential = True
        elif name == f"{OB2_SVG_NAMESPACE} assertion":
            scan.ob2_assertions += 1
        scan.depth += 1

    def end(name: str) -> None:
        scan.depth -= 1
        if name == f"{OB3_SVG_NAMESPACE} credential":
            scan.in_credential = False

    def chars(text: str) -> None:
        if scan.in_credential and scan.text is not None:
            scan.text.append(text)

    def ns_start(prefix: str | None, uri: str) -> None:
        if prefix == "openbadges" and scan.depth == 0:
            scan.declared_prefix = uri

    parser.EntityDeclHandler = refuse_entities
    parser.UnparsedEntityDeclHandler = refuse_entities
    parser.ExternalEntityRefHandler = refuse_entities
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartNamespaceDeclHandler = ns_start
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise BakingError(f"the SVG is not well-formed XML ({exc})") from None
    if scan.root_name != f"{SVG_NAMESPACE} svg":
        raise BakingError(
            "the file is not an SVG image (its root element is not <svg> in the SVG namespace)"
        )
    return scan


def _end_of_start_tag(data: bytes, start: int) -> int:
    """Index just past the ``>`` closing the start tag at ``start`` (quotes respected)."""
    quote = 0
    for i in range(start, len(data)):
        c = data[i]
        if quote:
            if c == quote:
                quote = 0
        elif c in (0x22, 0x27):
            quote = c
        elif c == 0x3E:
            return i + 1
    raise BakingError("the SVG root start tag is not closed")


def _cdata(text: str) -> str:
    # "]]>" would end the section early; split it across two sections.
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


_CREDENTIAL_ELEMENT = re.compile(
    rb"<openbadges:credential\b[^>]*?(?:/>|>.*?</openbadges:credential\s*>)\s*", re.S
)


def bake_svg(image: bytes, credential: dict[str, Any] | str, *, replace: bool = False) -> bytes:
    """Bake a credential into an SVG badge image (OB 3.0 docformat, SVG).

    The original bytes are kept as they are; the namespace declaration is added to the root
    ``<svg>`` tag when missing and ``<openbadges:credential>`` becomes its first child.

    Raises:
        BakingError: not a well-formed SVG, entity declarations, already baked (without
            ``replace``), the ``openbadges`` prefix bound elsewhere, bad payload.
    """
    payload = _payload(credential)
    scan = _scan_svg(image)
    if scan.credentials:
        if not replace:
            raise BakingError(
                "the image already carries a baked credential; an SVG may hold only one",
                hint="Bake into the original, unbaked badge image (or pass replace=True).",
            )
        image, n = _CREDENTIAL_ELEMENT.subn(b"", image)
        if n != scan.credentials:
            raise BakingError("the baked credential in this SVG cannot be located to replace it")
        scan = _scan_svg(image)
    if scan.declared_prefix not in (None, OB3_SVG_NAMESPACE):
        raise BakingError(
            "the SVG binds the prefix 'openbadges' to another namespace "
            f"({scan.declared_prefix}); it cannot also carry an OB 3.0 credential"
        )
    tag_end = _end_of_start_tag(image, scan.root_start)
    start_tag = image[scan.root_start : tag_end]
    if scan.declared_prefix is None:
        close = 2 if start_tag.endswith(b"/>") else 1
        start_tag = (
            start_tag[:-close]
            + f' xmlns:openbadges="{OB3_SVG_NAMESPACE}"'.encode()
            + start_tag[-close:]
        )
    if start_tag.endswith(b"/>"):  # an empty <svg/>: open it so it can hold the element
        start_tag = start_tag[:-2] + b">"
        tail = b"</svg>" + image[tag_end:]
    else:
        tail = image[tag_end:]
    if payload.format == "jwt":  # base64url and dots (_JWS): nothing to escape in an attribute
        element = f'<openbadges:credential verify="{payload.text}"/>'
    else:
        element = f"<openbadges:credential>{_cdata(payload.text)}</openbadges:credential>"
    baked = image[: scan.root_start] + start_tag + element.encode("utf-8") + tail
    _scan_svg(baked)  # the result must itself be well-formed
    return baked


def unbake_svg(image: bytes) -> BakedCredential | None:
    """Read the credential baked into an SVG.

    Returns:
        The baked credential, or None when the SVG carries none.

    Raises:
        BakingError: not a well-formed SVG, more than one credential, an empty element, an
            Open Badges 2.0 bake, or text that is neither JSON nor a JWS.
    """
    scan = _scan_svg(image)
    if scan.credentials > 1:
        raise BakingError("the SVG carries more than one openbadges:credential element")
    if not scan.credentials:
        if scan.ob2_assertions:
            raise BakingError(
                "the SVG carries an Open Badges 2.0 assertion (openbadges:assertion), "
                "not an Open Badges 3.0 credential"
            )
        return None
    if scan.verify:
        baked = _classify(scan.verify, "verify attribute")
        if baked.format != "jwt":
            raise BakingError("the verify attribute must hold a compact JWS")
        return baked
    text = "".join(scan.text or [])
    if not text.strip():
        raise BakingError("the openbadges:credential element is empty")
    return _classify(text, "openbadges:credential element")


# --- either ------------------------------------------------------------------------------


def _kind(image: bytes) -> Literal["png", "svg"]:
    if image.startswith(PNG_SIGNATURE):
        return "png"
    head = image[:2048].lstrip().lower()
    if head.startswith((b"<?xml", b"<svg", b"<!--", b"<!doctype svg")) or b"<svg" in head:
        return "svg"
    raise BakingError(
        "the file is neither a PNG nor an SVG image",
        hint="Open Badges 3.0 baking is defined for PNG and SVG only.",
    )


def bake(image: bytes, credential: dict[str, Any] | str, *, replace: bool = False) -> bytes:
    """Bake into a PNG or an SVG, whichever ``image`` is (see :func:`bake_png`)."""
    if _kind(image) == "png":
        return bake_png(image, credential, replace=replace)
    return bake_svg(image, credential, replace=replace)


def unbake(image: bytes) -> BakedCredential | None:
    """Read a baked credential from a PNG or an SVG (see :func:`unbake_png`)."""
    if _kind(image) == "png":
        return unbake_png(image)
    return unbake_svg(image)
