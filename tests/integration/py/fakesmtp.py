"""A misbehaving SMTP server for the delivery engine's fault tests.

    python3 fakesmtp.py PORT MODE LOG

MODE says how it misbehaves (see `behave`). Every message it receives (the
DATA content, dot-unstuffed) is appended to LOG as one JSON line, with the
envelope and the connection number, so a test can count deliveries,
duplicates included. Prints "ready PORT" once listening (PORT 0 picks a
free one, so no other process can take it between choosing and binding)."""
import json
import socket
import sys
import threading
import time

port, mode, log_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()
connections = [0]


def record(entry):
    with lock:
        with open(log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")


def serve(conn, number):
    f = conn.makefile("rb")

    def send(text):
        conn.sendall(text.encode() + b"\r\n")

    def line():
        data = f.readline()
        if not data:
            raise EOFError
        return data.rstrip(b"\r\n").decode("utf-8", "replace")

    record({"connection": number, "event": "connect"})
    if mode == "tarpit":
        time.sleep(3600)
    if mode == "trickle-greeting":
        for byte in b"220 fake.test ESMTP\r\n":
            conn.sendall(bytes([byte]))
            time.sleep(0.3)
    else:
        send("220 fake.test ESMTP")
    sender, recipients = None, []
    while True:
        command = line()
        verb = command.split(" ", 1)[0].upper()
        record({"connection": number, "event": "command", "line": command})
        if verb in ("EHLO", "HELO"):
            if mode == "broken-starttls":
                send("250-fake.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME")
            else:
                send("250-fake.test\r\n250-PIPELINING\r\n250 8BITMIME")
        elif verb == "STARTTLS" and mode == "broken-starttls":
            # Agree, then speak no TLS at all: the handshake fails.
            send("220 2.0.0 go ahead")
            conn.sendall(b"this is not TLS\r\n")
            conn.close()
            return
        elif verb == "MAIL":
            if mode == "4xx-mail-once" and number == 1:
                send("451 4.3.0 try again later")
                continue
            sender = command[10:]
            send("250 2.1.0 ok")
        elif verb == "RCPT":
            if sender is None:
                send("503 5.5.1 MAIL first")
                continue
            recipients.append(command[8:])
            if mode == "slow-rcpt":
                time.sleep(0.6)
            send("250 2.1.5 ok")
        elif verb == "DATA":
            if not recipients:
                send("554 5.5.1 no valid recipients")
                continue
            send("354 go ahead")
            if mode == "stall-data-once" and number == 1:
                # Take a line, then nothing more: the sender is stuck
                # mid-DATA until it gives up or dies.
                f.readline()
                record({"connection": number, "event": "stalled"})
                time.sleep(3600)
            lines, raw = [], b""
            while True:
                data = f.readline()
                if not data:
                    raise EOFError
                raw += data
                text = data.rstrip(b"\r\n").decode("utf-8", "replace")
                if data == b".\r\n":
                    break
                lines.append(text[1:] if text.startswith(".") else text)
            record({"connection": number, "event": "message", "from": sender,
                    "to": recipients, "content": "\r\n".join(lines) + "\r\n",
                    "raw": raw.hex()})
            if mode == "drop-after-dot-once" and number == 1:
                conn.close()
                return
            if mode == "slow-250":
                time.sleep(3)
            if mode == "silent-after-dot":
                time.sleep(3600)
            send("250 2.0.0 queued")
            sender, recipients = None, []
        elif verb == "QUIT":
            send("221 bye")
            conn.close()
            return
        elif verb == "RSET":
            sender, recipients = None, []
            send("250 ok")
        else:
            send("502 5.5.1 not here")


listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(50)
print("ready %d" % listener.getsockname()[1], flush=True)
while True:
    conn, _ = listener.accept()
    connections[0] += 1
    number = connections[0]

    def run(conn=conn, number=number):
        try:
            serve(conn, number)
        except (EOFError, OSError):
            pass

    threading.Thread(target=run, daemon=True).start()
