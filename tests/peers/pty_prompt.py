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
import sys

from ptyterm import Terminal

BIN, ADDR = sys.argv[1], sys.argv[2]


pid, fd = pty.fork()
if pid == 0:
    os.execv(BIN, [BIN, "client", "--connect", ADDR])
term = Terminal(fd)

term.wait_for(b"tablecache> ")
os.write(fd, b"get 99 typed by mistake\x03")        # Ctrl-C: the line is dropped
term.wait_for(b"tablecache> ")
os.write(fd, b"put 1=77\x7f\r")                     # Backspace: put 1=7
term.wait_for(b"ok")
term.wait_for(b"tablecache> ")
os.write(fd, b"get 1\r")
term.wait_for(b"1=7")
term.wait_for(b"tablecache> ")
os.write(fd, b"op=get;ind=1\r")                     # a protocol line, sent as is
term.wait_for(b"OP=GET;IND=1;DATA=7;CODE=200")
term.wait_for(b"tablecache> ")
os.write(fd, b"\x04")                               # Ctrl-D
term.wait_for(b"\n", timeout=5)
_, status = os.waitpid(pid, 0)
sys.stdout.write(term.shown.decode("utf-8", "replace"))
print(f"\nEXIT {os.waitstatus_to_exitcode(status)}")
