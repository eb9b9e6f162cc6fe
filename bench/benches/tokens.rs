//! Micro-benchmarks of JWT issue and verify, with the claims wsguard puts in its tokens:
//! HS256 (the default) and ES256 (an asymmetric choice), through `jsonwebtoken` 10 with the same
//! features as the server. Run with `cargo bench -p wsguard-bench`.
//!
//! RS256 verification, as a JWKS issuer's token is verified, with both backends: `RS256/verify`
//! is jsonwebtoken's RustCrypto `rsa` (the key from its JWK components, as
//! `DecodingKey::from_jwk` makes it); `RS256/verify-ring` checks the signature with `ring`
//! (PKCS#1 v1.5, SHA-256, 2048-8192-bit moduli) and then the claims with jsonwebtoken, signature
//! check off, as wsguard now does for published RSA keys; `RS256/ring-signature-only` is ring's
//! signature check alone.

use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::pkcs8::EncodePrivateKey;
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

/// A P-256 key made for this benchmark only (never used anywhere else).
const ES256_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgaT0sSBCq4dWEbSXf
o5oDH1LRLv1F6YSh6OCgvZbivqyhRANCAAQjKTg0d/TQ4t4/w9OcuajupTsTYzNp
eS3vXjZTDXdg8x2cwDLLDGCd7xRpqkjaCU/Z68mpRj5dPISRMXYyen3a
-----END PRIVATE KEY-----
";
const ES256_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEIyk4NHf00OLeP8PTnLmo7qU7E2Mz
aXkt7142Uw13YPMdnMAyywxgne8UaapI2glP2evJqUY+XTyEkTF2Mnp92g==
-----END PUBLIC KEY-----
";

/// wsguard's access-token claims (see src/auth/tokens.rs).
#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    iat: i64,
    nbf: i64,
    jti: String,
    #[serde(rename = "type")]
    kind: String,
    fresh: bool,
    iss: String,
    fam: String,
    csrf: String,
}

fn claims() -> Claims {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs() as i64;
    Claims {
        sub: "johndoe".into(),
        exp: now + 15 * 60,
        iat: now,
        nbf: now,
        jti: uuid::Uuid::new_v4().simple().to_string(),
        kind: "access".into(),
        fresh: true,
        iss: "wsguard".into(),
        fam: uuid::Uuid::new_v4().simple().to_string(),
        csrf: uuid::Uuid::new_v4().simple().to_string(),
    }
}

/// Validation as wsguard configures it: one allowed algorithm, required claims, issuer, leeway.
fn validation(alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.leeway = 5;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "nbf", "sub", "iss"]);
    validation.set_issuer(&["wsguard"]);
    validation
}

fn bench_alg(c: &mut Criterion, name: &str, alg: Algorithm, enc: EncodingKey, dec: DecodingKey) {
    let mut header = Header::new(alg);
    header.kid = Some(format!("{name}-bench"));
    let claims = claims();
    let token = jsonwebtoken::encode(&header, &claims, &enc).expect("signing");
    let validation = validation(alg);
    let mut group = c.benchmark_group(name);
    group.bench_function("issue", |b| {
        b.iter(|| jsonwebtoken::encode(black_box(&header), black_box(&claims), &enc).unwrap())
    });
    group.bench_function("verify", |b| {
        b.iter(|| jsonwebtoken::decode::<Claims>(black_box(token.as_str()), &dec, &validation).unwrap())
    });
    group.finish();
}

fn tokens(c: &mut Criterion) {
    let secret = [7u8; 32];
    bench_alg(
        c,
        "HS256",
        Algorithm::HS256,
        EncodingKey::from_secret(&secret),
        DecodingKey::from_secret(&secret),
    );
    bench_alg(
        c,
        "ES256",
        Algorithm::ES256,
        EncodingKey::from_ec_pem(ES256_PRIVATE_PEM.as_bytes()).expect("benchmark EC key"),
        DecodingKey::from_ec_pem(ES256_PUBLIC_PEM.as_bytes()).expect("benchmark EC public key"),
    );
}

/// RS256 verification by a JWKS key: RustCrypto (jsonwebtoken's backend) against ring.
fn rs256(c: &mut Criterion) {
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("an RSA key");
    let pem = key.to_pkcs8_pem(Default::default()).expect("PKCS#8");
    let enc = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("benchmark RSA key");
    let (n, e) = (key.n().to_bytes_be(), key.e().to_bytes_be());
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let dec = DecodingKey::from_rsa_components(&b64(&n), &b64(&e)).expect("RSA components");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("RS256-bench".into());
    let token = jsonwebtoken::encode(&header, &claims(), &enc).expect("signing");
    let validation = validation(Algorithm::RS256);
    #[allow(deprecated)] // the signature is checked by ring first
    let claims_only = {
        let mut v = validation.clone();
        v.insecure_disable_signature_validation();
        v
    };
    let ring_key = ring::signature::RsaPublicKeyComponents { n: n.clone(), e: e.clone() };
    let ring_check = |token: &str| {
        let (message, signature) = token.rsplit_once('.').expect("three parts");
        let signature =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature).expect("base64url");
        ring_key
            .verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256, message.as_bytes(), &signature)
            .expect("a good signature")
    };
    let mut group = c.benchmark_group("RS256");
    group.bench_function("verify", |b| {
        b.iter(|| jsonwebtoken::decode::<Claims>(black_box(token.as_str()), &dec, &validation).unwrap())
    });
    group.bench_function("verify-ring", |b| {
        b.iter(|| {
            ring_check(black_box(token.as_str()));
            jsonwebtoken::decode::<Claims>(black_box(token.as_str()), &dec, &claims_only).unwrap()
        })
    });
    group.bench_function("ring-signature-only", |b| b.iter(|| ring_check(black_box(token.as_str()))));
    group.finish();
}

criterion_group!(benches, tokens, rs256);
criterion_main!(benches);
