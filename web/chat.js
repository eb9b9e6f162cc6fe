// The browser side of the wsguard chat (protocol: docs/protocol.md, "Chat protocol").
//
// Rules this file keeps:
// - server data only ever reaches the page through textContent / attributes set by DOM APIs,
//   never through innerHTML;
// - the access token lives in an HttpOnly cookie; the socket authenticates with that cookie and
//   the readable csrf_access_token as ?csrf_token= (double submit);
// - a socket is kept alive across token expiry (in-band refresh), server restarts and network
//   failures (reconnect with backoff, rooms re-joined, missed messages merged from history).
'use strict';

(function () {
  const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/;
  const MAX_TEXT = 4096;            // characters (Unicode code points)
  const HISTORY_PAGE = 50;
  const PING_EVERY_MS = 25000;
  const DEAD_AFTER_MS = 70000;      // nothing received for this long: the socket is dead
  const PENDING_TIMEOUT_MS = 15000; // an unacknowledged send is shown as failed after this
  const LOGIN_URL = '/login?next=' + encodeURIComponent('/chat');

  // ---------------------------------------------------------------- elements
  const $ = (id) => document.getElementById(id);
  const el = {
    conn: $('conn'), me: $('me'), logout: $('logout'), status: $('status'),
    rooms: $('rooms'), joinForm: $('join-form'), roomInput: $('room-input'),
    roomTitle: $('room-title'), leave: $('leave'), scroller: $('scroller'),
    loadOlder: $('load-older'), messages: $('messages'),
    sendForm: $('send-form'), input: $('message-input'), send: $('send'), charCount: $('char-count'),
    members: $('members'), memberCount: $('member-count'),
  };

  // ---------------------------------------------------------------- state
  let me = null;            // user name from the welcome frame
  let ws = null;            // the live socket (or null)
  let welcomed = false;     // the current socket got its welcome
  let attempt = 0;          // reconnect attempts since the last welcome
  let reconnectTimer = null;
  let pingTimer = null;
  let lastFrameAt = 0;
  let leaving = false;      // logging out or navigating to the login page: ignore closes
  let authRetried = false;  // one refresh attempt per auth failure before giving up
  let refCounter = 0;
  let statusTimer = null;
  let renderQueued = false;

  /** name -> room state; insertion order is the order of the room list. */
  const rooms = new Map();
  let current = null;       // name of the room shown
  /** ref -> {ref, room, text, sentAt, failed, hiddenBy} */
  const pending = new Map();

  function newRoom(name) {
    return {
      name,
      messages: new Map(),  // id -> message object
      nodes: new Map(),     // id -> <li>, cached so a re-render keeps DOM nodes
      system: [],           // {afterId, seq, text, node}
      members: new Set(),
      joined: false,        // the server confirmed it (members/history received)
      unread: 0,
      olderBefore: null,    // id we asked history before, while a "load older" is in flight
      noMore: false,        // the server has nothing older
    };
  }

  // ---------------------------------------------------------------- helpers
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

  function codePoints(text) {
    let n = 0;
    for (const _ of text) n++; // eslint-disable-line no-unused-vars
    return n;
  }

  function node(tag, className, text) {
    const n = document.createElement(tag);
    if (className) n.className = className;
    if (text !== undefined && text !== null) n.textContent = String(text);
    return n;
  }

  function setConn(state, text) {
    el.conn.dataset.state = state;
    el.conn.textContent = text;
  }

  function showStatus(text, kind) {
    el.status.textContent = text;
    el.status.dataset.kind = kind || 'info';
    if (statusTimer) clearTimeout(statusTimer);
    statusTimer = text ? setTimeout(() => { el.status.textContent = ''; }, 10000) : null;
  }

  function goLogin() {
    if (leaving) return;
    leaving = true;
    stopSocket();
    location.href = LOGIN_URL;
  }

  function storageKey() { return me ? 'wsguard.chat.' + me : null; }

  function saveRooms() {
    const key = storageKey();
    if (!key) return;
    try {
      sessionStorage.setItem(key, JSON.stringify({ rooms: [...rooms.keys()], current }));
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

  // ---------------------------------------------------------------- tokens
  let refreshing = null; // one /refresh at a time in this page
  let refreshTimer = null; // a scheduled in-band refresh

  /** Calls POST /refresh with the refresh cookie; resolves to the new access token.
   *  Rejects with {auth:true} when the server refuses (the session is over). */
  function refreshTokens() {
    if (refreshing) return refreshing;
    const run = async () => {
      const csrf = getCookie('csrf_refresh_token');
      if (!csrf) throw { auth: true };
      let res;
      try {
        res = await fetch('/refresh', {
          method: 'POST',
          credentials: 'same-origin',
          cache: 'no-store',
          headers: { 'X-CSRF-Token': csrf },
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
    // Several tabs of one user share the refresh cookie; a refresh token used twice revokes its
    // family, so refreshes are serialized across tabs where the browser can.
    const locked = (navigator.locks && navigator.locks.request)
      ? navigator.locks.request('wsguard-refresh', run)
      : run();
    refreshing = locked.finally(() => { refreshing = null; });
    return refreshing;
  }

  /** On {"type":"expiring"}: renew in band, well before the deadline but not at once, so that
   *  tabs of one user spread out and a token that is "expiring" from birth (a lifetime shorter
   *  than the server's warning) is not renewed in a hot loop. */
  function onExpiring(f) {
    if (refreshTimer) return;
    const left = Number.isFinite(f.in_s) && f.in_s > 0 ? f.in_s * 1000 : 0;
    const delay = Math.max(0, Math.min(left * (0.3 + Math.random() * 0.3), left - 5000));
    refreshTimer = setTimeout(() => { refreshTimer = null; refreshInBand(); }, delay);
  }

  function cancelRefresh() {
    if (refreshTimer) { clearTimeout(refreshTimer); refreshTimer = null; }
  }

  async function refreshInBand() {
    try {
      const token = await refreshTokens();
      if (ws && ws.readyState === WebSocket.OPEN) send({ type: 'refresh', token });
    } catch (e) {
      if (e && e.auth) goLogin();
      else showStatus('Could not renew the session; retrying when the connection drops.', 'error');
    }
  }

  // ---------------------------------------------------------------- socket
  function socketUrl() {
    const csrf = getCookie('csrf_access_token') || '';
    return (location.protocol === 'https:' ? 'wss' : 'ws') + '://' + location.host +
      '/chat/ws?csrf_token=' + encodeURIComponent(csrf);
  }

  function connect() {
    if (leaving) return;
    if (reconnectTimer) { clearTimeout(reconnectTimer); reconnectTimer = null; }
    if (!getCookie('csrf_access_token')) {
      // The access cookie is gone (expired): renew it, or log in again.
      refreshTokens().then(openSocket, (e) => {
        if (e && e.auth) goLogin(); else scheduleReconnect();
      });
      return;
    }
    openSocket();
  }

  function openSocket() {
    if (leaving) return;
    stopSocket();
    setConn('connecting', attempt ? 'reconnecting…' : 'connecting…');
    let sock;
    try {
      sock = new WebSocket(socketUrl());
    } catch (err) {
      scheduleReconnect();
      return;
    }
    ws = sock;
    welcomed = false;
    let opened = false;
    lastFrameAt = Date.now();
    sock.addEventListener('open', () => { opened = true; lastFrameAt = Date.now(); });
    sock.addEventListener('message', (ev) => {
      if (sock !== ws) return;
      lastFrameAt = Date.now();
      let frame;
      try { frame = JSON.parse(ev.data); } catch (_) { return; }
      if (frame && typeof frame === 'object') handleFrame(frame);
    });
    sock.addEventListener('close', (ev) => {
      if (sock !== ws) return;
      ws = null;
      onClosed(ev.code, ev.reason, opened);
    });
    // 'error' is always followed by 'close'; the close handler decides.
  }

  /** Detaches and closes the current socket without triggering the reconnect logic. */
  function stopSocket() {
    if (pingTimer) { clearInterval(pingTimer); pingTimer = null; }
    cancelRefresh();
    const sock = ws;
    ws = null;
    welcomed = false;
    if (sock && sock.readyState <= WebSocket.OPEN) {
      try { sock.close(1000); } catch (_) { /* already closing */ }
    }
  }

  function onClosed(code, reason, opened) {
    if (pingTimer) { clearInterval(pingTimer); pingTimer = null; }
    cancelRefresh();
    welcomed = false;
    updateControls();
    failPending();
    if (leaving) return;
    if (code === 4003) { // revoked or disabled
      goLogin();
      return;
    }
    if (code === 4001 || code === 1008) { // token expired / authentication failed
      if (code === 1008 && authRetried) { goLogin(); return; }
      authRetried = true;
      setConn('reconnecting', 'reconnecting…');
      refreshTokens().then(() => connect(), (e) => {
        if (e && e.auth) goLogin(); else scheduleReconnect();
      });
      return;
    }
    if (!opened && attempt >= 1) {
      // The handshake itself keeps failing (the server refuses before the upgrade, which the
      // browser does not show): find out whether the session is still valid.
      checkSession().then((ok) => { if (ok) scheduleReconnect(); });
      return;
    }
    if (code === 4029) showStatus('Rate limited by the server; reconnecting shortly.', 'error');
    scheduleReconnect();
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

  function scheduleReconnect() {
    if (leaving || reconnectTimer) return;
    const base = Math.min(30000, 1000 * Math.pow(2, attempt));
    const delay = Math.min(30000, Math.round(base * (0.75 + Math.random() * 0.5)));
    attempt++;
    setConn('reconnecting', 'reconnecting… (' + Math.ceil(delay / 1000) + ' s)');
    reconnectTimer = setTimeout(() => { reconnectTimer = null; connect(); }, delay);
  }

  function send(frame) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  function startPing() {
    if (pingTimer) clearInterval(pingTimer);
    pingTimer = setInterval(() => {
      if (!ws) return;
      if (Date.now() - lastFrameAt > DEAD_AFTER_MS) {
        // No pong for a long time: the connection is dead even if the browser has not noticed.
        const sock = ws;
        ws = null;
        try { sock.close(); } catch (_) { /* ignore */ }
        onClosed(1006, 'dead', true);
        return;
      }
      send({ type: 'ping' });
    }, PING_EVERY_MS);
  }

  window.addEventListener('online', () => {
    if (!ws && reconnectTimer) { clearTimeout(reconnectTimer); reconnectTimer = null; connect(); }
  });

  // ---------------------------------------------------------------- frames
  function handleFrame(f) {
    switch (f.type) {
      case 'welcome': return onWelcome(f);
      case 'members': return onMembers(f);
      case 'history': return onHistory(f);
      case 'message': return onMessage(f, true);
      case 'presence': return onPresence(f);
      case 'ack': return onAck(f);
      case 'error': return onError(f);
      case 'expiring': return onExpiring(f);
      case 'refreshed': authRetried = false; return;
      case 'pong': return;
      default: return;
    }
  }

  function onWelcome(f) {
    if (typeof f.user !== 'string') return;
    if (me && me !== f.user) { // another user logged in in this browser meanwhile
      leaving = true;
      stopSocket();
      location.reload();
      return;
    }
    const first = me === null;
    me = f.user;
    el.me.textContent = me;
    welcomed = true;
    attempt = 0;
    authRetried = false;
    setConn('open', 'connected');
    startPing();
    if (first) {
      const saved = loadRooms();
      const names = saved && saved.rooms.length ? saved.rooms : ['general'];
      for (const name of names) if (!rooms.has(name)) rooms.set(name, newRoom(name));
      current = saved && saved.current && rooms.has(saved.current) ? saved.current : names[0];
    }
    if (rooms.size === 0) { rooms.set('general', newRoom('general')); current = 'general'; }
    for (const room of rooms.values()) {
      room.joined = false;
      room.olderBefore = null;
      send({ type: 'join', room: room.name });
    }
    saveRooms();
    render();
  }

  function roomOf(f) {
    return typeof f.room === 'string' ? rooms.get(f.room) : undefined;
  }

  function onMembers(f) {
    const room = roomOf(f);
    if (!room || !Array.isArray(f.users)) return;
    room.joined = true;
    room.members = new Set(f.users.filter((u) => typeof u === 'string'));
    render();
  }

  function validMessage(m) {
    return m && typeof m === 'object' && Number.isFinite(m.id) &&
      typeof m.from === 'string' && typeof m.text === 'string';
  }

  /** Stores a message; returns true when it was new. */
  function storeMessage(room, m) {
    const known = room.messages.has(m.id);
    room.messages.set(m.id, {
      id: m.id, room: room.name, from: m.from, text: m.text,
      ts: typeof m.ts === 'string' ? m.ts : (known ? room.messages.get(m.id).ts : null),
    });
    if (known) {
      const n = room.nodes.get(m.id);
      if (n) fillMessageNode(n, room.messages.get(m.id));
    }
    if (!known && m.from === me) {
      // A new message of ours: the pending copy is hidden (its ack may still be on the way), or
      // dropped when it had been given up on (sent just before a disconnect, stored after all).
      for (const p of pending.values()) {
        if (p.room === room.name && !p.hiddenBy && p.text === m.text) {
          if (p.failed) pending.delete(p.ref); else p.hiddenBy = m.id;
          break;
        }
      }
    }
    return !known;
  }

  function onHistory(f) {
    const room = roomOf(f);
    if (!room || !Array.isArray(f.messages)) return;
    room.joined = true;
    const list = f.messages.filter(validMessage);
    let older = false;
    if (room.olderBefore !== null && list.every((m) => m.id < room.olderBefore)) {
      older = true;
      if (list.length < HISTORY_PAGE) room.noMore = true;
      room.olderBefore = null;
    }
    for (const m of list) storeMessage(room, m);
    render(older ? 'keep' : 'bottom-if-near');
  }

  function onMessage(f) {
    const room = roomOf(f);
    if (!room || !validMessage(f)) return;
    const fresh = storeMessage(room, f);
    if (fresh && room.name !== current) room.unread++;
    render(f.from === me ? 'bottom' : 'bottom-if-near');
  }

  function onPresence(f) {
    const room = roomOf(f);
    if (!room || typeof f.user !== 'string' || f.user === me) return;
    if (f.event === 'join') {
      if (room.members.has(f.user)) return;
      room.members.add(f.user);
      addSystem(room, f.user + ' joined');
    } else if (f.event === 'leave') {
      if (!room.members.has(f.user)) return;
      room.members.delete(f.user);
      addSystem(room, f.user + ' left');
    }
    render('bottom-if-near');
  }

  function addSystem(room, text) {
    let maxId = -Infinity;
    for (const id of room.messages.keys()) if (id > maxId) maxId = id;
    room.system.push({ afterId: maxId, seq: room.system.length, text, node: null });
    if (room.system.length > 200) room.system.splice(0, room.system.length - 200);
  }

  function onAck(f) {
    if (typeof f.ref !== 'string') return;
    const p = pending.get(f.ref);
    if (!p) return;
    pending.delete(f.ref);
    const room = rooms.get(p.room);
    if (room && Number.isFinite(f.id) && !room.messages.has(f.id)) {
      room.messages.set(f.id, { id: f.id, room: p.room, from: me, text: p.text, ts: new Date().toISOString() });
    }
    render('bottom');
  }

  function onError(f) {
    const code = typeof f.code === 'string' ? f.code : 'error';
    const detail = typeof f.detail === 'string' ? f.detail : '';
    if (typeof f.ref === 'string' && pending.has(f.ref)) {
      pending.get(f.ref).failed = true;
      render();
    }
    for (const room of rooms.values()) {
      // A refused "load older" must not leave the button spinning.
      if (room.olderBefore !== null) room.olderBefore = null;
    }
    showStatus(code.replace(/_/g, ' ') + (detail ? ': ' + detail : ''), 'error');
    updateControls();
  }

  /** Sends that were not acknowledged when the socket closed: shown as not delivered. */
  function failPending() {
    let changed = false;
    for (const p of pending.values()) if (!p.failed) { p.failed = true; changed = true; }
    if (changed) render();
  }

  setInterval(() => {
    const now = Date.now();
    let changed = false;
    for (const p of pending.values()) {
      if (!p.failed && now - p.sentAt > PENDING_TIMEOUT_MS) { p.failed = true; changed = true; }
    }
    if (changed) render();
  }, 2000);

  // ---------------------------------------------------------------- rendering
  let scrollIntent = null;

  function render(intent) {
    // 'keep' (older history prepended) beats 'bottom' beats 'bottom-if-near'.
    const rank = { 'bottom-if-near': 1, bottom: 2, keep: 3 };
    if (intent && (!scrollIntent || rank[intent] > rank[scrollIntent])) scrollIntent = intent;
    if (renderQueued) return;
    renderQueued = true;
    Promise.resolve().then(doRender);
  }

  function doRender() {
    renderQueued = false;
    const intent = scrollIntent;
    scrollIntent = null;
    const sc = el.scroller;
    const nearBottom = sc.scrollHeight - sc.scrollTop - sc.clientHeight < 80;
    const oldHeight = sc.scrollHeight;
    const oldTop = sc.scrollTop;

    renderRooms();
    const room = current ? rooms.get(current) : null;
    el.roomTitle.textContent = room ? '#' + room.name : 'No room';
    if (room) room.unread = 0;
    renderMessages(room);
    renderMembers(room);
    updateControls();

    if (intent === 'keep') {
      sc.scrollTop = oldTop + (sc.scrollHeight - oldHeight);
    } else if (intent === 'bottom' || nearBottom) {
      sc.scrollTop = sc.scrollHeight;
    }
  }

  function renderRooms() {
    const items = [];
    for (const room of rooms.values()) {
      const li = node('li');
      const b = node('button', 'room' + (room.name === current ? ' active' : ''));
      b.type = 'button';
      b.dataset.room = room.name;
      b.dataset.testid = 'room';
      if (room.name === current) b.setAttribute('aria-current', 'true');
      b.appendChild(node('span', 'room-name', '#' + room.name));
      if (room.unread > 0 && room.name !== current) {
        b.appendChild(node('span', 'badge', room.unread > 99 ? '99+' : room.unread));
      }
      li.appendChild(b);
      items.push(li);
    }
    el.rooms.replaceChildren(...items);
  }

  function formatTime(ts) {
    if (!ts) return '';
    const d = new Date(ts);
    if (isNaN(d.getTime())) return '';
    const sameDay = d.toDateString() === new Date().toDateString();
    const opts = sameDay ? { hour: '2-digit', minute: '2-digit' }
      : { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' };
    return d.toLocaleString(undefined, opts);
  }

  function fillMessageNode(li, m) {
    li.replaceChildren();
    li.dataset.id = String(m.id);
    li.dataset.from = m.from;
    li.classList.toggle('mine', m.from === me);
    const meta = node('div', 'meta');
    meta.appendChild(node('span', 'from', m.from));
    const t = node('time', 'ts', formatTime(m.ts));
    if (m.ts) { t.dateTime = m.ts; t.title = m.ts; }
    meta.appendChild(t);
    li.appendChild(meta);
    li.appendChild(node('div', 'text', m.text));
  }

  function messageNode(room, m) {
    let li = room.nodes.get(m.id);
    if (!li) {
      li = node('li', 'msg');
      li.dataset.testid = 'message';
      fillMessageNode(li, m);
      room.nodes.set(m.id, li);
    }
    return li;
  }

  function pendingNode(p) {
    const li = node('li', 'msg mine pending' + (p.failed ? ' failed' : ''));
    li.dataset.testid = 'message';
    li.dataset.ref = p.ref;
    li.dataset.from = me || '';
    const meta = node('div', 'meta');
    meta.appendChild(node('span', 'from', me || ''));
    meta.appendChild(node('span', 'ts', p.failed ? 'not delivered' : 'sending…'));
    li.appendChild(meta);
    li.appendChild(node('div', 'text', p.text));
    if (p.failed) {
      const actions = node('div', 'actions');
      const retry = node('button', 'subtle', 'Retry');
      retry.type = 'button';
      retry.dataset.action = 'retry';
      retry.dataset.ref = p.ref;
      const discard = node('button', 'subtle', 'Discard');
      discard.type = 'button';
      discard.dataset.action = 'discard';
      discard.dataset.ref = p.ref;
      actions.append(retry, discard);
      li.appendChild(actions);
    }
    return li;
  }

  function renderMessages(room) {
    if (!room) { el.messages.replaceChildren(); return; }
    const entries = [];
    for (const m of room.messages.values()) entries.push({ k1: m.id, k2: 0, k3: 0, m });
    for (const s of room.system) entries.push({ k1: s.afterId, k2: 1, k3: s.seq, s });
    entries.sort((a, b) => (a.k1 - b.k1) || (a.k2 - b.k2) || (a.k3 - b.k3));
    const out = [];
    for (const e of entries) {
      if (e.m) out.push(messageNode(room, e.m));
      else {
        if (!e.s.node) {
          e.s.node = node('li', 'system', e.s.text);
          e.s.node.dataset.testid = 'system';
        }
        out.push(e.s.node);
      }
    }
    for (const p of pending.values()) if (p.room === room.name && !p.hiddenBy) out.push(pendingNode(p));
    if (out.length === 0 && room.joined) {
      out.push(node('li', 'empty', 'No messages yet. Say hello!'));
    }
    el.messages.replaceChildren(...out);
    // Nodes of messages no longer stored would leak otherwise.
    if (room.nodes.size > room.messages.size) {
      for (const id of room.nodes.keys()) if (!room.messages.has(id)) room.nodes.delete(id);
    }
  }

  function renderMembers(room) {
    const names = room ? [...room.members] : [];
    if (room && room.joined && me && !room.members.has(me)) names.push(me);
    names.sort((a, b) => a.localeCompare(b));
    const items = names.map((name) => {
      const li = node('li', 'member' + (name === me ? ' self' : ''));
      li.dataset.user = name;
      li.dataset.testid = 'member';
      li.appendChild(node('span', 'dot'));
      li.appendChild(node('span', 'name', name));
      if (name === me) li.appendChild(node('span', 'you', 'you'));
      return li;
    });
    el.members.replaceChildren(...items);
    el.memberCount.textContent = room ? String(names.length) : '';
  }

  function updateControls() {
    const room = current ? rooms.get(current) : null;
    const online = welcomed && !!ws;
    el.input.disabled = !room;
    const n = codePoints(el.input.value);
    const tooLong = n > MAX_TEXT;
    el.send.disabled = !online || !room || tooLong || el.input.value.trim() === '';
    el.charCount.textContent = n > MAX_TEXT - 200 ? n + ' / ' + MAX_TEXT : '';
    el.charCount.classList.toggle('over', tooLong);
    el.leave.disabled = !room;
    const canOlder = !!room && room.messages.size > 0 && !room.noMore;
    el.loadOlder.hidden = !canOlder;
    el.loadOlder.disabled = !online || (room && room.olderBefore !== null);
    el.loadOlder.textContent = room && room.olderBefore !== null ? 'Loading…' : 'Load older';
  }

  // ---------------------------------------------------------------- user actions
  function switchTo(name) {
    if (!rooms.has(name)) return;
    current = name;
    saveRooms();
    render('bottom');
  }

  function joinRoom(name) {
    if (!ROOM_RE.test(name)) {
      showStatus('Room names are 1–64 letters, digits, ".", "_" or "-".', 'error');
      return false;
    }
    if (!rooms.has(name)) {
      rooms.set(name, newRoom(name));
      send({ type: 'join', room: name });
    }
    switchTo(name);
    return true;
  }

  function leaveRoom(name) {
    if (!rooms.has(name)) return;
    send({ type: 'leave', room: name });
    rooms.delete(name);
    for (const [ref, p] of pending) if (p.room === name) pending.delete(ref);
    if (current === name) current = rooms.has('general') ? 'general' : (rooms.keys().next().value || null);
    saveRooms();
    render('bottom');
  }

  function sendText(text, room) {
    const ref = 'c' + (++refCounter);
    const p = { ref, room, text, sentAt: Date.now(), failed: false, hiddenBy: null };
    pending.set(ref, p);
    if (!send({ type: 'send', room, text, ref })) p.failed = true;
    render('bottom');
  }

  el.sendForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = el.input.value;
    if (!current) return;
    if (text.trim() === '') return;
    if (codePoints(text) > MAX_TEXT) {
      showStatus('A message is at most ' + MAX_TEXT + ' characters.', 'error');
      return;
    }
    if (!welcomed || !ws) {
      showStatus('Not connected; the message was kept in the box.', 'error');
      return;
    }
    sendText(text, current);
    el.input.value = '';
    updateControls();
    el.input.focus();
  });

  el.input.addEventListener('input', updateControls);

  el.messages.addEventListener('click', (ev) => {
    const b = ev.target.closest('button[data-action]');
    if (!b) return;
    const p = pending.get(b.dataset.ref);
    if (!p) return;
    pending.delete(p.ref);
    if (b.dataset.action === 'retry') {
      if (!welcomed || !ws) {
        pending.set(p.ref, p);
        showStatus('Not connected yet.', 'error');
        return;
      }
      sendText(p.text, p.room);
    } else {
      render();
    }
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

  el.leave.addEventListener('click', () => { if (current) leaveRoom(current); });

  el.loadOlder.addEventListener('click', () => {
    const room = current ? rooms.get(current) : null;
    if (!room || room.olderBefore !== null) return;
    let min = Infinity;
    for (const id of room.messages.keys()) if (id < min) min = id;
    if (!Number.isFinite(min)) return;
    if (send({ type: 'history', room: room.name, before: min, limit: HISTORY_PAGE })) {
      room.olderBefore = min;
      updateControls();
    }
  });

  el.logout.addEventListener('click', async () => {
    if (leaving) return;
    leaving = true; // the server closes our socket with 4003: not a reason to do anything else
    el.logout.disabled = true;
    if (reconnectTimer) { clearTimeout(reconnectTimer); reconnectTimer = null; }
    const post = () => fetch('/logout', {
      method: 'POST',
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { 'X-CSRF-Token': getCookie('csrf_access_token') || '' },
    });
    try {
      let res = await post();
      if (res.status === 401 && getCookie('csrf_refresh_token')) {
        // The access token expired: renew it so that the logout can revoke the session.
        try { await refreshTokens(); res = await post(); } catch (_) { /* logged out anyway */ }
      }
    } catch (_) { /* network failure: still leave the page */ }
    if (me) { try { sessionStorage.removeItem(storageKey()); } catch (_) { /* ignore */ } }
    stopSocket();
    location.href = '/login';
  });

  // ---------------------------------------------------------------- start
  updateControls();
  connect();
})();
