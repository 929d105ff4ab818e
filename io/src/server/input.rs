//! Reading and dispatch: bytes from a socket, deframed in place, decoded and handed to the engine.

use std::cmp::Reverse;
use std::io::{self, Read};
use std::time::{Duration, Instant};

use kreisel_codec::Serializer;
use tracing::{debug, info, warn};

use super::shard::Shard;
use super::timers::TimerKind;
use crate::conn::{CloseCause, Framing, Transport};
use crate::deflate::InflateError;
use crate::framer::{Batched, Control, Framer, Inbound, AUTOBAHN_SEPARATOR, RECORD_SEPARATOR};
use crate::{rawsocket, websocket};

/// Bytes read from one connection per loop turn before others get their turn.
const READ_BUDGET: usize = 256 * 1024;
/// Initial size of a connection's own read buffer (used only while it holds an incomplete frame); it grows up to
/// one maximal frame.
const RBUF_INITIAL: usize = 4 * 1024;
/// How long a producer's input is paused when a message it sent pushed a recipient's outbox past 3/4 of
/// `outbox_max` (nats-server's "short stall of the fast producer"): time for the recipient to catch up before it
/// would count as a slow consumer.
pub(super) const STALL: Duration = Duration::from_millis(10);

impl Shard {
    /// Reads what connection `index` has (up to the per-turn budget) and handles every complete frame.
    ///
    /// Bytes are read into the shard's shared buffer and deframed there; only the tail of an incomplete frame is
    /// copied into a buffer of the connection's own (taken from a pool and returned when emptied), so an idle
    /// connection holds no read buffer at all.
    pub(super) fn read(&mut self, index: usize) {
        let pause_at = self.config.limits.outbox_max / 2;
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        if conn.closing.is_some() {
            return;
        }
        if conn.stalled || conn.http_busy || conn.mqtt_parked {
            // A stalled producer: the Resume timer reads on. An HTTP request waiting for its answer, an MQTT CONNECT
            // waiting for a dynamic authenticator: read on once it is answered.
            return;
        }
        // An MQTT client's input is also what frees its output (PUBACKs of QoS 1 deliveries): it is read on, and
        // its outbox stays bounded by `outbox_max`.
        let mqtt = matches!(conn.transport, crate::conn::Transport::Mqtt(_));
        if conn.outbox.queued_bytes() > pause_at && !mqtt {
            // The peer is not reading our answers: stop reading its requests until it catches up.
            conn.read_paused = true;
            return;
        }
        if self.link.congested() {
            // Messages to other shards wait for room: read on once they are through.
            self.link_paused.push(index);
            return;
        }
        conn.read_paused = false;
        let mut budget = READ_BUDGET;
        let mut eof = false;
        loop {
            self.pressure = false;
            let read = if self.conns[index].filled > 0 {
                self.read_own(index)
            } else {
                self.read_shared(index)
            };
            match read {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    let now_ms = self.now_ms();
                    if let Some(conn) = self.conns.get_mut(index) {
                        conn.last_rx_ms = now_ms as u32;
                    }
                    self.account_input(index, now_ms);
                    let Some(conn) = self.conns.get(index) else {
                        return;
                    };
                    if conn.closing.is_some() {
                        break;
                    }
                    if conn.outbox.queued_bytes() > pause_at && !mqtt {
                        self.conns[index].read_paused = true;
                        break;
                    }
                    if conn.http_busy || conn.mqtt_parked {
                        break;
                    }
                    if self.pressure {
                        // What this peer sent fills someone's outbox: give the recipients time to drain.
                        self.stats.producer_stalls += 1;
                        let generation = conn.generation;
                        let until = Instant::now() + STALL;
                        self.conns[index].stalled = true;
                        self.timers
                            .push(Reverse((until, index, generation, TimerKind::Resume)));
                        break;
                    }
                    if self.link.congested() {
                        // What this peer sent fills another shard's mailbox.
                        self.stats.link_stalls += 1;
                        self.link_paused.push(index);
                        break;
                    }
                    if budget == 0 {
                        self.pending_read.push(index);
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!(error = %e, "read failed");
                    eof = true;
                    break;
                }
            }
        }
        if eof {
            self.remove(index, None);
        }
    }

    /// After a read: counts what connection `index` holds for incomplete input against this shard's share of
    /// `partial_frames_max` (closing it if that total would pass the limit), and notes since when its current
    /// frame has been incomplete (for `frame_timeout_ms`: the time restarts whenever a message or control frame
    /// completes).
    fn account_input(&mut self, index: usize, now_ms: u64) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        let (assembly_bytes, assembling) = conn.transport.assembly();
        let own = if conn.filled > 0 { conn.rbuf.len() } else { 0 };
        let held = own + assembly_bytes;
        self.partial_bytes = self.partial_bytes - conn.held_input as usize + held;
        // At most one maximal frame plus an assembly buffer: far below 4 GiB.
        conn.held_input = held as u32;
        let incomplete = conn.filled > 0 || assembling;
        conn.input_since_ms = match conn.input_since_ms {
            _ if !incomplete => None,
            Some(since) if !conn.progressed => Some(since),
            _ => Some(now_ms as u32),
        };
        conn.progressed = false;
        if self.partial_bytes > self.partial_frames_max && conn.closing.is_none() {
            self.stats.partial_frames_refused += 1;
            warn!(
                peer = %conn.peer,
                held,
                total = self.partial_bytes,
                limit = self.partial_frames_max,
                "incomplete frames over limits.partial_frames_max; closing this connection"
            );
            self.abandon(index, CloseCause::InputBudget);
        }
    }

    /// One read into the shared buffer; frames handled in place, an incomplete tail kept by the connection.
    fn read_shared(&mut self, index: usize) -> io::Result<usize> {
        let mut buf = std::mem::take(&mut self.scratch);
        let result = self.conns[index].stream.read(&mut buf);
        if let Ok(n) = result {
            if n > 0 {
                let consumed = self.process_input(index, &mut buf[..n]);
                if consumed < n && self.conns[index].closing.is_none() {
                    let tail = &buf[consumed..n];
                    let mut own = self.rbuf_pool.take();
                    own.resize(tail.len().max(RBUF_INITIAL), 0);
                    own[..tail.len()].copy_from_slice(tail);
                    let conn = &mut self.conns[index];
                    conn.rbuf = own;
                    conn.filled = tail.len() as u32;
                }
            }
        }
        self.scratch = buf;
        result
    }

    /// Handles what connection `index` holds in its own buffer without reading from its socket (an HTTP
    /// connection's next request, which arrived while the previous one waited for its answer).
    pub(super) fn reprocess(&mut self, index: usize) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        let filled = conn.filled as usize;
        if filled == 0 || conn.closing.is_some() {
            return;
        }
        let mut buf = std::mem::take(&mut conn.rbuf);
        let consumed = self.process_input(index, &mut buf[..filled]);
        buf.copy_within(consumed..filled, 0);
        let left = filled - consumed;
        let conn = &mut self.conns[index];
        conn.filled = left as u32;
        if left > 0 {
            conn.rbuf = buf;
        } else {
            self.rbuf_pool.give(buf);
        }
        let now_ms = self.now_ms();
        self.account_input(index, now_ms);
    }

    /// One read into the connection's own buffer, which holds the start of an incomplete frame.
    fn read_own(&mut self, index: usize) -> io::Result<usize> {
        let conn = &mut self.conns[index];
        // One maximal frame, or one HTTP request with its head and chunked framing.
        let slack = match conn.transport {
            Transport::Http(_) => crate::http::request::INPUT_SLACK,
            _ => websocket::HEADER_LEN_MAX + 64,
        };
        let limit = self.config.limits.message_max + slack;
        if conn.filled as usize == conn.rbuf.len() {
            let grown = (conn.rbuf.len() * 2).clamp(RBUF_INITIAL, limit.max(RBUF_INITIAL));
            if grown <= conn.rbuf.len() {
                // A full buffer that cannot grow means the framer is waiting for more than a maximal frame:
                // impossible with correct framers, so treat it as a protocol error rather than spin.
                self.doomed
                    .push((index, conn.generation, CloseCause::Protocol));
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let total = self.partial_bytes + (grown - conn.rbuf.len());
            if total > self.partial_frames_max {
                self.stats.partial_frames_refused += 1;
                warn!(
                    peer = %conn.peer,
                    total,
                    limit = self.partial_frames_max,
                    "incomplete frames over limits.partial_frames_max; closing this connection"
                );
                self.doomed
                    .push((index, conn.generation, CloseCause::InputBudget));
                return Err(io::ErrorKind::WouldBlock.into());
            }
            conn.rbuf.resize(grown, 0);
        }
        let filled = conn.filled as usize;
        let n = conn.stream.read(&mut conn.rbuf[filled..])?;
        if n == 0 {
            return Ok(0);
        }
        let mut buf = std::mem::take(&mut conn.rbuf);
        let end = filled + n;
        let consumed = self.process_input(index, &mut buf[..end]);
        buf.copy_within(consumed..end, 0);
        let left = end - consumed;
        let conn = &mut self.conns[index];
        // The read buffer holds at most one maximal frame.
        conn.filled = left as u32;
        if left > 0 {
            conn.rbuf = buf;
        } else {
            // Emptied: the buffer goes back to the pool (a buffer grown for a big message is freed).
            self.rbuf_pool.give(buf);
        }
        Ok(n)
    }

    /// Deframes and handles every complete frame at the start of `buf`; returns the bytes consumed.
    fn process_input(&mut self, index: usize, buf: &mut [u8]) -> usize {
        if matches!(self.conns[index].transport, Transport::Mqtt(_)) {
            return self.mqtt_input(index, buf);
        }
        let now_ms = self.now_ms();
        let mut transport = std::mem::replace(&mut self.conns[index].transport, Transport::Closed);
        let filled = buf.len();
        let mut pos = 0;
        let mut mqtt = false;
        loop {
            if self.conns[index].closing.is_some() || pos >= filled {
                break;
            }
            let input = &mut buf[pos..filled];
            let step = match &mut transport {
                Transport::Detect => {
                    let listener = &self.shared.listeners[usize::from(self.conns[index].listener)];
                    if listener.mqtt.is_some() && input[0] == crate::mqtt::CONNECT_OCTET {
                        self.mqtt_open(index, None);
                        mqtt = true;
                        break;
                    }
                    transport = match (
                        input[0] == rawsocket::MAGIC,
                        listener.rawsocket,
                        listener.websocket.is_some(),
                    ) {
                        (true, true, _) => Transport::RawSocketHandshake,
                        (false, _, true) => Transport::HttpUpgrade,
                        (false, _, false) if listener.http.is_some() => {
                            Transport::Http(Default::default())
                        }
                        _ => {
                            debug!(peer = %self.conns[index].peer, "unexpected first octet; closing");
                            self.abandon(index, CloseCause::Handshake);
                            break;
                        }
                    };
                    Some(0)
                }
                Transport::RawSocketHandshake => {
                    self.rawsocket_handshake(index, input, &mut transport)
                }
                Transport::HttpUpgrade => self.http_upgrade(index, input, &mut transport),
                Transport::Http(reader) => self.http_request(index, input, reader),
                Transport::Framed { serializer, framer } => {
                    let serializer = *serializer;
                    self.framed(index, input, serializer, framer, now_ms)
                }
                Transport::Closed | Transport::Mqtt(_) => None,
            };
            match step {
                Some(consumed) => pos += consumed,
                None => break,
            }
            if matches!(self.conns[index].transport, Transport::Mqtt(_)) {
                // Upgraded to MQTT over WebSocket: what follows is the MQTT session's.
                mqtt = true;
                break;
            }
        }
        let conn = &mut self.conns[index];
        if matches!(conn.transport, Transport::Closed) {
            conn.transport = transport;
        }
        if mqtt && pos < filled {
            return pos + self.mqtt_input(index, &mut buf[pos..filled]);
        }
        pos
    }

    /// The next frame of an open transport: messages go to the engine, pings are answered, a Close is echoed.
    fn framed<F: Framer>(
        &mut self,
        index: usize,
        input: &mut [u8],
        serializer: Serializer,
        framer: &mut F,
        now_ms: u64,
    ) -> Option<usize> {
        let message_max = self.config.limits.message_max;
        if framer.message_max() < message_max && self.joined(index) {
            framer.set_message_max(message_max);
        }
        let limit = framer.message_max();
        let (consumed, inbound) = match framer.read(input) {
            Ok(Some(read)) => read,
            Ok(None) => return None,
            Err(fault) => {
                if let Some(close) = fault.close {
                    self.conns[index].ws_close = Some(Box::new((close.code, close.reason)));
                }
                self.transport_error(index, &fault.reason);
                return None;
            }
        };
        if inbound != Inbound::Fragment {
            self.conns[index].progressed = true;
        }
        match inbound {
            Inbound::Message(data) => match self.conns[index].framing {
                Framing::WebSocket {
                    batched: Batched::Json { .. } | Batched::Length,
                    ..
                } => self.deliver_batch(index, serializer, data, now_ms),
                _ => self.deliver(index, serializer, data, now_ms),
            },
            Inbound::Compressed(data, text) => {
                self.deliver_compressed(index, serializer, (data, text), limit, now_ms)
            }
            Inbound::Ping(payload) => {
                let mut frame = Vec::with_capacity(payload.len() + 10);
                self.conns[index]
                    .framing
                    .control(Control::Pong, payload, &mut frame);
                self.send_raw(index, &[], &frame);
            }
            Inbound::Pong | Inbound::Fragment => {}
            Inbound::Close(code) => {
                // Echo the peer's code; the engine then cleans up on removal.
                let conn = &mut self.conns[index];
                conn.ws_close = Some(Box::new((code, "")));
                if super::output::begin_close(conn, &mut self.frames, CloseCause::Engine) {
                    self.dirty.push(index);
                }
            }
        }
        Some(consumed)
    }

    /// Whether connection `index` carries a session joined to a realm.
    pub(super) fn joined(&self, index: usize) -> bool {
        (self.conns.get(index))
            .and_then(|conn| conn.session)
            .is_some_and(|handle| self.router.session_info(handle).is_some())
    }

    /// A complete WAMP message from connection `index`: decode it and hand it to the engine.
    fn deliver(&mut self, index: usize, serializer: Serializer, payload: &[u8], now_ms: u64) {
        let Some(handle) = self.conns[index].session else {
            return;
        };
        match serializer.decode(payload) {
            Ok(msg) => {
                self.with_sink(|router, sink| router.handle_message(handle, &msg, now_ms, sink))
            }
            Err(e) => {
                let text = e.to_string();
                self.with_sink(|router, sink| {
                    router.handle_protocol_violation(handle, &text, sink)
                });
            }
        }
    }

    /// A message compressed with permessage-deflate: inflated (bounded by `limit`: a deflate bomb closes the
    /// connection with 1009), then delivered like any other.
    fn deliver_compressed(
        &mut self,
        index: usize,
        serializer: Serializer,
        (data, text): (&[u8], bool),
        limit: usize,
        now_ms: u64,
    ) {
        let mut inflated = std::mem::take(&mut self.inflated);
        let conn_deflate = self.conns[index].deflate.as_deref_mut();
        let fault = match self
            .deflate
            .inflate(conn_deflate, data, limit, &mut inflated)
        {
            Ok(()) if text && std::str::from_utf8(&inflated).is_err() => Some((
                websocket::CLOSE_INVALID_PAYLOAD,
                "text message is not valid UTF-8",
            )),
            Ok(()) => None,
            Err(InflateError::TooBig) => {
                Some((websocket::CLOSE_MESSAGE_TOO_BIG, "message too big"))
            }
            Err(InflateError::Invalid) => Some((
                websocket::CLOSE_INVALID_PAYLOAD,
                "invalid permessage-deflate data",
            )),
        };
        match fault {
            None => match self.conns[index].framing {
                Framing::WebSocket {
                    batched: Batched::Json { .. } | Batched::Length,
                    ..
                } => self.deliver_batch(index, serializer, &inflated, now_ms),
                _ => self.deliver(index, serializer, &inflated, now_ms),
            },
            Some((code, reason)) => {
                info!(peer = %self.conns[index].peer, code, reason, limit, "compressed message refused");
                self.conns[index].ws_close = Some(Box::new((code, reason)));
                self.transport_error(index, reason);
            }
        }
        self.inflated = inflated;
    }

    /// A WebSocket message of a batched subprotocol: each WAMP message in it is delivered in order (JSON:
    /// separated by 0x1e, or autobahn-python's 0x18, whichever the client uses is what it gets back; MessagePack
    /// and CBOR: each preceded by its 4-octet length).
    fn deliver_batch(&mut self, index: usize, serializer: Serializer, data: &[u8], now_ms: u64) {
        let separated = |b: &u8| *b == RECORD_SEPARATOR || *b == AUTOBAHN_SEPARATOR;
        if serializer == Serializer::Json {
            if let Some(&last) = data.last().filter(|b| separated(b)) {
                if let Framing::WebSocket {
                    batched: Batched::Json { separator },
                    ..
                } = &mut self.conns[index].framing
                {
                    *separator = last;
                }
            }
            // A JSON text never holds these control characters unescaped, so splitting is safe.
            for message in data.split(separated).filter(|m| !m.is_empty()) {
                if self.conns[index].closing.is_some() {
                    return;
                }
                self.deliver(index, serializer, message, now_ms);
            }
            return;
        }
        let mut rest = data;
        while !rest.is_empty() && self.conns[index].closing.is_none() {
            let message = rest.split_first_chunk::<4>().and_then(|(len, tail)| {
                let len = u32::from_be_bytes(*len) as usize;
                Some((tail.get(..len)?, tail.get(len..)?))
            });
            let Some((message, tail)) = message else {
                if let Some(handle) = self.conns[index].session {
                    let text = "batched message with a length beyond its end";
                    self.with_sink(|router, sink| {
                        router.handle_protocol_violation(handle, text, sink)
                    });
                }
                return;
            };
            self.deliver(index, serializer, message, now_ms);
            rest = tail;
        }
    }

    /// The peer broke the transport protocol: ABORT its session if it has one, then close.
    fn transport_error(&mut self, index: usize, reason: &str) {
        self.stats.transport_errors += 1;
        let conn = &self.conns[index];
        // With a session (every framed connection has one), its ABORT is logged with the peer's address.
        debug!(peer = %conn.peer, reason, "transport error");
        if let Some(handle) = conn.session {
            self.with_sink(|router, sink| router.handle_protocol_violation(handle, reason, sink));
        }
        if let Some(conn) = self.conns.get_mut(index) {
            if super::output::begin_close(conn, &mut self.frames, CloseCause::Protocol) {
                self.dirty.push(index);
            }
        }
    }
}
