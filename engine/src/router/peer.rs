//! Messages from the other shards of the router ([`crate::link`]): the directory of sessions, who subscribes to
//! what, publications for this shard's subscribers, registrations, calls and their answers, acknowledgments.

use super::pubsub::Publication;
use super::*;
use crate::dealer::Invoke;

impl Router {
    /// One message from shard `from` (in the order that shard sent it). `now_ms` as for
    /// [`Router::handle_message`]. A message about something this shard no longer has (a session that just left,
    /// a call that just ended) is dropped and counted.
    pub fn handle_peer(
        &mut self,
        from: ShardId,
        msg: &PeerMessage<'_>,
        now_ms: u64,
        sink: &mut impl Sink,
    ) {
        self.now_ms = now_ms;
        self.stats.peer_messages += 1;
        let realm_of = |realm: u16| Some(realm as usize).filter(|&r| r < self.realms.len());
        let known = match *msg {
            PeerMessage::SessionJoined {
                realm,
                handle,
                who,
                authmethod,
            } => realm_of(realm).map(|realm| {
                // Counted (sessions_per_realm_max); the session itself stays its own shard's business.
                let _ = (from, handle, who, authmethod);
                self.realms[realm].remote_sessions += 1;
            }),
            PeerMessage::SessionLeft { realm, session } => realm_of(realm).map(|realm| {
                let _ = session;
                let count = &mut self.realms[realm].remote_sessions;
                *count = count.saturating_sub(1);
            }),
            PeerMessage::Subscribed {
                realm,
                policy,
                topic,
                session,
                ack,
            } => realm_of(realm).map(|realm| {
                let Router {
                    router_ids,
                    realms,
                    id_seed,
                    now_ms,
                    ..
                } = self;
                let (seed, now_ms) = (*id_seed, *now_ms);
                realms[realm]
                    .broker
                    .add_remote((topic, policy), (from, session), || {
                        let id = subscription_id(seed, (realm, policy, topic), router_ids);
                        (id, now_ms)
                    });
                if ack != 0 {
                    sink.peer(ShardSet::one(from), &PeerMessage::Ack { token: ack });
                }
            }),
            PeerMessage::Unsubscribed {
                realm,
                policy,
                topic,
                session,
            } => realm_of(realm).map(|realm| {
                let broker = &mut self.realms[realm].broker;
                if let Some(deleted) = broker.remove_remote((topic, policy), (from, session)) {
                    self.router_ids.remove(&deleted);
                }
            }),
            PeerMessage::Ack { token } => {
                self.ack(token, sink);
                Some(())
            }
            PeerMessage::Publish {
                realm,
                publication,
                topic,
                publisher,
                disclose,
                retain,
                options,
                args,
                kwargs,
            } => realm_of(realm).map(|realm| {
                let dict = options.map_or(Dict::EMPTY, Dict::Raw);
                let mut parsed = RequestOptions::parse(&dict, &[]);
                parsed.disclose_me = disclose;
                parsed.retain = retain;
                let payload = Payload {
                    args: args.map(Field::Raw),
                    kwargs: kwargs.map(Field::Raw),
                };
                let publication = Publication {
                    id: publication,
                    topic,
                    publisher: publisher.map(|p| Identity {
                        id: p.id,
                        authid: p.authid,
                        authrole: p.authrole,
                    }),
                    exclude: None,
                    options: &parsed,
                    raw_options: options,
                    payload: &payload,
                };
                let mut scratch = std::mem::take(&mut self.scratch);
                let (events, _) = self.fan_out(realm, &publication, true, &mut scratch, sink);
                self.scratch = scratch;
                self.stats.events_sent += events;
                if retain {
                    let event = self.retained_event(realm, &publication);
                    self.keep_retained(realm, topic, &parsed, event);
                }
            }),
            PeerMessage::Register {
                realm,
                policy,
                procedure,
                invoke,
                callee,
                token,
            } => realm_of(realm)
                .zip(Invoke::from_code(invoke))
                .map(|(realm, invoke)| {
                    let request = (callee, token);
                    self.on_peer_register(from, realm, (procedure, policy), invoke, request, sink)
                }),
            PeerMessage::RegisterRefused { token, error, text } => {
                self.on_register_refused(token, (error, text), sink);
                Some(())
            }
            PeerMessage::RegistrationAdded {
                realm,
                registration,
                policy,
                procedure,
                invoke,
                created_ms,
                callee,
                token,
            } => realm_of(realm)
                .zip(Invoke::from_code(invoke))
                .map(|(realm, invoke)| {
                    let key = (registration, procedure, policy);
                    self.on_registration_added(realm, key, invoke, created_ms, callee, token, sink)
                }),
            PeerMessage::Unregister {
                realm,
                registration,
                session,
            } => realm_of(realm)
                .map(|realm| self.on_peer_unregister((from, realm), registration, session, sink)),
            PeerMessage::RegistrationRemoved {
                realm,
                registration,
                session,
            } => {
                realm_of(realm).map(|realm| self.remove_remote_callee(realm, registration, session))
            }
            PeerMessage::Call {
                realm,
                relay,
                caller,
                caller_features,
                callee,
                registration,
                procedure,
                disclose,
                options,
                args,
                kwargs,
            } => realm_of(realm).map(|realm| {
                let payload = Payload {
                    args: args.map(Field::Raw),
                    kwargs: kwargs.map(Field::Raw),
                };
                self.on_peer_call(
                    (from, realm, relay),
                    (caller, caller_features),
                    (callee, registration, procedure),
                    disclose,
                    options,
                    &payload,
                    sink,
                )
            }),
            PeerMessage::CallChunk {
                relay,
                progress,
                args,
                kwargs,
            } => {
                let payload = Payload {
                    args: args.map(Field::Raw),
                    kwargs: kwargs.map(Field::Raw),
                };
                self.on_peer_call_chunk((from, relay), progress, &payload, sink);
                Some(())
            }
            PeerMessage::Cancel { relay, mode } => {
                self.on_peer_cancel((from, relay), Some(mode), sink);
                Some(())
            }
            PeerMessage::CallerGone { relay } => {
                self.on_peer_cancel((from, relay), None, sink);
                Some(())
            }
            PeerMessage::ToCaller {
                relay,
                last,
                progress,
                error,
                text,
                options,
                args,
                kwargs,
            } => {
                let payload = Payload {
                    args: args.map(Field::Raw),
                    kwargs: kwargs.map(Field::Raw),
                };
                let answer = ((last, progress), (error, text), options);
                self.on_to_caller(relay, answer.0, answer.1, answer.2, &payload, sink);
                Some(())
            }
            PeerMessage::Kill {
                handle,
                reason,
                message,
            } => {
                if self.joined(handle).is_some() {
                    self.goodbye_from_router(handle, reason, message, sink);
                }
                Some(())
            }
            PeerMessage::SessionQuery {
                token,
                realm,
                query,
            } => {
                realm_of(realm).map(|realm| self.on_session_query(from, token, realm, query, sink))
            }
            PeerMessage::SessionAnswer {
                token,
                answer,
                partial,
            } => self
                .on_session_answer(token, answer, partial, sink)
                .then_some(()),
            // Only a backplane takes testaments.
            PeerMessage::Testaments { .. } => None,
        };
        if known.is_none() {
            self.stats.peer_messages_dropped += 1;
        }
        self.settle(sink);
        self.check_invariants();
    }

    /// One acknowledgment of the change `token`: when every shard has acknowledged it, the client is told.
    pub(super) fn ack(&mut self, token: u64, sink: &mut impl Sink) {
        let Some(pending) = self.pending_acks.get_mut(&token) else {
            return;
        };
        pending.remaining = pending.remaining.saturating_sub(1);
        if pending.remaining > 0 {
            return;
        }
        let Some(PendingAck { then, .. }) = self.pending_acks.remove(&token) else {
            return;
        };
        match then {
            AfterAck::Subscribed {
                handle,
                request,
                subscription,
                topic,
                policy,
                flags,
                get_retained,
            } => {
                let answer = (subscription, &*topic, policy);
                self.answer_subscribe(handle, request, answer, (flags, get_retained), sink);
            }
            AfterAck::Registered {
                handle,
                request,
                registration,
                ..
            } => {
                if let (Some(peer), Some(registration)) = (self.peer(handle), registration) {
                    let registered = Message::Registered {
                        request,
                        registration,
                    };
                    sink.send(peer, &registered);
                }
            }
        }
    }
}
