"""Asks a Kafka broker for its metadata with the plain wire protocol (stdlib only).

Used by scripts/kafka-local to wait until the broker really answers metadata requests,
not just until its port is open. Exit 0 and print the broker count when it answers.
"""

from __future__ import annotations

import socket
import struct
import sys


def _string(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def metadata_broker_count(host: str, port: int, timeout: float = 2.0) -> int:
    # MetadataRequest v4 (still supported by Kafka 4.x): all topics (null array), no auto-create.
    body = struct.pack(">hhi", 3, 4, 7) + _string("kafka-local-probe") + struct.pack(">i?", -1, False)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _recv(sock, 4))[0]
        resp = _recv(sock, size)
    correlation_id, _throttle, n_brokers = struct.unpack(">iii", resp[:12])
    if correlation_id != 7:
        raise RuntimeError("unexpected correlation id")
    return int(n_brokers)


def _recv(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return buf


if __name__ == "__main__":
    host, _, port = sys.argv[1].rpartition(":")
    try:
        count = metadata_broker_count(host, int(port))
    except (OSError, RuntimeError, struct.error) as exc:
        print(f"no metadata from {sys.argv[1]}: {exc}", file=sys.stderr)
        sys.exit(1)
    if count < 1:
        print(f"{sys.argv[1]} answered metadata with no broker", file=sys.stderr)
        sys.exit(1)
    print(count)
