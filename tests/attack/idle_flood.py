#!/usr/bin/env python3
"""Idle connections against the hub's HTTPS ingress: opens --tls connections that finish the TLS
handshake and then say nothing, and --h2 connections that send the HTTP/2 preface and SETTINGS and
then nothing; holds them for --hold seconds (or until the hub closes them). Loopback only.

  idle_flood.py --port P --tls 240 --h2 20 --hold 20 [--source 127.0.0.2] [--ready-file F]

Writes F (when given) once every connection is open or refused, so the test can probe the hub
while the flood is held. Prints one JSON object: how many connections opened, how many the hub
refused at once, and how many it had closed by the end (and after how long, at the latest).
"""

import argparse
import json
import select
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def open_one(port, alpn, h2, source):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols([alpn])
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    except OSError:
        return None
    try:
        sock = ctx.wrap_socket(raw, server_hostname="idle.localhost")
    except (ssl.SSLError, OSError):
        raw.close()
        return None
    if h2:
        sock.sendall(PREFACE + EMPTY_SETTINGS)
    sock.setblocking(False)
    return sock


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", type=int, default=240)
    p.add_argument("--h2", type=int, default=20)
    p.add_argument("--hold", type=float, default=20)
    p.add_argument("--source", default="127.0.0.1")
    p.add_argument("--ready-file")
    args = p.parse_args()

    start = time.monotonic()

    def attempt(i):
        h2 = i >= args.tls
        try:
            return open_one(args.port, "h2" if h2 else "http/1.1", h2, args.source)
        except OSError:
            return None

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(attempt, range(args.tls + args.h2)))
    socks = [s for s in results if s is not None]
    refused = len(results) - len(socks)
    opened = len(socks)
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write("ready\n")
    closed, last_close = 0, None
    live = list(socks)
    while live and time.monotonic() - start < args.hold:
        readable, _, _ = select.select(live, [], [], 0.2)
        for sock in readable:
            try:
                data = sock.recv(65536)
            except ssl.SSLWantReadError:
                continue
            except OSError:
                data = b""
            if not data:
                live.remove(sock)
                closed += 1
                last_close = time.monotonic() - start
    for sock in socks:
        sock.close()
    print(json.dumps({"opened": opened, "refused": refused, "closed_by_hub": closed,
                      "last_close_secs": last_close}))


if __name__ == "__main__":
    main()
