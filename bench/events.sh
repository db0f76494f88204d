#!/usr/bin/env bash
# Issue 8 benchmark: the security-event log at volume. Two programs:
#   crates/fleetward-server/examples/reports_bench.rs: device events over HTTPS
#     (mutual TLS, 256-report batches, each durable, chain kept) against plain
#     SQLite inserts of the same rows;
#   crates/fleetward-server/examples/events_bench.rs: appends in process, and
#     `verify` against `openssl dgst -sha256` of a file as large as the database.
#
#   goals: ingest >= 50,000 events/s (durable batches, chain kept);
#          `verify` >= 0.5 x `openssl dgst -sha256` of a file of the same size.
#
# Usage: bench/events.sh [EVENTS] [BATCH] [HTTPS_EVENTS] [CONNECTIONS]
# (default 10000000 10000 1000000 32). Needs openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
cargo build --release -p fleetward-server --example reports_bench --example events_bench
"${CARGO_TARGET_DIR:-target}"/release/examples/reports_bench "${3:-1000000}" "${4:-32}" "${4:-32}"
"${CARGO_TARGET_DIR:-target}"/release/examples/events_bench "${1:-10000000}" "${2:-10000}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
