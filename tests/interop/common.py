"""Shared helpers for kreisel's autobahn-python interop checks (asyncio flavour).

Every check program connects real autobahn sessions to a running kreisel, checks, prints one line per passed check
and exits 0 only if everything passed; a hard timeout (asyncio, with SIGALRM behind it) guarantees it never hangs.

Transport URLs: ws://HOST:PORT/PATH (WebSocket), rs://HOST:PORT or tcp://HOST:PORT or plain HOST:PORT (RawSocket
over TCP)."""

import asyncio
import math
import os
import signal
import sys
import traceback
from urllib.parse import urlparse

from autobahn.asyncio.rawsocket import WampRawSocketClientFactory
from autobahn.asyncio.wamp import ApplicationSession
from autobahn.asyncio.websocket import WampWebSocketClientFactory
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.serializer import JsonSerializer, MsgPackSerializer
from autobahn.wamp.types import ComponentConfig

SERIALIZERS = {"json": JsonSerializer, "msgpack": MsgPackSerializer}
try:
    from autobahn.wamp.serializer import CBORSerializer

    SERIALIZERS["cbor"] = CBORSerializer
except ImportError:  # cbor2 missing: CBOR checks will fail loudly when asked for
    pass

# How long one awaited step (a reply, an event) may take before the check fails.
STEP_TIMEOUT_S = 5


def mismatch(got, expected, path="value"):
    """Where `got` differs from `expected`, with types compared strictly (True is not 1, 1.0 is not 1, bytes are
    not str, -0.0 is not 0.0); None when they are the same. Tuples and lists count as the same kind."""
    seq = (list, tuple)
    if isinstance(expected, seq) and isinstance(got, seq):
        if len(got) != len(expected):
            return f"{path}: length {len(got)} != expected {len(expected)} ({got!r} vs {expected!r})"
        for index, (g, e) in enumerate(zip(got, expected)):
            found = mismatch(g, e, f"{path}[{index}]")
            if found:
                return found
        return None
    if type(got) is not type(expected):
        return f"{path}: {type(got).__name__} {got!r} != expected {type(expected).__name__} {expected!r}"
    if isinstance(expected, dict):
        if set(got) != set(expected):
            return f"{path}: keys {sorted(got)!r} != expected {sorted(expected)!r}"
        for key in expected:
            found = mismatch(got[key], expected[key], f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(expected, float):
        same = got == expected and math.copysign(1, got) == math.copysign(1, expected)
        return None if same else f"{path}: {got!r} != expected {expected!r}"
    return None if got == expected else f"{path}: {got!r} != expected {expected!r}"


def short(value, limit=300):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


class Checks:
    def __init__(self, name):
        self.name = name
        self.count = 0

    def passed(self, what):
        self.count += 1
        print(f"ok  {what}", flush=True)

    def eq(self, what, got, expected):
        if got != expected:
            raise AssertionError(f"{what}: expected {short(expected)}, got {short(got)}")
        self.passed(what)

    def same(self, what, got, expected):
        """Exact equality, types included (see `mismatch`)."""
        found = mismatch(got, expected)
        if found:
            raise AssertionError(f"{what}: {found}")
        self.passed(what)

    def true(self, what, value):
        if not value:
            raise AssertionError(f"{what}: not true ({short(value)})")
        self.passed(what)

    async def error(self, what, awaitable, uri, args=None, kwargs=None):
        """`awaitable` must fail with an ApplicationError `uri` (and, when given, exactly these args/kwargs)."""
        try:
            result = await asyncio.wait_for(awaitable, STEP_TIMEOUT_S)
        except ApplicationError as error:
            if error.error != uri:
                raise AssertionError(f"{what}: expected error {uri}, got {error.error} {error.args!r} {error.kwargs!r}")
            if args is not None:
                found = mismatch(list(error.args), args, "error args")
                if found:
                    raise AssertionError(f"{what}: {found}")
            if kwargs is not None:
                found = mismatch(error.kwargs, kwargs, "error kwargs")
                if found:
                    raise AssertionError(f"{what}: {found}")
            self.passed(f"{what}: {uri}")
            return error
        except asyncio.TimeoutError:
            raise AssertionError(f"{what}: no reply within {STEP_TIMEOUT_S} s (expected error {uri})") from None
        raise AssertionError(f"{what}: expected error {uri}, but it succeeded with {short(result)}")


async def wait_for(future, what, timeout=STEP_TIMEOUT_S):
    try:
        return await asyncio.wait_for(future, timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


class Collector:
    """An event handler that records (args, kwargs, details) and lets a check wait for the n-th event."""

    def __init__(self):
        self.events = []
        self._waiters = []

    def __call__(self, *args, details=None, **kwargs):
        self.events.append((list(args), kwargs, details))
        for count, future in list(self._waiters):
            if len(self.events) >= count and not future.done():
                future.set_result(None)

    async def wait(self, count, what):
        if len(self.events) < count:
            future = asyncio.get_running_loop().create_future()
            self._waiters.append((count, future))
            await wait_for(future, what)
        return self.events[count - 1]


def transport_of(url):
    """("websocket", url) or ("rawsocket", rs-url) for a transport URL."""
    if "://" not in url:
        url = "rs://" + url
    parsed = urlparse(url)
    if parsed.scheme == "ws":
        return "websocket", parsed
    if parsed.scheme in ("rs", "tcp"):
        return "rawsocket", parsed
    raise ValueError(f"unsupported URL {url}")


class Refused(RuntimeError):
    """The router answered HELLO (or AUTHENTICATE) with ABORT: `reason` is its URI."""

    def __init__(self, reason, message):
        super().__init__(f"left before joining: {reason}: {message}")
        self.reason = reason


async def connect(url, serializer, realm="realm1"):
    """Opens a transport to `url`, joins `realm` with only `serializer` offered; returns (session, details). The
    session has a `closed` future, resolved when its transport is gone (see `close`), and a `left` future, resolved
    with the CloseDetails when the session ends (its GOODBYE's reason and message)."""
    return await connect_auth(url, serializer, realm)


async def connect_auth(url, serializer, realm, authmethods=None, authid=None, authextra=None, on_challenge=None,
                       on_welcome=None):
    """Like `connect`, joining `realm` with the given authentication (none: the client's default, anonymous):
    `on_challenge(challenge)` returns the signature (or a future of it); `on_welcome(authextra)` may refuse the
    router's WELCOME by returning a reason (WAMP-SCRAM checks the server signature there). Raises `Refused` when the
    router aborts the join."""
    loop = asyncio.get_running_loop()
    joined = loop.create_future()
    closed = loop.create_future()
    left = loop.create_future()

    class Session(ApplicationSession):
        def onConnect(self):
            if authmethods is None:
                super().onConnect()
            else:
                self.join(realm, authmethods=authmethods, authid=authid, authextra=authextra)

        def onChallenge(self, challenge):
            if on_challenge is None:
                raise RuntimeError(f"unexpected CHALLENGE {challenge.method}")
            return on_challenge(challenge)

        def onWelcome(self, welcome):
            return on_welcome(welcome.authextra) if on_welcome else None

        def onJoin(self, details):
            if not joined.done():
                joined.set_result((self, details))

        def onLeave(self, details):
            if not joined.done():
                joined.set_exception(Refused(details.reason, details.message))
            if not left.done():
                left.set_result(details)
            super().onLeave(details)

        def onDisconnect(self):
            if not joined.done():
                joined.set_exception(RuntimeError("transport closed before joining"))
            if not closed.done():
                closed.set_result(None)
            super().onDisconnect()

    def make_session():
        session = Session(ComponentConfig(realm))
        session.closed = closed
        session.left = left
        return session

    kind, parsed = transport_of(url)
    ser = SERIALIZERS[serializer]()
    if kind == "websocket":
        factory = WampWebSocketClientFactory(make_session, url=parsed.geturl(), serializers=[ser])
    else:
        factory = WampRawSocketClientFactory(make_session, serializer=ser)
    await loop.create_connection(factory, parsed.hostname, parsed.port)
    return await wait_for(joined, f"WELCOME or ABORT from {url} ({serializer}, {authmethods or 'anonymous'})", 10)


async def start_component(url, serializer, realm, component):
    """Runs an ApplicationSession subclass `component` (as a crossbar component would be written) joined to `realm`
    over `url`; returns once its onJoin has finished."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    class Started(component):
        async def onJoin(self, details):
            try:
                await super().onJoin(details)
            except BaseException as error:
                if not ready.done():
                    ready.set_exception(error)
                raise
            if not ready.done():
                ready.set_result(self)

        def onLeave(self, details):
            if not ready.done():
                ready.set_exception(Refused(details.reason, details.message))
            super().onLeave(details)

    kind, parsed = transport_of(url)
    ser = SERIALIZERS[serializer]()
    make = lambda: Started(ComponentConfig(realm))  # noqa: E731
    if kind == "websocket":
        factory = WampWebSocketClientFactory(make, url=parsed.geturl(), serializers=[ser])
    else:
        factory = WampRawSocketClientFactory(make, serializer=ser)
    await loop.create_connection(factory, parsed.hostname, parsed.port)
    return await wait_for(ready, f"{component.__name__} to join {realm}", 10)


async def close(*sessions):
    """GOODBYE from each session, then waits until its transport is closed."""
    for session in sessions:
        if session.is_attached():
            session.leave()
        elif session._transport:
            session.disconnect()
    for session in sessions:
        await wait_for(session.closed, "the transport to close after GOODBYE")


def check_welcome(check, label, session, details, serializer):
    """What every joined session must have got in WELCOME."""
    check.eq(f"{label}: WELCOME realm", details.realm, "realm1")
    check.eq(f"{label}: WELCOME authmethod", details.authmethod, "anonymous")
    check.eq(f"{label}: WELCOME authrole", details.authrole, "anonymous")
    check.eq(f"{label}: negotiated serializer", details.serializer, serializer)
    check.true(f"{label}: session ID in 1..2^53", isinstance(details.session, int) and 1 <= details.session <= 2**53)
    roles = session._router_roles  # what autobahn parsed from WELCOME.Details.roles
    check.true(f"{label}: WELCOME announces broker and dealer", "broker" in roles and "dealer" in roles)


def run(name, main, timeout=20):
    """Runs `main(checks)` with a hard timeout; exits 0 on success, 1 on failure, 2 if even the timeout hung."""
    checks = Checks(name)

    def hung(*_):
        print(f"FAILED {name}: hard timeout ({timeout + 10} s) with the event loop stuck", flush=True)
        os._exit(2)

    signal.signal(signal.SIGALRM, hung)
    signal.alarm(timeout + 10)

    async def guarded():
        try:
            await asyncio.wait_for(main(checks), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"overall timeout of {timeout} s") from None

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

