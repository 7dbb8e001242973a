#!/usr/bin/env bash
# Make sure PostgreSQL answers on 127.0.0.1:5432 with a role and database for fleetops' tests,
# then print the DSN to use (.ci/run exports it as FLEETOPS_TEST_PG_DSN).
set -euo pipefail
DSN=postgresql://fleetops:fleetops@127.0.0.1:5432/fleetops_test

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  version=$(ls /etc/postgresql | sort -V | tail -1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi

# As the database superuser: over loopback where the server trusts it, else as the postgres OS user.
superuser_sql() {
  if psql -h 127.0.0.1 -U postgres -d postgres -qtAc 'select 1' >/dev/null 2>&1; then
    psql -h 127.0.0.1 -U postgres -d postgres -qtAc "$1"
  else
    su postgres -c "psql -d postgres -qtAc \"$1\""
  fi
}
if [ "$(superuser_sql "select 1 from pg_roles where rolname = 'fleetops'")" != 1 ]; then
  superuser_sql "create role fleetops login password 'fleetops' createdb" >&2
fi
if [ "$(superuser_sql "select 1 from pg_database where datname = 'fleetops_test'")" != 1 ]; then
  superuser_sql "create database fleetops_test owner fleetops" >&2
fi
psql "$DSN" -qtAc 'select 1' >/dev/null
echo "$DSN"
