//! The session meta API across shards: `wamp.session.count`, `list`, `get`, `kill`, `kill_by_authid`,
//! `kill_by_authrole` and `kill_all`.
//!
//! No shard keeps a directory of the others' sessions (it would cost every session memory on every shard). A
//! question about sessions is answered for this shard's own sessions at once and asked of every other shard
//! ([`PeerMessage::SessionQuery`]); the caller gets its RESULT when every shard has answered
//! ([`PeerMessage::SessionAnswer`]), or, if one has not within [`GATHER_TIMEOUT_MS`], what was gathered, marked
//! `x_kreisel_partial: true` in the RESULT details. A router of one shard answers at once, as before.

use super::*;
use crate::link::{self, KillBy, SessionAnswer, SessionQuery};
use tracing::warn;

/// How long a session meta call waits for the other shards' answers.
pub(crate) const GATHER_TIMEOUT_MS: u64 = 2_000;

use super::meta::Refusal;

/// What a session meta call asks, in owned form (kept while the other shards answer).
#[derive(Clone, Debug)]
pub(super) enum Ask {
    Count {
        roles: Option<Vec<String>>,
    },
    List {
        roles: Option<Vec<String>>,
    },
    Get(Id),
    Kill {
        by: OwnedKillBy,
        reason: String,
        message: Option<String>,
    },
}

#[derive(Clone, Debug)]
pub(super) enum OwnedKillBy {
    Session(Id),
    Authid(String),
    Authrole(String),
    All,
}

impl OwnedKillBy {
    fn borrow(&self) -> KillBy<'_> {
        match self {
            OwnedKillBy::Session(id) => KillBy::Session(*id),
            OwnedKillBy::Authid(authid) => KillBy::Authid(authid),
            OwnedKillBy::Authrole(authrole) => KillBy::Authrole(authrole),
            OwnedKillBy::All => KillBy::All,
        }
    }
}

/// A session meta call waiting for the other shards.
#[derive(Debug)]
pub(super) struct Gather {
    caller: SessionHandle,
    request: Id,
    ask: Ask,
    /// Shards yet to answer.
    waiting: usize,
    ids: Vec<Id>,
    details: Option<Value>,
    killed: u64,
    deadline: u64,
    /// Some answer was itself partial (a backplane gathering from other nodes).
    partial: bool,
}

impl Router {
    /// `wamp.session.count|list|get|kill*` from `handle`: answered now (one shard, or a session of this shard),
    /// or once the other shards have answered.
    pub(super) fn session_meta_call(
        &mut self,
        handle: SessionHandle,
        request: Id,
        procedure: &str,
        payload: &Payload<'_>,
        sink: &mut impl Sink,
    ) {
        let (Some(caller), Some((realm, own_id))) = (
            self.peer(handle),
            self.joined(handle).map(|j| (j.realm, j.id)),
        ) else {
            return;
        };
        let ask = match parse(procedure, payload) {
            Ok(ask) => ask,
            Err((uri, text)) => {
                return self.send_error(sink, caller, MessageType::Call, request, uri, &text)
            }
        };
        let mut gather = Gather {
            caller: handle,
            request,
            ask,
            waiting: 0,
            ids: Vec::new(),
            details: None,
            killed: 0,
            deadline: self.now_ms + GATHER_TIMEOUT_MS,
            partial: false,
        };
        // This shard's own part.
        match gather.ask.clone() {
            Ask::Count { roles } | Ask::List { roles } => {
                gather.ids = self.local_sessions(realm, roles.as_deref());
            }
            Ask::Get(id) => {
                if id == own_id {
                    gather.details = self.joined(handle).map(super::meta::session_details);
                } else {
                    gather.details = self.local_details(realm, id);
                }
            }
            Ask::Kill {
                by,
                reason,
                message,
            } => {
                if matches!(by, OwnedKillBy::Session(id) if id == own_id) {
                    // "no *other* session with that ID": never the caller itself.
                    let text = format!("no other session {own_id} in this realm");
                    return self.send_error(
                        sink,
                        caller,
                        MessageType::Call,
                        request,
                        NO_SUCH_SESSION,
                        &text,
                    );
                }
                gather.killed = self.kill_local(
                    realm,
                    by.borrow(),
                    own_id,
                    &reason,
                    message.as_deref(),
                    sink,
                );
            }
        }
        let done_here = match &gather.ask {
            Ask::Get(_) => gather.details.is_some(),
            Ask::Kill {
                by: OwnedKillBy::Session(_),
                ..
            } => gather.killed > 0,
            _ => false,
        };
        let others = self.others();
        if done_here || others.is_empty() {
            return self.finish_gather(gather, false, sink);
        }
        let token = self.token();
        let mut roles_packed = Vec::new();
        let query = match &gather.ask {
            Ask::Count { roles } | Ask::List { roles } => SessionQuery::List {
                roles: roles.as_ref().map(|roles| {
                    link::pack_strs(roles.iter().map(String::as_str), &mut roles_packed);
                    &roles_packed[..]
                }),
            },
            Ask::Get(id) => SessionQuery::Get { session: *id },
            Ask::Kill {
                by,
                reason,
                message,
            } => SessionQuery::Kill {
                by: by.borrow(),
                except: own_id,
                reason,
                message: message.as_deref(),
            },
        };
        let msg = PeerMessage::SessionQuery {
            token,
            realm: realm as u16,
            query,
        };
        sink.peer(others, &msg);
        gather.waiting = others.len();
        self.gather_deadlines.push_back((gather.deadline, token));
        self.gathers.insert(token, gather);
    }

    /// A question from shard `from` about this shard's sessions of `realm`.
    pub(super) fn on_session_query(
        &mut self,
        from: ShardId,
        token: u64,
        realm: usize,
        query: SessionQuery<'_>,
        sink: &mut impl Sink,
    ) {
        let mut packed = Vec::new();
        let mut details = Vec::new();
        let answer = match query {
            SessionQuery::List { roles } => {
                let roles = match roles.map(link::unpack_strs) {
                    Some(Some(roles)) => Some(roles),
                    Some(None) => Some(Vec::new()),
                    None => None,
                };
                let roles: Option<Vec<String>> =
                    roles.map(|roles| roles.into_iter().map(str::to_owned).collect());
                link::pack_ids(self.local_sessions(realm, roles.as_deref()), &mut packed);
                SessionAnswer::Ids(&packed)
            }
            SessionQuery::Get { session } => match self.local_details(realm, session) {
                Some(value) => {
                    kreisel_codec::encode_field(
                        Serializer::Json,
                        &Field::Value(&value),
                        &mut details,
                    );
                    SessionAnswer::Details(Some(RawValue::trusted(Serializer::Json, &details)))
                }
                None => SessionAnswer::Details(None),
            },
            SessionQuery::Kill {
                by,
                except,
                reason,
                message,
            } => SessionAnswer::Killed(self.kill_local(realm, by, except, reason, message, sink)),
        };
        sink.peer(
            ShardSet::one(from),
            &PeerMessage::SessionAnswer {
                token,
                answer,
                partial: false,
            },
        );
    }

    /// An answer to one of this shard's questions. Returns false for an unknown token (late, or a bug).
    pub(super) fn on_session_answer(
        &mut self,
        token: u64,
        answer: SessionAnswer<'_>,
        partial: bool,
        sink: &mut impl Sink,
    ) -> bool {
        let Some(gather) = self.gathers.get_mut(&token) else {
            return false;
        };
        gather.waiting = gather.waiting.saturating_sub(1);
        gather.partial |= partial;
        match answer {
            SessionAnswer::Ids(ids) => gather.ids.extend(link::unpack_ids(ids)),
            SessionAnswer::Details(Some(details)) => gather.details = Some(details.to_value()),
            SessionAnswer::Details(None) => {}
            SessionAnswer::Killed(count) => gather.killed += count,
        }
        let found = gather.details.is_some();
        if gather.waiting == 0 || found {
            if let Some(gather) = self.gathers.remove(&token) {
                let partial = gather.partial && !found;
                self.finish_gather(gather, partial, sink);
            }
        }
        true
    }

    /// The next deadline of a session meta call waiting for other shards.
    pub(super) fn next_gather_deadline(&self) -> Option<u64> {
        self.gather_deadlines.front().map(|&(deadline, _)| deadline)
    }

    /// Answers the session meta calls whose other shards did not all answer in time, with what they have.
    pub(super) fn expire_gathers(&mut self, now_ms: u64, sink: &mut impl Sink) {
        while let Some(&(deadline, token)) = self.gather_deadlines.front() {
            if deadline > now_ms {
                break;
            }
            self.gather_deadlines.pop_front();
            if let Some(gather) = self.gathers.remove(&token) {
                warn!(
                    missing = gather.waiting,
                    "session meta call: not every shard answered in time; answering with what they sent"
                );
                self.finish_gather(gather, true, sink);
            }
        }
        // Finished gathers leave their deadline entries behind: drop them once they are most of the queue.
        if self.gather_deadlines.len() > 2 * self.gathers.len() + 64 {
            let gathers = &self.gathers;
            self.gather_deadlines
                .retain(|(_, token)| gathers.contains_key(token));
        }
    }

    fn finish_gather(&mut self, gather: Gather, partial: bool, sink: &mut impl Sink) {
        let Some(caller) = self.peer(gather.caller) else {
            return;
        };
        let outcome: Result<Vec<Value>, Refusal> = match gather.ask {
            Ask::Count { .. } => Ok(vec![Value::UInt(gather.ids.len() as u64)]),
            Ask::List { .. } => Ok(vec![Value::List(
                gather.ids.into_iter().map(Value::from).collect(),
            )]),
            Ask::Get(id) => gather
                .details
                .map(|details| vec![details])
                .ok_or_else(|| no_such(id)),
            Ask::Kill {
                by: OwnedKillBy::Session(id),
                ..
            } => {
                if gather.killed > 0 {
                    Ok(Vec::new())
                } else {
                    Err(no_such(id))
                }
            }
            Ask::Kill { .. } => Ok(vec![Value::UInt(gather.killed)]),
        };
        let partial_details = Value::dict().with("x_kreisel_partial", true);
        let details = if partial {
            Dict::Value(&partial_details)
        } else {
            Dict::EMPTY
        };
        self.answer_meta(caller, gather.request, outcome, details, sink);
    }

    /// This shard's sessions of `realm` whose authrole is among `roles` (all when `None`).
    fn local_sessions(&self, realm: usize, roles: Option<&[String]>) -> Vec<Id> {
        (self.sessions.iter())
            .filter_map(|(_, session)| session.joined())
            .filter(|joined| joined.realm == realm)
            .filter(|joined| {
                roles.is_none_or(|roles| roles.iter().any(|r| **r == *joined.authrole))
            })
            .map(|joined| joined.id)
            .collect()
    }

    /// The details of session `id` if it is one of this shard's in `realm`.
    fn local_details(&self, realm: usize, id: Id) -> Option<Value> {
        // A scan: meta calls are rare, and an index by ID would cost every session memory.
        (self.sessions.iter())
            .filter_map(|(_, session)| session.joined())
            .find(|joined| joined.id == id && joined.realm == realm)
            .map(super::meta::session_details)
    }

    /// GOODBYE to this shard's sessions of `realm` chosen by `by`, never to `except`; returns how many.
    fn kill_local(
        &mut self,
        realm: usize,
        by: KillBy<'_>,
        except: Id,
        reason: &str,
        message: Option<&str>,
        sink: &mut impl Sink,
    ) -> u64 {
        let targets: Vec<SessionHandle> = (self.sessions.iter())
            .filter_map(|(_, session)| Some((session.peer.session, session.joined()?)))
            .filter(|(_, joined)| joined.realm == realm && joined.id != except)
            .filter(|(_, joined)| match by {
                KillBy::Session(id) => joined.id == id,
                KillBy::Authid(authid) => *joined.authid == *authid,
                KillBy::Authrole(authrole) => *joined.authrole == *authrole,
                KillBy::All => true,
            })
            .map(|(handle, _)| handle)
            .collect();
        for &target in &targets {
            self.goodbye_from_router(target, reason, message, sink);
        }
        targets.len() as u64
    }
}

/// The question a session meta call asks, from its arguments.
fn parse(procedure: &str, payload: &Payload<'_>) -> Result<Ask, Refusal> {
    use super::meta::{argument, keyword, KILLED};
    let roles = || -> Result<Option<Vec<String>>, Refusal> {
        match argument(payload, 0) {
            None => Ok(None),
            Some(roles) if roles.is_null() => Ok(None),
            Some(roles) => match roles.list() {
                Some(roles) => Ok(Some(
                    roles
                        .filter_map(|r| r.as_str().map(|r| r.into_owned()))
                        .collect(),
                )),
                None => Err((
                    INVALID_ARGUMENT,
                    "filter_authroles must be a list of strings".into(),
                )),
            },
        }
    };
    let session = || -> Result<Id, Refusal> {
        argument(payload, 0)
            .and_then(|id| id.as_u64())
            .and_then(Id::new)
            .ok_or_else(|| {
                (
                    INVALID_ARGUMENT,
                    format!("{procedure} expects (session|id)"),
                )
            })
    };
    Ok(match procedure {
        "wamp.session.count" => Ask::Count { roles: roles()? },
        "wamp.session.list" => Ask::List { roles: roles()? },
        "wamp.session.get" => Ask::Get(session()?),
        _ => {
            let reason = match keyword(payload, "reason") {
                None => KILLED.to_owned(),
                Some(reason) => match reason.as_str() {
                    Some(reason)
                        if uri::is_valid(&reason, uri::UriCheck::Loose, MatchPolicy::Exact) =>
                    {
                        reason.into_owned()
                    }
                    _ => {
                        let text = format!("{procedure}: reason must be a valid URI");
                        return Err((INVALID_URI, text));
                    }
                },
            };
            let message = match keyword(payload, "message") {
                None => None,
                Some(message) => match message.as_str() {
                    Some(message) => Some(message.into_owned()),
                    None => {
                        let text = format!("{procedure}: message must be a string");
                        return Err((INVALID_ARGUMENT, text));
                    }
                },
            };
            let named = || -> Result<String, Refusal> {
                match argument(payload, 0).and_then(|a| a.as_str().map(|a| a.into_owned())) {
                    Some(named) => Ok(named),
                    None => Err((
                        INVALID_ARGUMENT,
                        format!("{procedure} expects one string argument"),
                    )),
                }
            };
            let by = match procedure {
                "wamp.session.kill" => OwnedKillBy::Session(session()?),
                "wamp.session.kill_by_authid" => OwnedKillBy::Authid(named()?),
                "wamp.session.kill_by_authrole" => OwnedKillBy::Authrole(named()?),
                _ => OwnedKillBy::All,
            };
            Ask::Kill {
                by,
                reason,
                message,
            }
        }
    })
}

fn no_such(id: Id) -> Refusal {
    (
        NO_SUCH_SESSION,
        format!("no other session {id} in this realm"),
    )
}
