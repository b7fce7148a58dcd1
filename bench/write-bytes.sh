#!/usr/bin/env bash
# Bytes berth writes to disk per byte pushed, monolithic and chunked: a load-independent
# figure (unlike MB/s on a shared machine). For each push it reads berth's /proc/PID/io before
# and after and prints, per pushed byte, `write_bytes` (what the kernel accounts to the process
# as sent to the storage layer, counted when pages are dirtied, so it does not depend on when
# writeback runs), `wchar` (bytes passed to write-like calls) and `syscw` (write-like calls
# per MiB). A chunked push that copies its parts again at completion shows write_bytes ≈ 2.
#
#   bench/write-bytes.sh [--size-mib N] [--chunk-mib N] [--berth BINARY] [--dir PARENT]
#
# --dir must be a disk-backed filesystem (on tmpfs write_bytes stays 0); the default is
# $TMPDIR or /tmp. --berth runs another build (e.g. an older one, to compare); the default is
# this checkout's release build, built first.
set -euo pipefail

size_mib=256
chunk_mib=16
berth=
parent=${TMPDIR:-/tmp}
while [ $# -gt 0 ]; do
  case $1 in
    --size-mib) size_mib=${2:?}; shift 2 ;;
    --chunk-mib) chunk_mib=${2:?}; shift 2 ;;
    --berth) berth=${2:?}; shift 2 ;;
    --dir) parent=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 64 ;;
  esac
done
size=$((size_mib * 1024 * 1024))
chunk=$((chunk_mib * 1024 * 1024))

root=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "$berth" ]; then
  cargo build --release --manifest-path "$root/Cargo.toml" --bin berth
  berth="$root/target/release/berth"
fi
[ -x "$berth" ] || { echo "no $berth" >&2; exit 1; }

tmp=$(mktemp -d "$parent/berth-writes.XXXXXX")
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
repo="writes/large"

io() { # field of berth's /proc/PID/io
  sed -n "s/^$1: //p" "/proc/$pid/io"
}
report() { # phase, before write_bytes, wchar, syscw
  local wb wc sc
  sync -f "$tmp/data" 2>/dev/null || true
  wb=$(( $(io write_bytes) - $2 )); wc=$(( $(io wchar) - $3 )); sc=$(( $(io syscw) - $4 ))
  awk -v p="$1" -v wb="$wb" -v wc="$wc" -v sc="$sc" -v n="$size" 'BEGIN {
    printf "%-10s write_bytes %.3f x  wchar %.3f x  write calls %.1f per MiB\n",
      p, wb / n, wc / n, sc / (n / 1048576) }'
}
with_digest() { # the upload URL $1 with ?digest= (or &digest=) added
  case $1 in *\?*) echo "$1&digest=$digest" ;; *) echo "$1?digest=$digest" ;; esac
}
location() { # the Location header of a response on stdin, absolute
  local l
  l=$(tr -d '\r' | sed -n 's/^[Ll]ocation: //p' | tail -n1)
  case $l in http*) echo "$l" ;; *) echo "$base$l" ;; esac
}

blob="$tmp/blob"
head -c "$size" /dev/urandom >"$blob"
digest="sha256:$(sha256sum "$blob" | cut -d' ' -f1)"
sync -f "$tmp" 2>/dev/null || sync

# Monolithic: POST, then one PUT with the whole body.
before=($(io write_bytes) $(io wchar) $(io syscw))
loc=$(curl -sS -D - -o /dev/null -X POST "$base/v2/$repo/blobs/uploads/" | location)
curl -sS -f -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' \
  --data-binary @"$blob" "$(with_digest "$loc")"
report monolithic "${before[@]}"

# The same blob again would be a no-op for some stores: change one byte.
printf 'x' | dd of="$blob" bs=1 seek=0 conv=notrunc status=none
digest="sha256:$(sha256sum "$blob" | cut -d' ' -f1)"
sync -f "$tmp" 2>/dev/null || sync

# Chunked: POST, PATCHes of --chunk-mib with Content-Range, then an empty PUT.
before=($(io write_bytes) $(io wchar) $(io syscw))
loc=$(curl -sS -D - -o /dev/null -X POST "$base/v2/$repo/blobs/uploads/" | location)
offset=0
while [ "$offset" -lt "$size" ]; do
  end=$(( offset + chunk < size ? offset + chunk : size ))
  loc=$(dd if="$blob" iflag=skip_bytes,count_bytes skip="$offset" count=$((end - offset)) \
      status=none |
    curl -sS -f -D - -o /dev/null -X PATCH -H 'Content-Type: application/octet-stream' \
      -H "Content-Range: $offset-$((end - 1))" --data-binary @- "$loc" | location)
  offset=$end
done
curl -sS -f -o /dev/null -X PUT "$(with_digest "$loc")"
report chunked "${before[@]}"

curl -sS -f "$base/v2/$repo/blobs/$digest" | sha256sum | grep -q "${digest#sha256:}" ||
  { echo "the chunked blob reads back wrong" >&2; exit 1; }
echo "berth $berth, ${size_mib} MiB blob, ${chunk_mib} MiB chunks, data in $(df --output=fstype "$tmp" | tail -n1)"
