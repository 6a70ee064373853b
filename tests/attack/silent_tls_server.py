#!/usr/bin/env python3
"""A TLS server that only listens: it completes handshakes with the given certificate and records
how many bytes each client sent afterwards, answering nothing. The login test points `connect
login` at it to prove no token is sent to an unverified hub. Loopback only.

  silent_tls_server.py --cert C --key K

Prints `PORT <n>` once listening, then one JSON line per closed connection: {"bytes_after_handshake": n}.
"""

import argparse
import json
import socket
import ssl
import sys
import threading


def serve(conn):
    received = 0
    try:
        conn.settimeout(15)
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += len(chunk)
    except (OSError, ssl.SSLError):
        pass
    finally:
        conn.close()
    sys.stdout.write(json.dumps({"bytes_after_handshake": received}) + "\n")
    sys.stdout.flush()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    args = p.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols(["pconnect/1", "pconnect-reverse/1"])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    sys.stdout.write("PORT %d\n" % listener.getsockname()[1])
    sys.stdout.flush()
    while True:
        raw, _ = listener.accept()
        try:
            conn = ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            sys.stdout.write(json.dumps({"handshake_failed": True}) + "\n")
            sys.stdout.flush()
            continue
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
