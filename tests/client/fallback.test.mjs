// wsguard's JavaScript client where WebSockets are refused: through a relay that answers every
// upgrade with 403, it falls back to an HTTP stream (POST /connect/stream, frames by POST
// /emulation) and keeps the protocol's promises there: rooms and channels, acks, recovery after a
// cut, in-band renewal, and the close codes (revocation ends it for good).
//
//   cargo build --bin wsguard && npm ci && node --test tests/client/fallback.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Client } from '../../clients/js/wsguard.js';
import { Node, Relay, Session, WebSocket, apiKey, dataFolder, next, post, publish, until } from './support.mjs';

const CONFIG = `
[[namespaces]]
name = "feed"
subscribe = "any"
publish = "api"
history_size = 100
`;

async function setUp(t, args = []) {
  const dir = await dataFolder(CONFIG);
  const key = await apiKey(dir);
  const node = await Node.start(dir, args);
  const relay = await Relay.start(node.port);
  relay.refuseUpgrades = true;
  const clients = [];
  t.after(async () => {
    for (const client of clients) client.close();
    await relay.close();
    await node.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const client = (options) => {
    const made = new Client({ url: relay.wsUrl, WebSocket, minReconnectDelay: 100, maxReconnectDelay: 500, ...options });
    clients.push(made);
    return made;
  };
  return { node, key, relay, client };
}

test('falls back to the stream: rooms, channels, acks, and every publication once after a cut', async (t) => {
  const { node, key, relay, client } = await setUp(t);
  const session = new Session(node.base, 'johndoe', 'secret');
  const john = client({ getToken: () => session.token() });
  const states = [];
  john.on('state', (state, detail) => states.push([state, detail.transport]));
  const room = john.join('general');
  const feed = john.subscribe('feed:x');
  const received = [];
  feed.on('publication', (p) => received.push(p.data.n));
  john.connect();
  await room.ready;
  await feed.ready;
  assert.equal(john.transport, 'stream');
  assert.deepEqual(states.find(([state]) => state === 'connected'), ['connected', 'stream']);
  const ack = await room.send('over a stream');
  assert.ok(ack.id > 0);
  await publish(node.base, key, 'feed:x', { n: 1 });
  await until(() => received.length === 1, 'the first publication');

  // A cut: the client reconnects (still by stream) and resumes from where it was.
  const back = next(john, 'state', 15_000, (state) => state === 'connected');
  relay.cut();
  for (let n = 2; n <= 6; n++) await publish(node.base, key, 'feed:x', { n });
  relay.restore();
  await back;
  await until(() => received.length >= 6, () => `six, got ${received}`);
  assert.deepEqual(received, [1, 2, 3, 4, 5, 6]);
});

test('on the stream: renewed in band before expiry, and revocation closes it for good (4003)', async (t) => {
  const { node, key, client } = await setUp(t, ['--access-ttl', '3s']);
  const session = new Session(node.base, 'johndoe', 'secret');
  const john = client({ getToken: () => session.token() });
  const states = [];
  john.on('state', (state) => states.push(state));
  john.connect();
  await next(john, 'state', 10_000, (state) => state === 'connected');
  await until(() => session.issued.length >= 3, 'two renewals', 15_000);
  assert.deepEqual(states, ['connecting', 'disconnected', 'connecting', 'connected'], 'the WebSocket refused once, then one stream');
  const closed = next(john, 'state', 10_000, (state) => state === 'closed');
  await post(node.base, '/api/users/johndoe/revoke', undefined, { authorization: `Bearer ${key}` });
  assert.equal((await closed)[1].code, 4003);
});

test('without a WebSocket at all, the stream alone', async (t) => {
  const { node } = await setUp(t);
  const session = new Session(node.base, 'janedoe', 'secret2');
  const jane = new Client({ url: `ws://127.0.0.1:${node.port}/connect`, transports: ['stream'], getToken: () => session.token() });
  t.after(() => jane.close());
  const room = jane.join('general');
  jane.connect();
  await room.ready;
  assert.deepEqual(room.members, ['janedoe']);
});
