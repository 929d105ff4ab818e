//! Operations: the heartbeat every shard publishes, the lame-duck drain (SIGUSR2), and systemd's notifications
//! (shard 0).
//!
//! The drain: shard 0 closes the listeners that serve no metrics or health probes (those stay, answering them and
//! refusing new sessions, so `/readyz` answers 503 rather than nothing); every shard then sends its joined sessions
//! GOODBYE `wamp.close.system_shutdown` one at a time, evenly over `limits.lame_duck_ms` from the drain's start
//! (shard k's i-th of n sessions at `(i + (k + 1/2) / N) / n` of the period: with the sessions spread evenly over the
//! N shards, the shards take turns at equal intervals), and closes a session that has not answered within
//! `limits.shutdown_grace_ms`. At the end of the period, or once no connection is left, shard 0 starts the shutdown,
//! which says GOODBYE to whoever joined meanwhile and exits.

use std::cmp::Reverse;
use std::collections::VecDeque;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::shard::Shard;
use super::timers::TimerKind;
use super::{ListenerSocket, ENDED};
use crate::notify::Notifier;

/// One shard's drain.
pub(in crate::server) struct Drain {
    /// Joined sessions when the drain started, in the order they are sent away.
    queue: VecDeque<(usize, u32)>,
    start: Instant,
    period: Duration,
    total: usize,
    sent: usize,
    /// This shard's offset within each step, a fraction (see the module's documentation).
    phase: f64,
}

impl Drain {
    /// When the next session is due.
    fn next_at(&self) -> Option<Instant> {
        if self.queue.is_empty() {
            return None;
        }
        let fraction = (self.sent as f64 + self.phase) / self.total as f64;
        Some(self.start + self.period.mul_f64(fraction.min(1.0)))
    }

    fn end(&self) -> Instant {
        self.start + self.period
    }
}

/// systemd's notification socket and watchdog (shard 0).
pub(in crate::server) struct Systemd {
    notifier: Notifier,
    /// How often to send `WATCHDOG=1` (half of `$WATCHDOG_USEC`).
    watchdog: Option<Duration>,
    next_ping: Instant,
    ready: bool,
    stopping: bool,
    /// A notification failed (logged once).
    failed: bool,
    /// Pings are held back for a stalled shard (logged once per stall).
    holding: bool,
}

impl Systemd {
    fn send(&mut self, state: &str) {
        if let Err(e) = self.notifier.notify(state) {
            if !self.failed {
                self.failed = true;
                warn!(socket = self.notifier.name(), error = %e, "systemd notification failed");
            }
        }
    }
}

impl Shard {
    /// Publishes when this shard's loop last turned (at most once per millisecond).
    pub(super) fn beat(&mut self) {
        let now = self.now_ms();
        if now != self.last_beat {
            self.last_beat = now;
            self.shared.heartbeats[usize::from(self.id)]
                .0
                .store(now, Ordering::Relaxed);
        }
    }

    /// This shard's loop has ended: not stuck, just gone.
    pub(super) fn beat_ended(&mut self) {
        self.shared.heartbeats[usize::from(self.id)]
            .0
            .store(ENDED, Ordering::Relaxed);
    }

    pub(super) fn notify_systemd(&mut self, notifier: Notifier, watchdog: Option<Duration>) {
        self.systemd = Some(Systemd {
            notifier,
            watchdog,
            next_ping: Instant::now(),
            ready: false,
            stopping: false,
            failed: false,
            holding: false,
        });
    }

    /// The next moment the drain or systemd needs this loop.
    pub(super) fn ops_deadline(&self) -> Option<Instant> {
        let mut deadline: Option<Instant> = None;
        let mut sooner = |at: Instant| deadline = Some(deadline.map_or(at, |d: Instant| d.min(at)));
        if let Some(drain) = self
            .drain
            .as_ref()
            .filter(|_| self.shutdown_deadline.is_none())
        {
            if let Some(at) = drain.next_at() {
                sooner(at);
            }
            if self.id == 0 {
                sooner(drain.end());
            }
        }
        if let Some(systemd) = &self.systemd {
            if systemd.ready && systemd.watchdog.is_some() {
                sooner(systemd.next_ping);
            }
        }
        deadline
    }

    /// SIGUSR2: start a lame-duck drain.
    pub(super) fn on_drain_signal(&mut self) {
        if let Some(pipe) = &mut self.drain_signal {
            let mut drain = [0u8; 64];
            while matches!(pipe.read(&mut drain), Ok(n) if n > 0) {}
        }
        if self.shared.start_drain() {
            info!(
                period_ms = self.config.limits.lame_duck_ms,
                "SIGUSR2: lame-duck drain"
            );
        } else {
            info!("SIGUSR2: draining or shutting down already");
        }
        self.check_flags();
    }

    /// This shard's part of a drain that has started: shard 0 stops accepting; every shard schedules its sessions.
    pub(super) fn begin_drain(&mut self) {
        let started_ms = self.shared.drain_start_ms.load(Ordering::SeqCst);
        let start = self.shared.start + Duration::from_millis(started_ms);
        let period = Duration::from_millis(self.config.limits.lame_duck_ms);
        let indices: Vec<usize> = self.conns.iter().map(|(index, _)| index).collect();
        let queue: VecDeque<(usize, u32)> = (indices.into_iter())
            .filter(|&index| self.joined(index))
            .map(|index| (index, self.conns[index].generation))
            .collect();
        let shards = self.shards();
        let phase = (f64::from(self.id) + 0.5) / shards as f64;
        info!(
            shard = self.id,
            sessions = queue.len(),
            period_ms = period.as_millis() as u64,
            "lame duck: sending the sessions away over the period"
        );
        if self.id == 0 {
            let kept = self.close_listeners(true);
            info!(
                kept_for_probes = kept,
                "lame duck: listeners closed; /readyz answers 503"
            );
            let extend = period + Duration::from_millis(self.config.limits.shutdown_grace_ms);
            let state = format!(
                "STOPPING=1\nSTATUS=draining (lame duck) over {} ms\nEXTEND_TIMEOUT_USEC={}",
                period.as_millis(),
                (extend + Duration::from_secs(5)).as_micros()
            );
            self.systemd_stopping(&state);
        }
        self.drain = Some(Drain {
            total: queue.len(),
            queue,
            start,
            period,
            sent: 0,
            phase,
        });
    }

    /// Sends the sessions that are due away; on shard 0, ends the drain with a shutdown when its period is over or
    /// nobody is connected any more.
    pub(super) fn drain_due(&mut self) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        let Some(drain) = &mut self.drain else {
            return;
        };
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(at) = drain.next_at() {
            if at > now {
                break;
            }
            due.extend(drain.queue.pop_front());
            drain.sent += 1;
        }
        let end = drain.end();
        let grace = Duration::from_millis(self.config.limits.shutdown_grace_ms);
        for &(index, generation) in &due {
            let Some(conn) = self.conns.get(index).filter(|c| c.generation == generation) else {
                continue;
            };
            let Some(handle) = conn.session.filter(|_| conn.closing.is_none()) else {
                continue;
            };
            self.with_sink(|router, sink| router.handle_shutdown_session(handle, sink));
            self.timers.push(Reverse((
                now + grace,
                index,
                generation,
                TimerKind::Goodbye,
            )));
        }
        if !due.is_empty() {
            self.settle();
        }
        if self.id == 0 && (now >= end || self.shared.connections.load(Ordering::SeqCst) == 0) {
            info!("lame duck: drain complete; shutting down");
            self.shared.stop.store(true, Ordering::SeqCst);
            self.shared.ring_all();
            self.check_flags();
        }
    }

    /// Closes the listening sockets (shard 0); with `keep_http`, those serving metrics or health probes stay.
    /// Returns how many stay open.
    pub(super) fn close_listeners(&mut self, keep_http: bool) -> usize {
        let mut kept = 0;
        for (index, listener) in self.listeners.iter_mut().enumerate() {
            if listener.socket.is_none() {
                continue;
            }
            if keep_http && self.shared.listeners[index].serves_http() {
                kept += 1;
                continue;
            }
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
        kept
    }

    /// Tells systemd the router is stopping (once).
    pub(super) fn systemd_stopping(&mut self, state: &str) {
        if let Some(systemd) = &mut self.systemd {
            if !systemd.stopping {
                systemd.stopping = true;
                systemd.send(state);
            }
        }
    }

    /// Shard 0, every turn: `READY=1` once every shard runs; `WATCHDOG=1` when due and every shard's loop has
    /// turned within the watchdog interval (a stuck shard stops the pings, and systemd restarts the router).
    pub(super) fn systemd_turn(&mut self) {
        let Some(systemd) = &mut self.systemd else {
            return;
        };
        let shards = self.shared.shards;
        if !systemd.ready && self.shared.started.load(Ordering::SeqCst) >= shards {
            systemd.ready = true;
            systemd.send(&format!(
                "READY=1\nSTATUS=serving ({shards} shards, {} listeners)",
                self.listeners.len()
            ));
            systemd.next_ping = Instant::now();
        }
        let Some(interval) = systemd.watchdog.filter(|_| systemd.ready) else {
            return;
        };
        let now = Instant::now();
        if now < systemd.next_ping {
            return;
        }
        match self.shared.stalled(interval.as_millis() as u64) {
            None => {
                systemd.send("WATCHDOG=1");
                systemd.holding = false;
                systemd.next_ping = now + interval;
            }
            Some((shard, age_ms)) => {
                if !systemd.holding {
                    systemd.holding = true;
                    warn!(
                        shard,
                        age_ms, "event loop stalled: holding back systemd's watchdog ping"
                    );
                }
                systemd.next_ping = now + interval / 4;
            }
        }
    }
}
