//! The findings of an attack run, each replayed against the `kreisel` binary over real sockets: what used to
//! crash, freeze or bloat the router, or let a role past its rules, and what happens now. Each test also checks
//! that the router still serves a well-behaved session afterwards. Memory is the router process's resident set
//! (/proc), compared with the budgets its configuration sets (docs/SECURITY.md states the formula).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use base64::Engine as _;
use common::*;
use serde_json::{json, Value};

const MIB: usize = 1 << 20;

/// One listener for RawSocket, WebSocket and the metrics page.
/// Shards of the routers these tests start: fixed (not one per core), so that the memory bounds below are the
/// same on every machine, and several, so that the attacks cross shards.
const SHARDS: usize = 2;

fn config(extra: &str) -> String {
    format!(
        r#"
[router]
shards = {SHARDS}

[[listeners]]
listen = "127.0.0.1:0"
transports = ["websocket", "rawsocket"]
metrics = "/metrics"

{extra}
"#
    )
}

/// A fresh session joins realm1 and publishes with acknowledgment: the router still serves.
fn assert_alive(addr: SocketAddr) {
    let mut fresh = Wamp::join(addr, "realm1");
    fresh.send(r#"[16, 1, {"acknowledge": true}, "com.alive", []]"#);
    assert_eq!(fresh.recv()[0], 17, "a fresh session is served");
}

/// The value of a counter or gauge on the metrics page.
fn metric(addr: SocketAddr, name: &str) -> f64 {
    let mut http = TcpStream::connect(addr).unwrap();
    http.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    http.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut page = String::new();
    let _ = http.read_to_string(&mut page);
    page.lines()
        .find_map(|line| line.strip_prefix(&format!("kreisel_{name} ")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no kreisel_{name} in:\n{page}"))
}

fn error_uri(reply: &Value) -> &str {
    assert_eq!(reply[0], 8, "expected ERROR, got {reply}");
    reply[4].as_str().unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------------------------
// 1 and 2: URIs cannot crash or freeze the routing thread.

/// Two wildcard patterns of 40,000 components and a publication to match them used to overflow the routing
/// thread's stack (a recursion per component). With the size bounds raised so the attack reaches the matching
/// code, it matches without recursion; with the default bounds it is refused before any lookup.
#[test]
fn deep_wildcard_patterns_do_not_crash_the_router() {
    let router = start(&config(
        "[limits]\nuri_max = 200000\nuri_components_max = 100000\nuri_bytes_per_session_max = 67108864",
    ));
    let addr = router.addresses[0];
    let deep = vec!["a"; 40_000].join(".");
    let any = ".".repeat(39_999);
    let mut attacker = Wamp::join(addr, "realm1");
    for pattern in [&deep, &any] {
        let reply = attacker.subscribe(pattern, r#"{"match": "wildcard"}"#);
        assert_eq!(reply[0], 33, "SUBSCRIBED");
    }
    attacker.send(&format!(
        r#"[16, 2, {{"acknowledge": true, "exclude_me": false}}, "{deep}", []]"#
    ));
    let mut kinds: Vec<u64> = (0..3)
        .map(|_| attacker.recv()[0].as_u64().unwrap())
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, [17, 36, 36], "PUBLISHED and one EVENT per pattern");
    // The dealer's lookup walks the same way.
    attacker.send(&format!(r#"[64, 3, {{"match": "wildcard"}}, "{any}"]"#));
    assert_eq!(attacker.recv()[0], 65);
    let mut caller = Wamp::join(addr, "realm1");
    caller.send(&format!(r#"[48, 4, {{}}, "{deep}", []]"#));
    assert_eq!(attacker.recv()[0], 68, "INVOCATION");
    assert_alive(addr);

    let router = start(&config(""));
    let addr = router.addresses[0];
    let mut attacker = Wamp::join(addr, "realm1");
    let reply = attacker.subscribe(&deep, r#"{"match": "wildcard"}"#);
    assert_eq!(error_uri(&reply), "wamp.error.invalid_uri");
    assert!(reply[5][0].as_str().unwrap().contains("limits.uri_max"));
    assert_alive(addr);
}

/// A publication to `com.` followed by one component of a million bytes, with a prefix subscription present,
/// used to stall every session for 98 s (a hash lookup per string prefix of the component, O(n²)); the same
/// through a prefix registration and a CALL. Matching is linear now: with the bounds raised to let such URIs in,
/// five of each are answered (a reply within the client's 10 s read timeout is all this checks; the benchmark
/// `trie` measures the cost).
#[test]
fn long_components_do_not_freeze_the_router() {
    let router = start(&config(
        "[limits]\nmessage_max = 4194304\noutbox_max = 8388608\nuri_max = 2097152",
    ));
    let addr = router.addresses[0];
    let mut subscriber = Wamp::join(addr, "realm1");
    assert_eq!(
        subscriber.subscribe("com.", r#"{"match": "prefix"}"#)[0],
        33
    );
    subscriber.send(r#"[64, 2, {"match": "prefix"}, "com."]"#);
    assert_eq!(subscriber.recv()[0], 65);
    let topic = format!("com.{}", "a".repeat(MIB));
    let mut attacker = Wamp::join(addr, "realm1");
    for request in 1..=5 {
        attacker.send(&format!(
            r#"[16, {request}, {{"acknowledge": true}}, "{topic}", []]"#
        ));
        assert_eq!(attacker.recv()[0], 17, "PUBLISHED");
        assert_eq!(subscriber.recv()[0], 36, "EVENT");
    }
    for request in 10..15 {
        attacker.send(&format!(r#"[48, {request}, {{}}, "{topic}", []]"#));
        let invocation = subscriber.recv();
        assert_eq!(invocation[0], 68, "INVOCATION");
        subscriber.send(&format!("[70, {}, {{}}, [\"ok\"]]", invocation[1]));
        assert_eq!(attacker.recv()[0], 50, "RESULT");
    }
    assert_alive(addr);
}

// ---------------------------------------------------------------------------------------------------------------
// 3 and 4: patterns and testaments obey permissions, as the shipped example says.

/// `examples/auth.toml` as shipped, on a free port.
fn auth_example() -> Running {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/auth.toml");
    let text = std::fs::read_to_string(path).expect("examples/auth.toml");
    let text = text.replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"");
    assert!(text.contains("127.0.0.1:0"), "the example's listener moved");
    start(&text)
}

/// Joins realm `app` as `authid` with its credential (ticket or WAMP-CRA), or anonymously without one.
fn join_app(addr: SocketAddr, credential: Option<(&str, &str, &str)>) -> Wamp {
    let mut wamp = Wamp::connect(addr);
    let Some((method, authid, secret)) = credential else {
        wamp.send(&format!(r#"[1, "app", {{"roles": {ROLES}}}]"#));
        assert_eq!(wamp.recv()[0], 2);
        return wamp;
    };
    wamp.send(&format!(
        r#"[1, "app", {{"roles": {ROLES}, "authmethods": ["{method}"], "authid": "{authid}"}}]"#
    ));
    let challenge = wamp.recv();
    assert_eq!(challenge[0], 4, "{challenge}");
    let signature = match method {
        "wampcra" => {
            let text = challenge[2]["challenge"].as_str().unwrap();
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
            base64::engine::general_purpose::STANDARD
                .encode(ring::hmac::sign(&key, text.as_bytes()).as_ref())
        }
        _ => secret.to_owned(),
    };
    wamp.send(&json!([5, signature, {}]).to_string());
    let welcome = wamp.recv();
    assert_eq!(welcome[0], 2, "{welcome}");
    wamp
}

const BROWSER: Option<(&str, &str, &str)> =
    Some(("ticket", "browser", "correct-horse-battery-staple"));
const BILLING: Option<(&str, &str, &str)> =
    Some(("wampcra", "billing", "s3cr3t-shared-with-billing"));

/// The topics of the EVENTs in `messages` (the tests publish the topic as the only argument).
fn event_topics(messages: &[Value]) -> Vec<String> {
    (messages.iter())
        .filter(|m| m[0] == 36)
        .map(|m| m[4][0].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Reads until the marker event (topic `app.public.marker`) arrives; returns what came before it.
fn until_marker(wamp: &mut Wamp) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let message = wamp.recv();
        if message[0] == 36 && message[4][0] == "app.public.marker" {
            return seen;
        }
        seen.push(message);
    }
}

#[test]
fn patterns_obey_the_roles_of_the_shipped_example() {
    let router = auth_example();
    let addr = router.addresses[0];
    let mut backend = join_app(addr, BILLING);
    let mut frontend = join_app(addr, BROWSER);
    let mut guest = join_app(addr, None);
    // Retained before anyone subscribes.
    for topic in ["app.admin.users", "app.news.retained"] {
        backend.send(&format!(
            r#"[16, 1, {{"retain": true}}, "{topic}", ["{topic}"]]"#
        ));
    }
    // The example's comment: "nothing under app.admin." for the frontend. Its rule for app. allows subscribing,
    // so a prefix subscription to app. is accepted, but reaches only what the rules allow; app.admin. itself is
    // refused, and so is a pattern reaching nothing the guest may subscribe to.
    let options = r#"{"match": "prefix", "get_retained": true}"#;
    assert_eq!(frontend.subscribe("app.", options)[0], 33);
    let retained = until_marker_after(&mut backend, &mut frontend);
    assert_eq!(
        event_topics(&retained),
        ["app.news.retained"],
        "get_retained"
    );
    let reply = frontend.subscribe("app.admin.", r#"{"match": "prefix"}"#);
    assert_eq!(error_uri(&reply), "wamp.error.not_authorized");
    assert_eq!(guest.subscribe("app.", r#"{"match": "prefix"}"#)[0], 33);
    let reply = guest.subscribe("app.admin.", r#"{"match": "prefix"}"#);
    assert_eq!(error_uri(&reply), "wamp.error.not_authorized");
    for topic in [
        "app.admin.users",
        "app.news.1",
        "app.public.2",
        "app.admin.x.y",
    ] {
        backend.send(&format!(r#"[16, 2, {{}}, "{topic}", ["{topic}"]]"#));
    }
    backend.send(r#"[16, 3, {}, "app.public.marker", ["app.public.marker"]]"#);
    assert_eq!(
        event_topics(&until_marker(&mut frontend)),
        ["app.news.1", "app.public.2"]
    );
    assert_eq!(event_topics(&until_marker(&mut guest)), ["app.public.2"]);

    // "app.chat: subscribers see who wrote": the rule discloses the frontend's identity.
    let mut watcher = join_app(addr, BILLING);
    assert_eq!(watcher.subscribe("app.chat", "{}")[0], 33);
    frontend.send(r#"[16, 4, {}, "app.chat", ["hi"]]"#);
    let event = watcher.recv();
    assert_eq!(event[3]["publisher_authid"], "browser", "{event}");
    // A subscriber's own request to be told publishers needs the role's `identify`: the frontend has none.
    let reply = frontend.subscribe(
        "app.news.",
        r#"{"match": "prefix", "disclose_publisher": true}"#,
    );
    assert_eq!(error_uri(&reply), "wamp.error.option_not_allowed");

    // "app.orders.place: the callee sees who ordered".
    backend.send(r#"[64, 5, {}, "app.orders.place"]"#);
    assert_eq!(backend.recv()[0], 65);
    frontend.send(r#"[48, 6, {}, "app.orders.place", []]"#);
    let invocation = backend.recv();
    assert_eq!(invocation[0], 68, "{invocation}");
    assert_eq!(invocation[3]["caller_authid"], "browser");
}

/// Publishes a marker and returns what `subscriber` got before it.
fn until_marker_after(publisher: &mut Wamp, subscriber: &mut Wamp) -> Vec<Value> {
    publisher.send(r#"[16, 9, {}, "app.public.marker", ["app.public.marker"]]"#);
    until_marker(subscriber)
}

/// A pattern registration on an exact register grant used to capture calls to other procedures, with their
/// arguments; a testament used to be published (and retained) on any topic by a session that may publish
/// nowhere.
#[test]
fn registrations_and_testaments_obey_permissions() {
    let router = start(&config(
        r#"
[[realms]]
name = "realm1"

[[realms]]
name = "app"
anonymous_role = "device"
anonymous = true

[[realms.principals]]
authid = "svc"
role = "backend"
ticket = "svc-ticket"

[[realms.roles]]
name = "device"
permissions = [
  { uri = "app.device.status", allow = ["register"] },
  { uri = "wamp.session.add_testament", allow = ["call"] },
]

[[realms.roles]]
name = "backend"
permissions = [{ uri = "", match = "prefix", allow = ["call", "register", "publish", "subscribe"] }]
"#,
    ));
    let addr = router.addresses[0];
    let mut backend = join_app(addr, Some(("ticket", "svc", "svc-ticket")));
    let mut device = join_app(addr, None);
    device.send(r#"[64, 1, {"match": "prefix"}, "app.device.status"]"#);
    assert_eq!(
        device.recv()[0],
        65,
        "REGISTERED: allowed for one procedure it can reach"
    );
    backend.send(r#"[48, 2, {}, "app.device.status.secret", ["password"]]"#);
    assert_eq!(
        error_uri(&backend.recv()),
        "wamp.error.no_such_procedure",
        "the device does not get calls it may not register"
    );
    backend.send(r#"[48, 3, {}, "app.device.status", ["fine"]]"#);
    let invocation = device.recv();
    assert_eq!(invocation[0], 68, "{invocation}");
    device.send(&format!("[70, {}, {{}}, []]", invocation[1]));
    assert_eq!(backend.recv()[0], 50, "RESULT");

    let reply = backend.subscribe("app.", r#"{"match": "prefix"}"#);
    assert_eq!(reply[0], 33, "{reply}");
    device.send(
        r#"[48, 4, {}, "wamp.session.add_testament", ["app.alarm", ["gone"], {}], {"publish_options": {"retain": true}}]"#,
    );
    assert_eq!(error_uri(&device.recv()), "wamp.error.not_authorized");
    drop(device);
    backend.send(r#"[32, 5, {"get_retained": true}, "app.alarm"]"#);
    let reply = backend.recv();
    assert_eq!(reply[0], 33, "{reply}");
    backend.send(r#"[16, 6, {"acknowledge": true, "exclude_me": false}, "app.marker", []]"#);
    let next = backend.recv();
    assert_eq!(
        next[0], 36,
        "only the marker: no testament, none retained ({next})"
    );
    assert_eq!(backend.recv()[0], 17);
}

// ---------------------------------------------------------------------------------------------------------------
// 5: memory a peer can make the router hold.

/// Runs `attack` and returns how much the router's resident memory grew.
fn growth(router: &Running, attack: impl FnOnce()) -> usize {
    let before = rss(router);
    attack();
    let grown = rss(router).saturating_sub(before);
    eprintln!("router RSS: {before} bytes before the attack, grown by {grown}");
    grown
}

/// A guest whose every PUBLISH is refused, to 300 unique topics of a million bytes each, used to leave 1.4 GiB
/// (per 1500) in the authorization cache, kept after it left. The cache is bounded in bytes now (4 MiB per
/// realm).
#[test]
fn refused_publications_do_not_grow_the_authorization_cache() {
    let router = start(&config(
        r#"
[limits]
message_max = 2097152
outbox_max = 2097152
uri_max = 1100000

[[realms]]
name = "realm1"
anonymous_role = "guest"

[[realms.roles]]
name = "guest"
permissions = [{ uri = "com.", match = "prefix", allow = ["subscribe"] }]
"#,
    ));
    let addr = router.addresses[0];
    let grown = growth(&router, || {
        let mut guest = Wamp::join(addr, "realm1");
        for i in 0..300 {
            let topic = format!("com.{i}.{}", "x".repeat(MIB));
            guest.send(&format!(r#"[16, {}, {{}}, "{topic}", []]"#, i + 1));
        }
        guest.send(r#"[16, 999, {"acknowledge": true}, "com.last", []]"#);
        assert_eq!(error_uri(&guest.recv()), "wamp.error.not_authorized");
    });
    assert!(grown < 16 * MIB, "the router grew by {grown} bytes");
}

/// 64 testaments of a million bytes each used to take 2 GiB (held as value trees, 32 times their size). They
/// are held as the bytes they arrived as now, and a session's testaments are bounded in bytes.
#[test]
fn testaments_are_bounded_in_bytes() {
    let router = start(&config(
        "[limits]\nmessage_max = 2097152\noutbox_max = 2097152",
    ));
    let addr = router.addresses[0];
    let blob = "x".repeat(MIB);
    let grown = growth(&router, || {
        let mut attacker = Wamp::join(addr, "realm1");
        let mut refused = 0;
        for i in 0..64 {
            attacker.send(&format!(
                r#"[48, {}, {{}}, "wamp.session.add_testament", ["com.gone", ["{blob}"], {{}}]]"#,
                i + 1
            ));
            let reply = attacker.recv();
            if reply[0] == 8 {
                assert_eq!(error_uri(&reply), "kreisel.error.limit_exceeded");
                refused += 1;
            }
        }
        assert_eq!(refused, 64, "a 1 MB testament is over the 64 KiB budget");
        attacker.send(&format!(
            r#"[48, 99, {{}}, "wamp.session.add_testament", ["com.gone", ["{}"], {{}}]]"#,
            "y".repeat(60_000)
        ));
        assert_eq!(attacker.recv()[0], 50, "one that fits is taken");
    });
    assert!(grown < 16 * MIB, "the router grew by {grown} bytes");
}

/// Thousands of many-component wildcard subscriptions from one session: refused once the session's
/// subscriptions would hold more than `uri_bytes_per_session_max`, and the router holds about that much.
#[test]
fn subscriptions_are_bounded_in_bytes_per_session() {
    let router = start(&config("[limits]\nuri_bytes_per_session_max = 4194304"));
    let addr = router.addresses[0];
    let component = "c".repeat(14);
    let mut accepted = 0usize;
    let grown = growth(&router, || {
        let mut attacker = Wamp::join(addr, "realm1");
        for i in 0..2000 {
            let pattern = format!("{i}.{}", vec![component.as_str(); 63].join("."));
            let reply = attacker.subscribe(&pattern, r#"{"match": "wildcard"}"#);
            if reply[0] == 33 {
                accepted += 1;
            } else {
                assert_eq!(error_uri(&reply), "kreisel.error.limit_exceeded");
            }
        }
    });
    assert!(accepted > 100 && accepted < 2000, "{accepted} accepted");
    assert!(
        grown < 4 * MIB + 4 * MIB,
        "the router grew by {grown} bytes for {accepted} subscriptions"
    );
    assert_alive(addr);
}

/// 400 connections that complete the transport handshake and then announce a frame of a mebibyte minus one
/// before joining used to make the router buffer 407 MiB. Before WELCOME a frame may carry 64 KiB: the header
/// alone gets the connection closed.
#[test]
fn large_frames_before_welcome_are_refused_at_their_header() {
    let router = start(&config(""));
    let addr = router.addresses[0];
    let mut streams = Vec::new();
    let grown = growth(&router, || {
        for _ in 0..200 {
            let mut raw = rawsocket_json(addr);
            let len = (MIB - 1) as u32;
            let mut frame = len.to_be_bytes().to_vec();
            frame[0] = 0;
            frame.extend_from_slice(&[b' '; 4096]);
            raw.write_all(&frame).unwrap();
            streams.push(Wamp { stream: raw });
            let mut ws = websocket_upgrade(addr, None);
            // A masked binary frame header announcing 1 MiB - 1 (64-bit length form).
            let mut header = vec![0x82, 0xFF];
            header.extend_from_slice(&((MIB - 1) as u64).to_be_bytes());
            header.extend_from_slice(&[1, 2, 3, 4]);
            header.extend_from_slice(&[0u8; 4096]);
            ws.write_all(&header).unwrap();
            streams.push(Wamp { stream: ws });
        }
        for wamp in &mut streams {
            assert!(wamp.closed(), "closed at the header");
        }
    });
    assert!(grown < 16 * MIB, "the router grew by {grown} bytes");
    assert_alive(addr);
}

/// Subscribers that never read, each on a topic of its own, used to hold up to `outbox_max` each (30 of
/// them: 353 MiB). All outboxes together are bounded by `memory_max` now: the largest are cut first.
#[test]
fn outboxes_together_are_bounded_by_memory_max() {
    let router = start(&config(
        "[limits]\nmessage_max = 2097152\noutbox_max = 16777216\nmemory_max = 33554432",
    ));
    let addr = router.addresses[0];
    let payload = "z".repeat(MIB);
    let mut sleepers = Vec::new();
    let grown = growth(&router, || {
        for i in 0..30 {
            let mut sleeper = Wamp::join(addr, "realm1");
            assert_eq!(sleeper.subscribe(&format!("com.sleepy.{i}"), "{}")[0], 33);
            // Never read again; a small receive buffer keeps the kernel from taking much.
            sleepers.push(sleeper);
        }
        let mut publisher = Wamp::join(addr, "realm1");
        for round in 0..8 {
            for i in 0..30 {
                publisher.send(&format!(
                    r#"[16, {}, {{}}, "com.sleepy.{i}", ["{payload}"]]"#,
                    round * 100 + i + 1
                ));
            }
        }
        publisher.send(r#"[16, 9999, {"acknowledge": true}, "com.done", []]"#);
        assert_eq!(publisher.recv()[0], 17);
    });
    assert!(metric(addr, "memory_cuts_total") >= 1.0);
    assert!(metric(addr, "outbox_bytes") <= (32 * MIB) as f64);
    // SECURITY.md's terms that apply: memory_max, what each shard may have in flight to the others (12 MiB of
    // buffers), and allocator slack.
    assert!(
        grown < 32 * MIB + SHARDS * 12 * MIB + 24 * MIB,
        "the router grew by {grown} bytes (memory_max 32 MiB, {SHARDS} shards)"
    );
    assert_alive(addr);
}

// ---------------------------------------------------------------------------------------------------------------
// 6: connection fairness.

/// Sockets that never handshake used to hold the whole `connections_max`, locking everyone else out. The
/// oldest connection that has not joined is closed to make room now.
#[test]
fn idle_sockets_cannot_lock_clients_out() {
    let router = start(&config("[limits]\nconnections_max = 20"));
    let addr = router.addresses[0];
    let mut idle: Vec<TcpStream> = (0..20)
        .map(|_| {
            let stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // Each new session (kept open) takes the place of an idle socket.
    let joined: Vec<Wamp> = (0..3).map(|_| Wamp::join(addr, "realm1")).collect();
    assert_alive(addr);
    // The oldest idle sockets made room.
    let mut buf = [0u8; 16];
    assert!(matches!(idle[0].read(&mut buf), Ok(0) | Err(_)));
    let evicted = metric(addr, "evicted_unjoined_total");
    assert!(evicted >= 4.0, "{evicted} evicted");
    drop(joined);
}

#[test]
fn connections_per_ip_are_bounded() {
    let router = start(&config("[limits]\nconnections_per_ip_max = 3"));
    let addr = router.addresses[0];
    let held: Vec<Wamp> = (0..3).map(|_| Wamp::join(addr, "realm1")).collect();
    let mut fourth = TcpStream::connect(addr).unwrap();
    fourth
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = fourth.write_all(&[0x7F, 0xF1, 0, 0]);
    let mut buf = [0u8; 4];
    assert!(
        matches!(fourth.read(&mut buf), Ok(0) | Err(_)),
        "closed at once"
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    assert_alive(addr);
    assert_eq!(metric(addr, "refused_per_ip_total"), 1.0);
}

/// A joined session trickling one frame forever (with `idle_timeout_ms` off) is closed after
/// `frame_timeout_ms`.
#[test]
fn a_frame_that_never_completes_is_cut_off() {
    let router = start(&config("[limits]\nframe_timeout_ms = 300"));
    let addr = router.addresses[0];
    let mut trickler = Wamp::join(addr, "realm1");
    trickler.stream.write_all(&[0, 0, 0, 100]).unwrap();
    for byte in b"[16, 1" {
        // The router may have closed the connection already: then the write fails, which is fine.
        let _ = trickler.stream.write_all(&[*byte]);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(trickler.closed(), "closed by the frame timeout");
    assert!(metric(addr, "frame_timeouts_total") >= 1.0);
    assert_alive(addr);
}

/// Incomplete frames of all connections together are bounded by `partial_frames_max`.
#[test]
fn incomplete_frames_together_are_bounded() {
    let router = start(&config(
        "[limits]\nmessage_max = 65536\noutbox_max = 65536\npartial_frames_max = 150000",
    ));
    let addr = router.addresses[0];
    let mut senders: Vec<Wamp> = (0..3).map(|_| Wamp::join(addr, "realm1")).collect();
    for sender in &mut senders {
        sender.stream.write_all(&[0, 0, 0xFD, 0xE8]).unwrap(); // 65000 bytes announced
        sender.stream.write_all(&[b' '; 60_000]).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        senders[2].closed(),
        "the connection over the budget is closed"
    );
    assert_eq!(metric(addr, "partial_frames_refused_total"), 1.0);
    assert_alive(addr);
}

// ---------------------------------------------------------------------------------------------------------------
// 7 and 8: no principal enumeration; Origin checks.

/// The CHALLENGE for a known authid (salted or not) and for unknown ones look alike: the same fields, no role,
/// and a salt (or none) shaped like a real principal's.
#[test]
fn challenges_do_not_tell_known_authids_from_unknown_ones() {
    let router = auth_example();
    let addr = router.addresses[0];
    let challenge = |authid: &str| {
        let mut wamp = Wamp::connect(addr);
        wamp.send(&format!(
            r#"[1, "app", {{"roles": {ROLES}, "authmethods": ["wampcra"], "authid": "{authid}"}}]"#
        ));
        let challenge = wamp.recv();
        assert_eq!(challenge[0], 4, "{challenge}");
        challenge[2].clone()
    };
    let fields = |extra: &Value| -> Vec<String> {
        let text: Value = serde_json::from_str(extra["challenge"].as_str().unwrap()).unwrap();
        let mut keys: Vec<String> = text.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    let reports = challenge("reports");
    let billing = challenge("billing");
    assert_eq!(fields(&reports), fields(&billing));
    assert!(!fields(&reports).contains(&"authrole".to_owned()));
    let mut shapes = std::collections::HashSet::new();
    for i in 0..30 {
        let unknown = challenge(&format!("intruder{i}"));
        assert_eq!(fields(&unknown), fields(&reports));
        match unknown.get("salt") {
            None => shapes.insert("unsalted"),
            Some(salt) => {
                assert_eq!(unknown["iterations"], reports["iterations"]);
                assert_eq!(unknown["keylen"], reports["keylen"]);
                assert_eq!(
                    salt.as_str().unwrap().len(),
                    reports["salt"].as_str().unwrap().len()
                );
                shapes.insert("salted")
            }
        };
    }
    assert_eq!(
        shapes.len(),
        2,
        "unknown authids look salted or not, like the realm's principals"
    );
}

/// An HTTP upgrade to `/ws` with an optional Origin header; returns the stream after the 101 (or panics).
fn websocket_upgrade(addr: SocketAddr, origin: Option<&str>) -> TcpStream {
    let (status, stream) = upgrade_status(addr, origin);
    assert_eq!(status, 101);
    stream
}

fn upgrade_status(addr: SocketAddr, origin: Option<&str>) -> (u16, TcpStream) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: wamp.2.json\r\n{origin}\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read_exact(&mut byte).is_err() {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head}"));
    (status, stream)
}

#[test]
fn websocket_origins_are_checked_where_configured() {
    let router = start(
        r#"
[[listeners]]
listen = "127.0.0.1:0"
transports = ["websocket", "rawsocket"]
metrics = "/metrics"
allowed_origins = ["https://app.example.com", "https://*.example.org"]
"#,
    );
    let addr = router.addresses[0];
    assert_eq!(
        upgrade_status(addr, Some("https://evil.example.com")).0,
        403
    );
    assert_eq!(upgrade_status(addr, Some("null")).0, 403);
    assert_eq!(upgrade_status(addr, Some("https://app.example.com")).0, 101);
    assert_eq!(upgrade_status(addr, Some("https://a.example.org")).0, 101);
    assert_eq!(
        upgrade_status(addr, None).0,
        101,
        "clients that are not browsers"
    );
    assert_eq!(metric(addr, "origins_refused_total"), 2.0);
    wait_for_log(&router, "is not allowed to connect here", 2);
}
