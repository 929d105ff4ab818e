//! The properties behind kreisel's fuzz targets, one public function per target. Each takes the raw fuzz input,
//! runs kreisel's public API on it and panics when a property fails; it never panics for any other reason, so
//! a panic is always a finding.
//!
//! This file is shared: the libFuzzer targets in `fuzz/fuzz_targets/` call it through the `kreisel_fuzz` crate,
//! and `tests/tests/fuzz_regressions.rs` includes it with `#[path]` to replay committed inputs under
//! `cargo test`. It may therefore use only std, kreisel-codec, kreisel-engine and kreisel-io.
//!
//! The three properties every decoder of untrusted input must have, checked per decoder:
//! * never panic, on any input;
//! * round trip: what decodes, encodes, and the encoding decodes to the same thing;
//! * split: a streaming decoder fed a prefix of the input and then the whole of it yields exactly what it yields
//!   for the whole input at once (the split point comes from the input).

use std::collections::HashMap;

use kreisel_codec::{Dict, Message, RawValue, Serializer, Value};
use kreisel_engine::uri::MatchPolicy;
use kreisel_engine::{
    ConnId, EngineLimits, Peer, RealmConfig, Recipients, Router, RouterConfig, SessionHandle, Sink,
    Stats,
};
use kreisel_io::mqtt;
use kreisel_io::rawsocket::{self, FrameError, FrameKind, HandshakeOutcome};
use kreisel_io::websocket::{self, CloseReason, Event, FrameReader, OpCode, UpgradeConfig};
use kreisel_io::websocket::{UpgradeOutcome, CONTROL_PAYLOAD_MAX};

/// A split point in `0..=len` taken from two input octets.
fn split_point(low: u8, high: u8, len: usize) -> usize {
    usize::from(u16::from_le_bytes([low, high])) % (len + 1)
}

/// The serializers whose bits are set in the low three bits of `bits` (1 JSON, 2 MessagePack, 4 CBOR).
fn serializers(bits: u8) -> Vec<Serializer> {
    Serializer::ALL
        .into_iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, s)| s)
        .collect()
}

// -------------------------------------------------------------------------------------------------------------
// RawSocket

/// What one frame or the end of a run of [`rawsocket::parse_frame`] was.
type RawFrame = (FrameKind, Vec<u8>);

/// Target `rawsocket`. Input: `[params, split_low, split_high, stream...]`; `params` low nibble is the router's
/// length exponent, bits 4..=6 the serializers offered. The first four octets of the stream are the client's
/// handshake, the rest are frames.
pub fn rawsocket(data: &[u8]) {
    let [params, split_low, split_high, stream @ ..] = data else {
        return;
    };
    let exponent = params & 0x0F;
    let offered = serializers(params >> 4);
    let mut hello = [0; 4];
    for (dst, src) in hello.iter_mut().zip(stream) {
        *dst = *src;
    }
    check_handshake(hello, &offered, exponent);
    let stream = stream.get(rawsocket::HEADER_LEN..).unwrap_or_default();

    let max_len = rawsocket::max_len(exponent);
    let mut whole = Vec::new();
    let whole_end = rawsocket_frames(stream, 0, max_len, &mut whole);

    let split = split_point(*split_low, *split_high, stream.len());
    let mut parts = Vec::new();
    let (consumed, error) = rawsocket_frames(&stream[..split], 0, max_len, &mut parts);
    let parts_end = match error {
        Some(_) => (consumed, error),
        None => rawsocket_frames(stream, consumed, max_len, &mut parts),
    };
    assert_eq!(
        (&parts, parts_end),
        (&whole, whole_end),
        "rawsocket: split at {split} differs from the whole"
    );
}

fn check_handshake(hello: [u8; 4], offered: &[Serializer], exponent: u8) {
    let outcome = rawsocket::handle_handshake(hello, offered, exponent);
    let serializer_ok =
        Serializer::from_rawsocket_id(hello[1] & 0x0F).is_some_and(|s| offered.contains(&s));
    let reserved_zero = hello[2] == 0 && hello[3] == 0;
    match outcome {
        HandshakeOutcome::NotRawSocket => assert_ne!(hello[0], rawsocket::MAGIC, "{outcome:?}"),
        HandshakeOutcome::Reject { reply, reason } => {
            assert_eq!(hello[0], rawsocket::MAGIC, "{outcome:?}");
            assert!(
                !serializer_ok || !reserved_zero,
                "{outcome:?} for {hello:?}"
            );
            assert_eq!(reply, rawsocket::reject_reply(reason.code()));
        }
        HandshakeOutcome::Accept {
            serializer,
            peer_max_len,
            reply,
        } => {
            assert!(
                hello[0] == rawsocket::MAGIC && serializer_ok && reserved_zero,
                "{outcome:?} for {hello:?}"
            );
            assert_eq!(serializer.rawsocket_id(), hello[1] & 0x0F);
            assert_eq!(peer_max_len, rawsocket::max_len(hello[1] >> 4));
            let params = (exponent << 4) | serializer.rawsocket_id();
            assert_eq!(reply, [rawsocket::MAGIC, params, 0, 0]);
        }
    }
}

/// Parses frames from `buf[pos..]` until one is incomplete or an error, checking each against
/// [`rawsocket::parse_header`] and [`rawsocket::write_header`]. Returns where it stopped and the error, if any.
fn rawsocket_frames(
    buf: &[u8],
    mut pos: usize,
    max_len: usize,
    frames: &mut Vec<RawFrame>,
) -> (usize, Option<FrameError>) {
    loop {
        let rest = &buf[pos..];
        let header = rawsocket::parse_header(rest, max_len);
        match rawsocket::parse_frame(rest, max_len) {
            Ok(Some(frame)) => {
                let Ok(Some(header)) = header else {
                    panic!("parse_frame found {frame:?}, parse_header says {header:?}");
                };
                assert_eq!(frame.kind, header.kind);
                assert_eq!(frame.payload.start, rawsocket::HEADER_LEN);
                assert_eq!(frame.payload.len(), header.len);
                assert!(header.len <= max_len, "{header:?} exceeds {max_len}");
                // Round trip: the canonical header of this frame is the one that was read.
                let written = rawsocket::write_header(frame.kind, header.len);
                assert_eq!(&written[..], &rest[..rawsocket::HEADER_LEN]);
                frames.push((frame.kind, rest[frame.payload.clone()].to_vec()));
                pos += frame.payload.end;
            }
            Ok(None) => {
                match header {
                    Ok(None) => assert!(rest.len() < rawsocket::HEADER_LEN),
                    Ok(Some(header)) => assert!(rest.len() < rawsocket::HEADER_LEN + header.len),
                    Err(error) => panic!("parse_frame incomplete, parse_header fails: {error:?}"),
                }
                return (pos, None);
            }
            Err(error) => {
                assert_eq!(header, Err(error));
                return (pos, Some(error));
            }
        }
    }
}

// -------------------------------------------------------------------------------------------------------------
// WebSocket

/// An owned [`Event`], with the number of octets its frame took.
#[derive(Clone, Debug, PartialEq, Eq)]
enum WsEvent {
    Message { data: Vec<u8>, text: bool },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close { code: Option<u16>, reason: String },
    Fragment,
}

impl WsEvent {
    fn new(event: &Event<'_>) -> WsEvent {
        match *event {
            Event::Message { data, text } | Event::Compressed { data, text } => WsEvent::Message {
                data: data.to_vec(),
                text,
            },
            Event::Ping(data) => WsEvent::Ping(data.to_vec()),
            Event::Pong(data) => WsEvent::Pong(data.to_vec()),
            Event::Close { code, reason } => WsEvent::Close {
                code,
                reason: reason.to_owned(),
            },
            Event::Fragment => WsEvent::Fragment,
        }
    }
}

/// Message size limits the `websocket` target chooses from.
const MESSAGE_MAX: [usize; 8] = [0, 1, 16, 125, 126, 1024, 65_535, 1 << 20];
/// Request head limits the `websocket` target chooses from.
const HEAD_MAX: [usize; 4] = [16, 128, 1024, websocket::HEAD_MAX_DEFAULT];

/// Target `websocket`. Input: `[params, split_low, split_high, stream...]`. `params` bits 0..=2 pick the message
/// size limit, bits 3..=5 the serializers offered, bits 6..=7 the request head limit. The stream is answered as
/// an upgrade request and read as client frames; when the upgrade is accepted, what follows the head is read as
/// client frames too.
pub fn websocket(data: &[u8]) {
    let [params, split_low, split_high, stream @ ..] = data else {
        return;
    };
    let message_max = MESSAGE_MAX[usize::from(params & 7)];
    let cfg = UpgradeConfig {
        head_max: HEAD_MAX[usize::from(params >> 6)],
        metrics_path: Some("/metrics".into()),
        health: true,
        mqtt: params & 0x20 != 0,
        ..UpgradeConfig::new("/ws", serializers(params >> 3))
    };
    let split = split_point(*split_low, *split_high, stream.len());
    if let Some(consumed) = check_upgrade(stream, &cfg, split) {
        let frames = &stream[consumed..];
        check_frames(frames, message_max, split.saturating_sub(consumed));
    }
    check_frames(stream, message_max, split);
}

/// Checks [`websocket::handle_upgrade`] on `buf` and on `buf[..split]`; returns the length of an accepted head.
fn check_upgrade(buf: &[u8], cfg: &UpgradeConfig, split: usize) -> Option<usize> {
    let whole = websocket::handle_upgrade(buf, cfg);
    let accepted = match &whole {
        UpgradeOutcome::Incomplete => {
            assert!(
                buf.len() <= cfg.head_max,
                "Incomplete beyond the head limit"
            );
            None
        }
        UpgradeOutcome::Accept {
            serializer,
            consumed,
            response,
            ..
        } => {
            assert!(cfg.serializers.contains(serializer), "{whole:?}");
            assert!(
                *consumed <= buf.len() && *consumed <= cfg.head_max,
                "{whole:?}"
            );
            assert!(response.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
            assert!(response.ends_with(b"\r\n\r\n"));
            let protocol = format!(
                "\r\nSec-WebSocket-Protocol: {}\r\n",
                serializer.subprotocol()
            );
            assert!(contains(response, protocol.as_bytes()), "{whole:?}");
            Some(*consumed)
        }
        UpgradeOutcome::Mqtt { consumed, response } => {
            assert!(cfg.mqtt, "{whole:?}");
            assert!(
                *consumed <= buf.len() && *consumed <= cfg.head_max,
                "{whole:?}"
            );
            assert!(response.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
            assert!(contains(response, b"\r\nSec-WebSocket-Protocol: mqtt\r\n"));
            Some(*consumed)
        }
        UpgradeOutcome::Metrics { consumed } => {
            assert!(cfg.metrics_path.is_some(), "{whole:?}");
            assert!(
                *consumed <= buf.len() && *consumed <= cfg.head_max,
                "{whole:?}"
            );
            None
        }
        UpgradeOutcome::Health { consumed, .. } => {
            assert!(cfg.health, "{whole:?}");
            assert!(
                *consumed <= buf.len() && *consumed <= cfg.head_max,
                "{whole:?}"
            );
            None
        }
        UpgradeOutcome::Reject {
            status,
            response,
            reason,
        } => {
            assert!([400, 404, 405, 426, 431, 505].contains(status), "{whole:?}");
            assert!(response.starts_with(format!("HTTP/1.1 {status} ").as_bytes()));
            assert!(response.ends_with(format!("\r\n\r\n{reason}\n").as_bytes()));
            None
        }
    };
    // Whatever a prefix decides (rather than waiting for more) is what the whole decides.
    let part = websocket::handle_upgrade(&buf[..split], cfg);
    if part != UpgradeOutcome::Incomplete {
        assert_eq!(
            part, whole,
            "upgrade: split at {split} differs from the whole"
        );
    }
    accepted
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Reads `stream` whole and split at `split` with [`FrameReader`]: same events, same end. Every event is also
/// re-framed as a client frame and read back (round trip).
fn check_frames(stream: &[u8], message_max: usize, split: usize) {
    let mut reader = FrameReader::new(message_max);
    let mut buf = stream.to_vec();
    let mut whole = Vec::new();
    let whole_end = ws_frames(&mut reader, &mut buf, stream, 0, &mut whole);

    let mut reader = FrameReader::new(message_max);
    let mut buf = stream[..split].to_vec();
    let mut parts = Vec::new();
    let (consumed, error) = ws_frames(&mut reader, &mut buf, &stream[..split], 0, &mut parts);
    let parts_end = match error {
        Some(_) => (consumed, error),
        None => {
            buf.extend_from_slice(&stream[split..]);
            ws_frames(&mut reader, &mut buf, stream, consumed, &mut parts)
        }
    };
    assert_eq!(
        (&parts, parts_end),
        (&whole, whole_end),
        "websocket: split at {split} differs from the whole"
    );
    for (_, event) in &whole {
        check_reframed(event, message_max);
    }
}

/// Reads events from `buf[pos..]` until [`FrameReader::read`] wants more or fails. `original` is the input as it
/// arrived (before unmasking): what the reader has not consumed must still be exactly that.
fn ws_frames(
    reader: &mut FrameReader,
    buf: &mut [u8],
    original: &[u8],
    mut pos: usize,
    events: &mut Vec<(usize, WsEvent)>,
) -> (usize, Option<CloseReason>) {
    let message_max = reader.message_max();
    loop {
        let rest = buf.len() - pos;
        match reader.read(&mut buf[pos..]) {
            Ok(Some((consumed, event))) => {
                assert!(
                    (2..=rest).contains(&consumed),
                    "consumed {consumed} of {rest}"
                );
                check_event(&event, message_max);
                events.push((consumed, WsEvent::new(&event)));
                pos += consumed;
            }
            Ok(None) => {
                assert_eq!(&buf[pos..], &original[pos..], "Ok(None) changed the buffer");
                return (pos, None);
            }
            Err(close) => {
                assert!(websocket::is_valid_close_code(close.code), "{close:?}");
                return (pos, Some(close));
            }
        }
    }
}

fn check_event(event: &Event<'_>, message_max: usize) {
    match *event {
        Event::Message { data, text } => {
            assert!(
                data.len() <= message_max,
                "message of {} > {message_max}",
                data.len()
            );
            assert!(
                !text || std::str::from_utf8(data).is_ok(),
                "text is not UTF-8"
            );
        }
        Event::Ping(data) | Event::Pong(data) => assert!(data.len() <= CONTROL_PAYLOAD_MAX),
        Event::Close { code, reason } => {
            assert!(code.is_none_or(websocket::is_valid_close_code), "{event:?}");
            assert!(code.is_some() || reason.is_empty(), "{event:?}");
            assert!(reason.len() + 2 <= CONTROL_PAYLOAD_MAX, "{event:?}");
        }
        Event::Fragment => {}
        // Only from a reader with permessage-deflate, which the fuzz targets do not turn on.
        Event::Compressed { data, .. } => assert!(data.len() <= message_max),
    }
}

/// The masking key of re-framed client frames.
const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

/// Encodes `event` again as one client frame with the crate's frame writers, reads it with a fresh reader and
/// expects the same event.
fn check_reframed(event: &WsEvent, message_max: usize) {
    let mut server = Vec::new();
    match event {
        WsEvent::Fragment => return,
        WsEvent::Message { data, text } => {
            let opcode = if *text { OpCode::Text } else { OpCode::Binary };
            let mut header = [0; 10];
            let len = websocket::write_header(opcode, true, data.len(), &mut header);
            server.extend_from_slice(&header[..len]);
            server.extend_from_slice(data);
        }
        WsEvent::Ping(data) => websocket::control_frame(OpCode::Ping, data, &mut server),
        WsEvent::Pong(data) => websocket::control_frame(OpCode::Pong, data, &mut server),
        WsEvent::Close { code: None, .. } => {
            websocket::control_frame(OpCode::Close, &[], &mut server)
        }
        WsEvent::Close {
            code: Some(code),
            reason,
        } => websocket::close_frame(*code, reason, &mut server),
    }
    let mut client = mask_server_frame(&server);
    let mut reader = FrameReader::new(message_max);
    let read = reader.read(&mut client);
    let again = match &read {
        Ok(Some((consumed, event))) if *consumed == client_len(&server) => WsEvent::new(event),
        _ => panic!("re-framed {event:?} reads as {read:?}"),
    };
    assert_eq!(&again, event, "re-framed event differs");
}

/// A server frame (unmasked) turned into the client frame with the same content, masked with [`MASK`].
fn mask_server_frame(server: &[u8]) -> Vec<u8> {
    let header_len = match server[1] & 0x7F {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let mut client = server[..header_len].to_vec();
    client[1] |= 0x80;
    client.extend_from_slice(&MASK);
    let payload = &server[header_len..];
    client.extend(payload.iter().zip(MASK.iter().cycle()).map(|(b, m)| b ^ m));
    client
}

fn client_len(server: &[u8]) -> usize {
    server.len() + MASK.len()
}

// -------------------------------------------------------------------------------------------------------------
// MQTT

/// Maximum packet sizes the `mqtt` target chooses from.
const MQTT_PACKET_MAX: [usize; 8] = [0, 2, 5, 16, 128, 1024, 65_536, mqtt::PACKET_SIZE_MAX];

/// Target `mqtt`. Input: `[params, split_low, split_high, stream...]`. `params` bit 0 picks the version (3.1.1,
/// 5), bit 1 who sends the stream (client, server), bits 2..=4 the maximum packet size. The stream is decoded
/// packet by packet with [`mqtt::Decoder`]:
/// * the fixed header agrees with the packet ([`mqtt::Decoder::header`]); no packet exceeds the maximum;
/// * round trip: every packet encodes ([`mqtt::encode`], [`mqtt::encoded_len`] agreeing), decodes to the same
///   packet, and encodes again to the same bytes; a PUBLISH's header ([`mqtt::encode_publish_header`]) is the
///   packet less its payload;
/// * topics: a PUBLISH topic that maps to a WAMP URI maps back to itself; a SUBSCRIBE filter that maps gives
///   patterns the engine accepts (but the empty one) and agree with MQTT matching on the mapped topic;
/// * an error's action is one the spec allows: MQTT 5 DISCONNECT codes are DISCONNECT (and for a CONNECT,
///   CONNACK) reason codes; 3.1.1 closes;
/// * split: decoding a prefix and then the whole gives exactly the packets and the end of decoding the whole.
pub fn mqtt(data: &[u8]) {
    let [params, split_low, split_high, stream @ ..] = data else {
        return;
    };
    let version = if params & 1 == 0 {
        mqtt::Version::V311
    } else {
        mqtt::Version::V5
    };
    let from = if params & 2 == 0 {
        mqtt::Side::Client
    } else {
        mqtt::Side::Server
    };
    let decoder = mqtt::Decoder {
        version,
        from,
        max_packet_size: MQTT_PACKET_MAX[usize::from((params >> 2) & 7)],
    };
    let mut whole = Vec::new();
    let whole_end = mqtt_packets(&decoder, stream, 0, &mut whole);

    let split = split_point(*split_low, *split_high, stream.len());
    let mut parts = Vec::new();
    let (consumed, error) = mqtt_packets(&decoder, &stream[..split], 0, &mut parts);
    let parts_end = match error {
        Some(_) => (consumed, error),
        None => mqtt_packets(&decoder, stream, consumed, &mut parts),
    };
    assert_eq!(
        (&parts, parts_end),
        (&whole, whole_end),
        "mqtt: split at {split} differs from the whole"
    );
}

/// Decodes packets from `buf[pos..]` until one is incomplete or an error, checking each. Returns where it
/// stopped and the error, if any.
fn mqtt_packets<'a>(
    decoder: &mqtt::Decoder,
    buf: &'a [u8],
    mut pos: usize,
    packets: &mut Vec<mqtt::Packet<'a>>,
) -> (usize, Option<mqtt::DecodeError>) {
    loop {
        let rest = &buf[pos..];
        let header = decoder.header(rest);
        match decoder.decode(rest) {
            Ok(Some((consumed, packet))) => {
                let Ok(Some(header)) = header else {
                    panic!("decode found {packet:?}, header says {header:?}");
                };
                assert_eq!(header.packet_size(), consumed);
                assert_eq!(header.packet_type, packet.packet_type());
                assert!(consumed <= decoder.max_packet_size && consumed <= rest.len());
                check_mqtt_round_trip(decoder, &packet);
                check_mqtt_topics(&packet);
                packets.push(packet);
                pos += consumed;
            }
            Ok(None) => {
                match header {
                    Ok(None) => assert!(rest.len() < 5, "no header in {} octets", rest.len()),
                    Ok(Some(header)) => assert!(rest.len() < header.packet_size()),
                    Err(error) => panic!("decode incomplete, header fails: {error:?}"),
                }
                return (pos, None);
            }
            Err(error) => {
                if let Err(header_error) = header {
                    assert_eq!(header_error, error);
                }
                check_mqtt_action(&error, rest.first() == Some(&0x10));
                return (pos, Some(error));
            }
        }
    }
}

fn check_mqtt_round_trip(decoder: &mqtt::Decoder, packet: &mqtt::Packet<'_>) {
    let version = match packet {
        mqtt::Packet::Connect(connect) => connect.version,
        _ => decoder.version,
    };
    let mut encoded = Vec::new();
    let written = mqtt::encode(packet, version, &mut encoded)
        .unwrap_or_else(|e| panic!("{packet:?} decodes but does not encode: {e}"));
    assert_eq!(written, encoded.len());
    assert_eq!(mqtt::encoded_len(packet, version), Ok(written));
    let unbounded = mqtt::Decoder {
        max_packet_size: usize::MAX,
        ..*decoder
    };
    let again = unbounded.decode(&encoded);
    let Ok(Some((consumed, again))) = again else {
        panic!(
            "{packet:?} encodes to undecodable {}: {again:?}",
            hex(&encoded)
        );
    };
    assert_eq!(consumed, encoded.len());
    assert_eq!(&again, packet, "round trip via {}", hex(&encoded));
    let mut twice = Vec::new();
    mqtt::encode(&again, version, &mut twice).expect("re-decoded packet encodes");
    assert_eq!(twice, encoded, "mqtt encoding is not stable");
    if let mqtt::Packet::Publish(publish) = packet {
        let mut header = Vec::new();
        mqtt::encode_publish_header(publish, version, &mut header).expect("header encodes");
        assert_eq!(encoded.get(..header.len()), Some(&header[..]));
        assert_eq!(&encoded[header.len()..], publish.payload);
    }
}

fn check_mqtt_topics(packet: &mqtt::Packet<'_>) {
    use kreisel_engine::uri::{is_valid, UriCheck};
    match packet {
        mqtt::Packet::Publish(publish) => {
            if let Ok(uri) = mqtt::topic::name_to_uri(publish.topic) {
                assert!(is_valid(&uri, UriCheck::Loose, MatchPolicy::Exact), "{uri}");
                assert_eq!(mqtt::topic::uri_to_name(&uri).as_deref(), Ok(publish.topic));
            }
        }
        mqtt::Packet::Subscribe(subscribe) => {
            for (filter, _) in subscribe.filters.iter() {
                let Ok(wamp) = mqtt::topic::filter_to_wamp(filter) else {
                    continue;
                };
                for (pattern, policy) in wamp.subscriptions() {
                    // Every mapped pattern is valid, the empty prefix and wildcard of `#` and `+` included.
                    assert!(
                        is_valid(pattern, UriCheck::Loose, policy),
                        "{filter} -> {pattern:?} {policy:?}"
                    );
                }
                // The filter read as a topic name (wildcards as literal levels), where it maps: WAMP matching
                // of the mapped patterns agrees with MQTT matching.
                let name = filter.replace(['+', '#'], "x");
                if let Ok(uri) = mqtt::topic::name_to_uri(&name) {
                    let hits = wamp
                        .subscriptions()
                        .filter(|&(p, policy)| kreisel_engine::uri::matches(p, policy, &uri))
                        .count();
                    assert!(hits <= 1, "{filter} matches {name} twice");
                    assert_eq!(
                        hits == 1,
                        mqtt::topic::matches(filter, &name),
                        "{filter} {name}"
                    );
                }
            }
        }
        _ => {}
    }
}

fn check_mqtt_action(error: &mqtt::DecodeError, connect: bool) {
    use mqtt::{reason, ErrorAction, ErrorKind, PacketType, Version};
    match (error.action(), error.kind) {
        (
            ErrorAction::ConnAck { version, code },
            ErrorKind::UnsupportedProtocolVersion { level, mqisdp },
        ) => {
            // Levels below 5 and MQTT 3.1 (`MQIsdp`) get the 3.1.1 format (bridges set the high bit).
            assert!(connect, "{error:?}");
            assert_eq!(
                version == Version::V5,
                !mqisdp && level & 0x7F >= 5,
                "{error:?}"
            );
            assert!(reason::is_valid(PacketType::ConnAck, version, code));
            assert_ne!(code, 0);
        }
        (ErrorAction::Close, ErrorKind::UnknownProtocolName) => assert!(connect),
        (ErrorAction::Close, _) => assert_eq!(error.version, Version::V311, "{error:?}"),
        (ErrorAction::Disconnect(code), _) => {
            assert_eq!(error.version, Version::V5, "{error:?}");
            assert_eq!(code, error.reason_code());
            assert!(code >= 0x80);
            assert!(reason::is_valid(PacketType::Disconnect, Version::V5, code));
            if connect {
                assert!(reason::is_valid(PacketType::ConnAck, Version::V5, code));
            }
        }
        (action, _) => panic!("{error:?} has action {action:?}"),
    }
    assert!(!error.to_string().is_empty());
}

// -------------------------------------------------------------------------------------------------------------
// Codecs

/// Target `json`: the input is one JSON message.
pub fn json(data: &[u8]) {
    codec(Serializer::Json, data);
}

/// Target `msgpack`: the input is one MessagePack message.
pub fn msgpack(data: &[u8]) {
    codec(Serializer::MsgPack, data);
}

/// Target `cbor`: the input is one CBOR message.
pub fn cbor(data: &[u8]) {
    codec(Serializer::Cbor, data);
}

/// Decodes `data` in `ser`; if it is a message: it re-encodes to the same message in `ser` (round trip), it
/// transcodes to every other serializer into bytes that decode to an equivalent message (and back), and no strict
/// prefix of `data` decodes unless what is cut off is JSON whitespace (split).
pub fn codec(ser: Serializer, data: &[u8]) {
    let decoded = ser.decode(data);
    check_prefix(ser, data, decoded.is_ok());
    let Ok(msg) = decoded else {
        return;
    };
    let mut encoded = Vec::new();
    ser.encode(&msg, &mut encoded);
    let again = ser
        .decode(&encoded)
        .unwrap_or_else(|e| panic!("{ser:?} re-encoding {} fails: {e}", hex(&encoded)));
    assert_eq!(again, msg, "{ser:?} round trip via {}", hex(&encoded));
    assert_eq!(as_json(&again), as_json(&msg));
    let mut twice = Vec::new();
    ser.encode(&again, &mut twice);
    assert_eq!(twice, encoded, "{ser:?} encoding is not stable");

    for other in Serializer::ALL.into_iter().filter(|&s| s != ser) {
        let mut transcoded = Vec::new();
        other.encode(&msg, &mut transcoded);
        let there = other.decode(&transcoded).unwrap_or_else(|e| {
            panic!(
                "{ser:?} -> {other:?} gives undecodable {}: {e}",
                hex(&transcoded)
            )
        });
        check_equivalent(&msg, &there, other);
        // And back: transcoding the transcoded message never produces undecodable bytes either.
        let mut back = Vec::new();
        ser.encode(&there, &mut back);
        let back = ser.decode(&back).unwrap_or_else(|e| {
            panic!(
                "{ser:?} -> {other:?} -> {ser:?} gives undecodable {}: {e}",
                hex(&back)
            )
        });
        check_equivalent(&msg, &back, ser);
    }
}

/// Split property of a message decoder: a complete message has no complete strict prefix (MessagePack is
/// self-delimiting and trailing bytes are refused; JSON may only lose trailing whitespace).
fn check_prefix(ser: Serializer, data: &[u8], whole_ok: bool) {
    if !whole_ok || data.is_empty() {
        return;
    }
    let hash = data.iter().fold(0usize, |h, &b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    let split = hash % data.len();
    if ser.decode(&data[..split]).is_ok() {
        let cut = &data[split..];
        assert!(
            ser == Serializer::Json && cut.iter().all(|b| b" \t\r\n".contains(b)),
            "{ser:?}: the prefix {} of a message decodes too",
            hex(&data[..split])
        );
    }
}

fn as_json(msg: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    Serializer::Json.encode(msg, &mut out);
    out
}

/// The message as a value: the JSON encoding read back as a [`Value`] list.
fn as_value(msg: &Message<'_>) -> Value {
    let json = as_json(msg);
    let raw = RawValue::parse(Serializer::Json, &json)
        .unwrap_or_else(|e| panic!("JSON encoding {} is not JSON: {e}", hex(&json)));
    raw.to_value()
}

/// `a` and `b` (the same message after transcoding to `to`) carry the same information, up to what the
/// serializers cannot tell apart (see [`same_value`]).
fn check_equivalent(a: &Message<'_>, b: &Message<'_>, to: Serializer) {
    assert_eq!(a.message_type(), b.message_type());
    let (va, vb) = (as_value(a), as_value(b));
    assert!(
        same_value(&va, &vb),
        "transcoding to {to:?} changed the message:\n  {va:?}\n  {vb:?}"
    );
    // Dict::to_value reads the raw spans directly (no JSON in between).
    if let (Some(da), Some(db)) = (first_dict(a), first_dict(b)) {
        let (da, db) = (da.to_value(), db.to_value());
        assert!(
            same_value(&da, &db),
            "dictionary changed:\n  {da:?}\n  {db:?}"
        );
    }
}

/// The options/details dictionary of a message, where it has one.
fn first_dict<'m>(msg: &'m Message<'m>) -> Option<&'m Dict<'m>> {
    match msg {
        Message::Hello { details, .. }
        | Message::Welcome { details, .. }
        | Message::Abort { details, .. }
        | Message::Goodbye { details, .. }
        | Message::Error { details, .. }
        | Message::Event { details, .. }
        | Message::Result { details, .. }
        | Message::Invocation { details, .. } => Some(details),
        Message::Challenge { extra, .. } | Message::Authenticate { extra, .. } => Some(extra),
        Message::Publish { options, .. }
        | Message::Subscribe { options, .. }
        | Message::Call { options, .. }
        | Message::Cancel { options, .. }
        | Message::Register { options, .. }
        | Message::Interrupt { options, .. }
        | Message::Yield { options, .. } => Some(options),
        Message::Unsubscribed { details, .. } | Message::Unregistered { details, .. } => {
            details.as_ref()
        }
        Message::Published { .. }
        | Message::Subscribed { .. }
        | Message::Unsubscribe { .. }
        | Message::Registered { .. }
        | Message::Unregister { .. } => None,
    }
}

/// Equality up to what WAMP's serializers cannot tell apart: a non-finite float becomes JSON `null`; a string
/// `"\0" + base64` is JSON's spelling of binary; `-0.0 == 0.0`.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Value::Float(x), Value::Null) | (Value::Null, Value::Float(x)) => !x.is_finite(),
        (Value::Str(s), Value::Bytes(bytes)) | (Value::Bytes(bytes), Value::Str(s)) => {
            s.strip_prefix('\0') == Some(base64(bytes).as_str())
        }
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y))
        }
        (Value::Dict(x), Value::Dict(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && same_value(vx, vy))
        }
        _ => a == b,
    }
}

/// Standard padded base64 (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// -------------------------------------------------------------------------------------------------------------
// Engine

/// Sessions the `engine` target drives.
const SLOTS: usize = 4;
/// Separates the chunks of an `engine` input: `0xC1` occurs in no valid MessagePack and no UTF-8 (so no JSON). In
/// CBOR it is tag 1 (epoch time), which a CBOR chunk therefore cannot contain.
pub const CHUNK_SEPARATOR: u8 = 0xC1;
/// The HELLO a slot sends first when its opening chunk asks for it: every role, and every client feature the
/// engine acts on, so that progressive calls, canceling and timeouts are reachable.
const HELLO: &str = r#"[1,"realm1",{"roles":{"caller":{"features":{"progressive_call_invocations":true}},"callee":{"features":{"call_canceling":true,"call_timeout":true,"progressive_call_invocations":true}},"publisher":{},"subscriber":{}}}]"#;
/// The same HELLO for the second realm (strict URIs, caller and publisher always disclosed).
const HELLO_STRICT: &str = r#"[1,"strict",{"roles":{"caller":{},"callee":{"features":{"call_canceling":true}},"publisher":{},"subscriber":{}}}]"#;

/// Target `engine`. The input is chunks separated by [`CHUNK_SEPARATOR`], each `[control, bytes...]`:
/// * `control & 3`: the session slot (one of four);
/// * `(control >> 2) & 3`: 0 and 1 (two codes, so that the opening control `0xC1` has the spelling `0xC5`)
///   deliver `bytes` as a message (decoded in the slot's serializer; an
///   undecodable one is skipped, or reported as a protocol violation if bit 4 is set), 2 closes the slot's
///   transport, 3 advances the clock by `bytes[0] * 100` ms and calls `handle_timeout`, or with bit 4 set
///   reloads the `secure` realm's principals and roles (bits 5..=6 pick one of four variants);
/// * when the slot has no connection, one is opened first: bits 5..=6 pick its serializer (JSON, MessagePack,
///   CBOR, JSON) and bit 7 makes it send a HELLO before anything else, to `realm1` or, if bit 4 is set, to
///   `strict`.
///
/// Besides the engine's own invariants (`check_invariants`, on in debug builds, so the target is built with
/// `--debug-assertions`), every message the engine sends is checked ([`CheckingSink`]); a close it asks for is
/// carried out (as `io` does); the connection count always matches; no passed deadline is left; at the end
/// (after a shutdown if the last octet is odd) every transport closes and nothing is left.
pub fn engine(data: &[u8]) {
    engine_stats(data);
}

/// Runs and checks the `engine` target's input (see [`engine`]) and returns the router's counters at the end.
pub fn engine_stats(data: &[u8]) -> Stats {
    let mut fuzz = EngineFuzz::new();
    for chunk in data.split(|&b| b == CHUNK_SEPARATOR) {
        if let Some((&control, bytes)) = chunk.split_first() {
            fuzz.step(control, bytes);
        }
    }
    if data.last().is_some_and(|b| b & 1 == 1) {
        fuzz.router.handle_shutdown(&mut fuzz.sink);
        fuzz.carry_out_closes();
    }
    for slot in 0..SLOTS {
        fuzz.close(slot);
    }
    assert_eq!(
        fuzz.router.connections(),
        0,
        "connections left after every close"
    );
    let stats = fuzz.router.stats();
    assert_eq!(stats.sessions_active, 0, "sessions left after every close");
    assert_eq!(stats.sessions_joined, fuzz.sink.welcomes, "joins counted");
    assert!(fuzz.sink.open.is_empty());
    stats
}

struct EngineFuzz {
    router: Router,
    /// The `secure` realm's authentication settings as configured (the base of the reload variants).
    secure: kreisel_engine::AuthConfig,
    sink: CheckingSink,
    slots: [Option<(ConnId, SessionHandle, Serializer)>; SLOTS],
    next_conn: u64,
    now_ms: u64,
}

impl EngineFuzz {
    fn new() -> EngineFuzz {
        let mut config = RouterConfig {
            seed: 1,
            limits: EngineLimits {
                sessions_per_realm_max: 3,
                calls_per_session_max: 4,
                subscriptions_per_session_max: 4,
                registrations_per_session_max: 4,
                auth_timeout_ms: 500,
                testaments_per_session_max: 2,
                testament_bytes_per_session_max: 512,
                uri_max: 96,
                uri_components_max: 8,
                uri_bytes_per_session_max: 12288,
            },
            ..RouterConfig::default()
        };
        // A third realm with authentication and roles: principal `a` (ticket `t`, role `r`, which may use
        // `com.` but not `com.x.`; anonymous sessions get role `g`, which may only subscribe).
        config.realms.push(RealmConfig {
            auth: kreisel_engine::AuthConfig {
                anonymous_role: Some("g".into()),
                principals: vec![kreisel_engine::PrincipalConfig {
                    authid: "a".into(),
                    role: "r".into(),
                    ticket: Some("t".into()),
                    wampcra: Some(kreisel_engine::WampCraSecret {
                        secret: "s".into(),
                        salt: None,
                    }),
                    cryptosign: vec![[7; 32]],
                }],
                roles: Some(vec![
                    kreisel_engine::RoleConfig {
                        name: "r".into(),
                        permissions: vec![
                            kreisel_engine::PermissionConfig {
                                uri: "com.".into(),
                                policy: kreisel_engine::uri::MatchPolicy::Prefix,
                                allow: kreisel_engine::Perms::ACTIONS,
                            },
                            kreisel_engine::PermissionConfig {
                                uri: "com.x.".into(),
                                policy: kreisel_engine::uri::MatchPolicy::Prefix,
                                allow: kreisel_engine::Perms::NONE,
                            },
                        ],
                    },
                    kreisel_engine::RoleConfig {
                        name: "g".into(),
                        permissions: vec![kreisel_engine::PermissionConfig {
                            uri: "".into(),
                            policy: kreisel_engine::uri::MatchPolicy::Prefix,
                            allow: kreisel_engine::Perms::SUBSCRIBE,
                        }],
                    },
                ]),
            },
            ..RealmConfig::new("secure")
        });
        // Small retention limits, so that eviction is reachable.
        config.realms[0].retained_max = 3;
        config.realms[0].retained_bytes_max = 600;
        config.realms.push(RealmConfig {
            uri_check: kreisel_engine::uri::UriCheck::Strict,
            disclose_caller: true,
            disclose_publisher: true,
            ..RealmConfig::new("strict")
        });
        let secure = config.realms[1].auth.clone();
        EngineFuzz {
            router: Router::new(config),
            secure,
            sink: CheckingSink::default(),
            slots: [None; SLOTS],
            next_conn: 1,
            now_ms: 0,
        }
    }

    fn step(&mut self, control: u8, bytes: &[u8]) {
        let slot = usize::from(control & 3);
        match (control >> 2) & 3 {
            2 => self.close(slot),
            3 if control & 0x10 != 0 => {
                let auth = self.reload_variant(control >> 5);
                let report = self
                    .router
                    .handle_auth_reload("secure", &auth, &mut self.sink);
                assert!(report.is_some(), "the realm exists");
            }
            3 => {
                let advance = u64::from(bytes.first().copied().unwrap_or(1)) * 100;
                self.now_ms += advance;
                self.router.handle_timeout(self.now_ms, &mut self.sink);
                let next = self.router.poll_timeout();
                assert!(
                    next.is_none_or(|t| t > self.now_ms),
                    "deadline {next:?} already passed"
                );
            }
            _ => {
                let (conn, handle, ser) = self.open(slot, control);
                match ser.decode(bytes) {
                    Ok(msg) => {
                        self.sink.record_request(conn, &msg);
                        self.router
                            .handle_message(handle, &msg, self.now_ms, &mut self.sink)
                    }
                    Err(error) if control & 0x10 != 0 => {
                        let reason = error.to_string();
                        self.router
                            .handle_protocol_violation(handle, &reason, &mut self.sink);
                    }
                    Err(_) => {}
                }
            }
        }
        self.carry_out_closes();
    }

    /// The `secure` realm's settings after a reload: as configured (0), without role `g` and with another ticket
    /// for `a` (1), without roles (2), without principals and anonymous access (3).
    fn reload_variant(&self, variant: u8) -> kreisel_engine::AuthConfig {
        let mut auth = self.secure.clone();
        match variant & 3 {
            1 => {
                if let Some(roles) = &mut auth.roles {
                    roles.retain(|role| role.name != "g");
                }
                auth.principals[0].ticket = Some("u".into());
            }
            2 => auth.roles = None,
            3 => {
                auth.principals.clear();
                auth.anonymous_role = None;
            }
            _ => {}
        }
        auth
    }

    /// The slot's session, opening a connection (and sending HELLO) if it has none.
    fn open(&mut self, slot: usize, control: u8) -> (ConnId, SessionHandle, Serializer) {
        if let Some(open) = self.slots[slot] {
            return open;
        }
        let ser = [
            Serializer::Json,
            Serializer::MsgPack,
            Serializer::Cbor,
            Serializer::Json,
        ][usize::from((control >> 5) & 3)];
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let handle = self.router.handle_open(conn, ser);
        self.slots[slot] = Some((conn, handle, ser));
        self.sink.open.insert(conn.0, ConnState::new(ser));
        self.check_connections();
        if control & 0x80 != 0 {
            let json = if control & 0x10 != 0 {
                HELLO_STRICT
            } else {
                HELLO
            };
            let mut hello = Vec::new();
            let json = Serializer::Json
                .decode(json.as_bytes())
                .expect("HELLO decodes");
            ser.encode(&json, &mut hello);
            let msg = ser.decode(&hello).expect("HELLO transcodes");
            self.router
                .handle_message(handle, &msg, self.now_ms, &mut self.sink);
            self.carry_out_closes();
        }
        // A close the HELLO caused (a full realm) has been carried out already: the slot may be empty again.
        self.slots[slot].unwrap_or((conn, handle, ser))
    }

    /// The transport of `slot` goes away (if it has one).
    fn close(&mut self, slot: usize) {
        if let Some((conn, handle, _)) = self.slots[slot].take() {
            self.router.handle_close(handle, &mut self.sink);
            self.sink.open.remove(&conn.0);
            self.check_connections();
        }
        self.carry_out_closes();
    }

    /// Does what `io` does with the closes the engine asked for: close the transport, then `handle_close`.
    fn carry_out_closes(&mut self) {
        while let Some(conn) = self.sink.closes.pop() {
            let slot = self
                .slots
                .iter()
                .position(|s| s.is_some_and(|(c, _, _)| c == conn));
            if let Some(slot) = slot {
                self.close(slot);
            }
        }
    }

    fn check_connections(&self) {
        let open = self.slots.iter().flatten().count();
        assert_eq!(self.router.connections(), open, "connection count");
    }
}

/// What the [`CheckingSink`] knows of one open connection, from what the client sent and the router answered.
struct ConnState {
    serializer: Serializer,
    /// A WELCOME went out and no GOODBYE or ABORT since.
    joined: bool,
    /// The engine asked for the transport to close: nothing may be sent to it any more.
    closing: bool,
    /// Requests the client sent, by (message type code, request ID), minus the final answers the router sent.
    outstanding: HashMap<(u64, u64), u32>,
    /// INVOCATIONs sent in the current join (request IDs restart with each join) → INTERRUPTs sent for it.
    invocations: HashMap<u64, u32>,
}

impl ConnState {
    fn new(serializer: Serializer) -> ConnState {
        ConnState {
            serializer,
            joined: false,
            closing: false,
            outstanding: HashMap::new(),
            invocations: HashMap::new(),
        }
    }

    /// The router answers request `(kind, request)`; a final answer uses up one request.
    fn answer(&mut self, kind: u64, request: u64, is_final: bool, msg: &Message<'_>) {
        let count = self.outstanding.entry((kind, request)).or_insert(0);
        assert!(
            *count > 0,
            "{msg:?} answers no open request (type {kind}, ID {request})"
        );
        if is_final {
            *count -= 1;
        }
    }
}

/// A [`Sink`] that checks everything the engine sends:
/// * it goes to an open connection of the serializer it was opened with, whose close was not asked for;
/// * it encodes and decodes again in that serializer and in JSON;
/// * it is a message a router sends, in the right session phase: WELCOME only outside a session, GOODBYE only
///   inside one, everything but WELCOME/ABORT/CHALLENGE only inside one;
/// * every answer (PUBLISHED, SUBSCRIBED, UNSUBSCRIBED, RESULT, REGISTERED, UNREGISTERED, ERROR) answers a
///   request of that type and ID the client sent, and no request gets more final answers than it was sent
///   (progressive RESULTs are not final);
/// * an INTERRUPT is for an INVOCATION sent to that session, at most one per INVOCATION.
#[derive(Default)]
struct CheckingSink {
    open: HashMap<u64, ConnState>,
    /// Closes the engine asked for, not carried out yet.
    closes: Vec<ConnId>,
    /// WELCOMEs sent (compared with the engine's `sessions_joined` counter).
    welcomes: u64,
}

impl CheckingSink {
    /// The client on `conn` sends `msg`: remember the requests among it.
    fn record_request(&mut self, conn: ConnId, msg: &Message<'_>) {
        let key = match msg {
            Message::Publish { request, .. }
            | Message::Subscribe { request, .. }
            | Message::Unsubscribe { request, .. }
            | Message::Call { request, .. }
            | Message::Cancel { request, .. }
            | Message::Register { request, .. }
            | Message::Unregister { request, .. } => (msg.message_type().code(), request.get()),
            _ => return,
        };
        if let Some(state) = self.open.get_mut(&conn.0) {
            *state.outstanding.entry(key).or_insert(0) += 1;
        }
    }

    fn check(&mut self, to: &Peer, msg: &Message<'_>) {
        let Some(state) = self.open.get_mut(&to.conn.0) else {
            panic!("{msg:?} sent to {to:?}, which is not open");
        };
        assert_eq!(state.serializer, to.serializer, "{msg:?} sent to {to:?}");
        assert!(
            !state.closing,
            "{msg:?} sent to {to:?} after its close was asked for"
        );
        for ser in [to.serializer, Serializer::Json] {
            let mut bytes = Vec::new();
            ser.encode(msg, &mut bytes);
            if let Err(error) = ser.decode(&bytes) {
                panic!(
                    "the engine sent {msg:?}; in {ser:?} it is {} ({error})",
                    hex(&bytes)
                );
            }
        }
        let outside = matches!(
            msg,
            Message::Welcome { .. } | Message::Abort { .. } | Message::Challenge { .. }
        );
        assert!(
            outside || state.joined,
            "{msg:?} sent to {to:?} outside a session"
        );
        match msg {
            Message::Welcome { .. } => {
                assert!(!state.joined, "WELCOME sent to {to:?} inside a session");
                state.joined = true;
                state.invocations.clear();
                self.welcomes += 1;
            }
            Message::Abort { .. } | Message::Goodbye { .. } => state.joined = false,
            Message::Challenge { .. } | Message::Event { .. } => {}
            Message::Published { request, .. } => state.answer(16, request.get(), true, msg),
            Message::Subscribed { request, .. } => state.answer(32, request.get(), true, msg),
            // A router-initiated UNSUBSCRIBED (with details) answers nothing.
            Message::Unsubscribed {
                details: Some(_), ..
            } => {}
            Message::Unsubscribed { request, .. } => state.answer(34, request.get(), true, msg),
            Message::Registered { request, .. } => state.answer(64, request.get(), true, msg),
            Message::Unregistered {
                details: Some(_), ..
            } => {}
            Message::Unregistered { request, .. } => state.answer(66, request.get(), true, msg),
            Message::Result {
                request, details, ..
            } => {
                let progress = details.get("progress").and_then(|p| p.as_bool()) == Some(true);
                state.answer(48, request.get(), !progress, msg);
            }
            Message::Error {
                request_type,
                request,
                ..
            } => state.answer(*request_type, request.get(), true, msg),
            Message::Invocation { request, .. } => {
                state.invocations.entry(request.get()).or_insert(0);
            }
            Message::Interrupt { request, .. } => {
                let Some(count) = state.invocations.get_mut(&request.get()) else {
                    panic!("{msg:?} sent to {to:?} for no INVOCATION of this session");
                };
                *count += 1;
                assert_eq!(*count, 1, "second INTERRUPT for one INVOCATION: {msg:?}");
            }
            Message::Hello { .. }
            | Message::Authenticate { .. }
            | Message::Publish { .. }
            | Message::Subscribe { .. }
            | Message::Unsubscribe { .. }
            | Message::Call { .. }
            | Message::Cancel { .. }
            | Message::Register { .. }
            | Message::Unregister { .. }
            | Message::Yield { .. } => panic!("the router sent a client's message: {msg:?}"),
        }
    }
}

impl Sink for CheckingSink {
    fn send(&mut self, to: Peer, msg: &Message<'_>) {
        self.check(&to, msg);
    }

    fn send_many(&mut self, to: Recipients<'_>, msg: &Message<'_>) {
        for peer in to.iter() {
            self.check(peer, msg);
        }
    }

    fn close(&mut self, to: Peer) {
        let Some(state) = self.open.get_mut(&to.conn.0) else {
            panic!("close of {to:?}, which is not open");
        };
        assert!(!state.closing, "second close of {to:?}");
        state.closing = true;
        self.closes.push(to.conn);
    }
}
