# Sourced by scripts/test.sh and scripts/demo.sh: installs every Debian
# package the build, the tests and the demo need. Keep this list complete —
# CI starts from a fresh machine.
ET_PACKAGES=(
  build-essential cmake pkg-config clang-format
  libssl-dev openssl libsodium-dev libsqlite3-dev sqlite3 libinih-dev
  libp11-kit-dev p11-kit libcmocka-dev
  softhsm2 opensc gnutls-bin libnss3-tools util-linux
  libengine-pkcs11-openssl libp11-dev curl libcurl4-openssl-dev
  openssh-client openssh-server
  libmicrohttpd-dev libgnutls28-dev python3 scep
  xxd iproute2 clang valgrind openvpn iputils-ping
  libkeyutils-dev keyutils
  chromium xvfb xdotool nginx x11-utils nodejs
)

et_install_deps() {
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to install packages" >&2; return 1; }
        sudo="sudo"
    fi
    # Skip apt entirely when everything is already there (fast re-runs).
    if dpkg-query -W -f='${Status}\n' "${ET_PACKAGES[@]}" 2>/dev/null | grep -vq 'install ok installed' \
        || [ "$(dpkg-query -W -f='${Status}\n' "${ET_PACKAGES[@]}" 2>/dev/null | wc -l)" -ne "${#ET_PACKAGES[@]}" ]; then
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${ET_PACKAGES[@]}" </dev/null
    fi
}
