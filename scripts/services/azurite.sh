#!/usr/bin/env bash
# Azurite (the Azure Blob Storage emulator, from npm, installed under target/) on 127.0.0.1
# for Berth's tests, with one container.
#
#   eval "$(bash scripts/services/azurite.sh)"   # start (or reuse); prints `export K=V` lines
#   bash scripts/services/azurite.sh stop        # stop the server this script started
#   bash scripts/services/azurite.sh pause       # stop it, keeping its data (outage tests)
#   bash scripts/services/azurite.sh resume      # start a paused server again on its data
#
# Env: BERTH_AZURE_PORT (default 25100). stdout carries only the export lines; logs to stderr.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PORT=${BERTH_AZURE_PORT:-25100}
CONTAINER=berth-test
AZURITE_VERSION=3.35.0   # the newest release that runs on Node 20
DIR=$ROOT/target/services/azurite-$AZURITE_VERSION
RUN=$ROOT/target/services/azure-$PORT
PID_FILE=$RUN/pid
URL=http://127.0.0.1:$PORT
# The emulator's well-known public account and key (documented by Microsoft; not a secret).
ACCOUNT=devstoreaccount1
ACCOUNT_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

running() { [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }

start_server() {
  if curl -s -o /dev/null "$URL/"; then
    echo "something already answers on port $PORT; set BERTH_AZURE_PORT" >&2; exit 1
  fi
  "$DIR/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$PORT" \
    --location "$RUN/data" --disableTelemetry --skipApiVersionCheck </dev/null >>"$RUN/log" 2>&1 &
  echo $! >"$PID_FILE"
  for _ in $(seq 120); do   # up to ~30 s; any HTTP answer means it is up
    curl -s -o /dev/null "$URL/" && break
    running || break
    sleep 0.25
  done
  if ! running || ! curl -s -o /dev/null "$URL/"; then
    echo "Azurite did not come up; log:" >&2; tail -n 20 "$RUN/log" >&2
    running && kill "$(cat "$PID_FILE")"
    exit 1
  fi
  echo "Azurite up on $URL (pid $(cat "$PID_FILE"), log $RUN/log)" >&2
}

case ${1:-start} in
  stop|pause)
    if running; then
      # SIGTERM lets Azurite write its metadata to --location before it exits.
      pid=$(cat "$PID_FILE"); kill "$pid"
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      echo "Azurite (pid $pid) stopped" >&2
    fi
    rm -f "$PID_FILE"
    exit 0 ;;
  resume)
    [ -d "$RUN/data" ] || { echo "no paused Azurite on port $PORT" >&2; exit 1; }
    running || start_server
    exit 0 ;;
esac

if running; then
  echo "Azurite already running (pid $(cat "$PID_FILE"))" >&2
else
  command -v npm >/dev/null || { echo "npm not found (scripts/install-test-deps.sh)" >&2; exit 1; }
  if [ ! -x "$DIR/node_modules/.bin/azurite-blob" ]; then
    echo "installing Azurite $AZURITE_VERSION into $DIR" >&2
    mkdir -p "$DIR"
    (cd "$DIR" && npm install --no-audit --no-fund --silent "azurite@$AZURITE_VERSION") >&2
  fi
  rm -rf "$RUN" && mkdir -p "$RUN/data"
  start_server
fi

# Create the container. Azurite wants a SharedKey-signed request: 201 created, 409 exists.
URL=$URL CONTAINER=$CONTAINER ACCOUNT=$ACCOUNT KEY=$ACCOUNT_KEY node <<'JS' >&2
const crypto = require("crypto"), http = require("http");
const { URL: base, CONTAINER: c, ACCOUNT: a, KEY: key } = process.env;
const date = new Date().toUTCString(), ver = "2021-08-06";
const toSign = ["PUT", "", "", "", "", "", "", "", "", "", "", "",
  `x-ms-date:${date}\nx-ms-version:${ver}`, `/${a}/${a}/${c}\nrestype:container`].join("\n");
const sig = crypto.createHmac("sha256", Buffer.from(key, "base64")).update(toSign).digest("base64");
http.request(`${base}/${a}/${c}?restype=container`, { method: "PUT", headers: {
  "x-ms-date": date, "x-ms-version": ver, "Content-Length": 0, Authorization: `SharedKey ${a}:${sig}` },
}, (res) => { console.error(`container ${c}: HTTP ${res.statusCode}`);
  process.exit([201, 409].includes(res.statusCode) ? 0 : 1); })
  .on("error", (e) => { console.error(e.message); process.exit(1); }).end();
JS

# AZURE_* are the names object_store's MicrosoftAzureBuilder::from_env() reads.
cat <<VARS
export AZURE_STORAGE_USE_EMULATOR=true
export AZURITE_BLOB_STORAGE_URL=$URL
export AZURE_STORAGE_ACCOUNT_NAME=$ACCOUNT
export AZURE_STORAGE_ACCOUNT_KEY=$ACCOUNT_KEY
export BERTH_TEST_AZURE_URL=az://$CONTAINER
export BERTH_AZURE_PID_FILE=$PID_FILE
VARS
