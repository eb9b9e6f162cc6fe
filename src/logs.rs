//! The log: one line per event on stderr, as text or JSON (`WSGUARD_LOG_FORMAT=json`), filtered
//! by `WSGUARD_LOG`. Writing it never fails: a line that stderr refuses (a log collector that
//! died, a closed pipe) is dropped and counted, since a failed write that reached the task
//! waiting for signals would keep the server from shutting down.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing_subscriber::EnvFilter;

/// Lines stderr refused since start, for `/metrics`.
static DROPPED: AtomicU64 = AtomicU64::new(0);

pub(crate) fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Installs the process's log.
pub fn init() {
    let filter = EnvFilter::try_from_env("WSGUARD_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Stderr)
        // Its report of a failed write goes to stderr too, and panics when that fails.
        .log_internal_errors(false);
    if std::env::var("WSGUARD_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
}

/// stderr, whose failures are counted instead of returned.
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::io::stderr().write_all(buf).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Writes `line` to stdout; a closed stdout is not an error worth stopping for.
pub(crate) fn print(line: &str) {
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{line}").and_then(|()| stdout.flush()).is_err() {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// A URL without what may stand before its host (a user and password), for logs and reports.
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
