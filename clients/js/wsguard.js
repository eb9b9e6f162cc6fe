// wsguard-client: the browser and Node client of wsguard's JSON sockets (/connect, /chat/ws).
// ES modules, no dependencies. It reconnects with backoff, renews the token in band, and on
// every reconnect re-joins rooms and resubscribes channels from the last position delivered, so
// that an application sees each publication once and in order, or is told it must reload.
// The wire protocol is docs/protocol.md of the wsguard repository (sections 3 to 7).
//
// This file is the entry point (served by wsguard as /client.js, its parts as /client/*.js):
//   client/client.js    Client: the API, what the frames mean, streams followed again
//   client/socket.js    ReconnectingSocket: opening, welcome, pings, close codes, rate limit
//   client/streams.js   Subscription and Room (and the Emitter under everything)
//   client/position.js  backoffDelay, refreshDelay, Cursor: the pure parts
//   client/options.js   the defaults and checks of the Client's options
//   client/errors.js    WsguardError

export { Client } from './client/client.js';
export { Room, Subscription } from './client/streams.js';
export { Cursor, backoffDelay, refreshDelay } from './client/position.js';
export { WsguardError } from './client/errors.js';
