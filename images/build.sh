#!/usr/bin/env bash
# Build the app runtime and operator images with docker or podman, whichever is on PATH.
#   bash images/build.sh                              # ghcr.io/channelapp/{channelapp,channelapp-operator}:0.1.0
#   REGISTRY=registry.example.com/me TAG=dev bash images/build.sh
#   CONTAINER_ENGINE=podman bash images/build.sh      # choose the engine explicitly
# The build context is the repository root (see .dockerignore).
set -euo pipefail
cd "$(dirname "$0")/.."

REGISTRY="${REGISTRY:-ghcr.io/channelapp}"
TAG="${TAG:-0.1.0}"
ENGINE="${CONTAINER_ENGINE:-}"
if [[ -z "$ENGINE" ]]; then
  for candidate in docker podman; do
    if command -v "$candidate" >/dev/null 2>&1; then
      ENGINE="$candidate"
      break
    fi
  done
fi
if [[ -z "$ENGINE" ]]; then
  echo "images/build.sh: neither docker nor podman is installed (or on PATH); install one, or set CONTAINER_ENGINE to its path" >&2
  exit 1
fi
if ! command -v "$ENGINE" >/dev/null 2>&1; then
  echo "images/build.sh: CONTAINER_ENGINE=$ENGINE is not an executable on PATH" >&2
  exit 1
fi

APP_IMAGE="$REGISTRY/channelapp:$TAG"
OPERATOR_IMAGE="$REGISTRY/channelapp-operator:$TAG"

build() {
  local image="$1" dockerfile="$2" started=$SECONDS
  echo "=== [$(date +%H:%M:%S)] $ENGINE build --file $dockerfile --tag $image ."
  "$ENGINE" build --file "$dockerfile" --build-arg "VERSION=$TAG" --tag "$image" .
  echo "=== [$(date +%H:%M:%S)] built $image in $((SECONDS - started))s"
}

echo "=== building with $ENGINE: $APP_IMAGE, $OPERATOR_IMAGE"
build "$APP_IMAGE" images/app/Dockerfile
build "$OPERATOR_IMAGE" images/operator/Dockerfile
echo "=== done. Push with: $ENGINE push $APP_IMAGE && $ENGINE push $OPERATOR_IMAGE"
