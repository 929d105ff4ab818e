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
