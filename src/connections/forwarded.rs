//! The client's address behind trusted reverse proxies (`--trusted-proxies`).
//!
//! Only a TCP peer inside a trusted network may name the client, in `Forwarded` (RFC 7239, its
//! `for=`) or `X-Forwarded-For`. Each proxy appends the address it saw, so the list is read from
//! the right: trusted proxies are skipped and the first address that is not one is the client.
//! What lies left of it was written by the client itself and is never read. Anything that cannot
//! be read with certainty gives the peer's own address, never an error: a header that does not
//! parse, a hop that is not an address (`unknown`, an obfuscated name), or both headers naming
//! different clients (a client may have sent the one its proxy leaves untouched).

use axum::http::{header, HeaderMap, HeaderName};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The networks whose peers may name the client.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub(crate) fn new(networks: &[IpNet]) -> TrustedProxies {
        TrustedProxies(networks.to_vec())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `address` is a trusted proxy's (an IPv4-mapped IPv6 address as its IPv4 one).
    pub(crate) fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|network| network.contains(&address))
    }

    pub(crate) fn list(&self) -> String {
        self.0.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }
}

/// The client's address for a request from `peer`: the peer's own, unless it is a trusted proxy
/// whose headers name the client with certainty.
pub(crate) fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    let forwarded = read(headers, &header::FORWARDED, forwarded_hops, trusted);
    let x_forwarded_for = read(headers, &X_FORWARDED_FOR, list_hops, trusted);
    match (forwarded, x_forwarded_for) {
        (Some(Named::Malformed), _) | (_, Some(Named::Malformed)) => peer,
        (Some(Named::Client(a)), Some(Named::Client(b))) if a != b => {
            disagreement(peer, a, b);
            peer
        }
        (Some(Named::Client(client)), _) | (_, Some(Named::Client(client))) => client,
        _ => peer,
    }
}

/// What one header says of the client.
#[derive(Debug, PartialEq, Eq)]
enum Named {
    Client(IpAddr),
    /// Every hop is a trusted proxy: the header names no client.
    NoClient,
    /// Not readable, or the first untrusted hop is not an address.
    Malformed,
}

/// What header `name` says, every line of it joined as one list (RFC 9110 §5.3); `None` when
/// the request has none.
fn read(
    headers: &HeaderMap,
    name: &HeaderName,
    hops: fn(&str) -> Option<Vec<Option<IpAddr>>>,
    trusted: &TrustedProxies,
) -> Option<Named> {
    let mut lines = headers.get_all(name).iter().peekable();
    lines.peek()?;
    let text: Option<Vec<&str>> = lines.map(|line| line.to_str().ok()).collect();
    Some(walk(text.and_then(|text| hops(&text.join(","))), trusted))
}

/// From the right: the first hop that is not a trusted proxy.
fn walk(hops: Option<Vec<Option<IpAddr>>>, trusted: &TrustedProxies) -> Named {
    let Some(hops) = hops.filter(|hops| !hops.is_empty()) else { return Named::Malformed };
    for hop in hops.into_iter().rev() {
        match hop {
            Some(address) if trusted.contains(address) => continue,
            Some(address) => return Named::Client(address.to_canonical()),
            None => return Named::Malformed,
        }
    }
    Named::NoClient
}

/// `X-Forwarded-For`: addresses separated by commas; empty elements skipped.
fn list_hops(value: &str) -> Option<Vec<Option<IpAddr>>> {
    Some(value.split(',').map(trim).filter(|hop| !hop.is_empty()).map(node).collect())
}

/// `Forwarded`: elements separated by commas, pairs by semicolons, values tokens or quoted
/// strings. An element without `for` is a hop of unknown address; empty elements are skipped.
/// `None` when it does not parse.
fn forwarded_hops(value: &str) -> Option<Vec<Option<IpAddr>>> {
    let mut rest = value;
    let mut hops = Vec::new();
    loop {
        let (mut node_for, mut pairs) = (None, 0);
        loop {
            rest = trim(rest);
            if !rest.is_empty() && !rest.starts_with([',', ';']) {
                let (name, value, after) = pair(rest)?;
                if name.eq_ignore_ascii_case("for") {
                    // Each parameter at most once per element (RFC 7239 §4).
                    if node_for.replace(node(&value)).is_some() {
                        return None;
                    }
                }
                pairs += 1;
                rest = trim(after);
            }
            match rest.strip_prefix(';') {
                Some(after) => rest = after,
                None => break,
            }
        }
        if pairs > 0 {
            hops.push(node_for.flatten());
        }
        match rest.strip_prefix(',') {
            Some(after) => rest = after,
            None if rest.is_empty() => return Some(hops),
            None => return None,
        }
    }
}

/// `name=value` at the start of `text`: the name, the value (unquoted) and what follows.
fn pair(text: &str) -> Option<(&str, String, &str)> {
    let name_end = text.find(|c: char| !is_tchar(c)).unwrap_or(text.len());
    let (name, after) = text.split_at(name_end);
    let after = after.strip_prefix('=').filter(|_| !name.is_empty())?;
    if let Some(quoted) = after.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => return Some((name, value, &quoted[at + 1..])),
                '\\' => value.push(chars.next()?.1),
                c => value.push(c),
            }
        }
        return None;
    }
    // Unquoted: a token by the RFC; addresses with `:` or `[` are taken too, as proxies write them.
    let end = after.find([',', ';', ' ', '\t', '"']).unwrap_or(after.len());
    let value = &after[..end];
    (!value.is_empty()).then(|| (name, value.to_owned(), &after[end..]))
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn trim(text: &str) -> &str {
    text.trim_matches([' ', '\t'])
}

/// A hop's address: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:4711`; anything else (`unknown`, `_hidden`, a name) is `None`.
fn node(text: &str) -> Option<IpAddr> {
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(address);
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    text.strip_prefix('[')?.strip_suffix(']')?.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

/// Unix seconds of the last warning about disagreeing headers: one a minute at most.
static LAST_WARNED: AtomicU64 = AtomicU64::new(0);

fn disagreement(peer: IpAddr, forwarded: IpAddr, x_forwarded_for: IpAddr) {
    let now = crate::clock::now_secs().max(0) as u64;
    let last = LAST_WARNED.load(Ordering::Relaxed);
    if now >= last + 60
        && LAST_WARNED.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    {
        tracing::warn!(
            %peer, %forwarded, %x_forwarded_for,
            "a trusted proxy's Forwarded and X-Forwarded-For name different clients; the proxy's address is used: \
             make every proxy set X-Forwarded-For and drop the client's Forwarded (see deploy/nginx.conf)"
        );
    }
}

#[cfg(test)]
mod tests;
