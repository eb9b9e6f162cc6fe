//! Every setting declared once, on a field: its flag, `WSGUARD_*` environment variable, default and
//! help text as clap attributes, its `wsguard.toml` key the field's name. Precedence: flags, then
//! environment variables, then the file, then the default; `file.rs` is how the file is applied
//! ([`parse`]), `sections.rs` its lists of tables.

use anyhow::Context;
use clap::{Args, ValueEnum};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod file;
mod sections;
mod webhooks;
pub(crate) use file::parse;
pub(crate) use sections::{
    IssuerSettings, NamespaceSettings, ProxySettings, PublishRule, Sections, SubscribeRule,
};
pub(crate) use webhooks::WebhookSettings;

/// Where users, logins and revocations live. Shared by `serve` and the user and key commands.
#[derive(Args, Debug, Clone)]
pub(crate) struct StoreSettings {
    /// Data folder: the SQLite file and the generated signing key
    #[arg(long, env = "WSGUARD_DATA_DIR", value_name = "DIR", default_value = "./wsguard-data")]
    pub(crate) data_dir: PathBuf,
    /// Database URL [default: sqlite://<data-dir>/wsguard.db]
    #[arg(long, env = "WSGUARD_DATABASE_URL", value_name = "URL")]
    database_url: Option<String>,
}

impl StoreSettings {
    pub(crate) fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("wsguard.db").display()))
    }
}

/// The JWT signing algorithms wsguard offers.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JwtAlg {
    #[value(name = "HS256")]
    Hs256,
    #[value(name = "RS256")]
    Rs256,
    #[value(name = "ES256")]
    Es256,
    #[value(name = "EdDSA")]
    EdDsa,
}

impl From<JwtAlg> for jsonwebtoken::Algorithm {
    fn from(alg: JwtAlg) -> Self {
        match alg {
            JwtAlg::Hs256 => jsonwebtoken::Algorithm::HS256,
            JwtAlg::Rs256 => jsonwebtoken::Algorithm::RS256,
            JwtAlg::Es256 => jsonwebtoken::Algorithm::ES256,
            JwtAlg::EdDsa => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

/// How tokens are signed. Shared by `serve` and the key commands.
#[derive(Args, Debug, Clone)]
pub(crate) struct SigningSettings {
    /// JWT signing algorithm; RS256, ES256 and EdDSA keys are generated into the keys folder
    /// [default: HS256; for `keys` commands, that of the newest key]
    #[arg(long, env = "WSGUARD_JWT_ALG", value_name = "ALG")]
    pub(crate) jwt_alg: Option<JwtAlg>,
    /// Folder of the RS256/ES256/EdDSA keys; nodes of a cluster share it [default: <data-dir>/keys]
    #[arg(long, env = "WSGUARD_JWT_KEYS_DIR", value_name = "DIR")]
    jwt_keys_dir: Option<PathBuf>,
    /// File holding the HS256 secret (at least 32 bytes) [default: generated into the data folder]
    #[arg(long, env = "WSGUARD_JWT_SECRET_FILE", value_name = "FILE")]
    pub(crate) jwt_secret_file: Option<PathBuf>,
}

impl SigningSettings {
    pub(crate) fn alg(&self) -> jsonwebtoken::Algorithm {
        self.jwt_alg.unwrap_or(JwtAlg::Hs256).into()
    }

    pub(crate) fn keys_dir(&self, data_dir: &Path) -> PathBuf {
        self.jwt_keys_dir.clone().unwrap_or_else(|| data_dir.join("keys"))
    }
}

/// What the tokens say and how long they live.
#[derive(Args, Debug, Clone)]
pub(crate) struct TokenSettings {
    /// Lifetime of access tokens, e.g. 15m, 1h
    #[arg(long, env = "WSGUARD_ACCESS_TTL", default_value = "15m", value_parser = humantime::parse_duration)]
    pub(crate) access_ttl: Duration,
    /// Lifetime of refresh tokens, and so of a login, and of a replaced key's verifying
    #[arg(long, env = "WSGUARD_REFRESH_TTL", default_value = "14d", value_parser = humantime::parse_duration)]
    pub(crate) refresh_ttl: Duration,
    /// How long the refresh token a rotation replaced still gets the same new pair (two tabs
    /// refreshing at once); presented later, it ends the login. 0s: no grace
    #[arg(long, env = "WSGUARD_REFRESH_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) refresh_grace: Duration,
    /// `iss` claim written and required
    #[arg(long, env = "WSGUARD_ISSUER", value_name = "ISS", default_value = "wsguard")]
    pub(crate) issuer: String,
    /// `aud` claim written and required [default: none]
    #[arg(long, env = "WSGUARD_AUDIENCE", value_name = "AUD")]
    pub(crate) audience: Option<String>,
}

/// What one WebSocket may do, and how it is kept alive and bound to its token.
#[derive(Args, Debug, Clone, Copy)]
pub(crate) struct SocketLimits {
    /// Largest WebSocket message accepted, in bytes; larger closes with 1009
    #[arg(long, env = "WSGUARD_MAX_MESSAGE_BYTES", value_name = "BYTES", default_value_t = 64 * 1024)]
    pub(crate) max_message_bytes: usize,
    /// Messages per second one socket may send; more closes with 4029
    #[arg(long, env = "WSGUARD_MAX_MESSAGES_PER_SEC", value_name = "N", default_value_t = 50)]
    pub(crate) max_messages_per_sec: u32,
    /// A socket silent this long (no frame, no pong) is closed
    #[arg(long, env = "WSGUARD_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub(crate) idle_timeout: Duration,
    /// Interval of server pings on idle sockets
    #[arg(long, env = "WSGUARD_PING_INTERVAL", default_value = "20s", value_parser = humantime::parse_duration)]
    pub(crate) ping_interval: Duration,
    /// How long before token expiry a socket is sent {"type":"expiring"}
    #[arg(long, env = "WSGUARD_EXPIRY_WARNING", default_value = "60s", value_parser = humantime::parse_duration)]
    pub(crate) expiry_warning: Duration,
}

/// Failed-login counters, checked before any password is hashed.
#[derive(Args, Debug, Clone, Copy)]
pub(crate) struct LoginLimits {
    /// Failed logins of one user from one address within --login-window before 429
    #[arg(long, env = "WSGUARD_LOGIN_MAX_FAILURES", value_name = "N", default_value_t = 5)]
    pub(crate) login_max_failures: u32,
    /// Failed logins from one address (any user) within --login-window before 429
    #[arg(long, env = "WSGUARD_LOGIN_MAX_FAILURES_PER_ADDRESS", value_name = "N", default_value_t = 50)]
    pub(crate) login_max_failures_per_address: u32,
    /// Password checks from one address, right or wrong, within --login-window before 429: one
    /// valid account cannot keep the hashing threads busy
    #[arg(long, env = "WSGUARD_LOGIN_MAX_ATTEMPTS_PER_ADDRESS", value_name = "N", default_value_t = 300)]
    pub(crate) login_max_attempts_per_address: u32,
    /// Failed logins of one user from all addresses within --login-window before 429 for
    /// addresses that never logged in as that user
    #[arg(long, env = "WSGUARD_LOGIN_MAX_FAILURES_PER_USER", value_name = "N", default_value_t = 100)]
    pub(crate) login_max_failures_per_user: u32,
    /// Window of the failed-login counters, and so the longest lockout
    #[arg(long, env = "WSGUARD_LOGIN_WINDOW", default_value = "15m", value_parser = humantime::parse_duration)]
    pub(crate) login_window: Duration,
}

/// Client connections: how long one may take to ask, how long it may sit idle, and how many may be
/// open. The caps count a connection from accept to close: its TLS handshake, its requests, and the
/// WebSocket it may become.
#[derive(Args, Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    /// Time a client has to send complete request headers, from connecting (TLS handshake
    /// included) or from the first byte of its next request; then the connection is closed
    #[arg(long, env = "WSGUARD_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) header_read_timeout: Duration,
    /// An HTTP keep-alive connection idle this long between requests is closed (WebSockets have
    /// --idle-timeout)
    #[arg(long, env = "WSGUARD_KEEP_ALIVE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub(crate) keep_alive_timeout: Duration,
    /// Most client connections open at once (TLS handshakes and WebSockets included); more are
    /// closed at accept. The open-file limit is raised to fit if the hard limit allows, or this lowered
    #[arg(long, env = "WSGUARD_MAX_CONNECTIONS", value_name = "N", default_value_t = 10_000)]
    pub(crate) max_connections: usize,
    /// Most client connections open at once from one IP address (an IPv6 /64 counts as one); more
    /// are closed at accept. Behind a proxy in --trusted-proxies, per client it names (429 beyond)
    #[arg(long, env = "WSGUARD_MAX_CONNECTIONS_PER_ADDRESS", value_name = "N", default_value_t = 256)]
    pub(crate) max_connections_per_address: usize,
}

/// The server API (`/api/*`): how much one call may send, how often one key may call.
#[derive(Args, Debug, Clone, Copy)]
pub(crate) struct ApiLimits {
    /// Largest request body of the server API, in bytes; larger gets 413
    #[arg(long, env = "WSGUARD_API_MAX_BODY_BYTES", value_name = "BYTES", default_value_t = 64 * 1024)]
    pub(crate) api_max_body_bytes: usize,
    /// Server-API requests per second one key may make (on each node); more get 429
    #[arg(long, env = "WSGUARD_API_REQUESTS_PER_SEC", value_name = "N", default_value_t = 100)]
    pub(crate) api_requests_per_sec: u32,
    /// Server-API requests one key may make at once, above --api-requests-per-sec
    #[arg(long, env = "WSGUARD_API_BURST", value_name = "N", default_value_t = 200)]
    pub(crate) api_burst: u32,
}

/// Every setting of `wsguard serve`.
#[derive(Args, Debug, Clone)]
pub(crate) struct Config {
    #[command(flatten)]
    pub(crate) store: StoreSettings,
    #[command(flatten)]
    pub(crate) signing: SigningSettings,
    #[command(flatten)]
    pub(crate) tokens: TokenSettings,
    /// Address to listen on
    #[arg(long, env = "WSGUARD_BIND", value_name = "ADDR", default_value = "127.0.0.1:8000")]
    pub(crate) bind: SocketAddr,
    /// Fan-out broker URL, redis://… [default: in-process]
    #[arg(long, env = "WSGUARD_BROKER_URL", value_name = "URL")]
    pub(crate) broker_url: Option<String>,
    /// Name of the group of nodes sharing the broker; other clusters on the same Redis are not seen
    #[arg(long, env = "WSGUARD_CLUSTER", value_name = "NAME", default_value = "default")]
    pub(crate) cluster: String,
    /// Origins allowed to open WebSockets, comma-separated [default: the server's own origin]
    #[arg(long, env = "WSGUARD_ALLOWED_ORIGINS", value_delimiter = ',', value_name = "ORIGINS")]
    pub(crate) allowed_origins: Vec<String>,
    /// Most concurrent sockets one user may hold
    #[arg(long, env = "WSGUARD_MAX_SOCKETS_PER_USER", value_name = "N", default_value_t = 64)]
    pub(crate) max_sockets_per_user: usize,
    /// Sockets without a token open at once: anonymous ones (optional mode) and chat sockets yet
    /// to send their `{"type":"auth"}` frame; more are refused with 429
    #[arg(long, env = "WSGUARD_MAX_ANONYMOUS_SOCKETS", value_name = "N", default_value_t = 1024)]
    pub(crate) max_anonymous_sockets: usize,
    #[command(flatten)]
    pub(crate) socket: SocketLimits,
    /// Bytes one user may publish per day (on each node): a room's chat text, else the data's
    /// JSON; beyond, `send` and `publish` are refused with `rate_limited` and nothing is stored
    #[arg(long, env = "WSGUARD_CHAT_BYTES_PER_USER_PER_DAY", value_name = "BYTES", default_value_t = 8 * 1024 * 1024)]
    pub(crate) chat_bytes_per_user_per_day: u64,
    /// Threads hashing passwords, at low priority [default: number of CPUs]
    #[arg(long, env = "WSGUARD_HASH_CONCURRENCY", value_name = "N")]
    hash_concurrency: Option<usize>,
    /// Password checks that may wait for a hashing thread; more get 503 at once
    #[arg(long, env = "WSGUARD_HASH_QUEUE", value_name = "N", default_value_t = 64)]
    pub(crate) hash_queue: usize,
    /// PEM certificate chain: serve HTTPS and WSS (with --tls-key) [default: plain HTTP]
    #[arg(long, env = "WSGUARD_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, env = "WSGUARD_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// How often the --tls-cert and --tls-key files are checked for a change (modification time,
    /// size, replacement); a changed pair, or SIGHUP, is read again and presented to new
    /// connections, while open ones keep theirs. 0s: on SIGHUP only
    #[arg(long, env = "WSGUARD_TLS_RELOAD_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) tls_reload_interval: Duration,
    /// Origins allowed by CORS (with credentials), comma-separated [default: none, no CORS headers]
    #[arg(long, env = "WSGUARD_CORS_ORIGINS", value_delimiter = ',', value_name = "ORIGINS")]
    pub(crate) cors_origins: Vec<String>,
    #[command(flatten)]
    pub(crate) login_limits: LoginLimits,
    #[command(flatten)]
    pub(crate) connections: ConnectionLimits,
    /// Reverse proxies (CIDRs or addresses, comma-separated) whose Forwarded or X-Forwarded-For
    /// header names the client: the login throttle, the per-address caps, the logs and the connect
    /// proxy then see that client's address. From other peers these headers are ignored [default:
    /// none]
    #[arg(long, env = "WSGUARD_TRUSTED_PROXIES", value_delimiter = ',', value_name = "CIDRS", value_parser = trusted_proxy)]
    pub(crate) trusted_proxies: Vec<IpNet>,
    #[command(flatten)]
    pub(crate) api: ApiLimits,
    /// `[[namespaces]]` and `[[trusted_issuers]]`, from the file only.
    #[arg(skip)]
    pub(crate) sections: Sections,
}

impl Config {
    pub(crate) fn hash_concurrency(&self) -> usize {
        self.hash_concurrency.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    /// Whether the server speaks TLS (HTTPS and WSS).
    pub(crate) fn tls(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// Checks what no single setting can: how they fit together.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        let alg = self.signing.alg();
        anyhow::ensure!(
            alg == jsonwebtoken::Algorithm::HS256 || self.signing.jwt_secret_file.is_none(),
            "jwt_secret_file is for HS256; {alg:?} keys live in the keys folder"
        );
        let tokens = &self.tokens;
        anyhow::ensure!(tokens.access_ttl >= Duration::from_secs(1), "access_ttl must be at least 1s");
        anyhow::ensure!(
            tokens.refresh_ttl >= tokens.access_ttl,
            "refresh_ttl must not be shorter than access_ttl"
        );
        self.sections.check_own_issuer(&tokens.issuer)?;
        let socket = &self.socket;
        anyhow::ensure!(socket.max_messages_per_sec > 0, "max_messages_per_sec must be positive");
        anyhow::ensure!(socket.max_message_bytes >= 128, "max_message_bytes must be at least 128");
        anyhow::ensure!(
            socket.ping_interval < socket.idle_timeout,
            "ping_interval must be shorter than idle_timeout"
        );
        anyhow::ensure!(
            self.tls_cert.is_some() == self.tls_key.is_some(),
            "tls_cert and tls_key go together"
        );
        anyhow::ensure!(
            self.tls_reload_interval.is_zero() || self.tls_reload_interval >= Duration::from_secs(1),
            "tls_reload_interval must be 0s (SIGHUP only) or at least 1s"
        );
        for origin in &self.cors_origins {
            anyhow::ensure!(
                origin != "*" && axum::http::HeaderValue::from_str(origin).is_ok(),
                "cors_origins: {origin:?} is not an origin (no wildcard: credentials are allowed)"
            );
        }
        anyhow::ensure!(
            self.login_limits.login_window >= Duration::from_secs(1),
            "login_window must be at least 1s"
        );
        anyhow::ensure!(self.hash_concurrency() > 0, "hash_concurrency must be positive");
        let connections = &self.connections;
        for (name, timeout) in [
            ("header_read_timeout", connections.header_read_timeout),
            ("keep_alive_timeout", connections.keep_alive_timeout),
        ] {
            anyhow::ensure!(timeout >= Duration::from_secs(1), "{name} must be at least 1s");
        }
        anyhow::ensure!(connections.max_connections > 0, "max_connections must be positive");
        anyhow::ensure!(
            connections.max_connections_per_address > 0,
            "max_connections_per_address must be positive"
        );
        let api = &self.api;
        anyhow::ensure!(api.api_max_body_bytes >= 1024, "api_max_body_bytes must be at least 1024");
        anyhow::ensure!(api.api_requests_per_sec > 0, "api_requests_per_sec must be positive");
        anyhow::ensure!(api.api_burst > 0, "api_burst must be positive");
        Ok(())
    }
}

/// One of `--trusted-proxies`: a network (`10.0.0.0/8`, `2001:db8::/32`) or an address (a /32 or
/// /128). A network of every address is refused: every client could name itself anyone.
fn trusted_proxy(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    let network = match (text.parse::<IpNet>(), text.parse::<IpAddr>()) {
        (Ok(network), _) => network.trunc(),
        (_, Ok(address)) => IpNet::from(address.to_canonical()),
        _ => {
            return Err(format!(
                "{text:?} is not a CIDR (such as 10.0.0.0/8 or 2001:db8::/32) nor an IP address"
            ))
        }
    };
    // An IPv4-mapped network as its IPv4 one: peers are compared in their IPv4 form.
    let network = match network {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).expect("a prefix of at most 32"),
            None => network,
        },
        _ => network,
    };
    if network.prefix_len() == 0 {
        return Err(format!(
            "{text} trusts every peer to name any client address; list your proxies' addresses"
        ));
    }
    Ok(network)
}

/// Creates the data folder, private to its owner when wsguard creates it. An existing folder is
/// left as it is (its files are private whatever its mode), with a warning when others may list it.
pub(crate) fn ensure_data_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    dir = %dir.display(),
                    mode = format!("{mode:03o}"),
                    "the data folder is open to others; its files are 0600, and 0700 keeps even their names private"
                );
            }
        }
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).with_context(|| format!("creating data folder {}", dir.display()))
}

#[cfg(test)]
mod tests;
