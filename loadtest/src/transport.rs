//! One client connection: a non-blocking stream (TCP or Unix), the transport handshake (RawSocket or WebSocket),
//! and the framing of WAMP messages in both directions (NATS connections only use the stream and the buffers: the
//! protocol delimits its own messages, see [`crate::nats`]). Reader and writer are separate fields so that a caller can
//! hold a decoded message (borrowing the reader's buffer) while it writes the answer.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use kreisel_codec::{Message, Serializer};
use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

use crate::endpoint::Endpoint;
use crate::rawsocket::{self, FrameType};
use crate::websocket::{self, Opcode};

/// Largest message accepted from the router (the RawSocket maximum, 16 MiB, for both transports).
pub const MESSAGE_MAX: usize = 1 << 24;
/// Initial read buffer size; it doubles while reads fill it, up to [`READ_BUFFER_MAX`] (or a larger frame).
const READ_BUFFER_MIN: usize = 8 * 1024;
const READ_BUFFER_MAX: usize = 256 * 1024;

/// A connected (or connecting) stream socket.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Starts a non-blocking connect; completion is signalled by a writable event.
    pub fn connect(endpoint: &Endpoint, addr: Option<SocketAddr>) -> io::Result<Stream> {
        match (endpoint, addr) {
            (Endpoint::RawSocketUnix { path }, _) => Ok(Stream::Unix(UnixStream::connect(path)?)),
            (_, Some(addr)) => {
                let stream = TcpStream::connect(addr)?;
                // Messages are small and latency matters; the writer batches per loop turn itself.
                stream.set_nodelay(true)?;
                Ok(Stream::Tcp(stream))
            }
            (_, None) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TCP endpoint without an address",
            )),
        }
    }

    /// `Ok(true)` once connected, `Ok(false)` while the connect is in progress.
    fn is_connected(&self) -> io::Result<bool> {
        if let Some(e) = self.take_error()? {
            return Err(e);
        }
        let peer = match self {
            Stream::Tcp(s) => s.peer_addr().map(|_| ()),
            Stream::Unix(s) => s.peer_addr().map(|_| ()),
        };
        match peer {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Stream::Tcp(s) => s.take_error(),
            Stream::Unix(s) => s.take_error(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Stream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(registry, token, interests),
            Stream::Unix(s) => s.register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(registry, token, interests),
            Stream::Unix(s) => s.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(registry),
            Stream::Unix(s) => s.deregister(registry),
        }
    }
}

/// Which framing a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    RawSocket,
    WebSocket,
    /// No transport framing and no handshake: the NATS protocol reads [`Reader::buffered`] and writes raw bytes.
    Nats,
}

/// A frame the reader produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// One complete WAMP message.
    Message(&'a [u8]),
    /// A ping: answer it with [`Writer::pong`].
    Ping(&'a [u8]),
    Pong,
    /// The peer closed the WebSocket (status and reason).
    Close(Option<u16>, String),
}

/// Incoming bytes and their deframing.
#[derive(Debug)]
pub struct Reader {
    framing: Framing,
    data: Vec<u8>,
    /// Unconsumed bytes are `data[start..end]`.
    start: usize,
    end: usize,
    /// A fragmented WebSocket message being assembled (its first frame's opcode) and its bytes.
    assembling: Option<Opcode>,
    fragments: Vec<u8>,
    /// The last frame returned was `fragments`: clear it on the next call.
    fragments_returned: bool,
    pub bytes_in: u64,
}

impl Reader {
    pub fn new(framing: Framing) -> Reader {
        Reader {
            framing,
            data: Vec::new(),
            start: 0,
            end: 0,
            assembling: None,
            fragments: Vec::new(),
            fragments_returned: false,
            bytes_in: 0,
        }
    }

    /// One `read` into the buffer. `Ok(0)` is end of stream; `WouldBlock` is passed through.
    pub fn read_from(&mut self, stream: &mut impl Read) -> io::Result<usize> {
        self.read_limited(stream, usize::MAX)
    }

    /// [`Reader::read_from`] of at most `max` bytes (at least 1).
    pub fn read_limited(&mut self, stream: &mut impl Read, max: usize) -> io::Result<usize> {
        self.make_room();
        let end = self.data.len().min(self.end.saturating_add(max.max(1)));
        let n = stream.read(&mut self.data[self.end..end])?;
        self.end += n;
        self.bytes_in += n as u64;
        if self.end == self.data.len() && self.data.len() < READ_BUFFER_MAX {
            // Reads fill the buffer: grow it to make fewer system calls.
            self.data.resize(self.data.len() * 2, 0);
        }
        Ok(n)
    }

    /// Moves unconsumed bytes to the front and guarantees some free space.
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.data.is_empty() {
            self.data.resize(READ_BUFFER_MIN, 0);
        }
        if self.end == self.data.len() && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.data.len() {
            let len = self.data.len() * 2;
            self.data.resize(len, 0);
        }
    }

    /// Makes sure a frame of `total` bytes starting at `start` fits into the buffer once it has arrived.
    fn reserve_frame(&mut self, total: usize) {
        if self.start + total > self.data.len() {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if total > self.data.len() {
                self.data.resize(total, 0);
            }
        }
    }

    /// Bytes received but not consumed (for the transport handshake).
    pub fn buffered(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.end - self.start);
        self.start += n;
    }

    /// The next complete frame in the buffer, if any.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, String> {
        if self.fragments_returned {
            self.fragments.clear();
            self.fragments_returned = false;
        }
        match self.framing {
            Framing::RawSocket => self.next_rawsocket(),
            Framing::WebSocket => self.next_websocket(),
            Framing::Nats => Err("a NATS connection carries no WAMP frames".into()),
        }
    }

    fn next_rawsocket(&mut self) -> Result<Option<Frame<'_>>, String> {
        let avail = self.end - self.start;
        if avail < rawsocket::HEADER_LEN {
            return Ok(None);
        }
        let s = self.start;
        let header = [
            self.data[s],
            self.data[s + 1],
            self.data[s + 2],
            self.data[s + 3],
        ];
        let (kind, len) = rawsocket::parse_header(header, MESSAGE_MAX)?;
        let total = rawsocket::HEADER_LEN + len;
        if avail < total {
            self.reserve_frame(total);
            return Ok(None);
        }
        self.start += total;
        let payload = &self.data[s + rawsocket::HEADER_LEN..s + total];
        Ok(Some(match kind {
            FrameType::Message => Frame::Message(payload),
            FrameType::Ping => Frame::Ping(payload),
            FrameType::Pong => Frame::Pong,
        }))
    }

    fn next_websocket(&mut self) -> Result<Option<Frame<'_>>, String> {
        loop {
            let Some(h) = websocket::parse_header(&self.data[self.start..self.end], MESSAGE_MAX)?
            else {
                return Ok(None);
            };
            let total = h.header_len + h.payload_len;
            if self.end - self.start < total {
                self.reserve_frame(total);
                return Ok(None);
            }
            let s = self.start;
            self.start += total;
            let range = s + h.header_len..s + total;
            if let Some(mask) = h.mask {
                // Servers must not mask; unmask anyway rather than misread the payload.
                websocket::apply_mask(&mut self.data[range.clone()], mask);
            }
            match (h.opcode, self.assembling) {
                (Opcode::Ping, _) => return Ok(Some(Frame::Ping(&self.data[range]))),
                (Opcode::Pong, _) => return Ok(Some(Frame::Pong)),
                (Opcode::Close, _) => {
                    let (code, reason) = websocket::close_reason(&self.data[range]);
                    return Ok(Some(Frame::Close(code, reason)));
                }
                (Opcode::Text | Opcode::Binary, None) if h.fin => {
                    return Ok(Some(Frame::Message(&self.data[range])))
                }
                (Opcode::Text | Opcode::Binary, None) => {
                    self.assembling = Some(h.opcode);
                    self.fragments.extend_from_slice(&self.data[range]);
                }
                (Opcode::Continuation, Some(_)) => {
                    if self.fragments.len() + range.len() > MESSAGE_MAX {
                        return Err(format!(
                            "fragmented WebSocket message exceeds {MESSAGE_MAX} bytes"
                        ));
                    }
                    self.fragments.extend_from_slice(&self.data[range]);
                    if h.fin {
                        self.assembling = None;
                        self.fragments_returned = true;
                        return Ok(Some(Frame::Message(&self.fragments)));
                    }
                }
                (Opcode::Continuation, None) => {
                    return Err("WebSocket continuation frame without a start".into())
                }
                (_, Some(_)) => {
                    return Err("new WebSocket data frame inside a fragmented message".into())
                }
            }
        }
    }
}

/// Outgoing bytes: framed messages waiting to be written.
#[derive(Debug)]
pub struct Writer {
    framing: Framing,
    data: Vec<u8>,
    /// Bytes before `written` have been written.
    written: usize,
    /// Encoding scratch for WebSocket (the header length depends on the payload length).
    scratch: Vec<u8>,
    /// Largest message the router accepts (RawSocket handshake); WebSocket has no announced limit.
    pub peer_len_max: usize,
    /// xorshift state for WebSocket masks. Masks need not be secret here: they defend browsers against cache
    /// poisoning through proxies, and this client talks to a router on loopback.
    rng: u64,
    pub bytes_out: u64,
}

impl Writer {
    pub fn new(framing: Framing, seed: u64) -> Writer {
        Writer {
            framing,
            data: Vec::new(),
            written: 0,
            scratch: Vec::new(),
            peer_len_max: MESSAGE_MAX,
            rng: seed | 1,
            bytes_out: 0,
        }
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.data.len() - self.written
    }

    /// Queues raw bytes (handshakes).
    pub fn push_raw(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
    }

    /// Encodes and frames one WAMP message.
    pub fn send(&mut self, ser: Serializer, msg: &Message<'_>) -> Result<(), String> {
        match self.framing {
            Framing::RawSocket => {
                let at = self.data.len();
                self.data.extend_from_slice(&[0; rawsocket::HEADER_LEN]);
                ser.encode(msg, &mut self.data);
                let len = self.data.len() - at - rawsocket::HEADER_LEN;
                if len > self.peer_len_max {
                    self.data.truncate(at);
                    return Err(format!(
                        "{} of {len} bytes exceeds the router's RawSocket maximum of {}",
                        msg.message_type().name(),
                        self.peer_len_max
                    ));
                }
                self.data[at..at + rawsocket::HEADER_LEN]
                    .copy_from_slice(&rawsocket::header(FrameType::Message, len));
            }
            Framing::WebSocket => {
                self.scratch.clear();
                ser.encode(msg, &mut self.scratch);
                let opcode = if ser.is_text() {
                    Opcode::Text
                } else {
                    Opcode::Binary
                };
                let mask = self.next_mask();
                websocket::write_frame(opcode, &self.scratch, mask, &mut self.data);
            }
            Framing::Nats => return Err("a NATS connection carries no WAMP messages".into()),
        }
        Ok(())
    }

    /// Answers a ping with the same payload.
    pub fn pong(&mut self, payload: &[u8]) {
        match self.framing {
            Framing::RawSocket => {
                self.data
                    .extend_from_slice(&rawsocket::header(FrameType::Pong, payload.len()));
                self.data.extend_from_slice(payload);
            }
            Framing::WebSocket => {
                let mask = self.next_mask();
                websocket::write_frame(Opcode::Pong, payload, mask, &mut self.data);
            }
            Framing::Nats => self.data.extend_from_slice(b"PONG\r\n"),
        }
    }

    /// Forgets everything not yet written (a connection dropped on purpose).
    pub fn discard(&mut self) {
        self.data.clear();
        self.written = 0;
    }

    /// The start of a message frame whose header announces 64 bytes of which only 10 follow: what a client that
    /// dies in the middle of a write leaves behind.
    pub fn partial_frame(&mut self) {
        let body = [b' '; 10];
        match self.framing {
            Framing::RawSocket => {
                self.data
                    .extend_from_slice(&rawsocket::header(FrameType::Message, 64));
                self.data.extend_from_slice(&body);
            }
            Framing::WebSocket => {
                let mask = self.next_mask();
                let mut frame = Vec::new();
                websocket::write_frame(Opcode::Binary, &[b' '; 64], mask, &mut frame);
                // Header (2 octets) and mask (4), then 10 of the 64 payload octets.
                self.data.extend_from_slice(&frame[..6 + body.len()]);
            }
            // The scenarios that leave mid-frame (soak) speak WAMP only.
            Framing::Nats => {}
        }
    }

    /// A WebSocket close frame with status 1000 (nothing for RawSocket, which closes by closing the stream).
    pub fn close(&mut self) {
        if self.framing == Framing::WebSocket {
            let mask = self.next_mask();
            websocket::write_frame(Opcode::Close, &1000u16.to_be_bytes(), mask, &mut self.data);
        }
    }

    fn next_mask(&mut self) -> [u8; 4] {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng as u32).to_ne_bytes()
    }

    /// Writes until everything is out or the socket would block (`Ok` either way: check [`Writer::pending`]).
    pub fn flush_to(&mut self, stream: &mut impl Write) -> io::Result<()> {
        while self.written < self.data.len() {
            match stream.write(&self.data[self.written..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "socket accepted no bytes",
                    ))
                }
                Ok(n) => {
                    self.written += n;
                    self.bytes_out += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.written == self.data.len() {
            self.data.clear();
            self.written = 0;
        } else if self.written > 64 * 1024 && self.written * 2 > self.data.len() {
            // Keep the buffer from creeping: drop the written prefix once it dominates.
            self.data.drain(..self.written);
            self.written = 0;
        }
        Ok(())
    }
}

/// Transport handshake progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// TCP/Unix connect in progress.
    Connecting,
    /// Handshake sent, waiting for the reply.
    Handshaking,
    /// Frames flow.
    Open,
}

/// A connection: stream, handshake state, reader and writer.
#[derive(Debug)]
pub struct Connection {
    pub stream: Stream,
    pub reader: Reader,
    pub writer: Writer,
    pub phase: Phase,
    ser: Serializer,
    /// WebSocket: the key sent, to check the accept header.
    ws_key: String,
}

impl Connection {
    /// Starts connecting and queues the transport handshake.
    pub fn open(
        endpoint: &Endpoint,
        addr: Option<SocketAddr>,
        ser: Serializer,
        seed: u64,
    ) -> io::Result<Connection> {
        let stream = Stream::connect(endpoint, addr)?;
        let framing = match endpoint {
            Endpoint::WebSocket { .. } => Framing::WebSocket,
            Endpoint::RawSocketTcp { .. } | Endpoint::RawSocketUnix { .. } => Framing::RawSocket,
            // MQTT, like NATS, is a bare stream that delimits its own packets.
            Endpoint::Nats { .. } | Endpoint::Mqtt { .. } => Framing::Nats,
        };
        let mut writer = Writer::new(framing, seed);
        let mut ws_key = String::new();
        match endpoint {
            Endpoint::WebSocket { host, port, path } => {
                let mut nonce = [0u8; 16];
                for chunk in nonce.chunks_mut(4) {
                    chunk.copy_from_slice(&writer.next_mask());
                }
                ws_key = websocket::key(nonce);
                let request =
                    websocket::handshake_request(host, *port, path, &ws_key, ser.subprotocol());
                writer.push_raw(request.as_bytes());
            }
            Endpoint::RawSocketTcp { .. } | Endpoint::RawSocketUnix { .. } => {
                writer.push_raw(&rawsocket::handshake_request(ser));
            }
            Endpoint::Nats { .. } | Endpoint::Mqtt { .. } => {}
        }
        Ok(Connection {
            stream,
            reader: Reader::new(framing),
            writer,
            phase: Phase::Connecting,
            ser,
            ws_key,
        })
    }

    /// Advances the handshake after a readiness event. Returns `Ok(true)` once the transport is open; frames that
    /// followed the handshake reply stay in the reader.
    pub fn handle_handshake(&mut self) -> Result<bool, String> {
        if self.phase == Phase::Connecting {
            match self.stream.is_connected() {
                Ok(true) => self.phase = Phase::Handshaking,
                Ok(false) => return Ok(false),
                Err(e) => return Err(format!("connect failed: {e}")),
            }
        }
        if self.reader.framing == Framing::Nats {
            // The server speaks first (INFO): that is the protocol's business, not a transport handshake.
            self.phase = Phase::Open;
        }
        if self.phase == Phase::Open {
            return Ok(true);
        }
        self.writer
            .flush_to(&mut self.stream)
            .map_err(|e| format!("sending the handshake failed: {e}"))?;
        loop {
            match self.reader.read_from(&mut self.stream) {
                Ok(0) => {
                    return Err(
                        "router closed the connection during the transport handshake".into(),
                    )
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("reading the handshake reply failed: {e}")),
            }
            if self.reader.buffered().len() >= websocket::RESPONSE_HEAD_MAX {
                break;
            }
        }
        let buffered = self.reader.buffered();
        match self.reader.framing {
            Framing::RawSocket => {
                if buffered.len() < 4 {
                    return Ok(false);
                }
                let reply = [buffered[0], buffered[1], buffered[2], buffered[3]];
                self.writer.peer_len_max = rawsocket::handshake_reply(reply, self.ser)?;
                self.reader.consume(4);
            }
            Framing::Nats => {}
            Framing::WebSocket => {
                match websocket::handshake_response(buffered, &self.ws_key, self.ser.subprotocol())?
                {
                    Some(n) => self.reader.consume(n),
                    None => return Ok(false),
                }
            }
        }
        self.phase = Phase::Open;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader fed in slices of `step` bytes.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.data.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn collect(framing: Framing, wire: &[u8], step: usize) -> Vec<String> {
        let mut reader = Reader::new(framing);
        let mut source = Trickle { data: wire, step };
        let mut out = Vec::new();
        loop {
            while let Some(frame) = reader.next_frame().expect("valid frames") {
                out.push(match frame {
                    Frame::Message(m) => format!("msg:{}", String::from_utf8_lossy(m)),
                    Frame::Ping(p) => format!("ping:{}", String::from_utf8_lossy(p)),
                    Frame::Pong => "pong".into(),
                    Frame::Close(code, reason) => format!("close:{code:?}:{reason}"),
                });
            }
            match reader.read_from(&mut source) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        out
    }

    #[test]
    fn rawsocket_frames_in_any_split() {
        let mut wire = Vec::new();
        let big = "x".repeat(40_000);
        for (kind, payload) in [
            (FrameType::Message, "[1]"),
            (FrameType::Ping, "hi"),
            (FrameType::Message, big.as_str()),
        ] {
            wire.extend_from_slice(&rawsocket::header(kind, payload.len()));
            wire.extend_from_slice(payload.as_bytes());
        }
        wire.extend_from_slice(&rawsocket::header(FrameType::Pong, 0));
        let expected = vec![
            "msg:[1]".to_owned(),
            "ping:hi".into(),
            format!("msg:{big}"),
            "pong".into(),
        ];
        for step in [1, 3, 4, 7, 1000, 100_000] {
            assert_eq!(
                collect(Framing::RawSocket, &wire, step),
                expected,
                "step {step}"
            );
        }
    }

    #[test]
    fn websocket_frames_fragmented_and_interleaved() {
        // Server frames are unmasked: write them by hand.
        let mut wire = vec![0x81, 3, b'[', b'1', b']'];
        wire.extend_from_slice(&[0x02, 2, b'a', b'b']); // binary, not final
        wire.extend_from_slice(&[0x89, 1, b'p']); // ping in between
        wire.extend_from_slice(&[0x00, 1, b'c']); // continuation
        wire.extend_from_slice(&[0x80, 1, b'd']); // final continuation
        let big = vec![b'y'; 300];
        wire.extend_from_slice(&[0x82, 126, 1, 44]);
        wire.extend_from_slice(&big);
        wire.extend_from_slice(&[0x8A, 0]);
        wire.extend_from_slice(&[0x88, 5, 0x03, 0xE8, b'b', b'y', b'e']);
        let expected = vec![
            "msg:[1]".to_owned(),
            "ping:p".into(),
            "msg:abcd".into(),
            format!("msg:{}", "y".repeat(300)),
            "pong".into(),
            "close:Some(1000):bye".into(),
        ];
        for step in [1, 2, 5, 64, 10_000] {
            assert_eq!(
                collect(Framing::WebSocket, &wire, step),
                expected,
                "step {step}"
            );
        }
    }

    #[test]
    fn websocket_protocol_errors() {
        let mut reader = Reader::new(Framing::WebSocket);
        let mut source = Trickle {
            data: &[0x80, 1, b'x'],
            step: 10,
        };
        reader.read_from(&mut source).expect("read");
        assert!(reader.next_frame().is_err(), "continuation without start");
    }

    #[test]
    fn writer_frames_pongs_and_flushes_partially() {
        let mut w = Writer::new(Framing::RawSocket, 1);
        w.pong(b"abc");
        assert_eq!(w.pending(), 7);
        /// Accepts 3 bytes, then blocks.
        struct Slow(Vec<u8>);
        impl Write for Slow {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.0.len() >= 3 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let n = buf.len().min(3);
                self.0.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut slow = Slow(Vec::new());
        w.flush_to(&mut slow).expect("flush");
        assert_eq!((w.pending(), w.bytes_out), (4, 3));
        let mut sink = Vec::new();
        w.flush_to(&mut sink).expect("flush");
        assert_eq!(w.pending(), 0);
        assert_eq!(sink, [3, b'a', b'b', b'c']);
    }

    #[test]
    fn partial_frames_announce_more_than_they_carry() {
        let mut w = Writer::new(Framing::RawSocket, 1);
        w.partial_frame();
        let mut out = Vec::new();
        w.flush_to(&mut out).expect("flush");
        assert_eq!(out.len(), 14);
        assert_eq!(&out[..4], &rawsocket::header(FrameType::Message, 64));
        let mut w = Writer::new(Framing::WebSocket, 1);
        w.partial_frame();
        let mut out = Vec::new();
        w.flush_to(&mut out).expect("flush");
        let h = websocket::parse_header(&out, 1 << 20)
            .expect("valid header")
            .expect("complete header");
        assert_eq!((h.payload_len, out.len() - h.header_len), (64, 10));
        let mut limited = Reader::new(Framing::RawSocket);
        let mut source = Trickle {
            data: &[1, 2, 3, 4, 5],
            step: 100,
        };
        assert_eq!(limited.read_limited(&mut source, 2).expect("read"), 2);
        assert_eq!(limited.buffered(), [1, 2]);
    }

    #[test]
    fn websocket_writer_masks_with_fresh_keys() {
        let mut w = Writer::new(Framing::WebSocket, 42);
        w.pong(b"ping");
        w.pong(b"ping");
        let mut out = Vec::new();
        w.flush_to(&mut out).expect("flush");
        let first = websocket::parse_header(&out, 125)
            .expect("ok")
            .expect("complete");
        let second = websocket::parse_header(&out[first.header_len + 4..], 125)
            .expect("ok")
            .expect("complete");
        assert_eq!(first.opcode, Opcode::Pong);
        assert_ne!(first.mask, second.mask);
        let mut body = out[first.header_len..first.header_len + 4].to_vec();
        websocket::apply_mask(&mut body, first.mask.expect("masked"));
        assert_eq!(body, b"ping");
    }
}
