#!/usr/bin/env bash
# Build the Debian packages (debian/, dpkg-buildpackage -us -uc -b) from a
# copy of the working tree, check them with lintian, install them into this
# machine with apt-get, and test the installed module and tools:
#   - the files are where Debian puts them (multiarch PKCS#11 directory,
#     p11-kit module directory, systemd user unit directory, man pages, docs);
#   - the installed evertoken finds the installed module by itself;
#   - p11-kit list-modules shows the module and its token;
#   - pkcs11-tool and p11tool reach the token through p11-kit without naming
#     the module's path;
#   - NSS (modutil/certutil) loads the installed path;
#   - man renders the installed pages; systemd-analyze verifies the installed unit.
# Tokens, HOME and NSS databases are temporary; the user's real ones are never
# touched. The packages are removed again at the end (ET_KEEP_PACKAGES=1 keeps
# them). Called by scripts/test.sh after the test suites; needs root or sudo.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

step() { printf '== package: %s\n' "$*"; }
die() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "need root or sudo to install the packages"
    sudo="sudo"
fi

W=$(mktemp -d /tmp/evertoken-package.XXXXXX)
chmod 755 "$W" # the unprivileged checks below read the built files
installed_here=0
cleanup() {
    local rc=$?
    if [ "$installed_here" = 1 ] && [ "${ET_KEEP_PACKAGES:-0}" != 1 ]; then
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q evertoken evertoken-pkcs11 evertoken-dev \
            >"$W/purge.log" 2>&1 || { echo "removing the packages failed:" >&2; cat "$W/purge.log" >&2; }
    fi
    rm -rf "$W"
    exit $rc
}
trap cleanup EXIT

version=$(sed -nE 's/^project\(evertoken VERSION ([0-9.]+).*/\1/p' CMakeLists.txt)
changelog_version=$(dpkg-parsechangelog -l debian/changelog -S Version)
[ "$changelog_version" = "$version" ] ||
    die "debian/changelog is at $changelog_version, CMakeLists.txt project() at $version: add a changelog entry"

# ---- build from a copy (dpkg-buildpackage writes its results next to the tree)
step "dpkg-buildpackage -us -uc -b"
mkdir "$W/src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$W/src"
else
    tar --exclude='./build*' --exclude=./.git -cf - . | tar -xf - -C "$W/src"
fi
(cd "$W/src" && dpkg-buildpackage -us -uc -b) >"$W/build.log" 2>&1 ||
    die "dpkg-buildpackage failed: $(tail -40 "$W/build.log")"
# The distribution build does not use -Werror; it must still be warning-free.
grep -E "(warning|error): " "$W/build.log" | grep -v "^dpkg-" >"$W/warnings" || true
[ -s "$W/warnings" ] && die "the package build has compiler warnings: $(cat "$W/warnings")"
debs=("$W/evertoken_${version}_"*.deb "$W/evertoken-pkcs11_${version}_"*.deb "$W/evertoken-dev_${version}_all.deb")
for d in "${debs[@]}"; do [ -f "$d" ] || die "not built: $d ($(ls "$W"))"; done
ok "built $(cd "$W" && echo *.deb) (the -dbgsym packages hold the debug symbols)"

# ---- lintian: errors and warnings fail; informational and pedantic tags are
# shown. Every tag that remains is overridden with its reason in
# debian/*.lintian-overrides.
step "lintian"
lintian --display-info --pedantic --fail-on error,warning "$W"/*.changes >"$W/lintian.log" 2>&1 ||
    die "lintian: $(cat "$W/lintian.log")"
# (as root lintian also says that it should not run as root: not a tag)
grep -v "running with root privileges is not recommended" "$W/lintian.log" >"$W/lintian.tags" || true
if [ -s "$W/lintian.tags" ]; then
    echo "lintian (informational and pedantic tags, not failures):"
    cat "$W/lintian.tags"
fi
ok "lintian: no error or warning; no tag that debian/*.lintian-overrides does not justify$([ -s "$W/lintian.tags" ] && echo " except the informational ones above")"

# ---- install into this machine
step "apt-get install ./evertoken*.deb"
dpkg-query -W -f='${Status}\n' evertoken evertoken-pkcs11 2>/dev/null | grep -q "install ok installed" ||
    installed_here=1
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${debs[@]}" </dev/null >"$W/install.log" 2>&1 || die "apt-get install: $(cat "$W/install.log")"
installed_here=1
ok "installed evertoken, evertoken-pkcs11 and evertoken-dev $version"

# ---- the files
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
modpath=$(pkg-config --variable=p11_module_path p11-kit-1)
confdir=$(pkg-config --variable=p11_module_configs p11-kit-1)
so=$modpath/libevertoken.so
[ "$modpath" = "/usr/lib/$multiarch/pkcs11" ] || die "p11-kit's module path $modpath is not the multiarch one"
for f in "$so" "$confdir/evertoken.module" /usr/bin/evertoken /usr/bin/evertoken-enroll \
    /usr/lib/systemd/user/evertoken-enroll.service; do
    [ -f "$f" ] || die "not installed: $f"
done
ls /usr/share/doc/evertoken/enrollment.md* >/dev/null 2>&1 || die "docs not installed in /usr/share/doc/evertoken"
dpkg -S "$so" | grep -q "^evertoken-pkcs11:" || die "$so is not from evertoken-pkcs11"
grep -qx "module: libevertoken.so" "$confdir/evertoken.module" ||
    die "evertoken.module does not name libevertoken.so: $(cat "$confdir/evertoken.module")"
[ "$(/usr/bin/evertoken --version)" = "evertoken $version" ] || die "installed evertoken --version"
[ "$(/usr/bin/evertoken-enroll --version)" = "evertoken-enroll $version" ] || die "installed evertoken-enroll --version"
for p in evertoken.1 evertoken-enroll.1 evertoken-enroll.conf.5 evertoken.7; do
    page=$(man -w "${p##*.}" "${p%.*}") || die "man page $p not installed"
    err=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null)
    [ -z "$err" ] || die "man $p warns: $err"
done
for h in p11.h evertoken_ext.h; do
    dpkg -S "/usr/include/evertoken/$h" | grep -q "^evertoken-dev:" || die "/usr/include/evertoken/$h is not from evertoken-dev"
done
# The installed headers compile on their own (with p11-kit's, which
# evertoken-dev depends on) and declare the vendor interface.
printf '#include <evertoken/evertoken_ext.h>\nint main(void) { return ET_EXT_VERSION_MAJOR > 0 ? 0 : 1; }\n' >"$W/hdr.c"
cc $(pkg-config --cflags p11-kit-1) -Wall -Werror -o "$W/hdr" "$W/hdr.c" || die "the installed headers do not compile"
"$W/hdr" || die "ET_EXT_VERSION_MAJOR is 0"
ok "files in place: $so, $confdir/evertoken.module, /usr/bin, the user unit, 4 man pages, docs, headers"

# ---- installed-module tests, with a temporary HOME and token directory
T=$W/t
mkdir -m 700 "$T"
export HOME=$T/home EVERTOKEN_DIR=$T/tokens EVERTOKEN_KDF=fast XDG_RUNTIME_DIR=$T/run
export XDG_CONFIG_HOME=$T/home/.config XDG_DATA_HOME=$T/home/.local/share XDG_STATE_HOME=$T/home/.local/state
unset EVERTOKEN_MODULE EVERTOKEN_CONF
mkdir -m 700 "$HOME" "$XDG_RUNTIME_DIR"
export ET_SO_PIN=87654321 ET_PIN=123456 ET_P12=p12-pass

step "the installed evertoken, no --module"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=package test" \
    -keyout "$T/k.pem" -out "$T/c.pem" 2>/dev/null
openssl pkcs12 -export -inkey "$T/k.pem" -in "$T/c.pem" -name pkgtest -passout env:ET_P12 -out "$T/c.p12"
evertoken init --label pkgtest --so-pin env:ET_SO_PIN --pin env:ET_PIN >/dev/null
evertoken import --token pkgtest --pin env:ET_PIN --passphrase env:ET_P12 "$T/c.p12" >/dev/null
evertoken info >"$T/info"
grep -qx "module: $so" "$T/info" || die "installed evertoken does not load $so: $(head -3 "$T/info")"
grep -q "PKCS 11 3.0" "$T/info" || die "info: no PKCS 11 3.0 interface"
ok "evertoken loads $so by default; token pkgtest with a key and a certificate"

step "p11-kit list-modules"
out=$(p11-kit list-modules 2>&1) || die "p11-kit list-modules: $out"
blk=$(echo "$out" | awk '/^[^[:space:]]/ { on = ($1 == "evertoken:") } on')
[ -n "$blk" ] || die "p11-kit list-modules does not show evertoken: $out"
# p11-kit shows the module as its file names it: libevertoken.so, in $modpath
echo "$blk" | head -1 | grep -Eq "^evertoken: ($so|libevertoken.so)\$" || die "evertoken is not loaded from $so: $blk"
grep -Eq "^ +token: pkgtest\$" <<<"$blk" || die "token pkgtest not listed: $blk"
ok "p11-kit list-modules: evertoken (libevertoken.so in $modpath) with token pkgtest"

step "pkcs11-tool and p11tool through p11-kit (no path to the module)"
proxy=$(ls /usr/lib/"$multiarch"/p11-kit-proxy.so)
out=$(pkcs11-tool --module "$proxy" -L 2>&1) || die "pkcs11-tool through p11-kit-proxy: $out"
grep -q "token label *: pkgtest" <<<"$out" || die "pkcs11-tool (p11-kit proxy) does not list pkgtest: $out"
out=$(pkcs11-tool --module "$proxy" --token-label pkgtest --login --pin "$ET_PIN" -O 2>&1) ||
    die "pkcs11-tool -O through p11-kit: $out"
grep -q "Private Key Object" <<<"$out" && grep -q "Certificate Object" <<<"$out" ||
    die "pkcs11-tool -O through p11-kit: no key and certificate: $out"
out=$(p11tool --list-all-certs "pkcs11:token=pkgtest" 2>&1) || die "p11tool --list-all-certs: $out"
grep -q "URL: pkcs11:.*token=pkgtest.*type=cert" <<<"$out" || die "p11tool (p11-kit) does not list the certificate: $out"
ok "pkcs11-tool (p11-kit-proxy.so) and p11tool list the token, its key and certificate"

step "NSS with the installed path"
mkdir "$T/nss"
certutil -N -d "sql:$T/nss" --empty-password
modutil -dbdir "sql:$T/nss" -add evertoken -libfile "$so" -force </dev/null >/dev/null
out=$(certutil -L -d "sql:$T/nss" -h pkgtest 2>&1) || die "certutil -L -h pkgtest: $out"
grep -q "pkgtest:pkgtest" <<<"$out" || die "NSS does not see the certificate: $out"
ok "NSS loads $so and lists pkgtest:pkgtest"

step "the installed systemd user unit"
if command -v systemd-analyze >/dev/null; then
    out=$(systemd-analyze --user verify /usr/lib/systemd/user/evertoken-enroll.service 2>&1) ||
        die "systemd-analyze verify: $out"
    [ -z "$out" ] || die "systemd-analyze verify: $out"
    ok "systemd-analyze --user verify evertoken-enroll.service: no message"
else
    echo "SKIP: systemd-analyze is not installed"
fi
echo "== package: all passed"
