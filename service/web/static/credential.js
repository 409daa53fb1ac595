// Conveniences for the public credential page. The page works without this file: the
// controls it enables stay hidden when scripts do not run.
(function () {
  "use strict";

  document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) { return; }
    button.hidden = false;
    var label = button.textContent;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(source.value).then(function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = label; }, 2000);
      }, function () {
        source.select();
      });
    });
  });

  // OB 3.0 IdentityHash: "sha256$" + hex(sha256(identifier + salt)).
  var form = document.querySelector("form.recipient-check");
  if (form && window.crypto && crypto.subtle && window.TextEncoder) {
    form.hidden = false;
    var result = form.querySelector(".recipient-result");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var email = form.querySelector("input").value.trim();
      var expected = (form.getAttribute("data-hash") || "").toLowerCase();
      var salt = form.getAttribute("data-salt") || "";
      var candidates = [email, email.toLowerCase()];
      Promise.all(candidates.map(function (value) {
        return crypto.subtle.digest("SHA-256", new TextEncoder().encode(value + salt));
      })).then(function (digests) {
        var match = digests.some(function (digest) {
          var hex = Array.prototype.map.call(new Uint8Array(digest), function (b) {
            return ("0" + b.toString(16)).slice(-2);
          }).join("");
          return "sha256$" + hex === expected;
        });
        result.textContent = match
          ? "Yes: this credential was issued to that address."
          : "No: this credential was not issued to that address.";
      });
    });
  }
})();
