"""Credential page and baking speed: pages rendered per second, bake/unbake times.

    python -m bench.credpage

Prints one line per figure. Shared machine: figures vary with other load.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from service.issuer import badge_image, baking
from service.web import credential_samples, credentials


def per_second(label: str, fn: Callable[[], object], *, seconds: float = 2.0) -> None:
    fn()  # warm caches (templates, default images)
    count = 0
    start = time.perf_counter()
    while True:
        fn()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds or count >= 100_000:
            break
    print(f"{label:<44} {count / elapsed:10.1f} /s   {1000 * elapsed / count:8.3f} ms each")


def main() -> None:
    doc, report, learner = credential_samples.sample("valid")
    urls = credentials.credential_urls("https://tool.test", "k", ob2_assertion=None)
    png = badge_image.default_badge_png(level="Intermediate", rank=2)
    svg = badge_image.default_badge_svg(level="Intermediate", rank=2, title="t")
    baked_png = baking.bake_png(png, doc)
    baked_svg = baking.bake_svg(svg, doc)

    per_second(
        "render credential page (repeat view)",
        lambda: credentials.render_credential_page(
            None,
            document=doc,
            report=report,
            jwt_available=True,
            urls=urls,
            learner_name=learner,
        ),
    )
    counter = iter(range(10**9))

    def first_view() -> object:  # a new URL each time: the QR code is not cached yet
        fresh = credentials.credential_urls("https://tool.test", f"k{next(counter)}")
        return credentials.render_credential_page(
            None,
            document=doc,
            report=report,
            jwt_available=True,
            urls=fresh,
            learner_name=learner,
        )

    per_second("render, first view of a credential (new QR)", first_view)
    per_second("bake PNG (JSON credential)", lambda: baking.bake_png(png, doc))
    per_second("unbake PNG", lambda: baking.unbake_png(baked_png))
    per_second("bake SVG (JSON credential)", lambda: baking.bake_svg(svg, doc))
    per_second("unbake SVG", lambda: baking.unbake_svg(baked_svg))

    start = time.perf_counter()
    badge_image.default_badge_png.cache_clear()
    for rank, level in enumerate(("Beginning", "Intermediate", "Advanced"), 1):
        badge_image.default_badge_png(level=level, rank=rank)
    cold = (time.perf_counter() - start) / 3
    print(f"{'default badge PNG, first render (cached after)':<44} {1000 * cold:10.1f} ms each")


if __name__ == "__main__":
    main()
