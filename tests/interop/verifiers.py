"""DKIM verifiers nobody here wrote, for the interop script: OpenDKIM (a
milter in the private Postfix), dkimpy (Debian's python3-dkim) and rspamd.

None of them may ask the real DNS: OpenDKIM reads the public keys from a
file (TestPublicKeys), dkimpy gets them through its dnsfunc hook, and
rspamd asks TxtServer, a DNS server for TXT records on a loopback port.
OpenDKIM logs only through syslog(3): Syslog catches what it writes to
/dev/log where nothing listens there (a container)."""
import json
import os
import socket
import struct
import subprocess
import threading
import time


class TxtServer:
    """Answers TXT questions for the names it holds over UDP on a loopback
    port, NXDOMAIN for any other name, NODATA for other types."""

    def __init__(self, records, address=("127.0.0.1", 0)):
        self.records = {k.lower().rstrip("."): v for k, v in records.items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            answer = self._answer(data)
            if answer:
                self.sock.sendto(answer, peer)

    def _answer(self, data):
        if len(data) < 17:
            return None
        ident, flags = struct.unpack("!HH", data[:4])
        labels, i = [], 12
        while i < len(data) and data[i] != 0:
            labels.append(data[i + 1:i + 1 + data[i]].decode("ascii", "replace"))
            i += 1 + data[i]
        if i + 5 > len(data):
            return None
        question = data[12:i + 5]
        qtype = struct.unpack("!H", data[i + 1:i + 3])[0]
        value = self.records.get(".".join(labels).lower())
        header = 0x8400 | (flags & 0x0100)  # response, authoritative, RD copied
        if value is None:
            return struct.pack("!HHHHHH", ident, header | 3, 1, 0, 0, 0) + question
        if qtype not in (16, 255):
            return struct.pack("!HHHHHH", ident, header, 1, 0, 0, 0) + question
        raw = value.encode()
        # A TXT value is a list of strings of at most 255 octets.
        rdata = b"".join(bytes([len(raw[j:j + 255])]) + raw[j:j + 255] for j in range(0, len(raw), 255))
        record = struct.pack("!HHHIH", 0xC00C, 16, 1, 60, len(rdata)) + rdata
        return struct.pack("!HHHHHH", ident, header, 1, 1, 0, 0) + question + record

    def stop(self):
        self.sock.close()


class Syslog:
    """What programs log through syslog(3) while it runs."""

    def __init__(self):
        self.lines = []
        self.sock = None
        self.started = time.time()
        if not os.path.exists("/dev/log"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.bind("/dev/log")
            os.chmod("/dev/log", 0o666)
            threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            self.lines.append(data.decode(errors="replace"))

    def text(self, tag):
        """The lines `tag` logged; from the journal where a syslog daemon
        owned /dev/log before us."""
        if self.sock is not None:
            return "\n".join(line for line in self.lines if tag in line)
        out = subprocess.run(["journalctl", "-q", "-t", tag, "--since", "@%d" % int(self.started)],
                             capture_output=True, timeout=30)
        return out.stdout.decode(errors="replace")

    def stop(self):
        if self.sock is not None:
            self.sock.close()
            os.unlink("/dev/log")


class OpenDkim:
    """OpenDKIM as a verifying milter on a loopback port."""

    def __init__(self, root, records, port):
        self.dir = os.path.join(root, "opendkim")
        os.makedirs(self.dir, exist_ok=True)
        keys = os.path.join(self.dir, "keys")
        with open(keys, "w") as f:
            for name, value in records.items():
                f.write("%s %s\n" % (name, value))
        conf = os.path.join(self.dir, "opendkim.conf")
        with open(conf, "w") as f:
            f.write("Mode v\nSocket inet:%d@127.0.0.1\nTestPublicKeys %s\nSyslog yes\nSyslogSuccess yes\n"
                    "LogWhy yes\nBackground no\nAuthservID postfix.interop.test\n"
                    # Mail from 127.0.0.1 would otherwise count as ours to sign.
                    "InternalHosts 192.0.2.1\nPidFile %s\n" % (port, keys, os.path.join(self.dir, "pid")))
        self.port = port
        self.process = subprocess.Popen(["opendkim", "-f", "-x", conf], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        self.process.kill()
        self.process.wait()


class Rspamd:
    """rspamd with its stock configuration, its DNS pointed at a TxtServer,
    its workers on loopback ports of their own."""

    def __init__(self, root, dns_port, ports):
        self.dir = os.path.join(root, "rspamd")
        self.dns_port = dns_port
        self.log = os.path.join(self.dir, "rspamd.log")
        for sub in (os.path.join(self.dir, "local.d"), os.path.join(self.dir, "run"),
                    os.path.join(self.dir, "db")):
            os.makedirs(sub, exist_ok=True)
        os.chmod(root, 0o755)
        self._start(ports)

    def _start(self, ports):
        normal, controller, proxy = ports
        self.port = normal
        self.proxy_port = proxy
        local = os.path.join(self.dir, "local.d")
        for name, text in (
            ("options.inc", 'dns { nameserver = ["127.0.0.1:%d"]; }\n' % self.dns_port),
            ("worker-normal.inc", 'bind_socket = "127.0.0.1:%d";\n' % normal),
            ("worker-controller.inc", 'bind_socket = "127.0.0.1:%d";\n' % controller),
            # The proxy in milter mode, scanning through the normal worker
            # on its port of ours (the stock configuration says 11333).
            ("worker-proxy.inc", 'bind_socket = "127.0.0.1:%d";\nmilter = yes;\n'
             'upstream "local" { default = yes; hosts = "127.0.0.1:%d"; }\n' % (proxy, normal)),
            ("logging.inc", 'type = "file"; filename = "%s"; level = "info";\n' % self.log),
        ):
            with open(os.path.join(local, name), "w") as f:
                f.write(text)
        subprocess.run(["chown", "-R", "_rspamd:_rspamd", self.dir], check=True)
        self.process = subprocess.Popen(
            ["rspamd", "-f", "-u", "_rspamd", "-g", "_rspamd", "--var=LOCAL_CONFDIR=" + self.dir,
             "--var=RUNDIR=" + os.path.join(self.dir, "run"), "--var=DBDIR=" + os.path.join(self.dir, "db")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait(self, free_ports, timeout=120):
        """Until the normal worker answers a check. A port taken between
        choosing and binding (rspamd then exits) means a restart on others."""
        deadline = time.monotonic() + timeout
        restarts = 0
        while time.monotonic() < deadline:
            if self.process.poll() is not None and restarts < 3:
                restarts += 1
                self._start(free_ports(3))
            out = subprocess.run(["rspamc", "-h", "127.0.0.1:%d" % self.port, "symbols"],
                                 input=b"Subject: ping\r\n\r\nping\r\n", capture_output=True, timeout=30)
            if out.returncode == 0 and b"Action:" in out.stdout:
                return True
            time.sleep(0.5)
        return False

    def dkim_symbols(self, message):
        """rspamd's DKIM symbols for `message`, as from an outside address
        (mail from loopback is not checked)."""
        out = subprocess.run(["rspamc", "-h", "127.0.0.1:%d" % self.port, "-i", "192.0.2.1", "symbols"],
                             input=message, capture_output=True, timeout=60)
        return [line.strip() for line in out.stdout.decode(errors="replace").splitlines() if "DKIM" in line]

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


# dkimpy runs in Debian's Python (python3-dkim), which need not be the
# python3 this script runs in.
DKIMPY = """
import dkim, json, sys
records = json.loads(sys.argv[1])
message = sys.stdin.buffer.read()
def dnsfunc(name, timeout=5):
    return records.get(name.decode().rstrip('.'), '').encode()
def verify(d, i):
    try:
        return bool(d.verify(idx=i, dnsfunc=dnsfunc))
    except dkim.ValidationError:
        return False
d = dkim.DKIM(message)
count = message.count(b'\\nDKIM-Signature:') + message.startswith(b'DKIM-Signature:')
print(json.dumps([verify(d, i) for i in range(count)]))
"""


def dkimpy_results(message, records):
    """dkimpy's verdict on each DKIM-Signature of `message`."""
    out = subprocess.run(["/usr/bin/python3", "-c", DKIMPY, json.dumps(records)], input=message,
                         capture_output=True, timeout=60)
    try:
        return json.loads(out.stdout)
    except ValueError:
        return out.stderr.decode(errors="replace")[-500:]


def dkimpy_sign(message, key_path, selector, domain):
    """`message` with a DKIM-Signature made by dkimpy (Debian's python3-dkim)
    with the PEM key at `key_path`, over From, To, Subject, Date and
    Message-ID."""
    signature = subprocess.run(
        ["/usr/bin/python3", "-c",
         "import dkim, sys\n"
         "m = sys.stdin.buffer.read()\n"
         "sys.stdout.buffer.write(dkim.sign(m, sys.argv[2].encode(), sys.argv[3].encode(),"
         " open(sys.argv[1], 'rb').read(),"
         " include_headers=[b'from', b'to', b'subject', b'date', b'message-id']))",
         key_path, selector, domain],
        input=message, capture_output=True, check=True, timeout=60).stdout
    return signature + message
