#!/usr/bin/env bash
# Provisions the PostgreSQL server the distributed-mode tests use: a server answering on
# 127.0.0.1:5432 that lets user postgres in without a password from 127.0.0.1, and a database `test`.
#
#   bash scripts/postgres.sh ensure   # start (or, as root with apt-get, install) if needed; create `test`
#   eval "$(bash scripts/postgres.sh ensure)" exports ARCNET_POSTGRES_URL (the last line it prints)
#
# Idempotent, and quick when everything is already there (one connection). Progress goes to stderr;
# a failure is one line naming what is missing.
set -euo pipefail

host=127.0.0.1
port=5432
user=postgres
database=test
url="postgres://$user@$host:$port/$database"

die() {
  echo "postgres.sh: $*" >&2
  exit 1
}

note() {
  echo "postgres.sh: $*" >&2
}

answers() {
  pg_isready -q -h "$host" -p "$port" -t 2 >/dev/null 2>&1
}

# psql against the maintenance database as $user over TCP, the way the tests connect.
admin_sql() {
  psql -X -q -v ON_ERROR_STOP=1 -At -h "$host" -p "$port" -U "$user" -d postgres -c "$1"
}

is_root_with_apt() {
  [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1
}

# The newest Debian cluster on this port, as "version name" (pg_lsclusters is from postgresql-common).
local_cluster() {
  command -v pg_lsclusters >/dev/null 2>&1 || return 1
  pg_lsclusters --no-header 2>/dev/null | awk -v port="$port" '$3 == port { print $1, $2 }' | sort -V | tail -n 1 | grep .
}

wait_until_answering() {
  local deadline=$((SECONDS + 30))
  until answers; do
    [ "$SECONDS" -lt "$deadline" ] || die "PostgreSQL started but does not answer on $host:$port after 30 s (see /var/log/postgresql/)"
    sleep 0.2
  done
}

# Returns 1 when PostgreSQL is not installed at all; any other failure is fatal.
start_installed() {
  command -v pg_ctlcluster >/dev/null 2>&1 || return 1
  local cluster version name
  cluster="$(local_cluster)" ||
    die "PostgreSQL is installed but no cluster uses port $port (see pg_lsclusters; create one with pg_createcluster <version> main -p $port)"
  read -r version name <<<"$cluster"
  note "starting PostgreSQL cluster $version/$name"
  # A cluster the package install already started makes this fail with "already running": fine if it answers.
  pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start >&2 || answers ||
    die "pg_ctlcluster $version $name start failed (run as root or the postgres user; see /var/log/postgresql/postgresql-$version-$name.log)"
  wait_until_answering
}

install_server() {
  is_root_with_apt || die "no PostgreSQL server answers on $host:$port and none is installed; install Debian's postgresql (apt-get install postgresql) or run this as root"
  note "installing postgresql (apt-get)"
  apt-get update -qq >&2 || die "apt-get update failed; cannot install postgresql"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null || die "apt-get install postgresql failed"
  answers || start_installed || die "apt-get installed postgresql but pg_ctlcluster is still missing"
}

# Debian's default is a password (scram) for TCP; the tests connect as postgres from 127.0.0.1 with
# none. Only a local Debian cluster is touched, and only when that login is refused for want of one.
ensure_trust() {
  local output
  if output="$(admin_sql 'SELECT 1' 2>&1)"; then return 0; fi
  case "$output" in
    *"password authentication failed"* | *"no password supplied"* | *"no pg_hba.conf entry"* | *"fe_sendauth"*) ;;
    *) die "cannot log in to $host:$port as $user: ${output//$'\n'/ }" ;;
  esac
  local cluster version name hba
  cluster="$(local_cluster)" || die "PostgreSQL on $host:$port wants a password for $user and is not a local Debian cluster to reconfigure; set ARCNET_POSTGRES_URL instead"
  read -r version name <<<"$cluster"
  hba="/etc/postgresql/$version/$name/pg_hba.conf"
  [ -w "$hba" ] || die "PostgreSQL on $host:$port wants a password for $user; run as root to allow trust for 127.0.0.1 in $hba"
  note "allowing passwordless (trust) logins from 127.0.0.1 and ::1 in $hba"
  # First match wins in pg_hba.conf, so the trust lines go on top.
  { printf 'host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n'; cat "$hba"; } >"$hba.arcnet" && mv "$hba.arcnet" "$hba"
  chown postgres:postgres "$hba" 2>/dev/null || true
  pg_ctlcluster --skip-systemctl-redirect "$version" "$name" reload >&2 || die "pg_ctlcluster $version $name reload failed"
  output="$(admin_sql 'SELECT 1' 2>&1)" || die "still cannot log in to $host:$port as $user after allowing trust: ${output//$'\n'/ }"
}

ensure_database() {
  [ -n "$(admin_sql "SELECT 1 FROM pg_database WHERE datname = '$database'")" ] && return 0
  note "creating database $database"
  # Two ensures at once: the loser's CREATE fails, which is fine if the database now exists.
  admin_sql "CREATE DATABASE \"$database\"" >/dev/null 2>&1 ||
    [ -n "$(admin_sql "SELECT 1 FROM pg_database WHERE datname = '$database'")" ] ||
    die "cannot create database $database on $host:$port"
}

cmd_ensure() {
  if ! command -v pg_isready >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
    # No client tools: either nothing is installed, or only a server elsewhere; both need the packages.
    is_root_with_apt || die "psql and pg_isready are missing; install Debian's postgresql (or postgresql-client) or run this as root"
    if start_installed_possible; then
      note "installing postgresql-client (apt-get)"
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client >/dev/null ||
        die "apt-get install postgresql-client failed"
    else
      install_server
    fi
  fi
  if ! answers; then
    start_installed || install_server
  fi
  ensure_trust
  ensure_database
  echo "export ARCNET_POSTGRES_URL=$url"
}

# Something listens on the port, or a server is installed: only the client tools are missing.
start_installed_possible() {
  command -v pg_ctlcluster >/dev/null 2>&1 && return 0
  (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

case "${1:-}" in
  ensure) cmd_ensure ;;
  *)
    echo "usage: bash scripts/postgres.sh ensure" >&2
    exit 2
    ;;
esac
