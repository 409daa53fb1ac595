"""Default badge images, one look per competency level, for achievements without an image.

The SVG and the PNG share one geometry: a ribbon, a medal in the level's colour and one to
three stars for the level's rank. The SVG carries a ``<title>`` (and the level name as text)
so that it is accessible on its own; the PNG is drawn in pure Python (signed distances give
anti-aliased edges) so that no imaging library is needed, and is cached per look.
"""

from __future__ import annotations

import base64
import functools
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from xml.sax.saxutils import escape

from service.issuer.baking import write_png

__all__ = [
    "LEVEL_STYLES",
    "LevelStyle",
    "default_badge_png",
    "default_badge_svg",
    "level_hint",
    "png_in_svg",
    "style_for",
]

SIZE = 256


@dataclass(frozen=True)
class LevelStyle:
    """Colours of one level: ``light``→``base`` is the medal gradient, ``dark`` the rim."""

    key: str
    light: str
    base: str
    dark: str


# White text sits on these fills; every one keeps at least 4.5:1 against white (WCAG 1.4.3),
# which tests/issuer/test_badge_image.py computes.
LEVEL_STYLES: dict[str, LevelStyle] = {
    "beginning": LevelStyle("beginning", light="#0f7d74", base="#0b6660", dark="#084c47"),
    "intermediate": LevelStyle("intermediate", light="#2558e0", base="#1d4ed8", dark="#1e3a8a"),
    "advanced": LevelStyle("advanced", light="#7336e0", base="#6025c4", dark="#431884"),
    "other": LevelStyle("other", light="#4a5568", base="#334155", dark="#1e293b"),
}


def style_for(level_name: str | None) -> LevelStyle:
    """The style for a level name (case-insensitive; unknown names get a neutral slate)."""
    key = (level_name or "").strip().lower()
    return LEVEL_STYLES.get(key, LEVEL_STYLES["other"])


_ORDER = ("beginning", "intermediate", "advanced")


def level_hint(achievement: dict[str, object]) -> tuple[str | None, int]:
    """Guess ``(level name, rank)`` for an achievement alone (no result to read the level
    from): the first known level name found in its id or name, else no level."""
    haystack = f"{achievement.get('id', '')} {achievement.get('name', '')}".lower()
    for rank, key in enumerate(_ORDER, 1):
        if key in haystack:
            return key.capitalize(), rank
    return None, 1


def _star(cx: float, cy: float, outer: float, inner: float) -> list[tuple[float, float]]:
    points = []
    for i in range(10):
        r = outer if i % 2 == 0 else inner
        angle = -math.pi / 2 + i * math.pi / 5
        points.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    return points


def _star_centres(rank: int, dy: float = 0.0) -> list[tuple[float, float]]:
    n = max(1, min(3, rank))
    if n == 1:
        return [(128.0, 96.0 + dy)]
    if n == 2:
        return [(104.0, 96.0 + dy), (152.0, 96.0 + dy)]
    return [(80.0, 100.0 + dy), (128.0, 90.0 + dy), (176.0, 100.0 + dy)]


_LEFT_TAIL = [(92.0, 168.0), (126.0, 186.0), (106.0, 250.0), (92.0, 232.0), (72.0, 240.0)]
_RIGHT_TAIL = [(256.0 - x, y) for x, y in _LEFT_TAIL]
_MEDAL = (128.0, 108.0)
_RIM, _DISC, _RING, _RING_WIDTH = 104.0, 94.0, 82.0, 3.0
_STAR_OUTER, _STAR_INNER = 21.0, 8.6


def png_in_svg(png: bytes, *, title: str) -> bytes:
    """An SVG badge that shows a PNG badge image (an instructor's design), so the SVG
    download looks like the PNG one; the PNG travels inside as a data URI.

    Args:
        png: A PNG image (its header gives the size).
        title: Accessible name, e.g. "Data analysis — Intermediate level badge".
    """
    width, height = struct.unpack(">II", png[16:24])
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}"><title>{escape(title)}</title>'
        f'<image width="{width}" height="{height}" href="data:image/png;base64,{data}"/></svg>'
    ).encode()


def default_badge_svg(*, level: str | None, rank: int, title: str) -> bytes:
    """An accessible SVG badge for a level.

    Args:
        level: Level name shown on the badge (e.g. "Intermediate"); picks the colours.
        rank: 1-based position of the level in its scale (1 to 3 stars; clamped).
        title: Accessible name, e.g. "Data analysis — Intermediate level badge".

    Returns:
        UTF-8 SVG bytes with ``role="img"`` and a ``<title>``.
    """
    style = style_for(level)
    raw_label = (level or "Achieved").upper()
    label = escape(raw_label)
    # The label must stay inside the inner ring (about 130 px wide at 15 px for 9 letters).
    font_size = 15.0 if len(raw_label) <= 9 else round(15.0 * 9 / len(raw_label), 1)
    stars = "".join(
        '<polygon fill="#ffffff" points="'
        + " ".join(f"{x:.2f},{y:.2f}" for x, y in _star(cx, cy, _STAR_OUTER, _STAR_INNER))
        + '"/>'
        for cx, cy in _star_centres(rank)
    )

    def pts(poly: list[tuple[float, float]]) -> str:
        return " ".join(f"{x:g},{y:g}" for x, y in poly)

    cx, cy = _MEDAL
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256" '
        'viewBox="0 0 256 256" role="img" aria-labelledby="badge-title">'
        f'<title id="badge-title">{escape(title)}</title>'
        "<defs>"
        '<linearGradient id="disc" x1="0" y1="0" x2="0" y2="1">'
        f'<stop offset="0" stop-color="{style.light}"/>'
        f'<stop offset="1" stop-color="{style.base}"/>'
        "</linearGradient>"
        "</defs>"
        f'<polygon fill="{style.dark}" points="{pts(_LEFT_TAIL)}"/>'
        f'<polygon fill="{style.dark}" points="{pts(_RIGHT_TAIL)}"/>'
        f'<circle cx="{cx:g}" cy="{cy:g}" r="{_RIM:g}" fill="{style.dark}"/>'
        f'<circle cx="{cx:g}" cy="{cy:g}" r="{_DISC:g}" fill="url(#disc)"/>'
        f'<circle cx="{cx:g}" cy="{cy:g}" r="{_RING:g}" fill="none" stroke="#ffffff" '
        f'stroke-opacity="0.85" stroke-width="{_RING_WIDTH:g}"/>'
        f"{stars}"
        '<text x="128" y="150" text-anchor="middle" fill="#ffffff" '
        'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif" '
        f'font-size="{font_size:g}" font-weight="700" letter-spacing="1.2">{label}</text>'
        "</svg>"
    )
    return svg.encode("utf-8")


# --- PNG rasteriser ----------------------------------------------------------------------

RGB = tuple[float, float, float]


def _hex(color: str) -> RGB:
    return (int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16))


def _polygon_distance(x: float, y: float, poly: list[tuple[float, float]]) -> float:
    """Signed distance to a polygon: negative inside (even-odd rule)."""
    best = math.inf
    inside = False
    n = len(poly)
    for i in range(n):
        ax, ay = poly[i]
        bx, by = poly[(i + 1) % n]
        dx, dy = bx - ax, by - ay
        t = max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy)))
        px, py = ax + t * dx - x, ay + t * dy - y
        best = min(best, px * px + py * py)
        if (ay > y) != (by > y) and x < ax + (y - ay) * dx / dy:
            inside = not inside
    d = math.sqrt(best)
    return -d if inside else d


class _Canvas:
    def __init__(self, size: int) -> None:
        self.size = size
        self.px = [[0.0, 0.0, 0.0, 0.0] for _ in range(size * size)]

    def paint(
        self,
        box: tuple[float, float, float, float],
        coverage: Callable[[float, float], float],
        color: Callable[[float, float], RGB],
        opacity: float = 1.0,
    ) -> None:
        x0, y0, x1, y1 = (max(0, int(v)) for v in box)
        x1, y1 = min(self.size, x1 + 1), min(self.size, y1 + 1)
        for y in range(y0, y1):
            cy = y + 0.5
            for x in range(x0, x1):
                cx = x + 0.5
                a = coverage(cx, cy) * opacity
                if a <= 0.0:
                    continue
                a = min(a, 1.0)
                r, g, b = color(cx, cy)
                p = self.px[y * self.size + x]
                da = p[3]
                out = a + da * (1.0 - a)
                p[0] = (r * a + p[0] * da * (1.0 - a)) / out
                p[1] = (g * a + p[1] * da * (1.0 - a)) / out
                p[2] = (b * a + p[2] * da * (1.0 - a)) / out
                p[3] = out

    def rows(self) -> list[bytes]:
        rows = []
        for y in range(self.size):
            row = bytearray()
            for x in range(self.size):
                r, g, b, a = self.px[y * self.size + x]
                row += bytes((round(r), round(g), round(b), round(a * 255)))
            rows.append(bytes(row))
        return rows


def _clamp(v: float) -> float:
    return 0.0 if v < 0.0 else 1.0 if v > 1.0 else v


def _disc(cx: float, cy: float, r: float) -> Callable[[float, float], float]:
    return lambda x, y: _clamp(r - math.hypot(x - cx, y - cy) + 0.5)


def _ring(cx: float, cy: float, r: float, width: float) -> Callable[[float, float], float]:
    return lambda x, y: _clamp(width / 2 - abs(math.hypot(x - cx, y - cy) - r) + 0.5)


def _poly(points: list[tuple[float, float]]) -> Callable[[float, float], float]:
    return lambda x, y: _clamp(0.5 - _polygon_distance(x, y, points))


def _bbox(points: list[tuple[float, float]]) -> tuple[float, float, float, float]:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return (min(xs) - 1, min(ys) - 1, max(xs) + 1, max(ys) + 1)


@functools.lru_cache(maxsize=16)
def default_badge_png(*, level: str | None, rank: int) -> bytes:
    """The PNG twin of :func:`default_badge_svg` (256x256 RGBA; no text, stars show rank).

    Args:
        level: Level name; picks the colours.
        rank: 1-based rank of the level (1 to 3 stars; clamped).

    Returns:
        PNG bytes, ready to bake into.
    """
    style = style_for(level)
    light, base, dark = _hex(style.light), _hex(style.base), _hex(style.dark)
    white: RGB = (255.0, 255.0, 255.0)
    cx, cy = _MEDAL

    def gradient(_x: float, y: float) -> RGB:
        t = _clamp((y - (cy - _DISC)) / (2 * _DISC))
        return (
            light[0] + (base[0] - light[0]) * t,
            light[1] + (base[1] - light[1]) * t,
            light[2] + (base[2] - light[2]) * t,
        )

    canvas = _Canvas(SIZE)
    for tail in (_LEFT_TAIL, _RIGHT_TAIL):
        canvas.paint(_bbox(tail), _poly(tail), lambda _x, _y: dark)
    rim_box = (cx - _RIM - 1, cy - _RIM - 1, cx + _RIM + 1, cy + _RIM + 1)
    canvas.paint(rim_box, _disc(cx, cy, _RIM), lambda _x, _y: dark)
    canvas.paint(rim_box, _disc(cx, cy, _DISC), gradient)
    canvas.paint(rim_box, _ring(cx, cy, _RING, _RING_WIDTH), lambda _x, _y: white, 0.85)
    # No label in the PNG (no font), so the stars move down to the medal's centre.
    for scx, scy in _star_centres(rank, dy=12.0):
        star = _star(scx, scy, _STAR_OUTER, _STAR_INNER)
        canvas.paint(_bbox(star), _poly(star), lambda _x, _y: white)
    return write_png(SIZE, SIZE, canvas.rows())
