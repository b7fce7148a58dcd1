#!/usr/bin/env bash
# Statistics and image listings at scale: 1,000 repositories x 1,000 tags (1M tags, each on
# its own image) and 1M pulls over 365 days, written straight into the index by
# bench/stats_scale_fill.py as Berth's pushes and flushes would have written them; then
# `berth serve` (release build) on it, and the median of RUNS requests (curl's time_total)
# of each endpoint below. Target: each under 50 ms, on SQLite and on PostgreSQL.
#
#   bench/stats-scale.sh [--postgres] [--no-build] [--reuse]
#
# --reuse serves the index the last run filled (of the same kind) instead of filling anew.
# --postgres puts the index on the project's own PostgreSQL (scripts/services/postgres.sh,
# on port BERTH_PG_PORT, default 25462 so that it is this benchmark's own), in a fresh
# database; the cluster is stopped at the end. The data is kept under
# target/bench/stats-scale-{sqlite,postgres} (deleted at the next run).
# Environment: REPOS, TAGS, PULLS, DAYS (the shape), RUNS (requests per endpoint, 7), PORT.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

postgres=0
build=1
reuse=0
for arg in "$@"; do
  case $arg in
    --postgres) postgres=1 ;;
    --no-build) build=0 ;;
    --reuse) reuse=1 ;;
    *) echo "unknown argument $arg" >&2; exit 2 ;;
  esac
done
REPOS=${REPOS:-1000}
TAGS=${TAGS:-1000}
PULLS=${PULLS:-1000000}
DAYS=${DAYS:-365}
RUNS=${RUNS:-7}
PORT=${PORT:-25470}
export BERTH_PG_PORT=${BERTH_PG_PORT:-25462}

[ "$build" = 1 ] && cargo build --release --locked >&2
BIN=$ROOT/target/release/berth
kind=$([ "$postgres" = 1 ] && echo postgres || echo sqlite)
WORK=$ROOT/target/bench/stats-scale-$kind
[ "$reuse" = 1 ] || rm -rf "$WORK"
mkdir -p "$WORK/data"

server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [ "$postgres" = 1 ]; then bash scripts/services/postgres.sh stop || true; fi
}
trap cleanup EXIT

unset BERTH_DATABASE_URL BERTH_STORAGE_URL
if [ "$postgres" = 1 ]; then
  # --reuse resumes the cluster the last run filled (a plain start makes a fresh one)
  eval "$(bash scripts/services/postgres.sh "$([ "$reuse" = 1 ] && echo resume || echo start)")"
  database=berth_stats_scale
  if [ "$reuse" = 0 ]; then
    psql -q "$BERTH_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS $database" -c "CREATE DATABASE $database"
  fi
  export BERTH_DATABASE_URL=${BERTH_TEST_DATABASE_URL%/*}/$database
fi

if [ "$reuse" = 0 ]; then
  echo "== schema (berth migrate), then $REPOS x $TAGS tags and $PULLS pulls over $DAYS days" >&2
  "$BIN" migrate --data-dir "$WORK/data" >&2
  start=$(date +%s)
  fill=(python3 bench/stats_scale_fill.py --repos "$REPOS" --tags "$TAGS" --pulls "$PULLS" --days "$DAYS")
  if [ "$postgres" = 1 ]; then
    "${fill[@]}" --postgres | psql -q -v ON_ERROR_STOP=1 "$BERTH_DATABASE_URL" >/dev/null
  else
    "${fill[@]}" --sqlite "$WORK/data/berth.db"
  fi
  echo "filled in $(( $(date +%s) - start )) s" >&2
fi

BERTH_LOG=warn "$BIN" serve --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" 2>"$WORK/serve.log" &
server_pid=$!
base=http://127.0.0.1:$PORT
for _ in $(seq 300); do
  curl -sf "$base/healthz" >/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
  sleep 0.1
done
curl -sf "$base/healthz" >/dev/null

today=$(date -u +%F)
year_ago=$(date -u -d "364 days ago" +%F)
repo=team01/app0001   # the most pulled repository
endpoints=(
  "image listing, first page|/api/v1/repositories/$repo/-/images"
  "image listing, architecture=arm64 and a tag|/api/v1/repositories/$repo/-/images?architecture=arm64&tag=1.5.1"
  "popular repositories, 365 days|/api/v1/stats/popular?window=365d"
  "popular tags, 365 days|/api/v1/stats/popular?window=365d&by=tag"
  "popular repositories, 30 days|/api/v1/stats/popular?window=30d"
  "popular tags, 30 days|/api/v1/stats/popular?window=30d&by=tag"
  "popular tags, 90 days|/api/v1/stats/popular?window=90d&by=tag"
  "popular tags, 7 days|/api/v1/stats/popular?window=7d&by=tag"
  "popular tags, 1 day|/api/v1/stats/popular?window=1d&by=tag"
  "trend, one year by day|/api/v1/stats/trends?from=$year_ago&to=$today"
  "trend, one year by day, one repository|/api/v1/stats/trends?from=$year_ago&to=$today&repository=$repo"
  "trend, one year by month|/api/v1/stats/trends?from=$year_ago&to=$today&interval=month"
  "totals|/api/v1/stats"
)

printf '\n%s, %s repositories x %s tags, %s pulls over %s days; median of %s (ms)\n' \
  "$kind" "$REPOS" "$TAGS" "$PULLS" "$DAYS" "$RUNS"
printf '| %-42s | %8s | %8s |\n' endpoint median max
printf '| %-42s | %8s | %8s |\n' "---" "---:" "---:"
for entry in "${endpoints[@]}"; do
  label=${entry%%|*}
  path=${entry#*|}
  # A request slower than MAX_SECS (30) is cut off and reported as such, once.
  status=$(curl -s --max-time "${MAX_SECS:-30}" -o "$WORK/last.json" -w '%{http_code}' "$base$path" || true)
  if [ "$status" = 000 ]; then
    printf '| %-42s | %8s | %8s |\n' "$label" "> ${MAX_SECS:-30} s" "-"
    continue
  fi
  [ "$status" = 200 ] || { echo "$path: $status $(head -c 300 "$WORK/last.json")" >&2; exit 1; }
  times=()
  for _ in $(seq "$RUNS"); do
    times+=("$(curl -s -o /dev/null -w '%{time_total}' "$base$path")")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v label="$label" '
    { t[NR] = $1 * 1000 }
    END { printf "| %-42s | %8.1f | %8.1f |\n", label, t[int((NR + 1) / 2)], t[NR] }'
done
