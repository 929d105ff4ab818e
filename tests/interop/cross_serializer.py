"""autobahn-python sessions on different serializers and transports exchange the same data through kreisel:
JSON <-> MessagePack (and CBOR when given), binary included (JSON's "\\u0000"+base64 convention vs native bin).

Usage: cross_serializer.py WS_URL RS_URL SERIALIZER...   (e.g. json msgpack: JSON over WebSocket, MessagePack
over RawSocket; msgpack json: the other way round)

For every ordered pair of serializers: an event from a publisher on one to a subscriber on the other, with args
and kwargs holding unicode (BMP and astral), binary, nesting, floats (1.0 stays a float, -0.0 keeps its sign),
integers up to 2^53 and null, compared for exact equality, types included; from a binary serializer also the
64-bit extremes (2^63 - 1, -2^63, 2^64 - 1); the same payload through a call (args and kwargs both ways) and a
callee error with unicode and binary args."""

import asyncio
import itertools
import sys

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallResult, PublishOptions

import payloads
from common import Collector, check_welcome, close, connect, run

WS_URL, RS_URL, SERIALIZERS = sys.argv[1], sys.argv[2], sys.argv[3:]
ACK = PublishOptions(acknowledge=True)
# What every serializer carries: JSON's integer range.
ARGS = payloads.args("json")
KWARGS = payloads.kwargs("json")
WIDE_INTS = [2**63 - 1, -(2**63), 2**64 - 1, 2**53 + 1]


async def main(check):
    sessions = {}
    for index, serializer in enumerate(SERIALIZERS):
        url = WS_URL if index % 2 == 0 else RS_URL
        session, details = await connect(url, serializer)
        check_welcome(check, f"{serializer} session over {url}", session, details, serializer)
        sessions[serializer] = session
    for publisher, subscriber in itertools.permutations(SERIALIZERS, 2):
        pair = f"{publisher} -> {subscriber}"
        topic = f"com.example.cross.{publisher}.{subscriber}"
        events = Collector()
        await sessions[subscriber].subscribe(events, topic)
        await sessions[publisher].publish(topic, *ARGS, options=ACK, **KWARGS)
        args, kwargs, _ = await events.wait(1, f"{pair} EVENT")
        check.same(f"{pair} EVENT args", args, ARGS)
        check.same(f"{pair} EVENT kwargs", kwargs, KWARGS)
        await sessions[publisher].publish(topic, "😀", b"\x00\xffbin", options=ACK, bin=b"", text="ü")
        args, kwargs, _ = await events.wait(2, f"{pair} EVENT with unicode and binary")
        check.same(f"{pair} EVENT unicode and binary", (args, kwargs), (["😀", b"\x00\xffbin"], {"bin": b"", "text": "ü"}))
        if publisher != "json":
            await sessions[publisher].publish(topic, WIDE_INTS, options=ACK)
            args, _, _ = await events.wait(3, f"{pair} EVENT with 64-bit integers")
            check.same(f"{pair} EVENT 64-bit integers", args, [WIDE_INTS])

        procedure = f"com.example.cross.echo.{publisher}.{subscriber}"
        await sessions[subscriber].register(lambda *a, **k: CallResult(*a, **k), procedure)
        result = await sessions[publisher].call(procedure, *ARGS, **KWARGS)
        check.same(f"{publisher} caller -> {subscriber} callee: RESULT args", list(result.results), ARGS)
        check.same(f"{publisher} caller -> {subscriber} callee: RESULT kwargs", result.kwresults, KWARGS)

        def fail():
            raise ApplicationError("com.myapp.error.custom", "ü😀", b"\x00\x01", code=7)

        failing = f"com.example.cross.fail.{publisher}.{subscriber}"
        await sessions[subscriber].register(fail, failing)
        await check.error(
            f"{publisher} caller -> {subscriber} callee: callee error",
            sessions[publisher].call(failing),
            "com.myapp.error.custom",
            ["ü😀", b"\x00\x01"],
            {"code": 7},
        )
    await close(*sessions.values())


if __name__ == "__main__":
    run(f"cross-serializer {' / '.join(SERIALIZERS)}", main)
