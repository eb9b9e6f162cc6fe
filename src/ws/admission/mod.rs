//! Admission, one path for every WebSocket endpoint: the Origin check, where the token comes
//! from, authentication in the endpoint's mode, the user's socket cap, the refusal metric, and the
//! upgrade under the configured limits.
//!
//! What can be settled on the handshake is: a foreign Origin (403), and a token read from the
//! `Authorization` header (401/403, or 429 over the cap), since a client able to set that header
//! can read an HTTP answer. Everything else is settled after the upgrade, so that a browser sees
//! the close reason: refused sockets close with 1008 (4029 over the cap).

use super::close::{self, Close};
use super::refusals::refused;
use super::socket::{Bound, Endpoint, Socket, Wire};
use crate::app::AppState;
use crate::auth::bindings::SocketMeta;
use crate::auth::transport::{self, CookieKind, Presented, Sources, Transport};
use crate::auth::{AuthError, Identity, Mode};
use crate::connections::ClientAddr;
use crate::http::error::ApiError;
use crate::http::origin;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::future::{FutureExt, OptionFuture};
use serde::Deserialize;
use serde_json::json;
use std::future::Future;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;

mod connect_proxy;

use connect_proxy::{ask_proxy, ProxyRefusal};

/// How long a socket without a token on the handshake has to send `{"type":"auth"}`.
const AUTH_FRAME_TIMEOUT: Duration = Duration::from_secs(5);

/// How an endpoint admits sockets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// Where the token may come from.
    pub(crate) sources: Sources,
    pub(crate) mode: Mode,
    /// Without a token on the handshake, the first frame may bring one: `{"type":"auth"}`.
    pub(crate) auth_frame: bool,
    /// A refusal after the upgrade sends its reason as a text frame before closing (the
    /// fastapi-jwt-auth recipes' `/ws`).
    pub(crate) explain_refusal: bool,
}

/// A WebSocket upgrade and the request it came with (taken apart, not copied: the handshake is
/// a hot path). A plain HTTP request gets a JSON 426.
pub(crate) struct UpgradeRequest(pub(crate) WebSocketUpgrade, pub(crate) Parts);

impl<S: Send + Sync> FromRequest<S> for UpgradeRequest {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let (mut parts, _) = request.into_parts();
        match WebSocketUpgrade::from_request_parts(&mut parts, state).await {
            Ok(ws) => Ok(UpgradeRequest(ws, parts)),
            Err(_) => Err(refuse(StatusCode::UPGRADE_REQUIRED, "Expected a WebSocket upgrade")),
        }
    }
}

/// Who a socket is once admitted.
#[allow(clippy::large_enum_variant)] // one per handshake, moved once into the socket
pub(crate) enum Admitted {
    Bound(Bound),
    /// Optional mode without a token; the socket holds its place while it lives.
    Anonymous(AnonymousPlace),
}

/// One of the `--max-anonymous-sockets` places, given back when dropped.
pub(crate) struct AnonymousPlace {
    _permit: OwnedSemaphorePermit,
}

/// A handshake past what it could be refused for before the upgrade.
pub(crate) struct Admission {
    state: AppState,
    policy: Policy,
    pending: Pending,
    /// The endpoint's path, as the admin console lists the socket.
    endpoint: &'static str,
    /// For the log of a refusal.
    client: ClientAddr,
}

enum Pending {
    /// Authenticated and bound on the handshake (a header token).
    Bound(Box<Bound>),
    /// Presented on the handshake, checked after the upgrade.
    Presented(Presented),
    /// Refused, reported after the upgrade.
    Refused(AuthError),
    /// No token on the handshake; it holds an anonymous place until it has one.
    Nothing(AnonymousPlace),
    /// No token on the handshake, on an endpoint the connect proxy admits to: the application is
    /// asked, with these headers of the client's request. Holds an anonymous place meanwhile.
    Proxy(Box<HeaderMap>, AnonymousPlace),
}

/// A socket's whole task: settles `admission` on `socket`, then runs the future `start` makes of
/// the admitted socket (`None`: nothing to run). Two futures chained, not one `async` block:
/// the task holds one at a time, so the loop that lives as long as the socket does not also
/// carry the upgrade's state (an `async` block keeps its captures beside every later await).
pub(crate) fn admitted<F, W: Wire>(
    admission: Admission,
    socket: W,
    start: impl FnOnce(W, Admitted) -> Option<F>,
) -> impl Future<Output = ()>
where
    F: Future<Output = ()>,
{
    let settled = admission.settle(socket);
    settled.then(|settled| OptionFuture::from(settled.and_then(|(socket, who)| start(socket, who)))).map(drop)
}

/// The task of a socket that must be bound to a token: `start` makes its greeting and endpoint.
pub(crate) fn bound_task<E: Endpoint + 'static, W: Wire>(
    admission: Admission,
    state: AppState,
    socket: W,
    start: impl FnOnce(&AppState, &Bound) -> (String, E),
) -> impl Future<Output = ()> {
    admitted(admission, socket, move |socket, who| {
        let Admitted::Bound(bound) = who else { return None };
        let (greeting, endpoint) = start(&state, &bound);
        Some(Socket::new(socket, state, Some(bound), Mode::Required, endpoint).run(vec![greeting]))
    })
}

/// What a socket's read buffer starts at. tungstenite allocates (and zeroes) it up front, so every
/// idle socket holds it, and keeps what it grew to: a frame's header reserves room for the whole
/// frame, which grows the buffer to twice its size or to the frame's, whichever is more. From 256
/// bytes, the frame a Centrifugo SDK connects with (a token and its subscriptions, 500-700 bytes)
/// gets its own size, not 1 KiB as from 512: 0.3 KiB less per idle connection, measured.
const READ_BUFFER_BYTES: usize = 256;

/// Bytes of frames a socket collects before writing them, when several are queued.
const WRITE_BATCH_BYTES: usize = 4 * 1024;

/// Applies the configured limits to an upgrade.
pub(crate) fn configure(upgrade: WebSocketUpgrade, state: &AppState) -> WebSocketUpgrade {
    let max = state.config.socket.max_message_bytes;
    // Small buffers: an idle socket should cost little; they grow while a large message is read.
    // Frames fed while several are queued collect up to WRITE_BATCH_BYTES before a write, so a
    // socket catching up writes many in one syscall (a lone frame is flushed at once).
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BATCH_BYTES)
        .max_write_buffer_size(max.max(64 * 1024) * 4)
}

/// A handshake's answer under `policy`: the refusal [`Admission::check`] makes, or the upgrade
/// (configured, `bearer` negotiated where the token came as a subprotocol) to the socket that
/// `task` runs.
pub(crate) async fn upgrade<F>(
    state: AppState,
    UpgradeRequest(upgrade, parts): UpgradeRequest,
    policy: Policy,
    task: impl FnOnce(Admission, AppState, WebSocket) -> F + Send + 'static,
) -> Response
where
    F: Future<Output = ()> + Send + 'static,
{
    let admission = match Admission::check(&state, &parts, policy).await {
        Ok(admission) => admission,
        Err(refusal) => return refusal,
    };
    let upgrade = admission.negotiate(configure(upgrade, &state));
    upgrade.on_upgrade(move |socket| task(admission, state, socket))
}

impl Admission {
    /// Checks the Origin and finds the token. A header token is authenticated and bound here;
    /// its refusal, a foreign Origin, and a missing token on a header-only endpoint are answered
    /// with an HTTP error instead of an upgrade.
    pub(crate) async fn check(
        state: &AppState,
        parts: &Parts,
        policy: Policy,
    ) -> Result<Admission, Response> {
        let cookie_kind = if policy.mode == Mode::Refresh { CookieKind::Refresh } else { CookieKind::Access };
        let found = transport::find(parts, policy.sources, cookie_kind);
        let transport = found.as_ref().ok().and_then(|p| p.as_ref()).map(|p| p.transport);
        if let Some(refusal) = origin_refusal(state, parts, transport) {
            return Err(refusal);
        }
        let client = ClientAddr::of(parts);
        let header_only = !(policy.sources.query || policy.sources.subprotocol || policy.auth_frame);
        let endpoint = crate::auth::bindings::endpoint_named(parts.uri.path());
        let pending = match found {
            Ok(Some(presented)) if presented.transport == Transport::Header => {
                let identity = authenticate(state, &presented, policy.mode)
                    .await
                    .map_err(|err| refuse_auth(state, err, client))?;
                let bound = bind(state, identity, endpoint).map_err(|close| {
                    refused(state, USER_CAP, client, || close.reason.clone());
                    refuse(StatusCode::TOO_MANY_REQUESTS, &close.reason)
                })?;
                Pending::Bound(Box::new(bound))
            }
            Ok(Some(presented)) => Pending::Presented(presented),
            Ok(None) if header_only && policy.mode != Mode::Optional => {
                return Err(refuse_auth(state, AuthError::Missing, client));
            }
            Ok(None) if policy.auth_frame && state.proxy.as_ref().is_some_and(|p| p.admits_connections()) => {
                let headers = state.proxy.as_ref().map(|p| p.forwarded(parts)).unwrap_or_default();
                Pending::Proxy(Box::new(headers), anonymous_place(state, client).map_err(|refusal| *refusal)?)
            }
            Ok(None) if policy.mode == Mode::Optional || policy.auth_frame => {
                Pending::Nothing(anonymous_place(state, client).map_err(|refusal| *refusal)?)
            }
            Ok(None) => Pending::Refused(AuthError::Missing),
            Err(err) if header_only || policy.sources.header => return Err(refuse_auth(state, err, client)),
            Err(err) => Pending::Refused(err),
        };
        Ok(Admission { state: state.clone(), policy, pending, endpoint, client })
    }

    /// Negotiates `bearer` when the token came as a subprotocol (browsers require the answer).
    fn negotiate(&self, upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
        match &self.pending {
            Pending::Presented(p) if p.transport == Transport::Subprotocol => {
                upgrade.protocols([transport::BEARER_PROTOCOL])
            }
            _ => upgrade,
        }
    }

    /// After the upgrade: authenticates what was presented (or the first frame), and binds the
    /// socket under the user's cap. On refusal the socket is closed here and `None` returned.
    pub(crate) async fn settle<W: Wire>(self, socket: W) -> Option<(W, Admitted)> {
        // Boxed, and gone once settled: the socket's task stays the size its loop needs, not
        // the size of authenticating (a token check, a store lookup, a first frame).
        Box::pin(self.settle_unboxed(socket)).await
    }

    async fn settle_unboxed<W: Wire>(self, mut socket: W) -> Option<(W, Admitted)> {
        let Admission { state, policy, pending, endpoint, client } = self;
        let identity = match pending {
            Pending::Bound(bound) => return Some((socket, Admitted::Bound(*bound))),
            Pending::Presented(presented) => authenticate(&state, &presented, policy.mode).await,
            Pending::Refused(err) => Err(err),
            Pending::Nothing(place) if policy.mode == Mode::Optional => {
                return Some((socket, Admitted::Anonymous(place)))
            }
            // Only optional-mode and auth-frame endpoints take a place (see `check`).
            Pending::Nothing(_place) => match first_frame(&mut socket).await {
                Some(presented) => authenticate(&state, &presented, policy.mode).await,
                None => Err(AuthError::Missing),
            },
            Pending::Proxy(headers, _place) => match ask_proxy(&state, *headers, socket.via()).await {
                Ok(identity) => Ok(identity),
                // The application did not admit it: a client with a token may still send it.
                Err(ProxyRefusal::Fallback(refusal)) => match first_frame(&mut socket).await {
                    Some(presented) => authenticate(&state, &presented, policy.mode).await,
                    None => {
                        refused(&state, PROXY, client, || refusal.reason.clone());
                        socket.close(refusal).await;
                        return None;
                    }
                },
                Err(ProxyRefusal::Close(refusal)) => {
                    refused(&state, PROXY, client, || refusal.reason.clone());
                    socket.close(refusal).await;
                    return None;
                }
            },
        };
        let refusal = match identity {
            Ok(identity) => match bind(&state, identity, endpoint) {
                Ok(bound) => return Some((socket, Admitted::Bound(bound))),
                Err(close) => {
                    refused(&state, USER_CAP, client, || close.reason.clone());
                    close
                }
            },
            Err(err) => {
                refused(&state, err.reason(), client, || err.to_string());
                // A refusal that says nothing of the token is one the client should retry.
                let code = if err.is_temporary() { close::TRY_AGAIN_LATER } else { close::POLICY };
                Close::new(code, err.to_string())
            }
        };
        if policy.explain_refusal && socket.send(Message::Text(refusal.reason.clone().into())).await.is_err()
        {
            return None;
        }
        socket.close(refusal).await;
        None
    }
}

/// The handshake's Origin against `--allowed-origins` (`transport`: where its token came from, if
/// it came on the handshake): a foreign one is refused with 403.
pub(crate) fn origin_refusal(
    state: &AppState,
    parts: &Parts,
    transport: Option<Transport>,
) -> Option<Response> {
    if origin::allowed(&parts.headers, &state.config.allowed_origins, transport) {
        return None;
    }
    // Said in the log: the browser only shows the socket closing (1006).
    refused(state, "origin", ClientAddr::of(parts), || {
        let origin = parts.headers.get(axum::http::header::ORIGIN).map_or("(none)".into(), |o| {
            String::from_utf8_lossy(o.as_bytes()).chars().take(200).collect::<String>()
        });
        format!("403: its Origin is not in --allowed-origins (Origin {origin}, path {})", parts.uri.path())
    });
    Some(refuse(StatusCode::FORBIDDEN, "Origin not allowed"))
}

/// The kinds of refusal the log names besides origins and authentication's reasons.
pub(crate) const USER_CAP: &str = "user_socket_cap";
pub(crate) const ANONYMOUS_CAP: &str = "anonymous_cap";
pub(crate) const PROXY: &str = "connect_proxy";
const ANONYMOUS_CAP_TEXT: &str = "Too many sockets without a token";

/// One of the `--max-anonymous-sockets` places, or the 429 that answers when none is left.
fn anonymous_place(state: &AppState, client: ClientAddr) -> Result<AnonymousPlace, Box<Response>> {
    match state.anonymous_sockets.clone().try_acquire_owned() {
        Ok(permit) => Ok(AnonymousPlace { _permit: permit }),
        Err(_) => {
            refused(state, ANONYMOUS_CAP, client, || format!("429: {ANONYMOUS_CAP_TEXT}"));
            Err(Box::new(refuse(StatusCode::TOO_MANY_REQUESTS, ANONYMOUS_CAP_TEXT)))
        }
    }
}

/// Authenticates a presented token under `mode`; a missing identity (optional mode) cannot
/// happen for a presented token, but is refused like a missing token all the same.
pub(crate) async fn authenticate(
    state: &AppState,
    presented: &Presented,
    mode: Mode,
) -> Result<Identity, AuthError> {
    state.auth.authenticate(Some(presented), mode).await?.ok_or(AuthError::Missing)
}

/// Binds an authenticated socket, connected to `endpoint`, to its token, under the per-user cap.
pub(crate) fn bind(state: &AppState, identity: Identity, endpoint: &'static str) -> Result<Bound, Close> {
    let transport = match identity.issuer {
        crate::auth::Issuer::Proxy => "connect proxy",
        _ => identity.transport.label(),
    };
    let meta = SocketMeta::new(endpoint, transport, crate::clock::now_secs());
    let binding = state
        .auth
        .bindings
        .register(&identity.claims, state.config.max_sockets_per_user, meta)
        .map_err(|_| Close::new(close::RATE_LIMITED, "too many sockets for this user"))?;
    Ok(Bound { identity, binding })
}

#[derive(Deserialize)]
struct AuthFrame {
    #[serde(rename = "type")]
    kind: String,
    token: String,
}

/// Waits for `{"type":"auth","token":...}` as the first frame.
async fn first_frame<W: Wire>(socket: &mut W) -> Option<Presented> {
    let frame = match tokio::time::timeout(AUTH_FRAME_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<AuthFrame>(text.as_str()).ok()?,
        _ => return None,
    };
    (frame.kind == "auth").then(|| Presented::new(frame.token, Transport::Frame))
}

/// A refusal before the upgrade, as a plain HTTP response.
fn refuse(status: StatusCode, detail: &str) -> Response {
    (status, Json(json!({ "detail": detail }))).into_response()
}

/// An authentication failure before the upgrade: 401 for a missing or bad token (with the bearer
/// challenge), 403 for a credential that is not a bearer token or an inactive user.
fn refuse_auth(state: &AppState, err: AuthError, client: ClientAddr) -> Response {
    refused(state, err.reason(), client, || err.to_string());
    match err {
        AuthError::NotBearer | AuthError::Inactive => refuse(StatusCode::FORBIDDEN, &err.to_string()),
        other => ApiError::Auth(other).into_response(),
    }
}
