//! Every member connecting and following its channel, `--concurrency` at a time, before the run:
//! on a WebSocket of `--protocol`, or (`--transport http_stream|sse`) on an emulated connection,
//! subscribed by `POST /emulation` to its node. Publishers always take a WebSocket.

use super::board::Board;
use super::drive::{self, Member, Sink};
use super::FanoutArgs;
use crate::common::{secs, Target};
use crate::emulated::{self, Posts};
use anyhow::{anyhow, Context};
use futures_util::StreamExt;
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

/// Where a member connects, and what it follows.
struct Seat {
    /// Index of the node: 0 is `--addr`, then the `--node`s in order.
    node: usize,
    channel: usize,
    is_sender: bool,
}

/// A joined member: its channel and, for a publisher, its sending half.
type Joined = anyhow::Result<(usize, Option<Sink>)>;

/// Connects and subscribes every member; returns the member tasks (already reading) and each
/// channel's publisher.
pub(super) async fn join_all(
    args: &Arc<FanoutArgs>,
    targets: &[Arc<Target>],
    board: &Arc<Board>,
) -> anyhow::Result<(Vec<JoinHandle<()>>, Vec<Sink>)> {
    let token: Option<Arc<str>> = match args.protocol {
        super::Protocol::Bare => None,
        _ => Some(args.target.token().await?.context("wsguard needs a token")?.into()),
    };
    let per_channel = args.members / args.channels;
    let nodes = targets.len();
    // Each node's `POST /emulation` connections, shared by its streams.
    let posts: Vec<Arc<Posts>> = targets.iter().map(|t| Arc::new(Posts::new(t.addr, t.source))).collect();
    let permits = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let (joined_tx, mut joined_rx) = mpsc::channel::<Joined>(args.members);
    let mut tasks = Vec::with_capacity(args.members);
    for i in 0..args.members {
        let (channel, j) = (i / per_channel, i % per_channel);
        // Publishing over HTTP, no member publishes.
        let seat = Seat { node: j % nodes, channel, is_sender: j == 0 && !args.http_publish };
        let (args, target, token, posts, permits, joined) = (
            args.clone(),
            targets[seat.node].clone(),
            token.clone(),
            posts[seat.node].clone(),
            permits.clone(),
            joined_tx.clone(),
        );
        let member = Member::new(args.protocol, seat.node, seat.is_sender, board.clone());
        tasks.push(tokio::spawn(async move {
            let name = args.channel_name(seat.channel);
            let on = || format!("member of {name} on node {} ({})", seat.node, target.addr);
            let permit = permits.acquire().await;
            if args.transport.is_stream() && !seat.is_sender {
                let token = token.as_deref().unwrap_or_default();
                let timeout = secs(args.join_timeout);
                let stream = emulated::join(&target, args.transport, token, &name, &posts, timeout).await;
                drop(permit);
                match stream.with_context(on) {
                    Ok(stream) => {
                        let _ = joined.send(Ok((seat.channel, None))).await;
                        drive::stream_member(member, stream, posts).await;
                    }
                    Err(e) => drop(joined.send(Err(e)).await),
                }
                return;
            }
            let ws = args
                .protocol
                .join(&target, token.as_deref(), &name, secs(args.join_timeout))
                .await
                .with_context(on);
            drop(permit);
            let (sink, stream) = match ws {
                Ok(ws) => ws.split(),
                Err(e) => return drop(joined.send(Err(e)).await),
            };
            let kept = if seat.is_sender {
                let _ = joined.send(Ok((seat.channel, Some(sink)))).await;
                None
            } else {
                let _ = joined.send(Ok((seat.channel, None))).await;
                Some(sink)
            };
            drive::member(member, stream, kept).await;
        }));
    }
    drop(joined_tx);
    let mut sinks: Vec<Option<Sink>> = (0..args.channels).map(|_| None).collect();
    for _ in 0..args.members {
        match joined_rx.recv().await {
            Some(Ok((channel, sink))) => {
                if sink.is_some() {
                    sinks[channel] = sink;
                }
            }
            Some(Err(e)) => {
                tasks.iter().for_each(|t| t.abort());
                return Err(e);
            }
            None => return Err(anyhow!("member tasks ended early")),
        }
    }
    if args.http_publish {
        return Ok((tasks, Vec::new()));
    }
    let sinks =
        sinks.into_iter().map(|s| s.context("a channel without its publisher")).collect::<Result<_, _>>()?;
    Ok((tasks, sinks))
}
