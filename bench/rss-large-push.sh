#!/usr/bin/env bash
# Peak resident memory of berth while it takes one large blob, pushed
#   1. monolithically: POST, then one PUT ?digest= whose body is streamed (chunked encoding);
#   2. in chunks: POST, one PATCH per --chunk-mib with Content-Range, then an empty PUT ?digest=;
# and then while it serves both back (GET, sha256 checked against the digest).
# A memory measurement, not a timing: invariant 5 says memory is bounded by configuration,
# never by blob size, so each phase should stay within a few tens of MiB.
#
#   bench/rss-large-push.sh [--size-mib N] [--chunk-mib N] [--no-build] [--keep-going]
#
# Data is generated on the fly and never stored by the client: the monolithic blob is an
# AES-CTR keystream (deterministic, so its digest is computed in a first pass: the PUT URL
# needs it), the chunked one comes from /dev/urandom and is hashed while it streams (tee into
# openssl dgst). Per phase the kernel's peak-RSS counter is reset (/proc/PID/clear_refs, 5) and
# VmHWM read at the end; VmRSS is also sampled every 20 ms. Berth runs from a release build on
# a fresh temporary data dir, which is deleted at the end.
set -euo pipefail

size_mib=2048
chunk_mib=64
build=1
while [ $# -gt 0 ]; do
  case $1 in
    --size-mib) size_mib=${2:?}; shift 2 ;;
    --chunk-mib) chunk_mib=${2:?}; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 64 ;;
  esac
done
size=$((size_mib * 1024 * 1024))
chunk=$((chunk_mib * 1024 * 1024))

root=$(cd "$(dirname "$0")/.." && pwd)
if [ "$build" = 1 ]; then
  cargo build --release --manifest-path "$root/Cargo.toml" --bin berth
fi
berth="$root/target/release/berth"
[ -x "$berth" ] || { echo "no $berth: build it first" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/berth-rss.XXXXXX")
pid=
sampler=
cleanup() {
  set +e
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null && wait "$sampler" 2>/dev/null
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

# --- start berth on a port the OS picks; learn it from the serving line (bounded wait) ---
NO_COLOR=1 BERTH_LOG=info "$berth" serve --data-dir "$tmp/data" --listen 127.0.0.1:0 \
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
[ -n "$addr" ] || { cat "$tmp/berth.log" >&2; echo "berth did not start in 30 s" >&2; exit 1; }
base="http://$addr"
repo="rss/large"
echo "berth pid $pid on $base; blob ${size_mib} MiB, chunks ${chunk_mib} MiB; data in $tmp"

# --- memory probes ---
status_kib() { # VmRSS or VmHWM of berth, in KiB
  local k v _
  while read -r k v _; do
    [ "$k" = "$1:" ] && { echo "$v"; return; }
  done <"/proc/$pid/status"
  echo 0
}
reset_peak() { echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || echo "(cannot reset VmHWM: figures are lifetime peaks)" >&2; }
start_sampling() { # max VmRSS every 20 ms into $tmp/max, until killed (or 4 h)
  rm -f "$tmp/max"
  (
    max=0
    for _ in $(seq 720000); do
      v=$(status_kib VmRSS)
      [ "$v" -gt "$max" ] && { max=$v; echo "$max" >"$tmp/max"; }
      sleep 0.02
    done
  ) &
  sampler=$!
}
stop_sampling() { kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true; sampler=; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

results=()
phase_begin() { reset_peak; start_sampling; t0=$(date +%s.%N); }
phase_end() { # name
  local t1 hwm max
  t1=$(date +%s.%N)
  stop_sampling
  hwm=$(status_kib VmHWM)
  max=$(cat "$tmp/max" 2>/dev/null || echo 0)
  results+=("$(printf '| %s | %s | %s | %s | %s |' "$1" "$(mib "$hwm")" "$(mib "$max")" \
    "$(mib "$(status_kib VmRSS)")" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')")")
}

# --- HTTP helpers ---
header_of() { tr -d '\r' | awk -v h="$1" 'tolower($1) == tolower(h) ":" { print $2 }' | tail -n1; }
absolute() { case $1 in http*) echo "$1" ;; *) echo "$base$1" ;; esac; }
with_digest() { case $1 in *\?*) echo "$1&digest=$2" ;; *) echo "$1?digest=$2" ;; esac; }
start_session() {
  local h
  h=$(curl -sS -D - -o /dev/null -X POST "$base/v2/$repo/blobs/uploads/")
  [ "$(echo "$h" | head -n1 | awk '{print $2}')" = 202 ] || { echo "POST: $h" >&2; exit 1; }
  absolute "$(echo "$h" | header_of location)"
}
sha_of() { openssl dgst -sha256 -r | cut -d' ' -f1; }
keystream() { # deterministic pseudo-random bytes: AES-128-CTR of zeros
  { openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:berth-rss-$1" </dev/zero 2>/dev/null || true; } |
    head -c "$size"
}

idle=$(status_kib VmRSS)

# --- 1. monolithic ---
echo "hashing the monolithic blob (first pass)..."
mono_digest="sha256:$(keystream mono | sha_of)"
session=$(start_session)
mkfifo "$tmp/sent-mono"
sha_of <"$tmp/sent-mono" >"$tmp/sum-mono" &
hasher=$!
echo "PUT $size bytes as one streamed body..."
phase_begin
code=$(keystream mono | tee "$tmp/sent-mono" |
  curl -sS -o "$tmp/put-mono.out" -w '%{http_code}' -X PUT -T - -H 'Expect:' \
    -H 'Content-Type: application/octet-stream' "$(with_digest "$session" "$mono_digest")")
phase_end "monolithic PUT"
wait "$hasher"
[ "$code" = 201 ] || { echo "monolithic PUT answered $code: $(cat "$tmp/put-mono.out")" >&2; exit 1; }
[ "sha256:$(cat "$tmp/sum-mono")" = "$mono_digest" ] || { echo "sent bytes differ from pass 1" >&2; exit 1; }

# --- 2. chunked ---
session=$(start_session)
mkfifo "$tmp/sent-chunked"
sha_of <"$tmp/sent-chunked" >"$tmp/sum-chunked" &
hasher=$!
echo "PATCH $size bytes in $chunk_mib MiB chunks, then PUT..."
phase_begin
head -c "$size" /dev/urandom | tee "$tmp/sent-chunked" | {
  loc=$session
  off=0
  while [ "$off" -lt "$size" ]; do
    n=$((size - off < chunk ? size - off : chunk))
    h=$(head -c "$n" | curl -sS -D - -o /dev/null -X PATCH -T - -H 'Expect:' \
      -H 'Content-Type: application/octet-stream' -H "Content-Range: $off-$((off + n - 1))" "$loc")
    [ "$(echo "$h" | head -n1 | awk '{print $2}')" = 202 ] || { echo "PATCH at $off: $h" >&2; exit 1; }
    loc=$(absolute "$(echo "$h" | header_of location)")
    off=$((off + n))
  done
  echo "$loc" >"$tmp/loc"
}
wait "$hasher"
chunked_digest="sha256:$(cat "$tmp/sum-chunked")"
code=$(curl -sS -o "$tmp/put-chunked.out" -w '%{http_code}' -X PUT -H 'Content-Length: 0' \
  "$(with_digest "$(cat "$tmp/loc")" "$chunked_digest")")
phase_end "chunked PATCH ×$(((size + chunk - 1) / chunk)) + PUT"
[ "$code" = 201 ] || { echo "final PUT answered $code: $(cat "$tmp/put-chunked.out")" >&2; exit 1; }

# --- 3. read both back ---
echo "GET both blobs and check their sha256..."
phase_begin
got_mono="sha256:$(curl -sS -f "$base/v2/$repo/blobs/$mono_digest" | sha_of)"
got_chunked="sha256:$(curl -sS -f "$base/v2/$repo/blobs/$chunked_digest" | sha_of)"
phase_end "GET both, sha256 checked"
ok=1
[ "$got_mono" = "$mono_digest" ] || { echo "monolithic blob reads back as $got_mono" >&2; ok=0; }
[ "$got_chunked" = "$chunked_digest" ] || { echo "chunked blob reads back as $got_chunked" >&2; ok=0; }

echo
echo "berth RSS, blob of ${size_mib} MiB (idle after start: $(mib "$idle") MiB)"
echo
echo "| phase | peak RSS (VmHWM) MiB | max sampled VmRSS MiB | VmRSS after MiB | seconds |"
echo "|---|---|---|---|---|"
printf '%s\n' "${results[@]}"
echo
echo "digests: monolithic $mono_digest, chunked $chunked_digest: $([ $ok = 1 ] && echo verified by GET || echo MISMATCH)"
[ $ok = 1 ]
