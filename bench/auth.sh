#!/usr/bin/env bash
# What access control costs: regbench head-storm and pull-many against three Berths at once,
# auth off, auth on with bearer tokens only (the Docker token flow: regbench fetches a token
# per repository from the realm and sends it on every request), and auth on with Basic
# credentials on every request.
#
#   bench/auth.sh --regbench BIN [--rounds N] [--seconds S] [--images N] [--out FILE] [--no-build]
#
# BIN is a built regbench binary. Berth is built in release unless --no-build. The servers
# start fresh on loopback ports with temporary data dirs (deleted at the end). Each round runs
# head-storm (S seconds, default 10) then pull-many against off, token, basic in turn (the
# first alternates per round); push-many (--images, default 1000) runs once per server first. One JSON
# line per run goes to --out (default target/bench/auth-<time>.jsonl); the medians and the
# ratio to "off" are printed at the end.
set -euo pipefail

regbench= rounds=3 seconds=10 images=1000 out= build=1
while [ $# -gt 0 ]; do
  case $1 in
    --regbench) regbench=${2:?}; shift 2 ;;
    --rounds) rounds=${2:?}; shift 2 ;;
    --seconds) seconds=${2:?}; shift 2 ;;
    --images) images=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 64 ;;
  esac
done
[ -x "$regbench" ] || { echo "--regbench BIN: a built regbench binary is needed" >&2; exit 64; }
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
berth=$root/target/release/berth
[ "$build" = 1 ] && (cd "$root" && cargo build --release --locked --bin berth)
out=${out:-$root/target/bench/auth-$(date +%Y%m%d-%H%M%S).jsonl}
mkdir -p "$(dirname "$out")"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/berth-auth-bench.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

password=bench-admin-password
declare -A url pid
# start NAME [ENV=VALUE...]: a Berth on a free loopback port; sets url[NAME], pid[NAME]
start() {
  local name=$1; shift
  mkdir -p "$tmp/$name"
  printf '[auth]\nbasic_on_v2 = %s\n' "$([ "$name" = token ] && echo false || echo true)" >"$tmp/$name/config.toml"
  env "$@" NO_COLOR=1 BERTH_LOG=warn,berth=info "$berth" serve --config "$tmp/$name/config.toml" \
    --data-dir "$tmp/$name/data" --listen 127.0.0.1:0 2>"$tmp/$name/log" &
  pid[$name]=$!; pids+=("$!")
  local addr=
  for _ in $(seq 300); do
    addr=$(sed -n 's/.*berth is serving.*address=\([0-9.]*:[0-9]*\).*/\1/p' "$tmp/$name/log" | head -n1)
    [ -n "$addr" ] && break
    kill -0 "${pid[$name]}" 2>/dev/null || { cat "$tmp/$name/log" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "berth ($name) did not start" >&2; exit 1; }
  url[$name]=http://$addr
}
start off
start token BERTH_AUTH_ENABLED=true BERTH_ADMIN_PASSWORD=$password
start basic BERTH_AUTH_ENABLED=true BERTH_ADMIN_PASSWORD=$password

rb() {                                  # rb NAME SCENARIO [ARGS...]
  local name=$1; shift
  local creds=(); [ "$name" != off ] && creds=(--user admin --password "$password")
  # a state file holds one registry's pushes: pull-many needs what push-many recorded there
  local state=$tmp/state-$name-many.json; [ "$1" = head-storm ] && state=$tmp/state-$name-storm.json
  "$regbench" --registry "${url[$name]}" "${creds[@]}" --state "$state" \
    --server-pid "${pid[$name]}" --json "$out" --label "auth-$name" "$@"
}
order=(off token basic)
for name in "${order[@]}"; do rb "$name" push-many --images "$images" | tail -n 3; done
for round in $(seq "$rounds"); do
  for i in 0 1 2; do
    name=${order[$(( (i + round) % 3 ))]}
    echo "# round $round: $name"
    rb "$name" head-storm --seconds "$seconds" | tail -n 2
    rb "$name" pull-many | tail -n 2
  done
done

python3 - "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
figures = {"head-storm": "requests_per_s", "pull-many": "images_per_s"}
med = {}
for scenario, key in figures.items():
    for label in ("auth-off", "auth-token", "auth-basic"):
        vals = [r["results"][key] for r in runs
                if r["scenario"] == scenario and r["label"] == label and r["ok"]]
        if vals:
            med[(scenario, label)] = statistics.median(vals)
print(f"{'scenario':<11} {'figure':<15} {'off':>10} {'token':>10} {'basic':>10} {'token/off':>9} {'basic/off':>9}")
for scenario, key in figures.items():
    off = med.get((scenario, "auth-off"))
    row = [med.get((scenario, f"auth-{m}")) for m in ("off", "token", "basic")]
    cells = " ".join(f"{v:>10.1f}" if v else f"{'-':>10}" for v in row)
    ratios = " ".join(f"{(v / off):>9.3f}" if v and off else f"{'-':>9}" for v in row[1:])
    print(f"{scenario:<11} {key:<15} {cells} {ratios}")
PY
echo "# runs in $out"
