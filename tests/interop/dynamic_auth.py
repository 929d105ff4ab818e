"""autobahn-python clients authenticated and authorized by dynamic components (tests/interop/dynamic_components.py,
which must be running) through kreisel: python dynamic_auth.py URL SERIALIZER

The router (tests/tests/dynamic_auth.rs) has realm `dynamic`, whose ticket, WAMP-CRA, cryptosign and SCRAM logins
go to com.example.authenticate and anonymous ones to com.example.anonymous, whose role `frontend` is decided by
com.example.authorize; and realm `absent`, whose authenticator nobody registered.

Checks: every method logs in through the authenticator (WELCOME authid, authrole, authmethod, authprovider
"dynamic", authextra); the authenticator's refusals reach the client as the ABORT it raised; a misbehaving
authenticator (never answering, crashing, wrong types, a huge answer, no role, not registered) means
wamp.error.authentication_failed or the error it raised; the authorizer allows, refuses and fails
(wamp.error.not_authorized, wamp.error.authorization_failed), remembers what it says may be cached, discloses the
publisher when it says so, and decides pattern subscriptions."""

import sys
import time

from autobahn.wamp import auth
from autobahn.wamp.cryptosign import CryptosignKey
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from common import Collector, Refused, close, connect_auth, run

URL, SERIALIZER = sys.argv[1], sys.argv[2]
SEED = "4d57d97a68f555696620a6d849c0ce582568518d729eb753dc7c732de2804510"


def ticket(value):
    return lambda challenge: value


def wampcra(secret):
    def sign(challenge):
        extra = challenge.extra
        key = secret
        if "salt" in extra:
            key = auth.derive_key(secret, extra["salt"], extra["iterations"], extra["keylen"])
        return auth.compute_wcs(key, extra["challenge"]).decode("ascii")

    return sign


async def refused(check, what, reason, realm="dynamic", **kwargs):
    started = time.monotonic()
    try:
        session, _ = await connect_auth(URL, SERIALIZER, realm, **kwargs)
    except Refused as error:
        check.eq(f"{what}: ABORT", error.reason, reason)
        return error, time.monotonic() - started
    await close(session)
    raise AssertionError(f"{what}: joined, expected ABORT {reason}")


def welcome(check, what, details, authid, authrole, authmethod):
    check.eq(f"{what}: WELCOME", (details.authid, details.authrole, details.authmethod, details.authprovider),
             (authid, authrole, authmethod, "dynamic"))


async def main(check):
    # Every method, through the authenticator.
    joe, details = await connect_auth(URL, SERIALIZER, "dynamic", ["ticket"], authid="joe",
                                      on_challenge=ticket("secret!!!"))
    welcome(check, "ticket", details, "joe", "frontend", "ticket")
    jim, details = await connect_auth(URL, SERIALIZER, "dynamic", ["wampcra"], authid="jim",
                                      on_challenge=wampcra("wampcra-secret"))
    welcome(check, "wampcra", details, "jim", "frontend", "wampcra")
    salty, details = await connect_auth(URL, SERIALIZER, "dynamic", ["wampcra"], authid="salty",
                                        on_challenge=wampcra("salted password"))
    welcome(check, "wampcra salted", details, "salty", "frontend", "wampcra")
    key = CryptosignKey.from_bytes(bytes.fromhex(SEED))
    dev, details = await connect_auth(URL, SERIALIZER, "dynamic", ["cryptosign"], authid="dev",
                                      authextra={"pubkey": key.public_key(binary=False)},
                                      on_challenge=lambda challenge: key.sign_challenge(challenge))
    welcome(check, "cryptosign", details, "dev", "frontend", "cryptosign")
    scram = auth.AuthScram(authid="sam", password="scram password")
    sam, details = await connect_auth(URL, SERIALIZER, "dynamic", ["scram"], authid="sam",
                                      authextra=scram.authextra,
                                      on_challenge=lambda challenge: scram.on_challenge(None, challenge))
    welcome(check, "scram", details, "sam", "frontend", "scram")
    check.true("scram: WELCOME carries the server signature", "scram_server_signature" in details.authextra)
    guest, details = await connect_auth(URL, SERIALIZER, "dynamic", ["anonymous"])
    check.eq("anonymous: WELCOME role and extra", (details.authrole, details.authmethod, details.authextra),
             ("guest", "anonymous", {"welcome": "to dynamic"}))

    # The authenticator's own refusals, and its misbehaviour.
    error, _ = await refused(check, "wrong ticket", "com.example.invalid_ticket", authmethods=["ticket"],
                             authid="joe", on_challenge=ticket("wrong"))
    check.eq("wrong ticket: the authenticator's message", str(error).endswith("invalid ticket for 'joe'"), True)
    await refused(check, "unknown principal", "com.example.no_such_user", authmethods=["ticket"], authid="zed",
                  on_challenge=ticket("x"))
    await refused(check, "wampcra wrong secret", "wamp.error.authentication_failed", authmethods=["wampcra"],
                  authid="jim", on_challenge=wampcra("guess"))
    _, waited = await refused(check, "an authenticator that never answers", "wamp.error.authentication_failed",
                              authmethods=["ticket"], authid="slowpoke", on_challenge=ticket("x"))
    check.true("... refused after its timeout (2 s), not before", 1.5 < waited < 8)
    await refused(check, "an authenticator that crashes", "wamp.error.runtime_error", authmethods=["ticket"],
                  authid="crash", on_challenge=ticket("x"))
    await refused(check, "an answer of the wrong type", "wamp.error.authentication_failed",
                  authmethods=["ticket"], authid="wrongtype", on_challenge=ticket("x"))
    await refused(check, "a huge answer", "wamp.error.authentication_failed", authmethods=["ticket"], authid="huge",
                  on_challenge=ticket("x"))
    await refused(check, "an answer without a role", "wamp.error.no_such_role", authmethods=["ticket"],
                  authid="nobody", on_challenge=ticket("x"))
    await refused(check, "an authenticator nobody registered", "wamp.error.authentication_failed", realm="absent",
                  authmethods=["ticket"], authid="joe", on_challenge=ticket("secret!!!"))

    # The authorizer.
    public = Collector()
    await joe.subscribe(public, "com.example.public.news")
    await jim.publish("com.example.public.news", "hi", options=PublishOptions(acknowledge=True))
    args, _, _ = await public.wait(1, "the event on com.example.public.news")
    check.eq("allowed: subscribe and publish", args, ["hi"])
    await check.error("refused: publish to com.example.private",
                      joe.publish("com.example.private", options=PublishOptions(acknowledge=True)),
                      "wamp.error.not_authorized")
    await joe.register(lambda: "mine", "com.example.mine.joe.proc")
    check.eq("allowed for its authid only: call", await joe.call("com.example.mine.joe.proc"), "mine")
    await check.error("another authid's namespace", jim.register(lambda: None, "com.example.mine.joe.other"),
                      "wamp.error.not_authorized")
    await check.error("an authorizer that never decides", joe.call("com.example.slow"),
                      "wamp.error.authorization_failed")
    await check.error("an authorizer answering a string", joe.call("com.example.broken"),
                      "wamp.error.authorization_failed")
    disclosed = Collector()
    await joe.subscribe(disclosed, "com.example.public.disclosed", options=SubscribeOptions(details_arg="details"))
    await jim.publish("com.example.public.disclosed", 1, options=PublishOptions(acknowledge=True))
    _, _, event = await disclosed.wait(1, "the event on com.example.public.disclosed")
    check.eq("the authorizer discloses the publisher", event.publisher_authid, "jim")
    feed = Collector()
    await dev.subscribe(feed, "com.example.public.", options=SubscribeOptions(match="prefix"))
    await check.error("a pattern beyond com.example.public.",
                      dev.subscribe(feed, "com.example.", options=SubscribeOptions(match="prefix")),
                      "wamp.error.not_authorized")
    await sam.publish("com.example.public.feed.a", "x", options=PublishOptions(acknowledge=True))
    args, _, _ = await feed.wait(1, "the event on the allowed prefix subscription")
    check.eq("an allowed pattern subscription receives", args, ["x"])
    # The guest role is static: nothing but what it allows.
    await check.error("guest publishes", guest.publish("com.example.public.news", options=PublishOptions(
        acknowledge=True)), "wamp.error.not_authorized")

    await close(joe, jim, salty, dev, sam, guest)


run("dynamic_auth", main, timeout=45)
