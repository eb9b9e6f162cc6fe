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
use crate::proxy::{Caller, ConnectRequest, Verdict};
use crate::ws::admission::{self, UpgradeRequest};
use crate::ws::close::{self, Close};
use crate::ws::refusals::refused;
use crate::ws::socket::{Bound, Socket};
use axum::extract::ws::{Message, WebSocket};
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
type Forwarded = Option<Box<HeaderMap>>;

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
    socket: WebSocket,
    place: OwnedSemaphorePermit,
    forwarded: Forwarded,
    address: ClientAddr,
) -> Option<(Socket<Session>, Vec<String>)> {
    let client = uuid::Uuid::new_v4();
    let admitted = admit(&state, socket, client, forwarded, address).await;
    drop(place);
    let Admitted { socket, bound, id, rest, data } = admitted?;
    let mut session = Session::new(&state, &bound.identity, client);
    let mut greeting = vec![session.connected(id, &bound.identity, data)];
    // What came with `connect` (the SDKs send their subscriptions in the same frame), answered
    // after it.
    let (replies, close) = commands::answer_all(&mut session, &bound.identity, rest).await;
    greeting.extend(replies);
    if let Some(close) = close {
        let mut socket = socket;
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

struct Admitted {
    socket: WebSocket,
    bound: Bound,
    /// The `connect` command's id, for its reply.
    id: u32,
    /// The commands that came in the same frame, after `connect`.
    rest: Vec<Command>,
    /// For the connect reply: the connect proxy's `data`.
    data: Option<Value>,
}

/// Reads `connect` and admits its token, or asks the connect proxy about a connection without
/// one; `None` once the connection is refused and closed.
async fn admit(
    state: &AppState,
    mut socket: WebSocket,
    client: uuid::Uuid,
    forwarded: Forwarded,
    address: ClientAddr,
) -> Option<Admitted> {
    let refusal = Refusal { state, address };
    let (id, connect, rest) = match connect_command(&mut socket).await {
        Ok(connect) => connect,
        Err(disconnect) => return refusal.close(socket, BAD_CONNECT, disconnect).await,
    };
    if let (true, Some(proxy), Some(headers)) = (connect.token.is_empty(), state.proxy.as_ref(), forwarded) {
        let client = client.to_string();
        let request = ConnectRequest {
            caller: Caller::websocket(&client),
            name: Some(connect.name.as_str()).filter(|name| !name.is_empty()),
            version: Some(connect.version.as_str()).filter(|version| !version.is_empty()),
            data: connect.data.as_ref(),
        };
        let error = match proxy.admit(&state.auth, &request, *headers).await {
            Verdict::Admitted { identity, data } => match admission::bind(state, *identity) {
                Ok(bound) => return Some(Admitted { socket, bound, id, rest, data }),
                Err(_) => return refusal.close(socket, admission::USER_CAP, codes::CONNECTION_LIMIT).await,
            },
            Verdict::Refused(error) => Error { code: error.code, message: error.message, temporary: false },
            Verdict::Failed(failure) => codes::INTERNAL.because(failure.to_string()),
            Verdict::Disconnect(disconnect) => {
                refused(state, admission::PROXY, address, || {
                    format!("{}: {}", disconnect.code, disconnect.reason)
                });
                close::close(socket, Close::new(disconnect.code, disconnect.reason)).await;
                return None;
            }
        };
        return refusal.answer(socket, admission::PROXY, id, error).await;
    }
    let presented = Presented::new(connect.token, Transport::Frame);
    let expired = AuthError::Token(TokenError::Expired);
    let (kind, error) = match admission::authenticate(state, &presented, Mode::Required).await {
        // Within the clock leeway verification allows, but the connection would end at once.
        Ok(identity) if crate::clock::until(identity.claims.exp).is_zero() => {
            (expired.reason(), codes::TOKEN_EXPIRED.error())
        }
        Ok(identity) => match admission::bind(state, identity) {
            Ok(bound) => return Some(Admitted { socket, bound, id, rest, data: None }),
            Err(_) => return refusal.close(socket, admission::USER_CAP, codes::CONNECTION_LIMIT).await,
        },
        Err(err @ AuthError::Token(TokenError::Expired)) => (err.reason(), codes::TOKEN_EXPIRED.error()),
        Err(err) if err.is_temporary() => (err.reason(), codes::INTERNAL.because(err.to_string())),
        Err(err) => return refusal.close(socket, err.reason(), codes::INVALID_TOKEN).await,
    };
    refusal.answer(socket, kind, id, error).await
}

/// The kind of refusal of a connection whose first frame is not a `connect`.
const BAD_CONNECT: &str = "bad_connect";

/// How a connection is refused: counted and logged (`ws::refusals`), then answered.
struct Refusal<'a> {
    state: &'a AppState,
    address: ClientAddr,
}

impl Refusal<'_> {
    /// Answers `connect` with `error`, then waits for the SDK to close; `None`.
    async fn answer(
        &self,
        mut socket: WebSocket,
        kind: &'static str,
        id: u32,
        error: Error,
    ) -> Option<Admitted> {
        refused(self.state, kind, self.address, || format!("error {}: {}", error.code, error.message));
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
        None
    }

    /// Closes the connection with `disconnect`; `None`.
    async fn close(&self, socket: WebSocket, kind: &'static str, disconnect: Disconnect) -> Option<Admitted> {
        refused(self.state, kind, self.address, || format!("{}: {}", disconnect.code, disconnect.reason));
        close::close(socket, Close::new(disconnect.code, disconnect.reason)).await;
        None
    }
}

/// The first frame's `connect`: its id and request, and the commands after it in the frame. A
/// binary frame (the protobuf codec) is closed with 3506; anything else first, or nothing in time,
/// with 3501 (bad request).
async fn connect_command(
    socket: &mut WebSocket,
) -> Result<(u32, wire::ConnectRequest, Vec<Command>), Disconnect> {
    let text = match tokio::time::timeout(CONNECT_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(text)))) => text,
        Ok(Some(Ok(Message::Binary(_)))) => return Err(codes::INAPPROPRIATE_PROTOCOL),
        _ => return Err(codes::BAD_REQUEST_CLOSE),
    };
    let mut commands = wire::commands(text.as_str()).map_err(|_| codes::BAD_REQUEST_CLOSE)?.into_iter();
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
