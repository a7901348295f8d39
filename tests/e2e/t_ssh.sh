#!/usr/bin/env bash
# OpenSSH with keys in the token: an EC P-256 key imported with the evertoken
# CLI and an RSA-2048 key generated in the token.
#  * `ssh-keygen -D MODULE` lists the token's public keys without a PIN, the
#    same keys the token holds;
#  * an sshd on a free 127.0.0.1 port, with a temporary configuration (own
#    host key, AuthorizedKeysFile in the temporary directory, no PAM, no
#    passwords), accepts `ssh -I MODULE` / `ssh -o PKCS11Provider=MODULE`
#    logging in with each key and running a command. ssh asks for the PIN
#    through SSH_ASKPASS (forced; no terminal: setsid, stdin /dev/null), and
#    sshd logs which key it accepted;
#  * without the provider the login is refused.
# ssh is run with -F /dev/null, IdentityFile=none and no agent, so nothing of
# the user's own ssh setup takes part.
#
# sshd: as root (CI) it needs its privilege separation directory /run/sshd
# (created by the openssh-server service at boot). If it is missing the test
# creates it and removes it again at the end; CTest runs the ssh tests one at
# a time (RESOURCE_LOCK). As another user sshd runs unprivileged and can log
# in only that user.
. "$(dirname "$0")/lib_e2e.sh"
need ssh ssh-keygen sshd setsid pkcs11-tool openssl ss

SSHD=$(command -v sshd)
case $SSHD in /*) ;; *) die "sshd is not at an absolute path: $SSHD" ;; esac
USER_NAME=$(id -un)
MADE_PRIVSEP=
if [ "$(id -u)" = 0 ] && [ ! -d /run/sshd ]; then
    mkdir -m 755 /run/sshd
    MADE_PRIVSEP=1
fi
ssh_cleanup() {
    local rc=$?
    for p in "${ET_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${ET_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -n "$MADE_PRIVSEP" ]; then rmdir /run/sshd 2>/dev/null || true; fi
    set +e # so that the next line only sets $? for et_cleanup
    (exit "$rc")
    et_cleanup
}
trap ssh_cleanup EXIT

TOK=e2e-ssh
e2e_token "$TOK"

# ssh public key (type and base64) of an OpenSSL PEM public key.
sshpub() { ssh-keygen -i -m PKCS8 -f "$1" | cut -d' ' -f1,2; }
# The token's keys as ssh-keygen -D prints them (type and base64).
listed() {
    host ssh-keygen -D "$M" </dev/null 2>"$T/keygen-D.err" | cut -d' ' -f1,2 ||
        die "ssh-keygen -D $M: $(cat "$T/keygen-D.err")"
}

# ---- the EC key: imported
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/ec.key" 2>/dev/null
e2e_import "$TOK" 02 "$T/ec.key" ssh-ec
rm -f "$T/ec.key"
e2e_pubkey "$TOK" 02 "$T/ec.pub.pem"
EC_PUB=$(sshpub "$T/ec.pub.pem")
out=$(listed)
[ "$out" = "$EC_PUB" ] || die "ssh-keygen -D lists '$out', expected the EC key '$EC_PUB'"
ok "ssh-keygen -D lists the token's EC key without a PIN"

# ---- sshd on loopback with a temporary configuration
mkdir -m 700 "$T/ssh"
ssh-keygen -q -t ed25519 -N '' -C e2e-host -f "$T/ssh/host_ed25519" || die "host key"
PORT=$(e2e_port)
cat >"$T/ssh/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $T/ssh/host_ed25519
PidFile $T/ssh/sshd.pid
AuthorizedKeysFile $T/ssh/authorized_keys
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers $USER_NAME
LogLevel VERBOSE
EOF
: >"$T/ssh/authorized_keys"
out=$("$SSHD" -t -f "$T/ssh/sshd_config" 2>&1) || die "sshd -t: $out"
et_bg "$SSHD" -D -e -f "$T/ssh/sshd_config" >"$T/ssh/sshd.log" 2>&1 </dev/null
SSHD_PID=${ET_PIDS[-1]}
e2e_wait_port "$PORT" "$SSHD_PID" "$T/ssh/sshd.log"
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$T/ssh/host_ed25519.pub")" >"$T/ssh/known_hosts"

# The PIN comes from SSH_ASKPASS, which also leaves a mark that it was asked.
cat >"$T/ssh/askpass" <<EOF
#!/bin/sh
echo "\$*" >>"$T/ssh/askpass.log"
cat "$PINFILE"
EOF
chmod 700 "$T/ssh/askpass"

# sshd -e writes its log lines with CR LF.
sshd_log() { tr -d '\r' <"$T/ssh/sshd.log"; }

# ssh_login KEYNAME PROVIDER-ARGS...: log in, run a command, expect its output.
ssh_login() {
    local what=$1 word="e2e-ssh-ok-$RANDOM" out
    shift
    rm -f "$T/ssh/askpass.log"
    out=$(SSH_ASKPASS=$T/ssh/askpass SSH_ASKPASS_REQUIRE=force host timeout 60 setsid -w \
        ssh -F /dev/null -p "$PORT" "$@" -o IdentityFile=none -o IdentityAgent=none \
        -o UserKnownHostsFile="$T/ssh/known_hosts" -o GlobalKnownHostsFile=/dev/null \
        -o StrictHostKeyChecking=yes -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no \
        -o ConnectTimeout=20 -v "$USER_NAME@127.0.0.1" "echo $word" </dev/null 2>"$T/ssh/client.log") ||
        die "ssh with the $what token key failed: $(grep -v '^debug1: \(Reading\|kex\|compat\|SSH2\|expecting\|rekey\)' "$T/ssh/client.log")
sshd: $(sshd_log)"
    grep -qx "$word" <<<"$out" || die "the remote command did not run ($what): $out"
    [ -s "$T/ssh/askpass.log" ] || die "ssh did not ask for the PIN through SSH_ASKPASS ($what)"
}

# ---- log in with the EC key (ssh -I)
sshpub "$T/ec.pub.pem" >"$T/ssh/authorized_keys"
EC_FP=$(ssh-keygen -lf "$T/ssh/authorized_keys" | cut -d' ' -f2)
ssh_login EC -I "$M"
grep -q "^Accepted publickey for $USER_NAME from 127.0.0.1 port [0-9]* ssh2: ECDSA $EC_FP\$" <<<"$(sshd_log)" ||
    die "sshd did not accept the token's EC key $EC_FP: $(sshd_log)"
ok "ssh -I: logged in with the token's EC key (PIN from SSH_ASKPASS), command ran"

# ---- the RSA key: generated in the token
e2e_keygen "$TOK" rsa:2048 01 ssh-rsa
e2e_pubkey "$TOK" 01 "$T/rsa.pub.pem"
RSA_PUB=$(sshpub "$T/rsa.pub.pem")
out=$(listed | sort)
[ "$out" = "$(printf '%s\n%s\n' "$EC_PUB" "$RSA_PUB" | sort)" ] ||
    die "ssh-keygen -D lists '$out', expected the EC and the RSA key"
ok "ssh-keygen -D lists the token's EC and RSA keys"

echo "$RSA_PUB" >"$T/ssh/authorized_keys"
RSA_FP=$(ssh-keygen -lf "$T/ssh/authorized_keys" | cut -d' ' -f2)
ssh_login RSA -o PKCS11Provider="$M"
grep -q "^Accepted publickey for $USER_NAME from 127.0.0.1 port [0-9]* ssh2: RSA $RSA_FP\$" <<<"$(sshd_log)" ||
    die "sshd did not accept the token's RSA key $RSA_FP: $(sshd_log)"
ok "ssh -o PKCS11Provider: logged in with the token's RSA key, command ran"

# ---- without the token there is no key to log in with
out=$(host timeout 60 setsid -w ssh -F /dev/null -p "$PORT" -o IdentityFile=none -o IdentityAgent=none \
    -o UserKnownHostsFile="$T/ssh/known_hosts" -o GlobalKnownHostsFile=/dev/null \
    -o StrictHostKeyChecking=yes -o BatchMode=yes "$USER_NAME@127.0.0.1" "echo no" </dev/null 2>&1) &&
    die "ssh without the token logged in: $out"
grep -q "Permission denied (publickey)" <<<"$out" || die "ssh without the token failed otherwise: $out"
ok "ssh without the token is refused"
