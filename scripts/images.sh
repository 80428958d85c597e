#!/usr/bin/env bash
# Builds, with podman, every image the dev stack runs: our images from their unchanged Dockerfiles,
# on stand-in bases; and stand-ins of the third-party images that can be made here.
#
# `bash scripts/images.sh` (run by `make rehearse`). No registry is reachable on the machines this
# runs on, so nothing is pulled (`--pull=never`); what a Dockerfile names in FROM is made here:
#
#   python:3.11.x-slim-bookworm  a Debian bookworm `debootstrap --variant=minbase` root with Debian's
#                                python3 and pip at the official image's paths (/usr/local/bin/python,
#                                python3, pip, pip3), imported under the exact reference. Built once per
#                                Debian release and Python version, cached outside the repository in
#                                ${OBSERVABILITY_IMAGES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/observability-images}.
#   prom/prometheus, prom/alertmanager, cr.jaegertracing.io/jaegertracing/jaeger
#                                upstream's own Dockerfiles (from the Go module sources) built on a
#                                busybox stand-in of their base, around the binaries scripts/tools.sh
#                                builds at the pinned versions; tagged with the references the stack pins.
#   Grafana, Loki, Alloy/Promtail  not made (no image can be pulled, and their binaries are not
#                                built here): the rehearsal leaves those containers out and says so.
#
# Which images, tags, contexts, Dockerfiles and build arguments: the program's own registrations
# (`python -m rehearsal plan-images`), so the tags are the ones `pulumi up` would build.
# Prints `IMAGE REFERENCE` lines on stdout; progress on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/podman-env.sh
source scripts/podman-env.sh

STACK="${STACK:-dev}"
PYTHON="${PYTHON:-venv/bin/python}"
CACHE="${OBSERVABILITY_IMAGES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/observability-images}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
mkdir -p "$CACHE"
exec 8>"$CACHE/.lock"
flock 8  # one builder at a time on this machine (bases and tags are shared)

log() { echo "images: $*" >&2; }

# Docker's image format (OCI drops HEALTHCHECK). Builds reach Debian and PyPI through this machine's network, so with its trust store (which may
# hold the CA of an intercepting proxy): mounted for the build only, never part of an image.
BUILD_OPTS=(--pull=never --network=host --format docker --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)

# A bookworm minbase root with Debian's python3 where the official python image has its CPython.
# $1 Debian release, $2 Python major.minor; prints the path of the cached root tarball.
python_rootfs() {
  local release="$1" python="$2"
  local dir="$CACHE/python-$python-$release"
  local tarball="$dir/rootfs.tar"
  if [ -s "$tarball" ] && [ -s "$dir/python-version" ]; then
    echo "$tarball"; return
  fi
  log "debootstrap $release with python$python (once; cached in $dir)"
  local started=$SECONDS root="$dir/.root"
  rm -rf "$dir"; mkdir -p "$root"
  # The official image's runtime packages (ca-certificates, netbase, tzdata), Debian's python3 and pip.
  debootstrap --variant=minbase --include=ca-certificates,netbase,tzdata,python3,python3-pip \
    "$release" "$root" "$DEBIAN_MIRROR" >"$dir/debootstrap.log" 2>&1 \
    || { tail -20 "$dir/debootstrap.log" >&2; echo "error: debootstrap $release failed (log: $dir/debootstrap.log)" >&2; exit 1; }
  local actual; actual="$(chroot "$root" python3 -c 'import platform; print(platform.python_version())')"
  case "$actual" in
    "$python".*) ;;
    *) echo "error: Debian $release ships Python $actual, not $python.x: no stand-in for python:$python" >&2; exit 1 ;;
  esac
  # The official image's paths: CPython's commands in /usr/local/bin, found first on PATH.
  ln -sf /usr/bin/python3 "$root/usr/local/bin/python3"
  ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
  ln -sf /usr/bin/pip3 "$root/usr/local/bin/pip3"
  ln -sf /usr/bin/pip3 "$root/usr/local/bin/pip"
  # The official image's pip installs system-wide; Debian's refuses (PEP 668) unless this goes.
  rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
  # The official image's apt sources (debian.sources with updates and security), lists cleaned.
  rm -f "$root/etc/apt/sources.list"
  cat > "$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: $release $release-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $release-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  chroot "$root" apt-get clean
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/* "$root"/root/.cache
  find "$root" -name __pycache__ -prune -exec rm -rf {} +
  tar --numeric-owner --xattrs -C "$root" -cf "$tarball.partial" .
  mv "$tarball.partial" "$tarball"
  echo "$actual" > "$dir/python-version"
  rm -rf "$root"
  log "python$python $release root ready in $((SECONDS - started)) s (Python $actual)"
  echo "$tarball"
}

# Import the cached root under the exact reference a Dockerfile names (docker.io/library/python:TAG).
python_base() {
  local ref="$1" release="$2" python="$3" tarball actual
  tarball="$(python_rootfs "$release" "$python")"
  actual="$(cat "$(dirname "$tarball")/python-version")"
  if podman_cmd image exists "$ref" \
     && [ "$(podman_cmd image inspect --format '{{index .Labels "org.observability.stand-in.rootfs"}}' "$ref")" = "$(stat -c %Y "$tarball")" ]; then
    return
  fi
  log "importing $ref (stand-in: Debian $release, Python $actual)"
  podman_cmd import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "ENV PYTHON_VERSION=$actual" \
    --change 'CMD ["python3"]' \
    --change "LABEL org.observability.stand-in=\"Debian $release minbase with Debian python3 $actual (official image: CPython built from source)\"" \
    --change "LABEL org.observability.stand-in.rootfs=$(stat -c %Y "$tarball")" \
    "$tarball" "$ref" >/dev/null
}

# A busybox userland like the bases of the third-party images (prometheus/busybox, Alpine):
# Debian's static busybox with every applet linked in /bin, passwd/group with root and nobody,
# CA certificates and mime types. $1 reference to import it under.
busybox_base() {
  local ref="$1" root
  if podman_cmd image exists "$ref"; then return; fi
  command -v busybox >/dev/null 2>&1 && [ -x /bin/busybox ] || { echo "error: busybox-static is not installed" >&2; exit 1; }
  log "making busybox base $ref"
  root="$(mktemp -d)"
  mkdir -p "$root"/{bin,etc/ssl/certs,tmp,home,root,var/tmp}
  cp /bin/busybox "$root/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnogroup:x:65534:\n' > "$root/etc/group"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  [ -f /etc/mime.types ] && cp /etc/mime.types "$root/etc/mime.types"
  chmod 1777 "$root/tmp" "$root/var/tmp"
  tar --numeric-owner --owner=0 --group=0 -C "$root" -cf - . \
    | podman_cmd import --change 'CMD ["sh"]' \
        --change 'LABEL org.observability.stand-in="Debian busybox-static userland"' - "$ref" >/dev/null
  rm -rf "$root"
}

# Upstream's Dockerfile for a Prometheus project (prometheus, alertmanager), unchanged, on the busybox
# stand-in of quay.io/prometheus/busybox, with the pinned binaries where `make build` puts them.
prometheus_project() {
  local name="$1" ref="$2" module_dir="$3"; shift 3
  local context bin
  context="$(mktemp -d)"
  cp -a "$module_dir/." "$context/"
  chmod -R u+w "$context"
  mkdir -p "$context/.build/linux-amd64"
  for bin in "$@"; do cp "$(tool_path "$bin")" "$context/.build/linux-amd64/$bin"; done
  busybox_base quay.io/prometheus/busybox-linux-amd64:latest
  log "building $ref from $module_dir/Dockerfile"
  podman_cmd build "${BUILD_OPTS[@]}" -q -f "$context/Dockerfile" -t "$ref" \
    --label "org.observability.stand-in=upstream Dockerfile on a busybox stand-in base; binaries built by scripts/tools.sh" \
    "$context" >/dev/null
  rm -rf "$context"
}

# Upstream's cmd/jaeger/Dockerfile (release target), unchanged, on a busybox stand-in of its Alpine base.
jaeger_image() {
  local ref="$1" module_dir="$2" context
  context="$(mktemp -d)"
  cp "$module_dir/cmd/jaeger/Dockerfile" "$module_dir/cmd/jaeger/sampling-strategies.json" "$context/"
  cp "$(tool_path jaeger)" "$context/jaeger-linux-amd64"
  busybox_base localhost/observability-stand-in/alpine-base:latest
  log "building $ref from $module_dir/cmd/jaeger/Dockerfile"
  podman_cmd build "${BUILD_OPTS[@]}" -q -f "$context/Dockerfile" --target release -t "$ref" \
    --build-arg base_image=localhost/observability-stand-in/alpine-base:latest \
    --build-arg debug_image=localhost/observability-stand-in/alpine-base:latest \
    --build-arg TARGETARCH=amd64 \
    --label "org.observability.stand-in=upstream Dockerfile on a busybox stand-in of its Alpine base; binary built by scripts/tools.sh" \
    "$context" >/dev/null
  rm -rf "$context"
}

TOOLS_LINES=""
tool_path() {
  if [ -z "$TOOLS_LINES" ]; then TOOLS_LINES="$(bash scripts/tools.sh)"; fi
  awk -v n="$1" '$1 == n { print $3 }' <<< "$TOOLS_LINES"
}

# The Go module source a pinned tool was built from (its folder's .module file names it).
module_dir() {
  local module version
  read -r module version < "$(dirname "$(tool_path "$1")")/.module"
  go mod download -json "$module@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'
}

# The image a tag names now (empty when none), and: drop the image a tag named before a rebuild,
# unless something still uses it (only images this script tagged are ever removed).
image_id() { podman_cmd image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }
drop_replaced() {
  local before="$1" ref="$2"
  if [ -n "$before" ] && [ "$before" != "$(image_id "$ref")" ]; then
    podman_cmd rmi "$before" >/dev/null 2>&1 || true
  fi
}

# Build only what changed: a stand-in is rebuilt when its binary is newer than the image.
stale() {
  local ref="$1" since="$2" created
  podman_cmd image exists "$ref" || return 0
  created="$(podman_cmd image inspect --format '{{.Created.Unix}}' "$ref")"
  [ "$(stat -c %Y "$since")" -gt "$created" ]
}

plan="$("$PYTHON" -m rehearsal plan-images --stack "$STACK")"
while read -r kind ref a b c d; do
  before="$(image_id "$ref")"
  case "$kind" in
    python-base)   # REF RELEASE PYTHON
      python_base "$ref" "$a" "$b"
      echo "base $ref" ;;
    build)         # REF CONTEXT DOCKERFILE PLATFORM BUILD_ARGS(k=v,k=v or -)
      args=()
      if [ "$d" != "-" ]; then IFS=',' read -ra kv <<< "$d"; for x in "${kv[@]}"; do args+=(--build-arg "$x"); done; fi
      log "building $ref (context $a, $b)"
      started=$SECONDS
      podman_cmd build "${BUILD_OPTS[@]}" -q --platform "$c" -f "$b" "${args[@]}" -t "$ref" "$a" >/dev/null
      log "built $ref in $((SECONDS - started)) s"
      echo "built $ref" ;;
    stand-in)      # REF TOOL
      case "$a" in
        prometheus)   if stale "$ref" "$(tool_path prometheus)"; then prometheus_project prometheus "$ref" "$(module_dir prometheus)" prometheus promtool; fi ;;
        alertmanager) if stale "$ref" "$(tool_path alertmanager)"; then prometheus_project alertmanager "$ref" "$(module_dir alertmanager)" alertmanager amtool; fi ;;
        jaeger)       if stale "$ref" "$(tool_path jaeger)"; then jaeger_image "$ref" "$(module_dir jaeger)"; fi ;;
        *) echo "error: no stand-in recipe for $a ($ref)" >&2; exit 1 ;;
      esac
      echo "stand-in $ref" ;;
    left-out)      # REF REASON...
      log "not made: $ref ($a $b $c $d)"
      echo "left-out $ref" ;;
    *) echo "error: unexpected plan line: $kind $ref" >&2; exit 1 ;;
  esac
  drop_replaced "$before" "$ref"
done <<< "$plan"
