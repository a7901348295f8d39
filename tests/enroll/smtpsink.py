#!/usr/bin/python3
"""SMTP sink for the mail tests (tests/enroll/mon_mail.sh): Debian's aiosmtpd
on 127.0.0.1, every message saved as DIR/N.eml with its envelope in
DIR/N.env. Options: --tls CERT KEY offers STARTTLS (and requires it before
AUTH), --auth USER PASSWORD requires authentication (PLAIN/LOGIN), DIR/port
is written once it listens on --port."""
import argparse
import os
import ssl
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--tls", nargs=2)
ap.add_argument("--auth", nargs=2)
ap.add_argument("--port", type=int, required=True)
a = ap.parse_args()


class Sink:
    n = 0

    async def handle_DATA(self, server, session, envelope):
        Sink.n += 1
        base = os.path.join(a.dir, str(Sink.n))
        with open(base + ".env.tmp", "w") as f:
            f.write("from %s\n" % envelope.mail_from)
            for r in envelope.rcpt_tos:
                f.write("to %s\n" % r)
            f.write("auth %s\n" % (session.authenticated and "yes" or "no"))
            f.write("tls %s\n" % (session.ssl is not None and "yes" or "no"))
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".eml.tmp", base + ".eml")
        os.rename(base + ".env.tmp", base + ".env")
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    if not isinstance(auth_data, LoginPassword):
        return AuthResult(success=False, handled=False)
    ok = (auth_data.login.decode(), auth_data.password.decode()) == tuple(a.auth)
    return AuthResult(success=ok, handled=False)


kw = {}
if a.tls:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.tls[0], a.tls[1])
    kw["tls_context"] = ctx
    kw["require_starttls"] = True
if a.auth:
    kw["authenticator"] = authenticator
    kw["auth_required"] = True
    kw["auth_require_tls"] = bool(a.tls)
c = Controller(Sink(), hostname="127.0.0.1", port=a.port, **kw)
c.start()
with open(os.path.join(a.dir, "port.tmp"), "w") as f:
    f.write("%d\n" % a.port)
os.rename(os.path.join(a.dir, "port.tmp"), os.path.join(a.dir, "port"))
while True:
    time.sleep(3600)
