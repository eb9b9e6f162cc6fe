//! What the client sends a socket: the limits (rate, size, UTF-8), in-band refresh (rebinding the
//! socket to a new token), and the endpoint's frames, those already waiting handed over together.

use super::{Ending, Endpoint, RefreshRefusal, RefreshRequest, Socket, Step, Wire};
use crate::auth::tokens::TokenError;
use crate::auth::transport::{Presented, Transport};
use crate::auth::{AuthError, Mode};
use crate::ws::close::{self, Close};
use axum::extract::ws::{Message, Utf8Bytes};
use tokio::time::Instant;

/// The most text frames handed to an endpoint together.
const TEXT_BATCH: usize = 64;

impl<E: Endpoint, W: Wire> Socket<E, W> {
    /// A frame from the client: limits first, then in-band refresh or the endpoint.
    pub(super) async fn receive(&mut self, received: Option<Result<Message, axum::Error>>) -> Step {
        let message = match received {
            None => return Step::Gone,
            Some(Err(err)) => return read_failure(err).map_or(Step::Gone, Step::Close),
            Some(Ok(message)) => message,
        };
        self.last_seen = Instant::now();
        let replies = match message {
            Message::Text(text) => {
                if let Some(limited) = self.count_message() {
                    return limited;
                }
                match self.endpoint.refresh_request(text.as_str()) {
                    Some(request) => Ok(self.rebind(request).await),
                    None if E::TAKES_BATCHES => return Box::pin(self.receive_batch(text)).await,
                    None => {
                        self.endpoint.on_text(text.as_str(), self.bound.as_ref().map(|b| &b.identity)).await
                    }
                }
            }
            Message::Binary(_) => {
                if let Some(limited) = self.count_message() {
                    return limited;
                }
                self.endpoint.on_binary()
            }
            Message::Ping(_) | Message::Pong(_) => Ok(Vec::new()),
            Message::Close(_) => {
                // tungstenite queued the close reply; write it out before dropping.
                let _ = self.ws.flush().await;
                return Step::Gone;
            }
        };
        match replies {
            Ok(replies) => {
                for reply in replies {
                    if !self.send(reply).await {
                        return Step::Gone;
                    }
                }
                Step::Continue
            }
            Err(close) => Step::Close(close),
        }
    }

    /// `first` and the text frames already waiting behind it (not a refresh: that is the
    /// socket's), handed to the endpoint together; then whatever frame ended the batch.
    async fn receive_batch(&mut self, first: Utf8Bytes) -> Step {
        let mut texts = vec![first];
        let mut after = None;
        let mut limited = None;
        while texts.len() < TEXT_BATCH {
            // Polled without waiting; the loop's next poll registers the task's waker again.
            let Some(received) = futures_util::FutureExt::now_or_never(self.ws.recv()) else {
                break;
            };
            match received {
                Some(Ok(Message::Text(text))) if self.endpoint.refresh_request(text.as_str()).is_none() => {
                    if let Some(step) = self.count_message() {
                        limited = Some(step);
                        break;
                    }
                    texts.push(text);
                }
                other => {
                    after = Some(other);
                    break;
                }
            }
        }
        let identity = self.bound.as_ref().map(|b| &b.identity);
        let (replies, close) = self.endpoint.on_texts(texts, identity).await;
        for reply in replies {
            if !self.send(reply).await {
                return Step::Gone;
            }
        }
        if let Some(close) = close {
            return Step::Close(close);
        }
        if let Some(step) = limited {
            return step;
        }
        match after {
            Some(received) => Box::pin(self.receive(received)).await,
            None => Step::Continue,
        }
    }

    /// Counts a data message against the rate limit: `Some` closes the socket.
    fn count_message(&mut self) -> Option<Step> {
        self.state.metrics.messages_in.inc();
        let limited = self.rate.take(Instant::now()).is_err();
        limited.then(|| Step::Close(self.endpoint.close_for(Ending::RateLimited)))
    }

    /// Rebinds the socket to a new token of the same user from the same issuer (wsguard, or one
    /// trusted issuer); answers as the endpoint says (`refreshed`), then with what the endpoint
    /// ended that the new token no longer allows; or the refusal, the socket staying on its old
    /// token.
    async fn rebind(&mut self, request: RefreshRequest) -> Vec<String> {
        // Boxed: a rare path, whose future would otherwise enlarge every socket's task.
        let rebound = Box::pin(self.rebind_to(request.token.clone())).await;
        let bound = match (rebound, self.bound.as_ref()) {
            (Ok(()), Some(bound)) => bound,
            (Ok(()), None) => return vec![self.endpoint.refreshed(&request, Err(RefreshRefusal::Anonymous))],
            (Err(refusal), _) => return vec![self.endpoint.refreshed(&request, Err(refusal))],
        };
        let mut frames = vec![self.endpoint.refreshed(&request, Ok(&bound.identity))];
        // Boxed, as above: rare, and would otherwise enlarge every socket's task.
        frames.extend(Box::pin(self.endpoint.rebound(&bound.identity)).await);
        frames
    }

    /// Binds the socket to `token`'s identity, or says why not.
    async fn rebind_to(&mut self, token: String) -> Result<(), RefreshRefusal> {
        let Some(bound) = self.bound.as_mut() else {
            return Err(RefreshRefusal::Anonymous);
        };
        let presented = Presented::new(token, Transport::Frame);
        let mode = if self.mode == Mode::Optional { Mode::Required } else { self.mode };
        match self.state.auth.authenticate(Some(&presented), mode).await {
            Ok(Some(identity)) if identity.user.username != bound.identity.user.username => {
                Err(RefreshRefusal::OtherUser)
            }
            Ok(Some(identity)) if identity.issuer != bound.identity.issuer => {
                Err(RefreshRefusal::OtherIssuer)
            }
            Ok(Some(identity)) => {
                bound.binding.rebind(&identity.claims);
                bound.identity = identity;
                self.warned = false;
                Ok(())
            }
            Ok(None) => Err(RefreshRefusal::OtherUser),
            // Not a verdict on the token: the client may try again, its socket stays on the old one.
            Err(AuthError::Store(err)) => {
                tracing::warn!(error = %err, "in-band refresh: the store is unavailable");
                Err(RefreshRefusal::Unavailable("storage unavailable, try again".into()))
            }
            Err(err @ AuthError::KeysUnavailable { .. }) => Err(RefreshRefusal::Unavailable(err.to_string())),
            Err(err) => {
                let expired = matches!(err, AuthError::Token(TokenError::Expired));
                Err(RefreshRefusal::Refused { detail: err.to_string(), expired })
            }
        }
    }
}

/// A read error as a close: too big (1009), bad UTF-8 (1007), a protocol error (1002), or the
/// peer is gone (`None`).
fn read_failure(err: axum::Error) -> Option<Close> {
    let inner = err.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => Some(Close::new(close::TOO_BIG, "message too big")),
        Some(tungstenite::Error::Utf8(_)) => Some(Close::new(close::INVALID_PAYLOAD, "invalid UTF-8")),
        Some(tungstenite::Error::Protocol(_)) => Some(Close::new(close::PROTOCOL_ERROR, "protocol error")),
        _ => None,
    }
}
