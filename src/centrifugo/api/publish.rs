//! `publish` and `broadcast`: the engine's publications, as `/api/publish` and `/api/broadcast`
//! make them (stored and numbered first where the namespace keeps history, `from` null), answered
//! with Centrifugo's `{"offset", "epoch"}`. Scope `publish`.

use super::super::codes::Error;
use super::params::{channel_refusal, decode, given, refuse_if};
use super::reply::{bad_request, outcome_value};
use super::Call;
use crate::channels::Publisher;
use crate::store::Position;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Most channels one broadcast reaches, as `/api/broadcast`.
const MAX_BROADCAST_CHANNELS: usize = 100;

/// The options of Centrifugo's publications that wsguard has no way to honour; `delta`, a hint to
/// compress what subscribers receive, changes nothing they get and is accepted.
#[derive(Deserialize)]
struct Options {
    skip_history: Option<bool>,
    tags: Option<HashMap<String, String>>,
    b64data: Option<String>,
    idempotency_key: Option<String>,
    version: Option<u64>,
    version_epoch: Option<String>,
    #[allow(dead_code)]
    delta: Option<bool>,
}

impl Options {
    fn check(&self) -> Result<(), Error> {
        refuse_if(
            self.skip_history == Some(true),
            "skip_history",
            "a namespace with history keeps every publication",
        )?;
        refuse_if(self.tags.as_ref().is_some_and(|t| !t.is_empty()), "tags", "publications carry data only")?;
        refuse_if(self.b64data.is_some(), "b64data", "publications are JSON; send data")?;
        refuse_if(given(&self.idempotency_key), "idempotency_key", "publications are not deduplicated")?;
        refuse_if(
            self.version.is_some_and(|v| v > 0) || given(&self.version_epoch),
            "version",
            "publications are not versioned",
        )
    }
}

#[derive(Deserialize)]
struct PublishParams {
    channel: String,
    #[serde(flatten)]
    options: Options,
}

#[derive(Deserialize)]
struct BroadcastParams {
    channels: Vec<String>,
    #[serde(flatten)]
    options: Options,
}

/// `data`, any JSON (`null` included, as Centrifugo takes it), which must be there.
fn data(params: &Value) -> Result<Value, Error> {
    params.get("data").cloned().ok_or_else(|| bad_request("bad request: data is required"))
}

/// Where a publication stands, as Centrifugo's `PublishResult`: nothing in a namespace without
/// history, which numbers nothing.
fn published(at: Option<Position>) -> Value {
    match at {
        Some(Position { offset, epoch }) => json!({ "offset": offset, "epoch": epoch }),
        None => Value::Object(Map::new()),
    }
}

pub(super) async fn publish(call: &Call<'_>, params: Value) -> Result<Value, Error> {
    let request: PublishParams = decode("publish", params.clone())?;
    request.options.check()?;
    let data = data(&params)?;
    let engine = &call.state.engine;
    let at = engine
        .publish(Publisher::Api, &request.channel, &data)
        .await
        .map_err(|refused| channel_refusal(engine, &request.channel, refused))?;
    tracing::debug!(key = call.key, channel = request.channel, "published through the centrifugo API");
    Ok(published(at))
}

/// The same data to each channel, in order; each channel's outcome on its own, as Centrifugo
/// answers: a refused channel does not stop the others.
pub(super) async fn broadcast(call: &Call<'_>, params: Value) -> Result<Value, Error> {
    let request: BroadcastParams = decode("broadcast", params.clone())?;
    request.options.check()?;
    let data = data(&params)?;
    let count = request.channels.len();
    if count == 0 || count > MAX_BROADCAST_CHANNELS {
        return Err(bad_request(format!("bad request: channels must hold 1-{MAX_BROADCAST_CHANNELS} names")));
    }
    let engine = &call.state.engine;
    let batch: Vec<(&str, &Value)> = request.channels.iter().map(|name| (name.as_str(), &data)).collect();
    let answers = engine.publish_all(Publisher::Api, &batch).await;
    let responses: Vec<Value> = request
        .channels
        .iter()
        .zip(answers)
        .map(|(name, answer)| {
            outcome_value(answer.map(published).map_err(|refused| channel_refusal(engine, name, refused)))
        })
        .collect();
    tracing::debug!(key = call.key, channels = count, "broadcast through the centrifugo API");
    Ok(json!({ "responses": responses }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(value: Value) -> Result<(), Error> {
        serde_json::from_value::<Options>(value).unwrap().check()
    }

    #[test]
    fn options_wsguard_cannot_honour_are_refused_by_name() {
        assert!(options(json!({})).is_ok());
        assert!(options(json!({"skip_history": false, "tags": {}, "delta": true, "version": 0})).is_ok());
        for (set, field) in [
            (json!({"skip_history": true}), "skip_history"),
            (json!({"tags": {"a": "b"}}), "tags"),
            (json!({"b64data": "aGk="}), "b64data"),
            (json!({"idempotency_key": "k"}), "idempotency_key"),
            (json!({"version": 3}), "version"),
            (json!({"version_epoch": "e"}), "version"),
        ] {
            let error = options(set).unwrap_err();
            assert_eq!(error.code, 108);
            assert!(
                error.message.starts_with(&format!("not available in wsguard: {field}:")),
                "{}",
                error.message
            );
        }
    }

    #[test]
    fn data_must_be_there_and_may_be_null() {
        assert_eq!(data(&json!({"data": null})).unwrap(), Value::Null);
        assert_eq!(data(&json!({"channel": "a"})).unwrap_err().code, 107);
        assert_eq!(published(None), json!({}));
        assert_eq!(
            published(Some(Position { offset: 3, epoch: "e".into() })),
            json!({"offset": 3, "epoch": "e"})
        );
    }
}
