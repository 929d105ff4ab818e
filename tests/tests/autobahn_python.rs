//! Interop with autobahn-python (from PyPI, installed by `tests/run.sh` into `tests/.venv`): the check programs in
//! `tests/interop/` run real autobahn sessions against an in-process kreisel over WebSocket and RawSocket with
//! JSON and MessagePack, and exit 0 only when every check passed.

use std::path::PathBuf;
use std::process::Command;

use kreisel_tests::TestRouter;

fn python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "autobahn-python venv missing: run tests/run.sh (it creates {})",
        python.display()
    );
    python
}

fn run_check(script: &str, args: &[&str]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop");
    let output = Command::new(python())
        .arg(dir.join(script))
        .args(args)
        .current_dir(&dir)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} {args:?} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("PASSED"),
        "{script} {args:?} did not report success:\n{stdout}"
    );
}

#[test]
fn basic_profile_over_websocket_json() {
    let router = TestRouter::start("");
    run_check("basic_profile.py", &[&router.ws_url(), "json"]);
}

#[test]
fn basic_profile_over_websocket_msgpack() {
    let router = TestRouter::start("");
    run_check("basic_profile.py", &[&router.ws_url(), "msgpack"]);
}

#[test]
fn basic_profile_over_rawsocket_json() {
    let router = TestRouter::start("");
    run_check("basic_profile.py", &[&router.rs_url(), "json"]);
}

#[test]
fn basic_profile_over_rawsocket_msgpack() {
    let router = TestRouter::start("");
    run_check("basic_profile.py", &[&router.rs_url(), "msgpack"]);
}

#[test]
fn json_and_msgpack_sessions_interoperate() {
    let router = TestRouter::start("");
    run_check(
        "cross_serializer.py",
        &[&router.ws_url(), &router.rs_url(), "json", "msgpack"],
    );
}

#[test]
fn advanced_dealer_over_websocket_json() {
    let router = TestRouter::start("");
    run_check("advanced_dealer.py", &[&router.ws_url(), "json"]);
}

#[test]
fn advanced_dealer_over_rawsocket_msgpack() {
    let router = TestRouter::start("");
    run_check("advanced_dealer.py", &[&router.rs_url(), "msgpack"]);
}
