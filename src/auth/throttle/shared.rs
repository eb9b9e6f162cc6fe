//! The login throttle's counters in Redis, shared by every node of a cluster, under its prefix
//! `wsguard:<cluster>:throttle:`:
//!
//! | key | what |
//! |---|---|
//! | `pair:<h(user, address)>` | failures of one user from one address (hash: `n` count, `w` window id) |
//! | `address:<address>` | failures from one address, any user (hash) |
//! | `attempts:<address>` | password checks from one address, right or wrong (hash) |
//! | `user:<h(user)>` | failures of one user from all addresses (hash) |
//! | `known:<h(user, address)>` | the address logged in as the user: exempt from `user:` (string, 30 days) |
//!
//! `h` is SHA-256 (128 bits of it, hex) of the username, and of the username, a NUL and the
//! address: a username can neither reach another key nor is it written to Redis. An address is
//! its [`client_key`](super::client_key) as text (an IPv6 /64 as its prefix).
//!
//! A counter is a fixed window: the attempt that creates it sets its id `w` and its TTL (the
//! window); it is over its limit while `n` ≥ limit, for its remaining TTL. One script
//! ([`BEGIN_LUA`]) checks every counter against its limit and counts the attempt into all four,
//! atomically, in one round trip; another ([`SETTLE_LUA`]) takes an attempt back from the windows
//! it was counted into, and only from those (a window that ended and started again is not
//! touched). Settling as a success also resets `pair:` and writes `known:`.

use super::KNOWN_FOR;
use crate::config::LoginLimits;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

/// The longest a login waits for Redis (connecting included) before this node's counters stand in.
pub(crate) const TIMEOUT: Duration = Duration::from_millis(500);
/// While Redis is unreachable, one login per this long asks it again; the others do not wait.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// KEYS: pair, address, attempts, user (counters), known. ARGV: the four limits in KEYS order,
/// the window (ms), an id for a window this call starts. Returns `{'wait', ms}` when a counter
/// is over its limit (the longest wait; `user` is skipped for a known address), else counts the
/// attempt into all four and returns `{'ok', w1, w2, w3, w4}`: the windows it went into.
const BEGIN_LUA: &str = r"
local known = redis.call('EXISTS', KEYS[5]) == 1
local window = tonumber(ARGV[5])
local wait = 0
for i = 1, 4 do
  if not (i == 4 and known) then
    local n = tonumber(redis.call('HGET', KEYS[i], 'n') or '0')
    if n >= tonumber(ARGV[i]) then
      local ttl = redis.call('PTTL', KEYS[i])
      if ttl == -1 then
        redis.call('PEXPIRE', KEYS[i], window)
        ttl = window
      end
      if ttl > wait then wait = ttl end
    end
  end
end
if wait > 0 then return {'wait', tostring(wait)} end
local windows = {'ok'}
for i = 1, 4 do
  if redis.call('HSETNX', KEYS[i], 'w', ARGV[6]) == 1 then
    redis.call('PEXPIRE', KEYS[i], window)
  end
  redis.call('HINCRBY', KEYS[i], 'n', 1)
  windows[i + 1] = redis.call('HGET', KEYS[i], 'w')
end
return windows
";

/// KEYS: as [`BEGIN_LUA`]. ARGV: `succeeded` or `unchecked`, the four windows the attempt was
/// counted into, how long an address stays known (ms). Takes the attempt back from the counters
/// still in those windows: the failure counters for a success (which also resets `pair` and
/// marks the address known), all four for an attempt whose password was never checked.
const SETTLE_LUA: &str = r"
local succeeded = ARGV[1] == 'succeeded'
for i = 1, 4 do
  if not (succeeded and i == 3) and redis.call('HGET', KEYS[i], 'w') == ARGV[i + 1] then
    if tonumber(redis.call('HGET', KEYS[i], 'n') or '0') > 0 then
      redis.call('HINCRBY', KEYS[i], 'n', -1)
    end
  end
end
if succeeded then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[5], '1', 'PX', ARGV[6])
end
return 1
";

static BEGIN: LazyLock<Script> = LazyLock::new(|| Script::new(BEGIN_LUA));
static SETTLE: LazyLock<Script> = LazyLock::new(|| Script::new(SETTLE_LUA));

/// The shared counters: a connection of their own, with short timeouts.
#[derive(Clone)]
pub(crate) struct Shared {
    prefix: Arc<str>,
    conn: ConnectionManager,
    health: Arc<Health>,
}

/// What [`Shared::begin`] did.
pub(super) enum Begun {
    /// Let through and counted in Redis.
    Counted(Ticket),
    /// A counter is over its limit: retry after this long.
    Wait(Duration),
    /// Redis did not answer (in time): nothing known, the caller counts in memory.
    Unavailable,
}

/// An attempt counted in Redis: its keys and the windows it went into, to settle it.
pub(super) struct Ticket {
    keys: [String; 5],
    windows: Vec<String>,
}

#[derive(Clone, Copy)]
enum Outcome {
    Succeeded,
    Unchecked,
}

/// Whether Redis answers: `Some(next probe)` during an outage.
#[derive(Default)]
struct Health(Mutex<Option<Instant>>);

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a login should ask Redis: always while it answers, and during an outage the first
    /// one after each [`PROBE_EVERY`].
    fn ask(&self) -> bool {
        let mut next = self.lock();
        match *next {
            None => true,
            Some(at) if Instant::now() >= at => {
                *next = Some(Instant::now() + PROBE_EVERY);
                true
            }
            Some(_) => false,
        }
    }

    fn answered(&self) {
        if self.lock().take().is_some() {
            tracing::info!("login throttle: Redis answers again; failed-login counters are shared again");
        }
    }

    fn failed(&self, error: &str) {
        let mut next = self.lock();
        if next.is_none() {
            tracing::warn!(
                error,
                "login throttle: Redis unreachable; failed logins are counted on this node only until it answers"
            );
        }
        *next = Some(Instant::now() + PROBE_EVERY);
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// 128 bits of SHA-256 over `parts`, NUL-separated (usernames and addresses hold no NUL), in hex.
fn digest(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hash.update([0]);
        }
        hash.update(part.as_bytes());
    }
    hex::encode(&hash.finalize()[..16])
}

impl Ticket {
    fn new(prefix: &str, user: &str, addr: IpAddr) -> Ticket {
        let addr = addr.to_string();
        let (user_id, pair_id) = (digest(&[user]), digest(&[user, &addr]));
        Ticket {
            keys: [
                format!("{prefix}pair:{pair_id}"),
                format!("{prefix}address:{addr}"),
                format!("{prefix}attempts:{addr}"),
                format!("{prefix}user:{user_id}"),
                format!("{prefix}known:{pair_id}"),
            ],
            windows: Vec::new(),
        }
    }
}

impl Shared {
    /// Connects (failing at once if Redis is unreachable, like the broker).
    pub(crate) async fn connect(url: &str, cluster: &str) -> anyhow::Result<Shared> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(TIMEOUT)
            .set_response_timeout(TIMEOUT)
            .set_number_of_retries(1)
            .set_max_delay(200);
        let conn = client.get_connection_manager_with_config(config).await?;
        Ok(Shared { prefix: format!("wsguard:{cluster}:throttle:").into(), conn, health: Arc::default() })
    }

    /// Checks and counts an attempt. Runs in a task of its own, so that a cancelled request
    /// cannot leave an attempt counted and never settled: the task takes it back.
    pub(super) async fn begin(&self, limits: &LoginLimits, user: &str, addr: IpAddr) -> Begun {
        if !self.health.ask() {
            return Begun::Unavailable;
        }
        let (ticket, limits, this) = (Ticket::new(&self.prefix, user, addr), *limits, self.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let begun = this.check_and_count(&limits, ticket).await;
            if let Err(Begun::Counted(ticket)) = tx.send(begun) {
                this.settle(ticket, Outcome::Unchecked).await;
            }
        });
        rx.await.unwrap_or(Begun::Unavailable)
    }

    async fn check_and_count(&self, l: &LoginLimits, mut ticket: Ticket) -> Begun {
        let mut invocation = BEGIN.prepare_invoke();
        for key in &ticket.keys {
            invocation.key(key);
        }
        invocation
            .arg(l.login_max_failures)
            .arg(l.login_max_failures_per_address)
            .arg(l.login_max_attempts_per_address)
            .arg(l.login_max_failures_per_user)
            .arg(millis(l.login_window))
            .arg(format!("{:016x}", rand::random::<u64>()));
        let mut conn = self.conn.clone();
        let reply =
            match tokio::time::timeout(TIMEOUT, invocation.invoke_async::<Vec<String>>(&mut conn)).await {
                Ok(Ok(reply)) => reply,
                Ok(Err(err)) => {
                    self.health.failed(&err.to_string());
                    return Begun::Unavailable;
                }
                Err(_) => {
                    self.health.failed("no answer in time");
                    return Begun::Unavailable;
                }
            };
        self.health.answered();
        match reply.as_slice() {
            [kind, wait] if kind == "wait" => {
                Begun::Wait(Duration::from_millis(wait.parse().unwrap_or_else(|_| millis(l.login_window))))
            }
            [kind, windows @ ..] if kind == "ok" && windows.len() == 4 => {
                ticket.windows = windows.to_vec();
                Begun::Counted(ticket)
            }
            other => {
                self.health.failed(&format!("unexpected reply {other:?}"));
                Begun::Unavailable
            }
        }
    }

    /// The right password: settled before the response goes out (in a task of its own, so that
    /// it is settled even if the request is cancelled), so the client's next login finds its
    /// address known.
    pub(super) async fn succeeded(&self, ticket: Ticket) {
        let this = self.clone();
        let _ = tokio::spawn(async move { this.settle(ticket, Outcome::Succeeded).await }).await;
    }

    /// Never checked: taken back by a task of its own; the caller does not wait.
    pub(super) fn unchecked(&self, ticket: Ticket) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let this = self.clone();
            runtime.spawn(async move { this.settle(ticket, Outcome::Unchecked).await });
        }
    }

    /// Unreachable Redis: the attempt stays counted there until its windows end (the safe side).
    async fn settle(&self, ticket: Ticket, outcome: Outcome) {
        let mut invocation = SETTLE.prepare_invoke();
        for key in &ticket.keys {
            invocation.key(key);
        }
        invocation.arg(match outcome {
            Outcome::Succeeded => "succeeded",
            Outcome::Unchecked => "unchecked",
        });
        for window in &ticket.windows {
            invocation.arg(window);
        }
        invocation.arg(millis(KNOWN_FOR));
        let mut conn = self.conn.clone();
        match tokio::time::timeout(TIMEOUT, invocation.invoke_async::<i64>(&mut conn)).await {
            Ok(Ok(_)) => self.health.answered(),
            Ok(Err(err)) => self.health.failed(&err.to_string()),
            Err(_) => self.health.failed("no answer in time"),
        }
    }
}

#[cfg(test)]
mod tests;
