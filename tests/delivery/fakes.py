"""Test-side handle of the fake Credly process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.timing import HANG

SCRIPT = Path(__file__).with_name("fake_credly.py")


class FakeCredly:
    """Starts ``fake_credly.py`` on a free loopback port; ``stop()`` ends it."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"fake Credly did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.url}/v1"
        self._http = httpx.Client(base_url=self.url, timeout=HANG)  # a hang guard

    def configure(self, **config: Any) -> None:
        self._http.post("/_control/config", json=config).raise_for_status()

    def reset(self) -> None:
        self._http.post("/_control/reset", json={}).raise_for_status()

    def state(self) -> dict[str, Any]:
        resp = self._http.get("/_control/state")
        resp.raise_for_status()
        return dict(resp.json())

    def stop(self) -> None:
        self._http.close() if hasattr(self, "_http") else None
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
