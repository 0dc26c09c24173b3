#!/usr/bin/env bash
# Build the real test node's own parts into the same cache as build.sh:
#
#   kubelet, kube-proxy   (k8s.io/kubernetes, ./node: a module of its own so ./kubernetes stays put)
#   coredns               (github.com/coredns/coredns from the Go module proxy; Debian has none)
#   pause image           (build/pause/linux/pause.c of the Kubernetes module, gcc -static, umoci)
#
# containerd, runc, the CNI plugins, podman, umoci and mmdebstrap come from Debian (.ci/run).
# Idempotent like build.sh: a stamp per output records what it was built from.
# Prints the directory holding the binaries on its last line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
K8S_VERSION="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/node/go.mod")"
COREDNS_VERSION="${COREDNS_VERSION:-v1.12.1}"
CACHE="${CHANNELAPP_CACHE:-$HOME/.cache/channelapp}"
BIN="$CACHE/k8s-$K8S_VERSION/bin"
IMAGES="$CACHE/images"
mkdir -p "$BIN" "$IMAGES"

export CGO_ENABLED=0 GOFLAGS="-buildvcs=false -trimpath" GOTOOLCHAIN=local
for tool in go gcc umoci; do
  command -v "$tool" >/dev/null || { echo "build-node.sh: $tool is required (Debian: apt-get install golang gcc umoci)" >&2; exit 1; }
done

log() { printf '[node-tools %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

k8s_minor="${K8S_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
K8S_LDFLAGS=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  K8S_LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  K8S_LDFLAGS+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

fresh() { [[ -e "$1" && -f "$2" && "$(cat "$2")" == "$3" ]]; }

# build NAME PACKAGE LDFLAGS (from ./node)
build() {
  local name="$1" pkg="$2" ldflags="-s -w ${3:-}" stamp="$BIN/.$1.stamp" want
  want="$(cat "$here/node/go.mod" "$here/node/go.sum" <(echo "$ldflags") | sha256sum | cut -c1-16)-$(go env GOVERSION)"
  if fresh "$BIN/$name" "$stamp" "$want"; then log "$name: up to date"; return; fi
  log "$name: building $pkg"
  local t0=$SECONDS
  (cd "$here/node" && go build -ldflags="$ldflags" -o "$BIN/$name.tmp" "$pkg")
  mv "$BIN/$name.tmp" "$BIN/$name"
  echo "$want" >"$stamp"
  log "$name: built in $((SECONDS - t0))s"
}

build_coredns() {
  local stamp="$BIN/.coredns.stamp" want
  want="$COREDNS_VERSION-$(go env GOVERSION)"
  if fresh "$BIN/coredns" "$stamp" "$want"; then log "coredns: up to date"; return; fi
  log "coredns: building github.com/coredns/coredns@$COREDNS_VERSION"
  local t0=$SECONDS tmp
  tmp="$(mktemp -d)"
  GOBIN="$tmp" go install -ldflags="-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
  mv "$tmp/coredns" "$BIN/coredns"
  rmdir "$tmp"
  echo "$want" >"$stamp"
  log "coredns: built in $((SECONDS - t0))s"
}

# The pause image as an OCI archive (registry.k8s.io/pause:3.10, the name kubelet asks for).
build_pause() {
  local src out="$IMAGES/pause.oci.tar" want
  src="$(cd "$here/node" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c"
  want="$(sha256sum <"$src" | cut -c1-16)-$(gcc -dumpfullversion)"
  if fresh "$out" "$out.stamp" "$want"; then log "pause image: up to date"; return; fi
  log "pause image: compiling $src"
  local work
  work="$(mktemp -d)"
  gcc -Os -static -DVERSION=channelapp -o "$work/pause" "$src"
  strip "$work/pause"
  umoci init --layout "$work/oci"
  umoci new --image "$work/oci:3.10"
  umoci unpack --rootless --image "$work/oci:3.10" "$work/bundle" >/dev/null
  install -m 0755 "$work/pause" "$work/bundle/rootfs/pause"
  umoci repack --image "$work/oci:3.10" "$work/bundle"
  umoci config --image "$work/oci:3.10" --config.entrypoint /pause --config.user 65535:65535 \
    --architecture amd64 --os linux
  umoci gc --layout "$work/oci"
  # containerd names the image from this annotation when it imports the archive.
  python3 - "$work/oci/index.json" <<'EOF'
import json, sys
path = sys.argv[1]
index = json.load(open(path))
for m in index["manifests"]:
    m.setdefault("annotations", {})["io.containerd.image.name"] = "registry.k8s.io/pause:3.10"
json.dump(index, open(path, "w"))
EOF
  tar -C "$work/oci" -cf "$out.tmp" .
  mv "$out.tmp" "$out"
  rm -rf "$work"
  echo "$want" >"$out.stamp"
  log "pause image: $out"
}

t_all=$SECONDS
log "Kubernetes $K8S_VERSION node parts; cache $BIN"
(cd "$here/node" && go mod download)
build kubelet k8s.io/kubernetes/cmd/kubelet "$K8S_LDFLAGS"
build kube-proxy k8s.io/kubernetes/cmd/kube-proxy "$K8S_LDFLAGS"
build_coredns
build_pause
log "node parts ready in $((SECONDS - t_all))s"
echo "$BIN"
