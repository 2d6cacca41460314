# shellcheck shell=bash
# Small portable helpers for primer's scripts (Linux and macOS, bash 4 or later): what GNU
# coreutils spell one way and the BSD tools another, and how a missing tool is reported.
#
#   abspath PATH          PATH made absolute and normalised, whether or not it exists
#                         (what GNU `realpath -m` does; macOS's realpath has no -m)
#   sha256_of FILE        the hex SHA-256 of FILE (sha256sum, else shasum -a 256)
#   free_port             a TCP port on 127.0.0.1 that nobody listens on right now
#   cpu_count             the number of CPUs
#   version_at_least V M  true when dotted version V is M or later (what `sort -V` would say)
#   is_root               true when running as root
#   can_install_packages  true where primer installs system packages itself: Debian or
#                         Ubuntu (apt-get), as root. Elsewhere a missing tool is named with
#                         the command that installs it, never installed behind the user's back.
#   install_hint NAME     the command that installs NAME on this kind of machine
#
# Sets no shell options: it is sourced by scripts that run under `set -euo pipefail`.

if ((BASH_VERSINFO[0] < 4)); then
  echo "primer's scripts need bash 4 or later (this is $BASH_VERSION; macOS: brew install bash)" >&2
  exit 1
fi

abspath() {
  python3 -c 'import os, sys; print(os.path.abspath(sys.argv[1]))' "$1"
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

free_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

cpu_count() {
  getconf _NPROCESSORS_ONLN 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 2
}

version_at_least() {
  python3 - "$1" "$2" <<'PY_VERSION'
import re, sys
def parts(v):
    return [int(n) for n in re.findall(r"\d+", v)]
sys.exit(0 if sys.argv[1] and parts(sys.argv[1]) >= parts(sys.argv[2]) else 1)
PY_VERSION
}

is_root() { [[ $(id -u) -eq 0 ]]; }

can_install_packages() {
  is_root && command -v apt-get >/dev/null 2>&1 && [[ -r /etc/debian_version ]]
}

# The install command for tool NAME (postgresql, pgbouncer, chromium, python3-venv, node).
install_hint() {
  local name=$1 brew apt dnf
  case $name in
    postgresql) brew="brew install postgresql@16" apt="apt-get install postgresql" dnf="dnf install postgresql-server" ;;
    pgbouncer) brew="brew install pgbouncer" apt="apt-get install pgbouncer (1.22 or later: Debian 13, Ubuntu 24.04)" dnf="dnf install pgbouncer" ;;
    chromium) brew="brew install --cask chromium" apt="apt-get install chromium" dnf="dnf install chromium" ;;
    python3-venv) brew="brew install python" apt="apt-get install python3-venv" dnf="dnf install python3" ;;
    node) brew="brew install node" apt="apt-get install nodejs npm (Node 20 or later)" dnf="dnf install nodejs npm" ;;
    *) brew="brew install $name" apt="apt-get install $name" dnf="dnf install $name" ;;
  esac
  if [[ $(uname -s) == Darwin ]]; then
    printf '%s' "$brew"
  elif command -v apt-get >/dev/null 2>&1; then
    printf 'sudo %s' "$apt"
  elif command -v dnf >/dev/null 2>&1; then
    printf 'sudo %s' "$dnf"
  else
    printf "your system's package manager (%s)" "$name"
  fi
}
