#!/usr/bin/env bash
# Faults under load: two wsguard nodes of one cluster on a private PostgreSQL and a private Redis
# (started here, on ports of their own, in temporary folders; the machine's shared PostgreSQL and
# Redis are never touched), under the soak's traffic (`wsguard-bench soak --node`: sockets spread
# over both nodes, chat and API publications checked at one observer per room, churn, expiring
# tokens, logins). During the run, one after the other, each lasting --outage seconds:
#   1. Redis stopped (SHUTDOWN NOSAVE), then started again (empty: no persistence);
#   2. PostgreSQL stopped (pg_ctl stop -m fast), then started again;
#   3. node B killed with SIGKILL, then started again on its port.
# Afterwards: every acknowledged publication delivered to its room's observer (node B's observers
# join again with `since`), node A's sockets undisturbed, node B's observers receiving node A's
# publications again, nothing going wrong outside the faults' windows, no ERROR logged outside them.
#
#   scripts/faults.sh              5 minutes, 4,000 sockets, faults at 75, 150 and 225 s
#   scripts/faults.sh --quick      2 minutes, 500 sockets, faults at 30, 60 and 90 s, 5 s each
#
# Options: --minutes N, --sockets N (they override --quick's), --rate N (chat publications/s, 20),
#          --api-rate N (API publications/s, 5), --churn N (10), --outage S (10), --grace S (a
#          fault's window lasts this long after its end, 20), --out FILE (default
#          bench/results/<date>-faults.md, or -faults-quick.md), --no-build, --note TEXT.
# Prints the report and writes it; exits non-zero when a check fails.
set -euo pipefail

ROOT=$(git rev-parse --show-toplevel)
cd "$ROOT"

QUICK=0; BUILD=1; MINUTES=; SOCKETS=; OUTAGE=; OUT=; NOTES=()
RATE=20; API_RATE=5; CHURN=10; GRACE=20; ROOMS=50
# A 60 s token: a 10 s database outage, during which no token can be refreshed, stays shorter
# than the margin the pool keeps (see the report's settings).
ACCESS_TTL=60s; EXPIRY_WARNING=20s; LOGIN_WINDOW=60s
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --no-build) BUILD=0 ;;
        --minutes) MINUTES=$2; shift ;;
        --sockets) SOCKETS=$2; shift ;;
        --rate) RATE=$2; shift ;;
        --api-rate) API_RATE=$2; shift ;;
        --churn) CHURN=$2; shift ;;
        --outage) OUTAGE=$2; shift ;;
        --grace) GRACE=$2; shift ;;
        --out) OUT=$2; shift ;;
        --note) NOTES+=("$2"); shift ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "faults.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
if [ "$QUICK" = 1 ]; then
    : "${MINUTES:=2}" "${SOCKETS:=500}" "${OUTAGE:=5}"; MODE=quick
else
    : "${MINUTES:=5}" "${SOCKETS:=4000}" "${OUTAGE:=10}"; MODE=full
fi
RUN_S=$(awk -v m="$MINUTES" 'BEGIN {printf "%d", m * 60}')
# Faults at a quarter, half and three quarters of the run: each gets its window and a quarter of
# the run to show it is over.
STEP=$((RUN_S / 4))
[ "$STEP" -gt $((OUTAGE + GRACE / 2)) ] ||
    { echo "faults.sh: --minutes too short for --outage $OUTAGE (faults every $STEP s)" >&2; exit 2; }
DATE=$(date +%F)
SUFFIX=; [ "$QUICK" = 0 ] || SUFFIX=-quick
[ -n "$OUT" ] || OUT="bench/results/$DATE-faults$SUFFIX.md"

log() { printf '[faults %s] %s\n' "$(date +%T)" "$*" >&2; }
ms() { date +%s%3N; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

NEEDED=$((SOCKETS * 2 + 2000))
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$NEEDED" ]; then
    log "ulimit -n is $(ulimit -n), $NEEDED are needed"; exit 1
fi
PGBIN=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
[ -x "$PGBIN/initdb" ] || { log "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin"; exit 1; }
command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
    { log "redis-server and redis-cli are needed"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/wsguard-faults.XXXXXX")
# initdb refuses root: as root, PostgreSQL runs as the postgres user, in a folder it owns.
PGROOT=$(mktemp -d "${TMPDIR:-/tmp}/wsguard-faults-pg.XXXXXX")
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" != 0 ] || chown postgres: "$PGROOT"
PG_PORT=$(free_port); REDIS_PORT=$(free_port); PORT_A=$(free_port); PORT_B=$(free_port)
PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/wsguard"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
FAULTS="$WORK/faults.log"
PID_A=; PID_B=; REDIS_PID=; GEN_PID=; PG_UP=0; KEEP_WORK=0
cleanup() {
    local pid
    for pid in $GEN_PID $PID_A $PID_B; do kill "$pid" 2>/dev/null || true; done
    for pid in $GEN_PID $PID_A $PID_B; do wait "$pid" 2>/dev/null || true; done
    [ -z "$REDIS_PID" ] || { kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; }
    [ "$PG_UP" = 0 ] || as_pg "$PGBIN/pg_ctl" -D "$PGROOT/data" -m immediate -w stop >/dev/null 2>&1 || true
    if [ "$KEEP_WORK" = 1 ]; then
        log "kept the logs in $WORK (PostgreSQL's in $PGROOT)"
    else
        rm -rf "$WORK" "$PGROOT"
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

# --- PostgreSQL and Redis, private ------------------------------------------------------------
pg_start() {
    as_pg "$PGBIN/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/postgres.log" -w -t 60 \
        -o "-p $PG_PORT -k $PGROOT -c listen_addresses=127.0.0.1" start >/dev/null
    PG_UP=1
}
pg_stop() { as_pg "$PGBIN/pg_ctl" -D "$PGROOT/data" -m fast -w -t 60 stop >/dev/null; PG_UP=0; }
redis_start() {
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$WORK" >>"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 1 100); do
        [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.1
    done
    log "redis-server did not answer"; return 1
}
log "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT ($PGROOT), Redis on :$REDIS_PORT"
as_pg "$PGBIN/initdb" -D "$PGROOT/data" -U postgres --auth=trust -E UTF8 --no-sync >"$WORK/initdb.log" 2>&1 ||
    { log "initdb failed:"; cat "$WORK/initdb.log" >&2; exit 1; }
pg_start
psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qAt -c 'CREATE DATABASE wsguard' >/dev/null
redis_start

# --- the nodes --------------------------------------------------------------------------------
DATA="$WORK/wsguard-data"
(cd "$WORK" && "$WSGUARD" demo --data-dir "$DATA" --database-url "$PG_URL" >"$WORK/demo.log" 2>&1) ||
    { log "wsguard demo failed:"; cat "$WORK/demo.log" >&2; exit 1; }
# The API key goes to the generator in a file of mode 0600, never on a command line.
(umask 077 && cd "$WORK" && "$WSGUARD" apikey add faults --scopes publish --data-dir "$DATA" \
    --database-url "$PG_URL" >"$WORK/api-key" 2>"$WORK/apikey.log") ||
    { log "wsguard apikey add failed:"; cat "$WORK/apikey.log" >&2; exit 1; }
# Both nodes share the data folder: the signing key the first start wrote.
NODE_ARGS=(--data-dir "$DATA" --database-url "$PG_URL" --broker-url "$REDIS_URL" --cluster faults
    --access-ttl "$ACCESS_TTL" --expiry-warning "$EXPIRY_WARNING" --login-window "$LOGIN_WINDOW"
    --max-sockets-per-user "$SOCKETS"
    --max-connections $((SOCKETS + 1000)) --max-connections-per-address $((SOCKETS + 1000)))
start_node() { # name port; sets STARTED_PID
    local name=$1 port=$2
    (cd "$WORK" && WSGUARD_LOG_FORMAT=json exec "$WSGUARD" serve --bind "127.0.0.1:$port" \
        "${NODE_ARGS[@]}" >"$WORK/$name.out" 2>"$WORK/$name.log") &
    STARTED_PID=$!
    for _ in $(seq 1 300); do
        grep -q '^wsguard listening on' "$WORK/$name.out" 2>/dev/null && return 0
        kill -0 "$STARTED_PID" 2>/dev/null || { log "$name exited:"; tail -n 5 "$WORK/$name.log" >&2; return 1; }
        sleep 0.1
    done
    log "$name did not start listening"; return 1
}
start_node node-a "$PORT_A"; PID_A=$STARTED_PID
start_node node-b "$PORT_B"; PID_B=$STARTED_PID
[ "$(readlink "/proc/$PID_A/exe")" = "$(readlink -f "$WSGUARD")" ] || { log "pid $PID_A is not wsguard"; exit 1; }
log "node A (pid $PID_A) on :$PORT_A, node B (pid $PID_B) on :$PORT_B"

# --- the soak, and the faults during it --------------------------------------------------------
GEN_ARGS=(soak --addr "127.0.0.1:$PORT_A" --node "127.0.0.1:$PORT_B" --pid "$PID_A"
    --duration "$RUN_S" --sockets "$SOCKETS" --rooms "$ROOMS" --rate "$RATE" --churn "$CHURN"
    --api-key-file "$WORK/api-key" --api-rate "$API_RATE" --faults "$FAULTS" --fault-grace "$GRACE"
    --drain 60)
: >"$FAULTS"
log "wsguard-bench ${GEN_ARGS[*]}"
STARTED=$(date +%s)
"$GEN" "${GEN_ARGS[@]}" >"$WORK/soak.json" 2>"$WORK/generator.log" &
GEN_PID=$!
until grep -q '^soak: run started' "$WORK/generator.log"; do
    kill -0 "$GEN_PID" 2>/dev/null || { log "the generator ended early:"; cat "$WORK/generator.log" >&2; KEEP_WORK=1; exit 1; }
    sleep 0.2
done
RUN_START_MS=$(ms)
log "$(grep '^soak: run started' "$WORK/generator.log")"
event() { echo "$(ms) $*" >>"$FAULTS"; log "fault: $*"; }
at() { # seconds after the run started: waits until then
    local left=$((RUN_START_MS + $1 * 1000 - $(ms)))
    [ "$left" -le 0 ] || sleep "$(awk -v l="$left" 'BEGIN {print l / 1000}')"
}
at "$STEP"
event redis-down
redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
wait "$REDIS_PID" 2>/dev/null || true; REDIS_PID=
sleep "$OUTAGE"
redis_start
event redis-up
at $((STEP * 2))
event postgres-down
pg_stop
sleep "$OUTAGE"
pg_start
event postgres-up
at $((STEP * 3))
event node-down 1
kill -KILL "$PID_B"
wait "$PID_B" 2>/dev/null || true; PID_B=
sleep "$OUTAGE"
mv "$WORK/node-b.log" "$WORK/node-b-killed.log"
start_node node-b "$PORT_B"; PID_B=$STARTED_PID
event node-up 1
GEN_RC=0
wait "$GEN_PID" || GEN_RC=$?
GEN_PID=
ELAPSED=$(( $(date +%s) - STARTED ))
LINE=$(tail -n 1 "$WORK/soak.json")
if [ "$GEN_RC" != 0 ] || ! jq -e '.checks' >/dev/null 2>&1 <<<"$LINE"; then
    log "the generator failed (exit $GEN_RC):"; cat "$WORK/soak.json" "$WORK/generator.log" >&2
    KEEP_WORK=1; exit 1
fi
for pid in $PID_A $PID_B; do kill -TERM "$pid"; wait "$pid" || true; done
PID_A=; PID_B=

# shellcheck source=scripts/faults-report.sh
. "$ROOT/scripts/faults-report.sh"
