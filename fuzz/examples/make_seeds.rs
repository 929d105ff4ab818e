//! Writes the seed corpora under `fuzz/seeds/<target>/`: valid WAMP messages, RawSocket and WebSocket streams and
//! engine sessions for the mutators to start from. Run from `fuzz/`: `cargo run --example make_seeds`.

use std::fs;
use std::path::Path;

use kreisel_codec::Serializer;
use kreisel_fuzz::checks::CHUNK_SEPARATOR;

/// One message of every type, and some with payloads that exercise the codecs (escapes, binary, floats, nesting).
const MESSAGES: &[(&str, &str)] = &[
    (
        "hello",
        r#"[1,"realm1",{"roles":{"caller":{},"callee":{"features":{"call_canceling":true}},"publisher":{},"subscriber":{}},"authmethods":["anonymous"]}]"#,
    ),
    (
        "welcome",
        r#"[2,9007199254740992,{"realm":"realm1","roles":{"broker":{},"dealer":{}}}]"#,
    ),
    (
        "abort",
        r#"[3,{"message":"no"},"wamp.error.no_such_realm"]"#,
    ),
    ("challenge", r#"[4,"ticket",{}]"#),
    ("authenticate", r#"[5,"secret",{}]"#),
    ("goodbye", r#"[6,{},"wamp.close.close_realm"]"#),
    (
        "error",
        r#"[8,48,7,{},"com.example.error",["a",1,-2,3.5],{"k":null,"t":true,"f":false}]"#,
    ),
    (
        "publish",
        r#"[16,1,{"acknowledge":true,"exclude_me":false},"com.example.topic",[1,"two",{"three":3}],{"x":[]}]"#,
    ),
    ("published", r#"[17,1,2]"#),
    ("subscribe", r#"[32,1,{"match":"prefix"},"com.example"]"#),
    ("subscribed", r#"[33,1,5]"#),
    ("unsubscribe", r#"[34,2,5]"#),
    ("unsubscribed", r#"[35,2]"#),
    (
        "unsubscribed_details",
        r#"[35,2,{"subscription":5,"reason":"wamp.error.gone"}]"#,
    ),
    (
        "event",
        r#"[36,5,6,{"topic":"com.example.topic"},["\u0000AQID"],{"bin":"\u0000/w=="}]"#,
    ),
    (
        "call",
        r#"[48,3,{"timeout":1000,"receive_progress":true},"com.example.add",[1,2]]"#,
    ),
    ("cancel", r#"[49,3,{"mode":"killnowait"}]"#),
    ("result", r#"[50,3,{"progress":false},[3]]"#),
    (
        "register",
        r#"[64,4,{"invoke":"roundrobin","match":"wildcard"},"com..add"]"#,
    ),
    ("registered", r#"[65,4,8]"#),
    ("unregister", r#"[66,5,8]"#),
    ("unregistered", r#"[67,5]"#),
    ("invocation", r#"[68,9,8,{},[1,2],{"a":1.0e-7}]"#),
    ("interrupt", r#"[69,9,{"mode":"kill"}]"#),
    ("yield", r#"[70,9,{},[3],{}]"#),
    (
        "escapes",
        r#"[16,1,{"s":"tab\t nl\n quote\" bs\\ u\u00e9 pair\ud83d\ude00"},"com.\u0065xample",[1.5e300,-0.0,18446744073709551615,-9223372036854775808]]"#,
    ),
    (
        "nested",
        r#"[16,1,{},"t",[[[[[[[[[[[[{"a":[[[[{}]]]]}]]]]]]]]]]]]]"#,
    ),
    ("whitespace", " [ 6 , { } , \"wamp.close.normal\" ] \n"),
];

/// Steps of engine sessions: (slot, JSON message). Slot sessions are opened with a HELLO.
const RPC: &[(u8, &str)] = &[
    (0, r#"[64,1,{},"com.proc"]"#),
    (1, r#"[48,1,{},"com.proc",[1]]"#),
    (0, r#"[70,1,{},[2]]"#),
    (1, r#"[48,2,{"timeout":100},"com.proc",[1]]"#),
    (1, r#"[48,3,{},"com.proc",[1]]"#),
    (1, r#"[49,3,{"mode":"kill"}]"#),
    (0, r#"[8,68,2,{},"com.error",[1]]"#),
    (2, r#"[64,1,{"invoke":"roundrobin"},"com.shared"]"#),
    (3, r#"[64,1,{"invoke":"roundrobin"},"com.shared"]"#),
    (1, r#"[48,4,{},"com.shared"]"#),
    (1, r#"[48,5,{},"com.shared"]"#),
    (0, r#"[66,2,1]"#),
    (1, r#"[6,{},"wamp.close.close_realm"]"#),
];

const PUBSUB: &[(u8, &str)] = &[
    (0, r#"[32,1,{},"com.topic"]"#),
    (0, r#"[32,2,{"match":"prefix"},"com"]"#),
    (2, r#"[32,1,{"match":"wildcard"},"com."]"#),
    (
        1,
        r#"[16,1,{"acknowledge":true},"com.topic",[1,2],{"a":1}]"#,
    ),
    (1, r#"[16,2,{"exclude_me":false},"com.topic"]"#),
    (0, r#"[34,3,1]"#),
    (3, r#"[16,1,{},"com.topic",["\u0000AAEC"]]"#),
    (2, r#"[1,"realm1",{"roles":{"subscriber":{}}}]"#),
];

/// Progressive results and invocations, a kill cancel, a call timeout (slot 2 joins without a HELLO of ours).
const PROGRESSIVE: &[(u8, &str)] = &[
    (0, r#"[64,1,{"match":"prefix"},"com.prog"]"#),
    (
        1,
        r#"[48,1,{"receive_progress":true,"progress":true},"com.prog.x",[1]]"#,
    ),
    (0, r#"[70,1,{"progress":true},["partial"]]"#),
    (1, r#"[48,1,{"progress":false},"com.prog.x",[2]]"#),
    (0, r#"[70,1,{},["done"]]"#),
    (1, r#"[48,2,{"timeout":300},"com.prog.y"]"#),
    (1, r#"[48,3,{},"com.prog.z"]"#),
    (1, r#"[49,3,{"mode":"kill"}]"#),
    (0, r#"[8,68,3,{},"wamp.error.canceled"]"#),
];

/// Retained events and subscriber black/white lists.
const RETAIN: &[(u8, &str)] = &[
    (
        0,
        r#"[16,1,{"retain":true,"acknowledge":true},"com.r.a",[1]]"#,
    ),
    (
        0,
        r#"[16,2,{"retain":true},"com.r.b",["\u0000AAAA"],{"k":"v"}]"#,
    ),
    (
        1,
        r#"[32,1,{"get_retained":true,"match":"prefix"},"com.r"]"#,
    ),
    (2, r#"[32,1,{"match":"wildcard"},"com..a"]"#),
    (
        0,
        r#"[16,3,{"exclude_me":false,"eligible_authrole":["anonymous"],"disclose_me":true},"com.r.a"]"#,
    ),
    (1, r#"[34,2,1]"#),
];

/// Long and deep URIs and patterns around the engine target's bounds (96 bytes, 8 components): deep wildcard
/// patterns that all match one publication, a prefix pattern inside a long component, and URIs just past each
/// bound (refused with `wamp.error.invalid_uri`).
const DEEP_URIS: &[(u8, &str)] = &[
    (0, r#"[32,1,{"match":"wildcard"},"a.a.a.a.a.a.a.a"]"#),
    (0, r#"[32,2,{"match":"wildcard"},"......."]"#),
    (0, r#"[32,3,{"match":"wildcard"},"a.......a"]"#),
    (2, r#"[32,1,{"match":"prefix"},"com.aaaa"]"#),
    (2, r#"[64,2,{"match":"prefix"},"com.aaaaaaaa"]"#),
    (1, r#"[16,1,{"acknowledge":true},"a.a.a.a.a.a.a.a",[1]]"#),
    (1, r#"[16,2,{"acknowledge":true},"a.a.a.a.a.a.a.a.a",[1]]"#),
    (
        1,
        r#"[16,3,{"acknowledge":true},"com.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",[1]]"#,
    ),
    (
        1,
        r#"[48,4,{},"com.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",[1]]"#,
    ),
    (1, r#"[48,5,{},"com.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",[1]]"#),
    (0, r#"[32,4,{"match":"wildcard"},"........"]"#),
];

/// `ser_bits` flag of [`engine_input`]: HELLO to the strict realm (control bit 4).
const STRICT: u8 = 0x10;

fn main() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for (name, json) in MESSAGES {
        write(&seeds.join("json"), name, json.as_bytes());
        write(
            &seeds.join("msgpack"),
            name,
            &transcode(json, Serializer::MsgPack),
        );
        write(
            &seeds.join("cbor"),
            name,
            &transcode(json, Serializer::Cbor),
        );
    }
    write_rawsocket(&seeds.join("rawsocket"));
    write_websocket(&seeds.join("websocket"));
    write_mqtt(&seeds.join("mqtt"));
    let engine = seeds.join("engine");
    for (ser_bits, ser) in [
        (0, Serializer::Json),
        (1, Serializer::MsgPack),
        (2, Serializer::Cbor),
    ] {
        let name = ser.name();
        write(
            &engine,
            &format!("rpc_{name}"),
            &engine_input(RPC, ser_bits, ser, 0),
        );
        write(
            &engine,
            &format!("pubsub_{name}"),
            &engine_input(PUBSUB, ser_bits, ser, 1),
        );
    }
    write(
        &engine,
        "progressive_msgpack",
        &engine_input(PROGRESSIVE, 1, Serializer::MsgPack, 1),
    );
    let mut progressive = engine_input(PROGRESSIVE, 0, Serializer::Json, 0);
    progressive.extend([CHUNK_SEPARATOR, 0b1101, 4]);
    write(&engine, "progressive_timeout", &progressive);
    write(
        &engine,
        "retain_cbor",
        &engine_input(RETAIN, 2, Serializer::Cbor, 0),
    );
    // Bit 4 on the opening chunks: the strict realm.
    write(
        &engine,
        "retain_strict",
        &engine_input(RETAIN, STRICT, Serializer::Json, 1),
    );
    write(
        &engine,
        "deep_uris",
        &engine_input(DEEP_URIS, 1, Serializer::MsgPack, 1),
    );
    let mut timeout = engine_input(RPC, 0, Serializer::Json, 0);
    timeout.extend([CHUNK_SEPARATOR, 0b1100, 5]);
    write(&engine, "rpc_timeout", &timeout);
    let mut violation = engine_input(PUBSUB, 0, Serializer::Json, 0);
    violation.extend([CHUNK_SEPARATOR, 0x11, b'[', b'1']);
    violation.extend([CHUNK_SEPARATOR, 0b1000]);
    write(&engine, "pubsub_violation_close", &violation);
}

/// `mqtt` target parameters: bit 0 MQTT 5, bit 1 sent by the server, bits 2..=4 the packet size limit (7: none).
const MQTT_V5: u8 = 1;
const MQTT_FROM_SERVER: u8 = 2;
const MQTT_UNLIMITED: u8 = 7 << 2;

fn write_mqtt(dir: &Path) {
    use kreisel_io::mqtt::{self, Packet, Properties, Property, QoS, Version};
    // Client sessions recorded from paho-mqtt (io/tests/mqtt-vectors/), split inside the CONNECT.
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../io/tests/mqtt-vectors");
    for (name, file, params) in [
        ("paho_v311_session", "paho-v311.bin", MQTT_UNLIMITED),
        ("paho_v5_session", "paho-v5.bin", MQTT_UNLIMITED | MQTT_V5),
    ] {
        let mut input = vec![params, 37, 0];
        input.extend(fs::read(vectors.join(file)).expect("read the paho recording"));
        write(dir, name, &input);
    }
    // What a router sends, in both versions.
    let connack_props = [
        Property::ReceiveMaximum(20),
        Property::MaximumPacketSize(65_536),
        Property::TopicAliasMaximum(8),
        Property::AssignedClientIdentifier("auto-1"),
    ];
    let publish_props = [
        Property::SubscriptionIdentifier(7),
        Property::TopicAlias(1),
        Property::UserProperty("unit", "C"),
    ];
    let reason = [Property::ReasonString("bye")];
    let auth = [
        Property::AuthenticationMethod("SCRAM-SHA-256"),
        Property::AuthenticationData(b"r=nonce"),
    ];
    for (version, params, name) in [
        (
            Version::V311,
            MQTT_UNLIMITED | MQTT_FROM_SERVER,
            "router_v311",
        ),
        (
            Version::V5,
            MQTT_UNLIMITED | MQTT_FROM_SERVER | MQTT_V5,
            "router_v5",
        ),
    ] {
        let v5 = version == Version::V5;
        let props = |list| {
            if v5 {
                Properties::new(list)
            } else {
                Properties::EMPTY
            }
        };
        let mut packets = vec![
            Packet::ConnAck(mqtt::ConnAck {
                session_present: false,
                code: 0,
                properties: props(&connack_props),
            }),
            Packet::SubAck(mqtt::SubAck {
                packet_id: 1,
                properties: Properties::EMPTY,
                codes: &[0, 1, 0x80],
            }),
            Packet::Publish(mqtt::Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: true,
                topic: "sensors/d1/temp",
                packet_id: 1,
                properties: props(&publish_props),
                payload: br#"{"t":21.5}"#,
            }),
            Packet::PubRel(mqtt::Ack::success(2)),
            Packet::UnsubAck(mqtt::UnsubAck {
                packet_id: 3,
                properties: Properties::EMPTY,
                codes: if v5 { &[0, 0x11] } else { &[] },
            }),
            Packet::PingResp,
        ];
        if v5 {
            packets.push(Packet::Auth(mqtt::Auth {
                code: 0x18,
                properties: Properties::new(&auth),
            }));
            packets.push(Packet::Disconnect(mqtt::Disconnect {
                code: 0x8B,
                properties: Properties::new(&reason),
            }));
        }
        let mut input = vec![params, 11, 0];
        for packet in &packets {
            mqtt::encode(packet, version, &mut input).expect("seed packet encodes");
        }
        write(dir, name, &input);
    }
    // A PUBLISH over a 128-octet limit, refused from its fixed header.
    let mut input = vec![4 << 2 | MQTT_V5, 3, 0, 0x30, 0x90, 0x01];
    input.extend([0u8; 20]);
    write(dir, "too_large", &input);
    // Good packets, then a duplicate property (MQTT 5 protocol error).
    let mut input = vec![MQTT_UNLIMITED | MQTT_V5, 5, 0, 0xC0, 0x00];
    input.extend([
        0x30, 0x0E, 0x00, 0x01, b't', 0x0A, 0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 1,
    ]);
    write(dir, "duplicate_property", &input);
}

fn transcode(json: &str, to: Serializer) -> Vec<u8> {
    let msg = Serializer::Json
        .decode(json.as_bytes())
        .expect("seed message decodes");
    let mut out = Vec::new();
    to.encode(&msg, &mut out);
    out
}

/// Chunks for the `engine` target: every slot is opened with a HELLO (control bit 7) in `ser`; `ser_bits` (0 JSON,
/// 1 MessagePack, 2 CBOR) go to control bits 5..=6, and `STRICT` (bit 4) picks the strict realm.
fn engine_input(steps: &[(u8, &str)], ser_bits: u8, ser: Serializer, last: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (slot, json)) in steps.iter().enumerate() {
        if i > 0 {
            out.push(CHUNK_SEPARATOR);
        }
        // Action 1 (deliver), not 0: `0xC0 | 1` (CBOR, slot 1) would be the chunk separator.
        out.push(0x80 | (ser_bits << 5 & 0x60) | (ser_bits & STRICT) | 0b0100 | slot);
        out.extend(transcode(json, ser));
    }
    out.extend([CHUNK_SEPARATOR, last]);
    out
}

fn write_rawsocket(dir: &Path) {
    // params: exponent 9 (256 KiB), JSON and MessagePack offered; split after 6 octets.
    let mut stream = vec![0x39, 6, 0, 0x7F, 0xF1, 0, 0];
    for json in [MESSAGES[0].1, MESSAGES[7].1] {
        stream.extend(rawsocket_frame(0, json.as_bytes()));
    }
    stream.extend(rawsocket_frame(1, b"ping"));
    stream.extend(rawsocket_frame(2, b"pong"));
    write(dir, "json_session", &stream);
    let mut stream = vec![0x00, 3, 0, 0x7F, 0x22, 0, 0];
    stream.extend(rawsocket_frame(
        0,
        &transcode(MESSAGES[0].1, Serializer::MsgPack),
    ));
    stream.extend([0x00, 0x00, 0x02, 0x01]); // longer than 512: TooLong
    write(dir, "msgpack_too_long", &stream);
    write(
        dir,
        "len_bit_25",
        &[0x0F, 2, 0, 0x7F, 0xF3, 0, 0, 0x08, 0, 0, 0],
    );
}

fn rawsocket_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut frame = vec![kind, len[1], len[2], len[3]];
    frame.extend_from_slice(payload);
    frame
}

fn write_websocket(dir: &Path) {
    let upgrade = "GET /ws?x=1 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
                   Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Sec-WebSocket-Protocol: wamp.2.cbor, wamp.2.json\r\n\r\n";
    // params: message limit 1024, JSON offered, default head limit; split inside the head.
    let mut stream = vec![0b1100_1101, 40, 0];
    stream.extend_from_slice(upgrade.as_bytes());
    stream.extend(ws_frame(true, 0x1, MESSAGES[0].1.as_bytes()));
    stream.extend(ws_frame(false, 0x2, b"frag"));
    stream.extend(ws_frame(true, 0x9, b"ping"));
    stream.extend(ws_frame(false, 0x0, b"ment"));
    stream.extend(ws_frame(true, 0x0, b"ed"));
    stream.extend(ws_frame(true, 0xA, b""));
    stream.extend(ws_frame(true, 0x1, &[b'x'; 300]));
    stream.extend(ws_frame(true, 0x8, b"\x03\xe8bye"));
    write(dir, "upgrade_then_frames", &stream);
    // Frames only, 64 KiB limit, a 16-bit length.
    let mut stream = vec![0b0000_0110, 0, 1];
    stream.extend(ws_frame(true, 0x2, &[0xAB; 200]));
    stream.extend(ws_frame(true, 0x1, "ünïcödé".as_bytes()));
    stream.extend(ws_frame(true, 0x8, b""));
    write(dir, "frames_only", &stream);
    let bad = "POST /ws HTTP/1.0\r\nHost: x\r\n\r\n";
    let mut stream = vec![0b1100_1101, 5, 0];
    stream.extend_from_slice(bad.as_bytes());
    write(dir, "upgrade_rejected", &stream);
}

fn ws_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1, 2, 3, 4];
    let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=65535 => {
            frame.push(0x80 | 126);
            frame.extend((len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend((len as u64).to_be_bytes());
        }
    }
    frame.extend(mask);
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    frame
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    fs::create_dir_all(dir).expect("create seed directory");
    fs::write(dir.join(name), data).expect("write seed");
}
