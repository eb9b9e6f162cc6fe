// The chat page's rendering: rooms, messages (stored, pending, system lines), members and the
// controls, drawn from the page's state (chat.js owns it). Server data only ever reaches the page
// through textContent and attributes set by DOM APIs, never through innerHTML.

export const MAX_TEXT = 4096; // characters (Unicode code points)

const $ = (id) => document.getElementById(id);

export const el = {
  conn: $('conn'), me: $('me'), logout: $('logout'), status: $('status'),
  rooms: $('rooms'), joinForm: $('join-form'), roomInput: $('room-input'),
  roomTitle: $('room-title'), leave: $('leave'), scroller: $('scroller'),
  loadOlder: $('load-older'), messages: $('messages'),
  sendForm: $('send-form'), input: $('message-input'), send: $('send'), charCount: $('char-count'),
  members: $('members'), memberCount: $('member-count'),
};

export function codePoints(text) {
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

export function setConn(state, text) {
  el.conn.dataset.state = state;
  el.conn.textContent = text;
}

let statusTimer = null;

export function showStatus(text, kind) {
  el.status.textContent = text;
  el.status.dataset.kind = kind || 'info';
  if (statusTimer) clearTimeout(statusTimer);
  statusTimer = text ? setTimeout(() => { el.status.textContent = ''; }, 10000) : null;
}

/**
 * Draws `state` ({me, online, rooms, current, pending}) at most once per microtask; `intent` says
 * where to scroll: 'keep' (older history prepended) beats 'bottom' beats 'bottom-if-near'.
 */
export function createView(state) {
  let queued = false;
  let scrollIntent = null;
  const rank = { 'bottom-if-near': 1, bottom: 2, keep: 3 };

  function render(intent) {
    if (intent && (!scrollIntent || rank[intent] > rank[scrollIntent])) scrollIntent = intent;
    if (queued) return;
    queued = true;
    Promise.resolve().then(draw);
  }

  function draw() {
    queued = false;
    const intent = scrollIntent;
    scrollIntent = null;
    const sc = el.scroller;
    const nearBottom = sc.scrollHeight - sc.scrollTop - sc.clientHeight < 80;
    const oldHeight = sc.scrollHeight;
    const oldTop = sc.scrollTop;

    renderRooms(state);
    const room = state.current ? state.rooms.get(state.current) : null;
    el.roomTitle.textContent = room ? '#' + room.name : 'No room';
    if (room) room.unread = 0;
    renderMessages(state, room);
    renderMembers(state, room);
    updateControls(state);

    if (intent === 'keep') {
      sc.scrollTop = oldTop + (sc.scrollHeight - oldHeight);
    } else if (intent === 'bottom' || nearBottom) {
      sc.scrollTop = sc.scrollHeight;
    }
  }

  return { render, updateControls: () => updateControls(state), refill: fillMessageNode };
}

function renderRooms(state) {
  const items = [];
  for (const room of state.rooms.values()) {
    const li = node('li');
    const b = node('button', 'room' + (room.name === state.current ? ' active' : ''));
    b.type = 'button';
    b.dataset.room = room.name;
    b.dataset.testid = 'room';
    if (room.name === state.current) b.setAttribute('aria-current', 'true');
    b.appendChild(node('span', 'room-name', '#' + room.name));
    if (room.unread > 0 && room.name !== state.current) {
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

function fillMessageNode(li, m, me) {
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

function messageNode(room, m, me) {
  let li = room.nodes.get(m.id);
  if (!li) {
    li = node('li', 'msg');
    li.dataset.testid = 'message';
    fillMessageNode(li, m, me);
    room.nodes.set(m.id, li);
  }
  return li;
}

function pendingNode(p, me) {
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

function renderMessages(state, room) {
  if (!room) { el.messages.replaceChildren(); return; }
  const entries = [];
  for (const m of room.messages.values()) entries.push({ k1: m.id, k2: 0, k3: 0, m });
  for (const s of room.system) entries.push({ k1: s.afterId, k2: 1, k3: s.seq, s });
  entries.sort((a, b) => (a.k1 - b.k1) || (a.k2 - b.k2) || (a.k3 - b.k3));
  const out = [];
  for (const e of entries) {
    if (e.m) out.push(messageNode(room, e.m, state.me));
    else {
      if (!e.s.node) {
        e.s.node = node('li', 'system', e.s.text);
        e.s.node.dataset.testid = 'system';
      }
      out.push(e.s.node);
    }
  }
  for (const p of state.pending.values()) {
    if (p.room === room.name && !p.hiddenBy) out.push(pendingNode(p, state.me));
  }
  if (out.length === 0 && room.joined) {
    out.push(node('li', 'empty', 'No messages yet. Say hello!'));
  }
  el.messages.replaceChildren(...out);
  // Nodes of messages no longer stored would leak otherwise.
  if (room.nodes.size > room.messages.size) {
    for (const id of room.nodes.keys()) if (!room.messages.has(id)) room.nodes.delete(id);
  }
}

function renderMembers(state, room) {
  const me = state.me;
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

function updateControls(state) {
  const room = state.current ? state.rooms.get(state.current) : null;
  el.input.disabled = !room;
  const n = codePoints(el.input.value);
  const tooLong = n > MAX_TEXT;
  el.send.disabled = !state.online || !room || tooLong || el.input.value.trim() === '';
  el.charCount.textContent = n > MAX_TEXT - 200 ? n + ' / ' + MAX_TEXT : '';
  el.charCount.classList.toggle('over', tooLong);
  el.leave.disabled = !room;
  const canOlder = !!room && room.messages.size > 0 && !room.noMore;
  el.loadOlder.hidden = !canOlder;
  el.loadOlder.disabled = !state.online || (room && room.loadingOlder);
  el.loadOlder.textContent = room && room.loadingOlder ? 'Loading…' : 'Load older';
}
