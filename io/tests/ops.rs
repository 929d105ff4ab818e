//! Operating the `kreisel` binary: health probes over raw HTTP, systemd's notification protocol over a datagram
//! socket the test owns, secrets from the environment and from files, JSON logs, a stderr nobody reads, and the
//! lame-duck drain (SIGUSR2). Each runs the binary as a service manager or an operator would.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// One HTTP request (`request` is the request line), the whole response (the router closes after it): status,
/// head and body.
fn http(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    http_over(&mut stream, request)
}

fn http_over(stream: &mut (impl Read + Write), request: &str) -> (u16, String, String) {
    write!(
        stream,
        "{request}\r\nHost: kreisel\r\nUser-Agent: probe\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("the response, then the router closes");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head.to_string(), body.to_string())
}

/// The value of the sample `name` on a metrics page.
fn sample(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in\n{page}"))
        .parse()
        .expect("a number")
}

/// A child process killed on drop (a failed check leaves no router behind).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: kill(2) on our own child's PID with a valid signal number.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(rc, 0);
}

fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kreisel did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

const PROBES: &str = r#"
[router]
shards = 3

[[listeners]]
listen = "127.0.0.1:0"
transports = ["rawsocket"]

[[listeners]]
listen = "127.0.0.1:0"
transports = ["websocket"]
metrics = "/metrics"
"#;

/// `/healthz` and `/readyz` on the metrics listener of a router of three shards, as a load balancer or a kubelet
/// asks (GET and HEAD, HTTP/1.1 and 1.0); other requests are strays, answered 404/426, counted and not logged at
/// info; the startup log names every listener's transports, serializers, path, TLS and HTTP services.
#[test]
fn health_probes_over_raw_http() {
    let router = start_with(&temp_file("probes.toml", PROBES), &[], 2);
    let probes = router.addresses[1];
    // Each shard runs: shards start right after the listeners are logged.
    let deadline = Instant::now() + Duration::from_secs(10);
    while http(probes, "GET /readyz HTTP/1.1").0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    for path in ["/healthz", "/readyz", "/readyz?verbose=1"] {
        let (status, head, body) = http(probes, &format!("GET {path} HTTP/1.1"));
        assert_eq!((status, body.as_str()), (200, "ok\n"), "{path}: {head}");
        for header in [
            "Content-Type: text/plain; charset=utf-8",
            "Content-Length: 3",
            "Cache-Control: no-store",
            "Connection: close",
        ] {
            assert!(head.contains(header), "{path}: {head}");
        }
    }
    let (status, head, body) = http(probes, "HEAD /healthz HTTP/1.1");
    assert_eq!((status, body.as_str()), (200, ""), "{head}");
    assert!(head.contains("Content-Length: 3"), "{head}");
    // HAProxy's checks speak HTTP/1.0.
    assert_eq!(http(probes, "GET /readyz HTTP/1.0").0, 200);
    // Only where configured: the RawSocket-only listener does not speak HTTP at all.
    let mut raw = TcpStream::connect(router.addresses[0]).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(raw, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut nothing = Vec::new();
    let _ = raw.read_to_end(&mut nothing);
    assert!(!nothing.starts_with(b"HTTP"), "{nothing:?}");

    // Strays: counted, logged at debug only.
    assert_eq!(http(probes, "GET /wp-login.php HTTP/1.1").0, 404);
    assert_eq!(http(probes, "POST /healthz HTTP/1.1").0, 405);
    assert_eq!(http(probes, "GET /ws HTTP/1.1").0, 426);
    let (status, _, page) = http(probes, "GET /metrics HTTP/1.1");
    assert_eq!(status, 200);
    assert_eq!(sample(&page, "kreisel_http_stray_requests_total"), 3.0);
    assert_eq!(sample(&page, "kreisel_draining"), 0.0);
    assert_eq!(sample(&page, "kreisel_log_lines_dropped_total"), 0.0);
    let log = router.log();
    assert!(!log.contains("WebSocket upgrade refused"), "{log}");

    // The startup log names each listener and realm.
    let listening: Vec<&str> = log.lines().filter(|l| l.contains("listening")).collect();
    assert_eq!(listening.len(), 2, "{log}");
    for (line, expected) in listening.iter().zip([
        "transports=rawsocket serializers=json,msgpack,cbor path=- tls=off http=- address=",
        "transports=websocket serializers=json,msgpack,cbor path=/ws tls=off http=metrics /metrics, health \
         /healthz /readyz address=",
    ]) {
        assert!(line.contains(expected), "{line}");
    }
    assert!(
        log.contains(
            "realm=realm1 principals=0 roles=none (everything allowed) anonymous=role 'anonymous'"
        ),
        "{log}"
    );
}

/// systemd's `Type=notify` protocol over a datagram socket the test owns: READY=1 once the router serves,
/// WATCHDOG=1 every half WATCHDOG_USEC, STOPPING=1 on SIGTERM; and an abstract socket name (`@...`).
#[test]
fn systemd_notify_protocol() {
    let dir = temp_file("notify-dir", "").with_extension("d");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let receive = |socket: &UnixDatagram| {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let config = temp_file(
        "notify.toml",
        "[router]\nshards = 2\n[[listeners]]\nlisten = \"127.0.0.1:0\"\ntransports = [\"rawsocket\"]\n",
    );
    let mut router = start_with(
        &config,
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
        1,
    );
    let ready = receive(&socket);
    assert!(
        ready.starts_with("READY=1\nSTATUS=serving (2 shards, 1 listeners)"),
        "{ready:?}"
    );
    // Ready means serving.
    Wamp::join(router.addresses[0], "realm1");
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(receive(&socket), "WATCHDOG=1");
    }
    // A ping every 200 ms (half of 400 ms): five take at least four intervals but the first, and not much more.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(4),
        "{took:?}"
    );
    signal(&router.child, libc::SIGTERM);
    let stopping = loop {
        let message = receive(&socket);
        if message != "WATCHDOG=1" {
            break message;
        }
    };
    assert_eq!(stopping, "STOPPING=1\nSTATUS=shutting down");
    assert!(wait_exit(&mut router.child, Duration::from_secs(10)).success());
    assert!(
        router.log().contains("systemd notification"),
        "{}",
        router.log()
    );

    // An abstract socket, as systemd itself usually names it (no watchdog: no pings).
    use std::os::linux::net::SocketAddrExt;
    let name = format!("kreisel-test-notify-{}", std::process::id());
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&address).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut router = start_with(&config, &[("NOTIFY_SOCKET", &format!("@{name}"))], 1);
    assert!(receive(&socket).starts_with("READY=1\n"));
    signal(&router.child, libc::SIGTERM);
    assert!(receive(&socket).starts_with("STOPPING=1\n"));
    assert!(wait_exit(&mut router.child, Duration::from_secs(10)).success());
}

const SECRETS: &str = r#"
[[realms]]
name = "app"

[[realms.principals]]
authid = "alice"
role = "user"
ticket = "${KREISEL_TEST_TICKET}"

[[realms.principals]]
authid = "bob"
role = "user"
ticket_file = "BOB_FILE"

[[listeners]]
listen = "127.0.0.1:0"
transports = ["rawsocket"]
"#;

/// Tickets from an environment variable and from a file: `--check` names the key of a missing variable or file,
/// the router authenticates with the resolved secrets, and no secret reaches the log (at debug) or
/// `--print-config`.
#[test]
fn secrets_from_the_environment_and_files() {
    let bob_file = temp_file("bob-ticket", "bobs file ticket\n");
    let text = SECRETS.replace("BOB_FILE", bob_file.to_str().unwrap());
    let config = temp_file("secrets.toml", &text);
    let check = |path: &std::path::Path, env: &[(&str, &str)]| {
        let mut command = Command::new(KREISEL);
        command
            .arg("--check")
            .arg(path)
            .env_remove("KREISEL_TEST_TICKET");
        for (name, value) in env {
            command.env(name, value);
        }
        let out = command.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, output) = check(&config, &[]);
    assert!(!ok);
    assert!(
        output.contains(
            "realm 'app', principal 'alice', ticket: the environment variable KREISEL_TEST_TICKET is not set"
        ),
        "{output}"
    );
    let env = [("KREISEL_TEST_TICKET", "alices env ticket")];
    let (ok, output) = check(&config, &env);
    assert!(ok, "{output}");
    assert!(!output.contains("alices env ticket") && !output.contains("bobs file"));
    let missing = temp_file(
        "missing-file.toml",
        &SECRETS.replace("BOB_FILE", "/nonexistent/bob"),
    );
    let (ok, output) = check(&missing, &env);
    assert!(!ok);
    assert!(
        output.contains(
            "realm 'app', principal 'bob', ticket_file: cannot read /nonexistent/bob: No such file or directory"
        ),
        "{output}"
    );
    let printed = Command::new(KREISEL)
        .arg("--print-config")
        .envs(env)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&printed.stdout).contains("alices env ticket"));

    let router = start_with(
        &config,
        &[
            ("KREISEL_TEST_TICKET", "alices env ticket"),
            ("RUST_LOG", "debug"),
        ],
        1,
    );
    let login = |authid: &str, ticket: &str| {
        let mut client = rawsocket_json(router.addresses[0]);
        send(
            &mut client,
            &format!(
                r#"[1, "app", {{"roles": {{"subscriber": {{}}}}, "authmethods": ["ticket"], "authid": "{authid}"}}]"#
            ),
        );
        assert_eq!(recv(&mut client)[0], 4, "CHALLENGE");
        send(&mut client, &format!(r#"[5, "{ticket}", {{}}]"#));
        recv(&mut client)[0].as_u64()
    };
    assert_eq!(login("alice", "alices env ticket"), Some(2), "WELCOME");
    assert_eq!(login("bob", "bobs file ticket"), Some(2), "WELCOME");
    assert_eq!(login("bob", "wrong"), Some(3), "ABORT");
    // The failure is logged with the peer's address (for fail2ban), the secrets never.
    wait_for_log(&router, "session aborted", 1);
    let log = router.log();
    let aborted = log.lines().find(|l| l.contains("session aborted")).unwrap();
    assert!(
        aborted.contains("peer=127.0.0.1:")
            && aborted.contains("reason=wamp.error.authentication_failed"),
        "{aborted}"
    );
    for secret in ["alices env ticket", "bobs file ticket"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

/// `[log] format = "json"`: every line on stderr is one JSON object with timestamp, level, target, message and the
/// event's fields.
#[test]
fn json_logs_parse_as_json() {
    let config = temp_file(
        "json.toml",
        "[log]\nformat = \"json\"\n[[listeners]]\nlisten = \"127.0.0.1:0\"\ntransports = [\"rawsocket\"]\n",
    );
    let mut child = Guard(
        Command::new(KREISEL)
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = || -> Option<serde_json::Value> {
        let line = lines.recv_timeout(Duration::from_secs(10)).ok()?;
        // One key per field: an event field named like a standard key would make it appear twice.
        for key in ["timestamp", "level", "target", "message"] {
            assert_eq!(
                line.matches(&format!("\"{key}\":")).count(),
                1,
                "{key}: {line}"
            );
        }
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}")))
    };
    let next_line = || next().expect("a log line within 10 s");
    let listening = loop {
        let line = next_line();
        for key in ["timestamp", "level", "target", "message"] {
            assert!(line[key].is_string(), "{key} in {line}");
        }
        if line["message"] == "listening" {
            break line;
        }
    };
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["target"], "kreisel_io::server");
    assert_eq!(listening["transports"], "rawsocket");
    let address: SocketAddr = listening["address"].as_str().unwrap().parse().unwrap();
    // A protocol violation: logged with the peer's address.
    let mut rude = rawsocket_json(address);
    send(&mut rude, r#"[16, 1, {}, "com.example.topic", []]"#);
    assert_eq!(recv(&mut rude)[0], 3, "ABORT");
    let aborted = loop {
        let line = next_line();
        if line["message"] == "session aborted" {
            break line;
        }
    };
    assert_eq!(aborted["reason"], "wamp.error.protocol_violation");
    assert_eq!(
        aborted["peer"]
            .as_str()
            .map(|p| p.starts_with("127.0.0.1:")),
        Some(true),
        "{aborted}"
    );
    signal(&child.0, libc::SIGTERM);
    let mut rest = 0;
    while let Some(line) = next() {
        assert!(line["timestamp"].is_string() && line["message"].is_string());
        rest += 1;
    }
    assert!(rest >= 2, "shutdown is logged");
    assert!(wait_exit(&mut child.0, Duration::from_secs(10)).success());
}

/// A stderr pipe nobody reads: the router keeps serving (every refused PUBLISH answered, at debug each one logs a
/// line), counts the lines it had to drop, and still exits promptly on SIGTERM.
#[test]
fn a_stderr_nobody_reads_does_not_stall_the_router() {
    let dir = temp_file("stderr-dir", "").with_extension("d");
    std::fs::create_dir_all(&dir).unwrap();
    let (wamp, metrics) = (dir.join("wamp.sock"), dir.join("metrics.sock"));
    let config = temp_file(
        "stderr.toml",
        &format!(
            "[[realms]]\nname = \"realm1\"\n[[realms.roles]]\nname = \"anonymous\"\n\
             permissions = [{{ uri = \"com.open.\", match = \"prefix\", allow = [\"subscribe\"] }}]\n\
             [[listeners]]\nlisten = \"unix:{}\"\ntransports = [\"rawsocket\"]\n\
             [[listeners]]\nlisten = \"unix:{}\"\ntransports = [\"websocket\"]\nmetrics = \"/metrics\"\n",
            wamp.display(),
            metrics.display()
        ),
    );
    let mut child = Guard(
        Command::new(KREISEL)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "debug")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Held open and never read.
    let _stderr = child.0.stderr.take();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut client = loop {
        match UnixStream::connect(&wamp) {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("the router does not listen: {e}"),
        }
    };
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let frame = |json: &str| {
        let mut frame = (json.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(json.as_bytes());
        frame
    };
    let read_message = |client: &mut UnixStream| -> serde_json::Value {
        let mut header = [0u8; 4];
        client.read_exact(&mut header).unwrap();
        let len = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
        let mut payload = vec![0u8; len];
        client.read_exact(&mut payload).unwrap();
        serde_json::from_slice(&payload).unwrap()
    };
    client.write_all(&[0x7F, 0xF1, 0, 0]).unwrap();
    let mut reply = [0u8; 4];
    client.read_exact(&mut reply).unwrap();
    client
        .write_all(&frame(r#"[1, "realm1", {"roles": {"publisher": {}}}]"#))
        .unwrap();
    assert_eq!(read_message(&mut client)[0], 2, "WELCOME");
    // 20000 refused publications, each logged at debug ("not authorized"): megabytes for a 64 KiB pipe.
    let started = Instant::now();
    let count = 20_000;
    let writer = {
        let mut client = client.try_clone().unwrap();
        std::thread::spawn(move || {
            for request in 1..=count {
                let publish =
                    format!(r#"[16, {request}, {{"acknowledge": true}}, "com.closed.x", []]"#);
                client.write_all(&frame(&publish)).unwrap();
            }
        })
    };
    for request in 1..=count {
        let error = read_message(&mut client);
        assert_eq!(
            (error[0].as_u64(), error[2].as_u64()),
            (Some(8), Some(request))
        );
    }
    writer.join().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let mut scrape = UnixStream::connect(&metrics).unwrap();
    let (status, _, page) = http_over(&mut scrape, "GET /metrics HTTP/1.1");
    assert_eq!(status, 200);
    let dropped = sample(&page, "kreisel_log_lines_dropped_total");
    assert!(dropped > 1000.0, "{dropped} lines dropped");
    signal(&child.0, libc::SIGTERM);
    assert!(wait_exit(&mut child.0, Duration::from_secs(10)).success());
}

const LAME_DUCK: &str = r#"
[router]
shards = 2

[limits]
lame_duck_ms = 3000
shutdown_grace_ms = 2000

[[listeners]]
listen = "127.0.0.1:0"
transports = ["rawsocket"]

[[listeners]]
listen = "127.0.0.1:0"
transports = ["websocket"]
metrics = "/metrics"
"#;

/// SIGUSR2: the router stops accepting (the WAMP port refuses connections, the probe listener refuses new
/// sessions), `/readyz` answers 503 while `/healthz` stays 200, the sessions get GOODBYE
/// `wamp.close.system_shutdown` spread over `lame_duck_ms` by both shards, and the router exits 0.
#[test]
fn lame_duck_drain() {
    let mut router = start_with(&temp_file("lame-duck.toml", LAME_DUCK), &[], 2);
    let (wamp, probes) = (router.addresses[0], router.addresses[1]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while http(probes, "GET /readyz HTTP/1.1").0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Eight in a row: four on each shard.
    let sessions = 8;
    let clients: Vec<Wamp> = (0..sessions).map(|_| Wamp::join(wamp, "realm1")).collect();
    let signalled = Instant::now();
    signal(&router.child, libc::SIGUSR2);
    // Each client waits for its GOODBYE and answers it.
    let waiting: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            std::thread::spawn(move || {
                let goodbye = client.recv();
                let at = signalled.elapsed();
                client.send(r#"[6, {}, "wamp.close.goodbye_and_out"]"#);
                (goodbye, at, client.closed())
            })
        })
        .collect();
    wait_for_log(&router, "lame duck: listeners closed", 1);
    let refused = TcpStream::connect(wamp).map(|_| ()).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let (status, _, body) = http(probes, "GET /readyz HTTP/1.1");
    assert_eq!(
        (status, body.as_str()),
        (503, "draining (lame duck): not accepting sessions\n")
    );
    assert_eq!(http(probes, "GET /healthz HTTP/1.1").0, 200);
    let (_, _, page) = http(probes, "GET /metrics HTTP/1.1");
    assert_eq!(sample(&page, "kreisel_draining"), 1.0);
    let upgrade = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                   Sec-WebSocket-Protocol: wamp.2.json";
    let (status, _, body) = http(probes, upgrade);
    assert_eq!(
        (status, body.as_str()),
        (503, "draining: not accepting sessions\n")
    );

    let mut times = Vec::new();
    for thread in waiting {
        let (goodbye, at, closed) = thread.join().unwrap();
        assert_eq!(
            goodbye,
            serde_json::json!([6, {}, "wamp.close.system_shutdown"])
        );
        assert!(closed, "the router closes after the GOODBYE exchange");
        times.push(at);
    }
    times.sort();
    // Spread over the 3 s period (two shards, four sessions each: one every 750 ms per shard, the shards taking
    // turns: one every 375 ms router-wide, from 187 to 2812 ms), not all at once; the bounds leave room for a loaded
    // machine.
    let (first, last) = (times[0], times[sessions - 1]);
    assert!(
        first >= Duration::from_millis(100) && last <= Duration::from_millis(4500),
        "{times:?}"
    );
    assert!(last - first >= Duration::from_millis(1500), "{times:?}");
    for window in times.windows(sessions / 2) {
        assert!(
            window[window.len() - 1] - window[0] >= Duration::from_millis(300),
            "half of the sessions within 300 ms: {times:?}"
        );
    }
    let status = wait_exit(&mut router.child, Duration::from_secs(10));
    assert!(status.success(), "{status}\n{}", router.log());
    let log = router.log();
    for shard in ["shard=0 sessions=4", "shard=1 sessions=4"] {
        assert!(log.contains(shard), "{shard}:\n{log}");
    }
    assert!(log.contains("lame duck: drain complete"), "{log}");
}

/// The example unit (`examples/systemd/kreisel.service`) runs this binary as `Type=notify` with a watchdog, in a
/// sandbox, with room for `connections_max` connections; where `systemd-analyze` is installed, it verifies the unit.
#[test]
fn the_example_systemd_unit() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/systemd/kreisel.service"
    );
    let unit = std::fs::read_to_string(path).unwrap();
    let mut service = std::collections::HashMap::new();
    let mut section = "";
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if let Some((key, value)) = line.split_once('=').filter(|_| !line.starts_with('#')) {
            if section == "[Service]" {
                service.entry(key).or_insert_with(Vec::new).push(value);
            }
        }
    }
    let one = |key: &str| {
        let values = service.get(key).unwrap_or_else(|| panic!("no {key}="));
        values[0]
    };
    for (key, value) in [
        ("Type", "notify"),
        ("Restart", "on-failure"),
        ("NoNewPrivileges", "yes"),
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
    ] {
        assert_eq!(one(key), value, "{key}");
    }
    assert!(one("ExecStart").ends_with("kreisel --config /etc/kreisel/kreisel.toml"));
    assert!(one("ExecStartPre").ends_with("kreisel --check /etc/kreisel/kreisel.toml"));
    assert!(one("ExecReload").contains("-HUP"));
    assert!(one("WatchdogSec").ends_with('s'));
    let files: usize = one("LimitNOFILE").parse().unwrap();
    let connections = kreisel_io::config::Limits::default().connections_max;
    assert!(files >= connections + 64 + 256, "LimitNOFILE={files}");
    let stop: u64 = one("TimeoutStopSec").trim_end_matches('s').parse().unwrap();
    let limits = kreisel_io::config::Limits::default();
    assert!(stop * 1000 > limits.shutdown_grace_ms);
    assert!(
        unit.contains(&format!("#KillSignal=SIGUSR2\nTimeoutStopSec={stop}s"))
            && stop * 1000 > limits.lame_duck_ms + limits.shutdown_grace_ms,
        "with KillSignal=SIGUSR2, a stop drains for lame_duck_ms plus the grace"
    );
    // The unit with this build's binary, verified by systemd's own parser where it is installed.
    let analyze = std::path::Path::new("/usr/bin/systemd-analyze");
    if analyze.exists() {
        let dir = temp_file("unit-dir", "").with_extension("d");
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("kreisel.service");
        std::fs::write(&copy, unit.replace("/usr/local/bin/kreisel", KREISEL)).unwrap();
        let out = Command::new(analyze)
            .arg("verify")
            .arg(&copy)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !said.contains("kreisel.service"),
            "{said}"
        );
    }
}
