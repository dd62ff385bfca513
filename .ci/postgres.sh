# A throwaway PostgreSQL server for the Postgres integration tests.
#
# Sourced by .ci/run before pytest (`. .ci/postgres.sh`). It
#   - installs Debian's postgresql when initdb/pg_ctl are missing (as root, with apt-get),
#   - creates a cluster in a temporary directory owned by the `postgres` user,
#   - starts it on 127.0.0.1 on a free port (trust auth, no fsync: test data only),
#   - creates the database `personagen_test` and exports
#       PERSONAGEN_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:PORT/personagen_test
#       PERSONAGEN_TEST_PG_DSN=postgresql://postgres@127.0.0.1:PORT/personagen_test  (libpq form)
#   - chains `personagen_pg_stop` into the shell's EXIT trap (an existing trap still runs).
# It never fails the CI run: when PostgreSQL cannot be had it says why, leaves the variables
# unset, and the Postgres tests skip with a visible reason. Safe under `set -euo pipefail`.

personagen_pg_stop() {
    if [ -n "${PERSONAGEN_PG_DIR:-}" ] && [ -d "${PERSONAGEN_PG_DIR}/data" ]; then
        _personagen_pg_as "${PERSONAGEN_PG_BIN}/pg_ctl" -D "${PERSONAGEN_PG_DIR}/data" \
            -m immediate -w stop >/dev/null 2>&1 || true
        rm -rf "${PERSONAGEN_PG_DIR}" || true
        echo "postgres: stopped and removed ${PERSONAGEN_PG_DIR}"
    fi
    unset PERSONAGEN_PG_DIR PERSONAGEN_TEST_PG_URL PERSONAGEN_TEST_PG_DSN
    return 0
}

# Run a command as the cluster's owner (postgres refuses to run as root).
_personagen_pg_as() {
    if [ "$(id -u)" = "0" ]; then
        if command -v runuser >/dev/null 2>&1; then
            runuser -u postgres -- "$@"
        else
            su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
        fi
    else
        "$@"
    fi
}

_personagen_pg_bindir() {
    local tool dir
    tool="$(command -v initdb 2>/dev/null || true)"
    if [ -n "$tool" ] && command -v pg_ctl >/dev/null 2>&1; then
        dir="$(dirname "$(readlink -f "$tool")")"
        echo "$dir"
        return 0
    fi
    # Debian keeps the server binaries off PATH, one directory per major version.
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
        echo "$dir"
        return 0
    fi
    return 1
}

_personagen_pg_start() {
    local bindir port dir py
    if ! bindir="$(_personagen_pg_bindir)"; then
        if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
            echo "postgres: initdb/pg_ctl not found and cannot apt-get install postgresql" \
                "(needs root and apt); Postgres tests will skip"
            return 0
        fi
        echo "postgres: installing Debian's postgresql"
        if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }; then
            echo "postgres: apt-get install postgresql failed; Postgres tests will skip"
            return 0
        fi
        if ! bindir="$(_personagen_pg_bindir)"; then
            echo "postgres: installed, but initdb/pg_ctl are still missing; Postgres tests will skip"
            return 0
        fi
    fi
    if [ "$(id -u)" = "0" ] && ! getent passwd postgres >/dev/null 2>&1; then
        if ! useradd --system --no-create-home --shell /usr/sbin/nologin postgres >/dev/null 2>&1
        then
            echo "postgres: no 'postgres' user to own the cluster; Postgres tests will skip"
            return 0
        fi
    fi
    py="$(command -v python3 || command -v python || true)"
    if [ -z "$py" ]; then
        echo "postgres: no python to pick a free port; Postgres tests will skip"
        return 0
    fi
    port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' 2>/dev/null || true)"
    if [ -z "$port" ]; then
        echo "postgres: could not find a free port; Postgres tests will skip"
        return 0
    fi
    if ! dir="$(mktemp -d "${TMPDIR:-/tmp}/personagen-pg.XXXXXX")"; then
        echo "postgres: mktemp failed; Postgres tests will skip"
        return 0
    fi
    if [ "$(id -u)" = "0" ]; then
        chown postgres "$dir" || true
    fi
    export PERSONAGEN_PG_DIR="$dir" PERSONAGEN_PG_BIN="$bindir"
    if ! _personagen_pg_as "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 \
        --locale=C --no-sync >"$dir/initdb.log" 2>&1; then
        echo "postgres: initdb failed; Postgres tests will skip. Log:"
        tail -n 20 "$dir/initdb.log" || true
        personagen_pg_stop
        return 0
    fi
    if ! _personagen_pg_as "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50" \
        start >/dev/null 2>&1; then
        echo "postgres: the server did not start; Postgres tests will skip. Log:"
        tail -n 20 "$dir/server.log" || true
        personagen_pg_stop
        return 0
    fi
    if ! _personagen_pg_as "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres \
        personagen_test >/dev/null 2>&1; then
        echo "postgres: createdb failed; Postgres tests will skip"
        personagen_pg_stop
        return 0
    fi
    export PERSONAGEN_TEST_PG_URL="postgresql+psycopg://postgres@127.0.0.1:${port}/personagen_test"
    export PERSONAGEN_TEST_PG_DSN="postgresql://postgres@127.0.0.1:${port}/personagen_test"
    echo "postgres: $("$bindir/postgres" --version 2>/dev/null || echo server) on 127.0.0.1:${port};" \
        "PERSONAGEN_TEST_PG_URL=${PERSONAGEN_TEST_PG_URL}"
    return 0
}

if [ -n "${PERSONAGEN_TEST_PG_URL:-}" ]; then
    echo "postgres: using the given PERSONAGEN_TEST_PG_URL"
else
    _personagen_pg_start || true
    if [ -n "${PERSONAGEN_PG_DIR:-}" ]; then
        # Keep whatever EXIT trap the caller set, and stop the server after it.
        _personagen_pg_prev_trap="$(trap -p EXIT | sed -e "s/^trap -- '\(.*\)' EXIT$/\1/")"
        # shellcheck disable=SC2064
        trap "${_personagen_pg_prev_trap:+${_personagen_pg_prev_trap}; }personagen_pg_stop" EXIT
        unset _personagen_pg_prev_trap
    fi
fi
