//! Decodes what a real MQTT client sent: byte recordings of paho-mqtt (Python) sessions in MQTT 3.1.1 and MQTT 5
//! (see `io/tests/mqtt-vectors/README.md` for how they were made). Every packet must decode to the values the
//! recording script gave the client, re-encode to exactly the bytes the client sent, and decode the same from
//! every split point of the stream.
//!
//! The other direction: `router-v311.bin` and `router-v5.bin` are what the encoder writes for the router's side
//! of a session; `paho_reads.py` played them to paho-mqtt, which read every packet as the router meant it (see
//! the README). The test here keeps the encoder writing exactly those octets.

use kreisel_io::mqtt::{
    encode, Ack, ConnAck, Decoder, Disconnect, Packet, Properties, Property, Publish, QoS,
    RetainHandling, Side, SubAck, SubscriptionOptions, UnsubAck, Version, PACKET_SIZE_MAX,
};

fn recording(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mqtt-vectors")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every packet of the stream with the octets it took; the stream must decode completely.
fn packets(version: Version, stream: &[u8]) -> Vec<(&[u8], Packet<'_>)> {
    let decoder = Decoder::server(version, PACKET_SIZE_MAX);
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < stream.len() {
        match decoder.decode(&stream[pos..]) {
            Ok(Some((n, packet))) => {
                out.push((&stream[pos..pos + n], packet));
                pos += n;
            }
            other => panic!("at octet {pos}: {other:?}"),
        }
    }
    // Our encoder writes exactly what paho wrote.
    for (bytes, packet) in &out {
        let mut again = Vec::new();
        encode(packet, version, &mut again).expect("decoded packet encodes");
        assert_eq!(&again[..], *bytes, "re-encoding {packet:?}");
    }
    // Every split point gives the same packets.
    for cut in 0..=stream.len() {
        let mut pos = 0;
        let mut n = 0;
        while let Ok(Some((len, packet))) = decoder.decode(&stream[pos..cut]) {
            assert_eq!(packet, out[n].1, "split at {cut}");
            pos += len;
            n += 1;
        }
        while let Ok(Some((len, packet))) = decoder.decode(&stream[pos..]) {
            assert_eq!(packet, out[n].1, "split at {cut}");
            pos += len;
            n += 1;
        }
        assert_eq!((pos, n), (stream.len(), out.len()), "split at {cut}");
    }
    out
}

const PASSWORD: &[u8] = "s3cr\u{e9}t".as_bytes();
const TOPIC: &str = "sensors/d1/temp";

#[test]
fn paho_v311_session() {
    let stream = recording("paho-v311.bin");
    let packets = packets(Version::V311, &stream);
    let kinds: Vec<_> = packets.iter().map(|(_, p)| p).collect();
    let [Packet::Connect(connect), Packet::Subscribe(subscribe), Packet::Publish(p0), Packet::Publish(p1), Packet::Publish(p2), Packet::PubRel(pubrel), Packet::Unsubscribe(unsubscribe), Packet::PingReq, Packet::Disconnect(_)] =
        &kinds[..]
    else {
        panic!("unexpected packet sequence: {kinds:?}");
    };
    assert_eq!(connect.version, Version::V311);
    assert!(!connect.clean_start);
    assert_eq!(connect.keep_alive, 30);
    assert_eq!(connect.client_id, "kreisel-capture");
    let will = connect.will.as_ref().expect("will");
    assert_eq!(
        (will.qos, will.retain, will.topic, will.payload),
        (QoS::AtLeastOnce, true, "devices/d1/status", &b"offline"[..])
    );
    assert_eq!(connect.username, Some("alice"));
    assert_eq!(connect.password, Some(PASSWORD));

    assert_eq!(
        subscribe.filters.iter().collect::<Vec<_>>(),
        [
            ("sensors/+/temp", SubscriptionOptions::qos(QoS::AtLeastOnce)),
            ("alerts/#", SubscriptionOptions::qos(QoS::ExactlyOnce)),
        ]
    );
    assert_eq!(
        (p0.qos, p0.retain, p0.topic),
        (QoS::AtMostOnce, false, TOPIC)
    );
    assert_eq!(p0.payload, br#"{"t":21.5}"#);
    assert_eq!(
        (p1.qos, p1.retain, p1.topic),
        (QoS::AtLeastOnce, true, TOPIC)
    );
    assert_eq!(p1.payload, br#"{"t":21.6}"#);
    assert_eq!((p2.qos, p2.retain), (QoS::ExactlyOnce, false));
    assert_eq!(p2.payload, br#"{"t":21.7}"#);
    assert_eq!(pubrel.packet_id, p2.packet_id);
    assert_ne!(p1.packet_id, p2.packet_id);
    assert_eq!(
        unsubscribe.filters.iter().collect::<Vec<_>>(),
        ["sensors/+/temp", "alerts/#"]
    );
}

#[test]
fn paho_v5_session() {
    let stream = recording("paho-v5.bin");
    let packets = packets(Version::V5, &stream);
    let kinds: Vec<_> = packets.iter().map(|(_, p)| p).collect();
    let [Packet::Connect(connect), Packet::Subscribe(subscribe), Packet::Publish(p0), Packet::Publish(p1), Packet::Publish(p2), Packet::PubRel(pubrel), Packet::Unsubscribe(unsubscribe), Packet::PingReq, Packet::Disconnect(disconnect)] =
        &kinds[..]
    else {
        panic!("unexpected packet sequence: {kinds:?}");
    };
    assert_eq!(connect.version, Version::V5);
    assert!(connect.clean_start);
    assert_eq!(connect.keep_alive, 30);
    assert_eq!(connect.client_id, "kreisel-capture");
    let props = &connect.properties;
    assert_eq!(props.session_expiry_interval(), Some(3600));
    assert_eq!(props.receive_maximum(), Some(20));
    assert_eq!(props.maximum_packet_size(), Some(65536));
    assert_eq!(props.topic_alias_maximum(), Some(8));
    assert_eq!(
        props.user_properties().collect::<Vec<_>>(),
        [("site", "lab"), ("site", "lab2")]
    );
    assert_eq!(props.iter().count(), 6);
    let will = connect.will.as_ref().expect("will");
    assert_eq!(
        (will.qos, will.retain, will.topic, will.payload),
        (QoS::AtLeastOnce, true, "devices/d1/status", &b"offline"[..])
    );
    assert_eq!(will.properties.will_delay_interval(), Some(30));
    assert_eq!(
        will.properties.get(0x03),
        Some(Property::ContentType("text/plain"))
    );
    assert_eq!(
        will.properties.user_properties().collect::<Vec<_>>(),
        [("why", "gone")]
    );
    assert_eq!(will.properties.iter().count(), 3);
    assert_eq!(connect.username, Some("alice"));
    assert_eq!(connect.password, Some(PASSWORD));

    assert_eq!(
        subscribe
            .properties
            .subscription_identifiers()
            .collect::<Vec<_>>(),
        [7]
    );
    assert_eq!(
        subscribe.filters.iter().collect::<Vec<_>>(),
        [
            (
                "sensors/+/temp",
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::OnNewSubscribe,
                }
            ),
            ("alerts/#", SubscriptionOptions::qos(QoS::ExactlyOnce)),
        ]
    );

    assert_eq!((p0.qos, p0.topic), (QoS::AtMostOnce, TOPIC));
    assert_eq!(p0.payload, br#"{"t":21.5}"#);
    let mut props: Vec<_> = p0.properties.iter().collect();
    props.sort_by_key(|p| p.id());
    assert_eq!(
        props,
        [
            Property::PayloadFormatIndicator(true),
            Property::MessageExpiryInterval(60),
            Property::ContentType("application/json"),
            Property::ResponseTopic("replies/d1"),
            Property::CorrelationData(&[1, 2, 3]),
            Property::UserProperty("unit", "C"),
        ]
    );
    assert_eq!((p1.qos, p1.retain), (QoS::AtLeastOnce, true));
    assert!(p1.properties.is_empty());
    assert_eq!(p1.payload, br#"{"t":21.6}"#);
    assert_eq!(p2.qos, QoS::ExactlyOnce);
    assert_eq!(p2.payload, br#"{"t":21.7}"#);
    assert_eq!((pubrel.packet_id, pubrel.code), (p2.packet_id, 0));
    assert_eq!(
        unsubscribe.filters.iter().collect::<Vec<_>>(),
        ["sensors/+/temp", "alerts/#"]
    );
    assert_eq!(disconnect.code, 0);
}

/// A 3.1.1 decoder refuses the MQTT 5 session after its CONNECT (which it reads by its own level): the
/// SUBSCRIBE's property block is not 3.1.1.
#[test]
fn versions_are_not_interchangeable() {
    let stream = recording("paho-v5.bin");
    let decoder = Decoder::server(Version::V311, PACKET_SIZE_MAX);
    let Ok(Some((n, Packet::Connect(connect)))) = decoder.decode(&stream) else {
        panic!("the CONNECT decodes by its own level");
    };
    assert_eq!(connect.version, Version::V5);
    assert!(decoder.decode(&stream[n..]).is_err());
}

/// The router's side of the session `paho_reads.py` plays to paho-mqtt: CONNACK, SUBACK for its SUBSCRIBE
/// (packet id 1, two filters), three PUBLISHes (QoS 0, 1 retained, 2), the PUBREL of the QoS 2 exchange,
/// UNSUBACK (packet id 2), PINGRESP, and in MQTT 5 a DISCONNECT.
fn router_session(version: Version) -> Vec<u8> {
    let v5 = version == Version::V5;
    let props = |list| {
        if v5 {
            Properties::new(list)
        } else {
            Properties::EMPTY
        }
    };
    let connack = [
        Property::ReceiveMaximum(10),
        Property::TopicAliasMaximum(4),
        Property::AssignedClientIdentifier("auto-7f3a"),
        Property::MaximumPacketSize(1 << 20),
        Property::ServerKeepAlive(20),
        Property::RetainAvailable(true),
        Property::UserProperty("server", "kreisel"),
    ];
    let granted = [Property::ReasonString("granted")];
    let first = [
        Property::SubscriptionIdentifier(7),
        Property::UserProperty("unit", "C"),
        Property::ContentType("application/json"),
        Property::PayloadFormatIndicator(true),
        Property::MessageExpiryInterval(30),
        Property::ResponseTopic("replies/x"),
        Property::CorrelationData(&[1, 2]),
    ];
    let second = [Property::SubscriptionIdentifier(7)];
    let third = [Property::SubscriptionIdentifier(8), Property::TopicAlias(1)];
    let bye = [Property::ReasonString("maintenance")];
    let publish = |qos, retain, topic, packet_id, properties, payload| {
        Packet::Publish(Publish {
            dup: false,
            qos,
            retain,
            topic,
            packet_id,
            properties,
            payload,
        })
    };
    let mut packets = vec![
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: 0,
            properties: props(&connack),
        }),
        Packet::SubAck(SubAck {
            packet_id: 1,
            properties: props(&granted),
            codes: &[1, 2],
        }),
        publish(
            QoS::AtMostOnce,
            false,
            "sensors/d1/temp",
            0,
            props(&first),
            &br#"{"t":1}"#[..],
        ),
        publish(
            QoS::AtLeastOnce,
            true,
            "sensors/d2/temp",
            1,
            props(&second),
            &br#"{"t":2}"#[..],
        ),
        publish(
            QoS::ExactlyOnce,
            false,
            "alerts/fire",
            2,
            props(&third),
            &b"!"[..],
        ),
        Packet::PubRel(Ack::success(2)),
        Packet::UnsubAck(UnsubAck {
            packet_id: 2,
            properties: Properties::EMPTY,
            codes: if v5 { &[0, 0x11] } else { &[] },
        }),
        Packet::PingResp,
    ];
    if v5 {
        packets.push(Packet::Disconnect(Disconnect {
            code: 0x8B,
            properties: Properties::new(&bye),
        }));
    }
    let mut out = Vec::new();
    for packet in &packets {
        encode(packet, version, &mut out).expect("router packet encodes");
    }
    out
}

/// The encoder writes exactly the octets paho-mqtt was shown to read (`paho_reads.py`), and they decode back.
/// `KREISEL_WRITE_MQTT_VECTORS=1` writes the files instead (then run `paho_reads.py` again).
#[test]
fn router_packets_are_the_ones_paho_read() {
    for (version, name) in [
        (Version::V311, "router-v311.bin"),
        (Version::V5, "router-v5.bin"),
    ] {
        let bytes = router_session(version);
        if std::env::var_os("KREISEL_WRITE_MQTT_VECTORS").is_some() {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/mqtt-vectors")
                .join(name);
            std::fs::write(&path, &bytes).expect("write vector");
        }
        assert_eq!(bytes, recording(name), "{name}");
        let decoder = Decoder {
            version,
            from: Side::Server,
            max_packet_size: PACKET_SIZE_MAX,
        };
        let mut pos = 0;
        let mut count = 0;
        while pos < bytes.len() {
            let Ok(Some((n, _))) = decoder.decode(&bytes[pos..]) else {
                panic!("{name}: octet {pos} does not decode");
            };
            pos += n;
            count += 1;
        }
        assert_eq!(count, if version == Version::V5 { 9 } else { 8 });
    }
}
