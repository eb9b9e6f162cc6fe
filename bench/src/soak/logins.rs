//! Logins: the pool of real logins kept fresh, and the wrong-password trickle.

use super::board::C;
use super::*;
use crate::common::secs;
use crate::http::HttpConn;
use anyhow::{bail, Context};

use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// One login of the pool.
pub(super) struct Login {
    pub(super) user: usize,
    pub(super) access: String,
    pub(super) refresh: String,
    /// Unix seconds the access token expires at.
    pub(super) exp: i64,
    pub(super) born: Instant,
}

/// The token pool: logins by password, refreshed in turn; sockets take the freshest access token
/// of their user.
#[derive(Default)]
pub(super) struct Pool {
    pub(super) logins: Mutex<Vec<Login>>,
}

impl Pool {
    pub(super) fn freshest(&self, user: usize) -> Option<(String, i64)> {
        let logins = self.logins.lock().expect("pool lock");
        logins.iter().filter(|l| l.user == user).max_by_key(|l| l.exp).map(|l| (l.access.clone(), l.exp))
    }
}

/// The logins of the pool, by password, before any socket; the pool's refresh period.
pub(super) async fn fill_pool(ctx: &Ctx) -> anyhow::Result<(i64, Duration)> {
    let mut conn = HttpConn::connect(ctx.args.addr).await?;
    for user in 0..ctx.users.len() {
        for _ in 0..ctx.args.logins_per_user {
            let login = log_in(ctx, &mut conn, user).await?;
            ctx.board.add(C::logins_ok);
            ctx.pool.logins.lock().expect("pool lock").push(login);
        }
    }
    let access_ttl = {
        let pool = ctx.pool.logins.lock().expect("pool lock");
        (pool.iter().map(|l| l.exp).min().unwrap_or(0) - unix_now()).max(1)
    };
    let refresh_every =
        ctx.args.pool_refresh_every.map_or(secs(access_ttl as f64 / 3.0), secs).max(Duration::from_secs(1));
    Ok((access_ttl, refresh_every))
}

// --- logins -------------------------------------------------------------------------------------

/// A token pair from a response body.
pub(super) fn pair(body: &[u8], user: usize) -> anyhow::Result<Login> {
    let value: Value = serde_json::from_slice(body).context("token pair: not JSON")?;
    let field = |name: &str| value[name].as_str().map(str::to_owned).with_context(|| format!("no {name}"));
    let expires_in = value["expires_in"].as_i64().context("no expires_in")?;
    Ok(Login {
        user,
        access: field("access_token")?,
        refresh: field("refresh_token")?,
        exp: unix_now() + expires_in,
        born: Instant::now(),
    })
}

/// A password login of `user` (`POST /token`).
pub(super) async fn log_in(ctx: &Ctx, conn: &mut HttpConn, user: usize) -> anyhow::Result<Login> {
    let (name, password) = &ctx.users[user];
    let (status, _, body) = conn.login(name, password).await?;
    if status != 200 {
        bail!("POST /token for {name} answered {status}: {}", String::from_utf8_lossy(&body));
    }
    pair(&body, user)
}

/// Keeps the pool fresh until `done`: every login refreshed each `every`, and a login replaced by
/// a new password login each `--login-every` seconds (in turn over the users, the oldest first).
pub(super) async fn pool_upkeep(ctx: Arc<Ctx>, every: Duration, mut done: watch::Receiver<bool>) {
    let board = &ctx.board;
    // Connected when first needed: the server closes a connection whose first request does not
    // come within its header-read timeout (10 s), as it should.
    let mut conn: Option<HttpConn> = None;
    let login_every = (ctx.args.login_every > 0.0).then(|| secs(ctx.args.login_every));
    let mut next_refresh = Instant::now() + every;
    let mut next_login = login_every.map(|d| Instant::now() + d);
    let mut next_user = 0;
    loop {
        let wake = next_login.map_or(next_refresh, |l| l.min(next_refresh));
        tokio::select! {
            _ = done.changed() => return,
            _ = tokio::time::sleep_until(wake) => {}
        }
        if conn.is_none() {
            match HttpConn::connect(ctx.args.addr).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    board.incident(C::pool_connect_failures, Some(0), format!("pool: {e:#}"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let Some(conn) = conn.as_mut() else { continue };
        if Instant::now() >= next_refresh {
            next_refresh += every;
            let logins: Vec<(usize, usize, String)> = {
                let pool = ctx.pool.logins.lock().expect("pool lock");
                pool.iter().enumerate().map(|(i, l)| (i, l.user, l.refresh.clone())).collect()
            };
            for (i, user, refresh) in logins {
                let result = match conn.post_bearer("/refresh", &refresh).await {
                    Ok((status, _, body)) if status == 200 => pair(&body, user),
                    Ok((status, _, body)) => Err(anyhow::anyhow!(
                        "POST /refresh answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    )),
                    Err(e) => Err(e),
                };
                match result {
                    Ok(login) => {
                        board.add(C::pool_refreshes_ok);
                        let mut pool = ctx.pool.logins.lock().expect("pool lock");
                        // The login may have been replaced meanwhile: keep the newer one.
                        if pool.get(i).is_some_and(|l| l.refresh == refresh) {
                            let born = pool[i].born;
                            pool[i] = Login { born, ..login };
                        }
                    }
                    Err(e) => {
                        board.incident(C::pool_refreshes_failed, Some(0), format!("pool refresh: {e:#}"));
                        replace_login(&ctx, conn, user).await;
                    }
                }
            }
        }
        if let (Some(at), Some(every)) = (next_login, login_every) {
            if Instant::now() >= at {
                next_login = Some(at + every);
                replace_login(&ctx, conn, next_user).await;
                next_user = (next_user + 1) % ctx.users.len();
            }
        }
    }
}

/// Logs `user` in by password and puts the login in place of that user's oldest.
pub(super) async fn replace_login(ctx: &Ctx, conn: &mut HttpConn, user: usize) {
    match log_in(ctx, conn, user).await {
        Ok(login) => {
            ctx.board.add(C::logins_ok);
            let mut pool = ctx.pool.logins.lock().expect("pool lock");
            let oldest = pool.iter().enumerate().filter(|(_, l)| l.user == user).min_by_key(|(_, l)| l.born);
            match oldest.map(|(i, _)| i) {
                Some(i) => pool[i] = login,
                None => pool.push(login),
            }
        }
        Err(e) => {
            ctx.board.incident(C::logins_failed, Some(0), format!("login: {e:#}"));
        }
    }
}

/// Wrong passwords from `--wrong-login-from` until `until`, in turn for each user and one unknown
/// name; answers counted by status.
pub(super) async fn wrong_logins(ctx: Arc<Ctx>, until: Instant) {
    let board = &ctx.board;
    let every = secs(1.0 / ctx.args.wrong_logins_per_sec);
    let mut names: Vec<String> = ctx.users.iter().map(|(n, _)| n.clone()).collect();
    names.push("soak-nobody".to_owned());
    let mut conn = None;
    let mut ticks = tokio::time::interval(every);
    for n in 0u64.. {
        ticks.tick().await;
        if Instant::now() >= until {
            break;
        }
        if conn.is_none() {
            match HttpConn::connect_from(ctx.args.addr, Some(ctx.args.wrong_login_from)).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    board.incident(C::wrong_login_transport_errors, Some(0), format!("wrong login: {e:#}"));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let name = &names[n as usize % names.len()];
        match c.login(name, &format!("wrong-{n}")).await {
            Ok((status, _, body)) => {
                board.add(C::wrong_logins);
                if !matches!(status.as_u16(), 401 | 429) {
                    let what =
                        format!("wrong login answered {status}: {:.200}", String::from_utf8_lossy(&body));
                    board.incident(C::wrong_login_unexpected_status, Some(0), what);
                }
                *board
                    .wrong_login_statuses
                    .lock()
                    .expect("statuses lock")
                    .entry(status.as_u16())
                    .or_default() += 1;
            }
            Err(e) => {
                board.incident(C::wrong_login_transport_errors, Some(0), format!("wrong login: {e:#}"));
                conn = None;
            }
        }
    }
}
