//! One `Config`, resolved once at start from `wsguard.toml`, then `WSGUARD_*` environment
//! variables, then flags (each overriding the one before), and passed down in the app state.

use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where users, refresh families and revocations live. Shared by `serve` and the user commands.
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreArgs {
    /// Data folder: the SQLite file and the generated signing key [default: ./wsguard-data]
    #[arg(long, env = "WSGUARD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL [default: sqlite:<data-dir>/wsguard.db]
    #[arg(long, env = "WSGUARD_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
}

pub const JWT_ALGS: [&str; 4] = ["HS256", "RS256", "ES256", "EdDSA"];

/// The algorithm named `name` (one of [`JWT_ALGS`]).
pub fn parse_jwt_alg(name: &str) -> anyhow::Result<jsonwebtoken::Algorithm> {
    use jsonwebtoken::Algorithm;
    Ok(match name {
        "HS256" => Algorithm::HS256,
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        "EdDSA" => Algorithm::EdDSA,
        _ => anyhow::bail!("jwt_alg {name}: one of {}", JWT_ALGS.join(", ")),
    })
}

/// Every setting of `wsguard serve`. All optional here: unset ones fall back to the config file,
/// then to the default shown in brackets.
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    #[command(flatten)]
    #[serde(skip)]
    pub store: StoreArgs,
    /// Address to listen on [default: 127.0.0.1:8000]
    #[arg(long, env = "WSGUARD_BIND", value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
    /// Fan-out broker URL [default: in-process]
    #[arg(long, env = "WSGUARD_BROKER_URL", value_name = "URL")]
    pub broker_url: Option<String>,
    /// Name of the group of nodes sharing the broker; other clusters on the same Redis are not
    /// seen [default: default]
    #[arg(long, env = "WSGUARD_CLUSTER", value_name = "NAME")]
    pub cluster: Option<String>,
    /// Lifetime of access tokens, e.g. 15m, 1h [default: 15m]
    #[arg(long, env = "WSGUARD_ACCESS_TTL", value_parser = humantime::parse_duration)]
    #[serde(default, deserialize_with = "duration::option")]
    pub access_ttl: Option<Duration>,
    /// Lifetime of refresh tokens [default: 14d]
    #[arg(long, env = "WSGUARD_REFRESH_TTL", value_parser = humantime::parse_duration)]
    #[serde(default, deserialize_with = "duration::option")]
    pub refresh_ttl: Option<Duration>,
    /// Origins allowed to open WebSockets, comma-separated [default: the server's own origin]
    #[arg(long, env = "WSGUARD_ALLOWED_ORIGINS", value_delimiter = ',', value_name = "ORIGINS")]
    pub allowed_origins: Option<Vec<String>>,
    /// Most concurrent sockets one user may hold [default: 64]
    #[arg(long, env = "WSGUARD_MAX_SOCKETS_PER_USER", value_name = "N")]
    pub max_sockets_per_user: Option<usize>,
    /// JWT signing algorithm; RS256, ES256 and EdDSA keys are generated into the keys folder
    /// [default: HS256]
    #[arg(long, env = "WSGUARD_JWT_ALG", value_name = "ALG", value_parser = JWT_ALGS)]
    pub jwt_alg: Option<String>,
    /// Folder of the RS256/ES256/EdDSA keys; nodes of a cluster share it [default: <data-dir>/keys]
    #[arg(long, env = "WSGUARD_JWT_KEYS_DIR", value_name = "DIR")]
    pub jwt_keys_dir: Option<PathBuf>,
    /// File holding the HS256 secret (at least 32 bytes) [default: generated into the data folder]
    #[arg(long, env = "WSGUARD_JWT_SECRET_FILE", value_name = "FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// `iss` claim written and required [default: wsguard]
    #[arg(long, env = "WSGUARD_ISSUER", value_name = "ISS")]
    pub issuer: Option<String>,
    /// `aud` claim written and required [default: none]
    #[arg(long, env = "WSGUARD_AUDIENCE", value_name = "AUD")]
    pub audience: Option<String>,
    /// Largest WebSocket message accepted, in bytes; larger closes with 1009 [default: 65536]
    #[arg(long, env = "WSGUARD_MAX_MESSAGE_BYTES", value_name = "BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Messages per second one socket may send; more closes with 4029 [default: 50]
    #[arg(long, env = "WSGUARD_MAX_MESSAGES_PER_SEC", value_name = "N")]
    pub max_messages_per_sec: Option<u32>,
    /// A socket silent this long (no frame, no pong) is closed [default: 60s]
    #[arg(long, env = "WSGUARD_IDLE_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, deserialize_with = "duration::option")]
    pub idle_timeout: Option<Duration>,
    /// Interval of server pings on idle sockets [default: 20s]
    #[arg(long, env = "WSGUARD_PING_INTERVAL", value_parser = humantime::parse_duration)]
    #[serde(default, deserialize_with = "duration::option")]
    pub ping_interval: Option<Duration>,
    /// How long before token expiry a socket is sent {"type":"expiring"} [default: 60s]
    #[arg(long, env = "WSGUARD_EXPIRY_WARNING", value_parser = humantime::parse_duration)]
    #[serde(default, deserialize_with = "duration::option")]
    pub expiry_warning: Option<Duration>,
    /// Threads hashing passwords, at low priority [default: number of CPUs]
    #[arg(long, env = "WSGUARD_HASH_CONCURRENCY", value_name = "N")]
    pub hash_concurrency: Option<usize>,
    /// Password checks that may wait for a hashing thread; more get 503 at once [default: 64]
    #[arg(long, env = "WSGUARD_HASH_QUEUE", value_name = "N")]
    pub hash_queue: Option<usize>,
    /// PEM certificate chain: serve HTTPS and WSS (with --tls-key) [default: plain HTTP]
    #[arg(long, env = "WSGUARD_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, env = "WSGUARD_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Origins allowed by CORS (with credentials), comma-separated [default: none, no CORS headers]
    #[arg(long, env = "WSGUARD_CORS_ORIGINS", value_delimiter = ',', value_name = "ORIGINS")]
    pub cors_origins: Option<Vec<String>>,
    /// Failed logins of one user from one address within --login-window before 429 [default: 5]
    #[arg(long, env = "WSGUARD_LOGIN_MAX_FAILURES", value_name = "N")]
    pub login_max_failures: Option<u32>,
    /// Failed logins from one address (any user) within --login-window before 429 [default: 50]
    #[arg(long, env = "WSGUARD_LOGIN_MAX_FAILURES_PER_ADDRESS", value_name = "N")]
    pub login_max_failures_per_address: Option<u32>,
    /// Failed logins of one user from all addresses within --login-window before 429 for
    /// addresses that never logged in as that user [default: 100]
    #[arg(long, env = "WSGUARD_LOGIN_MAX_FAILURES_PER_USER", value_name = "N")]
    pub login_max_failures_per_user: Option<u32>,
    /// Window of the failed-login counters, and so the longest lockout [default: 15m]
    #[arg(long, env = "WSGUARD_LOGIN_WINDOW", value_parser = humantime::parse_duration)]
    #[serde(default, deserialize_with = "duration::option")]
    pub login_window: Option<Duration>,
}

/// The resolved configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    /// `None`: the in-process broker (one node).
    pub broker_url: Option<String>,
    pub cluster: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// Empty: only the server's own origin (the request's `Host`).
    pub allowed_origins: Vec<String>,
    pub max_sockets_per_user: usize,
    pub jwt_secret_file: Option<PathBuf>,
    pub jwt_alg: jsonwebtoken::Algorithm,
    pub jwt_keys_dir: PathBuf,
    pub issuer: String,
    pub audience: Option<String>,
    pub max_message_bytes: usize,
    pub max_messages_per_sec: u32,
    pub idle_timeout: Duration,
    pub ping_interval: Duration,
    pub expiry_warning: Duration,
    pub hash_concurrency: usize,
    pub hash_queue: usize,
    /// Both set: HTTPS and WSS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Empty: no CORS headers at all.
    pub cors_origins: Vec<String>,
    pub login_max_failures: u32,
    pub login_max_failures_per_address: u32,
    pub login_max_failures_per_user: u32,
    pub login_window: Duration,
}

/// Reads the config file. A missing file is fine only when it was not asked for explicitly.
pub fn read_file(path: &Path, explicit: bool) -> anyhow::Result<ServeArgs> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(ServeArgs::default()),
        Err(e) => anyhow::bail!("{}: {e}", path.display()),
    };
    let parse = || -> Result<ServeArgs, toml::de::Error> {
        // The store keys are shared with the user commands, so they live in their own struct;
        // serde cannot flatten and reject unknown keys at once, hence the split by hand.
        let mut table: toml::Table = toml::from_str(&text)?;
        let mut store = toml::Table::new();
        for key in ["data_dir", "database_url"] {
            if let Some(value) = table.remove(key) {
                store.insert(key.into(), value);
            }
        }
        let mut args = ServeArgs::deserialize(toml::Value::Table(table))?;
        args.store = StoreArgs::deserialize(toml::Value::Table(store))?;
        Ok(args)
    };
    parse().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

impl StoreArgs {
    /// Flags (and env, which clap folds into them) win over the file.
    pub fn merge(self, file: StoreArgs) -> StoreArgs {
        StoreArgs {
            data_dir: self.data_dir.or(file.data_dir),
            database_url: self.database_url.or(file.database_url),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| PathBuf::from("./wsguard-data"))
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir().join("wsguard.db").display()))
    }
}

impl Config {
    pub fn resolve(flags: ServeArgs, file: ServeArgs) -> anyhow::Result<Config> {
        let store = flags.store.merge(file.store);
        let config = Config {
            bind: flags.bind.or(file.bind).unwrap_or(([127, 0, 0, 1], 8000).into()),
            data_dir: store.data_dir(),
            database_url: store.database_url(),
            broker_url: flags.broker_url.or(file.broker_url),
            cluster: flags.cluster.or(file.cluster).unwrap_or_else(|| "default".into()),
            access_ttl: flags.access_ttl.or(file.access_ttl).unwrap_or(Duration::from_secs(15 * 60)),
            refresh_ttl: flags
                .refresh_ttl
                .or(file.refresh_ttl)
                .unwrap_or(Duration::from_secs(14 * 24 * 3600)),
            allowed_origins: flags.allowed_origins.or(file.allowed_origins).unwrap_or_default(),
            max_sockets_per_user: flags.max_sockets_per_user.or(file.max_sockets_per_user).unwrap_or(64),
            jwt_secret_file: flags.jwt_secret_file.or(file.jwt_secret_file),
            jwt_alg: parse_jwt_alg(flags.jwt_alg.or(file.jwt_alg).as_deref().unwrap_or("HS256"))?,
            jwt_keys_dir: flags
                .jwt_keys_dir
                .or(file.jwt_keys_dir)
                .unwrap_or_else(|| store.data_dir().join(crate::auth::keyring::KEYS_DIR)),
            issuer: flags.issuer.or(file.issuer).unwrap_or_else(|| "wsguard".into()),
            audience: flags.audience.or(file.audience),
            max_message_bytes: flags.max_message_bytes.or(file.max_message_bytes).unwrap_or(64 * 1024),
            max_messages_per_sec: flags.max_messages_per_sec.or(file.max_messages_per_sec).unwrap_or(50),
            idle_timeout: flags.idle_timeout.or(file.idle_timeout).unwrap_or(Duration::from_secs(60)),
            ping_interval: flags.ping_interval.or(file.ping_interval).unwrap_or(Duration::from_secs(20)),
            expiry_warning: flags.expiry_warning.or(file.expiry_warning).unwrap_or(Duration::from_secs(60)),
            hash_concurrency: flags
                .hash_concurrency
                .or(file.hash_concurrency)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            hash_queue: flags.hash_queue.or(file.hash_queue).unwrap_or(64),
            tls_cert: flags.tls_cert.or(file.tls_cert),
            tls_key: flags.tls_key.or(file.tls_key),
            cors_origins: flags.cors_origins.or(file.cors_origins).unwrap_or_default(),
            login_max_failures: flags.login_max_failures.or(file.login_max_failures).unwrap_or(5),
            login_max_failures_per_address: flags
                .login_max_failures_per_address
                .or(file.login_max_failures_per_address)
                .unwrap_or(50),
            login_max_failures_per_user: flags
                .login_max_failures_per_user
                .or(file.login_max_failures_per_user)
                .unwrap_or(100),
            login_window: flags.login_window.or(file.login_window).unwrap_or(Duration::from_secs(15 * 60)),
        };
        anyhow::ensure!(
            config.jwt_alg == jsonwebtoken::Algorithm::HS256 || config.jwt_secret_file.is_none(),
            "jwt_secret_file is for HS256; {:?} keys live in the keys folder",
            config.jwt_alg
        );
        anyhow::ensure!(config.access_ttl >= Duration::from_secs(1), "access_ttl must be at least 1s");
        anyhow::ensure!(
            config.refresh_ttl >= config.access_ttl,
            "refresh_ttl must not be shorter than access_ttl"
        );
        anyhow::ensure!(config.max_messages_per_sec > 0, "max_messages_per_sec must be positive");
        anyhow::ensure!(config.max_message_bytes >= 128, "max_message_bytes must be at least 128");
        anyhow::ensure!(
            config.tls_cert.is_some() == config.tls_key.is_some(),
            "tls_cert and tls_key go together"
        );
        for origin in &config.cors_origins {
            anyhow::ensure!(
                origin != "*" && axum::http::HeaderValue::from_str(origin).is_ok(),
                "cors_origins: {origin:?} is not an origin (no wildcard: credentials are allowed)"
            );
        }
        anyhow::ensure!(config.login_window >= Duration::from_secs(1), "login_window must be at least 1s");
        anyhow::ensure!(config.hash_concurrency > 0, "hash_concurrency must be positive");
        anyhow::ensure!(
            config.ping_interval < config.idle_timeout,
            "ping_interval must be shorter than idle_timeout"
        );
        Ok(config)
    }
}

mod duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map(Some).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_alg_comes_from_the_file_and_flags_win() {
        let file: ServeArgs = toml::from_str(r#"jwt_alg = "EdDSA""#).unwrap();
        let config = Config::resolve(ServeArgs::default(), file.clone()).unwrap();
        assert_eq!(config.jwt_alg, jsonwebtoken::Algorithm::EdDSA);
        assert_eq!(config.jwt_keys_dir, PathBuf::from("./wsguard-data").join("keys"));
        let flags = ServeArgs { jwt_alg: Some("RS256".into()), ..Default::default() };
        assert_eq!(Config::resolve(flags, file).unwrap().jwt_alg, jsonwebtoken::Algorithm::RS256);
        assert_eq!(
            Config::resolve(ServeArgs::default(), ServeArgs::default()).unwrap().jwt_alg,
            jsonwebtoken::Algorithm::HS256
        );
    }

    #[test]
    fn unknown_algorithms_and_a_secret_file_with_keys_are_refused() {
        for alg in ["none", "HS512", "PS256", "rs256"] {
            let file = ServeArgs { jwt_alg: Some(alg.into()), ..Default::default() };
            assert!(Config::resolve(ServeArgs::default(), file).is_err(), "{alg}");
        }
        let file = ServeArgs {
            jwt_alg: Some("ES256".into()),
            jwt_secret_file: Some("secret".into()),
            ..Default::default()
        };
        assert!(Config::resolve(ServeArgs::default(), file).is_err());
    }
}
