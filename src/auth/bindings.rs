//! Which live sockets are bound to which token and login, by user: enforces the per-user cap,
//! lets a revocation reach the sockets bound to what it revokes, and lists this node's sockets for
//! the admin console ([`SocketBindings::roster`]).

use super::tokens::Claims;
use crate::store::{Revocation, RevocationKind};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// A socket's mailbox for a revocation from outside its task: a flag and a wake-up, nothing queued.
#[derive(Default)]
pub(crate) struct SocketSignal {
    revoked: AtomicBool,
    notify: Notify,
}

impl SocketSignal {
    fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    pub(crate) fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// Waits until the socket's token or login is revoked.
    pub(crate) async fn revoked(&self) {
        while !self.revoked.load(Ordering::Acquire) {
            self.notify.notified().await;
        }
    }
}

struct Entry {
    jti: TokenId,
    /// Empty for a trusted issuer's token: it belongs to no login.
    family: TokenId,
    /// The earliest the token can have been issued ([`Claims::earliest_issue`]), for user
    /// revocations.
    issued_at: i64,
    /// When the socket was bound (Unix milliseconds), for disconnections.
    bound_at_ms: i64,
    signal: Arc<SocketSignal>,
    meta: SocketMeta,
}

/// A token's or a login's id as every socket keeps it: wsguard's own (a UUID, written the one way
/// wsguard writes them) in 16 bytes on the spot, any other (a trusted issuer's `jti`) as its text.
#[derive(Debug, PartialEq, Eq)]
enum TokenId {
    Uuid(uuid::Uuid),
    Text(Box<str>),
}

impl TokenId {
    fn of(text: &str) -> TokenId {
        match uuid::Uuid::try_parse(text) {
            Ok(id) if id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()) == text => {
                TokenId::Uuid(id)
            }
            _ => TokenId::Text(text.into()),
        }
    }

    /// Whether this is the id `text` says: the same text, exactly.
    fn is(&self, text: &str) -> bool {
        match self {
            TokenId::Uuid(id) => {
                text.len() == 36 && id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()) == text
            }
            TokenId::Text(own) => **own == *text,
        }
    }
}

/// How a socket connected, for the admin console, in 8 bytes (every socket keeps it): its
/// endpoint and where its credential came from as places in [`ENDPOINTS`] and [`TRANSPORTS`], and
/// when (Unix seconds).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SocketMeta {
    endpoint: u8,
    transport: u8,
    connected_at: u32,
}

/// The endpoints a socket is listed by: one of the routes, never the client's text.
const ENDPOINTS: [&str; 13] = [
    "other",
    "/secured-ws",
    "/ws",
    "/ws/optional",
    "/ws/refresh",
    "/ws/fresh",
    "/chat/ws",
    "/connect",
    "/chat/ws/stream",
    "/connect/stream",
    "/connection/websocket",
    "/connection/http_stream",
    "/connection/sse",
];

/// Where a socket's credential came from (`auth::transport::Transport::label`), or the connect proxy.
const TRANSPORTS: [&str; 8] =
    ["other", "header", "query", "cookie", "subprotocol", "body", "frame", "connect proxy"];

/// `label`'s place in `table`; 0 (`other`) for one not there.
fn place(table: &[&str], label: &str) -> u8 {
    table.iter().position(|known| *known == label).unwrap_or(0) as u8
}

/// The known endpoint `path` is, as a static label: `other` for any other path.
pub(crate) fn endpoint_named(path: &str) -> &'static str {
    ENDPOINTS[usize::from(place(&ENDPOINTS, path))]
}

impl SocketMeta {
    /// A socket of `endpoint` (a request's path) whose credential came by `transport`, connected at
    /// `connected_at`.
    pub(crate) fn new(endpoint: &str, transport: &str, connected_at: i64) -> SocketMeta {
        SocketMeta {
            endpoint: place(&ENDPOINTS, endpoint),
            transport: place(&TRANSPORTS, transport),
            connected_at: connected_at.clamp(0, u32::MAX.into()) as u32,
        }
    }

    pub(crate) fn endpoint(self) -> &'static str {
        ENDPOINTS[usize::from(self.endpoint)]
    }

    pub(crate) fn transport(self) -> &'static str {
        TRANSPORTS[usize::from(self.transport)]
    }

    pub(crate) fn connected_at(self) -> i64 {
        self.connected_at.into()
    }
}

/// This node's sockets as the admin console lists them.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Roster {
    pub(crate) sockets: usize,
    pub(crate) users: usize,
    /// The first sockets, by user then connection time.
    pub(crate) listed: Vec<SocketInfo>,
}

/// One socket of this node as the admin console lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SocketInfo {
    pub(crate) user: String,
    pub(crate) endpoint: &'static str,
    pub(crate) transport: &'static str,
    pub(crate) connected_at: i64,
}

#[derive(Default)]
pub(crate) struct SocketBindings {
    /// By user, each socket under its id: a socket leaves in constant time, however many its
    /// user holds.
    by_user: Mutex<HashMap<String, HashMap<u64, Entry>>>,
    next_id: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
#[error("too many sockets for this user")]
pub(crate) struct TooMany;

/// A socket's place among the bindings; dropping it removes the socket.
pub(crate) struct Binding {
    bindings: Arc<SocketBindings>,
    user: String,
    id: u64,
    pub(crate) signal: Arc<SocketSignal>,
}

impl SocketBindings {
    /// Adds a socket bound to the token of `claims` (its user is `sub`), unless the user already
    /// holds `max` sockets.
    pub(crate) fn register(
        self: &Arc<Self>,
        claims: &Claims,
        max: usize,
        meta: SocketMeta,
    ) -> Result<Binding, TooMany> {
        let mut by_user = self.by_user.lock().expect("socket bindings lock poisoned");
        let entries = by_user.entry(claims.sub.clone()).or_default();
        if entries.len() >= max {
            return Err(TooMany);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let signal = Arc::new(SocketSignal::default());
        entries.insert(
            id,
            Entry {
                jti: TokenId::of(&claims.jti),
                family: TokenId::of(&claims.fam),
                issued_at: claims.earliest_issue(),
                bound_at_ms: crate::clock::now_ms(),
                signal: signal.clone(),
                meta,
            },
        );
        Ok(Binding { bindings: self.clone(), user: claims.sub.clone(), id, signal })
    }

    /// How many sockets and users are bound, and the first `limit` sockets by user, then by
    /// connection time.
    pub(crate) fn roster(&self, limit: usize) -> Roster {
        let by_user = self.by_user.lock().expect("socket bindings lock poisoned");
        let total = by_user.values().map(HashMap::len).sum();
        let mut users: Vec<&String> = by_user.keys().collect();
        users.sort_unstable();
        let mut listed = Vec::with_capacity(limit.min(total));
        for user in users {
            let mut sockets: Vec<SocketMeta> = by_user[user].values().map(|entry| entry.meta).collect();
            sockets.sort_by_key(|meta| meta.connected_at);
            for meta in sockets.into_iter().take(limit - listed.len()) {
                listed.push(SocketInfo {
                    user: user.clone(),
                    endpoint: meta.endpoint(),
                    transport: meta.transport(),
                    connected_at: meta.connected_at(),
                });
            }
            if listed.len() == limit {
                break;
            }
        }
        Roster { sockets: total, users: by_user.len(), listed }
    }

    /// Signals every socket bound to what `revocation` revokes.
    pub(crate) fn revoke(&self, revocation: &Revocation) -> usize {
        let by_user = self.by_user.lock().expect("socket bindings lock poisoned");
        let Some(entries) = by_user.get(&revocation.username) else {
            return 0;
        };
        let mut hit = 0;
        for entry in entries.values() {
            let bound = match revocation.kind {
                RevocationKind::Token => entry.jti.is(&revocation.subject),
                RevocationKind::Family => {
                    !revocation.subject.is_empty() && entry.family.is(&revocation.subject)
                }
                RevocationKind::User { issued_before } => entry.issued_at < issued_before,
                RevocationKind::Disconnect { at_ms } => entry.bound_at_ms <= at_ms,
            };
            if bound {
                entry.signal.revoke();
                hit += 1;
            }
        }
        hit
    }
}

impl Binding {
    /// Binds the socket to a new token of the same user (after an in-band refresh).
    pub(crate) fn rebind(&self, claims: &Claims) {
        let mut by_user = self.bindings.by_user.lock().expect("socket bindings lock poisoned");
        if let Some(entry) = by_user.get_mut(&self.user).and_then(|entries| entries.get_mut(&self.id)) {
            entry.jti = TokenId::of(&claims.jti);
            entry.family = TokenId::of(&claims.fam);
            entry.issued_at = claims.earliest_issue();
        }
    }
}

impl Drop for Binding {
    fn drop(&mut self) {
        let mut by_user = self.bindings.by_user.lock().expect("socket bindings lock poisoned");
        if let Some(entries) = by_user.get_mut(&self.user) {
            entries.remove(&self.id);
            if entries.is_empty() {
                by_user.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
impl SocketMeta {
    pub(crate) const TEST: SocketMeta = SocketMeta { endpoint: 7, transport: 1, connected_at: 0 };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(endpoint: &'static str, connected_at: i64) -> SocketMeta {
        SocketMeta::new(endpoint, "query", connected_at)
    }

    #[test]
    fn token_ids_match_their_exact_text_only() {
        let own = "5f1c0e0e-8f3a-4c1b-9a7e-2d4f6b8c0a12";
        assert!(matches!(TokenId::of(own), TokenId::Uuid(_)), "wsguard's: 16 bytes");
        assert!(TokenId::of(own).is(own));
        assert!(!TokenId::of(own).is(&own.to_uppercase()), "another text of the same UUID is another id");
        assert!(!TokenId::of(own).is("5f1c0e0e8f3a4c1b9a7e2d4f6b8c0a12"));
        let upper = own.to_uppercase();
        assert!(matches!(TokenId::of(&upper), TokenId::Text(_)));
        assert!(TokenId::of(&upper).is(&upper) && !TokenId::of(&upper).is(own));
        assert!(TokenId::of("abc").is("abc") && !TokenId::of("abc").is("abd"));
        assert!(TokenId::of("").is(""));
        assert_eq!(std::mem::size_of::<TokenId>(), 24, "no bigger than the String it replaces");
    }

    #[test]
    fn a_sockets_labels_are_the_known_ones() {
        let meta = SocketMeta::new("/connection/sse", "connect proxy", 1_790_000_000);
        assert_eq!(
            (meta.endpoint(), meta.transport(), meta.connected_at()),
            ("/connection/sse", "connect proxy", 1_790_000_000)
        );
        assert_eq!(SocketMeta::TEST.endpoint(), "/connect");
        let unknown = SocketMeta::new("/../etc", "carrier pigeon", -5);
        assert_eq!((unknown.endpoint(), unknown.transport(), unknown.connected_at()), ("other", "other", 0));
        assert_eq!(std::mem::size_of::<SocketMeta>(), 8, "a word, not five");
    }

    #[test]
    fn the_roster_lists_sockets_by_user_then_age_up_to_the_limit() {
        let bindings = Arc::new(SocketBindings::default());
        let (bob, alice) = (Claims::test("bob", 0), Claims::test("alice", 0));
        let held = [
            bindings.register(&bob, 8, meta("/connect", 30)).unwrap(),
            bindings.register(&alice, 8, meta("/ws", 20)).unwrap(),
            bindings.register(&bob, 8, meta("/chat/ws", 10)).unwrap(),
        ];
        let roster = bindings.roster(10);
        assert_eq!((roster.sockets, roster.users), (3, 2));
        let seen: Vec<(&str, &str, i64)> =
            roster.listed.iter().map(|s| (s.user.as_str(), s.endpoint, s.connected_at)).collect();
        assert_eq!(seen, [("alice", "/ws", 20), ("bob", "/chat/ws", 10), ("bob", "/connect", 30)]);
        assert_eq!(bindings.roster(2).listed.len(), 2, "cut at the limit");
        assert_eq!(bindings.roster(0), Roster { sockets: 3, users: 2, listed: vec![] });
        drop(held);
        let empty = Roster { sockets: 0, users: 0, listed: vec![] };
        assert_eq!(bindings.roster(10), empty, "a socket leaves the roster as it closes");
    }
}
