// wsguard-client: the browser and Node client of wsguard's JSON sockets (/connect, /chat/ws).
// One ES module, no dependencies. It reconnects with backoff, renews the token in band, and on
// every reconnect re-joins rooms and resubscribes channels from the last position delivered, so
// that an application sees each publication once and in order, or is told it must reload.
// The wire protocol is docs/protocol.md of the wsguard repository (sections 3 to 7).

/** The socket's states, in the order a connection goes through them. */
const STATES = ['disconnected', 'connecting', 'connected', 'closed'];

const DEFAULTS = {
  tokenTransport: 'frame',
  minReconnectDelay: 500,
  maxReconnectDelay: 30000,
  jitter: 'full',
  stableAfter: 5000,
  connectTimeout: 10000,
  pingInterval: 20000,
  pongTimeout: 10000,
  maxMessagesPerSecond: 40,
};

/** Frames that answer a command (in the order the commands were sent); others come unprompted. */
const REPLIES = new Set(['members', 'history', 'subscribed', 'ack', 'pong', 'refreshed', 'error']);

/** An error from the server (its `code` and `detail`) or from the client (`code` below). */
export class WsguardError extends Error {
  constructor(code, detail, cause) {
    super(detail ? `${code}: ${detail}` : code, cause === undefined ? undefined : { cause });
    this.name = 'WsguardError';
    this.code = code;
    this.detail = detail;
  }
}

/**
 * The delay before reconnect attempt `attempt` (0 for the first): exponential from `min`, capped
 * at `max`; "full" jitter draws it from [min, cap], "equal" jitter from [cap/2, cap].
 */
export function backoffDelay(attempt, { minReconnectDelay: min, maxReconnectDelay: max, jitter }, random = Math.random) {
  const cap = Math.min(max, min * 2 ** Math.min(attempt, 30));
  const low = jitter === 'equal' ? Math.max(min, cap / 2) : min;
  return Math.round(low + random() * (cap - low));
}

/**
 * When to renew a token that the server says expires in `inSeconds`: with a margin of half its
 * life, at most 10 to 20 s (jitter spreads a user's tabs), so that a short-lived token is not
 * renewed in a loop and a long one is renewed well before its end.
 */
export function refreshDelay(inSeconds, random = Math.random) {
  const left = Math.max(0, Number(inSeconds) || 0) * 1000;
  const margin = Math.min(left / 2, 10000 + random() * 10000);
  return Math.round(left - margin);
}

/**
 * Where a stream stands: the last offset delivered, in which epoch. `accept(offset)` says whether
 * a numbered item is new (and then advances), `settle(...)` applies a position from the server.
 */
export class Cursor {
  constructor() {
    this.offset = null; // null: no position yet (never subscribed)
    this.epoch = '';
  }

  /**
   * 'new', 'duplicate' (at the last one delivered) or 'behind' (below it, or of another epoch:
   * the numbering started over). A stream followed before its first publication has no epoch
   * yet: it takes the first one a frame names.
   */
  accept(offset, epoch) {
    if (typeof offset !== 'number' || this.offset === null) return 'new';
    if (typeof epoch === 'string' && epoch !== '' && epoch !== this.epoch) {
      if (this.epoch !== '') return 'behind';
      this.epoch = epoch;
    }
    if (offset > this.offset) {
      this.offset = offset;
      return 'new';
    }
    return offset === this.offset ? 'duplicate' : 'behind';
  }

  /** A position from `subscribed` or a join's `history`. Returns the position before it. */
  settle(offset, epoch, recovered) {
    const previous = { offset: this.offset, epoch: this.epoch };
    if (typeof offset !== 'number') return previous;
    const same = recovered === true && epoch === this.epoch && this.offset !== null;
    this.offset = same ? Math.max(this.offset, offset) : offset;
    this.epoch = typeof epoch === 'string' ? epoch : '';
    return previous;
  }

  /**
   * `since` for a resubscription, or undefined before the first position. Without an epoch (no
   * publication yet, or a server whose frames do not name it) it asks for everything kept
   * (offset 0), and what was delivered already is dropped.
   */
  since() {
    if (this.offset === null) return undefined;
    return this.epoch === '' ? { offset: 0, epoch: '' } : { offset: this.offset, epoch: this.epoch };
  }
}

/** on/off/emit; a listener that throws is reported, never breaks the emitter. */
class Emitter {
  constructor(report) {
    this._listeners = new Map();
    this._report = report;
  }

  on(name, fn) {
    if (typeof fn !== 'function') throw new TypeError('a listener must be a function');
    if (!this._listeners.has(name)) this._listeners.set(name, new Set());
    this._listeners.get(name).add(fn);
    return () => this.off(name, fn);
  }

  off(name, fn) {
    const set = this._listeners.get(name);
    if (set) set.delete(fn);
  }

  _emit(name, ...args) {
    const set = this._listeners.get(name);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        this._report(name, err);
      }
    }
  }
}

/** What a channel or room shares: the cursor, readiness, failure. */
class Stream extends Emitter {
  constructor(client, name) {
    super((event, err) => client._listenerFailed(event, err));
    this._client = client;
    this.cursor = new Cursor();
    this.state = 'pending'; // pending | active | failed | ended
    this._ready = deferred();
    this.ready = this._ready.promise;
    this._name = name;
  }

  /** The last offset delivered, and its epoch (null before the first position). */
  get offset() {
    return this.cursor.offset;
  }

  get epoch() {
    return this.cursor.epoch;
  }

  /** The answer to its join or subscribe: 'done', 'more' (the history follows the members). */
  _reply(frame) {
    if (this.state === 'ended') return frame.type === 'members' ? 'more' : 'done';
    const done = this._position(frame);
    if (done) {
      this.state = 'active';
      this._resyncing = false;
      this._answering = false;
      this._ready.resolve(this);
      this._announce(done);
      return 'done';
    }
    return frame.type === 'members' ? 'more' : 'unexpected';
  }

  _refused(err) {
    this.state = 'failed';
    this._ready.reject(err);
    this._emit('error', err);
  }

  /**
   * A numbered frame: false when it is one already delivered. Behind the cursor on a live stream
   * (not while a join or subscribe with `since` is answered, which may resend what was
   * delivered): the numbering started over, follow again to find out what was missed.
   */
  _admit(offset, epoch) {
    const verdict = this.cursor.accept(offset, epoch);
    if (verdict === 'behind' && !this._answering) this._client._resync(this);
    return verdict === 'new';
  }
}

/** A channel followed with `subscribe`: its publications, from the last one delivered. */
export class Subscription extends Stream {
  constructor(client, channel) {
    super(client, channel);
    this.channel = channel;
  }

  unsubscribe() {
    this._client._drop(this);
  }

  _command() {
    return { type: 'subscribe', channel: this.channel, since: this.cursor.since() };
  }

  _leaveCommand() {
    return { type: 'unsubscribe', channel: this.channel };
  }

  _position(frame) {
    if (frame.type !== 'subscribed') return null;
    const previous = this.cursor.settle(frame.offset, frame.epoch, frame.recovered);
    return { offset: frame.offset, epoch: frame.epoch, recovered: frame.recovered, previous };
  }

  _announce({ previous, ...position }) {
    if (position.recovered === false) this._emit('unrecovered', { ...position, previous });
    this._emit('subscribed', position);
  }

  _frame(frame) {
    if (frame.type === 'publication') {
      if (!this._admit(frame.offset, frame.epoch)) return;
      const { channel, offset, data, from, ts, epoch } = frame;
      this._emit('publication', { channel, offset, data, from, ts, epoch });
    } else if (frame.type === 'presence') {
      this._emit('presence', { user: frame.user, event: frame.event });
    }
  }
}

/** A chat room, joined: its members, its messages, its history. */
export class Room extends Stream {
  constructor(client, room) {
    super(client, room);
    this.room = room;
    /** The users in the room, sorted; kept up to date by presence. */
    this.members = [];
  }

  /** Sends a message; resolves with the ack `{id, ref}` once the server stored it. */
  send(text) {
    const ref = this._client._nextRef();
    return this._client._request({ type: 'send', room: this.room, text, ref }, 'ack');
  }

  /** Older messages: up to `limit` (1-100, 50 by default) with ids below `before`, oldest first. */
  history({ before, limit } = {}) {
    const frame = { type: 'history', room: this.room, before, limit };
    return this._client._request(frame, 'history').then((reply) => reply.messages);
  }

  leave() {
    this._client._drop(this);
  }

  _command() {
    return { type: 'join', room: this.room, since: this.cursor.since() };
  }

  _leaveCommand() {
    return { type: 'leave', room: this.room };
  }

  _position(frame) {
    if (frame.type === 'members') {
      this.members = [...frame.users].sort();
      this._emit('members', this.members.slice());
      return null;
    }
    if (frame.type !== 'history') return null;
    const messages = Array.isArray(frame.messages) ? frame.messages : [];
    let offset = frame.offset;
    // A server without join `since` sends no position: the newest id stands for it.
    if (typeof offset !== 'number') offset = messages.reduce((m, x) => Math.max(m, x.id ?? x.offset ?? 0), 0);
    const previous = this.cursor.settle(offset, frame.epoch, frame.recovered);
    return { messages, offset, epoch: frame.epoch ?? '', recovered: frame.recovered, previous };
  }

  _announce({ previous, messages, ...position }) {
    if (position.recovered === false) this._emit('unrecovered', { ...position, previous });
    this._emit('history', { messages, ...position });
  }

  _frame(frame) {
    if (frame.type === 'message') {
      if (this._admit(frame.id, frame.epoch)) this._emit('message', frame);
    } else if (frame.type === 'publication') {
      if (this._admit(frame.offset, frame.epoch)) this._emit('publication', frame);
    } else if (frame.type === 'presence') {
      const others = this.members.filter((user) => user !== frame.user);
      this.members = frame.event === 'join' ? [...others, frame.user].sort() : others;
      this._emit('presence', { user: frame.user, event: frame.event });
    }
  }
}

/** One socket: its commands awaiting answers (in order), frames waiting for the rate limit. */
class Connection {
  constructor(ws) {
    this.ws = ws;
    this.awaiting = []; // { frame, expect, stream?, resolve?, reject? } in the order sent
    this.outbox = [];
    this.welcomed = false;
    this.lastReceived = Date.now();
    this.timers = new Set();
    this.refreshing = false; // an in-band renewal under way
    this.flushTimer = null;
  }
}

export class Client extends Emitter {
  constructor(options) {
    super((event, err) => this._listenerFailed(event, err));
    if (!options || options.url === undefined) throw new TypeError('Client needs a url');
    this.options = { ...DEFAULTS, ...options };
    const { tokenTransport, jitter } = this.options;
    if (!['frame', 'query', 'subprotocol'].includes(tokenTransport)) {
      throw new TypeError(`tokenTransport must be 'frame', 'query' or 'subprotocol', not ${tokenTransport}`);
    }
    if (!['full', 'equal'].includes(jitter)) throw new TypeError(`jitter must be 'full' or 'equal'`);
    checkNumbers(this.options);
    this._WebSocket = this.options.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== 'function') {
      throw new TypeError('no WebSocket here: pass one as the WebSocket option (in Node: the ws package)');
    }
    this.state = 'disconnected';
    this.user = null;
    /** The token's expiry (Unix seconds) from `welcome` and `refreshed`. */
    this.exp = null;
    this._streams = new Map(); // channel or room name -> Subscription | Room
    this._conn = null;
    this._attempt = 0; // reconnect attempts since the last stable connection
    this._urlIndex = -1;
    this._reason = 'connect'; // why the next token is asked for
    this._authRetried = false;
    this._generation = 0; // bumped by close(): late callbacks of older attempts do nothing
    this._timers = new Set();
    this._refs = 0;
    this._refPrefix = Math.random().toString(36).slice(2, 8);
    this._bucket = { tokens: this.options.maxMessagesPerSecond, at: Date.now() };
  }

  // ------------------------------------------------------------------ public API

  /**
   * Starts connecting: at first, again after close() or a final close by the server, or at once
   * while waiting to reconnect (e.g. when the browser says it is back online).
   */
  connect() {
    if (this.state === 'connecting' || this.state === 'connected') return;
    this._watchNetwork();
    this._generation++;
    this._clearTimers(this._timers);
    this._attempt = 0;
    this._authRetried = false;
    // Waiting after a 4001, the token still needs renewing.
    if (this.state !== 'disconnected') this._reason = 'connect';
    this._open();
  }

  /** Stops for good: closes the socket, cancels reconnecting, rejects what awaits an answer. */
  close() {
    this._unwatchNetwork?.();
    this._unwatchNetwork = null;
    this._generation++;
    this._clearTimers(this._timers);
    this._teardown(new WsguardError('closed', 'the client was closed'), 1000);
    this._setState('closed', { code: 1000, reason: 'closed by the client' });
  }

  /** Resolves once connected (at once if connected); rejects if the client is or becomes closed. */
  ready() {
    if (this.state === 'connected') return Promise.resolve();
    if (this.state === 'closed') return Promise.reject(new WsguardError('closed', 'the client is closed'));
    return new Promise((resolve, reject) => {
      const off = this.on('state', (state, detail) => {
        if (state === 'connected') {
          off();
          resolve();
        } else if (state === 'closed') {
          off();
          reject(new WsguardError('closed', detail?.reason || 'the client was closed'));
        }
      });
    });
  }

  /** Follows `channel`; the same Subscription when already subscribed. */
  subscribe(channel) {
    return this._follow(channel, Subscription);
  }

  /** Joins `room`; the same Room when already joined. */
  join(room) {
    return this._follow(room, Room);
  }

  /** Publishes `data` to `channel`; resolves with `{offset}` once stored. */
  publish(channel, data) {
    const frame = { type: 'publish', channel, data, ref: this._nextRef() };
    return this._request(frame, 'ack').then((ack) => ({ offset: ack.offset ?? null }));
  }

  subscription(channel) {
    const stream = this._streams.get(channel);
    return stream instanceof Subscription ? stream : undefined;
  }

  room(name) {
    const stream = this._streams.get(name);
    return stream instanceof Room ? stream : undefined;
  }

  // ------------------------------------------------------------------ connecting

  /**
   * In a browser: 'offline' drops the socket at once (an offline browser keeps a WebSocket that
   * can no longer carry anything, which only pings would find out), 'online' reconnects at once.
   */
  _watchNetwork() {
    const target = globalThis;
    if (this._unwatchNetwork || this.options.watchNetwork === false) return;
    if (typeof target.addEventListener !== 'function' || typeof target.navigator?.onLine !== 'boolean') return;
    const offline = () => {
      if (this._conn) this._dead(this._conn, 'the browser went offline');
    };
    const online = () => {
      if (this.state === 'disconnected') this.connect();
    };
    target.addEventListener('offline', offline);
    target.addEventListener('online', online);
    this._unwatchNetwork = () => {
      target.removeEventListener('offline', offline);
      target.removeEventListener('online', online);
    };
  }

  async _open() {
    const generation = this._generation;
    this._setState('connecting', { attempt: this._attempt });
    let url;
    let token;
    let failed = 'token';
    try {
      // The token first: getting one may change what the URL carries (a renewed CSRF cookie).
      token = await this.options.getToken?.({ reason: this._reason });
      failed = 'connect';
      url = await this._nextUrl();
    } catch (err) {
      if (generation !== this._generation) return;
      this._emit('error', new WsguardError(failed, String(err?.message ?? err), err));
      this._retry({ code: 0, reason: failed === 'token' ? 'no token' : 'no url' });
      return;
    }
    if (generation !== this._generation) return;
    if (token !== null && token !== undefined && typeof token !== 'string') {
      this._emit('error', new WsguardError('token', 'getToken must give a string or null'));
      this._retry({ code: 0, reason: 'no token' });
      return;
    }
    this._dial(url, token ?? null);
  }

  async _nextUrl() {
    const { url } = this.options;
    if (typeof url === 'function') return await url();
    if (Array.isArray(url)) {
      this._urlIndex = (this._urlIndex + 1) % url.length;
      return url[this._urlIndex];
    }
    return url;
  }

  _dial(url, token) {
    const { tokenTransport } = this.options;
    let ws;
    try {
      if (token !== null && tokenTransport === 'query') {
        ws = new this._WebSocket(`${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`);
      } else if (token !== null && tokenTransport === 'subprotocol') {
        ws = new this._WebSocket(url, ['bearer', token]);
      } else {
        ws = new this._WebSocket(url);
      }
    } catch (err) {
      this._emit('error', new WsguardError('connect', String(err?.message ?? err), err));
      this._retry({ code: 0, reason: 'could not open a socket' });
      return;
    }
    const conn = new Connection(ws);
    this._conn = conn;
    this._later(conn.timers, this.options.connectTimeout, () => this._dead(conn, 'no welcome in time'));
    ws.addEventListener('open', () => {
      if (this._conn !== conn) return;
      conn.lastReceived = Date.now();
      if (token !== null && tokenTransport === 'frame') ws.send(JSON.stringify({ type: 'auth', token }));
    });
    ws.addEventListener('message', (event) => {
      if (this._conn !== conn) return;
      conn.lastReceived = Date.now();
      if (typeof event.data !== 'string') return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame && typeof frame === 'object') this._receive(conn, frame);
    });
    ws.addEventListener('close', (event) => {
      if (this._conn !== conn) return;
      this._closed(conn, event.code, event.reason);
    });
    // 'error' is followed by 'close', which decides.
    ws.addEventListener('error', () => {});
  }

  _welcome(conn, frame) {
    conn.welcomed = true;
    this._clearTimers(conn.timers);
    this.user = frame.user;
    this.exp = frame.exp;
    this._authRetried = false;
    this._reason = 'connect';
    this._later(conn.timers, this.options.stableAfter, () => {
      this._attempt = 0;
    });
    this._ping(conn);
    this._setState('connected', { user: frame.user });
    this._emit('welcome', frame.user, frame.exp);
    for (const stream of this._streams.values()) {
      stream._resyncing = false;
      if (stream.state !== 'failed') this._followOn(conn, stream);
    }
  }

  /** Pings every pingInterval; a socket that answers nothing within pongTimeout is dead. */
  _ping(conn) {
    const { pingInterval, pongTimeout } = this.options;
    if (!(pingInterval > 0)) return;
    this._later(conn.timers, pingInterval, () => {
      const sent = Date.now();
      this._send(conn, { type: 'ping' }, { expect: 'pong' });
      this._later(conn.timers, pongTimeout, () => {
        if (conn.lastReceived < sent) this._dead(conn, 'no answer to ping');
      });
      this._ping(conn);
    });
  }

  /** A socket that stopped answering: dropped at once (a dead peer never completes a close). */
  _dead(conn, reason) {
    if (this._conn !== conn) return;
    this._closed(conn, 4000, reason);
    try {
      if (typeof conn.ws.terminate === 'function') conn.ws.terminate();
      else conn.ws.close(4000, reason);
    } catch {
      /* already closing */
    }
  }

  /** The socket closed with `code`: reconnect, renew the token first, or stop. */
  _closed(conn, code, reason) {
    this._conn = null;
    this._clearTimers(conn.timers);
    this._fail(conn, new WsguardError('disconnected', `the socket closed (${code}${reason ? ` ${reason}` : ''})`));
    const detail = { code, reason };
    if (code === 4003) {
      this._setState('closed', detail);
      return;
    }
    if (code === 1008) {
      if (this._authRetried) {
        this._setState('closed', detail);
        return;
      }
      this._authRetried = true;
      this._reason = 'expired';
      this._retry(detail, 0);
      return;
    }
    if (code === 4001) {
      this._reason = 'expired';
      this._retry(detail, 0);
      return;
    }
    this._retry(detail);
  }

  /** Waits (the backoff, or `delay`) and opens again. */
  _retry(detail, delay) {
    const wait = delay ?? backoffDelay(this._attempt, this.options);
    this._attempt++;
    this._setState('disconnected', { ...detail, retryIn: wait });
    const generation = this._generation;
    this._later(this._timers, wait, () => {
      if (generation === this._generation) this._open();
    });
  }

  _teardown(err, code) {
    const conn = this._conn;
    if (!conn) return;
    this._conn = null;
    this._clearTimers(conn.timers);
    this._fail(conn, err);
    try {
      conn.ws.close(code);
    } catch {
      /* already closing */
    }
  }

  /** Rejects every request awaiting an answer on `conn`. */
  _fail(conn, err) {
    const entries = [...conn.awaiting, ...conn.outbox.map((queued) => queued.entry)];
    conn.awaiting = [];
    conn.outbox = [];
    for (const entry of entries) entry.reject?.(err);
  }

  // ------------------------------------------------------------------ frames

  _receive(conn, frame) {
    if (!conn.welcomed) {
      if (frame.type === 'welcome') this._welcome(conn, frame);
      return;
    }
    if (REPLIES.has(frame.type)) {
      this._answer(conn, frame);
    } else if (frame.type === 'expiring') {
      this._emit('expiring', frame.in_s);
      this._scheduleRefresh(conn, frame.in_s);
    } else {
      const stream = this._streams.get(frame.room ?? frame.channel);
      if (stream && stream.state === 'active') stream._frame(frame);
    }
  }

  /**
   * A reply: it answers the oldest command awaiting one. The server answers each command before
   * it reads the next, and its error frames carry no `ref`, so order is what matches them.
   * `leave` and `unsubscribe` are answered only when refused.
   */
  _answer(conn, frame) {
    while (conn.awaiting[0]?.expect === 'nothing' && frame.type !== 'error') conn.awaiting.shift();
    const entry = conn.awaiting[0];
    if (!entry) {
      this._emit('error', new WsguardError('protocol', `unexpected ${frame.type} frame`));
      return;
    }
    if (frame.type === 'error') {
      conn.awaiting.shift();
      this._refused(conn, entry, new WsguardError(frame.code, frame.detail));
      return;
    }
    if (entry.expect === 'follow') {
      const verdict = entry.stream._reply(frame);
      if (verdict === 'done') conn.awaiting.shift();
      if (verdict === 'unexpected') this._emit('error', new WsguardError('protocol', `unexpected ${frame.type} frame`));
      return;
    }
    conn.awaiting.shift();
    if (frame.type !== entry.expect) {
      const err = new WsguardError('protocol', `expected ${entry.expect}, got ${frame.type}`);
      entry.reject?.(err);
      this._emit('error', err);
    } else if (frame.type === 'refreshed') {
      this.exp = frame.exp;
      this._emit('refreshed', frame.exp);
    } else {
      entry.resolve?.(frame);
    }
  }

  _refused(conn, entry, err) {
    if (entry.expect === 'follow') {
      if (err.code === 'unavailable' && this._streams.get(entry.stream._name) === entry.stream) {
        // The database is down: try again on this socket.
        const wait = backoffDelay(1, this.options);
        this._later(conn.timers, wait, () => this._send(conn, entry.stream._command(), entry));
        this._emit('error', err);
        return;
      }
      this._streams.delete(entry.stream._name);
      entry.stream._refused(err);
    } else if (entry.expect === 'nothing') {
      this._emit('error', err);
    } else if (entry.reject) {
      entry.reject(err);
    } else {
      this._emit('error', err); // a refused refresh: the socket stays on its old token
    }
  }

  // ------------------------------------------------------------------ streams

  _follow(name, Kind) {
    const existing = this._streams.get(name);
    if (existing instanceof Kind) return existing;
    if (existing) throw new WsguardError('bad_request', `${name} is already followed the other way`);
    const stream = new Kind(this, name);
    stream.ready.catch(() => {}); // a refusal is also an 'error' event
    this._streams.set(name, stream);
    if (this._conn?.welcomed) this._followOn(this._conn, stream);
    return stream;
  }

  _drop(stream) {
    if (this._streams.get(stream._name) !== stream) return;
    this._streams.delete(stream._name);
    const wasFollowed = stream.state !== 'failed';
    stream.state = 'ended';
    stream._ready.reject(new WsguardError('closed', 'left before it was ready'));
    if (wasFollowed && this._conn?.welcomed) this._send(this._conn, stream._leaveCommand(), { expect: 'nothing' });
  }

  /** A frame behind the cursor (the epoch changed under a live socket): follow again from it. */
  _resync(stream) {
    const conn = this._conn;
    if (!conn?.welcomed || stream._resyncing) return;
    stream._resyncing = true; // until the answer to the new join or subscribe
    this._send(conn, stream._leaveCommand(), { expect: 'nothing' });
    this._followOn(conn, stream);
  }

  /** Sends the stream's join or subscribe (with `since` when it has a position). */
  _followOn(conn, stream) {
    stream._answering = true;
    this._send(conn, stream._command(), { expect: 'follow', stream });
  }

  // ------------------------------------------------------------------ requests

  _nextRef() {
    this._refs++;
    return `${this._refPrefix}-${this._refs}`;
  }

  /** Sends a command answered by `expect`; a Promise of the answer. */
  _request(frame, expect) {
    const conn = this._conn;
    if (!conn?.welcomed) {
      return Promise.reject(new WsguardError('disconnected', 'not connected'));
    }
    return new Promise((resolve, reject) => this._send(conn, frame, { expect, resolve, reject }));
  }

  /** Queues `frame` on `conn`, sent as the rate limit allows; `entry` awaits its answer. */
  _send(conn, frame, entry) {
    if (this._conn !== conn) return;
    conn.outbox.push({ frame: JSON.stringify(frame), entry });
    this._flush(conn);
  }

  _flush(conn) {
    const rate = this.options.maxMessagesPerSecond;
    while (conn.outbox.length > 0 && this._conn === conn) {
      const now = Date.now();
      const bucket = this._bucket;
      bucket.tokens = Math.min(rate, bucket.tokens + ((now - bucket.at) / 1000) * rate);
      bucket.at = now;
      if (bucket.tokens < 1) {
        if (!conn.flushTimer) {
          conn.flushTimer = this._later(conn.timers, ((1 - bucket.tokens) / rate) * 1000, () => {
            conn.flushTimer = null;
            this._flush(conn);
          });
        }
        return;
      }
      bucket.tokens -= 1;
      const { frame, entry } = conn.outbox.shift();
      conn.awaiting.push(entry);
      try {
        conn.ws.send(frame);
      } catch {
        return; // the close event follows and fails what awaits
      }
    }
  }

  // ------------------------------------------------------------------ in-band refresh

  /** Renews the token in band, once per warning and socket. */
  _scheduleRefresh(conn, inSeconds) {
    if (conn.refreshing) return;
    conn.refreshing = true;
    this._later(conn.timers, refreshDelay(inSeconds), async () => {
      let token;
      try {
        token = await this.options.getToken?.({ reason: 'expiring', inSeconds });
      } catch (err) {
        this._emit('error', new WsguardError('token', String(err?.message ?? err), err));
      }
      conn.refreshing = false;
      if (typeof token === 'string' && this._conn === conn) {
        this._send(conn, { type: 'refresh', token }, { expect: 'refreshed' });
      }
    });
  }

  // ------------------------------------------------------------------ plumbing

  _setState(state, detail = {}) {
    if (!STATES.includes(state)) throw new Error(`unknown state ${state}`);
    const previous = this.state;
    this.state = state;
    if (previous !== state || state === 'disconnected') this._emit('state', state, { previous, ...detail });
  }

  /** setTimeout kept in `set` so that one call clears a socket's (or the client's) timers. */
  _later(set, ms, fn) {
    const timer = {
      id: setTimeout(() => {
        set.delete(timer);
        fn();
      }, Math.max(0, ms)),
      clear() {
        clearTimeout(this.id);
      },
    };
    set.add(timer);
    return timer;
  }

  _clearTimers(set) {
    for (const timer of set) timer.clear();
    set.clear();
  }

  _listenerFailed(event, err) {
    if (event === 'error') {
      console.error('wsguard-client: an error listener threw', err);
      return;
    }
    this._emit('error', new WsguardError('listener', `a ${event} listener threw: ${err?.message ?? err}`, err));
  }
}

/** Numeric options: finite where a timer takes them, positive where zero would spin. */
function checkNumbers(options) {
  const rules = {
    minReconnectDelay: (v) => v > 0, // 0 would retry a refusing server in a loop
    maxReconnectDelay: (v) => v >= options.minReconnectDelay,
    stableAfter: (v) => v >= 0,
    connectTimeout: (v) => v > 0,
    pingInterval: (v) => v >= 0,
    pongTimeout: (v) => v > 0,
    maxMessagesPerSecond: (v) => v > 0,
  };
  for (const [name, valid] of Object.entries(rules)) {
    const value = options[name];
    const finite = typeof value === 'number' && (Number.isFinite(value) || name === 'maxMessagesPerSecond');
    if (!finite || !valid(value)) throw new RangeError(`${name} is out of range: ${value}`);
  }
}

function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
