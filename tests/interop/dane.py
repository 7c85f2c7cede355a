"""DANE (RFC 7672) through real DNSSEC, for the interop script.

A zone signed with ldns-signzone is served by NSD and validated by unbound,
the resolver yubin asks; an unsigned zone is served next to it. yubin A
relays to yubin B, whose certificate the signed zone's TLSA records name:

- ee.dane.test: a DANE-EE record for B's key: delivered over verified TLS;
- bad.dane.test: a record for another key: deferred, never in plaintext;
- bogus.dane.test: a record whose signature was changed after signing, so
  unbound answers SERVFAIL: deferred, the MX host not used;
- plain.test: TLSA records in the unsigned zone (for another key): not
  believed, delivered with opportunistic TLS.
"""
import hashlib
import os
import smtplib
import ssl
import subprocess
import time

SIGNED = "dane.test"
UNSIGNED = "plain.test"


def spki_sha256(cert_path):
    """The SHA-256 of a certificate's SubjectPublicKeyInfo (TLSA 3 1 1)."""
    pubkey = subprocess.run(["openssl", "x509", "-in", cert_path, "-noout", "-pubkey"],
                            capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pubkey,
                         capture_output=True, check=True).stdout
    return hashlib.sha256(der).hexdigest()


def write_yubin(directory, hostname, ports, user, smtp_extra, extra):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "users"), "w") as f:
        f.write("%s:{PLAIN}%s-pw\n" % (user, user))
    config = os.path.join(directory, "yubin.toml")
    with open(config, "w") as f:
        f.write('hostname = "%s"\ndata_dir = "%s"\n[server]\nallow_root = true\n' % (hostname, directory))
        f.write('[pop3]\nlisten = ["127.0.0.1:%d"]\nlisten_tls = ["127.0.0.1:%d"]\n' % tuple(ports[:2]))
        f.write('[smtp]\nlisten = ["127.0.0.1:%d"]\nsubmission = ["127.0.0.1:%d"]\n'
                'submissions = ["127.0.0.1:%d"]\n' % tuple(ports[2:5]))
        f.write(smtp_extra)
        f.write('[pop_before_smtp]\npolicy_listen = ["127.0.0.1:%d"]\n' % ports[5])
        f.write(extra)
    return config


def start(argv, log_path):
    log = open(log_path, "ab")
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)


def sign_zone(directory, zone_text):
    """Signs dane.test with a fresh KSK and ZSK (ECDSA P-256); returns the
    signed zone file and the KSK's DNSKEY file (unbound's trust anchor)."""
    with open(os.path.join(directory, SIGNED + ".zone"), "w") as f:
        f.write(zone_text)
    ksk = subprocess.run(["ldns-keygen", "-a", "ECDSAP256SHA256", "-k", SIGNED], cwd=directory,
                         capture_output=True, text=True, check=True).stdout.strip()
    zsk = subprocess.run(["ldns-keygen", "-a", "ECDSAP256SHA256", SIGNED], cwd=directory,
                         capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["ldns-signzone", "-f", SIGNED + ".signed", SIGNED + ".zone", zsk, ksk],
                   cwd=directory, capture_output=True, check=True)
    return os.path.join(directory, SIGNED + ".signed"), os.path.join(directory, ksk + ".key")


def break_signature(signed, owner):
    """Changes one character in the middle of the RRSIG over `owner`'s
    TLSA records: the zone stays well-formed, the signature is bogus."""
    lines = open(signed).read().splitlines()
    changed = 0
    for i, line in enumerate(lines):
        fields = line.split()
        if len(fields) > 5 and fields[0] == owner and fields[3] == "RRSIG" and fields[4] == "TLSA":
            signature = fields[-1]
            middle = len(signature) // 2
            fields[-1] = signature[:middle] + ("A" if signature[middle] != "A" else "B") + signature[middle + 1:]
            lines[i] = "\t".join(fields)
            changed += 1
    with open(signed, "w") as f:
        f.write("\n".join(lines) + "\n")
    return changed


def drill(port, name, kind):
    """unbound's answer, as drill prints its header: (rcode, flags)."""
    out = subprocess.run(["drill", "-p", str(port), "-D", name, kind, "@127.0.0.1"],
                         capture_output=True, text=True, timeout=30).stdout
    rcode = out.split("rcode: ", 1)[-1].split(",", 1)[0]
    flags = out.split("flags: ", 1)[-1].split(";", 1)[0].split()
    return rcode, flags


def run(binary, root, check, free_ports, wait_for_port):
    print("DANE: signed zones (ldns-signzone) served by NSD, validated by unbound")
    directory = os.path.join(root, "dane")
    os.makedirs(directory, exist_ok=True)
    ports = free_ports(14)
    nsd_port, unbound_port, b_ports, a_ports = ports[0], ports[1], ports[2:8], ports[8:14]
    b_smtp = b_ports[2]
    domains = ["ee.dane.test", "bad.dane.test", "bogus.dane.test", UNSIGNED]
    processes = []
    try:
        b_dir = os.path.join(directory, "b")
        # B is only the TLS endpoint here: its own sender checks would ask
        # unbound about a.test, which it cannot resolve without the Internet.
        b_config = write_yubin(b_dir, "b.dane.test", b_ports, "bob",
                               "local_domains = [%s]\n" % ", ".join('"%s"' % d for d in domains),
                               "[inbound]\nauthentication = false\n")
        b = start([binary, "serve", "--config", b_config], os.path.join(directory, "b.log"))
        processes.append(b)
        wait_for_port(b_smtp)
        key = spki_sha256(os.path.join(b_dir, "tls", "cert.pem"))
        other = hashlib.sha256(b"another key").hexdigest()

        tlsa = "_%d._tcp" % b_smtp
        signed_zone = (
            "$ORIGIN dane.test.\n$TTL 300\n"
            "@ IN SOA ns.dane.test. admin.dane.test. 1 3600 600 86400 300\n"
            "@ IN NS ns.dane.test.\nns IN A 127.0.0.1\n"
            "ee IN MX 10 mx-ee.dane.test.\nmx-ee IN A 127.0.0.1\n"
            "%(t)s.mx-ee IN TLSA 3 1 1 %(key)s\n"
            "bad IN MX 10 mx-bad.dane.test.\nmx-bad IN A 127.0.0.1\n"
            "%(t)s.mx-bad IN TLSA 3 1 1 %(other)s\n"
            "bogus IN MX 10 mx-bogus.dane.test.\nmx-bogus IN A 127.0.0.1\n"
            "%(t)s.mx-bogus IN TLSA 3 1 1 %(key)s\n" % {"t": tlsa, "key": key, "other": other})
        signed, anchor = sign_zone(directory, signed_zone)
        broken = break_signature(signed, "%s.mx-bogus.dane.test." % tlsa)
        check(broken == 1, "DANE: one TLSA signature of mx-bogus.dane.test changed (%d)" % broken)
        plain = os.path.join(directory, UNSIGNED + ".zone")
        with open(plain, "w") as f:
            f.write("$ORIGIN plain.test.\n$TTL 300\n"
                    "@ IN SOA ns.plain.test. admin.plain.test. 1 3600 600 86400 300\n"
                    "@ IN NS ns.plain.test.\nns IN A 127.0.0.1\n"
                    "@ IN MX 10 mx.plain.test.\nmx IN A 127.0.0.1\n"
                    "%s.mx IN TLSA 3 1 1 %s\n" % (tlsa, other))

        nsd_conf = os.path.join(directory, "nsd.conf")
        with open(nsd_conf, "w") as f:
            f.write("server:\n  ip-address: 127.0.0.1@%d\n  port: %d\n  username: \"\"\n  chroot: \"\"\n"
                    "  zonesdir: \"%s\"\n  pidfile: \"%s/nsd.pid\"\n  database: \"\"\n"
                    "  xfrdfile: \"%s/xfrd.state\"\n  xfrdir: \"%s\"\n  zonelistfile: \"%s/zone.list\"\n"
                    "  verbosity: 1\n  do-ip6: no\nremote-control:\n  control-enable: no\n"
                    "zone:\n  name: %s\n  zonefile: \"%s\"\nzone:\n  name: %s\n  zonefile: \"%s\"\n"
                    % (nsd_port, nsd_port, directory, directory, directory, directory, directory,
                       SIGNED, signed, UNSIGNED, plain))
        processes.append(start(["nsd", "-d", "-c", nsd_conf], os.path.join(directory, "nsd.log")))
        wait_for_port(nsd_port)

        unbound_conf = os.path.join(directory, "unbound.conf")
        with open(unbound_conf, "w") as f:
            f.write("server:\n  interface: 127.0.0.1@%d\n  port: %d\n  do-daemonize: no\n  username: \"\"\n"
                    "  chroot: \"\"\n  directory: \"%s\"\n  pidfile: \"%s/unbound.pid\"\n"
                    "  use-syslog: no\n  logfile: \"\"\n  do-ip6: no\n  do-not-query-localhost: no\n"
                    "  module-config: \"validator iterator\"\n  trust-anchor-file: \"%s\"\n"
                    "  domain-insecure: \"%s\"\n  val-log-level: 2\n  qname-minimisation: no\n"
                    "  access-control: 127.0.0.0/8 allow\n"
                    # unbound answers NXDOMAIN for the special-use name test.
                    # (RFC 6761) unless told otherwise.
                    "  local-zone: \"test.\" nodefault\n"
                    "stub-zone:\n  name: \"%s\"\n  stub-addr: 127.0.0.1@%d\n"
                    "stub-zone:\n  name: \"%s\"\n  stub-addr: 127.0.0.1@%d\n"
                    % (unbound_port, unbound_port, directory, directory, anchor, UNSIGNED,
                       SIGNED, nsd_port, UNSIGNED, nsd_port))
        checked = subprocess.run(["unbound-checkconf", unbound_conf], capture_output=True, text=True)
        check(checked.returncode == 0, "DANE: unbound's configuration is valid (%s)" % checked.stdout.strip())
        processes.append(start(["unbound", "-d", "-c", unbound_conf], os.path.join(directory, "unbound.log")))
        wait_for_port(unbound_port)

        # The resolver itself, before yubin asks it.
        rcode, flags = drill(unbound_port, "%s.mx-ee.dane.test" % tlsa, "TLSA")
        check(rcode == "NOERROR" and "ad" in flags,
              "DANE: unbound validates mx-ee's TLSA records (%s, %s)" % (rcode, flags))
        rcode, flags = drill(unbound_port, "%s.mx-bogus.dane.test" % tlsa, "TLSA")
        check(rcode == "SERVFAIL", "DANE: unbound refuses the changed signature (%s)" % rcode)
        rcode, flags = drill(unbound_port, "%s.mx.plain.test" % tlsa, "TLSA")
        check(rcode == "NOERROR" and "ad" not in flags,
              "DANE: the unsigned zone answers without AD (%s, %s)" % (rcode, flags))

        a_config = write_yubin(os.path.join(directory, "a"), "a.test", a_ports, "alice", "",
                               '[dns]\nresolver = "127.0.0.1:%d"\n[queue]\nmx_port = %d\nfirst_retry = "1h"\n'
                               % (unbound_port, b_smtp))
        a_log = os.path.join(directory, "a.log")
        a = start([binary, "serve", "--config", a_config], a_log)
        processes.append(a)
        wait_for_port(a_ports[3])
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", a_ports[3], timeout=30) as smtp:
            smtp.starttls(context=context)
            smtp.login("alice", "alice-pw")
            for domain in domains:
                smtp.sendmail("alice@a.test", ["bob@%s" % domain],
                              "From: alice@a.test\r\nTo: bob@%s\r\nSubject: to %s\r\n\r\nDANE\r\n"
                              % (domain, domain))

        def delivered():
            found = []
            for sub in ("new", "cur"):
                folder = os.path.join(b_dir, "mail", "bob", sub)
                if os.path.isdir(folder):
                    for name in os.listdir(folder):
                        with open(os.path.join(folder, name), "rb") as f:
                            found.append(f.read())
            return found

        def a_text():
            with open(a_log, "rb") as f:
                return f.read().decode(errors="replace")

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                len(delivered()) >= 2 and a_text().count(" deferred id=") >= 2):
            time.sleep(0.2)
        log = a_text()
        got = delivered()
        for domain in ("ee.dane.test", UNSIGNED):
            check(any(b"Subject: to " + domain.encode() in m and b"with ESMTPS" in m for m in got),
                  "DANE: mail for %s delivered over TLS" % domain)
        check(any("Verified TLS connection established" in line and "mx-ee.dane.test" in line
                  and 'policy="dane"' in line for line in log.splitlines()),
              "DANE: the certificate of mx-ee.dane.test matched its validated TLSA record")
        check(any("Anonymous TLS connection established" in line and "mx.plain.test" in line
                  for line in log.splitlines()),
              "DANE: TLSA records of the unsigned zone are not used (opportunistic TLS)")
        check("rcpt=bob@bad.dane.test" in log and "matches none of the host's TLSA records" in log,
              "DANE: a certificate the TLSA records do not name defers the mail")
        check("rcpt=bob@bogus.dane.test" in log and "DANE: mx-bogus.dane.test: TLSA lookup failed" in log,
              "DANE: a bogus TLSA signature defers the mail")
        check(not any(b"Subject: to bad.dane.test" in m or b"Subject: to bogus.dane.test" in m for m in got),
              "DANE: nothing reached B for bad.dane.test or bogus.dane.test, in plaintext or otherwise")
        check("trying again without TLS" not in log, "DANE: no plaintext retry")
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
