"""Content filters (issue 15) with real filters from Debian, for the
interop script: clamav-milter (clamd with a signature for the EICAR test
file: the public signature database cannot be downloaded here, so the
test writes the one signature it needs), OpenDKIM and OpenDMARC as
milters over a unix socket and TCP, and rspamd over its HTTP protocol,
all on one yubin MX listener in that order:

- a clean message signed by dkimpy is delivered with each filter's
  fields: OpenDKIM's Authentication-Results (dkim=pass), OpenDMARC's
  (dmarc=pass: it saw OpenDKIM's field), clamav-milter's
  X-Virus-Scanned, rspamd's X-Spamd-Result;
- the EICAR test file is refused by clamav-milter with 5xx, never stored;
- the GTUBE test message is refused by rspamd with 5xx, never stored;
- rspamd's proxy worker, in milter mode, is a milter like the others:
  GTUBE refused, a clean message delivered;
- rspamd stopped: 451 under `on_failure = "tempfail"` (the default), and
  delivered under `"accept"` on a second yubin.
"""
import os
import re
import smtplib
import subprocess
import time

import verifiers

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


class Clamav:
    """clamd with a one-signature database, and clamav-milter on a unix
    socket asking it."""

    def __init__(self, root):
        self.dir = os.path.join(root, "clamav")
        db = os.path.join(self.dir, "db")
        os.makedirs(db, exist_ok=True)
        with open(os.path.join(db, "eicar.ndb"), "w") as f:
            f.write("Eicar-Test-Signature:0:*:%s\n" % EICAR.hex())
        self.clamd_socket = os.path.join(self.dir, "clamd.sock")
        self.socket = os.path.join(self.dir, "milter.sock")
        clamd_conf = os.path.join(self.dir, "clamd.conf")
        with open(clamd_conf, "w") as f:
            f.write("LocalSocket %s\nDatabaseDirectory %s\nForeground yes\nLogFile %s\n"
                    % (self.clamd_socket, db, os.path.join(self.dir, "clamd.log")))
        milter_conf = os.path.join(self.dir, "milter.conf")
        with open(milter_conf, "w") as f:
            f.write("MilterSocket unix:%s\nMilterSocketMode 666\nClamdSocket unix:%s\nForeground yes\n"
                    "LogFile %s\nOnInfected Reject\nAddHeader Replace\nUser root\n"
                    % (self.socket, self.clamd_socket, os.path.join(self.dir, "milter.log")))
        self.clamd = subprocess.Popen(["clamd", "-c", clamd_conf], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.milter = None
        self.milter_conf = milter_conf

    def wait(self, timeout=120):
        """clamd loads its database, then the milter starts."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not os.path.exists(self.clamd_socket):
            time.sleep(0.3)
        if not os.path.exists(self.clamd_socket):
            return False
        self.milter = subprocess.Popen(["clamav-milter", "-c", self.milter_conf], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while time.monotonic() < deadline and not os.path.exists(self.socket):
            time.sleep(0.3)
        return os.path.exists(self.socket)

    def stop(self):
        for process in (self.milter, self.clamd):
            if process is not None:
                process.kill()
                process.wait()


class OpenDmarc:
    """OpenDMARC as a milter on a loopback port, checking SPF itself and
    DMARC on OpenDKIM's results. It asks the resolver of
    /etc/resolv.conf, which has no port: it runs in a mount namespace of
    its own where a private resolv.conf names `dns_host` (port 53)."""

    def __init__(self, root, port, dns_host, trusted):
        self.dir = os.path.join(root, "opendmarc")
        os.makedirs(self.dir, exist_ok=True)
        ignore = os.path.join(self.dir, "ignore")
        with open(ignore, "w") as f:
            f.write("192.0.2.1\n")
        resolv = os.path.join(self.dir, "resolv.conf")
        with open(resolv, "w") as f:
            f.write("nameserver %s\noptions attempts:1 timeout:2\n" % dns_host)
        conf = os.path.join(self.dir, "opendmarc.conf")
        with open(conf, "w") as f:
            f.write("Socket inet:%d@127.0.0.1\nAuthservID opendmarc.interop.test\nTrustedAuthservIDs %s\n"
                    "IgnoreHosts %s\nSPFSelfValidate true\nRejectFailures true\nBackground false\n"
                    "Syslog false\nPidFile %s\n" % (port, trusted, ignore, os.path.join(self.dir, "pid")))
        self.port = port
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             'mount --bind "$0" /etc/resolv.conf && exec opendmarc -f -c "$1"', resolv, conf],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        self.process.kill()
        self.process.wait()


class FilteredYubin:
    """A yubin whose MX listener has the given [[filter]] tables."""

    def __init__(self, binary, root, name, dns_port, filters, free_ports, wait_for_port):
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        with open(os.path.join(self.dir, "users"), "w") as f:
            f.write("alice:{PLAIN}alice-pw\n")
        self.pop3, self.smtp, submission, submissions, pop3s = free_ports(5)
        config = os.path.join(self.dir, "yubin.toml")
        with open(config, "w") as f:
            f.write('hostname = "filtered.test"\ndata_dir = "%s"\n[server]\nallow_root = true\n' % self.dir)
            f.write('[pop3]\nlisten = ["127.0.0.1:%d"]\nlisten_tls = ["127.0.0.1:%d"]\n' % (self.pop3, pop3s))
            f.write('[smtp]\nlisten = ["127.0.0.1:%d"]\nsubmission = ["127.0.0.1:%d"]\nsubmissions = ["127.0.0.1:%d"]\n'
                    % (self.smtp, submission, submissions))
            f.write('[dns]\nresolver = "127.0.0.1:%d"\n' % dns_port)
            f.write(filters)
        self.log = open(os.path.join(self.dir, "yubin.log"), "ab")
        self.process = subprocess.Popen([binary, "serve", "--config", config], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=self.log)
        wait_for_port(self.smtp)

    def send(self, data):
        """None when accepted, else (code, text). The envelope sender is
        the From: address."""
        sender = re.search(rb"^From: [^<\r\n]*<([^>]+)>", data, re.M).group(1).decode()
        with smtplib.SMTP("127.0.0.1", self.smtp, timeout=120) as smtp:
            try:
                smtp.sendmail(sender, ["alice@filtered.test"], data)
                return None
            except smtplib.SMTPResponseException as error:
                return error.smtp_code, error.smtp_error.decode(errors="replace")

    def stored(self):
        """The messages in alice's maildrop, as bytes."""
        found = []
        for sub in ("new", "cur"):
            directory = os.path.join(self.dir, "mail", "alice", sub)
            if os.path.isdir(directory):
                for name in sorted(os.listdir(directory)):
                    with open(os.path.join(directory, name), "rb") as f:
                        found.append(f.read())
        return found

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=20)


def message(subject, body, key=None):
    """A message from news@signed.test, signed by dkimpy with `key`; without
    a key, from news@plain.test, a domain with no records."""
    domain = "signed.test" if key else "plain.test"
    data = ("From: News <news@%s>\r\nTo: <alice@filtered.test>\r\nSubject: %s\r\n"
            "Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <%s@%s>\r\n\r\n%s\r\n"
            % (domain, subject, subject.replace(" ", "-"), domain, body)).encode()
    if key is None:
        return data
    return verifiers.dkimpy_sign(data, key, "sel", "signed.test")


def eicar_message():
    """The EICAR test file as a MIME attachment."""
    import base64
    return ("From: <news@plain.test>\r\nTo: <alice@filtered.test>\r\nSubject: filter-eicar\r\n"
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n"
            "--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
            "--b1\r\nContent-Type: application/octet-stream; name=eicar.com\r\n"
            "Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=eicar.com\r\n\r\n"
            "%s\r\n--b1--\r\n" % base64.b64encode(EICAR).decode()).encode()


def run(binary, root, check, free_ports, wait_for_port):
    print("Content filters: clamav-milter, OpenDKIM and OpenDMARC as milters, rspamd over HTTP")
    root = os.path.join(root, "filters")
    os.makedirs(root, exist_ok=True)
    os.chmod(root, 0o755)
    key = os.path.join(root, "dkim.pem")
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", key, "2048"],
                   check=True, capture_output=True, timeout=60)
    der = subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True, timeout=60).stdout
    import base64
    records = {"sel._domainkey.signed.test": "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode(),
               # No SPF pass: DMARC passes only through the DKIM signature,
               # which OpenDMARC learns from OpenDKIM's field.
               "signed.test": "v=spf1 -all",
               "_dmarc.signed.test": "v=DMARC1; p=reject"}
    dns = verifiers.TxtServer(records)
    # The same records on port 53 of another loopback address, for
    # OpenDMARC's resolv.conf.
    dns53 = verifiers.TxtServer(records, ("127.0.0.154", 53))
    rspamd_ports = free_ports(3)
    rspamd = verifiers.Rspamd(root, dns.port, rspamd_ports)
    clamav = Clamav(root)
    opendkim_port = free_ports(1)[0]
    opendkim = verifiers.OpenDkim(root, records, opendkim_port)
    opendmarc_port = free_ports(1)[0]
    opendmarc = OpenDmarc(root, opendmarc_port, "127.0.0.154", "postfix.interop.test")
    yubins = []
    try:
        check(clamav.wait(), "clamd and clamav-milter are up")
        wait_for_port(opendkim_port)
        wait_for_port(opendmarc_port)
        check(rspamd.wait(free_ports), "rspamd is up")
        filters = ('[[filter]]\nkind = "milter"\naddress = "unix:%s"\n'
                   '[[filter]]\nkind = "milter"\naddress = "127.0.0.1:%d"\n'
                   '[[filter]]\nkind = "milter"\naddress = "inet:127.0.0.1:%d"\n'
                   '[[filter]]\nkind = "rspamd"\naddress = "127.0.0.1:%d"\n'
                   % (clamav.socket, opendkim_port, opendmarc_port, rspamd.port))
        yubin = FilteredYubin(binary, root, "yubin-filtered", dns.port, filters, free_ports, wait_for_port)
        yubins.append(yubin)

        clean = yubin.send(message("filter-clean", "nothing to see here", key))
        check(clean is None, "a clean, signed message passes all four filters (%s)" % (clean,))
        stored = yubin.stored()
        check(len(stored) == 1, "it is stored (%d)" % len(stored))
        text = stored[0].decode(errors="replace").replace("\n\t", " ").replace("\n ", " ") if stored else ""
        check("X-Virus-Scanned: clamav-milter" in text, "clamav-milter's X-Virus-Scanned field is added")
        check("Authentication-Results: postfix.interop.test" in text and "dkim=pass" in text,
              "OpenDKIM's Authentication-Results with dkim=pass is added (%s)" % text[:800])
        check("Authentication-Results: opendmarc.interop.test; dmarc=pass" in text,
              "OpenDMARC, after OpenDKIM, finds DMARC passing (it saw OpenDKIM's result) (%s)" % text[:1200])
        check("X-Spamd-Result: default: False" in text, "rspamd's X-Spamd-Result is added")

        virus = yubin.send(eicar_message())
        check(virus is not None and 500 <= virus[0] < 600,
              "clamav-milter refuses the EICAR test file with 5xx (%s)" % (virus,))
        gtube = yubin.send(message("filter-gtube", GTUBE))
        check(gtube is not None and gtube[0] == 554 and "5.7.1" in gtube[1],
              "rspamd refuses the GTUBE message with 554 5.7.1 (%s)" % (gtube,))
        check(len(yubin.stored()) == 1, "neither refused message is stored")

        # rspamd's proxy worker speaks the milter protocol (asking for
        # every action and every no-reply step): the same client talks to it.
        proxied = FilteredYubin(binary, root, "yubin-rspamd-milter", dns.port,
                                '[[filter]]\nkind = "milter"\naddress = "127.0.0.1:%d"\n' % rspamd.proxy_port,
                                free_ports, wait_for_port)
        yubins.append(proxied)
        via_milter = proxied.send(message("filter-proxy-gtube", GTUBE))
        check(via_milter is not None and 500 <= via_milter[0] < 600,
              "rspamd's milter proxy refuses the GTUBE message with 5xx (%s)" % (via_milter,))
        clean_milter = proxied.send(message("filter-proxy-clean", "nothing to see here", key))
        check(clean_milter is None and len(proxied.stored()) == 1,
              "rspamd's milter proxy passes a clean message (%s)" % (clean_milter,))

        # rspamd down.
        rspamd.stop()
        down = yubin.send(message("filter-rspamd-down", "hello"))
        check(down is not None and down[0] == 451 and "4.7.1" in down[1],
              "rspamd down under on_failure = tempfail: 451 4.7.1 (%s)" % (down,))
        lenient = FilteredYubin(binary, root, "yubin-lenient", dns.port,
                                '[[filter]]\nkind = "rspamd"\naddress = "127.0.0.1:%d"\non_failure = "accept"\n'
                                % rspamd.port, free_ports, wait_for_port)
        yubins.append(lenient)
        accepted = lenient.send(message("filter-rspamd-down", "hello"))
        check(accepted is None and len(lenient.stored()) == 1,
              "rspamd down under on_failure = accept: delivered (%s)" % (accepted,))
        with open(os.path.join(yubin.dir, "yubin.log"), "rb") as f:
            log = f.read().decode(errors="replace")
        check("filters=\"milter unix:" in log and "rspamd no action" in log, "the delivery line names the filters' answers")
    finally:
        for y in yubins:
            y.stop()
        rspamd.stop()
        opendkim.stop()
        opendmarc.stop()
        clamav.stop()
        dns.stop()
        dns53.stop()
