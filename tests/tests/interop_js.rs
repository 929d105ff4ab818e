//! Interop with autobahn-js from npm (pinned with everything it needs in `tests/interop-js/package-lock.json`,
//! installed by `tests/run.sh` with `npm ci` into `tests/interop-js/node_modules`): the check programs in
//! `tests/interop-js/` run real autobahn-js sessions on Node against an in-process kreisel over real sockets, and
//! exit 0 only when every check passed.
//!
//! - `pubsub.js`: WELCOME details; events with unicode, nesting, integers up to 2^53, floats, booleans, null and
//!   (MessagePack, CBOR) binary compared exactly; args-only, kwargs-only, empty and 256 KiB events; PUBLISHED;
//!   publisher exclusion; unsubscribe; prefix and wildcard subscriptions with `details.topic`.
//! - `rpc.js`: calls with the same payloads; concurrent calls; a pattern registration's `details.procedure`;
//!   callee errors (custom and `wamp.error.*` URIs) with args and kwargs; no_such_procedure;
//!   procedure_already_exists; progressive results; unregister.
//! - `cross_serializer.js`: two autobahn-js sessions on different serializers and transports exchanging events,
//!   calls, errors and progressive results, binary transcoded to and from JSON's `"\u0000"+base64`.
//!
//! Transports × serializers: WebSocket with `wamp.2.json`, `wamp.2.msgpack` and `wamp.2.cbor`; RawSocket over TCP
//! and over a Unix socket with JSON only, because autobahn-js's Node RawSocket transport hard-wires serializer 1
//! (`lib/transport/rawsocket.js`: "We only support JSON so far") — a client limitation, not kreisel's.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kreisel_tests::TestRouter;

/// The scripts time out by themselves (30 s overall, 5 s per step); this is the last resort.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop-js")
}

/// Fails (never skips) when the npm install is missing.
fn require_node_modules() {
    let autobahn = interop_dir().join("node_modules/autobahn/package.json");
    assert!(
        autobahn.exists(),
        "autobahn-js missing ({} not found): run tests/run.sh (it runs `npm ci` in tests/interop-js)",
        autobahn.display()
    );
}

/// Runs `node tests/interop-js/<script> <args>`; fails with its output unless it exited 0 and reported success.
fn run_check(script: &str, args: &[&str]) {
    require_node_modules();
    let dir = interop_dir();
    let mut child = Command::new("node")
        .arg(dir.join(script))
        .args(args)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start node (Node.js 20 or later is required): {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = pipe.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if started.elapsed() > PROCESS_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let Some(status) = status else {
        panic!(
            "{script} {args:?} still running after {PROCESS_TIMEOUT:?}, killed:\n{stdout}\n{stderr}"
        );
    };
    assert!(
        status.success(),
        "{script} {args:?} failed ({status}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(
        stdout.lines().any(|line| line.starts_with("PASSED ")),
        "{script} {args:?} exited 0 without reporting success:\n{stdout}\n{stderr}"
    );
    // The checks that ran (shown with --nocapture).
    eprintln!("{stdout}");
}

#[derive(Clone, Copy)]
enum Transport {
    WebSocket,
    RawSocket,
    RawSocketUnix,
}

fn url(router: &TestRouter, transport: Transport) -> String {
    match transport {
        Transport::WebSocket => router.ws_url(),
        Transport::RawSocket => router.rs_url(),
        Transport::RawSocketUnix => format!("unix:{}", router.unix.display()),
    }
}

fn scenario(script: &str, transport: Transport, serializer: &str) {
    let router = TestRouter::start("");
    run_check(script, &[&url(&router, transport), serializer]);
}

#[test]
fn pubsub_websocket_json() {
    scenario("pubsub.js", Transport::WebSocket, "json");
}

#[test]
fn pubsub_websocket_msgpack() {
    scenario("pubsub.js", Transport::WebSocket, "msgpack");
}

#[test]
fn pubsub_websocket_cbor() {
    scenario("pubsub.js", Transport::WebSocket, "cbor");
}

#[test]
fn pubsub_rawsocket_json() {
    scenario("pubsub.js", Transport::RawSocket, "json");
}

#[test]
fn pubsub_rawsocket_unix_json() {
    scenario("pubsub.js", Transport::RawSocketUnix, "json");
}

#[test]
fn rpc_websocket_json() {
    scenario("rpc.js", Transport::WebSocket, "json");
}

#[test]
fn rpc_websocket_msgpack() {
    scenario("rpc.js", Transport::WebSocket, "msgpack");
}

#[test]
fn rpc_websocket_cbor() {
    scenario("rpc.js", Transport::WebSocket, "cbor");
}

#[test]
fn rpc_rawsocket_json() {
    scenario("rpc.js", Transport::RawSocket, "json");
}

#[test]
fn rpc_rawsocket_unix_json() {
    scenario("rpc.js", Transport::RawSocketUnix, "json");
}

/// MessagePack over WebSocket and JSON over RawSocket, each publishing to and calling the other.
#[test]
fn cross_serializer_msgpack_websocket_json_rawsocket() {
    let router = TestRouter::start("");
    run_check(
        "cross_serializer.js",
        &[&router.ws_url(), "msgpack", &router.rs_url(), "json"],
    );
}

/// CBOR and JSON, both over WebSocket (integers beyond 2^53 - 1 from JSON reach CBOR as integers).
#[test]
fn cross_serializer_cbor_websocket_json_websocket() {
    let router = TestRouter::start("");
    run_check(
        "cross_serializer.js",
        &[&router.ws_url(), "cbor", &router.ws_url(), "json"],
    );
}

/// The two binary serializers: bytes stay bytes.
#[test]
fn cross_serializer_cbor_websocket_msgpack_websocket() {
    let router = TestRouter::start("");
    run_check(
        "cross_serializer.js",
        &[&router.ws_url(), "cbor", &router.ws_url(), "msgpack"],
    );
}
