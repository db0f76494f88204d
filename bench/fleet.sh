#!/usr/bin/env bash
# Device agent and fleet simulator benchmark (issue 7). One command:
#   bench/fleet.sh [devices=10000] [image-MiB=256]
# Measures, in one run:
#   - the agent binary's size (profile `agent`, stripped);
#   - one real update by the agent binary over mutual TLS (verify metadata, stream the image into
#     slot B with SHA-256 on the way, switch): wall time and peak RSS, and the hashing throughput of the
#     agent's own code, each against `openssl dgst -sha256` on the same file;
#   - the simulator: N agents in one process (own keys, full verification, in-memory slots) polling a
#     real server, as polls/s against bare mutual-TLS GET /device/v1/self requests at the same
#     concurrency.
# Prints a Markdown section for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
devices=${1:-10000}
mib=${2:-256}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
target=${CARGO_TARGET_DIR:-target}

cargo build -q -p fleetward-agent --bin fleetward-agent --profile agent
agent="$target/agent/fleetward-agent"
cargo build -q -p fleetward-agent --example fleet_bench ${BENCH_PROFILE:+--profile "$BENCH_PROFILE"}
example="$target/${BENCH_PROFILE:-debug}/examples/fleet_bench"
size=$(stat -c %s "$agent")

load=$(cut -d' ' -f1 /proc/loadavg)
coproc DRIVER { "$example" "$devices" "$mib" "$out"; }
read -r ready <&"${DRIVER[0]}"
[ "$ready" = READY ] || { echo "driver failed"; exit 1; }

secs() { /usr/bin/time -f %e "$@" 2>&1 >/dev/null | tail -1; }
openssl_s=$(secs openssl dgst -sha256 "$out/image.bin")
hash_s=$(secs "$agent" hash "$out/image.bin")
/usr/bin/time -v "$agent" --config "$out/agent.toml" check >"$out/check.out" 2>"$out/check.err"
grep -q RebootRequired "$out/check.out" || { cat "$out/check.out" "$out/check.err"; exit 1; }
rss_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out/check.err")
update_s=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$out/check.err" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
slot_bytes=$(stat -c %s "$(cat "$out/slot-b.path")")
echo >&"${DRIVER[1]}"
wait "$DRIVER_PID" || true

python3 - "$out/sim.json" <<PY
import json, sys
sim = json.load(open(sys.argv[1]))
mib = $mib
size = $size
print("## Device agent and fleet simulator (issue 7)\n")
print("How: \`bench/fleet.sh $devices $mib\` (agent: profile \`agent\`; server and simulator: profile ${BENCH_PROFILE:-dev}). Load average before the run: $load.\n")
print("| measurement | result | baseline (same run) | ratio | goal |")
print("|---|---|---|---|---|")
print(f"| agent binary, stripped | {size/1048576:.2f} MiB | | | ≤ 4 MiB |")
print(f"| SHA-256 of the {mib} MiB image, agent code | {mib/$hash_s:.0f} MiB/s | openssl dgst -sha256 {mib/$openssl_s:.0f} MiB/s | {$openssl_s/$hash_s:.2f} | ≥ 0.9 |")
print(f"| one update, {mib} MiB over mutual TLS into slot B (verify, stream, hash, switch) | {$update_s:.1f} s ({mib/max($update_s,0.01):.0f} MiB/s) | openssl dgst {mib/$openssl_s:.0f} MiB/s | {$openssl_s/max($update_s,0.01):.2f} | |")
print(f"| peak RSS of the agent process during that update | {$rss_kib/1024:.1f} MiB | | | ≤ 8 MiB |")
print(f"| bytes written besides the image | {$slot_bytes - mib*1048576} | | | 0 |")
s = sim["stats"]
print(f"| simulator: {sim['devices']} agents, full polls | {sim['polls_per_second']:.0f} polls/s | bare mTLS GET /device/v1/self {sim['baseline_requests_per_second']:.0f} req/s | {sim['polls_per_second']/sim['baseline_requests_per_second']:.2f} | 10,000 devices run |")
print(f"\nSimulator outcome: {json.dumps(s)}; enrolment + 3 rounds took {sim['enrol_and_poll_seconds']:.1f} s.")
PY
