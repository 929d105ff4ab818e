"""Payloads exercising what serializers disagree on, for exact-equality checks (see common.mismatch)."""


def nested(depth):
    """A list/dict nest `depth` levels deep (kreisel allows 64 levels per message; the WAMP message adds 2)."""
    value = "bottom"
    for level in range(depth):
        value = [level, value] if level % 2 else {"level": level, "inner": value}
    return value


def ints(serializer):
    """Integers every serializer carries; 64-bit extremes only on the binary ones (JSON peers such as browsers
    cannot represent integers beyond 2^53)."""
    values = [0, 1, -1, 127, 128, -32, -33, 255, 256, 65535, 65536, 2**31 - 1, -(2**31), 2**32, 2**53, -(2**53)]
    if serializer != "json":
        values += [2**63 - 1, -(2**63), 2**64 - 1]
    return values


FLOATS = [1.5, -0.25, 0.1, 1.0, 0.0, -0.0, 1e300, -2.5e-300, 3.141592653589793, 2.0**60]

STRINGS = [
    "",
    "ascii",
    "ü€ and 😀",  # BMP and astral
    "𝄞𝕏🇩🇪👩‍👩‍👧",  # astral, flags and ZWJ sequences
    "quote \" backslash \\ slash / newline \n tab \t",
    "controls \x01\x1f\x7f and a NUL \x00 inside",
    "separators \u2028\u2029 BOM \ufeff",
]

BINARIES = [b"", b"\x00", b"\x00\x01\xfe\xff", bytes(range(256)), "ü😀".encode("utf-8")]


def args(serializer):
    return [
        1,
        "ü€ and 😀",
        {"n": [None, True, False, 1.5, -7]},
        ints(serializer),
        FLOATS,
        STRINGS,
        BINARIES,
        [],
        {},
        None,
        True,
        False,
        nested(20),
    ]


def kwargs(serializer):
    return {
        "k": "v",
        "ключ": "значение",
        "😀": "astral key",
        "": "empty key",
        "nested": {"list": [1, [2, [3, {"deep": [b"\xca\xfe"]}]]]},
        "bin": b"\xca\xfe",
        "big": ints(serializer)[-1],
        "float": 0.1,
        "none": None,
        "yes": True,
    }
