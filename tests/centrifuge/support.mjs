// What the tests of Centrifugo's SDK share: waiting for its events, and making its clients over
// each transport wsguard serves.
import { Centrifuge } from 'centrifuge';
import { EventSource } from 'eventsource';
import assert from 'node:assert/strict';
import { WebSocket, sleep, until } from '../client/support.mjs';

/** The next `name` event of a centrifuge emitter (client or subscription) that `filter` takes, within `timeout` ms. */
export function once(emitter, name, timeout = 10_000, filter = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.removeListener(name, listener);
      reject(new Error(`no ${name} event within ${timeout} ms`));
    }, timeout);
    const listener = (ctx) => {
      if (!filter(ctx)) return;
      clearTimeout(timer);
      emitter.removeListener(name, listener);
      resolve(ctx);
    };
    emitter.on(name, listener);
  });
}

/** The namespaces the SDK tests use: `news` (presence, subscribers publish), `feed` (history, the API publishes). */
export const CONFIG = `
[[namespaces]]
name = "news"
subscribe = "any"
publish = "subscribers"
presence = true

[[namespaces]]
name = "feed"
subscribe = "any"
publish = "api"
history_size = 1000
`;

/** The transports, as the SDK names them. */
export const TRANSPORTS = ['websocket', 'http_stream', 'sse'];

/**
 * An SDK client of the node at `base` (`http://host:port`) over `transports` (several: it falls
 * back in that order), its emulated commands sent to `emulationBase` (another node, say).
 */
export function sdkClient(base, transports, options = {}, emulationBase = base) {
  const ws = base.replace(/^http/, 'ws');
  const endpoints = {
    websocket: `${ws}/connection/websocket`,
    http_stream: `${base}/connection/http_stream`,
    sse: `${base}/connection/sse`,
  };
  const list = (Array.isArray(transports) ? transports : [transports]).map((transport) => ({
    transport, endpoint: endpoints[transport],
  }));
  return new Centrifuge(list, {
    websocket: WebSocket,
    eventsource: EventSource,
    emulationEndpoint: `${emulationBase}/emulation`,
    minReconnectDelay: 100,
    maxReconnectDelay: 1000,
    timeout: 3000,
    ...options,
  });
}

/**
 * Publications 1-3 on `channel` (through `publishN`), then a cut of `relay` while 4-10 are
 * published, then 11: the SDK client recovers every one, once and in order (`recovered` true).
 */
export async function recoversAfterCut(client, relay, channel, publishN) {
  client.connect();
  const feed = client.newSubscription(channel);
  const received = [];
  feed.on('publication', (ctx) => received.push(ctx.data.n));
  const first = once(feed, 'subscribed');
  feed.subscribe();
  await first;
  for (let n = 1; n <= 3; n++) await publishN(n);
  await until(() => received.length === 3, 'the first three');

  const again = once(feed, 'subscribed', 15_000);
  relay.cut();
  for (let n = 4; n <= 10; n++) await publishN(n);
  await sleep(300);
  relay.restore();
  const ctx = await again;
  assert.equal(ctx.wasRecovering, true);
  assert.equal(ctx.recovered, true);
  await until(() => received.length >= 10, () => `all ten, got ${received}`);
  await publishN(11);
  await until(() => received.length >= 11, 'the next one');
  assert.deepEqual(received, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
}
