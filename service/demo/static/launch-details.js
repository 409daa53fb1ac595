// Shows the claims of the id_token the LMS signed for the launch in the tool frame.
(function () {
  "use strict";
  var member = document.currentScript.getAttribute("data-member");
  var out = document.getElementById("claims");
  var frame = document.getElementById("tool");
  function show() {
    fetch("/launches/last?as=" + encodeURIComponent(member), { cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (data) out.textContent = JSON.stringify(data.claims, null, 2);
      });
  }
  frame.addEventListener("load", show);
})();
