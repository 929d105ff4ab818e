"""autobahn-python against kreisel: join, pub/sub, RPC, errors, progressive results, patterns.

Usage: basic_profile.py URL SERIALIZER   (URL: ws://127.0.0.1:PORT/ws or rs://127.0.0.1:PORT)"""

import asyncio
import sys

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions, PublishOptions, RegisterOptions, SubscribeOptions

from common import connect, run

URL, SERIALIZER = sys.argv[1], sys.argv[2]

# A payload exercising what serializers disagree on: unicode (BMP and astral), nesting, large ints, floats, null,
# booleans and binary.
BIG = 2**63 - 1 if SERIALIZER != "json" else 2**53
ARGS = [1, "ü€ and 😀", {"n": [None, True, False, 1.5, -7]}, BIG, b"\x00\x01\xfe\xff"]
KWARGS = {"k": "v", "nested": {"list": [1, [2, [3]]]}, "bin": b"\xca\xfe"}


async def wait_for(future, what):
    try:
        return await asyncio.wait_for(future, 5)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def main(check):
    loop = asyncio.get_running_loop()
    sub, details = await connect(URL, SERIALIZER)
    pub, _ = await connect(URL, SERIALIZER)
    check.eq("WELCOME authmethod", details.authmethod, "anonymous")
    check.eq("WELCOME authrole", details.authrole, "anonymous")
    roles = sub._router_roles  # what autobahn parsed from WELCOME.Details.roles
    check.true("WELCOME announces broker and dealer", "broker" in roles and "dealer" in roles)
    check.true("broker announces publisher_exclusion", roles["broker"].publisher_exclusion)
    check.true("session IDs differ", sub.session_id != pub.session_id)

    # Pub/sub with args and kwargs, checked for exact equality.
    received = loop.create_future()

    def on_event(*args, **kwargs):
        if not received.done():
            received.set_result((list(args), kwargs))

    subscription = await sub.subscribe(on_event, "com.example.topic")
    publication = await pub.publish("com.example.topic", *ARGS, options=PublishOptions(acknowledge=True), **KWARGS)
    check.true("PUBLISHED carries a publication ID", publication.id > 0)
    args, kwargs = await wait_for(received, "EVENT")
    check.eq("EVENT args", args, ARGS)
    check.eq("EVENT kwargs", kwargs, KWARGS)

    # Publisher exclusion: by default the publisher does not get its own event; with exclude_me=False it does.
    own = []
    await pub.subscribe(lambda *a, **k: own.append(a), "com.example.topic")
    await pub.publish("com.example.topic", "excluded", options=PublishOptions(acknowledge=True))
    await pub.publish("com.example.topic", "included", options=PublishOptions(acknowledge=True, exclude_me=False))
    await asyncio.sleep(0.3)
    check.eq("publisher receives only the exclude_me=False event", own, [("included",)])

    # Unsubscribe: no more events.
    await subscription.unsubscribe()
    before = len(own)
    after_unsubscribe = []
    sub_events_before = received.done()
    await pub.publish("com.example.topic", "late", options=PublishOptions(acknowledge=True, exclude_me=False))
    await asyncio.sleep(0.2)
    check.eq("own subscription still receives", len(own), before + 1)
    check.true("unsubscribed handler got nothing new", sub_events_before and not after_unsubscribe)

    # Pattern-based subscription: details.topic carries the concrete topic.
    matched = loop.create_future()

    def on_pattern(*args, details=None):
        if not matched.done():
            matched.set_result((args, details.topic))

    await sub.subscribe(on_pattern, "com.example.sensors.", options=SubscribeOptions(match="prefix", details_arg="details"))
    await pub.publish("com.example.sensors.7.temp", 21.5, options=PublishOptions(acknowledge=True))
    args, topic = await wait_for(matched, "prefix EVENT")
    check.eq("prefix subscription: args", args, (21.5,))
    check.eq("prefix subscription: details.topic", topic, "com.example.sensors.7.temp")

    # RPC with args and kwargs.
    def echo(*args, **kwargs):
        from autobahn.wamp.types import CallResult

        return CallResult(*args, **kwargs)

    registration = await sub.register(echo, "com.example.echo")
    result = await pub.call("com.example.echo", *ARGS, **KWARGS)
    check.eq("RESULT args", list(result.results), ARGS)
    check.eq("RESULT kwargs", result.kwresults, KWARGS)
    check.eq("single result", await pub.call("com.example.echo", 42), 42)

    # Registering the same procedure twice.
    try:
        await pub.register(echo, "com.example.echo")
        raise AssertionError("second REGISTER succeeded")
    except ApplicationError as error:
        check.eq("second REGISTER", error.error, "wamp.error.procedure_already_exists")

    # Callee errors reach the caller with URI, args and kwargs.
    def fail():
        raise ApplicationError("com.myapp.error.custom", "text", code=7)

    await sub.register(fail, "com.example.fail")
    try:
        await pub.call("com.example.fail")
        raise AssertionError("call to a failing callee succeeded")
    except ApplicationError as error:
        check.eq("callee error URI", error.error, "com.myapp.error.custom")
        check.eq("callee error args", list(error.args), ["text"])
        check.eq("callee error kwargs", error.kwargs, {"code": 7})

    try:
        await pub.call("com.example.nobody")
        raise AssertionError("call to an unregistered procedure succeeded")
    except ApplicationError as error:
        check.eq("unregistered procedure", error.error, "wamp.error.no_such_procedure")

    # Progressive call results.
    async def stream(n, details=None):
        for i in range(n):
            details.progress(i)
            await asyncio.sleep(0)
        return n

    await sub.register(stream, "com.example.stream", options=RegisterOptions(details_arg="details"))
    progress = []
    total = await pub.call("com.example.stream", 3, options=CallOptions(on_progress=progress.append))
    check.eq("progressive results", progress, [0, 1, 2])
    check.eq("final result after progress", total, 3)

    # Unregister: the procedure is gone.
    await registration.unregister()
    try:
        await pub.call("com.example.echo", 1)
        raise AssertionError("call after UNREGISTER succeeded")
    except ApplicationError as error:
        check.eq("call after UNREGISTER", error.error, "wamp.error.no_such_procedure")

    # A callee leaving with a call pending: the caller gets wamp.error.canceled.
    callee, _ = await connect(URL, SERIALIZER)
    invoked = loop.create_future()

    async def hang():
        invoked.set_result(True)
        await asyncio.sleep(3600)

    await callee.register(hang, "com.example.hang")
    pending = asyncio.ensure_future(pub.call("com.example.hang"))
    await wait_for(invoked, "INVOCATION")
    callee.leave()
    try:
        await wait_for(pending, "ERROR after the callee left")
        raise AssertionError("call to a departed callee succeeded")
    except ApplicationError as error:
        check.eq("callee left", error.error, "wamp.error.canceled")

    pub.leave()
    sub.leave()
    await asyncio.sleep(0.1)


run(f"basic profile over {URL} ({SERIALIZER})", main)
