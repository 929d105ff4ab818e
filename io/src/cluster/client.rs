//! A NATS client for a mio event loop: one connection at a time to one of the configured servers, TLS with rustls
//! (the `ring` provider, as for the listeners), user and password or token, reconnection across the servers with a
//! short backoff, subscriptions made again after a reconnection, keepalive pings.
//!
//! What is written waits in one buffer bounded by `pending_max`: messages marked droppable (events) are dropped
//! once it is half full, every message once it is full, and each drop is counted. A message longer than the
//! server's `max_payload` is never sent (the server would close the connection for it): it is dropped and counted.
//! Everything buffered when the connection breaks is lost (counted): the node's numbered streams find the gap.

use std::io::{self, Read, Write};
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kreisel_nats::{Msg, Op};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use tracing::{debug, info, warn};

use super::config::{ClusterConfig, NatsUrl};

/// Bytes read from the socket in one go.
const READ_CHUNK: usize = 64 * 1024;
/// Pings the server may leave unanswered before the connection counts as dead.
const PINGS_OUTSTANDING_MAX: u32 = 3;

/// What the client needs to connect.
#[derive(Clone)]
pub struct ClientOptions {
    pub urls: Vec<NatsUrl>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// TLS for every server (the CA, and a client certificate if configured).
    pub tls: Option<Arc<ClientConfig>>,
    /// The connection's name in the server's monitoring.
    pub name: String,
    pub pending_max: usize,
    pub ping_interval: Duration,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("urls", &self.urls)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ClientOptions {
    pub fn from_config(config: &ClusterConfig, name: String) -> Result<ClientOptions, String> {
        let urls = (config.nats.iter())
            .map(|url| NatsUrl::parse(url))
            .collect::<Result<Vec<_>, _>>()?;
        let tls = if config.tls() {
            Some(tls_config(config)?)
        } else {
            None
        };
        Ok(ClientOptions {
            urls,
            user: config.user.clone(),
            password: config.password.clone(),
            token: config.token.clone(),
            tls,
            name,
            pending_max: config.pending_max,
            ping_interval: Duration::from_millis((config.dead_after_ms / 4).clamp(100, 2_000)),
        })
    }
}

/// The rustls client configuration: the CA (or, without one, the system's roots are not consulted: a CA is
/// required for `tls://` URLs) and an optional client certificate.
fn tls_config(config: &ClusterConfig) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let Some(ca) = &config.tls_ca else {
        return Err(
            "cluster: TLS to NATS needs tls_ca (the CA of the servers' certificates)".into(),
        );
    };
    let mut roots = RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("cluster.tls_ca {}: {e}", ca.display()))?;
    for cert in cas {
        let cert = cert.map_err(|e| format!("cluster.tls_ca {}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("cluster.tls_ca {}: {e}", ca.display()))?;
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cluster TLS: {e}"))?
        .with_root_certificates(roots);
    let config = match (&config.tls_certificate, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("cluster.tls_certificate {}: {e}", cert.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("cluster.tls_certificate {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("cluster.tls_key {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("cluster client certificate: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A change of the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// Connected (again) and subscribed: `max_payload` is the server's.
    Connected { server: String, max_payload: usize },
    /// The connection broke (or an attempt failed); the client tries the next server.
    Disconnected(String),
}

/// Counters of the connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientStats {
    pub connects: u64,
    pub disconnects: u64,
    pub messages_out: u64,
    pub messages_in: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// Messages not sent: the buffer was full (or half full, for events), no connection, or too long.
    pub dropped: u64,
    pub dropped_too_long: u64,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Phase {
    /// Waiting to try (again) at `retry_at`.
    Idle,
    /// TCP connecting.
    Connecting,
    /// Waiting for the server's INFO.
    Info,
    /// TLS handshake.
    Handshake,
    /// CONNECT and the subscriptions sent; waiting for the PONG that confirms them.
    Confirming,
    Connected,
}

struct Conn {
    tcp: TcpStream,
    tls: Option<ClientConnection>,
}

/// See the module documentation.
pub struct Client {
    options: ClientOptions,
    token: Token,
    phase: Phase,
    conn: Option<Conn>,
    url: usize,
    attempt: u32,
    retry_at: Option<Instant>,
    /// Bytes read and not parsed yet.
    rbuf: Vec<u8>,
    /// Bytes to write, from `wpos`.
    wbuf: Vec<u8>,
    wpos: usize,
    write_interest: bool,
    subscriptions: Vec<(String, u64)>,
    max_payload: usize,
    next_ping: Instant,
    pings_out: u32,
    events: Vec<ClientEvent>,
    pub stats: ClientStats,
    last_error: String,
}

impl Client {
    pub fn new(options: ClientOptions, token: Token) -> Client {
        Client {
            options,
            token,
            phase: Phase::Idle,
            conn: None,
            url: 0,
            attempt: 0,
            retry_at: Some(Instant::now()),
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            write_interest: false,
            subscriptions: Vec::new(),
            max_payload: 1 << 20,
            next_ping: Instant::now(),
            pings_out: 0,
            events: Vec::new(),
            stats: ClientStats::default(),
            last_error: String::new(),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.phase == Phase::Connected
    }

    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Bytes waiting to be written.
    pub fn pending(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    pub fn last_error(&self) -> &str {
        &self.last_error
    }

    /// Subscribes to `subject` now and after every reconnection.
    pub fn subscribe(&mut self, subject: &str, sid: u64) {
        self.subscriptions.push((subject.to_owned(), sid));
        if self.phase == Phase::Connected || self.phase == Phase::Confirming {
            kreisel_nats::subscribe(&mut self.wbuf, subject, sid);
        }
    }

    /// Connection changes since the last call.
    pub fn take_events(&mut self) -> Vec<ClientEvent> {
        std::mem::take(&mut self.events)
    }

    /// When [`Client::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Idle => self.retry_at,
            Phase::Connected => Some(self.next_ping),
            _ => Some(self.next_ping),
        }
    }

    /// Retries a connection, pings the server, gives up on an attempt that takes too long.
    pub fn handle_timeout(&mut self, registry: &Registry, now: Instant) {
        match self.phase {
            Phase::Idle => {
                if self.retry_at.is_some_and(|at| at <= now) {
                    self.connect(registry, now);
                }
            }
            Phase::Connected => {
                if now >= self.next_ping {
                    if self.pings_out >= PINGS_OUTSTANDING_MAX {
                        self.fail(registry, "the server does not answer pings".into(), now);
                        return;
                    }
                    self.pings_out += 1;
                    kreisel_nats::ping(&mut self.wbuf);
                    self.next_ping = now + self.options.ping_interval;
                    self.flush(registry, now);
                }
            }
            _ => {
                // An attempt gets a few ping intervals to complete.
                if now >= self.next_ping {
                    self.fail(registry, "connecting took too long".into(), now);
                }
            }
        }
    }

    fn connect(&mut self, registry: &Registry, now: Instant) {
        let Some(url) = self
            .options
            .urls
            .get(self.url % self.options.urls.len().max(1))
            .cloned()
        else {
            return;
        };
        self.retry_at = None;
        let address = match (url.host.as_str(), url.port).to_socket_addrs() {
            Ok(mut addresses) => addresses.next(),
            Err(e) => {
                self.fail(registry, format!("{}:{}: {e}", url.host, url.port), now);
                return;
            }
        };
        let Some(address) = address else {
            self.fail(registry, format!("{}: no address", url.host), now);
            return;
        };
        match TcpStream::connect(address) {
            Ok(mut tcp) => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                if let Err(e) = registry.register(&mut tcp, self.token, interest) {
                    self.fail(registry, format!("register: {e}"), now);
                    return;
                }
                let _ = tcp.set_nodelay(true);
                self.conn = Some(Conn { tcp, tls: None });
                self.write_interest = true;
                self.phase = Phase::Connecting;
                self.next_ping =
                    now + 4 * self.options.ping_interval.max(Duration::from_millis(500));
                debug!(server = %format!("{}:{}", url.host, url.port), "cluster: connecting to NATS");
            }
            Err(e) => self.fail(registry, format!("{}:{}: {e}", url.host, url.port), now),
        }
    }

    /// The attempt or connection failed: close, report, try the next server.
    fn fail(&mut self, registry: &Registry, reason: String, now: Instant) {
        if let Some(mut conn) = self.conn.take() {
            let _ = registry.deregister(&mut conn.tcp);
        }
        let was_connected = self.phase == Phase::Connected;
        if self.pending() > 0 {
            self.stats.dropped += 1;
        }
        self.wbuf.clear();
        self.wpos = 0;
        self.rbuf.clear();
        self.phase = Phase::Idle;
        self.pings_out = 0;
        if was_connected {
            self.stats.disconnects += 1;
            warn!(reason = %reason, "cluster: lost the connection to NATS; reconnecting");
        } else if reason != self.last_error {
            warn!(reason = %reason, "cluster: cannot connect to NATS");
        }
        self.last_error = reason.clone();
        self.events.push(ClientEvent::Disconnected(reason));
        self.url += 1;
        self.attempt += 1;
        let servers = self.options.urls.len().max(1) as u32;
        let delay = if was_connected || self.attempt < servers {
            Duration::ZERO
        } else {
            let rounds = (self.attempt / servers).min(5);
            Duration::from_millis((100u64 << rounds).min(2_000))
        };
        self.retry_at = Some(now + delay);
    }

    /// Readiness of the socket.
    pub fn handle_event(
        &mut self,
        registry: &Registry,
        now: Instant,
        on_msg: &mut dyn FnMut(&Msg<'_>),
    ) {
        if self.conn.is_none() {
            return;
        }
        if self.phase == Phase::Connecting {
            let Some(conn) = &self.conn else {
                return;
            };
            match conn.tcp.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return self.fail(registry, e.to_string(), now),
            }
            match conn.tcp.peer_addr() {
                Ok(_) => self.phase = Phase::Info,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.fail(registry, e.to_string(), now),
            }
        }
        if let Err(reason) = self.read(registry, now, on_msg) {
            return self.fail(registry, reason, now);
        }
        self.flush(registry, now);
    }

    /// Reads what the socket has and handles every complete operation.
    fn read(
        &mut self,
        registry: &Registry,
        now: Instant,
        on_msg: &mut dyn FnMut(&Msg<'_>),
    ) -> Result<(), String> {
        let limit = self.max_payload + kreisel_nats::CONTROL_LINE_MAX + 64;
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Ok(());
            };
            let start = self.rbuf.len();
            self.rbuf.resize(start + READ_CHUNK, 0);
            let read = match &mut conn.tls {
                None => conn.tcp.read(&mut self.rbuf[start..]),
                Some(tls) => read_tls(&mut conn.tcp, tls, &mut self.rbuf[start..]),
            };
            match read {
                Ok(0) => {
                    self.rbuf.truncate(start);
                    return Err("the server closed the connection".into());
                }
                Ok(n) => {
                    self.rbuf.truncate(start + n);
                    self.stats.bytes_in += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.rbuf.truncate(start);
                    if self.phase == Phase::Handshake {
                        self.advance_handshake(now)?;
                    }
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    self.rbuf.truncate(start);
                    continue;
                }
                Err(e) => {
                    self.rbuf.truncate(start);
                    return Err(e.to_string());
                }
            }
            if self.phase == Phase::Handshake {
                self.advance_handshake(now)?;
            }
            self.parse(registry, now, on_msg)?;
            if self.rbuf.len() > limit {
                return Err(format!(
                    "more than {limit} bytes without a complete operation"
                ));
            }
        }
    }

    fn parse(
        &mut self,
        registry: &Registry,
        now: Instant,
        on_msg: &mut dyn FnMut(&Msg<'_>),
    ) -> Result<(), String> {
        let mut used = 0;
        loop {
            let parsed = kreisel_nats::parse(&self.rbuf[used..], self.max_payload)?;
            let Some((op, n)) = parsed else {
                break;
            };
            match op {
                Op::Msg(msg) => {
                    self.stats.messages_in += 1;
                    on_msg(&msg);
                }
                Op::Ping => kreisel_nats::pong(&mut self.wbuf),
                Op::Pong => {
                    self.pings_out = 0;
                    if self.phase == Phase::Confirming {
                        self.phase = Phase::Connected;
                        self.attempt = 0;
                        self.stats.connects += 1;
                        self.next_ping = now + self.options.ping_interval;
                        let url = &self.options.urls[self.url % self.options.urls.len()];
                        let server = format!("{}:{}", url.host, url.port);
                        info!(%server, "cluster: connected to NATS");
                        self.events.push(ClientEvent::Connected {
                            server,
                            max_payload: self.max_payload,
                        });
                    }
                }
                Op::Ok => {}
                Op::Err(text) => {
                    let text = kreisel_nats::shown(text);
                    // Permission errors leave the connection open; others are followed by the server's close.
                    warn!(error = %text, "cluster: NATS says -ERR");
                    if !text.to_ascii_lowercase().contains("permissions violation") {
                        self.rbuf.drain(..used + n);
                        return Err(format!("-ERR '{text}'"));
                    }
                }
                Op::Info(json) => {
                    let info: serde_json::Value = serde_json::from_slice(json)
                        .map_err(|e| format!("unreadable INFO ({e})"))?;
                    if let Some(max) = info.get("max_payload").and_then(|v| v.as_u64()) {
                        self.max_payload = max as usize;
                    }
                    if self.phase == Phase::Info {
                        let required =
                            info.get("tls_required").and_then(|v| v.as_bool()) == Some(true);
                        let nonce = info
                            .get("nonce")
                            .and_then(|v| v.as_str())
                            .map(str::to_owned);
                        self.rbuf.drain(..used + n);
                        used = 0;
                        self.after_info(required, nonce, now)?;
                        continue;
                    }
                }
            }
            used += n;
        }
        self.rbuf.drain(..used);
        let _ = registry;
        Ok(())
    }

    /// The server's INFO: TLS if configured (the server must then require it too), then CONNECT.
    fn after_info(
        &mut self,
        tls_required: bool,
        _nonce: Option<String>,
        now: Instant,
    ) -> Result<(), String> {
        match (&self.options.tls, tls_required) {
            (Some(config), _) => {
                let url = &self.options.urls[self.url % self.options.urls.len()];
                let name = ServerName::try_from(url.host.clone())
                    .map_err(|e| format!("TLS server name '{}': {e}", url.host))?;
                let tls = ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
                if let Some(conn) = &mut self.conn {
                    conn.tls = Some(tls);
                }
                self.phase = Phase::Handshake;
                self.advance_handshake(now)
            }
            (None, true) => Err("the server requires TLS: set cluster.tls_ca".into()),
            (None, false) => {
                self.send_connect();
                Ok(())
            }
        }
    }

    fn advance_handshake(&mut self, _now: Instant) -> Result<(), String> {
        let Some(conn) = &mut self.conn else {
            return Ok(());
        };
        let Some(tls) = &mut conn.tls else {
            return Ok(());
        };
        while tls.wants_write() {
            match tls.write_tls(&mut conn.tcp) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        if !tls.is_handshaking() {
            self.send_connect();
        }
        Ok(())
    }

    fn send_connect(&mut self) {
        let o = &self.options;
        let mut json = format!(
            "{{\"verbose\":false,\"pedantic\":false,\"tls_required\":{},\"name\":{},\"lang\":\"rust\",\
             \"version\":{},\"protocol\":1,\"echo\":false,\"headers\":true,\"no_responders\":true",
            o.tls.is_some(),
            kreisel_nats::json_string(&o.name),
            kreisel_nats::json_string(env!("CARGO_PKG_VERSION")),
        );
        if let (Some(user), Some(password)) = (&o.user, &o.password) {
            json.push_str(&format!(
                ",\"user\":{},\"pass\":{}",
                kreisel_nats::json_string(user),
                kreisel_nats::json_string(password)
            ));
        }
        if let Some(token) = &o.token {
            json.push_str(&format!(
                ",\"auth_token\":{}",
                kreisel_nats::json_string(token)
            ));
        }
        json.push('}');
        // Whatever was queued while not connected is gone already; CONNECT goes first.
        self.wbuf.clear();
        self.wpos = 0;
        self.wbuf.extend_from_slice(b"CONNECT ");
        self.wbuf.extend_from_slice(json.as_bytes());
        self.wbuf.extend_from_slice(b"\r\n");
        for (subject, sid) in &self.subscriptions {
            kreisel_nats::subscribe(&mut self.wbuf, subject, *sid);
        }
        kreisel_nats::ping(&mut self.wbuf);
        self.phase = Phase::Confirming;
    }

    /// Queues a message (`PUB`); false when it was dropped.
    pub fn publish(
        &mut self,
        subject: &str,
        reply_to: Option<&str>,
        payload: &[&[u8]],
        droppable: bool,
    ) -> bool {
        let len: usize = payload.iter().map(|p| p.len()).sum();
        if !self.room(len, droppable) {
            return false;
        }
        kreisel_nats::publish(&mut self.wbuf, subject, reply_to, payload);
        self.stats.messages_out += 1;
        true
    }

    /// Queues a message with headers (`HPUB`); false when it was dropped.
    pub fn publish_with_headers(
        &mut self,
        subject: &str,
        reply_to: Option<&str>,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> bool {
        if !self.room(payload.len() + 128, false) {
            return false;
        }
        kreisel_nats::publish_with_headers(&mut self.wbuf, subject, reply_to, headers, payload);
        self.stats.messages_out += 1;
        true
    }

    fn room(&mut self, len: usize, droppable: bool) -> bool {
        let limit = if droppable {
            self.options.pending_max / 2
        } else {
            self.options.pending_max
        };
        if len > self.max_payload {
            self.stats.dropped_too_long += 1;
            warn!(
                len,
                max_payload = self.max_payload,
                "cluster: message longer than NATS max_payload not sent"
            );
            return false;
        }
        if self.phase != Phase::Connected || self.pending() + len > limit {
            self.stats.dropped += 1;
            return false;
        }
        // Keep the buffer from growing with what was written long ago.
        if self.wpos > 0 && self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        }
        true
    }

    /// Writes what is queued, as far as the socket takes it; asks for writability otherwise.
    pub fn flush(&mut self, registry: &Registry, now: Instant) {
        if matches!(
            self.phase,
            Phase::Idle | Phase::Connecting | Phase::Info | Phase::Handshake
        ) {
            return;
        }
        let Some(conn) = &mut self.conn else {
            return;
        };
        let mut failed = None;
        while self.wpos < self.wbuf.len() {
            let chunk = &self.wbuf[self.wpos..];
            let written = match &mut conn.tls {
                None => conn.tcp.write(chunk),
                Some(tls) => write_tls(&mut conn.tcp, tls, chunk),
            };
            match written {
                Ok(0) => break,
                Ok(n) => {
                    self.wpos += n;
                    self.stats.bytes_out += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        if let (None, Some(tls)) = (&failed, &mut conn.tls) {
            while tls.wants_write() {
                match tls.write_tls(&mut conn.tcp) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
        }
        if let Some(reason) = failed {
            return self.fail(registry, reason, now);
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        } else if self.wpos > (1 << 20) && self.wpos * 2 > self.wbuf.len() {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
        let tls_pending = conn.tls.as_ref().is_some_and(|tls| tls.wants_write());
        let want_write = self.wpos < self.wbuf.len() || tls_pending;
        if want_write != self.write_interest {
            let interest = if want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if registry
                .reregister(&mut conn.tcp, self.token, interest)
                .is_ok()
            {
                self.write_interest = want_write;
            }
        }
    }

    /// Closes the connection (shutdown), after writing what can be written now.
    pub fn close(&mut self, registry: &Registry) {
        if let Some(mut conn) = self.conn.take() {
            let _ = registry.deregister(&mut conn.tcp);
        }
        self.phase = Phase::Idle;
        self.retry_at = None;
    }
}

fn read_tls(tcp: &mut TcpStream, tls: &mut ClientConnection, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match tls.reader().read(buf) {
            Ok(n) if n > 0 => return Ok(n),
            Ok(_) => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        match tls.read_tls(tcp) {
            Ok(0) => return Ok(0),
            Ok(_) => {
                tls.process_new_packets().map_err(io::Error::other)?;
            }
            Err(e) => return Err(e),
        }
    }
}

fn write_tls(tcp: &mut TcpStream, tls: &mut ClientConnection, chunk: &[u8]) -> io::Result<usize> {
    // Hand rustls at most 64 KiB at a time, then push its ciphertext out.
    let n = tls.writer().write(&chunk[..chunk.len().min(64 << 10)])?;
    while tls.wants_write() {
        match tls.write_tls(tcp) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    if n == 0 {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    Ok(n)
}
