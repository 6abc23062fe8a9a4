#!/usr/bin/env bash
# Bulk export, import and backup on the demo world of scripts/loadtest.sh (VIDEOS videos,
# VIDEOS/10 users, their events), with the release binary, offline (the sidecar stopped):
#
#   scripts/bench_transfer.sh [VIDEOS]
#
# 1. `steerfeed export` of every record (embeddings included) to a JSON Lines file;
# 2. `steerfeed import` of that file's users and videos, then of its events alone, into
#    a new store (events per second is the second import's rate: the clock stops when
#    the engine has closed, its derived state written out);
# 3. `steerfeed backup --url` through a sidecar serving the demo store, against `cp -a`
#    of the same directory followed by `sync` (the backup syncs every file it writes),
#    three rounds alternating, on the same disk; and once offline, the engine's open
#    included.
# It prints one JSON object. The demo store is built by scripts/loadtest.sh the first
# time (cached in $STEERFEED_CACHE/loadtest/<videos>); this script only reads it.
set -euo pipefail

VIDEOS=${1:-100000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${STEERFEED_CACHE:-$HOME/.cache/steerfeed}
STORE=$CACHE/loadtest/$VIDEOS
BIN=$ROOT/target/release/steerfeed
WORK=$(mktemp -d "${TMPDIR:-/tmp}/steerfeed-transfer-XXXXXX")
trap 'rm -rf "$WORK"' EXIT

if [ ! -d "$STORE/db" ]; then
    echo "bench-transfer: building the demo store with scripts/loadtest.sh" >&2
    "$ROOT/scripts/loadtest.sh" "$VIDEOS" 4 2 1 >/dev/null
fi
make -C "$ROOT" -s build >&2

now() { date +%s.%N; }
secs() { python3 -c "print(round($2 - $1, 3))"; }

# The demo store is copied so that nothing here writes to the cache.
cp -a "$STORE" "$WORK/src"
export RUST_LOG=warn

t0=$(now)
STEERFEED__STORE__PATH=$WORK/src "$BIN" export --embeddings --out "$WORK/all.jsonl" 2>"$WORK/export.err"
t1=$(now)
records=$(wc -l < "$WORK/all.jsonl")
grep -v '"record":"event"' "$WORK/all.jsonl" > "$WORK/catalog.jsonl"
grep '"record":"event"' "$WORK/all.jsonl" > "$WORK/events.jsonl"
events=$(wc -l < "$WORK/events.jsonl")

t2=$(now)
STEERFEED__STORE__PATH=$WORK/dst "$BIN" import "$WORK/catalog.jsonl" > "$WORK/catalog.out"
t3=$(now)
STEERFEED__STORE__PATH=$WORK/dst "$BIN" import "$WORK/events.jsonl" > "$WORK/events.out"
t4=$(now)

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
STEERFEED__STORE__PATH=$WORK/src STEERFEED__SERVER__BIND=127.0.0.1:$PORT "$BIN" serve >"$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do sleep 0.5; done
CP=(); BACKUP=(); HELD=()
for round in 1 2 3; do
    sync
    a=$(now); cp -a "$WORK/src" "$WORK/cp"; sync; b=$(now)
    CP+=("$(secs "$a" "$b")"); rm -rf "$WORK/cp"; sync
    a=$(now); "$BIN" backup "$WORK/backup$round" --url "http://127.0.0.1:$PORT" > "$WORK/backup.out"; b=$(now)
    BACKUP+=("$(secs "$a" "$b")"); rm -rf "$WORK/backup$round"
    HELD+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["writes_held_ms"])' "$WORK/backup.out")")
done
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
sync
t7=$(now)
STEERFEED__STORE__PATH=$WORK/src "$BIN" backup "$WORK/offline" > "$WORK/offline.out"
t8=$(now)
bytes=$(du -sb "$WORK/src" | cut -f1)

python3 - "$WORK" <<EOF
import json, sys
work = sys.argv[1]
ev = json.load(open(f"{work}/events.out"))
cat = json.load(open(f"{work}/catalog.out"))
out = {
    "videos": $VIDEOS,
    "records": $records,
    "events": $events,
    "store_bytes": $bytes,
    "export_s": $(secs "$t0" "$t1"),
    "export_records_per_s": round($records / max($(secs "$t0" "$t1"), 1e-9)),
    "import_catalog_s": $(secs "$t2" "$t3"),
    "import_catalog_rejected": cat["rejected"],
    "import_events_s": $(secs "$t3" "$t4"),
    "import_events_per_s": round($events / max($(secs "$t3" "$t4"), 1e-9)),
    "import_events_rejected": ev["rejected"],
    "cp_a_sync_s": [${CP[0]}, ${CP[1]}, ${CP[2]}],
    "backup_through_sidecar_s": [${BACKUP[0]}, ${BACKUP[1]}, ${BACKUP[2]}],
    "backup_writes_held_ms": [${HELD[0]}, ${HELD[1]}, ${HELD[2]}],
    "backup_offline_with_open_s": $(secs "$t7" "$t8"),
}
out["backup_over_cp"] = [round(b / max(c, 1e-9), 2) for b, c in zip(out["backup_through_sidecar_s"], out["cp_a_sync_s"])]
print(json.dumps(out, indent=2))
EOF
