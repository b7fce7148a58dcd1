#!/usr/bin/env bash
# An S3 server (moto, from PyPI, in a venv under target/) on 127.0.0.1 for Berth's tests, with
# one bucket. moto keeps objects in memory and does not check signatures.
#
#   eval "$(bash scripts/services/s3.sh)"   # start (or reuse); prints `export K=V` lines
#   bash scripts/services/s3.sh stop        # stop the server this script started
#
# Env: BERTH_S3_PORT (default 25900). stdout carries only the export lines; logs go to stderr.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PORT=${BERTH_S3_PORT:-25900}
BUCKET=berth-test
MOTO_VERSION=5.2.5
VENV=$ROOT/target/services/moto-$MOTO_VERSION
RUN=$ROOT/target/services/s3-$PORT
PID_FILE=$RUN/pid
URL=http://127.0.0.1:$PORT

running() { [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }

if [ "${1:-start}" = stop ]; then
  if running; then
    pid=$(cat "$PID_FILE"); kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    echo "moto (pid $pid) stopped" >&2
  fi
  rm -f "$PID_FILE"
  exit 0
fi

if running; then
  echo "moto already running (pid $(cat "$PID_FILE"))" >&2
else
  mkdir -p "$RUN"
  if [ ! -x "$VENV/bin/moto_server" ]; then
    echo "installing moto $MOTO_VERSION into $VENV" >&2
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install -q "moto[server]==$MOTO_VERSION" >&2
  fi
  if curl -s -o /dev/null "$URL/"; then
    echo "something already answers on port $PORT; set BERTH_S3_PORT" >&2; exit 1
  fi
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" </dev/null >"$RUN/log" 2>&1 &
  echo $! >"$PID_FILE"
  for _ in $(seq 120); do   # up to ~30 s
    curl -s -o /dev/null "$URL/" && break
    running || break
    sleep 0.25
  done
  if ! running || ! curl -s -o /dev/null "$URL/"; then
    echo "moto did not come up; log:" >&2; tail -n 20 "$RUN/log" >&2
    running && kill "$(cat "$PID_FILE")"
    exit 1
  fi
  echo "moto up on $URL (pid $(cat "$PID_FILE"), log $RUN/log)" >&2
fi
# moto's buckets live in memory: (re)create ours; 200 when new, 409 when it exists.
curl -s -o /dev/null -X PUT "$URL/$BUCKET"

# AWS_* are the names object_store's AmazonS3Builder::from_env() reads.
cat <<VARS
export AWS_ENDPOINT=$URL
export AWS_ALLOW_HTTP=true
export AWS_ACCESS_KEY_ID=berth-test
export AWS_SECRET_ACCESS_KEY=berth-test-secret
export AWS_REGION=us-east-1
export BERTH_TEST_S3_URL=s3://$BUCKET
export BERTH_S3_PID_FILE=$PID_FILE
VARS
