#!/usr/bin/env python3
"""Drives `tablecache client` at a pseudo-terminal through a proxy that
closes idle connections and then restarts: the prompt connects again,
says so, and answers. Prints what the terminal showed, then
`EXIT <status>`.

Usage: pty_reconnect.py BIN SERVER_ADDR
"""
import os
import pty
import socket
import subprocess
import sys
import time

from ptyterm import Terminal

BIN, SERVER = sys.argv[1], sys.argv[2]


def proxy(listen):
    """A proxy that closes a connection idle for 300 ms; its address."""
    p = subprocess.Popen(
        [BIN, "proxy", "--listen", listen, "--upstream", SERVER,
         "--idle-timeout-ms", "300", "--log-level", "warn"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    assert line.startswith("listening on "), line
    return p, line.split()[-1]


def sts(addr, field):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"OP=STS\n")
        reply = s.makefile().readline()
    for f in reply.strip().split(";"):
        if f.startswith(field + "="):
            return int(f.split("=", 1)[1])
    return None


def wait_until(what, cond, timeout=20.0):
    end = time.time() + timeout
    while not cond():
        if time.time() > end:
            print(f"gave up waiting for {what}")
            return
        time.sleep(0.02)


prox, ADDR = proxy("127.0.0.1:0")
pid, fd = pty.fork()
if pid == 0:
    os.execv(BIN, [BIN, "client", "--connect", ADDR])
term = Terminal(fd)

term.wait_for(b"tablecache> ")
os.write(fd, b"put 1=5\r")
term.wait_for(b"ok")
term.wait_for(b"tablecache> ")
# The proxy closes the idle connection.
wait_until("the idle close", lambda: (sts(ADDR, "IDLE_CLOSED") or 0) >= 1)
os.write(fd, b"get 1\r")
term.wait_for(b"1=5")
term.wait_for(b"tablecache> ")
# The proxy restarts on its address.
prox.kill()
prox.wait()
prox, _ = proxy(ADDR)
os.write(fd, b"get 1\r")
term.wait_for(b"1=5")
term.wait_for(b"tablecache> ")
# The proxy is down when a command runs: said, and the prompt stays.
prox.kill()
prox.wait()
os.write(fd, b"get 1\r")
term.wait_for(b"refused")
term.wait_for(b"tablecache> ")
prox, _ = proxy(ADDR)
os.write(fd, b"get 1\r")
term.wait_for(b"1=5")
term.wait_for(b"tablecache> ")
os.write(fd, b"\x04")                               # Ctrl-D
term.wait_for(b"\n", timeout=5)
_, status = os.waitpid(pid, 0)
prox.kill()
sys.stdout.write(term.shown.decode(errors="replace"))
print(f"\nEXIT {os.waitstatus_to_exitcode(status)}")
