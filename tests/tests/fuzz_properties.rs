//! Property tests (proptest, stable Rust) of the fuzz targets' entry points, through the same checks
//! (`fuzz/src/checks.rs`): generated RawSocket streams, MQTT streams and engine workloads, built from valid pieces
//! so that they reach deeper than random bytes do. The codec and framer proptests live in their crates
//! (`codec/tests/properties.rs`, `io/src/rawsocket.rs`, `io/src/websocket.rs`). See docs/FUZZING.md.

use kreisel_codec::Serializer;
use kreisel_io::mqtt::{self, Packet, Properties, Property, QoS, SubscriptionOptions, Version};
use proptest::prelude::*;

#[allow(dead_code)] // Only some of the checks are driven from here.
#[path = "../../fuzz/src/checks.rs"]
mod checks;

/// A RawSocket frame: kind (0..=7, so unknown kinds too), length field and payload.
fn rawsocket_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        0u8..8,
        proptest::collection::vec(any::<u8>(), 0..600),
        any::<bool>(),
    )
        .prop_map(|(kind, payload, honest)| {
            // Mostly a correct length; sometimes a length that does not match what follows.
            let len = if honest {
                payload.len()
            } else {
                payload.len() * 3 + 1
            };
            let len = (len as u32).to_be_bytes();
            let mut frame = vec![kind, len[1], len[2], len[3]];
            frame.extend(payload);
            frame
        })
}

/// The pieces of one MQTT packet: its kind, a topic (valid, or one that some rule refuses), a payload, QoS,
/// packet id, whether it has MQTT 5 properties, and a corruption (0 and 1: none, 2: one octet set to a value, 3:
/// the remaining length lies, 4: truncated).
type MqttPiece = (
    u8,
    &'static str,
    Vec<u8>,
    u8,
    u16,
    bool,
    (u8, prop::sample::Index, u8),
);

fn mqtt_piece() -> impl Strategy<Value = MqttPiece> {
    let topic = prop::sample::select(vec![
        "a/b",
        "sensors/d1/temp",
        "a/+/c",
        "a/#",
        "#",
        "+",
        "$SYS/x",
        "a//b",
        "a.b/c",
        "ü/€",
        "",
    ]);
    (
        0u8..12,
        topic,
        proptest::collection::vec(any::<u8>(), 0..40),
        0u8..3,
        1u16..4,
        any::<bool>(),
        (0u8..5, any::<prop::sample::Index>(), any::<u8>()),
    )
}

const MQTT_PUBLISH_PROPS: &[Property<'static>] = &[
    Property::UserProperty("k", "v"),
    Property::MessageExpiryInterval(60),
    Property::ContentType("json"),
    Property::TopicAlias(1),
];
const MQTT_SERVER_PUBLISH_PROPS: &[Property<'static>] = &[
    Property::SubscriptionIdentifier(3),
    Property::SubscriptionIdentifier(300),
    Property::PayloadFormatIndicator(true),
];
const MQTT_CONNECT_PROPS: &[Property<'static>] = &[
    Property::SessionExpiryInterval(3600),
    Property::ReceiveMaximum(10),
    Property::AuthenticationMethod("m"),
    Property::AuthenticationData(b"d"),
];
const MQTT_REASON: &[Property<'static>] = &[
    Property::ReasonString("why"),
    Property::UserProperty("a", "b"),
];
const MQTT_AUTH: &[Property<'static>] = &[Property::AuthenticationMethod("SCRAM-SHA-1")];

/// Encodes one piece as a packet of `side` (what that side sends) in `version`, then corrupts it. Pieces the
/// encoder refuses (a topic some rule forbids) give no octets.
fn mqtt_packet(version: Version, from_server: bool, piece: &MqttPiece) -> Vec<u8> {
    let (kind, topic, payload, qos, packet_id, with_props, (corruption, at, value)) = piece;
    let qos = QoS::from_bits(*qos).unwrap_or(QoS::AtMostOnce);
    let props = |list: &'static [Property<'static>]| {
        if *with_props {
            Properties::new(list)
        } else {
            Properties::EMPTY
        }
    };
    let ack = |code| mqtt::Ack {
        packet_id: *packet_id,
        code: if version == Version::V5 { code } else { 0 },
        properties: props(MQTT_REASON),
    };
    let filters = [
        (*topic, SubscriptionOptions::qos(qos)),
        ("a/+", SubscriptionOptions::qos(QoS::AtLeastOnce)),
    ];
    let unsub = [*topic, "#"];
    let publish = Packet::Publish(mqtt::Publish {
        dup: qos != QoS::AtMostOnce && kind % 2 == 0,
        qos,
        retain: kind % 3 == 0,
        topic,
        packet_id: if qos == QoS::AtMostOnce {
            0
        } else {
            *packet_id
        },
        properties: props(if from_server {
            MQTT_SERVER_PUBLISH_PROPS
        } else {
            MQTT_PUBLISH_PROPS
        }),
        payload,
    });
    let packet = match (from_server, kind) {
        (_, 0 | 1) => publish,
        (_, 2) => Packet::PubAck(ack(0x10)),
        (_, 3) => Packet::PubRec(ack(0x80)),
        (_, 4) => Packet::PubRel(ack(0)),
        (_, 5) => Packet::PubComp(ack(0x92)),
        (_, 6) if version == Version::V5 => Packet::Auth(mqtt::Auth {
            code: 0x18,
            properties: Properties::new(MQTT_AUTH),
        }),
        (false, 7) => Packet::Connect(mqtt::Connect {
            version,
            clean_start: kind % 2 == 1,
            keep_alive: 30,
            properties: props(MQTT_CONNECT_PROPS),
            client_id: "c1",
            will: Some(mqtt::Will {
                qos,
                retain: true,
                properties: Properties::EMPTY,
                topic,
                payload,
            }),
            username: Some("u"),
            password: Some(b"p"),
        }),
        (false, 8) => Packet::Subscribe(mqtt::Subscribe {
            packet_id: *packet_id,
            properties: Properties::EMPTY,
            filters: mqtt::Subscriptions::new(&filters),
        }),
        (false, 9) => Packet::Unsubscribe(mqtt::Unsubscribe {
            packet_id: *packet_id,
            properties: Properties::EMPTY,
            filters: mqtt::Filters::new(&unsub),
        }),
        (false, 10) => Packet::PingReq,
        (true, 7) => Packet::ConnAck(mqtt::ConnAck {
            session_present: qos == QoS::AtLeastOnce,
            code: 0,
            properties: props(MQTT_REASON),
        }),
        (true, 8) => Packet::SubAck(mqtt::SubAck {
            packet_id: *packet_id,
            properties: props(MQTT_REASON),
            codes: &[0, 1, 2, 0x80],
        }),
        (true, 9) => Packet::UnsubAck(mqtt::UnsubAck {
            packet_id: *packet_id,
            properties: props(MQTT_REASON),
            codes: &[0, 0x11],
        }),
        (true, 10) => Packet::PingResp,
        // A 3.1.1 server sends no DISCONNECT.
        (true, _) if version == Version::V311 => Packet::PingResp,
        _ => Packet::Disconnect(mqtt::Disconnect {
            code: 0,
            properties: props(MQTT_REASON),
        }),
    };
    let mut bytes = Vec::new();
    if mqtt::encode(&packet, version, &mut bytes).is_err() {
        return Vec::new();
    }
    match corruption {
        2 => {
            let i = at.index(bytes.len());
            bytes[i] = *value;
        }
        3 => bytes[1] = bytes[1].wrapping_add(*value % 5).wrapping_sub(2),
        4 => bytes.truncate(at.index(bytes.len())),
        _ => {}
    }
    bytes
}

/// One engine step as JSON: a message a client might send, with small request IDs (so answers, YIELDs and
/// INVOCATION ERRORs hit live requests) and URIs from a small set (so publications and calls find their
/// subscribers and callees), some of them long or deep: at and just past the engine target's URI bounds (96
/// bytes, 8 components), and deep wildcard patterns.
fn engine_message() -> impl Strategy<Value = String> {
    let long = |len: usize| format!("com.{}", "a".repeat(len - 4));
    let uri = prop::sample::select(vec![
        "com.a".to_owned(),
        "com.a.b".to_owned(),
        "com".to_owned(),
        "com..b".to_owned(),
        "com.".to_owned(),
        "x y".to_owned(),
        long(96),
        long(97),
        "com.a.a.a.a.a.a.a".to_owned(),
        "com.a.a.a.a.a.a.a.a".to_owned(),
        ".......".to_owned(),
        "com.......".to_owned(),
    ]);
    let matching = prop::sample::select(vec![
        r#"{}"#,
        r#"{"match":"prefix"}"#,
        r#"{"match":"wildcard"}"#,
    ]);
    let call_options = prop::sample::select(vec![
        r#"{}"#,
        r#"{"timeout":200}"#,
        r#"{"receive_progress":true}"#,
        r#"{"progress":true}"#,
    ]);
    let publish_options = prop::sample::select(vec![
        r#"{}"#,
        r#"{"acknowledge":true,"exclude_me":false}"#,
        r#"{"retain":true}"#,
    ]);
    let mode = prop::sample::select(vec!["skip", "kill", "killnowait", "bogus"]);
    let invoke = prop::sample::select(vec!["single", "roundrobin", "random", "first", "last"]);
    (0u8..12, 1u8..5, uri, matching, call_options, publish_options, mode, invoke).prop_map(
        |(kind, id, uri, matching, call, publish, mode, invoke)| match kind {
            0 => r#"[1,"realm1",{"roles":{"caller":{},"callee":{"features":{"call_canceling":true}}}}]"#.into(),
            1 => format!(r#"[32,{id},{matching},"{uri}"]"#),
            2 => format!(r#"[16,{id},{publish},"{uri}",[{id}],{{"k":"v"}}]"#),
            3 => format!(r#"[48,{id},{call},"{uri}",[1]]"#),
            4 => format!(r#"[64,{id},{{"invoke":"{invoke}"}},"{uri}"]"#),
            5 => format!(r#"[70,{id},{{}},[2]]"#),
            6 => format!(r#"[70,{id},{{"progress":true}},[2]]"#),
            7 => format!(r#"[8,68,{id},{{}},"com.error"]"#),
            8 => format!(r#"[49,{id},{{"mode":"{mode}"}}]"#),
            9 => r#"[6,{},"wamp.close.close_realm"]"#.into(),
            10 => format!(r#"[34,{id},{id}]"#),
            _ => format!(r#"[66,{id},{id}]"#),
        },
    )
}

/// An engine step: the slot, the action (deliver 0, close 2, advance the clock 3, or 4: reload the `secure`
/// realm's principals and roles, which is action 3 with bit 4 set), a reload variant, and the message.
fn engine_step() -> impl Strategy<Value = (u8, u8, u8, String)> {
    (
        0u8..4,
        prop::sample::select(vec![0u8, 0, 0, 0, 0, 0, 2, 3, 4]),
        0u8..4,
        engine_message(),
    )
}

/// Slot 3 joins realm `secure` anonymously (role `g`), so that reloads have a session to rebind.
const HELLO_SECURE: &str =
    r#"[1, "secure", {"roles": {"publisher": {}, "subscriber": {}, "caller": {}, "callee": {}}}]"#;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// RawSocket: handshake plus frames, checked whole and split at an arbitrary point.
    #[test]
    fn rawsocket_streams(
        params in any::<u8>(),
        split in any::<u16>(),
        hello in prop::sample::select(vec![[0x7F, 0xF1, 0, 0], [0x7F, 0x02, 0, 0], [0x7F, 0x13, 0, 1], [0x16, 3, 1, 0]]),
        frames in proptest::collection::vec(rawsocket_frame(), 0..6),
    ) {
        let split = split.to_le_bytes();
        let mut input = vec![params, split[0], split[1]];
        input.extend(hello);
        input.extend(frames.concat());
        checks::rawsocket(&input);
    }

    /// MQTT: a stream of packets of one side and version (some corrupted), decoded whole and split at an
    /// arbitrary point.
    #[test]
    fn mqtt_streams(
        v5 in any::<bool>(),
        from_server in any::<bool>(),
        limit in prop::sample::select(vec![3u8, 4, 5, 6, 7, 7, 7, 7]),
        split in any::<u16>(),
        pieces in proptest::collection::vec(mqtt_piece(), 0..8),
    ) {
        let version = if v5 { Version::V5 } else { Version::V311 };
        let params = u8::from(v5) | u8::from(from_server) << 1 | limit << 2;
        let split = split.to_le_bytes();
        let mut input = vec![params, split[0], split[1]];
        for piece in &pieces {
            input.extend(mqtt_packet(version, from_server, piece));
        }
        // Uncorrupted pieces without a size limit form a stream that decodes to its end (so the check below
        // sees whole packets, not just errors).
        if limit == 7 && pieces.iter().all(|piece| piece.6 .0 < 2) {
            let side = if from_server { mqtt::Side::Server } else { mqtt::Side::Client };
            let decoder = mqtt::Decoder { version, from: side, max_packet_size: mqtt::PACKET_SIZE_MAX };
            let stream = &input[3..];
            let mut pos = 0;
            while let Ok(Some((n, _))) = decoder.decode(&stream[pos..]) {
                pos += n;
            }
            prop_assert_eq!(pos, stream.len());
        }
        checks::mqtt(&input);
    }

    /// Engine: a workload of four sessions (serializer by slot), every session joined with a HELLO first (slots
    /// 0 to 2 to `realm1`, slot 3 to `secure`), with reloads of `secure`'s principals and roles in between.
    #[test]
    fn engine_workloads(steps in proptest::collection::vec(engine_step(), 1..60), shutdown in any::<bool>()) {
        let mut input = Vec::new();
        let mut secure_open = false;
        for (slot, action, variant, json) in steps {
            let ser_bits = slot % 3;
            let ser = Serializer::ALL[usize::from(ser_bits)];
            if !input.is_empty() {
                input.push(checks::CHUNK_SEPARATOR);
            }
            let hello_first = if slot == 3 { 0 } else { 0x80 };
            match action {
                4 => input.push(0x10 | variant << 5 | 3 << 2 | slot),
                _ => input.push(hello_first | ser_bits << 5 | action << 2 | slot),
            }
            match action {
                3 | 4 => input.push(1),
                2 => secure_open &= slot != 3,
                _ => {
                    let json = if slot == 3 && !secure_open {
                        secure_open = true;
                        HELLO_SECURE
                    } else {
                        json.as_str()
                    };
                    let msg = Serializer::Json.decode(json.as_bytes()).expect("valid JSON message");
                    ser.encode(&msg, &mut input);
                }
            }
        }
        input.extend([checks::CHUNK_SEPARATOR, u8::from(shutdown)]);
        checks::engine(&input);
    }
}
