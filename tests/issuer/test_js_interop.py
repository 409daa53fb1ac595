"""Independent verifier: @digitalbazaar/vc (JSON-LD safe mode, as in the DCC verifier).

Needs node and the packages ``python bench/sign.py`` installs into ``bench/.work``; the
test is skipped, saying so, where they are absent.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from service.db.engine import session
from service.issuer import build, contexts, keys, service
from service.settings import Settings
from tests.issuer import samples

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / ".work"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (WORK / "node_modules" / "@digitalbazaar" / "vc").is_dir(),
    reason="needs node and bench/.work/node_modules (run `python bench/sign.py` once)",
)


def _js_verify(payload: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    shutil.copy(ROOT / "bench" / "js" / "verify.mjs", WORK / "verify.mjs")
    path = tmp_path / "input.json"
    path.write_text(json.dumps(payload))
    out = subprocess.run(
        ["node", "verify.mjs", str(path)],
        cwd=WORK,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: list[dict[str, Any]] = json.loads(out.stdout)
    return result


def test_js_verifier_accepts_ours_and_rejects_tampered(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    with session(engine, write=True) as s:
        row = service.issue(s, settings=settings, award=samples.award(), now=samples.NOW, actor="t")
        s.commit()
        status_doc, _ = service.status_list_response(s, row.status_list_id)
        ring = service.keyring(s, settings)
    tampered = copy.deepcopy(row.document)
    tampered["credentialSubject"]["supervisionVerification"] = "unsupervised"
    base = settings.public_base_url
    loader = contexts.loader_for(base)
    payload = {
        "contexts": {u: loader(u, None)["document"] for u in build.credential_contexts(base)},
        "didDocuments": {ring.did: keys.did_document(ring)},
        "credentials": [row.document, tampered, status_doc],
    }
    results = _js_verify(payload, tmp_path)
    assert [r["verified"] for r in results] == [True, False, True], results
