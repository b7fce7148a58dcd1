#!/usr/bin/env bash
# Re-matching stored inventories after an advisory import, through the real API: IMAGES
# small Debian 12 images (over REPOS repositories), each one layer with a dpkg status of
# PACKAGES packages drawn from a shared set of SHARED source packages (each at one of two
# versions), pushed and scanned; then ADVISORIES OSV records, each fixing one shared
# package at its second version, imported in one request. The import re-matches every
# image holding a named package from the inventories stored at scan time: the time of that
# request is the figure, and `berth_scan_layers_read_total` in /metrics must not move (no
# blob is read). A second import of the same records, newer, re-matches them all again with
# nothing changed (every finding's last_seen moves).
#
#   bench/rematch.sh [--postgres] [--no-build]
#
# --postgres puts the index on the project's own PostgreSQL (scripts/services/postgres.sh,
# on port BERTH_PG_PORT, default 25463), in a fresh database; the cluster is stopped at the
# end. Data under target/bench/rematch-{sqlite,postgres} (deleted at the next run).
# Environment: IMAGES (1000), REPOS (10), PACKAGES (100), SHARED (300), ADVISORIES (200),
# WORKERS (parallel pushes and scans, 4), PORT (25471), BIN (the berth binary to serve),
# BERTH_LOG (the server's log filter, warn; its log is kept in the data directory's parent).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

postgres=0
build=1
for arg in "$@"; do
  case $arg in
    --postgres) postgres=1 ;;
    --no-build) build=0 ;;
    *) echo "unknown argument $arg" >&2; exit 2 ;;
  esac
done
export IMAGES=${IMAGES:-1000} REPOS=${REPOS:-10} PACKAGES=${PACKAGES:-100}
export SHARED=${SHARED:-300} ADVISORIES=${ADVISORIES:-200} WORKERS=${WORKERS:-4}
PORT=${PORT:-25471}
export BERTH_PG_PORT=${BERTH_PG_PORT:-25463}

[ "$build" = 1 ] && cargo build --release --locked >&2
BIN=${BIN:-$ROOT/target/release/berth}
kind=$([ "$postgres" = 1 ] && echo postgres || echo sqlite)
WORK=$ROOT/target/bench/rematch-$kind
rm -rf "$WORK"
mkdir -p "$WORK/data"

server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [ "$postgres" = 1 ]; then bash scripts/services/postgres.sh stop || true; fi
}
trap cleanup EXIT

unset BERTH_DATABASE_URL BERTH_STORAGE_URL
if [ "$postgres" = 1 ]; then
  eval "$(bash scripts/services/postgres.sh start)"
  database=berth_rematch
  psql -q "$BERTH_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS $database" -c "CREATE DATABASE $database"
  export BERTH_DATABASE_URL=${BERTH_TEST_DATABASE_URL%/*}/$database
fi

BERTH_LOG=${BERTH_LOG:-warn} "$BIN" serve --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" 2>"$WORK/serve.log" &
server_pid=$!
export BASE=http://127.0.0.1:$PORT
for _ in $(seq 300); do
  curl -sf "$BASE/healthz" >/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
  sleep 0.1
done
curl -sf "$BASE/healthz" >/dev/null

python3 - "$kind" <<'PY'
import gzip, hashlib, io, json, os, random, sys, tarfile, time, urllib.request
from concurrent.futures import ThreadPoolExecutor

kind = sys.argv[1]
BASE = os.environ["BASE"]
IMAGES, REPOS = int(os.environ["IMAGES"]), int(os.environ["REPOS"])
PACKAGES, SHARED = int(os.environ["PACKAGES"]), int(os.environ["SHARED"])
ADVISORIES, WORKERS = int(os.environ["ADVISORIES"]), int(os.environ["WORKERS"])
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OS_RELEASE = b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'


def request(method, path, body=None, headers=None):
    req = urllib.request.Request(BASE + path, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=600) as resp:
        return resp.status, resp.read()


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(repo, data):
    d = digest(data)
    status, _ = request("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", data,
                        {"Content-Type": "application/octet-stream"})
    assert status == 201, status
    return d


def layer(i, rng):
    status = []
    for p in sorted(rng.sample(range(SHARED), PACKAGES)):
        version = f"1.0-{rng.choice((1, 2))}"
        status.append(f"Package: lib{p:04d}\nStatus: install ok installed\nArchitecture: amd64\n"
                      f"Source: src{p:04d}\nVersion: {version}\nDescription: package {p}\n")
    files = [("etc/os-release", OS_RELEASE), ("etc/hostname", f"image-{i}\n".encode()),
             ("var/lib/dpkg/status", "\n".join(status).encode())]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


config = json.dumps({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": []}}).encode()


def push_and_scan(i):
    rng = random.Random(i)
    repo = f"bench/app{i % REPOS:02d}"
    blob = layer(i, rng)
    push_blob(repo, config)
    push_blob(repo, blob)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": GZIP_LAYER, "digest": digest(blob), "size": len(blob)}],
    }).encode()
    status, _ = request("PUT", f"/v2/{repo}/manifests/v{i}", manifest,
                        {"Content-Type": OCI_MANIFEST})
    assert status == 201, status
    status, body = request("POST", f"/api/v1/repositories/{repo}/-/images/{digest(manifest)}/scan?wait=true")
    record = json.loads(body)
    assert status == 200 and record["status"] == "ok" and record["packages"] == PACKAGES, record


def layers_read():
    _, body = request("GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith("berth_scan_layers_read_total "):
            return int(float(line.split()[1]))
    raise SystemExit("berth_scan_layers_read_total is not exported")


def advisories(modified):
    return json.dumps([{
        "id": f"BENCH-{p:04d}", "aliases": [f"CVE-2099-{p:04d}"], "modified": modified,
        "affected": [{
            "package": {"ecosystem": "Debian:12", "name": f"src{p:04d}"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0-2"}]}],
            "ecosystem_specific": {"urgency": ("low", "medium", "high")[p % 3]},
        }],
    } for p in range(ADVISORIES)]).encode()


def timed_import(modified):
    start = time.monotonic()
    status, body = request("POST", "/api/v1/advisories", advisories(modified),
                           {"Content-Type": "application/json"})
    seconds = time.monotonic() - start
    report = json.loads(body)
    assert status == 200 and report["imported"] == ADVISORIES, report
    return seconds, report


start = time.monotonic()
with ThreadPoolExecutor(WORKERS) as pool:
    list(pool.map(push_and_scan, range(IMAGES)))
print(f"{IMAGES} images of {PACKAGES} packages pushed and scanned in "
      f"{time.monotonic() - start:.1f} s", file=sys.stderr)
before = layers_read()
first, report = timed_import("2024-05-01T00:00:00Z")
second, again = timed_import("2024-06-01T00:00:00Z")
after = layers_read()
_, body = request("GET", "/api/v1/vulnerabilities?limit=1")
overview = json.loads(body)
print(f"\n{kind}: {IMAGES} images x {PACKAGES} packages ({SHARED} shared sources), "
      f"{ADVISORIES} advisories")
print(f"| import | images re-matched | changed | seconds |")
print(f"| --- | ---: | ---: | ---: |")
print(f"| first (findings appear) | {report['rematched_images']} | {report['changed_images']} | {first:.2f} |")
print(f"| again, newer (last_seen moves) | {again['rematched_images']} | {again['changed_images']} | {second:.2f} |")
print(f"findings stored: {overview['summary']['findings']}")
print(f"layer blobs read during the imports: {after - before}")
if after != before:
    raise SystemExit("re-matching read a blob")
if report["rematched_images"] != IMAGES:
    raise SystemExit(f"expected {IMAGES} images re-matched")
PY
