//! Advanced-profile broker features, deterministically: publisher identification, subscriber black/white lists,
//! event retention, testaments.

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

/// A router whose realm `open` discloses every publisher.
fn disclosing_router() -> Harness {
    let mut config = kreisel_engine::RouterConfig::default();
    config.realms.push(kreisel_engine::RealmConfig {
        disclose_publisher: true,
        ..kreisel_engine::RealmConfig::new("open")
    });
    Harness::with_config(config)
}

#[test]
fn publisher_identification_by_request_or_realm() {
    let mut h = disclosing_router();
    let (s, _) = h.join();
    let (p, p_id) = h.join();
    subscribe(&mut h, s, "{}", "com.news");
    subscribe(&mut h, s, r#"{"match": "prefix"}"#, "com.");
    h.send(p, r#"[16, 1, {}, "com.news", ["plain"]]"#);
    let events = h.take(s);
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e[3].get("publisher").is_none()));
    h.send(
        p,
        r#"[16, 2, {"disclose_me": true}, "com.news", ["disclosed"]]"#,
    );
    let mut details: Vec<Value> = h.take(s).into_iter().map(|e| e[3].clone()).collect();
    details.sort_by_key(|d| d.get("topic").is_some());
    let identity = json!({
        "publisher": p_id,
        "publisher_authid": format!("anonymous-{p_id}"),
        "publisher_authrole": "anonymous"
    });
    assert_eq!(details[0], identity);
    let mut with_topic = identity.clone();
    with_topic["topic"] = json!("com.news");
    assert_eq!(details[1], with_topic);

    let (s, _) = h.join_with("open", PLAIN_ROLES);
    let (p, p_id) = h.join_with("open", PLAIN_ROLES);
    subscribe(&mut h, s, "{}", "com.news");
    h.send(p, r#"[16, 1, {}, "com.news"]"#);
    assert_eq!(
        h.take_one(s)[3]["publisher"],
        p_id,
        "the realm discloses publishers"
    );
}

/// Joins `n` plain sessions subscribed to `topic`; returns (conn, session ID) of each.
fn subscribers(h: &mut Harness, n: usize, topic: &str) -> Vec<(usize, u64)> {
    (0..n)
        .map(|_| {
            let (conn, id) = h.join();
            subscribe(h, conn, "{}", topic);
            (conn, id)
        })
        .collect()
}

/// Which of `subs` received an EVENT (drained).
fn receivers(h: &mut Harness, subs: &[(usize, u64)]) -> Vec<usize> {
    subs.iter()
        .enumerate()
        .filter_map(|(i, (conn, _))| {
            let got = h.take(*conn);
            assert!(got.len() <= 1, "one EVENT per publication: {got:?}");
            (!got.is_empty()).then_some(i)
        })
        .collect()
}

#[test]
fn black_and_white_lists_by_session_authid_and_authrole() {
    let mut h = Harness::new();
    let subs = subscribers(&mut h, 4, "com.t");
    let (p, p_id) = h.join();
    subscribe(&mut h, p, "{}", "com.t");
    let id = |i: usize| subs[i].1;
    let publish = |h: &mut Harness, options: String| {
        h.send(p, &format!(r#"[16, 1, {options}, "com.t", []]"#));
    };
    publish(&mut h, format!(r#"{{"exclude": [{}, {}]}}"#, id(0), id(2)));
    assert_eq!(receivers(&mut h, &subs), [1, 3]);
    publish(
        &mut h,
        format!(r#"{{"eligible": [{}, {}, 12345]}}"#, id(1), id(2)),
    );
    assert_eq!(receivers(&mut h, &subs), [1, 2]);
    // Both: eligible and not excluded.
    publish(
        &mut h,
        format!(
            r#"{{"eligible": [{}, {}], "exclude": [{}]}}"#,
            id(1),
            id(2),
            id(2)
        ),
    );
    assert_eq!(receivers(&mut h, &subs), [1]);
    // authid and authrole (anonymous sessions: authid anonymous-<id>, authrole anonymous).
    publish(
        &mut h,
        format!(
            r#"{{"eligible_authid": ["anonymous-{}", "anonymous-{}"]}}"#,
            id(0),
            id(3)
        ),
    );
    assert_eq!(receivers(&mut h, &subs), [0, 3]);
    publish(
        &mut h,
        format!(r#"{{"exclude_authid": ["anonymous-{}"]}}"#, id(3)),
    );
    assert_eq!(receivers(&mut h, &subs), [0, 1, 2]);
    publish(&mut h, r#"{"eligible_authrole": ["anonymous"]}"#.into());
    assert_eq!(receivers(&mut h, &subs), [0, 1, 2, 3]);
    publish(&mut h, r#"{"exclude_authrole": ["anonymous"]}"#.into());
    assert!(receivers(&mut h, &subs).is_empty());
    publish(&mut h, r#"{"eligible": []}"#.into());
    assert!(
        receivers(&mut h, &subs).is_empty(),
        "an empty whitelist admits nobody"
    );
    assert!(h.take(p).is_empty());

    // Combined with exclude_me: the publisher is excluded by default even when eligible; with exclude_me false
    // the lists alone decide.
    publish(&mut h, format!(r#"{{"eligible": [{p_id}, {}]}}"#, id(0)));
    assert_eq!(receivers(&mut h, &subs), [0]);
    assert!(h.take(p).is_empty());
    publish(
        &mut h,
        format!(r#"{{"eligible": [{p_id}], "exclude_me": false}}"#),
    );
    assert!(receivers(&mut h, &subs).is_empty());
    assert_eq!(h.take_one(p)[0], 36);
    publish(
        &mut h,
        format!(r#"{{"exclude": [{p_id}], "exclude_me": false}}"#),
    );
    assert_eq!(receivers(&mut h, &subs), [0, 1, 2, 3]);
    assert!(h.take(p).is_empty());

    // A list option that is not a list is refused (acknowledged publications get the ERROR).
    h.send(
        p,
        r#"[16, 2, {"acknowledge": true, "exclude": 7}, "com.t", []]"#,
    );
    assert_eq!(h.take_one(p)[4], "wamp.error.option_not_allowed");
    assert!(receivers(&mut h, &subs).is_empty());
}

#[test]
fn filters_apply_per_subscription_and_keep_one_multicast_per_group() {
    let mut h = Harness::new();
    let (a, a_id) = h.join();
    let (b, _) = h.join();
    let exact = subscribe(&mut h, a, "{}", "com.t.x");
    subscribe(&mut h, b, "{}", "com.t.x");
    let prefix = subscribe(&mut h, a, r#"{"match": "prefix"}"#, "com.t");
    let (p, _) = h.join();
    h.out.multicasts = 0;
    h.send(
        p,
        &format!(r#"[16, 1, {{"eligible": [{a_id}]}}, "com.t.x", ["x"]]"#),
    );
    let events = h.take(a);
    assert_eq!(
        events.len(),
        2,
        "a gets the event on both its subscriptions"
    );
    let subs: Vec<Value> = events.iter().map(|e| e[1].clone()).collect();
    assert!(subs.contains(&exact) && subs.contains(&prefix));
    assert!(h.take(b).is_empty());
    assert_eq!(
        h.out.multicasts, 2,
        "one multicast per subscription that has recipients"
    );
}

#[test]
fn subscribers_may_ask_for_the_publisher_on_their_own() {
    let mut h = Harness::new();
    let (told, _) = h.join();
    let (plain, _) = h.join();
    let sub = subscribe(&mut h, told, r#"{"disclose_publisher": true}"#, "com.t");
    assert_eq!(
        subscribe(&mut h, plain, "{}", "com.t"),
        sub,
        "one subscription"
    );
    let (p, p_id) = h.join();
    h.send(p, r#"[16, 1, {}, "com.t", [1]]"#);
    assert_eq!(h.take_one(told)[3]["publisher"], p_id);
    assert_eq!(h.take_one(plain)[3], json!({}));
    // Publications that disclose anyway reach both alike.
    h.send(p, r#"[16, 2, {"disclose_me": true}, "com.t", [2]]"#);
    assert_eq!(h.take_one(told)[3]["publisher"], p_id);
    assert_eq!(h.take_one(plain)[3]["publisher"], p_id);
    // A repeated SUBSCRIBE without the option withdraws it.
    subscribe(&mut h, told, "{}", "com.t");
    h.send(p, r#"[16, 3, {}, "com.t", [3]]"#);
    assert_eq!(h.take_one(told)[3], json!({}));
    h.take_one(plain);
}

#[test]
fn retained_events_reach_subscribers_that_ask() {
    let mut h = Harness::new();
    let (p, p_id) = h.join();
    h.send(
        p,
        r#"[16, 1, {"retain": true, "acknowledge": true}, "com.temp", [20]]"#,
    );
    let first = h.take_one(p)[2].clone();
    h.send(
        p,
        r#"[16, 2, {"retain": true, "acknowledge": true}, "com.temp", [21], {"unit": "C"}]"#,
    );
    let second = h.take_one(p)[2].clone();
    assert_ne!(first, second);
    h.send(p, r#"[16, 3, {}, "com.temp", [22]]"#);

    let (s, _) = h.join();
    h.send(s, r#"[32, 5, {}, "com.temp"]"#);
    assert_eq!(h.take(s).len(), 1, "no retained event unless asked");
    h.send(s, r#"[32, 6, {"get_retained": true}, "com.temp"]"#);
    let got = h.take(s);
    assert_eq!(got.len(), 2, "SUBSCRIBED, then the retained event: {got:?}");
    assert_eq!(got[0][0], 33);
    let sub = got[0][2].clone();
    assert_eq!(
        got[1],
        json!([36, sub, second, {"retained": true}, [21], {"unit": "C"}]),
        "the last retained publication, not the later plain one"
    );

    // Pattern subscriptions get every matching retained event, oldest first, with its topic.
    h.send(
        p,
        r#"[16, 4, {"retain": true, "disclose_me": true}, "com.hum", [50]]"#,
    );
    h.send(
        s,
        r#"[32, 7, {"get_retained": true, "match": "prefix"}, "com."]"#,
    );
    let got = h.take(s);
    assert_eq!(got.len(), 3);
    assert_eq!(got[1][3], json!({"topic": "com.temp", "retained": true}));
    assert_eq!(got[2][3]["topic"], "com.hum");
    assert_eq!(
        got[2][3]["publisher"], p_id,
        "a disclosed publisher stays disclosed"
    );
    assert_eq!(got[2][3]["retained"], true);
    h.send(
        s,
        r#"[32, 8, {"get_retained": true, "match": "wildcard"}, ".hum"]"#,
    );
    let got = h.take(s);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1][4], json!([50]));
    // A subscriber asking for publishers gets it for a retained event too.
    let (s2, _) = h.join();
    h.send(
        s2,
        r#"[32, 1, {"get_retained": true, "disclose_publisher": true}, "com.temp"]"#,
    );
    assert_eq!(h.take(s2)[1][3]["publisher"], p_id);
}

/// `x_retain_clear` (with `retain`) forgets the topic's retained event: the publication itself is delivered as
/// usual, but later subscribers asking for retained events get none (MQTT's retained message with an empty
/// payload). Empty patterns (MQTT's `#` and `+`) are subscribable.
#[test]
fn retained_events_can_be_cleared_and_empty_patterns_subscribed() {
    let mut h = Harness::new();
    let (p, _) = h.join();
    h.send(p, r#"[16, 1, {"retain": true}, "com.temp", [20]]"#);
    h.send(p, r#"[16, 2, {"retain": true}, "com.hum", [50]]"#);
    let (live, _) = h.join();
    subscribe(&mut h, live, "{}", "com.temp");
    h.send(
        p,
        r#"[16, 3, {"retain": true, "x_retain_clear": true}, "com.temp", []]"#,
    );
    assert_eq!(h.take_one(live)[4], json!([]), "delivered as usual");
    let (s, _) = h.join();
    h.send(s, r#"[32, 4, {"get_retained": true}, "com.temp"]"#);
    assert_eq!(h.take(s).len(), 1, "SUBSCRIBED and no retained event");
    // (The empty prefix matches the router's `wamp.` meta events too: they are left out here.)
    let take = |h: &mut Harness| -> Vec<Value> {
        (h.take(s).into_iter())
            .filter(|m| {
                !m[3]["topic"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("wamp."))
            })
            .collect()
    };
    h.send(
        s,
        r#"[32, 5, {"get_retained": true, "match": "prefix"}, ""]"#,
    );
    let got = take(&mut h);
    assert_eq!(
        got.len(),
        2,
        "the other topic's retained event stays: {got:?}"
    );
    assert_eq!(got[1][3]["topic"], "com.hum");
    h.send(
        s,
        r#"[32, 6, {"get_retained": true, "match": "wildcard"}, ""]"#,
    );
    assert_eq!(take(&mut h).len(), 1, "no one-component topic retained");
    h.send(p, r#"[16, 7, {}, "solo", [1]]"#);
    assert_eq!(
        take(&mut h).len(),
        2,
        "prefix '' and wildcard '' both match 'solo'"
    );
    h.send(p, r#"[16, 8, {}, "a.b", [1]]"#);
    assert_eq!(take(&mut h).len(), 1, "only prefix '' matches 'a.b'");
    h.send(s, r#"[32, 9, {}, ""]"#);
    assert_eq!(h.take_one(s)[0], 8, "no exact subscription to ''");
}

#[test]
fn retained_events_respect_eligibility_at_publication() {
    let mut h = Harness::new();
    let (p, p_id) = h.join();
    let (a, a_id) = h.join();
    let (b, _) = h.join();
    h.send(
        p,
        &format!(r#"[16, 1, {{"retain": true, "eligible": [{a_id}, {p_id}]}}, "com.secret", [1]]"#),
    );
    h.send(p, r#"[16, 2, {"retain": true}, "com.mine", [2]]"#);
    h.send(
        p,
        r#"[16, 3, {"retain": true, "exclude_me": false}, "com.ours", [3]]"#,
    );
    let ask = |h: &mut Harness, conn: usize, topic: &str| -> usize {
        h.send(
            conn,
            &format!(r#"[32, 9, {{"get_retained": true}}, "{topic}"]"#),
        );
        h.take(conn).len() - 1
    };
    assert_eq!(ask(&mut h, a, "com.secret"), 1);
    assert_eq!(ask(&mut h, b, "com.secret"), 0, "b was not eligible");
    assert_eq!(
        ask(&mut h, p, "com.secret"),
        0,
        "exclude_me kept it from the publisher"
    );
    assert_eq!(ask(&mut h, p, "com.mine"), 0);
    assert_eq!(ask(&mut h, p, "com.ours"), 1);
    assert_eq!(ask(&mut h, b, "com.mine"), 1);
}

#[test]
fn retention_is_bounded_per_realm() {
    let mut config = kreisel_engine::RouterConfig::default();
    config.realms[0].retained_max = 2;
    let mut h = Harness::with_config(config);
    let (p, _) = h.join();
    for topic in ["t.1", "t.2", "t.1", "t.3"] {
        h.send(
            p,
            &format!(r#"[16, 1, {{"retain": true}}, "{topic}", ["{topic}"]]"#),
        );
    }
    let (s, _) = h.join();
    h.send(
        s,
        r#"[32, 1, {"get_retained": true, "match": "prefix"}, "t."]"#,
    );
    let payloads: Vec<Value> = h
        .take(s)
        .into_iter()
        .skip(1)
        .map(|e| e[4][0].clone())
        .collect();
    assert_eq!(
        payloads,
        [json!("t.1"), json!("t.3")],
        "t.2 was retained longest ago"
    );
    assert_eq!(h.router.stats().retained_evicted, 1);
}

#[test]
fn payload_passthru_publications_reach_subscribers_untouched() {
    let mut h = Harness::new();
    let publisher_roles =
        r#"{"publisher": {"features": {"payload_passthru_mode": true}}, "subscriber": {}}"#;
    let (s, _) = h.join();
    let (p, _) = h.join_with("realm1", publisher_roles);
    let sub = subscribe(&mut h, s, "{}", "com.mqtt");
    let wild = subscribe(&mut h, s, r#"{"match": "wildcard"}"#, "com.");
    h.send(
        p,
        r#"[16, 1, {"acknowledge": true, "ppt_scheme": "mqtt", "ppt_serializer": "native", "retain": true}, "com.mqtt", ["\u0000AQID"]]"#,
    );
    assert_eq!(h.take_one(p)[0], 17);
    let mut events = h.take(s);
    events.sort_by_key(|e| e[1] != sub);
    assert_eq!(
        events[0][3],
        json!({"ppt_scheme": "mqtt", "ppt_serializer": "native"})
    );
    assert_eq!(events[0][4], json!(["\u{0}AQID"]));
    assert_eq!(events[1][1], wild);
    assert_eq!(
        events[1][3],
        json!({"topic": "com.mqtt", "ppt_scheme": "mqtt", "ppt_serializer": "native"})
    );
    // autobahn's payload transparency form, and the retained copy keeps the attributes too.
    h.send(p, r#"[16, 2, {"enc_algo": "cryptobox", "enc_serializer": "msgpack"}, "com.mqtt", "\u0000gqVj"]"#);
    let events = h.take(s);
    assert_eq!(events.len(), 2);
    assert!(events
        .iter()
        .all(|e| e[4] == json!("\u{0}gqVj") && e[3]["enc_algo"] == "cryptobox"));
    let (late, _) = h.join();
    h.send(late, r#"[32, 1, {"get_retained": true}, "com.mqtt"]"#);
    let got = h.take(late);
    assert_eq!(
        got[1][3],
        json!({"ppt_scheme": "mqtt", "ppt_serializer": "native", "retained": true})
    );
    // Invalid attributes: option_not_allowed; passthru from a publisher that did not announce it: ABORT.
    h.send(
        p,
        r#"[16, 3, {"acknowledge": true, "ppt_scheme": "mine"}, "com.mqtt", ["\u0000AQID"]]"#,
    );
    assert_eq!(h.take_one(p)[4], "wamp.error.option_not_allowed");
    h.send(
        s,
        r#"[16, 3, {"ppt_scheme": "mqtt"}, "com.mqtt", ["\u0000AQID"]]"#,
    );
    assert_eq!(h.take_one(s)[2], "wamp.error.protocol_violation");
    h.assert_quiet();
}
