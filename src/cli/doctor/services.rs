//! The doctor's network checks, run at once, each within [`TIMEOUT`]: the database and its
//! migrations, Redis, trusted issuers' published keys, the application's proxy and webhook URLs
//! (any HTTP answer means reachable: only whether something answers is checked), and whether the
//! address to listen on is free.

use super::Report;
use crate::auth::issuers::JwksKeys;
use crate::config::Config;
use crate::logs::redact_url;
use crate::store::migrations::{self, State};
use futures_util::future::join_all;
use std::time::Duration;

/// How long each check may wait for an answer.
const TIMEOUT: Duration = Duration::from_secs(3);

pub(super) async fn check(config: &Config) -> Report {
    let (database, broker, issuers, urls) =
        tokio::join!(database(config), broker(config), issuers(config), urls(config));
    let mut report = Report::default();
    for part in [database, broker, issuers, urls] {
        report.append(part);
    }
    bind(&mut report, config);
    report
}

async fn database(config: &Config) -> Report {
    let mut report = Report::default();
    let url = config.store.database_url();
    let subject = format!("database {}", redact_url(&url));
    let status = match migrations::status(&url, TIMEOUT).await {
        Ok(status) => status,
        Err(err) => {
            report.problem(subject, unreachable_database(&err));
            return report;
        }
    };
    let count = status.known.len();
    let pending: Vec<&str> =
        status.known.iter().filter(|m| m.state == State::Pending).map(|m| m.name.as_str()).collect();
    if !status.exists {
        report.ok(subject, format!("no file yet; serve creates it and applies {count} migrations"));
    } else if let Err(err) = super::super::migrate::refuse_foreign(&status) {
        report.problem(subject, format!("{err:#}"));
    } else if pending.len() == count {
        let text = format!(
            "reachable, no table yet: `wsguard migrate` applies its {count} migrations, as serve does at start"
        );
        report.warning(subject, text);
    } else if !pending.is_empty() {
        let text = format!(
            "reachable; {} migration(s) pending ({}): `wsguard migrate` applies them, as serve does at start",
            pending.len(),
            pending.join(", ")
        );
        report.warning(subject, text);
    } else {
        report.ok(subject, format!("reachable, schema up to date ({count} migrations)"));
    }
    report
}

/// What to do about a database that did not answer, by what it said.
fn unreachable_database(err: &anyhow::Error) -> String {
    let code = err.downcast_ref::<sqlx::Error>().and_then(|err| match err {
        sqlx::Error::Database(db) => db.code().map(|code| code.into_owned()),
        _ => None,
    });
    let fix = match code.as_deref() {
        Some("3D000") => "create it first (`createdb`; see docs/operating.md)",
        Some("28P01" | "28000") => "check the user and password of --database-url, and pg_hba.conf",
        _ if err.downcast_ref::<sqlx::Error>().is_some_and(|e| matches!(e, sqlx::Error::Io(_))) => {
            "is the database running, and reachable from here?"
        }
        _ => "check --database-url",
    };
    // Not `{err:#}`: sqlx's error repeats its source's text.
    format!("{err}: {fix}")
}

async fn broker(config: &Config) -> Report {
    let mut report = Report::default();
    let sqlite = config.store.database_url().starts_with("sqlite:");
    let Some(url) = &config.broker_url else {
        report.ok("broker", "in-process: this node alone (nodes of a cluster share a Redis: --broker-url)");
        return report;
    };
    let subject = format!("broker {}", redact_url(url));
    match ping(url).await {
        Ok(()) if sqlite => report.warning(
            subject,
            "answers; but nodes sharing a Redis need a shared database, and SQLite is this node's alone: \
             --database-url postgres://…",
        ),
        Ok(()) => report.ok(subject, format!("answers (cluster {:?})", config.cluster)),
        Err(err) => report.problem(subject, err),
    }
    report
}

/// PING, answered; else what went wrong and what to do.
async fn ping(url: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|err| format!("not a Redis URL: {err}"))?;
    let answer = tokio::time::timeout(TIMEOUT, async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    })
    .await;
    match answer {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) if err.is_io_error() || err.is_connection_refusal() => {
            Err(format!("{err}: is Redis running, and reachable from here?"))
        }
        Ok(Err(err)) if err.kind() == redis::ErrorKind::AuthenticationFailed => {
            Err(format!("{err}: check the user and password of --broker-url"))
        }
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no answer within {} s: is Redis reachable from here?", TIMEOUT.as_secs())),
    }
}

async fn issuers(config: &Config) -> Report {
    let published = config.sections.trusted_issuers.iter().filter_map(|issuer| {
        let url = issuer.jwks_url.as_deref()?;
        Some(async move {
            let subject = format!("trusted issuer {} keys {}", issuer.name(), redact_url(url));
            let found = tokio::time::timeout(TIMEOUT, JwksKeys::probe(url)).await;
            let failed = |why: String| {
                format!("{why} (serve starts anyway, and answers its tokens 503 until a fetch succeeds)")
            };
            let mut report = Report::default();
            match found {
                Ok(Ok(0)) => report.problem(
                    subject,
                    "no usable key (RSA of 2048 bits or more, P-256, Ed25519): none of its tokens would verify",
                ),
                Ok(Ok(keys)) => report.ok(subject, format!("fetched, {keys} usable key(s)")),
                Ok(Err(err)) => {
                    let why = match err.downcast_ref::<reqwest::Error>() {
                        Some(err) => unanswered(err),
                        None => format!("{err:#}"),
                    };
                    report.problem(subject, failed(format!("fetch failed: {why}")))
                }
                Err(_) => report.problem(subject, failed(format!("no answer within {} s", TIMEOUT.as_secs()))),
            }
            report
        })
    });
    let mut report = Report::default();
    join_all(published).await.into_iter().for_each(|part| report.append(part));
    report
}

/// The application's endpoints wsguard calls, each with what calls it.
fn endpoints(config: &Config) -> Vec<(String, &str)> {
    let sections = &config.sections;
    let mut found = Vec::new();
    if let Some(proxy) = &sections.proxy {
        for (event, url) in [("connect", &proxy.connect), ("refresh", &proxy.refresh), ("rpc", &proxy.rpc)] {
            if let Some(url) = url {
                found.push((format!("{event} proxy"), url.as_str()));
            }
        }
    }
    for namespace in &sections.namespaces {
        for (event, url) in [("subscribe", &namespace.subscribe_proxy), ("publish", &namespace.publish_proxy)]
        {
            if let Some(url) = url {
                found.push((format!("namespace {} {event} proxy", namespace.name), url.as_str()));
            }
        }
    }
    if let Some(webhooks) = &sections.webhooks {
        found.push(("webhooks".to_owned(), webhooks.url.as_str()));
    }
    found
}

async fn urls(config: &Config) -> Report {
    let mut report = Report::default();
    let endpoints = endpoints(config);
    if endpoints.is_empty() {
        return report;
    }
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("wsguard-doctor/", env!("CARGO_PKG_VERSION")))
        .build();
    let client = match client {
        Ok(client) => client,
        Err(err) => {
            report.problem("HTTP client", format!("{err}"));
            return report;
        }
    };
    // A GET: safe by HTTP's rules, so the application acts on none of these requests.
    let answers = join_all(endpoints.iter().map(|(_, url)| client.get(*url).send())).await;
    for ((what, url), answer) in endpoints.iter().zip(answers) {
        let subject = format!("{what} {}", shown(url));
        match answer {
            Ok(response) => report.ok(subject, format!("answers ({} to a GET)", response.status())),
            Err(err) => report.problem(subject, unanswered(&err)),
        }
    }
    report
}

/// A URL as the report shows it: without user, password and query, which may hold secrets.
fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.to_string()
        }
        Err(_) => redact_url(url),
    }
}

fn unanswered(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return format!("no answer within {} s: is it running, and reachable from here?", TIMEOUT.as_secs());
    }
    // The innermost cause says it best ("Connection refused"); the URL is left out of it.
    let mut cause: &dyn std::error::Error = err;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    if err.is_connect() {
        return format!("no answer ({cause}): is it running at this address?");
    }
    cause.to_string()
}

/// Whether `serve` could listen on `--bind` now.
fn bind(report: &mut Report, config: &Config) {
    let addr = config.bind;
    let subject = format!("listen address {addr}");
    let text = match std::net::TcpListener::bind(addr) {
        Ok(_) => return report.ok(subject, "free"),
        Err(err) => match err.kind() {
            std::io::ErrorKind::AddrInUse => {
                "already in use (a wsguard running?): stop it, or choose another with --bind".to_owned()
            }
            std::io::ErrorKind::PermissionDenied => {
                "this user may not listen on it (a port under 1024?): use a port above 1023 behind a proxy"
                    .to_owned()
            }
            std::io::ErrorKind::AddrNotAvailable => {
                "no interface of this machine has that address: --bind one it has (0.0.0.0 for all)"
                    .to_owned()
            }
            _ => format!("cannot listen on it: {err}"),
        },
    };
    report.problem(subject, text);
}
