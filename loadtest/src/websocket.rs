//! WebSocket (RFC 6455), client side, just what WAMP needs: the opening handshake with a subprotocol, masked
//! client frames, and parsing of the router's (unmasked) frames. Written here rather than taken from tungstenite
//! so that sending a message is one encode plus one masked copy into the connection's output buffer.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha1::{Digest, Sha1};

/// The GUID of RFC 6455 section 1.3, appended to the key before hashing.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest HTTP response head accepted before giving up.
pub const RESPONSE_HEAD_MAX: usize = 16 * 1024;
/// Largest header a frame can have: 2 octets, 8 of extended length, 4 of mask.
pub const HEADER_MAX: usize = 14;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn code(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    fn from_code(code: u8) -> Option<Opcode> {
        Some(match code {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// The base64 `Sec-WebSocket-Key` for 16 random octets.
pub fn key(nonce: [u8; 16]) -> String {
    BASE64.encode(nonce)
}

/// The `Sec-WebSocket-Accept` value a server must answer for `key`.
pub fn accept(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// The opening handshake request.
pub fn handshake_request(
    host: &str,
    port: u16,
    path: &str,
    key: &str,
    subprotocol: &str,
) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {subprotocol}\r\n\
         User-Agent: kreisel-loadtest\r\n\r\n"
    )
}

/// Looks for a complete response head in `buf`. `Ok(None)`: need more bytes. `Ok(Some(n))`: the response is valid
/// and takes the first `n` bytes (frames may follow). `Err`: the router refused or answered wrongly.
pub fn handshake_response(
    buf: &[u8],
    key: &str,
    subprotocol: &str,
) -> Result<Option<usize>, String> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > RESPONSE_HEAD_MAX {
            return Err(format!(
                "WebSocket handshake response head exceeds {RESPONSE_HEAD_MAX} bytes"
            ));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end])
        .map_err(|_| "WebSocket handshake response is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut parts = status.splitn(3, ' ');
    let (version, code) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if !version.starts_with("HTTP/1.") || code != "101" {
        return Err(format!("router refused the WebSocket upgrade: `{status}`"));
    }
    let (mut upgrade, mut accept_ok, mut protocol) = (false, false, None);
    let expected_accept = accept(key);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "upgrade" => upgrade = value.eq_ignore_ascii_case("websocket"),
            "sec-websocket-accept" => accept_ok = value == expected_accept,
            "sec-websocket-protocol" => protocol = Some(value.to_owned()),
            _ => {}
        }
    }
    if !upgrade {
        return Err("WebSocket handshake response lacks `Upgrade: websocket`".into());
    }
    if !accept_ok {
        return Err(
            "WebSocket handshake response has a wrong or missing Sec-WebSocket-Accept".into(),
        );
    }
    match protocol {
        Some(p) if p == subprotocol => Ok(Some(end + 4)),
        Some(p) => Err(format!(
            "router chose subprotocol `{p}`, but `{subprotocol}` was requested"
        )),
        None => Err(format!(
            "router did not accept subprotocol `{subprotocol}` (serializer not offered there?)"
        )),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Appends one complete (FIN) client frame: header, `mask`, and `payload` XOR-ed with the mask.
pub fn write_frame(opcode: Opcode, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    out.reserve(HEADER_MAX + payload.len());
    out.push(0x80 | opcode.code());
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// XORs `data` with the repeating 4-octet `mask` (mask offset 0 at `data[0]`), eight octets at a time.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// A parsed frame header of a server frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub opcode: Opcode,
    /// Header length in bytes (payload starts there).
    pub header_len: usize,
    pub payload_len: usize,
    /// Servers must not mask; kept to unmask tolerant peers' frames anyway.
    pub mask: Option<[u8; 4]>,
}

/// Parses the frame header at the start of `buf`; `Ok(None)` when more bytes are needed.
pub fn parse_header(buf: &[u8], payload_max: usize) -> Result<Option<FrameHeader>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(format!(
            "WebSocket frame uses reserved bits ({b0:#04x}); no extension was negotiated"
        ));
    }
    let opcode = Opcode::from_code(b0 & 0x0F)
        .ok_or_else(|| format!("WebSocket opcode {:#x} is reserved", b0 & 0x0F))?;
    let fin = b0 & 0x80 != 0;
    let masked = b1 & 0x80 != 0;
    let (mut header_len, payload_len) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (4, u16::from_be_bytes([buf[2], buf[3]]) as usize)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut len = [0u8; 8];
            len.copy_from_slice(&buf[2..10]);
            (
                10,
                usize::try_from(u64::from_be_bytes(len)).unwrap_or(usize::MAX),
            )
        }
        short => (2, short as usize),
    };
    if opcode.is_control() && (payload_len > 125 || !fin) {
        return Err("WebSocket control frame fragmented or longer than 125 bytes".into());
    }
    if payload_len > payload_max {
        return Err(format!(
            "WebSocket frame of {payload_len} bytes exceeds the limit of {payload_max}"
        ));
    }
    let mask = if masked {
        if buf.len() < header_len + 4 {
            return Ok(None);
        }
        let m = [
            buf[header_len],
            buf[header_len + 1],
            buf[header_len + 2],
            buf[header_len + 3],
        ];
        header_len += 4;
        Some(m)
    } else {
        None
    };
    Ok(Some(FrameHeader {
        fin,
        opcode,
        header_len,
        payload_len,
        mask,
    }))
}

/// The status code and reason of a close frame's payload.
pub fn close_reason(payload: &[u8]) -> (Option<u16>, String) {
    if payload.len() < 2 {
        return (None, String::new());
    }
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    (
        Some(code),
        String::from_utf8_lossy(&payload[2..]).into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matches_rfc_example() {
        // RFC 6455 section 1.3.
        assert_eq!(
            accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(key(*b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
    }

    #[test]
    fn handshake_round_trip() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let req = handshake_request("::1", 8080, "/ws", key, "wamp.2.json");
        assert!(
            req.starts_with("GET /ws HTTP/1.1\r\nHost: [::1]:8080\r\n"),
            "{req}"
        );
        assert!(
            req.contains("Sec-WebSocket-Protocol: wamp.2.json\r\n") && req.ends_with("\r\n\r\n")
        );

        let ok = "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: wamp.2.json\r\n\r\n";
        let mut buf = ok.as_bytes().to_vec();
        buf.extend_from_slice(&[0x81, 0x00]);
        assert_eq!(
            handshake_response(&buf, key, "wamp.2.json"),
            Ok(Some(ok.len()))
        );
        assert_eq!(
            handshake_response(&buf[..ok.len() - 1], key, "wamp.2.json"),
            Ok(None)
        );
        assert!(handshake_response(ok.as_bytes(), key, "wamp.2.msgpack")
            .expect_err("protocol")
            .contains("chose"));
        let no_proto = ok.replace("Sec-WebSocket-Protocol: wamp.2.json\r\n", "");
        assert!(handshake_response(no_proto.as_bytes(), key, "wamp.2.json").is_err());
        let bad_accept = ok.replace("s3pP", "xxxx");
        assert!(handshake_response(bad_accept.as_bytes(), key, "wamp.2.json").is_err());
        let refused = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        assert!(handshake_response(refused.as_bytes(), key, "wamp.2.json")
            .expect_err("404")
            .contains("404"));
    }

    #[test]
    fn client_frames_are_masked() {
        for len in [0usize, 5, 125, 126, 1000, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mask = [0x37, 0xFA, 0x21, 0x3D];
            let mut out = Vec::new();
            write_frame(Opcode::Binary, &payload, mask, &mut out);
            let h = parse_header(&out, usize::MAX)
                .expect("valid")
                .expect("complete");
            assert!(h.fin);
            assert_eq!(h.opcode, Opcode::Binary);
            assert_eq!(h.payload_len, len);
            assert_eq!(h.mask, Some(mask));
            assert_eq!(h.header_len + len, out.len());
            let mut body = out[h.header_len..].to_vec();
            apply_mask(&mut body, mask);
            assert_eq!(body, payload, "len {len}");
        }
    }

    #[test]
    fn rfc_masked_hello() {
        // RFC 6455 section 5.7: a masked "Hello".
        let mut out = Vec::new();
        write_frame(Opcode::Text, b"Hello", [0x37, 0xfa, 0x21, 0x3d], &mut out);
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
    }

    #[test]
    fn server_frames() {
        assert_eq!(parse_header(&[0x81], 100), Ok(None));
        let h = parse_header(&[0x81, 0x05, b'H'], 100)
            .expect("ok")
            .expect("complete");
        assert_eq!(
            (h.fin, h.opcode, h.header_len, h.payload_len, h.mask),
            (true, Opcode::Text, 2, 5, None)
        );
        let h = parse_header(&[0x02, 126, 0x01, 0x00], 1000)
            .expect("ok")
            .expect("complete");
        assert_eq!(
            (h.fin, h.opcode, h.header_len, h.payload_len),
            (false, Opcode::Binary, 4, 256)
        );
        assert_eq!(parse_header(&[0x02, 127, 0, 0, 0, 0, 0], 1000), Ok(None));
        let h = parse_header(&[0x80, 127, 0, 0, 0, 0, 0, 1, 0, 0], 1 << 20)
            .expect("ok")
            .expect("complete");
        assert_eq!(
            (h.opcode, h.header_len, h.payload_len),
            (Opcode::Continuation, 10, 65536)
        );
        assert!(
            parse_header(&[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0], 1000).is_err(),
            "over the limit"
        );
        assert!(
            parse_header(&[0xC2, 0], 10).is_err(),
            "RSV1 without extension"
        );
        assert!(parse_header(&[0x83, 0], 10).is_err(), "reserved opcode");
        assert!(parse_header(&[0x09, 0], 10).is_err(), "fragmented ping");
        assert!(
            parse_header(&[0x89, 126, 0, 200], 1000).is_err(),
            "long ping"
        );
    }

    #[test]
    fn mask_is_its_own_inverse() {
        let mut data: Vec<u8> = (0..37).collect();
        apply_mask(&mut data, [1, 2, 3, 4]);
        assert_eq!(&data[..5], &[1, 3, 1, 7, 5]);
        apply_mask(&mut data, [1, 2, 3, 4]);
        assert_eq!(data, (0..37).collect::<Vec<u8>>());
    }

    #[test]
    fn close_payload() {
        assert_eq!(
            close_reason(&[0x03, 0xE8, b'b', b'y', b'e']),
            (Some(1000), "bye".into())
        );
        assert_eq!(close_reason(&[]), (None, String::new()));
    }
}
