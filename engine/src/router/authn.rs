//! Joining a realm: HELLO, the choice of authentication method, CHALLENGE/AUTHENTICATE, WELCOME, and the
//! authentication timeout. The credentials themselves are checked in [`crate::auth`].

use super::*;
use crate::auth::{self, AuthConfig, Choice, Method, Pending};
use crate::broker::SubscriberFlags;
use crate::session::Authenticating;

impl Router {
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
        if let Some(text) = self.realm_full(realm_index) {
            return self.abort(handle, NOT_AUTHORIZED, &text, sink);
        }
        let roles = details.get("roles").and_then(|roles| roles.as_raw());
        let announced =
            roles.is_some_and(|roles| roles.dict().is_some_and(|mut r| r.next().is_some()));
        if !announced {
            let text = "HELLO.Details.roles must announce the client's roles";
            return self.abort(handle, PROTOCOL_VIOLATION, text, sink);
        }
        let authid = match details.get("authid") {
            None => None,
            Some(value) => match value.as_str() {
                Some(authid) => Some(authid),
                None => {
                    let text = "HELLO.Details.authid must be a string";
                    return self.abort(handle, PROTOCOL_VIOLATION, text, sink);
                }
            },
        };
        let pubkey = details
            .get("authextra")
            .and_then(|extra| extra.as_raw())
            .and_then(|extra| extra.get("pubkey"))
            .and_then(|key| key.as_str())
            .and_then(|key| auth::parse_pubkey(&key));
        let choice = match details.get("authmethods") {
            // No authmethods: the client expects anonymous.
            None => self.realms[realm_index].principals.choose(
                [Method::Anonymous].into_iter(),
                authid.as_deref(),
                pubkey,
            ),
            Some(methods) => {
                let Some(offered) = methods.as_raw().and_then(|m| m.list()) else {
                    let text = "HELLO.Details.authmethods must be a list";
                    return self.abort(handle, PROTOCOL_VIOLATION, text, sink);
                };
                let offered =
                    offered.filter_map(|m| m.as_str().and_then(|name| Method::from_name(&name)));
                self.realms[realm_index]
                    .principals
                    .choose(offered, authid.as_deref(), pubkey)
            }
        };
        let features = ClientFeatures::from_roles(roles);
        match choice {
            None => {
                let text = format!(
                    "none of the offered authentication methods is available (realm '{realm}' accepts: {})",
                    self.realms[realm_index].principals.available()
                );
                self.stats.auth_failures += 1;
                self.abort(handle, NO_AUTH_METHOD, &text, sink)
            }
            Some(Choice::Anonymous { role }) => {
                let id = self.new_session_id();
                let authid = super::anonymous_authid(id);
                self.join(
                    handle,
                    realm_index,
                    id,
                    (&authid, &role, Method::Anonymous),
                    features,
                    sink,
                );
            }
            Some(Choice::Challenge { method, principal }) => self.challenge(
                handle,
                realm_index,
                method,
                principal,
                authid.as_deref(),
                features,
                sink,
            ),
        }
    }

    /// Why a realm takes no more sessions, if it does not.
    pub(super) fn realm_full(&mut self, realm: usize) -> Option<String> {
        let realm = &self.realms[realm];
        if realm.sessions + realm.remote_sessions < self.limits.sessions_per_realm_max {
            return None;
        }
        self.stats.limits_hit += 1;
        Some(format!(
            "realm '{}' has reached its limit of {} sessions",
            realm.name, self.limits.sessions_per_realm_max
        ))
    }

    /// A session ID no session of any shard has (unique by construction, see [`SessionIds`]).
    pub(super) fn new_session_id(&mut self) -> Id {
        self.session_id_gen.next_id()
    }

    /// Sends CHALLENGE and waits for AUTHENTICATE (until the authentication timeout).
    #[allow(clippy::too_many_arguments)]
    fn challenge(
        &mut self,
        handle: SessionHandle,
        realm: usize,
        method: Method,
        principal: Option<usize>,
        asked: Option<&str>,
        features: ClientFeatures,
        sink: &mut impl Sink,
    ) {
        let Some(peer) = self.peer(handle) else {
            return;
        };
        let id = self.new_session_id();
        let nonce = self.nonces.next();
        let principals = &self.realms[realm].principals;
        let authid = principals.authid(principal, asked);
        let (text, challenge): (String, Box<[u8]>) = match method {
            Method::WampCra => {
                let unix_ms = self.epoch_unix_ms.saturating_add(self.now_ms);
                let text = auth::wampcra_challenge(authid, &nonce[..16], unix_ms, id.get());
                let bytes = text.as_bytes().into();
                (text, bytes)
            }
            Method::Cryptosign => (auth::hex(&nonce), nonce.into()),
            Method::Ticket | Method::Anonymous | Method::Trusted => (String::new(), Box::default()),
        };
        let salt = match method {
            Method::WampCra => principals.salt(principal, authid),
            _ => None,
        };
        let mut extra = Details::new();
        if !text.is_empty() {
            extra.push("challenge", Field::Str(&text));
        }
        if let Some(salt) = &salt {
            extra.push("salt", Field::Str(&salt.salt));
            extra.push("keylen", Field::UInt(salt.keylen.into()));
            extra.push("iterations", Field::UInt(salt.iterations.into()));
        }
        sink.send(
            peer,
            &Message::Challenge {
                auth_method: Cow::Borrowed(method.name()),
                extra: extra.dict(),
            },
        );
        let deadline = self.now_ms.saturating_add(self.limits.auth_timeout_ms);
        let pending = Pending {
            method,
            principal,
            authid: authid.into(),
            challenge,
        };
        debug!(conn = peer.conn.0, method = method.name(), authid = %pending.authid, "challenge sent");
        if let Some(session) = self.session_mut(handle) {
            session.phase = Phase::Authenticating(Box::new(Authenticating {
                realm,
                id,
                features,
                pending,
                deadline,
            }));
        }
        self.auth_deadlines.push_back((deadline, handle));
        if self.auth_deadlines.len() > 2 * self.sessions.len() + 64 {
            let sessions = &self.sessions;
            self.auth_deadlines.retain(|(deadline, handle)| {
                sessions.get(handle.index as usize).is_some_and(|s| {
                    s.generation == handle.generation
                        && matches!(&s.phase, Phase::Authenticating(a) if a.deadline == *deadline)
                })
            });
        }
    }

    /// A message between CHALLENGE and WELCOME: AUTHENTICATE (or ABORT).
    pub(super) fn on_authenticating_message(
        &mut self,
        handle: SessionHandle,
        msg: &Message<'_>,
        sink: &mut impl Sink,
    ) {
        let signature = match msg {
            Message::Authenticate { signature, .. } => signature,
            Message::Abort { .. } => return self.close(handle, sink),
            other => {
                let text = format!(
                    "{} received while authenticating (expected AUTHENTICATE)",
                    other.message_type().name()
                );
                return self.abort(handle, PROTOCOL_VIOLATION, &text, sink);
            }
        };
        let Some(session) = self.session_mut(handle) else {
            return;
        };
        let Phase::Authenticating(attempt) =
            std::mem::replace(&mut session.phase, Phase::Handshake)
        else {
            return;
        };
        let realm = &self.realms[attempt.realm];
        let Some(who) = realm
            .principals
            .verify(&attempt.pending, signature, &self.auth_key)
        else {
            info!(
                realm = %realm.name,
                authid = %attempt.pending.authid,
                method = attempt.pending.method.name(),
                "authentication failed"
            );
            self.stats.auth_failures += 1;
            return self.abort(handle, AUTHENTICATION_FAILED, "authentication failed", sink);
        };
        let (authid, role) = (String::from(who.authid), String::from(who.role));
        if let Some(text) = self.realm_full(attempt.realm) {
            return self.abort(handle, NOT_AUTHORIZED, &text, sink);
        }
        // The ID the challenge announced; IDs come from a permutation of a counter, so it is nobody else's.
        let id = attempt.id;
        self.join(
            handle,
            attempt.realm,
            id,
            (&authid, &role, attempt.pending.method),
            attempt.features,
            sink,
        );
    }

    /// Replaces the principals, roles and anonymous access of realm `realm` (a configuration reload). Returns
    /// `None` for a realm this router does not have.
    ///
    /// - Joined sessions keep their authid and authrole. From now on they may do what the new role of that name
    ///   allows: nothing if the realm no longer has that role, everything if the realm no longer has roles.
    /// - Authorization decisions remembered for the old roles go with them.
    /// - Authentication attempts in progress in the realm are aborted with `wamp.error.authentication_failed`:
    ///   their challenge was made for the old principals. The client may authenticate again.
    pub fn handle_auth_reload(
        &mut self,
        realm: &str,
        auth: &AuthConfig,
        sink: &mut impl Sink,
    ) -> Option<AuthReload> {
        let &index = self.realm_index.get(realm)?;
        let attempts: Vec<SessionHandle> = (self.sessions.iter())
            .filter(|(_, s)| matches!(&s.phase, Phase::Authenticating(a) if a.realm == index))
            .map(|(_, s)| s.peer.session)
            .collect();
        let text = "the router's authentication configuration changed: authenticate again";
        for &handle in &attempts {
            self.abort(handle, AUTHENTICATION_FAILED, text, sink);
        }
        let realm = &mut self.realms[index];
        realm.principals = Principals::new(auth, &self.auth_key);
        realm.authz = Authorizer::new(auth.roles.as_deref());
        let mut report = AuthReload {
            attempts_aborted: attempts.len(),
            ..AuthReload::default()
        };
        for (_, session) in self.sessions.iter_mut() {
            let Phase::Established(joined) = &mut session.phase else {
                continue;
            };
            if joined.realm != index {
                continue;
            }
            joined.role = realm.authz.role(&joined.authrole).unwrap_or_else(|| {
                report.sessions_without_role += 1;
                RoleIndex::NONE
            });
            report.sessions += 1;
        }
        report.memberships_restricted = self.reclassify_members(index);
        Some(report)
    }

    /// After new roles: each subscriber and callee of `realm` is restricted (checked per URI at delivery) unless
    /// its role may subscribe to / register everything its pattern can reach, and its request to be told
    /// publishers or callers is dropped unless its role allows that everywhere. Returns the number of restricted
    /// memberships.
    fn reclassify_members(&mut self, realm: usize) -> usize {
        type Member = (SessionHandle, Id, RoleIndex, Vec<u32>, Vec<u32>);
        let members: Vec<Member> = (self.sessions.iter())
            .filter_map(|(_, session)| {
                let joined = session.joined().filter(|joined| joined.realm == realm)?;
                Some((
                    session.peer.session,
                    joined.id,
                    joined.role,
                    joined.subscriptions.to_vec(),
                    joined.registrations.to_vec(),
                ))
            })
            .collect();
        let role_names = &self.role_names;
        let Realm {
            broker,
            dealer,
            authz,
            ..
        } = &mut self.realms[realm];
        let mut restricted = 0;
        let mut pending_remote = Vec::new();
        // Callees of other shards: their roles by name in the new roles (their own shard reclassifies the
        // rest of them; this copy decides which calls they may take from here).
        for (index, registration) in dealer.registrations.iter() {
            let remote: Vec<(Id, RoleIndex, bool)> = (registration.callees.iter())
                .filter(|callee| callee.local().is_none())
                .map(|callee| {
                    let name = match callee.at {
                        crate::dealer::CalleeAt::Remote { authrole, .. } => {
                            role_names.get(authrole as usize)
                        }
                        crate::dealer::CalleeAt::Local(_) => None,
                    };
                    let role = (name.and_then(|name| authz.role(name))).unwrap_or(RoleIndex::NONE);
                    let reach = authz.reach(role, &registration.procedure, registration.policy);
                    (
                        callee.session,
                        role,
                        !reach.everywhere.contains(Perms::REGISTER),
                    )
                })
                .collect();
            for (session, role, is_restricted) in remote {
                pending_remote.push((index, session, role, is_restricted));
            }
        }
        for (index, session, role, is_restricted) in pending_remote {
            dealer.set_restricted(index, session, role, is_restricted);
        }
        for (handle, session, role, subscriptions, registrations) in members {
            for index in subscriptions {
                let Some(subscription) = broker.subscriptions.get_mut(index as usize) else {
                    continue;
                };
                let reach = authz.reach(role, &subscription.topic, subscription.policy);
                let Some(position) = subscription.position(handle) else {
                    continue;
                };
                let flags = SubscriberFlags {
                    disclose_publisher: subscription.flags[position].disclose_publisher
                        && reach.everywhere.contains(Perms::IDENTIFY_PUBLISHER),
                    restricted: !reach.everywhere.contains(Perms::SUBSCRIBE),
                };
                restricted += usize::from(flags.restricted);
                subscription.update(handle, flags);
            }
            for index in registrations {
                let index = index as usize;
                let Some(registration) = dealer.registrations.get(index) else {
                    continue;
                };
                let reach = authz.reach(role, &registration.procedure, registration.policy);
                let is_restricted = !reach.everywhere.contains(Perms::REGISTER);
                restricted += usize::from(is_restricted);
                dealer.set_restricted(index, session, role, is_restricted);
                if !reach.everywhere.contains(Perms::IDENTIFY_CALLER) {
                    dealer.stop_disclosing(index, session);
                }
            }
        }
        restricted
    }

    /// Ends the authentication attempts whose time is up: ABORT `wamp.error.authentication_failed`.
    pub(super) fn expire_authentications(&mut self, now_ms: u64, sink: &mut impl Sink) {
        while let Some(&(deadline, handle)) = self.auth_deadlines.front() {
            if deadline > now_ms {
                break;
            }
            self.auth_deadlines.pop_front();
            let current = self.session(handle).is_some_and(
                |s| matches!(&s.phase, Phase::Authenticating(a) if a.deadline == deadline),
            );
            if current {
                self.stats.auth_failures += 1;
                let text = format!(
                    "no AUTHENTICATE within {} ms of the CHALLENGE",
                    self.limits.auth_timeout_ms
                );
                self.abort(handle, AUTHENTICATION_FAILED, &text, sink);
            }
        }
    }

    /// Joins the realm as (authid, authrole, authmethod) and sends WELCOME.
    pub(super) fn join(
        &mut self,
        handle: SessionHandle,
        realm_index: usize,
        id: Id,
        (authid, authrole, authmethod): (&str, &str, Method),
        features: ClientFeatures,
        sink: &mut impl Sink,
    ) {
        let Some(role) = self.realms[realm_index].authz.role(authrole) else {
            let text = format!(
                "role '{authrole}' has no permissions in realm '{}'",
                self.realms[realm_index].name
            );
            return self.abort(handle, NOT_AUTHORIZED, &text, sink);
        };
        let shared_role = self.intern(authrole);
        let Some(session) = self.session_mut(handle) else {
            return;
        };
        session.phase = Phase::Established(Joined {
            id,
            realm: realm_index,
            authid: authid.into(),
            authrole: shared_role,
            authmethod,
            role,
            subscriptions: Default::default(),
            registrations: Default::default(),
            calls_as_caller: None,
            calls_as_callee: None,
            next_invocation: Id::FIRST,
            calls_pending: 0,
            features,
            uri_bytes: 0,
            extras: None,
        });
        let peer = session.peer;
        self.realms[realm_index].sessions += 1;
        self.stats.sessions_joined += 1;
        self.stats.sessions_active += 1;
        let realm_name = &self.realms[realm_index].name;
        debug!(
            session = id.get(),
            realm = %realm_name,
            authid,
            authrole,
            authmethod = authmethod.name(),
            conn = peer.conn.0,
            "session joined"
        );
        let details = [
            ("realm", Field::Str(realm_name)),
            ("authid", Field::Str(authid)),
            ("authrole", Field::Str(authrole)),
            ("authmethod", Field::Str(authmethod.name())),
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
        self.broadcast(
            &PeerMessage::SessionJoined {
                realm: realm_index as u16,
                handle,
                who: crate::link::Who {
                    id,
                    authid,
                    authrole,
                },
                authmethod: authmethod.name(),
            },
            sink,
        );
        if self.meta_wanted(realm_index) {
            if let Some(details) = self.joined(handle).map(session_details) {
                let args = [Field::Value(&details)];
                self.publish_meta(realm_index, "wamp.session.on_join", &args, sink);
            }
        }
    }
}
