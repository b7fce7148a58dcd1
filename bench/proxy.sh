#!/usr/bin/env bash
# The pull-through cache against plain pulls, with the neutral client regbench:
#   cached  pull-many through a caching Berth whose images are all cached already, against
#           pull-many of the same images straight from the upstream Berth (a plain pull):
#           what a hit costs.
#   cold    pull-large of a fresh blob through the caching Berth (a miss: streamed from the
#           upstream while it is stored and verified), against pull-large of the same blob
#           straight from the upstream; with each server's peak RSS.
#
#   bench/proxy.sh [--rounds K] [--images N] [--size MiB] [--regbench BIN] [--berth BIN]
#                  [--out FILE]
#
# Two Berths (SQLite + local disk, fresh data dirs, loopback): the upstream, and a cache
# with one [[proxy]] rule `hub` -> the upstream (tag_ttl 1d, so cached tags are served
# without asking the upstream, as within any TTL). push-many fills the upstream once; one
# pull-many through the cache fills the cache (reported as `fill`). Then K rounds, the order
# of the two alternating per round: pull-many direct and cached; push-large of a fresh
# --size MiB blob to the upstream, then pull-large of it direct and through the cache.
# Medians over the rounds with min-max, and the ratios. Defaults: 3 rounds, 200 images,
# 512 MiB. Without --berth, Berth is built in release first. regbench: bench/run.sh
# --regbench DIR builds it into target/regbench.
set -euo pipefail

rounds=3
images=200
size=512
root=$(cd "$(dirname "$0")/.." && pwd)
regbench=$root/target/regbench/release/regbench
berth=
out=
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=${2:?}; shift 2 ;;
    --images) images=${2:?}; shift 2 ;;
    --size) size=${2:?}; shift 2 ;;
    --regbench) regbench=${2:?}; shift 2 ;;
    --berth) berth=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 64 ;;
  esac
done
[ -x "$regbench" ] || { echo "no regbench at $regbench (--regbench BIN)" >&2; exit 1; }
if [ -z "$berth" ]; then
  cargo build --release --locked --bin berth --manifest-path "$root/Cargo.toml"
  berth=$root/target/release/berth
fi
mkdir -p "$root/target/bench"
out=${out:-$root/target/bench/proxy-$(date +%Y%m%d-%H%M%S).jsonl}
work=$(mktemp -d "${TMPDIR:-/tmp}/berth-proxy-bench.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# start NAME [ENV=VALUE...]: a release Berth on a free loopback port; sets ADDR and PID.
start() {
  local name=$1; shift
  env "$@" NO_COLOR=1 BERTH_LOG=warn,berth=info "$berth" serve --data-dir "$work/$name" \
    --listen 127.0.0.1:0 2>"$work/$name.log" &
  PID=$!
  pids+=("$PID")
  ADDR=
  for _ in $(seq 1 300); do
    ADDR=$(grep -o 'address=127\.0\.0\.1:[0-9]*' "$work/$name.log" | head -n1 | cut -d= -f2 || true)
    [ -n "$ADDR" ] && return 0
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "berth ($name) did not start:" >&2; cat "$work/$name.log" >&2; exit 1
}

start upstream
up=http://$ADDR up_pid=$PID
printf '[[proxy]]\nprefix = "hub"\nupstreams = [{ url = "%s" }]\ntag_ttl = "1d"\n' "$up" \
  >"$work/cache.toml"
start cache BERTH_CONFIG="$work/cache.toml"
cache=http://$ADDR cache_pid=$PID
echo "upstream $up (pid $up_pid), cache $cache (pid $cache_pid), results in $out"

rb() { "$regbench" --json "$out" "$@"; }
rb --registry "$up" --state "$work/up.json" --label fill push-many --images "$images"
# The same images through the cache: the state file's repositories under the prefix.
python3 - "$work/up.json" "$work/cache.json" "$cache" <<'EOF'
import json, sys
state = json.load(open(sys.argv[1]))
state["registry"] = sys.argv[3].rstrip("/") + "/"  # as regbench writes it
for image in state["many"]:
    image["repo"] = "hub/" + image["repo"]
json.dump(state, open(sys.argv[2], "w"))
EOF
rb --registry "$cache" --state "$work/cache.json" --server-pid "$cache_pid" --label fill pull-many

pull_many() {
  case $1 in
    direct) rb --registry "$up" --state "$work/up.json" --server-pid "$up_pid" --label direct pull-many ;;
    cached) rb --registry "$cache" --state "$work/cache.json" --server-pid "$cache_pid" --label cached pull-many ;;
  esac
}
pull_large() {
  case $1 in
    direct) rb --registry "$up" --server-pid "$up_pid" --label direct \
              pull-large --repo "$large_repo" --digest "$large_digest" ;;
    cached) rb --registry "$cache" --server-pid "$cache_pid" --label cold \
              pull-large --repo "hub/$large_repo" --digest "$large_digest" ;;
  esac
}
for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) = 1 ]; then order="direct cached"; else order="cached direct"; fi
  echo "== round $round of $rounds ($order)"
  for who in $order; do pull_many "$who"; done
  rm -f "$work/large.json"
  rb --registry "$up" --state "$work/large.json" --label fill push-large --size "$size" \
    --mode monolithic
  read -r large_repo large_digest < <(python3 -c '
import json, sys
large = json.load(open(sys.argv[1]))["large"]
print(large["repo"], large["digest"])' "$work/large.json")
  for who in $order; do pull_large "$who"; done
done

python3 - "$out" <<'EOF'
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
failed = [l for l in lines if not l["ok"]]
if failed:
    print(f"{len(failed)} runs failed; first: {failed[0]['error']}")
def figures(scenario, label, key):
    return [l["results"][key] for l in lines
            if l["scenario"] == scenario and l["label"] == label and l["ok"]]
def rss(scenario, label):
    return [l["server"]["peak_rss_kib"] / 1024 for l in lines
            if l["scenario"] == scenario and l["label"] == label and l["ok"] and l["server"]]
def show(values, unit):
    if not values:
        return "none"
    return (f"{statistics.median(values):.1f} {unit} "
            f"({min(values):.1f}-{max(values):.1f}, {len(values)} runs)")
print("pull-many, images/s:")
for label in ["direct", "cached"]:
    p50 = [x["p50_ms"] for x in figures("pull-many", label, "latency")]
    print(f"  {label:7} {show(figures('pull-many', label, 'images_per_s'), 'images/s')}, "
          f"p50 latency {show(p50, 'ms')}")
direct = figures("pull-many", "direct", "images_per_s")
cached = figures("pull-many", "cached", "images_per_s")
if direct and cached:
    print(f"  cached/direct: {statistics.median(cached) / statistics.median(direct):.3f}")
print("pull-large, MB/s (server peak RSS):")
for label in ["direct", "cold"]:
    print(f"  {label:7} {show(figures('pull-large', label, 'mb_s'), 'MB/s')}, "
          f"RSS {show(rss('pull-large', label), 'MiB')}")
direct = figures("pull-large", "direct", "mb_s")
cold = figures("pull-large", "cold", "mb_s")
if direct and cold:
    print(f"  cold/direct: {statistics.median(cold) / statistics.median(direct):.3f}")
fill = figures("pull-many", "fill", "images_per_s")
if fill:
    print(f"filling the cache: pull-many {show(fill, 'images/s')}")
sys.exit(1 if failed else 0)
EOF
