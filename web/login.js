// The login form works without JavaScript; this only prevents a double submit.
'use strict';
(function () {
  const form = document.getElementById('login-form');
  const button = document.getElementById('login-submit');
  if (!form || !button) return;
  form.addEventListener('submit', function () {
    // Disable after the submit event has been dispatched, so the form still posts.
    setTimeout(function () {
      button.disabled = true;
      button.textContent = 'Logging in…';
    }, 0);
  });
  // Coming back with the browser's back button shows the cached page: re-enable it.
  window.addEventListener('pageshow', function () {
    button.disabled = false;
    button.textContent = 'Log in';
  });
})();
