#!/usr/bin/env python3
"""Runs every README.md command block marked `<!-- ci: run ... -->` (the
blocks that need no second terminal), with `tablecache` on the PATH as the
release binary, and fails if any block fails or prints an error.

A block's comments (`# 1=5`) say what a command prints; when a comment
starts with what looks like an output (`# 1=0, ...`, `# ok`, `# 1=5`), the
line's output must start with it.

Usage: scripts/readme_blocks.py [BINARY]   (default target/release/tablecache)
"""
import os
import re
import subprocess
import sys
import tempfile

binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/tablecache")
text = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
blocks = re.findall(r"<!-- ci: run[^>]*-->\s*```sh\n(.*?)```", text, re.S)
if not blocks:
    sys.exit("readme_blocks: no block marked `<!-- ci: run -->` in README.md")

bindir = tempfile.mkdtemp()
os.symlink(binary, os.path.join(bindir, "tablecache"))
env = dict(os.environ, PATH=bindir + os.pathsep + os.environ["PATH"])
failed = 0
for n, block in enumerate(blocks, 1):
    script = ["set -u"]
    expect = []
    for line in block.splitlines():
        cmd, _, comment = line.partition("  #")
        comment = comment.strip()
        # A comment that begins like an output (`1=0`, `ok`) is checked.
        want = re.match(r"^((\d+=-?\d+)|ok)\b", comment)
        if want and "client" in cmd:
            marker = f"__readme_line_{len(expect)}__"
            script.append(f"echo {marker}; {cmd.strip()}")
            expect.append((marker, want.group(1), cmd.strip()))
        else:
            script.append(cmd)
    out = subprocess.run(["bash", "-c", "\n".join(script)], env=env, capture_output=True, text=True, timeout=120)
    lines = out.stdout.splitlines()
    for marker, want, cmd in expect:
        got = lines[lines.index(marker) + 1] if marker in lines and lines.index(marker) + 1 < len(lines) else "(nothing)"
        if not got.startswith(want):
            print(f"README block {n}: `{cmd}` printed {got!r}, the README says {want!r}")
            failed += 1
    if out.returncode != 0:
        print(f"README block {n} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
        failed += 1
    else:
        print(f"README block {n}: ok ({len(expect)} outputs checked)")
sys.exit(1 if failed else 0)
