//! The router: sessions, realms and the dispatch of every message a client may send.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use kreisel_codec::{
    Dict, Field, Id, Kind, Message, MessageType, Payload, RawValue, Serializer, Value,
};
use slab::Slab;
use tracing::{debug, info};

use crate::auth::{AuthenticatorConfig, Nonces, Principals};
use crate::authz::{self, Authorizer, DecisionKey, Perms, RoleIndex};
use crate::broker::{self, Broker};
use crate::config::{EngineLimits, RouterConfig};
use crate::dealer::{Callee, Dealer, Invoke, Registered};
use crate::features::{router_roles, ClientFeatures};
use crate::ids::{IdGenerator, SessionIds};
use crate::link::{PeerMessage, ShardId, ShardSet};
use crate::options::{
    self, Details, Filter, Identity, Passthru, RequestOptions, CALLER_KEYS, PUBLISHER_KEYS,
};
use crate::retention::{Retained, RetainedEvents};
use crate::session::{
    Joined, Phase, Provider, RequestKey, RouterKeyMap, Session, SessionHandle, TransportInfo,
};
use crate::uri::{self, MatchPolicy, UriRules};
use meta::session_details;

mod authn;
mod census;
mod dynamic;
mod internal;
mod lifecycle;
mod membership;
mod meta;
mod peer;
mod pubsub;
mod registry;
mod rpc;

pub(crate) use dynamic::Decided;
use dynamic::{Internal, Question, Settlement};
use membership::Membership;
use rpc::Call;

/// The transport connection a session lives on, as the `io` layer identifies it (opaque to the engine).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

/// Where to send a message: the connection, its serializer, and the session (for publisher exclusion).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub conn: ConnId,
    pub serializer: Serializer,
    pub(crate) session: SessionHandle,
}

/// The recipients of one multicast message (the subscribers of one subscription), minus an excluded session.
#[derive(Clone, Copy, Debug)]
pub struct Recipients<'a> {
    peers: &'a [Peer],
    exclude: Option<SessionHandle>,
}

impl<'a> Recipients<'a> {
    pub fn iter(&self) -> impl Iterator<Item = &'a Peer> + 'a {
        let exclude = self.exclude;
        self.peers
            .iter()
            .filter(move |p| Some(p.session) != exclude)
    }
}

/// The engine's output. `io` implements it: it encodes messages for the recipients' serializers, frames them for
/// their transports and queues them.
pub trait Sink {
    /// Queue `msg` for one peer.
    fn send(&mut self, to: Peer, msg: &Message<'_>);
    /// Queue the same `msg` for many peers. The message is identical for all of them, so the sink encodes it once
    /// per serializer and shares the bytes.
    fn send_many(&mut self, to: Recipients<'_>, msg: &Message<'_>);
    /// Close `to`'s transport once what is queued for it has been written. `io` then calls
    /// [`Router::handle_close`].
    fn close(&mut self, to: Peer);
    /// What `io` knows of `to`'s transport (asked only while a session authenticates with a dynamic authenticator
    /// or SCRAM channel binding, or asks a dynamic authorizer). `None`, the default: nothing to tell.
    fn transport(&mut self, to: Peer) -> Option<TransportInfo> {
        let _ = to;
        None
    }
    /// Send `msg` to each shard in `to` (never this one), in order per destination: the receivers hand it to
    /// [`Router::handle_peer`]. Only a router of several shards calls it; a sink of a router on its own need not
    /// implement it.
    fn peer(&mut self, to: ShardSet, msg: &PeerMessage<'_>) {
        let _ = (to, msg);
        debug_assert!(false, "a single-shard router sends no peer messages");
    }
}

/// Who a joined session is ([`Router::session_info`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionInfo<'a> {
    pub id: Id,
    pub realm: &'a str,
    pub authid: &'a str,
    pub authrole: &'a str,
    pub authmethod: &'static str,
}

/// Counters, read by the metrics endpoint and the logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub sessions_joined: u64,
    pub sessions_active: u64,
    pub aborts_sent: u64,
    pub protocol_violations: u64,
    pub publications: u64,
    pub events_sent: u64,
    pub calls: u64,
    pub errors_sent: u64,
    /// Requests and joins refused for a per-realm or per-session limit.
    pub limits_hit: u64,
    /// Retained events dropped for a realm's retention limits (evicted, or too big to keep).
    pub retained_evicted: u64,
    /// Authentication attempts that failed (wrong credentials, unknown authid, timeout).
    pub auth_failures: u64,
    /// Requests refused by authorization.
    pub not_authorized: u64,
    /// Messages from other shards handled, and those that did not decode or referred to nothing (a bug, or a
    /// race with a session that just left).
    pub peer_messages: u64,
    pub peer_messages_dropped: u64,
    /// Calls to dynamic authenticators, and those that failed: not registered, an error other than a refusal,
    /// a timeout, an answer that is no answer, or the authenticator's `concurrency_max` reached.
    pub authenticator_calls: u64,
    pub authenticator_failures: u64,
    /// Calls to dynamic authorizers, those that failed (as above), and decisions taken from what an authorizer
    /// let the router remember.
    pub authorizer_calls: u64,
    pub authorizer_failures: u64,
    pub authorizer_cached: u64,
}

impl std::ops::AddAssign for Stats {
    /// Sums two shards' counters (`sessions_active` too: each shard counts its own sessions).
    fn add_assign(&mut self, other: Stats) {
        let Stats {
            sessions_joined,
            sessions_active,
            aborts_sent,
            protocol_violations,
            publications,
            events_sent,
            calls,
            errors_sent,
            limits_hit,
            retained_evicted,
            auth_failures,
            not_authorized,
            peer_messages,
            peer_messages_dropped,
            authenticator_calls,
            authenticator_failures,
            authorizer_calls,
            authorizer_failures,
            authorizer_cached,
        } = other;
        self.sessions_joined += sessions_joined;
        self.sessions_active += sessions_active;
        self.aborts_sent += aborts_sent;
        self.protocol_violations += protocol_violations;
        self.publications += publications;
        self.events_sent += events_sent;
        self.calls += calls;
        self.errors_sent += errors_sent;
        self.limits_hit += limits_hit;
        self.retained_evicted += retained_evicted;
        self.auth_failures += auth_failures;
        self.not_authorized += not_authorized;
        self.peer_messages += peer_messages;
        self.peer_messages_dropped += peer_messages_dropped;
        self.authenticator_calls += authenticator_calls;
        self.authenticator_failures += authenticator_failures;
        self.authorizer_calls += authorizer_calls;
        self.authorizer_failures += authorizer_failures;
        self.authorizer_cached += authorizer_cached;
    }
}

#[derive(Debug)]
struct Realm {
    name: String,
    /// The URI rule and size bounds for URIs from peers.
    uri_rules: UriRules,
    /// Disclose every caller to callees / every publisher to subscribers, whatever the request says.
    disclose_caller: bool,
    disclose_publisher: bool,
    broker: Broker,
    retained: RetainedEvents,
    dealer: Dealer,
    /// Sessions joined on this shard, and on the others (counted from their `SessionJoined`/`SessionLeft`).
    sessions: usize,
    remote_sessions: usize,
    principals: Principals,
    authz: Authorizer,
    /// The dynamic authenticators of this realm (`principals` knows which methods they handle).
    authenticators: Vec<Authenticator>,
    /// Counts configuration reloads of the realm: answers to calls made before one are not taken as they are.
    generation: u64,
}

/// A dynamic authenticator of a realm, with the realm its procedure is registered in (resolved at start) and the
/// authentications waiting for it on this shard.
#[derive(Debug)]
struct Authenticator {
    config: AuthenticatorConfig,
    realm: Option<usize>,
    in_flight: usize,
}

/// How much one realm holds right now (for the metrics endpoint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealmGauges<'r> {
    pub name: &'r str,
    /// Sessions joined to the realm.
    pub sessions: usize,
    /// Subscriptions (one per topic and match policy, however many subscribers).
    pub subscriptions: usize,
    /// Registrations (one per procedure and match policy, however many callees).
    pub registrations: usize,
    /// Retained events.
    pub retained: usize,
}

/// What [`Router::handle_auth_reload`] did to a realm's sessions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthReload {
    /// Joined sessions whose permissions now come from the new roles.
    pub sessions: usize,
    /// Of those, the sessions whose role the realm no longer has: they may do nothing.
    pub sessions_without_role: usize,
    /// Authentication attempts aborted.
    pub attempts_aborted: usize,
    /// Subscriptions and registrations of the realm's sessions whose role now allows them only in part (or not
    /// at all): each concrete URI is checked at delivery.
    pub memberships_restricted: usize,
}

/// The sans-IO WAMP router. See the crate documentation for the order of calls.
#[derive(Debug)]
pub struct Router {
    realms: Vec<Realm>,
    realm_index: HashMap<String, usize>,
    sessions: Slab<Session>,
    next_generation: u32,
    ids: IdGenerator,

    /// Live router-scope IDs (subscriptions and registrations), unique router-wide.
    router_ids: HashSet<Id>,
    calls: Slab<Call>,
    /// (callee, INVOCATION request) → call.
    invocations: RouterKeyMap<RequestKey, usize>,
    /// (caller, CALL request) → call.
    caller_requests: HashMap<RequestKey, usize>,
    roles: Value,
    agent: String,
    limits: EngineLimits,
    /// Unix milliseconds at engine time 0 (see [`RouterConfig::epoch_unix_ms`]).
    epoch_unix_ms: u64,
    /// The time of the current input (milliseconds, monotonic; from `handle_message`/`handle_timeout`).
    now_ms: u64,
    /// Call deadlines: (deadline, call, its serial), earliest first; stale entries are skipped.
    deadlines: BinaryHeap<Reverse<(u64, usize, u64)>>,
    /// Reused buffers for the recipients of filtered publications (black/white lists, per-subscriber disclosure).
    scratch: [Vec<Peer>; 2],
    /// Pending calls that have a deadline (the heap also holds stale entries of calls that ended).
    deadlines_live: usize,
    /// Authentication deadlines, in the order they were set (all attempts get the same timeout, so this is also
    /// the order they come due); entries of attempts that ended are skipped.
    auth_deadlines: VecDeque<(u64, SessionHandle)>,
    nonces: Nonces,
    /// Key for comparing tickets (as HMAC tags) and deriving decoy salts.
    auth_key: ring::hmac::Key,
    stats: Stats,
    /// This shard and the number of shards (see [`crate::link`]).
    shard: ShardId,
    shards: usize,
    /// In a cluster: the node's backplane, one more peer beside the shards (shard number `shards`), which owns
    /// every registration and links this node to the others ([`crate::cluster`]).
    backplane: Option<ShardId>,
    session_id_gen: SessionIds,
    /// Seed of the subscription IDs, the same on every shard: a subscription has one ID router-wide.
    id_seed: u64,
    /// Session meta calls waiting for the other shards' answers, by token, and their deadlines in order.
    gathers: HashMap<u64, census::Gather>,
    gather_deadlines: VecDeque<(u64, u64)>,
    /// Role and method names, each held once (see [`Router::intern`]).
    names: HashSet<Arc<str>>,
    /// Role names of callees of other shards, by number (see [`Router::role_name_id`]).
    role_names: Vec<Box<str>>,
    role_name_ids: HashMap<Box<str>, u32>,
    /// Changes a client is told about once the other shards have installed them (SUBSCRIBED, REGISTERED), by
    /// token.
    pending_acks: HashMap<u64, PendingAck>,
    /// Subscribers (session, subscription) whose SUBSCRIBED waits for the other shards: publications of other
    /// shards or nodes that reach this shard meanwhile (a retained event goes to every shard, whatever its
    /// subscribers) are not delivered to them, since a client may drop a connection whose EVENT comes before
    /// SUBSCRIBED (autobahn does).
    unconfirmed: Vec<(SessionHandle, Id)>,
    next_token: u64,
    /// Calls this shard owns whose caller is on another shard: (caller's shard, relay) → call.
    remote_callers: HashMap<(ShardId, u64), usize>,
    /// Serial numbers of calls, so that a relay ID names one call even after its slot is reused.
    next_call_serial: u64,
    /// Calls the router makes itself (to dynamic authenticators and authorizers), by token.
    internal: Slab<Internal>,
    /// Set by a dynamic authorization that has to wait: the message being handled is parked and the question
    /// asked.
    question: Option<Box<Question>>,
    /// Answers to the router's own calls, acted on at the end of the entry point ([`Router::settle`]).
    settlements: VecDeque<Settlement>,
    /// The decisions made for the parked message being handled again.
    resuming: Option<(SessionHandle, Vec<Decided>)>,
}

/// Distinct role names of remote callees a router numbers (see [`Router::role_name_id`]).
const ROLE_NAMES_MAX: usize = 4096;

/// The authid of an anonymous session.
pub(crate) fn anonymous_authid(id: Id) -> String {
    format!("anonymous-{id}")
}

/// What to do when every shard acknowledged a change.
#[derive(Debug)]
struct PendingAck {
    remaining: usize,
    then: AfterAck,
}

#[derive(Debug)]
enum AfterAck {
    /// SUBSCRIBED (and then the retained events it asked for).
    Subscribed {
        handle: SessionHandle,
        request: Id,
        subscription: Id,
        topic: Box<str>,
        policy: MatchPolicy,
        flags: broker::SubscriberFlags,
        get_retained: bool,
    },
    /// REGISTERED, once the owner decided and every shard installed the registration.
    Registered {
        handle: SessionHandle,
        request: Id,
        registration: Option<Id>,
        footprint: usize,
    },
}

/// Why a request is not (yet) authorized.
#[derive(Debug)]
pub(super) enum Denied {
    /// Refused: ERROR with this URI and text.
    Refused(&'static str, String),
    /// A dynamic authorizer was asked: the request waits for its answer (the message is parked).
    Pending,
}

/// The dynamic authenticators of a realm, with the realms their procedures are registered in.
fn authenticators(
    auth: &crate::auth::AuthConfig,
    own: usize,
    realm_index: &HashMap<String, usize>,
) -> Vec<Authenticator> {
    (auth.authenticators.iter())
        .map(|config| Authenticator {
            config: config.clone(),
            realm: match &config.realm {
                None => Some(own),
                Some(name) => realm_index.get(name).copied(),
            },
            in_flight: 0,
        })
        .collect()
}

/// Error URIs the router sends (the spec's URI reference).
pub mod errors {
    pub const NO_SUCH_REALM: &str = "wamp.error.no_such_realm";
    pub const PROTOCOL_VIOLATION: &str = "wamp.error.protocol_violation";
    pub const NO_AUTH_METHOD: &str = "wamp.error.no_auth_method";
    pub const AUTHENTICATION_FAILED: &str = "wamp.error.authentication_failed";
    pub const INVALID_URI: &str = "wamp.error.invalid_uri";
    pub const NO_SUCH_PROCEDURE: &str = "wamp.error.no_such_procedure";
    pub const PROCEDURE_ALREADY_EXISTS: &str = "wamp.error.procedure_already_exists";
    /// crossbar's URI (the spec says the REGISTER "MUST fail" but names none).
    pub const PROCEDURE_EXISTS_WITH_DIFFERENT_INVOCATION_POLICY: &str =
        "wamp.error.procedure_exists_with_different_invocation_policy";
    pub const TIMEOUT: &str = "wamp.error.timeout";
    pub const NO_SUCH_REGISTRATION: &str = "wamp.error.no_such_registration";
    pub const NO_SUCH_SUBSCRIPTION: &str = "wamp.error.no_such_subscription";
    pub const INVALID_ARGUMENT: &str = "wamp.error.invalid_argument";
    pub const CANCELED: &str = "wamp.error.canceled";
    pub const OPTION_NOT_ALLOWED: &str = "wamp.error.option_not_allowed";
    pub const FEATURE_NOT_SUPPORTED: &str = "wamp.error.feature_not_supported";
    pub const GOODBYE_AND_OUT: &str = "wamp.close.goodbye_and_out";
    pub const NOT_AUTHORIZED: &str = "wamp.error.not_authorized";
    pub const NO_SUCH_SESSION: &str = "wamp.error.no_such_session";
    /// A dynamic authorizer could not decide (not registered, failed, timed out, answered nonsense): crossbar's
    /// URI for it.
    pub const AUTHORIZATION_FAILED: &str = "wamp.error.authorization_failed";
    /// crossbar's ABORT reasons when a dynamic authenticator assigns no role, an unknown role, no authid.
    pub const NO_SUCH_ROLE: &str = "wamp.error.no_such_role";
    pub const NO_SUCH_PRINCIPAL: &str = "wamp.error.no_such_principal";
    /// kreisel's own URI for a refused request over a per-session limit (the spec has none).
    pub const LIMIT_EXCEEDED: &str = "kreisel.error.limit_exceeded";
    pub const SYSTEM_SHUTDOWN: &str = "wamp.close.system_shutdown";
}
use errors::*;

/// Options the router knows but does not implement: a request carrying one with a non-default value is refused
/// with `wamp.error.option_not_allowed` rather than silently ignored. (Every PUBLISH option of the spec is
/// implemented.)
const UNSUPPORTED_PUBLISH: &[&str] = &[];
const UNSUPPORTED_SUBSCRIBE: &[&str] = &[];
/// Sharded registrations (`rkey`, `runmode`) are not implemented.
const UNSUPPORTED_CALL: &[&str] = &["rkey", "runmode"];
const UNSUPPORTED_REGISTER: &[&str] = &["force_reregister"];

impl Router {
    pub fn new(config: RouterConfig) -> Router {
        let mut realms = Vec::new();
        let mut realm_index = HashMap::new();
        let mut nonces = Nonces::new(&config.secret_seed);
        // The same on every shard (principals' derived secrets, decoys)...
        let auth_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &nonces.next());
        // ...while challenges differ: each shard draws its nonces from a range of the counter of its own, so no
        // two shards (which share the secret seed) ever issue the same challenge.
        // (In a cluster, each shard of each node: 2^40 challenges each.)
        nonces.skip_to(match config.cluster_slot {
            None => u64::from(config.shard) << 48,
            Some(slot) => {
                (u64::from(slot) * crate::link::SHARDS_MAX as u64 + u64::from(config.shard)) << 40
            }
        });
        for realm in &config.realms {
            realm_index.insert(realm.name.clone(), realms.len());
            realms.push(Realm {
                name: realm.name.clone(),
                uri_rules: UriRules {
                    check: realm.uri_check,
                    bytes_max: config.limits.uri_max,
                    components_max: config.limits.uri_components_max,
                },
                disclose_caller: realm.disclose_caller,
                disclose_publisher: realm.disclose_publisher,
                broker: Broker::default(),
                retained: RetainedEvents::new(realm.retained_max, realm.retained_bytes_max),
                dealer: Dealer::default(),
                sessions: 0,
                remote_sessions: 0,
                principals: Principals::new(&realm.auth, &auth_key),
                authz: Authorizer::new(realm.auth.roles.as_deref()),
                authenticators: Vec::new(),
                generation: 0,
            });
        }
        for (index, realm) in config.realms.iter().enumerate() {
            realms[index].authenticators = authenticators(&realm.auth, index, &realm_index);
        }
        // In a cluster the backplane takes one more place in a shard set.
        let shards_max = crate::link::SHARDS_MAX - usize::from(config.cluster_slot.is_some());
        let shards = config.shards.clamp(1, shards_max);
        let backplane = config.cluster_slot.map(|_| shards as ShardId);
        // Streams of IDs: one per shard, and in a cluster one per (node slot, shard), so that no two shards of the
        // cluster draw alike.
        let (stream, streams) = match config.cluster_slot {
            None => (u64::from(config.shard), shards as u64),
            Some(slot) => {
                let stream =
                    u64::from(slot) * crate::link::SHARDS_MAX as u64 + u64::from(config.shard);
                (
                    stream,
                    (crate::cluster::NODE_SLOTS * crate::link::SHARDS_MAX) as u64,
                )
            }
        };
        Router {
            realms,
            realm_index,
            sessions: Slab::with_capacity(config.sessions_expected),
            next_generation: 0,
            // Publication IDs: random, a different stream on each shard.
            ids: IdGenerator::new(config.seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            router_ids: HashSet::new(),
            calls: Slab::new(),
            invocations: RouterKeyMap::default(),
            caller_requests: HashMap::new(),
            roles: router_roles(),
            agent: config.agent,
            limits: config.limits,
            epoch_unix_ms: config.epoch_unix_ms,
            now_ms: 0,
            deadlines: BinaryHeap::new(),
            deadlines_live: 0,
            auth_deadlines: VecDeque::new(),
            nonces,
            auth_key,
            scratch: Default::default(),
            stats: Stats::default(),
            shard: config.shard,
            shards,
            backplane,
            session_id_gen: SessionIds::new(config.seed, stream, streams),
            id_seed: config.seed,
            gathers: HashMap::new(),
            gather_deadlines: VecDeque::new(),
            names: HashSet::new(),
            role_names: Vec::new(),
            role_name_ids: HashMap::new(),
            pending_acks: HashMap::new(),
            unconfirmed: Vec::new(),
            next_token: 0,
            remote_callers: HashMap::new(),
            next_call_serial: 0,
            internal: Slab::new(),
            question: None,
            settlements: VecDeque::new(),
            resuming: None,
        }
    }

    /// `name` as a shared string: role and method names are few, and every session holds one of each. Names
    /// nobody holds any more are dropped when the set has grown (a dynamic authenticator may invent roles).
    pub(crate) fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(held) = self.names.get(name) {
            return held.clone();
        }
        if self.names.len() >= 256 {
            self.names.retain(|held| Arc::strong_count(held) > 1);
        }
        let held: Arc<str> = name.into();
        self.names.insert(held.clone());
        held
    }

    /// A number for role name `name` (kept in a copy of a remote callee). Past [`ROLE_NAMES_MAX`] distinct names
    /// (only a dynamic authenticator could make that many), new names get `u32::MAX`, which names no role.
    pub(crate) fn role_name_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.role_name_ids.get(name) {
            return id;
        }
        if self.role_names.len() >= ROLE_NAMES_MAX {
            return u32::MAX;
        }
        let id = self.role_names.len() as u32;
        self.role_names.push(name.into());
        self.role_name_ids.insert(name.into(), id);
        id
    }

    pub(crate) fn role_name(&self, id: u32) -> &str {
        self.role_names.get(id as usize).map_or("", |name| name)
    }

    /// Every other shard of the router, and the backplane in a cluster (empty for a router on its own).
    fn others(&self) -> ShardSet {
        let mut others = if self.shards == 1 {
            ShardSet::EMPTY
        } else {
            ShardSet::all_but(self.shards, self.shard)
        };
        if let Some(backplane) = self.backplane {
            others.insert(backplane);
        }
        others
    }

    /// Whether this router has peers (other shards, or a backplane): changes are then told to them.
    fn linked(&self) -> bool {
        self.shards > 1 || self.backplane.is_some()
    }

    /// Tells every other shard `msg`, if there are any.
    fn broadcast(&self, msg: &PeerMessage<'_>, sink: &mut impl Sink) {
        let others = self.others();
        if !others.is_empty() {
            sink.peer(others, msg);
        }
    }

    /// A token for a change that waits for acknowledgments (unique per shard: the shard is in its low bits).
    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token << 8 | u64::from(self.shard)
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// What each realm holds, in configuration order.
    pub fn realm_gauges(&self) -> impl Iterator<Item = RealmGauges<'_>> {
        self.realms.iter().map(|realm| RealmGauges {
            name: &realm.name,
            sessions: realm.sessions,
            subscriptions: realm.broker.subscriptions.len(),
            registrations: realm.dealer.registrations.len(),
            retained: realm.retained.len(),
        })
    }

    /// Calls waiting for their callee's answer, over all realms.
    pub fn calls_pending(&self) -> usize {
        self.calls.len()
    }

    /// The WAMP session joined over `handle`, if any.
    pub fn session_info(&self, handle: SessionHandle) -> Option<SessionInfo<'_>> {
        let joined = self.joined(handle)?;
        Some(SessionInfo {
            id: joined.id,
            realm: &self.realms[joined.realm].name,
            authid: &joined.authid,
            authrole: &joined.authrole,
            authmethod: joined.authmethod.name(),
        })
    }

    /// Whether the peer on `handle` has sent HELLO (it may be authenticating, joined, or leaving), so that the
    /// transport's handshake timeout no longer applies (authentication has its own).
    pub fn hello_received(&self, handle: SessionHandle) -> bool {
        self.session(handle)
            .is_some_and(|s| !matches!(s.phase, Phase::Handshake))
    }

    /// Number of transport connections (with or without a joined session).
    pub fn connections(&self) -> usize {
        self.sessions.len()
    }

    /// A new transport connection speaking `serializer`. Returns the handle for every later call about it.
    pub fn handle_open(&mut self, conn: ConnId, serializer: Serializer) -> SessionHandle {
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let entry = self.sessions.vacant_entry();
        let handle = SessionHandle {
            index: entry.key() as u32,
            generation,
        };
        entry.insert(Session {
            generation,
            peer: Peer {
                conn,
                serializer,
                session: handle,
            },
            phase: Phase::Handshake,
        });
        handle
    }

    /// The transport of `handle` is gone (the peer vanished, or the engine asked for the close). Leaves the realm,
    /// failing or dropping pending calls, and frees the slot. Stale handles are ignored.
    pub fn handle_close(&mut self, handle: SessionHandle, sink: &mut impl Sink) {
        if self.session(handle).is_none() {
            return;
        }
        self.forget_authentication(handle, sink);
        self.leave(handle, sink);
        self.sessions.remove(handle.index as usize);
        self.settle(sink);
        self.check_invariants();
    }

    /// A frame from `handle` could not be decoded (`reason` says why): ABORT with `protocol_violation`, close.
    pub fn handle_protocol_violation(
        &mut self,
        handle: SessionHandle,
        reason: &str,
        sink: &mut impl Sink,
    ) {
        if self.session(handle).is_some() {
            self.abort(handle, PROTOCOL_VIOLATION, reason, sink);
        }
        self.settle(sink);
    }

    /// Router shutdown: every joined session gets GOODBYE `wamp.close.system_shutdown`; every other connection is
    /// closed. `io` closes what is left after its grace period.
    pub fn handle_shutdown(&mut self, sink: &mut impl Sink) {
        let handles: Vec<SessionHandle> =
            self.sessions.iter().map(|(_, s)| s.peer.session).collect();
        for handle in handles {
            self.goodbye_from_router(handle, SYSTEM_SHUTDOWN, None, sink);
        }
        self.settle(sink);
    }

    /// A lame-duck drain sends one session away: GOODBYE `wamp.close.system_shutdown` if it has joined (the router
    /// then waits for the peer's GOODBYE), else its connection is closed.
    pub fn handle_shutdown_session(&mut self, handle: SessionHandle, sink: &mut impl Sink) {
        self.goodbye_from_router(handle, SYSTEM_SHUTDOWN, None, sink);
    }

    /// One decoded message from `handle`'s peer. `now_ms` is a monotonic time in milliseconds (reserved for
    /// deadlines: call timeouts, authentication).
    pub fn handle_message(
        &mut self,
        handle: SessionHandle,
        msg: &Message<'_>,
        now_ms: u64,
        sink: &mut impl Sink,
    ) {
        self.now_ms = now_ms;
        self.dispatch(handle, msg, sink);
        self.settle(sink);
        self.check_invariants();
    }

    /// One message from `handle`'s peer, by the phase of its session.
    #[inline]
    fn dispatch(&mut self, handle: SessionHandle, msg: &Message<'_>, sink: &mut impl Sink) {
        let Some(session) = self.session(handle) else {
            return;
        };
        match &session.phase {
            Phase::Handshake => self.on_handshake_message(handle, msg, sink),
            Phase::Authenticating(_) => self.on_authenticating_message(handle, msg, sink),
            // Requests wait behind one a dynamic authorizer has not decided yet (answers to invocations and ABORT
            // do not: they need no authorization, and the authorizer's own answer may be among them).
            Phase::Established(joined)
                if joined.waiting()
                    && !matches!(
                        msg,
                        Message::Yield { .. } | Message::Error { .. } | Message::Abort { .. }
                    ) =>
            {
                self.park_back(handle, msg, sink)
            }
            Phase::Established(_) => {
                self.on_session_message(handle, msg, sink);
                if self.question.is_some() {
                    let Some(question) = self.question.take() else {
                        return;
                    };
                    let mut bytes = Vec::new();
                    session_in(&self.sessions, handle)
                        .map_or(Serializer::Json, |s| s.peer.serializer)
                        .encode(msg, &mut bytes);
                    self.park_front(handle, bytes.into(), Vec::new(), *question, sink);
                }
            }
            Phase::Closing => match msg {
                Message::Goodbye { .. } | Message::Abort { .. } => self.close(handle, sink),
                // Messages in flight when we said GOODBYE are dropped, as the spec allows.
                _ => {}
            },
            Phase::Closed => {}
        }
    }

    fn session(&self, handle: SessionHandle) -> Option<&Session> {
        session_in(&self.sessions, handle)
    }

    fn session_mut(&mut self, handle: SessionHandle) -> Option<&mut Session> {
        self.sessions
            .get_mut(handle.index as usize)
            .filter(|s| s.generation == handle.generation)
    }

    fn joined(&self, handle: SessionHandle) -> Option<&Joined> {
        self.session(handle).and_then(Session::joined)
    }

    fn peer(&self, handle: SessionHandle) -> Option<Peer> {
        self.session(handle).map(|s| s.peer)
    }

    /// The earliest deadline (a call's `timeout`, an authentication's), in the engine's milliseconds: call
    /// [`Router::handle_timeout`] then.
    pub fn poll_timeout(&self) -> Option<u64> {
        let auth = self.auth_deadlines.front().map(|(deadline, _)| *deadline);
        [self.next_call_deadline(), auth, self.next_gather_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Ends every call and authentication attempt whose deadline passed, and answers the session meta calls
    /// whose other shards did not answer in time.
    pub fn handle_timeout(&mut self, now_ms: u64, sink: &mut impl Sink) {
        self.now_ms = now_ms;
        self.expire_calls(now_ms, sink);
        self.expire_authentications(now_ms, sink);
        self.expire_gathers(now_ms, sink);
        self.settle(sink);
        self.check_invariants();
    }

    /// What the session's role may do on `uri`, if it may do `action` there; refused (counted), or
    /// [`Denied::Pending`] when a dynamic authorizer was asked (the message being handled is parked: the caller
    /// returns without an answer). `options` are the request's, for a dynamic authorizer.
    #[inline]
    fn authorize(
        &mut self,
        handle: SessionHandle,
        uri: &str,
        action: Perms,
        options: &Dict<'_>,
    ) -> Result<Perms, Denied> {
        if self
            .joined(handle)
            .is_some_and(|joined| joined.role == RoleIndex::OPEN)
        {
            return Ok(Perms::OPEN);
        }
        self.authorize_by_role(handle, uri, action, options)
    }

    /// [`Router::authorize`] in a realm with roles.
    fn authorize_by_role(
        &mut self,
        handle: SessionHandle,
        uri: &str,
        action: Perms,
        options: &Dict<'_>,
    ) -> Result<Perms, Denied> {
        let Some(joined) = self.joined(handle) else {
            return Err(Denied::Refused(NOT_AUTHORIZED, "not joined".into()));
        };
        let (realm, role) = (joined.realm, joined.role);
        if role.is_dynamic() {
            return self.authorize_dynamic(handle, (uri, MatchPolicy::Exact), action, options);
        }
        let perms = self.realms[realm].authz.permissions(role, uri);
        if perms.contains(action) {
            return Ok(perms);
        }
        let Some(joined) = self.joined(handle) else {
            return Err(Denied::Refused(NOT_AUTHORIZED, "not joined".into()));
        };
        let text = format!(
            "role '{}' is not authorized to {} '{}'",
            joined.authrole,
            action.verb(),
            uri::shown(uri)
        );
        debug!(session = joined.id.get(), uri = %uri::shown(uri), "not authorized");
        self.stats.not_authorized += 1;
        Err(Denied::Refused(NOT_AUTHORIZED, text))
    }

    /// SUBSCRIBE and REGISTER: whether the session's role may do `action` on what `(uri, policy)` can reach.
    /// `Ok(false)`: allowed on every URI it can match; `Ok(true)`: allowed on some only, so each concrete URI is
    /// checked at delivery (the session is *restricted* on this subscription or registration); `Err`: allowed on
    /// none (`wamp.error.not_authorized`), or `identify` (the request to be told publishers or callers, if made)
    /// is not allowed everywhere the pattern reaches (`wamp.error.option_not_allowed`). Refusals are counted.
    ///
    /// A role with a dynamic authorizer is asked about the pattern itself, `options` included (their `match` says
    /// it is one); its answer covers everything the pattern reaches, so its memberships are never restricted.
    fn authorize_pattern(
        &mut self,
        handle: SessionHandle,
        (uri, policy): (&str, MatchPolicy),
        action: Perms,
        identify: Option<Perms>,
        options: &Dict<'_>,
    ) -> Result<bool, Denied> {
        let Some(joined) = self.joined(handle) else {
            return Err(Denied::Refused(NOT_AUTHORIZED, "not joined".into()));
        };
        if joined.role == RoleIndex::OPEN {
            return Ok(false);
        }
        let (realm, role) = (joined.realm, joined.role);
        if role.is_dynamic() {
            return self
                .authorize_dynamic(handle, (uri, policy), action, options)
                .map(|_| false);
        }
        let reach = match policy {
            MatchPolicy::Exact => {
                let perms = self.realms[realm].authz.permissions(role, uri);
                authz::Reach {
                    everywhere: perms,
                    somewhere: perms,
                }
            }
            _ => self.realms[realm].authz.reach(role, uri, policy),
        };
        let refusal = if !reach.somewhere.contains(action) {
            Some((NOT_AUTHORIZED, action))
        } else {
            identify
                .filter(|&identify| !reach.everywhere.contains(identify))
                .map(|identify| (OPTION_NOT_ALLOWED, identify))
        };
        let Some((error, denied)) = refusal else {
            return Ok(!reach.everywhere.contains(action));
        };
        let Some(joined) = self.joined(handle) else {
            return Err(Denied::Refused(NOT_AUTHORIZED, "not joined".into()));
        };
        let pattern = match policy {
            MatchPolicy::Exact => String::new(),
            _ => format!(" (match {})", policy.name()),
        };
        let text = format!(
            "role '{}' is not authorized to {} '{}'{pattern}",
            joined.authrole,
            denied.verb(),
            uri::shown(uri),
        );
        debug!(session = joined.id.get(), uri = %uri::shown(uri), "not authorized");
        self.stats.not_authorized += 1;
        Err(Denied::Refused(error, text))
    }

    /// Whether `handle`'s role may do `action` on the concrete `uri`, decided afresh (the checks at delivery for
    /// restricted subscribers and callees; see [`Router::authorize_pattern`]).
    fn allowed_at_delivery(&self, handle: SessionHandle, uri: &str, action: Perms) -> bool {
        self.joined(handle).is_some_and(|joined| {
            joined.role == RoleIndex::OPEN
                || self.realms[joined.realm]
                    .authz
                    .decide(joined.role, uri)
                    .contains(action)
        })
    }

    /// The identity a joined session discloses (caller/publisher identification).
    fn identity(&self, handle: SessionHandle) -> Option<Identity<'_>> {
        self.joined(handle).map(|joined| Identity {
            id: joined.id,
            authid: &joined.authid,
            authrole: &joined.authrole,
        })
    }

    // ---------------------------------------------------------------------------------------------------------
    // Established sessions

    fn on_session_message(
        &mut self,
        handle: SessionHandle,
        msg: &Message<'_>,
        sink: &mut impl Sink,
    ) {
        match msg {
            Message::Publish {
                request,
                options,
                topic,
                payload,
            } => self.on_publish(handle, *request, options, topic, payload, sink),
            Message::Subscribe {
                request,
                options,
                topic,
            } => self.on_subscribe(handle, *request, options, topic, sink),
            Message::Unsubscribe {
                request,
                subscription,
            } => self.on_remove(
                handle,
                *request,
                Membership::Subscription,
                *subscription,
                sink,
            ),
            Message::Call {
                request,
                options,
                procedure,
                payload,
            } => self.on_call(handle, *request, options, procedure, payload, sink),
            Message::Yield {
                request,
                options,
                payload,
            } => self.on_yield(handle, *request, options, payload, sink),
            Message::Error {
                request_type,
                request,
                details,
                error,
                payload,
            } => {
                if *request_type == MessageType::Invocation.code() {
                    self.on_invocation_error(handle, *request, details, error, payload, sink)
                } else {
                    let text = format!(
                        "ERROR for message type {request_type} is not something a router accepts"
                    );
                    self.abort(handle, PROTOCOL_VIOLATION, &text, sink)
                }
            }
            Message::Register {
                request,
                options,
                procedure,
            } => self.on_register(handle, *request, options, procedure, sink),
            Message::Unregister {
                request,
                registration,
            } => self.on_remove(
                handle,
                *request,
                Membership::Registration,
                *registration,
                sink,
            ),
            Message::Cancel { request, options } => self.on_cancel(handle, *request, options, sink),
            Message::Goodbye { .. } => self.on_goodbye(handle, sink),
            Message::Abort { .. } => self.close(handle, sink),
            other => {
                let text = format!(
                    "{} is not a message a client sends to a router",
                    other.message_type().name()
                );
                self.abort(handle, PROTOCOL_VIOLATION, &text, sink)
            }
        }
    }

    fn send_error(
        &mut self,
        sink: &mut impl Sink,
        to: Peer,
        kind: MessageType,
        request: Id,
        uri: &str,
        text: &str,
    ) {
        self.stats.errors_sent += 1;
        let args = [Field::Str(text)];
        sink.send(
            to,
            &Message::Error {
                request_type: kind.code(),
                request,
                details: Dict::EMPTY,
                error: Cow::Borrowed(uri),
                payload: Payload {
                    args: Some(Field::List(&args)),
                    kwargs: None,
                },
            },
        );
    }

    /// Checks a topic/procedure (`what` names it in the error text) and its `match` option. On failure returns
    /// the error URI and text.
    fn check_uri(
        &self,
        realm: usize,
        (what, uri): (&str, &str),
        options: &Dict<'_>,
        unsupported: &[&str],
    ) -> Result<MatchPolicy, (&'static str, String)> {
        if let Some(name) = unsupported.iter().find(|name| {
            options
                .get(name)
                .is_some_and(|value| options::is_set(&value))
        }) {
            return Err((
                OPTION_NOT_ALLOWED,
                format!("option '{name}' is not supported by this router"),
            ));
        }
        let policy = match options.get("match") {
            None => MatchPolicy::Exact,
            Some(value) => match value.as_str().as_deref().and_then(MatchPolicy::from_option) {
                Some(policy) => policy,
                None => {
                    return Err((
                        OPTION_NOT_ALLOWED,
                        "option 'match' must be exact, prefix or wildcard".into(),
                    ))
                }
            },
        };
        self.check_concrete_uri(realm, what, uri, policy)?;
        Ok(policy)
    }

    /// Checks a URI (or pattern, by `policy`) from a peer against the realm's rule and size bounds.
    fn check_concrete_uri(
        &self,
        realm: usize,
        what: &str,
        uri: &str,
        policy: MatchPolicy,
    ) -> Result<(), (&'static str, String)> {
        self.realms[realm]
            .uri_rules
            .validate(uri, policy)
            .map_err(|error| (INVALID_URI, error.describe(what, uri, policy)))
    }

    // ---------------------------------------------------------------------------------------------------------
    // Invariants (debug builds): every cross reference points back.

    fn check_invariants(&self) {
        if !cfg!(debug_assertions) || self.sessions.len() > 200 || self.calls.len() > 1000 {
            return;
        }
        let mut subscriptions = 0;
        for (index, session) in &self.sessions {
            assert_eq!(session.peer.session.index as usize, index);
            let Some(joined) = session.joined() else {
                continue;
            };
            let realm = &self.realms[joined.realm];
            for &sub in &joined.subscriptions {
                assert!(realm.broker.subscriptions[sub as usize]
                    .subscribers
                    .iter()
                    .any(|p| p.session == session.peer.session));
                subscriptions += 1;
            }
            for &reg in &joined.registrations {
                assert!(realm.dealer.registrations[reg as usize]
                    .callees
                    .iter()
                    .any(|c| c.local().is_some_and(|p| p.session == session.peer.session)));
            }
            let held: usize = (joined.subscriptions.iter())
                .map(|&s| &realm.broker.subscriptions[s as usize])
                .map(|s| uri::footprint(&s.topic, s.policy))
                .chain(
                    (joined.registrations.iter())
                        .map(|&r| &realm.dealer.registrations[r as usize])
                        .map(|r| uri::footprint(&r.procedure, r.policy)),
                )
                .sum();
            assert_eq!(
                joined.uri_bytes,
                held + joined.extras().uri_bytes_pending,
                "uri_bytes is what the session holds"
            );
            let extras = joined.extras();
            let testaments: usize = extras.testaments.iter().map(|t| t.bytes()).sum();
            assert_eq!(extras.testament_bytes, testaments);
        }
        for realm in &self.realms {
            for (_, subscription) in &realm.broker.subscriptions {
                assert_eq!(subscription.flags.len(), subscription.subscribers.len());
                let count = |f: fn(&broker::SubscriberFlags) -> bool| {
                    subscription.flags.iter().filter(|flags| f(flags)).count()
                };
                assert_eq!(subscription.disclosing, count(|f| f.disclose_publisher));
                assert_eq!(subscription.restricted, count(|f| f.restricted));
            }
        }
        let listed: usize = self
            .realms
            .iter()
            .flat_map(|r| r.broker.subscriptions.iter())
            .map(|(_, s)| s.subscribers.len())
            .sum();
        assert_eq!(
            subscriptions, listed,
            "every subscriber is in its session's list and back"
        );
        let (mut local_callees, mut local_callers) = (0, 0);
        for (index, call) in &self.calls {
            match call.caller {
                rpc::CallerEnd::Local(caller) => {
                    local_callers += 1;
                    assert!(self
                        .session(caller.session)
                        .is_some_and(|s| s.joined().is_some()));
                    assert_eq!(
                        self.caller_requests
                            .get(&RequestKey::new(caller.session, call.caller_request)),
                        Some(&index)
                    );
                }
                rpc::CallerEnd::Remote { shard, relay, .. } => {
                    assert_eq!(self.remote_callers.get(&(shard, relay)), Some(&index));
                }
                rpc::CallerEnd::Internal { .. } => {}
            }
            if let rpc::CalleeEnd::Local(callee) = call.callee {
                local_callees += 1;
                assert!(self
                    .session(callee.session)
                    .is_some_and(|s| s.joined().is_some()));
                assert_eq!(
                    self.invocations
                        .get(&RequestKey::new(callee.session, call.invocation)),
                    Some(&index)
                );
            }
        }
        assert_eq!(self.invocations.len(), local_callees);
        assert_eq!(self.caller_requests.len(), local_callers);
        // Every call has its caller here, is owned here for a caller elsewhere, or is the router's own.
        let internal = (self.calls.iter())
            .filter(|(_, call)| matches!(call.caller, rpc::CallerEnd::Internal { .. }))
            .count();
        assert_eq!(internal, self.internal_calls());
        assert!(self.settlements.is_empty() && self.question.is_none());
        assert_eq!(
            self.remote_callers.len() + local_callers + internal,
            self.calls.len()
        );
    }
}

/// The session `handle` points at in `sessions`, unless the slot was freed or reused since (for code that holds
/// other parts of the router mutably).
fn session_in(sessions: &Slab<Session>, handle: SessionHandle) -> Option<&Session> {
    sessions
        .get(handle.index as usize)
        .filter(|s| s.generation == handle.generation)
}

/// The joined session `handle` points at in `sessions` (see [`session_in`]).
fn joined_in(sessions: &Slab<Session>, handle: SessionHandle) -> Option<&Joined> {
    session_in(sessions, handle).and_then(Session::joined)
}

/// The ID of subscription (policy, topic) of a realm: the same on every shard (a hash of the realm, the policy and
/// the topic under the router's seed), so that all of them name it alike; another ID already in use on this shard
/// moves it to the next candidate (a 53-bit hash collision: practically never).
fn subscription_id(
    seed: u64,
    (realm, policy, topic): (usize, MatchPolicy, &str),
    live: &mut HashSet<Id>,
) -> Id {
    for attempt in 0u64.. {
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        digest.update(&seed.to_le_bytes());
        digest.update(&attempt.to_le_bytes());
        digest.update(&(realm as u64).to_le_bytes());
        digest.update(policy.name().as_bytes());
        digest.update(topic.as_bytes());
        let hash = digest.finish();
        let mut word = [0u8; 8];
        word.copy_from_slice(&hash.as_ref()[..8]);
        let value = (u64::from_le_bytes(word) & (kreisel_codec::ID_MAX - 1)) + 1;
        if let Some(id) = Id::new(value).filter(|id| live.insert(*id)) {
            return id;
        }
    }
    unreachable!("an unbounded loop returns")
}

fn new_router_id(ids: &mut IdGenerator, live: &mut HashSet<Id>) -> Id {
    loop {
        let id = ids.random_id();
        if live.insert(id) {
            return id;
        }
    }
}
