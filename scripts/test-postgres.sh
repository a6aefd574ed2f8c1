#!/usr/bin/env bash
# Run a command with a private, throw-away PostgreSQL server on loopback, for the multi-machine tests and benchmarks.
#
#   bash scripts/test-postgres.sh run CMD [ARGS...]
#
# If HYPERBRACE_TEST_POSTGRES_URL already points at a reachable server, CMD simply runs against it. Otherwise this
# script uses Debian's PostgreSQL binaries (installing the `postgresql` package first when they are missing and we
# are root), creates a cluster in a temporary directory that listens on 127.0.0.1 only, on a free port, with its
# unix socket in that directory (so it never touches a system cluster), creates a database, exports
#   HYPERBRACE_TEST_POSTGRES_URL=postgresql://hyperbrace@127.0.0.1:PORT/hyperbrace_test
# runs CMD, then stops the server and deletes the directory, whatever happens. It exits with CMD's status.
#
# When no server can be had: with HYPERBRACE_REQUIRE_POSTGRES=1 (CI) it fails loudly; otherwise CMD runs without
# the variable and the PostgreSQL tests skip, saying why.
set -uo pipefail

log() { echo "test-postgres: $*" >&2; }

if [[ $# -lt 2 || "$1" != "run" ]]; then
    echo "usage: bash scripts/test-postgres.sh run CMD [ARGS...]" >&2
    exit 2
fi
shift

unavailable() {  # unavailable REASON CMD [ARGS...]
    local reason="$1"
    shift
    if [[ "${HYPERBRACE_REQUIRE_POSTGRES:-0}" == "1" ]]; then
        log "ERROR: $reason (HYPERBRACE_REQUIRE_POSTGRES=1, so this fails instead of skipping the PostgreSQL tests)"
        exit 1
    fi
    log "$reason; running without PostgreSQL (its tests will be skipped)"
    unset HYPERBRACE_TEST_POSTGRES_URL
    "$@"  # not exec: the EXIT trap must still clean up a half-made server
    exit $?
}

reachable() {  # reachable URL: can a client connect?
    command -v pg_isready >/dev/null 2>&1 && pg_isready -q -d "$1" -t 3
}

if [[ -n "${HYPERBRACE_TEST_POSTGRES_URL:-}" ]]; then
    if reachable "$HYPERBRACE_TEST_POSTGRES_URL"; then
        exec "$@"
    fi
    log "HYPERBRACE_TEST_POSTGRES_URL is set but not reachable; starting a private server instead"
fi

find_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

BINDIR="$(find_bindir)"
if [[ -z "$BINDIR" ]]; then
    if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing Debian's postgresql package"
        if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null); then
            unavailable "apt-get could not install postgresql" "$@"
        fi
        BINDIR="$(find_bindir)"
    fi
    [[ -n "$BINDIR" ]] || unavailable "PostgreSQL is not installed (and this is not a root Debian machine)" "$@"
fi

# initdb refuses to run as root: the server then runs as the `postgres` user the Debian package creates.
as_server_user() {
    if [[ "$(id -u)" == "0" ]]; then
        if command -v runuser >/dev/null 2>&1; then
            runuser -u postgres -- "$@"
        else
            su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
        fi
    else
        "$@"
    fi
}

TMP="$(mktemp -d "${TMPDIR:-/tmp}/hyperbrace-pg.XXXXXX")"
[[ "$(id -u)" == "0" ]] && chown postgres "$TMP"
DATA="$TMP/data"
SERVER_STARTED=0

cleanup() {
    if [[ "$SERVER_STARTED" == "1" ]]; then
        as_server_user "$BINDIR/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 \
            || as_server_user "$BINDIR/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

if ! as_server_user "$BINDIR/initdb" -D "$DATA" -U hyperbrace -A trust --no-sync -E UTF8 >"$TMP/initdb.log" 2>&1; then
    cat "$TMP/initdb.log" >&2
    unavailable "initdb failed" "$@"
fi
# A test server: durability off (fast), loopback only, enough connections for 16 workers and their pools.
OPTIONS="-c listen_addresses=127.0.0.1 -p $PORT -k $TMP -c fsync=off -c synchronous_commit=off"
OPTIONS="$OPTIONS -c full_page_writes=off -c max_connections=300"
if ! as_server_user "$BINDIR/pg_ctl" -D "$DATA" -o "$OPTIONS" -l "$TMP/server.log" -w -t 60 start >/dev/null; then
    cat "$TMP/server.log" >&2
    unavailable "the PostgreSQL server did not start" "$@"
fi
SERVER_STARTED=1
if ! "$BINDIR/createdb" -h 127.0.0.1 -p "$PORT" -U hyperbrace hyperbrace_test; then
    unavailable "could not create the test database" "$@"
fi

export HYPERBRACE_TEST_POSTGRES_URL="postgresql://hyperbrace@127.0.0.1:$PORT/hyperbrace_test"
log "PostgreSQL $(basename "$(dirname "$BINDIR")") running at $HYPERBRACE_TEST_POSTGRES_URL"
"$@"
status=$?
exit "$status"
