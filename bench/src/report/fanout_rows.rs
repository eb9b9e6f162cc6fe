//! The report's channel fan-out rows: wsguard beside bare-broadcast (system `bare`) in the same
//! run, and the two-node cluster. Cases are named by `scripts/bench.sh`'s `--case`. "Lost" is what
//! had not arrived by the end of the run's drain (seconds after the last send).

use super::rows::{Goal, Row};

/// A row without a target.
const fn figure(label: &'static str, workload: &'static str, field: &'static str) -> Row {
    Row { label, workload, field, goal: Goal::None, reference: "" }
}

pub(super) const FANOUT_ROWS: &[Row] = &[
    Row {
        label: "Channel fan-out, 1,000 members, saturation: deliveries/s",
        workload: "fanout-saturation",
        field: "deliveries_per_s",
        goal: Goal::ShareOfBare(1.0),
        reference: "chat room 230–440k, bare broadcast 710–770k",
    },
    Row {
        label: "Channel fan-out, 1,000 members, saturation: server CPU µs per delivery",
        workload: "fanout-saturation",
        field: "server_cpu_us_per_delivery",
        goal: Goal::AtMostTimesBare(1.0),
        reference: "chat room 5.3, bare broadcast 1.8–2.0",
    },
    figure("Channel fan-out, saturation: p99 to the last member, ms", "fanout-saturation", "p99_ms"),
    figure("Channel fan-out, saturation: p99 to the ack, ms", "fanout-saturation", "ack_p99_ms"),
    figure("Channel fan-out, saturation: deliveries lost (not received by the end of the drain)", "fanout-saturation", "lost"),
    Row {
        label: "Channel fan-out, 1,000 members, 100 publications/s (100k deliveries/s): p99 to the last member, ms",
        workload: "fanout-paced",
        field: "p99_ms",
        goal: Goal::AtMostTimesBare(1.2),
        reference: "wsguard 1.6–3× bare",
    },
    figure("Channel fan-out, 100 publications/s: p99 to the first member, ms", "fanout-paced", "first_p99_ms"),
    figure("Channel fan-out, 100 publications/s: p99 to the ack, ms", "fanout-paced", "ack_p99_ms"),
    Row {
        label: "Channel fan-out, 100 publications/s: deliveries lost",
        workload: "fanout-paced",
        field: "lost",
        goal: Goal::AtMost(0.0),
        reference: "",
    },
    figure(
        "Channel fan-out, 100 publications/s: server CPU µs per delivery",
        "fanout-paced",
        "server_cpu_us_per_delivery",
    ),
    figure(
        "10,000 sockets in 1,000 channels of 10, 2,000 publications/s: p99 to the last member, ms",
        "fanout-channels",
        "p99_ms",
    ),
    figure(
        "1,000 channels of 10: server CPU µs per delivery",
        "fanout-channels",
        "server_cpu_us_per_delivery",
    ),
    Row {
        label: "1,000 channels of 10: deliveries lost",
        workload: "fanout-channels",
        field: "lost",
        goal: Goal::AtMost(0.0),
        reference: "",
    },
    Row {
        label: "Notifications, 10,000 sockets on a channel each, 2,000 API publications/s: server CPU µs per delivery",
        workload: "fanout-notify",
        field: "server_cpu_us_per_delivery",
        goal: Goal::AtMostTimesBare(1.5),
        reference: "",
    },
    figure("Notifications: deliveries/s", "fanout-notify", "deliveries_per_s"),
    figure("Notifications: API publications/s answered 200", "fanout-notify", "api_ok_per_s"),
    figure("Notifications: p99 of the API call, ms", "fanout-notify", "api_call_p99_ms"),
    figure("Notifications: p99 from the API call (when due) to delivery, ms", "fanout-notify", "p99_ms"),
    Row {
        label: "Notifications: deliveries lost",
        workload: "fanout-notify",
        field: "lost",
        goal: Goal::AtMost(0.0),
        reference: "",
    },
    Row {
        label: "Notifications without history (`history_size = 0`): server CPU µs per delivery",
        workload: "fanout-notify-live",
        field: "server_cpu_us_per_delivery",
        goal: Goal::AtMostTimesBare(1.5),
        reference: "",
    },
    figure("Notifications without history: p99 of the API call, ms", "fanout-notify-live", "api_call_p99_ms"),
    Row {
        label: "Notifications without history: deliveries lost",
        workload: "fanout-notify-live",
        field: "lost",
        goal: Goal::AtMost(0.0),
        reference: "",
    },
    figure(
        "Channel fan-out, 2 nodes (PostgreSQL + Redis), saturation: deliveries/s, both nodes",
        "fanout-2-nodes",
        "deliveries_per_s",
    ),
    figure(
        "2 nodes: deliveries/s on node A (the publisher's)",
        "fanout-2-nodes",
        "deliveries_per_s_node_0",
    ),
    figure("2 nodes: deliveries/s on node B (through Redis)", "fanout-2-nodes", "deliveries_per_s_node_1"),
    figure("2 nodes: p99 to the last member, ms", "fanout-2-nodes", "p99_ms"),
    figure(
        "2 nodes: server CPU µs per delivery (both nodes)",
        "fanout-2-nodes",
        "server_cpu_us_per_delivery",
    ),
    Row {
        label: "2 nodes: Redis commands per publication (all of Redis's clients)",
        workload: "fanout-2-nodes",
        field: "redis_commands_per_publication",
        goal: Goal::None,
        reference: "target: one round trip per publication",
    },
];

#[cfg(test)]
mod tests {
    use super::super::{headline, lower_is_better, workload_of};
    use serde_json::json;

    #[test]
    fn fanout_lines_find_their_rows() {
        let case = |line| workload_of(&line).unwrap();
        assert_eq!(
            case(json!({"workload": "fanout", "case": "saturation", "nodes": 1})),
            "fanout-saturation"
        );
        assert_eq!(case(json!({"workload": "fanout", "case": "2-nodes", "nodes": 2})), "fanout-2-nodes");
        assert_eq!(case(json!({"workload": "fanout", "nodes": 2, "skipped": "no Redis"})), "fanout-2-nodes");
        assert_eq!(case(json!({"workload": "fanout", "case": null, "nodes": 1})), "fanout");
        // Paced cases are judged by latency, saturation by throughput.
        assert!(lower_is_better("fanout-paced") && headline("fanout-paced") == "p99_ms");
        assert!(!lower_is_better("fanout-saturation") && headline("fanout-saturation") == "deliveries_per_s");
        assert!(lower_is_better("fanout-notify") && headline("fanout-notify") == "p99_ms");
    }
}
