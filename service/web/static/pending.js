// Polls /app/pending while the worker owes this page an evaluation or a pull (the note
// with data-poll), then reloads the page once - unless the user typed into a form: then
// the note says the results are ready and leaves the reload to them. Gives up after ten
// minutes (a tool run without a worker); the note's link reloads by hand.
(function () {
  "use strict";
  var note = document.querySelector("[data-poll]");
  if (!note || !window.fetch) return;
  var url = note.getAttribute("data-poll");
  var typed = false;
  document.addEventListener("input", function () { typed = true; });
  var waited = 0;
  var delay = 2000;
  function done() {
    if (typed) {
      note.firstChild.textContent = "The worker is done: reload the page to see the results. ";
      return;
    }
    note.firstChild.textContent = "The worker is done; updating the page. ";
    var next = new URL(window.location.href);
    next.searchParams.delete("done");
    next.searchParams.delete("n");
    window.location.replace(next.toString());
  }
  function poll() {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : { pending: true }; })
      .then(function (body) {
        if (!body.pending) { done(); return; }
        again();
      })
      .catch(again);
  }
  function again() {
    waited += delay;
    if (waited > 600000) return;
    delay = Math.min(delay + 1000, 10000);
    window.setTimeout(poll, delay);
  }
  window.setTimeout(poll, delay);
})();
