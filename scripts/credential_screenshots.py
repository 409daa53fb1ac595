"""Screenshots of the credential page in headless Chromium (desktop and phone widths).

Serves the app with the development preview routes on a free loopback port, opens each
sample scenario and writes PNGs. Usage:

    python -m scripts.credential_screenshots [OUT_DIR] [--readme]   # default /tmp/shots

Writes ``credpage-<scenario>-<desktop|phone>[-top].png`` (full page and first screen);
``--readme`` also copies the first screen of the valid desktop page to
``docs/screenshots/credential-page.png``.
"""

from __future__ import annotations

import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from service.app import create_app
from service.settings import Settings

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
VIEWPORTS = {"desktop": (1280, 900), "phone": (390, 844)}
SCENARIOS = ("valid", "revoked", "expired", "invalid")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    out = Path(args[0] if args else "/tmp/shots")  # noqa: S108 - the brief's screenshot folder
    out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    data = Path(tempfile.mkdtemp())
    settings = Settings(
        environment="development",
        data_dir=data,
        base_url=f"http://127.0.0.1:{port}",
        secret_key="screenshot-key-" + "0" * 32,
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):  # bounded wait for start-up
        if server.started:
            break
        time.sleep(0.1)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            for name, (width, height) in VIEWPORTS.items():
                page = browser.new_page(viewport={"width": width, "height": height})
                for scenario in SCENARIOS:
                    page.goto(f"http://127.0.0.1:{port}/_preview/credentials/{scenario}")
                    path = out / f"credpage-{scenario}-{name}.png"
                    page.screenshot(path=str(path), full_page=True)
                    first = out / f"credpage-{scenario}-{name}-top.png"
                    page.screenshot(path=str(first))
                    print(path, first)
                page.close()
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        shutil.rmtree(data, ignore_errors=True)
    if "--readme" in sys.argv:
        target = Path("docs/screenshots/credential-page.png")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(out / "credpage-valid-desktop-top.png", target)
        print(target)


if __name__ == "__main__":
    main()
