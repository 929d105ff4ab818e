//! Malformed input never panics and gets the right class of error, in every serializer.
mod common;

use common::{hex, to_cbor, to_msgpack};
use kreisel_codec::{DecodeError, RawValue, Serializer, DEPTH_MAX};

const VALID_JSON: &[&str] = &[
    r#"[36,1,2,{"a":[1,{"b":"\u00e9\ud83d\ude00"}]},["x",1.5e3,-7,null,true,false],{"k":{}}]"#,
    r#"[1,"com.example",{"roles":{"subscriber":{}}}]"#,
    r#"[8,48,7,{},"com.err",[],{}]"#,
    r#"[67,1]"#,
];

fn is_syntax(r: &Result<kreisel_codec::Message<'_>, DecodeError>) -> bool {
    matches!(r, Err(DecodeError::Syntax(_)))
}

/// The decode result in every serializer of a message given as JSON text (MessagePack and CBOR built by
/// transcoding).
fn decode_all(
    json: &str,
    check: impl Fn(Serializer, Result<kreisel_codec::Message<'_>, DecodeError>),
) {
    check(Serializer::Json, Serializer::Json.decode(json.as_bytes()));
    let packed = to_msgpack(json);
    check(Serializer::MsgPack, Serializer::MsgPack.decode(&packed));
    let cbor = to_cbor(json);
    check(Serializer::Cbor, Serializer::Cbor.decode(&cbor));
}

/// The CBOR message `[36, 1, 2, {}, tail...]` (an EVENT whose payload is `tail`, given in hex) as an
/// indefinite-length array, so that the tail may hold any number of elements.
fn cbor_event(tail: &str) -> Vec<u8> {
    let mut bytes = vec![0x9f, 0x18, 0x24, 0x01, 0x02, 0xa0];
    bytes.extend(hex(tail));
    bytes.push(0xff);
    bytes
}

#[test]
fn every_prefix_is_an_error() {
    for text in VALID_JSON {
        let packed = to_msgpack(text);
        let cbor = to_cbor(text);
        for (ser, bytes) in [
            (Serializer::Json, text.as_bytes()),
            (Serializer::MsgPack, &packed[..]),
            (Serializer::Cbor, &cbor[..]),
        ] {
            assert!(
                ser.decode(bytes).is_ok(),
                "{ser:?}: the full message decodes"
            );
            for len in 0..bytes.len() {
                let result = ser.decode(&bytes[..len]);
                assert!(
                    is_syntax(&result),
                    "{ser:?} prefix of {len} bytes of {text}: {result:?}"
                );
            }
        }
    }
}

#[test]
fn trailing_bytes() {
    for text in VALID_JSON {
        for garbage in [&b"x"[..], b",", b"]", b"[]", b"0", b"\0", b"\xff"] {
            let mut bytes = text.as_bytes().to_vec();
            bytes.extend_from_slice(garbage);
            assert!(
                is_syntax(&Serializer::Json.decode(&bytes)),
                "{:?}",
                String::from_utf8_lossy(&bytes)
            );
            let mut packed = to_msgpack(text);
            packed.extend_from_slice(garbage);
            assert!(
                is_syntax(&Serializer::MsgPack.decode(&packed)),
                "{packed:02x?}"
            );
            let mut cbor = to_cbor(text);
            cbor.extend_from_slice(garbage);
            assert!(is_syntax(&Serializer::Cbor.decode(&cbor)), "{cbor:02x?}");
        }
        // Whitespace around a JSON message is fine.
        let spaced = format!(" \r\n\t{text} \n");
        assert!(Serializer::Json.decode(spaced.as_bytes()).is_ok());
    }
}

#[test]
fn not_a_message() {
    for text in [
        r#"{"a":1}"#,
        "36",
        r#""x""#,
        "null",
        "[]",
        r#"["x",1]"#,
        "[-1,1]",
        "[1.0,1]",
        "[[36],1]",
        "[{}]",
    ] {
        decode_all(text, |ser, r| {
            assert_eq!(r, Err(DecodeError::NotAMessage), "{ser:?} {text}")
        });
    }
    // Malformed non-arrays are syntax errors, not "not a message".
    for text in ["{", "x", "", "  ", "nul", "{\"a\":}"] {
        assert!(
            is_syntax(&Serializer::Json.decode(text.as_bytes())),
            "{text:?}"
        );
    }
    for bytes in [&[][..], &[0xc1], &[0x81, 0xa1], &[0xd4, 0x00, 0x00]] {
        assert!(
            is_syntax(&Serializer::MsgPack.decode(bytes)),
            "{bytes:02x?}"
        );
    }
    for bytes in [
        &[][..],
        &[0xff],
        &[0x81, 0x61],
        &[0x9f, 0x01],
        &[0xc1],
        &[0x1c],
    ] {
        assert!(is_syntax(&Serializer::Cbor.decode(bytes)), "{bytes:02x?}");
    }
    // Well-formed CBOR that is not a message: a tagged map, an empty indefinite array, an indefinite one starting
    // with a string.
    for bytes in [
        &[0xc1, 0xa0][..],
        &[0x9f, 0xff],
        &[0x9f, 0x61, b'x', 0x01, 0xff],
    ] {
        assert_eq!(
            Serializer::Cbor.decode(bytes),
            Err(DecodeError::NotAMessage),
            "{bytes:02x?}"
        );
    }
}

#[test]
fn unknown_code() {
    decode_all("[999,1]", |ser, r| {
        assert_eq!(r, Err(DecodeError::UnknownType(999)), "{ser:?}")
    });
    decode_all("[0]", |ser, r| {
        assert_eq!(r, Err(DecodeError::UnknownType(0)), "{ser:?}")
    });
    decode_all("[7,1,2]", |ser, r| {
        assert_eq!(r, Err(DecodeError::UnknownType(7)), "{ser:?}")
    });
    decode_all("[337,5512315355]", |ser, r| {
        assert_eq!(r, Err(DecodeError::UnknownType(337)), "{ser:?}")
    });
}

#[test]
fn wrong_arity() {
    for (text, code) in [
        ("[36,1,2]", 36),
        (r#"[1,"realm"]"#, 1),
        (r#"[1,"realm",{},{}]"#, 1),
        ("[70,1,{},[],{},{}]", 70),
        ("[35]", 35),
        ("[17,1,2,3]", 17),
        (r#"[8,48,1,{}]"#, 8),
    ] {
        decode_all(text, |ser, r| {
            assert_eq!(r, Err(DecodeError::Arity { code }), "{ser:?} {text}")
        });
    }
    // More elements than any message has.
    decode_all("[36,1,2,{},[],{},1,2]", |ser, r| {
        assert_eq!(r, Err(DecodeError::Syntax("too many elements")), "{ser:?}")
    });
}

#[test]
fn element_types_and_ranges() {
    let id = "an ID in 1..=2^53";
    let cases: &[(&str, usize, &str)] = &[
        ("[33,0,1]", 1, id),
        ("[33,1,9007199254740993]", 2, id),
        ("[33,1,18446744073709551615]", 2, id),
        ("[33,1,-1]", 2, id),
        ("[33,1,1.0]", 2, id),
        (r#"[33,"1",1]"#, 1, id),
        ("[32,1,[],\"t\"]", 2, "a dictionary"),
        ("[32,1,null,\"t\"]", 2, "a dictionary"),
        ("[32,1,{},1]", 3, "a string"),
        (r#"[16,1,{},"t",{}]"#, 4, "a list (Arguments)"),
        (r#"[16,1,{},"t","AQID"]"#, 4, "a list (Arguments)"),
        (r#"[16,1,{},"t","\u0000AQID",{}]"#, 4, "a list (Arguments)"),
        (r#"[16,1,{},"t",[],[]]"#, 5, "a dictionary (ArgumentsKw)"),
        (r#"[8,-48,1,{},"e"]"#, 1, "a non-negative integer"),
        (r#"[1,{},{}]"#, 1, "a string"),
    ];
    for &(text, index, expected) in cases {
        decode_all(text, |ser, r| match r {
            Err(DecodeError::Element {
                index: i,
                expected: e,
                ..
            }) if i == index && e == expected => {}
            other => panic!("{ser:?} {text}: expected element {index} ({expected}), got {other:?}"),
        });
    }
    // 2^53 itself is a valid ID.
    decode_all("[33,1,9007199254740992]", |ser, r| {
        assert!(r.is_ok(), "{ser:?}")
    });
}

#[test]
fn nesting_depth() {
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    // The message array is level 1 and its args list level 2.
    let at_limit = format!("[36,1,2,{{}},{}]", nested(DEPTH_MAX - 1));
    decode_all(&at_limit, |ser, r| {
        assert!(r.is_ok(), "{ser:?}: {DEPTH_MAX} levels are allowed")
    });
    let over = format!("[36,1,2,{{}},{}]", nested(DEPTH_MAX));
    assert_eq!(
        Serializer::Json.decode(over.as_bytes()),
        Err(DecodeError::TooDeep)
    );
    let hundred = format!("[36,1,2,{{}},{}]", nested(100));
    assert_eq!(
        Serializer::Json.decode(hundred.as_bytes()),
        Err(DecodeError::TooDeep)
    );
    let deep_dict = format!("[36,1,2,{}1{}]", r#"{"a":"#.repeat(100), "}".repeat(100));
    assert_eq!(
        Serializer::Json.decode(deep_dict.as_bytes()),
        Err(DecodeError::TooDeep)
    );
    // Unclosed, huge nesting: refused at the limit, without recursion.
    assert_eq!(
        Serializer::Json.decode("[".repeat(1_000_000).as_bytes()),
        Err(DecodeError::TooDeep)
    );
    // MessagePack cannot be produced by transcoding past the limit: build it by hand.
    let mut packed = vec![0x95, 0x24, 0x01, 0x02, 0x80];
    packed.extend([0x91; 99]);
    packed.push(0x90);
    assert_eq!(
        Serializer::MsgPack.decode(&packed),
        Err(DecodeError::TooDeep)
    );
    let mut packed = vec![0x91; 1_000_000];
    packed.push(0x90);
    assert_eq!(
        Serializer::MsgPack.decode(&packed),
        Err(DecodeError::TooDeep)
    );
    let mut deep_map = vec![0x95, 0x24, 0x01, 0x02, 0x80];
    for _ in 0..100 {
        deep_map.extend([0x81, 0xa1, b'a']);
    }
    deep_map.push(0xc0);
    assert_eq!(
        Serializer::MsgPack.decode(&deep_map),
        Err(DecodeError::TooDeep)
    );
    // CBOR, by hand too: definite and indefinite arrays, maps, and a million unclosed indefinite arrays.
    let at_limit = cbor_event(&format!("{}80", "81".repeat(DEPTH_MAX - 2)));
    assert!(Serializer::Cbor.decode(&at_limit).is_ok());
    for tail in [
        format!("{}80", "81".repeat(DEPTH_MAX - 1)),
        format!("{}{}", "9f".repeat(100), "ff".repeat(100)),
        format!("{}f6", "a16161".repeat(100)),
        format!("{}f6{}", "bf6161".repeat(100), "ff".repeat(100)),
    ] {
        assert_eq!(
            Serializer::Cbor.decode(&cbor_event(&tail)),
            Err(DecodeError::TooDeep),
            "{tail}"
        );
    }
    assert_eq!(
        Serializer::Cbor.decode(&vec![0x9f; 1_000_000]),
        Err(DecodeError::TooDeep)
    );
}

#[test]
fn invalid_utf8() {
    for bytes in [
        &b"[32,1,{},\"\xff\"]"[..],
        b"[32,1,{},\"\xc3\"]",
        b"[32,1,{},\"\xed\xa0\x80\"]",
        b"[32,1,{\"\xc0\xaf\":1},\"t\"]",
        b"[32,1,{},\"t\"]\xff",
        b"\xef\xbb\xbf[32,1,{},\"t\"]",
    ] {
        assert!(
            is_syntax(&Serializer::Json.decode(bytes)),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    // fixstr of 1 byte holding 0xff, as topic and as a map key.
    let topic = [0x94, 0x20, 0x01, 0x80, 0xa1, 0xff];
    assert_eq!(
        Serializer::MsgPack.decode(&topic),
        Err(DecodeError::Syntax("invalid UTF-8 in msgpack string"))
    );
    let key = [0x94, 0x20, 0x01, 0x81, 0xa1, 0xff, 0x01, 0xa1, b't'];
    assert_eq!(
        Serializer::MsgPack.decode(&key),
        Err(DecodeError::Syntax("invalid UTF-8 in msgpack string"))
    );
    // CBOR: as topic, as a map key, in the payload, split across the chunks of an indefinite-length string (each
    // chunk must be UTF-8 on its own), and an overlong encoding and a surrogate.
    let invalid = DecodeError::Syntax("invalid UTF-8 in cbor text");
    for bytes in [
        hex("84 1820 01 a0 61ff"),
        hex("84 1820 01 a1 61ff 01 6174"),
        hex("84 1820 01 a0 7f 61c3 61a9 ff"),
        cbor_event("81 62c0af"),
        cbor_event("81 63eda080"),
    ] {
        assert_eq!(
            Serializer::Cbor.decode(&bytes),
            Err(invalid.clone()),
            "{bytes:02x?}"
        );
    }
    // The same text in one chunk is fine.
    assert!(Serializer::Cbor
        .decode(&hex("84 1820 01 a0 7f 62c3a9 ff"))
        .is_ok());
}

#[test]
fn bad_escapes() {
    for text in [
        r#"[32,1,{},"\ud800"]"#,
        r#"[32,1,{},"\udc00"]"#,
        r#"[32,1,{},"\ud800\u0041"]"#,
        r#"[32,1,{},"\ud800x"]"#,
        r#"[32,1,{},"\ude00\ud83d"]"#,
        r#"[32,1,{},"\x"]"#,
        r#"[32,1,{},"\u00g0"]"#,
        r#"[32,1,{},"\'"]"#,
        "[32,1,{},\"tab\there\"]",
        "[32,1,{},\"\u{0}\"]",
    ] {
        assert!(
            is_syntax(&Serializer::Json.decode(text.as_bytes())),
            "{text}"
        );
    }
    assert_eq!(
        Serializer::Json.decode(br#"[32,1,{},"\ud800"]"#),
        Err(DecodeError::Syntax("lone surrogate in \\u escape"))
    );
}

#[test]
fn strict_json_syntax() {
    for text in [
        "[36,1,2,{},[1,],{}]",
        "[36,1,2,{\"a\":1,},[]]",
        "[36,1,2,{},[01]]",
        "[36,1,2,{},[NaN]]",
        "[36,1,2,{},[Infinity]]",
        "[36,1,2,{},[-]]",
        "[36,1,2,{},[1.]]",
        "[36,1,2,{},[.1]]",
        "[36,1,2,{},[+1]]",
        "[36,1,2,{},[1e]]",
        "[36,1,2,{} /* c */,[]]",
        "[36,1,2,{},['x']]",
        "[36,1,2,{a:1},[]]",
        "[36,,1,2,{},[]]",
        "[36 1,2,{},[]]",
        "[36,1,2,{},[TRUE]]",
        "[36,1,2,{}\u{c},[]]",
    ] {
        assert!(
            is_syntax(&Serializer::Json.decode(text.as_bytes())),
            "{text}"
        );
    }
}

#[test]
fn msgpack_lengths_beyond_the_input() {
    let prefix = [0x95, 0x24, 0x01, 0x02, 0x80];
    for tail in [
        &[0xdb, 0xff, 0xff, 0xff, 0xff, b'a'][..],
        &[0xc6, 0xff, 0xff, 0xff, 0xff, 0x00],
        &[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01],
        &[0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, b'a', 0x01],
        &[0xda, 0xff, 0xff],
        &[0xdc, 0xff, 0xff, 0x01],
        &[0xde, 0x00, 0x02, 0xa1, b'a', 0x01, 0xa1],
    ] {
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(tail);
        assert!(
            is_syntax(&Serializer::MsgPack.decode(&bytes)),
            "{bytes:02x?}"
        );
    }
    // A message array claiming 4G elements.
    assert!(is_syntax(
        &Serializer::MsgPack.decode(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0x24])
    ));
}

#[test]
fn msgpack_refusals() {
    let prefix = [0x95, 0x24, 0x01, 0x02];
    let check = |tail: &[u8], expected: DecodeError| {
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(tail);
        assert_eq!(
            Serializer::MsgPack.decode(&bytes),
            Err(expected),
            "{bytes:02x?}"
        );
    };
    let not_string = DecodeError::Syntax("map key is not a string");
    check(&[0x81, 0x01, 0x01, 0x90], not_string.clone());
    check(&[0x81, 0xc4, 0x01, b'a', 0x01, 0x90], not_string.clone());
    check(&[0x81, 0x90, 0x01, 0x90], not_string.clone());
    check(&[0x80, 0x91, 0x81, 0xc0, 0xc0], not_string);
    let ext = DecodeError::Syntax("msgpack ext types are not supported");
    check(&[0x80, 0x91, 0xd4, 0x01, 0x00], ext.clone());
    check(&[0x80, 0x91, 0xc7, 0x01, 0x05, 0x00], ext.clone());
    check(&[0x81, 0xa1, b'a', 0xd6, 0xff, 0, 0, 0, 0, 0x90], ext);
    check(
        &[0x80, 0x91, 0xc1],
        DecodeError::Syntax("reserved msgpack marker 0xc1"),
    );
}

#[test]
fn cbor_lengths_beyond_the_input() {
    for tail in [
        // Byte and text strings, arrays and maps claiming 2^64 - 1, 2^32 - 1 and 2^16 - 1 bytes or items.
        "5b ffffffffffffffff 00",
        "7b ffffffffffffffff 61",
        "9b ffffffffffffffff 01",
        "bb ffffffffffffffff 6161 01",
        "bb 8000000000000000 6161 01",
        "5a ffffffff 00",
        "7a ffffffff 61",
        "9a ffffffff 01",
        "ba ffffffff 6161 01",
        "59 ffff 00",
        "99 ffff 01",
        "b9 0002 6161 01 6162",
        // A chunk of an indefinite-length string claiming more than there is.
        "5f 5b ffffffffffffffff ff",
    ] {
        let bytes = cbor_event(tail);
        assert!(is_syntax(&Serializer::Cbor.decode(&bytes)), "{bytes:02x?}");
    }
    // A message array claiming 2^64 - 1 elements.
    assert!(is_syntax(
        &Serializer::Cbor.decode(&hex("9bffffffffffffffff1824"))
    ));
}

#[test]
fn cbor_refusals() {
    let check = |tail: &str, expected: &'static str| {
        let bytes = cbor_event(tail);
        assert_eq!(
            Serializer::Cbor.decode(&bytes),
            Err(DecodeError::Syntax(expected)),
            "{tail}"
        );
    };
    // WAMP dictionaries have string keys.
    let not_string = "map key is not a string";
    check("80 a1 01 01", not_string);
    check("80 a1 4161 01", not_string);
    check("80 a1 80 01", not_string);
    check("80 a1 f6 01", not_string);
    check("80 a1 c1 01 01", not_string);
    check("80 bf f5 01 ff", not_string);
    check("81 a1 fb3ff8000000000000 f6 a0", not_string);
    // Major type 7: unassigned and reserved simple values, misplaced breaks.
    check("81 e0 a0", "unassigned cbor simple value");
    check("81 f8 ff a0", "unassigned cbor simple value");
    check("81 f8 10 a0", "malformed cbor simple value");
    check("81 fc a0", "reserved cbor additional information");
    check("81 ff a0", "unexpected cbor break");
    check("9f c1 ff a0", "unexpected cbor break");
    check("80 bf 6161 ff", "unexpected cbor break");
    // Reserved lengths and indefinite integers.
    check("81 1c a0", "reserved cbor additional information");
    check("81 1f a0", "indefinite length on a cbor integer or tag");
    check("81 df 01 a0", "indefinite length on a cbor integer or tag");
    // Chunks of another type, or themselves indefinite.
    let chunk = "invalid chunk in an indefinite-length cbor string";
    check("81 7f 4161 ff a0", chunk);
    check("81 5f 6161 ff a0", chunk);
    check("81 7f 7f6161ff ff a0", chunk);
    check("81 5f 01 ff a0", chunk);
}

#[test]
fn cbor_accepts_what_clients_may_send() {
    // Indefinite-length message array, options map, topic and payload; tags (self-described CBOR around the
    // message, a tag on an ID, a bignum in the payload); half, single and double floats; undefined.
    let bytes = hex(
        "d9d9f7 9f 10 c1 01 bf 6b61636b6e6f776c65646765 f5 ff 7f 63636f6d 622e74 ff \
         9f f93e00 fa3fc00000 fb3ff8000000000000 f7 c249010000000000000000 5f 4101 4102 ff ff \
         bf 616b 9f ff ff ff",
    );
    let msg = Serializer::Cbor.decode(&bytes).expect("decodes");
    let kreisel_codec::Message::Publish {
        request,
        options,
        topic,
        payload,
    } = &msg
    else {
        panic!("PUBLISH expected, got {msg:?}")
    };
    assert_eq!(request.get(), 1);
    assert_eq!(
        options.get("acknowledge").and_then(|f| f.as_bool()),
        Some(true)
    );
    assert_eq!(topic, "com.t");
    let args = payload.args.and_then(|a| a.as_raw()).expect("raw args");
    let values: Vec<_> = args.list().expect("a list").map(|v| v.to_value()).collect();
    use kreisel_codec::Value as V;
    assert_eq!(
        values,
        [
            V::Float(1.5),
            V::Float(1.5),
            V::Float(1.5),
            V::Null,
            V::Bytes(vec![1, 0, 0, 0, 0, 0, 0, 0, 0]),
            V::Bytes(vec![1, 2]),
        ]
    );
    // Re-encoded as CBOR, the message keeps its payload spans verbatim (tags and all) and gets definite lengths
    // around them; as JSON, everything is plain.
    let mut out = Vec::new();
    Serializer::Cbor.encode(&msg, &mut out);
    assert_eq!(out[0], 0x86, "definite message array");
    let mut json = Vec::new();
    Serializer::Json.encode(&msg, &mut json);
    assert_eq!(
        String::from_utf8(json).unwrap(),
        r#"[16,1,{"acknowledge":true},"com.t",[1.5,1.5,1.5,null,"\u0000AQAAAAAAAAAA","\u0000AQI="],{"k":[]}]"#
    );
}

#[test]
fn raw_value_parse_validates() {
    assert!(RawValue::parse(Serializer::Json, b"[1,]").is_err());
    assert!(RawValue::parse(Serializer::Json, b"1 2").is_err());
    assert!(RawValue::parse(Serializer::MsgPack, &[0x01, 0x02]).is_err());
    assert!(RawValue::parse(Serializer::MsgPack, &[0x92, 0x01]).is_err());
    assert!(RawValue::parse(Serializer::Json, b" {\"a\": [1, \"\\u00e9\"]} ").is_ok());
    assert!(RawValue::parse(Serializer::Cbor, &[0x01, 0x02]).is_err());
    assert!(RawValue::parse(Serializer::Cbor, &[0x82, 0x01]).is_err());
    assert!(RawValue::parse(Serializer::Cbor, &[0xbf, 0x61, b'a', 0x9f, 0xff, 0xff]).is_ok());
}
