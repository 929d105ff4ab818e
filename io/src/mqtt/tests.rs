//! Byte vectors written by hand from the MQTT 3.1.1 and MQTT 5 specs' tables, error cases for every rule the
//! decoder checks, and property tests (round trips, split points, arbitrary input). The recordings of a real
//! client (paho-mqtt) are decoded in `io/tests/mqtt_vectors.rs`.

use super::topic::TopicError;
use super::*;

use Version::{V311, V5};

/// Octets from hex text; spaces and `|` (field separators, for reading) are ignored.
fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| b.is_ascii_hexdigit())
        .map(|b| match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b - b'A' + 10,
        })
        .collect();
    assert!(
        digits.len().is_multiple_of(2),
        "odd number of hex digits in {text}"
    );
    digits.chunks(2).map(|d| d[0] << 4 | d[1]).collect()
}

const MAX: usize = PACKET_SIZE_MAX;

fn decoder(version: Version, from: Side) -> Decoder {
    Decoder {
        version,
        from,
        max_packet_size: MAX,
    }
}

/// Who sends a packet of this type (a PUBLISH is checked from both sides unless it has subscription ids).
fn sender(packet: &Packet<'_>) -> Side {
    if packet.packet_type().sent_by_client() {
        Side::Client
    } else {
        Side::Server
    }
}

/// `bytes` decode to `expected` (consuming all of them) and `expected` encodes to `bytes`.
fn both_ways(version: Version, bytes: &[u8], expected: &Packet<'_>) {
    let from = match expected {
        Packet::Publish(p) if p.properties.subscription_identifiers().next().is_some() => {
            Side::Server
        }
        _ => sender(expected),
    };
    let decoded = decoder(version, from).decode(bytes);
    assert_eq!(
        decoded,
        Ok(Some((bytes.len(), expected.clone()))),
        "decoding {bytes:02x?}"
    );
    let mut out = vec![0xAA];
    let written = encode(expected, version, &mut out);
    assert_eq!(written, Ok(bytes.len()), "{expected:?}");
    assert_eq!(&out[1..], bytes, "encoding {expected:?}");
    assert_eq!(encoded_len(expected, version), Ok(bytes.len()));
    // Every strict prefix is incomplete.
    for cut in 0..bytes.len() {
        assert_eq!(
            decoder(version, from).decode(&bytes[..cut]),
            Ok(None),
            "prefix of {cut} octets of {bytes:02x?}"
        );
    }
}

fn decode_err(version: Version, from: Side, bytes: &[u8]) -> ErrorKind {
    match decoder(version, from).decode(bytes) {
        Err(e) => e.kind,
        other => panic!("{bytes:02x?} decodes as {other:?}"),
    }
}

fn client_err(version: Version, bytes: &str) -> ErrorKind {
    decode_err(version, Side::Client, &hex(bytes))
}

fn server_err(version: Version, bytes: &str) -> ErrorKind {
    decode_err(version, Side::Server, &hex(bytes))
}

fn malformed(m: Malformed) -> ErrorKind {
    ErrorKind::Malformed(m)
}

fn protocol(p: ProtocolError) -> ErrorKind {
    ErrorKind::Protocol(p)
}

// -------------------------------------------------------------------------------------------------------------
// MQTT 3.1.1 vectors

#[test]
fn v311_connect() {
    both_ways(
        V311,
        &hex("10 0c | 00 04 4d 51 54 54 | 04 | 02 | 00 3c | 00 00"),
        &Packet::Connect(Connect {
            version: V311,
            clean_start: true,
            keep_alive: 60,
            properties: Properties::EMPTY,
            client_id: "",
            will: None,
            username: None,
            password: None,
        }),
    );
    // Will (QoS 1, retain), user name and password: flags 1110 1110.
    both_ways(
        V311,
        &hex(
            "10 1e | 00 04 4d 51 54 54 | 04 | ee | 00 0a | 00 02 63 31 | 00 03 77 2f 74 | 00 03 62 79 65 |
             00 01 75 | 00 01 70",
        ),
        &Packet::Connect(Connect {
            version: V311,
            clean_start: true,
            keep_alive: 10,
            properties: Properties::EMPTY,
            client_id: "c1",
            will: Some(Will {
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: Properties::EMPTY,
                topic: "w/t",
                payload: b"bye",
            }),
            username: Some("u"),
            password: Some(b"p"),
        }),
    );
}

#[test]
fn v311_connack() {
    both_ways(
        V311,
        &hex("20 02 01 00"),
        &Packet::ConnAck(ConnAck {
            session_present: true,
            code: 0,
            properties: Properties::EMPTY,
        }),
    );
    both_ways(
        V311,
        &hex("20 02 00 05"),
        &Packet::ConnAck(ConnAck {
            session_present: false,
            code: reason::v311::NOT_AUTHORIZED,
            properties: Properties::EMPTY,
        }),
    );
}

fn publish<'a>(qos: QoS, topic: &'a str, packet_id: u16, payload: &'a [u8]) -> Publish<'a> {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic,
        packet_id,
        properties: Properties::EMPTY,
        payload,
    }
}

#[test]
fn v311_publish() {
    both_ways(
        V311,
        &hex("30 07 | 00 03 61 2f 62 | 68 69"),
        &Packet::Publish(publish(QoS::AtMostOnce, "a/b", 0, b"hi")),
    );
    both_ways(
        V311,
        &hex("3b 07 | 00 03 61 2f 62 | 00 0a"),
        &Packet::Publish(Publish {
            dup: true,
            retain: true,
            ..publish(QoS::AtLeastOnce, "a/b", 10, b"")
        }),
    );
    both_ways(
        V311,
        &hex("34 08 | 00 01 74 | 12 34 | ff fe 00"),
        &Packet::Publish(publish(QoS::ExactlyOnce, "t", 0x1234, &[0xff, 0xfe, 0])),
    );
}

#[test]
fn v311_acks() {
    let ack = Ack::success(10);
    both_ways(V311, &hex("40 02 00 0a"), &Packet::PubAck(ack.clone()));
    both_ways(V311, &hex("50 02 00 0a"), &Packet::PubRec(ack.clone()));
    both_ways(V311, &hex("62 02 00 0a"), &Packet::PubRel(ack.clone()));
    both_ways(V311, &hex("70 02 00 0a"), &Packet::PubComp(ack));
    // MQTT 5 reason codes and properties are not written in 3.1.1.
    let mut out = Vec::new();
    let props = [Property::ReasonString("no")];
    let refused = Ack {
        packet_id: 10,
        code: reason::NOT_AUTHORIZED,
        properties: Properties::new(&props),
    };
    assert_eq!(encode(&Packet::PubAck(refused), V311, &mut out), Ok(4));
    assert_eq!(out, hex("40 02 00 0a"));
}

#[test]
fn v311_subscribe_and_unsubscribe() {
    let filters = [
        ("a/+", SubscriptionOptions::qos(QoS::AtLeastOnce)),
        ("#", SubscriptionOptions::qos(QoS::ExactlyOnce)),
    ];
    both_ways(
        V311,
        &hex("82 0c | 00 01 | 00 03 61 2f 2b | 01 | 00 01 23 | 02"),
        &Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::EMPTY,
            filters: Subscriptions::new(&filters),
        }),
    );
    both_ways(
        V311,
        &hex("90 05 | 00 01 | 01 02 80"),
        &Packet::SubAck(SubAck {
            packet_id: 1,
            properties: Properties::EMPTY,
            codes: &[1, 2, 0x80],
        }),
    );
    both_ways(
        V311,
        &hex("a2 07 | 00 02 | 00 03 61 2f 2b"),
        &Packet::Unsubscribe(Unsubscribe {
            packet_id: 2,
            properties: Properties::EMPTY,
            filters: Filters::new(&["a/+"]),
        }),
    );
    both_ways(
        V311,
        &hex("b0 02 00 02"),
        &Packet::UnsubAck(UnsubAck {
            packet_id: 2,
            properties: Properties::EMPTY,
            codes: &[],
        }),
    );
}

#[test]
fn v311_ping_and_disconnect() {
    both_ways(V311, &hex("c0 00"), &Packet::PingReq);
    both_ways(V311, &hex("d0 00"), &Packet::PingResp);
    both_ways(
        V311,
        &hex("e0 00"),
        &Packet::Disconnect(Disconnect::with_code(0)),
    );
}

// -------------------------------------------------------------------------------------------------------------
// MQTT 5 vectors

#[test]
fn v5_connect() {
    both_ways(
        V5,
        &hex("10 0d | 00 04 4d 51 54 54 | 05 | 02 | 00 3c | 00 | 00 00"),
        &Packet::Connect(Connect {
            version: V5,
            clean_start: true,
            keep_alive: 60,
            properties: Properties::EMPTY,
            client_id: "",
            will: None,
            username: None,
            password: None,
        }),
    );
    let props = [
        Property::SessionExpiryInterval(3600),
        Property::ReceiveMaximum(10),
        Property::MaximumPacketSize(1024),
        Property::TopicAliasMaximum(5),
        Property::RequestResponseInformation(true),
        Property::RequestProblemInformation(false),
        Property::UserProperty("k", "v"),
        Property::AuthenticationMethod("m"),
        Property::AuthenticationData(&[1, 2]),
    ];
    let will_props = [
        Property::WillDelayInterval(5),
        Property::PayloadFormatIndicator(true),
        Property::MessageExpiryInterval(60),
        Property::ContentType("t"),
        Property::ResponseTopic("r"),
        Property::CorrelationData(&[0xaa]),
        Property::UserProperty("a", "b"),
    ];
    // Will QoS 2, password without user name (allowed in MQTT 5): flags 0101 0110.
    both_ways(
        V5,
        &hex(
            "10 5a | 00 04 4d 51 54 54 | 05 | 56 | 00 1e |
             24 | 11 00 00 0e 10 | 21 00 0a | 27 00 00 04 00 | 22 00 05 | 19 01 | 17 00 |
                  26 00 01 6b 00 01 76 | 15 00 01 6d | 16 00 02 01 02 |
             00 01 63 |
             1f | 18 00 00 00 05 | 01 01 | 02 00 00 00 3c | 03 00 01 74 | 08 00 01 72 | 09 00 01 aa |
                  26 00 01 61 00 01 62 |
             00 01 77 | 00 00 | 00 01 70",
        ),
        &Packet::Connect(Connect {
            version: V5,
            clean_start: true,
            keep_alive: 30,
            properties: Properties::new(&props),
            client_id: "c",
            will: Some(Will {
                qos: QoS::ExactlyOnce,
                retain: false,
                properties: Properties::new(&will_props),
                topic: "w",
                payload: b"",
            }),
            username: None,
            password: Some(b"p"),
        }),
    );
}

#[test]
fn v5_connect_properties_read_lazily() {
    let bytes = hex("10 1e | 00 04 4d 51 54 54 | 05 | 02 | 00 00 |
         11 | 11 00 00 00 0a | 26 00 01 61 00 01 62 | 26 00 00 00 00 | 00 00");
    let Ok(Some((_, Packet::Connect(c)))) = decoder(V5, Side::Client).decode(&bytes) else {
        panic!("not a CONNECT");
    };
    assert_eq!(c.properties.session_expiry_interval(), Some(10));
    assert_eq!(c.properties.receive_maximum(), None);
    assert_eq!(
        c.properties.user_properties().collect::<Vec<_>>(),
        [("a", "b"), ("", "")]
    );
    assert_eq!(c.properties.raw(), Some(&bytes[13..30]));
}

#[test]
fn v5_connack() {
    both_ways(
        V5,
        &hex("20 03 00 00 00"),
        &Packet::ConnAck(ConnAck {
            session_present: false,
            code: 0,
            properties: Properties::EMPTY,
        }),
    );
    both_ways(
        V5,
        &hex("20 03 00 87 00"),
        &Packet::ConnAck(ConnAck {
            session_present: false,
            code: reason::NOT_AUTHORIZED,
            properties: Properties::EMPTY,
        }),
    );
    let props = [
        Property::ReceiveMaximum(20),
        Property::MaximumQoS(QoS::AtLeastOnce),
        Property::RetainAvailable(false),
        Property::AssignedClientIdentifier("id"),
        Property::TopicAliasMaximum(8),
        Property::ReasonString("ok"),
        Property::WildcardSubscriptionAvailable(true),
        Property::SubscriptionIdentifierAvailable(true),
        Property::SharedSubscriptionAvailable(false),
        Property::ServerKeepAlive(60),
        Property::ResponseInformation("ri"),
        Property::ServerReference("s"),
        Property::MaximumPacketSize(65536),
        Property::SessionExpiryInterval(0),
    ];
    both_ways(
        V5,
        &hex(
            "20 33 | 01 00 | 30 | 21 00 14 | 24 01 | 25 00 | 12 00 02 69 64 | 22 00 08 | 1f 00 02 6f 6b |
             28 01 | 29 01 | 2a 00 | 13 00 3c | 1a 00 02 72 69 | 1c 00 01 73 | 27 00 01 00 00 | 11 00 00 00 00",
        ),
        &Packet::ConnAck(ConnAck {
            session_present: true,
            code: 0,
            properties: Properties::new(&props),
        }),
    );
}

#[test]
fn v5_publish() {
    let props = [
        Property::PayloadFormatIndicator(true),
        Property::MessageExpiryInterval(60),
        Property::TopicAlias(2),
        Property::ResponseTopic("r"),
        Property::CorrelationData(&[1, 2]),
        Property::UserProperty("k", "v"),
        Property::SubscriptionIdentifier(300),
        Property::ContentType("json"),
    ];
    let bytes = hex(
        "32 2d | 00 03 61 2f 62 | 00 07 |
         24 | 01 01 | 02 00 00 00 3c | 23 00 02 | 08 00 01 72 | 09 00 02 01 02 | 26 00 01 6b 00 01 76 |
              0b ac 02 | 03 00 04 6a 73 6f 6e |
         78",
    );
    both_ways(
        V5,
        &bytes,
        &Packet::Publish(Publish {
            properties: Properties::new(&props),
            ..publish(QoS::AtLeastOnce, "a/b", 7, b"x")
        }),
    );
    // A client must not send a subscription identifier.
    assert_eq!(
        decode_err(V5, Side::Client, &bytes),
        protocol(ProtocolError::SubscriptionIdentifierFromClient)
    );
    // An empty topic with a topic alias.
    let alias = [Property::TopicAlias(1)];
    both_ways(
        V5,
        &hex("30 07 | 00 00 | 03 23 00 01 | 78"),
        &Packet::Publish(Publish {
            properties: Properties::new(&alias),
            ..publish(QoS::AtMostOnce, "", 0, b"x")
        }),
    );
    // A server forwards one subscription identifier per matching subscription.
    let ids = [
        Property::SubscriptionIdentifier(1),
        Property::SubscriptionIdentifier(268_435_455),
    ];
    both_ways(
        V5,
        &hex("30 0c | 00 01 74 | 07 0b 01 0b ff ff ff 7f | 79"),
        &Packet::Publish(Publish {
            properties: Properties::new(&ids),
            ..publish(QoS::AtMostOnce, "t", 0, b"y")
        }),
    );
}

#[test]
fn v5_acks() {
    both_ways(V5, &hex("40 02 00 0a"), &Packet::PubAck(Ack::success(10)));
    let ack = |code| Ack {
        packet_id: 10,
        code,
        properties: Properties::EMPTY,
    };
    both_ways(
        V5,
        &hex("40 03 00 0a 10"),
        &Packet::PubAck(ack(reason::NO_MATCHING_SUBSCRIBERS)),
    );
    let props = [Property::ReasonString("n")];
    both_ways(
        V5,
        &hex("40 08 | 00 0a | 87 | 04 1f 00 01 6e"),
        &Packet::PubAck(Ack {
            properties: Properties::new(&props),
            ..ack(reason::NOT_AUTHORIZED)
        }),
    );
    both_ways(
        V5,
        &hex("50 03 00 0a 80"),
        &Packet::PubRec(ack(reason::UNSPECIFIED_ERROR)),
    );
    both_ways(
        V5,
        &hex("62 03 00 0a 92"),
        &Packet::PubRel(ack(reason::PACKET_IDENTIFIER_NOT_FOUND)),
    );
    both_ways(V5, &hex("70 02 00 0a"), &Packet::PubComp(ack(0)));
    // The long forms of success decode too (the encoder writes the short one).
    for bytes in ["40 03 00 0a 00", "40 04 00 0a 00 00"] {
        assert_eq!(
            decoder(V5, Side::Client).decode(&hex(bytes)),
            Ok(Some((hex(bytes).len(), Packet::PubAck(ack(0)))))
        );
    }
}

#[test]
fn v5_subscribe_and_unsubscribe() {
    let props = [
        Property::SubscriptionIdentifier(7),
        Property::UserProperty("k", "v"),
    ];
    let filters = [
        (
            "a/+",
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::Never,
            },
        ),
        (
            "#",
            SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                no_local: false,
                retain_as_published: false,
                retain_handling: RetainHandling::OnNewSubscribe,
            },
        ),
    ];
    both_ways(
        V5,
        &hex("82 16 | 00 01 | 09 0b 07 26 00 01 6b 00 01 76 | 00 03 61 2f 2b | 2d | 00 01 23 | 12"),
        &Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::new(&props),
            filters: Subscriptions::new(&filters),
        }),
    );
    both_ways(
        V5,
        &hex("90 06 | 00 01 | 00 | 01 02 8f"),
        &Packet::SubAck(SubAck {
            packet_id: 1,
            properties: Properties::EMPTY,
            codes: &[1, 2, reason::TOPIC_FILTER_INVALID],
        }),
    );
    both_ways(
        V5,
        &hex("a2 08 | 00 02 | 00 | 00 03 61 2f 2b"),
        &Packet::Unsubscribe(Unsubscribe {
            packet_id: 2,
            properties: Properties::EMPTY,
            filters: Filters::new(&["a/+"]),
        }),
    );
    both_ways(
        V5,
        &hex("b0 05 | 00 02 | 00 | 00 11"),
        &Packet::UnsubAck(UnsubAck {
            packet_id: 2,
            properties: Properties::EMPTY,
            codes: &[0, reason::NO_SUBSCRIPTION_EXISTED],
        }),
    );
    // Shared subscriptions parse; the share name is checked.
    let shared = [("$share/g/a", SubscriptionOptions::qos(QoS::AtMostOnce))];
    both_ways(
        V5,
        &hex("82 10 | 00 03 | 00 | 00 0a 24 73 68 61 72 65 2f 67 2f 61 | 00"),
        &Packet::Subscribe(Subscribe {
            packet_id: 3,
            properties: Properties::EMPTY,
            filters: Subscriptions::new(&shared),
        }),
    );
}

#[test]
fn v5_ping_disconnect_auth() {
    both_ways(V5, &hex("c0 00"), &Packet::PingReq);
    both_ways(V5, &hex("d0 00"), &Packet::PingResp);
    both_ways(
        V5,
        &hex("e0 00"),
        &Packet::Disconnect(Disconnect::with_code(0)),
    );
    both_ways(
        V5,
        &hex("e0 01 04"),
        &Packet::Disconnect(Disconnect::with_code(reason::DISCONNECT_WITH_WILL)),
    );
    let props = [
        Property::SessionExpiryInterval(0),
        Property::ServerReference("s"),
    ];
    both_ways(
        V5,
        &hex("e0 0b | 8b | 09 11 00 00 00 00 1c 00 01 73"),
        &Packet::Disconnect(Disconnect {
            code: reason::SERVER_SHUTTING_DOWN,
            properties: Properties::new(&props),
        }),
    );
    let props = [Property::AuthenticationMethod("m1")];
    both_ways(
        V5,
        &hex("f0 07 | 18 | 05 15 00 02 6d 31"),
        &Packet::Auth(Auth {
            code: reason::CONTINUE_AUTHENTICATION,
            properties: Properties::new(&props),
        }),
    );
}

#[test]
fn publish_header_leaves_the_payload_to_the_caller() {
    let props = [Property::UserProperty("k", "v")];
    let payload = vec![7u8; 300];
    let p = Publish {
        properties: Properties::new(&props),
        ..publish(QoS::AtLeastOnce, "a/b", 9, &payload)
    };
    for version in [V311, V5] {
        let mut whole = Vec::new();
        encode(&Packet::Publish(p.clone()), version, &mut whole).expect("encodes");
        let mut header = Vec::new();
        let n = encode_publish_header(&p, version, &mut header).expect("encodes");
        assert_eq!(n, header.len());
        assert_eq!(header.len() + payload.len(), whole.len());
        assert_eq!(&whole[..header.len()], &header[..]);
        assert_eq!(&whole[header.len()..], &payload[..]);
        // 300 + header content needs two octets of remaining length.
        assert_eq!(header[1] & 0x80, 0x80);
    }
}

// -------------------------------------------------------------------------------------------------------------
// Errors

#[test]
fn fixed_header_errors() {
    for version in [V311, V5] {
        assert_eq!(
            client_err(version, "00 00"),
            malformed(Malformed::ReservedPacketType(0))
        );
        assert_eq!(
            client_err(version, "c1 00"),
            malformed(Malformed::FixedHeaderFlags {
                packet_type: PacketType::PingReq,
                flags: 1
            })
        );
        for (bytes, packet_type, flags) in [
            ("80 06 00 01 00 01 23 00", PacketType::Subscribe, 0),
            ("8a 06 00 01 00 01 23 00", PacketType::Subscribe, 0b1010),
            ("a0 05 00 01 00 01 23", PacketType::Unsubscribe, 0),
            ("60 02 00 01", PacketType::PubRel, 0),
            ("42 02 00 01", PacketType::PubAck, 2),
            ("18 00", PacketType::Connect, 8),
        ] {
            assert_eq!(
                client_err(version, bytes),
                malformed(Malformed::FixedHeaderFlags { packet_type, flags }),
                "{bytes}"
            );
        }
        assert_eq!(
            client_err(version, "36 04 00 01 74 00"),
            malformed(Malformed::QoS3)
        );
        assert_eq!(
            client_err(version, "38 03 00 01 74"),
            malformed(Malformed::DupWithQoS0)
        );
        // The 4th octet of the remaining length must not continue; a 4-octet length can be incomplete.
        assert_eq!(
            client_err(version, "30 ff ff ff ff"),
            malformed(Malformed::VariableByteIntegerTooLong)
        );
        assert_eq!(
            decoder(version, Side::Client).decode(&hex("30 ff ff ff")),
            Ok(None)
        );
        // Flags are refused from the first octet alone.
        assert_eq!(
            client_err(version, "c1"),
            malformed(Malformed::FixedHeaderFlags {
                packet_type: PacketType::PingReq,
                flags: 1
            })
        );
    }
    // A 3.1.1 server never sends DISCONNECT (an MQTT 5 one may).
    assert_eq!(
        server_err(V311, "e0 00"),
        protocol(ProtocolError::UnexpectedPacket(PacketType::Disconnect))
    );
    assert_eq!(
        decoder(V5, Side::Server).decode(&hex("e0 00")),
        Ok(Some((2, Packet::Disconnect(Disconnect::with_code(0)))))
    );
    // AUTH does not exist in 3.1.1.
    assert_eq!(
        client_err(V311, "f0 00"),
        malformed(Malformed::ReservedPacketType(15))
    );
}

#[test]
fn oversize_packets_are_refused_from_the_fixed_header() {
    let d = Decoder::server(V5, 100);
    // 1 + 1 + 98 = 100 octets: allowed, incomplete.
    assert_eq!(d.decode(&hex("30 62 00")), Ok(None));
    assert_eq!(
        d.header(&hex("30 62")),
        Ok(Some(FixedHeader {
            packet_type: PacketType::Publish,
            flags: 0,
            remaining_length: 98,
            header_len: 2
        }))
    );
    // 1 + 1 + 99: refused before the body arrives.
    let err = d.decode(&hex("30 63")).expect_err("too large");
    assert_eq!(
        err.kind,
        ErrorKind::PacketTooLarge {
            size: 101,
            max: 100
        }
    );
    assert_eq!(
        err.action(),
        ErrorAction::Disconnect(reason::PACKET_TOO_LARGE)
    );
    // The largest remaining length.
    let err = Decoder::server(V311, 1 << 20)
        .decode(&hex("30 ff ff ff 7f"))
        .expect_err("too large");
    assert_eq!(
        err.kind,
        ErrorKind::PacketTooLarge {
            size: PACKET_SIZE_MAX,
            max: 1 << 20
        }
    );
    assert_eq!(err.action(), ErrorAction::Close);
    assert_eq!(
        decoder(V311, Side::Client).header(&hex("30 ff ff ff 7f")),
        Ok(Some(FixedHeader {
            packet_type: PacketType::Publish,
            flags: 0,
            remaining_length: REMAINING_LENGTH_MAX,
            header_len: 5
        }))
    );
}

#[test]
fn non_minimal_lengths_are_malformed_in_v5_only() {
    assert_eq!(
        decoder(V311, Side::Client).decode(&hex("c0 80 00")),
        Ok(Some((3, Packet::PingReq)))
    );
    assert_eq!(
        client_err(V5, "c0 80 00"),
        malformed(Malformed::NonMinimalVariableByteInteger)
    );
    // From the fixed header alone, before the body.
    assert_eq!(
        client_err(V5, "30 85 80 00"),
        malformed(Malformed::NonMinimalVariableByteInteger)
    );
    assert_eq!(
        decoder(V311, Side::Client).decode(&hex("30 85 80 00")),
        Ok(None)
    );
    // A CONNECT is judged by its own level.
    let connect_v5 = "10 8d 00 | 00 04 4d 51 54 54 | 05 | 02 | 00 3c | 00 | 00 00";
    let connect_v311 = "10 8c 00 | 00 04 4d 51 54 54 | 04 | 02 | 00 3c | 00 00";
    assert_eq!(
        decode_err(V311, Side::Client, &hex(connect_v5)),
        malformed(Malformed::NonMinimalVariableByteInteger)
    );
    assert!(matches!(
        decoder(V5, Side::Client).decode(&hex(connect_v311)),
        Ok(Some((15, Packet::Connect(_))))
    ));
    // Property lengths and subscription identifiers.
    assert_eq!(
        client_err(V5, "e0 03 00 80 00"),
        malformed(Malformed::NonMinimalVariableByteInteger)
    );
    assert_eq!(
        decode_err(
            V5,
            Side::Client,
            &fix_len(&hex("82 00 00 01 03 0b 87 00 00 01 23 00"))
        ),
        malformed(Malformed::NonMinimalVariableByteInteger)
    );
}

#[test]
fn length_mismatches() {
    for version in [V311, V5] {
        // The remaining length is too short for the packet id / the string.
        assert_eq!(
            client_err(version, "40 01 00"),
            malformed(Malformed::Truncated)
        );
        assert_eq!(
            client_err(version, "30 03 00 05 61"),
            malformed(Malformed::Truncated)
        );
        // Or too long for its content.
        assert_eq!(
            client_err(version, "c0 01 00"),
            malformed(Malformed::TrailingBytes)
        );
        assert_eq!(
            client_err(
                version,
                "10 0d | 00 04 4d 51 54 54 | 04 | 02 | 00 3c | 00 00 | ff"
            ),
            malformed(Malformed::TrailingBytes)
        );
    }
    assert_eq!(
        client_err(V311, "40 03 00 01 00"),
        malformed(Malformed::TrailingBytes)
    );
    assert_eq!(
        client_err(V311, "e0 01 00"),
        malformed(Malformed::TrailingBytes)
    );
    assert_eq!(
        server_err(V311, "b0 03 00 01 00"),
        malformed(Malformed::TrailingBytes)
    );
    // A property block longer than the packet.
    assert_eq!(
        client_err(V5, "e0 03 00 05 11"),
        malformed(Malformed::Truncated)
    );
}

#[test]
fn strings_are_well_formed_utf8_without_nul() {
    for version in [V311, V5] {
        let props = if version == V5 { "00" } else { "" };
        for (topic, error) in [
            ("ff", Malformed::InvalidUtf8),
            ("ed a0 80", Malformed::InvalidUtf8), // a surrogate, U+D800
            ("c0 af", Malformed::InvalidUtf8),    // an overlong '/'
            ("f4 90 80 80", Malformed::InvalidUtf8), // above U+10FFFF
            ("61 00 62", Malformed::NullCharacter),
        ] {
            let topic = hex(topic);
            let mut bytes = vec![0x30, (2 + topic.len() + props.len() / 2) as u8, 0];
            bytes.push(topic.len() as u8);
            bytes.extend(&topic);
            bytes.extend(hex(props));
            assert_eq!(
                decode_err(version, Side::Client, &bytes),
                malformed(error),
                "{bytes:02x?}"
            );
        }
    }
    // U+FEFF and non-characters are well-formed: accepted and kept.
    let bytes = hex("30 08 | 00 06 ef bb bf ef bf bf");
    assert!(matches!(
        decoder(V311, Side::Client).decode(&bytes),
        Ok(Some((
            10,
            Packet::Publish(Publish {
                topic: "\u{feff}\u{ffff}",
                ..
            })
        )))
    ));
    // User names and user properties too.
    assert_eq!(
        client_err(
            V311,
            "10 11 | 00 04 4d 51 54 54 | 04 | 82 | 00 3c | 00 00 | 00 03 61 00 62"
        ),
        malformed(Malformed::NullCharacter)
    );
    assert_eq!(
        client_err(V5, "e0 09 | 00 | 07 26 00 01 ff 00 01 61"),
        malformed(Malformed::InvalidUtf8)
    );
}

#[test]
fn packet_ids_must_not_be_zero() {
    for version in [V311, V5] {
        let props = if version == V5 { "00" } else { "" };
        for bytes in [
            "40 02 00 00".to_owned(),
            "50 02 00 00".to_owned(),
            "62 02 00 00".to_owned(),
            "70 02 00 00".to_owned(),
            format!("32 05 00 01 74 00 00 {props}"),
            format!("82 07 00 00 {props} 00 01 23 00"),
            format!("a2 06 00 00 {props} 00 01 23"),
        ] {
            let bytes = fix_len(&hex(&bytes));
            assert_eq!(
                decode_err(version, Side::Client, &bytes),
                protocol(ProtocolError::ZeroPacketId),
                "{bytes:02x?}"
            );
        }
        let suback = fix_len(&hex(&format!("90 00 00 00 {props} 00")));
        assert_eq!(
            decode_err(version, Side::Server, &suback),
            protocol(ProtocolError::ZeroPacketId)
        );
    }
}

/// Sets the one-octet remaining length of `bytes` to what follows it.
fn fix_len(bytes: &[u8]) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    bytes[1] = (bytes.len() - 2) as u8;
    bytes
}

const CONNECT_HEAD: &str = "00 04 4d 51 54 54";

fn connect_err(version: Version, level_flags_rest: &str) -> ErrorKind {
    let bytes = fix_len(&hex(&format!("10 00 {CONNECT_HEAD} {level_flags_rest}")));
    decode_err(version, Side::Client, &bytes)
}

#[test]
fn connect_errors() {
    for guess in [V311, V5] {
        assert_eq!(
            connect_err(guess, "04 03 00 3c 00 00"),
            malformed(Malformed::ConnectReservedFlag)
        );
        assert_eq!(
            connect_err(guess, "05 01 00 3c 00 00 00"),
            malformed(Malformed::ConnectReservedFlag)
        );
        // Will QoS or retain without the will flag.
        assert_eq!(
            connect_err(guess, "04 0a 00 3c 00 00"),
            malformed(Malformed::WillFlagsWithoutWill)
        );
        assert_eq!(
            connect_err(guess, "04 22 00 3c 00 00"),
            malformed(Malformed::WillFlagsWithoutWill)
        );
        // Will QoS 3.
        assert_eq!(
            connect_err(guess, "04 1e 00 3c 00 00 00 01 74 00 00"),
            malformed(Malformed::QoS3)
        );
        // Password without user name: malformed in 3.1.1, allowed in 5.
        assert_eq!(
            connect_err(guess, "04 42 00 3c 00 00 00 01 70"),
            malformed(Malformed::PasswordWithoutUsername)
        );
        // Will topic with a wildcard.
        assert_eq!(
            connect_err(guess, "04 06 00 3c 00 00 00 03 61 2f 23 00 00"),
            ErrorKind::TopicNameInvalid(TopicError::Wildcard)
        );
        assert_eq!(
            connect_err(guess, "05 06 00 3c 00 00 00 00 00 01 2b 00 00"),
            ErrorKind::TopicNameInvalid(TopicError::Wildcard)
        );
        // Unsupported levels and names.
        for level in ["03", "06", "00", "ff"] {
            let level_num = hex(level)[0];
            assert_eq!(
                connect_err(guess, &format!("{level} 02 00 3c 00 00")),
                ErrorKind::UnsupportedProtocolVersion {
                    level: level_num,
                    mqisdp: false
                }
            );
        }
        let mqisdp = fix_len(&hex("10 00 00 06 4d 51 49 73 64 70 03 02 00 3c 00 00"));
        assert_eq!(
            decode_err(guess, Side::Client, &mqisdp),
            ErrorKind::UnsupportedProtocolVersion {
                level: 3,
                mqisdp: true
            }
        );
        // MQTT 3.1 with a level of 5 (found by the fuzzer): still MQTT 3.1, answered in the 3.1.1 format.
        let mqisdp_5 = fix_len(&hex("10 00 00 06 4d 51 49 73 64 70 05 02 00 3c 00 00"));
        let err = decoder(guess, Side::Client)
            .decode(&mqisdp_5)
            .expect_err("unsupported");
        assert_eq!(
            err.kind,
            ErrorKind::UnsupportedProtocolVersion {
                level: 5,
                mqisdp: true
            }
        );
        assert_eq!(
            err.action(),
            ErrorAction::ConnAck {
                version: V311,
                code: 1
            }
        );
        let other = fix_len(&hex("10 00 00 04 4d 51 54 58 04 02 00 3c 00 00"));
        assert_eq!(
            decode_err(guess, Side::Client, &other),
            ErrorKind::UnknownProtocolName
        );
    }
    // MQTT 5 property rules.
    assert_eq!(
        connect_err(V5, "05 02 00 3c 03 21 00 00 00 00"),
        protocol(ProtocolError::InvalidPropertyValue(0x21))
    );
    assert_eq!(
        connect_err(V5, "05 02 00 3c 05 27 00 00 00 00 00 00"),
        protocol(ProtocolError::InvalidPropertyValue(0x27))
    );
    assert_eq!(
        connect_err(V5, "05 02 00 3c 02 17 02 00 00"),
        protocol(ProtocolError::InvalidPropertyValue(0x17))
    );
    assert_eq!(
        connect_err(V5, "05 02 00 3c 0a 11 00 00 00 01 11 00 00 00 02 00 00"),
        protocol(ProtocolError::DuplicateProperty(0x11))
    );
    assert_eq!(
        connect_err(V5, "05 02 00 3c 03 16 00 00 00 00"),
        protocol(ProtocolError::AuthenticationMethodMissing)
    );
    // Properties of other packets are not allowed here.
    assert_eq!(
        connect_err(V5, "05 02 00 3c 03 23 00 01 00 00"),
        malformed(Malformed::PropertyNotAllowed(0x23))
    );
    // Will properties: a response topic with a wildcard; a CONNECT property in the will.
    assert_eq!(
        connect_err(V5, "05 06 00 3c 00 00 00 04 08 00 01 23 00 01 74 00 00"),
        protocol(ProtocolError::InvalidPropertyValue(0x08))
    );
    assert_eq!(
        connect_err(V5, "05 06 00 3c 00 00 00 05 11 00 00 00 01 00 01 74 00 00"),
        malformed(Malformed::PropertyNotAllowed(0x11))
    );
}

#[test]
fn connect_errors_are_judged_in_the_connect_s_version() {
    // A malformed MQTT 5 CONNECT read by a decoder guessing 3.1.1: an MQTT 5 error.
    let bytes = fix_len(&hex(&format!("10 00 {CONNECT_HEAD} 05 01 00 3c 00 00 00")));
    let err = decoder(V311, Side::Client)
        .decode(&bytes)
        .expect_err("reserved flag");
    assert_eq!(err.version, V5);
    assert_eq!(
        err.action(),
        ErrorAction::Disconnect(reason::MALFORMED_PACKET)
    );
    let bytes = fix_len(&hex(&format!("10 00 {CONNECT_HEAD} 04 01 00 3c 00 00")));
    let err = decoder(V5, Side::Client)
        .decode(&bytes)
        .expect_err("reserved flag");
    assert_eq!(err.version, V311);
    assert_eq!(err.action(), ErrorAction::Close);
}

#[test]
fn publish_errors() {
    assert_eq!(
        decode_err(V311, Side::Client, &fix_len(&hex("30 00 00 02 61 23"))),
        ErrorKind::TopicNameInvalid(TopicError::Wildcard)
    );
    assert_eq!(
        decode_err(V5, Side::Client, &fix_len(&hex("30 00 00 02 2b 2f 00"))),
        ErrorKind::TopicNameInvalid(TopicError::Wildcard)
    );
    assert_eq!(
        decode_err(V311, Side::Client, &fix_len(&hex("30 00 00 00"))),
        ErrorKind::TopicNameInvalid(TopicError::Empty)
    );
    assert_eq!(
        decode_err(V5, Side::Client, &fix_len(&hex("30 00 00 00 00"))),
        protocol(ProtocolError::EmptyTopicWithoutAlias)
    );
    assert_eq!(
        decode_err(
            V5,
            Side::Client,
            &fix_len(&hex("30 00 00 01 74 03 23 00 00"))
        ),
        ErrorKind::TopicAliasZero
    );
    assert_eq!(
        decode_err(
            V5,
            Side::Client,
            &fix_len(&hex("30 00 00 01 74 0a 02 00 00 00 01 02 00 00 00 01"))
        ),
        protocol(ProtocolError::DuplicateProperty(0x02))
    );
    assert_eq!(
        decode_err(V5, Side::Client, &fix_len(&hex("30 00 00 01 74 02 01 02"))),
        protocol(ProtocolError::InvalidPropertyValue(0x01))
    );
    assert_eq!(
        decode_err(
            V5,
            Side::Client,
            &fix_len(&hex("30 00 00 01 74 04 08 00 01 2b"))
        ),
        protocol(ProtocolError::InvalidPropertyValue(0x08))
    );
    assert_eq!(
        decode_err(V5, Side::Server, &fix_len(&hex("30 00 00 01 74 02 0b 00"))),
        protocol(ProtocolError::InvalidPropertyValue(0x0b))
    );
    assert_eq!(
        decode_err(
            V5,
            Side::Client,
            &fix_len(&hex("30 00 00 01 74 05 11 00 00 00 00"))
        ),
        malformed(Malformed::PropertyNotAllowed(0x11))
    );
    assert_eq!(
        decode_err(V5, Side::Client, &fix_len(&hex("30 00 00 01 74 02 7f 00"))),
        malformed(Malformed::PropertyNotAllowed(0x7f))
    );
    // Two user properties with the same name are allowed.
    let bytes = hex("30 13 00 01 74 0e 26 00 01 6b 00 01 31 26 00 01 6b 00 01 32 78");
    let Ok(Some((_, Packet::Publish(p)))) = decoder(V5, Side::Client).decode(&bytes) else {
        panic!("not a PUBLISH");
    };
    assert_eq!(
        p.properties.user_properties().collect::<Vec<_>>(),
        [("k", "1"), ("k", "2")]
    );
    assert_eq!(p.payload, b"x");
}

#[test]
fn subscribe_errors() {
    for version in [V311, V5] {
        let props = if version == V5 { "00" } else { "" };
        let sub = |payload: &str| fix_len(&hex(&format!("82 00 00 01 {props} {payload}")));
        assert_eq!(
            decode_err(version, Side::Client, &sub("")),
            protocol(ProtocolError::NoTopicFilters)
        );
        assert_eq!(
            decode_err(version, Side::Client, &sub("00 05 61 2f 23 2f 62 00")),
            ErrorKind::TopicFilterInvalid(TopicError::MultiLevelWildcardMisplaced)
        );
        assert_eq!(
            decode_err(version, Side::Client, &sub("00 02 61 2b 00")),
            ErrorKind::TopicFilterInvalid(TopicError::SingleLevelWildcardMisplaced)
        );
        assert_eq!(
            decode_err(version, Side::Client, &sub("00 00 00")),
            ErrorKind::TopicFilterInvalid(TopicError::Empty)
        );
        assert_eq!(
            decode_err(version, Side::Client, &sub("00 01 23 80")),
            malformed(Malformed::SubscriptionOptionsReserved)
        );
        assert_eq!(
            decode_err(version, Side::Client, &sub("00 01 23")),
            malformed(Malformed::Truncated)
        );
        let unsub = |payload: &str| fix_len(&hex(&format!("a2 00 00 01 {props} {payload}")));
        assert_eq!(
            decode_err(version, Side::Client, &unsub("")),
            protocol(ProtocolError::NoTopicFilters)
        );
        assert_eq!(
            decode_err(version, Side::Client, &unsub("00 02 23 23")),
            ErrorKind::TopicFilterInvalid(TopicError::MultiLevelWildcardMisplaced)
        );
    }
    let sub = |version, payload: &str| {
        let props = if version == V5 { "00" } else { "" };
        decode_err(
            version,
            Side::Client,
            &fix_len(&hex(&format!("82 00 00 01 {props} {payload}"))),
        )
    };
    // 3.1.1: every bit above the QoS is reserved; QoS 3 is malformed.
    assert_eq!(
        sub(V311, "00 01 23 04"),
        malformed(Malformed::SubscriptionOptionsReserved)
    );
    assert_eq!(sub(V311, "00 01 23 03"), malformed(Malformed::QoS3));
    // 5: QoS 3 and retain handling 3 are protocol errors; bits 6 and 7 are reserved.
    assert_eq!(
        sub(V5, "00 01 23 03"),
        protocol(ProtocolError::SubscriptionQoS3)
    );
    assert_eq!(
        sub(V5, "00 01 23 30"),
        protocol(ProtocolError::RetainHandling3)
    );
    assert_eq!(
        sub(V5, "00 01 23 40"),
        malformed(Malformed::SubscriptionOptionsReserved)
    );
    // Shared subscriptions (MQTT 5): no No Local, a valid share name.
    assert_eq!(
        sub(V5, "00 0a 24 73 68 61 72 65 2f 67 2f 61 04"),
        protocol(ProtocolError::NoLocalOnSharedSubscription)
    );
    assert_eq!(
        sub(V5, "00 0a 24 73 68 61 72 65 2f 2b 2f 61 00"),
        ErrorKind::TopicFilterInvalid(TopicError::ShareNameInvalid)
    );
    assert_eq!(
        sub(V5, "00 08 24 73 68 61 72 65 2f 67 00"),
        ErrorKind::TopicFilterInvalid(TopicError::SharedFilterMissing)
    );
    // In 3.1.1 `$share/...` is an ordinary filter.
    let bytes = hex("82 11 00 01 00 0a 24 73 68 61 72 65 2f 2b 2f 61 00 00 00 00");
    assert!(decoder(V311, Side::Client)
        .decode(&fix_len(&bytes))
        .is_err());
    let bytes = fix_len(&hex("82 00 00 01 00 0a 24 73 68 61 72 65 2f 2b 2f 61 00"));
    assert!(matches!(
        decoder(V311, Side::Client).decode(&bytes),
        Ok(Some((_, Packet::Subscribe(_))))
    ));
    // SUBSCRIBE properties: one subscription identifier, not 0.
    assert_eq!(
        client_err(V5, "82 0a 00 01 04 0b 01 0b 02 00 01 23 00"),
        protocol(ProtocolError::DuplicateProperty(0x0b))
    );
    assert_eq!(
        client_err(V5, "82 08 00 01 02 0b 00 00 01 23 00"),
        protocol(ProtocolError::InvalidPropertyValue(0x0b))
    );
    assert_eq!(
        client_err(V5, "82 0b 00 01 05 0b ff ff ff ff 00 01 23 00"),
        malformed(Malformed::VariableByteIntegerTooLong)
    );
    // UNSUBSCRIBE allows only user properties.
    assert_eq!(
        client_err(V5, "a2 08 00 01 02 0b 01 00 01 23"),
        malformed(Malformed::PropertyNotAllowed(0x0b))
    );
}

#[test]
fn reason_code_errors() {
    let invalid = |code| malformed(Malformed::InvalidReasonCode(code));
    assert_eq!(client_err(V5, "40 03 00 01 05"), invalid(5));
    assert_eq!(client_err(V5, "50 03 00 01 92"), invalid(0x92));
    assert_eq!(client_err(V5, "62 03 00 01 10"), invalid(0x10));
    assert_eq!(client_err(V5, "70 03 00 01 80"), invalid(0x80));
    assert_eq!(client_err(V5, "e0 01 01"), invalid(1));
    assert_eq!(client_err(V5, "f0 02 01 00"), invalid(1));
    assert_eq!(server_err(V5, "20 03 00 01 00"), invalid(1));
    assert_eq!(server_err(V311, "20 02 00 06"), invalid(6));
    assert_eq!(server_err(V5, "90 04 00 01 00 03"), invalid(3));
    assert_eq!(server_err(V311, "90 03 00 01 03"), invalid(3));
    assert_eq!(server_err(V311, "90 03 00 01 8f"), invalid(0x8f));
    assert_eq!(server_err(V5, "b0 04 00 01 00 01"), invalid(1));
    assert_eq!(
        server_err(V5, "90 03 00 01 00"),
        protocol(ProtocolError::NoTopicFilters)
    );
    assert_eq!(
        server_err(V5, "b0 03 00 01 00"),
        protocol(ProtocolError::NoTopicFilters)
    );
    assert_eq!(
        server_err(V5, "20 03 01 80 00"),
        protocol(ProtocolError::SessionPresentWithFailure)
    );
    assert_eq!(
        server_err(V311, "20 02 03 00"),
        malformed(Malformed::ConnAckFlags)
    );
    assert_eq!(
        server_err(V5, "20 05 00 00 02 24 02"),
        protocol(ProtocolError::InvalidPropertyValue(0x24))
    );
}

#[test]
fn packets_from_the_wrong_side() {
    for version in [V311, V5] {
        for bytes in ["20 02 00 00", "90 03 00 01 00", "b0 02 00 01", "d0 00"] {
            let kind = client_err(version, bytes);
            assert!(
                matches!(
                    kind,
                    ErrorKind::Protocol(ProtocolError::UnexpectedPacket(_))
                ),
                "{bytes}: {kind:?}"
            );
        }
        for bytes in ["10 00", "82 00", "a2 00", "c0 00"] {
            let kind = server_err(version, bytes);
            assert!(
                matches!(
                    kind,
                    ErrorKind::Protocol(ProtocolError::UnexpectedPacket(_))
                ),
                "{bytes}: {kind:?}"
            );
        }
    }
}

#[test]
fn auth_needs_a_method() {
    assert_eq!(
        client_err(V5, "f0 00"),
        protocol(ProtocolError::AuthenticationMethodMissing)
    );
    assert_eq!(
        client_err(V5, "f0 01 18"),
        protocol(ProtocolError::AuthenticationMethodMissing)
    );
    assert_eq!(
        client_err(V5, "f0 06 18 04 16 00 01 00"),
        protocol(ProtocolError::AuthenticationMethodMissing)
    );
    let mut out = Vec::new();
    assert_eq!(
        encode(
            &Packet::Auth(Auth {
                code: 0,
                properties: Properties::EMPTY
            }),
            V5,
            &mut out
        ),
        Err(EncodeError::Invalid(protocol(
            ProtocolError::AuthenticationMethodMissing
        )))
    );
    let props = [Property::AuthenticationMethod("m")];
    assert_eq!(
        encode(
            &Packet::Auth(Auth {
                code: 0,
                properties: Properties::new(&props)
            }),
            V311,
            &mut out
        ),
        Err(EncodeError::NotInVersion(PacketType::Auth))
    );
    assert!(out.is_empty());
}

#[test]
fn error_actions() {
    let err = |kind, version| DecodeError { kind, version };
    assert_eq!(
        err(malformed(Malformed::Truncated), V5).action(),
        ErrorAction::Disconnect(0x81)
    );
    assert_eq!(
        err(protocol(ProtocolError::ZeroPacketId), V5).action(),
        ErrorAction::Disconnect(0x82)
    );
    assert_eq!(
        err(ErrorKind::TopicNameInvalid(TopicError::Wildcard), V5).action(),
        ErrorAction::Disconnect(0x90)
    );
    assert_eq!(
        err(ErrorKind::TopicFilterInvalid(TopicError::Empty), V5).action(),
        ErrorAction::Disconnect(0x8f)
    );
    assert_eq!(
        err(ErrorKind::TopicAliasZero, V5).action(),
        ErrorAction::Disconnect(0x94)
    );
    for kind in [
        malformed(Malformed::Truncated),
        protocol(ProtocolError::ZeroPacketId),
        ErrorKind::PacketTooLarge { size: 2, max: 1 },
        ErrorKind::TopicAliasZero,
    ] {
        assert_eq!(err(kind, V311).action(), ErrorAction::Close);
    }
    for version in [V311, V5] {
        assert_eq!(
            err(
                ErrorKind::UnsupportedProtocolVersion {
                    level: 3,
                    mqisdp: false
                },
                version
            )
            .action(),
            ErrorAction::ConnAck {
                version: V311,
                code: 1
            }
        );
        assert_eq!(
            err(
                ErrorKind::UnsupportedProtocolVersion {
                    level: 6,
                    mqisdp: false
                },
                version
            )
            .action(),
            ErrorAction::ConnAck {
                version: V5,
                code: 0x84
            }
        );
        // A bridge's 3.1.1 level (0x84) gets the 3.1.1 format, an MQTT 5 bridge's (0x85) the MQTT 5 one.
        assert_eq!(
            err(
                ErrorKind::UnsupportedProtocolVersion {
                    level: 0x84,
                    mqisdp: false
                },
                version
            )
            .action(),
            ErrorAction::ConnAck {
                version: V311,
                code: 1
            }
        );
        assert_eq!(
            err(
                ErrorKind::UnsupportedProtocolVersion {
                    level: 0x85,
                    mqisdp: false
                },
                version
            )
            .action(),
            ErrorAction::ConnAck {
                version: V5,
                code: 0x84
            }
        );
        assert_eq!(
            err(ErrorKind::UnknownProtocolName, version).action(),
            ErrorAction::Close
        );
    }
    // The CONNACKs those actions name encode as the spec's examples.
    let mut out = Vec::new();
    let connack = |code| {
        Packet::ConnAck(ConnAck {
            session_present: false,
            code,
            properties: Properties::EMPTY,
        })
    };
    encode(&connack(1), V311, &mut out).expect("3.1.1 CONNACK");
    encode(&connack(0x84), V5, &mut out).expect("5 CONNACK");
    assert_eq!(out, hex("20 02 00 01 | 20 03 00 84 00"));
    assert!(!err(ErrorKind::TopicAliasZero, V5).to_string().is_empty());
}

#[test]
fn encoder_refuses_what_would_not_decode() {
    let mut out = Vec::new();
    let mut enc = |packet: Packet<'_>, version| {
        let result = encode(&packet, version, &mut out);
        assert!(out.is_empty(), "{packet:?} wrote something");
        result
    };
    let invalid = |kind| Err(EncodeError::Invalid(kind));
    assert_eq!(
        enc(Packet::PubAck(Ack::success(0)), V5),
        invalid(protocol(ProtocolError::ZeroPacketId))
    );
    assert_eq!(
        enc(
            Packet::Publish(publish(QoS::AtLeastOnce, "t", 0, b"")),
            V311
        ),
        invalid(protocol(ProtocolError::ZeroPacketId))
    );
    assert_eq!(
        enc(Packet::Publish(publish(QoS::AtMostOnce, "a/+", 0, b"")), V5),
        invalid(ErrorKind::TopicNameInvalid(TopicError::Wildcard))
    );
    assert_eq!(
        enc(Packet::Publish(publish(QoS::AtMostOnce, "", 0, b"")), V5),
        invalid(protocol(ProtocolError::EmptyTopicWithoutAlias))
    );
    assert_eq!(
        enc(Packet::Publish(publish(QoS::AtMostOnce, "a\0", 0, b"")), V5),
        invalid(ErrorKind::TopicNameInvalid(TopicError::NullCharacter))
    );
    assert_eq!(
        enc(
            Packet::Publish(Publish {
                dup: true,
                ..publish(QoS::AtMostOnce, "t", 0, b"")
            }),
            V5
        ),
        invalid(malformed(Malformed::DupWithQoS0))
    );
    let dup = [Property::TopicAlias(1), Property::TopicAlias(2)];
    assert_eq!(
        enc(
            Packet::Publish(Publish {
                properties: Properties::new(&dup),
                ..publish(QoS::AtMostOnce, "t", 0, b"")
            }),
            V5
        ),
        invalid(protocol(ProtocolError::DuplicateProperty(0x23)))
    );
    let wrong = [Property::SessionExpiryInterval(1)];
    assert_eq!(
        enc(
            Packet::PubAck(Ack {
                packet_id: 1,
                code: 0,
                properties: Properties::new(&wrong)
            }),
            V5
        ),
        invalid(malformed(Malformed::PropertyNotAllowed(0x11)))
    );
    let nul = [Property::ReasonString("a\0")];
    assert_eq!(
        enc(
            Packet::Disconnect(Disconnect {
                code: 0,
                properties: Properties::new(&nul)
            }),
            V5
        ),
        invalid(malformed(Malformed::NullCharacter))
    );
    assert_eq!(
        enc(
            Packet::SubAck(SubAck {
                packet_id: 1,
                properties: Properties::EMPTY,
                codes: &[0x8f]
            }),
            V311
        ),
        invalid(malformed(Malformed::InvalidReasonCode(0x8f)))
    );
    assert_eq!(
        enc(
            Packet::SubAck(SubAck {
                packet_id: 1,
                properties: Properties::EMPTY,
                codes: &[]
            }),
            V5
        ),
        invalid(protocol(ProtocolError::NoTopicFilters))
    );
    assert_eq!(
        enc(
            Packet::ConnAck(ConnAck {
                session_present: false,
                code: 0x87,
                properties: Properties::EMPTY
            }),
            V311
        ),
        invalid(malformed(Malformed::InvalidReasonCode(0x87)))
    );
    assert_eq!(
        enc(Packet::Disconnect(Disconnect::with_code(0x01)), V5),
        invalid(malformed(Malformed::InvalidReasonCode(1)))
    );
    let long = "x".repeat(65_536);
    assert_eq!(
        enc(Packet::Publish(publish(QoS::AtMostOnce, &long, 0, b"")), V5),
        invalid(ErrorKind::TopicNameInvalid(TopicError::TooLong {
            len: 65_536
        }))
    );
    let long_value = [Property::UserProperty("k", &long)];
    assert_eq!(
        enc(
            Packet::Disconnect(Disconnect {
                code: 0,
                properties: Properties::new(&long_value)
            }),
            V5
        ),
        Err(EncodeError::FieldTooLong { len: 65_536 })
    );
    let big = vec![0u8; REMAINING_LENGTH_MAX];
    assert_eq!(
        enc(
            Packet::Publish(publish(QoS::AtMostOnce, "t", 0, &big)),
            V311
        ),
        Err(EncodeError::TooLarge {
            remaining_length: REMAINING_LENGTH_MAX + 3
        })
    );
    assert_eq!(
        encoded_len(
            &Packet::Publish(publish(QoS::AtMostOnce, "t", 0, &big[3..])),
            V311
        ),
        Ok(PACKET_SIZE_MAX)
    );
}

// -------------------------------------------------------------------------------------------------------------
// Property tests

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Strings and byte strings for generated packets are leaked: a `Packet` borrows them, and a proptest
    /// strategy can only yield owned values. A few KiB per case.
    fn leak_str(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    fn leak_bytes(b: Vec<u8>) -> &'static [u8] {
        Box::leak(b.into_boxed_slice())
    }

    fn text() -> impl Strategy<Value = &'static str> {
        "[a-zA-Z0-9 é€😀\u{1}\u{7f}]{0,12}".prop_map(leak_str)
    }

    fn bytes() -> impl Strategy<Value = &'static [u8]> {
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(leak_bytes)
    }

    fn topic_name() -> impl Strategy<Value = &'static str> {
        "[a-z$/ é]{1,12}".prop_map(leak_str)
    }

    fn topic_filter() -> impl Strategy<Value = &'static str> {
        proptest::collection::vec(prop_oneof![Just("+".to_owned()), "[a-z]{0,4}"], 1..5)
            .prop_flat_map(|levels| {
                (Just(levels), any::<bool>()).prop_map(|(mut levels, multi)| {
                    if multi {
                        levels.push("#".to_owned());
                    }
                    let filter = levels.join("/");
                    leak_str(if filter.is_empty() {
                        "e".to_owned()
                    } else {
                        filter
                    })
                })
            })
    }

    fn qos() -> impl Strategy<Value = QoS> {
        prop_oneof![
            Just(QoS::AtMostOnce),
            Just(QoS::AtLeastOnce),
            Just(QoS::ExactlyOnce)
        ]
    }

    fn property() -> impl Strategy<Value = Property<'static>> {
        prop_oneof![
            any::<bool>().prop_map(Property::PayloadFormatIndicator),
            any::<u32>().prop_map(Property::MessageExpiryInterval),
            text().prop_map(Property::ContentType),
            topic_name().prop_map(Property::ResponseTopic),
            bytes().prop_map(Property::CorrelationData),
            (1..=SUBSCRIPTION_IDENTIFIER_MAX).prop_map(Property::SubscriptionIdentifier),
            any::<u32>().prop_map(Property::SessionExpiryInterval),
            text().prop_map(Property::AssignedClientIdentifier),
            any::<u16>().prop_map(Property::ServerKeepAlive),
            text().prop_map(Property::AuthenticationMethod),
            bytes().prop_map(Property::AuthenticationData),
            any::<bool>().prop_map(Property::RequestProblemInformation),
            any::<u32>().prop_map(Property::WillDelayInterval),
            any::<bool>().prop_map(Property::RequestResponseInformation),
            text().prop_map(Property::ResponseInformation),
            text().prop_map(Property::ServerReference),
            text().prop_map(Property::ReasonString),
            (1..=u16::MAX).prop_map(Property::ReceiveMaximum),
            any::<u16>().prop_map(Property::TopicAliasMaximum),
            (1..=u16::MAX).prop_map(Property::TopicAlias),
            prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]
                .prop_map(Property::MaximumQoS),
            any::<bool>().prop_map(Property::RetainAvailable),
            (text(), text()).prop_map(|(k, v)| Property::UserProperty(k, v)),
            (1..=u32::MAX).prop_map(Property::MaximumPacketSize),
            any::<bool>().prop_map(Property::WildcardSubscriptionAvailable),
            any::<bool>().prop_map(Property::SubscriptionIdentifierAvailable),
            any::<bool>().prop_map(Property::SharedSubscriptionAvailable),
        ]
    }

    /// Valid properties for `context`: the allowed ones, each non-repeatable one once, authentication data only
    /// with a method; empty in 3.1.1.
    fn properties(
        version: Version,
        context: PropertyContext,
    ) -> impl Strategy<Value = Properties<'static>> {
        proptest::collection::vec(property(), 0..8).prop_map(move |list| {
            if version == V311 {
                return Properties::EMPTY;
            }
            let mut seen = 0u64;
            let mut kept: Vec<Property<'static>> = Vec::new();
            for p in list {
                let bit = 1u64 << p.id();
                if context.allowed() & bit == 0
                    || (seen & bit != 0 && context.repeatable() & bit == 0)
                {
                    continue;
                }
                seen |= bit;
                kept.push(p);
            }
            let method = 1u64 << property_id::AUTHENTICATION_METHOD;
            let data = 1u64 << property_id::AUTHENTICATION_DATA;
            if context == PropertyContext::Auth && seen & method == 0 {
                kept.push(Property::AuthenticationMethod("m"));
            } else if seen & data != 0 && seen & method == 0 {
                kept.retain(|p| p.id() != property_id::AUTHENTICATION_DATA);
            }
            Properties::new(Box::leak(kept.into_boxed_slice()))
        })
    }

    fn valid_code(packet_type: PacketType, version: Version) -> impl Strategy<Value = u8> {
        let codes: Vec<u8> = (0..=255u8)
            .filter(|&c| reason::is_valid(packet_type, version, c))
            .collect();
        prop::sample::select(codes)
    }

    fn options(version: Version) -> impl Strategy<Value = SubscriptionOptions> {
        (qos(), any::<bool>(), any::<bool>(), 0..3u8).prop_map(move |(qos, nl, rap, rh)| {
            if version == V311 {
                return SubscriptionOptions::qos(qos);
            }
            SubscriptionOptions {
                qos,
                no_local: nl,
                retain_as_published: rap,
                retain_handling: match rh {
                    0 => RetainHandling::OnSubscribe,
                    1 => RetainHandling::OnNewSubscribe,
                    _ => RetainHandling::Never,
                },
            }
        })
    }

    fn ack(version: Version, packet_type: PacketType) -> impl Strategy<Value = Ack<'static>> {
        (
            1..=u16::MAX,
            valid_code(packet_type, version),
            properties(version, PropertyContext::Ack),
        )
            .prop_map(move |(packet_id, code, properties)| Ack {
                packet_id,
                code: if version == V311 { 0 } else { code },
                properties,
            })
    }

    pub(super) fn publish_packet(version: Version) -> impl Strategy<Value = Publish<'static>> {
        (
            (any::<bool>(), qos(), any::<bool>()),
            topic_name(),
            1..=u16::MAX,
            properties(version, PropertyContext::Publish),
            bytes(),
        )
            .prop_map(
                |((dup, qos, retain), topic, id, properties, payload)| Publish {
                    dup: dup && qos != QoS::AtMostOnce,
                    qos,
                    retain,
                    topic,
                    packet_id: if qos == QoS::AtMostOnce { 0 } else { id },
                    properties,
                    payload,
                },
            )
    }

    /// Packets the router sends.
    fn router_packet(version: Version) -> BoxedStrategy<Packet<'static>> {
        let mut choices = vec![
            (
                any::<bool>(),
                valid_code(PacketType::ConnAck, version),
                properties(version, PropertyContext::ConnAck),
            )
                .prop_map(|(sp, code, properties)| {
                    Packet::ConnAck(ConnAck {
                        session_present: sp && code == 0,
                        code,
                        properties,
                    })
                })
                .boxed(),
            publish_packet(version).prop_map(Packet::Publish).boxed(),
            ack(version, PacketType::PubAck)
                .prop_map(Packet::PubAck)
                .boxed(),
            ack(version, PacketType::PubRec)
                .prop_map(Packet::PubRec)
                .boxed(),
            ack(version, PacketType::PubRel)
                .prop_map(Packet::PubRel)
                .boxed(),
            ack(version, PacketType::PubComp)
                .prop_map(Packet::PubComp)
                .boxed(),
            (
                1..=u16::MAX,
                properties(version, PropertyContext::SubAck),
                proptest::collection::vec(valid_code(PacketType::SubAck, version), 1..5),
            )
                .prop_map(|(packet_id, properties, codes)| {
                    Packet::SubAck(SubAck {
                        packet_id,
                        properties,
                        codes: leak_bytes(codes),
                    })
                })
                .boxed(),
            (
                1..=u16::MAX,
                properties(version, PropertyContext::UnsubAck),
                proptest::collection::vec(valid_code(PacketType::UnsubAck, version), 1..5),
            )
                .prop_map(move |(packet_id, properties, codes)| {
                    Packet::UnsubAck(UnsubAck {
                        packet_id,
                        properties,
                        codes: if version == V311 {
                            &[]
                        } else {
                            leak_bytes(codes)
                        },
                    })
                })
                .boxed(),
            Just(Packet::PingResp).boxed(),
        ];
        if version == V5 {
            choices.push(
                (
                    valid_code(PacketType::Disconnect, V5),
                    properties(V5, PropertyContext::Disconnect),
                )
                    .prop_map(|(code, properties)| {
                        Packet::Disconnect(Disconnect { code, properties })
                    })
                    .boxed(),
            );
            choices.push(
                (
                    valid_code(PacketType::Auth, V5),
                    properties(V5, PropertyContext::Auth),
                )
                    .prop_map(|(code, properties)| Packet::Auth(Auth { code, properties }))
                    .boxed(),
            );
        }
        prop::strategy::Union::new(choices).boxed()
    }

    /// Packets clients send.
    fn client_packet(version: Version) -> BoxedStrategy<Packet<'static>> {
        let will = (
            qos(),
            any::<bool>(),
            properties(version, PropertyContext::Will),
            topic_name(),
            bytes(),
        )
            .prop_map(|(qos, retain, properties, topic, payload)| Will {
                qos,
                retain,
                properties,
                topic,
                payload,
            });
        let mut choices = vec![
            (
                any::<bool>(),
                any::<u16>(),
                properties(version, PropertyContext::Connect),
                text(),
                proptest::option::of(will),
                proptest::option::of(text()),
                proptest::option::of(bytes()),
            )
                .prop_map(
                    move |(
                        clean_start,
                        keep_alive,
                        properties,
                        client_id,
                        will,
                        username,
                        password,
                    )| {
                        Packet::Connect(Connect {
                            version,
                            clean_start,
                            keep_alive,
                            properties,
                            client_id,
                            will,
                            username,
                            password: if version == V311 && username.is_none() {
                                None
                            } else {
                                password
                            },
                        })
                    },
                )
                .boxed(),
            publish_packet(version)
                .prop_map(|p| {
                    // Clients send no subscription identifiers.
                    let ids = p.properties.subscription_identifiers().count();
                    if ids == 0 {
                        Packet::Publish(p)
                    } else {
                        Packet::Publish(Publish {
                            properties: Properties::EMPTY,
                            ..p
                        })
                    }
                })
                .boxed(),
            ack(version, PacketType::PubAck)
                .prop_map(Packet::PubAck)
                .boxed(),
            ack(version, PacketType::PubRel)
                .prop_map(Packet::PubRel)
                .boxed(),
            (
                1..=u16::MAX,
                properties(version, PropertyContext::Subscribe),
                proptest::collection::vec((topic_filter(), options(version)), 1..5),
            )
                .prop_map(|(packet_id, properties, filters)| {
                    Packet::Subscribe(Subscribe {
                        packet_id,
                        properties,
                        filters: Subscriptions::new(Box::leak(filters.into_boxed_slice())),
                    })
                })
                .boxed(),
            (
                1..=u16::MAX,
                properties(version, PropertyContext::Unsubscribe),
                proptest::collection::vec(topic_filter(), 1..5),
            )
                .prop_map(|(packet_id, properties, filters)| {
                    Packet::Unsubscribe(Unsubscribe {
                        packet_id,
                        properties,
                        filters: Filters::new(Box::leak(filters.into_boxed_slice())),
                    })
                })
                .boxed(),
            Just(Packet::PingReq).boxed(),
        ];
        if version == V311 {
            choices.push(Just(Packet::Disconnect(Disconnect::with_code(0))).boxed());
        }
        prop::strategy::Union::new(choices).boxed()
    }

    fn version() -> impl Strategy<Value = Version> {
        prop_oneof![Just(V311), Just(V5)]
    }

    fn packets(from: Side) -> impl Strategy<Value = (Version, Vec<Packet<'static>>)> {
        version().prop_flat_map(move |version| {
            let packet = match from {
                Side::Client => client_packet(version),
                Side::Server => router_packet(version),
            };
            (Just(version), proptest::collection::vec(packet, 1..6))
        })
    }

    /// Decodes packets from `buf[pos..]` until incomplete or an error.
    fn decode_all<'a>(
        d: &Decoder,
        buf: &'a [u8],
        mut pos: usize,
        out: &mut Vec<Packet<'a>>,
    ) -> (usize, Option<DecodeError>) {
        loop {
            match d.decode(&buf[pos..]) {
                Ok(Some((n, p))) => {
                    out.push(p);
                    pos += n;
                }
                Ok(None) => return (pos, None),
                Err(e) => return (pos, Some(e)),
            }
        }
    }

    proptest! {
        /// Every packet the router sends encodes, measures, decodes to itself, and encodes again to the same
        /// bytes; a stream of them decodes the same whatever point it is split at.
        #[test]
        fn router_packets_round_trip(
            (version, list) in packets(Side::Server),
            split in any::<prop::sample::Index>(),
        ) {
            round_trip(version, Side::Server, &list, split)?;
        }

        /// The same for the packets clients send.
        #[test]
        fn client_packets_round_trip(
            (version, list) in packets(Side::Client),
            split in any::<prop::sample::Index>(),
        ) {
            round_trip(version, Side::Client, &list, split)?;
        }

        /// Arbitrary bytes never panic; whatever decodes encodes and decodes to the same packet.
        #[test]
        fn arbitrary_bytes(
            buf in proptest::collection::vec(any::<u8>(), 0..200),
            version in version(),
            client in any::<bool>(),
            max in 0usize..300,
        ) {
            let from = if client { Side::Client } else { Side::Server };
            let d = Decoder { version, from, max_packet_size: max };
            if let Ok(Some((n, packet))) = d.decode(&buf) {
                prop_assert!(n <= buf.len() && n <= max);
                re_encodes(&d, &packet)?;
            }
        }

        /// Valid packets with one octet changed never panic, and round-trip when they still decode.
        #[test]
        fn mutated_packets(
            (version, list) in packets(Side::Client),
            at in any::<prop::sample::Index>(),
            value in any::<u8>(),
        ) {
            let mut buf = Vec::new();
            for p in &list {
                encode(p, version, &mut buf).expect("valid packet encodes");
            }
            let i = at.index(buf.len());
            buf[i] = value;
            let d = decoder(version, Side::Client);
            let mut pos = 0;
            while let Ok(Some((n, packet))) = d.decode(&buf[pos..]) {
                re_encodes(&d, &packet)?;
                pos += n;
            }
        }
    }

    fn re_encodes(d: &Decoder, packet: &Packet<'_>) -> Result<(), TestCaseError> {
        let version = match packet {
            Packet::Connect(c) => c.version,
            _ => d.version,
        };
        let mut out = Vec::new();
        let n = encode(packet, version, &mut out)
            .map_err(|e| TestCaseError::fail(format!("{packet:?} does not re-encode: {e}")))?;
        prop_assert_eq!(n, out.len());
        let again = Decoder {
            max_packet_size: usize::MAX,
            ..*d
        }
        .decode(&out);
        prop_assert_eq!(again, Ok(Some((out.len(), packet.clone()))));
        Ok(())
    }

    fn round_trip(
        version: Version,
        from: Side,
        list: &[Packet<'_>],
        split: prop::sample::Index,
    ) -> Result<(), TestCaseError> {
        let mut stream = Vec::new();
        for p in list {
            let before = stream.len();
            let n = encode(p, version, &mut stream)
                .map_err(|e| TestCaseError::fail(format!("{p:?} does not encode: {e}")))?;
            prop_assert_eq!(n, stream.len() - before);
            prop_assert_eq!(encoded_len(p, version), Ok(n));
            if let Packet::Publish(publish) = p {
                let mut header = Vec::new();
                encode_publish_header(publish, version, &mut header).expect("header encodes");
                prop_assert_eq!(header.len() + publish.payload.len(), n);
                prop_assert_eq!(&stream[before..before + header.len()], &header[..]);
            }
        }
        let d = decoder(version, from);
        let mut whole = Vec::new();
        let end = decode_all(&d, &stream, 0, &mut whole);
        prop_assert_eq!(end, (stream.len(), None));
        prop_assert_eq!(&whole[..], list);
        // Encoding the decoded packets gives the same bytes.
        let mut again = Vec::new();
        for p in &whole {
            encode(p, version, &mut again).expect("decoded packet encodes");
        }
        prop_assert_eq!(&again, &stream);
        // Split: a prefix, then the whole.
        let cut = split.index(stream.len() + 1);
        let mut parts = Vec::new();
        let (pos, error) = decode_all(&d, &stream[..cut], 0, &mut parts);
        prop_assert_eq!(error, None);
        let end = decode_all(&d, &stream, pos, &mut parts);
        prop_assert_eq!(end, (stream.len(), None));
        prop_assert_eq!(&parts[..], list);
        Ok(())
    }
}

/// Every split point of a stream of the hand-written vectors, exhaustively.
#[test]
fn every_split_point_of_a_stream() {
    let stream = hex(
        "30 07 00 03 61 2f 62 68 69 | 3b 07 00 03 61 2f 62 00 0a | 62 02 00 0a |
         82 0c 00 01 00 03 61 2f 2b 01 00 01 23 02 | c0 00 | e0 00",
    );
    let d = decoder(V311, Side::Client);
    let all = |buf: &[u8], mut pos: usize, out: &mut Vec<(usize, String)>| -> usize {
        while let Ok(Some((n, p))) = d.decode(&buf[pos..]) {
            out.push((pos, format!("{p:?}")));
            pos += n;
        }
        pos
    };
    let mut whole = Vec::new();
    assert_eq!(all(&stream, 0, &mut whole), stream.len());
    assert_eq!(whole.len(), 6);
    for cut in 0..=stream.len() {
        let mut parts = Vec::new();
        let pos = all(&stream[..cut], 0, &mut parts);
        assert_eq!(all(&stream, pos, &mut parts), stream.len());
        assert_eq!(parts, whole, "split at {cut}");
    }
}
