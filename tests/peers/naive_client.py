# A client written the way a student would: one send() per message, no
# terminator, one recv(1024) per reply, and a reply with a trailing ';' or
# newline is rejected. Prints each reply on its own line.
# Usage: naive_client.py HOST:PORT 'OP=GET;IND=1' ['OP=CLR' ...]
import socket
import sys

host, port = sys.argv[1].rsplit(":", 1)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(20)
s.connect((host, int(port)))
for msg in sys.argv[2:]:
    s.send(msg.encode())
    reply = s.recv(1024).decode()
    if reply.endswith(";") or reply.endswith("\n"):
        print("BAD REPLY " + repr(reply))
        sys.exit(1)
    print(reply)
s.close()
