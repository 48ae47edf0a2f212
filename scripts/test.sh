#!/usr/bin/env bash
# Runs the whole suite: starts a throwaway PostgreSQL from the machine's own binaries for the
# contract tests that run against both databases, and stops it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

pgbin=$(dirname "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -n1)")
if [ ! -x "$pgbin/initdb" ]; then
  echo "initdb not found: install PostgreSQL (apt-get install postgresql)" >&2
  exit 1
fi
run_as=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  run_as=(runuser -u postgres --)
fi

pgdir=$(mktemp -d /tmp/snapshotd-pg.XXXXXX)
chmod 755 "$pgdir"
[ ${#run_as[@]} -gt 0 ] && chown postgres "$pgdir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${run_as[@]}" "$pgbin/initdb" -D "$pgdir/data" -U postgres -A trust --no-sync >/dev/null
"${run_as[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
  -o "-p $port -k $pgdir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
stop_pg() { "${run_as[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$pgdir"; }
trap stop_pg EXIT

export SNAPSHOTD_TEST_PG_URL="postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
export SNAPSHOTD_TEST_REQUIRE_PG=1
.venv/bin/python -m pytest "$@"
