#!/usr/bin/env python3
"""Slowloris against a running signaling server on loopback (BENCHMARKS.md).

Opens N idle TCP connections (silent, a half-sent HTTP/1 head, an HTTP/2
preface alone, in turn) from --sources loopback source addresses
(127.0.1.1, 127.0.1.2, ...), then once a second for --watch seconds: tries
a normal client from 127.0.0.1 (GET /peers over HTTP/1.1, and `grpcurl
... list` if grpcurl is on PATH), and counts how many idle sockets the
server has closed.
Everything is bounded: N sockets, --watch seconds, a 3 s limit per probe.

    ulimit -n 65536
    python3 benches/slowloris.py --port 8000 --sockets 10000 --watch 30
"""

import argparse
import selectors
import shutil
import socket
import subprocess
import time

PAYLOADS = [b"", b"GET /peers HTTP/1.1\r\nHost: x\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]
PROBE_TIMEOUT = 3.0


def open_idle(port, count, sources):
    """count sockets, round-robin over the source addresses; returns them
    and the number the server refused (reset or closed) while opening."""
    socks, refused = [], 0
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((sources[i % len(sources)], 0))
        try:
            s.connect(("127.0.0.1", port))
            payload = PAYLOADS[i % len(PAYLOADS)]
            if payload:
                s.sendall(payload)
        except OSError:
            refused += 1
            s.close()
            continue
        s.setblocking(False)
        socks.append(s)
    return socks, refused


def reap(sel, open_socks):
    """Removes sockets the server closed (EOF or reset); returns how many."""
    closed = 0
    for key, _ in sel.select(timeout=0):
        s = key.fileobj
        try:
            data = s.recv(65536)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if not data:
            sel.unregister(s)
            s.close()
            open_socks.discard(s)
            closed += 1
    return closed


def probe_rest(port, source):
    start = time.monotonic()
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(PROBE_TIMEOUT)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /peers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = s.recv(4096)
        s.close()
        ok = data.startswith(b"HTTP/1.1 200")
    except OSError:
        ok = False
    return ok, time.monotonic() - start


def probe_grpc(port):
    if not shutil.which("grpcurl"):
        return None, 0.0
    start = time.monotonic()
    try:
        out = subprocess.run(
            ["grpcurl", "-plaintext", "-max-time", str(PROBE_TIMEOUT), f"127.0.0.1:{port}", "list"],
            capture_output=True, timeout=PROBE_TIMEOUT + 2)
        ok = out.returncode == 0
    except subprocess.TimeoutExpired:
        ok = False
    return ok, time.monotonic() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sockets", type=int, default=10000)
    ap.add_argument("--sources", type=int, default=1, help="attacker source addresses 127.0.1.1..")
    ap.add_argument("--watch", type=int, default=30)
    ap.add_argument("--probe-from", default="127.0.0.1")
    args = ap.parse_args()
    sources = [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(args.sources)]

    t0 = time.monotonic()
    socks, refused = open_idle(args.port, args.sockets, sources)
    print(f"opened {len(socks)} idle sockets in {time.monotonic() - t0:.1f} s ({refused} refused while opening)")
    sel = selectors.DefaultSelector()
    open_socks = set(socks)
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    print("t_s\tstill_open\trest_ok\trest_ms\tgrpc_ok\tgrpc_ms")
    end = t0 + args.watch
    while time.monotonic() < end:
        tick = time.monotonic()
        reap(sel, open_socks)
        rest_ok, rest_s = probe_rest(args.port, args.probe_from)
        grpc_ok, grpc_s = probe_grpc(args.port)
        reap(sel, open_socks)
        print(f"{tick - t0:.0f}\t{len(open_socks)}\t{rest_ok}\t{rest_s * 1000:.0f}\t{grpc_ok}\t{grpc_s * 1000:.0f}", flush=True)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    for s in list(open_socks):
        s.close()


if __name__ == "__main__":
    main()
