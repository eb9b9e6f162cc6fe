//! What a delivery POSTs: the events as JSON, and the signature of those exact bytes.

use crate::store::HookEvent;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

/// The header carrying [`sign`]'s signature.
pub(crate) const SIGNATURE_HEADER: &str = "x-wsguard-signature";

#[derive(Serialize)]
struct Body<'a> {
    time_ms: i64,
    events: Vec<Event<'a>>,
}

#[derive(Serialize)]
struct Event<'a> {
    /// Increases in the order events happened; a duplicate (at least once) has the same id.
    id: i64,
    name: &'static str,
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    /// When it happened (`time_ms` above: when it was sent).
    time_ms: i64,
}

/// `{"time_ms": now_ms, "events": [{"id", "name", "channel", "user"?, "time_ms"}, …]}`.
pub(crate) fn render(events: &[HookEvent], now_ms: i64) -> Vec<u8> {
    let events = events
        .iter()
        .map(|event| Event {
            id: event.id,
            name: event.kind.name(),
            channel: &event.channel,
            user: event.user.as_deref(),
            time_ms: event.time_ms,
        })
        .collect();
    serde_json::to_vec(&Body { time_ms: now_ms, events }).expect("strings and numbers serialize")
}

/// Lowercase hex of HMAC-SHA256 of `body` keyed with `secret`.
pub(crate) fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::HookKind;

    #[test]
    fn the_signature_is_rfc_4231s_hmac_sha256() {
        // RFC 4231, test case 2.
        let signature = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(signature, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        // What an application computes in Python: hmac.new(secret, body, hashlib.sha256).hexdigest().
        let body = br#"{"time_ms":1,"events":[]}"#;
        assert_eq!(sign(&[0x0b; 32], body), sign(&[0x0b; 32], body));
        assert_ne!(sign(&[0x0b; 32], body), sign(&[0x0c; 32], body));
    }

    #[test]
    fn the_body_lists_events_in_order_with_a_user_for_presence_only() {
        let event = |id, kind, user: Option<&str>| HookEvent {
            id,
            kind,
            channel: "doc:1".to_owned(),
            user: user.map(str::to_owned),
            time_ms: 1_700_000_000_000 + id,
        };
        let events = [
            event(7, HookKind::ChannelOccupied, None),
            event(8, HookKind::PresenceJoin, Some("alice")),
            event(9, HookKind::PresenceLeave, Some("alice")),
            event(10, HookKind::ChannelVacated, None),
        ];
        let body = render(&events, 1_700_000_000_100);
        let expected = concat!(
            r#"{"time_ms":1700000000100,"events":["#,
            r#"{"id":7,"name":"channel_occupied","channel":"doc:1","time_ms":1700000000007},"#,
            r#"{"id":8,"name":"presence_join","channel":"doc:1","user":"alice","time_ms":1700000000008},"#,
            r#"{"id":9,"name":"presence_leave","channel":"doc:1","user":"alice","time_ms":1700000000009},"#,
            r#"{"id":10,"name":"channel_vacated","channel":"doc:1","time_ms":1700000000010}]}"#
        );
        assert_eq!(std::str::from_utf8(&body).unwrap(), expected);
    }
}
