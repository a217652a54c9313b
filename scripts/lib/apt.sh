# shellcheck shell=bash
# Installs Debian packages a test needs when its command is missing: as root, or through
# sudo without a password; `apt-get update` only when the first try fails (a fresh machine's
# package lists may be stale or absent).
apt_install() { # package...
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo -n)
  echo "apt: installing $*"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null ||
    { "${sudo[@]}" apt-get update >/dev/null &&
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null; }
}
