//! Test harness for kreisel's end-to-end tests: a router running in-process on ephemeral loopback ports (real
//! sockets, the real event loop), and a small blocking WAMP client speaking RawSocket (TCP or Unix) and
//! WebSocket in JSON, MessagePack or CBOR. Interop tests use clients written by others; this client exists to craft
//! exact and malformed frames.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use kreisel_codec::{Serializer, Value};
use kreisel_io::config::{Address, Config};
use kreisel_io::server::StopHandle;
use kreisel_io::Server;

pub mod cluster;
pub mod programs;
pub use programs::python_check;

/// Reads of the test client give up after this long (a hang is a failure, never a wait forever).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A router running on a background thread; stopped (gracefully) on drop.
pub struct TestRouter {
    pub ws: SocketAddr,
    pub rs: SocketAddr,
    pub unix: PathBuf,
    /// Every listener's address, in the order of the configuration (the three above first, then those of
    /// `extra_toml`).
    pub addresses: Vec<Address>,
    stop: StopHandle,
    thread: Option<JoinHandle<()>>,
    _dir: TempDir,
}

/// Shards of the routers tests start when their configuration does not say: `KREISEL_TEST_SHARDS` (the test
/// command runs the suite with 1 and with 4), else 1.
pub fn test_shards() -> usize {
    test_shards_set().unwrap_or(1)
}

/// `KREISEL_TEST_SHARDS`, when set (routers started as processes keep the binary's default, a shard per core,
/// without it).
pub fn test_shards_set() -> Option<usize> {
    std::env::var("KREISEL_TEST_SHARDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
}

/// With `KREISEL_TEST_NATS` set (a NATS server with JetStream, `nats://host:port`; the test command starts one),
/// every router a test starts is a one-node cluster of its own (a cluster name per router, so routers do not
/// meet): the whole suite then runs through a node's backplane, NATS and JetStream.
pub fn test_cluster() -> Option<kreisel_io::cluster::ClusterConfig> {
    let toml = test_cluster_toml()?;
    Some(toml::from_str(&toml).expect("a valid [cluster] section"))
}

/// The body of the `[cluster]` section of [`test_cluster`] (without its header), for routers started as processes.
pub fn test_cluster_toml() -> Option<String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let url = std::env::var("KREISEL_TEST_NATS").ok()?;
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    Some(format!(
        "name = \"t{}-{n}\"\nnats = [\"{url}\"]\nreplicas = 1\n",
        std::process::id()
    ))
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("kreisel-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl TestRouter {
    /// The default realm `realm1` plus `extra_toml` (e.g. a `[limits]` table), listening on a WebSocket port
    /// (path /ws), a RawSocket port and a RawSocket Unix socket.
    pub fn start(extra_toml: &str) -> TestRouter {
        let dir = TempDir::new("router");
        let unix = dir.0.join("kreisel.sock");
        let toml = format!(
            r#"
[[realms]]
name = "realm1"

[[listeners]]
listen = "127.0.0.1:0"
transports = ["websocket"]

[[listeners]]
listen = "127.0.0.1:0"
transports = ["rawsocket"]

[[listeners]]
listen = "unix:{}"
transports = ["rawsocket"]

{extra_toml}
"#,
            unix.display()
        );
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .try_init();
        }
        let config = Config::from_toml(&toml).expect("test config is valid");
        TestRouter::start_config(config, dir, unix)
    }

    /// A router on a whole configuration (e.g. an imported one). `ws` and `rs` are the first TCP listeners that
    /// speak WebSocket and RawSocket (the unspecified address when there is none); `dir` is removed when the
    /// router stops.
    pub fn start_config(mut config: Config, dir: TempDir, unix: PathBuf) -> TestRouter {
        use kreisel_io::config::Transport;
        if config.router.shards == 0 {
            config.router.shards = test_shards();
        }
        if config.cluster.is_none() {
            config.cluster = test_cluster();
        }
        let first = |transport: Transport| {
            config
                .listeners
                .iter()
                .position(|l| l.speaks(transport) && matches!(l.address(), Ok(Address::Tcp(_))))
        };
        let (ws_index, rs_index) = (first(Transport::Websocket), first(Transport::Rawsocket));
        let server = Server::bind(config, 42).expect("bind");
        let addresses = server.local_addresses();
        let tcp = |i: Option<usize>| match i.map(|i| &addresses[i]) {
            Some(Address::Tcp(addr)) => *addr,
            Some(other) => panic!("listener is {other}"),
            None => SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let (ws, rs) = (tcp(ws_index), tcp(rs_index));
        let stop = server.stop_handle();
        let thread = std::thread::Builder::new()
            .name("kreisel".into())
            .spawn(move || {
                let mut server = server;
                server.run().expect("router loop");
            })
            .expect("spawn router");
        TestRouter {
            ws,
            rs,
            unix,
            addresses,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// The TCP address of listener `index` (see [`TestRouter::addresses`]).
    pub fn tcp_address(&self, index: usize) -> SocketAddr {
        match &self.addresses[index] {
            Address::Tcp(addr) => *addr,
            other => panic!("listener {index} is {other}"),
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.ws)
    }

    pub fn rs_url(&self) -> String {
        format!("rs://{}", self.rs)
    }

    /// Starts a lame-duck drain, as SIGUSR2 does (see [`StopHandle::drain`]).
    pub fn drain(&self) -> bool {
        self.stop.drain()
    }

    /// Stops the router and waits for its loop to end.
    pub fn stop(&mut self) {
        self.stop.stop();
        if let Some(thread) = self.thread.take() {
            thread.join().expect("router thread panicked");
        }
    }
}

impl Drop for TestRouter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A transport stream of either family.
pub enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Field `index` (from 0) of a Linux TCP memory setting such as `/proc/sys/net/ipv4/tcp_rmem` (min, default,
/// max), in bytes.
pub fn tcp_mem_setting(path: &str, index: usize) -> usize {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.split_whitespace().nth(index)?.parse().ok())
        .unwrap_or_else(|| panic!("{path}: no field {index}"))
}

pub fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

pub fn unix(path: &std::path::Path) -> UnixStream {
    let stream = UnixStream::connect(path).expect("connect unix");
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream
}

enum Link {
    Raw(Socket),
    Ws(Box<tungstenite::WebSocket<TcpStream>>),
}

/// What a read produced.
#[derive(Debug, PartialEq)]
pub enum Received {
    Message(serde_json::Value),
    /// The router closed the connection (EOF, or a WebSocket Close frame with its code).
    Closed(Option<u16>),
}

/// A blocking WAMP client for tests. Messages are written and read as JSON values (converted to and from the
/// connection's serializer with the kreisel codec).
pub struct Client {
    link: Link,
    pub serializer: Serializer,
    /// The code of a WebSocket Close frame seen by [`Client::recv_frame`], for [`Client::recv`].
    close_code: Option<u16>,
}

impl Client {
    /// RawSocket over TCP with a handshake for `serializer` (max length exponent 15).
    pub fn rawsocket(addr: SocketAddr, serializer: Serializer) -> Client {
        Client::rawsocket_on(Socket::Tcp(tcp(addr)), serializer)
    }

    pub fn rawsocket_unix(path: &std::path::Path, serializer: Serializer) -> Client {
        Client::rawsocket_on(Socket::Unix(unix(path)), serializer)
    }

    fn rawsocket_on(mut socket: Socket, serializer: Serializer) -> Client {
        socket
            .write_all(&[0x7F, 0xF0 | serializer.rawsocket_id(), 0, 0])
            .unwrap();
        let mut reply = [0u8; 4];
        socket
            .read_exact(&mut reply)
            .expect("RawSocket handshake reply");
        assert_eq!(reply[0], 0x7F);
        assert_eq!(
            reply[1] & 0x0F,
            serializer.rawsocket_id(),
            "handshake reply {reply:?}"
        );
        Client {
            link: Link::Raw(socket),
            serializer,
            close_code: None,
        }
    }

    /// WebSocket with the serializer's subprotocol.
    pub fn websocket(addr: SocketAddr, serializer: Serializer) -> Client {
        let stream = tcp(addr);
        let request = tungstenite::http::Request::builder()
            .uri(format!("ws://{addr}/ws"))
            .header("Host", addr.to_string())
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header(
                "Sec-WebSocket-Key",
                tungstenite::handshake::client::generate_key(),
            )
            .header("Sec-WebSocket-Protocol", serializer.subprotocol())
            .body(())
            .unwrap();
        let (ws, response) = tungstenite::client(request, stream).expect("WebSocket handshake");
        assert_eq!(
            response
                .headers()
                .get("Sec-WebSocket-Protocol")
                .and_then(|v| v.to_str().ok()),
            Some(serializer.subprotocol())
        );
        Client {
            link: Link::Ws(Box::new(ws)),
            serializer,
            close_code: None,
        }
    }

    /// Sends a message given as JSON text.
    pub fn send(&mut self, json_text: &str) {
        let bytes = encode(self.serializer, json_text);
        self.send_bytes(&bytes);
    }

    /// Sends raw bytes as one WAMP message frame (may be garbage).
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        match &mut self.link {
            Link::Raw(socket) => {
                let len = bytes.len() as u32;
                let mut frame = len.to_be_bytes().to_vec();
                frame[0] = 0;
                frame.extend_from_slice(bytes);
                socket.write_all(&frame).expect("write frame");
            }
            Link::Ws(ws) => {
                // JSON travels in text frames (garbage that is not UTF-8 can only go as binary), the binary
                // serializers in binary frames.
                let text = self
                    .serializer
                    .is_text()
                    .then(|| String::from_utf8(bytes.to_vec()).ok())
                    .flatten();
                let msg = match text {
                    Some(text) => tungstenite::Message::text(text),
                    None => tungstenite::Message::binary(bytes.to_vec()),
                };
                ws.send(msg).expect("write ws");
            }
        }
    }

    /// Writes raw bytes straight to the socket (RawSocket only).
    pub fn write_raw(&mut self, bytes: &[u8]) {
        match &mut self.link {
            Link::Raw(socket) => socket.write_all(bytes).expect("write raw"),
            Link::Ws(ws) => ws.get_mut().write_all(bytes).expect("write raw"),
        }
    }

    pub fn recv(&mut self) -> Received {
        match self.recv_frame() {
            Some(bytes) => Received::Message(decode(self.serializer, &bytes)),
            None => Received::Closed(self.close_code.take()),
        }
    }

    /// The next WAMP message as the bytes the router sent (`None`: the router closed the connection; the close
    /// code, if any, goes to the next [`Client::recv`]).
    pub fn recv_frame(&mut self) -> Option<Vec<u8>> {
        match &mut self.link {
            Link::Raw(socket) => loop {
                let mut header = [0u8; 4];
                socket.read_exact(&mut header).ok()?;
                let len = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
                let mut payload = vec![0u8; len];
                socket.read_exact(&mut payload).ok()?;
                // Ping/pong frames are not WAMP messages: read on.
                if header[0] & 0x07 == 0 {
                    return Some(payload);
                }
            },
            Link::Ws(ws) => loop {
                match ws.read() {
                    // The router sends JSON in text frames and MessagePack/CBOR in binary frames.
                    Ok(tungstenite::Message::Text(text)) => {
                        assert!(
                            self.serializer.is_text(),
                            "{} in a text frame",
                            self.serializer.name()
                        );
                        return Some(text.as_bytes().to_vec());
                    }
                    Ok(tungstenite::Message::Binary(bytes)) => {
                        assert!(
                            !self.serializer.is_text(),
                            "{} in a binary frame",
                            self.serializer.name()
                        );
                        return Some(bytes.to_vec());
                    }
                    Ok(tungstenite::Message::Close(frame)) => {
                        self.close_code = frame.map(|f| u16::from(f.code));
                        return None;
                    }
                    Ok(_) => continue,
                    Err(_) => return None,
                }
            },
        }
    }

    /// The next message, which must exist.
    pub fn expect(&mut self) -> serde_json::Value {
        match self.recv() {
            Received::Message(msg) => msg,
            Received::Closed(code) => {
                panic!("connection closed ({code:?}) while a message was expected")
            }
        }
    }

    /// Reads until the router closes; returns the messages seen before.
    pub fn expect_close(&mut self) -> Vec<serde_json::Value> {
        let mut seen = Vec::new();
        loop {
            match self.recv() {
                Received::Message(msg) => seen.push(msg),
                Received::Closed(_) => return seen,
            }
        }
    }

    /// HELLO to realm1 with all four client roles; returns the session ID from WELCOME.
    pub fn join(&mut self) -> u64 {
        self.send(r#"[1, "realm1", {"roles": {"publisher": {}, "subscriber": {}, "caller": {}, "callee": {}}}]"#);
        let welcome = self.expect();
        assert_eq!(welcome[0], 2, "expected WELCOME, got {welcome}");
        welcome[1].as_u64().expect("session ID")
    }
}

/// JSON text → bytes in `serializer` (through the codec, so MessagePack and CBOR tests use real binary encodings).
pub fn encode(serializer: Serializer, json_text: &str) -> Vec<u8> {
    let msg = Serializer::Json
        .decode(json_text.as_bytes())
        .unwrap_or_else(|e| panic!("{json_text}: {e}"));
    let mut out = Vec::new();
    serializer.encode(&msg, &mut out);
    out
}

/// Bytes in `serializer` → JSON value.
pub fn decode(serializer: Serializer, bytes: &[u8]) -> serde_json::Value {
    let msg = serializer
        .decode(bytes)
        .unwrap_or_else(|e| panic!("router sent an undecodable message: {e}"));
    let mut json = Vec::new();
    Serializer::Json.encode(&msg, &mut json);
    serde_json::from_slice(&json).expect("codec writes JSON")
}

/// Convenience for building values in tests.
pub fn value(json_text: &str) -> Value {
    kreisel_codec::RawValue::parse(Serializer::Json, json_text.as_bytes())
        .expect("valid JSON")
        .to_value()
}

/// The metrics page (Prometheus text) of the listener at `addr`, which must serve `/metrics`.
pub fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut page = String::new();
    stream.read_to_string(&mut page).expect("the page");
    page
}

/// The value of the sample `name` (with its labels, if any) on a metrics page.
pub fn sample(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in\n{page}"))
        .parse()
        .expect("a number")
}
