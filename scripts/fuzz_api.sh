#!/usr/bin/env bash
# The schema fuzz of the sidecar (`make fuzz-api`, part of `make test`): schemathesis
# generates requests from GET /openapi.json and sends them to the real `steerfeed serve`
# on a free loopback port with a temporary store; scripts/fuzz_api.py runs it and says
# what is checked.
#
#   scripts/fuzz_api.sh                      # cargo build (debug), then fuzz
#   FUZZ_BUILD=0 scripts/fuzz_api.sh         # the debug binary as it is
#   STEERFEED_BIN=target/release/steerfeed scripts/fuzz_api.sh
#
# Environment: FUZZ_EXAMPLES (examples per operation and phase, default 200), FUZZ_SEED
# (default 1: the same requests every run), FUZZ_MAX_TIME (seconds: fuzz until then
# instead of stopping after FUZZ_EXAMPLES), FUZZ_TIMEOUT (seconds, default 1200: the run
# fails past it). STEERFEED_SKIP_FUZZ=1 skips it, saying so; nothing else does.
#
# schemathesis comes from PyPI at the versions pinned with their sha256 in
# scripts/requirements-fuzz.txt (compiled from requirements-fuzz.in by pip-compile
# --generate-hashes), installed with `pip install --require-hashes` into a virtualenv
# under $STEERFEED_CACHE (default ~/.cache/steerfeed), or with `pip install --target`
# where `python3 -m venv` is not available.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'fuzz-api: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

if [ "${STEERFEED_SKIP_FUZZ:-0}" = 1 ]; then
  say "SKIPPED: STEERFEED_SKIP_FUZZ=1 (the schema fuzz of the API did not run)"
  exit 0
fi

command -v python3 >/dev/null \
  || die "python3 is required (or skip the fuzz with STEERFEED_SKIP_FUZZ=1)"

CACHE="${STEERFEED_CACHE:-${HOME:-/tmp}/.cache/steerfeed}"
REQ=scripts/requirements-fuzz.txt
sha_of() { python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"; }
# One environment per requirements file: a changed pin gets a new one.
ENV_DIR="$CACHE/fuzz-env-$(sha_of "$REQ" | cut -c1-16)"
PIP_FLAGS=(--quiet --disable-pip-version-check --no-input --root-user-action=ignore --require-hashes --no-deps --only-binary=:all: -r "$REQ")

if [ ! -f "$ENV_DIR/.complete" ]; then
  rm -rf "$ENV_DIR"
  mkdir -p "$CACHE"
  if python3 -m venv "$ENV_DIR" >/dev/null 2>&1; then
    say "installing schemathesis into $ENV_DIR (pinned with hashes: $REQ)"
    "$ENV_DIR/bin/python" -m pip install "${PIP_FLAGS[@]}" \
      || { rm -rf "$ENV_DIR"; die "pip could not install $REQ"; }
  else
    # No venv module (Debian's python3 without python3-venv): the same pins into a folder.
    rm -rf "$ENV_DIR"
    python3 -m pip --version >/dev/null 2>&1 || die "pip is required: install python3-pip"
    say "python3 -m venv is not available; installing schemathesis into $ENV_DIR/site"
    python3 -m pip install --target "$ENV_DIR/site" "${PIP_FLAGS[@]}" \
      || { rm -rf "$ENV_DIR"; die "pip could not install $REQ"; }
  fi
  touch "$ENV_DIR/.complete"
fi

if [ -x "$ENV_DIR/bin/python" ]; then
  PY="$ENV_DIR/bin/python"
else
  PY=python3
  export PYTHONPATH="$ENV_DIR/site${PYTHONPATH:+:$PYTHONPATH}"
fi

BIN="${STEERFEED_BIN:-}"
if [ -z "$BIN" ]; then
  # FUZZ_BUILD=0: the debug binary is current already (`make test` just built it).
  if [ "${FUZZ_BUILD:-1}" != 0 ]; then
    ${CARGO:-cargo} build --quiet -p steerfeed-cli --bin steerfeed
  fi
  TARGET_DIR="$(${CARGO:-cargo} metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
  BIN="$TARGET_DIR/debug/steerfeed"
fi
[ -x "$BIN" ] || die "no binary at $BIN"

scripts/setup.sh
exec "$PY" scripts/fuzz_api.py --bin "$BIN"
