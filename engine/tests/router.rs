//! Deterministic tests of the router through its public API, without sockets: messages go in as JSON text
//! (decoded by the codec), and what the engine sends is recorded as JSON values.

mod common;

use common::*;
use kreisel_codec::Serializer;
use kreisel_engine::RouterConfig;
use serde_json::{json, Value};

#[test]
fn hello_welcome_announces_roles() {
    let mut h = Harness::new();
    let conn = h.open();
    h.send(conn, r#"[1, "realm1", {"roles": {"subscriber": {}}}]"#);
    let welcome = h.take_one(conn);
    assert_eq!(welcome[0], 2);
    let id = welcome[1].as_u64().unwrap();
    assert!((1..=1u64 << 53).contains(&id));
    let details = &welcome[2];
    assert_eq!(details["authmethod"], "anonymous");
    assert_eq!(details["authrole"], "anonymous");
    assert_eq!(details["realm"], "realm1");
    // Exactly the implemented features, each `true`.
    let announced = |role: &str| -> Vec<String> {
        let features = details["roles"][role]["features"].as_object().unwrap();
        assert!(features.values().all(|v| *v == true));
        let mut names: Vec<String> = features.keys().cloned().collect();
        names.sort();
        names
    };
    assert_eq!(
        announced("broker"),
        [
            "event_retention",
            "pattern_based_subscription",
            "payload_passthru_mode",
            "payload_transparency",
            "publisher_exclusion",
            "publisher_identification",
            "session_meta_api",
            "subscriber_blackwhite_listing",
            "subscription_meta_api",
        ]
    );
    assert_eq!(
        announced("dealer"),
        [
            "call_canceling",
            "call_timeout",
            "caller_identification",
            "pattern_based_registration",
            "payload_passthru_mode",
            "payload_transparency",
            "progressive_call_invocations",
            "progressive_call_results",
            "registration_meta_api",
            "session_meta_api",
            "shared_registration",
            "testament_meta_api",
        ]
    );
}

#[test]
fn unknown_realm_is_aborted() {
    let mut h = Harness::new();
    let conn = h.open();
    h.send(conn, r#"[1, "nope", {"roles": {"caller": {}}}]"#);
    let abort = h.take_one(conn);
    assert_eq!(
        abort,
        json!([3, {"message": "no realm 'nope' on this router"}, "wamp.error.no_such_realm"])
    );
    assert_eq!(h.out.closed, vec![conn as u64]);
}

#[test]
fn messages_before_hello_and_router_messages_are_protocol_violations() {
    let mut h = Harness::new();
    let conn = h.open();
    h.send(conn, r#"[32, 1, {}, "com.topic"]"#);
    let abort = h.take_one(conn);
    assert_eq!(abort[0], 3);
    assert_eq!(abort[2], "wamp.error.protocol_violation");
    assert_eq!(h.out.closed, vec![conn as u64]);

    let (c2, _) = h.join();
    h.send(c2, r#"[36, 1, 2, {}]"#);
    let abort = h.take_one(c2);
    assert_eq!(abort[2], "wamp.error.protocol_violation");
    // A second HELLO on an established session is a violation too.
    let (c3, _) = h.join();
    h.send(c3, r#"[1, "realm1", {"roles": {"caller": {}}}]"#);
    assert_eq!(h.take_one(c3)[2], "wamp.error.protocol_violation");
    assert_eq!(h.out.closed, vec![conn as u64, c2 as u64, c3 as u64]);
}

#[test]
fn hello_without_roles_or_with_unavailable_authmethods_is_refused() {
    let mut h = Harness::new();
    let conn = h.open();
    h.send(conn, r#"[1, "realm1", {}]"#);
    assert_eq!(h.take_one(conn)[2], "wamp.error.protocol_violation");
    let conn = h.open();
    h.send(
        conn,
        r#"[1, "realm1", {"roles": {"caller": {}}, "authmethods": ["ticket"]}]"#,
    );
    assert_eq!(h.take_one(conn)[2], "wamp.error.no_auth_method");
    let conn = h.open();
    h.send(
        conn,
        r#"[1, "realm1", {"roles": {"caller": {}}, "authmethods": ["ticket", "anonymous"]}]"#,
    );
    assert_eq!(h.take_one(conn)[0], 2);
}

#[test]
fn goodbye_handshake_and_rejoin_on_same_transport() {
    let mut h = Harness::new();
    let (conn, first) = h.join();
    h.send(conn, r#"[6, {}, "wamp.close.close_realm"]"#);
    assert_eq!(
        h.take_one(conn),
        json!([6, {}, "wamp.close.goodbye_and_out"])
    );
    assert!(h.out.closed.is_empty());
    h.send(conn, r#"[1, "realm1", {"roles": {"caller": {}}}]"#);
    let welcome = h.take_one(conn);
    assert_eq!(welcome[0], 2);
    assert_ne!(welcome[1].as_u64().unwrap(), first);
}

#[test]
fn pubsub_shared_subscription_ids_and_publisher_exclusion() {
    let mut h = Harness::new();
    let (a, _) = h.join();
    let (b, _) = h.join();
    let (p, _) = h.join();
    h.send(a, r#"[32, 1, {}, "com.example.topic"]"#);
    h.send(b, r#"[32, 7, {}, "com.example.topic"]"#);
    h.send(p, r#"[32, 9, {}, "com.example.topic"]"#);
    let sa = h.take_one(a);
    let sb = h.take_one(b);
    let sp = h.take_one(p);
    assert_eq!((sa[0].clone(), sa[1].clone()), (json!(33), json!(1)));
    assert_eq!(sb[1], 7);
    assert_eq!(
        sa[2], sb[2],
        "same topic, same policy: same subscription ID"
    );
    assert_eq!(sa[2], sp[2]);
    // Subscribing twice returns the same ID and does not duplicate delivery.
    h.send(a, r#"[32, 2, {}, "com.example.topic"]"#);
    assert_eq!(h.take_one(a)[2], sa[2]);

    h.send(p, r#"[16, 3, {"acknowledge": true}, "com.example.topic", [1, "two", {"3": [4]}], {"k": "ü€😀"}]"#);
    let published = h.take_one(p);
    assert_eq!(published[0], 17);
    assert_eq!(published[1], 3);
    let publication = published[2].clone();
    for conn in [a, b] {
        let event = h.take_one(conn);
        assert_eq!(
            event,
            json!([36, sa[2], publication, {}, [1, "two", {"3": [4]}], {"k": "ü€😀"}])
        );
    }
    assert_eq!(h.out.multicasts, 1, "one send_many per subscription");

    // exclude_me: false delivers to the publisher too; no acknowledge means no PUBLISHED.
    h.send(
        p,
        r#"[16, 4, {"exclude_me": false}, "com.example.topic", []]"#,
    );
    assert_eq!(h.take_one(p)[0], 36);
    assert_eq!(h.take(a).len(), 1);
    assert_eq!(h.take(b).len(), 1);
}

#[test]
fn unsubscribe_and_no_such_subscription() {
    let mut h = Harness::new();
    let (a, _) = h.join();
    let (b, _) = h.join();
    h.send(a, r#"[32, 1, {}, "t.x"]"#);
    let sub = h.take_one(a)[2].clone();
    h.send(b, &format!("[34, 5, {sub}]"));
    assert_eq!(
        h.take_one(b)[4],
        "wamp.error.no_such_subscription",
        "b never subscribed"
    );
    h.send(a, &format!("[34, 2, {sub}]"));
    assert_eq!(h.take_one(a), json!([35, 2]));
    h.send(a, &format!("[34, 3, {sub}]"));
    assert_eq!(
        h.take_one(a),
        json!([
            8,
            34,
            3,
            {},
            "wamp.error.no_such_subscription",
            [format!("this session has no subscription {sub}")]
        ])
    );
    h.send(b, r#"[16, 1, {}, "t.x"]"#);
    assert!(h.take(a).is_empty());
}

#[test]
fn invalid_uris_and_unsupported_options_are_refused() {
    let mut h = Harness::new();
    let (a, _) = h.join();
    h.send(a, r#"[32, 1, {}, "com..bad"]"#);
    assert_eq!(h.take_one(a)[4], "wamp.error.invalid_uri");
    h.send(a, r#"[16, 2, {"acknowledge": true}, "com.bad topic", []]"#);
    assert_eq!(h.take_one(a)[4], "wamp.error.invalid_uri");
    h.send(a, r#"[16, 3, {}, "com.bad topic", []]"#);
    assert!(h.take(a).is_empty(), "no acknowledge: no error either");
    h.send(a, r#"[64, 4, {}, "wamp.session.count"]"#);
    assert_eq!(h.take_one(a)[4], "wamp.error.invalid_uri");
    h.send(a, r#"[64, 5, {"force_reregister": true}, "com.t"]"#);
    assert_eq!(h.take_one(a)[4], "wamp.error.option_not_allowed");
    h.send(a, r#"[48, 6, {"rkey": "shard-1"}, "com.p", []]"#);
    assert_eq!(h.take_one(a)[4], "wamp.error.option_not_allowed");
    h.send(a, r#"[64, 7, {"invoke": "fastest"}, "com.p"]"#);
    assert_eq!(h.take_one(a)[4], "wamp.error.option_not_allowed");
    h.send(a, r#"[32, 8, {"match": "fuzzy"}, "com.p"]"#);
    assert_eq!(h.take_one(a)[4], "wamp.error.option_not_allowed");
    // Options at their "off" value are fine.
    h.send(
        a,
        r#"[48, 9, {"timeout": 0, "disclose_me": false}, "com.p", []]"#,
    );
    assert_eq!(h.take_one(a)[4], "wamp.error.no_such_procedure");

    // Strict realm.
    let conn = h.open();
    h.send(conn, r#"[1, "strict", {"roles": {"subscriber": {}}}]"#);
    h.take_one(conn);
    h.send(conn, r#"[32, 1, {}, "com.Upper"]"#);
    assert_eq!(h.take_one(conn)[4], "wamp.error.invalid_uri");
    h.send(conn, r#"[32, 2, {}, "com.lower_1"]"#);
    assert_eq!(h.take_one(conn)[0], 33);
}

#[test]
fn rpc_round_trip_and_errors() {
    let mut h = Harness::new();
    let (callee, _) = h.join();
    let (caller, _) = h.join();
    h.send(callee, r#"[64, 1, {}, "com.add"]"#);
    let registered = h.take_one(callee);
    assert_eq!(registered[0], 65);
    let reg = registered[2].clone();
    h.send(caller, r#"[64, 1, {}, "com.add"]"#);
    assert_eq!(h.take_one(caller)[4], "wamp.error.procedure_already_exists");

    h.send(
        caller,
        r#"[48, 42, {}, "com.add", [2, 3], {"big": 9007199254740993}]"#,
    );
    let invocation = h.take_one(callee);
    assert_eq!(invocation[0], 68);
    assert_eq!(invocation[2], reg);
    assert_eq!(invocation[3], json!({}));
    assert_eq!(invocation[4], json!([2, 3]));
    // Large ints pass through untouched (no float round trip).
    assert_eq!(invocation[5]["big"].as_u64(), Some(9007199254740993));
    let inv_id = invocation[1].as_u64().unwrap();
    h.send(callee, &format!(r#"[70, {inv_id}, {{}}, [5]]"#));
    assert_eq!(h.take_one(caller), json!([50, 42, {}, [5]]));

    // Callee error with payload propagates with its URI.
    h.send(caller, r#"[48, 43, {}, "com.add", ["x"]]"#);
    let inv_id = h.take_one(callee)[1].as_u64().unwrap();
    h.send(
        callee,
        &format!(
            r#"[8, 68, {inv_id}, {{}}, "com.error.bad_operand", ["x is no number"], {{"at": 0}}]"#
        ),
    );
    assert_eq!(
        h.take_one(caller),
        json!([8, 48, 43, {}, "com.error.bad_operand", ["x is no number"], {"at": 0}])
    );

    h.send(caller, r#"[48, 44, {}, "com.missing", []]"#);
    assert_eq!(h.take_one(caller)[4], "wamp.error.no_such_procedure");

    // Unregister; then calls fail; a second unregister is no_such_registration.
    h.send(callee, &format!("[66, 2, {reg}]"));
    assert_eq!(h.take_one(callee), json!([67, 2]));
    h.send(callee, &format!("[66, 3, {reg}]"));
    assert_eq!(h.take_one(callee)[4], "wamp.error.no_such_registration");
    h.send(caller, r#"[48, 45, {}, "com.add", []]"#);
    assert_eq!(h.take_one(caller)[4], "wamp.error.no_such_procedure");
}

#[test]
fn callee_leaving_fails_pending_calls_and_caller_leaving_discards_results() {
    let mut h = Harness::new();
    let (callee, _) = h.join();
    let (caller, _) = h.join();
    h.send(callee, r#"[64, 1, {}, "com.slow"]"#);
    h.take_one(callee);
    h.send(caller, r#"[48, 1, {}, "com.slow", []]"#);
    h.send(caller, r#"[48, 2, {}, "com.slow", []]"#);
    assert_eq!(h.take(callee).len(), 2);
    h.close(callee);
    let errors = h.take(caller);
    assert_eq!(errors.len(), 2);
    for error in &errors {
        assert_eq!(error[0], 8);
        assert_eq!(error[1], 48);
        assert_eq!(error[4], "wamp.error.canceled");
    }
    let mut requests: Vec<u64> = errors.iter().map(|e| e[2].as_u64().unwrap()).collect();
    requests.sort();
    assert_eq!(requests, vec![1, 2]);

    let (callee, _) = h.join();
    h.send(callee, r#"[64, 1, {}, "com.slow"]"#);
    h.take_one(callee);
    let (caller2, _) = h.join();
    h.send(caller2, r#"[48, 1, {}, "com.slow", []]"#);
    let inv = h.take_one(callee)[1].as_u64().unwrap();
    h.close(caller2);
    h.send(callee, &format!("[70, {inv}, {{}}, [1]]"));
    assert!(
        h.out.sent.is_empty(),
        "late YIELD is discarded: {:?}",
        h.out.sent
    );
}

#[test]
fn progressive_results_only_when_requested() {
    let mut h = Harness::new();
    let (callee, _) = h.join();
    let (caller, _) = h.join();
    h.send(callee, r#"[64, 1, {}, "com.stream"]"#);
    h.take_one(callee);
    h.send(
        caller,
        r#"[48, 1, {"receive_progress": true}, "com.stream", []]"#,
    );
    let invocation = h.take_one(callee);
    assert_eq!(invocation[3], json!({"receive_progress": true}));
    let inv = invocation[1].as_u64().unwrap();
    h.send(
        callee,
        &format!(r#"[70, {inv}, {{"progress": true}}, [1]]"#),
    );
    h.send(
        callee,
        &format!(r#"[70, {inv}, {{"progress": true}}, [2]]"#),
    );
    h.send(callee, &format!(r#"[70, {inv}, {{}}, [3]]"#));
    assert_eq!(
        h.take(caller),
        vec![
            json!([50, 1, {"progress": true}, [1]]),
            json!([50, 1, {"progress": true}, [2]]),
            json!([50, 1, {}, [3]])
        ]
    );
}

#[test]
fn pattern_subscriptions_and_registration_precedence() {
    let mut h = Harness::new();
    let (s, _) = h.join();
    let (p, _) = h.join();
    h.send(s, r#"[32, 1, {"match": "prefix"}, "sensors."]"#);
    h.send(s, r#"[32, 2, {"match": "wildcard"}, "sensors..temp"]"#);
    h.send(s, r#"[32, 3, {}, "sensors.7.temp"]"#);
    let subs: Vec<Value> = h.take(s).into_iter().map(|m| m[2].clone()).collect();
    assert_eq!(subs.len(), 3);
    h.send(p, r#"[16, 1, {}, "sensors.7.temp", [21.5]]"#);
    let events = h.take(s);
    assert_eq!(
        events.len(),
        3,
        "every matching subscription gets the publication"
    );
    let publication = events[0][2].clone();
    for event in &events {
        assert_eq!(event[2], publication);
        let sub = &event[1];
        if *sub == subs[2] {
            assert_eq!(event[3], json!({}));
        } else {
            assert_eq!(event[3], json!({"topic": "sensors.7.temp"}));
        }
    }

    let (c1, _) = h.join();
    let (c2, _) = h.join();
    let (c3, _) = h.join();
    let (c4, _) = h.join();
    h.send(c1, r#"[64, 1, {"match": "prefix"}, "a.b"]"#);
    h.send(c2, r#"[64, 1, {"match": "prefix"}, "a.b.c"]"#);
    h.send(c3, r#"[64, 1, {"match": "wildcard"}, "a..c.d"]"#);
    h.send(c4, r#"[64, 1, {"match": "wildcard"}, "a.b..d"]"#);
    for c in [c1, c2, c3, c4] {
        assert_eq!(h.take_one(c)[0], 65);
    }
    let (caller, _) = h.join();
    let route = |h: &mut Harness, procedure: &str| -> usize {
        h.send(caller, &format!(r#"[48, 1, {{}}, "{procedure}", []]"#));
        let mut hit = None;
        for c in [c1, c2, c3, c4] {
            let got = h.take(c);
            if !got.is_empty() {
                assert_eq!(got[0][3]["procedure"], procedure);
                let inv = got[0][1].as_u64().unwrap();
                h.send(c, &format!("[70, {inv}, {{}}]"));
                hit = Some(c);
            }
        }
        assert_eq!(h.take_one(caller)[0], 50);
        hit.expect("some callee was invoked")
    };
    assert_eq!(
        route(&mut h, "a.b.c.d"),
        c2,
        "longest prefix wins over wildcards"
    );
    assert_eq!(route(&mut h, "a.bx"), c1);
    h.send(c2, r#"[6, {}, "wamp.close.close_realm"]"#);
    h.take_one(c2);
    h.send(c1, r#"[6, {}, "wamp.close.close_realm"]"#);
    h.take_one(c1);
    assert_eq!(
        route(&mut h, "a.b.c.d"),
        c4,
        "the wildcard literal further left wins"
    );
    assert_eq!(route(&mut h, "a.x.c.d"), c3);
}

#[test]
fn shutdown_says_goodbye_and_closes_after_reply() {
    let mut h = Harness::new();
    let (a, _) = h.join();
    let idle = h.open();
    h.router.handle_shutdown(&mut h.out);
    assert_eq!(h.take_one(a), json!([6, {}, "wamp.close.system_shutdown"]));
    assert_eq!(h.out.closed, vec![idle as u64]);
    h.send(a, r#"[6, {}, "wamp.close.goodbye_and_out"]"#);
    assert_eq!(h.out.closed, vec![idle as u64, a as u64]);
    h.close(a);
    h.close(idle);
    assert_eq!(h.router.connections(), 0);
    assert_eq!(h.router.stats().sessions_active, 0);
}

#[test]
fn a_thousand_subscribers_receive_every_event_once() {
    let mut h = Harness::new();
    let mut subscribers = Vec::new();
    for _ in 0..1000 {
        let (conn, _) = h.join();
        h.send(conn, r#"[32, 1, {}, "fan.out"]"#);
        h.take_one(conn);
        subscribers.push(conn);
    }
    let (p, _) = h.join();
    for i in 0..20 {
        h.send(p, &format!(r#"[16, {}, {{}}, "fan.out", [{i}]]"#, i + 1));
    }
    let mut per_conn = std::collections::HashMap::<u64, Vec<u64>>::new();
    for (conn, msg) in h.out.sent.drain(..) {
        assert_eq!(msg[0], 36);
        per_conn
            .entry(conn)
            .or_default()
            .push(msg[4][0].as_u64().unwrap());
    }
    assert_eq!(per_conn.len(), 1000);
    for seq in per_conn.values() {
        assert_eq!(
            *seq,
            (0..20).collect::<Vec<u64>>(),
            "every event, in publication order"
        );
    }
    assert_eq!(h.out.multicasts, 20);
}

#[test]
fn stale_handles_are_ignored() {
    let mut h = Harness::new();
    let (a, _) = h.join();
    let stale = h.handles[a];
    h.close(a);
    let (b, _) = h.join();
    assert_eq!(h.handles[b].clone(), h.handles[b]);
    // The slot of `a` was reused by `b`; the stale handle must not reach it.
    let msg = Serializer::Json.decode(br#"[32, 1, {}, "x.y"]"#).unwrap();
    h.router.handle_message(stale, &msg, 0, &mut h.out);
    h.router.handle_close(stale, &mut h.out);
    assert!(h.out.sent.is_empty());
    h.send(b, r#"[32, 1, {}, "x.y"]"#);
    assert_eq!(h.take_one(b)[0], 33);
}

#[test]
fn a_session_calling_its_own_procedure_can_leave() {
    // Regression (found by the simulation): the session is caller and callee of the same pending call.
    let mut h = Harness::new();
    let (a, _) = h.join();
    h.send(a, r#"[64, 1, {}, "com.self"]"#);
    assert_eq!(h.take_one(a)[0], 65);
    h.send(a, r#"[48, 2, {}, "com.self", []]"#);
    h.send(a, r#"[48, 3, {}, "com.self", []]"#);
    assert_eq!(h.take(a).len(), 2, "two INVOCATIONs to itself");
    h.send(a, r#"[6, {}, "wamp.close.close_realm"]"#);
    assert_eq!(
        h.take(a),
        vec![json!([6, {}, "wamp.close.goodbye_and_out"])],
        "no ERROR to a caller that left"
    );
    h.close(a);
    assert_eq!(h.router.connections(), 0);
}

fn limited(limits: kreisel_engine::EngineLimits) -> Harness {
    let config = RouterConfig {
        limits,
        ..RouterConfig::default()
    };
    Harness::with_config(config)
}

#[test]
fn per_realm_and_per_session_limits_have_defined_outcomes() {
    let limits = kreisel_engine::EngineLimits {
        sessions_per_realm_max: 3,
        calls_per_session_max: 2,
        subscriptions_per_session_max: 2,
        registrations_per_session_max: 1,
        ..Default::default()
    };
    let mut h = limited(limits);
    let (a, _) = h.join();
    let (callee, _) = h.join();
    let (c, _) = h.join();
    // A fourth session is refused; once one leaves, there is room again.
    let d = h.open();
    h.send(d, r#"[1, "realm1", {"roles": {"caller": {}}}]"#);
    let abort = h.take_one(d);
    assert_eq!(abort[2], "wamp.error.not_authorized");
    assert!(abort[1]["message"]
        .as_str()
        .unwrap()
        .contains("limit of 3 sessions"));
    h.close(c);
    h.join();

    // Subscriptions: two distinct ones, then a third is refused; re-subscribing to a held one is fine.
    h.send(a, r#"[32, 1, {}, "t.one"]"#);
    h.send(a, r#"[32, 2, {}, "t.two"]"#);
    assert_eq!(h.take(a).len(), 2);
    h.send(a, r#"[32, 3, {}, "t.three"]"#);
    assert_eq!(h.take_one(a)[4], "kreisel.error.limit_exceeded");
    h.send(a, r#"[32, 4, {}, "t.one"]"#);
    assert_eq!(h.take_one(a)[0], 33);

    // Registrations: one, then refused.
    h.send(callee, r#"[64, 1, {}, "p.one"]"#);
    assert_eq!(h.take_one(callee)[0], 65);
    h.send(callee, r#"[64, 2, {}, "p.two"]"#);
    assert_eq!(h.take_one(callee)[4], "kreisel.error.limit_exceeded");

    // Pending calls: two in flight, the third refused; answering one makes room.
    h.send(a, r#"[48, 10, {}, "p.one", []]"#);
    h.send(a, r#"[48, 11, {}, "p.one", []]"#);
    let invocations = h.take(callee);
    assert_eq!(invocations.len(), 2);
    h.send(a, r#"[48, 12, {}, "p.one", []]"#);
    assert_eq!(h.take_one(a)[4], "kreisel.error.limit_exceeded");
    h.send(callee, &format!("[70, {}, {{}}]", invocations[0][1]));
    assert_eq!(h.take_one(a)[0], 50);
    h.send(a, r#"[48, 13, {}, "p.one", []]"#);
    assert_eq!(h.take_one(callee)[0], 68);
    assert_eq!(h.router.stats().limits_hit, 4);
}

/// Joins with the callee feature `call_canceling` announced.
fn join_interruptible(h: &mut Harness) -> usize {
    let conn = h.open();
    h.send(conn, r#"[1, "realm1", {"roles": {"caller": {}, "callee": {"features": {"call_canceling": true}}}}]"#);
    assert_eq!(h.take_one(conn)[0], 2);
    conn
}

/// Calls `procedure` from `caller`; returns which of `callees` got the INVOCATION (and answers it).
fn served_by(h: &mut Harness, caller: usize, procedure: &str, callees: &[usize]) -> usize {
    h.send(caller, &format!(r#"[48, 1, {{}}, "{procedure}", []]"#));
    let mut served = None;
    for &callee in callees {
        for invocation in h.take(callee) {
            assert!(served.is_none(), "one INVOCATION per CALL");
            h.send(callee, &format!("[70, {}, {{}}]", invocation[1]));
            served = Some(callee);
        }
    }
    assert_eq!(h.take_one(caller)[0], 50);
    served.expect("a callee was invoked")
}

#[test]
fn shared_registrations_follow_their_invocation_policy() {
    let mut h = Harness::new();
    let (c1, _) = h.join();
    let (c2, _) = h.join();
    let (c3, _) = h.join();
    let (caller, _) = h.join();
    for policy in ["roundrobin", "first", "last", "random"] {
        let procedure = format!("com.shared.{policy}");
        let mut ids = Vec::new();
        for c in [c1, c2, c3] {
            h.send(
                c,
                &format!(r#"[64, 1, {{"invoke": "{policy}"}}, "{procedure}"]"#),
            );
            let registered = h.take_one(c);
            assert_eq!(registered[0], 65);
            ids.push(registered[2].clone());
        }
        assert!(
            ids.iter().all(|id| *id == ids[0]),
            "one registration ID shared by its callees"
        );
        let order: Vec<usize> = (0..6)
            .map(|_| served_by(&mut h, caller, &procedure, &[c1, c2, c3]))
            .collect();
        match policy {
            "roundrobin" => assert_eq!(order, vec![c1, c2, c3, c1, c2, c3]),
            "first" => assert_eq!(order, vec![c1; 6]),
            "last" => assert_eq!(order, vec![c3; 6]),
            _ => assert!(order.iter().all(|c| [c1, c2, c3].contains(c))),
        }
    }
    // A different policy, or single, on a shared URI is refused; so is joining a single registration.
    h.send(
        caller,
        r#"[64, 8, {"invoke": "last"}, "com.shared.roundrobin"]"#,
    );
    assert_eq!(
        h.take_one(caller)[4],
        "wamp.error.procedure_exists_with_different_invocation_policy"
    );
    h.send(
        c1,
        r#"[64, 9, {"invoke": "roundrobin"}, "com.shared.roundrobin"]"#,
    );
    assert_eq!(
        h.take_one(c1)[4],
        "wamp.error.procedure_already_exists",
        "a callee holds a registration once"
    );
    h.send(caller, r#"[64, 9, {}, "com.shared.first"]"#);
    assert_eq!(
        h.take_one(caller)[4],
        "wamp.error.procedure_exists_with_different_invocation_policy"
    );
    h.send(c1, r#"[64, 10, {}, "com.single"]"#);
    assert_eq!(h.take_one(c1)[0], 65);
    h.send(c2, r#"[64, 10, {"invoke": "roundrobin"}, "com.single"]"#);
    assert_eq!(h.take_one(c2)[4], "wamp.error.procedure_already_exists");
    // The first callee leaving hands "first" to the next one; the last one leaving deletes the registration.
    h.close(c1);
    assert_eq!(served_by(&mut h, caller, "com.shared.first", &[c2, c3]), c2);
    h.close(c2);
    h.close(c3);
    h.send(caller, r#"[48, 2, {}, "com.shared.first", []]"#);
    assert_eq!(h.take_one(caller)[4], "wamp.error.no_such_procedure");
}

#[test]
fn cancel_modes() {
    let mut h = Harness::new();
    let callee = join_interruptible(&mut h);
    let (caller, _) = h.join();
    h.send(callee, r#"[64, 1, {}, "com.slow"]"#);
    h.take_one(callee);

    // skip: ERROR now, no INTERRUPT, the late YIELD is dropped.
    h.send(caller, r#"[48, 1, {}, "com.slow", []]"#);
    let inv = h.take_one(callee)[1].clone();
    h.send(caller, r#"[49, 1, {"mode": "skip"}]"#);
    assert_eq!(h.take_one(caller)[4], "wamp.error.canceled");
    assert!(h.take(callee).is_empty(), "no INTERRUPT in skip mode");
    h.send(callee, &format!("[70, {inv}, {{}}]"));
    assert!(h.take(caller).is_empty(), "the late result is discarded");

    // kill: INTERRUPT, and the callee's answer decides what the caller gets.
    h.send(caller, r#"[48, 2, {}, "com.slow", []]"#);
    let inv = h.take_one(callee)[1].clone();
    h.send(caller, r#"[49, 2, {"mode": "kill"}]"#);
    assert_eq!(
        h.take_one(callee),
        json!([69, inv, {"mode": "kill", "reason": "wamp.error.canceled"}])
    );
    assert!(h.take(caller).is_empty(), "kill waits for the callee");
    h.send(
        callee,
        &format!(r#"[8, 68, {inv}, {{}}, "wamp.error.canceled"]"#),
    );
    assert_eq!(
        h.take_one(caller),
        json!([8, 48, 2, {}, "wamp.error.canceled"])
    );

    // kill, then a CANCEL without mode (killnowait): the caller gets its ERROR, the callee no second INTERRUPT
    // (found by the engine fuzz target).
    h.send(caller, r#"[48, 7, {}, "com.slow", []]"#);
    let inv = h.take_one(callee)[1].clone();
    h.send(caller, r#"[49, 7, {"mode": "kill"}]"#);
    assert_eq!(h.take_one(callee)[0], 69);
    h.send(caller, r#"[49, 7, {}]"#);
    assert_eq!(h.take_one(caller)[4], "wamp.error.canceled");
    assert!(h.take(callee).is_empty(), "one INTERRUPT per invocation");
    h.send(
        callee,
        &format!(r#"[8, 68, {inv}, {{}}, "wamp.error.canceled"]"#),
    );
    assert!(h.take(caller).is_empty(), "the late answer is discarded");

    // killnowait (the default): ERROR and INTERRUPT at once; the callee's answer is dropped.
    h.send(caller, r#"[48, 3, {}, "com.slow", []]"#);
    let inv = h.take_one(callee)[1].clone();
    h.send(caller, r#"[49, 3, {}]"#);
    assert_eq!(h.take_one(caller)[4], "wamp.error.canceled");
    assert_eq!(
        h.take_one(callee),
        json!([69, inv, {"mode": "killnowait", "reason": "wamp.error.canceled"}])
    );
    h.send(
        callee,
        &format!(r#"[8, 68, {inv}, {{}}, "wamp.error.canceled"]"#),
    );
    assert!(h.take(caller).is_empty());

    // A callee without call_canceling: kill behaves as skip. CANCEL of an ended call does nothing.
    let (plain, _) = h.join();
    h.send(plain, r#"[64, 1, {}, "com.plain"]"#);
    h.take_one(plain);
    h.send(caller, r#"[48, 4, {}, "com.plain", []]"#);
    h.take_one(plain);
    h.send(caller, r#"[49, 4, {"mode": "kill"}]"#);
    assert_eq!(h.take_one(caller)[4], "wamp.error.canceled");
    assert!(h.take(plain).is_empty());
    h.send(caller, r#"[49, 4, {}]"#);
    assert!(h.take(caller).is_empty());
    h.send(caller, r#"[49, 5, {"mode": "explode"}]"#);
    assert_eq!(h.take_one(caller)[4], "wamp.error.option_not_allowed");
}

#[test]
fn router_enforced_call_timeouts() {
    let mut h = Harness::new();
    let callee = join_interruptible(&mut h);
    let (caller, _) = h.join();
    h.send(callee, r#"[64, 1, {}, "com.slow"]"#);
    h.take_one(callee);
    let call = Serializer::Json
        .decode(br#"[48, 7, {"timeout": 500}, "com.slow", []]"#)
        .unwrap();
    h.router
        .handle_message(h.handles[caller], &call, 1000, &mut h.out);
    let invocation = h.take_one(callee);
    assert_eq!(
        invocation[3],
        json!({}),
        "a callee that did not announce call_timeout is not told"
    );
    assert_eq!(h.router.poll_timeout(), Some(1500));
    h.router.handle_timeout(1499, &mut h.out);
    assert!(h.take(caller).is_empty());
    h.router.handle_timeout(1500, &mut h.out);
    assert_eq!(h.take_one(caller)[4], "wamp.error.timeout");
    assert_eq!(
        h.take_one(callee),
        json!([69, invocation[1], {"mode": "killnowait", "reason": "wamp.error.timeout"}])
    );
    // The late YIELD is discarded; a call answered in time is not timed out later.
    h.send(callee, &format!("[70, {}, {{}}]", invocation[1]));
    assert!(h.take(caller).is_empty());
    let call = Serializer::Json
        .decode(br#"[48, 8, {"timeout": 500}, "com.slow", []]"#)
        .unwrap();
    h.router
        .handle_message(h.handles[caller], &call, 2000, &mut h.out);
    let invocation = h.take_one(callee);
    h.send(callee, &format!("[70, {}, {{}}]", invocation[1]));
    assert_eq!(h.take_one(caller)[0], 50);
    h.router.handle_timeout(3000, &mut h.out);
    assert!(h.take(caller).is_empty() && h.take(callee).is_empty());
}
