//! The two halves of a run once every member follows its channel: members reading and recording
//! what they receive, and the driver sending the publications, paced or as fast as the window of
//! outstanding ones allows.

use super::board::Board;
use super::protocol::{Event, Protocol};
use crate::common::Ws;
use crate::emulated::{Posts, Stream};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

pub(super) type Sink = SplitSink<Ws, Message>;

/// What one member records, whatever carries its frames.
pub(super) struct Member {
    protocol: Protocol,
    node: usize,
    own_copy_is_ack: bool,
    /// A member follows one channel: its offsets only grow.
    last_offset: Option<usize>,
    board: Arc<Board>,
}

impl Member {
    /// A member connected to `node`.
    pub(super) fn new(protocol: Protocol, node: usize, is_sender: bool, board: Arc<Board>) -> Member {
        let own_copy_is_ack = is_sender && protocol.copy_is_ack();
        Member { protocol, node, own_copy_is_ack, last_offset: None, board }
    }

    /// Records one received frame: true for a ping that wants a pong.
    fn receive(&mut self, text: &str) -> bool {
        match self.protocol.classify(text) {
            Event::Delivery { seq, offset } => {
                self.board.deliver(self.node, seq);
                if self.own_copy_is_ack {
                    self.board.ack(seq);
                }
                if offset.is_some() {
                    if offset <= self.last_offset {
                        self.board.offsets_out_of_order.fetch_add(1, Ordering::Relaxed);
                    }
                    self.last_offset = offset;
                }
            }
            Event::Ack(seq) => self.board.ack(seq),
            Event::Error => {
                self.board.error_frames.fetch_add(1, Ordering::Relaxed);
            }
            Event::Ping => return true,
            Event::Other => {}
        }
        false
    }

    fn closed(&self) {
        self.board.closed_by_server.fetch_add(1, Ordering::Relaxed);
    }
}

/// A member on a WebSocket, reading until it ends or the task is aborted. `sink` (the
/// publisher's is the driver's) keeps the socket whole and answers pings that want a frame back;
/// the publisher's own publications keep its socket from going silent.
pub(super) async fn member(mut member: Member, mut stream: SplitStream<Ws>, mut sink: Option<Sink>) {
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => {
                if member.receive(text.as_str()) {
                    if let Some(sink) = sink.as_mut() {
                        let _ = sink.send(Message::text(crate::centrifugo::PING)).await;
                    }
                }
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return member.closed(),
            Some(Ok(_)) => {}
        }
    }
}

/// A member on an emulated connection (HTTP streaming or SSE), pongs posted through `posts`.
pub(super) async fn stream_member(mut member: Member, mut stream: Stream, posts: Arc<Posts>) {
    loop {
        match stream.lines.next().await {
            Ok(Some(line)) => {
                if member.receive(line) {
                    posts.pong(&stream.id).await;
                }
            }
            Ok(None) | Err(_) => return member.closed(),
        }
    }
}

/// How the driver sends.
pub(super) struct Plan {
    pub(super) protocol: Protocol,
    /// Channel `i`'s name; publication `seq` goes to channel `seq % channels`.
    pub(super) channels: Vec<String>,
    /// Paced: one publication every `interval`, all channels together. None: as fast as the
    /// window allows.
    pub(super) interval: Option<Duration>,
    /// How long the driver waits for a place in the window before it counts a stall and sends
    /// anyway (a publication that never completes must not stop the run).
    pub(super) stall: Duration,
    /// Deliveries and acks one publication brings: a channel's members, and the ack.
    pub(super) events: u32,
    pub(super) until: Instant,
}

/// What the driver did.
pub(super) struct Sent {
    pub(super) count: usize,
    pub(super) stalls: u64,
    pub(super) sinks: Vec<Sink>,
}

/// Sends publications until `plan.until` (or the board is full) on `sinks`, one per channel.
pub(super) async fn drive(mut sinks: Vec<Sink>, board: Arc<Board>, plan: Plan) -> Sent {
    let started = Instant::now();
    let mut stalls = 0;
    let mut seq = 0;
    while seq < board.capacity {
        let now = Instant::now();
        // Paced, every publication due before `until` is sent, late or not: the offered load
        // stays what was asked, and lateness shows as latency.
        if plan.interval.is_none() && now >= plan.until {
            break;
        }
        let sent_ns = match plan.interval {
            Some(interval) => {
                // Latency counts from when the publication was due, so that a late generator
                // shows as latency rather than hiding it.
                let due = started + interval.mul_f64(seq as f64);
                if due >= plan.until {
                    break;
                }
                if due > now {
                    tokio::time::sleep_until(due).await;
                }
                board.ns_of(due)
            }
            None => {
                match tokio::time::timeout(plan.stall, board.window.acquire()).await {
                    Ok(Ok(permit)) => permit.forget(),
                    Ok(Err(_)) => break,
                    Err(_) => stalls += 1,
                }
                board.now_ns()
            }
        };
        let channel = seq % plan.channels.len();
        let frame = plan.protocol.publish_frame(&plan.channels[channel], seq);
        board.start(seq, sent_ns, plan.events);
        if sinks[channel].send(Message::text(frame)).await.is_err() {
            break;
        }
        seq += 1;
    }
    Sent { count: seq, stalls, sinks }
}

/// Waits until every publication sent is complete, or until `deadline`.
pub(super) async fn drain(board: &Board, sent: usize, deadline: Instant) {
    let mut first_incomplete = 0;
    while Instant::now() < deadline {
        while first_incomplete < sent && board.complete(first_incomplete) {
            first_incomplete += 1;
        }
        if first_incomplete == sent {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
