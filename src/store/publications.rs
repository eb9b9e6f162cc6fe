//! Channels' publications as stored: numbered 1, 2, 3… per channel in an epoch, kept as the
//! channel's namespace says.

use super::StoreResult;
use async_trait::async_trait;

/// How much of a channel's history is kept: its namespace's size and TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Publications kept; `None`: all of them.
    pub size: Option<u32>,
    /// Milliseconds a publication is kept; `None`: forever.
    pub ttl_ms: Option<i64>,
}

impl Retention {
    /// Everything, forever: the chat rooms'.
    pub const ALL: Retention = Retention { size: None, ttl_ms: None };

    pub(crate) fn expires_ms(&self, created_ms: i64) -> i64 {
        self.ttl_ms.map_or(i64::MAX, |ttl| created_ms.saturating_add(ttl))
    }

    /// The offset at or below which a channel whose newest publication is `top` drops the older.
    pub(super) fn trim_below(&self, top: i64) -> Option<i64> {
        self.size.map(|size| top - i64::from(size))
    }
}

/// A publication to store: what [`PublicationStore::publish`] is given. Borrowed: the store copies
/// what it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewPublication<'a> {
    pub channel: &'a str,
    /// The publishing user; `None` for the server API.
    pub sender: Option<&'a str>,
    /// JSON text, as published.
    pub data: &'a str,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// How much of the channel's history to keep.
    pub retention: Retention,
}

/// A stored publication of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub channel: String,
    /// Its place in the channel: 1, 2, 3… without gaps.
    pub offset: i64,
    /// The publishing user; `None` for the server API.
    pub sender: Option<String>,
    /// JSON text, as published.
    pub data: String,
    /// Unix milliseconds.
    pub created_ms: i64,
}

/// Where a channel's numbering stands: its last offset, in its epoch. A channel whose history
/// was lost starts again from 1 in a new epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub offset: i64,
    pub epoch: String,
}

/// Which publications of a channel to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// The newest ones with offsets below this (paging back through history).
    Before(i64),
    /// The oldest ones with offsets above this (catching up).
    After(i64),
}

#[async_trait]
pub trait PublicationStore: Send + Sync {
    /// Stores `publication` under its channel's next offset and trims the channel's history to its
    /// retention; once this returns, the publication is durable and may be acknowledged.
    async fn publish(&self, publication: NewPublication<'_>) -> StoreResult<(Publication, Position)>;
    /// Up to `limit` publications of `channel` in `range` still kept at `now_ms`, oldest first,
    /// and where the channel stands (`None`: it has never published, or its history is gone).
    async fn publications(
        &self,
        channel: &str,
        range: Range,
        limit: i64,
        now_ms: i64,
    ) -> StoreResult<(Vec<Publication>, Option<Position>)>;
    /// Deletes every publication of `channel` stored so far; how many went. Where the channel
    /// stands (its offset and epoch) is kept, so the next publication is numbered after the last
    /// and a client that follows the channel is told it missed what went rather than that the
    /// numbering started over.
    async fn remove_history(&self, channel: &str) -> StoreResult<u64>;
}
