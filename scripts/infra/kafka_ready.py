#!/usr/bin/env python3
"""Exit 0 when a Kafka broker at HOST:PORT answers a Metadata request listing at least one broker.

Speaks the Kafka wire protocol directly (Metadata v1), so it needs nothing but Python.
"""
import socket
import struct
import sys


def metadata_ok(host: str, port: int) -> bool:
    client_id = b"tanma-infra"
    # Metadata v1: topics = null (-1) means "all topics".
    body = struct.pack(">hhih", 3, 1, 1, len(client_id)) + client_id + struct.pack(">i", -1)
    with socket.create_connection((host, port), timeout=2) as s:
        s.settimeout(5)
        s.sendall(struct.pack(">i", len(body)) + body)
        head = s.recv(4, socket.MSG_WAITALL)
        if len(head) < 4:
            return False
        (size,) = struct.unpack(">i", head)
        data = b""
        while len(data) < size:
            chunk = s.recv(size - len(data))
            if not chunk:
                return False
            data += chunk
        # correlation id (4), then brokers array length (4)
        (corr, nbrokers) = struct.unpack(">ii", data[:8])
        return corr == 1 and nbrokers >= 1


if __name__ == "__main__":
    host, port = sys.argv[1].rsplit(":", 1)
    try:
        sys.exit(0 if metadata_ok(host, int(port)) else 1)
    except OSError:
        sys.exit(1)
