#!/usr/bin/env bash
# Garbage collection: Berth (online, beside its running server) against CNCF Distribution
# (Debian's docker-registry; its garbage-collect needs the registry stopped).
#
#   bench/gc.sh [--images N] [--repos R] [--regbench BIN] [--out FILE] [--berth-only]
#               [--postgres] [--dry-runs K]
#
# For each registry: regbench push-many of N images (4 layers of 1-4 KiB, a config, a
# manifest) into R repositories; then every other manifest is deleted through the API (by
# digest); then a dry run and a full collection, each timed with /usr/bin/time (wall seconds,
# peak RSS) while its anonymous memory is sampled. Berth collects with `berth gc` on the same
# index and store while its server keeps serving (grace 0: everything unreferenced goes);
# Distribution with `registry garbage-collect` after its server is stopped. Defaults: 20000
# images, 50 repositories.
# --dry-runs K times Berth's dry run K times on the same data before the full run (default 1).
# --postgres puts Berth's index on a PostgreSQL of the benchmark's own
# (scripts/services/postgres.sh on BERTH_PG_PORT, default 25443; stopped at the end).
# Berth is built in release first (target/release/berth).
set -euo pipefail

images=20000
repos=50
root=$(cd "$(dirname "$0")/.." && pwd)
regbench=$root/target/regbench/release/regbench
out=
distribution=1
postgres=0
dry_runs=1
while [ $# -gt 0 ]; do
  case $1 in
    --images) images=${2:?}; shift 2 ;;
    --repos) repos=${2:?}; shift 2 ;;
    --regbench) regbench=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --berth-only) distribution=0; shift ;;
    --postgres) postgres=1; shift ;;
    --dry-runs) dry_runs=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 64 ;;
  esac
done
[ -x "$regbench" ] || { echo "no regbench at $regbench (--regbench BIN)" >&2; exit 1; }
command -v docker-registry >/dev/null || { echo "docker-registry not installed" >&2; exit 1; }
cargo build --release --manifest-path "$root/Cargo.toml" --bin berth
berth=$root/target/release/berth
[ -n "$out" ] || { mkdir -p "$root/target/bench"; out=$root/target/bench/gc-$(date +%Y%m%d-%H%M%S).txt; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/berth-gc-bench.XXXXXX")
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  [ "$postgres" = 1 ] && bash "$root/scripts/services/postgres.sh" stop
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_ready() { # url pid
  for _ in $(seq 300); do
    curl -sf -o /dev/null "$1/v2/" && return 0
    kill -0 "$2" 2>/dev/null || { echo "server exited" >&2; exit 1; }
    sleep 0.1
  done
  echo "no answer from $1" >&2; exit 1
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

push_and_delete() { # label url pid
  "$regbench" --registry "$2" --server-pid "$3" --state "$tmp/state-$1.json" push-many \
    --images "$images" --repos "$repos" --layers 4 --min-kib 1 --max-kib 4 | sed "s/^/  [$1] /"
  python3 - "$2" "$tmp/state-$1.json" <<'EOF'
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
base, state = sys.argv[1], json.load(open(sys.argv[2]))
doomed = state["many"][::2]
def delete(img):
    req = urllib.request.Request(f"{base}/v2/{img['repo']}/manifests/{img['manifest_digest']}", method="DELETE")
    with urllib.request.urlopen(req) as r:
        assert r.status == 202, r.status
with ThreadPoolExecutor(16) as pool:
    list(pool.map(delete, doomed))
blobs = {b["digest"] for img in state["many"] for b in img["blobs"]}
freed = {b["digest"] for img in doomed for b in img["blobs"]}
print(f"  deleted {len(doomed)} of {len(state['many'])} manifests; {len(freed)} of {len(blobs)} blobs unreferenced")
EOF
}

timed() { # label command...: wall seconds, peak RSS, and peak anonymous memory of the command
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$tmp/time" "$@" >"$tmp/cmd.out" 2>&1 &
  local pid=$! child= anon=0 key value _
  # RSS counts the pages of the index file Berth maps (SQLite mmap) and of its binary; the
  # anonymous part (heap, stacks) is what the run itself allocates, sampled every 50 ms.
  while kill -0 "$pid" 2>/dev/null; do
    [ -n "$child" ] || read -r child _ <"/proc/$pid/task/$pid/children" 2>/dev/null || true
    if [ -n "$child" ]; then
      while read -r key value _; do
        [ "$key" = RssAnon: ] && [ "$value" -gt "$anon" ] && anon=$value
      done <"/proc/$child/status" 2>/dev/null || true
    fi
    sleep 0.05
  done
  wait "$pid" || { cat "$tmp/cmd.out" >&2; exit 1; }
  read -r wall kib <"$tmp/time"
  printf '%-34s wall %7.2f s   peak RSS %7.1f MiB   peak anonymous %7.1f MiB\n' "$label" "$wall" \
    "$(echo "$kib / 1024" | bc -l)" "$(echo "$anon / 1024" | bc -l)" | tee -a "$out"
  tail -n 3 "$tmp/cmd.out" | sed 's/^/    /' | tee -a "$out"
}

index=SQLite
if [ "$postgres" = 1 ]; then
  export BERTH_PG_PORT=${BERTH_PG_PORT:-25443}
  eval "$(bash "$root/scripts/services/postgres.sh")"
  psql -q "$BERTH_TEST_DATABASE_URL" -c "CREATE DATABASE berth_gc_bench"
  export BERTH_DATABASE_URL=${BERTH_TEST_DATABASE_URL%/*}/berth_gc_bench
  index=PostgreSQL
fi
echo "gc benchmark: $images images, $repos repositories, 4 layers of 1-4 KiB, Berth on $index ($(date -u))" | tee "$out"

# --- Berth: SQLite (or PostgreSQL) + filesystem, server running throughout ---
mkdir -p "$tmp/berth-data"
cat >"$tmp/berth.toml" <<EOF
[gc]
continuous = false
grace_secs = 0
EOF
berth_port=$(free_port)
NO_COLOR=1 BERTH_LOG=warn "$berth" serve --config "$tmp/berth.toml" --data-dir "$tmp/berth-data" \
  --listen "127.0.0.1:$berth_port" 2>"$tmp/berth.log" &
berth_pid=$!; pids+=("$berth_pid")
berth_url=http://127.0.0.1:$berth_port
wait_ready "$berth_url" "$berth_pid"
push_and_delete berth "$berth_url" "$berth_pid"
gc=("$berth" gc --config "$tmp/berth.toml" --data-dir "$tmp/berth-data")
for run in $(seq "$dry_runs"); do
  timed "berth gc --dry-run (online) #$run" "${gc[@]}" --dry-run
done
timed "berth gc estimate (online)" "${gc[@]}" estimate
timed "berth gc (online, full)" "${gc[@]}"
timed "berth gc --dry-run (after)" "${gc[@]}" --dry-run

# --- Distribution: filesystem; garbage-collect offline ---
[ "$distribution" = 1 ] || { echo "results in $out"; exit 0; }
port=$(free_port)
mkdir -p "$tmp/dist-data"
cat >"$tmp/distribution.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $tmp/dist-data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$tmp/distribution.yml" >"$tmp/distribution.log" 2>&1 &
dist_pid=$!; pids+=("$dist_pid")
wait_ready "http://127.0.0.1:$port" "$dist_pid"
push_and_delete distribution "http://127.0.0.1:$port" "$dist_pid"
kill -TERM "$dist_pid"; wait "$dist_pid" 2>/dev/null || true
timed "registry garbage-collect --dry-run" docker-registry garbage-collect --dry-run "$tmp/distribution.yml"
timed "registry garbage-collect (offline)" docker-registry garbage-collect "$tmp/distribution.yml"
echo "results in $out"
