// Centrifugo's JavaScript SDK (`centrifuge` from npm) with no token at all, admitted by the
// application's connect proxy from its session cookie: a real HTTP application (below) answers
// wsguard's proxy calls in Centrifugo's format, as an application's existing Centrifugo proxy
// handlers do; the refresh proxy prolongs the connection; the application's refusal and its
// failure reach the SDK as the protocol says.
//
//   cargo build --bin wsguard && npm ci && node --test tests/centrifuge/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { Centrifuge } from 'centrifuge';
import { Node, WebSocket, apiKey, dataFolder, publish, sleep, until } from '../client/support.mjs';
import { once } from './support.mjs';

/** The application: sessions by cookie; every call recorded; `mode.connect` picks the answer. */
async function application() {
  const calls = { connect: [], refresh: [] };
  const mode = { connect: 'session' };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      const event = req.url.split('/').pop();
      calls[event]?.push({ headers: req.headers, body: JSON.parse(body) });
      const answer = (status, value) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      const now = Math.floor(Date.now() / 1000);
      if (event === 'refresh') return answer(200, { result: { expire_at: now + 3 } });
      if (mode.connect === 'down') return answer(503, {});
      const session = /session=([a-z0-9]+)/.exec(req.headers.cookie ?? '')?.[1];
      if (session !== 'johns') return answer(200, { error: { code: 4403, message: 'no session' } });
      answer(200, { result: { user: 'johndoe', expire_at: now + 2, data: { greeting: 'hello John' } } });
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}/rt`;
  return { url, calls, mode, close: () => new Promise((resolve) => server.close(resolve)) };
}

/** The `ws` WebSocket with a session cookie on the upgrade, as a browser on the app's domain sends. */
function withCookie(cookie) {
  return class extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, { headers: { cookie } });
    }
  };
}

test('the application admits a connection without a token by its cookie, and prolongs it', async (t) => {
  const app = await application();
  const dir = await dataFolder(`
[proxy]
connect = "${app.url}/connect"
refresh = "${app.url}/refresh"
forward_headers = ["Cookie"]
`);
  const key = await apiKey(dir);
  const node = await Node.start(dir);
  const clients = [];
  t.after(async () => {
    for (const client of clients) client.disconnect();
    await node.stop();
    await app.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const sdk = (cookie, options = {}) => {
    const client = new Centrifuge(`ws://127.0.0.1:${node.port}/connection/websocket`, {
      websocket: withCookie(cookie), minReconnectDelay: 100, maxReconnectDelay: 500, timeout: 3000, ...options,
    });
    clients.push(client);
    return client;
  };

  const client = sdk('session=johns; theme=dark', { data: { page: '/inbox' }, name: 'inbox-page' });
  const connected = once(client, 'connected');
  client.connect();
  const ctx = await connected;
  assert.deepEqual(ctx.data, { greeting: 'hello John' }, "the application's data in the reply");
  const [call] = app.calls.connect;
  assert.equal(call.headers.cookie, 'session=johns; theme=dark', 'the cookie, as a real header');
  assert.equal(call.body.client, ctx.client, "the connection's id");
  assert.deepEqual(call.body.data, { page: '/inbox' });
  assert.equal(call.body.name, 'inbox-page');
  assert.equal(call.body.transport, 'websocket');

  // It is johndoe: his own channel is his.
  const sub = client.newSubscription('user:johndoe');
  const subscribed = once(sub, 'subscribed');
  sub.subscribe();
  await subscribed;
  const received = once(sub, 'publication');
  await publish(node.base, key, 'user:johndoe', { text: 'for John' });
  assert.deepEqual((await received).data, { text: 'for John' });

  // expire_at in 2 s, each refresh 3 s more: still connected after several, on one connection.
  let disconnected = false;
  client.on('disconnected', () => { disconnected = true; });
  await sleep(5500);
  assert.ok(app.calls.refresh.length >= 2, `refreshes: ${app.calls.refresh.length}`);
  assert.equal(app.calls.refresh[0].body.user, 'johndoe');
  assert.equal(app.calls.refresh[0].body.client, ctx.client);
  assert.equal(disconnected, false);
  assert.equal(app.calls.connect.length, 1, 'never reconnected');

  // No session: the application's error, which the SDK takes as final.
  const stranger = sdk('theme=dark');
  const refused = once(stranger, 'disconnected');
  stranger.connect();
  const ended = await refused;
  assert.equal(ended.code, 4403);
  assert.equal(ended.reason, 'no session');

  // The application down: a temporary error; the SDK keeps trying and gets in once it is back.
  app.mode.connect = 'down';
  const retrying = sdk('session=johns');
  const errors = [];
  retrying.on('error', (e) => errors.push(e.error.code));
  const back = once(retrying, 'connected');
  retrying.connect();
  await until(() => errors.length >= 2, 'two failed attempts');
  assert.ok(errors.every((code) => code === 100), `${errors}`);
  app.mode.connect = 'session';
  await back;
});
