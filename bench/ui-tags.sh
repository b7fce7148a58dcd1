#!/usr/bin/env bash
# The UI's repository page with 10,000 tags: server time and bytes of its first page in each
# sort order. Starts a release berth (authentication off) on a temporary data dir, pushes
# --images small images through /v2/ and tags them --tags times in all (a Python filler with
# a few keep-alive connections), then GETs /ui/r/bench/app?sort=… --rounds times per order
# and prints, per order, the median, minimum and maximum of the server time (the UI's
# `Server-Timing: app;dur=…` header), of curl's total time on loopback, and the bytes.
#
#   bench/ui-tags.sh [--tags N] [--images N] [--rounds N] [--berth BINARY] [--no-build]
set -euo pipefail

tags=10000
images=100
rounds=5
berth=
build=1
while [ $# -gt 0 ]; do
  case $1 in
    --tags) tags=${2:?}; shift 2 ;;
    --images) images=${2:?}; shift 2 ;;
    --rounds) rounds=${2:?}; shift 2 ;;
    --berth) berth=${2:?}; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 64 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "$berth" ]; then
  [ "$build" = 1 ] && cargo build --release --locked --manifest-path "$root/Cargo.toml" --bin berth
  berth="$root/target/release/berth"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/berth-ui-tags.XXXXXX")
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

NO_COLOR=1 BERTH_LOG="warn,berth=info" "$berth" serve --data-dir "$tmp/data" \
  --listen 127.0.0.1:0 2>"$tmp/berth.log" &
pid=$!
addr=
for _ in $(seq 300); do
  addr=$(sed -n 's/.*berth is serving.*address=\([0-9.]*:[0-9]*\).*/\1/p' "$tmp/berth.log" | head -n1)
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/berth.log" >&2; echo "berth exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { echo "berth did not start" >&2; exit 1; }

started=$(date +%s)
python3 - "$addr" "$images" "$tags" <<'PY'
import hashlib, http.client, json, sys, threading

addr, images, tags = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
host, port = addr.split(":")
REPO = "bench/app"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"

def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()

def conn():
    return http.client.HTTPConnection(host, int(port), timeout=60)

def call(c, method, path, body, headers=None):
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    r.read()
    if r.status not in (201, 202):
        raise SystemExit(f"{method} {path}: {r.status}")

c = conn()
manifests = []
for i in range(images):
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                         "config": {}, "created": f"2026-01-01T00:00:{i % 60:02d}Z"}).encode()
    layer = (f"layer {i} " * (1 + i * 10)).encode()
    for blob in (config, layer):
        call(c, "POST", f"/v2/{REPO}/blobs/uploads/?digest={sha(blob)}", blob)
    manifests.append(json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(layer), "size": len(layer)}],
    }).encode())

def tagger(worker, workers):
    c = conn()
    for t in range(worker, tags, workers):
        call(c, "PUT", f"/v2/{REPO}/manifests/v{t:05d}", manifests[t % images], {"Content-Type": MANIFEST})

threads = [threading.Thread(target=tagger, args=(w, 4)) for w in range(4)]
for t in threads: t.start()
for t in threads: t.join()
PY
echo "filled: $tags tags over $images images in $(( $(date +%s) - started )) s"

# The repository page once, so that the statistics flush and caches are not in round 1.
curl -sf -o /dev/null "http://$addr/ui/r/bench/app"

echo "sort     server-ms median (min-max)   curl-ms median (min-max)   bytes   rows"
for sort in pushed name pulled size; do
  server=() total=() bytes=
  for _ in $(seq "$rounds"); do
    out=$(curl -s -D "$tmp/headers" -o "$tmp/body" -w '%{time_total} %{size_download}' \
      "http://$addr/ui/r/bench/app?sort=$sort")
    server+=("$(sed -n 's/^[Ss]erver-[Tt]iming: app;dur=\([0-9.]*\).*/\1/p' "$tmp/headers")")
    total+=("$(awk '{printf "%.2f", $1 * 1000}' <<<"$out")")
    bytes=$(awk '{print $2}' <<<"$out")
  done
  rows=$(grep -o '<td class="tag">' "$tmp/body" | wc -l)
  stat() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {printf "%.2f (%.2f-%.2f)", v[int((NR+1)/2)], v[1], v[NR]}'; }
  printf '%-8s %-28s %-26s %-7s %s\n' "$sort" "$(stat "${server[@]}")" "$(stat "${total[@]}")" "$bytes" "$rows"
done
