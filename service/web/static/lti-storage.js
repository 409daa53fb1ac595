// LTI Client Side postMessages (lti-cs-pm v0.1) and platform storage (lti-pm-s v0.1):
// lti.capabilities to the parent (answer used only to pick the storage frame), then
// lti.put_data / lti.get_data to that frame with targetOrigin = the platform's OIDC auth
// origin, accepting only answers from that origin (ASVS 3.5.5). Configuration comes from
// the page's JSON block #lti-cfg; the page's CSP allows no inline script.
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
