#!/usr/bin/env bash
# Build our Collector from builder-config.yaml with the OpenTelemetry Collector Builder,
# or reuse the build of an identical manifest. Prints the binary's path on stdout.
#
# Builds are kept by manifest hash in .cache/otelcol/ (ignored by git) and, so that a
# fresh clone on the same machine does not rebuild, in ~/.cache/trading-telemetry/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
manifest="$here/builder-config.yaml"
builder_version=v0.159.0
key=$( (cat "$manifest"; echo "$builder_version"; go version) | sha256sum | cut -c1-16)
local_dir="$root/.cache/otelcol/$key"
shared_dir="${XDG_CACHE_HOME:-$HOME/.cache}/trading-telemetry/otelcol/$key"
binary=otelcol-trading

if [[ -x "$local_dir/$binary" ]]; then
  echo "$local_dir/$binary"
  exit 0
fi
if [[ -x "$shared_dir/$binary" ]]; then
  mkdir -p "$local_dir"
  cp "$shared_dir/$binary" "$local_dir/$binary"
  echo "$local_dir/$binary"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: Go is needed to build the Collector" >&2; exit 1; }
tools="$root/.cache/bin"
if [[ ! -x "$tools/builder-$builder_version" ]]; then
  echo "build.sh: installing the Collector Builder $builder_version" >&2
  GOBIN="$tools" go install "go.opentelemetry.io/collector/cmd/builder@$builder_version" >&2
  mv "$tools/builder" "$tools/builder-$builder_version"
fi

work=$(mktemp -d "$root/.cache/otelcol-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "build.sh: building the Collector (a few minutes the first time)" >&2
CGO_ENABLED=0 "$tools/builder-$builder_version" --config="$manifest" --output-path="$work" >&2
mkdir -p "$local_dir" "$shared_dir"
cp "$work/$binary" "$shared_dir/$binary"
mv "$work/$binary" "$local_dir/$binary"
echo "$local_dir/$binary"
