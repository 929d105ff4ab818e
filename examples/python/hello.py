"""A complete autobahn-python (asyncio) component against kreisel: it joins realm1, subscribes to a topic,
publishes to it, registers a procedure, calls it, and leaves; the process exits 0 when all of that worked.

Start a router first (`cargo run --release` in the repository: WebSocket on ws://127.0.0.1:8080/ws, RawSocket on
127.0.0.1:8081), then:

    pip install autobahn msgpack cbor2     # the test suite pins versions in tests/interop/requirements.txt
    python hello.py                                  # WebSocket, JSON
    python hello.py --url rs://127.0.0.1:8081 --serializer msgpack   # RawSocket, MessagePack

About `max_retries` below: a `Component` reconnects whenever its connection ends without the component being
done, by default forever (`max_retries=-1`) with a growing delay. Over RawSocket, autobahn-python 26.10's asyncio
`Component` takes even a clean `leave()` for a lost connection: the socket's close reaches it before the session's
leave event, so it logs "Connection failed: TransportLost: failed to complete connection", waits, connects again
and runs `on_join` again, in a loop. (Over WebSocket the closing handshake lets the leave event arrive first and
`run()` returns.) `max_retries=0` ends that: the component stops after its one connection, whatever the
transport, and `run()` returns after logging "... error: RuntimeError: Component failed: Exhausted all transport
connect attempts", which after a clean leave only means that it did not reconnect. It also means no retry when the router is not running
yet; a long-running service wants retries (leave `max_retries` at its default, or set a number) and no `leave()`.
"""

import argparse
import asyncio
import sys

from autobahn.asyncio.component import Component, run
from autobahn.wamp.types import PublishOptions

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--url", default="ws://127.0.0.1:8080/ws", help="ws://HOST:PORT/PATH or rs://HOST:PORT")
parser.add_argument("--serializer", default="json", choices=["json", "msgpack", "cbor"])
parser.add_argument("--realm", default="realm1")
args = parser.parse_args()

# One transport, tried once: see `max_retries` in the docstring.
transport = {"url": args.url, "max_retries": 0}
if args.url.startswith("rs://"):
    transport.update(type="rawsocket", serializer=args.serializer)  # RawSocket: exactly one serializer
else:
    transport.update(type="websocket", serializers=[args.serializer])

component = Component(transports=[transport], realm=args.realm)
finished = {"joined": False, "ok": False}


@component.on_join
async def joined(session, details):
    finished["joined"] = True
    print(f"joined realm {details.realm} as session {details.session} ({args.url}, {args.serializer})")
    try:
        # Publish and subscribe. The publisher does not get its own events unless it says so (exclude_me).
        greeting = asyncio.get_running_loop().create_future()

        def on_greeting(text, count=None):
            if not greeting.done():
                greeting.set_result((text, count))

        await session.subscribe(on_greeting, "com.example.greeting")
        await session.publish(
            "com.example.greeting",
            "hello from Python",
            count=1,
            options=PublishOptions(acknowledge=True, exclude_me=False),
        )
        text, count = await asyncio.wait_for(greeting, 5)
        print(f"event on com.example.greeting: {text!r} (count={count})")

        # Register and call.
        def add(a, b):
            return a + b

        await session.register(add, "com.example.add")
        total = await asyncio.wait_for(session.call("com.example.add", 2, 3), 5)
        print(f"com.example.add(2, 3) = {total}")
        finished["ok"] = text == "hello from Python" and count == 1 and total == 5
    except Exception as error:  # report, then leave all the same: the process must end
        print(f"failed: {error!r}")
    finally:
        session.leave()


@component.on_leave
def left(session, details):
    print(f"left: {details.reason}")


if __name__ == "__main__":
    run([component], log_level="warn")
    if not finished["joined"]:
        print(f"FAILED: could not join {args.realm} at {args.url}: is the router running?")
    else:
        print("done" if finished["ok"] else "FAILED")
    sys.exit(0 if finished["ok"] else 1)
