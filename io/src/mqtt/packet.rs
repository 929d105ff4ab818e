//! The packet model: [`Packet`] and its parts, borrowing the bytes they were decoded from (or, for packets the
//! router builds, the caller's own slices). See the [module documentation](super) for the overview.

use std::fmt;

use super::topic::TopicError;

/// Largest remaining length a 4-octet variable byte integer holds: 268,435,455 (256 MiB - 1).
pub const REMAINING_LENGTH_MAX: usize = 268_435_455;
/// Largest packet: 1 octet of packet type and flags, 4 of remaining length, and the remaining length.
pub const PACKET_SIZE_MAX: usize = 1 + 4 + REMAINING_LENGTH_MAX;

/// The protocol version a connection speaks, fixed by its CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

impl Version {
    /// The protocol level octet of the CONNECT.
    pub fn level(self) -> u8 {
        match self {
            Version::V311 => 4,
            Version::V5 => 5,
        }
    }
}

/// A quality of service level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS of a 2-bit value; 3 is not a QoS.
    pub fn from_bits(bits: u8) -> Option<QoS> {
        match bits {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// Who sent the packets being decoded. A server reads what clients send ([`Side::Client`]); packets only the
/// other side may send are a protocol error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// The packet types (the high nibble of the first octet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    Auth = 15,
}

impl PacketType {
    /// The packet type of a nibble; 0 is reserved.
    pub fn from_nibble(nibble: u8) -> Option<PacketType> {
        use PacketType::*;
        Some(match nibble {
            1 => Connect,
            2 => ConnAck,
            3 => Publish,
            4 => PubAck,
            5 => PubRec,
            6 => PubRel,
            7 => PubComp,
            8 => Subscribe,
            9 => SubAck,
            10 => Unsubscribe,
            11 => UnsubAck,
            12 => PingReq,
            13 => PingResp,
            14 => Disconnect,
            15 => Auth,
            _ => return None,
        })
    }

    /// The flags the spec fixes for this type (every type but PUBLISH, whose flags carry DUP, QoS and RETAIN).
    pub fn fixed_flags(self) -> Option<u8> {
        match self {
            PacketType::Publish => None,
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => Some(0b0010),
            _ => Some(0),
        }
    }

    /// Whether a client may send this type (the rest only a server).
    pub fn sent_by_client(self) -> bool {
        use PacketType::*;
        !matches!(self, ConnAck | SubAck | UnsubAck | PingResp)
    }

    /// Whether a server may send this type.
    pub fn sent_by_server(self) -> bool {
        use PacketType::*;
        !matches!(self, Connect | Subscribe | Unsubscribe | PingReq)
    }
}

/// MQTT 5 reason codes (and the 3.1.1 CONNACK return codes) used by this module and its callers.
pub mod reason {
    pub const SUCCESS: u8 = 0x00;
    pub const GRANTED_QOS_1: u8 = 0x01;
    pub const GRANTED_QOS_2: u8 = 0x02;
    pub const DISCONNECT_WITH_WILL: u8 = 0x04;
    pub const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;
    pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
    pub const CONTINUE_AUTHENTICATION: u8 = 0x18;
    pub const RE_AUTHENTICATE: u8 = 0x19;
    pub const UNSPECIFIED_ERROR: u8 = 0x80;
    pub const MALFORMED_PACKET: u8 = 0x81;
    pub const PROTOCOL_ERROR: u8 = 0x82;
    pub const IMPLEMENTATION_SPECIFIC_ERROR: u8 = 0x83;
    pub const UNSUPPORTED_PROTOCOL_VERSION: u8 = 0x84;
    pub const CLIENT_IDENTIFIER_NOT_VALID: u8 = 0x85;
    pub const BAD_USER_NAME_OR_PASSWORD: u8 = 0x86;
    pub const NOT_AUTHORIZED: u8 = 0x87;
    pub const SERVER_UNAVAILABLE: u8 = 0x88;
    pub const SERVER_BUSY: u8 = 0x89;
    pub const BANNED: u8 = 0x8A;
    pub const SERVER_SHUTTING_DOWN: u8 = 0x8B;
    pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
    pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
    pub const SESSION_TAKEN_OVER: u8 = 0x8E;
    pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
    pub const TOPIC_NAME_INVALID: u8 = 0x90;
    pub const PACKET_IDENTIFIER_IN_USE: u8 = 0x91;
    pub const PACKET_IDENTIFIER_NOT_FOUND: u8 = 0x92;
    pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
    pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
    pub const PACKET_TOO_LARGE: u8 = 0x95;
    pub const MESSAGE_RATE_TOO_HIGH: u8 = 0x96;
    pub const QUOTA_EXCEEDED: u8 = 0x97;
    pub const ADMINISTRATIVE_ACTION: u8 = 0x98;
    pub const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
    pub const RETAIN_NOT_SUPPORTED: u8 = 0x9A;
    pub const QOS_NOT_SUPPORTED: u8 = 0x9B;
    pub const USE_ANOTHER_SERVER: u8 = 0x9C;
    pub const SERVER_MOVED: u8 = 0x9D;
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0x9E;
    pub const CONNECTION_RATE_EXCEEDED: u8 = 0x9F;
    pub const MAXIMUM_CONNECT_TIME: u8 = 0xA0;
    pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: u8 = 0xA1;
    pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0xA2;

    /// 3.1.1 CONNACK return codes.
    pub mod v311 {
        pub const ACCEPTED: u8 = 0;
        pub const UNACCEPTABLE_PROTOCOL_VERSION: u8 = 1;
        pub const IDENTIFIER_REJECTED: u8 = 2;
        pub const SERVER_UNAVAILABLE: u8 = 3;
        pub const BAD_USER_NAME_OR_PASSWORD: u8 = 4;
        pub const NOT_AUTHORIZED: u8 = 5;
    }

    const CONNACK: &[u8] = &[
        0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95,
        0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
    ];
    const PUBACK: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
    const PUBREL: &[u8] = &[0x00, 0x92];
    const SUBACK: &[u8] = &[
        0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
    ];
    const SUBACK_V311: &[u8] = &[0x00, 0x01, 0x02, 0x80];
    const UNSUBACK: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
    const DISCONNECT: &[u8] = &[
        0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94,
        0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
    ];
    const AUTH: &[u8] = &[0x00, 0x18, 0x19];

    use super::{PacketType, Version};

    /// Whether `code` is a reason code (3.1.1: return code) the spec defines for `packet` in `version`. Types
    /// without a reason code in that version accept only 0.
    pub fn is_valid(packet: PacketType, version: Version, code: u8) -> bool {
        let codes: &[u8] = match (packet, version) {
            (PacketType::ConnAck, Version::V311) => return code <= 5,
            (PacketType::SubAck, Version::V311) => SUBACK_V311,
            (_, Version::V311) => return code == 0,
            (PacketType::ConnAck, _) => CONNACK,
            (PacketType::PubAck | PacketType::PubRec, _) => PUBACK,
            (PacketType::PubRel | PacketType::PubComp, _) => PUBREL,
            (PacketType::SubAck, _) => SUBACK,
            (PacketType::UnsubAck, _) => UNSUBACK,
            (PacketType::Disconnect, _) => DISCONNECT,
            (PacketType::Auth, _) => AUTH,
            _ => return code == 0,
        };
        codes.contains(&code)
    }
}

/// One MQTT control packet. Strings and binary data borrow the buffer the packet was decoded from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    Connect(Connect<'a>),
    ConnAck(ConnAck<'a>),
    Publish(Publish<'a>),
    PubAck(Ack<'a>),
    PubRec(Ack<'a>),
    PubRel(Ack<'a>),
    PubComp(Ack<'a>),
    Subscribe(Subscribe<'a>),
    SubAck(SubAck<'a>),
    Unsubscribe(Unsubscribe<'a>),
    UnsubAck(UnsubAck<'a>),
    PingReq,
    PingResp,
    Disconnect(Disconnect<'a>),
    /// MQTT 5 only.
    Auth(Auth<'a>),
}

impl Packet<'_> {
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }
}

/// CONNECT. The protocol name is `MQTT`; `version` comes from the protocol level (4 or 5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect<'a> {
    pub version: Version,
    /// 3.1.1 "Clean Session", 5 "Clean Start".
    pub clean_start: bool,
    /// Seconds; 0 turns the keep-alive mechanism off.
    pub keep_alive: u16,
    pub properties: Properties<'a>,
    /// May be empty (the server then assigns one, or refuses: that is the session's decision).
    pub client_id: &'a str,
    pub will: Option<Will<'a>>,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
}

/// The will message of a CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Will<'a> {
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5 will properties.
    pub properties: Properties<'a>,
    /// A valid topic name.
    pub topic: &'a str,
    pub payload: &'a [u8],
}

/// CONNACK. `code` is the MQTT 5 reason code, or the 3.1.1 return code (0..=5, see [`reason::v311`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnAck<'a> {
    pub session_present: bool,
    pub code: u8,
    pub properties: Properties<'a>,
}

/// PUBLISH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// A valid topic name; in MQTT 5 it may be empty when the properties carry a topic alias.
    pub topic: &'a str,
    /// Non-zero for QoS 1 and 2; 0 (and not written) for QoS 0.
    pub packet_id: u16,
    pub properties: Properties<'a>,
    pub payload: &'a [u8],
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP. In 3.1.1 only the packet id is on the wire: `code` is 0 and
/// `properties` empty when decoded, and neither is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack<'a> {
    pub packet_id: u16,
    pub code: u8,
    pub properties: Properties<'a>,
}

impl Ack<'_> {
    /// An acknowledgement with reason code 0 (Success) and no properties.
    pub fn success(packet_id: u16) -> Ack<'static> {
        Ack {
            packet_id,
            code: reason::SUCCESS,
            properties: Properties::EMPTY,
        }
    }
}

/// Subscription options of one topic filter of a SUBSCRIBE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriptionOptions {
    /// Maximum QoS the client accepts for this subscription.
    pub qos: QoS,
    /// MQTT 5: do not send the client its own publications.
    pub no_local: bool,
    /// MQTT 5: keep the RETAIN flag of forwarded publications.
    pub retain_as_published: bool,
    /// MQTT 5: when to send retained messages.
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// Options with only a QoS (all a 3.1.1 SUBSCRIBE can say).
    pub fn qos(qos: QoS) -> SubscriptionOptions {
        SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::OnSubscribe,
        }
    }

    pub(crate) fn to_byte(self) -> u8 {
        self.qos as u8
            | u8::from(self.no_local) << 2
            | u8::from(self.retain_as_published) << 3
            | (self.retain_handling as u8) << 4
    }

    /// The options of a byte whose reserved bits, QoS and retain handling were checked.
    pub(crate) fn from_checked_byte(byte: u8) -> SubscriptionOptions {
        SubscriptionOptions {
            qos: QoS::from_bits(byte & 3).unwrap_or(QoS::AtMostOnce),
            no_local: byte & 0b100 != 0,
            retain_as_published: byte & 0b1000 != 0,
            retain_handling: match (byte >> 4) & 3 {
                1 => RetainHandling::OnNewSubscribe,
                2 => RetainHandling::Never,
                _ => RetainHandling::OnSubscribe,
            },
        }
    }
}

/// MQTT 5 Retain Handling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    OnSubscribe = 0,
    /// 1: only if the subscription did not exist yet.
    OnNewSubscribe = 1,
    /// 2: never.
    Never = 2,
}

/// SUBSCRIBE: at least one topic filter with its options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe<'a> {
    pub packet_id: u16,
    /// MQTT 5: a subscription identifier (at most one) and user properties.
    pub properties: Properties<'a>,
    pub filters: Subscriptions<'a>,
}

/// SUBACK: one reason code (3.1.1: return code) per topic filter of the SUBSCRIBE, in its order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubAck<'a> {
    pub packet_id: u16,
    pub properties: Properties<'a>,
    pub codes: &'a [u8],
}

/// UNSUBSCRIBE: at least one topic filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe<'a> {
    pub packet_id: u16,
    pub properties: Properties<'a>,
    pub filters: Filters<'a>,
}

/// UNSUBACK. MQTT 5: one reason code per topic filter of the UNSUBSCRIBE. 3.1.1 has none (`codes` is empty
/// when decoded, and not written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsubAck<'a> {
    pub packet_id: u16,
    pub properties: Properties<'a>,
    pub codes: &'a [u8],
}

/// DISCONNECT. 3.1.1 has neither reason code nor properties (decoded as 0 and empty, not written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disconnect<'a> {
    pub code: u8,
    pub properties: Properties<'a>,
}

impl Disconnect<'_> {
    /// A DISCONNECT with `code` and no properties.
    pub fn with_code(code: u8) -> Disconnect<'static> {
        Disconnect {
            code,
            properties: Properties::EMPTY,
        }
    }
}

/// AUTH (MQTT 5). Its properties must carry the authentication method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth<'a> {
    pub code: u8,
    pub properties: Properties<'a>,
}

// -------------------------------------------------------------------------------------------------------------
// Properties

/// Property identifiers (MQTT 5, section 2.2.2.2).
pub mod property_id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// Largest subscription identifier (a variable byte integer).
pub const SUBSCRIPTION_IDENTIFIER_MAX: u32 = REMAINING_LENGTH_MAX as u32;

/// One MQTT 5 property. Booleans are the properties whose value the spec fixes to 0 or 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Property<'a> {
    /// `true`: the payload is UTF-8.
    PayloadFormatIndicator(bool),
    MessageExpiryInterval(u32),
    ContentType(&'a str),
    ResponseTopic(&'a str),
    CorrelationData(&'a [u8]),
    /// 1..=268,435,455.
    SubscriptionIdentifier(u32),
    SessionExpiryInterval(u32),
    AssignedClientIdentifier(&'a str),
    ServerKeepAlive(u16),
    AuthenticationMethod(&'a str),
    AuthenticationData(&'a [u8]),
    RequestProblemInformation(bool),
    WillDelayInterval(u32),
    RequestResponseInformation(bool),
    ResponseInformation(&'a str),
    ServerReference(&'a str),
    ReasonString(&'a str),
    /// Non-zero.
    ReceiveMaximum(u16),
    TopicAliasMaximum(u16),
    /// Non-zero.
    TopicAlias(u16),
    /// 0 or 1.
    MaximumQoS(QoS),
    RetainAvailable(bool),
    UserProperty(&'a str, &'a str),
    /// Non-zero.
    MaximumPacketSize(u32),
    WildcardSubscriptionAvailable(bool),
    SubscriptionIdentifierAvailable(bool),
    SharedSubscriptionAvailable(bool),
}

impl Property<'_> {
    /// The property identifier.
    pub fn id(&self) -> u8 {
        use property_id as id;
        match self {
            Property::PayloadFormatIndicator(_) => id::PAYLOAD_FORMAT_INDICATOR,
            Property::MessageExpiryInterval(_) => id::MESSAGE_EXPIRY_INTERVAL,
            Property::ContentType(_) => id::CONTENT_TYPE,
            Property::ResponseTopic(_) => id::RESPONSE_TOPIC,
            Property::CorrelationData(_) => id::CORRELATION_DATA,
            Property::SubscriptionIdentifier(_) => id::SUBSCRIPTION_IDENTIFIER,
            Property::SessionExpiryInterval(_) => id::SESSION_EXPIRY_INTERVAL,
            Property::AssignedClientIdentifier(_) => id::ASSIGNED_CLIENT_IDENTIFIER,
            Property::ServerKeepAlive(_) => id::SERVER_KEEP_ALIVE,
            Property::AuthenticationMethod(_) => id::AUTHENTICATION_METHOD,
            Property::AuthenticationData(_) => id::AUTHENTICATION_DATA,
            Property::RequestProblemInformation(_) => id::REQUEST_PROBLEM_INFORMATION,
            Property::WillDelayInterval(_) => id::WILL_DELAY_INTERVAL,
            Property::RequestResponseInformation(_) => id::REQUEST_RESPONSE_INFORMATION,
            Property::ResponseInformation(_) => id::RESPONSE_INFORMATION,
            Property::ServerReference(_) => id::SERVER_REFERENCE,
            Property::ReasonString(_) => id::REASON_STRING,
            Property::ReceiveMaximum(_) => id::RECEIVE_MAXIMUM,
            Property::TopicAliasMaximum(_) => id::TOPIC_ALIAS_MAXIMUM,
            Property::TopicAlias(_) => id::TOPIC_ALIAS,
            Property::MaximumQoS(_) => id::MAXIMUM_QOS,
            Property::RetainAvailable(_) => id::RETAIN_AVAILABLE,
            Property::UserProperty(..) => id::USER_PROPERTY,
            Property::MaximumPacketSize(_) => id::MAXIMUM_PACKET_SIZE,
            Property::WildcardSubscriptionAvailable(_) => id::WILDCARD_SUBSCRIPTION_AVAILABLE,
            Property::SubscriptionIdentifierAvailable(_) => id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            Property::SharedSubscriptionAvailable(_) => id::SHARED_SUBSCRIPTION_AVAILABLE,
        }
    }
}

/// Where a property block stands: which properties it may hold (MQTT 5, section 2.2.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropertyContext {
    Connect,
    Will,
    ConnAck,
    Publish,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP.
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl PropertyContext {
    /// The identifiers allowed here, as a bit set (bit `id`).
    pub(crate) fn allowed(self) -> u64 {
        const fn set(ids: &[u8]) -> u64 {
            let mut bits = 0u64;
            let mut i = 0;
            while i < ids.len() {
                bits |= 1 << ids[i];
                i += 1;
            }
            bits
        }
        use property_id::*;
        match self {
            PropertyContext::Connect => set(&[
                SESSION_EXPIRY_INTERVAL,
                RECEIVE_MAXIMUM,
                MAXIMUM_PACKET_SIZE,
                TOPIC_ALIAS_MAXIMUM,
                REQUEST_RESPONSE_INFORMATION,
                REQUEST_PROBLEM_INFORMATION,
                USER_PROPERTY,
                AUTHENTICATION_METHOD,
                AUTHENTICATION_DATA,
            ]),
            PropertyContext::Will => set(&[
                WILL_DELAY_INTERVAL,
                PAYLOAD_FORMAT_INDICATOR,
                MESSAGE_EXPIRY_INTERVAL,
                CONTENT_TYPE,
                RESPONSE_TOPIC,
                CORRELATION_DATA,
                USER_PROPERTY,
            ]),
            PropertyContext::ConnAck => set(&[
                SESSION_EXPIRY_INTERVAL,
                RECEIVE_MAXIMUM,
                MAXIMUM_QOS,
                RETAIN_AVAILABLE,
                MAXIMUM_PACKET_SIZE,
                ASSIGNED_CLIENT_IDENTIFIER,
                TOPIC_ALIAS_MAXIMUM,
                REASON_STRING,
                USER_PROPERTY,
                WILDCARD_SUBSCRIPTION_AVAILABLE,
                SUBSCRIPTION_IDENTIFIER_AVAILABLE,
                SHARED_SUBSCRIPTION_AVAILABLE,
                SERVER_KEEP_ALIVE,
                RESPONSE_INFORMATION,
                SERVER_REFERENCE,
                AUTHENTICATION_METHOD,
                AUTHENTICATION_DATA,
            ]),
            PropertyContext::Publish => set(&[
                PAYLOAD_FORMAT_INDICATOR,
                MESSAGE_EXPIRY_INTERVAL,
                TOPIC_ALIAS,
                RESPONSE_TOPIC,
                CORRELATION_DATA,
                USER_PROPERTY,
                SUBSCRIPTION_IDENTIFIER,
                CONTENT_TYPE,
            ]),
            PropertyContext::Ack | PropertyContext::SubAck | PropertyContext::UnsubAck => {
                set(&[REASON_STRING, USER_PROPERTY])
            }
            PropertyContext::Subscribe => set(&[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY]),
            PropertyContext::Unsubscribe => set(&[USER_PROPERTY]),
            PropertyContext::Disconnect => set(&[
                SESSION_EXPIRY_INTERVAL,
                REASON_STRING,
                USER_PROPERTY,
                SERVER_REFERENCE,
            ]),
            PropertyContext::Auth => set(&[
                AUTHENTICATION_METHOD,
                AUTHENTICATION_DATA,
                REASON_STRING,
                USER_PROPERTY,
            ]),
        }
    }

    /// Identifiers that may occur more than once here.
    pub(crate) fn repeatable(self) -> u64 {
        let user = 1u64 << property_id::USER_PROPERTY;
        match self {
            // A server forwards one subscription identifier per matching subscription.
            PropertyContext::Publish => user | 1 << property_id::SUBSCRIPTION_IDENTIFIER,
            _ => user,
        }
    }
}

/// An MQTT 5 property block: either the validated bytes of a decoded packet (read lazily, nothing is collected)
/// or a caller's slice of [`Property`] values to encode. Empty in 3.1.1.
///
/// Equality compares the properties in order, whatever the representation.
#[derive(Clone, Copy)]
pub struct Properties<'a>(pub(crate) PropertiesRepr<'a>);

#[derive(Clone, Copy)]
pub(crate) enum PropertiesRepr<'a> {
    /// A property block the decoder has checked completely: every property parses.
    Raw(&'a [u8]),
    List(&'a [Property<'a>]),
}

impl<'a> Properties<'a> {
    /// No properties.
    pub const EMPTY: Properties<'static> = Properties(PropertiesRepr::List(&[]));

    /// Properties to encode, in this order.
    pub const fn new(list: &'a [Property<'a>]) -> Properties<'a> {
        Properties(PropertiesRepr::List(list))
    }

    /// Every property, in order.
    pub fn iter(&self) -> PropertyIter<'a> {
        match self.0 {
            PropertiesRepr::Raw(bytes) => PropertyIter::Raw(bytes),
            PropertiesRepr::List(list) => PropertyIter::List(list.iter()),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self.0 {
            PropertiesRepr::Raw(bytes) => bytes.is_empty(),
            PropertiesRepr::List(list) => list.is_empty(),
        }
    }

    /// The decoded property block as it was on the wire (`None` for properties built from a list): a router can
    /// forward it without re-encoding.
    pub fn raw(&self) -> Option<&'a [u8]> {
        match self.0 {
            PropertiesRepr::Raw(bytes) => Some(bytes),
            PropertiesRepr::List(_) => None,
        }
    }

    /// The first property with this identifier.
    pub fn get(&self, id: u8) -> Option<Property<'a>> {
        self.iter().find(|p| p.id() == id)
    }

    /// The user properties (name, value), in order.
    pub fn user_properties(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.iter().filter_map(|p| match p {
            Property::UserProperty(k, v) => Some((k, v)),
            _ => None,
        })
    }

    /// The subscription identifiers, in order (PUBLISH from a server: one per matching subscription; SUBSCRIBE:
    /// at most one).
    pub fn subscription_identifiers(&self) -> impl Iterator<Item = u32> + 'a {
        self.iter().filter_map(|p| match p {
            Property::SubscriptionIdentifier(id) => Some(id),
            _ => None,
        })
    }

    pub fn topic_alias(&self) -> Option<u16> {
        match self.get(property_id::TOPIC_ALIAS)? {
            Property::TopicAlias(alias) => Some(alias),
            _ => None,
        }
    }

    pub fn session_expiry_interval(&self) -> Option<u32> {
        match self.get(property_id::SESSION_EXPIRY_INTERVAL)? {
            Property::SessionExpiryInterval(secs) => Some(secs),
            _ => None,
        }
    }

    pub fn receive_maximum(&self) -> Option<u16> {
        match self.get(property_id::RECEIVE_MAXIMUM)? {
            Property::ReceiveMaximum(n) => Some(n),
            _ => None,
        }
    }

    pub fn maximum_packet_size(&self) -> Option<u32> {
        match self.get(property_id::MAXIMUM_PACKET_SIZE)? {
            Property::MaximumPacketSize(n) => Some(n),
            _ => None,
        }
    }

    pub fn topic_alias_maximum(&self) -> Option<u16> {
        match self.get(property_id::TOPIC_ALIAS_MAXIMUM)? {
            Property::TopicAliasMaximum(n) => Some(n),
            _ => None,
        }
    }

    pub fn message_expiry_interval(&self) -> Option<u32> {
        match self.get(property_id::MESSAGE_EXPIRY_INTERVAL)? {
            Property::MessageExpiryInterval(n) => Some(n),
            _ => None,
        }
    }

    pub fn will_delay_interval(&self) -> Option<u32> {
        match self.get(property_id::WILL_DELAY_INTERVAL)? {
            Property::WillDelayInterval(n) => Some(n),
            _ => None,
        }
    }

    pub fn authentication_method(&self) -> Option<&'a str> {
        match self.get(property_id::AUTHENTICATION_METHOD)? {
            Property::AuthenticationMethod(m) => Some(m),
            _ => None,
        }
    }

    pub fn authentication_data(&self) -> Option<&'a [u8]> {
        match self.get(property_id::AUTHENTICATION_DATA)? {
            Property::AuthenticationData(d) => Some(d),
            _ => None,
        }
    }
}

impl PartialEq for Properties<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Properties<'_> {}

impl fmt::Debug for Properties<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Default for Properties<'_> {
    fn default() -> Self {
        Properties::EMPTY
    }
}

/// Iterator over [`Properties`].
#[derive(Clone, Debug)]
pub enum PropertyIter<'a> {
    #[doc(hidden)]
    Raw(&'a [u8]),
    #[doc(hidden)]
    List(std::slice::Iter<'a, Property<'a>>),
}

impl<'a> Iterator for PropertyIter<'a> {
    type Item = Property<'a>;

    fn next(&mut self) -> Option<Property<'a>> {
        match self {
            PropertyIter::List(iter) => iter.next().copied(),
            PropertyIter::Raw(bytes) => {
                if bytes.is_empty() {
                    return None;
                }
                let mut reader = super::decode::Reader::new(bytes);
                // The block was checked when decoded; should it not parse, the iteration just ends.
                match reader.property() {
                    Ok(property) => {
                        *bytes = reader.rest();
                        Some(property)
                    }
                    Err(_) => {
                        *bytes = &[];
                        None
                    }
                }
            }
        }
    }
}

/// The topic filters and options of a SUBSCRIBE: the validated bytes of a decoded packet, or a caller's list.
#[derive(Clone, Copy)]
pub struct Subscriptions<'a>(pub(crate) SubscriptionsRepr<'a>);

#[derive(Clone, Copy)]
pub(crate) enum SubscriptionsRepr<'a> {
    Raw(&'a [u8]),
    List(&'a [(&'a str, SubscriptionOptions)]),
}

impl<'a> Subscriptions<'a> {
    pub const fn new(list: &'a [(&'a str, SubscriptionOptions)]) -> Subscriptions<'a> {
        Subscriptions(SubscriptionsRepr::List(list))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'a str, SubscriptionOptions)> + 'a {
        let (mut raw, list) = match self.0 {
            SubscriptionsRepr::Raw(bytes) => (bytes, [].iter()),
            SubscriptionsRepr::List(list) => (&[][..], list.iter()),
        };
        let raw_iter = std::iter::from_fn(move || {
            if raw.is_empty() {
                return None;
            }
            let mut reader = super::decode::Reader::new(raw);
            let filter = reader.string().ok()?;
            let options = reader.u8().ok()?;
            raw = reader.rest();
            Some((filter, SubscriptionOptions::from_checked_byte(options)))
        });
        raw_iter.chain(list.copied())
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl PartialEq for Subscriptions<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Subscriptions<'_> {}

impl fmt::Debug for Subscriptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The topic filters of an UNSUBSCRIBE: the validated bytes of a decoded packet, or a caller's list.
#[derive(Clone, Copy)]
pub struct Filters<'a>(pub(crate) FiltersRepr<'a>);

#[derive(Clone, Copy)]
pub(crate) enum FiltersRepr<'a> {
    Raw(&'a [u8]),
    List(&'a [&'a str]),
}

impl<'a> Filters<'a> {
    pub const fn new(list: &'a [&'a str]) -> Filters<'a> {
        Filters(FiltersRepr::List(list))
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let (mut raw, list) = match self.0 {
            FiltersRepr::Raw(bytes) => (bytes, [].iter()),
            FiltersRepr::List(list) => (&[][..], list.iter()),
        };
        let raw_iter = std::iter::from_fn(move || {
            if raw.is_empty() {
                return None;
            }
            let mut reader = super::decode::Reader::new(raw);
            let filter = reader.string().ok()?;
            raw = reader.rest();
            Some(filter)
        });
        raw_iter.chain(list.copied())
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl PartialEq for Filters<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Filters<'_> {}

impl fmt::Debug for Filters<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

// -------------------------------------------------------------------------------------------------------------
// Errors

/// Why a packet could not be decoded, with the version it was read under (a CONNECT's own protocol level, else
/// the decoder's). [`DecodeError::action`] says what the spec has the receiver do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub kind: ErrorKind,
    pub version: Version,
}

/// What is wrong with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The bytes do not form a packet the spec allows (MQTT 5: 0x81 Malformed Packet).
    Malformed(Malformed),
    /// The packet parses but breaks a rule of the protocol (MQTT 5: 0x82 Protocol Error).
    Protocol(ProtocolError),
    /// The packet is larger than the maximum the receiver allows; known from the fixed header alone
    /// (MQTT 5: 0x95 Packet too large).
    PacketTooLarge { size: usize, max: usize },
    /// A PUBLISH or will topic name is not a valid topic name (MQTT 5: 0x90 Topic Name invalid).
    TopicNameInvalid(TopicError),
    /// A SUBSCRIBE or UNSUBSCRIBE topic filter is not a valid topic filter (MQTT 5: 0x8F Topic Filter invalid).
    TopicFilterInvalid(TopicError),
    /// A PUBLISH with topic alias 0 (MQTT 5: 0x94 Topic Alias invalid).
    TopicAliasZero,
    /// CONNECT with protocol name `MQTT` and a protocol level this module does not speak (anything but 4 and
    /// 5), or with the MQTT 3.1 name `MQIsdp` (`mqisdp`, whatever its level): 3.1.1 answers CONNACK 0x01
    /// (unacceptable protocol version), MQTT 5 CONNACK 0x84 (Unsupported Protocol Version); see
    /// [`DecodeError::action`] for which format.
    UnsupportedProtocolVersion { level: u8, mqisdp: bool },
    /// CONNECT whose protocol name is not `MQTT` (or `MQIsdp`): not MQTT as this module knows it; close without
    /// a reply.
    UnknownProtocolName,
}

/// The ways the bytes of a packet can be malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Packet type 0, or 15 (AUTH) in 3.1.1.
    ReservedPacketType(u8),
    /// The flags of the first octet differ from the ones the spec fixes for the type.
    FixedHeaderFlags { packet_type: PacketType, flags: u8 },
    /// PUBLISH or will QoS 3.
    QoS3,
    /// PUBLISH QoS 0 with DUP set.
    DupWithQoS0,
    /// A variable byte integer (the remaining length, a property length, a subscription identifier) has a
    /// continuation bit in its 4th octet.
    VariableByteIntegerTooLong,
    /// A variable byte integer in more octets than needed (forbidden in MQTT 5).
    NonMinimalVariableByteInteger,
    /// A length or field reaches past the end of the packet (the remaining length is too short for it).
    Truncated,
    /// Octets left over after the packet's content (the remaining length is too long for it).
    TrailingBytes,
    /// A string is not well-formed UTF-8.
    InvalidUtf8,
    /// A string contains U+0000.
    NullCharacter,
    /// CONNECT flags: the reserved bit is set.
    ConnectReservedFlag,
    /// CONNECT flags: will QoS or will retain set without the will flag.
    WillFlagsWithoutWill,
    /// 3.1.1 CONNECT: the password flag without the user name flag.
    PasswordWithoutUsername,
    /// CONNACK acknowledge flags other than session present.
    ConnAckFlags,
    /// SUBSCRIBE options: reserved bits set.
    SubscriptionOptionsReserved,
    /// A property identifier that does not exist or is not allowed in this packet.
    PropertyNotAllowed(u8),
    /// A reason code the spec does not define for this packet.
    InvalidReasonCode(u8),
}

/// The protocol rules a well-formed packet can break.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// A property that may appear once appears again.
    DuplicateProperty(u8),
    /// A property value outside what the spec allows (receive maximum 0, maximum packet size 0, a 0/1 byte of
    /// another value, maximum QoS 2, subscription identifier 0, a response topic with wildcards).
    InvalidPropertyValue(u8),
    /// Packet identifier 0 where one is required.
    ZeroPacketId,
    /// SUBSCRIBE or UNSUBSCRIBE without a topic filter; SUBACK or UNSUBACK without a reason code.
    NoTopicFilters,
    /// PUBLISH (MQTT 5) with an empty topic name and no topic alias.
    EmptyTopicWithoutAlias,
    /// SUBSCRIBE retain handling 3.
    RetainHandling3,
    /// MQTT 5 SUBSCRIBE options with maximum QoS 3 (in 3.1.1 this is [`Malformed::QoS3`]).
    SubscriptionQoS3,
    /// No Local on a shared subscription.
    NoLocalOnSharedSubscription,
    /// Authentication data without an authentication method; AUTH without an authentication method.
    AuthenticationMethodMissing,
    /// A PUBLISH from a client with a subscription identifier.
    SubscriptionIdentifierFromClient,
    /// CONNACK with a failure code and session present.
    SessionPresentWithFailure,
    /// A packet the sender's side may not send (e.g. a CONNACK from a client).
    UnexpectedPacket(PacketType),
}

/// What the receiver of a bad packet does, per the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorAction {
    /// Send a CONNACK with this code in `version`'s format (3.1.1: `20 02 00 code`; 5: `20 03 00 code 00`),
    /// then close.
    ConnAck { version: Version, code: u8 },
    /// MQTT 5: send DISCONNECT with this reason code, then close. Before the CONNACK was sent (the packet was the
    /// CONNECT), send a CONNACK with this code instead (every code a CONNECT error produces is a CONNACK code).
    Disconnect(u8),
    /// Close the network connection without a reply (what 3.1.1 prescribes for every malformed packet and
    /// protocol violation).
    Close,
}

impl DecodeError {
    pub(crate) fn new(kind: ErrorKind, version: Version) -> DecodeError {
        DecodeError { kind, version }
    }

    /// The MQTT 5 reason code of this error.
    pub fn reason_code(&self) -> u8 {
        match self.kind {
            ErrorKind::Malformed(_) => reason::MALFORMED_PACKET,
            ErrorKind::Protocol(_) => reason::PROTOCOL_ERROR,
            ErrorKind::PacketTooLarge { .. } => reason::PACKET_TOO_LARGE,
            ErrorKind::TopicNameInvalid(_) => reason::TOPIC_NAME_INVALID,
            ErrorKind::TopicFilterInvalid(_) => reason::TOPIC_FILTER_INVALID,
            ErrorKind::TopicAliasZero => reason::TOPIC_ALIAS_INVALID,
            ErrorKind::UnsupportedProtocolVersion { .. } | ErrorKind::UnknownProtocolName => {
                reason::UNSUPPORTED_PROTOCOL_VERSION
            }
        }
    }

    /// What to do. An unsupported protocol level below 5, and every `MQIsdp` (MQTT 3.1) CONNECT, is answered in
    /// the 3.1.1 format with return code 1, a level above 5 in the MQTT 5 format with 0x84: each client can read
    /// the answer of the nearest version it could speak. The high bit some bridges set on the level (0x83, 0x84, 0x85) is
    /// ignored for that choice (such levels are unsupported all the same). An unknown protocol name is closed without a reply (3.1.1 and 5 both
    /// allow it; the peer may not speak MQTT at all).
    pub fn action(&self) -> ErrorAction {
        match (self.kind, self.version) {
            (ErrorKind::UnsupportedProtocolVersion { level, mqisdp }, _)
                if mqisdp || level & 0x7F < 5 =>
            {
                ErrorAction::ConnAck {
                    version: Version::V311,
                    code: reason::v311::UNACCEPTABLE_PROTOCOL_VERSION,
                }
            }
            (ErrorKind::UnsupportedProtocolVersion { .. }, _) => ErrorAction::ConnAck {
                version: Version::V5,
                code: reason::UNSUPPORTED_PROTOCOL_VERSION,
            },
            (ErrorKind::UnknownProtocolName, _) | (_, Version::V311) => ErrorAction::Close,
            (_, Version::V5) => ErrorAction::Disconnect(self.reason_code()),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = match self.version {
            Version::V311 => "MQTT 3.1.1",
            Version::V5 => "MQTT 5",
        };
        match self.kind {
            ErrorKind::Malformed(m) => write!(f, "malformed {version} packet: {m:?}"),
            ErrorKind::Protocol(p) => write!(f, "{version} protocol error: {p:?}"),
            ErrorKind::PacketTooLarge { size, max } => write!(
                f,
                "{version} packet of {size} octets exceeds the maximum of {max}"
            ),
            ErrorKind::TopicNameInvalid(e) => write!(f, "invalid topic name: {e}"),
            ErrorKind::TopicFilterInvalid(e) => write!(f, "invalid topic filter: {e}"),
            ErrorKind::TopicAliasZero => f.write_str("PUBLISH with topic alias 0"),
            ErrorKind::UnsupportedProtocolVersion { level, .. } => {
                write!(f, "unsupported MQTT protocol level {level}")
            }
            ErrorKind::UnknownProtocolName => f.write_str("CONNECT with an unknown protocol name"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a packet could not be encoded. Nothing is written then; everything the encoder writes decodes again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The packet breaks a rule the decoder checks (a string longer than 65,535 octets or with U+0000 is
    /// [`Malformed::Truncated`] / [`Malformed::NullCharacter`]; a packet id 0, a property not allowed here, an
    /// invalid reason code, topic or filter, ...).
    Invalid(ErrorKind),
    /// A string or binary field longer than 65,535 octets.
    FieldTooLong { len: usize },
    /// The remaining length would exceed 268,435,455.
    TooLarge { remaining_length: usize },
    /// The packet type does not exist in this version (AUTH in 3.1.1).
    NotInVersion(PacketType),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::Invalid(kind) => write!(f, "invalid packet: {kind:?}"),
            EncodeError::FieldTooLong { len } => {
                write!(f, "a field of {len} octets exceeds 65535")
            }
            EncodeError::TooLarge { remaining_length } => write!(
                f,
                "remaining length {remaining_length} exceeds {REMAINING_LENGTH_MAX}"
            ),
            EncodeError::NotInVersion(t) => write!(f, "{t:?} does not exist in MQTT 3.1.1"),
        }
    }
}

impl std::error::Error for EncodeError {}
