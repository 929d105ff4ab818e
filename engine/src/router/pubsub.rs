//! The broker's messages: SUBSCRIBE, UNSUBSCRIBE, PUBLISH.

use super::*;
use crate::broker::SubscriberFlags;
use crate::link::Who;

/// One publication on its way to subscribers (from a PUBLISH, or a testament of a session that left).
pub(super) struct Publication<'p> {
    pub id: Id,
    pub topic: &'p str,
    /// The publishing session (none for the router's own meta events).
    pub publisher: Option<Identity<'p>>,
    /// The publisher's session, when `exclude_me` keeps the event from it.
    pub exclude: Option<SessionHandle>,
    pub options: &'p RequestOptions<'p>,
    /// The options as the publisher sent them, for other shards (none for the router's meta events).
    pub raw_options: Option<RawValue<'p>>,
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
        let checked = self.check_uri(realm, ("topic", topic), options, UNSUPPORTED_SUBSCRIBE);
        let policy = match checked {
            Ok(policy) => policy,
            Err((uri, text)) => {
                return self.send_error(sink, peer, MessageType::Subscribe, request, uri, &text)
            }
        };
        let flag = |name| options.get(name).and_then(|v| v.as_bool()) == Some(true);
        let (disclose_publisher, get_retained) = (flag("disclose_publisher"), flag("get_retained"));
        let identify = disclose_publisher.then_some(Perms::IDENTIFY_PUBLISHER);
        let restricted = match self.authorize_pattern(
            handle,
            (topic, policy),
            Perms::SUBSCRIBE,
            identify,
            options,
        ) {
            Ok(restricted) => restricted,
            Err(Denied::Refused(uri, text)) => {
                return self.send_error(sink, peer, MessageType::Subscribe, request, uri, &text)
            }
            Err(Denied::Pending) => return,
        };
        let existing = self.realms[realm].broker.trie.get(topic, policy);
        let Some(joined) = self.joined(handle) else {
            return;
        };
        let already = existing.is_some_and(|index| joined.subscriptions.contains(&(index as u32)));
        let footprint = uri::footprint(topic, policy);
        let refusal = if already {
            None
        } else if joined.subscriptions.len() >= self.limits.subscriptions_per_session_max {
            Some(format!(
                "this session already holds {} subscriptions (limits.subscriptions_per_session_max)",
                self.limits.subscriptions_per_session_max
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
            let kind = MessageType::Subscribe;
            return self.send_error(sink, peer, kind, request, LIMIT_EXCEEDED, &text);
        }
        let session = joined.id;
        let Router {
            router_ids,
            realms,
            sessions,
            id_seed,
            ..
        } = self;
        let held = sessions
            .get(handle.index as usize)
            .and_then(Session::joined)
            .map_or(&[][..], |joined| &joined.subscriptions[..]);
        let now_ms = self.now_ms;
        let flags = SubscriberFlags {
            disclose_publisher,
            restricted,
        };
        let subscribed = realms[realm]
            .broker
            .subscribe((topic, policy), peer, flags, held, || {
                let id = subscription_id(*id_seed, (realm, policy, topic), router_ids);
                (id, now_ms)
            });
        if subscribed.added {
            if let Some(joined) = self.session_mut(handle).and_then(Session::joined_mut) {
                joined.subscriptions.push(subscribed.index as u32);
                joined.uri_bytes += footprint;
            }
        }
        // The other shards learn of every subscriber (the meta API lists them); when this is the first one here,
        // they must also start sending this shard the subscription's publications, and SUBSCRIBED waits until
        // each of them has: no publication that follows SUBSCRIBED can miss the new subscriber.
        let wait = subscribed.added && subscribed.first_here && self.linked();
        if subscribed.added && self.linked() {
            let ack = if wait { self.token() } else { 0 };
            let msg = PeerMessage::Subscribed {
                realm: realm as u16,
                policy,
                topic,
                session,
                ack,
            };
            self.broadcast(&msg, sink);
            if wait {
                let then = AfterAck::Subscribed {
                    handle,
                    request,
                    subscription: subscribed.id,
                    topic: topic.into(),
                    policy,
                    flags,
                    get_retained,
                };
                let remaining = self.others().len();
                self.pending_acks
                    .insert(ack, PendingAck { remaining, then });
                self.unconfirmed.push((handle, subscribed.id));
            }
        }
        if !wait {
            self.answer_subscribe(
                handle,
                request,
                (subscribed.id, topic, policy),
                (flags, get_retained),
                sink,
            );
        }
        if subscribed.added {
            let added = (
                Membership::Subscription,
                subscribed.index,
                subscribed.created,
            );
            self.announce_addition(handle, realm, added, sink);
        }
    }

    /// SUBSCRIBED, then the retained events the SUBSCRIBE asked for.
    pub(super) fn answer_subscribe(
        &mut self,
        handle: SessionHandle,
        request: Id,
        subscription: (Id, &str, MatchPolicy),
        (flags, get_retained): (SubscriberFlags, bool),
        sink: &mut impl Sink,
    ) {
        if !self.unconfirmed.is_empty() {
            self.unconfirmed
                .retain(|&entry| entry != (handle, subscription.0));
        }
        let Some(peer) = self.peer(handle) else {
            return;
        };
        sink.send(
            peer,
            &Message::Subscribed {
                request,
                subscription: subscription.0,
            },
        );
        if get_retained {
            self.send_retained(handle, subscription, flags, sink);
        }
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
        let (realm, features) = (joined.realm, joined.features);
        let Some(peer) = self.peer(handle) else {
            return;
        };
        let mut parsed = RequestOptions::parse(options, UNSUPPORTED_PUBLISH);
        let acknowledge = parsed.acknowledge;
        if parsed.passthru_active() && !features.publisher_passthru {
            let text = "PUBLISH in payload passthru mode from a publisher that did not announce payload_passthru_mode";
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
            self.check_concrete_uri(realm, "topic", topic, MatchPolicy::Exact)
        {
            Some(refusal)
        } else if uri::is_reserved(topic) {
            Some((
                INVALID_URI,
                format!(
                    "'{}': topics under 'wamp.' are reserved for the router",
                    uri::shown(topic)
                ),
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
        match self.authorize(handle, topic, Perms::PUBLISH, options) {
            // The role's rule may disclose the publisher, as if it had asked.
            Ok(perms) => parsed.disclose_me |= perms.contains(Perms::DISCLOSE_PUBLISHER),
            Err(Denied::Refused(uri, text)) => {
                if acknowledge {
                    let kind = MessageType::Publish;
                    self.send_error(sink, peer, kind, request, uri, &text);
                }
                return;
            }
            Err(Denied::Pending) => return,
        }
        let publication = self.ids.random_id();
        self.stats.publications += 1;
        let mut scratch = std::mem::take(&mut self.scratch);
        let (events, retained) = match self.identity(handle) {
            Some(publisher) => {
                let publication = Publication {
                    id: publication,
                    topic,
                    publisher: Some(publisher),
                    exclude: parsed.exclude_me.then_some(handle),
                    options: &parsed,
                    raw_options: raw_dict(options),
                    payload,
                };
                let events =
                    self.route_publication(realm, &publication, parsed.retain, &mut scratch, sink);
                let retained = parsed
                    .retain
                    .then(|| self.retained_event(realm, &publication))
                    .flatten();
                (events, retained)
            }
            None => (0, None),
        };
        self.scratch = scratch;
        self.keep_retained(realm, topic, &parsed, retained);
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

    /// An owned copy of a publication with `retain: true`, to deliver to later subscribers that ask for it.
    /// (The router's own meta events have no publisher and are not retained; a publication with
    /// `x_retain_clear` clears the topic's retained event instead of becoming it.)
    pub(super) fn retained_event(
        &self,
        realm: usize,
        publication: &Publication<'_>,
    ) -> Option<Retained> {
        let publisher = publication.publisher?;
        let options = publication.options;
        if options.retain_clear {
            return None;
        }
        let passthru = options.passthru();
        let passthru = (passthru.iter())
            .flat_map(Passthru::fields)
            .map(|(name, value)| (name.to_string(), options::owned(&value)))
            .collect();
        Some(Retained {
            publication: publication.id,
            publisher: (
                publisher.id,
                publisher.authid.into(),
                publisher.authrole.into(),
            ),
            disclosed: options.disclose_me || self.realms[realm].disclose_publisher,
            excluded: publication.exclude.map(|_| publisher.id),
            filter: options.filter().unwrap_or_default().to_value(),
            passthru: Value::Dict(passthru),
            args: publication.payload.args.as_ref().map(options::owned),
            kwargs: publication.payload.kwargs.as_ref().map(options::owned),
        })
    }

    /// After routing a publication with `retain: true`: `event` (its owned copy) becomes the topic's retained
    /// event, or, with `x_retain_clear: true` (MQTT's retained message with an empty payload), the topic's
    /// retained event is forgotten and nothing is kept.
    pub(super) fn keep_retained(
        &mut self,
        realm: usize,
        topic: &str,
        options: &RequestOptions<'_>,
        event: Option<Retained>,
    ) {
        if options.retain && options.retain_clear {
            self.realms[realm].retained.clear(topic);
        } else if let Some(event) = event {
            self.store_retained(realm, topic, event);
        }
    }

    pub(super) fn store_retained(&mut self, realm: usize, topic: &str, event: Retained) {
        match self.realms[realm].retained.retain(topic, event) {
            Some(evicted) => self.stats.retained_evicted += evicted as u64,
            None => {
                self.stats.retained_evicted += 1;
                debug!(
                    topic,
                    "retained event over the realm's byte budget: not kept"
                );
            }
        }
    }

    /// After SUBSCRIBED with `get_retained`: the retained events the subscription matches (oldest first) that the
    /// subscriber would have been eligible for when they were published, with `details.retained`.
    fn send_retained(
        &self,
        handle: SessionHandle,
        (subscription, topic, policy): (Id, &str, MatchPolicy),
        flags: SubscriberFlags,
        sink: &mut impl Sink,
    ) {
        let (Some(joined), Some(peer)) = (self.joined(handle), self.peer(handle)) else {
            return;
        };
        let disclose_publisher = flags.disclose_publisher;
        for (event_topic, event) in self.realms[joined.realm].retained.matching(topic, policy) {
            let admitted = event.excluded != Some(joined.id)
                && (!flags.restricted
                    || self.allowed_at_delivery(handle, event_topic, Perms::SUBSCRIBE))
                && Filter::from_value(&event.filter).admits(
                    joined.id,
                    &joined.authid,
                    &joined.authrole,
                );
            if !admitted {
                continue;
            }
            let mut details = Details::new();
            if policy != MatchPolicy::Exact {
                details.push("topic", Field::Str(event_topic));
            }
            details.extend(&event.passthru);
            if event.disclosed || disclose_publisher {
                let (id, authid, authrole) = &event.publisher;
                let publisher = Identity {
                    id: *id,
                    authid,
                    authrole,
                };
                details.identity(&PUBLISHER_KEYS, &publisher);
            }
            details.push("retained", Field::Bool(true));
            let payload = Payload {
                args: event.args.as_ref().map(Field::Value),
                kwargs: event.kwargs.as_ref().map(Field::Value),
            };
            sink.send(
                peer,
                &Message::Event {
                    subscription,
                    publication: event.publication,
                    details: details.dict(),
                    payload,
                },
            );
        }
    }

    /// Sends a publication to the subscribers of every matching subscription: one EVENT per subscription (pattern
    /// subscriptions get `details.topic`), encoded once per serializer by the sink. Returns the number of events.
    ///
    /// Without black/white lists and with nobody asking for the publisher's identity on its own, the subscription's
    /// subscriber list goes to the sink as it is. Otherwise the admitted subscribers are collected into `scratch`
    /// (reused buffers: no allocation once they have grown), split into those that get the publisher's identity
    /// and the rest.
    /// Also returns the other shards with subscribers of a matching subscription (this shard's own subscribers
    /// are the only ones it sends to).
    pub(super) fn fan_out(
        &self,
        realm: usize,
        publication: &Publication<'_>,
        from_peer: bool,
        scratch: &mut [Vec<Peer>; 2],
        sink: &mut impl Sink,
    ) -> (u64, ShardSet) {
        let realm = &self.realms[realm];
        let disclose = publication.options.disclose_me || realm.disclose_publisher;
        let filter = publication.options.filter();
        let passthru = publication.options.passthru();
        let broker = &realm.broker;
        // A publication that comes from another shard or node skips subscribers still waiting for SUBSCRIBED:
        // it was routed before they were confirmed (one of this shard is delivered, as it always was).
        let unconfirmed: &[(SessionHandle, Id)] = if from_peer { &self.unconfirmed } else { &[] };
        let mut events = 0u64;
        let mut remote = ShardSet::EMPTY;
        broker
            .trie
            .for_each_match(publication.topic, |policy, index| {
                let subscription = &broker.subscriptions[index];
                remote = remote | subscription.remote_shards;
                if subscription.subscribers.is_empty() {
                    return;
                }
                let mut details = Details::new();
                if policy != MatchPolicy::Exact {
                    details.push("topic", Field::Str(publication.topic));
                }
                details.passthru(passthru.as_ref());
                let anonymous = details.len();
                if let Some(publisher) = &publication.publisher {
                    details.identity(&PUBLISHER_KEYS, publisher);
                }
                let split = !disclose && subscription.disclosing > 0;
                let restricted = subscription.restricted > 0;
                let waiting = !unconfirmed.is_empty();
                if filter.is_none() && !split && !restricted && !waiting {
                    let recipients = Recipients {
                        peers: &subscription.subscribers,
                        exclude: publication.exclude,
                    };
                    if !disclose {
                        details.truncate(anonymous);
                    }
                    events +=
                        self.multicast(recipients, subscription.id, publication, &details, sink);
                    return;
                }
                let [told, rest] = scratch;
                told.clear();
                rest.clear();
                for (peer, flags) in subscription.subscribers.iter().zip(&subscription.flags) {
                    if Some(peer.session) == publication.exclude
                        || (waiting && unconfirmed.contains(&(peer.session, subscription.id)))
                        || filter.is_some_and(|filter| !self.admits(&filter, peer.session))
                        || (flags.restricted
                            && !self.allowed_at_delivery(
                                peer.session,
                                publication.topic,
                                Perms::SUBSCRIBE,
                            ))
                    {
                        continue;
                    }
                    if split && flags.disclose_publisher {
                        told.push(*peer);
                    } else {
                        rest.push(*peer);
                    }
                }
                let recipients = |peers| Recipients {
                    peers,
                    exclude: None,
                };
                events += self.multicast(
                    recipients(told),
                    subscription.id,
                    publication,
                    &details,
                    sink,
                );
                if !disclose {
                    details.truncate(anonymous);
                }
                events += self.multicast(
                    recipients(rest),
                    subscription.id,
                    publication,
                    &details,
                    sink,
                );
            });
        (events, remote)
    }

    /// A publication of this shard: to its own subscribers, and once to each other shard with a subscriber of a
    /// matching subscription (to every other shard when the event is to be retained, since each keeps the
    /// retained events). Returns the EVENTs sent here. The payload must be raw values (as decoded, or as stored).
    pub(super) fn route_publication(
        &self,
        realm: usize,
        publication: &Publication<'_>,
        retain: bool,
        scratch: &mut [Vec<Peer>; 2],
        sink: &mut impl Sink,
    ) -> u64 {
        let (events, remote) = self.fan_out(realm, publication, false, scratch, sink);
        let to = if retain { self.others() } else { remote };
        if !to.is_empty() {
            let msg = PeerMessage::Publish {
                realm: realm as u16,
                publication: publication.id,
                topic: publication.topic,
                publisher: publication.publisher.map(|p| Who {
                    id: p.id,
                    authid: p.authid,
                    authrole: p.authrole,
                }),
                disclose: publication.options.disclose_me,
                retain,
                options: publication.raw_options,
                args: publication.payload.args.as_ref().and_then(Field::as_raw),
                kwargs: publication.payload.kwargs.as_ref().and_then(Field::as_raw),
            };
            sink.peer(to, &msg);
        }
        events
    }

    /// One EVENT to `recipients`, if there are any; returns their number.
    fn multicast(
        &self,
        recipients: Recipients<'_>,
        subscription: Id,
        publication: &Publication<'_>,
        details: &Details<'_>,
        sink: &mut impl Sink,
    ) -> u64 {
        let count = recipients.iter().count() as u64;
        if count > 0 {
            let event = Message::Event {
                subscription,
                publication: publication.id,
                details: details.dict(),
                payload: *publication.payload,
            };
            sink.send_many(recipients, &event);
        }
        count
    }

    /// Whether the black/white lists admit the subscriber `session`.
    pub(super) fn admits(&self, filter: &Filter<'_>, session: SessionHandle) -> bool {
        self.joined(session)
            .is_some_and(|joined| filter.admits(joined.id, &joined.authid, &joined.authrole))
    }
}

/// The raw form of a dictionary as decoded (none for dictionaries the router builds).
pub(super) fn raw_dict<'a>(dict: &Dict<'a>) -> Option<RawValue<'a>> {
    match dict {
        Dict::Raw(raw) => Some(*raw),
        _ => None,
    }
}
