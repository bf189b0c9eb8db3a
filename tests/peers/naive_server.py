# A table server written the way a student would: accept() once, then one
# recv(1024) per message, no terminator either way, and a crash on anything
# it does not expect. Prints its port, then serves until the peer leaves.
# Replies: GET/ADD/PUT/CLR as the protocol says, but index 7 answers
# CODE=404 with a message, a PUT of index 9 answers CODE=500 with no
# message, and with --no-code success replies carry no CODE field.
# It logs every message it receives to the file given by --log, one a line.
import socket
import sys

no_code = "--no-code" in sys.argv
log = open(sys.argv[sys.argv.index("--log") + 1], "a") if "--log" in sys.argv else None
table = [0] * 10
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.bind(("127.0.0.1", 0))
srv.listen(1)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
ok = "" if no_code else ";CODE=200"
while True:
    data = conn.recv(1024)
    if not data:
        break
    msg = data.decode()
    if log:
        log.write(msg + "\n")
        log.flush()
    fields = dict(f.split("=", 1) for f in msg.split(";") if f)
    op = fields["OP"]
    ind = [int(i) for i in fields["IND"].split(",")] if "IND" in fields else []
    if 7 in ind:
        reply = "OP=%s;CODE=404;MSG=no such entry" % op
    elif op == "GET":
        reply = "OP=GET;IND=%s;DATA=%s%s" % (fields["IND"], ",".join(str(table[i]) for i in ind), ok)
    elif op == "PUT":
        if 9 in ind:
            reply = "CODE=500"
        else:
            for i, v in zip(ind, fields["DATA"].split(",")):
                table[i] = int(v)
            reply = "OP=PUT;IND=%s;DATA=%s%s" % (fields["IND"], fields["DATA"], ok)
    elif op == "ADD":
        reply = "OP=ADD;IND=%s;DATA=%d%s" % (fields["IND"], sum(table[i] for i in ind), ok)
    elif op == "CLR":
        table = [0] * 10
        reply = "OP=CLR" + ok
    conn.send(reply.encode())
