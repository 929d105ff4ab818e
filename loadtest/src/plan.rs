//! A run's plan: which sessions exist, what each does, and what the run must deliver. Built from the command
//! line by the scenario constructors, then shared read-only by every worker thread.

use std::net::SocketAddr;
use std::time::Duration;

use kreisel_codec::Serializer;
use serde_json::{Map, Value as Json};

use crate::endpoint::Endpoint;

/// How senders pace themselves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Each publisher/caller keeps `window` messages outstanding (publications with `acknowledge: true`, completed
    /// by PUBLISHED; calls completed by RESULT). Measures maximum throughput.
    Closed { window: u64 },
    /// Senders together send `rate` messages per second on a fixed schedule, whatever the router does. Latency is
    /// measured from each message's intended send time.
    Open { rate: f64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScenarioKind {
    Fanout,
    Fanin,
    Rpc,
    Connect,
    Churn,
    Slow,
    Soak,
}

impl ScenarioKind {
    pub fn name(self) -> &'static str {
        match self {
            ScenarioKind::Fanout => "fanout",
            ScenarioKind::Fanin => "fanin",
            ScenarioKind::Rpc => "rpc",
            ScenarioKind::Connect => "connect",
            ScenarioKind::Churn => "churn",
            ScenarioKind::Slow => "slow",
            ScenarioKind::Soak => "soak",
        }
    }
}

/// What one session does.
#[derive(Clone, Debug, PartialEq)]
pub enum RoleSpec {
    /// Publishes `Plan::count` events to `topic`; `index` is its publisher number (in the payload).
    Publisher { index: usize, topic: String },
    /// Subscribes to every topic (`prefix`: with `match: prefix`) and accounts for every publisher's events.
    Subscriber { topics: Vec<String>, prefix: bool },
    /// Makes `Plan::count` calls, round-robin over `Plan::procedures`.
    Caller { index: usize },
    /// Registers `procedure` and echoes every invocation's arguments back.
    Callee { procedure: String },
    /// Joins and stays.
    Joiner,
    /// Repeats join, subscribe, publish, leave until the run stops.
    Churner { index: usize },
    /// A subscriber like [`RoleSpec::Subscriber`] that reads slowly once the run starts (slow scenario, soak).
    SlowSubscriber {
        topics: Vec<String>,
        prefix: bool,
        read: SlowRead,
    },
    /// Soak: publishes round-robin to its topics `soak.p<index>.t<x>` on the open-loop schedule until the run
    /// ends; each topic is one stream with its own sequence numbers.
    SoakPublisher { index: usize },
    /// Soak: one subscription (`topic` with `policy`) and the streams it covers; stays for the whole run.
    SoakSubscriber {
        topic: String,
        policy: MatchPolicy,
        streams: Vec<usize>,
    },
    /// Soak: calls on the open-loop schedule with progressive results, canceling some calls.
    SoakCaller { index: usize },
    /// Soak: registers `procedure` (`prefix`: with `match: prefix`), answers with progressive results, holds the
    /// calls that are to be canceled.
    SoakCallee { procedure: String, prefix: bool },
    /// Soak: joins, subscribes, publishes to itself, stays a while, leaves (GOODBYE, abrupt close, or mid-frame),
    /// pauses, again.
    SoakChurner { index: usize },
    /// Soak: joined and subscribed, dropped with all the others of its kind at every reconnect storm.
    StormSession { index: usize },
}

/// How a slow subscriber reads once the run started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowRead {
    /// Not at all (in the soak: not during each stall period).
    Never,
    /// At most this many bytes per second.
    Rate(u64),
}

/// A subscription's match policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchPolicy {
    Exact,
    Prefix,
    Wildcard,
}

impl MatchPolicy {
    pub fn name(self) -> &'static str {
        match self {
            MatchPolicy::Exact => "exact",
            MatchPolicy::Prefix => "prefix",
            MatchPolicy::Wildcard => "wildcard",
        }
    }
}

/// Parameters of the soak workload (see `loadtest/README.md`).
#[derive(Clone, Debug, PartialEq)]
pub struct SoakPlan {
    /// Publishers and topics per publisher: stream `p * topics + x` is publisher p's topic x.
    pub publishers: usize,
    pub topics: usize,
    /// Publications per second over all publishers.
    pub publish_rate: f64,
    /// Calls per second over all callers, and callees (even: an exact registration, odd: a prefix one).
    pub call_rate: f64,
    pub callers: usize,
    pub callees: usize,
    /// Progressive results per answered call (before the final one).
    pub progress: u64,
    /// Of every ten calls, this many are canceled (modes skip, kill, killnowait in turn).
    pub cancel_per_10: u64,
    /// How long a callee holds a call that is to be canceled before answering it anyway (ns).
    pub hold_ns: u64,
    /// Pause of a churner between two sessions (ns) and how long it stays joined after its own event (ns).
    pub churn_pause_ns: u64,
    pub churn_dwell_ns: u64,
    /// How long a never-reading slow subscriber stalls before it reads what is queued and starts over (ns).
    pub stall_ns: u64,
    /// Pause before a slow subscriber joins again after its session ended (ns).
    pub slow_rejoin_ns: u64,
    /// Reconnect storms: every `storm_every_ns`, all storm sessions drop their connections and join again.
    pub storm_every_ns: u64,
    pub storm_sessions: usize,
}

impl SoakPlan {
    pub fn streams(&self) -> usize {
        self.publishers * self.topics
    }

    /// Topic of stream `s`.
    pub fn topic(&self, stream: usize) -> String {
        format!("soak.p{}.t{}", stream / self.topics, stream % self.topics)
    }
}

/// Totals the run phase and the drain phase wait for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    /// Messages (PUBLISH or CALL) all senders send.
    pub sent: u64,
    /// PUBLISHED acknowledgements expected (closed-loop publishing), else 0.
    pub acked: u64,
    /// Distinct EVENTs (over all subscribers) or RESULTs expected.
    pub received: u64,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub scenario: ScenarioKind,
    pub endpoint: Endpoint,
    /// Resolved once (TCP endpoints).
    pub addr: Option<SocketAddr>,
    /// Every router address given (the first is `endpoint`): session i connects to the (i mod n)-th.
    pub endpoints: Vec<(Endpoint, Option<SocketAddr>)>,
    pub ser: Serializer,
    pub realm: String,
    pub threads: usize,
    /// Longest a phase may go without progress.
    pub timeout: Duration,
    pub mode: Mode,
    /// The padding string of every PUBLISH/CALL (its length is the `--size`).
    pub padding: String,
    /// Events per publisher, or calls per caller.
    pub count: u64,
    /// One entry per session, by global session index.
    pub roles: Vec<RoleSpec>,
    /// Number of publishers (fanout, fanin, churn) or callers (rpc): sizes the accounting tables.
    pub senders: usize,
    /// RPC procedure names (`loadtest.echo.<k>`).
    pub procedures: Vec<String>,
    /// Most sessions in the transport handshake or joining at once (over all threads).
    pub connect_concurrency: usize,
    /// churn: how long to churn; connect: how long to hold the sessions after all joined.
    pub duration: Duration,
    /// churn: stop after this many completed cycles (0: no limit).
    pub cycles_max: u64,
    pub expect: Expect,
    /// Scenario parameters for results and reports.
    pub params: Map<String, Json>,
    /// Session errors are counted by kind and the session carries on (reconnects, or stays out), instead of ending
    /// the run (soak).
    pub tolerant: bool,
    /// The soak's workload.
    pub soak: Option<SoakPlan>,
    /// MQTT mode: the QoS of publications and subscriptions (0 or 1).
    pub qos: u8,
}

impl Plan {
    /// Sessions assigned to worker `worker` (round-robin by global index).
    pub fn sessions_of(&self, worker: usize) -> impl Iterator<Item = (usize, &RoleSpec)> {
        self.roles
            .iter()
            .enumerate()
            .skip(worker)
            .step_by(self.threads)
    }

    /// A short human description of the case: scenario and the parameters that shape the load.
    pub fn case(&self) -> String {
        let mut case = self.scenario.name().to_owned();
        for (k, v) in &self.params {
            match v {
                Json::String(s) => case.push_str(&format!(" {k}={s}")),
                other => case.push_str(&format!(" {k}={other}")),
            }
        }
        match self.mode {
            Mode::Closed { window } if self.is_paced() => {
                case.push_str(&format!(" window={window}"))
            }
            Mode::Open { rate } if self.is_paced() => case.push_str(&format!(" rate={rate}")),
            _ => {}
        }
        case
    }

    /// Whether the scenario has senders that the mode applies to.
    pub fn is_paced(&self) -> bool {
        matches!(
            self.scenario,
            ScenarioKind::Fanout
                | ScenarioKind::Fanin
                | ScenarioKind::Rpc
                | ScenarioKind::Slow
                | ScenarioKind::Soak
        )
    }

    pub fn window(&self) -> u64 {
        match self.mode {
            Mode::Closed { window } => window,
            Mode::Open { .. } => u64::MAX,
        }
    }
}
