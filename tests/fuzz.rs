//! Property tests standing in for fuzzing (cargo-fuzz needs nightly): the parsers an attacker
//! reaches first — token verification, the token transports, the chat's frames — on arbitrary and
//! mutated input. Case counts keep the whole file well under a minute in a debug build.

use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Request};
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::OnceLock;
use std::time::Duration;
use wsguard::auth::secret::HmacSecret;
use wsguard::auth::tokens::{Proof, TokenError, TokenKind, Tokens, MAX_TOKEN_BYTES};
use wsguard::auth::transport::{self, CookieKind, CookieRule, Csrf, Sources, Transport};
use wsguard::channels::protocol::{self, Command, MAX_ROOM_CHARS, MAX_TEXT_CHARS};

fn config(cases: u32) -> ProptestConfig {
    // No persistence file: a failure prints its minimal input, which is what a fix needs.
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

// --- tokens --------------------------------------------------------------------------------

struct Fixture {
    tokens: Tokens,
    secret: Vec<u8>,
    access: String,
    refresh: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let secret = b"a-fixed-hs256-secret-of-at-least-32-bytes".to_vec();
        let file = dir.path().join("secret");
        // Private, as wsguard requires of a secret file.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        std::io::Write::write_all(&mut options.open(&file).unwrap(), &secret).unwrap();
        let key = HmacSecret::load(Some(&file), dir.path()).unwrap();
        let tokens =
            Tokens::new(key, "wsguard".into(), None, Duration::from_secs(3600), Duration::from_secs(7200));
        let access = tokens.issue_access("johndoe", "fam", Proof::Password).token;
        let refresh = tokens.issue_refresh("johndoe", "fam").token;
        Fixture { tokens, secret, access, refresh }
    })
}

/// Neither kind accepts `token`.
fn refused(token: &str) -> bool {
    let t = &fixture().tokens;
    t.verify(token, TokenKind::Access).is_err() && t.verify(token, TokenKind::Refresh).is_err()
}

fn segments(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

/// HMAC-SHA2 over `header.payload` with the server's own secret: algorithm confusion by someone
/// who somehow got the key still needs the configured algorithm.
fn resign(alg: &str, signing_input: &str) -> String {
    use jsonwebtoken::{crypto, Algorithm, EncodingKey};
    let alg = match alg {
        "HS384" => Algorithm::HS384,
        _ => Algorithm::HS512,
    };
    crypto::sign(signing_input.as_bytes(), &EncodingKey::from_secret(&fixture().secret), alg).unwrap()
}

/// A mutation of a valid token, as an attacker holding it (but not the key) could make it.
#[derive(Debug, Clone)]
enum Mutation {
    FlipByte {
        index: usize,
        mask: u8,
    },
    Truncate {
        len: usize,
    },
    Append(String),
    SwapSegments {
        a: usize,
        b: usize,
    },
    DropSegment(usize),
    /// Decode a segment and encode it again another way (padding, standard alphabet).
    Reencode {
        segment: usize,
        how: u8,
    },
    /// Replace a header field: `alg`, `kid` or `typ`, keeping the signature.
    Header {
        field: &'static str,
        value: Value,
    },
    /// Change one claim of the payload, keeping the signature.
    Claim {
        field: &'static str,
        value: Value,
    },
    /// Sign with the right secret but another HMAC algorithm named in the header.
    Confuse(&'static str),
}

fn json_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let alg = prop_oneof![
        Just(json!("none")),
        Just(json!("None")),
        Just(json!("HS384")),
        Just(json!("HS512")),
        Just(json!("RS256")),
        Just(json!("ES256")),
        Just(json!("EdDSA")),
        Just(json!("PS256")),
        json_scalar(),
    ];
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(index, mask)| Mutation::FlipByte { index, mask }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        "[A-Za-z0-9_.=+/-]{1,8}".prop_map(Mutation::Append),
        (0..3usize, 0..3usize).prop_map(|(a, b)| Mutation::SwapSegments { a, b }),
        (0..3usize).prop_map(Mutation::DropSegment),
        (0..3usize, 0..3u8).prop_map(|(segment, how)| Mutation::Reencode { segment, how }),
        alg.prop_map(|value| Mutation::Header { field: "alg", value }),
        json_scalar().prop_map(|value| Mutation::Header { field: "kid", value }),
        json_scalar().prop_map(|value| Mutation::Header { field: "typ", value }),
        (
            prop::sample::select(vec!["sub", "exp", "nbf", "type", "fresh", "iss", "aud", "jti", "csrf"]),
            json_scalar()
        )
            .prop_map(|(field, value)| Mutation::Claim { field, value }),
        prop::sample::select(vec!["HS384", "HS512"]).prop_map(Mutation::Confuse),
    ]
}

/// `segment` with one field replaced (`null`: removed); `None` if it is not a JSON object.
fn edit_json_segment(segment: &str, field: &str, value: Value) -> Option<String> {
    let mut object: serde_json::Map<String, Value> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).ok()?).ok()?;
    if value.is_null() {
        object.remove(field);
    } else {
        object.insert(field.to_owned(), value);
    }
    Some(URL_SAFE_NO_PAD.encode(serde_json::to_vec(&object).unwrap()))
}

/// `token` mutated; `None` where the mutation does not apply (e.g. no header segment left).
fn apply(token: &str, mutation: &Mutation) -> Option<String> {
    let mut parts = segments(token);
    let bytes = token.as_bytes();
    let segment = |parts: &[String], i: usize| parts.get(i).cloned();
    Some(match mutation {
        Mutation::FlipByte { index, mask } => {
            let mut bytes = bytes.to_vec();
            let i = index % bytes.len().max(1);
            *bytes.get_mut(i)? ^= mask;
            // A flip that leaves UTF-8 is no string: lossy text still differs from the original.
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Mutation::Truncate { len } => {
            String::from_utf8_lossy(&bytes[..len % bytes.len().max(1)]).into_owned()
        }
        Mutation::Append(tail) => format!("{token}{tail}"),
        Mutation::SwapSegments { a, b } => {
            if *a.max(b) >= parts.len() {
                return None;
            }
            parts.swap(*a, *b);
            parts.join(".")
        }
        Mutation::DropSegment(i) => {
            if *i >= parts.len() {
                return None;
            }
            parts.remove(*i);
            parts.join(".")
        }
        Mutation::Reencode { segment: i, how } => {
            let raw = URL_SAFE_NO_PAD.decode(segment(&parts, *i)?).ok()?;
            parts[*i] = match how {
                0 => URL_SAFE.encode(&raw),
                1 => STANDARD.encode(&raw),
                _ => URL_SAFE_NO_PAD.encode([raw.as_slice(), b" "].concat()),
            };
            parts.join(".")
        }
        Mutation::Header { field, value } => {
            parts[0] = edit_json_segment(&parts[0], field, value.clone())?;
            parts.join(".")
        }
        Mutation::Claim { field, value } => {
            parts[1] = edit_json_segment(&segment(&parts, 1)?, field, value.clone())?;
            parts.join(".")
        }
        Mutation::Confuse(alg) => {
            let header = edit_json_segment(&parts[0], "alg", json!(alg))?;
            let signing_input = format!("{header}.{}", segment(&parts, 1)?);
            format!("{signing_input}.{}", resign(alg, &signing_input))
        }
    })
}

#[test]
fn valid_tokens_verify_with_their_kind() {
    let f = fixture();
    assert!(f.tokens.verify(&f.access, TokenKind::Access).is_ok());
    assert!(f.tokens.verify(&f.refresh, TokenKind::Refresh).is_ok());
    assert_eq!(f.tokens.verify(&f.access, TokenKind::Refresh), Err(TokenError::WrongKind));
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn arbitrary_strings_never_verify(s in ".{0,300}") {
        prop_assert!(refused(&s));
    }

    #[test]
    fn jwt_shaped_garbage_never_verifies(
        a in "[A-Za-z0-9_-]{0,80}", b in "[A-Za-z0-9_-]{0,200}", c in "[A-Za-z0-9_-]{0,60}"
    ) {
        let token = format!("{a}.{b}.{c}");
        prop_assert!(refused(&token));
    }

    #[test]
    fn base64_json_garbage_never_verifies(header in json_object(), payload in json_object(), sig in prop::collection::vec(any::<u8>(), 0..40)) {
        let token = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            URL_SAFE_NO_PAD.encode(sig),
        );
        prop_assert!(refused(&token));
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn mutated_tokens_never_verify_unless_unchanged(
        refresh in any::<bool>(),
        mutations in prop::collection::vec(mutation(), 1..4)
    ) {
        let f = fixture();
        let original = if refresh { &f.refresh } else { &f.access };
        let mut token = original.clone();
        for m in &mutations {
            if let Some(mutated) = apply(&token, m) {
                token = mutated;
            }
        }
        if token == *original {
            let kind = if refresh { TokenKind::Refresh } else { TokenKind::Access };
            prop_assert!(f.tokens.verify(&token, kind).is_ok());
        } else {
            prop_assert!(refused(&token), "mutated token verified: {token} ({mutations:?})");
        }
    }

    #[test]
    fn oversized_tokens_are_refused(extra in 1..64usize) {
        let f = fixture();
        let padded = format!("{}{}", f.access, " ".repeat(MAX_TOKEN_BYTES - f.access.len() + extra));
        prop_assert!(refused(&padded));
    }
}

fn json_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        prop::sample::select(vec!["alg", "kid", "typ", "sub", "exp", "nbf", "iss", "type", "fresh", "x"]),
        json_value(),
        0..8,
    )
    .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    json_scalar().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

// --- transports ----------------------------------------------------------------------------

const ALL: Sources = Sources { header: true, subprotocol: true, query: true, cookie: CookieRule::CsrfQuery };

/// Bytes a `HeaderValue` accepts: visible ASCII, space, tab and obs-text (0x80-0xff, not UTF-8).
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => 0x20..0x7fu8,
            1 => Just(b'\t'),
            1 => 0x80..=0xffu8,
            // The characters the parsers split on, often.
            2 => prop::sample::select(b" ,;=\"".to_vec()),
        ],
        0..120,
    )
}

/// A header value built from pieces the parsers look for, so that tokens are actually found.
fn structured_header() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"Bearer ".to_vec()),
        Just(b"bearer".to_vec()),
        Just(b"access_token_cookie=".to_vec()),
        Just(b"refresh_token_cookie=".to_vec()),
        Just(b"csrf_access_token=".to_vec()),
        Just(b", ".to_vec()),
        Just(b"; ".to_vec()),
        Just(b"\"".to_vec()),
        "[A-Za-z0-9._-]{0,12}".prop_map(String::into_bytes),
        header_bytes(),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

fn token_text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof!["[A-Za-z0-9._~+/=-]{0,40}".prop_map(String::into_bytes), header_bytes()]
}

/// Mostly well-formed `Bearer <token>`, so that the found path is exercised too.
fn authorization() -> impl Strategy<Value = Vec<u8>> {
    let scheme = prop::sample::select(vec!["Bearer ", "bearer  ", " BEARER ", "Basic ", "Bearer", ""]);
    prop_oneof![
        3 => (scheme, token_text()).prop_map(|(s, t)| [s.as_bytes(), &t].concat()),
        1 => structured_header(),
    ]
}

/// Mostly `name=value; ...` pairs with the cookies the transports read.
fn cookie_header() -> impl Strategy<Value = Vec<u8>> {
    let name = prop::sample::select(vec![
        "access_token_cookie",
        "refresh_token_cookie",
        "csrf_access_token",
        "other",
        " access_token_cookie ",
        "",
    ]);
    let pair = (name, prop::bool::ANY, token_text()).prop_map(|(n, quoted, v)| {
        let q: &[u8] = if quoted { b"\"" } else { b"" };
        [n.as_bytes(), b"=", q, &v, q].concat()
    });
    prop_oneof![
        3 => prop::collection::vec(pair, 0..4).prop_map(|pairs| pairs.join(&b"; "[..])),
        1 => structured_header(),
    ]
}

/// Mostly comma-separated subprotocols, with `bearer` among them.
fn protocol_header() -> impl Strategy<Value = Vec<u8>> {
    let item =
        prop_oneof![Just(b"bearer".to_vec()), Just(b"chat".to_vec()), Just(b"".to_vec()), token_text(),];
    prop_oneof![
        3 => prop::collection::vec(item, 0..4).prop_map(|items| items.join(&b", "[..])),
        1 => structured_header(),
    ]
}

/// A query string: valid URI characters, percent escapes (also of non-UTF-8 bytes), and the keys
/// the transports read.
fn query() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("token=".to_owned()),
        Just("csrf_token=".to_owned()),
        Just("&".to_owned()),
        "[A-Za-z0-9._~+=-]{0,10}",
        any::<u8>().prop_map(|b| format!("%{b:02X}")),
        Just("%".to_owned()),
    ];
    prop::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat())
}

fn sources() -> impl Strategy<Value = Sources> {
    let rule = prop::sample::select(vec![
        CookieRule::Off,
        CookieRule::NoCsrf,
        CookieRule::CsrfHeader,
        CookieRule::CsrfQuery,
    ]);
    (any::<bool>(), any::<bool>(), any::<bool>(), rule)
        .prop_map(|(header, subprotocol, query, cookie)| Sources { header, subprotocol, query, cookie })
}

fn request(headers: &[(&'static str, &Option<Vec<u8>>)], query: &str) -> Option<Parts> {
    let uri = if query.is_empty() { "/chat/ws".to_owned() } else { format!("/chat/ws?{query}") };
    let mut builder = Request::get(uri);
    for (name, value) in headers {
        if let Some(bytes) = value {
            // Some generated bytes (none here by construction) could be refused: skip, not fail.
            let value = HeaderValue::from_bytes(bytes).ok()?;
            builder = builder.header(HeaderName::from_static(name), value);
        }
    }
    builder.body(()).ok().map(|r| r.into_parts().0)
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn transports_never_panic_and_return_what_was_sent(
        authorization in prop::option::weighted(0.3, authorization()),
        cookie in prop::option::of(cookie_header()),
        protocol in prop::option::of(protocol_header()),
        csrf in prop::option::of(prop_oneof![token_text(), header_bytes()]),
        query in query(),
        sources in sources(),
        refresh in any::<bool>()
    ) {
        let headers = [
            ("authorization", &authorization),
            ("cookie", &cookie),
            ("sec-websocket-protocol", &protocol),
            ("x-csrf-token", &csrf),
        ];
        let Some(parts) = request(&headers, &query) else { return Ok(()) };
        let kind = if refresh { CookieKind::Refresh } else { CookieKind::Access };
        // What the server reads of a header: visible ASCII only (`HeaderValue::to_str`).
        let text = |v: &Option<Vec<u8>>| {
            v.as_deref().and_then(|b| HeaderValue::from_bytes(b).ok()?.to_str().ok().map(str::to_owned))
        };
        let decoded = transport::query_pairs(parts.uri.query());
        match transport::find(&parts, sources, kind) {
            Err(_) => prop_assert!(sources.header && authorization.is_some()),
            Ok(None) => {}
            Ok(Some(found)) => {
                prop_assert!(!found.token.is_empty());
                let (enabled, source) = match found.transport {
                    Transport::Header => (sources.header, text(&authorization)),
                    Transport::Subprotocol => (sources.subprotocol, text(&protocol)),
                    Transport::Cookie => (sources.cookie != CookieRule::Off, text(&cookie)),
                    Transport::Query => {
                        let sent = decoded.iter().any(|(k, v)| k == "token" && *v == found.token);
                        (sources.query && sent, Some(found.token.clone()))
                    }
                    Transport::Body | Transport::Frame => (false, None),
                };
                prop_assert!(enabled, "{:?} not enabled in {:?}", found.transport, sources);
                let source = source.unwrap_or_default();
                prop_assert!(source.contains(&found.token), "{:?} not in {:?}", found.token, source);
                if found.transport == Transport::Cookie {
                    let name = if refresh { "refresh_token_cookie" } else { "access_token_cookie" };
                    prop_assert!(source.contains(name));
                    match sources.cookie {
                        CookieRule::CsrfHeader => prop_assert_eq!(found.csrf.clone(), Csrf::needed(text(&csrf))),
                        CookieRule::CsrfQuery => {
                            let sent = decoded.iter().find(|(k, _)| k == "csrf_token").map(|(_, v)| v.clone());
                            prop_assert_eq!(found.csrf.clone(), Csrf::needed(sent.filter(|v| !v.is_empty())));
                        }
                        _ => prop_assert_eq!(found.csrf.clone(), Csrf::NotNeeded),
                    }
                } else {
                    prop_assert_eq!(found.csrf.clone(), Csrf::NotNeeded);
                }
            }
        }
    }

    #[test]
    fn bearer_headers_yield_their_token(token in "[A-Za-z0-9._~+/=-]{1,200}", scheme in prop::sample::select(vec!["Bearer", "bearer", "BEARER", "bEaReR"]), spaces in " {1,3}") {
        let value = Some(format!("{scheme}{spaces}{token}").into_bytes());
        let parts = request(&[("authorization", &value)], "").unwrap();
        let found = transport::find(&parts, ALL, CookieKind::Access).unwrap().unwrap();
        prop_assert_eq!(found.token, token);
        prop_assert_eq!(found.transport, Transport::Header);
    }
}

// --- chat frames ---------------------------------------------------------------------------

fn room() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9_.-]{1,64}", ".{0,70}"]
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn arbitrary_frames_never_panic(text in ".{0,200}") {
        let _ = protocol::parse(&text);
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value(), kind in prop::option::of(prop::sample::select(
        vec!["join", "leave", "send", "history", "ping", "auth", "refresh", "JOIN", ""],
    ))) {
        let mut value = value;
        if let (Some(kind), Value::Object(map)) = (kind, &mut value) {
            map.insert("type".into(), json!(kind));
        }
        match protocol::parse(&value.to_string()) {
            // Refusals carry a safe, bounded text, never the input echoed whole.
            Err(refusal) => {
                prop_assert!(refusal.detail.starts_with("invalid command"));
                prop_assert!(serde_json::from_str::<Value>(&refusal.frame()).is_ok());
            }
            Ok(command) => prop_assert!(value["type"].is_string(), "{command:?} from {value}"),
        }
    }

    #[test]
    fn valid_commands_keep_their_fields(
        room in room(), text in ".{0,100}", reference in prop::option::of(".{0,70}"),
        before in prop::option::of(any::<i64>()), limit in prop::option::of(any::<i64>()), which in 0..5u8,
    ) {
        let (frame, expected) = match which {
            0 => (json!({"type": "join", "room": room}), Command::Join { room: room.clone(), since: None }),
            1 => (json!({"type": "leave", "room": room}), Command::Leave { room: room.clone() }),
            2 => (
                json!({"type": "send", "room": room, "text": text, "ref": reference}),
                Command::Send { room: room.clone(), text: text.clone(), reference: reference.clone() },
            ),
            3 => (
                json!({"type": "history", "room": room, "before": before, "limit": limit}),
                Command::History { room: room.clone(), before, limit },
            ),
            _ => (json!({"type": "ping"}), Command::Ping),
        };
        prop_assert_eq!(protocol::parse(&frame.to_string()), Ok(expected));
    }

    #[test]
    fn room_check_is_the_documented_charset(room in room()) {
        let valid = (1..=MAX_ROOM_CHARS).contains(&room.len())
            && room.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        prop_assert_eq!(protocol::check_room(&room).is_ok(), valid);
    }

    #[test]
    fn text_check_counts_characters(text in ".{0,64}") {
        let n = text.chars().count();
        prop_assert_eq!(protocol::check_text(&text).is_ok(), (1..=MAX_TEXT_CHARS).contains(&n));
        let _ = protocol::check_ref(Some(&text));
    }
}

proptest! {
    #![proptest_config(config(200))]

    #[test]
    fn text_check_bounds_long_texts(text in prop::collection::vec(any::<char>(), 4090..4100)) {
        let text: String = text.into_iter().collect();
        let n = text.chars().count();
        prop_assert_eq!(protocol::check_text(&text).is_ok(), (1..=MAX_TEXT_CHARS).contains(&n));
        let _ = protocol::check_ref(Some(&text));
    }
}
