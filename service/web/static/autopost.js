// Post the page's form at once (the deep-linking response to the platform); the form has a
// visible button for browsers without JavaScript.
document.querySelector("form[data-autopost]").submit();
