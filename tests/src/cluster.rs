//! A cluster on loopback for end-to-end tests: NATS servers with JetStream (one NATS cluster) and kreisel nodes,
//! each a process of its own (the `kreisel` binary cargo built next to the tests), on free loopback ports, in a
//! temporary directory. Every process is killed on drop (by its PID), so a failed test leaves nothing running.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::TempDir;

/// How long a process may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A process killed (SIGKILL) and reaped on drop.
pub struct Process {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A kreisel node: its process and its listeners.
pub struct Node {
    pub process: Process,
    /// `ws://127.0.0.1:port/ws` (with `/metrics` on the same port).
    pub ws: String,
    /// `rs://127.0.0.1:port`.
    pub rs: String,
    /// `mqtt://127.0.0.1:port`: an MQTT listener on `realm1`.
    pub mqtt: String,
    /// `http://127.0.0.1:port`: the HTTP bridge's `/publish` and `/call` on `realm1`, for the bearer ticket
    /// [`HTTP_TICKET`].
    pub http: String,
    pub http_port: u16,
}

/// The bearer ticket of the nodes' HTTP bridge services.
pub const HTTP_TICKET: &str = "cluster-http-ticket";

/// NATS servers and kreisel nodes on loopback.
pub struct LocalCluster {
    /// Dropped (killed) first: the nodes, then the servers.
    pub nodes: Vec<Node>,
    pub nats: Vec<Process>,
    pub nats_ports: Vec<u16>,
    pub dead_after_ms: u64,
    pub dir: TempDir,
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `nats-server`: `NATS_SERVER`, else Debian's `/usr/sbin/nats-server` (tests/run.sh installs it).
pub fn nats_server() -> PathBuf {
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

/// `target/<profile>/kreisel`, checked to be newer than every source file of the router.
pub fn kreisel_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test> -> target/<profile>/kreisel
    let bin = (exe.parent().and_then(Path::parent))
        .map(|dir| dir.join("kreisel"))
        .expect("target directory");
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: build the router first (`cargo build -p kreisel-io`; tests/run.sh does)",
                bin.display()
            )
        });
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for krate in ["codec", "engine", "io", "nats"] {
        assert!(
            newest_file(&root.join(krate).join("src")) <= built,
            "{} is older than the sources of {krate}/: rebuild it (`cargo build -p kreisel-io`)",
            bin.display()
        );
    }
    bin
}

fn newest_file(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_file(&path)
        } else {
            (entry.metadata().and_then(|m| m.modified())).unwrap_or(SystemTime::UNIX_EPOCH)
        };
        newest = newest.max(time);
    }
    newest
}

/// Waits until `port` accepts connections; panics with the process's log if it exits or takes too long.
fn wait_listening(process: &mut Process, port: u16) {
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            process.alive(),
            "{} exited:\n{}",
            process.name,
            process.log_text()
        );
        assert!(
            Instant::now() < deadline,
            "{} does not listen on {port} after {START_TIMEOUT:?}:\n{}",
            process.name,
            process.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn(name: &str, mut command: Command, log: PathBuf) -> Process {
    let file = std::fs::File::create(&log).expect("log file");
    let err = file.try_clone().expect("log file");
    let child = command
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    Process {
        name: name.to_owned(),
        child,
        log,
    }
}

impl LocalCluster {
    /// `servers` NATS servers (one NATS cluster, JetStream on each) and `nodes` kreisel nodes of cluster `name`,
    /// node i listing server i first. `extra` is added to every node's configuration.
    pub fn start(servers: usize, nodes: usize, dead_after_ms: u64, extra: &str) -> LocalCluster {
        let dir = TempDir::new("kreisel-cluster");
        let client: Vec<u16> = (0..servers).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..servers).map(|_| free_port()).collect();
        let route_urls = (routes.iter())
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut nats = Vec::new();
        for i in 0..servers {
            let conf = dir.0.join(format!("nats-{i}.conf"));
            let cluster = if servers > 1 {
                format!(
                    "cluster {{\n  name: kreisel-test\n  listen: 127.0.0.1:{}\n  routes: [{route_urls}]\n}}\n",
                    routes[i]
                )
            } else {
                String::new()
            };
            std::fs::write(
                &conf,
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{}\nmax_payload: 2MB\n\
                     jetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 64MB\n  max_file_store: 256MB\n}}\n{cluster}",
                    client[i],
                    dir.0.join(format!("js-{i}")).display()
                ),
            )
            .expect("NATS configuration");
            let mut command = Command::new(nats_server());
            command.arg("-c").arg(&conf);
            nats.push(spawn(
                &format!("nats-server {i}"),
                command,
                dir.0.join(format!("nats-{i}.log")),
            ));
        }
        for (process, &port) in nats.iter_mut().zip(&client) {
            wait_listening(process, port);
        }
        let kreisel = kreisel_binary();
        let replicas = servers.min(3);
        let heartbeat_ms = (dead_after_ms / 8).max(50);
        let mut started = Vec::new();
        for i in 0..nodes {
            let (ws, rs, mqtt, http) = (free_port(), free_port(), free_port(), free_port());
            let mut urls: Vec<String> = Vec::new();
            for k in 0..servers {
                urls.push(format!(
                    "\"nats://127.0.0.1:{}\"",
                    client[(i + k) % servers]
                ));
            }
            let conf = dir.0.join(format!("kreisel-{i}.toml"));
            std::fs::write(
                &conf,
                format!(
                    "[router]\nshards = 2\n\n[[realms]]\nname = \"realm1\"\n\n[[realms]]\nname = \"open\"\ndisclose_caller = true\ndisclose_publisher = true\n\n\
                     [[listeners]]\nlisten = \"127.0.0.1:{ws}\"\ntransports = [\"websocket\"]\nmetrics = \"/metrics\"\n\n\
                     [[listeners]]\nlisten = \"127.0.0.1:{rs}\"\ntransports = [\"rawsocket\"]\n\n\
                     [[listeners]]\nlisten = \"127.0.0.1:{mqtt}\"\ntransports = [\"mqtt\"]\nrealm = \"realm1\"\n\n\
                     [[listeners]]\nlisten = \"127.0.0.1:{http}\"\ntransports = [\"http\"]\n\
                     [[listeners.services]]\npath = \"/publish\"\ntype = \"publisher\"\nrealm = \"realm1\"\n\
                     principals = [{{ key = \"bot\", ticket = \"{HTTP_TICKET}\" }}]\n\
                     [[listeners.services]]\npath = \"/call\"\ntype = \"caller\"\nrealm = \"realm1\"\n\
                     principals = [{{ key = \"bot\", ticket = \"{HTTP_TICKET}\" }}]\n\n\
                     [cluster]\nname = \"test\"\nnats = [{}]\nheartbeat_ms = {heartbeat_ms}\n\
                     dead_after_ms = {dead_after_ms}\nreplicas = {replicas}\nconnect_timeout_ms = 30000\n{extra}",
                    urls.join(", ")
                ),
            )
            .expect("kreisel configuration");
            let mut command = Command::new(&kreisel);
            command.arg("--config").arg(&conf).env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("info".into()),
            );
            let process = spawn(
                &format!("kreisel node {i}"),
                command,
                dir.0.join(format!("kreisel-{i}.log")),
            );
            started.push(Node {
                process,
                ws: format!("ws://127.0.0.1:{ws}/ws"),
                rs: format!("rs://127.0.0.1:{rs}"),
                mqtt: format!("mqtt://127.0.0.1:{mqtt}"),
                http: format!("http://127.0.0.1:{http}"),
                http_port: ws,
            });
        }
        let mut cluster = LocalCluster {
            nats,
            nats_ports: client,
            nodes: started,
            dead_after_ms,
            dir,
        };
        for index in 0..cluster.nodes.len() {
            let port = cluster.nodes[index].http_port;
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                wait_listening(&mut cluster.nodes[index].process, port)
            }));
            if let Err(panic) = outcome {
                eprintln!("{}", cluster.logs());
                std::panic::resume_unwind(panic);
            }
        }
        cluster
    }

    /// Every process's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for process in self
            .nats
            .iter()
            .chain(self.nodes.iter().map(|n| &n.process))
        {
            let text = process.log_text();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out += &format!("--- {} (last 40 lines)\n", process.name);
            for line in tail.into_iter().rev() {
                out += line;
                out.push('\n');
            }
        }
        out
    }

    /// A node's metrics page.
    pub fn metrics(&self, node: usize) -> String {
        self.get(node, "/metrics")
    }

    /// The whole HTTP response (status line, headers, body) to `GET path` on a node's WebSocket port, which
    /// serves the metrics and the health probes; empty when the node does not answer.
    pub fn get(&self, node: usize, path: &str) -> String {
        use std::io::{Read, Write};
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.nodes[node].http_port)) else {
            return String::new();
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let _ = stream.write_all(request.as_bytes());
        let mut page = String::new();
        let _ = stream.read_to_string(&mut page);
        page
    }
}
