//! A run that never started (nothing listens at the URL) prints why and no figures, and exits non-zero.

use std::net::TcpListener;
use std::process::Command;

#[test]
fn unreachable_router_gives_an_error_not_a_table_of_zeros() {
    // A port nothing listens on: bound, then released.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("rs://127.0.0.1:{port}");
    for args in [
        vec!["fanout", "--subscribers", "2", "--events", "10"],
        vec![
            "slow",
            "--subscribers",
            "1",
            "--slow",
            "0,1",
            "--duration",
            "1",
        ],
        vec!["soak", "--duration", "5s", "--storm-sessions", "2"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kreisel-loadtest"))
            .args(&args)
            .args(["--url", &url, "--timeout", "5"])
            .output()
            .expect("run kreisel-loadtest");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(4), "{args:?}: {stderr}");
        assert!(stderr.contains("did not start"), "{args:?}: {stderr}");
        assert!(stderr.contains("Connection refused"), "{args:?}: {stderr}");
        for figure in ["latency", "integrity", "msgs/s"] {
            assert!(
                !stdout.contains(figure),
                "{args:?} printed figures:\n{stdout}"
            );
        }
    }
}
