//! `report`: compares result files of several routers (told apart by their `label`) as a markdown table with
//! absolute numbers and ratios against a baseline, and as an SVG chart.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::cli::ReportArgs;
use crate::summary::{group, RunResult, Status};

/// One row of the comparison: a case on one transport and serializer, with each label's result.
struct Row<'a> {
    key: String,
    by_label: BTreeMap<&'a str, &'a RunResult>,
}

/// Results grouped for reporting.
pub struct Comparison<'a> {
    labels: Vec<&'a str>,
    baseline: &'a str,
    rows: Vec<Row<'a>>,
}

/// Reads result files: each holds one result object or an array of them.
pub fn load(paths: &[PathBuf]) -> Result<Vec<RunResult>, String> {
    let mut results = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
        let items = match value {
            serde_json::Value::Array(items) => items,
            one => vec![one],
        };
        for item in items {
            let result: RunResult = serde_json::from_value(item)
                .map_err(|e| format!("{}: not a kreisel-loadtest result: {e}", path.display()))?;
            results.push(result);
        }
    }
    Ok(results)
}

impl<'a> Comparison<'a> {
    /// Groups `results` by case, transport and serializer (in order of first appearance); a later result for the
    /// same row and label replaces an earlier one.
    pub fn new(results: &'a [RunResult], baseline: Option<&str>) -> Result<Comparison<'a>, String> {
        let mut labels: Vec<&str> = Vec::new();
        let mut rows: Vec<Row<'a>> = Vec::new();
        for r in results {
            if !labels.contains(&r.label.as_str()) {
                labels.push(&r.label);
            }
            let key = format!("{} · {} · {}", r.case, r.transport, r.serializer);
            match rows.iter_mut().find(|row| row.key == key) {
                Some(row) => {
                    row.by_label.insert(&r.label, r);
                }
                None => rows.push(Row {
                    key,
                    by_label: BTreeMap::from([(r.label.as_str(), r)]),
                }),
            }
        }
        let baseline = match baseline {
            Some(b) => *labels
                .iter()
                .find(|l| **l == b)
                .ok_or_else(|| format!("no results labelled `{b}`"))?,
            None => *labels.first().ok_or("no results to report")?,
        };
        Ok(Comparison {
            labels,
            baseline,
            rows,
        })
    }

    fn others(&self) -> impl Iterator<Item = &&'a str> {
        self.labels.iter().filter(move |l| **l != self.baseline)
    }

    /// The markdown report.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Load test comparison\n");
        let _ = writeln!(
            md,
            "Throughput is deliveries (fanout, fanin), results (rpc), joins (connect) or cycles (churn) per second; \
             latency is in µs (its kind per scenario is in the JSON). Ratios are `label / {}`: above 1 is better for \
             throughput, below 1 is better for latency. A result whose status is not `ok` is marked with its status.\n",
            self.baseline
        );
        let mut header = String::from("| # | case | transport | serializer |");
        let mut rule = String::from("|---|---|---|---|");
        for l in &self.labels {
            let _ = write!(header, " {l} msgs/s |");
            rule.push_str("---:|");
        }
        for l in self.others() {
            let _ = write!(header, " {l}/{} msgs/s |", self.baseline);
            rule.push_str("---:|");
        }
        for l in &self.labels {
            let _ = write!(header, " {l} p50 µs | {l} p99 µs |");
            rule.push_str("---:|---:|");
        }
        for l in self.others() {
            let _ = write!(header, " {l}/{} p99 |", self.baseline);
            rule.push_str("---:|");
        }
        let _ = writeln!(md, "{header}\n{rule}");
        for (i, row) in self.rows.iter().enumerate() {
            let any = row.by_label.values().next().copied();
            let Some(any) = any else { continue };
            let mut line = format!(
                "| {} | {} | {} | {} |",
                i + 1,
                any.case,
                any.transport,
                any.serializer
            );
            for l in &self.labels {
                let cell = row
                    .by_label
                    .get(l)
                    .map_or("–".into(), |r| mark(r, group(r.msgs_per_s as u64)));
                let _ = write!(line, " {cell} |");
            }
            let base = row.by_label.get(self.baseline);
            for l in self.others() {
                let cell = ratio(
                    row.by_label.get(l).map(|r| r.msgs_per_s),
                    base.map(|r| r.msgs_per_s),
                );
                let _ = write!(line, " {cell} |");
            }
            for l in &self.labels {
                match row.by_label.get(l) {
                    Some(r) => {
                        let _ =
                            write!(line, " {:.0} | {:.0} |", r.latency_us.p50, r.latency_us.p99);
                    }
                    None => line.push_str(" – | – |"),
                }
            }
            for l in self.others() {
                let cell = ratio(
                    row.by_label.get(l).map(|r| r.latency_us.p99),
                    base.map(|r| r.latency_us.p99),
                );
                let _ = write!(line, " {cell} |");
            }
            let _ = writeln!(md, "{line}");
        }
        let extras: Vec<String> = self
            .rows
            .iter()
            .flat_map(|row| row.by_label.values())
            .filter_map(|r| {
                r.router_rss_per_session_bytes.map(|b| {
                    format!(
                        "- {} ({} {} {}): router memory {b:.0} bytes per session",
                        r.label, r.case, r.transport, r.serializer
                    )
                })
            })
            .collect();
        if !extras.is_empty() {
            let _ = writeln!(md, "\n{}", extras.join("\n"));
        }
        md
    }

    /// The SVG chart: throughput and p99 latency per row and label, on log scales.
    pub fn svg(&self, path: &Path) -> Result<(), String> {
        let height = 260 + 2 * 28 * self.rows.len().max(1) as u32;
        let root = SVGBackend::new(path, (1100, height.max(600))).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (top, bottom) = root.split_vertically(height.max(600) / 2);
        self.panel(&top, "throughput (msgs/s, log scale)", |r| r.msgs_per_s)?;
        self.panel(&bottom, "p99 latency (µs, log scale)", |r| {
            r.latency_us.p99
        })?;
        root.present()
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    fn panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        title: &str,
        value: impl Fn(&RunResult) -> f64,
    ) -> Result<(), String> {
        let labels = self.labels.len();
        // Each row takes `labels` bar slots plus one gap slot.
        let slots = (self.rows.len() * (labels + 1)).max(1) as i32;
        let values: Vec<f64> = self
            .rows
            .iter()
            .flat_map(|r| r.by_label.values())
            .map(|r| value(r))
            .filter(|v| *v > 0.0)
            .collect();
        let max = values.iter().copied().fold(1.0f64, f64::max);
        let min = values.iter().copied().fold(max, f64::min);
        // Log axis from a power of ten below the smallest bar, so bars differ visibly.
        let floor = 10f64.powf((min / 2.0).log10().floor()).max(0.1);
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d((0..slots).into_segmented(), (floor..max * 2.0).log_scale())
            .map_err(|e| e.to_string())?;
        let per_row = labels as i32 + 1;
        let rows = self.rows.len() as i32;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(slots as usize)
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(s) if s % per_row == 0 && s / per_row < rows => {
                    format!("#{}", s / per_row + 1)
                }
                _ => String::new(),
            })
            .y_label_formatter(&|y| short(*y))
            .draw()
            .map_err(|e| e.to_string())?;
        for (j, label) in self.labels.iter().enumerate() {
            let color = Palette99::pick(j).to_rgba();
            let bars = self.rows.iter().enumerate().filter_map(|(i, row)| {
                let r = row.by_label.get(label)?;
                let x = i as i32 * per_row + j as i32;
                let v = value(r).max(0.5);
                Some(Rectangle::new(
                    [
                        (SegmentValue::Exact(x), 0.5),
                        (SegmentValue::Exact(x + 1), v),
                    ],
                    color.filled(),
                ))
            });
            chart
                .draw_series(bars)
                .map_err(|e| e.to_string())?
                .label(label.to_string())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// `value` with the result's status appended when it is not ok.
fn mark(r: &RunResult, value: String) -> String {
    if r.status == Status::Ok {
        value
    } else {
        format!("{value} ({:?})", r.status).to_lowercase()
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

/// Axis numbers: 1500 as 1.5k, 2000000 as 2M.
fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

/// Runs the `report` subcommand.
pub fn run(args: &ReportArgs) -> Result<(), String> {
    let results = load(&args.inputs)?;
    let comparison = Comparison::new(&results, args.baseline.as_deref())?;
    let md = comparison.markdown();
    match &args.md {
        Some(path) => std::fs::write(path, &md).map_err(|e| format!("{}: {e}", path.display()))?,
        None => print!("{md}"),
    }
    if let Some(path) = &args.svg {
        comparison.svg(path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::LatencySummary;

    fn result(label: &str, case: &str, msgs_per_s: f64, p99: f64) -> RunResult {
        RunResult {
            tool: "kreisel-loadtest".into(),
            label: label.into(),
            scenario: "fanout".into(),
            case: case.into(),
            params: serde_json::Map::new(),
            url: "rs://127.0.0.1:8081".into(),
            transport: "rawsocket".into(),
            serializer: "json".into(),
            threads: 1,
            mode: "closed".into(),
            window: Some(64),
            rate: None,
            payload_bytes: 32,
            status: Status::Ok,
            errors: vec![],
            sessions: 3,
            duration_s: 1.0,
            sent: 10,
            received: 20,
            msgs_per_s,
            mb_per_s: 0.0,
            sent_per_s: 10.0,
            latency_kind: "publish to EVENT".into(),
            latency_us: LatencySummary {
                count: 20,
                p50: p99 / 2.0,
                p99,
                ..LatencySummary::default()
            },
            send_lag_us: None,
            lost: 0,
            duplicated: 0,
            reordered: 0,
            corrupt: 0,
            cpu_user_s: 0.0,
            cpu_sys_s: 0.0,
            cpu_ns_per_msg: 0.0,
            wire_rx_bytes: 0,
            wire_tx_bytes: 0,
            router_pid: None,
            router_rss_before_kib: None,
            router_rss_after_kib: None,
            router_rss_per_session_bytes: None,
            router_cpu_s: None,
            router_cpu_ns_per_msg: None,
            timestamp: 0,
            started: true,
            error_kinds: vec![],
            samples: vec![],
            latency_series: vec![],
            router_rss_max_kib: None,
            metrics_delta: Default::default(),
            slow: None,
            soak: None,
        }
    }

    #[test]
    fn table_has_ratios() {
        let results = vec![
            result("crossbar", "fanout a", 10_000.0, 800.0),
            result("kreisel", "fanout a", 250_000.0, 100.0),
            result("crossbar", "fanout b", 5_000.0, 900.0),
        ];
        let c = Comparison::new(&results, None).expect("comparison");
        let md = c.markdown();
        assert!(md.contains("| kreisel/crossbar msgs/s |"), "{md}");
        assert!(md.contains("| 1 | fanout a | rawsocket | json | 10,000 | 250,000 | 25.00× | 400 | 800 | 50 | 100 | 0.12× |"), "{md}");
        assert!(
            md.contains("| 2 | fanout b | rawsocket | json | 5,000 | – | – |"),
            "{md}"
        );
        let k = Comparison::new(&results, Some("kreisel")).expect("comparison");
        assert!(k.markdown().contains("crossbar/kreisel"));
        assert!(Comparison::new(&results, Some("nobody")).is_err());
    }

    #[test]
    fn files_and_svg() {
        let dir =
            std::env::temp_dir().join(format!("kreisel-loadtest-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let a = dir.join("a.json");
        let b = dir.join("b.json");
        std::fs::write(
            &a,
            serde_json::to_string(&result("crossbar", "c", 100.0, 50.0)).expect("json"),
        )
        .expect("write");
        let both = vec![
            result("kreisel", "c", 1000.0, 5.0),
            result("kreisel", "d", 10.0, 5.0),
        ];
        std::fs::write(&b, serde_json::to_string(&both).expect("json")).expect("write");
        let results = load(&[a, b]).expect("load");
        assert_eq!(results.len(), 3);
        let svg = dir.join("out.svg");
        Comparison::new(&results, None)
            .expect("comparison")
            .svg(&svg)
            .expect("svg");
        let text = std::fs::read_to_string(&svg).expect("svg written");
        assert!(
            text.starts_with("<svg") && text.contains("kreisel") && text.contains("#2"),
            "{}",
            &text[..200.min(text.len())]
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn axis_numbers() {
        assert_eq!(short(1500.0), "1.5k");
        assert_eq!(short(2_000_000.0), "2M");
        assert_eq!(short(7.0), "7");
    }
}
