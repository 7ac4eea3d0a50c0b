#!/usr/bin/env bash
# Build the Docker backend's images if they are missing (idempotent; see README.md).
#   containers/build.sh            hx-base and hx-stage
#   GPU=1 containers/build.sh      also hx-stage-gpu
# Each tag is a hash of what goes into the image: an image whose tag exists is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
GPU=${GPU:-0}
WORK=${WORK:-/var/tmp/hx-images}  # build contexts, outside the repository
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --python-version 3.11)
mkdir -p "$WORK"

docker_up() {
  if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      docker.io debootstrap >/dev/null
  fi
  if ! docker info >/dev/null 2>&1; then  # a daemon that already runs is used as it is
    # no bridge, no NAT, no iptables rules: the harness builds every link itself
    nohup dockerd --bridge=none --iptables=false --ip-masq=false --ip6tables=false \
      >"$WORK/dockerd.log" 2>&1 &
    for _ in $(seq 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start: $WORK/dockerd.log" >&2; exit 1; }
  fi
}

have() { docker image inspect "$1" >/dev/null 2>&1; }
hash12() { sha256sum | cut -c1-12; }

build_base() {
  local h root
  h=$( (echo "bookworm minbase"; cat containers/base/packages) | hash12)
  BASE=hx-base:$h
  if have "$BASE"; then echo "$BASE: present"; return; fi
  root=$WORK/base-rootfs
  rm -rf "$root"
  echo "$BASE: debootstrap (about a minute)"
  debootstrap --variant=minbase --include="$(paste -sd, containers/base/packages)" \
    bookworm "$root" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -5 "$WORK/debootstrap.log" >&2; exit 1; }
  tar -C "$root" -c . | docker import --change 'CMD ["/bin/sh"]' - "$BASE" >/dev/null
  docker tag "$BASE" hx-base:latest
  rm -rf "$root"
}

build_stage() {  # $1: stage | stage-gpu
  local name=$1 ctx=$WORK/$1 h image reqs deps source
  # the host venv's versions (harness.emulation.backends.docker.images is the one definition)
  reqs=$("$PY" -m harness.emulation.backends.docker.images requirements "$name")
  source=$("$PY" -m harness.emulation.backends.docker.images source-hash)
  h=$( (echo "$BASE" "$name" "$source" "$reqs"; cat containers/stage/Dockerfile) | hash12)
  image=hx-$name:$h
  if have "$image"; then echo "$image: present"; return; fi
  echo "$image: build"
  # the dependency wheelhouse is kept between builds, per set of requirements
  deps=$WORK/deps-$(echo "$reqs" | hash12)
  if [ ! -f "$deps/requirements.txt" ]; then
    rm -rf "$deps.tmp" && mkdir -p "$deps.tmp"
    echo "$reqs" >"$deps.tmp/requirements.txt"
    "$PY" -m pip download -q --only-binary=:all: "${PLATFORMS[@]}" -d "$deps.tmp" \
      -r "$deps.tmp/requirements.txt" 2> >(grep -v "^WARNING: Location" >&2)
    mv "$deps.tmp" "$deps"
  fi
  rm -rf "$ctx" && mkdir -p "$ctx/project"
  cp -r "$deps" "$ctx/deps"
  "$PY" -m pip wheel -q --no-deps -w "$ctx/project" . 2> >(grep -v "^WARNING: Location" >&2)
  cp containers/stage/Dockerfile "$ctx/"
  # (the legacy builder's deprecation notice is the only thing filtered out)
  docker build -q --build-arg "BASE=$BASE" --build-arg "SOURCE=$source" -t "$image" "$ctx" \
    >/dev/null 2> >(grep -v -e "^DEPRECATED: The legacy builder" -e "buildx" -e "^ *$" >&2)
  docker tag "$image" "hx-$name:latest"
  # it must run what a stage runs, with no network at all
  docker run --rm --network none "$image" python -c \
    "import onnxruntime, grpc, tritonclient.grpc, harness.pipeline.node.server" \
    || { echo "$image: the stage code does not import" >&2; exit 1; }
  rm -rf "$ctx"
  # older builds of this image are ours: keep the newest few (other checkouts may run
  # theirs), remove the rest unless a container uses them (nothing else is touched)
  docker images --format '{{.Repository}}:{{.Tag}}' "hx-$name" | grep -v ":latest$" \
    | tail -n +5 | xargs -r docker rmi >/dev/null 2>&1 || true
}

docker_up
build_base
build_stage stage
if [ "$GPU" = 1 ]; then build_stage stage-gpu; fi
docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^hx-' | sort
