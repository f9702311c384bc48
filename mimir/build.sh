#!/usr/bin/env bash
# Build Grafana Mimir (the scale-out store of the `scale` profile and of the Mimir
# integration test) from its Go module, or reuse the build of the same version. Prints
# the binary's path on stdout.
#
# Mimir's module cannot be `go install`ed (its go.mod has replace directives): the
# module is downloaded from the Go module proxy and built inside a copy of it. A few
# minutes on 2 cores (3 with the downloads here); builds are kept by version in .cache/mimir/ (ignored by git) and,
# so that a fresh clone on the same machine does not rebuild, in ~/.cache/trading-telemetry/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
# The proxy here serves Mimir's main branch as a pseudo-version (its release tags are not
# semantic versions); this one is main of 2026-04-23.
version=v1.3.1-0.20260423142704-aced80d74930
key=$( (echo "$version"; go version) | sha256sum | cut -c1-16)
local_dir="$root/.cache/mimir/$key"
shared_dir="${XDG_CACHE_HOME:-$HOME/.cache}/trading-telemetry/mimir/$key"

if [[ -x "$local_dir/mimir" ]]; then
  echo "$local_dir/mimir"
  exit 0
fi
if [[ -x "$shared_dir/mimir" ]]; then
  mkdir -p "$local_dir"
  cp "$shared_dir/mimir" "$local_dir/mimir"
  echo "$local_dir/mimir"
  exit 0
fi

command -v go >/dev/null || { echo "mimir/build.sh: Go is needed to build Mimir" >&2; exit 1; }
echo "mimir/build.sh: building Mimir $version (a few minutes the first time)" >&2
module=$(go mod download -json "github.com/grafana/mimir@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[[ -d "$module" ]] || { echo "mimir/build.sh: the module proxy did not serve Mimir $version" >&2; exit 1; }
mkdir -p "$root/.cache"
work=$(mktemp -d "$root/.cache/mimir-build.XXXXXX")
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
cp -r "$module/." "$work/src"
chmod -R u+w "$work/src"
(cd "$work/src" && CGO_ENABLED=0 go build -o "$work/mimir" ./cmd/mimir) >&2
mkdir -p "$local_dir" "$shared_dir"
cp "$work/mimir" "$shared_dir/mimir.tmp" && mv "$shared_dir/mimir.tmp" "$shared_dir/mimir"
cp "$work/mimir" "$local_dir/mimir"
echo "$local_dir/mimir"
