// Dynamic registration finished: ask the platform to close its registration frame
// (lti-dr §3.6) when the administrator clicks "Close", not by itself: the page carries the
// command that activates the platform, and it must stay readable until it is copied.
function ltiClose() {
  (window.opener || window.parent).postMessage({subject: "org.imsglobal.lti.close"}, "*");
}
document.getElementById("close").addEventListener("click", ltiClose);
