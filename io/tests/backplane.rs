//! The backplane secured as the README shows it ("Securing the backplane"): the README's own nats-server
//! configuration and `[cluster]` section, taken from README.md with only addresses and file paths replaced, run
//! with Debian's nats-server (TLS from a test CA, the KREISEL account with the subject permissions the README
//! lists, the APPS account) and the `kreisel` binary. A node joins over `tls://` with the user and its
//! `password_file`, registers (the key-value bucket through those permissions) and routes; a user of the APPS
//! account sees none of the cluster's traffic that a kreisel user sees; a node with a wrong password refuses to
//! start and says why.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{pki, Wamp};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

const KREISEL_PASSWORD: &str = "kreisel-secret-for-the-test";
const APP_PASSWORD: &str = "app-secret-for-the-test";

/// `NATS_SERVER`, else Debian's (tests/run.sh installs it).
fn nats_server() -> PathBuf {
    let path = std::env::var_os("NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server"));
    assert!(
        path.exists(),
        "{} missing: run tests/run.sh (it installs nats-server), or set NATS_SERVER",
        path.display()
    );
    path
}

/// The first fenced block of the README's "Securing the backplane" opening with `fence`.
fn readme_block(fence: &str) -> String {
    let readme = include_str!("../../README.md");
    let section = &readme[readme
        .find("### Securing the backplane")
        .expect("the README has \"Securing the backplane\"")..];
    let start = section.find(fence).expect("the block") + fence.len();
    let body = &section[start..];
    body[..body.find("\n```").expect("the block's end")].to_string()
}

/// `text` with `from` replaced by `to`; `from` must be there (the README changed otherwise).
fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the README's block no longer has {from:?}:\n{text}"
    );
    text.replace(from, to)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A NATS client of the core protocol over TLS (the server requires it), for what kreisel's own client cannot
/// show: what another account sees.
struct Nats {
    stream: BufReader<StreamOwned<ClientConnection, TcpStream>>,
}

impl Nats {
    fn connect(port: u16, ca_pem: &str, user: &str, password: &str) -> Result<Nats, String> {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        // INFO comes in the clear; then TLS.
        let mut info = Vec::new();
        let mut byte = [0u8; 1];
        let deadline = Instant::now() + Duration::from_secs(5);
        while !info.ends_with(b"\r\n") {
            match tcp.read(&mut byte) {
                Ok(1) => info.push(byte[0]),
                Ok(_) => return Err("closed before INFO".into()),
                Err(_) if Instant::now() < deadline => {}
                Err(e) => return Err(format!("no INFO: {e}")),
            }
        }
        assert!(info.starts_with(b"INFO "), "{info:?}");
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.expect("the CA")).expect("the CA");
        }
        let config = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("127.0.0.1").expect("a server name");
        let tls = ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
        let mut nats = Nats {
            stream: BufReader::new(StreamOwned::new(tls, tcp)),
        };
        nats.send(&format!(
            "CONNECT {{\"user\":\"{user}\",\"pass\":\"{password}\",\"verbose\":false,\"pedantic\":false,\
             \"tls_required\":true,\"protocol\":1}}\r\nPING\r\n"
        ));
        match nats.line(Duration::from_secs(5)).as_deref() {
            Some("PONG") => Ok(nats),
            other => Err(format!("{other:?}")),
        }
    }

    fn send(&mut self, text: &str) {
        let stream = self.stream.get_mut();
        stream.write_all(text.as_bytes()).expect("write to NATS");
        stream.flush().expect("flush to NATS");
    }

    /// The next protocol line (without CRLF), answering PINGs; None when nothing comes within `wait`.
    fn line(&mut self, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        let mut line = String::new();
        loop {
            match self.stream.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) if line.ends_with("\r\n") => {
                    let text = line.trim_end().to_string();
                    if text == "PING" {
                        self.send("PONG\r\n");
                        line.clear();
                        continue;
                    }
                    return Some(text);
                }
                Ok(_) => {}
                Err(_) if Instant::now() < deadline => {}
                Err(_) => return None,
            }
        }
    }

    /// The subjects of the messages that arrive on `subject` within `wait` (payloads skipped).
    fn watch(&mut self, subject: &str, wait: Duration) -> Vec<String> {
        self.send(&format!("SUB {subject} 1\r\nPING\r\n"));
        let deadline = Instant::now() + wait;
        let mut subjects = Vec::new();
        while Instant::now() < deadline {
            let Some(line) = self.line(deadline.saturating_duration_since(Instant::now())) else {
                break;
            };
            if let Some(rest) = line.strip_prefix("MSG ").or(line.strip_prefix("HMSG ")) {
                let fields: Vec<&str> = rest.split(' ').collect();
                let size: usize = fields.last().and_then(|n| n.parse().ok()).expect("a size");
                let mut payload = vec![0u8; size + 2];
                self.stream.read_exact(&mut payload).expect("the payload");
                subjects.push(fields[0].to_string());
            } else {
                assert!(!line.starts_with("-ERR"), "{line}");
            }
        }
        subjects
    }
}

/// The README's nats-server configuration on a loopback port with the test's certificates and store.
fn nats_config(dir: &Path, port: u16) -> String {
    let mut conf = readme_block("```\n# nats-server.conf");
    conf = format!("# nats-server.conf{conf}");
    conf = replace(
        &conf,
        "listen: 0.0.0.0:4222",
        &format!("listen: 127.0.0.1:{port}"),
    );
    for (from, to) in [
        ("/etc/nats/server.pem", "server.pem"),
        ("/etc/nats/server.key", "server.key"),
        ("/etc/nats/ca.pem", "ca.pem"),
    ] {
        conf = replace(&conf, from, &dir.join(to).display().to_string());
    }
    replace(
        &conf,
        "/var/lib/nats",
        &dir.join("jetstream").display().to_string(),
    )
}

/// A node's configuration: a realm, RawSocket and metrics listeners, and the README's `[cluster]` section pointed
/// at the test's server (one server: `replicas = 1`), with `extra` lines in it.
fn kreisel_config(dir: &Path, port: u16, password_file: &Path, extra: &str) -> PathBuf {
    let mut cluster = readme_block("```toml\n[cluster]");
    cluster = format!("[cluster]{cluster}");
    let nats_line = cluster
        .lines()
        .find(|l| l.starts_with("nats = "))
        .expect("a nats line")
        .to_string();
    cluster = replace(
        &cluster,
        &nats_line,
        &format!("nats = [\"tls://127.0.0.1:{port}\"]"),
    );
    cluster = replace(
        &cluster,
        "/run/credentials/kreisel/nats-password",
        &password_file.display().to_string(),
    );
    cluster = replace(
        &cluster,
        "/etc/kreisel/nats-ca.pem",
        &dir.join("ca.pem").display().to_string(),
    );
    let config = format!(
        "[router]\nshards = 2\n\n[[realms]]\nname = \"realm1\"\n\n\
         [[listeners]]\nlisten = \"127.0.0.1:0\"\ntransports = [\"rawsocket\"]\n\n\
         [[listeners]]\nlisten = \"127.0.0.1:0\"\ntransports = [\"websocket\"]\nmetrics = \"/metrics\"\n\n\
         {cluster}\nreplicas = 1\n{extra}"
    );
    let path = dir.join(format!("kreisel-{}.toml", free_port()));
    std::fs::write(&path, config).expect("write the configuration");
    path
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut page = String::new();
    let _ = stream.read_to_string(&mut page);
    page
}

#[test]
fn the_readme_backplane_with_tls_users_and_permissions() {
    let pki = pki("backplane");
    let port = free_port();
    let conf = pki.dir.join("nats.conf");
    std::fs::write(&conf, nats_config(&pki.dir, port)).expect("write nats.conf");
    let env = [
        ("KREISEL_NATS_PASSWORD", KREISEL_PASSWORD),
        ("APP_NATS_PASSWORD", APP_PASSWORD),
    ];
    // The configuration as the README says it was checked.
    let checked = Command::new(nats_server())
        .arg("-t")
        .arg("-c")
        .arg(&conf)
        .envs(env)
        .output()
        .expect("nats-server -t");
    assert!(
        checked.status.success(),
        "nats-server -t: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let log = std::fs::File::create(pki.dir.join("nats.log")).expect("nats.log");
    let _nats = Killed(
        Command::new(nats_server())
            .arg("-c")
            .arg(&conf)
            .envs(env)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server"),
    );
    // The server is up when the APPS user gets in.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut app = loop {
        match Nats::connect(port, &pki.ca_pem, "app", APP_PASSWORD) {
            Ok(nats) => break nats,
            Err(e) => {
                assert!(Instant::now() < deadline, "NATS: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    // The kreisel user needs the password the server took from its environment: the README's `$VAR`.
    assert!(Nats::connect(port, &pki.ca_pem, "kreisel", "$KREISEL_NATS_PASSWORD").is_err());

    let password_file = pki.dir.join("nats-password");
    std::fs::write(&password_file, format!("{KREISEL_PASSWORD}\n")).expect("password file");
    let node = common::start_with(&kreisel_config(&pki.dir, port, &password_file, ""), &[], 2);
    let (rs, metrics) = (node.addresses[0], node.addresses[1]);
    let page = http_get(metrics, "/metrics");
    assert!(page.contains("kreisel_cluster_connected 1"), "{page}");
    let ready = http_get(metrics, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200 "), "{ready}");
    // REGISTER writes the registration's record to the bucket, through the permissions of the kreisel user.
    let mut callee = Wamp::join(rs, "realm1");
    callee.send(r#"[64, 1, {}, "com.example.add"]"#);
    let registered = callee.recv();
    assert_eq!(
        registered[0],
        65,
        "REGISTERED: {registered}\n{}",
        node.log()
    );
    let mut caller = Wamp::join(rs, "realm1");
    caller.send(r#"[48, 7, {}, "com.example.add", [2, 3]]"#);
    let invocation = callee.recv();
    assert_eq!(invocation[0], 68, "{invocation}");
    callee.send(&format!(r#"[70, {}, {{}}, [5]]"#, invocation[1]));
    let result = caller.recv();
    assert_eq!((result[0].as_u64(), &result[3][0]), (Some(50), &5.into()));

    // The node heartbeats on kr.prod.all: a kreisel user sees it, a user of another account does not.
    let mut insider =
        Nats::connect(port, &pki.ca_pem, "kreisel", KREISEL_PASSWORD).expect("the kreisel user");
    let seen = insider.watch("kr.prod.>", Duration::from_secs(2));
    assert!(
        seen.iter().any(|s| s == "kr.prod.all"),
        "the kreisel user sees the node's heartbeats: {seen:?}"
    );
    let outside = app.watch("kr.prod.>", Duration::from_secs(2));
    assert!(outside.is_empty(), "the APPS account sees {outside:?}");
    drop(node);

    // A wrong password: the node does not start, and says why.
    let wrong = pki.dir.join("wrong-password");
    std::fs::write(&wrong, "not the password\n").expect("password file");
    let mut refused = Command::new(common::KREISEL)
        .arg("--config")
        .arg(kreisel_config(
            &pki.dir,
            port,
            &wrong,
            "connect_timeout_ms = 2000\n",
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kreisel");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = refused.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = refused.kill();
            panic!("a node with a wrong NATS password still runs after 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    let _ = refused
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    assert!(!status.success(), "{status}: {stderr}");
    assert!(
        stderr.to_lowercase().contains("authorization violation"),
        "the refusal says why:\n{stderr}"
    );
}
