//! wsguard: an OAuth2 password-flow token service issuing JWTs, users in a real database, and
//! WebSocket endpoints that accept a connection only for a valid token and stay bound to it.

pub mod app;
pub mod auth;
pub mod broker;
pub mod chat;
pub mod cli;
pub mod config;
pub mod http;
pub mod metrics;
pub mod store;
pub mod tls;
pub mod users;
pub mod ws;
