//! `POST /connection/http_stream` and `GET /connection/sse`: the protocol of
//! `/connection/websocket` on an emulated connection, for networks that refuse WebSockets. The
//! `connect` command comes with the request (the body; for SSE, the `cf_connect` parameter); its
//! reply, which names the session and its node, and every later frame go down the response; the
//! SDK sends its further commands by `POST /emulation` to any node.
//!
//! A refusal is said on the stream as on a WebSocket, an error reply or a disconnect push, under
//! status 200: the SDK reads it there, and a non-2xx status would only make it try the next
//! transport.

use super::connect::{admit, greet, Refused};
use super::wire;
use crate::app::AppState;
use crate::auth::Mode;
use crate::centrifugo::codes;
use crate::connections::ClientAddr;
use crate::emulation::{Framing, StreamWire};
use crate::ws::admission;
use crate::ws::refusals::refused;
use crate::ws::socket::{Socket, Wire};
use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

pub(crate) async fn http_stream(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let max = state.config.socket.max_message_bytes;
    let Ok(bytes) = to_bytes(body, max).await else {
        return refuse(&state, StatusCode::PAYLOAD_TOO_LARGE, "connect over --max-message-bytes");
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return refuse(&state, StatusCode::BAD_REQUEST, "the body is not UTF-8");
    };
    open(state, &parts, text, Framing::Lines).await
}

#[derive(Deserialize)]
struct SseQuery {
    cf_connect: Option<String>,
}

pub(crate) async fn sse(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let query = axum::extract::Query::<SseQuery>::try_from_uri(&parts.uri).ok();
    let Some(text) = query.and_then(|q| q.0.cf_connect) else {
        return refuse(&state, StatusCode::BAD_REQUEST, "the connect command goes in cf_connect");
    };
    if text.len() > state.config.socket.max_message_bytes {
        return refuse(&state, StatusCode::PAYLOAD_TOO_LARGE, "connect over --max-message-bytes");
    }
    open(state, &parts, &text, Framing::Events).await
}

/// Admits the connection by its `connect` (`text`), then streams its session.
async fn open(state: AppState, parts: &Parts, text: &str, framing: Framing) -> Response {
    if let Some(refusal) = admission::origin_refusal(&state, parts, None) {
        return refusal;
    }
    // Held while the connection is admitted, as a WebSocket's before its `connect`.
    let Ok(place) = state.anonymous_sockets.clone().try_acquire_owned() else {
        let client = ClientAddr::of(parts);
        refused(&state, admission::ANONYMOUS_CAP, client, || {
            "429: Too many sockets without a token".to_owned()
        });
        let detail = json!({"detail": "Too many sockets without a token"});
        return (StatusCode::TOO_MANY_REQUESTS, Json(detail)).into_response();
    };
    let forwarded =
        state.proxy.as_ref().filter(|p| p.admits_connections()).map(|p| Box::new(p.forwarded(parts)));
    let client = uuid::Uuid::new_v4();
    let admitted = admit(&state, client, framing.via(), forwarded, text).await;
    drop(place);
    let admitted = match admitted {
        Ok(admitted) => admitted,
        Err(refusal) => {
            refusal.count(&state, ClientAddr::of(parts));
            let frame = match refusal {
                Refused::Close(_, close) => codes::farewell(&close),
                Refused::Error(_, id, error) => wire::error(id, error),
            };
            return StreamWire::once(framing, &frame);
        }
    };
    let (mut stream, response) = StreamWire::open(&state, framing, codes::farewell);
    let node = state.engine.node_id().to_owned();
    let (bound, session, greeting, close) =
        greet(&state, client, framing.via(), admitted, Some((stream.session(), &node))).await;
    let task = async move {
        match close {
            Some(close) => {
                for frame in greeting {
                    let _ = stream.feed(axum::extract::ws::Message::Text(frame.into())).await;
                }
                stream.close(close).await;
            }
            None => Socket::new(stream, state, Some(bound), Mode::Required, session).run(greeting).await,
        }
    };
    tokio::spawn(task);
    response
}

fn refuse(state: &AppState, status: StatusCode, detail: &str) -> Response {
    state.metrics.socket_rejections.inc();
    (status, Json(json!({ "detail": detail }))).into_response()
}
