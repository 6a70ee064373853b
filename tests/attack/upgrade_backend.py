#!/usr/bin/env python3
"""A backend that says yes to every protocol switch: any request with an `Upgrade` header (or every
request, with --always-101) gets `101 Switching Protocols`, and whatever arrives afterwards is
recorded raw. Others get 200. The smuggling test puts it behind a public link to see what really
reaches a service. Loopback only.

  upgrade_backend.py [--always-101]

Prints `PORT <n>` once listening, then one JSON line per event: {"request": <head as text>} for each
request head, {"after_upgrade": <bytes as latin-1 text>} for bytes received after a 101.
"""

import argparse
import json
import socket
import sys
import threading


def emit(event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def serve(conn, always_101):
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            text = head.decode("latin-1")
            emit({"request": text})
            headers = {line.split(":", 1)[0].strip().lower(): line.split(":", 1)[1].strip()
                       for line in text.split("\r\n")[1:] if ":" in line}
            length = int(headers.get("content-length", "0") or 0)
            while len(buf) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            buf = buf[length:]
            if always_101 or "upgrade" in headers:
                upgrade = headers.get("upgrade", "h2c")
                conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n"
                              % upgrade).encode())
                if buf:
                    emit({"after_upgrade": buf.decode("latin-1")})
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    emit({"after_upgrade": chunk.decode("latin-1")})
            body = b"plain answer\n"
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    except OSError:
        return
    finally:
        conn.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--always-101", action="store_true")
    args = p.parse_args()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    sys.stdout.write("PORT %d\n" % listener.getsockname()[1])
    sys.stdout.flush()
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn, args.always_101), daemon=True).start()


if __name__ == "__main__":
    main()
