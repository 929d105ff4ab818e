//! The examples in `examples/` run against a router as a user runs them, so that they never rot: each is started
//! as its own process with the router's address and must print what its README promises and exit 0.
//!
//! - `examples/python/hello.py` (autobahn-python `Component`) over WebSocket and RawSocket. Over RawSocket it must
//!   join exactly once: its `max_retries=0` is what stops autobahn's asyncio `Component` from reconnecting after a
//!   clean leave (see the example's docstring).
//! - `examples/node/hello.js` (autobahn-js on Node) over WebSocket and RawSocket.
//! - `examples/rust` (wamp_async), built by `tests/run.sh` into `target/debug/kreisel-example-rust` before the tests
//!   run, over WebSocket, and over RawSocket with the `message_max` its documentation asks for.
//! - `examples/browser`: the page, served by Python's `http.server`, in Debian's headless chromium driven by
//!   playwright-core (`tests/browser/browser_check.js`), with `examples/browser/worker.py` as the backend: a job
//!   runs to 100% and a second one is canceled, with JSON and MessagePack. Screenshots go to
//!   `target/browser-test/`.
//!
//! Everything is installed by `tests/run.sh`; a missing install fails with a message saying so, never a skip.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kreisel_tests::programs::python;
use kreisel_tests::TestRouter;

/// An example that has not finished after this long is killed and fails.
const EXAMPLE_TIMEOUT: Duration = Duration::from_secs(60);

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

fn examples() -> PathBuf {
    repository().join("examples")
}

/// Fails with what to do when `path`, which `tests/run.sh` installs, is missing.
fn installed(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "{what} missing ({} not found): run tests/run.sh, which installs it",
        path.display()
    );
}

/// A process with its output collected line by line; killed on drop (a failed test leaves nothing running).
struct Process {
    label: String,
    child: Child,
    lines: Receiver<String>,
    stdout: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Process {
    fn spawn(label: &str, command: &mut Command) -> Process {
        let mut child = command
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
        let (send, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let keep = stderr.clone();
        let mut pipe = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                if let Ok(mut text) = keep.lock() {
                    text.push_str(&String::from_utf8_lossy(&buffer[..n]));
                }
            }
        });
        Process {
            label: label.to_owned(),
            child,
            lines,
            stdout: Vec::new(),
            stderr,
        }
    }

    fn output(&self) -> String {
        let stderr = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        format!(
            "--- {} stdout\n{}\n--- stderr\n{stderr}",
            self.label,
            self.stdout.join("\n")
        )
    }

    /// Reads output until `count` lines contain `text`; returns the last of them. Panics with the output so far
    /// if that takes longer than `timeout` or the process ends first.
    fn wait_for(&mut self, text: &str, count: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let seen = |lines: &[String]| lines.iter().filter(|l| l.contains(text)).count();
        while seen(&self.stdout) < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.stdout.push(line),
                Err(_) => panic!(
                    "{} did not print {count} line(s) with {text:?} within {timeout:?}:\n{}",
                    self.label,
                    self.output()
                ),
            }
        }
        let last = self.stdout.iter().rev().find(|l| l.contains(text));
        last.cloned().unwrap_or_default()
    }

    /// Waits for the process to end (killing it after `timeout`); its status and stdout lines.
    fn finish(&mut self, timeout: Duration) -> (Option<ExitStatus>, Vec<String>) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        // The reader ends at EOF: everything printed is collected.
        self.stdout.extend(self.lines.iter());
        (status, self.stdout.clone())
    }

    /// Runs to the end; panics with the output unless it exited 0.
    fn success(&mut self, timeout: Duration) -> Vec<String> {
        let (status, lines) = self.finish(timeout);
        match status {
            Some(status) if status.success() => lines,
            Some(status) => panic!("{} failed ({status}):\n{}", self.label, self.output()),
            None => panic!(
                "{} still running after {timeout:?}, killed:\n{}",
                self.label,
                self.output()
            ),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Each of `expected` starts a line of `lines`, in this order.
fn in_order(label: &str, lines: &[String], expected: &[&str]) {
    let mut rest = lines.iter();
    for want in expected {
        assert!(
            rest.any(|line| line.starts_with(want)),
            "{label}: no line starting with {want:?} (in this order) in:\n{}",
            lines.join("\n")
        );
    }
}

fn python_example(url: &str, serializer: &str) -> Vec<String> {
    let label = format!("examples/python/hello.py {url} {serializer}");
    let lines = Process::spawn(
        &label,
        Command::new(python())
            .arg(examples().join("python/hello.py"))
            .args(["--url", url, "--serializer", serializer]),
    )
    .success(EXAMPLE_TIMEOUT);
    in_order(
        &label,
        &lines,
        &[
            "joined realm realm1 as session ",
            "event on com.example.greeting: 'hello from Python' (count=1)",
            "com.example.add(2, 3) = 5",
            "left: wamp.close.goodbye_and_out",
            "done",
        ],
    );
    let joins = lines.iter().filter(|l| l.starts_with("joined ")).count();
    assert_eq!(
        joins,
        1,
        "{label}: joined {joins} times:\n{}",
        lines.join("\n")
    );
    lines
}

#[test]
fn python_example_over_websocket() {
    let router = TestRouter::start("");
    python_example(&router.ws_url(), "json");
    python_example(&router.ws_url(), "cbor");
}

/// Over RawSocket, autobahn's asyncio `Component` takes the clean leave for a lost connection; with the example's
/// `max_retries=0` it must still join once and exit 0 (without it, it would join again and again).
#[test]
fn python_example_over_rawsocket_joins_once() {
    let router = TestRouter::start("");
    python_example(&router.rs_url(), "msgpack");
}

fn node_example(url: &str, serializer: &str) {
    let dir = examples().join("node");
    installed(
        &dir.join("node_modules/autobahn"),
        "autobahn-js for examples/node",
    );
    let label = format!("examples/node/hello.js {url} {serializer}");
    let lines = Process::spawn(
        &label,
        Command::new("node")
            .arg(dir.join("hello.js"))
            .args([url, serializer])
            .current_dir(&dir),
    )
    .success(EXAMPLE_TIMEOUT);
    in_order(
        &label,
        &lines,
        &[
            "joined realm realm1 as session ",
            "event on com.example.greeting: \"hello from Node.js\" (count=1)",
            "com.example.add(2, 3) = 5",
            "com.example.countdown(3): progress [3,2,1], then \"liftoff\"",
            "closed: closed",
            "done",
        ],
    );
}

#[test]
fn node_example_over_websocket_and_rawsocket() {
    let router = TestRouter::start("");
    node_example(&router.ws_url(), "json");
    node_example(&router.ws_url(), "msgpack");
    node_example(&router.rs_url(), "json");
}

fn rust_example(url: &str, serializer: &str) {
    let binary = repository().join("target/debug/kreisel-example-rust");
    installed(
        &binary,
        "the Rust example (cargo build --manifest-path examples/rust/Cargo.toml --target-dir target)",
    );
    let label = format!("examples/rust {url} {serializer}");
    let lines = Process::spawn(&label, Command::new(&binary).args([url, serializer]))
        .success(EXAMPLE_TIMEOUT);
    in_order(
        &label,
        &lines,
        &[
            "joined realm realm1 (",
            "event on com.example.greeting: \"hello from Rust\" (count=1)",
            "com.example.add(2, 3) = 5",
            "left realm1",
            "done",
        ],
    );
}

#[test]
fn rust_example_over_websocket() {
    let router = TestRouter::start("");
    rust_example(&router.ws_url(), "json");
    rust_example(&router.ws_url(), "msgpack");
}

/// With the `message_max` the example's documentation asks for (wamp_async insists on its own RawSocket maximum).
#[test]
fn rust_example_over_rawsocket_with_16_mib_messages() {
    let router = TestRouter::start("[limits]\nmessage_max = 16777216\noutbox_max = 33554432");
    rust_example(&format!("tcp://{}", router.rs), "json");
}

/// The browser app in headless chromium, with the Python worker behind it, for JSON and MessagePack.
#[test]
fn browser_example_in_headless_chromium() {
    let browser_dir = examples().join("browser");
    let driver_dir = repository().join("tests/browser");
    installed(
        &browser_dir.join("node_modules/autobahn-browser/autobahn.min.js"),
        "the autobahn-js browser bundle",
    );
    installed(
        &driver_dir.join("node_modules/playwright-core"),
        "playwright-core",
    );
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    installed(&chromium, "chromium (apt-get install chromium)");

    // The page connects to a listener with permessage-deflate (chromium offers it), the worker to a plain one.
    let router = TestRouter::start(
        r#"
[[listeners]]
listen = "127.0.0.1:0"
transports = ["websocket"]
compression = "deflate"
metrics = "/metrics"
"#,
    );
    let deflate_url = format!("ws://{}/ws", router.tcp_address(3));
    let mut worker = Process::spawn(
        "examples/browser/worker.py",
        Command::new(python())
            .arg(browser_dir.join("worker.py"))
            .args(["--url", &router.ws_url()]),
    );
    worker.wait_for("worker ready", 1, Duration::from_secs(20));

    // Any static file server will do; this is the one the example's README names.
    let mut server = Process::spawn(
        "python -m http.server",
        Command::new(python())
            .args(["-m", "http.server", "0", "--bind", "127.0.0.1"])
            .current_dir(&browser_dir),
    );
    let serving = server.wait_for(
        "Serving HTTP on 127.0.0.1 port ",
        1,
        Duration::from_secs(10),
    );
    let port: u16 = serving
        .split("port ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {serving:?}"));

    // <target>/debug/deps/examples-<hash> → <target>/browser-test
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe.ancestors().nth(3).expect("target directory");
    let out = target.join("browser-test");
    let _ = std::fs::remove_dir_all(&out);
    let lines = Process::spawn(
        "tests/browser/browser_check.js",
        Command::new("node")
            .arg(driver_dir.join("browser_check.js"))
            .arg(format!("http://127.0.0.1:{port}/index.html"))
            .arg(&deflate_url)
            .arg(&out)
            .args(["json", "msgpack"])
            .current_dir(&driver_dir),
    )
    .success(Duration::from_secs(150));
    let last = lines.last().map(String::as_str).unwrap_or_default();
    assert!(
        last.starts_with("PASSED browser example (json, msgpack)"),
        "the driver did not report success:\n{}",
        lines.join("\n")
    );
    eprintln!("{}", lines.join("\n"));

    // Both pages (JSON and MessagePack) spoke permessage-deflate.
    let metrics = http_get(router.tcp_address(3), "/metrics");
    let negotiated = metrics
        .lines()
        .find_map(|line| line.strip_prefix("kreisel_websocket_deflate_total "))
        .and_then(|value| value.trim().parse::<f64>().ok());
    assert!(
        negotiated.is_some_and(|n| n >= 2.0),
        "chromium's connections negotiated permessage-deflate: {negotiated:?}"
    );

    // The worker's side: two jobs done, two interrupted (one each per serializer).
    worker.wait_for("done, sum of squares 385", 2, Duration::from_secs(10));
    worker.wait_for("interrupted at step ", 2, Duration::from_secs(10));

    for name in [
        "json-done",
        "json-canceled",
        "msgpack-done",
        "msgpack-canceled",
    ] {
        let path = out.join(format!("{name}.png"));
        let png =
            std::fs::read(&path).unwrap_or_else(|e| panic!("screenshot {}: {e}", path.display()));
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
            "{} is not a screenshot of the page ({} bytes)",
            path.display(),
            png.len()
        );
    }
}

/// One HTTP/1.1 GET; the whole response (the router closes the connection after a metrics page).
fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("the response");
    response
}
