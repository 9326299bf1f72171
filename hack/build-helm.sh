#!/usr/bin/env bash
# Builds (or reuses) helm, for the chart tests, from its Go module with the machine's Go.
# Output: the path of the helm binary, on the last line of stdout.
# Cache:  ~/.cache/goldenimage/helm-<version>/ (override the root with GOLDENIMAGE_CACHE).
set -euo pipefail

version=${HELM_VERSION:-v4.3.1}
out="${GOLDENIMAGE_CACHE:-$HOME/.cache/goldenimage}/helm-$version"
if [[ -x "$out/helm" ]]; then
  echo "$out/helm"
  exit 0
fi
if [[ -n ${GOLDENIMAGE_NO_BUILD:-} ]]; then
  echo "no cached helm in $out (GOLDENIMAGE_NO_BUILD is set)" >&2
  exit 1
fi
command -v go >/dev/null || { echo "Go is required to build helm (https://go.dev/dl/)" >&2; exit 1; }
# Go 1.21 and later fetch the toolchain the module asks for (through the module proxy).
[[ $(go version) =~ go1\.([0-9]+) ]] && (( BASH_REMATCH[1] >= 21 )) \
  || { echo "Go 1.21 or newer is required to build helm (found: $(go version))" >&2; exit 1; }
echo "building helm $version into $out (a few minutes, once)" >&2
tmp="$out.tmp.$$"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"
GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$version" \
  "helm.sh/helm/v4/cmd/helm@$version"
rm -rf "$out"
mv "$tmp" "$out"
echo "$out/helm"
