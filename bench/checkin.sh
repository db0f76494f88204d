#!/usr/bin/env sh
# Device check-in benchmark (issue 6): devices polling the director over
# mutual TLS, keep-alive at 64 and 256 connections and with a new resumed
# TLS connection per check-in, each as a ratio to a bare axum + rustls
# endpoint with the same certificates, measured in the same run.
# Usage: bench/checkin.sh [seconds=10] [connections=64,256] [reconnect-concurrency=32]
# PROFILE=dev for a quick (unoptimised) run; default is release.
set -eu
cd "$(dirname "$0")/.."
profile="${PROFILE:-release}"
exec cargo run --quiet --profile "$profile" -p fleetward-server --example checkin_bench -- "${1:-10}" "${2:-64,256}" "${3:-32}"
