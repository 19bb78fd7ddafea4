#!/usr/bin/env bash
# Pin the Dockerfile's base images to the digest their tag has now.
#
#   hack/pin-images.sh [DOCKERFILE]
#
# Resolves the multi-architecture index digest of each `ARG *_IMAGE=repo:tag`
# (an existing @sha256 is replaced) with `crane digest`, or
# `docker buildx imagetools inspect` when crane is missing, and rewrites the
# ARG as repo:tag@sha256:... Needs a reachable registry; review the diff.
set -euo pipefail
dockerfile=${1:-Dockerfile}

resolve() {
  if command -v crane >/dev/null; then
    crane digest "$1"
  elif command -v docker >/dev/null; then
    docker buildx imagetools inspect "$1" --format '{{json .Manifest.Digest}}' | tr -d '"'
  else
    echo "pin-images: neither crane nor docker is installed" >&2
    return 1
  fi
}

grep -E '^ARG [A-Z_]+_IMAGE=' "$dockerfile" | while IFS= read -r line; do
  name=${line#ARG }; name=${name%%=*}
  ref=${line#*=}; ref=${ref%%@*}
  digest=$(resolve "$ref")
  if [[ ! $digest =~ ^sha256:[0-9a-f]{64}$ ]]; then
    echo "pin-images: $ref: unexpected digest '$digest'" >&2
    exit 1
  fi
  sed -i -E "s|^ARG ${name}=.*$|ARG ${name}=${ref}@${digest}|" "$dockerfile"
  echo "$name=$ref@$digest"
done
