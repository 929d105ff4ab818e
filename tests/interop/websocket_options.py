"""permessage-deflate and the batched subprotocols with autobahn-python: every batched serializer, and compression
offers with and without context takeover and window sizes in both directions; each session publishes telemetry
events to itself and calls a procedure with a large, compressible payload, checking every byte.

Usage: websocket_options.py WS_URL [takeover]
  WS_URL: a listener with compression = "deflate" and batched = true; with `takeover`, it allows context
  takeover in both directions (the offers that do not decline it must then get it)."""

import asyncio
import sys
from urllib.parse import urlparse

from autobahn.asyncio.wamp import ApplicationSession
from autobahn.asyncio.websocket import WampWebSocketClientFactory
from autobahn.wamp.serializer import CBORSerializer, JsonSerializer, MsgPackSerializer
from autobahn.wamp.types import ComponentConfig, PublishOptions
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateResponseAccept

from common import Collector, close, run, wait_for

WS_URL = sys.argv[1]
TAKEOVER = len(sys.argv) > 2 and sys.argv[2] == "takeover"

SERIALIZERS = {
    "json": lambda: JsonSerializer(),
    "json.batched": lambda: JsonSerializer(batched=True),
    "msgpack.batched": lambda: MsgPackSerializer(batched=True),
    "cbor.batched": lambda: CBORSerializer(batched=True),
}

# (label, offer keyword arguments); None: no compression offered.
OFFERS = [
    ("no compression", None),
    ("deflate, defaults", {}),
    ("deflate, server_no_context_takeover", {"request_no_context_takeover": True}),
    ("deflate, server_max_window_bits=10", {"request_max_window_bits": 10}),
    ("deflate, without client_no_context_takeover", {"accept_no_context_takeover": False}),
    ("deflate, without client_max_window_bits", {"accept_max_window_bits": False}),
]


async def open_session(serializer, offer):
    loop = asyncio.get_running_loop()
    joined = loop.create_future()
    closed = loop.create_future()

    class Session(ApplicationSession):
        def onJoin(self, details):
            if not joined.done():
                joined.set_result((self, details))

        def onDisconnect(self):
            if not joined.done():
                joined.set_exception(RuntimeError("transport closed before joining"))
            if not closed.done():
                closed.set_result(None)

    def make():
        session = Session(ComponentConfig("realm1"))
        session.closed = closed
        return session

    parsed = urlparse(WS_URL)
    factory = WampWebSocketClientFactory(make, url=WS_URL, serializers=[SERIALIZERS[serializer]()])
    if offer is not None:
        factory.setProtocolOptions(
            perMessageCompressionOffers=[PerMessageDeflateOffer(**offer)],
            perMessageCompressionAccept=lambda response: PerMessageDeflateResponseAccept(response),
        )
    await loop.create_connection(factory, parsed.hostname, parsed.port)
    return await wait_for(joined, f"WELCOME ({serializer}, {offer})", 10)


def telemetry(i):
    return {"sensor": f"sensor-{i % 7}", "t": 20.0 + i / 8, "h": 0.4, "p": 1013.25, "status": "ok" * 20, "seq": i}


async def exercise(check, serializer, label, offer):
    session, details = await open_session(serializer, offer)
    what = f"{serializer}, {label}"
    transport = session._transport
    check.eq(f"{what}: subprotocol", transport.websocket_protocol_in_use, f"wamp.2.{serializer}")
    compress = transport._perMessageCompress
    if offer is None:
        check.true(f"{what}: no extension", compress is None)
    else:
        check.true(f"{what}: permessage-deflate negotiated", compress is not None)
        asked_server_off = offer.get("request_no_context_takeover", False)
        server_off = compress.server_no_context_takeover
        client_off = compress.client_no_context_takeover
        if TAKEOVER:
            check.eq(f"{what}: server context takeover as the client asked", server_off, asked_server_off)
            check.eq(f"{what}: client context takeover allowed (its offer's hint is not echoed)", client_off, False)
        else:
            check.eq(f"{what}: server_no_context_takeover (shared compression)", server_off, True)
            check.eq(f"{what}: client_no_context_takeover", client_off, True)
        if offer.get("request_max_window_bits"):
            check.eq(f"{what}: server_max_window_bits confirmed", compress.server_max_window_bits, offer["request_max_window_bits"])

    events = Collector()
    await session.subscribe(events, "com.example.telemetry")
    for i in range(20):
        await session.publish(
            "com.example.telemetry", telemetry(i), options=PublishOptions(acknowledge=True, exclude_me=False)
        )
    await events.wait(20, f"{what}: 20 events")
    check.eq(f"{what}: 20 telemetry events, every byte", [e[0][0] for e in events.events], [telemetry(i) for i in range(20)])

    big = {"rows": [{"index": i, "name": f"row {i}", "values": list(range(i % 10))} for i in range(600)]}

    def echo(value):
        return value

    registration = await session.register(echo, "com.example.echo")
    result = await wait_for(session.call("com.example.echo", big), f"{what}: a large call")
    check.true(f"{what}: a large compressible call and result round trip", result == big)
    await registration.unregister()
    await close(session)


async def main(check):
    for serializer in SERIALIZERS:
        for label, offer in OFFERS:
            await exercise(check, serializer, label, offer)


run("websocket_options", main, timeout=120)
