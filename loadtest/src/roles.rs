//! What a session does once joined: publisher, subscriber, caller, callee, joiner, churner. Each role reacts to
//! the messages addressed to it and, for senders, to the clock. Roles never touch sockets: they write messages
//! through [`Ctx`].

use std::borrow::Cow;

use kreisel_codec::{Dict, Field, Id, Message, Payload, Serializer};

use crate::nats;
use crate::plan::{Mode, Plan, RoleSpec};
use crate::soak;
use crate::stats::{CallTracker, Integrity, Latency, Schedule, SeqTracker, WindowLatency};
use crate::transport::Writer;

/// A sender stops queueing once this many bytes wait in its connection's output buffer (open loop only; closed
/// loop is bounded by its window). The schedule keeps running, so the delay shows in the latency.
pub const OUTBOX_MAX: usize = 1 << 20;

const ACKNOWLEDGE: &[(&str, Field<'static>)] = &[("acknowledge", Field::Bool(true))];
const MATCH_PREFIX: &[(&str, Field<'static>)] = &[("match", Field::Str("prefix"))];
const CHURN_PUBLISH: &[(&str, Field<'static>)] = &[
    ("acknowledge", Field::Bool(true)),
    ("exclude_me", Field::Bool(false)),
];

/// Counters and histograms of one worker thread.
#[derive(Debug, Default)]
pub struct Tally {
    /// PUBLISH or CALL messages sent.
    pub sent: u64,
    /// PUBLISHED received.
    pub acked: u64,
    /// Distinct EVENTs or RESULTs received (the deliveries the run waits for).
    pub received: u64,
    /// Padding bytes delivered with them.
    pub payload_bytes: u64,
    /// INVOCATIONs answered.
    pub invocations: u64,
    /// Completed churn cycles.
    pub cycles: u64,
    /// Publish-to-event or call-to-result latency; join latency (connect); cycle time (churn).
    pub latency: Latency,
    /// Open loop: how late the generator itself sent, relative to the schedule.
    pub send_lag: Latency,
    /// Time of the last send and the last delivery (ns on the process clock).
    pub last_sent_ns: u64,
    pub last_received_ns: u64,
    /// Soak: CALLs sent and their final answers (RESULT or ERROR `wamp.error.canceled`), CALL-to-RESULT latency.
    pub calls: u64,
    pub answers: u64,
    pub call_latency: Latency,
    /// Soak: PUBLISHes sent per stream.
    pub stream_sent: Vec<u64>,
    /// Soak: latency of the current second, for the time series (`None` outside the soak).
    pub window: Option<Window>,
    /// Soak: what the workload itself did and saw (see [`soak::Counts`]).
    pub soak: soak::Counts,
    /// Errors a role reports without ending its session (soak): role, message.
    pub soft_errors: Vec<String>,
}

/// Latency of one second of a soak (publish to EVENT, CALL to final RESULT).
#[derive(Clone, Debug, Default)]
pub struct Window {
    /// Seconds since the run's start.
    pub second: u64,
    pub events: WindowLatency,
    pub calls: WindowLatency,
}

impl Tally {
    /// Records a publish-to-EVENT latency (overall and, in a soak, for the current second).
    pub fn record_event(&mut self, sent_ns: u64, now_ns: u64) {
        self.latency.record(sent_ns, now_ns);
        if let Some(w) = &mut self.window {
            w.events.record(sent_ns, now_ns);
        }
    }

    /// Records a CALL-to-RESULT latency of the soak.
    pub fn record_call(&mut self, sent_ns: u64, now_ns: u64) {
        self.call_latency.record(sent_ns, now_ns);
        if let Some(w) = &mut self.window {
            w.calls.record(sent_ns, now_ns);
        }
    }
}

/// What a role hands a session after handling something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Continue,
    /// Setup finished (subscriptions or registrations confirmed).
    Ready,
    /// The role is done with this session: send GOODBYE.
    Leave,
    /// The role is done with this session: close the connection without GOODBYE.
    Drop(DropKind),
}

/// How a session leaves without GOODBYE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropKind {
    /// Close the socket.
    Abrupt,
    /// Send the start of a frame (its header announces more bytes than follow), then close the socket.
    MidFrame,
}

/// Everything a role may use while handling an input.
pub struct Ctx<'a> {
    pub out: &'a mut Writer,
    pub ser: Serializer,
    pub next_request: &'a mut Id,
    pub now_ns: u64,
    pub tally: &'a mut Tally,
    pub plan: &'a Plan,
}

impl Ctx<'_> {
    /// The next request ID of this session (1, 2, 3, ...).
    pub fn request(&mut self) -> Id {
        let id = *self.next_request;
        *self.next_request = id.next();
        id
    }

    pub fn send(&mut self, msg: &Message<'_>) -> Result<(), String> {
        self.out.send(self.ser, msg)
    }
}

/// The load payload `[sender_index, seq, t_ns, padding]` as fields.
pub(crate) fn load_args<'a>(index: usize, seq: u64, t_ns: u64, padding: &'a str) -> [Field<'a>; 4] {
    [
        Field::UInt(index as u64),
        Field::UInt(seq),
        Field::UInt(t_ns),
        Field::Str(padding),
    ]
}

/// Reads `[sender_index, seq, t_ns, ...]` back from a payload.
pub(crate) fn parse_load(payload: &Payload<'_>) -> Option<(u64, u64, u64)> {
    let raw = payload.args?.as_raw()?;
    let mut items = raw.list()?;
    let index = items.next()?.as_u64()?;
    let seq = items.next()?.as_u64()?;
    let t_ns = items.next()?.as_u64()?;
    Some((index, seq, t_ns))
}

/// A clear one-line description of an ERROR message.
pub fn describe_error(
    request_type: u64,
    error: &str,
    details: &Dict<'_>,
    payload: &Payload<'_>,
) -> String {
    let what =
        kreisel_codec::MessageType::from_code(request_type).map_or("unknown request", |t| t.name());
    let mut text = format!("router answered {what} with ERROR {error}");
    if let Some(message) = details.get("message").and_then(|m| m.as_str()) {
        text.push_str(&format!(": {message}"));
    }
    if let Some(first) = payload
        .args
        .and_then(|a| a.as_raw())
        .and_then(|raw| raw.list()?.next())
    {
        if let Some(s) = first.as_str() {
            text.push_str(&format!(" ({s})"));
        }
    }
    text
}

#[derive(Debug)]
pub enum Role {
    Publisher(Publisher),
    Subscriber(Subscriber),
    Caller(Caller),
    Callee(Callee),
    Joiner,
    Churner(Churner),
    SoakPublisher(soak::Publisher),
    SoakSubscriber(soak::Subscriber),
    SoakCaller(soak::Caller),
    SoakCallee(soak::Callee),
    SoakChurner(soak::Churner),
    Storm(soak::Storm),
}

impl Role {
    pub fn new(spec: &RoleSpec, plan: &Plan) -> Role {
        match spec {
            RoleSpec::Publisher { index, topic } => {
                Role::Publisher(Publisher::new(*index, topic.clone()))
            }
            RoleSpec::Subscriber { topics, prefix } => {
                Role::Subscriber(Subscriber::new(topics, *prefix, true, plan))
            }
            RoleSpec::SlowSubscriber { topics, prefix, .. } => {
                Role::Subscriber(Subscriber::new(topics, *prefix, false, plan))
            }
            RoleSpec::Caller { index } => Role::Caller(Caller::new(*index, plan.count)),
            RoleSpec::Callee { procedure } => Role::Callee(Callee {
                procedure: procedure.clone(),
            }),
            RoleSpec::Joiner => Role::Joiner,
            RoleSpec::Churner { index } => Role::Churner(Churner::new(*index)),
            RoleSpec::SoakPublisher { index } => {
                Role::SoakPublisher(soak::Publisher::new(*index, plan))
            }
            RoleSpec::SoakSubscriber {
                topic,
                policy,
                streams,
            } => Role::SoakSubscriber(soak::Subscriber::new(topic, *policy, streams, plan)),
            RoleSpec::SoakCaller { index } => Role::SoakCaller(soak::Caller::new(*index)),
            RoleSpec::SoakCallee { procedure, prefix } => {
                Role::SoakCallee(soak::Callee::new(procedure, *prefix))
            }
            RoleSpec::SoakChurner { index } => Role::SoakChurner(soak::Churner::new(*index)),
            RoleSpec::StormSession { index } => Role::Storm(soak::Storm::new(*index)),
        }
    }

    /// The session joined: send SUBSCRIBE/REGISTER, or report ready at once.
    pub fn handle_joined(
        &mut self,
        ctx: &mut Ctx<'_>,
        publisher_exclusion: bool,
    ) -> Result<Step, String> {
        match self {
            Role::Subscriber(s) => s.handle_joined(ctx),
            Role::Callee(c) => c.handle_joined(ctx),
            Role::Churner(c) => c.handle_joined(ctx, publisher_exclusion),
            Role::SoakSubscriber(s) => s.handle_joined(ctx),
            Role::SoakCallee(c) => c.handle_joined(ctx),
            Role::SoakChurner(c) => c.handle_joined(ctx, publisher_exclusion),
            Role::Storm(s) => s.handle_joined(ctx),
            Role::Publisher(_)
            | Role::Caller(_)
            | Role::Joiner
            | Role::SoakPublisher(_)
            | Role::SoakCaller(_) => Ok(Step::Ready),
        }
    }

    /// The run phase begins at `start_ns`.
    pub fn handle_start(&mut self, ctx: &mut Ctx<'_>, start_ns: u64) -> Result<(), String> {
        match self {
            Role::Publisher(p) => p.handle_start(ctx, start_ns),
            Role::Caller(c) => c.handle_start(ctx, start_ns),
            Role::SoakPublisher(p) => p.handle_start(ctx, start_ns),
            Role::SoakCaller(c) => c.handle_start(ctx, start_ns),
            _ => Ok(()),
        }
    }

    /// The run's sending is over (soak): stop sending, cancel what is still to be canceled.
    pub fn handle_quiesce(&mut self, ctx: &mut Ctx<'_>) -> Result<(), String> {
        match self {
            Role::SoakPublisher(p) => {
                p.stop();
                Ok(())
            }
            Role::SoakCaller(c) => c.handle_quiesce(ctx),
            _ => Ok(()),
        }
    }

    /// A new connection of this session begins (churners and the soak's reconnecting sessions start over).
    pub fn begin_connection(&mut self, now_ns: u64) {
        match self {
            Role::Churner(c) => c.begin_cycle(now_ns),
            Role::SoakChurner(c) => c.begin_cycle(now_ns),
            Role::Storm(s) => s.begin_connection(now_ns),
            Role::Subscriber(s) => s.begin_connection(),
            _ => {}
        }
    }

    /// A message for the role (anything but the session-level WELCOME, ABORT, GOODBYE).
    pub fn handle_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) -> Result<Step, String> {
        // A soak caller's calls are answered with ERROR `wamp.error.canceled` when it canceled them: it judges
        // its ERRORs itself.
        if let Message::Error {
            request_type,
            details,
            error,
            payload,
            ..
        } = &msg
        {
            if !matches!(self, Role::SoakCaller(_)) {
                return Err(describe_error(*request_type, error, details, payload));
            }
        }
        match self {
            Role::Publisher(p) => p.handle_message(ctx, msg),
            Role::Subscriber(s) => s.handle_message(ctx, msg),
            Role::Caller(c) => c.handle_message(ctx, msg),
            Role::Callee(c) => c.handle_message(ctx, msg),
            Role::Churner(c) => c.handle_message(ctx, msg),
            Role::SoakPublisher(_) => Err(format!(
                "publisher got an unexpected {}",
                msg.message_type().name()
            )),
            Role::SoakSubscriber(s) => s.handle_message(ctx, msg),
            Role::SoakCaller(c) => c.handle_message(ctx, msg),
            Role::SoakCallee(c) => c.handle_message(ctx, msg),
            Role::SoakChurner(c) => c.handle_message(ctx, msg),
            Role::Storm(s) => s.handle_message(ctx, msg),
            Role::Joiner => Err(format!(
                "unexpected {} for a session that only joined",
                msg.message_type().name()
            )),
        }
    }

    /// Does what is due: open-loop sending, the soak's timed actions (answering held calls, leaving after a
    /// dwell).
    pub fn poll(&mut self, ctx: &mut Ctx<'_>) -> Result<Step, String> {
        match self {
            Role::Publisher(p) => p.poll_send(ctx).map(|()| Step::Continue),
            Role::Caller(c) => c.poll_send(ctx).map(|()| Step::Continue),
            Role::SoakPublisher(p) => p.poll(ctx).map(|()| Step::Continue),
            Role::SoakCaller(c) => c.poll(ctx).map(|()| Step::Continue),
            Role::SoakCallee(c) => c.poll(ctx).map(|()| Step::Continue),
            Role::SoakChurner(c) => Ok(c.poll(ctx)),
            _ => Ok(Step::Continue),
        }
    }

    /// When [`Role::poll`] is next needed (ns), given the bytes waiting in the output buffer.
    pub fn deadline(&self, plan: &Plan, pending: usize) -> Option<u64> {
        match self {
            Role::Publisher(p) => next_deadline(p.schedule, p.next_seq, plan, pending),
            Role::Caller(c) => next_deadline(c.schedule, c.next_seq, plan, pending),
            Role::SoakPublisher(p) => p.deadline(pending),
            Role::SoakCaller(c) => c.deadline(pending),
            Role::SoakCallee(c) => c.deadline(),
            Role::SoakChurner(c) => c.deadline(),
            _ => None,
        }
    }

    /// Whether [`Role::poll`] has anything to do for this role (it then gets polled whenever its deadline comes).
    pub fn is_timed(&self) -> bool {
        matches!(
            self,
            Role::Publisher(_)
                | Role::Caller(_)
                | Role::SoakPublisher(_)
                | Role::SoakCaller(_)
                | Role::SoakCallee(_)
                | Role::SoakChurner(_)
        )
    }

    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Role::Publisher(_) => "publisher",
            Role::Subscriber(_) => "subscriber",
            Role::Caller(_) => "caller",
            Role::Callee(_) => "callee",
            Role::Joiner => "joiner",
            Role::Churner(_) => "churner",
            Role::SoakPublisher(_) => "publisher",
            Role::SoakSubscriber(_) => "subscriber",
            Role::SoakCaller(_) => "caller",
            Role::SoakCallee(_) => "callee",
            Role::SoakChurner(_) => "churner",
            Role::Storm(_) => "storm session",
        }
    }

    /// Loss, duplicates and reordering seen by this role, against the plan's counts (`stream_sent`: the soak's
    /// publications per stream).
    pub fn integrity(&self, plan: &Plan, stream_sent: &[u64]) -> Integrity {
        match self {
            Role::Subscriber(s) if s.counted => s.integrity(plan),
            Role::Subscriber(s) => Integrity {
                corrupt: s.corrupt,
                ..Integrity::default()
            },
            Role::Caller(c) => c.integrity(plan),
            Role::SoakSubscriber(s) => s.integrity(stream_sent),
            Role::SoakCaller(c) => c.integrity(plan),
            Role::SoakChurner(c) => c.integrity(),
            _ => Integrity::default(),
        }
    }

    pub fn is_sender(&self) -> bool {
        matches!(
            self,
            Role::Publisher(_) | Role::Caller(_) | Role::SoakPublisher(_) | Role::SoakCaller(_)
        )
    }

    /// Whether the session joins again after its session ended, while the run lasts.
    pub fn rejoins(&self, plan: &Plan) -> bool {
        match self {
            Role::Churner(_) | Role::SoakChurner(_) | Role::Storm(_) => true,
            Role::Subscriber(s) => !s.counted && plan.soak.is_some(),
            _ => false,
        }
    }

    /// Whether the session connects only once the run started (churners).
    pub fn connects_at_start(&self) -> bool {
        matches!(self, Role::Churner(_) | Role::SoakChurner(_))
    }
}

/// Publishes `[index, seq, t_ns, padding]` to one topic.
#[derive(Debug)]
pub struct Publisher {
    index: usize,
    topic: String,
    /// The topic as an MQTT topic name (MQTT mode), made on first use.
    mqtt_topic: Option<String>,
    next_seq: u64,
    outstanding: u64,
    schedule: Option<Schedule>,
}

impl Publisher {
    fn new(index: usize, topic: String) -> Publisher {
        Publisher {
            index,
            topic,
            mqtt_topic: None,
            next_seq: 0,
            outstanding: 0,
            schedule: None,
        }
    }

    fn handle_start(&mut self, ctx: &mut Ctx<'_>, start_ns: u64) -> Result<(), String> {
        match ctx.plan.mode {
            Mode::Closed { .. } => self.fill_window(ctx),
            Mode::Open { rate } => {
                self.schedule = Some(Schedule::shared(
                    start_ns,
                    rate,
                    self.index,
                    ctx.plan.senders,
                ));
                Ok(())
            }
        }
    }

    fn fill_window(&mut self, ctx: &mut Ctx<'_>) -> Result<(), String> {
        let first = self.next_seq;
        while self.outstanding < ctx.plan.window() && self.next_seq < ctx.plan.count {
            self.publish(ctx, ctx.now_ns, true)?;
            self.outstanding += 1;
        }
        if ctx.plan.endpoint.is_nats() && self.next_seq > first {
            // NATS acknowledges nothing: the PONG to this PING confirms the whole window (`acknowledged`).
            nats::ping(ctx.out);
        }
        if ctx.plan.endpoint.is_mqtt() && ctx.plan.qos == 0 && self.next_seq > first {
            // Nor does MQTT at QoS 0: the PINGRESP does.
            crate::mqtt::ping(ctx.out);
        }
        Ok(())
    }

    /// `n` publications are confirmed: by a PUBLISHED each or, over NATS, all outstanding by the PONG that ends
    /// the window. Publishes the next window's worth.
    pub(crate) fn acknowledged(&mut self, ctx: &mut Ctx<'_>, n: u64) -> Result<(), String> {
        self.outstanding = self.outstanding.saturating_sub(n);
        ctx.tally.acked += n;
        self.fill_window(ctx)
    }

    /// Publications sent and not yet confirmed (closed loop).
    pub(crate) fn outstanding(&self) -> u64 {
        self.outstanding
    }

    fn publish(&mut self, ctx: &mut Ctx<'_>, t_ns: u64, acknowledge: bool) -> Result<(), String> {
        if ctx.plan.endpoint.is_nats() {
            let load = [self.index as u64, self.next_seq, t_ns];
            nats::publish(ctx.out, &self.topic, load, &ctx.plan.padding);
        } else if ctx.plan.endpoint.is_mqtt() {
            let load = [self.index as u64, self.next_seq, t_ns];
            // QoS 1 packet ids: 1..=65535 in turn (a window is at most 65535 publications).
            let packet_id = (ctx.plan.qos == 1).then(|| (self.next_seq % 65535) as u16 + 1);
            let topic =
                (self.mqtt_topic).get_or_insert_with(|| crate::mqtt::topic(&self.topic, false));
            crate::mqtt::publish(ctx.out, topic, packet_id, load, &ctx.plan.padding);
        } else {
            let args = load_args(self.index, self.next_seq, t_ns, &ctx.plan.padding);
            let request = ctx.request();
            let options = if acknowledge {
                Dict::Fields(ACKNOWLEDGE)
            } else {
                Dict::EMPTY
            };
            ctx.send(&Message::Publish {
                request,
                options,
                topic: Cow::Borrowed(&self.topic),
                payload: Payload {
                    args: Some(Field::List(&args)),
                    kwargs: None,
                },
            })?;
        }
        self.next_seq += 1;
        ctx.tally.sent += 1;
        ctx.tally.last_sent_ns = ctx.now_ns;
        Ok(())
    }

    fn handle_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) -> Result<Step, String> {
        match msg {
            Message::Published { .. } => {
                self.acknowledged(ctx, 1)?;
                Ok(Step::Continue)
            }
            other => Err(format!(
                "publisher got an unexpected {}",
                other.message_type().name()
            )),
        }
    }

    fn poll_send(&mut self, ctx: &mut Ctx<'_>) -> Result<(), String> {
        let Some(schedule) = self.schedule else {
            return Ok(());
        };
        let due = schedule.due(ctx.now_ns).min(ctx.plan.count);
        while self.next_seq < due && ctx.out.pending() < OUTBOX_MAX {
            let intended = schedule.intended_ns(self.next_seq);
            ctx.tally.send_lag.record(intended, ctx.now_ns);
            self.publish(ctx, intended, false)?;
        }
        Ok(())
    }
}

/// The next time an open-loop sender needs the CPU: its next message's intended time; none while its output
/// buffer is full (after a flush that stopped at `WouldBlock`, the writable event wakes it) or once it is done.
fn next_deadline(
    schedule: Option<Schedule>,
    next_seq: u64,
    plan: &Plan,
    pending: usize,
) -> Option<u64> {
    let schedule = schedule?;
    if next_seq >= plan.count || pending >= OUTBOX_MAX {
        None
    } else {
        Some(schedule.intended_ns(next_seq))
    }
}

/// Subscribes and accounts for every event by publisher.
#[derive(Debug)]
pub struct Subscriber {
    topics: Vec<String>,
    prefix: bool,
    /// SUBSCRIBEs not yet confirmed.
    pending: usize,
    trackers: Vec<SeqTracker>,
    corrupt: u64,
    /// A fast subscriber: its deliveries are what the run waits for and its losses count. A slow one's are its
    /// fate ([`Subscriber::fate`]).
    pub counted: bool,
    /// Slow subscribers of the soak: events seen and events out of order over all their sessions.
    pub seen_total: u64,
    pub regressed_total: u64,
    /// Intended send time of the newest event received (ns): a slow subscriber that reads what was queued has
    /// caught up once its events are fresh again.
    pub newest_event_ns: u64,
}

impl Subscriber {
    fn new(topics: &[String], prefix: bool, counted: bool, plan: &Plan) -> Subscriber {
        let streams = plan.soak.as_ref().map_or(plan.senders, |s| s.streams());
        Subscriber {
            topics: topics.to_vec(),
            prefix,
            pending: 0,
            trackers: vec![SeqTracker::default(); streams],
            corrupt: 0,
            counted,
            seen_total: 0,
            regressed_total: 0,
            newest_event_ns: 0,
        }
    }

    /// A new session (a slow subscriber of the soak joining again): its numbers start over.
    fn begin_connection(&mut self) {
        if !self.counted {
            for t in &mut self.trackers {
                self.regressed_total += t.duplicated + t.reordered;
                *t = SeqTracker::default();
            }
        }
    }

    /// A slow subscriber's deliveries: distinct events received, and how many of the plan's events it missed.
    pub fn fate(&self, plan: &Plan) -> (u64, u64) {
        let distinct = self.trackers.iter().map(|t| t.distinct()).sum();
        let lost = self.trackers.iter().map(|t| t.lost(plan.count)).sum();
        (distinct, lost)
    }

    /// Duplicates and reorderings seen by a slow subscriber (in every session so far).
    pub fn regressed(&self) -> u64 {
        self.regressed_total
            + self
                .trackers
                .iter()
                .map(|t| t.duplicated + t.reordered)
                .sum::<u64>()
    }
    fn handle_joined(&mut self, ctx: &mut Ctx<'_>) -> Result<Step, String> {
        let options = if self.prefix {
            Dict::Fields(MATCH_PREFIX)
        } else {
            Dict::EMPTY
        };
        for topic in &self.topics {
            let request = ctx.request();
            ctx.send(&Message::Subscribe {
                request,
                options,
                topic: Cow::Borrowed(topic),
            })?;
            self.pending += 1;
        }
        Ok(if self.pending == 0 {
            Step::Ready
        } else {
            Step::Continue
        })
    }

    fn handle_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) -> Result<Step, String> {
        match msg {
            Message::Subscribed { .. } => {
                self.pending = self.pending.saturating_sub(1);
                Ok(if self.pending == 0 {
                    Step::Ready
                } else {
                    Step::Continue
                })
            }
            Message::Event { payload, .. } => {
                self.handle_event(ctx, parse_load(&payload));
                Ok(Step::Continue)
            }
            other => Err(format!(
                "subscriber got an unexpected {}",
                other.message_type().name()
            )),
        }
    }

    /// One delivery, its payload read as `(sender_index, seq, t_ns)` (`None`: unreadable). NATS deliveries come
    /// here too ([`crate::nats`]).
    pub(crate) fn handle_event(&mut self, ctx: &mut Ctx<'_>, load: Option<(u64, u64, u64)>) {
        let Some((index, seq, t_ns)) = load else {
            self.corrupt += 1;
            return;
        };
        let Some(tracker) = self.trackers.get_mut(index as usize) else {
            self.corrupt += 1;
            return;
        };
        let distinct = tracker.distinct();
        tracker.record(seq);
        if !self.counted {
            self.seen_total += 1;
            self.newest_event_ns = self.newest_event_ns.max(t_ns);
            return;
        }
        if tracker.distinct() > distinct {
            ctx.tally.received += 1;
            ctx.tally.payload_bytes += ctx.plan.padding.len() as u64;
            ctx.tally.last_received_ns = ctx.now_ns;
        }
        ctx.tally.record_event(t_ns, ctx.now_ns);
    }

    fn integrity(&self, plan: &Plan) -> Integrity {
        let mut sum = Integrity {
            corrupt: self.corrupt,
            ..Integrity::default()
        };
        // A subscriber hears every publisher whose topic it covers; in every scenario here that is all of them.
        for t in &self.trackers {
            sum.add(Integrity {
                lost: t.lost(plan.count),
                duplicated: t.duplicated,
                reordered: t.reordered,
                corrupt: 0,
            });
        }
        sum
    }

    /// The topics it subscribes to, and whether they are prefixes (`match: prefix`).
    pub(crate) fn subscriptions(&self) -> (&[String], bool) {
        (&self.topics, self.prefix)
    }
}

/// Calls `loadtest.echo.<k>` round-robin with `[index, seq, t_ns, padding]` and checks the echo.
#[derive(Debug)]
pub struct Caller {
    index: usize,
    next_seq: u64,
    outstanding: u64,
    schedule: Option<Schedule>,
    tracker: CallTracker,
    corrupt: u64,
}

impl Caller {
    fn new(index: usize, calls: u64) -> Caller {
        Caller {
            index,
            next_seq: 0,
            outstanding: 0,
            schedule: None,
            tracker: CallTracker::new(calls),
            corrupt: 0,
        }
    }

    fn handle_start(&mut self, ctx: &mut Ctx<'_>, start_ns: u64) -> Result<(), String> {
        match ctx.plan.mode {
            Mode::Closed { .. } => self.fill_window(ctx),
            Mode::Open { rate } => {
                self.schedule = Some(Schedule::shared(
                    start_ns,
                    rate,
                    self.index,
                    ctx.plan.senders,
                ));
                Ok(())
            }
        }
    }

    fn fill_window(&mut self, ctx: &mut Ctx<'_>) -> Result<(), String> {
        while self.outstanding < ctx.plan.window() && self.next_seq < ctx.plan.count {
            self.call(ctx, ctx.now_ns)?;
        }
        Ok(())
    }

    fn call(&mut self, ctx: &mut Ctx<'_>, t_ns: u64) -> Result<(), String> {
        let procedures = &ctx.plan.procedures;
        let procedure = &procedures[(self.index + self.next_seq as usize) % procedures.len()];
        let args = load_args(self.index, self.next_seq, t_ns, &ctx.plan.padding);
        let request = ctx.request();
        ctx.send(&Message::Call {
            request,
            options: Dict::EMPTY,
            procedure: Cow::Borrowed(procedure),
            payload: Payload {
                args: Some(Field::List(&args)),
                kwargs: None,
            },
        })?;
        self.next_seq += 1;
        self.outstanding += 1;
        ctx.tally.sent += 1;
        ctx.tally.last_sent_ns = ctx.now_ns;
        Ok(())
    }

    fn handle_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) -> Result<Step, String> {
        let Message::Result { payload, .. } = msg else {
            return Err(format!(
                "caller got an unexpected {}",
                msg.message_type().name()
            ));
        };
        self.outstanding = self.outstanding.saturating_sub(1);
        match parse_load(&payload) {
            Some((index, seq, t_ns)) if index == self.index as u64 && self.tracker.record(seq) => {
                ctx.tally.latency.record(t_ns, ctx.now_ns);
                ctx.tally.received += 1;
                ctx.tally.payload_bytes += ctx.plan.padding.len() as u64;
                ctx.tally.last_received_ns = ctx.now_ns;
            }
            _ => self.corrupt += 1,
        }
        if self.schedule.is_none() {
            self.fill_window(ctx)?;
        }
        Ok(Step::Continue)
    }

    fn poll_send(&mut self, ctx: &mut Ctx<'_>) -> Result<(), String> {
        let Some(schedule) = self.schedule else {
            return Ok(());
        };
        let due = schedule.due(ctx.now_ns).min(ctx.plan.count);
        while self.next_seq < due && ctx.out.pending() < OUTBOX_MAX {
            let intended = schedule.intended_ns(self.next_seq);
            ctx.tally.send_lag.record(intended, ctx.now_ns);
            self.call(ctx, intended)?;
        }
        Ok(())
    }

    fn integrity(&self, plan: &Plan) -> Integrity {
        Integrity {
            lost: self.tracker.lost(plan.count),
            duplicated: self.tracker.duplicated,
            reordered: 0,
            corrupt: self.corrupt,
        }
    }
}

/// Registers one procedure and yields every invocation's arguments back unchanged.
#[derive(Debug)]
pub struct Callee {
    procedure: String,
}

impl Callee {
    fn handle_joined(&mut self, ctx: &mut Ctx<'_>) -> Result<Step, String> {
        let request = ctx.request();
        ctx.send(&Message::Register {
            request,
            options: Dict::EMPTY,
            procedure: Cow::Borrowed(&self.procedure),
        })?;
        Ok(Step::Continue)
    }

    fn handle_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) -> Result<Step, String> {
        match msg {
            Message::Registered { .. } => Ok(Step::Ready),
            Message::Invocation {
                request, payload, ..
            } => {
                ctx.send(&Message::Yield {
                    request,
                    options: Dict::EMPTY,
                    payload,
                })?;
                ctx.tally.invocations += 1;
                Ok(Step::Continue)
            }
            // We answer at once, so an interrupt can only come too late: nothing to do.
            Message::Interrupt { .. } => Ok(Step::Continue),
            other => Err(format!(
                "callee got an unexpected {}",
                other.message_type().name()
            )),
        }
    }
}

/// One churn cycle on a fresh session: SUBSCRIBE, PUBLISH to itself (acknowledged, `exclude_me: false`), wait for
/// PUBLISHED and the EVENT, then leave.
#[derive(Debug)]
pub struct Churner {
    index: usize,
    topic: String,
    /// Whether to wait for our own event (the router announced `publisher_exclusion`).
    wait_event: bool,
    published: bool,
    event: bool,
    cycle_start_ns: u64,
    cycle: u64,
}

impl Churner {
    fn new(index: usize) -> Churner {
        Churner {
            index,
            topic: format!("loadtest.churn.{index}"),
            wait_event: false,
            published: false,
            event: false,
            cycle_start_ns: 0,
            cycle: 0,
        }
    }

    /// Marks the start of a cycle (when its connection opens).
    pub fn begin_cycle(&mut self, now_ns: u64) {
        self.cycle_start_ns = now_ns;
        self.published = false;
        self.event = false;
    }

    fn handle_joined(
        &mut self,
        ctx: &mut Ctx<'_>,
        publisher_exclusion: bool,
    ) -> Result<Step, String> {
        self.wait_event = publisher_exclusion;
        let request = ctx.request();
        ctx.send(&Message::Subscribe {
            request,
            options: Dict::EMPTY,
            topic: Cow::Borrowed(&self.topic),
        })?;
        Ok(Step::Ready)
    }

    fn handle_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) -> Result<Step, String> {
        match msg {
            Message::Subscribed { .. } => {
                let args = load_args(self.index, self.cycle, ctx.now_ns, &ctx.plan.padding);
                let request = ctx.request();
                let options = if self.wait_event {
                    Dict::Fields(CHURN_PUBLISH)
                } else {
                    Dict::Fields(ACKNOWLEDGE)
                };
                ctx.send(&Message::Publish {
                    request,
                    options,
                    topic: Cow::Borrowed(&self.topic),
                    payload: Payload {
                        args: Some(Field::List(&args)),
                        kwargs: None,
                    },
                })?;
                ctx.tally.sent += 1;
            }
            Message::Published { .. } => self.published = true,
            Message::Event { payload, .. } => match parse_load(&payload) {
                Some((index, seq, _)) if index == self.index as u64 && seq == self.cycle => {
                    self.event = true
                }
                _ => {
                    return Err(format!(
                        "churn session {} got a foreign or stale event",
                        self.index
                    ))
                }
            },
            other => {
                return Err(format!(
                    "churn session got an unexpected {}",
                    other.message_type().name()
                ))
            }
        }
        if self.published && (self.event || !self.wait_event) {
            self.cycle += 1;
            ctx.tally.cycles += 1;
            ctx.tally.latency.record(self.cycle_start_ns, ctx.now_ns);
            return Ok(Step::Leave);
        }
        Ok(Step::Continue)
    }
}
