"""The floor reference for bench/launch.py: a FastAPI endpoint that only verifies an RS256 token.

Same framework, server (uvicorn) and JWS seam (service/jws.py) as microcred, a key parsed once
at startup, a sync route as in the project: everything a launch cannot avoid, nothing else.
``/launch`` is the floor the targets name (one request). ``/flow/*`` adds the other two round
trips of a real launch (login redirect, landing page) with state kept in memory, to show how
much of the gap is the protocol's shape and how much is storage.
Env: FLOOR_JWKS (path of the platform's key set), FLOOR_ISS, FLOOR_AUD.
"""

from __future__ import annotations

import html
import json
import os
import secrets
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Form, HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse

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


# --- the same three round trips as a real launch, with no database (state in memory) ---

_pending: dict[str, str] = {}  # state -> nonce; a dict op is atomic under the GIL


@app.post("/flow/login")
def flow_login(
    iss: Annotated[str, Form()],
    login_hint: Annotated[str, Form()],
    client_id: Annotated[str, Form()],
    target_link_uri: Annotated[str, Form()],
) -> RedirectResponse:
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    _pending[state] = nonce
    query = urlencode(
        {
            "scope": "openid",
            "response_type": "id_token",
            "response_mode": "form_post",
            "prompt": "none",
            "client_id": client_id,
            "redirect_uri": target_link_uri,
            "login_hint": login_hint,
            "state": state,
            "nonce": nonce,
        }
    )
    return RedirectResponse(f"{iss}/auth?{query}", status_code=302)


@app.post("/flow/launch")
def flow_launch(
    id_token: Annotated[str, Form()], state: Annotated[str, Form()]
) -> RedirectResponse:
    nonce = _pending.pop(state, None)
    claims = jws.verify(
        id_token, _KEYS, algorithms=["RS256"], audience=_AUD, issuer=_ISS, leeway=60
    )
    if nonce is None or claims.get("nonce") != nonce:
        raise HTTPException(status_code=401, detail="state or nonce mismatch")
    return RedirectResponse(f"/flow/landing?u={quote(claims['sub'])}", status_code=303)


@app.get("/flow/landing", response_class=HTMLResponse)
def flow_landing(u: str) -> str:
    return f"<!doctype html><title>Landing</title><h1>Hello {html.escape(u)}</h1>"
