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
  local name=$1 ctx=$WORK/$1 h image
  rm -rf "$ctx"
  mkdir -p "$ctx/wheels/project"
  # the host venv's versions, so a stage in a container computes what a process stage does
  "$PY" - "$name" >"$ctx/wheels/requirements.txt" <<'PY'
import sys
from importlib.metadata import version
gpu = sys.argv[1] == "stage-gpu"
print("onnxruntime-gpu" if gpu else f"onnxruntime=={version('onnxruntime')}")
for dist in ("grpcio", "numpy", "protobuf"):
    print(f"{dist}=={version(dist)}")
print(f"tritonclient[grpc]=={version('tritonclient')}")
PY
  # one Dockerfile for both: only the wheelhouse (onnxruntime or onnxruntime-gpu) differs
  h=$( (echo "$BASE" "$name"; cat containers/stage/Dockerfile "$ctx/wheels/requirements.txt" \
        pyproject.toml; find harness -name '*.py' | sort | xargs sha256sum) | hash12)
  image=hx-$name:$h
  if have "$image"; then echo "$image: present"; rm -rf "$ctx"; return; fi
  echo "$image: wheelhouse and build"
  "$PY" -m pip download -q --only-binary=:all: "${PLATFORMS[@]}" -d "$ctx/wheels" \
    -r "$ctx/wheels/requirements.txt" 2> >(grep -v "^WARNING: Location" >&2)
  "$PY" -m pip wheel -q --no-deps -w "$ctx/wheels/project" . 2> >(grep -v "^WARNING: Location" >&2)
  cp containers/stage/Dockerfile "$ctx/"
  # (the legacy builder's deprecation notice is the only thing filtered out)
  docker build -q --build-arg "BASE=$BASE" -t "$image" "$ctx" >/dev/null \
    2> >(grep -v -e "^DEPRECATED: The legacy builder" -e "buildx" -e "^ *$" >&2)
  docker tag "$image" "hx-$name:latest"
  # it must run what a stage runs, with no network at all
  docker run --rm --network none "$image" python -c \
    "import onnxruntime, grpc, tritonclient.grpc, harness.pipeline.node.server" \
    || { echo "$image: the stage code does not import" >&2; exit 1; }
  rm -rf "$ctx"
}

docker_up
build_base
build_stage stage
if [ "$GPU" = 1 ]; then build_stage stage-gpu; fi
docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^hx-' | sort
