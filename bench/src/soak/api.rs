//! API publications: `POST /api/publish` with a `publish` key, `{"text": …}` data to a random room
//! (a room is a channel of the default namespace), at `--api-rate` a second spread over the nodes.
//! Each 200's offset is the message id the room's members receive, so it joins the room's acked
//! list and the observers' exactly-once check covers it like a chat `send`.

use super::board::{Source, C};
use super::*;
use crate::common::secs;
use crate::http::HttpConn;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

/// Longest an API call may take before it counts as failed (and its connection is dropped).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Posts to `node` at its share of `--api-rate` until `until`, one call at a time: a call that
/// hangs (the database away) delays the next rather than piling them up.
pub(super) async fn api_publications(ctx: Arc<Ctx>, key: Arc<str>, node: usize, until: Instant) {
    let nodes = ctx.targets.len();
    let mut ticks = tokio::time::interval(secs(nodes as f64 / ctx.args.api_rate));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let addr = ctx.targets[node].addr;
    let mut conn: Option<HttpConn> = None;
    for seq in 0u64.. {
        ticks.tick().await;
        if Instant::now() >= until {
            break;
        }
        let room = random_below(ctx.rooms.len());
        let body = json!({
            "channel": ctx.rooms[room],
            "data": {"text": format!("{TEXT_PREFIX}api {node}-{seq}")},
        });
        ctx.board.add(C::api_sent);
        let call = async {
            if conn.is_none() {
                conn = Some(HttpConn::connect(addr).await?);
            }
            let c = conn.as_mut().expect("connected above");
            c.post_json("/api/publish", Some(&key), body.to_string()).await
        };
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok((status, _, answer))) if status == 200 => match offset(&answer) {
                Some(id) => {
                    ctx.board.add(C::api_acked);
                    ctx.room_state[room].ack(id, Source::Api, node);
                }
                None => {
                    let what = format!(
                        "POST /api/publish: 200 without an offset: {}",
                        String::from_utf8_lossy(&answer)
                    );
                    ctx.board.incident(C::protocol_surprises, Some(node), what);
                }
            },
            Ok(Ok((status, _, answer))) => {
                let what =
                    format!("POST /api/publish answered {status}: {:.200}", String::from_utf8_lossy(&answer));
                ctx.board.incident(C::api_refused, Some(node), what);
            }
            Ok(Err(e)) => {
                conn = None;
                ctx.board.incident(C::api_transport_errors, Some(node), format!("POST /api/publish: {e:#}"));
            }
            Err(_) => {
                conn = None;
                let what = format!("POST /api/publish: no answer within {} s", CALL_TIMEOUT.as_secs());
                ctx.board.incident(C::api_transport_errors, Some(node), what);
            }
        }
    }
}

/// The offset of a 200 answer, `{"offset": n}`.
fn offset(answer: &[u8]) -> Option<i64> {
    serde_json::from_slice::<Value>(answer).ok()?.get("offset")?.as_i64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_is_read_from_the_answer() {
        assert_eq!(offset(br#"{"offset": 42}"#), Some(42));
        assert_eq!(offset(br#"{"offset": null}"#), None);
        assert_eq!(offset(b"not json"), None);
    }
}
