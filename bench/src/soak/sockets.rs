//! The sockets: observers and member slots, what each expects and how each ends.

use super::*;
use crate::common::{next_text, secs, Ws};
use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

// --- sockets ------------------------------------------------------------------------------------

/// What a socket is.
#[derive(Clone, Copy)]
pub(super) enum Role {
    /// The room's observer: refreshes, never churned, records every message id.
    Observer,
    /// A member; `refreshes` is false for the share that lets its token expire.
    Member { refreshes: bool },
}

/// A reply the socket waits for, in the order the commands were sent.
pub(super) enum Expect {
    Refresh,
    Send(u64),
}

/// How a connection ended.
pub(super) enum End {
    /// We closed it (churn, or the end of the run).
    ByUs,
    /// The server closed it with this code.
    Server(u16),
    /// Without a close frame.
    Abnormal(String),
}

/// Connects as `user`, reads the welcome, joins `room` and waits for `members` and `history`.
/// Returns the socket and its token's `exp`.
pub(super) async fn open(ctx: &Ctx, user: usize, room: &str) -> anyhow::Result<(Ws, i64)> {
    let (token, _) = ctx.pool.freshest(user).context("no login in the pool")?;
    let timeout = secs(ctx.args.join_timeout);
    let deadline = Instant::now() + timeout;
    let mut ws = tokio::time::timeout_at(deadline, ctx.target.ws(&format!("/chat/ws?token={token}"), None))
        .await
        .context("connect timed out")?
        .context("opening /chat/ws")?;
    let welcome = next_text(&mut ws, deadline.saturating_duration_since(Instant::now())).await?;
    let exp = match serde_json::from_str::<Frame>(&welcome) {
        Ok(f) if f.kind == "welcome" => f.exp.context("welcome without exp")?,
        _ => bail!("first frame is not a welcome: {welcome}"),
    };
    ws.send(Message::text(json!({"type": "join", "room": room}).to_string())).await?;
    let (mut members, mut history) = (false, false);
    while !(members && history) {
        let text = next_text(&mut ws, deadline.saturating_duration_since(Instant::now()))
            .await
            .context("join not answered with members and history")?;
        match serde_json::from_str::<Frame>(&text).map(|f| f.kind.into_owned()).as_deref() {
            Ok("members") => members = true,
            Ok("history") => history = true,
            Ok("presence") => {}
            _ => bail!("unexpected answer to join: {text}"),
        }
    }
    Ok((ws, exp))
}

/// One connection of a slot or an observer, until it ends.
pub(super) struct Conn<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) ws: Ws,
    pub(super) user: usize,
    pub(super) room: usize,
    pub(super) role: Role,
    pub(super) exp: i64,
    pub(super) expect: VecDeque<Expect>,
}

impl Conn<'_> {
    /// Runs the connection until it ends; `cmds` is `None` for an observer.
    pub(super) async fn run(
        mut self,
        mut cmds: Option<&mut mpsc::Receiver<Cmd>>,
        stop: &mut watch::Receiver<bool>,
    ) -> End {
        let end = loop {
            let cmd = async {
                match cmds.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stopped(stop) => break self.close().await,
                Some(cmd) = cmd => match cmd {
                    Cmd::Churn => {
                        self.ctx.board.add(C::churn_closes);
                        break self.close().await;
                    }
                    Cmd::Send(seq) => {
                        if let Err(e) = self.send(seq).await {
                            break End::Abnormal(format!("send: {e}"));
                        }
                    }
                },
                frame = self.ws.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        if let Err(e) = self.on_text(text.as_str()).await {
                            break End::Abnormal(format!("refresh: {e}"));
                        }
                    }
                    Some(Ok(Message::Close(close))) => {
                        break End::Server(close.map_or(1005, |c| u16::from(c.code)));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break End::Abnormal(e.to_string()),
                    None => break End::Abnormal("connection closed without a close frame".to_owned()),
                },
            }
        };
        let unanswered = self.expect.iter().filter(|e| matches!(e, Expect::Send(_))).count();
        self.ctx.board.pending_sends.fetch_sub(unanswered as i64, Ordering::Relaxed);
        for _ in 0..unanswered {
            self.ctx.board.add(C::unacked_at_close);
        }
        end
    }

    pub(super) async fn send(&mut self, seq: u64) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        let frame = json!({
            "type": "send",
            "room": self.ctx.rooms[self.room],
            "text": format!("{TEXT_PREFIX}{seq}"),
            "ref": seq.to_string(),
        });
        self.ws.send(Message::text(frame.to_string())).await?;
        self.ctx.board.add(C::sends);
        self.ctx.board.pending_sends.fetch_add(1, Ordering::Relaxed);
        self.expect.push_back(Expect::Send(seq));
        Ok(())
    }

    pub(super) async fn on_text(&mut self, text: &str) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        let board = &self.ctx.board;
        let Ok(frame) = serde_json::from_str::<Frame>(text) else {
            board.add(C::protocol_surprises);
            board.error(format!("not a frame: {text:.200}"));
            return Ok(());
        };
        match frame.kind.as_ref() {
            "message" => {
                board.add(C::deliveries);
                if matches!(self.role, Role::Observer) {
                    board.add(C::observer_deliveries);
                    let room = &self.ctx.rooms[self.room];
                    match (frame.id, frame.room.as_deref()) {
                        (Some(id), Some(r)) if r == room => {
                            *self.ctx.room_state[self.room]
                                .seen
                                .lock()
                                .expect("seen lock")
                                .entry(id)
                                .or_default() += 1;
                        }
                        _ => {
                            board.add(C::protocol_surprises);
                            board.error(format!("observer of {room} got {text:.200}"));
                        }
                    }
                }
            }
            "ack" => match (self.expect.pop_front(), frame.id) {
                (Some(Expect::Send(seq)), Some(id))
                    if frame.reference.as_deref() == Some(seq.to_string().as_str()) =>
                {
                    board.add(C::acks);
                    board.pending_sends.fetch_sub(1, Ordering::Relaxed);
                    self.ctx.room_state[self.room].acked.lock().expect("acked lock").push(id);
                }
                (expected, _) => {
                    if matches!(expected, Some(Expect::Send(_))) {
                        board.pending_sends.fetch_sub(1, Ordering::Relaxed);
                    }
                    board.add(C::protocol_surprises);
                    board.error(format!("unexpected ack: {text:.200}"));
                }
            },
            "refreshed" => match self.expect.pop_front() {
                Some(Expect::Refresh) => {
                    board.add(C::refreshed);
                    if let Some(exp) = frame.exp {
                        self.exp = exp;
                    }
                }
                other => {
                    if matches!(other, Some(Expect::Send(_))) {
                        board.pending_sends.fetch_sub(1, Ordering::Relaxed);
                    }
                    board.add(C::protocol_surprises);
                    board.error(format!("unexpected refreshed: {text:.200}"));
                }
            },
            "error" => {
                let detail = frame.detail.as_deref().unwrap_or("");
                match self.expect.pop_front() {
                    Some(Expect::Refresh) => {
                        board.add(C::refresh_failed);
                        board.error(format!("in-band refresh refused: {detail}"));
                    }
                    Some(Expect::Send(_)) => {
                        board.pending_sends.fetch_sub(1, Ordering::Relaxed);
                        board.add(C::send_errors);
                        board.error(format!("send refused: {detail}"));
                    }
                    None => {
                        board.add(C::protocol_surprises);
                        board.error(format!("unexpected error frame: {text:.200}"));
                    }
                }
            }
            "expiring" => {
                board.add(C::expiring);
                let refreshes = match self.role {
                    Role::Observer => true,
                    Role::Member { refreshes } => refreshes,
                };
                if refreshes {
                    self.refresh().await?;
                }
            }
            "presence" | "members" | "history" | "pong" => {}
            _ => {
                board.add(C::protocol_surprises);
                board.error(format!("unexpected frame: {text:.200}"));
            }
        }
        Ok(())
    }

    /// Rebinds the socket to the freshest pool token of its user, when that one lives longer.
    pub(super) async fn refresh(&mut self) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        let board = &self.ctx.board;
        match self.ctx.pool.freshest(self.user) {
            Some((token, exp)) if exp > self.exp => {
                self.ws.send(Message::text(json!({"type": "refresh", "token": token}).to_string())).await?;
                board.add(C::refresh_sent);
                self.expect.push_back(Expect::Refresh);
            }
            _ => {
                // Refreshing to a token that expires no later would bring `expiring` straight back.
                board.add(C::refresh_skipped_stale);
                board.error(format!("no pool token outlives the socket's (exp {})", self.exp));
            }
        }
        Ok(())
    }

    /// Closes with 1000 and reads until the server's close (acks still arriving are counted).
    pub(super) async fn close(&mut self) -> End {
        let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
        if let Err(e) = self.ws.send(Message::Close(Some(close))).await {
            return End::Abnormal(format!("closing: {e}"));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let _ = self.on_text(text.as_str()).await;
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) => return End::ByUs,
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return End::Abnormal(format!("closing: {e}")),
                Err(_) => return End::Abnormal("no close reply within 5 s".to_owned()),
            }
        }
    }
}

/// Counts how a connection ended: ours and expected 4001s are fine, anything else is an error.
pub(super) fn record_end(ctx: &Ctx, role: Role, end: &End, stopping: bool) {
    let board = &ctx.board;
    match end {
        End::ByUs if stopping => board.add(C::final_closes),
        End::ByUs => {}
        End::Server(code) => {
            board.server_close(*code);
            match (code, role) {
                (4001, Role::Member { refreshes: false }) => board.add(C::closed_4001_expected),
                (4001, _) => {
                    board.add(C::closed_4001_unexpected);
                    board.error("closed with 4001 although it refreshed".to_owned());
                }
                (code, _) => board.error(format!("closed by the server with {code}")),
            }
        }
        End::Abnormal(why) => {
            board.add(C::abnormal_closes);
            board.error(format!("connection ended abnormally: {why}"));
        }
    }
}

/// Connects with the permit of the connect concurrency; counts failures.
pub(super) async fn connect(ctx: &Ctx, user: usize, room: usize) -> Option<(Ws, i64)> {
    let _permit = ctx.permits.acquire().await.ok()?;
    match open(ctx, user, &ctx.rooms[room]).await {
        Ok(opened) => {
            ctx.board.add(C::connects);
            Some(opened)
        }
        Err(e) => {
            ctx.board.add(C::connect_failures);
            ctx.board.error(format!("connect to room {}: {e:#}", ctx.rooms[room]));
            None
        }
    }
}

/// A member slot: connect, live, reconnect, until the stop.
pub(super) async fn member_slot(ctx: Arc<Ctx>, slot: usize, mut cmds: mpsc::Receiver<Cmd>) {
    let (user, room) = (slot % ctx.users.len(), slot % ctx.rooms.len());
    let mut stop = ctx.stop.clone();
    while !*stop.borrow() {
        let opened = tokio::select! {
            _ = stopped(&mut stop) => break,
            opened = connect(&ctx, user, room) => opened,
        };
        let Some((ws, exp)) = opened else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        // Commands sent while the slot was away are stale.
        while cmds.try_recv().is_ok() {}
        let role = Role::Member { refreshes: !chance(ctx.args.no_refresh_share) };
        let conn = Conn { ctx: &ctx, ws, user, room, role, exp, expect: VecDeque::new() };
        ctx.slots[slot].joined.store(true, Ordering::Relaxed);
        ctx.board.open_members.fetch_add(1, Ordering::Relaxed);
        let end = conn.run(Some(&mut cmds), &mut stop).await;
        ctx.slots[slot].joined.store(false, Ordering::Relaxed);
        ctx.board.open_members.fetch_sub(1, Ordering::Relaxed);
        record_end(&ctx, role, &end, *stop.borrow());
    }
}

/// The observer of `room`: connected before anything is sent, it should never be closed; when it
/// is, that is counted and it reconnects (what it missed meanwhile shows as missing).
pub(super) async fn observer(ctx: Arc<Ctx>, room: usize, ws: Ws, exp: i64) {
    let user = room % ctx.users.len();
    let mut stop = ctx.stop.clone();
    let mut ws_exp = Some((ws, exp));
    while !*stop.borrow() {
        let (ws, exp) = match ws_exp.take() {
            Some(opened) => opened,
            None => {
                ctx.board.add(C::observer_reconnects);
                match connect(&ctx, user, room).await {
                    Some(opened) => opened,
                    None => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
        };
        let conn = Conn { ctx: &ctx, ws, user, room, role: Role::Observer, exp, expect: VecDeque::new() };
        let end = conn.run(None, &mut stop).await;
        let stopping = *stop.borrow();
        if !stopping {
            ctx.board.error(format!("observer of {} closed", ctx.rooms[room]));
        }
        record_end(&ctx, Role::Observer, &end, stopping);
    }
}

/// Puts `--prefill` messages in `room` from a socket of its own (paced under the per-socket rate
/// limit), each acked and recorded like any publication: every later join then gets a `history`
/// as large as it will ever be. The server keeps a socket's write buffer at the size of the
/// largest frame it sent, so while the rooms filled up, memory would grow with it and never
/// settle within a run.
pub(super) async fn prefill(ctx: &Ctx, room: usize) -> anyhow::Result<()> {
    if ctx.args.prefill == 0 {
        return Ok(());
    }
    let name = &ctx.rooms[room];
    let (mut ws, _) =
        open(ctx, room % ctx.users.len(), name).await.with_context(|| format!("filling {name}"))?;
    ctx.board.add(C::connects);
    let timeout = secs(ctx.args.join_timeout);
    for n in 0..ctx.args.prefill {
        let reference = format!("fill-{n}");
        let frame =
            json!({"type": "send", "room": name, "text": format!("{TEXT_PREFIX}fill {n}"), "ref": reference});
        ws.send(Message::text(frame.to_string())).await?;
        ctx.board.add(C::sends);
        loop {
            let text =
                next_text(&mut ws, timeout).await.with_context(|| format!("filling {name}: no ack"))?;
            let Ok(frame) = serde_json::from_str::<Frame>(&text) else {
                bail!("filling {name}: {text:.200}")
            };
            match (frame.kind.as_ref(), frame.id) {
                ("ack", Some(id)) if frame.reference.as_deref() == Some(reference.as_str()) => {
                    ctx.board.add(C::acks);
                    ctx.room_state[room].acked.lock().expect("acked lock").push(id);
                    break;
                }
                ("message" | "presence", _) => {}
                _ => bail!("filling {name}: unexpected {text:.200}"),
            }
        }
        // 40 a second: under the default 50 a second per socket, the join included.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
    ws.send(Message::Close(Some(close))).await?;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(timeout, ws.next()).await {
        if let Message::Close(_) = frame {
            break;
        }
    }
    Ok(())
}
