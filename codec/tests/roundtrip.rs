//! Round trips of every message type in every serializer, across serializers, and of the values that are easy to
//! get wrong: binary, Unicode, large integers, floats, nesting.
mod common;

use std::borrow::Cow;
use std::collections::HashSet;

use common::{encode, from_json, hex, model, normalize, to_cbor, to_msgpack, whole};
use kreisel_codec::{
    Dict, Field, Id, Kind, Message, MessageType, Payload, RawValue, Serializer, Value, ID_MAX,
};
use serde_json::json;

fn id(n: u64) -> Id {
    Id::new(n).expect("valid ID")
}

fn tricky_numbers() -> Value {
    Value::List(vec![
        Value::UInt(u64::MAX),
        Value::Int(i64::MIN),
        Value::UInt(1 << 53),
        Value::UInt(0),
        Value::Int(-1),
        Value::Float(1.0),
        Value::Float(-0.5),
        Value::Float(1e300),
        Value::Float(5e-324),
        Value::Float(f64::MAX),
        Value::Float(0.1),
    ])
}

/// Checks one message in every serializer: the JSON text against `expected` (read by `serde_json`), decoding back
/// to the same model, the generic value reader, and re-encoding from every decoded form into every serializer.
fn check(msg: &Message<'_>, expected: serde_json::Value) {
    let expected_model = model(msg);
    assert_eq!(
        normalize(&from_json(&expected)),
        normalize(&expected_model),
        "{:?}: the test's own expectation",
        msg.message_type()
    );
    let text = encode(Serializer::Json, msg);
    let parsed: serde_json::Value = serde_json::from_slice(&text).unwrap_or_else(|e| {
        panic!(
            "our JSON is not JSON ({e}): {}",
            String::from_utf8_lossy(&text)
        )
    });
    assert_eq!(
        parsed,
        expected,
        "{:?}: JSON text {}",
        msg.message_type(),
        String::from_utf8_lossy(&text)
    );
    for ser in Serializer::ALL {
        let bytes = encode(ser, msg);
        assert_eq!(
            whole(ser, &bytes),
            expected_model,
            "{ser:?} {:?}: generic reader",
            msg.message_type()
        );
        let decoded = ser
            .decode(&bytes)
            .unwrap_or_else(|e| panic!("{ser:?} {:?}: {e}", msg.message_type()));
        assert_eq!(decoded.message_type(), msg.message_type());
        assert_eq!(
            model(&decoded),
            expected_model,
            "{ser:?} {:?}: decoded model",
            msg.message_type()
        );
        for to in Serializer::ALL {
            // Decoded fields are raw spans: copied when `to == ser`, transcoded otherwise.
            let again = encode(to, &decoded);
            let decoded_again = to
                .decode(&again)
                .unwrap_or_else(|e| panic!("{ser:?} -> {to:?}: {e}"));
            assert_eq!(
                model(&decoded_again),
                expected_model,
                "{ser:?} -> {to:?} {:?}",
                msg.message_type()
            );
            if to == ser {
                assert_eq!(
                    again, bytes,
                    "{ser:?}: re-encoding a decoded message is not byte-identical"
                );
            }
        }
    }
}

#[test]
fn every_message_type_round_trips() {
    let nested = Value::dict()
        .with(
            "list",
            Value::List(vec![Value::UInt(1), Value::Null, Value::from("x")]),
        )
        .with("neg", -5i64)
        .with("empty", Value::dict());
    let roles = Value::dict().with(
        "roles",
        Value::dict()
            .with("broker", Value::dict())
            .with("dealer", Value::dict()),
    );
    let ids = [Field::UInt(1), Field::UInt(2)];
    let options = [
        ("acknowledge", Field::Bool(true)),
        ("exclude", Field::List(&ids)),
        ("n", Field::Int(-3)),
        ("s", Field::Str("\u{e9}\"\\\n")),
        ("v", Field::Value(&nested)),
        ("d", Field::Dict(Dict::Fields(&[("inner", Field::UInt(7))]))),
    ];
    let subscriber = [("subscriber", Field::Dict(Dict::EMPTY))];
    let hello_details = [("roles", Field::Dict(Dict::Fields(&subscriber)))];
    let numbers = tricky_numbers();
    let binary = Value::List(vec![Value::Bytes(vec![1, 2, 3]), Value::Bytes(Vec::new())]);
    let kwargs = Value::dict()
        .with("k", "v")
        .with("bin", Value::Bytes(vec![0xff]));
    let list = [Field::Str("a"), Field::UInt(2)];
    let both = Payload {
        args: Some(Field::List(&list)),
        kwargs: Some(Field::Value(&kwargs)),
    };
    let kwargs_only = Payload {
        args: None,
        kwargs: Some(Field::Value(&kwargs)),
    };
    let args_only = Payload {
        args: Some(Field::Value(&numbers)),
        kwargs: None,
    };
    let binary_args = Payload {
        args: Some(Field::Value(&binary)),
        kwargs: None,
    };
    let options_json = json!({
        "acknowledge": true, "exclude": [1, 2], "n": -3, "s": "\u{e9}\"\\\n",
        "v": {"list": [1, null, "x"], "neg": -5, "empty": {}}, "d": {"inner": 7}
    });
    let numbers_json = json!([
        u64::MAX,
        i64::MIN,
        1u64 << 53,
        0,
        -1,
        1.0,
        -0.5,
        1e300,
        5e-324,
        f64::MAX,
        0.1
    ]);
    let kwargs_json = json!({"k": "v", "bin": "\u{0}/w=="});
    let opts = Dict::Fields(&options);
    let reason = "wamp.close.goodbye_and_out";

    let cases: Vec<(Message<'_>, serde_json::Value)> = vec![
        (
            Message::Hello {
                realm: "com.example".into(),
                details: Dict::Fields(&hello_details),
            },
            json!([1, "com.example", {"roles": {"subscriber": {}}}]),
        ),
        (
            Message::Welcome {
                session: id(ID_MAX),
                details: Dict::Value(&roles),
            },
            json!([2, ID_MAX, {"roles": {"broker": {}, "dealer": {}}}]),
        ),
        (
            Message::Abort {
                details: Dict::Fields(&[("message", Field::Str("no"))]),
                reason: "wamp.error.x".into(),
            },
            json!([3, {"message": "no"}, "wamp.error.x"]),
        ),
        (
            Message::Challenge {
                auth_method: "wampcra".into(),
                extra: Dict::Fields(&[("challenge", Field::Str("{\"a\":1}"))]),
            },
            json!([4, "wampcra", {"challenge": "{\"a\":1}"}]),
        ),
        (
            Message::Authenticate {
                signature: "c2ln".into(),
                extra: Dict::EMPTY,
            },
            json!([5, "c2ln", {}]),
        ),
        (
            Message::Goodbye {
                details: Dict::EMPTY,
                reason: reason.into(),
            },
            json!([6, {}, reason]),
        ),
        (
            Message::Error {
                request_type: 48,
                request: id(7),
                details: Dict::EMPTY,
                error: "com.app.error".into(),
                payload: both,
            },
            json!([8, 48, 7, {}, "com.app.error", ["a", 2], kwargs_json]),
        ),
        (
            Message::Publish {
                request: id(1),
                options: opts,
                topic: "com.topic".into(),
                payload: kwargs_only,
            },
            json!([16, 1, options_json, "com.topic", [], kwargs_json]),
        ),
        (
            Message::Published {
                request: id(1),
                publication: id(ID_MAX),
            },
            json!([17, 1, ID_MAX]),
        ),
        (
            Message::Subscribe {
                request: id(2),
                options: Dict::Fields(&[("match", Field::Str("prefix"))]),
                topic: "com.".into(),
            },
            json!([32, 2, {"match": "prefix"}, "com."]),
        ),
        (
            Message::Subscribed {
                request: id(2),
                subscription: id(3),
            },
            json!([33, 2, 3]),
        ),
        (
            Message::Unsubscribe {
                request: id(4),
                subscription: id(3),
            },
            json!([34, 4, 3]),
        ),
        (
            Message::Unsubscribed {
                request: id(4),
                details: None,
            },
            json!([35, 4]),
        ),
        (
            Message::Unsubscribed {
                request: id(4),
                details: Some(Dict::Fields(&[("reason", Field::Str("r"))])),
            },
            json!([35, 4, {"reason": "r"}]),
        ),
        (
            Message::Event {
                subscription: id(3),
                publication: id(9),
                details: Dict::EMPTY,
                payload: binary_args,
            },
            json!([36, 3, 9, {}, ["\u{0}AQID", "\u{0}"]]),
        ),
        (
            Message::Call {
                request: id(5),
                options: Dict::EMPTY,
                procedure: "com.proc".into(),
                payload: Payload::EMPTY,
            },
            json!([48, 5, {}, "com.proc"]),
        ),
        (
            Message::Cancel {
                request: id(5),
                options: Dict::Fields(&[("mode", Field::Str("kill"))]),
            },
            json!([49, 5, {"mode": "kill"}]),
        ),
        (
            Message::Result {
                request: id(5),
                details: Dict::EMPTY,
                payload: args_only,
            },
            json!([50, 5, {}, numbers_json]),
        ),
        (
            Message::Register {
                request: id(6),
                options: Dict::EMPTY,
                procedure: "com.proc".into(),
            },
            json!([64, 6, {}, "com.proc"]),
        ),
        (
            Message::Registered {
                request: id(6),
                registration: id(8),
            },
            json!([65, 6, 8]),
        ),
        (
            Message::Unregister {
                request: id(7),
                registration: id(8),
            },
            json!([66, 7, 8]),
        ),
        (
            Message::Unregistered {
                request: id(7),
                details: None,
            },
            json!([67, 7]),
        ),
        (
            Message::Unregistered {
                request: id(7),
                details: Some(Dict::EMPTY),
            },
            json!([67, 7, {}]),
        ),
        (
            Message::Invocation {
                request: id(10),
                registration: id(8),
                details: opts,
                payload: both,
            },
            json!([68, 10, 8, options_json, ["a", 2], kwargs_json]),
        ),
        (
            Message::Interrupt {
                request: id(10),
                options: Dict::EMPTY,
            },
            json!([69, 10, {}]),
        ),
        (
            Message::Yield {
                request: id(10),
                options: Dict::EMPTY,
                payload: kwargs_only,
            },
            json!([70, 10, {}, [], kwargs_json]),
        ),
    ];
    let mut seen = HashSet::new();
    for (msg, expected) in &cases {
        check(msg, expected.clone());
        seen.insert(msg.message_type());
    }
    assert_eq!(
        seen.len(),
        24,
        "every message type of the spec is covered: {seen:?}"
    );
}

/// JSON in, MessagePack out and back, through decoded (raw) messages only.
fn json_to_msgpack_to_json(text: &str) -> (Vec<u8>, Vec<u8>) {
    let msg = Serializer::Json
        .decode(text.as_bytes())
        .expect("JSON decodes");
    let packed = encode(Serializer::MsgPack, &msg);
    let unpacked = Serializer::MsgPack
        .decode(&packed)
        .expect("MessagePack decodes");
    assert_eq!(model(&unpacked), model(&msg));
    let back = encode(Serializer::Json, &unpacked);
    let again = Serializer::Json.decode(&back).expect("JSON decodes again");
    assert_eq!(model(&again), model(&msg));
    (packed, back)
}

#[test]
fn cross_serializer() {
    let text = r#"[36, 5, 6, {"publisher": 7, "nested": {"a": [1, [2, [3, {}]]]}}, [1.5, -2, "x", null, true, false, {"d": []}], {"k": [{}]}]"#;
    let (_, back) = json_to_msgpack_to_json(text);
    // Compact re-encoding of the same value.
    let expected: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&back).unwrap(),
        expected
    );

    // And MessagePack in first.
    let packed = to_msgpack(text);
    let msg = Serializer::MsgPack.decode(&packed).expect("decodes");
    let json = encode(Serializer::Json, &msg);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&json).unwrap(),
        expected
    );
    assert_eq!(
        encode(
            Serializer::MsgPack,
            &Serializer::Json.decode(&json).unwrap()
        ),
        packed
    );
    // And CBOR in first: to MessagePack and JSON and back.
    let cbor = to_cbor(text);
    let msg = Serializer::Cbor.decode(&cbor).expect("decodes");
    assert_eq!(encode(Serializer::MsgPack, &msg), packed);
    let json = encode(Serializer::Json, &msg);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&json).unwrap(),
        expected
    );
    assert_eq!(
        encode(Serializer::Cbor, &Serializer::Json.decode(&json).unwrap()),
        cbor
    );
}

#[test]
fn binary_converts_both_ways() {
    // JSON "\u0000" + base64 becomes MessagePack bin.
    let (packed, back) = json_to_msgpack_to_json(r#"[36,1,2,{},["\u0000AQID"],{"b":"\u0000"}]"#);
    assert!(
        packed.windows(5).any(|w| w == [0xc4, 0x03, 1, 2, 3]),
        "bin [1,2,3] in {packed:02x?}"
    );
    assert!(
        packed.windows(2).any(|w| w == [0xc4, 0x00]),
        "empty bin in {packed:02x?}"
    );
    assert_eq!(back, br#"[36,1,2,{},["\u0000AQID"],{"b":"\u0000"}]"#);

    // MessagePack bin becomes JSON "\u0000" + base64.
    let packed = [0x95, 0x24, 0x01, 0x02, 0x80, 0x91, 0xc4, 0x03, 1, 2, 3];
    let msg = Serializer::MsgPack.decode(&packed).unwrap();
    let Message::Event { payload, .. } = &msg else {
        panic!("EVENT expected")
    };
    let args = payload.args.and_then(|a| a.as_raw()).unwrap();
    let first = args.list().unwrap().next().unwrap();
    assert_eq!(first.kind(), Kind::Bin);
    assert_eq!(first.as_bytes().as_deref(), Some(&[1, 2, 3][..]));
    let json = encode(Serializer::Json, &msg);
    assert_eq!(json, br#"[36,1,2,{},["\u0000AQID"]]"#);
    let from_json = Serializer::Json.decode(&json).unwrap();
    assert_eq!(encode(Serializer::MsgPack, &from_json), packed);

    // JSON binary strings read as strings too (kind Str), and as bytes.
    let raw = RawValue::parse(Serializer::Json, br#""\u0000AQID""#).unwrap();
    assert_eq!(raw.kind(), Kind::Str);
    assert_eq!(raw.as_bytes().as_deref(), Some(&[1, 2, 3][..]));
    assert_eq!(raw.to_value(), Value::Bytes(vec![1, 2, 3]));
    // A NUL-prefixed string that is not base64 stays a string.
    let raw = RawValue::parse(Serializer::Json, br#""\u0000not base64!""#).unwrap();
    assert_eq!(raw.as_bytes(), None);
    assert_eq!(raw.to_value(), Value::Str("\0not base64!".into()));
}

#[test]
fn binary_converts_between_json_cbor_and_msgpack() {
    // JSON "\u0000" + base64 becomes a CBOR byte string (decoded straight into the output), and back.
    let text = r#"[36,1,2,{},["\u0000AQID","\u0000","x"],{"b":"\u0000/wA="}]"#;
    let msg = Serializer::Json.decode(text.as_bytes()).unwrap();
    let cbor = encode(Serializer::Cbor, &msg);
    assert_eq!(
        cbor,
        hex("86 1824 01 02 a0 83 43010203 40 6178 a1 6162 42ff00"),
        "{cbor:02x?}"
    );
    let from_cbor = Serializer::Cbor.decode(&cbor).unwrap();
    assert_eq!(encode(Serializer::Json, &from_cbor), text.as_bytes());
    // CBOR byte string <-> MessagePack bin, both ways, also for a chunked CBOR byte string.
    let packed = encode(Serializer::MsgPack, &from_cbor);
    assert!(packed.windows(5).any(|w| w == [0xc4, 0x03, 1, 2, 3]));
    assert_eq!(
        encode(
            Serializer::Cbor,
            &Serializer::MsgPack.decode(&packed).unwrap()
        ),
        cbor
    );
    let chunked = hex("85 1824 01 02 a0 81 5f 4101 420203 ff");
    let msg = Serializer::Cbor.decode(&chunked).unwrap();
    assert_eq!(
        encode(Serializer::Json, &msg),
        br#"[36,1,2,{},["\u0000AQID"]]"#
    );
    let Message::Event { payload, .. } = &msg else {
        panic!("EVENT expected")
    };
    let first = payload
        .args
        .and_then(|a| a.as_raw())
        .unwrap()
        .list()
        .unwrap()
        .next()
        .unwrap();
    assert_eq!(first.kind(), Kind::Bin);
    assert_eq!(first.as_bytes(), Some(Cow::Owned(vec![1, 2, 3])));
    // A NUL-prefixed JSON string that is not base64 stays a (CBOR text) string.
    let msg = Serializer::Json
        .decode(br#"[36,1,2,{},["\u0000not base64!"]]"#)
        .unwrap();
    let cbor = encode(Serializer::Cbor, &msg);
    let back = Serializer::Cbor.decode(&cbor).unwrap();
    let Message::Event { payload, .. } = &back else {
        panic!("EVENT expected")
    };
    let args = payload.args.and_then(|a| a.as_raw()).unwrap();
    assert_eq!(
        args.to_value(),
        Value::List(vec![Value::Str("\0not base64!".into())])
    );
}

#[test]
fn cbor_spans_are_borrowed_and_copied_verbatim() {
    // Definite strings are borrowed; a chunked URI is concatenated (owned), like an escaped JSON one.
    let plain = hex("84 1820 01 a0 6b636f6d2e6578616d706c65");
    let Message::Subscribe { topic, .. } = Serializer::Cbor.decode(&plain).unwrap() else {
        panic!("SUBSCRIBE expected")
    };
    assert!(matches!(topic, Cow::Borrowed("com.example")));
    let chunked = hex("84 1820 01 a0 7f 64636f6d2e 67 6578616d706c65 ff");
    let Message::Subscribe { topic, .. } = Serializer::Cbor.decode(&chunked).unwrap() else {
        panic!("SUBSCRIBE expected")
    };
    assert!(matches!(&topic, Cow::Owned(t) if t == "com.example"));
    // CBOR to CBOR copies spans byte for byte: tags, indefinite lengths and non-shortest heads survive; the
    // message array around them is rewritten with a definite length.
    let odd =
        hex("9f 1824 01 02 bf ff 9f c1 1a00000001 f93e00 7f 6161 ff ff bf 616b d9d9f7 f7 ff ff");
    let msg = Serializer::Cbor.decode(&odd).unwrap();
    let again = encode(Serializer::Cbor, &msg);
    assert_eq!(
        again,
        hex("86 1824 01 02 bf ff 9f c1 1a00000001 f93e00 7f 6161 ff ff bf 616b d9d9f7 f7 ff")
    );
    assert_eq!(
        encode(Serializer::Json, &msg),
        br#"[36,1,2,{},[1,1.5,"a"],{"k":null}]"#
    );
}

#[test]
fn unicode() {
    // Raw UTF-8 (BMP and astral) and escapes (BMP, surrogate pair) decode to the same strings.
    let text = "[32,1,{\"k\u{e9}y\":\"\u{65e5}\u{672c}\"},\"com.\u{e9}t\u{e9}.\u{1f600}\"]";
    let escaped = r#"[32,1,{"k\u00e9y":"\u65e5\u672C"},"com.\u00e9t\u00e9.\ud83d\ude00"]"#;
    let plain = Serializer::Json.decode(text.as_bytes()).unwrap();
    let unescaped = Serializer::Json.decode(escaped.as_bytes()).unwrap();
    assert_eq!(model(&plain), model(&unescaped));
    let (Message::Subscribe { topic: t1, .. }, Message::Subscribe { topic: t2, .. }) =
        (&plain, &unescaped)
    else {
        panic!("SUBSCRIBE expected")
    };
    assert_eq!(t1, "com.\u{e9}t\u{e9}.\u{1f600}");
    // Zero-copy unless an escape forces a copy.
    assert!(
        matches!(t1, Cow::Borrowed(_)),
        "an unescaped URI is borrowed"
    );
    assert!(matches!(t2, Cow::Owned(_)), "an escaped URI is owned");
    // Our JSON writes UTF-8 as is (raw spans, here the options, are copied verbatim with their escapes).
    let json = encode(Serializer::Json, &unescaped);
    assert!(json.ends_with("\"com.\u{e9}t\u{e9}.\u{1f600}\"]".as_bytes()));
    // MessagePack carries the same UTF-8, and back to JSON, everything is raw UTF-8.
    let packed = encode(Serializer::MsgPack, &unescaped);
    assert_eq!(
        encode(
            Serializer::Json,
            &Serializer::MsgPack.decode(&packed).unwrap()
        ),
        text.as_bytes()
    );
    let topic = "com.\u{e9}t\u{e9}.\u{1f600}".as_bytes();
    assert!(packed.windows(topic.len()).any(|w| w == topic));
    // So does CBOR.
    let cbor = encode(Serializer::Cbor, &unescaped);
    assert!(cbor.windows(topic.len()).any(|w| w == topic));
    assert_eq!(
        encode(Serializer::Json, &Serializer::Cbor.decode(&cbor).unwrap()),
        text.as_bytes()
    );
    let unpacked = Serializer::MsgPack.decode(&packed).unwrap();
    assert_eq!(model(&unpacked), model(&plain));
    // Control characters and quotes are escaped and come back.
    let tricky = "\u{0}\u{1}\u{1f}\u{7f}\"\\/\n\r\t\u{8}\u{c}\u{2028}";
    let msg = Message::Goodbye {
        details: Dict::EMPTY,
        reason: tricky.into(),
    };
    for ser in Serializer::ALL {
        let bytes = encode(ser, &msg);
        let Message::Goodbye { reason, .. } = ser.decode(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!(reason, tricky, "{ser:?}");
    }
    let json = encode(Serializer::Json, &msg);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&json).unwrap(),
        json!([6, {}, tricky])
    );
}

#[test]
fn numbers() {
    let numbers = tricky_numbers();
    for ser in Serializer::ALL {
        let msg = Message::Result {
            request: id(1),
            details: Dict::EMPTY,
            payload: Payload {
                args: Some(Field::Value(&numbers)),
                kwargs: None,
            },
        };
        let decoded_bytes = encode(ser, &msg);
        let decoded = ser.decode(&decoded_bytes).unwrap();
        let Message::Result { payload, .. } = &decoded else {
            panic!()
        };
        let args = payload.args.and_then(|a| a.as_raw()).unwrap();
        // Value equality distinguishes UInt(1) from Float(1.0): a float stays a float.
        assert_eq!(args.to_value(), numbers, "{ser:?}");
        let items: Vec<_> = args.list().unwrap().collect();
        assert_eq!(items[0].as_u64(), Some(u64::MAX));
        assert_eq!(items[0].as_i64(), None);
        assert_eq!(items[1].as_i64(), Some(i64::MIN));
        assert_eq!(items[1].as_u64(), None);
        assert_eq!(items[2].as_u64(), Some(1 << 53));
        assert_eq!(items[5].kind(), Kind::Float);
        assert_eq!(items[5].as_u64(), None);
        assert_eq!(items[5].as_f64(), Some(1.0));
        assert_eq!(items[4].kind(), Kind::Int);
    }
    let text = encode(
        Serializer::Json,
        &Message::Yield {
            request: id(1),
            options: Dict::EMPTY,
            payload: Payload {
                args: Some(Field::Value(&numbers)),
                kwargs: None,
            },
        },
    );
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains(",1.0,"), "1.0 stays a float in JSON: {text}");
    // Non-finite floats have no JSON form: null. MessagePack keeps them.
    let odd = Value::List(vec![Value::Float(f64::NAN), Value::Float(f64::INFINITY)]);
    let msg = Message::Yield {
        request: id(1),
        options: Dict::EMPTY,
        payload: Payload {
            args: Some(Field::Value(&odd)),
            kwargs: None,
        },
    };
    assert_eq!(encode(Serializer::Json, &msg), b"[70,1,{},[null,null]]");
    let packed = encode(Serializer::MsgPack, &msg);
    let Message::Yield { payload, .. } = Serializer::MsgPack.decode(&packed).unwrap() else {
        panic!()
    };
    let items: Vec<_> = payload
        .args
        .and_then(|a| a.as_raw())
        .unwrap()
        .list()
        .unwrap()
        .collect();
    assert!(items[0].as_f64().unwrap().is_nan());
    assert_eq!(items[1].as_f64(), Some(f64::INFINITY));
    // JSON integers beyond 64 bits read as floats; exponents and fractions are floats.
    let raw = RawValue::parse(
        Serializer::Json,
        b"[18446744073709551616, -9223372036854775809, 1e2, 2.50]",
    )
    .unwrap();
    assert_eq!(
        raw.to_value(),
        Value::List(vec![
            Value::Float(18446744073709551616.0),
            Value::Float(-9223372036854775809.0),
            Value::Float(100.0),
            Value::Float(2.5),
        ])
    );
    // CBOR: non-finite floats survive; negative integers below i64::MIN read as floats; integers in non-shortest
    // form, and half and single floats, widen.
    let cbor = encode(Serializer::Cbor, &msg);
    let Message::Yield { payload, .. } = Serializer::Cbor.decode(&cbor).unwrap() else {
        panic!()
    };
    let items: Vec<_> = payload
        .args
        .and_then(|a| a.as_raw())
        .unwrap()
        .list()
        .unwrap()
        .collect();
    assert!(items[0].as_f64().unwrap().is_nan());
    assert_eq!(items[1].as_f64(), Some(f64::INFINITY));
    let wide = hex("86 3bffffffffffffffff 1b0000000000000005 3a00000001 f93e00 fa3fc00000 f98000");
    let raw = RawValue::parse(Serializer::Cbor, &wide).unwrap();
    assert_eq!(
        raw.to_value(),
        Value::List(vec![
            Value::Float(-18446744073709551616.0),
            Value::UInt(5),
            Value::Int(-2),
            Value::Float(1.5),
            Value::Float(1.5),
            Value::Float(-0.0),
        ])
    );
    // MessagePack integers of any width and float32 widen.
    let packed = [
        0x94, 0xd0, 0x05, 0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xca, 0x3f, 0xc0,
        0, 0, 0xcc, 0xff,
    ];
    let raw = RawValue::parse(Serializer::MsgPack, &packed).unwrap();
    assert_eq!(
        raw.to_value(),
        Value::List(vec![
            Value::UInt(5),
            Value::Int(-2),
            Value::Float(1.5),
            Value::UInt(255)
        ])
    );
}

#[test]
fn ids_at_the_edges() {
    for ser in Serializer::ALL {
        let msg = Message::Published {
            request: Id::FIRST,
            publication: id(ID_MAX),
        };
        let bytes = encode(ser, &msg);
        let decoded = ser.decode(&bytes).unwrap();
        assert_eq!(decoded, msg, "{ser:?}");
    }
    assert_eq!(MessageType::from_code(36), Some(MessageType::Event));
}

#[test]
fn nested_and_accessors() {
    let text = br#" [ 16 , 1 , { "a" : { "b" : [ 1 , { "c" : null } ] } , "x" : true } , "t" , [ [ ] , { } ] ] "#;
    let msg = Serializer::Json.decode(text).unwrap();
    let Message::Publish {
        options, payload, ..
    } = &msg
    else {
        panic!()
    };
    assert_eq!(options.get("x").and_then(|f| f.as_bool()), Some(true));
    let a = options.get("a").and_then(|f| f.as_raw()).unwrap();
    assert_eq!(a.kind(), Kind::Dict);
    let b = a.get("b").unwrap();
    assert_eq!(b.list().unwrap().count(), 2);
    assert_eq!(
        b.list()
            .unwrap()
            .nth(1)
            .unwrap()
            .get("c")
            .map(|c| c.is_null()),
        Some(true)
    );
    assert!(!options.is_empty());
    let mut keys = Vec::new();
    options.for_each(|k, _| keys.push(k.to_owned()));
    assert_eq!(keys, ["a", "x"]);
    let args = payload.args.and_then(|f| f.as_raw()).unwrap();
    assert_eq!(
        args.to_value(),
        Value::List(vec![Value::List(vec![]), Value::dict()])
    );
    // Whitespace inside raw spans is kept on a same-serializer copy and dropped by transcoding.
    let packed = encode(Serializer::MsgPack, &msg);
    let back = encode(
        Serializer::Json,
        &Serializer::MsgPack.decode(&packed).unwrap(),
    );
    assert_eq!(
        back,
        br#"[16,1,{"a":{"b":[1,{"c":null}]},"x":true},"t",[[],{}]]"#
    );
    // `transcode` of a raw value with surrounding whitespace.
    let raw = RawValue::parse(Serializer::Json, b"  {\"k\": [1, 2]}  ").unwrap();
    let mut out = Vec::new();
    kreisel_codec::transcode(raw, Serializer::Json, &mut out);
    assert_eq!(out, b"{\"k\": [1, 2]}");
    assert_eq!(
        raw.get("k").map(|v| v.to_value()),
        Some(Value::List(vec![Value::UInt(1), Value::UInt(2)]))
    );
}
