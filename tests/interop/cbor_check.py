"""autobahn-python against kreisel over CBOR: `wamp.2.cbor` on WebSocket and RawSocket serializer 3.

Usage: cbor_check.py WS_URL RS_URL   (ws://host:port/path, rs://host:port of one running kreisel, realm `realm1`)

Checks, with real autobahn sessions (asyncio flavour, cbor2 underneath):
- joining over WebSocket with only `wamp.2.cbor` offered, and over RawSocket with serializer 3;
- publish/subscribe and call/register between the two CBOR sessions with every plain CBOR type autobahn sends
  (integers up to 2^64 - 1 and down to -2^63, floats, text with astral characters, bytes, nested lists and
  dictionaries, None, booleans), in args and kwargs, with acknowledgements and errors;
- values cbor2 sends as tags (a bignum, a datetime): a CBOR subscriber gets them back unchanged (kreisel copies
  the bytes), a JSON subscriber gets the untagged item (the bignum's magnitude as bytes, the datetime's string);
- cross-serializer routing: a JSON publisher's bytes reach the CBOR subscribers as bytes, a CBOR publisher's
  bytes reach a JSON subscriber as bytes.

Prints one line per passed check and exits 0 only if all passed; a hard timeout (asyncio, with SIGALRM behind it)
guarantees it never hangs.
"""

import asyncio
import datetime
import sys

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions

from common import close, connect, run

WS_URL, RS_URL = sys.argv[1], sys.argv[2]


async def join(url, serializer):
    """A session joined to realm1 over `url` with only `serializer` offered."""
    session, _ = await connect(url, serializer)
    return session


def negotiated(session):
    """The serializer ID the session's transport speaks (autobahn keeps it on the transport)."""
    return session._transport._serializer.SERIALIZER_ID


class Inbox:
    """Events of one subscription, in arrival order."""

    def __init__(self):
        self.queue = asyncio.Queue()

    def __call__(self, *args, **kwargs):
        self.queue.put_nowait((list(args), kwargs))

    async def next(self):
        return await asyncio.wait_for(self.queue.get(), 10)


# Every plain type, at the edges of what CBOR heads encode.
ARGS = [
    0,
    23,
    24,
    255,
    65536,
    2**32,
    2**53,
    2**64 - 1,
    -1,
    -25,
    -(2**63),
    1.5,
    -0.0,
    1e300,
    "",
    "ü€😀 日本",
    b"",
    bytes(range(256)),
    None,
    True,
    False,
    [],
    {},
    [1, [2, [3, {"deep": [b"\x00\xff"]}]]],
]
KWARGS = {"text": "x" * 300, "bin": b"\x01\x02\x03", "nested": {"list": [None, 2.25], "empty": {}}}


async def main(check):
    cbor_ws = await join(WS_URL, "cbor")
    check.eq("WebSocket session negotiated wamp.2.cbor", negotiated(cbor_ws), "cbor")
    cbor_rs = await join(RS_URL, "cbor")
    check.eq("RawSocket session negotiated serializer 3 (cbor)", negotiated(cbor_rs), "cbor")
    json_ws = await join(WS_URL, "json")
    check.eq("JSON session joined the same realm", negotiated(json_ws), "json")

    # Publish/subscribe between CBOR sessions, both directions, and to a JSON subscriber.
    inbox_ws, inbox_rs, inbox_json = Inbox(), Inbox(), Inbox()
    await cbor_ws.subscribe(inbox_ws, "com.example.cbor")
    await cbor_rs.subscribe(inbox_rs, "com.example.cbor")
    await json_ws.subscribe(inbox_json, "com.example.cbor")
    publication = await cbor_rs.publish(
        "com.example.cbor", *ARGS, options=PublishOptions(acknowledge=True, exclude_me=False), **KWARGS
    )
    check.eq("acknowledged publication has an ID", isinstance(publication.id, int) and publication.id > 0, True)
    for name, inbox in [("CBOR/WebSocket", inbox_ws), ("CBOR/RawSocket (publisher)", inbox_rs)]:
        args, kwargs = await inbox.next()
        check.eq(f"{name} subscriber: args of every CBOR type", args, ARGS)
        check.eq(f"{name} subscriber: kwargs", kwargs, KWARGS)
    args, kwargs = await inbox_json.next()
    # JSON carries bytes as "\0" + base64 (kreisel converts); autobahn's JSON serializer turns them back into bytes.
    check.eq("JSON subscriber: same args through CBOR -> JSON", args, ARGS)
    check.eq("JSON subscriber: same kwargs", kwargs, KWARGS)

    # Values cbor2 sends as tags: unchanged for CBOR peers, untagged for JSON peers.
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    await cbor_ws.publish("com.example.cbor", 2**70, when, options=PublishOptions(acknowledge=True))
    args, _ = await inbox_rs.next()
    check.eq("CBOR subscriber: a bignum (tag 2) arrives unchanged", args[0], 2**70)
    check.eq("CBOR subscriber: a datetime (tag 0) arrives unchanged", args[1], when)
    args, _ = await inbox_json.next()
    check.eq("JSON subscriber: the bignum as its magnitude", args[0], (2**70).to_bytes(9, "big"))
    check.eq("JSON subscriber: the datetime as its string", args[1], "2024-01-02T03:04:05Z")

    # A JSON publisher's binary and Unicode reach CBOR subscribers natively.
    await json_ws.publish(
        "com.example.cbor", b"\x00\x01\xfe\xff", "ü😀", {"k": b""}, options=PublishOptions(acknowledge=True)
    )
    for name, inbox in [("CBOR/WebSocket", inbox_ws), ("CBOR/RawSocket", inbox_rs)]:
        args, _ = await inbox.next()
        check.eq(f"{name} subscriber: bytes and text from a JSON publisher", args, [b"\x00\x01\xfe\xff", "ü😀", {"k": b""}])

    # Call/register across the two CBOR transports, and to a JSON caller; errors carry their payload.
    def echo(*args, **kwargs):
        return {"args": list(args), "kwargs": kwargs}

    def fail(*args):
        raise ApplicationError("com.example.error.cbor", *args, reason="ü")

    await cbor_rs.register(echo, "com.example.echo")
    await cbor_rs.register(fail, "com.example.fail")
    result = await cbor_ws.call("com.example.echo", *ARGS, **KWARGS)
    check.eq("CBOR caller -> CBOR callee: result", result, {"args": ARGS, "kwargs": KWARGS})
    result = await json_ws.call("com.example.echo", b"\x07", "€", n=2**64 - 1)
    check.eq("JSON caller -> CBOR callee: result", result, {"args": [b"\x07", "€"], "kwargs": {"n": 2**64 - 1}})
    try:
        await cbor_ws.call("com.example.fail", b"\x01", 2)
    except ApplicationError as error:
        check.eq("callee error URI", error.error, "com.example.error.cbor")
        check.eq("callee error payload", (list(error.args), error.kwargs), ([b"\x01", 2], {"reason": "ü"}))
    else:
        raise AssertionError("the failing call succeeded")

    await close(cbor_ws, cbor_rs, json_ws)


run("cbor_check", main, timeout=40)
