//! wsguard: an OAuth2 password-flow token service issuing JWTs, users in a real database, and
//! WebSocket endpoints that accept a connection only for a valid token and stay bound to it.
//!
//! Layers point one way: `config`, `metrics`, `store`, `broker` and `auth` know nothing of the
//! web; `channels`, the channel engine, stands on the store and the broker; `app` holds their
//! state; `http`, `ws`, `session` (the JSON sockets) and `api` (the server API) serve it;
//! `server` (with `connections` and `tls`) and `cli` run it.

#![warn(unreachable_pub)]

mod api;
mod app;
pub mod auth;
mod broker;
pub(crate) mod centrifugo;
pub mod channels;
pub mod cli;
pub mod clock;
mod config;
mod connections;
mod emulation;
#[cfg(test)]
mod footprint;
mod http;
pub mod logs;
mod metrics;
mod private_files;
mod proxy;
mod quota;
mod server;
mod session;
mod shutdown;
pub mod store;
mod tls;
mod token_bucket;
mod webhooks;
mod ws;
