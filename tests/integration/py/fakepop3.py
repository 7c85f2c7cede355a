"""A POP3 server that misbehaves on purpose, for `yubin fetch`'s tests.

    python3 fakepop3.py MODE MESSAGES LOG

MESSAGES is a JSON list of messages (strings, LF line ends; sent with CRLF
and dot-stuffed). Every command line received is appended to LOG as one
JSON line ({"connection": n, "line": "..."}), and every deletion committed
at QUIT as {"connection": n, "committed": [numbers]} (the messages'
original numbers; they are gone for later connections), so a test can check
that no password crossed in clear and what was removed. Prints the port
once listening. MODE says how it misbehaves (see `behave` and the checks
in `serve`)."""
import json
import socket
import sys
import threading
import time

mode, messages_path, log_path = sys.argv[1], sys.argv[2], sys.argv[3]
with open(messages_path) as f:
    mailbox = [m.encode("utf-8", "surrogateescape") for m in json.load(f)]
lock = threading.Lock()
connections = [0]
# The original numbers (1-based) of the messages still in the mailbox;
# deletions committed at QUIT remove them for later connections.
alive = list(range(1, len(mailbox) + 1))


def record(entry):
    with lock:
        with open(log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")


def crlf(message):
    """CRLF line ends: the form whose length LIST reports (RFC 1939 §5)."""
    lines = message.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join(line + b"\r\n" for line in lines)


def wire(message):
    """CRLF line ends, dot-stuffed, no terminator."""
    return b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n"
                    for l in crlf(message).split(b"\r\n")[:-1])


def uidl_lines(live):
    """`live[n - 1]` is the original number of message n this session."""
    out = []
    for n, orig in enumerate(live, 1):
        # uid-reuse: ids by position, as a broken server might hand them out.
        uid = b"uid-%d" % (n if mode == "uid-reuse" else orig)
        if mode == "hostile-uidl":
            # 1 good, 2 a 100 KB uid, 3 control characters, 4 no uid, 5 and 6
            # share one uid, 7 a 71-character uid, 8 good.
            bad = {2: b"u" * 100_000, 3: b"ctl\x01\x1b[2J", 4: None, 5: b"same", 6: b"same",
                   7: b"x" * 71}
            uid = bad.get(orig, b"good-%d" % orig)
        out.append(b"%d" % n if uid is None else b"%d %s" % (n, uid))
        if mode == "hostile-uidl" and orig == 8:
            # The same number twice, with two different ids.
            out.append(b"%d other-8" % n)
    return out


def serve(conn, number):
    f = conn.makefile("rb")
    deleted = set()
    with lock:
        live = list(alive)

    def message(n):
        return mailbox[live[n - 1] - 1]

    def send(data):
        conn.sendall(data if isinstance(data, bytes) else data.encode() + b"\r\n")

    def line():
        data = f.readline(1 << 20)
        if not data:
            raise EOFError
        text = data.rstrip(b"\r\n").decode("utf-8", "replace")
        record({"connection": number, "line": text})
        return text

    send("+OK fake POP3 ready <1234.5678@fake.example>"
         if mode != "apop-bad-challenge" else "+OK fake POP3 ready <nonsense>")
    while True:
        words = line().split(" ")
        verb, args = words[0].upper(), words[1:]
        if verb == "CAPA":
            if mode == "capa-fails":
                send("-ERR no CAPA here")
                continue
            caps = ["USER", "TOP", "SASL PLAIN CRAM-MD5"]
            # An old server: no UIDL, and no PIPELINING either (so the
            # client's one-command-at-a-time path is exercised).
            if mode not in ("no-uidl", "no-uidl-no-top", "uidl-vanishes"):
                caps += ["UIDL", "PIPELINING"]
            if mode == "no-uidl-no-top":
                caps.remove("TOP")
            if mode == "expire-short":
                caps.append("EXPIRE 0")
            if mode not in ("no-stls", "capa-fails"):
                caps.append("STLS")
            send("+OK\r\n" + "\r\n".join(caps) + "\r\n.")
        elif verb == "STLS":
            if mode in ("stls-refused", "capa-fails", "no-stls"):
                send("-ERR not today")
            elif mode == "stls-inject":
                send(b"+OK Begin TLS\r\n+OK fake\r\n")
            elif mode == "stls-stall":
                send("+OK Begin TLS")
                time.sleep(30)
                return
            else:
                send("-ERR not implemented here")
        elif verb == "USER":
            if mode == "huge-err":
                send(b"-ERR \x1b[31m" + b"%n" * (5 * 1024 * 1024) + b"\r\n")
            else:
                send("+OK")
        elif verb == "PASS":
            if mode == "in-use" and connections[0] == 1:
                send("-ERR [IN-USE] another session holds the maildrop")
            elif mode == "login-delay":
                send("-ERR [LOGIN-DELAY] wait 15 minutes between logins")
            elif " ".join(args) == "alice-pw":
                send("+OK logged in")
            else:
                send("-ERR [AUTH] wrong")
        elif verb == "AUTH":
            if mode == "sasl-bad-base64":
                send("+ this is not base64!")
            elif mode == "sasl-err-challenge":
                send("-ERR no challenge for you")
            else:
                send("-ERR mechanism unsupported")
        elif verb == "APOP":
            send("-ERR no")
        elif verb == "STAT":
            send("+OK %d %d" % (len(live), sum(len(crlf(mailbox[o - 1])) for o in live)))
        elif verb == "LIST":
            if mode == "endless-list":
                send("+OK")
                chunk = b"".join(b"%d 100\r\n" % (i + 1) for i in range(100_000))
                try:
                    for _ in range(100):
                        conn.sendall(chunk)
                except OSError:
                    return
                send(".")
                continue
            body = b""
            for n in range(1, len(live) + 1):
                if n in deleted:
                    continue
                size = len(crlf(message(n)))
                if mode in ("short-retr", "expire-short") and n == 1:
                    size += 10
                body += b"%d %d\r\n" % (n, size)
            send(b"+OK\r\n" + body + b".\r\n")
        elif verb == "UIDL":
            if mode in ("no-uidl", "no-uidl-no-top"):
                send("-ERR no UIDL")
                continue
            if mode == "uidl-vanishes" and number > 1:
                send("-ERR unknown command")
                continue
            if mode == "uidl-temp":
                send("-ERR [SYS/TEMP] index busy, try later")
                continue
            send(b"+OK\r\n" + b"".join(l + b"\r\n" for l in uidl_lines(live)) + b".\r\n")
        elif verb in ("RETR", "TOP"):
            n = int(args[0])
            data = wire(message(n))
            if verb == "TOP" and mode == "no-uidl-no-top":
                send("-ERR unknown command")
                continue
            if verb == "TOP":
                head = data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
                send(b"+OK\r\n" + head + b".\r\n")
                continue
            if mode == "drop-mid-retr" and n == 2:
                send(b"+OK\r\n" + data[: len(data) // 2])
                conn.close()
                return
            if mode == "no-terminator" and n == 2:
                send(b"+OK\r\n" + data)
                conn.shutdown(socket.SHUT_WR)
                time.sleep(1)
                return
            if mode == "long-retr" and n == 2:
                send(b"+OK\r\n")
                try:
                    for _ in range(10_000):
                        conn.sendall(b"y" * 999 + b"\r\n")
                except OSError:
                    return
                send(".")
                continue
            send(b"+OK\r\n" + data + b".\r\n")
        elif verb == "DELE":
            if mode == "dele-refused":
                send("-ERR [SYS/PERM] the mailbox is read-only")
                continue
            deleted.add(int(args[0]))
            send("+OK marked")
        elif verb == "RSET":
            deleted.clear()
            send("+OK")
        elif verb == "NOOP":
            send("+OK")
        elif verb == "QUIT":
            committed = sorted(live[n - 1] for n in deleted)
            with lock:
                for orig in committed:
                    alive.remove(orig)
            record({"connection": number, "committed": committed})
            send("+OK bye")
            return
        else:
            send("-ERR unknown command")


def main():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        connections[0] += 1
        number = connections[0]

        def run(conn=conn, number=number):
            try:
                serve(conn, number)
            except (EOFError, OSError):
                pass
            finally:
                try:
                    conn.close()
                except OSError:
                    pass

        threading.Thread(target=run, daemon=True).start()


main()
