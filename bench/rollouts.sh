#!/usr/bin/env bash
# Issue 6 benchmark: create a rollout over DEVICES registered devices and
# assign phases (goal for 1,000,000: under 5 s, under 1 GiB RSS), against
# counting the same target set in the same run.
# Usage: bench/rollouts.sh [DEVICES] (default 1000000). PROFILE=dev for a quick
# run. BACKEND=postgres runs it on a private, durable PostgreSQL (issue 9).
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${PROFILE:-release}"
BACKEND="${BACKEND:-sqlite}"
source bench/lib/private-postgres.sh
WORK="$(mktemp -d)"
trap 'stop_private_postgres; rm -rf "$WORK"' EXIT
case "$BACKEND" in
    sqlite) ;;
    postgres)
        start_private_postgres "$WORK"
        export FLEETWARD_BENCH_DATABASE_URL="$PG_URL"
        ;;
    *) echo "BACKEND is sqlite or postgres, not $BACKEND" >&2; exit 2 ;;
esac
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
cargo run --quiet --profile "$profile" -p fleetward-store --example rollout_bench -- "${1:-1000000}"
