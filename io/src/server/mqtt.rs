//! MQTT connections in the event loop: packets from the client become WAMP messages for the engine, and the
//! engine's output for an MQTT session becomes packets. The state and translations without sockets are
//! [`crate::mqtt::session`]; the mapping as a user sees it is in the README ("MQTT").
//!
//! * Input: an MQTT listener's connection is recognized by its first octet (CONNECT) or by the WebSocket
//!   subprotocol `mqtt`; from then on [`Shard::mqtt_input`] decodes packets in place (a WebSocket connection
//!   deframes first, and keeps the start of a packet a message left incomplete) and hands each to
//!   [`Shard::mqtt_packet`].
//! * Output: the sink ([`Outbound`]) sees an MQTT session by bit 31 of its `ConnId` ([`is_mqtt`]). Control
//!   messages (WELCOME, ABORT, SUBSCRIBED, PUBLISHED, ERROR, GOODBYE) update the session's state and become
//!   CONNACK, SUBACK, PUBACK, PUBREC or DISCONNECT; an EVENT becomes a PUBLISH. A multicast's PUBLISH is built
//!   once per listener, version, QoS and RETAIN flag and shared by every subscriber it fits ([`EventFrames`]);
//!   a QoS 1 delivery gets a small header of its own (its packet id) in front of the shared payload.

use std::borrow::Cow;
use std::sync::Arc;

use kreisel_codec::{Dict, Field, Id, Message, MessageType, Payload, RawValue, Serializer};
use kreisel_engine::uri::MatchPolicy;
use kreisel_engine::{ConnId, Peer};
use tracing::{debug, info};

use super::conn_index;
use super::output::{begin_close, Outbound};
use super::shard::Shard;
use crate::conn::{CloseCause, Conn, Transport};
use crate::framer::{Control, Framer, Inbound, WebSocketFramer};
use crate::mqtt::session::{
    self, arguments, connack_v311, mqtt_payload, name_to_uri_into, reason_code, suback_v311,
    uri_to_name_into, Context, Filter, MqttConn, Outcome, PendingSubscribe, Phase, Request, WsIn,
    RECEIVE_MAX, TOPIC_ALIAS_MAX, WAITING,
};
use crate::mqtt::topic::{filter_to_wamp, shared_subscription, WampFilter};
use crate::mqtt::{
    encode, encode_publish_header, property_id, reason, Ack, ConnAck, Connect, DecodeError,
    Decoder, Disconnect, ErrorAction, Packet, Properties, Property, Publish, QoS, SubAck,
    Subscribe, UnsubAck, Unsubscribe, Version,
};
use crate::outbox::{FrameId, FrameStore, HEADER_MAX};

/// Bit 31 of a `ConnId` marks an MQTT connection (slab indexes stay far below it, and below the HTTP bridge's
/// session IDs, which have it too), so the sink tells MQTT recipients from WAMP ones without looking at the
/// connection.
const MQTT_BIT: u64 = 1 << 31;

pub(super) fn is_mqtt(id: ConnId) -> bool {
    // The HTTP bridge's sessions have IDs with bit 31 set too (`crate::http::session_conn`): not connections.
    id.0 & MQTT_BIT != 0 && crate::http::service_of(id).is_none()
}

/// The shard's reused MQTT buffers: nothing is allocated per message once they have grown.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    /// The input side's (taken out while a packet is handled, since the engine runs meanwhile).
    pub input: InScratch,
    /// The sink's.
    pub output: OutScratch,
    /// CONNECTs waiting for a dynamic authenticator's answer (see [`Shard::mqtt_resume_parked`]).
    pub parked: Vec<Parked>,
}

/// What is left to do of a CONNECT once the engine welcomes its session: the will, and the CONNACK.
#[derive(Debug)]
pub(super) struct Parked {
    index: usize,
    generation: u32,
    rest: ConnectRest,
}

/// The parts of a CONNECT needed after authentication, owned (a CONNECT may wait for a dynamic authenticator).
#[derive(Debug)]
struct ConnectRest {
    /// Will topic, payload and RETAIN.
    will: Option<(String, Vec<u8>, bool)>,
    session_expiry: u32,
    /// The client sent an empty client identifier: CONNACK assigns one.
    assign_id: bool,
    /// The will was handed to the engine as a testament, and waits for the role's dynamic authorizer.
    will_sent: bool,
}

#[derive(Debug, Default)]
pub(super) struct InScratch {
    uri: String,
    args: Vec<u8>,
    options: Vec<u8>,
    message: Vec<u8>,
}

#[derive(Debug, Default)]
pub(super) struct OutScratch {
    name: String,
    payload: Vec<u8>,
    packet: Vec<u8>,
}

/// The PUBLISH frames of one multicast EVENT, each shared by the subscribers it fits: key (listener, version,
/// QoS, RETAIN) -> the whole packet (QoS 0) or the payload (QoS 1), or `None` when the event has no MQTT form
/// there. Frames nobody took are discarded by [`EventFrames::finish`].
#[derive(Default)]
pub(super) struct EventFrames {
    entries: [Option<(EventKey, Built)>; 4],
}

/// A built PUBLISH frame and its length; `None`: the event has no MQTT form there.
type Built = Option<(FrameId, usize)>;

#[derive(Clone, Copy, PartialEq, Eq)]
struct EventKey {
    listener: usize,
    version: Version,
    qos: QoS,
    retain: bool,
}

impl EventFrames {
    fn get(&self, key: EventKey) -> Option<Built> {
        self.entries
            .iter()
            .flatten()
            .find(|(k, _)| *k == key)
            .map(|(_, frame)| *frame)
    }

    /// Keeps `frame` for `key`; `false` when full (the caller then owns the frame).
    fn put(&mut self, key: EventKey, frame: Built) -> bool {
        match self.entries.iter_mut().find(|e| e.is_none()) {
            Some(slot) => {
                *slot = Some((key, frame));
                true
            }
            None => false,
        }
    }

    pub(super) fn finish(&mut self, frames: &mut FrameStore) {
        for (_, frame) in self.entries.iter_mut().filter_map(Option::take) {
            if let Some((frame, _)) = frame {
                if frames.refs(frame) == 0 {
                    frames.discard(frame);
                }
            }
        }
    }
}

fn mqtt_state(conn: &mut Conn) -> Option<&mut MqttConn> {
    match &mut conn.transport {
        Transport::Mqtt(mqtt) => Some(mqtt),
        _ => None,
    }
}

/// Encodes `packet` into a new frame and queues it for `conn` (after its WebSocket header, for MQTT over
/// WebSocket). Returns false when the packet does not encode (a bug: nothing is queued).
fn queue_packet(
    conn: &mut Conn,
    frames: &mut FrameStore,
    dirty: &mut Vec<usize>,
    index: usize,
    packet: &Packet<'_>,
    version: Version,
) -> bool {
    if conn.closing.is_some() {
        return false;
    }
    let frame = frames.alloc();
    if let Err(e) = encode(packet, version, frames.bytes_mut(frame)) {
        debug!(error = %e, "MQTT packet does not encode");
        frames.discard(frame);
        return false;
    }
    let len = frames.bytes(frame).len();
    let mut header = [0u8; HEADER_MAX];
    let header_len = conn.framing.message_header(len, &mut header).unwrap_or(0);
    let was_empty = conn.outbox.is_empty();
    conn.outbox.push(frames, &header[..header_len], frame);
    if was_empty {
        dirty.push(index);
    }
    true
}

// -------------------------------------------------------------------------------------------------------------
// Input

impl Shard {
    /// Connection `index` speaks MQTT from now on (over WebSocket with `ws`): its state, and a session in the
    /// engine that will send HELLO when the CONNECT comes.
    pub(super) fn mqtt_open(&mut self, index: usize, ws: Option<WebSocketFramer>) {
        let conn = &mut self.conns[index];
        conn.transport = Transport::Mqtt(match ws {
            Some(framer) => MqttConn::over_websocket(framer),
            None => MqttConn::new(),
        });
        let id = ConnId(super::conn_id(index, conn.generation).0 | MQTT_BIT);
        // The session's own messages to the engine are built in MessagePack (its serializer); what it receives
        // is never encoded as WAMP.
        let handle = self.router.handle_open(id, Serializer::MsgPack);
        self.conns[index].session = Some(handle);
    }

    /// The largest packet connection `index` may send now: `message_max`, and before the CONNECT is accepted at
    /// most `unjoined_message_max`.
    fn mqtt_packet_max(&self, phase: Phase) -> usize {
        match phase {
            Phase::Connected => self.config.limits.message_max,
            _ => self.before_welcome(),
        }
    }

    /// Handles every complete packet at the start of `buf`; returns the octets consumed (an incomplete packet
    /// stays with the connection).
    pub(super) fn mqtt_input(&mut self, index: usize, buf: &mut [u8]) -> usize {
        let ws = (self.conns.get_mut(index))
            .and_then(mqtt_state)
            .and_then(|m| m.extras.as_mut())
            .and_then(|e| e.ws.take());
        let Some(mut ws) = ws else {
            return self.mqtt_packets(index, buf);
        };
        let consumed = self.mqtt_websocket(index, buf, &mut ws);
        if let Some(extras) = (self.conns.get_mut(index))
            .and_then(mqtt_state)
            .and_then(|m| m.extras.as_mut())
        {
            extras.ws = Some(ws);
        }
        consumed
    }

    /// MQTT over WebSocket: WebSocket messages carry the stream of packets (a message may hold several packets,
    /// or part of one).
    fn mqtt_websocket(&mut self, index: usize, buf: &mut [u8], ws: &mut WsIn) -> usize {
        let mut pos = 0;
        let connected =
            mqtt_state(&mut self.conns[index]).is_some_and(|m| m.phase == Phase::Connected);
        if connected && !ws.carry.is_empty() {
            // Packets that came in the CONNECT's message while it waited for a dynamic authenticator.
            let held = std::mem::take(&mut ws.carry);
            let used = self.mqtt_packets(index, &held);
            ws.carry = held;
            ws.carry.drain(..used.min(ws.carry.len()));
        }
        loop {
            if pos >= buf.len() || self.conns[index].closing.is_some() {
                return if self.conns[index].closing.is_some() {
                    buf.len()
                } else {
                    pos
                };
            }
            let phase = mqtt_state(&mut self.conns[index]).map_or(Phase::Closing, |m| m.phase);
            if phase == Phase::Connecting {
                // The CONNECT waits for a dynamic authenticator: the frames after it wait too.
                return pos;
            }
            let message_max = self.mqtt_packet_max(phase);
            if ws.framer.message_max() != message_max {
                ws.framer.set_message_max(message_max);
            }
            let WsIn { framer, carry } = ws;
            let (consumed, inbound) = match framer.read(&mut buf[pos..]) {
                Ok(Some(read)) => read,
                Ok(None) => return pos,
                Err(fault) => {
                    if let Some(close) = fault.close {
                        info!(peer = %self.conns[index].peer, %close, "WebSocket protocol error (MQTT)");
                        self.conns[index].ws_close = Some(Box::new((close.code, close.reason)));
                    }
                    self.stats.transport_errors += 1;
                    self.mqtt_close(index, CloseCause::Protocol);
                    return buf.len();
                }
            };
            pos += consumed;
            if inbound != Inbound::Fragment {
                self.conns[index].progressed = true;
            }
            match inbound {
                Inbound::Message(data) => {
                    if carry.is_empty() {
                        let used = self.mqtt_packets(index, data);
                        if used < data.len() && self.conns[index].closing.is_none() {
                            carry.extend_from_slice(&data[used..]);
                        }
                    } else {
                        carry.extend_from_slice(data);
                        let held = std::mem::take(carry);
                        let used = self.mqtt_packets(index, &held);
                        *carry = held;
                        carry.drain(..used.min(carry.len()));
                        if carry.is_empty() {
                            carry.shrink_to(0);
                        }
                    }
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
                    self.conns[index].ws_close = Some(Box::new((code, "")));
                    self.mqtt_close(index, CloseCause::Engine);
                }
                // permessage-deflate is never negotiated for MQTT over WebSocket.
                Inbound::Compressed(..) => {
                    self.stats.transport_errors += 1;
                    self.conns[index].ws_close = Some(Box::new((
                        crate::websocket::CLOSE_PROTOCOL_ERROR,
                        "compressed message without permessage-deflate",
                    )));
                    self.mqtt_close(index, CloseCause::Protocol);
                    return buf.len();
                }
            }
        }
    }

    /// Decodes and handles the complete packets at the start of `buf`; returns the octets they took.
    fn mqtt_packets(&mut self, index: usize, buf: &[u8]) -> usize {
        let mut pos = 0;
        loop {
            let Some(conn) = self.conns.get_mut(index) else {
                return buf.len();
            };
            if conn.closing.is_some() {
                return buf.len();
            }
            let Some(m) = mqtt_state(conn) else {
                return buf.len();
            };
            let (phase, version) = (m.phase, m.version);
            if phase == Phase::Closing {
                return buf.len();
            }
            if phase == Phase::Connecting {
                // The CONNECT waits for a dynamic authenticator: what follows it waits too.
                return pos;
            }
            let decoder = Decoder::server(version, self.mqtt_packet_max(phase));
            match decoder.decode(&buf[pos..]) {
                Ok(None) => return pos,
                Ok(Some((used, packet))) => {
                    pos += used;
                    self.conns[index].progressed = true;
                    self.mqtt_packet(index, phase, packet);
                }
                Err(error) => {
                    self.mqtt_decode_error(index, phase, error);
                    return buf.len();
                }
            }
        }
    }

    /// A packet that does not decode: the spec's answer ([`DecodeError::action`]), then close.
    fn mqtt_decode_error(&mut self, index: usize, phase: Phase, error: DecodeError) {
        self.stats.transport_errors += 1;
        info!(peer = %self.conns[index].peer, %error, "bad MQTT packet; closing");
        match error.action() {
            ErrorAction::ConnAck { version, code } => {
                self.mqtt_write(index, &connack(code), version);
            }
            // Before the CONNACK was sent (the packet was the CONNECT), a CONNACK says it.
            ErrorAction::Disconnect(code) if phase == Phase::AwaitConnect => {
                self.mqtt_write(index, &connack(code), Version::V5);
            }
            ErrorAction::Disconnect(code) => {
                self.mqtt_write(
                    index,
                    &Packet::Disconnect(Disconnect::with_code(code)),
                    Version::V5,
                );
            }
            ErrorAction::Close => {}
        }
        self.mqtt_close(index, CloseCause::Protocol);
    }

    /// The client broke a rule of the protocol: MQTT 5 DISCONNECT with `code`, 3.1.1 just the close (logged).
    fn mqtt_violation(&mut self, index: usize, code: u8, why: &str) {
        self.stats.transport_errors += 1;
        let Some(version) = mqtt_state(&mut self.conns[index]).map(|m| m.version) else {
            return;
        };
        info!(peer = %self.conns[index].peer, code, why, "MQTT protocol error; disconnecting");
        if version == Version::V5 {
            self.mqtt_write(
                index,
                &Packet::Disconnect(Disconnect::with_code(code)),
                version,
            );
        }
        self.mqtt_close(index, CloseCause::Protocol);
    }

    /// Closes connection `index` once what is queued is written; no more input is handled.
    fn mqtt_close(&mut self, index: usize, cause: CloseCause) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        if let Some(m) = mqtt_state(conn) {
            m.phase = Phase::Closing;
        }
        if begin_close(conn, &mut self.frames, cause) {
            self.dirty.push(index);
        }
    }

    /// Queues one packet for connection `index`.
    fn mqtt_write(&mut self, index: usize, packet: &Packet<'_>, version: Version) {
        if let Some(conn) = self.conns.get_mut(index) {
            queue_packet(
                conn,
                &mut self.frames,
                &mut self.dirty,
                index,
                packet,
                version,
            );
        }
    }

    /// Hands one WAMP message (built by the session layer) to the engine for connection `index`.
    fn mqtt_engine(&mut self, index: usize, msg: &Message<'_>) {
        let Some(handle) = self.conns.get(index).and_then(|c| c.session) else {
            return;
        };
        let now_ms = self.now_ms();
        self.with_sink(|router, sink| router.handle_message(handle, msg, now_ms, sink));
    }

    /// Encodes `msg` in MessagePack into `buf`, decodes it again (so that every part the engine reads is raw, as
    /// from a WAMP client) and hands it to the engine. For the rare messages (HELLO, the will's testament).
    fn mqtt_engine_encoded(&mut self, index: usize, msg: &Message<'_>, buf: &mut Vec<u8>) {
        buf.clear();
        Serializer::MsgPack.encode(msg, buf);
        match Serializer::MsgPack.decode(buf) {
            Ok(decoded) => self.mqtt_engine(index, &decoded),
            Err(e) => debug!(error = %e, "MQTT: a message of the session layer does not decode"),
        }
    }

    fn mqtt_packet(&mut self, index: usize, phase: Phase, packet: Packet<'_>) {
        match (phase, packet) {
            (Phase::AwaitConnect, Packet::Connect(connect)) => self.mqtt_connect(index, connect),
            (Phase::AwaitConnect, other) => {
                self.stats.transport_errors += 1;
                info!(peer = %self.conns[index].peer, packet = ?other.packet_type(), "MQTT packet before CONNECT; closing");
                self.mqtt_close(index, CloseCause::Protocol);
            }
            (Phase::Connected, Packet::Publish(publish)) => self.mqtt_publish(index, publish),
            (Phase::Connected, Packet::PubAck(_)) => {
                if let Some(m) = mqtt_state(&mut self.conns[index]) {
                    m.inflight = m.inflight.saturating_sub(1);
                }
                self.mqtt_release_held(index);
            }
            (Phase::Connected, Packet::PubRel(ack)) => self.mqtt_pubrel(index, ack.packet_id),
            (Phase::Connected, Packet::Subscribe(subscribe)) => {
                self.mqtt_subscribe(index, subscribe)
            }
            (Phase::Connected, Packet::Unsubscribe(unsubscribe)) => {
                self.mqtt_unsubscribe(index, unsubscribe)
            }
            (Phase::Connected, Packet::PingReq) => {
                if let Some(version) = mqtt_state(&mut self.conns[index]).map(|m| m.version) {
                    self.mqtt_write(index, &Packet::PingResp, version);
                }
            }
            (Phase::Connected, Packet::Disconnect(disconnect)) => {
                // Without "disconnect with will message" the will is dropped: a clean DISCONNECT.
                if disconnect.code != reason::DISCONNECT_WITH_WILL {
                    let flush = Message::Call {
                        request: Request::Flush.wamp(),
                        options: Dict::EMPTY,
                        procedure: Cow::Borrowed("wamp.session.flush_testaments"),
                        payload: Payload::EMPTY,
                    };
                    self.mqtt_engine(index, &flush);
                }
                debug!(peer = %self.conns[index].peer, "MQTT DISCONNECT");
                self.mqtt_close(index, CloseCause::Engine);
            }
            (Phase::Connected, Packet::Connect(_)) => {
                self.mqtt_violation(index, reason::PROTOCOL_ERROR, "a second CONNECT")
            }
            // Nothing is sent at QoS 2, and AUTH needs an authentication method (none is accepted).
            (Phase::Connected, other) => {
                let why = format!("unexpected {:?}", other.packet_type());
                self.mqtt_violation(index, reason::PROTOCOL_ERROR, &why)
            }
            (Phase::Connecting | Phase::Closing, _) => {}
        }
    }

    /// CONNECT: refusals the session layer decides, then HELLO (and AUTHENTICATE), the will as a testament, and
    /// CONNACK.
    fn mqtt_connect(&mut self, index: usize, connect: Connect<'_>) {
        let version = connect.version;
        let Some(m) = mqtt_state(&mut self.conns[index]) else {
            return;
        };
        m.version = version;
        m.phase = Phase::Connecting;
        m.keep_alive = connect.keep_alive;
        let mut session_expiry = 0;
        let mut auth_method = false;
        for property in connect.properties.iter() {
            match property {
                Property::ReceiveMaximum(n) => m.receive_max = n,
                Property::MaximumPacketSize(n) => m.packet_max = n,
                Property::SessionExpiryInterval(n) => session_expiry = n,
                Property::AuthenticationMethod(_) => auth_method = true,
                _ => {}
            }
        }
        if self.conns[index].over_limit {
            self.stats.refused_over_limit += 1;
            return self.mqtt_refuse(
                index,
                reason::SERVER_BUSY,
                "connection limit reached (limits.connections_max)",
            );
        }
        if auth_method {
            return self.mqtt_refuse(
                index,
                reason::BAD_AUTHENTICATION_METHOD,
                "MQTT 5 enhanced authentication is not supported",
            );
        }
        if version == Version::V311 && !connect.clean_start {
            return self.mqtt_refuse(
                index,
                reason::CLIENT_IDENTIFIER_NOT_VALID,
                "persistent sessions (clean session 0) are not kept",
            );
        }
        if connect.password.is_some() && connect.username.is_none() {
            return self.mqtt_refuse(
                index,
                reason::BAD_USER_NAME_OR_PASSWORD,
                "a password without a user name",
            );
        }
        let Some(listener) = self.mqtt_listener(index) else {
            return;
        };
        let mut scratch = std::mem::take(&mut self.mqtt.input);
        // HELLO: a user name logs in with its password as ticket (or anonymously where the realm has no
        // principals); without one, anonymously.
        let methods_ticket = [Field::Str("ticket"), Field::Str("anonymous")];
        let methods_anonymous = [Field::Str("anonymous")];
        let features = [("pattern_based_subscription", Field::Bool(true))];
        let subscriber = [("features", Field::Dict(Dict::Fields(&features)))];
        let roles = [
            ("publisher", Field::Dict(Dict::EMPTY)),
            ("subscriber", Field::Dict(Dict::Fields(&subscriber))),
        ];
        let mqtt_extra = [("client_id", Field::Str(connect.client_id))];
        let extra = [("mqtt", Field::Dict(Dict::Fields(&mqtt_extra)))];
        let mut details = vec![
            ("roles", Field::Dict(Dict::Fields(&roles))),
            ("authextra", Field::Dict(Dict::Fields(&extra))),
        ];
        match connect.username {
            Some(username) => {
                details.push(("authid", Field::Str(username)));
                details.push(("authmethods", Field::List(&methods_ticket)));
            }
            None => details.push(("authmethods", Field::List(&methods_anonymous))),
        }
        let hello = Message::Hello {
            realm: Cow::Borrowed(&listener.realm),
            details: Dict::Fields(&details),
        };
        self.mqtt_engine_encoded(index, &hello, &mut scratch.message);
        if self.mqtt_outcome(index) == Outcome::Challenged {
            match connect.password.map(std::str::from_utf8) {
                Some(Ok(password)) => {
                    let authenticate = Message::Authenticate {
                        signature: Cow::Borrowed(password),
                        extra: Dict::EMPTY,
                    };
                    self.mqtt_engine(index, &authenticate);
                }
                _ => {
                    self.mqtt.input = scratch;
                    return self.mqtt_refuse(
                        index,
                        reason::BAD_USER_NAME_OR_PASSWORD,
                        "no password, or one that is not UTF-8",
                    );
                }
            }
        }
        self.mqtt.input = scratch;
        let rest = ConnectRest {
            will: (connect.will.as_ref())
                .map(|w| (w.topic.to_owned(), w.payload.to_vec(), w.retain)),
            session_expiry,
            assign_id: connect.client_id.is_empty(),
            will_sent: false,
        };
        match self.mqtt_outcome(index) {
            Outcome::Welcomed => {
                if let Some(rest) = self.mqtt_connected(index, rest) {
                    self.mqtt_park(index, rest);
                }
            }
            // The sink sent the CONNACK.
            Outcome::Refused(_) => {}
            // Not decided at once: a dynamic authenticator was asked (see `[[realms.authenticators]]`).
            _ => self.mqtt_park(index, rest),
        }
    }

    /// The CONNECT waits for a dynamic authenticator, or for the role's dynamic authorizer asked about its will:
    /// the connection's input waits too (CONNECT is still the last packet read) until the engine answers.
    fn mqtt_park(&mut self, index: usize, rest: ConnectRest) {
        debug!(peer = %self.conns[index].peer, will = rest.will_sent, "MQTT CONNECT waits for a dynamic authenticator or authorizer");
        let conn = &mut self.conns[index];
        conn.mqtt_parked = true;
        let generation = conn.generation;
        self.mqtt.parked.push(Parked {
            index,
            generation,
            rest,
        });
    }

    /// CONNECTs that waited for a dynamic authenticator and have its answer: welcomed ones go on (the will, the
    /// CONNACK, then the packets that followed the CONNECT); refused ones got their CONNACK from the sink.
    pub(super) fn mqtt_resume_parked(&mut self) {
        let mut i = 0;
        while i < self.mqtt.parked.len() {
            let Parked {
                index, generation, ..
            } = self.mqtt.parked[i];
            let alive = (self.conns.get_mut(index))
                .filter(|c| c.generation == generation && c.closing.is_none());
            let outcome = alive.and_then(mqtt_state).map(|m| m.outcome);
            let will_sent = self.mqtt.parked[i].rest.will_sent;
            match (outcome, will_sent) {
                // Refused (the sink wrote the CONNACK), or the connection is gone.
                (Some(Outcome::Refused(_)) | None, _) => {
                    self.mqtt.parked.swap_remove(i);
                    continue;
                }
                (Some(Outcome::Welcomed), false)
                | (Some(Outcome::WillKept | Outcome::WillRefused(_)), true) => {}
                // Still waiting (after a CHALLENGE answered, the outcome stays Challenged until it is decided).
                _ => {
                    i += 1;
                    continue;
                }
            }
            let parked = self.mqtt.parked.swap_remove(i);
            self.conns[index].mqtt_parked = false;
            let waiting = match outcome {
                Some(Outcome::WillRefused(code)) => {
                    self.mqtt_refuse(index, code, "will refused as testament");
                    None
                }
                Some(Outcome::WillKept) => {
                    self.mqtt_connack(index, &parked.rest);
                    None
                }
                _ => self.mqtt_connected(index, parked.rest),
            };
            match waiting {
                Some(rest) => self.mqtt_park(index, rest),
                None => {
                    self.reprocess(index);
                    self.pending_read.push(index);
                }
            }
        }
    }

    /// The session is welcomed: the will as its testament, then CONNACK. Returns what is left when the will waits
    /// for the role's dynamic authorizer.
    fn mqtt_connected(&mut self, index: usize, mut rest: ConnectRest) -> Option<ConnectRest> {
        let listener = self.mqtt_listener(index)?;
        if let Some((topic, payload, retain)) = &rest.will {
            let mut scratch = std::mem::take(&mut self.mqtt.input);
            let answer = self.mqtt_will(index, &listener, topic, payload, *retain, &mut scratch);
            self.mqtt.input = scratch;
            match answer {
                Some(Ok(())) => {}
                Some(Err((code, why))) => {
                    self.mqtt_refuse(index, code, &why);
                    return None;
                }
                None => {
                    rest.will_sent = true;
                    return Some(rest);
                }
            }
        }
        self.mqtt_connack(index, &rest);
        None
    }

    /// CONNACK 0, and the session is connected.
    fn mqtt_connack(&mut self, index: usize, rest: &ConnectRest) {
        let Some(version) = mqtt_state(&mut self.conns[index]).map(|m| m.version) else {
            return;
        };
        // CONNACK: what this server does differently from MQTT 5's defaults.
        let retain_available = self.mqtt_retain_available(index);
        let assigned = match self.conns[index]
            .session
            .and_then(|h| self.router.session_info(h))
        {
            Some(info) if rest.assign_id => Some(format!("kreisel-{}", info.id)),
            _ => None,
        };
        let message_max = self.config.limits.message_max as u32;
        let mut properties = vec![
            Property::ReceiveMaximum(RECEIVE_MAX),
            Property::TopicAliasMaximum(TOPIC_ALIAS_MAX),
            Property::MaximumPacketSize(message_max),
            Property::SubscriptionIdentifierAvailable(false),
            Property::SharedSubscriptionAvailable(false),
        ];
        if rest.session_expiry != 0 {
            // Nothing is kept once the connection closes.
            properties.push(Property::SessionExpiryInterval(0));
        }
        if !retain_available {
            properties.push(Property::RetainAvailable(false));
        }
        if let Some(assigned) = &assigned {
            properties.push(Property::AssignedClientIdentifier(assigned));
        }
        let ack = Packet::ConnAck(ConnAck {
            session_present: false,
            code: reason::SUCCESS,
            properties: Properties::new(&properties),
        });
        self.mqtt_write(index, &ack, version);
        if let Some(m) = mqtt_state(&mut self.conns[index]) {
            m.phase = Phase::Connected;
        }
        debug!(peer = %self.conns[index].peer, ?version, "MQTT session joined");
    }

    /// The MQTT configuration of connection `index`'s listener.
    fn mqtt_listener(&self, index: usize) -> Option<Arc<session::ListenerConfig>> {
        self.shared.listeners[usize::from(self.conns[index].listener)]
            .mqtt
            .clone()
    }

    /// Whether the realm of connection `index`'s listener keeps retained events.
    fn mqtt_retain_available(&self, index: usize) -> bool {
        let Some(listener) = self.mqtt_listener(index) else {
            return true;
        };
        (self.config.realms.iter())
            .find(|r| r.name == listener.realm)
            .is_none_or(|r| r.retained_max > 0)
    }

    fn mqtt_outcome(&mut self, index: usize) -> Outcome {
        (self.conns.get_mut(index))
            .and_then(mqtt_state)
            .map_or(Outcome::Pending, |m| m.outcome)
    }

    /// The will as the session's testament: `Some(Ok(()))` kept, `Some(Err((code, why)))` refused, `None` while the
    /// role's dynamic authorizer decides.
    fn mqtt_will(
        &mut self,
        index: usize,
        listener: &session::ListenerConfig,
        topic: &str,
        payload: &[u8],
        retain: bool,
        scratch: &mut InScratch,
    ) -> Option<Result<(), (u8, String)>> {
        if let Err(e) = name_to_uri_into(topic, &mut scratch.uri) {
            return Some(Err((
                reason::TOPIC_NAME_INVALID,
                format!("will topic: {e}"),
            )));
        }
        let uri = scratch.uri.as_str();
        let clear = retain && payload.is_empty();
        let (args, kwargs) = if clear {
            (None, None)
        } else {
            match arguments(listener.mode(uri), payload, &mut scratch.args) {
                Ok(a) => (a.args, a.kwargs),
                Err(e) => {
                    return Some(Err((
                        reason::PAYLOAD_FORMAT_INVALID,
                        format!("will: {}", e.0),
                    )))
                }
            }
        };
        let null = kreisel_codec::Value::Null;
        let positional = [
            Field::Str(uri),
            args.map_or(Field::Value(&null), Field::Raw),
            kwargs.map_or(Field::Value(&null), Field::Raw),
        ];
        let publish_options = [
            ("retain", Field::Bool(retain)),
            ("x_retain_clear", Field::Bool(clear)),
        ];
        let keywords = [(
            "publish_options",
            Field::Dict(Dict::Fields(&publish_options)),
        )];
        let call = Message::Call {
            request: Request::Testament.wamp(),
            options: Dict::EMPTY,
            procedure: Cow::Borrowed("wamp.session.add_testament"),
            payload: Payload {
                args: Some(Field::List(&positional)),
                kwargs: Some(Field::Dict(Dict::Fields(&keywords))),
            },
        };
        self.mqtt_engine_encoded(index, &call, &mut scratch.message);
        match self.mqtt_outcome(index) {
            Outcome::WillKept => Some(Ok(())),
            Outcome::WillRefused(code) => Some(Err((code, "will refused as testament".into()))),
            // Not decided at once: the role's dynamic authorizer was asked.
            _ => None,
        }
    }

    /// CONNACK with a failure code (3.1.1: the nearest return code), then close.
    fn mqtt_refuse(&mut self, index: usize, code: u8, why: &str) {
        let Some(version) = mqtt_state(&mut self.conns[index]).map(|m| m.version) else {
            return;
        };
        info!(peer = %self.conns[index].peer, code, why, "MQTT CONNECT refused");
        let code = match version {
            Version::V5 => code,
            Version::V311 => connack_v311(code),
        };
        self.mqtt_write(index, &connack(code), version);
        self.mqtt_close(index, CloseCause::Handshake);
    }

    /// A PUBLISH the session layer refuses before the engine sees it (its topic or payload does not map): MQTT 5
    /// PUBACK/PUBREC with `code` (QoS 0: DISCONNECT), 3.1.1 a logged close.
    fn mqtt_refuse_publish(&mut self, index: usize, publish: &Publish<'_>, code: u8, why: &str) {
        let Some(version) = mqtt_state(&mut self.conns[index]).map(|m| m.version) else {
            return;
        };
        debug!(peer = %self.conns[index].peer, topic = publish.topic, code, why, "MQTT PUBLISH refused");
        match (version, publish.qos) {
            (Version::V5, QoS::AtLeastOnce) => self.mqtt_write(
                index,
                &Packet::PubAck(ack(publish.packet_id, code)),
                version,
            ),
            (Version::V5, QoS::ExactlyOnce) => self.mqtt_write(
                index,
                &Packet::PubRec(ack(publish.packet_id, code)),
                version,
            ),
            _ => self.mqtt_violation(index, code, why),
        }
    }

    fn mqtt_publish(&mut self, index: usize, publish: Publish<'_>) {
        let Some(listener) = self.mqtt_listener(index) else {
            return;
        };
        let uri_max = self.config.limits.uri_max;
        let Some(m) = mqtt_state(&mut self.conns[index]) else {
            return;
        };
        let no_local = m.no_local;
        if publish.qos == QoS::ExactlyOnce {
            let waiting = m.extras.as_ref().map_or(&[][..], |e| &e.qos2[..]);
            if waiting.contains(&publish.packet_id) {
                // A retransmission before PUBREL: routed once already.
                let version = m.version;
                return self.mqtt_write(
                    index,
                    &Packet::PubRec(Ack::success(publish.packet_id)),
                    version,
                );
            }
            if waiting.len() >= usize::from(RECEIVE_MAX) {
                return self.mqtt_violation(
                    index,
                    reason::RECEIVE_MAXIMUM_EXCEEDED,
                    "more QoS 2 publications waiting for PUBREL than Receive Maximum",
                );
            }
        }
        let alias = match publish.properties.get(property_id::TOPIC_ALIAS) {
            Some(Property::TopicAlias(n)) if n > TOPIC_ALIAS_MAX => {
                return self.mqtt_violation(
                    index,
                    reason::TOPIC_ALIAS_INVALID,
                    "topic alias over the maximum",
                )
            }
            Some(Property::TopicAlias(n)) => Some(usize::from(n)),
            _ => None,
        };
        let mut scratch = std::mem::take(&mut self.mqtt.input);
        if publish.topic.is_empty() {
            // MQTT 5: the topic is the alias's (the decoder made sure there is one).
            let known =
                (alias.zip(m.extras.as_ref())).and_then(|(n, e)| e.aliases.get(n - 1)?.as_deref());
            match known {
                Some(uri) => {
                    scratch.uri.clear();
                    scratch.uri.push_str(uri);
                }
                None => {
                    self.mqtt.input = scratch;
                    return self.mqtt_violation(
                        index,
                        reason::PROTOCOL_ERROR,
                        "unknown topic alias",
                    );
                }
            }
        } else {
            if let Err(e) = name_to_uri_into(publish.topic, &mut scratch.uri) {
                self.mqtt.input = scratch;
                let why = e.to_string();
                return self.mqtt_refuse_publish(index, &publish, reason::TOPIC_NAME_INVALID, &why);
            }
            if let Some(n) = alias {
                if scratch.uri.len() > uri_max {
                    self.mqtt.input = scratch;
                    let why = "topic longer than limits.uri_max";
                    return self.mqtt_refuse_publish(
                        index,
                        &publish,
                        reason::TOPIC_NAME_INVALID,
                        why,
                    );
                }
                let aliases = &mut m.extras().aliases;
                if aliases.len() < n {
                    aliases.resize(n, None);
                }
                aliases[n - 1] = Some(scratch.uri.as_str().into());
            }
        }
        let clear = publish.retain && publish.payload.is_empty();
        let uri = scratch.uri.as_str();
        let converted = if clear {
            Ok(session::Arguments {
                args: None,
                kwargs: None,
                document: None,
            })
        } else {
            arguments(listener.mode(uri), publish.payload, &mut scratch.args)
        };
        let converted = match converted {
            Ok(converted) => converted,
            Err(e) => {
                let why = e.0;
                self.mqtt.input = scratch;
                return self.mqtt_refuse_publish(
                    index,
                    &publish,
                    reason::PAYLOAD_FORMAT_INVALID,
                    &why,
                );
            }
        };
        // The options, encoded (so that other shards get them with the publication).
        let acknowledge = publish.qos != QoS::AtMostOnce;
        let mut options: [(&str, Field<'_>); 10] = [("", Field::Bool(false)); 10];
        let mut n = 0;
        let mut option = |key, value| {
            options[n] = (key, value);
            n += 1;
        };
        if acknowledge {
            option("acknowledge", Field::Bool(true));
        }
        option("exclude_me", Field::Bool(no_local));
        if publish.retain {
            option("retain", Field::Bool(true));
        }
        if clear {
            option("x_retain_clear", Field::Bool(true));
        }
        if let Some(document) = converted.document {
            for key in session::LIST_KEYS {
                if let Some(value) = document.get(key) {
                    option(key, Field::Raw(value));
                }
            }
        }
        scratch.options.clear();
        kreisel_codec::encode_field(
            Serializer::MsgPack,
            &Field::Dict(Dict::Fields(&options[..n])),
            &mut scratch.options,
        );
        let request = match publish.qos {
            QoS::AtMostOnce => Request::Other,
            qos => Request::Publish {
                qos,
                packet_id: publish.packet_id,
            },
        };
        let msg = Message::Publish {
            request: request.wamp(),
            options: Dict::Raw(RawValue::trusted(Serializer::MsgPack, &scratch.options)),
            topic: Cow::Borrowed(uri),
            payload: Payload {
                args: converted.args.map(Field::Raw),
                kwargs: converted.kwargs.map(Field::Raw),
            },
        };
        self.mqtt_engine(index, &msg);
        self.mqtt.input = scratch;
    }

    fn mqtt_pubrel(&mut self, index: usize, packet_id: u16) {
        let Some(m) = mqtt_state(&mut self.conns[index]) else {
            return;
        };
        let version = m.version;
        let waiting = m.extras.as_mut().map(|e| &mut e.qos2);
        let found = waiting.is_some_and(|ids| match ids.iter().position(|&id| id == packet_id) {
            Some(at) => {
                ids.swap_remove(at);
                true
            }
            None => false,
        });
        let code = if found || version == Version::V311 {
            reason::SUCCESS
        } else {
            reason::PACKET_IDENTIFIER_NOT_FOUND
        };
        self.mqtt_write(index, &Packet::PubComp(ack(packet_id, code)), version);
    }

    fn mqtt_subscribe(&mut self, index: usize, subscribe: Subscribe<'_>) {
        let subscriptions_max = self.config.limits.subscriptions_per_session_max;
        let retain_available = self.mqtt_retain_available(index);
        let Some(m) = mqtt_state(&mut self.conns[index]) else {
            return;
        };
        let version = m.version;
        if subscribe
            .properties
            .get(property_id::SUBSCRIPTION_IDENTIFIER)
            .is_some()
        {
            return self.mqtt_violation(
                index,
                reason::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
                "subscription identifiers are not supported",
            );
        }
        let count = subscribe.filters.len();
        let extras = m.extras();
        if extras.pending_filters() + count > subscriptions_max {
            return self.mqtt_violation(
                index,
                reason::QUOTA_EXCEEDED,
                "too many subscriptions waiting for their answers",
            );
        }
        let seq = extras.next_seq & 0xFF_FFFF;
        extras.next_seq = extras.next_seq.wrapping_add(1);
        let mut pending = PendingSubscribe {
            seq,
            packet_id: subscribe.packet_id,
            waiting: 0,
            codes: Vec::with_capacity(count),
            filters: Vec::with_capacity(count),
        };
        let mut requests: Vec<(Request, String, MatchPolicy, bool)> = Vec::new();
        for (i, (filter, options)) in subscribe.filters.iter().enumerate() {
            let refusal = match shared_subscription(filter) {
                Ok(None) => None,
                _ => Some(reason::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED),
            };
            let mapped = match refusal {
                Some(code) => Err(code),
                None => filter_to_wamp(filter).map_err(|e| {
                    debug!(filter, error = %e, "MQTT filter refused");
                    reason::TOPIC_FILTER_INVALID
                }),
            };
            let wamp = match mapped {
                Ok(wamp) => wamp,
                Err(code) => {
                    pending.codes.push(code);
                    pending.filters.push((filter.into(), false));
                    continue;
                }
            };
            let qos = options.qos.min(QoS::AtLeastOnce);
            let created = !extras.filters.contains_key(filter);
            let entry = extras.filters.entry(filter.into()).or_insert(Filter {
                qos,
                no_local: options.no_local,
                parts: [None, None],
            });
            entry.qos = qos;
            entry.no_local = options.no_local;
            let get_retained = retain_available
                && match options.retain_handling {
                    crate::mqtt::RetainHandling::OnSubscribe => true,
                    crate::mqtt::RetainHandling::OnNewSubscribe => created,
                    crate::mqtt::RetainHandling::Never => false,
                };
            for (part, (uri, policy)) in wamp.subscriptions().enumerate() {
                let request = Request::Subscribe {
                    seq,
                    index: i as u32,
                    part: part as u8,
                };
                requests.push((request, uri.to_owned(), policy, get_retained));
                pending.waiting += 1;
            }
            pending.codes.push(WAITING);
            pending.filters.push((filter.into(), created));
        }
        let no_local = extras.all_no_local();
        let immediate = if pending.waiting == 0 {
            Some(suback_codes(&pending.codes, version))
        } else {
            extras.pending.push(pending);
            None
        };
        m.no_local = no_local;
        if let Some(codes) = immediate {
            let suback = Packet::SubAck(SubAck {
                packet_id: subscribe.packet_id,
                properties: Properties::EMPTY,
                codes: &codes,
            });
            return self.mqtt_write(index, &suback, version);
        }
        for (request, uri, policy, get_retained) in requests {
            let mut options = [("", Field::Bool(false)); 2];
            let mut n = 0;
            if policy != MatchPolicy::Exact {
                options[n] = ("match", Field::Str(policy.name()));
                n += 1;
            }
            if get_retained {
                options[n] = ("get_retained", Field::Bool(true));
                n += 1;
            }
            let msg = Message::Subscribe {
                request: request.wamp(),
                options: Dict::Fields(&options[..n]),
                topic: Cow::Borrowed(&uri),
            };
            self.mqtt_engine(index, &msg);
        }
    }

    fn mqtt_unsubscribe(&mut self, index: usize, unsubscribe: Unsubscribe<'_>) {
        let Some(m) = mqtt_state(&mut self.conns[index]) else {
            return;
        };
        let version = m.version;
        let extras = m.extras();
        let mut codes = Vec::with_capacity(unsubscribe.filters.len());
        let mut released: Vec<Id> = Vec::new();
        for filter in unsubscribe.filters.iter() {
            match extras.remove_filter(filter) {
                Some(ids) => {
                    codes.push(reason::SUCCESS);
                    released.extend(ids.into_iter().flatten());
                }
                None => codes.push(reason::NO_SUBSCRIPTION_EXISTED),
            }
        }
        let no_local = extras.all_no_local();
        m.no_local = no_local;
        for subscription in released {
            let msg = Message::Unsubscribe {
                request: Request::Other.wamp(),
                subscription,
            };
            self.mqtt_engine(index, &msg);
        }
        let unsuback = Packet::UnsubAck(UnsubAck {
            packet_id: unsubscribe.packet_id,
            properties: Properties::EMPTY,
            codes: &codes,
        });
        self.mqtt_write(index, &unsuback, version);
    }

    /// A PUBACK freed room in the client's window: QoS 1 deliveries waiting for it get their packet ids and go
    /// out, oldest first.
    fn mqtt_release_held(&mut self, index: usize) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        let Transport::Mqtt(m) = &mut conn.transport else {
            return;
        };
        let was_empty = conn.outbox.is_empty();
        loop {
            if m.extras.as_ref().is_none_or(|e| e.held.is_empty()) {
                break;
            }
            let Some(packet_id) = m.take_packet_id() else {
                break;
            };
            let Some(held) = m.extras.as_mut().and_then(|e| e.held.pop_front()) else {
                break;
            };
            if let Some(extras) = m.extras.as_mut() {
                extras.held_bytes -= held.total;
            }
            if let Some(id) = self
                .frames
                .bytes_mut(held.head)
                .get_mut(held.id_at..held.id_at + 2)
            {
                id.copy_from_slice(&packet_id.to_be_bytes());
            }
            let mut header = [0u8; HEADER_MAX];
            let header_len = conn
                .framing
                .message_header(held.total, &mut header)
                .unwrap_or(0);
            conn.outbox
                .push(&mut self.frames, &header[..header_len], held.head);
            conn.outbox.push(&mut self.frames, &[], held.payload);
            self.frames.release(held.head);
            self.frames.release(held.payload);
        }
        if was_empty && !conn.outbox.is_empty() {
            self.dirty.push(index);
        }
    }

    /// Keep-alive (called by the sweep): whether MQTT connection `conn` has been silent too long: 1.5 times its
    /// keep-alive, or without one `idle_timeout_ms` (if set).
    pub(super) fn mqtt_expired(conn: &Conn, silent_ms: u64, idle_ms: u64) -> bool {
        let Transport::Mqtt(m) = &conn.transport else {
            return false;
        };
        let limit = match (m.phase, m.keep_alive) {
            (Phase::Connected, k) if k > 0 => u64::from(k) * 1500,
            (Phase::Connected, _) => idle_ms,
            _ => 0,
        };
        limit > 0 && silent_ms >= limit
    }

    /// Closes an MQTT connection whose keep-alive ran out (MQTT 5: DISCONNECT 0x8D first).
    pub(super) fn mqtt_keep_alive_timeout(&mut self, index: usize) {
        self.stats.idle_timeouts += 1;
        let Some(version) = mqtt_state(&mut self.conns[index]).map(|m| m.version) else {
            return;
        };
        info!(peer = %self.conns[index].peer, "MQTT keep-alive timeout; closing");
        if version == Version::V5 {
            let disconnect = Disconnect::with_code(reason::KEEP_ALIVE_TIMEOUT);
            self.mqtt_write(index, &Packet::Disconnect(disconnect), version);
        }
        self.mqtt_close(index, CloseCause::IdleTimeout);
    }
}

fn connack(code: u8) -> Packet<'static> {
    Packet::ConnAck(ConnAck {
        session_present: false,
        code,
        properties: Properties::EMPTY,
    })
}

fn ack(packet_id: u16, code: u8) -> Ack<'static> {
    Ack {
        packet_id,
        code,
        properties: Properties::EMPTY,
    }
}

fn suback_codes(codes: &[u8], version: Version) -> Vec<u8> {
    codes
        .iter()
        .map(|&code| match version {
            Version::V5 => code,
            Version::V311 => suback_v311(code),
        })
        .collect()
}

// -------------------------------------------------------------------------------------------------------------
// Output

impl Outbound<'_> {
    /// One message of the engine for an MQTT session.
    pub(super) fn mqtt_send(&mut self, to: Peer, msg: &Message<'_>) {
        if let Message::Event { .. } = msg {
            let mut frames = EventFrames::default();
            self.mqtt_event(to, msg, &mut frames);
            frames.finish(self.frames);
            return;
        }
        let (index, generation) = conn_index(to.conn);
        let Some(conn) = (self.conns.get_mut(index)).filter(|c| c.generation == generation) else {
            return;
        };
        let Transport::Mqtt(m) = &mut conn.transport else {
            return;
        };
        let version = m.version;
        let connecting = m.phase == Phase::Connecting;
        let codes;
        let mut reply: Option<Packet<'_>> = None;
        let mut close = false;
        match msg {
            Message::Welcome { .. } if connecting => m.outcome = Outcome::Welcomed,
            Message::Challenge { .. } if connecting => m.outcome = Outcome::Challenged,
            Message::Abort {
                reason: uri,
                details,
            } => {
                let text = details.get("message").and_then(|t| t.as_str());
                let code = reason_code(uri, text.as_deref().unwrap_or(""), Context::Connect);
                info!(peer = %conn.peer, reason = %uri, code, "MQTT session aborted");
                if connecting {
                    m.outcome = Outcome::Refused(code);
                    let code = match version {
                        Version::V5 => code,
                        Version::V311 => connack_v311(code),
                    };
                    reply = Some(connack(code));
                } else if version == Version::V5 {
                    reply = Some(Packet::Disconnect(Disconnect::with_code(code)));
                }
                m.phase = Phase::Closing;
                close = true;
            }
            Message::Goodbye { reason: uri, .. } => {
                // The router ends the session (shutdown, kill): MQTT has no goodbye to wait for.
                if version == Version::V5 {
                    let code = reason_code(uri, "", Context::Connect);
                    reply = Some(Packet::Disconnect(Disconnect::with_code(code)));
                }
                m.phase = Phase::Closing;
                close = true;
            }
            Message::Result { request, .. } if Request::of(*request) == Request::Testament => {
                m.outcome = Outcome::WillKept;
            }
            Message::Published { request, .. } => match Request::of(*request) {
                Request::Publish {
                    qos: QoS::ExactlyOnce,
                    packet_id,
                } => {
                    m.extras().qos2.push(packet_id);
                    reply = Some(Packet::PubRec(Ack::success(packet_id)));
                }
                Request::Publish { packet_id, .. } => {
                    reply = Some(Packet::PubAck(Ack::success(packet_id)))
                }
                _ => {}
            },
            Message::Subscribed {
                request,
                subscription,
            } => {
                if let Request::Subscribe {
                    seq,
                    index: i,
                    part,
                } = Request::of(*request)
                {
                    let done = subscribed(m, seq, i, part, Ok(*subscription));
                    if let Some((packet_id, done)) = done {
                        codes = suback_codes(&done, version);
                        reply = Some(Packet::SubAck(SubAck {
                            packet_id,
                            properties: Properties::EMPTY,
                            codes: &codes,
                        }));
                    }
                }
            }
            Message::Error {
                request_type,
                request,
                error,
                payload,
                ..
            } => {
                let text = (payload.args.as_ref())
                    .and_then(|a| a.as_raw())
                    .and_then(|a| a.list()?.next()?.as_str())
                    .or_else(|| match payload.args {
                        Some(Field::List([first, ..])) => first.as_str(),
                        _ => None,
                    });
                let text = text.as_deref().unwrap_or("");
                let kind = MessageType::from_code(*request_type);
                match (kind, Request::of(*request)) {
                    (Some(MessageType::Call), Request::Testament) => {
                        let code = reason_code(error, text, Context::Publish);
                        m.outcome = Outcome::WillRefused(code);
                    }
                    (Some(MessageType::Publish), Request::Publish { qos, packet_id }) => {
                        let code = reason_code(error, text, Context::Publish);
                        info!(peer = %conn.peer, error = %error, text, code, "MQTT PUBLISH refused");
                        match version {
                            Version::V5 if qos == QoS::ExactlyOnce => {
                                reply = Some(Packet::PubRec(ack(packet_id, code)))
                            }
                            Version::V5 => reply = Some(Packet::PubAck(ack(packet_id, code))),
                            // 3.1.1 has no negative acknowledgement.
                            Version::V311 => {
                                m.phase = Phase::Closing;
                                close = true;
                            }
                        }
                    }
                    (
                        Some(MessageType::Subscribe),
                        Request::Subscribe {
                            seq,
                            index: i,
                            part,
                        },
                    ) => {
                        let code = reason_code(error, text, Context::Subscribe);
                        debug!(peer = %conn.peer, error = %error, text, "MQTT subscription refused");
                        if let Some((packet_id, done)) = subscribed(m, seq, i, part, Err(code)) {
                            codes = suback_codes(&done, version);
                            reply = Some(Packet::SubAck(SubAck {
                                packet_id,
                                properties: Properties::EMPTY,
                                codes: &codes,
                            }));
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        if let Some(packet) = reply {
            queue_packet(conn, self.frames, self.dirty, index, &packet, version);
        }
        if close && begin_close(conn, self.frames, CloseCause::Engine) {
            self.dirty.push(index);
        }
    }

    /// One EVENT for MQTT recipient `peer`: a PUBLISH, shared with the other recipients of the multicast where
    /// it is the same (`cache`).
    pub(super) fn mqtt_event(&mut self, peer: Peer, msg: &Message<'_>, cache: &mut EventFrames) {
        let Message::Event {
            subscription,
            details,
            payload,
            ..
        } = msg
        else {
            return self.mqtt_send(peer, msg);
        };
        let (index, generation) = conn_index(peer.conn);
        let Some(conn) = (self.conns.get_mut(index)).filter(|c| c.generation == generation) else {
            return;
        };
        if conn.closing.is_some() {
            return;
        }
        let listener = usize::from(conn.listener);
        let Transport::Mqtt(m) = &mut conn.transport else {
            return;
        };
        if m.phase != Phase::Connected {
            return;
        }
        let Some(sub) = m.sub(*subscription) else {
            return;
        };
        let qos = sub.qos;
        let wildcard_first = sub.wildcard_first;
        let version = m.version;
        let retain = details
            .get("retained")
            .is_some_and(|r| r.as_bool() == Some(true));
        let key = EventKey {
            listener,
            version,
            qos,
            retain,
        };
        let built = match cache.get(key) {
            Some(built) => built,
            None => {
                let uri = match details.get("topic").and_then(|t| t.as_str()) {
                    Some(topic) => topic,
                    None => match &sub.uri {
                        Some(uri) => Cow::Owned(uri.to_string()),
                        None => return,
                    },
                };
                let built = if wildcard_first && kreisel_engine::uri::is_reserved(&uri) {
                    None
                } else {
                    self.mqtt_build(listener, &uri, key, payload)
                };
                if !cache.put(key, built) {
                    // More variety than the cache holds: this recipient's frame is its own.
                    return self.mqtt_deliver(index, generation, key, built, true);
                }
                built
            }
        };
        self.mqtt_deliver(index, generation, key, built, false);
    }

    /// Builds the frame of `key`: the whole PUBLISH for QoS 0, its payload for QoS 1. `None` when the event
    /// has no MQTT form (its topic has no MQTT name, or passthrough cannot carry its arguments).
    fn mqtt_build(
        &mut self,
        listener: usize,
        uri: &str,
        key: EventKey,
        payload: &Payload<'_>,
    ) -> Option<(FrameId, usize)> {
        let config = self.listeners.get(listener)?.mqtt.as_ref()?;
        let mode = config.mode(uri);
        let OutScratch {
            name,
            payload: buffer,
            ..
        } = &mut *self.mqtt;
        if !uri_to_name_into(uri, name) {
            debug!(
                uri,
                "event topic has no MQTT name: not delivered to MQTT subscribers"
            );
            return None;
        }
        let Some(bytes) = mqtt_payload(mode, payload, buffer) else {
            debug!(
                uri,
                "event arguments have no passthrough form: not delivered to MQTT subscribers"
            );
            return None;
        };
        let frame = self.frames.alloc();
        let out = self.frames.bytes_mut(frame);
        if key.qos == QoS::AtMostOnce {
            let publish = Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: key.retain,
                topic: name.as_str(),
                packet_id: 0,
                properties: Properties::EMPTY,
                payload: &bytes[..],
            };
            if encode(&Packet::Publish(publish), key.version, out).is_err() {
                self.frames.discard(frame);
                return None;
            }
        } else {
            out.extend_from_slice(&bytes);
        }
        let len = self.frames.bytes(frame).len();
        Some((frame, len))
    }

    /// Queues a built PUBLISH for connection `index` (QoS 1: with a header of its own, with the next packet id).
    /// `owned`: the frame is this recipient's alone (not cached), to be discarded if not queued.
    fn mqtt_deliver(
        &mut self,
        index: usize,
        generation: u32,
        key: EventKey,
        built: Option<(FrameId, usize)>,
        owned: bool,
    ) {
        let Some((frame, len)) = built else {
            return;
        };
        let discard = |frames: &mut FrameStore| {
            if owned && frames.refs(frame) == 0 {
                frames.discard(frame);
            }
        };
        let Some(conn) = (self.conns.get_mut(index)).filter(|c| c.generation == generation) else {
            return discard(self.frames);
        };
        let outbox_max = self.outbox_max;
        if conn.outbox.queued_bytes() > outbox_max {
            return discard(self.frames);
        }
        let Transport::Mqtt(m) = &mut conn.transport else {
            return discard(self.frames);
        };
        let packet_max = m.packet_max as usize;
        // QoS 1: the header with this recipient's packet id, in a frame of its own. With the client's window full
        // (or deliveries already waiting), it waits for a PUBACK with its packet id still to be written.
        let mut head = None;
        let mut hold = false;
        if key.qos == QoS::AtLeastOnce {
            let waiting = m.extras.as_ref().is_some_and(|e| !e.held.is_empty());
            let packet_id = match waiting {
                true => None,
                false => m.take_packet_id(),
            };
            hold = packet_id.is_none();
            let packet_id = packet_id.unwrap_or(1);
            let name = &self.mqtt.name;
            let topic_ok = !name.is_empty();
            let header = &mut self.mqtt.packet;
            header.clear();
            let publish = Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: key.retain,
                topic: if topic_ok { name } else { "" },
                packet_id,
                properties: Properties::EMPTY,
                payload: self.frames.bytes(frame),
            };
            if encode_publish_header(&publish, key.version, header).is_err() {
                if !hold {
                    m.inflight = m.inflight.saturating_sub(1);
                }
                return discard(self.frames);
            }
            let frame = self.frames.alloc();
            self.frames.bytes_mut(frame).extend_from_slice(header);
            head = Some(frame);
        }
        let head_len = head.map_or(0, |h| self.frames.bytes(h).len());
        let total = head_len + len;
        let held_bytes = m.extras.as_ref().map_or(0, |e| e.held_bytes);
        if total > packet_max {
            // MQTT 5: a packet over the client's Maximum Packet Size is dropped as if delivered.
            if let Some(head) = head {
                if !hold {
                    m.inflight = m.inflight.saturating_sub(1);
                }
                self.frames.discard(head);
            }
            return discard(self.frames);
        }
        if self.policy == crate::config::SlowConsumer::Drop
            && conn.outbox.queued_bytes() + held_bytes + total + 10 > outbox_max
        {
            *self.events_dropped += 1;
            if let Some(head) = head {
                if !hold {
                    m.inflight = m.inflight.saturating_sub(1);
                }
                self.frames.discard(head);
            }
            if !conn.dropping {
                conn.dropping = true;
                tracing::warn!(peer = %conn.peer, queued = conn.outbox.queued_bytes(), "slow consumer: dropping events");
            }
            return discard(self.frames);
        }
        if let (true, Some(head)) = (hold, head) {
            let id_at =
                self.frames.bytes(head).len() - if key.version == Version::V5 { 3 } else { 2 };
            self.frames.retain(head);
            self.frames.retain(frame);
            let extras = m.extras();
            extras.held.push_back(session::Held {
                head,
                payload: frame,
                id_at,
                total,
            });
            extras.held_bytes += total;
            if conn.outbox.queued_bytes() + extras.held_bytes > outbox_max {
                self.doomed
                    .push((index, generation, CloseCause::SlowConsumer));
            }
            return;
        }
        let mut header = [0u8; HEADER_MAX];
        let header_len = conn.framing.message_header(total, &mut header).unwrap_or(0);
        let was_empty = conn.outbox.is_empty();
        match head {
            Some(head) => {
                conn.outbox.push(self.frames, &header[..header_len], head);
                conn.outbox.push(self.frames, &[], frame);
            }
            None => conn.outbox.push(self.frames, &header[..header_len], frame),
        }
        let queued = conn.outbox.queued_bytes();
        if queued > outbox_max {
            self.doomed
                .push((index, generation, CloseCause::SlowConsumer));
            return;
        }
        if queued > outbox_max / 4 * 3 && super::output::stalls(conn, self.now32) {
            *self.pressure = true;
        }
        if was_empty {
            self.dirty.push(index);
        }
    }
}

/// Releases what a closed MQTT connection held (QoS 1 deliveries waiting for a packet id).
pub(super) fn forget(conn: &mut Conn, frames: &mut FrameStore) {
    if let Some(extras) = mqtt_state(conn).and_then(|m| m.extras.as_mut()) {
        if !extras.held.is_empty() {
            let held = extras.held.drain(..).flat_map(|h| [h.head, h.payload]);
            frames.bury(held.collect());
        }
        extras.held_bytes = 0;
    }
}

/// One WAMP subscription of a SUBSCRIBE answered (`Ok(id)` or `Err(code)`): notes it, and when the SUBSCRIBE is
/// complete returns its packet id and SUBACK codes (removing filters that got nothing).
fn subscribed(
    m: &mut MqttConn,
    seq: u32,
    index: u32,
    part: u8,
    answer: Result<Id, u8>,
) -> Option<(u16, Vec<u8>)> {
    let extras = m.extras.as_mut()?;
    let at = extras.pending.iter().position(|p| p.seq == seq)?;
    let i = index as usize;
    let (filter, _) = extras.pending[at].filters.get(i)?.clone();
    match answer {
        Ok(id) => {
            let exact = match filter_to_wamp(&filter) {
                Ok(WampFilter::Exact(uri)) => Some(uri),
                Ok(WampFilter::Prefix {
                    parent: Some(parent),
                    ..
                }) if part == 1 => Some(parent),
                _ => None,
            };
            if extras.granted(&filter, usize::from(part), id, exact.as_deref()) {
                let granted = extras.filters.get(&*filter).map_or(0, |f| f.qos as u8);
                extras.pending[at].codes[i] = granted;
            }
        }
        Err(code) => {
            let slot = &mut extras.pending[at].codes[i];
            if *slot == WAITING {
                *slot = code;
            }
        }
    }
    let pending = &mut extras.pending[at];
    pending.waiting = pending.waiting.saturating_sub(1);
    if pending.waiting > 0 {
        return None;
    }
    let pending = extras.pending.swap_remove(at);
    for (i, (filter, created)) in pending.filters.iter().enumerate() {
        let refused = pending.codes[i] >= 0x80;
        let empty = extras
            .filters
            .get(&**filter)
            .is_some_and(|f| f.parts == [None, None]);
        if refused && *created && empty {
            extras.filters.remove(&**filter);
        }
    }
    m.no_local = m.extras.as_ref().is_some_and(|e| e.all_no_local());
    Some((pending.packet_id, pending.codes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MQTT connections, WAMP connections and the HTTP bridge's sessions are told apart by their IDs alone.
    #[test]
    fn connection_ids_tell_mqtt_from_wamp_and_the_http_bridge() {
        let wamp = super::super::conn_id(7, 3);
        let mqtt = ConnId(wamp.0 | MQTT_BIT);
        assert!(!is_mqtt(wamp));
        assert!(is_mqtt(mqtt));
        assert_eq!(conn_index(mqtt), (7, 3));
        for service in [0, 1, 0xFFFF] {
            assert!(!is_mqtt(crate::http::session_conn(service)));
        }
        assert!(is_mqtt(ConnId(super::super::conn_id(0, 0).0 | MQTT_BIT)));
    }
}
