#!/usr/bin/env bash
# Issue 8 benchmark: the security-event log at volume (see
# crates/fleetward-server/examples/events_bench.rs for what is measured).
#
#   goals: ingest >= 50,000 events/s (durable batches, chain kept);
#          `verify` >= 0.5 x `openssl dgst -sha256` of a file of the same size.
#
# Usage: bench/events.sh [EVENTS] [BATCH] (default 10000000 10000). Needs openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
cargo run --release -p fleetward-server --example events_bench -- "${1:-10000000}" "${2:-10000}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
