#!/usr/bin/env sh
# Device-identity benchmark (issue 3): enrolments/s and mutual-TLS handshakes/s
# on the device listener vs a plain rustls server, same key type, same run.
# Usage: bench/identity.sh [connections=2000] [concurrency=8] [enrolments=500]
# PROFILE=dev for a quick (unoptimised) run; default is release.
set -eu
cd "$(dirname "$0")/.."
profile="${PROFILE:-release}"
exec cargo run --quiet --profile "$profile" -p fleetward-server --example identity_bench -- "${1:-2000}" "${2:-8}" "${3:-500}"
