//! The report's tables of emulated connections: Centrifugo's client protocol over HTTP streaming
//! and SSE beside the same protocol on a WebSocket (fan-out, memory per idle connection), and
//! emulated commands (`POST /emulation`) on one node and across two, all from the same run.

use super::{cell_ratio, Lines};

/// A figure of a Centrifugo workload, read for each transport (`<workload>-http_stream`, …).
struct Row {
    label: &'static str,
    /// The WebSocket line's workload, as `workload_of` names it.
    workload: &'static str,
    field: &'static str,
}

const TRANSPORT_ROWS: &[Row] = &[
    Row {
        label: "Fan-out, 1,000 members, saturation: deliveries/s",
        workload: "fanout-saturation-centrifugo",
        field: "deliveries_per_s",
    },
    Row {
        label: "Fan-out, saturation: server CPU µs per delivery",
        workload: "fanout-saturation-centrifugo",
        field: "server_cpu_us_per_delivery",
    },
    Row {
        label: "Fan-out, saturation: p99 to the last member, ms",
        workload: "fanout-saturation-centrifugo",
        field: "p99_ms",
    },
    Row {
        label: "Fan-out, saturation: deliveries lost",
        workload: "fanout-saturation-centrifugo",
        field: "lost",
    },
    Row {
        label: "Fan-out, saturation: deliveries out of offset order",
        workload: "fanout-saturation-centrifugo",
        field: "offsets_out_of_order",
    },
    Row {
        label: "Server memory per idle subscribed connection, KiB",
        workload: "idle-subscribed-centrifugo",
        field: "kib_per_socket",
    },
];

/// The emulated commands' cases, in the table's column order; the last two are compared with the
/// first (one node) and with the second (the same cluster, commands to the stream's own node).
const EMULATION_CASES: [&str; 3] = ["emulation-node", "emulation-cluster-same", "emulation-cluster-across"];

const EMULATION_ROWS: &[(&str, &str)] = &[
    ("Commands/s (20 streams, one command at a time each)", "commands_per_s"),
    ("POST to the reply on the stream, p50, ms", "p50_ms"),
    ("POST to the reply on the stream, p99, ms", "p99_ms"),
    ("POST answered (204), p99, ms", "post_p99_ms"),
    ("Server CPU µs per command (every node)", "server_cpu_us_per_command"),
    ("Commands failed", "errors"),
];

pub(super) fn print(lines: &Lines) {
    print_transports(lines);
    print_emulation(lines);
}

fn print_transports(lines: &Lines) {
    let with = |row: &Row, transport: &str| format!("{}-{transport}", row.workload);
    if !TRANSPORT_ROWS.iter().any(|row| lines.runs(&with(row, "http_stream"), "wsguard").is_some()) {
        return;
    }
    println!();
    println!("Centrifugo's client protocol over HTTP streaming (`/connection/http_stream`) and SSE (`/connection/sse`), commands by `POST /emulation`, beside `/connection/websocket`, on the same wsguard, alternating in this run (the fan-out's publisher on a WebSocket in every case):");
    println!();
    println!("| figure | HTTP streaming | SSE | WebSocket | HTTP streaming ÷ WebSocket | SSE ÷ WebSocket |");
    println!("|---|---:|---:|---:|---:|---:|");
    for row in TRANSPORT_ROWS {
        let (stream, sse) = (with(row, "http_stream"), with(row, "sse"));
        let (stream_cell, stream_ratio) = cell_ratio(lines, &stream, row.workload, row.field);
        let (sse_cell, sse_ratio) = cell_ratio(lines, &sse, row.workload, row.field);
        println!(
            "| {} | {stream_cell} | {sse_cell} | {} | {stream_ratio} | {sse_ratio} |",
            row.label,
            lines.cell(row.workload, "wsguard", row.field),
        );
    }
}

fn print_emulation(lines: &Lines) {
    if !EMULATION_CASES.iter().any(|case| lines.runs(case, "wsguard").is_some()) {
        return;
    }
    let [node, same, across] = EMULATION_CASES;
    println!();
    println!("Emulated commands: streams (HTTP streaming) on one node, each publishing to its own channel by `POST /emulation`, on a node alone and in a two-node cluster (PostgreSQL + Redis) with the commands posted to the stream's node or to the other one:");
    println!();
    println!("| figure | one node | 2 nodes, commands to the stream's node | 2 nodes, commands to the other node | other node ÷ one node | other node ÷ stream's node |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (label, field) in EMULATION_ROWS {
        let (across_cell, over_node) = cell_ratio(lines, across, node, field);
        let (_, over_same) = cell_ratio(lines, across, same, field);
        println!(
            "| {label} | {} | {} | {across_cell} | {over_node} | {over_same} |",
            lines.cell(node, "wsguard", field),
            lines.cell(same, "wsguard", field),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::workload_of;
    use super::*;
    use serde_json::json;

    #[test]
    fn stream_lines_count_as_their_transports_workloads() {
        let case = |line| workload_of(&line).unwrap();
        let fanout = |transport: &str| {
            case(
                json!({"workload": "fanout", "case": "saturation", "protocol": "centrifugo", "transport": transport}),
            )
        };
        assert_eq!(fanout("websocket"), "fanout-saturation-centrifugo");
        assert_eq!(fanout("http_stream"), "fanout-saturation-centrifugo-http_stream");
        assert_eq!(fanout("sse"), "fanout-saturation-centrifugo-sse");
        let channel = json!({"workload": "fanout", "case": "saturation", "protocol": "channel", "transport": "websocket"});
        assert_eq!(case(channel), "fanout-saturation");
        let idle =
            json!({"workload": "idle", "subscribed": true, "protocol": "centrifugo", "transport": "sse"});
        assert_eq!(case(idle), "idle-subscribed-centrifugo-sse");
        let emulation = json!({"workload": "emulation", "case": "cluster-across", "nodes": 2});
        assert_eq!(case(emulation), "emulation-cluster-across");
        assert!(EMULATION_CASES.iter().all(|c| c.starts_with("emulation-")));
    }
}
