// Dynamic registration finished: ask the platform to close its registration frame
// (lti-dr §3.6), at once on "Close" and by itself after a moment.
function ltiClose() {
  (window.opener || window.parent).postMessage({subject: "org.imsglobal.lti.close"}, "*");
}
document.getElementById("close").addEventListener("click", ltiClose);
setTimeout(ltiClose, 1500);
