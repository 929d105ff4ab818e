//! The router over time: samples of its resident memory, open descriptors and CPU (from `/proc`), of its metrics
//! endpoint (Prometheus text, optional), and of the generator's own rates; the least-squares slope that tells a
//! leak from noise; and the SVG plots of the `slow` and `soak` scenarios.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::sys;

/// One sample of the router and of the generator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the run phase began (negative: before it).
    pub t_s: f64,
    pub rss_kib: Option<u64>,
    pub fds: Option<u64>,
    /// Router CPU since the previous sample, in percent of one core.
    pub cpu_pct: Option<f64>,
    /// The generator's deliveries (EVENTs to the subscribers that count), final call answers and PUBLISH/CALLs
    /// per second since the previous sample.
    pub delivered_per_s: f64,
    pub answers_per_s: f64,
    pub sent_per_s: f64,
    /// The metrics endpoint's series (`name{labels}` → value) that changed since the previous sample (the first
    /// scrape has them all): a series absent here kept its value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
}

/// Latency of one second of a soak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyPoint {
    /// Start of the second, since the run phase began.
    pub t_s: f64,
    pub events: u64,
    pub events_p99_us: f64,
    pub events_max_us: f64,
    pub calls: u64,
    pub calls_p99_us: f64,
}

/// The generator's totals a sample turns into rates.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub delivered: u64,
    pub answers: u64,
    pub sent: u64,
}

/// Takes samples at a fixed interval while the coordinator waits.
#[derive(Debug)]
pub struct Sampler {
    pid: Option<u32>,
    metrics: Option<MetricsUrl>,
    interval_ns: u64,
    next_ns: u64,
    last: Option<(u64, Option<Duration>, Counters)>,
    /// Stop the run when the router's RSS passes this (KiB).
    pub ceiling_kib: Option<u64>,
    pub samples: Vec<Sample>,
    pub rss_max_kib: Option<u64>,
    /// Scrapes that failed, and the first failure.
    pub metrics_failures: u64,
    pub metrics_error: Option<String>,
    /// The first and the latest scrape in full.
    first_metrics: Option<BTreeMap<String, f64>>,
    last_metrics: BTreeMap<String, f64>,
}

impl Sampler {
    pub fn new(
        pid: Option<u32>,
        metrics: Option<MetricsUrl>,
        interval: Duration,
        ceiling_kib: Option<u64>,
    ) -> Sampler {
        Sampler {
            pid,
            metrics,
            interval_ns: interval.as_nanos().max(1) as u64,
            next_ns: 0,
            last: None,
            ceiling_kib,
            samples: Vec::new(),
            rss_max_kib: None,
            metrics_failures: 0,
            metrics_error: None,
            first_metrics: None,
            last_metrics: BTreeMap::new(),
        }
    }

    /// Whether there is anything to sample at all.
    pub fn is_active(&self) -> bool {
        self.pid.is_some() || self.metrics.is_some()
    }

    /// Samples if the interval is over. Returns a message when the router passed the memory ceiling.
    pub fn poll(&mut self, now_ns: u64, start_ns: u64, counters: Counters) -> Option<String> {
        if now_ns < self.next_ns {
            return None;
        }
        self.next_ns = now_ns + self.interval_ns;
        self.sample(now_ns, start_ns, counters)
    }

    /// Samples now. Returns a message when the router passed the memory ceiling.
    pub fn sample(&mut self, now_ns: u64, start_ns: u64, counters: Counters) -> Option<String> {
        let rss_kib = self.pid.and_then(|pid| sys::rss_kib(pid).ok());
        let fds = self.pid.and_then(|pid| sys::open_fds(pid).ok());
        let cpu = self.pid.and_then(|pid| sys::process_cpu(pid).ok());
        let mut sample = Sample {
            t_s: (now_ns as f64 - start_ns as f64) / 1e9,
            rss_kib,
            fds,
            ..Sample::default()
        };
        if let Some((t, last_cpu, last)) = self.last {
            let dt = (now_ns.saturating_sub(t)) as f64 / 1e9;
            if dt > 0.0 {
                sample.cpu_pct = match (cpu, last_cpu) {
                    (Some(c), Some(l)) => Some(c.saturating_sub(l).as_secs_f64() / dt * 100.0),
                    _ => None,
                };
                let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
                sample.delivered_per_s = rate(counters.delivered, last.delivered);
                sample.answers_per_s = rate(counters.answers, last.answers);
                sample.sent_per_s = rate(counters.sent, last.sent);
            }
        }
        if let Some(url) = &self.metrics {
            match url.scrape(Duration::from_millis(500)) {
                Ok(series) => {
                    sample.metrics = series
                        .iter()
                        .filter(|(k, v)| self.last_metrics.get(*k) != Some(*v))
                        .map(|(k, v)| (k.clone(), *v))
                        .collect();
                    self.first_metrics.get_or_insert_with(|| series.clone());
                    self.last_metrics = series;
                }
                Err(e) => {
                    self.metrics_failures += 1;
                    self.metrics_error.get_or_insert(e);
                }
            }
        }
        self.last = Some((now_ns, cpu, counters));
        if let Some(rss) = rss_kib {
            self.rss_max_kib = Some(self.rss_max_kib.map_or(rss, |m| m.max(rss)));
        }
        self.samples.push(sample);
        match (rss_kib, self.ceiling_kib) {
            (Some(rss), Some(ceiling)) if rss > ceiling => Some(format!(
                "the router's RSS reached {} MiB, past the ceiling of {} MiB (--router-rss-max): run stopped",
                rss / 1024,
                ceiling / 1024
            )),
            _ => None,
        }
    }

    /// Counters (`*_total`) of the metrics endpoint that changed between the first and the last scrape.
    pub fn metrics_delta(&self) -> BTreeMap<String, f64> {
        let (Some(first), last) = (&self.first_metrics, &self.last_metrics) else {
            return BTreeMap::new();
        };
        last.iter()
            .filter(|(k, _)| k.split('{').next().is_some_and(|n| n.ends_with("_total")))
            .filter_map(|(k, v)| {
                let before = first.get(k).copied().unwrap_or(0.0);
                (*v != before).then(|| (k.clone(), v - before))
            })
            .collect()
    }
}

/// Least-squares slope of `y` over `x` (`None` with fewer than two distinct `x`).
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    Some(sxy / sxx)
}

/// `http://host:port/path` of a metrics endpoint (plain HTTP on a loopback or otherwise reachable address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsUrl {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
}

impl MetricsUrl {
    pub fn parse(url: &str) -> Result<MetricsUrl, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("`{url}`: the metrics URL must start with http://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/metrics"),
        };
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("`{url}`: {e}"))?
            .next()
            .ok_or_else(|| format!("`{url}`: no address"))?;
        Ok(MetricsUrl {
            addr,
            host: authority.to_owned(),
            path: path.to_owned(),
        })
    }

    /// GETs the page and parses its samples.
    pub fn scrape(&self, timeout: Duration) -> Result<BTreeMap<String, f64>, String> {
        let mut stream = TcpStream::connect_timeout(&self.addr, timeout)
            .map_err(|e| format!("metrics: cannot connect to {}: {e}", self.addr))?;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .map_err(|e| format!("metrics: {e}"))?;
        let request = format!(
            "GET {} HTTP/1.0\r\nHost: {}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
            self.path, self.host
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("metrics: {e}"))?;
        let mut response = Vec::new();
        stream
            .take(4 << 20)
            .read_to_end(&mut response)
            .map_err(|e| format!("metrics: {e}"))?;
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or("metrics: no HTTP response")?;
        let status = head.lines().next().unwrap_or("");
        if status.split_whitespace().nth(1) != Some("200") {
            return Err(format!("metrics: {status}"));
        }
        Ok(parse_prometheus(body))
    }
}

/// The samples of a Prometheus text page: `name{labels} value` → value (comments and malformed lines skipped).
pub fn parse_prometheus(body: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in body.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The series name ends at the closing brace of its labels, or at the first blank.
        let split = match line.find('{') {
            Some(open) => line[open..].find('}').map(|close| open + close + 1),
            None => line.find(char::is_whitespace),
        };
        let Some(split) = split else { continue };
        let (name, rest) = line.split_at(split);
        let Some(value) = rest.split_whitespace().next() else {
            continue;
        };
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => match v.parse::<f64>() {
                Ok(v) => v,
                Err(_) => continue,
            },
        };
        if out.len() < 2000 {
            out.insert(name.to_owned(), value);
        }
    }
    out
}

/// One line of a time-series chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>, color: RGBColor) -> Series {
        Series {
            name: name.into(),
            points,
            color,
        }
    }
}

/// A panel of a chart: a title, a y-axis label and its lines.
pub struct Panel {
    pub title: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Vertical markers (x values), e.g. reconnect storms.
    pub markers: Vec<f64>,
}

/// Stacks `panels` vertically into one SVG file, with a shared x axis in seconds.
pub fn plot(path: &Path, title: &str, panels: &[Panel]) -> Result<(), String> {
    let height = 40 + 260 * panels.len() as u32;
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 20))
        .map_err(|e| err(&e))?;
    let areas = root.split_evenly((panels.len().max(1), 1));
    let x_max = panels
        .iter()
        .flat_map(|p| p.series.iter().flat_map(|s| s.points.iter().map(|q| q.0)))
        .fold(1.0_f64, f64::max);
    let x_min = panels
        .iter()
        .flat_map(|p| p.series.iter().flat_map(|s| s.points.iter().map(|q| q.0)))
        .fold(0.0_f64, f64::min);
    for (panel, area) in panels.iter().zip(areas.iter()) {
        let y_max = panel
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|v| v.is_finite())
            .fold(0.0_f64, f64::max)
            * 1.1
            + 1e-9;
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(x_min..x_max, 0.0..y_max)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("seconds since the run began")
            .y_desc(panel.y_label.as_str())
            .draw()
            .map_err(|e| err(&e))?;
        for &m in &panel.markers {
            chart
                .draw_series(LineSeries::new(
                    vec![(m, 0.0), (m, y_max)],
                    RGBColor(255, 160, 0).stroke_width(1),
                ))
                .map_err(|e| err(&e))?;
        }
        for s in &panel.series {
            let color = s.color;
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied().filter(|p| p.1.is_finite()),
                    color.stroke_width(2),
                ))
                .map_err(|e| err(&e))?
                .label(s.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// The soak's chart: router RSS (and descriptors), throughput, p99 latency per second, storms marked.
pub fn plot_soak(result: &crate::summary::RunResult, path: &Path) -> Result<(), String> {
    let samples = &result.samples;
    let points = |f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<(f64, f64)> {
        samples
            .iter()
            .filter_map(|s| f(s).map(|v| (s.t_s, v)))
            .collect()
    };
    let soak = result.soak.as_ref();
    let latency = result.latency_series.as_slice();
    let every = result
        .params
        .get("storm_every_s")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    let markers: Vec<f64> = (1..=soak.map_or(0, |s| s.storms))
        .map(|k| k as f64 * every)
        .collect();
    let panels = [
        Panel {
            title: "router resident memory and open descriptors".into(),
            y_label: "MiB / descriptors÷10".into(),
            series: vec![
                Series::new(
                    "RSS (MiB)",
                    points(&|s| s.rss_kib.map(|k| k as f64 / 1024.0)),
                    COLORS[0],
                ),
                Series::new(
                    "open descriptors ÷ 10",
                    points(&|s| s.fds.map(|f| f as f64 / 10.0)),
                    COLORS[2],
                ),
            ],
            markers: markers.clone(),
        },
        Panel {
            title: "throughput (per second)".into(),
            y_label: "messages/s".into(),
            series: vec![
                Series::new(
                    "EVENTs delivered to subscribers that stay",
                    points(&|s| (s.t_s > 0.0).then_some(s.delivered_per_s)),
                    COLORS[0],
                ),
                Series::new(
                    "PUBLISH + CALL sent",
                    points(&|s| (s.t_s > 0.0).then_some(s.sent_per_s)),
                    COLORS[3],
                ),
                Series::new(
                    "calls answered",
                    points(&|s| (s.t_s > 0.0).then_some(s.answers_per_s)),
                    COLORS[2],
                ),
            ],
            markers: markers.clone(),
        },
        Panel {
            title: "latency p99 per second (from intended send time)".into(),
            y_label: "ms".into(),
            series: vec![
                Series::new(
                    "publish to EVENT",
                    latency
                        .iter()
                        .filter(|p| p.events > 0)
                        .map(|p| (p.t_s, p.events_p99_us / 1000.0))
                        .collect(),
                    COLORS[0],
                ),
                Series::new(
                    "CALL to final RESULT",
                    latency
                        .iter()
                        .filter(|p| p.calls > 0)
                        .map(|p| (p.t_s, p.calls_p99_us / 1000.0))
                        .collect(),
                    COLORS[1],
                ),
            ],
            markers,
        },
    ];
    let title = format!(
        "soak [{}] {} {} ({}), {:.0} s; orange lines: reconnect storms",
        result.label, result.url, result.serializer, result.transport, result.duration_s
    );
    plot(path, &title, &panels)
}

/// Colors for lines, in order.
pub const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_squares() {
        let line: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 3.0 * x as f64 + 7.0)).collect();
        assert!((slope(&line).expect("slope") - 3.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..10)
            .map(|x| (x as f64, if x % 2 == 0 { 5.0 } else { 6.0 }))
            .collect();
        assert!(slope(&flat).expect("slope").abs() < 0.1);
        assert_eq!(slope(&[(1.0, 1.0)]), None);
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }

    #[test]
    fn prometheus_text() {
        let page = "# HELP kreisel_sessions WAMP sessions.\n# TYPE kreisel_sessions gauge\nkreisel_sessions 3\n\
                    kreisel_realm_sessions{realm=\"realm1\"} 2\nkreisel_events_total 1.5e3\nbroken\n\
                    x_seconds{le=\"+Inf\"} +Inf 1700000000\n";
        let m = parse_prometheus(page);
        assert_eq!(m.get("kreisel_sessions"), Some(&3.0));
        assert_eq!(
            m.get("kreisel_realm_sessions{realm=\"realm1\"}"),
            Some(&2.0)
        );
        assert_eq!(m.get("kreisel_events_total"), Some(&1500.0));
        assert_eq!(m.get("x_seconds{le=\"+Inf\"}"), Some(&f64::INFINITY));
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn metrics_urls() {
        let u = MetricsUrl::parse("http://127.0.0.1:9464/metrics").expect("valid");
        assert_eq!((u.addr.port(), u.path.as_str()), (9464, "/metrics"));
        let u = MetricsUrl::parse("http://127.0.0.1:9464").expect("valid");
        assert_eq!(u.path, "/metrics");
        assert!(MetricsUrl::parse("https://127.0.0.1/").is_err());
    }

    #[test]
    fn metric_deltas_and_ceiling() {
        let mut s = Sampler::new(
            Some(std::process::id()),
            None,
            Duration::from_secs(1),
            Some(1),
        );
        let stop = s.sample(1_000_000_000, 0, Counters::default());
        assert!(stop.is_some(), "any process is above 1 KiB");
        assert!(s.samples[0].fds.is_some_and(|n| n > 0));
        assert!(s.metrics_delta().is_empty(), "nothing scraped");
        s.first_metrics = Some(BTreeMap::from([("a_total".into(), 1.0), ("g".into(), 5.0)]));
        s.last_metrics = BTreeMap::from([("a_total".into(), 4.0), ("g".into(), 9.0)]);
        assert_eq!(s.metrics_delta(), BTreeMap::from([("a_total".into(), 3.0)]));
    }
}
