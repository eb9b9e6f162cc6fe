//! Opening a [`PostgresStore`]: the pool, the optional schema, the migrations.

use crate::store::group_commit::PublicationWriter;
use crate::store::PostgresStore;
use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;

/// Connections per node. PostgreSQL's default `max_connections` is 100: room for a few nodes.
const MAX_CONNECTIONS: u32 = 16;
/// How long a request waits for a connection: during an outage requests fail fast with
/// [`StoreError::Unavailable`](crate::store::StoreError::Unavailable) (HTTP 503) instead of hanging.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

impl PostgresStore {
    /// Connects to `postgres://…` (or `postgresql://…`) and runs the migrations. Fails if the
    /// database cannot be reached within a few seconds.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(url).context("invalid PostgreSQL URL")?;
        Self::connect_with(options).await
    }

    /// Like [`PostgresStore::connect`], with every table in `schema` (created if missing) instead
    /// of the role's default search path: for tests, which each use a fresh schema, and for
    /// operators who keep wsguard apart from other applications in one database. `schema` must be
    /// a plain lowercase identifier (`[a-z_][a-z0-9_]*`, at most 63 bytes).
    pub async fn connect_with_schema(url: &str, schema: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            valid_schema_name(schema),
            "invalid schema name {schema:?}: expected [a-z_][a-z0-9_]*, at most 63 bytes"
        );
        let options = PgConnectOptions::from_str(url)
            .context("invalid PostgreSQL URL")?
            .options([("search_path", schema)]);
        let pool = Self::pool(&options).await?;
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .execute(&pool)
            .await
            .with_context(|| format!("cannot create schema {schema}"))?;
        Self::migrate(pool).await
    }

    /// Connects with explicit options (TLS, socket, startup options…) and runs the migrations.
    pub async fn connect_with(options: PgConnectOptions) -> anyhow::Result<Self> {
        let pool = Self::pool(&options).await?;
        Self::migrate(pool).await
    }

    async fn pool(options: &PgConnectOptions) -> anyhow::Result<PgPool> {
        PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .with_context(|| {
                format!(
                    "cannot connect to PostgreSQL at {} (is it running and reachable?)",
                    describe(options)
                )
            })
    }

    async fn migrate(pool: PgPool) -> anyhow::Result<Self> {
        crate::store::migrations::POSTGRES
            .run(&pool)
            .await
            .context("cannot migrate the PostgreSQL schema")?;
        Ok(PostgresStore { publications: PublicationWriter::start(pool.clone()), pool })
    }
}

/// `user@host:port/database`, never the password.
fn describe(options: &PgConnectOptions) -> String {
    format!(
        "{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    )
}

fn valid_schema_name(schema: &str) -> bool {
    let mut chars = schema.chars();
    schema.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        assert!(valid_schema_name("wsguard"));
        assert!(valid_schema_name("t_0123abc"));
        assert!(valid_schema_name("_x"));
        assert!(!valid_schema_name(""));
        assert!(!valid_schema_name("0abc"));
        assert!(!valid_schema_name("Upper"));
        assert!(!valid_schema_name("a b"));
        assert!(!valid_schema_name("a\"; DROP"));
        assert!(!valid_schema_name(&"a".repeat(64)));
    }
}
