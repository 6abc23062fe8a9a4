#!/usr/bin/env bash
# Times `steerfeed serve` from start to a ready /readyz on an existing store (default: the
# one `scripts/loadtest.sh 100000 ...` built), after a clean stop or a kill -9. Loopback
# only; every step is bounded.
#
#   scripts/open_after_crash.sh clean              start, time to ready, SIGTERM
#   scripts/open_after_crash.sh crash UPLOADS DELETES
#       start, upload UPLOADS synthetic videos (PUT /v1/videos, 100 per request) and
#       delete DELETES demo videos (v0, v7, ...), kill -9, then start again and time it
#   scripts/open_after_crash.sh rebuild            remove the index file, time to ready
#
# Prints one JSON line per timed start; the engine's own account of the index ("vector
# index loaded loaded=.. replayed=.. ms=..", or "built") follows from the server log
# ($STORE/open-bench.log). Run `make build` first.
set -euo pipefail
MODE=${1:?clean, crash or rebuild}; UP=${2:-0}; DEL=${3:-0}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${STEERFEED_CACHE:-$HOME/.cache/steerfeed}
STORE=${LOADTEST_STORE:-$CACHE/loadtest/100000}
KEY=loadtest-key-0000000000
LOG="$STORE/open-bench.log"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
[ -d "$STORE/db" ] || { echo "no store at $STORE" >&2; exit 1; }

start() {
    STEERFEED__STORE__PATH="$STORE" STEERFEED__SERVER__BIND="127.0.0.1:$PORT" \
    STEERFEED__SERVER__API_KEYS="$KEY" RUST_LOG=warn,steerfeed=info,steerfeed_ann=info \
        "$ROOT/target/release/steerfeed" serve >>"$LOG" 2>&1 &
    SERVER=$!
    local t0 t1 i=0
    t0=$(date +%s.%N)
    until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do
        kill -0 $SERVER 2>/dev/null || { echo "the server exited; see $LOG" >&2; exit 1; }
        i=$((i + 1))
        [ $i -lt 36000 ] || { echo "not ready after an hour" >&2; kill -9 $SERVER; exit 1; }
        sleep 0.1
    done
    t1=$(date +%s.%N)
    READY=$(python3 -c "print(round($t1 - $t0, 2))")
}
stop() { kill -TERM $SERVER; wait $SERVER || true; }
report() {
    echo "{\"mode\": \"$MODE\", \"uploads\": $UP, \"deletes\": $DEL, \"ready_s\": $READY, \"load\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
}

echo "=== $MODE uploads=$UP deletes=$DEL $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$LOG"
case $MODE in
    clean) start; report; stop ;;
    rebuild) rm -f "$STORE/index.hnsw"; start; report; stop ;;
    crash)
        start
        python3 - "$PORT" "$KEY" "$UP" "$DEL" "crash$(date +%s)_" >&2 <<'PY'
import json, random, sys, time, urllib.request
port, key, n, d, prefix = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
rng = random.Random(7)
def req(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    with urllib.request.urlopen(r, timeout=60) as resp:
        return resp.status
t, batch = time.time(), []
for i in range(n):
    v = [rng.gauss(0, 1) for _ in range(384)]
    norm = sum(x * x for x in v) ** 0.5
    batch.append({"id": f"{prefix}{i}", "creator": "u1", "created_at": "2026-01-01T00:00:00Z",
                  "duration_s": 15.0, "topics": ["comedy"], "embedding": [round(x / norm, 6) for x in v]})
    if len(batch) == 100 or i == n - 1:
        req("PUT", "/v1/videos", {"videos": batch})
        batch = []
for i in range(d):
    req("DELETE", f"/v1/videos/v{i * 7}")
print(json.dumps({"uploaded": n, "deleted": d, "seconds": round(time.time() - t, 1)}))
PY
        kill -9 $SERVER
        wait $SERVER 2>/dev/null || true
        start; report; stop ;;
    *) echo "mode: clean, crash or rebuild" >&2; exit 2 ;;
esac
grep -a -E "vector index (loaded|built)" "$LOG" | sed 's/\x1b\[[0-9;]*m//g' | tail -1
