#!/usr/bin/env bash
# Build the e2e control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok, KubeRay operator, helm) from the Go module
# proxy into a cache directory keyed by the pinned versions. Only what is
# missing is built; a fully cached run takes well under a second.
#
#   bash hack/controlplane/build.sh                 # everything
#   bash hack/controlplane/build.sh helm kwok       # just these
#   bash hack/controlplane/build.sh --print-bin-dir # where the binaries land
#   bash hack/controlplane/build.sh --print-dir     # the versioned cache dir
#
# Components: helm etcd kube kwok kuberay (kube = apiserver, controller-manager,
# scheduler and kubectl, built in one go so they share compiled packages).
# Assets (KubeRay CRDs, kwok stages) are copied out of the module cache into
# <dir>/assets/ alongside.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"

CACHE_ROOT="${WHISPERFT_CACHE:-$HOME/.cache/whisperft}/controlplane"
KEY="$(sha256sum "$HERE/versions.env" | cut -c1-12)"
DIR="$CACHE_ROOT/$KEY"
BIN="$DIR/bin"
ASSETS="$DIR/assets"
SRC="$DIR/src"
ALL=(helm etcd kube kwok kuberay)

case "${1:-}" in
--print-bin-dir) echo "$BIN"; exit 0 ;;
--print-dir) echo "$DIR"; exit 0 ;;
-h | --help) sed -n '2,16p' "${BASH_SOURCE[0]}"; exit 0 ;;
esac

command -v go >/dev/null || { echo "build.sh: 'go' is not on PATH (Go >= 1.26 is needed)" >&2; exit 1; }
mkdir -p "$BIN" "$ASSETS" "$SRC"
# Static binaries; GOMODCACHE/GOCACHE stay at Go's defaults so every run and
# every checkout share them. Only the module proxy is used (no VCS fallback).
export CGO_ENABLED=0 GOFLAGS="-buildvcs=false -trimpath" GOPROXY="${GOPROXY:-https://proxy.golang.org}"
export GONOSUMDB="" GOTOOLCHAIN=local
NICE=(nice -n "${BUILD_NICE:-10}")

log() { printf '[controlplane] %s\n' "$*" >&2; }

# module_dir MODULE@VERSION -> prints the module's directory in the module cache.
module_dir() {
	go mod download -json "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error","no Dir")))'
}

# have NAME... -> true when every named binary is in $BIN.
have() {
	local b
	for b in "$@"; do [[ -x "$BIN/$b" ]] || return 1; done
}

# go_install_to PKG@VERSION LDFLAGS -> builds a module without replace
# directives straight from the proxy into $BIN.
go_install_to() {
	local tmp
	tmp="$(mktemp -d "$DIR/.gobin.XXXXXX")"
	GOBIN="$tmp" "${NICE[@]}" go install -ldflags "$2" "$1"
	mv "$tmp"/* "$BIN"/
	rmdir "$tmp"
}

build_helm() {
	have helm && return 0
	go_install_to "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
		"-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
}

build_kwok() {
	have kwok && return 0
	go_install_to "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" \
		"-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
}

build_kuberay() {
	have ray-operator || {
		# The main package is the module root, so `go install` names it ray-operator.
		go_install_to "github.com/ray-project/kuberay/ray-operator@$KUBERAY_VERSION" "-s -w"
	}
}

# etcd's server/go.mod replaces its sibling modules with relative paths, so
# `go install` refuses it; a tiny module of our own that calls etcdmain works.
build_etcd() {
	have etcd && return 0
	local m="$SRC/etcd"
	mkdir -p "$m"
	cat >"$m/go.mod" <<EOF
module whisperft.local/etcd

go 1.26

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
	cat >"$m/main.go" <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
	(cd "$m" && "${NICE[@]}" go mod tidy && "${NICE[@]}" go build -ldflags "-s -w" -o "$BIN/etcd.tmp" . && mv "$BIN/etcd.tmp" "$BIN/etcd")
}

# k8s.io/kubernetes replaces its staging modules (k8s.io/api, ...) with local
# paths; a module of our own requires it and points each staging module at its
# published v0.<minor>.<patch>. The staging list is read from that version's
# go.mod so a version bump needs no edit here.
build_kube() {
	have kube-apiserver kube-controller-manager kube-scheduler kubectl && return 0
	local m="$SRC/kube" v="${KUBERNETES_VERSION#v}" minor staging s
	minor="$(cut -d. -f2 <<<"$v")"
	local stagever="v0.${v#*.}"
	mkdir -p "$m"
	staging="$(curl -fsSL "$GOPROXY/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.mod" | sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p')"
	[[ -n "$staging" ]] || { log "could not read the staging list of k8s.io/kubernetes $KUBERNETES_VERSION"; return 1; }
	{
		printf 'module whisperft.local/kube\n\ngo 1.26\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$KUBERNETES_VERSION"
		for s in $staging; do printf '\t%s => %s %s\n' "$s" "$s" "$stagever"; done
		printf ')\n'
	} >"$m/go.mod"
	local vpkg=k8s.io/component-base/version
	local ld="-s -w -X $vpkg.gitVersion=$KUBERNETES_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=1970-01-01T00:00:00Z"
	ld="$ld -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
	local out="$DIR/.kube-out"
	rm -rf "$out" && mkdir -p "$out"
	# -mod=mod lets go fill go.sum for exactly the packages these commands need.
	(cd "$m" && "${NICE[@]}" go build -mod=mod -ldflags "$ld" -o "$out/" \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
	mv "$out"/* "$BIN"/ && rmdir "$out"
}

# KubeRay CRDs and kwok's stage files ship inside their modules.
extract_assets() {
	local d
	if [[ ! -d "$ASSETS/kuberay-crds" ]]; then
		d="$(module_dir "github.com/ray-project/kuberay/ray-operator@$KUBERAY_VERSION")"
		mkdir -p "$ASSETS/.kuberay-crds" && cp "$d"/config/crd/bases/*.yaml "$ASSETS/.kuberay-crds/"
		chmod -R u+w "$ASSETS/.kuberay-crds" && mv "$ASSETS/.kuberay-crds" "$ASSETS/kuberay-crds"
	fi
	if [[ ! -d "$ASSETS/kwok-stages" ]]; then
		d="$(module_dir "sigs.k8s.io/kwok@$KWOK_VERSION")"
		mkdir -p "$ASSETS/.kwok-stages"
		cp -r "$d/kustomize/stage/." "$ASSETS/.kwok-stages/"
		chmod -R u+w "$ASSETS/.kwok-stages" && mv "$ASSETS/.kwok-stages" "$ASSETS/kwok-stages"
	fi
}

run() {
	local c="$1" start
	start=$(date +%s)
	log "building $c ..."
	"build_$c"
	log "built $c in $(($(date +%s) - start))s"
}

wanted=("$@")
[[ ${#wanted[@]} -gt 0 ]] || wanted=("${ALL[@]}")
declare -A bins=([helm]="helm" [etcd]="etcd" [kube]="kube-apiserver kube-controller-manager kube-scheduler kubectl" [kwok]="kwok" [kuberay]="ray-operator")
for c in "${wanted[@]}"; do
	[[ -n "${bins[$c]:-}" ]] || { echo "build.sh: unknown component '$c' (known: ${ALL[*]})" >&2; exit 2; }
	# shellcheck disable=SC2086
	if have ${bins[$c]}; then continue; fi
	run "$c"
done
case " ${wanted[*]} " in *" kwok "* | *" kuberay "*) extract_assets ;; esac
echo "$BIN" >"$DIR/bin-dir"
log "ready: $BIN"
