#!/usr/bin/env bash
# Issue 6's fleet run: DEVICES simulated devices (own keys, full TUF and
# director verification; crates/fleetward-agent/examples/phased_rollout_bench.rs)
# under a real server on SQLite, one rollout `1%,10%,50%,100%` (soak 0s,
# success threshold 95 %, max failures 5 %). Two runs:
#   - 2 % of installs fail to boot: the rollout must complete;
#   - 10 % fail: it must pause by itself in the first phase.
# Usage: bench/phased-rollout.sh [DEVICES] (default 10000).
# PROFILE=release for a release build (default dev, as bench/fleet.sh).
# Prints a Markdown section for BENCHMARKS.md; exits non-zero if either
# run ends otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
devices="${1:-10000}"
profile="${PROFILE:-dev}"
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
cargo build -q -p fleetward-agent --example phased_rollout_bench --profile "$profile"
dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
bin="${CARGO_TARGET_DIR:-target}/$dir/examples/phased_rollout_bench"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
load=$(cut -d' ' -f1-3 /proc/loadavg)
"$bin" "$devices" 0.02 30 >"$out/two.json"
"$bin" "$devices" 0.10 30 >"$out/ten.json"

python3 - "$out/two.json" "$out/ten.json" <<PY
import json, sys
two, ten = (json.load(open(p)) for p in sys.argv[1:3])
print("## Phased rollout with the fleet simulator (issue 6) — \`bench/phased-rollout.sh $devices\`\n")
print("Measured $(date -u +%Y-%m-%d), profile $profile, 2 cores, load average before: $load.\n")
print("| injected boot failures | devices enrolled | rounds of polls | rollout time | end state | phase reached | per phase: succeeded / total (failed) | goal |")
print("|---|---:|---:|---:|---|---:|---|---|")
for run, goal in ((two, "completes"), (ten, "pauses in the first phase")):
    phases = "; ".join(f"{p['percent']}: {p['counts']['succeeded']}/{p['counts']['total']} ({p['counts']['failed']})" for p in run["phases"])
    print(f"| {run['fail_rate']*100:.0f} % | {run['enrolled']} | {run['rounds']} | {run['rollout_seconds']:.1f} s | {run['state']} | {run['current_phase']+1} of 4 | {phases} | {goal} |")
print(f"\nPause reason of the 10 % run: {ten['pause_reason']!r}. Enrolment of {two['devices']} devices took {two['enrol_seconds']:.1f} s.")
ok = two["state"] == "completed" and ten["state"] == "paused" and ten["current_phase"] == 0
sys.exit(0 if ok else 1)
PY
