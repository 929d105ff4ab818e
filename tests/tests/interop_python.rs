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

use kreisel_tests::{python_check, TestRouter};

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
    python_check(script, &[&url(&router, transport), serializer]);
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
    python_check(
        "cross_serializer.py",
        &[&router.ws_url(), &router.rs_url(), "json", "msgpack"],
    );
}

/// The transports the other way round (MessagePack over WebSocket, JSON over RawSocket), with a CBOR session over
/// WebSocket as a third party.
#[test]
fn cross_serializer_msgpack_websocket_json_rawsocket() {
    let router = TestRouter::start("");
    python_check(
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
