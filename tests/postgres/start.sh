#!/usr/bin/env bash
# Starts a throw-away PostgreSQL cluster for the enforcer's multi-replica tests: Debian's
# `postgresql` package, run as the unprivileged `postgres` user, reachable only through
# its unix socket in DIR (mode 0700, owned by postgres: no TCP, and no other local user
# can connect), trust authentication, data beside the socket.
#   tests/postgres/start.sh DIR PORT   # prints the database URL on its last line
# PORT names the socket (.s.PGSQL.PORT). Stop it with:
#   su postgres -c "pg_ctl -D DIR/data stop"
set -euo pipefail
dir="$1"; port="$2"
bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
[ -x "$bin/initdb" ] || { echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }
id postgres >/dev/null 2>&1 || { echo "no postgres user (Debian's package creates it)" >&2; exit 1; }
rm -rf "$dir" && mkdir -p "$dir" && chown postgres: "$dir" && chmod 700 "$dir"
su postgres -s /bin/sh -c "'$bin/initdb' -D '$dir/data' --auth=trust -U postgres -E UTF8 >'$dir/initdb.log'"
su postgres -s /bin/sh -c "'$bin/pg_ctl' -D '$dir/data' -l '$dir/server.log' -w -o \"-c listen_addresses='' -p $port -k '$dir' -c max_connections=200\" start >/dev/null"
su postgres -s /bin/sh -c "'$bin/psql' -h '$dir' -p $port -U postgres -qc 'CREATE DATABASE thoth' postgres"
echo "postgres:///thoth?host=$dir&port=$port&user=postgres"
