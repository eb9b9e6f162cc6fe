// The Client: the application's API (connect, close, ready, subscribe, join, publish) and what
// the frames mean. Commands are answered in the order they were sent; channels and rooms are
// followed again after every welcome from the last position delivered; the token is renewed in
// band when the server warns; the browser's offline and online events drop and reopen the
// socket. The socket itself is kept open by ReconnectingSocket (socket.js).

import { refreshDelay, backoffDelay } from './position.js';
import { ReconnectingSocket } from './socket.js';
import { Room, Subscription } from './streams.js';
import { WsguardError } from './errors.js';

/** Frames that answer a command (in the order the commands were sent); others come unprompted. */
const REPLIES = new Set(['members', 'history', 'subscribed', 'ack', 'pong', 'refreshed', 'error']);

export class Client extends ReconnectingSocket {
  constructor(options) {
    super(options);
    this._streams = new Map(); // channel or room name -> Subscription | Room
    this._refs = 0;
    this._refPrefix = Math.random().toString(36).slice(2, 8);
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

  /**
   * Follows `channel`; the same Subscription when already subscribed. `options.getToken`
   * (`async ({channel}) => token`): for channels that need a subscription token, asked before
   * each subscribe and ahead of each token's expiry.
   */
  subscribe(channel, options = {}) {
    const subscription = this._follow(channel, Subscription);
    if (options.getToken) subscription._getToken = options.getToken;
    return subscription;
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

  // ------------------------------------------------------------------ the network, the welcome

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

  /** After the socket's own welcome: every stream followed again, from its position. */
  _welcome(conn, frame) {
    super._welcome(conn, frame);
    for (const stream of this._streams.values()) {
      stream._resyncing = false;
      if (stream.state !== 'failed') this._followOn(conn, stream);
    }
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
    } else if (frame.type === 'unsubscribed') {
      this._endedByServer(frame);
    } else {
      const stream = this._streams.get(frame.room ?? frame.channel);
      if (stream && stream.state === 'active') stream._frame(frame);
    }
  }

  /**
   * A reply: it answers the oldest command awaiting one. The server answers each command before
   * it reads the next, and its error frames carry no `ref`, so order is what matches them.
   * `leave` and `unsubscribe` are answered only when refused: an error naming another room or
   * channel is not theirs.
   */
  _answer(conn, frame) {
    // A `leave` or `unsubscribe` still awaiting succeeded silently unless this error is its own
    // (an error names the room or channel of the command it refuses).
    const refusesIt = (entry) => frame.type === 'error' && ((frame.room ?? frame.channel) ?? entry.name) === entry.name;
    while (conn.awaiting[0]?.expect === 'nothing' && !refusesIt(conn.awaiting[0])) conn.awaiting.shift();
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
    if (wasFollowed && this._conn?.welcomed) this._send(this._conn, stream._leaveCommand(), { expect: 'nothing', name: stream._name });
  }

  /**
   * The server ended a stream: the renewed token no longer allows it. It ends here too (never
   * followed again on a reconnect), with an 'unsubscribed' event saying why.
   */
  _endedByServer(frame) {
    const name = frame.room ?? frame.channel;
    const stream = this._streams.get(name);
    if (!stream) return;
    if (frame.code === 'token_expired' && stream._getToken && this._conn?.welcomed) {
      // Its subscription token ran out before a renewal got through: subscribe again, from where it was.
      this._followOn(this._conn, stream);
      return;
    }
    this._streams.delete(name);
    stream.state = 'ended';
    stream._emit('unsubscribed', new WsguardError(frame.code, frame.detail));
  }

  /** A frame behind the cursor (the epoch changed under a live socket): follow again from it. */
  _resync(stream) {
    const conn = this._conn;
    if (!conn?.welcomed || stream._resyncing) return;
    stream._resyncing = true; // until the answer to the new join or subscribe
    this._send(conn, stream._leaveCommand(), { expect: 'nothing', name: stream._name });
    this._followOn(conn, stream);
  }

  /**
   * Sends the stream's join or subscribe (with `since` when it has a position), with a fresh
   * subscription token first where the stream takes one.
   */
  _followOn(conn, stream) {
    stream._answering = true;
    if (!stream._getToken) {
      this._send(conn, stream._command(), { expect: 'follow', stream });
      return;
    }
    this._withToken(conn, stream, (token) => this._send(conn, stream._command(token), { expect: 'follow', stream }));
  }

  /** Asks the application for the stream's token, then `send`s on `conn` if it is still the socket. */
  _withToken(conn, stream, send) {
    Promise.resolve()
      .then(() => stream._getToken({ channel: stream._name }))
      .then(
        (token) => {
          if (this._conn !== conn || this._streams.get(stream._name) !== stream) return;
          if (typeof token !== 'string' || !token) throw new Error('getToken gave no token');
          send(token);
        },
      )
      .catch((err) => {
        const error = new WsguardError('token', String(err?.message ?? err), err);
        this._emit('error', error);
        if (this._conn !== conn || this._streams.get(stream._name) !== stream) return;
        // Try again later on this socket: the application may be briefly down.
        this._later(conn.timers, backoffDelay(1, this.options), () => this._followOn(conn, stream));
      });
  }

  /** A subscription whose consent runs out at `expiresAt` (Unix seconds): renewed ahead of it. */
  _scheduleRenewal(stream, expiresAt) {
    const conn = this._conn;
    if (!conn?.welcomed || !stream._getToken) return;
    const inSeconds = Math.max(0, expiresAt - Date.now() / 1000);
    this._later(conn.timers, refreshDelay(inSeconds), () => {
      if (this._streams.get(stream._name) !== stream || stream.state !== 'active') return;
      // Subscribing again with a new token renews the subscription where it stands.
      this._withToken(conn, stream, (token) => {
        stream._answering = true;
        this._send(conn, { type: 'subscribe', channel: stream._name, token }, { expect: 'follow', stream });
      });
    });
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
}
