//! Dynamic authentication and authorization end to end: an authenticator and an authorizer written as crossbar.io's
//! examples write them (tests/interop/dynamic_components.py, autobahn-python) decide about autobahn-python clients
//! (tests/interop/dynamic_auth.py) and autobahn-js clients (tests/interop-js/dynamic_auth.js) over WebSocket and
//! RawSocket. The components always join over WebSocket with JSON; with `KREISEL_TEST_SHARDS=4` they and the
//! clients sit on different shards.

use std::time::Duration;

use kreisel_tests::programs::{node_check, python, python_dir, Check};
use kreisel_tests::{python_check, sample, scrape, TestRouter};

/// Realm `auth` holds the components; realm `dynamic` authenticates every method through them and gives role
/// `frontend` an authorizer; realm `absent` names an authenticator nobody registers.
pub const CONFIG: &str = r#"
[[realms]]
name = "auth"

[[realms]]
name = "dynamic"

[[realms.authenticators]]
methods = ["ticket", "wampcra", "cryptosign", "scram"]
procedure = "com.example.authenticate"
realm = "auth"
timeout_ms = 2000

[[realms.authenticators]]
methods = ["anonymous"]
procedure = "com.example.anonymous"
realm = "auth"

[[realms.roles]]
name = "frontend"
authorizer = { procedure = "com.example.authorize", realm = "auth", timeout_ms = 2000 }

[[realms.roles]]
name = "guest"
permissions = [{ uri = "com.example.public.", match = "prefix", allow = ["subscribe"] }]

[[realms]]
name = "absent"

[[realms.authenticators]]
methods = ["ticket"]
procedure = "com.example.nobody"
realm = "auth"
"#;

/// The components, joined (killed when dropped).
fn components(router: &TestRouter) -> Check {
    let mut components = Check::spawn(
        &python(),
        &python_dir(),
        "dynamic_components.py",
        &[&router.ws_url(), "json"],
    );
    components.wait_for_line("ready", Duration::from_secs(20));
    components
}

fn autobahn_python(websocket: bool, serializer: &str) {
    let metrics = "[[listeners]]\nlisten = \"127.0.0.1:0\"\ntransports = [\"websocket\"]\nmetrics = \"/metrics\"\n";
    let router = TestRouter::start(&format!("{CONFIG}\n{metrics}"));
    let _components = components(&router);
    let url = if websocket {
        router.ws_url()
    } else {
        router.rs_url()
    };
    python_check("dynamic_auth.py", &[&url, serializer]);
    // What dynamic_auth.py made the router do, as its metrics tell it (summed over the shards): 14 calls to
    // authenticators, 4 of them failing (never answering, a number, 100 KB, not registered: the last one counts
    // as a failure without a call); the authorizer asked at least once per check, two of which failed.
    let page = scrape(router.tcp_address(3));
    assert_eq!(
        sample(&page, "kreisel_authenticator_calls_total"),
        14.0,
        "{page}"
    );
    assert_eq!(sample(&page, "kreisel_authenticator_failures_total"), 4.0);
    assert!(sample(&page, "kreisel_authorizer_calls_total") >= 10.0);
    assert_eq!(sample(&page, "kreisel_authorizer_failures_total"), 2.0);
}

fn autobahn_js(websocket: bool) {
    let router = TestRouter::start(CONFIG);
    let _components = components(&router);
    let url = if websocket {
        router.ws_url()
    } else {
        router.rs_url()
    };
    node_check("dynamic_auth.js", &[&url, "json"]);
}

/// tests/interop/join_rate.py (the join rate docs/PERFORMANCE.md reports) keeps working: a few joins through the
/// dynamic authenticator, and through a static principal.
#[test]
fn join_rate_script() {
    let config = format!(
        "{CONFIG}\n[[realms]]\nname = \"static\"\n[[realms.principals]]\nauthid = \"joe\"\nrole = \"user\"\n\
         ticket = \"secret!!!\"\n"
    );
    let router = TestRouter::start(&config);
    let _components = components(&router);
    let address = router.rs.to_string();
    for realm in ["dynamic", "static"] {
        python_check(
            "join_rate.py",
            &[&address, realm, "joe", "secret!!!", "40", "4"],
        );
    }
}

#[test]
fn autobahn_python_dynamic_websocket_json() {
    autobahn_python(true, "json");
}

#[test]
fn autobahn_python_dynamic_websocket_msgpack() {
    autobahn_python(true, "msgpack");
}

#[test]
fn autobahn_python_dynamic_rawsocket_json() {
    autobahn_python(false, "json");
}

#[test]
fn autobahn_python_dynamic_rawsocket_msgpack() {
    autobahn_python(false, "msgpack");
}

#[test]
fn autobahn_js_dynamic_websocket_json() {
    autobahn_js(true);
}

#[test]
fn autobahn_js_dynamic_rawsocket_json() {
    autobahn_js(false);
}

/// MQTT clients (Debian's mosquitto_pub, and a raw socket for packets sent right behind the CONNECT) and dynamic
/// authentication: a CONNECT waits for the realm's dynamic authenticator (ticket and anonymous logins), which may
/// refuse it (CONNACK 0x87), and for the role's dynamic authorizer asked about its will (refused: CONNACK 0x87); the
/// PUBLISHes of a session whose role has an authorizer are decided by it (MQTT 5 PUBACK 0x87 when it says no).
#[test]
fn mqtt_clients_and_dynamic_authentication() {
    let config = format!(
        "{CONFIG}\n[[realms]]\nname = \"iot\"\n[[realms.principals]]\nauthid = \"alice\"\nrole = \"device\"\n\
         ticket = \"pw\"\n[[realms.roles]]\nname = \"device\"\n\
         authorizer = {{ procedure = \"com.example.authorize\", realm = \"auth\", timeout_ms = 2000 }}\n\
         [[listeners]]\nlisten = \"127.0.0.1:0\"\ntransports = [\"mqtt\"]\nrealm = \"dynamic\"\n\
         [[listeners]]\nlisten = \"127.0.0.1:0\"\ntransports = [\"mqtt\"]\nrealm = \"iot\"\n\
         [[listeners]]\nlisten = \"127.0.0.1:0\"\ntransports = [\"mqtt\", \"websocket\"]\npath = \"/mqtt\"\n\
         realm = \"dynamic\"\n"
    );
    let router = TestRouter::start(&config);
    let _components = components(&router);
    let pub_ = |listener: usize, args: &[&str]| {
        let path = "/usr/bin/mosquitto_pub";
        assert!(
            std::path::Path::new(path).exists(),
            "{path} missing: run tests/run.sh (it installs Debian's mosquitto-clients)"
        );
        let port = router.tcp_address(listener).port().to_string();
        let out = std::process::Command::new(path)
            .args([
                "-d",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-V",
                "mqttv5",
                "-q",
                "1",
            ])
            .args(args)
            .output()
            .expect("mosquitto_pub runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    // Listener 3 is realm `dynamic` (every login through the authenticator, answered by a component over the
    // router: the CONNECT waits for it), 4 realm `iot`.
    let joe = ["-u", "joe", "-P", "secret!!!", "-m", "hi", "-t"];
    let (ok, text) = pub_(3, &[&joe[..], &["com/example/public/x"]].concat());
    assert!(
        ok && text.contains("CONNACK (0)") && text.contains("RC:0"),
        "logged in by the dynamic authenticator (role frontend), published: {text}"
    );
    let (_, text) = pub_(3, &[&joe[..], &["com/example/secret"]].concat());
    assert!(
        text.contains("CONNACK (0)") && text.contains("RC:135"),
        "joe's role's authorizer refuses: {text}"
    );
    let wrong = [
        "-u",
        "joe",
        "-P",
        "not it",
        "-t",
        "com/example/x",
        "-m",
        "hi",
    ];
    let (ok, text) = pub_(3, &wrong);
    assert!(
        !ok && text.contains("CONNACK (135)"),
        "a wrong password: the authenticator's error, not authorized: {text}"
    );
    let nobody = [
        "-u",
        "nobody-here",
        "-P",
        "x",
        "-t",
        "com/example/x",
        "-m",
        "hi",
    ];
    let (ok, text) = pub_(3, &nobody);
    assert!(!ok && text.contains("CONNACK (135)"), "{text}");
    // An authenticator that does not answer within its timeout (2 s): bad user name or password.
    let slow = [
        "-u",
        "slowpoke",
        "-P",
        "x",
        "-t",
        "com/example/x",
        "-m",
        "hi",
    ];
    let (ok, text) = pub_(3, &slow);
    assert!(!ok && text.contains("CONNACK (134)"), "{text}");
    // MQTT lets a client send on without waiting for CONNACK: what follows the CONNECT waits with it, in order.
    pipelined_connect(router.tcp_address(3));
    // paho-mqtt (3.1.1 and 5) over TCP and over WebSocket (listener 5).
    let tcp = format!("mqtt://{}", router.tcp_address(3));
    let ws = format!("ws://{}/mqtt", router.tcp_address(5));
    for url in [&tcp, &ws] {
        python_check(
            "mqtt.py",
            &[
                "dynamic_login",
                url,
                &router.ws_url(),
                "json",
                "joe:secret!!!",
            ],
        );
    }
    let anonymous = ["-t", "com/example/public/x", "-m", "hi"];
    let (_, text) = pub_(3, &anonymous);
    assert!(
        text.contains("CONNACK (0)") && text.contains("RC:135"),
        "anonymous through the authenticator (role guest, which may only subscribe): {text}"
    );
    let alice = ["-u", "alice", "-P", "pw", "-m", "hi", "-t"];
    let (ok, text) = pub_(4, &[&alice[..], &["com/example/public/x"]].concat());
    assert!(ok && text.contains("RC:0"), "{text}");
    let (_, text) = pub_(4, &[&alice[..], &["com/example/secret"]].concat());
    assert!(text.contains("RC:135"), "refused by the authorizer: {text}");
    let will = [
        "--will-topic",
        "com/example/public/w",
        "--will-payload",
        "bye",
    ];
    // The will waits for the role's authorizer (asked about the call to wamp.session.add_testament, then about
    // publishing the will's topic): allowed under com.example.public., refused elsewhere.
    let (ok, text) = pub_(
        4,
        &[&will[..], &alice[..], &["com/example/public/x"]].concat(),
    );
    assert!(
        ok && text.contains("CONNACK (0)") && text.contains("RC:0"),
        "{text}"
    );
    let secret_will = [
        "--will-topic",
        "com/example/secret/w",
        "--will-payload",
        "bye",
    ];
    let (ok, text) = pub_(
        4,
        &[&secret_will[..], &alice[..], &["com/example/public/x"]].concat(),
    );
    assert!(!ok && text.contains("CONNACK (135)"), "{text}");
}

/// CONNECT (joe, through the dynamic authenticator), PUBLISH at QoS 1 and PINGREQ in one write, over a raw
/// socket: CONNACK 0, then the PUBACK and the PINGRESP.
fn pipelined_connect(addr: std::net::SocketAddr) {
    use kreisel_io::mqtt::{self, Packet, Version};
    use std::io::{Read, Write};
    let version = Version::V5;
    let mut bytes = Vec::new();
    let packets = [
        Packet::Connect(mqtt::Connect {
            version,
            clean_start: true,
            keep_alive: 30,
            properties: mqtt::Properties::EMPTY,
            client_id: "pipelined",
            will: None,
            username: Some("joe"),
            password: Some(b"secret!!!"),
        }),
        Packet::Publish(mqtt::Publish {
            dup: false,
            qos: mqtt::QoS::AtLeastOnce,
            retain: false,
            topic: "com/example/public/pipelined",
            packet_id: 7,
            properties: mqtt::Properties::EMPTY,
            payload: b"right behind the CONNECT",
        }),
        Packet::PingReq,
    ];
    for packet in &packets {
        mqtt::encode(packet, version, &mut bytes).expect("encodes");
    }
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(&bytes).expect("write");
    let decoder = mqtt::Decoder {
        version,
        from: mqtt::Side::Server,
        max_packet_size: mqtt::PACKET_SIZE_MAX,
    };
    let mut got = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    while seen.len() < 3 {
        let n = stream
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("{e}; got {seen:?}"));
        assert!(n > 0, "closed; got {seen:?}");
        got.extend_from_slice(&buf[..n]);
        seen.clear();
        let mut rest = &got[..];
        while let Ok(Some((used, packet))) = decoder.decode(rest) {
            seen.push(match packet {
                Packet::ConnAck(ack) => format!("CONNACK {:#04x}", ack.code),
                Packet::PubAck(ack) => format!("PUBACK {} {:#04x}", ack.packet_id, ack.code),
                other => format!("{:?}", other.packet_type()),
            });
            rest = &rest[used..];
        }
    }
    // CONNACK first; PINGRESP may overtake the PUBACK, which waits for the role's dynamic authorizer.
    assert_eq!(seen[0], "CONNACK 0x00", "{seen:?}");
    let mut after: Vec<&str> = seen[1..].iter().map(String::as_str).collect();
    after.sort_unstable();
    assert_eq!(after, ["PUBACK 7 0x00", "PingResp"], "{seen:?}");
}
