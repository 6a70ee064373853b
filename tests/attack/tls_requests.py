#!/usr/bin/env python3
"""Several requests on ONE TLS connection to the hub's HTTPS ingress, each with its own Host
(HTTP/1.1) or :authority (HTTP/2), whatever the TLS SNI said: the routing-isolation probe of
tests/tests/security.rs. Loopback only.

  tls_requests.py --port P --sni a.localhost --alpn h2 --host a.localhost:P --host b.localhost:P

Prints one JSON object: the negotiated ALPN and, per request, the status, the `x-server-port`
response header (which test service answered, if any) and the body (first 200 bytes).
Needs the `h2` package for --alpn h2 (pip install h2).
"""

import argparse
import json
import socket
import ssl


def connect(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols([args.alpn])
    raw = socket.create_connection(("127.0.0.1", args.port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=args.sni)


def over_h1(sock, hosts, path):
    reader = sock.makefile("rb")
    out = []
    for host in hosts:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        status_line = reader.readline()
        if not status_line:
            out.append({"host": host, "status": None})
            break
        status = int(status_line.split()[1])
        headers = {}
        while True:
            line = reader.readline().rstrip(b"\r\n")
            if not line:
                break
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode()] = value.strip().decode()
        body = b""
        if "content-length" in headers:
            body = reader.read(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(reader.readline().split(b";")[0], 16)
                if size == 0:
                    reader.readline()
                    break
                body += reader.read(size)
                reader.readline()
        out.append(
            {"host": host, "status": status, "server": headers.get("x-server-port"), "body": body[:200].decode("utf-8", "replace")}
        )
        if headers.get("connection", "").lower() == "close":
            break
    return out


def over_h2(sock, hosts, path):
    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    out = []
    for host in hosts:
        stream_id = conn.get_next_available_stream_id()
        headers = [(":method", "GET"), (":scheme", "https"), (":authority", host), (":path", path)]
        conn.send_headers(stream_id, headers, end_stream=True)
        sock.sendall(conn.data_to_send())
        entry = {"host": host, "status": None, "server": None, "body": ""}
        body = b""
        done = False
        while not done:
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                    h = dict(event.headers)
                    entry["status"] = int(h[":status"])
                    entry["server"] = h.get("x-server-port")
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)) and event.stream_id == stream_id:
                    done = True
                elif isinstance(event, h2.events.ConnectionTerminated):
                    done = True
            pending = conn.data_to_send()
            if pending:
                sock.sendall(pending)
        entry["body"] = body[:200].decode("utf-8", "replace")
        out.append(entry)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sni", required=True)
    p.add_argument("--alpn", choices=["h2", "http/1.1"], default="h2")
    p.add_argument("--host", action="append", required=True)
    p.add_argument("--path", default="/")
    args = p.parse_args()
    sock = connect(args)
    alpn = sock.selected_alpn_protocol()
    responses = over_h2(sock, args.host, args.path) if alpn == "h2" else over_h1(sock, args.host, args.path)
    print(json.dumps({"alpn": alpn, "responses": responses}))


if __name__ == "__main__":
    main()
