//! # kreisel-codec
//!
//! The WAMP v2 message model and its serializers, built for a router's hot path:
//!
//! * [`Message`] is one WAMP message. A decoded message *borrows* the frame it was decoded from: URIs are
//!   `Cow<str>` (borrowed unless a JSON escape or a chunked CBOR string forced a copy), option/detail dictionaries
//!   and the application payload (`args`/`kwargs`) are [`RawValue`] spans: validated, but never rebuilt. A router
//!   forwards them as bytes when serializers match and transcodes them once ([`transcode`]) when they differ.
//! * [`Serializer`] decodes ([`Serializer::decode`]) and encodes ([`Serializer::encode`]) every message type of the
//!   spec (codes 1-70) in JSON, MessagePack and CBOR.
//! * [`Value`] is an owned dynamic value for the places that are not hot (HELLO details, WELCOME roles, meta API).
//!
//! Nothing here allocates on the decode path of a message without JSON escapes or chunked (indefinite-length) CBOR
//! strings in the fields it reads, and malformed input is always a typed [`DecodeError`], never a panic.
#![forbid(unsafe_code)]
#![deny(unused_must_use)]

pub mod cbor;
mod error;
mod field;
mod id;
pub mod json;
mod message;
pub mod msgpack;
mod raw;
mod value;

pub use error::DecodeError;
pub use field::{Dict, Field, Payload};
pub use id::{Id, ID_MAX};
pub use message::{Message, MessageType};
pub use raw::{DictIter, Kind, ListIter, RawValue};
pub use value::Value;

/// Maximum nesting depth of arrays and maps accepted by every decoder. Deeper input is refused with
/// [`DecodeError::TooDeep`] so that no peer can make the router recurse without bound.
pub const DEPTH_MAX: usize = 64;

/// A WAMP serializer, as negotiated by the transport (WebSocket subprotocol or RawSocket serializer nibble).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Serializer {
    /// `wamp.2.json`, RawSocket serializer 1. Text; binary travels as `"\u0000" + base64`.
    Json,
    /// `wamp.2.msgpack`, RawSocket serializer 2. Binary travels as MessagePack `bin`.
    MsgPack,
    /// `wamp.2.cbor`, RawSocket serializer 3. Binary travels as a CBOR byte string.
    Cbor,
}

impl Serializer {
    /// Every serializer, in RawSocket nibble order.
    pub const ALL: [Serializer; 3] = [Serializer::Json, Serializer::MsgPack, Serializer::Cbor];

    /// The WebSocket subprotocol name.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Serializer::Json => "wamp.2.json",
            Serializer::MsgPack => "wamp.2.msgpack",
            Serializer::Cbor => "wamp.2.cbor",
        }
    }

    /// The serializer of a WebSocket subprotocol name, if kreisel speaks it.
    pub fn from_subprotocol(name: &str) -> Option<Serializer> {
        Serializer::ALL
            .into_iter()
            .find(|s| s.subprotocol() == name)
    }

    /// The RawSocket serializer nibble (1 JSON, 2 MessagePack, 3 CBOR).
    pub fn rawsocket_id(self) -> u8 {
        match self {
            Serializer::Json => 1,
            Serializer::MsgPack => 2,
            Serializer::Cbor => 3,
        }
    }

    /// The serializer of a RawSocket nibble, if kreisel speaks it.
    pub fn from_rawsocket_id(id: u8) -> Option<Serializer> {
        Serializer::ALL.into_iter().find(|s| s.rawsocket_id() == id)
    }

    /// Short name used in config files and logs: `json`, `msgpack`, `cbor`.
    pub fn name(self) -> &'static str {
        match self {
            Serializer::Json => "json",
            Serializer::MsgPack => "msgpack",
            Serializer::Cbor => "cbor",
        }
    }

    /// Whether frames of this serializer are WebSocket text frames (JSON) rather than binary frames (MessagePack,
    /// CBOR).
    pub fn is_text(self) -> bool {
        matches!(self, Serializer::Json)
    }

    /// Decodes one message. The result borrows `bytes`.
    pub fn decode(self, bytes: &[u8]) -> Result<Message<'_>, DecodeError> {
        message::decode(self, bytes)
    }

    /// Appends the encoding of `msg` to `out`. Raw spans in another serializer are transcoded.
    pub fn encode(self, msg: &Message<'_>, out: &mut Vec<u8>) {
        message::encode(self, msg, out)
    }
}

/// Appends one value, `field`, encoded in `ser` to `out` (for values the router builds itself and hands on as a
/// [`RawValue`], such as the arguments of its meta events when they go to another shard).
pub fn encode_field(ser: Serializer, field: &Field<'_>, out: &mut Vec<u8>) {
    match ser {
        Serializer::Json => field.write(&mut json::Writer::new(out)),
        Serializer::MsgPack => field.write(&mut msgpack::Writer::new(out)),
        Serializer::Cbor => field.write(&mut cbor::Writer::new(out)),
    }
}

/// Appends `value` re-encoded in serializer `to` to `out` (a plain copy when the serializers match). JSON binary
/// strings (`"\u0000" + base64`) become MessagePack `bin` / CBOR byte strings and back, as the spec's binary
/// conversion demands.
pub fn transcode(value: RawValue<'_>, to: Serializer, out: &mut Vec<u8>) {
    raw::transcode(value, to, out)
}
