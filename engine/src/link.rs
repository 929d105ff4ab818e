//! The link between the parts of one logical router: the messages a shard sends to the other shards of its
//! process (and, later, a node to the other nodes of a cluster), and their encoding.
//!
//! A shard routes for the sessions it owns and keeps, for everything else, what it needs to route without asking:
//! the directory of every session of its realms (`SessionJoined`, `SessionLeft`), who subscribes to what
//! (`Subscribed`, `Unsubscribed`) and every registration with its callees (`RegistrationAdded`,
//! `RegistrationRemoved`, decided by the procedure's owner shard on `Register`/`Unregister`). Traffic crosses only
//! where it must: a `Publish` goes once to each shard with a matching subscriber (to all of them when the event is
//! retained); a `Call` goes to the callee's shard, which owns the call from then on and answers through `ToCaller`;
//! the caller's shard relays `CallChunk`, `Cancel` and `CallerGone`. Changes a client is told about wait for
//! `Ack`s: SUBSCRIBED and REGISTERED go out only once every shard has installed the change.
//!
//! The engine never touches threads or sockets: it hands a message to [`crate::Sink::peer`] with the set of
//! shards it is for, and takes one through [`crate::Router::handle_peer`]. The encoding ([`encode`], [`decode`])
//! is a flat binary layout with every variable part inline, so that the `io` layer can put it into one shared
//! buffer per message, whatever the number of receivers, and a later network link can send the same bytes.
//! Payloads travel as the bytes the client sent, with their serializer: never re-encoded on the way.

use kreisel_codec::{Id, RawValue, Serializer};

use crate::session::SessionHandle;
use crate::uri::MatchPolicy;

/// The index of a shard within its router (0-based).
pub type ShardId = u16;

/// Most shards a router may have (a [`ShardSet`] is a 64-bit mask).
pub const SHARDS_MAX: usize = 64;

/// A set of shards, as a bit mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardSet(pub u64);

impl ShardSet {
    pub const EMPTY: ShardSet = ShardSet(0);

    pub fn one(shard: ShardId) -> ShardSet {
        ShardSet(1 << shard)
    }

    /// Every shard of a router with `shards` shards except `except`.
    pub fn all_but(shards: usize, except: ShardId) -> ShardSet {
        let all = if shards >= SHARDS_MAX {
            u64::MAX
        } else {
            (1u64 << shards) - 1
        };
        ShardSet(all & !(1 << except))
    }

    pub fn contains(self, shard: ShardId) -> bool {
        self.0 & (1 << shard) != 0
    }

    pub fn insert(&mut self, shard: ShardId) {
        self.0 |= 1 << shard;
    }

    pub fn remove(&mut self, shard: ShardId) {
        self.0 &= !(1 << shard);
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The shards in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = ShardId> {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            (rest != 0).then(|| {
                let shard = rest.trailing_zeros() as ShardId;
                rest &= rest - 1;
                shard
            })
        })
    }
}

impl std::ops::BitOr for ShardSet {
    type Output = ShardSet;
    fn bitor(self, other: ShardSet) -> ShardSet {
        ShardSet(self.0 | other.0)
    }
}

/// A session's identity as another shard sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Who<'a> {
    pub id: Id,
    pub authid: &'a str,
    pub authrole: &'a str,
}

/// A callee as the registration's other shards know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteCallee<'a> {
    pub shard: ShardId,
    pub handle: SessionHandle,
    pub session: Id,
    /// Its role's name (each shard decides with its own copy of the realm's roles).
    pub authrole: &'a str,
    /// REGISTER `disclose_caller`.
    pub disclose_caller: bool,
}

/// What a shard tells another. Borrowed from a decoded buffer, or from the engine's own state when sent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PeerMessage<'a> {
    /// A session joined `realm` on the sending shard.
    SessionJoined {
        realm: u16,
        handle: SessionHandle,
        who: Who<'a>,
        authmethod: &'a str,
    },
    SessionLeft {
        realm: u16,
        session: Id,
    },
    /// A session of the sending shard subscribed to (policy, topic). With `ack` ≠ 0, the sender waits for
    /// [`PeerMessage::Ack`] before it answers SUBSCRIBED.
    Subscribed {
        realm: u16,
        policy: MatchPolicy,
        topic: &'a str,
        session: Id,
        ack: u64,
    },
    Unsubscribed {
        realm: u16,
        policy: MatchPolicy,
        topic: &'a str,
        session: Id,
    },
    /// The change with this token is installed.
    Ack {
        token: u64,
    },
    /// A publication, for the receiver's own subscribers (and, if `retain`, to be retained).
    Publish {
        realm: u16,
        publication: Id,
        topic: &'a str,
        /// The publisher (none for the router's meta events).
        publisher: Option<Who<'a>>,
        /// The publisher is to be disclosed (it asked, or its role or realm says so).
        disclose: bool,
        retain: bool,
        /// The PUBLISH options as the publisher sent them (black/white lists, passthru attributes).
        options: Option<RawValue<'a>>,
        args: Option<RawValue<'a>>,
        kwargs: Option<RawValue<'a>>,
    },
    /// To the owner of (policy, procedure): may this callee register it? The owner answers the origin with
    /// `RegisterRefused`, or tells every shard `RegistrationAdded`, each of which acks `token` to the origin.
    Register {
        realm: u16,
        policy: MatchPolicy,
        procedure: &'a str,
        invoke: u8,
        callee: RemoteCallee<'a>,
        token: u64,
    },
    RegisterRefused {
        token: u64,
        error: &'a str,
        text: &'a str,
    },
    RegistrationAdded {
        realm: u16,
        registration: Id,
        policy: MatchPolicy,
        procedure: &'a str,
        invoke: u8,
        created_ms: u64,
        callee: RemoteCallee<'a>,
        /// Ack to the callee's shard (`callee.shard`) with this token, 0: none wanted.
        token: u64,
    },
    /// To the owner: this callee no longer holds the registration.
    Unregister {
        realm: u16,
        registration: Id,
        session: Id,
    },
    RegistrationRemoved {
        realm: u16,
        registration: Id,
        session: Id,
    },
    /// A call for a callee of the receiving shard. `relay` names the call on the caller's shard.
    Call {
        realm: u16,
        relay: u64,
        caller: Who<'a>,
        /// What the caller announced (`ClientFeatures` bits the callee's side needs).
        caller_features: u16,
        callee: SessionHandle,
        registration: Id,
        procedure: &'a str,
        /// The caller's identity goes to the callee (asked for, or its role or realm says so).
        disclose: bool,
        /// The CALL options (timeout, receive_progress, progress, passthru attributes).
        options: Option<RawValue<'a>>,
        args: Option<RawValue<'a>>,
        kwargs: Option<RawValue<'a>>,
    },
    /// The next chunk of a progressive call (its caller sent another CALL with the same request ID).
    CallChunk {
        relay: u64,
        progress: bool,
        args: Option<RawValue<'a>>,
        kwargs: Option<RawValue<'a>>,
    },
    Cancel {
        relay: u64,
        mode: u8,
    },
    /// The caller left: its call ends without an answer.
    CallerGone {
        relay: u64,
    },
    /// An answer for the caller of `relay`: RESULT (`error` empty; `progress` for a progressive result) or
    /// ERROR `error`, with the callee's `options` (YIELD options or ERROR details: their passthru attributes go
    /// on) and payload, or, when `text` is not empty, the router's own ERROR with that text. `last`: the call
    /// ended.
    ToCaller {
        relay: u64,
        last: bool,
        progress: bool,
        error: &'a str,
        text: &'a str,
        options: Option<RawValue<'a>>,
        args: Option<RawValue<'a>>,
        kwargs: Option<RawValue<'a>>,
    },
    /// `wamp.session.kill*` for a session of the receiving shard.
    Kill {
        handle: SessionHandle,
        reason: &'a str,
        message: Option<&'a str>,
    },
    /// A question of the session meta API about the receiving shard's sessions of `realm`; answered with
    /// [`PeerMessage::SessionAnswer`] and the same token. (Shards keep no directory of each other's sessions: a
    /// session costs memory on its own shard only.)
    SessionQuery {
        token: u64,
        realm: u16,
        query: SessionQuery<'a>,
    },
    SessionAnswer {
        token: u64,
        answer: SessionAnswer<'a>,
        /// Not everything asked answered in time (a backplane gathering from other nodes): the caller's RESULT
        /// says so (`x_kreisel_partial`).
        partial: bool,
    },
    /// To the backplane of a cluster node: session `session` now has these testaments (a list that
    /// [`unpack_testaments`] reads, in the order they would be published; empty: none), so that another node can
    /// publish them if this node dies.
    Testaments {
        realm: u16,
        session: Id,
        items: &'a [u8],
    },
}

impl<'a> PeerMessage<'a> {
    /// The same message under another relay number: a relayed call's messages (CALL, its chunks, CANCEL, the
    /// caller gone, the answers to the caller) are numbered per link, and a node renumbers them as it passes them
    /// on. Other messages are returned unchanged.
    pub fn with_relay(mut self, number: u64) -> PeerMessage<'a> {
        match &mut self {
            PeerMessage::Call { relay, .. }
            | PeerMessage::CallChunk { relay, .. }
            | PeerMessage::Cancel { relay, .. }
            | PeerMessage::CallerGone { relay }
            | PeerMessage::ToCaller { relay, .. } => *relay = number,
            _ => {}
        }
        self
    }
}

/// One testament as [`PeerMessage::Testaments`] carries it: already authorized for publication when added
/// (`disclose`: the role's rule discloses the publisher).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TestamentItem<'a> {
    pub topic: &'a str,
    pub disclose: bool,
    pub options: Option<RawValue<'a>>,
    pub args: Option<RawValue<'a>>,
    pub kwargs: Option<RawValue<'a>>,
}

/// Appends one testament to a [`PeerMessage::Testaments`] list.
pub fn pack_testament(item: &TestamentItem<'_>, out: &mut Vec<u8>) {
    let mut w = Writer(out);
    w.str(item.topic);
    w.u8(u8::from(item.disclose));
    w.raw(item.options);
    w.raw(item.args);
    w.raw(item.kwargs);
}

/// The testaments of a [`PeerMessage::Testaments`] list (`trusted` as for [`decode`]); `None` if it is malformed.
pub fn unpack_testaments(bytes: &[u8], trusted: bool) -> Option<Vec<TestamentItem<'_>>> {
    let mut r = Reader { bytes, trusted };
    let mut items = Vec::new();
    while !r.bytes.is_empty() {
        items.push(TestamentItem {
            topic: r.str().ok()?,
            disclose: r.u8().ok()? != 0,
            options: r.raw().ok()?,
            args: r.raw().ok()?,
            kwargs: r.raw().ok()?,
        });
    }
    Some(items)
}

/// See [`PeerMessage::SessionQuery`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionQuery<'a> {
    /// The IDs of the sessions whose authrole is among `roles` (a [`pack_strs`] list; all sessions when `None`).
    List { roles: Option<&'a [u8]> },
    /// The details of session `session`, if it is one of the receiver's.
    Get { session: Id },
    /// GOODBYE with `reason` (and `message`) to the sessions chosen by `by`, never to session `except` (the
    /// caller); answered with how many.
    Kill {
        by: KillBy<'a>,
        except: Id,
        reason: &'a str,
        message: Option<&'a str>,
    },
}

/// Which sessions `wamp.session.kill*` ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillBy<'a> {
    Session(Id),
    Authid(&'a str),
    Authrole(&'a str),
    All,
}

/// See [`PeerMessage::SessionAnswer`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SessionAnswer<'a> {
    /// Session IDs, 8 bytes each, little endian ([`unpack_ids`]).
    Ids(&'a [u8]),
    /// The session's details (`wamp.session.get`'s result), or nothing: not a session of the receiver.
    Details(Option<RawValue<'a>>),
    Killed(u64),
}

/// A list of strings as [`SessionQuery::List`] carries it.
pub fn pack_strs<'s>(strs: impl IntoIterator<Item = &'s str>, out: &mut Vec<u8>) {
    for s in strs {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
}

/// The strings of a [`pack_strs`] list; `None` if it is malformed.
pub fn unpack_strs(mut bytes: &[u8]) -> Option<Vec<&str>> {
    let mut strs = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let (s, rest) = (rest.get(..len)?, rest.get(len..)?);
        strs.push(std::str::from_utf8(s).ok()?);
        bytes = rest;
    }
    Some(strs)
}

/// Session IDs as [`SessionAnswer::Ids`] carries them.
pub fn pack_ids(ids: impl IntoIterator<Item = Id>, out: &mut Vec<u8>) {
    for id in ids {
        out.extend_from_slice(&id.get().to_le_bytes());
    }
}

/// The IDs of a [`pack_ids`] list (a trailing partial entry and invalid IDs are skipped).
pub fn unpack_ids(bytes: &[u8]) -> impl Iterator<Item = Id> + '_ {
    bytes
        .chunks_exact(8)
        .filter_map(|chunk| chunk.try_into().ok())
        .filter_map(|chunk| Id::new(u64::from_le_bytes(chunk)))
}

/// A link message that does not decode (only a bug or a corrupted peer produces one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkError(pub &'static str);

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed link message: {}", self.0)
    }
}

impl std::error::Error for LinkError {}

mod kind {
    pub const SESSION_JOINED: u8 = 1;
    pub const SESSION_LEFT: u8 = 2;
    pub const SUBSCRIBED: u8 = 3;
    pub const UNSUBSCRIBED: u8 = 4;
    pub const ACK: u8 = 5;
    pub const PUBLISH: u8 = 6;
    pub const REGISTER: u8 = 7;
    pub const REGISTER_REFUSED: u8 = 8;
    pub const REGISTRATION_ADDED: u8 = 9;
    pub const UNREGISTER: u8 = 10;
    pub const REGISTRATION_REMOVED: u8 = 11;
    pub const CALL: u8 = 12;
    pub const CALL_CHUNK: u8 = 13;
    pub const CANCEL: u8 = 14;
    pub const CALLER_GONE: u8 = 15;
    pub const TO_CALLER: u8 = 16;
    pub const KILL: u8 = 17;
    pub const SESSION_QUERY: u8 = 18;
    pub const SESSION_ANSWER: u8 = 19;
    pub const TESTAMENTS: u8 = 20;
}

/// Appends `msg` to `out`.
pub fn encode(msg: &PeerMessage<'_>, out: &mut Vec<u8>) {
    let mut w = Writer(out);
    match *msg {
        PeerMessage::SessionJoined {
            realm,
            handle,
            who,
            authmethod,
        } => {
            w.u8(kind::SESSION_JOINED);
            w.u16(realm);
            w.handle(handle);
            w.who(who);
            w.str(authmethod);
        }
        PeerMessage::SessionLeft { realm, session } => {
            w.u8(kind::SESSION_LEFT);
            w.u16(realm);
            w.id(session);
        }
        PeerMessage::Subscribed {
            realm,
            policy,
            topic,
            session,
            ack,
        } => {
            w.u8(kind::SUBSCRIBED);
            w.u16(realm);
            w.policy(policy);
            w.str(topic);
            w.id(session);
            w.u64(ack);
        }
        PeerMessage::Unsubscribed {
            realm,
            policy,
            topic,
            session,
        } => {
            w.u8(kind::UNSUBSCRIBED);
            w.u16(realm);
            w.policy(policy);
            w.str(topic);
            w.id(session);
        }
        PeerMessage::Ack { token } => {
            w.u8(kind::ACK);
            w.u64(token);
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
        } => {
            w.u8(kind::PUBLISH);
            w.u16(realm);
            w.id(publication);
            w.str(topic);
            w.option(publisher, Writer::who);
            w.u8(u8::from(disclose) | u8::from(retain) << 1);
            w.raw(options);
            w.raw(args);
            w.raw(kwargs);
        }
        PeerMessage::Register {
            realm,
            policy,
            procedure,
            invoke,
            callee,
            token,
        } => {
            w.u8(kind::REGISTER);
            w.u16(realm);
            w.policy(policy);
            w.str(procedure);
            w.u8(invoke);
            w.callee(callee);
            w.u64(token);
        }
        PeerMessage::RegisterRefused { token, error, text } => {
            w.u8(kind::REGISTER_REFUSED);
            w.u64(token);
            w.str(error);
            w.str(text);
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
        } => {
            w.u8(kind::REGISTRATION_ADDED);
            w.u16(realm);
            w.id(registration);
            w.policy(policy);
            w.str(procedure);
            w.u8(invoke);
            w.u64(created_ms);
            w.callee(callee);
            w.u64(token);
        }
        PeerMessage::Unregister {
            realm,
            registration,
            session,
        } => {
            w.u8(kind::UNREGISTER);
            w.u16(realm);
            w.id(registration);
            w.id(session);
        }
        PeerMessage::RegistrationRemoved {
            realm,
            registration,
            session,
        } => {
            w.u8(kind::REGISTRATION_REMOVED);
            w.u16(realm);
            w.id(registration);
            w.id(session);
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
        } => {
            w.u8(kind::CALL);
            w.u16(realm);
            w.u64(relay);
            w.who(caller);
            w.u16(caller_features);
            w.handle(callee);
            w.id(registration);
            w.str(procedure);
            w.u8(u8::from(disclose));
            w.raw(options);
            w.raw(args);
            w.raw(kwargs);
        }
        PeerMessage::CallChunk {
            relay,
            progress,
            args,
            kwargs,
        } => {
            w.u8(kind::CALL_CHUNK);
            w.u64(relay);
            w.u8(u8::from(progress));
            w.raw(args);
            w.raw(kwargs);
        }
        PeerMessage::Cancel { relay, mode } => {
            w.u8(kind::CANCEL);
            w.u64(relay);
            w.u8(mode);
        }
        PeerMessage::CallerGone { relay } => {
            w.u8(kind::CALLER_GONE);
            w.u64(relay);
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
            w.u8(kind::TO_CALLER);
            w.u64(relay);
            w.u8(u8::from(last) | u8::from(progress) << 1);
            w.str(error);
            w.str(text);
            w.raw(options);
            w.raw(args);
            w.raw(kwargs);
        }
        PeerMessage::Kill {
            handle,
            reason,
            message,
        } => {
            w.u8(kind::KILL);
            w.handle(handle);
            w.str(reason);
            w.option(message, Writer::str);
        }
        PeerMessage::SessionQuery {
            token,
            realm,
            query,
        } => {
            w.u8(kind::SESSION_QUERY);
            w.u64(token);
            w.u16(realm);
            match query {
                SessionQuery::List { roles } => {
                    w.u8(0);
                    w.option(roles, Writer::bytes);
                }
                SessionQuery::Get { session } => {
                    w.u8(1);
                    w.id(session);
                }
                SessionQuery::Kill {
                    by,
                    except,
                    reason,
                    message,
                } => {
                    w.u8(2);
                    match by {
                        KillBy::Session(id) => {
                            w.u8(0);
                            w.id(id);
                        }
                        KillBy::Authid(authid) => {
                            w.u8(1);
                            w.str(authid);
                        }
                        KillBy::Authrole(authrole) => {
                            w.u8(2);
                            w.str(authrole);
                        }
                        KillBy::All => w.u8(3),
                    }
                    w.id(except);
                    w.str(reason);
                    w.option(message, Writer::str);
                }
            }
        }
        PeerMessage::SessionAnswer {
            token,
            answer,
            partial,
        } => {
            w.u8(kind::SESSION_ANSWER);
            w.u64(token);
            w.u8(u8::from(partial));
            match answer {
                SessionAnswer::Ids(ids) => {
                    w.u8(0);
                    w.bytes(ids);
                }
                SessionAnswer::Details(details) => {
                    w.u8(1);
                    w.raw(details);
                }
                SessionAnswer::Killed(count) => {
                    w.u8(2);
                    w.u64(count);
                }
            }
        }
        PeerMessage::Testaments {
            realm,
            session,
            items,
        } => {
            w.u8(kind::TESTAMENTS);
            w.u16(realm);
            w.id(session);
            w.bytes(items);
        }
    }
}

/// Decodes one message (the whole of `bytes`). `trusted`: the bytes were encoded by this process from values it
/// had validated, so embedded WAMP values are not validated again (a network link passes `false`).
pub fn decode(bytes: &[u8], trusted: bool) -> Result<PeerMessage<'_>, LinkError> {
    let mut r = Reader { bytes, trusted };
    let msg = match r.u8()? {
        kind::SESSION_JOINED => PeerMessage::SessionJoined {
            realm: r.u16()?,
            handle: r.handle()?,
            who: r.who()?,
            authmethod: r.str()?,
        },
        kind::SESSION_LEFT => PeerMessage::SessionLeft {
            realm: r.u16()?,
            session: r.id()?,
        },
        kind::SUBSCRIBED => PeerMessage::Subscribed {
            realm: r.u16()?,
            policy: r.policy()?,
            topic: r.str()?,
            session: r.id()?,
            ack: r.u64()?,
        },
        kind::UNSUBSCRIBED => PeerMessage::Unsubscribed {
            realm: r.u16()?,
            policy: r.policy()?,
            topic: r.str()?,
            session: r.id()?,
        },
        kind::ACK => PeerMessage::Ack { token: r.u64()? },
        kind::PUBLISH => {
            let (realm, publication, topic) = (r.u16()?, r.id()?, r.str()?);
            let publisher = r.option(Reader::who)?;
            let flags = r.u8()?;
            PeerMessage::Publish {
                realm,
                publication,
                topic,
                publisher,
                disclose: flags & 1 != 0,
                retain: flags & 2 != 0,
                options: r.raw()?,
                args: r.raw()?,
                kwargs: r.raw()?,
            }
        }
        kind::REGISTER => PeerMessage::Register {
            realm: r.u16()?,
            policy: r.policy()?,
            procedure: r.str()?,
            invoke: r.u8()?,
            callee: r.callee()?,
            token: r.u64()?,
        },
        kind::REGISTER_REFUSED => PeerMessage::RegisterRefused {
            token: r.u64()?,
            error: r.str()?,
            text: r.str()?,
        },
        kind::REGISTRATION_ADDED => PeerMessage::RegistrationAdded {
            realm: r.u16()?,
            registration: r.id()?,
            policy: r.policy()?,
            procedure: r.str()?,
            invoke: r.u8()?,
            created_ms: r.u64()?,
            callee: r.callee()?,
            token: r.u64()?,
        },
        kind::UNREGISTER => PeerMessage::Unregister {
            realm: r.u16()?,
            registration: r.id()?,
            session: r.id()?,
        },
        kind::REGISTRATION_REMOVED => PeerMessage::RegistrationRemoved {
            realm: r.u16()?,
            registration: r.id()?,
            session: r.id()?,
        },
        kind::CALL => PeerMessage::Call {
            realm: r.u16()?,
            relay: r.u64()?,
            caller: r.who()?,
            caller_features: r.u16()?,
            callee: r.handle()?,
            registration: r.id()?,
            procedure: r.str()?,
            disclose: r.u8()? != 0,
            options: r.raw()?,
            args: r.raw()?,
            kwargs: r.raw()?,
        },
        kind::CALL_CHUNK => PeerMessage::CallChunk {
            relay: r.u64()?,
            progress: r.u8()? != 0,
            args: r.raw()?,
            kwargs: r.raw()?,
        },
        kind::CANCEL => PeerMessage::Cancel {
            relay: r.u64()?,
            mode: r.u8()?,
        },
        kind::CALLER_GONE => PeerMessage::CallerGone { relay: r.u64()? },
        kind::TO_CALLER => {
            let relay = r.u64()?;
            let flags = r.u8()?;
            PeerMessage::ToCaller {
                relay,
                last: flags & 1 != 0,
                progress: flags & 2 != 0,
                error: r.str()?,
                text: r.str()?,
                options: r.raw()?,
                args: r.raw()?,
                kwargs: r.raw()?,
            }
        }
        kind::KILL => PeerMessage::Kill {
            handle: r.handle()?,
            reason: r.str()?,
            message: r.option(Reader::str)?,
        },
        kind::SESSION_QUERY => {
            let (token, realm) = (r.u64()?, r.u16()?);
            let query = match r.u8()? {
                0 => SessionQuery::List {
                    roles: r.option(Reader::bytes)?,
                },
                1 => SessionQuery::Get { session: r.id()? },
                2 => {
                    let by = match r.u8()? {
                        0 => KillBy::Session(r.id()?),
                        1 => KillBy::Authid(r.str()?),
                        2 => KillBy::Authrole(r.str()?),
                        3 => KillBy::All,
                        _ => return Err(LinkError("unknown kill criterion")),
                    };
                    SessionQuery::Kill {
                        by,
                        except: r.id()?,
                        reason: r.str()?,
                        message: r.option(Reader::str)?,
                    }
                }
                _ => return Err(LinkError("unknown session query")),
            };
            PeerMessage::SessionQuery {
                token,
                realm,
                query,
            }
        }
        kind::SESSION_ANSWER => {
            let token = r.u64()?;
            let partial = r.u8()? != 0;
            let answer = match r.u8()? {
                0 => SessionAnswer::Ids(r.bytes()?),
                1 => SessionAnswer::Details(r.raw()?),
                2 => SessionAnswer::Killed(r.u64()?),
                _ => return Err(LinkError("unknown session answer")),
            };
            PeerMessage::SessionAnswer {
                token,
                answer,
                partial,
            }
        }
        kind::TESTAMENTS => {
            let (realm, session) = (r.u16()?, r.id()?);
            let items = r.bytes()?;
            if !r.trusted && unpack_testaments(items, false).is_none() {
                return Err(LinkError("malformed testaments"));
            }
            PeerMessage::Testaments {
                realm,
                session,
                items,
            }
        }
        _ => return Err(LinkError("unknown message kind")),
    };
    if !r.bytes.is_empty() {
        return Err(LinkError("bytes after the message"));
    }
    Ok(msg)
}

struct Writer<'o>(&'o mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn id(&mut self, v: Id) {
        self.u64(v.get());
    }
    fn bytes(&mut self, v: &[u8]) {
        // A link message is at most a few times a WAMP message (≤ 16 MiB): lengths fit in 32 bits.
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    fn handle(&mut self, v: SessionHandle) {
        self.u32(v.index);
        self.u32(v.generation);
    }
    fn policy(&mut self, v: MatchPolicy) {
        self.u8(match v {
            MatchPolicy::Exact => 0,
            MatchPolicy::Prefix => 1,
            MatchPolicy::Wildcard => 2,
        });
    }
    fn who(&mut self, v: Who<'_>) {
        self.id(v.id);
        self.str(v.authid);
        self.str(v.authrole);
    }
    fn callee(&mut self, v: RemoteCallee<'_>) {
        self.u16(v.shard);
        self.handle(v.handle);
        self.id(v.session);
        self.str(v.authrole);
        self.u8(u8::from(v.disclose_caller));
    }
    fn raw(&mut self, v: Option<RawValue<'_>>) {
        match v {
            None => self.u8(0),
            Some(raw) => {
                self.u8(raw.serializer().rawsocket_id());
                self.bytes(raw.bytes());
            }
        }
    }
    fn option<T: Copy>(&mut self, v: Option<T>, write: impl FnOnce(&mut Self, T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                write(self, v);
            }
        }
    }
}

struct Reader<'b> {
    bytes: &'b [u8],
    trusted: bool,
}

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8], LinkError> {
        if self.bytes.len() < n {
            return Err(LinkError("truncated"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], LinkError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, LinkError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, LinkError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, LinkError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, LinkError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn id(&mut self) -> Result<Id, LinkError> {
        Id::new(self.u64()?).ok_or(LinkError("ID out of range"))
    }
    fn bytes(&mut self) -> Result<&'b [u8], LinkError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    fn str(&mut self) -> Result<&'b str, LinkError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| LinkError("string is not UTF-8"))
    }
    fn handle(&mut self) -> Result<SessionHandle, LinkError> {
        Ok(SessionHandle {
            index: self.u32()?,
            generation: self.u32()?,
        })
    }
    fn policy(&mut self) -> Result<MatchPolicy, LinkError> {
        match self.u8()? {
            0 => Ok(MatchPolicy::Exact),
            1 => Ok(MatchPolicy::Prefix),
            2 => Ok(MatchPolicy::Wildcard),
            _ => Err(LinkError("unknown match policy")),
        }
    }
    fn who(&mut self) -> Result<Who<'b>, LinkError> {
        Ok(Who {
            id: self.id()?,
            authid: self.str()?,
            authrole: self.str()?,
        })
    }
    fn callee(&mut self) -> Result<RemoteCallee<'b>, LinkError> {
        Ok(RemoteCallee {
            shard: self.u16()?,
            handle: self.handle()?,
            session: self.id()?,
            authrole: self.str()?,
            disclose_caller: self.u8()? != 0,
        })
    }
    fn raw(&mut self) -> Result<Option<RawValue<'b>>, LinkError> {
        let tag = self.u8()?;
        if tag == 0 {
            return Ok(None);
        }
        let serializer =
            Serializer::from_rawsocket_id(tag).ok_or(LinkError("unknown serializer"))?;
        let bytes = self.bytes()?;
        if self.trusted {
            Ok(Some(RawValue::trusted(serializer, bytes)))
        } else {
            RawValue::parse(serializer, bytes)
                .map(Some)
                .map_err(|_| LinkError("embedded value does not decode"))
        }
    }
    fn option<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, LinkError>,
    ) -> Result<Option<T>, LinkError> {
        match self.u8()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            _ => Err(LinkError("bad option tag")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> Id {
        Id::new(n).unwrap()
    }

    fn raw(text: &str) -> RawValue<'_> {
        RawValue::parse(Serializer::Json, text.as_bytes()).unwrap()
    }

    fn samples<'a>(
        args: RawValue<'a>,
        mp: RawValue<'a>,
        testaments: &'a [u8],
    ) -> Vec<PeerMessage<'a>> {
        let who = Who {
            id: id(7),
            authid: "alice",
            authrole: "user",
        };
        let handle = SessionHandle {
            index: 3,
            generation: 9,
        };
        let callee = RemoteCallee {
            shard: 2,
            handle,
            session: id(8),
            authrole: "backend",
            disclose_caller: true,
        };
        vec![
            PeerMessage::SessionJoined {
                realm: 1,
                handle,
                who,
                authmethod: "ticket",
            },
            PeerMessage::SessionLeft {
                realm: 1,
                session: id(7),
            },
            PeerMessage::Subscribed {
                realm: 0,
                policy: MatchPolicy::Prefix,
                topic: "com.",
                session: id(7),
                ack: 42,
            },
            PeerMessage::Unsubscribed {
                realm: 0,
                policy: MatchPolicy::Wildcard,
                topic: "a..b",
                session: id(7),
            },
            PeerMessage::Ack { token: 5 },
            PeerMessage::Publish {
                realm: 0,
                publication: id(99),
                topic: "com.x",
                publisher: Some(who),
                disclose: true,
                retain: false,
                options: Some(raw(r#"{"exclude":[1]}"#)),
                args: Some(args),
                kwargs: Some(mp),
            },
            PeerMessage::Publish {
                realm: 0,
                publication: id(99),
                topic: "wamp.session.on_join",
                publisher: None,
                disclose: false,
                retain: true,
                options: None,
                args: None,
                kwargs: None,
            },
            PeerMessage::Register {
                realm: 0,
                policy: MatchPolicy::Exact,
                procedure: "com.p",
                invoke: 1,
                callee,
                token: 77,
            },
            PeerMessage::RegisterRefused {
                token: 77,
                error: "wamp.error.procedure_already_exists",
                text: "taken",
            },
            PeerMessage::RegistrationAdded {
                realm: 0,
                registration: id(5),
                policy: MatchPolicy::Exact,
                procedure: "com.p",
                invoke: 1,
                created_ms: 123,
                callee,
                token: 77,
            },
            PeerMessage::Unregister {
                realm: 0,
                registration: id(5),
                session: id(8),
            },
            PeerMessage::RegistrationRemoved {
                realm: 0,
                registration: id(5),
                session: id(8),
            },
            PeerMessage::Call {
                realm: 0,
                relay: 1 << 40 | 3,
                caller: who,
                caller_features: 0b101,
                callee: handle,
                registration: id(5),
                procedure: "com.p",
                disclose: false,
                options: Some(raw(r#"{"timeout":100}"#)),
                args: Some(args),
                kwargs: None,
            },
            PeerMessage::CallChunk {
                relay: 9,
                progress: true,
                args: Some(mp),
                kwargs: None,
            },
            PeerMessage::Cancel { relay: 9, mode: 2 },
            PeerMessage::CallerGone { relay: 9 },
            PeerMessage::ToCaller {
                relay: 9,
                last: true,
                progress: false,
                error: "wamp.error.canceled",
                text: "",
                options: Some(raw("{}")),
                args: Some(args),
                kwargs: Some(mp),
            },
            PeerMessage::ToCaller {
                relay: 9,
                last: false,
                progress: true,
                error: "",
                text: "",
                options: None,
                args: None,
                kwargs: None,
            },
            PeerMessage::Kill {
                handle,
                reason: "wamp.close.killed",
                message: Some("bye"),
            },
            PeerMessage::SessionQuery {
                token: 10,
                realm: 0,
                query: SessionQuery::List { roles: None },
            },
            PeerMessage::SessionQuery {
                token: 11,
                realm: 1,
                query: SessionQuery::List {
                    roles: Some(&[1, 0, 0, 0, b'a', 0, 0, 0, 0]),
                },
            },
            PeerMessage::SessionQuery {
                token: 12,
                realm: 0,
                query: SessionQuery::Get { session: id(77) },
            },
            PeerMessage::SessionQuery {
                token: 13,
                realm: 0,
                query: SessionQuery::Kill {
                    by: KillBy::Session(id(5)),
                    except: id(6),
                    reason: "wamp.close.killed",
                    message: None,
                },
            },
            PeerMessage::SessionQuery {
                token: 14,
                realm: 0,
                query: SessionQuery::Kill {
                    by: KillBy::Authid("alice"),
                    except: id(6),
                    reason: "x.y",
                    message: Some("go"),
                },
            },
            PeerMessage::SessionQuery {
                token: 15,
                realm: 0,
                query: SessionQuery::Kill {
                    by: KillBy::Authrole("guest"),
                    except: id(6),
                    reason: "x.y",
                    message: None,
                },
            },
            PeerMessage::SessionQuery {
                token: 16,
                realm: 0,
                query: SessionQuery::Kill {
                    by: KillBy::All,
                    except: id(6),
                    reason: "x.y",
                    message: None,
                },
            },
            PeerMessage::SessionAnswer {
                token: 10,
                answer: SessionAnswer::Ids(&[3, 0, 0, 0, 0, 0, 0, 0]),
                partial: true,
            },
            PeerMessage::SessionAnswer {
                token: 12,
                answer: SessionAnswer::Details(Some(mp)),
                partial: false,
            },
            PeerMessage::SessionAnswer {
                token: 12,
                answer: SessionAnswer::Details(None),
                partial: false,
            },
            PeerMessage::SessionAnswer {
                token: 13,
                answer: SessionAnswer::Killed(2),
                partial: false,
            },
            PeerMessage::Testaments {
                realm: 0,
                session: id(7),
                items: testaments,
            },
            PeerMessage::Testaments {
                realm: 0,
                session: id(7),
                items: &[],
            },
        ]
    }

    #[test]
    fn with_relay_renumbers_a_relayed_calls_messages_and_nothing_else() {
        let chunk = PeerMessage::CallChunk {
            relay: 9,
            progress: true,
            args: None,
            kwargs: None,
        };
        assert_eq!(
            chunk.with_relay(4),
            PeerMessage::CallChunk {
                relay: 4,
                progress: true,
                args: None,
                kwargs: None,
            }
        );
        assert_eq!(
            PeerMessage::Cancel { relay: 9, mode: 2 }.with_relay(4),
            PeerMessage::Cancel { relay: 4, mode: 2 }
        );
        assert_eq!(
            PeerMessage::CallerGone { relay: 9 }.with_relay(4),
            PeerMessage::CallerGone { relay: 4 }
        );
        let answer = PeerMessage::ToCaller {
            relay: 9,
            last: true,
            progress: false,
            error: "wamp.error.canceled",
            text: "gone",
            options: None,
            args: None,
            kwargs: None,
        };
        let PeerMessage::ToCaller { relay, error, .. } = answer.with_relay(4) else {
            panic!("still an answer");
        };
        assert_eq!((relay, error), (4, "wamp.error.canceled"));
        let other = PeerMessage::RegistrationRemoved {
            realm: 0,
            registration: Id::new(5).expect("id"),
            session: Id::new(8).expect("id"),
        };
        assert_eq!(other.with_relay(4), other);
    }

    #[test]
    fn packed_lists() {
        let mut strs = Vec::new();
        pack_strs(["anonymous", "", "ü"], &mut strs);
        assert_eq!(unpack_strs(&strs), Some(vec!["anonymous", "", "ü"]));
        assert_eq!(unpack_strs(&strs[..strs.len() - 1]), None);
        assert_eq!(unpack_strs(&[1, 0, 0, 0, 0xFF]), None, "not UTF-8");
        let mut ids = Vec::new();
        pack_ids([id(1), id(1 << 53)], &mut ids);
        assert_eq!(unpack_ids(&ids).collect::<Vec<_>>(), [id(1), id(1 << 53)]);
    }

    #[test]
    fn every_message_round_trips_and_truncation_is_an_error() {
        // {"k": 1} in MessagePack.
        let mp_bytes = [0x81, 0xA1, b'k', 0x01];
        let mp = RawValue::parse(Serializer::MsgPack, &mp_bytes).unwrap();
        let mut testaments = Vec::new();
        pack_testament(
            &TestamentItem {
                topic: "com.gone",
                disclose: true,
                options: Some(raw(r#"{"retain":true}"#)),
                args: Some(mp),
                kwargs: None,
            },
            &mut testaments,
        );
        assert_eq!(
            unpack_testaments(&testaments, false).map(|t| t.len()),
            Some(1)
        );
        for msg in samples(raw(r#"[1,"two",{"three":3}]"#), mp, &testaments) {
            let mut bytes = Vec::new();
            encode(&msg, &mut bytes);
            for trusted in [true, false] {
                assert_eq!(decode(&bytes, trusted), Ok(msg), "{msg:?}");
            }
            for cut in 0..bytes.len() {
                assert!(
                    decode(&bytes[..cut], false).is_err(),
                    "{msg:?} cut at {cut}"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(decode(&longer, false).is_err());
        }
        assert!(decode(&[200], false).is_err());
    }

    #[test]
    fn untrusted_embedded_values_are_validated() {
        let mut bytes = Vec::new();
        encode(
            &PeerMessage::CallChunk {
                relay: 1,
                progress: false,
                args: Some(raw("[1]")),
                kwargs: None,
            },
            &mut bytes,
        );
        // Corrupt the embedded JSON: "[1]" → "[1,"
        let at = bytes.len() - 2;
        bytes[at] = b',';
        assert!(decode(&bytes, false).is_err());
    }

    #[test]
    fn shard_sets() {
        let set = ShardSet::all_but(4, 2);
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 1, 3]);
        assert_eq!(set.len(), 3);
        assert!(!set.contains(2));
        assert_eq!(ShardSet::all_but(64, 0).len(), 63);
        let mut s = ShardSet::one(5);
        s.insert(1);
        s.remove(5);
        assert_eq!(s, ShardSet::one(1));
    }
}
