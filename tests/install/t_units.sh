#!/usr/bin/env bash
# The shipped systemd units (enroll/*.service.in, as configured into the build
# tree) pass `systemd-analyze --user verify` without a single message (with
# ExecStart= pointed at the built binary, which is not installed, and the
# Documentation= man pages looked up among the built ones); the sandbox is
# kept, and every path the unit opens for writing is created by ExecStartPre
# and documented in the unit. Skips (77) only when systemd-analyze is absent
# or cannot start its offline manager here.
. "$EVERTOKEN_SOURCE_DIR/tests/external/lib.sh"
: "${EVERTOKEN_BINARY_DIR:?run through ctest}"
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "SKIP: systemd-analyze is not installed (Debian package systemd)" >&2
    exit 77
fi
printf '[Service]\nExecStart=/bin/true\n' >"$T/probe.service"
if ! systemd-analyze --user verify --man=no "$T/probe.service" >"$T/probe.log" 2>&1; then
    echo "SKIP: systemd-analyze verify cannot run here: $(cat "$T/probe.log")" >&2
    exit 77
fi

mkdir -p "$T/man/man1" "$T/man/man5" "$T/man/man7"
for p in "$EVERTOKEN_BINARY_DIR"/docs/man/*.[0-9]; do
    cp "$p" "$T/man/man${p##*.}/"
done
export MANPATH=$T/man

n=0
for src in "$EVERTOKEN_SOURCE_DIR"/*/*.service.in; do
    [ -f "$src" ] || continue
    name=$(basename "$src" .in)
    dir=$(dirname "$src")
    built=$EVERTOKEN_BINARY_DIR/${dir#"$EVERTOKEN_SOURCE_DIR"/}/$name
    [ -f "$built" ] || die "$name was not configured into the build tree ($built)"
    bin=$(sed -n 's|^ExecStart=[^ ]*/\([^/ ]*\) .*|\1|p' "$built")
    [ -x "$EVERTOKEN_BINARY_DIR/enroll/$bin" ] || die "$name: ExecStart runs $bin, which the build does not make"
    sed "s|^ExecStart=[^ ]*|ExecStart=$EVERTOKEN_BINARY_DIR/enroll/$bin|" "$built" >"$T/$name"
    out=$(systemd-analyze --user verify "$T/$name" 2>&1) || die "systemd-analyze verify $name: $out"
    [ -z "$out" ] && ok "systemd-analyze --user verify $name: no message" || die "systemd-analyze verify $name says: $out"

    # the sandbox stays
    for k in ProtectSystem=strict PrivateTmp=yes NoNewPrivileges=yes UMask=0077; do
        grep -qx "$k" "$built" || die "$name lost $k"
    done
    # every writable path is created before the start, and documented in the unit
    rw=$(sed -n 's/^ReadWritePaths=//p' "$built")
    [ -n "$rw" ] || die "$name has no ReadWritePaths"
    pre=$(sed -n 's/^ExecStartPre=+//p' "$built")
    mk=${pre#/bin/mkdir -p -m 0700 }
    [ "$mk" != "$pre" ] || die "$name: ExecStartPre is not '+/bin/mkdir -p -m 0700 DIR...': $pre"
    for p in $rw; do
        case $p in -*) die "$name: ReadWritePaths $p may be dropped when missing (leading -)" ;; esac
        grep -qw -- "$p" <<<"$mk" || die "$name: $p is writable but not created by ExecStartPre ($mk)"
        doc=${p/\%h/\~}
        grep -q "^#.*$doc" "$built" || die "$name: the writable path $doc is not documented in the unit"
    done
    grep -q "^#.*ReadWritePaths=" "$built" || die "$name: no drop-in example (ReadWritePaths=) in the unit"
    # The ExecStartPre command works: run it with %h = a fresh home.
    mkdir -p "$T/h"
    # shellcheck disable=SC2086 # the command line of the unit, split into words
    (umask 077 && ${pre//%h/$T/h}) || die "$name: ExecStartPre failed: ${pre//%h/$T/h}"
    for p in $rw; do
        d=${p//%h/$T/h}
        [ -d "$d" ] || die "$name: ExecStartPre did not create $d"
        [ "$(stat -c %a "$d")" = 700 ] || die "$name: $d is $(stat -c %a "$d"), not 700"
    done
    ok "$name: sandbox kept; $rw created 0700 by ExecStartPre and documented"
    n=$((n + 1))
done
[ "$n" -ge 1 ] || die "no systemd unit found"
