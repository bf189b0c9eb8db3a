#!/usr/bin/env python3
"""A slow stand-in table server, for measuring how a proxy behaves in
front of a slow or distant store: it speaks tablecache's line protocol
(GET, PUT, ADD, CLR on a table of SIZE zeros) and answers each request
DELAY_MS after it arrived, in order, pipelining allowed.

Run it: python3 benches/slow_server.py [DELAY_MS] [SIZE]
It prints `listening on ADDR` (a free port), like the nodes do.
"""
import asyncio
import sys

DELAY = float(sys.argv[1] if len(sys.argv) > 1 else 50) / 1000
SIZE = int(sys.argv[2] if len(sys.argv) > 2 else 10)
table = [0] * SIZE


def answer(line: str) -> str:
    fields = dict(f.split("=", 1) for f in line.strip().split(";") if "=" in f)
    op = fields.get("OP", "").upper()
    ind = [int(i) for i in fields["IND"].split(",")] if "IND" in fields else []
    if any(not 0 <= i < SIZE for i in ind):
        return f"OP={op};CODE=400;MSG=index out of range"
    if op == "GET":
        data = ",".join(str(table[i]) for i in ind)
        return f"OP=GET;IND={fields['IND']};DATA={data};CODE=200"
    if op == "PUT":
        for i, v in zip(ind, fields["DATA"].split(",")):
            table[i] = int(v)
        return f"OP=PUT;IND={fields['IND']};DATA={fields['DATA']};CODE=200"
    if op == "ADD":
        return f"OP=ADD;IND={fields['IND']};DATA={sum(table[i] for i in ind)};CODE=200"
    if op == "CLR":
        table[:] = [0] * SIZE
        return "OP=CLR;CODE=200"
    return f"OP={op};CODE=400;MSG=unknown OP"


async def serve(reader, writer):
    loop = asyncio.get_running_loop()
    replies = asyncio.Queue()

    async def send():
        while True:
            due, text = await replies.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            writer.write(text.encode() + b"\n")
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while line := await reader.readline():
            # The table changes when the request arrives; the reply waits.
            await replies.put((loop.time() + DELAY, answer(line.decode())))
    finally:
        await asyncio.sleep(DELAY)
        sender.cancel()
        writer.close()


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"listening on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
