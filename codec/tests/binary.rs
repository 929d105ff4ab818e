//! JSON binary strings (`"\u0000" + base64`) transcoded to MessagePack and CBOR: valid base64 becomes `bin` / a byte
//! string, anything else stays the string it was; JSON to JSON keeps the text unchanged.

use kreisel_codec::{transcode, RawValue, Serializer, Value};

fn transcoded(json: &str, to: Serializer) -> Value {
    let raw = RawValue::parse(Serializer::Json, json.as_bytes()).unwrap();
    let mut out = Vec::new();
    transcode(raw, to, &mut out);
    let value = RawValue::parse(to, &out)
        .unwrap_or_else(|e| panic!("invalid {to:?}: {e}"))
        .to_value();
    // Back to JSON: the same binary text, or the same string.
    let mut back = Vec::new();
    transcode(
        RawValue::parse(to, &out).unwrap(),
        Serializer::Json,
        &mut back,
    );
    assert_eq!(
        RawValue::parse(Serializer::Json, &back).unwrap().to_value(),
        RawValue::parse(Serializer::Json, json.as_bytes())
            .unwrap()
            .to_value()
    );
    value
}

/// The value as MessagePack and as CBOR read it, which must agree.
fn to_msgpack(json: &str) -> Value {
    let packed = transcoded(json, Serializer::MsgPack);
    assert_eq!(
        transcoded(json, Serializer::Cbor),
        packed,
        "CBOR and MessagePack differ: {json}"
    );
    packed
}

#[test]
fn valid_base64_becomes_bin_and_invalid_stays_a_string() {
    assert_eq!(
        to_msgpack(r#"["\u0000AQID"]"#),
        Value::List(vec![Value::Bytes(vec![1, 2, 3])])
    );
    assert_eq!(
        to_msgpack(r#"["\u0000AQI="]"#),
        Value::List(vec![Value::Bytes(vec![1, 2])])
    );
    assert_eq!(
        to_msgpack(r#"["\u0000"]"#),
        Value::List(vec![Value::Bytes(vec![])])
    );
    for invalid in ["\u{0}abc", "\u{0}AQ=D", "\u{0}A===", "\u{0}****"] {
        let json = serde_json::to_string(&vec![invalid]).unwrap();
        assert_eq!(
            to_msgpack(&json),
            Value::List(vec![Value::Str(invalid.into())]),
            "{json}"
        );
    }
}

#[test]
fn json_to_json_keeps_binary_text() {
    let raw = RawValue::parse(Serializer::Json, br#"["\u0000AQID",1]"#).unwrap();
    let mut out = Vec::new();
    transcode(raw, Serializer::Json, &mut out);
    assert_eq!(out, br#"["\u0000AQID",1]"#);
}
