"""A dynamic authenticator and a dynamic authorizer, written as crossbar.io's examples write them (an
ApplicationSession registering plain functions; here the asyncio flavour), for kreisel's dynamic authentication
tests: python dynamic_components.py URL SERIALIZER

Joins realm `auth` and registers:
- com.example.authenticate(realm, authid, details): the principals below, by details["authmethod"]: a ticket is
  checked (its role returned as a string, as crossbar's ticket example does; a wrong ticket or an unknown authid
  raises ApplicationError); WAMP-CRA gets the secret (plain, or the password with salt, iterations and keylen),
  cryptosign the public key, SCRAM what autobahn's derive_scram_credential makes. It refuses logins whose
  details lack crossbar's transport details (`peer`, `channel_type`). Some authids misbehave on
  purpose: "slowpoke" never answers in time, "crash" raises a plain exception, "wrongtype" answers a number,
  "huge" an answer of 100 KB, "nobody" a dictionary without a role.
- com.example.anonymous(realm, authid, details): role "guest" with WELCOME extra.
- com.example.authorize(session, uri, action, options): role "frontend": everything under com.example.public. for
  everybody (remembered: cache), com.example.mine.<authid>. for that authid only (not remembered),
  com.example.private refused, com.example.slow never decided in time, com.example.broken answered with a string;
  patterns only under com.example.public.; publications to com.example.public.disclosed disclose the publisher.

Prints "ready" once everything is registered and runs until killed.
"""

import asyncio
import os
import sys

from autobahn.asyncio.wamp import ApplicationSession
from autobahn.wamp import auth
from autobahn.wamp.cryptosign import CryptosignKey
from autobahn.wamp.exception import ApplicationError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import start_component  # noqa: E402

SEED = "4d57d97a68f555696620a6d849c0ce582568518d729eb753dc7c732de2804510"

PRINCIPALS = {
    "joe": {"ticket": "secret!!!", "role": "frontend"},
    "ann": {"ticket": "ann's ticket", "role": "frontend"},
    "jim": {"secret": "wampcra-secret", "role": "frontend"},
    "salty": {"secret": "salted password", "salt": "salt123", "iterations": 100, "keylen": 32, "role": "frontend"},
    "dev": {"pubkey": CryptosignKey.from_bytes(bytes.fromhex(SEED)).public_key(binary=False), "role": "frontend"},
}


def scram_principal():
    credential = auth.derive_scram_credential("sam", "scram password")
    credential["role"] = "frontend"
    return credential


class Authenticator(ApplicationSession):
    async def onJoin(self, details):
        PRINCIPALS["sam"] = scram_principal()

        async def authenticate(realm, authid, details):
            method = details["authmethod"]
            if authid == "slowpoke":
                await asyncio.sleep(60)
            if authid == "crash":
                raise RuntimeError("the authenticator broke")
            if authid == "wrongtype":
                return 42
            if authid == "huge":
                return {"role": "frontend", "extra": {"blob": "x" * 100_000}}
            if authid == "nobody":
                return {"authid": "nobody"}
            transport = details.get("transport") or {}
            if not str(transport.get("peer", "")).startswith("tcp4:127.0.0.1:") or transport.get("channel_type") != "tcp":
                raise ApplicationError("com.example.no_transport", f"transport details missing: {transport}")
            principal = PRINCIPALS.get(authid)
            if principal is None:
                raise ApplicationError("com.example.no_such_user", f"no principal '{authid}'")
            if method == "ticket":
                if details["ticket"] != principal.get("ticket"):
                    raise ApplicationError("com.example.invalid_ticket", f"invalid ticket for '{authid}'")
                return principal["role"]
            return principal

        def anonymous(realm, authid, details):
            return {"role": "guest", "extra": {"welcome": "to " + realm}}

        await self.register(authenticate, "com.example.authenticate")
        await self.register(anonymous, "com.example.anonymous")


class Authorizer(ApplicationSession):
    async def onJoin(self, details):
        await self.register(self.authorize, "com.example.authorize")

    async def authorize(self, session, uri, action, options):
        if options.get("match", "exact") != "exact":
            return uri.startswith("com.example.public.")
        if uri == "com.example.slow":
            await asyncio.sleep(60)
        if uri == "com.example.broken":
            return "yes"
        if uri == "com.example.public.disclosed" and action == "publish":
            return {"allow": True, "disclose": True}
        if uri.startswith("com.example.public."):
            return {"allow": True, "cache": True}
        if uri.startswith("com.example.mine." + session["authid"] + "."):
            return True
        if action == "call" and uri in ("wamp.session.add_testament", "wamp.session.flush_testaments"):
            # Testaments (MQTT wills among them); their topics are asked about as publications.
            return True
        return False


async def main():
    url, serializer = sys.argv[1], sys.argv[2]
    await start_component(url, serializer, "auth", Authenticator)
    await start_component(url, serializer, "auth", Authorizer)
    print("ready", flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
