//! Password hashing: argon2id for new hashes, bcrypt (as passlib writes it) still verified and
//! upgraded on the next login. Hashing is CPU-bound and deliberately slow, so it runs on the
//! pool's own threads behind a bounded queue: a login storm queues there, never on the runtime.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::oneshot;

/// Longest password accepted, in bytes. Checked before any hashing, so a huge body cannot buy a
/// long hash computation.
pub(crate) const MAX_PASSWORD_BYTES: usize = 1024;

/// OWASP's recommended argon2id parameters: 19 MiB, 2 passes, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("static argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a new password with argon2id. Blocking: call from the blocking pool or the CLI.
pub(crate) fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing with valid parameters cannot fail")
        .to_string()
}

/// Outcome of checking a password against a stored hash.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Valid {
        /// A fresh argon2id hash when the stored one is bcrypt or has weaker parameters.
        rehash: Option<String>,
    },
    Invalid,
}

/// Blocking verification against a stored hash; unknown formats never verify.
fn verify_blocking(password: &str, stored: &str) -> Verdict {
    if stored.starts_with("$2") {
        return match bcrypt::verify(password, stored) {
            Ok(true) => Verdict::Valid { rehash: Some(hash(password)) },
            _ => Verdict::Invalid,
        };
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return Verdict::Invalid;
    };
    if argon2().verify_password(password.as_bytes(), &parsed).is_err() {
        return Verdict::Invalid;
    }
    let current = Params::try_from(&parsed).ok();
    let wanted = argon2().params().clone();
    let outdated = parsed.algorithm.as_str() != "argon2id"
        || current.is_none_or(|p| p.m_cost() < wanted.m_cost() || p.t_cost() < wanted.t_cost());
    Verdict::Valid { rehash: outdated.then(|| hash(password)) }
}

#[derive(Debug, thiserror::Error)]
#[error("too many logins in progress")]
pub(crate) struct Busy;

type Job = Box<dyn FnOnce() + Send>;

/// The hashing pool shared by every login: a few dedicated threads at a lower scheduling
/// priority, so that hashing takes the CPU the sockets leave idle rather than the other way
/// round, and a bounded queue in front of them.
pub(crate) struct Hasher {
    jobs: SyncSender<Job>,
    /// Verified against when the user does not exist, so an unknown user costs one real hash.
    dummy: String,
    /// Cumulative hashing time and count, for metrics.
    pub stats: Arc<HashStats>,
}

#[derive(Default)]
pub(crate) struct HashStats {
    pub count: AtomicUsize,
    pub micros: AtomicUsize,
}

/// Puts the calling thread in Linux's SCHED_IDLE class: it runs only on CPU time no normal
/// thread wants, and yields the moment a socket's task wakes. Where that is refused, a high
/// niceness does nearly as well.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread (id 0), no memory is shared with them.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            libc::setpriority(libc::PRIO_PROCESS, 0, 19);
        }
    }
}

impl Hasher {
    /// `threads` hash at once; `max_queued` more wait; beyond that, [`Busy`].
    pub(crate) fn new(threads: usize, max_queued: usize) -> Hasher {
        let (jobs, queue) = sync_channel::<Job>(max_queued);
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("wsguard-hash-{n}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = queue.lock().expect("hash queue lock poisoned").recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .expect("spawning a hashing thread");
        }
        Hasher { jobs, dummy: hash(&uuid::Uuid::new_v4().to_string()), stats: Arc::default() }
    }

    /// Verifies `password` against `stored`, or against a dummy hash when the user is unknown,
    /// so both cases take the same time. Errs with [`Busy`] when the queue is full.
    pub(crate) async fn verify(&self, password: String, stored: Option<String>) -> Result<Verdict, Busy> {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy.clone());
        let verdict = self.run(move || verify_blocking(&password, &stored)).await?;
        Ok(if known { verdict } else { Verdict::Invalid })
    }

    /// Hashes a new password on the pool.
    pub(crate) async fn hash(&self, password: String) -> Result<String, Busy> {
        self.run(move || hash(&password)).await
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, Busy> {
        let (done, result) = oneshot::channel();
        let stats = self.stats.clone();
        let job: Job = Box::new(move || {
            let started = Instant::now();
            let value = work();
            stats.count.fetch_add(1, Ordering::Relaxed);
            stats.micros.fetch_add(started.elapsed().as_micros() as usize, Ordering::Relaxed);
            // The request may have gone away meanwhile; nobody to tell then.
            let _ = done.send(value);
        });
        self.jobs.try_send(job).map_err(|_| Busy)?;
        Ok(result.await.expect("hashing threads live as long as the pool and do not panic"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip_needs_no_rehash() {
        let stored = hash("secret");
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(verify_blocking("secret", &stored), Verdict::Valid { rehash: None });
        assert_eq!(verify_blocking("wrong", &stored), Verdict::Invalid);
    }

    #[test]
    fn bcrypt_verifies_and_asks_for_argon2id() {
        let stored = bcrypt::hash("secret", 4).unwrap();
        assert!(stored.starts_with("$2b$"));
        match verify_blocking("secret", &stored) {
            Verdict::Valid { rehash: Some(new) } => assert!(new.starts_with("$argon2id$")),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(verify_blocking("wrong", &stored), Verdict::Invalid);
    }

    #[test]
    fn weaker_argon2_parameters_are_upgraded() {
        let weak = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8, 1, 1, None).unwrap());
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let stored = weak.hash_password(b"secret", &salt).unwrap().to_string();
        assert!(matches!(verify_blocking("secret", &stored), Verdict::Valid { rehash: Some(_) }));
    }

    #[test]
    fn garbage_hashes_never_verify() {
        for stored in ["", "plain", "$2b$garbage", "$argon2id$v=19$nonsense"] {
            assert_eq!(verify_blocking("secret", stored), Verdict::Invalid);
        }
    }

    #[tokio::test]
    async fn a_full_queue_is_busy_at_once() {
        let hasher = Arc::new(Hasher::new(1, 1));
        // Hold the only hashing thread until the end of the test.
        let (started, running) = std::sync::mpsc::channel();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let blocker = tokio::spawn({
            let hasher = hasher.clone();
            async move {
                hasher
                    .run(move || {
                        started.send(()).unwrap();
                        held.recv().unwrap();
                    })
                    .await
            }
        });
        tokio::task::spawn_blocking(move || running.recv().unwrap()).await.unwrap();
        let queued = tokio::spawn({
            let hasher = hasher.clone();
            async move { hasher.hash("queued".into()).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let started = Instant::now();
        assert!(
            matches!(hasher.hash("third".into()).await, Err(Busy)),
            "one running, one queued: the third is refused"
        );
        assert!(started.elapsed().as_millis() < 5, "refused without waiting");
        release.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        assert!(queued.await.unwrap().unwrap().starts_with("$argon2id$"));
    }
}
