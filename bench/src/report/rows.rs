//! The report's rows: each figure, where it comes from, and the target for it.

/// How wsguard's figure is judged.
pub(super) enum Goal {
    /// At least this share of the bare server's figure (bare-echo; bare-broadcast for fan-out).
    ShareOfBare(f64),
    /// At most this multiple of the bare server's figure (lower is better).
    AtMostTimesBare(f64),
    /// At least this multiple of the baseline's figure.
    TimesBaseline(f64),
    /// At most this value.
    AtMost(f64),
    /// At least the value of another field of wsguard's own line.
    AtLeastField(&'static str),
    /// At least this value.
    AtLeast(f64),
    None,
}

pub(super) struct Row {
    pub(super) label: &'static str,
    pub(super) workload: &'static str,
    pub(super) field: &'static str,
    pub(super) goal: Goal,
    /// The figures for the baseline and the bare server.
    pub(super) reference: &'static str,
}

pub(super) const ROWS: &[Row] = &[
    Row {
        label: "Echo, messages/s (50 sockets)",
        workload: "echo",
        field: "msgs_per_s",
        goal: Goal::ShareOfBare(0.9),
        reference: "baseline ~30k, bare ~125k",
    },
    Row { label: "Echo p50, ms", workload: "echo", field: "p50_ms", goal: Goal::None, reference: "" },
    Row { label: "Echo p99, ms", workload: "echo", field: "p99_ms", goal: Goal::None, reference: "" },
    Row {
        label: "Authenticated handshakes/s (20 workers)",
        workload: "handshake",
        field: "handshakes_per_s",
        goal: Goal::ShareOfBare(0.8),
        reference: "baseline ~1.2k, bare ~12k",
    },
    Row {
        label: "Handshake p99, ms",
        workload: "handshake",
        field: "p99_ms",
        goal: Goal::None,
        reference: "",
    },
    Row {
        label: "Handshakes/s, own token (issuer run, 20 workers)",
        workload: "issuer-handshake",
        field: "own_handshakes_per_s",
        goal: Goal::None,
        reference: "",
    },
    Row {
        label: "Handshakes/s, trusted issuer's HS256 token",
        workload: "issuer-handshake",
        field: "hs256_handshakes_per_s",
        goal: Goal::None,
        reference: "",
    },
    Row {
        label: "HS256 issuer ÷ own token",
        workload: "issuer-handshake",
        field: "hs256_over_own",
        goal: Goal::AtLeast(0.9),
        reference: "",
    },
    Row {
        label: "Handshakes/s, JWKS issuer's RS256 token (keys cached, token presented again)",
        workload: "issuer-handshake",
        field: "rs256_handshakes_per_s",
        goal: Goal::None,
        reference: "",
    },
    Row {
        label: "RS256 issuer ÷ own token",
        workload: "issuer-handshake",
        field: "rs256_over_own",
        goal: Goal::AtLeast(0.9),
        reference: "",
    },
    Row {
        label: "Handshakes/s, RS256 tokens each presented once (signature checked every time)",
        workload: "issuer-handshake",
        field: "rs256_first_use_handshakes_per_s",
        goal: Goal::None,
        reference: "",
    },
    Row {
        label: "RS256 first presentation ÷ own token",
        workload: "issuer-handshake",
        field: "rs256_first_use_over_own",
        goal: Goal::None,
        reference: "",
    },
    Row {
        label: "GET /users/me, requests/s (50 conns)",
        workload: "users-me",
        field: "requests_per_s",
        goal: Goal::TimesBaseline(10.0),
        reference: "baseline ~2.9k",
    },
    Row {
        label: "GET /users/me p99, ms",
        workload: "users-me",
        field: "p99_ms",
        goal: Goal::None,
        reference: "",
    },
    Row {
        label: "Logins/s (POST /token storm)",
        workload: "login-storm",
        field: "logins_per_s",
        goal: Goal::AtLeastField("target_logins_per_s"),
        reference: "baseline ~3.7",
    },
    Row {
        label: "Logins answered 503 (queue full)",
        workload: "login-storm",
        field: "status_503",
        goal: Goal::None,
        reference: "",
    },
    Row {
        label: "Echo p99 without storm, ms (10 sockets)",
        workload: "login-storm",
        field: "echo_idle_p99_ms",
        goal: Goal::None,
        reference: "",
    },
    Row {
        label: "Echo p99 during storm, ms",
        workload: "login-storm",
        field: "echo_storm_p99_ms",
        goal: Goal::None,
        reference: "baseline ~1000",
    },
    Row {
        label: "Echo p99 storm ÷ without storm",
        workload: "login-storm",
        field: "echo_p99_storm_over_idle",
        goal: Goal::AtMost(2.0),
        reference: "",
    },
    Row {
        label: "Server memory per idle socket, KiB",
        workload: "idle",
        field: "kib_per_socket",
        goal: Goal::AtMost(16.0),
        reference: "baseline ~32, bare ~11",
    },
    Row {
        label: "Chat fan-out, 1 node (SQLite), deliveries/s",
        workload: "fanout",
        field: "deliveries_per_s",
        goal: Goal::None,
        reference: "",
    },
    Row {
        label: "Chat fan-out, 1 node (SQLite), p99 to last member, ms",
        workload: "fanout",
        field: "p99_ms",
        goal: Goal::None,
        reference: "",
    },
    Row {
        label: "Recovery of 1,000 missed publications, 1 node (SQLite), ms from reconnect to the last",
        workload: "recovery",
        field: "median_ms",
        goal: Goal::None,
        reference: "",
    },
    Row {
        label: "Recovery of 1,000 missed publications, PostgreSQL node, ms from reconnect to the last",
        workload: "recovery-postgres",
        field: "median_ms",
        goal: Goal::None,
        reference: "",
    },
    Row {
        label: "One sender, acked publications/s, numbered channel (stored, offset)",
        workload: "publish-rate",
        field: "numbered_per_s",
        goal: Goal::None,
        reference: "",
    },
    Row {
        label: "One sender, acked publications/s, channel without history (not stored)",
        workload: "publish-rate",
        field: "unnumbered_per_s",
        goal: Goal::None,
        reference: "",
    },
    Row {
        label: "One sender, acked chat messages/s (room)",
        workload: "publish-rate",
        field: "room_per_s",
        goal: Goal::None,
        reference: "",
    },
    Row {
        label: "Numbered ÷ without history (the cost of storing and numbering)",
        workload: "publish-rate",
        field: "numbered_over_unnumbered",
        goal: Goal::None,
        reference: "",
    },
    Row {
        label: "100 senders on channels of their own (SQLite), acked publications/s in total",
        workload: "publish-senders",
        field: "senders_per_s",
        goal: Goal::None,
        reference: "",
    },
    Row {
        label: "100 senders ÷ one sender in the same run (SQLite): group commit",
        workload: "publish-senders",
        field: "senders_over_one",
        goal: Goal::AtLeast(5.0),
        reference: "",
    },
    Row {
        label: "100 senders on channels of their own (PostgreSQL node), acked publications/s in total",
        workload: "publish-senders-postgres",
        field: "senders_per_s",
        goal: Goal::None,
        reference: "",
    },
    Row {
        label: "100 senders ÷ one sender in the same run (PostgreSQL node): group commit",
        workload: "publish-senders-postgres",
        field: "senders_over_one",
        goal: Goal::AtLeast(5.0),
        reference: "",
    },
];
