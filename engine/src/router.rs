//! The router: sessions, realms and the dispatch of every message a client may send.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use kreisel_codec::{Dict, Field, Id, Message, MessageType, Payload, Serializer, Value};
use slab::Slab;
use tracing::{debug, info};

use crate::broker::Broker;
use crate::config::{EngineLimits, RouterConfig};
use crate::dealer::{Dealer, Invoke, Registered};
use crate::ids::IdGenerator;
use crate::options::{self, RequestOptions};
use crate::session::{Joined, Phase, Session, SessionHandle};
use crate::uri::{self, MatchPolicy, UriCheck};

/// The transport connection a session lives on, as the `io` layer identifies it (opaque to the engine).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

/// Where to send a message: the connection, its serializer, and the session (for publisher exclusion).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub conn: ConnId,
    pub serializer: Serializer,
    pub(crate) session: SessionHandle,
}

/// The recipients of one multicast message (the subscribers of one subscription), minus an excluded session.
#[derive(Clone, Copy, Debug)]
pub struct Recipients<'a> {
    peers: &'a [Peer],
    exclude: Option<SessionHandle>,
}

impl<'a> Recipients<'a> {
    pub fn iter(&self) -> impl Iterator<Item = &'a Peer> + 'a {
        let exclude = self.exclude;
        self.peers
            .iter()
            .filter(move |p| Some(p.session) != exclude)
    }
}

/// The engine's output. `io` implements it: it encodes messages for the recipients' serializers, frames them for
/// their transports and queues them.
pub trait Sink {
    /// Queue `msg` for one peer.
    fn send(&mut self, to: Peer, msg: &Message<'_>);
    /// Queue the same `msg` for many peers. The message is identical for all of them, so the sink encodes it once
    /// per serializer and shares the bytes.
    fn send_many(&mut self, to: Recipients<'_>, msg: &Message<'_>);
    /// Close `to`'s transport once what is queued for it has been written. `io` then calls
    /// [`Router::handle_close`].
    fn close(&mut self, to: Peer);
}

/// Counters, read by the metrics endpoint and the logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub sessions_joined: u64,
    pub sessions_active: u64,
    pub aborts_sent: u64,
    pub protocol_violations: u64,
    pub publications: u64,
    pub events_sent: u64,
    pub calls: u64,
    pub errors_sent: u64,
    /// Requests and joins refused for a per-realm or per-session limit.
    pub limits_hit: u64,
}

#[derive(Debug)]
struct Realm {
    name: String,
    uri_check: UriCheck,
    broker: Broker,
    dealer: Dealer,
    sessions: usize,
}

/// A call in flight from `caller` to `callee`. Calls are linked into two intrusive lists (the caller's and the
/// callee's), so that a leaving session finds its calls without a scan and without allocating.
#[derive(Debug)]
struct Call {
    caller: Peer,
    caller_request: Id,
    callee: Peer,
    invocation: Id,
    receive_progress: bool,
    /// Router-enforced CALL `timeout`, as a deadline in the engine's milliseconds.
    deadline: Option<u64>,
    /// An INTERRUPT (cancel mode `kill`) was sent already.
    interrupted: bool,
    caller_links: Links,
    callee_links: Links,
}

#[derive(Clone, Copy, Debug, Default)]
struct Links {
    prev: Option<usize>,
    next: Option<usize>,
}

#[derive(Clone, Copy)]
enum Side {
    Caller,
    Callee,
}

/// The sans-IO WAMP router. See the crate documentation for the order of calls.
#[derive(Debug)]
pub struct Router {
    realms: Vec<Realm>,
    realm_index: HashMap<String, usize>,
    sessions: Slab<Session>,
    next_generation: u32,
    ids: IdGenerator,
    session_ids: HashMap<Id, SessionHandle>,
    /// Live router-scope IDs (subscriptions and registrations), unique router-wide.
    router_ids: HashSet<Id>,
    calls: Slab<Call>,
    /// (callee, INVOCATION request) → call.
    invocations: HashMap<(SessionHandle, Id), usize>,
    /// (caller, CALL request) → call.
    caller_requests: HashMap<(SessionHandle, Id), usize>,
    roles: Value,
    agent: String,
    limits: EngineLimits,
    /// The time of the current input (milliseconds, monotonic; from `handle_message`/`handle_timeout`).
    now_ms: u64,
    /// Call deadlines: (deadline, caller, CALL request), earliest first; stale entries are skipped.
    deadlines: BinaryHeap<Reverse<(u64, SessionHandle, Id)>>,
    stats: Stats,
}

/// Error URIs the router sends (the spec's URI reference).
pub mod errors {
    pub const NO_SUCH_REALM: &str = "wamp.error.no_such_realm";
    pub const PROTOCOL_VIOLATION: &str = "wamp.error.protocol_violation";
    pub const NO_AUTH_METHOD: &str = "wamp.error.no_auth_method";
    pub const INVALID_URI: &str = "wamp.error.invalid_uri";
    pub const NO_SUCH_PROCEDURE: &str = "wamp.error.no_such_procedure";
    pub const PROCEDURE_ALREADY_EXISTS: &str = "wamp.error.procedure_already_exists";
    /// crossbar's URI (the spec says the REGISTER "MUST fail" but names none).
    pub const PROCEDURE_EXISTS_WITH_DIFFERENT_INVOCATION_POLICY: &str =
        "wamp.error.procedure_exists_with_different_invocation_policy";
    pub const TIMEOUT: &str = "wamp.error.timeout";
    pub const NO_SUCH_REGISTRATION: &str = "wamp.error.no_such_registration";
    pub const NO_SUCH_SUBSCRIPTION: &str = "wamp.error.no_such_subscription";
    pub const INVALID_ARGUMENT: &str = "wamp.error.invalid_argument";
    pub const CANCELED: &str = "wamp.error.canceled";
    pub const OPTION_NOT_ALLOWED: &str = "wamp.error.option_not_allowed";
    pub const FEATURE_NOT_SUPPORTED: &str = "wamp.error.feature_not_supported";
    pub const GOODBYE_AND_OUT: &str = "wamp.close.goodbye_and_out";
    pub const NOT_AUTHORIZED: &str = "wamp.error.not_authorized";
    /// kreisel's own URI for a refused request over a per-session limit (the spec has none).
    pub const LIMIT_EXCEEDED: &str = "kreisel.error.limit_exceeded";
    pub const SYSTEM_SHUTDOWN: &str = "wamp.close.system_shutdown";
}
use errors::*;

/// Options the router knows but does not implement: a request carrying one with a non-default value is refused
/// with `wamp.error.option_not_allowed` rather than silently ignored.
const UNSUPPORTED_PUBLISH: &[&str] = &[
    "exclude",
    "exclude_authid",
    "exclude_authrole",
    "eligible",
    "eligible_authid",
    "eligible_authrole",
    "retain",
    "disclose_me",
];
const UNSUPPORTED_SUBSCRIBE: &[&str] = &["get_retained"];
const UNSUPPORTED_CALL: &[&str] = &["disclose_me", "progress"];
const UNSUPPORTED_REGISTER: &[&str] = &["disclose_caller", "force_reregister"];

impl Router {
    pub fn new(config: RouterConfig) -> Router {
        let mut realms = Vec::new();
        let mut realm_index = HashMap::new();
        for realm in &config.realms {
            realm_index.insert(realm.name.clone(), realms.len());
            realms.push(Realm {
                name: realm.name.clone(),
                uri_check: realm.uri_check,
                broker: Broker::default(),
                dealer: Dealer::default(),
                sessions: 0,
            });
        }
        Router {
            realms,
            realm_index,
            sessions: Slab::new(),
            next_generation: 0,
            ids: IdGenerator::new(config.seed),
            session_ids: HashMap::new(),
            router_ids: HashSet::new(),
            calls: Slab::new(),
            invocations: HashMap::new(),
            caller_requests: HashMap::new(),
            roles: router_roles(),
            agent: config.agent,
            limits: config.limits,
            now_ms: 0,
            deadlines: BinaryHeap::new(),
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The WAMP session joined over `handle`, if any: (session ID, realm, authid, authrole).
    pub fn session_info(&self, handle: SessionHandle) -> Option<(Id, &str, &str, &str)> {
        let joined = self.joined(handle)?;
        Some((
            joined.id,
            &self.realms[joined.realm].name,
            &joined.authid,
            &joined.authrole,
        ))
    }

    /// Number of transport connections (with or without a joined session).
    pub fn connections(&self) -> usize {
        self.sessions.len()
    }

    /// A new transport connection speaking `serializer`. Returns the handle for every later call about it.
    pub fn handle_open(&mut self, conn: ConnId, serializer: Serializer) -> SessionHandle {
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let entry = self.sessions.vacant_entry();
        let handle = SessionHandle {
            index: entry.key() as u32,
            generation,
        };
        entry.insert(Session {
            generation,
            peer: Peer {
                conn,
                serializer,
                session: handle,
            },
            phase: Phase::Handshake,
        });
        handle
    }

    /// The transport of `handle` is gone (the peer vanished, or the engine asked for the close). Leaves the realm,
    /// failing or dropping pending calls, and frees the slot. Stale handles are ignored.
    pub fn handle_close(&mut self, handle: SessionHandle, sink: &mut impl Sink) {
        if self.session(handle).is_none() {
            return;
        }
        self.leave(handle, sink);
        self.sessions.remove(handle.index as usize);
        self.check_invariants();
    }

    /// A frame from `handle` could not be decoded (`reason` says why): ABORT with `protocol_violation`, close.
    pub fn handle_protocol_violation(
        &mut self,
        handle: SessionHandle,
        reason: &str,
        sink: &mut impl Sink,
    ) {
        if self.session(handle).is_some() {
            self.abort(handle, PROTOCOL_VIOLATION, reason, sink);
        }
    }

    /// Router shutdown: every joined session gets GOODBYE `wamp.close.system_shutdown`; every other connection is
    /// closed. `io` closes what is left after its grace period.
    pub fn handle_shutdown(&mut self, sink: &mut impl Sink) {
        let handles: Vec<SessionHandle> =
            self.sessions.iter().map(|(_, s)| s.peer.session).collect();
        for handle in handles {
            self.goodbye_from_router(handle, SYSTEM_SHUTDOWN, sink);
        }
    }

    /// One decoded message from `handle`'s peer. `now_ms` is a monotonic time in milliseconds (reserved for
    /// deadlines: call timeouts, authentication).
    pub fn handle_message(
        &mut self,
        handle: SessionHandle,
        msg: &Message<'_>,
        now_ms: u64,
        sink: &mut impl Sink,
    ) {
        self.now_ms = now_ms;
        let Some(session) = self.session(handle) else {
            return;
        };
        match &session.phase {
            Phase::Handshake => self.on_handshake_message(handle, msg, sink),
            Phase::Established(_) => self.on_session_message(handle, msg, sink),
            Phase::Closing => match msg {
                Message::Goodbye { .. } | Message::Abort { .. } => self.close(handle, sink),
                // Messages in flight when we said GOODBYE are dropped, as the spec allows.
                _ => {}
            },
            Phase::Closed => {}
        }
        self.check_invariants();
    }

    fn session(&self, handle: SessionHandle) -> Option<&Session> {
        self.sessions
            .get(handle.index as usize)
            .filter(|s| s.generation == handle.generation)
    }

    fn session_mut(&mut self, handle: SessionHandle) -> Option<&mut Session> {
        self.sessions
            .get_mut(handle.index as usize)
            .filter(|s| s.generation == handle.generation)
    }

    fn joined(&self, handle: SessionHandle) -> Option<&Joined> {
        self.session(handle).and_then(Session::joined)
    }

    fn peer(&self, handle: SessionHandle) -> Option<Peer> {
        self.session(handle).map(|s| s.peer)
    }

    // ---------------------------------------------------------------------------------------------------------
    // Session lifecycle

    fn on_handshake_message(
        &mut self,
        handle: SessionHandle,
        msg: &Message<'_>,
        sink: &mut impl Sink,
    ) {
        match msg {
            Message::Hello { realm, details } => self.on_hello(handle, realm, details, sink),
            Message::Abort { .. } => self.close(handle, sink),
            other => {
                let text = format!(
                    "{} received before the session was established",
                    other.message_type().name()
                );
                self.abort(handle, PROTOCOL_VIOLATION, &text, sink);
            }
        }
    }

    fn on_hello(
        &mut self,
        handle: SessionHandle,
        realm: &str,
        details: &Dict<'_>,
        sink: &mut impl Sink,
    ) {
        let Some(&realm_index) = self.realm_index.get(realm) else {
            let text = format!("no realm '{realm}' on this router");
            return self.abort(handle, NO_SUCH_REALM, &text, sink);
        };
        if self.realms[realm_index].sessions >= self.limits.sessions_per_realm_max {
            self.stats.limits_hit += 1;
            let text = format!(
                "realm '{realm}' has reached its limit of {} sessions",
                self.limits.sessions_per_realm_max
            );
            return self.abort(handle, NOT_AUTHORIZED, &text, sink);
        }
        match details.get("roles").and_then(|roles| roles.as_raw()) {
            Some(roles) if roles.dict().is_some_and(|mut r| r.next().is_some()) => {}
            _ => {
                return self.abort(
                    handle,
                    PROTOCOL_VIOLATION,
                    "HELLO.Details.roles must announce the client's roles",
                    sink,
                )
            }
        }
        if let Some(methods) = details.get("authmethods") {
            let offered = methods.as_raw().and_then(|m| m.list());
            let Some(mut offered) = offered else {
                return self.abort(
                    handle,
                    PROTOCOL_VIOLATION,
                    "HELLO.Details.authmethods must be a list",
                    sink,
                );
            };
            if !offered.any(|m| m.as_str().as_deref() == Some("anonymous")) {
                let text = "none of the offered authentication methods is available (this realm allows: anonymous)";
                return self.abort(handle, NO_AUTH_METHOD, text, sink);
            }
        }
        let id = loop {
            let id = self.ids.random_id();
            if !self.session_ids.contains_key(&id) {
                break id;
            }
        };
        let authid = format!("anonymous-{id}");
        let interruptible = details
            .get("roles")
            .and_then(|roles| roles.as_raw())
            .and_then(|roles| roles.get("callee"))
            .and_then(|callee| callee.get("features"))
            .and_then(|features| features.get("call_canceling"))
            .and_then(|flag| flag.as_bool())
            .unwrap_or(false);
        let Some(session) = self.session_mut(handle) else {
            return;
        };
        session.phase = Phase::Established(Joined {
            id,
            realm: realm_index,
            authid: authid.clone().into(),
            authrole: "anonymous".into(),
            subscriptions: Default::default(),
            registrations: Default::default(),
            calls_as_caller: None,
            calls_as_callee: None,
            next_invocation: Id::FIRST,
            calls_pending: 0,
            interruptible,
        });
        let peer = session.peer;
        self.session_ids.insert(id, handle);
        self.realms[realm_index].sessions += 1;
        self.stats.sessions_joined += 1;
        self.stats.sessions_active += 1;
        let realm_name = &self.realms[realm_index].name;
        debug!(session = id.get(), realm = %realm_name, conn = peer.conn.0, "session joined");
        let details = [
            ("realm", Field::Str(realm_name)),
            ("authid", Field::Str(&authid)),
            ("authrole", Field::Str("anonymous")),
            ("authmethod", Field::Str("anonymous")),
            ("authprovider", Field::Str("static")),
            ("roles", Field::Value(&self.roles)),
            ("agent", Field::Str(&self.agent)),
        ];
        sink.send(
            peer,
            &Message::Welcome {
                session: id,
                details: Dict::Fields(&details),
            },
        );
    }

    /// The peer said GOODBYE: answer, leave the realm; the transport stays open for a new HELLO.
    fn on_goodbye(&mut self, handle: SessionHandle, sink: &mut impl Sink) {
        let Some(peer) = self.peer(handle) else {
            return;
        };
        self.leave(handle, sink);
        sink.send(
            peer,
            &Message::Goodbye {
                details: Dict::EMPTY,
                reason: Cow::Borrowed(GOODBYE_AND_OUT),
            },
        );
    }

    fn goodbye_from_router(&mut self, handle: SessionHandle, reason: &str, sink: &mut impl Sink) {
        let Some(session) = self.session(handle) else {
            return;
        };
        let peer = session.peer;
        match session.phase {
            Phase::Established(_) => {
                self.leave(handle, sink);
                sink.send(
                    peer,
                    &Message::Goodbye {
                        details: Dict::EMPTY,
                        reason: Cow::Borrowed(reason),
                    },
                );
                if let Some(session) = self.session_mut(handle) {
                    session.phase = Phase::Closing;
                }
            }
            Phase::Handshake => self.close(handle, sink),
            Phase::Closing | Phase::Closed => {}
        }
    }

    /// Sends ABORT and closes the transport.
    fn abort(&mut self, handle: SessionHandle, reason: &str, text: &str, sink: &mut impl Sink) {
        let Some(peer) = self.peer(handle) else {
            return;
        };
        info!(
            conn = peer.conn.0,
            reason,
            message = text,
            "aborting session"
        );
        if reason == PROTOCOL_VIOLATION {
            self.stats.protocol_violations += 1;
        }
        self.stats.aborts_sent += 1;
        self.leave(handle, sink);
        let details = [("message", Field::Str(text))];
        sink.send(
            peer,
            &Message::Abort {
                details: Dict::Fields(&details),
                reason: Cow::Borrowed(reason),
            },
        );
        self.close(handle, sink);
    }

    fn close(&mut self, handle: SessionHandle, sink: &mut impl Sink) {
        self.leave(handle, sink);
        if let Some(session) = self.session_mut(handle) {
            session.phase = Phase::Closed;
            let peer = session.peer;
            sink.close(peer);
        }
    }

    /// Leaves the realm, if joined: drops subscriptions and registrations, fails calls to this session as
    /// callee, forgets its calls as caller. Afterwards the session is in the handshake phase.
    fn leave(&mut self, handle: SessionHandle, sink: &mut impl Sink) {
        if self.joined(handle).is_none() {
            return;
        }
        // Pending calls first, while the session is still joined, so that unlinking keeps both of its lists
        // right (a session may be caller and callee of the same call).
        // Calls this session made: the callee's late YIELD or ERROR will find nothing and be discarded.
        while let Some(index) = self.head(handle, Side::Caller).and_then(|head| *head) {
            self.remove_call(index);
        }
        // Calls this session was serving: the callers get an ERROR.
        while let Some(index) = self.head(handle, Side::Callee).and_then(|head| *head) {
            let call = self.remove_call(index);
            let text = "the callee left before answering";
            self.send_error(
                sink,
                call.caller,
                MessageType::Call,
                call.caller_request,
                CANCELED,
                text,
            );
        }
        let Some(session) = self.session_mut(handle) else {
            return;
        };
        let Phase::Established(joined) = std::mem::replace(&mut session.phase, Phase::Handshake)
        else {
            return;
        };
        let realm = &mut self.realms[joined.realm];
        for &index in &joined.subscriptions {
            if let Some(id) = realm.broker.unsubscribe(index, handle) {
                self.router_ids.remove(&id);
            }
        }
        for &index in &joined.registrations {
            if let Some(id) = realm.dealer.unregister(index, handle) {
                self.router_ids.remove(&id);
            }
        }
        realm.sessions -= 1;
        self.session_ids.remove(&joined.id);
        self.stats.sessions_active -= 1;
        debug!(session = joined.id.get(), "session left");
    }

    // ---------------------------------------------------------------------------------------------------------
    // Established sessions

    fn on_session_message(
        &mut self,
        handle: SessionHandle,
        msg: &Message<'_>,
        sink: &mut impl Sink,
    ) {
        match msg {
            Message::Publish {
                request,
                options,
                topic,
                payload,
            } => self.on_publish(handle, *request, options, topic, payload, sink),
            Message::Subscribe {
                request,
                options,
                topic,
            } => self.on_subscribe(handle, *request, options, topic, sink),
            Message::Unsubscribe {
                request,
                subscription,
            } => self.on_unsubscribe(handle, *request, *subscription, sink),
            Message::Call {
                request,
                options,
                procedure,
                payload,
            } => self.on_call(handle, *request, options, procedure, payload, sink),
            Message::Yield {
                request,
                options,
                payload,
            } => self.on_yield(handle, *request, options, payload, sink),
            Message::Error {
                request_type,
                request,
                details: _,
                error,
                payload,
            } => {
                if *request_type == MessageType::Invocation.code() {
                    self.on_invocation_error(handle, *request, error, payload, sink)
                } else {
                    let text = format!(
                        "ERROR for message type {request_type} is not something a router accepts"
                    );
                    self.abort(handle, PROTOCOL_VIOLATION, &text, sink)
                }
            }
            Message::Register {
                request,
                options,
                procedure,
            } => self.on_register(handle, *request, options, procedure, sink),
            Message::Unregister {
                request,
                registration,
            } => self.on_unregister(handle, *request, *registration, sink),
            Message::Cancel { request, options } => self.on_cancel(handle, *request, options, sink),
            Message::Goodbye { .. } => self.on_goodbye(handle, sink),
            Message::Abort { .. } => self.close(handle, sink),
            other => {
                let text = format!(
                    "{} is not a message a client sends to a router",
                    other.message_type().name()
                );
                self.abort(handle, PROTOCOL_VIOLATION, &text, sink)
            }
        }
    }

    fn send_error(
        &mut self,
        sink: &mut impl Sink,
        to: Peer,
        kind: MessageType,
        request: Id,
        uri: &str,
        text: &str,
    ) {
        self.stats.errors_sent += 1;
        let args = [Field::Str(text)];
        sink.send(
            to,
            &Message::Error {
                request_type: kind.code(),
                request,
                details: Dict::EMPTY,
                error: Cow::Borrowed(uri),
                payload: Payload {
                    args: Some(Field::List(&args)),
                    kwargs: None,
                },
            },
        );
    }

    /// Checks a topic/procedure and its `match` option. On failure returns the error URI and text.
    fn check_uri(
        &self,
        realm: usize,
        uri: &str,
        options: &Dict<'_>,
        unsupported: &[&str],
    ) -> Result<MatchPolicy, (&'static str, String)> {
        if let Some(name) = unsupported.iter().find(|name| {
            options
                .get(name)
                .is_some_and(|value| options::is_set(&value))
        }) {
            return Err((
                OPTION_NOT_ALLOWED,
                format!("option '{name}' is not supported by this router"),
            ));
        }
        let policy = match options.get("match") {
            None => MatchPolicy::Exact,
            Some(value) => match value.as_str().as_deref().and_then(MatchPolicy::from_option) {
                Some(policy) => policy,
                None => {
                    return Err((
                        OPTION_NOT_ALLOWED,
                        "option 'match' must be exact, prefix or wildcard".into(),
                    ))
                }
            },
        };
        if !uri::is_valid(uri, self.realms[realm].uri_check, policy) {
            return Err((
                INVALID_URI,
                format!("'{uri}' is not a valid URI for match '{}'", policy.name()),
            ));
        }
        Ok(policy)
    }

    fn on_subscribe(
        &mut self,
        handle: SessionHandle,
        request: Id,
        options: &Dict<'_>,
        topic: &str,
        sink: &mut impl Sink,
    ) {
        let Some(joined) = self.joined(handle) else {
            return;
        };
        let realm = joined.realm;
        let Some(peer) = self.peer(handle) else {
            return;
        };
        let policy = match self.check_uri(realm, topic, options, UNSUPPORTED_SUBSCRIBE) {
            Ok(policy) => policy,
            Err((uri, text)) => {
                return self.send_error(sink, peer, MessageType::Subscribe, request, uri, &text)
            }
        };
        let existing = self.realms[realm].broker.trie.get(topic, policy);
        let held = self
            .joined(handle)
            .map_or(&[][..], |joined| &joined.subscriptions[..]);
        let limit = self.limits.subscriptions_per_session_max;
        if !existing.is_some_and(|index| held.contains(&index)) && held.len() >= limit {
            self.stats.limits_hit += 1;
            let text = format!(
                "this session already holds {limit} subscriptions (limits.subscriptions_per_session_max)"
            );
            return self.send_error(
                sink,
                peer,
                MessageType::Subscribe,
                request,
                LIMIT_EXCEEDED,
                &text,
            );
        }
        let Router {
            ids,
            router_ids,
            realms,
            sessions,
            ..
        } = self;
        let held = sessions
            .get(handle.index as usize)
            .and_then(Session::joined)
            .map_or(&[][..], |joined| &joined.subscriptions[..]);
        let subscribed = realms[realm]
            .broker
            .subscribe(topic, policy, peer, held, || new_router_id(ids, router_ids));
        if subscribed.added {
            if let Some(joined) = self.session_mut(handle).and_then(Session::joined_mut) {
                joined.subscriptions.push(subscribed.index);
            }
        }
        sink.send(
            peer,
            &Message::Subscribed {
                request,
                subscription: subscribed.id,
            },
        );
    }

    fn on_unsubscribe(
        &mut self,
        handle: SessionHandle,
        request: Id,
        subscription: Id,
        sink: &mut impl Sink,
    ) {
        let Some(joined) = self.joined(handle) else {
            return;
        };
        let realm = joined.realm;
        let Some(peer) = self.peer(handle) else {
            return;
        };
        let index = self.realms[realm].broker.by_id.get(&subscription).copied();
        let position =
            index.and_then(|index| joined.subscriptions.iter().position(|&i| i == index));
        let (Some(index), Some(position)) = (index, position) else {
            let text = format!("this session has no subscription {subscription}");
            return self.send_error(
                sink,
                peer,
                MessageType::Unsubscribe,
                request,
                NO_SUCH_SUBSCRIPTION,
                &text,
            );
        };
        if let Some(joined) = self.session_mut(handle).and_then(Session::joined_mut) {
            joined.subscriptions.swap_remove(position);
        }
        if let Some(id) = self.realms[realm].broker.unsubscribe(index, handle) {
            self.router_ids.remove(&id);
        }
        sink.send(
            peer,
            &Message::Unsubscribed {
                request,
                details: None,
            },
        );
    }

    fn on_publish(
        &mut self,
        handle: SessionHandle,
        request: Id,
        options: &Dict<'_>,
        topic: &str,
        payload: &Payload<'_>,
        sink: &mut impl Sink,
    ) {
        let Some(joined) = self.joined(handle) else {
            return;
        };
        let realm = joined.realm;
        let Some(peer) = self.peer(handle) else {
            return;
        };
        let parsed = RequestOptions::parse(options, UNSUPPORTED_PUBLISH);
        let acknowledge = parsed.acknowledge;
        let refusal = if let Some(name) = parsed.unsupported {
            Some((
                OPTION_NOT_ALLOWED,
                format!("option '{name}' is not supported by this router"),
            ))
        } else if !uri::is_valid(topic, self.realms[realm].uri_check, MatchPolicy::Exact) {
            Some((INVALID_URI, format!("'{topic}' is not a valid topic URI")))
        } else if uri::is_reserved(topic) {
            Some((
                INVALID_URI,
                format!("'{topic}': topics under 'wamp.' are reserved for the router"),
            ))
        } else {
            None
        };
        if let Some((uri, text)) = refusal {
            // Per spec a PUBLISH without `acknowledge` gets no answer, not even an error.
            if acknowledge {
                self.send_error(sink, peer, MessageType::Publish, request, uri, &text);
            }
            return;
        }
        let exclude_me = parsed.exclude_me;
        let publication = self.ids.random_id();
        self.stats.publications += 1;
        let broker = &self.realms[realm].broker;
        let mut events = 0u64;
        broker.trie.for_each_match(topic, |policy, index| {
            let subscription = &broker.subscriptions[index];
            let recipients = Recipients {
                peers: &subscription.subscribers,
                exclude: if exclude_me { Some(handle) } else { None },
            };
            let count = recipients.iter().count() as u64;
            if count == 0 {
                return;
            }
            events += count;
            let topic_detail = [("topic", Field::Str(topic))];
            let details = if policy == MatchPolicy::Exact {
                Dict::EMPTY
            } else {
                Dict::Fields(&topic_detail)
            };
            let event = Message::Event {
                subscription: subscription.id,
                publication,
                details,
                payload: *payload,
            };
            sink.send_many(recipients, &event);
        });
        self.stats.events_sent += events;
        if acknowledge {
            sink.send(
                peer,
                &Message::Published {
                    request,
                    publication,
                },
            );
        }
    }

    fn on_register(
        &mut self,
        handle: SessionHandle,
        request: Id,
        options: &Dict<'_>,
        procedure: &str,
        sink: &mut impl Sink,
    ) {
        let Some(joined) = self.joined(handle) else {
            return;
        };
        let realm = joined.realm;
        let Some(peer) = self.peer(handle) else {
            return;
        };
        let policy = match self.check_uri(realm, procedure, options, UNSUPPORTED_REGISTER) {
            Ok(_) if uri::is_reserved(procedure) => {
                let text =
                    format!("'{procedure}': procedures under 'wamp.' are reserved for the router");
                return self.send_error(
                    sink,
                    peer,
                    MessageType::Register,
                    request,
                    INVALID_URI,
                    &text,
                );
            }
            Ok(policy) => policy,
            Err((uri, text)) => {
                return self.send_error(sink, peer, MessageType::Register, request, uri, &text)
            }
        };
        let invoke = match options.get("invoke") {
            None => Invoke::Single,
            Some(value) => match value.as_str().as_deref().and_then(Invoke::from_option) {
                Some(invoke) => invoke,
                None => {
                    let text = "option 'invoke' must be single, roundrobin, random, first or last";
                    return self.send_error(
                        sink,
                        peer,
                        MessageType::Register,
                        request,
                        OPTION_NOT_ALLOWED,
                        text,
                    );
                }
            },
        };
        let limit = self.limits.registrations_per_session_max;
        if self
            .joined(handle)
            .is_some_and(|joined| joined.registrations.len() >= limit)
        {
            self.stats.limits_hit += 1;
            let text = format!(
                "this session already holds {limit} registrations (limits.registrations_per_session_max)"
            );
            return self.send_error(
                sink,
                peer,
                MessageType::Register,
                request,
                LIMIT_EXCEEDED,
                &text,
            );
        }
        let (ids, router_ids) = (&mut self.ids, &mut self.router_ids);
        let outcome = self.realms[realm]
            .dealer
            .register(procedure, policy, invoke, peer, || {
                new_router_id(ids, router_ids)
            });
        let index = match outcome {
            Registered::Created(index) | Registered::Joined(index) => index,
            Registered::Exists => {
                let text = format!(
                    "procedure '{procedure}' (match '{}') is already registered",
                    policy.name()
                );
                return self.send_error(
                    sink,
                    peer,
                    MessageType::Register,
                    request,
                    PROCEDURE_ALREADY_EXISTS,
                    &text,
                );
            }
            Registered::DifferentPolicy(existing) => {
                let text = format!(
                    "procedure '{procedure}' is registered with invocation policy '{}', not '{}'",
                    existing.name(),
                    invoke.name()
                );
                return self.send_error(
                    sink,
                    peer,
                    MessageType::Register,
                    request,
                    PROCEDURE_EXISTS_WITH_DIFFERENT_INVOCATION_POLICY,
                    &text,
                );
            }
        };
        let id = self.realms[realm].dealer.registrations[index].id;
        if let Some(joined) = self.session_mut(handle).and_then(Session::joined_mut) {
            joined.registrations.push(index);
        }
        sink.send(
            peer,
            &Message::Registered {
                request,
                registration: id,
            },
        );
    }

    fn on_unregister(
        &mut self,
        handle: SessionHandle,
        request: Id,
        registration: Id,
        sink: &mut impl Sink,
    ) {
        let Some(joined) = self.joined(handle) else {
            return;
        };
        let realm = joined.realm;
        let Some(peer) = self.peer(handle) else {
            return;
        };
        let index = self.realms[realm].dealer.by_id.get(&registration).copied();
        let position =
            index.and_then(|index| joined.registrations.iter().position(|&i| i == index));
        let (Some(index), Some(position)) = (index, position) else {
            let text = format!("this session has no registration {registration}");
            return self.send_error(
                sink,
                peer,
                MessageType::Unregister,
                request,
                NO_SUCH_REGISTRATION,
                &text,
            );
        };
        if let Some(joined) = self.session_mut(handle).and_then(Session::joined_mut) {
            joined.registrations.swap_remove(position);
        }
        if let Some(id) = self.realms[realm].dealer.unregister(index, handle) {
            self.router_ids.remove(&id);
        }
        // Calls already invoked keep their routing by INVOCATION request ID: their YIELDs still reach the callers.
        sink.send(
            peer,
            &Message::Unregistered {
                request,
                details: None,
            },
        );
    }

    fn on_call(
        &mut self,
        handle: SessionHandle,
        request: Id,
        options: &Dict<'_>,
        procedure: &str,
        payload: &Payload<'_>,
        sink: &mut impl Sink,
    ) {
        let Some(joined) = self.joined(handle) else {
            return;
        };
        let (realm, calls_pending) = (joined.realm, joined.calls_pending);
        let Some(caller) = self.peer(handle) else {
            return;
        };
        self.stats.calls += 1;
        let parsed = RequestOptions::parse(options, UNSUPPORTED_CALL);
        let refusal = if let Some(name) = parsed.unsupported {
            Some((
                OPTION_NOT_ALLOWED,
                format!("option '{name}' is not supported by this router"),
            ))
        } else if !uri::is_valid(procedure, self.realms[realm].uri_check, MatchPolicy::Exact) {
            Some((
                INVALID_URI,
                format!("'{procedure}' is not a valid procedure URI"),
            ))
        } else if self.caller_requests.contains_key(&(handle, request)) {
            Some((
                INVALID_ARGUMENT,
                format!("request ID {request} is already in use by a pending call"),
            ))
        } else if calls_pending >= self.limits.calls_per_session_max {
            self.stats.limits_hit += 1;
            Some((
                LIMIT_EXCEEDED,
                format!(
                    "this session already has {} calls pending (limits.calls_per_session_max)",
                    self.limits.calls_per_session_max
                ),
            ))
        } else {
            None
        };
        if let Some((uri, text)) = refusal {
            return self.send_error(sink, caller, MessageType::Call, request, uri, &text);
        }
        let ids = &mut self.ids;
        let dealer = &mut self.realms[realm].dealer;
        let Some(index) = dealer.lookup(procedure) else {
            let text = format!("no callee registered procedure '{procedure}'");
            return self.send_error(
                sink,
                caller,
                MessageType::Call,
                request,
                NO_SUCH_PROCEDURE,
                &text,
            );
        };
        let callee = dealer.pick(index, |n| ids.below(n));
        let registration = &dealer.registrations[index];
        let (registration_id, pattern) =
            (registration.id, registration.policy != MatchPolicy::Exact);
        let timeout_ms = parsed.timeout_ms;
        let deadline = (timeout_ms > 0).then(|| self.now_ms.saturating_add(timeout_ms));
        let receive_progress = parsed.receive_progress;
        let Some(callee_joined) = self
            .session_mut(callee.session)
            .and_then(Session::joined_mut)
        else {
            return;
        };
        let invocation = callee_joined.next_invocation;
        callee_joined.next_invocation = invocation.next();
        let call = self.calls.insert(Call {
            caller,
            caller_request: request,
            callee,
            invocation,
            receive_progress,
            deadline,
            interrupted: false,
            caller_links: Links::default(),
            callee_links: Links::default(),
        });
        self.link(call, Side::Caller, handle);
        self.link(call, Side::Callee, callee.session);
        self.invocations.insert((callee.session, invocation), call);
        self.caller_requests.insert((handle, request), call);
        if let Some(deadline) = deadline {
            self.deadlines.push(Reverse((deadline, handle, request)));
        }
        let mut fields = [("", Field::Bool(false)); 3];
        let mut count = 0;
        for (present, field) in [
            (pattern, ("procedure", Field::Str(procedure))),
            (receive_progress, ("receive_progress", Field::Bool(true))),
            (timeout_ms > 0, ("timeout", Field::UInt(timeout_ms))),
        ] {
            if present {
                fields[count] = field;
                count += 1;
            }
        }
        let details = Dict::Fields(&fields[..count]);
        sink.send(
            callee,
            &Message::Invocation {
                request: invocation,
                registration: registration_id,
                details,
                payload: *payload,
            },
        );
    }

    /// CANCEL from a caller: `skip` answers the caller at once and drops the callee's late answer; `kill` (the
    /// default, as in crossbar) INTERRUPTs the callee and relays whatever it answers; `killnowait` does both at
    /// once. A callee that did not announce `call_canceling` is treated as `skip`, as the spec says.
    fn on_cancel(
        &mut self,
        handle: SessionHandle,
        request: Id,
        options: &Dict<'_>,
        sink: &mut impl Sink,
    ) {
        let Some(caller) = self.peer(handle) else {
            return;
        };
        let mode = match options.get("mode") {
            None => "kill",
            Some(value) => match value.as_str().as_deref() {
                Some("skip") => "skip",
                Some("kill") => "kill",
                Some("killnowait") => "killnowait",
                _ => {
                    let text = "option 'mode' must be skip, kill or killnowait";
                    return self.send_error(
                        sink,
                        caller,
                        MessageType::Cancel,
                        request,
                        OPTION_NOT_ALLOWED,
                        text,
                    );
                }
            },
        };
        // A CANCEL for a call that already ended (or never existed) has nothing left to do.
        let Some(&index) = self.caller_requests.get(&(handle, request)) else {
            return;
        };
        let call = &self.calls[index];
        let interruptible = self
            .joined(call.callee.session)
            .is_some_and(|joined| joined.interruptible);
        let mode = if interruptible { mode } else { "skip" };
        if mode == "kill" {
            let call = &mut self.calls[index];
            if !call.interrupted {
                call.interrupted = true;
                let (callee, invocation) = (call.callee, call.invocation);
                interrupt(sink, callee, invocation, mode, CANCELED);
            }
            return;
        }
        let call = self.remove_call(index);
        self.send_error(
            sink,
            caller,
            MessageType::Call,
            request,
            CANCELED,
            "the call was canceled",
        );
        if mode == "killnowait" {
            interrupt(sink, call.callee, call.invocation, mode, CANCELED);
        }
    }

    /// The earliest call deadline (`CALL.Options.timeout`), in the engine's milliseconds: call
    /// [`Router::handle_timeout`] then.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.deadlines
            .peek()
            .map(|Reverse((deadline, _, _))| *deadline)
    }

    /// Ends every call whose deadline passed: ERROR `wamp.error.timeout` to the caller, INTERRUPT to a callee that
    /// supports canceling (its late answer is discarded).
    pub fn handle_timeout(&mut self, now_ms: u64, sink: &mut impl Sink) {
        self.now_ms = now_ms;
        while let Some(&Reverse((deadline, caller, request))) = self.deadlines.peek() {
            if deadline > now_ms {
                break;
            }
            self.deadlines.pop();
            let Some(&index) = self.caller_requests.get(&(caller, request)) else {
                continue; // answered or canceled in time
            };
            if self.calls[index].deadline != Some(deadline) {
                continue; // a later call reusing the request ID
            }
            let call = self.remove_call(index);
            let interruptible = self
                .joined(call.callee.session)
                .is_some_and(|joined| joined.interruptible);
            let text = "the call timed out (CALL.Options.timeout)";
            self.send_error(
                sink,
                call.caller,
                MessageType::Call,
                call.caller_request,
                TIMEOUT,
                text,
            );
            if interruptible {
                interrupt(sink, call.callee, call.invocation, "killnowait", TIMEOUT);
            }
        }
        self.check_invariants();
    }

    fn on_yield(
        &mut self,
        handle: SessionHandle,
        request: Id,
        options: &Dict<'_>,
        payload: &Payload<'_>,
        sink: &mut impl Sink,
    ) {
        let Some(&index) = self.invocations.get(&(handle, request)) else {
            // The call was canceled or its caller left: discard the late answer.
            return;
        };
        let progress = options
            .get("progress")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let call = &self.calls[index];
        let (caller, caller_request) = (call.caller, call.caller_request);
        if progress {
            if call.receive_progress {
                let details = [("progress", Field::Bool(true))];
                let result = Message::Result {
                    request: caller_request,
                    details: Dict::Fields(&details),
                    payload: *payload,
                };
                sink.send(caller, &result);
            }
            // A progressive result the caller did not ask for is dropped; the final YIELD still completes it.
            return;
        }
        self.remove_call(index);
        sink.send(
            caller,
            &Message::Result {
                request: caller_request,
                details: Dict::EMPTY,
                payload: *payload,
            },
        );
    }

    fn on_invocation_error(
        &mut self,
        handle: SessionHandle,
        request: Id,
        error: &str,
        payload: &Payload<'_>,
        sink: &mut impl Sink,
    ) {
        let Some(&index) = self.invocations.get(&(handle, request)) else {
            return;
        };
        let call = self.remove_call(index);
        self.stats.errors_sent += 1;
        let error = Message::Error {
            request_type: MessageType::Call.code(),
            request: call.caller_request,
            details: Dict::EMPTY,
            error: Cow::Borrowed(error),
            payload: *payload,
        };
        sink.send(call.caller, &error);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Pending calls: intrusive lists per session

    fn links(&mut self, index: usize, side: Side) -> &mut Links {
        match side {
            Side::Caller => &mut self.calls[index].caller_links,
            Side::Callee => &mut self.calls[index].callee_links,
        }
    }

    fn head(&mut self, session: SessionHandle, side: Side) -> Option<&mut Option<usize>> {
        let joined = self.session_mut(session)?.joined_mut()?;
        Some(match side {
            Side::Caller => &mut joined.calls_as_caller,
            Side::Callee => &mut joined.calls_as_callee,
        })
    }

    fn link(&mut self, index: usize, side: Side, session: SessionHandle) {
        if let (Side::Caller, Some(joined)) = (
            side,
            self.session_mut(session).and_then(Session::joined_mut),
        ) {
            joined.calls_pending += 1;
        }
        let Some(head) = self.head(session, side) else {
            return;
        };
        let old = head.replace(index);
        *self.links(index, side) = Links {
            prev: None,
            next: old,
        };
        if let Some(old) = old {
            self.links(old, side).prev = Some(index);
        }
    }

    fn unlink(&mut self, index: usize, side: Side, session: SessionHandle) {
        if let (Side::Caller, Some(joined)) = (
            side,
            self.session_mut(session).and_then(Session::joined_mut),
        ) {
            joined.calls_pending -= 1;
        }
        let Links { prev, next } = *self.links(index, side);
        match prev {
            Some(prev) => self.links(prev, side).next = next,
            None => {
                if let Some(head) = self.head(session, side) {
                    *head = next;
                }
            }
        }
        if let Some(next) = next {
            self.links(next, side).prev = prev;
        }
    }

    fn remove_call(&mut self, index: usize) -> Call {
        let (caller, callee) = (
            self.calls[index].caller.session,
            self.calls[index].callee.session,
        );
        self.unlink(index, Side::Caller, caller);
        self.unlink(index, Side::Callee, callee);
        let call = self.calls.remove(index);
        self.invocations.remove(&(callee, call.invocation));
        self.caller_requests.remove(&(caller, call.caller_request));
        call
    }

    // ---------------------------------------------------------------------------------------------------------
    // Invariants (debug builds): every cross reference points back.

    fn check_invariants(&self) {
        if !cfg!(debug_assertions) || self.sessions.len() > 200 || self.calls.len() > 1000 {
            return;
        }
        let mut subscriptions = 0;
        for (index, session) in &self.sessions {
            assert_eq!(session.peer.session.index as usize, index);
            let Some(joined) = session.joined() else {
                continue;
            };
            let realm = &self.realms[joined.realm];
            for &sub in &joined.subscriptions {
                assert!(realm.broker.subscriptions[sub]
                    .subscribers
                    .iter()
                    .any(|p| p.session == session.peer.session));
                subscriptions += 1;
            }
            for &reg in &joined.registrations {
                assert!(realm.dealer.registrations[reg]
                    .callees
                    .iter()
                    .any(|p| p.session == session.peer.session));
            }
            assert_eq!(
                self.session_ids.get(&joined.id),
                Some(&session.peer.session)
            );
        }
        let listed: usize = self
            .realms
            .iter()
            .flat_map(|r| r.broker.subscriptions.iter())
            .map(|(_, s)| s.subscribers.len())
            .sum();
        assert_eq!(
            subscriptions, listed,
            "every subscriber is in its session's list and back"
        );
        for (index, call) in &self.calls {
            assert!(self
                .session(call.caller.session)
                .is_some_and(|s| s.joined().is_some()));
            assert!(self
                .session(call.callee.session)
                .is_some_and(|s| s.joined().is_some()));
            assert_eq!(
                self.invocations
                    .get(&(call.callee.session, call.invocation)),
                Some(&index)
            );
            assert_eq!(
                self.caller_requests
                    .get(&(call.caller.session, call.caller_request)),
                Some(&index)
            );
        }
        assert_eq!(self.invocations.len(), self.calls.len());
    }
}

/// INTERRUPT `[69, invocation, {mode, reason}]` to a callee.
fn interrupt(sink: &mut impl Sink, callee: Peer, invocation: Id, mode: &str, reason: &str) {
    let options = [("mode", Field::Str(mode)), ("reason", Field::Str(reason))];
    sink.send(
        callee,
        &Message::Interrupt {
            request: invocation,
            options: Dict::Fields(&options),
        },
    );
}

fn new_router_id(ids: &mut IdGenerator, live: &mut HashSet<Id>) -> Id {
    loop {
        let id = ids.random_id();
        if live.insert(id) {
            return id;
        }
    }
}

/// WELCOME `details.roles`: exactly the features implemented.
fn router_roles() -> Value {
    let broker = Value::dict()
        .with("pattern_based_subscription", true)
        .with("publisher_exclusion", true);
    let dealer = Value::dict()
        .with("pattern_based_registration", true)
        .with("progressive_call_results", true)
        .with("shared_registration", true)
        .with("call_canceling", true)
        .with("call_timeout", true);
    Value::dict()
        .with("broker", Value::dict().with("features", broker))
        .with("dealer", Value::dict().with("features", dealer))
}
