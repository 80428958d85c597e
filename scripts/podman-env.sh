# Sourced by scripts/images.sh and scripts/rehearse.sh: podman as this machine needs it.
#
# Debian's podman 4.3 as root without a systemd session: runc, cgroupfs, netavark, and the
# settings of rehearsal/containers.conf (no default ulimits: setrlimit is refused here).
# Installs what is missing with apt-get (through sudo when not root), as scripts/test.sh does.

REHEARSAL_PACKAGES=(podman runc netavark aardvark-dns iptables debootstrap busybox-static)

ensure_podman() {
  local sudo="" missing=() pkg
  if [ "$(id -u)" != "0" ]; then sudo="sudo"; fi
  for pkg in "${REHEARSAL_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing Debian packages: ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

podman_cmd() {
  podman --runtime runc --cgroup-manager=cgroupfs "$@"
}

ensure_podman
export CONTAINERS_CONF="$PWD/rehearsal/containers.conf"
