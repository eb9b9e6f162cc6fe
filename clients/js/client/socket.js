// The socket underneath a Client, kept open: opening it (a token, then a URL; the token in a
// frame, the query or a subprotocol), the welcome, pings, what each close code means, backoff
// before the next attempt, and sending under the rate limit. Where a WebSocket cannot open (a
// proxy refuses the upgrade), it falls back to an HTTP stream (stream.js), which it keeps. What the frames mean is the
// Client's (client.js): it supplies `_receive(conn, frame)` and, after each welcome, follows its
// streams again; its connect() and close() start and stop all this.

import { checkedOptions } from './options.js';
import { backoffDelay } from './position.js';
import { Emitter } from './streams.js';
import { WsguardError } from './errors.js';
import { StreamSocket } from './stream.js';

/** The socket's states, in the order a connection goes through them. */
const STATES = ['disconnected', 'connecting', 'connected', 'closed'];

/** One socket: its commands awaiting answers (in order), frames waiting for the rate limit. */
class Connection {
  constructor(ws) {
    this.ws = ws;
    this.awaiting = []; // { frame, expect, stream?, resolve?, reject? } in the order sent
    this.outbox = [];
    this.welcomed = false;
    this.opened = false;
    this.lastReceived = Date.now();
    this.timers = new Set();
    this.refreshing = false; // an in-band renewal under way
    this.flushTimer = null;
  }
}

/** Connects, reconnects and sends; the Client (its subclass) gives the frames their meaning. */
export class ReconnectingSocket extends Emitter {
  constructor(options) {
    super((event, err) => this._listenerFailed(event, err));
    this.options = checkedOptions(options);
    this._WebSocket = this.options.WebSocket ?? globalThis.WebSocket;
    this._fetch = this.options.fetch ?? globalThis.fetch;
    const { transports } = this.options;
    const websocket = transports.includes('websocket') && typeof this._WebSocket === 'function';
    const stream = transports.includes('stream') && typeof this._fetch === 'function';
    if (!websocket && !stream) {
      throw new TypeError('no WebSocket here: pass one as the WebSocket option (in Node: the ws package)');
    }
    /** Both usable: a WebSocket that cannot open moves the client to the stream. */
    this._fallback = websocket && stream;
    /** 'websocket' or 'stream': what the next connection uses, and the last one used. */
    this.transport = websocket ? 'websocket' : 'stream';
    this.state = 'disconnected';
    this.user = null;
    /** The token's expiry (Unix seconds) from `welcome` and `refreshed`. */
    this.exp = null;
    this._conn = null;
    this._attempt = 0; // reconnect attempts since the last stable connection
    this._urlIndex = -1;
    this._reason = 'connect'; // why the next token is asked for
    this._authRetried = false;
    this._generation = 0; // bumped by close(): late callbacks of older attempts do nothing
    this._timers = new Set();
    this._bucket = { tokens: this.options.maxMessagesPerSecond, at: Date.now() };
  }

  // ------------------------------------------------------------------ connecting

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
    // A stream has no subprotocols: the token goes in the first frame instead.
    const streaming = this.transport === 'stream';
    const tokenTransport = streaming && this.options.tokenTransport === 'subprotocol' ? 'frame' : this.options.tokenTransport;
    const Socket = streaming ? StreamSocket : this._WebSocket;
    const options = streaming ? { fetch: this._fetch } : undefined;
    let ws;
    try {
      if (streaming) {
        const query = token !== null && tokenTransport === 'query';
        ws = new Socket(query ? `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}` : url, options);
      } else if (token !== null && tokenTransport === 'query') {
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
      conn.opened = true;
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
    this._setState('connected', { user: frame.user, transport: this.transport });
    this._emit('welcome', frame.user, frame.exp);
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
    if (!conn.opened && this._fallback) {
      // Never opened: a WebSocket refused on the way is tried as a stream at once (and the stream
      // kept from then on); a stream that did not open either goes back to the WebSocket.
      const refused = this.transport === 'websocket';
      this.transport = refused ? 'stream' : 'websocket';
      if (refused) {
        this._retry(detail, 0);
        return;
      }
    }
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

  // ------------------------------------------------------------------ sending

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
