// Centrifugo's JavaScript SDK (`centrifuge` from npm, pinned in package.json), unchanged, against
// real wsguard processes at /connection/websocket: wsguard's own tokens, publications both ways,
// presence and join/leave, history, refresh across short tokens, expiry without a refresh,
// revocation, recovery after a network cut, and the refusals the SDK must act on.
//
//   cargo build --bin wsguard && npm ci && node --test tests/centrifuge/
//
// The two-node test needs PostgreSQL and Redis (see tests/client/support.mjs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Centrifuge } from 'centrifuge';
import { Centrifuge as ProtobufCentrifuge } from 'centrifuge/build/protobuf';
import {
  Node, Relay, Session, WebSocket, apiKey, createSchema, dataFolder, login, post, publish, services,
  trustedApplication, until, REDIS,
} from '../client/support.mjs';
import { CONFIG, once, recoversAfterCut } from './support.mjs';


/** A node with the demo users and an API key; `relay` puts a cuttable TCP relay in front. */
async function setUp(t, args = [], { relay = false, config = CONFIG } = {}) {
  const dir = await dataFolder(config);
  const key = await apiKey(dir); // before the start: a running node rereads its keys every second
  const node = await Node.start(dir, args);
  const proxy = relay ? await Relay.start(node.port) : null;
  const clients = [];
  t.after(async () => {
    for (const client of clients) client.disconnect();
    await proxy?.close();
    await node.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const port = proxy ? proxy.port : node.port;
  const sdk = (options) => {
    const client = new Centrifuge(`ws://127.0.0.1:${port}/connection/websocket`, {
      websocket: WebSocket, minReconnectDelay: 100, maxReconnectDelay: 1000, timeout: 3000, ...options,
    });
    clients.push(client);
    return client;
  };
  return { node, key, proxy, sdk };
}

test('connects with a wsguard token, receives the API publications and publishes', async (t) => {
  const { node, key, sdk } = await setUp(t);
  const { access_token: token } = await login(node.base, 'johndoe', 'secret');
  const client = sdk({ token });
  const connected = once(client, 'connected');
  client.connect();
  const ctx = await connected;
  assert.equal(ctx.transport, 'websocket');
  assert.ok(ctx.client.length > 0, 'a client id');

  const sub = client.newSubscription('feed:john');
  const subscribed = once(sub, 'subscribed');
  sub.subscribe();
  const info = await subscribed;
  assert.equal(info.recoverable, true, 'feed keeps history');
  assert.equal(info.positioned, true);

  const received = once(sub, 'publication');
  const offset = await publish(node.base, key, 'feed:john', { text: 'shipped' });
  const pub = await received;
  assert.deepEqual(pub.data, { text: 'shipped' });
  assert.equal(pub.offset, offset, 'numbered as the API said');

  // Where publishing is for subscribers, the SDK publishes; the other subscriber receives it.
  const jane = sdk({ token: (await login(node.base, 'janedoe', 'secret2')).access_token });
  jane.connect();
  const janeNews = jane.newSubscription('news:eu');
  const janeSubscribed = once(janeNews, 'subscribed');
  janeNews.subscribe();
  await janeSubscribed;
  const news = client.newSubscription('news:eu');
  const newsSubscribed = once(news, 'subscribed');
  news.subscribe();
  await newsSubscribed;
  const arrives = once(janeNews, 'publication');
  await news.publish({ headline: 'hello' });
  const got = await arrives;
  assert.deepEqual(got.data, { headline: 'hello' });
  assert.equal(got.info.user, 'johndoe', 'the publisher named');

  // Publishing where only the API may: refused with the protocol's permission error.
  await assert.rejects(sub.publish({ x: 1 }), (err) => err.code === 103);
  // No RPC proxy yet: not available, as Centrifugo answers without one (centrifuge-js's own suite
  // expects 108 of Centrifugo).
  await assert.rejects(client.rpc('sum', { a: 1 }), (err) => err.code === 108);
  // An unknown namespace: unknown channel.
  const unknown = client.newSubscription('nope:x');
  const failed = once(unknown, 'unsubscribed');
  unknown.subscribe();
  assert.equal((await failed).code, 102);
});

test('presence, join and leave, and history through the SDK', async (t) => {
  const { node, key, sdk } = await setUp(t);
  const john = sdk({ token: (await login(node.base, 'johndoe', 'secret')).access_token });
  john.connect();
  const news = john.newSubscription('news:eu', { joinLeave: true });
  const subscribed = once(news, 'subscribed');
  news.subscribe();
  await subscribed;

  const jane = sdk({ token: (await login(node.base, 'janedoe', 'secret2')).access_token });
  jane.connect();
  const janeNews = jane.newSubscription('news:eu');
  const joined = once(news, 'join', 10_000, (ctx) => ctx.info.user === 'janedoe');
  janeNews.subscribe();
  await joined;
  const presence = await news.presence();
  assert.deepEqual(Object.values(presence.clients).map((c) => c.user).sort(), ['janedoe', 'johndoe']);
  const stats = await news.presenceStats();
  assert.equal(stats.numUsers, 2);
  const left = once(news, 'leave', 10_000, (ctx) => ctx.info.user === 'janedoe');
  janeNews.unsubscribe();
  await left;

  const feed = john.newSubscription('feed:h');
  const feedSubscribed = once(feed, 'subscribed');
  feed.subscribe();
  await feedSubscribed;
  for (let n = 1; n <= 5; n++) await publish(node.base, key, 'feed:h', { n });
  const page = await feed.history({ limit: 3 });
  assert.deepEqual(page.publications.map((p) => p.data.n), [3, 4, 5], 'the newest, oldest first');
  assert.equal(page.offset, 5);
  assert.ok(page.epoch.length > 0);
  const since = await feed.history({ limit: 10, since: { offset: 1, epoch: page.epoch } });
  assert.deepEqual(since.publications.map((p) => p.data.n), [2, 3, 4, 5]);
  const reversed = await feed.history({ limit: 2, reverse: true });
  assert.deepEqual(reversed.publications.map((p) => p.data.n), [5, 4]);
  await assert.rejects(feed.history({ limit: 1, since: { offset: 1, epoch: 'other' } }), (err) => err.code === 112);
});

test('refreshes in band across short tokens, and is closed when a token runs out', async (t) => {
  const { node, sdk } = await setUp(t, ['--access-ttl', '3s']);
  const session = new Session(node.base, 'johndoe', 'secret');
  const client = sdk({ getToken: () => session.token() });
  const disconnects = [];
  client.on('disconnected', (ctx) => disconnects.push(ctx));
  client.on('connecting', (ctx) => disconnects.push(ctx));
  const connected = once(client, 'connected');
  client.connect();
  await connected;
  disconnects.length = 0;
  // Three tokens of 3 s each: the SDK renews each before it runs out, on the same connection.
  await until(() => session.issued.length >= 4, 'three in-band refreshes', 15_000);
  assert.equal(client.state, 'connected');
  assert.deepEqual(disconnects, [], 'never reconnected');

  // A token not renewed in time (here getToken never answers) closes the connection with
  // "connection expired"; the SDK reconnects with a new token.
  const { access_token: token } = await login(node.base, 'janedoe', 'secret2');
  const stuck = sdk({ token, getToken: () => new Promise(() => {}) });
  const expired = once(stuck, 'connecting', 10_000, (ctx) => ctx.code === 3005);
  stuck.connect();
  assert.equal((await expired).reason, 'connection expired');
});

test('revocation ends the connection for good; a forged token is refused', async (t) => {
  const { node, key, sdk } = await setUp(t);
  const client = sdk({ token: (await login(node.base, 'johndoe', 'secret')).access_token });
  const connected = once(client, 'connected');
  client.connect();
  await connected;
  const disconnected = once(client, 'disconnected');
  await post(node.base, '/api/users/johndoe/revoke', undefined, { authorization: `Bearer ${key}` });
  const ctx = await disconnected;
  assert.equal(ctx.code, 3503, 'force disconnect: no reconnecting');

  const { access_token: token } = await login(node.base, 'janedoe', 'secret2');
  const forged = sdk({ token: token.slice(0, -4) + (token.endsWith('AAAA') ? 'BBBB' : 'AAAA') });
  const refused = once(forged, 'disconnected');
  forged.connect();
  assert.equal((await refused).code, 3500, 'invalid token: terminal');
});

test('recovers every publication missed during a cut, once and in order', async (t) => {
  const { node, key, proxy, sdk } = await setUp(t, [], { relay: true });
  const session = new Session(node.base, 'johndoe', 'secret');
  const client = sdk({ getToken: () => session.token() });
  await recoversAfterCut(client, proxy, 'feed:r', (n) => publish(node.base, key, 'feed:r', { n }));
});

test("a trusted issuer's tokens: its channels claim decides, and a renewed one that drops a channel ends it", async (t) => {
  const { secretFile, token: appToken } = trustedApplication(t);
  const config = `${CONFIG}
[[trusted_issuers]]
secret_file = "${secretFile}"

[[namespaces]]
name = "team"
subscribe = "claim"
publish = "api"
`;
  const { node, key, sdk } = await setUp(t, [], { config });
  const grants = [['team:red', 'team:blue'], ['team:red']];
  let asked = 0;
  const client = sdk({ getToken: async () => appToken('bob', grants[Math.min(asked++, 1)], 4) });
  client.connect();
  const red = client.newSubscription('team:red');
  const blue = client.newSubscription('team:blue');
  const green = client.newSubscription('team:green');
  const [redOn, blueOn] = [once(red, 'subscribed'), once(blue, 'subscribed')];
  const greenRefused = once(green, 'unsubscribed');
  red.subscribe();
  blue.subscribe();
  green.subscribe();
  await Promise.all([redOn, blueOn]);
  assert.equal((await greenRefused).code, 103, 'not in the claim: permission denied');
  const got = once(red, 'publication');
  await publish(node.base, key, 'team:red', { hello: 'bob' });
  assert.deepEqual((await got).data, { hello: 'bob' });

  // The SDK renews the 4 s token in band; the new one lists only red: blue ends, red goes on.
  const ended = await once(blue, 'unsubscribed', 10_000);
  assert.equal(ended.code, 2000, 'server unsubscribe: not subscribed again');
  assert.ok(asked >= 2, 'renewed through getToken');
  assert.equal(red.state, 'subscribed');
  assert.equal(client.state, 'connected');
});

test('two nodes: an SDK on one receives what the API publishes on the other, and revocation there closes it', async (t) => {
  if (!(await services(t))) return;
  const schema = await createSchema();
  const database = ['--database-url', schema.url];
  const dir = await dataFolder(CONFIG, database);
  const key = await apiKey(dir, database);
  const cluster = `tsdk${Date.now().toString(36)}`;
  const args = [...database, '--broker-url', `redis://${REDIS}`, '--cluster', cluster];
  const a = await Node.start(dir, args);
  const b = await Node.start(dir, args);
  const client = new Centrifuge(`ws://127.0.0.1:${a.port}/connection/websocket`, {
    websocket: WebSocket, token: (await login(b.base, 'johndoe', 'secret')).access_token,
  });
  t.after(async () => {
    client.disconnect();
    await a.stop();
    await b.stop();
    await schema.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  client.connect();
  const feed = client.newSubscription('feed:nodes');
  const subscribed = once(feed, 'subscribed');
  feed.subscribe();
  await subscribed;
  const received = [];
  feed.on('publication', (ctx) => received.push(ctx.offset));
  for (let n = 1; n <= 5; n++) await publish(b.base, key, 'feed:nodes', { n });
  await until(() => received.length === 5, () => `five through node B, got ${received}`);
  assert.deepEqual(received, [1, 2, 3, 4, 5]);

  const disconnected = once(client, 'disconnected');
  await post(b.base, '/api/users/johndoe/revoke', undefined, { authorization: `Bearer ${key}` });
  assert.equal((await disconnected).code, 3503, 'revoked on B, closed on A');
});

test('the protobuf SDK is told that wsguard speaks JSON only, and stops', async (t) => {
  const { node } = await setUp(t);
  const { access_token: token } = await login(node.base, 'johndoe', 'secret');
  const client = new ProtobufCentrifuge(`ws://127.0.0.1:${node.port}/connection/websocket`, {
    websocket: WebSocket, token, minReconnectDelay: 100,
  });
  t.after(() => client.disconnect());
  let attempts = 0;
  client.on('connecting', () => { attempts += 1; });
  const ended = once(client, 'disconnected', 5000);
  client.connect();
  const ctx = await ended;
  assert.equal(ctx.code, 3506);
  assert.equal(attempts, 1, 'no reconnecting');
});
