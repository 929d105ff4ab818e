//! Interop with autobahn-python over CBOR (`tests/interop/cbor_check.py`): real autobahn sessions (cbor2
//! underneath) against an in-process kreisel over WebSocket `wamp.2.cbor` and RawSocket serializer 3, with a JSON
//! session alongside for cross-serializer routing. The check program exits 0 only when every check passed.
//!
//! autobahn-python, cbor2 included, comes from PyPI into `tests/.venv` (`tests/run.sh` installs it).

use std::path::PathBuf;
use std::process::Command;

use kreisel_tests::TestRouter;

fn python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "autobahn-python venv missing: run tests/run.sh (expected {})",
        python.display()
    );
    python
}

#[test]
fn autobahn_python_over_cbor_websocket_and_rawsocket() {
    let router = TestRouter::start("");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/cbor_check.py");
    let output = Command::new(python())
        .arg(&script)
        .arg(router.ws_url())
        .arg(router.rs_url())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The checks that ran (shown with --nocapture).
    eprintln!("{stdout}");
    assert!(
        output.status.success(),
        "cbor_check.py failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("PASSED cbor_check"),
        "cbor_check.py did not report success:\n{stdout}\n{stderr}"
    );
}
