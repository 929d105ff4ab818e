//! A router of 4 shards over real sockets. Connections go to the shards in turn (the k-th accepted to shard
//! k mod 4), so each test places its sessions on the shards it wants by the order it connects them, and checks
//! what must hold router-wide: connections spread evenly (the per-shard metrics), events reach subscribers on
//! every shard in publication order and none is lost right after SUBSCRIBED, calls cross shards (progressive
//! results in order, round-robin over callees on two shards, one `single` registration router-wide), the meta
//! API sees every shard's sessions, and shutdown says GOODBYE on every shard.
//!
//! (The rest of the suite runs against 4 shards too, from `tests/run.sh`; these tests do not depend on it.)

use kreisel_codec::Serializer;
use kreisel_tests::{sample, scrape, Client, TestRouter};
use serde_json::Value;

const SHARDS: usize = 4;

/// 4 shards; listener 3 serves the metrics.
fn router() -> TestRouter {
    TestRouter::start(
        r#"
[router]
shards = 4

[[listeners]]
listen = "127.0.0.1:0"
transports = ["websocket"]
metrics = "/metrics"
"#,
    )
}

const HELLO: &str = r#"[1, "realm1", {"roles": {
    "publisher": {"features": {"publisher_exclusion": true}},
    "subscriber": {"features": {"pattern_based_subscription": true}},
    "caller": {"features": {"progressive_call_results": true, "call_canceling": true}},
    "callee": {"features": {"progressive_call_results": true, "shared_registration": true, "call_canceling": true}}}}]"#;

/// A session on the next shard in turn.
fn join(router: &TestRouter) -> (Client, u64) {
    let mut client = Client::rawsocket(router.rs, Serializer::Json);
    client.send(HELLO);
    let welcome = client.expect();
    assert_eq!(welcome[0], 2, "{welcome}");
    (client, welcome[1].as_u64().expect("session ID"))
}

fn per_shard(page: &str, name: &str) -> Vec<f64> {
    (0..SHARDS)
        .map(|shard| sample(page, &format!("kreisel_{name}{{shard=\"{shard}\"}}")))
        .collect()
}

#[test]
fn connections_are_spread_evenly_and_metrics_sum_the_shards() {
    let router = router();
    let sessions: Vec<_> = (0..8).map(|_| join(&router)).collect();
    // The 9th connection (the scrape) goes to shard 0.
    let page = scrape(router.tcp_address(3));
    assert_eq!(
        per_shard(&page, "shard_connections"),
        [3.0, 2.0, 2.0, 2.0],
        "{page}"
    );
    assert_eq!(per_shard(&page, "shard_sessions"), [2.0; SHARDS], "{page}");
    assert_eq!(sample(&page, "kreisel_sessions"), 8.0);
    assert_eq!(sample(&page, "kreisel_connections"), 9.0);
    assert_eq!(sample(&page, "kreisel_sessions_joined_total"), 8.0);
    assert_eq!(
        sample(&page, "kreisel_realm_sessions{realm=\"realm1\"}"),
        8.0
    );
    // Every shard learnt of the 6 sessions of the others.
    let heard: f64 = per_shard(&page, "shard_peer_messages_total").iter().sum();
    assert!(heard >= 8.0 * 3.0, "{page}");
    drop(sessions);
}

#[test]
fn subscribers_on_every_shard_get_every_event_in_order_right_after_subscribed() {
    let router = router();
    // Publisher on shard 0, subscribers on shards 1, 2, 3 and 0.
    let (mut publisher, _) = join(&router);
    let mut subscribers: Vec<Client> = (0..SHARDS).map(|_| join(&router).0).collect();
    for round in 0..25 {
        let topic = format!("com.shards.t{round}");
        let mut ids = Vec::new();
        for (i, subscriber) in subscribers.iter_mut().enumerate() {
            // Half the rounds by a prefix pattern.
            let (options, uri) = if round % 2 == 0 {
                ("{}", topic.clone())
            } else {
                (r#"{"match": "prefix"}"#, format!("com.shards.t{round}"))
            };
            subscriber.send(&format!(r#"[32, {}, {options}, "{uri}"]"#, i + 1));
            let subscribed = subscriber.expect();
            assert_eq!(subscribed[0], 33, "{subscribed}");
            ids.push(subscribed[2].as_u64().expect("subscription ID"));
        }
        // The moment every SUBSCRIBED arrived, publish: nothing may be lost.
        for n in 0..20 {
            publisher.send(&format!(
                r#"[16, {}, {{"acknowledge": true, "exclude_me": false}}, "{topic}", [{n}]]"#,
                n + 1
            ));
        }
        for n in 0..20 {
            let published = publisher.expect();
            assert_eq!(published[0], 17, "{published}");
            assert_eq!(published[1], n + 1);
        }
        for (subscriber, id) in subscribers.iter_mut().zip(&ids) {
            for n in 0..20 {
                let event = subscriber.expect();
                assert_eq!(event[0], 36, "{event}");
                assert_eq!(event[1].as_u64(), Some(*id));
                assert_eq!(event[4][0], n, "in publication order: {event}");
            }
        }
        for (i, (subscriber, id)) in subscribers.iter_mut().zip(&ids).enumerate() {
            subscriber.send(&format!("[34, {}, {id}]", 100 + i));
            assert_eq!(subscriber.expect()[0], 35);
        }
    }
    // One subscription ID per (match, URI) router-wide, whichever shard asks.
    for (i, subscriber) in subscribers.iter_mut().enumerate() {
        subscriber.send(&format!(r#"[32, {}, {{}}, "com.shards.same"]"#, 500 + i));
    }
    let ids: Vec<Value> = subscribers
        .iter_mut()
        .map(|s| s.expect()[2].clone())
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
}

/// Handles one INVOCATION on `callee` by yielding `progress` progressive results and a final one.
fn answer(callee: &mut Client, progress: u64) -> Value {
    let invocation = callee.expect();
    assert_eq!(invocation[0], 68, "{invocation}");
    let request = invocation[1].as_u64().expect("request");
    for p in 0..progress {
        callee.send(&format!(r#"[70, {request}, {{"progress": true}}, [{p}]]"#));
    }
    callee.send(&format!(r#"[70, {request}, {{}}, ["done"]]"#));
    invocation
}

#[test]
fn calls_cross_shards_in_order_with_round_robin_and_one_single_registration() {
    let router = router();
    let (mut a, _) = join(&router); // shard 0
    let (mut b, _) = join(&router); // shard 1
    let (mut caller, _) = join(&router); // shard 2
    let (mut c, _) = join(&router); // shard 3

    // Two REGISTERs of one `single` procedure from two shards at once: exactly one wins.
    a.send(r#"[64, 1, {}, "com.shards.single"]"#);
    b.send(r#"[64, 1, {}, "com.shards.single"]"#);
    let (ra, rb) = (a.expect(), b.expect());
    let codes = [ra[0].as_u64(), rb[0].as_u64()];
    assert!(
        codes == [Some(65), Some(8)] || codes == [Some(8), Some(65)],
        "{ra} {rb}"
    );
    let loser = if ra[0] == 8 { &ra } else { &rb };
    assert_eq!(loser[4], "wamp.error.procedure_already_exists", "{loser}");

    // Progressive results from a callee on shard 3 reach a caller on shard 2 in order.
    c.send(r#"[64, 2, {}, "com.shards.progress"]"#);
    assert_eq!(c.expect()[0], 65);
    caller.send(r#"[48, 10, {"receive_progress": true}, "com.shards.progress", []]"#);
    answer(&mut c, 50);
    for p in 0..50 {
        let result = caller.expect();
        assert_eq!(result[0], 50, "{result}");
        assert_eq!(result[2]["progress"], true, "{result}");
        assert_eq!(result[3][0], p);
    }
    let last = caller.expect();
    assert_eq!(last[3][0], "done", "{last}");

    // Round robin over callees on shards 0 and 1, for a caller on shard 2.
    a.send(r#"[64, 3, {"invoke": "roundrobin"}, "com.shards.rr"]"#);
    assert_eq!(a.expect()[0], 65);
    b.send(r#"[64, 3, {"invoke": "roundrobin"}, "com.shards.rr"]"#);
    assert_eq!(b.expect()[0], 65);
    for round in 0..6u64 {
        caller.send(&format!(
            r#"[48, {}, {{}}, "com.shards.rr", []]"#,
            20 + round
        ));
        let callee = if round % 2 == 0 { &mut a } else { &mut b };
        answer(callee, 0);
        let result = caller.expect();
        assert_eq!(result[0], 50, "{result}");
        assert_eq!(result[1], 20 + round);
    }

    // A callee leaving fails the call of a caller on another shard.
    c.send(r#"[64, 4, {}, "com.shards.leaving"]"#);
    assert_eq!(c.expect()[0], 65);
    caller.send(r#"[48, 30, {}, "com.shards.leaving", []]"#);
    assert_eq!(c.expect()[0], 68);
    drop(c);
    let error = caller.expect();
    assert_eq!(error[0], 8, "{error}");
    assert_eq!(error[2], 30);
    assert_eq!(error[4], "wamp.error.canceled", "{error}");
}

#[test]
fn the_meta_api_sees_sessions_on_every_shard() {
    let router = router();
    let joined: Vec<(Client, u64)> = (0..SHARDS).map(|_| join(&router)).collect();
    let (mut asker, _) = join(&router);
    asker.send(r#"[48, 1, {}, "wamp.session.count", []]"#);
    let count = asker.expect();
    assert_eq!(count[0], 50, "{count}");
    assert_eq!(count[3][0], SHARDS + 1, "{count}");
    asker.send(r#"[48, 2, {}, "wamp.session.list", []]"#);
    let list = asker.expect();
    let listed: Vec<u64> = list[3][0]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    for (_, id) in &joined {
        assert!(listed.contains(id), "{id} in {list}");
        asker.send(&format!(r#"[48, 3, {{}}, "wamp.session.get", [{id}]]"#));
        let details = asker.expect();
        assert_eq!(details[0], 50, "{details}");
        assert_eq!(details[3][0]["session"], *id, "{details}");
    }
    // Kill a session on shard 2 from shard 0.
    let (_, victim) = joined[2];
    asker.send(&format!(
        r#"[48, 4, {{}}, "wamp.session.kill", [{victim}]]"#
    ));
    assert_eq!(asker.expect()[0], 50);
    let mut joined = joined;
    let goodbye = joined[2].0.expect();
    assert_eq!(goodbye[0], 6, "{goodbye}");
}

#[test]
fn shutdown_says_goodbye_on_every_shard() {
    let mut router = router();
    let mut sessions: Vec<Client> = (0..SHARDS * 2).map(|_| join(&router).0).collect();
    let readers = std::thread::spawn(move || {
        for client in &mut sessions {
            let goodbye = client.expect();
            assert_eq!(goodbye[0], 6, "{goodbye}");
            assert_eq!(goodbye[2], "wamp.close.system_shutdown", "{goodbye}");
            client.send(r#"[6, {}, "wamp.close.goodbye_and_out"]"#);
        }
    });
    router.stop();
    readers.join().expect("every session got GOODBYE");
}
