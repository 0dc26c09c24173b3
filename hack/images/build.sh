#!/usr/bin/env bash
# Build the images the real test node runs, with podman and no registry, cached by content hash:
#
#   base      Debian bookworm made by mmdebstrap from Debian packages (python3, python3-venv)
#   app       images/app/Dockerfile      with --build-arg BASE_IMAGE=<base>
#   operator  images/operator/Dockerfile with --build-arg BASE_IMAGE=<base>
#   redis     Debian's redis-server (spec.redis.managed.image of the tests)
#   postgres  Debian's PostgreSQL 15, one cluster, trusting the pod network (test database only)
#   django    examples/django/Dockerfile (the chatsite example) on the app image
#   channels4 examples/channels4/Dockerfile (the Channels 4 tutorial's mysite) on the app image
#
# Each image is saved as a docker archive $CACHE/images/<name>-<hash>.tar, where the hash
# covers everything it is built from (script, Dockerfile, sources, base); an archive already
# there is not rebuilt. The image inside is named localhost/channelapp/<name>:<hash>.
# Prints one line per image: NAME REFERENCE ARCHIVE.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
CACHE="${CHANNELAPP_CACHE:-$HOME/.cache/channelapp}"
OUT="$CACHE/images"
SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,python-is-python3,passwd
REDIS_PACKAGES=redis-server
mkdir -p "$OUT"
export CONTAINERS_CONF="$here/containers.conf"

for tool in podman mmdebstrap; do
  command -v "$tool" >/dev/null || { echo "hack/images/build.sh: $tool is required (Debian: apt-get install podman mmdebstrap)" >&2; exit 1; }
done
log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

hash_of() { sha256sum | cut -c1-12; }

# prune NAME TAG: older builds of an image go, from the cache and from podman's store.
prune() {
  local name="$1" tag="$2" old
  for old in "$OUT/$name"-*.tar; do
    [[ -e "$old" && "$old" != "$OUT/$name-$tag.tar" ]] && rm -f "$old"
  done
  podman images --format '{{.Repository}}:{{.Tag}}' "localhost/channelapp/$name" 2>/dev/null |
    grep -vx "localhost/channelapp/$name:$tag" | xargs -r podman rmi --force >/dev/null 2>&1 || true
}
self_hash="$(cat "$here/build.sh" "$here/containers.conf" | hash_of)"

# debian_image NAME PACKAGES USER CMD [HOOK]: a root file system from Debian packages,
# imported; HOOK is an mmdebstrap customize hook ("$1" is the root file system).
debian_image() {
  local name="$1" packages="$2" user="$3" cmd="$4" hook="${5:-true}" tag ref archive
  tag="$(printf '%s\n' "$self_hash" "$SUITE" "$packages" "$user" "$cmd" "$hook" | hash_of)"
  ref="localhost/channelapp/$name:$tag"
  archive="$OUT/$name-$tag.tar"
  if [[ ! -f "$archive" ]]; then
    log "$name: mmdebstrap $SUITE with $packages"
    local t0=$SECONDS work
    work="$(mktemp -d)"
    mmdebstrap --quiet --variant=apt --include="$packages" \
      --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
      --customize-hook="$hook" \
      "$SUITE" "$work/rootfs.tar"
    podman import --change "WORKDIR /tmp" --change "USER $user" --change "CMD $cmd" "$work/rootfs.tar" "$ref" >/dev/null
    podman save --quiet --format docker-archive -o "$archive.tmp" "$ref"
    mv "$archive.tmp" "$archive"
    rm -rf "$work"
    prune "$name" "$tag"
    log "$name: built in $((SECONDS - t0))s"
  else
    podman image exists "$ref" || podman load --quiet -i "$archive" >/dev/null
  fi
  echo "$name $ref $archive"
}

# dockerfile_image NAME DOCKERFILE BASE_REF [CONTEXT]: a Dockerfile on a base image, built in
# CONTEXT (default: the repository root).
dockerfile_image() {
  local name="$1" dockerfile="$2" base="$3" context="${4:-.}" tag ref archive
  tag="$(
    cd "$root"
    { echo "$self_hash $base $context"; git ls-files -s -- "$dockerfile" pyproject.toml README.md app operator .dockerignore "$context"
      git diff HEAD -- "$dockerfile" pyproject.toml README.md app operator .dockerignore "$context"
      git ls-files --others --exclude-standard -- app operator "$context" | xargs -r cat; } | hash_of
  )"
  ref="localhost/channelapp/$name:$tag"
  archive="$OUT/$name-$tag.tar"
  if [[ ! -f "$archive" ]]; then
    log "$name: podman build -f $dockerfile (base $base)"
    local t0=$SECONDS
    # pip reaches the package index only with the host's CA bundle.
    podman build --quiet --pull=never --network=host --build-arg "BASE_IMAGE=$base" \
      -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
      -f "$root/$dockerfile" -t "$ref" "$root/$context" >/dev/null
    podman save --quiet --format docker-archive -o "$archive.tmp" "$ref"
    mv "$archive.tmp" "$archive"
    prune "$name" "$tag"
    log "$name: built in $((SECONDS - t0))s"
  fi
  echo "$name $ref $archive"
}

read -r _ base_ref _ < <(debian_image base "$BASE_PACKAGES" root '["/bin/sh"]')
echo "base $base_ref $OUT/base-${base_ref##*:}.tar"
# The Redis image runs as the operator's runAsUser 999, in a directory it owns.
debian_image redis "$REDIS_PACKAGES" 999 '["redis-server"]'
read -r _ app_ref _ < <(dockerfile_image app images/app/Dockerfile "$base_ref")
echo "app $app_ref $OUT/app-${app_ref##*:}.tar"
dockerfile_image operator images/operator/Dockerfile "$base_ref"
# The test database of the Django example: listens on the pod's address and trusts it (pods
# reach nothing beyond this machine); runs as Debian's postgres user.
debian_image postgres postgresql-15 postgres \
  '["/usr/lib/postgresql/15/bin/postgres", "-D", "/var/lib/postgresql/15/main", "-c", "config_file=/etc/postgresql/15/main/postgresql.conf", "-c", "listen_addresses=*", "-c", "unix_socket_directories=/tmp", "-c", "external_pid_file=/tmp/postgres.pid"]' \
  'echo "host all all 0.0.0.0/0 trust" >> "$1"/etc/postgresql/15/main/pg_hba.conf'
dockerfile_image django examples/django/Dockerfile "$app_ref" examples/django
dockerfile_image channels4 examples/channels4/Dockerfile "$app_ref" examples/channels4
