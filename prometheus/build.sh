#!/usr/bin/env bash
# Build the Prometheus server or Alertmanager that the tests run, with Go from their
# modules, or reuse the build of the same version:
#   bash prometheus/build.sh prometheus     prints the paths of prometheus and promtool
#   bash prometheus/build.sh alertmanager   prints the paths of alertmanager and amtool
# With --cached after the name it only prints the paths of a kept build, and exits 3 if
# there is none (the tests use it: they never build).
# Progress goes to stderr. Builds are kept by version (see .ci/gobuild.sh) in
# .cache/prometheus/ or .cache/alertmanager/ (ignored by git) and in
# ~/.cache/trading-telemetry/. The first build of Prometheus takes 6.5 to 8 minutes on
# 2 cores (8 while other builds share them), Alertmanager's about 2.
#
# Both are built as their .promu.yml files build them (tag netgo, the version stamped with
# -ldflags), from their module's source, which lacks the built web UIs: Prometheus is
# built without the `builtinassets` tag, so its API works but its UI pages (/query,
# /alerts, where / and /graph redirect) answer 500; Alertmanager embeds a placeholder page
# instead of its UI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
me="prometheus/build.sh"
# shellcheck source=../.ci/gobuild.sh
source "$root/.ci/gobuild.sh"
# The modules' go.work files name folders their zips lack.
export GOWORK=off CGO_ENABLED=0

cached_only=
[[ ${2:-} == --cached ]] && cached_only=1
case "${1:-}" in
  prometheus)
    name=prometheus module=github.com/prometheus/prometheus version=v0.316.0 release=3.16.0
    binaries=(prometheus promtool) page=
    ;;
  alertmanager)
    name=alertmanager module=github.com/prometheus/alertmanager version=v0.35.0 release=0.35.0
    binaries=(alertmanager amtool)
    page="<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Alertmanager</title></head>
<body><p>Alertmanager $release was built without its web UI (its Go module does not carry
it); its API, under api/v2/, is what is used.</p></body></html>"
    ;;
  *)
    echo "usage: $0 prometheus|alertmanager [--cached]" >&2
    exit 2
    ;;
esac

tags=netgo
v=github.com/prometheus/common/version
ldflags="-X $v.Version=$release -X $v.Revision=$module@$version -X $v.BuildUser=trading-telemetry"
key=$(gobuild_key "$module@$version" "$tags" "$ldflags" ${page:+"$page"})
gobuild_cached "$name" "$key" "${binaries[@]}" && exit 0
if [[ -n $cached_only ]]; then
  echo "$me: $name $release is not built: run \`make servers\` (or \`bash $me $name\`)" >&2
  exit 3
fi

echo "$me: building $name $release ($module@$version; a few minutes the first time)" >&2
gobuild_workdir "$name"
gobuild_module "$module" "$version" "$work/src"
cd "$work/src"
if [[ $name == prometheus ]]; then
  # `builtinassets` embeds web/ui/embed.go's list of the compressed UI, which its Makefile
  # makes from the UI built with npm; the module has neither.
  if [[ -f web/ui/embed.go ]]; then
    tags=$tags,builtinassets
  else
    echo "$me: the module has no built web UI (web/ui/embed.go): building without it" >&2
  fi
else
  # ui/web.go embeds ui/app/dist, made by npm and absent from the module: a placeholder
  # page at / (dist/elm/) and /ui/ (dist/mantine/). It serves only the compressed
  # index.html.br and .gz (brotli to a client that accepts it, as browsers and curl do);
  # with no brotli encoder at hand, the .br is a brotli stream of one stored
  # (uncompressed) block: its 3-byte header (window 16, a block of MLEN bytes, stored),
  # the page, then the byte of the last, empty, block.
  mkdir -p ui/app/dist/elm ui/app/dist/mantine
  printf '%s\n' "$page" >"$work/index.html"
  n=$(wc -c <"$work/index.html")
  h=$(( (n - 1) << 4 | 1 << 20 ))
  for ui in elm mantine; do
    gzip -9n <"$work/index.html" >"ui/app/dist/$ui/index.html.gz"
    { printf "$(printf '\\x%02x' $((h & 255)) $((h >> 8 & 255)) $((h >> 16)))"
      cat "$work/index.html"
      printf '\x03'; } >"ui/app/dist/$ui/index.html.br"
  done
fi
mkdir -p "$work/bin"
# Go names each binary after its package's folder.
go build -tags "$tags" -ldflags "$ldflags -X $v.BuildDate=$(date -u +%Y%m%d-%H:%M:%S)" \
  -o "$work/bin/" "${binaries[@]/#/./cmd/}" >&2
gobuild_store "$name" "$key" "$work/bin" "${binaries[@]}"
