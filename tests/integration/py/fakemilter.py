"""A scripted milter (the filter side of the Sendmail milter protocol) for
the content-filter tests.

    python3 fakemilter.py MODE LOG

Negotiates version 6 asking to add and change header fields and to
quarantine, answers "continue" to every step, and at end of message does
what MODE says (see `end_of_message`). Every packet it receives is
appended to LOG as a JSON line (command letter and data as latin-1 text),
so a test can see what the MTA sent. Prints "ready PORT" once listening
on a free port."""
import json
import socket
import struct
import sys
import threading

mode, log_path = sys.argv[1], sys.argv[2]
lock = threading.Lock()


def record(code, data):
    with lock:
        with open(log_path, "a") as f:
            f.write(json.dumps({"code": chr(code), "data": data.decode("latin-1")}) + "\n")


def read_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def packet(code, data=b""):
    return struct.pack(">I", len(data) + 1) + code + data


def end_of_message():
    """The answers at end of message for MODE."""
    if mode == "tag":
        return (packet(b"h", b"X-Milter\0scanned by fakemilter\0")
                + packet(b"m", struct.pack(">I", 1) + b"X-Remove-Me\0\0")
                + packet(b"q", b"looks like spam\0")
                + packet(b"c"))
    if mode == "reject":
        return packet(b"y", b"554 5.7.1 Virus found: Test-Signature\0")
    if mode == "tempfail":
        return packet(b"t")
    if mode == "discard":
        return packet(b"d")
    return packet(b"c")


def serve(conn):
    try:
        while True:
            (length,) = struct.unpack(">I", read_exact(conn, 4))
            body = read_exact(conn, length)
            code, data = body[0], body[1:]
            record(code, data)
            if mode == "silent":
                continue
            c = chr(code)
            if c == "O":
                # Version 6; add headers, change headers, quarantine; every step.
                conn.sendall(packet(b"O", struct.pack(">III", 6, 0x31, 0)))
            elif c == "E":
                conn.sendall(end_of_message())
            elif c in "CHMRTLNB":
                conn.sendall(packet(b"c"))
            elif c == "Q":
                return
    except (EOFError, OSError):
        pass
    finally:
        conn.close()


listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(16)
print("ready %d" % listener.getsockname()[1], flush=True)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
