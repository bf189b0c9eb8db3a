"""The terminal side of a pseudo-terminal test peer: what the program
showed, and waiting for a piece of it to show up (never for time alone).
Imported by pty_prompt.py and pty_reconnect.py."""
import os
import select
import time


class Terminal:
    """What the program at `fd` showed, read as the script waits."""

    def __init__(self, fd):
        self.fd = fd
        self.shown = b""  # everything the terminal showed
        self.pos = 0  # how far the script has looked

    def wait_for(self, want, timeout=20.0):
        """Reads until `want` shows up after what was already waited for
        (or the time is up, or the terminal closes)."""
        end = time.time() + timeout
        while self.shown.find(want, self.pos) < 0 and time.time() < end:
            r, _, _ = select.select([self.fd], [], [], 0.1)
            if r:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                self.shown += chunk
        at = self.shown.find(want, self.pos)
        if at >= 0:
            self.pos = at + len(want)
