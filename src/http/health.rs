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

/// Readiness: the store and the broker answer. Trusted issuers' published keys are listed, each
/// `ok` or `stale` (the last fetch failed: the keys fetched before are still used), without
/// changing readiness: a node cannot serve them better by leaving the load balancer.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "Ready"), (status = 503, description = "A dependency is down")))]
pub(super) async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let store = state.store.ping().await;
    let broker = state.engine.ping().await;
    if let Err(err) = &store {
        tracing::warn!(error = %err, "readiness: store down");
    }
    if let Err(err) = &broker {
        tracing::warn!(error = %err, "readiness: broker down");
    }
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let ready = store.is_ok() && broker.is_ok();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "store": word(store.is_ok()),
        "broker": word(broker.is_ok()),
    });
    let issuers: serde_json::Map<String, serde_json::Value> = state
        .auth
        .issuers
        .published()
        .map(|(_, jwks)| (jwks.url.clone(), json!(if jwks.is_stale() { "stale" } else { "ok" })))
        .collect();
    if !issuers.is_empty() {
        body["issuers"] = issuers.into();
    }
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
    text.push_str("# HELP wsguard_deliveries_total Frames queued for this node's sockets.\n");
    text.push_str("# TYPE wsguard_deliveries_total counter\n");
    text.push_str(&format!("wsguard_deliveries_total {}\n", state.engine.node().deliveries));
    issuer_metrics(&state, &mut text);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// Per trusted issuer with published keys: whether they are stale, and fetches by result.
fn issuer_metrics(state: &AppState, text: &mut String) {
    use std::fmt::Write;
    let published: Vec<_> = state.auth.issuers.published().collect();
    if published.is_empty() {
        return;
    }
    let label = |issuer: &str, url: &str| {
        let escape = |value: &str| value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        format!("issuer=\"{}\",jwks_url=\"{}\"", escape(issuer), escape(url))
    };
    text.push_str("# HELP wsguard_issuer_keys_stale 1 when the last fetch of a trusted issuer's keys failed (the keys fetched before stay in use).\n");
    text.push_str("# TYPE wsguard_issuer_keys_stale gauge\n");
    for (issuer, jwks) in &published {
        let stale = u8::from(jwks.is_stale());
        let _ = writeln!(text, "wsguard_issuer_keys_stale{{{}}} {stale}", label(&issuer.name, &jwks.url));
    }
    text.push_str("# HELP wsguard_issuer_key_fetches_total Fetches of trusted issuers' keys, by result.\n");
    text.push_str("# TYPE wsguard_issuer_key_fetches_total counter\n");
    for (issuer, jwks) in &published {
        let labels = label(&issuer.name, &jwks.url);
        for (result, count) in [("ok", jwks.fetched.get()), ("failed", jwks.failed.get())] {
            let _ =
                writeln!(text, "wsguard_issuer_key_fetches_total{{{labels},result=\"{result}\"}} {count}");
        }
    }
}
