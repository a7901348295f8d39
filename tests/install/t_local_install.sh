#!/usr/bin/env bash
# A non-root install into ~/.local (docs/install.md): configure with
# CMAKE_INSTALL_PREFIX=~/.local, the p11-kit module file in the user's
# p11-kit configuration (~/.config/pkcs11/modules) and the unit where
# systemctl --user looks (~/.local/share/systemd/user), install as an ordinary
# user, and p11-kit, p11tool and the installed CLI find the module without a
# path. HOME is the test's temporary directory. p11-kit never reads the user
# configuration in a root process, so as root the install and everything
# after it run as nobody (setpriv) on files handed over to nobody.
. "$EVERTOKEN_SOURCE_DIR/tests/external/lib.sh"
need cmake p11-kit p11tool
SRC=$EVERTOKEN_SOURCE_DIR
unset EVERTOKEN_MODULE LD_PRELOAD

B=$T/build
cmake -S "$SRC" -B "$B" -DEVERTOKEN_TESTS=OFF -DCMAKE_INSTALL_PREFIX="$HOME/.local" \
    -DP11_MODULE_CONFIGS="$HOME/.config/pkcs11/modules" \
    -DSYSTEMD_USER_UNIT_DIR="$HOME/.local/share/systemd/user" >"$T/conf.log" 2>&1 ||
    die "configure: $(tail -20 "$T/conf.log")"
cmake --build "$B" -j2 >"$T/build.log" 2>&1 || die "build: $(tail -20 "$T/build.log")"

RUN=()
if [ "$(id -u)" = 0 ]; then
    need setpriv
    RUN=(setpriv --reuid=65534 --regid=65534 --clear-groups --)
    chown -R 65534:65534 "$T"
fi
U() { "${RUN[@]}" env -u LD_PRELOAD "$@"; }

U cmake --install "$B" >"$T/install.log" 2>&1 || die "install as an ordinary user: $(cat "$T/install.log")"
grep -E -- "-- (Installing|Up-to-date): " "$T/install.log" | grep -v -- ": $HOME/" &&
    die "installed outside HOME: $(cat "$T/install.log")"
libdir=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:[A-Z]*=//p' "$B/CMakeCache.txt")
so=$HOME/.local/$libdir/pkcs11/libevertoken.so
for f in "$so" "$HOME/.config/pkcs11/modules/evertoken.module" "$HOME/.local/bin/evertoken" \
    "$HOME/.local/bin/evertoken-enroll" "$HOME/.local/share/systemd/user/evertoken-enroll.service" \
    "$HOME/.local/share/man/man1/evertoken.1"; do
    [ -f "$f" ] || die "not installed: $f"
done
grep -qx "ExecStart=$HOME/.local/bin/evertoken-enroll run" "$HOME/.local/share/systemd/user/evertoken-enroll.service" ||
    die "the unit does not run the installed helper"
grep -qx "module: $so" "$HOME/.config/pkcs11/modules/evertoken.module" ||
    die "evertoken.module does not name $so: $(cat "$HOME/.config/pkcs11/modules/evertoken.module")"
ok "installed without root under $HOME/.local, module file in ~/.config/pkcs11/modules"

# The installed CLI finds the installed module by itself (no --module, no EVERTOKEN_MODULE).
U "$HOME/.local/bin/evertoken" init --label local --so-pin pass:87654321 --pin pass:123456 \
    >"$T/init.log" 2>&1 || die "installed evertoken init: $(cat "$T/init.log")"
U "$HOME/.local/bin/evertoken" info >"$T/info" 2>&1 || die "installed evertoken info: $(cat "$T/info")"
grep -q "^module: $so\$" "$T/info" || die "installed CLI does not load $so: $(head -2 "$T/info")"
ok "the installed evertoken loads $so by default and created token 'local'"

# p11-kit finds the module through the user's configuration.
out=$(U p11-kit list-modules 2>&1) || die "p11-kit list-modules: $out"
blk=$(echo "$out" | awk '/^[^[:space:]]/ { on = ($1 == "evertoken:") } on')
[ -n "$blk" ] || die "p11-kit list-modules does not show evertoken: $out"
echo "$blk" | head -1 | grep -q "^evertoken: $so\$" || die "p11-kit loads evertoken from elsewhere: $blk"
grep -Eq "^ +token: local\$" <<<"$blk" || die "p11-kit does not show token local: $blk"
out=$(U p11tool --list-tokens 2>&1) || die "p11tool --list-tokens: $out"
grep -q "URL: pkcs11:.*manufacturer=evertoken.*token=local" <<<"$out" || die "p11tool does not list token local: $out"
ok "p11-kit list-modules and p11tool (no --provider) find the ~/.local module and its token"
