#!/usr/bin/env python3
"""A hand-written rogue agent: speaks the pconnect hello (TLS + one length-prefixed JSON frame) to
the hub's agent port with whatever services it is given, to show what the hub does with hostile
registrations. Loopback only; the token comes from the environment, never argv.

  ROGUE_TOKEN=pc_... rogue_agent.py --port P --services '[{"name": "db", "port": 5432, "env": {...}}]'

Prints one JSON object: the hub's reply frame (welcome or refusal), or {"closed": true} when the
hub closed the connection without one.
"""

import argparse
import json
import os
import socket
import ssl
import struct


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--services", required=True, help="JSON list of service specs")
    p.add_argument("--raw-services", action="store_true", help="send --services as raw text, not re-encoded")
    args = p.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["pconnect-reverse/1"])
    raw = socket.create_connection(("127.0.0.1", args.port), timeout=10)
    sock = ctx.wrap_socket(raw, server_hostname="localhost")

    services = args.services if args.raw_services else json.dumps(json.loads(args.services))
    token = json.dumps(os.environ["ROGUE_TOKEN"])
    hello = ('{"version": 1, "role": "reverse", "token": %s, "session": "rogue-1", "services": %s}'
             % (token, services)).encode()
    sock.sendall(struct.pack(">I", len(hello)) + hello)

    prefix = b""
    while len(prefix) < 4:
        chunk = sock.recv(4 - len(prefix))
        if not chunk:
            print(json.dumps({"closed": True}))
            return
        prefix += chunk
    (length,) = struct.unpack(">I", prefix)
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            break
        body += chunk
    print(json.dumps({"reply": json.loads(body)}))


if __name__ == "__main__":
    main()
