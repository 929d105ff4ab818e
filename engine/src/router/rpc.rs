//! The dealer's messages: REGISTER, UNREGISTER, CALL, CANCEL, YIELD, ERROR for an INVOCATION; call timeouts and the
//! bookkeeping of pending calls.

use super::*;

/// A call in flight from `caller` to `callee`. Calls are linked into two intrusive lists (the caller's and the
/// callee's), so that a leaving session finds its calls without a scan and without allocating.
#[derive(Debug)]
pub(super) struct Call {
    pub caller: Peer,
    pub caller_request: Id,
    pub callee: Peer,
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
    pub caller_links: Links,
    pub callee_links: Links,
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

impl Router {
    pub(super) fn on_register(
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
        let checked = self.check_uri(
            realm,
            ("procedure", procedure),
            options,
            UNSUPPORTED_REGISTER,
        );
        let policy = match checked {
            Ok(_) if uri::is_reserved(procedure) => {
                let text = format!(
                    "'{}': procedures under 'wamp.' are reserved for the router",
                    uri::shown(procedure)
                );
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
        let disclose_caller = options
            .get("disclose_caller")
            .is_some_and(|value| value.as_bool() == Some(true));
        let identify = disclose_caller.then_some(Perms::IDENTIFY_CALLER);
        let restricted =
            match self.authorize_pattern(handle, (procedure, policy), Perms::REGISTER, identify) {
                Ok(restricted) => restricted,
                Err((uri, text)) => {
                    let kind = MessageType::Register;
                    return self.send_error(sink, peer, kind, request, uri, &text);
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
        let Some(joined) = self.joined(handle) else {
            return;
        };
        let footprint = uri::footprint(procedure, policy);
        let refusal = if joined.registrations.len() >= self.limits.registrations_per_session_max {
            Some(format!(
                "this session already holds {} registrations (limits.registrations_per_session_max)",
                self.limits.registrations_per_session_max
            ))
        } else if joined.uri_bytes + footprint > self.limits.uri_bytes_per_session_max {
            Some(format!(
                "this session's subscriptions and registrations would hold more than {} bytes \
                 (limits.uri_bytes_per_session_max)",
                self.limits.uri_bytes_per_session_max
            ))
        } else {
            None
        };
        if let Some(text) = refusal {
            self.stats.limits_hit += 1;
            let kind = MessageType::Register;
            return self.send_error(sink, peer, kind, request, LIMIT_EXCEEDED, &text);
        }
        let callee = Callee {
            peer,
            disclose_caller,
            restricted,
        };
        let (ids, router_ids) = (&mut self.ids, &mut self.router_ids);
        let outcome = self.realms[realm].dealer.register(
            procedure,
            policy,
            invoke,
            callee,
            self.now_ms,
            || new_router_id(ids, router_ids),
        );
        let (index, created) = match outcome {
            Registered::Created(index) => (index, true),
            Registered::Joined(index) => (index, false),
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
            joined.uri_bytes += footprint;
        }
        sink.send(
            peer,
            &Message::Registered {
                request,
                registration: id,
            },
        );
        let added = (Membership::Registration, index, created);
        self.announce_addition(handle, realm, added, sink);
    }

    /// CALL. A CALL reusing the request ID of a progressive call in flight is its next chunk (progressive call
    /// invocations); otherwise the call is checked, routed by the registration's invocation policy, and becomes a
    /// pending call.
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
        let ended_streams = !joined.ended_streams.is_empty();
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
        let perms = match self.authorize(handle, procedure, Perms::CALL) {
            Ok(perms) => perms,
            Err(text) => {
                let progress = parsed.progress;
                return self.refuse_call(handle, request, progress, NOT_AUTHORIZED, &text, sink);
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
        let admit = |callee: &Callee| {
            joined_in(sessions, callee.peer.session).is_some_and(|joined| {
                authz
                    .decide(joined.role, procedure)
                    .contains(Perms::REGISTER)
            })
        };
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
        let Callee {
            peer: callee,
            disclose_caller,
            ..
        } = callee;
        let registration = &dealer.registrations[index];
        let (registration_id, pattern) =
            (registration.id, registration.policy != MatchPolicy::Exact);
        let Some(callee_features) = self.joined(callee.session).map(|joined| joined.features)
        else {
            return;
        };
        if parsed.progress && !callee_features.callee_takes_progressive_calls() {
            let text =
                "the callee does not support progressive call invocations (with call canceling)";
            return self.refuse_call(handle, request, true, FEATURE_NOT_SUPPORTED, text, sink);
        }
        if passthru && !callee_features.callee_passthru {
            let text = "the callee does not support payload passthru mode";
            let progress = parsed.progress;
            return self.refuse_call(handle, request, progress, FEATURE_NOT_SUPPORTED, text, sink);
        }
        let timeout_ms = parsed.timeout_ms;
        let deadline = (timeout_ms > 0).then(|| self.now_ms.saturating_add(timeout_ms));
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
            registration: registration_id,
            receive_progress: parsed.receive_progress,
            deadline,
            interrupted: false,
            streaming: parsed.progress,
            frozen: None,
            caller_links: Links::default(),
            callee_links: Links::default(),
        });
        self.link(call, Side::Caller, handle);
        self.link(call, Side::Callee, callee.session);
        self.invocations
            .insert(RequestKey::new(callee.session, invocation), call);
        self.caller_requests
            .insert(RequestKey::new(handle, request), call);
        if let Some(deadline) = deadline {
            self.push_deadline(deadline, handle, request);
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
        let disclose = parsed.disclose_me
            || disclose_caller
            || self.realms[realm].disclose_caller
            || perms.contains(Perms::DISCLOSE_CALLER);
        let who = self.identity(handle);
        if let Some(who) = who.as_ref().filter(|_| disclose) {
            details.identity(&CALLER_KEYS, who);
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
                registration: registration_id,
                details: details.dict(),
                payload: *payload,
            },
        );
        drop(details);
        if let Some(frozen) = frozen {
            self.calls[call].frozen = Some(Box::new(frozen));
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
    /// `progress: true` unless it is the final chunk. Chunks after a `kill` CANCEL are dropped.
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
            call.callee,
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
            if joined.ended_streams.len() >= ENDED_STREAMS_MAX {
                joined.ended_streams.remove(0);
            }
            joined.ended_streams.push(request);
        }
    }

    /// Whether `request` is a progressive call of `handle` that ended early; its final chunk (`progress` false)
    /// clears the record.
    fn forget_ended_stream(&mut self, handle: SessionHandle, request: Id, progress: bool) -> bool {
        let Some(joined) = self.session_mut(handle).and_then(Session::joined_mut) else {
            return false;
        };
        let Some(position) = joined.ended_streams.iter().position(|&r| r == request) else {
            return false;
        };
        if !progress {
            joined.ended_streams.remove(position);
        }
        true
    }

    /// CANCEL from a caller: `skip` answers the caller at once and drops the callee's late answer; `kill`
    /// INTERRUPTs the callee and relays whatever it answers; `killnowait` (the default: the spec names none; it is
    /// what crossbar does for a CANCEL without `mode`, and the caller gets its answer even from a callee that never
    /// answers the INTERRUPT) does both at once. A callee that did not announce `call_canceling` is treated as
    /// `skip`, as the spec says.
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
            None => "killnowait",
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
        let Some(&index) = self.caller_requests.get(&RequestKey::new(handle, request)) else {
            return;
        };
        let call = &self.calls[index];
        let interruptible = self
            .joined(call.callee.session)
            .is_some_and(|joined| joined.features.callee_call_canceling);
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
        // A call already canceled in `kill` mode has had its INTERRUPT: a second CANCEL (killnowait) answers the
        // caller but does not interrupt the callee again.
        if mode == "killnowait" && !call.interrupted {
            interrupt(sink, call.callee, call.invocation, mode, CANCELED);
        }
    }

    /// Adds a call deadline. Deadlines of calls that ended in time stay in the heap until they come due; when
    /// they outnumber the live ones (many quick calls with long timeouts), the heap is rebuilt with the live ones
    /// only, so its size stays within twice the number of pending calls with a timeout.
    fn push_deadline(&mut self, deadline: u64, caller: SessionHandle, request: Id) {
        self.deadlines.push(Reverse((deadline, caller, request)));
        self.deadlines_live += 1;
        if self.deadlines.len() > 2 * self.deadlines_live + 64 {
            let (calls, caller_requests) = (&self.calls, &self.caller_requests);
            self.deadlines
                .retain(|Reverse((deadline, caller, request))| {
                    caller_requests
                        .get(&RequestKey::new(*caller, *request))
                        .is_some_and(|&index| calls[index].deadline == Some(*deadline))
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
        while let Some(&Reverse((deadline, caller, request))) = self.deadlines.peek() {
            if deadline > now_ms {
                break;
            }
            self.deadlines.pop();
            let Some(&index) = self.caller_requests.get(&RequestKey::new(caller, request)) else {
                continue; // answered or canceled in time
            };
            if self.calls[index].deadline != Some(deadline) {
                continue; // a later call reusing the request ID
            }
            let call = self.remove_call(index);
            // A call canceled in `kill` mode has had its INTERRUPT already.
            let interruptible = !call.interrupted
                && self
                    .joined(call.callee.session)
                    .is_some_and(|joined| joined.features.callee_call_canceling);
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
            let features = |session| self.joined(session).map(|joined| joined.features);
            if !features(handle).is_some_and(|f| f.callee_passthru) {
                let text = "YIELD in payload passthru mode from a callee that did not announce payload_passthru_mode";
                return self.abort(handle, PROTOCOL_VIOLATION, text, sink);
            }
            let refusal = match attributes.and_then(|attributes| attributes.invalid()) {
                Some(name) => Some((OPTION_NOT_ALLOWED, format!("option '{name}' is not valid"))),
                None if !features(self.calls[index].caller.session)
                    .is_some_and(|f| f.caller_passthru) =>
                {
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
        let mut details = Details::new();
        details.passthru(attributes.as_ref());
        if parsed.progress {
            if call.receive_progress {
                details.push("progress", Field::Bool(true));
                let result = Message::Result {
                    request: caller_request,
                    details: details.dict(),
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
                details: details.dict(),
                payload: *payload,
            },
        );
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
        let (caller, caller_request) = (call.caller, call.caller_request);
        self.send_error(sink, caller, MessageType::Call, caller_request, uri, text);
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
        self.stats.errors_sent += 1;
        let mut forwarded = Details::new();
        forwarded.passthru(Some(&Passthru::from_dict(details)));
        let error = Message::Error {
            request_type: MessageType::Call.code(),
            request: call.caller_request,
            details: forwarded.dict(),
            error: Cow::Borrowed(error),
            payload: *payload,
        };
        sink.send(call.caller, &error);
    }

    /// Ends the pending calls of a session that leaves. Calls it made: a callee that supports canceling gets
    /// INTERRUPT (`killnowait`), and any late answer finds nothing and is discarded. Calls it was serving: the
    /// callers get ERROR `wamp.error.canceled`.
    pub(super) fn end_calls_of(&mut self, handle: SessionHandle, sink: &mut impl Sink) {
        while let Some(index) = self.head(handle, Side::Caller).and_then(|head| *head) {
            let call = self.remove_call(index);
            let interruptible = call.callee.session != handle
                && !call.interrupted
                && self
                    .joined(call.callee.session)
                    .is_some_and(|joined| joined.features.callee_call_canceling);
            if interruptible {
                interrupt(sink, call.callee, call.invocation, "killnowait", CANCELED);
            }
        }
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
    }

    // ---------------------------------------------------------------------------------------------------------
    // Pending calls: intrusive lists per session

    pub(super) fn links(&mut self, index: usize, side: Side) -> &mut Links {
        match side {
            Side::Caller => &mut self.calls[index].caller_links,
            Side::Callee => &mut self.calls[index].callee_links,
        }
    }

    pub(super) fn head(
        &mut self,
        session: SessionHandle,
        side: Side,
    ) -> Option<&mut Option<usize>> {
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
        let old = head.replace(index);
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
                    *head = next;
                }
            }
        }
        if let Some(next) = next {
            self.links(next, side).prev = prev;
        }
    }

    pub(super) fn remove_call(&mut self, index: usize) -> Call {
        let (caller, callee) = (
            self.calls[index].caller.session,
            self.calls[index].callee.session,
        );
        self.unlink(index, Side::Caller, caller);
        self.unlink(index, Side::Callee, callee);
        let call = self.calls.remove(index);
        if call.deadline.is_some() {
            self.deadlines_live -= 1;
        }
        if call.streaming {
            self.remember_ended_stream(caller, call.caller_request);
        }
        self.invocations
            .remove(&RequestKey::new(callee, call.invocation));
        self.caller_requests
            .remove(&RequestKey::new(caller, call.caller_request));
        call
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
