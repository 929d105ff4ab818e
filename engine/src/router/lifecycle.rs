//! Session lifecycle: GOODBYE, ABORT, and leaving the realm (joining is in `authn`).

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
            Phase::Handshake | Phase::Authenticating(_) => self.close(handle, sink),
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
        // The I/O layer logs every ABORT at info with the peer's address.
        debug!(
            conn = peer.conn.0,
            reason,
            detail = text,
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
            .map(|&index| (Membership::Subscription, index as usize))
            .chain(
                (joined.registrations.iter())
                    .map(|&index| (Membership::Registration, index as usize)),
            );
        for (kind, index) in memberships {
            let id = match kind {
                Membership::Subscription => self.realms[realm].broker.subscriptions[index].id,
                Membership::Registration => self.realms[realm].dealer.registrations[index].id,
            };
            let announced = announce && self.announced(realm, kind, index);
            let deleted = self.detach(realm, (kind, index), (handle, joined.id), sink);
            if announced {
                removed.push((kind, id, deleted));
            }
        }
        self.realms[realm].sessions -= 1;
        let left = PeerMessage::SessionLeft {
            realm: realm as u16,
            session: joined.id,
        };
        self.broadcast(&left, sink);
        self.stats.sessions_active -= 1;
        debug!(session = joined.id.get(), "session left");
        if !joined.extras().testaments.is_empty() {
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
