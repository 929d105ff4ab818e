//! Property tests: arbitrary payloads round-trip through every serializer and across them (also through chains of
//! all three); arbitrary, CBOR-like and mutated bytes never make a decoder panic, and whatever a decoder accepts
//! re-encodes to an equal message; CBOR written with indefinite lengths, chunked strings and tags (by an encoder
//! in this file, independent of the codec's writer) reads back as the value it encodes.
mod common;

use common::{encode, model, whole};
use kreisel_codec::{Dict, Field, Id, Message, Payload, RawValue, Serializer, Value};
use proptest::prelude::*;

/// Strings, except those starting with U+0000: in JSON such a string followed by valid base64 *is* binary by the
/// WAMP convention, so it cannot round-trip as a string (`"\0"` alone is empty binary).
fn text() -> impl Strategy<Value = String> {
    any::<String>().prop_filter("no leading NUL (JSON binary convention)", |s| {
        !s.starts_with('\0')
    })
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::UInt),
        (i64::MIN..0).prop_map(Value::Int),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::Float),
        prop_oneof![
            Just(0.0),
            Just(1.0),
            Just(-1.0),
            Just(1e300),
            Just(5e-324),
            Just(0.1)
        ]
        .prop_map(Value::Float),
        text().prop_map(Value::Str),
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(Value::Bytes),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
            // Keys are arbitrary strings: they are never read as binary.
            proptest::collection::vec((any::<String>(), inner), 0..6).prop_map(Value::Dict),
        ]
    })
}

fn event<'a>(details: &'a Value, args: &'a Value, kwargs: &'a Value) -> Message<'a> {
    Message::Event {
        subscription: Id::FIRST,
        publication: Id::new(1 << 53).expect("valid ID"),
        details: Dict::Value(details),
        payload: Payload {
            args: Some(Field::Value(args)),
            kwargs: Some(Field::Value(kwargs)),
        },
    }
}

/// The payload of a decoded EVENT as owned values.
fn payload(msg: &Message<'_>) -> (Value, Value, Value) {
    let Message::Event {
        details, payload, ..
    } = msg
    else {
        panic!("EVENT expected, got {msg:?}")
    };
    let raw = |f: Option<Field<'_>>| {
        f.and_then(|f| f.as_raw())
            .expect("decoded payloads are raw")
            .to_value()
    };
    (details.to_value(), raw(payload.args), raw(payload.kwargs))
}

/// `v` with non-finite floats as `null`: JSON has no form for them (the writer emits `null`), and NaN is unequal
/// to itself. Only MessagePack input (or a JSON number beyond the f64 range) holds them.
fn finite(v: &Value) -> Value {
    match v {
        Value::Float(f) if !f.is_finite() => Value::Null,
        Value::List(items) => Value::List(items.iter().map(finite).collect()),
        Value::Dict(entries) => Value::Dict(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), finite(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Decodes anything without panicking; whatever decodes must re-encode, in every serializer, to a message that
/// decodes to the same model, and every raw value in it must be readable.
fn decode_anything(ser: Serializer, bytes: &[u8]) {
    let _ = RawValue::parse(ser, bytes).map(|raw| raw.to_value());
    let Ok(msg) = ser.decode(bytes) else { return };
    let expected = finite(&model(&msg));
    for to in Serializer::ALL {
        let out = encode(to, &msg);
        let again = to
            .decode(&out)
            .unwrap_or_else(|e| panic!("{ser:?} -> {to:?}: accepted input re-encodes badly: {e}"));
        assert_eq!(finite(&model(&again)), expected, "{ser:?} -> {to:?}");
    }
}

/// CBOR for `v`, written independently of the codec: definite or indefinite lengths, whole or chunked strings,
/// with or without tags, and integers and floats in any valid width, as the bits of `choices` say (cycled).
fn cbor(v: &Value, choices: &mut impl Iterator<Item = bool>, out: &mut Vec<u8>) {
    let mut pick = || choices.next().unwrap_or(false);
    // A head with argument `n`, in the shortest form or (sometimes) a longer one; CBOR allows both.
    let head = |major: u8, n: u64, long: bool, out: &mut Vec<u8>| {
        let m = major << 5;
        if long {
            out.push(m | 27);
            out.extend(n.to_be_bytes());
        } else if n < 24 {
            out.push(m | n as u8);
        } else if n <= 0xff {
            out.extend([m | 24, n as u8]);
        } else if n <= 0xffff {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            out.push(m | 26);
            out.extend((n as u32).to_be_bytes());
        } else {
            out.push(m | 27);
            out.extend(n.to_be_bytes());
        }
    };
    if pick() && pick() {
        // A tag (self-described CBOR, or epoch time): transparent.
        out.extend(if pick() {
            &[0xd9, 0xd9, 0xf7][..]
        } else {
            &[0xc1]
        });
    }
    match v {
        Value::Null => out.push(if pick() { 0xf6 } else { 0xf7 }),
        Value::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
        Value::UInt(n) => head(0, *n, pick(), out),
        Value::Int(n) => head(1, n.unsigned_abs() - 1, pick(), out),
        Value::Float(f) => {
            if f64::from(*f as f32) == *f && pick() {
                out.push(0xfa);
                out.extend((*f as f32).to_be_bytes());
            } else {
                out.push(0xfb);
                out.extend(f.to_be_bytes());
            }
        }
        Value::Str(text) => string(3, text.as_bytes(), pick(), out, &head),
        Value::Bytes(bytes) => string(2, bytes, pick(), out, &head),
        Value::List(items) => {
            let indefinite = pick();
            if indefinite {
                out.push(0x9f);
            } else {
                head(4, items.len() as u64, false, out);
            }
            for item in items {
                cbor(item, choices, out);
            }
            if indefinite {
                out.push(0xff);
            }
        }
        Value::Dict(entries) => {
            let indefinite = pick();
            if indefinite {
                out.push(0xbf);
            } else {
                head(5, entries.len() as u64, false, out);
            }
            for (key, value) in entries {
                cbor(&Value::Str(key.clone()), choices, out);
                cbor(value, choices, out);
            }
            if indefinite {
                out.push(0xff);
            }
        }
    }
}

/// A string of major type 2 or 3, whole or in chunks (text chunks split only at character boundaries).
fn string(
    major: u8,
    bytes: &[u8],
    chunked: bool,
    out: &mut Vec<u8>,
    head: &impl Fn(u8, u64, bool, &mut Vec<u8>),
) {
    if !chunked {
        head(major, bytes.len() as u64, false, out);
        out.extend_from_slice(bytes);
        return;
    }
    out.push(major << 5 | 31);
    let mut rest = bytes;
    while !rest.is_empty() {
        let mut at = rest.len().div_ceil(2);
        if major == 3 {
            while std::str::from_utf8(&rest[..at]).is_err() {
                at += 1;
            }
        }
        head(major, at as u64, false, out);
        out.extend_from_slice(&rest[..at]);
        rest = &rest[at..];
    }
    out.push(0xff);
}

/// Fragments that CBOR input is made of (heads of every kind, breaks, tags), for structured fuzzing.
fn cbor_fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(vec![0x9f]),
        Just(vec![0xbf]),
        Just(vec![0xff]),
        Just(vec![0x5f]),
        Just(vec![0x7f]),
        (0x80u8..0x86).prop_map(|b| vec![b]),
        (0xa0u8..0xa3).prop_map(|b| vec![b]),
        Just(vec![0x61, b'a']),
        Just(vec![0x62, 0xc3, 0xa9]),
        any::<u8>().prop_map(|b| vec![0x41, b]),
        Just(vec![0xc1]),
        Just(vec![0xd9, 0xd9, 0xf7]),
        (any::<u8>(), any::<u8>()).prop_map(|(a, b)| vec![0xf9, a, b]),
        Just(vec![0x18, 0x24]),
        Just(vec![0x01]),
        Just(vec![0x20]),
        Just(vec![0xf6]),
        Just(vec![0xf7]),
        Just(vec![0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        Just(vec![0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        any::<u8>().prop_map(|b| vec![b]),
    ]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

proptest! {
    // 512 cases by default; `PROPTEST_CASES` overrides (e.g. for a longer fuzzing run).
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn payload_round_trips(
        args in proptest::collection::vec(value(), 0..6),
        kwargs in proptest::collection::vec((any::<String>(), value()), 0..6),
        details in proptest::collection::vec((any::<String>(), value()), 0..3),
    ) {
        let (args, kwargs, details) = (Value::List(args), Value::Dict(kwargs), Value::Dict(details));
        let msg = event(&details, &args, &kwargs);
        let expected = (details.clone(), args.clone(), kwargs.clone());
        for ser in Serializer::ALL {
            let bytes = encode(ser, &msg);
            let decoded = ser.decode(&bytes).unwrap_or_else(|e| panic!("{ser:?}: {e}"));
            prop_assert_eq!(payload(&decoded), expected.clone(), "{:?}", ser);
            prop_assert_eq!(whole(ser, &bytes), model(&msg));
            // Across serializers, through the raw spans of the decoded message.
            for to in Serializer::ALL {
                let out = encode(to, &decoded);
                let again = to.decode(&out).unwrap_or_else(|e| panic!("{ser:?} -> {to:?}: {e}"));
                prop_assert_eq!(payload(&again), expected.clone(), "{:?} -> {:?}", ser, to);
            }
        }
        // JSON text is JSON for an independent parser.
        let text = encode(Serializer::Json, &msg);
        prop_assert!(serde_json::from_slice::<serde_json::Value>(&text).is_ok());
    }

    #[test]
    fn chains_of_serializers_keep_the_payload(
        args in proptest::collection::vec(value(), 0..6),
        kwargs in proptest::collection::vec((any::<String>(), value()), 0..4),
    ) {
        let (details, args, kwargs) = (Value::dict(), Value::List(args), Value::Dict(kwargs));
        let msg = event(&details, &args, &kwargs);
        let expected = (details.clone(), args.clone(), kwargs.clone());
        // JSON -> CBOR -> MessagePack -> JSON, and every other order of the three, each hop transcoding the raw
        // spans the previous hop decoded.
        use Serializer::{Cbor, Json, MsgPack};
        for chain in [
            [Json, Cbor, MsgPack, Json],
            [Json, MsgPack, Cbor, Json],
            [Cbor, Json, MsgPack, Cbor],
            [Cbor, MsgPack, Json, Cbor],
            [MsgPack, Json, Cbor, MsgPack],
            [MsgPack, Cbor, Json, MsgPack],
        ] {
            let first = encode(chain[0], &msg);
            let mut bytes = first.clone();
            for hop in chain.windows(2) {
                let decoded = hop[0].decode(&bytes).unwrap_or_else(|e| panic!("{chain:?} {hop:?}: {e}"));
                prop_assert_eq!(payload(&decoded), expected.clone(), "{:?} at {:?}", chain, hop[0]);
                bytes = encode(hop[1], &decoded);
            }
            // Back in the first serializer: the same bytes.
            prop_assert_eq!(&bytes, &first, "{:?}", chain);
        }
    }

    #[test]
    fn cbor_in_any_valid_form_reads_back(
        v in value(),
        choices in proptest::collection::vec(any::<bool>(), 1..64),
    ) {
        let mut choices = choices.into_iter().cycle();
        let mut bytes = Vec::new();
        cbor(&v, &mut choices, &mut bytes);
        let raw = RawValue::parse(Serializer::Cbor, &bytes)
            .unwrap_or_else(|e| panic!("{bytes:02x?}: {e}"));
        prop_assert_eq!(raw.to_value(), v.clone());
        // As the payload of a message, decoded and transcoded to the other serializers.
        let mut message = vec![0x9f, 0x18, 0x24, 0x01, 0x02, 0xa0, 0x9f];
        message.extend_from_slice(&bytes);
        message.extend([0xff, 0xa0, 0xff]);
        let msg = Serializer::Cbor.decode(&message).unwrap_or_else(|e| panic!("{message:02x?}: {e}"));
        prop_assert_eq!(payload(&msg).1, Value::List(vec![v.clone()]));
        for to in Serializer::ALL {
            let out = encode(to, &msg);
            let again = to.decode(&out).unwrap_or_else(|e| panic!("{to:?}: {e}"));
            prop_assert_eq!(payload(&again).1, Value::List(vec![v.clone()]), "{:?}", to);
        }
    }

    #[test]
    fn cbor_like_bytes_never_panic(
        fragments in proptest::collection::vec(cbor_fragment(), 0..48),
        as_event in any::<bool>(),
    ) {
        let mut bytes = if as_event { vec![0x9f, 0x18, 0x24, 0x01, 0x02, 0xa0] } else { Vec::new() };
        bytes.extend(fragments.concat());
        decode_anything(Serializer::Cbor, &bytes);
        // Split at every point, as a decoder sees a frame cut short.
        for cut in 0..bytes.len() {
            decode_anything(Serializer::Cbor, &bytes[..cut]);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        for ser in Serializer::ALL {
            decode_anything(ser, &bytes);
        }
    }

    #[test]
    fn arbitrary_json_like_text_never_panics(
        text in r#"[\[\]{}",:0-9a-z\\. -]{0,64}"#,
    ) {
        decode_anything(Serializer::Json, text.as_bytes());
        decode_anything(Serializer::Json, format!("[36,1,2,{{}},[{text}]]").as_bytes());
    }

    #[test]
    fn mutated_messages_never_panic(
        args in proptest::collection::vec(value(), 0..4),
        mutations in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let (details, args, kwargs) = (Value::dict(), Value::List(args), Value::dict().with("k", 1u64));
        let msg = event(&details, &args, &kwargs);
        for ser in Serializer::ALL {
            let mut bytes = encode(ser, &msg);
            for (at, byte) in &mutations {
                let i = at.index(bytes.len());
                bytes[i] = *byte;
            }
            decode_anything(ser, &bytes);
            // Split at an arbitrary point: a prefix alone is never a message.
            let prefix = &bytes[..cut.index(bytes.len())];
            decode_anything(ser, prefix);
        }
    }
}
