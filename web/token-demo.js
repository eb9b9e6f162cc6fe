// The "paste a token and connect" page of the source documents, for /ws and /chat/ws.
// Everything the server sends is shown with textContent only.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const tokenBox = $('token');
  const claimsBox = $('claims');
  const endpoint = $('endpoint');
  const connectBtn = $('connect');
  const disconnectBtn = $('disconnect');
  const stateEl = $('demo-state');
  const sendForm = $('demo-send-form');
  const messageInput = $('demo-message');
  const sendBtn = $('demo-send');
  const log = $('log');
  const MAX_LOG = 500;

  let ws = null;

  const CLOSE_NAMES = {
    1000: 'normal', 1001: 'server going away', 1006: 'abnormal (no close frame)',
    1008: 'authentication failed', 1009: 'frame too big', 1011: 'internal error',
    4001: 'token expired', 4003: 'token revoked or user disabled', 4029: 'rate limited',
  };

  function addLog(kind, text) {
    const li = document.createElement('li');
    li.className = 'log-' + kind;
    li.dataset.kind = kind;
    const time = document.createElement('time');
    time.textContent = new Date().toLocaleTimeString();
    const tag = document.createElement('span');
    tag.className = 'tag';
    tag.textContent = { in: '←', out: '→', info: '•', error: '!', close: '×' }[kind] || '•';
    const body = document.createElement('span');
    body.className = 'body';
    body.textContent = text;
    li.append(time, tag, body);
    log.appendChild(li);
    while (log.childElementCount > MAX_LOG) log.removeChild(log.firstElementChild);
    li.scrollIntoView({ block: 'nearest' });
  }

  function setState(state, text) {
    stateEl.dataset.state = state;
    stateEl.textContent = text;
    const open = state === 'open';
    const busy = state === 'open' || state === 'connecting';
    connectBtn.disabled = busy;
    disconnectBtn.disabled = !busy;
    messageInput.disabled = !open;
    sendBtn.disabled = !open;
  }

  function b64urlDecode(part) {
    let s = part.replace(/-/g, '+').replace(/_/g, '/');
    while (s.length % 4) s += '=';
    const bin = atob(s);
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    return new TextDecoder().decode(bytes);
  }

  function showClaims() {
    const token = tokenBox.value.trim();
    claimsBox.textContent = '';
    if (!token) return;
    const parts = token.split('.');
    if (parts.length !== 3) { claimsBox.textContent = 'not a JWT (expected three dot-separated parts)'; return; }
    try {
      const header = JSON.parse(b64urlDecode(parts[0]));
      const claims = JSON.parse(b64urlDecode(parts[1]));
      const lines = ['header: ' + JSON.stringify(header), 'claims: ' + JSON.stringify(claims, null, 2)];
      if (typeof claims.exp === 'number') {
        const left = Math.round(claims.exp - Date.now() / 1000);
        lines.push('expires: ' + new Date(claims.exp * 1000).toLocaleString() +
          (left > 0 ? ' (in ' + left + ' s)' : ' (expired)'));
      }
      lines.push('(decoded in the browser, not verified: the server checks the signature)');
      claimsBox.textContent = lines.join('\n');
    } catch (_) {
      claimsBox.textContent = 'could not decode the token';
    }
  }

  function wsBase() {
    return (location.protocol === 'https:' ? 'wss' : 'ws') + '://' + location.host;
  }

  function connect() {
    const token = tokenBox.value.trim();
    if (!token) { addLog('error', 'paste a token first'); tokenBox.focus(); return; }
    if (ws) ws.close(1000);
    const mode = endpoint.value;
    let url;
    let protocols;
    let firstFrame = null;
    switch (mode) {
      case 'ws-query': url = wsBase() + '/ws?token=' + encodeURIComponent(token); break;
      case 'chat-subprotocol': url = wsBase() + '/chat/ws'; protocols = ['bearer', token]; break;
      case 'chat-query': url = wsBase() + '/chat/ws?token=' + encodeURIComponent(token); break;
      case 'chat-frame':
        url = wsBase() + '/chat/ws';
        firstFrame = JSON.stringify({ type: 'auth', token });
        break;
      default: addLog('error', 'this endpoint cannot be used from a browser'); return;
    }
    let sock;
    try {
      sock = protocols ? new WebSocket(url, protocols) : new WebSocket(url);
    } catch (err) {
      addLog('error', 'cannot open the socket: ' + (err && err.message ? err.message : String(err)));
      return;
    }
    ws = sock;
    const shown = url.replace(/token=[^&]*/, 'token=…');
    addLog('info', 'connecting to ' + shown + (protocols ? ' (subprotocols: bearer, <token>)' : ''));
    setState('connecting', 'connecting…');
    sock.addEventListener('open', () => {
      if (sock !== ws) return;
      setState('open', 'connected' + (sock.protocol ? ' (protocol ' + sock.protocol + ')' : ''));
      addLog('info', 'open' + (sock.protocol ? ', server chose subprotocol "' + sock.protocol + '"' : ''));
      if (firstFrame) {
        sock.send(firstFrame);
        addLog('out', '{"type":"auth","token":"…"}');
      }
    });
    sock.addEventListener('message', (ev) => {
      if (sock !== ws) return;
      addLog('in', typeof ev.data === 'string' ? ev.data : '[binary frame]');
    });
    sock.addEventListener('error', () => {
      if (sock !== ws) return;
      addLog('error', 'socket error (the browser gives no detail; a refused handshake shows as close 1006)');
    });
    sock.addEventListener('close', (ev) => {
      if (sock !== ws) return;
      ws = null;
      const name = CLOSE_NAMES[ev.code] ? ' — ' + CLOSE_NAMES[ev.code] : '';
      addLog('close', 'closed: code ' + ev.code + name + (ev.reason ? ', reason "' + ev.reason + '"' : ''));
      setState('closed', 'closed (' + ev.code + ')');
    });
  }

  connectBtn.addEventListener('click', connect);
  disconnectBtn.addEventListener('click', () => {
    if (ws) { addLog('info', 'closing'); ws.close(1000, 'bye'); }
  });

  sendForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = messageInput.value;
    if (!ws || ws.readyState !== WebSocket.OPEN || text === '') return;
    ws.send(text);
    addLog('out', text);
    messageInput.value = '';
  });

  $('clear-log').addEventListener('click', () => log.replaceChildren());

  tokenBox.addEventListener('input', showClaims);

  $('get-token-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = new URLSearchParams({
      grant_type: 'password',
      username: $('demo-username').value,
      password: $('demo-password').value,
    });
    try {
      const res = await fetch('/token', {
        method: 'POST',
        credentials: 'omit',
        cache: 'no-store',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body,
      });
      const json = await res.json().catch(() => ({}));
      if (!res.ok || typeof json.access_token !== 'string') {
        addLog('error', 'POST /token: ' + res.status + ' ' + (json.detail || json.error_description || ''));
        return;
      }
      tokenBox.value = json.access_token;
      $('demo-password').value = '';
      showClaims();
      addLog('info', 'got an access token for ' + $('demo-username').value);
    } catch (err) {
      addLog('error', 'POST /token failed: ' + (err && err.message ? err.message : String(err)));
    }
  });

  setState('closed', 'not connected');
  showClaims();
})();
