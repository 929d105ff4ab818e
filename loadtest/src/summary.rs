//! The result of one run: what the summary table shows and what `--json` writes.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::stats::LatencySummary;

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
}

impl Status {
    /// The process exit status for this outcome.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Integrity => 1,
            Status::Timeout => 3,
            Status::Error => 4,
        }
    }
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
    }
}
