//! The report's table of the application's proxies (`proxy` workload): subscribes decided by the
//! subscribe proxy beside subscribes under a static rule, and `/connect` handshakes admitted by
//! the connect proxy beside handshakes with a token, on the same wsguard, alternating in one run,
//! the application served by the generator on the same machine.

use super::{ratio, Lines};

/// A row: the same figure of the proxied case and of the one it is compared with.
struct Pair {
    label: &'static str,
    proxied: &'static str,
    plain: &'static str,
}

const ROWS: &[Pair] = &[
    Pair {
        label: "Subscribes/s (20 sockets, subscribe then unsubscribe)",
        proxied: "subscribes_per_s_proxy",
        plain: "subscribes_per_s_static",
    },
    Pair { label: "Subscribe p50, ms", proxied: "subscribe_p50_ms_proxy", plain: "subscribe_p50_ms_static" },
    Pair { label: "Subscribe p99, ms", proxied: "subscribe_p99_ms_proxy", plain: "subscribe_p99_ms_static" },
    Pair {
        label: "/connect handshakes/s (20 workers)",
        proxied: "connects_per_s_proxy",
        plain: "connects_per_s_token",
    },
    Pair {
        label: "/connect handshake p50, ms",
        proxied: "connect_p50_ms_proxy",
        plain: "connect_p50_ms_token",
    },
    Pair {
        label: "/connect handshake p99, ms",
        proxied: "connect_p99_ms_proxy",
        plain: "connect_p99_ms_token",
    },
];

/// Prints the table, unless the run has no proxy line.
pub(super) fn print(lines: &Lines) {
    if lines.runs("proxy", "wsguard").is_none() {
        return;
    }
    println!();
    println!("The application's proxies: the subscribe proxy beside a static rule, the connect proxy (a session cookie) beside a token, on the same wsguard, alternating in this run; the application served on the same machine:");
    println!();
    println!("| figure | through the application | static rule / token | ÷ |");
    println!("|---|---:|---:|---:|");
    for row in ROWS {
        let proxied = lines.value("proxy", "wsguard", row.proxied);
        let plain = lines.value("proxy", "wsguard", row.plain);
        println!(
            "| {} | {} | {} | {} |",
            row.label,
            lines.cell("proxy", "wsguard", row.proxied),
            lines.cell("proxy", "wsguard", row.plain),
            ratio(proxied, plain),
        );
    }
}
