//! `[webhooks]`: where the application hears of channels occupied and vacated and of users
//! joining and leaving them (delivery: `src/webhooks/`).

use super::sections::{humantime_serde_compat, is_http_url};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The events the application may ask for, by their names in `events` and in the POSTs.
pub(crate) const EVENT_NAMES: [&str; 4] =
    ["channel_occupied", "channel_vacated", "presence_join", "presence_leave"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookSettings {
    /// The application's endpoint: one POST per batch of events.
    pub(crate) url: String,
    /// The HMAC-SHA256 key of `X-Wsguard-Signature`: at least 32 bytes, private to wsguard's user.
    pub(crate) secret_file: PathBuf,
    /// Which of [`EVENT_NAMES`] are recorded and sent; all of them by default.
    #[serde(default = "all_events")]
    pub(crate) events: Vec<String>,
    /// How long a POST may take before it counts as failed.
    #[serde(default = "timeout", with = "humantime_serde_compat")]
    pub(crate) timeout: Duration,
    /// Retries after a failure wait 1 s, doubling up to this (a shorter cap starts there).
    #[serde(default = "max_retry_interval", with = "humantime_serde_compat")]
    pub(crate) max_retry_interval: Duration,
}

fn all_events() -> Vec<String> {
    EVENT_NAMES.iter().map(|name| (*name).to_owned()).collect()
}
fn timeout() -> Duration {
    Duration::from_secs(5)
}
fn max_retry_interval() -> Duration {
    Duration::from_secs(30)
}

impl WebhookSettings {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            is_http_url(&self.url),
            "webhooks: url must be an http:// or https:// URL, not {:?}",
            self.url
        );
        for name in &self.events {
            anyhow::ensure!(
                EVENT_NAMES.contains(&name.as_str()),
                "webhooks: events: unknown event {name:?}; the events are {}",
                EVENT_NAMES.join(", ")
            );
        }
        anyhow::ensure!(
            self.timeout >= Duration::from_millis(10) && self.timeout <= Duration::from_secs(30),
            "webhooks: timeout must be between 10ms and 30s"
        );
        anyhow::ensure!(
            self.max_retry_interval >= Duration::from_millis(100)
                && self.max_retry_interval <= Duration::from_secs(3600),
            "webhooks: max_retry_interval must be between 100ms and 1h"
        );
        Ok(())
    }

    /// Whether the application asked for the event `name`.
    pub(crate) fn wants(&self, name: &str) -> bool {
        self.events.iter().any(|wanted| wanted == name)
    }
}
