# The report of scripts/faults.sh, sourced by it once the nodes have stopped: the servers' logs
# read against the faults' windows, the checks, and the markdown written to $OUT.
# Uses: LINE (the generator's JSON line), WORK, PGROOT, FAULTS, OUT, DATE, MODE, ELAPSED, MINUTES,
# SOCKETS, OUTAGE, GRACE, STEP, RUN_S, PGBIN, NODE_ARGS, GEN_ARGS, NOTES, KEEP_WORK.

j() { jq -r "$1" <<<"$LINE"; }
mark() { if [ "$1" = true ]; then echo "✅ pass"; else echo "❌ fail"; fi; }
num() { awk -v n="$1" 'BEGIN {s = sprintf("%d", n); out = ""; while (length(s) > 3) {out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3)}; print s out}'; }
by_node() { # a jq path to {kind: {node: n}} → "kind: node 0 n, node 1 m; …"
    j "$1 | to_entries | map(\"\(.key) \(.value | to_entries | map((if .key == \"-\" then \"\" else \"node \(.key) \" end) + (.value | tostring)) | join(\", \"))\") | join(\"; \") | if . == \"\" then \"none\" else . end"
}

# --- the servers' logs against the faults' windows --------------------------------------------
# A fault's window: from its start to --grace seconds after its end, as the generator counts.
WINDOWS=$(awk -v g=$((GRACE * 1000)) '
    $2 ~ /-down$/ {k = $2; sub(/-down$/, "", k); if ($3 != "") k = k " " $3; from[k] = $1}
    $2 ~ /-up$/ {k = $2; sub(/-up$/, "", k); if ($3 != "") k = k " " $3;
        printf "{\"what\":\"%s\",\"from\":%s,\"to\":%s}\n", k, from[k], $1 + g}' "$FAULTS" | jq -s .)
LOG_LINES="$WORK/log-lines.json"
: >"$LOG_LINES"
NOT_JSON=0
for name in node-a node-b-killed node-b; do
    file="$WORK/$name.log"
    [ -f "$file" ] || continue
    lines=$(wc -l <"$file")
    json=$(jq -R 'fromjson? | objects | 1' "$file" | wc -l)
    NOT_JSON=$((NOT_JSON + lines - json))
    jq -cR --argjson w "$WINDOWS" --arg node "$name" '
        fromjson? | objects | select(.level == "ERROR" or .level == "WARN")
        | (.timestamp | sub("\\.[0-9]+"; "") | fromdateiso8601 * 1000) as $t
        | {node: $node, level, message: (.fields.message // "(no message)"),
           error: (.fields.error // ""),
           window: (first($w[] | select($t >= .from - 1000 and $t <= .to) | .what) // "outside")}' \
        "$file" >>"$LOG_LINES"
done
ERRORS_OUTSIDE=$(jq -s '[.[] | select(.level == "ERROR" and .window == "outside")] | length' "$LOG_LINES")
WARNS_OUTSIDE=$(jq -s '[.[] | select(.level == "WARN" and .window == "outside")] | length' "$LOG_LINES")
log_lines_in() { # window → "WARN n, ERROR m"
    jq -rs --arg w "$1" '[.[] | select(.window == $w)] | group_by(.level)
        | map("\(.[0].level) \(length)") | join(", ") | if . == "" then "none" else . end' "$LOG_LINES"
}

# --- checks -----------------------------------------------------------------------------------
NO_ERROR_LOGGED=false
[ "$ERRORS_OUTSIDE" = 0 ] && [ "$NOT_JSON" = 0 ] && NO_ERROR_LOGGED=true
CHECKS=(every_acked_delivered surviving_nodes_undisturbed restarted_nodes_rejoined faults_made no_generator_errors)
ALL_PASS=$NO_ERROR_LOGGED
for c in "${CHECKS[@]}"; do [ "$(j ".checks.$c")" = true ] || ALL_PASS=false; done

# --- the report -------------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
{
    echo "# wsguard faults under load, $DATE ($MODE run)"
    echo
    echo "Command: \`scripts/faults.sh$([ "$MODE" = quick ] && echo ' --quick') --minutes $MINUTES --sockets $SOCKETS --outage $OUTAGE\`."
    echo "Two nodes, PostgreSQL, Redis and the generator on the same machine, over loopback."
    echo
    echo "## Machine"
    echo
    echo "- cores (nproc): $(nproc); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "- memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo); kernel: $(uname -sr); $(rustc --version)"
    echo "- wsguard: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' + uncommitted changes')"
    echo "- PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') (a private instance, initdb into a temporary folder, own port, trust);"
    echo "  Redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') (private, own port, no persistence)"
    echo "- the whole run took ${ELAPSED} s (ramp-up, run, drain, close); the generator used $(j '.generator_cpu_pct')% of one core"
    echo
    echo "## Settings"
    echo
    echo "- two nodes, one cluster: \`wsguard serve --bind 127.0.0.1:<port> $(printf '%s ' "${NODE_ARGS[@]}" | sed "s|$WORK|<tmp>|g; s|:[0-9]*/wsguard|:<port>/wsguard|; s|127.0.0.1:[0-9]* |127.0.0.1:<port> |g; s/ $//")\`"
    echo "  (\`WSGUARD_LOG_FORMAT=json\`, level info); node 0 is A, node 1 is B"
    echo "- generator: \`wsguard-bench $(printf '%s ' "${GEN_ARGS[@]}" | sed "s|$WORK|<tmp>|g; s/ $//")\`"
    echo "- $(j '.settings.sockets') sockets over $(j '.settings.rooms') rooms: a room's observer on node \`room % 2\`, its members"
    echo "  alternating between the nodes; chat \`send\`s from random members ($(j '.settings.publications_per_s')/s) and API publications"
    echo "  ($(j '.settings.api_publications_per_s')/s, to both nodes in turn), each acked one checked at its room's observer; churn"
    echo "  $(j '.settings.churn_per_s')/s; $(j '.settings.no_refresh_share * 100 | round')% of connections let their token expire (4001); access tokens of"
    echo "  $(j '.settings.access_ttl_s') s refreshed in band from a pool of logins on node A (\`POST /refresh\` every $(j '.settings.pool_refresh_every_s') s);"
    echo "  wrong passwords $(j '.settings.wrong_logins_per_s')/s"
    echo "- faults, one after the other, at $STEP, $((STEP * 2)) and $((STEP * 3)) s of the $RUN_S s run, each $OUTAGE s long:"
    echo "  Redis \`SHUTDOWN NOSAVE\` then started again (empty), PostgreSQL \`pg_ctl stop -m fast\` then"
    echo "  \`start\`, node B \`kill -KILL\` then started again on its port. A fault's window runs from its"
    echo "  start to $GRACE s after its end: what goes wrong within it is the fault's"
    echo "- an observer whose socket ends joins again on its node with \`since\` (the last id it has, the"
    echo "  room's epoch); what it then receives counts as received by recovery"
    echo
    echo "## Checks"
    echo
    echo "| check | |"
    echo "|---|:---:|"
    echo "| Every acknowledged publication (chat and API) reached its room's observer, once | $(mark "$(j '.checks.every_acked_delivered')") |"
    echo "| Node A's sockets undisturbed: closes other than ours and expected 4001s | $(j '.faults.surviving_nodes_disturbances["0"]') $(mark "$(j '.checks.surviving_nodes_undisturbed')") |"
    echo "| Node B back in the cluster: its observers receive node A's publications live again | $(mark "$(j '.checks.restarted_nodes_rejoined')") |"
    echo "| Nothing went wrong outside the faults' windows (the generator's incidents) | $(j '.errors') $(mark "$(j '.checks.no_generator_errors')") |"
    echo "| No ERROR logged outside the faults' windows, no line that is not JSON | $ERRORS_OUTSIDE, $NOT_JSON $(mark "$NO_ERROR_LOGGED") |"
    echo "| Every fault made and ended | $(mark "$(j '.checks.faults_made')") |"
    echo
    echo "## The faults"
    echo
    echo "| fault | at, s | outage, s | acked during the outage: chat + API / missing / received by recovery | delay ack → observer, p50 / max, s | acked in the $GRACE s after: count / missing / delay max, s | what went wrong in the window (generator, by kind and node) | server log in the window |"
    echo "|---|---:|---:|---|---|---|---|---|"
    for i in $(seq 0 $(( $(j '.faults.faults | length') - 1 ))); do
        f=".faults.faults[$i]"
        key=$(awk -v n=$((i + 1)) '$2 ~ /-down$/ {c++; if (c == n) {k = $2; sub(/-down$/, "", k); if ($3 != "") k = k " " $3; print k}}' "$FAULTS")
        echo "| $(j "$f.what") | $(j "$f.down_at_s") | $(j "$f.outage_s") | $(j "$f.acked_during_outage | \"\(.acked) / \(.missing) / \(.received_by_recovery)\"") | $(j "$f.acked_during_outage.delay_s | \"\(.p50 // \"–\") / \(.max // \"–\")\"") | $(j "$f.acked_in_grace | \"\(.acked) / \(.missing) / \(.delay_s.max // \"–\")\"") | $(by_node "$f.incidents") | $(log_lines_in "$key") |"
    done
    echo
    if [ "$(j '[.faults.faults[] | select(.rejoin)] | length')" != 0 ]; then
        j '.faults.faults[] | select(.rejoin) | "Node back: its observers received \(.rejoin.recovered_by_its_observers) publications by recovery after the restart, then \(.rejoin.live_from_other_nodes_after_restart) acked on node A live, the first \(.rejoin.first_live_from_other_nodes_s_after_up) s after it listened again."'
        echo
    fi
    echo "## Totals"
    echo
    echo "| figure | value |"
    echo "|---|---:|"
    echo "| Sockets after the ramp-up ($(j '.ramp_up_s') s) / at the end | $(j '.sockets_after_ramp_up') / $(j '.sockets_open_at_end') |"
    echo "| Connects / connect failures | $(num "$(j '.counts.connects')") / $(num "$(j '.counts.connect_failures')") |"
    echo "| Closes by node, other than ours | $(j '.closes.by_node | to_entries | map("node \(.key): " + (.value | to_entries | map("\(.key) \(.value)") | join(", ") | if . == "" then "none" else . end)) | join("; ")') |"
    echo "| Observers joined again: recovered / not recovered | $(j '.counts.observer_recovered') / $(j '.counts.observer_not_recovered') |"
    echo "| Chat publications sent / acked / missing | $(num "$(j '.publications.chat.sent')") / $(num "$(j '.publications.chat.acked')") / $(j '.publications.chat.missing') |"
    echo "| API publications sent / acked / missing | $(num "$(j '.publications.api.sent')") / $(num "$(j '.publications.api.acked')") / $(j '.publications.api.missing') |"
    echo "| API publications refused / failed in transport | $(j '.publications.api.refused') / $(j '.publications.api.transport_errors') |"
    echo "| Received by the observers: live / by recovery; twice | $(num "$(j '.publications.observers.received')") / $(j '.publications.observers.received_by_recovery'); $(j '.publications.observers.duplicates') |"
    echo "| Sends refused (error frame) / sent, not acked (socket ended first) | $(j '.counts.send_errors') / $(j '.publications.chat.unacked_at_close') |"
    echo "| In-band refreshes \`refreshed\` / refused | $(num "$(j '.counts.refreshed')") / $(j '.counts.refresh_failed') |"
    echo "| Node A's memory: settled / end / highest, MiB (shown, not judged) | $(j '.rss_kib | [.settled, .end, .max] | map(if . == null then "n/a" else (. / 1024 * 10 | round / 10 | tostring) end) | join(" / ")') |"
    echo "| Server log, outside the windows: ERROR / WARN lines | $ERRORS_OUTSIDE / $WARNS_OUTSIDE |"
    echo
    echo "## What the servers logged (WARN and ERROR)"
    echo
    echo "| node log | level | message | lines | window | an \`error\` field |"
    echo "|---|---|---|---:|---|---|"
    jq -rs 'group_by([.node, .window, .level, .message]) | .[]
        | "| \(.[0].node) | \(.[0].level) | \(.[0].message) | \(length) | \(.[0].window) | \(.[0].error | .[0:120] | gsub("\\|"; "/")) |"' \
        "$LOG_LINES"
    echo
    echo "## What went wrong, by fault (first samples)"
    echo
    j '.faults.faults[] | "- \(.what): " + (if (.samples | length) == 0 then "nothing" else (.samples | join("; ")) end)'
    if [ "$(j '.error_samples | length')" != 0 ]; then
        echo "- outside the faults' windows: $(j '.error_samples | join("; ")')"
    fi
    if [ "${#NOTES[@]}" != 0 ]; then
        echo
        echo "## Notes"
        echo
        for note in "${NOTES[@]}"; do echo "- $note"; done
    fi
    echo
    echo "## Raw result"
    echo
    echo "The fault log (unix ms):"
    echo
    echo '```'
    cat "$FAULTS"
    echo '```'
    echo
    echo "The generator's JSON line (\`rss_kib.samples\`: seconds since the ramp-up ended, VmRSS KiB of node A, sockets open):"
    echo
    echo '```json'
    echo "$LINE"
    echo '```'
} >"$OUT"

cat "$OUT"
echo
log "report written to $OUT"
if [ "$ALL_PASS" = true ]; then
    log "every check passed"
else
    log "a check failed: see the report's Checks; the logs are kept"
    KEEP_WORK=1
    exit 1
fi
