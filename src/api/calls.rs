//! Every server-API call logged (the key's name, never the key; method, path, status, latency)
//! and counted in `/metrics` by key name and status class. The middleware sees the status, the
//! [`ApiCaller`](super::ApiCaller) extractor the caller: they meet in a [`CallSlot`] the middleware
//! puts in the request.

use crate::metrics::{Metrics, NO_KEY};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Default)]
struct Seen {
    name: Option<Arc<str>>,
    metrics: Option<Arc<Metrics>>,
}

/// What the extractor learnt about the call: the key's name, once it is known, and where to count.
#[derive(Clone, Default)]
pub(super) struct CallSlot(Arc<Mutex<Seen>>);

impl CallSlot {
    pub(super) fn count_in(&self, metrics: Arc<Metrics>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).metrics = Some(metrics);
    }

    pub(super) fn name(&self, name: Arc<str>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).name = Some(name);
    }

    fn take(&self) -> Seen {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Runs the call, then logs and counts it.
pub(crate) async fn record(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    // The path only, when logged: a query string is the caller's, and may hold anything. (A
    // clone of the URI shares its bytes.)
    let uri = request.uri().clone();
    let slot = CallSlot::default();
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let seen = slot.take();
    let key = seen.name.as_deref().unwrap_or(NO_KEY);
    if let Some(metrics) = seen.metrics {
        metrics.api_calls.count(key, status);
    }
    // Milliseconds to the hundredth.
    let latency_ms = (started.elapsed().as_secs_f64() * 100_000.0).round() / 100.0;
    tracing::info!(key, %method, path = uri.path(), status, latency_ms, "api call");
    response
}
