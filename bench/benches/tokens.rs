//! Micro-benchmarks of JWT issue and verify, with the claims wsguard puts in its tokens:
//! HS256 (the default) and ES256 (an asymmetric choice), through `jsonwebtoken` 10 with the same
//! features as the server. Run with `cargo bench -p wsguard-bench`.

use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
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

criterion_group!(benches, tokens);
criterion_main!(benches);
