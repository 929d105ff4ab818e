//! The MQTT listener end to end: paho-mqtt (3.1.1 and 5) against autobahn-python through kreisel
//! (`tests/interop/mqtt.py`: passthrough and native payloads, QoS 0/1/2, wildcards, retained messages, wills,
//! authentication and authorization refusals, MQTT over TCP, WebSocket, Unix sockets and TLS with client
//! certificates), Debian's `mosquitto_pub`/`mosquitto_sub`, and bad input from a raw socket: each offender gets
//! the spec's answer and a WAMP session on the same router is unaffected. The test command runs these with 1 and
//! with 4 shards (`KREISEL_TEST_SHARDS`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kreisel_codec::Serializer;
use kreisel_io::mqtt::{self, Packet, Version};
use kreisel_tests::{python_check, Client, TempDir, TestRouter};

/// Realm `secure` (ticket principal alice, a role limited to `open.`), and the MQTT listeners: 3 plain TCP, 4 MQTT
/// and MQTT over WebSocket (path `/mqtt`) on one port, 5 a Unix socket, 6 realm `secure`.
fn config(unix: &str) -> String {
    let mapping = r#"[listeners.payload_mapping]
"" = { type = "passthrough" }
"nj." = { type = "native", serializer = "json" }
"nc." = { type = "native", serializer = "cbor" }
"#;
    format!(
        r#"
[[realms]]
name = "secure"
[[realms.principals]]
authid = "alice"
role = "user"
ticket = "secret"
[[realms.roles]]
name = "user"
permissions = [{{ uri = "open.", match = "prefix", allow = ["publish", "subscribe"] }}]

[[listeners]]
listen = "127.0.0.1:0"
transports = ["mqtt"]
realm = "realm1"
{mapping}
[[listeners]]
listen = "127.0.0.1:0"
transports = ["mqtt", "websocket"]
path = "/mqtt"
realm = "realm1"
{mapping}
[[listeners]]
listen = "unix:{unix}"
transports = ["mqtt"]
realm = "realm1"
{mapping}
[[listeners]]
listen = "127.0.0.1:0"
transports = ["mqtt"]
realm = "secure"

[limits]
message_max = 65536
"#
    )
}

struct Setup {
    router: TestRouter,
    unix: String,
    _dir: TempDir,
}

fn setup() -> Setup {
    let dir = TempDir::new("mqtt");
    let unix = dir.0.join("mqtt.sock").display().to_string();
    let router = TestRouter::start(&config(&unix));
    Setup {
        router,
        unix,
        _dir: dir,
    }
}

impl Setup {
    fn tcp(&self) -> SocketAddr {
        self.router.tcp_address(3)
    }

    fn mqtt_url(&self) -> String {
        format!("mqtt://{}", self.tcp())
    }
}

fn check(name: &str, mqtt_url: &str, wamp_url: &str, serializer: &str) {
    python_check("mqtt.py", &[name, mqtt_url, wamp_url, serializer]);
}

#[test]
fn paho_and_autobahn_over_tcp_json() {
    let s = setup();
    check("pubsub", &s.mqtt_url(), &s.router.ws_url(), "json");
}

#[test]
fn paho_over_websocket_autobahn_rawsocket_msgpack() {
    let s = setup();
    let url = format!("ws://{}/mqtt", s.router.tcp_address(4));
    check("pubsub", &url, &s.router.rs_url(), "msgpack");
}

#[test]
fn paho_over_a_unix_socket_autobahn_cbor() {
    let s = setup();
    check(
        "pubsub",
        &format!("unix:{}", s.unix),
        &s.router.ws_url(),
        "cbor",
    );
}

#[test]
fn native_payloads_json_and_cbor() {
    let s = setup();
    check("native", &s.mqtt_url(), &s.router.rs_url(), "json");
}

#[test]
fn retained_messages_are_retained_events() {
    let s = setup();
    check("retained", &s.mqtt_url(), &s.router.ws_url(), "msgpack");
}

#[test]
fn wills_are_testaments() {
    let s = setup();
    check("will", &s.mqtt_url(), &s.router.rs_url(), "json");
}

#[test]
fn authentication_and_authorization_refusals() {
    let s = setup();
    let url = format!("mqtt://{}", s.router.tcp_address(6));
    check("auth", &url, &s.router.ws_url(), "json");
}

/// MQTT over TLS with `client_ca`: paho with a client certificate joins, without one the handshake fails; the
/// same with mosquitto_pub.
#[test]
fn tls_with_client_certificates() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let dir = TempDir::new("mqtt-tls");
    // Distinct subjects: OpenSSL (paho's Python, mosquitto) takes a certificate whose issuer is its own subject for
    // self-signed.
    let params = |names: Vec<String>, cn: &str| {
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
    };
    let mut ca_params = params(Vec::new(), "kreisel test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = params(vec!["localhost".into(), "127.0.0.1".into()], "localhost")
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = params(vec!["device-17".into()], "device-17")
        .signed_by(&client_key, &ca)
        .unwrap();
    let write = |name: &str, pem: String| std::fs::write(dir.0.join(name), pem).unwrap();
    write("ca.pem", ca.pem());
    write("server.pem", server.pem());
    write("server.key", server_key.serialize_pem());
    write("client.pem", client.pem());
    write("client.key", client_key.serialize_pem());
    let path = |name: &str| dir.0.join(name).display().to_string();
    let router = TestRouter::start(&format!(
        r#"
[[listeners]]
listen = "127.0.0.1:0"
transports = ["mqtt"]
realm = "realm1"
[listeners.tls]
certificate = "{}"
key = "{}"
client_ca = "{}"
"#,
        path("server.pem"),
        path("server.key"),
        path("ca.pem")
    ));
    let addr = router.tcp_address(3);
    python_check(
        "mqtt.py",
        &[
            "tls",
            &format!("mqtts://{addr}"),
            &router.rs_url(),
            "msgpack",
            &dir.0.display().to_string(),
        ],
    );
    let port = addr.port().to_string();
    let (ca_file, cert, key) = (path("ca.pem"), path("client.pem"), path("client.key"));
    let base = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "--cafile",
        &ca_file,
        "-t",
        "tls/x",
        "-m",
        "m",
        "-q",
        "1",
    ];
    let mut with = base.to_vec();
    with.extend(["--cert", &cert, "--key", &key]);
    publish(&with);
    let out = mosquitto("mosquitto_pub").args(base).output().unwrap();
    assert!(!out.status.success(), "no client certificate: refused");
}

// -------------------------------------------------------------------------------------------------------------
// mosquitto-clients

fn mosquitto(program: &str) -> Command {
    let path = format!("/usr/bin/{program}");
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} missing: run tests/run.sh (it installs Debian's mosquitto-clients)"
    );
    Command::new(path)
}

/// A running `mosquitto_sub`: its output lines (`-d` debug lines start with `Client `).
struct Sub {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

/// `mosquitto_sub -d ARGS`, started.
fn sub(args: &[&str]) -> Sub {
    // Line-buffered (through coreutils' stdbuf), so that the SUBACK line arrives while it runs.
    let program = mosquitto("mosquitto_sub").get_program().to_owned();
    let mut child = Command::new("stdbuf")
        .arg("-oL")
        .arg(program)
        .arg("-d")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Sub { child, lines }
}

impl Sub {
    /// Waits until the subscription is in place (SUBACK received).
    fn subscribed(&mut self) -> &mut Sub {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if line.contains("received SUBACK") {
                return self;
            }
        }
        panic!("mosquitto_sub got no SUBACK");
    }

    /// Waits for the end; whether it succeeded, and the messages it printed.
    fn finish(self) -> (bool, String) {
        let Sub { mut child, lines } = self;
        let status = child.wait().expect("mosquitto_sub");
        let printed: Vec<String> = (lines.iter())
            .filter(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed ("))
            .collect();
        let mut out = printed.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        (status.success(), out)
    }
}

fn publish(args: &[&str]) {
    let out = mosquitto("mosquitto_pub")
        .args(args)
        .output()
        .expect("mosquitto_pub");
    assert!(out.status.success(), "mosquitto_pub {args:?}: {out:?}");
}

#[test]
fn mosquitto_clients_publish_subscribe_retain_and_authenticate() {
    let s = setup();
    let port = s.tcp().port().to_string();
    let secure = s.router.tcp_address(6).port().to_string();
    let base = ["-h", "127.0.0.1", "-p", &port];
    for version in ["mqttv311", "mqttv5"] {
        let topic = format!("mosq/{version}/#");
        let mut args: Vec<&str> = base.to_vec();
        args.extend(["-V", version, "-t", &topic, "-v", "-C", "3", "-W", "10"]);
        let mut child = sub(&args);
        child.subscribed();
        for (qos, message) in [("0", "zero"), ("1", "one"), ("2", "two")] {
            let topic = format!("mosq/{version}/q{qos}");
            let mut args: Vec<&str> = base.to_vec();
            args.extend(["-V", version, "-q", qos, "-t", &topic, "-m", message]);
            publish(&args);
        }
        let (ok, out) = child.finish();
        assert!(ok, "{version}: {out}");
        assert_eq!(
            out,
            format!("mosq/{version}/q0 zero\nmosq/{version}/q1 one\nmosq/{version}/q2 two\n"),
            "{version}"
        );
        // Retained, then cleared with an empty retained message (-n).
        let topic = format!("mosq/{version}/retained");
        let mut args: Vec<&str> = base.to_vec();
        args.extend(["-V", version, "-q", "1", "-r", "-t", &topic, "-m", "kept"]);
        publish(&args);
        let mut args: Vec<&str> = base.to_vec();
        args.extend(["-V", version, "-t", &topic, "-C", "1", "-W", "5"]);
        let (ok, out) = sub(&args).finish();
        assert!(ok && out == "kept\n", "{version}: retained: {out}");
        let mut clear: Vec<&str> = base.to_vec();
        clear.extend(["-V", version, "-q", "1", "-r", "-n", "-t", &topic]);
        publish(&clear);
        let mut quick: Vec<&str> = args[..args.len() - 2].to_vec();
        quick.extend(["-W", "1"]);
        let (ok, out) = sub(&quick).finish();
        assert!(!ok && out.is_empty(), "{version}: cleared: {out}");
        // A password that is right, and one that is wrong.
        let secure_args = [
            "-h",
            "127.0.0.1",
            "-p",
            &secure,
            "-V",
            version,
            "-u",
            "alice",
            "-t",
            "open/m",
            "-m",
            "x",
        ];
        let mut right = secure_args.to_vec();
        right.extend(["-P", "secret", "-q", "1"]);
        publish(&right);
        let mut wrong = secure_args.to_vec();
        wrong.extend(["-P", "nope"]);
        let out = mosquitto("mosquitto_pub").args(&wrong).output().unwrap();
        assert!(
            !out.status.success(),
            "{version}: a wrong password is refused"
        );
        let text = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(
            text.contains("bad user name or password") || text.contains("not authorised"),
            "{version}: {text}"
        );
    }
    // Over the Unix socket.
    let mut child = sub(&["--unix", &s.unix, "-t", "unix/t", "-C", "1", "-W", "10"]);
    child.subscribed();
    publish(&[
        "--unix", &s.unix, "-t", "unix/t", "-m", "via unix", "-q", "1",
    ]);
    let (ok, out) = child.finish();
    assert!(ok && out == "via unix\n", "unix: {out}");
}

// -------------------------------------------------------------------------------------------------------------
// Bad input from a raw socket

fn raw(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

fn packet(packet: &Packet<'_>, version: Version) -> Vec<u8> {
    let mut out = Vec::new();
    mqtt::encode(packet, version, &mut out).expect("encodes");
    out
}

fn connect_packet(version: Version, keep_alive: u16) -> Vec<u8> {
    packet(
        &Packet::Connect(mqtt::Connect {
            version,
            clean_start: true,
            keep_alive,
            properties: mqtt::Properties::EMPTY,
            client_id: "raw",
            will: None,
            username: None,
            password: None,
        }),
        version,
    )
}

/// Everything the router sends until it closes the connection (or 5 s pass).
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("no close ({e}); got {out:?}"),
        }
    }
}

/// Packets in `bytes`, decoded as a client decodes the server's (`version`).
fn packets(bytes: &[u8], version: Version) -> Vec<String> {
    let decoder = mqtt::Decoder {
        version,
        from: mqtt::Side::Server,
        max_packet_size: mqtt::PACKET_SIZE_MAX,
    };
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Ok(Some((used, packet))) = decoder.decode(rest) {
        out.push(match packet {
            Packet::ConnAck(ack) => format!("CONNACK {:#04x}", ack.code),
            Packet::Disconnect(d) => format!("DISCONNECT {:#04x}", d.code),
            other => format!("{:?}", other.packet_type()),
        });
        rest = &rest[used..];
    }
    if !rest.is_empty() {
        out.push(format!("rest {rest:?}"));
    }
    out
}

/// One exchange: `input` (raw bytes), then what the router answers before closing.
fn exchange(addr: SocketAddr, input: &[u8], version: Version) -> Vec<String> {
    let mut stream = raw(addr);
    stream.write_all(input).expect("write");
    packets(&read_to_close(&mut stream), version)
}

#[test]
fn bad_input_gets_the_specs_answer_and_nothing_else_breaks() {
    let s = setup();
    let addr = s.tcp();
    let mut wamp = Client::rawsocket(s.router.rs, Serializer::Json);
    wamp.join();
    let v5 = connect_packet(Version::V5, 30);
    let v311 = connect_packet(Version::V311, 30);
    let ping = packet(&Packet::PingReq, Version::V5);
    // A packet before CONNECT: closed without a word (any first octet but CONNECT's; a PINGREQ).
    assert_eq!(exchange(addr, &ping, Version::V5), Vec::<String>::new());
    // Wrong protocol levels: 3.1.1's return code 1 below 5, MQTT 5's 0x84 above.
    let mut level3 = v311.clone();
    level3[8] = 3;
    assert_eq!(exchange(addr, &level3, Version::V311), ["CONNACK 0x01"]);
    let mut level6 = v5.clone();
    level6[8] = 6;
    assert_eq!(exchange(addr, &level6, Version::V5), ["CONNACK 0x84"]);
    // A second CONNECT: MQTT 5 DISCONNECT 0x82; 3.1.1 just closes.
    let twice = [&v5[..], &v5[..]].concat();
    assert_eq!(
        exchange(addr, &twice, Version::V5),
        ["CONNACK 0x00", "DISCONNECT 0x82"]
    );
    let twice = [&v311[..], &v311[..]].concat();
    assert_eq!(exchange(addr, &twice, Version::V311), ["CONNACK 0x00"]);
    // Malformed: QoS 3 on a PUBLISH after CONNECT.
    let bad = [&v5[..], &[0x36, 0x03, 0x00, 0x01, b'a']].concat();
    assert_eq!(
        exchange(addr, &bad, Version::V5),
        ["CONNACK 0x00", "DISCONNECT 0x81"]
    );
    let bad = [&v311[..], &[0x36, 0x03, 0x00, 0x01, b'a']].concat();
    assert_eq!(exchange(addr, &bad, Version::V311), ["CONNACK 0x00"]);
    // Over message_max (64 KiB here), refused from the fixed header: MQTT 5 DISCONNECT 0x95.
    let oversize = [&v5[..], &[0x30, 0x80, 0x80, 0x08]].concat();
    assert_eq!(
        exchange(addr, &oversize, Version::V5),
        ["CONNACK 0x00", "DISCONNECT 0x95"]
    );
    // Before CONNECT the limit is unjoined_message_max (64 KiB by default): a huge CONNECT is closed.
    assert_eq!(
        exchange(addr, &[0x10, 0xff, 0xff, 0xff, 0x7f], Version::V5),
        Vec::<String>::new()
    );
    // Persistent sessions in 3.1.1 are refused (return code 2); MQTT 5 is told Session Expiry 0 instead.
    let mut persistent = v311.clone();
    persistent[9] &= !0x02;
    assert_eq!(exchange(addr, &persistent, Version::V311), ["CONNACK 0x02"]);
    // Topic abuse, MQTT 5 QoS 0 (no PUBACK to carry a code): DISCONNECT 0x90.
    let publish = packet(
        &Packet::Publish(mqtt::Publish {
            dup: false,
            qos: mqtt::QoS::AtMostOnce,
            retain: false,
            topic: "a.b",
            packet_id: 0,
            properties: mqtt::Properties::EMPTY,
            payload: b"x",
        }),
        Version::V5,
    );
    let abuse = [&v5[..], &publish[..]].concat();
    assert_eq!(
        exchange(addr, &abuse, Version::V5),
        ["CONNACK 0x00", "DISCONNECT 0x90"]
    );
    // Keep-alive: 1 s, then silence: closed after 1.5 s (MQTT 5: DISCONNECT 0x8D).
    let start = Instant::now();
    let answers = exchange(addr, &connect_packet(Version::V5, 1), Version::V5);
    let waited = start.elapsed();
    assert_eq!(answers, ["CONNACK 0x00", "DISCONNECT 0x8d"]);
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    // Nothing else broke: the WAMP session still works.
    wamp.send(r#"[32, 1, {}, "still.here"]"#);
    assert_eq!(wamp.expect()[0], 33);
}
