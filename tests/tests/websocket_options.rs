//! permessage-deflate and the batched subprotocols end to end: autobahn-python with every batched serializer and
//! compression offers with and without context takeover and window sizes (`tests/interop/websocket_options.py`,
//! on a listener that declines context takeover and on one that allows it), and frames crafted by hand for what a
//! library would never send: a deflate bomb (close 1009, and only that connection), compressed text that is not
//! UTF-8, RSV1 where it is not allowed, batches in both JSON separators and with a broken length.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use kreisel_codec::Serializer;
use kreisel_tests::{python_check, tcp, Client, TestRouter};
use serde_json::{json, Value};

const LISTENERS: &str = r#"
[limits]
message_max = 65536

[[listeners]]
listen = "127.0.0.1:0"
transports = ["websocket"]
compression = "deflate"
batched = true

[[listeners]]
listen = "127.0.0.1:0"
transports = ["websocket"]
compression = "deflate"
batched = true
[listeners.deflate]
server_context_takeover = true
client_context_takeover = true
level = 6
min_size = 0
"#;

const SHARED: usize = 3;
const TAKEOVER: usize = 4;

#[test]
fn autobahn_python_without_context_takeover() {
    let router = TestRouter::start(LISTENERS);
    let url = format!("ws://{}/ws", router.tcp_address(SHARED));
    python_check("websocket_options.py", &[&url]);
}

#[test]
fn autobahn_python_with_context_takeover() {
    let router = TestRouter::start(LISTENERS);
    let url = format!("ws://{}/ws", router.tcp_address(TAKEOVER));
    python_check("websocket_options.py", &[&url, "takeover"]);
}

/// A WebSocket client writing frames by hand.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The response head of the opening handshake.
    head: String,
}

impl Raw {
    fn connect(addr: SocketAddr, protocol: &str, extensions: Option<&str>) -> Raw {
        let mut stream = tcp(addr);
        let extensions = extensions
            .map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: {protocol}\r\n{extensions}\r\n"
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
            head: String::new(),
        };
        let end = loop {
            if let Some(end) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            raw.fill();
        };
        raw.head = String::from_utf8_lossy(&raw.buf[..end]).into_owned();
        raw.buf.drain(..end + 4);
        assert!(raw.head.starts_with("HTTP/1.1 101 "), "{}", raw.head);
        raw
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 65536];
        let n = self.stream.read(&mut chunk).expect("read in time");
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// Sends one masked frame: `first` is the first octet (FIN, RSV, opcode).
    fn send(&mut self, first: u8, payload: &[u8]) {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut frame = vec![first];
        match payload.len() {
            n if n <= 125 => frame.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).unwrap();
    }

    /// The next frame: (first octet, payload); `None` when the router closed the connection.
    fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                let len7 = (self.buf[1] & 0x7F) as usize;
                let (len, header) = match len7 {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n, 2),
                };
                if len != usize::MAX && self.buf.len() >= header + len {
                    let first = self.buf[0];
                    let payload = self.buf[header..header + len].to_vec();
                    self.buf.drain(..header + len);
                    return Some((first, payload));
                }
            }
            if self.fill() == 0 {
                return None;
            }
        }
    }

    /// The code of the Close frame that ends the connection (skipping other frames).
    fn close_code(&mut self) -> u16 {
        while let Some((first, payload)) = self.recv() {
            if first & 0x0F == 0x8 {
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
        panic!("closed without a Close frame");
    }
}

/// A permessage-deflate payload of `data` (one message on its own, SYNC flush, the trailing 00 00 ff ff cut).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::new(9), false);
    let mut out = Vec::with_capacity(data.len() + 1024);
    compress
        .compress_vec(data, &mut out, FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    Decompress::new(false)
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}

const HELLO: &str =
    r#"[1, "realm1", {"roles": {"publisher": {}, "subscriber": {}, "caller": {}, "callee": {}}}]"#;

/// A WAMP message from a JSON frame of the router (inflated if RSV1 says so).
fn message(first: u8, payload: &[u8]) -> Value {
    let text = if first & 0x40 != 0 {
        inflate(payload)
    } else {
        payload.to_vec()
    };
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"))
}

#[test]
fn a_deflate_bomb_closes_that_connection_with_1009() {
    let router = TestRouter::start(LISTENERS);
    let addr = router.tcp_address(SHARED);
    let mut bystander = Client::websocket(addr, Serializer::Json);
    bystander.join();
    let mut raw = Raw::connect(addr, "wamp.2.json", Some("permessage-deflate"));
    assert!(raw
        .head
        .contains("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"));
    raw.send(0x81 | 0x40, &deflate(HELLO.as_bytes()));
    let (first, payload) = raw.recv().expect("WELCOME");
    assert_eq!(message(first, &payload)[0], 2, "WELCOME");
    // 16 MiB of spaces inside a JSON string: a few KiB on the wire, 256 times message_max inflated.
    let mut bomb = br#"[16, 1, {}, "com.example.t", [""#.to_vec();
    bomb.extend(std::iter::repeat_n(b' ', 16 << 20));
    bomb.extend_from_slice(br#""]]"#);
    let compressed = deflate(&bomb);
    assert!(compressed.len() < 65536, "{}", compressed.len());
    raw.send(0x81 | 0x40, &compressed);
    assert_eq!(raw.close_code(), 1009);
    // The bystander's session goes on.
    bystander.send(r#"[48, 7, {}, "wamp.session.count"]"#);
    let result = bystander.expect();
    assert_eq!(
        (result[0].clone(), result[1].clone()),
        (json!(50), json!(7)),
        "{result}"
    );
}

#[test]
fn compressed_frames_are_checked() {
    let router = TestRouter::start(LISTENERS);
    let addr = router.tcp_address(SHARED);
    // Compressed text that is not UTF-8 once inflated: 1007.
    let mut raw = Raw::connect(addr, "wamp.2.json", Some("permessage-deflate"));
    raw.send(0x81 | 0x40, &deflate(b"[1, \"\xff\xfe\"]"));
    assert_eq!(raw.close_code(), 1007);
    // Not a deflate stream: 1007.
    let mut raw = Raw::connect(addr, "wamp.2.json", Some("permessage-deflate"));
    raw.send(0x81 | 0x40, b"\xff\xff\xff\xff not deflate");
    assert_eq!(raw.close_code(), 1007);
    // RSV1 on a control frame, or without the extension: 1002.
    let mut raw = Raw::connect(addr, "wamp.2.json", Some("permessage-deflate"));
    raw.send(0x89 | 0x40, b"ping");
    assert_eq!(raw.close_code(), 1002);
    let mut raw = Raw::connect(addr, "wamp.2.json", None);
    assert!(!raw.head.contains("Extensions"));
    raw.send(0x81 | 0x40, &deflate(HELLO.as_bytes()));
    assert_eq!(raw.close_code(), 1002);
    // A compressed message in fragments: RSV1 on the first frame only.
    let mut raw = Raw::connect(addr, "wamp.2.json", Some("permessage-deflate"));
    let hello = deflate(HELLO.as_bytes());
    let (a, b) = hello.split_at(hello.len() / 2);
    raw.send(0x01 | 0x40, a);
    raw.send(0x80, b);
    let (first, payload) = raw.recv().expect("WELCOME");
    assert_eq!(message(first, &payload)[0], 2);
}

#[test]
fn events_are_compressed_once_and_shared() {
    // Several subscribers on the shared listener get byte-identical compressed frames.
    let router = TestRouter::start(LISTENERS);
    let addr = router.tcp_address(SHARED);
    let mut subscribers: Vec<Raw> = (0..3)
        .map(|_| {
            let mut raw = Raw::connect(addr, "wamp.2.json", Some("permessage-deflate"));
            raw.send(0x81, HELLO.as_bytes());
            assert_eq!(
                raw.recv().map(|(f, p)| message(f, &p)[0].clone()),
                Some(json!(2))
            );
            raw.send(0x81, br#"[32, 1, {}, "com.example.telemetry"]"#);
            let (first, payload) = raw.recv().expect("SUBSCRIBED");
            assert_eq!(message(first, &payload)[0], 33);
            raw
        })
        .collect();
    let mut publisher = Client::websocket(router.ws, Serializer::Json);
    publisher.join();
    // Longer than min_size (512): compressed.
    let reading = json!({"sensor": "sensor-17", "t": 21.5, "h": 0.43, "p": 1013.25, "log": "ok ".repeat(200)});
    publisher.send(&json!([16, 2, {}, "com.example.telemetry", [reading]]).to_string());
    let frames: Vec<(u8, Vec<u8>)> = subscribers
        .iter_mut()
        .map(|s| s.recv().expect("EVENT"))
        .collect();
    assert!(frames[0].0 & 0x40 != 0, "compressed");
    assert!(
        frames.iter().all(|f| *f == frames[0]),
        "the same bytes for every subscriber"
    );
    let event = message(frames[0].0, &frames[0].1);
    assert_eq!(
        (event[0].clone(), event[4][0].clone()),
        (json!(36), reading)
    );
}

#[test]
fn batches_in_both_json_separators_and_msgpack() {
    let router = TestRouter::start(LISTENERS);
    let addr = router.tcp_address(SHARED);
    for separator in [0x1e_u8, 0x18] {
        let mut raw = Raw::connect(addr, "wamp.2.json.batched", None);
        assert!(raw
            .head
            .contains("Sec-WebSocket-Protocol: wamp.2.json.batched"));
        let mut batch = HELLO.as_bytes().to_vec();
        batch.push(separator);
        batch.extend_from_slice(br#"[32, 1, {}, "com.example.t"]"#);
        batch.push(separator);
        batch.extend_from_slice(
            br#"[16, 2, {"acknowledge": true, "exclude_me": false}, "com.example.t", [1]]"#,
        );
        batch.push(separator);
        raw.send(0x81, &batch);
        let mut kinds = Vec::new();
        while kinds.len() < 4 {
            let (_, payload) = raw.recv().expect("answers");
            assert_eq!(
                payload.last(),
                Some(&separator),
                "answered with the client's separator"
            );
            for part in payload.split(|b| *b == separator).filter(|p| !p.is_empty()) {
                kinds.push(serde_json::from_slice::<Value>(part).unwrap()[0].clone());
            }
        }
        kinds.sort_by_key(|k| k.as_u64());
        assert_eq!(kinds, [json!(2), json!(17), json!(33), json!(36)]);
    }
    // MessagePack: each message behind its length; a length beyond the end is a protocol violation.
    let mut raw = Raw::connect(addr, "wamp.2.msgpack.batched", Some("permessage-deflate"));
    let hello = kreisel_tests::encode(Serializer::MsgPack, HELLO);
    let mut batch = (hello.len() as u32).to_be_bytes().to_vec();
    batch.extend_from_slice(&hello);
    raw.send(0x82, &batch);
    let (first, payload) = raw.recv().expect("WELCOME");
    let payload = if first & 0x40 != 0 {
        inflate(&payload)
    } else {
        payload
    };
    let len = u32::from_be_bytes(payload[..4].try_into().unwrap()) as usize;
    assert_eq!(len + 4, payload.len());
    assert_eq!(
        kreisel_tests::decode(Serializer::MsgPack, &payload[4..])[0],
        2
    );
    raw.send(0x82, &[0, 0, 0, 9, 0x91]);
    let (first, payload) = raw.recv().expect("ABORT");
    let payload = if first & 0x40 != 0 {
        inflate(&payload)
    } else {
        payload
    };
    let abort = kreisel_tests::decode(Serializer::MsgPack, &payload[4..]);
    assert_eq!(abort[0], 3, "{abort}");
    assert_eq!(abort[2], "wamp.error.protocol_violation");
}

#[test]
fn batched_subprotocols_are_offered_only_when_configured() {
    let router = TestRouter::start("");
    let mut stream = tcp(router.ws);
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Protocol: wamp.2.json.batched, wamp.2.json\r\n\
              Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        )
        .unwrap();
    let mut head = vec![0u8; 1024];
    let n = stream.read(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(
        head.contains("Sec-WebSocket-Protocol: wamp.2.json\r\n"),
        "{head}"
    );
    assert!(
        !head.contains("Extensions"),
        "compression is off by default: {head}"
    );
}
