#!/usr/bin/env bash
# Build the object-storage test servers (SeaweedFS's `weed` for S3 and
# fake-gcs-server for GCS) from the Go module proxy into a cache directory
# keyed by the pinned versions. Only what is missing is built; a fully cached
# run takes well under a second.
#
#   bash hack/objectstore/build.sh                 # both
#   bash hack/objectstore/build.sh weed            # just this one
#   bash hack/objectstore/build.sh --print-bin-dir # where the binaries land
#   bash hack/objectstore/build.sh --print-dir     # the versioned cache dir
#
# Components: weed fake-gcs-server
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"

CACHE_ROOT="${WHISPERFT_CACHE:-$HOME/.cache/whisperft}/objectstore"
KEY="$(sha256sum "$HERE/versions.env" | cut -c1-12)"
DIR="$CACHE_ROOT/$KEY"
BIN="$DIR/bin"
ALL=(weed fake-gcs-server)

case "${1:-}" in
--print-bin-dir) echo "$BIN"; exit 0 ;;
--print-dir) echo "$DIR"; exit 0 ;;
-h | --help) sed -n '2,12p' "${BASH_SOURCE[0]}"; exit 0 ;;
esac

command -v go >/dev/null || { echo "build.sh: 'go' is not on PATH (Go >= 1.26 is needed)" >&2; exit 1; }
mkdir -p "$BIN"
# Static, reproducible binaries; GOMODCACHE/GOCACHE stay at Go's defaults so
# every run and every checkout share them (and the control plane's build).
# Only the module proxy is used (no VCS fallback).
export CGO_ENABLED=0 GOFLAGS="-buildvcs=false -trimpath" GOPROXY="${GOPROXY:-https://proxy.golang.org}"
export GONOSUMDB="" GOTOOLCHAIN=local
NICE=(nice -n "${BUILD_NICE:-10}")

log() { printf '[objectstore] %s\n' "$*" >&2; }

# module_dir MODULE@VERSION -> prints the module's directory in the module cache.
module_dir() {
	go mod download -json "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error","no Dir")))'
}

# fake-gcs-server has no replace directives: `go install` builds it as is.
build_fake-gcs-server() {
	local tmp
	tmp="$(mktemp -d "$DIR/.gobin.XXXXXX")"
	GOBIN="$tmp" "${NICE[@]}" go install -ldflags "-s -w" \
		"github.com/fsouza/fake-gcs-server@$FAKE_GCS_SERVER_VERSION"
	mv "$tmp/fake-gcs-server" "$BIN/fake-gcs-server"
	rm -rf "$tmp"
}

# SeaweedFS's go.mod has a replace directive (go-bip39), so `go install` refuses
# it; building inside the (read-only) module directory as the main module
# honours the replace and uses its own go.sum. Nothing is written there.
build_weed() {
	local d
	d="$(module_dir "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION")"
	"${NICE[@]}" go build -C "$d" -ldflags "-s -w" -o "$BIN/weed.tmp" ./weed
	mv "$BIN/weed.tmp" "$BIN/weed"
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
for c in "${wanted[@]}"; do
	case " ${ALL[*]} " in *" $c "*) ;; *) echo "build.sh: unknown component '$c' (known: ${ALL[*]})" >&2; exit 2 ;; esac
	[[ -x "$BIN/$c" ]] && continue
	run "$c"
done
echo "$BIN" >"$DIR/bin-dir"
log "ready: $BIN"
