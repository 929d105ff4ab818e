//! Sessions: one slot per transport connection, holding the WAMP session joined over it, if any.

use kreisel_codec::{Id, Value};
use smallvec::SmallVec;

use crate::auth::{Method, Pending};
use crate::authz::RoleIndex;
use crate::features::ClientFeatures;
use crate::router::Peer;

/// A handle to a session slot: the slab index plus a generation, so that a stale handle (kept in a timer or a
/// cross-shard message) never reaches a slot that was freed and reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionHandle {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

/// The phase of a transport connection's WAMP conversation.
// Nearly every slot is `Established`: boxing `Joined` would save nothing and add a pointer chase to every message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Phase {
    /// Waiting for HELLO (also after a GOODBYE exchange: the transport may join again).
    Handshake,
    /// HELLO was answered with CHALLENGE; waiting for AUTHENTICATE.
    Authenticating(Box<Authenticating>),
    /// Joined a realm.
    Established(Joined),
    /// The router said GOODBYE (shutdown, kill) and waits for the peer's GOODBYE.
    Closing,
    /// The router decided to close the transport (after ABORT); nothing more is processed.
    Closed,
}

/// A session between CHALLENGE and AUTHENTICATE.
#[derive(Debug)]
pub(crate) struct Authenticating {
    pub realm: usize,
    /// The session ID the challenge announced (WAMP-CRA puts it into the signed challenge).
    pub id: Id,
    pub features: ClientFeatures,
    pub pending: Pending,
    /// When the attempt times out (engine milliseconds).
    pub deadline: u64,
}

/// State of a session joined to a realm.
#[derive(Debug)]
pub(crate) struct Joined {
    pub id: Id,
    pub realm: usize,
    pub authid: Box<str>,
    pub authrole: Box<str>,
    pub authmethod: Method,
    /// The session's role in its realm's authorizer.
    pub role: RoleIndex,
    /// Subscriptions this session holds (indexes into its realm's broker).
    pub subscriptions: SmallVec<[usize; 4]>,
    /// Registrations this session holds (indexes into its realm's dealer).
    pub registrations: SmallVec<[usize; 2]>,
    /// Heads of the intrusive lists of pending calls this session is caller / callee of.
    pub calls_as_caller: Option<usize>,
    pub calls_as_callee: Option<usize>,
    /// Next INVOCATION request ID (session scope, router-chosen).
    pub next_invocation: Id,
    /// Calls this session made that are still pending (bounded by `calls_per_session_max`).
    pub calls_pending: usize,
    /// What the client announced in HELLO that the router acts on.
    pub features: ClientFeatures,
    /// Progressive calls of this caller that ended before their final chunk (their further chunks are dropped).
    pub ended_streams: Vec<Id>,
    /// Events to publish when the session leaves (`wamp.session.add_testament`), in the order added.
    pub testaments: Vec<Testament>,
}

/// When a testament is published. Without session resumption both happen when the session leaves, `detached`
/// first; the scopes only matter to `wamp.session.flush_testaments`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TestamentScope {
    Detached,
    Destroyed,
}

/// A testament: a publication stored with the session (owned: its CALL's frame is gone when it is published).
#[derive(Debug)]
pub(crate) struct Testament {
    pub scope: TestamentScope,
    pub topic: Box<str>,
    pub args: Option<Value>,
    pub kwargs: Option<Value>,
    /// The publish options, a dictionary.
    pub options: Value,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub generation: u32,
    pub peer: Peer,
    pub phase: Phase,
}

impl Session {
    pub fn joined(&self) -> Option<&Joined> {
        match &self.phase {
            Phase::Established(joined) => Some(joined),
            _ => None,
        }
    }

    pub fn joined_mut(&mut self) -> Option<&mut Joined> {
        match &mut self.phase {
            Phase::Established(joined) => Some(joined),
            _ => None,
        }
    }
}
