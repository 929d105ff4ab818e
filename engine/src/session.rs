//! Sessions: one slot per transport connection, holding the WAMP session joined over it, if any.

use kreisel_codec::{Id, Serializer};
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

/// One session's request: (session, request ID), the key of the dealer's pending-call maps. Hashed as a single
/// 16-octet word, which costs a hasher half of what the three fields written one by one do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RequestKey(u128);

impl RequestKey {
    pub fn new(session: SessionHandle, request: Id) -> RequestKey {
        let session = u64::from(session.index) << 32 | u64::from(session.generation);
        RequestKey(u128::from(session) << 64 | u128::from(request.get()))
    }
}

impl std::hash::Hash for RequestKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(self.0);
    }
}

/// A fast hasher for keys the router chooses itself, such as a callee's INVOCATION request IDs (sequential per
/// callee). Only for maps whose keys a peer cannot pick: a peer that chooses keys could make them collide, so
/// maps keyed by peer-chosen IDs or URIs keep std's randomly keyed SipHash.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RouterKeyHasher(u64);

impl RouterKeyHasher {
    /// A multiply-rotate step (the constant is 2^64 divided by the golden ratio, odd): every input bit reaches the
    /// high bits hashbrown takes its control byte from; `finish` folds them into the low bits it takes the bucket
    /// from.
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(23) ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl std::hash::Hasher for RouterKeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }
    fn write_u128(&mut self, n: u128) {
        self.mix(n as u64);
        self.mix((n >> 64) as u64);
    }
    fn finish(&self) -> u64 {
        // A product's low bits depend only on the factors' low bits: fold the well-mixed high half into them.
        self.0 ^ (self.0 >> 32)
    }
}

/// A map keyed by router-chosen keys, hashed with [`RouterKeyHasher`].
pub(crate) type RouterKeyMap<K, V> =
    std::collections::HashMap<K, V, std::hash::BuildHasherDefault<RouterKeyHasher>>;

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
    /// Inline when short (an anonymous authid, `anonymous-` and up to 16 digits, always is).
    pub authid: CompactStr,
    /// Interned (`Router::intern`): sessions of one role share the name.
    pub authrole: std::sync::Arc<str>,
    pub authmethod: Method,
    /// The session's role in its realm's authorizer.
    pub role: RoleIndex,
    /// Subscriptions this session holds (indexes into its realm's broker).
    pub subscriptions: SmallVec<[u32; 4]>,
    /// Registrations this session holds (indexes into its realm's dealer).
    pub registrations: SmallVec<[u32; 4]>,
    /// Heads of the intrusive lists of pending calls this session is caller / callee of.
    pub calls_as_caller: Option<u32>,
    pub calls_as_callee: Option<u32>,
    /// Next INVOCATION request ID (session scope, router-chosen).
    pub next_invocation: Id,
    /// Calls this session made that are still pending (bounded by `calls_per_session_max`).
    pub calls_pending: usize,
    /// What the client announced in HELLO that the router acts on.
    pub features: ClientFeatures,
    /// What this session's subscriptions and registrations make the router hold, in bytes (the sum of
    /// [`crate::uri::footprint`] of each, including REGISTERs another shard has yet to decide; bounded by
    /// `limits.uri_bytes_per_session_max`).
    pub uri_bytes: usize,
    /// What few sessions use, apart (a session that uses none of it holds 8 bytes for it).
    pub extras: Option<Box<JoinedExtras>>,
}

/// The parts of a joined session few sessions use.
#[derive(Debug, Default)]
pub(crate) struct JoinedExtras {
    /// Progressive calls of this caller that ended before their final chunk (their further chunks are dropped).
    pub ended_streams: Vec<Id>,
    /// Events to publish when the session leaves (`wamp.session.add_testament`), in the order added.
    pub testaments: Vec<Testament>,
    /// What `testaments` hold, in bytes (bounded by `limits.testament_bytes_per_session_max`).
    pub testament_bytes: usize,
    /// The part of `uri_bytes` charged for REGISTERs waiting for another shard's decision.
    pub uri_bytes_pending: usize,
}

static NO_EXTRAS: JoinedExtras = JoinedExtras {
    ended_streams: Vec::new(),
    testaments: Vec::new(),
    testament_bytes: 0,
    uri_bytes_pending: 0,
};

impl Joined {
    pub fn extras(&self) -> &JoinedExtras {
        self.extras.as_deref().unwrap_or(&NO_EXTRAS)
    }

    /// The extras, made on first use.
    pub fn extras_mut(&mut self) -> &mut JoinedExtras {
        self.extras.get_or_insert_with(Box::default)
    }
}

/// When a testament is published. Without session resumption both happen when the session leaves, `detached`
/// first; the scopes only matter to `wamp.session.flush_testaments`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TestamentScope {
    Detached,
    Destroyed,
}

/// A testament: a publication stored with the session. Its parts are kept as the bytes they arrived as (in the
/// session's serializer), since its CALL's frame is gone when it is published: memory equal to its size on the
/// wire, not a tree of values.
#[derive(Debug)]
pub(crate) struct Testament {
    pub scope: TestamentScope,
    pub topic: Box<str>,
    pub serializer: Serializer,
    pub args: Option<Box<[u8]>>,
    pub kwargs: Option<Box<[u8]>>,
    /// The publish options, a dictionary (absent: none).
    pub options: Option<Box<[u8]>>,
}

impl Testament {
    /// The bytes it holds (counted against `limits.testament_bytes_per_session_max`).
    pub fn bytes(&self) -> usize {
        let part = |part: &Option<Box<[u8]>>| part.as_ref().map_or(0, |bytes| bytes.len());
        self.topic.len() + part(&self.args) + part(&self.kwargs) + part(&self.options)
    }
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::{BuildHasher, BuildHasherDefault};

    use super::*;

    fn handle(index: u32, generation: u32) -> SessionHandle {
        SessionHandle { index, generation }
    }

    #[test]
    fn request_keys_keep_every_field_apart() {
        let id = |n| Id::new(n).expect("in range");
        let keys = [
            RequestKey::new(handle(1, 2), id(3)),
            RequestKey::new(handle(2, 1), id(3)),
            RequestKey::new(handle(1, 3), id(3)),
            RequestKey::new(handle(1, 2), id(4)),
            RequestKey::new(handle(3, 2), id(1)),
        ];
        let distinct: HashSet<_> = keys.iter().map(|key| key.0).collect();
        assert_eq!(distinct.len(), keys.len());
        assert_eq!(
            RequestKey::new(handle(u32::MAX, u32::MAX), id(kreisel_codec::ID_MAX)),
            RequestKey::new(handle(u32::MAX, u32::MAX), id(kreisel_codec::ID_MAX))
        );
    }

    /// The keys the hasher sees in practice, sequential INVOCATION IDs of a few callees, spread over the buckets
    /// (the low bits) and over the control bytes (the top 7 bits) instead of piling up.
    #[test]
    fn router_key_hasher_spreads_sequential_invocations() {
        let build = BuildHasherDefault::<RouterKeyHasher>::default();
        let mut buckets = HashSet::new();
        let mut tags = HashSet::new();
        for callee in 0..4 {
            for invocation in 1..=256 {
                let key =
                    RequestKey::new(handle(callee, 1), Id::new(invocation).expect("in range"));
                let hash = build.hash_one(key);
                buckets.insert(hash & 1023);
                tags.insert(hash >> 57);
            }
        }
        // 1024 keys into 1024 buckets: a uniform hash fills about 1 - 1/e of them (647).
        assert!(
            buckets.len() > 550,
            "{} of 1024 buckets used",
            buckets.len()
        );
        assert_eq!(tags.len(), 128, "every control byte value occurs");
    }
}

/// A string kept inline when it fits in 30 bytes, else on the heap: a session's authid costs no allocation in the
/// common case (every session has one).
#[derive(Clone)]
pub(crate) enum CompactStr {
    Inline {
        len: u8,
        bytes: [u8; COMPACT_INLINE],
    },
    Heap(Box<str>),
}

const COMPACT_INLINE: usize = 30;

impl From<&str> for CompactStr {
    fn from(s: &str) -> CompactStr {
        if s.len() <= COMPACT_INLINE {
            let mut bytes = [0; COMPACT_INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            CompactStr::Inline {
                len: s.len() as u8,
                bytes,
            }
        } else {
            CompactStr::Heap(s.into())
        }
    }
}

impl std::ops::Deref for CompactStr {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            // Made from a `str`, so valid UTF-8 (checked again rather than assumed: at most 30 bytes).
            CompactStr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            CompactStr::Heap(s) => s,
        }
    }
}

impl std::fmt::Debug for CompactStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod compact_tests {
    use super::CompactStr;

    #[test]
    fn short_strings_are_inline_and_long_ones_are_not() {
        for s in [
            "",
            "anonymous-9007199254740992",
            "ü".repeat(15).as_str(),
            &"x".repeat(31),
        ] {
            let compact = CompactStr::from(s);
            assert_eq!(&*compact, s);
            assert_eq!(
                matches!(compact, CompactStr::Inline { .. }),
                s.len() <= 30,
                "{s}"
            );
        }
        assert_eq!(std::mem::size_of::<CompactStr>(), 32);
    }
}
