"""Helpers for the integration tests: Python's own smtplib against yubin."""
import os
import select
import smtplib
import socket
import ssl

from popclient import tls_context, emit  # noqa: F401  (re-exported for scripts)


def connect(mode="mx", source=None, host=None):
    """An smtplib client: "mx" (plain), "submission" (after STARTTLS) or
    "submissions" (implicit TLS); `source` binds the client to an address."""
    host = host or os.environ["HOST"]
    src = (source, 0) if source else None
    if mode == "mx":
        return smtplib.SMTP(host, int(os.environ["SMTP_PORT"]), timeout=30, source_address=src)
    if mode == "submission":
        client = smtplib.SMTP(host, int(os.environ["SUBMISSION_PORT"]), timeout=30, source_address=src)
        client.starttls(context=tls_context())
        return client
    if mode == "submissions":
        return smtplib.SMTP_SSL(host, int(os.environ["SUBMISSIONS_PORT"]), context=tls_context(),
                                timeout=30, source_address=src)
    raise ValueError(mode)


def send(client, sender, recipients, message):
    """sendmail, with the outcome as JSON-friendly data:
    {"refused": {rcpt: [code, text]}, "error": null or [code, text]}."""
    def text(b):
        return b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b)
    try:
        refused = client.sendmail(sender, recipients, message)
        return {"refused": {k: [v[0], text(v[1])] for k, v in refused.items()}, "error": None}
    except smtplib.SMTPRecipientsRefused as e:
        return {"refused": {k: [v[0], text(v[1])] for k, v in e.recipients.items()}, "error": "all refused"}
    except smtplib.SMTPResponseException as e:
        return {"refused": {}, "error": [e.smtp_code, text(e.smtp_error)]}


def send_once(sender, recipients, message, mode="mx", source=None):
    client = connect(mode, source)
    try:
        return send(client, sender, recipients, message)
    finally:
        try:
            client.quit()
        except Exception:
            pass


class Raw:
    """A byte-exact SMTP conversation over a plain socket. Replies are
    returned whole, lines joined with "\\n", e.g. "250-a\\n250 b"."""

    def __init__(self, port=None, source=None, host=None, greet=True):
        host = host or os.environ["HOST"]
        port = int(port or os.environ["SMTP_PORT"])
        self.sock = socket.create_connection((host, port), timeout=30,
                                             source_address=(source, 0) if source else None)
        self.buf = b""
        self.greeting = self.reply() if greet else None

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed; buffered: %r" % self.buf)
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self):
        lines = [self.line()]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(self.line())
        return "\n".join(lines)

    def send(self, data):
        self.sock.sendall(data)

    def cmd(self, text):
        self.send(text.encode("utf-8") + b"\r\n")
        return self.reply()

    def starttls(self):
        """Upgrades the socket; whatever was buffered is dropped, as a client must."""
        self.sock = tls_context().wrap_socket(self.sock)
        self.buf = b""

    def closed(self, wait=5):
        self.sock.settimeout(wait)
        try:
            data = self.buf + self.sock.recv(65536)
        except OSError:
            return False
        return data == b""
