"""autobahn-python against kreisel: WAMP-SCRAM with autobahn's own client (AuthScram, the `scram` method crossbar.io
speaks, Argon2id `argon2id-13`).

Usage: scram.py URL SERIALIZER CAROL_STORED_KEY|-   (the router has realm `scram`, configured by tests/tests/scram.rs;
`-` leaves carol out: her login costs the client seconds)

Checks: peter logs in with the right password (the credential has small Argon2 costs, as the CHALLENGE tells the
client) and autobahn accepts the router's server signature in WELCOME (AuthScram.on_welcome refuses a wrong one);
carol's credential is what autobahn's derive_scram_credential makes for her password (4096 passes over 512 KiB, the
same as `kreisel --derive-scram` prints) and she logs in with it; a wrong password, an unknown authid and a login
under another principal's authid are refused with wamp.error.authentication_failed; the role in WELCOME is the
principal's."""

import hashlib
import sys

from autobahn.wamp import auth

from common import Refused, close, connect_auth, run

URL, SERIALIZER = sys.argv[1], sys.argv[2]
CAROL_STORED_KEY = sys.argv[3]
REALM = "scram"


class _Quiet:
    """What AuthScram.on_welcome uses of a session: a log."""

    class log:
        @staticmethod
        def info(*args, **kwargs):
            pass

        @staticmethod
        def error(*args, **kwargs):
            pass


async def login(authid, password):
    """Joins as `authid` with autobahn's AuthScram; returns (session, details, what on_welcome said)."""
    scram = auth.AuthScram(authid=authid, password=password)
    checked = []

    def on_welcome(authextra):
        reason = scram.on_welcome(_Quiet(), authextra)
        checked.append(reason)
        return reason

    session, details = await connect_auth(
        URL, SERIALIZER, REALM, ["scram"], authid=authid, authextra=scram.authextra,
        on_challenge=lambda challenge: scram.on_challenge(None, challenge), on_welcome=on_welcome,
    )
    return session, details, checked


async def refused(check, what, authid, password):
    try:
        session, _, _ = await login(authid, password)
    except Refused as error:
        check.eq(f"{what}: ABORT", error.reason, "wamp.error.authentication_failed")
        return
    await close(session)
    raise AssertionError(f"{what}: joined, expected ABORT")


async def main(check):
    check.true("autobahn has SCRAM support (argon2-cffi, passlib)", auth.HAS_ARGON)
    peter, details, checked = await login("peter", "hunter2")
    check.eq("WELCOME authid", details.authid, "peter")
    check.eq("WELCOME authrole", details.authrole, "user")
    check.eq("WELCOME authmethod", details.authmethod, "scram")
    check.eq("WELCOME authprovider", details.authprovider, "static")
    check.eq("autobahn verified the router's server signature", checked, [None])
    check.true("WELCOME authextra carries it", "scram_server_signature" in (details.authextra or {}))

    sessions = [peter]
    if CAROL_STORED_KEY != "-":
        salt = hashlib.sha256(b"carol").digest()[:16]
        credential = auth.derive_scram_credential("carol", "pencil", salt)
        check.eq("derive_scram_credential gives the stored key kreisel derived", credential["stored-key"],
                 CAROL_STORED_KEY)
        carol, details, checked = await login("carol", "pencil")
        check.eq("carol (autobahn's default costs) joins", (details.authid, checked), ("carol", [None]))
        sessions.append(carol)

    await refused(check, "wrong password", "peter", "hunter3")
    await refused(check, "unknown authid", "mallory", "hunter2")
    await refused(check, "carol's password for peter", "peter", "pencil")
    await close(*sessions)


run("scram", main, timeout=40)
