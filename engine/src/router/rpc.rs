//! The dealer's messages: CALL, CANCEL, YIELD, ERROR for an INVOCATION; call timeouts and the bookkeeping of
//! pending calls (REGISTER and UNREGISTER are in [`super::registry`]).
//!
//! A call is owned by the shard of its callee, which keeps its state (INVOCATION ID, deadline, cancel mode,
//! progressive chunks) and answers the caller. When the caller is on another shard, its shard holds a *relay*: a
//! pending call whose callee end is remote. The relay forwards what the caller adds (chunks of a progressive
//! call, CANCEL, its leaving) and hands the answers (`ToCaller`) to the caller.

use super::*;
use crate::dealer::CalleeAt;
use crate::features::ClientFeatures;
use crate::link::Who;

/// A call in flight from `caller` to `callee`. Calls are linked into two intrusive lists (the caller's and the
/// callee's, for the ends on this shard), so that a leaving session finds its calls without a scan and without
/// allocating.
#[derive(Debug)]
pub(super) struct Call {
    pub caller: CallerEnd,
    /// The caller's CALL request ID (a caller on this shard).
    pub caller_request: Id,
    pub callee: CalleeEnd,
    /// The INVOCATION request ID (a callee on this shard).
    pub invocation: Id,
    /// The registration's ID (every INVOCATION of a progressive call names it).
    pub registration: Id,
    pub receive_progress: bool,
    /// Router-enforced CALL `timeout`, as a deadline in the engine's milliseconds.
    pub deadline: Option<u64>,
    /// An INTERRUPT (cancel mode `kill`) was sent already.
    pub interrupted: bool,
    /// A progressive call whose final chunk has not arrived yet.
    pub streaming: bool,
    /// The INVOCATION details of a progressive call's first CALL, repeated in every further INVOCATION.
    pub frozen: Option<Box<Value>>,
    /// Distinguishes this call from earlier ones in the same slot (relay IDs and deadlines carry it).
    pub serial: u64,
    pub caller_links: Links,
    pub callee_links: Links,
}

/// Who made a call: a session of this shard, or of another (its shard names the call by `relay`), or the router
/// itself (a dynamic authenticator or authorizer: `token` names the request in `Router::internal`).
#[derive(Clone, Copy, Debug)]
pub(super) enum CallerEnd {
    Local(Peer),
    Remote {
        shard: ShardId,
        relay: u64,
        features: ClientFeatures,
    },
    Internal {
        token: usize,
        serial: u64,
    },
}

/// Who serves a call: a session of this shard, or of another (this call is then a relay).
#[derive(Clone, Copy, Debug)]
pub(super) enum CalleeEnd {
    Local(Peer),
    Remote(ShardId),
}

/// What a caller is told.
#[derive(Clone, Copy)]
pub(super) enum Answer<'a> {
    /// RESULT, with the passthru attributes of the callee's YIELD `options`.
    Result {
        progress: bool,
        options: Option<RawValue<'a>>,
        payload: Payload<'a>,
    },
    /// The callee's ERROR, with the passthru attributes of its `details`.
    CalleeError {
        uri: &'a str,
        details: Option<RawValue<'a>>,
        payload: Payload<'a>,
    },
    /// The router's own ERROR.
    RouterError { uri: &'a str, text: &'a str },
}

impl<'a> Answer<'a> {
    /// The answer a message from the call's owner carries: the router's ERROR when it has a text, else the callee's
    /// ERROR when it has a URI, else a RESULT.
    fn relayed(
        (error, text): (&'a str, &'a str),
        progress: bool,
        options: Option<RawValue<'a>>,
        payload: &Payload<'a>,
    ) -> Answer<'a> {
        if !text.is_empty() {
            Answer::RouterError { uri: error, text }
        } else if error.is_empty() {
            Answer::Result {
                progress,
                options,
                payload: *payload,
            }
        } else {
            Answer::CalleeError {
                uri: error,
                details: options,
                payload: *payload,
            }
        }
    }
}

/// CANCEL modes on the link.
const SKIP: u8 = 0;
const KILL: u8 = 1;
const KILLNOWAIT: u8 = 2;

fn mode_name(mode: u8) -> &'static str {
    match mode {
        SKIP => "skip",
        KILL => "kill",
        _ => "killnowait",
    }
}

/// Progressive calls that ended before their final chunk, remembered per caller so that further chunks are dropped.
const ENDED_STREAMS_MAX: usize = 16;

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Links {
    prev: Option<usize>,
    next: Option<usize>,
}

#[derive(Clone, Copy)]
pub(super) enum Side {
    Caller,
    Callee,
}

/// The relay ID of call `index` with `serial`: the other shard names the call by it.
fn relay_of(index: usize, serial: u64) -> u64 {
    serial << 32 | index as u64
}

impl Router {
    pub(super) fn on_call(
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
        let (realm, calls_pending, features) =
            (joined.realm, joined.calls_pending, joined.features);
        let ended_streams = !joined.extras().ended_streams.is_empty();
        let Some(caller) = self.peer(handle) else {
            return;
        };
        let parsed = RequestOptions::parse(options, UNSUPPORTED_CALL);
        let pending = self
            .caller_requests
            .get(&RequestKey::new(handle, request))
            .copied();
        if let Some(index) = pending {
            if self.calls[index].streaming {
                return self.continue_progressive_call(index, parsed.progress, payload, sink);
            }
        } else if ended_streams && self.forget_ended_stream(handle, request, parsed.progress) {
            // A chunk of a progressive call that already ended (answered, canceled, timed out, callee gone): the
            // caller has had its answer.
            return;
        }
        self.stats.calls += 1;
        if parsed.progress && !features.caller_progressive_call_invocations {
            let text = "CALL with progress: true from a caller that did not announce progressive_call_invocations";
            return self.abort(handle, PROTOCOL_VIOLATION, text, sink);
        }
        let attributes = parsed.passthru();
        let passthru = attributes.is_some_and(|attributes| attributes.is_active());
        if passthru && !features.caller_passthru {
            let text = "CALL in payload passthru mode from a caller that did not announce payload_passthru_mode";
            return self.abort(handle, PROTOCOL_VIOLATION, text, sink);
        }
        let refusal = if let Some(name) = parsed.unsupported {
            Some((
                OPTION_NOT_ALLOWED,
                format!("option '{name}' is not supported by this router"),
            ))
        } else if let Some(name) = parsed.invalid() {
            Some((
                OPTION_NOT_ALLOWED,
                format!("option '{name}' has a value of the wrong type"),
            ))
        } else if let Err(refusal) =
            self.check_concrete_uri(realm, "procedure", procedure, MatchPolicy::Exact)
        {
            Some(refusal)
        } else if pending.is_some() {
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
            return self.refuse_call(handle, request, parsed.progress, uri, &text, sink);
        }
        let perms = match self.authorize(handle, procedure, Perms::CALL, options) {
            Ok(perms) => perms,
            Err(Denied::Refused(uri, text)) => {
                let progress = parsed.progress;
                return self.refuse_call(handle, request, progress, uri, &text, sink);
            }
            Err(Denied::Pending) => {
                // Counted again when it is handled.
                self.stats.calls -= 1;
                return;
            }
        };
        if uri::is_reserved(procedure) {
            if parsed.progress || passthru {
                let text =
                    "the router's procedures take no progressive calls and no passthru payloads";
                let progress = parsed.progress;
                return self.refuse_call(
                    handle,
                    request,
                    progress,
                    FEATURE_NOT_SUPPORTED,
                    text,
                    sink,
                );
            }
            return self.on_meta_call(handle, request, procedure, payload, sink);
        }
        let Router {
            ids,
            realms,
            sessions,
            ..
        } = self;
        let Realm { dealer, authz, .. } = &mut realms[realm];
        let admit = |callee: &Callee| admitted(sessions, authz, callee, procedure);
        let Some((index, callee)) = dealer.route(procedure, admit, |n| ids.below(n)) else {
            let text = format!("no callee registered procedure '{}'", uri::shown(procedure));
            return self.refuse_call(
                handle,
                request,
                parsed.progress,
                NO_SUCH_PROCEDURE,
                &text,
                sink,
            );
        };
        let registration = &self.realms[realm].dealer.registrations[index];
        let (registration, pattern) = (registration.id, registration.policy != MatchPolicy::Exact);
        let disclose = parsed.disclose_me
            || callee.disclose_caller
            || self.realms[realm].disclose_caller
            || perms.contains(Perms::DISCLOSE_CALLER);
        match callee.at {
            CalleeAt::Local(callee_peer) => {
                let invoked = self.invoke(
                    (CallerEnd::Local(caller), request, None),
                    (registration, pattern, procedure),
                    callee_peer,
                    (&parsed, disclose),
                    payload,
                    sink,
                );
                if let Err((uri, text)) = invoked {
                    self.refuse_call(handle, request, parsed.progress, uri, text, sink);
                }
            }
            CalleeAt::Remote {
                shard,
                handle: callee_handle,
                ..
            } => {
                let serial = self.next_serial();
                let call = self.calls.insert(Call {
                    caller: CallerEnd::Local(caller),
                    caller_request: request,
                    callee: CalleeEnd::Remote(shard),
                    invocation: Id::FIRST,
                    registration,
                    receive_progress: parsed.receive_progress,
                    deadline: None,
                    interrupted: false,
                    streaming: parsed.progress,
                    frozen: None,
                    serial,
                    caller_links: Links::default(),
                    callee_links: Links::default(),
                });
                self.link(call, Side::Caller, handle);
                self.caller_requests
                    .insert(RequestKey::new(handle, request), call);
                let Some(who) = self.identity(handle) else {
                    return;
                };
                let msg = PeerMessage::Call {
                    realm: realm as u16,
                    relay: relay_of(call, serial),
                    caller: Who {
                        id: who.id,
                        authid: who.authid,
                        authrole: who.authrole,
                    },
                    caller_features: features.to_bits(),
                    callee: callee_handle,
                    registration,
                    procedure,
                    disclose,
                    options: pubsub::raw_dict(options),
                    args: payload.args.as_ref().and_then(Field::as_raw),
                    kwargs: payload.kwargs.as_ref().and_then(Field::as_raw),
                };
                sink.peer(ShardSet::one(shard), &msg);
            }
        }
    }

    /// The registration of `realm` that takes a call to `procedure` and the callee that gets it (by the
    /// registration's invocation policy), passing over restricted callees whose role may not register it.
    pub(super) fn route_call(&mut self, realm: usize, procedure: &str) -> Option<(usize, Callee)> {
        let Router {
            ids,
            realms,
            sessions,
            ..
        } = self;
        let Realm { dealer, authz, .. } = &mut realms[realm];
        let admit = |callee: &Callee| admitted(sessions, authz, callee, procedure);
        dealer.route(procedure, admit, |n| ids.below(n))
    }

    pub(super) fn next_serial(&mut self) -> u64 {
        self.next_call_serial += 1;
        self.next_call_serial
    }

    /// Starts a call on this shard's callee `callee`: the pending call, its deadline, and the INVOCATION. The
    /// caller is `(end, CALL request ID, identity)`: the identity is looked up for a caller of this shard, given
    /// by the link for another's. Refused (before anything is kept) when the callee lacks a feature the call
    /// needs.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn invoke(
        &mut self,
        (caller, caller_request, who): (CallerEnd, Id, Option<Who<'_>>),
        (registration, pattern, procedure): (Id, bool, &str),
        callee: Peer,
        (parsed, disclose): (&RequestOptions<'_>, bool),
        payload: &Payload<'_>,
        sink: &mut impl Sink,
    ) -> Result<(), (&'static str, &'static str)> {
        let Some(callee_features) = self.joined(callee.session).map(|joined| joined.features)
        else {
            return Err((CANCELED, "the callee left"));
        };
        if parsed.progress && !callee_features.callee_takes_progressive_calls() {
            return Err((
                FEATURE_NOT_SUPPORTED,
                "the callee does not support progressive call invocations (with call canceling)",
            ));
        }
        let attributes = parsed.passthru();
        let passthru = attributes.is_some_and(|attributes| attributes.is_active());
        if passthru && !callee_features.callee_passthru {
            return Err((
                FEATURE_NOT_SUPPORTED,
                "the callee does not support payload passthru mode",
            ));
        }
        let timeout_ms = parsed.timeout_ms;
        let deadline = (timeout_ms > 0).then(|| self.now_ms.saturating_add(timeout_ms));
        let Some(callee_joined) = self
            .session_mut(callee.session)
            .and_then(Session::joined_mut)
        else {
            return Err((CANCELED, "the callee left"));
        };
        let invocation = callee_joined.next_invocation;
        callee_joined.next_invocation = invocation.next();
        let serial = self.next_serial();
        let call = self.calls.insert(Call {
            caller,
            caller_request,
            callee: CalleeEnd::Local(callee),
            invocation,
            registration,
            receive_progress: parsed.receive_progress,
            deadline,
            interrupted: false,
            streaming: parsed.progress,
            frozen: None,
            serial,
            caller_links: Links::default(),
            callee_links: Links::default(),
        });
        match caller {
            CallerEnd::Local(peer) => {
                self.link(call, Side::Caller, peer.session);
                self.caller_requests
                    .insert(RequestKey::new(peer.session, caller_request), call);
            }
            CallerEnd::Remote { shard, relay, .. } => {
                self.remote_callers.insert((shard, relay), call);
            }
            CallerEnd::Internal { token, .. } => self.internal_started(token, call),
        }
        self.link(call, Side::Callee, callee.session);
        self.invocations
            .insert(RequestKey::new(callee.session, invocation), call);
        if let Some(deadline) = deadline {
            self.push_deadline(deadline, call, serial);
        }
        let mut details = Details::new();
        if pattern {
            details.push("procedure", Field::Str(procedure));
        }
        if parsed.receive_progress {
            details.push("receive_progress", Field::Bool(true));
        }
        details.passthru(attributes.as_ref());
        // The spec: a dealer MAY forward the timeout to a callee that supports call timeouts (it still enforces
        // the deadline itself).
        if timeout_ms > 0 && callee_features.callee_call_timeout {
            details.push("timeout", Field::UInt(timeout_ms));
        }
        let local = match caller {
            CallerEnd::Local(peer) => self.identity(peer.session),
            CallerEnd::Remote { .. } | CallerEnd::Internal { .. } => None,
        };
        let who = who.map(|who| Identity {
            id: who.id,
            authid: who.authid,
            authrole: who.authrole,
        });
        if let Some(who) = who.or(local).filter(|_| disclose) {
            details.identity(&CALLER_KEYS, &who);
        }
        // Every further INVOCATION of a progressive call carries the first CALL's details ("freezing of options").
        let frozen = parsed.progress.then(|| details.dict().to_value());
        if parsed.progress {
            details.push("progress", Field::Bool(true));
        }
        sink.send(
            callee,
            &Message::Invocation {
                request: invocation,
                registration,
                details: details.dict(),
                payload: *payload,
            },
        );
        drop(details);
        if let Some(frozen) = frozen {
            self.calls[call].frozen = Some(Box::new(frozen));
        }
        Ok(())
    }

    /// A call from another shard's caller for a callee of this shard (see [`crate::link`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_peer_call(
        &mut self,
        (from, realm, relay): (ShardId, usize, u64),
        (caller, caller_features): (Who<'_>, u16),
        (callee, registration, procedure): (SessionHandle, Id, &str),
        disclose: bool,
        options: Option<RawValue<'_>>,
        payload: &Payload<'_>,
        sink: &mut impl Sink,
    ) {
        let end = CallerEnd::Remote {
            shard: from,
            relay,
            features: ClientFeatures::from_bits(caller_features),
        };
        let dealer = &self.realms[realm].dealer;
        let held = (self.joined(callee))
            .filter(|joined| joined.realm == realm)
            .zip(
                dealer
                    .by_id
                    .get(&registration)
                    .map(|&i| &dealer.registrations[i]),
            )
            .filter(|(joined, registration)| {
                registration.callees.iter().any(|c| c.session == joined.id)
            })
            .map(|(_, registration)| registration.policy != MatchPolicy::Exact);
        let (Some(pattern), Some(peer)) = (held, self.peer(callee)) else {
            // The callee left or unregistered while the call was on its way.
            let answer = Answer::RouterError {
                uri: NO_SUCH_PROCEDURE,
                text: "the callee no longer serves this procedure",
            };
            return self.answer(end, Id::FIRST, answer, true, sink);
        };
        let dict = options.map_or(Dict::EMPTY, Dict::Raw);
        let parsed = RequestOptions::parse(&dict, &[]);
        let invoked = self.invoke(
            (end, Id::FIRST, Some(caller)),
            (registration, pattern, procedure),
            peer,
            (&parsed, disclose),
            payload,
            sink,
        );
        if let Err((uri, text)) = invoked {
            self.answer(
                end,
                Id::FIRST,
                Answer::RouterError { uri, text },
                true,
                sink,
            );
        }
    }

    /// Tells `caller` `answer` for its CALL `request` (a caller of another shard: through the link). `last`: the
    /// call ends with it.
    pub(super) fn answer(
        &mut self,
        caller: CallerEnd,
        request: Id,
        answer: Answer<'_>,
        last: bool,
        sink: &mut impl Sink,
    ) {
        match caller {
            CallerEnd::Local(peer) => self.deliver_answer(peer, request, answer, sink),
            CallerEnd::Internal { token, serial } => {
                // The router's own calls take no progressive results.
                if last {
                    self.on_internal_answer(token, serial, answer, sink);
                }
            }
            CallerEnd::Remote { shard, relay, .. } => {
                let (progress, error, text, options, payload) = match answer {
                    Answer::Result {
                        progress,
                        options,
                        payload,
                    } => (progress, "", "", options, payload),
                    Answer::CalleeError {
                        uri,
                        details,
                        payload,
                    } => (false, uri, "", details, payload),
                    Answer::RouterError { uri, text } => (false, uri, text, None, Payload::EMPTY),
                };
                let msg = PeerMessage::ToCaller {
                    relay,
                    last,
                    progress,
                    error,
                    text,
                    options,
                    args: payload.args.as_ref().and_then(Field::as_raw),
                    kwargs: payload.kwargs.as_ref().and_then(Field::as_raw),
                };
                sink.peer(ShardSet::one(shard), &msg);
            }
        }
    }

    /// `answer` as the RESULT or ERROR a caller of this shard gets.
    fn deliver_answer(
        &mut self,
        peer: Peer,
        request: Id,
        answer: Answer<'_>,
        sink: &mut impl Sink,
    ) {
        let mut details = Details::new();
        match answer {
            Answer::Result {
                progress,
                options,
                payload,
            } => {
                let options = options.map_or(Dict::EMPTY, Dict::Raw);
                let passthru = Passthru::from_dict(&options);
                details.passthru(Some(&passthru));
                if progress {
                    details.push("progress", Field::Bool(true));
                }
                sink.send(
                    peer,
                    &Message::Result {
                        request,
                        details: details.dict(),
                        payload,
                    },
                );
            }
            Answer::CalleeError {
                uri,
                details: forwarded,
                payload,
            } => {
                self.stats.errors_sent += 1;
                let forwarded = forwarded.map_or(Dict::EMPTY, Dict::Raw);
                details.passthru(Some(&Passthru::from_dict(&forwarded)));
                sink.send(
                    peer,
                    &Message::Error {
                        request_type: MessageType::Call.code(),
                        request,
                        details: details.dict(),
                        error: Cow::Borrowed(uri),
                        payload,
                    },
                );
            }
            Answer::RouterError { uri, text } => {
                self.send_error(sink, peer, MessageType::Call, request, uri, text)
            }
        }
    }

    /// At a relay's shard: an answer from the shard that owns the call, for a caller of this shard.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_to_caller(
        &mut self,
        relay: u64,
        (last, progress): (bool, bool),
        (error, text): (&str, &str),
        options: Option<RawValue<'_>>,
        payload: &Payload<'_>,
        sink: &mut impl Sink,
    ) {
        let Some(index) = self.call_by_relay(relay) else {
            self.stats.peer_messages_dropped += 1;
            return;
        };
        let call = &self.calls[index];
        let (caller, request) = (call.caller, call.caller_request);
        if let CallerEnd::Internal { .. } = caller {
            if !last {
                return;
            }
            self.remove_call(index);
            let answer = Answer::relayed((error, text), progress, options, payload);
            return self.answer(caller, request, answer, true, sink);
        }
        let CallerEnd::Local(peer) = caller else {
            return;
        };
        let answer = Answer::relayed((error, text), progress, options, payload);
        // A progressive result the caller did not ask for is dropped.
        if matches!(answer, Answer::Result { progress: true, .. }) && !call.receive_progress {
            return;
        }
        if last {
            self.remove_call(index);
        }
        self.deliver_answer(peer, request, answer, sink);
    }

    /// The call a relay ID names, if it is still pending on this shard.
    pub(super) fn call_by_relay(&self, relay: u64) -> Option<usize> {
        let index = (relay & 0xFFFF_FFFF) as usize;
        self.calls
            .get(index)
            .filter(|call| call.serial & 0xFFFF_FFFF == relay >> 32)
            .map(|_| index)
    }

    /// The call another shard's relay names (a call this shard owns).
    fn call_of_remote(&self, from: ShardId, relay: u64) -> Option<usize> {
        self.remote_callers.get(&(from, relay)).copied()
    }

    /// A caller on another shard sent the next chunk of its progressive call.
    pub(super) fn on_peer_call_chunk(
        &mut self,
        (from, relay): (ShardId, u64),
        progress: bool,
        payload: &Payload<'_>,
        sink: &mut impl Sink,
    ) {
        match self.call_of_remote(from, relay) {
            Some(index) if self.calls[index].streaming => {
                self.continue_progressive_call(index, progress, payload, sink)
            }
            _ => self.stats.peer_messages_dropped += 1,
        }
    }

    /// A caller on another shard canceled (`mode` already checked there) or left (`gone`).
    pub(super) fn on_peer_cancel(
        &mut self,
        (from, relay): (ShardId, u64),
        mode: Option<u8>,
        sink: &mut impl Sink,
    ) {
        let Some(index) = self.call_of_remote(from, relay) else {
            return;
        };
        match mode {
            Some(mode) => self.cancel_call(index, mode, sink),
            None => self.end_for_departed_caller(index, sink),
        }
    }

    /// Refuses a CALL with an ERROR. A refused progressive CALL is remembered as ended, so that its further chunks
    /// are dropped rather than taken for new calls.
    fn refuse_call(
        &mut self,
        handle: SessionHandle,
        request: Id,
        progress: bool,
        uri: &str,
        text: &str,
        sink: &mut impl Sink,
    ) {
        if progress {
            self.remember_ended_stream(handle, request);
        }
        if let Some(caller) = self.peer(handle) {
            self.send_error(sink, caller, MessageType::Call, request, uri, text);
        }
    }

    /// The next chunk of a progressive call: an INVOCATION with the same request ID and the first CALL's details,
    /// `progress: true` unless it is the final chunk. Chunks after a `kill` CANCEL are dropped. A relay passes
    /// the chunk on to the callee's shard.
    fn continue_progressive_call(
        &mut self,
        index: usize,
        progress: bool,
        payload: &Payload<'_>,
        sink: &mut impl Sink,
    ) {
        let call = &mut self.calls[index];
        let frozen = if progress {
            None
        } else {
            call.streaming = false;
            call.frozen.take()
        };
        let call = &self.calls[index];
        let callee = match call.callee {
            CalleeEnd::Remote(shard) => {
                let msg = PeerMessage::CallChunk {
                    relay: relay_of(index, call.serial),
                    progress,
                    args: payload.args.as_ref().and_then(Field::as_raw),
                    kwargs: payload.kwargs.as_ref().and_then(Field::as_raw),
                };
                return sink.peer(ShardSet::one(shard), &msg);
            }
            CalleeEnd::Local(callee) => callee,
        };
        if call.interrupted {
            return;
        }
        let mut details = Details::new();
        if let Some(stored) = frozen.as_deref().or(call.frozen.as_deref()) {
            details.extend(stored);
        }
        if progress {
            details.push("progress", Field::Bool(true));
        }
        sink.send(
            callee,
            &Message::Invocation {
                request: call.invocation,
                registration: call.registration,
                details: details.dict(),
                payload: *payload,
            },
        );
    }

    /// Records that the progressive call `request` of `handle` ended before its final chunk arrived (bounded: the
    /// oldest record goes first).
    fn remember_ended_stream(&mut self, handle: SessionHandle, request: Id) {
        if let Some(joined) = self.session_mut(handle).and_then(Session::joined_mut) {
            let extras = joined.extras_mut();
            if extras.ended_streams.len() >= ENDED_STREAMS_MAX {
                extras.ended_streams.remove(0);
            }
            extras.ended_streams.push(request);
        }
    }

    /// Whether `request` is a progressive call of `handle` that ended early; its final chunk (`progress` false)
    /// clears the record.
    fn forget_ended_stream(&mut self, handle: SessionHandle, request: Id, progress: bool) -> bool {
        let Some(joined) = self.session_mut(handle).and_then(Session::joined_mut) else {
            return false;
        };
        let Some(position) = (joined.extras().ended_streams.iter()).position(|&r| r == request)
        else {
            return false;
        };
        if !progress {
            joined.extras_mut().ended_streams.remove(position);
        }
        true
    }

    /// CANCEL from a caller: `skip` answers the caller at once and drops the callee's late answer; `kill`
    /// INTERRUPTs the callee and relays whatever it answers; `killnowait` (the default: the spec names none; it is
    /// what crossbar does for a CANCEL without `mode`, and the caller gets its answer even from a callee that never
    /// answers the INTERRUPT) does both at once. A callee that did not announce `call_canceling` is treated as
    /// `skip`, as the spec says. For a relay the CANCEL goes on to the callee's shard, which decides.
    pub(super) fn on_cancel(
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
            None => KILLNOWAIT,
            Some(value) => match value.as_str().as_deref() {
                Some("skip") => SKIP,
                Some("kill") => KILL,
                Some("killnowait") => KILLNOWAIT,
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
        let Some(&index) = self.caller_requests.get(&RequestKey::new(handle, request)) else {
            return;
        };
        let call = &self.calls[index];
        if let CalleeEnd::Remote(shard) = call.callee {
            let msg = PeerMessage::Cancel {
                relay: relay_of(index, call.serial),
                mode,
            };
            return sink.peer(ShardSet::one(shard), &msg);
        }
        self.cancel_call(index, mode, sink);
    }

    /// Cancels call `index` (its callee is on this shard) in `mode`.
    fn cancel_call(&mut self, index: usize, mode: u8, sink: &mut impl Sink) {
        let call = &self.calls[index];
        let CalleeEnd::Local(callee) = call.callee else {
            return;
        };
        let interruptible = self
            .joined(callee.session)
            .is_some_and(|joined| joined.features.callee_call_canceling);
        let mode = if interruptible { mode } else { SKIP };
        if mode == KILL {
            let call = &mut self.calls[index];
            if !call.interrupted {
                call.interrupted = true;
                let invocation = call.invocation;
                interrupt(sink, callee, invocation, mode_name(mode), CANCELED);
            }
            return;
        }
        let call = self.remove_call(index);
        let answer = Answer::RouterError {
            uri: CANCELED,
            text: "the call was canceled",
        };
        self.answer(call.caller, call.caller_request, answer, true, sink);
        // A call already canceled in `kill` mode has had its INTERRUPT: a second CANCEL (killnowait) answers the
        // caller but does not interrupt the callee again.
        if mode == KILLNOWAIT && !call.interrupted {
            interrupt(sink, callee, call.invocation, mode_name(mode), CANCELED);
        }
    }

    /// Adds a call deadline. Deadlines of calls that ended in time stay in the heap until they come due; when
    /// they outnumber the live ones (many quick calls with long timeouts), the heap is rebuilt with the live ones
    /// only, so its size stays within twice the number of pending calls with a timeout.
    fn push_deadline(&mut self, deadline: u64, call: usize, serial: u64) {
        self.deadlines.push(Reverse((deadline, call, serial)));
        self.deadlines_live += 1;
        if self.deadlines.len() > 2 * self.deadlines_live + 64 {
            let calls = &self.calls;
            self.deadlines.retain(|Reverse((deadline, call, serial))| {
                calls
                    .get(*call)
                    .is_some_and(|c| c.serial == *serial && c.deadline == Some(*deadline))
            });
        }
    }

    /// The earliest call deadline (`CALL.Options.timeout`), in the engine's milliseconds.
    pub(super) fn next_call_deadline(&self) -> Option<u64> {
        self.deadlines
            .peek()
            .map(|Reverse((deadline, _, _))| *deadline)
    }

    /// Ends every call whose deadline passed: ERROR `wamp.error.timeout` to the caller, INTERRUPT to a callee that
    /// supports canceling (its late answer is discarded).
    pub(super) fn expire_calls(&mut self, now_ms: u64, sink: &mut impl Sink) {
        while let Some(&Reverse((deadline, index, serial))) = self.deadlines.peek() {
            if deadline > now_ms {
                break;
            }
            self.deadlines.pop();
            let live = (self.calls.get(index))
                .is_some_and(|call| call.serial == serial && call.deadline == Some(deadline));
            if !live {
                continue; // answered or canceled in time
            }
            let call = self.remove_call(index);
            let CalleeEnd::Local(callee) = call.callee else {
                continue;
            };
            // A call canceled in `kill` mode has had its INTERRUPT already.
            let interruptible = !call.interrupted
                && self
                    .joined(callee.session)
                    .is_some_and(|joined| joined.features.callee_call_canceling);
            let answer = Answer::RouterError {
                uri: TIMEOUT,
                text: "the call timed out (CALL.Options.timeout)",
            };
            self.answer(call.caller, call.caller_request, answer, true, sink);
            if interruptible {
                interrupt(sink, callee, call.invocation, "killnowait", TIMEOUT);
            }
        }
    }

    /// YIELD: RESULT to the caller (progressive results only if it asked for them), with the payload passthru
    /// attributes. A passthru YIELD needs the feature on both ends: from a callee that did not announce it, it is a
    /// protocol violation; for a caller that did not, the callee gets ERROR `wamp.error.feature_not_supported`
    /// and so does the caller (its call ends).
    pub(super) fn on_yield(
        &mut self,
        handle: SessionHandle,
        request: Id,
        options: &Dict<'_>,
        payload: &Payload<'_>,
        sink: &mut impl Sink,
    ) {
        let Some(&index) = self.invocations.get(&RequestKey::new(handle, request)) else {
            // The call was canceled or its caller left: discard the late answer.
            return;
        };
        let parsed = RequestOptions::parse(options, &[]);
        let attributes = parsed.passthru();
        if attributes.is_some_and(|attributes| attributes.is_active()) {
            let callee_passthru = self
                .joined(handle)
                .is_some_and(|joined| joined.features.callee_passthru);
            if !callee_passthru {
                let text = "YIELD in payload passthru mode from a callee that did not announce payload_passthru_mode";
                return self.abort(handle, PROTOCOL_VIOLATION, text, sink);
            }
            let caller_passthru = match self.calls[index].caller {
                CallerEnd::Local(peer) => self
                    .joined(peer.session)
                    .is_some_and(|joined| joined.features.caller_passthru),
                CallerEnd::Remote { features, .. } => features.caller_passthru,
                CallerEnd::Internal { .. } => false,
            };
            let refusal = match attributes.and_then(|attributes| attributes.invalid()) {
                Some(name) => Some((OPTION_NOT_ALLOWED, format!("option '{name}' is not valid"))),
                None if !caller_passthru => {
                    let text = "the caller does not support payload passthru mode";
                    Some((FEATURE_NOT_SUPPORTED, text.to_owned()))
                }
                None => None,
            };
            if let Some((uri, text)) = refusal {
                return self.refuse_yield(handle, request, index, uri, &text, sink);
            }
        }
        let call = &self.calls[index];
        let (caller, caller_request) = (call.caller, call.caller_request);
        let answer = Answer::Result {
            progress: parsed.progress,
            options: pubsub::raw_dict(options),
            payload: *payload,
        };
        if parsed.progress {
            // A progressive result the caller did not ask for is dropped (the relay checks for a caller of another
            // shard); the final YIELD still completes it.
            let wanted = call.receive_progress || matches!(caller, CallerEnd::Remote { .. });
            if wanted {
                self.answer(caller, caller_request, answer, false, sink);
            }
            return;
        }
        self.remove_call(index);
        self.answer(caller, caller_request, answer, true, sink);
    }

    /// A YIELD the router cannot pass on: ERROR to the callee (for its YIELD) and to the caller (the call ends).
    fn refuse_yield(
        &mut self,
        callee: SessionHandle,
        request: Id,
        index: usize,
        uri: &str,
        text: &str,
        sink: &mut impl Sink,
    ) {
        let call = self.remove_call(index);
        if let Some(peer) = self.peer(callee) {
            self.send_error(sink, peer, MessageType::Yield, request, uri, text);
        }
        let answer = Answer::RouterError { uri, text };
        self.answer(call.caller, call.caller_request, answer, true, sink);
    }

    pub(super) fn on_invocation_error(
        &mut self,
        handle: SessionHandle,
        request: Id,
        details: &Dict<'_>,
        error: &str,
        payload: &Payload<'_>,
        sink: &mut impl Sink,
    ) {
        let Some(&index) = self.invocations.get(&RequestKey::new(handle, request)) else {
            return;
        };
        let call = self.remove_call(index);
        let answer = Answer::CalleeError {
            uri: error,
            details: pubsub::raw_dict(details),
            payload: *payload,
        };
        self.answer(call.caller, call.caller_request, answer, true, sink);
    }

    /// Ends the pending calls of a session that leaves. Calls it made: a callee that supports canceling gets
    /// INTERRUPT (`killnowait`), and any late answer finds nothing and is discarded; a relay tells the callee's
    /// shard. Calls it was serving: the callers get ERROR `wamp.error.canceled`.
    pub(super) fn end_calls_of(&mut self, handle: SessionHandle, sink: &mut impl Sink) {
        while let Some(index) = (self.head(handle, Side::Caller))
            .and_then(|head| *head)
            .map(|index| index as usize)
        {
            if let CalleeEnd::Remote(shard) = self.calls[index].callee {
                let relay = relay_of(index, self.calls[index].serial);
                self.remove_call(index);
                sink.peer(ShardSet::one(shard), &PeerMessage::CallerGone { relay });
                continue;
            }
            self.end_for_departed_caller(index, sink);
        }
        while let Some(index) = (self.head(handle, Side::Callee))
            .and_then(|head| *head)
            .map(|index| index as usize)
        {
            let call = self.remove_call(index);
            let answer = Answer::RouterError {
                uri: CANCELED,
                text: "the callee left before answering",
            };
            self.answer(call.caller, call.caller_request, answer, true, sink);
        }
    }

    /// Call `index` (its callee on this shard) ends because its caller left: a callee that supports canceling
    /// gets INTERRUPT (`killnowait`).
    pub(super) fn end_for_departed_caller(&mut self, index: usize, sink: &mut impl Sink) {
        let call = self.remove_call(index);
        let CalleeEnd::Local(callee) = call.callee else {
            return;
        };
        let caller_session = match call.caller {
            CallerEnd::Local(peer) => Some(peer.session),
            CallerEnd::Remote { .. } | CallerEnd::Internal { .. } => None,
        };
        let interruptible = Some(callee.session) != caller_session
            && !call.interrupted
            && self
                .joined(callee.session)
                .is_some_and(|joined| joined.features.callee_call_canceling);
        if interruptible {
            interrupt(sink, callee, call.invocation, "killnowait", CANCELED);
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Pending calls: intrusive lists per session

    pub(super) fn links(&mut self, index: usize, side: Side) -> &mut Links {
        match side {
            Side::Caller => &mut self.calls[index].caller_links,
            Side::Callee => &mut self.calls[index].callee_links,
        }
    }

    pub(super) fn head(&mut self, session: SessionHandle, side: Side) -> Option<&mut Option<u32>> {
        let joined = self.session_mut(session)?.joined_mut()?;
        Some(match side {
            Side::Caller => &mut joined.calls_as_caller,
            Side::Callee => &mut joined.calls_as_callee,
        })
    }

    pub(super) fn link(&mut self, index: usize, side: Side, session: SessionHandle) {
        if let (Side::Caller, Some(joined)) = (
            side,
            self.session_mut(session).and_then(Session::joined_mut),
        ) {
            joined.calls_pending += 1;
        }
        let Some(head) = self.head(session, side) else {
            return;
        };
        let old = head.replace(index as u32).map(|old| old as usize);
        *self.links(index, side) = Links {
            prev: None,
            next: old,
        };
        if let Some(old) = old {
            self.links(old, side).prev = Some(index);
        }
    }

    pub(super) fn unlink(&mut self, index: usize, side: Side, session: SessionHandle) {
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
                    *head = next.map(|next| next as u32);
                }
            }
        }
        if let Some(next) = next {
            self.links(next, side).prev = prev;
        }
    }

    /// Removes call `index` from every index. The router's own calls keep their entry in `Router::internal`
    /// until their answer is handled.
    pub(super) fn remove_call(&mut self, index: usize) -> Call {
        let (caller, callee) = (self.calls[index].caller, self.calls[index].callee);
        if let CallerEnd::Local(peer) = caller {
            self.unlink(index, Side::Caller, peer.session);
        }
        if let CalleeEnd::Local(peer) = callee {
            self.unlink(index, Side::Callee, peer.session);
        }
        let call = self.calls.remove(index);
        if call.deadline.is_some() {
            self.deadlines_live -= 1;
        }
        match caller {
            CallerEnd::Local(peer) => {
                if call.streaming {
                    self.remember_ended_stream(peer.session, call.caller_request);
                }
                self.caller_requests
                    .remove(&RequestKey::new(peer.session, call.caller_request));
            }
            CallerEnd::Remote { shard, relay, .. } => {
                self.remote_callers.remove(&(shard, relay));
            }
            CallerEnd::Internal { .. } => {}
        }
        if let CalleeEnd::Local(peer) = callee {
            self.invocations
                .remove(&RequestKey::new(peer.session, call.invocation));
        }
        call
    }
}

/// Whether a restricted callee's role may take a call to `procedure` (its role in this shard's copy of the realm's
/// roles, for a callee of another shard too).
fn admitted(
    sessions: &Slab<Session>,
    authz: &Authorizer,
    callee: &Callee,
    procedure: &str,
) -> bool {
    let role = match callee.at {
        CalleeAt::Local(peer) => joined_in(sessions, peer.session).map(|joined| joined.role),
        CalleeAt::Remote { .. } => Some(callee.role),
    };
    role.is_some_and(|role| authz.decide(role, procedure).contains(Perms::REGISTER))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RouterConfig;

    /// Keeps the last message sent, as JSON.
    struct Last(Vec<u8>);

    impl Sink for Last {
        fn send(&mut self, _to: Peer, msg: &Message<'_>) {
            self.0.clear();
            Serializer::Json.encode(msg, &mut self.0);
        }
        fn send_many(&mut self, _to: Recipients<'_>, _msg: &Message<'_>) {}
        fn close(&mut self, _to: Peer) {}
    }

    fn deliver(router: &mut Router, sink: &mut Last, handle: SessionHandle, text: &str) {
        let msg = Serializer::Json.decode(text.as_bytes()).unwrap();
        router.handle_message(handle, &msg, 0, sink);
    }

    #[test]
    fn deadlines_of_answered_calls_do_not_pile_up() {
        let mut router = Router::new(RouterConfig::default());
        let mut sink = Last(Vec::new());
        let hello = r#"[1, "realm1", {"roles": {"caller": {}, "callee": {}}}]"#;
        let callee = router.handle_open(ConnId(1), Serializer::Json);
        deliver(&mut router, &mut sink, callee, hello);
        let caller = router.handle_open(ConnId(2), Serializer::Json);
        deliver(&mut router, &mut sink, caller, hello);
        deliver(
            &mut router,
            &mut sink,
            callee,
            r#"[64, 1, {}, "com.quick"]"#,
        );
        for request in 1..=10_000u64 {
            let call = format!(r#"[48, {request}, {{"timeout": 3600000}}, "com.quick", []]"#);
            deliver(&mut router, &mut sink, caller, &call);
            let Ok(Message::Invocation { request: inv, .. }) = Serializer::Json.decode(&sink.0)
            else {
                panic!("expected INVOCATION")
            };
            deliver(
                &mut router,
                &mut sink,
                callee,
                &format!("[70, {inv}, {{}}]"),
            );
        }
        assert_eq!(router.deadlines_live, 0);
        assert!(
            router.deadlines.len() <= 65,
            "{} stale deadlines kept",
            router.deadlines.len()
        );
    }
}
