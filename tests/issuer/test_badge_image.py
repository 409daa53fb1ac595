"""Default badge images: valid PNG/SVG, one look per level, readable label, accessible name."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
import zlib

import pytest

from service.issuer import badge_image, baking


def luminance(hex_color: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    chunks = baking.png_chunks(png)
    width, height, depth, color_type = struct.unpack(">IIBB", chunks[0][1][:10])
    assert (depth, color_type) == (8, 6)
    raw = zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT"))
    stride = width * 4 + 1
    rows = [raw[y * stride + 1 : (y + 1) * stride] for y in range(height)]
    assert all(raw[y * stride] == 0 for y in range(height))  # filter 0, as written
    return width, height, rows


def rgba(rows: list[bytes], x: int, y: int) -> tuple[int, ...]:
    return tuple(rows[y][x * 4 : x * 4 + 4])


@pytest.mark.parametrize("style", list(badge_image.LEVEL_STYLES.values()), ids=lambda s: s.key)
def test_white_label_is_readable_on_every_level_colour(style: badge_image.LevelStyle) -> None:
    for fill in (style.light, style.base, style.dark):
        assert contrast("#ffffff", fill) >= 4.5, (style.key, fill)


@pytest.mark.parametrize(
    ("level", "rank"), [("Beginning", 1), ("Intermediate", 2), ("Advanced", 3)]
)
def test_png_is_a_real_badge(level: str, rank: int) -> None:
    png = badge_image.default_badge_png(level=level, rank=rank)
    width, height, rows = pixels(png)
    assert (width, height) == (256, 256)
    assert rgba(rows, 2, 2)[3] == 0  # transparent corner
    style = badge_image.style_for(level)
    rim = rgba(rows, 128, 108 - 99)  # between the disc and the rim edge
    assert rim[:3] == tuple(int(style.dark[i : i + 2], 16) for i in (1, 3, 5)) and rim[3] == 255
    # white star at the centre of the first star position
    white = [rgba(rows, x, y) for x in range(256) for y in range(60, 160)].count(
        (255, 255, 255, 255)
    )
    assert white > 200 * rank  # more stars, more white


def test_levels_look_different_and_unknown_levels_get_slate() -> None:
    images = {
        badge_image.default_badge_png(level=lv, rank=i)
        for i, lv in enumerate(["Beginning", "Intermediate", "Advanced"], 1)
    }
    assert len(images) == 3
    assert badge_image.style_for("Expert").key == "other"
    assert badge_image.style_for(" INTERMEDIATE ").key == "intermediate"


def test_svg_has_an_accessible_name_and_escapes_it() -> None:
    svg = badge_image.default_badge_svg(level="Advanced", rank=3, title='<b>"Data" & more</b>')
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.get("role") == "img"
    title = root.find(f"{ns}title")
    assert title is not None and title.text == '<b>"Data" & more</b>'
    assert root.get("aria-labelledby") == title.get("id")
    assert len(root.findall(f"{ns}polygon")) == 2 + 3  # ribbon tails + three stars
    label = root.find(f"{ns}text")
    assert label is not None and label.text == "ADVANCED"
