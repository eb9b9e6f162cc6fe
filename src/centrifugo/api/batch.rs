//! `batch`: several commands in one request, `{"commands": [{"<method>": {params}}, …]}`, run in
//! order; each has its reply, `{"<method>": result}` or `{"error": …}`, in
//! `{"replies": [...]}` (not wrapped in `result`, as Centrifugo answers). `parallel` is accepted
//! and changes nothing: commands run one after another either way.
//!
//! Every command is decoded before any runs: a batch with one command that is not a method of this
//! API, or not `{"<method>": {…}}`, is refused whole (400) and changes nothing. A command's own
//! refusal, its scope's included, is its reply alone.

use super::super::codes::{self, Error};
use super::reply::bad_request;
use super::{run, Call, Method};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Most commands one batch holds; the batch is one request of the key's budget.
pub(super) const MAX_COMMANDS: usize = 1000;

#[derive(Deserialize)]
struct BatchParams {
    commands: Vec<Value>,
    #[allow(dead_code)]
    parallel: Option<bool>,
}

/// The commands of a batch, or why it is refused.
fn decode(params: Value) -> Result<Vec<(Method, Value)>, Error> {
    let request: BatchParams =
        serde_json::from_value(params).map_err(|e| bad_request(format!("bad request: batch: {e}")))?;
    if request.commands.len() > MAX_COMMANDS {
        return Err(bad_request(format!("bad request: a batch holds at most {MAX_COMMANDS} commands")));
    }
    request.commands.into_iter().enumerate().map(|(i, command)| one(i, command)).collect()
}

fn one(index: usize, command: Value) -> Result<(Method, Value), Error> {
    let shape = || bad_request(format!("bad request: commands[{index}] must be {{\"<method>\": {{…}}}}"));
    let Value::Object(command) = command else { return Err(shape()) };
    let mut fields = command.into_iter();
    let (Some((name, params)), None) = (fields.next(), fields.next()) else { return Err(shape()) };
    let method = Method::parse(&name).filter(|m| *m != Method::Batch).ok_or_else(|| {
        codes::METHOD_NOT_FOUND.because(format!("method not found: commands[{index}]: {name:?}"))
    })?;
    let params = match params {
        Value::Null => Value::Object(Map::new()),
        object @ Value::Object(_) => object,
        _ => return Err(shape()),
    };
    Ok((method, params))
}

/// The replies to a batch's commands, or the batch's refusal (nothing ran).
pub(super) async fn batch(call: &Call<'_>, params: Value) -> Result<Value, Error> {
    let commands = decode(params)?;
    let mut replies = Vec::with_capacity(commands.len());
    for (method, params) in commands {
        let reply = match run(call, method, params).await {
            Ok(result) => json!({ method.name(): result }),
            Err(error) => json!({ "error": error }),
        };
        replies.push(reply);
    }
    Ok(json!({ "replies": replies }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_decoded_before_any_runs() {
        let commands = decode(json!({"commands": [{"publish": {"channel": "a", "data": 1}}, {"info": {}}],
            "parallel": true}))
        .unwrap();
        let methods: Vec<Method> = commands.iter().map(|(m, _)| *m).collect();
        assert_eq!(methods, [Method::Publish, Method::Info]);
        assert_eq!(decode(json!({"commands": [{"info": null}]})).unwrap()[0].1, json!({}));
        for (bad, code) in [
            (json!({}), 107),
            (json!({"commands": {}}), 107),
            (json!({"commands": [5]}), 107),
            (json!({"commands": [{}]}), 107),
            (json!({"commands": [{"info": {}, "channels": {}}]}), 107),
            (json!({"commands": [{"info": []}]}), 107),
            (json!({"commands": [{"info": {}}, {"nope": {}}]}), 104),
            (json!({"commands": [{"batch": {"commands": []}}]}), 104),
        ] {
            assert_eq!(decode(bad.clone()).unwrap_err().code, code, "{bad}");
        }
        let many: Vec<Value> = (0..=MAX_COMMANDS).map(|_| json!({"info": {}})).collect();
        assert_eq!(decode(json!({"commands": many})).unwrap_err().code, 107);
    }
}
