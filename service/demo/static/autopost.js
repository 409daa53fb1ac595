// Submits the LTI form_post hop at once (login initiation, id_token). No data is read here.
document.getElementById("autopost").submit();
