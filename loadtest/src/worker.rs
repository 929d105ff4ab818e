//! A worker thread: one mio `Poll` driving its share of the sessions through the phases the coordinator
//! announces in [`Shared`]. Hot-path counters stay thread-local and are published once per loop turn.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};

use crate::plan::{Mode, Plan};
use crate::roles::{Role, Tally};
use crate::session::{Env, Session, State};
use crate::stats::{Clock, Integrity};
use crate::sys::{self, TimerFd};

/// Token of the coordinator's waker.
pub const WAKER: Token = Token(usize::MAX);
const TIMER: Token = Token(usize::MAX - 1);
/// Bytes one connection may read per loop turn before others get their turn.
const READ_BUDGET: usize = 1 << 20;
/// Longest the loop sleeps without checking the shared phase (the waker normally cuts it short).
const IDLE_MAX: Duration = Duration::from_millis(100);

/// Phases the coordinator sets in [`Shared::phase`].
pub mod phase {
    /// Connect, join, subscribe/register.
    pub const SETUP: u8 = 0;
    /// Senders send from `Shared::start_ns`.
    pub const RUN: u8 = 1;
    /// Everyone says GOODBYE and closes.
    pub const STOP: u8 = 2;
    /// Drop everything now.
    pub const ABORT: u8 = 3;
}

/// State shared between the coordinator and the workers.
#[derive(Debug, Default)]
pub struct Shared {
    pub phase: AtomicU8,
    /// Run start on the process clock (valid once the phase is RUN).
    pub start_ns: AtomicU64,
    /// Sessions whose transport opened / that joined / that finished setup / that closed.
    pub connected: AtomicU64,
    pub joined: AtomicU64,
    pub ready: AtomicU64,
    pub closed: AtomicU64,
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub received: AtomicU64,
    pub invocations: AtomicU64,
    pub cycles: AtomicU64,
    pub failed: AtomicBool,
    pub errors: Mutex<Vec<String>>,
}

impl Shared {
    pub fn fail(&self, message: String) {
        if let Ok(mut errors) = self.errors.lock() {
            if errors.len() < 100 {
                errors.push(message);
            }
        }
        self.failed.store(true, Ordering::Release);
    }
}

/// What a worker hands back when it ends.
#[derive(Debug, Default)]
pub struct WorkerReport {
    pub tally: Tally,
    pub integrity: Integrity,
    /// Earliest connect start and latest WELCOME (ns), for joins per second.
    pub first_connect_ns: Option<u64>,
    pub last_join_ns: Option<u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Sessions still open when the worker gave up waiting for their GOODBYE.
    pub unclosed: usize,
}

struct Worker {
    poll: Poll,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    clock: Clock,
    timer: TimerFd,
    timer_deadline: Option<u64>,
    sessions: Vec<Session>,
    tally: Tally,
    /// Sessions with output queued this turn (flushed once at the end of the turn).
    dirty: Vec<usize>,
    is_dirty: Vec<bool>,
    /// Sessions that stopped reading because of the budget.
    again: Vec<usize>,
    connect_queue: VecDeque<usize>,
    /// Sessions connecting or joining, bounded by `handshake_max`.
    handshaking: usize,
    handshake_max: usize,
    /// Open-loop senders.
    drivers: Vec<usize>,
    phase: u8,
    stop_deadline: u64,
    open: usize,
    published: Tally,
    report: WorkerReport,
}

/// Runs worker `id` until the coordinator stops or aborts the run.
pub fn run(
    id: usize,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    poll: Poll,
    clock: Clock,
) -> WorkerReport {
    if matches!(plan.mode, Mode::Open { .. }) {
        sys::set_timer_slack(Duration::from_micros(1));
    }
    let mut sessions = Vec::new();
    for (index, spec) in plan.sessions_of(id) {
        sessions.push(Session::new(index, Role::new(spec, &plan)));
    }
    let timer = match TimerFd::new().and_then(|t| t.register(poll.registry(), TIMER).map(|()| t)) {
        Ok(timer) => timer,
        Err(e) => {
            shared.fail(format!("worker {id}: cannot create its timer: {e}"));
            return WorkerReport::default();
        }
    };
    let n = sessions.len();
    let handshake_max = (plan.connect_concurrency / plan.threads).max(1);
    let mut worker = Worker {
        poll,
        plan,
        shared,
        clock,
        timer,
        timer_deadline: None,
        sessions,
        tally: Tally::default(),
        dirty: Vec::new(),
        is_dirty: vec![false; n],
        again: Vec::new(),
        connect_queue: VecDeque::new(),
        handshaking: 0,
        handshake_max,
        drivers: Vec::new(),
        phase: phase::SETUP,
        stop_deadline: u64::MAX,
        open: 0,
        published: Tally::default(),
        report: WorkerReport::default(),
    };
    worker.run();
    worker.finish()
}

impl Worker {
    fn run(&mut self) {
        // Churners connect only once the run starts; everyone else sets up now.
        for (i, s) in self.sessions.iter().enumerate() {
            if !matches!(s.wamp.role, Role::Churner(_)) {
                self.connect_queue.push_back(i);
            }
        }
        let mut events = Events::with_capacity(1024);
        loop {
            let now = self.clock.now_ns();
            if !self.sync_phase(now) {
                return;
            }
            self.start_connects(now);
            self.drive(now);
            self.flush_dirty();
            self.publish_counters();
            if self.phase == phase::STOP && (self.open == 0 || now > self.stop_deadline) {
                return;
            }
            let timeout = self.poll_timeout(now);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.shared.fail(format!("poll failed: {e}"));
                    return;
                }
            }
            let now = self.clock.now_ns();
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    TIMER => {
                        self.timer.drain();
                        self.timer_deadline = None;
                    }
                    Token(i) => self.handle_session(i, now),
                }
            }
            for i in std::mem::take(&mut self.again) {
                self.handle_session(i, now);
            }
        }
    }

    /// Follows the coordinator's phase. Returns `false` when the run is aborted.
    fn sync_phase(&mut self, now: u64) -> bool {
        let p = self.shared.phase.load(Ordering::Acquire);
        if p == self.phase {
            return true;
        }
        if p == phase::ABORT {
            return false;
        }
        if p >= phase::RUN && self.phase < phase::RUN {
            self.begin_run(now);
        }
        if p >= phase::STOP && self.phase < phase::STOP {
            self.begin_stop(now);
        }
        self.phase = p;
        true
    }

    fn begin_run(&mut self, now: u64) {
        let start_ns = self.shared.start_ns.load(Ordering::Acquire);
        let open_loop = matches!(self.plan.mode, Mode::Open { .. });
        for i in 0..self.sessions.len() {
            if matches!(self.sessions[i].wamp.role, Role::Churner(_)) {
                self.connect_queue.push_back(i);
                continue;
            }
            if self.sessions[i].state() != State::Ready {
                continue;
            }
            if open_loop && self.sessions[i].wamp.role.is_sender() {
                self.drivers.push(i);
            }
            let mut env = Env {
                tally: &mut self.tally,
                plan: &self.plan,
                now_ns: now,
                clock: self.clock,
            };
            let result = self.sessions[i].handle_start(&mut env, start_ns);
            self.after(i, State::Ready, result, now);
        }
    }

    fn begin_stop(&mut self, now: u64) {
        self.stop_deadline = now + self.plan.timeout.as_nanos() as u64;
        self.connect_queue.clear();
        self.drivers.clear();
        for i in 0..self.sessions.len() {
            let before = self.sessions[i].state();
            let mut env = Env {
                tally: &mut self.tally,
                plan: &self.plan,
                now_ns: now,
                clock: self.clock,
            };
            let result = self.sessions[i].handle_stop(&mut env);
            self.after(i, before, result, now);
        }
    }

    fn start_connects(&mut self, now: u64) {
        while self.handshaking < self.handshake_max {
            let Some(i) = self.connect_queue.pop_front() else {
                return;
            };
            let session = &mut self.sessions[i];
            let result = session.connect(&self.plan, now).and_then(|()| {
                let conn = session
                    .conn
                    .as_mut()
                    .ok_or_else(|| io::Error::other("no connection"))?;
                self.poll.registry().register(
                    &mut conn.stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )
            });
            match result {
                Ok(()) => {
                    self.handshaking += 1;
                    self.open += 1;
                    self.report.first_connect_ns.get_or_insert(now);
                }
                Err(e) => {
                    self.fail(i, format!("cannot connect to {}: {e}", self.plan.endpoint));
                    return;
                }
            }
        }
    }

    /// A readiness event (or a budget retry) for session `i`.
    fn handle_session(&mut self, i: usize, now: u64) {
        let Some(session) = self.sessions.get_mut(i) else {
            return;
        };
        let before = session.state();
        let mut env = Env {
            tally: &mut self.tally,
            plan: &self.plan,
            now_ns: now,
            clock: self.clock,
        };
        let result = session.handle_ready(&mut env, READ_BUDGET);
        match result {
            Ok(true) => {
                self.again.push(i);
                self.after(i, before, Ok(()), now);
            }
            Ok(false) => self.after(i, before, Ok(()), now),
            Err(e) => self.after(i, before, Err(e), now),
        }
    }

    /// Bookkeeping after any call into session `i`: errors, state transitions, output to flush.
    fn after(&mut self, i: usize, before: State, result: Result<(), String>, now: u64) {
        if let Err(e) = result {
            self.fail(i, e);
            return;
        }
        let after = self.sessions[i].state();
        if before == State::Connecting && after > State::Connecting {
            self.shared.connected.fetch_add(1, Ordering::Relaxed);
        }
        if before <= State::Joining && before >= State::Connecting && after > State::Joining {
            self.handshaking -= 1;
            self.shared.joined.fetch_add(1, Ordering::Relaxed);
            self.report.last_join_ns = Some(now);
            if matches!(self.sessions[i].wamp.role, Role::Joiner) {
                self.tally
                    .latency
                    .record(self.sessions[i].wamp.connect_started_ns, now);
            }
        }
        if before != State::Ready && after == State::Ready {
            self.shared.ready.fetch_add(1, Ordering::Relaxed);
        }
        if after == State::Closed {
            self.close(i);
            return;
        }
        if self.sessions[i].pending() > 0 && !self.is_dirty[i] {
            self.is_dirty[i] = true;
            self.dirty.push(i);
        }
    }

    /// Closes session `i`'s connection; a churner starts its next cycle while the run lasts.
    fn close(&mut self, i: usize) {
        let session = &mut self.sessions[i];
        if let Some(mut conn) = session.conn.take() {
            // Best effort: a WebSocket close frame and whatever was queued.
            conn.writer.close();
            let _ = conn.writer.flush_to(&mut conn.stream);
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.report.bytes_in += conn.reader.bytes_in;
            self.report.bytes_out += conn.writer.bytes_out;
            self.open -= 1;
            self.shared.closed.fetch_add(1, Ordering::Relaxed);
        }
        if matches!(session.wamp.role, Role::Churner(_)) && self.phase == phase::RUN {
            session.wamp.state = State::Idle;
            self.connect_queue.push_back(i);
        }
    }

    fn fail(&mut self, i: usize, message: String) {
        let session = &self.sessions[i];
        self.shared.fail(format!(
            "session {} ({}, {}): {message}",
            session.index,
            session.wamp.role.name(),
            session.state().name()
        ));
        if let Some(mut conn) = self.sessions[i].conn.take() {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.open -= 1;
        }
        self.sessions[i].wamp.state = State::Closed;
    }

    /// Open loop: lets every sender send what is due and flushes it at once.
    fn drive(&mut self, now: u64) {
        for k in 0..self.drivers.len() {
            let i = self.drivers[k];
            let now = if k == 0 { now } else { self.clock.now_ns() };
            let mut env = Env {
                tally: &mut self.tally,
                plan: &self.plan,
                now_ns: now,
                clock: self.clock,
            };
            let result = self.sessions[i]
                .poll_send(&mut env)
                .and_then(|()| self.sessions[i].flush());
            self.after(i, State::Ready, result, now);
        }
    }

    fn flush_dirty(&mut self) {
        for i in std::mem::take(&mut self.dirty) {
            self.is_dirty[i] = false;
            let before = self.sessions[i].state();
            let result = self.sessions[i].flush();
            if let Err(e) = result {
                if before == State::Leaving {
                    // The router may already have closed a leaving session's connection.
                    self.sessions[i].wamp.state = State::Closed;
                    self.close(i);
                } else {
                    self.fail(i, e);
                }
            }
        }
    }

    /// Until the earliest open-loop deadline (armed on the timerfd for sub-millisecond precision), zero when
    /// work is waiting, at most [`IDLE_MAX`].
    fn poll_timeout(&mut self, now: u64) -> Option<Duration> {
        if !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        let deadline = self
            .drivers
            .iter()
            .filter_map(|&i| {
                let s = &self.sessions[i];
                s.wamp.role.deadline(&self.plan, s.pending())
            })
            .min();
        let Some(deadline) = deadline else {
            return Some(IDLE_MAX);
        };
        if deadline <= now {
            return Some(Duration::ZERO);
        }
        if self.timer_deadline != Some(deadline) {
            match self.timer.arm(Duration::from_nanos(deadline - now)) {
                Ok(()) => self.timer_deadline = Some(deadline),
                // Without the timer, fall back to poll's millisecond timeout.
                Err(_) => return Some(Duration::from_nanos(deadline - now)),
            }
        }
        Some(IDLE_MAX)
    }

    /// Adds this turn's counter increments to the shared totals.
    fn publish_counters(&mut self) {
        let (t, p) = (&self.tally, &mut self.published);
        let pairs = [
            (t.sent, &mut p.sent, &self.shared.sent),
            (t.acked, &mut p.acked, &self.shared.acked),
            (t.received, &mut p.received, &self.shared.received),
            (t.invocations, &mut p.invocations, &self.shared.invocations),
            (t.cycles, &mut p.cycles, &self.shared.cycles),
        ];
        for (now, published, total) in pairs {
            if now != *published {
                total.fetch_add(now - *published, Ordering::Relaxed);
                *published = now;
            }
        }
    }

    fn finish(mut self) -> WorkerReport {
        for s in &self.sessions {
            self.report.integrity.add(s.wamp.role.integrity(&self.plan));
        }
        for s in &mut self.sessions {
            if let Some(conn) = s.conn.take() {
                self.report.bytes_in += conn.reader.bytes_in;
                self.report.bytes_out += conn.writer.bytes_out;
                self.report.unclosed += 1;
            }
        }
        self.report.tally = std::mem::take(&mut self.tally);
        self.report
    }
}
