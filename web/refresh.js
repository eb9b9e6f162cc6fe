// The access cookie has expired but the refresh cookie is still valid: rotate it through
// POST /refresh (which needs the CSRF header only a page can send), then reload this page.
(function () {
  'use strict';
  function cookie(name) {
    const prefix = name + '=';
    const found = document.cookie.split('; ').find((c) => c.startsWith(prefix));
    return found ? decodeURIComponent(found.slice(prefix.length)) : '';
  }
  const here = location.pathname + location.search;
  const toLogin = () => location.replace('/login?next=' + encodeURIComponent(here));
  fetch('/refresh', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'X-CSRF-Token': cookie('csrf_refresh_token') },
  })
    .then((response) => (response.ok ? location.replace(here) : toLogin()))
    .catch(toLogin);
})();
