#!/usr/bin/env bash
# Berth against CNCF Distribution (Debian's docker-registry) with the neutral client regbench.
#
#   bench/run.sh --regbench DIR [--rounds N] [--smoke] [--out FILE] [--berth-config FILE]
#                [--no-build] [--backend fs|s3] [--redirect] [--scenarios a,b,...]
#                [--peer-berth-config FILE] [--peer-berth-binary FILE] [--data-on DIR]
#
# DIR is regbench's source (its own Cargo workspace); it is built with
# `cargo build --release --manifest-path DIR/Cargo.toml`, into this repository's
# target/regbench (DIR may be read-only). Berth is built in release. Both servers start fresh
# on loopback ports with temporary data dirs (deleted at the end); each of the six scenarios
# runs against one then the other (the first alternates per round), --rounds times, with
# --server-pid so the server's RSS and CPU are recorded. One JSON line per run is appended to
# --out (default target/bench/run-<time>.jsonl); then bench/summarize.py prints medians and
# Berth/Distribution ratios against the targets. --smoke uses tiny sizes (a quick check).
# --backend s3 puts both registries on object storage instead of local disk: it starts the
# project's own PostgreSQL and S3 emulator (scripts/services/postgres.sh and s3.sh, moto, on
# ports BERTH_PG_PORT / BERTH_S3_PORT, default 25442 / 25910 so that they are the benchmark's
# own) and stops them at the end; Berth gets a fresh database and an s3://bucket/prefix,
# Distribution its s3 driver on the same bucket under another prefix (redirects disabled).
# --redirect (with --backend s3) turns redirects on for both: blob GETs answer 307 to a
# presigned URL of the store (Berth's storage.redirect, Distribution's default).
# --scenarios runs only the named scenarios (default: all six).
# --peer-berth-config FILE measures Berth against Berth: the peer (label `berth-peer`) is a
# second Berth serving with FILE instead of Distribution (e.g. `[stats] enabled = false`);
# --peer-berth-binary FILE makes that second Berth another build (default: the same one), to
# compare two builds in one run.
# --data-on DIR puts both servers' data (and the run's logs) under DIR, e.g. /dev/shm to
# measure the code path on tmpfs apart from the disk. Every run first prints the data
# filesystem's own write speed: `dd` of 1 GiB (256 MiB with --smoke) with conv=fdatasync,
# also written to --out's .env file beside it, for the on-disk targets (≥ 90 % of dd).
# Environment: REGBENCH_FLAGS adds flags to every regbench call; REGBENCH_FLAGS_<scenario>
# (dashes as underscores, e.g. REGBENCH_FLAGS_pull_many="--concurrency 64") to one scenario's.
set -euo pipefail

regbench_src=
rounds=1
smoke=0
out=
berth_config=
build=1
backend=fs
redirect=0
only=
peer_config=
peer_binary=
data_on=${TMPDIR:-/tmp}
while [ $# -gt 0 ]; do
  case $1 in
    --regbench) regbench_src=${2:?}; shift 2 ;;
    --rounds) rounds=${2:?}; shift 2 ;;
    --smoke) smoke=1; shift ;;
    --out) out=${2:?}; shift 2 ;;
    --berth-config) berth_config=${2:?}; shift 2 ;;
    --no-build) build=0; shift ;;
    --backend) backend=${2:?}; shift 2 ;;
    --redirect) redirect=1; shift ;;
    --scenarios) only=${2:?}; shift 2 ;;
    --peer-berth-config) peer_config=${2:?}; shift 2 ;;
    --peer-berth-binary) peer_binary=${2:?}; shift 2 ;;
    --data-on) data_on=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 64 ;;
  esac
done
[ -n "$regbench_src" ] || { echo "--regbench DIR (regbench's source) is required" >&2; exit 64; }
[ -f "$regbench_src/Cargo.toml" ] || { echo "$regbench_src/Cargo.toml not found" >&2; exit 64; }
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "--rounds must be a positive integer" >&2; exit 64; }
case $backend in fs|s3) ;; *) echo "--backend must be fs or s3" >&2; exit 64 ;; esac
if [ "$redirect" = 1 ]; then
  [ "$backend" = s3 ] || { echo "--redirect needs --backend s3" >&2; exit 64; }
  [ -z "$berth_config" ] || { echo "--redirect writes Berth's config; drop --berth-config" >&2; exit 64; }
fi
if [ -n "$peer_binary" ] && [ -z "$peer_config" ]; then
  peer_config=/dev/null # the peer's defaults
fi
if [ -n "$peer_config" ]; then
  [ -f "$peer_config" ] || [ "$peer_config" = /dev/null ] || { echo "--peer-berth-config: $peer_config not found" >&2; exit 64; }
  [ "$backend" = fs ] || { echo "--peer-berth-config runs on the filesystem backend only" >&2; exit 64; }
  [ "$peer_config" = /dev/null ] || peer_config=$(cd "$(dirname "$peer_config")" && pwd)/$(basename "$peer_config")
else
  command -v docker-registry >/dev/null || { echo "docker-registry not installed (apt-get install docker-registry)" >&2; exit 1; }
fi

root=$(cd "$(dirname "$0")/.." && pwd)
regbench_target="$root/target/regbench"
if [ "$build" = 1 ]; then
  cargo build --release --manifest-path "$root/Cargo.toml" --bin berth
  cargo build --release --manifest-path "$regbench_src/Cargo.toml" --target-dir "$regbench_target"
fi
berth="$root/target/release/berth"
regbench="$regbench_target/release/regbench"
for b in "$berth" "$regbench"; do [ -x "$b" ] || { echo "no $b: build first" >&2; exit 1; }; done
if [ -z "$out" ]; then
  mkdir -p "$root/target/bench"
  # (not `$(test && echo)`: a false last substitution fails the assignment under set -e)
  suffix=; [ "$backend" = s3 ] && suffix=-s3; [ "$redirect" = 1 ] && suffix=$suffix-redirect
  [ "$smoke" = 1 ] && suffix=$suffix-smoke
  out="$root/target/bench/run-$(date +%Y%m%d-%H%M%S)$suffix.jsonl"
fi
touch "$out"

[ -d "$data_on" ] || { echo "--data-on: $data_on is not a directory" >&2; exit 64; }
tmp=$(mktemp -d "$data_on/berth-bench.XXXXXX")
berth_pid=
dist_pid=
services=()    # scripts/services/*.sh started by this run, stopped at the end
berth_db=
stop_server() { # pid
  [ -n "$1" ] || return 0
  kill -0 "$1" 2>/dev/null || return 0
  kill -TERM "$1" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null
  wait "$1" 2>/dev/null
  return 0
}
cleanup() {
  set +e
  stop_server "$berth_pid"
  stop_server "$dist_pid"
  [ -n "$berth_db" ] && psql -q "$BERTH_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS $berth_db" >/dev/null
  for s in "${services[@]}"; do bash "$root/scripts/services/$s.sh" stop; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The data filesystem's own sequential write speed, flushed (what a durable push can reach).
dd_mib=1024; [ "$smoke" = 1 ] && dd_mib=256
fs_type=$(df --output=fstype "$tmp" | tail -n1)
dd_line=$(dd if=/dev/zero of="$tmp/dd-probe" bs=1M count="$dd_mib" conv=fdatasync 2>&1 | tail -n1)
rm -f "$tmp/dd-probe"
echo "data on $tmp ($fs_type): dd $dd_mib MiB conv=fdatasync: $dd_line"
printf '{"data_dir_fs":"%s","dd_mib":%d,"dd":"%s"}\n' "$fs_type" "$dd_mib" "$dd_line" >>"$out.env"

wait_ready() { # name pid url
  for _ in $(seq 300); do
    curl -sf -o /dev/null "$3/v2/" && return 0
    kill -0 "$2" 2>/dev/null || { echo "$1 exited; its log:" >&2; cat "$tmp/$1.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "$1 did not answer GET /v2/ in 30 s" >&2
  exit 1
}

# --- S3 backend: PostgreSQL and moto of our own, a fresh database, unique prefixes ---
if [ "$backend" = s3 ]; then
  export BERTH_PG_PORT=${BERTH_PG_PORT:-25442} BERTH_S3_PORT=${BERTH_S3_PORT:-25910}
  services+=(postgres)
  eval "$(bash "$root/scripts/services/postgres.sh")"
  services+=(s3)
  eval "$(bash "$root/scripts/services/s3.sh")" # exports AWS_* (read by Berth's object_store)
  run_id=$(date +%Y%m%d%H%M%S)-$$
  berth_db=berth_bench_${run_id//-/_}
  psql -q "$BERTH_TEST_DATABASE_URL" -c "CREATE DATABASE $berth_db" >/dev/null
  s3_bucket=${BERTH_TEST_S3_URL#s3://}
  export BERTH_DATABASE_URL=${BERTH_TEST_DATABASE_URL%/*}/$berth_db
  export BERTH_STORAGE_URL=s3://$s3_bucket/bench-$run_id/berth
fi

# --- Berth: port 0, learn the port from its serving line ---
if [ "$redirect" = 1 ]; then
  berth_config=$tmp/berth-redirect.toml
  printf '[storage]\nredirect = true\n' >"$berth_config"
fi
start_berth() { # name config [binary]: sets started_pid and started_url
  local args=(serve --data-dir "$tmp/$1-data" --listen 127.0.0.1:0) addr= bin=${3:-$berth}
  [ -n "$2" ] && [ "$2" != /dev/null ] && args+=(--config "$2")
  # Distribution runs with its access log off (below); so does Berth (its line per request
  # is at level info under the target `access`).
  NO_COLOR=1 BERTH_LOG=info,access=warn "$bin" "${args[@]}" 2>"$tmp/$1.log" &
  started_pid=$!
  for _ in $(seq 300); do
    addr=$(sed 's/\x1b\[[0-9;]*m//g' "$tmp/$1.log" |
      sed -n 's/.*berth is serving.*address=\([0-9.]*:[0-9]*\).*/\1/p' | head -n1)
    [ -n "$addr" ] && break
    kill -0 "$started_pid" 2>/dev/null || { cat "$tmp/$1.log" >&2; echo "$1 exited" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "$1 did not start in 30 s" >&2; exit 1; }
  started_url="http://$addr"
  wait_ready "$1" "$started_pid" "$started_url"
}
start_berth berth "$berth_config"
berth_pid=$started_pid
berth_url=$started_url

peer=distribution
if [ -n "$peer_config" ]; then
  peer=berth-peer
  start_berth berth-peer "$peer_config" "${peer_binary:-$berth}"
  dist_pid=$started_pid
  dist_url=$started_url
else
  # --- Distribution: a free loopback port, filesystem storage in the temp dir (or S3) ---
  dist_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$tmp/dist-data"
  if [ "$backend" = s3 ]; then
    # Without --redirect, redirects are disabled: blobs flow through the registry, as with
    # Berth (else GETs go to moto).
    dist_redirect=true; [ "$redirect" = 1 ] && dist_redirect=false
    dist_storage="  s3:
    accesskey: $AWS_ACCESS_KEY_ID
    secretkey: $AWS_SECRET_ACCESS_KEY
    region: $AWS_REGION
    regionendpoint: $AWS_ENDPOINT
    bucket: $s3_bucket
    rootdirectory: /bench-$run_id/distribution
    encrypt: false
    secure: false
    v4auth: true
  redirect:
    disable: $dist_redirect"
  else
    dist_storage="  filesystem:
    rootdirectory: $tmp/dist-data"
  fi
  cat >"$tmp/distribution.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
$dist_storage
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$dist_port
health:
  storagedriver:
    enabled: false
EOF
  # AWS_CA_BUNDLE (if the environment sets one) makes Distribution's aws-sdk-go panic at start
  # ("HTTPClient's transport unsupported type"); the endpoint is plain HTTP anyway. env execs, so
  # $! is the registry's PID.
  env -u AWS_CA_BUNDLE docker-registry serve "$tmp/distribution.yml" >"$tmp/distribution.log" 2>&1 &
  dist_pid=$!
  dist_url="http://127.0.0.1:$dist_port"
  wait_ready distribution "$dist_pid" "$dist_url"
fi

echo "berth        pid $berth_pid  $berth_url  ($("$berth" --version))"
if [ -n "$peer_config" ]; then
  echo "berth-peer   pid $dist_pid  $dist_url  (config $peer_config, $("${peer_binary:-$berth}" --version))"
else
  echo "distribution pid $dist_pid  $dist_url  ($(docker-registry --version))"
fi
[ "$backend" = s3 ] && echo "storage      PostgreSQL database $berth_db, S3 $AWS_ENDPOINT bucket $s3_bucket prefix bench-$run_id/{berth,distribution} (moto pid $(cat "$BERTH_S3_PID_FILE"))"
echo "regbench     $("$regbench" --version); rounds $rounds$([ "$smoke" = 1 ] && echo ', smoke sizes')"
echo "results      $out"

if [ "$smoke" = 1 ]; then
  declare -A sizes=([push-large]="--size 32" [push-many]="--images 20" [head-storm]="--seconds 2" [tags-list]="--tags 250")
else
  declare -A sizes=()
fi
# shellcheck disable=SC2206
extra=(${REGBENCH_FLAGS:-})
scenarios=(push-large pull-large push-many pull-many head-storm tags-list)
if [ -n "$only" ]; then
  IFS=, read -r -a scenarios <<<"$only"
fi
failures=0
run_one() { # label url pid scenario
  local args
  # shellcheck disable=SC2206
  args=(${sizes[$4]:-})
  local own=REGBENCH_FLAGS_${4//-/_}
  # shellcheck disable=SC2206
  args+=(${!own:-})
  echo "== $1 $4"
  if ! "$regbench" --registry "$2" --json "$out" --label "$1" --state "$tmp/state-$1.json" \
    --server-pid "$3" "${extra[@]}" "$4" "${args[@]}" 2>&1 | sed 's/^/   /'; then
    failures=$((failures + 1))
  fi
}
for ((round = 1; round <= rounds; round++)); do
  echo "### round $round of $rounds"
  for scenario in "${scenarios[@]}"; do
    if ((round % 2 == 1)); then
      run_one berth "$berth_url" "$berth_pid" "$scenario"
      run_one "$peer" "$dist_url" "$dist_pid" "$scenario"
    else
      run_one "$peer" "$dist_url" "$dist_pid" "$scenario"
      run_one berth "$berth_url" "$berth_pid" "$scenario"
    fi
  done
done

totals() { # name pid: whole-run CPU seconds and VmHWM of the server
  local hwm stat f cpu
  hwm=$(awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$2/status")
  stat=$(<"/proc/$2/stat")
  read -ra f <<<"${stat##*)}" # fields after the command name: utime is 11, stime 12
  cpu=$(awk -v t=$((f[11] + f[12])) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / hz }')
  echo "$1: whole run $cpu CPU s, VmHWM $hwm MiB"
}
echo
totals berth "$berth_pid"
totals "$peer" "$dist_pid"
[ "$backend" = s3 ] && totals "moto (S3, both)" "$(cat "$BERTH_S3_PID_FILE")"
echo
python3 "$root/bench/summarize.py" "$out" --a berth --b "$peer"
echo
echo "(2-core machine shared with other work: single figures are noisy; compare ratios and medians over rounds)"
[ "$failures" = 0 ] || { echo "$failures regbench run(s) reported errors" >&2; exit 2; }
