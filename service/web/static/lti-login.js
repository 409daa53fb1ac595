// Login with platform storage: keep state and nonce there, then go on to the platform.
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
