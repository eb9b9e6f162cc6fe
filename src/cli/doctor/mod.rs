//! `wsguard doctor`: checks a configuration without serving it, read as `serve` reads it (the
//! file, `WSGUARD_*` variables, flags), and says what to fix: one line per check, `ok`, `warning`,
//! or `problem` with the fix. Exits with status 1 when a check found a problem.
//!
//! Files are checked here and in `files.rs`; what answers over the network (the database, Redis,
//! trusted issuers' keys, the application's URLs) in `services.rs`, all at once and each within a
//! few seconds, so that a run takes seconds however much is down. Nothing is changed: no folder,
//! key or database file is created, no migration applied. A secret is never printed: secret
//! files are named, and URLs shown without their user and password.

mod files;
mod services;

use crate::config::Config;
use std::fmt;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warning,
    Problem,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Padded here: `{:<8}` would not pad through this impl.
        f.write_str(match self {
            Level::Ok => "ok      ",
            Level::Warning => "warning ",
            Level::Problem => "problem ",
        })
    }
}

/// What one check found: about what (a file, a URL), and what to do.
struct Finding {
    level: Level,
    subject: String,
    text: String,
}

/// The findings of some checks, in the order they were made.
#[derive(Default)]
struct Report(Vec<Finding>);

impl Report {
    fn ok(&mut self, subject: impl Into<String>, text: impl Into<String>) {
        self.add(Level::Ok, subject.into(), text.into());
    }

    fn warning(&mut self, subject: impl Into<String>, text: impl Into<String>) {
        self.add(Level::Warning, subject.into(), text.into());
    }

    fn problem(&mut self, subject: impl Into<String>, text: impl Into<String>) {
        self.add(Level::Problem, subject.into(), text.into());
    }

    fn add(&mut self, level: Level, subject: String, text: String) {
        self.0.push(Finding { level, subject, text });
    }

    fn append(&mut self, other: Report) {
        self.0.extend(other.0);
    }

    fn count(&self, level: Level) -> usize {
        self.0.iter().filter(|finding| finding.level == level).count()
    }
}

/// Checks `config`, read from the file `file` (if it exists) under the environment and flags.
pub(super) async fn run(config: Config, file: &Path) -> anyhow::Result<()> {
    let mut report = Report::default();
    files::check(&mut report, &config, file);
    report.append(services::check(&config).await);
    for finding in &report.0 {
        crate::logs::print(&format!("{}{}: {}", finding.level, finding.subject, finding.text));
    }
    let (problems, warnings) = (report.count(Level::Problem), report.count(Level::Warning));
    anyhow::ensure!(
        problems == 0,
        "{problems} problem(s) and {warnings} warning(s) above; fix the problems and run `wsguard doctor` again"
    );
    crate::logs::print(&format!("no problems, {warnings} warning(s)"));
    Ok(())
}
