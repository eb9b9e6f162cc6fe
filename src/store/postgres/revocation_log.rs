//! Writing the revocation log: serialized by an advisory lock, so that ids become visible in
//! increasing order (why: the module documentation of `postgres.rs`).

use crate::store::Revocation;

/// Advisory lock key serializing writers of the revocation log ("wsguard" + 0x01). Shared by every
/// schema of the database, which only serializes log writes of several deployments together.
const REVOCATION_LOG_LOCK: i64 = 0x7773_6775_6172_6401;

/// Serializes the transaction's inserts into `revocations` with every other's; see the module
/// documentation. Take it after the transaction's row locks, right before inserting.
pub(super) async fn lock_revocation_log(tx: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(REVOCATION_LOG_LOCK).execute(tx).await?;
    Ok(())
}

/// Appends `revocation` to the log inside the caller's transaction, which already holds the lock
/// of [`lock_revocation_log`]; returns its id.
pub(super) async fn log_revocation(
    tx: &mut sqlx::PgConnection,
    revocation: &Revocation,
    now: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO revocations (kind, subject, username, expires_at, created_at, issued_before) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(revocation.kind.as_str())
    .bind(&revocation.subject)
    .bind(&revocation.username)
    .bind(revocation.expires_at)
    .bind(now)
    .bind(revocation.kind.issued_before())
    .fetch_one(tx)
    .await
}
