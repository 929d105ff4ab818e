//! The router's own procedures, in the reserved `wamp.` namespace: the testament meta procedures
//! (`wamp.session.add_testament`, `wamp.session.flush_testaments`) and the publication of testaments when a
//! session leaves. Further meta procedures (session, subscription and registration meta API) belong here too.

use super::pubsub::Publication;
use super::*;
use crate::session::{Testament, TestamentScope};

/// A meta procedure's refusal: (error URI, text).
type Refusal = (&'static str, String);

impl Router {
    /// A CALL to a `wamp.` procedure: answered by the router itself, RESULT without payload or ERROR.
    pub(super) fn on_meta_call(
        &mut self,
        handle: SessionHandle,
        request: Id,
        procedure: &str,
        payload: &Payload<'_>,
        sink: &mut impl Sink,
    ) {
        let Some(caller) = self.peer(handle) else {
            return;
        };
        let outcome = match procedure {
            "wamp.session.add_testament" => self.add_testament(handle, payload),
            "wamp.session.flush_testaments" => self.flush_testaments(handle, payload),
            _ => Err((
                NO_SUCH_PROCEDURE,
                format!("no procedure '{procedure}' on this router"),
            )),
        };
        match outcome {
            Ok(()) => sink.send(
                caller,
                &Message::Result {
                    request,
                    details: Dict::EMPTY,
                    payload: Payload::EMPTY,
                },
            ),
            Err((uri, text)) => {
                self.send_error(sink, caller, MessageType::Call, request, uri, &text)
            }
        }
    }

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
            Some(args) if args.kind() == Kind::List => Some(args.to_value()),
            Some(args) if args.is_null() => None,
            None => None,
            Some(_) => return Err(invalid("the second argument (args) must be a list")),
        };
        let kwargs = match positional.next() {
            Some(kwargs) if kwargs.kind() == Kind::Dict => Some(kwargs.to_value()),
            Some(kwargs) if kwargs.is_null() => None,
            None => None,
            Some(_) => return Err(invalid("the third argument (kwargs) must be a dictionary")),
        };
        let keywords = payload.kwargs.as_ref().and_then(Field::as_raw);
        let scope = scope_of(keywords).map_err(|text| invalid(&text))?;
        let options = match keywords.and_then(|k| k.get("publish_options")) {
            None => Value::dict(),
            Some(options) if options.kind() == Kind::Dict => options.to_value(),
            Some(_) => return Err(invalid("publish_options must be a dictionary")),
        };
        let parsed = RequestOptions::parse(&Dict::Value(&options), UNSUPPORTED_PUBLISH);
        if let Some(name) = parsed.unsupported.or(parsed.invalid) {
            return Err((
                OPTION_NOT_ALLOWED,
                format!("publish_options: option '{name}' is not accepted"),
            ));
        }
        if !uri::is_valid(
            &topic,
            self.realms[joined.realm].uri_check,
            MatchPolicy::Exact,
        ) || uri::is_reserved(&topic)
        {
            return Err((
                INVALID_URI,
                format!("'{topic}' is not a valid topic URI for a testament"),
            ));
        }
        let limit = self.limits.testaments_per_session_max;
        if joined.testaments.len() >= limit {
            self.stats.limits_hit += 1;
            return Err((
                LIMIT_EXCEEDED,
                format!("this session already has {limit} testaments"),
            ));
        }
        let testament = Testament {
            scope,
            topic: topic.into(),
            args,
            kwargs,
            options,
        };
        if let Some(joined) = self.session_mut(handle).and_then(Session::joined_mut) {
            joined.testaments.push(testament);
        }
        Ok(())
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
            joined.testaments.retain(|t| t.scope != scope);
        }
        Ok(())
    }

    /// Publishes the testaments of a session that left `realm`: the `detached` ones, then the `destroyed` ones
    /// (without session resumption a session is detached and destroyed at once), each in the order added, as
    /// publications of the departed session with their publish options (`acknowledge` and `exclude_me` mean
    /// nothing here).
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
            for testament in joined.testaments.iter().filter(|t| t.scope == scope) {
                let options = RequestOptions::parse(&Dict::Value(&testament.options), &[]);
                let payload = Payload {
                    args: testament.args.as_ref().map(Field::Value),
                    kwargs: testament.kwargs.as_ref().map(Field::Value),
                };
                let id = self.ids.random_id();
                self.stats.publications += 1;
                let publication = Publication {
                    id,
                    topic: &testament.topic,
                    publisher,
                    exclude: None,
                    options: &options,
                    payload: &payload,
                };
                let events = self.fan_out(realm, &publication, &mut scratch, sink);
                let retained = options
                    .retain
                    .then(|| self.retained_event(realm, &publication));
                self.stats.events_sent += events;
                if let Some(event) = retained {
                    self.store_retained(realm, &testament.topic, event);
                }
            }
        }
        self.scratch = scratch;
    }
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
