"""yubin behind HAProxy (issue 16's PROXY protocol), for the interop script.

HAProxy from Debian relays POP3 and SMTP to one yubin node with
`send-proxy-v2`; yubin takes PROXY headers from loopback only. Clients
connect through HAProxy from 127.0.0.2 and 127.0.0.3:

- a POP3 login from 127.0.0.2 grants POP-before-SMTP relaying to
  127.0.0.2, which may then relay through SMTP, while 127.0.0.3 may not;
- yubin's log names the clients (rip=127.0.0.2), not HAProxy;
- a connection straight to yubin, without a header, gets no greeting.

Two nodes sharing one grant, on PostgreSQL, are in postgres.py.
"""
import os
import smtplib
import socket
import subprocess
import time


def run(binary, root, check, free_ports, wait_for_port):
    print("PROXY protocol: yubin behind HAProxy (send-proxy-v2)")
    root = os.path.join(root, "haproxy")
    os.makedirs(root, exist_ok=True)
    os.chmod(root, 0o755)
    with open(os.path.join(root, "users"), "w") as f:
        f.write("alice:{PLAIN}alice-pw\n")
    pop3, pop3s, smtp, submission, submissions, front_pop3, front_smtp = free_ports(7)
    config = os.path.join(root, "yubin.toml")
    with open(config, "w") as f:
        f.write('hostname = "proxied.test"\ndata_dir = "%s"\n[server]\nallow_root = true\n' % root)
        f.write('[pop3]\nlisten = ["127.0.0.1:%d"]\nlisten_tls = ["127.0.0.1:%d"]\n'
                'auth_failure_delay = "100ms"\nproxy_protocol = ["127.0.0.1/32"]\n' % (pop3, pop3s))
        f.write('[smtp]\nlisten = ["127.0.0.1:%d"]\nsubmission = ["127.0.0.1:%d"]\nsubmissions = ["127.0.0.1:%d"]\n'
                'proxy_protocol = ["127.0.0.1/32"]\n' % (smtp, submission, submissions))
        # Relayed mail goes nowhere and stays queued.
        f.write('[queue]\nroutes = { "*" = "127.0.0.1:9" }\nfirst_retry = "1h"\n')
        f.write('[inbound]\nauthentication = false\n')
    haproxy_config = os.path.join(root, "haproxy.cfg")
    with open(haproxy_config, "w") as f:
        f.write("global\n    maxconn 100\n"
                "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n"
                "frontend pop3\n    bind 127.0.0.1:%d\n    default_backend yubin_pop3\n"
                "backend yubin_pop3\n    server a 127.0.0.1:%d send-proxy-v2\n"
                "frontend smtp\n    bind 127.0.0.1:%d\n    default_backend yubin_smtp\n"
                "backend yubin_smtp\n    server a 127.0.0.1:%d send-proxy-v2\n"
                % (front_pop3, pop3, front_smtp, smtp))
    log_path = os.path.join(root, "yubin.log")
    log = open(log_path, "ab")
    yubin = subprocess.Popen([binary, "serve", "--config", config], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=log)
    haproxy = subprocess.Popen(["haproxy", "-db", "-f", haproxy_config], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for port in (pop3, smtp, front_pop3, front_smtp):
            wait_for_port(port)

        sock = socket.create_connection(("127.0.0.1", front_pop3), timeout=30, source_address=("127.0.0.2", 0))
        replies = sock.makefile("rb")
        greeting = replies.readline()
        answers = []
        for line in (b"USER alice", b"PASS alice-pw", b"QUIT"):
            sock.sendall(line + b"\r\n")
            answers.append(replies.readline())
        sock.close()
        check(greeting.startswith(b"+OK") and answers[1].startswith(b"+OK"),
              "a POP3 login from 127.0.0.2 through HAProxy (%r)" % answers)

        def relay(source):
            with smtplib.SMTP("127.0.0.1", front_smtp, timeout=30, source_address=(source, 0)) as s:
                s.ehlo("client.example")
                s.mail("alice@proxied.test")
                code, text = s.rcpt("carol@elsewhere.example")
                return code, text.decode(errors="replace")

        granted = relay("127.0.0.2")
        check(granted[0] == 250, "127.0.0.2, granted by its login, relays through HAProxy (%s)" % (granted,))
        other = relay("127.0.0.3")
        check(other[0] == 554 and "Relay access denied" in other[1],
              "127.0.0.3, with no login, may not (%s)" % (other,))

        # Straight to yubin, no header: no greeting.
        direct = socket.create_connection(("127.0.0.1", smtp), timeout=30)
        direct.sendall(b"EHLO x\r\n")
        try:
            said = direct.recv(100)
        except ConnectionResetError:
            said = b""
        direct.close()
        check(said == b"", "a connection without a PROXY header gets no greeting (%r)" % said)

        time.sleep(0.5)
        with open(log_path, "rb") as f:
            text = f.read().decode(errors="replace")
        check("pop-before-smtp grant" in text and "rip=127.0.0.2" in text,
              "the log names the client, not HAProxy")
        check("connection refused: PROXY header" in text, "the refused connection is logged")
    finally:
        haproxy.terminate()
        haproxy.wait(timeout=20)
        yubin.terminate()
        yubin.wait(timeout=20)
