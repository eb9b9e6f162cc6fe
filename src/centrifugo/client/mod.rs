//! `GET /connection/websocket`: Centrifugo's client protocol v2, JSON codec. The token comes in
//! the `connect` command (`connect`); the session then answers the SDK's commands through the
//! channel engine (`session`, `commands`) on wsguard's socket loop, which keeps it bound to its
//! token: the SDK's `refresh` rebinds it, expiry and revocation close it with the protocol's codes.

mod commands;
mod connect;
mod session;
mod stream;
mod wire;

pub(super) use connect::websocket;
pub(super) use stream::{http_stream, sse};
