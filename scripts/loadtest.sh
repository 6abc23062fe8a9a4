#!/usr/bin/env bash
# Load test of the ranking sidecar: POST /v1/feed at a fixed concurrency for a bounded
# time on loopback, with wrk (installed from Debian's packages when missing).
#
#   scripts/loadtest.sh [VIDEOS] [CONCURRENCY] [SECONDS] [THREADS]
#   scripts/loadtest.sh 100000 16 30 2
#
# It builds the release binary, starts `steerfeed serve --demo` on a free loopback port
# with a store cached in $STEERFEED_CACHE/loadtest/<videos> (built once: a seeded world
# of VIDEOS videos and VIDEOS/10 users with synthetic embeddings, uploaded through the
# engine's upsert path; the server reports ready once the index's compactions settled,
# so the load meets a folded graph), waits until ready, runs wrk (random demo users,
# limit 20), prints requests/s, latency percentiles and the mean interest_ann stage time
# as JSON, and stops the server. LOADTEST_STORE=DIR uses an existing store instead (for
# example one `make bench-feed` built: users must be u0..u{VIDEOS/10-1}).
# LOADTEST_METRICS=FILE keeps the server's /metrics text after the run (per-stage times).
set -euo pipefail

VIDEOS=${1:-100000}
CONCURRENCY=${2:-16}
SECONDS_=${3:-30}
THREADS=${4:-2}
USERS=$(( VIDEOS / 10 > 100 ? VIDEOS / 10 : 100 ))
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${STEERFEED_CACHE:-$HOME/.cache/steerfeed}
STORE=${LOADTEST_STORE:-$CACHE/loadtest/$VIDEOS}
KEY=loadtest-key-0000000000
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')

if ! command -v wrk >/dev/null 2>&1; then
    echo "loadtest: installing wrk from the Debian packages" >&2
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq >&2 && apt-get install -y -qq wrk >&2
    else
        sudo apt-get update -qq >&2 && sudo apt-get install -y -qq wrk >&2
    fi
fi

make -C "$ROOT" -s build >&2
mkdir -p "$STORE"
LOG="$STORE/server.log"
STEERFEED__STORE__PATH="$STORE" \
STEERFEED__SERVER__BIND="127.0.0.1:$PORT" \
STEERFEED__SERVER__API_KEYS="$KEY" \
RUST_LOG=warn,steerfeed=info \
    "$ROOT/target/release/steerfeed" serve --demo --demo-videos "$VIDEOS" --demo-users "$USERS" \
    --demo-synthetic-embeddings >"$LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT

echo "loadtest: server pid $SERVER on port $PORT, store $STORE (log: $LOG); waiting until ready" >&2
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do
    if ! kill -0 $SERVER 2>/dev/null; then
        echo "loadtest: the server exited; see $LOG" >&2
        exit 1
    fi
    sleep 2
done

LUA=$(mktemp --suffix .lua)
cat >"$LUA" <<LUA
-- Each wrk thread draws its own seeded sequence of users (one shared seed would make
-- the threads ask for the same user at the same moment).
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
function init(args)
  math.randomseed(42 + (id or 0))
end
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer $KEY"
request = function()
  local body = '{"user": "u' .. math.random(0, $USERS - 1) .. '", "limit": 20}'
  return wrk.format("POST", "/v1/feed", nil, body)
end
done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    '{"videos": $VIDEOS, "users": $USERS, "concurrency": $CONCURRENCY, "seconds": $SECONDS_, '
    .. '"requests": %d, "requests_per_s": %.1f, "p50_ms": %.2f, "p90_ms": %.2f, '
    .. '"p99_ms": %.2f, "max_ms": %.2f, "errors": %d}\n',
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, errors))
end
LUA
echo "loadtest: wrk -t$THREADS -c$CONCURRENCY -d${SECONDS_}s" >&2
OUT=$(mktemp)
wrk -t"$THREADS" -c"$CONCURRENCY" -d"${SECONDS_}s" -s "$LUA" "http://127.0.0.1:$PORT/v1/feed" >"$OUT"
head -n -1 "$OUT" >&2
# The share of pages picked from a page pool ([pages]), from the server's metrics.
METRICS=$(curl -sf -H "authorization: Bearer $KEY" "http://127.0.0.1:$PORT/metrics" || true)
if [ -n "${LOADTEST_METRICS:-}" ]; then
    printf '%s\n' "$METRICS" >"$LOADTEST_METRICS"
fi
tail -n 1 "$OUT" | METRICS="$METRICS" python3 -c '
import json, os, re, sys
row = json.loads(sys.stdin.read())
def count(stage):
    m = re.search(r"steerfeed_stage_duration_seconds_count\{[^}]*stage=\"%s\"\} (\d+)" % stage, os.environ["METRICS"])
    return int(m.group(1)) if m else 0
ranked = count("context")
row["pooled_share"] = round(count("pool") / ranked, 3) if ranked else None
# Mean time of the interest_ann source per ranked request (the vector index search).
m = re.search(r"steerfeed_stage_duration_seconds_sum\{[^}]*stage=\"interest_ann\"\} ([0-9.e+-]+)", os.environ["METRICS"])
n = count("interest_ann")
row["interest_ann_ms"] = round(float(m.group(1)) / n * 1000, 3) if m and n else None
print(json.dumps(row))'
rm -f "$LUA" "$OUT"
