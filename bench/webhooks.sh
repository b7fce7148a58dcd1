#!/usr/bin/env bash
# What webhooks cost pushes: regbench push-many against Berth with no subscription, and with
# three (every push event written to the outbox three times, in the push's transaction),
# first with the sender idle (the outbox's own cost), then sending to a local receiver while
# the pushes go on.
#
#   bench/webhooks.sh [--images N] [--repos R] [--rounds K] [--batch B] [--regbench BIN]
#                     [--berth BIN] [--out FILE]
#
# Each round starts a fresh Berth (SQLite + local disk) per mode, in an order that turns
# each round:
#   none    no subscription
#   outbox  three subscriptions to push events, the sender idle during the run
#   three   the same three (distribution, harbor and cloudevents formats, signed), sent to a
#           receiver on loopback that answers 204 while the pushes go on
#   batched the same, but the distribution and cloudevents subscriptions take up to
#           --batch events a request (default 100); harbor's payload is one event each
# Reports, per mode, the median over the rounds of images/s and of the p50/p90 latency of all
# requests, the cost of "three" and "batched" against "none" (also per round), how many deliveries were sent
# by the time the pushes ended, and the server's and the receiver's CPU time. Defaults: 2000
# images, 20 repositories, 3 rounds. Without --berth, Berth is built in release first.
set -euo pipefail

images=2000
repos=20
rounds=3
batch=100
root=$(cd "$(dirname "$0")/.." && pwd)
regbench=$root/target/regbench/release/regbench
berth=
out=
while [ $# -gt 0 ]; do
  case $1 in
    --images) images=${2:?}; shift 2 ;;
    --repos) repos=${2:?}; shift 2 ;;
    --rounds) rounds=${2:?}; shift 2 ;;
    --batch) batch=${2:?}; shift 2 ;;
    --regbench) regbench=${2:?}; shift 2 ;;
    --berth) berth=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 64 ;;
  esac
done
[ -x "$regbench" ] || { echo "no regbench at $regbench (--regbench BIN)" >&2; exit 1; }
if [ -z "$berth" ]; then
  cargo build --release --manifest-path "$root/Cargo.toml" --bin berth
  berth=$root/target/release/berth
fi
[ -n "$out" ] || { mkdir -p "$root/target/bench"; out=$root/target/bench/webhooks-$(date +%Y%m%d-%H%M%S).txt; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/berth-webhooks-bench.XXXXXX")
server=
receiver=
cleanup() {
  set +e
  [ -n "$server" ] && { kill -TERM "$server" 2>/dev/null; wait "$server" 2>/dev/null; }
  [ -n "$receiver" ] && { kill -TERM "$receiver" 2>/dev/null; wait "$receiver" 2>/dev/null; }
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# utime + stime of a process, in seconds.
cpu_secs() {
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

receiver_port=$(free_port)
# The receiver answers 204 to each request of a keep-alive connection and parses nothing but
# the length: it shares the machine's cores with Berth and regbench, so what it spends is
# taken from the pushes (a receiver is elsewhere in a deployment).
python3 - "$receiver_port" <<'EOF' &
import asyncio, sys

class Take(asyncio.Protocol):
    """Answers 204 to each request of a keep-alive connection, reading only its headers' length."""
    def connection_made(self, transport):
        self.transport, self.buf = transport, b""

    def data_received(self, data):
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = self.buf[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15:].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            self.transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")

async def main():
    server = await asyncio.get_running_loop().create_server(Take, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()

asyncio.run(main())
EOF
receiver=$!

for mode in none three batched; do
  cat >"$tmp/$mode.toml" <<EOF
[webhooks]
allow_loopback = true
poll_millis = 100
EOF
done
cat >"$tmp/outbox.toml" <<EOF
[webhooks]
allow_loopback = true
poll_millis = 86400000
EOF

echo "webhooks and push-many: $images images, $repos repositories, $rounds rounds ($(date -u))" | tee "$out"
for round in $(seq "$rounds"); do
  # The order turns each round, so no mode always runs first or last.
  case $((round % 4)) in
    1) order="none outbox three batched" ;;
    2) order="outbox three batched none" ;;
    3) order="three batched none outbox" ;;
    0) order="batched none outbox three" ;;
  esac
  for mode in $order; do
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
    if [ "$mode" != none ]; then
      for format in distribution harbor cloudevents; do
        per_request=1
        [ "$mode" = batched ] && [ "$format" != harbor ] && per_request=$batch
        curl -sf -o /dev/null -X POST "http://127.0.0.1:$port/api/v1/webhooks" \
          -H 'content-type: application/json' \
          -d "{\"url\": \"http://127.0.0.1:$receiver_port/$format\", \"events\": [\"push\"],
               \"format\": \"$format\", \"secret\": \"bench\", \"scope\": \"*\",
               \"batch\": $per_request}"
      done
    fi
    receiver_start=$(cpu_secs "$receiver")
    "$regbench" --registry "http://127.0.0.1:$port" --server-pid "$server" \
      --state "$tmp/state.json" push-many --images "$images" --repos "$repos" \
      --layers 4 --min-kib 1 --max-kib 4 >"$tmp/push.out"
    sent=$(sqlite3 "$tmp/data/berth.db" \
      "SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'delivered'")
    written=$(sqlite3 "$tmp/data/berth.db" "SELECT COUNT(*) FROM webhook_deliveries")
    server_cpu=$(cpu_secs "$server")
    receiver_cpu=$(awk -v a="$receiver_start" -v b="$(cpu_secs "$receiver")" 'BEGIN { printf "%.2f", b - a }')
    kill -TERM "$server"; wait "$server" 2>/dev/null || true; server=
    python3 - "$tmp/push.out" "$mode" "$round" "$sent" "$written" "$server_cpu" "$receiver_cpu" <<'EOF' | tee -a "$out"
import re, sys
text, mode, rnd, sent, written, server_cpu, receiver_cpu = open(sys.argv[1]).read(), *sys.argv[2:8]
rate = float(re.search(r"= ([\d.]+) images/s", text).group(1))
m = re.search(r"all requests: n=\d+ p50=([\d.]+)ms p90=([\d.]+)ms", text)
print(f"round {rnd} {mode:6} {rate:8.1f} images/s  p50 {m.group(1)} ms  p90 {m.group(2)} ms  deliveries sent {sent} of {written}  server CPU {server_cpu} s  receiver CPU {receiver_cpu} s")
EOF
  done
done
python3 - "$out" <<'EOF' | tee -a "$out"
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.startswith("round ")]
def column(mode, i):
    return [float(r[i]) for r in rows if r[2] == mode and len(r) > i]
def median(mode, i):
    values = column(mode, i)
    return statistics.median(values) if values else float("nan")
def spread(mode, i):
    values = column(mode, i)
    return f"{min(values):.1f}-{max(values):.1f}" if values else "-"
modes = ("none", "outbox", "three", "batched")
# Columns: 3 images/s, 6 p50, 9 p90, 18 server CPU, 22 receiver CPU.
figures = {m: (median(m, 3), median(m, 6), median(m, 9), median(m, 18), median(m, 22))
           for m in modes}
for m in modes:
    f = figures[m]
    print(f"median {m:6}: {f[0]:.1f} images/s ({spread(m, 3)}), p50 {f[1]:.2f} ms, "
          f"p90 {f[2]:.2f} ms, server CPU {f[3]:.2f} s, receiver CPU {f[4]:.2f} s")
none = figures["none"]
for m in modes[1:]:
    f = figures[m]
    # The same round's pair, so a slow stretch of the machine falls on both.
    ratios = [float(a[3]) / float(b[3]) for a in rows for b in rows
              if a[1] == b[1] and a[2] == m and b[2] == "none"]
    print(f"{m} against none: images/s {f[0] / none[0]:.2f} of none's "
          f"(per round {', '.join(f'{r:.2f}' for r in ratios)}; their median "
          f"{statistics.median(ratios):.2f}), "
          f"p50 latency {100 * (f[1] - none[1]) / none[1]:+.1f}%, "
          f"p90 latency {100 * (f[2] - none[2]) / none[2]:+.1f}%, "
          f"server CPU {100 * (f[3] - none[3]) / none[3]:+.1f}%")
EOF
echo "results in $out"
