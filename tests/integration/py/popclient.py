"""Helpers for the integration tests: Python's own poplib against yubin."""
import json
import os
import poplib
import ssl

# poplib refuses lines longer than 2048 octets (its _MAXLINE); real mail has
# longer ones (the corpus has lines of 200,000 octets), servers send them
# whole, and scripts that meet them raise the limit, as this does.
poplib._MAXLINE = 1 << 20


def tls_context():
    # The test server uses a generated self-signed certificate.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def connect(mode="plain", host=None):
    host = host or os.environ["HOST"]
    if mode == "ssl":
        return poplib.POP3_SSL(host, int(os.environ["PORT_TLS"]), context=tls_context(), timeout=30)
    client = poplib.POP3(host, int(os.environ["PORT"]), timeout=30)
    if mode == "stls":
        client.stls(context=tls_context())
    return client


def login(client):
    client.user(os.environ["USER_NAME"])
    client.pass_(os.environ["USER_PASS"])


def fetch_all(client):
    count, size = client.stat()
    listing = [[int(x) for x in line.split()] for line in client.list()[1]]
    uidl = [line.decode().split(" ", 1)[1] for line in client.uidl()[1]]
    messages, octets = [], []
    for number, _ in listing:
        _, lines, received = client.retr(number)
        data = b"\r\n".join(lines) + (b"\r\n" if lines else b"")
        messages.append(data.hex())
        octets.append(received)
    return {"stat": [count, size], "list": listing, "uidl": uidl, "messages": messages, "octets": octets}


def emit(value):
    print(json.dumps(value))


class Raw:
    """A byte-exact POP3 conversation over a plain socket."""

    def __init__(self, host=None, port=None, source=None):
        import socket
        host = host or os.environ["HOST"]
        port = int(port or os.environ["PORT"])
        self.sock = socket.create_connection((host, port), timeout=30, source_address=source)
        self.buf = b""
        self.greeting = self.line()

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed; buffered: %r" % self.buf)
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("latin-1")

    def send(self, data):
        self.sock.sendall(data)

    def cmd(self, text):
        self.send(text.encode("latin-1") + b"\r\n")
        return self.line()

    def multi(self):
        lines = []
        while True:
            line = self.line()
            if line == ".":
                return lines
            lines.append(line)

    def closed(self, wait=5):
        """True if the server closes the connection without sending anything more."""
        self.sock.settimeout(wait)
        try:
            data = self.buf + self.sock.recv(65536)
        except OSError:
            return False
        return data == b""

    def login(self, user=None, password=None):
        assert self.cmd("USER " + (user or os.environ["USER_NAME"])).startswith("+OK")
        reply = self.cmd("PASS " + (password or os.environ["USER_PASS"]))
        assert reply.startswith("+OK"), reply
        return reply


def scram_login(raw, user, password, mechanism="SCRAM-SHA-256", cont="+ "):
    """Runs SCRAM (RFC 5802) as a client over a Raw connection; returns the
    final reply. `cont` is the continuation prefix: "+ " in POP3, "334 " in SMTP."""
    import base64, hashlib, hmac, secrets
    name = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-1": "sha1"}[mechanism]
    b64 = lambda b: base64.b64encode(b).decode()
    nonce = secrets.token_urlsafe(18)
    first_bare = "n=%s,r=%s" % (user, nonce)
    reply = raw.cmd("AUTH %s %s" % (mechanism, b64(("n,," + first_bare).encode())))
    if not reply.startswith(cont):
        return reply
    server_first = base64.b64decode(reply[len(cont):]).decode()
    fields = dict(f.split("=", 1) for f in server_first.split(","))
    salted = hashlib.pbkdf2_hmac(name, password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
    client_key = hmac.new(salted, b"Client Key", name).digest()
    stored_key = hashlib.new(name, client_key).digest()
    without_proof = "c=biws,r=" + fields["r"]
    auth_message = ",".join([first_bare, server_first, without_proof]).encode()
    signature = hmac.new(stored_key, auth_message, name).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    reply = raw.cmd(b64((without_proof + ",p=" + b64(proof)).encode()))
    if not reply.startswith(cont):
        return reply
    server_key = hmac.new(salted, b"Server Key", name).digest()
    expected = "v=" + b64(hmac.new(server_key, auth_message, name).digest())
    if base64.b64decode(reply[len(cont):]).decode() != expected:
        return "bad server signature"
    return raw.cmd("")


def non_loopback_address():
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("192.0.2.123", 9))
    return s.getsockname()[0]
