//! The configuration file (TOML): realms, listeners, limits. Every field has a default, so an empty file (or no
//! file) gives the embedded default router: realm `realm1`, WebSocket on 127.0.0.1:8080 path `/ws`, RawSocket on
//! 127.0.0.1:8081.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use kreisel_codec::Serializer;
use kreisel_engine::uri::UriCheck;
use kreisel_engine::{RealmConfig, RouterConfig};
use serde::{Deserialize, Serialize};

pub use crate::auth_config::{Authenticator, Authorizer, Permission, Principal, Role};

/// The whole file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub router: RouterSection,
    pub realms: Vec<Realm>,
    pub listeners: Vec<Listener>,
    pub limits: Limits,
    pub log: Log,
    /// Several nodes as one router over NATS (`[cluster]`; see [`crate::cluster`]). Absent: a router on its own.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Realm {
    pub name: String,
    /// `"loose"` (default) or `"strict"`: the spec's URI rules for topics and procedures.
    #[serde(default)]
    pub uri_check: UriRule,
    /// Disclose every caller's identity to callees (INVOCATION `details.caller*`), asked for or not.
    #[serde(default)]
    pub disclose_caller: bool,
    /// Disclose every publisher's identity to subscribers (EVENT `details.publisher*`), asked for or not.
    #[serde(default)]
    pub disclose_publisher: bool,
    /// Retained events (one per topic) kept; the oldest go first (default 1000; 0 turns retention off).
    #[serde(default = "default_retained_max")]
    pub retained_max: usize,
    /// Bytes the retained events may hold (estimated; default 16 MiB); the oldest go first.
    #[serde(default = "default_retained_bytes_max")]
    pub retained_bytes_max: usize,
    /// Accept anonymous sessions (role `anonymous_role`). Default: yes when the realm has no principals and no
    /// dynamic authenticators, no when it has.
    #[serde(default)]
    pub anonymous: Option<bool>,
    #[serde(default = "default_anonymous_role")]
    pub anonymous_role: String,
    /// Static principals for ticket, WAMP-CRA and cryptosign authentication.
    #[serde(default)]
    pub principals: Vec<Principal>,
    /// Roles with per-URI permissions (or a dynamic authorizer). Without `roles`, every session may do everything
    /// in the realm.
    #[serde(default)]
    pub roles: Option<Vec<Role>>,
    /// Dynamic authenticators: procedures that authenticate the methods they name.
    #[serde(default)]
    pub authenticators: Vec<Authenticator>,
}

impl Realm {
    /// The role of anonymous sessions, if the realm accepts them (by default when it has neither principals nor
    /// dynamic authenticators).
    pub fn anonymous_role(&self) -> Option<&str> {
        let anonymous = self
            .anonymous
            .unwrap_or(self.principals.is_empty() && self.authenticators.is_empty());
        anonymous.then_some(self.anonymous_role.as_str())
    }

    /// What is valid in this realm's access settings but probably not meant (see [`Config::warnings`]).
    pub fn warnings(&self) -> Vec<String> {
        self.warnings_given(&[])
    }

    /// The same, knowing that the sessions of HTTP services get the roles `also_given`.
    pub fn warnings_given(&self, also_given: &[&str]) -> Vec<String> {
        let which = format!("realm '{}'", self.name);
        if !self.authenticators.is_empty() {
            // An authenticator gives roles the file does not show: none of the warnings below can tell.
            return Vec::new();
        }
        if self.anonymous == Some(false) && self.principals.is_empty() {
            return vec![format!(
                "{which}: nobody can join: it has no [[realms.principals]] and anonymous = false; add principals, \
                 or set anonymous = true to admit anonymous sessions (with role '{}', the anonymous_role)",
                self.anonymous_role
            )];
        }
        let mut warnings = Vec::new();
        // Anonymous access is off because the realm has principals, not because the file says so.
        let implicitly_off = self.anonymous.is_none() && !self.principals.is_empty();
        let custom_role = self.anonymous_role != default_anonymous_role();
        if implicitly_off && custom_role {
            warnings.push(format!(
                "{which}: anonymous_role = '{}' has no effect: a realm with principals admits anonymous sessions \
                 only with anonymous = true",
                self.anonymous_role
            ));
        }
        let anonymous = self.anonymous_role();
        for role in self.roles.iter().flatten() {
            let used = self.principals.iter().any(|p| p.role == role.name)
                || anonymous == Some(role.name.as_str())
                || also_given.contains(&role.name.as_str());
            if used {
                continue;
            }
            if role.name == self.anonymous_role {
                // With anonymous = false the role waits for anonymous access to be turned on; with a custom
                // anonymous_role the warning above says it.
                if implicitly_off && !custom_role {
                    warnings.push(format!(
                        "{which}: role '{}' is given to nobody: it is the anonymous_role, but a realm with \
                         principals admits anonymous sessions only with anonymous = true",
                        role.name
                    ));
                }
                continue;
            }
            warnings.push(format!(
                "{which}: role '{}' is given to no principal and not to anonymous sessions: nobody gets its \
                 permissions",
                role.name
            ));
        }
        warnings
    }
}

fn default_anonymous_role() -> String {
    "anonymous".into()
}

fn default_retained_max() -> usize {
    RealmConfig::new("").retained_max
}

fn default_retained_bytes_max() -> usize {
    RealmConfig::new("").retained_bytes_max
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UriRule {
    #[default]
    Loose,
    Strict,
}

impl UriRule {
    /// The engine's form of the rule.
    pub fn check(self) -> UriCheck {
        match self {
            UriRule::Loose => UriCheck::Loose,
            UriRule::Strict => UriCheck::Strict,
        }
    }
}

/// Which transports a listener speaks. With several, one port serves them all: a RawSocket client's first octet is
/// 0x7F, an MQTT client's 0x10 (CONNECT), which no HTTP request starts with, and an HTTP request for a service's
/// path is served by the service (see [`Listener::services`]), any other is a WebSocket upgrade. `mqtt` with
/// `websocket` also serves MQTT over WebSocket (subprotocol `mqtt`) on the WebSocket path.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Websocket,
    Rawsocket,
    /// HTTP requests to the listener's `services` (the HTTP bridge).
    Http,
    /// MQTT 3.1.1 and 5: each client a WAMP session of the listener's `realm` (see `io/src/mqtt/session.rs`).
    Mqtt,
}

/// How MQTT payloads and WAMP arguments map into each other on the topics under one URI prefix (crossbar's
/// `payload_mapping` entries: `{ type = "passthrough" }` or `{ type = "native", serializer = "json" }`).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum PayloadFormat {
    /// The MQTT payload is one binary argument (`args = [bytes]`); an event's one binary or string argument is
    /// the MQTT payload.
    Passthrough,
    /// The MQTT payload is a document in `serializer` (`{"args": [...], "kwargs": {...}}`), and events become such
    /// documents.
    Native { serializer: SerializerName },
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// `"127.0.0.1:8080"` (TCP) or `"unix:/run/kreisel.sock"` (Unix domain socket).
    pub listen: String,
    /// `["websocket"]`, `["rawsocket"]` or both.
    pub transports: Vec<Transport>,
    /// WebSocket path (default `/ws`).
    #[serde(default = "default_ws_path")]
    pub path: String,
    /// Serializers offered: `json`, `msgpack`, `cbor` (default: all three).
    #[serde(default = "default_serializers")]
    pub serializers: Vec<SerializerName>,
    /// TLS on this (TCP) listener: `wss://` for WebSocket, RawSocket over TLS.
    #[serde(default)]
    pub tls: Option<Tls>,
    /// A path (e.g. `/metrics`) where an HTTP `GET` on this WebSocket listener gets the router's counters in the
    /// Prometheus text format. Off by default: the counters describe the whole router, so serve them on a loopback
    /// or otherwise protected listener.
    #[serde(default)]
    pub metrics: Option<String>,
    /// Web origins allowed to open a WebSocket here, e.g. `["https://app.example.com", "https://*.example.com"]`
    /// (a `*` stands for one or more DNS labels of the host). A browser's handshake whose `Origin` header is not
    /// listed gets HTTP 403; a client that sends no `Origin` (not a browser) is not affected; the origin `null`
    /// (sandboxed pages, local files) is refused unless listed. Unset (the default): every origin is allowed.
    #[serde(default)]
    pub allowed_origins: Option<Vec<String>>,
    /// Serve the health probes `GET /healthz` (the process serves: 200) and `GET /readyz` (accepting sessions:
    /// 200, else 503 with the reason) here. Default: on where `metrics` is set, off elsewhere; `true` serves them
    /// on a WebSocket listener without metrics (e.g. the port a load balancer checks).
    #[serde(default)]
    pub health: Option<bool>,
    /// MQTT listeners: the realm every MQTT client joins (required with the `mqtt` transport).
    #[serde(default)]
    pub realm: Option<String>,
    /// MQTT listeners: how payloads map per WAMP URI prefix (the longest matching prefix decides; `""` is every
    /// topic; default: passthrough everywhere).
    #[serde(default)]
    pub payload_mapping: Option<std::collections::BTreeMap<String, PayloadFormat>>,
    /// The HTTP bridge: `publisher`, `caller` and `webhook` services at paths of this listener (a listener speaking
    /// `"http"`, or `"websocket"` beside its WebSocket path).
    #[serde(default)]
    pub services: Vec<crate::http::ServiceConfig>,
    /// WebSocket compression: `"none"` (the default) or `"deflate"`: permessage-deflate (RFC 7692) with clients
    /// that offer it, tuned by `[listeners.deflate]`.
    #[serde(default)]
    pub compression: Compression,
    /// permessage-deflate's settings (with `compression = "deflate"`).
    #[serde(default)]
    pub deflate: Option<crate::deflate::DeflateConfig>,
    /// Also offer the batched WebSocket subprotocols (`wamp.2.json.batched`, `wamp.2.msgpack.batched`,
    /// `wamp.2.cbor.batched`) of the listener's serializers (default false).
    #[serde(default)]
    pub batched: bool,
}

/// See [`Listener::compression`].
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Deflate,
}

/// `[listeners.tls]`: PEM files.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Certificate chain, leaf first.
    pub certificate: PathBuf,
    /// Private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by one of these CAs.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SerializerName {
    Json,
    Msgpack,
    Cbor,
}

impl SerializerName {
    pub fn serializer(self) -> Serializer {
        match self {
            SerializerName::Json => Serializer::Json,
            SerializerName::Msgpack => Serializer::MsgPack,
            SerializerName::Cbor => Serializer::Cbor,
        }
    }
}

/// The `[router]` table: how the router runs.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RouterSection {
    /// Shards: event-loop threads, each serving its share of the connections (default 0: one per available
    /// CPU core; 1: everything on one thread). Range 0 ..= 64.
    pub shards: usize,
}

/// Resource limits. Each one bounds what a single peer (or all of them) can make the router hold.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest WAMP message accepted or sent, in bytes (default 1 MiB). RawSocket announces the largest power of
    /// two `2^(9+n)` not above it; WebSocket frames and reassembled messages above it are refused with close
    /// code 1009. Range 512 B ..= 16 MiB.
    pub message_max: usize,
    /// Open connections in total (default 10000). Over the limit, RawSocket clients get handshake error 4 and
    /// WebSocket clients HTTP 503.
    pub connections_max: usize,
    /// Bytes queued for one connection before it counts as a slow consumer and is disconnected (default 16 MiB).
    pub outbox_max: usize,
    /// Time a new connection has to complete its transport handshake and send HELLO, in milliseconds
    /// (default 10000).
    pub handshake_timeout_ms: u64,
    /// On shutdown, time sessions get to answer GOODBYE and drain their outboxes, in milliseconds (default 2000).
    pub shutdown_grace_ms: u64,
    /// Lame-duck drain (SIGUSR2): the router stops accepting, `/readyz` answers 503, and the sessions get GOODBYE
    /// `wamp.close.system_shutdown` one after another, spread evenly over this period, in milliseconds (default
    /// 30000); then it shuts down as on SIGTERM. 0: all at once.
    pub lame_duck_ms: u64,
    /// What happens when an EVENT would take a connection's outbox past `outbox_max`: `"disconnect"` the slow
    /// consumer (default), or `"drop"` that event for that connection (counted, logged once per backlog). Other
    /// messages (results, errors) never get dropped: past the limit they always disconnect.
    pub slow_consumer: SlowConsumer,
    /// Send a WebSocket/RawSocket ping to a connection that has been silent this long, in milliseconds (0: never,
    /// the default). Any traffic from the peer, pongs included, counts as a sign of life.
    pub auto_ping_ms: u64,
    /// Close a connection (after its handshake) that has been silent this long, in milliseconds (0: never, the
    /// default). With `auto_ping_ms` set, live peers answer the pings and stay.
    pub idle_timeout_ms: u64,
    /// Sessions joined to one realm (default 10000); HELLO beyond it: ABORT `wamp.error.not_authorized`.
    pub sessions_per_realm_max: usize,
    /// Calls one session may have pending (default 10000); beyond: ERROR `kreisel.error.limit_exceeded`.
    pub calls_per_session_max: usize,
    /// Subscriptions one session may hold (default 10000); beyond: ERROR `kreisel.error.limit_exceeded`.
    pub subscriptions_per_session_max: usize,
    /// Registrations one session may hold (default 1000); beyond: ERROR `kreisel.error.limit_exceeded`.
    pub registrations_per_session_max: usize,
    /// Time between CHALLENGE and AUTHENTICATE, in milliseconds (default 10000); beyond it: ABORT
    /// `wamp.error.authentication_failed`.
    pub auth_timeout_ms: u64,
    /// Testaments one session may hold (default 64); beyond: `wamp.session.add_testament` gets ERROR
    /// `kreisel.error.limit_exceeded`.
    pub testaments_per_session_max: usize,
    /// Bytes the testaments of one session may hold together (default 64 KiB); beyond:
    /// `wamp.session.add_testament` gets ERROR `kreisel.error.limit_exceeded`.
    pub testament_bytes_per_session_max: usize,
    /// Longest topic or procedure URI (or pattern) accepted, in bytes (default 1024); longer: ERROR
    /// `wamp.error.invalid_uri`, before any lookup.
    pub uri_max: usize,
    /// Most components of a URI (default 64); more: ERROR `wamp.error.invalid_uri`.
    pub uri_components_max: usize,
    /// What one session's subscriptions and registrations may make the router hold, in bytes (default 4 MiB;
    /// each costs about twice its URI plus 320 bytes, plus 384 per component of a wildcard pattern); beyond:
    /// ERROR `kreisel.error.limit_exceeded`.
    pub uri_bytes_per_session_max: usize,
    /// Largest message accepted from a connection that has not joined a realm yet (HELLO, AUTHENTICATE), in
    /// bytes (default 64 KiB; at most `message_max` applies). Larger: RawSocket protocol violation, WebSocket
    /// close 1009.
    pub unjoined_message_max: usize,
    /// Bytes all connections together may hold in incomplete frames and fragmented messages (default 64 MiB).
    /// A connection whose input would take the total past it is closed (logged, counted).
    pub partial_frames_max: usize,
    /// Time a frame (or a fragmented WebSocket message) may take from its first byte to its last, in
    /// milliseconds (default 60000); slower: the connection is closed (logged, counted). It must allow a
    /// `message_max` message at the slowest link rate you serve.
    pub frame_timeout_ms: u64,
    /// Bytes all outboxes together may hold (default 512 MiB: queued frames plus 48 bytes per queue entry).
    /// When it is reached, the connections with the largest outboxes are disconnected first until the total is
    /// under it again (logged, counted as slow consumers).
    pub memory_max: usize,
    /// Open connections from one IP address (default 0: no limit). Beyond it, a new connection is closed at once
    /// (logged at debug, counted). Unix socket connections are not counted.
    pub connections_per_ip_max: usize,
    /// Bytes a TCP connection's kernel send queue may hold that the network has not taken yet (Linux
    /// `TCP_NOTSENT_LOWAT`; default 1 MiB; 0: the kernel's own bound, the send buffer, which grows up to
    /// `net.ipv4.tcp_wmem`'s 4 MiB). Past it a write would block, so the rest of a slow consumer's backlog waits in
    /// its outbox, where `outbox_max` and `memory_max` count it, instead of in kernel memory no limit of kreisel's
    /// sees. Bytes sent and not yet acknowledged do not count toward it.
    pub tcp_unsent_max: usize,
}

/// See [`Limits::slow_consumer`].
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SlowConsumer {
    #[default]
    Disconnect,
    Drop,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// tracing filter, e.g. `"info"` or `"kreisel_io=debug,info"`; `RUST_LOG` overrides it.
    pub level: String,
    /// `"text"` (default: one human-readable line per event) or `"json"` (one JSON object per line: `timestamp`,
    /// `level`, `target`, `message` and the event's fields).
    pub format: LogFormat,
}

/// See [`Log::format`].
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

fn default_ws_path() -> String {
    "/ws".into()
}

fn default_serializers() -> Vec<SerializerName> {
    vec![
        SerializerName::Json,
        SerializerName::Msgpack,
        SerializerName::Cbor,
    ]
}

impl Default for Config {
    fn default() -> Config {
        Config {
            router: RouterSection::default(),
            realms: vec![Realm {
                name: "realm1".into(),
                uri_check: UriRule::Loose,
                disclose_caller: false,
                disclose_publisher: false,
                retained_max: default_retained_max(),
                retained_bytes_max: default_retained_bytes_max(),
                anonymous: None,
                anonymous_role: default_anonymous_role(),
                principals: Vec::new(),
                roles: None,
                authenticators: Vec::new(),
            }],
            listeners: vec![
                Listener {
                    listen: "127.0.0.1:8080".into(),
                    transports: vec![Transport::Websocket],
                    path: default_ws_path(),
                    serializers: default_serializers(),
                    tls: None,
                    metrics: None,
                    allowed_origins: None,
                    services: Vec::new(),
                    compression: Compression::None,
                    deflate: None,
                    batched: false,
                    health: None,
                    realm: None,
                    payload_mapping: None,
                },
                Listener {
                    listen: "127.0.0.1:8081".into(),
                    transports: vec![Transport::Rawsocket],
                    path: default_ws_path(),
                    serializers: default_serializers(),
                    tls: None,
                    metrics: None,
                    allowed_origins: None,
                    services: Vec::new(),
                    compression: Compression::None,
                    deflate: None,
                    batched: false,
                    health: None,
                    realm: None,
                    payload_mapping: None,
                },
            ],
            limits: Limits::default(),
            log: Log::default(),
            cluster: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        let engine = kreisel_engine::EngineLimits::default();
        Limits {
            message_max: 1 << 20,
            connections_max: 10_000,
            outbox_max: 16 << 20,
            handshake_timeout_ms: 10_000,
            shutdown_grace_ms: 2_000,
            lame_duck_ms: 30_000,
            slow_consumer: SlowConsumer::Disconnect,
            auto_ping_ms: 0,
            idle_timeout_ms: 0,
            sessions_per_realm_max: 10_000,
            calls_per_session_max: 10_000,
            subscriptions_per_session_max: 10_000,
            registrations_per_session_max: 1_000,
            auth_timeout_ms: 10_000,
            testaments_per_session_max: 64,
            testament_bytes_per_session_max: engine.testament_bytes_per_session_max,
            uri_max: engine.uri_max,
            uri_components_max: engine.uri_components_max,
            uri_bytes_per_session_max: engine.uri_bytes_per_session_max,
            unjoined_message_max: 64 << 10,
            partial_frames_max: 64 << 20,
            frame_timeout_ms: 60_000,
            memory_max: 512 << 20,
            connections_per_ip_max: 0,
            tcp_unsent_max: 1 << 20,
        }
    }
}

impl Default for Log {
    fn default() -> Log {
        Log {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Where a listener listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(addr) => write!(f, "{addr}"),
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A configuration mistake, explained for a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parses and validates a TOML document, with `${ENV_VAR}` references and `*_file` secrets resolved (see
    /// [`crate::secrets`]) from the process environment and the file system.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with(text, &|name| std::env::var(name).ok())
    }

    /// [`Config::from_toml`] with `env` for looking up environment variables.
    pub fn from_toml_with(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        let resolved = crate::secrets::resolve(&mut table, env).map_err(ConfigError)?;
        let config: Config = if resolved {
            // Deserialized from the resolved values: a mistake is named without a line of the file (which could
            // show a secret).
            Config::deserialize(toml::Value::Table(table))
                .map_err(|e| ConfigError(e.to_string()))?
        } else {
            // Nothing came from elsewhere: deserialized from the text itself, so mistakes come with their line.
            toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?
        };
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        Config::from_toml(&text).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |text: String| Err(ConfigError(text));
        if self.realms.is_empty() {
            return fail("at least one [[realms]] entry is needed".into());
        }
        if self.router.shards > kreisel_engine::link::SHARDS_MAX {
            return fail(format!(
                "router.shards = {} is more than {} (0 runs one shard per CPU core)",
                self.router.shards,
                kreisel_engine::link::SHARDS_MAX
            ));
        }
        let mut names = std::collections::HashSet::new();
        let realm_names: Vec<&str> = self.realms.iter().map(|r| r.name.as_str()).collect();
        for realm in &self.realms {
            if let Some(problem) = crate::auth_config::uri_problem(
                &realm.name,
                UriCheck::Loose,
                kreisel_engine::uri::MatchPolicy::Exact,
            ) {
                return fail(format!(
                    "realm name '{}' is not a valid URI: {problem}",
                    kreisel_engine::uri::shown(&realm.name)
                ));
            }
            if !names.insert(&realm.name) {
                return fail(format!("realm '{}' is defined twice", realm.name));
            }
            crate::auth_config::validate(
                &realm.name,
                realm.uri_check.check(),
                realm.anonymous_role(),
                (
                    &realm.principals,
                    realm.roles.as_deref(),
                    &realm.authenticators,
                ),
                &realm_names,
            )
            .map_err(ConfigError)?;
        }
        if self.listeners.is_empty() {
            return fail("at least one [[listeners]] entry is needed".into());
        }
        let mut addresses = std::collections::HashSet::new();
        for (index, listener) in self.listeners.iter().enumerate() {
            let which = format!("listener {} ('{}')", index + 1, listener.listen);
            let address = listener
                .address()
                .map_err(|e| ConfigError(format!("{which}: {e}")))?;
            let ephemeral = matches!(address, Address::Tcp(addr) if addr.port() == 0);
            if !ephemeral && !addresses.insert(address.clone()) {
                return fail(format!("{which}: address used by two listeners"));
            }
            if listener.transports.is_empty() {
                return fail(format!(
                    "{which}: transports must name \"websocket\", \"rawsocket\", \"http\", \"mqtt\" or several"
                ));
            }
            match (&listener.realm, listener.speaks(Transport::Mqtt)) {
                (None, true) => {
                    return fail(format!(
                        "{which}: an \"mqtt\" listener needs realm = \"...\": the realm its MQTT clients join"
                    ))
                }
                (Some(realm), true) if !self.realms.iter().any(|r| &r.name == realm) => {
                    return fail(format!(
                        "{which}: realm '{realm}' is not among the [[realms]] (MQTT clients join it)"
                    ))
                }
                (Some(_), false) => {
                    return fail(format!(
                        "{which}: realm is for MQTT clients: the listener needs the \"mqtt\" transport"
                    ))
                }
                _ => {}
            }
            if listener.payload_mapping.is_some() && !listener.speaks(Transport::Mqtt) {
                return fail(format!(
                    "{which}: payload_mapping is for MQTT clients: the listener needs the \"mqtt\" transport"
                ));
            }
            self.validate_http(&which, listener)?;
            if listener.serializers.is_empty() {
                return fail(format!(
                    "{which}: serializers must name one or more of \"json\", \"msgpack\", \"cbor\""
                ));
            }
            if !listener.path.starts_with('/') {
                return fail(format!("{which}: path must start with '/'"));
            }
            if let Some(metrics) = &listener.metrics {
                if listener.services.iter().any(|s| &s.path == metrics) {
                    return fail(format!(
                        "{which}: metrics: the path {metrics} is a service's"
                    ));
                }
                if !listener.speaks(Transport::Websocket) {
                    return fail(format!(
                        "{which}: metrics are served over HTTP: the listener needs the \"websocket\" transport"
                    ));
                }
                if !metrics.starts_with('/') || metrics == &listener.path {
                    return fail(format!(
                        "{which}: metrics must be a path starting with '/', other than the WebSocket path"
                    ));
                }
            }
            if listener.health == Some(true) && !listener.speaks(Transport::Websocket) {
                return fail(format!(
                    "{which}: health probes are served over HTTP: the listener needs the \"websocket\" transport"
                ));
            }
            if listener.serves_health() {
                for probe in crate::websocket::HEALTH_PATHS {
                    if listener.path == probe || listener.metrics.as_deref() == Some(probe) {
                        return fail(format!(
                            "{which}: {probe} is the health probe's path on this listener (health = false frees it)"
                        ));
                    }
                }
            }
            if let Some(origins) = &listener.allowed_origins {
                if !listener.speaks(Transport::Websocket) && listener.services.is_empty() {
                    return fail(format!(
                        "{which}: allowed_origins restricts WebSocket handshakes and HTTP services: the listener \
                         needs the \"websocket\" transport or services"
                    ));
                }
                for origin in origins {
                    crate::websocket::OriginPattern::parse(origin)
                        .map_err(|e| ConfigError(format!("{which}: allowed_origins: {e}")))?;
                }
            }
            if let Some(tls) = &listener.tls {
                if matches!(address, Address::Unix(_)) {
                    return fail(format!("{which}: TLS is for TCP listeners"));
                }
                crate::tls::server_config(&tls.certificate, &tls.key, tls.client_ca.as_deref())
                    .map_err(|e| ConfigError(format!("{which}: {e}")))?;
            }
        }
        let limits = &self.limits;
        if !(512..=1 << 24).contains(&limits.message_max) {
            return fail(format!(
                "limits.message_max = {} is outside 512 ..= 16777216",
                limits.message_max
            ));
        }
        if limits.connections_max == 0 {
            return fail("limits.connections_max must be at least 1".into());
        }
        if limits.outbox_max < limits.message_max {
            return fail(format!(
                "limits.outbox_max = {} must be at least limits.message_max = {} (one message must fit)",
                limits.outbox_max, limits.message_max
            ));
        }
        for (name, value) in [
            ("sessions_per_realm_max", limits.sessions_per_realm_max),
            ("calls_per_session_max", limits.calls_per_session_max),
            (
                "subscriptions_per_session_max",
                limits.subscriptions_per_session_max,
            ),
            (
                "registrations_per_session_max",
                limits.registrations_per_session_max,
            ),
            (
                "testaments_per_session_max",
                limits.testaments_per_session_max,
            ),
            (
                "testament_bytes_per_session_max",
                limits.testament_bytes_per_session_max,
            ),
            ("uri_max", limits.uri_max),
            ("uri_components_max", limits.uri_components_max),
            (
                "uri_bytes_per_session_max",
                limits.uri_bytes_per_session_max,
            ),
            ("frame_timeout_ms", limits.frame_timeout_ms as usize),
        ] {
            if value == 0 {
                return fail(format!("limits.{name} must be at least 1"));
            }
        }
        if limits.unjoined_message_max < 512 {
            return fail(format!(
                "limits.unjoined_message_max = {} is below 512 (a HELLO must fit; above message_max it is \
                 message_max)",
                limits.unjoined_message_max
            ));
        }
        let frame_max = limits.message_max + crate::websocket::HEADER_LEN_MAX;
        if limits.partial_frames_max < frame_max {
            return fail(format!(
                "limits.partial_frames_max = {} must be at least one maximal frame ({frame_max}: message_max plus \
                 a frame header)",
                limits.partial_frames_max
            ));
        }
        if limits.memory_max < limits.outbox_max {
            return fail(format!(
                "limits.memory_max = {} must be at least limits.outbox_max = {} (one full outbox must fit)",
                limits.memory_max, limits.outbox_max
            ));
        }
        if limits.tcp_unsent_max > i32::MAX as usize {
            return fail(format!(
                "limits.tcp_unsent_max = {} is more than the kernel takes (at most {})",
                limits.tcp_unsent_max,
                i32::MAX
            ));
        }
        if limits.handshake_timeout_ms == 0 {
            return fail("limits.handshake_timeout_ms must be at least 1".into());
        }
        if limits.auth_timeout_ms == 0 {
            return fail("limits.auth_timeout_ms must be at least 1".into());
        }
        if let Some(cluster) = &self.cluster {
            cluster.validate(self.shards())?;
        }
        Ok(())
    }

    /// How many shards to run: `router.shards`, or one per available CPU core when it is 0.
    pub fn shards(&self) -> usize {
        match self.router.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .min(kreisel_engine::link::SHARDS_MAX)
    }

    /// What is valid but probably not meant, one line each: a realm nobody can join (no principals and
    /// `anonymous = false`), an `anonymous_role` without effect (principals, and `anonymous` unset), a role given to
    /// nobody. They are warnings, not errors, because each can be meant (a realm closed to newcomers by a SIGHUP
    /// reload, a role prepared for principals still to come): `kreisel --check` prints them and exits 0, the
    /// router logs them at startup.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings: Vec<String> = (self.realms.iter())
            .flat_map(|realm| {
                let given: Vec<&str> = (self.listeners.iter())
                    .flat_map(|l| &l.services)
                    .filter(|s| s.realm == realm.name)
                    .map(|s| s.role.as_str())
                    .collect();
                realm.warnings_given(&given)
            })
            .collect();
        for (index, listener) in self.listeners.iter().enumerate() {
            let which = format!("listener {} ('{}')", index + 1, listener.listen);
            for service in &listener.services {
                warnings.extend(service.warnings(&which));
            }
        }
        warnings
    }

    /// Checks a listener's HTTP services, compression and batching settings.
    fn validate_http(&self, which: &str, listener: &Listener) -> Result<(), ConfigError> {
        let fail = |text: String| Err(ConfigError(text));
        if listener.speaks(Transport::Http) && listener.services.is_empty() {
            return fail(format!(
                "{which}: the \"http\" transport serves the listener's [[listeners.services]]: add one"
            ));
        }
        if !listener.services.is_empty()
            && !listener.speaks(Transport::Http)
            && !listener.speaks(Transport::Websocket)
        {
            return fail(format!(
                "{which}: services are served over HTTP: the listener needs the \"http\" or \"websocket\" \
                 transport"
            ));
        }
        let realm_roles = |name: &str| {
            (self.realms.iter().find(|r| r.name == name)).map(|r| {
                (r.roles.as_ref()).map(|roles| roles.iter().map(|r| r.name.clone()).collect())
            })
        };
        let mut paths = std::collections::HashSet::new();
        for service in &listener.services {
            service.validate(which, &realm_roles).map_err(ConfigError)?;
            if !paths.insert(&service.path) {
                return fail(format!("{which}: two services at {}", service.path));
            }
            if listener.speaks(Transport::Websocket) && service.path == listener.path {
                return fail(format!(
                    "{which}: service path {} is the WebSocket path",
                    service.path
                ));
            }
        }
        if listener.services.len() > 1024 {
            return fail(format!("{which}: more than 1024 services"));
        }
        let websocket = listener.speaks(Transport::Websocket);
        if listener.compression != Compression::None && !websocket {
            return fail(format!(
                "{which}: compression is for WebSocket: the listener needs the \"websocket\" transport"
            ));
        }
        if let Some(deflate) = &listener.deflate {
            if listener.compression != Compression::Deflate {
                return fail(format!(
                    "{which}: [listeners.deflate] needs compression = \"deflate\""
                ));
            }
            deflate
                .validate()
                .map_err(|e| ConfigError(format!("{which}: deflate: {e}")))?;
        }
        if listener.batched && !websocket {
            return fail(format!(
                "{which}: batched is for WebSocket: the listener needs the \"websocket\" transport"
            ));
        }
        Ok(())
    }

    /// What differs from this configuration in `new`, one setting each, as a SIGHUP reload reports it: the
    /// principals, roles, authenticators and anonymous access of the realms both have are `applied`, everything
    /// else needs a restart. Secrets are never shown: a principal whose credentials differ is named, not its values.
    pub fn changes(&self, new: &Config) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut restart = |setting: String, change: String| {
            changes.push(Change {
                setting,
                change,
                applied: false,
            })
        };
        for (name, old, fresh) in [
            ("router", to_table(&self.router), to_table(&new.router)),
            ("limits", to_table(&self.limits), to_table(&new.limits)),
            ("log", to_table(&self.log), to_table(&new.log)),
        ] {
            for (key, change) in table_changes(&old, &fresh) {
                restart(format!("{name}.{key}"), change);
            }
        }
        if self.cluster != new.cluster {
            // Names only: the section holds NATS credentials.
            let change = match (&self.cluster, &new.cluster) {
                (None, Some(_)) => "added",
                (Some(_), None) => "removed",
                _ => "changed",
            };
            restart("cluster".into(), change.into());
        }
        if self.listeners.len() != new.listeners.len() {
            restart(
                "listeners".into(),
                format!(
                    "{} -> {} listeners",
                    self.listeners.len(),
                    new.listeners.len()
                ),
            );
        }
        for (index, (old, fresh)) in self.listeners.iter().zip(&new.listeners).enumerate() {
            for (key, change) in table_changes(&to_table(old), &to_table(fresh)) {
                restart(
                    format!("listener {} ('{}') {key}", index + 1, old.listen),
                    change,
                );
            }
        }
        let names = |config: &Config| -> Vec<String> {
            config.realms.iter().map(|r| r.name.clone()).collect()
        };
        let (old_names, new_names) = (names(self), names(new));
        let added: Vec<String> = (new_names.iter())
            .filter(|n| !old_names.contains(n))
            .map(|n| format!("'{n}'"))
            .collect();
        let removed: Vec<String> = (old_names.iter())
            .filter(|n| !new_names.contains(n))
            .map(|n| format!("'{n}'"))
            .collect();
        if !added.is_empty() || !removed.is_empty() {
            restart("realms".into(), added_removed(&added, &removed, &[]));
        }
        let mut applied = Vec::new();
        for fresh in &new.realms {
            let Some(old) = self.realms.iter().find(|r| r.name == fresh.name) else {
                continue;
            };
            let which = format!("realm '{}'", fresh.name);
            let others: [(&str, String, String); 5] = [
                (
                    "uri_check",
                    format!("{:?}", old.uri_check),
                    format!("{:?}", fresh.uri_check),
                ),
                (
                    "disclose_caller",
                    old.disclose_caller.to_string(),
                    fresh.disclose_caller.to_string(),
                ),
                (
                    "disclose_publisher",
                    old.disclose_publisher.to_string(),
                    fresh.disclose_publisher.to_string(),
                ),
                (
                    "retained_max",
                    old.retained_max.to_string(),
                    fresh.retained_max.to_string(),
                ),
                (
                    "retained_bytes_max",
                    old.retained_bytes_max.to_string(),
                    fresh.retained_bytes_max.to_string(),
                ),
            ];
            for (key, before, after) in others {
                if before != after {
                    restart(format!("{which} {key}"), format!("{before} -> {after}"));
                }
            }
            let shown = |anonymous: Option<bool>| match anonymous {
                Some(on) => on.to_string(),
                None => "unset".to_string(),
            };
            if old.anonymous != fresh.anonymous {
                applied.push((
                    format!("{which} anonymous"),
                    format!("{} -> {}", shown(old.anonymous), shown(fresh.anonymous)),
                ));
            }
            if old.anonymous_role != fresh.anonymous_role {
                applied.push((
                    format!("{which} anonymous_role"),
                    format!("'{}' -> '{}'", old.anonymous_role, fresh.anonymous_role),
                ));
            }
            if old.principals != fresh.principals {
                applied.push((
                    format!("{which} principals"),
                    principal_changes(&old.principals, &fresh.principals),
                ));
            }
            if old.roles != fresh.roles {
                applied.push((
                    format!("{which} roles"),
                    role_changes(old.roles.as_deref(), fresh.roles.as_deref()),
                ));
            }
            if old.authenticators != fresh.authenticators {
                applied.push((
                    format!("{which} authenticators"),
                    authenticator_changes(&old.authenticators, &fresh.authenticators),
                ));
            }
        }
        changes.extend(applied.into_iter().map(|(setting, change)| Change {
            setting,
            change,
            applied: true,
        }));
        changes
    }

    /// The engine's part of the configuration.
    pub fn router_config(&self, seed: u64) -> RouterConfig {
        RouterConfig {
            realms: self
                .realms
                .iter()
                .map(|realm| RealmConfig {
                    uri_check: realm.uri_check.check(),
                    disclose_caller: realm.disclose_caller,
                    disclose_publisher: realm.disclose_publisher,
                    retained_max: realm.retained_max,
                    retained_bytes_max: realm.retained_bytes_max,
                    auth: crate::auth_config::engine_config(
                        realm.anonymous_role(),
                        &realm.principals,
                        realm.roles.as_deref(),
                        &realm.authenticators,
                    ),
                    ..RealmConfig::new(&realm.name)
                })
                .collect(),
            seed,
            limits: kreisel_engine::EngineLimits {
                sessions_per_realm_max: self.limits.sessions_per_realm_max,
                calls_per_session_max: self.limits.calls_per_session_max,
                subscriptions_per_session_max: self.limits.subscriptions_per_session_max,
                registrations_per_session_max: self.limits.registrations_per_session_max,
                auth_timeout_ms: self.limits.auth_timeout_ms,
                testaments_per_session_max: self.limits.testaments_per_session_max,
                testament_bytes_per_session_max: self.limits.testament_bytes_per_session_max,
                uri_max: self.limits.uri_max,
                uri_components_max: self.limits.uri_components_max,
                uri_bytes_per_session_max: self.limits.uri_bytes_per_session_max,
            },
            ..RouterConfig::default()
        }
    }

    /// The RawSocket length exponent kreisel announces: the largest `n` with `2^(9+n) <= message_max`.
    pub fn rawsocket_exponent(&self) -> u8 {
        let mut exponent = 0u8;
        while exponent < 15 && (1usize << (9 + exponent + 1)) <= self.limits.message_max {
            exponent += 1;
        }
        exponent
    }
}

impl Listener {
    pub fn address(&self) -> Result<Address, String> {
        if let Some(path) = self.listen.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a path".into());
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        self.listen
            .parse::<SocketAddr>()
            .map(Address::Tcp)
            .map_err(|_| listen_problem(&self.listen))
    }

    pub fn serializers(&self) -> Vec<Serializer> {
        self.serializers.iter().map(|s| s.serializer()).collect()
    }

    pub fn speaks(&self, transport: Transport) -> bool {
        self.transports.contains(&transport)
    }

    /// Whether `/healthz` and `/readyz` are answered here (see [`Listener::health`]).
    pub fn serves_health(&self) -> bool {
        self.speaks(Transport::Websocket) && self.health.unwrap_or(self.metrics.is_some())
    }
}

/// One setting that differs between the running configuration and a reloaded one (see [`Config::changes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// e.g. `limits.connections_max`, `listener 1 ('127.0.0.1:8080') path`, `realm 'app' principals`.
    pub setting: String,
    /// e.g. `10000 -> 5`, `added 'eve'; credentials of 'alice'`.
    pub change: String,
    /// Applied by the reload (principals, roles, authenticators, anonymous access); otherwise it takes effect after
    /// a restart.
    pub applied: bool,
}

/// A section of settings without secrets as a table, compared key by key for [`Config::changes`].
fn to_table<T: Serialize>(value: &T) -> toml::Table {
    // These sections always serialize to a table (plain structs of numbers, strings and lists).
    toml::Table::try_from(value).unwrap_or_default()
}

/// `key: old -> new` for every key whose value differs (a key missing on one side is `unset`).
fn table_changes(old: &toml::Table, new: &toml::Table) -> Vec<(String, String)> {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let shown = |value: Option<&toml::Value>| match value {
        Some(toml::Value::Table(table)) => {
            format!("{{ {} }}", table.to_string().trim().replace('\n', ", "))
        }
        Some(value) => value.to_string(),
        None => "unset".to_string(),
    };
    keys.into_iter()
        .filter(|key| old.get(*key) != new.get(*key))
        .map(|key| {
            (
                key.clone(),
                format!("{} -> {}", shown(old.get(key)), shown(new.get(key))),
            )
        })
        .collect()
}

/// `added 'a', 'b'; removed 'c'; changed 'd'` (the parts that apply).
fn added_removed(added: &[String], removed: &[String], changed: &[String]) -> String {
    let mut parts = Vec::new();
    for (what, names) in [("added", added), ("removed", removed), ("changed", changed)] {
        if !names.is_empty() {
            parts.push(format!("{what} {}", names.join(", ")));
        }
    }
    parts.join("; ")
}

/// Which principals were added, removed or changed (their role, or "credentials" without showing them).
fn principal_changes(old: &[Principal], new: &[Principal]) -> String {
    let find = |list: &'_ [Principal], authid: &str| -> Option<usize> {
        list.iter().position(|p| p.authid == authid)
    };
    let added: Vec<String> = (new.iter())
        .filter(|p| find(old, &p.authid).is_none())
        .map(|p| format!("'{}'", p.authid))
        .collect();
    let removed: Vec<String> = (old.iter())
        .filter(|p| find(new, &p.authid).is_none())
        .map(|p| format!("'{}'", p.authid))
        .collect();
    let mut changed = Vec::new();
    for fresh in new {
        let Some(before) = find(old, &fresh.authid).map(|i| &old[i]) else {
            continue;
        };
        let mut what = Vec::new();
        if before.role != fresh.role {
            what.push(format!("role '{}' -> '{}'", before.role, fresh.role));
        }
        let credentials = |p: &Principal| Principal {
            authid: String::new(),
            role: String::new(),
            ..p.clone()
        };
        if credentials(before) != credentials(fresh) {
            what.push("credentials".to_string());
        }
        if !what.is_empty() {
            changed.push(format!("'{}' ({})", fresh.authid, what.join(", ")));
        }
    }
    if added.is_empty() && removed.is_empty() && changed.is_empty() {
        return "reordered".into();
    }
    added_removed(&added, &removed, &changed)
}

/// Which roles were added, removed or changed (or roles turned on or off).
fn role_changes(old: Option<&[Role]>, new: Option<&[Role]>) -> String {
    let (old, new) = match (old, new) {
        (None, Some(new)) => {
            return format!(
                "none (every session may do everything) -> {} role(s)",
                new.len()
            )
        }
        (Some(_), None) => return "none: every session may do everything".into(),
        (Some(old), Some(new)) => (old, new),
        (None, None) => return "unchanged".into(),
    };
    let find = |list: &'_ [Role], name: &str| list.iter().find(|r| r.name == name).cloned();
    let added: Vec<String> = (new.iter())
        .filter(|r| find(old, &r.name).is_none())
        .map(|r| format!("'{}'", r.name))
        .collect();
    let removed: Vec<String> = (old.iter())
        .filter(|r| find(new, &r.name).is_none())
        .map(|r| format!("'{}'", r.name))
        .collect();
    let changed: Vec<String> = (new.iter())
        .filter(|r| find(old, &r.name).is_some_and(|before| before != **r))
        .map(|r| format!("'{}'", r.name))
        .collect();
    if added.is_empty() && removed.is_empty() && changed.is_empty() {
        return "reordered".into();
    }
    added_removed(&added, &removed, &changed)
}

/// Which dynamic authenticators (named by their procedure) were added, removed or changed.
fn authenticator_changes(old: &[Authenticator], new: &[Authenticator]) -> String {
    let find = |list: &'_ [Authenticator], procedure: &str| {
        list.iter().find(|a| a.procedure == procedure).cloned()
    };
    let added: Vec<String> = (new.iter())
        .filter(|a| find(old, &a.procedure).is_none())
        .map(|a| format!("'{}'", a.procedure))
        .collect();
    let removed: Vec<String> = (old.iter())
        .filter(|a| find(new, &a.procedure).is_none())
        .map(|a| format!("'{}'", a.procedure))
        .collect();
    let changed: Vec<String> = (new.iter())
        .filter(|a| find(old, &a.procedure).is_some_and(|before| before != **a))
        .map(|a| format!("'{}'", a.procedure))
        .collect();
    if added.is_empty() && removed.is_empty() && changed.is_empty() {
        return "reordered".into();
    }
    added_removed(&added, &removed, &changed)
}

/// What is wrong with a `listen` value that is not a socket address (the most specific reason found).
fn listen_problem(listen: &str) -> String {
    use std::net::{IpAddr, Ipv6Addr};
    const FORM: &str =
        "listen is HOST:PORT with a numeric IP, e.g. 127.0.0.1:8080 (0.0.0.0: every interface), or unix:PATH";
    if listen.trim() != listen {
        return format!("'{listen}': remove the spaces around the address ({FORM})");
    }
    let split = listen.rsplit_once(':');
    match listen.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => return format!("'{listen}' has no port: {ip}:8080, say ({FORM})"),
        Ok(IpAddr::V6(_)) => {
            let example = match split {
                Some((host, port))
                    if host.parse::<Ipv6Addr>().is_ok() && port.parse::<u16>().is_ok() =>
                {
                    format!("[{host}]:{port}")
                }
                _ => format!("[{listen}]:8080"),
            };
            return format!(
                "'{listen}': an IPv6 address goes in brackets, followed by the port: {example}"
            );
        }
        Err(_) => {}
    }
    let Some((host, port)) = split else {
        return format!("'{listen}' has no port ({FORM})");
    };
    let mut problems = Vec::new();
    let port_shown = port
        .parse::<u16>()
        .map_or("8080".to_string(), |p| p.to_string());
    if host.is_empty() {
        problems.push(format!(
            "the host is missing: 0.0.0.0:{port_shown} for every interface, 127.0.0.1:{port_shown} for loopback"
        ));
    } else if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        if inner.parse::<Ipv6Addr>().is_err() {
            problems.push(format!(
                "'{inner}' in brackets is not a numeric IPv6 address"
            ));
        }
    } else if host.parse::<Ipv6Addr>().is_ok() {
        problems.push(format!(
            "an IPv6 address goes in brackets: [{host}]:{port_shown}"
        ));
    } else if host.parse::<IpAddr>().is_err() {
        let example = match host {
            "localhost" => format!("127.0.0.1:{port_shown} (or [::1]:{port_shown})"),
            _ => format!("127.0.0.1:{port_shown}, or 0.0.0.0:{port_shown} for every interface"),
        };
        problems.push(format!(
            "'{host}' is a host name, which kreisel does not resolve: use a numeric IP such as {example}"
        ));
    }
    if port.is_empty() {
        problems.push("the port is missing after ':'".into());
    } else if !port.bytes().all(|b| b.is_ascii_digit()) {
        problems.push(format!("port '{port}' is not a number"));
    } else if port.parse::<u16>().is_err() {
        problems.push(format!("port {port} is out of range 0..=65535"));
    }
    match problems.is_empty() {
        true => format!("'{listen}' is not a socket address ({FORM})"),
        false => problems.join("; "),
    }
}

/// An annotated example configuration equal to the embedded defaults (printed by `kreisel --print-config`).
pub const EXAMPLE: &str = r#"# kreisel configuration (every key is optional; these are the defaults)
# Any string may use "${ENV_VAR}" (the environment variable's value; "$${" is a literal "${"), and a principal's
# ticket, wampcra_secret or scram_*_key may come from a file instead: ticket_file = "/run/secrets/alice"
# (see README: Deploying).

[router]
shards = 0                   # event-loop threads; 0: one per CPU core, 1: a single thread

[[realms]]
name = "realm1"
uri_check = "loose"          # "loose" or "strict"
disclose_caller = false      # INVOCATIONs name the caller (session, authid, authrole) even unasked
disclose_publisher = false   # EVENTs name the publisher even unasked
retained_max = 1000          # retained events (one per topic); the oldest go first (0: no retention)
retained_bytes_max = 16777216 # bytes they may hold (estimated); the oldest go first
# anonymous = true           # default: true without principals and authenticators, false with
anonymous_role = "anonymous" # role of anonymous sessions
# [[realms.principals]]      # static principals (see README: Authentication and authorization)
# authid = "alice"
# role = "user"
# ticket = "..."             # (or ticket_file) and/or wampcra_secret[_file] (+ wampcra_salt, ...), cryptosign_pubkeys,
#                            # scram_kdf, _salt, _iterations, _memory, _stored_key, _server_key (--derive-scram)
# [[realms.roles]]           # without roles, every session may do everything
# name = "user"
# permissions = [{ uri = "com.example.", match = "prefix", allow = ["call", "subscribe"] }]
#                            # or a procedure decides: authorizer = { procedure = "com.example.authorize" }
# [[realms.authenticators]]  # dynamic authentication: a procedure decides (see README)
# methods = ["wampcra"]      # anonymous, ticket, wampcra, cryptosign, scram
# procedure = "com.example.authenticate"
# timeout_ms = 5000
# concurrency_max = 1000     # authentications waiting for it at once, per shard
#                            # realm = "...": where it is registered (default: this realm)

[[listeners]]
listen = "127.0.0.1:8080"    # HOST:PORT, or unix:/path/to/socket
transports = ["websocket"]   # "websocket", "rawsocket", or both on one port
path = "/ws"                 # WebSocket path
serializers = ["json", "msgpack", "cbor"]
# metrics = "/metrics"       # GET here: counters in the Prometheus text format (off; use a protected listener)
# An MQTT listener: transports with "mqtt", realm (required: the realm its clients join), and optionally a
#   [listeners.payload_mapping] table (README, "MQTT")
# allowed_origins = ["https://app.example.com", "https://*.example.com"]  # browsers from elsewhere get 403 (unset: any)
# compression = "deflate"    # permessage-deflate with clients that offer it ([listeners.deflate] tunes it; off by default)
# batched = true             # also offer wamp.2.json.batched, wamp.2.msgpack.batched, wamp.2.cbor.batched
# health = true              # GET /healthz and /readyz (default: where metrics is set)
# [listeners.tls]            # TLS (wss:// / RawSocket over TLS) on a TCP listener; keys of the listener go above it
# certificate = "cert.pem"   # chain, leaf first
# key = "key.pem"
# client_ca = "ca.pem"       # optional: require client certificates signed by these CAs

# [[listeners.services]]     # the HTTP bridge (README: "HTTP bridge"); a listener may also speak only "http"
# path = "/publish"          # POST {"topic", "args", "kwargs", "options"} here publishes; answers {"id": ...}
# type = "publisher"         # "publisher", "caller" or "webhook"
# realm = "realm1"
# role = "user"              # the service session's role: its permissions decide what the service may do
# principals = [{ key = "app", ticket = "app-ticket" }]  # who may: Authorization: Bearer app-ticket (or secret = ...)

[[listeners]]
listen = "127.0.0.1:8081"
transports = ["rawsocket"]

[limits]
message_max = 1048576        # bytes, 512 ..= 16777216
connections_max = 10000
outbox_max = 16777216        # bytes queued per connection before a slow-consumer disconnect
handshake_timeout_ms = 10000 # transport handshake + HELLO
shutdown_grace_ms = 2000
lame_duck_ms = 30000         # SIGUSR2: stop accepting, then GOODBYE to the sessions spread over this period, exit
slow_consumer = "disconnect"  # or "drop": drop EVENTs for a full outbox instead (counted)
auto_ping_ms = 0             # ping connections silent this long (0: off)
idle_timeout_ms = 0          # close connections silent this long (0: off)
sessions_per_realm_max = 10000
calls_per_session_max = 10000         # pending calls one session may have
subscriptions_per_session_max = 10000
registrations_per_session_max = 1000
auth_timeout_ms = 10000      # CHALLENGE to AUTHENTICATE
testaments_per_session_max = 64       # wamp.session.add_testament per session
testament_bytes_per_session_max = 65536  # bytes those testaments may hold
uri_max = 1024               # longest topic/procedure URI, bytes
uri_components_max = 64      # most components of a URI
uri_bytes_per_session_max = 4194304   # what one session's subscriptions and registrations may hold, bytes
unjoined_message_max = 65536 # largest message before WELCOME (HELLO, AUTHENTICATE)
partial_frames_max = 67108864 # bytes all incomplete frames may hold together
frame_timeout_ms = 60000     # a frame must complete this soon after its first byte
memory_max = 536870912       # bytes all outboxes may hold together; the largest are cut first
connections_per_ip_max = 0   # open connections per IP address (0: no limit)
tcp_unsent_max = 1048576     # bytes a TCP socket may hold unsent; the rest waits in the outbox (0: kernel's)

[log]
level = "info"               # tracing filter; RUST_LOG overrides
format = "text"              # or "json": one JSON object per line

# [cluster]                  # several nodes as one router over NATS with JetStream (README: "Cluster")
# name = "prod"              # the same on every node
# nats = ["nats://127.0.0.1:4222"]  # tls://host:port for TLS
# heartbeat_ms = 250
# dead_after_ms = 3000
# replicas = 3
# NATS credentials: user and password (or password_file), or token (token_file); TLS: tls_ca, and tls_certificate
# with tls_key for servers that verify clients.
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_equals_defaults() {
        assert_eq!(Config::from_toml(EXAMPLE).unwrap(), Config::default());
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
    }

    #[test]
    fn mistakes_are_explained() {
        let err = |text: &str| Config::from_toml(text).unwrap_err().0;
        assert!(err("[limits]\nmessage_max = 10").contains("message_max = 10 is outside"));
        assert!(
            err("[[listeners]]\nlisten = \"localhost:80\"\ntransports = [\"websocket\"]")
                .contains("numeric IP")
        );
        assert!(
            err("[[listeners]]\nlisten = \"127.0.0.1:1\"\ntransports = []")
                .contains("transports must name")
        );
        assert!(err("bogus = 1").contains("unknown field"));
        let metrics = |transports: &str, path: &str| {
            err(&format!(
                "[[listeners]]\nlisten = \"127.0.0.1:1\"\ntransports = [{transports}]\nmetrics = \"{path}\""
            ))
        };
        assert!(metrics("\"rawsocket\"", "/metrics").contains("needs the \"websocket\" transport"));
        assert!(metrics("\"websocket\"", "/ws").contains("other than the WebSocket path"));
        assert!(metrics("\"websocket\"", "metrics").contains("starting with '/'"));
        assert!(err("[[realms]]\nname = \"a\"\n[[realms]]\nname = \"a\"").contains("defined twice"));
        assert!(err("[[realms]]\nname = \"bad realm\"").contains("not a valid URI"));
        assert!(
            err("[[listeners]]\nlisten = \"127.0.0.1:1\"\ntransports = [\"carrier-pigeon\"]")
                .contains("unknown variant")
        );
    }

    #[test]
    fn mqtt_listeners_with_dynamic_authentication_need_no_warning() {
        let config = |realm: &str| {
            Config::from_toml(&format!(
                "[[realms]]\nname = \"iot\"\n{realm}\n[[listeners]]\nlisten = \"127.0.0.1:1\"\n\
                 transports = [\"mqtt\"]\nrealm = \"iot\"\n"
            ))
            .unwrap()
            .warnings()
        };
        // A CONNECT waits for a dynamic authenticator, and for an authorizer asked about its will.
        let dynamic = config(
            "[[realms.authenticators]]\nmethods = [\"ticket\", \"anonymous\"]\n\
             procedure = \"com.example.authenticate\"\n\
             [[realms.roles]]\nname = \"device\"\nauthorizer = { procedure = \"com.example.authorize\" }",
        );
        assert_eq!(dynamic, Vec::<String>::new());
    }

    #[test]
    fn mqtt_listeners_name_their_realm() {
        let listener = |extra: &str| {
            Config::from_toml(&format!(
                "[[realms]]\nname = \"iot\"\n[[listeners]]\nlisten = \"127.0.0.1:1883\"\n{extra}"
            ))
        };
        let err = |extra: &str| listener(extra).unwrap_err().0;
        assert!(err("transports = [\"mqtt\"]").contains("needs realm = "));
        assert!(err("transports = [\"mqtt\"]\nrealm = \"nope\"").contains("'nope' is not among"));
        assert!(err("transports = [\"websocket\"]\nrealm = \"iot\"").contains("needs the \"mqtt\""));
        assert!(err(
            "transports = [\"rawsocket\"]\n[listeners.payload_mapping]\n\"\" = { type = \"passthrough\" }"
        )
        .contains("payload_mapping is for MQTT"));
        assert!(err(
            "transports = [\"mqtt\"]\nrealm = \"iot\"\n[listeners.payload_mapping]\n\"a.\" = { type = \"native\" }"
        )
        .contains("serializer"));
        let config = listener(
            "transports = [\"mqtt\", \"websocket\"]\nrealm = \"iot\"\n[listeners.payload_mapping]\n\
             \"\" = { type = \"passthrough\" }\n\"app.\" = { type = \"native\", serializer = \"cbor\" }",
        )
        .unwrap();
        let mapping = config.listeners[0].payload_mapping.clone().unwrap();
        assert_eq!(mapping[""], PayloadFormat::Passthrough);
        assert_eq!(
            mapping["app."],
            PayloadFormat::Native {
                serializer: SerializerName::Cbor
            }
        );
    }

    #[test]
    fn the_auth_example_is_valid() {
        let config = Config::from_toml(include_str!("../../examples/auth.toml")).unwrap();
        let app = &config.realms[1];
        assert_eq!(app.anonymous_role(), Some("guest"));
        assert_eq!(app.principals.len(), 5);
        // The salted secret in the example is what `--derive-key` prints for its password.
        let salt = kreisel_engine::Salt {
            salt: "salt-for-reports".into(),
            iterations: 10_000,
            keylen: 32,
        };
        assert_eq!(
            app.principals[2].wampcra_secret.as_deref(),
            Some(kreisel_engine::auth::derive_key("the password", &salt).as_str())
        );
    }

    #[test]
    fn auth_mistakes_are_explained() {
        let err = |realm: &str| {
            Config::from_toml(&format!("[[realms]]\nname = \"r\"\n{realm}"))
                .unwrap_err()
                .0
        };
        let principal =
            |extra: &str| format!("[[realms.principals]]\nauthid = \"a\"\nrole = \"u\"\n{extra}\n");
        assert!(err(&principal("")).contains("needs a credential"));
        assert!(err(&principal("ticket = \"\"")).contains("empty secret"));
        assert!(err(&principal("cryptosign_pubkeys = [\"abcd\"]")).contains("not 64 hex digits"));
        assert!(err(&principal("ticket = \"t\"\nwampcra_salt = \"s\""))
            .contains("needs wampcra_secret"));
        assert!(
            err(&principal("wampcra_secret = \"k\"\nwampcra_keylen = 16"))
                .contains("need wampcra_salt")
        );
        assert!(err(&principal("ticket = \"t\"\nbogus = 1")).contains("unknown field"));
        let twice = principal("ticket = \"t\"").repeat(2);
        assert!(err(&twice).contains("defined twice"));
        // With roles, every role in use must be defined; anonymous is off by default once principals exist.
        let roles = "[[realms.roles]]\nname = \"u\"\n";
        let ok = format!("{}{roles}", principal("ticket = \"t\""));
        let config = Config::from_toml(&format!("[[realms]]\nname = \"r\"\n{ok}")).unwrap();
        assert_eq!(config.realms[0].anonymous_role(), None);
        assert!(err(&format!("anonymous = true\n{ok}")).contains(
            "realm 'r': role 'anonymous' (of anonymous sessions: anonymous_role) is not among the realm's \
             [[realms.roles]] (defined: 'u'); define the role, set anonymous_role to one of the roles, or set \
             anonymous = false"
        ));
        // Without principals anonymous access is on by default: the message says so.
        assert!(err(roles).contains(
            "(defined: 'u'); a realm without principals admits anonymous sessions unless anonymous = false"
        ));
        assert!(err(&format!(
            "{}{roles}",
            principal("ticket = \"t\"").replace("\"u\"", "\"v\"")
        ))
        .contains(
            "role 'v' (of principal 'a') is not among the realm's [[realms.roles]] (defined: 'u'); define the \
             role or give the principal one of the roles"
        ));
        let bad_rule = "permissions = [{ uri = \"a..b\", allow = [\"call\"] }]";
        assert!(
            err(&format!("{ok}{bad_rule}")).contains("not a valid URI pattern for match 'exact'")
        );
        let bad_action = "permissions = [{ uri = \"a\", allow = [\"fly\"] }]";
        assert!(err(&format!("{ok}{bad_action}")).contains("unknown variant"));
        assert!(Config::from_toml("[limits]\nauth_timeout_ms = 0")
            .unwrap_err()
            .0
            .contains("auth_timeout_ms"));
    }

    /// SCRAM principals, dynamic authenticators and authorizers: what `--check` refuses, and why.
    #[test]
    fn dynamic_and_scram_settings_are_checked() {
        let load = |realm: &str| {
            Config::from_toml(&format!(
                "[[realms]]\nname = \"auth\"\n[[realms]]\nname = \"r\"\n{realm}"
            ))
        };
        let err = |realm: &str| load(realm).unwrap_err().0;
        let scram = "scram_kdf = \"pbkdf2\"\nscram_salt = \"0011223344556677\"\nscram_iterations = 1000\n\
                     scram_stored_key = \"27fbd860b2c079004b0e8be1ad9ec637df3db2dc4dcf59273f6db6ee7e650a1e\"\n\
                     scram_server_key = \"7c04fe3985271b162e75835aecef29e869a9be4a07e613a3b9c6db6a4444717f\"\n";
        let principal =
            |extra: &str| format!("[[realms.principals]]\nauthid = \"a\"\nrole = \"u\"\n{extra}\n");
        let config = load(&principal(scram)).unwrap();
        assert!(config.realms[1].principals[0].scram().unwrap().is_some());
        assert!(err(&principal("scram_kdf = \"pbkdf2\"")).contains("go together"));
        assert!(
            err(&principal(&scram.replace("pbkdf2", "md5"))).contains("scram: unknown kdf \"md5\"")
        );
        assert!(err(&principal(&format!("{scram}scram_memory = 512\n")))
            .contains("memory applies to argon2 only"));
        let authenticator = |fields: &str| format!("[[realms.authenticators]]\n{fields}\n");
        let good =
            "methods = [\"ticket\", \"wamp-scram\"]\nprocedure = \"com.auth\"\nrealm = \"auth\"";
        let config = load(&authenticator(good)).unwrap();
        let realm = &config.realms[1];
        assert_eq!(
            realm.anonymous_role(),
            None,
            "a realm with authenticators is closed to anonymous sessions by default"
        );
        assert!(realm.warnings().is_empty());
        assert_eq!(realm.authenticators[0].timeout_ms, 5000);
        assert_eq!(realm.authenticators[0].concurrency_max, 1000);
        for (fields, why) in [
            (
                "methods = []\nprocedure = \"com.auth\"",
                "methods must name at least one method",
            ),
            (
                "methods = [\"ticket\"]\nprocedure = \"wamp.auth\"",
                "under 'wamp.'",
            ),
            (
                "methods = [\"ticket\"]\nprocedure = \"com..auth\"",
                "not a valid procedure URI",
            ),
            (
                "methods = [\"ticket\"]\nprocedure = \"com.auth\"\nrealm = \"nowhere\"",
                "there is no realm 'nowhere'",
            ),
            (
                "methods = [\"ticket\"]\nprocedure = \"com.auth\"\ntimeout_ms = 0",
                "at least 1",
            ),
            (
                "methods = [\"kerberos\"]\nprocedure = \"com.auth\"",
                "unknown variant",
            ),
        ] {
            let text = err(&authenticator(fields));
            assert!(text.contains(why), "{fields}: {text}");
        }
        let twice = format!(
            "{}{}",
            authenticator(good),
            authenticator(&good.replace("\"ticket\", ", ""))
        );
        assert!(err(&twice).contains("method 'scram' has two dynamic authenticators"));
        let both = format!("{}{}", principal("ticket = \"t\""), authenticator(good));
        assert!(err(&both).contains(
            "method 'ticket' has a dynamic authenticator and principals with ticket credentials"
        ));
        let anonymous = format!(
            "anonymous = true\n{}",
            authenticator("methods = [\"anonymous\"]\nprocedure = \"com.auth\"")
        );
        assert!(err(&anonymous).contains("anonymous access (set anonymous = false)"));
        let role =
            |fields: &str| format!("anonymous = false\n[[realms.roles]]\nname = \"u\"\n{fields}\n");
        let authorizer = "authorizer = { procedure = \"com.authz\", realm = \"auth\", cache = \"session\", patterns = \"refuse\" }";
        let config = load(&role(authorizer)).unwrap();
        let engine = config.router_config(0);
        let dynamic = engine.realms[1].auth.roles.as_ref().unwrap()[0]
            .authorizer
            .as_ref()
            .unwrap();
        assert_eq!(
            (dynamic.cache, dynamic.patterns),
            (
                kreisel_engine::CacheScope::Session,
                kreisel_engine::Patterns::Refuse
            )
        );
        let with_rules =
            format!("{authorizer}\npermissions = [{{ uri = \"a\", allow = [\"call\"] }}]");
        assert!(err(&role(&with_rules)).contains("permissions or an authorizer, not both"));
        assert!(err(&role(
            "authorizer = { procedure = \"com.authz\", realm = \"x\" }"
        ))
        .contains("there is no realm 'x'"));
        assert!(err(&role(
            "authorizer = { procedure = \"com.authz\", cache = \"forever\" }"
        ))
        .contains("unknown variant"));
        assert!(err(&role(
            "authorizer = { procedure = \"com.authz\", concurrency_max = 0 }"
        ))
        .contains("at least 1"));
    }

    /// A role rule follows the realm's URI rule: the strict one in a strict realm; the error names the realm, the
    /// role, the rule's URI and what is wrong with it.
    #[test]
    fn role_rules_follow_the_realms_uri_rule() {
        let realm = |check: &str, uri: &str, policy: &str| {
            Config::from_toml(&format!(
                "[[realms]]\nname = \"app\"\nuri_check = \"{check}\"\n[[realms.roles]]\nname = \"anonymous\"\n\
                 permissions = [{{ uri = \"{uri}\", match = \"{policy}\", allow = [\"call\"] }}]\n"
            ))
        };
        for (uri, policy, why) in [
            (
                "app.getUser",
                "exact",
                "component 2 ('getUser') contains the uppercase letter 'U'",
            ),
            (
                "app.my-topic.",
                "prefix",
                "component 2 ('my-topic') contains '-'",
            ),
            (
                "app..Get",
                "wildcard",
                "component 3 ('Get') contains the uppercase letter 'G'",
            ),
        ] {
            let err = realm("strict", uri, policy).unwrap_err().0;
            assert!(
                err.starts_with(&format!(
                    "realm 'app', role 'anonymous': '{uri}' is not a valid URI pattern for match '{policy}': {why} \
                     (uri_check = \"strict\": lowercase letters, digits and '_' only)"
                )),
                "{err}"
            );
            // The loose rule allows them.
            realm("loose", uri, policy).unwrap();
        }
        let err = realm("loose", "app.*", "exact").unwrap_err().0;
        assert_eq!(
            err,
            "realm 'app', role 'anonymous': 'app.*' (match 'exact'): kreisel has no `*` in URIs: use match = \
             \"prefix\" with uri = \"app.\""
        );
        let err = realm("strict", "app.*.get", "exact").unwrap_err().0;
        assert!(
            err.ends_with("use match = \"wildcard\" with an empty component for each `*` (uri = \"app..get\")"),
            "{err}"
        );
        let err = realm("loose", "app..get", "exact").unwrap_err().0;
        assert!(
            err.contains("component 2 is empty (two dots in a row): a URI has no empty components (valid with match = \"wildcard\""),
            "{err}"
        );
    }

    #[test]
    fn realm_names_and_addresses_say_what_is_wrong() {
        let err = |text: &str| Config::from_toml(text).unwrap_err().0;
        let realm = |name: &str| err(&format!("[[realms]]\nname = \"{name}\"\n"));
        assert_eq!(
            realm("my realm"),
            "realm name 'my realm' is not a valid URI: component 1 ('my realm') contains whitespace (no whitespace, \
             '.' or '#' in a component)"
        );
        assert!(realm("app.").contains("component 2 is empty (it ends with '.')"));
        assert!(realm("").contains("it is empty"));
        assert!(realm("app.#1").contains("component 2 ('#1') contains '#'"));
        let listen = |address: &str| {
            let text = err(&format!(
                "[[listeners]]\nlisten = \"{address}\"\ntransports = [\"websocket\"]\n"
            ));
            let prefix = format!("listener 1 ('{address}'): ");
            assert!(text.starts_with(&prefix), "{text}");
            text[prefix.len()..].to_string()
        };
        for (address, expected) in [
            ("127.0.0.1:70000", "port 70000 is out of range 0..=65535"),
            (
                "localhost:8080",
                "'localhost' is a host name, which kreisel does not resolve: use a numeric IP such as \
                 127.0.0.1:8080 (or [::1]:8080)",
            ),
            (
                "example.com:99999",
                "'example.com' is a host name, which kreisel does not resolve: use a numeric IP such as \
                 127.0.0.1:8080, or 0.0.0.0:8080 for every interface; port 99999 is out of range 0..=65535",
            ),
            ("127.0.0.1:http", "port 'http' is not a number"),
            ("127.0.0.1:", "the port is missing after ':'"),
            (
                ":8080",
                "the host is missing: 0.0.0.0:8080 for every interface, 127.0.0.1:8080 for loopback",
            ),
            (
                "::1:8080",
                "'::1:8080': an IPv6 address goes in brackets, followed by the port: [::1]:8080",
            ),
            ("[foo]:80", "'foo' in brackets is not a numeric IPv6 address"),
            ("127.0.0.1", "'127.0.0.1' has no port: 127.0.0.1:8080, say (listen is HOST:PORT"),
            ("localhost", "'localhost' has no port (listen is HOST:PORT with a numeric IP"),
            (" 127.0.0.1:80", "' 127.0.0.1:80': remove the spaces around the address"),
        ] {
            let text = listen(address);
            assert!(text.starts_with(expected), "{address}: {text}");
        }
        // What is valid stays valid.
        for address in [
            "0.0.0.0:8080",
            "[::1]:0",
            "127.0.0.1:65535",
            "unix:/run/k.sock",
        ] {
            Config::from_toml(&format!(
                "[[listeners]]\nlisten = \"{address}\"\ntransports = [\"websocket\"]\n"
            ))
            .unwrap();
        }
    }

    /// Valid but suspicious access settings are warnings, each naming the realm and what to do.
    #[test]
    fn suspicious_access_settings_are_warnings() {
        let warnings = |realm: &str| {
            Config::from_toml(&format!("[[realms]]\nname = \"r\"\n{realm}"))
                .unwrap()
                .warnings()
        };
        let principal = "[[realms.principals]]\nauthid = \"a\"\nrole = \"u\"\nticket = \"t\"\n";
        let role = |name: &str| format!("[[realms.roles]]\nname = \"{name}\"\n");
        assert_eq!(Config::default().warnings(), Vec::<String>::new());
        let example = Config::from_toml(include_str!("../../examples/auth.toml")).unwrap();
        assert_eq!(example.warnings(), Vec::<String>::new());
        assert_eq!(
            warnings(&format!("{principal}{}", role("u"))),
            Vec::<String>::new()
        );
        // Nobody can join: no principals and anonymous = false (with or without roles); said once.
        let nobody = "realm 'r': nobody can join: it has no [[realms.principals]] and anonymous = false; add \
                      principals, or set anonymous = true to admit anonymous sessions (with role 'anonymous', the \
                      anonymous_role)";
        assert_eq!(warnings("anonymous = false\n"), [nobody]);
        assert_eq!(
            warnings(&format!("anonymous = false\n{}{}", role("u"), role("v"))),
            [nobody]
        );
        // anonymous_role set, but the realm has principals and `anonymous` is unset: no anonymous sessions.
        assert_eq!(
            warnings(&format!("anonymous_role = \"guest\"\n{principal}")),
            ["realm 'r': anonymous_role = 'guest' has no effect: a realm with principals admits anonymous \
              sessions only with anonymous = true"]
        );
        assert_eq!(
            warnings(&format!(
                "anonymous = true\nanonymous_role = \"guest\"\n{principal}{}{}",
                role("u"),
                role("guest")
            )),
            Vec::<String>::new()
        );
        // With anonymous = false said explicitly, the anonymous_role is kept on purpose.
        assert_eq!(
            warnings(&format!(
                "anonymous = false\nanonymous_role = \"guest\"\n{principal}{}{}",
                role("u"),
                role("guest")
            )),
            Vec::<String>::new()
        );
        // The default anonymous_role defined as a role, in a realm with principals.
        assert_eq!(
            warnings(&format!("{principal}{}{}", role("u"), role("anonymous"))),
            ["realm 'r': role 'anonymous' is given to nobody: it is the anonymous_role, but a realm with \
              principals admits anonymous sessions only with anonymous = true"]
        );
        // A role nobody has.
        assert_eq!(
            warnings(&format!("{principal}{}{}", role("u"), role("admin"))),
            ["realm 'r': role 'admin' is given to no principal and not to anonymous sessions: nobody gets its \
              permissions"]
        );
    }

    #[test]
    fn health_probes_and_their_paths() {
        let listener = |extra: &str| {
            Config::from_toml(&format!(
                "[[listeners]]\nlisten = \"127.0.0.1:1\"\ntransports = [\"websocket\"]\n{extra}"
            ))
        };
        let serves = |extra: &str| listener(extra).unwrap().listeners[0].serves_health();
        assert!(!serves(""));
        assert!(serves("metrics = \"/metrics\""));
        assert!(serves("health = true"));
        assert!(!serves("metrics = \"/metrics\"\nhealth = false"));
        assert!(listener("path = \"/readyz\"\nhealth = true")
            .unwrap_err()
            .0
            .contains(
                "/readyz is the health probe's path on this listener (health = false frees it)"
            ));
        assert!(listener("metrics = \"/healthz\"").is_err());
        listener("path = \"/readyz\"").unwrap();
        let raw = Config::from_toml(
            "[[listeners]]\nlisten = \"127.0.0.1:1\"\ntransports = [\"rawsocket\"]\nhealth = true",
        );
        assert!(raw
            .unwrap_err()
            .0
            .contains("needs the \"websocket\" transport"));
    }

    #[test]
    fn environment_variables_and_secret_files() {
        let env = |name: &str| match name {
            "TICKET" => Some("from the environment".to_string()),
            "PORT" => Some("9999".to_string()),
            _ => None,
        };
        let text =
            "[[realms]]\nname = \"app\"\n[[realms.principals]]\nauthid = \"alice\"\nrole = \"u\"\n\
                    ticket = \"${TICKET}\"\n[[listeners]]\nlisten = \"127.0.0.1:${PORT}\"\n\
                    transports = [\"rawsocket\"]\n";
        let config = Config::from_toml_with(text, &env).unwrap();
        assert_eq!(
            config.realms[0].principals[0].ticket.as_deref(),
            Some("from the environment")
        );
        assert_eq!(config.listeners[0].listen, "127.0.0.1:9999");
        let missing = Config::from_toml_with(&text.replace("${TICKET}", "${NOPE}"), &env);
        assert_eq!(
            missing.unwrap_err().0,
            "realm 'app', principal 'alice', ticket: the environment variable NOPE is not set"
        );
        // A mistake in a file with references is still explained (without a line of the file).
        let typo = Config::from_toml_with(&format!("{text}[limits]\nmesage_max = 1\n"), &env);
        assert!(typo.unwrap_err().0.contains("unknown field `mesage_max`"));
        // `$${` is a literal `${`; numbers stay numbers.
        let literal =
            Config::from_toml_with(&text.replace("${TICKET}", "$${TICKET}"), &env).unwrap();
        assert_eq!(
            literal.realms[0].principals[0].ticket.as_deref(),
            Some("${TICKET}")
        );
        let number = Config::from_toml_with("[limits]\nconnections_max = \"${PORT}\"\n", &env);
        assert!(number.unwrap_err().0.contains("invalid type: string"));
    }

    /// The NATS password of `[cluster]` from a file (and its token from the environment).
    #[test]
    fn cluster_credentials_from_files_and_the_environment() {
        let dir =
            std::env::temp_dir().join(format!("kreisel-cluster-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("nats-password");
        std::fs::write(&file, "from a file\n").unwrap();
        let text = format!(
            "[cluster]\nname = \"c\"\nnats = [\"nats://127.0.0.1:4222\"]\nuser = \"k\"\npassword_file = \"{}\"\n",
            file.display()
        );
        let config = Config::from_toml(&text).unwrap();
        let cluster = config.cluster.unwrap();
        assert_eq!(cluster.password.as_deref(), Some("from a file"));
        let env = |name: &str| (name == "NATS_TOKEN").then(|| "t0ken".to_string());
        let text = "[cluster]\nname = \"c\"\nnats = [\"nats://127.0.0.1:4222\"]\ntoken = \"${NATS_TOKEN}\"\n";
        let config = Config::from_toml_with(text, &env).unwrap();
        assert_eq!(config.cluster.unwrap().token.as_deref(), Some("t0ken"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A reload names each changed setting; a principal's credentials are named, never shown.
    #[test]
    fn changes_name_each_setting_and_hide_secrets() {
        let before = Config::from_toml(
            "[[realms]]\nname = \"app\"\n[[realms.principals]]\nauthid = \"alice\"\nrole = \"u\"\n\
             ticket = \"old secret\"\n[[realms.principals]]\nauthid = \"bob\"\nrole = \"u\"\nticket = \"b\"\n\
             [[listeners]]\nlisten = \"127.0.0.1:1\"\ntransports = [\"websocket\"]\n",
        )
        .unwrap();
        assert_eq!(before.changes(&before), []);
        let after = Config::from_toml(
            "[[realms]]\nname = \"app\"\nretained_max = 5\n[[realms.principals]]\nauthid = \"alice\"\n\
             role = \"v\"\nticket = \"new secret\"\n[[realms.principals]]\nauthid = \"eve\"\nrole = \"u\"\n\
             ticket = \"e\"\n[[realms.authenticators]]\nmethods = [\"wampcra\"]\n\
             procedure = \"com.example.authenticate\"\n[[listeners]]\nlisten = \"127.0.0.1:1\"\ntransports = [\"websocket\"]\n\
             path = \"/wamp\"\n[limits]\nconnections_max = 5\n[log]\nformat = \"json\"\n",
        )
        .unwrap();
        let changes: Vec<(String, String, bool)> = before
            .changes(&after)
            .into_iter()
            .map(|c| (c.setting, c.change, c.applied))
            .collect();
        let expect = |setting: &str, change: &str, applied: bool| {
            (setting.to_string(), change.to_string(), applied)
        };
        assert_eq!(
            changes,
            [
                expect("limits.connections_max", "10000 -> 5", false),
                expect("log.format", "\"text\" -> \"json\"", false),
                expect(
                    "listener 1 ('127.0.0.1:1') path",
                    "\"/ws\" -> \"/wamp\"",
                    false
                ),
                expect("realm 'app' retained_max", "1000 -> 5", false),
                expect(
                    "realm 'app' principals",
                    "added 'eve'; removed 'bob'; changed 'alice' (role 'u' -> 'v', credentials)",
                    true
                ),
                expect(
                    "realm 'app' authenticators",
                    "added 'com.example.authenticate'",
                    true
                ),
            ]
        );
        assert!(!format!("{changes:?}").contains("secret"));
    }

    #[test]
    fn rawsocket_exponent_is_largest_power_not_above_max() {
        let mut config = Config::default();
        for (max, exponent) in [(512, 0), (1023, 0), (1024, 1), (1 << 20, 11), (1 << 24, 15)] {
            config.limits.message_max = max;
            assert_eq!(config.rawsocket_exponent(), exponent, "{max}");
        }
    }
}
