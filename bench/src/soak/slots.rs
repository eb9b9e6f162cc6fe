//! Opening a chat socket (welcome, join, the join's answer), the member slots and the observers
//! that live on them, and filling the rooms' history before the run.

use super::board::{Source, C};
use super::sockets::{record_end, Conn, Position, Role};
use super::*;
use crate::common::{next_text, secs, Ws};
use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// A socket joined to its room.
pub(super) struct Opened {
    pub(super) ws: Ws,
    /// Its token's `exp`.
    pub(super) exp: i64,
    /// Where the join's `history` says the room stands.
    pub(super) position: Position,
    /// With `since`: the history's `recovered`.
    pub(super) recovered: Option<bool>,
    /// Ids of the `message` frames before the `history` (with `since`: the recovered ones), and,
    /// when recovery was refused, of the history's messages (the client shows those instead).
    pub(super) received: Vec<i64>,
}

/// Connects to `node` as `user`, reads the welcome, joins `room` (with `since`, when given) and
/// reads the answer up to its `history`.
pub(super) async fn open(
    ctx: &Ctx,
    node: usize,
    user: usize,
    room: &str,
    since: Option<&Position>,
) -> anyhow::Result<Opened> {
    let (token, _) = ctx.pool.freshest(user).context("no login in the pool")?;
    let deadline = Instant::now() + secs(ctx.args.join_timeout);
    let left = || deadline.saturating_duration_since(Instant::now());
    let mut ws =
        tokio::time::timeout_at(deadline, ctx.targets[node].ws(&format!("/chat/ws?token={token}"), None))
            .await
            .context("connect timed out")?
            .context("opening /chat/ws")?;
    let welcome = next_text(&mut ws, left()).await?;
    let exp = match serde_json::from_str::<Frame>(&welcome) {
        Ok(f) if f.kind == "welcome" => f.exp.context("welcome without exp")?,
        _ => bail!("first frame is not a welcome: {welcome}"),
    };
    let mut join = json!({"type": "join", "room": room});
    if let Some(since) = since {
        join["since"] = json!({"offset": since.offset, "epoch": since.epoch});
    }
    ws.send(Message::text(join.to_string())).await?;
    let mut received = Vec::new();
    let mut members = false;
    loop {
        let text = next_text(&mut ws, left()).await.context("join not answered with members and history")?;
        let frame =
            serde_json::from_str::<Frame>(&text).with_context(|| format!("not a frame: {text:.200}"))?;
        match frame.kind.as_ref() {
            "members" => members = true,
            "presence" => {}
            "message" if frame.room.as_deref() == Some(room) => {
                received.push(frame.id.context("message without id")?);
            }
            "history" if members => {
                let position = Position {
                    offset: frame.offset.context("the join's history has no offset")?,
                    epoch: frame.epoch.as_deref().context("the join's history has no epoch")?.to_owned(),
                };
                if frame.recovered == Some(false) {
                    received.extend(frame.messages.iter().flatten().filter_map(|m| m.id));
                }
                return Ok(Opened { ws, exp, position, recovered: frame.recovered, received });
            }
            _ => bail!("unexpected answer to join: {text:.200}"),
        }
    }
}

/// Connects with the permit of the connect concurrency; counts failures.
pub(super) async fn connect(
    ctx: &Ctx,
    node: usize,
    user: usize,
    room: usize,
    since: Option<&Position>,
) -> Option<Opened> {
    let _permit = ctx.permits.acquire().await.ok()?;
    match open(ctx, node, user, &ctx.rooms[room], since).await {
        Ok(opened) => {
            ctx.board.add(C::connects);
            Some(opened)
        }
        Err(e) => {
            let what = format!("connect to room {}: {e:#}", ctx.rooms[room]);
            ctx.board.incident(C::connect_failures, Some(node), what);
            None
        }
    }
}

/// A member slot: connect, live, reconnect, until the stop.
pub(super) async fn member_slot(ctx: Arc<Ctx>, slot: usize, mut cmds: mpsc::Receiver<Cmd>) {
    let (user, room, node) = (slot % ctx.users.len(), slot % ctx.rooms.len(), ctx.member_node(slot));
    let mut stop = ctx.stop.clone();
    while !*stop.borrow() {
        let opened = tokio::select! {
            _ = stopped(&mut stop) => break,
            opened = connect(&ctx, node, user, room, None) => opened,
        };
        let Some(opened) = opened else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        // Commands sent while the slot was away are stale.
        while cmds.try_recv().is_ok() {}
        let role = Role::Member { refreshes: !chance(ctx.args.no_refresh_share) };
        let mut conn = Conn {
            ctx: &ctx,
            ws: opened.ws,
            user,
            room,
            node,
            role,
            exp: opened.exp,
            expect: VecDeque::new(),
            position: opened.position,
            retry_refresh: None,
        };
        ctx.slots[slot].joined.store(true, Ordering::Relaxed);
        ctx.board.open_members.fetch_add(1, Ordering::Relaxed);
        let end = conn.run(Some(&mut cmds), &mut stop).await;
        ctx.slots[slot].joined.store(false, Ordering::Relaxed);
        ctx.board.open_members.fetch_sub(1, Ordering::Relaxed);
        record_end(&ctx, role, node, &end, *stop.borrow());
    }
}

/// The observer of `room`, on its node: connected before anything is sent, it should never be
/// closed. When it is (its node killed, say), that is an incident, and it joins again on the same
/// node with `since` (the last id it has and the room's epoch): what it missed must come back.
pub(super) async fn observer(ctx: Arc<Ctx>, room: usize, first: Opened) {
    let (user, node) = (room % ctx.users.len(), ctx.observer_node(room));
    let mut stop = ctx.stop.clone();
    let mut ready = Some(first);
    let mut position = Position::default();
    while !*stop.borrow() {
        let opened = match ready.take() {
            Some(opened) => opened,
            None => {
                let opened = tokio::select! {
                    _ = stopped(&mut stop) => break,
                    opened = connect(&ctx, node, user, room, Some(&position)) => opened,
                };
                let Some(opened) = opened else {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                };
                match opened.recovered {
                    Some(true) => ctx.board.add(C::observer_recovered),
                    _ => {
                        let what = format!("{} joined again, not recovered: {:?}", ctx.rooms[room], position);
                        ctx.board.incident(C::observer_not_recovered, Some(node), what);
                    }
                }
                opened
            }
        };
        let rejoined = opened.recovered.is_some();
        for id in &opened.received {
            // Not recovered, the client shows the newest page instead: what it had is not new.
            if opened.recovered == Some(false) && ctx.room_state[room].has_seen(*id) {
                continue;
            }
            ctx.room_state[room].saw(*id, node, rejoined);
            ctx.board.add(if rejoined { C::recovered_deliveries } else { C::observer_deliveries });
        }
        let mut conn = Conn {
            ctx: &ctx,
            ws: opened.ws,
            user,
            room,
            node,
            role: Role::Observer,
            exp: opened.exp,
            expect: VecDeque::new(),
            position: Position {
                offset: opened.received.iter().copied().fold(opened.position.offset, i64::max),
                epoch: opened.position.epoch,
            },
            retry_refresh: None,
        };
        let end = conn.run(None, &mut stop).await;
        position = conn.position;
        let stopping = *stop.borrow();
        record_end(&ctx, Role::Observer, node, &end, stopping);
        if !stopping {
            ctx.board.incident(
                C::observer_reconnects,
                Some(node),
                format!("observer of {} closed", ctx.rooms[room]),
            );
        }
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
    // From the node after the observer's: with several nodes, these cross the broker.
    let node = (ctx.observer_node(room) + 1) % ctx.targets.len();
    let mut ws = open(ctx, node, room % ctx.users.len(), name, None)
        .await
        .with_context(|| format!("filling {name}"))?
        .ws;
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
                    ctx.room_state[room].ack(id, Source::Chat, node);
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
