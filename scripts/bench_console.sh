#!/usr/bin/env bash
# How long the console's person view takes to render in headless Chromium, on the demo
# world: the release sidecar on a copy of the store `scripts/loadtest.sh VIDEOS` builds
# (or LOADTEST_STORE=DIR, users u0..u{VIDEOS/10-1}), then tests/console/bench.mjs over
# SAMPLES people (default 40). One JSON object on stdout.
#
#   scripts/bench_console.sh [VIDEOS]
set -euo pipefail
VIDEOS=${1:-100000}
USERS=$(( VIDEOS / 10 > 100 ? VIDEOS / 10 : 100 ))
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${STEERFEED_CACHE:-$HOME/.cache/steerfeed}
SOURCE=${LOADTEST_STORE:-$CACHE/loadtest/$VIDEOS}
[ -d "$SOURCE" ] || { echo "bench-console: no store at $SOURCE: run scripts/loadtest.sh $VIDEOS first" >&2; exit 1; }
KEY=bench-console-key-000000000
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
make -C "$ROOT" -s build >&2
STEERFEED_SKIP_CONSOLE=0 "$ROOT/scripts/console_e2e.sh" --setup-only >&2
WORK=$(mktemp -d)
cp -a "$SOURCE" "$WORK/store"
STEERFEED__STORE__PATH="$WORK/store" STEERFEED__SERVER__BIND="127.0.0.1:$PORT" \
  STEERFEED__SERVER__API_KEYS="$KEY" RUST_LOG=warn "$ROOT/target/release/steerfeed" serve >&2 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do
  kill -0 $PID 2>/dev/null || { echo "bench-console: the sidecar exited" >&2; exit 1; }
  sleep 1
done
BASE="http://127.0.0.1:$PORT" KEY=$KEY USERS=$USERS node "$ROOT/tests/console/bench.mjs"
