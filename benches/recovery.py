#!/usr/bin/env python3
"""How long a durable server takes to start when its newest log segment
ends in junk: the time from exec to its `listening on` line, and that the
table is right after.

The junk is the shape that made an earlier scan quadratic: every 4-byte
word reads as a record length of half the junk's size, so at every offset
a record "fits". For each size the data directory is made afresh (3
acknowledged writes, a clean stop), the junk appended, and the server
started ROUNDS times (each start cuts the junk, so it is appended again
before each); the median is printed.

Usage: benches/recovery.py [BIN] [ROUNDS] [MIB...]
       (defaults: target/release/tablecache, 3, 1 4 16 128)
"""

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/tablecache"
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
SIZES = [int(m) for m in sys.argv[3:]] or [1, 4, 16, 128]


def start(data):
    """Starts a server on `data`; (process, address, seconds to listen)."""
    t0 = time.monotonic()
    p = subprocess.Popen(
        [BIN, "server", "--listen", "127.0.0.1:0", "--lease-ms", "0",
         "--log-level", "error", "--data-dir", data],
        stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    took = time.monotonic() - t0
    if not line.startswith("listening on "):
        p.kill()
        sys.exit(f"the server did not start: {line!r}")
    host, port = line.split()[-1].rsplit(":", 1)
    return p, (host, int(port)), took


def ask(addr, msg):
    with socket.create_connection(addr) as s:
        s.sendall(msg.encode() + b"\n")
        return s.makefile().readline().strip()


def stop(p):
    p.terminate()
    p.wait()


def segment(data):
    return os.path.join(data, sorted(f for f in os.listdir(data) if f.startswith("wal-"))[-1])


def main():
    print(f"# {BIN}: seconds from exec to listening, median of {ROUNDS}")
    print("| junk after the last record | to listening (median) | runs | table right |")
    print("|---|---|---|---|")
    for mib in SIZES:
        data = tempfile.mkdtemp(prefix="tablecache-recovery-")
        try:
            p, addr, _ = start(data)
            for v in (1, 2, 3):
                assert ask(addr, f"OP=PUT;IND=1;DATA={v}").endswith("CODE=200")
            stop(p)
            seg = segment(data)
            good = os.path.getsize(seg)
            n = mib << 20
            word = (n // 2).to_bytes(4, "little")
            junk = word * (n // 4)
            runs, right = [], True
            for _ in range(ROUNDS):
                with open(seg, "ab") as f:
                    f.write(junk)
                shutil.rmtree(os.path.join(data, "cut"), ignore_errors=True)
                p, addr, took = start(data)
                right &= ask(addr, "OP=GET;IND=1").endswith("DATA=3;CODE=200")
                right &= os.path.getsize(seg) == good
                stop(p)
                runs.append(took)
            runs_s = " ".join(f"{r:.3f}" for r in runs)
            print(f"| {mib} MiB | {statistics.median(runs):.3f} s | {runs_s} | {'yes' if right else 'NO'} |")
        finally:
            shutil.rmtree(data, ignore_errors=True)


main()
