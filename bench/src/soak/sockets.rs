//! One chat connection of a member or an observer: what it expects and how it ends.

use super::board::{Source, C};
use super::*;
use crate::common::Ws;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// How long a client waits before sending again an in-band refresh the server answered with
/// `unavailable`.
const REFRESH_RETRY: Duration = Duration::from_secs(2);

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

/// Where a room stands for a socket: the last message id it has, in which epoch. An observer
/// joins again with it as `since`.
#[derive(Clone, Debug, Default)]
pub(super) struct Position {
    pub(super) offset: i64,
    pub(super) epoch: String,
}

/// One connection of a slot or an observer, until it ends.
pub(super) struct Conn<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) ws: Ws,
    pub(super) user: usize,
    pub(super) room: usize,
    pub(super) node: usize,
    pub(super) role: Role,
    pub(super) exp: i64,
    pub(super) expect: VecDeque<Expect>,
    /// Where the room stands for this socket (kept up to date for observers).
    pub(super) position: Position,
    /// When to send the in-band refresh again that the server could not carry out (`unavailable`).
    pub(super) retry_refresh: Option<Instant>,
}

impl Conn<'_> {
    /// Runs the connection until it ends; `cmds` is `None` for an observer.
    pub(super) async fn run(
        &mut self,
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
            let retry = async {
                match self.retry_refresh {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stopped(stop) => break self.close().await,
                () = retry => {
                    self.retry_refresh = None;
                    if let Err(e) = self.refresh().await {
                        break End::Abnormal(format!("refresh: {e}"));
                    }
                }
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
        self.expect.clear();
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

    /// A surprise: counted, and kept among the samples.
    fn surprise(&self, what: String) {
        self.ctx.board.incident(C::protocol_surprises, Some(self.node), what);
    }

    fn on_message(&mut self, frame: &Frame<'_>, text: &str) {
        let board = &self.ctx.board;
        board.add(C::deliveries);
        if !matches!(self.role, Role::Observer) {
            return;
        }
        board.add(C::observer_deliveries);
        let room = &self.ctx.rooms[self.room];
        match (frame.id, frame.room.as_deref()) {
            (Some(id), Some(r)) if r == room => {
                self.ctx.room_state[self.room].saw(id, self.node, false);
                self.position.offset = self.position.offset.max(id);
                // A message names its epoch: what an observer that joined the room before its
                // first message (told epoch "") passes back with `since`.
                if let Some(epoch) = frame.epoch.as_deref().filter(|e| *e != self.position.epoch) {
                    self.position.epoch = epoch.to_owned();
                }
            }
            _ => self.surprise(format!("observer of {room} got {text:.200}")),
        }
    }

    pub(super) async fn on_text(&mut self, text: &str) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        let board = &self.ctx.board;
        let Ok(frame) = serde_json::from_str::<Frame>(text) else {
            self.surprise(format!("not a frame: {text:.200}"));
            return Ok(());
        };
        match frame.kind.as_ref() {
            "message" => self.on_message(&frame, text),
            "ack" => match (self.expect.pop_front(), frame.id) {
                (Some(Expect::Send(seq)), Some(id))
                    if frame.reference.as_deref() == Some(seq.to_string().as_str()) =>
                {
                    board.add(C::acks);
                    board.pending_sends.fetch_sub(1, Ordering::Relaxed);
                    self.ctx.room_state[self.room].ack(id, Source::Chat, self.node);
                }
                (expected, _) => {
                    if matches!(expected, Some(Expect::Send(_))) {
                        board.pending_sends.fetch_sub(1, Ordering::Relaxed);
                    }
                    self.surprise(format!("unexpected ack: {text:.200}"));
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
                    self.surprise(format!("unexpected refreshed: {text:.200}"));
                }
            },
            "error" => {
                let detail = frame.detail.as_deref().unwrap_or("");
                match self.expect.pop_front() {
                    Some(Expect::Refresh) if frame.code.as_deref() == Some("unavailable") => {
                        // The server could not reach its database: a client tries again shortly.
                        let what = format!("in-band refresh unavailable: {detail}");
                        board.incident(C::refresh_unavailable, Some(self.node), what);
                        self.retry_refresh = Some(Instant::now() + REFRESH_RETRY);
                    }
                    Some(Expect::Refresh) => {
                        let what = format!("in-band refresh refused: {detail}");
                        board.incident(C::refresh_failed, Some(self.node), what);
                    }
                    Some(Expect::Send(_)) => {
                        board.pending_sends.fetch_sub(1, Ordering::Relaxed);
                        board.incident(C::send_errors, Some(self.node), format!("send refused: {detail}"));
                    }
                    None => self.surprise(format!("unexpected error frame: {text:.200}")),
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
            _ => self.surprise(format!("unexpected frame: {text:.200}")),
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
                let what = format!("no pool token outlives the socket's (exp {})", self.exp);
                board.incident(C::refresh_skipped_stale, Some(self.node), what);
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

/// Counts how a connection of `node` ended: ours and expected 4001s are fine, anything else is
/// an incident.
pub(super) fn record_end(ctx: &Ctx, role: Role, node: usize, end: &End, stopping: bool) {
    let board = &ctx.board;
    match end {
        End::ByUs if stopping => board.add(C::final_closes),
        End::ByUs => {}
        End::Server(code) => {
            board.server_close(*code);
            match (code, role) {
                (4001, Role::Member { refreshes: false }) => {
                    board.add(C::closed_4001_expected);
                    board.node_close(node, "4001, did not refresh (expected)");
                }
                (4001, _) => {
                    board.node_close(node, "4001, refreshed");
                    board.incident(
                        C::closed_4001_unexpected,
                        Some(node),
                        "closed with 4001 although it refreshed",
                    );
                }
                (code, _) => {
                    board.node_close(node, code.to_string());
                    board.incident(
                        C::server_closes_other,
                        Some(node),
                        format!("closed by the server with {code}"),
                    );
                }
            }
        }
        End::Abnormal(why) => {
            board.node_close(node, "without a close frame");
            board.incident(C::abnormal_closes, Some(node), format!("connection ended abnormally: {why}"));
        }
    }
}
