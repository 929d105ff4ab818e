//! The result of one run: what the summary table shows and what `--json` writes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::soak::Counts;
use crate::stats::LatencySummary;
use crate::timeline::{LatencyPoint, Sample};

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Everything delivered exactly once, in order.
    Ok,
    /// Lost, duplicated, reordered or corrupt messages.
    Integrity,
    /// A phase made no progress for `--timeout`.
    Timeout,
    /// Connection, handshake or protocol error (or an ABORT/ERROR from the router).
    Error,
    /// The router's resident memory passed `--router-rss-max`: the run was stopped there.
    Ceiling,
}

impl Status {
    /// The process exit status for this outcome.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Integrity => 1,
            Status::Timeout => 3,
            Status::Error => 4,
            Status::Ceiling => 5,
        }
    }
}

/// Errors of one kind (runs that count errors instead of stopping at the first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCount {
    /// Role and gist of the message, e.g. `caller: CALL with ERROR wamp.error.no_such_procedure`.
    pub kind: String,
    /// Caused by the workload on purpose (a slow subscriber disconnected as a slow consumer), not a failure.
    pub own: bool,
    pub count: u64,
    /// The first message of this kind, in full.
    pub example: String,
}

/// What became of one slow subscriber.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlowFate {
    /// Its session index in the plan.
    pub index: usize,
    /// The router closed its connection (a slow consumer); otherwise it read everything at the end and left.
    pub disconnected: bool,
    /// Distinct events it received, and events of the run it did not receive.
    pub received: u64,
    pub lost: u64,
    /// Events duplicated or out of order (never expected, whatever the policy).
    pub regressed: u64,
}

/// The slow subscribers of a `slow` run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SlowOutcome {
    pub slow_subscribers: u64,
    /// `never` or `<bytes>/s`.
    pub read: String,
    pub disconnected: u64,
    pub survived: u64,
    pub received_min: u64,
    pub received_max: u64,
    /// Events the slow subscribers did not receive, summed (dropped by the router, or never sent to them after
    /// their disconnection).
    pub not_received: u64,
    pub regressed: u64,
    pub fates: Vec<SlowFate>,
}

impl SlowOutcome {
    pub fn from_fates(read: String, mut fates: Vec<SlowFate>) -> SlowOutcome {
        fates.sort_by_key(|f| f.index);
        SlowOutcome {
            slow_subscribers: fates.len() as u64,
            read,
            disconnected: fates.iter().filter(|f| f.disconnected).count() as u64,
            survived: fates.iter().filter(|f| !f.disconnected).count() as u64,
            received_min: fates.iter().map(|f| f.received).min().unwrap_or(0),
            received_max: fates.iter().map(|f| f.received).max().unwrap_or(0),
            not_received: fates.iter().map(|f| f.lost).sum(),
            regressed: fates.iter().map(|f| f.regressed).sum(),
            fates,
        }
    }
}

/// The soak's own findings, beyond the common result fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SoakOutcome {
    /// Seconds of the run phase and of the warm-up left out of the slopes.
    pub duration_s: f64,
    pub warmup_s: f64,
    pub counts: Counts,
    pub calls: u64,
    pub answers: u64,
    pub call_latency_us: LatencySummary,
    pub storms: u64,
    pub storm_sessions: u64,
    /// Seconds from each storm until every storm session had joined and subscribed again (`None`: not all did).
    pub storm_rejoin_s: Vec<Option<f64>>,
    /// Router RSS after the warm-up: least-squares slope (bytes per hour), mean (bytes), slope as a share of the
    /// mean per hour (percent), first and last sample.
    pub rss_slope_bytes_per_h: Option<f64>,
    pub rss_mean_bytes: Option<f64>,
    pub rss_slope_pct_per_h: Option<f64>,
    /// The same for RSS less the router's queued bytes (`kreisel_outbox_bytes` of the metrics endpoint; `None`
    /// without it).
    #[serde(default)]
    pub rss_unqueued_slope_bytes_per_h: Option<f64>,
    #[serde(default)]
    pub rss_unqueued_mean_bytes: Option<f64>,
    #[serde(default)]
    pub rss_unqueued_slope_pct_per_h: Option<f64>,
    pub rss_min_kib: Option<u64>,
    pub rss_max_kib: Option<u64>,
    /// Router open descriptors: before the run, least-squares slope after the warm-up (per hour), most seen, and
    /// after every session left (with the router given up to 10 s to close them).
    pub fds_before: Option<u64>,
    pub fds_slope_per_h: Option<f64>,
    pub fds_max: Option<u64>,
    pub fds_after: Option<u64>,
    /// Router RSS before the run and after every session left.
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    /// Sessions that failed and stayed out of the accounting.
    pub dead_sessions: u64,
}

/// Machine-readable results (`--json FILE`). Throughput and cost fields refer to the measured window: from the
/// run's start to the last delivery (fanout, fanin, rpc), from the first connect to the last WELCOME (connect),
/// or the churn duration (churn).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResult {
    pub tool: String,
    /// Name of the router under test (`--label`), used by `report` to tell runs apart.
    pub label: String,
    pub scenario: String,
    /// Scenario and load-shaping parameters in one line, the key `report` groups by.
    pub case: String,
    pub params: serde_json::Map<String, serde_json::Value>,
    pub url: String,
    pub transport: String,
    pub serializer: String,
    pub threads: usize,
    /// `closed` (window), `open` (rate) or `-` (connect, churn).
    pub mode: String,
    pub window: Option<u64>,
    pub rate: Option<f64>,
    pub payload_bytes: usize,
    pub status: Status,
    pub errors: Vec<String>,
    pub sessions: u64,
    pub duration_s: f64,
    /// PUBLISH/CALL sent.
    pub sent: u64,
    /// Distinct EVENTs (all subscribers) or RESULTs; joins (connect); cycles (churn).
    pub received: u64,
    /// `received` per second: deliveries, results, joins or cycles per second.
    pub msgs_per_s: f64,
    /// Payload (padding) megabytes (10^6) delivered per second.
    pub mb_per_s: f64,
    pub sent_per_s: f64,
    /// What `latency_us` measures.
    pub latency_kind: String,
    pub latency_us: LatencySummary,
    /// Open loop: how late the generator sent relative to its schedule (its own share of the latency).
    pub send_lag_us: Option<LatencySummary>,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub corrupt: u64,
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
    /// Load generator CPU time (user + system, all threads) per message in `received`.
    pub cpu_ns_per_msg: f64,
    pub wire_rx_bytes: u64,
    pub wire_tx_bytes: u64,
    pub router_pid: Option<u32>,
    pub router_rss_before_kib: Option<u64>,
    pub router_rss_after_kib: Option<u64>,
    /// connect: router RSS growth per joined session.
    pub router_rss_per_session_bytes: Option<f64>,
    /// Router CPU time (user + system, from /proc) during the measured window, and per message.
    pub router_cpu_s: Option<f64>,
    pub router_cpu_ns_per_msg: Option<f64>,
    /// Unix time the run ended.
    pub timestamp: u64,
    /// The run phase began (otherwise no figure means anything and none is printed).
    #[serde(default = "yes")]
    pub started: bool,
    /// Errors counted by kind (slow, soak).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_kinds: Vec<ErrorCount>,
    /// Router samples over time (slow, soak): RSS, descriptors, CPU, the generator's rates, metrics.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Sample>,
    /// Latency per second of the run (slow, soak).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency_series: Vec<LatencyPoint>,
    /// Highest router RSS sampled during the run (KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_rss_max_kib: Option<u64>,
    /// Counters of the metrics endpoint that changed between the first and the last scrape.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics_delta: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow: Option<SlowOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<SoakOutcome>,
}

fn yes() -> bool {
    true
}

impl RunResult {
    /// The summary table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let mode = match (self.window, self.rate) {
            (Some(w), _) if self.transport == "nats" => {
                format!("closed loop, window {w} (PING/PONG per window)")
            }
            (Some(w), _) => format!("closed loop, window {w}"),
            (_, Some(r)) => format!("open loop, {} msgs/s", group(r as u64)),
            _ => "-".into(),
        };
        let _ = writeln!(t, "kreisel-loadtest {} [{}]", self.case, self.label);
        let target = if self.transport == "nats" {
            format!("{} (nats, --serializer ignored)", self.url)
        } else {
            format!("{} {} ({})", self.url, self.serializer, self.transport)
        };
        let _ = writeln!(
            t,
            "  {:<12}{target}, {} thread(s), {}",
            "target", self.threads, mode
        );
        let _ = writeln!(t, "  {:<12}{:?}", "status", self.status);
        for e in self.errors.iter().take(10) {
            let _ = writeln!(t, "  {:<12}{e}", "error");
        }
        if self.errors.len() > 10 {
            let _ = writeln!(t, "  {:<12}... {} more", "", self.errors.len() - 10);
        }
        if !self.started {
            let _ = writeln!(
                t,
                "  {:<12}none: the run never started (no figures to report)",
                "results"
            );
            return t;
        }
        for e in self.error_kinds.iter() {
            let _ = writeln!(
                t,
                "  {:<12}{} x {}{}",
                if e.own { "own events" } else { "errors" },
                group(e.count),
                e.kind,
                if e.own { " (the workload's own)" } else { "" }
            );
        }
        let _ = writeln!(t, "  {:<12}{}", "sessions", group(self.sessions));
        let _ = writeln!(t, "  {:<12}{:.3} s", "duration", self.duration_s);
        if self.sent_per_s > 0.0 {
            let _ = writeln!(
                t,
                "  {:<12}{:>14} {:>14} msgs/s",
                "sent",
                group(self.sent),
                group(self.sent_per_s as u64)
            );
        } else if self.sent > 0 {
            let _ = writeln!(t, "  {:<12}{:>14}", "sent", group(self.sent));
        }
        let (what, unit) = match self.scenario.as_str() {
            "connect" => ("joined", "joins"),
            "churn" => ("cycles", "cycles"),
            "rpc" => ("results", "calls"),
            _ => ("delivered", "msgs"),
        };
        let payload = if self.mb_per_s > 0.0 {
            format!("   {:.2} MB/s payload", self.mb_per_s)
        } else {
            String::new()
        };
        let _ = writeln!(
            t,
            "  {:<12}{:>14} {:>14} {unit}/s{payload}",
            what,
            group(self.received),
            group(self.msgs_per_s as u64),
        );
        let l = &self.latency_us;
        let _ = writeln!(
            t,
            "  {:<12}p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (µs, {} samples; {})",
            "latency",
            us(l.p50),
            us(l.p90),
            us(l.p99),
            us(l.p999),
            us(l.max),
            group(l.count),
            self.latency_kind
        );
        if let Some(lag) = &self.send_lag_us {
            let _ = writeln!(
                t,
                "  {:<12}p50 {}  p99 {}  max {}  (µs behind schedule)",
                "send lag",
                us(lag.p50),
                us(lag.p99),
                us(lag.max)
            );
        }
        if self.scenario != "connect" {
            let _ = writeln!(
                t,
                "  {:<12}lost {}  duplicated {}  reordered {}  corrupt {}",
                "integrity", self.lost, self.duplicated, self.reordered, self.corrupt
            );
        }
        let _ = writeln!(
            t,
            "  {:<12}user {:.3} s  sys {:.3} s  = {:.0} ns per message (load generator)",
            "cpu", self.cpu_user_s, self.cpu_sys_s, self.cpu_ns_per_msg
        );
        if let Some(cpu) = self.router_cpu_s {
            let per = self
                .router_cpu_ns_per_msg
                .map(|n| format!(" = {n:.0} ns per message"))
                .unwrap_or_default();
            let _ = writeln!(
                t,
                "  {:<12}{cpu:.3} s{per} (router pid {})",
                "router cpu",
                self.router_pid.unwrap_or(0)
            );
        }
        if let (Some(before), Some(after)) = (self.router_rss_before_kib, self.router_rss_after_kib)
        {
            let per = self
                .router_rss_per_session_bytes
                .map(|b| format!(", {b:.0} bytes per session"))
                .unwrap_or_default();
            let _ = writeln!(t, "  {:<12}{before} KiB -> {after} KiB{per}", "router rss");
        }
        if let Some(max) = self.router_rss_max_kib {
            let _ = writeln!(t, "  {:<12}{max} KiB at most during the run", "router rss");
        }
        if !self.metrics_delta.is_empty() {
            let changed: Vec<String> = self
                .metrics_delta
                .iter()
                .map(|(k, v)| format!("{k} +{v}"))
                .collect();
            let _ = writeln!(t, "  {:<12}{}", "metrics", changed.join("  "));
        }
        if let Some(soak) = &self.soak {
            soak_lines(&mut t, soak);
        }
        if let Some(slow) = self.slow.as_ref().filter(|s| s.slow_subscribers > 0) {
            let _ = writeln!(
                t,
                "  {:<12}{} reading {}: {} disconnected by the router, {} survived; received {}-{} events each, \
                 {} not received in all, {} out of order or duplicated",
                "slow subs",
                slow.slow_subscribers,
                slow.read,
                slow.disconnected,
                slow.survived,
                group(slow.received_min),
                group(slow.received_max),
                group(slow.not_received),
                slow.regressed
            );
        }
        let _ = writeln!(
            t,
            "  {:<12}rx {} bytes  tx {} bytes",
            "wire",
            group(self.wire_rx_bytes),
            group(self.wire_tx_bytes)
        );
        t
    }
}

fn soak_lines(t: &mut String, s: &SoakOutcome) {
    let c = &s.counts;
    let _ = writeln!(
        t,
        "  {:<12}{} calls, {} answered: {} completed with every progressive result ({} in all), canceled {} skip / \
         {} kill / {} killnowait, {} answered before their cancel took effect",
        "rpc",
        group(s.calls),
        group(s.answers),
        group(c.calls_completed),
        group(c.progress_results),
        group(c.canceled_skip),
        group(c.canceled_kill),
        group(c.canceled_killnowait),
        group(c.cancel_too_late)
    );
    let l = &s.call_latency_us;
    let _ = writeln!(
        t,
        "  {:<12}p50 {:.0}  p99 {:.0}  max {:.0}  (µs, CALL to final RESULT, from intended send time)",
        "call lat.", l.p50, l.p99, l.max
    );
    let _ = writeln!(
        t,
        "  {:<12}{} sessions left by GOODBYE, {} by closing the socket, {} in the middle of a frame; {} pattern events",
        "churn",
        group(c.churn_goodbye),
        group(c.churn_abrupt),
        group(c.churn_mid_frame),
        group(c.churn_events)
    );
    let _ = writeln!(
        t,
        "  {:<12}{} sessions disconnected by the router, {} read what was queued and left; {} events",
        "slow subs",
        group(c.slow_disconnected),
        group(c.slow_survived),
        group(c.slow_events)
    );
    let rejoin: Vec<String> = s
        .storm_rejoin_s
        .iter()
        .map(|r| r.map_or("not all".into(), |v| format!("{v:.2} s")))
        .collect();
    let _ = writeln!(
        t,
        "  {:<12}{} storms of {} sessions; all joined again after: {}",
        "storms",
        s.storms,
        s.storm_sessions,
        if rejoin.is_empty() {
            "-".into()
        } else {
            rejoin.join(", ")
        }
    );
    let mib = |k: Option<u64>| k.map_or("-".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0));
    let _ = writeln!(
        t,
        "  {:<12}before {} MiB, during {}-{} MiB, after {} MiB; after the {:.0} s warm-up: slope {} ({} of the mean {} per hour)",
        "router rss",
        mib(s.rss_before_kib),
        mib(s.rss_min_kib),
        mib(s.rss_max_kib),
        mib(s.rss_after_kib),
        s.warmup_s,
        s.rss_slope_bytes_per_h
            .map_or("-".into(), |v| format!("{:+.2} MiB/h", v / 1048576.0)),
        s.rss_slope_pct_per_h
            .map_or("-".into(), |v| format!("{v:+.2}%")),
        s.rss_mean_bytes
            .map_or("-".into(), |v| format!("{:.1} MiB", v / 1048576.0)),
    );
    if let Some(slope) = s.rss_unqueued_slope_bytes_per_h {
        let _ = writeln!(
            t,
            "  {:<12}RSS less the outboxes' bytes after the warm-up: slope {:+.2} MiB/h ({} of the mean {} per hour)",
            "",
            slope / 1048576.0,
            s.rss_unqueued_slope_pct_per_h
                .map_or("-".into(), |v| format!("{v:+.2}%")),
            s.rss_unqueued_mean_bytes
                .map_or("-".into(), |v| format!("{:.1} MiB", v / 1048576.0)),
        );
    }
    let n = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    let _ = writeln!(
        t,
        "  {:<12}before {}, at most {} during, after {}; slope after warm-up {} per hour",
        "router fds",
        n(s.fds_before),
        n(s.fds_max),
        n(s.fds_after),
        s.fds_slope_per_h.map_or("-".into(), |v| format!("{v:+.1}"))
    );
    if s.dead_sessions > 0 {
        let _ = writeln!(
            t,
            "  {:<12}{} session(s) failed and were left out of the accounting",
            "dead", s.dead_sessions
        );
    }
}

/// `1234567` as `1,234,567`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds with sensible precision.
fn us(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1234567), "1,234,567");
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Status::Ok.exit_code(), 0);
        assert_eq!(Status::Integrity.exit_code(), 1);
        assert_eq!(Status::Timeout.exit_code(), 3);
        assert_eq!(Status::Error.exit_code(), 4);
        assert_eq!(Status::Ceiling.exit_code(), 5);
    }
}
