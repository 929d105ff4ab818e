"""autobahn-python against kreisel running examples/auth.toml: every comment of the example, checked.

Usage: example_auth.py URL SERIALIZER   (the router runs the example's realms `public` and `app`)

- public: anonymous clients may do everything.
- app, guest (anonymous): may subscribe under app.public. only; a prefix subscription to app. is accepted but
  delivers only app.public. events; app.admin. is refused; no publishing.
- app, browser (ticket, role frontend): call and subscribe under app., nothing under app.admin. (not by an exact
  subscription, not through a pattern, not as a retained event); app.chat publications name the publisher to
  subscribers; app.orders.place calls name the caller to the callee. (Asking to be told publishers or callers,
  which `identify` governs, cannot be sent by autobahn-python 26: io/tests/attacks.rs checks it with raw frames.)
- app, billing (WAMP-CRA with a plain secret) and reports (WAMP-CRA salted, password "the password"): role
  backend, everything.
- app, sensor-0042 (cryptosign): publishes app.telemetry.<id>.reading only, calls app.devices.config.
- app, analyst (WAMP-SCRAM, password "the analyst password", autobahn's AuthScram): role frontend; autobahn checks
  the router's signature in WELCOME.
- Challenges: a WAMP-CRA CHALLENGE names no role, and one for an unknown authid looks like a real one.
"""

import asyncio
import json
import sys

from autobahn.wamp import auth
from autobahn.wamp.cryptosign import CryptosignKey
from autobahn.wamp.types import PublishOptions, RegisterOptions, SubscribeOptions

from common import Collector, Refused, close, connect, connect_auth, run, wait_for

URL, SERIALIZER = sys.argv[1], sys.argv[2]
SEED = "4d57d97a68f555696620a6d849c0ce582568518d729eb753dc7c732de2804510"


def wampcra(secret):
    def sign(challenge):
        extra = challenge.extra
        key = secret
        if "salt" in extra:
            key = auth.derive_key(secret, extra["salt"], extra["iterations"], extra["keylen"])
        return auth.compute_wcs(key, extra["challenge"]).decode("ascii")

    return sign


async def join(authmethods=None, authid=None, secret=None, authextra=None, on_challenge=None):
    if authmethods is None:
        session, details = await connect_auth(URL, SERIALIZER, "app")
        return session, details
    if on_challenge is None:
        on_challenge = wampcra(secret) if authmethods == ["wampcra"] else (lambda challenge: secret)
    return await connect_auth(URL, SERIALIZER, "app", authmethods, authid=authid, authextra=authextra,
                              on_challenge=on_challenge)


class Marker:
    """Publishes a marker event and waits for it: everything published before it has been delivered."""

    def __init__(self, publisher):
        self.publisher = publisher

    async def after(self, collector, what):
        """The first arguments of the events `collector` got before the marker (then forgets them)."""
        await self.publisher.publish("app.public.marker", "marker", options=PublishOptions(acknowledge=True))
        while not any(args == ["marker"] for args, _, _ in collector.events):
            await collector.wait(len(collector.events) + 1, what)
        seen = [args[0] for args, _, _ in collector.events if args != ["marker"]]
        collector.events.clear()
        return seen


async def main(check):
    # public: anonymous, everything.
    anyone, details = await connect(URL, SERIALIZER, "public")
    check.eq("public: anonymous joins", details.authmethod, "anonymous")
    reg = await anyone.register(lambda: "fine", "com.example.status")
    check.eq("public: anonymous may register and call", await anyone.call("com.example.status"), "fine")
    await reg.unregister()
    await close(anyone)

    backend, details = await join(["wampcra"], "billing", "s3cr3t-shared-with-billing")
    check.eq("billing (WAMP-CRA plain): role backend", details.authrole, "backend")
    reports, details = await join(["wampcra"], "reports", "the password")
    check.eq("reports (WAMP-CRA salted, derived key in the file): role backend", details.authrole, "backend")
    frontend, details = await join(["ticket"], "browser", "correct-horse-battery-staple")
    check.eq("browser (ticket): role frontend", details.authrole, "frontend")
    guest, details = await join()
    check.eq("anonymous: role guest", details.authrole, "guest")
    key = CryptosignKey.from_bytes(bytes.fromhex(SEED))
    sensor, details = await join(["cryptosign"], authextra={"pubkey": key.public_key(binary=False)},
                                 on_challenge=lambda challenge: key.sign_challenge(challenge))
    check.eq("sensor-0042 (cryptosign): role device", (details.authid, details.authrole),
             ("sensor-0042", "device"))
    scram = auth.AuthScram(authid="analyst", password="the analyst password")
    verified = []

    class Quiet:
        class log:
            info = error = staticmethod(lambda *args, **kwargs: None)

    analyst, details = await connect_auth(
        URL, SERIALIZER, "app", ["scram"], authid="analyst", authextra=scram.authextra,
        on_challenge=lambda challenge: scram.on_challenge(None, challenge),
        on_welcome=lambda authextra: verified.append(scram.on_welcome(Quiet(), authextra)) or verified[-1],
    )
    check.eq("analyst (WAMP-SCRAM): role frontend, the router's signature verified",
             (details.authrole, details.authmethod, verified), ("frontend", "scram", [None]))
    await close(analyst)
    marker = Marker(backend)

    # Retained before anyone subscribes.
    for topic in ["app.admin.users", "app.public.news"]:
        await backend.publish(topic, topic, options=PublishOptions(retain=True, acknowledge=True))

    # guest: subscribe under app.public. only.
    seen_by_guest = Collector()
    await guest.subscribe(seen_by_guest, "app.public.", options=SubscribeOptions(match="prefix"))
    await check.error("guest subscribes app.admin.",
                      guest.subscribe(lambda *a: None, "app.admin.", options=SubscribeOptions(match="prefix")),
                      "wamp.error.not_authorized")
    await check.error("guest publishes", guest.publish("app.public.x", options=PublishOptions(acknowledge=True)),
                      "wamp.error.not_authorized")
    guest_all = Collector()
    await guest.subscribe(guest_all, "app.", options=SubscribeOptions(match="prefix"))
    check.true("guest: a prefix subscription to app. is accepted", True)

    # frontend: nothing under app.admin., by any route.
    await check.error("frontend subscribes app.admin.users",
                      frontend.subscribe(lambda *a: None, "app.admin.users"), "wamp.error.not_authorized")
    await check.error("frontend subscribes app.admin. (prefix)",
                      frontend.subscribe(lambda *a: None, "app.admin.", options=SubscribeOptions(match="prefix")),
                      "wamp.error.not_authorized")
    await check.error("frontend calls app.admin.reset", frontend.call("app.admin.reset"),
                      "wamp.error.not_authorized")
    frontend_all = Collector()
    await frontend.subscribe(frontend_all, "app.", options=SubscribeOptions(match="prefix", get_retained=True))
    for topic in ["app.admin.users", "app.news.today", "app.public.weather", "app.admin.keys.rotate"]:
        await backend.publish(topic, topic, options=PublishOptions(acknowledge=True))
    check.eq("frontend's app. pattern: no app.admin. event, retained or live",
             await marker.after(frontend_all, "frontend's events"),
             ["app.public.news", "app.news.today", "app.public.weather"])
    check.eq("guest's app. pattern: app.public. events only",
             await marker.after(guest_all, "guest's events"), ["app.public.weather"])

    # app.chat: subscribers see who wrote; asking for it yourself needs `identify`.
    chat = Collector()
    await reports.subscribe(chat, "app.chat", options=SubscribeOptions(details_arg="details"))
    await frontend.publish("app.chat", "hello", options=PublishOptions(acknowledge=True))
    _, _, details = await chat.wait(1, "the chat message")
    check.eq("app.chat names the publisher", (details.publisher_authid, details.publisher_authrole),
             ("browser", "frontend"))

    # app.orders.place: the callee sees who ordered.
    ordered = asyncio.get_running_loop().create_future()

    def place(details=None):
        ordered.set_result(details)
        return "placed"

    await backend.register(place, "app.orders.place", options=RegisterOptions(details_arg="details"))
    check.eq("frontend calls app.orders.place", await frontend.call("app.orders.place"), "placed")
    details = await wait_for(ordered, "the order's INVOCATION")
    check.eq("the callee sees who ordered", (details.caller_authid, details.caller_authrole),
             ("browser", "frontend"))
    await check.error("frontend registers", frontend.register(lambda: None, "app.news.poll"),
                      "wamp.error.not_authorized")

    # device: telemetry readings only.
    await sensor.publish("app.telemetry.t42.reading", 21.5, options=PublishOptions(acknowledge=True))
    check.true("device publishes app.telemetry.t42.reading", True)
    await check.error("device publishes elsewhere",
                      sensor.publish("app.telemetry.t42.config", 1, options=PublishOptions(acknowledge=True)),
                      "wamp.error.not_authorized")
    await reports.register(lambda: {"interval": 10}, "app.devices.config")
    check.eq("device calls app.devices.config", await sensor.call("app.devices.config"), {"interval": 10})

    # WAMP-CRA challenges: no role, and an unknown authid's looks like a real one.
    challenges = {}

    def keep(authid):
        def sign(challenge):
            challenges[authid] = challenge.extra
            return "wrong"

        return sign

    for authid in ["billing", "reports", "nobody-0", "nobody-1", "nobody-2", "nobody-3"]:
        try:
            session, _ = await join(["wampcra"], authid, on_challenge=keep(authid))
            await close(session)
            raise AssertionError(f"{authid} joined with a wrong signature")
        except Refused as error:
            check.eq(f"{authid}: refused", error.reason, "wamp.error.authentication_failed")
    fields = {authid: sorted(json.loads(extra["challenge"])) for authid, extra in challenges.items()}
    check.true("challenges name no role", all("authrole" not in keys for keys in fields.values()))
    check.eq("every challenge has the same fields", len({tuple(keys) for keys in fields.values()}), 1)
    for authid, extra in challenges.items():
        if "salt" in extra:
            check.eq(f"{authid}: salt shaped like the real one",
                     (len(extra["salt"]), extra["iterations"], extra["keylen"]),
                     (len(challenges["reports"]["salt"]), 10000, 32))

    await close(frontend, guest, sensor, reports, backend)


if __name__ == "__main__":
    run("example_auth", main, timeout=40)
