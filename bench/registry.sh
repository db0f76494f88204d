#!/usr/bin/env bash
# Issue 2 benchmark: a registry of 1,000,000 tagged devices in SQLite.
#
#   (a) device lookup by id over HTTP under wrk load, as a ratio to /healthz
#       of the same server at the same connection count (goal: >= 50 %);
#   (b) a target query matching about 10 % of the fleet: count and first
#       page, latency over repeated requests (goal: < 200 ms).
#
# Usage: bench/registry.sh [DEVICES] (default 1000000). Needs wrk and python3
# (installed with apt if missing). Prints a Markdown section for BENCHMARKS.md.
# BACKEND=postgres runs the same on a private, durable PostgreSQL (issue 9).
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICES="${1:-1000000}"
CONNECTIONS="${CONNECTIONS:-32}"
DURATION="${DURATION:-15s}"
THREADS="${THREADS:-2}"

for tool in wrk python3 curl; do
    if ! command -v "$tool" >/dev/null; then
        apt-get install -y -qq "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$tool" >/dev/null; }
    fi
done

BACKEND="${BACKEND:-sqlite}"
source bench/lib/private-postgres.sh

cargo build --release -p fleetward -j2 >&2
LOAD="$(cut -d' ' -f1 /proc/loadavg)"
BIN="$PWD/target/release/fleetward"

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    stop_private_postgres
    rm -rf "$WORK"
}
trap cleanup EXIT
DATA="$WORK/data"

DB_ARGS=()
case "$BACKEND" in
    sqlite) STORE_NAME="SQLite (WAL)" ;;
    postgres)
        start_private_postgres "$WORK"
        DB_ARGS=(--database-url "$PG_URL")
        STORE_NAME="PostgreSQL (private, PostgreSQL's durable defaults, on the same machine)"
        ;;
    *) echo "BACKEND is sqlite or postgres, not $BACKEND" >&2; exit 2 ;;
esac

TOKEN="$("$BIN" --data-dir "$DATA" --json init "${DB_ARGS[@]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["admin_token"])')"
"$BIN" --data-dir "$DATA" server "${DB_ARGS[@]}" --listen 127.0.0.1:0 --device-listen 127.0.0.1:0 --log warn &
SERVER_PID=$!
for _ in $(seq 1 600); do [ -f "$DATA/server.json" ] && break; sleep 0.1; done
ADDR="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["operator"])' "$DATA/server.json")"
BASE="http://$ADDR"
export FLEETWARD_TOKEN="$TOKEN"

# The fleet: hardware rev1..rev4 (25 % each), region eu/us/apac/latam
# (40/30/20/10 %), a ring tag on 5 %, versions spread over 1.x and 2.x.
# `hw = "rev2" and region = "eu"` then selects 10 % of the fleet.
python3 - "$DEVICES" >"$WORK/devices.jsonl" <<'EOF'
import json, sys
n = int(sys.argv[1])
regions = ["eu"] * 4 + ["us"] * 3 + ["apac"] * 2 + ["latam"]
for i in range(n):
    tags = {"region": regions[(i // 4) % 10], "site": f"s{i % 97}"}
    if i % 20 == 7:
        tags["ring"] = "canary"
    print(json.dumps({
        "id": f"dev-{i:07d}",
        "hardware": f"rev{i % 4 + 1}",
        "version": f"{1 + i % 2}.{i % 13}.{i % 7}",
        "tags": tags,
        "status": "active",
    }))
EOF

start=$(date +%s.%N)
"$BIN" --data-dir "$DATA" device import "$WORK/devices.jsonl" --batch 10000 >&2
end=$(date +%s.%N)
IMPORT_SECS=$(python3 -c "print(f'{$end - $start:.1f}')")

QUERY='hw = "rev2" and region = "eu"'
COUNT="$("$BIN" --data-dir "$DATA" --json device count --query "$QUERY" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')"

# Both runs drive wrk through the same Lua request function over prebuilt
# requests, so that the client does the same work per request and the ratio
# measures the server only.
cat >"$WORK/lookup.lua" <<EOF
local requests = {}
math.randomseed(42)
for i = 1, 20000 do
    requests[i] = wrk.format("GET", string.format("/api/v1/devices/dev-%07d", math.random(0, $DEVICES - 1)))
end
local n = 0
request = function()
    n = n % 20000 + 1
    return requests[n]
end
EOF
sed -e 's|string.format("/api/v1/devices/dev-%07d", math.random(0, [0-9]* - 1))|"/healthz"|' \
    "$WORK/lookup.lua" >"$WORK/healthz.lua"
grep -q '"/healthz"' "$WORK/healthz.lua"

wrk_rps() { # path-or-script → requests/s
    local out
    out="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -H "Authorization: Bearer $TOKEN" "$@")"
    echo "$out" >&2
    if echo "$out" | grep -q "Non-2xx"; then echo "non-2xx answers in wrk run" >&2; exit 1; fi
    echo "$out" | awk '/Requests\/sec/ {print $2}'
}

# Warm both paths, then alternate baseline and lookup runs so that any
# drift in the machine's load hits both alike; the medians are compared.
wrk -t1 -c4 -d2s -s "$WORK/lookup.lua" "$BASE" >/dev/null
HEALTHZ_RUNS=()
LOOKUP_RUNS=()
for _ in 1 2 3; do
    HEALTHZ_RUNS+=("$(wrk_rps -s "$WORK/healthz.lua" "$BASE")")
    LOOKUP_RUNS+=("$(wrk_rps -s "$WORK/lookup.lua" "$BASE")")
done
median() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
HEALTHZ_RPS="$(median "${HEALTHZ_RUNS[@]}")"
LOOKUP_RPS="$(median "${LOOKUP_RUNS[@]}")"

# (b) latency of count and first page, sequential, 50 requests each after 5 warm-ups.
LATENCIES="$(python3 - "$ADDR" "$TOKEN" "$QUERY" <<'EOF'
import http.client, json, statistics, sys, time, urllib.parse
addr, token, query = sys.argv[1:4]
host, port = addr.rsplit(":", 1)
conn = http.client.HTTPConnection(host, int(port))
q = urllib.parse.quote(query)
def timed(path):
    samples = []
    for i in range(55):
        t = time.perf_counter()
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        r = conn.getresponse(); body = r.read()
        assert r.status == 200, (r.status, body[:200])
        if i >= 5:
            samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]
cm, cp = timed(f"/api/v1/devices/count?query={q}")
pm, pp = timed(f"/api/v1/devices?query={q}&limit=100")
print(f"{cm:.1f} {cp:.1f} {pm:.1f} {pp:.1f}")
EOF
)"
read -r COUNT_MED COUNT_P95 PAGE_MED PAGE_P95 <<<"$LATENCIES"

RATIO="$(python3 -c "print(f'{100 * $LOOKUP_RPS / $HEALTHZ_RPS:.0f}')")"
PERCENT="$(python3 -c "print(f'{100 * $COUNT / $DEVICES:.1f}')")"

cat <<EOF

## Device registry (issue 2) — \`BACKEND=$BACKEND bench/registry.sh $DEVICES\`

Measured $(date -u +%Y-%m-%d) on $(nproc) cores (load average before the run: $LOAD); $STORE_NAME, release build, wrk -t$THREADS -c$CONNECTIONS -d$DURATION.
Import of $DEVICES devices with 2–3 tags each through \`fleetward device import --batch 10000\`: ${IMPORT_SECS} s.

| measurement | result | baseline (same run) | ratio | goal |
|---|---|---|---|---|
| device lookup by id (random ids), median of 3 | ${LOOKUP_RPS} req/s | /healthz ${HEALTHZ_RPS} req/s | ${RATIO} % | ≥ 50 % |
| count, query \`$QUERY\` ($COUNT devices, ${PERCENT} %) | median ${COUNT_MED} ms, p95 ${COUNT_P95} ms | | | < 200 ms |
| first page (100) of the same query | median ${PAGE_MED} ms, p95 ${PAGE_P95} ms | | | < 200 ms |
EOF
