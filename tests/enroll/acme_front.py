#!/usr/bin/env python3
"""A small HTTPS front for pebble in the ACME tests (tests/enroll/acme_*.sh).

Debian's pebble (2.4) has no ACME Renewal Information (RFC 9773). This front
passes every request through to pebble unchanged (keeping the Host header,
so pebble builds its URLs, and checks the JWS "url", for the front's own
address) and adds what pebble lacks, as a CA in the field would serve it:

  * "renewalInfo" in the directory, and GET /renewalInfo/CERTID answered
    from DIR/window.json ({"start": epoch, "end": epoch, "retry_after": s,
    "status": optional HTTP status}), the times as RFC 3339;
  * a log (DIR/front.log) of each renewalInfo request ("renewalInfo ID")
    and of each new order's "replaces" ("newOrder replaces=ID" or "-").

Hostile modes for the error tests, from DIR/mode (read per request): a
mode names what to break ("dir-garbage", "dir-ctype", "dir-huge",
"order-garbage", "order-status", "badnonce-storm", "ratelimit",
"cert-ctype", "cert-garbage", "cert-other": DIR/other.pem instead of
the issued chain, "authz-truncated", "cert-slow": the certificate download
held for a minute, "order-processing": an order never leaves processing); empty: pass through.

usage: acme_front.py PORT UPSTREAM_PORT CERT KEY UPSTREAM_CA DIR
"""
import base64
import datetime
import http.client
import http.server
import json
import os
import ssl
import sys
import time

PORT, UP, CERT, KEY, UPCA, DIR = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4],
                                  sys.argv[5], sys.argv[6])
HOP = {"connection", "transfer-encoding", "content-length", "keep-alive"}


def log(line):
    with open(os.path.join(DIR, "front.log"), "a") as f:
        f.write(line + "\n")


def mode():
    try:
        with open(os.path.join(DIR, "mode")) as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class Front(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send(self, code, body, ctype, headers=()):
        self.send_response(code)
        if ctype:
            self.send_header("Content-Type", ctype)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def upstream(self, body):
        ctx = ssl.create_default_context(cafile=UPCA)
        c = http.client.HTTPSConnection("127.0.0.1", UP, context=ctx, timeout=30)
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        c.request(self.command, self.path, body=body, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        headers = [(k, v) for k, v in r.getheaders() if k.lower() not in HOP]
        c.close()
        return r.status, headers, data

    def relay(self, status, headers, data):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def renewal_info(self):
        cid = self.path.split("/renewalInfo/", 1)[1]
        log("renewalInfo " + cid)
        try:
            with open(os.path.join(DIR, "window.json")) as f:
                w = json.load(f)
        except FileNotFoundError:
            w = {"status": 404}
        if w.get("status", 200) != 200:
            return self.send(w["status"], b'{"type":"urn:ietf:params:acme:error:malformed",'
                             b'"detail":"no such certificate"}', "application/problem+json")
        body = json.dumps({"suggestedWindow": {"start": rfc3339(w["start"]),
                                               "end": rfc3339(w["end"])}}).encode()
        return self.send(200, body, "application/json",
                         [("Retry-After", str(w.get("retry_after", 0)))])

    def hostile(self, m, body):
        """A broken answer for mode M, or None to pass through."""
        p = self.path
        nonce = [("Replay-Nonce", "bm9uY2Utc3Rvcm0tMDAwMDAwMDA")]
        if p == "/dir" and m == "dir-garbage":
            return 200, b'{"newNonce": "https://x/", "newAccount": ', "application/json", []
        if p == "/dir" and m == "dir-ctype":
            return 200, b"<html>maintenance</html>", "text/html", []
        if p == "/dir" and m == "dir-huge":
            return 200, b'{"x": "' + b"A" * (3 << 20) + b'"}', "application/json", []
        if self.command == "POST" and m == "badnonce-storm" and p != "/nonce-plz":
            return 400, (b'{"type":"urn:ietf:params:acme:error:badNonce",'
                         b'"detail":"JWS has an invalid anti-replay nonce"}'), \
                "application/problem+json", nonce
        if p == "/order-plz" and m == "ratelimit":
            return 429, (b'{"type":"urn:ietf:params:acme:error:rateLimited","detail":'
                         b'"too many new orders recently"}'), "application/problem+json", \
                nonce + [("Retry-After", "3600")]
        if p == "/order-plz" and m == "order-garbage":
            return 201, b'{"status": "pending", "authorizations": [', "application/json", \
                nonce + [("Location", "https://127.0.0.1:%d/my-order/x" % PORT)]
        return None

    def do_GET(self):
        self.handle_any(None)

    def do_HEAD(self):
        self.handle_any(None)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.handle_any(self.rfile.read(n))

    def handle_any(self, body):
        if self.command == "GET" and "/renewalInfo/" in self.path:
            return self.renewal_info()
        m = mode()
        h = self.hostile(m, body)
        if h is not None:
            return self.send(h[0], h[1], h[2], h[3])
        if self.path == "/order-plz" and body:
            try:
                pl = json.loads(b64d(json.loads(body)["payload"]))
                log("newOrder replaces=" + pl.get("replaces", "-"))
            except (ValueError, KeyError):
                log("newOrder replaces=?")
        if m == "cert-slow" and "/certZ/" in self.path:
            log("certificate requested")
            time.sleep(60)  # the test kills the helper meanwhile
        status, headers, data = self.upstream(body)
        ctype = dict((k.lower(), v) for k, v in headers).get("content-type", "")
        if self.path == "/dir" and status == 200:
            d = json.loads(data)
            d["renewalInfo"] = "https://127.0.0.1:%d/renewalInfo/" % PORT
            data = json.dumps(d).encode()
        elif m == "order-status" and ctype.startswith("application/json") and \
                "/my-order/" in self.path:
            d = json.loads(data)
            d["status"] = "exploded"
            data = json.dumps(d).encode()
        elif m == "order-processing" and ctype.startswith("application/json") and \
                "/my-order/" in self.path:
            d = json.loads(data)
            if d.get("status") == "valid":
                d["status"] = "processing"
                d.pop("certificate", None)
            data = json.dumps(d).encode()
        elif m == "authz-truncated" and "/authZ/" in self.path:
            data = data[: len(data) // 2]
        elif m == "authz-truncated" and ctype.startswith("application/json") and \
                (self.path == "/order-plz" or "/my-order/" in self.path):
            # Pebble reuses a valid authorization now and then even with
            # PEBBLE_AUTHZREUSE=0 (1 %: it draws 0..99 and reuses unless
            # the draw exceeds the percentage); the order is then "ready" and
            # no authorization is read. This mode is about reading one.
            d = json.loads(data)
            if d.get("status") == "ready":
                d["status"] = "pending"
                data = json.dumps(d).encode()
        elif m == "cert-ctype" and "/certZ/" in self.path:
            headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
            headers.append(("Content-Type", "text/html"))
        elif m == "cert-garbage" and "/certZ/" in self.path:
            data = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        elif m == "cert-other" and "/certZ/" in self.path:
            with open(os.path.join(DIR, "other.pem"), "rb") as f:
                data = f.read()
        self.relay(status, headers, data)


srv = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Front)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(CERT, KEY)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
with open(os.path.join(DIR, "front.port"), "w") as f:
    f.write(str(PORT))
srv.serve_forever()
