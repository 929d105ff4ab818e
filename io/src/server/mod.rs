//! The event loops: one shard per thread, each with its own mio `Poll`, connections, frames and engine.
//!
//! A [`Server`] binds the listeners and builds `[router] shards` shards (`shard.rs`). Shard 0 owns the listening
//! sockets: it accepts and hands each connection to the next shard in turn (`accept.rs`); from then on the
//! connection lives on that shard alone. The shards' engines are one router to every client: they talk through
//! bounded mailboxes (`link.rs`) carrying the engine's [`kreisel_engine::link::PeerMessage`]s, and nothing on the
//! message path is shared behind a lock.
//!
//! One loop turn of a shard: wait for readiness (or the next deadline); accept (shard 0); take what other shards
//! sent (connections, peer messages); read each readable connection until `WouldBlock` or its per-turn budget,
//! deframe in place and hand every message to the engine (`input.rs`, `handshake.rs`), whose output the
//! `Outbound` sink encodes (once per serializer for a multicast) and queues (`output.rs`); then flush every
//! connection that got output, once, with `writev`, and ring the other shards that got mail; then fire due timers
//! (`timers.rs`).
//!
//! Operations: every shard notes when its loop last turned (a heartbeat, at most once per millisecond, and a loop
//! turns at least once a second), which the health probes and the systemd watchdog read; SIGUSR2 starts a
//! lame-duck drain (`ops.rs`: listeners closed, sessions sent away evenly over `limits.lame_duck_ms` by every
//! shard, then shutdown).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kreisel_codec::Serializer;
use kreisel_engine::link::{ShardId, SHARDS_MAX};
use kreisel_engine::{ConnId, Router};
use mio::net::{TcpListener, UnixListener, UnixStream};
use mio::{Interest, Poll, Token};
use tracing::{error, info};

use crate::config::{Address, Config, Transport as TransportName};
use crate::websocket;

mod accept;
mod backplane;
mod handshake;
mod http;
mod input;
mod link;
mod mqtt;
mod ops;
mod output;
mod scrape;
mod shard;
mod timers;

use link::{Doorbell, Link};
use shard::Shard;

const LISTENER_BASE: usize = 1 << 40;
const SIGNAL: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
const RELOAD: Token = Token(usize::MAX - 3);
const DRAIN: Token = Token(usize::MAX - 4);
/// The longest a shard's loop sleeps: it turns at least this often, so its heartbeat shows it is alive.
const HEARTBEAT_PERIOD: Duration = Duration::from_secs(1);
/// Connections accepted beyond `connections_max` just to be refused politely; past this, they are dropped.
const OVER_LIMIT_SLACK: usize = 64;

enum ListenerSocket {
    Tcp(TcpListener),
    Unix(UnixListener, std::path::PathBuf),
}

/// A bound listener (shard 0 owns them).
struct ListenerState {
    socket: Option<ListenerSocket>,
}

/// What every shard needs to know about a listener for the connections it accepted.
struct ListenerInfo {
    tls: Option<Arc<rustls::ServerConfig>>,
    serializers: Vec<Serializer>,
    websocket: Option<websocket::UpgradeConfig>,
    rawsocket: bool,
    /// The listener's HTTP services (the HTTP bridge).
    http: Option<Arc<crate::http::Services>>,
    /// `allowed_origins`, parsed (`None`: any origin).
    origins: Option<Vec<websocket::OriginPattern>>,
    /// The realm and payload mapping of an MQTT listener.
    mqtt: Option<std::sync::Arc<crate::mqtt::session::ListenerConfig>>,
}

impl ListenerInfo {
    /// Whether it serves metrics or health probes: such a listener stays open during a lame-duck drain (answering
    /// those, refusing new sessions), so that `/readyz` says 503 rather than nothing.
    fn serves_http(&self) -> bool {
        (self.websocket.as_ref()).is_some_and(|ws| ws.health || ws.metrics_path.is_some())
    }
}

/// Counters of the I/O layer (per shard; the metrics endpoint sums them).
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
    /// Messages to another shard that found its mailbox full and waited in this shard's backlog.
    pub mailbox_full: u64,
    /// Times a producer's input was paused because messages to other shards were waiting in the backlog.
    pub link_stalls: u64,
    /// HTTP requests on a WebSocket listener that were neither a WebSocket upgrade of its path nor metrics or
    /// health (wrong path or method, no `Upgrade` header), answered 404, 405 or 426.
    pub http_stray: u64,
    /// WebSocket connections that negotiated permessage-deflate.
    pub deflate_negotiated: u64,
}

impl std::ops::AddAssign for IoStats {
    fn add_assign(&mut self, other: IoStats) {
        let IoStats {
            accepted,
            refused_over_limit,
            slow_consumers,
            handshake_timeouts,
            producer_stalls,
            events_dropped,
            idle_timeouts,
            transport_errors,
            origins_refused,
            evicted_unjoined,
            refused_per_ip,
            frame_timeouts,
            partial_frames_refused,
            memory_cuts,
            mailbox_full,
            link_stalls,
            http_stray,
            deflate_negotiated,
        } = other;
        self.accepted += accepted;
        self.refused_over_limit += refused_over_limit;
        self.slow_consumers += slow_consumers;
        self.handshake_timeouts += handshake_timeouts;
        self.producer_stalls += producer_stalls;
        self.events_dropped += events_dropped;
        self.idle_timeouts += idle_timeouts;
        self.transport_errors += transport_errors;
        self.origins_refused += origins_refused;
        self.evicted_unjoined += evicted_unjoined;
        self.refused_per_ip += refused_per_ip;
        self.frame_timeouts += frame_timeouts;
        self.partial_frames_refused += partial_frames_refused;
        self.memory_cuts += memory_cuts;
        self.mailbox_full += mailbox_full;
        self.link_stalls += link_stalls;
        self.http_stray += http_stray;
        self.deflate_negotiated += deflate_negotiated;
    }
}

/// What the shards of one server share: read-mostly facts, the doorbells, and the few counters that must be
/// router-wide (touched when a connection opens or closes, never per message).
struct Shared {
    listeners: Vec<ListenerInfo>,
    doorbells: Vec<Doorbell>,
    /// Open connections, all shards together (`limits.connections_max`).
    connections: AtomicUsize,
    /// Per shard: what its outboxes held at its last look (`limits.memory_max` is for all of them together).
    outbox_bytes: Vec<AtomicUsize>,
    /// Open connections per peer IP address (only with `limits.connections_per_ip_max`).
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    /// Graceful shutdown requested (SIGTERM, [`StopHandle::stop`]); every shard says GOODBYE.
    stop: AtomicBool,
    /// A second signal: every shard closes what it has at once.
    exit_now: AtomicBool,
    /// A shard ended with an error or a panic.
    failed: AtomicBool,
    /// Engine time 0 of every shard (so times carried between shards mean the same everywhere).
    start: Instant,
    /// The shards (`doorbells` has one more, the backplane's, in a cluster), and those still running.
    shards: usize,
    running: AtomicUsize,
    /// The backplane's figures, in a cluster.
    cluster: Option<Arc<crate::cluster::metrics::ClusterMetrics>>,
    /// Per shard: when its loop last turned (ms since `start`; [`ENDED`] once it has ended).
    heartbeats: Vec<Heartbeat>,
    /// Shards whose loop has started.
    started: AtomicUsize,
    /// Lame-duck drain in progress (SIGUSR2, [`StopHandle::drain`]).
    draining: AtomicBool,
    /// When the drain started (ms since `start`): every shard spreads its sessions over the same period.
    drain_start_ms: AtomicU64,
    /// How long a shard's loop may sleep (ms): [`HEARTBEAT_PERIOD`], shorter with a short systemd watchdog.
    heartbeat_period_ms: AtomicU64,
}

/// A heartbeat of its own cache line, so that shards noting theirs do not slow each other down.
#[repr(align(128))]
struct Heartbeat(AtomicU64);

/// The heartbeat of a shard whose loop has ended (shutdown): not stuck.
const ENDED: u64 = u64::MAX;

impl Shared {
    /// Rings every shard (to see a changed flag).
    fn ring_all(&self) {
        for doorbell in &self.doorbells {
            doorbell.ring();
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// The first shard whose loop has not turned for `limit_ms`, and since how long (ms).
    fn stalled(&self, limit_ms: u64) -> Option<(usize, u64)> {
        let now = self.now_ms();
        self.heartbeats
            .iter()
            .enumerate()
            .find_map(|(shard, beat)| {
                let at = beat.0.load(Ordering::Relaxed);
                let age = now.saturating_sub(at);
                (at != ENDED && age > limit_ms).then_some((shard, age))
            })
    }

    /// Starts a lame-duck drain: returns false if one is on already or the router is shutting down.
    fn start_drain(&self) -> bool {
        if self.stop.load(Ordering::SeqCst) || self.draining.load(Ordering::SeqCst) {
            return false;
        }
        self.drain_start_ms.store(self.now_ms(), Ordering::SeqCst);
        self.draining.store(true, Ordering::SeqCst);
        self.ring_all();
        true
    }

    /// What the health probes look at.
    fn health(&self) -> crate::health::State {
        crate::health::State {
            shards: self.shards,
            started: self.started.load(Ordering::SeqCst),
            stalled: self.stalled(crate::health::STALL_LIMIT_MS),
            draining: self.draining.load(Ordering::SeqCst),
            stopping: self.stop.load(Ordering::SeqCst),
            backplane: self.cluster.as_ref().map(|m| crate::health::Backplane {
                connected: m.connected.load(Ordering::Relaxed) == 1,
                fenced: m.fenced.load(Ordering::Relaxed) == 1,
            }),
        }
    }

    /// One connection from `ip` fewer.
    fn release_ip(&self, ip: IpAddr) {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&ip);
            }
        }
    }
}

/// A running router: its shards, before [`Server::run`] starts them.
pub struct Server {
    shards: Vec<Shard>,
    shared: Arc<Shared>,
    addresses: Vec<Address>,
    /// In a cluster: the backplane, and its word that it has the other nodes' state.
    backplane: Option<(backplane::Backplane, std::sync::mpsc::Receiver<()>)>,
    /// What the startup log says of each listener and realm.
    summary: Summary,
}

/// The startup log's description of the listeners and realms.
#[derive(Default)]
struct Summary {
    /// Per listener: transports, serializers, WebSocket path, TLS, HTTP services.
    listeners: Vec<[String; 5]>,
    /// Per realm: name, principals, roles, anonymous access.
    realms: Vec<(String, usize, String, String)>,
}

/// Stops a [`Server`] running on other threads (graceful shutdown, as on SIGTERM).
#[derive(Clone)]
pub struct StopHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopHandle").finish_non_exhaustive()
    }
}

impl StopHandle {
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.ring_all();
    }

    /// Starts a lame-duck drain, as SIGUSR2 does: returns false if one is on already or the router is stopping.
    pub fn drain(&self) -> bool {
        self.shared.start_drain()
    }
}

pub fn conn_id(index: usize, generation: u32) -> ConnId {
    ConnId((index as u64) | (u64::from(generation) << 32))
}

/// The connection of a `ConnId` (slab index, generation); bit 31 marks MQTT connections (see `mqtt.rs`).
fn conn_index(id: ConnId) -> (usize, u32) {
    ((id.0 & 0x7FFF_FFFF) as usize, (id.0 >> 32) as u32)
}

impl Server {
    /// Binds every listener and builds the shards. Errors name the listener that failed.
    pub fn bind(config: Config, seed: u64) -> anyhow::Result<Server> {
        let shard_count = config.shards().clamp(1, SHARDS_MAX);
        // In a cluster, the node joins before anything listens (a failure is an error at startup).
        let joined = match &config.cluster {
            Some(_) => Some(crate::cluster::join::join(&config)?),
            None => None,
        };
        let polls = (0..shard_count)
            .map(|_| Poll::new())
            .collect::<io::Result<Vec<Poll>>>()?;
        let mut sockets = Vec::new();
        let mut infos = Vec::new();
        // Services are numbered router-wide: each has a session of its own on every shard.
        let mut services = 0;
        let mut addresses = Vec::new();
        let mut summary = Summary::default();
        for realm in &config.realms {
            let roles = match &realm.roles {
                Some(roles) => roles.len().to_string(),
                None => "none (everything allowed)".to_string(),
            };
            let anonymous = match realm.anonymous_role() {
                Some(role) => format!("role '{role}'"),
                None => "off".to_string(),
            };
            summary
                .realms
                .push((realm.name.clone(), realm.principals.len(), roles, anonymous));
        }
        for (index, listener) in config.listeners.iter().enumerate() {
            let address = listener.address().map_err(anyhow::Error::msg)?;
            let token = Token(LISTENER_BASE + index);
            let registry = polls[0].registry();
            let socket = match &address {
                Address::Tcp(addr) => {
                    let mut socket = TcpListener::bind(*addr)
                        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
                    deepen_backlog(&socket);
                    registry.register(&mut socket, token, Interest::READABLE)?;
                    addresses.push(socket.local_addr().map_or(address.clone(), Address::Tcp));
                    ListenerSocket::Tcp(socket)
                }
                Address::Unix(path) => {
                    remove_stale_socket(path)?;
                    let mut socket = UnixListener::bind(path).map_err(|e| {
                        anyhow::anyhow!("cannot listen on unix:{}: {e}", path.display())
                    })?;
                    deepen_backlog(&socket);
                    registry.register(&mut socket, token, Interest::READABLE)?;
                    addresses.push(address.clone());
                    ListenerSocket::Unix(socket, path.clone())
                }
            };
            let serializers = listener.serializers();
            // Validated with the configuration: a pattern that does not parse was refused there.
            let origins: Option<Vec<websocket::OriginPattern>> =
                listener.allowed_origins.as_ref().map(|origins| {
                    (origins.iter())
                        .filter_map(|origin| websocket::OriginPattern::parse(origin).ok())
                        .collect()
                });
            let http = (!listener.services.is_empty()).then(|| {
                let compiled = crate::http::Services::new(&listener.services, services);
                services += listener.services.len();
                Arc::new(compiled)
            });
            let websocket = listener.speaks(TransportName::Websocket).then(|| {
                let mut upgrade =
                    websocket::UpgradeConfig::new(listener.path.clone(), serializers.clone());
                upgrade.head_max = websocket::HEAD_MAX_DEFAULT;
                upgrade.metrics_path = listener.metrics.clone();
                upgrade.health = listener.serves_health();
                upgrade.allowed_origins = origins.clone();
                upgrade.deflate = (listener.compression == crate::config::Compression::Deflate)
                    .then(|| listener.deflate.clone().unwrap_or_default());
                upgrade.batched = listener.batched;
                upgrade.mqtt = listener.speaks(TransportName::Mqtt);
                upgrade
            });
            let tls = match &listener.tls {
                Some(tls) => Some(
                    crate::tls::server_config(&tls.certificate, &tls.key, tls.client_ca.as_deref())
                        .map_err(|e| anyhow::anyhow!("listener {}: {e}", listener.listen))?,
                ),
                None => None,
            };
            summary.listeners.push(describe_listener(listener));
            sockets.push(ListenerState {
                socket: Some(socket),
            });
            infos.push(ListenerInfo {
                tls,
                serializers,
                websocket,
                rawsocket: listener.speaks(TransportName::Rawsocket),
                http,
                origins,
                mqtt: crate::mqtt::session::ListenerConfig::of(listener)
                    .filter(|_| listener.speaks(TransportName::Mqtt))
                    .map(std::sync::Arc::new),
            });
        }
        let mut router_config = config.router_config(seed);
        // Challenges and ticket comparison need secret randomness; the ID seed is not secret enough. Every shard
        // has the same secrets (a ticket or a decoy salt must not depend on the shard a client lands on); each
        // derives its own challenge nonces from them.
        ring::rand::SecureRandom::fill(
            &ring::rand::SystemRandom::new(),
            &mut router_config.secret_seed,
        )
        .map_err(|_| anyhow::anyhow!("the operating system's random number generator failed"))?;
        let start = Instant::now();
        // Engine time 0 is `start` (the same instant, give or take this call).
        router_config.epoch_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        router_config.shards = shard_count;
        if let Some(joined) = &joined {
            // Every node has the cluster's secret: IDs and authentication decoys are the same wherever a client
            // lands; each (node, shard) draws its own stream of them.
            let derive = |label: &[u8]| {
                let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
                digest.update(&joined.secret);
                digest.update(label);
                digest.finish()
            };
            let ids = derive(b"ids");
            router_config.seed =
                u64::from_le_bytes(ids.as_ref()[..8].try_into().unwrap_or_default());
            router_config
                .secret_seed
                .copy_from_slice(derive(b"authentication").as_ref());
            router_config.cluster_slot = Some(joined.slot);
        }
        // Connections (and so sessions) are spread evenly; a shard reserves room for its share of the limit.
        let per_shard = config.limits.connections_max.div_ceil(shard_count) + OVER_LIMIT_SLACK;
        router_config.sessions_expected = per_shard;
        let mut doorbells = polls
            .iter()
            .map(|poll| Doorbell::new(poll.registry(), WAKER))
            .collect::<io::Result<Vec<Doorbell>>>()?;
        if let Some(joined) = &joined {
            doorbells.push(Doorbell::new(joined.poll.registry(), WAKER)?);
        }
        let cluster_metrics = joined
            .as_ref()
            .map(|_| Arc::new(crate::cluster::metrics::ClusterMetrics::default()));
        let shared = Arc::new(Shared {
            listeners: infos,
            doorbells,
            connections: AtomicUsize::new(0),
            outbox_bytes: (0..shard_count).map(|_| AtomicUsize::new(0)).collect(),
            per_ip: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
            exit_now: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            start,
            shards: shard_count,
            running: AtomicUsize::new(0),
            cluster: cluster_metrics.clone(),
            heartbeats: (0..shard_count)
                .map(|_| Heartbeat(AtomicU64::new(0)))
                .collect(),
            started: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            drain_start_ms: AtomicU64::new(0),
            heartbeat_period_ms: AtomicU64::new(HEARTBEAT_PERIOD.as_millis() as u64),
        });
        let mut links = Link::mesh(shard_count + usize::from(joined.is_some()));
        let mut shards = Vec::with_capacity(shard_count);
        let mut sockets = Some(sockets);
        for (index, poll) in polls.into_iter().enumerate() {
            let id = index as ShardId;
            let router = Router::new(kreisel_engine::RouterConfig {
                shard: id,
                ..router_config.clone()
            });
            let listeners = if index == 0 {
                sockets.take().unwrap_or_default()
            } else {
                Vec::new()
            };
            shards.push(Shard::new(
                id,
                poll,
                listeners,
                router,
                config.clone(),
                links.remove(0),
                shared.clone(),
            ));
        }
        let backplane = match (joined, &config.cluster, cluster_metrics) {
            (Some(joined), Some(cluster), Some(metrics)) => {
                let node =
                    kreisel_engine::cluster::Node::new(kreisel_engine::cluster::NodeConfig {
                        slot: joined.slot,
                        epoch: joined.epoch,
                        members: joined.others.clone(),
                        shards: shard_count,
                        realms: router_config.realms.clone(),
                        heartbeat_ms: cluster.heartbeat_ms,
                        dead_after_ms: cluster.dead_after_ms,
                        gather_timeout_ms: 1_500,
                        seed: router_config.seed,
                        epoch_unix_ms: router_config.epoch_unix_ms,
                    });
                let (ready, ready_rx) = std::sync::mpsc::channel();
                let link = links.remove(0);
                let backplane = backplane::Backplane::new(
                    joined,
                    node,
                    link,
                    shared.clone(),
                    cluster,
                    metrics,
                    ready,
                );
                Some((backplane, ready_rx))
            }
            _ => None,
        };
        Ok(Server {
            shards,
            shared,
            addresses,
            backplane,
            summary,
        })
    }

    /// The bound addresses (with the actual port for listeners configured with port 0).
    pub fn local_addresses(&self) -> Vec<Address> {
        self.addresses.clone()
    }

    /// How many shards (threads) this server runs.
    pub fn shards(&self) -> usize {
        self.shared.shards
    }

    /// Shuts down gracefully when SIGINT or SIGTERM arrives (a second one: at once); drains as a lame duck on
    /// SIGUSR2 (see [`StopHandle::drain`]).
    pub fn handle_signals(&mut self) -> io::Result<()> {
        let (reader, writer) = StdUnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::low_level::pipe::register(signal, writer.try_clone()?)?;
        }
        let (drain_reader, drain_writer) = StdUnixStream::pair()?;
        drain_reader.set_nonblocking(true)?;
        drain_writer.set_nonblocking(true)?;
        signal_hook::low_level::pipe::register(signal_hook::consts::SIGUSR2, drain_writer)?;
        if let Some(first) = self.shards.first_mut() {
            first.watch_signals(
                UnixStream::from_std(reader),
                UnixStream::from_std(drain_reader),
            )?;
        }
        Ok(())
    }

    /// Speaks systemd's notification protocol when `$NOTIFY_SOCKET` is set (`Type=notify`): `READY=1` once every
    /// shard runs, `STOPPING=1` on shutdown or drain, and `WATCHDOG=1` every half `$WATCHDOG_USEC` while every
    /// shard's loop turns (each then turns at least every quarter of `$WATCHDOG_USEC`). Returns whether it does.
    pub fn notify_systemd(&mut self) -> io::Result<bool> {
        let Some(notifier) = crate::notify::Notifier::from_env()? else {
            return Ok(false);
        };
        let watchdog = crate::notify::watchdog_interval();
        if let Some(interval) = watchdog {
            let period = (interval / 2).clamp(Duration::from_millis(1), HEARTBEAT_PERIOD);
            self.shared
                .heartbeat_period_ms
                .store(period.as_millis() as u64, Ordering::SeqCst);
        }
        info!(
            socket = notifier.name(),
            watchdog_ms = watchdog.map(|w| w.as_millis() as u64),
            "systemd notification"
        );
        if let Some(first) = self.shards.first_mut() {
            first.notify_systemd(notifier, watchdog);
        }
        Ok(true)
    }

    /// Reloads `path` on SIGHUP (see `Shard::reload` in `shard.rs`). Without a file (embedded defaults), SIGHUP is logged and
    /// ignored rather than ending the process as it would by default.
    pub fn reload_on_sighup(&mut self, path: Option<std::path::PathBuf>) -> io::Result<()> {
        let (reader, writer) = StdUnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        signal_hook::low_level::pipe::register(signal_hook::consts::SIGHUP, writer)?;
        if let Some(first) = self.shards.first_mut() {
            first.watch_reload(UnixStream::from_std(reader), path)?;
        }
        Ok(())
    }

    /// A handle to stop this server from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            shared: self.shared.clone(),
        }
    }

    /// Runs every shard (shard 0 on this thread, the others on threads of their own) until shutdown completes.
    /// A shard that fails or panics stops the others at once.
    pub fn run(&mut self) -> io::Result<()> {
        let mut shards = std::mem::take(&mut self.shards).into_iter();
        let Some(first) = shards.next() else {
            return Ok(());
        };
        for (name, principals, roles, anonymous) in &self.summary.realms {
            info!(realm = %name, principals, roles = %roles, anonymous = %anonymous, "realm");
        }
        for (address, [transports, serializers, path, tls, http]) in
            self.addresses.iter().zip(&self.summary.listeners)
        {
            // The address last: tests and scripts read it from the end of the line.
            info!(
                transports = %transports,
                serializers = %serializers,
                path = %path,
                tls = %tls,
                http = %http,
                %address,
                "listening"
            );
        }
        info!(shards = self.shared.shards, "starting");
        self.shared
            .running
            .store(self.shared.shards, Ordering::SeqCst);
        let mut backplane = None;
        if let Some((node, ready)) = self.backplane.take() {
            let thread = std::thread::Builder::new()
                .name("kreisel-backplane".into())
                .spawn(move || node.run())?;
            // The shards start once the node has the other nodes' state (or gave up waiting for it).
            let _ = ready.recv();
            backplane = Some(thread);
        }
        // Freed heap back to the operating system, off the shards (see `crate::heap`); the thread ends when
        // `_heap_stop` is dropped, as this function returns.
        let (_heap_stop, heap_stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("kreisel-heap".into())
            .spawn(move || crate::heap::run(&heap_stopped))?;
        let mut threads = Vec::new();
        for shard in shards {
            let name = format!("kreisel-shard-{}", shard.id());
            let shared = self.shared.clone();
            let thread = std::thread::Builder::new()
                .name(name)
                .spawn(move || run_guarded(shard, &shared))?;
            threads.push(thread);
        }
        let mut result = run_guarded(first, &self.shared);
        for thread in threads {
            let ended = thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a shard thread panicked")));
            if result.is_ok() {
                result = ended;
            }
        }
        if let Some(thread) = backplane {
            match thread.join() {
                Ok(Some(reason)) if result.is_ok() => {
                    result = Err(io::Error::other(format!("cluster: fenced: {reason}")));
                }
                Err(_) if result.is_ok() => {
                    result = Err(io::Error::other("the backplane thread panicked"));
                }
                _ => {}
            }
        }
        result
    }
}

/// Runs one shard; when it fails or panics, every other shard is told to close at once and the error is
/// returned (a panic as an error, so the process exits with a message rather than hanging on the others).
fn run_guarded(shard: Shard, shared: &Shared) -> io::Result<()> {
    let id = shard.id();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let mut shard = shard;
        shard.run()
    }));
    let result = match outcome {
        Ok(result) => result,
        Err(_) => Err(io::Error::other(format!("shard {id} panicked"))),
    };
    shared.running.fetch_sub(1, Ordering::SeqCst);
    if let Err(e) = &result {
        error!(shard = id, error = %e, "shard failed; stopping the router");
        shared.failed.store(true, Ordering::SeqCst);
        shared.stop.store(true, Ordering::SeqCst);
        shared.exit_now.store(true, Ordering::SeqCst);
        shared.ring_all();
    }
    result
}

/// Connections the kernel queues for a listener before they are accepted. mio (like std) listens with 128: a
/// reconnect storm of thousands of clients then overflows the queue and the rest retry their SYN after a second.
/// The kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 4096;

/// Raises a bound listener's backlog to [`LISTEN_BACKLOG`] (`listen` again on a listening socket changes only the
/// backlog). A failure leaves the socket listening with its first backlog.
fn deepen_backlog(socket: &impl std::os::fd::AsRawFd) {
    // SAFETY: `listen` takes a file descriptor and an integer and touches no memory of ours; the descriptor belongs
    // to `socket`, which is borrowed for the duration of the call.
    let result = unsafe { libc::listen(socket.as_raw_fd(), LISTEN_BACKLOG) };
    if result != 0 {
        tracing::warn!(error = %io::Error::last_os_error(), "cannot raise the listen backlog");
    }
}

/// What the startup log says of a listener: transports, serializers, WebSocket path, TLS, HTTP services.
fn describe_listener(listener: &crate::config::Listener) -> [String; 5] {
    let transports: Vec<&str> = (listener.transports.iter())
        .map(|t| match t {
            TransportName::Websocket => "websocket",
            TransportName::Rawsocket => "rawsocket",
            TransportName::Http => "http",
            TransportName::Mqtt => "mqtt",
        })
        .collect();
    let serializers: Vec<&str> = (listener.serializers())
        .into_iter()
        .map(|s| s.name())
        .collect();
    let websocket = listener.speaks(TransportName::Websocket);
    let path = if websocket {
        listener.path.clone()
    } else {
        "-".into()
    };
    let tls = match &listener.tls {
        None => "off".to_string(),
        Some(tls) if tls.client_ca.is_some() => "on, client certificates required".to_string(),
        Some(_) => "on".to_string(),
    };
    let mut http = Vec::new();
    if let Some(metrics) = &listener.metrics {
        http.push(format!("metrics {metrics}"));
    }
    if listener.serves_health() {
        http.push(format!("health {}", websocket::HEALTH_PATHS.join(" ")));
    }
    let http = if http.is_empty() {
        "-".to_string()
    } else {
        http.join(", ")
    };
    [transports.join(","), serializers.join(","), path, tls, http]
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

/// How long a closing connection gets to flush its outbox.
const LINGER: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    /// A shard whose heartbeat is older than the limit is stalled (the probes say 503, systemd's watchdog pings
    /// stop); a shard that has ended is not.
    #[test]
    fn a_stale_heartbeat_is_a_stalled_shard() {
        let config = Config::from_toml(
            "[router]\nshards = 3\n[[listeners]]\nlisten = \"127.0.0.1:0\"\ntransports = [\"rawsocket\"]\n",
        )
        .unwrap();
        let server = Server::bind(config, 1).unwrap();
        let shared = &server.shared;
        std::thread::sleep(Duration::from_millis(30));
        let now = shared.now_ms();
        for beat in &shared.heartbeats {
            beat.0.store(now, Ordering::Relaxed);
        }
        shared.started.store(3, Ordering::SeqCst);
        assert_eq!(shared.stalled(10), None);
        assert_eq!(
            crate::health::answer(websocket::Probe::Ready, &shared.health()).0,
            200
        );
        shared.heartbeats[1].0.store(now - 25, Ordering::Relaxed);
        let (shard, age) = shared.stalled(10).expect("shard 1 is stalled");
        assert_eq!(shard, 1);
        assert!(age >= 25, "{age}");
        assert_eq!(shared.stalled(10_000), None, "within a longer limit");
        shared.heartbeats[1].0.store(ENDED, Ordering::Relaxed);
        assert_eq!(shared.stalled(10), None, "an ended shard is not stuck");
        // A drain starts once, and not while stopping.
        assert!(shared.start_drain());
        assert!(!shared.start_drain());
        let state = shared.health();
        assert!(state.draining && !state.stopping);
    }
}
