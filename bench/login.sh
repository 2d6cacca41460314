#!/usr/bin/env bash
# Login latency through the local runner, as a client sees it: the median of N logins with
# the right password, a wrong password and an unknown email. The last two must cost the
# same (the unknown email is verified against a dummy hash), so their ratio is printed too.
#
#   bench/login.sh [N]        (default N=30; builds the runner with --release)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$repo"
# shellcheck source=scripts/lib/pg.sh
source scripts/lib/pg.sh

n=${1:-30}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/primer-bench.XXXXXX")
chmod 0711 "$tmp"
server=""
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
  [[ -n $server ]] && kill "$server" 2>/dev/null || true
  pg_stop "$tmp/data" || true
  rm -rf "$tmp"
}
trap cleanup EXIT

PG_EPHEMERAL=1 pg_start "$tmp/data" primer
ensure_db primer
cargo build --release -q -p local
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
JWT_SECRET=bench-secret-bench-secret-bench-secret PORT=$port PRIMER_BLOB_DIR="$tmp/blobs" RUST_LOG=warn \
  target/release/local &
server=$!
base="http://127.0.0.1:$port/api/auth"
for _ in $(seq 50); do curl -sf "$base/../openapi.json" >/dev/null && break; sleep 0.2; done

post() { curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -X POST "$base/$1" -H 'content-type: application/json' -d "$2"; }
post register '{"email":"bench@example.com","password":"correct horse battery","name":"Bench"}' >/dev/null

# Each login from a fresh address would be nicer, but the runner sees 127.0.0.1 for all:
# keep the failing runs under the per-IP limit (20) by clearing the failures table.
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2) * 1000}'; }
run() {
  local body=$1
  for _ in $(seq "$n"); do
    psql "$DATABASE_URL" -qAt -c 'DELETE FROM login_failures' >/dev/null
    post login "$body" | awk '{print $2}'
  done | median
}
ok=$(run '{"email":"bench@example.com","password":"correct horse battery"}')
wrong=$(run '{"email":"bench@example.com","password":"not the password"}')
unknown=$(run '{"email":"nobody@example.com","password":"not the password"}')
python3 -c 'import sys; n, ok, wrong, unknown = sys.argv[1:]; print(f"login medians over {n} runs (ms): success {float(ok):.1f}, wrong password {float(wrong):.1f}, unknown email {float(unknown):.1f}; unknown/wrong = {float(unknown)/float(wrong):.2f}")' \
  "$n" "$ok" "$wrong" "$unknown"
