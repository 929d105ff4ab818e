//! Hostile and broken peers over real sockets. Each test checks both that the offender is handled (closed, refused
//! or aborted with the spec's error) and that a well-behaved session on the same router is unaffected.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use kreisel_codec::Serializer;
use kreisel_tests::{tcp, Client, Received, TestRouter};
use serde_json::json;

/// A subscriber that joined before the offender and keeps receiving.
struct Witness {
    client: Client,
    seq: u64,
}

impl Witness {
    fn new(router: &TestRouter) -> Witness {
        let mut client = Client::rawsocket(router.rs, Serializer::MsgPack);
        client.join();
        client.send(r#"[32, 1, {}, "com.witness"]"#);
        assert_eq!(client.expect()[0], 33);
        Witness { client, seq: 0 }
    }

    fn still_works(&mut self, router: &TestRouter) {
        self.seq += 1;
        let mut fresh = Client::websocket(router.ws, Serializer::Json);
        fresh.join();
        fresh.send(&format!(
            r#"[16, 1, {{"acknowledge": true}}, "com.witness", [{}]]"#,
            self.seq
        ));
        assert_eq!(fresh.expect()[0], 17, "a fresh session works");
        loop {
            let event = self.client.expect();
            assert_eq!(event[0], 36);
            if event[4] == json!([self.seq]) {
                break;
            }
        }
    }
}

/// Waits until the peer closes `stream` (EOF or reset), reading and discarding; fails after `limit`.
fn assert_closed_within(stream: &mut std::net::TcpStream, limit: Duration) {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
        assert!(
            start.elapsed() < limit,
            "the router did not close the connection within {limit:?}"
        );
    }
}

#[test]
fn slowloris_handshakes_are_cut_off() {
    let router = TestRouter::start("[limits]\nhandshake_timeout_ms = 300");
    let mut witness = Witness::new(&router);
    // An HTTP upgrade trickling in a byte at a time, and a RawSocket handshake that never completes.
    let mut slow_ws = tcp(router.ws);
    slow_ws.write_all(b"GET /ws HT").unwrap();
    let mut slow_rs = tcp(router.rs);
    slow_rs.write_all(&[0x7F]).unwrap();
    // A transport that completes its handshake but never says HELLO.
    let mut silent = tcp(router.rs);
    silent.write_all(&[0x7F, 0xF1, 0, 0]).unwrap();
    for stream in [&mut slow_ws, &mut slow_rs, &mut silent] {
        assert_closed_within(stream, Duration::from_secs(5));
    }
    witness.still_works(&router);
}

#[test]
fn a_subscriber_that_never_reads_is_disconnected_and_others_keep_receiving() {
    let router = TestRouter::start("[limits]\nmessage_max = 65536\noutbox_max = 262144");
    let mut witness = Witness::new(&router);
    // The slow consumer subscribes, then never reads again.
    let mut slow = Client::rawsocket(router.rs, Serializer::Json);
    slow.join();
    slow.send(r#"[32, 1, {}, "com.flood"]"#);
    assert_eq!(slow.expect()[0], 33);
    let mut fast = Client::rawsocket(router.rs, Serializer::Json);
    fast.join();
    fast.send(r#"[32, 1, {}, "com.flood"]"#);
    assert_eq!(fast.expect()[0], 33);
    let mut publisher = Client::websocket(router.ws, Serializer::Json);
    publisher.join();
    let padding = "x".repeat(8 * 1024);
    // 4000 x 8 KiB = 32 MiB: far more than the socket buffers plus the 256 KiB outbox limit can hold. The router
    // paces a publisher only to subscribers it sees reading (io/src/server/output.rs); a debug-built reader parsing
    // JSON on a loaded machine may not look like one, so the publisher here also stays at most 16 events ahead of
    // the fast subscriber: the test is about the subscriber that does not read.
    let (progress, read) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for seq in 0..4000u64 {
            let event = fast.expect();
            assert_eq!(
                event[4][0], seq,
                "the fast subscriber gets every event in order"
            );
            let _ = progress.send(seq);
        }
    });
    let mut read_up_to = 0;
    for seq in 0..4000u64 {
        publisher.send(&format!(
            r#"[16, {}, {{}}, "com.flood", [{seq}, "{padding}"]]"#,
            seq + 1
        ));
        // At most 16 events (128 KiB, half of outbox_max) ahead of the reader (unless it stopped: its join below
        // says why).
        while seq >= read_up_to + 16 {
            match read.recv_timeout(Duration::from_secs(10)) {
                Ok(n) => read_up_to = n,
                Err(_) => break,
            }
        }
    }
    publisher.send(r#"[16, 99999, {"acknowledge": true}, "com.flood.done", []]"#);
    assert_eq!(publisher.expect()[0], 17);
    reader.join().expect("fast subscriber");
    // The slow consumer was cut off: reading what it has buffered ends in EOF, well before 4000 events.
    let mut received = 0;
    while let Received::Message(_) = slow.recv() {
        received += 1;
    }
    assert!(
        received < 4000,
        "the slow consumer was disconnected (it got {received} events)"
    );
    witness.still_works(&router);
}

#[test]
fn a_flood_of_hellos_is_a_protocol_violation() {
    let router = TestRouter::start("");
    let mut witness = Witness::new(&router);
    let mut flooder = Client::rawsocket(router.rs, Serializer::Json);
    // All 1000 HELLOs in one write: the router closes after the second, so later writes would fail.
    let hello = br#"[1, "realm1", {"roles": {"caller": {}}}]"#;
    let mut flood = Vec::new();
    for _ in 0..1000 {
        flood.extend_from_slice(&(hello.len() as u32).to_be_bytes());
        flood.extend_from_slice(hello);
    }
    flooder.write_raw(&flood);
    let seen = flooder.expect_close();
    assert_eq!(seen[0][0], 2, "the first HELLO is welcomed");
    assert_eq!(
        seen.last().unwrap()[2],
        "wamp.error.protocol_violation",
        "the second is a violation"
    );
    assert_eq!(seen.len(), 2, "nothing after the ABORT: {seen:?}");
    witness.still_works(&router);
}

#[test]
fn ten_thousand_connections_opened_and_dropped() {
    let router = TestRouter::start("");
    let mut witness = Witness::new(&router);
    for i in 0..10_000u32 {
        let mut stream = tcp(if i % 2 == 0 { router.rs } else { router.ws });
        if i % 3 == 0 {
            let _ = stream.write_all(&[0x7F, 0xF1, 0, 0]);
        }
        drop(stream);
    }
    witness.still_works(&router);
}

#[test]
fn truncated_frames_and_deep_nesting() {
    let router = TestRouter::start("");
    let mut witness = Witness::new(&router);
    // A frame header promising 100 bytes, 50 sent, then the peer vanishes.
    let mut truncated = Client::rawsocket(router.rs, Serializer::Json);
    truncated.join();
    truncated.write_raw(&[0, 0, 0, 100]);
    truncated.write_raw(&[b'['; 50]);
    drop(truncated);
    // 100 nested arrays in a payload: over the codec's nesting limit of 64.
    let mut deep = Client::websocket(router.ws, Serializer::Json);
    deep.join();
    let nested = format!("{}{}", "[".repeat(100), "]".repeat(100));
    deep.send_bytes(format!(r#"[16, 1, {{}}, "com.witness", [{nested}]]"#).as_bytes());
    let seen = deep.expect_close();
    assert_eq!(seen.last().unwrap()[2], "wamp.error.protocol_violation");
    // Invalid UTF-8 inside a JSON string over RawSocket (no WebSocket text-frame check involved).
    let mut bad_utf8 = Client::rawsocket(router.rs, Serializer::Json);
    bad_utf8.join();
    bad_utf8.send_bytes(b"[16, 1, {}, \"com.witness\", [\"\xC3\x28\"]]");
    let seen = bad_utf8.expect_close();
    assert_eq!(seen.last().unwrap()[2], "wamp.error.protocol_violation");
    witness.still_works(&router);
}
