#!/usr/bin/env bash
# Issue 4 benchmark: upload and download of a large artifact over loopback,
# as a ratio to nginx (sendfile on; WebDAV PUT for uploads) serving the same
# file in the same run, plus the server's RSS growth during each.
#
#   goal: download >= 80 % of nginx; RSS grows < 64 MiB during either.
#
# Usage: bench/artifacts.sh [SIZE_MIB] (default 1024). Needs nginx, curl and
# python3 (installed with apt if missing). Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MIB="${1:-1024}"
ROUNDS="${ROUNDS:-3}"

for tool in nginx curl python3; do
    if ! command -v "$tool" >/dev/null; then
        apt-get install -y -qq "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$tool" >/dev/null; }
    fi
done
NGINX="$(command -v nginx)"

cargo build --release -p fleetward -j2 >&2
BIN="$PWD/target/release/fleetward"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# The file lives in tmpfs-backed or disk-backed $WORK alike for both servers.
IMAGE="$WORK/fw.img"
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$IMAGE"
SHA256="$(sha256sum "$IMAGE" | cut -d' ' -f1)"

# nginx: sendfile for downloads, WebDAV PUT for uploads (the same bytes in).
mkdir -p "$WORK/nginx/root" "$WORK/nginx/tmp"
cp "$IMAGE" "$WORK/nginx/root/fw.img"
NGINX_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
# Workers run as the invoking user so they can read and write $WORK (mode 0700).
USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root;"
cat >"$WORK/nginx/nginx.conf" <<CONF
$USER_LINE
daemon off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    client_max_body_size 0;
    client_body_temp_path $WORK/nginx/tmp;
    proxy_temp_path $WORK/nginx/tmp;
    fastcgi_temp_path $WORK/nginx/tmp;
    uwsgi_temp_path $WORK/nginx/tmp;
    scgi_temp_path $WORK/nginx/tmp;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WORK/nginx/root;
        location /up/ { dav_methods PUT; create_full_put_path on; }
    }
}
CONF
"$NGINX" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
PIDS+=($!)

# fleetward on the embedded default.
DATA="$WORK/data"
TOKEN="$("$BIN" --data-dir "$DATA" --json init | python3 -c 'import json,sys; print(json.load(sys.stdin)["admin_token"])')"
"$BIN" --data-dir "$DATA" server --listen 127.0.0.1:0 --device-listen 127.0.0.1:0 --log warn \
    --max-artifact-bytes "$((SIZE_MIB * 1024 * 1024 * 2))" &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
for _ in $(seq 1 600); do [ -f "$DATA/server.json" ] && break; sleep 0.1; done
OPERATOR="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["operator"])' "$DATA/server.json")"
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$NGINX_PORT/fw.img" -r 0-0 -o /dev/null && break; sleep 0.1; done

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# Runs a command while sampling the server's RSS; prints "seconds peak_growth_kib".
timed_with_rss() {
    local before peak now start end
    before="$(rss_kib "$SERVER_PID")"
    peak="$before"
    start="$(date +%s.%N)"
    "$@" &
    local job=$!
    while kill -0 "$job" 2>/dev/null; do
        now="$(rss_kib "$SERVER_PID")"
        [ "$now" -gt "$peak" ] && peak="$now"
        sleep 0.05
    done
    wait "$job"
    end="$(date +%s.%N)"
    echo "$(python3 -c "print($end - $start)") $((peak - before))"
}

# -T streams the file (--data-binary would read all of it into memory first).
up_fleetward() {
    curl -fsS -o /dev/null -H "authorization: Bearer $TOKEN" -H "x-fleetward-sha256: $SHA256" \
        -H 'content-type: application/octet-stream' -X POST -T "$IMAGE" "http://$OPERATOR/api/v1/artifacts"
}
down_fleetward() {
    curl -fsS -o /dev/null -H "authorization: Bearer $TOKEN" "http://$OPERATOR/api/v1/artifacts/$SHA256"
}
up_nginx() { curl -fsS -o /dev/null -T "$IMAGE" "http://127.0.0.1:$NGINX_PORT/up/fw-$RANDOM.img"; }
down_nginx() { curl -fsS -o /dev/null "http://127.0.0.1:$NGINX_PORT/fw.img"; }

declare -A T R
for round in $(seq 1 "$ROUNDS"); do
    for what in up_nginx up_fleetward down_nginx down_fleetward; do
        # A second upload of the same bytes is deduplicated but still streamed and hashed.
        read -r secs growth < <(timed_with_rss "$what")
        T[$what]+="$secs "
        R[$what]+="$growth "
        echo "round $round $what ${secs}s rss+${growth}KiB" >&2
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
max() { tr ' ' '\n' | grep -v '^$' | sort -g | tail -1; }
mbps() { python3 -c "print(f'{$SIZE_MIB / $1:.0f}')"; }
UN="$(echo "${T[up_nginx]}" | median)"; UF="$(echo "${T[up_fleetward]}" | median)"
DN="$(echo "${T[down_nginx]}" | median)"; DF="$(echo "${T[down_fleetward]}" | median)"
cat <<MD
| ${SIZE_MIB} MiB over loopback (median of $ROUNDS) | nginx MiB/s | fleetward MiB/s | ratio | fleetward RSS growth (max) |
|---|---:|---:|---:|---:|
| download | $(mbps "$DN") | $(mbps "$DF") | $(python3 -c "print(f'{$DN / $DF:.2f}')") | $(( $(echo "${R[down_fleetward]}" | max) / 1024 )) MiB |
| upload (streamed, SHA-256 + SHA-512) | $(mbps "$UN") | $(mbps "$UF") | $(python3 -c "print(f'{$UN / $UF:.2f}')") | $(( $(echo "${R[up_fleetward]}" | max) / 1024 )) MiB |
MD
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
