//! Bad input over real sockets: each offender's connection ends with the spec's error or close code, and a
//! well-behaved session on the same router is unaffected (it joined before and keeps working after).

use std::io::{Read, Write};

use kreisel_codec::Serializer;
use kreisel_tests::{tcp, Client, Received, TestRouter};
use serde_json::json;

/// A session that joined before the offender and must keep working: subscribe once, then check a publication
/// from a fresh session reaches it.
struct Witness {
    client: Client,
}

impl Witness {
    fn new(router: &TestRouter) -> Witness {
        let mut client = Client::websocket(router.ws, Serializer::MsgPack);
        client.join();
        client.send(r#"[32, 1, {}, "com.witness"]"#);
        assert_eq!(client.expect()[0], 33);
        Witness { client }
    }

    fn still_works(&mut self, router: &TestRouter, seq: u64) {
        let mut fresh = Client::rawsocket(router.rs, Serializer::Json);
        fresh.join();
        fresh.send(&format!(
            r#"[16, 1, {{"acknowledge": true}}, "com.witness", [{seq}]]"#
        ));
        assert_eq!(fresh.expect()[0], 17, "a fresh session works");
        let event = self.client.expect();
        assert_eq!(event[0], 36);
        assert_eq!(event[4], json!([seq]), "the earlier session still receives");
    }
}

fn assert_abort(messages: &[serde_json::Value], reason: &str) {
    let last = messages
        .last()
        .unwrap_or_else(|| panic!("expected ABORT {reason}, got nothing"));
    assert_eq!(last[0], 3, "expected ABORT, got {last}");
    assert_eq!(last[2], reason);
    assert!(
        last[1]["message"].is_string(),
        "ABORT explains itself: {last}"
    );
}

#[test]
fn garbage_after_the_rawsocket_handshake_is_a_protocol_violation() {
    let router = TestRouter::start("");
    let mut witness = Witness::new(&router);
    for serializer in Serializer::ALL {
        let mut offender = Client::rawsocket(router.rs, serializer);
        offender.send_bytes(b"\xff\x00garbage{[");
        assert_abort(&offender.expect_close(), "wamp.error.protocol_violation");
    }
    // Valid serialization, but not a WAMP message; and an unknown message code.
    for payload in [
        r#"{"hello": 1}"#,
        r#"[999, 1]"#,
        r#"[16, 0, {}, "id.zero"]"#,
    ] {
        let mut offender = Client::rawsocket(router.rs, Serializer::Json);
        offender.join();
        offender.send_bytes(payload.as_bytes());
        assert_abort(&offender.expect_close(), "wamp.error.protocol_violation");
    }
    // CBOR only a CBOR decoder refuses, after joining: a topic claiming 2^64 - 1 bytes, options with an integer
    // key, a break outside an indefinite-length item, text that is not UTF-8.
    for payload in [
        &[
            0x84, 0x18, 0x20, 0x01, 0xa0, 0x7b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            b't',
        ][..],
        &[0x84, 0x18, 0x20, 0x01, 0xa1, 0x01, 0x01, 0x61, b't'],
        &[0x84, 0x18, 0x20, 0x01, 0xa0, 0xff],
        &[0x84, 0x18, 0x20, 0x01, 0xa0, 0x61, 0xff],
    ] {
        let mut offender = Client::websocket(router.ws, Serializer::Cbor);
        offender.join();
        offender.send_bytes(payload);
        assert_abort(&offender.expect_close(), "wamp.error.protocol_violation");
    }
    witness.still_works(&router, 1);
}

#[test]
fn wrong_magic_octet_and_bad_handshakes() {
    let router = TestRouter::start("");
    let mut witness = Witness::new(&router);
    // Not 0x7F on a RawSocket-only port: closed without a reply.
    let mut stream = tcp(router.rs);
    stream.write_all(&[0x42, 0xF1, 0, 0]).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        stream.read(&mut buf).unwrap_or(0),
        0,
        "closed without reply"
    );
    // Unsupported serializer (4, UBJSON in the spec's list, is not spoken): error 1.
    let mut stream = tcp(router.rs);
    stream.write_all(&[0x7F, 0xF4, 0, 0]).unwrap();
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(reply, [0x7F, 0x10, 0, 0]);
    assert_eq!(stream.read(&mut buf).unwrap_or(0), 0);
    // Reserved octets used: error 3.
    let mut stream = tcp(router.rs);
    stream.write_all(&[0x7F, 0xF1, 1, 0]).unwrap();
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(reply, [0x7F, 0x30, 0, 0]);
    witness.still_works(&router, 2);
}

#[test]
fn messages_before_hello_are_aborted() {
    let router = TestRouter::start("");
    let mut witness = Witness::new(&router);
    let mut offender = Client::rawsocket(router.rs, Serializer::MsgPack);
    offender.send(r#"[16, 1, {}, "com.witness", ["sneaky"]]"#);
    assert_abort(&offender.expect_close(), "wamp.error.protocol_violation");
    let mut offender = Client::websocket(router.ws, Serializer::Json);
    offender.send(r#"[48, 1, {}, "com.proc", []]"#);
    assert_abort(&offender.expect_close(), "wamp.error.protocol_violation");
    let mut offender = Client::websocket(router.ws, Serializer::Json);
    offender.send(r#"[1, "no.such.realm", {"roles": {"caller": {}}}]"#);
    assert_abort(&offender.expect_close(), "wamp.error.no_such_realm");
    witness.still_works(&router, 3);
}

#[test]
fn frames_over_the_limit_end_only_that_connection() {
    let router = TestRouter::start("[limits]\nmessage_max = 4096\noutbox_max = 65536");
    let mut witness = Witness::new(&router);
    // RawSocket: the router announced 2^(9+3) = 4096; a header announcing more is a protocol error, detected
    // from the header alone.
    let mut offender = Client::rawsocket(router.rs, Serializer::Json);
    offender.join();
    offender.write_raw(&[0, 0, 0x20, 0]); // 8192 bytes follow... never sent
    assert_abort(&offender.expect_close(), "wamp.error.protocol_violation");
    // WebSocket: a message above message_max is refused with close code 1009.
    let mut offender = Client::websocket(router.ws, Serializer::Json);
    offender.join();
    let big = format!(r#"[16, 1, {{}}, "com.witness", ["{}"]]"#, "x".repeat(5000));
    offender.send_bytes(big.as_bytes());
    let mut close_code = None;
    loop {
        match offender.recv() {
            Received::Message(msg) => {
                assert_eq!(msg[0], 3, "only an ABORT may precede the close: {msg}")
            }
            Received::Closed(code) => {
                close_code = close_code.or(code);
                break;
            }
        }
    }
    assert_eq!(close_code, Some(1009));
    witness.still_works(&router, 4);
}

#[test]
fn websocket_upgrade_without_wamp_subprotocol_is_refused() {
    let router = TestRouter::start("");
    let mut witness = Witness::new(&router);
    let mut stream = tcp(router.ws);
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: chat, superchat\r\n\r\n",
        router.ws
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(
        response.contains("wamp.2.json"),
        "the refusal names what the router speaks: {response}"
    );
    // Plain HTTP to the wrong path.
    let mut stream = tcp(router.ws);
    stream
        .write_all(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 404") || response.starts_with("HTTP/1.1 426"),
        "{response}"
    );
    witness.still_works(&router, 5);
}

#[test]
fn invalid_utf8_in_a_json_text_frame_closes_with_1007() {
    let router = TestRouter::start("");
    let mut witness = Witness::new(&router);
    let mut stream = raw_websocket(&router);
    // A masked text frame holding invalid UTF-8.
    stream
        .write_all(&client_frame(0x81, &[0xC3, 0x28]))
        .unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    // Unmasked server frames with short payloads: an optional ABORT (text), then the Close frame.
    let mut frames = Vec::new();
    let mut rest = &reply[..];
    while rest.len() >= 2 {
        let len = (rest[1] & 0x7F) as usize;
        assert!(
            len < 126 && rest.len() >= 2 + len,
            "short frames only: {reply:?}"
        );
        frames.push((rest[0], rest[2..2 + len].to_vec()));
        rest = &rest[2 + len..];
    }
    let (opcode, payload) = frames.last().expect("a Close frame");
    assert_eq!(*opcode, 0x88, "the last frame is a Close: {frames:?}");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1007);
    for (opcode, payload) in &frames[..frames.len() - 1] {
        assert_eq!(*opcode, 0x81);
        assert!(String::from_utf8_lossy(payload).contains("wamp.error.protocol_violation"));
    }
    witness.still_works(&router, 6);
}

#[test]
fn a_thousand_garbage_connections_do_not_disturb_a_session() {
    let router = TestRouter::start("");
    let mut witness = Witness::new(&router);
    for i in 0..1000u32 {
        let mut stream = tcp(if i % 2 == 0 { router.rs } else { router.ws });
        let _ = stream.write_all(&i.to_be_bytes().repeat(8));
    }
    witness.still_works(&router, 7);
}

/// Upgrades a raw TCP stream to WebSocket with `wamp.2.json`; returns it after the 101 response.
fn raw_websocket(router: &TestRouter) -> std::net::TcpStream {
    let mut stream = tcp(router.ws);
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: wamp.2.json\r\n\r\n",
        router.ws
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    stream
}

/// A masked client frame.
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [9u8, 8, 7, 6];
    let mut frame = vec![first, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads one unmasked server frame with a short payload: (first octet, payload).
fn server_frame(stream: &mut std::net::TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).unwrap();
    let mut len = (head[1] & 0x7F) as usize;
    if len == 126 {
        let mut ext = [0u8; 2];
        stream.read_exact(&mut ext).unwrap();
        len = u16::from_be_bytes(ext) as usize;
    }
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).unwrap();
    (head[0], payload)
}

#[test]
fn fragmented_websocket_messages_with_interleaved_ping_are_reassembled() {
    let router = TestRouter::start("");
    let mut stream = raw_websocket(&router);
    let hello = br#"[1, "realm1", {"roles": {"subscriber": {}}}]"#;
    let (a, rest) = hello.split_at(10);
    let (b, c) = rest.split_at(20);
    stream.write_all(&client_frame(0x01, a)).unwrap(); // text, FIN=0
    stream.write_all(&client_frame(0x00, b)).unwrap(); // continuation, FIN=0
    stream.write_all(&client_frame(0x89, b"ping!")).unwrap(); // ping between fragments
    stream.write_all(&client_frame(0x80, c)).unwrap(); // continuation, FIN=1
    let (opcode, payload) = server_frame(&mut stream);
    assert_eq!(
        (opcode, payload.as_slice()),
        (0x8A, &b"ping!"[..]),
        "pong with the ping's payload"
    );
    let (opcode, payload) = server_frame(&mut stream);
    assert_eq!(opcode, 0x81, "WELCOME as one text frame");
    let welcome: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(welcome[0], 2);
    // The close handshake: our Close (1000) is echoed, then the router closes the connection.
    stream
        .write_all(&client_frame(0x88, &1000u16.to_be_bytes()))
        .unwrap();
    let (opcode, payload) = server_frame(&mut stream);
    assert_eq!(opcode, 0x88);
    assert_eq!(payload, 1000u16.to_be_bytes());
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty());
}
