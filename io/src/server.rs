//! The event loop: one mio `Poll`, the listeners, the connections and the engine.
//!
//! One loop turn: wait for readiness (or the next deadline); accept; read each readable connection until
//! `WouldBlock` or its per-turn budget, deframe in place and hand every message to the engine, whose output the
//! `Outbound` sink encodes (once per serializer for a multicast) and queues; then flush every connection that
//! got output, once, with `writev`; then fire due timers.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::{self, Read};
use std::net::IpAddr;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kreisel_codec::{Message, Serializer};
use kreisel_engine::{ConnId, Peer, Recipients, Router, Sink};
use mio::net::{TcpListener, UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tracing::{debug, info, warn};

use crate::config::{Address, Config, SlowConsumer, Transport as TransportName};
use crate::conn::{CloseCause, Conn, Framing, Stream, Transport};
use crate::metrics;
use crate::outbox::{BufferPool, FrameId, FrameStore, HEADER_MAX};
use crate::{rawsocket, websocket};

const LISTENER_BASE: usize = 1 << 40;
const SIGNAL: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
const RELOAD: Token = Token(usize::MAX - 3);
/// Bytes read from one connection per loop turn before others get their turn.
const READ_BUDGET: usize = 256 * 1024;
/// The loop's shared read buffer: every read lands here first.
const SCRATCH_LEN: usize = 64 * 1024;
/// Initial size of a connection's own read buffer (used only while it holds an incomplete frame); it grows up to
/// one maximal frame.
const RBUF_INITIAL: usize = 4 * 1024;
/// The pool of connections' own read buffers: buffers up to 64 KiB go back to it when emptied (larger ones are
/// freed), 1024 of them, 8 MiB in all.
const RBUF_POOL: BufferPool = BufferPool::new(1024, 64 << 10, 8 << 20);
/// Connections accepted beyond `connections_max` just to be refused politely; past this, they are dropped.
const OVER_LIMIT_SLACK: usize = 64;
/// How long a producer's input is paused when a message it sent pushed a recipient's outbox past 3/4 of
/// `outbox_max` (nats-server's "short stall of the fast producer"): time for the recipient to catch up before it
/// would count as a slow consumer.
const STALL: Duration = Duration::from_millis(10);
/// Time a closing connection gets to flush its outbox.
const LINGER: Duration = Duration::from_secs(5);

enum ListenerSocket {
    Tcp(TcpListener),
    Unix(UnixListener, std::path::PathBuf),
}

struct ListenerState {
    socket: Option<ListenerSocket>,
    tls: Option<Arc<rustls::ServerConfig>>,
    serializers: Vec<Serializer>,
    websocket: Option<websocket::UpgradeConfig>,
    rawsocket: bool,
    address: Address,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Handshake,
    Linger,
    /// End of a producer stall (see [`STALL`]).
    Resume,
}

/// Counters of the I/O layer.
#[derive(Clone, Copy, Debug, Default)]
pub struct IoStats {
    pub accepted: u64,
    pub refused_over_limit: u64,
    pub slow_consumers: u64,
    pub handshake_timeouts: u64,
    /// Times a producer's input was paused because a recipient's outbox passed 3/4 of its limit.
    pub producer_stalls: u64,
    /// EVENTs dropped for full outboxes (`slow_consumer = "drop"`).
    pub events_dropped: u64,
    pub idle_timeouts: u64,
    pub transport_errors: u64,
    /// WebSocket handshakes refused (403) for an `Origin` the listener's `allowed_origins` does not list.
    pub origins_refused: u64,
    /// Connections that had not joined a realm, closed (oldest first) to make room at `connections_max`.
    pub evicted_unjoined: u64,
    /// Connections closed at once for `limits.connections_per_ip_max`.
    pub refused_per_ip: u64,
    /// Connections closed because a frame did not complete within `limits.frame_timeout_ms`.
    pub frame_timeouts: u64,
    /// Connections closed because their input would have taken all incomplete frames past
    /// `limits.partial_frames_max`.
    pub partial_frames_refused: u64,
    /// Connections closed because all outboxes together reached `limits.memory_max` (largest first).
    pub memory_cuts: u64,
}

/// A running router on one event loop.
pub struct Server {
    poll: Poll,
    listeners: Vec<ListenerState>,
    conns: Slab<Conn>,
    frames: FrameStore,
    router: Router,
    config: Config,
    rawsocket_exponent: u8,
    dirty: Vec<usize>,
    doomed: Vec<(usize, u32, CloseCause)>,
    /// Shared read buffer (see [`Server::read`]).
    scratch: Vec<u8>,
    /// A recipient's outbox passed 3/4 of its limit while the current input was handled (see [`STALL`]).
    pressure: bool,
    /// Next sweep for silent connections (auto-ping, idle timeout), if either is configured.
    next_sweep: Option<Instant>,
    /// Connection read buffers not in use.
    rbuf_pool: BufferPool,
    /// Connections whose input was not drained this turn (budget or paused and resumed).
    pending_read: Vec<usize>,
    timers: BinaryHeap<Reverse<(Instant, usize, u32, TimerKind)>>,
    next_generation: u32,
    start: Instant,
    signals: Option<UnixStream>,
    /// SIGHUP's pipe and the configuration file it reloads (see [`Server::reload_on_sighup`]).
    reload: Option<(UnixStream, Option<std::path::PathBuf>)>,
    shutdown_deadline: Option<Instant>,
    stop: Arc<AtomicBool>,
    waker: Arc<mio::Waker>,
    stats: IoStats,
    /// Connections in the order they were accepted, while they may not have joined a realm (entries of
    /// connections that joined or closed are skipped when met): the eviction order at `connections_max`.
    unjoined: VecDeque<(usize, u32)>,
    /// Open connections per peer IP address (only with `limits.connections_per_ip_max`).
    per_ip: HashMap<IpAddr, u32>,
    /// Bytes all connections hold in incomplete frames and fragmented messages (`limits.partial_frames_max`).
    partial_bytes: usize,
}

/// Stops a [`Server`] running on another thread (graceful shutdown, as on SIGTERM).
#[derive(Clone, Debug)]
pub struct StopHandle {
    stop: Arc<AtomicBool>,
    waker: Arc<mio::Waker>,
}

impl StopHandle {
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

/// The engine's sink over the connections of this loop.
struct Outbound<'s> {
    policy: SlowConsumer,
    events_dropped: &'s mut u64,
    conns: &'s mut Slab<Conn>,
    frames: &'s mut FrameStore,
    dirty: &'s mut Vec<usize>,
    doomed: &'s mut Vec<(usize, u32, CloseCause)>,
    outbox_max: usize,
    /// Set when a message pushed a recipient's outbox past 3/4 of `outbox_max`.
    pressure: &'s mut bool,
}

pub fn conn_id(index: usize, generation: u32) -> ConnId {
    ConnId((index as u64) | (u64::from(generation) << 32))
}

fn conn_index(id: ConnId) -> (usize, u32) {
    ((id.0 & 0xFFFF_FFFF) as usize, (id.0 >> 32) as u32)
}

impl Outbound<'_> {
    fn encode(&mut self, serializer: Serializer, msg: &Message<'_>) -> FrameId {
        let frame = self.frames.alloc();
        serializer.encode(msg, self.frames.bytes_mut(frame));
        frame
    }

    /// Queues `frame` as a WAMP message for connection `id`. A `droppable` message (an EVENT) is dropped instead
    /// of disconnecting the recipient when the policy is `slow_consumer = "drop"`.
    fn enqueue(&mut self, id: ConnId, frame: FrameId, droppable: bool) {
        let len = self.frames.bytes(frame).len();
        let outbox_max = self.outbox_max;
        let (index, generation) = conn_index(id);
        let Some(conn) = self
            .conns
            .get_mut(index)
            .filter(|c| c.generation == generation)
        else {
            return;
        };
        if conn.closing.is_some() {
            return;
        }
        let mut header = [0u8; HEADER_MAX];
        let header_len = match conn.framing {
            Framing::RawSocket { peer_max_len } => {
                if len > peer_max_len {
                    warn!(peer = %conn.peer, len, max = peer_max_len, "message longer than the peer accepts; closing");
                    self.doomed
                        .push((index, generation, CloseCause::TooLongForPeer));
                    return;
                }
                header[..4]
                    .copy_from_slice(&rawsocket::write_header(rawsocket::FrameKind::Message, len));
                4
            }
            Framing::WebSocket { text } => {
                let opcode = if text {
                    websocket::OpCode::Text
                } else {
                    websocket::OpCode::Binary
                };
                let mut ws = [0u8; 10];
                let n = websocket::write_header(opcode, true, len, &mut ws);
                header[..n].copy_from_slice(&ws[..n]);
                n
            }
            Framing::None => return,
        };
        if conn.outbox.queued_bytes() > outbox_max {
            // Already over the limit and doomed: queue nothing more.
            return;
        }
        if droppable
            && self.policy == SlowConsumer::Drop
            && conn.outbox.queued_bytes() + header_len + len > outbox_max
        {
            *self.events_dropped += 1;
            if !conn.dropping {
                conn.dropping = true;
                warn!(peer = %conn.peer, queued = conn.outbox.queued_bytes(), "slow consumer: dropping events");
            }
            return;
        }
        let was_empty = conn.outbox.is_empty();
        conn.outbox.push(self.frames, &header[..header_len], frame);
        let queued = conn.outbox.queued_bytes();
        if queued > outbox_max {
            self.doomed
                .push((index, generation, CloseCause::SlowConsumer));
            return;
        }
        if queued > outbox_max / 4 * 3 {
            *self.pressure = true;
        }
        if was_empty {
            self.dirty.push(index);
        }
    }

    fn finish(&mut self, frame: FrameId) {
        // A frame nobody queued (all recipients gone) goes straight back to the pool.
        if self.frames.refs(frame) == 0 {
            self.frames.discard(frame);
        }
    }
}

impl Sink for Outbound<'_> {
    fn send(&mut self, to: Peer, msg: &Message<'_>) {
        let frame = self.encode(to.serializer, msg);
        self.enqueue(to.conn, frame, false);
        self.finish(frame);
    }

    fn send_many(&mut self, to: Recipients<'_>, msg: &Message<'_>) {
        // One encoding per serializer, shared by every recipient speaking it.
        let mut frames: [Option<FrameId>; Serializer::ALL.len()] = [None; Serializer::ALL.len()];
        for peer in to.iter() {
            let slot = peer.serializer as usize;
            let frame = match frames[slot] {
                Some(frame) => frame,
                None => {
                    let frame = self.encode(peer.serializer, msg);
                    frames[slot] = Some(frame);
                    frame
                }
            };
            self.enqueue(peer.conn, frame, true);
        }
        for frame in frames.into_iter().flatten() {
            self.finish(frame);
        }
    }

    fn close(&mut self, to: Peer) {
        let (index, generation) = conn_index(to.conn);
        if let Some(conn) = self
            .conns
            .get_mut(index)
            .filter(|c| c.generation == generation)
        {
            if begin_close(conn, self.frames, CloseCause::Engine) {
                self.dirty.push(index);
            }
        }
    }
}

impl Server {
    /// Binds every listener. Errors name the listener that failed.
    pub fn bind(config: Config, seed: u64) -> anyhow::Result<Server> {
        let poll = Poll::new()?;
        let mut listeners = Vec::new();
        for (index, listener) in config.listeners.iter().enumerate() {
            let address = listener.address().map_err(anyhow::Error::msg)?;
            let token = Token(LISTENER_BASE + index);
            let mut socket = match &address {
                Address::Tcp(addr) => ListenerSocket::Tcp(
                    TcpListener::bind(*addr)
                        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?,
                ),
                Address::Unix(path) => {
                    remove_stale_socket(path)?;
                    let socket = UnixListener::bind(path).map_err(|e| {
                        anyhow::anyhow!("cannot listen on unix:{}: {e}", path.display())
                    })?;
                    ListenerSocket::Unix(socket, path.clone())
                }
            };
            match &mut socket {
                ListenerSocket::Tcp(s) => poll.registry().register(s, token, Interest::READABLE)?,
                ListenerSocket::Unix(s, _) => {
                    poll.registry().register(s, token, Interest::READABLE)?
                }
            }
            let serializers = listener.serializers();
            let websocket = listener.speaks(TransportName::Websocket).then(|| {
                let mut upgrade =
                    websocket::UpgradeConfig::new(listener.path.clone(), serializers.clone());
                upgrade.head_max = websocket::HEAD_MAX_DEFAULT;
                upgrade.metrics_path = listener.metrics.clone();
                // Validated with the configuration: a pattern that does not parse was refused there.
                upgrade.allowed_origins = listener.allowed_origins.as_ref().map(|origins| {
                    (origins.iter())
                        .filter_map(|origin| websocket::OriginPattern::parse(origin).ok())
                        .collect()
                });
                upgrade
            });
            let tls = match &listener.tls {
                Some(tls) => Some(
                    crate::tls::server_config(&tls.certificate, &tls.key, tls.client_ca.as_deref())
                        .map_err(|e| anyhow::anyhow!("listener {}: {e}", listener.listen))?,
                ),
                None => None,
            };
            listeners.push(ListenerState {
                socket: Some(socket),
                tls,
                serializers,
                websocket,
                rawsocket: listener.speaks(TransportName::Rawsocket),
                address,
            });
        }
        let rawsocket_exponent = config.rawsocket_exponent();
        let mut router_config = config.router_config(seed);
        // Challenges and ticket comparison need secret randomness; the ID seed is not secret enough.
        ring::rand::SecureRandom::fill(
            &ring::rand::SystemRandom::new(),
            &mut router_config.secret_seed,
        )
        .map_err(|_| anyhow::anyhow!("the operating system's random number generator failed"))?;
        // Engine time 0 is `start` below (the same instant, give or take this call).
        router_config.epoch_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let router = Router::new(router_config);
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
        Ok(Server {
            poll,
            listeners,
            conns: Slab::new(),
            frames: FrameStore::default(),
            router,
            config,
            rawsocket_exponent,
            dirty: Vec::new(),
            doomed: Vec::new(),
            scratch: vec![0; SCRATCH_LEN],
            pressure: false,
            next_sweep: None,
            rbuf_pool: RBUF_POOL,
            pending_read: Vec::new(),
            timers: BinaryHeap::new(),
            next_generation: 0,
            start: Instant::now(),
            signals: None,
            reload: None,
            shutdown_deadline: None,
            stop: Arc::new(AtomicBool::new(false)),
            waker,
            stats: IoStats::default(),
            unjoined: VecDeque::new(),
            per_ip: HashMap::new(),
            partial_bytes: 0,
        })
    }

    /// The bound addresses (with the actual port for listeners configured with port 0).
    pub fn local_addresses(&self) -> Vec<Address> {
        self.listeners
            .iter()
            .map(|l| match &l.socket {
                Some(ListenerSocket::Tcp(s)) => s
                    .local_addr()
                    .map(Address::Tcp)
                    .unwrap_or(l.address.clone()),
                _ => l.address.clone(),
            })
            .collect()
    }

    /// Shuts down gracefully when SIGINT or SIGTERM arrives.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        let (reader, writer) = StdUnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::low_level::pipe::register(signal, writer.try_clone()?)?;
        }
        let mut reader = UnixStream::from_std(reader);
        self.poll
            .registry()
            .register(&mut reader, SIGNAL, Interest::READABLE)?;
        self.signals = Some(reader);
        Ok(())
    }

    /// Reloads `path` on SIGHUP (see [`Server::reload`]). Without a file (embedded defaults), SIGHUP is logged
    /// and ignored rather than ending the process as it would by default.
    pub fn reload_on_sighup(&mut self, path: Option<std::path::PathBuf>) -> io::Result<()> {
        let (reader, writer) = StdUnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        signal_hook::low_level::pipe::register(signal_hook::consts::SIGHUP, writer)?;
        let mut reader = UnixStream::from_std(reader);
        self.poll
            .registry()
            .register(&mut reader, RELOAD, Interest::READABLE)?;
        self.reload = Some((reader, path));
        Ok(())
    }

    fn on_reload_signal(&mut self) {
        let Some((pipe, path)) = &mut self.reload else {
            return;
        };
        let mut drain = [0u8; 64];
        while matches!(pipe.read(&mut drain), Ok(n) if n > 0) {}
        let Some(path) = path.clone() else {
            warn!("SIGHUP: started without --config, nothing to reload");
            return;
        };
        match Config::load(&path) {
            Ok(config) => {
                self.reload(&config);
            }
            Err(e) => {
                warn!(error = %e, "SIGHUP: configuration not reloaded; the running one stays")
            }
        }
    }

    /// Applies what a new configuration changes in the principals, roles and anonymous access of realms this
    /// router has (see [`Router::handle_auth_reload`]: joined sessions get the new role's permissions, attempts in
    /// progress are aborted). Everything else needs a restart: each such difference is logged and returned, and
    /// the running value stays.
    pub fn reload(&mut self, new: &Config) -> Vec<String> {
        let mut ignored = Vec::new();
        let names = |config: &Config| -> Vec<String> {
            let mut names: Vec<String> = config.realms.iter().map(|r| r.name.clone()).collect();
            names.sort();
            names
        };
        if names(new) != names(&self.config) {
            ignored.push("the set of realms".to_owned());
        }
        if new.listeners != self.config.listeners {
            ignored.push("listeners".to_owned());
        }
        if new.limits != self.config.limits {
            ignored.push("limits".to_owned());
        }
        if new.log != self.config.log {
            ignored.push("log".to_owned());
        }
        let engine_new = new.router_config(0);
        let engine_old = self.config.router_config(0);
        for (fresh, realm_new) in new.realms.iter().zip(&engine_new.realms) {
            let Some(index) = self.config.realms.iter().position(|r| r.name == fresh.name) else {
                continue;
            };
            let realm_old = &engine_old.realms[index];
            let others_changed = kreisel_engine::RealmConfig {
                auth: realm_old.auth.clone(),
                ..realm_new.clone()
            } != *realm_old;
            if others_changed {
                ignored.push(format!(
                    "realm '{}': settings other than principals, roles and anonymous access",
                    fresh.name
                ));
            }
            if realm_new.auth == realm_old.auth {
                continue;
            }
            let report = self.with_sink(|router, sink| {
                router.handle_auth_reload(&fresh.name, &realm_new.auth, sink)
            });
            if let Some(report) = report {
                info!(
                    realm = %fresh.name,
                    sessions = report.sessions,
                    sessions_without_role = report.sessions_without_role,
                    attempts_aborted = report.attempts_aborted,
                    "reloaded principals and roles"
                );
            }
            let current = &mut self.config.realms[index];
            current.anonymous = fresh.anonymous;
            current.anonymous_role = fresh.anonymous_role.clone();
            current.principals = fresh.principals.clone();
            current.roles = fresh.roles.clone();
        }
        for what in &ignored {
            warn!(changed = %what, "not reloaded: takes effect after a restart");
        }
        info!(ignored = ignored.len(), "configuration reloaded");
        self.settle();
        ignored
    }

    /// A handle to stop this server from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            stop: self.stop.clone(),
            waker: self.waker.clone(),
        }
    }

    pub fn io_stats(&self) -> IoStats {
        self.stats
    }

    /// Runs until shutdown completes.
    pub fn run(&mut self) -> io::Result<()> {
        for address in self.local_addresses() {
            info!(%address, "listening");
        }
        self.next_sweep = self.sweep_period().map(|period| Instant::now() + period);
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    SIGNAL => self.on_signal(),
                    RELOAD => self.on_reload_signal(),
                    WAKER => {
                        if self.stop.swap(false, Ordering::SeqCst)
                            && self.shutdown_deadline.is_none()
                        {
                            self.begin_shutdown();
                        }
                    }
                    Token(t) if t >= LISTENER_BASE => self.accept(t - LISTENER_BASE),
                    Token(index) => {
                        if event.is_writable() {
                            if let Some(conn) = self.conns.get_mut(index) {
                                conn.write_blocked = false;
                                self.dirty.push(index);
                            }
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(index);
                        }
                    }
                }
            }
            for index in std::mem::take(&mut self.pending_read) {
                self.read(index);
            }
            self.settle();
            self.fire_timers();
            if self.next_sweep.is_some_and(|at| at <= Instant::now()) {
                self.sweep();
            }
            let now_ms = self.now_ms();
            if self
                .router
                .poll_timeout()
                .is_some_and(|deadline| deadline <= now_ms)
            {
                // Calls past their CALL.Options.timeout.
                self.with_sink(|router, sink| router.handle_timeout(now_ms, sink));
                self.settle();
            }
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() || Instant::now() >= deadline {
                    self.finish_shutdown();
                    return Ok(());
                }
            }
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.pending_read.is_empty() || !self.dirty.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut deadline = self.timers.peek().map(|Reverse((at, ..))| *at);
        if let Some(sweep) = self.next_sweep {
            deadline = Some(deadline.map_or(sweep, |d| d.min(sweep)));
        }
        if let Some(call) = self.router.poll_timeout() {
            let call = self.start + Duration::from_millis(call);
            deadline = Some(deadline.map_or(call, |d| d.min(call)));
        }
        if let Some(shutdown) = self.shutdown_deadline {
            deadline = Some(deadline.map_or(shutdown, |d| d.min(shutdown)));
        }
        deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    // ---------------------------------------------------------------------------------------------------------
    // Accepting

    fn accept(&mut self, listener: usize) {
        loop {
            let accepted = match &self.listeners[listener].socket {
                Some(ListenerSocket::Tcp(s)) => s.accept().and_then(|(stream, addr)| {
                    let _ = stream.set_nodelay(true);
                    let stream = match &self.listeners[listener].tls {
                        Some(config) => Stream::Tls(Box::new(crate::tls::TlsStream::new(
                            stream,
                            config.clone(),
                        )?)),
                        None => Stream::Tcp(stream),
                    };
                    Ok((stream, addr.to_string(), Some(addr.ip())))
                }),
                Some(ListenerSocket::Unix(s, path)) => s.accept().map(|(stream, _)| {
                    let peer = format!("unix:{}", path.display());
                    (Stream::Unix(stream), peer, None)
                }),
                None => return,
            };
            let (stream, peer, ip) = match accepted {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: log and try again on the next readiness event.
                    warn!(error = %e, "accept failed");
                    return;
                }
            };
            self.stats.accepted += 1;
            let per_ip_max = self.config.limits.connections_per_ip_max;
            if let Some(ip) = ip.filter(|_| per_ip_max > 0) {
                if self
                    .per_ip
                    .get(&ip)
                    .is_some_and(|&n| n as usize >= per_ip_max)
                {
                    self.stats.refused_per_ip += 1;
                    debug!(%peer, limit = per_ip_max, "limits.connections_per_ip_max reached; closing");
                    drop(stream);
                    continue;
                }
            }
            let connections_max = self.config.limits.connections_max;
            let over_limit = self.conns.len() >= connections_max && !self.evict_unjoined();
            if over_limit && self.conns.len() >= connections_max + OVER_LIMIT_SLACK {
                self.stats.refused_over_limit += 1;
                drop(stream);
                continue;
            }
            self.next_generation = self.next_generation.wrapping_add(1);
            let generation = self.next_generation;
            let entry = self.conns.vacant_entry();
            let index = entry.key();
            let now_ms = self.start.elapsed().as_millis() as u64;
            let conn = entry.insert(Conn::new(
                stream,
                listener,
                generation,
                (peer, ip.filter(|_| per_ip_max > 0)),
                over_limit,
            ));
            conn.last_rx_ms = now_ms;
            let registered = self.poll.registry().register(
                conn.stream.source(),
                Token(index),
                Interest::READABLE | Interest::WRITABLE,
            );
            if let Err(e) = registered {
                warn!(error = %e, "cannot register connection");
                self.conns.remove(index);
                continue;
            }
            if let Some(ip) = self.conns[index].ip {
                *self.per_ip.entry(ip).or_default() += 1;
            }
            self.unjoined.push_back((index, generation));
            if self.unjoined.len() > 2 * self.conns.len() + 64 {
                let (conns, router) = (&self.conns, &self.router);
                self.unjoined
                    .retain(|&(index, generation)| unjoined(conns, router, index, generation));
            }
            debug!(peer = %self.conns[index].peer, index, "connection accepted");
            let deadline =
                Instant::now() + Duration::from_millis(self.config.limits.handshake_timeout_ms);
            self.timers
                .push(Reverse((deadline, index, generation, TimerKind::Handshake)));
        }
    }

    /// At `connections_max`: closes the oldest connection that has not joined a realm, to make room for a new
    /// one (a peer holding sockets that never handshake cannot lock others out). Returns whether it closed one.
    fn evict_unjoined(&mut self) -> bool {
        while let Some((index, generation)) = self.unjoined.pop_front() {
            if !unjoined(&self.conns, &self.router, index, generation) {
                continue;
            }
            self.stats.evicted_unjoined += 1;
            debug!(peer = %self.conns[index].peer, "connections_max reached: closing the oldest connection that has not joined");
            self.remove(index, Some(CloseCause::Evicted));
            return true;
        }
        false
    }

    // ---------------------------------------------------------------------------------------------------------
    // Reading

    /// Reads what connection `index` has (up to the per-turn budget) and handles every complete frame.
    ///
    /// Bytes are read into the loop's shared buffer and deframed there; only the tail of an incomplete frame is
    /// copied into a buffer of the connection's own (taken from a pool and returned when emptied), so an idle
    /// connection holds no read buffer at all.
    fn read(&mut self, index: usize) {
        let pause_at = self.config.limits.outbox_max / 2;
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        if conn.closing.is_some() {
            return;
        }
        if conn.stalled_until.is_some() {
            // A stalled producer: the Resume timer reads on.
            return;
        }
        if conn.outbox.queued_bytes() > pause_at {
            // The peer is not reading our answers: stop reading its requests until it catches up.
            conn.read_paused = true;
            return;
        }
        conn.read_paused = false;
        let mut budget = READ_BUDGET;
        let mut eof = false;
        loop {
            self.pressure = false;
            let read = if self.conns[index].filled > 0 {
                self.read_own(index)
            } else {
                self.read_shared(index)
            };
            match read {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    let now_ms = self.now_ms();
                    if let Some(conn) = self.conns.get_mut(index) {
                        conn.last_rx_ms = now_ms;
                    }
                    self.account_input(index, now_ms);
                    let Some(conn) = self.conns.get(index) else {
                        return;
                    };
                    if conn.closing.is_some() {
                        break;
                    }
                    if conn.outbox.queued_bytes() > pause_at {
                        self.conns[index].read_paused = true;
                        break;
                    }
                    if self.pressure {
                        // What this peer sent fills someone's outbox: give the recipients time to drain.
                        self.stats.producer_stalls += 1;
                        let generation = conn.generation;
                        let until = Instant::now() + STALL;
                        self.conns[index].stalled_until = Some(until);
                        self.timers
                            .push(Reverse((until, index, generation, TimerKind::Resume)));
                        break;
                    }
                    if budget == 0 {
                        self.pending_read.push(index);
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!(error = %e, "read failed");
                    eof = true;
                    break;
                }
            }
        }
        if eof {
            self.remove(index, None);
        }
    }

    /// After a read: counts what connection `index` holds for incomplete input against `partial_frames_max`
    /// (closing it if that total would pass the limit), and notes since when its current frame has been
    /// incomplete (for `frame_timeout_ms`: the time restarts whenever a message or control frame completes).
    fn account_input(&mut self, index: usize, now_ms: u64) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        let (assembly_bytes, assembling) = conn.transport.assembly();
        let own = if conn.filled > 0 { conn.rbuf.len() } else { 0 };
        let held = own + assembly_bytes;
        self.partial_bytes = self.partial_bytes - conn.held_input + held;
        conn.held_input = held;
        let incomplete = conn.filled > 0 || assembling;
        conn.input_since_ms = match conn.input_since_ms {
            _ if !incomplete => None,
            Some(since) if !conn.progressed => Some(since),
            _ => Some(now_ms),
        };
        conn.progressed = false;
        if self.partial_bytes > self.config.limits.partial_frames_max && conn.closing.is_none() {
            self.stats.partial_frames_refused += 1;
            warn!(
                peer = %conn.peer,
                held,
                total = self.partial_bytes,
                limit = self.config.limits.partial_frames_max,
                "incomplete frames over limits.partial_frames_max; closing this connection"
            );
            self.abandon(index, CloseCause::InputBudget);
        }
    }

    /// One read into the shared buffer; frames handled in place, an incomplete tail kept by the connection.
    fn read_shared(&mut self, index: usize) -> io::Result<usize> {
        let mut buf = std::mem::take(&mut self.scratch);
        let result = self.conns[index].stream.read(&mut buf);
        if let Ok(n) = result {
            if n > 0 {
                let consumed = self.process_input(index, &mut buf[..n]);
                if consumed < n && self.conns[index].closing.is_none() {
                    let tail = &buf[consumed..n];
                    let mut own = self.rbuf_pool.take();
                    own.resize(tail.len().max(RBUF_INITIAL), 0);
                    own[..tail.len()].copy_from_slice(tail);
                    let conn = &mut self.conns[index];
                    conn.rbuf = own;
                    conn.filled = tail.len();
                }
            }
        }
        self.scratch = buf;
        result
    }

    /// One read into the connection's own buffer, which holds the start of an incomplete frame.
    fn read_own(&mut self, index: usize) -> io::Result<usize> {
        let limit = self.config.limits.message_max + websocket::HEADER_LEN_MAX + 64;
        let conn = &mut self.conns[index];
        if conn.filled == conn.rbuf.len() {
            let grown = (conn.rbuf.len() * 2).clamp(RBUF_INITIAL, limit.max(RBUF_INITIAL));
            if grown <= conn.rbuf.len() {
                // A full buffer that cannot grow means the framer is waiting for more than a maximal frame:
                // impossible with correct framers, so treat it as a protocol error rather than spin.
                self.doomed
                    .push((index, conn.generation, CloseCause::Protocol));
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let total = self.partial_bytes + (grown - conn.rbuf.len());
            if total > self.config.limits.partial_frames_max {
                self.stats.partial_frames_refused += 1;
                warn!(
                    peer = %conn.peer,
                    total,
                    limit = self.config.limits.partial_frames_max,
                    "incomplete frames over limits.partial_frames_max; closing this connection"
                );
                self.doomed
                    .push((index, conn.generation, CloseCause::InputBudget));
                return Err(io::ErrorKind::WouldBlock.into());
            }
            conn.rbuf.resize(grown, 0);
        }
        let filled = conn.filled;
        let n = conn.stream.read(&mut conn.rbuf[filled..])?;
        if n == 0 {
            return Ok(0);
        }
        let mut buf = std::mem::take(&mut conn.rbuf);
        let end = filled + n;
        let consumed = self.process_input(index, &mut buf[..end]);
        buf.copy_within(consumed..end, 0);
        let left = end - consumed;
        let conn = &mut self.conns[index];
        conn.filled = left;
        if left > 0 {
            conn.rbuf = buf;
        } else {
            // Emptied: the buffer goes back to the pool (a buffer grown for a big message is freed).
            self.rbuf_pool.give(buf);
        }
        Ok(n)
    }

    /// Deframes and handles every complete frame at the start of `buf`; returns the bytes consumed.
    fn process_input(&mut self, index: usize, buf: &mut [u8]) -> usize {
        let now_ms = self.now_ms();
        let message_max = self.config.limits.message_max;
        let mut transport = std::mem::replace(&mut self.conns[index].transport, Transport::Closed);
        let filled = buf.len();
        let mut pos = 0;
        loop {
            if self.conns[index].closing.is_some() || pos >= filled {
                break;
            }
            let input = &mut buf[pos..filled];
            let step = match &mut transport {
                Transport::Detect => {
                    let listener = &self.listeners[self.conns[index].listener];
                    transport = match (
                        input[0] == rawsocket::MAGIC,
                        listener.rawsocket,
                        listener.websocket.is_some(),
                    ) {
                        (true, true, _) => Transport::RawSocketHandshake,
                        (false, _, true) => Transport::HttpUpgrade,
                        _ => {
                            debug!(peer = %self.conns[index].peer, "unexpected first octet; closing");
                            self.abandon(index, CloseCause::Handshake);
                            break;
                        }
                    };
                    Some(0)
                }
                Transport::RawSocketHandshake => {
                    self.rawsocket_handshake(index, input, &mut transport)
                }
                Transport::HttpUpgrade => {
                    self.http_upgrade(index, input, &mut transport, message_max)
                }
                Transport::RawSocket { serializer, .. } => {
                    let serializer = *serializer;
                    self.rawsocket_frame(index, input, serializer, message_max, now_ms)
                }
                Transport::WebSocket { serializer, reader } => {
                    let serializer = *serializer;
                    self.websocket_frame(index, input, serializer, reader, now_ms)
                }
                Transport::Closed => None,
            };
            match step {
                Some(consumed) => pos += consumed,
                None => break,
            }
        }
        let conn = &mut self.conns[index];
        if matches!(conn.transport, Transport::Closed) {
            conn.transport = transport;
        }
        pos
    }

    fn with_sink<R>(&mut self, f: impl FnOnce(&mut Router, &mut Outbound<'_>) -> R) -> R {
        let mut sink = Outbound {
            policy: self.config.limits.slow_consumer,
            events_dropped: &mut self.stats.events_dropped,
            conns: &mut self.conns,
            frames: &mut self.frames,
            dirty: &mut self.dirty,
            doomed: &mut self.doomed,
            outbox_max: self.config.limits.outbox_max,
            pressure: &mut self.pressure,
        };
        f(&mut self.router, &mut sink)
    }

    /// Queues raw bytes (handshake replies, HTTP responses, control frames) for a connection.
    fn send_raw(&mut self, index: usize, header: &[u8], bytes: &[u8]) {
        let frame = self.frames.alloc();
        self.frames.bytes_mut(frame).extend_from_slice(bytes);
        let conn = &mut self.conns[index];
        let was_empty = conn.outbox.is_empty();
        conn.outbox.push(&mut self.frames, header, frame);
        if was_empty {
            self.dirty.push(index);
        }
        if self.frames.refs(frame) == 0 {
            self.frames.discard(frame);
        }
    }

    fn open_session(&mut self, index: usize, serializer: Serializer) {
        let conn = &self.conns[index];
        let handle = self
            .router
            .handle_open(conn_id(index, conn.generation), serializer);
        self.conns[index].session = Some(handle);
    }

    fn rawsocket_handshake(
        &mut self,
        index: usize,
        input: &mut [u8],
        transport: &mut Transport,
    ) -> Option<usize> {
        let hello: [u8; 4] = input.get(..4)?.try_into().ok()?;
        let listener = &self.listeners[self.conns[index].listener];
        if self.conns[index].over_limit {
            self.stats.refused_over_limit += 1;
            info!(peer = %self.conns[index].peer, "connection limit reached; refusing RawSocket client");
            self.send_raw(
                index,
                &[],
                &rawsocket::reject_reply(rawsocket::ERROR_CONNECTION_LIMIT),
            );
            self.conns[index].closing = Some(CloseCause::ConnectionLimit);
            return None;
        }
        match rawsocket::handle_handshake(hello, &listener.serializers, self.rawsocket_exponent) {
            rawsocket::HandshakeOutcome::Accept {
                serializer,
                peer_max_len,
                reply,
            } => {
                self.send_raw(index, &[], &reply);
                self.conns[index].framing = Framing::RawSocket { peer_max_len };
                *transport = Transport::RawSocket {
                    serializer,
                    peer_max_len,
                };
                self.open_session(index, serializer);
                debug!(peer = %self.conns[index].peer, serializer = serializer.name(), "RawSocket open");
                Some(4)
            }
            rawsocket::HandshakeOutcome::Reject { reply, reason } => {
                info!(peer = %self.conns[index].peer, %reason, "RawSocket handshake refused");
                self.send_raw(index, &[], &reply);
                self.conns[index].closing = Some(CloseCause::Handshake);
                None
            }
            rawsocket::HandshakeOutcome::NotRawSocket => {
                self.abandon(index, CloseCause::Handshake);
                None
            }
        }
    }

    fn http_upgrade(
        &mut self,
        index: usize,
        input: &mut [u8],
        transport: &mut Transport,
        message_max: usize,
    ) -> Option<usize> {
        let listener = &self.listeners[self.conns[index].listener];
        let upgrade = listener.websocket.as_ref()?;
        match websocket::handle_upgrade(input, upgrade) {
            websocket::UpgradeOutcome::Incomplete => None,
            websocket::UpgradeOutcome::Accept {
                serializer,
                consumed,
                response,
            } => {
                if self.conns[index].over_limit {
                    self.stats.refused_over_limit += 1;
                    info!(peer = %self.conns[index].peer, "connection limit reached; refusing WebSocket client");
                    let body = "connection limit reached\n";
                    let response = format!(
                        "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n\
                         Content-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    self.send_raw(index, &[], response.as_bytes());
                    self.conns[index].closing = Some(CloseCause::ConnectionLimit);
                    return None;
                }
                self.send_raw(index, &[], &response);
                self.conns[index].framing = Framing::WebSocket {
                    text: serializer.is_text(),
                };
                // Until the session joins, messages are held to the smaller limit (see `websocket_frame`).
                let before_welcome = self.config.limits.unjoined_message_max.min(message_max);
                *transport = Transport::WebSocket {
                    serializer,
                    reader: websocket::FrameReader::new(before_welcome),
                };
                self.open_session(index, serializer);
                debug!(peer = %self.conns[index].peer, serializer = serializer.name(), "WebSocket open");
                Some(consumed)
            }
            websocket::UpgradeOutcome::Metrics { .. } => {
                let gauges = metrics::Gauges {
                    outbox_bytes: self.frames.memory(),
                    partial_frame_bytes: self.partial_bytes,
                    connections: self.conns.len(),
                    uptime_seconds: self.start.elapsed().as_secs_f64(),
                    calls_pending: self.router.calls_pending(),
                    realms: self.router.realm_gauges().collect(),
                };
                let page = metrics::render(&self.router.stats(), &self.stats, &gauges);
                debug!(peer = %self.conns[index].peer, "metrics scraped");
                self.send_raw(index, &[], &metrics::response(&page));
                self.conns[index].closing = Some(CloseCause::Served);
                None
            }
            websocket::UpgradeOutcome::Reject {
                status,
                response,
                reason,
            } => {
                if status == 403 {
                    self.stats.origins_refused += 1;
                }
                info!(peer = %self.conns[index].peer, status, %reason, "WebSocket upgrade refused");
                self.send_raw(index, &[], &response);
                self.conns[index].closing = Some(CloseCause::Handshake);
                None
            }
        }
    }

    fn rawsocket_frame(
        &mut self,
        index: usize,
        input: &mut [u8],
        serializer: Serializer,
        message_max: usize,
        now_ms: u64,
    ) -> Option<usize> {
        let limit = if self.joined(index) {
            message_max
        } else {
            self.config.limits.unjoined_message_max.min(message_max)
        };
        let our_max = rawsocket::max_len(self.rawsocket_exponent).min(limit.max(512));
        let frame = match rawsocket::parse_frame(input, our_max) {
            Ok(Some(frame)) => frame,
            Ok(None) => return None,
            Err(e) => {
                self.transport_error(index, &e.to_string());
                return None;
            }
        };
        let consumed = frame.payload.end;
        let payload = &input[frame.payload.clone()];
        self.conns[index].progressed = true;
        match frame.kind {
            rawsocket::FrameKind::Message => self.deliver(index, serializer, payload, now_ms),
            rawsocket::FrameKind::Ping => {
                let header = rawsocket::write_header(rawsocket::FrameKind::Pong, payload.len());
                self.send_raw(index, &header, payload);
            }
            rawsocket::FrameKind::Pong => {}
        }
        Some(consumed)
    }

    fn websocket_frame(
        &mut self,
        index: usize,
        input: &mut [u8],
        serializer: Serializer,
        reader: &mut websocket::FrameReader,
        now_ms: u64,
    ) -> Option<usize> {
        let message_max = self.config.limits.message_max;
        if reader.message_max() < message_max && self.joined(index) {
            reader.set_message_max(message_max);
        }
        let (consumed, event) = match reader.read(input) {
            Ok(Some(read)) => read,
            Ok(None) => return None,
            Err(close) => {
                info!(peer = %self.conns[index].peer, %close, "WebSocket protocol error");
                self.conns[index].ws_close = (close.code, close.reason);
                self.transport_error(index, close.reason);
                return None;
            }
        };
        if !matches!(event, websocket::Event::Fragment) {
            self.conns[index].progressed = true;
        }
        match event {
            websocket::Event::Message { data, .. } => self.deliver(index, serializer, data, now_ms),
            websocket::Event::Ping(payload) => {
                let mut frame = Vec::with_capacity(payload.len() + 2);
                websocket::control_frame(websocket::OpCode::Pong, payload, &mut frame);
                self.send_raw(index, &[], &frame);
            }
            websocket::Event::Pong(_) | websocket::Event::Fragment => {}
            websocket::Event::Close { code, .. } => {
                // Echo the peer's code (1000 when it sent none); the engine then cleans up on removal.
                let conn = &mut self.conns[index];
                conn.ws_close = (code.unwrap_or(websocket::CLOSE_NORMAL), "");
                if begin_close(conn, &mut self.frames, CloseCause::Engine) {
                    self.dirty.push(index);
                }
            }
        }
        Some(consumed)
    }

    /// Whether connection `index` carries a session joined to a realm.
    fn joined(&self, index: usize) -> bool {
        (self.conns.get(index))
            .and_then(|conn| conn.session)
            .is_some_and(|handle| self.router.session_info(handle).is_some())
    }

    /// A complete WAMP message from connection `index`: decode it and hand it to the engine.
    fn deliver(&mut self, index: usize, serializer: Serializer, payload: &[u8], now_ms: u64) {
        let Some(handle) = self.conns[index].session else {
            return;
        };
        match serializer.decode(payload) {
            Ok(msg) => {
                self.with_sink(|router, sink| router.handle_message(handle, &msg, now_ms, sink))
            }
            Err(e) => {
                let text = e.to_string();
                self.with_sink(|router, sink| {
                    router.handle_protocol_violation(handle, &text, sink)
                });
            }
        }
    }

    /// The peer broke the transport protocol: ABORT its session if it has one, then close.
    fn transport_error(&mut self, index: usize, reason: &str) {
        self.stats.transport_errors += 1;
        let conn = &self.conns[index];
        debug!(peer = %conn.peer, reason, "transport error");
        if let Some(handle) = conn.session {
            self.with_sink(|router, sink| router.handle_protocol_violation(handle, reason, sink));
        }
        if let Some(conn) = self.conns.get_mut(index) {
            if begin_close(conn, &mut self.frames, CloseCause::Protocol) {
                self.dirty.push(index);
            }
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Writing, closing

    /// Closes doomed connections and flushes every connection with output, until nothing changes.
    fn settle(&mut self) {
        loop {
            if self.frames.memory() > self.config.limits.memory_max {
                self.cut_largest_outboxes();
            }
            while let Some((index, generation, cause)) = self.doomed.pop() {
                if self
                    .conns
                    .get(index)
                    .is_some_and(|c| c.generation == generation)
                {
                    self.close_now(index, cause);
                }
            }
            let dirty = std::mem::take(&mut self.dirty);
            if dirty.is_empty() {
                break;
            }
            for index in dirty.iter().copied() {
                self.flush(index);
            }
            let mut dirty = dirty;
            dirty.clear();
            if self.dirty.is_empty() {
                self.dirty = dirty;
            }
        }
    }

    /// All outboxes together hold more than `limits.memory_max`: disconnects the connections with the largest
    /// outboxes until they hold less (each logged and counted; a frame other outboxes share stays until they
    /// are done with it).
    fn cut_largest_outboxes(&mut self) {
        let memory_max = self.config.limits.memory_max;
        while self.frames.memory() > memory_max {
            let largest = (self.conns.iter())
                .map(|(index, conn)| (conn.outbox.queued_bytes(), index))
                .filter(|&(queued, _)| queued > 0)
                .max();
            let Some((queued, index)) = largest else {
                break;
            };
            self.stats.memory_cuts += 1;
            warn!(
                peer = %self.conns[index].peer,
                queued,
                memory = self.frames.memory(),
                limit = memory_max,
                "outboxes over limits.memory_max: disconnecting the largest"
            );
            self.remove(index, Some(CloseCause::MemoryBudget));
        }
    }

    fn flush(&mut self, index: usize) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        if conn.write_blocked {
            return;
        }
        let flushed = conn
            .outbox
            .flush(&mut self.frames, &mut conn.stream)
            .and_then(|empty| {
                if empty {
                    conn.stream.flush_pending()
                } else {
                    Ok(false)
                }
            });
        match flushed {
            Ok(true) => {
                conn.dropping = false;
                if let Some(cause) = conn.closing {
                    self.remove(index, Some(cause));
                } else if conn.read_paused {
                    self.pending_read.push(index);
                }
            }
            Ok(false) => {
                conn.write_blocked = true;
                if conn.closing.is_some() {
                    let generation = conn.generation;
                    self.timers.push(Reverse((
                        Instant::now() + LINGER,
                        index,
                        generation,
                        TimerKind::Linger,
                    )));
                }
            }
            Err(e) => {
                debug!(error = %e, "write failed");
                self.remove(index, None);
            }
        }
    }

    /// Marks a connection to be closed without flushing at the end of this turn. Used while its input is being
    /// processed, where it must stay in the slab.
    fn abandon(&mut self, index: usize, cause: CloseCause) {
        let conn = &mut self.conns[index];
        if conn.closing.is_none() {
            conn.closing = Some(cause);
        }
        let generation = conn.generation;
        self.doomed.push((index, generation, cause));
    }

    /// Closes a connection without flushing (slow consumer, limits), telling the engine.
    fn close_now(&mut self, index: usize, cause: CloseCause) {
        if cause == CloseCause::SlowConsumer {
            self.stats.slow_consumers += 1;
            let conn = &self.conns[index];
            warn!(
                peer = %conn.peer,
                queued = conn.outbox.queued_bytes(),
                limit = self.config.limits.outbox_max,
                "slow consumer: outbox over limits.outbox_max; disconnecting"
            );
        }
        self.remove(index, Some(cause));
    }

    fn remove(&mut self, index: usize, cause: Option<CloseCause>) {
        let Some(mut conn) = self.conns.try_remove(index) else {
            return;
        };
        let _ = self.poll.registry().deregister(conn.stream.source());
        conn.stream.shutdown();
        conn.outbox.clear(&mut self.frames);
        self.partial_bytes -= conn.held_input;
        if let Some(ip) = conn.ip {
            if let Some(count) = self.per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    self.per_ip.remove(&ip);
                }
            }
        }
        debug!(peer = %conn.peer, ?cause, "connection closed");
        if let Some(handle) = conn.session {
            self.with_sink(|router, sink| router.handle_close(handle, sink));
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Timers, shutdown

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, index, generation, kind))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(conn) = self.conns.get(index).filter(|c| c.generation == generation) else {
                continue;
            };
            match kind {
                TimerKind::Handshake => {
                    let hello = conn.session.is_some_and(|h| self.router.hello_received(h));
                    if !hello && conn.closing.is_none() {
                        self.stats.handshake_timeouts += 1;
                        info!(peer = %conn.peer, "no handshake and HELLO in time; closing");
                        self.remove(index, Some(CloseCause::HandshakeTimeout));
                    }
                }
                TimerKind::Linger => {
                    if conn.closing.is_some() {
                        self.remove(index, conn.closing);
                    }
                }
                TimerKind::Resume => {
                    if conn.stalled_until.is_some_and(|until| until <= now) {
                        self.conns[index].stalled_until = None;
                        self.read(index);
                    }
                }
            }
        }
        self.settle();
    }

    /// Period of the silent-connection sweep: a quarter of the shortest configured interval.
    fn sweep_period(&self) -> Option<Duration> {
        let limits = &self.config.limits;
        let shortest = [
            limits.auto_ping_ms,
            limits.idle_timeout_ms,
            limits.frame_timeout_ms,
        ]
        .into_iter()
        .filter(|&ms| ms > 0)
        .min()?;
        Some(Duration::from_millis((shortest / 4).max(10)))
    }

    /// Pings connections silent for `auto_ping_ms`, closes those silent for `idle_timeout_ms` and those whose
    /// current frame has been incomplete for `frame_timeout_ms`.
    fn sweep(&mut self) {
        let now_ms = self.now_ms();
        let (ping_ms, idle_ms, frame_ms) = (
            self.config.limits.auto_ping_ms,
            self.config.limits.idle_timeout_ms,
            self.config.limits.frame_timeout_ms,
        );
        let mut idle = Vec::new();
        let mut ping = Vec::new();
        let mut trickling = Vec::new();
        for (index, conn) in &self.conns {
            if conn.closing.is_some() {
                continue;
            }
            if conn
                .input_since_ms
                .is_some_and(|since| now_ms.saturating_sub(since) >= frame_ms)
            {
                trickling.push(index);
                continue;
            }
            if conn.framing == Framing::None {
                continue;
            }
            let silent = now_ms.saturating_sub(conn.last_rx_ms);
            if idle_ms > 0 && silent >= idle_ms {
                idle.push(index);
            } else if ping_ms > 0
                && silent >= ping_ms
                && now_ms.saturating_sub(conn.last_ping_ms) >= ping_ms
            {
                ping.push(index);
            }
        }
        for index in trickling {
            self.stats.frame_timeouts += 1;
            let conn = &mut self.conns[index];
            info!(peer = %conn.peer, limit_ms = frame_ms, "frame not complete within limits.frame_timeout_ms; closing");
            conn.ws_close = (websocket::CLOSE_POLICY_VIOLATION, "frame timeout");
            if begin_close(conn, &mut self.frames, CloseCause::FrameTimeout) {
                self.dirty.push(index);
            }
        }
        for index in idle {
            self.stats.idle_timeouts += 1;
            let conn = &mut self.conns[index];
            info!(peer = %conn.peer, "idle timeout; closing");
            conn.ws_close = (websocket::CLOSE_GOING_AWAY, "idle timeout");
            if begin_close(conn, &mut self.frames, CloseCause::IdleTimeout) {
                self.dirty.push(index);
            }
        }
        for index in ping {
            self.conns[index].last_ping_ms = now_ms;
            let payload = now_ms.to_be_bytes();
            match self.conns[index].framing {
                Framing::RawSocket { .. } => {
                    let header = rawsocket::write_header(rawsocket::FrameKind::Ping, payload.len());
                    self.send_raw(index, &header, &payload);
                }
                Framing::WebSocket { .. } => {
                    let mut frame = Vec::with_capacity(2 + payload.len());
                    websocket::control_frame(websocket::OpCode::Ping, &payload, &mut frame);
                    self.send_raw(index, &[], &frame);
                }
                Framing::None => {}
            }
        }
        self.next_sweep = self.sweep_period().map(|period| Instant::now() + period);
        self.settle();
    }

    fn on_signal(&mut self) {
        if let Some(signals) = &mut self.signals {
            let mut drain = [0u8; 64];
            while matches!(signals.read(&mut drain), Ok(n) if n > 0) {}
        }
        if self.shutdown_deadline.is_some() {
            info!("second signal: exiting now");
            self.shutdown_deadline = Some(Instant::now());
            return;
        }
        self.begin_shutdown();
    }

    /// Stops accepting, says GOODBYE (`wamp.close.system_shutdown`) to every session and gives them
    /// `limits.shutdown_grace_ms` to answer and drain.
    pub fn begin_shutdown(&mut self) {
        info!(connections = self.conns.len(), "shutting down");
        for listener in &mut self.listeners {
            if let Some(mut socket) = listener.socket.take() {
                let _ = match &mut socket {
                    ListenerSocket::Tcp(s) => self.poll.registry().deregister(s),
                    ListenerSocket::Unix(s, _) => self.poll.registry().deregister(s),
                };
                if let ListenerSocket::Unix(_, path) = &socket {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        self.with_sink(|router, sink| router.handle_shutdown(sink));
        self.shutdown_deadline =
            Some(Instant::now() + Duration::from_millis(self.config.limits.shutdown_grace_ms));
        self.settle();
    }

    fn finish_shutdown(&mut self) {
        let left: Vec<usize> = self.conns.iter().map(|(index, _)| index).collect();
        for index in left {
            self.remove(index, Some(CloseCause::Shutdown));
        }
        info!("shutdown complete");
    }
}

/// Whether connection `index` (of `generation`) is open, not closing, and has no session joined to a realm.
fn unjoined(conns: &Slab<Conn>, router: &Router, index: usize, generation: u32) -> bool {
    conns.get(index).is_some_and(|conn| {
        conn.generation == generation
            && conn.closing.is_none()
            && conn
                .session
                .is_none_or(|h| router.session_info(h).is_none())
    })
}

/// Marks `conn` as closing once its outbox is flushed; a WebSocket connection gets its Close frame (with the
/// code in `conn.ws_close`) queued last. Returns whether the connection was not closing before.
fn begin_close(conn: &mut Conn, frames: &mut FrameStore, cause: CloseCause) -> bool {
    if conn.closing.is_some() {
        return false;
    }
    conn.closing = Some(cause);
    if matches!(conn.framing, Framing::WebSocket { .. }) {
        let frame = frames.alloc();
        let (code, reason) = conn.ws_close;
        websocket::close_frame(code, reason, frames.bytes_mut(frame));
        conn.outbox.push(frames, &[], frame);
    }
    true
}

/// A Unix socket path left behind by an earlier run is removed; any other file there is an error.
fn remove_stale_socket(path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path)?;
            Ok(())
        }
        Ok(_) => anyhow::bail!("{} exists and is not a socket", path.display()),
        Err(_) => Ok(()),
    }
}
