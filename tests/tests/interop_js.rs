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
//! - `with_python.js` with `python_peer.py`: autobahn-js and autobahn-python (from `tests/.venv`) on different
//!   serializers and transports: an event relayed through the Python session and back, calls and an
//!   ApplicationError across.
//!
//! Transports × serializers: WebSocket with `wamp.2.json`, `wamp.2.msgpack` and `wamp.2.cbor`; RawSocket over TCP
//! and over a Unix socket with JSON only, because autobahn-js's Node RawSocket transport hard-wires serializer 1
//! (`lib/transport/rawsocket.js`: "We only support JSON so far") — a client limitation, not kreisel's.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kreisel_tests::TestRouter;

/// The scripts time out by themselves (30 s overall, 5 s per step); this is the last resort.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop-js")
}

fn python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "autobahn-python venv missing: run tests/run.sh (it creates {})",
        python.display()
    );
    python
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

/// A check program running with its output collected line by line; killed on drop if still running (a failed
/// test leaves no process behind).
struct Check {
    label: String,
    child: Child,
    lines: Receiver<String>,
    stdout: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Check {
    fn spawn(program: &Path, script: &str, args: &[&str]) -> Check {
        let dir = interop_dir();
        let mut child = Command::new(program)
            .arg(dir.join(script))
            .args(args)
            .current_dir(&dir)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let (send, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut pipe = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = pipe.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        });
        Check {
            label: format!("{script} {args:?}"),
            child,
            lines,
            stdout: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// Reads output until a line equal to `line`; panics with the output so far if the program ends or takes
    /// longer than `timeout`.
    fn wait_for_line(&mut self, line: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(got) => {
                    let done = got == line;
                    self.stdout.push(got);
                    if done {
                        return;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "{} did not print {line:?} within {timeout:?}:\n{}",
                        self.label,
                        self.stdout.join("\n")
                    );
                }
            }
        }
    }

    /// Waits for the program to end; fails with its output unless it exited 0 and reported success.
    fn finish(&mut self) {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for check program") {
                break Some(status);
            }
            if started.elapsed() > PROCESS_TIMEOUT {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader thread ends at EOF, so this collects everything the program printed.
        self.stdout.extend(self.lines.iter());
        let stderr = self
            .stderr
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default();
        let (stdout, label) = (self.stdout.join("\n"), &self.label);
        let Some(status) = status else {
            panic!("{label} still running after {PROCESS_TIMEOUT:?}, killed:\n{stdout}\n{stderr}");
        };
        assert!(
            status.success(),
            "{label} failed ({status}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
        assert!(
            stdout.lines().any(|line| line.starts_with("PASSED ")),
            "{label} exited 0 without reporting success:\n{stdout}\n{stderr}"
        );
        // The checks that ran (shown with --nocapture).
        eprintln!("{stdout}");
    }
}

fn node(script: &str, args: &[&str]) -> Check {
    require_node_modules();
    Check::spawn(Path::new("node"), script, args)
}

impl Drop for Check {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `node tests/interop-js/<script> <args>`; fails with its output unless it exited 0 and reported success.
fn run_check(script: &str, args: &[&str]) {
    node(script, args).finish();
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

/// autobahn-js (MessagePack over WebSocket) and autobahn-python (CBOR over RawSocket).
#[test]
fn with_python_msgpack_websocket_python_cbor_rawsocket() {
    with_python(
        Transport::WebSocket,
        "msgpack",
        Transport::RawSocket,
        "cbor",
    );
}

/// autobahn-js (JSON over RawSocket) and autobahn-python (MessagePack over WebSocket).
#[test]
fn with_python_json_rawsocket_python_msgpack_websocket() {
    with_python(
        Transport::RawSocket,
        "json",
        Transport::WebSocket,
        "msgpack",
    );
}

/// autobahn-js (CBOR over WebSocket) and autobahn-python (JSON over WebSocket).
#[test]
fn with_python_cbor_websocket_python_json_websocket() {
    with_python(Transport::WebSocket, "cbor", Transport::WebSocket, "json");
}

fn with_python(js: Transport, js_serializer: &str, py: Transport, py_serializer: &str) {
    require_node_modules();
    let router = TestRouter::start("");
    let mut peer = Check::spawn(
        &python(),
        "python_peer.py",
        &[&url(&router, py), py_serializer],
    );
    peer.wait_for_line("READY", Duration::from_secs(20));
    run_check(
        "with_python.js",
        &[&url(&router, js), js_serializer, py_serializer],
    );
    peer.finish();
}
