//! Session lifecycle: HELLO/WELCOME (join), GOODBYE, ABORT, and leaving the realm.

use super::*;

impl Router {
    // ---------------------------------------------------------------------------------------------------------
    // Session lifecycle

    pub(super) fn on_handshake_message(
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

    pub(super) fn on_hello(
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
        let features =
            ClientFeatures::from_roles(details.get("roles").and_then(|roles| roles.as_raw()));
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
            features,
            ended_streams: Vec::new(),
            testaments: Vec::new(),
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
        if self.meta_wanted(realm_index) {
            if let Some(details) = self.joined(handle).map(session_details) {
                let args = [Field::Value(&details)];
                self.publish_meta(realm_index, "wamp.session.on_join", &args, sink);
            }
        }
    }

    /// The peer said GOODBYE: answer, leave the realm; the transport stays open for a new HELLO.
    pub(super) fn on_goodbye(&mut self, handle: SessionHandle, sink: &mut impl Sink) {
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

    /// The router ends a session (shutdown, kill): it leaves the realm and gets GOODBYE with `reason` (and
    /// `message` in the details, if given); the router then waits for the peer's GOODBYE.
    pub(super) fn goodbye_from_router(
        &mut self,
        handle: SessionHandle,
        reason: &str,
        message: Option<&str>,
        sink: &mut impl Sink,
    ) {
        let Some(session) = self.session(handle) else {
            return;
        };
        let peer = session.peer;
        match session.phase {
            Phase::Established(_) => {
                self.leave(handle, sink);
                let details = message.map(|message| [("message", Field::Str(message))]);
                let details = details.as_ref().map_or(Dict::EMPTY, |d| Dict::Fields(d));
                sink.send(
                    peer,
                    &Message::Goodbye {
                        details,
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
    pub(super) fn abort(
        &mut self,
        handle: SessionHandle,
        reason: &str,
        text: &str,
        sink: &mut impl Sink,
    ) {
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

    pub(super) fn close(&mut self, handle: SessionHandle, sink: &mut impl Sink) {
        self.leave(handle, sink);
        if let Some(session) = self.session_mut(handle) {
            session.phase = Phase::Closed;
            let peer = session.peer;
            sink.close(peer);
        }
    }

    /// Leaves the realm, if joined: ends its pending calls, drops subscriptions and registrations, publishes its
    /// testaments, then the meta events. Afterwards the session is in the handshake phase. Every way out of a
    /// realm (GOODBYE, ABORT, a lost transport, shutdown, kill) goes through here.
    pub(super) fn leave(&mut self, handle: SessionHandle, sink: &mut impl Sink) {
        if self.joined(handle).is_none() {
            return;
        }
        // Pending calls first, while the session is still joined, so that unlinking keeps both of its lists
        // right (a session may be caller and callee of the same call).
        self.end_calls_of(handle, sink);
        let Some(session) = self.session_mut(handle) else {
            return;
        };
        let Phase::Established(joined) = std::mem::replace(&mut session.phase, Phase::Handshake)
        else {
            return;
        };
        let realm = joined.realm;
        // Every membership goes before any meta event, so that none reaches the departing session.
        let announce = self.meta_wanted(realm);
        let mut removed = Vec::new();
        let memberships = (joined.subscriptions.iter())
            .map(|&index| (Membership::Subscription, index))
            .chain((joined.registrations.iter()).map(|&index| (Membership::Registration, index)));
        for (kind, index) in memberships {
            let id = match kind {
                Membership::Subscription => self.realms[realm].broker.subscriptions[index].id,
                Membership::Registration => self.realms[realm].dealer.registrations[index].id,
            };
            let announced = announce && self.announced(realm, kind, index);
            let deleted = self.detach(realm, kind, index, handle);
            if announced {
                removed.push((kind, id, deleted));
            }
        }
        self.realms[realm].sessions -= 1;
        self.session_ids.remove(&joined.id);
        self.stats.sessions_active -= 1;
        debug!(session = joined.id.get(), "session left");
        if !joined.testaments.is_empty() {
            self.publish_testaments(realm, &joined, sink);
        }
        for (kind, id, deleted) in removed {
            self.announce_removal(realm, kind, joined.id, (id, deleted), sink);
        }
        let args = [
            Field::UInt(joined.id.get()),
            Field::Str(&joined.authid),
            Field::Str(&joined.authrole),
        ];
        self.publish_meta(realm, "wamp.session.on_leave", &args, sink);
    }
}
