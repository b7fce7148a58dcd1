#!/usr/bin/env bash
# Does scan on push slow pushes? Many small images pushed to Berth with `scan.on_push` off and
# on (every image pushed queued for a scan, run by the job worker once no scan has been queued
# for `scan.quiet_secs`, default 2, so after the burst of pushes; --quiet-secs 0 runs each
# scan as soon as the worker sees it, while the pushes go on).
#
#   bench/scan-on-push.sh [--pusher regbench|tar] [--images N] [--repos R] [--rounds K]
#                         [--regbench BIN] [--berth BIN] [--layer-kib K] [--wait-idle S]
#                         [--quiet-secs S] [--out FILE]
#
# Each round starts a fresh Berth (SQLite + local disk, auth off) per mode, the order
# alternating by round:
#   off   [scan] on_push = false
#   on    [scan] on_push = true (and quiet_secs = S with --quiet-secs)
# Reports per round and, per mode, as the median over the rounds (with min-max): images/s,
# the p50/p90 latency of all requests, and on/off; and from /metrics how many scans had
# finished (and were still queued) when the pushes ended, how many after the queue drained
# (and of those how many ended `error`), how long that took, the layers read, the summed scan
# time and the server's CPU time; the client's CPU time during the pushes and the other
# processes' (the whole machine's busy CPU from /proc/stat, less the server's and the
# client's: near 0 unless something else ran, e.g. a build, which skews that run); and one
# scan's record from the API (its status, packages, layers read, duration, error). "probe":
# the milliseconds one CPU takes to hash 128 MiB on the idle machine, before the pushes and
# after the server stopped (the mean of the two): whether one CPU's speed changed between
# runs (on a shared VM the server's CPU time for the same pushes can still vary by half
# while the probe stays put, so compare the modes within a round). Before each run the last
# run's data is deleted and the filesystem flushed (`sync -f`; "flush": how long that took),
# so that no run pushes while the one before is still being written back (on ext4 mounted
# with `discard`, also trimmed).
# Defaults: regbench, 2000 images, 20 repositories, 3 rounds. Without --berth, Berth is built
# in release first. --wait-idle S: before each run, wait (at most 15 minutes) until the
# machine has been at most 10 % busy for S seconds in a row (for a shared machine).
#
# The pushers (both: 16 workers, each blob a monolithic POST + PUT, then the manifest by tag):
#
# --pusher regbench (default): regbench push-many, 4 layers of 1-4 KiB per image. Its layers
# are random bytes declared `application/vnd.oci.image.layer.v1.tar`, not archives.
# src/scan/layers.rs sees neither gzip nor zstd magic and reads the blob as a plain tar; the
# first 512 bytes are no valid header ("numeric field did not have utf-8 text ... cksum"), so
# each layer is a `Failed` layer after one read of a few KiB, and each scan ends `error` after
# reading its 4 layers: mostly index writes (the job's lease and finish, the layers' rows, the
# scan's row), ~4 ms a scan on an idle index. So this measures what queueing and running
# scans costs pushes (the job rows, the scan worker's writes beside the pushes', its CPU), not
# reading real layers.
#
# --pusher tar: bench/push_images.py (Python standard library; the images generated before
# its clock starts, the same bytes every run). Each image has 2 real gzip tar layers: a
# Debian 12 base of about --layer-kib KiB of tar (default 256; ~97 KiB gzipped) with
# `etc/os-release` and a `var/lib/dpkg/status` of 50 installed packages whose versions carry
# the image's number, plus filler files, and an app layer of a few KiB; every layer is unique
# to its image, so each scan decompresses and reads both its layers in full, parses the dpkg
# database, and records 50 packages (`ok`). The client is Python and its CPU shares the
# machine with the server; it pushes 3 blobs an image, not 5, so its images/s are not
# comparable with regbench's: compare on/off within one pusher.
set -euo pipefail

images=2000
repos=20
rounds=3
root=$(cd "$(dirname "$0")/.." && pwd)
regbench=$root/target/regbench/release/regbench
berth=
out=
pusher=regbench
layer_kib=256
wait_idle=0
quiet_secs=
while [ $# -gt 0 ]; do
  case $1 in
    --images) images=${2:?}; shift 2 ;;
    --repos) repos=${2:?}; shift 2 ;;
    --rounds) rounds=${2:?}; shift 2 ;;
    --regbench) regbench=${2:?}; shift 2 ;;
    --berth) berth=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --pusher) pusher=${2:?}; shift 2 ;;
    --layer-kib) layer_kib=${2:?}; shift 2 ;;
    --wait-idle) wait_idle=${2:?}; shift 2 ;;
    --quiet-secs) quiet_secs=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,54p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 64 ;;
  esac
done
case $pusher in
  regbench) [ -x "$regbench" ] || { echo "no regbench at $regbench (--regbench BIN)" >&2; exit 1; } ;;
  tar) [ -f "$root/bench/push_images.py" ] || { echo "no $root/bench/push_images.py" >&2; exit 1; } ;;
  *) echo "--pusher is regbench or tar, not $pusher" >&2; exit 64 ;;
esac
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

# CPU seconds all CPUs have been busy since boot (user, nice, system, irq, softirq).
machine_busy() {
  awk -v hz="$(getconf CLK_TCK)" '$1 == "cpu" { printf "%.2f", ($2 + $3 + $4 + $7 + $8) / hz; exit }' /proc/stat
}
# Sets children_cpu_now to the CPU seconds (user + system) of this shell's finished children
# so far (`times` runs in this shell, not in a subshell, whose children are its own).
children_cpu() {
  times >"$tmp/times"
  children_cpu_now=$(awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); t += a[1] * 60 + a[2] }
                 printf "%.2f", t }' "$tmp/times")
}
# Milliseconds one CPU takes to hash 128 MiB (sha256): how fast one CPU is just now.
cpu_probe() {
  python3 -c 'import hashlib, time
b = bytes(16 << 20); t = time.perf_counter()
for _ in range(8): hashlib.sha256(b).digest()
print(f"{(time.perf_counter() - t) * 1000:.0f}")'
}
# Waits (at most 15 minutes) until the whole machine has been at most 10 % busy for $1
# seconds in a row; says how long it waited.
wait_for_idle() {
  local need=$1 quiet=0 waited=0 cpus b0 b1
  cpus=$(getconf _NPROCESSORS_ONLN)
  while [ "$quiet" -lt "$need" ] && [ "$waited" -lt 900 ]; do
    b0=$(machine_busy); sleep 1; b1=$(machine_busy)
    waited=$((waited + 1))
    if awk -v a="$b0" -v b="$b1" -v n="$cpus" 'BEGIN { exit !((b - a) / n <= 0.10) }'; then
      quiet=$((quiet + 1))
    else
      quiet=0
    fi
  done
  if [ "$quiet" -ge "$need" ]; then
    echo "waited $waited s for an idle machine"
  else
    echo "waited $waited s, the machine never idle: measuring anyway"
  fi
}

printf '[scan]\non_push = false\n' >"$tmp/off.toml"
printf '[scan]\non_push = true\n' >"$tmp/on.toml"
[ -n "$quiet_secs" ] && printf 'quiet_secs = %d\n' "$quiet_secs" >>"$tmp/on.toml"

if [ "$pusher" = tar ]; then
  what="bench/push_images.py (2 gzip tar layers an image, base ~$layer_kib KiB of tar)"
else
  what="regbench push-many (4 random layers of 1-4 KiB an image)"
fi
echo "scan on push, pusher $pusher: $what, $images images, $repos repositories, $rounds rounds ($(date -u))" | tee "$out"
sample=
for round in $(seq "$rounds"); do
  if [ $((round % 2)) = 1 ]; then order="off on"; else order="on off"; fi
  for mode in $order; do
    # The last run's data is deleted and the filesystem flushed first, so that no run starts
    # while the one before is still being written back (or, with `discard`, trimmed).
    f0=$(date +%s.%N)
    rm -rf "$tmp/data"
    sync -f "$tmp"
    flushed=$(awk -v a="$f0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    if [ "$wait_idle" -gt 0 ]; then
      echo "round $round $mode: $(wait_for_idle "$wait_idle")" | tee -a "$out"
    fi
    port=$(free_port)
    NO_COLOR=1 BERTH_LOG=warn "$berth" serve --config "$tmp/$mode.toml" --data-dir "$tmp/data" \
      --listen "127.0.0.1:$port" 2>"$tmp/berth.log" &
    server=$!
    for _ in $(seq 300); do
      curl -sf -o /dev/null "http://127.0.0.1:$port/v2/" && break
      kill -0 "$server" 2>/dev/null || { cat "$tmp/berth.log" >&2; exit 1; }
      sleep 0.1
    done
    probe_before=$(cpu_probe)
    cpu_start=$(cpu_secs "$server")
    children_cpu; client_start=$children_cpu_now
    busy_start=$(machine_busy)
    if [ "$pusher" = tar ]; then
      python3 "$root/bench/push_images.py" --registry "http://127.0.0.1:$port" \
        --images "$images" --repos "$repos" --concurrency 16 --layer-kib "$layer_kib" \
        --state "$tmp/state.json" >"$tmp/push.out" ||
        { echo "push_images.py failed: $(cat "$tmp/push.out")" >&2; exit 1; }
    else
      "$regbench" --registry "http://127.0.0.1:$port" --server-pid "$server" \
        --state "$tmp/state.json" push-many --images "$images" --repos "$repos" \
        --layers 4 --min-kib 1 --max-kib 4 >"$tmp/push.out"
    fi
    busy_end=$(machine_busy)
    children_cpu; client_end=$children_cpu_now
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
      # One scan's record, to show what the scanner made of the layers.
      read -r repo digest < <(python3 -c 'import json, sys
m = json.load(open(sys.argv[1]))["many"][0]
print(m["repo"], m["manifest_digest"])' "$tmp/state.json")
      sample=$(curl -sf "http://127.0.0.1:$port/api/v1/repositories/$repo/-/images/$digest/scans" |
        python3 -c 'import json, sys
s = json.load(sys.stdin)["items"][0]
error = "".join(c if c.isprintable() and c.isascii() else "?" for c in (s["error"] or ""))
print("status %s, packages %s, layers_read %s, %s ms, error: %s"
      % (s["status"], s["packages"], s["layers_read"], s["duration_ms"], error[:160] or "none"))') ||
        sample="(its record could not be read)"
    fi
    kill -TERM "$server"; wait "$server" 2>/dev/null || true; server=
    probe_after=$(cpu_probe)
    python3 - "$tmp/push.out" "$mode" "$round" "$end_done" "$end_queued" "$done" "$errors" \
      "$drain" "$layers" "$scan_secs" "$cpu_end" "$cpu_drained" "$cpu_start" \
      "$(awk -v a="$client_start" -v b="$client_end" 'BEGIN { printf "%.2f", b - a }')" \
      "$(awk -v a="$busy_start" -v b="$busy_end" 'BEGIN { printf "%.2f", b - a }')" \
      "$probe_before" "$probe_after" "$flushed" \
      <<'EOF' | tee -a "$out"
import json, re, sys
text = open(sys.argv[1]).read()
(mode, rnd, end_done, end_queued, done, errors, drain, layers, scan_secs, cpu_end, cpu_drained,
 cpu_start) = sys.argv[2:14]
# The client's CPU and the whole machine's busy CPU while it pushed; what is left once the
# server's and the client's are taken off is other processes' (0 on an otherwise idle machine).
client, machine = float(sys.argv[14]), float(sys.argv[15])
probe = (int(sys.argv[16]) + int(sys.argv[17])) // 2
flushed = sys.argv[18]
if text.lstrip().startswith("{"):
    # bench/push_images.py: its own figures cover the timed pushes only, not the generation.
    j = json.loads(text)
    rate, p50, p90 = j["images_per_sec"], f'{j["p50_ms"]:.2f}', f'{j["p90_ms"]:.2f}'
    client = j["client_cpu_seconds"]
    if j.get("machine_cpu_seconds") is not None:
        machine = j["machine_cpu_seconds"]
else:
    rate = float(re.search(r"= ([\d.]+) images/s", text).group(1))
    m = re.search(r"all requests: n=\d+ p50=([\d.]+)ms p90=([\d.]+)ms", text)
    p50, p90 = m.group(1), m.group(2)
print(f"round {rnd} {mode:3} {rate:8.1f} images/s  p50 {p50} ms  p90 {p90} ms  "
      f"scans {end_done} done {end_queued} queued at the end, {done} ({errors} errors) after "
      f"{drain} s  layers read {layers}  scan time {scan_secs} s  server CPU {cpu_end} s, "
      f"{cpu_drained} s drained  client CPU {client:.2f} s  other CPU "
      f"{max(0.0, machine - client - (float(cpu_end) - float(cpu_start))):.2f} s  "
      f"probe {probe} ms  flush {flushed} s")
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
    r"scan time ([\d.]+) s  server CPU ([\d.]+) s, ([\d.]+) s drained"
    r"(?:  client CPU ([\d.]+) s  other CPU ([\d.]+) s  probe (\d+) ms  flush ([\d.]+) s)?$")
keys = ("round", "mode", "rate", "p50", "p90", "end_done", "end_queued", "done", "errors",
        "drain", "layers", "scan_secs", "cpu_end", "cpu_drained", "client_cpu", "other_cpu",
        "probe", "flush")
rows = []
for line in open(sys.argv[1]):
    m = row.match(line)
    if m:
        rows.append({k: (v if k == "mode" else float(v or 0)) for k, v in zip(keys, m.groups())})
def values(mode, key):
    return [r[key] for r in rows if r["mode"] == mode]
def fig(mode, key, digits):
    v = values(mode, key)
    return f"{statistics.median(v):.{digits}f} ({min(v):.{digits}f}-{max(v):.{digits}f})"
print("medians (min-max) over the rounds:")
for m in ("off", "on"):
    client = (f", client CPU {fig(m, 'client_cpu', 2)} s, other processes' CPU "
              f"{fig(m, 'other_cpu', 2)} s, CPU probe {fig(m, 'probe', 0)} ms"
              if any(values(m, "client_cpu")) else "")
    print(f"  {m:3}: {fig(m, 'rate', 1)} images/s, p50 {fig(m, 'p50', 2)} ms, "
          f"p90 {fig(m, 'p90', 2)} ms, server CPU during the pushes {fig(m, 'cpu_end', 2)} s"
          f"{client}")
for r in rows:
    r["ok"] = r["done"] - r["errors"]
print(f"  on: scans done when the pushes ended {fig('on', 'end_done', 0)}, still queued "
      f"{fig('on', 'end_queued', 0)}; after the drain {fig('on', 'done', 0)}: ok "
      f"{fig('on', 'ok', 0)}, error {fig('on', 'errors', 0)}, in {fig('on', 'drain', 1)} s; "
      f"layers read {fig('on', 'layers', 0)}, summed scan time {fig('on', 'scan_secs', 2)} s, "
      f"server CPU to the end of the drain {fig('on', 'cpu_drained', 2)} s")
per_round = []
for rnd in sorted({r["round"] for r in rows}):
    o = [r["rate"] for r in rows if r["round"] == rnd and r["mode"] == "off"]
    n = [r["rate"] for r in rows if r["round"] == rnd and r["mode"] == "on"]
    per_round.append(n[0] / o[0])
med = {m: {k: statistics.median(values(m, k)) for k in ("rate", "p50", "p90")} for m in ("off", "on")}
print(f"on/off (ratio of the medians): images/s {med['on']['rate'] / med['off']['rate']:.2f} "
      f"(per round {', '.join(f'{x:.2f}' for x in per_round)}; their median "
      f"{statistics.median(per_round):.2f}), "
      f"p50 latency {med['on']['p50'] / med['off']['p50']:.2f}, "
      f"p90 latency {med['on']['p90'] / med['off']['p90']:.2f}")
EOF
echo "results in $out"
