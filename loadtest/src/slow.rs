//! `slow`: the same run once per slow subscriber count — S fast subscribers and K slow ones on one topic, one
//! open-loop publisher — and the comparison of the runs: the fast subscribers' latency and loss next to the slow
//! ones' fate and the router's memory against its configured budget.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cli::{slow_invocations, SlowArgs};
use crate::run;
use crate::summary::{group, RunResult, Status};
use crate::timeline::{self, Panel, Series, COLORS};

/// The fast subscribers' p99 with slow subscribers may be at most this multiple of the baseline's (the goal).
pub const P99_GOAL: f64 = 1.10;

/// What a router may hold per byte it counts against its per-connection limit: the queued message itself, the
/// allocator's rounding of its buffer (a frame a little over a power of two sits in a buffer of twice its length),
/// and the queue's own entry. 3 covers messages of about 100 bytes and more. Measured on kreisel with 1 KiB events
/// (JSON over WebSocket, 1.1 KiB frames in 2 KiB buffers): 0.7 per slow subscriber when they share one shard (their
/// queues hold the same frames), 2.17 with 4 shards, where each slow subscriber's shard holds its own copy.
pub const BUDGET_FACTOR: u64 = 3;

/// One run of the comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlowRow {
    pub slow_subscribers: u64,
    pub read: String,
    pub status: Status,
    /// The fast subscribers: latency (µs, from the intended send time), and what they missed.
    pub fast_p50_us: f64,
    pub fast_p99_us: f64,
    pub fast_max_us: f64,
    pub fast_lost: u64,
    pub fast_duplicated: u64,
    pub fast_reordered: u64,
    /// `fast_p99_us` over the baseline's (the first run's), and whether that is within [`P99_GOAL`].
    pub p99_ratio: Option<f64>,
    pub p99_goal_met: Option<bool>,
    /// The slow subscribers' fate.
    pub disconnected: u64,
    pub survived: u64,
    pub not_received: u64,
    /// Router RSS (KiB): when the run phase began, its highest sample, after the slow subscribers settled.
    pub rss_start_kib: Option<u64>,
    pub rss_max_kib: Option<u64>,
    pub rss_end_kib: Option<u64>,
    /// `rss_max_kib - rss_start_kib`.
    pub rss_growth_kib: Option<i64>,
    /// The bound the highest sample is held against (given --outbox-max): the baseline run's highest sample plus
    /// [`BUDGET_FACTOR`] x K x outbox_max, with K the most slow subscribers of this run and the runs before it (a
    /// process rarely gives memory back, so what an earlier run needed stays). None for the baseline run itself.
    pub rss_budget_kib: Option<u64>,
    pub within_budget: Option<bool>,
}

/// What `slow --json` writes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SlowReport {
    pub tool: String,
    pub label: String,
    pub fast_subscribers: u64,
    pub rate: f64,
    pub duration_s: f64,
    pub size: usize,
    pub outbox_max: Option<u64>,
    pub rows: Vec<SlowRow>,
    pub runs: Vec<RunResult>,
}

impl SlowReport {
    /// The exit status: the first run that did not end `ok`, else 0.
    pub fn exit_code(&self) -> i32 {
        self.runs
            .iter()
            .map(|r| r.status)
            .find(|s| *s != Status::Ok)
            .map_or(0, |s| s.exit_code())
    }

    /// The comparison table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "kreisel-loadtest slow: {} fast subscribers, 1 publisher at {}/s for {} s, {} B padding [{}]",
            self.fast_subscribers,
            group(self.rate as u64),
            self.duration_s,
            self.size,
            self.label
        );
        let _ = writeln!(
            t,
            "  {:>5} {:<10} {:<9} {:>9} {:>9} {:>9} {:>6} {:>7}  {:<28} {:>22} {:>12} {:>12}",
            "slow",
            "read",
            "status",
            "fast p50",
            "fast p99",
            "fast max",
            "lost",
            "p99 x",
            "slow subscribers' fate",
            "router RSS start/max/end",
            "growth",
            "bound"
        );
        let kib = |v: Option<u64>| v.map_or("-".to_owned(), |v| format!("{}", v / 1024));
        for r in &self.rows {
            let stopped = !matches!(r.status, Status::Ok | Status::Integrity);
            let fate = if stopped {
                "(run stopped)".to_owned()
            } else if r.slow_subscribers == 0 {
                "-".to_owned()
            } else {
                format!(
                    "{} cut off, {} kept; {} missed",
                    r.disconnected,
                    r.survived,
                    group(r.not_received)
                )
            };
            let _ = writeln!(
                t,
                "  {:>5} {:<10} {:<9} {:>9} {:>9} {:>9} {:>6} {:>7}  {:<28} {:>22} {:>12} {:>12}",
                r.slow_subscribers,
                r.read,
                format!("{:?}", r.status).to_lowercase(),
                format!("{:.0} µs", r.fast_p50_us),
                format!("{:.0} µs", r.fast_p99_us),
                format!("{:.0} µs", r.fast_max_us),
                if stopped {
                    "-".to_owned()
                } else {
                    (r.fast_lost + r.fast_duplicated + r.fast_reordered).to_string()
                },
                r.p99_ratio.map_or("-".into(), |x| format!("{x:.2}")),
                fate,
                format!(
                    "{}/{}/{} MiB",
                    kib(r.rss_start_kib),
                    kib(r.rss_max_kib),
                    kib(r.rss_end_kib)
                ),
                r.rss_growth_kib
                    .map_or("-".into(), |g| format!("{:+} MiB", g / 1024)),
                r.rss_budget_kib.map_or("-".into(), |b| format!(
                    "{} MiB {}",
                    b / 1024,
                    match r.within_budget {
                        Some(true) => "ok",
                        Some(false) => "OVER",
                        None => "",
                    }
                )),
            );
        }
        for r in self.rows.iter().skip(1) {
            if let (Some(ratio), Some(met)) = (r.p99_ratio, r.p99_goal_met) {
                let _ = writeln!(
                    t,
                    "  fast p99 with {} slow subscriber(s): {ratio:.2} x the run with {} (goal: at most {P99_GOAL:.2} x): {}",
                    r.slow_subscribers,
                    self.rows[0].slow_subscribers,
                    if met { "met" } else { "NOT met" }
                );
            }
        }
        for run in &self.runs {
            if !run.errors.is_empty() || run.status != Status::Ok {
                let _ = writeln!(t, "  run {} ended {:?}:", run.case, run.status);
                for e in run.errors.iter().take(5) {
                    let _ = writeln!(t, "    {e}");
                }
            }
        }
        t
    }
}

/// Runs every count of `--slow` in turn and compares them.
pub fn run(a: &SlowArgs) -> Result<SlowReport, String> {
    let invocations = slow_invocations(a)?;
    let mut runs: Vec<RunResult> = Vec::new();
    for (n, inv) in invocations.into_iter().enumerate() {
        if n > 0 {
            std::thread::sleep(Duration::from_secs_f64(a.pause));
        }
        let result = run::execute(inv.plan, &inv.options);
        if !inv.options.quiet && result.started {
            print!("{}", result.table());
        }
        let stop = matches!(result.status, Status::Ceiling | Status::Error) || !result.started;
        runs.push(result);
        if stop {
            // The router ran out of its memory ceiling, or cannot be reached: the other runs would mean nothing.
            break;
        }
    }
    let rows = rows(&runs, a.outbox_max);
    let report = SlowReport {
        tool: format!("kreisel-loadtest {}", env!("CARGO_PKG_VERSION")),
        label: a.common.label.clone(),
        fast_subscribers: a.subscribers as u64,
        rate: a.rate,
        duration_s: a.duration,
        size: a.size,
        outbox_max: a.outbox_max,
        rows,
        runs,
    };
    if let Some(path) = &a.watch.svg {
        plot(&report, path)?;
    }
    Ok(report)
}

fn rows(runs: &[RunResult], outbox_max: Option<u64>) -> Vec<SlowRow> {
    let base_p99 = runs.first().map(|r| r.latency_us.p99);
    let base_rss = runs.first().and_then(|r| r.router_rss_max_kib);
    let mut k_max = 0;
    runs.iter()
        .enumerate()
        .map(|(n, r)| {
            let slow = r.slow.clone().unwrap_or_default();
            let k = r
                .params
                .get("slow")
                .and_then(|v| v.as_u64())
                .unwrap_or(slow.slow_subscribers);
            // Only whole runs are compared: a run that was stopped has partial figures.
            let whole =
                |r: &RunResult| r.started && matches!(r.status, Status::Ok | Status::Integrity);
            let p99_ratio = base_p99
                .filter(|b| *b > 0.0 && whole(r) && runs.first().is_some_and(whole))
                .map(|b| r.latency_us.p99 / b);
            let growth = match (r.router_rss_max_kib, r.router_rss_before_kib) {
                (Some(max), Some(start)) => Some(max as i64 - start as i64),
                _ => None,
            };
            k_max = k_max.max(k);
            let budget = match (outbox_max, base_rss) {
                (Some(o), Some(base)) if n > 0 => Some(base + BUDGET_FACTOR * k_max * o / 1024),
                _ => None,
            };
            SlowRow {
                slow_subscribers: k,
                read: if k == 0 {
                    "-".into()
                } else {
                    slow.read.clone()
                },
                status: r.status,
                fast_p50_us: r.latency_us.p50,
                fast_p99_us: r.latency_us.p99,
                fast_max_us: r.latency_us.max,
                fast_lost: r.lost,
                fast_duplicated: r.duplicated,
                fast_reordered: r.reordered,
                p99_ratio,
                p99_goal_met: p99_ratio.map(|x| x <= P99_GOAL),
                disconnected: slow.disconnected,
                survived: slow.survived,
                not_received: slow.not_received,
                rss_start_kib: r.router_rss_before_kib,
                rss_max_kib: r.router_rss_max_kib,
                rss_end_kib: r.router_rss_after_kib,
                rss_growth_kib: growth,
                rss_budget_kib: budget,
                within_budget: match (r.router_rss_max_kib, budget) {
                    (Some(max), Some(b)) => Some(max <= b),
                    _ => None,
                },
            }
        })
        .collect()
}

/// The router's RSS and the fast subscribers' p99 over time, one line per run.
fn plot(report: &SlowReport, path: &Path) -> Result<(), String> {
    let name = |row: &SlowRow| {
        if row.slow_subscribers == 0 {
            "no slow subscribers".to_owned()
        } else {
            format!("{} slow subscribers ({})", row.slow_subscribers, row.read)
        }
    };
    let runs = || report.runs.iter().zip(&report.rows).enumerate();
    let rss = runs()
        .map(|(i, (run, row))| {
            let points = run
                .samples
                .iter()
                .filter_map(|s| s.rss_kib.map(|k| (s.t_s, k as f64 / 1024.0)))
                .collect();
            Series::new(name(row), points, COLORS[i % COLORS.len()])
        })
        .collect();
    let p99 = runs()
        .map(|(i, (run, row))| {
            let points = run
                .latency_series
                .iter()
                .filter(|p| p.events > 0)
                .map(|p| (p.t_s, p.events_p99_us / 1000.0))
                .collect();
            Series::new(name(row), points, COLORS[i % COLORS.len()])
        })
        .collect();
    let title = format!(
        "slow subscribers [{}]: {} fast subscribers, {}/s, {} B",
        report.label, report.fast_subscribers, report.rate, report.size
    );
    timeline::plot(
        path,
        &title,
        &[
            Panel {
                title: "router resident memory (the publisher stops at the orange line)".into(),
                y_label: "RSS (MiB)".into(),
                series: rss,
                markers: vec![report.duration_s],
            },
            Panel {
                title: "fast subscribers: p99 latency per second, from intended send time".into(),
                y_label: "ms".into(),
                series: p99,
                markers: vec![report.duration_s],
            },
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(k: u64, p99: f64, start: u64, max: u64) -> RunResult {
        let mut r: RunResult = serde_json::from_value(serde_json::json!({
            "tool": "t", "label": "l", "scenario": "slow", "case": "c", "params": {"slow": k},
            "url": "rs://127.0.0.1:1", "transport": "rawsocket", "serializer": "msgpack", "threads": 1,
            "mode": "open", "window": null, "rate": 10.0, "payload_bytes": 1, "status": "ok", "errors": [],
            "sessions": 1, "duration_s": 1.0, "sent": 1, "received": 1, "msgs_per_s": 1.0, "mb_per_s": 0.0,
            "sent_per_s": 1.0, "latency_kind": "", "latency_us": {"count": 1, "mean": 1.0, "p50": 1.0,
            "p90": 1.0, "p99": 1.0, "p999": 1.0, "max": 1.0}, "send_lag_us": null, "lost": 0, "duplicated": 0,
            "reordered": 0, "corrupt": 0, "cpu_user_s": 0.0, "cpu_sys_s": 0.0, "cpu_ns_per_msg": 0.0,
            "wire_rx_bytes": 0, "wire_tx_bytes": 0, "router_pid": 1, "router_rss_before_kib": start,
            "router_rss_after_kib": max, "router_rss_per_session_bytes": null, "router_cpu_s": null,
            "router_cpu_ns_per_msg": null, "timestamp": 0
        }))
        .expect("a result");
        r.latency_us.p99 = p99;
        r.router_rss_max_kib = Some(max);
        r
    }

    #[test]
    fn ratios_and_memory_bounds() {
        // outbox_max 1 MiB: K = 2 may add 6 MiB to the first run's 10 MiB; a later K = 0 run keeps what K = 2
        // needed; K = 3 at 20 MiB is over 10 + 9.
        let runs = [
            run(0, 100.0, 10_000, 10_240),
            run(2, 105.0, 10_240, 16_000),
            run(0, 90.0, 16_000, 16_000),
            run(3, 300.0, 16_000, 20_000),
        ];
        let rows = rows(&runs, Some(1 << 20));
        assert_eq!(rows[0].rss_budget_kib, None);
        assert_eq!(rows[1].rss_budget_kib, Some(10_240 + 6144));
        assert_eq!(rows[2].within_budget, Some(true));
        assert_eq!(
            (rows[3].rss_budget_kib, rows[3].within_budget),
            (Some(10_240 + 9216), Some(false))
        );
        assert_eq!(rows[1].p99_goal_met, Some(true));
        assert_eq!(rows[3].p99_goal_met, Some(false));
        assert_eq!(rows[3].rss_growth_kib, Some(4000));
        assert_eq!(rows[3].slow_subscribers, 3);
        let report = SlowReport {
            tool: "t".into(),
            label: "l".into(),
            fast_subscribers: 1,
            rate: 10.0,
            duration_s: 1.0,
            size: 1,
            outbox_max: Some(1 << 20),
            rows,
            runs: runs.to_vec(),
        };
        assert_eq!(report.exit_code(), 0);
        assert!(report.table().contains("NOT met"));
        // A run stopped at the memory ceiling is not judged.
        let mut stopped = runs.to_vec();
        stopped[1].status = Status::Ceiling;
        let rows = super::rows(&stopped, Some(1 << 20));
        assert_eq!((rows[1].p99_ratio, rows[1].p99_goal_met), (None, None));
    }
}
