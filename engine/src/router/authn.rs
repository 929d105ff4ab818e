//! Joining a realm: HELLO, the choice of authentication method, CHALLENGE/AUTHENTICATE, WELCOME, dynamic
//! authenticators, and the authentication timeout. The credentials themselves are checked in [`crate::auth`] and
//! [`crate::scram`]; what an authenticator answers is read in [`crate::dynamic`].
//!
//! A dynamic authenticator is asked, as crossbar asks it: at HELLO for `anonymous` (it decides), `wampcra`,
//! `cryptosign` and SCRAM (it provides the credential the router then challenges the client with), and after
//! AUTHENTICATE for `ticket` (it checks the ticket). Meanwhile the attempt waits in [`Stage::Asking`], bounded by
//! `auth_timeout_ms` like any attempt, and by the authenticator's own timeout.

use kreisel_codec::Serializer;

use super::dynamic::{Outcome, Purpose};
use super::*;
use crate::auth::{self, AuthConfig, Choice, Method, Pending};
use crate::broker::SubscriberFlags;
use crate::dynamic::{Assigned, Credential};
use crate::scram;
use crate::session::{Authenticating, HelloKept, Stage};

/// What the router keeps of a HELLO for the rest of an attempt.
struct Hello<'a> {
    authid: Option<&'a str>,
    authrole: Option<&'a str>,
    /// `authextra`, when it is a dictionary.
    authextra: Option<RawValue<'a>>,
    /// WAMP-SCRAM: `authextra.nonce` and `authextra.channel_binding`.
    nonce: Option<&'a str>,
    channel_binding: Option<&'a str>,
}

impl Hello<'_> {
    fn kept(&self) -> Box<HelloKept> {
        Box::new(HelloKept {
            authid: self.authid.map(Into::into),
            authrole: self.authrole.map(Into::into),
            authextra: self.authextra.map(|extra| {
                let mut bytes = Vec::new();
                kreisel_codec::transcode(extra, Serializer::MsgPack, &mut bytes);
                bytes.into()
            }),
            nonce: self.nonce.map(Into::into),
            channel_binding: self.channel_binding.map(Into::into),
        })
    }
}

/// A string or null (absent) value of a dictionary; `Err` for another type.
fn optional_str<'a>(dict: Option<&RawValue<'a>>, key: &str) -> Result<Option<Cow<'a, str>>, ()> {
    match dict.and_then(|dict| dict.get(key)) {
        None => Ok(None),
        Some(value) if value.is_null() => Ok(None),
        Some(value) => value.as_str().map(Some).ok_or(()),
    }
}

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
        let authrole = details.get("authrole").and_then(|value| value.as_str());
        let authextra = details
            .get("authextra")
            .and_then(|extra| extra.as_raw())
            .filter(|extra| extra.kind() == Kind::Dict);
        let pubkey = authextra
            .and_then(|extra| extra.get("pubkey"))
            .and_then(|key| key.as_str())
            .and_then(|key| auth::parse_pubkey(&key));
        let (Ok(nonce), Ok(channel_binding)) = (
            optional_str(authextra.as_ref(), "nonce"),
            optional_str(authextra.as_ref(), "channel_binding"),
        ) else {
            let text = "HELLO.Details.authextra.nonce and channel_binding must be strings";
            return self.abort(handle, PROTOCOL_VIOLATION, text, sink);
        };
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
        let hello = Hello {
            authid: authid.as_deref(),
            authrole: authrole.as_deref(),
            authextra,
            nonce: nonce.as_deref(),
            channel_binding: channel_binding.as_deref(),
        };
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
                    (&authid, &role, Method::Anonymous, Provider::Static),
                    features,
                    None,
                    sink,
                );
            }
            Some(Choice::Challenge { method, principal }) => {
                let authid = self.realms[realm_index]
                    .principals
                    .authid(principal, hello.authid)
                    .to_owned();
                let attempt = Attempt {
                    realm: realm_index,
                    method,
                    principal,
                    authid: &authid,
                    dynamic: None,
                    features,
                    continued: None,
                };
                self.challenge(handle, attempt, (hello.nonce, hello.channel_binding), sink)
            }
            // A ticket is checked by the authenticator once the client sent it.
            Some(Choice::Dynamic {
                method: Method::Ticket,
                authenticator,
            }) => {
                let kept = hello.kept();
                let authid = authid.as_deref().unwrap_or("").to_owned();
                let attempt = Attempt {
                    realm: realm_index,
                    method: Method::Ticket,
                    principal: None,
                    authid: &authid,
                    dynamic: Some(Box::new(Assigned::default())),
                    features,
                    continued: None,
                };
                self.challenge(handle, attempt, (None, None), sink);
                if let Some(Phase::Authenticating(attempt)) =
                    self.session_mut(handle).map(|s| &mut s.phase)
                {
                    attempt.hello = Some(kept);
                    attempt.authenticator = authenticator;
                }
            }
            Some(Choice::Dynamic {
                method,
                authenticator,
            }) => {
                let id = self.new_session_id();
                let deadline = self.start_deadline(handle);
                let attempt = Authenticating {
                    realm: realm_index,
                    id,
                    features,
                    pending: Pending {
                        method,
                        principal: None,
                        authid: authid.as_deref().unwrap_or("").into(),
                        challenge: Box::default(),
                        scram: None,
                        dynamic: None,
                    },
                    deadline,
                    stage: Stage::Challenged,
                    hello: Some(hello.kept()),
                    authenticator,
                };
                self.ask_authenticator(handle, Box::new(attempt), None, sink);
            }
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

    /// The deadline of a new authentication attempt of `handle` (registered for [`Router::handle_timeout`]).
    fn start_deadline(&mut self, handle: SessionHandle) -> u64 {
        let deadline = self.now_ms.saturating_add(self.limits.auth_timeout_ms);
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
        deadline
    }

    /// Sends CHALLENGE and waits for AUTHENTICATE (until the authentication timeout; an attempt that waited for
    /// its authenticator keeps its deadline and session ID).
    fn challenge(
        &mut self,
        handle: SessionHandle,
        attempt: Attempt<'_>,
        (nonce, channel_binding): (Option<&str>, Option<&str>),
        sink: &mut impl Sink,
    ) {
        let Some(peer) = self.peer(handle) else {
            return;
        };
        let Attempt {
            realm,
            method,
            principal,
            authid,
            dynamic,
            features,
            continued,
        } = attempt;
        let (id, deadline) = match continued {
            Some(continued) => continued,
            None => (self.new_session_id(), self.start_deadline(handle)),
        };
        let server_nonce = self.nonces.next();
        let principals = &self.realms[realm].principals;
        let (text, challenge): (String, Box<[u8]>) = match method {
            Method::WampCra => {
                let unix_ms = self.epoch_unix_ms.saturating_add(self.now_ms);
                let text = auth::wampcra_challenge(authid, &server_nonce[..16], unix_ms, id.get());
                let bytes = text.as_bytes().into();
                (text, bytes)
            }
            Method::Cryptosign => (auth::hex(&server_nonce), server_nonce.into()),
            _ => (String::new(), Box::default()),
        };
        let salt = match (method, dynamic.as_deref()) {
            (
                Method::WampCra,
                Some(Assigned {
                    credential: Credential::WampCra { salt, .. },
                    ..
                }),
            ) => salt.clone(),
            (Method::WampCra, None) => principals.salt(principal, authid),
            _ => None,
        };
        let scram = match method.scram_dialect() {
            None => None,
            Some(dialect) => {
                let (credential, known) = match dynamic.as_deref() {
                    Some(Assigned {
                        credential: Credential::Scram(credential),
                        ..
                    }) => (credential.clone(), true),
                    _ => principals.scram_credential(principal, authid),
                };
                let exporter = sink.transport(peer).and_then(|t| t.tls_exporter);
                let bindings = scram::ChannelBindings {
                    tls_exporter: exporter.as_ref().map(|data| &data[..]),
                    ..scram::ChannelBindings::NONE
                };
                let hello = scram::Hello {
                    authid,
                    nonce,
                    channel_binding,
                };
                match scram::start(
                    dialect,
                    &hello,
                    &credential,
                    known,
                    &server_nonce,
                    &bindings,
                ) {
                    Ok(pending) => Some(Box::new(pending)),
                    Err(error) => {
                        self.stats.auth_failures += 1;
                        info!(authid, method = method.name(), %error, "authentication refused");
                        let extra = [("scram", Field::Str(error.scram_error()))];
                        return self.abort_with(
                            handle,
                            AUTHENTICATION_FAILED,
                            &error.to_string(),
                            &extra,
                            sink,
                        );
                    }
                }
            }
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
        if let Some(pending) = &scram {
            let challenge = pending.challenge();
            extra.push("nonce", Field::Str(challenge.nonce));
            extra.push("salt", Field::Str(challenge.salt));
            extra.push("kdf", Field::Str(challenge.kdf));
            extra.push("iterations", Field::UInt(challenge.iterations.into()));
            if let Some(memory) = challenge.memory {
                extra.push("memory", Field::UInt(memory.into()));
            }
        }
        sink.send(
            peer,
            &Message::Challenge {
                auth_method: Cow::Borrowed(method.name()),
                extra: extra.dict(),
            },
        );
        drop(extra);
        let pending = Pending {
            method,
            principal,
            authid: authid.into(),
            challenge,
            scram,
            dynamic,
        };
        debug!(conn = peer.conn.0, method = method.name(), authid = %pending.authid, "challenge sent");
        if let Some(session) = self.session_mut(handle) {
            session.phase = Phase::Authenticating(Box::new(Authenticating {
                realm,
                id,
                features,
                pending,
                deadline,
                stage: Stage::Challenged,
                hello: None,
                authenticator: 0,
            }));
        }
    }

    /// Calls the attempt's dynamic authenticator (`ticket`: with the client's ticket) and waits for its answer.
    fn ask_authenticator(
        &mut self,
        handle: SessionHandle,
        mut attempt: Box<Authenticating>,
        ticket: Option<&str>,
        sink: &mut impl Sink,
    ) {
        let method = attempt.pending.method;
        let realm = attempt.realm;
        let Some(authenticator) = self.realms[realm].authenticators.get(attempt.authenticator)
        else {
            return self.abort(handle, AUTHENTICATION_FAILED, "no authenticator", sink);
        };
        let (procedure, timeout_ms) = (
            authenticator.config.procedure.clone(),
            authenticator.config.timeout_ms,
        );
        let refusal = if authenticator.in_flight >= authenticator.config.concurrency_max {
            Some(format!(
                "{} authentications are waiting for the authenticator already (concurrency_max)",
                authenticator.config.concurrency_max
            ))
        } else if authenticator.realm.is_none() {
            Some("the authenticator's realm does not exist".into())
        } else {
            None
        };
        let hello = attempt.hello.as_deref();
        let authid = hello.and_then(|h| h.authid.as_deref());
        // crossbar gives anonymous attempts an authid the authenticator may keep.
        let anonymous = format!("anonymous-{}", attempt.id);
        let authid = match method {
            Method::Anonymous => Some(anonymous.as_str()),
            _ => authid,
        };
        let optional = |value: Option<&str>| value.map_or(Value::Null, Value::from);
        let mut details = Value::dict()
            .with("transport", self.transport_details(handle, sink))
            .with("session", attempt.id)
            .with("authmethod", method.name())
            .with("authid", optional(authid))
            .with(
                "authrole",
                optional(hello.and_then(|h| h.authrole.as_deref())),
            )
            .with(
                "authextra",
                (hello.and_then(|h| h.authextra.as_deref())).map_or(Value::Null, |bytes| {
                    RawValue::trusted(Serializer::MsgPack, bytes).to_value()
                }),
            );
        if let Some(ticket) = ticket {
            details = details.with("ticket", ticket);
        }
        let args = Value::List(vec![
            Value::from(self.realms[realm].name.as_str()),
            optional(authid),
            details,
        ]);
        if let Some(text) = refusal {
            self.stats.authenticator_failures += 1;
            return self.authentication_failed(handle, realm, &attempt, &text, sink);
        }
        let mut bytes = Vec::new();
        kreisel_codec::encode_field(Serializer::MsgPack, &Field::Value(&args), &mut bytes);
        let purpose = Purpose::Authenticate {
            handle,
            realm,
            authenticator: attempt.authenticator,
            generation: self.realms[realm].generation,
            method,
        };
        let target = self.realms[realm].authenticators[attempt.authenticator]
            .realm
            .unwrap_or(realm);
        match self.call_internal(target, &procedure, &bytes, timeout_ms, purpose, sink) {
            Ok(token) => {
                self.stats.authenticator_calls += 1;
                if let Some(a) = self.realms[realm]
                    .authenticators
                    .get_mut(attempt.authenticator)
                {
                    a.in_flight += 1;
                }
                attempt.stage = Stage::Asking {
                    token,
                    after_authenticate: ticket.is_some(),
                };
                if let Some(session) = self.session_mut(handle) {
                    session.phase = Phase::Authenticating(attempt);
                }
            }
            Err(text) => {
                self.stats.authenticator_failures += 1;
                self.authentication_failed(handle, realm, &attempt, &text, sink);
            }
        }
    }

    /// The authenticator could not be asked or did not answer usefully: ABORT `authentication_failed`.
    fn authentication_failed(
        &mut self,
        handle: SessionHandle,
        realm: usize,
        attempt: &Authenticating,
        text: &str,
        sink: &mut impl Sink,
    ) {
        self.stats.auth_failures += 1;
        info!(
            realm = %self.realms[realm].name,
            authid = %attempt.pending.authid,
            method = attempt.pending.method.name(),
            "dynamic authenticator failed: {text}"
        );
        let text = format!("dynamic authenticator failed: {text}");
        self.abort(handle, AUTHENTICATION_FAILED, &text, sink);
    }

    /// The dynamic authenticator of `handle`'s attempt answered (its call `token`).
    pub(super) fn authenticator_answered(
        &mut self,
        handle: SessionHandle,
        token: usize,
        method: Method,
        outcome: Outcome,
        sink: &mut impl Sink,
    ) {
        let Some(session) = self.session_mut(handle) else {
            return;
        };
        let waiting = matches!(&session.phase, Phase::Authenticating(a)
            if matches!(a.stage, Stage::Asking { token: t, .. } if t == token));
        if !waiting {
            return;
        }
        let Phase::Authenticating(mut attempt) =
            std::mem::replace(&mut session.phase, Phase::Handshake)
        else {
            return;
        };
        let after_authenticate = matches!(
            attempt.stage,
            Stage::Asking {
                after_authenticate: true,
                ..
            }
        );
        let realm = attempt.realm;
        let assigned = match outcome {
            Outcome::Authenticated(assigned) => assigned,
            Outcome::Failed {
                uri,
                text,
                by_callee: true,
            } => {
                self.stats.auth_failures += 1;
                info!(
                    realm = %self.realms[realm].name,
                    authid = %attempt.pending.authid,
                    method = method.name(),
                    reason = %uri,
                    "the dynamic authenticator refused: {text}"
                );
                return self.abort(handle, &uri, &text, sink);
            }
            Outcome::Failed { text, .. } => {
                self.stats.authenticator_failures += 1;
                return self.authentication_failed(handle, realm, &attempt, &text, sink);
            }
            Outcome::Decided(_) => return,
        };
        if after_authenticate || method == Method::Anonymous {
            return self.finish_dynamic(handle, &attempt, &assigned, None, sink);
        }
        // The authenticator gave the credential: challenge the client with it. The exchange uses the authid the
        // client asked for (SCRAM computes with it); WELCOME gets the one the authenticator assigns.
        let hello = attempt.hello.take();
        let asked = hello.as_ref().and_then(|h| h.authid.as_deref());
        let Some(authid) = asked.or(assigned.authid.as_deref()).map(str::to_owned) else {
            self.stats.auth_failures += 1;
            return self.abort(handle, NO_SUCH_PRINCIPAL, "no authid assigned", sink);
        };
        let continued = Some((attempt.id, attempt.deadline));
        let challenge = Attempt {
            realm,
            method,
            principal: None,
            authid: &authid,
            dynamic: Some(assigned),
            features: attempt.features,
            continued,
        };
        let scram = hello.as_ref().map_or((None, None), |h| {
            (h.nonce.as_deref(), h.channel_binding.as_deref())
        });
        self.challenge(handle, challenge, scram, sink);
        if let Some(Phase::Authenticating(attempt)) = self.session_mut(handle).map(|s| &mut s.phase)
        {
            attempt.hello = hello;
        }
    }

    /// Joins a session a dynamic authenticator accepted, as it said: role (required, and defined in the realm if
    /// the realm has roles), authid (the client's if it assigns none), realm (this one if it names none), extra
    /// (WELCOME `authextra`, with `welcome` added: the SCRAM server signature).
    fn finish_dynamic(
        &mut self,
        handle: SessionHandle,
        attempt: &Authenticating,
        assigned: &Assigned,
        welcome: Option<(&'static str, String)>,
        sink: &mut impl Sink,
    ) {
        let method = attempt.pending.method;
        let realm = match assigned.realm.as_deref() {
            None => attempt.realm,
            Some(name) => match self.realm_index.get(name) {
                Some(&index) => index,
                None => {
                    self.stats.auth_failures += 1;
                    let text = format!("no realm '{}' exists on this router", uri::shown(name));
                    return self.abort(handle, NO_SUCH_REALM, &text, sink);
                }
            },
        };
        let Some(role) = assigned.role.as_deref() else {
            self.stats.auth_failures += 1;
            return self.abort(handle, NO_SUCH_ROLE, "no authrole assigned", sink);
        };
        let authz = &self.realms[realm].authz;
        if authz.enforced() && authz.role(role).is_none() {
            self.stats.auth_failures += 1;
            let text = format!(
                "realm '{}' has no role '{}'",
                self.realms[realm].name,
                uri::shown(role)
            );
            return self.abort(handle, NO_SUCH_ROLE, &text, sink);
        }
        let hello = attempt.hello.as_deref();
        let asked = match method {
            Method::Anonymous => None,
            _ => hello
                .and_then(|h| h.authid.as_deref())
                .or(Some(&*attempt.pending.authid)),
        };
        let anonymous = format!("anonymous-{}", attempt.id);
        let authid = match (assigned.authid.as_deref(), asked, method) {
            (Some(authid), _, _) => authid,
            (None, Some(authid), _) if !authid.is_empty() => authid,
            (None, _, Method::Anonymous) => &anonymous,
            _ => {
                self.stats.auth_failures += 1;
                return self.abort(handle, NO_SUCH_PRINCIPAL, "no authid assigned", sink);
            }
        }
        .to_owned();
        if let Some(text) = self.realm_full(realm) {
            return self.abort(handle, NOT_AUTHORIZED, &text, sink);
        }
        let authextra = match (assigned.extra.as_deref(), welcome) {
            (None, None) => None,
            (Some(extra), None) => Some(extra.into()),
            (extra, Some((key, value))) => {
                let mut dict = extra.map_or(Value::dict(), |bytes| {
                    RawValue::trusted(Serializer::MsgPack, bytes).to_value()
                });
                if let Value::Dict(entries) = &mut dict {
                    entries.retain(|(k, _)| k != key);
                    entries.push((key.into(), Value::Str(value)));
                }
                let mut bytes = Vec::new();
                kreisel_codec::encode_field(Serializer::MsgPack, &Field::Value(&dict), &mut bytes);
                Some(bytes.into())
            }
        };
        // The ID the challenge announced; IDs come from a permutation of a counter, so it is nobody else's.
        let id = attempt.id;
        self.join(
            handle,
            realm,
            id,
            (&authid, role, method, Provider::Dynamic),
            attempt.features,
            authextra,
            sink,
        );
    }

    /// Gives up `handle`'s authentication attempt, if it waits for an authenticator (the session closes, its
    /// attempt ended, or the configuration changed).
    pub(super) fn forget_authentication(&mut self, handle: SessionHandle, sink: &mut impl Sink) {
        let token = match self.session(handle).map(|s| &s.phase) {
            Some(Phase::Authenticating(attempt)) => match attempt.stage {
                Stage::Asking { token, .. } => token,
                Stage::Challenged => return,
            },
            _ => return,
        };
        if let Some(Phase::Authenticating(attempt)) = self.session_mut(handle).map(|s| &mut s.phase)
        {
            attempt.stage = Stage::Challenged;
        }
        self.cancel_internal(token, sink);
    }

    /// A message between HELLO and WELCOME: AUTHENTICATE after a CHALLENGE (or ABORT).
    pub(super) fn on_authenticating_message(
        &mut self,
        handle: SessionHandle,
        msg: &Message<'_>,
        sink: &mut impl Sink,
    ) {
        let (signature, extra) = match msg {
            Message::Abort { .. } => return self.close(handle, sink),
            Message::Authenticate { signature, extra } => (signature, extra),
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
        let asking = matches!(&session.phase, Phase::Authenticating(a)
            if matches!(a.stage, Stage::Asking { .. }));
        if asking {
            let text = "AUTHENTICATE received before a CHALLENGE (or twice)";
            return self.abort(handle, PROTOCOL_VIOLATION, text, sink);
        }
        let Phase::Authenticating(attempt) =
            std::mem::replace(&mut session.phase, Phase::Handshake)
        else {
            return;
        };
        let method = attempt.pending.method;
        if attempt.pending.scram.is_some() {
            return self.verify_scram(handle, attempt, signature, extra, sink);
        }
        if let Some(assigned) = attempt.pending.dynamic.as_deref() {
            let verified = match (&assigned.credential, method) {
                (_, Method::Ticket) => {
                    // The authenticator checks the ticket.
                    return self.ask_authenticator(handle, attempt, Some(signature), sink);
                }
                (Credential::WampCra { key, .. }, Method::WampCra) => {
                    let mac = base64::Engine::decode(
                        &base64::engine::general_purpose::STANDARD,
                        signature.trim(),
                    );
                    mac.is_ok_and(|mac| {
                        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
                        ring::hmac::verify(&key, &attempt.pending.challenge, &mac).is_ok()
                    })
                }
                (Credential::Cryptosign(pubkey), Method::Cryptosign) => {
                    auth::verify_cryptosign(&[*pubkey], &attempt.pending.challenge, signature)
                }
                _ => false,
            };
            if !verified {
                return self.refuse_attempt(handle, &attempt, sink);
            }
            let mut attempt = attempt;
            let Some(assigned) = attempt.pending.dynamic.take() else {
                return;
            };
            return self.finish_dynamic(handle, &attempt, &assigned, None, sink);
        }
        let realm = &self.realms[attempt.realm];
        let Some(who) = realm
            .principals
            .verify(&attempt.pending, signature, &self.auth_key)
        else {
            return self.refuse_attempt(handle, &attempt, sink);
        };
        let (authid, role) = (String::from(who.authid), String::from(who.role));
        self.join_static(handle, &attempt, (&authid, &role), None, sink);
    }

    /// A wrong signature, proof or ticket (or an unknown authid): ABORT `authentication_failed`.
    fn refuse_attempt(
        &mut self,
        handle: SessionHandle,
        attempt: &Authenticating,
        sink: &mut impl Sink,
    ) {
        info!(
            realm = %self.realms[attempt.realm].name,
            authid = %attempt.pending.authid,
            method = attempt.pending.method.name(),
            "authentication failed"
        );
        self.stats.auth_failures += 1;
        self.abort(handle, AUTHENTICATION_FAILED, "authentication failed", sink);
    }

    /// A verified static principal joins (`welcome`: WELCOME `authextra`, MessagePack).
    fn join_static(
        &mut self,
        handle: SessionHandle,
        attempt: &Authenticating,
        (authid, role): (&str, &str),
        welcome: Option<Box<[u8]>>,
        sink: &mut impl Sink,
    ) {
        if let Some(text) = self.realm_full(attempt.realm) {
            return self.abort(handle, NOT_AUTHORIZED, &text, sink);
        }
        // The ID the challenge announced; IDs come from a permutation of a counter, so it is nobody else's.
        let id = attempt.id;
        self.join(
            handle,
            attempt.realm,
            id,
            (authid, role, attempt.pending.method, Provider::Static),
            attempt.features,
            welcome,
            sink,
        );
    }

    /// AUTHENTICATE of a WAMP-SCRAM attempt: the proof (and, for `wamp-scram`, the echoed nonce and channel
    /// binding). WELCOME carries the server signature.
    fn verify_scram(
        &mut self,
        handle: SessionHandle,
        mut attempt: Box<Authenticating>,
        signature: &str,
        extra: &Dict<'_>,
        sink: &mut impl Sink,
    ) {
        let raw = match extra {
            Dict::Raw(raw) => Some(*raw),
            _ => None,
        };
        let fields = (
            optional_str(raw.as_ref(), "nonce"),
            optional_str(raw.as_ref(), "channel_binding"),
            optional_str(raw.as_ref(), "cbind_data"),
        );
        let (Ok(nonce), Ok(channel_binding), Ok(cbind_data)) = fields else {
            let text = "AUTHENTICATE.Extra.nonce, channel_binding and cbind_data must be strings";
            return self.abort(handle, PROTOCOL_VIOLATION, text, sink);
        };
        let Some(pending) = attempt.pending.scram.as_deref() else {
            return;
        };
        let verified = pending.verify(&scram::Authenticate {
            signature,
            nonce: nonce.as_deref(),
            channel_binding: channel_binding.as_deref(),
            cbind_data: cbind_data.as_deref(),
        });
        let verified = match verified {
            Ok(verified) => verified,
            Err(error) => {
                info!(
                    realm = %self.realms[attempt.realm].name,
                    authid = %attempt.pending.authid,
                    method = attempt.pending.method.name(),
                    %error,
                    "authentication failed"
                );
                self.stats.auth_failures += 1;
                let extra = [("scram", Field::Str(error.scram_error()))];
                let text = match error {
                    scram::Error::InvalidProof => "authentication failed".to_string(),
                    other => other.to_string(),
                };
                return self.abort_with(handle, AUTHENTICATION_FAILED, &text, &extra, sink);
            }
        };
        let welcome = (verified.authextra_key(), verified.server_signature());
        if let Some(assigned) = attempt.pending.dynamic.take() {
            return self.finish_dynamic(handle, &attempt, &assigned, Some(welcome), sink);
        }
        let Some(principal) = attempt.pending.principal else {
            return self.refuse_attempt(handle, &attempt, sink);
        };
        let who = self.realms[attempt.realm].principals.principal(principal);
        let (authid, role) = (String::from(who.authid), String::from(who.role));
        let extra = [(welcome.0, Field::Str(&welcome.1))];
        let mut bytes = Vec::new();
        kreisel_codec::encode_field(
            Serializer::MsgPack,
            &Field::Dict(Dict::Fields(&extra)),
            &mut bytes,
        );
        self.join_static(handle, &attempt, (&authid, &role), Some(bytes.into()), sink);
    }

    /// Replaces the principals, roles, anonymous access and dynamic authenticators of realm `realm` (a
    /// configuration reload). Returns `None` for a realm this router does not have.
    ///
    /// - Joined sessions keep their authid and authrole. From now on they may do what the new role of that name
    ///   allows: nothing if the realm no longer has that role, everything if the realm no longer has roles.
    /// - Authorization decisions remembered for the old roles go with them; requests waiting for a dynamic
    ///   authorizer are decided again under the new roles when its answer arrives.
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
        let authenticators = super::authenticators(auth, index, &self.realm_index);
        let realm = &mut self.realms[index];
        realm.principals = Principals::new(auth, &self.auth_key);
        realm.authz = Authorizer::new(auth.roles.as_deref());
        realm.authenticators = authenticators;
        realm.generation += 1;
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
        self.settle(sink);
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

    /// Joins the realm as (authid, authrole, authmethod, authprovider) and sends WELCOME (with `authextra`, a
    /// MessagePack dictionary, if given).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn join(
        &mut self,
        handle: SessionHandle,
        realm_index: usize,
        id: Id,
        (authid, authrole, authmethod, authprovider): (&str, &str, Method, Provider),
        features: ClientFeatures,
        authextra: Option<Box<[u8]>>,
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
        // Only dynamically authenticated sessions hold anything more than the others.
        let dynamic = (authprovider == Provider::Dynamic).then(|| {
            Box::new(crate::session::DynamicSession {
                provider: authprovider,
                authextra: authextra.clone(),
                parked: None,
            })
        });
        session.phase = Phase::Established(Joined {
            id,
            realm: realm_index,
            authid: authid.into(),
            authrole: shared_role,
            authmethod,
            dynamic,
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
        let authextra = authextra
            .as_deref()
            .map(|bytes| Field::Raw(RawValue::trusted(Serializer::MsgPack, bytes)));
        let mut details = vec![
            ("realm", Field::Str(realm_name)),
            ("authid", Field::Str(authid)),
            ("authrole", Field::Str(authrole)),
            ("authmethod", Field::Str(authmethod.name())),
            ("authprovider", Field::Str(authprovider.name())),
            ("roles", Field::Value(&self.roles)),
            ("agent", Field::Str(&self.agent)),
        ];
        if let Some(authextra) = authextra {
            details.push(("authextra", authextra));
        }
        sink.send(
            peer,
            &Message::Welcome {
                session: id,
                details: Dict::Fields(&details),
            },
        );
        drop(details);
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

/// The parts of an authentication attempt a CHALLENGE is made of.
struct Attempt<'a> {
    realm: usize,
    method: Method,
    /// The static principal (`None`: an unknown authid, or a dynamic attempt).
    principal: Option<usize>,
    /// The authid the challenge is for.
    authid: &'a str,
    /// What a dynamic authenticator said (the credential to challenge with).
    dynamic: Option<Box<Assigned>>,
    features: ClientFeatures,
    /// The session ID and deadline of an attempt that waited for its authenticator.
    continued: Option<(Id, u64)>,
}
