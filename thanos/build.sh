#!/usr/bin/env bash
# Build Thanos (one binary: receive, query, store, ruler, ...) with Go from its module, or
# reuse the build of the same version. Prints the binary's path on stdout, progress on
# stderr.
#
# Thanos's module cannot be `go install`ed (its go.mod has replace directives): it is
# downloaded from the Go module proxy and built inside a copy of it. Its go.mod asks for a
# newer Go than the machine's, so the go command fetches the approved go1.27.3 toolchain
# from the proxy. About 5.5 minutes on 2 cores; builds are kept by version (see
# .ci/gobuild.sh) in .cache/thanos/ (ignored by git) and in ~/.cache/trading-telemetry/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
me="thanos/build.sh"
# shellcheck source=../.ci/gobuild.sh
source "$root/.ci/gobuild.sh"
export GOTOOLCHAIN=go1.27.3 GOWORK=off CGO_ENABLED=0
module=github.com/thanos-io/thanos version=v0.42.5 release=0.42.5

# The tags of its .promu.yml: without slicelabels (Prometheus's older labels layout, which
# Thanos's code assumes) Receive panics with "makeslice: len out of range" as soon as
# Query connects.
tags=netgo,slicelabels
v=github.com/prometheus/common/version
ldflags="-X $v.Version=$release -X $v.Revision=$module@$version -X $v.BuildUser=trading-telemetry"
key=$(gobuild_key "$module@$version" "$tags" "$ldflags")
gobuild_cached thanos "$key" thanos && exit 0

echo "$me: building Thanos $release ($module@$version; a few minutes the first time)" >&2
gobuild_workdir thanos
gobuild_module "$module" "$version" "$work/src"
mkdir -p "$work/bin"
(cd "$work/src" && go build -tags "$tags" \
  -ldflags "$ldflags -X $v.BuildDate=$(date -u +%Y%m%d-%H:%M:%S)" -o "$work/bin/thanos" ./cmd/thanos) >&2
gobuild_store thanos "$key" "$work/bin" thanos
