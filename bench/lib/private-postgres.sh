# Sourced by the benchmark scripts: `start_private_postgres WORKDIR` starts a
# private, durable PostgreSQL (crates/fleetward-testpg/examples/private_pg.rs:
# initdb in a temporary directory, a free port, PostgreSQL's own fsync and
# commit settings) and sets PG_URL; `stop_private_postgres` (or the script's
# end) stops it and deletes its directory. Never a shared server.

start_private_postgres() {
    local work="$1" bin
    cargo build --release -p fleetward-testpg --example private_pg -j2 >&2
    bin="${CARGO_TARGET_DIR:-target}/release/examples/private_pg"
    mkfifo "$work/pg.in"
    "$bin" <"$work/pg.in" >"$work/pg.url" &
    PG_KEEPER_PID=$!
    # The keeper runs until this write end closes (when the script ends).
    exec {PG_FD}>"$work/pg.in"
    for _ in $(seq 1 1200); do
        [ -s "$work/pg.url" ] && break
        kill -0 "$PG_KEEPER_PID" 2>/dev/null || { echo "private PostgreSQL did not start" >&2; return 1; }
        sleep 0.1
    done
    PG_URL="$(head -n 1 "$work/pg.url")"
    [ -n "$PG_URL" ] || { echo "private PostgreSQL gave no URL" >&2; return 1; }
    echo "private PostgreSQL: $PG_URL" >&2
}

stop_private_postgres() {
    if [ -n "${PG_FD:-}" ]; then
        exec {PG_FD}>&-
        PG_FD=""
        wait "$PG_KEEPER_PID" 2>/dev/null || true
    fi
}
