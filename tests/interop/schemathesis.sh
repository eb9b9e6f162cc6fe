#!/usr/bin/env bash
# API fuzzing: schemathesis generates requests from /openapi.json against a real wsguard (demo
# users, a throwaway data folder) and fails on any 5xx or any response the description does not
# allow. Bounded: a few examples per operation and a time budget, so CI stays under two minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${WSGUARD_BIN:-$PWD/target/debug/wsguard}
SCHEMATHESIS=${SCHEMATHESIS:-$PWD/.venv/bin/schemathesis}

DATA=$(mktemp -d)
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$DATA"
}
trap cleanup EXIT

"$BIN" demo --data-dir "$DATA" >/dev/null
# A server-API key with the backends' scopes, for the /api operations; one with the admin scope for
# the admin API's (/api/admin/*), named so that a made-up name is unlikely to revoke it.
KEY=$("$BIN" apikey add fuzz --scopes publish,disconnect,read --data-dir "$DATA" 2>/dev/null)
ADMIN_KEY=$("$BIN" apikey add "fuzz-admin-$RANDOM$RANDOM" --scopes admin --data-dir "$DATA" 2>/dev/null)
# A big hash queue: schemathesis logs in with random credentials, each one a hash on 2 cores. A big
# API budget: the fuzzer calls faster than a backend would (429 is described, but tests nothing).
coproc SERVER { exec "$BIN" serve --bind 127.0.0.1:0 --data-dir "$DATA" --hash-queue 4096 \
    --api-requests-per-sec 100000 --api-burst 100000 2>"$DATA/server.log"; }
SERVER_PID=$SERVER_PID
read -r line <&"${SERVER[0]}"
BASE=${line#wsguard listening on }
[[ $BASE == http://* ]] || { echo "server did not start: $line" >&2; cat "$DATA/server.log" >&2; exit 1; }

TOKEN=$(curl -fsS -X POST "$BASE/token" -d 'username=johndoe&password=secret' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')

# The token and the key reach schemathesis through its argv only (not logged). /logout and a
# password change revoke the token: they get a run of their own, after the one that needs the token
# alive. The server APIs (/api/*, and Centrifugo's /centrifugo/api/*) take API keys, not users'
# tokens: a run of their own with the key.
# One worker: with two, hypothesis parses lambdas' sources (ast.parse) from both threads at once,
# which CPython 3.11.7 does not always survive ("AST constructor recursion depth mismatch"): a
# crash of the tool, not a finding.
fuzz() { # bearer, max-time, examples, schemathesis args...
    local bearer=$1 max_time=$2 examples=$3
    shift 3
    # From the throwaway folder: schemathesis keeps a cache in its working directory.
    (cd "$DATA" && "$SCHEMATHESIS" run "$BASE/openapi.json" \
        --checks not_a_server_error,response_schema_conformance${EXTRA_CHECKS:+,$EXTRA_CHECKS} \
        --header "Authorization: Bearer $bearer" \
        --max-examples "$examples" --max-time "$max_time" --workers 1 --seed "${SCHEMATHESIS_SEED:-1}" \
        --generation-database none --request-timeout 20 --no-color --output-sanitize true "$@")
}
fuzz "$TOKEN" "${SCHEMATHESIS_MAX_TIME:-60}" 25 --exclude-path /logout --exclude-path /users/me/password \
    --exclude-path-regex '^/(api|centrifugo/api)/'
# Centrifugo's API reads X-API-Key first, which schemathesis would otherwise fill with a made-up key.
fuzz "$KEY" 20 25 --include-path-regex '^/(api|centrifugo/api)/' --exclude-path-regex '^/api/admin/' \
    --header "X-API-Key: $KEY"
fuzz "$TOKEN" 20 10 --include-path /logout --include-path /users/me/password
# Last: the admin API may disconnect and revoke the users and keys it makes up.
fuzz "$ADMIN_KEY" 20 25 --include-path-regex '^/api/admin/'
