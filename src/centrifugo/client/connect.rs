//! A connection's admission: the Origin on the handshake, then the `connect` command, whose token
//! is any token wsguard admits. The reply tells the SDK when the token expires (`ttl`) and how
//! often the server pings (`ping`, answered with a pong).
//!
//! Refusals as the SDKs expect them: an expired token gets error 109 (the SDK fetches a new one
//! and connects again), a temporary failure error 100 (it retries), any other refusal the
//! terminal close 3500 (invalid token), too many sockets for the user 3504.
//!
//! A `connect` without a token goes to the application's connect proxy, when there is one: it
//! names the user, or refuses with its own error or disconnect; its failure is error 100.

use super::commands;
use super::session::Session;
use super::wire::{self, Command};
use crate::app::AppState;
use crate::auth::tokens::TokenError;
use crate::auth::transport::{Presented, Transport};
use crate::auth::{AuthError, Mode};
use crate::centrifugo::codes::{self, Disconnect, Error};
use crate::connections::ClientAddr;
use crate::proxy::{Caller, ConnectRequest, Verdict, Via};
use crate::ws::admission::{self, UpgradeRequest};
use crate::ws::close::{self, Close};
use crate::ws::refusals::refused;
use crate::ws::socket::{Bound, Socket};
use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::future::{FutureExt, OptionFuture};
use serde_json::{json, Value};
use std::future::Future;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;

/// The subprotocol of Centrifugo's protobuf codec.
const PROTOBUF_SUBPROTOCOL: &str = "centrifuge-protobuf";
/// How long a new connection has to send `connect`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a refused connection waits for the SDK to close it after the error reply.
const CLOSE_AFTER_ERROR: Duration = Duration::from_secs(5);

pub(crate) async fn websocket(State(state): State<AppState>, request: UpgradeRequest) -> Response {
    let UpgradeRequest(upgrade, parts) = request;
    if let Some(refusal) = admission::origin_refusal(&state, &parts, None) {
        return refusal;
    }
    let client = ClientAddr::of(&parts);
    // Until its `connect`, a connection holds a place among the sockets without a token.
    let Ok(place) = state.anonymous_sockets.clone().try_acquire_owned() else {
        refused(&state, admission::ANONYMOUS_CAP, client, || {
            "429: Too many sockets without a token".to_owned()
        });
        let detail = json!({"detail": "Too many sockets without a token"});
        return (StatusCode::TOO_MANY_REQUESTS, Json(detail)).into_response();
    };
    // The headers the connect proxy passes on, kept only until `connect`.
    let forwarded =
        state.proxy.as_ref().filter(|p| p.admits_connections()).map(|p| Box::new(p.forwarded(&parts)));
    // A protobuf SDK asks for its subprotocol and drops a handshake without it, to try again
    // forever: it is granted, so that its binary `connect` gets 3506 and the SDK stops.
    let upgrade = admission::configure(upgrade, &state).protocols([PROTOBUF_SUBPROTOCOL]);
    upgrade.on_upgrade(move |socket| connection(state, socket, place, forwarded, client))
}

/// The client's headers for the connect proxy, when there is one.
pub(super) type Forwarded = Option<Box<HeaderMap>>;

/// One connection's task: admission by `connect`, then the session until it closes. Two futures
/// chained, not one `async fn` (see `admission::admitted`): an `async fn` keeps its arguments and
/// the locals of admission beside the loop's future for as long as the connection lives.
fn connection(
    state: AppState,
    socket: WebSocket,
    place: OwnedSemaphorePermit,
    forwarded: Forwarded,
    address: ClientAddr,
) -> impl Future<Output = ()> {
    // Boxed, and gone once admitted: the task is the size of the loop's future.
    Box::pin(start(state, socket, place, forwarded, address))
        .then(|started| OptionFuture::from(started.map(|(socket, greeting)| socket.run(greeting))))
        .map(drop)
}

/// Admits the connection and answers what came with `connect`: the socket and the frames it
/// starts with, or `None` once the connection is refused or closed.
async fn start(
    state: AppState,
    mut socket: WebSocket,
    place: OwnedSemaphorePermit,
    forwarded: Forwarded,
    address: ClientAddr,
) -> Option<(Socket<Session>, Vec<String>)> {
    let client = uuid::Uuid::new_v4();
    let admitted = match connect_frame(&mut socket).await {
        Ok(text) => admit(&state, client, Via::WebSocket, forwarded, &text).await,
        Err(disconnect) => Err(Refused::Close(BAD_CONNECT, disconnect.close())),
    };
    drop(place);
    let admitted = match admitted {
        Ok(admitted) => admitted,
        Err(refusal) => {
            refusal.count(&state, address);
            match refusal {
                Refused::Close(_, close) => close::close(socket, close).await,
                Refused::Error(_, id, error) => wait_for_close(socket, id, error).await,
            }
            return None;
        }
    };
    let (bound, session, greeting, close) = greet(&state, client, Via::WebSocket, admitted, None).await;
    if let Some(close) = close {
        for text in greeting {
            if socket.send(Message::Text(text.into())).await.is_err() {
                return None;
            }
        }
        close::close(socket, close).await;
        return None;
    }
    Some((Socket::new(socket, state, Some(bound), Mode::Required, session), greeting))
}

/// A connection admitted by its `connect`.
pub(super) struct Admitted {
    bound: Bound,
    /// The `connect` command's id, for its reply.
    id: u32,
    /// The commands that came in the same frame, after `connect`.
    rest: Vec<Command>,
    /// For the connect reply: the connect proxy's `data`.
    data: Option<Value>,
}

/// How a connection is refused, as the protocol says it: closed with a code (a WebSocket's close
/// frame, a stream's disconnect push), or an error answering `connect`; each with the kind of
/// refusal it is counted and logged as (`ws::refusals`).
pub(super) enum Refused {
    Close(&'static str, Close),
    Error(&'static str, u32, Error),
}

impl Refused {
    /// Counts the refusal of the client at `address`, and logs it when its kind's turn comes.
    pub(super) fn count(&self, state: &AppState, address: ClientAddr) {
        match self {
            Refused::Close(kind, close) => {
                refused(state, kind, address, || format!("{}: {}", close.code, close.reason))
            }
            Refused::Error(kind, _, error) => {
                refused(state, kind, address, || format!("error {}: {}", error.code, error.message))
            }
        }
    }
}

/// The kind of refusal of a connection whose first frame is not a `connect`.
const BAD_CONNECT: &str = "bad_connect";

/// The session of an admitted connection and the frames it starts with: the connect reply (with
/// `session` and `node` for an emulated connection), then the answers to what came with
/// `connect` (the SDKs send their subscriptions in the same frame); and a close, when one of
/// those commands ends the connection.
pub(super) async fn greet(
    state: &AppState,
    client: uuid::Uuid,
    via: Via,
    admitted: Admitted,
    emulated: Option<(&str, &str)>,
) -> (Bound, Session, Vec<String>, Option<Close>) {
    let Admitted { bound, id, rest, data } = admitted;
    let mut session = Session::new(state, &bound.identity, client, via);
    let mut greeting = vec![session.connected(state, id, &bound.identity, data, emulated)];
    let (replies, close) = commands::answer_all(&mut session, &bound.identity, rest).await;
    greeting.extend(replies);
    (bound, session, greeting, close)
}

/// Admits the connection whose first frame is `text`: its token, or, without one, the
/// application's connect proxy, told that the connection runs on `via`.
pub(super) async fn admit(
    state: &AppState,
    client: uuid::Uuid,
    via: Via,
    forwarded: Forwarded,
    text: &str,
) -> Result<Admitted, Refused> {
    let (id, connect, rest) =
        connect_command(text).map_err(|disconnect| Refused::Close(BAD_CONNECT, disconnect.close()))?;
    if let (true, Some(proxy), Some(headers)) = (connect.token.is_empty(), state.proxy.as_ref(), forwarded) {
        let client = client.to_string();
        let request = ConnectRequest {
            caller: Caller::new(&client, via),
            name: Some(connect.name.as_str()).filter(|name| !name.is_empty()),
            version: Some(connect.version.as_str()).filter(|version| !version.is_empty()),
            data: connect.data.as_ref(),
        };
        let error = match proxy.admit(&state.auth, &request, *headers).await {
            Verdict::Admitted { identity, data } => {
                let bound = admission::bind(state, *identity, endpoint(via)).map_err(|_| limit())?;
                return Ok(Admitted { bound, id, rest, data });
            }
            Verdict::Refused(error) => Error { code: error.code, message: error.message, temporary: false },
            Verdict::Failed(failure) => codes::INTERNAL.because(failure.to_string()),
            Verdict::Disconnect(disconnect) => {
                return Err(Refused::Close(admission::PROXY, Close::new(disconnect.code, disconnect.reason)))
            }
        };
        return Err(Refused::Error(admission::PROXY, id, error));
    }
    let presented = Presented::new(connect.token, Transport::Frame);
    let expired = AuthError::Token(TokenError::Expired);
    let (kind, error) = match admission::authenticate(state, &presented, Mode::Required).await {
        // Within the clock leeway verification allows, but the connection would end at once.
        Ok(identity) if crate::clock::until(identity.claims.exp).is_zero() => {
            (expired.reason(), codes::TOKEN_EXPIRED.error())
        }
        Ok(identity) => {
            let bound = admission::bind(state, identity, endpoint(via)).map_err(|_| limit())?;
            return Ok(Admitted { bound, id, rest, data: None });
        }
        Err(err @ AuthError::Token(TokenError::Expired)) => (err.reason(), codes::TOKEN_EXPIRED.error()),
        Err(err) if err.is_temporary() => (err.reason(), codes::INTERNAL.because(err.to_string())),
        Err(err) => return Err(Refused::Close(err.reason(), codes::INVALID_TOKEN.close())),
    };
    Err(Refused::Error(kind, id, error))
}

/// The path a connection on `via` came by, as the admin console lists it.
fn endpoint(via: Via) -> &'static str {
    match via {
        Via::WebSocket => "/connection/websocket",
        Via::HttpStream => "/connection/http_stream",
        Via::Sse => "/connection/sse",
    }
}

fn limit() -> Refused {
    Refused::Close(admission::USER_CAP, codes::CONNECTION_LIMIT.close())
}

/// Answers `connect` with `error`, then waits for the SDK to close.
async fn wait_for_close(mut socket: WebSocket, id: u32, error: Error) {
    // The SDK reads the error and closes; a connection that does not is closed after a while.
    if socket.send(Message::Text(wire::error(id, error).into())).await.is_ok() {
        let _ = tokio::time::timeout(CLOSE_AFTER_ERROR, async {
            while let Some(Ok(message)) = socket.recv().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// The first frame: a binary one (the protobuf codec) is closed with 3506; none in time with 3501
/// (bad request).
async fn connect_frame(socket: &mut WebSocket) -> Result<Utf8Bytes, Disconnect> {
    match tokio::time::timeout(CONNECT_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(text)))) => Ok(text),
        Ok(Some(Ok(Message::Binary(_)))) => Err(codes::INAPPROPRIATE_PROTOCOL),
        _ => Err(codes::BAD_REQUEST_CLOSE),
    }
}

/// The first frame's `connect`: its id and request, and the commands after it in the frame.
/// Anything else first is a bad request (3501).
fn connect_command(text: &str) -> Result<(u32, wire::ConnectRequest, Vec<Command>), Disconnect> {
    let mut commands = wire::commands(text).map_err(|_| codes::BAD_REQUEST_CLOSE)?.into_iter();
    match commands.next() {
        Some(Command { id, connect: Some(connect), .. }) if id > 0 => Ok((id, connect, commands.collect())),
        _ => Err(codes::BAD_REQUEST_CLOSE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::footprint::{output_size, MAX_SOCKET_TASK};

    #[test]
    fn an_idle_connections_task_is_its_loop() {
        let task = output_size(&|(s, w, p, f, a): (
            AppState,
            WebSocket,
            OwnedSemaphorePermit,
            Forwarded,
            ClientAddr,
        )| { connection(s, w, p, f, a) });
        let session_loop = output_size(&|socket: Socket<Session>| socket.run(Vec::new()));
        assert!(task <= MAX_SOCKET_TASK, "the connection's task is {task} bytes");
        assert!(task <= session_loop + 16, "{task} over {session_loop}");
    }
}
