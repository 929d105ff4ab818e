"""A cluster of kreisel nodes seen by autobahn-python: sessions joined to different nodes of one running cluster
(3 nodes, 3 NATS servers; tests/tests/cluster.rs starts it) must see one router.

1. Pub/sub across nodes: exact, prefix (one ending mid-word), wildcard; JSON, MessagePack and CBOR sessions on
   WebSocket and RawSocket exchanging the same payloads; exclusion, exclude/eligible lists, disclosure of the
   publisher; retained events; meta events (on_join, on_subscribe) from other nodes.
2. RPC across nodes: a single registration exclusive on every node; roundrobin, first and last over callees on
   three nodes; progressive results; errors with args and kwargs; cancel; a router-enforced timeout; a callee
   leaving and a caller leaving with a call pending.
3. Meta API: session count/list/get of sessions on other nodes, registration lookup and list_callees with one ID
   for the whole cluster; wamp.session.kill and kill_by_authid of a session on another node.
   MQTT devices (paho-mqtt, 3.1.1 and 5) and HTTP bridge requests (python-requests) on some nodes, WAMP sessions on
   others: events both ways, MQTT to MQTT across nodes, an HTTP call to a callee on another node.
4. kill -9 of node 3 (by PID): within dead_after its registrations are gone on the other nodes, the calls pending
   on it fail, its sessions' testaments and wamp.session.on_leave are published exactly once.
5. kill -9 of one NATS server of three (the first server of node 1): nodes 1 and 2 go on carrying events and calls,
   and registering (the key-value bucket keeps a quorum).

Usage: cluster.py CONFIG_JSON, with ws, rs, mqtt and http (node URLs, in order), http_ticket, kreisel_pids,
nats_pids, dead_after_ms."""

import asyncio
import json
import os
import signal
import sys
import time

import payloads
import requests
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions, CallResult, PublishOptions, RegisterOptions, SubscribeOptions

from common import Collector, close, connect, run, wait_for
from mqtt import Client as MqttClient

CONFIG = json.loads(sys.argv[1])
WS, RS = CONFIG["ws"], CONFIG["rs"]
DEAD_AFTER_S = CONFIG["dead_after_ms"] / 1000
DETAILS = SubscribeOptions(details_arg="details")


def ack(**options):
    return PublishOptions(acknowledge=True, **options)


async def quiet(seconds=0.3):
    """Time for an event that must not arrive to show up anyway."""
    await asyncio.sleep(seconds)


async def eventually(what, probe, timeout):
    """Calls `probe()` (async, returns a truthy value when done) until it is done or `timeout` s passed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = await probe()
            if got:
                return got
        except ApplicationError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.1f} s")
        await asyncio.sleep(0.1)


async def pubsub(check, a, b, c, b_id, c_id, a_id):
    """a on node 1 (JSON, WebSocket), b on node 2 (MessagePack, RawSocket), c on node 3 (CBOR, WebSocket)."""
    exact_b, exact_c = Collector(), Collector()
    await b.subscribe(exact_b, "com.cluster.exact", options=DETAILS)
    await c.subscribe(exact_c, "com.cluster.exact", options=DETAILS)
    for serializer, session in (("json", a), ("msgpack", b)):
        args, kwargs = payloads.args("json"), payloads.kwargs("json")
        await session.publish("com.cluster.exact", *args, options=ack(), **kwargs)
    got_b = await exact_b.wait(1, "an event on node 2 from node 1")
    got_c = await exact_c.wait(1, "an event on node 3 from node 1")
    args, kwargs = payloads.args("json"), payloads.kwargs("json")
    check.same("exact: node 1 (JSON) -> node 2 (MessagePack), args", got_b[0], args)
    check.same("exact: node 1 (JSON) -> node 2 (MessagePack), kwargs", got_b[1], kwargs)
    check.same("exact: node 1 (JSON) -> node 3 (CBOR), args", got_c[0], args)
    check.same("exact: node 1 (JSON) -> node 3 (CBOR), kwargs", got_c[1], kwargs)
    got_c2 = await exact_c.wait(2, "an event on node 3 from node 2")
    check.same("exact: node 2 (MessagePack) -> node 3 (CBOR)", (got_c2[0], got_c2[1]), (args, kwargs))
    await quiet()
    check.eq("exact: node 2's own publication is not sent back to it", len(exact_b.events), 1)
    check.eq("exact: one event per publication on node 3", len(exact_c.events), 2)

    # A prefix ending mid-word, and a wildcard, matched on other nodes.
    prefix, wild = Collector(), Collector()
    await b.subscribe(prefix, "com.ex", options=SubscribeOptions(match="prefix", details_arg="details"))
    await c.subscribe(wild, "com..x", options=SubscribeOptions(match="wildcard", details_arg="details"))
    await a.publish("com.example.x", "p", options=ack())
    got = await prefix.wait(1, "a prefix event on node 2")
    check.eq("prefix 'com.ex' on node 2 gets com.example.x from node 1", (got[0], got[2].topic), (["p"], "com.example.x"))
    got = await wild.wait(1, "a wildcard event on node 3")
    check.eq("wildcard 'com..x' on node 3 gets com.example.x from node 1", (got[0], got[2].topic), (["p"], "com.example.x"))
    await a.publish("com.other.y", "q", options=ack())
    await quiet()
    check.eq("no prefix or wildcard event for a topic that does not match", (len(prefix.events), len(wild.events)), (1, 1))

    # Publisher exclusion, exclude and eligible lists, disclosure (session IDs of other nodes).
    mine = Collector()
    await a.subscribe(mine, "com.cluster.exact", options=DETAILS)
    await a.publish("com.cluster.exact", "excluded-b", options=ack(exclude=[b_id], exclude_me=False))
    await exact_c.wait(3, "an event on node 3 (node 2 excluded)")
    await mine.wait(1, "the publisher's own event (exclude_me=False)")
    await quiet()
    check.eq("exclude=[a session of node 2]: node 2 gets nothing", len(exact_b.events), 1)
    await a.publish("com.cluster.exact", "eligible-b", options=ack(eligible=[b_id]))
    got = await exact_b.wait(2, "an event on node 2 (eligible)")
    check.eq("eligible=[a session of node 2]: node 2 gets it", got[0], ["eligible-b"])
    await quiet()
    check.eq("eligible=[a session of node 2]: node 3 does not", len(exact_c.events), 3)
    check.eq("exclude_me (the default) holds", len(mine.events), 1)
    # Disclosure (realm "open" discloses publishers and callers): the IDs of sessions of other nodes.
    pub, pub_details = await connect(RS[1], "msgpack", realm="open")
    sub, _ = await connect(WS[2], "json", realm="open")
    disclosed = Collector()
    await sub.subscribe(disclosed, "com.cluster.disclosed", options=DETAILS)
    await pub.publish("com.cluster.disclosed", "who", options=ack())
    got = await disclosed.wait(1, "a disclosed event on node 3")
    check.eq("disclose_publisher: node 3 sees the publisher of node 2", got[2].publisher, pub_details.session)

    def who(details=None):
        return details.caller

    await sub.register(who, "com.cluster.who", options=RegisterOptions(details_arg="details"))
    check.eq("disclose_caller: a callee of node 3 sees the caller of node 2", await pub.call("com.cluster.who"), pub_details.session)
    await close(pub, sub)

    # Retained events: published on node 1, delivered on subscribe on nodes 2 and 3.
    await a.publish("com.cluster.retained", "kept", 1, options=ack(retain=True))
    for label, session in (("node 2", b), ("node 3", c)):
        retained = Collector()
        await session.subscribe(retained, "com.cluster.retained", options=SubscribeOptions(get_retained=True, details_arg="details"))
        got = await retained.wait(1, f"the retained event on {label}")
        check.eq(f"retained event published on node 1 delivered on subscribe on {label}", (got[0], got[2].retained), (["kept", 1], True))

    # Meta events of another node's sessions.
    joins, subscribes = Collector(), Collector()
    await a.subscribe(joins, "wamp.session.on_join")
    await a.subscribe(subscribes, "wamp.subscription.on_subscribe")
    late, late_details = await connect(WS[2], "json")
    got = await joins.wait(1, "wamp.session.on_join on node 1 for a session of node 3")
    check.eq("wamp.session.on_join on node 1 for a session joined on node 3", got[0][0]["session"], late_details.session)
    await late.subscribe(lambda *a, **k: None, "com.cluster.late")
    got = await subscribes.wait(1, "wamp.subscription.on_subscribe on node 1")
    check.eq("wamp.subscription.on_subscribe on node 1 for a subscriber of node 3", got[0][0], late_details.session)
    await close(late)


def echo(*args, **kwargs):
    return CallResult(*args, **kwargs)


async def rpc(check, a, b, c, b_id):
    """a on node 1, b on node 2, c on node 3."""
    registration = await b.register(echo, "com.cluster.echo")
    args, kwargs = payloads.args("json"), payloads.kwargs("json")
    for label, caller in (("node 1", a), ("node 3", c)):
        result = await caller.call("com.cluster.echo", *args, **kwargs)
        check.same(f"call from {label} to a callee on node 2, args", list(result.results), args)
        check.same(f"call from {label} to a callee on node 2, kwargs", result.kwresults, kwargs)
    for label, other in (("node 1", a), ("node 3", c)):
        await check.error(
            f"single: registering the procedure again on {label}",
            other.register(echo, "com.cluster.echo"),
            "wamp.error.procedure_already_exists",
        )

    # A single registration raced from two nodes: exactly one wins each round.
    for round_ in range(20):
        procedure = f"com.cluster.race.{round_}"
        outcome = await asyncio.gather(
            a.register(lambda: "a", procedure), c.register(lambda: "c", procedure), return_exceptions=True
        )
        won = [o for o in outcome if not isinstance(o, BaseException)]
        lost = [o for o in outcome if isinstance(o, ApplicationError) and o.error == "wamp.error.procedure_already_exists"]
        if len(won) != 1 or len(lost) != 1:
            raise AssertionError(f"race {round_}: {outcome!r}")
        await won[0].unregister()
    check.passed("single: two nodes racing to register, 20 rounds: exactly one wins each")

    # Errors with args and kwargs.
    async def fail(*args, **kwargs):
        raise ApplicationError("com.cluster.error.fail", "why", 7, detail={"k": [1, 2]})

    await c.register(fail, "com.cluster.fail")
    await check.error("an error of a callee on node 3, to node 1", a.call("com.cluster.fail"), "com.cluster.error.fail",
                      args=["why", 7], kwargs={"detail": {"k": [1, 2]}})

    # Shared registrations over three nodes.
    for name, invoke in (("rr", "roundrobin"), ("first", "first"), ("last", "last"), ("random", "random")):
        for index, session in enumerate((a, b, c)):
            await session.register(lambda i=index: i + 1, f"com.cluster.{name}", options=RegisterOptions(invoke=invoke))
    got = [await a.call("com.cluster.rr") for _ in range(6)]
    check.eq("roundrobin over callees on nodes 1, 2, 3", sorted(got), [1, 1, 2, 2, 3, 3])
    check.eq("first: the callee of node 1 (registered first)", [await c.call("com.cluster.first") for _ in range(3)], [1, 1, 1])
    check.eq("last: the callee of node 3 (registered last)", [await a.call("com.cluster.last") for _ in range(3)], [3, 3, 3])
    got = {await b.call("com.cluster.random") for _ in range(30)}
    check.true("random: every answer is one of the three callees", got <= {1, 2, 3} and got)

    # Progressive results from node 3 to node 1.
    async def stream(n, details=None):
        for i in range(n):
            details.progress(i, step=f"{i}/{n}")
            await asyncio.sleep(0.01)
        return n

    await c.register(stream, "com.cluster.stream", options=RegisterOptions(details_arg="details"))
    progress = []
    total = await a.call("com.cluster.stream", 5, options=CallOptions(on_progress=lambda *x, **k: progress.append((list(x), k))))
    check.same("progressive results from node 3 to node 1", progress, [([i], {"step": f"{i}/5"}) for i in range(5)])
    check.eq("final result after the progress", total, 5)

    # Cancel and timeout: the callee on node 2 is interrupted.
    interrupted = []

    async def sleepy():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            interrupted.append(True)
            raise

    await b.register(sleepy, "com.cluster.sleepy")
    try:
        await a.call("com.cluster.sleepy", options=CallOptions(timeout=300))
        raise AssertionError("a call past its timeout succeeded")
    except ApplicationError as error:
        check.eq("timeout of a call from node 1 to node 2", error.error, "wamp.error.timeout")
    await eventually("the callee on node 2 interrupted on timeout", lambda: asyncio.sleep(0, len(interrupted) == 1), 5)
    check.passed("the callee on node 2 is interrupted on timeout")
    pending = asyncio.ensure_future(c.call("com.cluster.sleepy"))
    await asyncio.sleep(0.3)
    pending.cancel()
    await eventually("the callee on node 2 interrupted on cancel", lambda: asyncio.sleep(0, len(interrupted) == 2), 5)
    check.passed("cancel from node 3: the callee on node 2 is interrupted")
    # CANCEL in each mode, sent by hand (autobahn sends CANCEL without options: the router's default, kill).
    from autobahn.wamp import message as wamp_message

    for mode in ("kill", "killnowait"):
        pending = asyncio.ensure_future(c.call("com.cluster.sleepy"))
        await asyncio.sleep(0.3)
        request = max(c._call_reqs)
        c._transport.send(wamp_message.Cancel(request, mode=mode))
        try:
            await asyncio.wait_for(pending, 5)
            raise AssertionError(f"CANCEL ({mode}): the call succeeded")
        except ApplicationError as error:
            # killnowait: the router answers at once; kill: the callee's own ERROR after its INTERRUPT (autobahn's
            # cancelled handler answers wamp.error.runtime_error).
            expected = {"wamp.error.canceled"} if mode == "killnowait" else {"wamp.error.canceled", "wamp.error.runtime_error"}
            check.true(f"CANCEL ({mode}) from node 3 of a call to node 2: the caller gets {error.error}", error.error in expected)
    await eventually("every cancel interrupted the callee", lambda: asyncio.sleep(0, len(interrupted) == 4), 5)
    check.passed("CANCEL in modes kill and killnowait across nodes interrupted the callee")

    # A callee leaving with a call pending: the caller on another node gets wamp.error.canceled.
    callee, _ = await connect(RS[2], "msgpack")
    invoked = asyncio.get_running_loop().create_future()

    async def hang():
        invoked.set_result(True)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return None

    await callee.register(hang, "com.cluster.hang")
    pending = asyncio.ensure_future(a.call("com.cluster.hang"))
    await wait_for(invoked, "the INVOCATION on node 3")
    callee.leave()
    await check.error("callee on node 3 leaves with a call of node 1 pending", pending, "wamp.error.canceled")
    await check.error("the procedure is gone on node 1", a.call("com.cluster.hang"), "wamp.error.no_such_procedure")

    # A caller leaving with a call pending: the callee on another node is interrupted.
    caller, _ = await connect(WS[0], "msgpack")
    invoked = asyncio.get_running_loop().create_future()
    gone = asyncio.get_running_loop().create_future()

    async def hang2():
        invoked.set_result(True)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            gone.set_result(True)
            raise

    await c.register(hang2, "com.cluster.hang2")
    asyncio.ensure_future(caller.call("com.cluster.hang2")).add_done_callback(lambda f: f.exception() if not f.cancelled() else None)
    await wait_for(invoked, "the INVOCATION on node 3")
    caller.leave()
    check.true("caller on node 1 leaves: the callee on node 3 is interrupted", await wait_for(gone, "the INTERRUPT"))
    return registration


async def meta(check, a, b, c, ids):
    count = await a.call("wamp.session.count")
    check.true(f"wamp.session.count on node 1 counts every node's sessions ({count})", count >= 3)
    listed = await b.call("wamp.session.list")
    check.true("wamp.session.list on node 2 lists sessions of nodes 1, 2 and 3", set(ids) <= set(listed))
    details = await a.call("wamp.session.get", ids[2])
    check.eq("wamp.session.get on node 1 of a session of node 3", details["session"], ids[2])
    await check.error("wamp.session.get of no session", a.call("wamp.session.get", 1), "wamp.error.no_such_session")
    found = [await s.call("wamp.registration.lookup", "com.cluster.echo") for s in (a, b, c)]
    check.true(f"wamp.registration.lookup: one registration ID on every node ({found})", found[0] and len(set(found)) == 1)
    callees = await c.call("wamp.registration.list_callees", found[0])
    check.eq("wamp.registration.list_callees on node 3: the callee of node 2", callees, [ids[1]])
    matched = await a.call("wamp.registration.match", "com.cluster.echo")
    check.eq("wamp.registration.match on node 1", matched, found[0])


async def kill_across(check, a):
    """wamp.session.kill and kill_by_authid from node 1 of sessions on nodes 2 and 3."""
    victim, victim_details = await connect(RS[1], "msgpack")
    leaves = Collector()
    await a.subscribe(leaves, "wamp.session.on_leave")
    result = await a.call("wamp.session.kill", victim_details.session, reason="com.cluster.kicked", message="out")
    check.eq("wamp.session.kill from node 1 of a session on node 2 returns nothing", result, None)
    closed = await wait_for(victim.left, "the GOODBYE of the session killed from another node")
    check.eq("the killed session's GOODBYE carries the reason and message", [closed.reason, closed.message],
             ["com.cluster.kicked", "out"])
    await eventually("on_leave of the killed session on node 1",
                     lambda: asyncio.sleep(0, any(e[0] and e[0][0] == victim_details.session for e in leaves.events)),
                     5)
    await check.error("wamp.session.kill of a session gone", a.call("wamp.session.kill", victim_details.session),
                      "wamp.error.no_such_session")
    other, other_details = await connect(WS[2], "cbor")
    killed = await a.call("wamp.session.kill_by_authid", other_details.authid)
    check.eq("wamp.session.kill_by_authid from node 1 of a session on node 3 kills one", killed, 1)
    closed = await wait_for(other.left, "the GOODBYE of the session killed by authid")
    check.eq("kill_by_authid's default reason", closed.reason, "wamp.close.killed")


async def http_post(url, body):
    headers = {"Authorization": f"Bearer {CONFIG['http_ticket']}"}
    response = await asyncio.to_thread(requests.post, url, json=body, headers=headers, timeout=10)
    return response.status_code, response.json()


async def other_transports(check, a, c):
    """MQTT devices on nodes 2 and 3, HTTP requests to nodes 2 and 3, WAMP sessions on nodes 1 and 3."""
    device = MqttClient(CONFIG["mqtt"][2], 5)
    check.eq("an MQTT 5 device joins node 3", await device.connect(), 0)
    check.eq("its subscription to cluster/mqtt/# is granted at QoS 1",
             await device.subscribe([("cluster/mqtt/#", 1)]), [1])
    on_wamp = Collector()
    await a.subscribe(on_wamp, "cluster.mqtt", options=SubscribeOptions(match="prefix"))
    await a.publish("cluster.mqtt.from_wamp", b"\x00\x01wamp", options=ack())
    _, topic, payload, _, _ = await device.message("the event of node 1's WAMP publisher on node 3's MQTT device")
    check.eq("WAMP (node 1) to MQTT (node 3): topic and payload", (topic, payload),
             ("cluster/mqtt/from_wamp", b"\x00\x01wamp"))
    on_wamp.events.clear()
    sensor = MqttClient(CONFIG["mqtt"][1], 4)
    check.eq("an MQTT 3.1.1 device joins node 2", await sensor.connect(), 0)
    check.eq("its QoS 1 publication is acknowledged", await sensor.publish("cluster/mqtt/reading", b"42", qos=1), 0)
    args, _, details = await on_wamp.wait(1, "the MQTT device's publication on node 1's WAMP subscriber")
    check.eq("MQTT (node 2) to WAMP (node 1): one binary argument", args, [b"42"])
    _, topic, payload, qos, _ = await device.message("the MQTT device's publication on node 3's MQTT device")
    check.eq("MQTT (node 2) to MQTT (node 3) at QoS 1", (topic, payload, qos), ("cluster/mqtt/reading", b"42", 1))
    sensor.close()
    device.close()

    on_http = Collector()
    await c.subscribe(on_http, "cluster.http.event")
    status, body = await http_post(CONFIG["http"][1] + "/publish",
                                   {"topic": "cluster.http.event", "args": [1, "two"], "kwargs": {"three": 3}})
    check.true(f"an HTTP publication on node 2 is accepted ({status} {body})", status == 200 and body.get("id"))
    args, kwargs, _ = await on_http.wait(1, "the HTTP publication on node 3's subscriber")
    check.eq("HTTP (node 2) to WAMP (node 3): args and kwargs", (args, kwargs), ([1, "two"], {"three": 3}))
    registration = await a.register(lambda x, y: x + y, "cluster.http.add")
    status, body = await http_post(CONFIG["http"][2] + "/call", {"procedure": "cluster.http.add", "args": [2, 3]})
    check.eq("HTTP call on node 3 to a callee on node 1", (status, body), (200, {"args": [5]}))
    await registration.unregister()

    async def gone():
        status, body = await http_post(CONFIG["http"][2] + "/call", {"procedure": "cluster.http.add", "args": [2, 3]})
        return (status, body.get("error")) == (404, "wamp.error.no_such_procedure")

    await eventually("HTTP call on node 3 of a procedure unregistered on node 1: 404", gone, 5)
    check.passed("HTTP call on node 3 of a procedure unregistered on node 1: 404 wamp.error.no_such_procedure")


async def kill_node(check, a, b):
    """Node 3 dies (SIGKILL) with a callee, a testament and a call pending."""
    dying_callee, _ = await connect(WS[2], "json")
    testator, testator_details = await connect(RS[2], "cbor")
    invoked = asyncio.get_running_loop().create_future()

    async def hang():
        if not invoked.done():
            invoked.set_result(True)
        await asyncio.sleep(3600)

    await dying_callee.register(hang, "com.cluster.dying")
    await testator.call("wamp.session.add_testament", "com.cluster.testament", ["last words"], {"n": 1})
    testaments, leaves = Collector(), Collector()
    await a.subscribe(testaments, "com.cluster.testament")
    await b.subscribe(leaves, "wamp.session.on_leave")
    pending = asyncio.ensure_future(a.call("com.cluster.dying"))
    await wait_for(invoked, "the INVOCATION on node 3")
    killed_at = time.monotonic()
    os.kill(CONFIG["kreisel_pids"][2], signal.SIGKILL)
    await check.error("kill -9 of node 3: the call pending on it fails", asyncio.wait_for(pending, DEAD_AFTER_S + 5),
                      "wamp.error.canceled")
    failed_after = time.monotonic() - killed_at

    async def gone():
        try:
            await b.call("com.cluster.dying")
        except ApplicationError as error:
            return error.error == "wamp.error.no_such_procedure"
        return False

    await eventually("node 3's registration gone on node 2", gone, DEAD_AFTER_S + 5)
    gone_after = time.monotonic() - killed_at
    check.true(f"kill -9 of node 3: its registration gone on node 2 after {gone_after:.1f} s (dead_after "
               f"{DEAD_AFTER_S:.1f} s; the pending call failed after {failed_after:.1f} s)",
               gone_after <= DEAD_AFTER_S + 2)
    got = await testaments.wait(1, "the testament of a session of node 3")
    check.eq("kill -9 of node 3: its session's testament published", (got[0], got[1]), (["last words"], {"n": 1}))
    await eventually("on_leave of the testator", lambda: asyncio.sleep(0, any(
        e[0] and e[0][0] == testator_details.session for e in leaves.events)), DEAD_AFTER_S + 5)
    await asyncio.sleep(DEAD_AFTER_S)
    check.eq("the testament published once", len(testaments.events), 1)
    ids = [e[0][0] for e in leaves.events if e[0]]
    check.eq("wamp.session.on_leave once for the testator", ids.count(testator_details.session), 1)
    check.true("wamp.session.on_leave once for every session of node 3", len(ids) == len(set(ids)))
    count = await a.call("wamp.session.count")
    listed = await b.call("wamp.session.list")
    check.true("node 3's sessions no longer listed", testator_details.session not in listed)
    check.true(f"wamp.session.count after the kill ({count})", count == len(listed))


async def lose_nats(check, a, b):
    """The NATS server node 1 is connected to dies (SIGKILL): nodes 1 and 2 carry on."""
    events = Collector()
    await b.subscribe(events, "com.cluster.after")
    await b.register(lambda x: x * 2, "com.cluster.double")
    os.kill(CONFIG["nats_pids"][0], signal.SIGKILL)
    lost_at = time.monotonic()

    async def through():
        before = len(events.events)
        await a.publish("com.cluster.after", "probe", options=ack())
        result = await a.call("com.cluster.double", 21, options=CallOptions(timeout=1000))
        await asyncio.sleep(0.2)
        return result == 42 and len(events.events) > before

    await eventually("events and calls from node 1 to node 2 after a NATS server died", through, 15)
    back = time.monotonic() - lost_at
    check.passed(f"NATS server of node 1 killed: events and calls from node 1 to node 2 flow again after {back:.1f} s")
    count = len(events.events)
    for i in range(20):
        await a.publish("com.cluster.after", i, options=ack())
    await events.wait(count + 20, "20 events after the reconnection")
    check.eq("every event published after the reconnection arrives, in order",
             [e[0][0] for e in events.events[count:count + 20]], list(range(20)))

    async def register():
        registration = await a.register(lambda: "new", "com.cluster.registered_after")
        return registration

    registration = await eventually("a registration after a NATS server died", register, 20)
    check.eq("a registration on node 1 after losing a NATS server is called from node 2",
             await b.call("com.cluster.registered_after"), "new")
    await registration.unregister()


async def main(check):
    a, a_details = await connect(WS[0], "json")
    b, b_details = await connect(RS[1], "msgpack")
    c, c_details = await connect(WS[2], "cbor")
    ids = [a_details.session, b_details.session, c_details.session]
    check.true("session IDs of three nodes differ", len(set(ids)) == 3)
    await pubsub(check, a, b, c, b_details.session, c_details.session, a_details.session)
    await rpc(check, a, b, c, b_details.session)
    await meta(check, a, b, c, ids)
    await kill_across(check, a)
    await other_transports(check, a, c)
    await kill_node(check, a, b)
    await lose_nats(check, a, b)
    await close(a, b)


run("cluster", main, timeout=90)
