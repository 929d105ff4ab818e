//! The transports behind one interface. After its handshake, a connection's input goes through a [`Framer`]
//! (RawSocket or WebSocket: [`AnyFramer`]) that finds complete frames in place and says what each meant; its
//! output is framed by [`Framing`], a copy of what the write side needs (kept apart from the framer because the
//! event loop takes the framer out of the connection while it handles that connection's input, and the engine's
//! answers to the same connection are framed meanwhile).

use crate::outbox::HEADER_MAX;
use crate::{rawsocket, websocket};

/// What one complete frame meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound<'b> {
    /// A complete WAMP message.
    Message(&'b [u8]),
    /// A ping: answer with a pong carrying `payload` ([`Framing::control`]).
    Ping(&'b [u8]),
    /// A pong (answering our ping, or unsolicited).
    Pong,
    /// Part of a fragmented message, now held by the framer.
    Fragment,
    /// The peer closes (a WebSocket Close): echo `code` and close.
    Close(u16),
    /// A complete WAMP message compressed with permessage-deflate; `text`: it must be UTF-8 once inflated.
    Compressed(&'b [u8], bool),
}

/// The peer broke the transport protocol or a limit: end the connection, with a WebSocket Close carrying
/// `close` where there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub reason: String,
    pub close: Option<websocket::CloseReason>,
}

/// A transport's reading side.
pub trait Framer {
    /// The first complete frame at the start of `buf`: `Ok(None)` when it is incomplete (nothing consumed),
    /// else the octets it occupied and what it meant. A frame over the limit is refused as soon as its header is
    /// complete.
    fn read<'b>(&'b mut self, buf: &'b mut [u8]) -> Result<Option<(usize, Inbound<'b>)>, Fault>;
    /// The longest message accepted now.
    fn message_max(&self) -> usize;
    /// Changes it (a session that joined a realm may send longer messages than one that has not).
    fn set_message_max(&mut self, message_max: usize);
    /// Octets the framer itself holds for a fragmented message, and whether one is open.
    fn assembly(&self) -> (usize, bool);
}

/// RawSocket framing: a 4-octet header per frame, messages and pings in the same stream.
#[derive(Debug)]
pub struct RawSocketFramer {
    /// The maximum frame length the router announced in its handshake reply (at most 2^24).
    announced_max: u32,
    message_max: u32,
}

impl RawSocketFramer {
    pub fn new(announced_max: usize, message_max: usize) -> RawSocketFramer {
        RawSocketFramer {
            announced_max: u32::try_from(announced_max).unwrap_or(u32::MAX),
            message_max: u32::try_from(message_max).unwrap_or(u32::MAX),
        }
    }
}

impl Framer for RawSocketFramer {
    fn read<'b>(&'b mut self, buf: &'b mut [u8]) -> Result<Option<(usize, Inbound<'b>)>, Fault> {
        // Pings may carry up to 512 octets even before the session joined.
        let max = self.announced_max.min(self.message_max.max(512)) as usize;
        let frame = match rawsocket::parse_frame(buf, max) {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(None),
            Err(e) => {
                return Err(Fault {
                    reason: e.to_string(),
                    close: None,
                })
            }
        };
        let consumed = frame.payload.end;
        let payload = &buf[frame.payload];
        let inbound = match frame.kind {
            rawsocket::FrameKind::Message => Inbound::Message(payload),
            rawsocket::FrameKind::Ping => Inbound::Ping(payload),
            rawsocket::FrameKind::Pong => Inbound::Pong,
        };
        Ok(Some((consumed, inbound)))
    }

    fn message_max(&self) -> usize {
        self.message_max as usize
    }

    fn set_message_max(&mut self, message_max: usize) {
        self.message_max = u32::try_from(message_max).unwrap_or(u32::MAX);
    }

    fn assembly(&self) -> (usize, bool) {
        (0, false)
    }
}

/// WebSocket framing (RFC 6455, server side): masked client frames, fragmentation, control frames.
#[derive(Debug)]
pub struct WebSocketFramer {
    reader: websocket::FrameReader,
}

impl WebSocketFramer {
    pub fn new(message_max: usize) -> WebSocketFramer {
        WebSocketFramer {
            reader: websocket::FrameReader::new(message_max),
        }
    }

    /// A framer for a connection that negotiated permessage-deflate.
    pub fn with_deflate(message_max: usize) -> WebSocketFramer {
        let mut reader = websocket::FrameReader::new(message_max);
        reader.set_deflate(true);
        WebSocketFramer { reader }
    }
}

impl Framer for WebSocketFramer {
    fn read<'b>(&'b mut self, buf: &'b mut [u8]) -> Result<Option<(usize, Inbound<'b>)>, Fault> {
        let (consumed, event) = match self.reader.read(buf) {
            Ok(Some(read)) => read,
            Ok(None) => return Ok(None),
            Err(close) => {
                return Err(Fault {
                    reason: close.reason.to_owned(),
                    close: Some(close),
                })
            }
        };
        let inbound = match event {
            websocket::Event::Message { data, .. } => Inbound::Message(data),
            websocket::Event::Ping(payload) => Inbound::Ping(payload),
            websocket::Event::Pong(_) => Inbound::Pong,
            websocket::Event::Fragment => Inbound::Fragment,
            websocket::Event::Compressed { data, text } => Inbound::Compressed(data, text),
            // A Close without a code is answered with 1000.
            websocket::Event::Close { code, .. } => {
                Inbound::Close(code.unwrap_or(websocket::CLOSE_NORMAL))
            }
        };
        Ok(Some((consumed, inbound)))
    }

    fn message_max(&self) -> usize {
        self.reader.message_max()
    }

    fn set_message_max(&mut self, message_max: usize) {
        self.reader.set_message_max(message_max);
    }

    fn assembly(&self) -> (usize, bool) {
        (self.reader.held_bytes(), self.reader.assembling())
    }
}

/// Either framer, dispatched statically.
#[derive(Debug)]
pub enum AnyFramer {
    RawSocket(RawSocketFramer),
    WebSocket(WebSocketFramer),
}

impl Framer for AnyFramer {
    fn read<'b>(&'b mut self, buf: &'b mut [u8]) -> Result<Option<(usize, Inbound<'b>)>, Fault> {
        match self {
            AnyFramer::RawSocket(f) => f.read(buf),
            AnyFramer::WebSocket(f) => f.read(buf),
        }
    }

    fn message_max(&self) -> usize {
        match self {
            AnyFramer::RawSocket(f) => f.message_max(),
            AnyFramer::WebSocket(f) => f.message_max(),
        }
    }

    fn set_message_max(&mut self, message_max: usize) {
        match self {
            AnyFramer::RawSocket(f) => f.set_message_max(message_max),
            AnyFramer::WebSocket(f) => f.set_message_max(message_max),
        }
    }

    fn assembly(&self) -> (usize, bool) {
        match self {
            AnyFramer::RawSocket(f) => f.assembly(),
            AnyFramer::WebSocket(f) => f.assembly(),
        }
    }
}

/// How messages to a connection are framed, once its transport handshake is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Handshake not done: only raw bytes (handshake replies) are sent.
    None,
    /// RawSocket frames no longer than `peer_max_len` (at most 2^24).
    RawSocket { peer_max_len: u32 },
    /// WebSocket text (JSON) or binary frames; `batched`: the batched subprotocol's layout; `deflate`:
    /// permessage-deflate was negotiated. Either one makes the write side build a frame of its own for the
    /// connection (see [`Framing::plain`]).
    WebSocket {
        text: bool,
        batched: Batched,
        deflate: bool,
    },
}

/// How a batched WebSocket subprotocol lays out the WAMP messages of one WebSocket message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batched {
    /// Not batched: one WAMP message per WebSocket message.
    No,
    /// JSON: each message followed by `separator`. The spec's is 0x1e (ASCII RS); autobahn-python writes 0x18
    /// (its `b"\30"` is octal), so kreisel answers a client with the separator the client uses.
    Json { separator: u8 },
    /// MessagePack and CBOR: each message preceded by its length (4 octets, big-endian).
    Length,
}

/// The spec's separator of batched JSON messages (ASCII record separator).
pub const RECORD_SEPARATOR: u8 = 0x1e;
/// The separator autobahn-python writes and expects instead (octal 30).
pub const AUTOBAHN_SEPARATOR: u8 = 0x18;

/// A control frame the router sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Ping,
    Pong,
}

/// A WAMP message longer than the peer accepts (RawSocket: the length it announced).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLong {
    pub max: usize,
}

impl Framing {
    /// WebSocket framing for the messages of `serializer`, plain (neither batched nor compressed).
    pub fn websocket(text: bool) -> Framing {
        Framing::WebSocket {
            text,
            batched: Batched::No,
            deflate: false,
        }
    }

    /// Whether a connection's messages are the shared frames as they are (no batching layout, no compression).
    pub fn plain(self) -> bool {
        !matches!(
            self,
            Framing::WebSocket {
                batched: Batched::Json { .. } | Batched::Length,
                ..
            } | Framing::WebSocket { deflate: true, .. }
        )
    }

    /// Writes the header of a WAMP message of `len` octets into `header`; returns its length (0 before the
    /// handshake, when nothing but raw bytes goes out).
    pub fn message_header(
        self,
        len: usize,
        header: &mut [u8; HEADER_MAX],
    ) -> Result<usize, TooLong> {
        match self {
            Framing::RawSocket { peer_max_len } => {
                let peer_max_len = peer_max_len as usize;
                if len > peer_max_len {
                    return Err(TooLong { max: peer_max_len });
                }
                header[..4]
                    .copy_from_slice(&rawsocket::write_header(rawsocket::FrameKind::Message, len));
                Ok(4)
            }
            Framing::WebSocket { text, .. } => {
                let opcode = if text {
                    websocket::OpCode::Text
                } else {
                    websocket::OpCode::Binary
                };
                let mut ws = [0u8; 10];
                let n = websocket::write_header(opcode, true, len, &mut ws);
                header[..n].copy_from_slice(&ws[..n]);
                Ok(n)
            }
            Framing::None => Ok(0),
        }
    }

    /// Appends a whole control frame carrying `payload` to `out` (nothing before the handshake).
    pub fn control(self, kind: Control, payload: &[u8], out: &mut Vec<u8>) {
        match self {
            Framing::RawSocket { .. } => {
                let kind = match kind {
                    Control::Ping => rawsocket::FrameKind::Ping,
                    Control::Pong => rawsocket::FrameKind::Pong,
                };
                out.extend_from_slice(&rawsocket::write_header(kind, payload.len()));
                out.extend_from_slice(payload);
            }
            Framing::WebSocket { .. } => {
                let opcode = match kind {
                    Control::Ping => websocket::OpCode::Ping,
                    Control::Pong => websocket::OpCode::Pong,
                };
                websocket::control_frame(opcode, payload, out);
            }
            Framing::None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rawsocket_framer_reads_messages_and_pings_and_refuses_long_frames() {
        let mut framer = RawSocketFramer::new(rawsocket::max_len(15), 1024);
        let mut buf = Vec::new();
        buf.extend_from_slice(&rawsocket::write_header(rawsocket::FrameKind::Message, 3));
        buf.extend_from_slice(b"[1]");
        buf.extend_from_slice(&rawsocket::write_header(rawsocket::FrameKind::Ping, 2));
        buf.extend_from_slice(b"hi");
        let (n, inbound) = framer.read(&mut buf).expect("valid").expect("complete");
        assert_eq!((n, inbound), (7, Inbound::Message(b"[1]")));
        let (n, inbound) = framer
            .read(&mut buf[7..])
            .expect("valid")
            .expect("complete");
        assert_eq!((n, inbound), (6, Inbound::Ping(b"hi")));
        assert_eq!(framer.read(&mut buf[7..9]), Ok(None));
        let mut long = rawsocket::write_header(rawsocket::FrameKind::Message, 1025).to_vec();
        let fault = framer.read(&mut long).expect_err("over message_max");
        assert!(fault.reason.contains("1025"), "{}", fault.reason);
        assert_eq!(fault.close, None);
        framer.set_message_max(4096);
        assert_eq!(framer.read(&mut long), Ok(None), "now only incomplete");
    }

    #[test]
    fn websocket_framer_reports_close_codes_and_faults() {
        let mut framer = WebSocketFramer::new(1024);
        // A masked Close with code 1001 (mask 0: the payload as is).
        let mut close = vec![0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE9];
        let (n, inbound) = framer.read(&mut close).expect("valid").expect("complete");
        assert_eq!((n, inbound), (8, Inbound::Close(1001)));
        // An unmasked client frame is a protocol error with code 1002.
        let mut unmasked = vec![0x81, 0x01, b'x'];
        let fault = framer.read(&mut unmasked).expect_err("unmasked");
        assert_eq!(
            fault.close.map(|c| c.code),
            Some(websocket::CLOSE_PROTOCOL_ERROR)
        );
    }

    #[test]
    fn framing_writes_headers_and_refuses_what_the_peer_cannot_take() {
        let mut header = [0u8; HEADER_MAX];
        let rs = Framing::RawSocket { peer_max_len: 100 };
        assert_eq!(rs.message_header(100, &mut header), Ok(4));
        assert_eq!(&header[..4], &[0, 0, 0, 100]);
        assert_eq!(
            rs.message_header(101, &mut header),
            Err(TooLong { max: 100 })
        );
        let ws = Framing::websocket(true);
        assert_eq!(ws.message_header(300, &mut header), Ok(4));
        assert_eq!(&header[..4], &[0x81, 126, 1, 44]);
        assert_eq!(Framing::None.message_header(5, &mut header), Ok(0));
        let mut out = Vec::new();
        rs.control(Control::Pong, b"ab", &mut out);
        assert_eq!(out, [2, 0, 0, 2, b'a', b'b']);
        out.clear();
        ws.control(Control::Ping, b"ab", &mut out);
        assert_eq!(out, [0x89, 2, b'a', b'b']);
    }
}
