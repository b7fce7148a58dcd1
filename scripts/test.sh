#!/usr/bin/env bash
# The whole test suite: installs what it needs (Debian packages, a PyPI venv), builds once,
# then runs the unit and integration tests, the conformance runner and the real-client suite
# against a Berth started on a free loopback port; then starts PostgreSQL, moto (S3) and
# Azurite (Azure) on loopback (scripts/services/) and runs the API tests, the multi-replica
# tests, the conformance runner and the real clients again on PostgreSQL + S3 and on
# PostgreSQL + Azure (and the index's own tests on PostgreSQL).
#
#   bash scripts/test.sh            # everything
#   SKIP_INSTALL=1 bash scripts/test.sh
#   CLIENTS_ARGS="--skip docker" bash scripts/test.sh
#   SKIP_SCALE_OUT=1 bash scripts/test.sh   # only the default SQLite + filesystem backends
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
say() { printf '\n== %s  [%s]\n' "$*" "$(date +%T)"; }

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  say "installing test dependencies"
  bash scripts/install-test-deps.sh
fi

say "building"
# Every cargo call below says --workspace: the conformance runner turns on reqwest's
# `blocking` feature, so a call for the berth package alone resolves features otherwise and
# builds berth and everything on reqwest a second time.
cargo build --workspace --all-targets --locked

say "unit and integration tests"
cargo test --workspace --locked

say "metrics and alert rules checked by promtool"
cargo test --workspace --locked --test api metrics:: -- --include-ignored

say "the pull-through cache with Distribution (docker-registry) as upstream, filled by skopeo"
cargo test --workspace --locked --test api proxy:: -- --include-ignored

say "replication to and from Distribution (docker-registry), checked with skopeo"
cargo test --workspace --locked --test api replication:: -- --include-ignored

say "the web UI in headless Chromium (screenshots in target/ui-screenshots/)"
cargo test --workspace --locked --test api ui_browser:: -- --include-ignored

# A full disk is a small tmpfs the test mounts, which needs root.
if [ "$(id -u)" = 0 ]; then
  say "a full disk (a small tmpfs)"
  cargo test --workspace --locked --test api disk_full:: -- --include-ignored
else
  say "SKIPPED: the full-disk test mounts a tmpfs and needs root"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/berth-test.XXXXXX")
BERTH_PID=
SERVICES=()
stop_berth() {
  if [ -n "$BERTH_PID" ] && kill -0 "$BERTH_PID" 2>/dev/null; then
    kill "$BERTH_PID"
    wait "$BERTH_PID" 2>/dev/null || true
  fi
  BERTH_PID=
}
cleanup() {
  stop_berth
  for svc in "${SERVICES[@]}"; do bash "scripts/services/$svc.sh" stop || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# start_berth NAME [ENV=VALUE...]: starts target/debug/berth on a free port with the given
# environment; sets ADDR.
start_berth() {
  local name=$1; shift
  say "starting berth ($name) on a free port"
  env "$@" BERTH_LOG=info target/debug/berth serve --data-dir "$WORK/data-$name" \
    --listen 127.0.0.1:0 2>"$WORK/berth-$name.log" &
  BERTH_PID=$!
  ADDR=
  for _ in $(seq 1 300); do
    ADDR=$(grep -o 'address=127\.0\.0\.1:[0-9]*' "$WORK/berth-$name.log" | head -n1 | cut -d= -f2 || true)
    [ -n "$ADDR" ] && break
    kill -0 "$BERTH_PID" 2>/dev/null || { cat "$WORK/berth-$name.log"; exit 1; }
    sleep 0.1
  done
  [ -n "$ADDR" ] || { echo "berth did not start"; cat "$WORK/berth-$name.log"; exit 1; }
  echo "berth at $ADDR"
}

status=0
# client_suites NAME [ARGS...]: the conformance runner and the real clients against the berth
# at $ADDR, with ARGS for tests/clients/run.sh.
client_suites() {
  local name=$1 ok=0; shift
  say "conformance (spec workflows) on $name"
  target/debug/berth-conformance --registry "http://$ADDR" || ok=1
  say "real clients on $name"
  # shellcheck disable=SC2086
  bash tests/clients/run.sh "$ADDR" "$@" ${CLIENTS_ARGS:-} || ok=1
  if [ "$ok" != 0 ]; then
    status=1
    echo "--- berth log on $name (last 50 lines)"; tail -n 50 "$WORK/berth-$name.log"
  fi
  stop_berth
}

start_berth sqlite
client_suites sqlite

# The same real clients through access control: logins with passwords, personal and deploy
# tokens, read-only refusals, visibility.
say "real clients with auth on (sqlite)"
start_berth sqlite-auth BERTH_AUTH_ENABLED=true BERTH_ADMIN_PASSWORD=admin-e2e-password
# (the pull-through group starts a Berth of its own, without auth: it ran above)
bash tests/clients/run.sh --auth admin:admin-e2e-password "$ADDR" --skip proxy || {
  status=1
  echo "--- berth log on sqlite-auth (last 50 lines)"; tail -n 50 "$WORK/berth-sqlite-auth.log"
}
stop_berth

# oras-py's default token flow and python-dxf (which sends credentials over HTTPS only)
# through access control over HTTPS, with a certificate made here.
say "python clients with auth on over HTTPS (sqlite)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
start_berth sqlite-https BERTH_AUTH_ENABLED=true BERTH_ADMIN_PASSWORD=admin-e2e-password \
  BERTH_TLS_CERT="$WORK/tls.crt" BERTH_TLS_KEY="$WORK/tls.key"
"${BERTH_TEST_VENV:-target/test-venv}/bin/python" tests/clients/py_auth.py --registry "$ADDR" --repo e2e/https-py \
  --user admin --password admin-e2e-password --ca "$WORK/tls.crt" --workdir "$WORK/py-https" \
  | tee "$WORK/py-https.out"
if ! grep -q '^ok - python-dxf' "$WORK/py-https.out" || grep -q '^not ok' "$WORK/py-https.out"; then
  status=1
  echo "--- berth log on sqlite-https (last 50 lines)"; tail -n 50 "$WORK/berth-sqlite-https.log"
fi
stop_berth

say "the scanner's dpkg inventory against syft's, on a real Debian rootfs"
# the client suite's image group caches this rootfs; made here when that group did not run
BASE_TAR=target/debian-bookworm-minbase.tar
if [ ! -s "$BASE_TAR" ]; then
  mmdebstrap --variant=minbase --include=ca-certificates bookworm "${BASE_TAR%.tar}.part.tar" \
    ${BERTH_TEST_DEBIAN_MIRROR:+"$BERTH_TEST_DEBIAN_MIRROR"} &&
    mv "${BASE_TAR%.tar}.part.tar" "$BASE_TAR" || status=1
fi
cargo test --workspace --locked --test api scans::dpkg_inventory_agrees_with_syft -- --include-ignored ||
  status=1

say "the scanner's rpm, Go and language inventories against syft's (an rpmdb made with rpm, also as Berkeley DB; a Go binary built here)"
cargo test --workspace --locked --test api ecosystems:: -- --include-ignored || status=1

say "vulnerabilities of the Debian release against bookworm-security (advisories from changelogs)"
# two mmdebstrap images and OSV records derived from the security updates' changelogs, cached
python3 tests/fixtures/debian_security.py target/debian-security &&
  cargo test --workspace --locked --test api vulnerabilities:: -- --include-ignored || status=1

if [ "${SKIP_SCALE_OUT:-0}" = 1 ]; then
  exit "$status"
fi

# ---------------------------------------------------------------- shared backends
# The same tests over PostgreSQL and the object stores (moto for S3, Azurite for Azure),
# re-running the test binaries built above. GCS has no usable emulator, so it is not run.
# Tests that need a backend are #[ignore]d (a plain `cargo test` has none); each call below
# adds `--include-ignored` exactly when every backend its ignored tests need is up.
say "starting PostgreSQL, S3 (moto) and Azure (Azurite) on loopback"
for svc in postgres s3 azurite; do
  SERVICES+=("$svc")
  eval "$(bash "scripts/services/$svc.sh")"
done

# fresh_database NAME: creates database NAME on the test server and prints its URL.
fresh_database() {
  psql -q "$BERTH_TEST_DATABASE_URL" -c "CREATE DATABASE \"$1\"" >&2
  echo "${BERTH_TEST_DATABASE_URL%/*}/$1"
}

# The replica tests may start PostgreSQL and Azurite of their own, to stop them for real.
export BERTH_TEST_OUTAGES=1

say "index orderings on PostgreSQL"
cargo test --workspace --locked --lib meta:: -- --include-ignored || status=1
# The API tests on PostgreSQL run below, with each cloud store: a run on PostgreSQL + the
# filesystem would repeat a subset of them (those need no cloud store) for five minutes.

for store in "$BERTH_TEST_S3_URL" "$BERTH_TEST_AZURE_URL"; do
  kind=${store%%:*}
  say "blob store suite, API tests and replicas on PostgreSQL + $kind"
  BERTH_TEST_STORAGE_URL=$store cargo test --workspace --locked --lib blobs:: -- --include-ignored ||
    status=1
  # (the full-disk test fills a local filesystem, and the scanner's checks against syft and
  # the Debian fixtures read what the scanner stores, not the store: they ran above)
  BERTH_TEST_STORAGE_URL=$store cargo test --workspace --locked --test api --test replicas \
    -- --include-ignored --skip disk_full:: --skip scans::dpkg_inventory_agrees_with_syft --skip ui_browser:: \
    --skip vulnerabilities:: --skip ecosystems:: || status=1

  run=$(date +%s)-$$
  db=$(fresh_database "berth_suites_${kind}_${run//-/_}")
  # On S3 blob GETs are answered with presigned redirects, so every client is seen to
  # follow them; on Azure the bytes stream through Berth.
  config=$WORK/$kind.toml
  if [ "$kind" = s3 ]; then printf '[storage]\nredirect = true\n' >"$config"; else : >"$config"; fi
  start_berth "pg-$kind" BERTH_CONFIG="$config" BERTH_DATABASE_URL="$db" \
    BERTH_STORAGE_URL="$store/suites-$run"
  # the container image and the pull-through group (each its own Berth, SQLite) run once, on sqlite
  client_suites "pg-$kind" --skip image,proxy
done

exit "$status"
