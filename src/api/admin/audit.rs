//! The audit log: every admin action is written here before it runs ([`Actor::record`]), and read
//! back newest first (`GET /api/admin/audit`).

use super::caller::{Actor, Admin};
use crate::api::params::{self, ApiQuery};
use crate::api::CallError;
use crate::app::AppState;
use crate::http::error::ErrorBody;
use crate::store::AuditEntry;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

impl Actor {
    /// Writes the entry of `action` on `target` before the action runs. A store that cannot take
    /// it refuses the action (503): nothing is done unrecorded. `detail` is a short note, never a
    /// secret.
    pub(crate) async fn record(
        &self,
        state: &AppState,
        action: &str,
        target: &str,
        detail: String,
    ) -> Result<(), CallError> {
        let entry = AuditEntry {
            id: 0,
            at_ms: crate::clock::now_ms(),
            actor: self.name.clone(),
            via: self.via.as_str().to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            address: self.address.to_string(),
            detail,
        };
        state.store.append_audit(&entry).await?;
        let (actor, via, address) = (&self.name, self.via.as_str(), entry.address.as_str());
        tracing::info!(actor, via, action, target, address, detail = entry.detail, "admin action");
        Ok(())
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Entries at most, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Only entries with an id below this one (the next page: the last id seen).
    #[param(minimum = 1)]
    before: Option<i64>,
}

/// One admin action.
#[derive(Serialize, ToSchema)]
pub(crate) struct AuditView {
    id: i64,
    /// Unix milliseconds.
    at_ms: i64,
    /// A username (the console), `key:<name>` (an API key) or `cli`.
    actor: String,
    /// `console`, `api` or `cli`.
    via: String,
    /// `publish`, `disconnect`, `revoke`, `apikey.add`, `apikey.revoke`, `admin.grant`, `admin.withdraw`.
    action: String,
    /// The channel, user or key acted on.
    target: String,
    /// The client's address (`local` for the CLI).
    address: String,
    detail: String,
}

impl From<AuditEntry> for AuditView {
    fn from(entry: AuditEntry) -> Self {
        let AuditEntry { id, at_ms, actor, via, action, target, address, detail } = entry;
        AuditView { id, at_ms, actor, via, action, target, address, detail }
    }
}

/// The audit log, newest first.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"entries": [{"id": 7, "at_ms": 1765100000000_i64, "actor": "root", "via": "console",
    "action": "disconnect", "target": "johndoe", "address": "127.0.0.1", "detail": ""}]}))]
pub(crate) struct AuditLog {
    entries: Vec<AuditView>,
}

/// The audit log
///
/// Every admin action (console, admin API, role changes from the CLI), newest first. Entries are
/// written before their action runs and never changed or deleted.
#[utoipa::path(get, path = "/api/admin/audit", tag = super::TAG,
    params(AuditQuery),
    responses(
        (status = 200, body = AuditLog, description = "Entries, newest first"),
        (status = 422, body = ErrorBody, description = "A bad limit or before",
            example = json!({"detail": "limit must be 1-1000"})),
    ))]
pub(super) async fn audit(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditLog>, CallError> {
    let limit = params::limit(query.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let before = query.before.unwrap_or(i64::MAX);
    if before < 1 {
        return Err(CallError::invalid("before must be positive"));
    }
    let entries = state.store.audit_log(before, limit).await?;
    Ok(Json(AuditLog { entries: entries.into_iter().map(AuditView::from).collect() }))
}
