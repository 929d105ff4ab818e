"""Joins per second through kreisel (for docs/PERFORMANCE.md; tests/tests/dynamic_auth.rs runs it small):

    python join_rate.py HOST:PORT REALM AUTHID TICKET JOINS CONCURRENCY

CONCURRENCY RawSocket (JSON) connections each join REALM with ticket authentication (HELLO, CHALLENGE,
AUTHENTICATE, WELCOME), leave with GOODBYE and join again on the same transport, until JOINS joins are done in all;
prints the joins per second. A plain asyncio client of a few lines per message instead of autobahn's session
machinery, so that the client costs less than the path it measures. Exits 0 ("PASSED") only when every join got
WELCOME; the first ABORT or anything else unexpected fails it."""

import asyncio
import json
import sys
import time


async def worker(host, port, realm, authid, ticket, quota, done):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(bytes([0x7F, 0xF1, 0, 0]))
    reply = await reader.readexactly(4)
    if reply[0] != 0x7F or reply[1] & 0x0F != 1:
        raise RuntimeError(f"RawSocket handshake refused: {reply!r}")

    def send(message):
        data = json.dumps(message).encode()
        writer.write(len(data).to_bytes(4, "big") + data)

    async def receive():
        while True:
            header = await reader.readexactly(4)
            data = await reader.readexactly(int.from_bytes(header[1:], "big"))
            if header[0] & 0x07 == 0:  # a WAMP message (not a ping or pong)
                return json.loads(data)

    hello = [1, realm, {"roles": {"caller": {}}, "authmethods": ["ticket"], "authid": authid}]
    while done[0] < quota:
        done[0] += 1
        send(hello)
        challenge = await receive()
        if challenge[0] != 4:
            raise RuntimeError(f"expected CHALLENGE, got {challenge}")
        send([5, ticket, {}])
        welcome = await receive()
        if welcome[0] != 2:
            raise RuntimeError(f"expected WELCOME, got {welcome}")
        done[1] += 1
        send([6, {}, "wamp.close.close_realm"])
        goodbye = await receive()
        if goodbye[0] != 6:
            raise RuntimeError(f"expected GOODBYE, got {goodbye}")
    writer.close()


async def main():
    address, realm, authid, ticket, joins, concurrency = sys.argv[1:7]
    host, port = address.rsplit(":", 1)
    joins, concurrency = int(joins), int(concurrency)
    done = [0, 0]  # joins started, joins welcomed
    started = time.monotonic()
    await asyncio.wait_for(
        asyncio.gather(*(worker(host, int(port), realm, authid, ticket, joins, done) for _ in range(concurrency))),
        600,
    )
    elapsed = time.monotonic() - started
    if done[1] != joins:
        raise RuntimeError(f"{done[1]} of {joins} joins welcomed")
    print(f"{joins} joins of realm '{realm}' as '{authid}' over {concurrency} connections in {elapsed:.2f} s: "
          f"{joins / elapsed:.0f} joins/s", flush=True)
    print(f"PASSED join_rate: {joins} joins", flush=True)


asyncio.run(main())
