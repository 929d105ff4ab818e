//! One shard: a thread's event loop, its connections, frames and engine.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kreisel_engine::link::ShardId;
use kreisel_engine::Router;
use mio::net::UnixStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tracing::{debug, info, warn};

use super::link::{Envelope, Link, INBOX_BATCH};
use super::ops::{Drain, Systemd};
use super::scrape::{PendingScrape, Snapshot};
use super::timers::TimerKind;
use super::{IoStats, ListenerState, Shared, DRAIN, LISTENER_BASE, RELOAD, SIGNAL, WAKER};
use crate::config::Config;
use crate::conn::Conn;
use crate::outbox::{BufferPool, FrameStore};

/// The shard's shared read buffer: every read lands here first.
pub(super) const SCRATCH_LEN: usize = 64 * 1024;
/// The pool of connections' own read buffers: buffers up to 64 KiB go back to it when emptied (larger ones are
/// freed), 1024 of them, 8 MiB in all (per shard).
const RBUF_POOL: BufferPool = BufferPool::new(1024, 64 << 10, 8 << 20);
/// How often a shard whose messages to other shards wait in its backlog retries (it is not woken when room
/// frees up).
const BACKLOG_RETRY: Duration = Duration::from_millis(1);

/// A connection in [`Shard::unjoined`]: its slot, generation and when it was accepted (loop milliseconds,
/// wrapping).
#[derive(Clone, Copy, Debug)]
pub(super) struct Unjoined {
    pub index: u32,
    pub generation: u32,
    pub accepted_ms: u32,
}

/// How often the buffer pools give back what nobody took ([`crate::outbox::BufferPool::decay`]).
const DECAY_PERIOD: Duration = Duration::from_secs(1);

pub(super) struct Shard {
    pub(super) id: ShardId,
    pub(super) poll: Poll,
    /// Listening sockets (shard 0 only).
    pub(super) listeners: Vec<ListenerState>,
    pub(super) conns: Slab<Conn>,
    pub(super) frames: FrameStore,
    pub(super) router: Router,
    pub(super) config: Config,
    pub(super) rawsocket_exponent: u8,
    /// This shard's fair share of `limits.memory_max` (the limit over the shards): when all outboxes together
    /// pass the limit, the shards holding more than their share cut their largest.
    pub(super) memory_share: usize,
    /// This shard's share of `limits.partial_frames_max` (the limit over the shards).
    pub(super) partial_frames_max: usize,
    pub(super) dirty: Vec<usize>,
    pub(super) doomed: Vec<(usize, u32, crate::conn::CloseCause)>,
    /// Shared read buffer (see [`Shard::read`]).
    pub(super) scratch: Vec<u8>,
    /// A recipient's outbox passed 3/4 of its limit while the current input was handled (see
    /// [`super::input::STALL`]).
    pub(super) pressure: bool,
    /// Next sweep for silent connections (auto-ping, idle timeout), if either is configured.
    pub(super) next_sweep: Option<Instant>,
    /// Connection read buffers not in use.
    pub(super) rbuf_pool: BufferPool,
    /// Connections whose input was not drained this turn (budget or paused and resumed).
    pub(super) pending_read: Vec<usize>,
    /// Connections not read because messages to other shards wait in the backlog; read once it drained.
    pub(super) link_paused: Vec<usize>,
    pub(super) timers: BinaryHeap<Reverse<(Instant, usize, u32, TimerKind)>>,
    pub(super) next_generation: u32,
    pub(super) signals: Option<UnixStream>,
    /// SIGUSR2's pipe: lame-duck drain (shard 0).
    pub(super) drain_signal: Option<UnixStream>,
    /// The lame-duck drain of this shard's sessions, once it started.
    pub(super) drain: Option<Drain>,
    /// systemd's notification socket and watchdog (shard 0, when started by systemd as `Type=notify`).
    pub(super) systemd: Option<Systemd>,
    /// The heartbeat last published (ms since the router's start).
    pub(super) last_beat: u64,
    /// SIGHUP's pipe and the configuration file it reloads (see [`Shard::reload`]).
    pub(super) reload: Option<(UnixStream, Option<std::path::PathBuf>)>,
    pub(super) shutdown_deadline: Option<Instant>,
    pub(super) stats: IoStats,
    /// Connections in the order they were accepted, while they may not have joined a realm (entries of
    /// connections that joined or closed are skipped when met): the eviction order at `connections_max`, and the
    /// handshake deadlines (all `handshake_timeout_ms` after acceptance, so in this order too).
    pub(super) unjoined: VecDeque<Unjoined>,
    /// Bytes this shard's connections hold in incomplete frames and fragmented messages.
    pub(super) partial_bytes: usize,
    pub(super) link: Link,
    pub(super) shared: Arc<Shared>,
    /// The shard the next accepted connection goes to (shard 0).
    pub(super) next_target: usize,
    /// The inbox was not emptied last turn, or is not read until then because a message from it filled a
    /// recipient's outbox (the senders then back up and stall their producers).
    pub(super) inbox_more: bool,
    pub(super) inbox_stalled_until: Option<Instant>,
    pub(super) scrapes: Vec<PendingScrape>,
    pub(super) next_scrape: u64,
    /// When the buffer pools last decayed.
    pub(super) last_decay: Instant,
    /// Whether the frame store or the read buffers' pool has more to release or free (`FrameStore::reap`): the
    /// loop then turns without waiting.
    pub(super) reaping: bool,
    /// The HTTP services' sessions on this shard.
    pub(super) bridges: super::http::Bridges,
    /// permessage-deflate: the compressors and inflater shared by this shard's connections.
    pub(super) deflate: crate::deflate::ShardDeflate,
    /// See [`super::output::Derived`].
    pub(super) derived: Vec<super::output::Derived>,
    /// The last message inflated (permessage-deflate).
    pub(super) inflated: Vec<u8>,
    /// Reused buffers of the MQTT sessions.
    pub(super) mqtt: super::mqtt::Scratch,
}

impl Shard {
    pub(super) fn new(
        id: ShardId,
        poll: Poll,
        listeners: Vec<ListenerState>,
        router: Router,
        config: Config,
        link: Link,
        shared: Arc<Shared>,
    ) -> Shard {
        let shards = shared.shards.max(1);
        let services = (shared.listeners.iter())
            .filter_map(|l| l.http.as_ref())
            .map(|s| s.services.len())
            .sum();
        Shard {
            id,
            poll,
            listeners,
            // Reserved for this shard's share of the connections: pages are used only as connections come, and
            // the slab never moves (a copy of megabytes) while it stays within.
            conns: Slab::with_capacity(
                config.limits.connections_max.div_ceil(shards) + super::OVER_LIMIT_SLACK,
            ),
            frames: FrameStore::default(),
            router,
            rawsocket_exponent: config.rawsocket_exponent(),
            memory_share: config.limits.memory_max / shards,
            partial_frames_max: config.limits.partial_frames_max / shards,
            config,
            dirty: Vec::new(),
            doomed: Vec::new(),
            scratch: vec![0; SCRATCH_LEN],
            pressure: false,
            next_sweep: None,
            rbuf_pool: RBUF_POOL,
            pending_read: Vec::new(),
            link_paused: Vec::new(),
            timers: BinaryHeap::new(),
            next_generation: 0,
            signals: None,
            drain_signal: None,
            drain: None,
            systemd: None,
            last_beat: 0,
            reload: None,
            shutdown_deadline: None,
            stats: IoStats::default(),
            unjoined: VecDeque::new(),
            partial_bytes: 0,
            link,
            shared,
            next_target: 0,
            inbox_more: false,
            inbox_stalled_until: None,
            scrapes: Vec::new(),
            next_scrape: 0,
            last_decay: Instant::now(),
            reaping: false,
            bridges: super::http::Bridges::new(services),
            deflate: crate::deflate::ShardDeflate::default(),
            derived: Vec::new(),
            inflated: Vec::new(),
            mqtt: Default::default(),
        }
    }

    pub(super) fn id(&self) -> ShardId {
        self.id
    }

    pub(super) fn shards(&self) -> usize {
        self.shared.shards
    }

    pub(super) fn watch_signals(
        &mut self,
        mut pipe: UnixStream,
        mut drain: UnixStream,
    ) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut pipe, SIGNAL, Interest::READABLE)?;
        self.poll
            .registry()
            .register(&mut drain, DRAIN, Interest::READABLE)?;
        self.signals = Some(pipe);
        self.drain_signal = Some(drain);
        Ok(())
    }

    pub(super) fn watch_reload(
        &mut self,
        mut pipe: UnixStream,
        path: Option<std::path::PathBuf>,
    ) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut pipe, RELOAD, Interest::READABLE)?;
        self.reload = Some((pipe, path));
        Ok(())
    }

    /// Runs until shutdown completes.
    pub(super) fn run(&mut self) -> io::Result<()> {
        self.next_sweep = self.sweep_period().map(|period| Instant::now() + period);
        let mut events = Events::with_capacity(1024);
        self.beat();
        self.shared.started.fetch_add(1, Ordering::SeqCst);
        // Shard 0 tells systemd once every shard runs.
        self.shared.doorbells[0].ring();
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.beat();
            // News from other shards: the doorbell is answered before the inbox and the flags are read, so
            // anything sent after this rings again.
            self.shared.doorbells[usize::from(self.id)].answer();
            self.check_flags();
            for event in events.iter() {
                match event.token() {
                    SIGNAL => self.on_signal(),
                    RELOAD => self.on_reload_signal(),
                    DRAIN => self.on_drain_signal(),
                    WAKER => {}
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
            self.drain_inbox();
            for index in std::mem::take(&mut self.pending_read) {
                self.read(index);
            }
            self.settle();
            self.fire_timers();
            if !self.mqtt.parked.is_empty() {
                self.mqtt_resume_parked();
            }
            self.return_memory();
            // What closed connections held, and the buffers the pools chose to give back, a little each turn.
            self.rbuf_pool.reap(crate::outbox::REAP_FREES_MAX);
            self.reaping = self.frames.reap() | self.rbuf_pool.reaping();
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
            self.drain_due();
            self.systemd_turn();
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() || Instant::now() >= deadline {
                    self.finish_shutdown();
                    return Ok(());
                }
            }
        }
    }

    /// Acts on the router-wide flags: stop (say GOODBYE to every session), exit now, drain.
    pub(super) fn check_flags(&mut self) {
        if self.shared.exit_now.load(Ordering::SeqCst) {
            if self.shutdown_deadline.is_none() {
                self.begin_shutdown();
            }
            self.shutdown_deadline = Some(Instant::now());
        } else if self.shared.stop.load(Ordering::SeqCst) && self.shutdown_deadline.is_none() {
            self.begin_shutdown();
        } else if self.shared.draining.load(Ordering::SeqCst)
            && self.drain.is_none()
            && self.shutdown_deadline.is_none()
        {
            self.begin_drain();
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.shared.start.elapsed().as_millis() as u64
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.pending_read.is_empty() || !self.dirty.is_empty() || self.reaping {
            return Some(Duration::ZERO);
        }
        if self.inbox_more && self.inbox_stalled_until.is_none() {
            return Some(Duration::ZERO);
        }
        // The loop turns at least once per heartbeat period, so that its heartbeat shows it is alive.
        let heartbeat = self.shared.heartbeat_period_ms.load(Ordering::Relaxed);
        let mut deadline = Some(Instant::now() + Duration::from_millis(heartbeat));
        if let Some(Reverse((at, ..))) = self.timers.peek() {
            deadline = deadline.map(|d| d.min(*at));
        }
        let mut sooner = |at: Instant| deadline = Some(deadline.map_or(at, |d: Instant| d.min(at)));
        if let Some(at) = self.ops_deadline() {
            sooner(at);
        }
        if let Some(sweep) = self.next_sweep {
            sooner(sweep);
        }
        if let Some(call) = self.router.poll_timeout() {
            sooner(self.shared.start + Duration::from_millis(call));
        }
        if let Some(shutdown) = self.shutdown_deadline {
            sooner(shutdown);
        }
        if let Some(stall) = self.inbox_stalled_until {
            sooner(stall);
        }
        if let Some(first) = self.unjoined.front() {
            let now_ms = self.now_ms();
            let age = u64::from((now_ms as u32).wrapping_sub(first.accepted_ms));
            let left = self.config.limits.handshake_timeout_ms.saturating_sub(age);
            sooner(self.shared.start + Duration::from_millis(now_ms + left));
        }
        if self.link.congested() {
            sooner(Instant::now() + BACKLOG_RETRY);
        }
        deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Handles what other shards sent, up to [`INBOX_BATCH`] envelopes.
    fn drain_inbox(&mut self) {
        if let Some(until) = self.inbox_stalled_until {
            if Instant::now() < until {
                return;
            }
            self.inbox_stalled_until = None;
        }
        self.inbox_more = false;
        for _ in 0..INBOX_BATCH {
            let Some(envelope) = self.link.receive() else {
                return;
            };
            self.pressure = false;
            match envelope {
                Envelope::Peer { from, frame } => {
                    let now_ms = self.now_ms();
                    match kreisel_engine::link::decode(&frame, true) {
                        Ok(msg) => self
                            .with_sink(|router, sink| router.handle_peer(from, &msg, now_ms, sink)),
                        // Only this process encodes peer messages: this is a bug, not an attack.
                        Err(e) => {
                            warn!(from, error = %e.0, "undecodable message from another shard")
                        }
                    }
                    self.link.handled(from, frame.len());
                }
                Envelope::Conn(handoff) => self.adopt(*handoff),
                Envelope::Reload(config) => {
                    self.reload(&config);
                }
                Envelope::Scrape { from, token } => {
                    let snapshot = Box::new(self.snapshot());
                    let _ = self.link.post(from, Envelope::Scraped { token, snapshot });
                }
                Envelope::Scraped { token, snapshot } => self.on_scraped(token, *snapshot),
            }
            if self.pressure {
                // A message from another shard filled a recipient's outbox here: stop taking more for a moment,
                // so the senders' backlogs fill and their producers pause.
                self.stats.producer_stalls += 1;
                self.inbox_stalled_until = Some(Instant::now() + super::input::STALL);
                self.inbox_more = true;
                return;
            }
        }
        self.inbox_more = true;
    }

    // ---------------------------------------------------------------------------------------------------------
    // Signals, reload, metrics

    fn on_signal(&mut self) {
        if let Some(signals) = &mut self.signals {
            let mut drain = [0u8; 64];
            while matches!(signals.read(&mut drain), Ok(n) if n > 0) {}
        }
        if self.shared.stop.swap(true, Ordering::SeqCst) {
            info!("second signal: exiting now");
            self.shared.exit_now.store(true, Ordering::SeqCst);
        }
        self.shared.ring_all();
        self.check_flags();
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
                let config = Arc::new(config);
                for shard in 0..self.shards() {
                    if shard != usize::from(self.id) {
                        let _ = self
                            .link
                            .post(shard as ShardId, Envelope::Reload(config.clone()));
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, "SIGHUP: configuration not reloaded; the running one stays")
            }
        }
    }

    /// Applies what a new configuration changes in the principals, roles, authenticators and anonymous access of
    /// realms this router has (see [`Router::handle_auth_reload`]: joined sessions get the new role's permissions,
    /// attempts in progress are aborted). Everything else needs a restart and the running value stays. Shard 0 logs the new
    /// configuration's warnings and each changed setting (see [`Config::changes`]; never a secret).
    pub(super) fn reload(&mut self, new: &Config) {
        if self.id == 0 {
            for warning in new.warnings() {
                warn!("configuration: {warning}");
            }
            let changes = self.config.changes(new);
            for change in &changes {
                if change.applied {
                    info!(setting = %change.setting, change = %change.change, "reloaded");
                } else {
                    warn!(
                        setting = %change.setting,
                        change = %change.change,
                        "not reloaded: takes effect after a restart"
                    );
                }
            }
            let restart = changes.iter().filter(|c| !c.applied).count();
            info!(
                changes = changes.len(),
                need_restart = restart,
                "configuration reloaded"
            );
        }
        let engine_new = new.router_config(0);
        let engine_old = self.config.router_config(0);
        for (fresh, realm_new) in new.realms.iter().zip(&engine_new.realms) {
            let Some(index) = self.config.realms.iter().position(|r| r.name == fresh.name) else {
                continue;
            };
            let realm_old = &engine_old.realms[index];
            if realm_new.auth == realm_old.auth {
                continue;
            }
            let report = self.with_sink(|router, sink| {
                router.handle_auth_reload(&fresh.name, &realm_new.auth, sink)
            });
            if let Some(report) = report {
                info!(
                    realm = %fresh.name,
                    shard = self.id,
                    sessions = report.sessions,
                    sessions_without_role = report.sessions_without_role,
                    attempts_aborted = report.attempts_aborted,
                    "reloaded principals, roles and authenticators"
                );
            }
            let current = &mut self.config.realms[index];
            current.anonymous = fresh.anonymous;
            current.anonymous_role = fresh.anonymous_role.clone();
            current.principals = fresh.principals.clone();
            current.roles = fresh.roles.clone();
            current.authenticators = fresh.authenticators.clone();
        }
        self.settle();
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        let mut io = self.stats;
        io.mailbox_full = self.link.mailbox_full;
        Snapshot {
            shard: self.id,
            engine: self.router.stats(),
            io,
            connections: self.conns.len(),
            outbox_bytes: self.frames.memory(),
            partial_frame_bytes: self.partial_bytes,
            calls_pending: self.router.calls_pending(),
            link_backlog: self.link.backlog(),
            realms: self
                .router
                .realm_gauges()
                .map(|r| [r.sessions, r.subscriptions, r.registrations, r.retained])
                .collect(),
        }
    }

    /// A metrics request on connection `index`: answered at once on a router of one shard, else once every
    /// other shard sent its figures.
    pub(super) fn scrape(&mut self, index: usize) {
        let generation = self.conns[index].generation;
        let token = self.next_scrape;
        self.next_scrape += 1;
        self.scrapes.push(PendingScrape {
            token,
            index,
            generation,
            snapshots: vec![self.snapshot()],
        });
        for shard in 0..self.shards() {
            if shard != usize::from(self.id) {
                let envelope = Envelope::Scrape {
                    from: self.id,
                    token,
                };
                if self.link.post(shard as ShardId, envelope).is_err() {
                    // A shard that has ended (shutdown) contributes nothing.
                    if let Some(pending) = self.scrapes.last_mut() {
                        pending.snapshots.push(Snapshot {
                            shard: shard as ShardId,
                            ..Snapshot::default()
                        });
                    }
                }
            }
        }
        self.on_scraped_complete(token);
    }

    fn on_scraped(&mut self, token: u64, snapshot: Snapshot) {
        if let Some(pending) = self.scrapes.iter_mut().find(|p| p.token == token) {
            pending.snapshots.push(snapshot);
        }
        self.on_scraped_complete(token);
    }

    /// Answers scrape `token` if every shard has sent its figures.
    fn on_scraped_complete(&mut self, token: u64) {
        let shards = self.shards();
        let Some(position) = self
            .scrapes
            .iter()
            .position(|p| p.token == token && p.snapshots.len() >= shards)
        else {
            return;
        };
        let pending = self.scrapes.swap_remove(position);
        let open = self
            .conns
            .get(pending.index)
            .is_some_and(|c| c.generation == pending.generation);
        if !open {
            return;
        }
        let names: Vec<&str> = self.config.realms.iter().map(|r| r.name.as_str()).collect();
        let uptime = self.shared.start.elapsed().as_secs_f64();
        let draining = self.shared.draining.load(Ordering::Relaxed);
        let mut page = super::scrape::render(&pending.snapshots, &names, uptime, draining);
        if let Some(cluster) = &self.shared.cluster {
            cluster.render(&mut page);
        }
        debug!(peer = %self.conns[pending.index].peer, "metrics scraped");
        self.send_raw(pending.index, &[], &crate::metrics::response(&page));
        self.conns[pending.index].closing = Some(crate::conn::CloseCause::Served);
    }

    /// Once a second, the buffer pools give back what nobody took ([`DECAY_PERIOD`]) to the allocator; the
    /// router's heap thread ([`crate::heap`]) returns what was freed to the operating system.
    fn return_memory(&mut self) {
        let now = Instant::now();
        if now < self.last_decay + DECAY_PERIOD {
            return;
        }
        self.last_decay = now;
        self.frames.decay();
        self.rbuf_pool.decay();
    }
}
