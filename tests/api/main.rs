//! Integration tests: each starts the real `wsguard` binary on a random port with a fresh SQLite
//! data folder, and talks to it over real HTTP and WebSocket connections.

mod admin;
mod admin_actions;
mod api_publish;
mod application;
mod centrifugo_api;
mod centrifugo_socket;
mod channels;
mod chat;
mod cli;
mod cluster;
mod cors;
mod decides;
mod doctor;
mod helpers;
mod issuers;
mod keys;
mod migrate;
mod pages;
mod proxy;
mod refresh;
mod secrets;
mod server_api;
mod shutdown;
mod slow_clients;
mod sockets;
mod sockets_life;
mod throttle;
mod throttle_cluster;
mod tls;
mod tokens;
mod trusted_proxies;
mod webhooks;
