// LTI platform storage, platform side (1EdTech lti-cs-pm / lti-pm-s v0.1, as Canvas does it).
// Loaded by the course page (answers lti.capabilities from the tool frame) and by the hidden
// frame named by `lti_storage_target` (answers lti.put_data / lti.get_data). Values live in
// this LMS origin's localStorage, keyed by the tool's origin, for a short time only.
(function () {
  "use strict";
  var script = document.currentScript;
  var toolOrigin = script.getAttribute("data-tool-origin");
  var frameName = script.getAttribute("data-frame") || undefined;
  var TTL_MS = 10 * 60 * 1000;
  var PREFIX = "lti-storage|";

  function storageKey(origin, key) { return PREFIX + origin + "|" + key; }

  function prune() {
    var now = Date.now();
    for (var i = localStorage.length - 1; i >= 0; i--) {
      var k = localStorage.key(i);
      if (!k || k.indexOf(PREFIX) !== 0) continue;
      try {
        if (JSON.parse(localStorage.getItem(k)).exp < now) localStorage.removeItem(k);
      } catch (e) { localStorage.removeItem(k); }
    }
  }

  function reply(event, subject, body) {
    body.subject = subject + ".response";
    event.source.postMessage(body, event.origin);
  }

  window.addEventListener("message", function (event) {
    var msg = event.data;
    if (!msg || typeof msg !== "object" || typeof msg.subject !== "string") return;
    if (msg.subject.indexOf("lti.") !== 0 || /\.response$/.test(msg.subject)) return;
    if (!event.source) return;
    var id = msg.message_id;
    if (event.origin !== toolOrigin) {
      reply(event, msg.subject, { message_id: id,
        error: { code: "unauthorized", message: "origin " + event.origin + " is not an installed tool" } });
      return;
    }
    if (msg.subject === "lti.capabilities") {
      reply(event, msg.subject, { message_id: id, supported_messages: [
        { subject: "lti.capabilities" },
        { subject: "lti.put_data", frame: frameName },
        { subject: "lti.get_data", frame: frameName }
      ] });
      return;
    }
    if (msg.subject !== "lti.put_data" && msg.subject !== "lti.get_data") {
      reply(event, msg.subject, { message_id: id,
        error: { code: "unsupported_subject", message: "unsupported subject " + msg.subject } });
      return;
    }
    if (typeof msg.key !== "string" || msg.key === "" || msg.key.length > 2048) {
      reply(event, msg.subject, { message_id: id, key: msg.key,
        error: { code: "bad_request", message: "key must be a non-empty string" } });
      return;
    }
    prune();
    var k = storageKey(event.origin, msg.key);
    if (msg.subject === "lti.put_data") {
      if (msg.value === null || msg.value === undefined) {
        localStorage.removeItem(k);
      } else if (typeof msg.value !== "string" || msg.value.length > 4096) {
        reply(event, msg.subject, { message_id: id, key: msg.key,
          error: { code: "bad_request", message: "value must be a string of at most 4096 characters" } });
        return;
      } else {
        localStorage.setItem(k, JSON.stringify({ value: msg.value, exp: Date.now() + TTL_MS }));
      }
      reply(event, msg.subject, { message_id: id, key: msg.key, value: msg.value });
      return;
    }
    var stored = localStorage.getItem(k);
    var value = stored === null ? null : JSON.parse(stored).value;
    reply(event, msg.subject, { message_id: id, key: msg.key, value: value });
  });
})();
