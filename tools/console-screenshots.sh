#!/usr/bin/env bash
# Screenshots of the web console for the README: starts `fleetward demo
# --keep` (a real server, a simulated fleet, releases, rollouts, events),
# drives Debian's Chromium through the main pages with
# tools/console-browser/screenshots.mjs, then stops the demo.
#
# Usage: tools/console-screenshots.sh [OUT_DIR]   (default docs/screenshots)
#   FLEETWARD_BIN=path/to/fleetward   use this binary instead of building one
#   FLEETWARD_CHROMIUM=path           another Chromium (default /usr/bin/chromium)
# Needs node and npm (playwright-core is installed from the lock file) and
# Chromium (apt-get install chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${1:-docs/screenshots}"
if [ -z "${FLEETWARD_BIN:-}" ]; then
    cargo build --release -p fleetward >&2
    FLEETWARD_BIN="$PWD/target/release/fleetward"
fi
if [ ! -f tools/console-browser/node_modules/playwright-core/package.json ]; then
    npm ci --prefix tools/console-browser --no-audit --no-fund >&2
fi

LOG="$(mktemp)"
WORK="$(mktemp -d)"
# The demo works in its own temporary dir; run it from another so nothing
# lands in the checkout.
(cd "$WORK" && exec "$FLEETWARD_BIN" demo --keep) >"$LOG" 2>&1 &
DEMO=$!
cleanup() {
    kill "$DEMO" 2>/dev/null || true
    wait "$DEMO" 2>/dev/null || true
    rm -rf "$LOG" "$WORK"
}
trap cleanup EXIT

echo "== waiting for the demo to finish its loop (a minute or two)" >&2
line=""
for _ in $(seq 1 900); do
    line="$(grep -m1 'export FLEETWARD_SERVER=' "$LOG" || true)"
    [ -n "$line" ] && break
    if ! kill -0 "$DEMO" 2>/dev/null; then
        cat "$LOG" >&2
        echo "the demo stopped before it was ready" >&2
        exit 1
    fi
    sleep 1
done
[ -n "$line" ] || { cat "$LOG" >&2; echo "the demo never got ready" >&2; exit 1; }
server="$(sed -n 's/.*FLEETWARD_SERVER=\([^ ]*\).*/\1/p' <<<"$line")"
token="$(sed -n 's/.*FLEETWARD_TOKEN=\([^ ]*\).*/\1/p' <<<"$line")"

FLEETWARD_CONSOLE="$server" FLEETWARD_TOKEN="$token" \
    node tools/console-browser/screenshots.mjs "$OUT"
