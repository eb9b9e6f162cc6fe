#!/usr/bin/env bash
# The benchmark: wsguard against the FastAPI baseline (shared/peers/fastapi_seed) and a bare
# tokio-tungstenite echo server (the ceiling), on this machine, with the same workloads.
#
#   scripts/bench.sh            full run, about 5-10 minutes, 2 rounds per system
#   scripts/bench.sh --quick    smoke run (CI), short durations, 1 round
#
# Options: --rounds N, --wsguard-port P (8000), --baseline-port P (8100), --bare-port P (8200),
#          --out FILE (default bench/results/<date>.md, or <date>-quick.md with --quick),
#          --no-build (use the release binaries already built).
# Prints the results table and writes the report (machine, table, method, raw JSON lines).
set -euo pipefail

ROOT=$(git rev-parse --show-toplevel)
cd "$ROOT"
PEER="$ROOT/../shared/peers/fastapi_seed"

QUICK=0
BUILD=1
ROUNDS=
WS_PORT=8000
BASE_PORT=8100
BARE_PORT=8200
OUT=
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --no-build) BUILD=0 ;;
        --rounds) ROUNDS=$2; shift ;;
        --wsguard-port) WS_PORT=$2; shift ;;
        --baseline-port) BASE_PORT=$2; shift ;;
        --bare-port) BARE_PORT=$2; shift ;;
        --out) OUT=$2; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

# Durations in seconds. Full: ~6 minutes of load on 2 cores; quick: well under 3 minutes.
if [ "$QUICK" = 1 ]; then
    MODE=quick; : "${ROUNDS:=1}"
    ECHO_S=2; HS_S=2; ME_S=2; STORM_IDLE_S=2; STORM_S=3; FAN_S=3; IDLE_N=2000
else
    MODE=full; : "${ROUNDS:=2}"
    ECHO_S=10; HS_S=10; ME_S=10; STORM_IDLE_S=5; STORM_S=10; FAN_S=10; IDLE_N=5000
fi
FAN_MEMBERS=1000
FAN_RATE=50
DATE=$(date +%F)
if [ -z "$OUT" ]; then
    if [ "$QUICK" = 1 ]; then OUT="bench/results/$DATE-quick.md"; else OUT="bench/results/$DATE.md"; fi
fi

ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/wsguard-bench.XXXXXX")
PIDS=()
GEN_PID=
cleanup() {
    local pid
    [ -z "$GEN_PID" ] || kill "$GEN_PID" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }

# --- build ---------------------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
    log "building release binaries"
    cargo build --release -p wsguard -p wsguard-bench
fi
GEN="$ROOT/target/release/wsguard-bench"

VENV="$ROOT/target/bench-venv"
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
fi
log "installing the baseline's requirements"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$PEER/requirements.txt"

# --- servers -------------------------------------------------------------------------------
wait_port() { # port pid name
    for _ in $(seq 1 200); do
        if ! kill -0 "$2" 2>/dev/null; then
            log "$3 exited early:"; cat "$WORK/$3.log" >&2 || true; exit 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    log "$3 not listening on port $1 after 20 s"; exit 1
}

DATA="$WORK/wsguard-data"
log "starting wsguard on 127.0.0.1:$WS_PORT (data in a temp dir)"
(cd "$WORK" && "$ROOT/target/release/wsguard" demo --data-dir "$DATA" >"$WORK/demo.log" 2>&1) ||
    { log "wsguard demo failed:"; cat "$WORK/demo.log" >&2; exit 1; }
# Logging at warn, like the baseline's --log-level warning.
(cd "$WORK" && WSGUARD_LOG=warn exec "$ROOT/target/release/wsguard" serve \
    --bind "127.0.0.1:$WS_PORT" --data-dir "$DATA" \
    --max-messages-per-sec 1000000 --max-sockets-per-user 100000 --max-message-bytes 65536 \
    >"$WORK/wsguard.out" 2>"$WORK/wsguard.log") &
WS_PID=$!
PIDS+=("$WS_PID")
for _ in $(seq 1 200); do
    grep -q '^wsguard listening on http://' "$WORK/wsguard.out" 2>/dev/null && break
    kill -0 "$WS_PID" 2>/dev/null || { log "wsguard exited:"; cat "$WORK/wsguard.log" >&2; exit 1; }
    sleep 0.1
done
WS_ADDR=$(sed -n '1s|^wsguard listening on http://||p' "$WORK/wsguard.out")
[ -n "$WS_ADDR" ] || { log "wsguard did not print its address"; exit 1; }

log "starting the FastAPI baseline on 127.0.0.1:$BASE_PORT"
(cd "$PEER" && PYTHONDONTWRITEBYTECODE=1 exec "$VENV/bin/uvicorn" app:app \
    --port "$BASE_PORT" --log-level warning >"$WORK/baseline.log" 2>&1) &
BASE_PID=$!
PIDS+=("$BASE_PID")

log "starting bare-echo on 127.0.0.1:$BARE_PORT"
"$ROOT/target/release/bare-echo" --bind "127.0.0.1:$BARE_PORT" >"$WORK/bare.log" 2>&1 &
BARE_PID=$!
PIDS+=("$BARE_PID")

wait_port "$BASE_PORT" "$BASE_PID" baseline
wait_port "$BARE_PORT" "$BARE_PID" bare

# --- workloads -----------------------------------------------------------------------------
RESULTS="$WORK/results.jsonl"
# Anything else busy on the machine skews every figure: measure it and say so in the report.
# CPU ticks (USER_HZ) of the whole machine, and of this script's processes: the servers, plus
# this shell's own and its waited-for children's (every generator run).
cpu_all() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
cpu_steal() { awk '/^cpu / {print $9}' /proc/stat; }
cpu_ours() {
    local total pid
    total=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$$/stat")
    for pid in "${PIDS[@]}"; do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
pct_of_machine() { # ticks seconds
    awk -v t="$1" -v s="$2" -v n="$(nproc)" 'BEGIN {printf "%.0f", (s > 0 ? t / (s * 100 * n) * 100 : 0)}'
}
IDLE_ALL=$(cpu_all); IDLE_OURS=$(cpu_ours)
sleep 2
BUSY_BEFORE=$(pct_of_machine $(( $(cpu_all) - IDLE_ALL - ($(cpu_ours) - IDLE_OURS) )) 2)
if [ "$BUSY_BEFORE" -gt 10 ]; then
    log "WARNING: other processes use ${BUSY_BEFORE}% of the CPU before the workloads: figures will be low"
fi
STARTED=$(date +%s); ALL0=$(cpu_all); STEAL0=$(cpu_steal); OURS0=$(cpu_ours)
: >"$RESULTS"

target_args() { # system
    case "$1" in
        wsguard) echo "--addr $WS_ADDR" ;;
        baseline) echo "--addr 127.0.0.1:$BASE_PORT" ;;
        bare) echo "--addr 127.0.0.1:$BARE_PORT --no-auth" ;;
    esac
}
pid_of() {
    case "$1" in wsguard) echo "$WS_PID" ;; baseline) echo "$BASE_PID" ;; bare) echo "$BARE_PID" ;; esac
}

run() { # system round workload args...
    local system=$1 round=$2 workload=$3 line
    shift 3
    log "$workload on $system (round $round)"
    # In the background and waited for, so that a signal reaches the trap at once.
    # shellcheck disable=SC2046
    "$GEN" --system "$system" --round "$round" "$workload" $(target_args "$system") "$@" \
        >"$WORK/line" &
    GEN_PID=$!
    wait "$GEN_PID" || true
    GEN_PID=
    line=$(cat "$WORK/line")
    [ -n "$line" ] || line="{\"system\":\"$system\",\"round\":$round,\"workload\":\"$workload\",\"error\":\"no output\"}"
    echo "$line" >>"$RESULTS"
    echo "    $line" >&2
    sleep 1 # let closed sockets go before the next run
}

# Memory first, on fresh processes, once per system: later rounds would reuse freed memory.
for system in wsguard baseline bare; do
    run "$system" 1 idle --pid "$(pid_of "$system")" --sockets "$IDLE_N"
done

# Each workload: rounds back to back, systems alternating within a round.
for workload in echo handshake users-me login-storm; do
    for round in $(seq 1 "$ROUNDS"); do
        for system in wsguard baseline bare; do
            case "$workload" in
                echo) run "$system" "$round" echo --connections 50 --duration "$ECHO_S" ;;
                handshake) run "$system" "$round" handshake --workers 20 --duration "$HS_S" ;;
                users-me)
                    [ "$system" = bare ] && continue
                    run "$system" "$round" users-me --connections 50 --duration "$ME_S" ;;
                login-storm)
                    [ "$system" = bare ] && continue
                    run "$system" "$round" login-storm --workers 12 --sockets 10 \
                        --idle-duration "$STORM_IDLE_S" --duration "$STORM_S" ;;
            esac
        done
    done
done

for round in $(seq 1 "$ROUNDS"); do
    run wsguard "$round" fanout --members "$FAN_MEMBERS" --rate "$FAN_RATE" --duration "$FAN_S"
done

# --- report --------------------------------------------------------------------------------
ELAPSED=$(( $(date +%s) - STARTED ))
OTHER=$(pct_of_machine $(( $(cpu_all) - ALL0 - ($(cpu_ours) - OURS0) )) "$ELAPSED")
STEAL=$(pct_of_machine $(( $(cpu_steal) - STEAL0 )) "$ELAPSED")
if [ "$OTHER" -gt 5 ]; then
    log "WARNING: other processes used ${OTHER}% of the CPU during the workloads: figures are skewed"
fi
TABLE=$("$GEN" report --input "$RESULTS")
mkdir -p "$(dirname "$OUT")"
{
    echo "# wsguard benchmark, $DATE ($MODE run)"
    echo
    echo "Command: \`scripts/bench.sh$([ "$QUICK" = 1 ] && echo ' --quick')\`. Generator and servers on the same machine."
    echo
    echo "## Machine"
    echo
    echo "- cores (nproc): $(nproc)"
    echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "- memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "- kernel: $(uname -sr)"
    echo "- rustc: $(rustc --version)"
    echo "- CPU used by processes other than the servers and the generator: ${BUSY_BEFORE}% of the"
    echo "  machine just before the workloads, ${OTHER}% during them; hypervisor steal ${STEAL}%"
    echo "  (more than a few percent means the figures below are low and noisy)"
    echo "- workloads took ${ELAPSED} s"
    echo "- baseline: $("$VENV/bin/python" --version 2>&1), uvicorn $("$VENV/bin/python" -c 'import uvicorn; print(uvicorn.__version__)'), one process"
    echo
    echo "## Results"
    echo
    echo "Each cell is the best of $ROUNDS round(s) per system, best by the workload's headline"
    echo "figure (throughput), all figures of a workload from that same round; memory per socket is"
    echo "one round on fresh processes. Latencies in milliseconds."
    echo
    echo "$TABLE"
    echo
    echo "## Workloads"
    echo
    echo "- **Echo**: 50 sockets to \`/secured-ws\` (\`Authorization: Bearer\`, token from \`POST /token\`;"
    echo "  bare-echo without), each sending a 32-byte text frame and awaiting the reply, back to back,"
    echo "  ${ECHO_S} s. Latency per round trip."
    echo "- **Handshakes**: 20 workers, each connect + upgrade with the bearer header + read the welcome"
    echo "  frame + close handshake, ${HS_S} s. Latency: connect to welcome."
    echo "- **GET /users/me**: 50 keep-alive HTTP/1.1 connections, one request at a time each, ${ME_S} s."
    echo "- **Login storm**: 12 workers posting \`POST /token\` (johndoe) for ${STORM_S} s, while 10 sockets"
    echo "  echo one frame each every 20 ms; the same sockets' p99 is first measured ${STORM_IDLE_S} s without"
    echo "  the storm. Paced latencies are corrected for coordinated omission (hdrhistogram"
    echo "  \`record_correct\`). 503 answers (wsguard's hash queue full) are not logins. The logins/s target"
    echo "  is 0.9 × cores ÷ the time of one argon2id hash (m=19456 KiB, t=2, p=1) measured here."
    echo "- **Idle sockets**: ${IDLE_N} authenticated sockets opened (50 at a time), each having received"
    echo "  its welcome; server VmRSS before and after (2 s settle each), difference ÷ sockets."
    echo "- **Chat fan-out** (wsguard only): ${FAN_MEMBERS} sockets on \`/chat/ws?token=\` join room \`bench\`;"
    echo "  one of them sends ${FAN_RATE} messages/s for ${FAN_S} s; deliveries/s across all members and the"
    echo "  latency from send to the last member's receipt."
    echo
    echo "wsguard runs with \`--max-messages-per-sec 1000000 --max-sockets-per-user 100000"
    echo "--max-message-bytes 65536\` and \`WSGUARD_LOG=warn\`; the baseline with \`--log-level warning\`."
    echo "Token micro-benchmarks (HS256, ES256 issue/verify): \`cargo bench -p wsguard-bench\`."
    echo
    echo "## Raw results"
    echo
    echo '```json'
    cat "$RESULTS"
    echo '```'
} >"$OUT"

echo
echo "$TABLE"
echo
log "report written to $OUT"
