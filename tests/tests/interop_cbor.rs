//! Interop with autobahn-python over CBOR (`tests/interop/cbor_check.py`): real autobahn sessions (cbor2
//! underneath) against an in-process kreisel over WebSocket `wamp.2.cbor` and RawSocket serializer 3, with a JSON
//! session alongside for cross-serializer routing. The check program exits 0 only when every check passed.
//!
//! autobahn-python, cbor2 included, comes from PyPI into `tests/.venv` (`tests/run.sh` installs it).

use kreisel_tests::{python_check, TestRouter};

#[test]
fn autobahn_python_over_cbor_websocket_and_rawsocket() {
    let router = TestRouter::start("");
    python_check("cbor_check.py", &[&router.ws_url(), &router.rs_url()]);
}
