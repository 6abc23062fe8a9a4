#!/usr/bin/env bash
# Side-by-side ANN benchmark: steerfeed's HnswIndex and hnswlib on the same .fvecs files,
# in the same run, single-thread queries, one query per call for steerfeed and one batch
# call on one thread for hnswlib (so no Python overhead is counted against it).
#
#   scripts/ann_compare.sh [N] [DIM] [SEED]        # default 200000 384 42
#   FILES=DIR scripts/ann_compare.sh               # use DIR/{base,query,gt}.{fvecs,ivecs}
#
# Environment: K (10), M (16), EFC (200), EFS ("16,24,32,48,64,96,128,256,512"),
# BUILD_THREADS (2), ALLOW ("0.01,0.1,0.5": filtered runs of steerfeed), TOPICS (39:
# steerfeed's base vectors carry topic i % TOPICS, partitioned by the index, and each
# query is also searched within one topic, an `only` topic of 1/TOPICS; 0 for none),
# QUERIES (1000 for synthetic sets), SPILL (0; 1: steerfeed's build spills its floats
# to an unnamed file beside the saved index and builds over it mapped, `--spill-dir`,
# for sets whose floats do not fit in memory beside the graph), VECTORS ("f32 int8": steerfeed's graph storages,
# each built, saved, read back and measured in turn: an int8 graph then maps its exact
# vectors from the file, as an engine that opens its index does), HNSWLIB (1; 0 skips
# hnswlib, for a set it cannot hold: it reads the whole base into memory, then copies it).
# steerfeed reads the base file row by row as it builds, so the build's own copy of the
# floats is the only one (at 10M × 384, 15.4 GB of them beside about 6.5 GB of int8 rows
# and links: more than this machine holds unless SPILL=1 makes that copy a mapped file;
# once saved and read back, an int8 index keeps about 5 GiB of arrays and maps the
# floats from its file).
# hnswlib is installed from PyPI into a virtualenv in the set-up cache (built from
# source with the machine's compiler, so it uses the same SIMD the CPU has).
set -euo pipefail
cd "$(dirname "$0")/.."

N="${1:-200000}"; DIM="${2:-384}"; SEED="${3:-42}"
K="${K:-10}"; M="${M:-16}"; EFC="${EFC:-200}"; EFS="${EFS:-16,24,32,48,64,96,128,256,512}"
BUILD_THREADS="${BUILD_THREADS:-2}"; ALLOW="${ALLOW:-0.01,0.1,0.5}"; QUERIES="${QUERIES:-1000}"
TOPICS="${TOPICS:-39}"
VECTORS="${VECTORS:-f32 int8}"
HNSWLIB="${HNSWLIB:-1}"
SPILL="${SPILL:-0}"
CACHE="${STEERFEED_CACHE:-${HOME:-/tmp}/.cache/steerfeed}"
VENV="$CACHE/bench-venv"

if [ "$HNSWLIB" != 0 ] && { [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import hnswlib, numpy' 2>/dev/null; }; then
  echo "ann_compare: installing hnswlib and numpy into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check numpy 'hnswlib==0.8.0'
fi

cargo build --release --quiet -p steerfeed-cli
BIN=./target/release/steerfeed

if [ -n "${FILES:-}" ]; then
  DIR="$FILES"
else
  DIR="$CACHE/ann-data/synthetic-$N-$DIM-$SEED-$QUERIES"
  if [ ! -f "$DIR/gt.ivecs" ]; then
    echo "ann_compare: writing the synthetic set to $DIR" >&2
    "$BIN" bench ann --synthetic "$N,$DIM,$SEED" --queries "$QUERIES" --k "$K" --write "$DIR"
  fi
fi

OUT="$(mktemp -d)"
SPILL_ARGS=()
if [ "$SPILL" = 1 ]; then SPILL_ARGS=(--spill-dir "$OUT"); fi
: > "$OUT/hnswlib.jsonl"
if [ "$HNSWLIB" != 0 ]; then
  echo "ann_compare: hnswlib" >&2
  "$VENV/bin/python" scripts/ann_compare.py "$DIR/base.fvecs" "$DIR/query.fvecs" "$DIR/gt.ivecs" \
    "$K" "$M" "$EFC" "$EFS" "$BUILD_THREADS" | tee "$OUT/hnswlib.jsonl"
fi
for vectors in $VECTORS; do
  echo "ann_compare: steerfeed ($vectors vectors)" >&2
  RUST_LOG=warn "$BIN" bench ann --base "$DIR/base.fvecs" --query "$DIR/query.fvecs" --gt "$DIR/gt.ivecs" \
    --k "$K" --m "$M" --ef-construction "$EFC" --ef "$EFS" --threads 1 --build-threads "$BUILD_THREADS" \
    --vectors "$vectors" --index-cache "$OUT/steerfeed-$vectors.hnsw" --topics "$TOPICS" \
    ${ALLOW:+--allow "$ALLOW"} "${SPILL_ARGS[@]}" | sed 's/^{/{"lib":"steerfeed",/' | tee -a "$OUT/steerfeed.jsonl"
done

python3 - "$OUT/hnswlib.jsonl" "$OUT/steerfeed.jsonl" <<'PY'
import json, sys
h = [json.loads(l) for l in open(sys.argv[1])]
s = [json.loads(l) for l in open(sys.argv[2])]
def qps_at(rows, target):
    """QPS at a recall target, interpolated linearly between the ef values around it."""
    rows = sorted(rows, key=lambda r: r["recall_at_k"])
    for lo, hi in zip(rows, rows[1:]):
        if lo["recall_at_k"] < target <= hi["recall_at_k"]:
            t = (target - lo["recall_at_k"]) / (hi["recall_at_k"] - lo["recall_at_k"])
            return lo["qps"] + t * (hi["qps"] - lo["qps"])
    best = [r for r in rows if r["recall_at_k"] >= target]
    if best and len({r["recall_at_k"] for r in best}) == 1 and len(best) > 2:
        # Every ef gives the same answer (a filtered search that scans): one
        # computation measured several times, so the median, not the luckiest run.
        q = sorted(r["qps"] for r in best)
        return q[len(q) // 2]
    return max(r["qps"] for r in best) if best else None
print()
print(f"n={s[0]['n']} dim={s[0]['dim']} k={s[0]['k']}, single-thread queries")
if h:
    print(f"hnswlib: build {h[0]['build_s']:.1f}s, memory {h[0]['index_bytes']/2**20:.0f} MiB (RSS growth)")
for vectors in dict.fromkeys(r["vectors"] for r in s):
    mine = [r for r in s if r["vectors"] == vectors]
    unf = [r for r in mine if r["allow"] == 1.0]
    print(f"steerfeed {vectors}: build {mine[0]['build_s']:.1f}s, memory {mine[0]['index_bytes']/2**20:.0f} MiB (arrays)"
          f" + {mine[0]['mapped_bytes']/2**20:.0f} MiB of vectors mapped from the file,"
          f" peak resident {mine[0]['peak_rss_bytes']/2**20:.0f} MiB (the build's)")
    for target in (0.95, 0.99):
        a, b = qps_at(h, target) if h else None, qps_at(unf, target)
        ratio = f"{b / a:.2f}x" if a and b else "n/a"
        print(f"  recall@{s[0]['k']} {target}: hnswlib {a and round(a)} qps, steerfeed {b and round(b)} qps -> {ratio}")
    base95 = qps_at(unf, 0.95)
    for share in sorted({r["allow"] for r in mine if r["allow"] < 1.0 and not r.get("topics")}):
        rows = [r for r in mine if r["allow"] == share and not r.get("topics")]
        q = qps_at(rows, 0.95)
        lat = f"{base95 / q:.2f}x the unfiltered latency" if q and base95 else "n/a"
        print(f"  allow {share:.0%}: {q and round(q)} qps at recall 0.95 -> {lat}")
    topic = [r for r in mine if r.get("topics")]
    if topic:
        for target in (0.95, 0.99):
            q, base = qps_at(topic, target), qps_at(unf, target)
            lat = f"{base / q:.2f}x the unfiltered latency" if q and base else "n/a"
            print(f"  only one topic of {topic[0]['topics']} ({topic[0]['allow']:.1%}): "
                  f"{q and round(q)} qps at recall {target} -> {lat}")
PY
rm -rf "$OUT"
