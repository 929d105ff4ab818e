//! `kreisel --import-crossbar` on configurations crossbar.io itself produces, and end to end.
//!
//! crossbar 26.10.1 comes from PyPI into `tests/.venv-crossbar` (installed by `tests/run.sh`, pinned in
//! `tests/interop/crossbar-requirements.txt`); nothing of it is in the repository:
//! - `crossbar init` in a temporary directory writes a node configuration; the import must load in kreisel and hold
//!   its realm, role and listeners;
//! - the configurations the installed package ships (its `crossbar init` template, the edge/master/network node
//!   configurations, its own test configurations) import, or are refused with a reason when they have nothing to
//!   carry over;
//! - a crossbar node configuration with roles, ticket, WAMP-CRA (plain and salted), cryptosign and anonymous access
//!   on a Web (WebSocket) and a RawSocket transport imports without a warning; kreisel runs the result and
//!   autobahn-python clients with the credentials of a crossbar deployment join and are allowed and denied what the
//!   crossbar configuration says (`tests/interop/crossbar_import.py`); crossbar itself runs the same configuration
//!   and the same client checks pass against it (loopback only, bounded in time).

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kreisel_io::config::{Config, Transport};
use kreisel_io::import_crossbar::{check, import_file};
use kreisel_tests::{python_check, TempDir, TestRouter};

/// The crossbar node configuration of the end-to-end tests, with the ports to fill in (`WS_PORT`, `RS_PORT`).
/// The cryptosign key is the public half of the key `crossbar_import.py` signs with.
const NODE: &str = r#"{
    "version": 2,
    "controller": {},
    "workers": [{
        "type": "router",
        "realms": [{
            "name": "migrated",
            "roles": [
                {"name": "user", "permissions": [
                    {"uri": "com.app.", "match": "prefix", "allow": {"call": true, "subscribe": true}, "cache": true},
                    {"uri": "com.app.chat", "match": "exact", "allow": {"publish": true, "subscribe": true},
                     "disclose": {"publisher": true}, "cache": true},
                    {"uri": "com.app.audit", "match": "exact", "allow": {"call": true}, "disclose": {"caller": true}}
                ]},
                {"name": "backend", "permissions": [
                    {"uri": "", "match": "prefix",
                     "allow": {"call": true, "register": true, "publish": true, "subscribe": true}, "cache": true}
                ]},
                {"name": "guest", "permissions": [
                    {"uri": "com.app.public.*", "allow": {"subscribe": true}},
                    {"uri": "com.sensor.*.status", "allow": {"call": true}}
                ]}
            ]
        }],
        "transports": [
            {"type": "web", "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": WS_PORT},
             "paths": {"ws": {"type": "websocket", "serializers": ["json", "msgpack", "cbor"], "auth": AUTH}}},
            {"type": "rawsocket", "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": RS_PORT},
             "serializers": ["json", "msgpack", "cbor"], "auth": AUTH}
        ]
    }]
}"#;

const AUTH: &str = r#"{
    "anonymous": {"type": "static", "role": "guest"},
    "ticket": {"type": "static", "principals": {"alice": {"ticket": "open sesame", "role": "user"}}},
    "wampcra": {"type": "static", "users": {
        "carol": {"secret": "carols secret", "role": "backend"},
        "bob": {"secret": "hunter2", "role": "backend", "salt": "salt123", "iterations": 100, "keylen": 32}
    }},
    "cryptosign": {"type": "static", "principals": {
        "dev": {"authorized_keys": ["1adfc8bfe1d35616e64dffbd900096f23b066f914c8c2ffbb66f6075b96e116d"],
                "role": "backend"}
    }}
}"#;

/// `tests/.venv-crossbar`, where `tests/run.sh` installs crossbar.
fn crossbar_venv() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-crossbar");
    assert!(
        venv.join("bin/crossbar").exists(),
        "crossbar missing: run tests/run.sh (it installs crossbar into {})",
        venv.display()
    );
    venv
}

/// Runs a command to its end, killing it after `timeout`; panics unless it exits 0.
fn run(command: &mut Command, timeout: Duration) -> String {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} still running after {timeout:?}, killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut stdout);
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    assert!(
        status.success(),
        "{command:?} failed ({status}):\n{stdout}\n{stderr}"
    );
    stdout
}

/// The directory of the installed crossbar package.
fn crossbar_package() -> PathBuf {
    let python = crossbar_venv().join("bin/python");
    let dir = run(
        Command::new(python).args([
            "-c",
            "import crossbar, os; print(os.path.dirname(crossbar.__file__))",
        ]),
        Duration::from_secs(30),
    );
    PathBuf::from(dir.trim())
}

#[test]
fn what_crossbar_init_writes_imports() {
    let dir = TempDir::new("crossbar-init");
    run(
        Command::new(crossbar_venv().join("bin/crossbar"))
            .args(["init", "--appdir"])
            .arg(&dir.0),
        Duration::from_secs(60),
    );
    let imported = import_file(&dir.0.join(".crossbar/config.json")).expect("import");
    assert_eq!(check(&imported.toml), Ok(Vec::new()));
    let config = Config::from_toml(&imported.toml).expect("kreisel loads the import");
    let [realm] = &config.realms[..] else {
        panic!("{:?}", config.realms)
    };
    assert_eq!(realm.name, "realm1");
    assert_eq!(realm.anonymous_role(), Some("anonymous"));
    let roles = realm.roles.as_ref().expect("roles");
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0].name, "anonymous");
    assert_eq!(roles[0].permissions.len(), 1);
    assert_eq!(roles[0].permissions[0].uri, "");
    assert_eq!(roles[0].permissions[0].allow.len(), 4);
    let listeners: Vec<(&str, Vec<Transport>, &str)> = config
        .listeners
        .iter()
        .map(|l| (l.listen.as_str(), l.transports.clone(), l.path.as_str()))
        .collect();
    assert_eq!(
        listeners,
        [
            ("0.0.0.0:8081", vec![Transport::Rawsocket], "/ws"),
            ("0.0.0.0:8080", vec![Transport::Websocket], "/ws"),
        ]
    );
    // What kreisel does not do is said: the static web page, the node info page, WebSocket options.
    for expected in [
        "\"static\" at \"/\"",
        "\"nodeinfo\" at \"/info\"",
        "\"compression\"",
    ] {
        assert!(
            imported.warnings.iter().any(|w| w.contains(expected)),
            "{expected} not warned: {:#?}",
            imported.warnings
        );
    }
    eprintln!("{}", imported.toml);
}

#[test]
fn configurations_shipped_with_crossbar_import() {
    let package = crossbar_package();
    // (file in the package, the realms kreisel gets, or None: refused as having nothing to carry over).
    let expected: [(&str, Option<&[&str]>); 10] = [
        (
            "node/templates/default/.crossbar/config.json",
            Some(&["realm1"]),
        ),
        ("edge/node/config/default.json", Some(&["realm1"])),
        ("edge/node/config/bare.json", None),
        ("edge/node/config/pairme.json", None),
        ("master/node/config.json", Some(&["com.crossbario.fabric"])),
        ("network/node/config.json", Some(&["xbrnetwork"])),
        ("test/test_config.json", Some(&["com.crossbario.fabric"])),
        (
            "test/test_config1_merged.json",
            Some(&["com.crossbario.fabric"]),
        ),
        (
            "test/test_config2_merged.json",
            Some(&["com.crossbario.fabric"]),
        ),
        (
            "test/test_config3_merged.json",
            Some(&["com.crossbario.fabric"]),
        ),
    ];
    for (file, realms) in expected {
        let path = package.join(file);
        assert!(path.exists(), "{} is not in the package", path.display());
        let result = import_file(&path);
        let Some(realms) = realms else {
            let err = result.expect_err(file);
            assert!(err.contains("no router realm"), "{file}: {err}");
            eprintln!("{file}: refused: {err}");
            continue;
        };
        let imported = result.unwrap_or_else(|e| panic!("{file}: {e}"));
        // Everything loads but TLS files the package does not ship (test_config3: server.crt, server.key).
        let problems = check(&imported.toml).unwrap_or_else(|e| panic!("{file}: {e}"));
        let tls = imported.toml.contains("[listeners.tls]");
        assert_eq!(!problems.is_empty(), tls, "{file}: {problems:?}");
        if !tls {
            let config =
                Config::from_toml(&imported.toml).unwrap_or_else(|e| panic!("{file}: {e}"));
            let names: Vec<&str> = config.realms.iter().map(|r| r.name.as_str()).collect();
            assert_eq!(names, realms, "{file}");
        }
        assert!(imported.toml.contains(&format!("name = \"{}\"", realms[0])));
        // Every warning is in the output as a comment too.
        let notes = imported
            .toml
            .lines()
            .filter(|l| l.trim_start().starts_with("# not carried over:"))
            .count();
        assert_eq!(notes, imported.warnings.len(), "{file}");
        eprintln!("{file}: imported, {} warnings", imported.warnings.len());
    }
    // The master node's transports let anonymous clients in with three different roles: anonymous access stays
    // off rather than giving every listener one of them.
    let master = import_file(&package.join("master/node/config.json")).unwrap();
    assert!(master.toml.contains("anonymous = false"));
    assert!(master
        .warnings
        .iter()
        .any(|w| w.contains("anonymous access, which differs per transport")));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Writes `.crossbar/config.json` of [`NODE`] with these ports under `dir`; returns its path.
fn write_node(dir: &Path, ws: u16, rs: u16) -> PathBuf {
    let text = NODE
        .replace("WS_PORT", &ws.to_string())
        .replace("RS_PORT", &rs.to_string())
        .replace("AUTH", AUTH);
    let cbdir = dir.join(".crossbar");
    std::fs::create_dir_all(&cbdir).expect("create .crossbar");
    let path = cbdir.join("config.json");
    std::fs::write(&path, text).expect("write config.json");
    path
}

#[test]
fn kreisel_runs_the_imported_node_for_crossbar_clients() {
    let dir = TempDir::new("crossbar-node");
    let path = write_node(&dir.0, free_port(), free_port());
    let imported = import_file(&path).expect("import");
    assert_eq!(imported.warnings, Vec::<String>::new(), "{}", imported.toml);
    let config = Config::from_toml(&imported.toml).expect("kreisel loads the import");
    let router = TestRouter::start_config(config, dir, PathBuf::new());
    python_check(
        "crossbar_import.py",
        &[&format!("ws://{}/ws", router.ws), "json"],
    );
    python_check(
        "crossbar_import.py",
        &[&format!("rs://{}", router.rs), "msgpack"],
    );
}

/// crossbar started in a process group of its own (its controller starts the router worker as a child); the group
/// is ended on drop.
struct Crossbar {
    child: Child,
    log: PathBuf,
}

impl Crossbar {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Crossbar {
    fn drop(&mut self) {
        let group = -(self.child.id() as libc::pid_t);
        // SAFETY: kill(2) on the process group this test created; no memory is involved.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above; whatever of the group is left.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn wait_for_port(port: u16, crossbar: &mut Crossbar, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = crossbar.child.try_wait() {
            panic!("crossbar exited ({status}):\n{}", crossbar.log());
        }
        assert!(
            Instant::now() < deadline,
            "crossbar not listening on {port} after {timeout:?}:\n{}",
            crossbar.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn crossbar_runs_the_same_node_for_the_same_clients() {
    use std::os::unix::process::CommandExt;
    let dir = TempDir::new("crossbar-run");
    let (ws, rs) = (free_port(), free_port());
    let path = write_node(&dir.0, ws, rs);
    let cbdir = path.parent().expect("cbdir").to_path_buf();
    let log = dir.0.join("crossbar.log");
    let out = std::fs::File::create(&log).expect("log file");
    let child = Command::new(crossbar_venv().join("bin/crossbar"))
        .args(["start", "--loglevel", "warn", "--cbdir"])
        .arg(&cbdir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .process_group(0)
        .spawn()
        .expect("start crossbar");
    let mut crossbar = Crossbar { child, log };
    wait_for_port(ws, &mut crossbar, Duration::from_secs(60));
    wait_for_port(rs, &mut crossbar, Duration::from_secs(10));
    python_check(
        "crossbar_import.py",
        &[&format!("ws://127.0.0.1:{ws}/ws"), "json"],
    );
    python_check(
        "crossbar_import.py",
        &[&format!("rs://127.0.0.1:{rs}"), "msgpack"],
    );
    drop(crossbar);
}
