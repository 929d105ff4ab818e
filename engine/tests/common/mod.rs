//! The deterministic test harness shared by the engine's test files: messages go in as JSON text (decoded by the
//! codec), and what the engine sends is recorded as JSON values, per connection.
#![allow(dead_code)] // every test file uses a different part

use kreisel_codec::{Message, Serializer};
use kreisel_engine::link::{self, PeerMessage, ShardSet};
use kreisel_engine::{
    ConnId, Peer, RealmConfig, Recipients, Router, RouterConfig, SessionHandle, Sink,
};
use serde_json::Value;

/// HELLO roles announcing every role and no feature.
pub const PLAIN_ROLES: &str = r#"{"publisher": {}, "subscriber": {}, "caller": {}, "callee": {}}"#;

#[derive(Default)]
pub struct Recorder {
    /// (connection, message as JSON) in send order.
    pub sent: Vec<(u64, Value)>,
    /// What the sink tells the engine about a connection's transport when asked.
    pub transports: std::collections::HashMap<u64, kreisel_engine::TransportInfo>,
    pub closed: Vec<u64>,
    /// Number of `send_many` calls (one per subscription reached by a publication, more when filters split it).
    pub multicasts: usize,
}

/// A message as the JSON value its JSON encoding reads back as.
fn as_json(msg: &Message<'_>) -> Value {
    let mut bytes = Vec::new();
    Serializer::Json.encode(msg, &mut bytes);
    serde_json::from_slice(&bytes).expect("the codec writes valid JSON")
}

impl Recorder {
    fn record(&mut self, to: Peer, msg: &Message<'_>) {
        self.sent.push((to.conn.0, as_json(msg)));
    }
}

impl Sink for Recorder {
    fn send(&mut self, to: Peer, msg: &Message<'_>) {
        self.record(to, msg);
    }
    fn send_many(&mut self, to: Recipients<'_>, msg: &Message<'_>) {
        self.multicasts += 1;
        for peer in to.iter() {
            self.record(*peer, msg);
        }
    }
    fn close(&mut self, to: Peer) {
        self.closed.push(to.conn.0);
    }
    fn transport(&mut self, to: Peer) -> Option<kreisel_engine::TransportInfo> {
        self.transports.get(&to.conn.0).cloned()
    }
}

/// A shard's sink in the multi-shard and cluster tests: messages to sessions recorded as JSON values (like
/// [`Recorder`]), and the encoded peer messages for the other shards with their destinations.
#[derive(Default)]
pub struct ShardOut {
    pub sent: Vec<(u64, Value)>,
    pub closed: Vec<u64>,
    pub peer: Vec<(ShardSet, Vec<u8>)>,
}

impl Sink for ShardOut {
    fn send(&mut self, to: Peer, msg: &Message<'_>) {
        self.sent.push((to.conn.0, as_json(msg)));
    }
    fn send_many(&mut self, to: Recipients<'_>, msg: &Message<'_>) {
        for peer in to.iter() {
            self.send(*peer, msg);
        }
    }
    fn close(&mut self, to: Peer) {
        self.closed.push(to.conn.0);
    }
    fn peer(&mut self, to: ShardSet, msg: &PeerMessage<'_>) {
        let mut bytes = Vec::new();
        link::encode(msg, &mut bytes);
        self.peer.push((to, bytes));
    }
}

pub struct Harness {
    pub router: Router,
    pub out: Recorder,
    pub handles: Vec<SessionHandle>,
    /// The engine time passed with every message (milliseconds).
    pub now_ms: u64,
}

impl Harness {
    /// The default router (realm `realm1`) plus a realm `strict` with the strict URI rule.
    pub fn new() -> Harness {
        let mut config = RouterConfig::default();
        config.realms.push(RealmConfig {
            uri_check: kreisel_engine::uri::UriCheck::Strict,
            ..RealmConfig::new("strict")
        });
        Harness::with_config(config)
    }

    pub fn with_config(config: RouterConfig) -> Harness {
        Harness {
            router: Router::new(config),
            out: Recorder::default(),
            handles: Vec::new(),
            now_ms: 0,
        }
    }

    /// Opens a connection; returns its index (also its ConnId).
    pub fn open(&mut self) -> usize {
        let conn = self.handles.len();
        let handle = self
            .router
            .handle_open(ConnId(conn as u64), Serializer::Json);
        self.handles.push(handle);
        conn
    }

    /// Opens a connection speaking `serializer`; returns its index.
    pub fn open_with(&mut self, serializer: Serializer) -> usize {
        let conn = self.handles.len();
        let handle = self.router.handle_open(ConnId(conn as u64), serializer);
        self.handles.push(handle);
        conn
    }

    /// Sends `message` (written as JSON) encoded in `serializer`, as a peer speaking it would.
    pub fn send_as(&mut self, conn: usize, serializer: Serializer, message: &Value) {
        let text = message.to_string();
        let msg = Serializer::Json
            .decode(text.as_bytes())
            .unwrap_or_else(|e| panic!("test message {text} decodes: {e}"));
        let mut bytes = Vec::new();
        serializer.encode(&msg, &mut bytes);
        let msg = serializer
            .decode(&bytes)
            .expect("the codec reads what it wrote");
        self.router
            .handle_message(self.handles[conn], &msg, self.now_ms, &mut self.out);
    }

    pub fn send(&mut self, conn: usize, json_text: &str) {
        let msg = Serializer::Json
            .decode(json_text.as_bytes())
            .unwrap_or_else(|e| panic!("test message {json_text} decodes: {e}"));
        self.router
            .handle_message(self.handles[conn], &msg, self.now_ms, &mut self.out);
    }

    /// Advances the engine clock to `now_ms` and fires what is due.
    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        self.router.handle_timeout(now_ms, &mut self.out);
    }

    /// Opens a connection and joins realm1 with every role and no feature; returns (conn, session ID).
    pub fn join(&mut self) -> (usize, u64) {
        self.join_with("realm1", PLAIN_ROLES)
    }

    /// Opens a connection and joins `realm` announcing `roles` (a JSON dictionary); returns (conn, session ID).
    pub fn join_with(&mut self, realm: &str, roles: &str) -> (usize, u64) {
        let conn = self.open();
        self.send(conn, &format!(r#"[1, "{realm}", {{"roles": {roles}}}]"#));
        let welcome = self.take_one(conn);
        assert_eq!(welcome[0], 2, "{welcome}");
        (conn, welcome[1].as_u64().unwrap())
    }

    /// Everything sent to `conn` since the last take.
    pub fn take(&mut self, conn: usize) -> Vec<Value> {
        let (mine, rest): (Vec<_>, Vec<_>) = self
            .out
            .sent
            .drain(..)
            .partition(|(c, _)| *c == conn as u64);
        self.out.sent = rest;
        mine.into_iter().map(|(_, v)| v).collect()
    }

    pub fn take_one(&mut self, conn: usize) -> Value {
        let mut messages = self.take(conn);
        assert_eq!(
            messages.len(),
            1,
            "expected one message to {conn}, got {messages:?}"
        );
        messages.remove(0)
    }

    /// Asserts nothing was sent to anyone since the last takes.
    pub fn assert_quiet(&self) {
        assert!(self.out.sent.is_empty(), "unexpected: {:?}", self.out.sent);
    }

    pub fn close(&mut self, conn: usize) {
        self.router.handle_close(self.handles[conn], &mut self.out);
    }
}
