//! Liveness, readiness and metrics.

use crate::app::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;
use std::sync::atomic::Ordering;

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Alive")))]
pub(super) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the store and the broker answer.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "Ready"), (status = 503, description = "A dependency is down")))]
pub(super) async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let store = state.store.ping().await;
    let broker = state.broker.ping().await;
    if let Err(err) = &store {
        tracing::warn!(error = %err, "readiness: store down");
    }
    if let Err(err) = &broker {
        tracing::warn!(error = %err, "readiness: broker down");
    }
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let ready = store.is_ok() && broker.is_ok();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "store": word(store.is_ok()),
        "broker": word(broker.is_ok()),
    });
    (status, Json(body))
}

pub(super) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let stats = &state.hasher.stats;
    let hashes = (stats.count.load(Ordering::Relaxed), stats.micros.load(Ordering::Relaxed));
    let mut text = state.metrics.render(hashes);
    text.push_str("# HELP wsguard_token_rejections_total Refused authentications, by reason.\n");
    text.push_str("# TYPE wsguard_token_rejections_total counter\n");
    for (reason, count) in state.auth.rejections.snapshot() {
        text.push_str(&format!("wsguard_token_rejections_total{{reason=\"{reason}\"}} {count}\n"));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
