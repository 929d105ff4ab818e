"""autobahn-python against kreisel: authentication and authorization.

Usage: auth.py URL SERIALIZER   (the router has realm `secure`, configured by tests/tests/auth.rs)

Checks: ticket (right, wrong, unknown authid); WAMP-CRA with a plain secret and with a salted one (the client
derives the key from the salt, iterations and keylen the CHALLENGE carries; wrong password refused); cryptosign
(Ed25519 key, signature by autobahn's CryptosignKey; a key the router does not know is refused); anonymous refused
on `secure`; WELCOME authid/authrole/authmethod/authprovider; role `user` may call and subscribe under com.app.
but not register or publish there (wamp.error.not_authorized), may publish to com.app.chat (publisher disclosed by
the role's rule) and call com.app.audit (caller disclosed by the rule)."""

import asyncio
import sys

from autobahn.wamp import auth
from autobahn.wamp.cryptosign import CryptosignKey
from autobahn.wamp.types import PublishOptions, RegisterOptions, SubscribeOptions

from common import Collector, Refused, close, connect_auth, run, wait_for

URL, SERIALIZER = sys.argv[1], sys.argv[2]
REALM = "secure"
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


async def refused(check, what, reason, **kwargs):
    try:
        session, _ = await connect_auth(URL, SERIALIZER, REALM, **kwargs)
    except Refused as error:
        check.eq(f"{what}: ABORT", error.reason, reason)
        return
    await close(session)
    raise AssertionError(f"{what}: joined, expected ABORT {reason}")


def welcome(check, what, details, authid, authrole, authmethod):
    check.eq(f"{what}: WELCOME authid", details.authid, authid)
    check.eq(f"{what}: WELCOME authrole", details.authrole, authrole)
    check.eq(f"{what}: WELCOME authmethod", details.authmethod, authmethod)
    check.eq(f"{what}: WELCOME authprovider", details.authprovider, "static")


async def main(check):
    # Ticket.
    alice, details = await connect_auth(
        URL, SERIALIZER, REALM, ["ticket"], authid="alice", on_challenge=ticket("open sesame")
    )
    welcome(check, "ticket", details, "alice", "user", "ticket")
    await refused(check, "wrong ticket", "wamp.error.authentication_failed",
                  authmethods=["ticket"], authid="alice", on_challenge=ticket("open sesame!"))
    await refused(check, "unknown authid", "wamp.error.authentication_failed",
                  authmethods=["ticket"], authid="mallory", on_challenge=ticket("open sesame"))
    await refused(check, "anonymous on a realm without it", "wamp.error.no_auth_method",
                  authmethods=["anonymous"])

    # WAMP-CRA, plain and salted.
    carol, details = await connect_auth(
        URL, SERIALIZER, REALM, ["wampcra"], authid="carol", on_challenge=wampcra("carols secret")
    )
    welcome(check, "wampcra", details, "carol", "backend", "wampcra")
    bob, details = await connect_auth(
        URL, SERIALIZER, REALM, ["wampcra"], authid="bob", on_challenge=wampcra("hunter2")
    )
    welcome(check, "wampcra salted", details, "bob", "backend", "wampcra")
    await refused(check, "wampcra wrong password", "wamp.error.authentication_failed",
                  authmethods=["wampcra"], authid="bob", on_challenge=wampcra("hunter3"))

    # Cryptosign.
    key = CryptosignKey.from_bytes(bytes.fromhex(SEED))
    dev, details = await connect_auth(
        URL, SERIALIZER, REALM, ["cryptosign"], authextra={"pubkey": key.public_key(binary=False)},
        on_challenge=lambda challenge: key.sign_challenge(challenge),
    )
    welcome(check, "cryptosign", details, "dev", "backend", "cryptosign")
    stranger = CryptosignKey.from_bytes(bytes(range(32)))
    # An unknown key gets a challenge like a known one (keys cannot be probed) and fails when it answers.
    await refused(check, "cryptosign unknown key", "wamp.error.authentication_failed",
                  authmethods=["cryptosign"], authextra={"pubkey": stranger.public_key(binary=False)},
                  on_challenge=lambda challenge: stranger.sign_challenge(challenge))

    # Authorization: alice is a `user`, carol a `backend`.
    await check.error("user registers", alice.register(lambda: None, "com.app.add"), "wamp.error.not_authorized")
    await check.error("user subscribes outside com.app.", alice.subscribe(lambda: None, "org.other"),
                      "wamp.error.not_authorized")
    await check.error("user publishes to com.app.news",
                      alice.publish("com.app.news", 1, options=PublishOptions(acknowledge=True)),
                      "wamp.error.not_authorized")
    await carol.register(lambda a, b: a + b, "com.app.add")
    check.eq("user calls com.app.add", await wait_for(alice.call("com.app.add", 2, 3), "RESULT"), 5)

    audited = asyncio.get_running_loop().create_future()

    def audit(details=None):
        audited.set_result(details)

    await carol.register(audit, "com.app.audit", options=RegisterOptions(details_arg="details"))
    await wait_for(alice.call("com.app.audit"), "RESULT of com.app.audit")
    details = await wait_for(audited, "INVOCATION of com.app.audit")
    check.eq("the role's rule discloses the caller", (details.caller_authid, details.caller_authrole),
             ("alice", "user"))

    chat = Collector()
    await carol.subscribe(chat, "com.app.chat", options=SubscribeOptions(details_arg="details"))
    watched = Collector()
    await alice.subscribe(watched, "com.app.", options=SubscribeOptions(match="prefix"))
    await alice.publish("com.app.chat", "hello", options=PublishOptions(acknowledge=True))
    args, _, details = await chat.wait(1, "EVENT on com.app.chat")
    check.eq("user publishes to com.app.chat", args, ["hello"])
    check.eq("the role's rule discloses the publisher", details.publisher_authid, "alice")
    await carol.publish("com.app.news", "extra", options=PublishOptions(acknowledge=True))
    args, _, _ = await watched.wait(1, "EVENT on the user's prefix subscription")
    check.eq("user receives on its permitted prefix subscription", args, ["extra"])

    await close(alice, carol, bob, dev)


run("auth", main)
