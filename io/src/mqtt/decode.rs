//! The decoder: one complete packet from the front of a byte slice, checked completely before it is returned.

use super::packet::*;
use super::topic;

/// Decodes the packets one side of a connection sends.
///
/// `version` is the connection's version (before the CONNECT, the version the caller guesses: a CONNECT is
/// always read by its own protocol level). `max_packet_size` bounds the *whole* packet (fixed header included,
/// as MQTT 5's Maximum Packet Size does); a larger packet is refused from its fixed header alone, before its
/// body arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoder {
    pub version: Version,
    /// Who sent the bytes: [`Side::Client`] for a server.
    pub from: Side,
    pub max_packet_size: usize,
}

/// A packet's fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedHeader {
    pub packet_type: PacketType,
    /// The low nibble of the first octet.
    pub flags: u8,
    pub remaining_length: usize,
    /// Octets of the fixed header (2 to 5).
    pub header_len: usize,
}

impl FixedHeader {
    /// Octets of the whole packet.
    pub fn packet_size(&self) -> usize {
        self.header_len + self.remaining_length
    }
}

impl Decoder {
    /// A server's decoder: reads what clients send.
    pub fn server(version: Version, max_packet_size: usize) -> Decoder {
        Decoder {
            version,
            from: Side::Client,
            max_packet_size,
        }
    }

    fn error(&self, kind: ErrorKind) -> DecodeError {
        DecodeError::new(kind, self.version)
    }

    /// Reads and checks the fixed header at the start of `buf`: packet type, the flags the spec fixes, the
    /// sender's side, the remaining length (at most 4 octets) and the packet size against `max_packet_size`.
    /// `Ok(None)`: the fixed header is not complete yet.
    pub fn header(&self, buf: &[u8]) -> Result<Option<FixedHeader>, DecodeError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let nibble = first >> 4;
        let flags = first & 0x0F;
        let packet_type = match PacketType::from_nibble(nibble) {
            Some(PacketType::Auth) if self.version == Version::V311 => None,
            other => other,
        }
        .ok_or(self.error(ErrorKind::Malformed(Malformed::ReservedPacketType(nibble))))?;
        match packet_type.fixed_flags() {
            Some(fixed) if fixed != flags => {
                return Err(
                    self.error(ErrorKind::Malformed(Malformed::FixedHeaderFlags {
                        packet_type,
                        flags,
                    })),
                )
            }
            Some(_) => {}
            None => {
                let qos = (flags >> 1) & 3;
                if qos == 3 {
                    return Err(self.error(ErrorKind::Malformed(Malformed::QoS3)));
                }
                if qos == 0 && flags & 0b1000 != 0 {
                    return Err(self.error(ErrorKind::Malformed(Malformed::DupWithQoS0)));
                }
            }
        }
        let allowed = match self.from {
            Side::Client => packet_type.sent_by_client(),
            // A 3.1.1 server closes the connection instead of sending DISCONNECT.
            Side::Server => {
                packet_type.sent_by_server()
                    && !(packet_type == PacketType::Disconnect && self.version == Version::V311)
            }
        };
        if !allowed {
            return Err(
                self.error(ErrorKind::Protocol(ProtocolError::UnexpectedPacket(
                    packet_type,
                ))),
            );
        }
        let mut remaining_length = 0usize;
        for i in 0..4 {
            let Some(&byte) = buf.get(1 + i) else {
                return Ok(None);
            };
            remaining_length |= usize::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                // MQTT 5 wants the shortest form; a CONNECT is judged by its own level, in `connect`.
                if i > 0
                    && byte == 0
                    && self.version == Version::V5
                    && packet_type != PacketType::Connect
                {
                    return Err(self.error(ErrorKind::Malformed(
                        Malformed::NonMinimalVariableByteInteger,
                    )));
                }
                let header = FixedHeader {
                    packet_type,
                    flags,
                    remaining_length,
                    header_len: 2 + i,
                };
                let size = header.packet_size();
                if size > self.max_packet_size {
                    return Err(self.error(ErrorKind::PacketTooLarge {
                        size,
                        max: self.max_packet_size,
                    }));
                }
                return Ok(Some(header));
            }
        }
        Err(self.error(ErrorKind::Malformed(Malformed::VariableByteIntegerTooLong)))
    }

    /// Decodes the first packet in `buf`. `Ok(None)`: it is not complete yet (nothing is consumed; the caller
    /// reads more, and [`Decoder::header`] tells how much the packet needs). `Ok(Some((consumed, packet)))`:
    /// the packet took `buf[..consumed]` and borrows it. An error says what the spec has the receiver do
    /// ([`DecodeError::action`]); the connection cannot go on after it.
    pub fn decode<'a>(&self, buf: &'a [u8]) -> Result<Option<(usize, Packet<'a>)>, DecodeError> {
        let Some(header) = self.header(buf)? else {
            return Ok(None);
        };
        let size = header.packet_size();
        let Some(body) = buf.get(header.header_len..size) else {
            return Ok(None);
        };
        let packet = if header.packet_type == PacketType::Connect {
            let minimal = header.header_len == 1 + vbi_len(header.remaining_length);
            connect(body, minimal, self.version)?
        } else {
            self.body(header, body).map_err(|kind| self.error(kind))?
        };
        Ok(Some((size, packet)))
    }

    fn body<'a>(&self, header: FixedHeader, body: &'a [u8]) -> Result<Packet<'a>, ErrorKind> {
        let v5 = self.version == Version::V5;
        let mut r = Reader::new(body);
        let packet = match header.packet_type {
            PacketType::Connect => unreachable_connect()?,
            PacketType::ConnAck => {
                let flags = r.u8()?;
                if flags & 0xFE != 0 {
                    return Err(ErrorKind::Malformed(Malformed::ConnAckFlags));
                }
                let code = r.u8()?;
                check_code(PacketType::ConnAck, self.version, code)?;
                let session_present = flags & 1 != 0;
                if session_present && code != 0 {
                    return Err(ErrorKind::Protocol(
                        ProtocolError::SessionPresentWithFailure,
                    ));
                }
                let properties = r.properties_if(v5, PropertyContext::ConnAck)?;
                Packet::ConnAck(ConnAck {
                    session_present,
                    code,
                    properties,
                })
            }
            PacketType::Publish => Packet::Publish(self.publish(header.flags, &mut r)?),
            PacketType::PubAck => Packet::PubAck(self.ack(PacketType::PubAck, &mut r)?),
            PacketType::PubRec => Packet::PubRec(self.ack(PacketType::PubRec, &mut r)?),
            PacketType::PubRel => Packet::PubRel(self.ack(PacketType::PubRel, &mut r)?),
            PacketType::PubComp => Packet::PubComp(self.ack(PacketType::PubComp, &mut r)?),
            PacketType::Subscribe => {
                let packet_id = r.packet_id()?;
                let properties = r.properties_if(v5, PropertyContext::Subscribe)?;
                let filters = r.rest();
                if filters.is_empty() {
                    return Err(ErrorKind::Protocol(ProtocolError::NoTopicFilters));
                }
                while !r.is_empty() {
                    let filter = r.string()?;
                    let options = r.u8()?;
                    check_subscription(filter, options, self.version)?;
                }
                Packet::Subscribe(Subscribe {
                    packet_id,
                    properties,
                    filters: Subscriptions(SubscriptionsRepr::Raw(filters)),
                })
            }
            PacketType::SubAck => {
                let packet_id = r.packet_id()?;
                let properties = r.properties_if(v5, PropertyContext::SubAck)?;
                let codes = r.rest();
                check_codes(PacketType::SubAck, self.version, codes)?;
                r.skip_rest();
                Packet::SubAck(SubAck {
                    packet_id,
                    properties,
                    codes,
                })
            }
            PacketType::Unsubscribe => {
                let packet_id = r.packet_id()?;
                let properties = r.properties_if(v5, PropertyContext::Unsubscribe)?;
                let filters = r.rest();
                if filters.is_empty() {
                    return Err(ErrorKind::Protocol(ProtocolError::NoTopicFilters));
                }
                while !r.is_empty() {
                    let filter = r.string()?;
                    check_filter(filter, self.version)?;
                }
                Packet::Unsubscribe(Unsubscribe {
                    packet_id,
                    properties,
                    filters: Filters(FiltersRepr::Raw(filters)),
                })
            }
            PacketType::UnsubAck => {
                let packet_id = r.packet_id()?;
                let (properties, codes) = if v5 {
                    let properties = r.properties(PropertyContext::UnsubAck)?;
                    let codes = r.rest();
                    check_codes(PacketType::UnsubAck, self.version, codes)?;
                    r.skip_rest();
                    (properties, codes)
                } else {
                    (Properties::EMPTY, &[][..])
                };
                Packet::UnsubAck(UnsubAck {
                    packet_id,
                    properties,
                    codes,
                })
            }
            PacketType::PingReq => Packet::PingReq,
            PacketType::PingResp => Packet::PingResp,
            PacketType::Disconnect => {
                let (code, properties) = if v5 {
                    self.code_and_properties(PacketType::Disconnect, &mut r)?
                } else {
                    (0, Properties::EMPTY)
                };
                Packet::Disconnect(Disconnect { code, properties })
            }
            PacketType::Auth => {
                let (code, properties) = self.code_and_properties(PacketType::Auth, &mut r)?;
                if properties.authentication_method().is_none() {
                    return Err(ErrorKind::Protocol(
                        ProtocolError::AuthenticationMethodMissing,
                    ));
                }
                Packet::Auth(Auth { code, properties })
            }
        };
        r.end()?;
        Ok(packet)
    }

    fn publish<'a>(&self, flags: u8, r: &mut Reader<'a>) -> Result<Publish<'a>, ErrorKind> {
        let qos = QoS::from_bits((flags >> 1) & 3).ok_or(ErrorKind::Malformed(Malformed::QoS3))?;
        let topic = r.string()?;
        if !topic.is_empty() {
            topic::check_name(topic).map_err(ErrorKind::TopicNameInvalid)?;
        }
        let packet_id = match qos {
            QoS::AtMostOnce => 0,
            _ => r.packet_id()?,
        };
        let properties = r.properties_if(self.version == Version::V5, PropertyContext::Publish)?;
        if topic.is_empty() {
            match self.version {
                Version::V311 => {
                    return Err(ErrorKind::TopicNameInvalid(topic::TopicError::Empty));
                }
                Version::V5 if properties.topic_alias().is_none() => {
                    return Err(ErrorKind::Protocol(ProtocolError::EmptyTopicWithoutAlias));
                }
                Version::V5 => {}
            }
        }
        if self.from == Side::Client && properties.subscription_identifiers().next().is_some() {
            return Err(ErrorKind::Protocol(
                ProtocolError::SubscriptionIdentifierFromClient,
            ));
        }
        let payload = r.rest();
        r.skip_rest();
        Ok(Publish {
            dup: flags & 0b1000 != 0,
            qos,
            retain: flags & 1 != 0,
            topic,
            packet_id,
            properties,
            payload,
        })
    }

    fn ack<'a>(&self, packet_type: PacketType, r: &mut Reader<'a>) -> Result<Ack<'a>, ErrorKind> {
        let packet_id = r.packet_id()?;
        let (code, properties) = match self.version {
            Version::V311 => (0, Properties::EMPTY),
            Version::V5 => self.code_and_properties(packet_type, r)?,
        };
        Ok(Ack {
            packet_id,
            code,
            properties,
        })
    }

    /// MQTT 5: a reason code and properties, both optional at the end of the packet (absent: success, none).
    fn code_and_properties<'a>(
        &self,
        packet_type: PacketType,
        r: &mut Reader<'a>,
    ) -> Result<(u8, Properties<'a>), ErrorKind> {
        if r.is_empty() {
            return Ok((reason::SUCCESS, Properties::EMPTY));
        }
        let code = r.u8()?;
        check_code(packet_type, self.version, code)?;
        if r.is_empty() {
            return Ok((code, Properties::EMPTY));
        }
        let context = match packet_type {
            PacketType::Disconnect => PropertyContext::Disconnect,
            PacketType::Auth => PropertyContext::Auth,
            _ => PropertyContext::Ack,
        };
        Ok((code, r.properties(context)?))
    }
}

/// `body` never holds a CONNECT: [`Decoder::decode`] reads those with [`connect`].
fn unreachable_connect() -> Result<Packet<'static>, ErrorKind> {
    Err(ErrorKind::Protocol(ProtocolError::UnexpectedPacket(
        PacketType::Connect,
    )))
}

/// CONNECT, in the version its protocol level names.
fn connect(body: &[u8], minimal: bool, guessed: Version) -> Result<Packet<'_>, DecodeError> {
    let mut r = Reader::new(body);
    let name = r.string().map_err(|kind| DecodeError::new(kind, guessed))?;
    let level = r.u8().map_err(|kind| DecodeError::new(kind, guessed))?;
    let version = match (name, level) {
        ("MQTT", 4) => Version::V311,
        ("MQTT", 5) => Version::V5,
        ("MQTT" | "MQIsdp", level) => {
            return Err(DecodeError::new(
                ErrorKind::UnsupportedProtocolVersion {
                    level,
                    mqisdp: name == "MQIsdp",
                },
                guessed,
            ))
        }
        _ => return Err(DecodeError::new(ErrorKind::UnknownProtocolName, guessed)),
    };
    connect_body(&mut r, version, minimal).map_err(|kind| DecodeError::new(kind, version))
}

fn connect_body<'a>(
    r: &mut Reader<'a>,
    version: Version,
    minimal: bool,
) -> Result<Packet<'a>, ErrorKind> {
    let v5 = version == Version::V5;
    if v5 && !minimal {
        return Err(ErrorKind::Malformed(
            Malformed::NonMinimalVariableByteInteger,
        ));
    }
    let flags = r.u8()?;
    if flags & 1 != 0 {
        return Err(ErrorKind::Malformed(Malformed::ConnectReservedFlag));
    }
    let will_flag = flags & 0b100 != 0;
    let will_qos = (flags >> 3) & 3;
    let will_retain = flags & 0b10_0000 != 0;
    let password_flag = flags & 0b100_0000 != 0;
    let username_flag = flags & 0b1000_0000 != 0;
    if !will_flag && (will_qos != 0 || will_retain) {
        return Err(ErrorKind::Malformed(Malformed::WillFlagsWithoutWill));
    }
    let will_qos = QoS::from_bits(will_qos).ok_or(ErrorKind::Malformed(Malformed::QoS3))?;
    if !v5 && password_flag && !username_flag {
        return Err(ErrorKind::Malformed(Malformed::PasswordWithoutUsername));
    }
    let keep_alive = r.u16()?;
    let properties = r.properties_if(v5, PropertyContext::Connect)?;
    let client_id = r.string()?;
    let will = if will_flag {
        let properties = r.properties_if(v5, PropertyContext::Will)?;
        let topic = r.string()?;
        topic::check_name(topic).map_err(ErrorKind::TopicNameInvalid)?;
        let payload = r.binary()?;
        Some(Will {
            qos: will_qos,
            retain: will_retain,
            properties,
            topic,
            payload,
        })
    } else {
        None
    };
    let username = username_flag.then(|| r.string()).transpose()?;
    let password = password_flag.then(|| r.binary()).transpose()?;
    r.end()?;
    Ok(Packet::Connect(Connect {
        version,
        clean_start: flags & 0b10 != 0,
        keep_alive,
        properties,
        client_id,
        will,
        username,
        password,
    }))
}

fn check_code(packet_type: PacketType, version: Version, code: u8) -> Result<(), ErrorKind> {
    if reason::is_valid(packet_type, version, code) {
        Ok(())
    } else {
        Err(ErrorKind::Malformed(Malformed::InvalidReasonCode(code)))
    }
}

/// SUBACK and UNSUBACK: at least one code, each defined for the packet.
pub(crate) fn check_codes(
    packet_type: PacketType,
    version: Version,
    codes: &[u8],
) -> Result<(), ErrorKind> {
    if codes.is_empty() {
        return Err(ErrorKind::Protocol(ProtocolError::NoTopicFilters));
    }
    codes
        .iter()
        .try_for_each(|&code| check_code(packet_type, version, code))
}

/// A topic filter of a SUBSCRIBE or UNSUBSCRIBE: valid, and in MQTT 5 a valid shared subscription if it is one.
/// Returns whether it is a shared subscription.
pub(crate) fn check_filter(filter: &str, version: Version) -> Result<bool, ErrorKind> {
    topic::check_filter(filter).map_err(ErrorKind::TopicFilterInvalid)?;
    match version {
        Version::V311 => Ok(false),
        Version::V5 => topic::shared_subscription(filter)
            .map(|shared| shared.is_some())
            .map_err(ErrorKind::TopicFilterInvalid),
    }
}

/// A SUBSCRIBE's topic filter and options octet.
pub(crate) fn check_subscription(
    filter: &str,
    options: u8,
    version: Version,
) -> Result<(), ErrorKind> {
    let shared = check_filter(filter, version)?;
    match version {
        Version::V311 => {
            if options & 0b1111_1100 != 0 {
                return Err(ErrorKind::Malformed(Malformed::SubscriptionOptionsReserved));
            }
            if options & 3 == 3 {
                return Err(ErrorKind::Malformed(Malformed::QoS3));
            }
        }
        Version::V5 => {
            if options & 0b1100_0000 != 0 {
                return Err(ErrorKind::Malformed(Malformed::SubscriptionOptionsReserved));
            }
            if options & 3 == 3 {
                return Err(ErrorKind::Protocol(ProtocolError::SubscriptionQoS3));
            }
            if (options >> 4) & 3 == 3 {
                return Err(ErrorKind::Protocol(ProtocolError::RetainHandling3));
            }
            if shared && options & 0b100 != 0 {
                return Err(ErrorKind::Protocol(
                    ProtocolError::NoLocalOnSharedSubscription,
                ));
            }
        }
    }
    Ok(())
}

/// A string of a packet: at most 65,535 octets (the length prefix), no U+0000. Well-formedness is the type's.
pub(crate) fn check_string(s: &str) -> Result<(), ErrorKind> {
    if s.as_bytes().contains(&0) {
        Err(ErrorKind::Malformed(Malformed::NullCharacter))
    } else {
        Ok(())
    }
}

/// The rules of a property value beyond its type, and the rules of a whole block: allowed identifiers, no
/// duplicates, authentication data only with a method. Shared by the decoder and the encoder.
pub(crate) fn check_properties<'a>(
    properties: impl Iterator<Item = Result<Property<'a>, ErrorKind>>,
    context: PropertyContext,
) -> Result<(), ErrorKind> {
    use property_id as id;
    let allowed = context.allowed();
    let repeatable = context.repeatable();
    let mut seen = 0u64;
    for property in properties {
        let property = property?;
        let pid = property.id();
        let bit = 1u64 << pid;
        if allowed & bit == 0 {
            return Err(ErrorKind::Malformed(Malformed::PropertyNotAllowed(pid)));
        }
        if seen & bit != 0 && repeatable & bit == 0 {
            return Err(ErrorKind::Protocol(ProtocolError::DuplicateProperty(pid)));
        }
        seen |= bit;
        let invalid = ErrorKind::Protocol(ProtocolError::InvalidPropertyValue(pid));
        match property {
            Property::ReceiveMaximum(0)
            | Property::MaximumPacketSize(0)
            | Property::SubscriptionIdentifier(0) => return Err(invalid),
            Property::SubscriptionIdentifier(n) if n > SUBSCRIPTION_IDENTIFIER_MAX => {
                return Err(invalid)
            }
            Property::MaximumQoS(QoS::ExactlyOnce) => return Err(invalid),
            Property::TopicAlias(0) => return Err(ErrorKind::TopicAliasZero),
            Property::ResponseTopic(topic) => {
                topic::check_name(topic).map_err(|_| invalid)?;
                check_string(topic)?;
            }
            Property::ContentType(s)
            | Property::AssignedClientIdentifier(s)
            | Property::AuthenticationMethod(s)
            | Property::ResponseInformation(s)
            | Property::ServerReference(s)
            | Property::ReasonString(s) => check_string(s)?,
            Property::UserProperty(k, v) => {
                check_string(k)?;
                check_string(v)?;
            }
            _ => {}
        }
    }
    let data = 1u64 << id::AUTHENTICATION_DATA;
    let method = 1u64 << id::AUTHENTICATION_METHOD;
    if seen & data != 0 && seen & method == 0 {
        return Err(ErrorKind::Protocol(
            ProtocolError::AuthenticationMethodMissing,
        ));
    }
    Ok(())
}

/// Octets of the variable byte integer of `n` (`n` at most [`REMAINING_LENGTH_MAX`]).
pub(crate) fn vbi_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// A cursor over the body of one packet. Every read past the end is [`Malformed::Truncated`].
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

const TRUNCATED: ErrorKind = ErrorKind::Malformed(Malformed::Truncated);

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn skip_rest(&mut self) {
        self.buf = &[];
    }

    fn end(&self) -> Result<(), ErrorKind> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ErrorKind::Malformed(Malformed::TrailingBytes))
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ErrorKind> {
        let (head, tail) = self.buf.split_at_checked(n).ok_or(TRUNCATED)?;
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ErrorKind> {
        let (&first, tail) = self.buf.split_first().ok_or(TRUNCATED)?;
        self.buf = tail;
        Ok(first)
    }

    fn u16(&mut self) -> Result<u16, ErrorKind> {
        let (head, tail) = self.buf.split_first_chunk::<2>().ok_or(TRUNCATED)?;
        self.buf = tail;
        Ok(u16::from_be_bytes(*head))
    }

    fn u32(&mut self) -> Result<u32, ErrorKind> {
        let (head, tail) = self.buf.split_first_chunk::<4>().ok_or(TRUNCATED)?;
        self.buf = tail;
        Ok(u32::from_be_bytes(*head))
    }

    fn packet_id(&mut self) -> Result<u16, ErrorKind> {
        match self.u16()? {
            0 => Err(ErrorKind::Protocol(ProtocolError::ZeroPacketId)),
            id => Ok(id),
        }
    }

    /// A variable byte integer inside a packet (MQTT 5 only, so it must be minimal).
    fn vbi(&mut self) -> Result<u32, ErrorKind> {
        let mut value = 0u32;
        for i in 0..4 {
            let byte = self.u8()?;
            value |= u32::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                if i > 0 && byte == 0 {
                    return Err(ErrorKind::Malformed(
                        Malformed::NonMinimalVariableByteInteger,
                    ));
                }
                return Ok(value);
            }
        }
        Err(ErrorKind::Malformed(Malformed::VariableByteIntegerTooLong))
    }

    /// A UTF-8 encoded string: well-formed UTF-8 (which excludes surrogates and overlong forms), no U+0000.
    pub(crate) fn string(&mut self) -> Result<&'a str, ErrorKind> {
        let bytes = self.binary()?;
        let s =
            std::str::from_utf8(bytes).map_err(|_| ErrorKind::Malformed(Malformed::InvalidUtf8))?;
        check_string(s)?;
        Ok(s)
    }

    /// Binary data: a 2-octet length and that many octets.
    pub(crate) fn binary(&mut self) -> Result<&'a [u8], ErrorKind> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    fn bool(&mut self, id: u8) -> Result<bool, ErrorKind> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(ErrorKind::Protocol(ProtocolError::InvalidPropertyValue(id))),
        }
    }

    /// One property: its identifier and a value of the identifier's type.
    pub(crate) fn property(&mut self) -> Result<Property<'a>, ErrorKind> {
        use property_id as id;
        let pid = self.u8()?;
        Ok(match pid {
            id::PAYLOAD_FORMAT_INDICATOR => Property::PayloadFormatIndicator(self.bool(pid)?),
            id::MESSAGE_EXPIRY_INTERVAL => Property::MessageExpiryInterval(self.u32()?),
            id::CONTENT_TYPE => Property::ContentType(self.string()?),
            id::RESPONSE_TOPIC => Property::ResponseTopic(self.string()?),
            id::CORRELATION_DATA => Property::CorrelationData(self.binary()?),
            id::SUBSCRIPTION_IDENTIFIER => Property::SubscriptionIdentifier(self.vbi()?),
            id::SESSION_EXPIRY_INTERVAL => Property::SessionExpiryInterval(self.u32()?),
            id::ASSIGNED_CLIENT_IDENTIFIER => Property::AssignedClientIdentifier(self.string()?),
            id::SERVER_KEEP_ALIVE => Property::ServerKeepAlive(self.u16()?),
            id::AUTHENTICATION_METHOD => Property::AuthenticationMethod(self.string()?),
            id::AUTHENTICATION_DATA => Property::AuthenticationData(self.binary()?),
            id::REQUEST_PROBLEM_INFORMATION => Property::RequestProblemInformation(self.bool(pid)?),
            id::WILL_DELAY_INTERVAL => Property::WillDelayInterval(self.u32()?),
            id::REQUEST_RESPONSE_INFORMATION => {
                Property::RequestResponseInformation(self.bool(pid)?)
            }
            id::RESPONSE_INFORMATION => Property::ResponseInformation(self.string()?),
            id::SERVER_REFERENCE => Property::ServerReference(self.string()?),
            id::REASON_STRING => Property::ReasonString(self.string()?),
            id::RECEIVE_MAXIMUM => Property::ReceiveMaximum(self.u16()?),
            id::TOPIC_ALIAS_MAXIMUM => Property::TopicAliasMaximum(self.u16()?),
            id::TOPIC_ALIAS => Property::TopicAlias(self.u16()?),
            id::MAXIMUM_QOS => Property::MaximumQoS(match self.u8()? {
                0 => QoS::AtMostOnce,
                1 => QoS::AtLeastOnce,
                _ => {
                    return Err(ErrorKind::Protocol(ProtocolError::InvalidPropertyValue(
                        pid,
                    )))
                }
            }),
            id::RETAIN_AVAILABLE => Property::RetainAvailable(self.bool(pid)?),
            id::USER_PROPERTY => Property::UserProperty(self.string()?, self.string()?),
            id::MAXIMUM_PACKET_SIZE => Property::MaximumPacketSize(self.u32()?),
            id::WILDCARD_SUBSCRIPTION_AVAILABLE => {
                Property::WildcardSubscriptionAvailable(self.bool(pid)?)
            }
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                Property::SubscriptionIdentifierAvailable(self.bool(pid)?)
            }
            id::SHARED_SUBSCRIPTION_AVAILABLE => {
                Property::SharedSubscriptionAvailable(self.bool(pid)?)
            }
            other => return Err(ErrorKind::Malformed(Malformed::PropertyNotAllowed(other))),
        })
    }

    /// A property block (its variable byte integer length and the properties), checked for `context`.
    fn properties(&mut self, context: PropertyContext) -> Result<Properties<'a>, ErrorKind> {
        let len = self.vbi()?;
        let block = self.take(len as usize)?;
        let mut inner = Reader::new(block);
        let iter = std::iter::from_fn(|| (!inner.is_empty()).then(|| inner.property()));
        check_properties(iter, context)?;
        Ok(Properties(PropertiesRepr::Raw(block)))
    }

    /// A property block in MQTT 5; nothing in 3.1.1.
    fn properties_if(
        &mut self,
        v5: bool,
        context: PropertyContext,
    ) -> Result<Properties<'a>, ErrorKind> {
        if v5 {
            self.properties(context)
        } else {
            Ok(Properties::EMPTY)
        }
    }
}
