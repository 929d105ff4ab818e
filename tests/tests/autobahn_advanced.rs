//! The advanced profile against autobahn-python (pinned in `tests/interop/requirements.txt`, installed by
//! `tests/run.sh` into `tests/.venv`): `tests/interop/advanced_profile.py` runs one feature family per test with real
//! autobahn sessions over real sockets, spread over the transports and serializers. Progressive call invocations
//! are not here: autobahn-python 26 cannot send them (its CALL has no `progress` option and its callee does not
//! announce the feature); `progressive_call_invocations_over_sockets` drives them with the raw test client.

use kreisel_codec::Serializer;
use kreisel_tests::{python_check, Client, TestRouter};

/// A second realm that discloses callers and publishers (autobahn-python cannot ask with `disclose_me`).
const OPEN_REALM: &str = r#"
[[realms]]
name = "open"
disclose_caller = true
disclose_publisher = true
"#;

fn run_check(feature: &str, url: &str, serializer: &str) {
    python_check("advanced_profile.py", &[feature, url, serializer]);
}

/// Shared registrations (roundrobin, first), router-enforced call timeout and call canceling
/// (`advanced_dealer.py`).
#[test]
fn advanced_dealer_over_websocket_json() {
    let router = TestRouter::start("");
    python_check("advanced_dealer.py", &[&router.ws_url(), "json"]);
}

#[test]
fn advanced_dealer_over_rawsocket_msgpack() {
    let router = TestRouter::start("");
    python_check("advanced_dealer.py", &[&router.rs_url(), "msgpack"]);
}

#[test]
fn caller_identification_over_websocket_json() {
    let router = TestRouter::start(OPEN_REALM);
    run_check("caller_identification", &router.ws_url(), "json");
}

#[test]
fn publisher_identification_over_rawsocket_msgpack() {
    let router = TestRouter::start(OPEN_REALM);
    run_check("publisher_identification", &router.rs_url(), "msgpack");
}

#[test]
fn blackwhite_listing_over_websocket_msgpack() {
    let router = TestRouter::start("");
    run_check("blackwhite_listing", &router.ws_url(), "msgpack");
}

#[test]
fn event_retention_over_rawsocket_json() {
    let router = TestRouter::start("");
    run_check("event_retention", &router.rs_url(), "json");
}

#[test]
fn testament_over_websocket_json() {
    let router = TestRouter::start("");
    run_check("testament", &router.ws_url(), "json");
}

#[test]
fn testament_over_rawsocket_cbor() {
    let router = TestRouter::start("");
    run_check("testament", &router.rs_url(), "cbor");
}

#[test]
fn session_meta_api_over_rawsocket_msgpack() {
    let router = TestRouter::start("");
    run_check("session_meta", &router.rs_url(), "msgpack");
}

#[test]
fn subscription_and_registration_meta_api_over_websocket_json() {
    let router = TestRouter::start("");
    run_check("membership_meta", &router.ws_url(), "json");
}

#[test]
fn payload_passthru_over_websocket_json() {
    let router = TestRouter::start("");
    run_check("payload_passthru", &router.ws_url(), "json");
}

#[test]
fn payload_passthru_over_rawsocket_msgpack() {
    let router = TestRouter::start("");
    run_check("payload_passthru", &router.rs_url(), "msgpack");
}

#[test]
fn payload_passthru_over_websocket_cbor() {
    let router = TestRouter::start("");
    run_check("payload_passthru", &router.ws_url(), "cbor");
}

/// Progressive call invocations end to end with the raw test client: a caller on WebSocket MessagePack streams three
/// chunks into one call; the callee on RawSocket JSON sees them as INVOCATIONs of one request ID, the last without
/// `progress`, and its YIELD reaches the caller.
#[test]
fn progressive_call_invocations_over_sockets() {
    let router = TestRouter::start("");
    let mut callee = Client::rawsocket(router.rs, Serializer::Json);
    callee.send(
        r#"[1, "realm1", {"roles": {"callee": {"features": {"progressive_call_invocations": true, "call_canceling": true}}}}]"#,
    );
    assert_eq!(callee.expect()[0], 2);
    callee.send(r#"[64, 1, {}, "com.example.upload"]"#);
    assert_eq!(callee.expect()[0], 65);
    let mut caller = Client::websocket(router.ws, Serializer::MsgPack);
    caller.send(
        r#"[1, "realm1", {"roles": {"caller": {"features": {"progressive_call_invocations": true}}}}]"#,
    );
    assert_eq!(caller.expect()[0], 2);
    caller.send(r#"[48, 7, {"progress": true}, "com.example.upload", ["chunk 1"]]"#);
    caller.send(r#"[48, 7, {"progress": true}, "com.example.upload", ["chunk 2"]]"#);
    caller.send(r#"[48, 7, {}, "com.example.upload", ["last chunk"]]"#);
    let chunks: Vec<serde_json::Value> = (0..3).map(|_| callee.expect()).collect();
    let request = &chunks[0][1];
    for (chunk, (text, progress)) in chunks.iter().zip([
        ("chunk 1", Some(true)),
        ("chunk 2", Some(true)),
        ("last chunk", None),
    ]) {
        assert_eq!(chunk[0], 68, "{chunk}");
        assert_eq!(&chunk[1], request, "one INVOCATION request ID per call");
        assert_eq!(chunk[3].get("progress").and_then(|p| p.as_bool()), progress);
        assert_eq!(chunk[4][0], text);
    }
    callee.send(&format!(r#"[70, {request}, {{}}, ["3 chunks"]]"#));
    assert_eq!(
        caller.expect(),
        serde_json::json!([50, 7, {}, ["3 chunks"]])
    );
}
