//! One accepted connection: its socket, its read buffer, its transport state and its outbox.

use std::io::{self, Read, Write};

use kreisel_codec::Serializer;
use kreisel_engine::SessionHandle;
use mio::net::{TcpStream, UnixStream};

pub use crate::framer::Framing;
use crate::framer::{AnyFramer, Framer};
use crate::mqtt::session::MqttConn;
use crate::outbox::Outbox;
use crate::tls::TlsStream;

/// A connected socket of either family, or TLS over TCP.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    pub fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
            Stream::Tls(s) => s.socket_mut(),
        }
    }

    pub fn shutdown(&mut self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Tls(s) => {
                s.close_notify();
                s.socket().shutdown(std::net::Shutdown::Both)
            }
        };
    }

    /// Sends what a TLS layer still holds after the outbox emptied: `Ok(true)` when everything is on the wire.
    pub fn flush_pending(&mut self) -> io::Result<bool> {
        match self {
            Stream::Tls(s) => s.flush_pending(),
            _ => Ok(true),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
            Stream::Tls(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where a connection stands.
#[derive(Debug)]
pub enum Transport {
    /// Nothing read yet: the first octet tells RawSocket (0x7F) from HTTP.
    Detect,
    /// Waiting for the 4-octet RawSocket handshake.
    RawSocketHandshake,
    /// Reading the HTTP upgrade request.
    HttpUpgrade,
    /// HTTP requests to the listener's services (the HTTP bridge), one after another on a keep-alive connection.
    Http(crate::http::request::Reader),
    /// Handshake done: WAMP messages in `serializer` through the transport's framer.
    Framed {
        serializer: Serializer,
        framer: AnyFramer,
    },
    /// MQTT (over TCP, TLS, a Unix socket, or WebSocket): the session layer's state, which stays here while the
    /// connection's input is handled (the engine's answers need it).
    Mqtt(MqttConn),
    /// Closing: no more input is processed.
    Closed,
}

impl Transport {
    /// Bytes held for a fragmented message being assembled, and whether one is open.
    pub fn assembly(&self) -> (usize, bool) {
        match self {
            Transport::Framed { framer, .. } => framer.assembly(),
            Transport::Mqtt(mqtt) => mqtt.assembly(),
            _ => (0, false),
        }
    }
}

/// A peer's address, in 16 bytes and without a heap allocation for IPv4 (kept by every connection for the logs
/// and `limits.connections_per_ip_max`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerAddr {
    V4([u8; 4], u16),
    V6(Box<std::net::SocketAddrV6>),
    /// A Unix domain socket (its peers have no address).
    Unix,
}

impl PeerAddr {
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match self {
            PeerAddr::V4(ip, _) => Some(std::net::Ipv4Addr::from(*ip).into()),
            PeerAddr::V6(addr) => Some((*addr.ip()).into()),
            PeerAddr::Unix => None,
        }
    }
}

impl From<std::net::SocketAddr> for PeerAddr {
    fn from(addr: std::net::SocketAddr) -> PeerAddr {
        match addr {
            std::net::SocketAddr::V4(v4) => PeerAddr::V4(v4.ip().octets(), v4.port()),
            std::net::SocketAddr::V6(v6) => PeerAddr::V6(Box::new(v6)),
        }
    }
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerAddr::V4(ip, port) => write!(f, "{}:{port}", std::net::Ipv4Addr::from(*ip)),
            PeerAddr::V6(addr) => write!(f, "{addr}"),
            PeerAddr::Unix => f.write_str("unix"),
        }
    }
}

/// Why the router closes a connection (for the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseCause {
    /// The engine asked (after ABORT or a GOODBYE exchange).
    Engine,
    /// The transport handshake was refused or broken.
    Handshake,
    /// The peer broke the transport protocol.
    Protocol,
    /// The peer did not read its messages: its outbox exceeded `limits.outbox_max`.
    SlowConsumer,
    /// A message for the peer exceeds the length it announced.
    TooLongForPeer,
    /// No transport handshake and HELLO within `limits.handshake_timeout_ms`.
    HandshakeTimeout,
    /// Over `limits.connections_max`.
    ConnectionLimit,
    /// Router shutdown.
    Shutdown,
    /// Silent for longer than `limits.idle_timeout_ms`.
    IdleTimeout,
    /// A plain HTTP request (the metrics endpoint, an HTTP service without keep-alive) was answered.
    Served,
    /// It had not joined a realm when `limits.connections_max` was reached, and was the oldest such.
    Evicted,
    /// A frame did not complete within `limits.frame_timeout_ms`.
    FrameTimeout,
    /// Its input would have taken all incomplete frames past `limits.partial_frames_max`.
    InputBudget,
    /// All outboxes together reached `limits.memory_max`, and its was the largest.
    MemoryBudget,
}

#[derive(Debug)]
pub struct Conn {
    pub stream: Stream,
    pub listener: u16,
    /// Distinguishes this connection from earlier ones in the same slab slot (timers, engine ConnIds).
    pub generation: u32,
    pub transport: Transport,
    /// Unread input is `rbuf[..filled]`.
    pub rbuf: Vec<u8>,
    pub filled: u32,
    pub outbox: Outbox,
    pub session: Option<SessionHandle>,
    /// Set when the connection is to be closed once its outbox is flushed.
    pub closing: Option<CloseCause>,
    /// The socket said WouldBlock on the last write: wait for a writable event.
    pub write_blocked: bool,
    /// Input processing is paused because our own replies to this peer pile up unread.
    pub read_paused: bool,
    /// Input processing is paused (until a Resume timer) because this peer's messages filled a recipient's outbox.
    pub stalled: bool,
    /// When the peer last sent anything, and when we last pinged it (loop milliseconds, wrapping: compare with
    /// `wrapping_sub`; elapsed times are exact up to 49 days).
    pub last_rx_ms: u32,
    pub last_ping_ms: u32,
    /// Events are being dropped for this connection (`slow_consumer = "drop"`); cleared when its outbox drains.
    pub dropping: bool,
    /// Opened while over the connection limit: refuse at the transport handshake.
    pub over_limit: bool,
    /// How outgoing messages are framed (kept beside `transport`, which is taken out while input is processed).
    pub framing: Framing,
    /// Close code and reason of the WebSocket Close frame sent when the connection closes (none: 1000, no reason).
    pub ws_close: Option<Box<(u16, &'static str)>>,
    pub peer: PeerAddr,
    /// The peer's IP address is counted in `limits.connections_per_ip_max`.
    pub ip_counted: bool,
    /// Since when (loop milliseconds, wrapping) the connection holds an incomplete frame or fragmented message.
    pub input_since_ms: Option<u32>,
    /// A message or control frame was completed by the current read.
    pub progressed: bool,
    /// Since when (loop milliseconds, wrapping, 0: not) its outbox has been above 3/4 of `outbox_max` without
    /// draining: its producers are stalled for it only at first.
    pub pressured_since_ms: u32,
    /// When (loop milliseconds, wrapping, 0: never) its socket last took bytes from an outbox holding more than a
    /// quarter of `outbox_max`.
    pub drained_ms: u32,
    /// Bytes held for incomplete input (its own read buffer, fragment assembly), as last counted.
    pub held_input: u32,
    /// An HTTP request of this connection waits for the router's answer: its input is not read meanwhile.
    pub http_busy: bool,
    /// An MQTT CONNECT of this connection waits for a dynamic authenticator: its input is not read meanwhile.
    pub mqtt_parked: bool,
    /// permessage-deflate's parameters and (with context takeover) streams, when it was negotiated.
    pub deflate: Option<Box<crate::deflate::ConnDeflate>>,
}

impl Conn {
    pub fn new(
        stream: Stream,
        listener: usize,
        generation: u32,
        (peer, ip_counted): (PeerAddr, bool),
        over_limit: bool,
    ) -> Conn {
        Conn {
            stream,
            // Listeners are numbered by the configuration: far fewer than 65536.
            listener: listener as u16,
            generation,
            transport: Transport::Detect,
            rbuf: Vec::new(),
            filled: 0,
            outbox: Outbox::default(),
            session: None,
            closing: None,
            write_blocked: false,
            read_paused: false,
            stalled: false,
            last_rx_ms: 0,
            last_ping_ms: 0,
            dropping: false,
            over_limit,
            framing: Framing::None,
            ws_close: None,
            peer,
            ip_counted,
            input_since_ms: None,
            progressed: false,
            pressured_since_ms: 0,
            drained_ms: 0,
            held_input: 0,
            http_busy: false,
            mqtt_parked: false,
            deflate: None,
        }
    }

    /// What the engine asks about the transport (dynamic authentication and authorization, SCRAM channel
    /// binding), made when asked: nothing of it is kept per connection.
    pub fn transport_info(&self, serializer: Serializer) -> kreisel_engine::TransportInfo {
        let websocket = matches!(self.framing, Framing::WebSocket { .. });
        let (channel, tls_exporter) = match &self.stream {
            Stream::Tls(tls) => ("tls", tls.tls_exporter()),
            Stream::Tcp(_) => ("tcp", None),
            Stream::Unix(_) => ("unix", None),
        };
        // crossbar's form of the peer: tcp4:ADDRESS:PORT, tcp6:[ADDRESS]:PORT, unix.
        let peer = match &self.peer {
            PeerAddr::V4(..) => format!("tcp4:{}", self.peer),
            PeerAddr::V6(..) => format!("tcp6:{}", self.peer),
            PeerAddr::Unix => "unix".to_string(),
        };
        kreisel_engine::TransportInfo {
            framing: if websocket { "websocket" } else { "rawsocket" },
            channel,
            peer,
            websocket_protocol: websocket.then(|| serializer.subprotocol()),
            tls_exporter,
        }
    }

    /// The peer IP address counted for `limits.connections_per_ip_max`, if any.
    pub fn counted_ip(&self) -> Option<std::net::IpAddr> {
        self.peer.ip().filter(|_| self.ip_counted)
    }

    pub fn serializer(&self) -> Option<Serializer> {
        match &self.transport {
            Transport::Framed { serializer, .. } => Some(*serializer),
            _ => None,
        }
    }
}
