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

    pub(super) fn goodbye_from_router(
        &mut self,
        handle: SessionHandle,
        reason: &str,
        sink: &mut impl Sink,
    ) {
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

    /// Leaves the realm, if joined: ends its pending calls, drops subscriptions and registrations. Afterwards the
    /// session is in the handshake phase. Every way out of a realm (GOODBYE, ABORT, a lost transport, shutdown)
    /// goes through here.
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
}
