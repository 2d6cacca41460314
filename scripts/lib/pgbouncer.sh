# shellcheck shell=bash
# PgBouncer helpers for primer's scripts: a private PgBouncer in transaction mode with
# protocol-level prepared statements, in front of a cluster started by pg.sh, the way Neon's
# pooled URL runs. Debian 12 ships PgBouncer 1.18, which has no max_prepared_statements
# (sqlx's named statements then fail), so a newer one is built from Debian 13's source
# package when the machine has none.
#
# Source it from a script that runs under `set -euo pipefail`, after common.sh and pg.sh. It
# sets no shell options itself.
#
#   bouncer_ensure_binary      sets BOUNCER_BIN to a pgbouncer >= 1.22: one on PATH, or the
#                              one built into ${PRIMER_BOUNCER_DIR:-.local/pgbouncer}, built
#                              there from Debian trixie's source package if missing (root on
#                              Debian only; elsewhere it names the command that installs one).
#   bouncer_start WORKDIR SERVER_URL
#                              writes WORKDIR/pgbouncer.ini (every database name goes to the
#                              server of SERVER_URL, logging in as its user), starts PgBouncer
#                              on 127.0.0.1 and a free port, waits until it answers, exports
#                              BOUNCER_PORT and BOUNCER_URL (SERVER_URL through PgBouncer).
#   bouncer_stop [WORKDIR]     stops it (no-op when it is not running).
#
# Server connections idle for more than BOUNCER_SERVER_IDLE_TIMEOUT seconds (default 0.2)
# are closed: #[sqlx::test] drops each test's database when the test ends, and PostgreSQL
# refuses DROP DATABASE (after waiting up to 5 s) while PgBouncer still holds a connection
# to it.

BOUNCER_MIN_VERSION=1.22
BOUNCER_SOURCE_SUITE=trixie

_bouncer_log() { printf 'pgbouncer: %s\n' "$*" >&2; }

_bouncer_is_root() { [[ $(id -u) -eq 0 ]]; }

# The version of pgbouncer binary $1 ("1.24.1"), or nothing.
_bouncer_version() {
  "$1" --version 2>/dev/null | sed -n 's/^PgBouncer \([0-9][0-9.]*\).*/\1/p' | head -n 1
}

# True when version $1 >= BOUNCER_MIN_VERSION.
_bouncer_version_ok() {
  [[ -n $1 ]] && version_at_least "$1" "$BOUNCER_MIN_VERSION"
}

# The Debian mirror this machine's apt already uses (the deb822 URIs: value, else the first
# `deb URL` line of sources.list).
_bouncer_debian_mirror() {
  local mirror=""
  if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
    mirror=$(awk '$1 == "URIs:" && $2 !~ /security/ { print $2; exit }' \
      /etc/apt/sources.list.d/debian.sources)
  fi
  if [[ -z $mirror && -r /etc/apt/sources.list ]]; then
    mirror=$(awk '$1 == "deb" && $0 !~ /security/ {
      for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
  fi
  printf '%s' "$mirror"
}

# Builds PgBouncer from Debian trixie's source package into prefix $1 (root only: apt).
_bouncer_build() {
  local prefix=$1 mirror work log rc=0
  if ! can_install_packages; then
    _bouncer_log "no pgbouncer >= $BOUNCER_MIN_VERSION found (PATH, /usr/sbin, $prefix);" \
      "install one ($(install_hint pgbouncer)) or put it on PATH"
    return 1
  fi
  mirror=$(_bouncer_debian_mirror)
  if [[ -z $mirror ]]; then
    _bouncer_log "cannot find the Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
    return 1
  fi
  _bouncer_log "building PgBouncer from Debian $BOUNCER_SOURCE_SUITE's source package into $prefix (about a minute)"
  export DEBIAN_FRONTEND=noninteractive
  # Sources only: no binary package ever comes from this suite. Debian 12's archive keyring
  # already holds the trixie signing keys.
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg opts=""
  [[ -r $keyring ]] && opts="[signed-by=$keyring] "
  printf 'deb-src %s%s %s main\n' "$opts" "$mirror" "$BOUNCER_SOURCE_SUITE" \
    >/etc/apt/sources.list.d/primer-pgbouncer-src.list
  apt-get update -q >/dev/null || return 1
  apt-get install -y -q --no-install-recommends \
    gcc make libc6-dev libevent-dev libssl-dev pkg-config xz-utils >/dev/null || return 1

  work=$(mktemp -d "${TMPDIR:-/tmp}/primer-pgbouncer-build.XXXXXX") || return 1
  # apt's sandbox user must be able to write the downloads.
  chmod 0755 "$work"
  log="$work/build.log"
  (
    cd "$work" &&
      apt-get source -q --download-only "pgbouncer/$BOUNCER_SOURCE_SUITE" &&
      tarball=$(find . -maxdepth 1 -name 'pgbouncer_*.orig.tar.*' | head -n 1) &&
      [[ -n $tarball ]] &&
      tar -xf "$tarball" &&
      src=$(find . -maxdepth 1 -type d -name 'pgbouncer-*' | head -n 1) &&
      cd "$src" &&
      ./configure --prefix="$prefix" --without-cares &&
      make -j"$(cpu_count)" &&
      rm -rf "$prefix" &&
      make install
  ) >"$log" 2>&1 || rc=$?
  if ((rc != 0)); then
    _bouncer_log "build failed (exit $rc); the end of its log:"
    tail -n 30 "$log" >&2
    rm -rf "$work"
    return 1
  fi
  rm -rf "$work"
}

bouncer_ensure_binary() {
  local dir candidate ver
  if [[ -n ${BOUNCER_BIN:-} ]] && _bouncer_version_ok "$(_bouncer_version "$BOUNCER_BIN")"; then
    return 0
  fi
  dir=$(abspath "${PRIMER_BOUNCER_DIR:-.local/pgbouncer}")
  for candidate in "$dir/bin/pgbouncer" "$(command -v pgbouncer 2>/dev/null)" /usr/sbin/pgbouncer; do
    [[ -n $candidate && -x $candidate ]] || continue
    ver=$(_bouncer_version "$candidate")
    if _bouncer_version_ok "$ver"; then
      BOUNCER_BIN=$candidate
      export BOUNCER_BIN
      return 0
    fi
  done
  _bouncer_build "$dir" || return 1
  ver=$(_bouncer_version "$dir/bin/pgbouncer")
  if ! _bouncer_version_ok "$ver"; then
    _bouncer_log "the built $dir/bin/pgbouncer reports version '${ver:-?}', want >= $BOUNCER_MIN_VERSION"
    return 1
  fi
  _bouncer_log "built PgBouncer $ver"
  BOUNCER_BIN="$dir/bin/pgbouncer"
  export BOUNCER_BIN
}

# Run a command as the postgres OS user when we are root (PgBouncer refuses root too).
_bouncer_as_owner() {
  if _bouncer_is_root; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# The parts of a PostgreSQL URL, one per line: host (or socket folder), port, user, password,
# database.
_bouncer_url_parts() {
  python3 - "$1" <<'PY_URL'
import getpass, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
query = dict(urllib.parse.parse_qsl(u.query))
print(urllib.parse.unquote(u.hostname or "") or query.get("host", "127.0.0.1"))
print(u.port or query.get("port", 5432))
print(urllib.parse.unquote(u.username or "") or query.get("user") or getpass.getuser())
print(urllib.parse.unquote(u.password or "") or query.get("password", ""))
print(urllib.parse.unquote(u.path.lstrip("/")) or "postgres")
PY_URL
}

_bouncer_pid() {
  local pid
  pid=$(cat "$1/pgbouncer.pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && printf '%s' "$pid"
}

BOUNCER_WORKDIR=""

bouncer_start() {
  local dir=$1 server=$2 bin port attempt i out host pgport user password db
  bouncer_ensure_binary || return 1
  { read -r host; read -r pgport; read -r user; read -r password; read -r db; } < <(_bouncer_url_parts "$server")
  dir=$(abspath "$dir")
  mkdir -p "$dir"
  if _bouncer_is_root; then chown postgres: "$dir"; fi
  chmod 0700 "$dir"
  bin=$BOUNCER_BIN
  # The server's user must be able to run the binary: copy it in when a parent folder of
  # the cache (e.g. under /root) is out of its reach.
  if _bouncer_is_root && ! runuser -u postgres -- test -x "$bin" 2>/dev/null; then
    cp "$bin" "$dir/pgbouncer"
    chown postgres: "$dir/pgbouncer"
    bin="$dir/pgbouncer"
  fi
  # trust: clients give no password, but their user must be listed; PgBouncer logs in to the
  # server with the password listed here (empty for a trusting local cluster).
  (
    umask 077
    printf '"%s" "%s"\n' "$user" "$password" >"$dir/userlist.txt"
  )
  if _bouncer_is_root; then chown postgres: "$dir/userlist.txt"; fi

  for attempt in 1 2 3; do
    port=$(free_port)
    cat >"$dir/pgbouncer.ini" <<EOF
; Written by scripts/lib/pgbouncer.sh: transaction pooling as on Neon's pooled URL.
[databases]
* = host=$host port=$pgport

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
admin_users = $user
pool_mode = transaction
max_prepared_statements = 1000
default_pool_size = 4
max_client_conn = 2000
server_reset_query =
server_idle_timeout = ${BOUNCER_SERVER_IDLE_TIMEOUT:-0.2}
; Test databases come and go: a server login that raced a test's DROP DATABASE must not
; refuse later logins to that name (a rerun's test gets the same database name). PgBouncer
; keeps a failed login's error with the database's pool, so the pool of a database nobody
; uses any more is dropped after a second.
server_login_retry = 0.1
autodb_idle_timeout = 1
ignore_startup_parameters = extra_float_digits,options
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
EOF
    if _bouncer_is_root; then chown postgres: "$dir/pgbouncer.ini"; fi
    # -d daemonizes; its inherited stdio must not keep a caller's $(...) pipe open.
    if ! out=$(_bouncer_as_owner "$bin" -d "$dir/pgbouncer.ini" </dev/null 2>&1 >/dev/null); then
      _bouncer_log "start attempt $attempt failed: $out"
      tail -n 5 "$dir/pgbouncer.log" >&2 2>/dev/null || true
      continue
    fi
    BOUNCER_URL="postgres://$user@127.0.0.1:$port/$db"
    for i in $(seq 50); do
      if PGCONNECT_TIMEOUT=2 pg_psql "$BOUNCER_URL" -tA -c 'SELECT 1' 2>/dev/null | grep -qx 1; then
        BOUNCER_WORKDIR=$dir
        export BOUNCER_PORT=$port BOUNCER_URL
        _bouncer_log "PgBouncer $(_bouncer_version "$bin") on 127.0.0.1:$port -> $host:$pgport (transaction mode)"
        return 0
      fi
      _bouncer_pid "$dir" >/dev/null || ((i < 5)) || break
      sleep 0.1
    done
    # Most likely another process took the port between our pick and the bind: retry.
    _bouncer_log "start attempt $attempt on port $port: no answer"
    tail -n 5 "$dir/pgbouncer.log" >&2 2>/dev/null || true
    bouncer_stop "$dir" || true
  done
  return 1
}

bouncer_stop() {
  local dir=${1:-$BOUNCER_WORKDIR} pid i
  [[ -n $dir ]] || return 0
  pid=$(_bouncer_pid "$dir") || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || {
      _bouncer_log "stopped"
      return 0
    }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}
