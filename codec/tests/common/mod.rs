//! Helpers shared by the integration tests: a serializer-independent view of a message, and an oracle that turns
//! `serde_json` values into [`Value`]s.
#![allow(dead_code)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use kreisel_codec::{Dict, Field, Message, Payload, RawValue, Serializer, Value};

/// The message as the list of its wire elements, built from the typed fields only (no encoding involved): the
/// code, then each element in spec order; trailing payload elements as the encoder writes them.
pub fn model(msg: &Message<'_>) -> Value {
    let mut items = vec![Value::UInt(msg.message_type().code())];
    let id = |id: &kreisel_codec::Id| Value::UInt(id.get());
    let s = |s: &str| Value::Str(s.to_owned());
    let d = |d: &Dict<'_>| d.to_value();
    match msg {
        Message::Hello { realm, details } => items.extend([s(realm), d(details)]),
        Message::Welcome { session, details } => items.extend([id(session), d(details)]),
        Message::Abort { details, reason } | Message::Goodbye { details, reason } => {
            items.extend([d(details), s(reason)])
        }
        Message::Challenge {
            auth_method: text,
            extra,
        }
        | Message::Authenticate {
            signature: text,
            extra,
        } => items.extend([s(text), d(extra)]),
        Message::Error {
            request_type,
            request,
            details,
            error,
            payload,
        } => {
            items.extend([
                Value::UInt(*request_type),
                id(request),
                d(details),
                s(error),
            ]);
            push_payload(&mut items, payload);
        }
        Message::Publish {
            request,
            options,
            topic: uri,
            payload,
        }
        | Message::Call {
            request,
            options,
            procedure: uri,
            payload,
        } => {
            items.extend([id(request), d(options), s(uri)]);
            push_payload(&mut items, payload);
        }
        Message::Subscribe {
            request,
            options,
            topic: uri,
        }
        | Message::Register {
            request,
            options,
            procedure: uri,
        } => items.extend([id(request), d(options), s(uri)]),
        Message::Published {
            request,
            publication: other,
        }
        | Message::Subscribed {
            request,
            subscription: other,
        }
        | Message::Unsubscribe {
            request,
            subscription: other,
        }
        | Message::Registered {
            request,
            registration: other,
        }
        | Message::Unregister {
            request,
            registration: other,
        } => items.extend([id(request), id(other)]),
        Message::Unsubscribed { request, details } | Message::Unregistered { request, details } => {
            items.push(id(request));
            items.extend(details.as_ref().map(d));
        }
        Message::Event {
            subscription: first,
            publication: second,
            details,
            payload,
        }
        | Message::Invocation {
            request: first,
            registration: second,
            details,
            payload,
        } => {
            items.extend([id(first), id(second), d(details)]);
            push_payload(&mut items, payload);
        }
        Message::Cancel { request, options } | Message::Interrupt { request, options } => {
            items.extend([id(request), d(options)])
        }
        Message::Result {
            request,
            details: dict,
            payload,
        }
        | Message::Yield {
            request,
            options: dict,
            payload,
        } => {
            items.extend([id(request), d(dict)]);
            push_payload(&mut items, payload);
        }
    }
    Value::List(items)
}

fn push_payload(items: &mut Vec<Value>, payload: &Payload<'_>) {
    match (payload.args, payload.kwargs) {
        (None, None) => {}
        (Some(args), None) => items.push(field_value(args)),
        (args, Some(kwargs)) => {
            items.push(args.map_or(Value::List(Vec::new()), field_value));
            items.push(field_value(kwargs));
        }
    }
}

/// A field as an owned value (through the public API: a one-entry dictionary).
pub fn field_value(field: Field<'_>) -> Value {
    match Dict::Fields(&[("", field)]).to_value() {
        Value::Dict(mut entries) if entries.len() == 1 => entries.remove(0).1,
        other => panic!("one-entry dictionary expected, got {other:?}"),
    }
}

/// The whole encoded message as a value, read by the codec's own generic value reader.
pub fn whole(ser: Serializer, bytes: &[u8]) -> Value {
    RawValue::parse(ser, bytes)
        .unwrap_or_else(|e| panic!("{ser:?} output does not parse: {e}"))
        .to_value()
}

/// A `serde_json` value as a [`Value`], applying the WAMP binary convention to strings (`"\u0000" + base64`).
pub fn from_json(j: &serde_json::Value) -> Value {
    match j {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else {
                Value::Float(n.as_f64().expect("a JSON number is an f64"))
            }
        }
        serde_json::Value::String(s) => {
            match s.strip_prefix('\0').map(|b64| STANDARD.decode(b64)) {
                Some(Ok(bytes)) => Value::Bytes(bytes),
                _ => Value::Str(s.clone()),
            }
        }
        serde_json::Value::Array(items) => Value::List(items.iter().map(from_json).collect()),
        serde_json::Value::Object(entries) => Value::Dict(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), from_json(v)))
                .collect(),
        ),
    }
}

/// `v` with every dictionary's entries sorted by key (`serde_json` does not keep the encoded order).
pub fn normalize(v: &Value) -> Value {
    match v {
        Value::List(items) => Value::List(items.iter().map(normalize).collect()),
        Value::Dict(entries) => {
            let mut entries: Vec<_> = entries
                .iter()
                .map(|(k, v)| (k.clone(), normalize(v)))
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Dict(entries)
        }
        other => other.clone(),
    }
}

pub fn encode(ser: Serializer, msg: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    ser.encode(msg, &mut out);
    out
}

/// Bytes from hex digits; whitespace between them is ignored.
pub fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    assert_eq!(s.len() % 2, 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// A JSON text transcoded to MessagePack by the codec (for building MessagePack inputs from readable JSON).
pub fn to_msgpack(json: &str) -> Vec<u8> {
    transcode_json(json, Serializer::MsgPack)
}

/// A JSON text transcoded to CBOR by the codec (for building CBOR inputs from readable JSON).
pub fn to_cbor(json: &str) -> Vec<u8> {
    transcode_json(json, Serializer::Cbor)
}

fn transcode_json(json: &str, to: Serializer) -> Vec<u8> {
    let raw = RawValue::parse(Serializer::Json, json.as_bytes()).expect("valid JSON");
    let mut out = Vec::new();
    kreisel_codec::transcode(raw, to, &mut out);
    out
}
