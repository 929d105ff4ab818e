//! WAMP RawSocket, client side: the 4-octet handshake and the 4-octet frame header.

use kreisel_codec::Serializer;

/// First octet of both handshake messages.
pub const MAGIC: u8 = 0x7F;
/// The length exponent this client announces: `2^(9+15)` = 16 MiB, the protocol's maximum.
pub const LENGTH_NIBBLE: u8 = 0xF;
/// Frame header size.
pub const HEADER_LEN: usize = 4;

/// RawSocket frame types (low 3 bits of the first header octet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameType {
    Message,
    Ping,
    Pong,
}

/// The client's opening handshake.
pub fn handshake_request(ser: Serializer) -> [u8; 4] {
    [MAGIC, (LENGTH_NIBBLE << 4) | ser.rawsocket_id(), 0, 0]
}

/// Checks the router's handshake reply and returns the largest message the router accepts, in bytes.
pub fn handshake_reply(reply: [u8; 4], ser: Serializer) -> Result<usize, String> {
    if reply[0] != MAGIC {
        return Err(format!(
            "not a RawSocket router: handshake reply starts with {:#04x}",
            reply[0]
        ));
    }
    let nibble_high = reply[1] >> 4;
    let nibble_low = reply[1] & 0x0F;
    if nibble_low == 0 {
        let why = match nibble_high {
            0 => "illegal (error code 0)",
            1 => "serializer unsupported",
            2 => "maximum message length unacceptable",
            3 => "use of reserved bits",
            4 => "maximum connection count reached",
            _ => "unknown error code",
        };
        return Err(format!(
            "router refused the RawSocket handshake: {why} (code {nibble_high})"
        ));
    }
    if nibble_low != ser.rawsocket_id() {
        return Err(format!(
            "router answered with serializer {nibble_low}, but {} ({}) was requested",
            ser.rawsocket_id(),
            ser.name()
        ));
    }
    Ok(1usize << (9 + nibble_high as usize))
}

/// The header of a frame of `len` payload bytes (at most 16 MiB: the caller checks the peer's maximum).
pub fn header(kind: FrameType, len: usize) -> [u8; 4] {
    debug_assert!(len <= 1 << 24);
    let mut first = match kind {
        FrameType::Message => 0,
        FrameType::Ping => 1,
        FrameType::Pong => 2,
    };
    if len == 1 << 24 {
        // The 25th length bit (bit 3 of the first octet), set only for exactly 16 MiB.
        first |= 0x08;
    }
    [first, (len >> 16) as u8, (len >> 8) as u8, len as u8]
}

/// Parses a frame header: `(type, payload length)`.
pub fn parse_header(h: [u8; 4], len_max: usize) -> Result<(FrameType, usize), String> {
    let kind = match h[0] & 0x07 {
        0 => FrameType::Message,
        1 => FrameType::Ping,
        2 => FrameType::Pong,
        other => return Err(format!("RawSocket frame of reserved type {other}")),
    };
    if h[0] & 0xF0 != 0 {
        return Err(format!(
            "RawSocket frame header uses reserved bits ({:#04x})",
            h[0]
        ));
    }
    let mut len = (h[1] as usize) << 16 | (h[2] as usize) << 8 | h[3] as usize;
    if h[0] & 0x08 != 0 {
        len |= 1 << 24;
    }
    if len > len_max {
        return Err(format!(
            "RawSocket frame of {len} bytes exceeds the announced maximum of {len_max}"
        ));
    }
    Ok((kind, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake() {
        assert_eq!(handshake_request(Serializer::Json), [0x7F, 0xF1, 0, 0]);
        assert_eq!(handshake_request(Serializer::MsgPack), [0x7F, 0xF2, 0, 0]);
        assert_eq!(handshake_request(Serializer::Cbor), [0x7F, 0xF3, 0, 0]);
        assert_eq!(
            handshake_reply([0x7F, 0xF1, 0, 0], Serializer::Json),
            Ok(1 << 24)
        );
        assert_eq!(
            handshake_reply([0x7F, 0x02, 0, 0], Serializer::MsgPack),
            Ok(512)
        );
        let refused =
            handshake_reply([0x7F, 0x10, 0, 0], Serializer::Json).expect_err("error reply");
        assert!(refused.contains("serializer unsupported"), "{refused}");
        assert!(handshake_reply([0x7F, 0x40, 0, 0], Serializer::Json)
            .expect_err("error")
            .contains("connection count"));
        assert!(
            handshake_reply([0x7F, 0xF2, 0, 0], Serializer::Json).is_err(),
            "wrong serializer"
        );
        assert!(handshake_reply(*b"HTTP", Serializer::Json).is_err());
    }

    #[test]
    fn header_round_trip() {
        for (kind, len) in [
            (FrameType::Message, 0),
            (FrameType::Message, 1),
            (FrameType::Ping, 300),
            (FrameType::Pong, 0xABCDEF),
            (FrameType::Message, (1 << 24) - 1),
        ] {
            assert_eq!(parse_header(header(kind, len), 1 << 24), Ok((kind, len)));
        }
        assert_eq!(header(FrameType::Message, 0x010203), [0, 1, 2, 3]);
        assert_eq!(header(FrameType::Ping, 5), [1, 0, 0, 5]);
    }

    #[test]
    fn sixteen_mebibytes_uses_the_25th_bit() {
        let h = header(FrameType::Message, 1 << 24);
        assert_eq!(h, [0x08, 0, 0, 0]);
        assert_eq!(parse_header(h, 1 << 24), Ok((FrameType::Message, 1 << 24)));
    }

    #[test]
    fn bad_headers() {
        assert!(
            parse_header([3, 0, 0, 0], 1 << 24).is_err(),
            "reserved type"
        );
        assert!(
            parse_header([0x10, 0, 0, 0], 1 << 24).is_err(),
            "reserved bits"
        );
        assert!(
            parse_header([0, 0, 2, 1], 512).is_err(),
            "longer than announced"
        );
        assert_eq!(
            parse_header([0, 0, 2, 0], 512),
            Ok((FrameType::Message, 512))
        );
    }
}
