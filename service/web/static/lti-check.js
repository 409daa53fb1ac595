// Launch without the state cookie: read state and nonce back from platform storage and
// post them with the one-time ticket (lti-cs-oidc). Data from the page's #lti-cfg block.
(async function () {
  const c = ltiStorage.cfg;
  const win = await ltiStorage.storageFrame();
  const state = win ? await ltiStorage.get(win, c.state_key) : null;
  const nonce = win ? await ltiStorage.get(win, c.nonce_key) : null;
  if (!state || !nonce) {
    document.getElementById("msg").textContent = "This launch could not be checked";
    document.getElementById("detail").textContent =
      "Your learning platform did not confirm the launch. Start the activity again from the course, or allow cookies for this site.";
    return;
  }
  const form = document.getElementById("confirm");
  form.elements.state.value = state;
  form.elements.nonce.value = nonce;
  form.submit();
})();
