//! One WAMP client session over one connection: transport handshake, HELLO/WELCOME, the role's traffic, and
//! GOODBYE. The worker thread owns many sessions and calls `handle_*` on readiness events and phase changes.

use std::borrow::Cow;
use std::io;

use kreisel_codec::{Dict, Field, Id, Message};

use crate::plan::{Plan, SlowRead};
use crate::roles::{Ctx, DropKind, Role, Step, Tally};
use crate::stats::Clock;
use crate::transport::{Connection, Frame, Phase, Writer};

/// HELLO details: the four client roles, with the features the scenarios use.
const SUBSCRIBER_FEATURES: &[(&str, Field<'static>)] =
    &[("pattern_based_subscription", Field::Bool(true))];
const PUBLISHER_FEATURES: &[(&str, Field<'static>)] = &[("publisher_exclusion", Field::Bool(true))];
const CALLER_FEATURES: &[(&str, Field<'static>)] = &[
    ("call_canceling", Field::Bool(true)),
    ("progressive_call_results", Field::Bool(true)),
];
const CALLEE_FEATURES: &[(&str, Field<'static>)] = &[
    ("call_canceling", Field::Bool(true)),
    ("progressive_call_results", Field::Bool(true)),
    ("pattern_based_registration", Field::Bool(true)),
];
const ROLES: &[(&str, Field<'static>)] = &[
    (
        "publisher",
        Field::Dict(Dict::Fields(&[(
            "features",
            Field::Dict(Dict::Fields(PUBLISHER_FEATURES)),
        )])),
    ),
    (
        "subscriber",
        Field::Dict(Dict::Fields(&[(
            "features",
            Field::Dict(Dict::Fields(SUBSCRIBER_FEATURES)),
        )])),
    ),
    (
        "caller",
        Field::Dict(Dict::Fields(&[(
            "features",
            Field::Dict(Dict::Fields(CALLER_FEATURES)),
        )])),
    ),
    (
        "callee",
        Field::Dict(Dict::Fields(&[(
            "features",
            Field::Dict(Dict::Fields(CALLEE_FEATURES)),
        )])),
    ),
];
const HELLO_DETAILS: &[(&str, Field<'static>)] = &[
    ("agent", Field::Str("kreisel-loadtest")),
    ("roles", Field::Dict(Dict::Fields(ROLES))),
];

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// No connection (before connecting, or a churner between cycles).
    Idle,
    /// TCP/Unix connect and transport handshake.
    Connecting,
    /// HELLO sent, waiting for WELCOME.
    Joining,
    /// Joined; the role's SUBSCRIBE/REGISTER are not all confirmed yet.
    Setup,
    /// Joined and set up.
    Ready,
    /// GOODBYE sent, waiting for the router's GOODBYE.
    Leaving,
    Closed,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Connecting => "connecting",
            State::Joining => "joining",
            State::Setup => "subscribing/registering",
            State::Ready => "ready",
            State::Leaving => "leaving",
            State::Closed => "closed",
        }
    }

    /// Joined and not leaving.
    pub fn is_established(self) -> bool {
        matches!(self, State::Setup | State::Ready)
    }
}

/// What the worker passes into a session call.
pub struct Env<'a> {
    pub tally: &'a mut Tally,
    pub plan: &'a Plan,
    /// The time handlers see: refreshed after every read, so receive timestamps are not a loop turn old.
    pub now_ns: u64,
    pub clock: Clock,
}

/// How a slow subscriber reads: throttled (not at all, or at a byte rate) from the moment it is ready in the run
/// phase, then, when it settles, at full speed until the router has been quiet for a while or closed the connection.
#[derive(Debug)]
pub struct SlowReader {
    pub read: SlowRead,
    /// Reading is throttled.
    pub throttled: bool,
    /// Bytes it may read now (rate readers), refilled from the clock.
    tokens: f64,
    refilled_ns: u64,
    /// Settling: when bytes last arrived (or settling began).
    pub settling: Option<u64>,
    /// Settled: read everything the router had for it (`disconnected`: and found the connection closed).
    pub settled: bool,
    pub disconnected: bool,
    /// Soak: when a never-reading subscriber's stall ends (0: not stalled).
    pub stall_until: u64,
}

/// A rate reader reads at most this often (its allowance accrues in between).
pub const SLOW_TICK_NS: u64 = 50_000_000;
/// A settling subscriber counts as settled once nothing arrived for this long.
pub const SETTLE_QUIET_NS: u64 = 300_000_000;
/// While the run lasts, a settling subscriber has caught up once an event this young (from its intended send
/// time) arrives.
pub const FRESH_NS: u64 = 250_000_000;

impl SlowReader {
    pub fn new(read: SlowRead) -> SlowReader {
        SlowReader {
            read,
            throttled: false,
            tokens: 0.0,
            refilled_ns: 0,
            settling: None,
            settled: false,
            disconnected: false,
            stall_until: 0,
        }
    }

    /// Starts throttling at `now_ns`.
    pub fn throttle(&mut self, now_ns: u64) {
        self.throttled = true;
        self.tokens = 0.0;
        self.refilled_ns = now_ns;
    }

    /// Stops throttling: read everything, watch for the router going quiet.
    pub fn settle(&mut self, now_ns: u64) {
        self.throttled = false;
        if self.settling.is_none() && !self.settled {
            self.settling = Some(now_ns);
        }
    }

    /// Bytes it may read now (`None`: any number).
    fn allowance(&mut self, now_ns: u64) -> Option<usize> {
        if !self.throttled {
            return None;
        }
        match self.read {
            SlowRead::Never => Some(0),
            SlowRead::Rate(rate) => {
                let elapsed = now_ns.saturating_sub(self.refilled_ns) as f64 / 1e9;
                self.refilled_ns = now_ns;
                // At most a quarter of a second's worth accrues: it reads steadily, not in bursts.
                self.tokens = (self.tokens + elapsed * rate as f64).min(rate as f64 / 4.0 + 1.0);
                Some(self.tokens as usize)
            }
        }
    }

    fn consumed(&mut self, n: usize, now_ns: u64) {
        if self.throttled {
            self.tokens = (self.tokens - n as f64).max(0.0);
        }
        if self.settling.is_some() && n > 0 {
            self.settling = Some(now_ns);
        }
    }

    /// When the worker must look at this reader again: the next read of a rate reader, the end of a stall, the
    /// moment a settling reader counts as settled.
    pub fn deadline(&self) -> Option<u64> {
        if self.settled {
            return None;
        }
        if let Some(last) = self.settling {
            return Some(last + SETTLE_QUIET_NS);
        }
        match (self.throttled, self.read) {
            (true, SlowRead::Rate(_)) => Some(self.refilled_ns + SLOW_TICK_NS),
            (true, SlowRead::Never) if self.stall_until > 0 => Some(self.stall_until),
            _ => None,
        }
    }
}

/// The WAMP half of a session (everything but the connection).
#[derive(Debug)]
pub struct Wamp {
    pub state: State,
    next_request: Id,
    pub role: Role,
    /// The router announced `publisher_exclusion` (so `exclude_me: false` is honoured).
    pub publisher_exclusion: bool,
    /// When the current connection attempt began (ns).
    pub connect_started_ns: u64,
    /// The role asked to leave without GOODBYE (the worker closes the connection so).
    pub drop: Option<DropKind>,
}

#[derive(Debug)]
pub struct Session {
    /// Global session index (as in [`Plan::roles`]).
    pub index: usize,
    pub conn: Option<Connection>,
    pub wamp: Wamp,
    /// Slow subscribers only.
    pub slow: Option<SlowReader>,
    /// The session failed and stays out of the run (soak: its accounting is not counted).
    pub dead: bool,
}

impl Session {
    pub fn new(index: usize, role: Role, slow: Option<SlowRead>) -> Session {
        Session {
            index,
            conn: None,
            wamp: Wamp {
                state: State::Idle,
                next_request: Id::FIRST,
                role,
                publisher_exclusion: false,
                connect_started_ns: 0,
                drop: None,
            },
            slow: slow.map(SlowReader::new),
            dead: false,
        }
    }

    pub fn state(&self) -> State {
        self.wamp.state
    }

    /// Starts a connection (non-blocking) with the transport handshake queued.
    pub fn connect(&mut self, plan: &Plan, now_ns: u64) -> io::Result<()> {
        let seed = (self.index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ now_ns;
        let (endpoint, addr) = match plan.endpoints.len() {
            0 => (&plan.endpoint, plan.addr),
            n => {
                let (endpoint, addr) = &plan.endpoints[self.index % n];
                (endpoint, *addr)
            }
        };
        self.conn = Some(Connection::open(endpoint, addr, plan.ser, seed)?);
        self.wamp.state = State::Connecting;
        self.wamp.next_request = Id::FIRST;
        self.wamp.connect_started_ns = now_ns;
        self.wamp.drop = None;
        self.wamp.role.begin_connection(now_ns);
        if let Some(slow) = &mut self.slow {
            *slow = SlowReader::new(slow.read);
        }
        Ok(())
    }

    /// Handles readiness: finishes the handshake, reads and handles frames. Reads at most about `budget` bytes;
    /// returns `Ok(true)` when it stopped because of the budget (call again soon: mio is edge-triggered).
    pub fn handle_ready(&mut self, env: &mut Env<'_>, budget: usize) -> Result<bool, String> {
        if env.plan.endpoint.is_nats() {
            return crate::nats::handle_ready(self, env, budget);
        }
        if env.plan.endpoint.is_mqtt() {
            return crate::mqtt::handle_ready(self, env, budget);
        }
        let Session {
            conn, wamp, slow, ..
        } = self;
        let Some(conn) = conn.as_mut() else {
            return Ok(false);
        };
        // A throttled slow subscriber reads only its allowance (and a never-reading one nothing at all).
        let mut limit = slow.as_mut().and_then(|s| s.allowance(env.now_ns));
        if conn.phase != Phase::Open {
            if !conn.handle_handshake()? {
                return Ok(false);
            }
            let hello = Message::Hello {
                realm: Cow::Borrowed(&env.plan.realm),
                details: Dict::Fields(HELLO_DETAILS),
            };
            conn.writer.send(env.plan.ser, &hello)?;
            wamp.state = State::Joining;
        }
        let mut read = 0;
        loop {
            while let Some(frame) = conn.reader.next_frame()? {
                match frame {
                    Frame::Message(bytes) => {
                        let msg = env
                            .plan
                            .ser
                            .decode(bytes)
                            .map_err(|e| format!("undecodable message from the router: {e}"))?;
                        wamp.handle_message(&mut conn.writer, env, msg)?;
                    }
                    Frame::Ping(payload) => conn.writer.pong(payload),
                    Frame::Pong => {}
                    Frame::Close(code, reason) => {
                        if wamp.state == State::Leaving {
                            wamp.state = State::Closed;
                            return Ok(false);
                        }
                        return Err(format!(
                            "router closed the WebSocket while {} (status {}, `{reason}`)",
                            wamp.state.name(),
                            code.map_or("none".into(), |c| c.to_string())
                        ));
                    }
                }
                if wamp.state == State::Closed {
                    return Ok(false);
                }
            }
            if read >= budget {
                return Ok(true);
            }
            if limit == Some(0) {
                return Ok(false);
            }
            match conn
                .reader
                .read_limited(&mut conn.stream, limit.unwrap_or(usize::MAX))
            {
                Ok(0) => {
                    if wamp.state == State::Leaving {
                        // Some routers close the connection instead of answering GOODBYE.
                        wamp.state = State::Closed;
                        return Ok(false);
                    }
                    return Err(format!(
                        "router closed the connection while {}",
                        wamp.state.name()
                    ));
                }
                Ok(n) => {
                    read += n;
                    env.now_ns = env.clock.now_ns();
                    if let Some(slow) = slow.as_mut() {
                        slow.consumed(n, env.now_ns);
                    }
                    if let Some(l) = &mut limit {
                        *l = l.saturating_sub(n);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading from the router failed: {e}")),
            }
        }
    }

    /// The run phase begins.
    pub fn handle_start(&mut self, env: &mut Env<'_>, start_ns: u64) -> Result<(), String> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let Wamp {
            next_request, role, ..
        } = &mut self.wamp;
        role.handle_start(&mut ctx(next_request, &mut conn.writer, env), start_ns)
    }

    /// Does what the role has due (open-loop sending, timed actions).
    pub fn poll(&mut self, env: &mut Env<'_>) -> Result<(), String> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        if self.wamp.state != State::Ready {
            return Ok(());
        }
        let step = {
            let Wamp {
                next_request, role, ..
            } = &mut self.wamp;
            role.poll(&mut ctx(next_request, &mut conn.writer, env))?
        };
        self.wamp.apply(step, &mut conn.writer, env)
    }

    /// The run's sending is over (soak).
    pub fn handle_quiesce(&mut self, env: &mut Env<'_>) -> Result<(), String> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        if !self.wamp.state.is_established() {
            return Ok(());
        }
        let Wamp {
            next_request, role, ..
        } = &mut self.wamp;
        role.handle_quiesce(&mut ctx(next_request, &mut conn.writer, env))
    }

    /// Leaves with GOODBYE now (a slow subscriber of the soak that settled).
    pub fn leave(&mut self, env: &mut Env<'_>) -> Result<(), String> {
        match (self.wamp.state, self.conn.as_mut()) {
            (State::Setup | State::Ready, Some(conn)) => self.wamp.leave(&mut conn.writer, env),
            _ => Ok(()),
        }
    }

    /// The run is over: say GOODBYE if joined, or just close.
    pub fn handle_stop(&mut self, env: &mut Env<'_>) -> Result<(), String> {
        if env.plan.endpoint.is_nats() {
            // NATS has no goodbye: closing the connection ends the session.
            self.wamp.state = State::Closed;
            return Ok(());
        }
        if env.plan.endpoint.is_mqtt() {
            // DISCONNECT, then the connection is closed.
            if let Some(conn) = self.conn.as_mut() {
                crate::mqtt::disconnect(&mut conn.writer);
            }
            self.wamp.state = State::Closed;
            return Ok(());
        }
        match (self.wamp.state, self.conn.as_mut()) {
            (State::Setup | State::Ready, Some(conn)) => self.wamp.leave(&mut conn.writer, env),
            (State::Leaving | State::Closed, _) => Ok(()),
            _ => {
                self.wamp.state = State::Closed;
                Ok(())
            }
        }
    }

    /// Writes queued output.
    pub fn flush(&mut self) -> Result<(), String> {
        match self.conn.as_mut() {
            Some(conn) if conn.phase == Phase::Open => conn
                .writer
                .flush_to(&mut conn.stream)
                .map_err(|e| format!("writing to the router failed: {e}")),
            _ => Ok(()),
        }
    }

    pub fn pending(&self) -> usize {
        self.conn.as_ref().map_or(0, |c| c.writer.pending())
    }
}

/// The context a role call needs, from a session's parts.
fn ctx<'a>(next_request: &'a mut Id, out: &'a mut Writer, env: &'a mut Env<'_>) -> Ctx<'a> {
    Ctx {
        out,
        ser: env.plan.ser,
        next_request,
        now_ns: env.now_ns,
        tally: env.tally,
        plan: env.plan,
    }
}

impl Wamp {
    fn handle_message(
        &mut self,
        out: &mut Writer,
        env: &mut Env<'_>,
        msg: Message<'_>,
    ) -> Result<(), String> {
        match (self.state, msg) {
            (State::Joining, Message::Welcome { details, .. }) => {
                self.publisher_exclusion = broker_feature(&details, "publisher_exclusion");
                self.state = State::Setup;
                let exclusion = self.publisher_exclusion;
                let step = {
                    let Wamp { next_request, role, .. } = self;
                    role.handle_joined(&mut ctx(next_request, out, env), exclusion)?
                };
                self.apply(step, out, env)
            }
            (State::Joining, Message::Abort { details, reason }) => Err(format!(
                "router refused to join realm `{}`: {reason}{}",
                env.plan.realm,
                detail_message(&details)
            )),
            (State::Joining, Message::Challenge { auth_method, .. }) => Err(format!(
                "router asks for authentication ({auth_method}); the load generator joins anonymously"
            )),
            (_, Message::Abort { details, reason }) => {
                Err(format!("router aborted the session: {reason}{}", detail_message(&details)))
            }
            (State::Leaving, Message::Goodbye { .. }) => {
                self.state = State::Closed;
                Ok(())
            }
            (_, Message::Goodbye { details, reason }) => {
                let bye = Message::Goodbye { details: Dict::EMPTY, reason: Cow::Borrowed("wamp.close.goodbye_and_out") };
                let _ = out.send(env.plan.ser, &bye);
                self.state = State::Leaving;
                Err(format!("router ended the session: {reason}{}", detail_message(&details)))
            }
            (State::Joining, other) => {
                Err(format!("protocol violation: expected WELCOME, got {}", other.message_type().name()))
            }
            (State::Setup | State::Ready, msg) => {
                let step = {
                    let Wamp { next_request, role, .. } = self;
                    role.handle_message(&mut ctx(next_request, out, env), msg)?
                };
                self.apply(step, out, env)
            }
            // Late traffic while leaving (events still in flight) is expected and ignored.
            (_, _) => Ok(()),
        }
    }

    fn apply(&mut self, step: Step, out: &mut Writer, env: &mut Env<'_>) -> Result<(), String> {
        match step {
            Step::Continue => Ok(()),
            Step::Ready => {
                self.state = State::Ready;
                Ok(())
            }
            Step::Leave => self.leave(out, env),
            Step::Drop(kind) => {
                self.drop = Some(kind);
                self.state = State::Closed;
                Ok(())
            }
        }
    }

    fn leave(&mut self, out: &mut Writer, env: &mut Env<'_>) -> Result<(), String> {
        let bye = Message::Goodbye {
            details: Dict::EMPTY,
            reason: Cow::Borrowed("wamp.close.close_realm"),
        };
        out.send(env.plan.ser, &bye)?;
        self.state = State::Leaving;
        Ok(())
    }
}

/// `details.roles.broker.features.<name> == true` in a WELCOME.
fn broker_feature(details: &Dict<'_>, name: &str) -> bool {
    let Some(roles) = details.get("roles").and_then(|r| r.as_raw()) else {
        return false;
    };
    roles
        .get("broker")
        .and_then(|b| b.get("features"))
        .and_then(|f| f.get(name))
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

/// `": <details.message>"` when the router gave a message.
fn detail_message(details: &Dict<'_>) -> String {
    details
        .get("message")
        .and_then(|m| m.as_str())
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kreisel_codec::Serializer;

    #[test]
    fn welcome_features_and_abort_messages() {
        let welcome = br#"[2, 123, {"authrole": "anonymous", "roles": {"broker": {"features": {"publisher_exclusion": true, "pattern_based_subscription": true}}, "dealer": {"features": {}}}}]"#;
        let Ok(Message::Welcome { details, .. }) = Serializer::Json.decode(welcome) else {
            panic!("WELCOME")
        };
        assert!(broker_feature(&details, "publisher_exclusion"));
        assert!(!broker_feature(&details, "event_retention"));
        let bare = br#"[2, 123, {}]"#;
        let Ok(Message::Welcome { details, .. }) = Serializer::Json.decode(bare) else {
            panic!("WELCOME")
        };
        assert!(!broker_feature(&details, "publisher_exclusion"));

        let abort = br#"[3, {"message": "no realm \"x\""}, "wamp.error.no_such_realm"]"#;
        let Ok(Message::Abort { details, reason }) = Serializer::Json.decode(abort) else {
            panic!("ABORT")
        };
        assert_eq!(
            (reason.as_ref(), detail_message(&details).as_str()),
            ("wamp.error.no_such_realm", ": no realm \"x\"")
        );
    }

    #[test]
    fn hello_encodes_roles() {
        let hello = Message::Hello {
            realm: Cow::Borrowed("realm1"),
            details: Dict::Fields(HELLO_DETAILS),
        };
        let mut out = Vec::new();
        Serializer::Json.encode(&hello, &mut out);
        let text = String::from_utf8(out).expect("JSON is UTF-8");
        assert!(
            text.starts_with(r#"[1,"realm1",{"agent":"kreisel-loadtest","roles":{"publisher":"#),
            "{text}"
        );
        for role in [
            "subscriber",
            "caller",
            "callee",
            "pattern_based_subscription",
        ] {
            assert!(text.contains(role), "{text}");
        }
        let mut packed = Vec::new();
        Serializer::MsgPack.encode(&hello, &mut packed);
        assert!(matches!(
            Serializer::MsgPack.decode(&packed),
            Ok(Message::Hello { .. })
        ));
    }
}
