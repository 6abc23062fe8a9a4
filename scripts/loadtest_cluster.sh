#!/usr/bin/env bash
# Feed throughput of N replicas of the shared backend on this machine, against the same
# demo world: `scripts/loadtest_cluster.sh [REPLICAS] [VIDEOS] [CONCURRENCY] [SECONDS]`.
# Starts `scripts/cluster.sh` (PostgreSQL, NATS, Redis, REPLICAS replicas; the first loads a
# demo world of VIDEOS videos with synthetic embeddings and VIDEOS/10 users), then runs
# one wrk per replica at once, CONCURRENCY split between them, random users, and prints
# one JSON line: requests/s summed over the replicas and the worst replica's latencies.
set -euo pipefail
cd "$(dirname "$0")/.."

REPLICAS=${1:-2}
VIDEOS=${2:-3000}
CONCURRENCY=${3:-8}
SECONDS_=${4:-30}
USERS=$(( VIDEOS / 10 > 100 ? VIDEOS / 10 : 100 ))
KEY=loadtest-key-0000000000
BASE_PORT=${BASE_PORT:-8380}
DIR=${CLUSTER_DIR:-$PWD/target/loadtest-cluster}

command -v wrk >/dev/null 2>&1 || { apt-get install -y -qq wrk >&2 || sudo apt-get install -y -qq wrk >&2; }

LOG=$(mktemp)
LUA=$(mktemp --suffix .lua)
OUTS=()
REPLICAS=$REPLICAS BASE_PORT=$BASE_PORT DEV_KEY=$KEY CLUSTER_DIR=$DIR \
  DEMO_ARGS="--demo-videos $VIDEOS --demo-users $USERS --demo-synthetic-embeddings" \
  RUST_LOG=warn scripts/cluster.sh >"$LOG" 2>&1 &
CLUSTER=$!
trap 'kill $CLUSTER 2>/dev/null || true; wait $CLUSTER 2>/dev/null || true; rm -f "$LOG" "$LUA" "${OUTS[@]}"' EXIT
until grep -q "Ctrl-C stops" "$LOG"; do
  kill -0 $CLUSTER 2>/dev/null || { cat "$LOG" >&2; exit 1; }
  sleep 2
done

cat >"$LUA" <<LUA
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
function init(args)
  math.randomseed(42 + (id or 0) + 1000 * tonumber(args[1] or 0))
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
  io.write(string.format('{"requests_per_s": %.1f, "p50_ms": %.2f, "p99_ms": %.2f, "errors": %d}\n',
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, errors))
end
LUA
PER=$(( CONCURRENCY / REPLICAS > 0 ? CONCURRENCY / REPLICAS : 1 ))
WRKS=()
for n in $(seq 1 "$REPLICAS"); do
  OUT=$(mktemp); OUTS+=("$OUT")
  wrk -t1 -c"$PER" -d"${SECONDS_}s" -s "$LUA" "http://127.0.0.1:$((BASE_PORT + n))/v1/feed" -- "$n" >"$OUT" &
  WRKS+=($!)
done
for w in "${WRKS[@]}"; do wait "$w" || { echo "loadtest_cluster: wrk failed" >&2; exit 1; }; done
for o in "${OUTS[@]}"; do tail -n 1 "$o"; done | REPLICAS=$REPLICAS VIDEOS=$VIDEOS CONC=$((PER * REPLICAS)) python3 -c '
import json, os, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
print(json.dumps({"replicas": int(os.environ["REPLICAS"]), "videos": int(os.environ["VIDEOS"]),
  "concurrency": int(os.environ["CONC"]),
  "requests_per_s": round(sum(r["requests_per_s"] for r in rows), 1),
  "p50_ms": max(r["p50_ms"] for r in rows), "p99_ms": max(r["p99_ms"] for r in rows),
  "errors": sum(r["errors"] for r in rows)}))'
