"""The autobahn-python side of with_python.js: python tests/interop-js/python_peer.py URL SERIALIZER

Joins realm1 (helpers from tests/interop/common.py), registers com.kreisel.py.echo (returns its args and kwargs),
com.kreisel.py.fail (raises an ApplicationError with args and kwargs) and com.kreisel.py.stop, subscribes to
com.kreisel.py.inbox and republishes every event unchanged to com.kreisel.py.outbox. Prints READY once all that is
in place, checks the first inbox event against the payload with_python.js sends, and exits 0 after the stop call.
"""

import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))

from autobahn.wamp.exception import ApplicationError  # noqa: E402
from autobahn.wamp.types import CallResult, PublishOptions  # noqa: E402
from common import Collector, close, connect, run, wait_for  # noqa: E402

# What with_python.js publishes first (the same literal is in with_python.js).
INBOX_ARGS = ["from js ü😀", {"nested": [1, 2.5, None, True, "\u2028"]}, 2**40]
INBOX_KWARGS = {"key ключ": "value", "list": [[], {}], "bytes": b"\x00\x01\xfe\xff"}


async def main(check):
    url, serializer = sys.argv[1], sys.argv[2]
    session, details = await connect(url, serializer)
    check.eq("python peer: negotiated serializer", details.serializer, serializer)
    stop = asyncio.get_running_loop().create_future()

    def echo(*args, **kwargs):
        return CallResult(*args, **kwargs)

    def fail(*args):
        raise ApplicationError("com.kreisel.py.error", "from python ü", list(args), detail={"bytes": b"\xff\x00"})

    inbox = Collector()

    async def relay(*args, details=None, **kwargs):
        inbox(*args, details=details, **kwargs)
        await session.publish("com.kreisel.py.outbox", *args, options=PublishOptions(acknowledge=True), **kwargs)

    await session.register(echo, "com.kreisel.py.echo")
    await session.register(fail, "com.kreisel.py.fail")
    await session.register(lambda: stop.set_result(None) if not stop.done() else None, "com.kreisel.py.stop")
    await session.subscribe(relay, "com.kreisel.py.inbox")
    print("READY", flush=True)

    args, kwargs, _ = await inbox.wait(1, "the first event from autobahn-js")
    check.same("python peer: inbox event args from autobahn-js", args, INBOX_ARGS)
    check.same("python peer: inbox event kwargs from autobahn-js", kwargs, INBOX_KWARGS)
    await wait_for(stop, "the stop call from autobahn-js", 25)
    await close(session)


if __name__ == "__main__":
    run("python_peer", main, timeout=40)
