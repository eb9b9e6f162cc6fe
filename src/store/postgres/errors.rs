//! PostgreSQL's errors as [`StoreError`]s: an outage is an outage (503), whatever reports it.

use crate::store::{StoreError, StoreResult};
use std::future::Future;

/// [`StoreError`] from a PostgreSQL error. On top of the driver-level classification of
/// `From<sqlx::Error>` (I/O, pool timeout → Unavailable), the server's own "go away" answers are
/// outages too: connection exceptions (class 08), admin/crash shutdown and "starting up" (57P01-3),
/// too many connections (53300). A restart of PostgreSQL then answers 503, not 500.
pub(super) fn pg_error(err: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &err {
        if let Some(code) = db.code() {
            if code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300") {
                return StoreError::Unavailable(err.into());
            }
        }
    }
    StoreError::from(err)
}

/// Runs a body written with `?` on `sqlx::Error` and classifies its error with [`pg_error`].
pub(super) async fn run<T>(body: impl Future<Output = Result<T, sqlx::Error>>) -> StoreResult<T> {
    body.await.map_err(pg_error)
}
