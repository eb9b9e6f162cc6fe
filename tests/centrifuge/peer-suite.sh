#!/usr/bin/env bash
# centrifuge-js's own integration suite (the src/*.test.ts files of github.com/centrifugal/centrifuge-js,
# which its CI runs against Centrifugo at localhost:8000) against a real wsguard instead, to measure
# how much of Centrifugo's client protocol an unchanged SDK test suite finds wsguard to speak, and
# to find where wsguard's wire format departs from Centrifugo's. It is a measurement, not a gate.
# The suite's clients connect without a token (its Centrifugo runs with `client.insecure: true`);
# here they are admitted through wsguard's connect proxy (docs/protocol.md §10) by a small
# application, tests/centrifuge/peer-suite-app.mjs, which names every connection the user `suite`.
# The rest is measured as it is: protobuf, map and shared poll subscriptions,
# Centrifugo's server API at /api with a fixed key, and tokens signed with the suite's short secret
# are not served by wsguard (see tests/centrifuge/peer-suite.toml), so the tests that use them fail
# and the summary says by how much. Not part of scripts/test: it needs a checkout from GitHub and
# packages from npm, which CI has not.
#
#   git clone https://github.com/centrifugal/centrifuge-js /tmp/centrifuge-js   # any revision
#   cargo build --release -p wsguard
#   tests/centrifuge/peer-suite.sh /tmp/centrifuge-js [jest arguments, e.g. src/recovery.test.ts]
#
# It installs the checkout's devDependencies (yarn 1 from npm, with its yarn.lock, as its CI does;
# no install scripts, no browser downloads), starts the application on a free port of 127.0.0.1,
# then wsguard (WSGUARD_BIN, default target/release/wsguard) on 127.0.0.1:8000, which must be free
# since the suite names that port, with a copy of peer-suite.toml that gains
# `[proxy] connect = "http://127.0.0.1:<port>/connect"` and a new temporary data folder (wsguard
# generates its signing key there; no secret is built in here), runs jest in band, and prints
# N passed of M with each test that did not pass and the first line of its failure. Results
# (jest's JSON and log, wsguard's log, the config it ran with, the application's call count) stay
# in the temporary folder it names. Takes about 4 minutes: the tests of what wsguard does not serve
# wait out a 5 s timeout each.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CONFIG="$ROOT/tests/centrifuge/peer-suite.toml"
APP="$ROOT/tests/centrifuge/peer-suite-app.mjs"
BIN="${WSGUARD_BIN:-$ROOT/target/release/wsguard}"
PORT=8000

if [[ $# -lt 1 || ! -f "$1/package.json" ]]; then
  echo "usage: $0 CENTRIFUGE_JS_CHECKOUT [jest arguments]" >&2
  exit 2
fi
CJS="$(cd "$1" && pwd)"
shift
if ! grep -q '"name": "centrifuge"' "$CJS/package.json"; then
  echo "$CJS is not a centrifuge-js checkout (package.json does not name \"centrifuge\")" >&2
  exit 2
fi
if [[ ! -x "$BIN" ]]; then
  echo "no wsguard at $BIN: cargo build --release -p wsguard, or set WSGUARD_BIN" >&2
  exit 2
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "127.0.0.1:$PORT is taken; the suite connects to localhost:$PORT, so it must be free" >&2
  exit 2
fi

OUT="$(mktemp -d -t wsguard-peer-suite.XXXXXX)"
chmod 700 "$OUT"
WSGUARD_PID=""
APP_PID=""
cleanup() {
  if [[ -n "$WSGUARD_PID" ]]; then
    kill "$WSGUARD_PID" 2>/dev/null || true
    wait "$WSGUARD_PID" 2>/dev/null || true
  fi
  if [[ -n "$APP_PID" ]]; then
    kill "$APP_PID" 2>/dev/null || true
    wait "$APP_PID" 2>/dev/null || true
  fi
  rm -rf "$OUT/data"
}
trap cleanup EXIT

revision="$(git -C "$CJS" rev-parse HEAD 2>/dev/null || echo 'not a git checkout')"
version="$(node -p "require('$CJS/package.json').version")"
echo "== centrifuge-js $version at $revision ($CJS)"
echo "== wsguard: $("$BIN" --version) ($BIN)"

echo "== installing its devDependencies (yarn 1, frozen lockfile, no scripts)"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 PUPPETEER_SKIP_DOWNLOAD=1
(cd "$CJS" && npx --yes yarn@1.22.22 install --frozen-lockfile --ignore-scripts --non-interactive) \
  > "$OUT/install.log" 2>&1 || { tail -20 "$OUT/install.log" >&2; exit 1; }

echo "== starting the application (its connect proxy names every connection \`suite\`)"
node "$APP" > "$OUT/app.out" 2> "$OUT/app.log" &
APP_PID=$!
app_port=""
for _ in $(seq 100); do
  app_port="$(sed -n 's/^listening \([0-9]*\)$/\1/p' "$OUT/app.out")"
  if [[ -n "$app_port" ]]; then break; fi
  if ! kill -0 "$APP_PID" 2>/dev/null; then cat "$OUT/app.log" >&2; exit 1; fi
  sleep 0.1
done
if [[ -z "$app_port" ]]; then
  echo "the application did not start listening (see $OUT/app.log)" >&2
  exit 1
fi
cp "$CONFIG" "$OUT/wsguard.toml"
printf '\n# Added by peer-suite.sh: the application it started.\n[proxy]\nconnect = "http://127.0.0.1:%s/connect"\n' \
  "$app_port" >> "$OUT/wsguard.toml"
echo "== application on 127.0.0.1:$app_port; config $OUT/wsguard.toml"

echo "== starting wsguard on 127.0.0.1:$PORT (data folder $OUT/data)"
mkdir -m 700 "$OUT/data"
# Nothing of the caller's WSGUARD_* environment: the run is the config file and these flags.
mapfile -t unset_vars < <(compgen -e | grep '^WSGUARD_' | sed 's/^/-u/')
env "${unset_vars[@]}" "$BIN" --config "$OUT/wsguard.toml" serve --data-dir "$OUT/data" --bind "127.0.0.1:$PORT" \
  > "$OUT/wsguard.out" 2> "$OUT/wsguard.log" &
WSGUARD_PID=$!
for _ in $(seq 100); do
  if curl -fs "http://127.0.0.1:$PORT/readyz" > /dev/null 2>&1; then break; fi
  if ! kill -0 "$WSGUARD_PID" 2>/dev/null; then cat "$OUT/wsguard.log" >&2; exit 1; fi
  sleep 0.1
done
curl -fs "http://127.0.0.1:$PORT/readyz" > /dev/null

# Its CI runs `jest --detectOpenHandles --verbose`. Here: in band (one file at a time, in order,
# one core), and --forceExit instead of --detectOpenHandles, since the clients of failed tests
# keep reconnecting and would hold jest open for ever.
echo "== running its suite: jest --verbose --runInBand --forceExit $* (log: $OUT/jest.log)"
status=0
(cd "$CJS" && npx jest --verbose --runInBand --forceExit --json --outputFile="$OUT/results.json" "$@") \
  > "$OUT/jest.out" 2> "$OUT/jest.log" || status=$?
if [[ ! -s "$OUT/results.json" ]]; then
  tail -30 "$OUT/jest.log" >&2
  echo "jest wrote no results (exit $status)" >&2
  exit 1
fi

node - "$OUT/results.json" <<'JS'
const results = require(process.argv[2]);
const byFile = new Map();
const notPassed = [];
for (const file of results.testResults) {
  const name = file.name.replace(/^.*\/src\//, 'src/');
  const counts = byFile.get(name) || { passed: 0, failed: 0, skipped: 0 };
  for (const t of file.assertionResults) {
    if (t.status === 'passed') counts.passed++;
    else if (t.status === 'failed') counts.failed++;
    else counts.skipped++;
    if (t.status !== 'passed') {
      const first = (t.failureMessages[0] || '').split('\n').find((l) => l.trim()) || '';
      notPassed.push(`${t.status === 'failed' ? 'FAIL' : 'SKIP'}  ${name} › ${t.fullName}${first ? `: ${first.trim().slice(0, 160)}` : ''}`);
    }
  }
  if (file.assertionResults.length === 0 && file.message) {
    notPassed.push(`FAIL  ${name}: ${file.message.split('\n').find((l) => l.trim()).trim().slice(0, 160)}`);
  }
  byFile.set(name, counts);
}
console.log('\n== not passed');
for (const line of notPassed) console.log(line);
console.log('\n== per file: passed / failed / skipped');
for (const [name, c] of [...byFile].sort()) console.log(`${name}: ${c.passed} / ${c.failed} / ${c.skipped}`);
const total = results.numTotalTests;
console.log(`\n== ${results.numPassedTests} passed of ${total} (${results.numFailedTests} failed, ${results.numPendingTests + results.numTodoTests} skipped)`);
JS
kill "$APP_PID" 2>/dev/null || true
wait "$APP_PID" 2>/dev/null || true
APP_PID=""
echo "== application: $(grep '^connect calls' "$OUT/app.out" || echo 'no call count')"
echo "== results: $OUT (results.json, jest.log, wsguard.log, wsguard.toml, app.out)"
