//! The coordinator: starts the worker threads, walks the run through its phases (connect, join, subscribe or
//! register, run, drain, close) with a stall timeout on each, and assembles the [`RunResult`].

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mio::{Poll, Waker};

use crate::plan::{Mode, Plan, ScenarioKind};
use crate::roles::Tally;
use crate::stats::{Clock, Integrity};
use crate::summary::{RunResult, Status};
use crate::sys;
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
}

/// Why a phase ended early.
enum Stop {
    Timeout(String),
    Failed,
}

/// Runs `plan` to completion (or failure) and returns its result.
pub fn execute(plan: Plan, opts: &RunOptions) -> RunResult {
    sys::raise_fd_limit();
    let plan = Arc::new(plan);
    let shared = Arc::new(Shared::default());
    let clock = Clock::new();
    let mut coord = Coordinator::new(plan.clone(), shared.clone(), clock, opts);
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
}

impl<'a> Coordinator<'a> {
    fn new(
        plan: Arc<Plan>,
        shared: Arc<Shared>,
        clock: Clock,
        opts: &'a RunOptions,
    ) -> Coordinator<'a> {
        let rss_before_kib = opts.router_pid.and_then(|pid| sys::rss_kib(pid).ok());
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
        }
    }

    fn set_phase(&self, p: u8) {
        self.shared.phase.store(p, Ordering::Release);
        for w in &self.wakers {
            let _ = w.wake();
        }
    }

    fn open_window(&mut self) {
        self.window_start_ns = self.clock.now_ns();
        self.cpu_start = sys::cpu_time();
        self.router_cpu_start = self
            .opts
            .router_pid
            .and_then(|pid| sys::process_cpu(pid).ok());
    }

    fn close_window(&mut self) {
        self.window_end_ns = self.clock.now_ns();
        self.cpu_end = sys::cpu_time();
        self.router_cpu_end = self
            .opts
            .router_pid
            .and_then(|pid| sys::process_cpu(pid).ok());
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
            ScenarioKind::Fanout | ScenarioKind::Fanin | ScenarioKind::Rpc => {
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
            }
        }
        Ok(())
    }

    fn start_run(&mut self) {
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
            self.progress(name, v, target, end_ns, now);
            if v >= target || now >= end_ns {
                return Ok(());
            }
            if v != last {
                last = v;
                last_progress_ns = now;
            } else if now - last_progress_ns > timeout_ns {
                let unit = match name {
                    "run" => "messages sent and acknowledged",
                    "drain" => "deliveries",
                    "churn" => "cycles",
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
        self.result(reports, errors, timeout)
    }

    fn result(
        &self,
        reports: Vec<WorkerReport>,
        mut errors: Vec<String>,
        timeout: Option<String>,
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
        let status = if timeout.is_some() {
            Status::Timeout
        } else if !errors.is_empty() {
            Status::Error
        } else if !integrity.is_clean() {
            Status::Integrity
        } else {
            Status::Ok
        };
        if let Some(why) = timeout {
            errors.insert(0, format!("timeout: {why}"));
        }
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
            url: plan.endpoint.to_string(),
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
        }
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
