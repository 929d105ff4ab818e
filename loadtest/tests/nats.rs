//! NATS mode against a real nats-server (Debian's package `nats-server`) on a free loopback port: a tiny fanout
//! through the binary and a tiny fanin through the library, both bounded in count and time.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use kreisel_loadtest::cli::Cli;
use kreisel_loadtest::run;
use kreisel_loadtest::summary::{RunResult, Status};

/// `NATS_SERVER`, else Debian's binary (in /usr/sbin), else `nats-server` on the PATH.
fn nats_server() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(path);
    }
    let path_dirs = std::env::var_os("PATH").unwrap_or_default();
    ["/usr/sbin", "/usr/bin"]
        .into_iter()
        .map(PathBuf::from)
        .chain(std::env::split_paths(&path_dirs))
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("nats-server is not installed: {INSTALL}"))
}

const INSTALL: &str =
    "install it with `apt-get install -y nats-server` (tests/run.sh does that when it is \
                       missing), or point NATS_SERVER at a nats-server binary";

/// A nats-server child process, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(binary: &Path) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; {INSTALL}", binary.display()));
        let mut server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("nats-server exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "nats-server does not listen on {port} after 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn fanout_and_fanin_against_nats_server() {
    let server = Server::start(&nats_server());
    let pid = server.child.id().to_string();

    // fanout through the binary: 2 subscribers, 100 events, closed loop (a PING after each window of 64).
    let dir = std::env::temp_dir().join(format!("kreisel-loadtest-nats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("fanout.json");
    let output = Command::new(env!("CARGO_BIN_EXE_kreisel-loadtest"))
        .args(["fanout", "--url", &server.url(), "--subscribers", "2"])
        .args(["--events", "100", "--timeout", "10", "--router-pid", &pid])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run kreisel-loadtest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("(nats, --serializer ignored)"), "{stdout}");
    let result: RunResult =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("results")).expect("JSON");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(result.status, Status::Ok, "{:?}", result.errors);
    assert_eq!((result.sent, result.received), (100, 200));
    assert_eq!(
        (result.transport.as_str(), result.serializer.as_str()),
        ("nats", "-")
    );
    assert_eq!(result.latency_us.count, 200);
    assert!(
        result.router_cpu_s.is_some(),
        "--router-pid reads the server's CPU time"
    );

    // fanin through the library, open loop: 3 publishers on sensors.<n>.temp, one subscriber on `sensors.>`.
    let cli = Cli::try_parse_from([
        "kreisel-loadtest",
        "fanin",
        "--url",
        &server.url(),
        "--publishers",
        "3",
        "--events",
        "50",
        "--rate",
        "3000",
        "--timeout",
        "10",
        "--quiet",
    ])
    .expect("command line");
    let invocation = cli
        .command
        .invocation()
        .expect("a scenario")
        .expect("a valid plan");
    let result = run::execute(invocation.plan, &invocation.options);
    assert_eq!(result.status, Status::Ok, "{:?}", result.errors);
    assert_eq!((result.sent, result.received), (150, 150));
    assert_eq!(
        (
            result.lost,
            result.duplicated,
            result.reordered,
            result.corrupt
        ),
        (0, 0, 0, 0)
    );
}
