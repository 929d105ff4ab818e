use std::fmt;

/// Why a frame is not a valid WAMP message. Every variant ends the session with
/// `wamp.error.protocol_violation`; the text goes into the ABORT's `message` detail and the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes are not well-formed in the serializer (bad token, truncated, trailing bytes, invalid UTF-8, ...).
    Syntax(&'static str),
    /// Arrays or maps nested deeper than [`crate::DEPTH_MAX`].
    TooDeep,
    /// The top level is not an array starting with a message code.
    NotAMessage,
    /// The message code is not one of the spec's.
    UnknownType(u64),
    /// Wrong number of elements for the message type.
    Arity { code: u64 },
    /// An element has the wrong type or an out-of-range value (e.g. an ID outside 1..=2^53).
    Element {
        code: u64,
        index: usize,
        expected: &'static str,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Syntax(what) => write!(f, "malformed serialization: {what}"),
            DecodeError::TooDeep => write!(f, "nesting deeper than {}", crate::DEPTH_MAX),
            DecodeError::NotAMessage => write!(
                f,
                "not a WAMP message (expected an array starting with a code)"
            ),
            DecodeError::UnknownType(code) => write!(f, "unknown message type {code}"),
            DecodeError::Arity { code } => {
                write!(f, "wrong number of elements for message type {code}")
            }
            DecodeError::Element {
                code,
                index,
                expected,
            } => {
                write!(f, "message type {code}: element {index} must be {expected}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}
