#!/usr/bin/env python3
"""Creates PREFIXED allow ACLs on a Kafka broker in one CreateAcls request (v1), over a listener
whose principal may alter ACLs (the local broker's plaintext listener: User:ANONYMOUS, a super
user). Like kafka_ready.py it speaks the wire protocol, so it needs nothing but Python and takes
milliseconds where `kafka-acls` starts a JVM per call.

    kafka_acls.py HOST:PORT USERS:OPERATIONS:RESOURCE:PREFIX ...

    e.g. kafka_acls.py 127.0.0.1:9092 connector,notxn:Write,Read:topic:tanma.

USERS and OPERATIONS are comma-separated; RESOURCE is topic, group, cluster or transactional-id;
each rule allows every user every operation on resources whose name starts with PREFIX, from any
host. Exit 0 when the broker created every ACL; otherwise the broker's errors are printed.
"""
import socket
import struct
import sys

RESOURCES = {"topic": 2, "group": 3, "cluster": 4, "transactional-id": 5}
OPERATIONS = {"all": 2, "read": 3, "write": 4, "create": 5, "delete": 6, "alter": 7,
              "describe": 8, "clusteraction": 9, "describeconfigs": 10, "alterconfigs": 11,
              "idempotentwrite": 12}
PREFIXED, ALLOW = 4, 3
CREATE_ACLS, VERSION = 30, 1


def string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def creations(rules):
    """(resource, prefix, principal, operation) for every user x operation of every rule."""
    out = []
    for rule in rules:
        try:
            users, ops, resource, prefix = rule.split(":", 3)
            kind = RESOURCES[resource]
            codes = [OPERATIONS[o.lower()] for o in ops.split(",")]
        except (ValueError, KeyError):
            sys.exit(f"kafka_acls.py: bad rule {rule!r} (USERS:OPERATIONS:RESOURCE:PREFIX)")
        out += [(kind, prefix, f"User:{u}", op) for u in users.split(",") for op in codes]
    return out


def request(acls):
    body = struct.pack(">i", len(acls))
    for kind, prefix, principal, op in acls:
        body += struct.pack(">b", kind) + string(prefix) + struct.pack(">b", PREFIXED)
        body += string(principal) + string("*") + struct.pack(">bb", op, ALLOW)
    header = struct.pack(">hhi", CREATE_ACLS, VERSION, 1) + string("tanma-infra")
    return struct.pack(">i", len(header) + len(body)) + header + body


def read_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise OSError("connection closed by the broker")
        data += chunk
    return data


def errors(response, count):
    """The (error code, message) of every ACL the broker did not create."""
    (corr, _throttle, n) = struct.unpack(">iii", response[:12])
    if corr != 1 or n != count:
        return [(-1, f"unexpected response: correlation {corr}, {n} results for {count} ACLs")]
    out, pos = [], 12
    for _ in range(n):
        (code, length) = struct.unpack(">hh", response[pos:pos + 4])
        pos += 4
        message = "" if length < 0 else response[pos:pos + length].decode(errors="replace")
        pos += max(length, 0)
        if code != 0:
            out.append((code, message))
    return out


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    host, port = argv[0].rsplit(":", 1)
    acls = creations(argv[1:])
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.settimeout(30)
        s.sendall(request(acls))
        (size,) = struct.unpack(">i", read_exact(s, 4))
        failed = errors(read_exact(s, size), len(acls))
    for code, message in failed:
        print(f"kafka_acls.py: error {code}: {message}", file=sys.stderr)
    if failed:
        sys.exit(1)
    print(f"created {len(acls)} ACLs")


if __name__ == "__main__":
    main(sys.argv[1:])
