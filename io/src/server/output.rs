//! Output: the engine's sink (encode once per serializer, frame, queue), flushing with backpressure, closing.

use std::cmp::Reverse;
use std::sync::atomic::Ordering;
use std::time::Instant;

use kreisel_codec::{Message, Serializer};
use kreisel_engine::link::{PeerMessage, ShardSet};
use kreisel_engine::{ConnId, Peer, Recipients, Router, Sink};
use slab::Slab;
use tracing::{debug, info, warn};

use super::http::Mail;
use super::link::Link;
use super::shard::Shard;
use super::timers::TimerKind;
use super::{conn_index, LINGER};
use crate::config::SlowConsumer;
use crate::conn::{CloseCause, Conn, Framing};
use crate::deflate::ShardDeflate;
use crate::framer::Batched;
use crate::outbox::{FrameId, FrameStore, HEADER_MAX};
use crate::websocket;

/// How long a recipient above 3/4 of `outbox_max` may stall its producers before it has drained below half of it
/// again (see `Outbound::enqueue`): a subscriber slightly slower than its publisher catches up within it; one that
/// does not read at all then stops costing the publisher's other subscribers anything until it is cut off.
const STALL_GRACE_MS: u32 = 500;

/// How recently a recipient with a backlog must have taken bytes from its outbox (its socket accepted a write) for
/// its producers to be paused on its account: one that does not read would not catch up in any pause.
const DRAINING_MS: u32 = 100;

/// Whether a message that pushed a recipient's outbox past 3/4 of `outbox_max` pauses its producer (10 ms, see
/// [`super::input::STALL`]), so that a recipient reading a little slower than its producer sends catches up
/// instead of being cut off. Only for a recipient that is reading: its socket took all we wrote last (the backlog
/// built up within this turn), or bytes from a backlog of more than a quarter of `outbox_max` within the last
/// [`DRAINING_MS`] (see `Shard::flush`); one that does not read
/// costs the producer's other recipients nothing, reaches its limit and is cut off (or, under the drop policy,
/// misses what does not fit). And only while the backlog is fresh: its first [`STALL_GRACE_MS`] above 3/4, until
/// it drains below half. One that stays above 3/4 for longer is not catching up, and pausing on its account would
/// only hold back every other recipient of the producer.
pub(super) fn stalls(conn: &mut Conn, now32: u32) -> bool {
    if conn.pressured_since_ms == 0 {
        conn.pressured_since_ms = now32 | 1;
    }
    let reading = !conn.write_blocked
        || (conn.drained_ms != 0 && now32.wrapping_sub(conn.drained_ms) < DRAINING_MS);
    reading && now32.wrapping_sub(conn.pressured_since_ms) < STALL_GRACE_MS
}

/// The engine's sink over the connections of one shard, and its link to the others.
pub(super) struct Outbound<'s> {
    pub(super) policy: SlowConsumer,
    pub(super) events_dropped: &'s mut u64,
    pub(super) conns: &'s mut Slab<Conn>,
    pub(super) frames: &'s mut FrameStore,
    pub(super) dirty: &'s mut Vec<usize>,
    pub(super) doomed: &'s mut Vec<(usize, u32, CloseCause)>,
    pub(super) outbox_max: usize,
    /// Set when a message pushed a recipient's outbox past 3/4 of `outbox_max`.
    pub(super) pressure: &'s mut bool,
    /// Now, in the connections' wrapping loop milliseconds (for [`STALL_GRACE_MS`]).
    pub(super) now32: u32,
    link: &'s mut Link,
    /// What MQTT connections need to turn the engine's messages into packets (see `mqtt.rs`).
    pub(super) listeners: &'s [super::ListenerInfo],
    pub(super) mqtt: &'s mut super::mqtt::OutScratch,
    /// Messages to the HTTP services' sessions (see [`super::http`]).
    bridge_mail: &'s mut Vec<Mail>,
    /// The shard's compressors for permessage-deflate.
    deflate: &'s mut ShardDeflate,
    /// Frames built for batched or compressed connections from the message being sent, shared by the recipients
    /// that need the same one (emptied after each message).
    derived: &'s mut Vec<Derived>,
}

/// A frame built from a message's shared frame for connections that need another layout (batched subprotocols)
/// or compression: one per (layout, compression parameters) and message, shared like the frame it comes from.
#[derive(Clone, Copy, Debug)]
pub(super) struct Derived {
    source: FrameId,
    key: DeriveKey,
    frame: FrameId,
    compressed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DeriveKey {
    /// Compressed with the connection's own context: never shared.
    own: bool,
    batched: Batched,
    /// permessage-deflate without context takeover: (level, window bits, min_size).
    deflate: Option<(u32, u8, usize)>,
}

/// The frame connection `conn` gets for the message in `source`, and whether it is compressed: laid out for its
/// batched subprotocol and compressed as it negotiated; shared through `derived` unless the connection compresses
/// with its own context.
fn derive(
    frames: &mut FrameStore,
    deflate: &mut ShardDeflate,
    derived: &mut Vec<Derived>,
    conn: &mut Conn,
    source: FrameId,
) -> (FrameId, bool) {
    let Framing::WebSocket {
        batched,
        deflate: compress,
        ..
    } = conn.framing
    else {
        return (source, false);
    };
    let params = (conn.deflate.as_deref())
        .filter(|_| compress)
        .map(|d| (d.params, d.takes_over()));
    let own_context = params.is_some_and(|(_, own)| own);
    let key = DeriveKey {
        own: own_context,
        batched,
        deflate: params.map(|(p, _)| (p.level, p.server_window_bits, p.min_size)),
    };
    if !own_context {
        if let Some(d) = derived.iter().find(|d| d.source == source && d.key == key) {
            return (d.frame, d.compressed);
        }
    }
    let laid = match batched {
        Batched::No => source,
        Batched::Json { separator } => {
            let frame = frames.alloc();
            let mut bytes = std::mem::take(frames.bytes_mut(frame));
            bytes.extend_from_slice(frames.bytes(source));
            bytes.push(separator);
            *frames.bytes_mut(frame) = bytes;
            frame
        }
        Batched::Length => {
            let frame = frames.alloc();
            let mut bytes = std::mem::take(frames.bytes_mut(frame));
            let message = frames.bytes(source);
            bytes.extend_from_slice(&(message.len() as u32).to_be_bytes());
            bytes.extend_from_slice(message);
            *frames.bytes_mut(frame) = bytes;
            frame
        }
    };
    let (frame, compressed) = match params {
        Some((params, _)) => {
            let out = frames.alloc();
            let input = std::mem::take(frames.bytes_mut(laid));
            let mut output = std::mem::take(frames.bytes_mut(out));
            let compressed =
                deflate.compress(conn.deflate.as_deref_mut(), &params, &input, &mut output);
            *frames.bytes_mut(laid) = input;
            *frames.bytes_mut(out) = output;
            if compressed {
                if laid != source {
                    frames.discard(laid);
                }
                (out, true)
            } else {
                frames.discard(out);
                (laid, false)
            }
        }
        None => (laid, false),
    };
    if !own_context || frame != source {
        derived.push(Derived {
            source,
            key,
            frame,
            compressed,
        });
    }
    (frame, compressed)
}

impl Outbound<'_> {
    fn encode(&mut self, serializer: Serializer, msg: &Message<'_>) -> FrameId {
        let frame = self.frames.alloc();
        serializer.encode(msg, self.frames.bytes_mut(frame));
        frame
    }

    /// Queues `frame` as a WAMP message for connection `id`. A `droppable` message (an EVENT) is dropped instead
    /// of disconnecting the recipient when the policy is `slow_consumer = "drop"`.
    fn enqueue(&mut self, id: ConnId, frame: FrameId, droppable: bool) {
        let len = self.frames.bytes(frame).len();
        let outbox_max = self.outbox_max;
        let (index, generation) = conn_index(id);
        let Some(conn) = self
            .conns
            .get_mut(index)
            .filter(|c| c.generation == generation)
        else {
            if let Some(service) = crate::http::service_of(id) {
                let bytes = self.frames.bytes(frame).to_vec();
                self.bridge_mail.push(Mail::Message(service, bytes));
            }
            return;
        };
        if conn.closing.is_some() || conn.framing == Framing::None {
            return;
        }
        let mut header = [0u8; HEADER_MAX];
        let mut header_len = match conn.framing.message_header(len, &mut header) {
            Ok(n) => n,
            Err(too_long) => {
                warn!(peer = %conn.peer, len, max = too_long.max, "message longer than the peer accepts; closing");
                self.doomed
                    .push((index, generation, CloseCause::TooLongForPeer));
                return;
            }
        };
        if conn.outbox.queued_bytes() > outbox_max {
            // Already over the limit and doomed: queue nothing more.
            return;
        }
        if droppable
            && self.policy == SlowConsumer::Drop
            && conn.outbox.queued_bytes() + header_len + len > outbox_max
        {
            *self.events_dropped += 1;
            if !conn.dropping {
                conn.dropping = true;
                warn!(peer = %conn.peer, queued = conn.outbox.queued_bytes(), "slow consumer: dropping events");
            }
            return;
        }
        let mut frame = frame;
        if !conn.framing.plain() {
            // Decided to send it (a compressor with context must see exactly what the peer receives): the
            // connection's own layout and compression.
            let compressed;
            (frame, compressed) = derive(self.frames, self.deflate, self.derived, conn, frame);
            let len = self.frames.bytes(frame).len();
            if let Ok(n) = conn.framing.message_header(len, &mut header) {
                header_len = n;
            }
            if compressed {
                header[0] |= websocket::COMPRESSED;
            }
        }
        let was_empty = conn.outbox.is_empty();
        conn.outbox.push(self.frames, &header[..header_len], frame);
        let queued = conn.outbox.queued_bytes();
        if queued > outbox_max {
            self.doomed
                .push((index, generation, CloseCause::SlowConsumer));
            return;
        }
        if queued > outbox_max / 4 * 3 && stalls(conn, self.now32) {
            *self.pressure = true;
        }
        if was_empty {
            self.dirty.push(index);
        }
    }

    /// An ABORT (authentication failures, protocol violations, refused joins) is logged with the peer's address,
    /// which only this layer knows, so that tools such as fail2ban can act on it. (ABORT's `details.message` is the
    /// field `detail`: a field `message` would clash with the log message's key in JSON logs.)
    fn log_abort(&self, to: Peer, reason: &str, details: &kreisel_codec::Dict<'_>) {
        let (index, generation) = conn_index(to.conn);
        let Some(conn) = self.conns.get(index).filter(|c| c.generation == generation) else {
            return;
        };
        let message = details.get("message").and_then(|m| m.as_str());
        info!(
            peer = %conn.peer,
            %reason,
            detail = %message.as_deref().unwrap_or(""),
            "session aborted"
        );
    }

    pub(super) fn finish(&mut self, frame: FrameId) {
        // A frame nobody queued (all recipients gone) goes straight back to the pool.
        if self.frames.refs(frame) == 0 {
            self.frames.discard(frame);
        }
    }

    /// Releases the frames built for batched or compressed recipients of the message just sent.
    fn finish_derived(&mut self) {
        while let Some(derived) = self.derived.pop() {
            if derived.frame != derived.source {
                self.finish(derived.frame);
            }
        }
    }
}

impl Sink for Outbound<'_> {
    fn send(&mut self, to: Peer, msg: &Message<'_>) {
        if super::mqtt::is_mqtt(to.conn) {
            return self.mqtt_send(to, msg);
        }
        if let Message::Abort { reason, details } = msg {
            self.log_abort(to, reason, details);
        }
        let frame = self.encode(to.serializer, msg);
        self.enqueue(to.conn, frame, false);
        if !self.derived.is_empty() {
            self.finish_derived();
        }
        self.finish(frame);
    }

    fn send_many(&mut self, to: Recipients<'_>, msg: &Message<'_>) {
        // One encoding per serializer, shared by every recipient speaking it.
        let mut frames: [Option<FrameId>; Serializer::ALL.len()] = [None; Serializer::ALL.len()];
        let mut mqtt = super::mqtt::EventFrames::default();
        for peer in to.iter() {
            if super::mqtt::is_mqtt(peer.conn) {
                self.mqtt_event(*peer, msg, &mut mqtt);
                continue;
            }
            let slot = peer.serializer as usize;
            let frame = match frames[slot] {
                Some(frame) => frame,
                None => {
                    let frame = self.encode(peer.serializer, msg);
                    frames[slot] = Some(frame);
                    frame
                }
            };
            self.enqueue(peer.conn, frame, true);
        }
        if !self.derived.is_empty() {
            self.finish_derived();
        }
        for frame in frames.into_iter().flatten() {
            self.finish(frame);
        }
        mqtt.finish(self.frames);
    }

    fn close(&mut self, to: Peer) {
        let (index, generation) = conn_index(to.conn);
        if let Some(conn) = self
            .conns
            .get_mut(index)
            .filter(|c| c.generation == generation)
        {
            if begin_close(conn, self.frames, CloseCause::Engine) {
                self.dirty.push(index);
            }
        } else if let Some(service) = crate::http::service_of(to.conn) {
            self.bridge_mail.push(Mail::Close(service));
        }
    }

    fn peer(&mut self, to: ShardSet, msg: &PeerMessage<'_>) {
        self.link
            .send_peer(to, |buffer| kreisel_engine::link::encode(msg, buffer));
    }

    fn transport(&mut self, to: Peer) -> Option<kreisel_engine::TransportInfo> {
        let (index, generation) = conn_index(to.conn);
        let conn = self
            .conns
            .get(index)
            .filter(|c| c.generation == generation)?;
        Some(conn.transport_info(to.serializer))
    }
}

impl Shard {
    pub(super) fn with_sink<R>(
        &mut self,
        f: impl FnOnce(&mut Router, &mut Outbound<'_>) -> R,
    ) -> R {
        let mut sink = Outbound {
            policy: self.config.limits.slow_consumer,
            events_dropped: &mut self.stats.events_dropped,
            conns: &mut self.conns,
            frames: &mut self.frames,
            dirty: &mut self.dirty,
            doomed: &mut self.doomed,
            outbox_max: self.config.limits.outbox_max,
            pressure: &mut self.pressure,
            now32: self.shared.start.elapsed().as_millis() as u32,
            link: &mut self.link,
            bridge_mail: &mut self.bridges.mail,
            deflate: &mut self.deflate,
            derived: &mut self.derived,
            listeners: &self.shared.listeners,
            mqtt: &mut self.mqtt.output,
        };
        f(&mut self.router, &mut sink)
    }

    /// Queues raw bytes (handshake replies, HTTP responses, control frames) for a connection.
    pub(super) fn send_raw(&mut self, index: usize, header: &[u8], bytes: &[u8]) {
        let frame = self.frames.alloc();
        self.frames.bytes_mut(frame).extend_from_slice(bytes);
        let conn = &mut self.conns[index];
        let was_empty = conn.outbox.is_empty();
        conn.outbox.push(&mut self.frames, header, frame);
        if was_empty {
            self.dirty.push(index);
        }
        if self.frames.refs(frame) == 0 {
            self.frames.discard(frame);
        }
    }

    /// Closes doomed connections and flushes every connection with output, until nothing changes; then sends
    /// what waits for other shards and rings them.
    pub(super) fn settle(&mut self) {
        loop {
            if !self.bridges.mail.is_empty() {
                self.bridge_mail();
            }
            if self.frames.live_memory() > self.memory_share {
                self.cut_largest_outboxes();
            }
            while let Some((index, generation, cause)) = self.doomed.pop() {
                if self
                    .conns
                    .get(index)
                    .is_some_and(|c| c.generation == generation)
                {
                    self.close_now(index, cause);
                }
            }
            // Wake the shards this turn sent to before writing to this shard's own sockets, so that they deliver
            // to theirs meanwhile instead of after (a publication's subscribers on another shard would otherwise
            // wait for every local write).
            self.link.flush(&self.shared.doorbells);
            let dirty = std::mem::take(&mut self.dirty);
            if dirty.is_empty() {
                break;
            }
            for index in dirty.iter().copied() {
                self.flush(index);
            }
            let mut dirty = dirty;
            dirty.clear();
            if self.dirty.is_empty() {
                self.dirty = dirty;
            }
        }
        self.shared.outbox_bytes[usize::from(self.id)]
            .store(self.frames.live_memory(), Ordering::Relaxed);
        self.link.flush(&self.shared.doorbells);
        if !self.link.congested() && !self.link_paused.is_empty() {
            self.pending_read.append(&mut self.link_paused);
        }
    }

    /// This shard's outboxes hold more than its share of `limits.memory_max`: if all shards' outboxes together
    /// (as the others last published) pass the limit, disconnects the connections with the largest outboxes here
    /// until this shard is within its share or the total within the limit (each logged and counted; a frame
    /// other outboxes share stays until they are done with it). With one shard: the largest outboxes until the
    /// total is within the limit.
    fn cut_largest_outboxes(&mut self) {
        let memory_max = self.config.limits.memory_max;
        let me = usize::from(self.id);
        let others: usize = (self.shared.outbox_bytes.iter().enumerate())
            .filter(|&(shard, _)| shard != me)
            .map(|(_, bytes)| bytes.load(Ordering::Relaxed))
            .sum();
        while self.frames.live_memory() > self.memory_share
            && self.frames.live_memory() + others > memory_max
        {
            let largest = (self.conns.iter())
                .map(|(index, conn)| (conn.outbox.queued_bytes(), index))
                .filter(|&(queued, _)| queued > 0)
                .max();
            let Some((queued, index)) = largest else {
                break;
            };
            self.stats.memory_cuts += 1;
            warn!(
                peer = %self.conns[index].peer,
                queued,
                memory = self.frames.live_memory(),
                limit = memory_max,
                "outboxes over limits.memory_max: disconnecting the largest"
            );
            self.remove(index, Some(CloseCause::MemoryBudget));
        }
    }

    fn flush(&mut self, index: usize) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        if conn.write_blocked {
            return;
        }
        let before = conn.outbox.queued_bytes();
        let flushed = conn
            .outbox
            .flush(&mut self.frames, &mut conn.stream)
            .and_then(|empty| {
                if empty {
                    conn.stream.flush_pending()
                } else {
                    Ok(false)
                }
            });
        let outbox_max = self.config.limits.outbox_max;
        let after = conn.outbox.queued_bytes();
        if after < before && after > outbox_max / 4 {
            // Reading from a backlog (the clock is read only then): see `output::stalls`.
            conn.drained_ms = self.shared.start.elapsed().as_millis() as u32 | 1;
        }
        if after < outbox_max / 2 {
            // It caught up: the next time it falls behind, its producers are stalled for it again.
            conn.pressured_since_ms = 0;
        }
        match flushed {
            Ok(true) => {
                conn.dropping = false;
                if let Some(cause) = conn.closing {
                    self.remove(index, Some(cause));
                } else if conn.read_paused {
                    self.pending_read.push(index);
                }
            }
            Ok(false) => {
                conn.write_blocked = true;
                if conn.closing.is_some() {
                    let generation = conn.generation;
                    self.timers.push(Reverse((
                        Instant::now() + LINGER,
                        index,
                        generation,
                        TimerKind::Linger,
                    )));
                }
            }
            Err(e) => {
                debug!(error = %e, "write failed");
                self.remove(index, None);
            }
        }
    }

    /// Marks a connection to be closed without flushing at the end of this turn. Used while its input is being
    /// processed, where it must stay in the slab.
    pub(super) fn abandon(&mut self, index: usize, cause: CloseCause) {
        let conn = &mut self.conns[index];
        if conn.closing.is_none() {
            conn.closing = Some(cause);
        }
        let generation = conn.generation;
        self.doomed.push((index, generation, cause));
    }

    /// Closes a connection without flushing (slow consumer, limits), telling the engine.
    fn close_now(&mut self, index: usize, cause: CloseCause) {
        if cause == CloseCause::SlowConsumer {
            self.stats.slow_consumers += 1;
            let conn = &self.conns[index];
            warn!(
                peer = %conn.peer,
                queued = conn.outbox.queued_bytes(),
                limit = self.config.limits.outbox_max,
                "slow consumer: outbox over limits.outbox_max; disconnecting"
            );
        }
        self.remove(index, Some(cause));
    }

    pub(super) fn remove(&mut self, index: usize, cause: Option<CloseCause>) {
        let Some(mut conn) = self.conns.try_remove(index) else {
            return;
        };
        let _ = self.poll.registry().deregister(conn.stream.source());
        conn.stream.shutdown();
        conn.outbox.clear(&mut self.frames);
        super::mqtt::forget(&mut conn, &mut self.frames);
        self.partial_bytes -= conn.held_input as usize;
        self.shared.connections.fetch_sub(1, Ordering::SeqCst);
        if let Some(ip) = conn.counted_ip() {
            self.shared.release_ip(ip);
        }
        if conn.http_busy {
            self.http_abandoned(index, conn.generation);
        }
        debug!(peer = %conn.peer, ?cause, "connection closed");
        if let Some(handle) = conn.session {
            self.with_sink(|router, sink| router.handle_close(handle, sink));
        }
    }
}

/// Marks `conn` as closing once its outbox is flushed; a WebSocket connection gets its Close frame (with the
/// code in `conn.ws_close`) queued last. Returns whether the connection was not closing before.
pub(super) fn begin_close(conn: &mut Conn, frames: &mut FrameStore, cause: CloseCause) -> bool {
    if conn.closing.is_some() {
        return false;
    }
    conn.closing = Some(cause);
    if matches!(conn.framing, Framing::WebSocket { .. }) {
        let frame = frames.alloc();
        let (code, reason) = conn
            .ws_close
            .as_deref()
            .copied()
            .unwrap_or((websocket::CLOSE_NORMAL, ""));
        websocket::close_frame(code, reason, frames.bytes_mut(frame));
        conn.outbox.push(frames, &[], frame);
    }
    true
}
