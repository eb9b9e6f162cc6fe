//! A socket without a token on `/connect` and `/chat/ws`, asked of the application's connect
//! proxy: the identity it names, or the close to make.

use super::close::{self, Close};
use crate::app::AppState;
use crate::auth::{AuthError, Identity};
use crate::proxy::{Caller, ConnectRequest, Verdict, Via};
use axum::http::HeaderMap;

/// Why the connect proxy admitted no one: the close to make if no token follows in a first frame,
/// or at once.
pub(super) enum ProxyRefusal {
    Fallback(Close),
    Close(Close),
}

/// Asks the connect proxy about a socket without a token (`/connect`, `/chat/ws`). Its refusal
/// closes with 1008 and the application's message, its failure with 1013 (try again), should no
/// `auth` frame follow; its disconnect closes at once with the application's code.
pub(super) async fn ask_proxy(
    state: &AppState,
    headers: HeaderMap,
    via: Via,
) -> Result<Identity, ProxyRefusal> {
    let Some(proxy) = state.proxy.as_ref() else {
        return Err(ProxyRefusal::Fallback(Close::new(close::POLICY, AuthError::Missing.to_string())));
    };
    let client = uuid::Uuid::new_v4().to_string();
    let request = ConnectRequest { caller: Caller::new(&client, via), name: None, version: None, data: None };
    // Boxed: the call's future would otherwise enlarge the admission's.
    match Box::pin(proxy.admit(&state.auth, &request, headers)).await {
        Verdict::Admitted { identity, .. } => Ok(*identity),
        Verdict::Refused(error) => Err(ProxyRefusal::Fallback(Close::new(close::POLICY, error.message))),
        Verdict::Failed(failure) => {
            Err(ProxyRefusal::Fallback(Close::new(close::TRY_AGAIN_LATER, failure.to_string())))
        }
        Verdict::Disconnect(disconnect) => {
            Err(ProxyRefusal::Close(Close::new(disconnect.code, disconnect.reason)))
        }
    }
}
