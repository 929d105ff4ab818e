//! JSON binary strings (`"\u0000" + base64`) transcoded to MessagePack: valid base64 becomes `bin`, anything else
//! stays the string it was; JSON to JSON keeps the text unchanged.

use kreisel_codec::{transcode, RawValue, Serializer, Value};

fn to_msgpack(json: &str) -> Value {
    let raw = RawValue::parse(Serializer::Json, json.as_bytes()).unwrap();
    let mut out = Vec::new();
    transcode(raw, Serializer::MsgPack, &mut out);
    RawValue::parse(Serializer::MsgPack, &out)
        .expect("valid MessagePack")
        .to_value()
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
