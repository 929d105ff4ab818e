#!/usr/bin/env python3
"""Regenerates engine/tests/data/scram_vectors.json: WAMP-SCRAM values computed by autobahn-python's own code (and
by argon2-cffi, passlib and hashlib for the parts autobahn does not cover), which the unit tests of
engine/src/scram.rs check kreisel's implementation against.

    python3 -m venv target/scram-venv
    target/scram-venv/bin/pip install -r tests/interop/scram-requirements.txt
    target/scram-venv/bin/python tests/interop/scram_vectors.py > engine/tests/data/scram_vectors.json

Deterministic: every nonce and salt is fixed here, so running it again prints the same file (`git diff` after
regenerating shows any change). It asserts what it relies on (autobahn has SCRAM support; autobahn accepts the
recorded server signature and refuses a tampered one) and stops with an AssertionError otherwise.

What each section is:
- credentials: autobahn.wamp.auth.derive_scram_credential(email, password, salt) as it is (kdf "argon2id-13",
  4096 passes, 512 KiB, salt SHA-256(email)[:16] when none is given), printed as it returns it.
- exchanges: autobahn's client, autobahn.wamp.auth.AuthScram, answering a challenge built the way crossbar.io's
  router builds it (crossbar/router/auth/scram.py: nonce = base64(client nonce octets + 16 router octets), salt in
  base64, kdf/iterations/memory from the principal). `signature` is what AuthScram.on_challenge returned;
  `auth_message` is the AuthMessage it signed (its _auth_message). `scram_server_signature` is
  HMAC(HMAC(SaltedPassword, "Server Key"), AuthMessage) from AuthScram's own SaltedPassword, and is only printed
  after AuthScram.on_welcome accepted it (and refused it with one bit flipped): it is the value a router must put
  into WELCOME for autobahn to accept the session.
- argon2id: argon2.low_level.hash_secret_raw (the reference C implementation, via argon2-cffi): Argon2id v1.3,
  parallelism 1, 32 octets, the password normalized with passlib's saslprep as the spec's "argon2id13" wants.
- pbkdf2: hashlib.pbkdf2_hmac("sha256", saslprep(password), salt, iterations, 32), the spec's "pbkdf2".
- saslprep: passlib.utils.saslprep (what autobahn applies to the authid), or the error it raised.
"""

import base64
import hashlib
import hmac
import json
import sys
from importlib.metadata import version

from argon2.low_level import Type, hash_secret_raw
from autobahn.wamp import auth
from autobahn.wamp.types import Challenge
from passlib.utils import saslprep

assert auth.HAS_ARGON, "autobahn without argon2-cffi/passlib: install tests/interop/scram-requirements.txt"


class _Log:
    def __init__(self):
        self.lines = []

    def info(self, *args, **kwargs):
        self.lines.append(("info", args))

    def error(self, *args, **kwargs):
        self.lines.append(("error", args))


class _Session:
    """What AuthScram.on_challenge/on_welcome use of a session: its log."""

    def __init__(self):
        self.log = _Log()


def b64(octets):
    return base64.b64encode(octets).decode("ascii")


def credentials():
    out = []
    for email, password, salt in [
        ("alice@example.com", "correct horse battery staple", None),
        ("bob@example.com", "pässwörd ✓", bytes(range(16))),
    ]:
        credential = auth.derive_scram_credential(email, password, salt)
        out.append(
            {
                "email": email,
                "password": password,
                "salt_given": None if salt is None else salt.hex(),
                "credential": credential,
            }
        )
    return out


def exchange(authid, password, client_nonce, server_nonce, kdf, salt, iterations, memory):
    """One login of autobahn's AuthScram against a challenge shaped like crossbar's."""
    client = auth.AuthScram(authid=authid, password=password)
    # AuthScram draws its nonce from os.urandom the first time `authextra` is read; set it first to fix it.
    client._client_nonce = b64(client_nonce)
    hello_authextra = client.authextra
    extra = {
        "nonce": b64(client_nonce + server_nonce),
        "kdf": kdf,
        "salt": b64(salt),
        "iterations": iterations,
        "memory": memory,
    }
    session = _Session()
    signature = client.on_challenge(session, Challenge("scram", extra))
    signature = signature.decode("ascii") if isinstance(signature, bytes) else signature
    server_key = hmac.new(client._salted_password, b"Server Key", hashlib.sha256).digest()
    server_signature = hmac.new(server_key, client._auth_message, hashlib.sha256).digest()
    accepted = client.on_welcome(session, {"scram_server_signature": b64(server_signature)})
    assert accepted is None, f"autobahn refused the server signature: {accepted}"
    tampered = bytes([server_signature[0] ^ 1]) + server_signature[1:]
    refused = client.on_welcome(session, {"scram_server_signature": b64(tampered)})
    assert refused is not None, "autobahn accepted a tampered server signature"
    return {
        "authid": authid,
        "password": password,
        "hello_authextra": hello_authextra,
        "server_nonce": server_nonce.hex(),
        "challenge": extra,
        "signature": signature,
        "auth_message": client._auth_message.decode("ascii"),
        "scram_server_signature": b64(server_signature),
    }


def exchanges(creds):
    out = []
    # 1. The first derived credential (autobahn's defaults), authid "alice".
    cred = creds[0]["credential"]
    x = exchange(
        "alice",
        creds[0]["password"],
        bytes(range(100, 116)),
        bytes(range(200, 216)),
        cred["kdf"],
        bytes.fromhex(cred["salt"]),
        cred["iterations"],
        cred["memory"],
    )
    x["credential"] = cred
    out.append(x)
    # 2. Small cost parameters, an authid that SASLprep changes (soft hyphen mapped to nothing), a non-ASCII password
    #    (autobahn does not normalize it). No stored credential: the test derives it from the password.
    out.append(
        exchange(
            "I\u00adX",
            "pässwörd ✓",
            bytes(range(16)),
            bytes(range(16, 32)),
            "argon2id-13",
            b"saltsaltsaltsalt",
            3,
            64,
        )
    )
    # 3. An authid with "," and "=" (autobahn and crossbar do not escape them), a 32-octet client nonce.
    out.append(
        exchange(
            "a=b,c",
            "pencil",
            bytes(range(32)),
            bytes([0xFF] * 16),
            "argon2id-13",
            bytes(range(8)),
            1,
            8,
        )
    )
    return out


def argon2id():
    out = []
    for password, salt, iterations, memory in [
        ("password", b"somesalt", 2, 64),
        ("pencil", bytes(range(16)), 1, 8),
        ("I\u00adX \u2168", bytes(range(8, 40)), 3, 256),
    ]:
        normalized = saslprep(password)
        raw = hash_secret_raw(
            secret=normalized.encode("utf8"),
            salt=salt,
            time_cost=iterations,
            memory_cost=memory,
            parallelism=1,
            hash_len=32,
            type=Type.ID,
            version=19,
        )
        out.append(
            {
                "password": password,
                "normalized": normalized,
                "salt": salt.hex(),
                "iterations": iterations,
                "memory": memory,
                "hash": raw.hex(),
            }
        )
    return out


def pbkdf2():
    out = []
    for password, salt, iterations in [
        ("pencil", base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096),
        ("\u2168 pass\u00adword", bytes(range(12)), 10),
    ]:
        normalized = saslprep(password)
        derived = hashlib.pbkdf2_hmac("sha256", normalized.encode("utf8"), salt, iterations, 32)
        out.append(
            {
                "password": password,
                "normalized": normalized,
                "salt": salt.hex(),
                "iterations": iterations,
                "hash": derived.hex(),
            }
        )
    return out


def saslprep_cases():
    out = []
    for text in [
        "user",
        "I\u00adX",
        "\u00aa",
        "\u2168",
        "user\u2003name",
        "a\u200bb",
        "\ufb01x",
        "Ju\u0308rgen",
        "J\u00fcrgen",
        "\u0627\u0031\u0628",
        "\u0627\u0031",
        "\u0007",
        "a\u007fb",
        "\ue000",
        "\U000e0001",
        "\u0221",
    ]:
        try:
            out.append({"input": text, "output": saslprep(text)})
        except ValueError as e:
            out.append({"input": text, "output": None, "error": str(e)})
    return out


def main():
    creds = credentials()
    doc = {
        "generator": "tests/interop/scram_vectors.py",
        "versions": {name: version(name) for name in ["autobahn", "argon2-cffi", "passlib"]},
        "python": sys.version.split()[0],
        "credentials": creds,
        "exchanges": exchanges(creds),
        "argon2id": argon2id(),
        "pbkdf2": pbkdf2(),
        "saslprep": saslprep_cases(),
    }
    json.dump(doc, sys.stdout, indent=1, ensure_ascii=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
