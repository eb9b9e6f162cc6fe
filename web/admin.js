// The admin console (/admin): what it shows comes from the admin API (/api/admin/*, described in
// /docs under "admin"), read every POLL_MS; its actions go there too.
//
// Rules this file keeps:
// - it authenticates with the login cookies only; every POST carries X-CSRF-Token (the readable
//   csrf_access_token), and the server checks the Origin and the admin role on every request;
// - an expired access cookie is renewed once through POST /refresh, then the request is retried;
//   a login that cannot be renewed goes to the login page;
// - a 403 means the admin role was withdrawn (or the page is not this server's): polling stops;
// - server data reaches the page only through admin-view.js (textContent, attributes).

import * as view from './admin-view.js';

const { el } = view;
const POLL_MS = 2000;
const LOGIN_URL = '/login?next=' + encodeURIComponent('/admin');

let selected = null;   // the channel shown, by name
let previous = null;   // the last stats reading, for rates
let stopped = false;   // the role is gone or the session over: no more requests
let refreshing = null; // one /refresh at a time

function getCookie(name) {
  for (const part of document.cookie ? document.cookie.split(';') : []) {
    const i = part.indexOf('=');
    if ((i < 0 ? part : part.slice(0, i)).trim() === name) {
      const value = i < 0 ? '' : part.slice(i + 1).trim();
      try { return decodeURIComponent(value); } catch (_) { return value; }
    }
  }
  return null;
}

function stop(text) {
  stopped = true;
  view.setLive('closed', 'stopped');
  view.notice(text, 'error');
}

/** Renews the login cookies; resolves false when the login is over. */
function refreshLogin() {
  refreshing = refreshing || (async () => {
    const csrf = getCookie('csrf_refresh_token');
    if (!csrf) return false;
    try {
      const res = await fetch('/refresh', {
        method: 'POST', credentials: 'same-origin', cache: 'no-store', headers: { 'X-CSRF-Token': csrf },
      });
      return res.ok;
    } catch (_) {
      return false;
    }
  })().finally(() => { refreshing = null; });
  return refreshing;
}

/** A failed call: its status and the server's `detail`. */
class CallFailed extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

/** Calls the admin API; resolves to the JSON answer (null for 204). */
async function call(method, path, body) {
  if (stopped) throw new CallFailed(0, 'stopped');
  const send = () => {
    const headers = { 'X-CSRF-Token': getCookie('csrf_access_token') || '' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    return fetch('/api/admin' + path, {
      method, credentials: 'same-origin', cache: 'no-store', headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  };
  let res = await send();
  if (res.status === 401) {
    if (!(await refreshLogin())) {
      stop('Your login is over.');
      location.href = LOGIN_URL;
      throw new CallFailed(401, 'Not logged in');
    }
    res = await send();
  }
  if (res.status === 204) return null;
  const answer = await res.json().catch(() => ({}));
  if (res.status === 403) {
    stop(`Refused: ${answer.detail || 'forbidden'}. The console has stopped.`);
  }
  if (!res.ok) throw new CallFailed(res.status, answer.detail);
  return answer;
}

/** Runs an action and says how it went. */
async function act(what, run) {
  try {
    await run();
    view.notice(`${what}: done.`, 'ok');
  } catch (err) {
    if (!stopped) view.notice(`${what}: ${err.message}`, 'error');
  }
  poll();
}

function userActions(user) {
  const span = view.node('span', 'actions');
  const path = `/users/${encodeURIComponent(user)}`;
  span.append(
    view.actionButton('Disconnect', 'disconnect', () => act(`Disconnect ${user}`, () => call('POST', `${path}/disconnect`))),
    view.actionButton('Revoke', 'revoke-user', () => act(`Revoke ${user}`, () => call('POST', `${path}/revoke`)), true),
  );
  return span;
}

function keyRevoke(name) {
  const path = `/keys/${encodeURIComponent(name)}/revoke`;
  return view.actionButton('Revoke', 'revoke-key', () => act(`Revoke key ${name}`, () => call('POST', path)), true);
}

function select(channel) {
  selected = channel;
  el.publishChannel.value = channel;
  poll();
}

function rates(stats) {
  const last = previous;
  previous = stats;
  if (!last || stats.node !== last.node || stats.at_ms <= last.at_ms) return null;
  const seconds = (stats.at_ms - last.at_ms) / 1000;
  return {
    deliveries: (stats.deliveries - last.deliveries) / seconds,
    publications: (stats.publications - last.publications) / seconds,
  };
}

let polling = null;
/** Reads everything shown, at most one round at a time. */
function poll() {
  if (stopped) return Promise.resolve();
  polling = polling || (async () => {
    const channelPath = selected && `/channels/${encodeURIComponent(selected)}`;
    const reads = await Promise.allSettled([
      call('GET', '/stats'), call('GET', '/nodes'), call('GET', '/connections'), call('GET', '/channels'),
      channelPath ? call('GET', channelPath) : Promise.resolve(null), call('GET', '/keys'), call('GET', '/audit?limit=50'),
    ]);
    if (stopped) return;
    const [stats, nodes, connections, channels, channel, keys, audit] = reads.map((r) => (r.status === 'fulfilled' ? r.value : null));
    const failed = reads.find((r) => r.status === 'rejected');
    view.setLive(failed ? 'reconnecting' : 'open', failed ? `retrying: ${failed.reason.message}` : 'live');
    if (stats) view.drawStats(stats, rates(stats));
    if (nodes) view.drawNodes(nodes);
    if (connections) view.drawConnections(connections, userActions);
    if (channels) view.drawChannels(channels, selected, select);
    if (channel || !selected) view.drawChannel(channel);
    if (keys) view.drawKeys(keys, keyRevoke);
    if (audit) view.drawAudit(audit);
  })().finally(() => { polling = null; }); // a drawing error is the page's: not swallowed
  return polling;
}

el.publishForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const channel = el.publishChannel.value.trim();
  let data;
  try {
    data = JSON.parse(el.publishData.value);
  } catch (err) {
    view.notice(`The data is not JSON: ${err.message}`, 'error');
    return;
  }
  act(`Publish to ${channel}`, async () => {
    const answer = await call('POST', '/publish', { channel, data });
    selected = channel;
    return answer;
  });
});

el.keyForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const name = el.keyName.value.trim();
  const scopes = [...el.keyForm.querySelectorAll('input[name="scope"]:checked')].map((c) => c.value);
  act(`Add key ${name}`, async () => {
    view.showNewKey(await call('POST', '/keys', { name, scopes }));
    el.keyName.value = '';
  });
});

el.newKeyDone.addEventListener('click', view.hideNewKey);

el.logout.addEventListener('click', async () => {
  stopped = true;
  el.logout.disabled = true;
  try {
    await fetch('/logout', {
      method: 'POST', credentials: 'same-origin', cache: 'no-store',
      headers: { 'X-CSRF-Token': getCookie('csrf_access_token') || '' },
    });
  } catch (_) { /* leave the page anyway */ }
  location.href = '/login';
});

fetch('/users/me', { credentials: 'same-origin', cache: 'no-store' })
  .then((res) => (res.ok ? res.json() : null))
  .then((me) => { if (me) el.me.textContent = me.username; })
  .catch(() => {});
view.drawChannel(null);
poll();
setInterval(() => { if (!document.hidden) poll(); }, POLL_MS);
