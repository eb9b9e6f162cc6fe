#!/usr/bin/env bash
# The benchmark: wsguard against the FastAPI baseline (bench/baseline: the FastAPI tutorials' app,
# flaws kept, pinned in bench/baseline/requirements.txt) and a bare tokio-tungstenite echo server
# (the ceiling), on this machine, with the same workloads; the fan-out workloads against wsguard's
# channels and a bare tokio-tungstenite broadcast server (bare-broadcast, the fan-out ceiling).
#
# Centrifugo's client protocol (/connection/websocket) beside wsguard's own (/connect), on wsguard,
# alternating in the same run: handshakes, the channel fan-out (saturation, paced) and idle
# subscribed connections; the same protocol over HTTP streaming and SSE (commands by POST
# /emulation) beside the WebSocket: the fan-out at saturation and idle subscribed connections.
# Emulated commands per second and their latency, on one node and across two.
#
# Last, the channel fan-out at saturation across two wsguard nodes of one cluster (PostgreSQL +
# Redis), and emulated commands posted to either node.
#
#   scripts/bench.sh            full run, about 5-10 minutes, 2 rounds per system
#   scripts/bench.sh --quick    smoke run (CI), short durations, 1 round
#
# Options: --rounds N, --wsguard-port P (8000), --baseline-port P (8100), --bare-port P (8200),
#          --broadcast-port P (8250: bare-broadcast),
#          --node-port P (8300: the two nodes on P and P+1), --jwks-port P (8400: the JWKS the
#          generator serves for the trusted-issuer handshakes), --app-port P (8450: the application
#          the generator serves for the proxy workload), --idle-port P (8500: the fresh
#          server of each idle-memory row, one at a time),
#          --postgres-url URL (postgres://postgres@127.0.0.1:5432/test; a fresh schema is made in it
#          and dropped at the end), --redis-url URL (redis://127.0.0.1:6379),
#          --no-cluster (skip the two-node fan-out: its rows say "not run"),
#          --out FILE (default bench/results/<date>.md, or <date>-quick.md with --quick),
#          --no-build (use the release binaries already built).
# Prints the results table and writes the report (machine, table, method, raw JSON lines).
# PostgreSQL or Redis unreachable: the two-node rows say "not run", the rest runs as usual.
set -euo pipefail

ROOT=$(git rev-parse --show-toplevel)
cd "$ROOT"
# The FastAPI baseline (app.py, requirements.txt), in the repository.
BASELINE="$ROOT/bench/baseline"

QUICK=0
BUILD=1
ROUNDS=
WS_PORT=8000
BASE_PORT=8100
BARE_PORT=8200
BCAST_PORT=8250
NODE_PORT=8300
JWKS_PORT=8400
APP_PORT=8450
IDLE_PORT=8500
PG_URL=postgres://postgres@127.0.0.1:5432/test
REDIS_URL=redis://127.0.0.1:6379
CLUSTER_RUN=1
OUT=
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --no-build) BUILD=0 ;;
        --rounds) ROUNDS=$2; shift ;;
        --wsguard-port) WS_PORT=$2; shift ;;
        --baseline-port) BASE_PORT=$2; shift ;;
        --bare-port) BARE_PORT=$2; shift ;;
        --broadcast-port) BCAST_PORT=$2; shift ;;
        --node-port) NODE_PORT=$2; shift ;;
        --jwks-port) JWKS_PORT=$2; shift ;;
        --app-port) APP_PORT=$2; shift ;;
        --idle-port) IDLE_PORT=$2; shift ;;
        --postgres-url) PG_URL=$2; shift ;;
        --redis-url) REDIS_URL=$2; shift ;;
        --no-cluster) CLUSTER_RUN=0 ;;
        --out) OUT=$2; shift ;;
        -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

# Durations in seconds. Full: ~6 minutes of load on 2 cores; quick: well under 3 minutes.
if [ "$QUICK" = 1 ]; then
    MODE=quick; : "${ROUNDS:=1}"
    ECHO_S=2; HS_S=2; ISS_S=1; ME_S=2; STORM_IDLE_S=2; STORM_S=3; FAN_S=3; IDLE_N=2000; IDLE_SUB_N=2000; PROXY_S=1
    RECOVERY_REPEATS=2; PUBLISH_S=1
    SCALE_N=5000; SCALE_PING_S=2; SCALE_WINDOW_S=5
    # RS256 tokens presented once each: 2,000 take ~0.2 s to present (and a few s to sign).
    ISS_DISTINCT=2000
else
    MODE=full; : "${ROUNDS:=2}"
    ECHO_S=10; HS_S=10; ISS_S=5; ME_S=10; STORM_IDLE_S=5; STORM_S=10; FAN_S=10; IDLE_N=5000
    # Idle subscribed connections: 15,000, where 5,000 gave readings ±1 KiB apart from run to run
    # (the allocator commits memory in steps of a few MiB).
    IDLE_SUB_N=15000; PROXY_S=5
    RECOVERY_REPEATS=5; PUBLISH_S=3
    SCALE_N=100000; SCALE_PING_S=5; SCALE_WINDOW_S=15
    # ~1 s of first presentations: a steadier rate than 2,000's 0.2 s (signing them beforehand,
    # unmeasured, takes the generator ~15 s a round).
    ISS_DISTINCT=10000
fi
FAN_MEMBERS=1000
FAN_RATE=50
# The channel fan-out (wsguard beside bare-broadcast): seconds of sending per case, and the sizes.
# Paced runs longer: its p99 is of 100 publications a second, the 10th-worst of 1,000 in 10 s.
if [ "$QUICK" = 1 ]; then FANSAT_S=2; FANPACED_S=2; FANMANY_S=2; else FANSAT_S=5; FANPACED_S=10; FANMANY_S=5; fi
FAN_WINDOW=16
FAN_PACED_RATE=100
FAN_MANY_SOCKETS=10000
FAN_MANY_CHANNELS=1000
FAN_MANY_RATE=2000
# The notification workload: FAN_MANY_SOCKETS sockets, each following a channel of its own,
# NOTIFY_RATE publications/s over all made through the server API (bare: POST /publish/<channel>).
NOTIFY_RATE=2000
NOTIFY_CONNECTIONS=32
if [ "$QUICK" = 1 ]; then NOTIFY_S=2; else NOTIFY_S=5; fi
# Emulated commands: EMU_STREAMS streams, each publishing by POST /emulation one command at a time.
EMU_STREAMS=20
if [ "$QUICK" = 1 ]; then EMU_S=2; else EMU_S=5; fi
DATE=$(date +%F)
if [ -z "$OUT" ]; then
    if [ "$QUICK" = 1 ]; then OUT="bench/results/$DATE-quick.md"; else OUT="bench/results/$DATE.md"; fi
fi

# As many descriptors as the hard limit allows: the idle sockets at scale take one each in the
# server and one in the generator.
HARD_NOFILE=$(ulimit -Hn)
[ "$HARD_NOFILE" != unlimited ] || HARD_NOFILE=$(cat /proc/sys/fs/nr_open)
ulimit -n "$HARD_NOFILE" 2>/dev/null || true
# The many-channels fan-out and the notification workload hold 10,000 sockets in the generator and
# as many in the server.
FAN_MANY_SKIP=
if [ "$(ulimit -n)" -lt $((FAN_MANY_SOCKETS + 1000)) ]; then
    FAN_MANY_SKIP="the file limit ($(ulimit -n)) is below $((FAN_MANY_SOCKETS + 1000)): raise the hard limit"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/wsguard-bench.XXXXXX")
PIDS=()
GEN_PID=
# The two-node run's PostgreSQL schema and cluster name, once made (dropped / cleared on exit).
SCHEMA=
CLUSTER=
cleanup() {
    local pid
    [ -z "$GEN_PID" ] || kill "$GEN_PID" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    # After the nodes stopped: nothing uses the schema or the cluster's keys any more.
    if [ -n "$SCHEMA" ]; then
        PGCONNECT_TIMEOUT=5 psql "$PG_URL" -qAt -v ON_ERROR_STOP=1 \
            -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 ||
            log "could not drop schema $SCHEMA in $PG_URL: drop it by hand"
    fi
    if [ -n "$CLUSTER" ] && command -v redis-cli >/dev/null; then
        timeout 10 redis-cli -u "$REDIS_URL" --scan --pattern "wsguard:$CLUSTER:*" 2>/dev/null |
            xargs -r timeout 10 redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
    fi
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
log "installing the baseline's requirements (bench/baseline/requirements.txt, pinned)"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$BASELINE/requirements.txt"

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

# Starts `wsguard serve` as NAME on PORT with the benchmark's limits and ARGS; sets SERVE_PID and
# SERVE_ADDR (what it printed). Logs to $WORK/NAME.{out,log}. Returns 1 when it does not come up.
serve_wsguard() { # name port args...
    local name=$1 port=$2
    shift 2
    # Logging at warn, like the baseline's --log-level warning.
    (cd "$WORK" && WSGUARD_LOG=warn exec "$ROOT/target/release/wsguard" serve --bind "127.0.0.1:$port" \
        --max-messages-per-sec 1000000 --max-sockets-per-user 1000000 --max-message-bytes 65536 \
        --login-max-failures 1000000 --login-max-attempts-per-address 1000000 \
        --max-connections-per-address 1000000 --chat-bytes-per-user-per-day 1000000000000 \
        "$@" >"$WORK/$name.out" 2>"$WORK/$name.log") &
    SERVE_PID=$!
    PIDS+=("$SERVE_PID")
    SERVE_ADDR=
    for _ in $(seq 1 200); do
        grep -q '^wsguard listening on http://' "$WORK/$name.out" 2>/dev/null && break
        kill -0 "$SERVE_PID" 2>/dev/null || { log "$name exited:"; cat "$WORK/$name.log" >&2; return 1; }
        sleep 0.1
    done
    SERVE_ADDR=$(sed -n '1s|^wsguard listening on http://||p' "$WORK/$name.out")
    [ -n "$SERVE_ADDR" ] || { log "$name did not print its address"; return 1; }
}

DATA="$WORK/wsguard-data"
log "starting wsguard on 127.0.0.1:$WS_PORT (data in a temp dir)"
(cd "$WORK" && "$ROOT/target/release/wsguard" demo --data-dir "$DATA" >"$WORK/demo.log" 2>&1) ||
    { log "wsguard demo failed:"; cat "$WORK/demo.log" >&2; exit 1; }
# Two trusted issuers for the issuer-handshake workload: one HS256 (its secret here), one RS256 by
# JWKS, which the generator serves on JWKS_PORT (until then the server finds it down, and says so).
ISSUER_SECRET="$WORK/issuer.secret"
(umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$ISSUER_SECRET")
# The namespaces of the recovery and publish-rate workloads, on every wsguard of the run.
cat >"$WORK/namespaces.toml" <<EOF
[[namespaces]]
name = "bench"
subscribe = "any"
publish = "subscribers"
history_size = 2000

[[namespaces]]
name = "bench-live"
subscribe = "any"
publish = "subscribers"
history_size = 0

# The notification workload: one channel per socket, published to by the server API only;
# history kept (the default), as for users' own channels (user:<name>); and the same without
# history, what the engine costs beside storing.
[[namespaces]]
name = "notify"
subscribe = "any"
publish = "api"

[[namespaces]]
name = "notify-live"
subscribe = "any"
publish = "api"
history_size = 0
EOF
# The proxy workload: the application (served by the generator) admits token-less /connect sockets
# and decides the subscribes of bench-proxied, which is bench-live but for that rule.
cat >>"$WORK/namespaces.toml" <<EOF

[[namespaces]]
name = "bench-proxied"
subscribe = "proxy"
subscribe_proxy = "http://127.0.0.1:$APP_PORT/rt/subscribe"
publish = "subscribers"
history_size = 0

[proxy]
connect = "http://127.0.0.1:$APP_PORT/rt/connect"
forward_headers = ["Cookie"]
EOF
cp "$WORK/namespaces.toml" "$WORK/issuers.toml"
cat >>"$WORK/issuers.toml" <<EOF

[[trusted_issuers]]
issuer = "https://bench-hs256.example/"
secret_file = "$ISSUER_SECRET"

[[trusted_issuers]]
issuer = "https://bench-rs256.example/"
jwks_url = "http://127.0.0.1:$JWKS_PORT/jwks.json"
EOF
# The notification workload's API key (publish scope), in a file of mode 0600: never on a command line.
(umask 077 && cd "$WORK" && "$ROOT/target/release/wsguard" apikey add bench --scopes publish \
    --data-dir "$DATA" >"$WORK/api-key" 2>"$WORK/apikey.log") ||
    { log "wsguard apikey add failed:"; cat "$WORK/apikey.log" >&2; exit 1; }
# Room for the notification workload's 10,000 sockets and its API connections, and its API calls
# unthrottled (one key making 2,000 calls/s).
serve_wsguard wsguard "$WS_PORT" --data-dir "$DATA" --config "$WORK/issuers.toml" \
    --max-connections $((FAN_MANY_SOCKETS + 1000)) --api-requests-per-sec 1000000 --api-burst 1000000 || exit 1
WS_PID=$SERVE_PID
WS_ADDR=$SERVE_ADDR

log "starting the FastAPI baseline on 127.0.0.1:$BASE_PORT"
(cd "$BASELINE" && PYTHONDONTWRITEBYTECODE=1 exec "$VENV/bin/uvicorn" app:app \
    --port "$BASE_PORT" --log-level warning >"$WORK/baseline.log" 2>&1) &
BASE_PID=$!
PIDS+=("$BASE_PID")

log "starting bare-echo on 127.0.0.1:$BARE_PORT"
"$ROOT/target/release/bare-echo" --bind "127.0.0.1:$BARE_PORT" >"$WORK/bare.log" 2>&1 &
BARE_PID=$!
PIDS+=("$BARE_PID")

log "starting bare-broadcast on 127.0.0.1:$BCAST_PORT"
"$ROOT/target/release/bare-broadcast" --bind "127.0.0.1:$BCAST_PORT" >"$WORK/bare-broadcast.log" 2>&1 &
BCAST_PID=$!
PIDS+=("$BCAST_PID")

wait_port "$BASE_PORT" "$BASE_PID" baseline
wait_port "$BARE_PORT" "$BARE_PID" bare
wait_port "$BCAST_PORT" "$BCAST_PID" bare-broadcast

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

target_args() { # system; TARGET, when set, overrides
    if [ -n "${TARGET:-}" ]; then echo "$TARGET"; return; fi
    case "$1" in
        wsguard) echo "--addr $WS_ADDR" ;;
        baseline) echo "--addr 127.0.0.1:$BASE_PORT" ;;
        bare) echo "--addr 127.0.0.1:$BARE_PORT --no-auth" ;;
    esac
}

# TARGET="--addr A --node B" run ...: the workload against those nodes instead of the system's
# server; NODES=N marks the line of a failed run as N nodes' (the report's row for them).
run() { # system round workload args...
    local system=$1 round=$2 workload=$3 line
    shift 3
    log "$workload on $system${TARGET:+ ($TARGET)} (round $round)"
    # In the background and waited for, so that a signal reaches the trap at once.
    # shellcheck disable=SC2046
    "$GEN" --system "$system" --round "$round" "$workload" $(target_args "$system") "$@" \
        >"$WORK/line" &
    GEN_PID=$!
    wait "$GEN_PID" || true
    GEN_PID=
    line=$(cat "$WORK/line")
    [ -n "$line" ] || line="{\"system\":\"$system\",\"round\":$round,\"workload\":\"$workload\"${NODES:+,\"nodes\":$NODES},\"error\":\"no output\"}"
    echo "$line" >>"$RESULTS"
    echo "    $line" >&2
    sleep 1 # let closed sockets go before the next run
}

stop_server() { # pid
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# Memory first, once per system, each on a fresh process of its own (on IDLE_PORT) that does
# nothing but hold the idle sockets: a process that served anything before reuses what it freed.
# The token comes from a login on the system's main server (wsguard: the same data folder;
# the baseline: its signing secret is in its source), so a login's memory (wsguard's argon2 hash,
# 19 MiB, which the allocator gives back at its own pace) stays out of the reading.
idle_sockets() {
    local pid
    if serve_wsguard idle "$IDLE_PORT" --data-dir "$DATA" --config "$WORK/namespaces.toml" \
        --max-connections $((IDLE_N + 500)); then
        TARGET="--addr $SERVE_ADDR" run wsguard 1 idle --pid "$SERVE_PID" --sockets "$IDLE_N" \
            --login-addr "$WS_ADDR"
        stop_server "$SERVE_PID"
    fi
    (cd "$BASELINE" && PYTHONDONTWRITEBYTECODE=1 exec "$VENV/bin/uvicorn" app:app \
        --port "$IDLE_PORT" --log-level warning >"$WORK/baseline-idle.log" 2>&1) &
    pid=$!
    PIDS+=("$pid")
    wait_port "$IDLE_PORT" "$pid" baseline-idle
    TARGET="--addr 127.0.0.1:$IDLE_PORT" run baseline 1 idle --pid "$pid" --sockets "$IDLE_N" \
        --login-addr "127.0.0.1:$BASE_PORT"
    stop_server "$pid"
    "$ROOT/target/release/bare-echo" --bind "127.0.0.1:$IDLE_PORT" >"$WORK/bare-idle.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_port "$IDLE_PORT" "$pid" bare-idle
    TARGET="--addr 127.0.0.1:$IDLE_PORT --no-auth" run bare 1 idle --pid "$pid" --sockets "$IDLE_N"
    stop_server "$pid"
}
idle_sockets

# Idle sockets at scale, on a wsguard of their own (fresh, pinging every SCALE_PING_S seconds, the
# token from the main one as above): memory per socket, the server's CPU while they idle (over a
# window of some ping intervals), handshakes/s while they are held. Each is a descriptor in the
# server and in the generator.
scale_idle() {
    local want=$SCALE_N nofile path
    nofile=$(ulimit -n)
    if [ "$nofile" -lt $((want + 1000)) ]; then
        SCALE_N=$((nofile - 1000))
        log "WARNING: the open-file limit is $nofile (hard limit $(ulimit -Hn)): $want idle sockets need" \
            "about $((want + 1000)) descriptors in the server and in the generator; running with $SCALE_N"
    fi
    [ "$SCALE_N" -gt 0 ] || return 0
    # Each run from addresses of its own: the ports of the run before linger in TIME_WAIT.
    local first_source=2
    for path in /secured-ws /chat/ws; do
        serve_wsguard idle-scale "$IDLE_PORT" --data-dir "$DATA" --config "$WORK/namespaces.toml" \
            --ping-interval "${SCALE_PING_S}s" --max-connections $((SCALE_N + 500)) || return 0
        TARGET="--addr $SERVE_ADDR" run wsguard 1 idle --pid "$SERVE_PID" --path "$path" \
            --sockets "$SCALE_N" --concurrency 100 --scale --window-s "$SCALE_WINDOW_S" --handshake-s "$HS_S" \
            --first-source "$first_source" --login-addr "$WS_ADDR"
        first_source=$((first_source + (SCALE_N + 24999) / 25000))
        stop_server "$SERVE_PID"
    done
}
scale_idle

# Idle subscribed connections, each following a channel of its own (namespace `notify`, as a
# user's notifications): /connect beside Centrifugo's protocol on a WebSocket, an HTTP stream and
# SSE, each on a fresh wsguard (memory readings on a process that served other sockets would
# reuse freed memory).
idle_subscribed() {
    local kind protocol transport source=100
    for kind in channel centrifugo/websocket centrifugo/http_stream centrifugo/sse; do
        protocol=${kind%/*} transport=${kind#*/}
        [ "$transport" != channel ] || transport=websocket
        # From a loopback address of its own: the earlier idle rows' ports are still in TIME_WAIT.
        source=$((source + 1))
        serve_wsguard idle-subscribed "$IDLE_PORT" --data-dir "$DATA" --config "$WORK/namespaces.toml" \
            --max-connections $((IDLE_SUB_N + 500)) || return 0
        TARGET="--addr $SERVE_ADDR" run wsguard 1 idle --pid "$SERVE_PID" --sockets "$IDLE_SUB_N" \
            --subscribe notify:idle --channels "$IDLE_SUB_N" --protocol "$protocol" --transport "$transport" \
            --login-addr "$WS_ADDR" --source "127.0.0.$source"
        stop_server "$SERVE_PID"
    done
}
idle_subscribed

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

# wsguard's own /connect (bearer header, welcome) beside Centrifugo's /connection/websocket (the
# same token in the connect command, its reply), alternating within each round.
for round in $(seq 1 "$ROUNDS"); do
    run wsguard "$round" handshake --path /connect --workers 20 --duration "$HS_S"
    run wsguard "$round" handshake --protocol centrifugo --workers 20 --duration "$HS_S"
done

# wsguard only: subscribes through the application's subscribe proxy beside a static rule, and
# /connect handshakes admitted by its connect proxy beside a token's, in turns within each run.
for round in $(seq 1 "$ROUNDS"); do
    run wsguard "$round" proxy --app-addr "127.0.0.1:$APP_PORT" --workers 20 --duration "$PROXY_S"
done

# wsguard only: its own token, a trusted issuer's HS256 token and a JWKS issuer's RS256 token, in
# turns within each run.
for round in $(seq 1 "$ROUNDS"); do
    run wsguard "$round" issuer-handshake --workers 20 --duration "$ISS_S" --rounds 2 \
        --hs256-secret-file "$ISSUER_SECRET" --jwks-addr "127.0.0.1:$JWKS_PORT" --distinct "$ISS_DISTINCT"
done

for round in $(seq 1 "$ROUNDS"); do
    run wsguard "$round" fanout --protocol chat --room bench --members "$FAN_MEMBERS" --rate "$FAN_RATE" \
        --duration "$FAN_S"
done

# The channel fan-out, wsguard (namespace `bench`, history kept) and bare-broadcast alternating
# within each round; each run measures its server's CPU (--pid). bare-broadcast's lines are system
# `bare`: the report puts them in the bare column of the fan-out rows. `centrifugo` is the same
# wsguard through /connection/websocket (its lines are wsguard's, with "protocol":"centrifugo"),
# `http_stream` and `sse` the same protocol with the members on emulated connections.
fanout_case() { # system round case args...
    local system=$1 round=$2 case=$3
    shift 3
    case "$system" in
        bare)
            TARGET="--addr 127.0.0.1:$BCAST_PORT --no-auth" run bare "$round" fanout --protocol bare \
                --pid "$BCAST_PID" --case "$case" "$@" ;;
        centrifugo) run wsguard "$round" fanout --protocol centrifugo --pid "$WS_PID" --case "$case" "$@" ;;
        http_stream|sse)
            run wsguard "$round" fanout --protocol centrifugo --transport "$system" --pid "$WS_PID" \
                --case "$case" "$@" ;;
        *) run wsguard "$round" fanout --protocol channel --pid "$WS_PID" --case "$case" "$@" ;;
    esac
}
for round in $(seq 1 "$ROUNDS"); do
    for system in wsguard centrifugo http_stream sse bare; do
        fanout_case "$system" "$round" saturation --members "$FAN_MEMBERS" --window "$FAN_WINDOW" \
            --duration "$FANSAT_S"
    done
    for system in wsguard centrifugo bare; do
        fanout_case "$system" "$round" paced --members "$FAN_MEMBERS" --rate "$FAN_PACED_RATE" \
            --duration "$FANPACED_S"
    done
    for system in wsguard bare; do
        if [ -n "$FAN_MANY_SKIP" ]; then
            log "many-channels fan-out not run: $FAN_MANY_SKIP"
            printf '{"system":"%s","round":%s,"workload":"fanout","case":"channels","skipped":"%s"}\n' \
                "$system" "$round" "$FAN_MANY_SKIP" >>"$RESULTS"
            continue
        fi
        fanout_case "$system" "$round" channels --members "$FAN_MANY_SOCKETS" \
            --channels "$FAN_MANY_CHANNELS" --rate "$FAN_MANY_RATE" --duration "$FANMANY_S" --concurrency 100
        sleep 2 # 10,000 sockets closing
    done
    # Notifications: every socket on a channel of its own, publications through the server API;
    # with history kept (notify) and without (notify-live: bare's run is the same in both).
    for case in notify notify-live; do
        for system in wsguard bare; do
            if [ -n "$FAN_MANY_SKIP" ]; then
                log "notification workload not run: $FAN_MANY_SKIP"
                printf '{"system":"%s","round":%s,"workload":"fanout","case":"%s","skipped":"%s"}\n' \
                    "$system" "$round" "$case" "$FAN_MANY_SKIP" >>"$RESULTS"
                continue
            fi
            api_key=()
            [ "$system" = bare ] || api_key=(--api-key-file "$WORK/api-key")
            fanout_case "$system" "$round" "$case" --members "$FAN_MANY_SOCKETS" --channels "$FAN_MANY_SOCKETS" \
                --channel "$case:u" --rate "$NOTIFY_RATE" --duration "$NOTIFY_S" --concurrency 100 --http-publish \
                --http-connections "$NOTIFY_CONNECTIONS" "${api_key[@]}"
            sleep 2 # 10,000 sockets closing
        done
    done
done

# Emulated commands on one node: streams and POST /emulation on the same wsguard.
for round in $(seq 1 "$ROUNDS"); do
    run wsguard "$round" emulation --case node --streams "$EMU_STREAMS" --duration "$EMU_S" --pid "$WS_PID"
done

# Numbered channels: recovery after an absence, and what numbering and storing cost one sender.
for round in $(seq 1 "$ROUNDS"); do
    run wsguard "$round" recovery --missed 1000 --repeats "$RECOVERY_REPEATS"
    run wsguard "$round" publish-rate --numbered bench:rate --unnumbered bench-live:rate --room rate \
        --duration "$PUBLISH_S" --turns 2
    # Group commit: 100 senders on channels of their own against one alone.
    run wsguard "$round" publish-rate --numbered bench:senders --senders 100 --duration "$PUBLISH_S" --turns 2
done

# The CPU of others so far. PostgreSQL and Redis work for the two-node run: counted apart below.
SINGLE_ELAPSED=$(( $(date +%s) - STARTED ))
OTHER=$(pct_of_machine $(( $(cpu_all) - ALL0 - ($(cpu_ours) - OURS0) )) "$SINGLE_ELAPSED")
if [ "$OTHER" -gt 5 ]; then
    log "WARNING: other processes used ${OTHER}% of the CPU during the workloads: figures are skewed"
fi

# --- two nodes: the fan-out across a PostgreSQL + Redis cluster -----------------------------
# HOST:PORT of redis://[user:pass@]host:port[/db].
redis_hostport() {
    local hostport=${REDIS_URL#*://}
    hostport=${hostport##*@}
    echo "${hostport%%/*}"
}
# Why the two-node run cannot happen here, or nothing when it can.
cluster_unavailable() {
    [ "$CLUSTER_RUN" = 1 ] || { echo "skipped (--no-cluster)"; return; }
    command -v psql >/dev/null || { echo "psql not found (needed to make a schema)"; return; }
    PGCONNECT_TIMEOUT=5 psql "$PG_URL" -qAt -c 'SELECT 1' >/dev/null 2>&1 ||
        { echo "PostgreSQL unreachable at $PG_URL"; return; }
    local reply
    if command -v redis-cli >/dev/null; then
        reply=$(timeout 5 redis-cli -u "$REDIS_URL" ping 2>/dev/null || true)
    else # RESP by hand
        local hostport
        hostport=$(redis_hostport)
        # shellcheck disable=SC2016 # $1 and $2 are the inner shell's
        reply=$(timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "PING\r\n" >&3 && head -c 5 <&3' \
            _ "${hostport%:*}" "${hostport##*:}" 2>/dev/null || true)
    fi
    [[ $reply == *PONG* ]] || { echo "Redis unreachable at $REDIS_URL"; return; }
}
# Lines for the report's two-node rows: they say "not run" or "failed" with this reason.
cluster_line() { # skipped|error reason
    local reason=${2//[\\\"]/} labels
    for labels in '"workload":"fanout","nodes":2' '"workload":"emulation","case":"cluster-same"' \
        '"workload":"emulation","case":"cluster-across"'; do
        printf '{"system":"wsguard","round":1,%s,"%s":"%s"}\n' "$labels" "$1" "$reason" >>"$RESULTS"
    done
}

# The two-node fan-out (channels, at saturation), PostgreSQL and Redis being there: a schema, the demo users in it, two
# nodes one after the other (the first start writes the signing key the second one reads).
cluster_fanout() {
    local suffix sep node_db node_data node_a round
    suffix="$(date +%s)_$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')"
    CLUSTER="bench-$suffix"
    SCHEMA="wsguard_bench_$suffix"
    sep='?'
    [[ $PG_URL == *\?* ]] && sep='&'
    node_db="$PG_URL${sep}options=-c%20search_path%3D$SCHEMA"
    node_data="$WORK/cluster-data"
    local node_args=(--data-dir "$node_data" --database-url "$node_db" --broker-url "$REDIS_URL"
        --cluster "$CLUSTER" --config "$WORK/namespaces.toml")
    log "two nodes on 127.0.0.1:$NODE_PORT and :$((NODE_PORT + 1)): schema $SCHEMA, cluster $CLUSTER"
    if ! PGCONNECT_TIMEOUT=5 psql "$PG_URL" -qAt -v ON_ERROR_STOP=1 -c "CREATE SCHEMA $SCHEMA" \
        >"$WORK/schema.log" 2>&1; then
        SCHEMA=
        log "creating the schema failed:"; cat "$WORK/schema.log" >&2
        cluster_line skipped "could not create a schema in $PG_URL"
        return
    fi
    if ! (cd "$WORK" && "$ROOT/target/release/wsguard" demo --data-dir "$node_data" \
        --database-url "$node_db" >"$WORK/cluster-demo.log" 2>&1); then
        log "wsguard demo on PostgreSQL failed:"; cat "$WORK/cluster-demo.log" >&2
        cluster_line error "wsguard demo on PostgreSQL failed: $(tail -n 1 "$WORK/cluster-demo.log")"
        return
    fi
    serve_wsguard node-a "$NODE_PORT" "${node_args[@]}" ||
        { cluster_line error "node A did not start: $(tail -n 1 "$WORK/node-a.log")"; return; }
    node_a=$SERVE_ADDR
    node_a_pid=$SERVE_PID
    serve_wsguard node-b "$((NODE_PORT + 1))" "${node_args[@]}" ||
        { cluster_line error "node B did not start: $(tail -n 1 "$WORK/node-b.log")"; return; }
    # Redis's commands per publication, when its address is an IP the generator can dial.
    local redis_arg=() redis_addr
    redis_addr=$(redis_hostport)
    redis_addr=${redis_addr/#localhost:/127.0.0.1:}
    [[ $redis_addr =~ ^[0-9.]+:[0-9]+$ ]] && redis_arg=(--redis "$redis_addr")
    for round in $(seq 1 "$ROUNDS"); do
        TARGET="--addr $node_a --node $SERVE_ADDR" NODES=2 run wsguard "$round" fanout \
            --protocol channel --case 2-nodes --members "$FAN_MEMBERS" --window "$FAN_WINDOW" \
            --duration "$FANSAT_S" --pid "$node_a_pid" --pid "$SERVE_PID" "${redis_arg[@]}"
    done
    # Emulated commands, the streams on node A: posted to A, and to B (through Redis to A).
    for round in $(seq 1 "$ROUNDS"); do
        TARGET="--addr $node_a" run wsguard "$round" emulation --case cluster-same \
            --streams "$EMU_STREAMS" --duration "$EMU_S" --pid "$node_a_pid" --pid "$SERVE_PID"
        TARGET="--addr $node_a" run wsguard "$round" emulation --case cluster-across --commands-to "$SERVE_ADDR" \
            --streams "$EMU_STREAMS" --duration "$EMU_S" --pid "$node_a_pid" --pid "$SERVE_PID"
    done
    # Recovery with PostgreSQL as the store (the missed publications are read from it).
    for round in $(seq 1 "$ROUNDS"); do
        TARGET="--addr $node_a" run wsguard "$round" recovery --missed 1000 \
            --repeats "$RECOVERY_REPEATS" --store postgres
    done
    # Group commit on PostgreSQL: 100 senders on channels of their own against one alone, node A.
    for round in $(seq 1 "$ROUNDS"); do
        TARGET="--addr $node_a" run wsguard "$round" publish-rate --numbered bench:senders \
            --senders 100 --store postgres --duration "$PUBLISH_S" --turns 2
    done
}

CLUSTER_S=0
CLUSTER_OTHER=
REASON=$(cluster_unavailable)
if [ -n "$REASON" ]; then
    log "two-node fan-out not run: $REASON"
    cluster_line skipped "$REASON"
else
    C_STARTED=$(date +%s); C_ALL0=$(cpu_all); C_OURS0=$(cpu_ours)
    cluster_fanout
    CLUSTER_S=$(( $(date +%s) - C_STARTED ))
    CLUSTER_OTHER=$(pct_of_machine $(( $(cpu_all) - C_ALL0 - ($(cpu_ours) - C_OURS0) )) "$CLUSTER_S")
fi

# --- report --------------------------------------------------------------------------------
ELAPSED=$(( $(date +%s) - STARTED ))
STEAL=$(pct_of_machine $(( $(cpu_steal) - STEAL0 )) "$ELAPSED")
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
    echo "  machine just before the workloads, ${OTHER}% during the one-node ones; hypervisor steal"
    echo "  ${STEAL}% over all (more than a few percent means the figures below are low and noisy)"
    if [ -n "$CLUSTER_OTHER" ]; then
        echo "- during the two-node fan-out (${CLUSTER_S} s, with starting the nodes), processes other than"
        echo "  the servers and the generator, PostgreSQL and Redis among them, used ${CLUSTER_OTHER}% of the machine"
    fi
    echo "- workloads took ${ELAPSED} s"
    echo "- baseline (bench/baseline): $("$VENV/bin/python" --version 2>&1), $("$VENV/bin/python" -c \
        'import fastapi, uvicorn; print(f"FastAPI {fastapi.__version__}, uvicorn {uvicorn.__version__}")'), one process"
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
    echo "- **Handshakes with trusted issuers' tokens** (wsguard only): the same cycle on \`/secured-ws\`"
    echo "  with wsguard's own token, an HS256 token of a trusted issuer (\`secret_file\`) and an RS256"
    echo "  token of a JWKS issuer (keys served by the generator, cached by wsguard after the first"
    echo "  fetch), in turns of ${ISS_S} s, twice each, each round starting with the next token, in one"
    echo "  run; the target is ≥ 0.9 × the own token's rate. The turns reuse one token each (wsguard checks an"
    echo "  RS256 signature once per token); last, ${ISS_DISTINCT} RS256 tokens each presented once measure the first"
    echo "  presentation, signature check included, then the own token again for as long (target ≥ 0.8 × that"
    echo "  adjacent rate: thousands of closed connections slow the machine's next ones, whichever token)."
    echo "- **GET /users/me**: 50 keep-alive HTTP/1.1 connections, one request at a time each, ${ME_S} s."
    echo "- **Login storm**: 12 workers posting \`POST /token\` (johndoe) for ${STORM_S} s, while 10 sockets"
    echo "  echo one frame each every 20 ms; the same sockets' p99 is first measured ${STORM_IDLE_S} s without"
    echo "  the storm. Paced latencies are corrected for coordinated omission (hdrhistogram"
    echo "  \`record_correct\`). 503 answers (wsguard's hash queue full) are not logins. The logins/s target"
    echo "  is 0.9 × cores ÷ the time of one argon2id hash (m=19456 KiB, t=2, p=1) measured here."
    echo "- **Idle sockets**: ${IDLE_N} authenticated sockets opened (50 at a time), each having received"
    echo "  its welcome; server VmRSS before and after (2 s settle each), difference ÷ sockets. Each system"
    echo "  on a fresh process of its own that does nothing but hold them, the token from a login on that"
    echo "  system's main server (bare-echo takes none): a login's memory (wsguard's argon2 hash, 19 MiB,"
    echo "  which the allocator gives back at its own pace) would otherwise fall in the reading."
    echo "- **Idle sockets at scale** (wsguard only): ${SCALE_N} authenticated sockets on \`/secured-ws\`, then"
    echo "  on \`/chat/ws\`, each on a fresh wsguard pinging every ${SCALE_PING_S} s, opened 100 at a time from"
    echo "  127.0.0.2 onward (25,000 per address; the \`/chat/ws\` run from the next unused address) and"
    echo "  held, each answering pings. Memory per socket as above (the token from the main wsguard)."
    echo "  The server's CPU (utime + stime) over ${SCALE_WINDOW_S} s of idling, pings included;"
    echo "  then handshakes/s, 20 workers for ${HS_S} s, from 127.0.0.1 while the sockets are held."
    echo "  The open-file limit (hard: $(ulimit -Hn)) caps the count; the log says when it did."
    echo "- **Chat fan-out, 1 node** (wsguard only, SQLite, in-process fan-out): ${FAN_MEMBERS} sockets on \`/chat/ws?token=\` join room \`bench\`;"
    echo "  one of them sends ${FAN_RATE} messages/s for ${FAN_S} s; deliveries/s across all members and the"
    echo "  latency from send to the last member's receipt."
    echo "- **Channel fan-out** (wsguard beside bare-broadcast, alternating within each round): on wsguard,"
    echo "  sockets on \`/connect?token=\` subscribe to channels of namespace \`bench\` (history kept, so"
    echo "  every publication is stored and numbered); on bare-broadcast (tokio-tungstenite, no auth, no"
    echo "  store: every text frame goes to every socket of the channel its URL path names, one shared frame"
    echo "  queued per socket, each socket writing all it has queued and flushing once) the same sockets and frames. The"
    echo "  first member of each channel publishes \`{\"seq\":N}\`; every member, the publisher included,"
    echo "  receives it; the ack is wsguard's \`ack\`, and on bare the publisher's own copy. Latencies run from"
    echo "  the send (paced: from when it was due) to the first and to the last member's receipt and to"
    echo "  the ack; server CPU per delivery is the server's utime + stime (/proc) from the first send to the"
    echo "  last delivery, ÷ deliveries. Cases: **saturation**, ${FAN_MEMBERS} members of one channel, the"
    echo "  publisher keeping ${FAN_WINDOW} publications outstanding (until acked and received by every member),"
    echo "  ${FANSAT_S} s; **100 publications/s**, the same channel at ${FAN_PACED_RATE} publications/s (100k"
    echo "  deliveries/s), ${FANPACED_S} s; **many channels**, ${FAN_MANY_SOCKETS} sockets in ${FAN_MANY_CHANNELS} channels of"
    echo "  $((FAN_MANY_SOCKETS / FAN_MANY_CHANNELS)), ${FAN_MANY_RATE} publications/s over all, ${FANMANY_S} s."
    echo "  Publish commands that wait on the publisher's socket while wsguard is busy are taken together:"
    echo "  stored in one commit and written to each member in one go; bare-broadcast writes what is queued"
    echo "  for a socket in one go too."
    echo "- **Notifications** (wsguard beside bare-broadcast): ${FAN_MANY_SOCKETS} sockets, each following a channel of its"
    echo "  own (wsguard: namespace \`notify\`, \`publish = \"api\"\`, history kept), ${NOTIFY_RATE} publications/s"
    echo "  spread over the channels for ${NOTIFY_S} s, made over HTTP on ${NOTIFY_CONNECTIONS} keep-alive connections, one"
    echo "  call at a time each: wsguard's \`POST /api/publish\` with an API key (publish scope), bare-broadcast's"
    echo "  \`POST /publish/<channel>\` (hyper, the body as the shared frame). The 200 is the ack. API p99 is"
    echo "  the call's own time (request sent to answer); p99 to delivery counts from when the publication was"
    echo "  due. Server CPU per delivery as above (one delivery per publication). **Without history**: the"
    echo "  same in namespace \`notify-live\` (\`history_size = 0\`), beside bare-broadcast's run of the same."
    echo "- **Centrifugo's client protocol** (wsguard, \`/connection/websocket\` beside \`/connect\`, alternating"
    echo "  within each round of this run; the second table): **handshakes**, 20 workers for ${HS_S} s with the"
    echo "  own token of \`POST /token\`: on \`/connect\` the bearer header and the welcome frame, on"
    echo "  \`/connection/websocket\` \`{\"id\":1,\"connect\":{\"token\":…}}\` as the first frame and its reply; latency to"
    echo "  the welcome or the reply, then the close handshake. **Fan-out**: the saturation and 100 publications/s"
    echo "  cases above, on the same channel, the members connecting with \`connect\` and \`subscribe\` in one"
    echo "  frame, publishing \`{\"id\":N+3,\"publish\":{\"channel\":…,\"data\":{\"seq\":N}}}\` (the ack is its reply), counting"
    echo "  \`push\` publications and checking that each member's offsets only grow (both protocols), answering"
    echo "  the server's \`{}\` pings with \`{}\`. **Idle subscribed connections**: ${IDLE_SUB_N} connections, each following a"
    echo "  channel of its own in namespace \`notify\` (subscribed once the server said so), on a fresh"
    echo "  wsguard for each protocol; memory per connection as for the idle sockets (token from the main"
    echo "  wsguard). Targets: handshakes/s and saturated deliveries/s ≥ 0.9 × \`/connect\`'s,"
    echo "  ≤ 6 KiB per idle subscribed connection."
    echo "- **Centrifugo's protocol over HTTP streaming and SSE** (wsguard; the third table): the saturated"
    echo "  fan-out above with the members on emulated connections, \`POST /connection/http_stream\` (the"
    echo "  \`connect\` command as the body, one reply a line) or \`GET /connection/sse?cf_connect=…\` (one reply a"
    echo "  \`data:\` line), each subscribed by \`POST /emulation\` with \`{\"id\":2,\"subscribe\":…}\` (answered 204,"
    echo "  the reply down the stream), pings answered by posting \`{}\`; the publisher stays on"
    echo "  \`/connection/websocket\`, so publications come in the same way for every transport. Run right after"
    echo "  the WebSocket run of the same round. Idle subscribed connections as above (${IDLE_SUB_N}), over each"
    echo "  transport, each on a fresh wsguard. The generator reads each stream off its TCP connection in the"
    echo "  member's own task (its own HTTP/1.1 and chunked decoding), as a WebSocket member reads its socket."
    echo "- **Emulated commands** (wsguard): ${EMU_STREAMS} HTTP streams, each subscribed to a channel of its own in"
    echo "  \`bench-live\` (no history: the command's way is measured, not the store) and publishing to it by"
    echo "  \`POST /emulation\`, one command at a time each on a keep-alive connection of its own, ${EMU_S} s:"
    echo "  commands/s, latency from sending the POST to the publish reply arriving on the stream, the POST's"
    echo "  own time to its 204, the servers' CPU per command. On the one-node wsguard, and on the two-node"
    echo "  cluster with the streams on node A and the commands posted to A, then to B (which hands them to A"
    echo "  through Redis)."
    echo "- **The application's proxies** (wsguard only): the generator serves the application (hyper, keep-alive,"
    echo "  an answer without work) on 127.0.0.1:${APP_PORT}. 20 \`/connect\` sockets each subscribe to a channel of"
    echo "  their own and unsubscribe, again and again, in \`bench-proxied\` (the subscribe proxy decides) and in"
    echo "  \`bench-live\` (any user: a static rule), the latency to \`subscribed\`; 20 workers open \`/connect\` with a"
    echo "  session cookie and no token (the connect proxy admits) and with a token, the latency to the welcome;"
    echo "  ${PROXY_S} s a case, the four alternating twice."
    echo "- **Channel fan-out, 2 nodes** (wsguard only): the saturation case (${FAN_MEMBERS} members, window"
    echo "  ${FAN_WINDOW}, ${FANSAT_S} s) across two fresh wsguard nodes sharing a data folder (the signing key), a new"
    echo "  PostgreSQL schema and Redis (\`--broker-url\`, \`--cluster\` of their own). Members alternate"
    echo "  between the nodes and the publisher is on node A: every publication is stored in PostgreSQL and"
    echo "  reaches node B's members through Redis pub/sub. Deliveries/s counts the members of both"
    echo "  nodes and of each, latency is to the last member of either; CPU is both nodes'. Redis commands"
    echo "  per publication: the change of Redis's \`total_commands_processed\` (INFO stats, all its clients)"
    echo "  over the run ÷ publications; each command's calls are in the raw line."
    echo "  PostgreSQL and Redis run on this machine too, sharing its $(nproc) cores."
    echo "- **Recovery** (wsguard only): a subscriber on \`/connect\` follows a fresh channel of namespace"
    echo "  \`bench\` (history 2,000), closes, 1,000 publications are made and acked, and it reconnects"
    echo "  and subscribes with \`since\`: time from starting the reconnect (TCP, handshake, subscribe) to"
    echo "  the last missed publication, each checked once and in order; median of ${RECOVERY_REPEATS}. On the"
    echo "  one node (SQLite) and on node A of the two-node run (PostgreSQL)."
    echo "- **One sender's publish rate** (wsguard only): one socket publishes and awaits each ack before"
    echo "  the next, in turns of ${PUBLISH_S} s (two each): to a channel with history (numbered and stored),"
    echo "  to one without (\`history_size = 0\`: neither), and \`send\` to a chat room (numbered and stored)."
    echo "- **100 senders** (wsguard only, group commit): 100 sockets, each publishing to a channel of"
    echo "  its own in \`bench\` and awaiting each ack, in turns of ${PUBLISH_S} s with one of them alone (two"
    echo "  each); acked publications/s in total and ÷ the lone sender's. SQLite on the one node, PostgreSQL"
    echo "  on node A of the two-node run."
    echo
    echo "wsguard runs with \`--max-messages-per-sec 1000000 --max-sockets-per-user 100000"
    echo "--max-message-bytes 65536 --login-max-failures 1000000 --login-max-attempts-per-address 1000000"
    echo "--max-connections-per-address 1000000\`"
    echo "(the storm's 12 workers log in as one user from one address: it measures hashing, not the"
    echo "login throttle; the generator opens every connection from 127.0.0.1) and \`WSGUARD_LOG=warn\`;"
    echo "the baseline with \`--log-level warning\`."
    echo "Token micro-benchmarks (HS256, ES256 issue/verify; RS256 verify, RustCrypto and ring): \`cargo bench -p wsguard-bench\`."
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
