# Sourced by the build scripts of the servers the tests run (prometheus/build.sh,
# thanos/build.sh, jaeger/build.sh): each server is built with Go from its module, and the
# build is kept by key (its version, its build flags and `go version`) in
# .cache/NAME/KEY/ (ignored by git) and, so that a fresh clone on the same machine does
# not rebuild, in ~/.cache/trading-telemetry/NAME/KEY/. The scripts print the binaries'
# paths on stdout, one a line, and their progress on stderr.
#
# The sourcing script sets `root` (the repository) and `me` (its name, for messages).

# gobuild_key VERSION FLAGS...: the cache key of a build. Call it after exporting any
# GOTOOLCHAIN, so that `go version` names the toolchain that really builds.
gobuild_key() {
  command -v go >/dev/null || { echo "$me: Go is needed to build this server" >&2; exit 1; }
  (printf '%s\n' "$@"; go version) | sha256sum | cut -c1-16
}

# gobuild_cached NAME KEY BINARY...: print the paths of a kept build and succeed, copying
# it from the shared cache into the repository's if need be; fail if there is none.
gobuild_cached() {
  local name=$1 key=$2 bin
  shift 2
  local local_dir="$root/.cache/$name/$key"
  local shared_dir="${XDG_CACHE_HOME:-$HOME/.cache}/trading-telemetry/$name/$key"
  if ! _gobuild_complete "$local_dir" "$@"; then
    _gobuild_complete "$shared_dir" "$@" || return 1
    _gobuild_install "$local_dir" "$shared_dir" "$@"
  fi
  for bin in "$@"; do echo "$local_dir/$bin"; done
}

# gobuild_workdir NAME: a scratch folder under .cache/ (set in `work`), removed on exit.
gobuild_workdir() {
  mkdir -p "$root/.cache"
  work=$(mktemp -d "$root/.cache/$1-build.XXXXXX")
  # The module cache's copies are read-only.
  trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
}

# gobuild_module MODULE VERSION DEST: download a module from the Go module proxy and copy
# it, writable, to DEST (modules with replace directives are built inside a copy of
# themselves). Says so and stops if the proxy does not serve that version.
gobuild_module() {
  local module=$1 version=$2 dest=$3 json dir
  mkdir -p "$root/.cache"
  if ! json=$(cd "$root/.cache" && GOWORK=off go mod download -json "$module@$version" 2>&1); then
    echo "$me: the Go module proxy did not serve $module@$version:" >&2
    echo "$json" | grep -E '"Error"|^go: ' >&2 || echo "$json" >&2
    exit 1
  fi
  dir=$(echo "$json" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [[ -d "$dir" ]] || { echo "$me: no folder for $module@$version in: $json" >&2; exit 1; }
  cp -r "$dir/." "$dest"
  chmod -R u+w "$dest"
}

# gobuild_store NAME KEY DIR BINARY...: keep the binaries built in DIR under KEY, in the
# shared cache and the repository's, and print their paths.
gobuild_store() {
  local name=$1 key=$2 dir=$3 bin
  shift 3
  local local_dir="$root/.cache/$name/$key"
  local shared_dir="${XDG_CACHE_HOME:-$HOME/.cache}/trading-telemetry/$name/$key"
  _gobuild_install "$shared_dir" "$dir" "$@"
  _gobuild_install "$local_dir" "$dir" "$@"
  for bin in "$@"; do echo "$local_dir/$bin"; done
}

_gobuild_complete() {
  local dir=$1 bin
  shift
  for bin in "$@"; do [[ -x "$dir/$bin" ]] || return 1; done
}

# _gobuild_install DEST SRC BINARY...: copy the binaries into a scratch folder beside
# DEST, then rename it to DEST, so that DEST is either absent or complete. If another
# build got there first, its copy is kept.
_gobuild_install() {
  local dest=$1 src=$2 bin tmp
  shift 2
  mkdir -p "$(dirname "$dest")"
  tmp=$(mktemp -d "$dest.tmp.XXXXXX")
  for bin in "$@"; do cp "$src/$bin" "$tmp/$bin"; done
  chmod 755 "$tmp"
  if ! mv -T "$tmp" "$dest" 2>/dev/null; then
    rm -rf "$tmp"
    _gobuild_complete "$dest" "$@" || { echo "$me: could not store the build in $dest" >&2; exit 1; }
  fi
}
