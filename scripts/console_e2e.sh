#!/usr/bin/env bash
# The operator console end to end (`make test-console`, part of `make test`): the real
# `steerfeed serve` on a free loopback port with a temporary store, driven in headless
# Chromium by tests/console/console.test.mjs. Screenshots of every step land in
# target/console-e2e (CONSOLE_ARTIFACTS).
#
#   scripts/console_e2e.sh                          # the debug binary the tests built
#   STEERFEED_BIN=target/release/steerfeed scripts/console_e2e.sh
#   scripts/console_e2e.sh --setup-only             # only install what it needs
#
# What it needs, set up here when missing: Debian's chromium (and chromium-driver, the
# same build's driver) from apt, as root or with password-less sudo; playwright-core at
# the version and integrity pinned in tests/console/package-lock.json, with `npm ci`
# (it drives the system browser: no browser download). STEERFEED_SKIP_CONSOLE=1 skips
# the test, saying so; nothing else does.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'console-e2e: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

if [ "${STEERFEED_SKIP_CONSOLE:-0}" = 1 ]; then
  say "SKIPPED: STEERFEED_SKIP_CONSOLE=1 (the console's browser test did not run)"
  exit 0
fi

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=(); elif sudo -n true 2>/dev/null; then SUDO=(sudo -n); else
    die "$CHROMIUM is missing and apt needs root: apt-get install chromium chromium-driver (or STEERFEED_SKIP_CONSOLE=1)"
  fi
  say "installing Debian's chromium and chromium-driver"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get install -y -q chromium chromium-driver >/dev/null \
    || { "${SUDO[@]}" apt-get update -q >/dev/null && "${SUDO[@]}" apt-get install -y -q chromium chromium-driver >/dev/null; } \
    || die "apt-get could not install chromium"
fi

command -v node >/dev/null || die "node is required (Node.js 20)"
DIR=tests/console
STAMP="$DIR/node_modules/.lock-sha256"
LOCK_SHA="$(sha256sum "$DIR/package-lock.json" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$LOCK_SHA" ]; then
  say "installing playwright-core as pinned in $DIR/package-lock.json"
  (cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"
  echo "$LOCK_SHA" > "$STAMP"
fi

# `--setup-only`: the browser and the driver, for the console's bench.
[ "${1:-}" = --setup-only ] && exit 0

BIN="${STEERFEED_BIN:-target/debug/steerfeed}"
[ -x "$BIN" ] || die "$BIN is missing: cargo build -p steerfeed-cli first"
export STEERFEED_BIN="$BIN" CHROMIUM
exec timeout "${CONSOLE_TIMEOUT:-900}" node --test "$DIR/console.test.mjs"
