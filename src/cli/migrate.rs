//! `wsguard migrate`: brings the database's schema up to date, as `serve` does at start, so that
//! an upgrade can migrate once before the nodes start; with `--check`, only says where it stands.

use crate::config::StoreSettings;
use crate::logs::redact_url;
use crate::store::migrations::{self, State, Status};
use clap::Args;
use std::time::Duration;

/// How long reaching the database may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Args)]
pub(super) struct MigrateCommand {
    /// Apply nothing: list the migrations applied and pending, and exit with status 1 when some
    /// are pending or the database has migrations this binary does not know (a newer version ran)
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    store: StoreSettings,
}

impl MigrateCommand {
    pub(super) async fn run(self) -> anyhow::Result<()> {
        let url = self.store.database_url();
        let shown = redact_url(&url);
        let before = migrations::status(&url, CONNECT_TIMEOUT)
            .await
            .map_err(|err| anyhow::anyhow!("cannot read the migrations of {shown}: {err:#}"))?;
        if self.check {
            for migration in &before.known {
                println!("{:<8} {}", label(migration.state), migration.name);
            }
            for name in &before.unknown {
                println!("unknown  {name} (applied by a newer wsguard)");
            }
            refuse_foreign(&before)?;
            let pending = before.count(State::Pending);
            anyhow::ensure!(
                pending == 0,
                "{shown}: {pending} migration(s) pending; `wsguard migrate` applies them (so does \
                 `wsguard serve` at start)"
            );
            println!("{shown}: up to date ({} migrations)", before.known.len());
            return Ok(());
        }
        refuse_foreign(&before)?;
        // The data folder only holds a SQLite database: with PostgreSQL, nothing to create.
        if url.starts_with("sqlite:") {
            crate::config::ensure_data_dir(&self.store.data_dir)?;
        }
        crate::store::connect(&url).await?;
        for migration in before.known.iter().filter(|m| m.state == State::Pending) {
            println!("applied  {}", migration.name);
        }
        println!("{shown}: up to date ({} migrations)", before.known.len());
        Ok(())
    }
}

/// Fails on what neither `migrate` nor `serve` can apply: a schema changed by a newer version,
/// or one left half way.
pub(super) fn refuse_foreign(status: &Status) -> anyhow::Result<()> {
    if !status.unknown.is_empty() {
        anyhow::bail!(
            "the database has migrations this wsguard does not know ({}): a newer version ran on \
             it. Run that version, or restore the backup made before upgrading",
            status.unknown.join(", ")
        );
    }
    for migration in &status.known {
        match migration.state {
            State::Failed => anyhow::bail!(
                "migration {} started and did not finish: restore the backup made before it",
                migration.name
            ),
            State::Changed => anyhow::bail!(
                "migration {} was applied from another file than this wsguard's: the binary or the \
                 database was altered by hand",
                migration.name
            ),
            State::Applied | State::Pending => {}
        }
    }
    Ok(())
}

pub(super) fn label(state: State) -> &'static str {
    match state {
        State::Applied => "applied",
        State::Pending => "pending",
        State::Failed => "failed",
        State::Changed => "changed",
    }
}
