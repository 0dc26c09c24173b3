#!/usr/bin/env bash
# Build the app runtime and operator images with docker or podman, whichever is present.
#   REGISTRY=ghcr.io/channelapp TAG=0.1.0 bash images/build.sh
set -euo pipefail
cd "$(dirname "$0")/.."

REGISTRY="${REGISTRY:-ghcr.io/channelapp}"
TAG="${TAG:-0.1.0}"
ENGINE="${CONTAINER_ENGINE:-}"
if [[ -z "$ENGINE" ]]; then
  for candidate in docker podman; do
    if command -v "$candidate" >/dev/null 2>&1; then ENGINE="$candidate"; break; fi
  done
fi
if [[ -z "$ENGINE" ]]; then
  echo "images/build.sh: neither docker nor podman is installed; install one (or set CONTAINER_ENGINE)" >&2
  exit 1
fi

build() {
  local image="$1" dockerfile="$2"
  echo "=== [$(date +%H:%M:%S)] $ENGINE build $image ($dockerfile)"
  "$ENGINE" build --file "$dockerfile" --tag "$image" .
}

build "$REGISTRY/channelapp:$TAG" images/app/Dockerfile
build "$REGISTRY/channelapp-operator:$TAG" images/operator/Dockerfile
echo "=== built $REGISTRY/channelapp:$TAG and $REGISTRY/channelapp-operator:$TAG"
