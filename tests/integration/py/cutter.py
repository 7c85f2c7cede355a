"""A TCP forwarder to HOST PORT (the arguments) whose line can be cut
without a word, as a cable is: after SIGUSR1 nothing is forwarded any
more, the connections stay open and new ones are accepted and left
hanging, so the other end learns nothing but silence. SIGUSR2 mends the
line: what was left hanging is closed, and new connections are forwarded
again. Prints `ready PORT` once it listens."""
import signal
import socket
import sys
import threading
import time

target = (sys.argv[1], int(sys.argv[2]))
cut = threading.Event()
lock = threading.Lock()
open_sockets = []


def close(*sockets):
    for s in sockets:
        try:
            s.close()
        except OSError:
            pass


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            while cut.is_set():
                time.sleep(0.05)
            dst.sendall(data)
    except OSError:
        pass
    close(src, dst)


def cut_line(*_):
    cut.set()


def mend_line(*_):
    with lock:
        hanging = list(open_sockets)
        open_sockets.clear()
    for s in hanging:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        close(s)
    cut.clear()


signal.signal(signal.SIGUSR1, cut_line)
signal.signal(signal.SIGUSR2, mend_line)
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(64)
print("ready %d" % listener.getsockname()[1], flush=True)
while True:
    client, _ = listener.accept()
    with lock:
        open_sockets.append(client)
    if cut.is_set():
        continue
    try:
        upstream = socket.create_connection(target, timeout=10)
        upstream.settimeout(None)
    except OSError:
        close(client)
        continue
    with lock:
        open_sockets.append(upstream)
    threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
    threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
