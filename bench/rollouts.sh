#!/usr/bin/env bash
# Issue 6 benchmark: create a rollout over DEVICES registered devices in
# SQLite and assign phases (goal for 1,000,000: under 5 s, under 1 GiB RSS),
# against counting the same target set in the same run.
# Usage: bench/rollouts.sh [DEVICES] (default 1000000). PROFILE=dev for a quick run.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${PROFILE:-release}"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
cargo run --quiet --profile "$profile" -p fleetward-store --example rollout_bench -- "${1:-1000000}"
