//! The public WAMP test vectors (`codec/tests/wamp-test-vectors`, see its README): every JSON, MessagePack and CBOR
//! encoding of every sample is decoded, checked against `expected_attributes` and an independent `serde_json`
//! reading of the sample, re-encoded in every serializer (byte-exact against the vectors) and decoded again.
mod common;

use std::path::{Path, PathBuf};

use common::{encode, from_json, hex, model, normalize, whole};
use kreisel_codec::{DecodeError, Message, Serializer, Value};
use serde_json::Value as Json;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wamp-test-vectors");

/// Code of the autobahn-python EVENT_RECEIVED extension: not standard WAMP.
const EVENT_RECEIVED: u64 = 337;

#[derive(Default, Debug)]
struct Counts {
    files: usize,
    /// Serialization samples fully checked, and the encodings decoded for them (of which CBOR).
    samples: usize,
    encodings: usize,
    cbor_encodings: usize,
    /// Payload-passthru samples (binary payload in the Arguments position).
    passthru: usize,
    /// Validation samples (`wmsg`) checked at the codec level.
    wmsgs: usize,
    skipped_event_received: usize,
}

fn vector_files() -> Vec<PathBuf> {
    let root = Path::new(VECTORS);
    assert!(
        root.join("README.md").is_file(),
        "WAMP test vectors missing: expected them at {} (part of the repository)",
        root.display()
    );
    let mut files = Vec::new();
    for profile in ["basic", "advanced"] {
        let dir = root.join("singlemessage").join(profile);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.extension().is_some_and(|ext| ext == "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Every encoding a sample lists for a serializer, as bytes.
fn encodings(sample: &Json, name: &str) -> Vec<Vec<u8>> {
    let Some(list) = sample["serializers"].get(name) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in list.as_array().expect("serializer entries are a list") {
        let mut forms = Vec::new();
        if let Some(text) = entry.get("bytes").and_then(Json::as_str) {
            forms.push(text.as_bytes().to_vec());
        }
        if let Some(h) = entry.get("bytes_hex").and_then(Json::as_str) {
            forms.push(hex(h));
        }
        if let Some(b64) = entry.get("bytes_base64").and_then(Json::as_str) {
            use base64::Engine as _;
            forms.push(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .expect("bytes_base64"),
            );
        }
        assert!(!forms.is_empty(), "an encoding without bytes: {entry}");
        assert!(
            forms.windows(2).all(|w| w[0] == w[1]),
            "the forms of one encoding differ: {entry}"
        );
        out.push(forms.swap_remove(0));
    }
    out
}

/// Our model's value for an `expected_attributes` name (`None`: the name does not exist for this message).
fn attribute(msg: &Message<'_>, elements: &[Value], name: &str) -> Option<Value> {
    use Message as M;
    // Element index of each named attribute, by message type.
    let index = match (msg, name) {
        (_, "message_type") => 0,
        (M::Hello { .. }, "realm") => 1,
        (M::Welcome { .. }, "session_id") => 1,
        (M::Hello { .. } | M::Welcome { .. }, "roles") => {
            let details = elements.get(2)?;
            return Some(details.get("roles").cloned().unwrap_or(Value::Null));
        }
        (M::Abort { .. } | M::Goodbye { .. }, "details") => 1,
        (M::Abort { .. } | M::Goodbye { .. }, "reason") => 2,
        (M::Challenge { .. }, "method") => 1,
        (M::Authenticate { .. }, "signature") => 1,
        (M::Challenge { .. } | M::Authenticate { .. }, "extra") => 2,
        (M::Error { .. }, "request_type") => 1,
        (M::Error { .. }, "request_id") => 2,
        (M::Error { .. }, "details") => 3,
        (M::Error { .. }, "error") => 4,
        (M::Error { .. }, "args") => 5,
        (M::Error { .. }, "kwargs") => 6,
        (M::Event { .. }, "subscription" | "subscription_id") => 1,
        (M::Event { .. }, "publication" | "publication_id") => 2,
        (M::Invocation { .. }, "registration" | "registration_id") => 2,
        (M::Event { .. } | M::Invocation { .. }, "details") => 3,
        (M::Event { .. } | M::Invocation { .. }, "args") => 4,
        (M::Event { .. } | M::Invocation { .. }, "kwargs") => 5,
        (
            M::Publish { .. } | M::Call { .. } | M::Subscribe { .. } | M::Register { .. },
            "options",
        ) => 2,
        (M::Publish { .. } | M::Subscribe { .. }, "topic") => 3,
        (M::Call { .. } | M::Register { .. }, "procedure") => 3,
        (M::Publish { .. } | M::Call { .. }, "args") => 4,
        (M::Publish { .. } | M::Call { .. }, "kwargs") => 5,
        (M::Published { .. }, "publication" | "publication_id") => 2,
        (M::Subscribed { .. } | M::Unsubscribe { .. }, "subscription" | "subscription_id") => 2,
        (M::Registered { .. } | M::Unregister { .. }, "registration" | "registration_id") => 2,
        (M::Unsubscribed { .. } | M::Unregistered { .. }, "details") => 2,
        (M::Cancel { .. } | M::Interrupt { .. } | M::Yield { .. }, "options") => 2,
        (M::Result { .. }, "details") => 2,
        (M::Result { .. } | M::Yield { .. }, "args") => 3,
        (M::Result { .. } | M::Yield { .. }, "kwargs") => 4,
        (M::Welcome { .. } | M::Hello { .. } | M::Abort { .. } | M::Goodbye { .. }, _) => {
            return None
        }
        (M::Challenge { .. } | M::Authenticate { .. }, _) => return None,
        (_, "request_id") => 1,
        // A binary payload (payload passthru) is checked on its own (`check_passthru`).
        (_, "payload") => return Some(Value::Null),
        _ => return None,
    };
    // Absent optional elements (args, kwargs, details) read as null, as the vectors write them.
    Some(elements.get(index).cloned().unwrap_or(Value::Null))
}

fn check_attributes(msg: &Message<'_>, expected: &Json, context: &str) {
    let Value::List(elements) = model(msg) else {
        unreachable!("model is a list")
    };
    let expected = expected
        .as_object()
        .expect("expected_attributes is an object");
    for (name, value) in expected {
        let actual = attribute(msg, &elements, name).unwrap_or_else(|| {
            panic!(
                "{context}: attribute {name:?} does not map onto {:?}",
                msg.message_type()
            )
        });
        assert_eq!(
            normalize(&actual),
            normalize(&from_json(value)),
            "{context}: attribute {name:?}"
        );
    }
}

/// Decodes one encoding of a sample and checks it, then re-encodes it in both serializers and checks again.
/// `oracle` is the sample's JSON as read by `serde_json`; `canonical` the vector's encodings per serializer.
fn check_encoding(
    ser: Serializer,
    bytes: &[u8],
    oracle: &Value,
    expected: Option<&Json>,
    canonical: &[(Serializer, Vec<Vec<u8>>)],
    context: &str,
) {
    let msg = ser
        .decode(bytes)
        .unwrap_or_else(|e| panic!("{context}: decode failed: {e}"));
    // The typed fields hold exactly the elements an independent JSON parser sees.
    assert_eq!(
        normalize(&model(&msg)),
        normalize(oracle),
        "{context}: typed model"
    );
    assert_eq!(
        normalize(&whole(ser, bytes)),
        normalize(oracle),
        "{context}: whole value"
    );
    if let Some(expected) = expected {
        check_attributes(&msg, expected, context);
    }
    for to in Serializer::ALL {
        let context = format!("{context} -> {to:?}");
        let out = encode(to, &msg);
        let again = to
            .decode(&out)
            .unwrap_or_else(|e| panic!("{context}: re-decode failed: {e}"));
        assert_eq!(again.message_type(), msg.message_type(), "{context}");
        assert_eq!(
            model(&again),
            model(&msg),
            "{context}: model after re-encoding"
        );
        assert_eq!(
            whole(to, &out),
            whole(ser, bytes),
            "{context}: whole value after re-encoding"
        );
        if let Some(expected) = expected {
            check_attributes(&again, expected, &context);
        }
        // Our encoders are compact, as are the vectors' canonical forms: one of them must match byte for byte,
        // unless JSON spans with whitespace inside were copied verbatim.
        let verbatim_whitespace =
            ser == Serializer::Json && to == Serializer::Json && !is_compact_json(bytes);
        if let Some((_, forms)) = canonical
            .iter()
            .find(|(s, _)| *s == to)
            .filter(|_| !verbatim_whitespace)
        {
            assert!(
                forms.contains(&out),
                "{context}: {:?} matches none of the vector's encodings",
                String::from_utf8_lossy(&out)
            );
        }
    }
}

/// Whether JSON text has no whitespace outside strings.
fn is_compact_json(bytes: &[u8]) -> bool {
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') | (false, _, b'"') => in_string = !in_string,
            (false, _, b' ' | b'\t' | b'\n' | b'\r') => return false,
            _ => {}
        }
    }
    true
}

/// A sample whose Arguments position holds a binary payload (payload transparency, autobahn's `enc_algo`): the
/// binary value is the message's `args`, as it is (no kwargs), and survives re-encoding in every serializer.
fn check_passthru(
    ser: Serializer,
    bytes: &[u8],
    oracle: &Value,
    canonical: &[(Serializer, Vec<Vec<u8>>)],
    context: &str,
) {
    let msg = ser
        .decode(bytes)
        .unwrap_or_else(|e| panic!("{context}: payload passthru sample does not decode: {e}"));
    let payload = match &msg {
        Message::Publish { payload, .. } | Message::Event { payload, .. } => *payload,
        other => panic!("{context}: unexpected {other:?}"),
    };
    let args = payload.args.and_then(|a| a.as_raw()).expect("args");
    let Value::List(elements) = oracle else {
        panic!("{context}: the oracle is a list")
    };
    let expected = match elements.last() {
        Some(Value::Bytes(b)) => b.clone(),
        other => panic!("{context}: the sample's payload is binary, not {other:?}"),
    };
    assert_eq!(args.as_bytes().as_deref(), Some(&expected[..]), "{context}");
    assert!(payload.kwargs.is_none(), "{context}");
    check_encoding(ser, bytes, oracle, None, canonical, context);
}

/// A validation sample with a plain (not binary) string in the Arguments position: refused as element 4.
fn check_string_payload(ser: Serializer, bytes: &[u8], context: &str) {
    match ser.decode(bytes) {
        Err(DecodeError::Element {
            index: 4,
            expected: "a list (Arguments)",
            ..
        }) => {}
        other => {
            panic!("{context}: a string in place of Arguments: expected a refusal, got {other:?}")
        }
    }
}

fn check_file(path: &Path, counts: &mut Counts) {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("?")
        .to_owned();
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let file: Json =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
    let code = file["wamp_message_code"]
        .as_u64()
        .expect("wamp_message_code");
    let samples = file["samples"].as_array().expect("samples");
    counts.files += 1;
    for (i, sample) in samples.iter().enumerate() {
        let context = format!(
            "{name} sample {i} ({})",
            sample["description"].as_str().unwrap_or("")
        );
        if let Some(wmsg) = sample.get("wmsg") {
            check_wmsg(wmsg, &context);
            counts.wmsgs += 1;
            continue;
        }
        let json = encodings(sample, "json");
        let msgpack = encodings(sample, "msgpack");
        let cbor = encodings(sample, "cbor");
        assert!(
            !json.is_empty() && !msgpack.is_empty() && !cbor.is_empty(),
            "{context}: no JSON, MessagePack or CBOR encoding"
        );
        let all = [
            (Serializer::Json, &json),
            (Serializer::MsgPack, &msgpack),
            (Serializer::Cbor, &cbor),
        ];
        if code == EVENT_RECEIVED {
            // EVENT_RECEIVED (337) is an autobahn-python extension, not a message of the spec: it must be refused
            // as an unknown type, and there is nothing more to check.
            for (ser, forms) in all {
                for bytes in forms {
                    assert_eq!(
                        ser.decode(bytes),
                        Err(DecodeError::UnknownType(EVENT_RECEIVED)),
                        "{context}"
                    );
                }
            }
            counts.skipped_event_received += 1;
            continue;
        }
        let expected = &sample["expected_attributes"];
        assert_eq!(
            expected["message_type"].as_u64(),
            Some(code),
            "{context}: message_type"
        );
        let oracle =
            from_json(&serde_json::from_slice(&json[0]).expect("the sample's JSON parses"));
        let passthru = expected.get("payload").is_some_and(|p| !p.is_null());
        let canonical = all.map(|(ser, forms)| (ser, forms.clone()));
        for (ser, forms) in all {
            for (j, bytes) in forms.iter().enumerate() {
                let context = format!("{context} {ser:?}#{j}");
                // Every encoding is the same value as the JSON one, read independently.
                assert_eq!(
                    normalize(&whole(ser, bytes)),
                    normalize(&oracle),
                    "{context}: whole value"
                );
                if passthru {
                    check_passthru(ser, bytes, &oracle, &canonical, &context);
                } else {
                    check_encoding(ser, bytes, &oracle, Some(expected), &canonical, &context);
                }
                counts.encodings += 1;
                counts.cbor_encodings += usize::from(ser == Serializer::Cbor);
            }
        }
        if passthru {
            counts.passthru += 1;
        } else {
            counts.samples += 1;
        }
    }
}

/// A validation sample: a raw message whose *option* semantics the router (not the codec) checks. At the codec
/// level it must decode in every serializer (or, when a plain string stands in the Arguments position, be refused
/// as element 4).
fn check_wmsg(wmsg: &Json, context: &str) {
    let text = serde_json::to_vec(wmsg).expect("serialize wmsg");
    let items = wmsg.as_array().expect("wmsg is a list");
    let string_payload =
        items.len() >= 5 && items[items.len() - 1].is_string() && items[0].as_u64() != Some(8);
    let oracle = from_json(wmsg);
    let msgpack = common::to_msgpack(std::str::from_utf8(&text).expect("UTF-8"));
    let cbor = common::to_cbor(std::str::from_utf8(&text).expect("UTF-8"));
    for (ser, bytes) in [
        (Serializer::Json, &text),
        (Serializer::MsgPack, &msgpack),
        (Serializer::Cbor, &cbor),
    ] {
        let context = format!("{context} {ser:?}");
        if string_payload {
            check_string_payload(ser, bytes, &context);
        } else {
            check_encoding(ser, bytes, &oracle, None, &[], &context);
        }
    }
}

#[test]
fn wamp_test_vectors() {
    let mut counts = Counts::default();
    for path in vector_files() {
        check_file(&path, &mut counts);
    }
    eprintln!("checked: {counts:?}");
    // The vectors hold 26 single-message files; make sure the run cannot pass vacuously.
    assert!(
        counts.files >= 26,
        "only {} vector files found",
        counts.files
    );
    assert!(
        counts.samples > 0 && counts.encodings > 0,
        "no sample checked"
    );
    // Every sample of the vectors has a CBOR encoding.
    assert!(
        counts.cbor_encodings >= counts.samples + counts.passthru,
        "CBOR encodings not all checked: {counts:?}"
    );
    assert!(counts.wmsgs > 0, "no validation sample checked");
    assert_eq!(
        counts.skipped_event_received, 1,
        "eventreceived.json not seen"
    );
}
