//! The client's address, the one place every part of wsguard reads it from: the login throttle,
//! the logs, the connect proxy. Each request is given it where its connection is served
//! ([`super::serve`]): the TCP peer's address, or behind a trusted proxy the client that proxy
//! names (see [`super::forwarded`]), which the per-address cap counted too.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};

/// The address of the client a request comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientAddr(pub(crate) IpAddr);

impl ClientAddr {
    /// The client of a request taken apart.
    pub(crate) fn of(parts: &Parts) -> ClientAddr {
        // Only a service run without `serve` (a unit test's) lacks it: every client is then one.
        parts.extensions.get::<ClientAddr>().copied().unwrap_or(ClientAddr(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(ClientAddr::of(parts))
    }
}

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
