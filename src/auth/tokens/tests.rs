use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::EncodingKey;

fn tokens() -> Tokens {
    let dir = tempfile::tempdir().unwrap();
    let secret = HmacSecret::load(None, dir.path()).unwrap();
    Tokens::new(secret, "wsguard".into(), None, Duration::from_secs(60), Duration::from_secs(600))
}

#[test]
fn issued_tokens_verify_with_their_kind_only() {
    let t = tokens();
    let access = t.issue_access("johndoe", "fam", Proof::Password);
    let claims = t.verify(&access.token, TokenKind::Access).unwrap();
    assert_eq!(claims, access.claims);
    assert!(claims.fresh);
    assert_eq!(t.verify(&access.token, TokenKind::Refresh), Err(TokenError::WrongKind));
    let refresh = t.issue_refresh("johndoe", "fam");
    assert!(!refresh.claims.fresh, "refresh tokens are never fresh");
}

#[test]
fn alg_none_and_tampering_are_refused() {
    let t = tokens();
    let issued = t.issue_access("johndoe", "fam", Proof::RefreshToken);
    let parts: Vec<&str> = issued.token.split('.').collect();
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let unsigned = format!("{none_header}.{}.", parts[1]);
    assert_eq!(t.verify(&unsigned, TokenKind::Access), Err(TokenError::Malformed));

    let mut claims = issued.claims.clone();
    claims.sub = "admin".into();
    let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert_eq!(t.verify(&forged, TokenKind::Access), Err(TokenError::BadSignature));

    let hs512 = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS512","typ":"JWT"}"#);
    let confused = format!("{hs512}.{}.{}", parts[1], parts[2]);
    assert_eq!(t.verify(&confused, TokenKind::Access), Err(TokenError::BadSignature));
}

#[test]
fn other_keys_and_garbage_are_refused() {
    let a = tokens();
    let b = tokens();
    let issued = a.issue_access("johndoe", "fam", Proof::RefreshToken);
    assert_eq!(b.verify(&issued.token, TokenKind::Access), Err(TokenError::BadSignature));
    for garbage in ["", "abc", "a.b.c", "....", &"x".repeat(MAX_TOKEN_BYTES + 1)] {
        assert_eq!(a.verify(garbage, TokenKind::Access), Err(TokenError::Malformed));
    }
}

#[test]
fn a_configured_audience_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let secret = HmacSecret::load(None, dir.path()).unwrap();
    let t = Tokens::new(
        secret,
        "wsguard".into(),
        Some("api".into()),
        Duration::from_secs(60),
        Duration::from_secs(600),
    );
    let issued = t.issue_access("johndoe", "fam", Proof::Password);
    assert_eq!(t.verify(&issued.token, TokenKind::Access).unwrap().aud.as_deref(), Some("api"));
    let Signer::Hmac(secret) = &t.signer else { unreachable!() };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(secret.kid.clone());
    for aud in [None, Some("other")] {
        let mut claims = issued.claims.clone();
        claims.aud = aud.map(str::to_owned);
        let token = jsonwebtoken::encode(&header, &claims, &secret.encoding).unwrap();
        assert_eq!(t.verify(&token, TokenKind::Access), Err(TokenError::WrongAudience), "{aud:?}");
    }
}

#[test]
fn expired_tokens_are_refused() {
    let t = tokens();
    let mut claims = t.issue_access("johndoe", "fam", Proof::RefreshToken).claims;
    claims.exp = now() - 60;
    claims.iat = now() - 120;
    claims.nbf = claims.iat;
    let Signer::Hmac(secret) = &t.signer else { unreachable!() };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(secret.kid.clone());
    let token = jsonwebtoken::encode(&header, &claims, &secret.encoding).unwrap();
    assert_eq!(t.verify(&token, TokenKind::Access), Err(TokenError::Expired));
}

fn ring_tokens(dir: &std::path::Path, alg: Algorithm) -> Tokens {
    let ring = KeyRing::open(dir, alg, Duration::from_secs(600)).unwrap();
    Tokens::new(ring, "wsguard".into(), None, Duration::from_secs(60), Duration::from_secs(600))
}

#[test]
fn asymmetric_tokens_need_their_algorithm_and_a_known_kid() {
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let dir = tempfile::tempdir().unwrap();
        let t = ring_tokens(dir.path(), alg);
        let issued = t.issue_access("johndoe", "fam", Proof::RefreshToken);
        assert_eq!(t.verify(&issued.token, TokenKind::Access).unwrap(), issued.claims);
        let kid = t.ring().unwrap().current().kid.clone();

        // HS256 keyed with the public key (the JWK, its JSON text): algorithm confusion.
        let jwk = t.jwks()["keys"][0].clone();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        for secret in [jwk.to_string(), jwk["x"].as_str().or(jwk["n"].as_str()).unwrap().to_owned()] {
            let confused =
                jsonwebtoken::encode(&header, &issued.claims, &EncodingKey::from_secret(secret.as_bytes()))
                    .unwrap();
            assert_eq!(t.verify(&confused, TokenKind::Access), Err(TokenError::BadSignature));
        }

        // Another ring's key: unknown kid, and under a known kid.
        let other_dir = tempfile::tempdir().unwrap();
        let other = ring_tokens(other_dir.path(), alg);
        let foreign = other.issue_access("johndoe", "fam", Proof::RefreshToken);
        assert_eq!(t.verify(&foreign.token, TokenKind::Access), Err(TokenError::BadSignature));
        let mut header = Header::new(alg);
        header.kid = Some(kid.clone());
        let stolen_kid =
            jsonwebtoken::encode(&header, &issued.claims, &other.ring().unwrap().current().encoding).unwrap();
        assert_eq!(t.verify(&stolen_kid, TokenKind::Access), Err(TokenError::BadSignature));
        // No kid at all.
        let no_kid =
            jsonwebtoken::encode(&Header::new(alg), &issued.claims, &t.ring().unwrap().current().encoding)
                .unwrap();
        assert_eq!(t.verify(&no_kid, TokenKind::Access), Err(TokenError::BadSignature));
    }
}

#[test]
fn an_hs256_server_refuses_asymmetric_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let issued = ring_tokens(dir.path(), Algorithm::ES256).issue_access("johndoe", "f", Proof::RefreshToken);
    assert_eq!(tokens().verify(&issued.token, TokenKind::Access), Err(TokenError::BadSignature));
}

#[test]
fn a_subscription_token_signed_with_wsguards_key_verifies_and_an_access_token_grants_no_channel() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = Tokens::new(
        HmacSecret::load(None, dir.path()).unwrap(),
        "wsguard".into(),
        None,
        Duration::from_secs(60),
        Duration::from_secs(600),
    );
    // The same secret file, read again: what an application sharing it signs with.
    let secret = HmacSecret::load(None, dir.path()).unwrap();
    let now = crate::clock::now_secs();
    let claims =
        serde_json::json!({"iss": tokens.issuer(), "sub": "alice", "channel": "doc:1", "exp": now + 60});
    let header = Header { kid: Some(secret.kid.clone()), ..Header::new(Algorithm::HS256) };
    let token = jsonwebtoken::encode(&header, &claims, &secret.encoding).unwrap();
    let payload = tokens.verify_payload(&token).unwrap();
    assert_eq!(payload["channel"], "doc:1");
    let foreign =
        serde_json::json!({"iss": "someone-else", "sub": "alice", "channel": "doc:1", "exp": now + 60});
    let token = jsonwebtoken::encode(&header, &foreign, &secret.encoding).unwrap();
    assert_eq!(tokens.verify_payload(&token), Err(TokenError::WrongAudience));
    // A subscription token is no access token: it has no `type`.
    let token = jsonwebtoken::encode(&header, &claims, &secret.encoding).unwrap();
    assert!(tokens.verify(&token, TokenKind::Access).is_err());
    // An access token verifies as a payload, but names no channel (refused in `auth::subscription`).
    let access = tokens.issue_access("alice", "fam", Proof::Password).token;
    assert!(tokens.verify_payload(&access).unwrap().get("channel").is_none());
}
