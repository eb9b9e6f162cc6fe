//! `report`: the JSON lines of a run (one per workload, system and round) as a markdown table,
//! each figure beside the target and whether wsguard meets it.
//!
//! Of several rounds, each system's best round of a workload is shown, "best" by that workload's
//! headline figure (throughput; memory per socket for `idle`), and the whole row comes from that
//! round, so figures in one column were measured together.
//!
//! A fan-out line with `"nodes": N` above 1 counts as the workload `fanout-N-nodes`, one with
//! `"case": "<case>"` as `fanout-<case>` (bare-broadcast's lines are system `bare`), a recovery
//! line with `"store": "postgres"` as `recovery-postgres`, a publish-rate line with `"senders": N`
//! above 1 as `publish-senders` (`publish-senders-postgres`), and an idle line with
//! `"scale": true` as `idle-scale` (`idle-scale-chat` off `/secured-ws`), rows of their own.
//! Beside wsguard's own protocol, Centrifugo's client protocol has a table of its own
//! (`centrifugo_rows`): a line with `"protocol": "centrifugo"` counts as its workload with
//! `-centrifugo` after it (`handshake-centrifugo`, `fanout-saturation-centrifugo`,
//! `idle-subscribed-centrifugo`), the `/connect` lines it is compared with as `handshake-connect`
//! (a handshake line with `"path": "/connect"`) and `idle-subscribed` (`"subscribed": true`).
//! Centrifugo's protocol over HTTP streaming and SSE has its own (`stream_rows`): such a line
//! (`"transport": "http_stream"` or `"sse"`) counts as its Centrifugo workload with the transport
//! after it (`fanout-saturation-centrifugo-sse`, `idle-subscribed-centrifugo-http_stream`), and an
//! `emulation` line as `emulation-<case>`.
//! A line with `"skipped": "<reason>"` (written by `scripts/bench.sh` when a workload could
//! not run, e.g. PostgreSQL or Redis unreachable) shows as "not run" with the reason below the
//! table.

use anyhow::Context;
use clap::Args;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The JSON lines written by the workload subcommands
    #[arg(long)]
    pub input: PathBuf,
}

mod centrifugo_rows;
mod fanout_rows;
mod proxy_rows;
mod rows;
mod stream_rows;

use fanout_rows::FANOUT_ROWS;
use rows::{Goal, ROWS};

/// The workload a line counts as: its `workload`, or `fanout-N-nodes` for a fan-out over N > 1
/// nodes.
fn workload_of(line: &Value) -> Option<String> {
    let workload = line["workload"].as_str()?;
    let centrifugo = if line["protocol"].as_str() == Some("centrifugo") { "-centrifugo" } else { "" };
    // Centrifugo's protocol on an emulated connection: `-http_stream` or `-sse` after it.
    let centrifugo = match line["transport"].as_str() {
        Some(transport @ ("http_stream" | "sse")) if !centrifugo.is_empty() => {
            format!("{centrifugo}-{transport}")
        }
        _ => centrifugo.to_owned(),
    };
    match (line["nodes"].as_u64(), line["case"].as_str()) {
        (_, Some(case)) if workload == "emulation" => return Some(format!("emulation-{case}")),
        (Some(nodes), _) if workload == "fanout" && nodes > 1 => {
            return Some(format!("fanout-{nodes}-nodes{centrifugo}"))
        }
        (_, Some(case)) if workload == "fanout" => return Some(format!("fanout-{case}{centrifugo}")),
        _ => {}
    }
    if workload == "handshake" && !centrifugo.is_empty() {
        return Some("handshake-centrifugo".to_owned());
    }
    if workload == "handshake" && line["path"].as_str() == Some("/connect") {
        return Some("handshake-connect".to_owned());
    }
    if workload == "idle" && line["subscribed"].as_bool() == Some(true) {
        return Some(format!("idle-subscribed{centrifugo}"));
    }
    if workload == "idle" && line["scale"].as_bool() == Some(true) {
        let chat = line["path"].as_str().is_some_and(|path| path != "/secured-ws");
        return Some(if chat { "idle-scale-chat" } else { "idle-scale" }.to_owned());
    }
    let store = line["store"].as_str().filter(|store| *store != "sqlite");
    if workload == "publish-rate" && line["senders"].as_u64().is_some_and(|n| n > 1) {
        return Some(store.map_or("publish-senders".to_owned(), |store| format!("publish-senders-{store}")));
    }
    match store {
        Some(store) if workload == "recovery" => Some(format!("recovery-{store}")),
        _ => Some(workload.to_owned()),
    }
}

/// Lower is better for these; higher for the others.
fn lower_is_better(workload: &str) -> bool {
    workload.starts_with("idle") || workload.starts_with("recovery") || is_paced_fanout(workload)
}

/// Fan-outs at an offered rate: judged by their latency, not their (offered) deliveries/s.
fn is_paced_fanout(workload: &str) -> bool {
    let workload = workload.strip_suffix("-centrifugo").unwrap_or(workload);
    matches!(workload, "fanout-paced" | "fanout-channels" | "fanout-notify" | "fanout-notify-live")
}

fn headline(workload: &str) -> &'static str {
    match workload {
        "echo" => "msgs_per_s",
        w if w.starts_with("handshake") => "handshakes_per_s",
        "issuer-handshake" => "own_handshakes_per_s",
        "users-me" => "requests_per_s",
        "login-storm" => "logins_per_s",
        w if w.starts_with("idle") => "kib_per_socket",
        w if is_paced_fanout(w) => "p99_ms",
        w if w.starts_with("fanout") => "deliveries_per_s",
        w if w.starts_with("recovery") => "median_ms",
        "publish-rate" => "numbered_per_s",
        w if w.starts_with("publish-senders") => "senders_per_s",
        w if w.starts_with("emulation") => "commands_per_s",
        "proxy" => "subscribes_per_s_proxy",
        _ => "",
    }
}

/// The lines of one workload on one system, and the round chosen among them.
#[derive(Default)]
struct Runs {
    ok: Vec<Value>,
    errors: Vec<String>,
    skipped: Vec<String>,
}

impl Runs {
    fn best(&self, workload: &str) -> Option<&Value> {
        let key = headline(workload);
        let score = |v: &Value| v[key].as_f64().unwrap_or(f64::NAN);
        let better = |a: f64, b: f64| if lower_is_better(workload) { a < b } else { a > b };
        self.ok.iter().filter(|v| !score(v).is_nan()).fold(None, |best: Option<&Value>, v| match best {
            Some(b) if !better(score(v), score(b)) => Some(b),
            _ => Some(v),
        })
    }
}

fn fmt(x: f64) -> String {
    let a = x.abs();
    if a >= 1000.0 {
        let whole = x.round() as i64;
        let s = whole.abs().to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if whole < 0 {
            out.insert(0, '-');
        }
        out
    } else if a >= 100.0 || x.fract() == 0.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => format!("{}×", fmt(a / b)),
        _ => String::new(),
    }
}

/// wsguard's cell of `workload`'s `field`, and its ratio to the same figure of `base`.
fn cell_ratio(lines: &Lines, workload: &str, base: &str, field: &str) -> (String, String) {
    let value = |workload| lines.value(workload, "wsguard", field);
    (lines.cell(workload, "wsguard", field), ratio(value(workload), value(base)))
}

/// Every line of the run, by workload and system.
#[derive(Default)]
struct Lines(BTreeMap<(String, String), Runs>);

impl Lines {
    fn parse(text: &str) -> Lines {
        let mut lines = Lines::default();
        for line in text.lines() {
            let Ok(value) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let (Some(system), Some(workload)) = (value["system"].as_str(), workload_of(&value)) else {
                continue;
            };
            let entry = lines.0.entry((workload, system.to_owned())).or_default();
            if let Some(reason) = value["skipped"].as_str() {
                entry.skipped.push(reason.to_owned());
            } else if let Some(error) = value["error"].as_str() {
                entry.errors.push(error.to_owned());
            } else {
                entry.ok.push(value);
            }
        }
        lines
    }

    fn runs(&self, workload: &str, system: &str) -> Option<&Runs> {
        self.0.get(&(workload.to_owned(), system.to_owned()))
    }

    /// The round shown for `workload` on `system`.
    fn best(&self, workload: &str, system: &str) -> Option<&Value> {
        self.runs(workload, system).and_then(|r| r.best(workload))
    }

    fn value(&self, workload: &str, system: &str, field: &str) -> Option<f64> {
        self.best(workload, system).and_then(|v| v[field].as_f64())
    }

    /// The table's cell: the figure, or why there is none.
    fn cell(&self, workload: &str, system: &str, field: &str) -> String {
        match self.value(workload, system, field) {
            Some(x) => fmt(x),
            None => match self.runs(workload, system) {
                Some(r) if !r.errors.is_empty() && r.ok.is_empty() => "failed¹".to_owned(),
                Some(r) if !r.skipped.is_empty() && r.ok.is_empty() => "not run²".to_owned(),
                Some(_) => "–".to_owned(),
                None => "n/a".to_owned(),
            },
        }
    }
}

/// ✅, ❌ or ? for a figure that has a target.
fn met_mark(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "✅ yes",
        Some(false) => "❌ no",
        None => "?",
    }
}

pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let lines = Lines::parse(&text);
    let value = |workload: &str, system: &str, field: &str| lines.value(workload, system, field);

    println!("| figure | wsguard | FastAPI baseline | bare (echo; broadcast for fan-out) | wsguard ÷ baseline | wsguard ÷ bare | target | met | issue's reference |");
    println!("|---|---:|---:|---:|---:|---:|---|:---:|---|");
    for row in ROWS.iter().chain(FANOUT_ROWS) {
        let cell = |system: &str| lines.cell(row.workload, system, row.field);
        let ws = value(row.workload, "wsguard", row.field);
        let base = value(row.workload, "baseline", row.field);
        let bare = value(row.workload, "bare", row.field);
        let (target, met) = match row.goal {
            Goal::ShareOfBare(share) => (
                format!(
                    "≥ {:.0}% of bare{}",
                    share * 100.0,
                    bare.map(|b| format!(" (≥ {})", fmt(b * share))).unwrap_or_default()
                ),
                ws.zip(bare).map(|(w, b)| w >= share * b),
            ),
            Goal::TimesBaseline(times) => (
                format!(
                    "≥ {times:.0}× baseline{}",
                    base.map(|b| format!(" (≥ {})", fmt(b * times))).unwrap_or_default()
                ),
                ws.zip(base).map(|(w, b)| w >= times * b),
            ),
            Goal::AtMostTimesBare(times) => (
                format!(
                    "≤ {}× bare{}",
                    fmt(times),
                    bare.map(|b| format!(" (≤ {})", fmt(b * times))).unwrap_or_default()
                ),
                ws.zip(bare).map(|(w, b)| w <= times * b),
            ),
            Goal::AtMost(limit) => (format!("≤ {}", fmt(limit)), ws.map(|w| w <= limit)),
            Goal::AtLeast(limit) => (format!("≥ {}", fmt(limit)), ws.map(|w| w >= limit)),
            Goal::AtLeastField(field) => {
                let limit = value(row.workload, "wsguard", field);
                (
                    limit
                        .map(|l| format!("≥ 0.9 × cores ÷ argon2id time (≥ {})", fmt(l)))
                        .unwrap_or_else(|| "≥ 0.9 × cores ÷ argon2id time".to_owned()),
                    ws.zip(limit).map(|(w, l)| w >= l),
                )
            }
            Goal::None => (String::new(), None),
        };
        let met = match row.goal {
            Goal::None => "",
            _ => met_mark(met),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.label,
            cell("wsguard"),
            cell("baseline"),
            cell("bare"),
            ratio(ws, base),
            ratio(ws, bare),
            target,
            met,
            row.reference
        );
    }
    centrifugo_rows::print(&lines);
    stream_rows::print(&lines);
    proxy_rows::print(&lines);

    let failures: Vec<_> = lines
        .0
        .iter()
        .flat_map(|((workload, system), r)| {
            r.errors.iter().map(move |e| format!("- {workload} on {system}: {e}"))
        })
        .collect();
    if !failures.is_empty() {
        println!("\n¹ Failed runs:");
        for failure in failures {
            println!("{failure}");
        }
    }
    let skipped: std::collections::BTreeSet<_> = lines
        .0
        .iter()
        .flat_map(|((workload, system), r)| {
            r.skipped.iter().map(move |e| format!("- {workload} on {system}: {e}"))
        })
        .collect();
    if !skipped.is_empty() {
        println!("\n² Not run:");
        for reason in skipped {
            println!("{reason}");
        }
    }
    if let Some(storm) = lines.best("login-storm", "wsguard") {
        println!(
            "\nOne argon2id hash (m=19456 KiB, t=2, p=1) took {} ms on this machine (median of 20 \
             after a warm-up, taken before wsguard's storm; fastest {} ms); cores: {}.",
            storm["argon2id_hash_ms"], storm["argon2id_fastest_ms"], storm["cores"]
        );
    }
    Ok(())
}
