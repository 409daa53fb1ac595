"""Check the OB 2.0 hosted documents with 1EdTech's own OB 2.0 validator (badgecheck).

badgecheck (PyPI ``openbadges``) pins python-jose 3.0.1, PyLD 0.7.1 and more, so it cannot
live in the project's environment (credentials.md §0.8). This script runs in two halves:

    # 1. in the project's venv: serve the sample credentials and record every URL's answer
    python -m scripts.ob2_badgecheck dump /tmp/ob2-site.json
    # 2. in a separate venv with `pip install openbadges responses`:
    /tmp/ob2venv/bin/python scripts/ob2_badgecheck.py check /tmp/ob2-site.json

The second half replays the recorded answers through ``responses`` (no network), adds the
OB 2.0 context that badgecheck bundles, verifies each assertion and prints the report.
Exit status 1 if a valid sample is reported invalid or the revoked one is reported valid.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

BASE = "https://credentials.uni-example.eu"


def dump(path: str) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from service.web import credential_preview

    app = FastAPI()
    app.include_router(credential_preview.ob2_preview_router)
    site: dict[str, Any] = {}
    with TestClient(app, base_url=BASE) as client:
        queue = [f"{BASE}/_preview/ob2/assertions/{k}" for k in ("valid", "expired", "revoked")]
        queue.append(f"{BASE}/_preview/ob2/issuer")
        while queue:
            url = queue.pop()
            if url in site or not url.startswith(BASE):
                continue
            r = client.get(url[len(BASE) :])
            entry = {
                "status": r.status_code,
                "content_type": r.headers.get("content-type", ""),
                "body": base64.b64encode(r.content).decode(),
            }
            site[url] = entry
            if "json" in entry["content_type"]:
                doc = r.json()
                for key in ("badge", "issuer", "image", "revocationList"):
                    if isinstance(doc.get(key), str):
                        queue.append(doc[key])
    with open(path, "w") as f:
        json.dump(site, f, indent=1)
    print(f"recorded {len(site)} URLs in {path}")


def check(path: str) -> int:
    import responses  # type: ignore[import-not-found]
    from openbadges import verify  # type: ignore[import-not-found]
    from openbadges.verifier.openbadges_context import (  # type: ignore[import-not-found]
        OPENBADGES_CONTEXT_V2_DICT,
        OPENBADGES_CONTEXT_V2_URI,
    )

    with open(path) as f:
        site = json.load(f)
    failures = 0
    expected = {"valid": True, "expired": False, "revoked": False}
    for name, want_valid in expected.items():
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            mock.add(
                responses.GET,
                OPENBADGES_CONTEXT_V2_URI,
                json=OPENBADGES_CONTEXT_V2_DICT,
                status=200,
            )
            for url, entry in site.items():
                mock.add(
                    responses.GET,
                    url,
                    body=base64.b64decode(entry["body"]),
                    status=entry["status"],
                    content_type=entry["content_type"].split(";")[0],
                )
            report = verify(
                f"{BASE}/_preview/ob2/assertions/{name}",
                recipient_profile={"email": "ada.lovelace@student.uni-example.eu"},
                use_cache=False,
            )
        summary = report["report"]
        valid = summary["valid"]
        print(
            f"== {name}: valid={valid} errors={summary['errorCount']} "
            f"warnings={summary['warningCount']} recipient={summary.get('recipientProfile')}"
        )
        for message in summary["messages"]:
            print(f"   {message['messageLevel']}: {message.get('name')}: {message['result']}")
        if valid != want_valid:
            failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("dump", "check"):
        sys.exit(__doc__)
    if sys.argv[1] == "dump":
        dump(sys.argv[2])
    else:
        sys.exit(check(sys.argv[2]))
