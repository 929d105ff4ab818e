//! Running the `kreisel` binary in tests: a configuration file, the process (killed on drop), its log, and a
//! minimal RawSocket JSON client.
#![allow(dead_code)] // each test file uses a different part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const KREISEL: &str = env!("CARGO_BIN_EXE_kreisel");

/// A file of this test process's own (unique name per call).
pub fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!("kreisel-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}-{name}", COUNTER.fetch_add(1, Ordering::SeqCst)));
    std::fs::write(&path, text).unwrap();
    path
}

/// A running binary; killed on drop if still running.
pub struct Running {
    pub child: Child,
    pub addresses: Vec<SocketAddr>,
    /// Everything the router wrote to stderr so far (drained for the whole run, so it never blocks on a pipe).
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Running {
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(config: &str) -> Running {
    start_file(&temp_file("run.toml", config))
}

pub fn start_file(path: &std::path::Path) -> Running {
    start_with(path, &[], 1)
}

/// Runs the binary on the configuration `path` with `env` added to its environment (`RUST_LOG` is `info` unless
/// given), and waits until it logged where its first `listeners` listeners listen (TCP listeners, in order).
pub fn start_with(path: &std::path::Path, env: &[(&str, &str)], listeners: usize) -> Running {
    let mut command = Command::new(KREISEL);
    command
        .arg("--config")
        .arg(path)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            keep.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
    // Constructed first, so that the child is killed even if the checks below fail.
    let mut running = Running {
        child,
        addresses: Vec::new(),
        log,
    };
    let addresses = &mut running.addresses;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        if let Some(address) = line.split("address=").nth(1) {
            addresses.push(address.trim().parse().expect("a TCP address"));
        }
        if addresses.len() == listeners {
            break;
        }
    }
    assert_eq!(
        addresses.len(),
        listeners,
        "the router logs where it listens"
    );
    running
}

pub fn rawsocket_json(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(&[0x7F, 0xF1, 0, 0]).unwrap();
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(reply[0], 0x7F);
    assert_eq!(reply[1] & 0x0F, 1);
    stream
}

pub fn send(stream: &mut TcpStream, json: &str) {
    let mut frame = (json.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(json.as_bytes());
    stream.write_all(&frame).unwrap();
}

pub fn recv(stream: &mut TcpStream) -> serde_json::Value {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).unwrap();
    let len = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).unwrap();
    serde_json::from_slice(&payload).unwrap()
}

/// Waits until the router's log has `count` lines containing `text`.
pub fn wait_for_log(router: &Running, text: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while router.log().matches(text).count() < count {
        assert!(
            Instant::now() < deadline,
            "no {count}x '{text}' in the log:\n{}",
            router.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The router's resident memory, in bytes (`VmRSS` of /proc/PID/status).
pub fn rss(router: &Running) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{}/status", router.child.id()))
        .expect("the router's /proc status");
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

/// A RawSocket JSON session (blocking, 10 s read timeout).
pub struct Wamp {
    pub stream: TcpStream,
}

impl Wamp {
    pub fn connect(addr: SocketAddr) -> Wamp {
        Wamp {
            stream: rawsocket_json(addr),
        }
    }

    /// Connects and joins `realm` anonymously with every client role and the features the tests use.
    pub fn join(addr: SocketAddr, realm: &str) -> Wamp {
        let mut wamp = Wamp::connect(addr);
        wamp.send(&format!(r#"[1, "{realm}", {{"roles": {ROLES}}}]"#));
        let welcome = wamp.recv();
        assert_eq!(welcome[0], 2, "{welcome}");
        wamp
    }

    pub fn send(&mut self, json: &str) {
        send(&mut self.stream, json);
    }

    pub fn recv(&mut self) -> serde_json::Value {
        recv(&mut self.stream)
    }

    /// SUBSCRIBE (request 1) and its answer.
    pub fn subscribe(&mut self, topic: &str, options: &str) -> serde_json::Value {
        self.send(&format!(r#"[32, 1, {options}, "{topic}"]"#));
        self.recv()
    }

    /// Whether the router closed the connection (reads until EOF or an error; fails after 10 s of silence).
    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
                Err(_) => return true,
            }
        }
    }
}

/// HELLO roles with the features the tests use.
pub const ROLES: &str = r#"{"publisher": {"features": {"publisher_identification": true, "publisher_exclusion": true}},
    "subscriber": {"features": {"pattern_based_subscription": true, "publisher_identification": true}},
    "caller": {"features": {"caller_identification": true}},
    "callee": {"features": {"pattern_based_registration": true, "caller_identification": true}}}"#;

pub struct Pki {
    pub dir: std::path::PathBuf,
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

/// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, written as PEM files.
pub fn pki(tag: &str) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let dir = std::env::temp_dir().join(format!("kreisel-tls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["client.example".to_string()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
    Pki {
        dir,
        ca_pem: ca.pem(),
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}
