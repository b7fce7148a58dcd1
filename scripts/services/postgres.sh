#!/usr/bin/env bash
# A private, throw-away PostgreSQL cluster on 127.0.0.1 for Berth's tests (Debian's PostgreSQL
# binaries; the system cluster is left alone). Data, log and PID file under target/services/pg.
#
#   eval "$(bash scripts/services/postgres.sh)"   # start (or reuse); prints `export K=V` lines
#   bash scripts/services/postgres.sh stop        # stop the server this script started
#   bash scripts/services/postgres.sh pause       # stop it, keeping its data (outage tests)
#   bash scripts/services/postgres.sh resume      # start a paused server again on its data (prints the same variables)
#
# Env: BERTH_PG_PORT (default 25432). stdout carries only the export lines; logs go to stderr.
# The user is the cluster's superuser, so tests may create a database each.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PORT=${BERTH_PG_PORT:-25432}
USER_NAME=berth
PASSWORD=berth-test
RUN=$ROOT/target/services/pg-$PORT
PID_FILE=$RUN/pid
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -x "$BIN/initdb" ] || { echo "PostgreSQL binaries not found (apt-get install postgresql)" >&2; exit 1; }
as=(); [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)   # initdb and postgres refuse root

running() { [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }

# -w -t 30: wait, bounded, until the server accepts connections. Durability is off: the
# cluster is thrown away after the tests.
start_server() {
  "${as[@]}" "$BIN/pg_ctl" -D "$RUN/data" -l "$RUN/log" -w -t 30 start -o \
    "-c listen_addresses=127.0.0.1 -p $PORT -k $RUN -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >&2 ||
    { tail -n 20 "$RUN/log" >&2; exit 1; }
  head -n1 "$RUN/data/postmaster.pid" >"$PID_FILE"
  echo "PostgreSQL up on 127.0.0.1:$PORT (pid $(cat "$PID_FILE"), log $RUN/log)" >&2
}

case ${1:-start} in
  stop|pause)
    if running; then
      # SIGINT is PostgreSQL's fast shutdown (SIGTERM would wait for clients to disconnect).
      pid=$(cat "$PID_FILE"); kill -INT "$pid"
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      echo "PostgreSQL (pid $pid) stopped" >&2
    fi
    rm -f "$PID_FILE"
    exit 0 ;;
  resume)
    [ -d "$RUN/data" ] || { echo "no paused cluster on port $PORT" >&2; exit 1; }
    running || start_server ;;
esac

if [ "${1:-start}" = resume ]; then
  :
elif running; then
  echo "PostgreSQL already running (pid $(cat "$PID_FILE"))" >&2
else
  rm -rf "$RUN" && mkdir -p "$RUN"
  [ "$(id -u)" = 0 ] && chown postgres: "$RUN"
  printf '%s\n' "$PASSWORD" >"$RUN/pwfile"
  [ "$(id -u)" = 0 ] && chown postgres: "$RUN/pwfile"
  "${as[@]}" "$BIN/initdb" -D "$RUN/data" -U "$USER_NAME" --pwfile="$RUN/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$RUN/initdb.log"
  start_server
fi

cat <<VARS
export BERTH_TEST_DATABASE_URL=postgres://$USER_NAME:$PASSWORD@127.0.0.1:$PORT/postgres
export BERTH_PG_PID_FILE=$PID_FILE
VARS
