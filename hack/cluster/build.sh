#!/usr/bin/env bash
# Build the test control plane's binaries from Go modules into a cache outside the clone.
#
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (k8s.io/kubernetes, ./kubernetes)
#   helm                                                              (helm.sh/helm/v3, ./helm)
#   kwok                                                              (sigs.k8s.io/kwok, ./kwok)
#
# Idempotent: a binary is rebuilt only when its module's go.mod/go.sum changed (a stamp
# beside the binaries records their hash), so a second run takes seconds.
# Prints the directory holding the binaries on its last line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
K8S_VERSION="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/kubernetes/go.mod")"
CACHE="${CHANNELAPP_CACHE:-$HOME/.cache/channelapp}"
BIN="$CACHE/k8s-$K8S_VERSION/bin"
mkdir -p "$BIN"

export CGO_ENABLED=0 GOFLAGS="-buildvcs=false -trimpath" GOTOOLCHAIN=local
command -v go >/dev/null || { echo "build.sh: the Go toolchain (go) is required" >&2; exit 1; }
command -v etcd >/dev/null || echo "build.sh: note: etcd is not installed (Debian: apt-get install etcd-server); the launcher needs it" >&2

log() { printf '[cluster-tools %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# Version stamps that `make` in each project would set; without them the servers report
# v0.0.0-master and kubectl/helm refuse to parse the version.
k8s_minor="${K8S_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
K8S_LDFLAGS=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  K8S_LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  K8S_LDFLAGS+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
HELM_VERSION="$(awk '$1 == "require" && $2 == "helm.sh/helm/v3" {print $3}' "$here/helm/go.mod")"
HELM_LDFLAGS="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
HELM_LDFLAGS+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor"
HELM_LDFLAGS+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor"
KWOK_VERSION="$(awk '$1 == "require" && $2 == "sigs.k8s.io/kwok" {print $3}' "$here/kwok/go.mod")"
KWOK_LDFLAGS="-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"

# build MODULE_DIR NAME PACKAGE [LDFLAGS]
build() {
  local dir="$here/$1" name="$2" pkg="$3" ldflags="-s -w ${4:-}"
  local stamp="$BIN/.$name.stamp"
  local want
  want="$(cat "$dir/go.mod" "$dir/go.sum" <(echo "$ldflags") | sha256sum | cut -c1-16)-$(go env GOVERSION)"
  if [[ -x "$BIN/$name" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    log "$name: up to date"
    return
  fi
  log "$name: building $pkg (the first build compiles Kubernetes and takes minutes)"
  local t0=$SECONDS
  (cd "$dir" && go build -ldflags="$ldflags" -o "$BIN/$name.tmp" "$pkg")
  mv "$BIN/$name.tmp" "$BIN/$name"
  echo "$want" > "$stamp"
  log "$name: built in $((SECONDS - t0))s"
}

t_all=$SECONDS
log "Kubernetes $K8S_VERSION; cache $BIN"
(cd "$here/kubernetes" && go mod download)
build kubernetes kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$K8S_LDFLAGS"
build kubernetes kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$K8S_LDFLAGS"
build kubernetes kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$K8S_LDFLAGS"
build kubernetes kubectl k8s.io/kubernetes/cmd/kubectl "$K8S_LDFLAGS"
build helm helm helm.sh/helm/v3/cmd/helm "$HELM_LDFLAGS"
build kwok kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_LDFLAGS"
log "all tools ready in $((SECONDS - t_all))s"
echo "$BIN"
