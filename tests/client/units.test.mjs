// The JavaScript client's pure parts: reconnect delays, when to renew a token, where a stream
// stands and what counts as a duplicate, and the options it refuses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, Cursor, WsguardError, backoffDelay, refreshDelay } from '../../clients/js/wsguard.js';
import { streamUrl } from '../../clients/js/client/stream.js';

const OPTIONS = { minReconnectDelay: 500, maxReconnectDelay: 30000 };

test('backoff: exponential from the minimum, capped, jitter within bounds', () => {
  for (const jitter of ['full', 'equal']) {
    const options = { ...OPTIONS, jitter };
    for (let attempt = 0; attempt < 40; attempt++) {
      const cap = Math.min(30000, 500 * 2 ** attempt);
      const low = jitter === 'equal' ? Math.max(500, cap / 2) : 500;
      assert.equal(backoffDelay(attempt, options, () => 0), Math.round(low), `${jitter} ${attempt} lowest`);
      assert.equal(backoffDelay(attempt, options, () => 0.999999), Math.round(low + 0.999999 * (cap - low)));
      for (let i = 0; i < 50; i++) {
        const delay = backoffDelay(attempt, options);
        assert.ok(delay >= low && delay <= cap, `${jitter} attempt ${attempt}: ${delay} in [${low}, ${cap}]`);
      }
    }
  }
  assert.equal(backoffDelay(0, { ...OPTIONS, jitter: 'full' }, () => 0.5), 500, 'the first retry waits the minimum');
  assert.equal(backoffDelay(3, { ...OPTIONS, jitter: 'equal' }, () => 0), 2000);
  assert.equal(backoffDelay(1000, { ...OPTIONS, jitter: 'equal' }, () => 1), 30000, 'no overflow');
});

test('refresh: half the life left for short tokens, 10-20 s before the end for long ones', () => {
  assert.equal(refreshDelay(0), 0);
  assert.equal(refreshDelay(3, () => 0), 1500);
  assert.equal(refreshDelay(60, () => 0), 50000);
  assert.equal(refreshDelay(60, () => 1), 40000);
  assert.equal(refreshDelay(900, () => 0.5), 885000);
  assert.equal(refreshDelay(-5), 0);
  assert.equal(refreshDelay(undefined), 0);
});

test('cursor: new, duplicate and behind; positions from the server', () => {
  const cursor = new Cursor();
  assert.equal(cursor.since(), undefined, 'nothing to recover from before a position');
  assert.equal(cursor.accept(5), 'new', 'nothing to compare with');
  cursor.settle(0, '');
  assert.deepEqual(cursor.since(), { offset: 0, epoch: '' }, 'a channel never published');
  assert.equal(cursor.accept(1), 'new');
  assert.equal(cursor.accept(2), 'new');
  assert.deepEqual(cursor.since(), { offset: 0, epoch: '' }, 'no epoch known: everything kept, duplicates dropped');
  assert.equal(cursor.accept(2), 'duplicate');
  cursor.settle(17, 'e1');
  assert.deepEqual(cursor.since(), { offset: 17, epoch: 'e1' });
  assert.equal(cursor.accept(18), 'new');
  assert.equal(cursor.accept(18), 'duplicate');
  assert.equal(cursor.accept(12), 'behind');
  assert.equal(cursor.accept(20), 'new', 'a gap is the server\'s to fill; the client does not hold back');
  assert.equal(cursor.accept(null), 'new', 'unnumbered publications pass');
  assert.equal(cursor.offset, 20);

  // Frames that name their epoch: the first one teaches a cursor without one; another is behind.
  const fresh = new Cursor();
  fresh.settle(0, '');
  assert.equal(fresh.accept(1, 'e7'), 'new');
  assert.deepEqual(fresh.since(), { offset: 1, epoch: 'e7' }, 'the epoch learnt from the frame');
  assert.equal(fresh.accept(2, 'e7'), 'new');
  assert.equal(fresh.accept(3, 'e8'), 'behind', 'the numbering started over');
  assert.deepEqual(fresh.since(), { offset: 2, epoch: 'e7' }, 'unchanged by a frame of another epoch');

  // Recovered in the same epoch: never backwards. Another epoch, or unrecovered: the server's.
  assert.deepEqual(cursor.settle(19, 'e1', true), { offset: 20, epoch: 'e1' });
  assert.equal(cursor.offset, 20);
  cursor.settle(3, 'e2', true);
  assert.deepEqual(cursor.since(), { offset: 3, epoch: 'e2' });
  cursor.settle(40, 'e2', false);
  assert.deepEqual(cursor.since(), { offset: 40, epoch: 'e2' });
  cursor.settle(undefined, 'x');
  assert.deepEqual(cursor.since(), { offset: 40, epoch: 'e2' }, 'no offset: unchanged');
});

test('options: a url is needed, and a WebSocket; bad choices are refused', () => {
  class FakeSocket {}
  assert.throws(() => new Client({}), /needs a url/);
  assert.throws(() => new Client({ url: 'ws://x', WebSocket: FakeSocket, tokenTransport: 'cookie' }), /tokenTransport/);
  assert.throws(() => new Client({ url: 'ws://x', WebSocket: FakeSocket, jitter: 'some' }), /jitter/);
  for (const bad of [{ maxMessagesPerSecond: 0 }, { pongTimeout: Infinity }, { minReconnectDelay: 0 },
    { minReconnectDelay: 1000, maxReconnectDelay: 10 }, { connectTimeout: '5s' }, { pingInterval: NaN }]) {
    assert.throws(() => new Client({ url: 'ws://x', WebSocket: FakeSocket, ...bad }), RangeError, JSON.stringify(bad));
  }
  new Client({ url: 'ws://x', WebSocket: FakeSocket, maxMessagesPerSecond: Infinity, pingInterval: 0 });
  assert.throws(() => new Client({ url: 'ws://x', WebSocket: FakeSocket, transports: [] }), /transports/);
  assert.throws(() => new Client({ url: 'ws://x', WebSocket: FakeSocket, transports: ['polling'] }), /transports/);
  if (typeof globalThis.WebSocket !== 'function') {
    assert.throws(() => new Client({ url: 'ws://x', transports: ['websocket'] }), /pass one as the WebSocket option/);
    assert.equal(new Client({ url: 'ws://x' }).transport, 'stream', 'no WebSocket here: the stream alone');
  }
  assert.equal(new Client({ url: 'ws://x', WebSocket: FakeSocket }).transport, 'websocket', 'a WebSocket first');
  const client = new Client({ url: 'ws://x', WebSocket: FakeSocket });
  assert.equal(client.state, 'disconnected');
  const sub = client.subscribe('news:a');
  assert.equal(client.subscribe('news:a'), sub, 'one subscription per channel');
  assert.throws(() => client.join('news:a'), (err) => err instanceof WsguardError && err.code === 'bad_request');
  return assert.rejects(client.publish('news:a', 1), (err) => err.code === 'disconnected');
});

test('the stream stands in for a WebSocket URL at <path>/stream', () => {
  assert.equal(streamUrl('ws://h:8000/connect'), 'http://h:8000/connect/stream');
  assert.equal(streamUrl('wss://h/chat/ws?csrf_token=a%20b'), 'https://h/chat/ws/stream?csrf_token=a%20b');
  assert.equal(streamUrl('ws://h/connect/'), 'http://h/connect/stream');
});

test('a listener that throws does not stop the others', () => {
  class FakeSocket {}
  const client = new Client({ url: 'ws://x', WebSocket: FakeSocket });
  const seen = [];
  const errors = [];
  client.on('state', () => {
    throw new Error('boom');
  });
  const off = client.on('state', (state) => seen.push(state));
  client.on('error', (err) => errors.push(err.code));
  client.close();
  assert.deepEqual(seen, ['closed']);
  assert.deepEqual(errors, ['listener']);
  off();
});
