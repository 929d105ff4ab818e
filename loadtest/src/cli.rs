//! Command line: one subcommand per scenario plus `report`, and the translation of arguments into a [`Plan`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kreisel_codec::Serializer;
use serde_json::{json, Map, Value as Json};

use crate::endpoint::Endpoint;
use crate::plan::{Expect, MatchPolicy, Mode, Plan, RoleSpec, ScenarioKind, SlowRead, SoakPlan};
use crate::run::RunOptions;
use crate::timeline::MetricsUrl;

#[derive(Debug, Parser)]
#[command(
    name = "kreisel-loadtest",
    version,
    about = "Router-agnostic WAMP v2 load generator"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// S subscribers on one topic, P publishers sending M events each: every subscriber gets P*M events.
    ///
    /// Also against a NATS server: --url nats://host:port (subject = --topic; --serializer and --realm ignored).
    Fanout(FanoutArgs),
    /// N publishers on distinct topics `sensors.<n>.temp` into one subscriber (`match: prefix` on `sensors.`, or N
    /// exact subscriptions with --exact).
    ///
    /// Also against a NATS server: --url nats://host:port (subscription `sensors.>`; --serializer and --realm
    /// ignored).
    Fanin(FaninArgs),
    /// C callers making M calls each to K echo callees (procedures `loadtest.echo.<k>`).
    Rpc(RpcArgs),
    /// K sessions join (and stay for --hold): joins per second, join latency, router memory per session.
    Connect(ConnectArgs),
    /// K sessions each repeat join, subscribe, publish, receive, leave for --duration.
    Churn(ChurnArgs),
    /// S fast and K slow subscribers on one topic, one publisher at a fixed rate, once per K of --slow: the fast
    /// subscribers' latency and loss, the slow ones' fate, the router's memory over time.
    Slow(SlowArgs),
    /// A mixed workload for --duration: pub/sub with patterns, RPC with progressive results and cancels, churn
    /// with abrupt and mid-frame disconnects, slow subscribers, reconnect storms; the router's memory,
    /// descriptors and CPU every second; every message checked.
    Soak(SoakArgs),
    /// Compare result files (--json of earlier runs) as a markdown table and an SVG chart.
    Report(ReportArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SerializerArg {
    Json,
    Msgpack,
    Cbor,
}

impl From<SerializerArg> for Serializer {
    fn from(s: SerializerArg) -> Serializer {
        match s {
            SerializerArg::Json => Serializer::Json,
            SerializerArg::Msgpack => Serializer::MsgPack,
            SerializerArg::Cbor => Serializer::Cbor,
        }
    }
}

/// Options every scenario takes.
#[derive(Debug, Args)]
pub struct Common {
    /// Router address: rs://host:port (RawSocket over TCP), ws://host:port/path (WebSocket),
    /// unix:///path (RawSocket over a Unix socket). Repeat it for the nodes of a cluster: session i connects to
    /// the (i mod n)-th URL (all of one kind: routers, NATS servers or MQTT brokers).
    #[arg(short, long, default_value = "ws://127.0.0.1:8080/ws")]
    pub url: Vec<String>,
    /// WAMP serializer.
    #[arg(short, long, value_enum, default_value_t = SerializerArg::Json)]
    pub serializer: SerializerArg,
    /// Realm to join.
    #[arg(long, default_value = "realm1")]
    pub realm: String,
    /// Worker threads (sessions are spread round-robin over them).
    #[arg(short, long, default_value_t = 1)]
    pub threads: usize,
    /// Seconds any phase (connect, join, subscribe/register, run, drain, close) may go without progress
    /// before the run is abandoned with exit status 3.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// Most sessions connecting or joining at the same time.
    #[arg(long, default_value_t = 100)]
    pub connect_concurrency: usize,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Name of the router under test, recorded in the results (used by `report`).
    #[arg(long, default_value = "router")]
    pub label: String,
    /// PID of the router process: report its CPU time and resident memory (connect: memory per session).
    #[arg(long, value_name = "PID")]
    pub router_pid: Option<u32>,
    /// More processes whose CPU time counts as the router's (the other nodes of a cluster, its nats-servers);
    /// repeatable. Memory is still read from --router-pid alone.
    #[arg(long, value_name = "PID")]
    pub extra_pid: Vec<u32>,
    /// No progress bar, no summary on stdout (errors still go to stderr).
    #[arg(short, long)]
    pub quiet: bool,
}

/// Pacing and payload of the sending scenarios.
#[derive(Debug, Args)]
pub struct Load {
    /// Closed loop: messages each publisher/caller keeps outstanding (publications are acknowledged).
    #[arg(short, long, default_value_t = 64, conflicts_with = "rate")]
    pub window: u64,
    /// Open loop: messages per second over all publishers/callers, sent on schedule whatever the router does;
    /// latency is then measured from each message's intended send time.
    #[arg(short, long)]
    pub rate: Option<f64>,
    /// Bytes of padding string in each PUBLISH/CALL payload.
    #[arg(short = 'b', long, default_value_t = 32)]
    pub size: usize,
    /// MQTT mode (mqtt://): QoS of publications and subscriptions, 0 or 1 (1: every PUBLISH acknowledged).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,
}

#[derive(Debug, Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub load: Load,
    /// Subscribers (S).
    #[arg(long, default_value_t = 10)]
    pub subscribers: usize,
    /// Publishers (P).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Events per publisher (M).
    #[arg(short = 'n', long, default_value_t = 10_000)]
    pub events: u64,
    /// The topic.
    #[arg(long, default_value = "loadtest.fanout")]
    pub topic: String,
}

#[derive(Debug, Args)]
pub struct FaninArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub load: Load,
    /// Publishers (N), each on its own topic `sensors.<n>.temp`.
    #[arg(long, default_value_t = 10)]
    pub publishers: usize,
    /// Events per publisher (M).
    #[arg(short = 'n', long, default_value_t = 1_000)]
    pub events: u64,
    /// Subscribe to each of the N topics exactly instead of once with `match: prefix`.
    #[arg(long)]
    pub exact: bool,
}

#[derive(Debug, Args)]
pub struct RpcArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub load: Load,
    /// Callers (C).
    #[arg(long, default_value_t = 1)]
    pub callers: usize,
    /// Callees (K), each registering its own procedure `loadtest.echo.<k>`; callers go round-robin over them.
    #[arg(long, default_value_t = 1)]
    pub callees: usize,
    /// Calls per caller (M).
    #[arg(short = 'n', long, default_value_t = 10_000)]
    pub calls: u64,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub common: Common,
    /// Sessions (K).
    #[arg(long, default_value_t = 100)]
    pub sessions: usize,
    /// Seconds to keep all sessions open after the last one joined.
    #[arg(long, default_value_t = 0.0)]
    pub hold: f64,
}

#[derive(Debug, Args)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent churning sessions (K).
    #[arg(long, default_value_t = 4)]
    pub sessions: usize,
    /// Seconds to churn.
    #[arg(short, long, default_value_t = 3.0)]
    pub duration: f64,
    /// Stop after this many completed cycles (0: only --duration limits).
    #[arg(long, default_value_t = 0)]
    pub cycles: u64,
    /// Bytes of padding in the one event of each cycle.
    #[arg(short = 'b', long, default_value_t = 32)]
    pub size: usize,
}

/// Sampling the router over time (slow, soak).
#[derive(Debug, Args)]
pub struct Watch {
    /// The router's metrics endpoint (Prometheus text, e.g. http://127.0.0.1:9464/metrics), scraped with every
    /// sample; counters that changed are reported.
    #[arg(long, value_name = "URL")]
    pub metrics_url: Option<String>,
    /// Stop the run as soon as the router's resident memory passes this many MiB (needs --router-pid); the run
    /// then ends with exit status 5.
    #[arg(long, value_name = "MIB")]
    pub router_rss_max: Option<u64>,
    /// Write an SVG chart over time: the router's memory and the p99 latency (soak: also its descriptors and the
    /// throughput).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SlowArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub watch: Watch,
    /// Fast subscribers (S): they read everything at once.
    #[arg(long, default_value_t = 10)]
    pub subscribers: usize,
    /// Slow subscriber counts (K) to compare, one run each, in this order (the first is the baseline).
    #[arg(
        long,
        value_name = "K,K,...",
        value_delimiter = ',',
        default_value = "0,10"
    )]
    pub slow: Vec<usize>,
    /// How slow subscribers read once the publisher starts: `never`, or a number of bytes per second.
    #[arg(long, value_name = "never|BYTES", default_value = "never")]
    pub slow_read: String,
    /// Publications per second (one publisher, open loop, not acknowledged).
    #[arg(short, long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of publishing per run.
    #[arg(short, long, default_value_t = 10.0)]
    pub duration: f64,
    /// Bytes of padding in each event.
    #[arg(short = 'b', long, default_value_t = 256)]
    pub size: usize,
    /// The topic.
    #[arg(long, default_value = "loadtest.slow")]
    pub topic: String,
    /// The router's configured limit on bytes queued per connection (kreisel: limits.outbox_max): each run's
    /// highest router RSS is checked against the first run's plus 3 x K x this.
    #[arg(long, value_name = "BYTES")]
    pub outbox_max: Option<u64>,
    /// Seconds between two samples of the router.
    #[arg(long, default_value_t = 0.5)]
    pub sample_interval: f64,
    /// Seconds to wait between runs (the router settles).
    #[arg(long, default_value_t = 2.0)]
    pub pause: f64,
}

#[derive(Debug, Args)]
pub struct SoakArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub watch: Watch,
    /// How long to run: seconds, or a number with s, m or h (30s, 10m, 1h).
    #[arg(short, long, value_name = "DURATION", default_value = "60s")]
    pub duration: String,
    /// The first part of the run left out of the RSS and descriptor slopes (default: a quarter of the duration,
    /// at most 10m).
    #[arg(long, value_name = "DURATION")]
    pub warmup: Option<String>,
    /// Publishers, each publishing round-robin to its topics `soak.p<n>.t<x>`.
    #[arg(long, default_value_t = 3)]
    pub publishers: usize,
    /// Topics per publisher.
    #[arg(long, default_value_t = 3)]
    pub topics: usize,
    /// Publications per second over all publishers.
    #[arg(short, long, default_value_t = 300.0)]
    pub rate: f64,
    /// Bytes of padding in each publication and call.
    #[arg(short = 'b', long, default_value_t = 256)]
    pub size: usize,
    /// Subscribers that stay for the whole run, in turn exact (one topic), prefix (`soak.p<n>.`) and wildcard
    /// (`soak..t<x>`).
    #[arg(long, default_value_t = 6)]
    pub subscribers: usize,
    /// Callers, each calling the callees in turn on the open-loop schedule.
    #[arg(long, default_value_t = 2)]
    pub callers: usize,
    /// Callees: even ones register `soak.rpc<k>`, odd ones the prefix `soak.rpc<k>.` (called as
    /// `soak.rpc<k>.x<n>`).
    #[arg(long, default_value_t = 2)]
    pub callees: usize,
    /// Calls per second over all callers.
    #[arg(long, default_value_t = 100.0)]
    pub call_rate: f64,
    /// Progressive results before the final one of each call that is not canceled.
    #[arg(long, default_value_t = 3)]
    pub progress: u64,
    /// Of every ten calls, this many are canceled (modes skip, kill, killnowait in turn).
    #[arg(long, default_value_t = 3)]
    pub cancel: u64,
    /// Seconds a callee holds a call that is to be canceled before it answers anyway.
    #[arg(long, default_value_t = 1.0)]
    pub hold: f64,
    /// Sessions that join, subscribe (own topic, and soak..t0), publish to themselves, stay --churn-dwell, and
    /// leave (GOODBYE, abrupt close, mid-frame close in turn), then pause --churn-pause, again and again.
    #[arg(long, default_value_t = 4)]
    pub churners: usize,
    /// Seconds a churner waits before it joins again.
    #[arg(long, default_value_t = 0.25)]
    pub churn_pause: f64,
    /// Seconds a churner stays joined once its own event came back.
    #[arg(long, default_value_t = 0.2)]
    pub churn_dwell: f64,
    /// Slow subscribers to everything (prefix soak.): the first stalls (reads nothing for --stall, then reads
    /// what is queued and leaves), the others read --slow-read-rate bytes per second; each joins again 1 s after
    /// its session ended (by itself, or cut off by the router).
    #[arg(long, default_value_t = 2)]
    pub slow_subscribers: usize,
    /// Bytes per second the rate-limited slow subscribers read.
    #[arg(long, value_name = "BYTES", default_value_t = 16384)]
    pub slow_read_rate: u64,
    /// How long the first slow subscriber reads nothing, each time (at most a quarter of the duration).
    #[arg(long, value_name = "DURATION", default_value = "120s")]
    pub stall: String,
    /// Sessions that are joined and subscribed, and at every reconnect storm all drop their connections at once
    /// and join again.
    #[arg(long, default_value_t = 200)]
    pub storm_sessions: usize,
    /// Time between reconnect storms (at most a quarter of the duration).
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub storm_every: String,
    /// Seconds between two samples of the router.
    #[arg(long, default_value_t = 1.0)]
    pub sample_interval: f64,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A result file written by --json (repeat for each run; a file may also hold a JSON array of results).
    #[arg(long = "json", value_name = "FILE", required = true)]
    pub inputs: Vec<PathBuf>,
    /// Write the markdown table here.
    #[arg(long, value_name = "FILE")]
    pub md: Option<PathBuf>,
    /// Write the SVG chart here.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Label whose numbers are the denominator of the ratios (default: the first label found).
    #[arg(long)]
    pub baseline: Option<String>,
}

/// A scenario run: the plan plus what to do with its result.
pub struct Invocation {
    pub plan: Plan,
    pub options: RunOptions,
    pub json: Option<PathBuf>,
}

impl Command {
    /// Builds the plan of a scenario subcommand (`None` for `report` and `slow`).
    pub fn invocation(&self) -> Option<Result<Invocation, String>> {
        Some(match self {
            Command::Fanout(a) => fanout(a),
            Command::Fanin(a) => fanin(a),
            Command::Rpc(a) => rpc(a),
            Command::Connect(a) => connect(a),
            Command::Churn(a) => churn(a),
            Command::Soak(a) => soak(a),
            // `slow` runs one plan per slow subscriber count (`slow_invocations`, `slow::run`).
            Command::Slow(_) | Command::Report(_) => return None,
        })
    }
}

/// `30`, `30s`, `10m`, `1h`, `1.5h` as a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected a duration like 30s, 10m or 1h"))?;
    let scale = match unit {
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("`{text}`: unknown unit `{other}` (s, m or h)")),
    };
    let secs = value * scale;
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("`{text}`: expected a duration like 30s, 10m or 1h"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn watch_options(common: &Common, watch: &Watch, options: &mut RunOptions) -> Result<(), String> {
    options.metrics = watch
        .metrics_url
        .as_deref()
        .map(MetricsUrl::parse)
        .transpose()?;
    if watch.router_rss_max.is_some() && common.router_pid.is_none() {
        return Err("--router-rss-max needs --router-pid".into());
    }
    options.rss_ceiling_kib = watch.router_rss_max.map(|m| m * 1024);
    Ok(())
}

fn interval(seconds: f64) -> Result<Duration, String> {
    if seconds > 0.0 && seconds.is_finite() {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err("--sample-interval must be a positive number of seconds".into())
    }
}

/// The plans of a `slow` command, one per slow subscriber count.
pub fn slow_invocations(a: &SlowArgs) -> Result<Vec<Invocation>, String> {
    let s = positive("subscribers", a.subscribers as u64)?;
    if a.slow.is_empty() {
        return Err("--slow needs at least one count".into());
    }
    if !(a.rate > 0.0 && a.rate.is_finite()) {
        return Err("--rate must be a positive number of publications per second".into());
    }
    if !(a.duration > 0.0 && a.duration.is_finite()) {
        return Err("--duration must be a positive number of seconds".into());
    }
    if !(a.pause >= 0.0 && a.pause.is_finite()) {
        return Err("--pause must be a number of seconds".into());
    }
    let read =
        match a.slow_read.as_str() {
            "never" => SlowRead::Never,
            bytes => SlowRead::Rate(bytes.parse::<u64>().ok().filter(|b| *b > 0).ok_or_else(
                || {
                    format!(
                        "--slow-read `{bytes}`: `never` or a positive number of bytes per second"
                    )
                },
            )?),
        };
    let m = ((a.rate * a.duration).round() as u64).max(1);
    let mut out = Vec::new();
    for &k in &a.slow {
        let mut inv = base(&a.common, ScenarioKind::Slow, None)?;
        watch_options(&a.common, &a.watch, &mut inv.options)?;
        inv.options.sample_interval = interval(a.sample_interval)?;
        let plan = &mut inv.plan;
        plan.mode = Mode::Open { rate: a.rate };
        plan.padding = "x".repeat(a.size);
        plan.count = m;
        plan.senders = 1;
        plan.roles.extend((0..s).map(|_| RoleSpec::Subscriber {
            topics: vec![a.topic.clone()],
            prefix: false,
        }));
        plan.roles.extend((0..k).map(|_| RoleSpec::SlowSubscriber {
            topics: vec![a.topic.clone()],
            prefix: false,
            read,
        }));
        plan.roles.push(RoleSpec::Publisher {
            index: 0,
            topic: a.topic.clone(),
        });
        plan.expect = Expect {
            sent: m,
            acked: 0,
            received: m * s,
        };
        plan.params = params(&[
            ("subscribers", json!(s)),
            ("slow", json!(k)),
            ("slow_read", json!(a.slow_read)),
            ("events", json!(m)),
            ("size", json!(a.size)),
        ]);
        out.push(inv);
    }
    Ok(out)
}

fn soak(a: &SoakArgs) -> Result<Invocation, String> {
    let mut inv = base(&a.common, ScenarioKind::Soak, None)?;
    watch_options(&a.common, &a.watch, &mut inv.options)?;
    let duration = parse_duration(&a.duration)?;
    if duration.is_zero() {
        return Err("--duration must be positive".into());
    }
    let warmup = match &a.warmup {
        Some(w) => parse_duration(w)?,
        None => (duration / 4).min(Duration::from_secs(600)),
    };
    if warmup >= duration {
        return Err("--warmup must be shorter than --duration".into());
    }
    // Short runs see the same events, scaled down: a storm at least every quarter of the run, stalls at most
    // a quarter of it.
    let storm_every = parse_duration(&a.storm_every)?.min(duration / 4);
    let stall = parse_duration(&a.stall)?.min(duration / 4);
    positive("publishers", a.publishers as u64)?;
    positive("topics", a.topics as u64)?;
    positive("subscribers", a.subscribers as u64)?;
    if a.cancel > 10 {
        return Err("--cancel counts calls of every ten: 0 to 10".into());
    }
    if a.callers > 0 && a.callees == 0 {
        return Err("--callers need at least one callee".into());
    }
    for (name, v) in [("rate", a.rate), ("call-rate", a.call_rate)] {
        if !(v >= 0.0 && v.is_finite()) {
            return Err(format!("--{name} must be a number of messages per second"));
        }
    }
    if a.rate == 0.0 {
        return Err("--rate must be positive".into());
    }
    if a.callers > 0 && a.call_rate == 0.0 {
        return Err("--call-rate must be positive with callers".into());
    }
    for (name, v) in [
        ("hold", a.hold),
        ("churn-pause", a.churn_pause),
        ("churn-dwell", a.churn_dwell),
    ] {
        if !(v >= 0.0 && v.is_finite()) {
            return Err(format!("--{name} must be a number of seconds"));
        }
    }
    let ns = |d: f64| (d * 1e9) as u64;
    let soak = SoakPlan {
        publishers: a.publishers,
        topics: a.topics,
        publish_rate: a.rate,
        call_rate: a.call_rate,
        callers: a.callers,
        callees: a.callees,
        progress: a.progress.min(63),
        cancel_per_10: a.cancel,
        hold_ns: ns(a.hold),
        churn_pause_ns: ns(a.churn_pause),
        churn_dwell_ns: ns(a.churn_dwell),
        stall_ns: stall.as_nanos() as u64,
        slow_rejoin_ns: 1_000_000_000,
        storm_every_ns: storm_every.as_nanos() as u64,
        storm_sessions: a.storm_sessions,
    };
    inv.options.duration = duration;
    inv.options.warmup = warmup;
    inv.options.sample_interval = interval(a.sample_interval)?;
    let plan = &mut inv.plan;
    plan.mode = Mode::Open { rate: a.rate };
    plan.padding = "x".repeat(a.size);
    plan.tolerant = true;
    plan.duration = duration;
    plan.connect_concurrency = plan.connect_concurrency.max(a.storm_sessions);
    let streams = soak.streams();
    plan.roles
        .extend((0..a.publishers).map(|index| RoleSpec::SoakPublisher { index }));
    for i in 0..a.subscribers {
        let n = i / 3;
        let spec = match i % 3 {
            0 => {
                let stream = n % streams;
                RoleSpec::SoakSubscriber {
                    topic: soak.topic(stream),
                    policy: MatchPolicy::Exact,
                    streams: vec![stream],
                }
            }
            1 => {
                let p = n % a.publishers;
                RoleSpec::SoakSubscriber {
                    topic: format!("soak.p{p}."),
                    policy: MatchPolicy::Prefix,
                    streams: (p * a.topics..(p + 1) * a.topics).collect(),
                }
            }
            _ => {
                let x = n % a.topics;
                RoleSpec::SoakSubscriber {
                    topic: format!("soak..t{x}"),
                    policy: MatchPolicy::Wildcard,
                    streams: (0..a.publishers).map(|p| p * a.topics + x).collect(),
                }
            }
        };
        plan.roles.push(spec);
    }
    plan.roles
        .extend((0..a.callees).map(|k| RoleSpec::SoakCallee {
            procedure: crate::soak::callee_procedure(k, None),
            prefix: k % 2 == 1,
        }));
    plan.roles
        .extend((0..a.callers).map(|index| RoleSpec::SoakCaller { index }));
    plan.roles
        .extend((0..a.slow_subscribers).map(|i| RoleSpec::SlowSubscriber {
            topics: vec!["soak.".into()],
            prefix: true,
            read: if i == 0 {
                SlowRead::Never
            } else {
                SlowRead::Rate(a.slow_read_rate.max(1))
            },
        }));
    plan.roles
        .extend((0..a.storm_sessions).map(|index| RoleSpec::StormSession { index }));
    plan.roles
        .extend((0..a.churners).map(|index| RoleSpec::SoakChurner { index }));
    plan.params = params(&[
        ("duration_s", json!(duration.as_secs_f64())),
        ("publishers", json!(a.publishers)),
        ("topics", json!(a.topics)),
        ("subscribers", json!(a.subscribers)),
        ("callers", json!(a.callers)),
        ("callees", json!(a.callees)),
        ("call_rate", json!(a.call_rate)),
        ("churners", json!(a.churners)),
        ("slow_subscribers", json!(a.slow_subscribers)),
        ("storm_sessions", json!(a.storm_sessions)),
        ("storm_every_s", json!(storm_every.as_secs_f64())),
        ("size", json!(a.size)),
    ]);
    plan.soak = Some(soak);
    Ok(inv)
}

fn positive(name: &str, v: u64) -> Result<u64, String> {
    if v == 0 {
        Err(format!("--{name} must be at least 1"))
    } else {
        Ok(v)
    }
}

/// The plan fields every scenario shares; scenario code fills in the rest.
fn base(
    common: &Common,
    scenario: ScenarioKind,
    load: Option<&Load>,
) -> Result<Invocation, String> {
    let mut endpoints = Vec::new();
    for url in &common.url {
        let endpoint = Endpoint::parse(url)?;
        let addr = endpoint.resolve()?;
        endpoints.push((endpoint, addr));
    }
    let Some((endpoint, _)) = endpoints.first().cloned() else {
        return Err("--url: at least one router address".into());
    };
    if (endpoints.iter())
        .any(|(e, _)| (e.is_nats(), e.is_mqtt()) != (endpoint.is_nats(), endpoint.is_mqtt()))
    {
        return Err("--url: either routers, NATS servers or MQTT brokers, not a mix".into());
    }
    if endpoint.is_mqtt()
        && !matches!(
            scenario,
            ScenarioKind::Fanout | ScenarioKind::Fanin | ScenarioKind::Connect
        )
    {
        return Err(format!(
            "{}: an MQTT broker (mqtt://) runs the fanout, fanin and connect scenarios only",
            scenario.name()
        ));
    }
    if endpoint.is_nats() && !matches!(scenario, ScenarioKind::Fanout | ScenarioKind::Fanin) {
        return Err(format!(
            "{}: a NATS server (nats://) runs the fanout and fanin scenarios only",
            scenario.name()
        ));
    }
    let addr = endpoint.resolve()?;
    positive("threads", common.threads as u64)?;
    positive("connect-concurrency", common.connect_concurrency as u64)?;
    if !(common.timeout > 0.0 && common.timeout.is_finite()) {
        return Err("--timeout must be a positive number of seconds".into());
    }
    let qos = load.map_or(0, |load| load.qos);
    let (mode, size) = match load {
        Some(load) => {
            let mode = match load.rate {
                Some(rate) if rate > 0.0 && rate.is_finite() => Mode::Open { rate },
                Some(_) => {
                    return Err("--rate must be a positive number of messages per second".into())
                }
                None => Mode::Closed {
                    window: positive("window", load.window)?,
                },
            };
            (mode, load.size)
        }
        None => (Mode::Closed { window: 1 }, 0),
    };
    let plan = Plan {
        scenario,
        endpoint,
        addr,
        endpoints,
        ser: common.serializer.into(),
        realm: common.realm.clone(),
        threads: common.threads,
        timeout: Duration::from_secs_f64(common.timeout),
        mode,
        padding: "x".repeat(size),
        count: 0,
        roles: Vec::new(),
        senders: 0,
        procedures: Vec::new(),
        connect_concurrency: common.connect_concurrency,
        duration: Duration::ZERO,
        cycles_max: 0,
        expect: Expect::default(),
        params: Map::new(),
        tolerant: false,
        soak: None,
        qos,
    };
    let options = RunOptions {
        quiet: common.quiet,
        label: common.label.clone(),
        router_pid: common.router_pid,
        extra_pids: common.extra_pid.clone(),
        ..RunOptions::default()
    };
    Ok(Invocation {
        plan,
        options,
        json: common.json.clone(),
    })
}

fn params(pairs: &[(&str, Json)]) -> Map<String, Json> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn acked(plan: &Plan, sent: u64) -> u64 {
    if matches!(plan.mode, Mode::Closed { .. }) {
        sent
    } else {
        0
    }
}

fn fanout(a: &FanoutArgs) -> Result<Invocation, String> {
    let mut inv = base(&a.common, ScenarioKind::Fanout, Some(&a.load))?;
    let (s, p, m) = (
        positive("subscribers", a.subscribers as u64)?,
        positive("publishers", a.publishers as u64)?,
        positive("events", a.events)?,
    );
    let plan = &mut inv.plan;
    plan.count = m;
    plan.senders = p as usize;
    plan.roles.extend((0..s).map(|_| RoleSpec::Subscriber {
        topics: vec![a.topic.clone()],
        prefix: false,
    }));
    plan.roles
        .extend((0..p as usize).map(|index| RoleSpec::Publisher {
            index,
            topic: a.topic.clone(),
        }));
    plan.expect = Expect {
        sent: p * m,
        acked: acked(plan, p * m),
        received: p * m * s,
    };
    plan.params = params(&[
        ("subscribers", json!(s)),
        ("publishers", json!(p)),
        ("events", json!(m)),
        ("size", json!(a.load.size)),
    ]);
    if plan.endpoint.is_nats() {
        crate::nats::check_plan(plan)?;
    }
    if plan.endpoint.is_mqtt() {
        crate::mqtt::check_plan(plan)?;
        plan.params.insert("qos".into(), json!(plan.qos));
    }
    Ok(inv)
}

fn fanin(a: &FaninArgs) -> Result<Invocation, String> {
    let mut inv = base(&a.common, ScenarioKind::Fanin, Some(&a.load))?;
    let (n, m) = (
        positive("publishers", a.publishers as u64)?,
        positive("events", a.events)?,
    );
    let plan = &mut inv.plan;
    plan.count = m;
    plan.senders = n as usize;
    let topics: Vec<String> = (0..n).map(|i| format!("sensors.{i}.temp")).collect();
    let subscriber = if a.exact {
        RoleSpec::Subscriber {
            topics: topics.clone(),
            prefix: false,
        }
    } else {
        RoleSpec::Subscriber {
            topics: vec!["sensors.".into()],
            prefix: true,
        }
    };
    plan.roles.push(subscriber);
    plan.roles.extend(
        topics
            .into_iter()
            .enumerate()
            .map(|(index, topic)| RoleSpec::Publisher { index, topic }),
    );
    plan.expect = Expect {
        sent: n * m,
        acked: acked(plan, n * m),
        received: n * m,
    };
    plan.params = params(&[
        ("publishers", json!(n)),
        ("events", json!(m)),
        ("match", json!(if a.exact { "exact" } else { "prefix" })),
        ("size", json!(a.load.size)),
    ]);
    if plan.endpoint.is_nats() {
        crate::nats::check_plan(plan)?;
    }
    if plan.endpoint.is_mqtt() {
        crate::mqtt::check_plan(plan)?;
        plan.params.insert("qos".into(), json!(plan.qos));
    }
    Ok(inv)
}

fn rpc(a: &RpcArgs) -> Result<Invocation, String> {
    let mut inv = base(&a.common, ScenarioKind::Rpc, Some(&a.load))?;
    let (c, k, m) = (
        positive("callers", a.callers as u64)?,
        positive("callees", a.callees as u64)?,
        positive("calls", a.calls)?,
    );
    let plan = &mut inv.plan;
    plan.count = m;
    plan.senders = c as usize;
    plan.procedures = (0..k).map(|i| format!("loadtest.echo.{i}")).collect();
    plan.roles
        .extend(plan.procedures.iter().map(|p| RoleSpec::Callee {
            procedure: p.clone(),
        }));
    plan.roles
        .extend((0..c as usize).map(|index| RoleSpec::Caller { index }));
    plan.expect = Expect {
        sent: c * m,
        acked: 0,
        received: c * m,
    };
    plan.params = params(&[
        ("callers", json!(c)),
        ("callees", json!(k)),
        ("calls", json!(m)),
        ("size", json!(a.load.size)),
    ]);
    Ok(inv)
}

fn connect(a: &ConnectArgs) -> Result<Invocation, String> {
    let mut inv = base(&a.common, ScenarioKind::Connect, None)?;
    let k = positive("sessions", a.sessions as u64)?;
    if !(a.hold >= 0.0 && a.hold.is_finite()) {
        return Err("--hold must be a number of seconds".into());
    }
    let plan = &mut inv.plan;
    plan.roles = vec![RoleSpec::Joiner; k as usize];
    plan.duration = Duration::from_secs_f64(a.hold);
    plan.params = params(&[("sessions", json!(k))]);
    Ok(inv)
}

fn churn(a: &ChurnArgs) -> Result<Invocation, String> {
    let mut inv = base(&a.common, ScenarioKind::Churn, None)?;
    let k = positive("sessions", a.sessions as u64)?;
    if !(a.duration > 0.0 && a.duration.is_finite()) {
        return Err("--duration must be a positive number of seconds".into());
    }
    let plan = &mut inv.plan;
    plan.roles = (0..k as usize)
        .map(|index| RoleSpec::Churner { index })
        .collect();
    plan.senders = k as usize;
    plan.padding = "x".repeat(a.size);
    plan.duration = Duration::from_secs_f64(a.duration);
    plan.cycles_max = a.cycles;
    plan.params = params(&[("sessions", json!(k)), ("size", json!(a.size))]);
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(args: &[&str]) -> Result<Plan, String> {
        let cli =
            Cli::try_parse_from(std::iter::once("kreisel-loadtest").chain(args.iter().copied()))
                .map_err(|e| e.to_string())?;
        cli.command.invocation().expect("scenario").map(|i| i.plan)
    }

    /// Several `--url`s: every endpoint is kept, in order (sessions take them in turn); WAMP and NATS do not mix.
    #[test]
    fn several_urls() {
        let plan = plan_of(&[
            "fanout",
            "-u",
            "rs://127.0.0.1:8081",
            "-u",
            "ws://127.0.0.1:8082/ws",
            "--subscribers",
            "2",
        ])
        .expect("valid");
        let urls: Vec<String> = (plan.endpoints.iter())
            .map(|(e, _)| e.to_string())
            .collect();
        assert_eq!(urls, ["rs://127.0.0.1:8081", "ws://127.0.0.1:8082/ws"]);
        assert_eq!(plan.endpoint.to_string(), "rs://127.0.0.1:8081");
        let mixed = plan_of(&[
            "fanout",
            "-u",
            "rs://127.0.0.1:1",
            "-u",
            "nats://127.0.0.1:2",
        ]);
        assert!(mixed.unwrap_err().contains("not a mix"));
    }

    #[test]
    fn fanout_plan() {
        let plan = plan_of(&[
            "fanout",
            "-u",
            "rs://127.0.0.1:8081",
            "--subscribers",
            "2",
            "--publishers",
            "3",
            "-n",
            "100",
        ])
        .expect("valid");
        assert_eq!(plan.roles.len(), 5);
        assert_eq!(
            plan.expect,
            Expect {
                sent: 300,
                acked: 300,
                received: 600
            }
        );
        assert_eq!(plan.mode, Mode::Closed { window: 64 });
        assert_eq!(
            plan.case(),
            "fanout events=100 publishers=3 size=32 subscribers=2 window=64"
        );
    }

    #[test]
    fn open_loop_has_no_acks() {
        let plan = plan_of(&[
            "fanin",
            "--rate",
            "1000",
            "--publishers",
            "4",
            "-n",
            "10",
            "-s",
            "msgpack",
        ])
        .expect("valid");
        assert_eq!(plan.mode, Mode::Open { rate: 1000.0 });
        assert_eq!(
            plan.expect,
            Expect {
                sent: 40,
                acked: 0,
                received: 40
            }
        );
        assert_eq!(plan.ser, Serializer::MsgPack);
        assert!(matches!(
            &plan.roles[0],
            RoleSpec::Subscriber { prefix: true, .. }
        ));
        let exact = plan_of(&["fanin", "--exact", "--publishers", "3"]).expect("valid");
        assert!(
            matches!(&exact.roles[0], RoleSpec::Subscriber { topics, prefix: false } if topics.len() == 3)
        );
    }

    #[test]
    fn rpc_plan() {
        let plan = plan_of(&[
            "rpc",
            "--callers",
            "2",
            "--callees",
            "3",
            "-n",
            "5",
            "-w",
            "1",
        ])
        .expect("valid");
        assert_eq!(
            plan.procedures,
            ["loadtest.echo.0", "loadtest.echo.1", "loadtest.echo.2"]
        );
        assert_eq!(
            plan.expect,
            Expect {
                sent: 10,
                acked: 0,
                received: 10
            }
        );
        assert_eq!(plan.roles.len(), 5);
    }

    #[test]
    fn nats_plans() {
        let plan = plan_of(&["fanout", "-u", "nats://127.0.0.1:4222", "-n", "5"]).expect("valid");
        assert!(plan.endpoint.is_nats());
        assert_eq!(
            plan.expect.acked, 5,
            "closed loop: PONGs confirm every publication"
        );
        assert!(plan_of(&["fanin", "-u", "nats://127.0.0.1:4222", "--exact"]).is_ok());
        for args in [
            &["rpc", "-u", "nats://127.0.0.1:4222"][..],
            &["connect", "-u", "nats://127.0.0.1:4222"],
            &["churn", "-u", "nats://127.0.0.1:4222"],
            &["fanout", "-u", "nats://127.0.0.1:4222", "--topic", "a b"],
            &["fanout", "-u", "nats://127.0.0.1:4222", "--topic", "a.*"],
        ] {
            assert!(plan_of(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn bad_arguments() {
        assert!(
            plan_of(&["fanout", "--window", "4", "--rate", "10"]).is_err(),
            "window and rate conflict"
        );
        assert!(plan_of(&["fanout", "--rate", "0"]).is_err());
        assert!(plan_of(&["fanout", "--subscribers", "0"]).is_err());
        assert!(plan_of(&["rpc", "-u", "http://x"]).is_err());
        assert!(plan_of(&["connect", "--timeout", "-1"]).is_err());
        assert!(plan_of(&["churn", "--duration", "0"]).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30").expect("ok"), Duration::from_secs(30));
        assert_eq!(parse_duration("30s").expect("ok"), Duration::from_secs(30));
        assert_eq!(parse_duration("10m").expect("ok"), Duration::from_secs(600));
        assert_eq!(
            parse_duration("1.5h").expect("ok"),
            Duration::from_secs(5400)
        );
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("-3s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn slow_plans_one_per_count() {
        let cli = Cli::try_parse_from([
            "kreisel-loadtest",
            "slow",
            "--subscribers",
            "3",
            "--slow",
            "0,2",
            "--rate",
            "100",
            "--duration",
            "2",
            "--slow-read",
            "4096",
        ])
        .expect("valid");
        let Command::Slow(args) = &cli.command else {
            panic!("slow")
        };
        let plans: Vec<Plan> = slow_invocations(args)
            .expect("valid")
            .into_iter()
            .map(|i| i.plan)
            .collect();
        assert_eq!(plans.len(), 2);
        assert_eq!((plans[0].roles.len(), plans[1].roles.len()), (4, 6));
        assert_eq!(plans[1].count, 200);
        assert_eq!(plans[1].expect.received, 600, "fast subscribers only");
        assert!(plans[1].roles.iter().any(|r| matches!(
            r,
            RoleSpec::SlowSubscriber {
                read: SlowRead::Rate(4096),
                ..
            }
        )));
        let bad = Cli::try_parse_from(["kreisel-loadtest", "slow", "--slow-read", "slowly"])
            .expect("parses");
        let Command::Slow(args) = &bad.command else {
            panic!("slow")
        };
        assert!(slow_invocations(args).is_err());
    }

    #[test]
    fn soak_plan_scales_down() {
        let plan = plan_of(&[
            "soak",
            "-d",
            "20s",
            "--subscribers",
            "6",
            "--storm-sessions",
            "10",
            "--slow-subscribers",
            "2",
        ])
        .expect("valid");
        let soak = plan.soak.as_ref().expect("soak plan");
        assert_eq!(soak.storm_every_ns, 5_000_000_000, "a quarter of 20 s");
        assert_eq!(soak.stall_ns, 5_000_000_000);
        assert_eq!(soak.streams(), 9);
        assert!(plan.tolerant);
        let subs: Vec<(&str, MatchPolicy, usize)> = plan
            .roles
            .iter()
            .filter_map(|r| match r {
                RoleSpec::SoakSubscriber {
                    topic,
                    policy,
                    streams,
                } => Some((topic.as_str(), *policy, streams.len())),
                _ => None,
            })
            .collect();
        assert_eq!(subs[0], ("soak.p0.t0", MatchPolicy::Exact, 1));
        assert_eq!(subs[1], ("soak.p0.", MatchPolicy::Prefix, 3));
        assert_eq!(subs[2], ("soak..t0", MatchPolicy::Wildcard, 3));
        assert_eq!(subs[4], ("soak.p1.", MatchPolicy::Prefix, 3));
        assert!(plan_of(&["soak", "-d", "10s", "--warmup", "20s"]).is_err());
        assert!(plan_of(&["soak", "--cancel", "11"]).is_err());
        assert!(
            plan_of(&["soak", "--router-rss-max", "100"]).is_err(),
            "needs --router-pid"
        );
    }

    #[test]
    fn sessions_spread_over_threads() {
        let plan = plan_of(&["connect", "--sessions", "5", "-t", "2"]).expect("valid");
        let w0: Vec<usize> = plan.sessions_of(0).map(|(i, _)| i).collect();
        let w1: Vec<usize> = plan.sessions_of(1).map(|(i, _)| i).collect();
        assert_eq!((w0, w1), (vec![0, 2, 4], vec![1, 3]));
    }
}
