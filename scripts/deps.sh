# Sourced by scripts/demo.sh and scripts/test.sh: the Debian packages evertoken
# needs, in three sets. CI starts from a fresh machine: keep the sets complete.
#
# Runtime: build and run evertoken (module, CLI, helper, man pages).
# libjansson-dev: the JSON of ACME (enroll/proto/acme*.c); libmicrohttpd-dev:
# ACME's built-in http-01 responder (and the test CAs).
ET_RUNTIME_PACKAGES=(
  build-essential cmake pkg-config scdoc
  libssl-dev openssl libsodium-dev libsqlite3-dev libinih-dev
  libp11-kit-dev p11-kit libkeyutils-dev keyutils
  libp11-dev libcurl4-openssl-dev libjansson-dev libmicrohttpd-dev libsystemd-dev
)
# Demo (scripts/demo.sh, with the runtime set): the clients it shows the token
# in (pkcs11-tool, p11tool, NSS certutil, OpenSSL's pkcs11 engine, curl) and
# what its local SCEP/EST test CAs are built with. ACME=1 scripts/demo.sh
# also installs pebble and nginx (of the test set) for its ACME part.
ET_DEMO_PACKAGES=(
  opensc gnutls-bin libnss3-tools libengine-pkcs11-openssl curl iproute2
  libcmocka-dev libgnutls28-dev
)
# Tests (scripts/test.sh installs all three sets). openssh-server and nginx
# are servers: the tests start their own instances on 127.0.0.1 only; so
# is pebble, the ACME test server (tests/enroll/acme_*.sh).
# debhelper, lintian: the Debian package (scripts/package-test.sh);
# systemd: systemd-analyze verify of the user unit; man-db: man -l checks.
# prometheus-node-exporter, prometheus (promtool) and python3-aiosmtpd are
# servers and tools the monitoring tests (ctest -L monitor) run on 127.0.0.1:
# node_exporter's textfile collector, `promtool test rules` on the documented
# alert rules, an SMTP sink (docs/monitoring.md).
# dbus-daemon, python3-dbus, python3-gi: a private session bus and the test
# notification server (tests/enroll/notifysrv.py) of the desktop
# notification test (enroll.desktop.evertoken, docs/enrollment.md).
ET_TEST_PACKAGES=(
  clang-format softhsm2 util-linux
  openssh-client openssh-server python3 scep
  xxd clang valgrind openvpn iputils-ping
  chromium xvfb xdotool nginx x11-utils nodejs
  debhelper dpkg-dev lintian systemd man-db pebble
  prometheus-node-exporter prometheus python3-aiosmtpd
  dbus-daemon python3-dbus python3-gi
)
# Servers the test set brings whose packages start a system service on
# install: the tests run their own instances, so these stay stopped.
ET_TEST_SERVICES=(prometheus prometheus-node-exporter)
ET_PACKAGES=("${ET_RUNTIME_PACKAGES[@]}" "${ET_DEMO_PACKAGES[@]}" "${ET_TEST_PACKAGES[@]}")

# et_install_packages PKG...: install what is missing, quietly: apt's output
# goes to a log that is shown only when apt fails.
et_install_packages() {
    local sudo="" missing=() log p
    for p in "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to install packages" >&2; return 1; }
        sudo="sudo"
    fi
    echo "installing ${#missing[@]} Debian packages with apt-get: ${missing[*]}"
    log=$(mktemp /tmp/evertoken-apt.XXXXXX)
    if ! { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${missing[@]}" </dev/null; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "apt-get failed (output above)" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
}

# Stop and disable the system services the test set's packages started
# (only where systemd runs; nothing to do in containers without it).
et_stop_test_services() {
    local sudo="" s
    [ -d /run/systemd/system ] || return 0
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    for s in "${ET_TEST_SERVICES[@]}"; do
        if systemctl is-enabled --quiet "$s" 2>/dev/null || systemctl is-active --quiet "$s" 2>/dev/null; then
            $sudo systemctl disable --now "$s" >/dev/null 2>&1 || echo "could not stop the service $s" >&2
        fi
    done
}

# Everything: what scripts/test.sh installs.
et_install_deps() { et_install_packages "${ET_PACKAGES[@]}" && et_stop_test_services; }
# The runtime and demo sets: what scripts/demo.sh installs.
et_install_demo_deps() { et_install_packages "${ET_RUNTIME_PACKAGES[@]}" "${ET_DEMO_PACKAGES[@]}"; }
