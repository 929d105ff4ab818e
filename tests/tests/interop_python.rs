//! Interop with autobahn-python (pinned in `tests/interop/requirements.txt`, installed by `tests/run.sh` into
//! `tests/.venv`): the check programs in `tests/interop/` run real autobahn sessions (asyncio flavour) against an
//! in-process kreisel over real sockets, and exit 0 only when every check passed.
//!
//! - `pubsub.py`: WELCOME details; events with unicode, nesting, 64-bit integers, floats, booleans, null and
//!   binary compared exactly; args-only, kwargs-only, empty and 256 KiB events; PUBLISHED; publisher exclusion;
//!   unsubscribe; prefix and wildcard subscriptions.
//! - `rpc.py`: calls with the same payloads; concurrent calls; a callee's ApplicationError with URI, args and
//!   kwargs; no_such_procedure; procedure_already_exists; progressive results; unregister; a callee leaving or
//!   dropping its transport with a call pending (wamp.error.canceled).
//! - `cross_serializer.py`: sessions on JSON and MessagePack (and CBOR) exchanging events, calls and errors.
//!
//! Each runs over WebSocket and RawSocket with JSON and MessagePack, one test per combination.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kreisel_tests::TestRouter;

/// The scripts time out by themselves (20 s, with SIGALRM behind it); this is the last resort.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);

fn python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "autobahn-python venv missing: run tests/run.sh (it creates {})",
        python.display()
    );
    python
}

/// Runs `tests/interop/<script> <args>`; fails with its output unless it exited 0 and reported success.
fn run_check(script: &str, args: &[&str]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop");
    let mut child = Command::new(python())
        .arg(dir.join(script))
        .args(args)
        .current_dir(&dir)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
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
        if let Some(status) = child.try_wait().expect("wait for python") {
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
        stdout.contains("PASSED"),
        "{script} {args:?} exited 0 without reporting success:\n{stdout}\n{stderr}"
    );
    // The checks that ran (shown with --nocapture).
    eprintln!("{stdout}");
}

#[derive(Clone, Copy)]
enum Transport {
    WebSocket,
    RawSocket,
}

fn url(router: &TestRouter, transport: Transport) -> String {
    match transport {
        Transport::WebSocket => router.ws_url(),
        Transport::RawSocket => router.rs_url(),
    }
}

fn scenario(script: &str, transport: Transport, serializer: &str) {
    let router = TestRouter::start("");
    run_check(script, &[&url(&router, transport), serializer]);
}

#[test]
fn pubsub_websocket_json() {
    scenario("pubsub.py", Transport::WebSocket, "json");
}

#[test]
fn pubsub_websocket_msgpack() {
    scenario("pubsub.py", Transport::WebSocket, "msgpack");
}

#[test]
fn pubsub_rawsocket_json() {
    scenario("pubsub.py", Transport::RawSocket, "json");
}

#[test]
fn pubsub_rawsocket_msgpack() {
    scenario("pubsub.py", Transport::RawSocket, "msgpack");
}

#[test]
fn rpc_websocket_json() {
    scenario("rpc.py", Transport::WebSocket, "json");
}

#[test]
fn rpc_websocket_msgpack() {
    scenario("rpc.py", Transport::WebSocket, "msgpack");
}

#[test]
fn rpc_rawsocket_json() {
    scenario("rpc.py", Transport::RawSocket, "json");
}

#[test]
fn rpc_rawsocket_msgpack() {
    scenario("rpc.py", Transport::RawSocket, "msgpack");
}

/// JSON over WebSocket and MessagePack over RawSocket, each publishing to and calling the other.
#[test]
fn cross_serializer_json_websocket_msgpack_rawsocket() {
    let router = TestRouter::start("");
    run_check(
        "cross_serializer.py",
        &[&router.ws_url(), &router.rs_url(), "json", "msgpack"],
    );
}

/// The transports the other way round (MessagePack over WebSocket, JSON over RawSocket), with a CBOR session over
/// WebSocket as a third party.
#[test]
fn cross_serializer_msgpack_websocket_json_rawsocket() {
    let router = TestRouter::start("");
    run_check(
        "cross_serializer.py",
        &[
            &router.ws_url(),
            &router.rs_url(),
            "msgpack",
            "json",
            "cbor",
        ],
    );
}
