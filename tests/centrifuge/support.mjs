// What the tests of Centrifugo's SDK share: waiting for its events, and making its clients over
// each transport wsguard serves.
import { Centrifuge } from 'centrifuge';
import { EventSource } from 'eventsource';
import { WebSocket } from '../client/support.mjs';

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
