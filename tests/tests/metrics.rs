//! The metrics endpoint over real sockets: a listener's `metrics` path answers an HTTP GET with the router's
//! counters in the Prometheus text format and closes; the counters follow what happened; a listener without it
//! answers as before. The format is also checked with the Prometheus project's own parser (prometheus_client from
//! PyPI) after an autobahn-python session (`tests/interop/metrics_check.py`). The health probes on the same listener
//! are read with python `requests` while the router serves and while it drains (`tests/interop/health_check.py`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use kreisel_codec::Serializer;
use kreisel_tests::programs::python_check;
use kreisel_tests::{sample, Client, TestRouter};

/// The default test router plus a WebSocket listener (index 3) that serves the metrics on `/metrics`.
fn router() -> TestRouter {
    TestRouter::start(
        r#"
[[listeners]]
listen = "127.0.0.1:0"
transports = ["websocket"]
metrics = "/metrics"
"#,
    )
}

/// One HTTP/1.1 GET of `path`; the whole response (the router closes the connection after it).
fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("send request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("the response, then the router closes");
    response
}

#[test]
fn counters_follow_what_happened() {
    let router = router();
    let metrics = router.tcp_address(3);
    let before = get(metrics, "/metrics");
    assert!(before.starts_with("HTTP/1.1 200 OK\r\n"), "{before}");
    assert!(
        before.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
        "{before}"
    );
    assert_eq!(sample(&before, "kreisel_sessions"), 0.0);
    assert_eq!(sample(&before, "kreisel_publications_total"), 0.0);

    let mut client = Client::websocket(router.ws, Serializer::Json);
    client.join();
    client.send(r#"[16, 1, {"acknowledge": true}, "com.example.counted", [1]]"#);
    assert_eq!(client.expect()[0], 17, "PUBLISHED");
    // A message before HELLO is a protocol violation: the other connection's ABORT is counted too.
    let mut rude = Client::websocket(router.ws, Serializer::Json);
    rude.send(r#"[16, 1, {}, "com.example.counted", [1]]"#);
    rude.expect_close();

    let after = get(metrics, "/metrics?fresh=1");
    assert_eq!(sample(&after, "kreisel_sessions"), 1.0);
    assert_eq!(sample(&after, "kreisel_sessions_joined_total"), 1.0);
    assert_eq!(sample(&after, "kreisel_publications_total"), 1.0);
    assert_eq!(sample(&after, "kreisel_protocol_violations_total"), 1.0);
    assert_eq!(
        sample(&after, r#"kreisel_realm_sessions{realm="realm1"}"#),
        1.0
    );
    assert_eq!(sample(&after, "kreisel_calls_pending"), 0.0);
    assert!(sample(&after, "kreisel_connections_accepted_total") >= 4.0);
    assert!(sample(&after, "kreisel_connections") >= 2.0, "{after}");
    // The page is what Content-Length says.
    let (head, body) = after.split_once("\r\n\r\n").expect("head and body");
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .expect("Content-Length");
    assert_eq!(length.parse::<usize>().expect("a number"), body.len());
}

#[test]
fn only_the_configured_listener_serves_metrics() {
    let router = router();
    let plain = get(router.ws, "/metrics");
    assert!(plain.starts_with("HTTP/1.1 404 "), "{plain}");
    // The metrics listener still speaks WAMP on its WebSocket path.
    let mut client = Client::websocket(router.tcp_address(3), Serializer::MsgPack);
    client.join();
}

#[test]
fn prometheus_client_parses_the_page() {
    let router = router();
    let metrics = format!("http://{}/metrics", router.tcp_address(3));
    python_check("metrics_check.py", &[&router.ws_url(), &metrics]);
}

/// `/healthz` and `/readyz` read with python `requests`: 200 while serving; during a lame-duck drain `/readyz` is 503
/// with the reason and `/healthz` stays 200.
#[test]
fn requests_reads_the_health_probes() {
    let router = TestRouter::start(
        r#"
[limits]
lame_duck_ms = 60000

[[listeners]]
listen = "127.0.0.1:0"
transports = ["websocket"]
metrics = "/metrics"
"#,
    );
    let base = format!("http://{}", router.tcp_address(3));
    python_check("health_check.py", &["serving", &base, &router.ws_url()]);
    // A joined session keeps the drain going (with nobody connected it would end at once); its GOODBYE comes at
    // the earliest a fifth into the minute.
    let mut client = Client::websocket(router.ws, Serializer::Json);
    client.join();
    assert!(router.drain());
    assert!(!router.drain(), "one drain at a time");
    python_check("health_check.py", &["draining", &base, &router.ws_url()]);
}
