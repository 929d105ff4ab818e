//! The broker's messages: SUBSCRIBE, UNSUBSCRIBE, PUBLISH.

use super::*;

/// One publication on its way to subscribers (from a PUBLISH, or a testament of a session that left).
pub(super) struct Publication<'p> {
    pub id: Id,
    pub topic: &'p str,
    pub publisher: Identity<'p>,
    /// The publisher's session, when `exclude_me` keeps the event from it.
    pub exclude: Option<SessionHandle>,
    pub options: &'p RequestOptions<'p>,
    pub payload: &'p Payload<'p>,
}

impl Router {
    pub(super) fn on_subscribe(
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

    pub(super) fn on_unsubscribe(
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

    pub(super) fn on_publish(
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
        let refusal = if let Some(name) = parsed.unsupported.or_else(|| not_yet(&parsed)) {
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
        let publication = self.ids.random_id();
        self.stats.publications += 1;
        let events = match self.identity(handle) {
            Some(publisher) => self.fan_out(
                realm,
                &Publication {
                    id: publication,
                    topic,
                    publisher,
                    exclude: parsed.exclude_me.then_some(handle),
                    options: &parsed,
                    payload,
                },
                sink,
            ),
            None => 0,
        };
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

    /// Sends a publication to the subscribers of every matching subscription: one EVENT per subscription (pattern
    /// subscriptions get `details.topic`), encoded once per serializer by the sink. Returns the number of events.
    pub(super) fn fan_out(
        &self,
        realm: usize,
        publication: &Publication<'_>,
        sink: &mut impl Sink,
    ) -> u64 {
        let realm = &self.realms[realm];
        let disclose = publication.options.disclose_me || realm.disclose_publisher;
        let broker = &realm.broker;
        let mut events = 0u64;
        broker
            .trie
            .for_each_match(publication.topic, |policy, index| {
                let subscription = &broker.subscriptions[index];
                let recipients = Recipients {
                    peers: &subscription.subscribers,
                    exclude: publication.exclude,
                };
                let count = recipients.iter().count() as u64;
                if count == 0 {
                    return;
                }
                events += count;
                let mut details = Details::new();
                if policy != MatchPolicy::Exact {
                    details.push("topic", Field::Str(publication.topic));
                }
                if disclose {
                    details.identity(&PUBLISHER_KEYS, &publication.publisher);
                }
                let event = Message::Event {
                    subscription: subscription.id,
                    publication: publication.id,
                    details: details.dict(),
                    payload: *publication.payload,
                };
                sink.send_many(recipients, &event);
            });
        events
    }
}

/// Options read but not implemented yet.
fn not_yet(parsed: &RequestOptions<'_>) -> Option<&'static str> {
    if parsed.filter.is_active() {
        Some("exclude/eligible")
    } else if parsed.retain {
        Some("retain")
    } else if parsed.passthru.is_active() {
        Some("ppt_scheme")
    } else {
        None
    }
}
