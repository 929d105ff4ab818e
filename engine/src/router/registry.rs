//! Registrations across shards. Each (realm, match policy, procedure) has an owner shard, which alone decides who
//! may register it (so two REGISTERs of one `single` procedure on two shards never both succeed, and one invoke
//! policy holds), assigns the registration's ID and tells every shard. Every shard keeps a copy of every
//! registration with its callees, so a CALL is routed where it arrives. REGISTERED goes out once every shard
//! has installed the registration: no CALL that follows it can miss the new callee.

use super::*;
use crate::dealer::CalleeAt;
use crate::link::RemoteCallee;

/// An owner's refusal: (error URI, text).
type Refusal = (&'static str, String);

impl Router {
    /// The shard that decides registrations of (policy, procedure) in `realm`.
    pub(super) fn owner_of(&self, realm: usize, policy: MatchPolicy, procedure: &str) -> ShardId {
        // In a cluster the backplane decides every registration, for the whole cluster.
        if let Some(backplane) = self.backplane {
            return backplane;
        }
        if self.shards == 1 {
            return self.shard;
        }
        // FNV-1a: the owner only spreads the deciding work; which shard it is matters to no one else.
        let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ realm as u64 ^ (policy as u64) << 8;
        for &b in procedure.as_bytes() {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        (hash % self.shards as u64) as ShardId
    }

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
        let refuse = |router: &mut Router, sink: &mut _, uri: &str, text: &str| {
            router.send_error(sink, peer, MessageType::Register, request, uri, text)
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
                return refuse(self, sink, INVALID_URI, &text);
            }
            Ok(policy) => policy,
            Err((uri, text)) => return refuse(self, sink, uri, &text),
        };
        let disclose_caller = options
            .get("disclose_caller")
            .is_some_and(|value| value.as_bool() == Some(true));
        let identify = disclose_caller.then_some(Perms::IDENTIFY_CALLER);
        let restricted = match self.authorize_pattern(
            handle,
            (procedure, policy),
            Perms::REGISTER,
            identify,
            options,
        ) {
            Ok(restricted) => restricted,
            Err(Denied::Refused(uri, text)) => return refuse(self, sink, uri, &text),
            Err(Denied::Pending) => return,
        };
        let invoke = match options.get("invoke") {
            None => Invoke::Single,
            Some(value) => match value.as_str().as_deref().and_then(Invoke::from_option) {
                Some(invoke) => invoke,
                None => {
                    let text = "option 'invoke' must be single, roundrobin, random, first or last";
                    return refuse(self, sink, OPTION_NOT_ALLOWED, text);
                }
            },
        };
        let Some(joined) = self.joined(handle) else {
            return;
        };
        let (session, role) = (joined.id, joined.role);
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
            return refuse(self, sink, LIMIT_EXCEEDED, &text);
        }
        // The session's budget is charged now, and refunded if the owner refuses.
        let remote_owner = self.owner_of(realm, policy, procedure) != self.shard;
        if let Some(joined) = self.session_mut(handle).and_then(Session::joined_mut) {
            joined.uri_bytes += footprint;
            if remote_owner {
                joined.extras_mut().uri_bytes_pending += footprint;
            }
        }
        let callee = Callee {
            at: CalleeAt::Local(peer),
            session,
            disclose_caller,
            restricted,
            role,
        };
        let owner = self.owner_of(realm, policy, procedure);
        if owner != self.shard {
            let token = self.token();
            let then = AfterAck::Registered {
                handle,
                request,
                registration: None,
                footprint,
            };
            // The owner's ack, every other shard's, and this shard's own install.
            let remaining = self.others().len() + 1;
            self.pending_acks
                .insert(token, PendingAck { remaining, then });
            let authrole = self.joined(handle).map_or("", |joined| &*joined.authrole);
            let msg = PeerMessage::Register {
                realm: realm as u16,
                policy,
                procedure,
                invoke: invoke.code(),
                callee: RemoteCallee {
                    shard: self.shard,
                    handle,
                    session,
                    authrole,
                    disclose_caller,
                },
                token,
            };
            sink.peer(ShardSet::one(owner), &msg);
            return;
        }
        let (index, created) =
            match self.decide_registration(realm, (procedure, policy), invoke, callee) {
                Ok(decided) => decided,
                Err((uri, text)) => {
                    self.refund(handle, footprint, false);
                    return refuse(self, sink, uri, &text);
                }
            };
        let id = self.realms[realm].dealer.registrations[index].id;
        if let Some(joined) = self.session_mut(handle).and_then(Session::joined_mut) {
            joined.registrations.push(index as u32);
        }
        if !self.linked() {
            sink.send(
                peer,
                &Message::Registered {
                    request,
                    registration: id,
                },
            );
        } else {
            let token = self.token();
            let then = AfterAck::Registered {
                handle,
                request,
                registration: Some(id),
                footprint: 0,
            };
            let remaining = self.others().len();
            self.pending_acks
                .insert(token, PendingAck { remaining, then });
            self.tell_registration(realm, index, session, token, sink);
        }
        let added = (Membership::Registration, index, created);
        self.announce_addition(handle, realm, added, sink);
    }

    /// The owner's decision on a REGISTER: the callee joins the registration of (procedure, policy), which is
    /// created (with a new ID) if there is none. Returns its index and whether it was created.
    fn decide_registration(
        &mut self,
        realm: usize,
        (procedure, policy): (&str, MatchPolicy),
        invoke: Invoke,
        callee: Callee,
    ) -> Result<(usize, bool), Refusal> {
        let (ids, router_ids) = (&mut self.ids, &mut self.router_ids);
        let outcome = self.realms[realm].dealer.register(
            procedure,
            policy,
            invoke,
            callee,
            self.now_ms,
            || new_router_id(ids, router_ids),
        );
        match outcome {
            Registered::Created(index) => Ok((index, true)),
            Registered::Joined(index) => Ok((index, false)),
            Registered::Exists => Err((
                PROCEDURE_ALREADY_EXISTS,
                format!(
                    "procedure '{}' (match '{}') is already registered",
                    uri::shown(procedure),
                    policy.name()
                ),
            )),
            Registered::DifferentPolicy(existing) => Err((
                PROCEDURE_EXISTS_WITH_DIFFERENT_INVOCATION_POLICY,
                format!(
                    "procedure '{}' is registered with invocation policy '{}', not '{}'",
                    uri::shown(procedure),
                    existing.name(),
                    invoke.name()
                ),
            )),
        }
    }

    /// The owner tells every other shard that `session` is a callee of registration `index` (`token`: what they
    /// ack to the callee's shard).
    fn tell_registration(
        &self,
        realm: usize,
        index: usize,
        session: Id,
        token: u64,
        sink: &mut impl Sink,
    ) {
        let registration = &self.realms[realm].dealer.registrations[index];
        let Some(callee) = registration.callees.iter().find(|c| c.session == session) else {
            return;
        };
        let (shard, handle, authrole) = match callee.at {
            CalleeAt::Local(peer) => (
                self.shard,
                peer.session,
                self.joined(peer.session)
                    .map_or("", |joined| &*joined.authrole),
            ),
            CalleeAt::Remote {
                shard,
                handle,
                authrole,
            } => (shard, handle, self.role_name(authrole)),
        };
        let msg = PeerMessage::RegistrationAdded {
            realm: realm as u16,
            registration: registration.id,
            policy: registration.policy,
            procedure: &registration.procedure,
            invoke: registration.invoke.code(),
            created_ms: registration.created_ms,
            callee: RemoteCallee {
                shard,
                handle,
                session,
                authrole,
                disclose_caller: callee.disclose_caller,
            },
            token,
        };
        self.broadcast(&msg, sink);
    }

    /// Gives back what a REGISTER charged to the session's budget (`pending`: it waited for another shard).
    fn refund(&mut self, handle: SessionHandle, footprint: usize, pending: bool) {
        if let Some(joined) = self.session_mut(handle).and_then(Session::joined_mut) {
            joined.uri_bytes -= footprint;
            if pending {
                joined.extras_mut().uri_bytes_pending -= footprint;
            }
        }
    }

    /// Removes callee (`handle`, `session`) from registration `index` (UNREGISTER, or the session leaves) and
    /// tells the owner, which tells the other shards. Returns the registration's ID if that deleted it here.
    pub(super) fn unregister_callee(
        &mut self,
        realm: usize,
        index: usize,
        (_handle, session): (SessionHandle, Id),
        sink: &mut impl Sink,
    ) -> Option<Id> {
        let registration = self.realms[realm].dealer.registrations.get(index)?;
        let (id, policy) = (registration.id, registration.policy);
        let owner = self.owner_of(realm, policy, &registration.procedure);
        let deleted = self.realms[realm].dealer.unregister(index, session);
        if self.linked() {
            let msg = if owner == self.shard {
                PeerMessage::RegistrationRemoved {
                    realm: realm as u16,
                    registration: id,
                    session,
                }
            } else {
                PeerMessage::Unregister {
                    realm: realm as u16,
                    registration: id,
                    session,
                }
            };
            let to = if owner == self.shard {
                self.others()
            } else {
                ShardSet::one(owner)
            };
            sink.peer(to, &msg);
        }
        deleted
    }

    // ---------------------------------------------------------------------------------------------------------
    // From other shards

    /// At the owner: another shard's callee asks to register.
    pub(super) fn on_peer_register(
        &mut self,
        from: ShardId,
        realm: usize,
        (procedure, policy): (&str, MatchPolicy),
        invoke: Invoke,
        (remote, token): (RemoteCallee<'_>, u64),
        sink: &mut impl Sink,
    ) {
        let callee = self.remote_callee(realm, (procedure, policy), &remote);
        match self.decide_registration(realm, (procedure, policy), invoke, callee) {
            Err((error, text)) => {
                let msg = PeerMessage::RegisterRefused {
                    token,
                    error,
                    text: &text,
                };
                sink.peer(ShardSet::one(from), &msg);
            }
            Ok((index, _)) => {
                sink.peer(ShardSet::one(from), &PeerMessage::Ack { token });
                self.tell_registration(realm, index, remote.session, token, sink);
            }
        }
    }

    /// A callee of another shard as this shard's copy of a registration holds it: with its role in this shard's
    /// copy of the roles, and restricted if that role may not register everything the registration reaches.
    fn remote_callee(
        &mut self,
        realm: usize,
        (procedure, policy): (&str, MatchPolicy),
        remote: &RemoteCallee<'_>,
    ) -> Callee {
        let authrole = self.role_name_id(remote.authrole);
        let authz = &self.realms[realm].authz;
        let role = authz.role(remote.authrole).unwrap_or(RoleIndex::NONE);
        let restricted = !authz
            .reach(role, procedure, policy)
            .everywhere
            .contains(Perms::REGISTER);
        Callee {
            at: CalleeAt::Remote {
                shard: remote.shard,
                handle: remote.handle,
                authrole,
            },
            session: remote.session,
            disclose_caller: remote.disclose_caller,
            restricted,
            role,
        }
    }

    /// The owner decided: `callee` is a callee of registration `id`. The callee's own shard completes its
    /// REGISTER; every other shard acks the token to it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_registration_added(
        &mut self,
        realm: usize,
        (id, procedure, policy): (Id, &str, MatchPolicy),
        invoke: Invoke,
        created_ms: u64,
        remote: RemoteCallee<'_>,
        token: u64,
        sink: &mut impl Sink,
    ) {
        if remote.shard != self.shard {
            let callee = self.remote_callee(realm, (procedure, policy), &remote);
            let (_, created) = self.realms[realm].dealer.install(
                (id, procedure, policy),
                invoke,
                created_ms,
                callee,
            );
            if created {
                self.router_ids.insert(id);
            }
            if token != 0 {
                sink.peer(ShardSet::one(remote.shard), &PeerMessage::Ack { token });
            }
            return;
        }
        // The callee is ours: it joins the registration unless it left meanwhile (then the owner forgets it).
        let alive = self
            .joined(remote.handle)
            .filter(|joined| joined.id == remote.session && joined.realm == realm)
            .map(|joined| joined.role);
        let (Some(role), Some(peer)) = (alive, self.peer(remote.handle)) else {
            let owner = self.owner_of(realm, policy, procedure);
            let msg = PeerMessage::Unregister {
                realm: realm as u16,
                registration: id,
                session: remote.session,
            };
            sink.peer(ShardSet::one(owner), &msg);
            self.ack(token, sink);
            return;
        };
        let restricted = !self.realms[realm]
            .authz
            .reach(role, procedure, policy)
            .everywhere
            .contains(Perms::REGISTER);
        let callee = Callee {
            at: CalleeAt::Local(peer),
            session: remote.session,
            disclose_caller: remote.disclose_caller,
            restricted,
            role,
        };
        let (index, created) =
            self.realms[realm]
                .dealer
                .install((id, procedure, policy), invoke, created_ms, callee);
        if created {
            self.router_ids.insert(id);
        }
        let footprint = uri::footprint(procedure, policy);
        if let Some(joined) = self
            .session_mut(remote.handle)
            .and_then(Session::joined_mut)
        {
            if !joined.registrations.contains(&(index as u32)) {
                joined.registrations.push(index as u32);
                let extras = joined.extras_mut();
                extras.uri_bytes_pending = extras.uri_bytes_pending.saturating_sub(footprint);
            }
        }
        if let Some(PendingAck {
            then: AfterAck::Registered { registration, .. },
            ..
        }) = self.pending_acks.get_mut(&token)
        {
            *registration = Some(id);
        }
        let added = (Membership::Registration, index, created);
        self.announce_addition(remote.handle, realm, added, sink);
        self.ack(token, sink);
    }

    /// The owner refused a REGISTER of one of this shard's sessions.
    pub(super) fn on_register_refused(
        &mut self,
        token: u64,
        (error, text): (&str, &str),
        sink: &mut impl Sink,
    ) {
        let Some(PendingAck {
            then:
                AfterAck::Registered {
                    handle,
                    request,
                    footprint,
                    ..
                },
            ..
        }) = self.pending_acks.remove(&token)
        else {
            return;
        };
        self.refund(handle, footprint, true);
        if let Some(peer) = self.peer(handle) {
            self.send_error(sink, peer, MessageType::Register, request, error, text);
        }
    }

    /// At the owner: a callee of another shard left registration `id`; the other shards are told.
    pub(super) fn on_peer_unregister(
        &mut self,
        (from, realm): (ShardId, usize),
        id: Id,
        session: Id,
        sink: &mut impl Sink,
    ) {
        self.remove_remote_callee(realm, id, session);
        let msg = PeerMessage::RegistrationRemoved {
            realm: realm as u16,
            registration: id,
            session,
        };
        let mut to = self.others();
        to.remove(from);
        if !to.is_empty() {
            sink.peer(to, &msg);
        }
    }

    /// Removes `session` from this shard's copy of registration `id`.
    pub(super) fn remove_remote_callee(&mut self, realm: usize, id: Id, session: Id) {
        let dealer = &mut self.realms[realm].dealer;
        if let Some(&index) = dealer.by_id.get(&id) {
            if let Some(deleted) = dealer.unregister(index, session) {
                self.router_ids.remove(&deleted);
            }
        }
    }
}
