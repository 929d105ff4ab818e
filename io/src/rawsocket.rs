//! WAMP-over-RawSocket, sans socket: the 4-octet opening handshake and the 4-octet frame header.
//!
//! Everything here is a pure function over bytes the caller has already read; nothing does I/O or allocates.
//!
//! * Handshake: the client sends `0x7F`, `LLLL SSSS` (its maximum receive length as `2^(9+L)` and the serializer),
//!   `0x00`, `0x00`. [`handle_handshake`] answers with the router's own length exponent and the echoed serializer,
//!   or with an error reply after which the caller closes. A first octet other than `0x7F` is not RawSocket at
//!   all ([`HandshakeOutcome::NotRawSocket`]): the caller closes without a reply (or tries another transport on
//!   the same port, since no HTTP request can start with `0x7F`).
//! * Framing: each frame is `0000 LTTT` + 24-bit big-endian length + payload. `TTT` is the frame type
//!   ([`FrameKind`]); `L` is the 25th length bit, set only for a payload of exactly 2^24 octets (16 MiB, the
//!   largest length a handshake can announce). [`parse_frame`] finds the next complete frame in a buffer in
//!   place; [`write_header`] builds the header for an outgoing frame.
//!
//! The length limit on incoming frames is the one the *router* announced in its handshake reply
//! ([`max_len`] of the router's exponent); a longer frame is a protocol error and the caller fails the
//! connection. Outgoing frames must not exceed `peer_max_len` from [`HandshakeOutcome::Accept`].

use std::fmt;
use std::ops::Range;

use kreisel_codec::Serializer;

/// First octet of every handshake request and reply.
pub const MAGIC: u8 = 0x7F;
/// Length of the handshake request and reply, and of a frame header.
pub const HEADER_LEN: usize = 4;
/// Largest payload a frame can carry: 2^24 octets (16 MiB), announced by length exponent 15.
pub const LEN_MAX: usize = 1 << 24;
/// Largest length exponent: `2^(9+15)` = [`LEN_MAX`].
pub const EXPONENT_MAX: u8 = 15;

/// Handshake error code 1: the requested serializer is not spoken here.
pub const ERROR_SERIALIZER_UNSUPPORTED: u8 = 1;
/// Handshake error code 2: the client's maximum message length is unacceptable. Every length a client can
/// announce (512 B to 16 MiB) is acceptable to kreisel, so the handshake never sends it; it exists for callers
/// with a policy of their own.
pub const ERROR_MAX_LEN_UNACCEPTABLE: u8 = 2;
/// Handshake error code 3: reserved bits were used (the third and fourth octets must be zero).
pub const ERROR_RESERVED_BITS: u8 = 3;
/// Handshake error code 4: the router has reached its connection limit. Sent by the caller with
/// [`reject_reply`] before it reads the handshake's serializer at all.
pub const ERROR_CONNECTION_LIMIT: u8 = 4;

/// The maximum message length a length exponent announces: `2^(9+exponent)` octets. Exponents above 15 (which
/// a nibble cannot hold) are clamped to 15.
pub fn max_len(exponent: u8) -> usize {
    1 << (9 + exponent.min(EXPONENT_MAX))
}

/// The smallest length exponent whose [`max_len`] is at least `len` (15 if `len` exceeds 16 MiB). Handy for
/// turning a configured byte limit into the exponent the router announces.
pub fn exponent_for(len: usize) -> u8 {
    (0..EXPONENT_MAX)
        .find(|&e| max_len(e) >= len)
        .unwrap_or(EXPONENT_MAX)
}

/// An error reply: `0x7F`, `code << 4`, `0`, `0`. The caller writes it and closes the connection.
pub fn reject_reply(code: u8) -> [u8; 4] {
    debug_assert!(
        (1..=15).contains(&code),
        "RawSocket error code {code} does not fit a nibble or is 0"
    );
    [MAGIC, (code & 0x0F) << 4, 0, 0]
}

/// Result of [`handle_handshake`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeOutcome {
    /// Write `reply`, then exchange frames in `serializer`. Never send a frame longer than `peer_max_len`.
    Accept {
        serializer: Serializer,
        peer_max_len: usize,
        reply: [u8; 4],
    },
    /// Write `reply` (an error reply), then close.
    Reject {
        reply: [u8; 4],
        reason: HandshakeError,
    },
    /// The first octet is not `0x7F`: this is not a RawSocket client. Close without a reply.
    NotRawSocket,
}

/// Why a RawSocket handshake was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// The serializer nibble (0 is illegal, 3..=15 are not spoken here, or not offered by this listener).
    SerializerUnsupported(u8),
    /// The third or fourth octet is not zero.
    ReservedBits,
}

impl HandshakeError {
    /// The error code sent in the reply's high nibble.
    pub fn code(self) -> u8 {
        match self {
            HandshakeError::SerializerUnsupported(_) => ERROR_SERIALIZER_UNSUPPORTED,
            HandshakeError::ReservedBits => ERROR_RESERVED_BITS,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::SerializerUnsupported(id) => {
                write!(f, "RawSocket serializer {id} is not supported")
            }
            HandshakeError::ReservedBits => f.write_str("RawSocket handshake uses reserved octets"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Answers a client's 4-octet handshake `hello`.
///
/// `offered` are the serializers this listener speaks; `max_len_exponent` is the router's own length exponent
/// (0..=15, see [`max_len`]): the client must not send frames longer than `2^(9+max_len_exponent)`.
pub fn handle_handshake(
    hello: [u8; 4],
    offered: &[Serializer],
    max_len_exponent: u8,
) -> HandshakeOutcome {
    debug_assert!(
        max_len_exponent <= EXPONENT_MAX,
        "length exponent {max_len_exponent} > 15"
    );
    let [magic, params, reserved_1, reserved_2] = hello;
    if magic != MAGIC {
        return HandshakeOutcome::NotRawSocket;
    }
    let reject = |reason: HandshakeError| HandshakeOutcome::Reject {
        reply: reject_reply(reason.code()),
        reason,
    };
    if reserved_1 != 0 || reserved_2 != 0 {
        return reject(HandshakeError::ReservedBits);
    }
    let serializer_id = params & 0x0F;
    let Some(serializer) =
        Serializer::from_rawsocket_id(serializer_id).filter(|s| offered.contains(s))
    else {
        return reject(HandshakeError::SerializerUnsupported(serializer_id));
    };
    let our_exponent = max_len_exponent.min(EXPONENT_MAX);
    HandshakeOutcome::Accept {
        serializer,
        peer_max_len: max_len(params >> 4),
        reply: [MAGIC, (our_exponent << 4) | serializer.rawsocket_id(), 0, 0],
    }
}

/// The type of a frame (`TTT` in the first header octet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// 0: a serialized WAMP message.
    Message,
    /// 1: a ping; answer with a [`FrameKind::Pong`] carrying the same payload.
    Ping,
    /// 2: a pong.
    Pong,
}

impl FrameKind {
    /// The 3-bit type code.
    pub fn code(self) -> u8 {
        match self {
            FrameKind::Message => 0,
            FrameKind::Ping => 1,
            FrameKind::Pong => 2,
        }
    }

    /// The frame type of a 3-bit type code, if it is defined.
    pub fn from_code(code: u8) -> Option<FrameKind> {
        match code {
            0 => Some(FrameKind::Message),
            1 => Some(FrameKind::Ping),
            2 => Some(FrameKind::Pong),
            _ => None,
        }
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameKind,
    /// Payload length in octets, excluding the header; at most [`LEN_MAX`].
    pub len: usize,
}

/// A complete frame found in a buffer by [`parse_frame`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    /// Where the payload lies in the buffer; `payload.end` is also the number of octets the frame occupies.
    pub payload: Range<usize>,
}

/// A malformed or oversized frame: the caller fails the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Bits 4..=7 of the first octet are set.
    ReservedBits,
    /// Frame type 3..=7.
    UnknownType(u8),
    /// The 25th length bit is set but the 24-bit length is not zero, i.e. the length exceeds 2^24.
    LengthOverflow,
    /// The payload exceeds the maximum the router announced.
    TooLong { len: usize, max: usize },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::ReservedBits => f.write_str("RawSocket frame header uses reserved bits"),
            FrameError::UnknownType(t) => write!(f, "unknown RawSocket frame type {t}"),
            FrameError::LengthOverflow => f.write_str(
                "RawSocket frame length exceeds 2^24 (25th length bit with non-zero length)",
            ),
            FrameError::TooLong { len, max } => {
                write!(
                    f,
                    "RawSocket frame of {len} octets exceeds the maximum of {max}"
                )
            }
        }
    }
}

impl std::error::Error for FrameError {}

const TYPE_MASK: u8 = 0b0000_0111;
const LEN_BIT_25: u8 = 0b0000_1000;
const RESERVED_MASK: u8 = 0b1111_0000;

/// Decodes the frame header at the start of `buf` and checks its length against `max_len` (the maximum the
/// router announced, see [`max_len`]). `Ok(None)`: fewer than 4 octets are available.
///
/// The length is checked as soon as the header is complete, so a peer cannot make the caller buffer a payload
/// it is going to refuse.
pub fn parse_header(buf: &[u8], max_len: usize) -> Result<Option<FrameHeader>, FrameError> {
    let Some(&[first, l1, l2, l3]) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    if first & RESERVED_MASK != 0 {
        return Err(FrameError::ReservedBits);
    }
    let kind = FrameKind::from_code(first & TYPE_MASK)
        .ok_or(FrameError::UnknownType(first & TYPE_MASK))?;
    let len_24 = u32::from_be_bytes([0, l1, l2, l3]) as usize;
    let len = match (first & LEN_BIT_25 != 0, len_24) {
        (false, len) => len,
        (true, 0) => LEN_MAX,
        (true, _) => return Err(FrameError::LengthOverflow),
    };
    if len > max_len {
        return Err(FrameError::TooLong { len, max: max_len });
    }
    Ok(Some(FrameHeader { kind, len }))
}

/// Finds the first complete frame in `buf`, checking its length against `max_len` as [`parse_header`] does.
/// `Ok(None)`: the header or the payload is not complete yet (nothing is consumed). Otherwise the frame
/// occupies `buf[..frame.payload.end]`; the payload is `buf[frame.payload]`.
pub fn parse_frame(buf: &[u8], max_len: usize) -> Result<Option<Frame>, FrameError> {
    let Some(header) = parse_header(buf, max_len)? else {
        return Ok(None);
    };
    // `len <= LEN_MAX`, so the sum cannot overflow.
    let end = HEADER_LEN + header.len;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some(Frame {
        kind: header.kind,
        payload: HEADER_LEN..end,
    }))
}

/// The header of an outgoing frame of `len` octets (at most [`LEN_MAX`]; exactly 2^24 sets the 25th length
/// bit). The caller keeps `len` within the peer's `peer_max_len`, which is never above 2^24.
pub fn write_header(kind: FrameKind, len: usize) -> [u8; 4] {
    debug_assert!(
        len <= LEN_MAX,
        "RawSocket frame of {len} octets exceeds 2^24"
    );
    let len_bit_25 = if len == LEN_MAX { LEN_BIT_25 } else { 0 };
    let [_, l1, l2, l3] = (len as u32).to_be_bytes();
    [kind.code() | len_bit_25, l1, l2, l3]
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: [Serializer; 2] = [Serializer::Json, Serializer::MsgPack];

    #[test]
    fn max_len_covers_512_bytes_to_16_mib() {
        assert_eq!(max_len(0), 512);
        assert_eq!(max_len(1), 1024);
        assert_eq!(max_len(15), 16 * 1024 * 1024);
        assert_eq!(max_len(200), LEN_MAX);
        assert_eq!(exponent_for(0), 0);
        assert_eq!(exponent_for(512), 0);
        assert_eq!(exponent_for(513), 1);
        assert_eq!(exponent_for(LEN_MAX), 15);
        assert_eq!(exponent_for(usize::MAX), 15);
    }

    #[test]
    fn handshake_accepts_json_and_msgpack() {
        // Client: JSON, accepts 2^(9+15) = 16 MiB. Router announces 2^(9+6) = 32 KiB.
        assert_eq!(
            handle_handshake([0x7F, 0xF1, 0, 0], &BOTH, 6),
            HandshakeOutcome::Accept {
                serializer: Serializer::Json,
                peer_max_len: LEN_MAX,
                reply: [0x7F, 0x61, 0, 0],
            }
        );
        // Client: MessagePack, accepts 512 octets. Router announces 16 MiB.
        assert_eq!(
            handle_handshake([0x7F, 0x02, 0, 0], &BOTH, 15),
            HandshakeOutcome::Accept {
                serializer: Serializer::MsgPack,
                peer_max_len: 512,
                reply: [0x7F, 0xF2, 0, 0],
            }
        );
    }

    #[test]
    fn handshake_accepts_cbor_when_offered() {
        assert_eq!(
            handle_handshake([0x7F, 0xF3, 0, 0], &Serializer::ALL, 15),
            HandshakeOutcome::Accept {
                serializer: Serializer::Cbor,
                peer_max_len: LEN_MAX,
                reply: [0x7F, 0xF3, 0, 0],
            }
        );
    }

    #[test]
    fn handshake_refuses_unsupported_serializers_with_error_1() {
        for id in [0u8, 3, 4, 15] {
            assert_eq!(
                handle_handshake([0x7F, 0x30 | id, 0, 0], &BOTH, 9),
                HandshakeOutcome::Reject {
                    reply: [0x7F, 0x10, 0, 0],
                    reason: HandshakeError::SerializerUnsupported(id),
                },
                "serializer {id}"
            );
        }
        // Spoken by kreisel but not offered on this listener (CBOR is refused above for the same reason).
        assert_eq!(
            handle_handshake([0x7F, 0x32, 0, 0], &[Serializer::Json], 9),
            HandshakeOutcome::Reject {
                reply: [0x7F, 0x10, 0, 0],
                reason: HandshakeError::SerializerUnsupported(2),
            }
        );
    }

    #[test]
    fn handshake_refuses_reserved_octets_with_error_3() {
        for hello in [
            [0x7F, 0x31, 1, 0],
            [0x7F, 0x31, 0, 0x80],
            [0x7F, 0x30, 0xFF, 0xFF],
        ] {
            assert_eq!(
                handle_handshake(hello, &BOTH, 9),
                HandshakeOutcome::Reject {
                    reply: [0x7F, 0x30, 0, 0],
                    reason: HandshakeError::ReservedBits,
                }
            );
        }
    }

    #[test]
    fn handshake_without_magic_is_not_rawsocket() {
        assert_eq!(
            handle_handshake(*b"GET ", &BOTH, 9),
            HandshakeOutcome::NotRawSocket
        );
        assert_eq!(
            handle_handshake([0x7E, 0x31, 0, 0], &BOTH, 9),
            HandshakeOutcome::NotRawSocket
        );
    }

    #[test]
    fn reject_replies_for_every_error_code() {
        assert_eq!(
            reject_reply(ERROR_SERIALIZER_UNSUPPORTED),
            [0x7F, 0x10, 0, 0]
        );
        assert_eq!(reject_reply(ERROR_MAX_LEN_UNACCEPTABLE), [0x7F, 0x20, 0, 0]);
        assert_eq!(reject_reply(ERROR_RESERVED_BITS), [0x7F, 0x30, 0, 0]);
        assert_eq!(reject_reply(ERROR_CONNECTION_LIMIT), [0x7F, 0x40, 0, 0]);
        assert_eq!(HandshakeError::ReservedBits.code(), ERROR_RESERVED_BITS);
        assert_eq!(
            HandshakeError::SerializerUnsupported(7).code(),
            ERROR_SERIALIZER_UNSUPPORTED
        );
    }

    #[test]
    fn header_round_trips() {
        for kind in [FrameKind::Message, FrameKind::Ping, FrameKind::Pong] {
            for len in [0, 1, 125, 65_536, LEN_MAX - 1, LEN_MAX] {
                let header = write_header(kind, len);
                assert_eq!(
                    parse_header(&header, LEN_MAX),
                    Ok(Some(FrameHeader { kind, len })),
                    "{kind:?} {len}"
                );
            }
        }
    }

    #[test]
    fn header_encoding_is_the_spec_s() {
        assert_eq!(write_header(FrameKind::Message, 0), [0, 0, 0, 0]);
        assert_eq!(write_header(FrameKind::Message, 1), [0, 0, 0, 1]);
        assert_eq!(write_header(FrameKind::Ping, 0x01_02_03), [1, 1, 2, 3]);
        assert_eq!(
            write_header(FrameKind::Pong, LEN_MAX - 1),
            [2, 0xFF, 0xFF, 0xFF]
        );
        assert_eq!(write_header(FrameKind::Message, LEN_MAX), [0x08, 0, 0, 0]);
    }

    #[test]
    fn header_needs_four_octets() {
        assert_eq!(parse_header(&[], LEN_MAX), Ok(None));
        assert_eq!(parse_header(&[0, 0, 0], LEN_MAX), Ok(None));
        assert_eq!(parse_frame(&[0, 0, 0], LEN_MAX), Ok(None));
    }

    #[test]
    fn header_refuses_unknown_types_and_reserved_bits() {
        for t in 3..=7u8 {
            assert_eq!(
                parse_header(&[t, 0, 0, 1], LEN_MAX),
                Err(FrameError::UnknownType(t))
            );
        }
        for bit in 4..=7 {
            assert_eq!(
                parse_header(&[1 << bit, 0, 0, 1], LEN_MAX),
                Err(FrameError::ReservedBits)
            );
        }
    }

    #[test]
    fn bit_25_is_only_valid_for_exactly_16_mib() {
        assert_eq!(
            parse_header(&[0x08, 0, 0, 0], LEN_MAX),
            Ok(Some(FrameHeader {
                kind: FrameKind::Message,
                len: LEN_MAX
            }))
        );
        assert_eq!(
            parse_header(&[0x08, 0, 0, 1], LEN_MAX),
            Err(FrameError::LengthOverflow)
        );
        assert_eq!(
            parse_header(&[0x09, 0xFF, 0xFF, 0xFF], LEN_MAX),
            Err(FrameError::LengthOverflow)
        );
        // 16 MiB is refused by a router that announced less.
        assert_eq!(
            parse_header(&[0x08, 0, 0, 0], LEN_MAX - 1),
            Err(FrameError::TooLong {
                len: LEN_MAX,
                max: LEN_MAX - 1
            })
        );
    }

    #[test]
    fn frames_longer_than_announced_are_refused_from_the_header_alone() {
        let max = max_len(0);
        assert_eq!(
            parse_header(&write_header(FrameKind::Message, max), max),
            Ok(Some(FrameHeader {
                kind: FrameKind::Message,
                len: max
            }))
        );
        assert_eq!(
            parse_frame(&write_header(FrameKind::Message, max + 1), max),
            Err(FrameError::TooLong { len: max + 1, max })
        );
        assert_eq!(
            parse_header(&write_header(FrameKind::Ping, max + 1), max),
            Err(FrameError::TooLong { len: max + 1, max })
        );
    }

    #[test]
    fn parse_frame_waits_for_the_payload_and_leaves_what_follows() {
        let mut buf = write_header(FrameKind::Message, 3).to_vec();
        buf.extend_from_slice(b"[6]");
        buf.extend_from_slice(&write_header(FrameKind::Ping, 2));
        buf.push(b'x');
        for cut in 0..7 {
            assert_eq!(parse_frame(&buf[..cut], 512), Ok(None), "cut {cut}");
        }
        let frame = parse_frame(&buf, 512);
        assert_eq!(
            frame,
            Ok(Some(Frame {
                kind: FrameKind::Message,
                payload: 4..7
            }))
        );
        assert_eq!(&buf[4..7], b"[6]");
        assert_eq!(parse_frame(&buf[7..], 512), Ok(None));
        buf.push(b'y');
        assert_eq!(
            parse_frame(&buf[7..], 512),
            Ok(Some(Frame {
                kind: FrameKind::Ping,
                payload: 4..6
            }))
        );
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            FrameError::UnknownType(5).to_string(),
            "unknown RawSocket frame type 5"
        );
        assert_eq!(
            FrameError::TooLong { len: 513, max: 512 }.to_string(),
            "RawSocket frame of 513 octets exceeds the maximum of 512"
        );
        assert!(!FrameError::ReservedBits.to_string().is_empty());
        assert!(!FrameError::LengthOverflow.to_string().is_empty());
        assert!(!HandshakeError::ReservedBits.to_string().is_empty());
    }

    proptest::proptest! {
        #[test]
        fn parse_frame_never_panics(buf in proptest::collection::vec(proptest::num::u8::ANY, 0..64), max in 0usize..=LEN_MAX) {
            if let Ok(Some(frame)) = parse_frame(&buf, max) {
                proptest::prop_assert!(frame.payload.end <= buf.len());
                proptest::prop_assert!(frame.payload.len() <= max);
            }
        }
    }
}
