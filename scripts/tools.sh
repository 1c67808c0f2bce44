#!/usr/bin/env bash
# Builds the pinned real components (kube-apiserver, kube-controller-manager, kubectl, etcd, opa,
# kustomize, helm, kubeconform, conftest, gator, the OCI registry) from their Go modules into a cache outside the clone,
# keyed by version, and reuses them when present.
#
#   scripts/tools.sh            build what is missing, print the bin directory
#   scripts/tools.sh path NAME  print the path of one tool (building it if missing)
#
# Cache: $PUSHGATE_CACHE (default ~/.cache/pushgate). Go's module and build caches live
# there too, so a fresh clone on the same machine starts in seconds.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tools.versions
source "$here/tools.versions"

cache=${PUSHGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pushgate}
bindir="$cache/bin"
mkdir -p "$bindir" "$cache/src" "$cache/logs"
export GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build" GOTOOLCHAIN=local GOFLAGS=-mod=mod
export CGO_ENABLED=0

die() { echo "tools.sh: $*" >&2; exit 1; }

prereqs_checked=""
check_prereqs() {
  [ -n "$prereqs_checked" ] && return 0
  command -v go >/dev/null 2>&1 ||
    die "Go >= $GO_MIN_VERSION is required to build the test tools and 'go' is not on PATH"
  local have
  have=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
  if [ "$(printf '%s\n%s\n' "$GO_MIN_VERSION" "$have" | sort -V | head -1)" != "$GO_MIN_VERSION" ]; then
    die "Go >= $GO_MIN_VERSION is required, found go$have"
  fi
  local proxy
  proxy=$(go env GOPROXY | cut -d, -f1)
  case "$proxy" in off|direct|"") die "GOPROXY is '$proxy': a Go module proxy is required to build the tools";; esac
  curl -fsS --max-time 20 -o /dev/null "$proxy/github.com/open-policy-agent/opa/@v/$OPA_VERSION.info" ||
    die "the Go module proxy $proxy is unreachable (needed once to build the tools)"
  prereqs_checked=1
}

# kube-apiserver and kube-controller-manager: k8s.io/kubernetes requires its staging modules at
# v0.0.0 with local replaces, so build through a wrapper module that replaces each with its
# published v0.<minor>.<patch>.
k8s_staging="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go
  cloud-provider cluster-bootstrap code-generator component-base component-helpers
  controller-manager cri-api cri-client cri-streaming csi-translation-lib
  dynamic-resource-allocation endpointslice externaljwt kms kube-aggregator
  kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics mount-utils
  pod-security-admission sample-apiserver streaming"

k8s_module() {
  local dir="$cache/src/kubernetes-$KUBERNETES_VERSION" staging="v0.${KUBERNETES_VERSION#v1.}"
  if [ ! -f "$dir/go.mod" ]; then
    mkdir -p "$dir"
    {
      echo "module pushgate.local/k8stools"
      echo
      echo "go $GO_MIN_VERSION"
      echo
      echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
      echo
      for m in $k8s_staging; do echo "replace k8s.io/$m => k8s.io/$m $staging"; done
    } > "$dir/go.mod.tmp"
    mv "$dir/go.mod.tmp" "$dir/go.mod"
  fi
  echo "$dir"
}

build_k8s() {  # $1 = command name
  local dir minor ver=$KUBERNETES_VERSION
  dir=$(k8s_module)
  minor=$(echo "$ver" | cut -d. -f2)
  local pkg=k8s.io/component-base/version
  (cd "$dir" && go build -trimpath -o "$2" \
    -ldflags "-s -w -X $pkg.gitVersion=$ver -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z" \
    "k8s.io/kubernetes/cmd/$1")
}

build_etcd() {
  local dir="$cache/src/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  [ -f "$dir/go.mod" ] || printf 'module pushgate.local/etcdtool\n\ngo %s\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$GO_MIN_VERSION" "$ETCD_VERSION" > "$dir/go.mod"
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$1" go.etcd.io/etcd/server/v3)
}

go_install() {  # $1 = module path of the main package, $2 = version, $3 = output
  local tmpbin
  tmpbin=$(mktemp -d "$cache/src/gobin.XXXXXX")
  GOBIN="$tmpbin" GOFLAGS= go install -trimpath -ldflags "-s -w" "$1@$2"
  mv "$tmpbin"/* "$3"  # the one binary the package builds
  rmdir "$tmpbin"
}

tool_path() {  # name -> cached path
  case "$1" in
    kube-apiserver|kube-controller-manager|kubectl) echo "$bindir/$1-$KUBERNETES_VERSION";;
    etcd) echo "$bindir/etcd-$ETCD_VERSION";;
    opa) echo "$bindir/opa-$OPA_VERSION";;
    kustomize) echo "$bindir/kustomize-$KUSTOMIZE_VERSION";;
    kubeconform) echo "$bindir/kubeconform-$KUBECONFORM_VERSION";;
    conftest) echo "$bindir/conftest-$CONFTEST_VERSION";;
    helm) echo "$bindir/helm-$HELM_VERSION";;
    gator) echo "$bindir/gator-$GATEKEEPER_VERSION";;
    registry) echo "$bindir/registry-$DISTRIBUTION_VERSION";;
    *) die "unknown tool '$1'";;
  esac
}

ensure() {  # name
  local out
  out=$(tool_path "$1")
  [ -x "$out" ] && return 0
  check_prereqs
  local log="$cache/logs/build-$1.log" tmp="$out.tmp.$$"
  echo "tools.sh: building $1 -> $out (first time only; log: $log)" >&2
  local start=$SECONDS
  if ! (
    case "$1" in
      kube-apiserver|kube-controller-manager|kubectl) build_k8s "$1" "$tmp";;
      etcd) build_etcd "$tmp";;
      opa) go_install github.com/open-policy-agent/opa "$OPA_VERSION" "$tmp";;
      kustomize) go_install sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION" "$tmp";;
      kubeconform) go_install github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION" "$tmp";;
      conftest) go_install github.com/open-policy-agent/conftest "$CONFTEST_VERSION" "$tmp";;
      helm) go_install helm.sh/helm/v3/cmd/helm "$HELM_VERSION" "$tmp";;
      gator) go_install github.com/open-policy-agent/gatekeeper/v3/cmd/gator "$GATEKEEPER_VERSION" "$tmp";;
      registry) go_install github.com/distribution/distribution/v3/cmd/registry "$DISTRIBUTION_VERSION" "$tmp";;
    esac
  ) > "$log" 2>&1; then
    rm -f "$tmp"
    tail -n 20 "$log" >&2
    die "building $1 failed; full log in $log"
  fi
  mv -f "$tmp" "$out"
  echo "tools.sh: built $1 in $((SECONDS - start)) s" >&2
}

all_tools="opa kustomize helm etcd kube-apiserver kube-controller-manager kubectl kubeconform conftest gator registry"

# One build at a time per cache: parallel CI runs and a developer's shell share it.
exec 9> "$cache/.lock"
flock 9

case "${1:-all}" in
  path) ensure "$2"; tool_path "$2";;
  all) for t in $all_tools; do ensure "$t"; done; echo "$bindir";;
  *) die "usage: tools.sh [all | path NAME]";;
esac
