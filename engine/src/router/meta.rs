//! The router's own procedures and events, in the reserved `wamp.` namespace: testaments
//! (`wamp.session.add_testament`, `wamp.session.flush_testaments`) and their publication when a session leaves; the
//! session meta API (`wamp.session.on_join`/`on_leave`, `count`, `list`, `get`, `kill*`); the subscription and
//! registration meta API (`wamp.subscription.*`, `wamp.registration.*`; their events are announced in
//! [`super::membership`]).
//!
//! Meta events cost nothing while nobody subscribes to anything that may match `wamp.`: the broker counts such
//! subscriptions, and no event is built while the count is 0.

use super::pubsub::Publication;
use super::*;
use crate::session::{Testament, TestamentScope};

/// A meta procedure's refusal: (error URI, text).
pub(super) type Refusal = (&'static str, String);

/// Close reason of a killed session when the caller names none (crossbar, xconn and Thruway send it; the spec's
/// text says `wamp.close.normal`, which is not in its URI list).
pub(super) const KILLED: &str = "wamp.close.killed";

impl Router {
    /// Whether anybody in `realm` may receive a meta event (a subscription that may match `wamp.` exists).
    pub(super) fn meta_wanted(&self, realm: usize) -> bool {
        self.realms[realm].broker.reserved > 0
    }

    /// Publishes a meta event (no publisher, no options) with positional arguments `args` to the subscribers in
    /// `realm`, if there may be any.
    pub(super) fn publish_meta(
        &mut self,
        realm: usize,
        topic: &str,
        args: &[Field<'_>],
        sink: &mut impl Sink,
    ) {
        if !self.meta_wanted(realm) {
            return;
        }
        let options = RequestOptions::default();
        // Other shards take the arguments as an encoded value (a meta event is no hot path).
        let mut encoded = Vec::new();
        let list = Field::List(args);
        let args = if self.linked() {
            kreisel_codec::encode_field(Serializer::Json, &list, &mut encoded);
            Field::Raw(RawValue::trusted(Serializer::Json, &encoded))
        } else {
            list
        };
        let payload = Payload {
            args: Some(args),
            kwargs: None,
        };
        let publication = Publication {
            id: self.ids.random_id(),
            topic,
            publisher: None,
            exclude: None,
            options: &options,
            raw_options: None,
            payload: &payload,
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        let events = self.route_publication(realm, &publication, false, &mut scratch, sink);
        self.scratch = scratch;
        self.stats.events_sent += events;
    }

    /// A CALL to a `wamp.` procedure: answered by the router itself, RESULT (with the procedure's positional
    /// results, if any) or ERROR.
    pub(super) fn on_meta_call(
        &mut self,
        handle: SessionHandle,
        request: Id,
        procedure: &str,
        payload: &Payload<'_>,
        sink: &mut impl Sink,
    ) {
        let (Some(caller), Some(realm)) = (self.peer(handle), self.joined(handle).map(|j| j.realm))
        else {
            return;
        };
        let nothing = |()| Vec::new();
        let outcome = match procedure {
            "wamp.session.add_testament" => self.add_testament(handle, payload).map(nothing),
            "wamp.session.flush_testaments" => self.flush_testaments(handle, payload).map(nothing),
            "wamp.session.count"
            | "wamp.session.list"
            | "wamp.session.get"
            | "wamp.session.kill"
            | "wamp.session.kill_by_authid"
            | "wamp.session.kill_by_authrole"
            | "wamp.session.kill_all" => {
                // Answered by census.rs, possibly after the other shards have answered.
                return self.session_meta_call(handle, request, procedure, payload, sink);
            }
            "wamp.subscription.list" => Ok(vec![self.list(realm, Membership::Subscription)]),
            "wamp.registration.list" => Ok(vec![self.list(realm, Membership::Registration)]),
            "wamp.subscription.lookup" => self.lookup(realm, Membership::Subscription, payload),
            "wamp.registration.lookup" => self.lookup(realm, Membership::Registration, payload),
            "wamp.subscription.match" => self.subscription_match(realm, payload),
            "wamp.registration.match" => self.registration_match(realm, payload),
            "wamp.subscription.get" => self.get(realm, Membership::Subscription, payload),
            "wamp.registration.get" => self.get(realm, Membership::Registration, payload),
            "wamp.subscription.list_subscribers" => {
                self.members(realm, Membership::Subscription, payload, false)
            }
            "wamp.registration.list_callees" => {
                self.members(realm, Membership::Registration, payload, false)
            }
            "wamp.subscription.count_subscribers" => {
                self.members(realm, Membership::Subscription, payload, true)
            }
            "wamp.registration.count_callees" => {
                self.members(realm, Membership::Registration, payload, true)
            }
            _ => Err((
                NO_SUCH_PROCEDURE,
                format!("no procedure '{procedure}' on this router"),
            )),
        };
        if self.question.is_some() {
            // Waiting for a dynamic authorizer: the CALL is handled again once it decided.
            return;
        }
        let testaments_changed = matches!(
            procedure,
            "wamp.session.add_testament" | "wamp.session.flush_testaments"
        );
        if testaments_changed && outcome.is_ok() {
            self.tell_testaments(handle, sink);
        }
        self.answer_meta(caller, request, outcome, Dict::EMPTY, sink);
    }

    /// RESULT (with `results` as positional arguments, if any) or ERROR for a meta procedure's call.
    pub(super) fn answer_meta(
        &mut self,
        caller: Peer,
        request: Id,
        outcome: Result<Vec<Value>, Refusal>,
        details: Dict<'_>,
        sink: &mut impl Sink,
    ) {
        match outcome {
            Ok(results) => {
                let results = Value::List(results);
                let payload = match &results {
                    Value::List(items) if items.is_empty() => Payload::EMPTY,
                    results => Payload {
                        args: Some(Field::Value(results)),
                        kwargs: None,
                    },
                };
                sink.send(
                    caller,
                    &Message::Result {
                        request,
                        details,
                        payload,
                    },
                )
            }
            Err((uri, text)) => {
                self.send_error(sink, caller, MessageType::Call, request, uri, &text)
            }
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Subscription and registration meta procedures

    /// `wamp.subscription.list()` / `wamp.registration.list()`: `{exact: [ids], prefix: [ids], wildcard: [ids]}`.
    fn list(&self, realm: usize, kind: Membership) -> Value {
        let realm = &self.realms[realm];
        let all: Vec<(MatchPolicy, Id)> = match kind {
            Membership::Subscription => (realm.broker.subscriptions.iter())
                .map(|(_, s)| (s.policy, s.id))
                .collect(),
            Membership::Registration => (realm.dealer.registrations.iter())
                .map(|(_, r)| (r.policy, r.id))
                .collect(),
        };
        [
            MatchPolicy::Exact,
            MatchPolicy::Prefix,
            MatchPolicy::Wildcard,
        ]
        .into_iter()
        .fold(Value::dict(), |lists, policy| {
            let ids = (all.iter())
                .filter(|(p, _)| *p == policy)
                .map(|&(_, id)| Value::from(id))
                .collect::<Vec<_>>();
            lists.with(policy.name(), ids)
        })
    }

    /// `wamp.subscription.lookup(topic, options)` / `wamp.registration.lookup(procedure, options)`: the ID of the
    /// subscription or registration for exactly this URI and `options.match` (default `exact`), or null.
    fn lookup(
        &self,
        realm: usize,
        kind: Membership,
        payload: &Payload<'_>,
    ) -> Result<Vec<Value>, Refusal> {
        let uri = uri_argument(payload, kind)?;
        let policy = match argument(payload, 1).filter(|o| !o.is_null()) {
            None => MatchPolicy::Exact,
            Some(options) => match options.get("match") {
                None => MatchPolicy::Exact,
                Some(policy) => match policy
                    .as_str()
                    .as_deref()
                    .and_then(MatchPolicy::from_option)
                {
                    Some(policy) => policy,
                    None => {
                        let text = "option 'match' must be exact, prefix or wildcard";
                        return Err((INVALID_ARGUMENT, text.into()));
                    }
                },
            },
        };
        self.check_concrete_uri(realm, kind.name(), &uri, policy)?;
        let realm = &self.realms[realm];
        let id = match kind {
            Membership::Subscription => (realm.broker.trie.get(&uri, policy))
                .map(|index| realm.broker.subscriptions[index].id),
            Membership::Registration => (realm.dealer.trie.get(&uri, policy))
                .map(|index| realm.dealer.registrations[index].id),
        };
        Ok(vec![id.map_or(Value::Null, Value::from)])
    }

    /// `wamp.subscription.match(topic)`: the IDs of every subscription a publication to `topic` would reach, or
    /// null when there is none.
    fn subscription_match(
        &self,
        realm: usize,
        payload: &Payload<'_>,
    ) -> Result<Vec<Value>, Refusal> {
        let topic = uri_argument(payload, Membership::Subscription)?;
        self.check_concrete_uri(realm, "topic", &topic, MatchPolicy::Exact)?;
        let broker = &self.realms[realm].broker;
        let mut ids = Vec::new();
        broker.trie.for_each_match(&topic, |_, index| {
            ids.push(Value::from(broker.subscriptions[index].id))
        });
        Ok(vec![if ids.is_empty() {
            Value::Null
        } else {
            Value::List(ids)
        }])
    }

    /// `wamp.registration.match(procedure)`: the ID of the registration a call to `procedure` would reach (by
    /// the dealer's precedence), or null.
    fn registration_match(
        &self,
        realm: usize,
        payload: &Payload<'_>,
    ) -> Result<Vec<Value>, Refusal> {
        let procedure = uri_argument(payload, Membership::Registration)?;
        self.check_concrete_uri(realm, "procedure", &procedure, MatchPolicy::Exact)?;
        let dealer = &self.realms[realm].dealer;
        let id = (dealer.lookup(&procedure)).map(|index| dealer.registrations[index].id);
        Ok(vec![id.map_or(Value::Null, Value::from)])
    }

    /// `wamp.subscription.get(id)` / `wamp.registration.get(id)`: the details `on_create` announced.
    fn get(
        &self,
        realm: usize,
        kind: Membership,
        payload: &Payload<'_>,
    ) -> Result<Vec<Value>, Refusal> {
        let index = self.member_index(realm, kind, payload)?;
        let details = self.membership_details(realm, kind, index);
        Ok(vec![details.unwrap_or(Value::Null)])
    }

    /// `list_subscribers(id)` / `list_callees(id)`: the members' session IDs; `count_subscribers(id)` /
    /// `count_callees(id)` (`count`): their number.
    fn members(
        &self,
        realm: usize,
        kind: Membership,
        payload: &Payload<'_>,
        count: bool,
    ) -> Result<Vec<Value>, Refusal> {
        let index = self.member_index(realm, kind, payload)?;
        let realm = &self.realms[realm];
        // The members on every shard (this shard's copy knows the others').
        let sessions: Vec<Id> = match kind {
            Membership::Subscription => {
                let subscription = &realm.broker.subscriptions[index];
                (subscription.subscribers.iter())
                    .filter_map(|peer| self.joined(peer.session).map(|joined| joined.id))
                    .chain(subscription.remote.iter().map(|&(_, session)| session))
                    .collect()
            }
            Membership::Registration => (realm.dealer.registrations[index].callees.iter())
                .map(|callee| callee.session)
                .collect(),
        };
        if count {
            return Ok(vec![Value::UInt(sessions.len() as u64)]);
        }
        let ids = sessions.into_iter().map(Value::from).collect::<Vec<_>>();
        Ok(vec![Value::List(ids)])
    }

    /// The subscription or registration named by the first argument (`wamp.error.no_such_subscription` /
    /// `no_such_registration` otherwise).
    fn member_index(
        &self,
        realm: usize,
        kind: Membership,
        payload: &Payload<'_>,
    ) -> Result<usize, Refusal> {
        let Some(id) = argument(payload, 0)
            .and_then(|a| a.as_u64())
            .and_then(Id::new)
        else {
            let text = format!("expects ({}|id)", kind.name());
            return Err((INVALID_ARGUMENT, text));
        };
        self.index_of(realm, kind, id).ok_or_else(|| {
            (
                kind.no_such(),
                format!("no {} {id} in this realm", kind.name()),
            )
        })
    }

    // ---------------------------------------------------------------------------------------------------------
    // Testaments

    /// `wamp.session.add_testament(topic, args, kwargs, publish_options=, scope=)`: stores an event to publish
    /// when the session leaves.
    fn add_testament(
        &mut self,
        handle: SessionHandle,
        payload: &Payload<'_>,
    ) -> Result<(), Refusal> {
        let Some(joined) = self.joined(handle) else {
            return Ok(());
        };
        let invalid = |text: &str| {
            (
                INVALID_ARGUMENT,
                format!("wamp.session.add_testament: {text}"),
            )
        };
        let mut positional = payload
            .args
            .as_ref()
            .and_then(Field::as_raw)
            .and_then(|args| args.list())
            .ok_or_else(|| invalid("expects (topic, args, kwargs)"))?;
        let topic = positional
            .next()
            .and_then(|topic| topic.as_str())
            .ok_or_else(|| invalid("the first argument must be the topic"))?;
        let args = match positional.next() {
            Some(args) if args.kind() == Kind::List => Some(args),
            Some(args) if args.is_null() => None,
            None => None,
            Some(_) => return Err(invalid("the second argument (args) must be a list")),
        };
        let kwargs = match positional.next() {
            Some(kwargs) if kwargs.kind() == Kind::Dict => Some(kwargs),
            Some(kwargs) if kwargs.is_null() => None,
            None => None,
            Some(_) => return Err(invalid("the third argument (kwargs) must be a dictionary")),
        };
        let keywords = payload.kwargs.as_ref().and_then(Field::as_raw);
        let scope = scope_of(keywords).map_err(|text| invalid(&text))?;
        let options = match keywords.and_then(|k| k.get("publish_options")) {
            None => None,
            Some(options) if options.is_null() => None,
            Some(options) if options.kind() == Kind::Dict => Some(options),
            Some(_) => return Err(invalid("publish_options must be a dictionary")),
        };
        if let Some(options) = options {
            let parsed = RequestOptions::parse(&Dict::Raw(options), UNSUPPORTED_PUBLISH);
            if let Some(name) = parsed.unsupported.or(parsed.invalid) {
                return Err((
                    OPTION_NOT_ALLOWED,
                    format!("publish_options: option '{name}' is not accepted"),
                ));
            }
        }
        let realm = joined.realm;
        self.check_concrete_uri(realm, "testament topic", &topic, MatchPolicy::Exact)?;
        if uri::is_reserved(&topic) {
            let text = format!(
                "'{}': topics under 'wamp.' are reserved",
                uri::shown(&topic)
            );
            return Err((INVALID_URI, text));
        }
        // The testament is a publication: the session needs the right to publish it.
        let publish_options = options.map_or(Dict::EMPTY, Dict::Raw);
        match self.authorize(handle, &topic, Perms::PUBLISH, &publish_options) {
            Ok(_) => {}
            Err(Denied::Refused(uri, text)) => return Err((uri, format!("testament: {text}"))),
            // The CALL is parked (and nothing is answered now).
            Err(Denied::Pending) => return Ok(()),
        }
        let Some(joined) = self.joined(handle) else {
            return Ok(());
        };
        let owned = |raw: Option<RawValue<'_>>| raw.map(|raw| Box::<[u8]>::from(raw.bytes()));
        let testament = Testament {
            scope,
            topic: topic.into(),
            serializer: args
                .or(kwargs)
                .or(options)
                .map_or(Serializer::Json, |raw| raw.serializer()),
            args: owned(args),
            kwargs: owned(kwargs),
            options: owned(options),
        };
        let (count_max, bytes_max) = (
            self.limits.testaments_per_session_max,
            self.limits.testament_bytes_per_session_max,
        );
        let refusal = if joined.extras().testaments.len() >= count_max {
            Some(format!(
                "this session already has {count_max} testaments (limits.testaments_per_session_max)"
            ))
        } else if joined.extras().testament_bytes + testament.bytes() > bytes_max {
            Some(format!(
                "this session's testaments would hold more than {bytes_max} bytes \
                 (limits.testament_bytes_per_session_max)"
            ))
        } else {
            None
        };
        if let Some(text) = refusal {
            self.stats.limits_hit += 1;
            return Err((LIMIT_EXCEEDED, text));
        }
        if let Some(joined) = self.session_mut(handle).and_then(Session::joined_mut) {
            let extras = joined.extras_mut();
            extras.testament_bytes += testament.bytes();
            extras.testaments.push(testament);
        }
        Ok(())
    }

    /// In a cluster: tells the backplane the session's testaments (in the order they would be published, each
    /// authorized now), so that another node publishes them if this one dies.
    fn tell_testaments(&self, handle: SessionHandle, sink: &mut impl Sink) {
        let (Some(backplane), Some(joined)) = (self.backplane, self.joined(handle)) else {
            return;
        };
        let realm = joined.realm;
        let mut items = Vec::new();
        for scope in [TestamentScope::Detached, TestamentScope::Destroyed] {
            for testament in (joined.extras().testaments.iter()).filter(|t| t.scope == scope) {
                let perms = match joined.role {
                    RoleIndex::OPEN => Perms::OPEN,
                    role => self.realms[realm].authz.decide(role, &testament.topic),
                };
                if !perms.contains(Perms::PUBLISH) {
                    continue;
                }
                let serializer = testament.serializer;
                let item = crate::link::TestamentItem {
                    topic: &testament.topic,
                    disclose: perms.contains(Perms::DISCLOSE_PUBLISHER),
                    options: stored(serializer, testament.options.as_deref()),
                    args: stored(serializer, testament.args.as_deref()),
                    kwargs: stored(serializer, testament.kwargs.as_deref()),
                };
                crate::link::pack_testament(&item, &mut items);
            }
        }
        let msg = PeerMessage::Testaments {
            realm: realm as u16,
            session: joined.id,
            items: &items,
        };
        sink.peer(ShardSet::one(backplane), &msg);
    }

    /// `wamp.session.flush_testaments(scope=)`: forgets the session's testaments of one scope.
    fn flush_testaments(
        &mut self,
        handle: SessionHandle,
        payload: &Payload<'_>,
    ) -> Result<(), Refusal> {
        let keywords = payload.kwargs.as_ref().and_then(Field::as_raw);
        let scope = scope_of(keywords).map_err(|text| {
            (
                INVALID_ARGUMENT,
                format!("wamp.session.flush_testaments: {text}"),
            )
        })?;
        if let Some(joined) = self.session_mut(handle).and_then(Session::joined_mut) {
            let extras = joined.extras_mut();
            extras.testaments.retain(|t| t.scope != scope);
            extras.testament_bytes = extras.testaments.iter().map(Testament::bytes).sum();
        }
        Ok(())
    }

    /// Publishes the testaments of a session that left `realm`: the `detached` ones, then the `destroyed` ones
    /// (without session resumption a session is detached and destroyed at once), each in the order added, as
    /// publications of the departed session with their publish options (`acknowledge` and `exclude_me` mean
    /// nothing here). Each is authorized again with the session's role as it is now (a reload may have changed
    /// it): one its role may no longer publish is dropped (counted, logged); the role's rules may disclose the
    /// publisher, as for a PUBLISH.
    pub(super) fn publish_testaments(
        &mut self,
        realm: usize,
        joined: &Joined,
        sink: &mut impl Sink,
    ) {
        let publisher = Identity {
            id: joined.id,
            authid: &joined.authid,
            authrole: &joined.authrole,
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        for scope in [TestamentScope::Detached, TestamentScope::Destroyed] {
            for testament in (joined.extras().testaments.iter()).filter(|t| t.scope == scope) {
                let perms = match joined.role {
                    RoleIndex::OPEN => Perms::OPEN,
                    // Its authorizer allowed the testament when it was added (it cannot be asked now).
                    role if role.is_dynamic() => Perms::PUBLISH,
                    role => self.realms[realm].authz.permissions(role, &testament.topic),
                };
                if !perms.contains(Perms::PUBLISH) {
                    self.stats.not_authorized += 1;
                    debug!(
                        session = joined.id.get(),
                        topic = %uri::shown(&testament.topic),
                        "testament dropped: the role may not publish it"
                    );
                    continue;
                }
                let serializer = testament.serializer;
                let options = stored(serializer, testament.options.as_deref());
                let mut options = match &options {
                    Some(options) => RequestOptions::parse(&Dict::Raw(*options), &[]),
                    None => RequestOptions::parse(&Dict::EMPTY, &[]),
                };
                options.disclose_me |= perms.contains(Perms::DISCLOSE_PUBLISHER);
                let args = stored(serializer, testament.args.as_deref());
                let kwargs = stored(serializer, testament.kwargs.as_deref());
                let payload = Payload {
                    args: args.map(Field::Raw),
                    kwargs: kwargs.map(Field::Raw),
                };
                let id = self.ids.random_id();
                self.stats.publications += 1;
                let publication = Publication {
                    id,
                    topic: &testament.topic,
                    publisher: Some(publisher),
                    exclude: None,
                    options: &options,
                    raw_options: stored(serializer, testament.options.as_deref()),
                    payload: &payload,
                };
                let events =
                    self.route_publication(realm, &publication, options.retain, &mut scratch, sink);
                let retained = options
                    .retain
                    .then(|| self.retained_event(realm, &publication))
                    .flatten();
                self.stats.events_sent += events;
                self.keep_retained(realm, &testament.topic, &options, retained);
            }
        }
        self.scratch = scratch;
    }
}

/// A part of a testament as it was stored (validated when it arrived, so parsing it again succeeds).
fn stored(serializer: Serializer, bytes: Option<&[u8]>) -> Option<RawValue<'_>> {
    bytes.and_then(|bytes| RawValue::parse(serializer, bytes).ok())
}

/// What the meta API tells about a session (`wamp.session.on_join`, `wamp.session.get`).
pub(super) fn session_details(joined: &Joined) -> Value {
    Value::dict()
        .with("session", joined.id)
        .with("authid", &*joined.authid)
        .with("authrole", &*joined.authrole)
        .with("authmethod", joined.authmethod.name())
        .with("authprovider", joined.authprovider().name())
}

/// The positional arguments of a meta procedure call, if they are a list.
fn arguments<'a>(payload: &Payload<'a>) -> Option<kreisel_codec::ListIter<'a>> {
    payload.args.as_ref().and_then(Field::as_raw)?.list()
}

/// Positional argument `index`.
pub(super) fn argument<'a>(payload: &Payload<'a>, index: usize) -> Option<RawValue<'a>> {
    arguments(payload)?.nth(index)
}

/// Keyword argument `name` (a null counts as absent).
pub(super) fn keyword<'a>(payload: &Payload<'a>, name: &str) -> Option<RawValue<'a>> {
    (payload.kwargs.as_ref().and_then(Field::as_raw)?.get(name)).filter(|v| !v.is_null())
}

/// The topic or procedure URI in the first argument.
fn uri_argument<'a>(payload: &Payload<'a>, kind: Membership) -> Result<Cow<'a, str>, Refusal> {
    argument(payload, 0)
        .and_then(|uri| uri.as_str())
        .ok_or_else(|| {
            let what = match kind {
                Membership::Subscription => "topic",
                Membership::Registration => "procedure",
            };
            (INVALID_ARGUMENT, format!("expects ({what}|uri)"))
        })
}

/// The `scope` keyword argument: `destroyed` (the default) or `detached`.
fn scope_of(keywords: Option<RawValue<'_>>) -> Result<TestamentScope, String> {
    let Some(scope) = keywords.and_then(|k| k.get("scope")) else {
        return Ok(TestamentScope::Destroyed);
    };
    match scope.as_str().as_deref() {
        Some("destroyed") => Ok(TestamentScope::Destroyed),
        Some("detached") => Ok(TestamentScope::Detached),
        _ => Err("scope must be 'destroyed' or 'detached'".into()),
    }
}
