"""The few HTML pages the LTI protocol itself needs (no templates: they run before any
session exists and must stay tiny). Dynamic values go in a JSON data block with ``<``
escaped, never into markup or script text.
"""

from __future__ import annotations

import html
import json
from typing import Any

__all__ = ["PLATFORM_STORAGE_JS", "json_block", "page"]

# LTI Client Side postMessages (lti-cs-pm v0.1) and platform storage (lti-pm-s v0.1):
# lti.capabilities to the parent (answer used only to pick the storage frame), then
# lti.put_data / lti.get_data to that frame with targetOrigin = the platform's OIDC auth
# origin, accepting only answers from that origin (ASVS 3.5.5).
PLATFORM_STORAGE_JS = r"""
const ltiStorage = (function () {
  const cfg = JSON.parse(document.getElementById("lti-cfg").textContent);
  function frameNamed(name) {
    if (!name || name === "_parent") return window.parent;
    try { return window.parent.frames[name] || window.parent; } catch (e) { return window.parent; }
  }
  function send(win, targetOrigin, msg, acceptOrigin, timeoutMs) {
    return new Promise(function (resolve) {
      const id = "mc-" + Math.random().toString(36).slice(2) + Date.now();
      msg.message_id = id;
      const timer = setTimeout(function () { done(null); }, timeoutMs);
      function done(value) {
        clearTimeout(timer); window.removeEventListener("message", onMessage); resolve(value);
      }
      function onMessage(ev) {
        if (acceptOrigin !== "*" && ev.origin !== acceptOrigin) return;
        const d = ev.data;
        if (!d || typeof d !== "object" || d.message_id !== id) return;
        if (d.subject !== msg.subject + ".response") return;
        done(d.error ? null : d);
      }
      window.addEventListener("message", onMessage);
      try { win.postMessage(msg, targetOrigin); } catch (e) { done(null); }
    });
  }
  async function storageFrame() {
    if (window.parent === window) return null;
    const caps = await send(window.parent, "*", {subject: "lti.capabilities"}, "*", 1500);
    let frame = cfg.target || "_parent";
    if (caps && Array.isArray(caps.supported_messages)) {
      const put = caps.supported_messages.find(function (m) {
        return m && m.subject === "lti.put_data";
      });
      if (!put) return null;
      if (put.frame) frame = put.frame;
    } else if (!cfg.target) {
      return null;
    }
    return frameNamed(frame);
  }
  async function put(win, key, value) {
    const msg = {subject: "lti.put_data", key: key, value: value};
    const r = await send(win, cfg.origin, msg, cfg.origin, 3000);
    return !!r;
  }
  async function get(win, key) {
    const r = await send(win, cfg.origin, {subject: "lti.get_data", key: key}, cfg.origin, 3000);
    return r && typeof r.value === "string" ? r.value : null;
  }
  return {cfg: cfg, storageFrame: storageFrame, put: put, get: get};
})();
"""


def json_block(data: dict[str, Any]) -> str:
    text = json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="lti-cfg">{text}</script>'


def page(
    title: str, body_html: str, *, script: str = "", data: dict[str, Any] | None = None
) -> str:
    """A minimal standalone page. ``body_html`` must already be escaped by the caller."""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title>"
        "<link rel='stylesheet' href='/static/microcred.css'></head><body>"
        "<header class='bar'><span class='brand'>microcred</span></header>"
        f"<main id='main'>{body_html}</main>"
        + (json_block(data) if data is not None else "")
        + (f"<script>{script}</script>" if script else "")
        + "</body></html>"
    )


def login_storage_page(*, auth_url: str, state: str, nonce: str, target: str, origin: str) -> str:
    """Login step when the platform offers platform storage: keep state and nonce there,
    then continue to the platform's auth endpoint (the cookie is set as well)."""
    script = (
        PLATFORM_STORAGE_JS
        + r"""
(async function () {
  const c = ltiStorage.cfg;
  try {
    const win = await ltiStorage.storageFrame();
    if (win) {
      await ltiStorage.put(win, "lti_state_" + c.state, c.state);
      await ltiStorage.put(win, "lti_nonce_" + c.nonce, c.nonce);
    }
  } finally {
    window.location.replace(c.auth_url);
  }
})();
"""
    )
    body = (
        "<section class='card'><h1>Signing you in…</h1>"
        "<p>Continuing to your learning platform.</p>"
        "<noscript><p>JavaScript is needed to continue.</p></noscript></section>"
    )
    return page(
        "Signing in · microcred",
        body,
        script=script,
        data={
            "auth_url": auth_url,
            "state": state,
            "nonce": nonce,
            "target": target,
            "origin": origin,
        },
    )
