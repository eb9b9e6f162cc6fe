//! An application's proxy endpoints, as a real HTTP server on a random port: each event's answer
//! is set by the test (a JSON answer, a status, a delay, bytes that are not JSON), and every call
//! is recorded with its headers and body.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the application answers an event.
#[derive(Debug, Clone)]
pub enum Reply {
    Json(Value),
    Status(u16),
    /// The answer, after a while.
    Slow(Duration, Value),
    Garbage,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Default)]
struct Script {
    replies: Mutex<HashMap<String, Reply>>,
    calls: Mutex<Vec<(String, Call)>>,
}

pub struct Application {
    pub base: String,
    script: Arc<Script>,
}

impl Application {
    pub async fn start() -> Application {
        let script = Arc::new(Script::default());
        let app =
            axum::Router::new().route("/rt/{event}", axum::routing::post(answer)).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Application { base, script }
    }

    /// The URL of `event`'s endpoint.
    pub fn url(&self, event: &str) -> String {
        format!("{}/rt/{event}", self.base)
    }

    pub fn reply(&self, event: &str, reply: Reply) {
        self.script.replies.lock().unwrap().insert(event.to_owned(), reply);
    }

    /// The calls made to `event` so far.
    pub fn calls(&self, event: &str) -> Vec<Call> {
        let calls = self.script.calls.lock().unwrap();
        calls.iter().filter(|(e, _)| e == event).map(|(_, call)| call.clone()).collect()
    }
}

async fn answer(
    State(script): State<Arc<Script>>,
    Path(event): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    script.calls.lock().unwrap().push((event.clone(), Call { headers, body }));
    let reply = script.replies.lock().unwrap().get(&event).cloned().unwrap_or(Reply::Status(404));
    match reply {
        Reply::Json(value) => axum::Json(value).into_response(),
        Reply::Status(status) => StatusCode::from_u16(status).unwrap().into_response(),
        Reply::Slow(delay, value) => {
            tokio::time::sleep(delay).await;
            axum::Json(value).into_response()
        }
        Reply::Garbage => "<html>oops</html>".into_response(),
    }
}
