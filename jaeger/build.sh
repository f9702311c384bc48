#!/usr/bin/env bash
# Build Jaeger v2 (one binary, all-in-one by default) with Go from its module, or reuse
# the build of the same version. Prints the binary's path on stdout, progress on stderr.
#
# The v2 binary, github.com/jaegertracing/jaeger/cmd/jaeger, lives in the module's v1.x
# versions: v1.75.0 is the release v2.12.0 (Jaeger tags both on one commit; v1.76.0's
# CHANGELOG.md heads that release "v1.75.0 / v2.12.0 (2025-11-18)"), whose image
# docker-compose.yml runs: jaegertracing/jaeger:2.12.0 (tests/integration/test_jaeger.py
# holds the two to the same release). It is added as a tool to a module of its own and
# built there, with the versions its go.mod requires (the machine's Go suffices). About 6
# minutes on 2 cores the first time; builds are kept by version (see .ci/gobuild.sh) in
# .cache/jaeger/ (ignored by git) and in ~/.cache/trading-telemetry/.
#
# The module has no built web UI (cmd/query/app/ui/actual/ is empty): the binary serves
# Jaeger's placeholder page at /, its API under /api/ works.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
me="jaeger/build.sh"
# shellcheck source=../.ci/gobuild.sh
source "$root/.ci/gobuild.sh"
export GOWORK=off CGO_ENABLED=0
module=github.com/jaegertracing/jaeger version=v1.75.0 release=v2.12.0
package=$module/cmd/jaeger

# As its Makefile stamps the version (scripts/makefiles/BuildInfo.mk).
v=$module/internal/version
ldflags="-X $v.latestVersion=$release -X $v.commitSHA=$module@$version"
key=$(gobuild_key "$package@$version" "$ldflags")
gobuild_cached jaeger "$key" jaeger && exit 0

echo "$me: building Jaeger $release ($package@$version; a few minutes the first time)" >&2
gobuild_workdir jaeger
mkdir -p "$work/mod" "$work/bin"
(
  cd "$work/mod"
  go mod init trading-telemetry/jaeger-build
  go get -tool "$package@$version"
  go build -ldflags "$ldflags -X $v.date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" -o "$work/bin/jaeger" "$package"
) >&2
gobuild_store jaeger "$key" "$work/bin" jaeger
