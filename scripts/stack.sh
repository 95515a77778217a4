#!/usr/bin/env bash
# Runs a command against a throwaway local stack: PostgreSQL (unless DATABASE_URL is
# set) and the moto AWS emulator, both started here and stopped on exit, failure
# included. Usage: scripts/stack.sh COMMAND [ARGS...]
#
# The command sees DATABASE_URL, AWS_ENDPOINT_URL, AWS_REGION and test credentials.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
work=$(mktemp -d /tmp/doclink-stack.XXXXXX)
chmod 755 "$work"
pg_started=""
moto_pid=""

log() { echo "stack: $*" >&2; }

cleanup() {
    local status=$?
    if [ -n "$moto_pid" ]; then kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; fi
    if [ -n "$pg_started" ]; then
        as_pg "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    exit $status
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# initdb refuses to run as root: run the cluster as the postgres user then.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

ensure_python_env() {
    if [ ! -x "$venv/bin/python" ] || ! cmp -s "$root/scripts/requirements-stack.txt" "$venv/.requirements"; then
        log "installing moto into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/scripts/requirements-stack.txt"
        cp "$root/scripts/requirements-stack.txt" "$venv/.requirements"
    fi
}

start_postgres() {
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
        log "installing PostgreSQL"
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        else
            log "PostgreSQL is not installed and this is not root: set DATABASE_URL"; exit 1
        fi
        pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    local port; port=$(free_port)
    mkdir -p "$work/pg"
    [ "$(id -u)" = 0 ] && chown postgres "$work" "$work/pg"
    as_pg "$pg_bin/initdb" -D "$work/pg" -U doclink --auth=trust -E UTF8 --no-locale >/dev/null
    as_pg "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $work -c fsync=off -c max_connections=300" start >/dev/null
    pg_started=1
    export DATABASE_URL="postgres://doclink@127.0.0.1:$port/postgres"
    log "PostgreSQL on port $port"
}

start_moto() {
    local port; port=$(free_port)
    # moto's server with its SQS state changed atomically (see scripts/moto_server.py).
    "$venv/bin/python" "$root/scripts/moto_server.py" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
    moto_pid=$!
    export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
    for _ in $(seq 1 150); do
        if "$venv/bin/python" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$AWS_ENDPOINT_URL/moto-api/data.json" 2>/dev/null; then
            log "moto on port $port"
            return
        fi
        if ! kill -0 "$moto_pid" 2>/dev/null; then cat "$work/moto.log" >&2; log "moto did not start"; exit 1; fi
        sleep 0.2
    done
    log "moto did not answer in 30 s"; exit 1
}

ensure_python_env
if [ -z "${DATABASE_URL:-}" ]; then start_postgres; else log "using DATABASE_URL from the environment"; fi
start_moto
export AWS_REGION=${AWS_REGION:-us-east-1} AWS_DEFAULT_REGION=${AWS_REGION:-us-east-1}
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export DOCLINK_STACK_PYTHON="$venv/bin/python"
unset AWS_PROFILE AWS_SESSION_TOKEN
"$@"
