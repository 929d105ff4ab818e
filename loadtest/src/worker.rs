//! A worker thread: one mio `Poll` driving its share of the sessions through the phases the coordinator
//! announces in [`Shared`]. Hot-path counters stay thread-local and are published once per loop turn.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};

use crate::plan::{Mode, Plan, RoleSpec, ScenarioKind, SlowRead};
use crate::roles::{DropKind, Role, Tally, Window};
use crate::session::{Env, Session, State};
use crate::stats::{Clock, Integrity, WindowLatency};
use crate::summary::{ErrorCount, SlowFate};
use crate::sys::{self, TimerFd};

/// Token of the coordinator's waker.
pub const WAKER: Token = Token(usize::MAX);
const TIMER: Token = Token(usize::MAX - 1);
/// Bytes one connection may read per loop turn before others get their turn.
const READ_BUDGET: usize = 1 << 20;
/// Longest the loop sleeps without checking the shared phase (the waker normally cuts it short).
const IDLE_MAX: Duration = Duration::from_millis(100);
/// How late a deadline may be, with the worker busy, before the audit counts an unscheduled one as missed.
const AUDIT_SLACK_NS: u64 = 1_000_000;
/// A session of the soak that failed (or could not connect) tries again after this long.
const RETRY_NS: u64 = 1_000_000_000;

/// Phases the coordinator sets in [`Shared::phase`].
pub mod phase {
    /// Connect, join, subscribe/register.
    pub const SETUP: u8 = 0;
    /// Senders send from `Shared::start_ns`.
    pub const RUN: u8 = 1;
    /// Sending is over: senders stop (soak), slow subscribers read what is queued for them; deliveries still
    /// arrive, sessions no longer come and go.
    pub const QUIESCE: u8 = 2;
    /// Everyone says GOODBYE and closes.
    pub const STOP: u8 = 3;
    /// Drop everything now.
    pub const ABORT: u8 = 4;
}

/// State shared between the coordinator and the workers.
#[derive(Debug, Default)]
pub struct Shared {
    pub phase: AtomicU8,
    /// Run start on the process clock (valid once the phase is RUN).
    pub start_ns: AtomicU64,
    /// Sessions whose transport opened / that joined / that finished setup / that closed (connections, so
    /// sessions that join again count again).
    pub connected: AtomicU64,
    pub joined: AtomicU64,
    pub ready: AtomicU64,
    pub closed: AtomicU64,
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub received: AtomicU64,
    pub invocations: AtomicU64,
    pub cycles: AtomicU64,
    /// Soak: CALLs and their final answers.
    pub calls: AtomicU64,
    pub answers: AtomicU64,
    /// Slow subscribers that settled after the run (read what was queued, or found their connection closed).
    pub settled: AtomicU64,
    /// Soak: reconnect storms the coordinator asked for, and storm sessions that joined again since the start.
    pub storm: AtomicU64,
    pub storm_rejoined: AtomicU64,
    /// Soak: PUBLISHes per stream.
    pub stream_sent: Vec<AtomicU64>,
    pub failed: AtomicBool,
    pub errors: Mutex<Vec<String>>,
    /// Errors by kind (runs that tolerate errors; see [`Plan::tolerant`]).
    pub error_kinds: Mutex<BTreeMap<String, ErrorCount>>,
    /// Soak: latency per second (events, calls), merged over the threads until the coordinator takes it.
    pub windows: Mutex<BTreeMap<u64, (WindowLatency, WindowLatency)>>,
}

impl Shared {
    /// Shared state for a run with `streams` soak streams (0 otherwise).
    pub fn new(streams: usize) -> Shared {
        Shared {
            stream_sent: (0..streams).map(|_| AtomicU64::new(0)).collect(),
            ..Shared::default()
        }
    }

    pub fn fail(&self, message: String) {
        if let Ok(mut errors) = self.errors.lock() {
            if errors.len() < 100 {
                errors.push(message);
            }
        }
        self.failed.store(true, Ordering::Release);
    }

    /// Counts an error of `kind` without ending the run. `own`: the workload caused it on purpose.
    pub fn record_error(&self, kind: String, own: bool, message: String) {
        if let Ok(mut kinds) = self.error_kinds.lock() {
            let entry = kinds.entry(kind.clone()).or_insert_with(|| ErrorCount {
                kind,
                own,
                count: 0,
                example: message,
            });
            entry.count += 1;
        }
    }

    /// PUBLISHes sent per stream so far.
    pub fn stream_sent(&self) -> Vec<u64> {
        self.stream_sent
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .collect()
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
    /// Slow subscribers: what became of each.
    pub slow: Vec<SlowFate>,
    /// Sessions that failed and stayed out (soak).
    pub dead: usize,
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
    /// Sessions that connect again once their time comes (ns, session).
    delayed: BinaryHeap<Reverse<(u64, usize)>>,
    /// Sessions connecting or joining (`in_handshake`), bounded by `handshake_max`.
    handshaking: usize,
    in_handshake: Vec<bool>,
    handshake_max: usize,
    /// Sessions with deadlines: open-loop senders, the soak's timed roles, slow subscribers.
    timed: Vec<usize>,
    is_timed: Vec<bool>,
    /// The timed sessions by their next deadline (ns, session), so that a turn polls only the ones due: with
    /// 10,000 devices, polling every timed session every turn cost the generator half its time. Entries can be
    /// stale; `scheduled` holds each session's live one.
    deadlines: BinaryHeap<Reverse<(u64, usize)>>,
    scheduled: Vec<Option<u64>>,
    /// Scratch list of the sessions due in a turn.
    due: Vec<usize>,
    /// When every timed session's deadline is next checked against `scheduled` ([`Worker::audit_deadlines`]).
    next_audit: u64,
    /// Deadlines found overdue and unscheduled by the audit: a bug of this generator, reported as an error.
    missed_deadlines: u64,
    /// Slow subscribers still to settle after the run (counted into `Shared::settled` when they do).
    settle_wait: Vec<bool>,
    storm_seen: u64,
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
        let slow = match spec {
            RoleSpec::SlowSubscriber { read, .. } => Some(*read),
            _ => None,
        };
        sessions.push(Session::new(index, Role::new(spec, &plan), slow));
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
    let mut tally = Tally::default();
    if matches!(plan.scenario, ScenarioKind::Slow | ScenarioKind::Soak) {
        tally.window = Some(Window::default());
    }
    let mut worker = Worker {
        poll,
        plan,
        shared,
        clock,
        timer,
        timer_deadline: None,
        sessions,
        tally,
        dirty: Vec::new(),
        is_dirty: vec![false; n],
        again: Vec::new(),
        connect_queue: VecDeque::new(),
        delayed: BinaryHeap::new(),
        handshaking: 0,
        in_handshake: vec![false; n],
        handshake_max,
        timed: Vec::new(),
        is_timed: vec![false; n],
        deadlines: BinaryHeap::new(),
        scheduled: vec![None; n],
        due: Vec::new(),
        next_audit: 0,
        missed_deadlines: 0,
        settle_wait: vec![false; n],
        storm_seen: 0,
        phase: phase::SETUP,
        stop_deadline: u64::MAX,
        open: 0,
        published: Tally::default(),
        report: WorkerReport::default(),
    };
    worker.run();
    worker.finish()
}

/// Whether a session error means the router closed (or reset) the connection.
fn is_disconnect(message: &str) -> bool {
    [
        "router closed the connection",
        "router closed the WebSocket",
        "reading from the router failed",
        "writing to the router failed",
    ]
    .iter()
    .any(|p| message.starts_with(p))
}

/// The kind an error is counted under: the role and the gist of the message (its variable parts left out).
pub fn error_kind(role: &str, message: &str) -> String {
    let gist = if let Some(rest) = message.strip_prefix("router answered ") {
        // "router answered CALL with ERROR wamp.error.x: text" -> "CALL with ERROR wamp.error.x"
        rest.split(':').next().unwrap_or(rest).to_owned()
    } else if let Some(rest) = message.strip_prefix("router aborted the session: ") {
        format!("ABORT {}", rest.split(':').next().unwrap_or(rest))
    } else if let Some(rest) = message.strip_prefix("router ended the session: ") {
        format!("GOODBYE {}", rest.split(':').next().unwrap_or(rest))
    } else if message.starts_with("router refused to join realm") {
        format!(
            "join refused: {}",
            message
                .split(": ")
                .nth(1)
                .unwrap_or("")
                .split(':')
                .next()
                .unwrap_or("")
        )
    } else if let Some(rest) = message.strip_prefix("router closed the connection while ") {
        format!("router closed the connection ({rest})")
    } else if message.starts_with("cannot connect") {
        let cause = message.rsplit(": ").next().unwrap_or("");
        format!("cannot connect: {cause}")
    } else {
        let head: String = message.chars().take(60).collect();
        head.split(':').next().unwrap_or("").to_owned()
    };
    format!("{role}: {gist}")
}

impl Worker {
    fn run(&mut self) {
        // Churners connect only once the run starts; everyone else sets up now.
        for (i, s) in self.sessions.iter().enumerate() {
            if !s.wamp.role.connects_at_start() {
                self.connect_queue.push_back(i);
            }
        }
        let mut events = Events::with_capacity(1024);
        loop {
            let now = self.clock.now_ns();
            if !self.sync_phase(now) {
                return;
            }
            self.storms();
            self.start_connects(now);
            self.drive(now);
            self.flush_dirty();
            self.publish_counters();
            self.close_window(now);
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
        // The phase changes before `begin_quiesce` and `begin_stop` run, so sessions closing there are not
        // queued to join again.
        let old = self.phase;
        self.phase = p;
        if p >= phase::QUIESCE && old < phase::QUIESCE {
            self.begin_quiesce(now);
        }
        if p >= phase::STOP && old < phase::STOP {
            self.begin_stop(now);
        }
        true
    }

    fn begin_run(&mut self, now: u64) {
        let start_ns = self.shared.start_ns.load(Ordering::Acquire);
        let open_loop = matches!(self.plan.mode, Mode::Open { .. });
        let soak = self.plan.soak.is_some();
        for i in 0..self.sessions.len() {
            let role = &self.sessions[i].wamp.role;
            let timed = self.sessions[i].slow.is_some()
                || (soak && role.is_timed())
                || (open_loop && role.is_sender());
            if timed {
                self.timed.push(i);
                self.is_timed[i] = true;
                self.schedule(i);
            }
            if self.sessions[i].wamp.role.connects_at_start() {
                self.connect_queue.push_back(i);
                continue;
            }
            if self.sessions[i].state() != State::Ready {
                continue;
            }
            self.start_throttle(i, now);
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

    /// A slow subscriber that is ready in the run phase stops reading (or reads slowly); in the soak, a
    /// never-reading one stalls for `stall` and then reads what was queued.
    fn start_throttle(&mut self, i: usize, now: u64) {
        let stall_ns = self.plan.soak.as_ref().map_or(0, |s| s.stall_ns);
        if let Some(slow) = &mut self.sessions[i].slow {
            slow.throttle(now);
            if slow.read == SlowRead::Never && stall_ns > 0 {
                slow.stall_until = now + stall_ns;
            }
        }
    }

    fn begin_quiesce(&mut self, now: u64) {
        self.connect_queue.clear();
        self.delayed.clear();
        for i in 0..self.sessions.len() {
            let before = self.sessions[i].state();
            let mut env = Env {
                tally: &mut self.tally,
                plan: &self.plan,
                now_ns: now,
                clock: self.clock,
            };
            let result = self.sessions[i].handle_quiesce(&mut env);
            self.after(i, before, result, now);
            if self.sessions[i].slow.is_none() {
                continue;
            }
            let established = self.sessions[i].state().is_established();
            let Some(slow) = &mut self.sessions[i].slow else {
                continue;
            };
            if established && !slow.settled {
                slow.settle(now);
                self.settle_wait[i] = true;
                // Edge-triggered readiness: nothing may come by itself, so read now.
                self.handle_session(i, now);
            } else {
                self.shared.settled.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Sessions between two connections or still joining take no further part.
        for i in 0..self.sessions.len() {
            if matches!(self.sessions[i].state(), State::Connecting | State::Joining) {
                self.drop_connection(i);
                self.sessions[i].wamp.state = State::Closed;
            }
        }
    }

    fn begin_stop(&mut self, now: u64) {
        self.stop_deadline = now + self.plan.timeout.as_nanos() as u64;
        self.connect_queue.clear();
        self.delayed.clear();
        self.timed.clear();
        self.is_timed.fill(false);
        self.deadlines.clear();
        self.scheduled.fill(None);
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

    /// Soak: when the coordinator calls a reconnect storm, every storm session drops its connection at once and
    /// joins again.
    fn storms(&mut self) {
        let storm = self.shared.storm.load(Ordering::Acquire);
        if storm == self.storm_seen {
            return;
        }
        self.storm_seen = storm;
        if self.phase != phase::RUN {
            return;
        }
        let mut dropped = Vec::new();
        for i in 0..self.sessions.len() {
            if matches!(self.sessions[i].wamp.role, Role::Storm(_))
                && self.sessions[i].conn.is_some()
            {
                self.drop_connection(i);
                self.sessions[i].wamp.state = State::Idle;
                dropped.push(i);
            }
        }
        // All at once, ahead of anyone else waiting.
        self.connect_queue.retain(|i| !dropped.contains(i));
        for &i in dropped.iter().rev() {
            self.connect_queue.push_front(i);
        }
    }

    fn start_connects(&mut self, now: u64) {
        while let Some(&Reverse((at, i))) = self.delayed.peek() {
            if at > now {
                break;
            }
            self.delayed.pop();
            self.connect_queue.push_back(i);
        }
        // Storm sessions reconnect all at once; everyone else within the handshake bound.
        while self.handshaking < self.handshake_max
            || self.connect_queue.front().is_some_and(|&i| {
                matches!(self.sessions[i].wamp.role, Role::Storm(_)) && self.phase == phase::RUN
            })
        {
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
            self.handshaking += 1;
            self.in_handshake[i] = true;
            if self.sessions[i].conn.is_some() {
                self.open += 1;
            }
            match result {
                Ok(()) => {
                    self.report.first_connect_ns.get_or_insert(now);
                }
                Err(e) => {
                    self.fail(i, format!("cannot connect to {}: {e}", self.plan.endpoint));
                    if !self.plan.tolerant || self.phase < phase::RUN {
                        return;
                    }
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

    /// Bookkeeping after any call into session `i`: errors, state transitions, output to flush, its next
    /// deadline.
    fn after(&mut self, i: usize, before: State, result: Result<(), String>, now: u64) {
        self.settle_after(i, before, result, now);
        self.schedule(i);
    }

    fn settle_after(&mut self, i: usize, before: State, result: Result<(), String>, now: u64) {
        self.report_soft_errors(i);
        if let Err(e) = result {
            if self.sessions[i].slow.is_some() && is_disconnect(&e) {
                self.slow_disconnected(i, &e);
            } else {
                self.fail(i, e);
            }
            return;
        }
        let after = self.sessions[i].state();
        if before == State::Connecting && after > State::Connecting {
            self.shared.connected.fetch_add(1, Ordering::Relaxed);
        }
        if before <= State::Joining && before >= State::Connecting && after > State::Joining {
            self.end_handshake(i);
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
            if self.phase == phase::RUN && self.sessions[i].slow.is_some() {
                self.start_throttle(i, now);
            }
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

    fn end_handshake(&mut self, i: usize) {
        if std::mem::take(&mut self.in_handshake[i]) {
            self.handshaking -= 1;
        }
    }

    /// Closes session `i`'s connection (without a word: the caller decided what, if anything, was said).
    fn drop_connection(&mut self, i: usize) {
        self.end_handshake(i);
        if let Some(mut conn) = self.sessions[i].conn.take() {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.report.bytes_in += conn.reader.bytes_in;
            self.report.bytes_out += conn.writer.bytes_out;
            self.open -= 1;
            self.shared.closed.fetch_add(1, Ordering::Relaxed);
        }
        self.schedule(i);
    }

    /// Closes session `i`'s connection the way its role asked; sessions that come and go join again while the
    /// run lasts.
    fn close(&mut self, i: usize) {
        let drop = self.sessions[i].wamp.drop;
        if let Some(conn) = self.sessions[i].conn.as_mut() {
            match drop {
                None => {
                    // Best effort: a WebSocket close frame and whatever was queued.
                    conn.writer.close();
                    let _ = conn.writer.flush_to(&mut conn.stream);
                }
                Some(DropKind::Abrupt) => conn.writer.discard(),
                Some(DropKind::MidFrame) => {
                    conn.writer.discard();
                    conn.writer.partial_frame();
                    let _ = conn.writer.flush_to(&mut conn.stream);
                }
            }
        }
        self.drop_connection(i);
        let pause = match &self.plan.soak {
            Some(soak) if matches!(self.sessions[i].wamp.role, Role::SoakChurner(_)) => {
                soak.churn_pause_ns
            }
            Some(soak) if self.sessions[i].slow.is_some() => soak.slow_rejoin_ns,
            _ => 0,
        };
        self.rejoin(i, pause);
    }

    /// Queues session `i` to join again after `pause_ns`, if its role does that and the run lasts.
    fn rejoin(&mut self, i: usize, pause_ns: u64) {
        let session = &mut self.sessions[i];
        if self.phase != phase::RUN || session.dead || !session.wamp.role.rejoins(&self.plan) {
            return;
        }
        session.wamp.state = State::Idle;
        if pause_ns == 0 {
            self.connect_queue.push_back(i);
        } else {
            self.delayed
                .push(Reverse((self.clock.now_ns() + pause_ns, i)));
        }
    }

    /// The router ended a slow subscriber's connection: its fate (and, in the soak, the workload's own doing).
    fn slow_disconnected(&mut self, i: usize, message: &str) {
        if let Some(slow) = &mut self.sessions[i].slow {
            slow.disconnected = true;
            slow.settled = true;
        }
        if std::mem::take(&mut self.settle_wait[i]) {
            self.shared.settled.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(soak) = &self.plan.soak {
            self.tally.soak.slow_disconnected += 1;
            self.shared.record_error(
                "slow subscriber: disconnected by the router (slow consumer)".into(),
                true,
                message.to_owned(),
            );
            let pause = soak.slow_rejoin_ns;
            self.drop_connection(i);
            self.sessions[i].wamp.state = State::Closed;
            self.rejoin(i, pause);
        } else {
            self.drop_connection(i);
            self.sessions[i].wamp.state = State::Closed;
        }
    }

    fn fail(&mut self, i: usize, message: String) {
        let session = &self.sessions[i];
        // Errors are counted (and the run goes on) from the run phase on; a setup that fails ends the run.
        if self.plan.tolerant && self.phase >= phase::RUN {
            let kind = error_kind(session.wamp.role.name(), &message);
            self.shared.record_error(
                kind,
                false,
                format!(
                    "session {} ({}, {}): {message}",
                    session.index,
                    session.wamp.role.name(),
                    session.state().name()
                ),
            );
            self.drop_connection(i);
            self.sessions[i].wamp.state = State::Closed;
            if self.sessions[i].wamp.role.rejoins(&self.plan) {
                self.rejoin(i, RETRY_NS);
            } else {
                // A session that was to stay: its accounting no longer means anything.
                self.sessions[i].dead = true;
            }
            return;
        }
        self.shared.fail(format!(
            "session {} ({}, {}): {message}",
            session.index,
            session.wamp.role.name(),
            session.state().name()
        ));
        self.drop_connection(i);
        self.sessions[i].wamp.state = State::Closed;
    }

    /// Errors roles reported without ending their session (soak callers' unexpected ERRORs).
    fn report_soft_errors(&mut self, i: usize) {
        if self.tally.soft_errors.is_empty() {
            return;
        }
        let role = self.sessions[i].wamp.role.name();
        for message in std::mem::take(&mut self.tally.soft_errors) {
            self.shared
                .record_error(error_kind(role, &message), false, message);
        }
    }

    /// Polls the timed sessions that are due: open-loop sending, the soak's timed actions, slow readers.
    fn drive(&mut self, now: u64) {
        if now >= self.next_audit {
            self.audit_deadlines(now);
        }
        // The sessions due now, each polled once this turn (one whose deadline stays in the past is polled again
        // next turn, not in a loop here).
        let mut due = std::mem::take(&mut self.due);
        while let Some(&Reverse((at, i))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            if self.scheduled[i] == Some(at) {
                self.scheduled[i] = None;
                due.push(i);
            }
        }
        for (k, &i) in due.iter().enumerate() {
            let now = if k == 0 { now } else { self.clock.now_ns() };
            if self.sessions[i].slow.is_some() {
                self.drive_slow(i, now);
                self.schedule(i);
                continue;
            }
            let before = self.sessions[i].state();
            let mut env = Env {
                tally: &mut self.tally,
                plan: &self.plan,
                now_ns: now,
                clock: self.clock,
            };
            let result = self.sessions[i]
                .poll(&mut env)
                .and_then(|()| self.sessions[i].flush());
            self.after(i, before, result, now);
        }
        due.clear();
        self.due = due;
    }

    /// When timed session `i` must be polled next, if at all.
    fn deadline_of(&self, i: usize) -> Option<u64> {
        let s = &self.sessions[i];
        match &s.slow {
            Some(slow) if s.conn.is_some() => slow.deadline(),
            Some(_) => None,
            None => s.wamp.role.deadline(&self.plan, s.pending()),
        }
    }

    /// Puts timed session `i` in `deadlines` at its deadline, unless an entry at or before it is there already
    /// (an early entry is harmless: polling a session before it is due does nothing, and reschedules it).
    fn schedule(&mut self, i: usize) {
        if !self.is_timed[i] {
            return;
        }
        let Some(at) = self.deadline_of(i) else {
            return;
        };
        if self.scheduled[i].is_none_or(|s| at < s) {
            self.scheduled[i] = Some(at);
            self.deadlines.push(Reverse((at, i)));
        }
    }

    /// Every [`IDLE_MAX`]: checks that no timed session has an overdue deadline that is not scheduled (every
    /// change of a deadline goes through [`Worker::after`] or a flush; one that did not would leave its session
    /// unpolled), counts any as a generator bug, and schedules it.
    fn audit_deadlines(&mut self, now: u64) {
        self.next_audit = now + IDLE_MAX.as_nanos() as u64;
        for k in 0..self.timed.len() {
            let i = self.timed[k];
            if let Some(at) = self.deadline_of(i) {
                let late = at + AUDIT_SLACK_NS < now;
                if late && self.scheduled[i].is_none_or(|s| s > at) {
                    self.missed_deadlines += 1;
                    self.shared.fail(format!(
                        "kreisel-loadtest: session {} ({}) had a deadline {} µs overdue that nobody scheduled (a bug \
                         of the generator; {} so far)",
                        self.sessions[i].index,
                        self.sessions[i].wamp.role.name(),
                        (now - at) / 1000,
                        self.missed_deadlines
                    ));
                }
            }
            self.schedule(i);
        }
    }

    fn drive_slow(&mut self, i: usize, now: u64) {
        if self.sessions[i].conn.is_none() {
            return;
        }
        let Some(slow) = &mut self.sessions[i].slow else {
            return;
        };
        if slow.settled {
            return;
        }
        if let Some(last) = slow.settling {
            // Settled: the router has been quiet for a while (after the run), or, while events keep coming, they
            // are fresh again (it read what was queued for it).
            let fresh = match &self.sessions[i].wamp.role {
                Role::Subscriber(s) => {
                    self.phase == phase::RUN
                        && now.saturating_sub(s.newest_event_ns) <= crate::session::FRESH_NS
                }
                _ => false,
            };
            let Some(slow) = &mut self.sessions[i].slow else {
                return;
            };
            if fresh || now >= last + crate::session::SETTLE_QUIET_NS {
                slow.settled = true;
                slow.settling = None;
                if std::mem::take(&mut self.settle_wait[i]) {
                    self.shared.settled.fetch_add(1, Ordering::Relaxed);
                }
                if self.phase == phase::RUN && self.plan.soak.is_some() {
                    // The stall is over and it survived: leave, join again after a pause.
                    self.tally.soak.slow_survived += 1;
                    let before = self.sessions[i].state();
                    let mut env = Env {
                        tally: &mut self.tally,
                        plan: &self.plan,
                        now_ns: now,
                        clock: self.clock,
                    };
                    let result = self.sessions[i].leave(&mut env);
                    self.after(i, before, result, now);
                }
                return;
            }
            self.handle_session(i, now);
            return;
        }
        if !slow.throttled {
            return;
        }
        match slow.read {
            SlowRead::Never if slow.stall_until > 0 && now >= slow.stall_until => {
                slow.settle(now);
                self.handle_session(i, now);
            }
            SlowRead::Rate(_) if slow.deadline().is_some_and(|d| now >= d) => {
                self.handle_session(i, now)
            }
            _ => {}
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
                } else if self.sessions[i].slow.is_some() && is_disconnect(&e) {
                    self.slow_disconnected(i, &e);
                } else {
                    self.fail(i, e);
                }
            }
            // Less output pending can bring a deadline forward; a closed session may have one to reconnect.
            self.schedule(i);
        }
    }

    /// Until the earliest deadline (armed on the timerfd for sub-millisecond precision), zero when work is
    /// waiting, at most [`IDLE_MAX`].
    fn poll_timeout(&mut self, now: u64) -> Option<Duration> {
        if !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        let timed = self.deadlines.peek().map(|Reverse((at, _))| *at);
        let delayed = self.delayed.peek().map(|Reverse((at, _))| *at);
        let Some(deadline) = timed.into_iter().chain(delayed).min() else {
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
            (t.calls, &mut p.calls, &self.shared.calls),
            (t.answers, &mut p.answers, &self.shared.answers),
            (
                t.soak.storm_rejoined,
                &mut p.soak.storm_rejoined,
                &self.shared.storm_rejoined,
            ),
        ];
        for (now, published, total) in pairs {
            if now != *published {
                total.fetch_add(now - *published, Ordering::Relaxed);
                *published = now;
            }
        }
        if t.stream_sent.len() > p.stream_sent.len() {
            p.stream_sent.resize(t.stream_sent.len(), 0);
        }
        for (s, (&now, published)) in t.stream_sent.iter().zip(&mut p.stream_sent).enumerate() {
            if now != *published {
                if let Some(total) = self.shared.stream_sent.get(s) {
                    total.fetch_add(now - *published, Ordering::Relaxed);
                }
                *published = now;
            }
        }
    }

    /// Soak: hands the latency of each finished second to the coordinator.
    fn close_window(&mut self, now: u64) {
        let Some(window) = &mut self.tally.window else {
            return;
        };
        if self.phase < phase::RUN {
            return;
        }
        let start = self.shared.start_ns.load(Ordering::Acquire);
        let second = now.saturating_sub(start) / 1_000_000_000;
        if second == window.second {
            return;
        }
        let done = std::mem::replace(
            window,
            Window {
                second,
                ..Window::default()
            },
        );
        if done.events.count() + done.calls.count() == 0 {
            return;
        }
        if let Ok(mut windows) = self.shared.windows.lock() {
            let slot = windows.entry(done.second).or_default();
            slot.0.merge(&done.events);
            slot.1.merge(&done.calls);
        }
    }

    fn finish(mut self) -> WorkerReport {
        let now = self.clock.now_ns();
        self.close_window(now + 1_000_000_000_000);
        let stream_sent = self.shared.stream_sent();
        for s in &self.sessions {
            if s.dead {
                self.report.dead += 1;
                continue;
            }
            self.report
                .integrity
                .add(s.wamp.role.integrity(&self.plan, &stream_sent));
            if let (Some(slow), Role::Subscriber(sub)) = (&s.slow, &s.wamp.role) {
                let (received, lost) = sub.fate(&self.plan);
                self.tally.soak.slow_events += sub.seen_total;
                self.report.slow.push(SlowFate {
                    index: s.index,
                    disconnected: slow.disconnected,
                    received,
                    lost,
                    regressed: sub.regressed(),
                });
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_leave_out_the_details() {
        assert_eq!(
            error_kind(
                "caller",
                "router answered CALL with ERROR wamp.error.no_such_procedure: no callee (x.y)"
            ),
            "caller: CALL with ERROR wamp.error.no_such_procedure"
        );
        assert_eq!(
            error_kind(
                "subscriber",
                "router aborted the session: wamp.error.protocol_violation: bad"
            ),
            "subscriber: ABORT wamp.error.protocol_violation"
        );
        assert_eq!(
            error_kind("churner", "router closed the connection while ready"),
            "churner: router closed the connection (ready)"
        );
        assert_eq!(
            error_kind(
                "storm session",
                "cannot connect to rs://127.0.0.1:1: Connection refused (os error 111)"
            ),
            "storm session: cannot connect: Connection refused (os error 111)"
        );
        assert!(is_disconnect("router closed the connection while ready"));
        assert!(is_disconnect(
            "reading from the router failed: Connection reset by peer"
        ));
        assert!(!is_disconnect("router aborted the session: x"));
    }
}
