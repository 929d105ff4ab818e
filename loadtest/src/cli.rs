//! Command line: one subcommand per scenario plus `report`, and the translation of arguments into a [`Plan`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kreisel_codec::Serializer;
use serde_json::{json, Map, Value as Json};

use crate::endpoint::Endpoint;
use crate::plan::{Expect, Mode, Plan, RoleSpec, ScenarioKind};
use crate::run::RunOptions;

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
    /// unix:///path (RawSocket over a Unix socket).
    #[arg(short, long, default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
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
    /// Builds the plan of a scenario subcommand (`None` for `report`).
    pub fn invocation(&self) -> Option<Result<Invocation, String>> {
        Some(match self {
            Command::Fanout(a) => fanout(a),
            Command::Fanin(a) => fanin(a),
            Command::Rpc(a) => rpc(a),
            Command::Connect(a) => connect(a),
            Command::Churn(a) => churn(a),
            Command::Report(_) => return None,
        })
    }
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
    let endpoint = Endpoint::parse(&common.url)?;
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
        qos,
    };
    let options = RunOptions {
        quiet: common.quiet,
        label: common.label.clone(),
        router_pid: common.router_pid,
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
    fn sessions_spread_over_threads() {
        let plan = plan_of(&["connect", "--sessions", "5", "-t", "2"]).expect("valid");
        let w0: Vec<usize> = plan.sessions_of(0).map(|(i, _)| i).collect();
        let w1: Vec<usize> = plan.sessions_of(1).map(|(i, _)| i).collect();
        assert_eq!((w0, w1), (vec![0, 2, 4], vec![1, 3]));
    }
}
