//! POSTs the stored events to the application: one node at a time (a lease in the store), oldest
//! first, in batches; forgets them on a 2xx; on a failure retries the same batch with backoff, so
//! that no later event overtakes it.

use super::body::{self, SIGNATURE_HEADER};
use super::Shared;
use crate::clock::now_ms;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Events in one POST, at most.
const BATCH: i64 = 100;
/// How often a node that does not deliver checks whether the lease is free (its holder gone).
const STANDBY_POLL: Duration = Duration::from_secs(1);
/// How often the delivering node looks for events recorded by other nodes.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// The first retry's wait, unless `max_retry_interval` is shorter.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Why a POST did not count as delivered.
#[derive(Debug, Clone, Copy, thiserror::Error)]
enum Failure {
    #[error("no answer in time")]
    Timeout,
    #[error("could not connect or send")]
    Unreachable,
    #[error("answered with status {0}")]
    Status(u16),
}

impl Failure {
    fn label(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Unreachable => "unreachable",
            Failure::Status(_) => "status",
        }
    }
}

pub(super) async fn run(shared: Arc<Shared>, finish: CancellationToken) {
    let settings = &shared.settings;
    let http = match reqwest::Client::builder()
        .timeout(settings.timeout)
        // The configured URL is the one trusted: no redirect elsewhere (or to plain http).
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("wsguard/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(http) => http,
        Err(err) => {
            tracing::error!(error = %err, "webhooks: no HTTP client; nothing is delivered");
            return;
        }
    };
    // Longer than any POST: while it holds, no other node sends.
    let lease_ms = settings.timeout.as_millis() as i64 + 10_000;
    let first = FIRST_RETRY.min(settings.max_retry_interval);
    let mut backoff = first;
    let stop = &finish;
    let pause = move |wait: Duration| async move {
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(wait) => {}
        }
    };
    while !finish.is_cancelled() {
        let now = now_ms();
        // Alone on its database, a node takes the lease from a previous run of itself at once.
        let expired_before = if shared.single_node { i64::MAX } else { now };
        match shared.store.take_hook_lease(&shared.node, expired_before, now + lease_ms).await {
            Ok(true) => {}
            Ok(false) => {
                backlog(&shared).await;
                pause(STANDBY_POLL).await;
                continue;
            }
            Err(err) => {
                tracing::warn!(error = %err, "webhooks: taking the delivery lease failed");
                pause(STANDBY_POLL).await;
                continue;
            }
        }
        let events = match shared.store.hook_events(BATCH).await {
            Ok(events) => events,
            Err(err) => {
                tracing::warn!(error = %err, "webhooks: reading the events failed");
                pause(STANDBY_POLL).await;
                continue;
            }
        };
        backlog(&shared).await;
        let Some(last) = events.last().map(|event| event.id) else {
            tokio::select! {
                () = finish.cancelled() => {}
                () = shared.recorded.notified() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
            continue;
        };
        let body = body::render(&events, now_ms());
        let signature = body::sign(&shared.secret, &body);
        match post(&http, &settings.url, body, signature).await {
            Ok(()) => {
                shared.metrics.webhooks.delivery("ok");
                shared.metrics.webhooks.delivered.inc_by(events.len() as u64);
                backoff = first;
                if let Err(err) = shared.store.delete_hook_events(last).await {
                    // They go out again: at least once.
                    tracing::warn!(error = %err, "webhooks: forgetting delivered events failed");
                    pause(STANDBY_POLL).await;
                }
            }
            Err(failure) => {
                shared.metrics.webhooks.delivery(failure.label());
                tracing::warn!(
                    url = %settings.url,
                    error = %failure,
                    events = events.len(),
                    retry_in_ms = backoff.as_millis() as u64,
                    "webhooks: a delivery failed; retrying"
                );
                pause(backoff).await;
                backoff = (backoff * 2).min(settings.max_retry_interval);
            }
        }
    }
    if let Err(err) = shared.store.release_hook_lease(&shared.node).await {
        tracing::warn!(error = %err, "webhooks: releasing the delivery lease failed");
    }
}

async fn post(http: &reqwest::Client, url: &str, body: Vec<u8>, signature: String) -> Result<(), Failure> {
    let request = http
        .post(url)
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, signature)
        .body(body);
    let response = request.send().await.map_err(|err| {
        if err.is_timeout() {
            Failure::Timeout
        } else {
            Failure::Unreachable
        }
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(Failure::Status(status.as_u16()));
    }
    Ok(())
}

/// Updates `/metrics`' view of the queue.
async fn backlog(shared: &Shared) {
    match shared.store.hook_backlog().await {
        Ok((queued, oldest)) => shared.metrics.webhooks.backlog(queued, oldest),
        Err(err) => tracing::debug!(error = %err, "webhooks: reading the queue's depth failed"),
    }
}
