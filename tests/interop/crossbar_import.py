"""autobahn-python against a router running the crossbar.io configuration of tests/tests/import_crossbar.rs: kreisel
on what `kreisel --import-crossbar` made of it, or crossbar itself. The same checks pass on both.

Usage: crossbar_import.py URL SERIALIZER

The configuration (realm `migrated`, the same `auth` on a Web transport's WebSocket path and on a RawSocket
transport): ticket principal alice (role user), WAMP-CRA carol (plain secret) and bob (salted secret), cryptosign dev
(all role backend), anonymous access as role guest. Roles: user may call and subscribe under com.app., publish to
and subscribe to com.app.chat (publisher disclosed), call com.app.audit (caller disclosed); backend everything; guest
subscribe under com.app.public. (a starred prefix) and call com.sensor.*.status (a starred wildcard).

Checks: every principal joins with the credentials a crossbar deployment gives its clients (the salted one derives
its key from the password and the CHALLENGE's parameters), with the right authid, authrole and authmethod; wrong
credentials and unknown principals are refused (the two routers name the refusal differently, so only the ABORT is
checked); what each role may and may not do, including crossbar's rule that an exact permission denies the longer
URIs under it (user subscribing to com.app.chat.private) although a shorter prefix rule allows them."""

import asyncio
import sys

from autobahn.wamp import auth
from autobahn.wamp.cryptosign import CryptosignKey
from autobahn.wamp.types import PublishOptions, RegisterOptions, SubscribeOptions

from common import Collector, Refused, close, connect_auth, run, wait_for

URL, SERIALIZER = sys.argv[1], sys.argv[2]
REALM = "migrated"
# The private half of the cryptosign key whose public half the configuration lists for dev.
SEED = "4d57d97a68f555696620a6d849c0ce582568518d729eb753dc7c732de2804510"
DENIED = "wamp.error.not_authorized"


def ticket(value):
    return lambda challenge: value


def wampcra(password):
    def sign(challenge):
        extra = challenge.extra
        key = password
        if "salt" in extra:
            key = auth.derive_key(password, extra["salt"], extra["iterations"], extra["keylen"])
        return auth.compute_wcs(key, extra["challenge"]).decode("ascii")

    return sign


async def refused(check, what, **kwargs):
    try:
        session, _ = await connect_auth(URL, SERIALIZER, REALM, **kwargs)
    except Refused as error:
        check.true(f"{what}: refused ({error.reason})", error.reason.startswith("wamp.error."))
        return
    await close(session)
    raise AssertionError(f"{what}: joined, expected ABORT")


def welcome(check, what, details, authid, authrole, authmethod):
    if authid is not None:
        check.eq(f"{what}: WELCOME authid", details.authid, authid)
    check.eq(f"{what}: WELCOME authrole", details.authrole, authrole)
    check.eq(f"{what}: WELCOME authmethod", details.authmethod, authmethod)


async def main(check):
    alice, details = await connect_auth(
        URL, SERIALIZER, REALM, ["ticket"], authid="alice", on_challenge=ticket("open sesame")
    )
    welcome(check, "ticket", details, "alice", "user", "ticket")
    await refused(check, "wrong ticket", authmethods=["ticket"], authid="alice", on_challenge=ticket("open sesame!"))
    await refused(check, "unknown authid", authmethods=["ticket"], authid="mallory", on_challenge=ticket("x"))

    carol, details = await connect_auth(
        URL, SERIALIZER, REALM, ["wampcra"], authid="carol", on_challenge=wampcra("carols secret")
    )
    welcome(check, "wampcra", details, "carol", "backend", "wampcra")
    bob, details = await connect_auth(
        URL, SERIALIZER, REALM, ["wampcra"], authid="bob", on_challenge=wampcra("hunter2")
    )
    welcome(check, "wampcra salted", details, "bob", "backend", "wampcra")
    await refused(check, "wampcra wrong password", authmethods=["wampcra"], authid="bob",
                  on_challenge=wampcra("hunter3"))

    key = CryptosignKey.from_bytes(bytes.fromhex(SEED))
    dev, details = await connect_auth(
        URL, SERIALIZER, REALM, ["cryptosign"], authextra={"pubkey": key.public_key(binary=False)},
        on_challenge=lambda challenge: key.sign_challenge(challenge),
    )
    welcome(check, "cryptosign (authid found by the key)", details, "dev", "backend", "cryptosign")
    stranger = CryptosignKey.from_bytes(bytes(range(32)))
    await refused(check, "cryptosign unknown key", authmethods=["cryptosign"],
                  authextra={"pubkey": stranger.public_key(binary=False)},
                  on_challenge=lambda challenge: stranger.sign_challenge(challenge))

    guest, details = await connect_auth(URL, SERIALIZER, REALM, ["anonymous"])
    # The routers name anonymous sessions differently (crossbar: a random serial, kreisel: anonymous-<session>).
    welcome(check, "anonymous", details, None, "guest", "anonymous")

    # backend: everything.
    await carol.register(lambda a, b: a + b, "com.app.add")
    await dev.register(lambda: "green", "com.sensor.kitchen.status")
    check.eq("backend (bob, salted) calls", await wait_for(bob.call("com.app.add", 1, 1), "RESULT"), 2)

    # user.
    check.eq("user calls com.app.add", await wait_for(alice.call("com.app.add", 2, 3), "RESULT"), 5)
    await check.error("user registers", alice.register(lambda: None, "com.app.mine"), DENIED)
    await check.error("user publishes to com.app.news",
                      alice.publish("com.app.news", 1, options=PublishOptions(acknowledge=True)), DENIED)
    await check.error("user subscribes outside com.app.", alice.subscribe(lambda: None, "org.other"), DENIED)
    await check.error("user subscribes to com.app.chat.private (the exact rule for com.app.chat denies longer URIs)",
                      alice.subscribe(lambda: None, "com.app.chat.private"), DENIED)

    audited = asyncio.get_running_loop().create_future()

    def audit(details=None):
        if not audited.done():
            audited.set_result(details)

    await carol.register(audit, "com.app.audit", options=RegisterOptions(details_arg="details"))
    await wait_for(alice.call("com.app.audit"), "RESULT of com.app.audit")
    details = await wait_for(audited, "INVOCATION of com.app.audit")
    check.eq("the rule discloses the caller", (details.caller_authid, details.caller_authrole), ("alice", "user"))

    chat = Collector()
    await carol.subscribe(chat, "com.app.chat", options=SubscribeOptions(details_arg="details"))
    await alice.publish("com.app.chat", "hello", options=PublishOptions(acknowledge=True))
    args, _, details = await chat.wait(1, "EVENT on com.app.chat")
    check.eq("user publishes to com.app.chat", args, ["hello"])
    check.eq("the rule discloses the publisher", details.publisher_authid, "alice")

    # guest (anonymous).
    news = Collector()
    await guest.subscribe(news, "com.app.public.news")
    await carol.publish("com.app.public.news", "extra", options=PublishOptions(acknowledge=True))
    args, _, _ = await news.wait(1, "EVENT on com.app.public.news")
    check.eq("guest subscribes under com.app.public.", args, ["extra"])
    check.eq("guest calls com.sensor.*.status",
             await wait_for(guest.call("com.sensor.kitchen.status"), "RESULT"), "green")
    await check.error("guest publishes", guest.publish(
        "com.app.public.news", 1, options=PublishOptions(acknowledge=True)), DENIED)
    await check.error("guest calls com.app.add", guest.call("com.app.add", 1, 2), DENIED)
    await check.error("guest subscribes to com.app.chat", guest.subscribe(lambda: None, "com.app.chat"), DENIED)

    await close(alice, carol, bob, dev, guest)


run("crossbar_import", main)
