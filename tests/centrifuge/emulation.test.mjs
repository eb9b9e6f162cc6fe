// Centrifugo's JavaScript SDK (`centrifuge` from npm) over HTTP streaming and SSE (its `fetch` and
// `eventsource` options: Node's fetch, the `eventsource` package), against real wsguard processes:
// the same protocol as on a WebSocket, its commands sent by POST /emulation, on one node and
// across two (the stream on A, the commands through B). Also: the fallback from a WebSocket that a
// relay refuses, tokens (tampered, expiring, refreshed), revocation, recovery after a cut and after
// a stream stalls, and what /emulation answers to requests that are not a session's.
//
//   cargo build --bin wsguard && npm ci && node --test tests/centrifuge/emulation.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import {
  Node, Relay, Session, apiKey, createSchema, dataFolder, login, post, publish, services, until, REDIS,
} from '../client/support.mjs';
import { CONFIG, once, recoversAfterCut, sdkClient } from './support.mjs';


/** A node with the demo users and an API key, and a relay in front of it (`relay` options). */
async function setUp(t, args = [], { refuseUpgrades = false } = {}) {
  const dir = await dataFolder(CONFIG);
  const key = await apiKey(dir);
  const node = await Node.start(dir, args);
  const relay = await Relay.start(node.port);
  relay.refuseUpgrades = refuseUpgrades;
  const clients = [];
  t.after(async () => {
    for (const client of clients) client.disconnect();
    await relay.close();
    await node.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const base = `http://127.0.0.1:${relay.port}`;
  const sdk = (transports, options) => {
    const client = sdkClient(base, transports, options);
    clients.push(client);
    return client;
  };
  return { node, key, relay, sdk };
}

async function connected(client) {
  const ctx = once(client, 'connected');
  client.connect();
  return ctx;
}

async function subscribed(client, channel, options) {
  const sub = client.newSubscription(channel, options);
  const ctx = once(sub, 'subscribed');
  sub.subscribe();
  await ctx;
  return sub;
}

for (const kind of ['http_stream', 'sse']) {
  test(`${kind}: publications both ways, presence, join and leave, history`, async (t) => {
    const { node, key, sdk } = await setUp(t);
    const john = sdk(kind, { token: (await login(node.base, 'johndoe', 'secret')).access_token });
    const ctx = await connected(john);
    assert.equal(ctx.transport, kind);

    const feed = await subscribed(john, 'feed:john');
    const received = once(feed, 'publication');
    const offset = await publish(node.base, key, 'feed:john', { text: 'shipped' });
    const pub = await received;
    assert.deepEqual(pub.data, { text: 'shipped' });
    assert.equal(pub.offset, offset);

    // A WebSocket subscriber and a streaming one publish to each other.
    const jane = sdk('websocket', { token: (await login(node.base, 'janedoe', 'secret2')).access_token });
    await connected(jane);
    const news = await subscribed(john, 'news:eu', { joinLeave: true });
    const joined = once(news, 'join', 10_000, (c) => c.info.user === 'janedoe');
    const janeNews = await subscribed(jane, 'news:eu');
    await joined;
    const toJane = once(janeNews, 'publication');
    await news.publish({ from: 'john' });
    assert.deepEqual((await toJane).data, { from: 'john' });
    const toJohn = once(news, 'publication');
    await janeNews.publish({ from: 'jane' });
    assert.deepEqual((await toJohn).data, { from: 'jane' });
    const presence = await news.presence();
    assert.deepEqual(Object.values(presence.clients).map((c) => c.user).sort(), ['janedoe', 'johndoe']);
    assert.equal((await news.presenceStats()).numUsers, 2);
    const left = once(news, 'leave', 10_000, (c) => c.info.user === 'janedoe');
    janeNews.unsubscribe();
    await left;

    for (let n = 1; n <= 4; n++) await publish(node.base, key, 'feed:john', { n });
    const page = await feed.history({ limit: 2 });
    assert.deepEqual(page.publications.map((p) => p.data.n), [3, 4]);
    await assert.rejects(feed.publish({ x: 1 }), (err) => err.code === 103, 'publish = "api"');
    await assert.rejects(john.rpc('sum', {}), (err) => err.code === 108, 'no RPC proxy');
  });

  test(`${kind}: refreshed in band across short tokens, closed when one runs out, revoked, forged`, async (t) => {
    const { node, key, sdk } = await setUp(t, ['--access-ttl', '3s']);
    const session = new Session(node.base, 'johndoe', 'secret');
    const client = sdk(kind, { getToken: () => session.token() });
    const reconnects = [];
    client.on('connecting', (ctx) => reconnects.push(ctx));
    await connected(client);
    reconnects.length = 0;
    await until(() => session.issued.length >= 4, 'three in-band refreshes', 15_000);
    assert.equal(client.state, 'connected');
    assert.deepEqual(reconnects, [], 'the same stream throughout');

    const { access_token: token } = await login(node.base, 'janedoe', 'secret2');
    const stuck = sdk(kind, { token, getToken: () => new Promise(() => {}) });
    const expired = once(stuck, 'connecting', 10_000, (ctx) => ctx.code === 3005);
    stuck.connect();
    assert.equal((await expired).reason, 'connection expired');

    const revoked = once(client, 'disconnected');
    await post(node.base, '/api/users/johndoe/revoke', undefined, { authorization: `Bearer ${key}` });
    assert.equal((await revoked).code, 3503, 'force disconnect: no reconnecting');

    const { access_token: other } = await login(node.base, 'janedoe', 'secret2');
    const forged = sdk(kind, { token: other.slice(0, -4) + (other.endsWith('AAAA') ? 'BBBB' : 'AAAA') });
    const refused = once(forged, 'disconnected');
    forged.connect();
    assert.equal((await refused).code, 3500, 'invalid token: terminal');
  });

  test(`${kind}: every publication missed during a cut comes back once and in order`, async (t) => {
    const { node, key, relay, sdk } = await setUp(t);
    const session = new Session(node.base, 'johndoe', 'secret');
    const client = sdk(kind, { getToken: () => session.token() });
    await recoversAfterCut(client, relay, 'feed:r', (n) => publish(node.base, key, 'feed:r', { n }));
  });
}

test('the SDK falls back to HTTP streaming, then SSE, when a proxy refuses WebSockets', async (t) => {
  const { node, key, sdk } = await setUp(t, [], { refuseUpgrades: true });
  const token = (await login(node.base, 'johndoe', 'secret')).access_token;
  const streaming = sdk(['websocket', 'http_stream'], { token });
  assert.equal((await connected(streaming)).transport, 'http_stream');
  const sse = sdk(['websocket', 'sse'], { token });
  assert.equal((await connected(sse)).transport, 'sse');
  const feed = await subscribed(sse, 'feed:fallback');
  const got = once(feed, 'publication');
  await publish(node.base, key, 'feed:fallback', { ok: true });
  assert.deepEqual((await got).data, { ok: true });
});

test('a stream that stalls ends, and the client resumes where it was', async (t) => {
  // Pings every second: the SDK notices a silent stream within a few.
  const { node, key, relay, sdk } = await setUp(t, ['--ping-interval', '1s']);
  const session = new Session(node.base, 'johndoe', 'secret');
  const client = sdk('http_stream', { getToken: () => session.token(), maxServerPingDelay: 1000 });
  client.connect();
  const feed = client.newSubscription('feed:stall');
  const received = [];
  feed.on('publication', (ctx) => received.push(ctx.data.n));
  const first = once(feed, 'subscribed');
  feed.subscribe();
  await first;
  await publish(node.base, key, 'feed:stall', { n: 1 });
  await until(() => received.length === 1, 'the first');

  const again = once(feed, 'subscribed', 15_000);
  relay.freeze(); // the stream stays open and carries nothing
  for (let n = 2; n <= 5; n++) await publish(node.base, key, 'feed:stall', { n });
  assert.equal((await again).recovered, true);
  await until(() => received.length >= 5, () => `all five, got ${received}`);
  assert.deepEqual(received, [1, 2, 3, 4, 5]);
});

test('POST /emulation: a foreign or malformed request gets nothing from any session', async (t) => {
  const { node } = await setUp(t);
  const emulate = (body, headers = {}) =>
    fetch(`${node.base}/emulation`, {
      method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body,
    });
  // A session id that no session has, on this node: taken and dropped (as Centrifugo does), 204.
  const name = await nodeName(node);
  const unknown = await emulate(JSON.stringify({ session: 'f'.repeat(32), node: name, data: '{"id":1,"ping":{}}' }));
  assert.equal(unknown.status, 204);
  const nowhere = await emulate(JSON.stringify({ session: 'f'.repeat(32), node: 'no-such-node', data: '{}' }));
  assert.equal(nowhere.status, 404, 'no live node of that name: the client connects again');
  assert.equal((await emulate('not json')).status, 400);
  assert.equal((await emulate(JSON.stringify({ session: 'a', node: 'b', data: { not: 'a string' } }))).status, 400);
  assert.equal((await emulate(JSON.stringify({ session: 'x'.repeat(65), node: 'b', data: '' }))).status, 400);
  const foreign = await emulate(JSON.stringify({ session: 'a', node: name, data: '' }), { origin: 'https://evil.example' });
  assert.equal(foreign.status, 403);
  const big = await emulate(JSON.stringify({ session: 'a', node: name, data: 'x'.repeat(70_000) }));
  assert.equal(big.status, 413);
  // The stream endpoints refuse what is not a connect.
  const noConnect = await fetch(`${node.base}/connection/sse`);
  assert.equal(noConnect.status, 400);
  const garbage = await fetch(`${node.base}/connection/http_stream`, { method: 'POST', body: 'garbage' });
  assert.equal(garbage.status, 200, 'said on the stream, where the SDK reads it');
  assert.deepEqual(JSON.parse((await garbage.text()).trim()), {
    push: { disconnect: { code: 3501, reason: 'bad request', reconnect: false } },
  });
});

/** The node's name, from the connect reply of a streaming connection. */
async function nodeName(node) {
  const { access_token: token } = await login(node.base, 'janedoe', 'secret2');
  const controller = new AbortController();
  const response = await fetch(`${node.base}/connection/http_stream`, {
    method: 'POST', body: JSON.stringify({ id: 1, connect: { token } }), signal: controller.signal,
  });
  const reader = response.body.getReader();
  const { value } = await reader.read();
  controller.abort();
  return JSON.parse(new TextDecoder().decode(value).split('\n')[0]).connect.node;
}

for (const kind of ['http_stream', 'sse']) {
  test(`two nodes, ${kind}: the stream on A, its commands through B; revocation on B ends it on A`, async (t) => {
    if (!(await services(t))) return;
    const schema = await createSchema();
    const database = ['--database-url', schema.url];
    const dir = await dataFolder(CONFIG, database);
    const key = await apiKey(dir, database);
    const cluster = `temu${Date.now().toString(36)}`;
    const args = [...database, '--broker-url', `redis://${REDIS}`, '--cluster', cluster];
    const a = await Node.start(dir, args);
    const b = await Node.start(dir, args);
    const token = (await login(b.base, 'johndoe', 'secret')).access_token;
    const client = sdkClient(a.base, kind, { token }, b.base);
    t.after(async () => {
      client.disconnect();
      await a.stop();
      await b.stop();
      await schema.drop();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    await connected(client);
    // Subscribing, publishing and presence are commands: each went through B to the session on A.
    const news = await subscribed(client, 'news:nodes');
    const own = once(news, 'publication');
    await news.publish({ via: 'b' });
    assert.deepEqual((await own).data, { via: 'b' });
    const presence = await news.presence();
    assert.deepEqual(Object.values(presence.clients).map((c) => c.user), ['johndoe']);
    const feed = await subscribed(client, 'feed:nodes');
    const received = [];
    feed.on('publication', (ctx) => received.push(ctx.offset));
    for (let n = 1; n <= 5; n++) await publish(b.base, key, 'feed:nodes', { n });
    await until(() => received.length === 5, () => `five, got ${received}`);
    assert.deepEqual(received, [1, 2, 3, 4, 5]);

    const disconnected = once(client, 'disconnected');
    await post(b.base, '/api/users/johndoe/revoke', undefined, { authorization: `Bearer ${key}` });
    assert.equal((await disconnected).code, 3503, 'revoked on B, the stream on A ended');
  });
}

test("the application's proxies are told what a connection runs on", async (t) => {
  const calls = [];
  const app = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      calls.push([req.url, JSON.parse(body).transport]);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ result: req.url === '/connect' ? { user: 'johndoe' } : {} }));
    });
  });
  await new Promise((resolve) => app.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${app.address().port}`;
  const dir = await dataFolder(`
[proxy]
connect = "${url}/connect"

[[namespaces]]
name = "doc"
subscribe = "proxy"
subscribe_proxy = "${url}/subscribe"
`);
  const node = await Node.start(dir);
  const clients = [];
  t.after(async () => {
    for (const client of clients) client.disconnect();
    await node.stop();
    await new Promise((resolve) => app.close(resolve));
    fs.rmSync(dir, { recursive: true, force: true });
  });
  for (const kind of ['websocket', 'http_stream', 'sse']) {
    const client = sdkClient(node.base, kind); // no token: the connect proxy admits it
    clients.push(client);
    await connected(client);
    await subscribed(client, `doc:${kind}`);
  }
  assert.deepEqual(calls, [
    ['/connect', 'websocket'], ['/subscribe', 'websocket'],
    ['/connect', 'http_stream'], ['/subscribe', 'http_stream'],
    ['/connect', 'sse'], ['/subscribe', 'sse'],
  ]);
});
