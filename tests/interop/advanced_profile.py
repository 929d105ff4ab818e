"""autobahn-python against kreisel's advanced-profile features, one feature family per run: caller and publisher
identification (realm `open` discloses both), subscriber black/white listing, event retention, testaments, the
session meta API, the subscription and registration meta API, payload passthru (autobahn's payload transparency).

Usage: advanced_profile.py FEATURE URL SERIALIZER"""

import asyncio
import json
import sys

from autobahn.wamp.interfaces import IPayloadCodec
from autobahn.wamp.types import EncodedPayload, PublishOptions, RegisterOptions, SubscribeOptions

from common import Collector, close, connect, run, wait_for

FEATURE, URL, SERIALIZER = sys.argv[1], sys.argv[2], sys.argv[3]


async def marker(publisher, topic, collectors):
    """Publishes an end marker to `topic` and waits until every collector got it: everything published before by
    the same publisher has arrived then (events from one publisher arrive in order). The marker is then removed
    from each collector. (It waits for the marker itself: an event published just before may still be on its way
    when the marker is sent, so counting the events seen so far would race with it.)"""
    await publisher.publish(topic, "end", options=PublishOptions(acknowledge=True, exclude_me=False))
    for collector in collectors:
        while ["end"] not in [args for args, _, _ in collector.events]:
            await collector.wait(len(collector.events) + 1, f"the end marker on {topic}")
        collector.events = [event for event in collector.events if event[0] != ["end"]]


async def caller_identification(check):
    for realm, disclosed in [("open", True), ("realm1", False)]:
        callee, _ = await connect(URL, SERIALIZER, realm)
        caller, caller_details = await connect(URL, SERIALIZER, realm)

        def who(details):
            return [details.caller, details.caller_authid, details.caller_authrole]

        await callee.register(who, "com.example.who", options=RegisterOptions(details_arg="details"))
        got = await caller.call("com.example.who")
        expected = [caller_details.session, caller_details.authid, "anonymous"] if disclosed else [None] * 3
        check.eq(f"realm {realm}: INVOCATION details name the caller: {disclosed}", got, expected)
        check.true("the caller's authid is its own", caller_details.authid.startswith("anonymous"))
        await close(callee, caller)


async def publisher_identification(check):
    for realm, disclosed in [("open", True), ("realm1", False)]:
        subscriber, _ = await connect(URL, SERIALIZER, realm)
        publisher, publisher_details = await connect(URL, SERIALIZER, realm)
        events = Collector()
        await subscriber.subscribe(events, "com.example.news", options=SubscribeOptions(details=True))
        publisher.publish("com.example.news", "hello")
        _, _, details = await events.wait(1, "the event")
        got = [details.publisher, details.publisher_authid, details.publisher_authrole]
        expected = [publisher_details.session, publisher_details.authid, "anonymous"] if disclosed else [None] * 3
        check.eq(f"realm {realm}: EVENT details name the publisher: {disclosed}", got, expected)
        await close(subscriber, publisher)


async def blackwhite_listing(check):
    sessions = [await connect(URL, SERIALIZER) for _ in range(3)]
    publisher, _ = await connect(URL, SERIALIZER)
    collectors = []
    for session, _ in sessions:
        collector = Collector()
        await session.subscribe(collector, "com.example.filtered")
        collectors.append(collector)
    ids = [details.session for _, details in sessions]
    authids = [details.authid for _, details in sessions]
    cases = [
        ("exclude", PublishOptions(exclude=[ids[0]], acknowledge=True), [1, 2]),
        ("eligible", PublishOptions(eligible=[ids[0], ids[2]], acknowledge=True), [0, 2]),
        ("exclude beats eligible", PublishOptions(eligible=[ids[0], ids[1]], exclude=[ids[1]], acknowledge=True), [0]),
        ("exclude_authid", PublishOptions(exclude_authid=[authids[2]], acknowledge=True), [0, 1]),
        ("eligible_authid", PublishOptions(eligible_authid=[authids[1]], acknowledge=True), [1]),
        ("eligible_authrole anonymous", PublishOptions(eligible_authrole=["anonymous"], acknowledge=True), [0, 1, 2]),
        ("exclude_authrole anonymous", PublishOptions(exclude_authrole=["anonymous"], acknowledge=True), []),
        ("eligible_authrole other", PublishOptions(eligible_authrole=["admin"], acknowledge=True), []),
    ]
    for index, (what, options, receivers) in enumerate(cases):
        await publisher.publish("com.example.filtered", index, options=options)
        await marker(publisher, "com.example.filtered", collectors)
        got = [i for i, c in enumerate(collectors) if [index] in [args for args, _, _ in c.events]]
        check.eq(f"{what}: receivers", got, receivers)
        for collector in collectors:
            collector.events.clear()
    await close(publisher, *(session for session, _ in sessions))


async def event_retention(check):
    publisher, _ = await connect(URL, SERIALIZER)
    for text in ["first", "second"]:
        await publisher.publish("com.example.state", text, options=PublishOptions(retain=True, acknowledge=True))
    await publisher.publish("com.example.other", "not retained", options=PublishOptions(acknowledge=True))
    late, _ = await connect(URL, SERIALIZER)
    retained = Collector()
    await late.subscribe(retained, "com.example.state", options=SubscribeOptions(get_retained=True, details=True))
    args, _, details = await retained.wait(1, "the retained event")
    check.eq("the last retained event arrives on subscribe", args, ["second"])
    check.eq("it is marked retained", details.retained, True)
    plain = Collector()
    await late.subscribe(plain, "com.example.other", options=SubscribeOptions(get_retained=True))
    without = Collector()
    other, _ = await connect(URL, SERIALIZER)
    await other.subscribe(without, "com.example.state")
    await marker(publisher, "com.example.state", [retained, without])
    await marker(publisher, "com.example.other", [plain])
    check.eq("only the retained event, once", [args for args, _, _ in retained.events], [["second"]])
    check.eq("nothing for a publication without retain", plain.events, [])
    check.eq("nothing without get_retained", without.events, [])
    await close(publisher, late, other)


async def testament(check):
    watcher, _ = await connect(URL, SERIALIZER)
    gone = Collector()
    await watcher.subscribe(gone, "com.example.gone")
    dying, dying_details = await connect(URL, SERIALIZER)
    result = await dying.call("wamp.session.add_testament", "com.example.gone", ["bye"], {"who": "dying"})
    check.eq("add_testament returns nothing", result, None)
    # The transport is dropped without GOODBYE: the router publishes the testament.
    dying._transport.transport.abort()
    args, kwargs, _ = await gone.wait(1, "the testament event")
    check.eq("testament args", args, ["bye"])
    check.eq("testament kwargs", kwargs, {"who": "dying"})
    # A flushed testament is not published.
    careful, _ = await connect(URL, SERIALIZER)
    await careful.call("wamp.session.add_testament", "com.example.gone", ["flushed"], {})
    await careful.call("wamp.session.flush_testaments")
    await close(careful)
    await marker(watcher, "com.example.gone", [gone])
    check.eq("a flushed testament is not published", gone.events[1:], [])
    await check.error(
        "a testament on a reserved topic",
        watcher.call("wamp.session.add_testament", "wamp.session.on_join", [], {}),
        "wamp.error.invalid_uri",
    )
    await close(watcher)


async def session_meta(check):
    watcher, watcher_details = await connect(URL, SERIALIZER)
    joins, leaves = Collector(), Collector()
    await watcher.subscribe(joins, "wamp.session.on_join")
    await watcher.subscribe(leaves, "wamp.session.on_leave")
    newcomer, details = await connect(URL, SERIALIZER)
    args, _, _ = await joins.wait(1, "wamp.session.on_join")
    joined = args[0]
    check.eq("on_join: session", joined["session"], details.session)
    check.eq("on_join: authid", joined["authid"], details.authid)
    check.eq("on_join: authrole and authmethod", [joined["authrole"], joined["authmethod"]], ["anonymous"] * 2)
    check.eq("wamp.session.count", await watcher.call("wamp.session.count"), 2)
    check.eq("wamp.session.count by authrole", await watcher.call("wamp.session.count", ["admin"]), 0)
    listed = await watcher.call("wamp.session.list")
    check.eq("wamp.session.list", sorted(listed), sorted([watcher_details.session, details.session]))
    got = await watcher.call("wamp.session.get", details.session)
    check.eq("wamp.session.get", [got["session"], got["authid"]], [details.session, details.authid])
    await check.error("wamp.session.get of nobody", watcher.call("wamp.session.get", 1), "wamp.error.no_such_session")
    await check.error(
        "killing oneself",
        watcher.call("wamp.session.kill", watcher_details.session),
        "wamp.error.no_such_session",
    )
    result = await watcher.call("wamp.session.kill", details.session, reason="com.example.kicked", message="out")
    check.eq("wamp.session.kill returns nothing", result, None)
    close_details = await wait_for(newcomer.left, "the killed session's GOODBYE")
    check.eq("the killed session's GOODBYE", [close_details.reason, close_details.message], ["com.example.kicked", "out"])
    args, _, _ = await leaves.wait(1, "wamp.session.on_leave")
    check.eq("on_leave: session, authid, authrole", args, [details.session, details.authid, "anonymous"])
    others = [await connect(URL, SERIALIZER) for _ in range(2)]
    check.eq("wamp.session.kill_all", await watcher.call("wamp.session.kill_all"), 2)
    for session, _ in others:
        close_details = await wait_for(session.left, "GOODBYE after kill_all")
        check.eq("kill_all's default reason", close_details.reason, "wamp.close.killed")
    check.eq("only the caller is left", await watcher.call("wamp.session.list"), [watcher_details.session])
    await close(watcher)


async def membership_meta(check):
    watcher, _ = await connect(URL, SERIALIZER)
    heard = {}
    for kind, names in [("subscription", ["on_create", "on_subscribe", "on_unsubscribe", "on_delete"]),
                        ("registration", ["on_create", "on_register", "on_unregister", "on_delete"])]:
        for name in names:
            heard[f"{kind}.{name}"] = Collector()
            await watcher.subscribe(heard[f"{kind}.{name}"], f"wamp.{kind}.{name}")
    member, member_details = await connect(URL, SERIALIZER)
    me = member_details.session
    subscription = await member.subscribe(lambda *a: None, "com.example.watched")
    args, _, _ = await heard["subscription.on_create"].wait(1, "wamp.subscription.on_create")
    check.eq("on_create: session", args[0], me)
    created = args[1]
    check.eq("on_create: details", [created["id"], created["uri"], created["match"]],
             [subscription.id, "com.example.watched", "exact"])
    check.true("on_create: created is an ISO 8601 time", created["created"].endswith("Z") and "T" in created["created"])
    args, _, _ = await heard["subscription.on_subscribe"].wait(1, "wamp.subscription.on_subscribe")
    check.eq("on_subscribe", args, [me, subscription.id])
    check.eq("wamp.subscription.lookup", await watcher.call("wamp.subscription.lookup", "com.example.watched"),
             subscription.id)
    check.eq("wamp.subscription.match", await watcher.call("wamp.subscription.match", "com.example.watched"),
             [subscription.id])
    check.eq("wamp.subscription.get", (await watcher.call("wamp.subscription.get", subscription.id))["uri"],
             "com.example.watched")
    check.eq("wamp.subscription.list_subscribers",
             await watcher.call("wamp.subscription.list_subscribers", subscription.id), [me])
    check.eq("wamp.subscription.count_subscribers",
             await watcher.call("wamp.subscription.count_subscribers", subscription.id), 1)
    listed = await watcher.call("wamp.subscription.list")
    check.true("wamp.subscription.list", subscription.id in listed["exact"] and listed["prefix"] == [])
    await check.error("wamp.subscription.get of nothing", watcher.call("wamp.subscription.get", 1),
                      "wamp.error.no_such_subscription")
    await subscription.unsubscribe()
    args, _, _ = await heard["subscription.on_unsubscribe"].wait(1, "wamp.subscription.on_unsubscribe")
    check.eq("on_unsubscribe", args, [me, subscription.id])
    args, _, _ = await heard["subscription.on_delete"].wait(1, "wamp.subscription.on_delete")
    check.eq("on_delete", args, [me, subscription.id])

    registration = await member.register(lambda: None, "com.example.", options=RegisterOptions(match="prefix"))
    args, _, _ = await heard["registration.on_create"].wait(1, "wamp.registration.on_create")
    check.eq("registration on_create", [args[0], args[1]["id"], args[1]["match"], args[1]["invoke"]],
             [me, registration.id, "prefix", "single"])
    args, _, _ = await heard["registration.on_register"].wait(1, "wamp.registration.on_register")
    check.eq("on_register", args, [me, registration.id])
    check.eq("wamp.registration.lookup", await watcher.call("wamp.registration.lookup", "com.example.",
                                                            {"match": "prefix"}), registration.id)
    check.eq("wamp.registration.match", await watcher.call("wamp.registration.match", "com.example.add"),
             registration.id)
    check.eq("wamp.registration.match of nothing", await watcher.call("wamp.registration.match", "org.x"), None)
    check.eq("wamp.registration.list_callees",
             await watcher.call("wamp.registration.list_callees", registration.id), [me])
    check.eq("wamp.registration.count_callees",
             await watcher.call("wamp.registration.count_callees", registration.id), 1)
    await check.error("wamp.registration.get of nothing", watcher.call("wamp.registration.get", 1),
                      "wamp.error.no_such_registration")
    # The callee's transport is dropped: on_unregister, then on_delete.
    member._transport.transport.abort()
    args, _, _ = await heard["registration.on_unregister"].wait(1, "wamp.registration.on_unregister")
    check.eq("on_unregister", args, [me, registration.id])
    args, _, _ = await heard["registration.on_delete"].wait(1, "wamp.registration.on_delete")
    check.eq("on_delete", args, [me, registration.id])
    await close(watcher)


class JsonCodec(IPayloadCodec):
    """A payload codec with a custom algorithm: the payload becomes JSON bytes the router never reads."""

    def encode(self, is_originating, uri, args=None, kwargs=None):
        return EncodedPayload(json.dumps([uri, args, kwargs]).encode(), "x_test", "json")

    def decode(self, is_originating, uri, encoded_payload):
        check_algo = encoded_payload.enc_algo == "x_test" and encoded_payload.enc_serializer == "json"
        if not check_algo:
            raise ValueError(f"unexpected algorithm {encoded_payload.enc_algo}")
        uri, args, kwargs = json.loads(encoded_payload.payload)
        return uri, args, kwargs


async def payload_passthru(check):
    sessions = [await connect(URL, SERIALIZER) for _ in range(3)]
    subscriber, publisher, callee = (session for session, _ in sessions)
    features = publisher._router_roles["broker"]
    check.true("broker announces payload_transparency", features.payload_transparency)
    for session in (subscriber, publisher, callee):
        session.set_payload_codec(JsonCodec())
    events = Collector()
    await subscriber.subscribe(events, "com.example.secret", options=SubscribeOptions(details=True))
    await publisher.publish("com.example.secret", "payload", n=1, options=PublishOptions(acknowledge=True))
    args, kwargs, details = await events.wait(1, "the passthru event")
    check.eq("the event's payload, decoded by the subscriber", [args, kwargs], [["payload"], {"n": 1}])
    check.eq("EVENT details carry enc_algo", details.enc_algo, "x_test")
    await callee.register(lambda a, b: {"sum": a + b}, "com.example.add")
    check.eq("a passthru call and its result", await publisher.call("com.example.add", 2, 3), {"sum": 5})
    await close(subscriber, publisher, callee)


FEATURES = {
    "caller_identification": caller_identification,
    "publisher_identification": publisher_identification,
    "blackwhite_listing": blackwhite_listing,
    "event_retention": event_retention,
    "testament": testament,
    "session_meta": session_meta,
    "membership_meta": membership_meta,
    "payload_passthru": payload_passthru,
}

run(f"{FEATURE} over {URL} ({SERIALIZER})", FEATURES[FEATURE])
