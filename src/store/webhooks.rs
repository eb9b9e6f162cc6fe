//! What webhooks keep: who is in which channel on which node (so that a channel's first and last
//! socket, and a user's, are known for the whole cluster), the events not yet acknowledged by the
//! application, and which node delivers them.

use super::StoreResult;
use async_trait::async_trait;

/// A webhook event, by its name in the POSTs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    ChannelOccupied,
    ChannelVacated,
    PresenceJoin,
    PresenceLeave,
}

impl HookKind {
    pub const ALL: [HookKind; 4] = [
        HookKind::ChannelOccupied,
        HookKind::ChannelVacated,
        HookKind::PresenceJoin,
        HookKind::PresenceLeave,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HookKind::ChannelOccupied => "channel_occupied",
            HookKind::ChannelVacated => "channel_vacated",
            HookKind::PresenceJoin => "presence_join",
            HookKind::PresenceLeave => "presence_leave",
        }
    }
}

/// The events the application asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookKinds(u8);

impl HookKinds {
    pub fn all() -> HookKinds {
        HookKinds(0b1111)
    }

    pub fn of(kinds: impl IntoIterator<Item = HookKind>) -> HookKinds {
        HookKinds(kinds.into_iter().fold(0, |bits, kind| bits | 1 << kind as u8))
    }

    pub fn contains(self, kind: HookKind) -> bool {
        self.0 & 1 << kind as u8 != 0
    }
}

/// A user's first socket on this node entering a channel (`joined`), or their last one leaving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberChange {
    pub channel: String,
    pub user: String,
    pub joined: bool,
    /// The channel's namespace tracks presence: the user's joining and leaving are events too.
    pub presence: bool,
}

/// A stored event, `id` increasing in the order events happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEvent {
    pub id: i64,
    pub kind: HookKind,
    pub channel: String,
    /// For presence events.
    pub user: Option<String>,
    pub time_ms: i64,
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Applies `node`'s member changes in their order, and records the events they cause for the
    /// whole cluster among `kinds`, in one transaction: a join already recorded, or a leave of a
    /// user not recorded, changes nothing. Returns how many events were recorded.
    async fn record_members(
        &self,
        node: &str,
        changes: &[MemberChange],
        kinds: HookKinds,
        now_ms: i64,
    ) -> StoreResult<u64>;
    /// `node`'s recorded members: (channel, user).
    async fn hook_members(&self, node: &str) -> StoreResult<Vec<(String, String)>>;
    /// Marks `node` alive at `now_ms`; false when it was not known (new, or removed as dead).
    async fn hook_heartbeat(&self, node: &str, now_ms: i64) -> StoreResult<bool>;
    /// Every node but `node` not seen since `seen_before_ms`, and any node never seen, leaves all
    /// its channels and is forgotten. Returns how many events that recorded.
    async fn reap_hook_nodes(
        &self,
        node: &str,
        seen_before_ms: i64,
        kinds: HookKinds,
        now_ms: i64,
    ) -> StoreResult<u64>;
    /// `node` stops: its users leave all their channels, and it is forgotten.
    async fn retire_hook_node(&self, node: &str, kinds: HookKinds, now_ms: i64) -> StoreResult<u64>;
    /// Takes or renews the delivery lease for `node` until `until_ms`: false when another node
    /// holds it past `now_ms`.
    async fn take_hook_lease(&self, node: &str, now_ms: i64, until_ms: i64) -> StoreResult<bool>;
    /// Lets the lease go, if `node` holds it.
    async fn release_hook_lease(&self, node: &str) -> StoreResult<()>;
    /// The oldest `limit` events not yet delivered, in order.
    async fn hook_events(&self, limit: i64) -> StoreResult<Vec<HookEvent>>;
    /// Forgets the events up to `last_id`, delivered.
    async fn delete_hook_events(&self, last_id: i64) -> StoreResult<()>;
    /// How many events wait, and when the oldest happened.
    async fn hook_backlog(&self) -> StoreResult<(u64, Option<i64>)>;
}
