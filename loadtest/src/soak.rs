//! The soak's roles: publishers on several topics each (one numbered stream per topic), subscribers with exact,
//! prefix and wildcard subscriptions, callers with progressive results and canceled calls, callees that answer
//! progressively and hold the calls that are to be canceled, churners that leave in every way a client can, and
//! storm sessions that drop and rejoin together. Every role accounts for what it receives, so the run can tell loss,
//! duplication and disorder apart from the workload's own comings and goings.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};

use kreisel_codec::{Dict, Field, Id, Message, Payload};
use serde::{Deserialize, Serialize};

use crate::plan::{MatchPolicy, Plan, SoakPlan};
use crate::roles::{load_args, parse_load, Ctx, DropKind, Step, OUTBOX_MAX};
use crate::stats::{Integrity, OrderTracker, Schedule, SeqTracker};

/// The error URI of a canceled call.
pub const CANCELED: &str = "wamp.error.canceled";

const MATCH_PREFIX: &[(&str, Field<'static>)] = &[("match", Field::Str("prefix"))];
const MATCH_WILDCARD: &[(&str, Field<'static>)] = &[("match", Field::Str("wildcard"))];
const RECEIVE_PROGRESS: &[(&str, Field<'static>)] = &[("receive_progress", Field::Bool(true))];
const PROGRESS: &[(&str, Field<'static>)] = &[("progress", Field::Bool(true))];
const CANCEL_SKIP: &[(&str, Field<'static>)] = &[("mode", Field::Str("skip"))];
const CANCEL_KILL: &[(&str, Field<'static>)] = &[("mode", Field::Str("kill"))];
const CANCEL_KILLNOWAIT: &[(&str, Field<'static>)] = &[("mode", Field::Str("killnowait"))];
const CHURN_PUBLISH: &[(&str, Field<'static>)] = &[
    ("acknowledge", Field::Bool(true)),
    ("exclude_me", Field::Bool(false)),
];
/// A churner's pattern subscription: every publisher's first topic.
const CHURN_PATTERN: &str = "soak..t0";

/// What the soak's workload did and saw, summed over sessions (and threads).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Calls answered with their final RESULT (all progressive results seen first, for calls not canceled).
    pub calls_completed: u64,
    /// Calls canceled, per mode (skip, kill, killnowait), answered with ERROR `wamp.error.canceled`.
    pub canceled_skip: u64,
    pub canceled_kill: u64,
    pub canceled_killnowait: u64,
    /// Calls to be canceled whose RESULT came first (the callee answered before the CANCEL took effect).
    pub cancel_too_late: u64,
    /// Progressive RESULTs received.
    pub progress_results: u64,
    /// INTERRUPTs the callees received, and held calls they answered anyway (skip: the router drops the YIELD).
    pub interrupts: u64,
    pub held_answered: u64,
    /// Churn sessions completed, by how they left.
    pub churn_goodbye: u64,
    pub churn_abrupt: u64,
    pub churn_mid_frame: u64,
    /// EVENTs churners received on their pattern subscription.
    pub churn_events: u64,
    /// Storm sessions joined and subscribed again after a storm.
    pub storm_rejoined: u64,
    /// Slow subscribers: sessions the router ended (slow consumer), sessions that survived a stall or slow
    /// reading until they left by themselves, EVENTs they received.
    pub slow_disconnected: u64,
    pub slow_survived: u64,
    pub slow_events: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.calls_completed += o.calls_completed;
        self.canceled_skip += o.canceled_skip;
        self.canceled_kill += o.canceled_kill;
        self.canceled_killnowait += o.canceled_killnowait;
        self.cancel_too_late += o.cancel_too_late;
        self.progress_results += o.progress_results;
        self.interrupts += o.interrupts;
        self.held_answered += o.held_answered;
        self.churn_goodbye += o.churn_goodbye;
        self.churn_abrupt += o.churn_abrupt;
        self.churn_mid_frame += o.churn_mid_frame;
        self.churn_events += o.churn_events;
        self.storm_rejoined += o.storm_rejoined;
        self.slow_disconnected += o.slow_disconnected;
        self.slow_survived += o.slow_survived;
        self.slow_events += o.slow_events;
    }
}

fn soak_plan(plan: &Plan) -> &SoakPlan {
    plan.soak
        .as_ref()
        .expect("soak roles exist only in soak plans")
}

/// What happens to call number `seq` of a caller: answered with progressive results, or canceled in a mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    Progressive,
    Cancel(CancelMode),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelMode {
    Skip,
    Kill,
    KillNoWait,
}

impl CallKind {
    /// Calls are grouped in tens: the first `cancel_per_10` of each ten are canceled, in the modes skip, kill,
    /// killnowait in turn. Caller and callee derive the kind from the call's number alike.
    pub fn of(seq: u64, cancel_per_10: u64) -> CallKind {
        let k = seq % 10;
        if k < cancel_per_10 {
            CallKind::Cancel(match k % 3 {
                0 => CancelMode::Skip,
                1 => CancelMode::Kill,
                _ => CancelMode::KillNoWait,
            })
        } else {
            CallKind::Progressive
        }
    }
}

/// Publishes round-robin to its topics on the open-loop schedule; each topic is a stream numbered from 0.
#[derive(Debug)]
pub struct Publisher {
    index: usize,
    topics: Vec<String>,
    /// Next number per topic.
    seqs: Vec<u64>,
    next: u64,
    schedule: Option<Schedule>,
    stopped: bool,
}

impl Publisher {
    pub fn new(index: usize, plan: &Plan) -> Publisher {
        let soak = soak_plan(plan);
        let topics = (0..soak.topics)
            .map(|x| soak.topic(index * soak.topics + x))
            .collect();
        Publisher {
            index,
            topics,
            seqs: vec![0; soak.topics],
            next: 0,
            schedule: None,
            stopped: false,
        }
    }

    pub fn handle_start(&mut self, ctx: &mut Ctx<'_>, start_ns: u64) -> Result<(), String> {
        let soak = soak_plan(ctx.plan);
        self.schedule = Some(Schedule::shared(
            start_ns,
            soak.publish_rate,
            self.index,
            soak.publishers,
        ));
        Ok(())
    }

    pub fn stop(&mut self) {
        self.stopped = true;
    }

    pub fn poll(&mut self, ctx: &mut Ctx<'_>) -> Result<(), String> {
        let Some(schedule) = self.schedule.filter(|_| !self.stopped) else {
            return Ok(());
        };
        let due = schedule.due(ctx.now_ns);
        let topics = self.topics.len();
        while self.next < due && ctx.out.pending() < OUTBOX_MAX {
            let intended = schedule.intended_ns(self.next);
            ctx.tally.send_lag.record(intended, ctx.now_ns);
            let x = (self.next % topics as u64) as usize;
            let stream = self.index * topics + x;
            let args = load_args(stream, self.seqs[x], intended, &ctx.plan.padding);
            let request = ctx.request();
            ctx.send(&Message::Publish {
                request,
                options: Dict::EMPTY,
                topic: Cow::Borrowed(&self.topics[x]),
                payload: Payload {
                    args: Some(Field::List(&args)),
                    kwargs: None,
                },
            })?;
            self.seqs[x] += 1;
            self.next += 1;
            if ctx.tally.stream_sent.len() <= stream {
                ctx.tally.stream_sent.resize(stream + 1, 0);
            }
            ctx.tally.stream_sent[stream] += 1;
            ctx.tally.sent += 1;
            ctx.tally.last_sent_ns = ctx.now_ns;
        }
        Ok(())
    }

    pub fn deadline(&self, pending: usize) -> Option<u64> {
        let schedule = self.schedule.filter(|_| !self.stopped)?;
        (pending < OUTBOX_MAX).then(|| schedule.intended_ns(self.next))
    }
}

/// Holds one subscription for the whole run and accounts for every event of the streams it covers.
#[derive(Debug)]
pub struct Subscriber {
    topic: String,
    policy: MatchPolicy,
    /// `covered[s]`: stream s matches the subscription.
    covered: Vec<bool>,
    trackers: Vec<SeqTracker>,
    corrupt: u64,
}

impl Subscriber {
    pub fn new(topic: &str, policy: MatchPolicy, streams: &[usize], plan: &Plan) -> Subscriber {
        let n = soak_plan(plan).streams();
        let mut covered = vec![false; n];
        for &s in streams {
            covered[s] = true;
        }
        Subscriber {
            topic: topic.to_owned(),
            policy,
            covered,
            trackers: vec![SeqTracker::default(); n],
            corrupt: 0,
        }
    }

    pub fn handle_joined(&mut self, ctx: &mut Ctx<'_>) -> Result<Step, String> {
        let options = match self.policy {
            MatchPolicy::Exact => Dict::EMPTY,
            MatchPolicy::Prefix => Dict::Fields(MATCH_PREFIX),
            MatchPolicy::Wildcard => Dict::Fields(MATCH_WILDCARD),
        };
        let request = ctx.request();
        ctx.send(&Message::Subscribe {
            request,
            options,
            topic: Cow::Borrowed(&self.topic),
        })?;
        Ok(Step::Continue)
    }

    pub fn handle_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) -> Result<Step, String> {
        match msg {
            Message::Subscribed { .. } => Ok(Step::Ready),
            Message::Event { payload, .. } => {
                match parse_load(&payload) {
                    Some((stream, seq, t_ns))
                        if self.covered.get(stream as usize).copied() == Some(true) =>
                    {
                        let tracker = &mut self.trackers[stream as usize];
                        let distinct = tracker.distinct();
                        tracker.record(seq);
                        if tracker.distinct() > distinct {
                            ctx.tally.received += 1;
                            ctx.tally.payload_bytes += ctx.plan.padding.len() as u64;
                            ctx.tally.last_received_ns = ctx.now_ns;
                        }
                        ctx.tally.record_event(t_ns, ctx.now_ns);
                    }
                    _ => self.corrupt += 1,
                }
                Ok(Step::Continue)
            }
            other => Err(format!(
                "subscriber got an unexpected {}",
                other.message_type().name()
            )),
        }
    }

    /// Loss against what the publishers sent on the covered streams (`stream_sent`), duplicates, reordering.
    pub fn integrity(&self, stream_sent: &[u64]) -> Integrity {
        let mut sum = Integrity {
            corrupt: self.corrupt,
            ..Integrity::default()
        };
        for (s, t) in self.trackers.iter().enumerate() {
            if !self.covered[s] {
                continue;
            }
            sum.add(Integrity {
                lost: t.lost(stream_sent.get(s).copied().unwrap_or(0)),
                duplicated: t.duplicated,
                reordered: t.reordered,
                corrupt: 0,
            });
        }
        sum
    }

    /// Distinct events this subscriber must receive, given what was sent per stream.
    pub fn expected(covered: &[usize], stream_sent: &[u64]) -> u64 {
        covered
            .iter()
            .map(|&s| stream_sent.get(s).copied().unwrap_or(0))
            .sum()
    }
}

/// A call in flight.
#[derive(Debug)]
struct PendingCall {
    seq: u64,
    kind: CallKind,
    /// Intended send time (latency is measured from it).
    t_ns: u64,
    /// Progressive results seen (bit i: chunk i) and the highest seen plus one.
    chunks: u64,
    chunk_next: u64,
    canceled: bool,
}

/// Calls on the open-loop schedule, round-robin over the callees' procedures, with `receive_progress`; cancels the
/// calls whose kind says so two schedule slots after sending them.
#[derive(Debug)]
pub struct Caller {
    index: usize,
    next_seq: u64,
    schedule: Option<Schedule>,
    pending: HashMap<u64, PendingCall>,
    /// Calls to cancel: (request, cancel once this many calls were sent).
    to_cancel: VecDeque<(u64, u64)>,
    /// Request IDs answered for good (bit per request ID).
    finished: Vec<u64>,
    highest_request: u64,
    stopped: bool,
    lost_chunks: u64,
    duplicated: u64,
    reordered: u64,
    corrupt: u64,
}

/// A call is canceled this many schedule slots after it was sent.
const CANCEL_AFTER: u64 = 2;

impl Caller {
    pub fn new(index: usize) -> Caller {
        Caller {
            index,
            next_seq: 0,
            schedule: None,
            pending: HashMap::new(),
            to_cancel: VecDeque::new(),
            finished: Vec::new(),
            highest_request: 0,
            stopped: false,
            lost_chunks: 0,
            duplicated: 0,
            reordered: 0,
            corrupt: 0,
        }
    }

    pub fn handle_start(&mut self, ctx: &mut Ctx<'_>, start_ns: u64) -> Result<(), String> {
        let soak = soak_plan(ctx.plan);
        self.schedule = Some(Schedule::shared(
            start_ns,
            soak.call_rate,
            self.index,
            soak.callers,
        ));
        Ok(())
    }

    pub fn poll(&mut self, ctx: &mut Ctx<'_>) -> Result<(), String> {
        let Some(schedule) = self.schedule.filter(|_| !self.stopped) else {
            return Ok(());
        };
        let due = schedule.due(ctx.now_ns);
        while self.next_seq < due && ctx.out.pending() < OUTBOX_MAX {
            let intended = schedule.intended_ns(self.next_seq);
            ctx.tally.send_lag.record(intended, ctx.now_ns);
            self.call(ctx, intended)?;
            while let Some(&(request, at)) = self.to_cancel.front() {
                if at > self.next_seq {
                    break;
                }
                self.to_cancel.pop_front();
                self.cancel(ctx, request)?;
            }
        }
        Ok(())
    }

    fn call(&mut self, ctx: &mut Ctx<'_>, t_ns: u64) -> Result<(), String> {
        let soak = soak_plan(ctx.plan);
        let seq = self.next_seq;
        let callees = soak.callees.max(1);
        let k = (self.index as u64 + seq) % callees as u64;
        let procedure = callee_procedure(k as usize, Some(seq));
        let args = load_args(self.index, seq, t_ns, &ctx.plan.padding);
        let request = ctx.request();
        ctx.send(&Message::Call {
            request,
            options: Dict::Fields(RECEIVE_PROGRESS),
            procedure: Cow::Owned(procedure),
            payload: Payload {
                args: Some(Field::List(&args)),
                kwargs: None,
            },
        })?;
        let kind = CallKind::of(seq, soak.cancel_per_10);
        if let CallKind::Cancel(_) = kind {
            self.to_cancel
                .push_back((request.get(), seq + 1 + CANCEL_AFTER));
        }
        self.pending.insert(
            request.get(),
            PendingCall {
                seq,
                kind,
                t_ns,
                chunks: 0,
                chunk_next: 0,
                canceled: false,
            },
        );
        self.highest_request = self.highest_request.max(request.get());
        self.next_seq += 1;
        ctx.tally.sent += 1;
        ctx.tally.calls += 1;
        ctx.tally.last_sent_ns = ctx.now_ns;
        Ok(())
    }

    fn cancel(&mut self, ctx: &mut Ctx<'_>, request: u64) -> Result<(), String> {
        let Some(call) = self.pending.get_mut(&request) else {
            return Ok(()); // answered already
        };
        let CallKind::Cancel(mode) = call.kind else {
            return Ok(());
        };
        call.canceled = true;
        let options = match mode {
            CancelMode::Skip => CANCEL_SKIP,
            CancelMode::Kill => CANCEL_KILL,
            CancelMode::KillNoWait => CANCEL_KILLNOWAIT,
        };
        let request = Id::new(request).ok_or("request ID out of range")?;
        ctx.send(&Message::Cancel {
            request,
            options: Dict::Fields(options),
        })
    }

    /// The run's sending is over: cancel every call still to be canceled.
    pub fn handle_quiesce(&mut self, ctx: &mut Ctx<'_>) -> Result<(), String> {
        self.stopped = true;
        while let Some((request, _)) = self.to_cancel.pop_front() {
            self.cancel(ctx, request)?;
        }
        Ok(())
    }

    pub fn deadline(&self, pending: usize) -> Option<u64> {
        let schedule = self.schedule.filter(|_| !self.stopped)?;
        (pending < OUTBOX_MAX).then(|| schedule.intended_ns(self.next_seq))
    }

    fn is_finished(&self, request: u64) -> bool {
        let (word, bit) = ((request / 64) as usize, request % 64);
        self.finished.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    fn finish(&mut self, request: u64) {
        let (word, bit) = ((request / 64) as usize, request % 64);
        if self.finished.len() <= word {
            self.finished.resize(word + 1, 0);
        }
        self.finished[word] |= 1 << bit;
    }

    /// An answer for a request that is not pending: after its final answer (a duplicate) or never sent (corrupt).
    fn stray(&mut self, request: u64) {
        if self.is_finished(request) {
            self.duplicated += 1;
        } else {
            self.corrupt += 1;
        }
    }

    pub fn handle_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) -> Result<Step, String> {
        let progress_total = soak_plan(ctx.plan).progress;
        match msg {
            Message::Result {
                request,
                details,
                payload,
            } => {
                let request = request.get();
                let progress = details
                    .get("progress")
                    .and_then(|p| p.as_bool())
                    .unwrap_or(false);
                let Some(call) = self.pending.get_mut(&request) else {
                    self.stray(request);
                    return Ok(Step::Continue);
                };
                let echo = parse_load(&payload);
                let args_chunk = payload
                    .args
                    .and_then(|a| a.as_raw())
                    .and_then(|raw| raw.list()?.nth(3))
                    .and_then(|c| c.as_u64());
                if echo.map(|(i, s, _)| (i, s)) != Some((self.index as u64, call.seq)) {
                    self.corrupt += 1;
                    return Ok(Step::Continue);
                }
                if progress {
                    ctx.tally.soak.progress_results += 1;
                    match args_chunk {
                        Some(chunk) if chunk < 64 => {
                            if call.chunks & (1 << chunk) != 0 {
                                self.duplicated += 1;
                            } else {
                                if chunk < call.chunk_next {
                                    self.reordered += 1;
                                }
                                call.chunks |= 1 << chunk;
                                call.chunk_next = call.chunk_next.max(chunk + 1);
                            }
                        }
                        _ => self.corrupt += 1,
                    }
                    return Ok(Step::Continue);
                }
                let Some(call) = self.pending.remove(&request) else {
                    return Ok(Step::Continue);
                };
                self.finish(request);
                ctx.tally.answers += 1;
                ctx.tally.last_received_ns = ctx.now_ns;
                match call.kind {
                    CallKind::Progressive => {
                        self.lost_chunks +=
                            progress_total.saturating_sub(u64::from(call.chunks.count_ones()));
                        ctx.tally.soak.calls_completed += 1;
                        ctx.tally.record_call(call.t_ns, ctx.now_ns);
                    }
                    CallKind::Cancel(_) => ctx.tally.soak.cancel_too_late += 1,
                }
                Ok(Step::Continue)
            }
            Message::Error {
                request_type,
                request,
                details,
                error,
                payload,
            } => {
                let request = request.get();
                let canceled = error == CANCELED;
                match self.pending.get(&request) {
                    Some(call) if canceled && call.canceled => {
                        if let CallKind::Cancel(mode) = call.kind {
                            let c = &mut ctx.tally.soak;
                            match mode {
                                CancelMode::Skip => c.canceled_skip += 1,
                                CancelMode::Kill => c.canceled_kill += 1,
                                CancelMode::KillNoWait => c.canceled_killnowait += 1,
                            }
                        }
                        self.pending.remove(&request);
                        self.finish(request);
                        ctx.tally.answers += 1;
                        ctx.tally.last_received_ns = ctx.now_ns;
                    }
                    Some(_) => {
                        // A final answer all the same: account for the call, report the error.
                        self.pending.remove(&request);
                        self.finish(request);
                        ctx.tally.answers += 1;
                        ctx.tally.soft_errors.push(crate::roles::describe_error(
                            request_type,
                            &error,
                            &details,
                            &payload,
                        ));
                    }
                    None => self.stray(request),
                }
                Ok(Step::Continue)
            }
            other => Err(format!(
                "caller got an unexpected {}",
                other.message_type().name()
            )),
        }
    }

    pub fn integrity(&self, _plan: &Plan) -> Integrity {
        Integrity {
            lost: self.pending.len() as u64 + self.lost_chunks,
            duplicated: self.duplicated,
            reordered: self.reordered,
            corrupt: self.corrupt,
        }
    }
}

/// Procedure callee `k` registers (even k: exact `soak.rpc<k>`; odd k: prefix `soak.rpc<k>.`), or, given a call's
/// number, the procedure a caller calls to reach it.
pub fn callee_procedure(k: usize, seq: Option<u64>) -> String {
    match (k % 2 == 1, seq) {
        (false, _) => format!("soak.rpc{k}"),
        (true, None) => format!("soak.rpc{k}."),
        (true, Some(seq)) => format!("soak.rpc{k}.x{}", seq % 7),
    }
}

/// A call the callee holds until it is interrupted or its hold time ends.
#[derive(Debug)]
struct Held {
    request: Id,
    index: u64,
    seq: u64,
    t_ns: u64,
    due_ns: u64,
}

/// Registers one procedure; answers progressive calls with `progress` progressive YIELDs and a final one, holds the
/// calls that are to be canceled.
#[derive(Debug)]
pub struct Callee {
    procedure: String,
    prefix: bool,
    held: VecDeque<Held>,
}

impl Callee {
    pub fn new(procedure: &str, prefix: bool) -> Callee {
        Callee {
            procedure: procedure.to_owned(),
            prefix,
            held: VecDeque::new(),
        }
    }

    pub fn handle_joined(&mut self, ctx: &mut Ctx<'_>) -> Result<Step, String> {
        let request = ctx.request();
        ctx.send(&Message::Register {
            request,
            options: if self.prefix {
                Dict::Fields(MATCH_PREFIX)
            } else {
                Dict::EMPTY
            },
            procedure: Cow::Borrowed(&self.procedure),
        })?;
        Ok(Step::Continue)
    }

    fn answer(
        ctx: &mut Ctx<'_>,
        request: Id,
        index: u64,
        seq: u64,
        t_ns: u64,
    ) -> Result<(), String> {
        let args = load_args(index as usize, seq, t_ns, &ctx.plan.padding);
        ctx.send(&Message::Yield {
            request,
            options: Dict::EMPTY,
            payload: Payload {
                args: Some(Field::List(&args)),
                kwargs: None,
            },
        })
    }

    pub fn handle_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) -> Result<Step, String> {
        let soak = soak_plan(ctx.plan);
        match msg {
            Message::Registered { .. } => Ok(Step::Ready),
            Message::Invocation {
                request, payload, ..
            } => {
                let Some((index, seq, t_ns)) = parse_load(&payload) else {
                    return Err("callee got an INVOCATION without the load payload".into());
                };
                ctx.tally.invocations += 1;
                match CallKind::of(seq, soak.cancel_per_10) {
                    CallKind::Progressive => {
                        for chunk in 0..soak.progress {
                            let args = [
                                Field::UInt(index),
                                Field::UInt(seq),
                                Field::UInt(t_ns),
                                Field::UInt(chunk),
                            ];
                            ctx.send(&Message::Yield {
                                request,
                                options: Dict::Fields(PROGRESS),
                                payload: Payload {
                                    args: Some(Field::List(&args)),
                                    kwargs: None,
                                },
                            })?;
                        }
                        Callee::answer(ctx, request, index, seq, t_ns)?;
                    }
                    CallKind::Cancel(_) => self.held.push_back(Held {
                        request,
                        index,
                        seq,
                        t_ns,
                        due_ns: ctx.now_ns + soak.hold_ns,
                    }),
                }
                Ok(Step::Continue)
            }
            Message::Interrupt { request, .. } => {
                ctx.tally.soak.interrupts += 1;
                if let Some(at) = self.held.iter().position(|h| h.request == request) {
                    self.held.remove(at);
                    ctx.send(&Message::Error {
                        request_type: kreisel_codec::MessageType::Invocation.code(),
                        request,
                        details: Dict::EMPTY,
                        error: Cow::Borrowed(CANCELED),
                        payload: Payload::EMPTY,
                    })?;
                }
                // Not held: answered already, nothing to do.
                Ok(Step::Continue)
            }
            other => Err(format!(
                "callee got an unexpected {}",
                other.message_type().name()
            )),
        }
    }

    /// Answers the held calls whose hold time is over.
    pub fn poll(&mut self, ctx: &mut Ctx<'_>) -> Result<(), String> {
        while let Some(h) = self.held.front() {
            if h.due_ns > ctx.now_ns {
                break;
            }
            let Some(h) = self.held.pop_front() else {
                break;
            };
            ctx.tally.soak.held_answered += 1;
            Callee::answer(ctx, h.request, h.index, h.seq, h.t_ns)?;
        }
        Ok(())
    }

    pub fn deadline(&self) -> Option<u64> {
        self.held.front().map(|h| h.due_ns)
    }
}

/// One session after the other: SUBSCRIBE to its own topic and to `soak..t0` (wildcard), PUBLISH to itself
/// (acknowledged, `exclude_me: false`), wait for PUBLISHED and its own EVENT, stay `churn_dwell`, leave: GOODBYE,
/// abrupt close, or mid-frame close, in turn.
#[derive(Debug)]
pub struct Churner {
    index: usize,
    topic: String,
    wait_event: bool,
    /// The request of the SUBSCRIBE to its own topic, and the subscription it got.
    own_request: u64,
    own_subscription: Option<Id>,
    subscribed: u8,
    published: bool,
    event: bool,
    cycle: u64,
    /// When the current session may leave (set once its own event is back).
    leave_at: Option<u64>,
    order: OrderTracker,
    regressed: u64,
    corrupt: u64,
}

impl Churner {
    pub fn new(index: usize) -> Churner {
        Churner {
            index,
            topic: format!("soak.churn.{index}"),
            wait_event: false,
            own_request: 0,
            own_subscription: None,
            subscribed: 0,
            published: false,
            event: false,
            cycle: 0,
            leave_at: None,
            order: OrderTracker::default(),
            regressed: 0,
            corrupt: 0,
        }
    }

    pub fn begin_cycle(&mut self, _now_ns: u64) {
        self.subscribed = 0;
        self.own_subscription = None;
        self.published = false;
        self.event = false;
        self.leave_at = None;
        self.regressed += self.order.regressed;
        self.order = OrderTracker::default();
    }

    pub fn handle_joined(
        &mut self,
        ctx: &mut Ctx<'_>,
        publisher_exclusion: bool,
    ) -> Result<Step, String> {
        self.wait_event = publisher_exclusion;
        for (topic, options) in [
            (self.topic.as_str(), Dict::EMPTY),
            (CHURN_PATTERN, Dict::Fields(MATCH_WILDCARD)),
        ] {
            let request = ctx.request();
            if topic == self.topic {
                self.own_request = request.get();
            }
            ctx.send(&Message::Subscribe {
                request,
                options,
                topic: Cow::Borrowed(topic),
            })?;
        }
        Ok(Step::Ready)
    }

    pub fn handle_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) -> Result<Step, String> {
        match msg {
            Message::Subscribed {
                request,
                subscription,
            } => {
                if request.get() == self.own_request {
                    self.own_subscription = Some(subscription);
                }
                self.subscribed += 1;
                if self.subscribed == 2 {
                    let args = load_args(self.index, self.cycle, ctx.now_ns, &ctx.plan.padding);
                    let request = ctx.request();
                    ctx.send(&Message::Publish {
                        request,
                        options: Dict::Fields(CHURN_PUBLISH),
                        topic: Cow::Borrowed(&self.topic),
                        payload: Payload {
                            args: Some(Field::List(&args)),
                            kwargs: None,
                        },
                    })?;
                    ctx.tally.sent += 1;
                }
            }
            Message::Published { .. } => self.published = true,
            Message::Event {
                subscription,
                payload,
                ..
            } => {
                let own = self.own_subscription == Some(subscription);
                match parse_load(&payload) {
                    Some((index, seq, _)) if own => {
                        if index == self.index as u64 && seq == self.cycle && !self.event {
                            self.event = true;
                        } else {
                            self.corrupt += 1;
                        }
                    }
                    Some((stream, seq, _)) => {
                        ctx.tally.soak.churn_events += 1;
                        if !self.order.record(stream as usize, seq) {
                            self.corrupt += 1;
                        }
                    }
                    None => self.corrupt += 1,
                }
            }
            other => {
                return Err(format!(
                    "churn session got an unexpected {}",
                    other.message_type().name()
                ))
            }
        }
        if self.leave_at.is_none() && self.published && (self.event || !self.wait_event) {
            self.leave_at = Some(ctx.now_ns + soak_plan(ctx.plan).churn_dwell_ns);
        }
        Ok(Step::Continue)
    }

    /// Leaves once the dwell is over, each time in the next way.
    pub fn poll(&mut self, ctx: &mut Ctx<'_>) -> Step {
        match self.leave_at {
            Some(at) if at <= ctx.now_ns => {
                self.leave_at = None;
                let how = self.cycle % 3;
                self.cycle += 1;
                let counts = &mut ctx.tally.soak;
                match how {
                    0 => {
                        counts.churn_goodbye += 1;
                        Step::Leave
                    }
                    1 => {
                        counts.churn_abrupt += 1;
                        Step::Drop(DropKind::Abrupt)
                    }
                    _ => {
                        counts.churn_mid_frame += 1;
                        Step::Drop(DropKind::MidFrame)
                    }
                }
            }
            _ => Step::Continue,
        }
    }

    pub fn deadline(&self) -> Option<u64> {
        self.leave_at
    }

    pub fn integrity(&self) -> Integrity {
        Integrity {
            reordered: self.regressed + self.order.regressed,
            corrupt: self.corrupt,
            ..Integrity::default()
        }
    }
}

/// Joins, subscribes to its own topic, and stays, until the next reconnect storm drops it.
#[derive(Debug)]
pub struct Storm {
    index: usize,
    topic: String,
    /// Connections so far (the first is the setup's, the others follow storms).
    connections: u64,
}

impl Storm {
    pub fn new(index: usize) -> Storm {
        Storm {
            index,
            topic: format!("soak.storm.{index}"),
            connections: 0,
        }
    }

    pub fn begin_connection(&mut self, _now_ns: u64) {
        self.connections += 1;
    }

    pub fn handle_joined(&mut self, ctx: &mut Ctx<'_>) -> Result<Step, String> {
        let request = ctx.request();
        ctx.send(&Message::Subscribe {
            request,
            options: Dict::EMPTY,
            topic: Cow::Borrowed(&self.topic),
        })?;
        Ok(Step::Continue)
    }

    pub fn handle_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) -> Result<Step, String> {
        match msg {
            Message::Subscribed { .. } => {
                if self.connections > 1 {
                    ctx.tally.soak.storm_rejoined += 1;
                }
                Ok(Step::Ready)
            }
            other => Err(format!(
                "storm session {} got an unexpected {}",
                self.index,
                other.message_type().name()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_kinds() {
        let kinds: Vec<CallKind> = (0..10).map(|s| CallKind::of(s, 3)).collect();
        assert_eq!(kinds[0], CallKind::Cancel(CancelMode::Skip));
        assert_eq!(kinds[1], CallKind::Cancel(CancelMode::Kill));
        assert_eq!(kinds[2], CallKind::Cancel(CancelMode::KillNoWait));
        assert!(kinds[3..].iter().all(|k| *k == CallKind::Progressive));
        assert_eq!(CallKind::of(13, 3), CallKind::Progressive);
        assert_eq!(CallKind::of(21, 0), CallKind::Progressive);
    }

    #[test]
    fn procedures() {
        assert_eq!(callee_procedure(0, None), "soak.rpc0");
        assert_eq!(callee_procedure(0, Some(5)), "soak.rpc0");
        assert_eq!(callee_procedure(1, None), "soak.rpc1.");
        assert_eq!(callee_procedure(1, Some(9)), "soak.rpc1.x2");
    }

    #[test]
    fn counts_add() {
        let mut a = Counts {
            calls_completed: 1,
            slow_events: 2,
            ..Counts::default()
        };
        a.add(&a.clone());
        assert_eq!((a.calls_completed, a.slow_events), (2, 4));
    }
}
