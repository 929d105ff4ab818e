"""Shared helpers for kreisel's autobahn-python interop checks (asyncio flavour).

Every check program connects real autobahn sessions to a running kreisel, checks, prints what it checked and
exits 0 only if everything passed; a hard timeout guarantees it never hangs."""

import asyncio
import sys
import traceback
from urllib.parse import urlparse

from autobahn.asyncio.rawsocket import WampRawSocketClientFactory
from autobahn.asyncio.wamp import ApplicationSession
from autobahn.asyncio.websocket import WampWebSocketClientFactory
from autobahn.wamp.serializer import JsonSerializer, MsgPackSerializer
from autobahn.wamp.types import ComponentConfig

SERIALIZERS = {"json": JsonSerializer, "msgpack": MsgPackSerializer}
try:
    from autobahn.wamp.serializer import CBORSerializer

    SERIALIZERS["cbor"] = CBORSerializer
except ImportError:  # cbor2 missing: CBOR checks will fail loudly when asked for
    pass


class Checks:
    def __init__(self, name):
        self.name = name
        self.count = 0

    def eq(self, what, got, expected):
        if got != expected:
            raise AssertionError(f"{what}: expected {expected!r}, got {got!r}")
        self.count += 1
        print(f"ok  {what}", flush=True)

    def true(self, what, value):
        if not value:
            raise AssertionError(f"{what}: not true ({value!r})")
        self.count += 1
        print(f"ok  {what}", flush=True)


async def connect(url, serializer, realm="realm1"):
    """Opens a transport to `url` (ws://host:port/path or rs://host:port), joins `realm`; returns (session,
    details)."""
    loop = asyncio.get_running_loop()
    joined = loop.create_future()

    class Session(ApplicationSession):
        def onJoin(self, details):
            if not joined.done():
                joined.set_result((self, details))

        def onLeave(self, details):
            if not joined.done():
                joined.set_exception(RuntimeError(f"left before joining: {details.reason} {details.message}"))
            super().onLeave(details)

    def make_session():
        return Session(ComponentConfig(realm))

    parsed = urlparse(url)
    ser = SERIALIZERS[serializer]()
    if parsed.scheme == "ws":
        factory = WampWebSocketClientFactory(make_session, url=url, serializers=[ser])
    elif parsed.scheme == "rs":
        factory = WampRawSocketClientFactory(make_session, serializer=ser)
    else:
        raise ValueError(f"unsupported URL {url}")
    await loop.create_connection(factory, parsed.hostname, parsed.port)
    return await asyncio.wait_for(joined, 10)


def run(name, main, timeout=30):
    """Runs `main(checks)` with a hard timeout; exits 0 on success, 1 on failure."""
    checks = Checks(name)

    async def guarded():
        await asyncio.wait_for(main(checks), timeout)

    try:
        asyncio.run(guarded())
    except BaseException:
        traceback.print_exc()
        print(f"FAILED {name} after {checks.count} passed checks", flush=True)
        sys.exit(1)
    if checks.count == 0:
        print(f"FAILED {name}: no check ran", flush=True)
        sys.exit(1)
    print(f"PASSED {name}: {checks.count} checks", flush=True)
    sys.exit(0)
