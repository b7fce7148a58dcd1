#!/usr/bin/env bash
# SQL statements per tag PUT: a load-independent figure for tag writes. Starts berth with
# sqlx's statement log on, pushes one small image, then PUTs its manifest under --tags new tags
# from --workers concurrent clients (as regbench's tags-list does) and counts, from the log,
# the statements and write transactions those PUTs ran.
#
#   bench/tag-statements.sh [--tags N] [--workers N] [--berth BINARY]
#
# Write transactions are counted by their `UPDATE repositories SET push_count` (one per
# transaction that moves tags of one repository: once per tag PUT without group commits).
set -euo pipefail

tags=400
workers=16
berth=
while [ $# -gt 0 ]; do
  case $1 in
    --tags) tags=${2:?}; shift 2 ;;
    --workers) workers=${2:?}; shift 2 ;;
    --berth) berth=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 64 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "$berth" ]; then
  cargo build --release --manifest-path "$root/Cargo.toml" --bin berth
  berth="$root/target/release/berth"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/berth-tags.XXXXXX")
pid=
cleanup() {
  set +e
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Continuous collection and the job worker stay quiet during the burst.
NO_COLOR=1 BERTH_LOG="warn,sqlx::query=debug" "$berth" serve --data-dir "$tmp/data" \
  --listen 127.0.0.1:0 2>"$tmp/berth.log" &
pid=$!
addr=
for _ in $(seq 300); do
  addr=$(sed 's/\x1b\[[0-9;]*m//g' "$tmp/berth.log" |
    sed -n 's/.*berth is serving.*address=\([0-9.]*:[0-9]*\).*/\1/p' | head -n1)
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/berth.log" >&2; echo "berth exited" >&2; exit 1; }
  sleep 0.1
done
if [ -z "$addr" ]; then
  # The serving line is at info level, which this log filter hides: ask the port instead.
  addr=$(ss -ltnp 2>/dev/null | sed -n "s/.*\(127\.0\.0\.1:[0-9]*\).*pid=$pid,.*/\1/p" | head -n1)
fi
[ -n "$addr" ] || { echo "berth did not start" >&2; exit 1; }
base="http://$addr"
repo=tags/burst

cfg='{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
d=$(printf '%s' "$cfg" | sha256sum | cut -d' ' -f1)
curl -sS -f -o /dev/null -X POST "$base/v2/$repo/blobs/uploads/?digest=sha256:$d" --data-binary "$cfg"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[]}' \
  "$d" "${#cfg}" >"$tmp/manifest"
put() {
  curl -sS -f -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary @"$tmp/manifest" "$base/v2/$repo/manifests/$1"
}
put first
sleep 1
start=$(wc -l <"$tmp/berth.log")
export -f put; export base repo tmp
seq -f 't%06g' "$tags" | xargs -P "$workers" -I{} bash -c 'put {}'
sleep 1
log=$(tail -n +$((start + 1)) "$tmp/berth.log" | sed 's/\x1b\[[0-9;]*m//g' | grep 'sqlx::query')
statements=$(grep -c . <<<"$log" || true)
writes=$(grep -c 'UPDATE repositories SET push_count' <<<"$log" || true)
tag_rows=$(grep -c 'INSERT INTO tags' <<<"$log" || true)
listed=$(curl -sS "$base/v2/$repo/tags/list?n=100000" | grep -o '"t[0-9]*"' | wc -l)
awk -v n="$tags" -v s="$statements" -v w="$writes" -v t="$tag_rows" -v l="$listed" -v c="$workers" 'BEGIN {
  printf "%d tag PUTs from %d clients (%d listed): %.2f statements per PUT, %d tag rows, %d write transactions (%.1f PUTs per transaction)\n",
    n, c, l, s / n, t, w, n / w }'
echo "berth $berth"
