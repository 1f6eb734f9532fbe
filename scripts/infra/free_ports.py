#!/usr/bin/env python3
"""Chooses loopback ports for the local infrastructure and prints them as `NAME=PORT` lines.

    free_ports.py KAFKA=19092 CONTROLLER= REGISTRY=

An argument with a port keeps that port; one without gets a free port on 127.0.0.1 that the
kernel hands out (bind to port 0). All ports are distinct: every socket stays bound until
the last port is chosen, and a free port never equals a port given.
"""
import socket
import sys


def main(args):
    given = {}
    wanted = []
    for arg in args:
        name, _, port = arg.partition("=")
        if port:
            if not port.isdigit() or not 0 < int(port) < 65536:
                sys.exit(f"free_ports.py: {name}={port!r} is not a port")
            given[name] = int(port)
        else:
            wanted.append(name)
    held = []
    chosen = {}
    try:
        for name in wanted:
            while True:
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                held.append(s)
                port = s.getsockname()[1]
                if port not in given.values():
                    chosen[name] = port
                    break
    finally:
        for s in held:
            s.close()
    for arg in args:
        name = arg.partition("=")[0]
        print(f"{name}={given.get(name, chosen.get(name))}")


if __name__ == "__main__":
    main(sys.argv[1:])
