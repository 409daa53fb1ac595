"""The public credential page: content, accessibility basics, escaping, downloads, negotiation."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.pool import QueuePool
from sqlmodel import Session, create_engine

from service.issuer import baking
from service.issuer.types import Check, VerificationReport
from service.web import credential_samples, credentials, errors

STATIC = Path(credentials.__file__).parent / "static"
JWT = "eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiJ1cm46dXVpZDoxIn0.c2ln"


# --- a tiny DOM for assertions -----------------------------------------------------------


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    def iter(self) -> Iterator[Node]:
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def all_text(self) -> str:
        return "".join(c if isinstance(c, str) else c.all_text() for c in self.children)

    def find_all(self, tag: str) -> list[Node]:
        return [n for n in self.iter() if n.tag == tag]


VOID = {"meta", "link", "img", "input", "br", "hr", "source", "area", "col", "wbr"}


class Tree(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.cur = self.root
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs), self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.cur.children.append(Node(tag, dict(attrs), self.cur))

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.cur
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.cur = node.parent

    def handle_data(self, data: str) -> None:
        self.cur.children.append(data)


# --- fixtures ----------------------------------------------------------------------------


def loader(_request: Request, _session: Session, key: str) -> credentials.CredentialBundle | None:
    name, _, form = key.partition("+")
    try:
        doc, report, learner = credential_samples.sample(name)
    except KeyError:
        return None
    return credentials.CredentialBundle(
        document=doc, report=report, learner_name=learner, jwt=JWT if form == "jwt" else None
    )


@pytest.fixture(scope="module")
def page_client() -> Iterator[TestClient]:
    app = FastAPI()
    app.state.engine = create_engine("sqlite://")  # for SessionDep; the loaders never read
    errors.install(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(credentials.make_router(loader))
    with TestClient(app, base_url="https://tool.test") as c:
        yield c


def html_of(client: TestClient, scenario: str) -> str:
    response = client.get(f"/credentials/{scenario}", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    return response.text


# --- content -----------------------------------------------------------------------------


def test_valid_page_shows_what_the_credential_attests(page_client: TestClient) -> None:
    html = html_of(page_client, "valid")
    tree = Tree(html)
    (h1,) = tree.root.find_all("h1")
    assert h1.all_text().strip() == "Applied Data Analysis with Python"
    text = re.sub(r"\s+", " ", tree.root.all_text())
    assert "Level reached: Intermediate (2 of 3)" in text
    for level in ("Beginning", "Intermediate", "Advanced"):
        assert level in text
    assert "Analyse data using statistical methods" in text  # alignment
    assert "Awarded at the level reached" in text  # criteria narrative (Markdown)
    assert "<strong>Data preparation</strong>" in html
    assert "Ada Lovelace" in text
    assert "University of Leuvenstad" in text
    assert "20 November 2026" in text and "20 November 2029" in text
    assert "Verified" in text


def test_valid_page_lists_the_eu_elements_present(page_client: TestClient) -> None:
    tree = Tree(html_of(page_client, "valid"))
    rows = {
        dt.all_text().strip(): re.sub(r"\s+", " ", dt.parent.find_all("dd")[0].all_text()).strip()
        for dt in tree.root.find_all("dt")
        if dt.parent is not None
        and dt.parent.parent is not None
        and "rows" in (dt.parent.parent.attrs.get("class") or "")
    }
    expected = {
        "Identification of the learner": "Ada Lovelace; Identified by email address (hashed), "
        "LMS user account",
        "Title": "Applied Data Analysis with Python",
        "Country / region": "Belgium, Flanders",
        "Awarding body": "University of Leuvenstad",
        "Date of issuing": "20 November 2026",
        "Notional workload": "3 ECTS · 75 hours",
        "EQF level": "Level 6",
        "Type of assessment": "Rubric-assessed project and two proctored online quizzes",
        "Form of participation": "Online, self-paced with weekly live sessions",
        "Supervision and identity verification": "Unsupervised, no identity verification "
        "(signed in through the LMS)",
        "Grade achieved": "Intermediate",
    }
    for label, value in expected.items():
        assert rows.get(label) == value, label
    for label in (
        "Learning outcomes",
        "Quality assurance",
        "Prerequisites",
        "Integration / stackability",
        "Further information",
    ):
        assert rows.get(label), label


def test_verification_checks_are_listed_with_their_sentences(page_client: TestClient) -> None:
    _doc, report, _ = credential_samples.sample("revoked")
    text = re.sub(r"\s+", " ", Tree(html_of(page_client, "revoked")).root.all_text())
    for check in report.checks:
        assert check.detail in text
    assert "Revocation status failed" in text
    assert "Signature passed" in text


@pytest.mark.parametrize(
    ("scenario", "title", "css"),
    [
        ("valid", "Verified", "verdict-valid"),
        ("revoked", "Revoked", "verdict-revoked"),
        ("expired", "Expired", "verdict-expired"),
        ("invalid", "Not valid", "verdict-invalid"),
    ],
)
def test_verdict_banner_comes_first_and_is_announced(
    page_client: TestClient, scenario: str, title: str, css: str
) -> None:
    tree = Tree(html_of(page_client, scenario))
    (main,) = tree.root.find_all("main")
    first = next(n for n in main.iter() if n.tag == "section")
    assert css in (first.attrs.get("class") or "")
    assert first.attrs.get("role") == "status"
    assert first.all_text().strip().startswith(("✓", "✕", "!"))
    assert title in first.all_text()


def test_revoked_page_gives_the_reason_and_offers_no_sharing(page_client: TestClient) -> None:
    html = html_of(page_client, "revoked")
    assert "grade corrected after appeal" in html
    assert "linkedin.com" not in html
    assert 'id="share"' not in html
    assert "badge.png" in html  # downloads stay: the credential can still be checked


def test_invalid_page_warns_that_details_are_unconfirmed(page_client: TestClient) -> None:
    html = html_of(page_client, "invalid")
    assert "changed after signing" in html
    assert "signature does not confirm them" in html


def test_no_email_address_is_ever_printed(page_client: TestClient) -> None:
    for scenario in credential_samples.SCENARIOS:
        html = html_of(page_client, scenario)
        assert credential_samples.LEARNER_EMAIL not in html
        assert "ada@example.org" not in html  # hostile sample passes an email as the name
        assert not re.search(r"[\w.+-]+@student\.", html)


def test_share_links(page_client: TestClient) -> None:
    tree = Tree(html_of(page_client, "valid"))
    links = {a.attrs.get("href") or "" for a in tree.root.find_all("a")}
    (linkedin,) = [u for u in links if u.startswith("https://www.linkedin.com/profile/add?")]
    q = {k: v[0] for k, v in parse_qs(urlsplit(linkedin).query).items()}
    assert q == {
        "startTask": "CERTIFICATION_NAME",
        "name": "Applied Data Analysis with Python — Intermediate",
        "organizationName": "University of Leuvenstad",
        "issueYear": "2026",
        "issueMonth": "11",
        "expirationYear": "2029",
        "expirationMonth": "11",
        "certUrl": "https://tool.test/credentials/valid",
        "certId": "urn:uuid:3f0c8a52-6d1e-4a8b-9a57-2b8f0e4c1d7a",
    }
    base = "https://tool.test/credentials/valid"
    assert {f"{base}/badge.png", f"{base}/badge.svg", f"{base}/credential.json"} <= links
    assert f"{base}/credential.jwt" not in links  # this bundle has no JWT
    (qr,) = [n for n in tree.root.find_all("svg") if n.attrs.get("class") == "segno"]
    assert qr.attrs.get("role") == "img" and base in (qr.attrs.get("aria-label") or "")
    (copy_field,) = [n for n in tree.root.find_all("input") if n.attrs.get("id") == "cred-json-url"]
    assert copy_field.attrs.get("value") == f"{base}/credential.json"


def test_a_microcred_credential_shows_its_published_name_one_grade_and_one_level() -> None:
    # microcred publishes the name as an unhashed "name" identifier, and the level both as
    # the level Result and (credentials issued before this fix) as a second grade Result.
    doc, report, _ = credential_samples.sample("valid")
    subject = doc["credentialSubject"]
    subject.pop("name", None)
    subject["identifier"] = [
        {
            "type": "IdentityObject",
            "identityType": "name",
            "hashed": False,
            "identityHash": "Amara Okafor",
        }
    ]
    subject["result"] = [
        {"type": ["Result"], "value": "Advanced"},
        {"type": ["Result"], "value": "Advanced"},
    ]
    doc["credentialSubject"]["achievement"]["name"] = "Investigating with data (Advanced)"
    view = credentials.view_model(doc, report, now=datetime(2026, 12, 1, tzinfo=UTC))
    assert view.learner == "Amara Okafor"
    rows = {r.label: r.value for r in view.eu_rows}
    assert rows["Grade achieved"] == "Advanced"
    base = "https://tool.test/credentials/x"
    urls = credentials.CredentialPageUrls(
        page=base, json=f"{base}/credential.json", png=f"{base}/badge.png", svg=f"{base}/badge.svg"
    )
    html = credentials.render_credential_page(
        None, document=doc, report=report, jwt_available=False, urls=urls
    ).body.decode()
    assert "Name not published" not in html
    (link,) = re.findall(r'href="(https://www\.linkedin\.com/profile/add\?[^"]+)"', html)
    name = parse_qs(urlsplit(link.replace("&amp;", "&")).query)["name"][0]
    assert name == "Investigating with data (Advanced)"


def test_jwt_download_appears_when_a_jwt_exists(page_client: TestClient) -> None:
    html = html_of(page_client, "valid+jwt")
    assert "https://tool.test/credentials/valid%2Bjwt/credential.jwt" in html
    r = page_client.get("/credentials/valid+jwt/credential.jwt")
    assert r.status_code == 200 and r.text == JWT
    assert "attachment" in r.headers["content-disposition"]


def test_wallet_deep_link_only_with_an_exchange_endpoint() -> None:
    doc, report, _ = credential_samples.sample("valid")
    urls = credentials.credential_urls(
        "https://tool.test",
        "abc",
        wallet_request="https://tool.test/wallet/exchange/abc",
        wallet_issuer_did="did:web:tool.test",
    )
    html = credentials.render_credential_page(
        None, document=doc, report=report, jwt_available=False, urls=urls
    ).body.decode()
    (link,) = re.findall(r'href="(dccrequest://request\?[^"]+)"', html)
    q = parse_qs(urlsplit(link.replace("&amp;", "&")).query)
    assert q["issuer"] == ["did:web:tool.test"]
    assert q["vc_request_url"] == ["https://tool.test/wallet/exchange/abc"]
    plain = credentials.credential_urls("https://tool.test", "abc")
    html = credentials.render_credential_page(
        None, document=doc, report=report, jwt_available=False, urls=plain
    ).body.decode()
    assert "dccrequest://" not in html


# --- accessibility basics ----------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["valid", "revoked", "expired", "invalid", "hostile"])
def test_accessibility_basics(page_client: TestClient, scenario: str) -> None:
    tree = Tree(html_of(page_client, scenario))
    (html_el,) = tree.root.find_all("html")
    assert html_el.attrs.get("lang") == "en"
    (article,) = tree.root.find_all("article")
    assert article.attrs.get("lang") == "en"  # the achievement's inLanguage
    assert len(tree.root.find_all("main")) == 1
    assert tree.root.find_all("header") and tree.root.find_all("aside")
    assert len(tree.root.find_all("h1")) == 1
    # headings never skip a level going down
    levels = [int(n.tag[1]) for n in tree.root.iter() if re.fullmatch(r"h[1-6]", n.tag)]
    assert levels[0] == 1
    assert all(b <= a + 1 for a, b in itertools.pairwise(levels)), levels
    for img in tree.root.find_all("img"):
        assert (img.attrs.get("alt") or "").strip(), img.attrs
    labelled = {n.attrs.get("for") for n in tree.root.find_all("label")}
    for field in tree.root.find_all("input") + tree.root.find_all("textarea"):
        assert field.attrs.get("id") in labelled or field.attrs.get("aria-label"), field.attrs
    for a in tree.root.find_all("a"):
        assert a.all_text().strip() or a.attrs.get("aria-label"), a.attrs
    for button in tree.root.find_all("button"):
        assert button.all_text().strip(), button.attrs
    ids = [n.attrs["id"] for n in tree.root.iter() if n.attrs.get("id")]
    assert len(ids) == len(set(ids)), "duplicate ids"
    for n in tree.root.iter():  # every aria-labelledby points at an element on the page
        if n.attrs.get("aria-labelledby"):
            assert n.attrs["aria-labelledby"] in ids
    scripts = tree.root.find_all("script")
    assert all(s.attrs.get("src") and not s.all_text().strip() for s in scripts)  # no inline JS


def luminance(hex_color: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_palette_contrast_meets_wcag_aa() -> None:
    css = (STATIC / "credential.css").read_text()
    palette = dict(re.findall(r"--(c-[\w-]+):\s*(#[0-9a-fA-F]{6})", css))
    pairs = [  # (text, background) as used in credential.css
        ("c-text", "c-card"),
        ("c-text", "c-bg"),
        ("c-muted", "c-card"),
        ("c-muted", "c-bg"),
        ("c-link", "c-card"),
        ("c-link", "c-bg"),
        ("c-ok", "c-ok-bg"),
        ("c-bad", "c-bad-bg"),
        ("c-warn", "c-warn-bg"),
        ("c-text", "c-ok-bg"),
        ("c-text", "c-bad-bg"),
        ("c-text", "c-warn-bg"),
        ("c-link", "c-ok-bg"),
        ("c-link", "c-bad-bg"),
        ("c-link", "c-warn-bg"),
        ("c-pill", "c-pill-bg"),
        ("c-text", "c-pill-bg"),
        ("c-muted", "c-pill-bg"),
        ("c-button-text", "c-button"),
        ("c-button2-text", "c-button2"),
        ("c-ok", "c-card"),
        ("c-bad", "c-card"),
    ]
    for fg, bg in pairs:
        ratio = contrast(palette[fg], palette[bg])
        assert ratio >= 4.5, f"{fg} on {bg}: {ratio:.2f}"
    # white symbols and labels on the solid colours
    for solid in ("c-ok", "c-bad", "c-warn", "c-pill", "c-linkedin", "c-button"):
        assert contrast("#ffffff", palette[solid]) >= 4.5, solid
    # the focus ring stands out from the page and the cards (WCAG 1.4.11: 3:1)
    assert contrast(palette["c-focus"], palette["c-bg"]) >= 3
    assert re.search(r":focus-visible[^{]*\{[^}]*outline:\s*3px solid", css.replace("\n", " "))


# --- escaping ----------------------------------------------------------------------------


def test_hostile_strings_render_inert(page_client: TestClient) -> None:
    html = html_of(page_client, "hostile")
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    tree = Tree(html)
    for node in tree.root.iter():
        for name, value in node.attrs.items():
            assert not name.startswith("on"), (node.tag, name)
            assert not (value or "").strip().lower().startswith("javascript:"), (node.tag, name)
    assert "[click](javascript:alert(2))" in html  # an unsafe Markdown link stays plain text
    assert "onerror=alert" not in html.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;alert(" in html  # shown as text, not dropped
    (h1,) = tree.root.find_all("h1")
    assert h1.all_text().strip().startswith('<script>alert("x")</script>')
    assert [s.attrs.get("src") for s in tree.root.find_all("script")] == ["/static/credential.js"]


def test_unknown_credential_is_a_404_that_does_not_reflect_input(page_client: TestClient) -> None:
    r = page_client.get("/credentials/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert r.status_code == 404
    assert "<script>alert(1)" not in r.text
    assert page_client.get("/credentials/nope/badge.png").status_code == 404


# --- negotiation and downloads -----------------------------------------------------------


def test_content_negotiation(page_client: TestClient) -> None:
    doc, _, _ = credential_samples.sample("valid")
    r = page_client.get("/credentials/valid", headers={"accept": "application/vc+ld+json"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/vc+ld+json"
    assert r.json() == doc and r.headers["vary"] == "Accept"
    r = page_client.get("/credentials/valid", headers={"accept": "application/json"})
    assert r.json() == doc
    r = page_client.get("/credentials/valid+jwt", headers={"accept": "application/vc+jwt"})
    assert r.text == JWT and r.headers["content-type"].startswith("application/vc+jwt")
    r = page_client.get("/credentials/valid", headers={"accept": "application/vc+jwt"})
    assert r.status_code == 404
    r = page_client.get("/credentials/valid", headers={"accept": "text/html,application/json"})
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-store"


def test_baked_downloads_carry_the_credential(page_client: TestClient) -> None:
    doc, _, _ = credential_samples.sample("valid")
    png = page_client.get("/credentials/valid/badge.png")
    assert png.headers["content-type"] == "image/png"
    baked = baking.unbake_png(png.content)
    assert baked is not None and baked.document == doc
    svg = page_client.get("/credentials/valid/badge.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert "sandbox" in svg.headers["content-security-policy"]
    baked = baking.unbake_svg(svg.content)
    assert baked is not None and baked.document == doc
    assert b"Applied Data Analysis with Python badge, Intermediate level" in svg.content
    j = page_client.get("/credentials/valid/credential.json")
    assert j.json() == doc
    assert j.headers["content-disposition"] == (
        'attachment; filename="applied-data-analysis-with-python.json"'
    )


def test_bundle_image_is_used_when_given() -> None:
    doc, report, _ = credential_samples.sample("valid")
    own = (
        b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><title>Own</title>'
        b'<rect width="10" height="10"/></svg>'
    )
    png, svg = credentials.badge_images(
        credentials.CredentialBundle(document=doc, report=report, image=own)
    )
    assert svg == own and png.startswith(baking.PNG_SIGNATURE)


def test_status_wording_prefers_revoked_and_expired() -> None:
    doc, _, _ = credential_samples.sample("valid")
    report = VerificationReport(
        valid=False,
        checks=(
            Check("proof", True, "ok"),
            Check("status", False, "The credential is revoked."),
            Check("dates", False, "The credential expired on 2020-01-01."),
        ),
    )
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert credentials.view_model(doc, report, now=now).status.kind == "revoked"
    report = VerificationReport(
        valid=False,
        checks=(Check("status", False, "The status list could not be fetched (timeout)."),),
    )
    view = credentials.view_model(doc, report, now=now)
    assert view.status.kind == "invalid" and "timeout" in view.status.summary
    report = VerificationReport(valid=True, checks=())
    assert credentials.view_model(doc, report, now=now).status.kind == "invalid"


def test_preview_routes_are_mounted_outside_production(client: TestClient) -> None:
    r = client.get("/_preview/credentials/expired", headers={"accept": "text/html"})
    assert r.status_code == 200 and "Expired" in r.text
    assert client.get("/static/credential.css").status_code == 200
    assert client.get("/static/credential.js").status_code == 200


def test_ob2_link_appears_when_the_ob2_router_is_mounted() -> None:
    app = FastAPI()
    app.state.engine = create_engine("sqlite://")  # for SessionDep; the loaders never read
    app.include_router(credentials.make_router(loader, ob2_prefix="/ob2"))
    with TestClient(app, base_url="https://tool.test") as c:
        html = c.get("/credentials/valid", headers={"accept": "text/html"}).text
        assert 'href="https://tool.test/ob2/assertions/valid"' in html
        html = c.get("/credentials/revoked", headers={"accept": "text/html"}).text
        assert "/ob2/assertions/" not in html  # never advertise a revoked badge


# --- robustness: any document renders ----------------------------------------------------

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
PATHS = [
    ("name",),
    ("issuer",),
    ("issuer", "name"),
    ("issuer", "address"),
    ("issuer", "url"),
    ("validFrom",),
    ("validUntil",),
    ("awardedDate",),
    ("evidence",),
    ("credentialSubject",),
    ("credentialSubject", "result"),
    ("credentialSubject", "identifier"),
    ("credentialSubject", "achievement"),
    ("credentialSubject", "achievement", "name"),
    ("credentialSubject", "achievement", "alignment"),
    ("credentialSubject", "achievement", "resultDescription"),
    ("credentialSubject", "achievement", "criteria"),
    ("credentialSubject", "achievement", "ECTS"),
    ("credentialSubject", "achievement", "notionalWorkload"),
    ("credentialSubject", "achievement", "learningOutcomes"),
]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(PATHS), junk), min_size=1, max_size=5))
def test_any_shape_of_document_renders(changes: list[tuple[tuple[str, ...], object]]) -> None:
    doc, report, _ = credential_samples.sample("valid")
    for path, value in changes:
        target = doc
        for part in path[:-1]:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[path[-1]] = value
    urls = credentials.credential_urls("https://tool.test", "k")
    response = credentials.render_credential_page(
        None, document=doc, report=report, jwt_available=False, urls=urls
    )
    assert response.status_code == 200
    assert b"<h1" in response.body


def test_extension_terms_are_found_with_prefixes_and_language_maps() -> None:
    doc, report, _ = credential_samples.sample("valid")
    ach = doc["credentialSubject"]["achievement"]
    del ach["assessmentType"], ach["participationType"]
    ach["mc:assessmentType"] = {"en": "Oral examination", "nl": "Mondeling examen"}
    doc["credentialSubject"]["euMicroCredential"] = {
        "formOfParticipation": {"prefLabel": "Blended", "id": "http://data.europa.eu/snb/x"}
    }
    view = credentials.view_model(doc, report, now=datetime(2026, 12, 1, tzinfo=UTC))
    rows = {r.label: r.value for r in view.eu_rows}
    assert rows["Type of assessment"] == "Oral examination"
    assert rows["Form of participation"] == "Blended"


def test_markdown_cannot_pull_in_images_or_raw_html() -> None:
    doc, report, _ = credential_samples.sample("valid")
    ach = doc["credentialSubject"]["achievement"]
    ach["description"] = (
        "![pixel](https://tracker.example/p.png) <b>bold</b> "
        '[ok](https://a.example/x" onmouseover="alert(1))'
    )
    urls = credentials.credential_urls("https://tool.test", "k")
    html = credentials.render_credential_page(
        None, document=doc, report=report, jwt_available=False, urls=urls
    ).body.decode()
    assert "tracker.example" not in [i.attrs.get("src") for i in Tree(html).root.find_all("img")]
    assert '<img src="https://tracker' not in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert 'onmouseover="alert' not in html


@pytest.mark.parametrize(
    ("accept", "kind"),
    [
        ("", "text/html"),
        ("*/*", "text/html"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/html"),
        ("application/json;q=0.9, text/html;q=0.8", "application/vc+ld+json"),
        ("application/ld+json", "application/vc+ld+json"),
        ("text/html;q=0.5, application/vc+jwt", "application/vc+jwt"),
        ("application/vc+jwt;q=0, text/html", "text/html"),
        ("image/png", "text/html"),
    ],
)
def test_accept_quality_values(page_client: TestClient, accept: str, kind: str) -> None:
    r = page_client.get("/credentials/valid+jwt", headers={"accept": accept})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(kind)
    if kind != "text/html":
        assert r.headers["access-control-allow-origin"] == "*"


def test_unbakeable_achievement_image_falls_back_to_the_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    doc, report, _ = credential_samples.sample("valid")
    hostile = (
        b'<!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<svg xmlns="http://www.w3.org/2000/svg">&x;</svg>'
    )
    bundle = credentials.CredentialBundle(document=doc, report=report, image=hostile)
    baked = credentials.baked_badge(bundle, "svg")
    result = baking.unbake_svg(baked)
    assert result is not None and result.document == doc
    assert b"passwd" not in baked and b"INTERMEDIATE" in baked
    assert "not bakeable" in caplog.text


def test_the_read_ends_before_the_page_is_rendered_or_the_badge_baked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'pool.db'}", poolclass=QueuePool)
    held: list[int] = []

    def reading_loader(request: Request, session: Session, key: str) -> Any:
        session.connection().exec_driver_sql("SELECT 1")  # the loader reads, as the real one
        return loader(request, session, key)

    def watch(real: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            held.append(engine.pool.checkedout())  # type: ignore[attr-defined]
            return real(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(credentials, "baked_badge", watch(credentials.baked_badge))
    monkeypatch.setattr(
        credentials, "render_credential_page", watch(credentials.render_credential_page)
    )
    app = FastAPI()
    app.state.engine = engine
    errors.install(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(credentials.make_router(reading_loader))
    with TestClient(app, base_url="https://tool.test") as c:
        for path in ("", "/badge.png", "/badge.svg"):
            response = c.get(f"/credentials/valid{path}", headers={"accept": "text/html"})
            assert response.status_code == 200, response.text
    assert held == [0, 0, 0]
