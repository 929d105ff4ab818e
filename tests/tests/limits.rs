//! Configurable limits with defined outcomes: idle timeout with auto-ping, and the `drop` slow-consumer policy.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use kreisel_codec::Serializer;
use kreisel_tests::{sample, scrape, tcp, Client, TestRouter};

/// A RawSocket JSON session on a raw stream, so that the test decides whether to answer pings.
fn raw_session(router: &TestRouter) -> std::net::TcpStream {
    let mut stream = tcp(router.rs);
    stream.write_all(&[0x7F, 0xF1, 0, 0]).unwrap();
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).unwrap();
    let hello = br#"[1, "realm1", {"roles": {"caller": {}}}]"#;
    stream
        .write_all(&(hello.len() as u32).to_be_bytes())
        .unwrap();
    stream.write_all(hello).unwrap();
    let (kind, welcome) = read_frame(&mut stream).expect("WELCOME");
    assert_eq!(kind, 0);
    assert!(welcome.starts_with(b"[2,"));
    stream
}

/// One RawSocket frame: (type, payload), or None when the router closed the connection.
fn read_frame(stream: &mut std::net::TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).ok()?;
    let len = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).ok()?;
    Some((header[0] & 0x07, payload))
}

#[test]
fn silent_connections_are_closed_but_peers_answering_pings_stay() {
    let router = TestRouter::start("[limits]\nauto_ping_ms = 100\nidle_timeout_ms = 400");
    let mut silent = raw_session(&router);
    let mut alive = raw_session(&router);
    alive
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let start = Instant::now();
    let mut pings = 0;
    // For 1.2 s (three idle timeouts), `alive` answers every ping with a pong carrying the same payload.
    while start.elapsed() < Duration::from_millis(1200) {
        let mut header = [0u8; 4];
        match alive.read_exact(&mut header) {
            Ok(()) => {
                let len = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
                let mut payload = vec![0u8; len];
                alive.read_exact(&mut payload).unwrap();
                assert_eq!(header[0] & 0x07, 1, "only pings arrive");
                pings += 1;
                let mut pong = (len as u32).to_be_bytes();
                pong[0] = 2;
                alive.write_all(&pong).unwrap();
                alive.write_all(&payload).unwrap();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("the live connection was closed: {e}"),
        }
    }
    assert!(
        pings >= 2,
        "the router pinged the silent peer ({pings} pings)"
    );
    // The silent one (it never answered) was closed: pings, then EOF.
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    while let Some((kind, _)) = read_frame(&mut silent) {
        assert_eq!(kind, 1, "only pings before the close");
    }
    // The live one still routes.
    alive
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let call = br#"[48, 1, {}, "com.nobody", []]"#;
    alive.write_all(&(call.len() as u32).to_be_bytes()).unwrap();
    alive.write_all(call).unwrap();
    loop {
        let (kind, payload) = read_frame(&mut alive).expect("an answer");
        if kind == 0 {
            assert!(String::from_utf8_lossy(&payload).contains("wamp.error.no_such_procedure"));
            break;
        }
    }
}

#[test]
fn drop_policy_keeps_a_slow_subscriber_connected_and_counts_nothing_for_fast_ones() {
    let router = TestRouter::start(
        "[limits]\nmessage_max = 65536\noutbox_max = 262144\nslow_consumer = \"drop\"",
    );
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
    const EVENTS: u64 = 2000;
    let padding = "x".repeat(8 * 1024);
    // The publisher stays at most 16 events ahead of the reading subscriber: the router paces it only to
    // subscribers it sees reading (io/src/server/output.rs), which a debug-built reader parsing JSON on a loaded
    // machine may not look like.
    let (progress, read) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for seq in 0..EVENTS {
            assert_eq!(
                fast.expect()[4][0],
                seq,
                "the reading subscriber gets every event in order"
            );
            let _ = progress.send(seq);
        }
    });
    let mut read_up_to = 0;
    for seq in 0..EVENTS {
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
    // The slow subscriber starts reading now: it gets an increasing subset, then is still connected and served.
    let mut last = None;
    let mut received = 0u64;
    publisher.send(r#"[16, 100000, {}, "com.flood", ["end"]]"#);
    loop {
        let event = slow.expect();
        assert_eq!(event[0], 36);
        if event[4][0] == "end" {
            break;
        }
        let seq = event[4][0].as_u64().unwrap();
        assert!(
            last.is_none_or(|last| seq > last),
            "in order, no duplicates"
        );
        last = Some(seq);
        received += 1;
    }
    assert!(
        received < EVENTS,
        "events were dropped for the slow subscriber ({received} of {EVENTS} arrived)"
    );
    assert!(received > 0);
}

/// A subscriber that stops reading: what it cannot take waits in its outbox, where `outbox_max` counts it, not in
/// the kernel (`limits.tcp_unsent_max`, Linux `TCP_NOTSENT_LOWAT`), so it is cut off as a slow consumer once 1 MiB
/// is queued there, having been sent only what its receive buffer and 16 KiB unsent hold (141-153 of the 3000
/// events here). With the kernel left alone, loopback TCP takes all 3 MB into growing send buffers, and the
/// subscriber is never cut off.
#[test]
fn a_subscriber_that_stops_reading_leaves_its_backlog_in_the_router() {
    let router = TestRouter::start(
        r#"
[limits]
outbox_max = 1048576
tcp_unsent_max = 16384

[[listeners]]
listen = "127.0.0.1:0"
transports = ["websocket"]
metrics = "/metrics"
"#,
    );
    let mut slow = Client::rawsocket(router.rs, Serializer::Json);
    slow.join();
    slow.send(r#"[32, 1, {}, "com.backlog"]"#);
    assert_eq!(slow.expect()[0], 33);
    let mut publisher = Client::rawsocket(router.rs, Serializer::Json);
    publisher.join();
    const EVENTS: u64 = 3000;
    let padding = "x".repeat(1000);
    for seq in 0..EVENTS {
        publisher.send(&format!(
            r#"[16, {}, {{}}, "com.backlog", [{seq}, "{padding}"]]"#,
            seq + 1
        ));
    }
    publisher.send(r#"[16, 99999, {"acknowledge": true}, "com.backlog.done", []]"#);
    assert_eq!(publisher.expect()[0], 17);
    // The subscriber's shard may still be delivering: it is cut off once its outbox passes 1 MiB.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sample(
        &scrape(router.tcp_address(3)),
        "kreisel_slow_consumers_total",
    ) < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "not cut off as a slow consumer within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // It reads now: what the kernel held for it, in order, then the router's close.
    let seen = slow.expect_close();
    for (seq, event) in seen.iter().enumerate() {
        assert_eq!(event[0], 36);
        assert_eq!(event[4][0], seq as u64, "in order, none missing");
    }
    // The kernel held at most the subscriber's receive buffer as it starts (tcp_rmem's default: it grows only
    // for a reader), the 16 KiB unsent, and one write's overshoot of that (a segment of 64 KiB at most).
    let rmem_default = kreisel_tests::tcp_mem_setting("/proc/sys/net/ipv4/tcp_rmem", 1);
    let bound = (rmem_default + 16_384 + 65_536) / 1000;
    let received = seen.len();
    assert!(received > 0);
    assert!(
        received <= bound,
        "the kernel held {received} of {EVENTS} events of 1 KB for a subscriber that read nothing (bound {bound})"
    );
}

#[test]
fn a_full_realm_refuses_further_sessions_with_not_authorized() {
    let router = TestRouter::start("[limits]\nsessions_per_realm_max = 1");
    let mut first = Client::rawsocket(router.rs, Serializer::Json);
    first.join();
    let mut second = Client::websocket(router.ws, Serializer::MsgPack);
    second.send(r#"[1, "realm1", {"roles": {"caller": {}}}]"#);
    let seen = second.expect_close();
    assert_eq!(seen.last().expect("ABORT")[2], "wamp.error.not_authorized");
    // The first session is unaffected.
    first.send(r#"[48, 1, {}, "com.nobody", []]"#);
    assert_eq!(first.expect()[4], "wamp.error.no_such_procedure");
}
