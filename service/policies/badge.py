"""A competency's badge as an instructor designs it: its name, what each level's credential
says the learner can do (the criteria), and its image.

Only PNG images are taken: an SVG can carry script and external references, and the
default badge (``service.issuer.badge_image``) stands in for a competency without one. An
image is checked as a PNG (signature, chunk lengths and checksums, its size from the
header), bounded in bytes and pixels, refused when it already carries a baked credential,
and stored once under its SHA-256 (``BadgeImage``): a credential points at the image it
was issued with for good, whatever is uploaded later.

A competency of the institution's catalogue can be assessed in several courses; an
instructor changes its badge only while no other course assesses it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import struct
import zlib

from sqlmodel import Session, col, func, select

from service import audit
from service.db.models import BadgeImage, Competency, CourseCompetency
from service.errors import BadInput, Conflict
from service.policies import repository, service

__all__ = [
    "MAX_BYTES",
    "MAX_PIXELS",
    "MIN_PIXELS",
    "checked_png",
    "design",
    "image",
    "image_path",
    "image_url",
    "other_courses",
    "sha_of_url",
]

PATH_PREFIX = "/badge-images/"
MAX_BYTES = 512 * 1024
MIN_PIXELS = 64
MAX_PIXELS = 2048
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Keywords of an iTXt chunk that carries a baked credential (OB 2.0 and OB 3.0).
_BAKED = (b"openbadges\x00", b"openbadgecredential\x00")


def image_path(sha256: str) -> str:
    """Where the image is served (``service.web.badge_images``), under the public base URL."""
    return f"{PATH_PREFIX}{sha256}.png"


def image_url(base_url: str, sha256: str | None) -> str | None:
    """The image's public address (None for none: the default badge)."""
    return f"{base_url}{image_path(sha256)}" if sha256 else None


def sha_of_url(base_url: str, url: object) -> str | None:
    """The SHA-256 of one of our badge images from its address; None for any other."""
    prefix = f"{base_url}{PATH_PREFIX}"
    if not isinstance(url, str) or not url.startswith(prefix) or not url.endswith(".png"):
        return None
    sha = url[len(prefix) : -len(".png")]
    return sha if len(sha) == 64 and all(c in "0123456789abcdef" for c in sha) else None


def checked_png(data: bytes) -> tuple[int, int]:
    """The width and height of a PNG badge image that may be stored.

    Raises:
        BadInput: not a PNG, damaged, too large or too small, or already baked.
    """
    if data[:5] == b"<?xml" or b"<svg" in data[:1024]:
        raise BadInput(
            "image: SVG images are not taken (an SVG can carry script); upload a PNG",
            hint="Export the design as a PNG, square, at least 256 by 256 pixels.",
        )
    if not data.startswith(_SIGNATURE):
        raise BadInput("image: the file is not a PNG image", hint="Upload a PNG file.")
    if len(data) > MAX_BYTES:
        raise BadInput(
            f"image: the file is {len(data) // 1024} KB; a badge image may be "
            f"{MAX_BYTES // 1024} KB at most",
            hint="Save it smaller (512 by 512 pixels is plenty for a badge).",
        )
    at, size, seen_end = len(_SIGNATURE), None, False
    while at < len(data):
        if at + 8 > len(data):
            raise BadInput("image: the PNG is cut short")
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        body = data[at + 8 : at + 8 + length]
        crc = data[at + 8 + length : at + 12 + length]
        if len(body) != length or len(crc) != 4:
            raise BadInput("image: the PNG is cut short")
        if zlib.crc32(kind + body) != struct.unpack(">I", crc)[0]:
            raise BadInput("image: the PNG is damaged (a checksum does not match)")
        if size is None:
            if kind != b"IHDR" or length != 13:
                raise BadInput("image: the PNG has no header")
            size = struct.unpack(">II", body[:8])
        if kind == b"iTXt" and body.startswith(_BAKED):
            raise BadInput(
                "image: this PNG already carries a credential (it is a baked badge)",
                hint="Upload the original design, not a badge downloaded from a credential.",
            )
        at += 12 + length
        if kind == b"IEND":
            seen_end = True
            break
    if size is None or not seen_end:
        raise BadInput("image: the PNG is cut short")
    width, height = size
    if not (MIN_PIXELS <= width <= MAX_PIXELS and MIN_PIXELS <= height <= MAX_PIXELS):
        raise BadInput(
            f"image: {width} by {height} pixels; a badge image is {MIN_PIXELS} to "
            f"{MAX_PIXELS} pixels each way",
            hint="A square of 256 to 1024 pixels shows well everywhere.",
        )
    return width, height


def _store(session: Session, data: bytes, *, author: str, now: dt.datetime) -> str:
    width, height = checked_png(data)
    sha = hashlib.sha256(data).hexdigest()
    if session.get(BadgeImage, sha) is None:
        session.add(
            BadgeImage(
                sha256=sha, width=width, height=height, data=data, created_by=author, created_at=now
            )
        )
    return sha


def image(session: Session, sha256: str) -> BadgeImage | None:
    return session.get(BadgeImage, sha256)


def other_courses(session: Session, comp: Competency, course_id: int) -> int:
    """How many courses besides ``course_id`` assess the competency."""
    return session.exec(
        select(func.count())
        .select_from(CourseCompetency)
        .where(
            CourseCompetency.competency_id == comp.id,
            col(CourseCompetency.course_id) != course_id,
        )
    ).one()


def design(
    session: Session,
    *,
    course_id: int,
    competency_key: str,
    name: str,
    criteria: dict[str, str],
    image_data: bytes | None,
    remove_image: bool,
    author: str,
    now: dt.datetime,
) -> Competency:
    """Save the badge of a competency this course assesses (the caller commits).

    Raises:
        NotFound: no such competency. Conflict: it is not assessed in this course, or
            another course assesses it too. BadInput: an empty name or an image refused.
    """
    comp = service.competency(session, competency_key)
    assert comp.id is not None
    if repository.course_link(session, course_id, comp.id) is None:
        raise Conflict(f"{comp.name} is not assessed in this course")
    others = other_courses(session, comp, course_id)
    if others:
        raise Conflict(
            f"{comp.name} is also assessed in {others} other course"
            + ("s" if others != 1 else "")
            + "; its badge is the institution's",
            hint="Ask an administrator to change it, or create a competency of this course's own.",
        )
    fields: dict[str, object] = {}
    if " ".join(name.split()) != comp.name:
        fields["name"] = " ".join(name.split())
    wanted = {k: v.strip() for k, v in criteria.items() if v.strip()}
    if wanted != comp.level_descriptions:
        fields["level_descriptions"] = wanted
    if fields:
        service.update_competency(session, key=comp.key, author=author, **fields)
    if image_data:
        comp.image_sha256 = _store(session, image_data, author=author, now=now)
    elif remove_image:
        comp.image_sha256 = None
    if image_data or remove_image:
        session.add(comp)
        audit.record(
            session,
            audit.Scope(course_id=course_id),
            actor=author,
            action="competency.image_changed",
            subject=f"course:{course_id}",
            competency=comp.key,
            image=comp.image_sha256,
        )
    session.flush()
    return comp
