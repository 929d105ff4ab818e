//! The router as a caller of its own dealer: the calls to dynamic authenticators and authorizers, and the requests
//! that wait for an authorizer's decision.
//!
//! A call the router makes goes to whichever session registered the procedure, on this shard or on another (the
//! ordinary cross-shard call path: the call is owned by the callee's shard, which enforces its timeout and answers
//! through the link). Its caller end is [`CallerEnd::Internal`], naming an entry of `Router::internal` that says
//! what the answer is for. An answer is read at once into an owned [`Outcome`] and acted on at the end of the
//! current entry point ([`Router::settle`]), never in the middle of another operation (a callee leaving, a
//! publication): acting on it may join sessions or handle parked requests.
//!
//! Requests of a session whose role has a dynamic authorizer: a request the authorizer must decide (no remembered
//! decision) is kept as the bytes it arrived as (*parked*), and so is every later request of the session, so that
//! they are handled in the order they were sent once the decision arrives. Answers to invocations (YIELD, ERROR)
//! are not held back: they need no authorization, and the authorizer's own answer may be one of them.

use kreisel_codec::Serializer;

use super::rpc::{Answer, CalleeEnd, CallerEnd, Links};
use super::*;
use crate::auth::Method;
use crate::dynamic::{self as contract, CacheScope, Decision, Patterns};
use crate::link::Who;
use crate::session::Parked;

/// Messages one session may have parked, the undecided one included (which is parked whatever its size) ...
pub(super) const PARKED_MESSAGES_MAX: usize = 256;
/// ... and the bytes they may hold together.
pub(super) const PARKED_BYTES_MAX: usize = 256 << 10;

/// A call the router made itself, until its answer has been acted on.
#[derive(Debug)]
pub(crate) struct Internal {
    /// Distinguishes this request from earlier ones in the same slot (the call's caller end carries it).
    serial: u64,
    /// The call, while it is pending: (index, its serial).
    call: Option<(usize, u64)>,
    purpose: Purpose,
}

/// What a call of the router is for.
#[derive(Debug)]
pub(super) enum Purpose {
    /// The authentication of `handle` in `realm` by the realm's authenticator `authenticator`.
    Authenticate {
        handle: SessionHandle,
        realm: usize,
        authenticator: usize,
        generation: u64,
        method: Method,
    },
    /// A decision of the authorizer of `role` for `handle`'s parked request.
    Authorize {
        handle: SessionHandle,
        realm: usize,
        role: RoleIndex,
        generation: u64,
        asked: Box<Asked>,
    },
}

/// The question put to an authorizer.
#[derive(Debug)]
pub(super) struct Asked {
    uri: Box<str>,
    policy: MatchPolicy,
    action: Perms,
    key: DecisionKey,
}

/// An authorizer's decision for a parked request, kept while the request is handled again.
#[derive(Clone, Debug)]
pub(crate) struct Decided {
    uri: Box<str>,
    policy: MatchPolicy,
    action: Perms,
    result: Result<Perms, (&'static str, String)>,
}

/// What [`Router::settle`] acts on.
#[derive(Debug)]
pub(crate) enum Settlement {
    /// The answer to internal request `token`.
    Answer {
        token: usize,
        serial: u64,
        outcome: Outcome,
    },
    /// The parked requests of `handle` can go on (their first one was decided without asking).
    Resume(SessionHandle),
}

/// A request whose authorization its role's authorizer must decide, noted by [`Router::authorize_dynamic`] and
/// asked when the request is parked.
#[derive(Debug)]
pub(crate) struct Question {
    role: RoleIndex,
    asked: Asked,
    /// The request's options, for the authorizer.
    options: Value,
}

/// An answer, read.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// An authenticator's answer that makes sense for the method.
    Authenticated(Box<contract::Assigned>),
    /// An authorizer's decision.
    Decided(Decision),
    /// An ERROR from the callee (`by_callee`: its own refusal, with its URI), or the router's (not registered,
    /// timed out, gone), or an answer that is no answer.
    Failed {
        uri: Box<str>,
        text: String,
        by_callee: bool,
    },
}

impl Router {
    /// Calls `procedure` of `realm` with positional arguments `args` (a MessagePack list) and a `timeout_ms`
    /// deadline, for `purpose`. Returns the token of the request, or why the call could not be made.
    pub(super) fn call_internal(
        &mut self,
        realm: usize,
        procedure: &str,
        args: &[u8],
        timeout_ms: u64,
        purpose: Purpose,
        sink: &mut impl Sink,
    ) -> Result<usize, String> {
        let Some((index, callee)) = self.route_call(realm, procedure) else {
            return Err(format!(
                "no callee registered procedure '{}' in realm '{}'",
                uri::shown(procedure),
                self.realms[realm].name
            ));
        };
        let registration = &self.realms[realm].dealer.registrations[index];
        let (registration, pattern) = (registration.id, registration.policy != MatchPolicy::Exact);
        let serial = self.next_serial();
        let token = self.internal.insert(Internal {
            serial,
            call: None,
            purpose,
        });
        let caller = CallerEnd::Internal { token, serial };
        let payload = Payload {
            args: Some(Field::Raw(RawValue::trusted(Serializer::MsgPack, args))),
            kwargs: None,
        };
        let timeout = [("timeout", Field::UInt(timeout_ms))];
        match callee.at {
            crate::dealer::CalleeAt::Local(peer) => {
                let options = Dict::Fields(&timeout);
                let parsed = RequestOptions::parse(&options, &[]);
                let invoked = self.invoke(
                    (caller, Id::FIRST, None),
                    (registration, pattern, procedure),
                    peer,
                    (&parsed, false),
                    &payload,
                    sink,
                );
                if let Err((_, text)) = invoked {
                    self.internal.remove(token);
                    return Err(text.into());
                }
            }
            crate::dealer::CalleeAt::Remote {
                shard,
                handle: callee_handle,
                ..
            } => {
                let call_serial = self.next_serial();
                let call = self.calls.insert(Call {
                    caller,
                    caller_request: Id::FIRST,
                    callee: CalleeEnd::Remote(shard),
                    invocation: Id::FIRST,
                    registration,
                    receive_progress: false,
                    deadline: None,
                    interrupted: false,
                    streaming: false,
                    frozen: None,
                    serial: call_serial,
                    caller_links: Links::default(),
                    callee_links: Links::default(),
                });
                self.internal_started(token, call);
                let mut options = Vec::with_capacity(16);
                kreisel_codec::encode_field(
                    Serializer::MsgPack,
                    &Field::Dict(Dict::Fields(&timeout)),
                    &mut options,
                );
                let msg = PeerMessage::Call {
                    realm: realm as u16,
                    relay: call as u64 | call_serial << 32,
                    caller: Who {
                        id: Id::FIRST,
                        authid: "",
                        authrole: "",
                    },
                    caller_features: 0,
                    callee: callee_handle,
                    registration,
                    procedure,
                    disclose: false,
                    options: Some(RawValue::trusted(Serializer::MsgPack, &options)),
                    args: Some(RawValue::trusted(Serializer::MsgPack, args)),
                    kwargs: None,
                };
                sink.peer(ShardSet::one(shard), &msg);
            }
        }
        Ok(token)
    }

    /// The call of internal request `token` is `call` (called when it is created).
    pub(super) fn internal_started(&mut self, token: usize, call: usize) {
        let serial = self.calls[call].serial;
        if let Some(entry) = self.internal.get_mut(token) {
            entry.call = Some((call, serial));
        }
    }

    /// The answer to internal request `token`: read now (it borrows the message), acted on in
    /// [`Router::settle`].
    pub(super) fn on_internal_answer(
        &mut self,
        token: usize,
        serial: u64,
        answer: Answer<'_>,
        _sink: &mut impl Sink,
    ) {
        let Some(entry) = self.internal.get_mut(token).filter(|e| e.serial == serial) else {
            return;
        };
        entry.call = None;
        let outcome = match answer {
            Answer::Result { payload, .. } => {
                let args = payload.args.as_ref().and_then(Field::as_raw);
                let read = match &entry.purpose {
                    Purpose::Authenticate { method, .. } => {
                        contract::authenticator_answer(*method, args)
                            .map(|assigned| Outcome::Authenticated(Box::new(assigned)))
                    }
                    Purpose::Authorize { .. } => {
                        contract::authorizer_answer(args).map(Outcome::Decided)
                    }
                };
                read.unwrap_or_else(|text| Outcome::Failed {
                    uri: AUTHENTICATION_FAILED.into(),
                    text,
                    by_callee: false,
                })
            }
            Answer::CalleeError { uri, payload, .. } => {
                let args = payload.args.as_ref().and_then(Field::as_raw);
                let valid =
                    crate::uri::is_valid(uri, crate::uri::UriCheck::Loose, MatchPolicy::Exact);
                Outcome::Failed {
                    uri: if valid { uri } else { AUTHENTICATION_FAILED }.into(),
                    text: contract::error_message(args).unwrap_or_else(|| uri::shown(uri).into()),
                    by_callee: true,
                }
            }
            Answer::RouterError { uri, text } => Outcome::Failed {
                uri: AUTHENTICATION_FAILED.into(),
                text: format!("{text} ({uri})"),
                by_callee: false,
            },
        };
        self.settlements.push_back(Settlement::Answer {
            token,
            serial,
            outcome,
        });
    }

    /// Acts on the answers read during the current entry point (see the module documentation). Every entry point
    /// with a sink ends with it.
    #[inline]
    pub(super) fn settle(&mut self, sink: &mut impl Sink) {
        if !self.settlements.is_empty() {
            self.settle_all(sink);
        }
    }

    #[inline(never)]
    fn settle_all(&mut self, sink: &mut impl Sink) {
        while let Some(settlement) = self.settlements.pop_front() {
            let (token, serial, outcome) = match settlement {
                Settlement::Resume(handle) => {
                    self.resume(handle, sink);
                    continue;
                }
                Settlement::Answer {
                    token,
                    serial,
                    outcome,
                } => (token, serial, outcome),
            };
            if self.internal.get(token).is_none_or(|e| e.serial != serial) {
                continue;
            }
            let entry = self.internal.remove(token);
            match entry.purpose {
                Purpose::Authenticate {
                    handle,
                    realm,
                    authenticator,
                    generation,
                    method,
                } => {
                    self.authenticator_done(realm, authenticator, generation);
                    self.authenticator_answered(handle, token, method, outcome, sink);
                }
                Purpose::Authorize {
                    handle,
                    realm,
                    role,
                    generation,
                    asked,
                } => {
                    let current = self.realms[realm].generation == generation;
                    if current {
                        self.realms[realm].authz.end_asking(role);
                    }
                    self.authorizer_answered(handle, token, current, *asked, outcome, sink);
                }
            }
        }
    }

    fn authenticator_done(&mut self, realm: usize, authenticator: usize, generation: u64) {
        let realm = &mut self.realms[realm];
        if realm.generation == generation {
            if let Some(a) = realm.authenticators.get_mut(authenticator) {
                a.in_flight = a.in_flight.saturating_sub(1);
            }
        }
    }

    /// Gives up internal request `token` (its session left, or its attempt ended): the call ends (a callee that
    /// supports canceling gets INTERRUPT), the authenticator's or authorizer's count goes down.
    pub(super) fn cancel_internal(&mut self, token: usize, sink: &mut impl Sink) {
        let Some(entry) = self.internal.try_remove(token) else {
            return;
        };
        match entry.purpose {
            Purpose::Authenticate {
                realm,
                authenticator,
                generation,
                ..
            } => self.authenticator_done(realm, authenticator, generation),
            Purpose::Authorize {
                realm,
                role,
                generation,
                ..
            } => {
                if self.realms[realm].generation == generation {
                    self.realms[realm].authz.end_asking(role);
                }
            }
        }
        let Some((call, serial)) = entry.call else {
            return;
        };
        if self.calls.get(call).is_none_or(|c| c.serial != serial) {
            return;
        }
        match self.calls[call].callee {
            CalleeEnd::Local(_) => self.end_for_departed_caller(call, sink),
            CalleeEnd::Remote(shard) => {
                self.remove_call(call);
                let relay = call as u64 | serial << 32;
                sink.peer(ShardSet::one(shard), &PeerMessage::CallerGone { relay });
            }
        }
    }

    /// Internal requests not yet answered (for the invariant check).
    pub(super) fn internal_calls(&self) -> usize {
        self.internal
            .iter()
            .filter(|(_, e)| e.call.is_some())
            .count()
    }

    // ---------------------------------------------------------------------------------------------------------
    // Details for authenticators and authorizers

    /// crossbar's `transport` details of `handle`'s connection, as `io` tells them (`null` when it says nothing).
    pub(super) fn transport_details(&self, handle: SessionHandle, sink: &mut impl Sink) -> Value {
        let Some(session) = self.session(handle) else {
            return Value::Null;
        };
        let Some(transport) = sink.transport(session.peer) else {
            return Value::Null;
        };
        let mut details = Value::dict()
            .with("channel_type", transport.channel)
            .with("channel_framing", transport.framing)
            .with("channel_serializer", session.peer.serializer.name())
            .with("peer", transport.peer.as_str())
            .with("is_server", true)
            .with("is_secure", transport.channel == "tls");
        if let Some(protocol) = transport.websocket_protocol {
            details = details.with("websocket_protocol", protocol);
        }
        details
    }

    /// A session's details for its authorizer, as crossbar gives them.
    fn authorizer_details(&self, handle: SessionHandle, sink: &mut impl Sink) -> Value {
        let Some(joined) = self.joined(handle) else {
            return Value::Null;
        };
        let authextra = (joined.dynamic.as_ref())
            .and_then(|d| d.authextra.as_deref())
            .map_or(Value::Null, |bytes| {
                RawValue::trusted(Serializer::MsgPack, bytes).to_value()
            });
        Value::dict()
            .with("session", joined.id)
            .with("authid", &*joined.authid)
            .with("authrole", &*joined.authrole)
            .with("authmethod", joined.authmethod.name())
            .with("authprovider", joined.authprovider().name())
            .with("authextra", authextra)
            .with("transport", self.transport_details(handle, sink))
    }

    // ---------------------------------------------------------------------------------------------------------
    // Dynamic authorization

    /// The authorization of a request of a session whose role has a dynamic authorizer: a decision made for this
    /// request already (it is being handled again), a remembered one, or a question for the authorizer (the
    /// request waits: [`Denied::Pending`]; the question is asked when the message is parked).
    pub(super) fn authorize_dynamic(
        &mut self,
        handle: SessionHandle,
        (uri, policy): (&str, MatchPolicy),
        action: Perms,
        options: &Dict<'_>,
    ) -> Result<Perms, Denied> {
        if let Some((resumed, decided)) = &self.resuming {
            let made = (*resumed == handle)
                .then(|| {
                    decided
                        .iter()
                        .find(|d| d.action == action && d.policy == policy && *d.uri == *uri)
                })
                .flatten();
            if let Some(decided) = made {
                return decided
                    .result
                    .clone()
                    .map_err(|(uri, text)| Denied::Refused(uri, text));
            }
        }
        let Some(joined) = session_in(&self.sessions, handle).and_then(Session::joined) else {
            return Err(Denied::Refused(NOT_AUTHORIZED, "not joined".into()));
        };
        let (realm, role, session) = (joined.realm, joined.role, joined.id);
        let authz = &self.realms[realm].authz;
        let Some(config) = authz.authorizer(role) else {
            return Err(Denied::Refused(NOT_AUTHORIZED, "no authorizer".into()));
        };
        if policy != MatchPolicy::Exact && config.patterns == Patterns::Refuse {
            self.stats.not_authorized += 1;
            let text = format!(
                "role '{}' may not {} patterns (match {}): its authorizer decides concrete URIs only",
                joined.authrole,
                action.verb(),
                policy.name()
            );
            return Err(Denied::Refused(NOT_AUTHORIZED, text));
        }
        let key = match config.cache {
            CacheScope::Role => DecisionKey::new(role.number(), false, action, policy),
            // Session IDs are unique for the router's life (a permutation of 1..2^53): never another session's.
            CacheScope::Session => DecisionKey::new(session.get(), true, action, policy),
        };
        if let Some(perms) = authz.remembered(key, uri) {
            self.stats.authorizer_cached += 1;
            if perms.contains(action) {
                return Ok(perms);
            }
            self.stats.not_authorized += 1;
            return Err(Denied::Refused(
                NOT_AUTHORIZED,
                refused_text(&joined.authrole, action, uri, policy),
            ));
        }
        self.question = Some(Box::new(Question {
            role,
            asked: Asked {
                uri: uri.into(),
                policy,
                action,
                key,
            },
            options: options.to_value(),
        }));
        Err(Denied::Pending)
    }

    /// Parks a message behind the session's undecided request (or refuses it, over the bounds).
    pub(super) fn park_back(
        &mut self,
        handle: SessionHandle,
        msg: &Message<'_>,
        sink: &mut impl Sink,
    ) {
        let Some(session) = self.session_mut(handle) else {
            return;
        };
        let (peer, serializer) = (session.peer, session.peer.serializer);
        let Some(parked) = session.joined_mut().and_then(Joined::parked_mut) else {
            return;
        };
        let mut bytes = Vec::new();
        serializer.encode(msg, &mut bytes);
        let full = parked.messages.len() >= PARKED_MESSAGES_MAX
            || parked.bytes + bytes.len() > PARKED_BYTES_MAX;
        // A GOODBYE may take one place more, so that a session can always leave in order.
        let goodbye =
            matches!(msg, Message::Goodbye { .. }) && parked.messages.len() <= PARKED_MESSAGES_MAX;
        if !full || goodbye {
            parked.bytes += bytes.len();
            parked.messages.push_back(bytes.into());
            return;
        }
        self.stats.limits_hit += 1;
        let text = format!(
            "this session already has {PARKED_MESSAGES_MAX} requests or {PARKED_BYTES_MAX} bytes waiting for its \
             role's authorizer"
        );
        let (kind, request) = match msg {
            Message::Publish {
                request, options, ..
            } => {
                if options.get("acknowledge").and_then(|v| v.as_bool()) != Some(true) {
                    return;
                }
                (MessageType::Publish, *request)
            }
            Message::Subscribe { request, .. } => (MessageType::Subscribe, *request),
            Message::Unsubscribe { request, .. } => (MessageType::Unsubscribe, *request),
            Message::Call { request, .. } => (MessageType::Call, *request),
            Message::Register { request, .. } => (MessageType::Register, *request),
            Message::Unregister { request, .. } => (MessageType::Unregister, *request),
            _ => return,
        };
        self.send_error(sink, peer, kind, request, LIMIT_EXCEEDED, &text);
    }

    /// Parks the message just handled (`bytes`) in front of the others, with the decisions made for it so far,
    /// and asks the authorizer `question`. If it cannot be asked, the request is handled again at once with that
    /// failure as the decision.
    pub(super) fn park_front(
        &mut self,
        handle: SessionHandle,
        bytes: Box<[u8]>,
        decided: Vec<Decided>,
        question: Question,
        sink: &mut impl Sink,
    ) {
        let Some(joined) = self.session_mut(handle).and_then(Session::joined_mut) else {
            return;
        };
        let dynamic = joined.dynamic.get_or_insert_with(Default::default);
        let parked = dynamic.parked.get_or_insert_with(Default::default);
        parked.bytes += bytes.len();
        parked.messages.push_front(bytes);
        parked.decided = decided;
        let Question {
            role,
            asked,
            options,
        } = question;
        match self.ask_authorizer(handle, role, &asked, options, sink) {
            Ok(token) => {
                if let Some(parked) = self.parked_mut(handle) {
                    parked.token = Some(token);
                }
            }
            Err(text) => {
                self.stats.authorizer_failures += 1;
                info!(uri = %uri::shown(&asked.uri), "authorization failed: {text}");
                let failed = Decided {
                    uri: asked.uri,
                    policy: asked.policy,
                    action: asked.action,
                    result: Err((
                        AUTHORIZATION_FAILED,
                        format!("the authorizer could not decide: {text}"),
                    )),
                };
                if let Some(parked) = self.parked_mut(handle) {
                    parked.decided.push(failed);
                }
                self.settlements.push_back(Settlement::Resume(handle));
            }
        }
    }

    fn parked_mut(&mut self, handle: SessionHandle) -> Option<&mut Parked> {
        self.session_mut(handle)?.joined_mut()?.parked_mut()
    }

    /// Calls the authorizer of `role` about `asked`: `Ok(token)` of the call, or why it could not be asked.
    fn ask_authorizer(
        &mut self,
        handle: SessionHandle,
        role: RoleIndex,
        asked: &Asked,
        options: Value,
        sink: &mut impl Sink,
    ) -> Result<usize, String> {
        let Some(joined) = self.joined(handle) else {
            return Err("the session left".into());
        };
        let realm = joined.realm;
        let Some(config) = self.realms[realm].authz.authorizer(role) else {
            return Err("the role has no authorizer".into());
        };
        let (procedure, timeout_ms, concurrency_max) = (
            config.procedure.clone(),
            config.timeout_ms,
            config.concurrency_max,
        );
        let target = match &config.realm {
            None => Some(realm),
            Some(name) => self.realm_index.get(name).copied(),
        };
        let Some(target) = target else {
            return Err("the authorizer's realm does not exist".into());
        };
        if !self.realms[realm].authz.begin_asking(role) {
            return Err(format!(
                "{concurrency_max} requests are waiting for it already (concurrency_max)"
            ));
        }
        let action = match asked.action {
            Perms::CALL => "call",
            Perms::REGISTER => "register",
            Perms::PUBLISH => "publish",
            _ => "subscribe",
        };
        let args = Value::List(vec![
            self.authorizer_details(handle, sink),
            Value::from(&*asked.uri),
            Value::from(action),
            options,
        ]);
        let mut bytes = Vec::new();
        kreisel_codec::encode_field(Serializer::MsgPack, &Field::Value(&args), &mut bytes);
        let purpose = Purpose::Authorize {
            handle,
            realm,
            role,
            generation: self.realms[realm].generation,
            asked: Box::new(Asked {
                uri: asked.uri.clone(),
                policy: asked.policy,
                action: asked.action,
                key: asked.key,
            }),
        };
        match self.call_internal(target, &procedure, &bytes, timeout_ms, purpose, sink) {
            Ok(token) => {
                self.stats.authorizer_calls += 1;
                Ok(token)
            }
            Err(text) => {
                self.realms[realm].authz.end_asking(role);
                Err(text)
            }
        }
    }

    /// The authorizer answered `handle`'s parked request (`current`: no reload since it was asked).
    fn authorizer_answered(
        &mut self,
        handle: SessionHandle,
        token: usize,
        current: bool,
        asked: Asked,
        outcome: Outcome,
        sink: &mut impl Sink,
    ) {
        let Some(joined) = self.joined(handle) else {
            return;
        };
        let parked = joined.dynamic.as_ref().and_then(|d| d.parked.as_ref());
        if parked.and_then(|p| p.token) != Some(token) {
            return;
        }
        let (realm, authrole) = (joined.realm, joined.authrole.clone());
        let result = match outcome {
            Outcome::Decided(decision) => {
                let mut perms = Perms::NONE;
                if decision.allow {
                    perms = asked.action | Perms::IDENTIFY_CALLER | Perms::IDENTIFY_PUBLISHER;
                    if decision.disclose {
                        perms = perms | Perms::DISCLOSE_CALLER | Perms::DISCLOSE_PUBLISHER;
                    }
                }
                if decision.cache && current {
                    self.realms[realm]
                        .authz
                        .remember(asked.key, &asked.uri, perms);
                }
                if decision.allow {
                    Ok(perms)
                } else {
                    self.stats.not_authorized += 1;
                    Err((
                        NOT_AUTHORIZED,
                        refused_text(&authrole, asked.action, &asked.uri, asked.policy),
                    ))
                }
            }
            Outcome::Failed { text, .. } => {
                self.stats.authorizer_failures += 1;
                info!(uri = %uri::shown(&asked.uri), "authorization failed: {text}");
                Err((
                    AUTHORIZATION_FAILED,
                    format!("the authorizer could not decide: {text}"),
                ))
            }
            Outcome::Authenticated(_) => return,
        };
        let Some(parked) = self.parked_mut(handle) else {
            return;
        };
        parked.token = None;
        // After a reload the request is decided again under the new roles.
        if current {
            parked.decided.push(Decided {
                uri: asked.uri,
                policy: asked.policy,
                action: asked.action,
                result,
            });
        }
        self.resume(handle, sink);
    }

    /// Handles `handle`'s parked messages in order, until one has to wait for an authorizer again.
    fn resume(&mut self, handle: SessionHandle, sink: &mut impl Sink) {
        loop {
            let Some(session) = self.session_mut(handle) else {
                return;
            };
            let serializer = session.peer.serializer;
            let Some(dynamic) = session.joined_mut().and_then(|j| j.dynamic.as_mut()) else {
                return;
            };
            let Some(parked) = dynamic.parked.as_mut() else {
                return;
            };
            if parked.token.is_some() {
                return;
            }
            let Some(bytes) = parked.messages.pop_front() else {
                dynamic.parked = None;
                return;
            };
            parked.bytes -= bytes.len();
            let decided = std::mem::take(&mut parked.decided);
            let Ok(msg) = serializer.decode(&bytes) else {
                continue;
            };
            if let Message::Goodbye { .. } = msg {
                // The session leaves: what it sent after GOODBYE (a new HELLO, say) is handled as it would have
                // been without the wait.
                let rest = std::mem::take(&mut parked.messages);
                dynamic.parked = None;
                self.on_session_message(handle, &msg, sink);
                for bytes in rest {
                    if let Ok(msg) = serializer.decode(&bytes) {
                        self.dispatch(handle, &msg, sink);
                    }
                }
                return;
            }
            self.resuming = Some((handle, decided));
            self.on_session_message(handle, &msg, sink);
            let decided = self.resuming.take().map(|(_, d)| d).unwrap_or_default();
            if let Some(question) = self.question.take() {
                drop(msg);
                self.park_front(handle, bytes, decided, *question, sink);
                return;
            }
        }
    }
}

fn refused_text(authrole: &str, action: Perms, uri: &str, policy: MatchPolicy) -> String {
    let pattern = match policy {
        MatchPolicy::Exact => String::new(),
        _ => format!(" (match {})", policy.name()),
    };
    format!(
        "role '{authrole}' is not authorized to {} '{}'{pattern}",
        action.verb(),
        uri::shown(uri)
    )
}
