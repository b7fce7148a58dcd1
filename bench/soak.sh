#!/usr/bin/env bash
# Soak: Berth under mixed traffic (pulls, pushes, tag moves, deletes, a collection a minute)
# at c=64 for a long time, its RSS, descriptors and latencies sampled (bench/soak.py).
#
#   bench/soak.sh [--minutes 30] [--concurrency 64] [--keep N] [--gc-every SECONDS] [--postgres]
#                 [--out DIR] [--no-build]
#
# --gc-every sets the seconds between collections (default 60; 0 runs none).
# --keep N deletes churn images while more than N are kept, so the index settles at a steady
# size (without it pushes outnumber deletes and the index grows for the whole run).
# Berth runs with its default configuration on a temporary data dir: SQLite, or with
# --postgres a PostgreSQL of the benchmark's own (scripts/services/postgres.sh on
# BERTH_PG_PORT, default 25444; stopped at the end). Results go to DIR (default
# target/bench/soak-<index>-<time>/): samples.csv, latency.csv, collections.csv (each
# collection's phases), soak.svg and summary.txt.
# Exits non-zero when any request failed.
set -euo pipefail

minutes=30
concurrency=64
keep=0
gc_every=60
postgres=0
build=1
out=
root=$(cd "$(dirname "$0")/.." && pwd)
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) minutes=${2:?}; shift 2 ;;
    --concurrency) concurrency=${2:?}; shift 2 ;;
    --keep) keep=${2:?}; shift 2 ;;
    --gc-every) gc_every=${2:?}; shift 2 ;;
    --postgres) postgres=1; shift ;;
    --out) out=${2:?}; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 64 ;;
  esac
done
[ "$build" = 1 ] && cargo build --release --manifest-path "$root/Cargo.toml" --bin berth
berth=$root/target/release/berth
index=sqlite
[ "$postgres" = 1 ] && index=postgres
[ -n "$out" ] || out=$root/target/bench/soak-$index-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/berth-soak.XXXXXX")
berth_pid=
cleanup() {
  set +e
  if [ -n "$berth_pid" ]; then kill -TERM "$berth_pid" 2>/dev/null; wait "$berth_pid" 2>/dev/null; fi
  [ "$postgres" = 1 ] && bash "$root/scripts/services/postgres.sh" stop
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$postgres" = 1 ]; then
  export BERTH_PG_PORT=${BERTH_PG_PORT:-25444}
  eval "$(bash "$root/scripts/services/postgres.sh")"
  db=berth_soak_$(date +%s)
  psql -q "$BERTH_TEST_DATABASE_URL" -c "CREATE DATABASE $db"
  export BERTH_DATABASE_URL=${BERTH_TEST_DATABASE_URL%/*}/$db
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
NO_COLOR=1 BERTH_LOG=warn "$berth" serve --data-dir "$tmp/data" --listen "127.0.0.1:$port" \
  2>"$out/berth.log" &
berth_pid=$!
for _ in $(seq 300); do
  curl -sf -o /dev/null "http://127.0.0.1:$port/v2/" && break
  kill -0 "$berth_pid" 2>/dev/null || { echo "berth exited (see $out/berth.log)" >&2; exit 1; }
  sleep 0.1
done

echo "soak: $minutes min, c=$concurrency, keep=$keep, Berth on $index ($(date -u))" |
  tee "$out/summary.txt"
index_file=
[ "$postgres" = 1 ] || index_file=$tmp/data/berth.db
status=0
python3 "$root/bench/soak.py" --url "http://127.0.0.1:$port" --pid "$berth_pid" \
  --minutes "$minutes" --concurrency "$concurrency" --keep "$keep" --gc-every "$gc_every" \
  --index-file "$index_file" --out "$out" | tee -a "$out/summary.txt" ||
  status=1
exit "$status"
