#!/usr/bin/env bash
# Berth real-client end-to-end suite.
#
# Drives unmodified third-party registry clients (skopeo, podman, buildah, docker/dockerd,
# containerd's ctr, oras-py, python-dxf) against a registry listening on loopback over plain
# HTTP, and checks what comes back (digests, bytes, counts), not just exit codes.
#
# Usage:
#   tests/clients/run.sh [options] HOST:PORT          e.g. tests/clients/run.sh 127.0.0.1:5000
#
# Options:
#   --only a,b    run only these client groups      --skip a,b   run all but these groups
#                 (either may be given more than once; the lists add up)
#                 groups: skopeo multiarch blobs podman docker ctr proxy image oras dxf
#                 quarantine trust (proxy starts its own Berth, target/debug/berth or
#                 BERTH_TEST_BERTH, and a docker-registry upstream: see run_proxy)
#                 (podman = podman + buildah; multiarch uses skopeo and podman; blobs uses skopeo;
#                 image builds the Dockerfile offline around target/debug/berth (or
#                 BERTH_TEST_IMAGE_BINARY, a path inside the repository), runs it in
#                 the private dockerd with auth on, and pushes/pulls with skopeo; quarantine
#                 quarantines an image through /api/v1 and checks that skopeo, podman, docker
#                 and ctr pulls fail showing the reason, then pull after the release; and
#                 that skopeo is refused an unscanned image under block_unscanned; trust
#                 puts an enforce trust policy on a repository and checks that skopeo,
#                 podman, docker and ctr pulls of its unsigned image fail showing the
#                 reason, pull once a cosign signature is pushed, and that switching the
#                 key refuses it again)
#   --auth U:P    the registry has access control on and U:P is an administrator: run only the
#                 auth group (logins with password, personal and deploy tokens; read-only token
#                 refused push; anonymous pull of a PUBLIC repository, refused pull of PRIVATE)
#   --keep        keep the temporary work dir (per-check logs are in <work>/logs)
#   -v            print the log of each failed check
#   -h, --help    this text
#
# Environment:
#   BERTH_TEST_VENV      Python venv with oras-py and python-dxf (default: <repo>/target/test-venv,
#                        created by scripts/install-test-deps.sh)
#   BERTH_TEST_TIMEOUT   seconds allowed for any single client command (default: 300)
#   BERTH_TEST_DOCKER_HOST          use this docker engine instead of starting a private dockerd
#   BERTH_TEST_CONTAINERD_ADDRESS   containerd socket for ctr (default: the private dockerd's)
#   BERTH_TEST_DEBIAN_MIRROR        mirror URL or sources file for the image group's mmdebstrap
#                                   (default: deb.debian.org, with bookworm-updates and -security)
#
# Output: one line per check, "ok - <client>: <check>" or "not ok - <client>: <check>: <reason>",
# then "N passed, N failed". Exit status 1 if any check failed, 2 on bad usage.
#
# Every run builds its own images (tar + gzip + jq into an OCI image layout, with a fresh nonce
# so every blob is new to the registry) and pushes only under <registry>/e2e/<run-id>/.
# The private dockerd (needs root) runs from the work dir with the vfs storage driver and no
# networking setup, and is stopped by its PID when the script exits.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV=${BERTH_TEST_VENV:-$ROOT/target/test-venv}
TMO=${BERTH_TEST_TIMEOUT:-300}

usage() { sed -n '2,/^set -uo/p' "$0" | sed -e '/^set -uo/d' -e 's/^# \{0,1\}//'; }

REG="" ONLY="" SKIP="" KEEP=0 VERBOSE=0 AUTH=
while [ $# -gt 0 ]; do
  case $1 in
    --only) [ $# -ge 2 ] || { echo "--only needs a list" >&2; exit 2; }; ONLY=${ONLY:+$ONLY,}$2; shift 2 ;;
    --skip) [ $# -ge 2 ] || { echo "--skip needs a list" >&2; exit 2; }; SKIP=${SKIP:+$SKIP,}$2; shift 2 ;;
    --only=*) ONLY=${ONLY:+$ONLY,}${1#*=}; shift ;;
    --skip=*) SKIP=${SKIP:+$SKIP,}${1#*=}; shift ;;
    --auth) [ $# -ge 2 ] || { echo "--auth needs USER:PASSWORD" >&2; exit 2; }; AUTH=$2; shift 2 ;;
    --auth=*) AUTH=${1#*=}; shift ;;
    --keep) KEEP=1; shift ;;
    -v|--verbose) VERBOSE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    *) [ -z "$REG" ] || { echo "only one registry address, got '$REG' and '$1'" >&2; exit 2; }
       REG=$1; shift ;;
  esac
done
[ -n "$REG" ] || { usage >&2; exit 2; }
case $REG in
  127.*:*|localhost:*|\[::1\]:*) ;;
  *) echo "registry must be a loopback HOST:PORT (127.x.x.x, localhost or [::1]), got '$REG'" >&2; exit 2 ;;
esac
ALL_GROUPS="skopeo multiarch blobs podman docker ctr proxy image oras dxf quarantine trust auth"
for g in ${ONLY//,/ } ${SKIP//,/ }; do
  [[ " $ALL_GROUPS " == *" $g "* ]] || { echo "unknown client group '$g' (groups: $ALL_GROUPS)" >&2; exit 2; }
done
case $TMO in ''|*[!0-9]*) echo "BERTH_TEST_TIMEOUT must be a number of seconds" >&2; exit 2 ;; esac
if [ -n "$AUTH" ]; then
  [[ $AUTH == ?*:?* ]] || { echo "--auth needs USER:PASSWORD" >&2; exit 2; }
  ONLY=auth SKIP=                       # the other groups push anonymously
else
  SKIP=${SKIP:+$SKIP,}auth               # the auth group needs an administrator
fi
CURL_AUTH=(); [ -n "$AUTH" ] && CURL_AUTH=(-u "$AUTH")   # the curl verifier reads as admin

# ----------------------------------------------------------------------------- run state
RUN_ID=r$(date +%s)$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
NS=e2e/$RUN_ID                          # every repository of this run: $REG/$NS/...
# podman/buildah name images loaded from oci:PATH after PATH, which must then be lowercase
TMPBASE=${TMPDIR:-/tmp}; [[ $TMPBASE == *[[:upper:]]* ]] && TMPBASE=/tmp
WORK=$TMPBASE/berth-e2e-$RUN_ID
mkdir -m 700 "$WORK" || { echo "cannot create work dir $WORK" >&2; exit 2; }
LAYOUT=$WORK/layout                     # the OCI image layout with this run's test images
PASS=0 FAIL=0 NCHECK=0 WHY=
DOCKERD_PID=
declare -A D                            # fixture facts: D[man-KEY], D[cfg-KEY], D[layer-KEY], ...
declare -A READY                        # memo for one-time setup steps (seeds, dockerd)

# Platforms of the multi-arch index: key, os/arch[/variant]
PLATFORMS=(amd64:linux/amd64 arm64:linux/arm64 armv7:linux/arm/v7 ppc64le:linux/ppc64le s390x:linux/s390x)
MT_MANIFEST=application/vnd.oci.image.manifest.v1+json
MT_INDEX=application/vnd.oci.image.index.v1+json
MT_CONFIG=application/vnd.oci.image.config.v1+json
MT_TARGZ=application/vnd.oci.image.layer.v1.tar+gzip
MT_TAR=application/vnd.oci.image.layer.v1.tar
ACCEPT="$MT_MANIFEST,$MT_INDEX,application/vnd.docker.distribution.manifest.v2+json,application/vnd.docker.distribution.manifest.list.v2+json"

# ----------------------------------------------------------------------------- check runner
# check CLIENT "what is checked" FUNC [ARGS...]
# Runs FUNC in this shell with its output in a per-check log. It fails when FUNC returns
# non-zero or called `fail` (the first reason given is reported; otherwise the log's last line).
check() {
  local client=$1 what=$2; shift 2
  NCHECK=$((NCHECK + 1)); WHY=
  local log; log=$WORK/logs/$(printf '%03d' "$NCHECK").log
  echo "# $client: $what" >"$log"
  "$@" >>"$log" 2>&1
  local rc=$?
  if [ "$rc" = 0 ] && [ -z "$WHY" ]; then
    PASS=$((PASS + 1)); echo "ok - $client: $what"
  else
    if [ -z "$WHY" ] && [ "$rc" = 124 ]; then WHY="a client command timed out (${TMO}s)"; fi
    [ -n "$WHY" ] || WHY=$(sed -n '2,$p' "$log" | grep -v '^[[:space:]]*$' | tail -n 1 | cut -c1-300)
    FAIL=$((FAIL + 1)); echo "not ok - $client: $what: ${WHY:-failed without output}"
    if [ "$VERBOSE" = 1 ]; then sed 's/^/#   /' "$log"; fi
  fi
  return 0
}
fail() { [ -n "$WHY" ] || WHY=$*; echo "FAIL: $*"; return 1; }   # fail "reason"
# same A B "what": fail unless A = B
same() { [ "$1" = "$2" ] || fail "$3: got '$1', want '$2'"; }
# report a check that could not run, without running anything
cannot() { NCHECK=$((NCHECK + 1)); FAIL=$((FAIL + 1)); echo "not ok - $1: $2: $3"; }

want() {                                # want GROUP: selected by --only/--skip?
  if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$1,"* ]]; then return 1; fi
  [[ ",$SKIP," != *",$1,"* ]]
}
have() { command -v "$1" >/dev/null 2>&1; }
tm() { timeout -k 10 "$TMO" "$@"; }     # every client command is time-bounded
sha_file() { echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"; }
hex() { echo "${1#sha256:}"; }
# digest_in FILE: the digest a client wrote (digestfile, parsed push output); fails if none
digest_in() {
  local d; d=$(cat "$1" 2>/dev/null)
  [[ $d =~ ^sha256:[0-9a-f]{64}$ ]] || { fail "no pushed digest recorded (did the push fail?)"; return; }
  echo "$d"
}
blob() { echo "$LAYOUT/blobs/sha256/$(hex "$1")"; }

# ----------------------------------------------------------------------------- registry via curl
# Independent verifier: what the registry actually serves, read with curl.
# get_manifest REPO REF OUT -> writes the body, fails unless 200
get_manifest() {
  local code
  code=$(curl -sS -m "$TMO" "${CURL_AUTH[@]}" -o "$3" -w '%{http_code}' -H "Accept: $ACCEPT" \
    "http://$REG/v2/$1/manifests/$2") || { fail "GET manifest $1:$2: curl error"; return; }
  [ "$code" = 200 ] || fail "GET /v2/$1/manifests/$2 -> $code"
}
# served_digest REPO REF -> sha256 of the manifest bytes served
served_digest() {
  local f; f=$(mktemp "$WORK/served.XXXXXX")
  get_manifest "$1" "$2" "$f" >&2 || return 1
  sha_file "$f"
}
# blob_status REPO DIGEST [GET|HEAD] -> http status (and headers in $WORK/last-headers).
# A GET follows a redirect to the blob store (storage.redirect) as clients do.
blob_status() {
  local m=${3:-HEAD} opt=(-I)
  [ "$m" = GET ] && opt=(-L)
  curl -sS -m "$TMO" "${opt[@]}" -D "$WORK/last-headers" -o "$WORK/last-body" -w '%{http_code}' \
    "http://$REG/v2/$1/blobs/$2"
}

# ----------------------------------------------------------------------------- fixtures
# An OCI image layout built with coreutils, tar, gzip and jq. Tags:
#   single             linux/amd64 image, one small gzip layer
#   <platform key>     one image per entry of PLATFORMS (config architecture/variant set)
#   multi              OCI index of the PLATFORMS images
#   zero               image whose only layer is a zero-length blob (uncompressed media type)
#   large              image with a 64 MiB random gzip layer
add_blob() {                            # stdin -> layout blob; prints "digest size"
  local t d; t=$(mktemp "$LAYOUT/tmp.XXXXXX"); cat >"$t"
  d=$(sha256sum "$t" | cut -d' ' -f1); mv "$t" "$LAYOUT/blobs/sha256/$d"
  echo "sha256:$d $(stat -c %s "$LAYOUT/blobs/sha256/$d")"
}
# make_image KEY OS/ARCH[/VARIANT] LAYERKIND   (LAYERKIND: small | large | zero)
make_image() {
  local key=$1 plat=$2 kind=$3 os arch variant
  IFS=/ read -r os arch variant <<<"$plat"
  local w; w=$(mktemp -d "$WORK/img.XXXXXX")
  local ld ls lmt=$MT_TARGZ diffid
  case $kind in
    small|large)
      mkdir "$w/rootfs"
      printf 'berth e2e %s %s %s\n' "$key" "$plat" "$RUN_ID" >"$w/rootfs/hello.txt"
      [ "$kind" = large ] && head -c 64M /dev/urandom >"$w/rootfs/random.bin"
      tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$w/rootfs" -cf "$w/layer.tar" .
      diffid=$(sha_file "$w/layer.tar")
      read -r ld ls < <(gzip -n -1 -c "$w/layer.tar" | add_blob) ;;
    zero)
      lmt=$MT_TAR
      read -r ld ls < <(add_blob </dev/null)
      diffid=$ld ;;
  esac
  local cd cs md ms
  read -r cd cs < <(jq -cnj --arg os "$os" --arg a "$arch" --arg v "$variant" --arg d "$diffid" \
      --arg k "$key" --arg n "$RUN_ID" '
    {created:"1970-01-01T00:00:00Z", architecture:$a, os:$os}
    + (if $v == "" then {} else {variant:$v} end)
    + {config:{Cmd:["/hello.txt"], Labels:{"berth.e2e.key":$k, "berth.e2e.run":$n}},
       rootfs:{type:"layers", diff_ids:[$d]}}' | add_blob)
  read -r md ms < <(jq -cnj --arg cmt "$MT_CONFIG" --arg cd "$cd" --argjson cs "$cs" \
      --arg lmt "$lmt" --arg ld "$ld" --argjson ls "$ls" --arg mmt "$MT_MANIFEST" '
    {schemaVersion:2, mediaType:$mmt,
     config:{mediaType:$cmt, digest:$cd, size:$cs},
     layers:[{mediaType:$lmt, digest:$ld, size:$ls}]}' | add_blob)
  D[man-$key]=$md D[mansize-$key]=$ms D[cfg-$key]=$cd D[layer-$key]=$ld D[diffid-$key]=$diffid
  D[plat-$key]=$plat
  rm -rf "$w"
}
build_fixtures() {
  mkdir -p "$LAYOUT/blobs/sha256" || return 1
  local p key plat
  make_image single linux/amd64 small || return 1
  for p in "${PLATFORMS[@]}"; do make_image "${p%%:*}" "${p#*:}" small || return 1; done
  if want blobs; then                   # the 64 MiB layer costs time: only when used
    make_image zero linux/amd64 zero || return 1
    make_image large linux/amd64 large || return 1
  fi
  # the index: one descriptor per platform, with variant where there is one
  local descs='[]'
  for p in "${PLATFORMS[@]}"; do
    key=${p%%:*} plat=${p#*:}
    descs=$(jq -c --arg mt "$MT_MANIFEST" --arg d "${D[man-$key]}" --argjson s "${D[mansize-$key]}" \
        --arg plat "$plat" '. + [{mediaType:$mt, digest:$d, size:$s,
          platform:($plat | split("/") | {os:.[0], architecture:.[1]}
                    + (if length > 2 then {variant:.[2]} else {} end))}]' <<<"$descs") || return 1
  done
  local xd xs
  read -r xd xs < <(jq -cnj --arg mt "$MT_INDEX" --argjson m "$descs" \
    '{schemaVersion:2, mediaType:$mt, manifests:$m}' | add_blob)
  D[man-multi]=$xd D[mansize-multi]=$xs
  # index.json names every image so skopeo/podman can address them as oci:LAYOUT:TAG
  local refs='[]' k
  for k in single ${D[man-zero]:+zero} ${D[man-large]:+large} $(printf '%s\n' "${PLATFORMS[@]}" | cut -d: -f1); do
    refs=$(jq -c --arg mt "$MT_MANIFEST" --arg d "${D[man-$k]}" --argjson s "${D[mansize-$k]}" \
      --arg n "$k" '. + [{mediaType:$mt, digest:$d, size:$s,
        annotations:{"org.opencontainers.image.ref.name":$n}}]' <<<"$refs") || return 1
  done
  refs=$(jq -c --arg mt "$MT_INDEX" --arg d "$xd" --argjson s "$xs" '. + [{mediaType:$mt, digest:$d,
    size:$s, annotations:{"org.opencontainers.image.ref.name":"multi"}}]' <<<"$refs") || return 1
  jq -n --argjson m "$refs" '{schemaVersion:2, manifests:$m}' >"$LAYOUT/index.json" || return 1
  echo '{"imageLayoutVersion":"1.0.0"}' >"$LAYOUT/oci-layout"
  echo "layout $LAYOUT: $(find "$LAYOUT/blobs/sha256" -type f | wc -l) blobs"
}

# ----------------------------------------------------------------------------- client config
# containers/image tools get private storage (vfs), config, registries.conf and auth file.
setup_containers_env() {
  local c=$WORK/containers; mkdir -p "$c/tmp"
  cat >"$c/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$c/storage"
runroot = "$c/run"
EOF
  cat >"$c/containers.conf" <<EOF
[engine]
events_logger = "file"
events_logfile_path = "$c/events.log"
cgroup_manager = "cgroupfs"
tmp_dir = "$c/tmp"
EOF
  cat >"$c/registries.conf" <<EOF
unqualified-search-registries = []
[[registry]]
location = "$REG"
insecure = true
EOF
  echo '{"auths":{}}' >"$c/auth.json"
  export CONTAINERS_STORAGE_CONF=$c/storage.conf CONTAINERS_CONF=$c/containers.conf
  export CONTAINERS_REGISTRIES_CONF=$c/registries.conf REGISTRY_AUTH_FILE=$c/auth.json
  export DOCKER_CONFIG=$WORK/docker-cli; mkdir -p "$DOCKER_CONFIG"
}
SK=(--tls-verify=false)                 # for skopeo inspect/list-tags/delete
SKC=(--src-tls-verify=false --dest-tls-verify=false)   # for skopeo copy

# Seeds: images that docker/ctr checks read, pushed once with skopeo (independent of --only).
seed() {                                # seed single|multi
  [ -n "${READY[seed-$1]:-}" ] && return 0
  have skopeo || { fail "skopeo is needed to push the seed image"; return; }
  local all=(); [ "$1" = multi ] && all=(--all)
  tm skopeo copy -q "${all[@]}" "${SKC[@]}" "oci:$LAYOUT:$1" "docker://$REG/$NS/seed:$1" \
    || { fail "skopeo could not push seed image $1"; return; }
  READY[seed-$1]=1
}

# ============================================================================= skopeo
c_skopeo_push() {
  tm skopeo copy -q "${SKC[@]}" --digestfile "$WORK/sk.digest" \
    "oci:$LAYOUT:single" "docker://$REG/$NS/skopeo:v1" || return
  same "$(cat "$WORK/sk.digest")" "${D[man-single]}" "digestfile"
}
c_skopeo_inspect() {
  tm skopeo inspect "${SK[@]}" --raw "docker://$REG/$NS/skopeo:v1" >"$WORK/sk.raw" || return
  same "$(sha_file "$WORK/sk.raw")" "${D[man-single]}" "sha256 of raw manifest" || return
  cmp -s "$WORK/sk.raw" "$(blob "${D[man-single]}")" || { fail "raw manifest bytes differ"; return; }
  tm skopeo inspect "${SK[@]}" "docker://$REG/$NS/skopeo:v1" >"$WORK/sk.inspect" || return
  same "$(jq -r .Digest "$WORK/sk.inspect")" "${D[man-single]}" "inspect .Digest" || return
  same "$(jq -r .Architecture "$WORK/sk.inspect")" amd64 "inspect .Architecture" || return
  same "$(jq -r '.Layers|join(",")' "$WORK/sk.inspect")" "${D[layer-single]}" "inspect .Layers"
}
c_skopeo_copy_back() {                  # registry -> new OCI layout: same manifest, same bytes
  tm skopeo copy -q "${SKC[@]}" "docker://$REG/$NS/skopeo:v1" "oci:$WORK/sk-back:v1" || return
  same "$(jq -r '.manifests[0].digest' "$WORK/sk-back/index.json")" "${D[man-single]}" "manifest digest" || return
  local n=0 b
  for b in "$WORK"/sk-back/blobs/sha256/*; do
    n=$((n + 1))
    cmp -s "$b" "$LAYOUT/blobs/sha256/${b##*/}" || { fail "blob ${b##*/} not byte-identical"; return; }
    same "$(sha_file "$b")" "sha256:${b##*/}" "content of blob" || return
  done
  same "$n" 3 "blob count (manifest, config, layer)"
}
c_skopeo_copy_tag() {                   # a second tag, another image, registry-to-registry
  tm skopeo copy -q "${SKC[@]}" "oci:$LAYOUT:amd64" "docker://$REG/$NS/skopeo:v2" || return
  tm skopeo copy -q "${SKC[@]}" --digestfile "$WORK/sk2.digest" \
    "docker://$REG/$NS/skopeo:v2" "docker://$REG/$NS/skopeo-copy:v2" || return
  same "$(cat "$WORK/sk2.digest")" "${D[man-amd64]}" "registry-to-registry digest" || return
  same "$(served_digest "$NS/skopeo-copy" v2)" "${D[man-amd64]}" "served digest in 2nd repo"
}
c_skopeo_list_tags() {
  tm skopeo list-tags "${SK[@]}" "docker://$REG/$NS/skopeo" >"$WORK/sk.tags" || return
  same "$(jq -r '.Tags|sort|join(",")' "$WORK/sk.tags")" "v1,v2" "tags"
}
c_skopeo_delete() {                     # delete v2; v1 (another manifest) must survive
  tm skopeo delete "${SK[@]}" "docker://$REG/$NS/skopeo:v2" || return
  if tm skopeo inspect "${SK[@]}" --raw "docker://$REG/$NS/skopeo:v2" >/dev/null 2>&1; then
    fail "tag v2 still resolves after delete"; return; fi
  local code; code=$(curl -s -o /dev/null -w '%{http_code}' -H "Accept: $ACCEPT" \
    "http://$REG/v2/$NS/skopeo/manifests/${D[man-amd64]}")
  same "$code" 404 "GET deleted manifest by digest" || return
  tm skopeo list-tags "${SK[@]}" "docker://$REG/$NS/skopeo" >"$WORK/sk.tags2" || return
  same "$(jq -r '.Tags|sort|join(",")' "$WORK/sk.tags2")" "v1" "tags after delete" || return
  same "$(served_digest "$NS/skopeo" v1)" "${D[man-single]}" "v1 after deleting v2"
}
run_skopeo() {
  have skopeo || { cannot skopeo "all checks" "skopeo not installed"; return; }
  check skopeo "push single-arch image (digestfile = manifest digest)" c_skopeo_push
  check skopeo "inspect --raw (sha256 of served bytes = pushed digest)" c_skopeo_inspect
  check skopeo "copy back into an OCI layout (all blobs byte-identical)" c_skopeo_copy_back
  check skopeo "copy registry-to-registry under a second tag" c_skopeo_copy_tag
  check skopeo "list-tags (exactly v1,v2)" c_skopeo_list_tags
  check skopeo "delete v2 (tag and manifest gone, v1 intact)" c_skopeo_delete
}

# ============================================================================= multi-arch
plat_args_skopeo() {                    # os/arch[/variant] -> skopeo global flags
  local os arch variant; IFS=/ read -r os arch variant <<<"$1"
  echo "--override-os $os --override-arch $arch${variant:+ --override-variant $variant}"
}
# check_index FILE: the served index lists exactly our platform images
check_index() {
  local got want
  got=$(jq -r '.manifests[] | "\(.digest) \(.platform.os)/\(.platform.architecture)\(if .platform.variant then "/"+.platform.variant else "" end)"' "$1" | sort)
  want=$(for p in "${PLATFORMS[@]}"; do echo "${D[man-${p%%:*}]} ${p#*:}"; done | sort)
  [ "$got" = "$want" ] || fail "index children/platforms differ: $(echo "$got" | tr '\n' ' ')"
}
c_multi_skopeo_push() {
  tm skopeo copy -q --all "${SKC[@]}" --digestfile "$WORK/mk.digest" \
    "oci:$LAYOUT:multi" "docker://$REG/$NS/multi:skopeo" || return
  same "$(cat "$WORK/mk.digest")" "${D[man-multi]}" "digestfile" || return
  get_manifest "$NS/multi" skopeo "$WORK/mk.index" || return
  same "$(sha_file "$WORK/mk.index")" "${D[man-multi]}" "served index digest" || return
  check_index "$WORK/mk.index" || return
  local p; for p in "${PLATFORMS[@]}"; do     # every child is served by digest, unchanged
    same "$(served_digest "$NS/multi" "${D[man-${p%%:*}]}")" "${D[man-${p%%:*}]}" "child ${p#*:}" || return
  done
}
c_multi_podman_push() {
  local list=$REG/$NS/multi:podman p
  tm podman manifest create "$list" || return
  for p in "${PLATFORMS[@]}"; do
    tm podman manifest add "$list" "oci:$LAYOUT:${p%%:*}" || return
  done
  tm podman manifest inspect "$list" >"$WORK/pm.list" || return
  same "$(jq '.manifests|length' "$WORK/pm.list")" "${#PLATFORMS[@]}" "local list entries" || return
  tm podman manifest push --all --tls-verify=false --digestfile "$WORK/pm.digest" \
    "$list" "docker://$list" || return
  get_manifest "$NS/multi" podman "$WORK/pm.index" || return
  same "$(sha_file "$WORK/pm.index")" "$(cat "$WORK/pm.digest")" "served index digest vs digestfile" || return
  check_index "$WORK/pm.index"
}
c_multi_skopeo_pull() {                 # c_multi_skopeo_pull KEY OS/ARCH[/VARIANT]
  local key=$1 plat=$2 d=$WORK/mk-pull-$1 os arch variant
  IFS=/ read -r os arch variant <<<"$plat"
  # shellcheck disable=SC2046 # word splitting of the flag list is intended
  tm skopeo $(plat_args_skopeo "$plat") copy -q "${SKC[@]}" "docker://$REG/$NS/multi:skopeo" "dir:$d" || return
  same "$(sha_file "$d/manifest.json")" "${D[man-$key]}" "manifest digest" || return
  local cfg; cfg=$d/$(hex "$(jq -r .config.digest "$d/manifest.json")")
  same "$(sha_file "$cfg")" "${D[cfg-$key]}" "config digest" || return
  same "$(jq -r '"\(.os)/\(.architecture)\(if .variant then "/"+.variant else "" end)"' "$cfg")" "$plat" "config os/arch/variant"
}
c_multi_podman_pull() {                 # c_multi_podman_pull KEY OS/ARCH[/VARIANT]
  local key=$1 plat=$2 ref=$REG/$NS/multi:podman os arch variant
  IFS=/ read -r os arch variant <<<"$plat"
  tm podman pull -q --tls-verify=false --platform "$plat" "docker://$ref" >"$WORK/pm.id" || return
  same "sha256:$(tail -n1 "$WORK/pm.id")" "${D[cfg-$key]}" "pulled image id (config digest)" || return
  tm podman image inspect "${D[cfg-$key]#sha256:}" >"$WORK/pm.inspect" || return
  same "$(jq -r '.[0].Architecture' "$WORK/pm.inspect")" "$arch" "image architecture" || return
  same "$(jq -r '.[0].Os' "$WORK/pm.inspect")" "$os" "image os" || return
  jq -e --arg d "${D[man-$key]}" '.[0].RepoDigests | map(endswith($d)) | any' "$WORK/pm.inspect" >/dev/null \
    || { fail "RepoDigests lack the $plat child ${D[man-$key]}: $(jq -c '.[0].RepoDigests' "$WORK/pm.inspect")"; return; }
  # podman inspect shows no variant: read the stored config blob (skopeo reads the same storage)
  have skopeo || return 0
  same "$(tm skopeo inspect --config "containers-storage:${D[cfg-$key]#sha256:}" \
      | jq -r '.variant // ""')" "$variant" "config variant"
}
run_multiarch() {
  local p
  if have skopeo; then
    check skopeo "copy --all of a 5-platform OCI index (digests preserved)" c_multi_skopeo_push
    for p in "${PLATFORMS[@]}"; do
      check skopeo "pull ${p#*:} from the index (override-os/arch/variant)" c_multi_skopeo_pull "${p%%:*}" "${p#*:}"
    done
  else cannot skopeo "multi-arch" "skopeo not installed"; fi
  if have podman; then
    check podman "manifest create/add/push --all of 5 platforms" c_multi_podman_push
    for p in "${PLATFORMS[@]}"; do
      check podman "pull --platform ${p#*:} from the index" c_multi_podman_pull "${p%%:*}" "${p#*:}"
    done
  else cannot podman "multi-arch" "podman not installed"; fi
}

# ============================================================================= blobs
c_blob_zero() {
  # --preserve-digests: no recompression, the zero-length layer goes up as it is
  tm skopeo copy -q --preserve-digests "${SKC[@]}" --digestfile "$WORK/zero.digest" \
    "oci:$LAYOUT:zero" "docker://$REG/$NS/blobs:zero" || return
  same "$(cat "$WORK/zero.digest")" "${D[man-zero]}" "digestfile" || return
  local code; code=$(blob_status "$NS/blobs" "${D[layer-zero]}" HEAD)
  same "$code" 200 "HEAD zero-length blob" || return
  same "$(tr -d '\r' <"$WORK/last-headers" | awk -F': ' 'tolower($1)=="content-length"{print $2}')" 0 "Content-Length" || return
  tm skopeo copy -q --preserve-digests "${SKC[@]}" "docker://$REG/$NS/blobs:zero" "oci:$WORK/zero-back:zero" || return
  local f; f=$WORK/zero-back/blobs/sha256/$(hex "${D[layer-zero]}")
  [ -f "$f" ] || { fail "zero-length layer missing from the pulled layout"; return; }
  same "$(stat -c %s "$f")" 0 "pulled layer size" || return
  same "$(jq -r '.manifests[0].digest' "$WORK/zero-back/index.json")" "${D[man-zero]}" "pulled manifest digest"
}
c_blob_large() {
  tm skopeo copy -q "${SKC[@]}" --digestfile "$WORK/large.digest" \
    "oci:$LAYOUT:large" "docker://$REG/$NS/blobs:large" || return
  same "$(cat "$WORK/large.digest")" "${D[man-large]}" "digestfile" || return
  tm skopeo copy -q "${SKC[@]}" "docker://$REG/$NS/blobs:large" "oci:$WORK/large-back:large" || return
  local f; f=$WORK/large-back/blobs/sha256/$(hex "${D[layer-large]}")
  [ -f "$f" ] || { fail "large layer missing from the pulled layout"; return; }
  same "$(sha_file "$f")" "${D[layer-large]}" "sha256 of pulled layer" || return
  same "$(stat -c %s "$f")" "$(stat -c %s "$(blob "${D[layer-large]}")")" "pulled layer size"
}
run_blobs() {
  have skopeo || { cannot skopeo "blobs" "skopeo not installed"; return; }
  check skopeo "zero-length layer blob pushed and pulled back" c_blob_zero
  check skopeo "64 MiB random layer pushed and pulled back (same sha256)" c_blob_large
}

# ============================================================================= podman + buildah
c_podman_push() {
  tm podman pull -q "oci:$LAYOUT:single" >"$WORK/pd.id" || return
  same "sha256:$(tail -n1 "$WORK/pd.id")" "${D[cfg-single]}" "image id after loading the layout" || return
  tm podman tag "${D[cfg-single]#sha256:}" "$REG/$NS/podman:v1" || return
  tm podman push -q --tls-verify=false --digestfile "$WORK/pd.digest" "$REG/$NS/podman:v1" || return
  get_manifest "$NS/podman" v1 "$WORK/pd.man" || return
  same "$(sha_file "$WORK/pd.man")" "$(cat "$WORK/pd.digest")" "served digest vs digestfile" || return
  same "$(jq -r .config.digest "$WORK/pd.man")" "${D[cfg-single]}" "config digest in pushed manifest" || return
  same "$(jq '.layers|length' "$WORK/pd.man")" 1 "layer count"
}
c_podman_pull() {
  tm podman rmi -f "$REG/$NS/podman:v1" "${D[cfg-single]#sha256:}" >/dev/null 2>&1
  if tm podman image exists "${D[cfg-single]#sha256:}"; then fail "image still present after rmi"; return; fi
  tm podman pull -q --tls-verify=false "$REG/$NS/podman:v1" >"$WORK/pd.id2" || return
  same "sha256:$(tail -n1 "$WORK/pd.id2")" "${D[cfg-single]}" "image id after pull" || return
  tm podman image inspect "$REG/$NS/podman:v1" >"$WORK/pd.inspect" || return
  local want; want=$(digest_in "$WORK/pd.digest") || { fail "no pushed digest (push failed?)"; return; }
  jq -e --arg d "$want" '.[0].RepoDigests | map(endswith($d)) | any' "$WORK/pd.inspect" >/dev/null \
    || fail "RepoDigests lack the pushed digest $want"
}
c_podman_list_tags() {
  tm podman search --list-tags --tls-verify=false "$REG/$NS/podman" >"$WORK/pd.tags" || return
  same "$(awk 'NR>1{print $2}' "$WORK/pd.tags" | sort | tr '\n' ' ')" "v1 " "listed tags"
}
c_buildah_commit_push() {
  local c
  c=$(tm buildah from -q "oci:$LAYOUT:single") || return
  printf 'buildah %s\n' "$RUN_ID" >"$WORK/bh.txt"
  tm buildah copy "$c" "$WORK/bh.txt" /buildah.txt >/dev/null || return
  tm buildah config --label "berth.e2e.builder=buildah" "$c" || return
  tm buildah commit -q "$c" "$REG/$NS/buildah:v1" >/dev/null || return
  tm buildah rm "$c" >/dev/null || return
  tm buildah push -q --tls-verify=false --digestfile "$WORK/bh.digest" "$REG/$NS/buildah:v1" || return
  get_manifest "$NS/buildah" v1 "$WORK/bh.man" || return
  same "$(sha_file "$WORK/bh.man")" "$(cat "$WORK/bh.digest")" "served digest vs digestfile" || return
  same "$(jq '.layers|length' "$WORK/bh.man")" 2 "layer count (base + committed)" || return
  local cfg; cfg=$(jq -r .config.digest "$WORK/bh.man")
  same "$(blob_status "$NS/buildah" "$cfg" GET)" 200 "GET config blob" || return
  same "$(sha_file "$WORK/last-body")" "$cfg" "config blob bytes" || return
  same "$(jq -r '.rootfs.diff_ids[0]' "$WORK/last-body")" "${D[diffid-single]}" "base layer diff_id"
}
c_buildah_pull_back() {                 # rmi, pull, mount: the committed file is there, same bytes
  tm buildah rmi -f "$REG/$NS/buildah:v1" >/dev/null || return
  tm buildah pull -q --tls-verify=false "$REG/$NS/buildah:v1" >/dev/null || return
  local c m
  c=$(tm buildah from -q "$REG/$NS/buildah:v1") || return
  m=$(tm buildah mount "$c") || return
  cmp -s "$m/buildah.txt" "$WORK/bh.txt" || { fail "/buildah.txt differs after pull"; return; }
  grep -q "berth e2e single linux/amd64 $RUN_ID" "$m/hello.txt" || { fail "/hello.txt of the base layer differs"; return; }
  tm buildah umount "$c" >/dev/null; tm buildah rm "$c" >/dev/null
}
run_podman() {
  if have podman; then
    check podman "push (served digest = digestfile, config unchanged)" c_podman_push
    check podman "rmi + pull back (same image id, RepoDigests)" c_podman_pull
    check podman "search --list-tags" c_podman_list_tags
  else cannot podman "push/pull" "podman not installed"; fi
  if have buildah; then
    check buildah "from layout + copy + commit + push" c_buildah_commit_push
    check buildah "rmi + pull back + mount (file bytes identical)" c_buildah_pull_back
  else cannot buildah "push/pull" "buildah not installed"; fi
}

# ============================================================================= docker (dockerd)
dk() { tm docker "$@"; }
docker_up() {                           # private dockerd under $WORK (or BERTH_TEST_DOCKER_HOST)
  [ -n "${READY[dockerd]:-}" ] && return 0
  if [ -n "${BERTH_TEST_DOCKER_HOST:-}" ]; then
    export DOCKER_HOST=$BERTH_TEST_DOCKER_HOST
    dk version >/dev/null || { fail "docker engine at $DOCKER_HOST does not answer"; return; }
    READY[dockerd]=1; return 0
  fi
  have dockerd || { fail "dockerd not installed"; return; }
  [ "$(id -u)" = 0 ] || { fail "starting a private dockerd needs root (or set BERTH_TEST_DOCKER_HOST)"; return; }
  local d=$WORK/dockerd; mkdir -p "$d/data" "$d/exec"
  export DOCKER_HOST=unix://$d/docker.sock
  dockerd --storage-driver=vfs --iptables=false --ip6tables=false --bridge=none \
    --ip-forward=false --ip-masq=false --data-root="$d/data" --exec-root="$d/exec" \
    --pidfile="$d/dockerd.pid" -H "$DOCKER_HOST" --insecure-registry="$REG" >"$d/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  local _
  for _ in $(seq 1 240); do             # poll (at most ~120 s) until the API answers
    if [ -S "$d/docker.sock" ] && timeout 10 docker version >/dev/null 2>&1; then READY[dockerd]=1; return 0; fi
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 0.5
  done
  fail "dockerd did not come up: $(grep -Ei 'level=(error|fatal)|failed' "$d/dockerd.log" | tail -n1 | cut -c1-200)"
}
c_docker_engine() { docker_up || return; dk version --format 'client {{.Client.Version}}, server {{.Server.Version}}'; }
c_docker_load() {                       # docker-archive built from the layout by hand, then load
  local a=$WORK/dk-archive cfg layer; mkdir -p "$a"
  cfg=$(hex "${D[cfg-single]}").json layer=$(hex "${D[layer-single]}").tar.gz
  cp "$(blob "${D[cfg-single]}")" "$a/$cfg" && cp "$(blob "${D[layer-single]}")" "$a/$layer" || return
  jq -n --arg c "$cfg" --arg l "$layer" --arg t "berth-e2e/local:$RUN_ID" \
    '[{Config:$c, RepoTags:[$t], Layers:[$l]}]' >"$a/manifest.json" || return
  tar -C "$a" -cf "$WORK/dk-archive.tar" manifest.json "$cfg" "$layer" || return
  dk load -i "$WORK/dk-archive.tar" || return
  same "$(dk image inspect --format '{{.Id}}' "berth-e2e/local:$RUN_ID")" "${D[cfg-single]}" "loaded image id"
}
c_docker_push() {
  dk tag "berth-e2e/local:$RUN_ID" "$REG/$NS/docker:v1" || return
  dk push "$REG/$NS/docker:v1" >"$WORK/dk.push" || return
  cat "$WORK/dk.push"
  grep -o 'digest: sha256:[0-9a-f]\{64\}' "$WORK/dk.push" | tail -n1 | cut -d' ' -f2 >"$WORK/dk.digest"
  [ -s "$WORK/dk.digest" ] || { fail "no digest in docker push output"; return; }
  get_manifest "$NS/docker" v1 "$WORK/dk.man" || return
  same "$(sha_file "$WORK/dk.man")" "$(cat "$WORK/dk.digest")" "served digest vs docker push" || return
  same "$(jq -r .config.digest "$WORK/dk.man")" "${D[cfg-single]}" "config digest in pushed manifest"
}
c_docker_pull() {
  dk rmi "$REG/$NS/docker:v1" "berth-e2e/local:$RUN_ID" >/dev/null || return
  if dk image inspect "${D[cfg-single]}" >/dev/null 2>&1; then fail "image still present after rmi"; return; fi
  dk pull -q "$REG/$NS/docker:v1" || return
  same "$(dk image inspect --format '{{.Id}}' "$REG/$NS/docker:v1")" "${D[cfg-single]}" "image id after pull" || return
  dk image inspect --format '{{json .RepoDigests}}' "$REG/$NS/docker:v1" >"$WORK/dk.rd" || return
  local want; want=$(digest_in "$WORK/dk.digest") || { fail "no pushed digest (push failed?)"; return; }
  grep -q "$want" "$WORK/dk.rd" || { fail "RepoDigests $(cat "$WORK/dk.rd") lack the pushed digest"; return; }
  local c; c=$(dk create "$REG/$NS/docker:v1") || return   # read a file back out of the image
  dk cp "$c:/hello.txt" - | tar -xOf - >"$WORK/dk.hello"
  dk rm "$c" >/dev/null
  same "$(cat "$WORK/dk.hello")" "berth e2e single linux/amd64 $RUN_ID" "/hello.txt in the pulled image"
}
c_docker_pull_platform() {              # c_docker_pull_platform KEY OS/ARCH[/VARIANT]
  seed multi || return
  dk pull -q --platform "$2" "$REG/$NS/seed:multi" || return
  same "$(dk image inspect --format '{{.Id}}' "$REG/$NS/seed:multi")" "${D[cfg-$1]}" "image id (config of $2)" || return
  same "$(dk image inspect --format '{{.Os}}/{{.Architecture}}' "$REG/$NS/seed:multi")" "$(cut -d/ -f1-2 <<<"$2")" "os/architecture"
}
run_docker() {
  have docker || { cannot docker "all checks" "docker CLI not installed"; return; }
  check docker "engine up (private dockerd, vfs)" c_docker_engine
  [ -n "${READY[dockerd]:-}" ] || return
  echo "# docker engine $(dk version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null)"
  check docker "load a docker-archive (image id = config digest)" c_docker_load
  check docker "tag + push (served digest = pushed digest)" c_docker_push
  check docker "rmi + pull back (same image id, RepoDigests, file content)" c_docker_pull
  check docker "pull --platform linux/arm64 of a multi-arch tag" c_docker_pull_platform arm64 linux/arm64
  check docker "pull --platform linux/arm/v7 of a multi-arch tag" c_docker_pull_platform armv7 linux/arm/v7
}

# ============================================================================= ctr (containerd)
CTR=()
ctr_target() { tm ctr "${CTR[@]}" images ls | awk -v r="$1" '$1==r{print $3}'; }
ctr_content_is() {                      # ctr_content_is DIGEST: stored bytes hash to DIGEST
  tm ctr "${CTR[@]}" content get "$1" >"$WORK/ctr.blob" || { fail "content $1 not in containerd"; return; }
  same "$(sha_file "$WORK/ctr.blob")" "$1" "content bytes"
}
c_ctr_pull() {
  seed single || return
  tm ctr "${CTR[@]}" images pull --plain-http --snapshotter native "$REG/$NS/seed:single" || return
  same "$(ctr_target "$REG/$NS/seed:single")" "${D[man-single]}" "image target digest" || return
  ctr_content_is "${D[cfg-single]}" && ctr_content_is "${D[layer-single]}"
}
c_ctr_push() {
  tm ctr "${CTR[@]}" images tag --force "$REG/$NS/seed:single" "$REG/$NS/ctr:v1" || return
  tm ctr "${CTR[@]}" images push --plain-http "$REG/$NS/ctr:v1" || return
  same "$(served_digest "$NS/ctr" v1)" "${D[man-single]}" "served digest after ctr push" || return
  same "$(blob_status "$NS/ctr" "${D[layer-single]}" GET)" 200 "GET layer in the new repo" || return
  cmp -s "$WORK/last-body" "$(blob "${D[layer-single]}")" || fail "layer bytes differ"
}
c_ctr_pull_platform() {
  seed multi || return
  tm ctr "${CTR[@]}" images pull --plain-http --snapshotter native --platform linux/arm/v7 \
    "$REG/$NS/seed:multi" || return
  same "$(ctr_target "$REG/$NS/seed:multi")" "${D[man-multi]}" "image target (index digest)" || return
  ctr_content_is "${D[man-armv7]}" || return
  ctr_content_is "${D[cfg-armv7]}" || return
  same "$(jq -r '"\(.architecture)/\(.variant)"' "$WORK/ctr.blob")" arm/v7 "config arch/variant"
}
c_ctr_all_platforms_push() {
  seed multi || return
  tm ctr "${CTR[@]}" images pull --plain-http --all-platforms "$REG/$NS/seed:multi" || return
  local p; for p in "${PLATFORMS[@]}"; do ctr_content_is "${D[man-${p%%:*}]}" || return; done
  tm ctr "${CTR[@]}" images tag --force "$REG/$NS/seed:multi" "$REG/$NS/ctr:multi" || return
  tm ctr "${CTR[@]}" images push --plain-http "$REG/$NS/ctr:multi" || return
  same "$(served_digest "$NS/ctr" multi)" "${D[man-multi]}" "served index digest" || return
  for p in "${PLATFORMS[@]}"; do
    same "$(served_digest "$NS/ctr" "${D[man-${p%%:*}]}")" "${D[man-${p%%:*}]}" "child ${p#*:} in the new repo" || return
  done
}
run_ctr() {
  have ctr || { cannot ctr "all checks" "ctr not installed"; return; }
  local addr=${BERTH_TEST_CONTAINERD_ADDRESS:-}
  if [ -z "$addr" ]; then
    if [ -z "${BERTH_TEST_DOCKER_HOST:-}" ]; then
      check ctr "containerd available (private dockerd)" docker_up
      addr=$WORK/dockerd/exec/containerd/containerd.sock
    fi
  fi
  if [ -z "$addr" ] || [ ! -S "$addr" ]; then cannot ctr "all checks" "no containerd socket (set BERTH_TEST_CONTAINERD_ADDRESS)"; return; fi
  CTR=(--address "$addr" --namespace "berth-e2e-$RUN_ID")
  check ctr "pull --plain-http (target digest, content bytes)" c_ctr_pull
  check ctr "push --plain-http to a new repo (digest preserved)" c_ctr_push
  check ctr "pull --platform linux/arm/v7 of a multi-arch index" c_ctr_pull_platform
  check ctr "pull --all-platforms + push the index to a new repo" c_ctr_all_platforms_push
}

# ============================================================================= proxy (pull-through)
# A Berth of its own (target/debug/berth, or BERTH_TEST_BERTH) with two [[proxy]] rules, `up1`
# and `up2`, for the hosts up1.test and up2.test, both in front of one Distribution
# (docker-registry) filled with skopeo. ctr pulls up1.test/... and up2.test/... with a
# --hosts-dir naming that Berth as their mirror (routed by containerd's ?ns=), docker, podman
# and skopeo pull by path; then the upstream is stopped: cached tags and digests still pull
# with each client, an image never pulled fails with the upstream's reason. Fresh images
# (px1..px4) so that no client holds their content from an earlier group.
PX_DIR= PX_UP= PX_UP_PID= PX= PX_PID= PX_CTR=()
px_bin() { local b=${BERTH_TEST_BERTH:-$ROOT/target/debug/berth}; [ -x "$b" ] || b=$ROOT/target/release/berth; echo "$b"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_v2() {                             # wait_v2 HOST:PORT PID: bounded poll until /v2/ answers
  local _; for _ in $(seq 1 200); do
    kill -0 "$2" 2>/dev/null || return 1
    curl -fsS -o /dev/null "http://$1/v2/" && return 0; sleep 0.1
  done; return 1
}
px_ref() { echo "$PX/$1/$NS/$2"; }      # px_ref RULE IMAGE -> path-routed reference on the proxy
c_proxy_up() {
  have docker-registry || { fail "docker-registry not installed (scripts/install-test-deps.sh)"; return; }
  local bin; bin=$(px_bin); [ -x "$bin" ] || { fail "no berth binary (cargo build --bin berth, or BERTH_TEST_BERTH)"; return; }
  PX_DIR=$WORK/proxy; mkdir -p "$PX_DIR/up" "$PX_DIR/berth" || return
  local k refs; for k in px1 px2 px3 px4; do make_image "$k" linux/amd64 small || return; done
  refs=$(jq -c --arg mt "$MT_MANIFEST" --argjson d "$(for k in px1 px2 px3 px4; do
      jq -cn --arg n "$k" --arg d "${D[man-$k]}" --argjson s "${D[mansize-$k]}" '{n:$n, d:$d, s:$s}'; done | jq -cs .)" \
    '.manifests += [$d[] | {mediaType:$mt, digest:.d, size:.s, annotations:{"org.opencontainers.image.ref.name":.n}}]' \
    "$LAYOUT/index.json") || return
  echo "$refs" >"$LAYOUT/index.json"
  PX_UP=127.0.0.1:$(free_port)
  cat >"$PX_DIR/up/config.yml" <<YML
version: 0.1
storage:
  filesystem: {rootdirectory: $PX_DIR/up/data}
  delete: {enabled: true}
http: {addr: $PX_UP}
YML
  # REGISTRY_* variables are Distribution's config overrides: not the containers tools' auth file
  env -u REGISTRY_AUTH_FILE docker-registry serve "$PX_DIR/up/config.yml" >"$PX_DIR/up.log" 2>&1 & PX_UP_PID=$!
  wait_v2 "$PX_UP" "$PX_UP_PID" || { fail "docker-registry did not answer on $PX_UP"; return; }
  for k in px1 px2 px3 px4; do
    tm skopeo copy -q "${SKC[@]}" "oci:$LAYOUT:$k" "docker://$PX_UP/$NS/$k:v1" || { fail "skopeo push of $k upstream"; return; }
  done
  PX=127.0.0.1:$(free_port)
  cat >"$PX_DIR/berth.toml" <<TOML
listen = "$PX"
data_dir = "$PX_DIR/berth"
[[proxy]]
prefix = "up1"
upstreams = [{ url = "http://$PX_UP" }]
hosts = ["up1.test"]
[[proxy]]
prefix = "up2"
upstreams = [{ url = "http://$PX_UP" }]
hosts = ["up2.test"]
TOML
  "$bin" serve --config "$PX_DIR/berth.toml" >"$PX_DIR/berth.log" 2>&1 & PX_PID=$!
  wait_v2 "$PX" "$PX_PID" || { tail -n 5 "$PX_DIR/berth.log"; fail "berth (proxy) did not answer on $PX"; return; }
  local h; for h in up1.test up2.test; do
    mkdir -p "$PX_DIR/hosts/$h"
    printf '[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' "$PX" >"$PX_DIR/hosts/$h/hosts.toml"
  done
  echo "upstream $PX_UP (pid $PX_UP_PID), proxy $PX (pid $PX_PID)"
}
px_ctr_pull() {                         # px_ctr_pull REF: pull through the hosts dir
  tm ctr "${PX_CTR[@]}" images pull --hosts-dir "$PX_DIR/hosts" --snapshotter native "$1"
}
c_proxy_ctr_hosts() {                   # up1.test and up2.test, one Berth, routed by ?ns=
  local h k
  for h in 1 2; do
    k=px$h
    px_ctr_pull "up$h.test/$NS/$k:v1" || return
    same "$(tm ctr "${PX_CTR[@]}" images ls | awk -v r="up$h.test/$NS/$k:v1" '$1==r{print $3}')" "${D[man-$k]}" "ctr target of up$h.test" || return
    tm ctr "${PX_CTR[@]}" content get "${D[layer-$k]}" >"$WORK/ctr.blob" || { fail "layer of $k not in containerd"; return; }
    same "$(sha_file "$WORK/ctr.blob")" "${D[layer-$k]}" "layer bytes of $k" || return
  done
  # each landed under its own rule's prefix on the proxy, and only there
  local cat; cat=$(curl -fsS "http://$PX/v2/_catalog?n=1000" | jq -r '.repositories[]') || return
  echo "$cat"
  grep -qx "up1/$NS/px1" <<<"$cat" || { fail "up1/$NS/px1 not in the proxy's catalog"; return; }
  grep -qx "up2/$NS/px2" <<<"$cat" || { fail "up2/$NS/px2 not in the proxy's catalog"; return; }
  ! grep -qx "up2/$NS/px1" <<<"$cat" || fail "px1 (asked as up1.test) also cached under up2"
}
c_proxy_docker() { docker_up || return; dk pull "$(px_ref up1 px3):v1" || return
  same "$(dk image inspect --format '{{.Id}}' "$(px_ref up1 px3):v1")" "${D[cfg-px3]}" "image id"; }
c_proxy_podman() { tm podman pull -q --tls-verify=false "$(px_ref up2 px3):v1" || return
  same "sha256:$(tm podman image inspect --format '{{.Id}}' "$(px_ref up2 px3):v1")" "${D[cfg-px3]}" "image id"; }
c_proxy_skopeo() { rm -rf "$WORK/pxdir"; tm skopeo copy -q "${SKC[@]}" "docker://$(px_ref up1 px2):v1" "dir:$WORK/pxdir" || return
  same "$(sha_file "$WORK/pxdir/manifest.json")" "${D[man-px2]}" "manifest digest"; }
c_proxy_stop_upstream() {
  kill "$PX_UP_PID" || return
  local _; for _ in $(seq 1 100); do kill -0 "$PX_UP_PID" 2>/dev/null || break; sleep 0.1; done
  ! kill -0 "$PX_UP_PID" 2>/dev/null || { fail "docker-registry still running"; return; }
  PX_UP_PID=
  ! curl -fsS -o /dev/null "http://$PX_UP/v2/" || fail "upstream still answers"
}
c_proxy_stale_docker() {                # tag and digest, from the cache
  local r; r=$(px_ref up1 px3)
  dk rmi "$r:v1" || return
  dk pull "$r:v1" || return
  same "$(dk image inspect --format '{{.Id}}' "$r:v1")" "${D[cfg-px3]}" "image id by tag" || return
  dk rmi "$r:v1" || return
  dk pull "$r@${D[man-px3]}" || return
  same "$(dk image inspect --format '{{.Id}}' "$r@${D[man-px3]}")" "${D[cfg-px3]}" "image id by digest"
}
c_proxy_stale_podman() {
  local r; r=$(px_ref up2 px3)
  tm podman rmi -f "$r:v1" || return
  tm podman pull -q --tls-verify=false "$r:v1" || return
  tm podman rmi -f "$r:v1" || return
  local id; id=$(tm podman pull -q --tls-verify=false "$r@${D[man-px3]}") || return
  same "sha256:$id" "${D[cfg-px3]}" "image id by digest"
}
c_proxy_stale_skopeo() {
  local r; r=$(px_ref up1 px2)
  rm -rf "$WORK/pxdir"; tm skopeo copy -q "${SKC[@]}" "docker://$r:v1" "dir:$WORK/pxdir" || return
  same "$(sha_file "$WORK/pxdir/manifest.json")" "${D[man-px2]}" "manifest by tag" || return
  rm -rf "$WORK/pxdir"; tm skopeo copy -q "${SKC[@]}" "docker://$r@${D[man-px2]}" "dir:$WORK/pxdir" || return
  cmp -s "$WORK/pxdir/$(hex "${D[layer-px2]}")" "$(blob "${D[layer-px2]}")" || fail "layer bytes differ"
}
c_proxy_stale_ctr() {                   # forget the image and its content, pull both ways again
  local h k d
  for h in 1 2; do
    k=px$h
    tm ctr "${PX_CTR[@]}" images rm "up$h.test/$NS/$k:v1" || return
    for d in "${D[man-$k]}" "${D[cfg-$k]}" "${D[layer-$k]}"; do tm ctr "${PX_CTR[@]}" content rm "$d" >/dev/null; done
    px_ctr_pull "up$h.test/$NS/$k:v1" || return
    tm ctr "${PX_CTR[@]}" images rm "up$h.test/$NS/$k:v1" || return
    for d in "${D[man-$k]}" "${D[cfg-$k]}" "${D[layer-$k]}"; do tm ctr "${PX_CTR[@]}" content rm "$d" >/dev/null; done
    px_ctr_pull "up$h.test/$NS/$k@${D[man-$k]}" || return
    same "$(tm ctr "${PX_CTR[@]}" images ls | awk -v r="up$h.test/$NS/$k@${D[man-$k]}" '$1==r{print $3}')" "${D[man-$k]}" "ctr target by digest" || return
  done
}
# never pulled through the proxy: each client fails, showing the upstream's refusal
# (Berth's 503 body names the upstream; skopeo and podman print only the status of a 503)
px_reason() {                           # px_reason FILE [body]
  if [ "${2:-}" = body ]; then
    grep -q "upstream http://$PX_UP could not be reached" "$1"
  else grep -qi "$PX_UP.*connection refused\|503 Service Unavailable" "$1"; fi \
    || fail "the error does not show the upstream's failure: $(tail -n 1 "$1" | cut -c1-200)"
}
c_proxy_uncached() {
  local out=$WORK/px-uncached.txt r; r=$(px_ref up1 px4)
  echo "curl: $(curl -s "http://$PX/v2/up1/$NS/px4/manifests/v1" -H "Accept: $ACCEPT" -o "$out" -w '%{http_code}')"; cat "$out"; echo
  px_reason "$out" body || return
  ! tm skopeo copy -q "${SKC[@]}" "docker://$r:v1" "dir:$WORK/pxfail" >"$out" 2>&1 || { fail "skopeo pulled an uncached image"; return; }
  cat "$out"; px_reason "$out" || return
  ! tm podman pull --tls-verify=false "$r:v1" >"$out" 2>&1 || { fail "podman pulled an uncached image"; return; }
  cat "$out"; px_reason "$out" || return
  ! dk pull "$r:v1" >"$out" 2>&1 || { fail "docker pulled an uncached image"; return; }
  cat "$out"; px_reason "$out" || return
  ! px_ctr_pull "up1.test/$NS/px4:v1" >"$out" 2>&1 || { fail "ctr pulled an uncached image"; return; }
  cat "$out"; px_reason "$out"
}
run_proxy() {
  have ctr && have skopeo && have podman && have docker || { cannot proxy "all checks" "needs ctr, skopeo, podman and docker"; return; }
  check proxy "Distribution upstream filled by skopeo, Berth with two [[proxy]] rules" c_proxy_up
  [ -n "$PX_PID" ] || return
  check proxy "containerd available (private dockerd)" docker_up
  local addr=${BERTH_TEST_CONTAINERD_ADDRESS:-$WORK/dockerd/exec/containerd/containerd.sock}
  PX_CTR=(--address "$addr" --namespace "berth-e2e-$RUN_ID-proxy")
  check proxy "ctr --hosts-dir: up1.test and up2.test through one Berth, routed by ?ns=" c_proxy_ctr_hosts
  check proxy "docker pull through the proxy (image id)" c_proxy_docker
  check proxy "podman pull through the proxy (image id)" c_proxy_podman
  check proxy "skopeo copy through the proxy (manifest digest)" c_proxy_skopeo
  check proxy "upstream stopped" c_proxy_stop_upstream
  check proxy "upstream down: docker pulls the cached tag and digest" c_proxy_stale_docker
  check proxy "upstream down: podman pulls the cached tag and digest" c_proxy_stale_podman
  check proxy "upstream down: skopeo copies the cached tag and digest" c_proxy_stale_skopeo
  check proxy "upstream down: ctr --hosts-dir pulls the cached tags and digests" c_proxy_stale_ctr
  check proxy "upstream down: an uncached image fails with the 503 (curl: its body names the upstream; skopeo, podman, docker, ctr)" c_proxy_uncached
}

# ============================================================================= image (Dockerfile)
# The Dockerfile, built and run offline: the binary built on the host (target/debug/berth, or
# BERTH_TEST_IMAGE_BINARY: the release binary is what users put in it, and it runs the same),
# `--target prebuilt` with BuildKit on a debian:bookworm-slim made here with mmdebstrap (cached
# in target/, imported only when the engine lacks that image), a container on the host network
# with access control on, a push and a pull back with skopeo, the user and the volume checked.
BIN=${BERTH_TEST_IMAGE_BINARY:-target/debug/berth}  # what `--target prebuilt` copies from the context
BASE_TAR=$ROOT/target/debian-bookworm-minbase.tar
BASE_IMAGE=debian:bookworm-slim         # the name the Dockerfile's runtime stage uses
IMG_TAG= IMG_CTR= IMG_REG= IMG_PW= IMG_BUILDER=()
# dkb: a docker CLI that builds with BuildKit. CLIs from 23 on need the buildx plugin for it;
# older ones (Debian's docker.io 20.10) carry BuildKit's client themselves.
pick_builder() {
  [ ${#IMG_BUILDER[@]} -gt 0 ] && return 0
  if docker buildx version >/dev/null 2>&1; then IMG_BUILDER=(docker); return 0; fi
  local c v; while IFS= read -r c; do
    v=$("$c" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)
    case $v in ''|*[!0-9]*) continue ;; esac
    [ "$v" -lt 23 ] && { IMG_BUILDER=("$c"); return 0; }
  done < <(type -ap docker)
  fail "no docker CLI builds with BuildKit (install docker-buildx, or Debian's docker.io CLI)"
}
c_image_base() {                        # debian:bookworm-slim in the engine, else made here
  docker_up || return
  if dk image inspect "$BASE_IMAGE" >/dev/null 2>&1; then echo "$BASE_IMAGE already present"; return 0; fi
  [ ! -d "$BASE_TAR" ] || { fail "$BASE_TAR is a directory, not the cached tarball"; return; }
  if [ ! -f "$BASE_TAR" ] || [ ! -s "$BASE_TAR" ]; then
    have mmdebstrap || { fail "mmdebstrap not installed (scripts/install-test-deps.sh)"; return; }
    mkdir -p "$(dirname "$BASE_TAR")" || return
    local part=${BASE_TAR%.tar}.part.tar   # mmdebstrap picks the output format from ".tar"
    # the mirror: deb.debian.org with bookworm-updates and -security (mmdebstrap's default),
    # or BERTH_TEST_DEBIAN_MIRROR (a URL, or a sources file such as the host's debian.sources)
    tm mmdebstrap --variant=minbase --include=ca-certificates bookworm "$part" \
      ${BERTH_TEST_DEBIAN_MIRROR:+"$BERTH_TEST_DEBIAN_MIRROR"} \
      || { rm -f "$part"; fail "mmdebstrap bookworm failed"; return; }
    mv "$part" "$BASE_TAR" || return
  fi
  dk import "$BASE_TAR" "$BASE_IMAGE" || return
  dk run --rm --network none "$BASE_IMAGE" test -s /etc/ssl/certs/ca-certificates.crt \
    || fail "the imported base has no CA bundle"
}
c_image_build() {                       # --target prebuilt, BuildKit, no network at all
  [ -x "$ROOT/$BIN" ] || { fail "no $ROOT/$BIN (cargo build --locked --bin berth)"; return; }
  pick_builder || return
  local tag=berth-e2e/berth:$RUN_ID
  echo "builder: ${IMG_BUILDER[*]} (client $("${IMG_BUILDER[@]}" version --format '{{.Client.Version}}'))"
  # the context is the repository (.dockerignore keeps it to the sources and this binary)
  DOCKER_BUILDKIT=1 tm "${IMG_BUILDER[@]}" build --network none --target prebuilt \
    --build-arg BERTH_BINARY="$BIN" -t "$tag" "$ROOT" || return
  IMG_TAG=$tag
  local user; user=$(dk image inspect --format '{{.Config.User}} {{json .Config.Volumes}} {{json .Config.Entrypoint}} {{json .Config.Cmd}}' "$IMG_TAG") || return
  same "$user" 'berth {"/var/lib/berth":{}} ["berth"] ["serve"]' "user, volume, entrypoint, cmd"
}
# A free port below the kernel's ephemeral range: the container is restarted on it, and while it
# is down a port from that range can become the local end of any outgoing connection.
free_port() { python3 -c '
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for port in random.sample(range(20000, max(low, 21000)), 200):
    try: socket.create_server(("127.0.0.1", port)).close(); print(port); break
    except OSError: pass
else: raise SystemExit("no free port below the ephemeral range")'; }
# img_code PATH [curl args...]: the status of a GET on the containerised registry
img_code() { local p=$1; shift; curl -sS -m 10 -o /dev/null -w '%{http_code}' "$@" "http://$IMG_REG$p"; }
c_image_run() {                         # host network, a free loopback port, auth on
  [ -n "$IMG_TAG" ] || { fail "no image built"; return; }
  local port; port=$(free_port) || { fail "no free port"; return; }
  IMG_REG=127.0.0.1:$port IMG_PW=pw-$RUN_ID
  IMG_CTR=$(dk run -d --name "berth-e2e-$RUN_ID" --network host \
    -e BERTH_LISTEN="$IMG_REG" -e BERTH_ADMIN_PASSWORD="$IMG_PW" "$IMG_TAG") || return
  local _ code=
  for _ in $(seq 1 120); do             # poll (at most ~60 s) until /v2/ answers
    code=$(img_code /v2/ 2>/dev/null) && [ "$code" = 401 ] && break
    [ "$(dk inspect --format '{{.State.Running}}' "$IMG_CTR")" = true ] || break
    sleep 0.5
  done
  if [ "$code" != 401 ]; then dk logs "$IMG_CTR" 2>&1 | tail -n 20
    fail "GET /v2/ on the container: '$code', want 401 (container $(dk inspect --format '{{.State.Status}}' "$IMG_CTR"))"; return; fi
  same "$(img_code /v2/ -u "admin:$IMG_PW")" 200 "GET /v2/ as admin"
}
c_image_user() {                        # the server process is berth's, not root's
  [ -n "$IMG_CTR" ] || { fail "no container"; return; }
  local uid want
  uid=$(dk exec "$IMG_CTR" awk '/^Uid:/ {print $2}' /proc/1/status) || return
  want=$(dk exec "$IMG_CTR" id -u berth) || return
  echo "pid 1: uid $uid; berth: uid $want; $(dk exec "$IMG_CTR" cat /proc/1/cmdline | tr '\0' ' ')"
  [ "$uid" != 0 ] || { fail "the server runs as root"; return; }
  same "$uid" "$want" "uid of the server process"
}
c_image_push_pull() {                   # skopeo with credentials, pulled back byte-identical
  [ -n "$IMG_CTR" ] || { fail "no container"; return; }
  tm skopeo copy -q "${SKC[@]}" --dest-creds "admin:$IMG_PW" --digestfile "$WORK/img.digest" \
    "oci:$LAYOUT:single" "docker://$IMG_REG/$NS/image:v1" || return
  same "$(cat "$WORK/img.digest")" "${D[man-single]}" "digestfile" || return
  if tm skopeo inspect "${SK[@]}" --no-creds --raw "docker://$IMG_REG/$NS/image:v1" >/dev/null 2>&1; then
    fail "anonymous pull from the container's registry succeeded"; return; fi
  tm skopeo copy -q "${SKC[@]}" --src-creds "admin:$IMG_PW" \
    "docker://$IMG_REG/$NS/image:v1" "oci:$WORK/img-back:v1" || return
  local d
  for d in "${D[man-single]}" "${D[cfg-single]}" "${D[layer-single]}"; do
    cmp "$(blob "$d")" "$WORK/img-back/blobs/sha256/$(hex "$d")" || { fail "blob $d differs after pull back"; return; }
  done
}
c_image_volume() {                      # the data is in the volume, and outlives a restart
  [ -n "$IMG_CTR" ] || { fail "no container"; return; }
  local src; src=$(dk inspect --format '{{range .Mounts}}{{if eq .Destination "/var/lib/berth"}}{{.Type}} {{.Name}}{{end}}{{end}}' "$IMG_CTR") || return
  [[ $src == volume\ ?* ]] || { fail "no volume at /var/lib/berth (mounts: $src)"; return; }
  dk exec "$IMG_CTR" find /var/lib/berth -maxdepth 2 || return
  dk exec "$IMG_CTR" test -s /var/lib/berth/berth.db || { fail "no berth.db in the volume"; return; }
  local lh; lh=$(hex "${D[layer-single]}")
  local got; got=$(dk exec "$IMG_CTR" sh -c "find /var/lib/berth -type f -name '$lh' -exec sha256sum {} +") || return
  [ -n "$got" ] || { fail "the layer blob is not in the volume"; return; }
  same "${got%% *}" "$lh" "sha256 of the layer file in the volume" || return
  dk restart -t 10 "$IMG_CTR" >/dev/null || return
  local _ code=
  for _ in $(seq 1 120); do
    code=$(img_code /v2/ -u "admin:$IMG_PW" 2>/dev/null) && [ "$code" = 200 ] && break
    sleep 0.5
  done
  same "$code" 200 "GET /v2/ after restart" || return
  local f; f=$(mktemp "$WORK/img.XXXXXX")
  code=$(curl -sS -m "$TMO" -u "admin:$IMG_PW" -o "$f" -w '%{http_code}' -H "Accept: $ACCEPT" \
    "http://$IMG_REG/v2/$NS/image/manifests/v1") || return
  same "$code" 200 "manifest after restart" || return
  same "$(sha_file "$f")" "${D[man-single]}" "manifest digest after restart"
}
image_down() {                          # the container (with its volume) and the image
  [ -n "$IMG_CTR" ] && { dk rm -f -v "$IMG_CTR" >/dev/null || return; IMG_CTR=; }
  [ -n "$IMG_TAG" ] && { dk rmi "$IMG_TAG" >/dev/null || return; IMG_TAG=; }
  return 0
}
run_image() {
  have docker || { cannot image "all checks" "docker CLI not installed"; return; }
  have skopeo || { cannot image "all checks" "skopeo not installed"; return; }
  check image "base $BASE_IMAGE (mmdebstrap minbase + ca-certificates, docker import)" c_image_base
  [ -n "${READY[dockerd]:-}" ] || return
  check image "DOCKER_BUILDKIT=1 docker build --network none --target prebuilt" c_image_build
  check image "run on the host network, auth on: /v2/ 401, 200 as admin" c_image_run
  check image "the server process runs as the non-root user berth" c_image_user
  check image "skopeo push with credentials, pull back byte-identical" c_image_push_pull
  check image "data in the /var/lib/berth volume, served after a restart" c_image_volume
  check image "container, volume and image removed" image_down
}

# ============================================================================= auth (--auth)
# api METHOD PATH [JSON]: an /api/v1 call as the administrator; body on stdout, fails unless 2xx
api() {
  local code data=(); [ $# -ge 3 ] && data=(-H 'content-type: application/json' --data "$3")
  code=$(curl -sS -m "$TMO" -u "$AUTH" -X "$1" "${data[@]}" -o "$WORK/api.out" -w '%{http_code}' \
    "http://$REG/api/v1$2") || { fail "$1 /api/v1$2: curl error"; return; }
  case $code in 2*) cat "$WORK/api.out" ;; *) fail "$1 /api/v1$2 -> $code: $(head -c 200 "$WORK/api.out")" ;; esac
}
ANS=${NS%%/*}                           # the namespace of this run's repositories
A_USER=dev-$RUN_ID A_PW=pw-$RUN_ID-secret
c_auth_setup() {                        # a developer, their tokens, a deploy token, a PUBLIC repo
  local code
  code=$(curl -sS -m "$TMO" -u "$AUTH" -o /dev/null -w '%{http_code}' -H 'content-type: application/json' \
    --data "{\"name\":\"$ANS\",\"visibility\":\"private\"}" "http://$REG/api/v1/namespaces")
  [ "$code" = 201 ] || [ "$code" = 409 ] || { fail "create namespace $ANS -> $code"; return; }
  api POST /users "{\"name\":\"$A_USER\",\"password\":\"$A_PW\"}" >/dev/null || return
  api PUT "/namespaces/$ANS/members/$A_USER" '{"role":"developer"}' >/dev/null || return
  api POST "/users/$A_USER/tokens" '{"name":"ci","scopes":["read_registry","write_registry"]}' >"$WORK/pat.json" || return
  api POST "/users/$A_USER/tokens" '{"name":"ro","scopes":["read_registry"]}' >"$WORK/ro.json" || return
  api POST "/namespaces/$ANS/deploy-tokens" "{\"name\":\"ci-$RUN_ID\",\"scopes\":[\"read_registry\",\"write_registry\"]}" >"$WORK/deploy.json" || return
  api PATCH "/repositories/$NS/public" '{"visibility":"public"}' >/dev/null || return
  A_PAT=$(jq -r .secret "$WORK/pat.json") A_RO=$(jq -r .secret "$WORK/ro.json")
  A_DEPLOY_USER=$(jq -r .username "$WORK/deploy.json") A_DEPLOY=$(jq -r .secret "$WORK/deploy.json")
  [[ $A_PAT == berth_* && $A_RO == berth_* && $A_DEPLOY == berth_* ]] || fail "tokens not issued"
}
c_auth_skopeo_login() {                 # skopeo login (password) + push + logout
  echo "$A_PW" | tm skopeo login --tls-verify=false -u "$A_USER" --password-stdin "$REG" || return
  tm skopeo copy -q "${SKC[@]}" --digestfile "$WORK/as.digest" "oci:$LAYOUT:single" \
    "docker://$REG/$NS/auth-skopeo:v1" || return
  tm skopeo logout "$REG" || return
  same "$(cat "$WORK/as.digest")" "${D[man-single]}" "digestfile" || return
  same "$(served_digest "$NS/auth-skopeo" v1)" "${D[man-single]}" "served digest"
}
c_auth_skopeo_pat() {                   # --creds with a personal access token, push and read back
  tm skopeo copy -q "${SKC[@]}" --dest-creds "$A_USER:$A_PAT" "oci:$LAYOUT:amd64" \
    "docker://$REG/$NS/auth-pat:v1" || return
  tm skopeo inspect "${SK[@]}" --creds "$A_USER:$A_PAT" --raw "docker://$REG/$NS/auth-pat:v1" >"$WORK/ap.raw" || return
  same "$(sha_file "$WORK/ap.raw")" "${D[man-amd64]}" "manifest read back with the token"
}
c_auth_podman_deploy() {                # podman login with a deploy token (CI), pull + push
  echo "$A_DEPLOY" | tm podman login --tls-verify=false -u "$A_DEPLOY_USER" --password-stdin "$REG" || return
  tm podman pull -q --tls-verify=false "$REG/$NS/auth-skopeo:v1" >"$WORK/ad.id" || return
  same "sha256:$(tail -n1 "$WORK/ad.id")" "${D[cfg-single]}" "image id after pull" || return
  tm podman tag "$REG/$NS/auth-skopeo:v1" "$REG/$NS/auth-deploy:v1" || return
  tm podman push -q --tls-verify=false --digestfile "$WORK/ad.digest" "$REG/$NS/auth-deploy:v1" || return
  tm podman logout "$REG" || return
  same "$(served_digest "$NS/auth-deploy" v1)" "$(cat "$WORK/ad.digest")" "served digest vs digestfile"
}
c_auth_buildah_login() {                # buildah login (password) + pull
  echo "$A_PW" | tm buildah login --tls-verify=false -u "$A_USER" --password-stdin "$REG" || return
  tm buildah pull -q --tls-verify=false "$REG/$NS/auth-pat:v1" >"$WORK/ab.id" || return
  tm buildah logout "$REG" || return
  same "sha256:$(tail -n1 "$WORK/ab.id")" "${D[cfg-amd64]}" "image id after pull"
}
c_auth_read_only() {                    # a read-only token pulls, and its push is refused clearly
  tm skopeo inspect "${SK[@]}" --creds "$A_USER:$A_RO" --raw "docker://$REG/$NS/auth-pat:v1" >/dev/null \
    || { fail "read-only token could not pull"; return; }
  if tm skopeo copy -q "${SKC[@]}" --dest-creds "$A_USER:$A_RO" "oci:$LAYOUT:arm64" \
      "docker://$REG/$NS/auth-ro:v1" >"$WORK/ro.out" 2>&1; then
    fail "push with a read-only token succeeded"; return; fi
  cat "$WORK/ro.out"
  grep -qi 'denied' "$WORK/ro.out" || { fail "no 'denied' in the client's error"; return; }
  grep -qi 'read-only' "$WORK/ro.out" || fail "the client's error does not say the token is read-only"
}
c_auth_public_anonymous() {             # anonymous pull of a PUBLIC repository
  tm skopeo copy -q "${SKC[@]}" --dest-creds "$AUTH" "oci:$LAYOUT:single" "docker://$REG/$NS/public:v1" || return
  tm skopeo inspect "${SK[@]}" --no-creds --raw "docker://$REG/$NS/public:v1" >"$WORK/pub.raw" || return
  same "$(sha_file "$WORK/pub.raw")" "${D[man-single]}" "manifest pulled anonymously" || return
  tm podman pull -q --tls-verify=false "$REG/$NS/public:v1" >"$WORK/pub.id" || return
  same "sha256:$(tail -n1 "$WORK/pub.id")" "${D[cfg-single]}" "podman anonymous pull"
}
c_auth_private_refused() {              # anonymous and outsider pulls of a PRIVATE repository
  if tm skopeo inspect "${SK[@]}" --no-creds --raw "docker://$REG/$NS/auth-skopeo:v1" >"$WORK/priv.out" 2>&1; then
    fail "anonymous pull of a private repository succeeded"; return; fi
  grep -Eqi 'unauthorized|authentication required|denied|unknown|not found' "$WORK/priv.out" \
    || { fail "unclear refusal: $(tail -n1 "$WORK/priv.out")"; return; }
  if tm podman pull -q --tls-verify=false "$REG/$NS/auth-skopeo:v1" >/dev/null 2>&1; then
    fail "podman pulled a private repository anonymously"; fi
}
c_auth_docker() {                       # docker login with password, PAT and deploy token
  docker_up || return
  echo "$A_PW" | dk login -u "$A_USER" --password-stdin "$REG" || return
  dk pull -q "$REG/$NS/auth-skopeo:v1" || return
  dk tag "$REG/$NS/auth-skopeo:v1" "$REG/$NS/auth-docker:v1" || return
  dk push "$REG/$NS/auth-docker:v1" >"$WORK/adk.push" || return
  same "$(served_digest "$NS/auth-docker" v1)" "$(grep -o 'sha256:[0-9a-f]\{64\}' "$WORK/adk.push" | tail -n1)" \
    "served digest vs docker push" || return
  echo "$A_PAT" | dk login -u "$A_USER" --password-stdin "$REG" || return
  dk rmi "$REG/$NS/auth-skopeo:v1" "$REG/$NS/auth-docker:v1" >/dev/null || return
  dk pull -q "$REG/$NS/auth-docker:v1" || return
  echo "$A_DEPLOY" | dk login -u "$A_DEPLOY_USER" --password-stdin "$REG" || return
  dk tag "$REG/$NS/auth-docker:v1" "$REG/$NS/auth-docker:deploy" || return
  dk push "$REG/$NS/auth-docker:deploy" >/dev/null || return
  echo "$A_RO" | dk login -u "$A_USER" --password-stdin "$REG" || return
  dk tag "$REG/$NS/auth-docker:v1" "$REG/$NS/auth-docker-ro:v1" || return
  if dk push "$REG/$NS/auth-docker-ro:v1" >"$WORK/adk.ro" 2>&1; then
    fail "docker push with a read-only token succeeded"; return; fi
  cat "$WORK/adk.ro"
  grep -qi 'denied' "$WORK/adk.ro" || fail "docker's error does not say denied"
  dk logout "$REG" >/dev/null
}
c_auth_oras() {
  local py=$VENV/bin/python
  [ -x "$py" ] || { fail "no venv at $VENV"; return; }
  tm "$py" "$HERE/py_auth.py" --registry "$REG" --repo "$NS/auth-oras" --user "$A_USER" \
    --password "$A_PW" --read-only-token "$A_RO" --workdir "$WORK/py-auth" >"$WORK/py-auth.out" || true
  cat "$WORK/py-auth.out"
  grep -q '^ok - ' "$WORK/py-auth.out" || { fail "oras-py ran no check"; return; }
  ! grep -q '^not ok' "$WORK/py-auth.out" || fail "$(grep '^not ok' "$WORK/py-auth.out" | head -n1)"
}
run_auth() {
  check auth "setup: user, personal tokens, deploy token, a PUBLIC repository (api/v1)" c_auth_setup
  have skopeo && check skopeo "login with password, push, logout" c_auth_skopeo_login
  have skopeo && check skopeo "--creds with a personal access token: push, inspect" c_auth_skopeo_pat
  have podman && check podman "login with a deploy token (--password-stdin): pull, push" c_auth_podman_deploy
  have buildah && check buildah "login with password, pull" c_auth_buildah_login
  have skopeo && check skopeo "read-only token pulls; its push is refused (denied, read-only)" c_auth_read_only
  have skopeo && check skopeo "anonymous pull of a PUBLIC repository (and podman)" c_auth_public_anonymous
  have skopeo && check skopeo "anonymous pull of a PRIVATE repository refused" c_auth_private_refused
  if have docker; then
    check docker "login with password, PAT, deploy token; read-only push denied" c_auth_docker
  else cannot docker "auth" "docker not installed"; fi
  check oras-py "default token flow and basic: login, push, pull; read-only token refused" c_auth_oras
}

# ctr_check GROUP WHAT FN: runs check ctr WHAT FN with CTR set to the containerd of the
# private dockerd (or BERTH_TEST_CONTAINERD_ADDRESS), in a namespace of GROUP's own; CTR stays
# empty (and the check is reported as not run) when there is none.
ctr_check() {
  local group=$1 what=$2 fn=$3 addr=${BERTH_TEST_CONTAINERD_ADDRESS:-}
  CTR=()
  have ctr || { cannot ctr "$group" "ctr not installed"; return; }
  [ -z "$addr" ] && [ -n "${READY[dockerd]:-}" ] && addr=$WORK/dockerd/exec/containerd/containerd.sock
  if [ -n "$addr" ] && [ -S "$addr" ]; then
    CTR=(--address "$addr" --namespace "berth-e2e-$RUN_ID-$group")
    check ctr "$what" "$fn"
  else cannot ctr "$group" "no containerd socket (set BERTH_TEST_CONTAINERD_ADDRESS)"; fi
}

# ============================================================================= quarantine
# An image quarantined through /api/v1 (curl): every client's pull fails and prints the
# reason; after the release every client pulls it. A multi-arch tag with one quarantined
# platform is not pullable either.
Q_REPO= Q_REASON= Q_MULTI=
q_api() {                               # q_api METHOD DIGEST [REASON] -> http status
  local body=(); [ -n "${3:-}" ] && body=(-H 'content-type: application/json' --data "$(jq -cn --arg r "$3" '{reason:$r}')")
  curl -sS -m "$TMO" "${CURL_AUTH[@]}" -o "$WORK/q.api" -w '%{http_code}' -X "$1" "${body[@]}" \
    "http://$REG/api/v1/repositories/$Q_REPO/-/images/$2/quarantine"
}
# q_refused CLIENT OUTFILE CMD...: CMD must fail and its output name the quarantine's reason
q_refused() {
  local client=$1 out=$2; shift 2
  if "$@" >"$out" 2>&1; then fail "$client pulled a quarantined image"; return; fi
  cat "$out"
  grep -qF "is quarantined: $Q_REASON" "$out" \
    || fail "$client's output lacks the reason: $(grep -v '^[[:space:]]*$' "$out" | tail -n1 | cut -c1-200)"
}
c_q_setup() {
  Q_REPO=$NS/quarantine Q_REASON="e2e $RUN_ID: CVE-2024-3094 in xz-utils"
  tm skopeo copy -q "${SKC[@]}" "oci:$LAYOUT:single" "docker://$REG/$Q_REPO:v1" || return
  tm skopeo copy -q --all "${SKC[@]}" "oci:$LAYOUT:multi" "docker://$REG/$Q_REPO:multi" || return
  same "$(q_api POST "${D[man-single]}" "$Q_REASON")" 201 "POST quarantine ($(cat "$WORK/q.api"))" || return
  same "$(jq -r .reason "$WORK/q.api")" "$Q_REASON" "recorded reason" || return
  same "$(q_api POST "${D[man-arm64]}" "$Q_REASON")" 201 "POST quarantine of the arm64 child" || return
  Q_MULTI=1
  # -L: with storage.redirect on, the blob is served by the store after a 307
  local code; code=$(curl -sSL -o /dev/null -w '%{http_code}' "http://$REG/v2/$Q_REPO/blobs/${D[layer-single]}")
  same "$code" 200 "GET of a quarantined image's layer (blobs stay readable)"
}
c_q_skopeo() {
  q_refused skopeo "$WORK/q.skopeo" tm skopeo copy -q "${SKC[@]}" "docker://$REG/$Q_REPO:v1" "dir:$WORK/q-sk" || return
  q_refused skopeo "$WORK/q.skopeo-multi" tm skopeo --override-arch amd64 copy -q "${SKC[@]}" \
    "docker://$REG/$Q_REPO:multi" "dir:$WORK/q-sk-multi"
}
c_q_podman() { q_refused podman "$WORK/q.podman" tm podman pull -q --tls-verify=false "$REG/$Q_REPO:v1"; }
c_q_docker() { docker_up || return; q_refused docker "$WORK/q.docker" dk pull -q "$REG/$Q_REPO:v1"; }
c_q_ctr() {
  q_refused ctr "$WORK/q.ctr" tm ctr "${CTR[@]}" images pull --plain-http --snapshotter native "$REG/$Q_REPO:v1"
}
c_q_release() {
  same "$(q_api DELETE "${D[man-single]}")" 204 "DELETE quarantine" || return
  same "$(q_api DELETE "${D[man-arm64]}")" 204 "DELETE quarantine of the arm64 child" || return
  Q_MULTI=
  same "$(served_digest "$Q_REPO" v1)" "${D[man-single]}" "served digest after the release" || return
  tm skopeo copy -q "${SKC[@]}" "docker://$REG/$Q_REPO:v1" "dir:$WORK/q-sk-back" || return
  same "$(sha_file "$WORK/q-sk-back/manifest.json")" "${D[man-single]}" "skopeo: pulled manifest digest" || return
  tm skopeo --override-arch arm64 copy -q "${SKC[@]}" "docker://$REG/$Q_REPO:multi" "dir:$WORK/q-sk-arm64" || return
  same "$(sha_file "$WORK/q-sk-arm64/manifest.json")" "${D[man-arm64]}" "skopeo: arm64 of the index" || return
  if have podman; then
    tm podman pull -q --tls-verify=false "$REG/$Q_REPO:v1" >"$WORK/q.pd.id" || return
    same "sha256:$(tail -n1 "$WORK/q.pd.id")" "${D[cfg-single]}" "podman: image id" || return
  fi
  if [ -n "${READY[dockerd]:-}" ]; then
    dk pull -q "$REG/$Q_REPO:v1" || return
    same "$(dk image inspect --format '{{.Id}}' "$REG/$Q_REPO:v1")" "${D[cfg-single]}" "docker: image id" || return
  fi
  if [ ${#CTR[@]} -gt 0 ]; then
    tm ctr "${CTR[@]}" images pull --plain-http --snapshotter native "$REG/$Q_REPO:v1" || return
    same "$(ctr_target "$REG/$Q_REPO:v1")" "${D[man-single]}" "ctr: image target digest"
  fi
}
# block_unscanned (a repository's scanning policy): an image pushed there is refused to
# skopeo with the policy named until it has a successful scan, then pulled.
U_REPO=
u_api() {                               # u_api METHOD PATH [JSON] -> http status
  local body=(); [ -n "${3:-}" ] && body=(-H 'content-type: application/json' --data "$3")
  curl -sS -m "$TMO" "${CURL_AUTH[@]}" -o "$WORK/u.api" -w '%{http_code}' -X "$1" "${body[@]}" \
    "http://$REG/api/v1/repositories/$U_REPO/-/$2"
}
c_q_unscanned() {
  U_REPO=$NS/unscanned
  same "$(u_api PUT settings '{"scan_on_push": false, "block_unscanned": true}')" 200 \
    "PUT block_unscanned ($(cat "$WORK/u.api"))" || return
  tm skopeo copy -q "${SKC[@]}" "oci:$LAYOUT:single" "docker://$REG/$U_REPO:v1" || return
  local out=$WORK/u.skopeo
  if tm skopeo copy -q "${SKC[@]}" "docker://$REG/$U_REPO:v1" "dir:$WORK/u-sk" >"$out" 2>&1; then
    fail "skopeo pulled an unscanned image"; return
  fi
  cat "$out"
  grep -qF "has no successful vulnerability scan yet; block_unscanned of the repository scanning policy of repository $U_REPO" "$out" \
    || { fail "skopeo's output lacks the policy: $(grep -v '^[[:space:]]*$' "$out" | tail -n1 | cut -c1-200)"; return; }
  same "$(u_api POST "images/${D[man-single]}/scan?wait=true")" 200 "POST scan ($(cat "$WORK/u.api"))" || return
  tm skopeo copy -q "${SKC[@]}" "docker://$REG/$U_REPO:v1" "dir:$WORK/u-sk-back" || return
  same "$(sha_file "$WORK/u-sk-back/manifest.json")" "${D[man-single]}" "skopeo: pulled manifest digest after the scan"
}
run_quarantine() {
  have skopeo || { cannot quarantine "all checks" "skopeo is needed to push the image"; return; }
  check quarantine "setup: push, quarantine the image and one platform of an index (api/v1)" c_q_setup
  [ -n "$Q_REPO" ] || return
  check skopeo "copy of a quarantined image (and of an index with a quarantined platform) refused with the reason" c_q_skopeo
  if have podman; then check podman "pull of a quarantined image refused with the reason" c_q_podman
  else cannot podman "quarantine" "podman not installed"; fi
  if have docker; then check docker "pull of a quarantined image refused with the reason" c_q_docker
  else cannot docker "quarantine" "docker CLI not installed"; fi
  ctr_check quarantine "pull of a quarantined image refused with the reason" c_q_ctr
  check quarantine "release: skopeo, podman, docker and ctr pull the image again" c_q_release
  check skopeo "pull of an unscanned image refused by block_unscanned, naming the policy; pulled once scanned" c_q_unscanned
}

# ============================================================================= trust
# An `enforce` trust policy (a P-256 key made by openssl) on a repository: skopeo, podman,
# docker and ctr pulls of its unsigned image fail showing the reason; once a cosign signature
# in the tag scheme (simple-signing payload signed by openssl) is pushed, every client pulls
# it; switching the policy's key revokes the trust at once.
T_REPO= T_POLICY=
t_api() {                               # t_api METHOD [JSON] -> http status of the policy call
  local body=(); [ -n "${2:-}" ] && body=(-H 'content-type: application/json' --data "$2")
  curl -sS -m "$TMO" "${CURL_AUTH[@]}" -o "$WORK/t.api" -w '%{http_code}' -X "$1" "${body[@]}" \
    "http://$REG/api/v1/trust/policies/$T_POLICY"
}
t_policy() {                            # t_policy PUBLIC_KEY_PEM_FILE: enforce that key
  jq -cn --arg scope "$T_REPO" --rawfile key "$1" \
    '{scope: $scope, mode: "enforce", cosign_keys: [$key]}'
}
t_blob() {                              # t_blob FILE: monolithic upload to $T_REPO -> status
  curl -sS -m "$TMO" "${CURL_AUTH[@]}" -o /dev/null -w '%{http_code}' -X POST \
    -H 'content-type: application/octet-stream' --data-binary "@$1" \
    "http://$REG/v2/$T_REPO/blobs/uploads/?digest=$(sha_file "$1")"
}
# t_refused CLIENT OUTFILE CMD...: CMD must fail and its output say the image is not signed
t_refused() {
  local client=$1 out=$2; shift 2
  if "$@" >"$out" 2>&1; then fail "$client pulled an unsigned image under enforce"; return; fi
  cat "$out"
  grep -qF "is not signed by a key or identity trust policy $T_POLICY trusts" "$out" \
    || fail "$client's output lacks the reason: $(grep -v '^[[:space:]]*$' "$out" | tail -n1 | cut -c1-200)"
}
c_t_setup() {
  T_REPO=$NS/trust T_POLICY=e2e-$RUN_ID
  local k
  for k in a b; do
    openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/t-$k.key" 2>/dev/null || return
    openssl ec -in "$WORK/t-$k.key" -pubout -out "$WORK/t-$k.pub" 2>/dev/null || return
  done
  # an image of its own: containerd never fetches again a manifest it holds from another group
  make_image trusted linux/amd64 small || return
  same "$(t_blob "$(blob "${D[cfg-trusted]}")")" 201 "upload of the image's config" || return
  same "$(t_blob "$(blob "${D[layer-trusted]}")")" 201 "upload of the image's layer" || return
  local code; code=$(curl -sS -m "$TMO" "${CURL_AUTH[@]}" -o "$WORK/t.put" -w '%{http_code}' -X PUT \
    -H "content-type: $MT_MANIFEST" --data-binary "@$(blob "${D[man-trusted]}")" \
    "http://$REG/v2/$T_REPO/manifests/v1")
  same "$code" 201 "PUT of the image's manifest ($(cat "$WORK/t.put"))" || return
  same "$(t_api PUT "$(t_policy "$WORK/t-a.pub")")" 201 "PUT enforce policy ($(cat "$WORK/t.api"))"
}
c_t_skopeo() { t_refused skopeo "$WORK/t.skopeo" tm skopeo copy -q "${SKC[@]}" "docker://$REG/$T_REPO:v1" "dir:$WORK/t-sk"; }
c_t_podman() { t_refused podman "$WORK/t.podman" tm podman pull -q --tls-verify=false "$REG/$T_REPO:v1"; }
c_t_docker() { docker_up || return; t_refused docker "$WORK/t.docker" dk pull -q "$REG/$T_REPO:v1"; }
c_t_ctr() {
  t_refused ctr "$WORK/t.ctr" tm ctr "${CTR[@]}" images pull --plain-http --snapshotter native "$REG/$T_REPO:v1"
}
c_t_sign() {                            # cosign's tag scheme, signed with key a
  local subject=${D[man-trusted]} payload=$WORK/t-payload.json config=$WORK/t-config.json
  jq -cn --arg ref "$REG/$T_REPO" --arg d "$subject" \
    '{critical: {identity: {"docker-reference": $ref}, image: {"docker-manifest-digest": $d},
      type: "cosign container image signature"}, optional: null}' >"$payload"
  printf '{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]},"config":{}}' >"$config"
  openssl dgst -sha256 -sign "$WORK/t-a.key" -out "$WORK/t-sig.der" "$payload" || return
  same "$(t_blob "$payload")" 201 "upload of the signed payload" || return
  same "$(t_blob "$config")" 201 "upload of the signature's config" || return
  jq -cn --arg cd "$(sha_file "$config")" --argjson cs "$(stat -c %s "$config")" \
    --arg pd "$(sha_file "$payload")" --argjson ps "$(stat -c %s "$payload")" \
    --arg sig "$(base64 -w0 "$WORK/t-sig.der")" \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
      layers: [{mediaType: "application/vnd.dev.cosign.simplesigning.v1+json", digest: $pd,
                size: $ps, annotations: {"dev.cosignproject.cosign/signature": $sig}}]}' \
    >"$WORK/t-sig-manifest.json"
  local code; code=$(curl -sS -m "$TMO" "${CURL_AUTH[@]}" -o "$WORK/t.put" -w '%{http_code}' -X PUT \
    -H 'content-type: application/vnd.oci.image.manifest.v1+json' --data-binary "@$WORK/t-sig-manifest.json" \
    "http://$REG/v2/$T_REPO/manifests/sha256-$(hex "$subject").sig")
  same "$code" 201 "PUT of the signature manifest ($(cat "$WORK/t.put"))" || return
  code=$(curl -sS -m "$TMO" "${CURL_AUTH[@]}" -o "$WORK/t.sigs" -w '%{http_code}' \
    "http://$REG/api/v1/repositories/$T_REPO/-/images/$subject/signatures")
  same "$code" 200 "GET signatures" || return
  same "$(jq -c '[.items[] | {tool, verified}]' "$WORK/t.sigs")" '[{"tool":"cosign","verified":true}]' \
    "the image's signatures as verified"
}
c_t_signed() {                          # every client pulls the signed image
  tm skopeo copy -q "${SKC[@]}" "docker://$REG/$T_REPO:v1" "dir:$WORK/t-sk-back" || return
  same "$(sha_file "$WORK/t-sk-back/manifest.json")" "${D[man-trusted]}" "skopeo: pulled manifest digest" || return
  if have podman; then
    tm podman pull -q --tls-verify=false "$REG/$T_REPO:v1" >"$WORK/t.pd.id" || return
    same "sha256:$(tail -n1 "$WORK/t.pd.id")" "${D[cfg-trusted]}" "podman: image id" || return
  fi
  if [ -n "${READY[dockerd]:-}" ]; then
    dk pull -q "$REG/$T_REPO:v1" || return
    same "$(dk image inspect --format '{{.Id}}' "$REG/$T_REPO:v1")" "${D[cfg-trusted]}" "docker: image id" || return
  fi
  if [ ${#CTR[@]} -gt 0 ]; then
    tm ctr "${CTR[@]}" images pull --plain-http --snapshotter native "$REG/$T_REPO:v1" || return
    same "$(ctr_target "$REG/$T_REPO:v1")" "${D[man-trusted]}" "ctr: image target digest"
  fi
}
c_t_switch() {                          # key b only: the same pull is refused at once
  same "$(t_api PUT "$(t_policy "$WORK/t-b.pub")")" 200 "PUT the policy with another key ($(cat "$WORK/t.api"))" || return
  t_refused skopeo "$WORK/t.skopeo-switched" tm skopeo copy -q "${SKC[@]}" "docker://$REG/$T_REPO:v1" "dir:$WORK/t-sk-switched" || return
  same "$(t_api DELETE)" 204 "DELETE the policy"
}
run_trust() {
  have skopeo || { cannot trust "all checks" "skopeo is needed to push the image"; return; }
  have openssl || { cannot trust "all checks" "openssl is needed to make the key and the signature"; return; }
  check trust "setup: push an image, an enforce policy with an openssl P-256 key (api/v1)" c_t_setup
  [ -n "$T_REPO" ] || return
  check skopeo "copy of an unsigned image under enforce refused with the reason" c_t_skopeo
  if have podman; then check podman "pull of an unsigned image under enforce refused with the reason" c_t_podman
  else cannot podman "trust" "podman not installed"; fi
  if have docker; then check docker "pull of an unsigned image under enforce refused with the reason" c_t_docker
  else cannot docker "trust" "docker CLI not installed"; fi
  ctr_check trust "pull of an unsigned image under enforce refused with the reason" c_t_ctr
  check trust "cosign signature (tag scheme, signed by openssl) pushed and verified" c_t_sign
  check trust "signed: skopeo, podman, docker and ctr pull the image" c_t_signed
  check trust "the policy's key switched: the signed image is refused at once" c_t_switch
}

# ============================================================================= python clients
run_python() {                          # run_python oras,dxf  (py_clients.py prints ok/not ok)
  local groups=$1 py=$VENV/bin/python
  if [ ! -x "$py" ] || ! "$py" -c 'import oras.client, dxf' 2>/dev/null; then
    [[ ,$groups, == *,oras,* ]] && cannot oras-py "all checks" "not installed in $VENV (run scripts/install-test-deps.sh)"
    [[ ,$groups, == *,dxf,* ]] && cannot python-dxf "all checks" "not installed in $VENV (run scripts/install-test-deps.sh)"
    return
  fi
  local out=$WORK/logs/python.out err=$WORK/logs/python.err rc nfail=0 line
  tm "$py" "$HERE/py_clients.py" --registry "$REG" --namespace "$NS" --workdir "$WORK/python" \
    --groups "$groups" >"$out" 2>"$err"
  rc=$?
  while IFS= read -r line; do
    case $line in
      "ok - "*) PASS=$((PASS + 1)); NCHECK=$((NCHECK + 1)); echo "$line" ;;
      "not ok - "*) FAIL=$((FAIL + 1)); NCHECK=$((NCHECK + 1)); nfail=$((nfail + 1)); echo "$line" ;;
    esac
  done <"$out"
  if [ "$rc" != 0 ] && [ "$nfail" = 0 ]; then
    local why="exit $rc"; [ "$rc" = 124 ] && why="timed out after ${TMO}s"
    cannot python "py_clients.py" "$why: $(tail -n1 "$err" | cut -c1-200)"
  fi
  if [ "$VERBOSE" = 1 ] && [ "$nfail" != 0 ] && [ -s "$err" ]; then sed 's/^/#   /' "$err"; fi
}

# ============================================================================= setup
c_registry_up() {
  local code; code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' "http://$REG/v2/") || { fail "no answer from http://$REG/v2/"; return; }
  if [ -n "$AUTH" ]; then
    same "$code" 401 "GET /v2/ without credentials" || return
    code=$(curl -sS -m 10 -u "$AUTH" -o /dev/null -w '%{http_code}' "http://$REG/v2/")
    same "$code" 200 "GET /v2/ as the administrator"
  else
    same "$code" 200 "GET /v2/"
  fi
}
c_tools() { local t; for t in curl jq tar gzip sha256sum timeout; do have "$t" || fail "$t not installed"; done; }
client_versions() {                     # one comment line, so results files say what was run
  local v=() py=$VENV/bin/python
  have skopeo && v+=("skopeo $(tm skopeo --version | awk '{print $3}')")
  have podman && v+=("podman $(tm podman --version | awk '{print $3}')")
  have buildah && v+=("buildah $(tm buildah --version | awk '{print $3}')")
  have docker && v+=("docker-cli $(tm docker --version | awk '{print $3}' | tr -d ,)")
  have ctr && v+=("ctr $(tm ctr --version | awk '{print $3}')")
  if [ -x "$py" ]; then
    v+=("$(tm "$py" -c 'from importlib.metadata import version as v; print("oras-py", v("oras") + ", python-dxf", v("python-dxf"))' 2>/dev/null)")
  fi
  printf '# clients: %s\n' "$(printf '%s, ' "${v[@]}" | sed 's/, $//')"
}

# ============================================================================= main
cleanup() {
  local p; for p in "$PX_PID" "$PX_UP_PID"; do   # the proxy group's own Berth and upstream
    [ -n "$p" ] && kill "$p" 2>/dev/null
  done
  if [ -n "$IMG_CTR$IMG_TAG" ]; then image_down >/dev/null 2>&1; fi   # after a failed check
  if [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
    kill "$DOCKERD_PID"                 # only the dockerd this run started
    local _; for _ in $(seq 1 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$DOCKERD_PID" 2>/dev/null && kill -9 "$DOCKERD_PID"
    # a container run on the host network leaves dockerd's netns mount behind
    local ns=$WORK/dockerd/exec/netns/default
    if mountpoint -q "$ns" 2>/dev/null; then umount "$ns"; fi
  fi
  if [ "$KEEP" = 1 ]; then echo "# work dir kept: $WORK"
  else
    # buildah/podman vfs trees may contain read-only directories
    chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK/logs"

echo "# registry http://$REG, repositories under $REG/$NS/, work dir $WORK"
check setup "tools present (curl jq tar gzip sha256sum timeout)" c_tools
check setup "registry answers GET /v2/ with 200" c_registry_up
[ "$FAIL" = 0 ] && check setup "build OCI layout (single, 5 platforms + index$(want blobs && echo ', zero, 64 MiB'))" build_fixtures
if [ "$FAIL" != 0 ]; then
  echo "# setup failed: no client was run"
  echo "$PASS passed, $FAIL failed"; exit 1
fi
setup_containers_env
client_versions

want skopeo && run_skopeo
want multiarch && run_multiarch
want blobs && run_blobs
want podman && run_podman
want docker && run_docker
# before ctr: containerd shares content between its namespaces and does not fetch a manifest
# it holds, so once the ctr group has pulled this image a quarantine cannot be seen by ctr (a
# registry can only refuse what a client fetches)
want quarantine && run_quarantine
want trust && run_trust
want ctr && run_ctr
want proxy && run_proxy
want image && run_image
want auth && run_auth
py_groups=
want oras && py_groups+=oras,
want dxf && py_groups+=dxf,
[ -n "$py_groups" ] && run_python "${py_groups%,}"

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
