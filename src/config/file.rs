//! The configuration file as a layer under flags and environment: [`parse`] reads `wsguard.toml`,
//! takes out its [`Sections`], and hands every other key to clap as `--flag=value` wherever neither
//! the flag nor its variable was given, so that one parser checks every layer the same way.

use super::Sections;
use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The subcommand whose arguments define the file's keys.
const FILE_KEYS_OF: &str = "serve";
/// The global argument naming the file.
const CONFIG_ARG: &str = "config";

/// Parses `args` as the command line of `P`, with the configuration file (the global `--config`
/// argument of `P`) under flags and environment, and the file's [`Sections`]. Help, version and
/// usage errors exit as clap does.
pub(crate) fn parse<P: CommandFactory + FromArgMatches>(
    args: Vec<OsString>,
) -> anyhow::Result<(P, Sections)> {
    let mut command = P::command();
    let matches = command.try_get_matches_from_mut(&args).unwrap_or_else(|err| err.exit());
    let path: PathBuf = matches.get_one::<PathBuf>(CONFIG_ARG).cloned().unwrap_or_default();
    let explicit = matches.value_source(CONFIG_ARG) != Some(ValueSource::DefaultValue);
    let mut file = read_file(&path, explicit)?;
    resolve_paths(&mut file, path.parent().unwrap_or(Path::new("")));
    let sections = Sections::take(&mut file).with_context(|| path.display().to_string())?;
    let extra = file_flags(&command, &matches, &file).with_context(|| path.display().to_string())?;
    if extra.is_empty() {
        return Ok((P::from_arg_matches(&matches)?, sections));
    }
    let with_file = P::command().try_get_matches_from(args.into_iter().chain(extra)).map_err(|err| {
        let message = err.to_string();
        anyhow::anyhow!("{}: {}", path.display(), message.trim().trim_start_matches("error: "))
    })?;
    Ok((P::from_arg_matches(&with_file)?, sections))
}

/// The file's keys, `toml` parsed. A missing file is fine only when it was not asked for.
fn read_file(path: &Path, explicit: bool) -> anyhow::Result<toml::Table> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).with_context(|| path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(toml::Table::new()),
        Err(e) => Err(e).with_context(|| path.display().to_string()),
    }
}

/// `--flag=value` for each key of `file` that the invoked command reads and that neither its flag
/// nor its environment variable set. A key that `serve` does not know is an error for every
/// command, so that a typo never passes silently.
fn file_flags(
    command: &clap::Command,
    matches: &ArgMatches,
    file: &toml::Table,
) -> anyhow::Result<Vec<OsString>> {
    let serve = command.find_subcommand(FILE_KEYS_OF).expect("the serve command");
    let (mut leaf, mut leaf_matches) = (command, matches);
    while let Some((name, sub)) = leaf_matches.subcommand() {
        leaf = leaf.find_subcommand(name).expect("a parsed subcommand exists");
        leaf_matches = sub;
    }
    let mut flags = Vec::new();
    for (key, value) in file {
        let known = |c: &clap::Command| {
            c.get_arguments().find(|a| a.get_id() == key && a.get_long().is_some()).cloned()
        };
        anyhow::ensure!(
            key != CONFIG_ARG && known(serve).is_some(),
            "unknown key {key:?}{}",
            did_you_mean(serve, key)
        );
        let Some(arg) = known(leaf) else { continue };
        if matches!(leaf_matches.value_source(key), Some(ValueSource::CommandLine | ValueSource::EnvVariable))
        {
            continue;
        }
        let long = arg.get_long().expect("checked above");
        flags.push(OsString::from(format!("--{long}={}", flag_value(key, value)?)));
    }
    Ok(flags)
}

/// ` (did you mean "…"?)` when a key of the file is close to one `serve` knows, else nothing.
fn did_you_mean(serve: &clap::Command, key: &str) -> String {
    let candidates = serve.get_arguments().filter(|a| a.get_long().is_some()).map(|a| a.get_id().as_str());
    let closest = candidates
        .chain(super::sections::SECTION_KEYS)
        .map(|known| (strsim::jaro_winkler(key, known), known))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match closest {
        Some((similarity, known)) if similarity >= 0.85 => format!(" (did you mean {known:?}?)"),
        _ => String::new(),
    }
}

/// Relative paths in the file are the file's folder's, as its reader would take them (flags and
/// environment variables keep the working folder's): the keys naming a file or folder
/// (`*_file`, `*_dir`, `tls_cert`, `tls_key`), at the top and in the sections' tables.
fn resolve_paths(table: &mut toml::Table, folder: &Path) {
    for (key, value) in table.iter_mut() {
        match value {
            toml::Value::String(path) if is_path_key(key) && Path::new(path).is_relative() => {
                *path = folder.join(&*path).to_string_lossy().into_owned();
            }
            toml::Value::String(url) if key == "database_url" => {
                if let Some(resolved) = sqlite_url_in(folder, url) {
                    *url = resolved;
                }
            }
            toml::Value::Table(inner) => resolve_paths(inner, folder),
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Table(inner) = item {
                        resolve_paths(inner, folder);
                    }
                }
            }
            _ => {}
        }
    }
}

/// A SQLite URL with a relative path (`sqlite://wsguard.db`, `sqlite:data/w.db?mode=rwc`), its
/// path made the file's folder's; `None` for any other URL, or one already absolute or in memory.
pub(super) fn sqlite_url_in(folder: &Path, url: &str) -> Option<String> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    if path.is_empty() || path == ":memory:" || Path::new(path).is_absolute() {
        return None;
    }
    let path = folder.join(path);
    Some(match query {
        Some(query) => format!("sqlite://{}?{query}", path.display()),
        None => format!("sqlite://{}", path.display()),
    })
}

fn is_path_key(key: &str) -> bool {
    key.ends_with("_file") || key.ends_with("_dir") || matches!(key, "tls_cert" | "tls_key")
}

fn flag_value(key: &str, value: &toml::Value) -> anyhow::Result<String> {
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => {
            items.iter().map(|item| flag_value(key, item)).collect::<anyhow::Result<Vec<_>>>()?.join(",")
        }
        _ => anyhow::bail!("{key}: expected a string, number or list"),
    })
}
