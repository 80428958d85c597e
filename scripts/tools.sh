#!/usr/bin/env bash
# Builds the servers the stack deploys, at the pinned versions, from their Go modules; prints `NAME VERSION PATH`.
#
# `bash scripts/tools.sh` (run by `make test`, so by .ci/run). Each tool is built once into
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

# `go install MODULE/cmd/BIN@VERSION`, or, for a module whose go.mod has replace directives (which
# `go install pkg@version` refuses), a throwaway module that requires it with the same replaces:
# the same build list either way.
build() {
  local name="$1" module="$2" module_version="$3" release="$4" out="$5"; shift 5
  local src gomod ldflags bin
  src="$(go mod download -json "$module@$module_version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  gomod="$src/go.mod"
  ldflags="$(ldflags_for "$name" "$release" "$module_version")"
  if ! grep -q '=>' "$gomod"; then
    for bin in "$@"; do
      GOBIN="$out" go install -trimpath -tags netgo -ldflags "$ldflags" "$module/cmd/$bin@$module_version"
    done
    return
  fi
  local work="$out/.module-build"
  mkdir -p "$work"
  (
    cd "$work"
    go mod init "observability-tools/$name" >/dev/null 2>&1
    # replace directives, single-line or in a block: `[replace] OLD [V] => NEW [V]`
    sed -n 's/^\(replace[[:space:]]\+\)\?[[:space:]]*\([^[:space:](]\+\)\([[:space:]]\+v[^[:space:]]*\)\?[[:space:]]\+=>[[:space:]]\+\([^[:space:]]\+\)\([[:space:]]\+v[^[:space:]]*\)\?[[:space:]]*$/\2\3 \4\5/p' "$gomod" |
      while read -r old a b c; do
        if [[ "$a" == v* ]]; then old="$old@$a"; new="$b"; nv="$c"; else new="$a"; nv="$b"; fi
        go mod edit -replace "$old=$new${nv:+@$nv}"
      done
    go get "$module@$module_version" >/dev/null 2>&1 || go get "$module@$module_version"
    for bin in "$@"; do
      go build -trimpath -tags netgo -ldflags "$ldflags" -o "$out/$bin" "$module/cmd/$bin"
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
