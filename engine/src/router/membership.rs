//! Subscriptions and registrations alike: a session joins one (SUBSCRIBE, REGISTER) or leaves it (UNSUBSCRIBE,
//! UNREGISTER, or by leaving the realm), and the meta events that announce it (`wamp.subscription.*`,
//! `wamp.registration.*`). The two differ only in names, so one piece of code serves both.

use super::*;

/// What a session is a member of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Membership {
    Subscription,
    Registration,
}

impl Membership {
    /// The request that ends a membership (UNSUBSCRIBE, UNREGISTER).
    fn removal(self) -> MessageType {
        match self {
            Membership::Subscription => MessageType::Unsubscribe,
            Membership::Registration => MessageType::Unregister,
        }
    }

    pub fn no_such(self) -> &'static str {
        match self {
            Membership::Subscription => NO_SUCH_SUBSCRIPTION,
            Membership::Registration => NO_SUCH_REGISTRATION,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Membership::Subscription => "subscription",
            Membership::Registration => "registration",
        }
    }

    /// Meta event topics: (created, member added, member removed, deleted).
    fn topics(self) -> [&'static str; 4] {
        match self {
            Membership::Subscription => [
                "wamp.subscription.on_create",
                "wamp.subscription.on_subscribe",
                "wamp.subscription.on_unsubscribe",
                "wamp.subscription.on_delete",
            ],
            Membership::Registration => [
                "wamp.registration.on_create",
                "wamp.registration.on_register",
                "wamp.registration.on_unregister",
                "wamp.registration.on_delete",
            ],
        }
    }
}

impl Router {
    /// The memberships of this kind a joined session holds (indexes into its realm's broker or dealer).
    fn held(joined: &Joined, kind: Membership) -> &[u32] {
        match kind {
            Membership::Subscription => &joined.subscriptions,
            Membership::Registration => &joined.registrations,
        }
    }

    /// The index of subscription or registration `id` in `realm`.
    pub(super) fn index_of(&self, realm: usize, kind: Membership, id: Id) -> Option<usize> {
        let realm = &self.realms[realm];
        match kind {
            Membership::Subscription => realm.broker.by_id.get(&id).copied(),
            Membership::Registration => realm.dealer.by_id.get(&id).copied(),
        }
    }

    /// UNSUBSCRIBE or UNREGISTER: the session leaves one of its subscriptions or registrations (calls already
    /// invoked keep their routing by INVOCATION request ID: their YIELDs still reach the callers).
    pub(super) fn on_remove(
        &mut self,
        handle: SessionHandle,
        request: Id,
        kind: Membership,
        id: Id,
        sink: &mut impl Sink,
    ) {
        let (Some(joined), Some(peer)) = (self.joined(handle), self.peer(handle)) else {
            return;
        };
        let (realm, session) = (joined.realm, joined.id);
        let index = self.index_of(realm, kind, id);
        let position = index.and_then(|index| {
            Self::held(joined, kind)
                .iter()
                .position(|&held| held as usize == index)
        });
        let (Some(index), Some(position)) = (index, position) else {
            let text = format!("this session has no {} {id}", kind.name());
            return self.send_error(sink, peer, kind.removal(), request, kind.no_such(), &text);
        };
        let footprint = self.footprint(realm, kind, index);
        if let Some(joined) = self.session_mut(handle).and_then(Session::joined_mut) {
            match kind {
                Membership::Subscription => joined.subscriptions.swap_remove(position),
                Membership::Registration => joined.registrations.swap_remove(position),
            };
            joined.uri_bytes -= footprint;
        }
        let announced = self.announced(realm, kind, index);
        let deleted = self.detach(realm, (kind, index), (handle, session), sink);
        let reply = match kind {
            Membership::Subscription => Message::Unsubscribed {
                request,
                details: None,
            },
            Membership::Registration => Message::Unregistered {
                request,
                details: None,
            },
        };
        sink.send(peer, &reply);
        if announced {
            self.announce_removal(realm, kind, session, (id, deleted), sink);
        }
    }

    /// What subscription or registration `index` counts against each member's `limits.uri_bytes_per_session_max`.
    fn footprint(&self, realm: usize, kind: Membership, index: usize) -> usize {
        let realm = &self.realms[realm];
        let uri = match kind {
            Membership::Subscription => {
                (realm.broker.subscriptions.get(index)).map(|s| uri::footprint(&s.topic, s.policy))
            }
            Membership::Registration => (realm.dealer.registrations.get(index))
                .map(|r| uri::footprint(&r.procedure, r.policy)),
        };
        uri.unwrap_or(0)
    }

    /// Whether changes of subscription or registration `index` are announced by meta events: not for the meta
    /// topics themselves (as in crossbar: a meta subscriber would otherwise hear about its own subscriptions).
    pub(super) fn announced(&self, realm: usize, kind: Membership, index: usize) -> bool {
        let realm = &self.realms[realm];
        let uri = match kind {
            Membership::Subscription => realm.broker.subscriptions.get(index).map(|s| &s.topic),
            Membership::Registration => realm.dealer.registrations.get(index).map(|r| &r.procedure),
        };
        uri.is_some_and(|uri| !uri::is_reserved(uri))
    }

    /// Removes `handle` from subscription or registration `index`; returns whether that deleted it (it had no
    /// other member). Does not touch the session's own list. The other shards are told.
    pub(super) fn detach(
        &mut self,
        realm: usize,
        (kind, index): (Membership, usize),
        (handle, session): (SessionHandle, Id),
        sink: &mut impl Sink,
    ) -> bool {
        let deleted = match kind {
            Membership::Subscription => {
                let r = &self.realms[realm];
                if let Some(subscription) = r.broker.subscriptions.get(index) {
                    if self.linked() {
                        let msg = PeerMessage::Unsubscribed {
                            realm: realm as u16,
                            policy: subscription.policy,
                            topic: &subscription.topic,
                            session,
                        };
                        sink.peer(self.others(), &msg);
                    }
                }
                self.realms[realm].broker.unsubscribe(index, handle)
            }
            Membership::Registration => {
                self.unregister_callee(realm, index, (handle, session), sink)
            }
        };
        if let Some(id) = deleted {
            self.router_ids.remove(&id);
        }
        deleted.is_some()
    }

    /// The meta events after a session joined subscription or registration `index`: `on_create` (with the
    /// details `wamp.subscription.get` / `wamp.registration.get` return) if it was created, then `on_subscribe` /
    /// `on_register` (none for subscriptions to meta topics).
    pub(super) fn announce_addition(
        &mut self,
        handle: SessionHandle,
        realm: usize,
        (kind, index, created): (Membership, usize, bool),
        sink: &mut impl Sink,
    ) {
        if !self.meta_wanted(realm) || !self.announced(realm, kind, index) {
            return;
        }
        let Some(session) = self.joined(handle).map(|joined| joined.id) else {
            return;
        };
        let Some(details) = self.membership_details(realm, kind, index) else {
            return;
        };
        let [on_create, on_add, _, _] = kind.topics();
        let session = Field::UInt(session.get());
        if created {
            self.publish_meta(realm, on_create, &[session, Field::Value(&details)], sink);
        }
        if let Some(id) = details.get("id").and_then(Value::as_u64) {
            self.publish_meta(realm, on_add, &[session, Field::UInt(id)], sink);
        }
    }

    /// The meta events after `session` left subscription or registration `id`: `on_unsubscribe` /
    /// `on_unregister`, then `on_delete` if that deleted it.
    pub(super) fn announce_removal(
        &mut self,
        realm: usize,
        kind: Membership,
        session: Id,
        (id, deleted): (Id, bool),
        sink: &mut impl Sink,
    ) {
        let [_, _, on_remove, on_delete] = kind.topics();
        let args = [Field::UInt(session.get()), Field::UInt(id.get())];
        self.publish_meta(realm, on_remove, &args, sink);
        if deleted {
            self.publish_meta(realm, on_delete, &args, sink);
        }
    }

    /// What the meta API tells about a subscription (`id`, `created`, `uri`, `match`) or registration (plus
    /// `invoke`).
    pub(super) fn membership_details(
        &self,
        realm: usize,
        kind: Membership,
        index: usize,
    ) -> Option<Value> {
        let realm = &self.realms[realm];
        let (id, created_ms, uri, policy, invoke) = match kind {
            Membership::Subscription => {
                let s = realm.broker.subscriptions.get(index)?;
                (s.id, s.created_ms, &s.topic, s.policy, None)
            }
            Membership::Registration => {
                let r = realm.dealer.registrations.get(index)?;
                (r.id, r.created_ms, &r.procedure, r.policy, Some(r.invoke))
            }
        };
        let created = iso8601(self.epoch_unix_ms.saturating_add(created_ms));
        let details = Value::dict()
            .with("id", id)
            .with("created", created)
            .with("uri", &**uri)
            .with("match", policy.name());
        Some(match invoke {
            Some(invoke) => details.with("invoke", invoke.name()),
            None => details,
        })
    }
}

/// Unix milliseconds as an ISO 8601 UTC timestamp, `1970-01-01T00:00:00.000Z` (the civil-from-days algorithm of
/// H. Hinnant's date library, for the proleptic Gregorian calendar).
pub(crate) fn iso8601(unix_ms: u64) -> String {
    let (days, ms_of_day) = (unix_ms / 86_400_000, unix_ms % 86_400_000);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let (seconds, ms) = (ms_of_day / 1000, ms_of_day % 1000);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::iso8601;

    #[test]
    fn timestamps_are_iso_8601() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso8601(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }
}
