#!/usr/bin/env bash
# Does scan on push slow pushes? regbench push-many against Berth with `scan.on_push` off and
# on (every image pushed queued for a scan, run by the job worker while the pushes go on).
#
#   bench/scan-on-push.sh [--images N] [--repos R] [--rounds K] [--regbench BIN] [--berth BIN]
#                         [--out FILE]
#
# Each round starts a fresh Berth (SQLite + local disk, auth off) per mode, the order
# alternating by round:
#   off   [scan] on_push = false
#   on    [scan] on_push = true
# Reports per round and, per mode, as the median over the rounds (with min-max): images/s,
# the p50/p90 latency of all requests, and on/off; and from /metrics how many scans had
# finished (and were still queued) when the pushes ended, how many after the queue drained,
# how long that took, the layers read, the summed scan time and the server's CPU time.
# Defaults: 2000 images, 20 repositories, 3 rounds. Without --berth, Berth is built in
# release first.
#
# What the scanner gets here: regbench's layers are random bytes (4 per image, 1-4 KiB each,
# declared `application/vnd.oci.image.layer.v1.tar`), not archives. src/scan/layers.rs sees
# neither gzip nor zstd magic and reads the blob as a plain tar; the first 512 bytes are no
# valid header ("numeric field did not have utf-8 text ... cksum"), so each layer is a
# `Failed` layer after one read of a few KiB, and each scan ends `error` after reading its 4
# layers: mostly index writes (the job's lease and finish, the layers' rows, the scan's
# row), ~4 ms a scan on an idle index, longer while the pushes hold SQLite's one writer.
# So this measures what queueing and running scans costs pushes (the job rows, the scan
# worker's writes beside the pushes', its CPU), not decompressing and indexing real layers:
# with real images each scan reads its new layers in full, and that CPU and those disk reads
# come on top of what is measured here (bench/scan-large-layer.sh times one large layer).
set -euo pipefail

images=2000
repos=20
rounds=3
root=$(cd "$(dirname "$0")/.." && pwd)
regbench=$root/target/regbench/release/regbench
berth=
out=
while [ $# -gt 0 ]; do
  case $1 in
    --images) images=${2:?}; shift 2 ;;
    --repos) repos=${2:?}; shift 2 ;;
    --rounds) rounds=${2:?}; shift 2 ;;
    --regbench) regbench=${2:?}; shift 2 ;;
    --berth) berth=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 64 ;;
  esac
done
[ -x "$regbench" ] || { echo "no regbench at $regbench (--regbench BIN)" >&2; exit 1; }
if [ -z "$berth" ]; then
  cargo build --release --manifest-path "$root/Cargo.toml" --bin berth
  berth=$root/target/release/berth
fi
[ -n "$out" ] || { mkdir -p "$root/target/bench"; out=$root/target/bench/scan-on-push-$(date +%Y%m%d-%H%M%S).txt; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/berth-scan-on-push-bench.XXXXXX")
server=
cleanup() {
  set +e
  [ -n "$server" ] && { kill -TERM "$server" 2>/dev/null; wait "$server" 2>/dev/null; }
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# From /metrics: scans finished, scans finished with an error, scans queued, layers read,
# summed scan seconds.
scan_figures() {
  curl -sf "http://127.0.0.1:$1/metrics" | python3 -c '
import sys
done = errors = queued = layers = secs = 0
for line in sys.stdin:
    if line.startswith("#") or not line.strip():
        continue
    name, value = line.rsplit(None, 1)
    if name.startswith("berth_scan_duration_seconds_count"):
        done += int(float(value))
        if "outcome=\"error\"" in name:
            errors += int(float(value))
    elif name.startswith("berth_scan_duration_seconds_sum"):
        secs += float(value)
    elif name == "berth_scans_queued":
        queued = int(float(value))
    elif name == "berth_scan_layers_read_total":
        layers = int(float(value))
print(done, errors, queued, layers, f"{secs:.2f}")
'
}
# utime + stime of a process, in seconds.
cpu_secs() {
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"
}

printf '[scan]\non_push = false\n' >"$tmp/off.toml"
printf '[scan]\non_push = true\n' >"$tmp/on.toml"

echo "scan on push and push-many: $images images, $repos repositories, $rounds rounds ($(date -u))" | tee "$out"
sample=
for round in $(seq "$rounds"); do
  if [ $((round % 2)) = 1 ]; then order="off on"; else order="on off"; fi
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
    "$regbench" --registry "http://127.0.0.1:$port" --server-pid "$server" \
      --state "$tmp/state.json" push-many --images "$images" --repos "$repos" \
      --layers 4 --min-kib 1 --max-kib 4 >"$tmp/push.out"
    read -r end_done _ end_queued _ _ < <(scan_figures "$port")
    cpu_end=$(cpu_secs "$server")
    # Wait (at most 10 minutes) until every pushed image has had its scan.
    t0=$(date +%s.%N)
    want=0
    [ "$mode" = on ] && want=$images
    for _ in $(seq 3000); do
      read -r done errors queued layers scan_secs < <(scan_figures "$port")
      [ "$done" -ge "$want" ] && [ "$queued" = 0 ] && break
      sleep 0.2
    done
    drain=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    cpu_drained=$(cpu_secs "$server")
    if [ "$mode" = on ] && [ -z "$sample" ]; then
      # One scan's record, to show what the scanner made of regbench's layers.
      read -r repo digest < <(python3 -c 'import json, sys
m = json.load(open(sys.argv[1]))["many"][0]
print(m["repo"], m["manifest_digest"])' "$tmp/state.json")
      sample=$(curl -sf "http://127.0.0.1:$port/api/v1/repositories/$repo/-/images/$digest/scans" |
        python3 -c 'import json, sys
s = json.load(sys.stdin)["items"][0]
error = "".join(c if c.isprintable() and c.isascii() else "?" for c in (s["error"] or ""))
print("status %s, layers_read %s, %s ms, error: %s"
      % (s["status"], s["layers_read"], s["duration_ms"], error[:160]))') ||
        sample="(its record could not be read)"
    fi
    kill -TERM "$server"; wait "$server" 2>/dev/null || true; server=
    python3 - "$tmp/push.out" "$mode" "$round" "$end_done" "$end_queued" "$done" "$errors" \
      "$drain" "$layers" "$scan_secs" "$cpu_end" "$cpu_drained" <<'EOF' | tee -a "$out"
import re, sys
text = open(sys.argv[1]).read()
mode, rnd, end_done, end_queued, done, errors, drain, layers, scan_secs, cpu_end, cpu_drained = sys.argv[2:13]
rate = float(re.search(r"= ([\d.]+) images/s", text).group(1))
m = re.search(r"all requests: n=\d+ p50=([\d.]+)ms p90=([\d.]+)ms", text)
print(f"round {rnd} {mode:3} {rate:8.1f} images/s  p50 {m.group(1)} ms  p90 {m.group(2)} ms  "
      f"scans {end_done} done {end_queued} queued at the end, {done} ({errors} errors) after "
      f"{drain} s  layers read {layers}  scan time {scan_secs} s  server CPU {cpu_end} s, "
      f"{cpu_drained} s drained")
EOF
  done
done
if [ -n "$sample" ]; then
  echo "a scan (the first image of the first 'on' run): $sample" | tee -a "$out"
fi
python3 - "$out" <<'EOF' | tee -a "$out"
import re, statistics, sys
row = re.compile(
    r"round (\d+) (\w+) +([\d.]+) images/s  p50 ([\d.]+) ms  p90 ([\d.]+) ms  scans (\d+) done "
    r"(\d+) queued at the end, (\d+) \((\d+) errors\) after ([\d.]+) s  layers read (\d+)  "
    r"scan time ([\d.]+) s  server CPU ([\d.]+) s, ([\d.]+) s drained")
keys = ("round", "mode", "rate", "p50", "p90", "end_done", "end_queued", "done", "errors",
        "drain", "layers", "scan_secs", "cpu_end", "cpu_drained")
rows = []
for line in open(sys.argv[1]):
    m = row.match(line)
    if m:
        rows.append({k: (v if k == "mode" else float(v)) for k, v in zip(keys, m.groups())})
def values(mode, key):
    return [r[key] for r in rows if r["mode"] == mode]
def fig(mode, key, digits):
    v = values(mode, key)
    return f"{statistics.median(v):.{digits}f} ({min(v):.{digits}f}-{max(v):.{digits}f})"
print("medians (min-max) over the rounds:")
for m in ("off", "on"):
    print(f"  {m:3}: {fig(m, 'rate', 1)} images/s, p50 {fig(m, 'p50', 2)} ms, "
          f"p90 {fig(m, 'p90', 2)} ms, server CPU during the pushes {fig(m, 'cpu_end', 2)} s")
print(f"  on: scans done when the pushes ended {fig('on', 'end_done', 0)}, still queued "
      f"{fig('on', 'end_queued', 0)}; after the drain {fig('on', 'done', 0)} "
      f"({fig('on', 'errors', 0)} errors) in {fig('on', 'drain', 1)} s; layers read "
      f"{fig('on', 'layers', 0)}, summed scan time {fig('on', 'scan_secs', 2)} s, server CPU "
      f"to the end of the drain {fig('on', 'cpu_drained', 2)} s")
per_round = []
for rnd in sorted({r["round"] for r in rows}):
    o = [r["rate"] for r in rows if r["round"] == rnd and r["mode"] == "off"]
    n = [r["rate"] for r in rows if r["round"] == rnd and r["mode"] == "on"]
    per_round.append(n[0] / o[0])
med = {m: {k: statistics.median(values(m, k)) for k in ("rate", "p50", "p90")} for m in ("off", "on")}
print(f"on/off (ratio of the medians): images/s {med['on']['rate'] / med['off']['rate']:.2f} "
      f"(per round {', '.join(f'{x:.2f}' for x in per_round)}), "
      f"p50 latency {med['on']['p50'] / med['off']['p50']:.2f}, "
      f"p90 latency {med['on']['p90'] / med['off']['p90']:.2f}")
EOF
echo "results in $out"
