//! Connections the application's connect proxy admitted: at their `expire_at` the application's
//! refresh proxy is asked whether they live on. It prolongs them to a new `expire_at`, lets them
//! end (`expired`, closed as a token's expiry is), or closes them with a code of its own. While it
//! fails to answer, the connection stays and it is asked again every [`RETRY`], for at most
//! [`GRACE_SECS`] past the expiry; then the connection ends as expired, and its client connects
//! again through the connect proxy.

use super::{Socket, Step};
use crate::auth::Issuer;
use crate::proxy::{Answer, Caller, RefreshRequest, RefreshResult};
use crate::ws::close::Close;
use crate::ws::socket::{Endpoint, Wire};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::Instant;

/// How soon a refresh the application failed to answer is tried again.
const RETRY: Duration = Duration::from_secs(5);
/// The longest a connection outlives its expiry while the application fails to answer.
const GRACE_SECS: i64 = 60;

impl<E: Endpoint, W: Wire> Socket<E, W> {
    /// Whether the identity's expiry goes to the refresh proxy: a connection of the connect proxy,
    /// when there is a refresh proxy.
    pub(super) fn refreshed_by_proxy(&self) -> bool {
        let proxied = self.bound.as_ref().is_some_and(|b| b.identity.issuer == Issuer::Proxy);
        proxied && self.state.proxy.as_ref().is_some_and(|p| p.refreshes())
    }

    /// [`prolong`](Self::prolong), boxed: a rare path, whose future would otherwise enlarge every
    /// socket's task.
    pub(super) fn prolonged<'a>(
        &'a mut self,
        expiry: &'a mut Option<Instant>,
    ) -> Pin<Box<dyn Future<Output = Step> + Send + 'a>> {
        Box::pin(self.prolong(expiry))
    }

    /// Asks the refresh proxy at the identity's expiry. While it fails, `claims.exp` stays the
    /// expiry the application last granted, and `expiry` (the timer's) moves to the next try.
    async fn prolong(&mut self, expiry: &mut Option<Instant>) -> Step {
        let state = self.state.clone();
        let (Some(proxy), Some(bound)) = (state.proxy.as_ref(), self.bound.as_mut()) else {
            return self.expired();
        };
        let claims = &bound.identity.claims;
        let request = RefreshRequest {
            caller: Caller::new(&claims.jti, self.ws.via()),
            user: &bound.identity.user.username,
        };
        let answer = proxy.refresh(&request).await;
        let now = crate::clock::now_secs();
        match answer {
            Ok(Answer::Result(RefreshResult { expired: false, expire_at })) if expire_at > now => {
                bound.identity.claims.exp = expire_at;
                Step::Continue
            }
            Ok(Answer::Disconnect(disconnect)) => Step::Close(Close::new(disconnect.code, disconnect.reason)),
            Ok(_) => self.expired(),
            Err(_) if now - bound.identity.claims.exp >= GRACE_SECS => self.expired(),
            Err(_) => {
                *expiry = Some(Instant::now() + RETRY);
                Step::Continue
            }
        }
    }
}
