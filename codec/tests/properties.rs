//! Property tests: arbitrary payloads round-trip through both serializers and across them; arbitrary and mutated
//! bytes never make a decoder panic, and whatever a decoder accepts re-encodes to an equal message.
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
