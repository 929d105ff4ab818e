//! `examples/auth.toml` as shipped (on a free port), checked comment by comment with autobahn-python
//! (tests/interop/example_auth.py) over WebSocket and RawSocket, JSON and MessagePack.

use kreisel_tests::{python_check, TestRouter};

fn autobahn(websocket: bool, serializer: &str) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/auth.toml");
    let example = std::fs::read_to_string(path).expect("examples/auth.toml");
    let example = example.replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"");
    assert!(
        example.contains("127.0.0.1:0"),
        "the example's listener moved"
    );
    let router = TestRouter::start(&example);
    // The example's listener comes after the harness's three; it speaks WebSocket and RawSocket on one port.
    let addr = router.tcp_address(3);
    let url = if websocket {
        format!("ws://{addr}/ws")
    } else {
        format!("rs://{addr}")
    };
    python_check("example_auth.py", &[&url, serializer]);
}

#[test]
fn the_auth_example_over_websocket_json() {
    autobahn(true, "json");
}

#[test]
fn the_auth_example_over_rawsocket_msgpack() {
    autobahn(false, "msgpack");
}
