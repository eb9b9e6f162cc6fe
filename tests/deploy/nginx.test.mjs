// nginx from Debian in front of a real wsguard, with deploy/nginx.conf as shipped: only its
// addresses (free ports on 127.0.0.1) and certificate paths (a throwaway self-signed certificate)
// are changed. Logins, the JavaScript client, the chat and every WebSocket endpoint go through it,
// and the login throttle sees each client's own address.
//
//   cargo build --bin wsguard && npm ci && node --test tests/deploy/
//
// How clients differ here, honestly: each connects to nginx from an address of its own in
// 127.0.0.0/8 (Linux routes all of it to `lo`), so nginx's $remote_addr, which it appends to
// X-Forwarded-For, is really theirs. wsguard trusts nginx's address alone (--trusted-proxies
// 127.0.0.1/32); what a client writes in X-Forwarded-For or Forwarded itself is sent too, and must
// change nothing. nginx is installed (apt-get) when missing; the tests are skipped only when that
// fails, and say why.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Client } from '../../clients/js/wsguard.js';
import { Node, WebSocket, apiKey, dataFolder, next, until } from '../client/support.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DEPLOYED = fs.readFileSync(path.join(ROOT, 'deploy/nginx.conf'), 'utf8');

/** nginx's binary, installing Debian's package (and openssl, for the certificate) if need be. */
function nginxBinary() {
  const found = () => ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => fs.existsSync(p));
  const hasOpenssl = () => spawnSync('openssl', ['version']).status === 0;
  if (found() && hasOpenssl()) return { bin: found() };
  const sudo = process.getuid() === 0 ? [] : ['sudo', '-n'];
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const step of [['apt-get', 'update', '-qq'], ['apt-get', 'install', '-y', '-qq', 'nginx', 'openssl']]) {
    const argv = [...sudo, ...step];
    const run = spawnSync(argv[0], argv.slice(1), { env, encoding: 'utf8' });
    if (run.status !== 0) {
      const why = run.error?.message ?? run.stderr.trim().split('\n').pop();
      return found() ? { bin: found() } : { reason: `${argv.join(' ')} failed: ${why}` };
    }
  }
  return found() ? { bin: found() } : { reason: 'apt-get install nginx installed no nginx binary' };
}

const NGINX = nginxBinary();
const SKIP = NGINX.bin ? false : `nginx is not installed and cannot be: ${NGINX.reason}`;
if (SKIP) console.log(`# skipping the nginx tests: ${SKIP}`);

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer().on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** deploy/nginx.conf with these changes only; each must find its text exactly once. */
function derived(changes) {
  let conf = DEPLOYED;
  for (const [from, to] of changes) {
    const count = conf.split(from).length - 1;
    assert.equal(count, 1, `deploy/nginx.conf should hold "${from}" once (found ${count}): update this test with it`);
    conf = conf.replace(from, to);
  }
  return conf;
}

const env = {};

before(async () => {
  if (SKIP) return;
  env.tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wsguard-nginx-'));
  const [certFile, keyFile] = [path.join(env.tmp, 'cert.pem'), path.join(env.tmp, 'key.pem')];
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyFile, '-out', certFile,
  ], { stdio: 'pipe' });
  env.ca = fs.readFileSync(certFile);

  env.dir = await dataFolder('');
  env.key = await apiKey(env.dir);
  env.node = await Node.start(env.dir, ['--trusted-proxies', '127.0.0.1/32']);

  [env.https, env.http] = [await freePort(), await freePort()];
  const site = derived([
    ['server 127.0.0.1:8000;', `server 127.0.0.1:${env.node.port};`],
    ['listen 80;', `listen 127.0.0.1:${env.http};`],
    ['listen [::]:80;', ''],
    ['listen 443 ssl http2;', `listen 127.0.0.1:${env.https} ssl http2;`],
    ['listen [::]:443 ssl http2;', ''],
    ['/etc/letsencrypt/live/wsguard.example.com/fullchain.pem', certFile],
    ['/etc/letsencrypt/live/wsguard.example.com/privkey.pem', keyFile],
  ]);
  fs.writeFileSync(path.join(env.tmp, 'wsguard.conf'), site);
  const temp = (name) => `${name}_temp_path ${path.join(env.tmp, name)};`;
  // Everything of nginx's own in the temporary folder; its workers run as this user (as root,
  // nginx would otherwise switch them to nobody, who cannot enter the folder).
  fs.writeFileSync(path.join(env.tmp, 'nginx.conf'), `
${process.getuid() === 0 ? 'user root;' : ''}
worker_processes 1;
pid ${path.join(env.tmp, 'nginx.pid')};
error_log ${path.join(env.tmp, 'error.log')} info;
events { worker_connections 256; }
http {
  access_log ${path.join(env.tmp, 'access.log')};
  ${['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(temp).join('\n  ')}
  include ${path.join(env.tmp, 'wsguard.conf')};
}
`);
  const args = ['-p', env.tmp, '-c', path.join(env.tmp, 'nginx.conf'), '-e', path.join(env.tmp, 'error.log')];
  const check = spawnSync(NGINX.bin, ['-t', ...args], { encoding: 'utf8' });
  assert.equal(check.status, 0, `nginx -t refused the configuration:\n${check.stderr}`);
  env.nginx = spawn(NGINX.bin, [...args, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  env.nginx.stderr.on('data', (d) => (stderr += d));
  await until(async () => {
    assert.equal(env.nginx.exitCode, null, `nginx exited: ${stderr}`);
    return new Promise((resolve) => {
      const socket = net.connect(env.https, '127.0.0.1', () => {
        socket.end();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
  }, 'nginx listening', 10_000);
});

after(async () => {
  if (SKIP) return;
  if (env.nginx && env.nginx.exitCode === null) {
    const exited = new Promise((resolve) => env.nginx.once('exit', resolve));
    env.nginx.kill('SIGTERM');
    await exited;
  }
  await env.node?.stop();
  for (const dir of [env.dir, env.tmp]) if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** One HTTP request through nginx from the loopback address `from`: {status, headers, text}. */
function request(method, pathname, { from = '127.0.0.1', headers = {}, body, tls = true } = {}) {
  const options = {
    host: '127.0.0.1', port: tls ? env.https : env.http, method, path: pathname, headers, localAddress: from, ca: env.ca,
  };
  return new Promise((resolve, reject) => {
    const req = (tls ? https : http).request(options, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d) => (text += d)).on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
    });
    req.on('error', reject).end(body);
  });
}

/** POST /token, a password grant, from `from`: the response. */
function token(from, username, password, headers = {}) {
  const body = new URLSearchParams({ username, password }).toString();
  return request('POST', '/token', { from, body, headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers } });
}

/** A token pair of johndoe, logged in through nginx from `from`. */
async function login(from, username = 'johndoe', password = 'secret') {
  const res = await token(from, username, password);
  assert.equal(res.status, 200, res.text);
  return JSON.parse(res.text);
}

/** The ws package's WebSocket, trusting the test's certificate, connecting from `from`. */
function tlsWebSocket(from, headers = {}) {
  return class extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, { ca: env.ca, localAddress: from, headers });
    }
  };
}

const wss = (pathname) => `wss://127.0.0.1:${env.https}${pathname}`;

test('the deployed configuration: HTTP redirected to HTTPS, HSTS, and the login cookies Secure', { skip: SKIP }, async () => {
  const redirect = await request('GET', '/healthz', { tls: false });
  assert.equal(redirect.status, 301);
  assert.match(redirect.headers.location, /^https:\/\/127\.0\.0\.1\/healthz$/);

  const body = new URLSearchParams({ username: 'janedoe', password: 'secret2' }).toString();
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  const res = await request('POST', '/login/cookie', { from: '127.0.0.5', body, headers });
  assert.equal(res.status, 200, res.text);
  assert.match(res.headers['strict-transport-security'], /max-age=\d+/);
  const cookies = res.headers['set-cookie'];
  assert.equal(cookies.length, 4, cookies.join('\n'));
  for (const cookie of cookies) assert.match(cookie, /;\s*Secure/i, cookie);
  // wsguard's own counters stay out of reach from outside.
  assert.equal((await request('GET', '/metrics', { from: '127.0.0.5' })).status, 403);
});

test('behind nginx one client failing logins is locked out alone, whatever it writes in forwarding headers', { skip: SKIP }, async () => {
  const attacker = '127.0.0.2';
  // The attack: 50 wrong logins for made-up names (--login-max-failures-per-address),
  // each claiming to come from elsewhere.
  for (let i = 0; i < 50; i++) {
    const claims = { 'x-forwarded-for': `198.51.100.${i}`, forwarded: `for=203.0.113.${i}` };
    const res = await token(attacker, `nobody${i}`, 'guess', claims);
    assert.equal(res.status, 401, `guess ${i}: ${res.status} ${res.text}`);
  }
  assert.equal((await token(attacker, 'johndoe', 'secret')).status, 429);
  assert.equal((await token(attacker, 'johndoe', 'secret', { 'x-forwarded-for': '198.51.100.200' })).status, 429);
  // Every other client of the same nginx logs in.
  assert.equal((await token('127.0.0.3', 'johndoe', 'secret')).status, 200);
  assert.equal((await token('127.0.0.4', 'johndoe', 'secret', { 'x-forwarded-for': '127.0.0.2' })).status, 200);
});

test('the JavaScript client through nginx receives a publication on /connect', { skip: SKIP }, async (t) => {
  const from = '127.0.0.6';
  const client = new Client({
    url: wss('/connect'),
    getToken: async () => (await login(from)).access_token,
    WebSocket: tlsWebSocket(from),
  });
  t.after(() => client.close());
  const sub = client.subscribe('user:johndoe');
  client.connect();
  await sub.ready;
  const received = next(sub, 'publication');
  const body = JSON.stringify({ channel: 'user:johndoe', data: { text: 'Your report is ready' } });
  const headers = { authorization: `Bearer ${env.key}`, 'content-type': 'application/json' };
  const published = await request('POST', '/api/publish', { body, headers });
  assert.equal(published.status, 200, published.text);
  const publication = await received;
  assert.deepEqual(publication.data, { text: 'Your report is ready' });
  assert.equal(publication.channel, 'user:johndoe');
});

/** A raw WebSocket through nginx, open; its frames (parsed) queue up in `frames`. */
async function socket(pathname, from, { headers = {}, protocols } = {}) {
  const ws = new (tlsWebSocket(from, headers))(wss(pathname), protocols);
  ws.frames = [];
  ws.on('message', (data) => ws.frames.push(String(data)));
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  return ws;
}

/** The next frame of `ws` that `match`es (a JSON frame), within 5 s. */
async function frame(ws, match) {
  let found;
  await until(() => {
    const at = ws.frames.findIndex((text) => {
      try {
        return match(JSON.parse(text));
      } catch {
        return false;
      }
    });
    if (at >= 0) found = JSON.parse(ws.frames.splice(at, 1)[0]);
    return at >= 0;
  }, () => `a frame on ${ws.url}; got ${ws.frames.join(' | ')}`, 5_000);
  return found;
}

test('the chat through nginx: two users in a room', { skip: SKIP }, async (t) => {
  const [john, jane] = [await login('127.0.0.7'), await login('127.0.0.8', 'janedoe', 'secret2')];
  const johnWs = await socket('/chat/ws', '127.0.0.7', { headers: { authorization: `Bearer ${john.access_token}` } });
  const janeWs = await socket(`/chat/ws?token=${jane.access_token}`, '127.0.0.8');
  t.after(() => [johnWs, janeWs].forEach((ws) => ws.close()));
  for (const ws of [johnWs, janeWs]) {
    await frame(ws, (f) => f.type === 'welcome');
    ws.send(JSON.stringify({ type: 'join', room: 'nginx' }));
    await frame(ws, (f) => f.type === 'history' && f.room === 'nginx');
  }
  johnWs.send(JSON.stringify({ type: 'send', room: 'nginx', text: 'through nginx', ref: 'r1' }));
  assert.equal((await frame(johnWs, (f) => f.type === 'ack')).ref, 'r1');
  const message = await frame(janeWs, (f) => f.type === 'message');
  assert.deepEqual([message.from, message.text], ['johndoe', 'through nginx']);
});

/** The location of `conf` whose pattern matches `pathname`, as nginx picks it: its body. */
function locationOf(conf, pathname) {
  const locations = [...conf.matchAll(/location\s+(=|~)?\s*(\S+)\s*\{([^}]*)\}/g)];
  const exact = locations.find(([, kind, pattern]) => kind === '=' && pattern === pathname);
  const regex = locations.find(([, kind, pattern]) => kind === '~' && new RegExp(pattern).test(pathname));
  return (exact ?? regex ?? locations.find(([, , pattern]) => pattern === '/'))[3];
}

function seconds(body, directive) {
  const match = new RegExp(`${directive}\\s+(\\d+)s;`).exec(body);
  return match ? Number(match[1]) : 60; // nginx's default
}

test('every WebSocket endpoint upgrades through nginx, with timeouts longer than wsguard\'s', { skip: SKIP }, async (t) => {
  const from = '127.0.0.9';
  const pair = await login(from);
  const bearer = { authorization: `Bearer ${pair.access_token}` };
  // src/ws, src/session, src/centrifugo: each with a token it takes (the login's is fresh).
  const endpoints = [
    ['/secured-ws', { headers: bearer }],
    [`/ws?token=${pair.access_token}`],
    ['/ws/optional'],
    [`/ws/refresh?token=${pair.refresh_token}`],
    [`/ws/fresh?token=${pair.access_token}`],
    ['/chat/ws', { headers: bearer }],
    ['/connect', { protocols: ['bearer', pair.access_token] }],
    ['/connection/websocket'],
  ];
  for (const [endpoint, options] of endpoints) {
    const ws = await socket(endpoint, from, options);
    t.after(() => ws.close());
    const pathname = endpoint.split('?')[0];
    const location = locationOf(DEPLOYED, pathname);
    // wsguard pings every 20 s and closes a socket silent for 60 s: nginx must outwait both.
    for (const directive of ['proxy_read_timeout', 'proxy_send_timeout']) {
      assert.ok(seconds(location, directive) > 60, `${pathname}: ${directive} ${seconds(location, directive)} s`);
    }
  }
  // Streaming responses pass unbuffered and live as long.
  for (const pathname of ['/connection/http_stream', '/connection/sse', '/connect/stream', '/chat/ws/stream']) {
    const location = locationOf(DEPLOYED, pathname);
    assert.match(location, /proxy_buffering off;/, pathname);
    assert.ok(seconds(location, 'proxy_read_timeout') > 60, pathname);
  }
});

/** A fetch through nginx trusting the test's certificate, from `from` (HTTP/1.1): the JS client's stream uses it. */
function tlsFetch(from) {
  return (url, init = {}) =>
    new Promise((resolve, reject) => {
      const req = https.request(url, { method: init.method ?? 'GET', headers: init.headers, ca: env.ca, localAddress: from }, (res) => {
        const body = res.statusCode === 204 ? null : Readable.toWeb(res);
        resolve(new Response(body, { status: res.statusCode }));
      });
      init.signal?.addEventListener('abort', () => req.destroy(new Error('aborted')));
      req.on('error', reject).end(init.body);
    });
}

test('streams through nginx: the JS client without WebSockets, SSE over HTTP/1.1, HTTP streaming over HTTP/2', { skip: SKIP }, async (t) => {
  const from = '127.0.0.11';
  const key = env.key;
  const publish = (channel, data) =>
    request('POST', '/api/publish', {
      from, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel, data }),
    });

  // wsguard's JS client on its stream alone (POST /connect/stream, frames by POST /emulation).
  const pair = await login(from);
  const client = new Client({
    url: wss('/connect'), transports: ['stream'], fetch: tlsFetch(from), getToken: async () => pair.access_token,
  });
  t.after(() => client.close());
  const news = client.subscribe('news');
  const got = next(news, 'publication');
  client.connect();
  await news.ready;
  assert.equal(client.transport, 'stream');
  assert.equal((await publish('news', { via: 'stream' })).status, 200);
  assert.deepEqual((await got).data, { via: 'stream' });

  // SSE over HTTP/1.1: the connect reply arrives at once, not held in a buffer.
  const connect = encodeURIComponent(JSON.stringify({ id: 1, connect: { token: (await login(from)).access_token } }));
  const events = await new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port: env.https, path: `/connection/sse?cf_connect=${connect}`, ca: env.ca, localAddress: from }, (res) => {
      res.on('error', () => {}); // the stream is cut here on purpose
      let text = '';
      res.setEncoding('utf8').on('data', (d) => {
        text += d;
        if (text.includes('\n\n')) {
          req.destroy();
          resolve({ status: res.statusCode, type: res.headers['content-type'], text });
        }
      });
    });
    req.on('error', (err) => (err.message === 'aborted' ? null : reject(err)));
    setTimeout(() => reject(new Error('no event within 5 s: buffered?')), 5000);
  });
  assert.equal(events.status, 200);
  assert.match(events.type, /^text\/event-stream/);
  const reply = JSON.parse(events.text.split('\n').find((l) => l.startsWith('data: ')).slice(6));
  assert.ok(reply.connect.session && reply.connect.node, events.text);

  // HTTP streaming over HTTP/2: the stream and its commands on one connection.
  const session = http2.connect(`https://127.0.0.1:${env.https}`, { ca: env.ca, localAddress: from });
  // Destroyed, not closed: a close waits for the stream, which never ends on its own; and nginx
  // stopping after the tests resets whatever is left.
  session.on('error', () => {});
  t.after(() => session.destroy());
  const token = (await login(from)).access_token;
  const stream = session.request({ ':method': 'POST', ':path': '/connection/http_stream', 'content-type': 'application/json' });
  stream.end(JSON.stringify({ id: 1, connect: { token } }));
  const lines = [];
  let buffered = '';
  stream.on('error', () => {}); // reset when the session is destroyed at the end
  stream.setEncoding('utf8').on('data', (d) => {
    buffered += d;
    const parts = buffered.split('\n');
    buffered = parts.pop();
    lines.push(...parts.filter(Boolean).map((l) => JSON.parse(l)));
  });
  await until(() => lines.length >= 1, 'the connect reply over HTTP/2');
  const { session: id, node } = lines[0].connect;
  const emulate = (data) =>
    new Promise((resolve, reject) => {
      const req = session.request({ ':method': 'POST', ':path': '/emulation', 'content-type': 'application/json' });
      req.on('response', (headers) => resolve(headers[':status'])).on('error', reject);
      req.end(JSON.stringify({ session: id, node, data }));
      req.resume();
    });
  assert.equal(await emulate(JSON.stringify({ id: 2, subscribe: { channel: 'news' } })), 204);
  await until(() => lines.some((l) => l.id === 2), 'the subscribe reply');
  assert.equal((await publish('news', { via: 'h2' })).status, 200);
  await until(() => lines.some((l) => l.push?.pub?.data?.via === 'h2'), () => `the publication, got ${JSON.stringify(lines)}`);
});
