//! `rpc`: a call to the application's RPC proxy with the socket's user, answered with an `rpc`
//! frame carrying the application's data, or its refusal.

use crate::channels::protocol::{self, ErrorCode, Refusal};
use crate::channels::{decided, Subscriber};
use crate::proxy::{Caller, RpcRequest};
use serde_json::Value;

pub(super) async fn rpc(
    subscriber: &mut Subscriber,
    method: &str,
    data: Option<&Value>,
    reference: Option<&str>,
) -> Result<Vec<String>, Refusal> {
    protocol::check_ref(reference)?;
    let engine = subscriber.engine().clone();
    let Some(proxy) = engine.application().filter(|proxy| proxy.answers_rpc()) else {
        return Err(Refusal::new(ErrorCode::BadRequest, "rpc is not served: no [proxy] rpc endpoint"));
    };
    let client = subscriber.client().to_string();
    let call = RpcRequest {
        caller: Caller::new(&client, subscriber.via()),
        user: subscriber.username(),
        method,
        data,
    };
    let result = decided(proxy.rpc(&call).await)?;
    Ok(vec![protocol::rpc_answer(reference, result.data)])
}
