#!/usr/bin/env bash
# tools/pg-cluster.sh — a throwaway PostgreSQL cluster for the tests and the
# benchmark (docs/ledger.md, "A throwaway cluster"). TEST ONLY: it trusts
# every local connection.
#
#   tools/pg-cluster.sh start DIR   initdb DIR/data (first time), start the server
#                                   listening ONLY on a Unix socket in DIR, create
#                                   the role and database "certforge"; prints the
#                                   conninfo to use on stdout
#   tools/pg-cluster.sh stop DIR    stop the server by its PID (DIR/data/postmaster.pid)
#   tools/pg-cluster.sh conninfo DIR
#
# The server never listens on TCP (listen_addresses = ''). initdb and the
# server refuse to run as root, so when run as root they run as the system
# user "postgres" (made by Debian's postgresql package) or, if that is
# absent, "certforge-pg" (created here with useradd --system). Authentication
# is "trust" on the socket of this cluster only: the tests run as root, which
# peer authentication would not map to a role. Never use this for a real
# ledger (docs/ledger.md has the production set-up).
#
# Exit status: 0 done; 77 PostgreSQL is not installed or the server could
# not be started (callers report their PostgreSQL tests as skipped); 2 usage.
set -euo pipefail

usage() { echo "usage: $0 start|stop|conninfo DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
[ "$cmd" = start ] && mkdir -p "$2"
[ "$cmd" = stop ] && [ ! -d "$2" ] && exit 0 # nothing to stop
dir=$(cd "$2" 2>/dev/null && pwd) || { echo "pg-cluster: no folder $2" >&2; exit 2; }
data=$dir/data
port=5432 # only names the socket file: DIR/.s.PGSQL.5432

bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  return 1
}

# Run a command as the cluster's owner (root cannot run PostgreSQL).
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$owner" -- "$@"
  else
    "$@"
  fi
}

conninfo() { echo "host=$dir port=$port dbname=certforge user=certforge"; }

case $cmd in
  conninfo) conninfo; exit 0 ;;
  start) ;;
  stop)
    pidf=$data/postmaster.pid
    [ -f "$pidf" ] || exit 0
    pid=$(head -n1 "$pidf")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || exit 0
    kill -INT "$pid" # fast shutdown: running transactions are rolled back
    for _ in $(seq 1 200); do
      kill -0 "$pid" 2>/dev/null || exit 0
      sleep 0.05
    done
    kill -QUIT "$pid" 2>/dev/null || true # immediate shutdown
    sleep 0.5
    kill -KILL "$pid" 2>/dev/null || true
    exit 0 ;;
  *) usage ;;
esac

bin=$(bindir) || { echo "pg-cluster: PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb)" >&2; exit 77; }
owner=$(id -un)
if [ "$(id -u)" -eq 0 ]; then
  if id postgres >/dev/null 2>&1; then
    owner=postgres
  else
    owner=certforge-pg
    id "$owner" >/dev/null 2>&1 ||
      useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$owner" ||
      { echo "pg-cluster: cannot create the system user $owner" >&2; exit 77; }
  fi
  chown "$owner" "$dir"
fi
chmod 0755 "$dir"

if [ ! -f "$data/PG_VERSION" ]; then
  as_owner "$bin/initdb" -D "$data" --auth=trust --username=postgres --encoding=UTF8 \
    --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
    { echo "pg-cluster: initdb failed:" >&2; tail -n 20 "$dir/initdb.log" >&2; exit 77; }
  # Unix socket in DIR only; durable commits (the ledger refuses fsync=off).
  cat >>"$data/postgresql.conf" <<EOF
# tools/pg-cluster.sh (test only)
listen_addresses = ''
unix_socket_directories = '$dir'
port = $port
fsync = on
synchronous_commit = on
max_connections = 100
shared_buffers = 32MB
log_min_messages = warning
EOF
fi

if ! as_owner "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 30 start >/dev/null 2>&1; then
  echo "pg-cluster: the server did not start:" >&2
  tail -n 20 "$dir/server.log" >&2 || true
  exit 77
fi

psql() { as_owner "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres "$@"; }
if ! psql -d postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'certforge'" | grep -q 1; then
  psql -d postgres -c "CREATE ROLE certforge LOGIN CREATEDB" >/dev/null
  psql -d postgres -c "CREATE DATABASE certforge OWNER certforge" >/dev/null
fi
conninfo
