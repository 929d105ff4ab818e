//! The HTTP bridge end to end: `tests/interop/http_bridge.py` drives the publisher, caller and webhook services
//! with python-requests and curl, autobahn-python sessions subscribing and answering calls (bearer tickets, signed
//! requests and their replays, wrong signatures, oversize and slow bodies, a callee that never answers,
//! keep-alive); once on the suite's router (1 or 4 shards, see `KREISEL_TEST_SHARDS`) and once on 4 shards.
//! Plus the checks that need exact bytes: pipelined requests, an HTTP client leaving during a call, and the
//! session a service keeps per shard.

use std::io::{Read, Write};

use kreisel_codec::Serializer;
use kreisel_tests::{python_check, tcp, Client, TestRouter};
use serde_json::json;

const SERVICES: &str = r#"
[limits]
message_max = 65536
frame_timeout_ms = 1000

[[realms.roles]]
name = "anonymous"
permissions = [{ uri = "", match = "prefix", allow = ["call", "register", "publish", "subscribe"] }]

[[realms.roles]]
name = "bridge"
permissions = [{ uri = "com.example.", match = "prefix", allow = ["call", "publish"] }]

[[listeners]]
listen = "127.0.0.1:0"
transports = ["http"]

[[listeners.services]]
path = "/publish"
type = "publisher"
realm = "realm1"
role = "bridge"
[[listeners.services.principals]]
key = "app"
ticket = "app-ticket"
secret = "app-secret"

[[listeners.services]]
path = "/call"
type = "caller"
realm = "realm1"
role = "bridge"
timeout_ms = 1000
[[listeners.services.principals]]
key = "app"
ticket = "app-ticket"

[[listeners.services]]
path = "/call200"
type = "caller"
realm = "realm1"
role = "bridge"
errors_as_200 = true

[[listeners]]
listen = "127.0.0.1:0"
transports = ["websocket"]

[[listeners.services]]
path = "/hook"
type = "webhook"
realm = "realm1"
role = "bridge"
topic = "com.example.hook"
[[listeners.services.principals]]
key = "hooks"
ticket = "app-ticket"
"#;

/// The HTTP listener and the WebSocket listener with the webhook (after the three of every test router).
const HTTP: usize = 3;
const WS_HOOK: usize = 4;

fn python(router: &TestRouter) {
    let ws = format!("ws://{}/ws", router.tcp_address(WS_HOOK));
    let http = format!("http://{}", router.tcp_address(HTTP));
    python_check("http_bridge.py", &[&ws, &http]);
}

#[test]
fn python_requests_and_curl() {
    let router = TestRouter::start(SERVICES);
    python(&router);
}

#[test]
fn python_requests_and_curl_on_4_shards() {
    let router = TestRouter::start(&format!("[router]\nshards = 4\n{SERVICES}"));
    python(&router);
}

/// Writes `request` and reads answers until `count` complete responses (by Content-Length) arrived; returns them
/// as (status, body).
fn exchange(stream: &mut std::net::TcpStream, request: &[u8], count: usize) -> Vec<(u16, String)> {
    stream.write_all(request).unwrap();
    let mut buf = Vec::new();
    let mut answers = Vec::new();
    while answers.len() < count {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).expect("an answer in time");
        assert!(n > 0, "closed after {answers:?}");
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            if buf.len() < end + 4 + length {
                break;
            }
            let status = head[9..12].parse().unwrap();
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
            answers.push((status, body));
            buf.drain(..end + 4 + length);
        }
    }
    answers
}

fn call_request(args: &str) -> String {
    let body = format!(r#"{{"procedure": "com.example.echo", "args": {args}}}"#);
    format!(
        "POST /call HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer app-ticket\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A callee on the test client: registers `procedure` and returns (client, registration ID).
fn callee(router: &TestRouter, procedure: &str) -> (Client, u64) {
    let mut callee = Client::websocket(router.ws, Serializer::Json);
    callee.join();
    callee.send(&json!([64, 1, {}, procedure]).to_string());
    let registered = callee.expect();
    assert_eq!(registered[0], 65, "{registered}");
    let registration = registered[2].as_u64().unwrap();
    (callee, registration)
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let router = TestRouter::start(SERVICES);
    let (mut callee, _) = callee(&router, "com.example.echo");
    let mut http = tcp(router.tcp_address(HTTP));
    // Three requests in one write: the second and third wait in the connection's buffer while the first waits
    // for the callee.
    let requests = [
        call_request("[1]"),
        call_request("[2]"),
        call_request("[3]"),
    ]
    .concat();
    http.write_all(requests.as_bytes()).unwrap();
    for i in 1..=3 {
        let invocation = callee.expect();
        assert_eq!(invocation[0], 68, "{invocation}");
        assert_eq!(invocation[4], json!([i]));
        callee.send(&json!([70, invocation[1], {}, invocation[4]]).to_string());
    }
    let answers = exchange(&mut http, b"", 3);
    assert_eq!(
        answers,
        (1..=3)
            .map(|i| (200, format!("{{\"args\":[{i}]}}")))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_client_leaving_during_a_call_cancels_it() {
    let router = TestRouter::start(SERVICES);
    let mut callee = Client::websocket(router.ws, Serializer::Json);
    callee.send(r#"[1, "realm1", {"roles": {"callee": {"features": {"call_canceling": true}}}}]"#);
    assert_eq!(callee.expect()[0], 2);
    callee.send(&json!([64, 1, {}, "com.example.echo"]).to_string());
    assert_eq!(callee.expect()[0], 65);
    let mut http = tcp(router.tcp_address(HTTP));
    http.write_all(call_request("[1]").as_bytes()).unwrap();
    let invocation = callee.expect();
    assert_eq!(invocation[0], 68, "{invocation}");
    drop(http);
    let interrupt = callee.expect();
    assert_eq!(interrupt[0], 69, "INTERRUPT: {interrupt}");
    assert_eq!(interrupt[1], invocation[1]);
}

#[test]
fn each_shard_keeps_one_session_per_service() {
    let router = TestRouter::start(&format!("[router]\nshards = 2\n{SERVICES}"));
    let (mut callee, _) = callee(&router, "com.example.echo");
    // Four connections: two land on each shard (round robin); each asks once.
    let mut callers = std::collections::HashSet::new();
    for i in 0..4 {
        let mut http = tcp(router.tcp_address(HTTP));
        http.write_all(call_request(&format!("[{i}]")).as_bytes())
            .unwrap();
        let invocation = callee.expect();
        callee.send(&json!([70, invocation[1], {}, invocation[4]]).to_string());
        let answers = exchange(&mut http, b"", 1);
        assert_eq!(answers, [(200, format!("{{\"args\":[{i}]}}"))]);
    }
    // The meta API counts realm1's sessions: the callee, this session and one per shard for /call.
    let mut meta = Client::websocket(router.ws, Serializer::Json);
    meta.join();
    meta.send(&json!([48, 1, {}, "wamp.session.list", [["bridge"]]]).to_string());
    let result = meta.expect();
    assert_eq!(result[0], 50, "{result}");
    for id in result[3][0].as_array().unwrap() {
        callers.insert(id.as_u64().unwrap());
    }
    assert_eq!(callers.len(), 2, "one /call session per shard: {result}");
    meta.send(&json!([48, 2, {}, "wamp.session.get", [result[3][0][0]]]).to_string());
    let details = meta.expect();
    assert_eq!(details[3][0]["authid"], "http-caller", "{details}");
    assert_eq!(details[3][0]["authmethod"], "trusted");
}
