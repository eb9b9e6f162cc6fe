// A WebSocket's face on an emulated connection, for networks that refuse WebSocket upgrades: the
// server's frames come down one HTTP response (`POST <path>/stream`, one frame per line), the
// client's go up by `POST /emulation`, each naming the session the stream's first line gave. The
// ReconnectingSocket (socket.js) falls back to it when a WebSocket cannot open.

/** `ws://host/connect?x` → `http://host/connect/stream?x`. */
export function streamUrl(url) {
  const parsed = new URL(url);
  parsed.protocol = parsed.protocol === 'wss:' ? 'https:' : 'http:';
  parsed.pathname = `${parsed.pathname.replace(/\/$/, '')}/stream`;
  return parsed.toString();
}

export class StreamSocket {
  /** `url`: the WebSocket URL it stands in for. `fetch`: Node's or the browser's. */
  constructor(url, { fetch = globalThis.fetch } = {}) {
    this.url = streamUrl(url);
    this.readyState = 0; // CONNECTING, OPEN = 1, CLOSED = 3: as a WebSocket's
    // Called unbound: a browser's fetch refuses to run as a method of another object.
    this._fetch = (...args) => fetch(...args);
    this._listeners = { open: [], message: [], close: [], error: [] };
    this._abort = new AbortController();
    this._session = null;
    this._queue = []; // frames to send, one request at a time so that they arrive in order
    this._sending = false;
    this._read();
  }

  addEventListener(type, listener) {
    this._listeners[type]?.push(listener);
  }

  /** Sends a text frame: queued, and posted after those before it were taken. */
  send(data) {
    if (this.readyState !== 1) throw new Error('the stream is not open');
    this._queue.push(String(data));
    if (!this._sending) this._post();
  }

  close(code = 1000, reason = '') {
    this._end(code, reason);
  }

  async _read() {
    let response;
    try {
      response = await this._fetch(this.url, {
        method: 'POST', credentials: 'same-origin', signal: this._abort.signal,
      });
    } catch {
      this._end(1006, '');
      return;
    }
    if (!response.ok || !response.body) {
      this._end(1006, `HTTP ${response.status}`);
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffered = '';
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffered += decoder.decode(value, { stream: true });
        let newline = buffered.indexOf('\n');
        while (newline >= 0) {
          const line = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          if (line) this._line(line);
          if (this.readyState === 3) return;
          newline = buffered.indexOf('\n');
        }
      }
    } catch {
      /* aborted, or the connection broke: closed below */
    }
    this._end(1006, '');
  }

  /** The first line names the session; a `close` line ends it; every other line is a frame. */
  _line(line) {
    if (this._session === null) {
      const hello = parse(line);
      if (hello?.type !== 'session') {
        this._end(1002, 'not a wsguard stream');
        return;
      }
      this._session = { session: hello.session, node: hello.node };
      this.readyState = 1;
      this._emit('open', {});
      return;
    }
    // Only a top-level `"type":"close"` ends the stream; the cheap test first.
    if (line.includes('"type":"close"')) {
      const frame = parse(line);
      if (frame?.type === 'close' && typeof frame.code === 'number') {
        this._end(frame.code, frame.reason ?? '');
        return;
      }
    }
    this._emit('message', { data: line });
  }

  async _post() {
    this._sending = true;
    const emulation = new URL('/emulation', this.url).toString();
    while (this._queue.length > 0 && this.readyState === 1) {
      const data = this._queue.shift();
      try {
        const response = await this._fetch(emulation, {
          method: 'POST',
          credentials: 'same-origin',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ ...this._session, data }),
          signal: this._abort.signal,
        });
        // No node of that name (restarted), or the server failed: connect again. Other refusals
        // (a frame too big) lose only this frame, as on a WebSocket the server answers them.
        if (response.status === 404 || response.status >= 500) {
          this._end(1006, `emulation answered ${response.status}`);
        }
      } catch {
        this._end(1006, 'emulation failed');
      }
    }
    this._sending = false;
  }

  _end(code, reason) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this._abort.abort();
    this._emit('close', { code, reason, wasClean: code !== 1006 });
  }

  _emit(type, event) {
    for (const listener of this._listeners[type]) listener(event);
  }
}

function parse(line) {
  try {
    return JSON.parse(line);
  } catch {
    return null;
  }
}
