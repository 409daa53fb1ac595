"""Instructors design a competency's badge on the setup page (issue #17): name, criteria
per level and a PNG image, which the credentials issued afterwards carry as their
achievement's image and which their baked downloads are made from."""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import select

from service.db.engine import session as db_session
from service.db.models import Award, Competency, Course, Credential, Deployment, Person
from service.db.types import utcnow
from service.errors import BadInput, Conflict
from service.issuer import badge_image, baking
from service.policies import badge
from service.policies import service as policies
from tests import factories
from tests.flows.conftest import Live, launch, live, pull
from tests.flows.test_award_chain import _instructor

__all__ = ["live"]  # the demo tool and LMS on loopback (tests.flows.conftest)

DESIGN = badge_image.default_badge_png(level="advanced", rank=3)  # a 256 px PNG


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, *extra: bytes) -> bytes:
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + b"".join(extra) + _chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "SVG images"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'><script/></svg>", "SVG images"),
        (b"GIF89a....", "not a PNG"),
        (_png(32, 32), "32 by 32 pixels"),
        (_png(4000, 256), "4000 by 256 pixels"),
        (_png(256, 256)[:-6], "cut short"),
        (_png(256, 256)[:-1] + b"\x00", "damaged"),
        (_png(256, 256, _chunk(b"iTXt", b"openbadgecredential\x00\x00\x00\x00\x00{}")), "baked"),
        (_png(256, 256, _chunk(b"tEXt", b"x" * badge.MAX_BYTES)), "at most"),
    ],
)
def test_an_image_that_is_not_a_plain_png_badge_is_refused(data: bytes, said: str) -> None:
    with pytest.raises(BadInput) as err:
        badge.checked_png(data)
    assert said in err.value.detail


def test_a_png_badge_is_taken_with_its_size() -> None:
    assert badge.checked_png(DESIGN) == (256, 256)


@pytest.mark.db
def test_a_competency_another_course_assesses_keeps_the_institutions_badge(
    engine: Engine,
) -> None:
    with db_session(engine, write=True) as s:
        platform = factories.platform(s)
        dep = s.exec(select(Deployment).where(Deployment.platform_id == platform.id)).first()
        dep = dep or factories.deployment(s, platform)
        a = factories.course(s, dep, context_id="a")
        b = factories.course(s, dep, context_id="b")
        comp = factories.competency(s, "stats")
        for course in (a, b):
            policies.attach(s, course_id=course.id or 0, competency_row=comp)
        with pytest.raises(Conflict) as err:
            badge.design(
                s,
                course_id=a.id or 0,
                competency_key="stats",
                name="Statistics",
                criteria={},
                image_data=DESIGN,
                remove_image=False,
                author="person:1",
                now=utcnow(),
            )
    assert "also assessed in 1 other course" in err.value.detail


def test_the_designed_badge_is_in_the_credential_and_its_baked_download(live: Live) -> None:
    tab, csrf = _instructor(live)
    key = "data-investigation"
    criteria = {
        "criteria_beginning": "Asks a question data can answer.",
        "criteria_intermediate": "Cleans a data set and documents every change.",
        "criteria_advanced": "Designs a reproducible investigation.",
    }
    body = {"mc_session": tab.token, "csrf": csrf, "name": "Data investigation"} | criteria
    saved = tab.http.post(
        f"/app/setup/competencies/{key}/badge",
        data=body,
        files={"image": ("badge.png", DESIGN, "image/png")},
    )
    assert saved.status_code == 303, saved.text[:800]
    sha = hashlib.sha256(DESIGN).hexdigest()
    setup = tab.get("/app/setup").text
    assert f'src="/badge-images/{sha}.png"' in setup

    assert tab.post("/app/course/sync", {}, csrf=csrf).status_code == 303
    pull(live)
    with db_session(live.engine) as s:
        comp = s.exec(select(Competency).where(Competency.key == key)).one()
        award = s.exec(
            select(Award).where(Award.competency_id == comp.id, Award.state == "issued")
        ).first()
        assert award is not None
        cred = s.exec(select(Credential).where(Credential.uuid == award.credential_uuid)).one()
    achievement = cred.document["credentialSubject"]["achievement"]
    assert achievement["name"].startswith("Data investigation (")
    assert achievement["image"]["id"] == f"{live.tool_url}/badge-images/{sha}.png"
    assert criteria[f"criteria_{award.level}"] in achievement["criteria"]["narrative"]

    public = httpx.get(achievement["image"]["id"])
    assert public.status_code == 200 and public.content == DESIGN
    assert public.headers["content-type"] == "image/png"
    baked = tab.http.get(f"/credentials/{award.credential_uuid}/badge.png").content
    # the download is the designed image with the credential baked in
    chunks = baking.png_chunks(baked)
    assert [c for c in chunks if c[0] == b"IDAT"] == [
        c for c in baking.png_chunks(DESIGN) if c[0] == b"IDAT"
    ]
    found = baking.unbake_png(baked)
    assert found is not None and cred.document["id"] in found.text
    # the SVG download (and the credential page's picture) shows the design too
    svg = tab.http.get(f"/credentials/{award.credential_uuid}/badge.svg")
    assert base64.b64encode(DESIGN).decode() in svg.text
    found = baking.unbake_svg(svg.content)
    assert found is not None and cred.document["id"] in found.text
    assert "img-src data:" in svg.headers["content-security-policy"]
    # and the learner sees it beside the credential on their page
    with db_session(live.engine) as s:
        sub = s.exec(select(Person.sub).where(Person.id == award.person_id)).one()
    mine = launch(live, sub).get("/app/me").text
    assert f'<img class="seal" src="/badge-images/{sha}.png"' in mine


def test_a_refused_image_keeps_what_was_typed(live: Live) -> None:
    tab, csrf = _instructor(live)
    resp = tab.http.post(
        "/app/setup/competencies/data-investigation/badge",
        data={
            "mc_session": tab.token,
            "csrf": csrf,
            "name": "Typed name",
            "criteria_advanced": "Typed criteria",
        },
        files={"image": ("badge.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg")},
    )
    assert resp.status_code == 422
    assert "SVG images are not taken" in resp.text
    assert 'value="Typed name"' in resp.text and "Typed criteria</textarea>" in resp.text
    with db_session(live.engine) as s:
        comp = s.exec(select(Competency).where(Competency.key == "data-investigation")).one()
        assert comp.image_sha256 is None and comp.name == "Investigating with data"
        assert s.exec(select(Course)).first() is not None
