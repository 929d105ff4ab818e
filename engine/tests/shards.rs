//! Several shards of one router, in memory and deterministic: sessions join the shards the test chooses, and the
//! messages between shards travel through per-pair FIFO queues that the test drains in the order it chooses (or
//! a seeded random one). Every feature is driven across shards: pub/sub with patterns, filters and disclosure,
//! every invoke policy and the exclusivity of `single`, progressive calls, cancel, timeout, callers and callees
//! leaving, the meta API, testaments, retention; and a property test interleaves the queues at random and checks
//! the ordering and no-loss guarantees.

mod common;

use std::collections::{HashMap, VecDeque};

use kreisel_codec::Serializer;
use kreisel_engine::link::{self, ShardId};
use kreisel_engine::{ConnId, Router, RouterConfig, SessionHandle};
use serde_json::{json, Value};

/// What one shard's engine sends: WAMP messages per connection, closes, and encoded peer messages.
use common::ShardOut as Out;

/// A router of `n` shards with its links.
struct Shards {
    routers: Vec<Router>,
    outs: Vec<Out>,
    /// Connection → (shard, session handle). Connection numbers are unique over all shards.
    conns: HashMap<u64, (usize, SessionHandle)>,
    next_conn: u64,
    /// (from, to) → messages in flight, oldest first.
    links: HashMap<(usize, usize), VecDeque<Vec<u8>>>,
    /// What every connection received, in order.
    received: HashMap<u64, Vec<Value>>,
    now_ms: u64,
    rng: u64,
}

const FEATURES: &str = r#"{"publisher": {"features": {"publisher_identification": true, "publisher_exclusion": true, "subscriber_blackwhite_listing": true}},
    "subscriber": {"features": {"pattern_based_subscription": true, "publisher_identification": true}},
    "caller": {"features": {"caller_identification": true, "progressive_call_results": true, "progressive_call_invocations": true, "call_canceling": true}},
    "callee": {"features": {"pattern_based_registration": true, "caller_identification": true, "progressive_call_results": true, "progressive_call_invocations": true, "call_canceling": true, "call_timeout": true, "shared_registration": true}}}"#;

impl Shards {
    fn new(n: usize) -> Shards {
        Shards::with_config(n, RouterConfig::default())
    }

    fn with_config(n: usize, config: RouterConfig) -> Shards {
        let routers = (0..n)
            .map(|shard| {
                Router::new(RouterConfig {
                    shard: shard as ShardId,
                    shards: n,
                    ..config.clone()
                })
            })
            .collect();
        Shards {
            routers,
            outs: (0..n).map(|_| Out::default()).collect(),
            conns: HashMap::new(),
            next_conn: 1,
            links: HashMap::new(),
            received: HashMap::new(),
            now_ms: 0,
            rng: 0x2545_f491_4f6c_dd1d,
        }
    }

    /// Moves what shard `shard` produced into the links and the connections' inboxes.
    fn collect(&mut self, shard: usize) {
        let out = &mut self.outs[shard];
        for (conn, value) in out.sent.drain(..) {
            self.received.entry(conn).or_default().push(value);
        }
        for (to, bytes) in out.peer.drain(..) {
            assert!(!to.contains(shard as ShardId), "a shard sends to itself");
            for dest in to.iter() {
                self.links
                    .entry((shard, dest as usize))
                    .or_default()
                    .push_back(bytes.clone());
            }
        }
    }

    /// Opens a connection on `shard` and joins realm1 with every feature; returns the connection.
    fn join(&mut self, shard: usize) -> u64 {
        let conn = self.next_conn;
        self.next_conn += 1;
        let handle = self.routers[shard].handle_open(ConnId(conn), Serializer::Json);
        self.conns.insert(conn, (shard, handle));
        self.send(conn, &format!(r#"[1, "realm1", {{"roles": {FEATURES}}}]"#));
        self.settle();
        let welcome = self.take_one(conn);
        assert_eq!(welcome[0], 2, "{welcome}");
        conn
    }

    fn send(&mut self, conn: u64, text: &str) {
        let (shard, handle) = self.conns[&conn];
        let msg = Serializer::Json
            .decode(text.as_bytes())
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        let now = self.now_ms;
        self.routers[shard].handle_message(handle, &msg, now, &mut self.outs[shard]);
        self.collect(shard);
    }

    fn close(&mut self, conn: u64) {
        let (shard, handle) = self.conns.remove(&conn).expect("open connection");
        self.routers[shard].handle_close(handle, &mut self.outs[shard]);
        self.collect(shard);
    }

    fn tick(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        for shard in 0..self.routers.len() {
            self.routers[shard].handle_timeout(now_ms, &mut self.outs[shard]);
            self.collect(shard);
        }
    }

    /// Delivers the oldest message of link (from, to); false if it is empty.
    fn deliver(&mut self, from: usize, to: usize) -> bool {
        let Some(bytes) = self
            .links
            .get_mut(&(from, to))
            .and_then(VecDeque::pop_front)
        else {
            return false;
        };
        let msg = link::decode(&bytes, true).expect("link messages decode");
        let now = self.now_ms;
        self.routers[to].handle_peer(from as ShardId, &msg, now, &mut self.outs[to]);
        self.collect(to);
        true
    }

    /// Messages in flight.
    fn in_flight(&self) -> usize {
        self.links.values().map(VecDeque::len).sum()
    }

    /// Delivers everything in flight, links in a fixed order.
    fn settle(&mut self) {
        while self.in_flight() > 0 {
            let busy: Vec<(usize, usize)> = (self.links.iter())
                .filter(|(_, queue)| !queue.is_empty())
                .map(|(&pair, _)| pair)
                .collect();
            for (from, to) in busy {
                self.deliver(from, to);
            }
        }
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Delivers one message from a link picked at random; false when nothing is in flight.
    fn step_random(&mut self) -> bool {
        let mut busy: Vec<(usize, usize)> = (self.links.iter())
            .filter(|(_, queue)| !queue.is_empty())
            .map(|(&pair, _)| pair)
            .collect();
        if busy.is_empty() {
            return false;
        }
        busy.sort_unstable();
        let (from, to) = busy[(self.random() % busy.len() as u64) as usize];
        self.deliver(from, to)
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

    /// SUBSCRIBE, settled; the subscription ID.
    fn subscribe(&mut self, conn: u64, topic: &str, options: Value) -> u64 {
        self.send(conn, &json!([32, 1, options, topic]).to_string());
        self.settle();
        let reply = self.take_one(conn);
        assert_eq!(reply[0], 33, "{reply}");
        reply[2].as_u64().unwrap()
    }

    /// REGISTER, settled; the answer.
    fn register(&mut self, conn: u64, procedure: &str, options: Value) -> Value {
        self.send(conn, &json!([64, 1, options, procedure]).to_string());
        self.settle();
        self.take_one(conn)
    }
}

fn events(messages: &[Value]) -> Vec<Value> {
    messages.iter().filter(|m| m[0] == 36).cloned().collect()
}

#[test]
fn publications_reach_subscribers_on_every_shard_once_per_shard() {
    let mut s = Shards::new(4);
    let subscribers: Vec<u64> = (0..4).map(|shard| s.join(shard)).collect();
    let mut ids = Vec::new();
    for &conn in &subscribers {
        ids.push(s.subscribe(conn, "com.topic", json!({})));
    }
    // One subscription ID router-wide, whichever shard asked.
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    let publisher = s.join(1);
    s.send(
        publisher,
        r#"[16, 1, {"acknowledge": true}, "com.topic", [1]]"#,
    );
    // Before the links are drained, only shard 1's subscriber has it; one message per other shard is in flight.
    assert_eq!(events(&s.take(subscribers[1])).len(), 1);
    assert_eq!(s.in_flight(), 3);
    s.settle();
    for &conn in &subscribers {
        let got = events(&s.take(conn));
        assert!(got.len() <= 1);
    }
    // A shard without subscribers gets nothing.
    let lonely = s.join(2);
    s.subscribe(lonely, "com.other", json!({}));
    s.send(publisher, r#"[16, 2, {}, "com.other", [2]]"#);
    assert_eq!(s.in_flight(), 1, "only to shard 2");
    s.settle();
    assert_eq!(events(&s.take(lonely)).len(), 1);
    assert_eq!(s.take_one(publisher)[0], 17);
}

#[test]
fn subscribed_waits_until_every_shard_installed_the_subscription() {
    let mut s = Shards::new(3);
    let subscriber = s.join(0);
    let publisher = s.join(2);
    s.send(subscriber, r#"[32, 1, {"match": "prefix"}, "com."]"#);
    assert!(
        s.take(subscriber).is_empty(),
        "no SUBSCRIBED before the acks"
    );
    // Shard 1 installs and acks; shard 2 has not yet: still nothing.
    s.deliver(0, 1);
    s.deliver(1, 0);
    assert!(s.take(subscriber).is_empty());
    s.deliver(0, 2);
    s.deliver(2, 0);
    assert_eq!(s.take_one(subscriber)[0], 33);
    // Told SUBSCRIBED, the subscriber has a publisher on shard 2 publish: the event cannot be missed.
    s.send(publisher, r#"[16, 1, {}, "com.x", ["after"]]"#);
    s.settle();
    let got = events(&s.take(subscriber));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0][3]["topic"], "com.x");
    // A second subscriber of the same subscription on shard 0 is answered at once.
    let second = s.join(0);
    s.send(second, r#"[32, 1, {"match": "prefix"}, "com."]"#);
    assert_eq!(s.take_one(second)[0], 33);
}

#[test]
fn patterns_filters_exclusion_and_disclosure_hold_across_shards() {
    let mut s = Shards::new(3);
    let exact = s.join(0);
    let prefix = s.join(1);
    let wildcard = s.join(2);
    s.subscribe(exact, "com.a.b", json!({}));
    s.subscribe(prefix, "com.a", json!({"match": "prefix"}));
    s.subscribe(
        wildcard,
        "com..b",
        json!({"match": "wildcard", "disclose_publisher": true}),
    );
    let publisher = s.join(1);
    s.subscribe(publisher, "com.a.b", json!({}));
    s.send(publisher, r#"[16, 1, {}, "com.a.b", ["x"]]"#);
    s.settle();
    assert_eq!(events(&s.take(exact)).len(), 1);
    assert_eq!(events(&s.take(prefix)).len(), 1);
    let got = events(&s.take(wildcard));
    assert_eq!(got.len(), 1);
    assert!(got[0][3]["publisher"].is_u64(), "disclosed: {}", got[0]);
    assert!(events(&s.take(publisher)).is_empty(), "excluded by default");
    // A white list naming the prefix subscriber's session (on shard 1): only it gets the event.
    let prefix_session = s.routers[1]
        .session_info(s.conns[&prefix].1)
        .unwrap()
        .id
        .get();
    s.send(
        publisher,
        &json!([16, 2, {"eligible": [prefix_session], "exclude_me": false}, "com.a.b", ["y"]])
            .to_string(),
    );
    s.settle();
    assert_eq!(events(&s.take(prefix)).len(), 1);
    for conn in [exact, wildcard, publisher] {
        assert!(events(&s.take(conn)).is_empty(), "{conn}");
    }
}

#[test]
fn calls_reach_callees_on_other_shards_and_results_come_back() {
    let mut s = Shards::new(3);
    let callee = s.join(2);
    let registered = s.register(callee, "com.add", json!({}));
    assert_eq!(registered[0], 65, "{registered}");
    let caller = s.join(0);
    s.send(
        caller,
        r#"[48, 7, {"disclose_me": true}, "com.add", [1, 2]]"#,
    );
    s.settle();
    let invocation = s.take_one(callee);
    assert_eq!(invocation[0], 68);
    assert!(invocation[3]["caller"].is_u64(), "{invocation}");
    s.send(callee, &format!("[70, {}, {{}}, [3]]", invocation[1]));
    s.settle();
    assert_eq!(s.take_one(caller), json!([50, 7, {}, [3]]));
    // An ERROR from the callee comes back as the caller's ERROR.
    s.send(caller, r#"[48, 8, {}, "com.add", ["x"]]"#);
    s.settle();
    let invocation = s.take_one(callee);
    s.send(
        callee,
        &format!(r#"[8, 68, {}, {{}}, "com.app.bad", ["no"]]"#, invocation[1]),
    );
    s.settle();
    let error = s.take_one(caller);
    assert_eq!(
        (error[0].clone(), error[2].clone(), error[4].clone()),
        (json!(8), json!(8), json!("com.app.bad"))
    );
    // No callee anywhere.
    s.send(caller, r#"[48, 9, {}, "com.none", []]"#);
    s.settle();
    assert_eq!(s.take_one(caller)[4], "wamp.error.no_such_procedure");
}

#[test]
fn a_single_registration_is_exclusive_router_wide() {
    // Two REGISTERs of one procedure on two shards at once, many times over: exactly one wins each round.
    for round in 0..20 {
        let mut s = Shards::new(4);
        let a = s.join(round % 4);
        let b = s.join((round + 1) % 4);
        let procedure = format!("com.race.{round}");
        s.send(a, &json!([64, 1, {}, procedure]).to_string());
        s.send(b, &json!([64, 1, {}, procedure]).to_string());
        while s.step_random() {}
        let answers = [s.take_one(a), s.take_one(b)];
        let won = answers.iter().filter(|m| m[0] == 65).count();
        assert_eq!(won, 1, "round {round}: {answers:?}");
        let lost = answers.iter().find(|m| m[0] == 8).unwrap();
        assert_eq!(lost[4], "wamp.error.procedure_already_exists");
    }
}

#[test]
fn invoke_policies_hold_across_shards() {
    let mut s = Shards::new(3);
    let callees: Vec<u64> = (0..3).map(|shard| s.join(shard)).collect();
    for &callee in &callees {
        let reply = s.register(callee, "com.rr", json!({"invoke": "roundrobin"}));
        assert_eq!(reply[0], 65);
    }
    // Another policy on the same URI is refused wherever the REGISTER arrives.
    let other = s.join(1);
    let reply = s.register(other, "com.rr", json!({"invoke": "first"}));
    assert_eq!(
        reply[4],
        "wamp.error.procedure_exists_with_different_invocation_policy"
    );
    let caller = s.join(0);
    let mut served = HashMap::new();
    for request in 1..=6u64 {
        s.send(caller, &json!([48, request, {}, "com.rr", []]).to_string());
        s.settle();
        for &callee in &callees {
            for invocation in s.take(callee) {
                assert_eq!(invocation[0], 68);
                *served.entry(callee).or_insert(0) += 1;
                s.send(callee, &format!("[70, {}, {{}}, []]", invocation[1]));
            }
        }
        s.settle();
        assert_eq!(s.take_one(caller)[0], 50);
    }
    assert_eq!(
        served.values().copied().collect::<Vec<_>>().len(),
        3,
        "{served:?}"
    );
    assert!(served.values().all(|&n| n == 2), "{served:?}");
    // `first` and `last` follow the order the owner decided, on every shard.
    let mut s = Shards::new(3);
    let first = s.join(1);
    let last = s.join(2);
    s.register(first, "com.order", json!({"invoke": "first"}));
    s.register(last, "com.order", json!({"invoke": "first"}));
    let caller = s.join(0);
    s.send(caller, r#"[48, 1, {}, "com.order", []]"#);
    s.settle();
    assert_eq!(s.take(first).len(), 1);
    assert!(s.take(last).is_empty());
}

#[test]
fn progressive_results_and_invocations_keep_their_order_across_shards() {
    let mut s = Shards::new(2);
    let callee = s.join(1);
    s.register(callee, "com.stream", json!({}));
    let caller = s.join(0);
    s.send(
        caller,
        r#"[48, 1, {"receive_progress": true, "progress": true}, "com.stream", ["a"]]"#,
    );
    s.send(
        caller,
        r#"[48, 1, {"progress": true}, "com.stream", ["b"]]"#,
    );
    s.send(caller, r#"[48, 1, {}, "com.stream", ["c"]]"#);
    s.settle();
    let invocations = s.take(callee);
    let args: Vec<Value> = invocations.iter().map(|m| m[4][0].clone()).collect();
    assert_eq!(args, [json!("a"), json!("b"), json!("c")]);
    let id = invocations[0][1].as_u64().unwrap();
    assert!(invocations.iter().all(|m| m[1] == id));
    for chunk in 1..=3 {
        s.send(
            callee,
            &format!(r#"[70, {id}, {{"progress": true}}, [{chunk}]]"#),
        );
    }
    s.send(callee, &format!("[70, {id}, {{}}, [4]]"));
    s.settle();
    let results = s.take(caller);
    let got: Vec<(Value, Value)> = (results.iter())
        .map(|m| (m[2]["progress"].clone(), m[3][0].clone()))
        .collect();
    assert_eq!(
        got,
        [
            (json!(true), json!(1)),
            (json!(true), json!(2)),
            (json!(true), json!(3)),
            (Value::Null, json!(4))
        ]
    );
}

#[test]
fn cancel_timeout_and_departures_work_across_shards() {
    let mut s = Shards::new(2);
    let callee = s.join(1);
    s.register(callee, "com.slow", json!({}));
    let caller = s.join(0);
    for (request, mode) in [(1, "killnowait"), (2, "skip"), (3, "kill")] {
        s.send(
            caller,
            &json!([48, request, {}, "com.slow", []]).to_string(),
        );
        s.settle();
        let invocation = s.take_one(callee);
        s.send(caller, &json!([49, request, {"mode": mode}]).to_string());
        s.settle();
        match mode {
            "killnowait" => {
                assert_eq!(s.take_one(caller)[4], "wamp.error.canceled");
                assert_eq!(s.take_one(callee)[0], 69, "INTERRUPT");
            }
            "skip" => {
                assert_eq!(s.take_one(caller)[4], "wamp.error.canceled");
                assert!(s.take(callee).is_empty());
                // The late answer is discarded.
                s.send(callee, &format!("[70, {}, {{}}, []]", invocation[1]));
                s.settle();
                assert!(s.take(caller).is_empty());
            }
            _ => {
                assert!(s.take(caller).is_empty(), "kill waits for the callee");
                assert_eq!(s.take_one(callee)[0], 69);
                s.send(
                    callee,
                    &format!(r#"[8, 68, {}, {{}}, "wamp.error.canceled"]"#, invocation[1]),
                );
                s.settle();
                assert_eq!(s.take_one(caller)[4], "wamp.error.canceled");
            }
        }
    }
    // Timeout: the callee's shard runs it.
    s.send(caller, r#"[48, 4, {"timeout": 100}, "com.slow", []]"#);
    s.settle();
    assert_eq!(s.take_one(callee)[0], 68);
    s.tick(150);
    s.settle();
    assert_eq!(s.take_one(caller)[4], "wamp.error.timeout");
    assert_eq!(s.take_one(callee)[0], 69);
    // The caller leaves: the callee is interrupted.
    s.send(caller, r#"[48, 5, {}, "com.slow", []]"#);
    s.settle();
    s.take(callee);
    s.close(caller);
    s.settle();
    assert_eq!(s.take_one(callee)[0], 69);
    // The callee leaves: its callers get canceled.
    let caller = s.join(0);
    s.send(caller, r#"[48, 6, {}, "com.slow", []]"#);
    s.settle();
    s.close(callee);
    s.settle();
    assert_eq!(s.take_one(caller)[4], "wamp.error.canceled");
    // And its registration is gone everywhere.
    s.send(caller, r#"[48, 7, {}, "com.slow", []]"#);
    s.settle();
    assert_eq!(s.take_one(caller)[4], "wamp.error.no_such_procedure");
    for router in &s.routers {
        assert_eq!(router.calls_pending(), 0);
    }
}

#[test]
fn the_meta_api_sees_every_shard() {
    let mut s = Shards::new(3);
    let watcher = s.join(0);
    s.subscribe(watcher, "wamp.session.on_join", json!({}));
    let others: Vec<u64> = (0..3).map(|shard| s.join(shard)).collect();
    assert_eq!(
        events(&s.take(watcher)).len(),
        3,
        "on_join from every shard"
    );
    // Session questions are answered once every shard has answered (no shard keeps a directory of the others).
    s.send(watcher, r#"[48, 1, {}, "wamp.session.count", []]"#);
    s.settle();
    assert_eq!(s.take_one(watcher)[3], json!([4]));
    s.send(
        watcher,
        r#"[48, 5, {}, "wamp.session.list", [["anonymous"]]]"#,
    );
    s.settle();
    let listed = s.take_one(watcher)[3][0].clone();
    assert_eq!(listed.as_array().map(Vec::len), Some(4), "{listed}");
    s.send(watcher, r#"[48, 6, {}, "wamp.session.list", [["nobody"]]]"#);
    s.settle();
    assert_eq!(s.take_one(watcher)[3], json!([[]]));
    let remote = s.routers[2]
        .session_info(s.conns[&others[2]].1)
        .unwrap()
        .id
        .get();
    s.send(
        watcher,
        &json!([48, 2, {}, "wamp.session.get", [remote]]).to_string(),
    );
    s.settle();
    assert_eq!(s.take_one(watcher)[3][0]["session"], remote);
    s.send(watcher, r#"[48, 7, {}, "wamp.session.get", [12345]]"#);
    s.settle();
    let missing = s.take_one(watcher);
    assert_eq!(
        (missing[0].clone(), missing[4].clone()),
        (json!(8), json!("wamp.error.no_such_session"))
    );
    // Subscribers on every shard are listed.
    let mut subscription = 0;
    for &conn in &others {
        subscription = s.subscribe(conn, "com.listed", json!({}));
    }
    s.send(
        watcher,
        &json!([
            48,
            3,
            {},
            "wamp.subscription.count_subscribers",
            [subscription]
        ])
        .to_string(),
    );
    assert_eq!(s.take_one(watcher)[3], json!([3]));
    // kill reaches a session on another shard.
    s.send(
        watcher,
        &json!([48, 4, {}, "wamp.session.kill", [remote]]).to_string(),
    );
    s.settle();
    assert_eq!(s.take_one(watcher)[0], 50);
    let goodbye = s.take_one(others[2]);
    assert_eq!(
        (goodbye[0].clone(), goodbye[2].clone()),
        (json!(6), json!("wamp.close.killed"))
    );
    // kill_all ends every other session on every shard, never the caller's, and counts them.
    s.send(watcher, r#"[48, 8, {}, "wamp.session.kill_all", []]"#);
    s.settle();
    assert_eq!(s.take_one(watcher)[3], json!([2]));
    for &conn in &others[..2] {
        assert_eq!(s.take_one(conn)[0], 6);
    }
}

#[test]
fn testaments_and_retained_events_reach_other_shards() {
    let mut s = Shards::new(3);
    let watcher = s.join(0);
    s.subscribe(watcher, "com.gone", json!({}));
    let leaver = s.join(2);
    s.send(
        leaver,
        r#"[48, 1, {}, "wamp.session.add_testament", ["com.gone", ["bye"], {}]]"#,
    );
    assert_eq!(s.take_one(leaver)[0], 50);
    s.close(leaver);
    s.settle();
    let got = events(&s.take(watcher));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0][4], json!(["bye"]));
    // Retained on shard 1, asked for on shard 2.
    let publisher = s.join(1);
    s.send(
        publisher,
        r#"[16, 1, {"retain": true}, "com.state", ["on"]]"#,
    );
    s.settle();
    let late = s.join(2);
    s.send(late, r#"[32, 1, {"get_retained": true}, "com.state"]"#);
    s.settle();
    let messages = s.take(late);
    assert_eq!(messages[0][0], 33);
    assert_eq!(events(&messages)[0][4], json!(["on"]));
    // Cleared from shard 0 (`x_retain_clear`, MQTT's empty retained message): gone on every shard, also from a
    // testament.
    let clearer = s.join(0);
    s.send(
        clearer,
        r#"[16, 2, {"retain": true, "x_retain_clear": true}, "com.state", []]"#,
    );
    s.settle();
    let later = s.join(1);
    s.send(later, r#"[32, 1, {"get_retained": true}, "com.state"]"#);
    s.settle();
    assert_eq!(events(&s.take(later)).len(), 0);
    let again = s.join(2);
    s.send(again, r#"[32, 1, {"get_retained": true}, "com.state"]"#);
    s.settle();
    assert_eq!(events(&s.take(again)).len(), 0);
}

#[test]
fn session_ids_are_unique_across_shards() {
    let mut s = Shards::new(4);
    let mut ids = std::collections::HashSet::new();
    for i in 0..200 {
        let conn = s.join(i % 4);
        let (shard, handle) = s.conns[&conn];
        assert!(ids.insert(s.routers[shard].session_info(handle).unwrap().id));
    }
}

/// Per-publisher order and no loss after SUBSCRIBED, whatever the interleaving of the links: subscribers on
/// every shard, publishers on every shard, each publishing a numbered sequence once every subscriber has its
/// SUBSCRIBED; the links are drained in a random order.
#[test]
fn random_interleavings_keep_order_and_lose_nothing() {
    for seed in 1..=30u64 {
        let mut s = Shards::new(3);
        s.rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let subscribers: Vec<u64> = (0..6).map(|i| s.join(i % 3)).collect();
        for &conn in &subscribers {
            let options = if conn % 2 == 0 {
                json!({"match": "prefix"})
            } else {
                json!({})
            };
            let topic = if conn % 2 == 0 { "com." } else { "com.t" };
            s.send(conn, &json!([32, 1, options, topic]).to_string());
        }
        while s.step_random() {}
        for &conn in &subscribers {
            assert_eq!(s.take_one(conn)[0], 33);
        }
        let publishers: Vec<u64> = (0..3).map(|shard| s.join(shard)).collect();
        for round in 0..10 {
            for (p, &conn) in publishers.iter().enumerate() {
                s.send(
                    conn,
                    &json!([16, round + 1, {}, "com.t", [p, round]]).to_string(),
                );
                // Deliver some of what is in flight between publications.
                for _ in 0..(s.random() % 3) {
                    s.step_random();
                }
            }
        }
        while s.step_random() {}
        for &conn in &subscribers {
            let got = events(&s.take(conn));
            assert_eq!(
                got.len(),
                30,
                "seed {seed}: subscriber {conn} got {}",
                got.len()
            );
            for p in 0..3 {
                let sequence: Vec<u64> = (got.iter())
                    .filter(|e| e[4][0] == p)
                    .map(|e| e[4][1].as_u64().unwrap())
                    .collect();
                assert_eq!(
                    sequence,
                    (0..10).collect::<Vec<_>>(),
                    "seed {seed}: publisher {p}"
                );
            }
        }
    }
}

/// Every CALL gets exactly one final RESULT or ERROR, whatever the interleaving, with callers and callees
/// spread over the shards and some callees leaving mid-way.
#[test]
fn random_interleavings_answer_every_call_once() {
    for seed in 1..=30u64 {
        let mut s = Shards::new(3);
        s.rng = seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
        let callees: Vec<u64> = (0..3).map(|shard| s.join(shard)).collect();
        for &callee in &callees {
            s.send(callee, r#"[64, 1, {"invoke": "random"}, "com.work"]"#);
        }
        while s.step_random() {}
        for &callee in &callees {
            assert_eq!(s.take_one(callee)[0], 65);
        }
        let callers: Vec<u64> = (0..3).map(|shard| s.join(shard)).collect();
        let mut request = 0u64;
        for round in 0..8 {
            for &caller in &callers {
                request += 1;
                s.send(
                    caller,
                    &json!([48, request, {}, "com.work", [request]]).to_string(),
                );
            }
            for _ in 0..(s.random() % 5) {
                s.step_random();
            }
            // Callees answer what they have; one callee leaves in round 4.
            for &callee in &callees {
                if round >= 4 && callee == callees[1] {
                    continue;
                }
                for invocation in s.take(callee) {
                    if invocation[0] == 68 {
                        s.send(callee, &format!("[70, {}, {{}}, []]", invocation[1]));
                    }
                }
            }
            if round == 4 {
                s.close(callees[1]);
            }
        }
        while s.step_random() {}
        for &callee in [callees[0], callees[2]].iter() {
            for invocation in s.take(callee) {
                if invocation[0] == 68 {
                    s.send(callee, &format!("[70, {}, {{}}, []]", invocation[1]));
                }
            }
        }
        while s.step_random() {}
        let mut answered = HashMap::new();
        for &caller in &callers {
            for answer in s.take(caller) {
                assert!(answer[0] == 50 || answer[0] == 8, "{answer}");
                *answered
                    .entry(
                        answer[if answer[0] == 50 { 1 } else { 2 }]
                            .as_u64()
                            .unwrap(),
                    )
                    .or_insert(0) += 1;
            }
        }
        assert_eq!(
            answered.len() as u64,
            request,
            "seed {seed}: answers for {answered:?}"
        );
        assert!(
            answered.values().all(|&n| n == 1),
            "seed {seed}: {answered:?}"
        );
        for router in &s.routers {
            assert_eq!(router.calls_pending(), 0, "seed {seed}");
        }
    }
}

/// A router of two shards whose realm `app` authenticates tickets with `com.auth` and whose anonymous sessions have
/// role `dyn`, decided by `com.authz`; both procedures live in realm `realm1`.
fn dynamic_config() -> RouterConfig {
    use kreisel_engine::{
        AuthConfig, AuthenticatorConfig, AuthorizerConfig, CacheScope, Method, Patterns,
        RealmConfig, RoleConfig,
    };
    let mut config = RouterConfig::default();
    config.realms.push(RealmConfig {
        auth: AuthConfig {
            anonymous_role: Some("dyn".into()),
            principals: vec![],
            roles: Some(vec![
                RoleConfig {
                    name: "dyn".into(),
                    permissions: vec![],
                    authorizer: Some(AuthorizerConfig {
                        procedure: "com.authz".into(),
                        realm: Some("realm1".into()),
                        timeout_ms: 1000,
                        concurrency_max: 10,
                        cache: CacheScope::Role,
                        patterns: Patterns::Ask,
                    }),
                },
                RoleConfig {
                    name: "user".into(),
                    permissions: vec![],
                    authorizer: None,
                },
            ]),
            authenticators: vec![AuthenticatorConfig {
                methods: vec![Method::Ticket],
                procedure: "com.auth".into(),
                realm: Some("realm1".into()),
                timeout_ms: 1000,
                concurrency_max: 10,
            }],
        },
        ..RealmConfig::new("app")
    });
    config
}

impl Shards {
    /// Opens a connection on `shard` and sends HELLO to `realm` with `details`; returns it.
    fn hello(&mut self, shard: usize, realm: &str, mut details: Value) -> u64 {
        let conn = self.next_conn;
        self.next_conn += 1;
        let handle = self.routers[shard].handle_open(ConnId(conn), Serializer::Json);
        self.conns.insert(conn, (shard, handle));
        details["roles"] = serde_json::from_str(FEATURES).unwrap();
        self.send(conn, &json!([1, realm, details]).to_string());
        conn
    }
}

/// The authenticator and the authorizer are registered on shard 1; the clients they decide about are on shard 0:
/// the router's calls to them cross shards like any call, and so do their answers, timeouts and departures.
#[test]
fn dynamic_authenticators_and_authorizers_on_other_shards() {
    let mut s = Shards::with_config(2, dynamic_config());
    let component = s.join(1);
    assert_eq!(s.register(component, "com.auth", json!({}))[0], 65);
    assert_eq!(s.register(component, "com.authz", json!({}))[0], 65);
    // A ticket, checked by the authenticator on the other shard.
    let client = s.hello(
        0,
        "app",
        json!({"authmethods": ["ticket"], "authid": "joe"}),
    );
    assert_eq!(s.take_one(client)[0], 4, "CHALLENGE");
    s.send(client, r#"[5, "ticket!", {}]"#);
    assert!(
        s.take(component).is_empty(),
        "not there before the link delivers"
    );
    s.settle();
    let invocation = s.take_one(component);
    assert_eq!(invocation[0], 68);
    assert_eq!(invocation[4][2]["ticket"], "ticket!");
    s.send(
        component,
        &json!([70, invocation[1], {}, [{"role": "user", "extra": {"k": "v"}}]]).to_string(),
    );
    s.settle();
    let welcome = s.take_one(client);
    assert_eq!(welcome[0], 2, "{welcome}");
    assert_eq!(welcome[2]["authprovider"], "dynamic");
    assert_eq!(welcome[2]["authextra"]["k"], "v");
    // Its error, across shards.
    let refused = s.hello(
        0,
        "app",
        json!({"authmethods": ["ticket"], "authid": "joe"}),
    );
    s.send(refused, r#"[5, "bad", {}]"#);
    s.settle();
    let invocation = s.take_one(component);
    s.send(
        component,
        &json!([8, 68, invocation[1], {}, "com.example.denied", ["go away"]]).to_string(),
    );
    s.settle();
    let abort = s.take(refused).pop().unwrap();
    assert_eq!(
        (abort[0].as_u64(), abort[2].as_str()),
        (Some(3), Some("com.example.denied"))
    );
    // No answer: the callee's shard times the call out and the client is refused.
    let slow = s.hello(
        0,
        "app",
        json!({"authmethods": ["ticket"], "authid": "joe"}),
    );
    s.send(slow, r#"[5, "t", {}]"#);
    s.settle();
    let _ = s.take_one(component);
    s.tick(1000);
    s.settle();
    let abort = s.take(slow).pop().unwrap();
    assert_eq!(abort[2], "wamp.error.authentication_failed", "{abort}");
    assert_eq!(s.take_one(component)[0], 69, "INTERRUPT");
    // A client that goes away while waiting: its call ends on the other shard too.
    let gone = s.hello(
        0,
        "app",
        json!({"authmethods": ["ticket"], "authid": "joe"}),
    );
    s.send(gone, r#"[5, "t", {}]"#);
    s.settle();
    let _ = s.take_one(component);
    s.close(gone);
    s.settle();
    assert_eq!(s.take_one(component)[0], 69, "INTERRUPT");

    // An anonymous session of role `dyn` on shard 0: its requests wait for the authorizer on shard 1.
    let anonymous = s.hello(0, "app", json!({}));
    assert_eq!(s.take_one(anonymous)[0], 2);
    s.send(anonymous, r#"[16, 1, {"acknowledge": true}, "com.x", []]"#);
    s.send(anonymous, r#"[16, 2, {"acknowledge": true}, "com.x", []]"#);
    s.settle();
    let invocation = s.take_one(component);
    assert_eq!(invocation[4][1], "com.x");
    assert!(s.take(anonymous).is_empty());
    s.send(
        component,
        &json!([70, invocation[1], {}, [{"allow": true, "cache": true}]]).to_string(),
    );
    s.settle();
    let published = s.take(anonymous);
    assert_eq!(published.len(), 2, "{published:?}");
    assert!(published.iter().all(|p| p[0] == 17));
    for shard in &s.routers {
        assert_eq!(shard.calls_pending(), 0);
    }
}

/// A shard that does not answer a session question (stuck, or gone at shutdown) delays the answer by the gather
/// timeout at most: the caller then gets what the others said, marked partial.
#[test]
fn a_session_question_is_answered_partially_when_a_shard_is_silent() {
    let mut s = Shards::new(3);
    let asker = s.join(0);
    for shard in 0..3 {
        s.join(shard);
    }
    s.send(asker, r#"[48, 1, {}, "wamp.session.count", []]"#);
    // Shard 2 never hears the question.
    s.links.remove(&(0, 2));
    s.settle();
    assert!(s.take(asker).is_empty(), "waits for shard 2");
    s.tick(2_000);
    s.settle();
    let result = s.take_one(asker);
    assert_eq!(result[0], 50, "{result}");
    assert_eq!(result[2]["x_kreisel_partial"], true, "{result}");
    // The asker and one session on shard 0, one on shard 1: shard 2's session is missing.
    assert_eq!(result[3], json!([3]));
}
