#!/usr/bin/env bash
# The soak: one fresh wsguard (SQLite, in-process fan-out) under `wsguard-bench soak` for a long
# run: thousands of chat sockets over 50 rooms with churn, 30 s access tokens (so `expiring`,
# in-band refresh and 4001 happen all the time), chat publications checked at one observer per
# room, API publications (`POST /api/publish`, a key made for the run) checked the same way,
# password logins and refreshes for the token pool, wrong passwords from 127.0.0.2.
# Afterwards: no ERROR in the server's log, every acked publication delivered exactly once,
# memory at the end within 10% of where it settled, and no error seen by the generator.
#
#   scripts/soak.sh                   10 minutes, 5,000 sockets
#   scripts/soak.sh --quick           1 minute, 500 sockets
#
# Options: --minutes N, --sockets N (with --quick too: they override its), --rate N (chat
#          publications/s, 20), --api-rate N (API publications/s, 5), --churn N (client closes/s, 10),
#          --port P (0: any free port), --out FILE (default bench/results/<date>-soak.md, or
#          <date>-soak-quick.md with --quick), --no-build (use the release binaries already built),
#          --note TEXT (repeatable: a line for the report's notes, e.g. what else the machine ran).
# Prints the report and writes it; exits non-zero when a check fails.
set -euo pipefail

ROOT=$(git rev-parse --show-toplevel)
cd "$ROOT"

QUICK=0
BUILD=1
MINUTES=
SOCKETS=
RATE=20
API_RATE=5
CHURN=10
PORT=0
OUT=
NOTES=()
ROOMS=50
ACCESS_TTL=30s
EXPIRY_WARNING=10s
LOGIN_WINDOW=60s
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --no-build) BUILD=0 ;;
        --minutes) MINUTES=$2; shift ;;
        --sockets) SOCKETS=$2; shift ;;
        --rate) RATE=$2; shift ;;
        --api-rate) API_RATE=$2; shift ;;
        --churn) CHURN=$2; shift ;;
        --port) PORT=$2; shift ;;
        --out) OUT=$2; shift ;;
        --note) NOTES+=("$2"); shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "soak.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
if [ "$QUICK" = 1 ]; then
    : "${MINUTES:=1}" "${SOCKETS:=500}"
    MODE=quick
else
    : "${MINUTES:=10}" "${SOCKETS:=5000}"
    MODE=full
fi
SECONDS_RUN=$(awk -v m="$MINUTES" 'BEGIN {printf "%d", m * 60}')
[ "$SECONDS_RUN" -ge 10 ] || { echo "soak.sh: --minutes must give at least 10 seconds" >&2; exit 2; }
DATE=$(date +%F)
if [ -z "$OUT" ]; then
    if [ "$QUICK" = 1 ]; then OUT="bench/results/$DATE-soak-quick.md"; else OUT="bench/results/$DATE-soak.md"; fi
fi

log() { printf '[soak %s] %s\n' "$(date +%T)" "$*" >&2; }

# Descriptors: the server and the generator each hold every socket, plus HTTP and slack.
NEEDED=$((SOCKETS + 1000))
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$NEEDED" ]; then
    log "ulimit -n is $(ulimit -n), $NEEDED are needed for $SOCKETS sockets"; exit 1
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/wsguard-soak.XXXXXX")
SERVER_PID=
GEN_PID=
# Set when a check fails: the server's log and the generator's output stay for a look.
KEEP_WORK=0
cleanup() {
    [ -z "$GEN_PID" ] || kill "$GEN_PID" 2>/dev/null || true
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "$KEEP_WORK" = 1 ]; then
        log "kept the server's log and the generator's output in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$BUILD" = 1 ]; then
    log "building release binaries"
    cargo build --release -p wsguard -p wsguard-bench
fi
WSGUARD="$ROOT/target/release/wsguard"
GEN="$ROOT/target/release/wsguard-bench"

# --- the server ------------------------------------------------------------------------------
DATA="$WORK/wsguard-data"
(cd "$WORK" && "$WSGUARD" demo --data-dir "$DATA" >"$WORK/demo.log" 2>&1) ||
    { log "wsguard demo failed:"; cat "$WORK/demo.log" >&2; exit 1; }
# The API key goes to the generator in a file of mode 0600, never on a command line.
(umask 077 && cd "$WORK" && "$WSGUARD" apikey add soak --scopes publish --data-dir "$DATA" \
    >"$WORK/api-key" 2>"$WORK/apikey.log") ||
    { log "wsguard apikey add failed:"; cat "$WORK/apikey.log" >&2; exit 1; }
SERVER_ARGS=(--bind "127.0.0.1:$PORT" --data-dir "$DATA"
    --access-ttl "$ACCESS_TTL" --expiry-warning "$EXPIRY_WARNING"
    --max-sockets-per-user $((SOCKETS * 2))
    --max-connections $((SOCKETS + 1000)) --max-connections-per-address $((SOCKETS + 1000))
    --login-window "$LOGIN_WINDOW")
log "starting wsguard: ${SERVER_ARGS[*]}"
(cd "$WORK" && WSGUARD_LOG_FORMAT=json exec "$WSGUARD" serve "${SERVER_ARGS[@]}" \
    >"$WORK/server.out" 2>"$WORK/server.log") &
SERVER_PID=$!
ADDR=
for _ in $(seq 1 200); do
    ADDR=$(sed -n '1s|^wsguard listening on http://||p' "$WORK/server.out" 2>/dev/null)
    [ -n "$ADDR" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { log "wsguard exited:"; cat "$WORK/server.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$ADDR" ] || { log "wsguard did not print its address"; exit 1; }
# The memory readings must be wsguard's own, not a shell's in between.
[ "$(readlink "/proc/$SERVER_PID/exe")" = "$(readlink -f "$WSGUARD")" ] ||
    { log "pid $SERVER_PID is not wsguard"; exit 1; }
log "wsguard (pid $SERVER_PID) on $ADDR"

# CPU ticks of the whole machine, and of the server and this shell's waited-for children (the
# generator): the difference is what other processes took meanwhile.
cpu_all() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
cpu_ours() {
    echo $(( $(awk '{print $14 + $15 + $16 + $17}' "/proc/$$/stat") +
        $(awk '{print $14 + $15}' "/proc/$SERVER_PID/stat" 2>/dev/null || echo 0) ))
}
pct_of_machine() { # ticks seconds
    awk -v t="$1" -v s="$2" -v n="$(nproc)" 'BEGIN {printf "%.0f", (s > 0 ? t / (s * 100 * n) * 100 : 0)}'
}

# --- the soak --------------------------------------------------------------------------------
GEN_ARGS=(soak --addr "$ADDR" --pid "$SERVER_PID" --duration "$SECONDS_RUN" --sockets "$SOCKETS"
    --rooms "$ROOMS" --rate "$RATE" --churn "$CHURN" --api-key-file "$WORK/api-key" --api-rate "$API_RATE")
log "wsguard-bench ${GEN_ARGS[*]} (ramp-up, $SECONDS_RUN s of soak, drain, close)"
STARTED=$(date +%s); ALL0=$(cpu_all); OURS0=$(cpu_ours)
"$GEN" "${GEN_ARGS[@]}" >"$WORK/soak.json" 2>"$WORK/generator.log" &
GEN_PID=$!
GEN_RC=0
wait "$GEN_PID" || GEN_RC=$?
GEN_PID=
ELAPSED=$(( $(date +%s) - STARTED ))
SERVER_CPU=$(awk -v s="$ELAPSED" '{printf "%.0f", (s > 0 ? ($14 + $15) / (s * 100) * 100 : 0)}' "/proc/$SERVER_PID/stat")
OTHER=$(pct_of_machine $(( $(cpu_all) - ALL0 - ($(cpu_ours) - OURS0) )) "$ELAPSED")
LINE=$(tail -n 1 "$WORK/soak.json")
if [ "$GEN_RC" != 0 ] || ! jq -e '.checks' >/dev/null 2>&1 <<<"$LINE"; then
    log "the generator failed (exit $GEN_RC):"; cat "$WORK/soak.json" "$WORK/generator.log" >&2
    KEEP_WORK=1; exit 1
fi

# Stop the server as an operator would (SIGTERM): its shutdown is part of the log checked.
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || true
SERVER_PID=

# --- the server's log ------------------------------------------------------------------------
SERVER_LOG="$WORK/server.log"
LINES=$(wc -l <"$SERVER_LOG")
# Lines that are not JSON objects (a panic message, say) count as errors.
NOT_JSON=$(jq -R 'fromjson? | objects | 1' "$SERVER_LOG" 2>/dev/null | wc -l)
NOT_JSON=$((LINES - NOT_JSON))
level_count() { jq -R --arg l "$1" 'fromjson? | objects | select(.level == $l) | 1' "$SERVER_LOG" | wc -l; }
ERRORS=$(level_count ERROR)
WARNS=$(level_count WARN)
INFOS=$(level_count INFO)
distinct() { # level
    jq -rR --arg l "$1" 'fromjson? | objects | select(.level == $l) | .fields.message // "(no message)"' \
        "$SERVER_LOG" | sort | uniq -c | sort -rn | awk '{n = $1; $1 = ""; printf "| %s | %d |\n", substr($0, 2), n}'
}

# --- the report ------------------------------------------------------------------------------
j() { jq -r "$1" <<<"$LINE"; }
mark() { if [ "$1" = true ]; then echo "✅ pass"; else echo "❌ fail"; fi; }
NO_ERROR_LOGGED=false
[ "$ERRORS" = 0 ] && [ "$NOT_JSON" = 0 ] && NO_ERROR_LOGGED=true
DELIVERED=$(j '.checks.every_acked_delivered')
MEMORY=$(j '.checks.memory_within_10pct')
GEN_CLEAN=$(j '.checks.no_generator_errors')
mib() { awk -v k="$1" 'BEGIN {if (k == "null" || k == "") print "n/a"; else printf "%.1f", k / 1024}'; }
num() { awk -v n="$1" 'BEGIN {s = sprintf("%d", n); out = ""; while (length(s) > 3) {out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3)}; print s out}'; }
STATUSES=$(j '.wrong_logins_by_status | to_entries | map("\(.key): \(.value)") | join(", ")')
SERVER_CLOSES=$(j '.closes.by_server | to_entries | map("\(.key): \(.value)") | join(", ")')
OTHER_CLOSES=$(j '[.closes.by_server | to_entries[] | select(.key != "4001") | .value] | add // 0')

mkdir -p "$(dirname "$OUT")"
{
    echo "# wsguard soak, $DATE ($MODE run)"
    echo
    echo "Command: \`scripts/soak.sh$([ "$QUICK" = 1 ] && echo ' --quick') --minutes $MINUTES --sockets $SOCKETS\`."
    echo "Generator and server on the same machine, over loopback."
    echo
    echo "## Machine"
    echo
    echo "- cores (nproc): $(nproc)"
    echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "- memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "- kernel: $(uname -sr)"
    echo "- rustc: $(rustc --version)"
    echo "- wsguard: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' + uncommitted changes')"
    echo "- the whole soak took ${ELAPSED} s (ramp-up, run, drain, close); wsguard used ${SERVER_CPU}% of one core"
    echo "  over it (start included), the generator $(j '.generator_cpu_pct')%; processes other than these two used ${OTHER}% of"
    echo "  the machine meanwhile"
    echo
    echo "## Settings"
    echo
    echo "- wsguard: SQLite, in-process fan-out, \`WSGUARD_LOG_FORMAT=json\` (level info), demo users;"
    echo "  \`$(printf '%s ' "${SERVER_ARGS[@]}" | sed "s|$WORK|<tmp>|g; s/ $//")\`;"
    echo "  every other limit at its default (50 messages/s per socket, 60 s idle timeout, login"
    echo "  throttle 5 failures per user and address, 50 per address, 300 attempts per address)"
    echo "- generator: \`wsguard-bench $(printf '%s ' "${GEN_ARGS[@]}" | sed "s|$WORK|<tmp>|g; s/ $//")\`"
    echo "- $(j '.settings.sockets') sockets on \`/chat/ws?token=\` over $(j '.settings.rooms') rooms, one observer per room"
    echo "  (never churned, refreshing in band); users $(j '.settings.users | join(" and ")') alternating"
    echo "- churn: $(j '.settings.churn_per_s') client closes a second, each slot reconnecting; $(j '.settings.no_refresh_share * 100 | round')% of"
    echo "  connections ignore \`expiring\` and must be closed with 4001"
    echo "- tokens: access lifetime $(j '.settings.access_ttl_s') s, \`expiring\` 10 s before; a pool of"
    echo "  $(j '.settings.logins_per_user') password logins per user, each refreshed with \`POST /refresh\` every"
    echo "  $(j '.settings.pool_refresh_every_s') s (rotated refresh token kept), one replaced by a new password login every"
    echo "  $(j '.settings.login_every_s') s; sockets refresh in band with the freshest pool token of their user"
    echo "- history first: $(j '.settings.prefill_per_room') messages put in each room before the members connect, acked and"
    echo "  checked like the others (they are in the figures below), so that every join's \`history\` is"
    echo "  full-sized from the start"
    echo "- publications: $(j '.settings.publications_per_s') chat \`send\`s a second from random members, and"
    echo "  $(j '.settings.api_publications_per_s') API publications a second (\`POST /api/publish\` with a \`publish\` key made for the"
    echo "  run, \`{\"text\": …}\` to a random room): each 200's offset is the id the room's observer must receive"
    echo "- wrong passwords: $(j '.settings.wrong_logins_per_s') a second from $(j '.settings.wrong_login_from'), in turn for each user and an unknown name"
    echo "- memory: the server's VmRSS every $(j '.settings.rss_every_s') s; settled = median over the second fifth"
    echo "  of the run ($(j '.rss_kib.settled_window_s | map(tostring) | join("–")') s after the ramp-up)"
    echo
    echo "## Results"
    echo
    echo "| figure | value | check |"
    echo "|---|---:|:---:|"
    echo "| Soak after the ramp-up, s | $(j '.settings.duration_s') | |"
    echo "| Ramp-up to $(num "$SOCKETS") sockets, s | $(j '.ramp_up_s') | |"
    echo "| Sockets open: after the ramp-up / min / max / at the end | $(j '.sockets_after_ramp_up') / $(j '.sockets_open_min') / $(j '.sockets_open_max') / $(j '.sockets_open_at_end') | |"
    echo "| Connects (welcome + join answered) | $(num "$(j '.counts.connects')") | |"
    echo "| Connect failures | $(j '.counts.connect_failures') | |"
    echo "| Closed by the client: churn / at the end | $(num "$(j '.closes.by_us_churn')") / $(num "$(j '.closes.by_us_at_the_end')") | |"
    echo "| Closed by the server, by code | ${SERVER_CLOSES:-none} | |"
    echo "| 4001 of sockets that did not refresh (expected) | $(num "$(j '.counts.closed_4001_expected')") | |"
    echo "| 4001 of sockets that refreshed (unexpected) | $(j '.counts.closed_4001_unexpected') | |"
    echo "| Other server closes / without a close frame | $OTHER_CLOSES / $(j '.closes.abnormal') | |"
    echo "| \`expiring\` received | $(num "$(j '.counts.expiring')") | |"
    echo "| In-band refreshes sent / \`refreshed\` / refused | $(num "$(j '.counts.refresh_sent')") / $(num "$(j '.counts.refreshed')") / $(j '.counts.refresh_failed') | |"
    echo "| Observer reconnects | $(j '.counts.observer_reconnects') | |"
    echo "| Password logins ok / failed | $(j '.counts.logins_ok') / $(j '.counts.logins_failed') | |"
    echo "| Pool refreshes (\`POST /refresh\`) ok / failed | $(num "$(j '.counts.pool_refreshes_ok')") / $(j '.counts.pool_refreshes_failed') | |"
    echo "| Wrong-password logins, by status | $(j '.counts.wrong_logins') (${STATUSES:-none}) | |"
    echo "| Chat publications sent / acked | $(num "$(j '.publications.chat.sent')") / $(num "$(j '.publications.chat.acked')") | |"
    echo "| API publications sent / acked (200 with an offset) | $(num "$(j '.publications.api.sent')") / $(num "$(j '.publications.api.acked')") | |"
    echo "| API publications refused / failed in transport | $(j '.publications.api.refused') / $(j '.publications.api.transport_errors') | |"
    echo "| Acked, delivered to the room's observer: chat / API | $(num "$(j '.publications.chat.acked - .publications.chat.missing')") / $(num "$(j '.publications.api.acked - .publications.api.missing')") | |"
    echo "| Acked, missing at the observer: chat / API; delivered twice | $(j '.publications.chat.missing') / $(j '.publications.api.missing'); $(j '.publications.observers.duplicates') | $(mark "$DELIVERED") |"
    echo "| Sent, not acked (sender closed first) / delivered without an ack | $(j '.publications.chat.unacked_at_close') / $(j '.publications.observers.delivered_unacked') | |"
    echo "| Send refused (error frame) | $(j '.counts.send_errors') | |"
    echo "| Deliveries to all sockets | $(num "$(j '.counts.deliveries')") | |"
    echo "| Server RSS at start, MiB | $(mib "$(j '.rss_kib.at_start')") | |"
    echo "| Server RSS settled (median, $(j '.rss_kib.settled_window_s | map(tostring) | join("–")') s), MiB | $(mib "$(j '.rss_kib.settled')") | |"
    echo "| Server RSS at the end, full load, MiB | $(mib "$(j '.rss_kib.end')") | |"
    echo "| End ÷ settled (≤ 1.10) | $(j '.rss_kib.end_over_settled') | $(mark "$MEMORY") |"
    echo "| Server RSS growth after settling (least squares), KiB/min | $(j '.rss_kib.growth_after_settling_kib_per_min') | |"
    echo "| Server RSS, highest reading, MiB | $(mib "$(j '.rss_kib.max')") | |"
    echo "| Server RSS after every socket closed, MiB | $(mib "$(j '.rss_kib.after_close')") | |"
    echo "| Server log: ERROR lines (and lines that are not JSON) | $ERRORS ($NOT_JSON) | $(mark "$NO_ERROR_LOGGED") |"
    echo "| Server log: WARN / INFO lines | $WARNS / $(num "$INFOS") | |"
    echo "| Errors seen by the generator | $(j '.errors') | $(mark "$GEN_CLEAN") |"
    echo "| Server's own count after the close: sockets open / closed expired (4001; a 4001 crossing the client's own close is counted by the generator as the client's) | $(j '.server_metrics_after_close["wsguard_sockets_open"]') / $(j '.server_metrics_after_close["wsguard_sockets_closed_total{reason=\"expired\"}"]') | |"
    echo
    echo "Errors seen by the generator are unexpected closes (any server close but an expected"
    echo "4001, a close without a close frame, an observer closed), failed connects, refused or"
    echo "skipped in-band refreshes, refused sends, refused or failed API publications, failed logins"
    echo "or pool refreshes, wrong-login answers other than 401 and 429, and frames the protocol does"
    echo "not allow (by kind in the raw result's \`errors_by_kind\`)."
    echo
    echo "### Warnings the server logged"
    echo
    if [ "$WARNS" = 0 ]; then
        echo "None."
    else
        echo "| message | lines |"
        echo "|---|---:|"
        distinct WARN
    fi
    if [ "$ERRORS" != 0 ]; then
        echo
        echo "### Errors the server logged"
        echo
        echo "| message | lines |"
        echo "|---|---:|"
        distinct ERROR
    fi
    if [ "$NOT_JSON" != 0 ]; then
        echo
        echo "### Server log lines that are not JSON (first 10)"
        echo
        echo '```'
        jq -rR 'select((try fromjson catch null | type) != "object")' "$SERVER_LOG" | head -n 10
        echo '```'
    fi
    if [ "$(j '.error_samples | length')" != 0 ]; then
        echo
        echo "### What the generator saw go wrong (first $(j '.error_samples | length'))"
        echo
        j '.error_samples[] | "- " + .'
    fi
    if [ "${#NOTES[@]}" != 0 ] || [ "$OTHER" -gt 10 ]; then
        echo
        echo "## Notes"
        echo
        [ "$OTHER" -gt 10 ] && echo "- Other processes used ${OTHER}% of the machine during the soak: figures are skewed."
        for note in "${NOTES[@]}"; do echo "- $note"; done
    fi
    echo
    echo "## Not covered"
    echo
    echo "- One node only, SQLite, in-process fan-out: two nodes on PostgreSQL and Redis, with Redis and"
    echo "  PostgreSQL restarted and a node killed, are \`scripts/faults.sh\` (its own report)."
    echo
    echo "## Raw result"
    echo
    echo "The generator's JSON line (\`rss_kib.samples\`: seconds since the ramp-up ended, VmRSS KiB,"
    echo "sockets open)."
    echo
    echo '```json'
    echo "$LINE"
    echo '```'
} >"$OUT"

cat "$OUT"
echo
log "report written to $OUT"
if [ "$NO_ERROR_LOGGED" = true ] && [ "$DELIVERED" = true ] && [ "$MEMORY" = true ] && [ "$GEN_CLEAN" = true ]; then
    log "every check passed"
else
    log "a check failed: no error logged $NO_ERROR_LOGGED, every acked publication delivered $DELIVERED, memory within 10% $MEMORY, no generator errors $GEN_CLEAN"
    KEEP_WORK=1
    exit 1
fi
