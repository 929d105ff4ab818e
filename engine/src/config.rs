use crate::auth::AuthConfig;
use crate::uri::UriCheck;

/// The engine's configuration: what the `io` layer read from the config file, minus everything about sockets.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    pub realms: Vec<RealmConfig>,
    /// Seed of the ID generator (the binary draws it from the OS; tests fix it).
    pub seed: u64,
    /// Router agent string reported in WELCOME `details.agent`.
    pub agent: String,
    pub limits: EngineLimits,
    /// Secret key material for authentication challenges and ticket comparison (the binary draws it from the
    /// OS; tests fix it).
    pub secret_seed: [u8; 32],
    /// This engine's shard, and how many shards the router has (each shard is a `Router` of its own, linked to the
    /// others through [`crate::link`]; see [`crate::Router::handle_peer`]). One shard: a router on its own.
    pub shard: crate::link::ShardId,
    pub shards: usize,
    /// Wall-clock time (Unix milliseconds) at engine time 0, for the creation times the meta API reports and the
    /// WAMP-CRA challenge timestamp (the
    /// engine reads no clock: `io` sets this when it starts; tests leave it 0).
    pub epoch_unix_ms: u64,
    /// Sessions the router expects on this shard at most: the session table is reserved for them up front
    /// (address space: memory pages are used only as entries fill, and the table never moves while it stays
    /// within it). 0: grow as needed.
    pub sessions_expected: usize,
    /// In a cluster of nodes ([`crate::cluster`]): this node's slot (0..[`crate::cluster::NODE_SLOTS`]). The
    /// router then has one more peer beside its shards, the node's backplane (shard number `shards`), which owns
    /// every registration, carries publications, calls and questions to the other nodes and brings theirs. `seed`
    /// and `secret_seed` must then be the cluster's (the same on every node), so that IDs and authentication
    /// decoys are the same wherever a client lands. `None`: a router on its own.
    pub cluster_slot: Option<u16>,
}

/// Per-realm and per-session bounds the engine enforces (each refusal is logged and counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineLimits {
    /// Sessions joined to one realm; HELLO beyond it gets ABORT `wamp.error.not_authorized`.
    pub sessions_per_realm_max: usize,
    /// Calls one session may have pending; a CALL beyond it gets ERROR `kreisel.error.limit_exceeded`.
    pub calls_per_session_max: usize,
    /// Subscriptions one session may hold; SUBSCRIBE beyond it gets ERROR `kreisel.error.limit_exceeded`.
    pub subscriptions_per_session_max: usize,
    /// Registrations one session may hold; REGISTER beyond it gets ERROR `kreisel.error.limit_exceeded`.
    pub registrations_per_session_max: usize,
    /// Time between CHALLENGE and AUTHENTICATE, in milliseconds; beyond it: ABORT
    /// `wamp.error.authentication_failed`.
    pub auth_timeout_ms: u64,
    /// Testaments one session may hold; `wamp.session.add_testament` beyond it gets ERROR
    /// `kreisel.error.limit_exceeded`.
    pub testaments_per_session_max: usize,
    /// Bytes the testaments of one session may hold together (topic, arguments and options as they arrived);
    /// beyond it, `wamp.session.add_testament` gets ERROR `kreisel.error.limit_exceeded`.
    pub testament_bytes_per_session_max: usize,
    /// Longest topic or procedure URI (or pattern) accepted from a peer, in bytes; longer ones get ERROR
    /// `wamp.error.invalid_uri` before any lookup.
    pub uri_max: usize,
    /// Most components a URI (or pattern) from a peer may have; more get ERROR `wamp.error.invalid_uri`.
    pub uri_components_max: usize,
    /// What the subscriptions and registrations of one session may make the router hold, in bytes (each costs
    /// [`crate::uri::footprint`] of its URI); SUBSCRIBE or REGISTER beyond it gets ERROR
    /// `kreisel.error.limit_exceeded`.
    pub uri_bytes_per_session_max: usize,
}

impl Default for EngineLimits {
    fn default() -> EngineLimits {
        EngineLimits {
            sessions_per_realm_max: 10_000,
            calls_per_session_max: 10_000,
            subscriptions_per_session_max: 10_000,
            registrations_per_session_max: 1_000,
            auth_timeout_ms: 10_000,
            testaments_per_session_max: 64,
            testament_bytes_per_session_max: 64 << 10,
            uri_max: 1024,
            uri_components_max: 64,
            uri_bytes_per_session_max: 4 << 20,
        }
    }
}

/// One realm.
#[derive(Clone, Debug, PartialEq)]
pub struct RealmConfig {
    pub name: String,
    /// URI rule for topics and procedures in this realm.
    pub uri_check: UriCheck,
    /// INVOCATION details carry the caller's identity (`caller`, `caller_authid`, `caller_authrole`) for every
    /// call, not only when the caller asks (`disclose_me`) or the callee does (`disclose_caller`).
    pub disclose_caller: bool,
    /// EVENT details carry the publisher's identity for every publication, not only on `disclose_me`.
    pub disclose_publisher: bool,
    /// Retained events (one per topic) kept; beyond it, the one retained longest ago is dropped (default 1000).
    pub retained_max: usize,
    /// Memory the retained events of this realm may hold, in bytes (estimated; default 16 MiB): without it, 1000
    /// retained events of 1 MiB each would hold 1 GiB. Beyond it, the oldest are dropped.
    pub retained_bytes_max: usize,
    /// Authentication methods, principals and roles.
    pub auth: AuthConfig,
}

impl RealmConfig {
    pub fn new(name: &str) -> RealmConfig {
        RealmConfig {
            name: name.to_owned(),
            uri_check: UriCheck::Loose,
            disclose_caller: false,
            disclose_publisher: false,
            retained_max: 1000,
            retained_bytes_max: 16 << 20,
            auth: AuthConfig::default(),
        }
    }
}

impl Default for RouterConfig {
    fn default() -> RouterConfig {
        RouterConfig {
            realms: vec![RealmConfig::new("realm1")],
            seed: 0x6b72_6569_7365_6c21,
            agent: agent(),
            limits: EngineLimits::default(),
            secret_seed: [0x5a; 32],
            shard: 0,
            shards: 1,
            epoch_unix_ms: 0,
            sessions_expected: 0,
            cluster_slot: None,
        }
    }
}

/// `kreisel-<version>`.
pub fn agent() -> String {
    format!("kreisel-{}", env!("CARGO_PKG_VERSION"))
}
