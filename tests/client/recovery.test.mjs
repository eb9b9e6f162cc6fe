// The JavaScript client (clients/js) against real wsguard processes, through real faults: a
// network cut, a node restarted, a node killed in a cluster, a history window passed while away,
// tokens expiring while away and renewed in band, a dead connection, a reader too slow for the
// server, rooms across cuts, a revoked user.
//
//   cargo build --bin wsguard && npm ci && node --test tests/client/
//
// Environment: WSGUARD_BIN (default target/debug/wsguard); the cluster test needs PostgreSQL
// (127.0.0.1:5432, database test, or WSGUARD_TEST_DATABASE_URL) and Redis (127.0.0.1:6379) and is
// skipped without them unless CI or WSGUARD_REQUIRE_SERVICES is set.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Client } from '../../clients/js/wsguard.js';
import {
  Node, Relay, Session, WebSocket, apiKey, claims, createSchema, dataFolder, journal, next, post,
  publish, publishStream, services, sleep, until, REDIS,
} from './support.mjs';

const CONFIG = `
[[namespaces]]
name = "feed"
subscribe = "any"
publish = "api"
history_size = 1000

[[namespaces]]
name = "small"
subscribe = "any"
publish = "api"
history_size = 5
`;

/** Short delays, so that a test takes seconds. */
const FAST = {
  WebSocket,
  minReconnectDelay: 100,
  maxReconnectDelay: 1000,
  pingInterval: 1000,
  pongTimeout: 1000,
  connectTimeout: 3000,
};

/** A node with the demo users, an API key, and what to clean up after the test. */
async function setUp(t, args = [], { relay = true } = {}) {
  const dir = await dataFolder(CONFIG);
  const key = await apiKey(dir); // before the start: a running node rereads its keys every second
  const node = await Node.start(dir, args);
  const proxy = relay ? await Relay.start(node.port) : null;
  const clients = [];
  t.after(async () => {
    for (const client of clients) client.close();
    await proxy?.close();
    await node.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const client = (options) => {
    const created = new Client({ ...FAST, ...options });
    clients.push(created);
    return created;
  };
  return { dir, node, key, relay: proxy, client };
}

/** Every publication of `sub`, as delivered. */
function record(sub) {
  const got = [];
  sub.on('publication', (p) => got.push(p));
  return got;
}

/** Delivered once each, in offset order, and every acknowledged one among them. */
function assertOnceInOrderAndComplete(got, acked, log) {
  const offsets = got.map((p) => p.offset);
  for (let i = 1; i < offsets.length; i++) {
    assert.ok(offsets[i] > offsets[i - 1], `offset ${offsets[i]} after ${offsets[i - 1]}\n${log.join('\n')}`);
  }
  const delivered = new Set(offsets);
  const missing = [...acked.values()].filter((offset) => !delivered.has(offset));
  assert.deepEqual(missing, [], `acknowledged but not delivered\n${log.join('\n')}`);
}

test('a 5 s network cut while 500 publications flow: each delivered once, in order', async (t) => {
  const { node, key, relay, client } = await setUp(t);
  const session = new Session(node.base, 'johndoe', 'secret');
  const alice = client({ url: relay.wsUrl, getToken: () => session.token() });
  const log = journal(alice);
  const sub = alice.subscribe('feed:cut');
  const got = record(sub);
  const unrecovered = [];
  sub.on('unrecovered', (e) => unrecovered.push(e));
  // An application's bug in a listener: reported, and the client goes on.
  let thrown = 0;
  sub.on('publication', () => {
    thrown++;
    throw new Error('a bug in the application');
  });
  const listenerErrors = [];
  alice.on('error', (err) => err.code === 'listener' && listenerErrors.push(err));
  alice.connect();
  await sub.ready;

  const started = Date.now();
  const stream = publishStream({ base: () => node.base, key, channel: 'feed:cut', count: 500, every: 16 });
  await sleep(1500);
  const beforeCut = got.length;
  await relay.cut(5000);
  const duringCut = stream.acked.size;
  await stream.done;
  const published = Date.now() - started;
  await until(() => got.length >= 500, () => `500 publications (have ${got.length})\n${log.join('\n')}`, 10_000);
  await sleep(200); // nothing more (no duplicate) comes late

  assert.ok(beforeCut > 50 && duringCut > beforeCut + 200, `published before (${beforeCut}) and during the cut (${duringCut})`);
  assert.ok(published > 7000, 'and after it');
  assert.deepEqual(got.map((p) => p.offset), Array.from({ length: 500 }, (_, i) => i + 1), log.join('\n'));
  assert.deepEqual(got.map((p) => p.data.n), Array.from({ length: 500 }, (_, i) => i + 1));
  assert.ok(got.every((p) => p.channel === 'feed:cut' && p.from === null && typeof p.ts === 'string'));
  assertOnceInOrderAndComplete(got, stream.acked, log);
  assert.deepEqual(unrecovered, []);
  assert.ok(log.some((l) => l.startsWith('disconnected')), 'the cut was seen');
  assert.equal(sub.offset, 500);
  assert.equal(thrown, 500);
  assert.equal(listenerErrors.length, 500);
});

test('a node restarted during a stream: no acknowledged publication missing, none twice', async (t) => {
  const { node, key, client } = await setUp(t, [], { relay: false });
  const session = new Session(node.base, 'johndoe', 'secret');
  const alice = client({ url: node.wsUrl, getToken: () => session.token() });
  const log = journal(alice);
  // Published before: the client knows the epoch, and resumes from its position in it.
  for (let i = 1; i <= 5; i++) await publish(node.base, key, 'feed:restart', { before: i });
  const sub = alice.subscribe('feed:restart');
  const got = record(sub);
  alice.connect();
  await sub.ready;
  assert.equal(sub.offset, 5);
  assert.match(sub.epoch, /^[0-9a-f]{16}$/);
  const recoveries = [];
  sub.on('subscribed', ({ recovered }) => recoveries.push(recovered));

  const stream = publishStream({ base: () => node.base, key, channel: 'feed:restart', count: 300, every: 10 });
  await sleep(1000);
  await node.restart(); // SIGTERM, then the same port and data folder
  await stream.done;
  const last = Math.max(...stream.acked.values());
  await until(() => got.at(-1)?.offset >= last, `delivery up to ${last}`, 10_000);
  await sleep(200);

  assertOnceInOrderAndComplete(got, stream.acked, log);
  assert.equal(got[0].offset, 6);
  assert.ok(log.some((l) => l.includes('"code":1001')), `the server's shutdown was seen\n${log.join('\n')}`);
  assert.ok(recoveries.includes(true) && !recoveries.includes(false), `resumed: ${recoveries}`);
  assert.equal(alice.state, 'connected');
});

test('two nodes: the client moves to the other when its node is killed, nothing lost or doubled', async (t) => {
  if (!(await services(t))) return;
  const schema = await createSchema();
  const database = ['--database-url', schema.url];
  const dir = await dataFolder(CONFIG, database);
  const key = await apiKey(dir, database);
  const cluster = `tjs${Date.now().toString(36)}`;
  const args = [...database, '--broker-url', `redis://${REDIS}`, '--cluster', cluster];
  const a = await Node.start(dir, args);
  const b = await Node.start(dir, args);
  const alive = () => (a.proc.exitCode === null && a.proc.signalCode === null ? a.base : b.base);
  const session = new Session(alive, 'johndoe', 'secret');
  const alice = new Client({ ...FAST, url: [a.wsUrl, b.wsUrl], getToken: () => session.token() });
  t.after(async () => {
    alice.close();
    await a.stop('SIGKILL');
    await b.stop();
    await schema.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const log = journal(alice);
  const sub = alice.subscribe('feed:nodes');
  const got = record(sub);
  alice.connect();
  await sub.ready;
  const welcomedOn = [];
  alice.on('state', (state) => state === 'connected' && welcomedOn.push(Date.now()));

  const stream = publishStream({ base: () => b.base, key, channel: 'feed:nodes', count: 300, every: 12 });
  await until(() => got.length >= 60, 'publications through the other node', 10_000);
  await a.stop('SIGKILL');
  await stream.done;
  await until(() => got.at(-1)?.offset >= 300, `delivery up to 300 (have ${got.at(-1)?.offset})`, 15_000);
  await sleep(200);

  assertOnceInOrderAndComplete(got, stream.acked, log);
  assert.deepEqual(got.map((p) => p.offset), Array.from({ length: 300 }, (_, i) => i + 1));
  assert.equal(welcomedOn.length, 1, `reconnected once, to the other node\n${log.join('\n')}`);
});

test('the history window passed while away: unrecovered, then live publications go on', async (t) => {
  const { node, key, relay, client } = await setUp(t);
  const session = new Session(node.base, 'johndoe', 'secret');
  const alice = client({ url: relay.wsUrl, getToken: () => session.token() });
  for (let i = 1; i <= 2; i++) await publish(node.base, key, 'small:window', { i }); // an epoch
  const sub = alice.subscribe('small:window');
  const got = record(sub);
  alice.connect();
  const subscribed = await next(sub, 'subscribed');
  assert.equal(subscribed.offset, 2);
  for (let i = 3; i <= 5; i++) await publish(node.base, key, 'small:window', { i });
  await until(() => got.length === 3, 'the live ones');

  await relay.cut();
  for (let i = 6; i <= 15; i++) await publish(node.base, key, 'small:window', { i }); // 5 kept: 11..15
  const unrecovered = next(sub, 'unrecovered');
  relay.restore();
  const event = await unrecovered;
  assert.equal(event.offset, 15);
  assert.equal(event.recovered, false);
  assert.deepEqual(event.previous, { offset: 5, epoch: subscribed.epoch });
  assert.equal(event.epoch, subscribed.epoch);

  for (let i = 16; i <= 17; i++) await publish(node.base, key, 'small:window', { i });
  await until(() => got.length === 5, 'the live ones after');
  assert.deepEqual(got.map((p) => p.offset), [3, 4, 5, 16, 17], 'nothing stale is delivered');
  assert.deepEqual(got.map((p) => p.data.i), [3, 4, 5, 16, 17]);
});

test('a token that expires while away is renewed on reconnect; in-band refresh outlives several tokens', async (t) => {
  const { node, relay, client } = await setUp(t, ['--access-ttl=3s']);
  const session = new Session(node.base, 'johndoe', 'secret');
  const asked = [];
  const alice = client({
    url: relay.wsUrl,
    getToken: ({ reason }) => {
      asked.push(reason);
      return session.token();
    },
  });
  const log = journal(alice);
  const welcomed = [];
  alice.on('welcome', (user, exp) => welcomed.push({ user, exp }));
  alice.connect();
  await alice.ready();
  await relay.cut(); // before the in-band refresh, due at half the token's life
  const first = session.issued[0];
  assert.equal(welcomed[0].exp, claims(first).exp);
  await until(() => Date.now() / 1000 > claims(first).exp + 1, 'the first token expired', 10_000);
  const askedBefore = asked.length;
  relay.restore();
  await until(() => alice.state === 'connected', `a reconnect\n${log.join('\n')}`);

  const used = session.issued.at(-1);
  assert.notEqual(used, first);
  assert.equal(welcomed.length, 2);
  assert.equal(welcomed[1].exp, claims(used).exp, 'the new token opened the socket');
  assert.ok(claims(used).exp > claims(first).exp);
  assert.deepEqual(asked[0], 'connect');
  assert.ok(asked.length > askedBefore - 1 && asked.slice(1).every((r) => r === 'connect' || r === 'expired'), asked.join());

  // Connected now, the tokens keep expiring: each is renewed in band, the socket stays.
  const refreshed = [];
  alice.on('refreshed', (exp) => refreshed.push(exp));
  const states = [];
  alice.on('state', (state) => states.push(state));
  const expAtStart = alice.exp;
  await sleep(9000);
  assert.deepEqual(states, [], `no reconnect\n${log.join('\n')}`);
  assert.ok(refreshed.length >= 3, `renewed ${refreshed.length} times`);
  assert.ok(alice.exp >= expAtStart + 6, `${alice.exp} vs ${expAtStart}`);
  assert.ok(asked.includes('expiring'));
  const sub = alice.subscribe('feed:alive');
  await sub.ready; // the socket still answers
});

test('a dead connection (no FIN, nothing forwarded) is found by ping and replaced', async (t) => {
  const { node, key, relay, client } = await setUp(t);
  const session = new Session(node.base, 'johndoe', 'secret');
  const alice = client({ url: relay.wsUrl, getToken: () => session.token(), pingInterval: 500, pongTimeout: 500 });
  const log = journal(alice);
  const sub = alice.subscribe('feed:dead');
  const got = record(sub);
  alice.connect();
  await sub.ready;
  const frozenAt = Date.now();
  const dropped = next(alice, 'state', 5000, (state) => state === 'disconnected');
  relay.freeze();
  for (let i = 1; i <= 5; i++) await publish(node.base, key, 'feed:dead', { i });
  const [, detail] = await dropped;
  assert.equal(detail.code, 4000);
  assert.ok(Date.now() - frozenAt < 2500, `found dead after ${Date.now() - frozenAt} ms`);
  await until(() => got.length === 5, `the 5 publications after the reconnect\n${log.join('\n')}`);
  assert.deepEqual(got.map((p) => p.offset), [1, 2, 3, 4, 5]);
});

test('a reader too slow for the server (1013): it reconnects and recovers every publication', async (t) => {
  const { node, key, relay, client } = await setUp(t, ['--api-requests-per-sec=5000', '--api-burst=5000']);
  const session = new Session(node.base, 'johndoe', 'secret');
  const alice = client({ url: relay.wsUrl, getToken: () => session.token(), pingInterval: 0 });
  const log = journal(alice);
  const sub = alice.subscribe('feed:slow');
  const got = record(sub);
  alice.connect();
  await sub.ready;
  // The client stops reading; publications of 60 KB fill the TCP buffers, then the socket's
  // queue of 256 frames, and the server drops the socket from the channel (/api/channels says so).
  relay.pause();
  const subscribed = async () => {
    const res = await fetch(`${node.base}/api/channels`, { headers: { authorization: `Bearer ${key}` } });
    return (await res.json()).channels.some((c) => c.channel === 'feed:slow');
  };
  const big = 'x'.repeat(60_000);
  let published = 0;
  while ((await subscribed()) && published < 2000) {
    await Promise.all(Array.from({ length: 8 }, () => publish(node.base, key, 'feed:slow', { n: ++published, big })));
  }
  assert.ok(!(await subscribed()), `the server kept a socket ${published} publications behind`);
  relay.resume();
  await until(() => got.length >= published, () => `${published} publications (have ${got.length})\n${log.join('\n')}`, 20_000);
  await sleep(200);
  assert.deepEqual(got.map((p) => p.offset), Array.from({ length: published }, (_, i) => i + 1));
  assert.ok(log.some((l) => l.includes('"code":1013')), log.join('\n'));
  assert.equal(alice.state, 'connected');
});

test('rooms: messages sent during a cut arrive once after the reconnect', async (t) => {
  const { node, relay, client } = await setUp(t);
  const john = new Session(node.base, 'johndoe', 'secret');
  const jane = new Session(node.base, 'janedoe', 'secret2');
  const sent = []; // what john's client sends, on a real socket
  class Recording extends WebSocket {
    send(data) {
      sent.push(JSON.parse(data));
      super.send(data);
    }
  }
  const johnClient = client({ url: relay.wsUrl, getToken: () => john.token(), WebSocket: Recording });
  const janeClient = client({ url: node.wsUrl, getToken: () => jane.token() });
  const log = journal(johnClient);
  const room = johnClient.join('general');
  const messages = [];
  const histories = [];
  room.on('message', (m) => messages.push(m));
  room.on('history', (h) => histories.push(h));
  johnClient.connect();
  janeClient.connect();
  await room.ready;
  assert.deepEqual(room.members, ['johndoe']);
  const janeRoom = janeClient.join('general');
  await janeRoom.ready;
  await until(() => room.members.includes('janedoe'), 'presence of jane');

  const hello = await room.send('hello');
  assert.equal(hello.id, 1);
  await until(() => messages.length === 1, 'the echo of hello');

  await relay.cut();
  const acks = [];
  for (const text of ['one', 'two', 'three']) acks.push(await janeRoom.send(text));
  assert.deepEqual(acks.map((a) => a.id), [2, 3, 4]);
  await sleep(300);
  relay.restore();
  await until(() => histories.length === 2, () => `the re-join's history\n${log.join('\n')}`);
  await sleep(300);

  assert.deepEqual(messages.map((m) => [m.id, m.from, m.text]), [
    [1, 'johndoe', 'hello'], [2, 'janedoe', 'one'], [3, 'janedoe', 'two'], [4, 'janedoe', 'three'],
  ]);
  assert.equal(histories[0].messages.length, 0, 'the room was empty at first');
  assert.equal(histories[1].recovered, true);
  assert.deepEqual(histories[1].messages, [], 'the missed ones came as messages, not again as history');
  assert.equal(room.offset, 4);

  // Paging older history and a refused send.
  const page = await room.history({ before: 4, limit: 2 });
  assert.deepEqual(page.map((m) => m.id), [2, 3]);
  await assert.rejects(room.send(''), (err) => err.code === 'bad_request' && /empty/.test(err.detail));

  // The room's epoch is known now: the next re-join resumes from the last id in it.
  assert.match(room.epoch, /^[0-9a-f]{16}$/);
  await relay.cut();
  for (const text of ['four', 'five']) await janeRoom.send(text);
  relay.restore();
  await until(() => histories.length === 3, () => `the second re-join\n${log.join('\n')}`);
  await until(() => messages.length === 6, 'the two missed');
  assert.deepEqual(messages.slice(4).map((m) => [m.id, m.text]), [[5, 'four'], [6, 'five']]);
  assert.equal(histories[2].recovered, true);
  const joins = sent.filter((f) => f.type === 'join');
  assert.deepEqual(joins.map((f) => f.since), [
    undefined, // the first
    // The room had no epoch when joined; its first message named it.
    { offset: 1, epoch: histories[1].epoch },
    { offset: 4, epoch: histories[1].epoch },
  ]);
  assert.equal((await room.send('still here')).id, 7);
  await until(() => messages.length === 7, 'the echo');
  assert.deepEqual(messages.map((m) => m.id), [1, 2, 3, 4, 5, 6, 7]);
});

test('a revoked user: closed with 4003, no reconnect; a refused token: one retry, then closed', async (t) => {
  const { node, key, client } = await setUp(t, [], { relay: false });
  const session = new Session(node.base, 'johndoe', 'secret');
  const alice = client({ url: node.wsUrl, getToken: () => session.token() });
  const log = journal(alice);
  alice.connect();
  await alice.ready();
  const pending = alice.publish('feed:nope', 1).catch((err) => err); // api-only namespace
  const refused = await pending;
  assert.equal(refused.code, 'forbidden');
  const closed = next(alice, 'state', 5000, (state) => state === 'closed');
  await post(node.base, '/api/users/johndoe/revoke', undefined, { authorization: `Bearer ${key}` });
  const [, detail] = await closed;
  assert.equal(detail.code, 4003);
  await sleep(1500);
  assert.equal(alice.state, 'closed', log.join('\n'));
  assert.equal(log.filter((l) => l.startsWith('connecting')).length, 1, 'no reconnect');

  const asked = [];
  const bob = client({ url: node.wsUrl, getToken: ({ reason }) => (asked.push(reason), 'not-a-token') });
  const bobClosed = next(bob, 'state', 5000, (state) => state === 'closed');
  bob.connect();
  const [, bobDetail] = await bobClosed;
  assert.equal(bobDetail.code, 1008);
  assert.equal(bobDetail.reason, 'malformed token');
  assert.deepEqual(asked, ['connect', 'expired']);
});
