#!/usr/bin/env bash
# The whole test suite: installs what it needs (Debian packages, a PyPI venv), builds once,
# then runs the unit and integration tests, the conformance runner and the real-client suite
# against a Berth started on a free loopback port.
#
#   bash scripts/test.sh            # everything
#   SKIP_INSTALL=1 bash scripts/test.sh
#   CLIENTS_ARGS="--skip docker" bash scripts/test.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
say() { printf '\n== %s\n' "$*"; }

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  say "installing test dependencies"
  bash scripts/install-test-deps.sh
fi

say "building"
cargo build --workspace --all-targets --locked

say "unit and integration tests"
cargo test --workspace --locked

WORK=$(mktemp -d "${TMPDIR:-/tmp}/berth-test.XXXXXX")
BERTH_PID=
cleanup() {
  if [ -n "$BERTH_PID" ] && kill -0 "$BERTH_PID" 2>/dev/null; then
    kill "$BERTH_PID"
    wait "$BERTH_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

say "starting berth on a free port"
BERTH_LOG=info target/debug/berth serve --data-dir "$WORK/data" --listen 127.0.0.1:0 \
  2>"$WORK/berth.log" &
BERTH_PID=$!
ADDR=
for _ in $(seq 1 300); do
  ADDR=$(grep -o 'address=127\.0\.0\.1:[0-9]*' "$WORK/berth.log" | head -n1 | cut -d= -f2 || true)
  [ -n "$ADDR" ] && break
  kill -0 "$BERTH_PID" 2>/dev/null || { cat "$WORK/berth.log"; exit 1; }
  sleep 0.1
done
[ -n "$ADDR" ] || { echo "berth did not start"; cat "$WORK/berth.log"; exit 1; }
echo "berth at $ADDR"

status=0
say "conformance (spec workflows)"
target/debug/berth-conformance --registry "http://$ADDR" || status=1

say "real clients"
# shellcheck disable=SC2086
bash tests/clients/run.sh "$ADDR" ${CLIENTS_ARGS:-} || status=1

if [ "$status" != 0 ]; then
  echo "--- berth log (last 50 lines)"; tail -n 50 "$WORK/berth.log"
fi
exit "$status"
