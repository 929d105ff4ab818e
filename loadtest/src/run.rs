//! The coordinator: starts the worker threads, walks the run through its phases (connect, join, subscribe or
//! register, run, drain, close) with a stall timeout on each, and assembles the [`RunResult`].

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mio::{Poll, Waker};

use crate::plan::{Mode, Plan, RoleSpec, ScenarioKind, SlowRead};
use crate::roles::Tally;
use crate::soak;
use crate::stats::{Clock, Integrity};
use crate::summary::{RunResult, SlowOutcome, SoakOutcome, Status};
use crate::sys;
use crate::timeline::{self, Counters, LatencyPoint, MetricsUrl, Sampler};
use crate::worker::{self, phase, Shared, WorkerReport};

/// How often the coordinator looks at the counters.
const TICK: Duration = Duration::from_millis(5);
/// Runs shorter than this get no progress bar.
const BAR_AFTER: Duration = Duration::from_secs(2);

/// Options that shape reporting, not load.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub quiet: bool,
    pub label: String,
    pub router_pid: Option<u32>,
    /// Processes whose CPU time is added to the router's (other cluster nodes, nats-servers).
    pub extra_pids: Vec<u32>,
    /// The router's metrics endpoint, scraped with every sample (slow, soak).
    pub metrics: Option<MetricsUrl>,
    /// Stop the run when the router's RSS passes this many KiB.
    pub rss_ceiling_kib: Option<u64>,
    /// Time between two samples of the router (slow, soak; zero: no sampling).
    pub sample_interval: Duration,
    /// Soak: how long to run, and the first part of it left out of the slopes.
    pub duration: Duration,
    pub warmup: Duration,
}

/// Why a phase ended early.
enum Stop {
    Timeout(String),
    Failed,
    Ceiling(String),
}

/// What the soak's coordinator saw besides the workers' reports.
#[derive(Default)]
struct SoakWatch {
    storms: u64,
    /// Per storm: when it was called (ns), the rejoin count then, and when every storm session was back (ns).
    storm_at: Vec<(u64, u64, Option<u64>)>,
    latency: Vec<LatencyPoint>,
    fds_before: Option<u64>,
    rss_before_kib: Option<u64>,
    drain_timeout: Option<String>,
}

/// Runs `plan` to completion (or failure) and returns its result.
pub fn execute(plan: Plan, opts: &RunOptions) -> RunResult {
    sys::raise_fd_limit();
    let streams = plan.soak.as_ref().map_or(0, |s| s.streams());
    let plan = Arc::new(plan);
    let shared = Arc::new(Shared::new(streams));
    let clock = Clock::new();
    let mut coord = Coordinator::new(plan.clone(), shared.clone(), clock, opts);
    if plan.soak.is_some() {
        // The router as it is before any session of this run connects.
        let _ = coord.sample_now();
        coord.soak.fds_before = coord.sampler.samples.last().and_then(|s| s.fds);
        coord.soak.rss_before_kib = coord.sampler.samples.last().and_then(|s| s.rss_kib);
    }
    let mut wakers = Vec::new();
    let mut handles: Vec<JoinHandle<WorkerReport>> = Vec::new();
    for id in 0..plan.threads {
        let poll = match Poll::new()
            .and_then(|p| Waker::new(p.registry(), worker::WAKER).map(|w| (p, w)))
        {
            Ok((poll, waker)) => {
                wakers.push(waker);
                poll
            }
            Err(e) => {
                shared.fail(format!("cannot create an event loop: {e}"));
                break;
            }
        };
        let (plan, worker_shared) = (plan.clone(), shared.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("loadtest-{id}"))
            .spawn(move || worker::run(id, plan, worker_shared, poll, clock));
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                shared.fail(format!("cannot start worker thread: {e}"));
                break;
            }
        }
    }
    coord.wakers = wakers;
    let outcome = if shared.failed.load(Ordering::Acquire) {
        Err(Stop::Failed)
    } else {
        coord.phases()
    };
    coord.finish(outcome, handles)
}

struct Coordinator<'a> {
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    clock: Clock,
    opts: &'a RunOptions,
    wakers: Vec<Waker>,
    bar: Option<ProgressBar>,
    /// Start of the measured window (ns) and the CPU times there.
    window_start_ns: u64,
    window_end_ns: u64,
    cpu_start: (Duration, Duration),
    cpu_end: (Duration, Duration),
    router_cpu_start: Option<Duration>,
    router_cpu_end: Option<Duration>,
    rss_before_kib: Option<u64>,
    rss_after_kib: Option<u64>,
    /// The phase in progress (for timeout messages).
    phase_name: &'static str,
    sampler: Sampler,
    /// The run phase began.
    started: bool,
    soak: SoakWatch,
}

impl<'a> Coordinator<'a> {
    fn new(
        plan: Arc<Plan>,
        shared: Arc<Shared>,
        clock: Clock,
        opts: &'a RunOptions,
    ) -> Coordinator<'a> {
        let rss_before_kib = opts.router_pid.and_then(|pid| sys::rss_kib(pid).ok());
        let sampler = Sampler::new(
            opts.router_pid,
            opts.metrics.clone(),
            opts.sample_interval,
            opts.rss_ceiling_kib,
        );
        Coordinator {
            plan,
            shared,
            clock,
            opts,
            wakers: Vec::new(),
            bar: None,
            window_start_ns: 0,
            window_end_ns: 0,
            cpu_start: (Duration::ZERO, Duration::ZERO),
            cpu_end: (Duration::ZERO, Duration::ZERO),
            router_cpu_start: None,
            router_cpu_end: None,
            rss_before_kib,
            rss_after_kib: None,
            phase_name: "setup",
            sampler,
            started: false,
            soak: SoakWatch::default(),
        }
    }

    fn counters(&self) -> Counters {
        Counters {
            delivered: self.shared.received.load(Ordering::Relaxed),
            answers: self.shared.answers.load(Ordering::Relaxed),
            sent: self.shared.sent.load(Ordering::Relaxed),
        }
    }

    fn start_ns(&self) -> u64 {
        if self.started {
            self.shared.start_ns.load(Ordering::Acquire)
        } else {
            self.clock.now_ns()
        }
    }

    /// Samples the router when due (slow, soak); stops the run at the memory ceiling.
    fn tick(&mut self, now: u64) -> Result<(), Stop> {
        if self.opts.sample_interval.is_zero() || !self.sampler.is_active() {
            return Ok(());
        }
        let (start, counters) = (self.start_ns(), self.counters());
        if let Some(ceiling) = self.sampler.poll(now, start, counters) {
            return Err(Stop::Ceiling(ceiling));
        }
        if self.has_windows() && self.started {
            self.take_windows(now, false);
        }
        Ok(())
    }

    /// Whether the workers keep per-second latency (slow, soak).
    fn has_windows(&self) -> bool {
        matches!(self.plan.scenario, ScenarioKind::Slow | ScenarioKind::Soak)
    }

    /// Takes a sample now (outside the interval).
    fn sample_now(&mut self) -> Option<String> {
        if !self.sampler.is_active() {
            return None;
        }
        let now = self.clock.now_ns();
        let (start, counters) = (self.start_ns(), self.counters());
        self.sampler.sample(now, start, counters)
    }

    /// Soak: turns the seconds the workers have finished into latency points.
    fn take_windows(&mut self, now: u64, all: bool) {
        let start = self.shared.start_ns.load(Ordering::Acquire);
        let current = now.saturating_sub(start) / 1_000_000_000;
        let Ok(mut windows) = self.shared.windows.lock() else {
            return;
        };
        while let Some((&second, _)) = windows.first_key_value() {
            // Workers hand a second over at their next loop turn (at most 100 ms later): wait one more second.
            if !all && second + 2 > current {
                break;
            }
            let Some((second, (events, calls))) = windows.pop_first() else {
                break;
            };
            self.soak.latency.push(LatencyPoint {
                t_s: second as f64,
                events: events.count(),
                events_p99_us: events.p99_us(),
                events_max_us: events.max_us(),
                calls: calls.count(),
                calls_p99_us: calls.p99_us(),
            });
        }
    }

    fn set_phase(&self, p: u8) {
        self.shared.phase.store(p, Ordering::Release);
        for w in &self.wakers {
            let _ = w.wake();
        }
    }

    /// CPU time of the router process and of the extra processes, summed.
    fn router_cpu(&self) -> Option<Duration> {
        let router = self
            .opts
            .router_pid
            .and_then(|pid| sys::process_cpu(pid).ok())?;
        let extra = (self.opts.extra_pids.iter())
            .filter_map(|&pid| sys::process_cpu(pid).ok())
            .sum::<Duration>();
        Some(router + extra)
    }

    fn open_window(&mut self) {
        self.window_start_ns = self.clock.now_ns();
        self.cpu_start = sys::cpu_time();
        self.router_cpu_start = self.router_cpu();
    }

    fn close_window(&mut self) {
        self.window_end_ns = self.clock.now_ns();
        self.cpu_end = sys::cpu_time();
        self.router_cpu_end = self.router_cpu();
    }

    /// Walks the phases of the plan's scenario.
    fn phases(&mut self) -> Result<(), Stop> {
        let sessions = self.plan.roles.len() as u64;
        match self.plan.scenario {
            ScenarioKind::Connect => {
                self.open_window();
                self.wait("connect", sessions, |s| s.connected.load(Ordering::Relaxed))?;
                self.wait("join", sessions, |s| s.joined.load(Ordering::Relaxed))?;
                self.close_window();
                if let Some(pid) = self.opts.router_pid {
                    // Let the router settle before measuring its memory.
                    std::thread::sleep(Duration::from_millis(200));
                    self.rss_after_kib = sys::rss_kib(pid).ok();
                }
                self.hold(self.plan.duration)?;
            }
            ScenarioKind::Churn => {
                self.start_run();
                let end = self.clock.now_ns() + self.plan.duration.as_nanos() as u64;
                let cycles_max = if self.plan.cycles_max == 0 {
                    u64::MAX
                } else {
                    self.plan.cycles_max
                };
                self.wait_until("churn", cycles_max, end, |s| {
                    s.cycles.load(Ordering::Relaxed)
                })?;
                self.close_window();
            }
            ScenarioKind::Soak => self.soak_phases()?,
            ScenarioKind::Fanout | ScenarioKind::Fanin | ScenarioKind::Rpc | ScenarioKind::Slow => {
                self.wait("connect", sessions, |s| s.connected.load(Ordering::Relaxed))?;
                self.wait("join", sessions, |s| s.joined.load(Ordering::Relaxed))?;
                let setup = if self.plan.scenario == ScenarioKind::Rpc {
                    "register"
                } else {
                    "subscribe"
                };
                self.wait(setup, sessions, |s| s.ready.load(Ordering::Relaxed))?;
                self.start_run();
                let e = self.plan.expect;
                self.wait("run", e.sent + e.acked, |s| {
                    s.sent.load(Ordering::Relaxed) + s.acked.load(Ordering::Relaxed)
                })?;
                self.wait("drain", e.received, |s| s.received.load(Ordering::Relaxed))?;
                self.close_window();
                if self.plan.scenario == ScenarioKind::Slow {
                    let now = self.clock.now_ns();
                    // Workers hand over their last second when they next turn: give them that turn.
                    std::thread::sleep(Duration::from_millis(150));
                    self.take_windows(now, true);
                    // The slow subscribers read what is queued for them, to learn their fate.
                    let slow = self.slow_count();
                    self.set_phase(phase::QUIESCE);
                    self.wait("settle", slow, |s| s.settled.load(Ordering::Relaxed))?;
                    if let Some(pid) = self.opts.router_pid {
                        self.rss_after_kib = sys::rss_kib(pid).ok();
                    }
                }
            }
        }
        Ok(())
    }

    fn slow_count(&self) -> u64 {
        self.plan
            .roles
            .iter()
            .filter(|r| matches!(r, RoleSpec::SlowSubscriber { .. }))
            .count() as u64
    }

    /// The soak: set up, run for the duration with reconnect storms, stop sending, drain, close.
    fn soak_phases(&mut self) -> Result<(), Stop> {
        let Some(soak) = self.plan.soak.clone() else {
            return Ok(());
        };
        let setup = self
            .plan
            .roles
            .iter()
            .filter(|r| !matches!(r, RoleSpec::SoakChurner { .. }))
            .count() as u64;
        self.wait("connect", setup, |s| s.connected.load(Ordering::Relaxed))?;
        self.wait("join", setup, |s| s.joined.load(Ordering::Relaxed))?;
        self.wait("subscribe/register", setup, |s| {
            s.ready.load(Ordering::Relaxed)
        })?;
        self.start_run();
        let start = self.shared.start_ns.load(Ordering::Acquire);
        let end = start + self.opts.duration.as_nanos() as u64;
        let mut next_storm = if soak.storm_sessions > 0 && soak.storm_every_ns > 0 {
            start + soak.storm_every_ns
        } else {
            u64::MAX
        };
        self.phase_name = "soak";
        loop {
            if self.shared.failed.load(Ordering::Acquire) {
                return Err(Stop::Failed);
            }
            let now = self.clock.now_ns();
            self.tick(now)?;
            self.watch_storms(now, soak.storm_sessions as u64);
            if now >= end {
                break;
            }
            if now >= next_storm {
                self.close_storm(soak.storm_sessions as u64);
                let base = self.shared.storm_rejoined.load(Ordering::Relaxed);
                self.soak.storm_at.push((now, base, None));
                self.soak.storms += 1;
                self.shared.storm.fetch_add(1, Ordering::Release);
                for w in &self.wakers {
                    let _ = w.wake();
                }
                next_storm = next_storm.saturating_add(soak.storm_every_ns);
                if next_storm >= end {
                    next_storm = u64::MAX;
                }
            }
            self.progress("soak", 0, 0, end, now);
            std::thread::sleep(TICK);
        }
        self.close_storm(soak.storm_sessions as u64);
        self.set_phase(phase::QUIESCE);
        // Drain: every event sent reached every subscriber that stayed, every call got its final answer, every
        // slow subscriber read what was queued for it.
        let coverage: Vec<Vec<usize>> = self
            .plan
            .roles
            .iter()
            .filter_map(|r| match r {
                RoleSpec::SoakSubscriber { streams, .. } => Some(streams.clone()),
                _ => None,
            })
            .collect();
        let expected_events = move |shared: &Shared| {
            let sent = shared.stream_sent();
            coverage
                .iter()
                .map(|streams| soak::Subscriber::expected(streams, &sent))
                .sum::<u64>()
        };
        let slow = self.slow_count();
        let drained = self.wait("drain", 3, |s| {
            u64::from(s.received.load(Ordering::Relaxed) >= expected_events(s))
                + u64::from(s.answers.load(Ordering::Relaxed) >= s.calls.load(Ordering::Relaxed))
                + u64::from(s.settled.load(Ordering::Relaxed) >= slow)
        });
        match drained {
            Err(Stop::Timeout(why)) => {
                // Whatever is missing now is lost: the accounting says what.
                self.soak.drain_timeout = Some(why);
            }
            other => other?,
        }
        self.close_window();
        let now = self.clock.now_ns();
        self.take_windows(now, true);
        Ok(())
    }

    /// Notes when every storm session was back after the last storm.
    fn watch_storms(&mut self, now: u64, sessions: u64) {
        let rejoined = self.shared.storm_rejoined.load(Ordering::Relaxed);
        if let Some(last) = self.soak.storm_at.last_mut() {
            if last.2.is_none() && rejoined.saturating_sub(last.1) >= sessions {
                last.2 = Some(now);
            }
        }
    }

    /// Before the next storm (or the end): a storm whose sessions did not all come back is an error.
    fn close_storm(&mut self, sessions: u64) {
        let now = self.clock.now_ns();
        self.watch_storms(now, sessions);
        if let Some(&(at, base, None)) = self.soak.storm_at.last() {
            let back = self
                .shared
                .storm_rejoined
                .load(Ordering::Relaxed)
                .saturating_sub(base);
            self.shared.record_error(
                "storm: not every session joined again before the next storm or the end".into(),
                false,
                format!(
                    "{back} of {sessions} storm sessions joined and subscribed again within {:.1} s",
                    (now - at) as f64 / 1e9
                ),
            );
            // Counted once.
            if let Some(last) = self.soak.storm_at.last_mut() {
                last.2 = Some(u64::MAX);
            }
        }
    }

    fn start_run(&mut self) {
        self.started = true;
        if let Some(pid) = self.opts.router_pid {
            self.rss_before_kib = sys::rss_kib(pid).ok().or(self.rss_before_kib);
        }
        self.open_window();
        self.shared
            .start_ns
            .store(self.clock.now_ns(), Ordering::Release);
        self.set_phase(phase::RUN);
    }

    /// Waits until `value` reaches `target`; fails when it stands still for the timeout or a worker failed.
    fn wait(
        &mut self,
        name: &'static str,
        target: u64,
        value: impl Fn(&Shared) -> u64,
    ) -> Result<(), Stop> {
        self.wait_until(name, target, u64::MAX, value)
    }

    /// [`Coordinator::wait`] that also ends (successfully) at `end_ns`.
    fn wait_until(
        &mut self,
        name: &'static str,
        target: u64,
        end_ns: u64,
        value: impl Fn(&Shared) -> u64,
    ) -> Result<(), Stop> {
        self.phase_name = name;
        let timeout_ns = self.plan.timeout.as_nanos() as u64;
        let mut last = value(&self.shared);
        let mut last_progress_ns = self.clock.now_ns();
        loop {
            if self.shared.failed.load(Ordering::Acquire) {
                return Err(Stop::Failed);
            }
            let v = value(&self.shared);
            let now = self.clock.now_ns();
            self.tick(now)?;
            self.progress(name, v, target, end_ns, now);
            if v >= target || now >= end_ns {
                return Ok(());
            }
            if v != last {
                last = v;
                last_progress_ns = now;
            } else if now - last_progress_ns > timeout_ns {
                let unit = match (name, self.plan.scenario) {
                    ("run", _) => "messages sent and acknowledged",
                    ("drain", ScenarioKind::Soak) => {
                        "conditions (events delivered, calls answered, slow subscribers settled)"
                    }
                    ("drain", _) => "deliveries",
                    ("churn", _) => "cycles",
                    ("settle", _) => "slow subscribers settled",
                    _ => "sessions",
                };
                return Err(Stop::Timeout(format!(
                    "{name} phase: no progress for {:.1} s, {v} of {target} {unit} done",
                    self.plan.timeout.as_secs_f64()
                )));
            }
            std::thread::sleep(TICK);
        }
    }

    /// Keeps the sessions open for `hold` (connect scenario).
    fn hold(&mut self, hold: Duration) -> Result<(), Stop> {
        let end = self.clock.now_ns() + hold.as_nanos() as u64;
        while self.clock.now_ns() < end {
            if self.shared.failed.load(Ordering::Acquire) {
                return Err(Stop::Failed);
            }
            self.tick(self.clock.now_ns())?;
            std::thread::sleep(TICK);
        }
        Ok(())
    }

    /// Shows (or advances) the progress bar once the run has lasted a while.
    fn progress(&mut self, name: &'static str, v: u64, target: u64, end_ns: u64, now: u64) {
        if self.opts.quiet || !std::io::stderr().is_terminal() {
            return;
        }
        if self.bar.is_none() {
            if now < BAR_AFTER.as_nanos() as u64 {
                return;
            }
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(5))
                .with_elapsed(Duration::from_nanos(
                    now.saturating_sub(self.window_start_ns),
                ));
            let style = ProgressStyle::with_template(
                "{prefix:>9} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_prefix(name);
            if end_ns != u64::MAX {
                let total = end_ns.saturating_sub(self.window_start_ns) / 1_000_000;
                bar.set_length(total);
                bar.set_position(
                    now.saturating_sub(self.window_start_ns)
                        .min(total * 1_000_000)
                        / 1_000_000,
                );
                bar.set_message(format!("ms, {v} done"));
            } else {
                bar.set_length(target);
                bar.set_position(v);
            }
        }
    }

    /// Stops the workers (GOODBYE within the timeout, or abort), collects their reports, builds the result.
    fn finish(
        mut self,
        outcome: Result<(), Stop>,
        handles: Vec<JoinHandle<WorkerReport>>,
    ) -> RunResult {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if self.window_end_ns == 0 {
            self.close_window();
        }
        let mut timeout = None;
        let mut ceiling = None;
        match &outcome {
            Ok(()) => {
                self.set_phase(phase::STOP);
                // Workers end by themselves once their sessions closed, or when their own close deadline (the
                // timeout) passed; they report what stayed open.
                let deadline =
                    self.clock.now_ns() + self.plan.timeout.as_nanos() as u64 + 1_000_000_000;
                while handles.iter().any(|h| !h.is_finished()) && self.clock.now_ns() < deadline {
                    std::thread::sleep(TICK);
                }
                self.set_phase(phase::ABORT);
            }
            Err(Stop::Timeout(why)) => {
                timeout = Some(why.clone());
                self.set_phase(phase::ABORT);
            }
            Err(Stop::Failed) => self.set_phase(phase::ABORT),
            Err(Stop::Ceiling(why)) => {
                ceiling = Some(why.clone());
                self.set_phase(phase::ABORT);
            }
        }
        let mut reports = Vec::new();
        for h in handles {
            match h.join() {
                Ok(report) => reports.push(report),
                Err(_) => self.shared.fail("a worker thread panicked".into()),
            }
        }
        let errors = self
            .shared
            .errors
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        let unclosed: usize = reports.iter().map(|r| r.unclosed).sum();
        if unclosed > 0 && timeout.is_none() && outcome.is_ok() {
            timeout = Some(format!(
                "close phase: {unclosed} session(s) got no GOODBYE within {:.1} s",
                self.plan.timeout.as_secs_f64()
            ));
        }
        if let Some(why) = self.soak.drain_timeout.take() {
            timeout.get_or_insert(why);
        }
        if self.plan.soak.is_some() {
            self.after_soak();
        } else if self.started && self.sampler.is_active() && !self.opts.sample_interval.is_zero() {
            let _ = self.sample_now();
        }
        self.result(reports, errors, timeout, ceiling)
    }

    /// Soak: once every session left, gives the router up to 10 s to close what it holds, then samples it.
    fn after_soak(&mut self) {
        let Some(pid) = self.opts.router_pid else {
            let _ = self.sample_now();
            return;
        };
        let deadline = self.clock.now_ns() + 10_000_000_000;
        loop {
            let fds = sys::open_fds(pid).ok();
            if fds.is_none() || fds <= self.soak.fds_before || self.clock.now_ns() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.sample_now();
    }

    fn result(
        &self,
        reports: Vec<WorkerReport>,
        mut errors: Vec<String>,
        timeout: Option<String>,
        ceiling: Option<String>,
    ) -> RunResult {
        let plan = &self.plan;
        let mut tally = Tally::default();
        let mut integrity = Integrity::default();
        let (mut rx, mut tx) = (0, 0);
        let (mut first_connect, mut last_join) = (None::<u64>, None::<u64>);
        for r in &reports {
            tally.sent += r.tally.sent;
            tally.acked += r.tally.acked;
            tally.received += r.tally.received;
            tally.payload_bytes += r.tally.payload_bytes;
            tally.cycles += r.tally.cycles;
            tally.latency.merge(&r.tally.latency);
            tally.send_lag.merge(&r.tally.send_lag);
            tally.last_sent_ns = tally.last_sent_ns.max(r.tally.last_sent_ns);
            tally.last_received_ns = tally.last_received_ns.max(r.tally.last_received_ns);
            tally.calls += r.tally.calls;
            tally.answers += r.tally.answers;
            tally.call_latency.merge(&r.tally.call_latency);
            tally.soak.add(&r.tally.soak);
            integrity.add(r.integrity);
            rx += r.bytes_in;
            tx += r.bytes_out;
            first_connect = min_opt(first_connect, r.first_connect_ns);
            last_join = last_join.max(r.last_join_ns);
        }
        // The measured window and what counts as "a message" in it.
        let (start, end, messages) = match plan.scenario {
            ScenarioKind::Connect => {
                let joined = self.shared.joined.load(Ordering::Relaxed);
                (
                    first_connect.unwrap_or(0),
                    last_join.unwrap_or(self.window_end_ns),
                    joined,
                )
            }
            ScenarioKind::Churn => (self.window_start_ns, self.window_end_ns, tally.cycles),
            _ => {
                let end = if tally.last_received_ns > self.window_start_ns {
                    tally.last_received_ns
                } else {
                    self.window_end_ns
                };
                (self.window_start_ns, end, tally.received)
            }
        };
        let duration_s = (end.saturating_sub(start)) as f64 / 1e9;
        let per_s = |n: u64| {
            if duration_s > 0.0 {
                n as f64 / duration_s
            } else {
                0.0
            }
        };
        let cpu =
            (self.cpu_end.0 + self.cpu_end.1).saturating_sub(self.cpu_start.0 + self.cpu_start.1);
        let per_msg = |d: Duration| {
            if messages > 0 {
                d.as_nanos() as f64 / messages as f64
            } else {
                0.0
            }
        };
        let router_cpu = match (self.router_cpu_start, self.router_cpu_end) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        let error_kinds: Vec<_> = self
            .shared
            .error_kinds
            .lock()
            .map(|k| k.values().cloned().collect())
            .unwrap_or_default();
        let foreign_errors = error_kinds.iter().any(|e| !e.own);
        let status = if ceiling.is_some() {
            Status::Ceiling
        } else if timeout.is_some() {
            Status::Timeout
        } else if !errors.is_empty() || foreign_errors {
            Status::Error
        } else if !integrity.is_clean() {
            Status::Integrity
        } else {
            Status::Ok
        };
        if let Some(why) = timeout {
            errors.insert(0, format!("timeout: {why}"));
        }
        if let Some(why) = ceiling {
            errors.insert(0, why);
        }
        if let Some(e) = &self.sampler.metrics_error {
            errors.push(format!(
                "{} metrics scrape(s) failed, the first: {e}",
                self.sampler.metrics_failures
            ));
        }
        let slow = (plan.scenario == ScenarioKind::Slow).then(|| {
            let read = plan
                .roles
                .iter()
                .find_map(|r| match r {
                    RoleSpec::SlowSubscriber { read, .. } => Some(*read),
                    _ => None,
                })
                .map_or("-".to_owned(), |r| match r {
                    SlowRead::Never => "never".into(),
                    SlowRead::Rate(b) => format!("{b} B/s"),
                });
            let fates = reports
                .iter()
                .flat_map(|r| r.slow.iter().cloned())
                .collect();
            SlowOutcome::from_fates(read, fates)
        });
        let soak = plan
            .soak
            .as_ref()
            .map(|s| self.soak_outcome(s, &tally, &reports));
        let open = matches!(plan.mode, Mode::Open { .. });
        let latency_kind = match plan.scenario {
            ScenarioKind::Fanout | ScenarioKind::Fanin if open => {
                "publish to EVENT, from intended send time"
            }
            ScenarioKind::Fanout | ScenarioKind::Fanin => {
                "publish to EVENT, from actual send time (closed loop)"
            }
            ScenarioKind::Rpc if open => "CALL to RESULT, from intended send time",
            ScenarioKind::Rpc => "CALL to RESULT, from actual send time (closed loop)",
            ScenarioKind::Connect => "connect to WELCOME",
            ScenarioKind::Churn => "one churn cycle",
            ScenarioKind::Slow => {
                "publish to EVENT at the fast subscribers, from intended send time"
            }
            ScenarioKind::Soak => {
                "publish to EVENT at the subscribers that stay, from intended send time"
            }
        };
        let rss_per_session = match (self.rss_before_kib, self.rss_after_kib, plan.scenario) {
            (Some(b), Some(a), ScenarioKind::Connect) if messages > 0 => {
                Some((a as f64 - b as f64) * 1024.0 / messages as f64)
            }
            _ => None,
        };
        RunResult {
            tool: format!("kreisel-loadtest {}", env!("CARGO_PKG_VERSION")),
            label: self.opts.label.clone(),
            scenario: plan.scenario.name().into(),
            case: plan.case(),
            params: plan.params.clone(),
            url: if plan.endpoints.len() > 1 {
                (plan.endpoints.iter())
                    .map(|(endpoint, _)| endpoint.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                plan.endpoint.to_string()
            },
            transport: plan.endpoint.kind().name().into(),
            serializer: if plan.endpoint.is_raw() {
                "-".into()
            } else {
                plan.ser.name().into()
            },
            threads: plan.threads,
            mode: match (plan.is_paced(), plan.mode) {
                (false, _) => "-".into(),
                (true, Mode::Closed { .. }) => "closed".into(),
                (true, Mode::Open { .. }) => "open".into(),
            },
            window: match plan.mode {
                Mode::Closed { window } if plan.is_paced() => Some(window),
                _ => None,
            },
            rate: match plan.mode {
                Mode::Open { rate } if plan.is_paced() => Some(rate),
                _ => None,
            },
            payload_bytes: plan.padding.len(),
            status,
            errors,
            sessions: plan.roles.len() as u64,
            duration_s,
            sent: tally.sent,
            received: messages,
            msgs_per_s: per_s(messages),
            mb_per_s: per_s(tally.payload_bytes) / 1e6,
            sent_per_s: if plan.is_paced() {
                per_s(tally.sent)
            } else {
                0.0
            },
            // NATS runs fanout and fanin only, whose deliveries are MSGs.
            latency_kind: if plan.endpoint.is_mqtt() {
                latency_kind.replace("publish to EVENT", "PUBLISH to PUBLISH")
            } else if plan.endpoint.is_nats() {
                latency_kind.replace("publish to EVENT", "PUB to MSG")
            } else {
                latency_kind.into()
            },
            latency_us: tally.latency.summary(),
            send_lag_us: if open && plan.is_paced() {
                Some(tally.send_lag.summary())
            } else {
                None
            },
            lost: integrity.lost,
            duplicated: integrity.duplicated,
            reordered: integrity.reordered,
            corrupt: integrity.corrupt,
            cpu_user_s: self
                .cpu_end
                .0
                .saturating_sub(self.cpu_start.0)
                .as_secs_f64(),
            cpu_sys_s: self
                .cpu_end
                .1
                .saturating_sub(self.cpu_start.1)
                .as_secs_f64(),
            cpu_ns_per_msg: per_msg(cpu),
            wire_rx_bytes: rx,
            wire_tx_bytes: tx,
            router_pid: self.opts.router_pid,
            router_rss_before_kib: self.rss_before_kib,
            router_rss_after_kib: self.rss_after_kib,
            router_rss_per_session_bytes: rss_per_session,
            router_cpu_s: router_cpu.map(|d| d.as_secs_f64()),
            router_cpu_ns_per_msg: router_cpu.map(per_msg),
            timestamp: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            // connect has no run phase: it started once a session joined.
            started: self.started
                || (plan.scenario == ScenarioKind::Connect
                    && self.shared.joined.load(Ordering::Relaxed) > 0),
            error_kinds,
            samples: self.sampler.samples.clone(),
            latency_series: self.soak.latency.clone(),
            router_rss_max_kib: self.sampler.rss_max_kib,
            metrics_delta: self.sampler.metrics_delta(),
            slow,
            soak,
        }
    }

    fn soak_outcome(
        &self,
        soak: &crate::plan::SoakPlan,
        tally: &Tally,
        reports: &[WorkerReport],
    ) -> SoakOutcome {
        let warmup = self.opts.warmup.as_secs_f64();
        let samples = &self.sampler.samples;
        let duration = self.opts.duration.as_secs_f64();
        let steady = |f: fn(&timeline::Sample) -> Option<u64>| -> Vec<(f64, f64)> {
            samples
                .iter()
                .filter(|s| s.t_s >= warmup && s.t_s <= duration)
                .filter_map(|s| f(s).map(|v| (s.t_s, v as f64)))
                .collect()
        };
        let rss: Vec<(f64, f64)> = steady(|s| s.rss_kib.map(|k| k * 1024));
        let fds = steady(|s| s.fds);
        let rss_mean =
            (!rss.is_empty()).then(|| rss.iter().map(|p| p.1).sum::<f64>() / rss.len() as f64);
        let rss_slope = timeline::slope(&rss).map(|s| s * 3600.0);
        // RSS less the bytes the router's outboxes hold (`kreisel_outbox_bytes`, a series carried forward from
        // the scrape that last changed it): what a leak would grow, without the slow subscribers' queues that the
        // configured budgets bound and that rise and fall over the run.
        let mut queued = None;
        let unqueued: Vec<(f64, f64)> = samples
            .iter()
            .filter_map(|s| {
                if let Some(&bytes) = s.metrics.get("kreisel_outbox_bytes") {
                    queued = Some(bytes);
                }
                let rss = s.rss_kib? as f64 * 1024.0;
                (s.t_s >= warmup && s.t_s <= duration).then_some((s.t_s, rss - queued?))
            })
            .collect();
        let unqueued_mean = (!unqueued.is_empty())
            .then(|| unqueued.iter().map(|p| p.1).sum::<f64>() / unqueued.len() as f64);
        let unqueued_slope = timeline::slope(&unqueued).map(|s| s * 3600.0);
        let during: Vec<&timeline::Sample> = samples
            .iter()
            .filter(|s| s.t_s >= 0.0 && s.t_s <= duration)
            .collect();
        let last = samples.last();
        SoakOutcome {
            duration_s: duration,
            warmup_s: warmup,
            counts: tally.soak,
            calls: tally.calls,
            answers: tally.answers,
            call_latency_us: tally.call_latency.summary(),
            storms: self.soak.storms,
            storm_sessions: soak.storm_sessions as u64,
            storm_rejoin_s: self
                .soak
                .storm_at
                .iter()
                .map(|&(at, _, back)| match back {
                    Some(t) if t != u64::MAX => Some((t - at) as f64 / 1e9),
                    _ => None,
                })
                .collect(),
            rss_slope_bytes_per_h: rss_slope,
            rss_mean_bytes: rss_mean,
            rss_slope_pct_per_h: match (rss_slope, rss_mean) {
                (Some(s), Some(m)) if m > 0.0 => Some(s / m * 100.0),
                _ => None,
            },
            rss_unqueued_slope_bytes_per_h: unqueued_slope,
            rss_unqueued_mean_bytes: unqueued_mean,
            rss_unqueued_slope_pct_per_h: match (unqueued_slope, unqueued_mean) {
                (Some(s), Some(m)) if m > 0.0 => Some(s / m * 100.0),
                _ => None,
            },
            rss_min_kib: during.iter().filter_map(|s| s.rss_kib).min(),
            rss_max_kib: during.iter().filter_map(|s| s.rss_kib).max(),
            fds_before: self.soak.fds_before,
            fds_slope_per_h: timeline::slope(&fds).map(|s| s * 3600.0),
            fds_max: during.iter().filter_map(|s| s.fds).max(),
            fds_after: last.filter(|s| s.t_s > duration).and_then(|s| s.fds),
            rss_before_kib: self.soak.rss_before_kib,
            rss_after_kib: last.filter(|s| s.t_s > duration).and_then(|s| s.rss_kib),
            dead_sessions: reports.iter().map(|r| r.dead as u64).sum(),
        }
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
