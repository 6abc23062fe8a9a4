#!/usr/bin/env bash
# `make cluster`: PostgreSQL, NATS JetStream, Redis and three `steerfeed serve` replicas on
# loopback, sharing one deployment loaded with the demo world; Ctrl-C stops everything.
#   - PostgreSQL from Debian's packages (scripts/setup.sh installs it when missing), a
#     throwaway cluster in $CLUSTER_DIR/pg on $PG_PORT;
#   - nats-server 2.15.1 (fetched by scripts/setup.sh), JetStream with every
#     acknowledged message fsynced, on $NATS_PORT;
#   - Redis from Debian's packages (scripts/setup.sh installs it when missing), nothing
#     kept on disk, on $REDIS_PORT;
#   - replicas on 127.0.0.1:$BASE_PORT+1..3, each with its own index directory; the
#     first loads the demo world (CLUSTER_DEMO=0: none; DEMO_ARGS adds `serve`'s demo
#     options, e.g. "--demo-videos 100000 --demo-synthetic-embeddings"), the others start
#     once it is ready.
# Everything lives in $CLUSTER_DIR (default target/cluster), emptied at every start.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER_DIR="${CLUSTER_DIR:-$PWD/target/cluster}"
PG_PORT="${PG_PORT:-55432}"
NATS_PORT="${NATS_PORT:-54222}"
REDIS_PORT="${REDIS_PORT:-56379}"
BASE_PORT="${BASE_PORT:-8080}"
REPLICAS="${REPLICAS:-3}"
DEV_KEY="${DEV_KEY:-dev-key-0000000000000000}"
CACHE="${STEERFEED_CACHE:-${HOME:-/tmp}/.cache/steerfeed}"
BIN=./target/release/steerfeed

say() { printf 'cluster: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

PG_BIN="${STEERFEED_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
[ -x "$PG_BIN/initdb" ] || die "PostgreSQL is not installed (scripts/setup.sh installs it)"
NATS="${STEERFEED_NATS_SERVER:-$CACHE/nats/nats-server}"
[ -x "$NATS" ] || die "$NATS is missing: run scripts/setup.sh"
REDIS="${STEERFEED_REDIS_SERVER:-$(command -v redis-server || true)}"
[ -n "$REDIS" ] && [ -x "$REDIS" ] || die "redis-server is not installed (scripts/setup.sh installs it)"

say "building steerfeed with the shared backend"
cargo build --release -q -p steerfeed-cli --features shared

PIDS=()
PG_DATA=""
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -z "$PG_DATA" ] || rm -rf "$PG_DATA"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Only a directory this script made (or none) is emptied.
if [ -e "$CLUSTER_DIR" ] && [ ! -e "$CLUSTER_DIR/.steerfeed-cluster" ]; then
  die "$CLUSTER_DIR exists and was not made by this script; set CLUSTER_DIR elsewhere"
fi
rm -rf "$CLUSTER_DIR"
mkdir -p "$CLUSTER_DIR"
touch "$CLUSTER_DIR/.steerfeed-cluster"
# The database lives under /tmp, which the server's user can reach whatever the
# checkout's parents allow.
PG_DATA=$(mktemp -d /tmp/steerfeed-cluster-pg.XXXXXX)
AS_PG=(env)
if [ "$(id -u)" = 0 ]; then
  # PostgreSQL refuses to run as root: as Debian's `postgres` user.
  AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups)
  chown postgres:postgres "$PG_DATA"
fi
"${AS_PG[@]}" "$PG_BIN/initdb" -D "$PG_DATA" -U steerfeed --auth=trust -E UTF8 \
  --no-instructions >"$CLUSTER_DIR/initdb.log" 2>&1 || die "initdb failed: $CLUSTER_DIR/initdb.log"
"${AS_PG[@]}" "$PG_BIN/postgres" -D "$PG_DATA" -p "$PG_PORT" \
  -c listen_addresses=127.0.0.1 -c unix_socket_directories= >"$CLUSTER_DIR/postgres.log" 2>&1 &
PIDS+=($!)
cat >"$CLUSTER_DIR/nats.conf" <<EOF
listen: 127.0.0.1:$NATS_PORT
# A batch of 10,000 events (the API's largest) is one message of a few MB.
max_payload: 8MB
jetstream {
  store_dir: "$CLUSTER_DIR/jetstream"
  sync_interval: always
}
EOF
"$NATS" -c "$CLUSTER_DIR/nats.conf" >"$CLUSTER_DIR/nats.log" 2>&1 &
PIDS+=($!)
mkdir -p "$CLUSTER_DIR/redis"
"$REDIS" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$CLUSTER_DIR/redis" --logfile "$CLUSTER_DIR/redis.log" >/dev/null 2>&1 &
PIDS+=($!)

wait_for() { # wait_for WHAT PID COMMAND...: until COMMAND succeeds, while PID lives
  local what="$1" pid="$2"; shift 2
  for _ in $(seq 1 600); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    kill -0 "$pid" 2>/dev/null || die "$what exited (logs in $CLUSTER_DIR)"
    sleep 0.5
  done
  die "$what did not start (logs in $CLUSTER_DIR)"
}
wait_for postgres "${PIDS[0]}" grep -q "ready to accept connections" "$CLUSTER_DIR/postgres.log"
wait_for nats-server "${PIDS[1]}" grep -q "Server is ready" "$CLUSTER_DIR/nats.log"
wait_for redis-server "${PIDS[2]}" grep -q "Ready to accept connections" "$CLUSTER_DIR/redis.log"

export STEERFEED__SHARED__POSTGRES_URL="postgres://steerfeed@127.0.0.1:$PG_PORT/postgres"
export STEERFEED__SHARED__NATS_URL="nats://127.0.0.1:$NATS_PORT"
export STEERFEED__SHARED__REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
export STEERFEED__SERVER__API_KEYS="$DEV_KEY"
export STEERFEED__SHARED__SNAPSHOT_DIR="$CLUSTER_DIR/snapshots"

replica() { # replica N [serve args...]
  local n="$1"; shift
  STEERFEED__SERVER__BIND="127.0.0.1:$((BASE_PORT + n))" \
  STEERFEED__STORE__PATH="$CLUSTER_DIR/replica$n" \
    "$BIN" serve "$@" >"$CLUSTER_DIR/replica$n.log" 2>&1 &
  PIDS+=($!)
  wait_for "replica $n" "$!" curl -sf "http://127.0.0.1:$((BASE_PORT + n))/readyz"
  say "replica $n ready on 127.0.0.1:$((BASE_PORT + n))"
}
if [ "${CLUSTER_DEMO:-1}" = 1 ]; then
  say "replica 1 loads the demo world (embedding its captions takes a minute)"
  # shellcheck disable=SC2086
  replica 1 --demo ${DEMO_ARGS:-}
else
  replica 1
fi
for n in $(seq 2 "$REPLICAS"); do replica "$n"; done

A="http://127.0.0.1:$((BASE_PORT + 1))"
B="http://127.0.0.1:$((BASE_PORT + 2))"
H="-H 'authorization: Bearer $DEV_KEY' -H 'content-type: application/json'"
cat <<EOF

$REPLICAS replicas share PostgreSQL (127.0.0.1:$PG_PORT), NATS (127.0.0.1:$NATS_PORT) and
Redis (127.0.0.1:$REDIS_PORT).
Logs and data: $CLUSTER_DIR. Any replica serves any user; try a write on one and a
feed on another:
  curl -s $H -X POST $A/v1/users/u7/consent/revocations -d '{"video": "v42"}'
  curl -s $H -X POST $B/v1/feed -d '{"user": "u1", "limit": 5}'
  curl -s $H -X PUT $B/v1/users/u1/preferences -d '{"text": "more cooking, no politics"}'
  curl -s $H -X POST $A/v1/feed -d '{"user": "u1", "limit": 5}'
Ctrl-C stops the replicas and the servers.
EOF
wait
