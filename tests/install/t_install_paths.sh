#!/usr/bin/env bash
# The install directories are cache variables (docs/install.md): for the /usr
# prefix they are what the system says (pkg-config of p11-kit and systemd),
# for another prefix they follow CMAKE_INSTALL_PREFIX, an explicit -D always
# wins and stays when the prefix changes. Configure-only runs in temporary
# build directories.
. "$EVERTOKEN_SOURCE_DIR/tests/external/lib.sh"
need cmake pkg-config
SRC=$EVERTOKEN_SOURCE_DIR

conf() { # BUILD-DIR ARGS...
    local b=$1; shift
    cmake -S "$SRC" -B "$b" -DEVERTOKEN_TESTS=OFF "$@" >"$T/conf.log" 2>&1 ||
        die "cmake configure $*: $(tail -20 "$T/conf.log")"
}
get() { sed -n "s/^$2:[A-Z]*=//p" "$1/CMakeCache.txt"; }
expect() { # BUILD-DIR VAR VALUE
    local v
    v=$(get "$1" "$2")
    [ "$v" = "$3" ] || die "$2 is '$v', expected '$3' ($4)"
}
modline() { sed -n 's/^module:[[:space:]]*//p' "$1/module/evertoken.module"; }

sys_mod=$(pkg-config --variable=p11_module_path p11-kit-1)
sys_conf=$(pkg-config --variable=p11_module_configs p11-kit-1)
sys_unit=$(pkg-config --variable=systemduserunitdir systemd 2>/dev/null || true)
[ -n "$sys_mod" ] && [ -n "$sys_conf" ] || die "pkg-config p11-kit-1 gives no module directories"

# ---- /usr: the system's directories; the module file names no architecture
conf "$T/usr" -DCMAKE_INSTALL_PREFIX=/usr
expect "$T/usr" P11_MODULE_PATH "$sys_mod" "prefix /usr"
expect "$T/usr" P11_MODULE_CONFIGS "$sys_conf" "prefix /usr"
[ -n "$sys_unit" ] && expect "$T/usr" SYSTEMD_USER_UNIT_DIR "$sys_unit" "prefix /usr"
[ "$(modline "$T/usr")" = libevertoken.so ] ||
    die "prefix /usr: evertoken.module says module: $(modline "$T/usr"), expected libevertoken.so"
ok "prefix /usr: $sys_mod, $sys_conf, ${sys_unit:-(no systemd.pc)}; module: libevertoken.so"

# ---- another prefix: everything under it; the module file has the full path
conf "$T/opt" -DCMAKE_INSTALL_PREFIX=/opt/et
libdir=$(get "$T/opt" CMAKE_INSTALL_LIBDIR)
expect "$T/opt" P11_MODULE_PATH "/opt/et/$libdir/pkcs11" "prefix /opt/et"
expect "$T/opt" P11_MODULE_CONFIGS "/opt/et/share/p11-kit/modules" "prefix /opt/et"
expect "$T/opt" SYSTEMD_USER_UNIT_DIR "/opt/et/lib/systemd/user" "prefix /opt/et"
[ "$(modline "$T/opt")" = "/opt/et/$libdir/pkcs11/libevertoken.so" ] ||
    die "prefix /opt/et: evertoken.module says module: $(modline "$T/opt")"
ok "prefix /opt/et: every directory follows the prefix"

# ---- changing the prefix of a configured tree: the defaults follow it
conf "$T/opt" -DCMAKE_INSTALL_PREFIX=/usr
expect "$T/opt" P11_MODULE_PATH "$sys_mod" "prefix changed from /opt/et to /usr"
expect "$T/opt" P11_MODULE_CONFIGS "$sys_conf" "prefix changed from /opt/et to /usr"
ok "a changed prefix moves the defaults"

# ---- an explicit -D wins, for /usr and after a prefix change
conf "$T/d" -DCMAKE_INSTALL_PREFIX=/usr -DP11_MODULE_PATH=/srv/p11 \
    -DSYSTEMD_USER_UNIT_DIR=/srv/units
expect "$T/d" P11_MODULE_PATH /srv/p11 "-DP11_MODULE_PATH with prefix /usr"
expect "$T/d" SYSTEMD_USER_UNIT_DIR /srv/units "-DSYSTEMD_USER_UNIT_DIR with prefix /usr"
expect "$T/d" P11_MODULE_CONFIGS "$sys_conf" "not set: the system's"
[ "$(modline "$T/d")" = /srv/p11/libevertoken.so ] ||
    die "-DP11_MODULE_PATH: evertoken.module says module: $(modline "$T/d")"
conf "$T/d" -DCMAKE_INSTALL_PREFIX=/opt/z
expect "$T/d" P11_MODULE_PATH /srv/p11 "-DP11_MODULE_PATH kept after a prefix change"
expect "$T/d" SYSTEMD_USER_UNIT_DIR /srv/units "-DSYSTEMD_USER_UNIT_DIR kept after a prefix change"
expect "$T/d" P11_MODULE_CONFIGS /opt/z/share/p11-kit/modules "not set: follows the prefix"
ok "an explicit -D wins and stays when the prefix changes"

# ---- the directories are where the install puts the files (DESTDIR)
conf "$T/i" -DCMAKE_INSTALL_PREFIX=/opt/et -DP11_MODULE_CONFIGS=/opt/et/p11
cmake --build "$T/i" -j2 >"$T/build.log" 2>&1 || die "build: $(tail -20 "$T/build.log")"
DESTDIR=$T/dest cmake --install "$T/i" >"$T/install.log" 2>&1 || die "install: $(cat "$T/install.log")"
libdir=$(get "$T/i" CMAKE_INSTALL_LIBDIR)
for f in "/opt/et/$libdir/pkcs11/libevertoken.so" /opt/et/p11/evertoken.module \
    /opt/et/lib/systemd/user/evertoken-enroll.service /opt/et/bin/evertoken \
    /opt/et/bin/evertoken-enroll /opt/et/share/man/man1/evertoken.1 \
    /opt/et/share/man/man1/evertoken-enroll.1 /opt/et/share/man/man5/evertoken-enroll.conf.5 \
    /opt/et/share/man/man7/evertoken.7 /opt/et/share/doc/evertoken/enrollment.md; do
    [ -f "$T/dest$f" ] || die "not installed: $f ($(grep -c Installing "$T/install.log") files installed)"
done
grep -E -- "-- (Installing|Up-to-date): " "$T/install.log" | grep -v -- ": $T/dest/opt/et/" &&
    die "files installed outside the prefix"
grep -q "^ExecStart=/opt/et/bin/evertoken-enroll run" "$T/dest/opt/et/lib/systemd/user/evertoken-enroll.service" ||
    die "the unit does not run /opt/et/bin/evertoken-enroll"
ok "cmake --install puts every file under the configured directories"
