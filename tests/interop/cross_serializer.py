"""autobahn-python sessions on different serializers and transports exchange the same data through kreisel:
JSON <-> MessagePack (and CBOR when given), binary included (JSON's "\\u0000"+base64 convention vs native bin).

Usage: cross_serializer.py WS_URL RS_URL SERIALIZER...   (e.g. json msgpack)"""

import asyncio
import itertools
import sys

from autobahn.wamp.types import PublishOptions

from common import connect, run

WS_URL, RS_URL, SERIALIZERS = sys.argv[1], sys.argv[2], sys.argv[3:]
ARGS = ["ü€ 😀", b"\x00\x01\xfe\xff", {"n": [None, True, 1.5, -2, 2**53]}]
KWARGS = {"bin": b"binary", "text": "text"}


async def main(check):
    loop = asyncio.get_running_loop()
    sessions = {}
    for index, serializer in enumerate(SERIALIZERS):
        url = WS_URL if index % 2 == 0 else RS_URL
        sessions[serializer] = (await connect(url, serializer))[0]
    for publisher, subscriber in itertools.permutations(SERIALIZERS, 2):
        topic = f"com.example.cross.{publisher}.{subscriber}"
        got = loop.create_future()

        def on_event(*args, **kwargs):
            if not got.done():
                got.set_result((list(args), kwargs))

        await sessions[subscriber].subscribe(on_event, topic)
        await sessions[publisher].publish(topic, *ARGS, options=PublishOptions(acknowledge=True), **KWARGS)
        args, kwargs = await asyncio.wait_for(got, 5)
        check.eq(f"{publisher} publisher -> {subscriber} subscriber: args", args, ARGS)
        check.eq(f"{publisher} publisher -> {subscriber} subscriber: kwargs", kwargs, KWARGS)

        procedure = f"com.example.cross.echo.{publisher}.{subscriber}"
        from autobahn.wamp.types import CallResult

        await sessions[subscriber].register(lambda *a, **k: CallResult(*a, **k), procedure)
        result = await sessions[publisher].call(procedure, *ARGS, **KWARGS)
        check.eq(f"{publisher} caller -> {subscriber} callee: RESULT args", list(result.results), ARGS)
        check.eq(f"{publisher} caller -> {subscriber} callee: RESULT kwargs", result.kwresults, KWARGS)
    for session in sessions.values():
        session.leave()
    await asyncio.sleep(0.1)


run(f"cross-serializer {' / '.join(SERIALIZERS)}", main)
