# Opens N connections to a proxy (or server), sends one GET on each, checks
# every reply, and reports the node's resident memory per connection.
# Usage: python3 benches/connections.py HOST:PORT PID [N]   (N defaults to 10000)
import socket
import sys

host, port = sys.argv[1].rsplit(":", 1)
pid = sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 10000


def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        return int(next(l for l in f if l.startswith("VmRSS")).split()[1])


before = rss_kib()
conns = [socket.create_connection((host, int(port))) for _ in range(n)]
for s in conns:
    s.sendall(b"OP=GET;IND=1\n")
ok = 0
for s in conns:
    s.settimeout(20)
    if s.recv(100).startswith(b"OP=GET;IND=1;"):
        ok += 1
conns[0].sendall(b"OP=STS\n")
sts = conns[0].recv(4096).decode()
live = next(f for f in sts.split(";") if f.startswith("CONNS="))
after = rss_kib()
print(f"{n} connections, {ok} answered, node reports {live}")
print(f"resident {before} KiB before, {after} KiB after: {round((after - before) * 1024 / n)} bytes per connection")
