//! The router's own procedures and events in the `wamp.` namespace, deterministically: testaments, the session meta
//! API, the subscription and registration meta API.

mod common;

use common::*;
use serde_json::{json, Value};

/// Subscribes `conn` to `topic` (options as JSON); returns the subscription ID.
fn subscribe(h: &mut Harness, conn: usize, options: &str, topic: &str) -> Value {
    h.send(conn, &format!(r#"[32, 1, {options}, "{topic}"]"#));
    let subscribed = h.take_one(conn);
    assert_eq!(subscribed[0], 33, "{subscribed}");
    subscribed[2].clone()
}

/// Calls `procedure` with the payload elements `payload` (JSON, e.g. `["a"], {"k": 1}`) and returns the answer.
fn call(h: &mut Harness, conn: usize, procedure: &str, payload: &str) -> Value {
    let payload = if payload.is_empty() {
        String::new()
    } else {
        format!(", {payload}")
    };
    h.send(conn, &format!(r#"[48, 7, {{}}, "{procedure}"{payload}]"#));
    h.take_one(conn)
}

/// The ERROR's URI (panics on anything but an ERROR for a CALL).
fn error(answer: Value) -> String {
    assert_eq!(
        (answer[0].clone(), answer[1].clone()),
        (json!(8), json!(48)),
        "{answer}"
    );
    answer[4].as_str().unwrap().to_owned()
}

#[test]
fn testaments_are_published_when_the_session_goes() {
    let mut h = Harness::new();
    let (watcher, _) = h.join();
    let (dying, dying_id) = h.join();
    subscribe(&mut h, watcher, "{}", "com.gone");
    let added = call(
        &mut h,
        dying,
        "wamp.session.add_testament",
        r#"["com.gone", ["destroyed 1"], {"who": "dying"}]"#,
    );
    assert_eq!(added, json!([50, 7, {}]));
    call(
        &mut h,
        dying,
        "wamp.session.add_testament",
        r#"["com.gone", ["detached"], {}], {"scope": "detached", "publish_options": {"disclose_me": true}}"#,
    );
    call(
        &mut h,
        dying,
        "wamp.session.add_testament",
        r#"["com.gone", ["destroyed 2"]]"#,
    );
    h.assert_quiet();
    // The transport is lost: detached ones first, then destroyed ones, each in the order added.
    h.close(dying);
    let events = h.take(watcher);
    let args: Vec<Value> = events.iter().map(|e| e[4][0].clone()).collect();
    assert_eq!(
        args,
        [
            json!("detached"),
            json!("destroyed 1"),
            json!("destroyed 2")
        ]
    );
    assert_eq!(events[0][3]["publisher"], dying_id, "publish options apply");
    assert_eq!(events[1][5], json!({"who": "dying"}));
    assert!(events[1][3].get("publisher").is_none());
    assert!(events[2].get(5).is_none());
}

#[test]
fn testaments_can_be_flushed_by_scope_and_go_with_goodbye_too() {
    let mut h = Harness::new();
    let (watcher, _) = h.join();
    let (leaving, _) = h.join();
    subscribe(&mut h, watcher, "{}", "com.gone");
    for scope in ["detached", "destroyed", "detached"] {
        let payload = format!(r#"["com.gone", ["{scope}"]], {{"scope": "{scope}"}}"#);
        assert_eq!(
            call(&mut h, leaving, "wamp.session.add_testament", &payload)[0],
            50
        );
    }
    let flushed = call(
        &mut h,
        leaving,
        "wamp.session.flush_testaments",
        r#"[], {"scope": "detached"}"#,
    );
    assert_eq!(flushed[0], 50);
    h.send(leaving, r#"[6, {}, "wamp.close.goodbye_and_out"]"#);
    assert_eq!(h.take_one(leaving)[0], 6);
    let events = h.take(watcher);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0][4], json!(["destroyed"]));

    // The default scope of a flush is `destroyed`.
    let (again, _) = h.join();
    call(
        &mut h,
        again,
        "wamp.session.add_testament",
        r#"["com.gone", []]"#,
    );
    call(&mut h, again, "wamp.session.flush_testaments", "");
    h.close(again);
    h.assert_quiet();
}

#[test]
fn bad_testaments_are_refused() {
    let mut h = Harness::new();
    let (c, _) = h.join();
    let refused =
        |h: &mut Harness, payload: &str| error(call(h, c, "wamp.session.add_testament", payload));
    assert_eq!(refused(&mut h, ""), "wamp.error.invalid_argument");
    assert_eq!(refused(&mut h, "[5]"), "wamp.error.invalid_argument");
    assert_eq!(
        refused(&mut h, r#"["com.t", 5]"#),
        "wamp.error.invalid_argument"
    );
    assert_eq!(
        refused(&mut h, r#"["com.t", [], []]"#),
        "wamp.error.invalid_argument"
    );
    assert_eq!(
        refused(&mut h, r#"["com.t", [], {}], {"scope": "forever"}"#),
        "wamp.error.invalid_argument"
    );
    assert_eq!(
        refused(&mut h, r#"["com..t", []]"#),
        "wamp.error.invalid_uri"
    );
    assert_eq!(
        refused(&mut h, r#"["wamp.session.on_join", []]"#),
        "wamp.error.invalid_uri"
    );
    assert_eq!(
        refused(
            &mut h,
            r#"["com.t", [], {}], {"publish_options": {"exclude": 5}}"#
        ),
        "wamp.error.option_not_allowed"
    );
    assert_eq!(
        error(call(
            &mut h,
            c,
            "wamp.session.flush_testaments",
            r#"[], {"scope": 1}"#
        )),
        "wamp.error.invalid_argument"
    );
    assert_eq!(
        error(call(&mut h, c, "wamp.no.such.thing", "")),
        "wamp.error.no_such_procedure"
    );
    // Bounded per session.
    let limits = kreisel_engine::EngineLimits {
        testaments_per_session_max: 2,
        ..Default::default()
    };
    let mut h = Harness::with_config(kreisel_engine::RouterConfig {
        limits,
        ..Default::default()
    });
    let (c, _) = h.join();
    for _ in 0..2 {
        assert_eq!(
            call(&mut h, c, "wamp.session.add_testament", r#"["com.t", []]"#)[0],
            50
        );
    }
    assert_eq!(
        error(call(
            &mut h,
            c,
            "wamp.session.add_testament",
            r#"["com.t", []]"#
        )),
        "kreisel.error.limit_exceeded"
    );
}

/// The RESULT's positional results (panics on anything but a RESULT).
fn results(answer: Value) -> Value {
    assert_eq!(answer[0], 50, "{answer}");
    answer.get(3).cloned().unwrap_or(Value::Null)
}

/// The meta events `conn` received, as (topic subscription ID, args), in order.
fn events(h: &mut Harness, conn: usize) -> Vec<(Value, Value)> {
    h.take(conn)
        .into_iter()
        .map(|e| {
            assert_eq!(e[0], 36, "{e}");
            (e[1].clone(), e[4].clone())
        })
        .collect()
}

#[test]
fn session_meta_events_announce_joins_and_leaves() {
    let mut h = Harness::new();
    let (watcher, _) = h.join();
    let on_join = subscribe(&mut h, watcher, "{}", "wamp.session.on_join");
    let on_leave = subscribe(&mut h, watcher, "{}", "wamp.session.on_leave");
    let (newcomer, id) = h.join();
    let authid = format!("anonymous-{id}");
    let details = json!({"session": id, "authid": authid, "authrole": "anonymous",
                         "authmethod": "anonymous", "authprovider": "static"});
    assert_eq!(
        events(&mut h, watcher),
        [(on_join.clone(), json!([details]))]
    );
    // Another realm's sessions are not announced here.
    let (elsewhere, _) = h.join_with("strict", PLAIN_ROLES);
    h.close(elsewhere);
    h.assert_quiet();
    h.close(newcomer);
    assert_eq!(
        events(&mut h, watcher),
        [(on_leave, json!([id, authid, "anonymous"]))]
    );
    // A pattern subscription sees them too, with the topic.
    let (pattern_watcher, _) = h.join();
    assert_eq!(h.take_one(watcher)[1], on_join);
    subscribe(
        &mut h,
        pattern_watcher,
        r#"{"match": "prefix"}"#,
        "wamp.session.",
    );
    let (_, id) = h.join();
    let event = h.take_one(pattern_watcher);
    assert_eq!(event[3]["topic"], "wamp.session.on_join");
    assert_eq!(event[4][0]["session"], id);
    assert_eq!(h.take_one(watcher)[1], on_join);
}

#[test]
fn session_meta_procedures_count_list_and_get() {
    let mut h = Harness::new();
    let (a, a_id) = h.join();
    let (_, b_id) = h.join();
    let (_, _) = h.join_with("strict", PLAIN_ROLES);
    assert_eq!(
        results(call(&mut h, a, "wamp.session.count", "")),
        json!([2])
    );
    let mut listed: Vec<u64> =
        serde_json::from_value(results(call(&mut h, a, "wamp.session.list", ""))[0].clone())
            .unwrap();
    listed.sort();
    let mut expected = vec![a_id, b_id];
    expected.sort();
    assert_eq!(listed, expected);
    let filtered = r#"[["anonymous"]]"#;
    assert_eq!(
        results(call(&mut h, a, "wamp.session.count", filtered)),
        json!([2])
    );
    let nobody = r#"[["admin"]]"#;
    assert_eq!(
        results(call(&mut h, a, "wamp.session.count", nobody)),
        json!([0])
    );
    assert_eq!(
        results(call(&mut h, a, "wamp.session.list", nobody)),
        json!([[]])
    );
    assert_eq!(
        error(call(&mut h, a, "wamp.session.count", "[5]")),
        "wamp.error.invalid_argument"
    );
    let details = results(call(&mut h, a, "wamp.session.get", &format!("[{b_id}]")));
    assert_eq!(details[0]["session"], b_id);
    assert_eq!(details[0]["authid"], format!("anonymous-{b_id}"));
    assert_eq!(details[0]["authrole"], "anonymous");
    assert_eq!(
        error(call(&mut h, a, "wamp.session.get", "[12345]")),
        "wamp.error.no_such_session"
    );
    assert_eq!(
        error(call(&mut h, a, "wamp.session.get", r#"["x"]"#)),
        "wamp.error.invalid_argument"
    );
}

#[test]
fn sessions_can_be_killed_but_never_the_caller() {
    let mut h = Harness::new();
    let (admin, admin_id) = h.join();
    let (victim, victim_id) = h.join();
    let (other, other_id) = h.join();
    let (elsewhere, _) = h.join_with("strict", PLAIN_ROLES);
    let on_leave = subscribe(&mut h, other, "{}", "wamp.session.on_leave");
    // Kill one by ID, with reason and message.
    let kill = format!(r#"[{victim_id}], {{"reason": "com.admin.bye", "message": "go away"}}"#);
    assert_eq!(
        call(&mut h, admin, "wamp.session.kill", &kill),
        json!([50, 7, {}])
    );
    assert_eq!(
        h.take_one(victim),
        json!([6, {"message": "go away"}, "com.admin.bye"])
    );
    assert_eq!(
        events(&mut h, other),
        [(
            on_leave,
            json!([victim_id, format!("anonymous-{victim_id}"), "anonymous"])
        )]
    );
    // The victim answers GOODBYE and the transport closes; it is gone from the realm already.
    h.send(victim, r#"[6, {}, "wamp.close.goodbye_and_out"]"#);
    assert_eq!(h.out.closed, [victim as u64]);
    assert_eq!(
        results(call(&mut h, admin, "wamp.session.count", "")),
        json!([2])
    );
    // Not the caller itself, not a session of another realm, not twice.
    for target in [admin_id, victim_id, 999] {
        let args = format!("[{target}]");
        assert_eq!(
            error(call(&mut h, admin, "wamp.session.kill", &args)),
            "wamp.error.no_such_session"
        );
    }
    let bad_reason = format!(r#"[{other_id}], {{"reason": "not a uri"}}"#);
    assert_eq!(
        error(call(&mut h, admin, "wamp.session.kill", &bad_reason)),
        "wamp.error.invalid_uri"
    );
    h.assert_quiet();
    // By authid: the default reason is wamp.close.killed.
    let by_authid = format!(r#"["anonymous-{other_id}"]"#);
    assert_eq!(
        results(call(
            &mut h,
            admin,
            "wamp.session.kill_by_authid",
            &by_authid
        )),
        json!([1])
    );
    assert_eq!(h.take_one(other), json!([6, {}, "wamp.close.killed"]));
    // By authrole and all: everyone of the realm but the caller.
    let (c, _) = h.join();
    let (d, _) = h.join();
    assert_eq!(
        results(call(
            &mut h,
            admin,
            "wamp.session.kill_by_authrole",
            r#"["anonymous"]"#
        )),
        json!([2])
    );
    assert_eq!(h.take_one(c)[2], "wamp.close.killed");
    assert_eq!(h.take_one(d)[2], "wamp.close.killed");
    let (e, _) = h.join();
    assert_eq!(
        results(call(&mut h, admin, "wamp.session.kill_all", "")),
        json!([1])
    );
    assert_eq!(h.take_one(e)[2], "wamp.close.killed");
    assert_eq!(
        results(call(&mut h, admin, "wamp.session.kill_all", "")),
        json!([0])
    );
    assert_eq!(
        error(call(&mut h, admin, "wamp.session.kill_by_authid", "")),
        "wamp.error.invalid_argument"
    );
    assert!(h.take(elsewhere).is_empty());
    assert_eq!(
        results(call(&mut h, admin, "wamp.session.count", "")),
        json!([1])
    );
}

#[test]
fn subscription_meta_events_follow_the_lifecycle() {
    let mut h = Harness::new();
    let (watcher, _) = h.join();
    let mut topic_of = std::collections::HashMap::new();
    for topic in ["on_create", "on_subscribe", "on_unsubscribe", "on_delete"] {
        let id = subscribe(&mut h, watcher, "{}", &format!("wamp.subscription.{topic}"));
        topic_of.insert(id, topic);
    }
    h.assert_quiet();
    let (a, a_id) = h.join();
    let (b, b_id) = h.join();
    let sub = subscribe(&mut h, a, r#"{"match": "prefix"}"#, "com.x.");
    let seen = |h: &mut Harness| -> Vec<(&str, Value)> {
        events(h, watcher)
            .into_iter()
            .map(|(id, args)| (topic_of[&id], args))
            .collect()
    };
    let created = seen(&mut h);
    assert_eq!(created[0].0, "on_create");
    assert_eq!(created[0].1[0], a_id);
    let details = &created[0].1[1];
    assert_eq!(details["id"], sub);
    assert_eq!(details["uri"], "com.x.");
    assert_eq!(details["match"], "prefix");
    assert_eq!(details["created"], "1970-01-01T00:00:00.000Z");
    assert_eq!(created[1], ("on_subscribe", json!([a_id, sub])));
    assert_eq!(created.len(), 2);
    // A second subscriber: only on_subscribe; a repeated SUBSCRIBE: nothing.
    subscribe(&mut h, b, r#"{"match": "prefix"}"#, "com.x.");
    assert_eq!(seen(&mut h), [("on_subscribe", json!([b_id, sub]))]);
    subscribe(&mut h, b, r#"{"match": "prefix"}"#, "com.x.");
    h.assert_quiet();
    h.send(a, &format!("[34, 2, {sub}]"));
    assert_eq!(h.take_one(a), json!([35, 2]));
    assert_eq!(seen(&mut h), [("on_unsubscribe", json!([a_id, sub]))]);
    // The last subscriber leaving the realm: on_unsubscribe, then on_delete.
    h.close(b);
    assert_eq!(
        seen(&mut h),
        [
            ("on_unsubscribe", json!([b_id, sub])),
            ("on_delete", json!([b_id, sub]))
        ]
    );
}

#[test]
fn registration_meta_events_follow_the_lifecycle() {
    let mut h = Harness::new();
    let (watcher, _) = h.join();
    let on_any = subscribe(
        &mut h,
        watcher,
        r#"{"match": "prefix"}"#,
        "wamp.registration.on_",
    );
    let (a, a_id) = h.join();
    let (b, b_id) = h.join();
    let register = |h: &mut Harness, conn: usize| {
        h.send(conn, r#"[64, 1, {"invoke": "roundrobin"}, "com.add"]"#);
        let registered = h.take_one(conn);
        assert_eq!(registered[0], 65);
        registered[2].clone()
    };
    let seen = |h: &mut Harness| -> Vec<(String, Value)> {
        h.take(watcher)
            .into_iter()
            .map(|e| {
                assert_eq!(e[1], on_any);
                (e[3]["topic"].as_str().unwrap().to_owned(), e[4].clone())
            })
            .collect()
    };
    let reg = register(&mut h, a);
    let created = seen(&mut h);
    assert_eq!(created.len(), 2);
    assert_eq!(created[0].0, "wamp.registration.on_create");
    assert_eq!(
        created[0].1,
        json!([a_id, {"id": reg, "created": "1970-01-01T00:00:00.000Z", "uri": "com.add",
                      "match": "exact", "invoke": "roundrobin"}])
    );
    assert_eq!(
        created[1],
        ("wamp.registration.on_register".into(), json!([a_id, reg]))
    );
    assert_eq!(register(&mut h, b), reg);
    assert_eq!(
        seen(&mut h),
        [("wamp.registration.on_register".into(), json!([b_id, reg]))]
    );
    h.send(a, &format!("[66, 2, {reg}]"));
    assert_eq!(h.take_one(a), json!([67, 2]));
    assert_eq!(
        seen(&mut h),
        [("wamp.registration.on_unregister".into(), json!([a_id, reg]))]
    );
    h.send(a, &format!("[66, 3, {reg}]"));
    assert_eq!(h.take_one(a)[4], "wamp.error.no_such_registration");
    h.send(b, &format!("[66, 2, {reg}]"));
    assert_eq!(h.take_one(b), json!([67, 2]));
    assert_eq!(
        seen(&mut h),
        [
            ("wamp.registration.on_unregister".into(), json!([b_id, reg])),
            ("wamp.registration.on_delete".into(), json!([b_id, reg]))
        ]
    );
}

#[test]
fn subscription_and_registration_meta_procedures() {
    let mut h = Harness::new();
    let (a, a_id) = h.join();
    let (b, b_id) = h.join();
    let exact = subscribe(&mut h, a, "{}", "com.t.x");
    assert_eq!(subscribe(&mut h, b, "{}", "com.t.x"), exact);
    let prefix = subscribe(&mut h, a, r#"{"match": "prefix"}"#, "com.t");
    let wildcard = subscribe(&mut h, b, r#"{"match": "wildcard"}"#, "com..x");
    let lists = results(call(&mut h, a, "wamp.subscription.list", ""));
    assert_eq!(
        lists,
        json!([{"exact": [exact], "prefix": [prefix], "wildcard": [wildcard]}])
    );
    let lookup = |h: &mut Harness, args: &str| {
        results(call(h, a, "wamp.subscription.lookup", args))[0].clone()
    };
    assert_eq!(lookup(&mut h, r#"["com.t.x"]"#), exact);
    assert_eq!(lookup(&mut h, r#"["com.t", {"match": "prefix"}]"#), prefix);
    assert_eq!(lookup(&mut h, r#"["com.t"]"#), Value::Null);
    assert_eq!(
        error(call(
            &mut h,
            a,
            "wamp.subscription.lookup",
            r#"["com.t", {"match": "fuzzy"}]"#
        )),
        "wamp.error.invalid_argument"
    );
    let mut matched: Vec<Value> =
        results(call(&mut h, a, "wamp.subscription.match", r#"["com.t.x"]"#))[0]
            .as_array()
            .unwrap()
            .clone();
    matched.sort_by_key(|v| v.as_u64());
    let mut expected = vec![exact.clone(), prefix.clone(), wildcard.clone()];
    expected.sort_by_key(|v| v.as_u64());
    assert_eq!(matched, expected);
    assert_eq!(
        results(call(
            &mut h,
            a,
            "wamp.subscription.match",
            r#"["org.none"]"#
        )),
        json!([null])
    );
    let details = results(call(
        &mut h,
        a,
        "wamp.subscription.get",
        &format!("[{wildcard}]"),
    ))[0]
        .clone();
    assert_eq!(
        (
            details["id"].clone(),
            details["uri"].clone(),
            details["match"].clone()
        ),
        (wildcard.clone(), json!("com..x"), json!("wildcard"))
    );
    let mut subscribers: Vec<u64> = serde_json::from_value(
        results(call(
            &mut h,
            a,
            "wamp.subscription.list_subscribers",
            &format!("[{exact}]"),
        ))[0]
            .clone(),
    )
    .unwrap();
    subscribers.sort();
    let mut both = vec![a_id, b_id];
    both.sort();
    assert_eq!(subscribers, both);
    assert_eq!(
        results(call(
            &mut h,
            a,
            "wamp.subscription.count_subscribers",
            &format!("[{exact}]")
        )),
        json!([2])
    );
    for procedure in ["get", "list_subscribers", "count_subscribers"] {
        let answer = call(
            &mut h,
            a,
            &format!("wamp.subscription.{procedure}"),
            "[4242]",
        );
        assert_eq!(error(answer), "wamp.error.no_such_subscription");
    }

    // Registrations: the same, and `match` picks by the dealer's precedence.
    h.send(a, r#"[64, 1, {}, "com.p.add"]"#);
    let reg_exact = h.take_one(a)[2].clone();
    h.send(b, r#"[64, 1, {"match": "prefix"}, "com.p"]"#);
    let reg_prefix = h.take_one(b)[2].clone();
    let lists = results(call(&mut h, a, "wamp.registration.list", ""));
    assert_eq!(
        lists,
        json!([{"exact": [reg_exact], "prefix": [reg_prefix], "wildcard": []}])
    );
    let lookup = |h: &mut Harness, args: &str| {
        results(call(h, a, "wamp.registration.lookup", args))[0].clone()
    };
    assert_eq!(
        lookup(&mut h, r#"["com.p", {"match": "prefix"}]"#),
        reg_prefix
    );
    assert_eq!(lookup(&mut h, r#"["com.p.add", {}]"#), reg_exact);
    let best = |h: &mut Harness, procedure: &str| {
        results(call(
            h,
            a,
            "wamp.registration.match",
            &format!(r#"["{procedure}"]"#),
        ))[0]
            .clone()
    };
    assert_eq!(best(&mut h, "com.p.add"), reg_exact);
    assert_eq!(best(&mut h, "com.p.sub"), reg_prefix);
    assert_eq!(best(&mut h, "org.x"), Value::Null);
    let details = results(call(
        &mut h,
        a,
        "wamp.registration.get",
        &format!("[{reg_prefix}]"),
    ))[0]
        .clone();
    assert_eq!(details["invoke"], "single");
    assert_eq!(details["match"], "prefix");
    assert_eq!(
        results(call(
            &mut h,
            a,
            "wamp.registration.list_callees",
            &format!("[{reg_prefix}]")
        )),
        json!([[b_id]])
    );
    assert_eq!(
        results(call(
            &mut h,
            a,
            "wamp.registration.count_callees",
            &format!("[{reg_exact}]")
        )),
        json!([1])
    );
    for procedure in ["get", "list_callees", "count_callees"] {
        let answer = call(
            &mut h,
            a,
            &format!("wamp.registration.{procedure}"),
            &format!("[{exact}]"),
        );
        assert_eq!(error(answer), "wamp.error.no_such_registration");
    }
    // Meta procedures see only the caller's realm.
    let (other, _) = h.join_with("strict", PLAIN_ROLES);
    assert_eq!(
        error(call(
            &mut h,
            other,
            "wamp.subscription.get",
            &format!("[{exact}]")
        )),
        "wamp.error.no_such_subscription"
    );
    assert_eq!(
        results(call(&mut h, other, "wamp.registration.list", "")),
        json!([{"exact": [], "prefix": [], "wildcard": []}])
    );
}

#[test]
fn meta_events_cost_nothing_without_meta_subscribers() {
    // Without a subscription that may match `wamp.` in a realm, no meta event is built there: the ID generator is
    // not even touched. Two routers with the same seed, one with a meta subscriber in realm `strict`, the other with
    // a plain one (one ID each: meta topics have no meta events of their own): the same activity in realm1 must
    // then draw the same IDs.
    let mut quiet = Harness::new();
    let mut watched = Harness::new();
    let (w, _) = watched.join_with("strict", PLAIN_ROLES);
    subscribe(
        &mut watched,
        w,
        r#"{"match": "prefix"}"#,
        "wamp.session.on_",
    );
    let (q, _) = quiet.join_with("strict", PLAIN_ROLES);
    subscribe(&mut quiet, q, "{}", "com.x");
    let mut last_publication = Vec::new();
    for h in [&mut quiet, &mut watched] {
        let (a, _) = h.join();
        let (b, _) = h.join();
        let sub = subscribe(h, a, "{}", "com.t");
        h.send(a, &format!("[34, 2, {sub}]"));
        h.send(b, r#"[64, 3, {}, "com.p"]"#);
        h.close(b);
        h.send(a, r#"[16, 4, {"acknowledge": true}, "com.t", []]"#);
        let published = h.take(a).pop().unwrap();
        assert_eq!(published[0], 17);
        last_publication.push(published[2].clone());
    }
    assert_eq!(last_publication[0], last_publication[1]);
    assert_eq!(
        watched.take(w).len(),
        0,
        "realm1's sessions are not announced in strict"
    );
    // The same activity in `strict` is heard (and draws IDs).
    let (c, c_id) = watched.join_with("strict", PLAIN_ROLES);
    watched.close(c);
    let heard = watched.take(w);
    assert_eq!(heard.len(), 2);
    assert_eq!(heard[0][4][0]["session"], c_id);
    assert_eq!(heard[1][4][0], c_id);
}
