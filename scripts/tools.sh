#!/usr/bin/env bash
# Builds the servers the stack deploys, at the pinned versions, from their Go modules; prints `NAME VERSION PATH`.
#
# `bash scripts/tools.sh` (run by `make test`, so by .ci/run). Each tool is built once (with
# `go install MODULE/cmd/NAME@VERSION`, or `go build` in the module's own sources where go install
# cannot work: see build()) into
# ${OBSERVABILITY_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/observability-tools}/NAME-VERSION/,
# outside the repository; a second run finds it there and builds nothing. The tests and benchmarks
# run these binaries (tests/tools.py), and tests/program/test_versions.py fails when a version
# here and the image tag in Pulumi.yaml disagree: the version tested is the version deployed.
set -euo pipefail

# The pins: one row per Go module. The module versions are approved releases of the Go package
# list this project may use. RELEASE is the version the binary reports and the image is tagged
# with: `VERSION` reads it from the module's own VERSION file (as upstream's promu does);
# Jaeger tags each release twice on one commit (v1.75.0 and v2.12.0 are 1c5531b15d6a), and the
# Go module carries the v1 tag, so its v2 release is written here.
#
# NAME          MODULE                               MODULE_VERSION  RELEASE   BINARIES
TOOLS="
prometheus      github.com/prometheus/prometheus     v0.316.0        VERSION   prometheus promtool
alertmanager    github.com/prometheus/alertmanager   v0.34.0         VERSION   alertmanager amtool
jaeger          github.com/jaegertracing/jaeger      v1.75.0         v2.12.0   jaeger
actionlint      github.com/rhysd/actionlint          v1.7.12         v1.7.12   actionlint
"

CACHE="${OBSERVABILITY_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/observability-tools}"

if ! command -v go >/dev/null 2>&1; then
  echo "error: Go is not installed (needed to build Prometheus, Alertmanager, Jaeger and actionlint at the pinned versions; install Go 1.26 or newer)" >&2
  exit 1
fi
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--buildvcs=false}"
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9  # one build at a time, also across concurrent test runs

# The folder of an already built module version (its .module file names it), or nothing.
built_dir() {
  local module="$1" version="$2" marker
  for marker in "$CACHE"/*/.module; do
    [ -e "$marker" ] || continue
    if [ "$(cat "$marker")" = "$module $version" ]; then dirname "$marker"; return 0; fi
  done
}

# Upstream's version stamp (promu's ldflags for the Prometheus projects, the Makefile's for Jaeger).
ldflags_for() {
  local name="$1" release="$2" module_version="$3" stamp="observability-tools"
  local date; date="$(date -u +%Y%m%d-%H:%M:%S)"
  case "$name" in
    prometheus|alertmanager)
      local v="github.com/prometheus/common/version"
      echo "-X $v.Version=${release#v} -X $v.Revision=$module_version -X $v.Branch=HEAD -X $v.BuildUser=$stamp -X $v.BuildDate=$date" ;;
    jaeger)
      local v="github.com/jaegertracing/jaeger/internal/version"
      echo "-X $v.latestVersion=$release -X $v.commitSHA=$module_version -X $v.date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" ;;
    *) echo "" ;;
  esac
}

# Generated files a module's sources lack (its release build makes them): Alertmanager embeds its
# web UI (`ui/app/dist`, an npm and Elm build); a placeholder page stands in, the API is complete.
prepare_source() {
  case "$1" in
    alertmanager)
      mkdir -p ui/app/dist
      printf '%s\n' '<!doctype html><title>Alertmanager</title><p>Web UI not built in this build (scripts/tools.sh); the API is complete.</p>' > ui/app/dist/index.html ;;
  esac
}

needs_source_build() {
  # replace directives (which `go install pkg@version` refuses) or generated files to add
  grep -q '=>' "$1/go.mod" || [ "$2" = "alertmanager" ]
}

# `go install MODULE/cmd/BIN@VERSION`; where that cannot work (see needs_source_build), `go build`
# in a copy of the module's own sources: its own go.mod, go.sum and replaces, so the same build list.
build() {
  local name="$1" module="$2" module_version="$3" release="$4" out="$5"; shift 5
  local src ldflags bin
  src="$(go mod download -json "$module@$module_version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  ldflags="$(ldflags_for "$name" "$release" "$module_version")"
  if ! needs_source_build "$src" "$name"; then
    for bin in "$@"; do
      GOBIN="$out" go install -trimpath -tags netgo -ldflags "$ldflags" "$module/cmd/$bin@$module_version"
    done
    return
  fi
  local work="$out/.src"
  cp -R "$src" "$work"
  chmod -R u+w "$work"
  (
    cd "$work"
    prepare_source "$name"
    for bin in "$@"; do
      go build -trimpath -tags netgo -ldflags "$ldflags" -o "$out/$bin" "./cmd/$bin"
    done
  )
  rm -rf "$work"
}

while read -r name module module_version release binaries; do
  [ -n "$name" ] || continue
  # shellcheck disable=SC2086
  set -- $binaries
  dir="$(built_dir "$module" "$module_version")"
  if [ -z "$dir" ]; then
    if [ "$release" = "VERSION" ]; then
      src="$(go mod download -json "$module@$module_version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
      release="v$(tr -d '[:space:]' < "$src/VERSION")"
    fi
    dir="$CACHE/$name-$release"
    tmp="$CACHE/.building-$name-$release"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    echo "building $name $release from $module@$module_version (once; cached in $dir)" >&2
    started=$SECONDS
    build "$name" "$module" "$module_version" "$release" "$tmp" "$@"
    echo "$release" > "$tmp/.release"
    echo "$module $module_version" > "$tmp/.module"
    rm -rf "$dir"
    mv "$tmp" "$dir"
    echo "built $name $release in $((SECONDS - started)) s" >&2
  fi
  release="$(cat "$dir/.release")"
  for bin in "$@"; do
    echo "$bin $release $dir/$bin"
  done
done <<< "$TOOLS"
