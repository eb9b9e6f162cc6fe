//! The report's second table: Centrifugo's client protocol (`/connection/websocket`) beside
//! wsguard's own (`/connect`), both on wsguard, their runs alternating in the same run of
//! `scripts/bench.sh`. The targets: handshakes/s and saturated deliveries/s at least 0.9×
//! `/connect`'s, at most 6 KiB of server memory per idle subscribed connection.

use super::{fmt, met_mark, ratio, Lines};

/// How the Centrifugo figure is judged.
enum Judged {
    /// At least this multiple of the `/connect` figure.
    RatioAtLeast(f64),
    /// At most this value.
    AtMost(f64),
    None,
}

/// A row: the same figure of a `/connect` line and of a Centrifugo line.
struct Pair {
    label: &'static str,
    /// The workload (as `workload_of` names it) of the `/connect` line and of the Centrifugo one.
    connect: &'static str,
    centrifugo: &'static str,
    field: &'static str,
    judged: Judged,
}

/// A row without a target.
const fn figure(
    label: &'static str,
    connect: &'static str,
    centrifugo: &'static str,
    field: &'static str,
) -> Pair {
    Pair { label, connect, centrifugo, field, judged: Judged::None }
}

const ROWS: &[Pair] = &[
    Pair {
        label: "Handshakes/s (20 workers, own token)",
        connect: "handshake-connect",
        centrifugo: "handshake-centrifugo",
        field: "handshakes_per_s",
        judged: Judged::RatioAtLeast(0.9),
    },
    figure("Handshake p99, ms", "handshake-connect", "handshake-centrifugo", "p99_ms"),
    Pair {
        label: "Channel fan-out, 1,000 members, saturation: deliveries/s",
        connect: "fanout-saturation",
        centrifugo: "fanout-saturation-centrifugo",
        field: "deliveries_per_s",
        judged: Judged::RatioAtLeast(0.9),
    },
    figure(
        "Fan-out, saturation: server CPU µs per delivery",
        "fanout-saturation",
        "fanout-saturation-centrifugo",
        "server_cpu_us_per_delivery",
    ),
    figure(
        "Fan-out, saturation: p99 to the last member, ms",
        "fanout-saturation",
        "fanout-saturation-centrifugo",
        "p99_ms",
    ),
    Pair {
        label: "Fan-out, saturation: deliveries lost",
        connect: "fanout-saturation",
        centrifugo: "fanout-saturation-centrifugo",
        field: "lost",
        judged: Judged::AtMost(0.0),
    },
    Pair {
        label: "Fan-out, saturation: deliveries out of offset order",
        connect: "fanout-saturation",
        centrifugo: "fanout-saturation-centrifugo",
        field: "offsets_out_of_order",
        judged: Judged::AtMost(0.0),
    },
    figure(
        "Fan-out, 100 publications/s (100k deliveries/s): p99 to the last member, ms",
        "fanout-paced",
        "fanout-paced-centrifugo",
        "p99_ms",
    ),
    Pair {
        label: "Fan-out, 100 publications/s: deliveries lost",
        connect: "fanout-paced",
        centrifugo: "fanout-paced-centrifugo",
        field: "lost",
        judged: Judged::AtMost(0.0),
    },
    Pair {
        label: "Server memory per idle subscribed connection, KiB",
        connect: "idle-subscribed",
        centrifugo: "idle-subscribed-centrifugo",
        field: "kib_per_socket",
        judged: Judged::AtMost(6.0),
    },
];

/// Prints the table, unless the run has no Centrifugo line (an older run's lines).
pub(super) fn print(lines: &Lines) {
    let any = ROWS.iter().any(|row| lines.runs(row.centrifugo, "wsguard").is_some());
    if !any {
        return;
    }
    println!();
    println!("Centrifugo's client protocol (`/connection/websocket`) beside wsguard's own (`/connect`), on the same wsguard, alternating in this run:");
    println!();
    println!("| figure | /connection/websocket | /connect | ÷ /connect | target | met |");
    println!("|---|---:|---:|---:|---|:---:|");
    for row in ROWS {
        let centrifugo = lines.value(row.centrifugo, "wsguard", row.field);
        let connect = lines.value(row.connect, "wsguard", row.field);
        let (target, met) = match &row.judged {
            Judged::RatioAtLeast(share) => (
                format!("≥ {}× /connect", fmt(*share)),
                Some(met_mark(centrifugo.zip(connect).map(|(c, o)| c >= share * o))),
            ),
            Judged::AtMost(limit) => {
                (format!("≤ {}", fmt(*limit)), Some(met_mark(centrifugo.map(|c| c <= *limit))))
            }
            Judged::None => (String::new(), None),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            row.label,
            lines.cell(row.centrifugo, "wsguard", row.field),
            lines.cell(row.connect, "wsguard", row.field),
            ratio(centrifugo, connect),
            target,
            met.unwrap_or_default(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::workload_of;
    use super::*;
    use serde_json::json;

    #[test]
    fn centrifugo_lines_pair_with_their_connect_lines() {
        let case = |line| workload_of(&line).unwrap();
        let handshake = |protocol: &str, path: &str| {
            case(json!({"workload": "handshake", "protocol": protocol, "path": path}))
        };
        assert_eq!(handshake("bearer", "/secured-ws"), "handshake");
        assert_eq!(handshake("bearer", "/connect"), "handshake-connect");
        assert_eq!(handshake("centrifugo", "/connection/websocket"), "handshake-centrifugo");
        let fanout =
            |protocol: &str| case(json!({"workload": "fanout", "case": "paced", "protocol": protocol}));
        assert_eq!(fanout("channel"), "fanout-paced");
        assert_eq!(fanout("centrifugo"), "fanout-paced-centrifugo");
        let idle =
            |protocol: &str| case(json!({"workload": "idle", "subscribed": true, "protocol": protocol}));
        assert_eq!(idle("channel"), "idle-subscribed");
        assert_eq!(idle("centrifugo"), "idle-subscribed-centrifugo");
        assert_eq!(case(json!({"workload": "idle", "subscribed": false, "protocol": null})), "idle");
        for row in ROWS {
            let connect = row.connect.trim_end_matches("-connect");
            assert_eq!(row.centrifugo, format!("{connect}-centrifugo"), "{}", row.label);
        }
    }

    #[test]
    fn the_table_compares_the_best_rounds() {
        let text = [
            json!({"system": "wsguard", "workload": "handshake", "path": "/connect", "handshakes_per_s": 1000.0}),
            json!({"system": "wsguard", "workload": "handshake", "protocol": "centrifugo", "handshakes_per_s": 950.0}),
            json!({"system": "wsguard", "workload": "handshake", "protocol": "centrifugo", "handshakes_per_s": 850.0}),
            json!({"system": "wsguard", "workload": "fanout", "case": "paced", "protocol": "centrifugo", "p99_ms": 9.0}),
            json!({"system": "wsguard", "workload": "fanout", "case": "paced", "protocol": "centrifugo", "p99_ms": 4.0}),
        ]
        .map(|line| line.to_string())
        .join("\n");
        let lines = Lines::parse(&text);
        assert_eq!(lines.value("handshake-centrifugo", "wsguard", "handshakes_per_s"), Some(950.0));
        assert_eq!(lines.value("handshake-connect", "wsguard", "handshakes_per_s"), Some(1000.0));
        // Paced: the lower p99 is the better round.
        assert_eq!(lines.value("fanout-paced-centrifugo", "wsguard", "p99_ms"), Some(4.0));
        assert_eq!(lines.cell("fanout-saturation-centrifugo", "wsguard", "lost"), "n/a");
    }
}
