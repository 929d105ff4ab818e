//! The `kreisel` binary itself: command line, configuration checking, a shared RawSocket/WebSocket port, and
//! graceful shutdown on SIGTERM (GOODBYE `wamp.close.system_shutdown`, then exit 0).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `-h` starts with kreisel's own one-line description (not the package's); `--help` also explains the signals.
#[test]
fn short_and_long_help() {
    let help = |flag: &str| {
        let out = Command::new(KREISEL).arg(flag).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let short = help("-h");
    let mut lines = short.lines();
    let about = lines.next().unwrap_or_default();
    assert!(
        about.starts_with("kreisel: ") && about.contains("WAMP v2 router"),
        "{short}"
    );
    assert_ne!(about, env!("CARGO_PKG_DESCRIPTION"));
    assert_eq!(lines.next(), Some(""), "one line, then the usage: {short}");
    assert!(lines
        .next()
        .is_some_and(|l| l.starts_with("Usage: kreisel")));
    assert!(!short.contains("SIGHUP"), "the details are for --help");
    let long = help("--help");
    assert!(long.starts_with(about), "{long}");
    for text in [
        "SIGINT/SIGTERM end every session with GOODBYE",
        "is a `warning:` line on stderr",
        "SIGHUP reloads the --config file's principals, roles (with their authorizers), dynamic authenticators \
         and anonymous access (`anonymous`, `anonymous_role`)",
    ] {
        assert!(long.replace('\n', " ").contains(text), "{text}: {long}");
    }
}

#[test]
fn help_and_print_config() {
    let help = Command::new(KREISEL).arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in ["--config", "--check", "--print-config"] {
        assert!(text.contains(flag), "{text}");
    }
    let printed = Command::new(KREISEL)
        .arg("--print-config")
        .output()
        .unwrap();
    assert!(printed.status.success());
    let path = temp_file("printed.toml", &String::from_utf8_lossy(&printed.stdout));
    let check = Command::new(KREISEL)
        .arg("--check")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// `--derive-scram` prints the `scram_*` lines of what autobahn's `derive_scram_credential` makes for the same
/// password and salt (engine/tests/data/scram_vectors.json, made with autobahn's code), reading the password from
/// stdin; with other KDFs and costs, lines a configuration accepts; a random salt by default.
#[test]
fn derive_scram_matches_autobahn_and_its_lines_configure_a_principal() {
    let derive = |args: &[&str], password: &str| {
        let mut child = Command::new(KREISEL)
            .arg("--derive-scram")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kreisel");
        // A refused argument ends kreisel before it reads the password: the pipe may be closed by then.
        let written = child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{password}\n").as_bytes());
        if let Err(e) = written {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe,
                "write password: {e}"
            );
        }
        let output = child.wait_with_output().expect("wait");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, lines, stderr) = derive(
        &["--scram-salt", "ff8d9819fc0e12bf0d24892e45987e24"],
        "correct horse battery staple",
    );
    assert!(ok, "{stderr}");
    assert_eq!(
        lines,
        "scram_kdf = \"argon2id-13\"\nscram_salt = \"ff8d9819fc0e12bf0d24892e45987e24\"\nscram_iterations = 4096\n\
         scram_memory = 512\n\
         scram_stored_key = \"857788423379f2280580a589d1a7dd07362c8b27a43cc363c5570f65ec2f2382\"\n\
         scram_server_key = \"3b1a63c09190382fc8bb53a4ba63af15a0b745f737272ae587592e54eea17b6b\"\n"
    );
    for args in [
        &["--scram-kdf", "pbkdf2", "--scram-iterations", "1000"][..],
        &[
            "--scram-kdf",
            "argon2id13",
            "--scram-iterations",
            "2",
            "--scram-memory",
            "64",
        ],
    ] {
        let (ok, lines, stderr) = derive(args, "pencil");
        assert!(ok, "{stderr}");
        let (_, again, _) = derive(args, "pencil");
        assert_ne!(lines, again, "a random salt each time");
        let path = temp_file(
            "scram.toml",
            &format!("[[realms]]\nname = \"r\"\n[[realms.principals]]\nauthid = \"a\"\nrole = \"u\"\n{lines}"),
        );
        let check = Command::new(KREISEL)
            .arg("--check")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let (ok, _, stderr) = derive(&["--scram-kdf", "md5"], "x");
    assert!(
        !ok && stderr.contains("--scram-kdf md5 is none of"),
        "{stderr}"
    );
    let (ok, _, stderr) = derive(&["--scram-kdf", "pbkdf2", "--scram-memory", "64"], "x");
    assert!(
        !ok && stderr.contains("--scram-memory is for Argon2"),
        "{stderr}"
    );
    let (ok, _, stderr) = derive(&["--scram-salt", "abc"], "x");
    assert!(!ok && stderr.contains("hex"), "{stderr}");
    let (ok, _, stderr) = derive(&["--scram-salt", "00"], "x");
    assert!(!ok && stderr.contains("salt"), "{stderr}");
}

/// `--derive-key` prints what autobahn's `auth.derive_key("hunter2", "salt123", 100, 32)` computes, reading the
/// password from stdin; the example config passes `--check`.
#[test]
fn derive_key_matches_autobahn_and_the_auth_example_checks() {
    let mut child = Command::new(KREISEL)
        .args([
            "--derive-key",
            "salt123",
            "--iterations",
            "100",
            "--keylen",
            "32",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run kreisel");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"hunter2\n")
        .expect("write password");
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "0ZfvumR9vhoaKdsArNQmAm0BH30QY2aJm+n3N98NfLk="
    );
    let bad = Command::new(KREISEL)
        .args(["--derive-key", "s", "--keylen", "0"])
        .stdin(Stdio::null())
        .output()
        .expect("run kreisel");
    assert!(!bad.status.success());
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/auth.toml");
    let output = Command::new(KREISEL)
        .args(["--check", example])
        .output()
        .expect("run kreisel");
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn check_explains_mistakes() {
    let cases = [
        (
            "bad-limit.toml",
            "[limits]\nmessage_max = 12\n",
            "message_max = 12 is outside",
        ),
        (
            "bad-key.toml",
            "[limits]\nmesage_max = 4096\n",
            "unknown field `mesage_max`",
        ),
        (
            "bad-listen.toml",
            "[[listeners]]\nlisten = \"localhost\"\ntransports = [\"websocket\"]\n",
            "HOST:PORT",
        ),
        ("bad-syntax.toml", "[[realms]\nname = \"x\"\n", "realms"),
        (
            "port-range.toml",
            "[[listeners]]\nlisten = \"127.0.0.1:70000\"\ntransports = [\"websocket\"]\n",
            "listener 1 ('127.0.0.1:70000'): port 70000 is out of range 0..=65535",
        ),
        (
            "hostname.toml",
            "[[listeners]]\nlisten = \"localhost:8080\"\ntransports = [\"websocket\"]\n",
            "'localhost' is a host name, which kreisel does not resolve: use a numeric IP such as 127.0.0.1:8080",
        ),
        (
            "strict-rule.toml",
            "[[realms]]\nname = \"app\"\nuri_check = \"strict\"\n[[realms.roles]]\nname = \"anonymous\"\n\
             permissions = [{ uri = \"app.getUser\", allow = [\"call\"] }]\n",
            "realm 'app', role 'anonymous': 'app.getUser' is not a valid URI pattern for match 'exact': component 2 \
             ('getUser') contains the uppercase letter 'U' (uri_check = \"strict\": lowercase letters, digits and \
             '_' only)",
        ),
        (
            "starred-prefix.toml",
            "[[realms]]\nname = \"app\"\n[[realms.roles]]\nname = \"anonymous\"\n\
             permissions = [{ uri = \"com.example.*\", allow = [\"call\"] }]\n",
            "realm 'app', role 'anonymous': 'com.example.*' (match 'exact'): kreisel has no `*` in URIs: use match \
             = \"prefix\" with uri = \"com.example.\"",
        ),
        (
            "starred-wildcard.toml",
            "[[realms]]\nname = \"app\"\n[[realms.roles]]\nname = \"anonymous\"\n\
             permissions = [{ uri = \"com.*.x\", allow = [\"call\"] }]\n",
            "use match = \"wildcard\" with an empty component for each `*` (uri = \"com..x\")",
        ),
        (
            "empty-component.toml",
            "[[realms]]\nname = \"app\"\n[[realms.roles]]\nname = \"anonymous\"\n\
             permissions = [{ uri = \"com..x\", allow = [\"call\"] }]\n",
            "'com..x' is not a valid URI pattern for match 'exact': component 2 is empty (two dots in a row): a URI \
             has no empty components (valid with match = \"wildcard\"",
        ),
        (
            "realm-name.toml",
            "[[realms]]\nname = \"my realm\"\n",
            "realm name 'my realm' is not a valid URI: component 1 ('my realm') contains whitespace",
        ),
        (
            "origin-path.toml",
            "[[listeners]]\nlisten = \"127.0.0.1:0\"\ntransports = [\"websocket\"]\n\
             allowed_origins = [\"https://app.example.com/\"]\n",
            "allowed_origins: 'https://app.example.com/' is not an origin: a browser's Origin has no path, query or \
             fragment: write 'https://app.example.com'",
        ),
        (
            "anonymous-role.toml",
            "[[realms]]\nname = \"app\"\n[[realms.roles]]\nname = \"public\"\n",
            "realm 'app': role 'anonymous' (of anonymous sessions: anonymous_role) is not among the realm's \
             [[realms.roles]] (defined: 'public'); a realm without principals admits anonymous sessions unless \
             anonymous = false",
        ),
    ];
    for (name, text, expected) in cases {
        let path = temp_file(name, text);
        let out = Command::new(KREISEL)
            .arg("--check")
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name} must be refused");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
    let missing = Command::new(KREISEL)
        .arg("--check")
        .arg("/nonexistent/kreisel.toml")
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
}

/// A valid but suspicious file passes `--check` (exit 0) with `warning:` lines on stderr, and the router logs the
/// same warnings when it starts; a file without anything suspicious gets no warning.
#[test]
fn check_warns_about_realms_nobody_can_join() {
    let text = "[[realms]]\nname = \"closed\"\nanonymous = false\n\n[[realms]]\nname = \"app\"\n\
                anonymous_role = \"guest\"\n[[realms.principals]]\nauthid = \"a\"\nrole = \"user\"\nticket = \"t\"\n\
                \n[[listeners]]\nlisten = \"127.0.0.1:0\"\ntransports = [\"rawsocket\"]\n";
    let path = temp_file("suspicious.toml", text);
    let out = Command::new(KREISEL)
        .arg("--check")
        .arg(&path)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    let file = path.display();
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            format!(
                "warning: {file}: realm 'closed': nobody can join: it has no [[realms.principals]] and anonymous = \
                 false; add principals, or set anonymous = true to admit anonymous sessions (with role 'anonymous', \
                 the anonymous_role)"
            ),
            format!(
                "warning: {file}: realm 'app': anonymous_role = 'guest' has no effect: a realm with principals \
                 admits anonymous sessions only with anonymous = true"
            )
        ]
    );
    assert_eq!(
        stdout.trim(),
        format!("{file}: valid (2 realms, 1 listeners, 2 warnings)")
    );
    let router = start_file(&path);
    wait_for_log(&router, "realm 'closed': nobody can join", 1);
    wait_for_log(
        &router,
        "realm 'app': anonymous_role = 'guest' has no effect",
        1,
    );
    let mut client = rawsocket_json(router.addresses[0]);
    send(
        &mut client,
        r#"[1, "closed", {"roles": {"subscriber": {}}}]"#,
    );
    assert_eq!(recv(&mut client)[0], 3, "ABORT: nobody can join 'closed'");
    drop(router);

    let fine = temp_file(
        "fine.toml",
        &text
            .replace("anonymous = false", "anonymous = true")
            .replace(
                "anonymous_role = \"guest\"\n",
                "anonymous = true\nanonymous_role = \"guest\"\n",
            ),
    );
    let out = Command::new(KREISEL)
        .arg("--check")
        .arg(&fine)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 warnings"));
}

/// `--print-config` comments out optional keys and tables. Uncommenting one (a commented table with its keys counts
/// as one) must give a file that loads, where that makes sense alone, and uncommenting them together must too: each
/// key must sit in the table it belongs to.
#[test]
fn print_config_commented_keys_can_be_uncommented() {
    let printed = Command::new(KREISEL)
        .arg("--print-config")
        .output()
        .unwrap();
    let printed = String::from_utf8(printed.stdout).unwrap();
    let lines: Vec<&str> = printed.lines().collect();
    // Commented TOML (a key or a table header; prose does not parse), grouped: a commented table header with the
    // commented keys after it, or a lone commented key. Each group is named by its first line's key or header.
    fn code(line: &str) -> Option<&str> {
        line.strip_prefix("# ")
            .filter(|rest| toml::from_str::<toml::Table>(rest).is_ok())
    }
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    let mut in_table = false;
    for (index, line) in lines.iter().enumerate() {
        let Some(code) = code(line) else {
            in_table = false;
            continue;
        };
        let header = code.starts_with('[');
        if in_table && !header {
            groups.last_mut().unwrap().1.push(index);
            continue;
        }
        let name = code.split([' ', '=']).next().unwrap().to_string();
        groups.push((name, vec![index]));
        in_table = header;
    }
    let names: Vec<&str> = groups.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "anonymous",
            "[[realms.principals]]",
            "[[realms.roles]]",
            "[[realms.authenticators]]",
            "metrics",
            "allowed_origins",
            "compression",
            "batched",
            "health",
            "[listeners.tls]",
            "[[listeners.services]]",
            "[cluster]"
        ],
        "the commented keys, grouped by the commented table they fall into when uncommented (a listener key after \
         `# [listeners.tls]` would fall into it); a new one: say here what uncommenting it gives"
    );
    // The TLS files of the commented [listeners.tls], relative to the working directory.
    let dir = temp_file("tls-dir", "").with_extension("d");
    std::fs::create_dir_all(&dir).unwrap();
    let ca = rcgen::CertifiedIssuer::self_signed(
        {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
        },
        rcgen::KeyPair::generate().unwrap(),
    )
    .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let check = |uncomment: &[&str]| {
        let mut text = String::new();
        for (index, line) in lines.iter().enumerate() {
            let group = groups.iter().find(|(_, at)| at.contains(&index));
            match group {
                Some((name, _)) if uncomment.contains(&name.as_str()) => {
                    text.push_str(&line[2..]);
                }
                _ => text.push_str(line),
            }
            text.push('\n');
        }
        let path = temp_file("uncommented.toml", &text);
        let out = Command::new(KREISEL)
            .arg("--check")
            .arg(&path)
            .current_dir(&dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), stderr, text)
    };
    for name in &names {
        let (ok, stderr, text) = check(&[name]);
        if *name == "[[realms.roles]]" {
            // Roles without principals: anonymous sessions need a role of their own.
            assert!(!ok, "{text}");
            assert!(
                stderr.contains(
                    "role 'anonymous' (of anonymous sessions: anonymous_role) is not among"
                ),
                "{stderr}"
            );
        } else {
            assert!(ok && stderr.is_empty(), "{name}: {stderr}\n{text}");
        }
    }
    // Together: the principal has the role; the listener's keys stay out of [listeners.tls].
    let all: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| *n != "anonymous")
        .collect();
    let (ok, stderr, text) = check(&all);
    assert!(ok && stderr.is_empty(), "{stderr}\n{text}");
    let config: toml::Table = toml::from_str(&text).unwrap();
    let listener = &config["listeners"][0];
    assert_eq!(listener["metrics"].as_str(), Some("/metrics"));
    assert!(listener["allowed_origins"].is_array());
    assert_eq!(listener["health"].as_bool(), Some(true));
    assert_eq!(listener["tls"]["certificate"].as_str(), Some("cert.pem"));
    // With anonymous = true as well, the anonymous sessions' role must be defined too: said as such.
    let (ok, stderr, _) = check(&names);
    assert!(!ok);
    assert!(
        stderr.contains("role 'anonymous' (of anonymous sessions: anonymous_role)"),
        "{stderr}"
    );
}

/// A crossbar node configuration in YAML, as `kreisel --import-crossbar` reads it (PORT to fill in).
const CROSSBAR_YAML: &str = r#"
version: 2
workers:
  - type: router
    components:
      - {type: class, classname: app.Backend, realm: app}
    realms:
      - name: app
        roles:
          - name: user
            permissions:
              - {uri: "com.app.*", allow: {subscribe: true}}
    transports:
      - type: rawsocket
        endpoint: {type: tcp, interface: 127.0.0.1, port: PORT}
        serializers: [json]
        auth:
          ticket:
            type: static
            principals:
              alice: {ticket: "open sesame", role: user}
"#;

/// `--import-crossbar`: the configuration on stdout (which `--check` accepts and the binary runs: a ticket
/// principal of the crossbar configuration joins with its role's permissions), warnings on stderr, and clear
/// failures for files that cannot be imported.
#[test]
fn import_crossbar_prints_a_configuration_the_binary_runs() {
    let help = Command::new(KREISEL).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("--import-crossbar"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let crossbar = temp_file(
        "config.yaml",
        &CROSSBAR_YAML.replace("PORT", &port.to_string()),
    );
    let out = Command::new(KREISEL)
        .arg("--import-crossbar")
        .arg(&crossbar)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "warning: worker 1: 1 router component(s) (kreisel runs no components)"
    );
    assert!(stdout.contains("# not carried over: worker 1: 1 router component(s)"));
    let imported = temp_file("imported.toml", &stdout);
    let check = Command::new(KREISEL)
        .arg("--check")
        .arg(&imported)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{check:?}
{stdout}"
    );

    let router = start_file(&imported);
    assert_eq!(router.addresses, [SocketAddr::from(([127, 0, 0, 1], port))]);
    let mut alice = rawsocket_json(router.addresses[0]);
    send(
        &mut alice,
        r#"[1, "app", {"roles": {"subscriber": {}}, "authmethods": ["ticket"], "authid": "alice"}]"#,
    );
    assert_eq!(recv(&mut alice)[0], 4, "CHALLENGE");
    send(&mut alice, r#"[5, "open sesame", {}]"#);
    let welcome = recv(&mut alice);
    assert_eq!(
        (welcome[0].as_u64(), welcome[2]["authrole"].as_str()),
        (Some(2), Some("user"))
    );
    send(&mut alice, r#"[32, 1, {}, "com.app.news"]"#);
    assert_eq!(recv(&mut alice)[0], 33, "SUBSCRIBED under com.app.");
    send(&mut alice, r#"[32, 2, {}, "org.other"]"#);
    let denied = recv(&mut alice);
    assert_eq!(
        (denied[0].as_u64(), denied[4].as_str()),
        (Some(8), Some("wamp.error.not_authorized"))
    );
    drop(router);

    for (name, text, expected) in [
        ("broken.json", "{", "not valid JSON"),
        ("broken.yaml", "workers: [", "not valid YAML"),
        ("empty.json", "{\"version\": 2}", "no router realm"),
    ] {
        let path = temp_file(name, text);
        let out = Command::new(KREISEL)
            .arg("--import-crossbar")
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name} must be refused");
        assert!(out.stdout.is_empty(), "{name}: nothing on stdout");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(expected),
            "{name}: {out:?}"
        );
    }
    let missing = Command::new(KREISEL)
        .args(["--import-crossbar", "/nonexistent/config.json"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
    assert!(!missing.status.success());
}

const SHARED_PORT: &str = r#"
[[listeners]]
listen = "127.0.0.1:0"
transports = ["websocket", "rawsocket"]
"#;

#[test]
fn one_port_serves_rawsocket_and_websocket() {
    let router = start(SHARED_PORT);
    let addr = router.addresses[0];
    let mut rs = rawsocket_json(addr);
    send(&mut rs, r#"[1, "realm1", {"roles": {"subscriber": {}}}]"#);
    assert_eq!(recv(&mut rs)[0], 2);
    let mut ws = TcpStream::connect(addr).unwrap();
    ws.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: wamp.2.json\r\n\r\n"
    );
    ws.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        ws.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
    assert!(
        head.contains("Sec-WebSocket-Protocol: wamp.2.json"),
        "{head}"
    );
}

#[test]
fn sigterm_says_goodbye_and_exits_zero() {
    let mut router = start(SHARED_PORT);
    let addr = router.addresses[0];
    let mut client = rawsocket_json(addr);
    send(
        &mut client,
        r#"[1, "realm1", {"roles": {"subscriber": {}}}]"#,
    );
    assert_eq!(recv(&mut client)[0], 2);
    // SAFETY: kill(2) on our own child's PID with a valid signal number.
    let rc = unsafe { libc::kill(router.child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    assert_eq!(
        recv(&mut client),
        serde_json::json!([6, {}, "wamp.close.system_shutdown"])
    );
    send(&mut client, r#"[6, {}, "wamp.close.goodbye_and_out"]"#);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = router.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "kreisel did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.success(),
        "exit status {status}; router log:\n{}",
        router.log()
    );
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing after GOODBYE: {rest:?}");
}

#[test]
fn a_closed_stderr_does_not_take_the_router_down() {
    let path = temp_file("stderr.toml", SHARED_PORT);
    let mut child = Command::new(KREISEL)
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "debug")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the router logs where it listens"
        );
    }
    drop(stderr); // Whoever read the logs is gone; every further log line hits a broken pipe.
                  // SAFETY: kill(2) on our own child's PID with a valid signal number.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kreisel did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
}

fn sighup(router: &Running) {
    // SAFETY: kill(2) on our own child's PID with a valid signal number.
    let rc = unsafe { libc::kill(router.child.id() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(rc, 0);
}

const RELOAD_BEFORE: &str = r#"
[[realms]]
name = "realm1"
anonymous = true

[[realms.roles]]
name = "anonymous"
permissions = [{ uri = "com.example.", match = "prefix", allow = ["publish", "subscribe"] }]

[[listeners]]
listen = "127.0.0.1:0"
transports = ["rawsocket"]
"#;

/// SIGHUP reloads principals and roles from the file: a joined session's permissions change at once, a new
/// principal can authenticate; a broken file changes nothing; each change is logged by name (a restart needed or
/// not, never a secret).
#[test]
fn sighup_reloads_principals_and_roles() {
    let path = temp_file("reload.toml", RELOAD_BEFORE);
    let router = start_file(&path);
    let addr = router.addresses[0];
    let mut anonymous = rawsocket_json(addr);
    send(
        &mut anonymous,
        r#"[1, "realm1", {"roles": {"publisher": {}}}]"#,
    );
    assert_eq!(recv(&mut anonymous)[0], 2, "WELCOME");
    let mut publish = |request: u32| {
        send(
            &mut anonymous,
            &format!(r#"[16, {request}, {{"acknowledge": true}}, "com.example.news", []]"#),
        );
        recv(&mut anonymous)
    };
    assert_eq!(publish(1)[0], 17, "PUBLISHED");
    let eve = || {
        let mut eve = rawsocket_json(addr);
        send(
            &mut eve,
            r#"[1, "realm1", {"roles": {"publisher": {}}, "authmethods": ["ticket"], "authid": "eve"}]"#,
        );
        let reply = recv(&mut eve);
        if reply[0] != 4 {
            return reply; // no CHALLENGE
        }
        send(&mut eve, r#"[5, "eves ticket", {}]"#);
        recv(&mut eve)
    };
    let refused = eve();
    assert_eq!(
        refused[0], 3,
        "ABORT: no principals, no ticket method yet: {refused}"
    );

    // Anonymous sessions may only subscribe now; eve appears (the same port: listeners are unchanged).
    let after = RELOAD_BEFORE
        .replace(r#"allow = ["publish", "subscribe"]"#, r#"allow = ["subscribe"]"#)
        .replace(
            "[[listeners]]",
            "[[realms.principals]]\nauthid = \"eve\"\nrole = \"anonymous\"\nticket = \"eves ticket\"\n\n[[listeners]]",
        );
    std::fs::write(&path, &after).unwrap();
    sighup(&router);
    wait_for_log(&router, "configuration reloaded", 1);
    // Each change is named; the ticket is not.
    for change in [
        "reloaded setting=realm 'realm1' principals change=added 'eve'",
        "reloaded setting=realm 'realm1' roles change=changed 'anonymous'",
    ] {
        assert!(router.log().contains(change), "{change}:\n{}", router.log());
    }
    assert!(!router.log().contains("eves ticket"));
    let refused = publish(2);
    assert_eq!(refused[0], 8, "{refused}");
    assert_eq!(refused[4], "wamp.error.not_authorized");
    assert_eq!(eve()[0], 2, "WELCOME for eve");

    // A broken file: logged, and the running configuration stays.
    std::fs::write(&path, "[[realms]]\nname = 5\n").unwrap();
    sighup(&router);
    wait_for_log(&router, "configuration not reloaded", 1);
    assert_eq!(eve()[0], 2, "eve still welcome");

    // A change that needs a restart is named in the log and not applied.
    let limits = format!("{after}\n[limits]\nconnections_max = 5\n");
    std::fs::write(&path, limits).unwrap();
    sighup(&router);
    wait_for_log(&router, "configuration reloaded", 2);
    assert!(
        router.log().contains(
            "not reloaded: takes effect after a restart setting=limits.connections_max change=10000 -> 5"
        ),
        "{}",
        router.log()
    );
    assert_eq!(publish(3)[4], "wamp.error.not_authorized");
}
