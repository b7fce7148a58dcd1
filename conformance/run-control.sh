#!/usr/bin/env bash
# Runs berth-conformance against a private CNCF Distribution (Debian's docker-registry 2.8.2),
# the control registry, to tell runner bugs from registry bugs.
#
#   conformance/run-control.sh [PORT] [-- extra runner args]
#
# PORT defaults to 5001 (CONTROL_PORT overrides). The registry keeps its config, data and log in
# a temp dir, listens on 127.0.0.1 only, and is stopped by the PID this script started.
# Needs: docker-registry (apt-get install docker-registry), curl, and a built runner
# (cargo build -p berth-conformance). Exit status is the runner's.
set -euo pipefail

port=${CONTROL_PORT:-5001}
if [[ $# -gt 0 && $1 != -- ]]; then port=$1; shift; fi
[[ ${1:-} == -- ]] && shift

here=$(cd "$(dirname "$0")" && pwd)
runner=${RUNNER:-$here/../target/debug/berth-conformance}
command -v docker-registry >/dev/null || { echo "docker-registry is not installed" >&2; exit 2; }
[[ -x $runner ]] || { echo "build the runner first: cargo build -p berth-conformance" >&2; exit 2; }
if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
  echo "127.0.0.1:$port is already in use; pass another port" >&2; exit 2
fi

dir=$(mktemp -d /tmp/berth-conformance-control.XXXXXX)
cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF

REGISTRY_HTTP_SECRET=berth-conformance-control docker-registry serve "$dir/config.yml" \
  >"$dir/registry.log" 2>&1 &
pid=$!
stop() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"; }
trap stop EXIT

up=0
for _ in $(seq 1 80); do   # bounded wait for the listener (at most ~20 s)
  kill -0 "$pid" 2>/dev/null || { echo "docker-registry exited: $(tail -n 2 "$dir/registry.log")" >&2; exit 2; }
  if [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" || true) == 200 ]]; then
    up=1; break
  fi
  sleep 0.25
done
[[ $up == 1 ]] || { echo "docker-registry did not answer on 127.0.0.1:$port" >&2; exit 2; }

set +e
"$runner" --registry "http://127.0.0.1:$port" "$@"
status=$?
set -e
exit $status
