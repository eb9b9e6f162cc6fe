// The admin console's drawing: tables of nodes, connections, channels, keys and the audit log,
// the counters, a channel's presence and history. Server data reaches the page only through
// textContent and attributes set by DOM APIs, never through innerHTML: usernames, channel names
// and publications are other people's text.

const $ = (id) => document.getElementById(id);

export const el = {
  live: $('live'), node: $('node'), me: $('me'), logout: $('logout'), notice: $('notice'),
  counters: $('counters'), refusals: $('refusals'), cluster: $('cluster'), nodes: $('nodes'),
  connections: $('connections'), connectionCount: $('connection-count'), channels: $('channels'),
  channelName: $('channel-name'), channelPresence: $('channel-presence'), history: $('history'),
  publishForm: $('publish-form'), publishChannel: $('publish-channel'), publishData: $('publish-data'),
  keys: $('keys'), keyForm: $('key-form'), keyName: $('key-name'), newKey: $('new-key'),
  newKeyName: $('new-key-name'), newKeyValue: $('new-key-value'), newKeyDone: $('new-key-done'),
  audit: $('audit'),
};

/** An element with a class and text; `attrs` are set as attributes (data-* included). */
export function node(tag, className, text, attrs) {
  const n = document.createElement(tag);
  if (className) n.className = className;
  if (text !== undefined && text !== null) n.textContent = String(text);
  for (const [name, value] of Object.entries(attrs || {})) n.setAttribute(name, String(value));
  return n;
}

function row(cells, attrs) {
  const tr = node('tr', '', null, attrs);
  for (const cell of cells) {
    const td = document.createElement('td');
    if (cell instanceof Node) td.append(cell); else td.textContent = cell === null ? '' : String(cell);
    tr.append(td);
  }
  return tr;
}

function fill(tbody, rows, empty, columns) {
  if (rows.length === 0) {
    const tr = node('tr');
    tr.append(node('td', 'empty', empty, { colspan: columns }));
    rows = [tr];
  }
  tbody.replaceChildren(...rows);
}

const count = (n, what) => `${n} ${what}${n === 1 ? '' : 's'}`;
const time = (ms) => (ms ? new Date(ms).toLocaleString() : 'never');
const clock = (ms) => new Date(ms).toLocaleTimeString();

/** A notice under the top bar: `kind` is "error", "ok" or "" (information). */
export function notice(text, kind = '') {
  el.notice.textContent = text || '';
  el.notice.dataset.kind = kind;
}

export function setLive(state, text) {
  el.live.dataset.state = state;
  el.live.textContent = text;
}

/** The counters of one stats reading; `rates` holds the per-second ones computed by the caller. */
export function drawStats(stats, rates) {
  el.node.textContent = stats.node;
  const tiles = [
    ['sockets', stats.sockets, 'WebSockets open'],
    ['connections', stats.connections, 'client connections open'],
    ['deliveries', rates ? rates.deliveries.toFixed(1) : '…', 'deliveries/s'],
    ['publications', rates ? rates.publications.toFixed(1) : '…', 'publications/s'],
    ['subscriptions', stats.subscriptions, 'subscriptions'],
    ['logins', `${stats.logins.ok} / ${stats.logins.failed}`, 'logins ok / failed'],
  ];
  el.counters.replaceChildren(...tiles.map(([name, value, label]) => {
    const tile = node('div', 'tile', null, { 'data-counter': name });
    tile.append(node('strong', '', value), node('span', 'muted small', label));
    return tile;
  }));
  const refusals = [];
  for (const [reason, count] of Object.entries(stats.refusals.auth)) refusals.push([`auth: ${reason}`, count]);
  refusals.push(['sockets refused', stats.refusals.sockets]);
  for (const [cap, count] of Object.entries(stats.refusals.connection_caps)) refusals.push([`connection cap: ${cap}`, count]);
  for (const [reason, count] of Object.entries(stats.closed)) refusals.push([`sockets closed: ${reason}`, count]);
  fill(el.refusals, refusals.map(([reason, count]) => row([reason, count], { 'data-reason': reason })), 'none', 2);
}

export function drawNodes(nodes) {
  el.cluster.textContent = nodes.cluster;
  fill(el.nodes, nodes.nodes.map((n) => {
    const name = node('span', '', n.node);
    if (n.this) name.append(node('span', 'badge', 'this node'));
    return row([name, n.channels, n.subscriptions], { 'data-node': n.node });
  }), 'no node', 3);
}

/** This node's sockets; `actions(user)` makes the buttons of a user's first row. */
export function drawConnections(list, actions) {
  el.connectionCount.textContent = `${count(list.sockets, 'socket')}, ${count(list.users, 'user')}`;
  let last = null;
  fill(el.connections, list.connections.map((c) => {
    const first = c.user !== last;
    last = c.user;
    const tr = row([c.user, c.endpoint, c.transport, clock(c.connected_at * 1000), first ? actions(c.user) : ''],
      { 'data-user': c.user });
    return tr;
  }), 'nobody is connected to this node', 5);
}

/** Channels; `select(name)` is called when one is clicked. */
export function drawChannels(list, selected, select) {
  fill(el.channels, list.channels.map((c) => {
    const name = node('button', 'link', c.channel, { type: 'button' });
    name.addEventListener('click', () => select(c.channel));
    const tr = row([name, c.subscribers, c.presence ? 'tracked' : 'off'], { 'data-channel': c.channel });
    if (c.channel === selected) tr.classList.add('selected');
    return tr;
  }), 'no channel has subscribers', 3);
}

export function drawChannel(detail) {
  el.channelName.textContent = detail ? detail.channel : '';
  if (!detail) {
    el.channelPresence.textContent = 'Pick a channel to see who is in it and what was said.';
    el.history.replaceChildren();
    return;
  }
  const subscribers = count(detail.subscribers, 'subscriber');
  el.channelPresence.textContent = detail.presence === null
    ? `${subscribers}; presence is off in this namespace`
    : `${subscribers}; present: ${detail.presence.join(', ') || 'nobody'}`;
  el.history.replaceChildren(...detail.publications.map((p) => {
    const li = node('li', '', null, { 'data-offset': p.offset });
    li.append(node('span', 'muted small', `#${p.offset} ${p.from === null ? '(server)' : p.from}`),
      node('code', 'data', JSON.stringify(p.data)));
    return li;
  }));
  if (detail.publications.length === 0) el.history.append(node('li', 'empty', 'no history kept'));
}

/** API keys; `revoke(name)` makes a key's revoke button. */
export function drawKeys(list, revoke) {
  fill(el.keys, list.keys.map((k) => row(
    [k.name, k.scopes.join(', '), time(k.created_at * 1000), time(k.last_used_at && k.last_used_at * 1000), revoke(k.name)],
    { 'data-key': k.name },
  )), 'no key', 5);
}

export function drawAudit(log) {
  fill(el.audit, log.entries.map((e) => row(
    [time(e.at_ms), e.actor, e.via, e.action, e.target, e.address, e.detail],
    { 'data-action': e.action, 'data-target': e.target },
  )), 'nothing yet', 7);
}

/** The key just added, shown until dismissed; it is nowhere else. */
export function showNewKey(added) {
  el.newKeyName.textContent = added.name;
  el.newKeyValue.textContent = added.key;
  el.newKey.hidden = false;
}

export function hideNewKey() {
  el.newKeyValue.textContent = '';
  el.newKey.hidden = true;
}

/**
 * A button that asks to be clicked twice within 4 s before `run` (a revocation cannot be taken
 * back); a single click suffices when `confirm` is false.
 */
export function actionButton(label, testid, run, confirm = false) {
  const button = node('button', 'subtle', label, { type: 'button', 'data-testid': testid });
  let armed = null;
  button.addEventListener('click', async () => {
    if (confirm && !armed) {
      button.textContent = `${label}?`;
      button.classList.add('armed');
      armed = setTimeout(() => { armed = null; button.textContent = label; button.classList.remove('armed'); }, 4000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    button.disabled = true;
    try { await run(); } finally { button.disabled = false; button.textContent = label; button.classList.remove('armed'); }
  });
  return button;
}
