// The browser side of the wsguard chat (protocol: docs/protocol.md, "Chat protocol"), on
// wsguard's JavaScript client (/client.js, clients/js in the repository).
//
// Rules this file keeps:
// - server data only ever reaches the page through chat-view.js, by textContent and attributes;
// - the access token lives in an HttpOnly cookie; the socket authenticates with that cookie and
//   the readable csrf_access_token as ?csrf_token= (double submit); only an in-band renewal
//   handles a token, the one POST /refresh answers with;
// - the client keeps the socket across token expiry (in-band refresh), server restarts and
//   network failures (backoff), and re-joins every room from the last message it delivered, so
//   that messages sent meanwhile appear once each; when they cannot be recovered, the room shows
//   the newest page instead.

import { Client } from '/client.js';
import { el, createView, setConn, showStatus, codePoints, MAX_TEXT } from './chat-view.js';

const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const HISTORY_PAGE = 50;
const PENDING_TIMEOUT_MS = 15000; // an unacknowledged send is shown as failed after this
const LOGIN_URL = '/login?next=' + encodeURIComponent('/chat');

/** What the page shows; chat-view.js draws it. */
const state = {
  me: null,          // user name from the welcome frame
  online: false,     // connected and welcomed
  rooms: new Map(),  // name -> room; insertion order is the order of the room list
  current: null,     // name of the room shown
  pending: new Map(), // ref -> {ref, room, text, sentAt, failed, hiddenBy}
};
const view = createView(state);
const render = view.render;
let leaving = false; // logging out or going to the login page: closes mean nothing
let refCounter = 0;
let failedDials = 0; // connection attempts in a row that never got a welcome

function newRoom(name) {
  return {
    name,
    handle: null,         // the client's Room
    messages: new Map(),  // id -> message
    nodes: new Map(),     // id -> <li>, kept so that a re-render keeps DOM nodes
    system: [],           // {afterId, seq, text, node}
    members: new Set(),
    joined: false,        // the server answered the join
    unread: 0,
    loadingOlder: false,
    noMore: false,        // the server has nothing older
  };
}

// ---------------------------------------------------------------- session
function getCookie(name) {
  const parts = document.cookie ? document.cookie.split(';') : [];
  for (const part of parts) {
    const i = part.indexOf('=');
    const key = (i < 0 ? part : part.slice(0, i)).trim();
    if (key === name) {
      const value = i < 0 ? '' : part.slice(i + 1).trim();
      try { return decodeURIComponent(value); } catch (_) { return value; }
    }
  }
  return null;
}

function goLogin() {
  if (leaving) return;
  leaving = true;
  client.close();
  location.href = LOGIN_URL;
}

let refreshing = null; // one POST /refresh at a time in this page

/** POST /refresh with the refresh cookie: new cookies, and the new access token. Rejects with
 *  {auth: true} when the server refuses (the session is over). */
function refreshTokens() {
  if (refreshing) return refreshing;
  const run = async () => {
    const csrf = getCookie('csrf_refresh_token');
    if (!csrf) throw { auth: true };
    let res;
    try {
      res = await fetch('/refresh', {
        method: 'POST', credentials: 'same-origin', cache: 'no-store', headers: { 'X-CSRF-Token': csrf },
      });
    } catch (err) {
      throw { auth: false, err };
    }
    if (res.status === 401 || res.status === 403 || res.status === 400) throw { auth: true };
    if (!res.ok) throw { auth: false, status: res.status };
    const body = await res.json();
    if (!body || typeof body.access_token !== 'string') throw { auth: false };
    return body.access_token;
  };
  // Tabs of one user share the refresh cookie, and a refresh token used twice ends the login:
  // refreshes are serialized across tabs where the browser can.
  const locked = navigator.locks && navigator.locks.request ? navigator.locks.request('wsguard-refresh', run) : run();
  refreshing = locked.finally(() => { refreshing = null; });
  return refreshing;
}

/** The client asks before every (re)connect and when the token is about to expire. Connecting,
 *  the cookies authenticate (null); they are renewed first when the access cookie is gone or the
 *  server said it expired. Expiring, the new token goes in band. */
async function getToken({ reason }) {
  if (reason === 'connect' && getCookie('csrf_access_token')) return null;
  try {
    const token = await refreshTokens();
    return reason === 'expiring' ? token : null;
  } catch (e) {
    if (e && e.auth) goLogin();
    throw new Error(e && e.auth ? 'the session is over' : 'could not renew the session');
  }
}

/** Resolves true when /chat still serves the page (the cookies are valid), after one refresh. */
async function checkSession() {
  const valid = async () => {
    const res = await fetch('/chat', { credentials: 'same-origin', redirect: 'manual', cache: 'no-store' });
    return res.type !== 'opaqueredirect' && res.status < 300;
  };
  try {
    if (await valid()) return true;
    await refreshTokens();
    if (await valid()) return true;
    goLogin();
    return false;
  } catch (e) {
    if (e && e.auth) { goLogin(); return false; }
    return true; // the network is down: keep trying
  }
}

const client = new Client({
  url: () => (location.protocol === 'https:' ? 'wss' : 'ws') + '://' + location.host +
    '/chat/ws?csrf_token=' + encodeURIComponent(getCookie('csrf_access_token') || ''),
  getToken,
});

// ---------------------------------------------------------------- connection
client.on('state', (now, detail) => {
  state.online = now === 'connected';
  if (now === 'connecting') {
    setConn('connecting', detail.attempt ? 'reconnecting…' : 'connecting…');
  } else if (now === 'connected') {
    failedDials = 0;
    setConn('open', detail.transport === 'stream' ? 'connected (HTTP streaming)' : 'connected');
  } else if (now === 'disconnected') {
    const wait = detail.retryIn ? ' (' + Math.ceil(detail.retryIn / 1000) + ' s)' : '';
    setConn('reconnecting', 'reconnecting…' + wait);
    if (detail.code === 4029) showStatus('Rate limited by the server; reconnecting shortly.', 'error');
    // A refused handshake looks to a page like a connection that never opened: after the second
    // in a row, find out whether the session is still valid.
    if (detail.previous === 'connecting' && ++failedDials >= 2) checkSession();
  } else if (now === 'closed' && !leaving) {
    goLogin(); // revoked (4003) or refused even with a renewed token
  }
  render();
});

client.on('welcome', (user) => {
  if (state.me && state.me !== user) { // another user logged in in this browser meanwhile
    leaving = true;
    client.close();
    location.reload();
    return;
  }
  if (state.me === null) {
    state.me = user;
    el.me.textContent = user;
    const saved = loadRooms();
    const names = saved && saved.rooms.length ? saved.rooms : ['general'];
    for (const name of names) joinRoom(name, false);
    state.current = saved && saved.current && state.rooms.has(saved.current) ? saved.current : names[0];
    saveRooms();
  }
  render();
});

client.on('error', (err) => {
  if (err.code === 'listener') console.error(err); // eslint-disable-line no-console
});

function storageKey() { return state.me ? 'wsguard.chat.' + state.me : null; }

function saveRooms() {
  const key = storageKey();
  if (!key) return;
  try {
    sessionStorage.setItem(key, JSON.stringify({ rooms: [...state.rooms.keys()], current: state.current }));
  } catch (_) { /* storage unavailable: nothing to keep */ }
}

function loadRooms() {
  const key = storageKey();
  if (!key) return null;
  try {
    const saved = JSON.parse(sessionStorage.getItem(key) || 'null');
    if (saved && Array.isArray(saved.rooms)) {
      return { rooms: saved.rooms.filter((r) => typeof r === 'string' && ROOM_RE.test(r)),
               current: typeof saved.current === 'string' ? saved.current : null };
    }
  } catch (_) { /* ignore a broken entry */ }
  return null;
}

// ---------------------------------------------------------------- rooms
function validMessage(m) {
  return m && typeof m === 'object' && Number.isFinite(m.id) && typeof m.from === 'string' && typeof m.text === 'string';
}

/** Stores a message; returns true when it was new. */
function storeMessage(room, m) {
  const known = room.messages.has(m.id);
  const ts = typeof m.ts === 'string' ? m.ts : (known ? room.messages.get(m.id).ts : null);
  room.messages.set(m.id, { id: m.id, room: room.name, from: m.from, text: m.text, ts });
  const n = known && room.nodes.get(m.id);
  if (n) view.refill(n, room.messages.get(m.id), state.me);
  if (!known && m.from === state.me) {
    // A new message of ours: its pending copy is hidden (the ack may still be on the way), or
    // dropped when it had been given up on (sent just before a disconnect, stored after all).
    for (const p of state.pending.values()) {
      if (p.room === room.name && !p.hiddenBy && p.text === m.text) {
        if (p.failed) state.pending.delete(p.ref); else p.hiddenBy = m.id;
        break;
      }
    }
  }
  return !known;
}

function addSystem(room, text) {
  let maxId = -Infinity;
  for (const id of room.messages.keys()) if (id > maxId) maxId = id;
  room.system.push({ afterId: maxId, seq: room.system.length, text, node: null });
  if (room.system.length > 200) room.system.splice(0, room.system.length - 200);
}

/** Joins `name` through the client, which re-joins it after every reconnect from the last
 *  message delivered. */
function joinRoom(name, show = true) {
  if (!ROOM_RE.test(name)) {
    showStatus('Room names are 1–64 letters, digits, ".", "_" or "-".', 'error');
    return false;
  }
  if (!state.rooms.has(name)) {
    const room = newRoom(name);
    state.rooms.set(name, room);
    const handle = client.join(name);
    room.handle = handle;
    handle.on('members', (users) => {
      room.joined = true;
      room.members = new Set(users);
      render();
    });
    handle.on('unrecovered', () => {
      // Messages were missed and are no longer kept: the newest page replaces what was shown.
      room.messages.clear();
      room.nodes.clear();
      room.system = [];
      room.noMore = false;
      showStatus('Some messages of #' + name + ' could not be recovered; showing the latest.', 'info');
    });
    handle.on('history', (ev) => {
      room.joined = true;
      for (const m of ev.messages.filter(validMessage)) storeMessage(room, m);
      render('bottom-if-near');
    });
    handle.on('message', (m) => {
      if (!validMessage(m)) return;
      if (storeMessage(room, m) && room.name !== state.current) room.unread++;
      render(m.from === state.me ? 'bottom' : 'bottom-if-near');
    });
    handle.on('presence', ({ user, event }) => onPresence(room, user, event));
    handle.on('error', (err) => showStatus(describe(err), 'error'));
  }
  if (show) switchTo(name);
  return true;
}

function onPresence(room, user, event) {
  if (user === state.me) return;
  if (event === 'join' && !room.members.has(user)) {
    room.members.add(user);
    addSystem(room, user + ' joined');
  } else if (event === 'leave' && room.members.has(user)) {
    room.members.delete(user);
    addSystem(room, user + ' left');
  }
  render('bottom-if-near');
}

function describe(err) {
  const code = typeof err.code === 'string' ? err.code : 'error';
  return code.replace(/_/g, ' ') + (err.detail ? ': ' + err.detail : '');
}

function switchTo(name) {
  if (!state.rooms.has(name)) return;
  state.current = name;
  saveRooms();
  render('bottom');
}

function leaveRoom(name) {
  const room = state.rooms.get(name);
  if (!room) return;
  room.handle.leave();
  state.rooms.delete(name);
  for (const [ref, p] of state.pending) if (p.room === name) state.pending.delete(ref);
  if (state.current === name) {
    state.current = state.rooms.has('general') ? 'general' : (state.rooms.keys().next().value || null);
  }
  saveRooms();
  render('bottom');
}

function sendText(text, name) {
  const room = state.rooms.get(name);
  if (!room) return;
  const ref = 'c' + (++refCounter);
  const p = { ref, room: name, text, sentAt: Date.now(), failed: false, hiddenBy: null };
  state.pending.set(ref, p);
  room.handle.send(text).then((ack) => {
    state.pending.delete(ref);
    if (Number.isFinite(ack.id) && !room.messages.has(ack.id)) {
      room.messages.set(ack.id, { id: ack.id, room: name, from: state.me, text, ts: new Date().toISOString() });
    }
    render('bottom');
  }, (err) => {
    // Not acknowledged (refused, or the socket dropped first): may be retried.
    p.failed = true;
    if (err.code !== 'disconnected' && err.code !== 'closed') showStatus(describe(err), 'error');
    render();
  });
  render('bottom');
}

setInterval(() => {
  const now = Date.now();
  let changed = false;
  for (const p of state.pending.values()) {
    if (!p.failed && now - p.sentAt > PENDING_TIMEOUT_MS) { p.failed = true; changed = true; }
  }
  if (changed) render();
}, 2000);

// ---------------------------------------------------------------- user actions
el.sendForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = el.input.value;
  if (!state.current || text.trim() === '') return;
  if (codePoints(text) > MAX_TEXT) {
    showStatus('A message is at most ' + MAX_TEXT + ' characters.', 'error');
    return;
  }
  if (!state.online) {
    showStatus('Not connected; the message was kept in the box.', 'error');
    return;
  }
  sendText(text, state.current);
  el.input.value = '';
  view.updateControls();
  el.input.focus();
});

el.input.addEventListener('input', view.updateControls);

el.messages.addEventListener('click', (ev) => {
  const b = ev.target.closest('button[data-action]');
  if (!b) return;
  const p = state.pending.get(b.dataset.ref);
  if (!p) return;
  if (b.dataset.action === 'retry' && !state.online) {
    showStatus('Not connected yet.', 'error');
    return;
  }
  state.pending.delete(p.ref);
  if (b.dataset.action === 'retry') sendText(p.text, p.room); else render();
});

el.joinForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const name = el.roomInput.value.trim().replace(/^#/, '');
  if (joinRoom(name)) el.roomInput.value = '';
});

el.rooms.addEventListener('click', (ev) => {
  const b = ev.target.closest('button[data-room]');
  if (b) switchTo(b.dataset.room);
});

el.leave.addEventListener('click', () => { if (state.current) leaveRoom(state.current); });

el.loadOlder.addEventListener('click', () => {
  const room = state.current ? state.rooms.get(state.current) : null;
  if (!room || room.loadingOlder) return;
  let min = Infinity;
  for (const id of room.messages.keys()) if (id < min) min = id;
  if (!Number.isFinite(min)) return;
  room.loadingOlder = true;
  view.updateControls();
  room.handle.history({ before: min, limit: HISTORY_PAGE }).then((list) => {
    if (list.length < HISTORY_PAGE) room.noMore = true;
    for (const m of list.filter(validMessage)) storeMessage(room, m);
    render('keep');
  }, (err) => showStatus(describe(err), 'error')).finally(() => {
    room.loadingOlder = false;
    view.updateControls();
  });
});

el.logout.addEventListener('click', async () => {
  if (leaving) return;
  leaving = true; // the server closes our socket with 4003: nothing to do about it
  el.logout.disabled = true;
  const post = () => fetch('/logout', {
    method: 'POST', credentials: 'same-origin', cache: 'no-store',
    headers: { 'X-CSRF-Token': getCookie('csrf_access_token') || '' },
  });
  try {
    let res = await post();
    if (res.status === 401 && getCookie('csrf_refresh_token')) {
      // The access token expired: renew it so that the logout can revoke the session.
      try { await refreshTokens(); res = await post(); } catch (_) { /* logged out anyway */ }
    }
  } catch (_) { /* network failure: still leave the page */ }
  if (state.me) { try { sessionStorage.removeItem(storageKey()); } catch (_) { /* ignore */ } }
  client.close();
  location.href = '/login';
});

// ---------------------------------------------------------------- start
view.updateControls();
client.connect();
