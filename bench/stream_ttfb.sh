#!/usr/bin/env bash
# Time to first byte of a streamed tutor reply through the local runner, and how long after
# the model's first chunk the reader gets the first `delta` (the goal: at most 5 ms added by
# primer). The model is a streaming stub inside bench/stream_ttfb.py, on the same clock as
# its client.
#
#   bench/stream_ttfb.sh [N]        (default N=50; builds the runner with --release)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$repo"
# shellcheck source=scripts/lib/pg.sh
source scripts/lib/pg.sh

n=${1:-50}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/primer-bench.XXXXXX")
chmod 0711 "$tmp"
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
  pg_stop "$tmp/data" || true
  rm -rf "$tmp"
}
trap cleanup EXIT

PG_EPHEMERAL=1 pg_start "$tmp/data" primer
ensure_db primer
cargo build --release -q -p local --bin local
JWT_SECRET=bench-secret-bench-secret-bench-secret PRIMER_BLOB_DIR="$tmp/blobs" \
  python3 bench/stream_ttfb.py "${CARGO_TARGET_DIR:-target}/release/local" "$n"
