#!/usr/bin/env bash
# `cmake --install` puts libevertoken.so into the module directory and
# evertoken.module into the module config directory (p11-kit's own for the
# /usr prefix), so that p11-kit
# (and every program that loads modules through it) finds the token. Tested
# without touching the system: the install goes to a DESTDIR, and p11-kit is
# pointed at that copy through the user's module config
# (~/.config/pkcs11/modules/evertoken.module in the test's temporary HOME).
#
# p11-kit never reads the user configuration in a process running as root
# (conf.c: "skipping user config in program running as root"), and there is no
# environment override; as root the p11-kit side therefore runs as nobody
# (setpriv), on files handed over to nobody.
. "$(dirname "$0")/lib.sh"
need cmake pkg-config p11-kit pkcs11-tool p11tool
: "${EVERTOKEN_BINARY_DIR:?run through ctest (EVERTOKEN_BINARY_DIR unset)}"

# The install directories the build was configured with (cache variables,
# docs/install.md; p11-kit's own directories for the /usr prefix).
cachevar() { sed -n "s/^$1:[A-Z]*=//p" "$EVERTOKEN_BINARY_DIR/CMakeCache.txt"; }
modpath=$(cachevar P11_MODULE_PATH)
confdir=$(cachevar P11_MODULE_CONFIGS)
[ -n "$modpath" ] && [ -n "$confdir" ] ||
    die "the build has no P11_MODULE_PATH/P11_MODULE_CONFIGS in its CMakeCache.txt"

# ---- install into a DESTDIR
DEST=$T/destdir
DESTDIR=$DEST cmake --install "$EVERTOKEN_BINARY_DIR" >"$T/install.log" 2>&1 ||
    die "cmake --install: $(cat "$T/install.log")"
# Every installed file stayed inside DESTDIR.
grep -E -- "-- (Installing|Up-to-date): " "$T/install.log" | grep -v -- ": $DEST/" &&
    die "cmake --install wrote outside DESTDIR: $(cat "$T/install.log")"
so=$DEST$modpath/libevertoken.so
mf=$DEST$confdir/evertoken.module
[ -f "$so" ] || die "module not installed at $modpath/libevertoken.so: $(cat "$T/install.log")"
[ -f "$mf" ] || die "evertoken.module not installed in $confdir: $(cat "$T/install.log")"
# dlopen() needs a readable file, not an executable one (Debian installs
# shared objects 0644).
[ -r "$so" ] || die "installed module is not readable: $(ls -l "$so")"
ok "cmake --install: $modpath/libevertoken.so and $confdir/evertoken.module"

# The module file names the installed library: absolute, or relative to
# p11-kit's module path (p11-kit resolves a bare name there).
mline=$(sed -n 's/^module:[[:space:]]*//p' "$mf")
[ "$(grep -c '^module:' "$mf")" = 1 ] || die "evertoken.module needs exactly one module: line: $(cat "$mf")"
case $mline in
/*) [ "$mline" = "$modpath/libevertoken.so" ] || die "module: $mline is not $modpath/libevertoken.so" ;;
*) [ "$mline" = libevertoken.so ] || die "module: $mline does not name libevertoken.so" ;;
esac
grep -Eq '^(disable-in|enable-in):' "$mf" && die "evertoken.module restricts where it loads: $(cat "$mf")"
ok "evertoken.module loads $mline"

# ---- the user's module config, pointing at the DESTDIR copy
ucfg=$HOME/.config/pkcs11/modules
mkdir -p "$ucfg"
sed "s|^module:.*|module: $so|" "$mf" >"$ucfg/evertoken.module"

RUN=()
if [ "$(id -u)" = 0 ]; then
    need setpriv
    RUN=(setpriv --reuid=65534 --regid=65534 --clear-groups --)
    chown -R 65534:65534 "$T"
fi
U() { host "${RUN[@]}" "$@"; }
# p11-kit's own programs deadlock while loading modules when the ASan runtime
# is preloaded (even with no module enabled: a p11-kit/ASan interaction, not
# the module). They run without the preload; the sanitized module then pulls
# the ASan runtime in when it is loaded, which ASan accepts with
# verify_asan_link_order=0.
UK() {
    if [ -n "${ET_PRELOAD:-}" ]; then
        ASAN_OPTIONS=${ASAN_OPTIONS:-}:verify_asan_link_order=0 "${RUN[@]}" "$@"
    else
        "${RUN[@]}" "$@"
    fi
}

# ---- a token, created through the installed copy
LABEL=ext-p11kit
slot=$(U pkcs11-tool --module "$so" -L |
    awk '/^Slot [0-9]+ \(0x[0-9a-f]+\)/ { id = $3; gsub(/[():]/, "", id) }
         /token state: *uninitialized/ { print id; exit }')
[ -n "$slot" ] || die "installed module shows no free slot: $(U pkcs11-tool --module "$so" -L 2>&1)"
U pkcs11-tool --module "$so" --init-token --slot "$slot" --label "$LABEL" --so-pin 87654321 \
    >/dev/null || die "init-token through the installed module"

# ---- p11-kit list-modules shows the module and its token
out=$(UK p11-kit list-modules 2>"$T/p11kit.err") || die "p11-kit list-modules: $(cat "$T/p11kit.err")"
blk=$(echo "$out" | awk '/^[^[:space:]]/ { on = ($1 == "evertoken:") } on')
if [ -z "$blk" ]; then
    why=$(P11_KIT_DEBUG=conf UK p11-kit list-modules 2>&1 | grep -Ei "user config|pkcs11/modules|evertoken")
    die "p11-kit list-modules does not show evertoken (user config ignored?): $why
$out"
fi
echo "$blk" | head -1 | grep -q "^evertoken: $so\$" || die "evertoken module path is not $so: $blk"
grep -Eq "^ +library-manufacturer: evertoken\$" <<<"$blk" || die "library manufacturer: $blk"
grep -Eq "^ +token: $LABEL\$" <<<"$blk" || die "token $LABEL not listed: $blk"
echo "$blk" | awk -v l="$LABEL" '$0 ~ "^ +token: " l "$" { on = 1; next } /^ +token:/ { on = 0 } on' |
    grep -Eq "^ +manufacturer: evertoken\$" || die "token manufacturer is not evertoken: $blk"
ok "p11-kit list-modules: evertoken with token $LABEL"

# ---- programs that load modules through p11-kit see the token without a path
out=$(UK p11tool --list-tokens 2>&1) || die "p11tool --list-tokens (p11-kit config): $out"
grep -q "URL: pkcs11:.*manufacturer=evertoken.*token=$LABEL" <<<"$out" ||
    die "p11tool (through p11-kit) does not list $LABEL: $out"
ok "p11tool without --provider lists $LABEL through p11-kit"
