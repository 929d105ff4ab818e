"""autobahn-python against kreisel: joining and publish/subscribe.

Usage: pubsub.py URL SERIALIZER   (URL: ws://127.0.0.1:PORT/ws or rs://127.0.0.1:PORT; SERIALIZER: json|msgpack)

Checks: WELCOME details (realm, authmethod/authrole anonymous, negotiated serializer, broker and dealer roles with
the features used here); events with args and kwargs holding unicode (BMP and astral), nested lists and dicts,
large integers, floats, booleans, null and binary, compared for exact equality (types included) on the
subscriber; events with args only, kwargs only and no payload; a large binary payload; acknowledged publications
(PUBLISHED, and EVENT.Details.publication matching it); publisher exclusion (the default and exclude_me=False);
unsubscribe; prefix and wildcard subscriptions (details.topic, non-matching topics not delivered)."""

import asyncio
import sys

from autobahn.wamp.types import PublishOptions, SubscribeOptions

import payloads
from common import Collector, check_welcome, close, connect, run

URL, SERIALIZER = sys.argv[1], sys.argv[2]
ACK = PublishOptions(acknowledge=True)
DETAILS = SubscribeOptions(details_arg="details")


async def pubsub(check, url, serializer):
    sub, sub_details = await connect(url, serializer)
    pub, pub_details = await connect(url, serializer)
    witness, _ = await connect(url, serializer)
    check_welcome(check, "subscriber", sub, sub_details, serializer)
    check_welcome(check, "publisher", pub, pub_details, serializer)
    check.true("session IDs differ", sub.session_id != pub.session_id)
    broker = sub._router_roles["broker"]
    check.true("broker announces publisher_exclusion", broker.publisher_exclusion)
    check.true("broker announces pattern_based_subscription", broker.pattern_based_subscription)

    # Args and kwargs, checked for exact equality, with the publication acknowledged.
    args, kwargs = payloads.args(serializer), payloads.kwargs(serializer)
    events = Collector()
    subscription = await sub.subscribe(events, "com.example.topic", options=DETAILS)
    publication = await pub.publish("com.example.topic", *args, options=ACK, **kwargs)
    check.true("PUBLISHED carries a publication ID in 1..2^53", 1 <= publication.id <= 2**53)
    got_args, got_kwargs, details = await events.wait(1, "EVENT")
    check.same("EVENT args (unicode, nesting, ints, floats, booleans, null, binary)", got_args, args)
    check.same("EVENT kwargs", got_kwargs, kwargs)
    check.eq("EVENT.Details.publication is the PUBLISHED ID", details.publication, publication.id)
    check.eq("EVENT.Subscription is the SUBSCRIBED ID", details.subscription.id, subscription.id)

    await pub.publish("com.example.topic", "only", "args", options=ACK)
    got = await events.wait(2, "EVENT with args only")
    check.same("EVENT with args only", got[:2], (["only", "args"], {}))
    await pub.publish("com.example.topic", options=ACK, only="kwargs")
    got = await events.wait(3, "EVENT with kwargs only")
    check.same("EVENT with kwargs only", got[:2], ([], {"only": "kwargs"}))
    await pub.publish("com.example.topic", options=ACK)
    got = await events.wait(4, "EVENT without payload")
    check.same("EVENT without payload", got[:2], ([], {}))
    blob = bytes(range(256)) * 1024  # 256 KiB, under kreisel's default 1 MiB message limit even as base64 JSON
    await pub.publish("com.example.topic", blob, options=ACK)
    got = await events.wait(5, "EVENT with 256 KiB of binary")
    check.true("EVENT with 256 KiB of binary, exact", got[0] == [blob])

    # Unacknowledged publications are delivered too (and in order).
    for i in range(5):
        pub.publish("com.example.topic", i)
    await events.wait(10, "5 unacknowledged EVENTs")
    check.same("unacknowledged EVENTs, in order", [e[0] for e in events.events[5:10]], [[i] for i in range(5)])

    # Publisher exclusion: by default the publisher does not get its own event; with exclude_me=False it does.
    own = Collector()
    await pub.subscribe(own, "com.example.topic")
    await pub.publish("com.example.topic", "excluded", options=ACK)
    await pub.publish("com.example.topic", "included", options=PublishOptions(acknowledge=True, exclude_me=False))
    await events.wait(12, "both EVENTs at the subscriber")
    await own.wait(1, "the exclude_me=False EVENT at the publisher")
    await asyncio.sleep(0.2)
    check.same("publisher receives only its exclude_me=False event", [e[0] for e in own.events], [["included"]])
    check.same("subscriber receives both", [e[0] for e in events.events[10:12]], [["excluded"], ["included"]])

    # Unsubscribe: no more events for the subscriber, while another subscriber still gets them.
    seen = Collector()
    await witness.subscribe(seen, "com.example.topic")
    await subscription.unsubscribe()
    check.true("subscription inactive after UNSUBSCRIBE", not subscription.active)
    await pub.publish("com.example.topic", "after unsubscribe", options=ACK)
    await seen.wait(1, "EVENT at the remaining subscriber")
    await asyncio.sleep(0.2)
    check.eq("the remaining subscriber got the event", seen.events[0][0], ["after unsubscribe"])
    check.eq("the unsubscribed handler got nothing new", len(events.events), 12)

    # Prefix subscription: details.topic carries the concrete topic.
    prefixed = Collector()
    await sub.subscribe(prefixed, "com.example.sensors.", options=SubscribeOptions(match="prefix", details_arg="details"))
    await pub.publish("com.example.sensorsX.1", "no match", options=ACK)
    await pub.publish("com.example.sensors.7.temp", 21.5, options=ACK)
    args, _, details = await prefixed.wait(1, "prefix EVENT")
    check.same("prefix subscription: args", args, [21.5])
    check.eq("prefix subscription: details.topic", details.topic, "com.example.sensors.7.temp")

    # Wildcard subscription: an empty component matches exactly one component.
    wild = Collector()
    await sub.subscribe(wild, "com.example..temp", options=SubscribeOptions(match="wildcard", details_arg="details"))
    await pub.publish("com.example.kitchen.humidity", "no match", options=ACK)
    await pub.publish("com.example.a.b.temp", "no match: one component too many", options=ACK)
    await pub.publish("com.example.kitchen.temp", 19.0, options=ACK)
    args, _, details = await wild.wait(1, "wildcard EVENT")
    check.same("wildcard subscription: args", args, [19.0])
    check.eq("wildcard subscription: details.topic", details.topic, "com.example.kitchen.temp")
    await asyncio.sleep(0.2)
    check.eq("prefix subscription got only the matching topic", len(prefixed.events), 1)
    check.eq("wildcard subscription got only the matching topic", len(wild.events), 1)

    await close(pub, sub, witness)


if __name__ == "__main__":
    run(f"pubsub over {URL} ({SERIALIZER})", lambda check: pubsub(check, URL, SERIALIZER))
