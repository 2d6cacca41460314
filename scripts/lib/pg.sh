# shellcheck shell=bash
# PostgreSQL helpers for primer's scripts: a private cluster from the machine's binaries, on
# 127.0.0.1 and a free port, never run as root; or a server the user already runs.
#
# Source it from a script that runs under `set -euo pipefail`, after common.sh. It sets no
# shell options itself, so that sourcing it into an interactive shell cannot make that shell
# exit.
#
#   pg_ensure_binaries       sets PG_BINDIR to the server binaries (PostgreSQL 14 or later):
#                            PG_BINDIR if set, `pg_config --bindir`, initdb on PATH, then the
#                            usual places (Homebrew, Debian, Red Hat); installs Debian's
#                            postgresql when there are none and that is possible (root on
#                            Debian/Ubuntu), else names the command that installs them.
#   pg_start DATA_DIR [DB]   initdb if needed, start (or reuse) the cluster; exports PGHOST,
#                            PGPORT, PGUSER and DATABASE_URL (db DB, default "postgres");
#                            sets PG_STARTED=1 if this call started it, 0 if it was running.
#   pg_stop DATA_DIR         stop it (no-op when it is not running).
#   pg_use_server URL        use a server the user already runs instead: checks that URL
#                            answers (PostgreSQL 14 or later); exports DATABASE_URL=URL.
#   pg_psql URL ARGS...      psql on URL, quiet, stopping at the first error.
#   ensure_db NAME           create database NAME on the server of DATABASE_URL if missing.
#   drop_db NAME             drop database NAME there (no-op when missing).
#   url_with_db URL NAME     URL with its database replaced by NAME (query string kept).
#   pg_dev_data_dir REPO     where the persistent dev cluster of REPO lives.
#
# PG_EPHEMERAL=1 trades durability for speed (initdb --no-sync, fsync off): for throw-away
# test clusters only.

PG_SUPERUSER=postgres

_pg_log() { printf 'pg: %s\n' "$*" >&2; }

_pg_is_root() { [[ $(id -u) -eq 0 ]]; }

# Run a command as the postgres OS user when we are root (PostgreSQL refuses root);
# from / so that a cwd postgres cannot read causes no warnings.
_pg_as_owner() {
  if _pg_is_root; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

PG_MIN_MAJOR=14

# The major version of the initdb in directory $1 ("15"), or nothing.
_pg_bindir_major() {
  "$1/initdb" --version 2>/dev/null | sed -n 's/.*PostgreSQL) \([0-9][0-9]*\).*/\1/p' | head -n 1
}

# Candidate server bin directories: pg_config's and PATH's first, then the usual places
# (Homebrew on Apple silicon and Intel, Debian/Ubuntu, Red Hat/Fedora), newest version first.
_pg_candidate_bindirs() {
  local dir
  if command -v pg_config >/dev/null 2>&1; then pg_config --bindir 2>/dev/null || true; fi
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; fi
  for dir in /opt/homebrew/opt/postgresql*/bin /usr/local/opt/postgresql*/bin \
    /usr/lib/postgresql/*/bin /usr/pgsql-*/bin; do
    [[ -d $dir ]] || continue
    # The first number in the path is the major version (none: an unversioned formula).
    printf '%s\t%s\n' "$(printf '%s' "$dir" | sed -n 's/[^0-9]*\([0-9][0-9]*\).*/\1/p')" "$dir"
  done | sort -t"$(printf '\t')" -k1,1rn | cut -f2
}

# The first candidate with initdb, pg_ctl and postgres of version PG_MIN_MAJOR or later.
_pg_find_bindir() {
  local dir major
  while IFS= read -r dir; do
    [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]] || continue
    major=$(_pg_bindir_major "$dir")
    if [[ -z $major ]] || ((major < PG_MIN_MAJOR)); then continue; fi
    printf '%s' "$dir"
    return 0
  done < <(_pg_candidate_bindirs)
}

# Sets PG_BINDIR; installs Debian's postgresql when no binaries are present and that is
# possible, else says how to get them.
pg_ensure_binaries() {
  [[ -n ${PG_BINDIR:-} && -x ${PG_BINDIR:-}/initdb ]] && return 0
  PG_BINDIR=$(_pg_find_bindir)
  if [[ -z $PG_BINDIR ]]; then
    if ! can_install_packages; then
      _pg_log "no PostgreSQL $PG_MIN_MAJOR+ server binaries found (looked at pg_config, PATH," \
        "Homebrew, /usr/lib/postgresql, /usr/pgsql-*); install them ($(install_hint postgresql))," \
        "set PG_BINDIR to their folder, or use a server you already run (DATABASE_URL for" \
        "scripts/run, PRIMER_TEST_ADMIN_URL for scripts/test)"
      return 1
    fi
    _pg_log "no PostgreSQL binaries found; installing Debian's postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q postgresql-common >/dev/null
    # Stop the package from creating (and starting) its own "main" cluster on port 5432:
    # we only ever run our own clusters.
    sed -i 's/^#\?\s*create_main_cluster\s*=.*/create_main_cluster = false/' \
      /etc/postgresql-common/createcluster.conf
    apt-get install -y -q postgresql >/dev/null
    PG_BINDIR=$(_pg_find_bindir)
    if [[ -z $PG_BINDIR ]]; then
      _pg_log "installing postgresql did not provide initdb"
      return 1
    fi
  fi
  if _pg_is_root && ! id -u postgres >/dev/null 2>&1; then
    _pg_log "running as root needs a 'postgres' OS user to run the server (apt-get install postgresql creates it)"
    return 1
  fi
  export PG_BINDIR
}

# True when the server's OS user can reach DIR (root-owned 0700 parents would block it).
pg_can_reach() {
  if _pg_is_root; then
    runuser -u postgres -- test -x "$1" 2>/dev/null
  else
    test -x "$1"
  fi
}

# The persistent dev cluster's data dir: REPO/.local/pg when the server's user can get
# there, else a per-repository folder under /var/tmp.
pg_dev_data_dir() {
  local repo=$1 hash
  mkdir -p "$repo/.local"
  if pg_can_reach "$repo/.local"; then
    printf '%s\n' "$repo/.local/pg"
  else
    hash=$(printf '%s' "$repo" | python3 -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:12])')
    mkdir -p "/var/tmp/primer-pg-$hash"
    chmod 0755 "/var/tmp/primer-pg-$hash"
    printf '%s\n' "/var/tmp/primer-pg-$hash/data"
  fi
}

# A TCP port nobody listens on right now (the kernel's pick).
_pg_free_port() { free_port; }

# A directory the server's user owns, 0700.
_pg_own_dir() {
  mkdir -p "$1"
  if _pg_is_root; then chown postgres:postgres "$1"; fi
  chmod 0700 "$1"
}

# Line N of the running cluster's postmaster.pid (4 = port, 5 = socket dir).
_pg_pidfile_line() {
  sed -n "${2}p" "$1/postmaster.pid" 2>/dev/null
}

_pg_running() {
  [[ -f $1/postmaster.pid ]] && _pg_as_owner "$PG_BINDIR/pg_ctl" status -D "$1" >/dev/null 2>&1
}

_pg_export() {
  local port=$1 db=$2
  export PGHOST=127.0.0.1 PGPORT=$port PGUSER=$PG_SUPERUSER
  export DATABASE_URL="postgres://$PG_SUPERUSER@127.0.0.1:$port/$db"
}

pg_start() {
  local data=$1 db=${2:-postgres} port sock attempt opts out initdb_opts=()
  pg_ensure_binaries
  data=$(abspath "$data")

  if _pg_running "$data"; then
    port=$(_pg_pidfile_line "$data" 4)
    _pg_log "reusing the cluster already running in $data on port $port"
    export PG_STARTED=0
    _pg_export "$port" "$db"
    return 0
  fi

  mkdir -p "$(dirname "$data")"
  if [[ ! -s $data/PG_VERSION ]]; then
    _pg_own_dir "$data"
    if ! pg_can_reach "$data"; then
      _pg_log "the postgres user cannot reach $data (a parent folder is not traversable)"
      return 1
    fi
    [[ ${PG_EPHEMERAL:-0} == 1 ]] && initdb_opts+=(--no-sync)
    _pg_log "initdb $data"
    _pg_as_owner "$PG_BINDIR/initdb" -D "$data" -U "$PG_SUPERUSER" -A trust -E UTF8 \
      --no-locale "${initdb_opts[@]}" >"$data.initdb.log" 2>&1 || {
      cat "$data.initdb.log" >&2
      return 1
    }
    rm -f "$data.initdb.log"
  fi

  # The socket dir sits beside the data dir unless that path is too long for a Unix socket
  # (~107 bytes) or holds characters pg_ctl's shell-parsed -o string would mangle.
  sock="$data.sock"
  if ((${#sock} > 80)) || [[ $sock =~ [^A-Za-z0-9_./+-] ]]; then
    sock=$(mktemp -d /tmp/primer-pgsock.XXXXXX)
  fi
  _pg_own_dir "$sock"

  for attempt in 1 2 3; do
    port=$(_pg_free_port)
    opts="-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$sock"
    [[ ${PG_EPHEMERAL:-0} == 1 ]] &&
      opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c shared_preload_libraries=pg_stat_statements"
    if out=$(_pg_as_owner "$PG_BINDIR/pg_ctl" start -w -s -D "$data" -l "$data/postgres.log" \
      -o "$opts" 2>&1); then
      _pg_log "started $data on 127.0.0.1:$port"
      export PG_STARTED=1
      _pg_export "$port" "$db"
      return 0
    fi
    # Most likely another process took the port between our pick and the bind: retry.
    _pg_log "start attempt $attempt on port $port failed: $out"
    tail -n 5 "$data/postgres.log" >&2 2>/dev/null || true
  done
  return 1
}

pg_stop() {
  local data sock
  pg_ensure_binaries
  data=$(abspath "$1")
  _pg_running "$data" || return 0
  sock=$(_pg_pidfile_line "$data" 5)
  _pg_as_owner "$PG_BINDIR/pg_ctl" stop -w -s -m fast -D "$data" >/dev/null 2>&1 || {
    _pg_log "pg_ctl stop failed for $data"
    return 1
  }
  _pg_log "stopped $data"
  # An empty socket dir is left behind otherwise (it is re-created at the next start).
  if [[ -n $sock ]]; then rmdir "$sock" 2>/dev/null || true; fi
}

# The psql to use: the server binaries' own, else one on PATH (a client-only install, such as
# Homebrew's libpq, is enough for a server the user already runs).
_pg_psql_bin() {
  if [[ -n ${PG_BINDIR:-} && -x $PG_BINDIR/psql ]]; then
    printf '%s' "$PG_BINDIR/psql"
  elif command -v psql >/dev/null 2>&1; then
    command -v psql
  else
    local dir
    dir=$(_pg_find_bindir)
    [[ -n $dir && -x $dir/psql ]] || return 1
    printf '%s' "$dir/psql"
  fi
}

pg_psql() {
  local url=$1 psql
  shift
  psql=$(_pg_psql_bin) || {
    _pg_log "psql is missing ($(install_hint postgresql))"
    return 1
  }
  PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-5} "$psql" -X -q -v ON_ERROR_STOP=1 -d "$url" "$@"
}

url_with_db() {
  python3 - "$1" "$2" <<'PY_URL'
import sys, urllib.parse
url, db = sys.argv[1], sys.argv[2]
parts = urllib.parse.urlsplit(url)
print(urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(db))))
PY_URL
}

pg_use_server() {
  local url=$1 version
  if ! version=$(pg_psql "$url" -tA -c 'SHOW server_version_num' 2>&1); then
    _pg_log "the server at DATABASE_URL / PRIMER_TEST_ADMIN_URL does not answer: $version"
    return 1
  fi
  if ((version < PG_MIN_MAJOR * 10000)); then
    _pg_log "that server is PostgreSQL $((version / 10000)); primer needs $PG_MIN_MAJOR or later"
    return 1
  fi
  export PG_STARTED=0 DATABASE_URL=$url
  _pg_log "using the PostgreSQL $((version / 10000)) server you run (no cluster started)"
}

ensure_db() {
  local name=$1 admin exists
  admin=$(url_with_db "$DATABASE_URL" postgres)
  # Variables are interpolated in psql's stdin, not in -c: :'db' quotes the name safely.
  exists=$(pg_psql "$admin" -tA -v db="$name" <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")
  if [[ $exists != 1 ]]; then
    pg_psql "$admin" -v db="$name" <<<'CREATE DATABASE :"db";'
    _pg_log "created database $name"
  fi
}

drop_db() {
  local admin
  admin=$(url_with_db "$DATABASE_URL" postgres)
  pg_psql "$admin" -v db="$1" <<<'DROP DATABASE IF EXISTS :"db" WITH (FORCE);' >/dev/null 2>&1
}
