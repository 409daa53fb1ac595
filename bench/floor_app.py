"""The floor reference for bench/launch.py: a FastAPI endpoint that only verifies an RS256 token.

Same framework, server (uvicorn) and JWS seam (service/jws.py) as microcred, a key parsed once
at startup, a sync route as in the project: everything a launch cannot avoid, nothing else.
Env: FLOOR_JWKS (path of the platform's key set), FLOOR_ISS, FLOOR_AUD.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Form
from fastapi.responses import HTMLResponse

from service import jws

_KEYS = [
    jws.public_key_from_jwk(k)
    for k in json.loads(Path(os.environ["FLOOR_JWKS"]).read_text())["keys"]
]
_ISS = os.environ["FLOOR_ISS"]
_AUD = os.environ["FLOOR_AUD"]

app = FastAPI()


@app.post("/launch", response_class=HTMLResponse)
def launch(id_token: Annotated[str, Form()]) -> str:
    claims = jws.verify(
        id_token, _KEYS, algorithms=["RS256"], audience=_AUD, issuer=_ISS, leeway=60
    )
    return f"<!doctype html><title>Landing</title><h1>Hello {html.escape(claims['sub'])}</h1>"
