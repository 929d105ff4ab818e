"""kreisel's MQTT listener with clients written by others: paho-mqtt (MQTT 3.1.1 and 5) against autobahn-python
(WAMP), through one router. Each check names what it tests; the program exits 0 only when all passed.

Usage: mqtt.py CHECK MQTT_URL WAMP_URL SERIALIZER [EXTRA]
  CHECK: pubsub | native | retained | will | auth | tls
  MQTT_URL: mqtt://HOST:PORT, ws://HOST:PORT/PATH (MQTT over WebSocket), unix:/PATH, mqtts://HOST:PORT
  (EXTRA for tls: the directory with ca.pem, client.pem, client.key)
Every check runs in MQTT 3.1.1 and in MQTT 5."""

import asyncio
import json
import queue
import ssl
import sys
import time
import uuid
from urllib.parse import urlparse

import cbor2
import paho.mqtt.client as mqtt
from autobahn.wamp.types import PublishOptions, SubscribeOptions
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from common import Collector, close, connect, run, wait_for

STEP = 5


class Client:
    """A paho-mqtt client on its own network thread; what its callbacks see goes into a queue that the asyncio
    checks read."""

    def __init__(self, url, version, client_id=None, username=None, password=None, will=None, tls=None):
        parsed = urlparse(url)
        transport = {"mqtt": "tcp", "mqtts": "tcp", "ws": "websockets", "unix": "unix"}[parsed.scheme]
        self.version = version
        self.events = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id if client_id is not None else f"t-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311,
            transport=transport,
            reconnect_on_failure=False,
        )
        if transport == "websockets":
            self.client.ws_set_options(path=parsed.path or "/")
        if parsed.scheme == "mqtts":
            context = ssl.create_default_context(cafile=tls["ca"])
            if tls.get("cert"):
                context.load_cert_chain(tls["cert"], tls["key"])
            self.client.tls_set_context(context)
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            topic, payload, retain = will
            self.client.will_set(topic, payload, qos=1, retain=retain)
        self.client.on_connect = lambda c, u, flags, rc, props: self.events.put(("connack", rc.value, props))
        self.client.on_subscribe = lambda c, u, mid, rcs, props: self.events.put(("suback", mid, [r.value for r in rcs]))
        self.client.on_unsubscribe = lambda c, u, mid, rcs, props: self.events.put(("unsuback", mid, None))
        self.client.on_publish = lambda c, u, mid, rc, props: self.events.put(("published", mid, rc.value))
        self.client.on_message = lambda c, u, m: self.events.put(("message", m.topic, bytes(m.payload), m.qos, m.retain))
        self.client.on_disconnect = lambda c, u, flags, rc, props: self.events.put(("disconnect", rc.value, None))
        if transport == "unix":
            self.address = (parsed.path, 0)
        else:
            self.address = (parsed.hostname, parsed.port)
        self.messages = []

    async def next(self, kinds, what, timeout=STEP):
        """The next event of one of `kinds` (messages of other kinds are kept for `message`)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise AssertionError(f"MQTT {self.version}: no {what} within {timeout} s")
                await asyncio.sleep(0.01)
                continue
            if event[0] in kinds:
                return event
            if event[0] == "message":
                self.messages.append(event)

    async def connect(self, clean=True):
        kwargs = {"keepalive": 30}
        if self.version == 5:
            kwargs["clean_start"] = clean
        else:
            self.client._clean_session = clean
        host, port = self.address
        try:
            if port:
                self.client.connect(host, port, **kwargs)
            else:
                self.client.connect(host, **kwargs)
        except OSError as e:
            return ("refused", str(e))
        self.client.loop_start()
        _, code, props = await self.next(("connack", "disconnect"), "CONNACK")
        return code

    async def subscribe(self, filters):
        """[(filter, qos)] -> the SUBACK codes."""
        result, mid = self.client.subscribe(filters)
        assert result == mqtt.MQTT_ERR_SUCCESS, result
        _, got, codes = await self.next(("suback",), f"SUBACK for {filters}")
        assert got == mid, (got, mid)
        return codes

    async def unsubscribe(self, topic):
        self.client.unsubscribe(topic)
        await self.next(("unsuback",), "UNSUBACK")

    async def publish(self, topic, payload, qos=0, retain=False):
        """Publishes; for QoS 1 and 2 waits for the acknowledgement and returns its code (None: disconnected)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0:
            return 0
        while True:
            kind, mid, code = await self.next(("published", "disconnect"), f"PUBACK of {topic}")
            if kind == "disconnect":
                return None
            if mid == info.mid:
                return code

    async def message(self, what, timeout=STEP):
        if self.messages:
            return self.messages.pop(0)
        return await self.next(("message",), what, timeout)

    async def quiet(self, what, seconds=0.5):
        """No message arrives for `seconds`."""
        await asyncio.sleep(seconds)
        while not self.events.empty():
            event = self.events.get_nowait()
            if event[0] == "message":
                raise AssertionError(f"{what}: unexpected message {event}")
        if self.messages:
            raise AssertionError(f"{what}: unexpected message {self.messages[0]}")

    async def disconnected(self, what):
        _, code, _ = await self.next(("disconnect",), what)
        return code

    def drop(self):
        """Closes the socket without DISCONNECT."""
        sock = self.client.socket()
        if sock is not None:
            try:
                sock.shutdown(2)
            except OSError:
                pass
        self.client.loop_stop()

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


async def pubsub(check, mqtt_url, wamp_url, serializer, _extra):
    """MQTT and WAMP publishing to each other, in passthrough: QoS 0, 1 and 2, wildcards, the granted QoS."""
    session, _ = await connect(wamp_url, serializer)
    for v in (3, 5):
        tag = f"MQTT {'3.1.1' if v == 3 else '5'}"
        got = Collector()
        await session.subscribe(got, f"ps{v}.from_mqtt")
        pub = Client(mqtt_url, v)
        check.eq(f"{tag}: CONNACK", await pub.connect(), 0)
        for qos in (0, 1, 2):
            code = await pub.publish(f"ps{v}/from_mqtt", f"q{qos}".encode(), qos=qos)
            check.eq(f"{tag}: PUBLISH QoS {qos} acknowledged", code, 0)
            args, kwargs, _ = await got.wait(qos + 1, f"the EVENT of QoS {qos}")
            check.same(f"{tag}: QoS {qos} payload reaches WAMP as one binary argument", args, [f"q{qos}".encode()])
        sub = Client(mqtt_url, v)
        check.eq(f"{tag}: subscriber CONNACK", await sub.connect(), 0)
        codes = await sub.subscribe([(f"ps{v}/exact", 1), (f"ps{v}/+/one", 0), (f"ps{v}/deep/#", 2)])
        check.eq(f"{tag}: SUBACK grants QoS 1 at most", codes, [1, 0, 1])
        session.publish(f"ps{v}.exact", b"\x00\x01bin")
        _, topic, payload, qos, retain = await sub.message("WAMP binary to MQTT")
        check.same(f"{tag}: WAMP binary argument becomes the payload", (topic, payload, qos, retain), (f"ps{v}/exact", b"\x00\x01bin", 1, False))
        session.publish(f"ps{v}.exact", "text")
        check.same(f"{tag}: WAMP string argument as UTF-8", (await sub.message("text"))[2], b"text")
        session.publish(f"ps{v}.x.one", b"a")
        _, topic, payload, qos, _ = await sub.message("+ filter")
        check.same(f"{tag}: + matches one level", (topic, payload, qos), (f"ps{v}/x/one", b"a", 0))
        session.publish(f"ps{v}.x.y.one", b"no")
        session.publish(f"ps{v}.deep", b"parent")
        _, topic, payload, _, _ = await sub.message("# parent")
        check.same(f"{tag}: # matches its parent level", (topic, payload), (f"ps{v}/deep", b"parent"))
        session.publish(f"ps{v}.deep.a.b", b"child")
        _, topic, payload, _, _ = await sub.message("# child")
        check.same(f"{tag}: # matches deeper levels", (topic, payload), (f"ps{v}/deep/a/b", b"child"))
        session.publish(f"ps{v}.exact", [1, 2])
        await sub.quiet(f"{tag}: arguments passthrough cannot carry are not delivered")
        # MQTT to MQTT, QoS 1 end to end; the publisher gets its own publication (MQTT has no exclude_me).
        code = await pub.publish(f"ps{v}/exact", b"m2m", qos=1)
        check.eq(f"{tag}: MQTT to MQTT PUBACK", code, 0)
        _, topic, payload, qos, _ = await sub.message("MQTT to MQTT")
        check.same(f"{tag}: MQTT to MQTT delivery at QoS 1", (topic, payload, qos), (f"ps{v}/exact", b"m2m", 1))
        await sub.unsubscribe(f"ps{v}/exact")
        session.publish(f"ps{v}.exact", b"gone")
        await sub.quiet(f"{tag}: nothing after UNSUBSCRIBE")
        all_sub = Client(mqtt_url, v)
        await all_sub.connect()
        check.eq(f"{tag}: # subscribes to everything", await all_sub.subscribe([("#", 0)]), [0])
        session.publish(f"ps{v}.anything.at.all", b"x")
        check.same(f"{tag}: # receives", (await all_sub.message("#"))[1], f"ps{v}/anything/at/all")
        await all_sub.subscribe([("+", 0)])
        session.publish(f"top{v}", b"y")
        seen = sorted([(await all_sub.message("+ and #"))[1], (await all_sub.message("+ and #"))[1]])
        check.same(f"{tag}: a one-level topic reaches + and # (one copy per subscription)", seen, [f"top{v}", f"top{v}"])
        for client in (pub, sub, all_sub):
            client.close()
    await close(session)


async def native(check, mqtt_url, wamp_url, serializer, _extra):
    """Native payloads: prefix `nj.` is JSON, `nc.` CBOR (the router's payload_mapping)."""
    session, _ = await connect(wamp_url, serializer)
    for v in (3, 5):
        tag = f"MQTT {'3.1.1' if v == 3 else '5'}"
        got = Collector()
        await session.subscribe(got, f"nj.v{v}", options=SubscribeOptions(match="prefix"))
        pub = Client(mqtt_url, v)
        await pub.connect()
        doc = json.dumps({"args": [1, "two", None], "kwargs": {"k": [True]}}).encode()
        check.eq(f"{tag}: native JSON PUBLISH", await pub.publish(f"nj/v{v}", doc, qos=1), 0)
        args, kwargs, _ = await got.wait(1, "native JSON event")
        check.same(f"{tag}: JSON document becomes args/kwargs", (args, kwargs), ([1, "two", None], {"k": [True]}))
        code = await pub.publish(f"nj/v{v}", b"not json", qos=1)
        if v == 5:
            check.eq(f"{tag}: an invalid document gets PUBACK 0x99 (payload format invalid)", code, 0x99)
        else:
            check.true(f"{tag}: an invalid document closes the connection (3.1.1 has no negative PUBACK)", code is None)
        sub = Client(mqtt_url, v)
        await sub.connect()
        await sub.subscribe([(f"nj/v{v}/out", 0), (f"nc/v{v}", 0)])
        session.publish(f"nj.v{v}.out", 5, "x", key={"deep": [1.5]})
        _, topic, payload, _, _ = await sub.message("native JSON out")
        check.same(f"{tag}: an event becomes a JSON document", json.loads(payload), {"args": [5, "x"], "kwargs": {"key": {"deep": [1.5]}}})
        session.publish(f"nc.v{v}", b"\x01", n=2)
        _, topic, payload, _, _ = await sub.message("native CBOR out")
        check.same(f"{tag}: an event becomes a CBOR document", cbor2.loads(payload), {"args": [b"\x01"], "kwargs": {"n": 2}})
        got_cbor = Collector()
        await session.subscribe(got_cbor, f"nc.v{v}.in")
        pub2 = Client(mqtt_url, v)
        await pub2.connect()
        await pub2.publish(f"nc/v{v}/in", cbor2.dumps({"args": [b"raw", 7]}), qos=1)
        args, kwargs, _ = await got_cbor.wait(1, "native CBOR in")
        check.same(f"{tag}: a CBOR document becomes args", (args, kwargs), ([b"raw", 7], {}))
        for client in (pub, sub, pub2):
            client.close()
    await close(session)


async def retained(check, mqtt_url, wamp_url, serializer, _extra):
    """Retained messages are retained events: set from MQTT and WAMP, read by both, cleared by an empty payload."""
    session, _ = await connect(wamp_url, serializer)
    for v in (3, 5):
        tag = f"MQTT {'3.1.1' if v == 3 else '5'}"
        pub = Client(mqtt_url, v)
        await pub.connect()
        await pub.publish(f"rt{v}/a", b"kept", qos=1, retain=True)
        late = Client(mqtt_url, v)
        await late.connect()
        await late.subscribe([(f"rt{v}/a", 1)])
        _, topic, payload, qos, retain = await late.message("retained message")
        check.same(f"{tag}: a new subscriber gets the retained message, RETAIN set", (topic, payload, retain), (f"rt{v}/a", b"kept", True))
        got = Collector()
        await session.subscribe(got, f"rt{v}.a", options=SubscribeOptions(get_retained=True, details=True))
        args, _, details = await got.wait(1, "retained event")
        check.same(f"{tag}: a WAMP subscriber asking for retained events gets it", args, [b"kept"])
        check.true(f"{tag}: ... marked retained", details.retained)
        session.publish(f"rt{v}.w", b"from wamp", options=PublishOptions(retain=True, acknowledge=True))
        await asyncio.sleep(0.1)
        await late.subscribe([(f"rt{v}/w", 0)])
        _, topic, payload, _, retain = await late.message("WAMP retained")
        check.same(f"{tag}: an event retained by WAMP reaches a new MQTT subscriber", (payload, retain), (b"from wamp", True))
        await pub.publish(f"rt{v}/a", b"live", qos=1)
        _, _, payload, _, retain = await late.message("live message")
        check.same(f"{tag}: live messages come with RETAIN 0", (payload, retain), (b"live", False))
        await pub.publish(f"rt{v}/a", b"", qos=1, retain=True)
        _, _, payload, _, _ = await late.message("clearing message")
        check.same(f"{tag}: the empty retained message is delivered as usual", payload, b"")
        later = Client(mqtt_url, v)
        await later.connect()
        await later.subscribe([(f"rt{v}/a", 1)])
        await later.quiet(f"{tag}: an empty retained payload cleared the retained message")
        for client in (pub, late, later):
            client.close()
    await close(session)


async def will(check, mqtt_url, wamp_url, serializer, _extra):
    """Last will: a testament published when the client drops without DISCONNECT, and not after DISCONNECT."""
    session, _ = await connect(wamp_url, serializer)
    for v in (3, 5):
        tag = f"MQTT {'3.1.1' if v == 3 else '5'}"
        got = Collector()
        await session.subscribe(got, f"wl{v}", options=SubscribeOptions(match="prefix", details=True))
        watcher = Client(mqtt_url, v)
        await watcher.connect()
        await watcher.subscribe([(f"wl{v}/#", 1)])
        dropper = Client(mqtt_url, v, will=(f"wl{v}/dropped", b"gone", False))
        check.eq(f"{tag}: CONNECT with a will", await dropper.connect(), 0)
        polite = Client(mqtt_url, v, will=(f"wl{v}/polite", b"not sent", False))
        await polite.connect()
        polite.close()
        await asyncio.sleep(0.2)
        dropper.drop()
        args, _, details = await got.wait(1, "the will as a WAMP event")
        check.same(f"{tag}: the will reaches WAMP when the client drops", (details.topic, args), (f"wl{v}.dropped", [b"gone"]))
        _, topic, payload, _, _ = await watcher.message("the will over MQTT")
        check.same(f"{tag}: ... and MQTT subscribers", (topic, payload), (f"wl{v}/dropped", b"gone"))
        await asyncio.sleep(0.3)
        check.eq(f"{tag}: no will after DISCONNECT", len(got.events), 1)
        bad = Client(mqtt_url, v, will=("bad//topic", b"x", False))
        code = await bad.connect()
        check.eq(f"{tag}: a will topic without WAMP URI is refused in CONNACK", code, 0x90 if v == 5 else 0x88)
        watcher.close()
    await close(session)


async def auth(check, mqtt_url, wamp_url, serializer, _extra):
    """Realm `secure`: ticket principals, a role that may publish and subscribe under `open.` only."""
    for v in (3, 5):
        tag = f"MQTT {'3.1.1' if v == 3 else '5'}"
        nobody = Client(mqtt_url, v)
        check.eq(f"{tag}: no user name where anonymous is off: bad user name or password", await nobody.connect(), 0x86)
        wrong = Client(mqtt_url, v, username="alice", password="wrong")
        check.eq(f"{tag}: a wrong password: bad user name or password", await wrong.connect(), 0x86)
        unknown = Client(mqtt_url, v, username="mallory", password="secret")
        check.eq(f"{tag}: an unknown user: the same answer", await unknown.connect(), 0x86)
        alice = Client(mqtt_url, v, username="alice", password="secret")
        check.eq(f"{tag}: the principal's ticket as password", await alice.connect(), 0)
        codes = await alice.subscribe([("open/x", 1), ("closed/x", 1), ("#", 0)])
        if v == 5:
            check.eq(f"{tag}: SUBACK refuses what the role may not subscribe (0x87), # only in part", codes, [1, 0x87, 0])
        else:
            check.eq(f"{tag}: SUBACK refuses what the role may not subscribe (0x80)", codes, [1, 0x80, 0])
        check.eq(f"{tag}: an allowed PUBLISH", await alice.publish("open/x", b"ok", qos=1), 0)
        _, topic, _, _, _ = await alice.message("own publication")
        await alice.message("own publication (second subscription)")
        code = await alice.publish("closed/x", b"no", qos=1)
        if v == 5:
            check.eq(f"{tag}: PUBACK 0x87 for a PUBLISH the role may not make", code, 0x87)
            check.eq(f"{tag}: topic abuse: PUBACK 0x90 for a topic without WAMP URI", await alice.publish("open//x", b"?", qos=1), 0x90)
            check.eq(f"{tag}: topic abuse: SUBACK 0x8F / 0x9E", await alice.subscribe([("open/+/#", 0), ("$share/g/open/x", 0), ("$SYS/#", 0)]), [0x8F, 0x9E, 0x8F])
        else:
            check.true(f"{tag}: a refused PUBLISH closes the connection (no negative PUBACK in 3.1.1)", code is None)
        alice.close()


async def dynamic_login(check, mqtt_url, wamp_url, serializer, extra):
    """A realm whose ticket logins a dynamic authenticator decides (tests/interop/dynamic_components.py): `extra` is
    "user:password" of a principal it knows, with a role that may publish under com/example/public/."""
    user, password = extra.split(":", 1)
    session, _ = await connect(wamp_url, serializer)
    for v in (3, 5):
        tag = f"MQTT {'3.1.1' if v == 3 else '5'} ({urlparse(mqtt_url).scheme})"
        wrong = Client(mqtt_url, v, username=user, password=password + "?")
        code = await wrong.connect()
        check.eq(f"{tag}: the authenticator refuses a wrong password: not authorized", code, 0x87)
        client = Client(mqtt_url, v, username=user, password=password)
        check.eq(f"{tag}: the authenticator admits the principal", await client.connect(), 0)
        check.eq(f"{tag}: SUBACK", await client.subscribe([("com/example/public/dyn", 1)]), [1])
        check.eq(f"{tag}: a PUBLISH its role may make", await client.publish("com/example/public/dyn", b"d", qos=1), 0)
        _, topic, payload, _, _ = await client.message("its own publication")
        check.eq(f"{tag}: delivered", (topic, payload), ("com/example/public/dyn", b"d"))
        client.close()
    await close(session)


async def tls(check, mqtt_url, wamp_url, serializer, extra):
    """MQTT over TLS with a client certificate (client_ca): with the certificate in; without it, no session."""
    files = {"ca": f"{extra}/ca.pem", "cert": f"{extra}/client.pem", "key": f"{extra}/client.key"}
    session, _ = await connect(wamp_url, serializer)
    got = Collector()
    await session.subscribe(got, "tls.in")
    for v in (3, 5):
        tag = f"MQTT {'3.1.1' if v == 3 else '5'}"
        client = Client(mqtt_url, v, tls=files)
        check.eq(f"{tag}: CONNACK over TLS with a client certificate", await client.connect(), 0)
        before = len(got.events)
        code = await client.publish("tls/in", f"v{v}".encode(), qos=1)
        check.eq(f"{tag}: PUBACK over TLS", code, 0)
        args, _, _ = await got.wait(before + 1, "publication over TLS")
        check.same(f"{tag}: published over TLS", args, [f"v{v}".encode()])
        client.close()
        anonymous = Client(mqtt_url, v, tls={"ca": files["ca"]})
        result = await anonymous.connect()
        check.true(f"{tag}: without a client certificate the handshake fails", result != 0)
        anonymous.client.loop_stop()
    await close(session)


CHECKS = {"pubsub": pubsub, "native": native, "retained": retained, "will": will, "auth": auth, "tls": tls,
          "dynamic_login": dynamic_login}

if __name__ == "__main__":
    name, mqtt_url, wamp_url, serializer = sys.argv[1:5]
    extra = sys.argv[5] if len(sys.argv) > 5 else None
    run(f"mqtt {name} {mqtt_url}", lambda check: CHECKS[name](check, mqtt_url, wamp_url, serializer, extra), timeout=60)
