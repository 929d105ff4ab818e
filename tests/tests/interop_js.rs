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

use std::time::Duration;

use kreisel_tests::programs::{node_check, node_dir, python, Check};
use kreisel_tests::TestRouter;

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
    node_check(script, &[&url(&router, transport), serializer]);
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
    node_check(
        "cross_serializer.js",
        &[&router.ws_url(), "msgpack", &router.rs_url(), "json"],
    );
}

/// CBOR and JSON, both over WebSocket (integers beyond 2^53 - 1 from JSON reach CBOR as integers).
#[test]
fn cross_serializer_cbor_websocket_json_websocket() {
    let router = TestRouter::start("");
    node_check(
        "cross_serializer.js",
        &[&router.ws_url(), "cbor", &router.ws_url(), "json"],
    );
}

/// The two binary serializers: bytes stay bytes.
#[test]
fn cross_serializer_cbor_websocket_msgpack_websocket() {
    let router = TestRouter::start("");
    node_check(
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
    let router = TestRouter::start("");
    let mut peer = Check::spawn(
        &python(),
        &node_dir(),
        "python_peer.py",
        &[&url(&router, py), py_serializer],
    );
    peer.wait_for_line("READY", Duration::from_secs(20));
    node_check(
        "with_python.js",
        &[&url(&router, js), js_serializer, py_serializer],
    );
    peer.finish();
}
