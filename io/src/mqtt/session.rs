//! The MQTT session layer's state and translations, without sockets: what one MQTT connection keeps between
//! packets ([`MqttConn`], inline in the connection, and [`Extras`], allocated on first use), the listener's
//! payload mapping ([`ListenerConfig`]), and the conversions between MQTT payloads and WAMP arguments, topics and
//! URIs, and WAMP error URIs and MQTT reason codes. The event loop's side (reading packets, handing the engine
//! WAMP messages, turning the engine's output into packets) is `io/src/server/mqtt.rs`.
//!
//! # The mapping
//!
//! An MQTT client is one WAMP session of the listener's realm. CONNECT is HELLO (with AUTHENTICATE when the
//! engine challenges a user name's ticket), its will a testament (`wamp.session.add_testament`); SUBSCRIBE is one
//! WAMP SUBSCRIBE per WAMP subscription of each filter ([`super::topic::filter_to_wamp`]); PUBLISH is PUBLISH
//! with `acknowledge` for QoS 1 and 2 (the PUBACK or PUBREC goes out when the engine's PUBLISHED says the router
//! took the message); EVENT is PUBLISH to the subscriber. Request IDs carry what the answer needs to become an
//! MQTT packet ([`Request`]), so nothing is kept per publication.

use std::borrow::Cow;

use kreisel_codec::{Field, Id, Kind, Payload, RawValue, Serializer, Value};

use super::packet::{reason, QoS, Version};
use crate::config::{Listener, PayloadFormat};
use crate::framer::WebSocketFramer;

/// QoS 2 publications a client may have waiting for PUBREL at once; MQTT 5 CONNACK announces it as Receive
/// Maximum (QoS 1 publications are acknowledged as they are handled, so they never wait).
pub const RECEIVE_MAX: u16 = 1024;
/// Topic aliases a client may set (MQTT 5 CONNACK Topic Alias Maximum); each holds a URI of at most `uri_max`.
pub const TOPIC_ALIAS_MAX: u16 = 16;

/// How one topic's payloads cross between MQTT and WAMP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadMode {
    /// MQTT payload <-> one binary argument.
    Passthrough,
    /// MQTT payload <-> a document `{"args": [...], "kwargs": {...}}` in this serializer.
    Native(Serializer),
}

/// What an MQTT listener says: the realm its clients join and the payload mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    pub realm: String,
    /// URI prefixes and their modes, longest prefix first.
    mapping: Vec<(String, PayloadMode)>,
}

impl ListenerConfig {
    /// The MQTT side of a listener, if it speaks MQTT.
    pub fn of(listener: &Listener) -> Option<ListenerConfig> {
        let realm = listener.realm.clone()?;
        let mut mapping: Vec<(String, PayloadMode)> = (listener.payload_mapping.iter().flatten())
            .map(|(prefix, format)| {
                let mode = match format {
                    PayloadFormat::Passthrough => PayloadMode::Passthrough,
                    PayloadFormat::Native { serializer } => {
                        PayloadMode::Native(serializer.serializer())
                    }
                };
                (prefix.clone(), mode)
            })
            .collect();
        mapping.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Some(ListenerConfig { realm, mapping })
    }

    /// The mode of the topic `uri`: the longest configured prefix of it decides; passthrough without one.
    pub fn mode(&self, uri: &str) -> PayloadMode {
        (self.mapping.iter())
            .find(|(prefix, _)| uri.starts_with(prefix.as_str()))
            .map_or(PayloadMode::Passthrough, |(_, mode)| *mode)
    }
}

/// Where an MQTT connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Nothing but a CONNECT may come.
    AwaitConnect,
    /// The CONNECT is being handled: the engine's answers land in [`MqttConn::outcome`].
    Connecting,
    Connected,
    /// Refused, disconnected or broken: nothing more is read.
    Closing,
}

/// What the engine answered while a CONNECT was handled (written by the sink, read by the CONNECT handler).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pending,
    /// CHALLENGE for a ticket: AUTHENTICATE with the password.
    Challenged,
    Welcomed,
    /// ABORT: the CONNACK (with this MQTT 5 reason code) was sent by the sink.
    Refused(u8),
    /// The will became a testament.
    WillKept,
    /// The testament was refused (MQTT 5 reason code).
    WillRefused(u8),
}

/// One MQTT connection's state, inline in the connection: a connection that only publishes holds nothing else.
#[derive(Debug)]
pub struct MqttConn {
    pub phase: Phase,
    pub outcome: Outcome,
    pub version: Version,
    /// All the client's subscriptions have No Local (MQTT 5): its publications are not delivered to itself.
    pub no_local: bool,
    /// Seconds (0: no keep-alive); the connection is closed after 1.5 times this without a packet.
    pub keep_alive: u16,
    /// The packet id of the next QoS 1 PUBLISH to the client, and how many await their PUBACK.
    pub next_id: u16,
    pub inflight: u16,
    /// The client's Receive Maximum (MQTT 5; 65535 otherwise).
    pub receive_max: u16,
    /// The client's Maximum Packet Size (MQTT 5; `u32::MAX` otherwise).
    pub packet_max: u32,
    pub extras: Option<Box<Extras>>,
}

/// What only some connections need, allocated on first use: subscriptions, SUBACKs in waiting, QoS 2 packet ids,
/// topic aliases, and the WebSocket framing of MQTT over WebSocket.
#[derive(Debug, Default)]
pub struct Extras {
    /// The client's subscriptions by topic filter.
    pub filters: std::collections::HashMap<Box<str>, Filter>,
    /// The WAMP subscriptions they make up, sorted by ID (looked up for every EVENT).
    pub subs: Vec<WampSub>,
    /// SUBSCRIBEs whose WAMP subscriptions are not all answered yet (a router of several shards answers a new
    /// subscription once every shard installed it).
    pub pending: Vec<PendingSubscribe>,
    pub next_seq: u32,
    /// QoS 2 publications routed and answered with PUBREC, waiting for PUBREL (at most [`RECEIVE_MAX`]).
    pub qos2: Vec<u16>,
    /// Topic alias `n` is `aliases[n - 1]`, the WAMP URI it stands for.
    pub aliases: Vec<Option<Box<str>>>,
    pub ws: Option<Box<WsIn>>,
    /// QoS 1 deliveries waiting for a packet id (the client's window was full), oldest first, and their bytes
    /// (counted with the outbox against `outbox_max`).
    pub held: std::collections::VecDeque<Held>,
    pub held_bytes: usize,
}

/// A QoS 1 PUBLISH built but not sent: its header (with a packet id to be written at `id_at`) and its payload,
/// each a frame of the shard's store that this entry holds a reference to.
#[derive(Debug)]
pub struct Held {
    pub head: crate::outbox::FrameId,
    pub payload: crate::outbox::FrameId,
    pub id_at: usize,
    pub total: usize,
}

/// MQTT over WebSocket: the frame reader, and the start of an MQTT packet a WebSocket message left incomplete
/// (bounded by the largest packet accepted).
#[derive(Debug)]
pub struct WsIn {
    pub framer: WebSocketFramer,
    pub carry: Vec<u8>,
}

/// One MQTT subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// The QoS granted (at most 1).
    pub qos: QoS,
    pub no_local: bool,
    /// The WAMP subscriptions it was granted (one or two; see [`super::topic::WampFilter`]).
    pub parts: [Option<Id>; 2],
}

/// One WAMP subscription of the connection, and how its events become PUBLISHes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WampSub {
    pub id: Id,
    /// For an exact subscription, its URI (EVENTs carry no topic then).
    pub uri: Option<Box<str>>,
    /// The highest QoS of the filters it serves.
    pub qos: QoS,
    /// Filters it serves.
    pub refs: u32,
    /// A filter starting with a wildcard: events under the router's `wamp.` are not delivered (as MQTT keeps `$`
    /// topics from such filters).
    pub wildcard_first: bool,
}

/// A SUBSCRIBE waiting for its WAMP answers.
#[derive(Debug)]
pub struct PendingSubscribe {
    pub seq: u32,
    pub packet_id: u16,
    /// Answers still to come.
    pub waiting: u32,
    /// Per filter: the SUBACK code so far ([`WAITING`] until one part answered).
    pub codes: Vec<u8>,
    /// Per filter: the filter, and whether this SUBSCRIBE created it (a filter all of whose parts were refused
    /// is then removed again).
    pub filters: Vec<(Box<str>, bool)>,
}

/// A SUBACK code not known yet.
pub const WAITING: u8 = 0xFF;

impl MqttConn {
    pub fn new() -> MqttConn {
        MqttConn {
            phase: Phase::AwaitConnect,
            outcome: Outcome::Pending,
            version: Version::V311,
            no_local: false,
            keep_alive: 0,
            next_id: 1,
            inflight: 0,
            receive_max: u16::MAX,
            packet_max: u32::MAX,
            extras: None,
        }
    }

    /// MQTT over WebSocket.
    pub fn over_websocket(framer: WebSocketFramer) -> MqttConn {
        let mut conn = MqttConn::new();
        conn.extras().ws = Some(Box::new(WsIn {
            framer,
            carry: Vec::new(),
        }));
        conn
    }

    pub fn extras(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Default::default)
    }

    /// The WAMP subscription `id`, if the connection holds it.
    pub fn sub(&self, id: Id) -> Option<&WampSub> {
        let subs = &self.extras.as_ref()?.subs;
        subs.binary_search_by_key(&id, |s| s.id)
            .ok()
            .map(|i| &subs[i])
    }

    /// The packet id for the next QoS 1 PUBLISH to the client, if its window has room.
    pub fn take_packet_id(&mut self) -> Option<u16> {
        if self.inflight >= self.receive_max {
            return None;
        }
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        self.inflight += 1;
        Some(id)
    }

    /// Bytes held for incomplete input (MQTT over WebSocket), and whether a packet or message is incomplete.
    pub fn assembly(&self) -> (usize, bool) {
        match self.extras.as_ref().and_then(|e| e.ws.as_ref()) {
            Some(ws) => {
                let (held, open) = crate::framer::Framer::assembly(&ws.framer);
                (held + ws.carry.capacity(), open || !ws.carry.is_empty())
            }
            None => (0, false),
        }
    }
}

impl Default for MqttConn {
    fn default() -> Self {
        MqttConn::new()
    }
}

impl Extras {
    /// Notes WAMP subscription `id` as granted to filter `filter` (the `part`-th of its WAMP subscriptions).
    /// Returns whether the filter still exists.
    pub fn granted(&mut self, filter: &str, part: usize, id: Id, uri: Option<&str>) -> bool {
        let Some(entry) = self.filters.get_mut(filter) else {
            return false;
        };
        let qos = entry.qos;
        let new = entry.parts[part] != Some(id);
        entry.parts[part] = Some(id);
        let wildcard_first = filter.starts_with(['+', '#']);
        match self.subs.binary_search_by_key(&id, |s| s.id) {
            Ok(i) => {
                let sub = &mut self.subs[i];
                if new {
                    sub.refs += 1;
                }
                sub.wildcard_first |= wildcard_first;
            }
            Err(i) => self.subs.insert(
                i,
                WampSub {
                    id,
                    uri: uri.map(Into::into),
                    qos,
                    refs: 1,
                    wildcard_first,
                },
            ),
        }
        self.recompute(id);
        true
    }

    /// Removes MQTT subscription `filter`; returns the WAMP subscriptions no other filter uses any more (to be
    /// unsubscribed), or `None` if there was no such subscription.
    pub fn remove_filter(&mut self, filter: &str) -> Option<[Option<Id>; 2]> {
        let entry = self.filters.remove(filter)?;
        let mut released = [None, None];
        for (slot, id) in entry.parts.into_iter().enumerate() {
            let Some(id) = id else { continue };
            if let Ok(i) = self.subs.binary_search_by_key(&id, |s| s.id) {
                self.subs[i].refs = self.subs[i].refs.saturating_sub(1);
                if self.subs[i].refs == 0 {
                    self.subs.remove(i);
                    released[slot] = Some(id);
                } else {
                    self.recompute(id);
                }
            }
        }
        Some(released)
    }

    /// The QoS and wildcard flag of WAMP subscription `id` again, from the filters it serves.
    fn recompute(&mut self, id: Id) {
        let Ok(i) = self.subs.binary_search_by_key(&id, |s| s.id) else {
            return;
        };
        let (mut qos, mut wildcard_first) = (QoS::AtMostOnce, false);
        for (filter, entry) in &self.filters {
            if entry.parts.contains(&Some(id)) {
                qos = qos.max(entry.qos);
                wildcard_first |= filter.starts_with(['+', '#']);
            }
        }
        self.subs[i].qos = qos;
        self.subs[i].wildcard_first = wildcard_first;
    }

    /// Whether every subscription has No Local (and there is one).
    pub fn all_no_local(&self) -> bool {
        !self.filters.is_empty() && self.filters.values().all(|f| f.no_local)
    }

    /// Filters of SUBSCRIBEs in waiting, over all of them.
    pub fn pending_filters(&self) -> usize {
        self.pending.iter().map(|p| p.codes.len()).sum()
    }
}

// -------------------------------------------------------------------------------------------------------------
// Request IDs

/// What a WAMP request of an MQTT session was, from its request ID: the answer's request ID says which MQTT
/// packet to send, so the session keeps nothing per publication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `wamp.session.add_testament` for the will.
    Testament,
    /// `wamp.session.flush_testaments` (DISCONNECT without will).
    Flush,
    /// A PUBLISH of QoS 1 or 2 with its packet id.
    Publish {
        qos: QoS,
        packet_id: u16,
    },
    /// Part `part` of filter `index` of the SUBSCRIBE numbered `seq`.
    Subscribe {
        seq: u32,
        index: u32,
        part: u8,
    },
    Other,
}

const TAG: u32 = 50;
const SEQ_MASK: u64 = 0xFF_FFFF;
/// Request ID of a QoS 0 PUBLISH (nothing answers it).
pub const REQUEST_QOS0: u64 = 3 << TAG;

impl Request {
    pub fn id(self) -> u64 {
        match self {
            Request::Testament => 1,
            Request::Flush => 2,
            Request::Publish { qos, packet_id } => {
                1 << TAG | (qos as u64) << 16 | u64::from(packet_id)
            }
            Request::Subscribe { seq, index, part } => {
                2 << TAG
                    | (u64::from(seq) & SEQ_MASK) << 25
                    | (u64::from(index) & SEQ_MASK) << 1
                    | u64::from(part & 1)
            }
            Request::Other => REQUEST_QOS0,
        }
    }

    pub fn of(id: Id) -> Request {
        let id = id.get();
        match (id >> TAG, id) {
            (0, 1) => Request::Testament,
            (0, 2) => Request::Flush,
            (1, _) => Request::Publish {
                qos: QoS::from_bits(((id >> 16) & 3) as u8).unwrap_or(QoS::AtLeastOnce),
                packet_id: id as u16,
            },
            (2, _) => Request::Subscribe {
                seq: ((id >> 25) & SEQ_MASK) as u32,
                index: ((id >> 1) & SEQ_MASK) as u32,
                part: (id & 1) as u8,
            },
            _ => Request::Other,
        }
    }

    /// As a WAMP ID (every request ID above is in 1..=2^53).
    pub fn wamp(self) -> Id {
        Id::new(self.id()).unwrap_or(Id::FIRST)
    }
}

// -------------------------------------------------------------------------------------------------------------
// Payloads

/// An MQTT payload that the topic's payload mode cannot take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadError(pub String);

/// An inbound payload as WAMP arguments (borrowing the payload or the caller's scratch buffer), and in native
/// mode the document, whose black/white list keys become PUBLISH options (as crossbar reads them).
#[derive(Clone, Copy, Debug)]
pub struct Arguments<'a> {
    pub args: Option<RawValue<'a>>,
    pub kwargs: Option<RawValue<'a>>,
    pub document: Option<RawValue<'a>>,
}

/// The black/white list keys of a native document that become PUBLISH options.
pub const LIST_KEYS: [&str; 6] = [
    "exclude",
    "exclude_authid",
    "exclude_authrole",
    "eligible",
    "eligible_authid",
    "eligible_authrole",
];

/// The WAMP arguments of an MQTT payload in `mode`. Passthrough writes `[payload]` (MessagePack, one `bin`) into
/// `scratch`; native validates the payload as a document of the serializer and takes its `args` (a list) and
/// `kwargs` (a dictionary).
pub fn arguments<'a>(
    mode: PayloadMode,
    payload: &'a [u8],
    scratch: &'a mut Vec<u8>,
) -> Result<Arguments<'a>, PayloadError> {
    match mode {
        PayloadMode::Passthrough => {
            scratch.clear();
            scratch.push(0x91);
            let len = payload.len();
            if len <= 0xFF {
                scratch.extend_from_slice(&[0xc4, len as u8]);
            } else if len <= 0xFFFF {
                scratch.push(0xc5);
                scratch.extend_from_slice(&(len as u16).to_be_bytes());
            } else {
                scratch.push(0xc6);
                scratch.extend_from_slice(&(len as u32).to_be_bytes());
            }
            scratch.extend_from_slice(payload);
            Ok(Arguments {
                args: Some(RawValue::trusted(Serializer::MsgPack, scratch)),
                kwargs: None,
                document: None,
            })
        }
        PayloadMode::Native(serializer) => {
            let name = serializer.name();
            let document = RawValue::parse(serializer, payload)
                .map_err(|e| PayloadError(format!("not a {name} document: {e}")))?;
            if document.kind() != Kind::Dict {
                return Err(PayloadError(format!(
                    "a {name} payload must be a map with \"args\" and/or \"kwargs\""
                )));
            }
            let member = |key: &str, kind: Kind| match document.get(key) {
                Some(value) if value.is_null() => Ok(None),
                Some(value) if value.kind() == kind => Ok(Some(value)),
                Some(_) => Err(PayloadError(format!(
                    "\"{key}\" must be a {}",
                    if kind == Kind::List { "list" } else { "map" }
                ))),
                None => Ok(None),
            };
            let args = member("args", Kind::List)?;
            let kwargs = member("kwargs", Kind::Dict)?;
            Ok(Arguments {
                args,
                kwargs,
                document: LIST_KEYS
                    .iter()
                    .any(|key| document.get(key).is_some())
                    .then_some(document),
            })
        }
    }
}

/// The MQTT payload of a WAMP event in `mode`: passthrough takes the one binary (or string, as its UTF-8 bytes)
/// argument, or a passthru payload's binary, and an empty payload for no arguments (`None`: anything else, which
/// such a topic's MQTT subscribers cannot receive); native writes `{"args": ..., "kwargs": ...}` in the
/// serializer into `out`.
pub fn mqtt_payload<'o>(
    mode: PayloadMode,
    payload: &Payload<'o>,
    out: &'o mut Vec<u8>,
) -> Option<Cow<'o, [u8]>> {
    match mode {
        PayloadMode::Passthrough => {
            if payload.kwargs.is_some_and(|k| !is_empty(&k)) {
                return None;
            }
            match payload.args {
                None => Some(Cow::Borrowed(&[])),
                Some(args) => single_bytes(args),
            }
        }
        PayloadMode::Native(serializer) => {
            out.clear();
            let mut fields: [(&str, Field<'_>); 2] = [("", Field::Bool(false)); 2];
            let mut n = 0;
            for (key, value) in [("args", payload.args), ("kwargs", payload.kwargs)] {
                if let Some(value) = value {
                    fields[n] = (key, value);
                    n += 1;
                }
            }
            let document = Field::Dict(kreisel_codec::Dict::Fields(&fields[..n]));
            kreisel_codec::encode_field(serializer, &document, out);
            Some(Cow::Borrowed(&out[..]))
        }
    }
}

/// The bytes of `[binary]`, `[string]`, `[]`, or of a bare binary (a passthru payload in place of the arguments).
fn single_bytes(args: Field<'_>) -> Option<Cow<'_, [u8]>> {
    match args {
        Field::Raw(raw) => match raw.kind() {
            Kind::Bin => raw.as_bytes(),
            Kind::List => {
                let mut items = raw.list()?;
                let Some(first) = items.next() else {
                    return Some(Cow::Borrowed(&[]));
                };
                if items.next().is_some() {
                    return None;
                }
                match first.kind() {
                    Kind::Bin => first.as_bytes(),
                    // A JSON binary string is a Str whose as_bytes decodes it.
                    Kind::Str => first.as_bytes().or_else(|| match first.as_str()? {
                        Cow::Borrowed(s) => Some(Cow::Borrowed(s.as_bytes())),
                        Cow::Owned(s) => Some(Cow::Owned(s.into_bytes())),
                    }),
                    _ => None,
                }
            }
            _ => None,
        },
        Field::Value(value) => match value {
            Value::Bytes(bytes) => Some(Cow::Borrowed(bytes)),
            Value::List(items) => match &items[..] {
                [] => Some(Cow::Borrowed(&[])),
                [Value::Bytes(bytes)] => Some(Cow::Borrowed(bytes)),
                [Value::Str(text)] => Some(Cow::Borrowed(text.as_bytes())),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// Whether a kwargs field is an empty dictionary.
fn is_empty(field: &Field<'_>) -> bool {
    match field {
        Field::Raw(raw) => raw.dict().is_some_and(|mut d| d.next().is_none()),
        Field::Value(Value::Dict(entries)) => entries.is_empty(),
        Field::Dict(dict) => dict.is_empty(),
        _ => false,
    }
}

// -------------------------------------------------------------------------------------------------------------
// Topics

/// Appends the MQTT topic name of URI `uri` (`a.b.c` -> `a/b/c`) to `out` (cleared first); `false` when the URI
/// has no MQTT name (see [`super::topic::uri_to_name`], which this is without the allocation).
pub fn uri_to_name_into(uri: &str, out: &mut String) -> bool {
    out.clear();
    if uri.is_empty() || uri.len() > super::topic::TOPIC_LEN_MAX || uri.starts_with('$') {
        return false;
    }
    for (i, component) in uri.split('.').enumerate() {
        if component.is_empty()
            || component
                .bytes()
                .any(|b| matches!(b, b'/' | b'+' | b'#' | 0) || b.is_ascii_whitespace())
        {
            return false;
        }
        if i > 0 {
            out.push('/');
        }
        out.push_str(component);
    }
    true
}

/// Writes the WAMP URI of MQTT topic name `name` into `out`: [`super::topic::name_to_uri`] without the
/// allocation.
pub fn name_to_uri_into(name: &str, out: &mut String) -> Result<(), super::topic::MapError> {
    use super::topic::MapError;
    super::topic::check_name(name).map_err(MapError::Invalid)?;
    if name.starts_with('$') {
        return Err(MapError::Reserved);
    }
    out.clear();
    for (i, level) in name.split('/').enumerate() {
        if level.is_empty() {
            return Err(MapError::EmptyLevel);
        }
        if level
            .bytes()
            .any(|b| b == b'.' || b == b'#' || b == b'+' || b.is_ascii_whitespace())
        {
            return Err(MapError::InvalidCharacter);
        }
        if i > 0 {
            out.push('.');
        }
        out.push_str(level);
    }
    Ok(())
}

// -------------------------------------------------------------------------------------------------------------
// Reason codes

/// Where a WAMP error answers an MQTT packet (the same URI means different MQTT codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    Connect,
    Publish,
    Subscribe,
}

/// The MQTT 5 reason code for a WAMP error or ABORT reason `uri` (with its message `text`).
pub fn reason_code(uri: &str, text: &str, context: Context) -> u8 {
    use kreisel_engine::errors;
    match uri {
        errors::NOT_AUTHORIZED if text.contains("sessions_per_realm_max") => reason::QUOTA_EXCEEDED,
        errors::NOT_AUTHORIZED => reason::NOT_AUTHORIZED,
        errors::AUTHENTICATION_FAILED | errors::NO_AUTH_METHOD => reason::BAD_USER_NAME_OR_PASSWORD,
        errors::NO_SUCH_REALM => reason::SERVER_UNAVAILABLE,
        errors::SYSTEM_SHUTDOWN => reason::SERVER_SHUTTING_DOWN,
        errors::LIMIT_EXCEEDED => reason::QUOTA_EXCEEDED,
        errors::PROTOCOL_VIOLATION => reason::PROTOCOL_ERROR,
        "wamp.close.killed" => reason::ADMINISTRATIVE_ACTION,
        errors::INVALID_URI => match context {
            Context::Subscribe => reason::TOPIC_FILTER_INVALID,
            _ => reason::TOPIC_NAME_INVALID,
        },
        errors::OPTION_NOT_ALLOWED | errors::INVALID_ARGUMENT => match context {
            Context::Subscribe => reason::IMPLEMENTATION_SPECIFIC_ERROR,
            _ => reason::PAYLOAD_FORMAT_INVALID,
        },
        // Any other ABORT of a CONNECT is a refusal by a dynamic authenticator (its own error URI, as crossbar
        // passes it on): the client is not authorized to connect.
        _ if context == Context::Connect => reason::NOT_AUTHORIZED,
        _ => reason::UNSPECIFIED_ERROR,
    }
}

/// The MQTT 3.1.1 CONNACK return code closest to an MQTT 5 CONNACK reason code.
pub fn connack_v311(code: u8) -> u8 {
    use reason::v311;
    match code {
        reason::SUCCESS => v311::ACCEPTED,
        reason::UNSUPPORTED_PROTOCOL_VERSION => v311::UNACCEPTABLE_PROTOCOL_VERSION,
        reason::CLIENT_IDENTIFIER_NOT_VALID => v311::IDENTIFIER_REJECTED,
        reason::BAD_USER_NAME_OR_PASSWORD | reason::BAD_AUTHENTICATION_METHOD => {
            v311::BAD_USER_NAME_OR_PASSWORD
        }
        reason::NOT_AUTHORIZED | reason::BANNED => v311::NOT_AUTHORIZED,
        _ => v311::SERVER_UNAVAILABLE,
    }
}

/// The MQTT 3.1.1 SUBACK code of an MQTT 5 one: a granted QoS, or 0x80.
pub fn suback_v311(code: u8) -> u8 {
    if code < 0x80 {
        code
    } else {
        reason::UNSPECIFIED_ERROR
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SerializerName;
    use std::collections::BTreeMap;

    fn config(mapping: &[(&str, PayloadFormat)]) -> ListenerConfig {
        let toml = "[[realms]]\nname = \"iot\"\n[[listeners]]\nlisten = \"127.0.0.1:1883\"\n\
                    transports = [\"mqtt\"]\nrealm = \"iot\"\n";
        let mut listener = crate::Config::from_toml(toml).unwrap().listeners.remove(0);
        listener.payload_mapping = Some(
            (mapping.iter())
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>(),
        );
        ListenerConfig::of(&listener).unwrap()
    }

    #[test]
    fn the_longest_prefix_decides_the_mode() {
        let json = PayloadFormat::Native {
            serializer: SerializerName::Json,
        };
        let cbor = PayloadFormat::Native {
            serializer: SerializerName::Cbor,
        };
        let c = config(&[
            ("app.", json),
            ("app.raw.", PayloadFormat::Passthrough),
            ("app.raw.c", cbor),
        ]);
        assert_eq!(c.mode("other"), PayloadMode::Passthrough);
        assert_eq!(c.mode("app.x"), PayloadMode::Native(Serializer::Json));
        assert_eq!(c.mode("app.raw.x"), PayloadMode::Passthrough);
        assert_eq!(
            c.mode("app.raw.cbor"),
            PayloadMode::Native(Serializer::Cbor)
        );
        let c = config(&[("", json)]);
        assert_eq!(c.mode("anything"), PayloadMode::Native(Serializer::Json));
    }

    #[test]
    fn request_ids_round_trip_and_stay_wamp_ids() {
        for request in [
            Request::Testament,
            Request::Flush,
            Request::Publish {
                qos: QoS::AtLeastOnce,
                packet_id: 1,
            },
            Request::Publish {
                qos: QoS::ExactlyOnce,
                packet_id: 65535,
            },
            Request::Subscribe {
                seq: 0xFF_FFFF,
                index: 0xFF_FFFF,
                part: 1,
            },
            Request::Subscribe {
                seq: 0,
                index: 0,
                part: 0,
            },
        ] {
            let id = request.id();
            assert!((1..=kreisel_codec::ID_MAX).contains(&id), "{request:?}");
            assert_eq!(Request::of(request.wamp()), request);
        }
        assert_eq!(Request::of(Id::new(REQUEST_QOS0).unwrap()), Request::Other);
    }

    #[test]
    fn passthrough_payloads_are_one_binary_argument_and_back() {
        let mut scratch = Vec::new();
        for len in [0usize, 1, 255, 256, 65535, 65536] {
            let payload = vec![7u8; len];
            let a = arguments(PayloadMode::Passthrough, &payload, &mut scratch).unwrap();
            let args = a.args.unwrap();
            RawValue::parse(Serializer::MsgPack, args.bytes()).unwrap();
            let mut items = args.list().unwrap();
            assert_eq!(items.next().unwrap().as_bytes().unwrap(), &payload[..]);
            let event = Payload {
                args: Some(Field::Raw(args)),
                kwargs: None,
            };
            let mut out = Vec::new();
            let back = mqtt_payload(PayloadMode::Passthrough, &event, &mut out).unwrap();
            assert_eq!(&back[..], &payload[..]);
        }
        // From WAMP: a string argument, a JSON binary, no arguments, a bare passthru binary; others are not
        // representable.
        let json = |text: &'static str| RawValue::parse(Serializer::Json, text.as_bytes()).unwrap();
        let out = &mut Vec::new();
        let of =
            |args: Option<Field<'static>>, kwargs: Option<Field<'static>>, out: &mut Vec<u8>| {
                mqtt_payload(PayloadMode::Passthrough, &Payload { args, kwargs }, out)
                    .map(|c| c.into_owned())
            };
        assert_eq!(
            of(Some(Field::Raw(json(r#"["héllo"]"#))), None, out),
            Some("héllo".as_bytes().to_vec())
        );
        assert_eq!(
            of(Some(Field::Raw(json(r#"["\u0000AQI="]"#))), None, out),
            Some(vec![1, 2])
        );
        assert_eq!(of(None, None, out), Some(vec![]));
        assert_eq!(
            of(
                Some(Field::Raw(json("[]"))),
                Some(Field::Raw(json("{}"))),
                out
            ),
            Some(vec![])
        );
        assert_eq!(of(Some(Field::Raw(json("[1]"))), None, out), None);
        assert_eq!(of(Some(Field::Raw(json(r#"["a", "b"]"#))), None, out), None);
        assert_eq!(of(None, Some(Field::Raw(json(r#"{"a": 1}"#))), out), None);
        let bare = RawValue::parse(Serializer::MsgPack, &[0xc4, 1, 9]).unwrap();
        let bytes = mqtt_payload(
            PayloadMode::Passthrough,
            &Payload {
                args: Some(Field::Raw(bare)),
                kwargs: None,
            },
            out,
        );
        assert_eq!(bytes.as_deref(), Some(&[9u8][..]));
        let value = Value::List(vec![Value::Bytes(vec![5])]);
        let retained = Payload {
            args: Some(Field::Value(&value)),
            kwargs: None,
        };
        assert_eq!(
            mqtt_payload(PayloadMode::Passthrough, &retained, out).as_deref(),
            Some(&[5u8][..])
        );
    }

    #[test]
    fn native_payloads_are_documents_with_args_and_kwargs() {
        let mut scratch = Vec::new();
        let mode = PayloadMode::Native(Serializer::Json);
        let a = arguments(
            mode,
            br#"{"args": [1, "x"], "kwargs": {"k": true}, "other": 0}"#,
            &mut scratch,
        )
        .unwrap();
        assert_eq!(a.args.unwrap().bytes(), br#"[1, "x"]"#);
        assert_eq!(a.kwargs.unwrap().bytes(), br#"{"k": true}"#);
        assert!(a.document.is_none());
        let a = arguments(mode, br#"{"args": [1], "exclude": [5]}"#, &mut scratch).unwrap();
        assert!(a.document.is_some());
        let a = arguments(mode, br#"{"args": null}"#, &mut scratch).unwrap();
        assert!(a.args.is_none() && a.kwargs.is_none());
        for bad in [
            &b"[1]"[..],
            b"{\"args\": 1}",
            b"{\"kwargs\": []}",
            b"{",
            b"",
            b"\xff",
        ] {
            assert!(arguments(mode, bad, &mut scratch).is_err(), "{bad:?}");
        }
        // MessagePack documents, and events written as documents in the mode's serializer.
        let msgpack = [0x81, 0xa4, b'a', b'r', b'g', b's', 0x91, 0x2a];
        let a = arguments(
            PayloadMode::Native(Serializer::MsgPack),
            &msgpack,
            &mut scratch,
        )
        .unwrap();
        assert_eq!(a.args.unwrap().bytes(), &[0x91, 0x2a]);
        let args = RawValue::parse(Serializer::MsgPack, &[0x91, 0x2a]).unwrap();
        let event = Payload {
            args: Some(Field::Raw(args)),
            kwargs: None,
        };
        let mut out = Vec::new();
        let json = mqtt_payload(mode, &event, &mut out).unwrap().into_owned();
        assert_eq!(json, br#"{"args":[42]}"#);
        let json = mqtt_payload(mode, &Payload::EMPTY, &mut out)
            .unwrap()
            .into_owned();
        assert_eq!(json, b"{}");
        let cbor = mqtt_payload(PayloadMode::Native(Serializer::Cbor), &event, &mut out).unwrap();
        assert_eq!(
            &cbor[..],
            &[0xa1, 0x64, b'a', b'r', b'g', b's', 0x81, 0x18, 0x2a]
        );
    }

    #[test]
    fn topic_names_and_uris_without_allocation_agree_with_the_mapping() {
        use super::super::topic::{name_to_uri, uri_to_name};
        let mut out = String::new();
        for name in [
            "a/b/c", "a", "ü/€", "a//b", "/a", "a/", "$SYS/x", "a.b", "a b", "a+", "#",
        ] {
            let expected = name_to_uri(name);
            let got = name_to_uri_into(name, &mut out).map(|()| out.clone());
            assert_eq!(got, expected, "{name}");
        }
        for uri in [
            "a.b.c", "a", "a..b", ".a", "a.", "$x", "a/b", "a+b", "a b", "",
        ] {
            let expected = uri_to_name(uri).ok();
            let got = uri_to_name_into(uri, &mut out).then(|| out.clone());
            assert_eq!(got, expected, "{uri}");
        }
    }

    #[test]
    fn reason_codes_follow_the_wamp_errors() {
        use kreisel_engine::errors;
        assert_eq!(
            reason_code(errors::NOT_AUTHORIZED, "", Context::Publish),
            0x87
        );
        assert_eq!(
            reason_code(
                errors::NOT_AUTHORIZED,
                "limits.sessions_per_realm_max",
                Context::Connect
            ),
            0x97
        );
        assert_eq!(
            reason_code(errors::INVALID_URI, "", Context::Subscribe),
            0x8F
        );
        assert_eq!(reason_code(errors::INVALID_URI, "", Context::Publish), 0x90);
        assert_eq!(
            reason_code(errors::AUTHENTICATION_FAILED, "", Context::Connect),
            0x86
        );
        // A dynamic authenticator's own error refuses a CONNECT as not authorized; elsewhere it is unspecified.
        assert_eq!(
            reason_code("com.example.invalid_ticket", "", Context::Connect),
            0x87
        );
        assert_eq!(
            reason_code("com.example.invalid_ticket", "", Context::Publish),
            0x80
        );
        assert_eq!(connack_v311(0x86), 4);
        assert_eq!(connack_v311(0x87), 5);
        assert_eq!(connack_v311(0x88), 3);
        assert_eq!(suback_v311(1), 1);
        assert_eq!(suback_v311(0x8F), 0x80);
    }
}

#[cfg(test)]
mod size {
    /// An MQTT connection's state sits inline in the connection's transport: it must not make every connection
    /// bigger than a WebSocket one is anyway.
    #[test]
    fn the_inline_state_is_no_bigger_than_a_websocket_framer() {
        let mqtt = std::mem::size_of::<super::MqttConn>();
        let framer = std::mem::size_of::<crate::framer::AnyFramer>();
        assert!(mqtt <= framer, "MqttConn {mqtt} bytes, AnyFramer {framer}");
    }
}
