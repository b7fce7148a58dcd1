#!/usr/bin/env bash
# Indexing one large layer: how much berth's resident memory grows while it scans a gzip
# layer of --size-mib uncompressed bytes, and how its scan time compares with `gunzip -c` of
# the same file on this machine (the floor: the scanner has to decompress every byte).
#
#   bench/scan-large-layer.sh [--size-mib N] [--rounds N] [--no-build]
#
# The layer is a real tar made here (GNU tar, gzip -6): a dpkg status file naming a few
# packages, then --size-mib of text files (base64 of an AES-CTR keystream, so gzip has
# something to do and the content is the same every run). Each round, interleaved: time
# `gunzip -c layer >/dev/null`, then start berth (release build) on a fresh data dir, push the
# layer, a config and a manifest, and scan the image with `?wait=true` while VmRSS is
# sampled every 20 ms; the RSS growth is the maximum sampled during the scan minus VmRSS just
# before it. A fresh server per round, because a layer once indexed is never read again.
# Prints each round and the medians; the scan must report the dpkg packages.
set -euo pipefail

size_mib=512
rounds=3
build=1
while [ $# -gt 0 ]; do
  case $1 in
    --size-mib) size_mib=${2:?}; shift 2 ;;
    --rounds) rounds=${2:?}; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 64 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
if [ "$build" = 1 ]; then
  cargo build --release --manifest-path "$root/Cargo.toml" --bin berth
fi
berth="$root/target/release/berth"
[ -x "$berth" ] || { echo "no $berth: build it first" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/berth-scan.XXXXXX")
pid=
sampler=
stop_berth() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
  fi
  pid=
}
cleanup() {
  set +e
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null && wait "$sampler" 2>/dev/null
  stop_berth
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sha_of() { openssl dgst -sha256 -r "$1" | cut -d' ' -f1; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# --- the layer ---
echo "making a ${size_mib} MiB layer..."
mkdir -p "$tmp/rootfs/var/lib/dpkg" "$tmp/rootfs/srv/data"
cat >"$tmp/rootfs/var/lib/dpkg/status" <<'STATUS'
Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u4

Package: zlib1g
Status: install ok installed
Architecture: amd64
Source: zlib
Version: 1:1.2.13.dfsg-1

Package: openssl
Status: install ok installed
Architecture: amd64
Version: 3.0.11-1~deb12u2

STATUS
file_mib=64
for i in $(seq $(((size_mib + file_mib - 1) / file_mib))); do
  { openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:berth-scan-$i" </dev/zero 2>/dev/null || true; } |
    head -c $((file_mib * 1024 * 1024 * 3 / 4)) | base64 -w 76 >"$tmp/rootfs/srv/data/part-$i.txt"
done
tar -C "$tmp/rootfs" --sort=name --owner=0 --group=0 --numeric-owner -cf - . | gzip -6 >"$tmp/layer.tar.gz"
rm -rf "$tmp/rootfs"
layer_size=$(stat -c %s "$tmp/layer.tar.gz")
layer_digest="sha256:$(sha_of "$tmp/layer.tar.gz")"
unpacked=$(gunzip -c "$tmp/layer.tar.gz" | wc -c)
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$(gunzip -c "$tmp/layer.tar.gz" | openssl dgst -sha256 -r | cut -d' ' -f1)" >"$tmp/config.json"
config_digest="sha256:$(sha_of "$tmp/config.json")"
cat >"$tmp/manifest.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
 "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$config_digest","size":$(stat -c %s "$tmp/config.json")},
 "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"$layer_digest","size":$layer_size}]}
EOF
manifest_digest="sha256:$(sha_of "$tmp/manifest.json")"
echo "layer: $((unpacked / 1048576)) MiB as tar, $((layer_size / 1048576)) MiB gzipped"

# --- berth ---
start_berth() {
  rm -rf "$tmp/data"
  NO_COLOR=1 BERTH_LOG=warn,berth=info "$berth" serve --data-dir "$tmp/data" --listen 127.0.0.1:0 \
    2>"$tmp/berth.log" &
  pid=$!
  addr=
  for _ in $(seq 300); do
    addr=$(sed 's/\x1b\[[0-9;]*m//g' "$tmp/berth.log" |
      sed -n 's/.*berth is serving.*address=\([0-9.]*:[0-9]*\).*/\1/p' | head -n1)
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/berth.log" >&2; echo "berth exited" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "berth did not start in 30 s" >&2; exit 1; }
  base="http://$addr"
}
push_blob() { # file digest
  local loc code
  loc=$(curl -sS -D - -o /dev/null -X POST "$base/v2/bench/scan/blobs/uploads/" | tr -d '\r' |
    awk 'tolower($1) == "location:" { print $2 }')
  case $loc in http*) ;; *) loc="$base$loc" ;; esac
  case $loc in *\?*) loc="$loc&digest=$2" ;; *) loc="$loc?digest=$2" ;; esac
  code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT -H 'Expect:' \
    -H 'Content-Type: application/octet-stream' --data-binary "@$1" "$loc")
  [ "$code" = 201 ] || { echo "blob PUT answered $code" >&2; exit 1; }
}
status_kib() {
  local k v _
  while read -r k v _; do [ "$k" = "$1:" ] && { echo "$v"; return; }; done <"/proc/$pid/status"
  echo 0
}

rows=()
for round in $(seq "$rounds"); do
  t0=$(date +%s.%N)
  gunzip -c "$tmp/layer.tar.gz" >/dev/null
  t1=$(date +%s.%N)
  gunzip_s=$(secs "$t0" "$t1")

  start_berth
  push_blob "$tmp/layer.tar.gz" "$layer_digest"
  push_blob "$tmp/config.json" "$config_digest"
  code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT \
    -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary "@$tmp/manifest.json" "$base/v2/bench/scan/manifests/large")
  [ "$code" = 201 ] || { echo "manifest PUT answered $code" >&2; exit 1; }

  before=$(status_kib VmRSS)
  rm -f "$tmp/max"
  (
    max=0
    for _ in $(seq 180000); do
      v=$(status_kib VmRSS)
      [ "$v" -gt "$max" ] && { max=$v; echo "$max" >"$tmp/max"; }
      sleep 0.02
    done
  ) &
  sampler=$!
  t0=$(date +%s.%N)
  curl -sS -f -X POST "$base/api/v1/repositories/bench/scan/-/images/$manifest_digest/scan?wait=true" \
    >"$tmp/scan.json"
  t1=$(date +%s.%N)
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  sampler=
  scan_s=$(secs "$t0" "$t1")
  max=$(cat "$tmp/max" 2>/dev/null || echo "$before")
  stop_berth

  python3 - "$tmp/scan.json" <<'EOF'
import json, sys
scan = json.load(open(sys.argv[1]))
assert scan["status"] == "ok", scan
assert scan["packages"] == 3, f"expected the 3 dpkg packages, found {scan['packages']}"
assert scan["layers_read"] == 1, scan
EOF
  growth=$(awk -v a="$before" -v b="$max" 'BEGIN { printf "%.1f", (b - a) / 1024 }')
  ratio=$(awk -v s="$scan_s" -v g="$gunzip_s" 'BEGIN { printf "%.2f", s / g }')
  rows+=("$round $gunzip_s $scan_s $ratio $growth")
  printf 'round %s: gunzip %s s, scan %s s (%s× gunzip), RSS growth %s MiB\n' \
    "$round" "$gunzip_s" "$scan_s" "$ratio" "$growth"
done

printf '%s\n' "${rows[@]}" | python3 -c '
import statistics, sys
rows = [line.split() for line in sys.stdin if line.strip()]
col = lambda i: [float(r[i]) for r in rows]
def fig(i):
    v = col(i)
    return f"{statistics.median(v):.2f} (range {min(v):.2f}-{max(v):.2f})"
mib = '"$((unpacked / 1048576))"'
print()
print(f"layer of {mib} MiB (tar), {len(rows)} rounds, medians:")
print(f"| gunzip -c, s | scan, s | scan / gunzip | scan MiB/s | RSS growth during the scan, MiB |")
print("|---|---|---|---|---|")
scan = statistics.median(col(2))
print(f"| {fig(1)} | {fig(2)} | {fig(3)} | {mib / scan:.0f} | {fig(4)} |")
'
