//! Asymmetric signing keys: RS256, ES256 and EdDSA tokens, the JWKS, rotation without a restart,
//! and the tokens that must never verify (unknown `kid`, HS256 signed with the public key).

use crate::helpers::{assert_echo, claims, eventually, next_text, spawn, Server};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

/// The JOSE header of a JWT.
fn header(token: &str) -> Value {
    let bytes = URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn jwks(server: &Server) -> Value {
    let response = server.http.get(server.url("/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// `claims` signed as HS256 with `secret` under `kid`: the algorithm-confusion attack when the
/// secret is public key material.
fn hs256(claims: &Value, kid: &str, secret: &[u8]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

async fn signs_and_publishes(alg: &str, kty: &str, parameters: &[&str]) {
    let server = spawn(&[&format!("--jwt-alg={alg}")]).await;
    let pair = server.login("johndoe", "secret").await;
    let head = header(&pair.access);
    assert_eq!(head["alg"], alg);
    let kid = head["kid"].as_str().expect("a kid").to_owned();
    assert_eq!(header(&pair.refresh)["kid"], kid.as_str());

    assert_eq!(server.me(&pair.access).await.status(), StatusCode::OK);
    let bearer = format!("Bearer {}", pair.access);
    let mut ws = server.ws("/secured-ws", &[("authorization", &bearer)]).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "Welcome johndoe!");
    assert_echo(&mut ws).await;
    assert_eq!(server.refresh(&pair.refresh).await.status(), StatusCode::OK);

    let set = jwks(&server).await;
    let keys = set["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{set}");
    let jwk = &keys[0];
    assert_eq!(
        (&jwk["kid"], &jwk["alg"], &jwk["use"], &jwk["kty"]),
        (&kid.into(), &alg.into(), &"sig".into(), &kty.into())
    );
    for parameter in parameters {
        assert!(jwk[parameter].as_str().is_some_and(|v| !v.is_empty()), "{parameter} in {jwk}");
    }
    for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        assert!(jwk.get(private).is_none(), "private parameter {private} published: {jwk}");
    }

    // HS256 keyed with the published key, under the real kid: refused.
    let kid = jwk["kid"].as_str().unwrap();
    let forged = claims(&pair.access);
    for secret in [jwk.to_string(), jwk[parameters[0]].as_str().unwrap().to_owned()] {
        let confused = hs256(&forged, kid, secret.as_bytes());
        assert_eq!(server.me(&confused).await.status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn rs256_tokens_open_the_api_and_sockets_and_the_jwks_lists_the_key() {
    signs_and_publishes("RS256", "RSA", &["n", "e"]).await;
}

#[tokio::test]
async fn es256_tokens_open_the_api_and_sockets_and_the_jwks_lists_the_key() {
    signs_and_publishes("ES256", "EC", &["x", "y", "crv"]).await;
}

#[tokio::test]
async fn eddsa_tokens_open_the_api_and_sockets_and_the_jwks_lists_the_key() {
    signs_and_publishes("EdDSA", "OKP", &["x", "crv"]).await;
}

#[tokio::test]
async fn hs256_publishes_no_key() {
    let server = spawn(&[]).await;
    assert_eq!(jwks(&server).await, serde_json::json!({"keys": []}));
    assert!(!server.data_dir().join("keys").exists());
}

#[tokio::test]
async fn rotation_keeps_old_tokens_valid_and_the_server_signs_with_the_new_key() {
    use p256::pkcs8::EncodePublicKey;
    let server = spawn(&["--jwt-alg=ES256"]).await;
    let before = server.login("johndoe", "secret").await;
    let old_kid = header(&before.access)["kid"].as_str().unwrap().to_owned();

    let rotated = server.cli(&["keys", "rotate"], "").await;
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    let listed = String::from_utf8(server.cli(&["keys", "list"], "").await.stdout).unwrap();
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(
        lines[0].starts_with(&old_kid)
            && lines[0].contains("\tES256\t")
            && lines[0].contains("verifying until")
    );
    assert!(lines[1].ends_with("\tsigning"), "{listed}");
    let new_kid = lines[1].split('\t').next().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);

    // The running server picks the new key up on its own (at its next reread of the folder): it
    // publishes the new key and signs with it from the same reading.
    eventually("the new key published", Duration::from_secs(15), async || {
        let published = jwks(&server).await;
        let kids: Vec<&str> =
            published["keys"].as_array().unwrap().iter().filter_map(|k| k["kid"].as_str()).collect();
        if kids.contains(&new_kid.as_str()) {
            Ok(())
        } else {
            Err(format!("{kids:?}"))
        }
    })
    .await;
    let after = server.login("johndoe", "secret").await;
    assert_eq!(header(&after.access)["kid"], new_kid.as_str(), "still signing with {old_kid}");
    let published: Vec<String> = jwks(&server).await["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().into())
        .collect();
    assert!(published.contains(&old_kid) && published.contains(&new_kid), "{published:?}");

    // Tokens of the old key still work, for HTTP, sockets and refresh.
    assert_eq!(server.me(&before.access).await.status(), StatusCode::OK);
    let bearer = format!("Bearer {}", before.access);
    let mut ws = server.ws("/secured-ws", &[("authorization", &bearer)]).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "Welcome johndoe!");
    assert_eq!(server.refresh(&before.refresh).await.status(), StatusCode::OK);
    assert_eq!(server.me(&after.access).await.status(), StatusCode::OK);

    // A key the server never had, under an unknown kid: refused.
    let stranger = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let pem = p256::pkcs8::EncodePrivateKey::to_pkcs8_pem(&stranger, Default::default()).unwrap();
    let mut head = Header::new(Algorithm::ES256);
    head.kid = Some("es256-1-00000000".into());
    let claims_after = claims(&after.access);
    let unknown =
        jsonwebtoken::encode(&head, &claims_after, &EncodingKey::from_ec_pem(pem.as_bytes()).unwrap())
            .unwrap();
    assert_eq!(server.me(&unknown).await.status(), StatusCode::UNAUTHORIZED);
    // The same stranger under a known kid: refused too.
    head.kid = Some(new_kid.clone());
    let impostor =
        jsonwebtoken::encode(&head, &claims_after, &EncodingKey::from_ec_pem(pem.as_bytes()).unwrap())
            .unwrap();
    assert_eq!(server.me(&impostor).await.status(), StatusCode::UNAUTHORIZED);

    // HS256 keyed with the public key's PEM (the classic confusion attack): refused.
    let jwk = jwks(&server).await["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == new_kid.as_str())
        .unwrap()
        .clone();
    let mut point = vec![4u8];
    point.extend(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap());
    point.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap());
    let public = p256::PublicKey::from_sec1_bytes(&point).unwrap();
    let public_pem = public.to_public_key_pem(Default::default()).unwrap();
    for secret in [public_pem.as_bytes(), &point[..]] {
        let confused = hs256(&claims_after, &new_kid, secret);
        assert_eq!(server.me(&confused).await.status(), StatusCode::UNAUTHORIZED);
        let bearer = format!("Bearer {confused}");
        assert_eq!(server.ws_refused("/secured-ws", &[("authorization", &bearer)]).await, 401);
    }
}

#[tokio::test]
async fn nodes_sharing_the_keys_folder_verify_each_others_new_keys() {
    use crate::helpers::{another_node, service, Schema, POSTGRES};
    if !service("PostgreSQL", POSTGRES) {
        return;
    }
    let schema = Schema::create().await;
    let database = format!("--database-url={}", schema.url());
    let a = spawn(&["--jwt-alg=EdDSA", database.as_str()]).await;
    let b = another_node(&a).await;
    let first = a.login("johndoe", "secret").await;
    assert_eq!(b.me(&first.access).await.status(), StatusCode::OK);

    assert!(crate::helpers::cli(&a.data_dir(), &["keys", "rotate"], "").await.status.success());
    // A restarted node signs with the newest key at once; the other learns of it from the kid.
    let a = a.restart().await;
    let second = a.login("johndoe", "secret").await;
    assert_ne!(header(&second.access)["kid"], header(&first.access)["kid"]);
    assert_eq!(b.me(&second.access).await.status(), StatusCode::OK);
    assert_eq!(b.me(&first.access).await.status(), StatusCode::OK);
    assert_eq!(a.me(&first.access).await.status(), StatusCode::OK);
    schema.drop().await;
}
