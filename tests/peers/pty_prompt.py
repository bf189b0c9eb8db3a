#!/usr/bin/env python3
"""Drives `tablecache client` at a pseudo-terminal, as a person would:
types a line and clears it with Ctrl-C, types a command with a typo and
fixes it with Backspace, reads a value, sends a raw protocol line, then
ends with Ctrl-D. Prints what
the terminal showed, then `EXIT <status>`.

Usage: pty_prompt.py BIN ADDR
"""
import os
import pty
import select
import sys
import time

BIN, ADDR = sys.argv[1], sys.argv[2]


SHOWN = b""  # everything the terminal showed
POS = 0  # how far the script has looked


def wait_for(fd, want, timeout=20.0):
    """Reads from the terminal until `want` shows up after what was already
    waited for (or the time is up, or the terminal closes)."""
    global SHOWN, POS
    end = time.time() + timeout
    while SHOWN.find(want, POS) < 0 and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            SHOWN += chunk
    at = SHOWN.find(want, POS)
    if at >= 0:
        POS = at + len(want)


pid, fd = pty.fork()
if pid == 0:
    os.execv(BIN, [BIN, "client", "--connect", ADDR])

wait_for(fd, b"tablecache> ")
os.write(fd, b"get 99 typed by mistake\x03")        # Ctrl-C: the line is dropped
wait_for(fd, b"tablecache> ")
os.write(fd, b"put 1=77\x7f\r")                     # Backspace: put 1=7
wait_for(fd, b"ok")
wait_for(fd, b"tablecache> ")
os.write(fd, b"get 1\r")
wait_for(fd, b"1=7")
wait_for(fd, b"tablecache> ")
os.write(fd, b"op=get;ind=1\r")                     # a protocol line, sent as is
wait_for(fd, b"OP=GET;IND=1;DATA=7;CODE=200")
wait_for(fd, b"tablecache> ")
os.write(fd, b"\x04")                               # Ctrl-D
wait_for(fd, b"\n", timeout=5)
_, status = os.waitpid(pid, 0)
sys.stdout.write(SHOWN.decode("utf-8", "replace"))
print(f"\nEXIT {os.waitstatus_to_exitcode(status)}")
