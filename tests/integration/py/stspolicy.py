"""An HTTPS server for MTA-STS policies (RFC 8461) in the delivery tests.

    python3 stspolicy.py DIR

DIR holds `server.pem`/`server.key` (the certificate for most names),
optionally `NAME.pem`/`NAME.key` for a name chosen by SNI (an expired
certificate for one policy host, say), and one policy file per host name
(`mta-sts.b.test`), served as /.well-known/mta-sts.txt by the Host header.
Listens on a free loopback port and prints "ready PORT"."""
import http.server
import os
import ssl
import sys

root = sys.argv[1]


def context(name):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(root, name + ".pem"), os.path.join(root, name + ".key"))
    return ctx


default = context("server")


def choose(sock, server_name, _ctx):
    if server_name and os.path.exists(os.path.join(root, server_name + ".pem")):
        sock.context = context(server_name)


default.sni_callback = choose


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        host = (self.headers.get("Host") or "").split(":")[0]
        path = os.path.join(root, host)
        if self.path != "/.well-known/mta-sts.txt" or not os.path.isfile(path):
            self.send_error(404)
            return
        body = open(path, "rb").read()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.socket = default.wrap_socket(server.socket, server_side=True)
print("ready %d" % server.server_address[1], flush=True)
server.serve_forever()
