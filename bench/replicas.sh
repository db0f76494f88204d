#!/usr/bin/env bash
# Issue 9 benchmark: device check-ins per second (mutual TLS, the director
# poll) with 1, 2 and 3 replicas on one private PostgreSQL, as a ratio to the
# same run's 1-replica figure. Needs PostgreSQL's server binaries.
# Usage: bench/replicas.sh. PROFILE=dev for a quick run (default release).
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${PROFILE:-release}"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg), cores: $(nproc)" >&2
cargo run --quiet --profile "$profile" -p fleetward --example replica_checkins
