//! Several nodes of a cluster, in memory and deterministic: each node is a few shards (engines) and its
//! backplane ([`Node`]), linked by a fake backplane with one FIFO per pair of nodes (a connection's order), which
//! the test drains in the order it chooses (or a seeded random one, which reorders messages across connections),
//! can drop messages, partition nodes, and kill one. The key-value store is an in-memory compare-and-set map
//! whose answers also arrive when the test says (or never: unavailable).
//!
//! The cluster logic (interest, registrations, calls, membership, reaping, resynchronisation) is tested here
//! without sockets; `tests/tests/cluster.rs` runs the same features on real nodes over NATS.

mod common;

use std::collections::{HashMap, HashSet, VecDeque};

use kreisel_codec::Serializer;
use kreisel_engine::cluster::{record, KvOp, KvResult, Node, NodeConfig, NodeSink, Slot};
use kreisel_engine::link::{self, PeerMessage, ShardId, ShardSet};
use kreisel_engine::{ConnId, RealmConfig, Router, RouterConfig, SessionHandle};
use serde_json::{json, Value};

/// One shard's output.
use common::ShardOut as Out;

#[derive(Clone, Debug)]
enum KvOwned {
    Get(String),
    Put(String, Vec<u8>, u64),
    Delete(String, u64),
}

/// A node's backplane output.
#[derive(Default)]
struct NodeOut {
    shards: Vec<(ShardSet, Vec<u8>)>,
    nodes: Vec<(Option<Slot>, bool, Vec<u8>)>,
    kv: Vec<(u64, KvOwned)>,
    fenced: Option<String>,
}

impl NodeSink for NodeOut {
    fn shards(&mut self, to: ShardSet, msg: &PeerMessage<'_>) {
        let mut bytes = Vec::new();
        link::encode(msg, &mut bytes);
        self.shards.push((to, bytes));
    }
    fn shards_raw(&mut self, to: ShardSet, raw: &[u8]) {
        self.shards.push((to, raw.to_vec()));
    }
    fn node(&mut self, to: Option<Slot>, droppable: bool, parts: &[&[u8]]) {
        self.nodes.push((to, droppable, parts.concat()));
    }
    fn kv(&mut self, id: u64, op: KvOp<'_>) {
        let op = match op {
            KvOp::Get { key } => KvOwned::Get(key.into()),
            KvOp::Put { key, value, expect } => KvOwned::Put(key.into(), value.into(), expect),
            KvOp::Delete { key, expect } => KvOwned::Delete(key.into(), expect),
        };
        self.kv.push((id, op));
    }
    fn fenced(&mut self, reason: &str) {
        self.fenced = Some(reason.into());
    }
}

/// The store: key → (revision of the last write, value or deleted).
#[derive(Default)]
struct Kv {
    map: HashMap<String, (u64, Option<Vec<u8>>)>,
    seq: u64,
    /// Answers `Failed` to everything.
    down: bool,
    writes: u64,
}

impl Kv {
    fn apply(&mut self, op: &KvOwned) -> (KvResultOwned, bool) {
        if self.down {
            return (KvResultOwned::Failed, false);
        }
        match op {
            KvOwned::Get(key) => {
                let (rev, value) = self.map.get(key).cloned().unwrap_or((0, None));
                (KvResultOwned::Value(rev, value), false)
            }
            KvOwned::Put(key, value, expect) => {
                let rev = self.map.get(key).map_or(0, |(rev, _)| *rev);
                if rev != *expect {
                    return (KvResultOwned::Conflict, false);
                }
                self.seq += 1;
                self.writes += 1;
                self.map
                    .insert(key.clone(), (self.seq, Some(value.clone())));
                (KvResultOwned::Written(self.seq), true)
            }
            KvOwned::Delete(key, expect) => {
                let rev = self.map.get(key).map_or(0, |(rev, _)| *rev);
                if rev != *expect {
                    return (KvResultOwned::Conflict, false);
                }
                self.seq += 1;
                self.writes += 1;
                self.map.insert(key.clone(), (self.seq, None));
                (KvResultOwned::Written(self.seq), true)
            }
        }
    }
}

enum KvResultOwned {
    Value(u64, Option<Vec<u8>>),
    Written(u64),
    Conflict,
    Failed,
}

struct SimNode {
    routers: Vec<Router>,
    outs: Vec<Out>,
    node: Node,
    out: NodeOut,
    /// (from, to) within the node (the backplane is shard number `routers.len()`).
    links: HashMap<(usize, usize), VecDeque<Vec<u8>>>,
    alive: bool,
}

/// Where a message waits: inside a node, between nodes, or for the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Queue {
    Local(Slot, usize, usize),
    Net(Slot, Slot),
    Kv(Slot),
}

struct Cluster {
    nodes: HashMap<Slot, SimNode>,
    shards: usize,
    net: HashMap<(Slot, Slot), VecDeque<Vec<u8>>>,
    kv: Kv,
    kv_queue: HashMap<Slot, VecDeque<(u64, KvOwned)>>,
    /// Pairs of nodes whose messages are dropped (both directions).
    cut: HashSet<(Slot, Slot)>,
    conns: HashMap<u64, (Slot, usize, SessionHandle)>,
    next_conn: u64,
    received: HashMap<u64, Vec<Value>>,
    now_ms: u64,
    rng: u64,
    /// Node messages dropped by the harness, and publications sent between nodes.
    dropped: u64,
    publications: HashMap<(Slot, Slot), u64>,
}

const FEATURES: &str = r#"{"publisher": {"features": {"publisher_identification": true, "publisher_exclusion": true, "subscriber_blackwhite_listing": true}},
    "subscriber": {"features": {"pattern_based_subscription": true, "publisher_identification": true}},
    "caller": {"features": {"caller_identification": true, "progressive_call_results": true, "progressive_call_invocations": true, "call_canceling": true}},
    "callee": {"features": {"pattern_based_registration": true, "caller_identification": true, "progressive_call_results": true, "progressive_call_invocations": true, "call_canceling": true, "call_timeout": true, "shared_registration": true}}}"#;

const HEARTBEAT_MS: u64 = 100;
const DEAD_AFTER_MS: u64 = 1_000;
const SEED: u64 = 0x00c1_0573_2000_0001;

impl Cluster {
    /// `nodes` nodes of `shards` shards each, joined one after another.
    fn new(nodes: usize, shards: usize) -> Cluster {
        let mut c = Cluster {
            nodes: HashMap::new(),
            shards,
            net: HashMap::new(),
            kv: Kv::default(),
            kv_queue: HashMap::new(),
            cut: HashSet::new(),
            conns: HashMap::new(),
            next_conn: 1,
            received: HashMap::new(),
            now_ms: 0,
            rng: 0x2545_f491_4f6c_dd1d,
            dropped: 0,
            publications: HashMap::new(),
        };
        for _ in 0..nodes {
            c.add_node();
        }
        c
    }

    /// A node joins: claims a slot in the members record, asks the others for their state, becomes ready.
    fn add_node(&mut self) -> Slot {
        let epoch = 1_000 + self.kv.seq * 7 + self.nodes.len() as u64;
        let (current_rev, current) = self
            .kv
            .map
            .get(record::MEMBERS_KEY)
            .cloned()
            .unwrap_or((0, None));
        let record::Claim {
            slot,
            others,
            value,
        } = record::claim_slot(current.as_deref(), epoch).expect("a free slot");
        let (claimed, _) = self.kv.apply(&KvOwned::Put(
            record::MEMBERS_KEY.into(),
            value,
            current_rev,
        ));
        assert!(matches!(claimed, KvResultOwned::Written(_)));
        let realms = vec![RealmConfig::new("realm1"), RealmConfig::new("realm2")];
        let routers = (0..self.shards)
            .map(|shard| {
                Router::new(RouterConfig {
                    realms: realms.clone(),
                    seed: SEED,
                    shard: shard as ShardId,
                    shards: self.shards,
                    cluster_slot: Some(slot),
                    ..RouterConfig::default()
                })
            })
            .collect();
        let node = Node::new(NodeConfig {
            slot,
            epoch,
            members: others,
            shards: self.shards,
            realms,
            heartbeat_ms: HEARTBEAT_MS,
            dead_after_ms: DEAD_AFTER_MS,
            gather_timeout_ms: 1_500,
            seed: SEED,
            epoch_unix_ms: 0,
        });
        self.nodes.insert(
            slot,
            SimNode {
                routers,
                outs: (0..self.shards).map(|_| Out::default()).collect(),
                node,
                out: NodeOut::default(),
                links: HashMap::new(),
                alive: true,
            },
        );
        let now = self.now_ms;
        let sim = self.nodes.get_mut(&slot).unwrap();
        sim.node.start(now, &mut sim.out);
        self.collect_node(slot);
        self.settle();
        assert!(self.nodes[&slot].node.ready(), "node {slot} is ready");
        slot
    }

    fn node(&self, slot: Slot) -> &SimNode {
        &self.nodes[&slot]
    }

    fn collect_shard(&mut self, slot: Slot, shard: usize) {
        let sim = self.nodes.get_mut(&slot).unwrap();
        let out = &mut sim.outs[shard];
        for (conn, value) in out.sent.drain(..) {
            self.received.entry(conn).or_default().push(value);
        }
        for (to, bytes) in out.peer.drain(..) {
            assert!(!to.contains(shard as ShardId), "a shard sends to itself");
            for dest in to.iter() {
                sim.links
                    .entry((shard, dest as usize))
                    .or_default()
                    .push_back(bytes.clone());
            }
        }
    }

    fn collect_node(&mut self, slot: Slot) {
        let backplane = self.shards;
        let sim = self.nodes.get_mut(&slot).unwrap();
        for (to, bytes) in sim.out.shards.drain(..) {
            if std::env::var("SIM_DEBUG").is_ok() {
                eprintln!(
                    "node {slot} -> shards {to:?}: {:?}",
                    link::decode(&bytes, true)
                );
            }
            for dest in to.iter() {
                assert!(
                    (dest as usize) < backplane,
                    "the backplane sends to a shard"
                );
                sim.links
                    .entry((backplane, dest as usize))
                    .or_default()
                    .push_back(bytes.clone());
            }
        }
        let others: Vec<Slot> = self.nodes.keys().copied().filter(|&s| s != slot).collect();
        let sim = self.nodes.get_mut(&slot).unwrap();
        let messages: Vec<_> = sim.out.nodes.drain(..).collect();
        let kv: Vec<_> = sim.out.kv.drain(..).collect();
        for (to, _droppable, bytes) in messages {
            let targets: Vec<Slot> = match to {
                Some(to) => vec![to],
                None => others.clone(),
            };
            for target in targets {
                if self.cut.contains(&(slot, target)) || !self.nodes.contains_key(&target) {
                    self.dropped += 1;
                    continue;
                }
                // Kind LINK (6), not numbered: a publication.
                if bytes.len() > 20 && bytes[1] == 6 && bytes[12..20] == [0; 8] {
                    *self.publications.entry((slot, target)).or_default() += 1;
                }
                self.net
                    .entry((slot, target))
                    .or_default()
                    .push_back(bytes.clone());
            }
        }
        self.kv_queue.entry(slot).or_default().extend(kv);
    }

    fn deliver(&mut self, queue: Queue) -> bool {
        match queue {
            Queue::Local(slot, from, to) => {
                let backplane = self.shards;
                let now = self.now_ms;
                let sim = self.nodes.get_mut(&slot).unwrap();
                let Some(bytes) = sim.links.get_mut(&(from, to)).and_then(VecDeque::pop_front)
                else {
                    return false;
                };
                let msg = link::decode(&bytes, true).expect("link messages decode");
                if to == backplane {
                    sim.node
                        .handle_shard(from as ShardId, &msg, &bytes, now, &mut sim.out);
                    self.collect_node(slot);
                } else {
                    sim.routers[to].handle_peer(from as ShardId, &msg, now, &mut sim.outs[to]);
                    self.collect_shard(slot, to);
                }
                true
            }
            Queue::Net(from, to) => {
                let Some(bytes) = self.net.get_mut(&(from, to)).and_then(VecDeque::pop_front)
                else {
                    return false;
                };
                let now = self.now_ms;
                if let Some(sim) = self.nodes.get_mut(&to).filter(|s| s.alive) {
                    sim.node.handle_remote(&bytes, now, &mut sim.out);
                    self.collect_node(to);
                }
                true
            }
            Queue::Kv(slot) => {
                let Some((id, op)) = self.kv_queue.get_mut(&slot).and_then(VecDeque::pop_front)
                else {
                    return false;
                };
                let (result, _) = self.kv.apply(&op);
                let now = self.now_ms;
                if let Some(sim) = self.nodes.get_mut(&slot).filter(|s| s.alive) {
                    let result = match &result {
                        KvResultOwned::Value(rev, value) => KvResult::Value {
                            rev: *rev,
                            value: value.as_deref(),
                        },
                        KvResultOwned::Written(rev) => KvResult::Written { rev: *rev },
                        KvResultOwned::Conflict => KvResult::Conflict,
                        KvResultOwned::Failed => KvResult::Failed,
                    };
                    sim.node.handle_kv(id, result, now, &mut sim.out);
                    self.collect_node(slot);
                }
                true
            }
        }
    }

    fn busy(&self) -> Vec<Queue> {
        let mut busy = Vec::new();
        for (&slot, sim) in &self.nodes {
            if !sim.alive {
                continue;
            }
            for (&(from, to), queue) in &sim.links {
                if !queue.is_empty() {
                    busy.push(Queue::Local(slot, from, to));
                }
            }
        }
        for (&(from, to), queue) in &self.net {
            if !queue.is_empty() {
                busy.push(Queue::Net(from, to));
            }
        }
        for (&slot, queue) in &self.kv_queue {
            if !queue.is_empty() {
                busy.push(Queue::Kv(slot));
            }
        }
        busy.sort_unstable();
        busy
    }

    /// Delivers everything in flight, queues in a fixed order.
    fn settle(&mut self) {
        loop {
            let busy = self.busy();
            if busy.is_empty() {
                return;
            }
            for queue in busy {
                self.deliver(queue);
            }
        }
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Delivers one message from a queue picked at random; false when nothing is in flight.
    fn step_random(&mut self) -> bool {
        let busy = self.busy();
        if busy.is_empty() {
            return false;
        }
        let pick = busy[(self.random() % busy.len() as u64) as usize];
        self.deliver(pick)
    }

    fn settle_random(&mut self) {
        while self.step_random() {}
    }

    /// Advances time in steps of `step` ms up to `until`, firing every timer and settling after each step.
    fn run_until(&mut self, until: u64, step: u64) {
        while self.now_ms < until {
            self.now_ms = (self.now_ms + step).min(until);
            let now = self.now_ms;
            let slots: Vec<Slot> = self.nodes.keys().copied().collect();
            for slot in slots {
                if !self.nodes[&slot].alive {
                    continue;
                }
                for shard in 0..self.shards {
                    let sim = self.nodes.get_mut(&slot).unwrap();
                    sim.routers[shard].handle_timeout(now, &mut sim.outs[shard]);
                    self.collect_shard(slot, shard);
                }
                let sim = self.nodes.get_mut(&slot).unwrap();
                sim.node.handle_timeout(now, &mut sim.out);
                self.collect_node(slot);
            }
            self.settle();
        }
    }

    /// Kills a node at once (kill -9): nothing more from or to it.
    fn kill(&mut self, slot: Slot) {
        if let Some(sim) = self.nodes.get_mut(&slot) {
            sim.alive = false;
            sim.links.clear();
        }
        self.net.retain(|&(from, to), _| from != slot && to != slot);
        self.kv_queue.remove(&slot);
        self.conns.retain(|_, &mut (s, ..)| s != slot);
    }

    /// Opens a connection on (node, shard) and joins `realm` with every feature.
    fn join_realm(&mut self, slot: Slot, shard: usize, realm: &str, details: Value) -> u64 {
        let conn = self.next_conn;
        self.next_conn += 1;
        let sim = self.nodes.get_mut(&slot).unwrap();
        let handle = sim.routers[shard].handle_open(ConnId(conn), Serializer::Json);
        self.conns.insert(conn, (slot, shard, handle));
        let mut details = details;
        details["roles"] = serde_json::from_str(FEATURES).unwrap();
        self.send(conn, &json!([1, realm, details]).to_string());
        self.settle();
        let welcome = self.take_one(conn);
        assert_eq!(welcome[0], 2, "{welcome}");
        conn
    }

    fn join(&mut self, slot: Slot, shard: usize) -> u64 {
        self.join_realm(slot, shard, "realm1", json!({}))
    }

    fn session_id(&self, conn: u64) -> u64 {
        let (slot, shard, handle) = self.conns[&conn];
        self.nodes[&slot].routers[shard]
            .session_info(handle)
            .unwrap()
            .id
            .get()
    }

    fn send(&mut self, conn: u64, text: &str) {
        let (slot, shard, handle) = self.conns[&conn];
        let msg = Serializer::Json
            .decode(text.as_bytes())
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        let now = self.now_ms;
        let sim = self.nodes.get_mut(&slot).unwrap();
        sim.routers[shard].handle_message(handle, &msg, now, &mut sim.outs[shard]);
        self.collect_shard(slot, shard);
    }

    fn close(&mut self, conn: u64) {
        let (slot, shard, handle) = self.conns.remove(&conn).expect("open connection");
        let sim = self.nodes.get_mut(&slot).unwrap();
        sim.routers[shard].handle_close(handle, &mut sim.outs[shard]);
        self.collect_shard(slot, shard);
    }

    fn take(&mut self, conn: u64) -> Vec<Value> {
        self.received.remove(&conn).unwrap_or_default()
    }

    fn take_one(&mut self, conn: u64) -> Value {
        let mut messages = self.take(conn);
        assert_eq!(
            messages.len(),
            1,
            "expected one message to {conn}: {messages:?}"
        );
        messages.remove(0)
    }

    fn subscribe(&mut self, conn: u64, topic: &str, options: Value) -> u64 {
        self.send(conn, &json!([32, 1, options, topic]).to_string());
        self.settle();
        let reply = self.take_one(conn);
        assert_eq!(reply[0], 33, "{reply}");
        reply[2].as_u64().unwrap()
    }

    fn register(&mut self, conn: u64, procedure: &str, options: Value) -> Value {
        self.send(conn, &json!([64, 1, options, procedure]).to_string());
        self.settle();
        self.take_one(conn)
    }

    /// A CALL from `caller`, settled; the INVOCATION's callee connection and message.
    fn call_reaches(
        &mut self,
        caller: u64,
        request: u64,
        procedure: &str,
        callees: &[u64],
    ) -> (u64, Value) {
        self.send(caller, &json!([48, request, {}, procedure, []]).to_string());
        self.settle();
        let mut found = None;
        for &callee in callees {
            for msg in self.take(callee) {
                if msg[0] == 68 {
                    assert!(found.is_none(), "one INVOCATION only");
                    found = Some((callee, msg));
                }
            }
        }
        found.expect("an INVOCATION")
    }

    fn yield_to(&mut self, callee: u64, invocation: &Value, result: Value) {
        self.send(
            callee,
            &json!([70, invocation[1], {}, [result]]).to_string(),
        );
        self.settle();
    }
}

fn events(messages: &[Value]) -> Vec<Value> {
    messages.iter().filter(|m| m[0] == 36).cloned().collect()
}

// -------------------------------------------------------------------------------------------------------------
// Pub/sub

#[test]
fn publications_cross_only_to_nodes_with_a_matching_subscriber_once_each() {
    let mut c = Cluster::new(3, 2);
    // Two subscribers on node 1 (different shards), one on node 2; none on node 0.
    let a = c.join(1, 0);
    let b = c.join(1, 1);
    let d = c.join(2, 1);
    let ids = [
        c.subscribe(a, "com.topic", json!({})),
        c.subscribe(b, "com.topic", json!({})),
        c.subscribe(d, "com.topic", json!({})),
    ];
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "one subscription ID: {ids:?}"
    );
    let publisher = c.join(0, 0);
    c.publications.clear();
    c.send(
        publisher,
        r#"[16, 1, {"acknowledge": true}, "com.topic", [1]]"#,
    );
    c.settle();
    assert_eq!(c.take_one(publisher)[0], 17);
    for conn in [a, b, d] {
        let got = events(&c.take(conn));
        assert_eq!(got.len(), 1, "{conn}");
        assert_eq!(got[0][4], json!([1]));
    }
    assert_eq!(c.publications.get(&(0, 1)), Some(&1), "once to node 1");
    assert_eq!(c.publications.get(&(0, 2)), Some(&1), "once to node 2");
    // A topic nobody subscribes to crosses nowhere.
    c.publications.clear();
    c.send(publisher, r#"[16, 2, {}, "com.nobody", [2]]"#);
    c.settle();
    assert!(c.publications.is_empty(), "{:?}", c.publications);
    // After the last subscriber of node 2 leaves, node 2 gets nothing more.
    c.close(d);
    c.settle();
    c.publications.clear();
    c.send(publisher, r#"[16, 3, {}, "com.topic", [3]]"#);
    c.settle();
    assert_eq!(c.publications.get(&(0, 2)), None);
    assert_eq!(c.publications.get(&(0, 1)), Some(&1));
}

#[test]
fn patterns_filters_exclusion_and_disclosure_hold_across_nodes() {
    let mut c = Cluster::new(3, 2);
    let exact = c.join(0, 1);
    let prefix = c.join(1, 0);
    let midword = c.join(1, 1);
    let wildcard = c.join(2, 0);
    c.subscribe(exact, "com.example.b", json!({}));
    c.subscribe(prefix, "com.example.", json!({"match": "prefix"}));
    // A prefix that ends in the middle of a component matches by string.
    c.subscribe(midword, "com.ex", json!({"match": "prefix"}));
    c.subscribe(
        wildcard,
        "com..b",
        json!({"match": "wildcard", "disclose_publisher": true}),
    );
    let publisher = c.join(2, 1);
    c.subscribe(publisher, "com.example.b", json!({}));
    c.send(publisher, r#"[16, 1, {}, "com.example.b", ["x"]]"#);
    c.settle();
    assert_eq!(events(&c.take(exact)).len(), 1);
    let got = events(&c.take(prefix));
    assert_eq!(
        (got.len(), &got[0][3]["topic"]),
        (1, &json!("com.example.b"))
    );
    assert_eq!(events(&c.take(midword)).len(), 1);
    let got = events(&c.take(wildcard));
    assert_eq!(got.len(), 1);
    assert!(got[0][3]["publisher"].is_u64(), "disclosed: {}", got[0]);
    assert!(events(&c.take(publisher)).is_empty(), "excluded by default");
    // "com.exa" does not match the prefix "com.example." nor "com..b"; it matches "com.ex".
    c.send(publisher, r#"[16, 2, {}, "com.exa", []]"#);
    c.settle();
    assert_eq!(events(&c.take(midword)).len(), 1);
    assert!(events(&c.take(prefix)).is_empty());
    // A white list naming a session on another node, a black list by authid, exclude_me false.
    let prefix_session = c.session_id(prefix);
    c.send(
        publisher,
        &json!([16, 3, {"eligible": [prefix_session], "exclude_me": false}, "com.example.b", ["y"]])
            .to_string(),
    );
    c.settle();
    assert_eq!(events(&c.take(prefix)).len(), 1);
    for conn in [exact, midword, wildcard, publisher] {
        assert!(events(&c.take(conn)).is_empty(), "{conn}");
    }
    let exact_authid = format!("anonymous-{}", c.session_id(exact));
    c.send(
        publisher,
        &json!([16, 4, {"exclude_authid": [exact_authid]}, "com.example.b", []]).to_string(),
    );
    c.settle();
    assert!(events(&c.take(exact)).is_empty());
    assert_eq!(events(&c.take(prefix)).len(), 1);
}

#[test]
fn subscribed_waits_until_every_node_installed_the_subscriber() {
    for seed in 0..30u64 {
        let mut c = Cluster::new(3, 2);
        c.rng ^= seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let subscriber = c.join(0, 0);
        let publishers = [c.join(1, 1), c.join(2, 0)];
        c.send(subscriber, r#"[32, 1, {"match": "prefix"}, "com."]"#);
        // Deliver in a random order until SUBSCRIBED arrives; then each publisher publishes at once.
        let mut subscribed = false;
        while c.step_random() {
            let got = c.take(subscriber);
            if got.iter().any(|m| m[0] == 33) {
                subscribed = true;
                break;
            }
        }
        assert!(subscribed, "seed {seed}");
        for (i, &publisher) in publishers.iter().enumerate() {
            c.send(publisher, &json!([16, i + 1, {}, "com.x", [i]]).to_string());
        }
        c.settle_random();
        assert_eq!(
            events(&c.take(subscriber)).len(),
            2,
            "seed {seed}: no event lost"
        );
    }
}

#[test]
fn events_from_one_publisher_arrive_in_order_across_nodes() {
    let mut c = Cluster::new(2, 2);
    let subscribers = [c.join(0, 0), c.join(0, 1), c.join(1, 1)];
    for &s in &subscribers {
        c.subscribe(s, "com.seq", json!({}));
    }
    let publisher = c.join(1, 0);
    for i in 0..50 {
        c.send(
            publisher,
            &json!([16, i + 1, {}, "com.seq", [i]]).to_string(),
        );
        if i % 7 == 0 {
            c.step_random();
        }
    }
    c.settle_random();
    for &s in &subscribers {
        let got: Vec<u64> = events(&c.take(s))
            .iter()
            .map(|e| e[4][0].as_u64().unwrap())
            .collect();
        assert_eq!(got, (0..50).collect::<Vec<_>>());
    }
}

#[test]
fn retained_events_and_cross_serializer_delivery_hold_across_nodes() {
    let mut c = Cluster::new(2, 2);
    let publisher = c.join(0, 0);
    c.send(publisher, r#"[16, 1, {"retain": true}, "com.state", [42]]"#);
    c.settle();
    // A subscriber on the other node asks for it.
    let late = c.join(1, 1);
    c.send(late, r#"[32, 1, {"get_retained": true}, "com.state"]"#);
    c.settle();
    let got = c.take(late);
    let retained = events(&got);
    assert_eq!(retained.len(), 1, "{got:?}");
    assert_eq!(retained[0][4], json!([42]));
    assert_eq!(retained[0][3]["retained"], true);
    // A node joining later has it too.
    let third = c.add_node();
    let newcomer = c.join(third, 0);
    c.send(newcomer, r#"[32, 1, {"get_retained": true}, "com.state"]"#);
    c.settle();
    assert_eq!(events(&c.take(newcomer)).len(), 1);
    // A MessagePack subscriber on another node gets a JSON publisher's event, and the reverse.
    let (slot, shard) = (1, 0);
    let conn = c.next_conn;
    c.next_conn += 1;
    let sim = c.nodes.get_mut(&slot).unwrap();
    let handle = sim.routers[shard].handle_open(ConnId(conn), Serializer::MsgPack);
    c.conns.insert(conn, (slot, shard, handle));
    let hello_text = json!([1, "realm1", {"roles": {"subscriber": {}}}]).to_string();
    let hello = Serializer::Json.decode(hello_text.as_bytes()).unwrap();
    let now = c.now_ms;
    let sim = c.nodes.get_mut(&slot).unwrap();
    sim.routers[shard].handle_message(handle, &hello, now, &mut sim.outs[shard]);
    c.collect_shard(slot, shard);
    c.settle();
    c.take(conn);
    c.send(conn, r#"[32, 1, {}, "com.mixed"]"#);
    c.settle();
    assert_eq!(c.take_one(conn)[0], 33);
    c.send(publisher, r#"[16, 2, {}, "com.mixed", ["bin", {"k": 1}]]"#);
    c.settle();
    let got = events(&c.take(conn));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0][4], json!(["bin", {"k": 1}]));
}

// -------------------------------------------------------------------------------------------------------------
// RPC

#[test]
fn calls_reach_callees_on_other_nodes_and_answers_come_back() {
    let mut c = Cluster::new(3, 2);
    let callee = c.join(2, 1);
    let registered = c.register(callee, "com.add", json!({}));
    assert_eq!(registered[0], 65, "{registered}");
    let caller = c.join(0, 0);
    c.send(
        caller,
        r#"[48, 7, {"disclose_me": true}, "com.add", [1, 2]]"#,
    );
    c.settle();
    let invocation = c.take_one(callee);
    assert_eq!(invocation[0], 68);
    assert_eq!(
        invocation[3]["caller"],
        c.session_id(caller),
        "{invocation}"
    );
    c.send(callee, &format!("[70, {}, {{}}, [3]]", invocation[1]));
    c.settle();
    assert_eq!(c.take_one(caller), json!([50, 7, {}, [3]]));
    // The callee's ERROR comes back as the caller's ERROR.
    c.send(caller, r#"[48, 8, {}, "com.add", ["x"]]"#);
    c.settle();
    let invocation = c.take_one(callee);
    c.send(
        callee,
        &format!(r#"[8, 68, {}, {{}}, "com.app.bad", ["no"]]"#, invocation[1]),
    );
    c.settle();
    let error = c.take_one(caller);
    assert_eq!(
        (error[0].clone(), error[4].clone()),
        (json!(8), json!("com.app.bad"))
    );
    // One registration ID cluster-wide: every node's meta API says the same.
    let mut ids = HashSet::new();
    for slot in 0..3 {
        let asker = c.join(slot, 0);
        c.send(
            asker,
            r#"[48, 1, {}, "wamp.registration.lookup", ["com.add"]]"#,
        );
        c.settle();
        ids.insert(c.take_one(asker)[3][0].clone());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(ids.into_iter().next().unwrap(), registered[2]);
}

#[test]
fn a_single_registration_is_exclusive_cluster_wide() {
    // Two REGISTERs of one procedure on two nodes at once, in random interleavings: exactly one wins each round,
    // and once the winner unregisters the next round starts afresh.
    let mut c = Cluster::new(2, 2);
    let a = c.join(0, 1);
    let b = c.join(1, 0);
    for round in 0..1000u64 {
        c.send(a, &json!([64, round * 2 + 1, {}, "com.race"]).to_string());
        c.send(b, &json!([64, round * 2 + 1, {}, "com.race"]).to_string());
        c.settle_random();
        let answers = [c.take_one(a), c.take_one(b)];
        let won: Vec<usize> = (0..2).filter(|&i| answers[i][0] == 65).collect();
        assert_eq!(won.len(), 1, "round {round}: {answers:?}");
        let lost = &answers[1 - won[0]];
        assert_eq!(
            lost[4], "wamp.error.procedure_already_exists",
            "round {round}"
        );
        let winner = [a, b][won[0]];
        let registration = answers[won[0]][2].clone();
        c.send(
            winner,
            &json!([66, round * 2 + 2, registration]).to_string(),
        );
        c.settle_random();
        assert_eq!(c.take_one(winner)[0], 67);
    }
}

#[test]
fn invoke_policies_hold_across_nodes_in_registration_order() {
    let mut c = Cluster::new(3, 2);
    for invoke in ["first", "last", "roundrobin", "random"] {
        let procedure = format!("com.{invoke}");
        let callees: Vec<u64> = (0..3).map(|slot| c.join(slot as Slot, slot % 2)).collect();
        for &callee in &callees {
            let reply = c.register(callee, &procedure, json!({"invoke": invoke}));
            assert_eq!(reply[0], 65, "{invoke}: {reply}");
        }
        let other = c.join(1, 0);
        let reply = c.register(other, &procedure, json!({"invoke": "single"}));
        assert_eq!(
            reply[4], "wamp.error.procedure_exists_with_different_invocation_policy",
            "{invoke}"
        );
        // From every node, the same policy picks the same way.
        for slot in 0..3 {
            let caller = c.join(slot, 1);
            let mut served = Vec::new();
            for request in 1..=6u64 {
                let (callee, invocation) = c.call_reaches(caller, request, &procedure, &callees);
                served.push(callees.iter().position(|&x| x == callee).unwrap());
                c.yield_to(callee, &invocation, json!(request));
                assert_eq!(c.take_one(caller)[0], 50);
            }
            match invoke {
                "first" => assert_eq!(served, [0; 6], "node {slot}"),
                "last" => assert_eq!(served, [2; 6], "node {slot}"),
                "roundrobin" => {
                    let distinct: HashSet<_> = served.iter().collect();
                    assert_eq!(distinct.len(), 3, "node {slot}: {served:?}");
                }
                _ => {}
            }
        }
        // The first callee leaves: `first` moves on to the next in registration order.
        c.close(callees[0]);
        c.settle();
        if invoke == "first" {
            let caller = c.join(2, 0);
            let (callee, _) = c.call_reaches(caller, 1, &procedure, &callees);
            assert_eq!(callee, callees[1]);
        }
        for &callee in &callees[1..] {
            c.close(callee);
        }
        c.settle();
    }
}

#[test]
fn pattern_registrations_keep_their_precedence_across_nodes() {
    let mut c = Cluster::new(3, 1);
    let exact = c.join(0, 0);
    let prefix = c.join(1, 0);
    let wildcard = c.join(2, 0);
    assert_eq!(c.register(exact, "com.a.b.c", json!({}))[0], 65);
    assert_eq!(
        c.register(prefix, "com.a", json!({"match": "prefix"}))[0],
        65
    );
    assert_eq!(
        c.register(wildcard, "com..b.", json!({"match": "wildcard"}))[0],
        65
    );
    let caller = c.join(1, 0);
    let all = [exact, prefix, wildcard];
    assert_eq!(c.call_reaches(caller, 1, "com.a.b.c", &all).0, exact);
    assert_eq!(c.call_reaches(caller, 2, "com.ab", &all).0, prefix);
    assert_eq!(c.call_reaches(caller, 3, "com.x.b.y", &all).0, wildcard);
}

#[test]
fn progressive_calls_cancel_and_timeouts_work_across_nodes() {
    let mut c = Cluster::new(2, 2);
    let callee = c.join(1, 1);
    assert_eq!(c.register(callee, "com.slow", json!({}))[0], 65);
    let caller = c.join(0, 0);
    // Progressive results.
    c.send(
        caller,
        r#"[48, 1, {"receive_progress": true}, "com.slow", []]"#,
    );
    c.settle();
    let invocation = c.take_one(callee);
    for i in 0..3 {
        c.send(
            callee,
            &json!([70, invocation[1], {"progress": true}, [i]]).to_string(),
        );
    }
    c.send(
        callee,
        &json!([70, invocation[1], {}, ["done"]]).to_string(),
    );
    c.settle();
    let results = c.take(caller);
    assert_eq!(results.len(), 4);
    assert_eq!(results[3], json!([50, 1, {}, ["done"]]));
    assert!(results[..3].iter().all(|r| r[2]["progress"] == true));
    // Progressive invocations: chunks follow the first CALL to the same INVOCATION.
    c.send(caller, r#"[48, 2, {"progress": true}, "com.slow", ["a"]]"#);
    c.send(caller, r#"[48, 2, {"progress": true}, "com.slow", ["b"]]"#);
    c.send(caller, r#"[48, 2, {}, "com.slow", ["c"]]"#);
    c.settle();
    let chunks = c.take(callee);
    assert_eq!(chunks.len(), 3, "{chunks:?}");
    assert!(chunks.iter().all(|m| m[1] == chunks[0][1]));
    c.send(callee, &json!([70, chunks[0][1], {}, ["abc"]]).to_string());
    c.settle();
    assert_eq!(c.take_one(caller)[3], json!(["abc"]));
    // Cancel, each mode.
    for (request, mode) in [(3u64, "skip"), (4, "kill"), (5, "killnowait")] {
        c.send(
            caller,
            &json!([48, request, {}, "com.slow", []]).to_string(),
        );
        c.settle();
        let invocation = c.take_one(callee);
        c.send(caller, &json!([49, request, {"mode": mode}]).to_string());
        c.settle();
        match mode {
            "skip" => {
                assert_eq!(c.take_one(caller)[4], "wamp.error.canceled");
                assert!(c.take(callee).is_empty(), "no INTERRUPT for skip");
                c.yield_to(callee, &invocation, json!("late"));
                assert!(c.take(caller).is_empty(), "the late answer is dropped");
            }
            "kill" => {
                assert_eq!(c.take_one(callee)[0], 69, "INTERRUPT");
                assert!(c.take(caller).is_empty(), "kill waits for the callee");
                c.send(
                    callee,
                    &json!([8, 68, invocation[1], {}, "wamp.error.canceled"]).to_string(),
                );
                c.settle();
                assert_eq!(c.take_one(caller)[4], "wamp.error.canceled");
            }
            _ => {
                assert_eq!(c.take_one(callee)[0], 69);
                assert_eq!(c.take_one(caller)[4], "wamp.error.canceled");
            }
        }
    }
    // Timeout: the callee's shard owns the deadline.
    c.send(caller, r#"[48, 6, {"timeout": 500}, "com.slow", []]"#);
    c.settle();
    assert_eq!(c.take_one(callee)[0], 68);
    c.run_until(c.now_ms + 600, 100);
    assert_eq!(c.take_one(caller)[4], "wamp.error.timeout");
    assert_eq!(c.take_one(callee)[0], 69);
    // The caller leaves: the callee is interrupted.
    let leaving = c.join(0, 1);
    c.send(leaving, r#"[48, 1, {}, "com.slow", []]"#);
    c.settle();
    assert_eq!(c.take_one(callee)[0], 68);
    c.close(leaving);
    c.settle();
    assert_eq!(c.take_one(callee)[0], 69);
    // The callee leaves: the caller gets an error.
    c.send(caller, r#"[48, 7, {}, "com.slow", []]"#);
    c.settle();
    assert_eq!(c.take_one(callee)[0], 68);
    c.close(callee);
    c.settle();
    assert_eq!(c.take_one(caller)[4], "wamp.error.canceled");
    c.send(caller, r#"[48, 8, {}, "com.slow", []]"#);
    c.settle();
    assert_eq!(c.take_one(caller)[4], "wamp.error.no_such_procedure");
}

// -------------------------------------------------------------------------------------------------------------
// Sessions, meta API, failure

#[test]
fn session_ids_are_unique_across_nodes_and_the_meta_api_sees_the_cluster() {
    let mut c = Cluster::new(3, 2);
    let mut conns = Vec::new();
    let mut ids = HashSet::new();
    for slot in 0..3 {
        for shard in 0..2 {
            for _ in 0..5 {
                let conn = c.join(slot, shard);
                assert!(ids.insert(c.session_id(conn)));
                conns.push(conn);
            }
        }
    }
    let asker = conns[0];
    c.send(asker, r#"[48, 1, {}, "wamp.session.count", []]"#);
    c.settle();
    let count = c.take_one(asker);
    assert_eq!(count[3], json!([30]), "{count}");
    c.send(asker, r#"[48, 2, {}, "wamp.session.list", []]"#);
    c.settle();
    let listed: HashSet<u64> = c.take_one(asker)[3][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(listed, ids);
    let far = c.session_id(*conns.last().unwrap());
    c.send(
        asker,
        &json!([48, 3, {}, "wamp.session.get", [far]]).to_string(),
    );
    c.settle();
    assert_eq!(c.take_one(asker)[3][0]["session"], far);
    c.send(
        asker,
        &json!([48, 4, {}, "wamp.session.kill", [far]]).to_string(),
    );
    c.settle();
    assert_eq!(c.take_one(asker)[0], 50);
    assert_eq!(c.take_one(*conns.last().unwrap())[0], 6, "GOODBYE");
    // A node that does not answer: the answer is partial.
    c.cut.insert((0, 2));
    c.cut.insert((2, 0));
    c.send(asker, r#"[48, 5, {}, "wamp.session.count", []]"#);
    c.settle();
    assert!(c.take(asker).is_empty(), "waiting for node 2");
    c.run_until(c.now_ms + 1_600, 100);
    let result = c.take_one(asker);
    assert_eq!(result[2]["x_kreisel_partial"], true, "{result}");
    assert_eq!(result[3], json!([20]));
}

#[test]
fn a_dead_node_is_reaped_once_its_calls_fail_and_its_registrations_go() {
    let mut c = Cluster::new(3, 2);
    // On node 2: a callee of a single registration with a pending call, and a session with a testament.
    let callee = c.join(2, 0);
    assert_eq!(c.register(callee, "com.only", json!({}))[0], 65);
    let testator = c.join(2, 1);
    c.send(
        testator,
        r#"[48, 1, {}, "wamp.session.add_testament", ["com.last.words", ["bye"], {}]]"#,
    );
    c.settle();
    assert_eq!(c.take_one(testator)[0], 50);
    let testator_id = c.session_id(testator);
    // Listeners on nodes 0 and 1.
    let listeners = [c.join(0, 0), c.join(1, 1)];
    for &l in &listeners {
        c.subscribe(l, "com.last.words", json!({}));
        c.subscribe(l, "wamp.session.on_leave", json!({}));
    }
    let caller = c.join(0, 1);
    c.send(caller, r#"[48, 5, {}, "com.only", []]"#);
    c.settle();
    assert_eq!(c.take_one(callee)[0], 68);
    // Node 1 also calls it (a call from a node that is not the reaper).
    let caller1 = c.join(1, 0);
    c.send(caller1, r#"[48, 6, {}, "com.only", []]"#);
    c.settle();
    c.take(callee);
    c.kill(2);
    c.run_until(c.now_ms + DEAD_AFTER_MS + 5 * HEARTBEAT_MS, 50);
    assert_eq!(c.take_one(caller)[4], "wamp.error.canceled");
    assert_eq!(c.take_one(caller1)[4], "wamp.error.canceled");
    for &l in &listeners {
        let got = events(&c.take(l));
        let words = got.iter().filter(|e| e[4] == json!(["bye"])).count();
        assert_eq!(words, 1, "the testament, once: {got:?}");
        let left: Vec<u64> = got
            .iter()
            .filter(|e| e[4].as_array().is_some_and(|a| a.len() == 3))
            .map(|e| e[4][0].as_u64().unwrap())
            .collect();
        assert!(left.contains(&testator_id), "on_leave: {got:?}");
        assert_eq!(
            left.iter().filter(|&&id| id == testator_id).count(),
            1,
            "once"
        );
    }
    // The registration is gone everywhere: another node may take it.
    let again = c.join(1, 1);
    assert_eq!(c.register(again, "com.only", json!({}))[0], 65);
    c.send(caller, r#"[48, 7, {}, "com.only", []]"#);
    c.settle();
    assert_eq!(c.take_one(again)[0], 68);
    // The members record no longer holds node 2.
    let (_, members) = c.kv.map[record::MEMBERS_KEY].clone();
    let members = record::decode_members(&members.unwrap()).unwrap();
    assert!(members.iter().all(|&(slot, _)| slot != 2), "{members:?}");
    assert_eq!(
        c.nodes
            .values()
            .map(|n| n.node.stats().nodes_reaped)
            .sum::<u64>(),
        1
    );
}

#[test]
fn a_lost_broadcast_is_repaired_by_a_state_exchange() {
    let mut c = Cluster::new(2, 1);
    let publisher = c.join(0, 0);
    let subscriber = c.join(1, 0);
    // Drop node 1's next broadcasts to node 0 (its subscriber's announcement).
    c.cut.insert((1, 0));
    c.send(subscriber, r#"[32, 1, {}, "com.repaired"]"#);
    c.settle();
    c.cut.clear();
    // The next heartbeat shows the gap; node 0 asks node 1 for its state and learns the subscriber.
    c.run_until(c.now_ms + 3 * HEARTBEAT_MS, 50);
    // SUBSCRIBED waited for node 0, which acknowledged with the state it received.
    let got = c.take(subscriber);
    assert!(got.iter().any(|m| m[0] == 33), "{got:?}");
    c.send(publisher, r#"[16, 1, {}, "com.repaired", []]"#);
    c.settle();
    assert_eq!(events(&c.take(subscriber)).len(), 1);
    assert!(c.node(0).node.stats().gaps >= 1);
}

#[test]
fn a_fenced_node_is_told_when_it_was_declared_dead() {
    let mut c = Cluster::new(2, 1);
    // Node 1 stops hearing node 0 and the reverse (a partition), both stay connected to the store.
    c.cut.insert((0, 1));
    c.cut.insert((1, 0));
    c.run_until(c.now_ms + 3 * DEAD_AFTER_MS, 100);
    let fenced: Vec<Slot> = c
        .nodes
        .iter()
        .filter(|(_, n)| n.out.fenced.is_some() || n.node.is_fenced())
        .map(|(&s, _)| s)
        .collect();
    assert_eq!(fenced.len(), 1, "exactly one side loses: {fenced:?}");
}

#[test]
fn registrations_fail_clearly_while_the_store_is_down() {
    let mut c = Cluster::new(2, 1);
    let callee = c.join(0, 0);
    c.kv.down = true;
    c.send(callee, r#"[64, 1, {}, "com.later"]"#);
    c.settle();
    let reply = c.take_one(callee);
    assert_eq!(reply[4], "kreisel.error.cluster_unavailable", "{reply}");
    c.kv.down = false;
    let reply = c.register(callee, "com.later", json!({}));
    assert_eq!(reply[0], 65, "{reply}");
}

#[test]
fn random_interleavings_with_drops_keep_calls_answered_and_events_ordered() {
    for seed in 0..20u64 {
        let mut c = Cluster::new(3, 2);
        c.rng ^= seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let callee = c.join(1, 0);
        assert_eq!(
            c.register(callee, "com.echo", json!({"invoke": "roundrobin"}))[0],
            65
        );
        let callee2 = c.join(2, 1);
        assert_eq!(
            c.register(callee2, "com.echo", json!({"invoke": "roundrobin"}))[0],
            65
        );
        let subscriber = c.join(2, 0);
        c.subscribe(subscriber, "com.ev", json!({}));
        let caller = c.join(0, 1);
        for i in 0..20u64 {
            c.send(caller, &json!([48, i + 1, {}, "com.echo", [i]]).to_string());
            c.send(caller, &json!([16, i + 1, {}, "com.ev", [i]]).to_string());
            // Sometimes a directed message between nodes is lost.
            if c.random().is_multiple_of(5) {
                if let Some(q) = c.net.get_mut(&(0, 1)) {
                    if q.pop_front().is_some() {
                        c.dropped += 1;
                    }
                }
            }
            for _ in 0..(c.random() % 8) {
                c.step_random();
            }
            for conn in [callee, callee2] {
                for msg in c.take(conn) {
                    if msg[0] == 68 {
                        c.send(conn, &json!([70, msg[1], {}, msg[4]]).to_string());
                    }
                }
            }
        }
        // Time passes: heartbeats reveal losses; every call ends one way or another.
        for _ in 0..10 {
            c.settle_random();
            for conn in [callee, callee2] {
                for msg in c.take(conn) {
                    if msg[0] == 68 {
                        c.send(conn, &json!([70, msg[1], {}, msg[4]]).to_string());
                    }
                }
            }
            c.run_until(c.now_ms + HEARTBEAT_MS, 50);
        }
        let answers: Vec<Value> = c.take(caller);
        let mut answered: Vec<u64> = answers
            .iter()
            .filter(|m| m[0] == 50 || m[0] == 8)
            .map(|m| {
                if m[0] == 50 {
                    m[1].as_u64().unwrap()
                } else {
                    m[2].as_u64().unwrap()
                }
            })
            .collect();
        answered.sort_unstable();
        assert_eq!(
            answered,
            (1..=20).collect::<Vec<_>>(),
            "seed {seed}: every call answered once"
        );
        let got: Vec<u64> = events(&c.take(subscriber))
            .iter()
            .map(|e| e[4][0].as_u64().unwrap())
            .collect();
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "seed {seed}: in order: {got:?}"
        );
    }
}
