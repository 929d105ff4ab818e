//! The encoder: packets into a caller's `Vec<u8>`, checked by the decoder's own rules first, so that everything
//! it writes decodes again (and nothing is written when a check fails).
//!
//! Each packet is walked twice by the same code: once through a counter, which checks it and yields the
//! remaining length (needed first, in the fixed header), then into the buffer, skipping the checks that scan
//! (strings, topics, filters, property blocks, reason code lists) since the first walk passed them. Nothing is
//! allocated besides what the buffer grows by.

use super::decode::{
    check_codes, check_filter, check_properties, check_string, check_subscription,
};
use super::packet::*;
use super::topic;

/// Where the encoder writes: the caller's buffer, or a counter.
trait Out {
    /// Whether this walk runs the checks that scan (the counting walk does; the writing walk after it need not).
    const CHECK: bool;
    fn put(&mut self, bytes: &[u8]);
}

impl Out for Vec<u8> {
    const CHECK: bool = false;
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Counts octets and checks the packet.
struct Count(usize);

impl Out for Count {
    const CHECK: bool = true;
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// Counts octets only (the length of a property block that was checked already).
struct Len(usize);

impl Out for Len {
    const CHECK: bool = false;
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// Appends `packet`, encoded in `version`, to `out`; returns the number of octets written.
///
/// A CONNECT is written in its own `version`. In 3.1.1 what only MQTT 5 can say is left out: properties, the
/// reason codes of PUBACK/PUBREC/PUBREL/PUBCOMP, UNSUBACK and DISCONNECT, and the MQTT 5 subscription options
/// (no local, retain as published, retain handling). A PUBLISH forwarded from an MQTT 5 publisher to a 3.1.1
/// subscriber thus loses its properties, as the spec intends. AUTH does not exist in 3.1.1
/// ([`EncodeError::NotInVersion`]).
///
/// On error nothing is appended.
pub fn encode(
    packet: &Packet<'_>,
    version: Version,
    out: &mut Vec<u8>,
) -> Result<usize, EncodeError> {
    let start = out.len();
    let payload = match packet {
        Packet::Publish(publish) => publish.payload,
        _ => &[],
    };
    encode_head(packet, version, out)?;
    out.extend_from_slice(payload);
    Ok(out.len() - start)
}

/// Appends everything of a PUBLISH but its payload: the fixed header (whose remaining length counts
/// `publish.payload.len()`), the topic, the packet id and the properties. Returns the octets written.
///
/// This is how a router shares one payload among many subscribers: per subscriber, write the header with the
/// subscriber's packet id, QoS, topic alias or subscription identifiers into a small buffer of its own, and queue
/// that buffer followed by the shared payload bytes (e.g. with `writev`). The payload is only measured here,
/// never read, so `publish.payload` can be any slice of the right length.
pub fn encode_publish_header(
    publish: &Publish<'_>,
    version: Version,
    out: &mut Vec<u8>,
) -> Result<usize, EncodeError> {
    let start = out.len();
    encode_head(&Packet::Publish(publish.clone()), version, out)?;
    Ok(out.len() - start)
}

/// Octets `encode` would write for `packet` (for a PUBLISH including the payload), checking it the same way:
/// compare with the peer's Maximum Packet Size before encoding.
pub fn encoded_len(packet: &Packet<'_>, version: Version) -> Result<usize, EncodeError> {
    let (_, remaining) = measure(packet, version)?;
    Ok(1 + vbi_len(remaining) + remaining)
}

fn measure(packet: &Packet<'_>, version: Version) -> Result<(Version, usize), EncodeError> {
    let version = match packet {
        Packet::Connect(connect) => connect.version,
        Packet::Auth(_) if version == Version::V311 => {
            return Err(EncodeError::NotInVersion(PacketType::Auth))
        }
        _ => version,
    };
    let mut count = Count(0);
    body(packet, version, &mut count)?;
    let payload = match packet {
        Packet::Publish(publish) => publish.payload.len(),
        _ => 0,
    };
    let remaining = count.0 + payload;
    if remaining > REMAINING_LENGTH_MAX {
        return Err(EncodeError::TooLarge {
            remaining_length: remaining,
        });
    }
    Ok((version, remaining))
}

/// The fixed header and the variable header and payload, except a PUBLISH's payload.
fn encode_head(
    packet: &Packet<'_>,
    version: Version,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let (version, remaining) = measure(packet, version)?;
    let first = first_octet(packet)?;
    let start = out.len();
    out.push(first);
    write_vbi(remaining as u32, out);
    if let Err(error) = body(packet, version, out) {
        // The counting pass checked the same code, so this cannot happen; keep the buffer as it was anyway.
        out.truncate(start);
        return Err(error);
    }
    Ok(())
}

fn first_octet(packet: &Packet<'_>) -> Result<u8, EncodeError> {
    let packet_type = packet.packet_type();
    let flags = match (packet, packet_type.fixed_flags()) {
        (Packet::Publish(p), _) => {
            if p.dup && p.qos == QoS::AtMostOnce {
                return Err(EncodeError::Invalid(ErrorKind::Malformed(
                    Malformed::DupWithQoS0,
                )));
            }
            u8::from(p.dup) << 3 | (p.qos as u8) << 1 | u8::from(p.retain)
        }
        (_, Some(flags)) => flags,
        (_, None) => 0,
    };
    Ok((packet_type as u8) << 4 | flags)
}

fn invalid(kind: ErrorKind) -> EncodeError {
    EncodeError::Invalid(kind)
}

fn body<O: Out>(packet: &Packet<'_>, version: Version, o: &mut O) -> Result<(), EncodeError> {
    let v5 = version == Version::V5;
    match packet {
        Packet::Connect(c) => connect(c, o)?,
        Packet::ConnAck(c) => {
            code(PacketType::ConnAck, version, c.code)?;
            if c.session_present && c.code != 0 {
                return Err(invalid(ErrorKind::Protocol(
                    ProtocolError::SessionPresentWithFailure,
                )));
            }
            o.put(&[u8::from(c.session_present), c.code]);
            if v5 {
                properties(&c.properties, PropertyContext::ConnAck, o)?;
            }
        }
        Packet::Publish(p) => {
            if p.topic.is_empty() {
                if !v5 {
                    return Err(invalid(ErrorKind::TopicNameInvalid(
                        topic::TopicError::Empty,
                    )));
                }
                if p.properties.topic_alias().is_none() {
                    return Err(invalid(ErrorKind::Protocol(
                        ProtocolError::EmptyTopicWithoutAlias,
                    )));
                }
            } else if O::CHECK {
                topic::check_name(p.topic).map_err(|e| invalid(ErrorKind::TopicNameInvalid(e)))?;
            }
            string(p.topic, o)?;
            if p.qos != QoS::AtMostOnce {
                packet_id(p.packet_id, o)?;
            }
            if v5 {
                properties(&p.properties, PropertyContext::Publish, o)?;
            }
        }
        Packet::PubAck(a) => ack(PacketType::PubAck, a, version, o)?,
        Packet::PubRec(a) => ack(PacketType::PubRec, a, version, o)?,
        Packet::PubRel(a) => ack(PacketType::PubRel, a, version, o)?,
        Packet::PubComp(a) => ack(PacketType::PubComp, a, version, o)?,
        Packet::Subscribe(s) => {
            packet_id(s.packet_id, o)?;
            if v5 {
                properties(&s.properties, PropertyContext::Subscribe, o)?;
            }
            if s.filters.is_empty() {
                return Err(invalid(ErrorKind::Protocol(ProtocolError::NoTopicFilters)));
            }
            for (filter, options) in s.filters.iter() {
                let byte = match version {
                    Version::V311 => options.qos as u8,
                    Version::V5 => options.to_byte(),
                };
                if O::CHECK {
                    check_subscription(filter, byte, version).map_err(invalid)?;
                }
                string(filter, o)?;
                o.put(&[byte]);
            }
        }
        Packet::SubAck(s) => {
            packet_id(s.packet_id, o)?;
            if v5 {
                properties(&s.properties, PropertyContext::SubAck, o)?;
            }
            if O::CHECK {
                check_codes(PacketType::SubAck, version, s.codes).map_err(invalid)?;
            }
            o.put(s.codes);
        }
        Packet::Unsubscribe(u) => {
            packet_id(u.packet_id, o)?;
            if v5 {
                properties(&u.properties, PropertyContext::Unsubscribe, o)?;
            }
            if u.filters.is_empty() {
                return Err(invalid(ErrorKind::Protocol(ProtocolError::NoTopicFilters)));
            }
            for filter in u.filters.iter() {
                if O::CHECK {
                    check_filter(filter, version).map_err(invalid)?;
                }
                string(filter, o)?;
            }
        }
        Packet::UnsubAck(u) => {
            packet_id(u.packet_id, o)?;
            if v5 {
                properties(&u.properties, PropertyContext::UnsubAck, o)?;
                if O::CHECK {
                    check_codes(PacketType::UnsubAck, version, u.codes).map_err(invalid)?;
                }
                o.put(u.codes);
            }
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => {
            if v5 {
                code_and_properties(
                    PacketType::Disconnect,
                    d.code,
                    &d.properties,
                    PropertyContext::Disconnect,
                    o,
                )?;
            }
        }
        Packet::Auth(a) => {
            if a.properties.authentication_method().is_none() {
                return Err(invalid(ErrorKind::Protocol(
                    ProtocolError::AuthenticationMethodMissing,
                )));
            }
            code_and_properties(
                PacketType::Auth,
                a.code,
                &a.properties,
                PropertyContext::Auth,
                o,
            )?;
        }
    }
    Ok(())
}

fn connect<O: Out>(c: &Connect<'_>, o: &mut O) -> Result<(), EncodeError> {
    let v5 = c.version == Version::V5;
    if !v5 && c.password.is_some() && c.username.is_none() {
        return Err(invalid(ErrorKind::Malformed(
            Malformed::PasswordWithoutUsername,
        )));
    }
    string("MQTT", o)?;
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(will) = &c.will {
        flags |= 0b100 | (will.qos as u8) << 3 | u8::from(will.retain) << 5;
    }
    flags |= u8::from(c.password.is_some()) << 6 | u8::from(c.username.is_some()) << 7;
    o.put(&[c.version.level(), flags]);
    o.put(&c.keep_alive.to_be_bytes());
    if v5 {
        properties(&c.properties, PropertyContext::Connect, o)?;
    }
    string(c.client_id, o)?;
    if let Some(will) = &c.will {
        if v5 {
            properties(&will.properties, PropertyContext::Will, o)?;
        }
        if O::CHECK {
            topic::check_name(will.topic).map_err(|e| invalid(ErrorKind::TopicNameInvalid(e)))?;
        }
        string(will.topic, o)?;
        binary(will.payload, o)?;
    }
    if let Some(username) = c.username {
        string(username, o)?;
    }
    if let Some(password) = c.password {
        binary(password, o)?;
    }
    Ok(())
}

fn ack<O: Out>(
    packet_type: PacketType,
    a: &Ack<'_>,
    version: Version,
    o: &mut O,
) -> Result<(), EncodeError> {
    packet_id(a.packet_id, o)?;
    if version == Version::V5 {
        code_and_properties(packet_type, a.code, &a.properties, PropertyContext::Ack, o)?;
    }
    Ok(())
}

/// MQTT 5: a reason code and a property block, left out from the end when they are 0 and empty.
fn code_and_properties<O: Out>(
    packet_type: PacketType,
    reason_code: u8,
    props: &Properties<'_>,
    context: PropertyContext,
    o: &mut O,
) -> Result<(), EncodeError> {
    code(packet_type, Version::V5, reason_code)?;
    if props.is_empty() {
        if reason_code != reason::SUCCESS {
            o.put(&[reason_code]);
        }
        return Ok(());
    }
    o.put(&[reason_code]);
    properties(props, context, o)
}

fn code(packet_type: PacketType, version: Version, code: u8) -> Result<(), EncodeError> {
    if reason::is_valid(packet_type, version, code) {
        Ok(())
    } else {
        Err(invalid(ErrorKind::Malformed(Malformed::InvalidReasonCode(
            code,
        ))))
    }
}

fn packet_id<O: Out>(id: u16, o: &mut O) -> Result<(), EncodeError> {
    if id == 0 {
        return Err(invalid(ErrorKind::Protocol(ProtocolError::ZeroPacketId)));
    }
    o.put(&id.to_be_bytes());
    Ok(())
}

fn binary<O: Out>(bytes: &[u8], o: &mut O) -> Result<(), EncodeError> {
    let len =
        u16::try_from(bytes.len()).map_err(|_| EncodeError::FieldTooLong { len: bytes.len() })?;
    o.put(&len.to_be_bytes());
    o.put(bytes);
    Ok(())
}

fn string<O: Out>(s: &str, o: &mut O) -> Result<(), EncodeError> {
    if O::CHECK {
        check_string(s).map_err(invalid)?;
    }
    binary(s.as_bytes(), o)
}

/// A property block: checked for `context`, then its length and the properties.
fn properties<O: Out>(
    props: &Properties<'_>,
    context: PropertyContext,
    o: &mut O,
) -> Result<(), EncodeError> {
    if O::CHECK {
        check_properties(props.iter().map(Ok), context).map_err(invalid)?;
    }
    if let Some(raw) = props.raw() {
        write_vbi(raw.len() as u32, o);
        o.put(raw);
        return Ok(());
    }
    // The block was checked above (in the checking walk): measure it without checking its strings again.
    let mut count = Len(0);
    for property in props.iter() {
        property_value(&property, &mut count)?;
    }
    if count.0 > REMAINING_LENGTH_MAX {
        return Err(EncodeError::TooLarge {
            remaining_length: count.0,
        });
    }
    write_vbi(count.0 as u32, o);
    for property in props.iter() {
        property_value(&property, o)?;
    }
    Ok(())
}

fn property_value<O: Out>(property: &Property<'_>, o: &mut O) -> Result<(), EncodeError> {
    o.put(&[property.id()]);
    match *property {
        Property::PayloadFormatIndicator(b)
        | Property::RequestProblemInformation(b)
        | Property::RequestResponseInformation(b)
        | Property::RetainAvailable(b)
        | Property::WildcardSubscriptionAvailable(b)
        | Property::SubscriptionIdentifierAvailable(b)
        | Property::SharedSubscriptionAvailable(b) => o.put(&[u8::from(b)]),
        Property::MaximumQoS(qos) => o.put(&[qos as u8]),
        Property::MessageExpiryInterval(n)
        | Property::SessionExpiryInterval(n)
        | Property::WillDelayInterval(n)
        | Property::MaximumPacketSize(n) => o.put(&n.to_be_bytes()),
        Property::ServerKeepAlive(n)
        | Property::ReceiveMaximum(n)
        | Property::TopicAliasMaximum(n)
        | Property::TopicAlias(n) => o.put(&n.to_be_bytes()),
        Property::SubscriptionIdentifier(n) => write_vbi(n, o),
        Property::ContentType(s)
        | Property::ResponseTopic(s)
        | Property::AssignedClientIdentifier(s)
        | Property::AuthenticationMethod(s)
        | Property::ResponseInformation(s)
        | Property::ServerReference(s)
        | Property::ReasonString(s) => string(s, o)?,
        Property::CorrelationData(b) | Property::AuthenticationData(b) => binary(b, o)?,
        Property::UserProperty(k, v) => {
            string(k, o)?;
            string(v, o)?;
        }
    }
    Ok(())
}

/// A variable byte integer in its shortest form (`n` at most [`REMAINING_LENGTH_MAX`]).
fn write_vbi<O: Out>(mut n: u32, o: &mut O) {
    let mut bytes = [0u8; 4];
    let mut len = 0;
    loop {
        let mut byte = (n & 0x7F) as u8;
        n >>= 7;
        if n > 0 {
            byte |= 0x80;
        }
        bytes[len] = byte;
        len += 1;
        if n == 0 || len == 4 {
            break;
        }
    }
    o.put(&bytes[..len]);
}

fn vbi_len(n: usize) -> usize {
    super::decode::vbi_len(n)
}
