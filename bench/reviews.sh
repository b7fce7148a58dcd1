#!/usr/bin/env bash
# What continuous collection costs pushes: regbench push-many against Berth with reviews off,
# and with every review run as soon as it is queued.
#
#   bench/reviews.sh [--images N] [--repos R] [--rounds K] [--regbench BIN] [--out FILE]
#
# Each round starts a fresh Berth (SQLite + local disk) per mode, in turn:
#   off      [gc] continuous = false
#   reviews  [gc] continuous = true, review_delay_secs = 0, poll_millis = 100
# Every blob upload queues a review of its repository, so in "reviews" the workers review the
# repositories being pushed to all through the run (the grace period keeps its default, so
# nothing in flight is collected). Reports, per mode, the median over the rounds of images/s
# and of the p50/p90 latency of all requests, and the cost of reviews against "off".
# Defaults: 4000 images, 50 repositories, 3 rounds. Berth is built in release first.
set -euo pipefail

images=4000
repos=50
rounds=3
root=$(cd "$(dirname "$0")/.." && pwd)
regbench=$root/target/regbench/release/regbench
out=
while [ $# -gt 0 ]; do
  case $1 in
    --images) images=${2:?}; shift 2 ;;
    --repos) repos=${2:?}; shift 2 ;;
    --rounds) rounds=${2:?}; shift 2 ;;
    --regbench) regbench=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 64 ;;
  esac
done
[ -x "$regbench" ] || { echo "no regbench at $regbench (--regbench BIN)" >&2; exit 1; }
cargo build --release --manifest-path "$root/Cargo.toml" --bin berth
berth=$root/target/release/berth
[ -n "$out" ] || { mkdir -p "$root/target/bench"; out=$root/target/bench/reviews-$(date +%Y%m%d-%H%M%S).txt; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/berth-reviews-bench.XXXXXX")
server=
cleanup() {
  set +e
  [ -n "$server" ] && { kill -TERM "$server" 2>/dev/null; wait "$server" 2>/dev/null; }
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

cat >"$tmp/off.toml" <<EOF
[gc]
continuous = false
EOF
cat >"$tmp/reviews.toml" <<EOF
[gc]
continuous = true
review_delay_secs = 0
poll_millis = 100
EOF

echo "continuous collection and push-many: $images images, $repos repositories, $rounds rounds ($(date -u))" | tee "$out"
for round in $(seq "$rounds"); do
  for mode in off reviews; do
    rm -rf "$tmp/data"
    port=$(free_port)
    NO_COLOR=1 BERTH_LOG=warn "$berth" serve --config "$tmp/$mode.toml" --data-dir "$tmp/data" \
      --listen "127.0.0.1:$port" 2>"$tmp/berth.log" &
    server=$!
    for _ in $(seq 300); do
      curl -sf -o /dev/null "http://127.0.0.1:$port/v2/" && break
      kill -0 "$server" 2>/dev/null || { cat "$tmp/berth.log" >&2; exit 1; }
      sleep 0.1
    done
    "$regbench" --registry "http://127.0.0.1:$port" --server-pid "$server" \
      --state "$tmp/state.json" push-many --images "$images" --repos "$repos" \
      --layers 4 --min-kib 1 --max-kib 4 >"$tmp/push.out"
    reviews=$(sqlite3 "$tmp/data/berth.db" \
      "SELECT COUNT(*) FROM jobs WHERE kind = 'review_repository' AND state = 'done'")
    kill -TERM "$server"; wait "$server" 2>/dev/null || true; server=
    python3 - "$tmp/push.out" "$mode" "$round" "$reviews" <<'EOF' | tee -a "$out"
import re, sys
text, mode, rnd, reviews = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3], sys.argv[4]
rate = float(re.search(r"= ([\d.]+) images/s", text).group(1))
m = re.search(r"all requests: n=\d+ p50=([\d.]+)ms p90=([\d.]+)ms", text)
print(f"round {rnd} {mode:8} {rate:8.1f} images/s  p50 {m.group(1)} ms  p90 {m.group(2)} ms  reviews run {reviews}")
EOF
  done
done
python3 - "$out" <<'EOF' | tee -a "$out"
import re, statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.startswith("round ")]
def median(mode, i):
    return statistics.median(float(r[i]) for r in rows if r[2] == mode)
off, on = [(median(m, 3), median(m, 6), median(m, 9)) for m in ("off", "reviews")]
print(f"median off:     {off[0]:.1f} images/s, p50 {off[1]:.2f} ms, p90 {off[2]:.2f} ms")
print(f"median reviews: {on[0]:.1f} images/s, p50 {on[1]:.2f} ms, p90 {on[2]:.2f} ms")
print(f"reviews cost: throughput {100 * (off[0] - on[0]) / off[0]:+.1f}%, "
      f"p50 latency {100 * (on[1] - off[1]) / off[1]:+.1f}%, p90 latency {100 * (on[2] - off[2]) / off[2]:+.1f}%")
EOF
echo "results in $out"
