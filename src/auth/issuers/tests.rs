use super::*;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;
use std::io::Write;

const SECRET: &[u8] = b"a8f3c29e71d04b6a95e2f0c7d81b3a6e";

fn settings(issuer: Option<&str>, secret_file: &Path) -> IssuerSettings {
    IssuerSettings {
        issuer: issuer.map(str::to_owned),
        jwks_url: None,
        secret_file: Some(secret_file.to_owned()),
        audience: None,
        username_claim: "sub".into(),
        max_token_lifetime: Duration::from_secs(3600),
    }
}

/// A secret file as an operator makes it (0600), in a folder that lives as long as the test.
fn secret_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("app.secret");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(&path).unwrap().write_all(SECRET).unwrap();
    path
}

fn sign(claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::default(), claims, &EncodingKey::from_secret(SECRET)).unwrap()
}

fn issuer(settings: &IssuerSettings) -> TrustedIssuer {
    TrustedIssuer::load(settings).unwrap()
}

async fn verify(issuer: &TrustedIssuer, claims: serde_json::Value) -> Result<Claims, TokenError> {
    issuer.verify(&sign(&claims)).await.map_err(token_error)
}

/// The refusal of a token, which an HS256 issuer always has a verdict on.
fn token_error(err: AuthError) -> TokenError {
    match err {
        AuthError::Token(err) => err,
        other => panic!("not a refusal of the token: {other}"),
    }
}

#[test]
fn tokens_are_routed_by_their_unverified_iss() {
    let dir = tempfile::tempdir().unwrap();
    let file = secret_file(&dir);
    let issuers =
        TrustedIssuers::load(&[settings(Some("https://id.example/"), &file), settings(None, &file)]).unwrap();
    let exp = crate::clock::now_secs() + 60;
    let route = |claims: serde_json::Value| issuers.select(&sign(&claims), "wsguard").map(|i| i.label());
    assert_eq!(route(json!({"iss": "https://id.example/", "exp": exp})), Some("https://id.example/"));
    assert_eq!(route(json!({"sub": "bob", "exp": exp})), Some("(no iss)"));
    assert_eq!(route(json!({"iss": "wsguard", "exp": exp})), None, "wsguard's own path");
    assert_eq!(route(json!({"iss": "https://id.example", "exp": exp})), None, "exactly equal only");
    assert_eq!(route(json!({"iss": "", "exp": exp})), None, "an empty iss is not a missing one");
    assert_eq!(route(json!({"iss": 7, "exp": exp})), None);
    for garbage in ["", "a.b.c", "x", &"a.".repeat(3000)] {
        assert!(issuers.select(garbage, "wsguard").is_none(), "{garbage}");
    }
    assert!(TrustedIssuers::default().select(&sign(&json!({"exp": exp})), "wsguard").is_none());
}

#[tokio::test]
async fn a_fastapi_tutorial_token_is_read_as_an_access_token_of_no_login() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(&settings(None, &secret_file(&dir)));
    let exp = crate::clock::now_secs() + 600;
    let token = sign(&json!({"sub": "bob", "exp": exp}));
    let claims = issuer.verify(&token).await.unwrap();
    assert_eq!((claims.sub.as_str(), claims.exp, claims.iat), ("bob", exp, 0));
    assert_eq!((claims.kind, claims.fresh, claims.fam.as_str()), (TokenKind::Access, false, ""));
    assert_eq!(claims.jti, issuer.verify(&token).await.unwrap().jti, "an id derived from the token");
    assert_eq!(claims.jti.len(), 32);
    let claims =
        verify(&issuer, json!({"sub": "bob", "exp": exp, "iat": exp - 600, "jti": "j1", "csrf": "c"})).await;
    let claims = claims.unwrap();
    assert_eq!((claims.iat, claims.jti.as_str(), claims.csrf.as_str()), (exp - 600, "j1", "c"));
}

#[tokio::test]
async fn bad_tokens_are_refused_like_wsguards_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = settings(Some("https://id.example/"), &secret_file(&dir));
    config.audience = Some("wsguard".into());
    let issuer = issuer(&config);
    let now = crate::clock::now_secs();
    let good = json!({"iss": "https://id.example/", "aud": "wsguard", "sub": "bob", "exp": now + 60});
    assert!(verify(&issuer, good.clone()).await.is_ok());
    let with = |key: &str, value: serde_json::Value| {
        let mut claims = good.clone();
        claims[key] = value;
        claims
    };
    let without = |key: &str| {
        let mut claims = good.clone();
        claims.as_object_mut().unwrap().remove(key);
        claims
    };
    for (claims, expected) in [
        (with("exp", json!(now - 60)), TokenError::Expired),
        (without("exp"), TokenError::Malformed),
        (with("nbf", json!(now + 60)), TokenError::Immature),
        (with("iat", json!(now + 60)), TokenError::Immature),
        (with("aud", json!("other")), TokenError::WrongAudience),
        (without("aud"), TokenError::WrongAudience),
        (with("iss", json!("https://other.example/")), TokenError::WrongAudience),
        (without("sub"), TokenError::Malformed),
        (with("sub", json!(42)), TokenError::Malformed),
        (with("sub", json!("bob smith")), TokenError::Malformed),
        (with("sub", json!("a".repeat(65))), TokenError::Malformed),
        (with("jti", json!(["x"])), TokenError::Malformed),
        // Lifetime over an hour: from `iat`, or from now without one.
        (with("exp", json!(now + 3700)), TokenError::Malformed),
        (with("iat", json!(now - 3650)), TokenError::Malformed),
    ] {
        assert_eq!(verify(&issuer, claims.clone()).await.unwrap_err(), expected, "{claims}");
    }
    // An hour from `iat` is fine.
    assert!(verify(&issuer, with("iat", json!(now - 3000))).await.is_ok());

    let token = sign(&good);
    let other_secret = EncodingKey::from_secret(b"another-secret-of-32-bytes-or-more!!");
    let forged = jsonwebtoken::encode(&Header::default(), &good, &other_secret).unwrap();
    assert_eq!(token_error(issuer.verify(&forged).await.unwrap_err()), TokenError::BadSignature);
    let hs512 =
        jsonwebtoken::encode(&Header::new(Algorithm::HS512), &good, &EncodingKey::from_secret(SECRET))
            .unwrap();
    assert_eq!(token_error(issuer.verify(&hs512).await.unwrap_err()), TokenError::BadSignature);
    // `alg: none`, unsigned.
    let b64 = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&good));
    assert!(issuer.verify(&none).await.is_err());
    let (head, _) = token.rsplit_once('.').unwrap();
    assert!(issuer.verify(&format!("{head}.")).await.is_err(), "signature stripped");
}

#[tokio::test]
async fn the_username_comes_from_the_configured_claim() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = settings(None, &secret_file(&dir));
    config.username_claim = "preferred_username".into();
    let issuer = issuer(&config);
    let exp = crate::clock::now_secs() + 60;
    let claims = verify(&issuer, json!({"sub": "0e4c-uuid", "preferred_username": "bob", "exp": exp})).await;
    assert_eq!(claims.unwrap().sub, "bob");
    let missing = verify(&issuer, json!({"sub": "bob", "exp": exp})).await;
    assert_eq!(missing.unwrap_err(), TokenError::Malformed);
}

#[test]
fn secret_files_are_checked_like_wsguards_own() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(&short).unwrap().write_all(b"too-short").unwrap();
    let err = TrustedIssuer::load(&settings(None, &short)).err().expect("refused");
    assert!(format!("{err:#}").contains("at least 32 bytes"), "{err:#}");
    assert!(format!("{err:#}").contains("trusted_issuers: (no iss)"), "{err:#}");
    let missing = TrustedIssuer::load(&settings(Some("x"), &dir.path().join("none"))).err().expect("refused");
    assert!(format!("{missing:#}").contains("no such file"), "{missing:#}");
}

/// A JWKS issuer holding one 2048-bit RSA key (kid `k1`), and the key that signs its tokens.
fn rs256_issuer(audience: Option<&str>) -> (TrustedIssuer, EncodingKey) {
    use base64::Engine;
    use rsa::pkcs8::EncodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let pem = key.to_pkcs8_pem(Default::default()).unwrap();
    let b64 = |bytes: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let jwk =
        json!({"kty": "RSA", "kid": "k1", "n": b64(key.n().to_bytes_be()), "e": b64(key.e().to_bytes_be())});
    let settings = IssuerSettings {
        issuer: Some("https://id.example/".into()),
        jwks_url: Some("http://127.0.0.1:9/jwks.json".into()),
        secret_file: None,
        audience: audience.map(str::to_owned),
        username_claim: "sub".into(),
        max_token_lifetime: Duration::from_secs(3600),
    };
    let issuer = issuer(&settings);
    let Keys::Published(jwks) = &issuer.keys else { unreachable!("a JWKS issuer") };
    jwks.install(keyset::KeySet::parse(json!({ "keys": [jwk] }).to_string().as_bytes()).unwrap());
    (issuer, EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap())
}

#[tokio::test]
async fn rs256_tokens_of_published_keys_get_every_check() {
    let (issuer, key) = rs256_issuer(Some("wsguard"));
    let (_, other) = rs256_issuer(None);
    let now = crate::clock::now_secs();
    let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("k1".into());
    let claims = |extra: serde_json::Value| {
        let mut all = json!({"iss": "https://id.example/", "aud": "wsguard", "sub": "bob", "exp": now + 600});
        all.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        all
    };
    let signed =
        |claims: &serde_json::Value, key: &EncodingKey| jsonwebtoken::encode(&header, claims, key).unwrap();
    let verdict = |token: String| {
        let issuer = &issuer;
        async move { issuer.check(&token, crate::clock::now_secs()).await.map(|(claims, _)| claims) }
    };

    let good = verdict(signed(&claims(json!({})), &key)).await.unwrap();
    assert_eq!((good.sub.as_str(), good.exp), ("bob", now + 600));

    let token = signed(&claims(json!({})), &key);
    let (head, rest) = token.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let tampered = {
        use base64::Engine;
        let payload = claims(json!({"sub": "mallory"})).to_string();
        format!("{head}.{}.{signature}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload))
    };
    let cases = [
        (tampered, TokenError::BadSignature),
        (signed(&claims(json!({})), &other), TokenError::BadSignature),
        (format!("{head}.{}.{}", rest.split_once('.').unwrap().0, "not*base64"), TokenError::Malformed),
        (format!("{head}.{}.", rest.split_once('.').unwrap().0), TokenError::BadSignature),
        (signed(&claims(json!({"exp": now - 60})), &key), TokenError::Expired),
        (signed(&claims(json!({"nbf": now + 60})), &key), TokenError::Immature),
        (signed(&claims(json!({"aud": "another-service"})), &key), TokenError::WrongAudience),
        (signed(&claims(json!({"iss": "https://other.example/"})), &key), TokenError::WrongAudience),
        (
            signed(&json!({"iss": "https://id.example/", "aud": "wsguard", "sub": "bob"}), &key),
            TokenError::Malformed,
        ),
        (signed(&claims(json!({"exp": now + 7200})), &key), TokenError::Malformed),
    ];
    for (token, expected) in cases {
        let refused = verdict(token.clone()).await.map_err(token_error);
        assert_eq!(refused.err(), Some(expected), "{token}");
    }
    // The key decides the algorithm: the same token under an HS256 header is refused.
    let mut hs = Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some("k1".into());
    let confused = jsonwebtoken::encode(&hs, &claims(json!({})), &EncodingKey::from_secret(SECRET)).unwrap();
    assert_eq!(verdict(confused).await.map_err(token_error).err(), Some(TokenError::BadSignature));
}
