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
