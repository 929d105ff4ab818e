//! What an attack run found, closed in the engine: patterns obey permissions (subscriptions, retained events,
//! registrations), testaments need the right to publish, identities are disclosed only as roles allow, URIs are
//! bounded, and what a session may make the router hold is bounded in bytes.

mod common;

use common::{Harness, PLAIN_ROLES};
use kreisel_engine::uri::MatchPolicy;
use kreisel_engine::{
    AuthConfig, PermissionConfig, Perms, PrincipalConfig, RealmConfig, RoleConfig, RouterConfig,
};
use serde_json::{json, Value};

const FEATURES: &str = r#"{"publisher": {"features": {"publisher_identification": true}},
    "subscriber": {"features": {"pattern_based_subscription": true, "publisher_identification": true}},
    "caller": {"features": {"caller_identification": true}},
    "callee": {"features": {"pattern_based_registration": true, "caller_identification": true}}}"#;

fn rule(uri: &str, policy: MatchPolicy, allow: Perms) -> PermissionConfig {
    PermissionConfig {
        uri: uri.into(),
        policy,
        allow,
    }
}

/// Roles of realm `app`: `frontend` (anonymous sessions) as in the shipped example (call and subscribe under
/// `app.`, nothing under `app.admin.`), plus exact grants; `backend` (principal `svc`, ticket) may do everything.
fn roles(frontend_news: Perms) -> Vec<RoleConfig> {
    use MatchPolicy::*;
    vec![
        RoleConfig {
            name: "frontend".into(),
            permissions: vec![
                rule("app.", Prefix, Perms::CALL | Perms::SUBSCRIBE),
                rule("app.admin.", Prefix, Perms::NONE),
                rule("app.news.", Prefix, frontend_news),
                rule(
                    "app.chat",
                    Exact,
                    Perms::PUBLISH | Perms::SUBSCRIBE | Perms::IDENTIFY_PUBLISHER,
                ),
                rule("app.proc", Exact, Perms::REGISTER),
                rule("dev.status", Exact, Perms::SUBSCRIBE),
                rule("wamp.session.add_testament", Exact, Perms::CALL),
            ],
            authorizer: None,
        },
        RoleConfig {
            name: "backend".into(),
            permissions: vec![rule(
                "",
                Prefix,
                Perms::ACTIONS | Perms::IDENTIFY_CALLER | Perms::IDENTIFY_PUBLISHER,
            )],
            authorizer: None,
        },
    ]
}

fn auth(frontend_news: Perms) -> AuthConfig {
    AuthConfig {
        anonymous_role: Some("frontend".into()),
        principals: vec![PrincipalConfig {
            authid: "svc".into(),
            role: "backend".into(),
            ticket: Some("svc-ticket".into()),
            wampcra: None,
            cryptosign: vec![],
            scram: None,
        }],
        roles: Some(roles(frontend_news)),
        authenticators: Vec::new(),
    }
}

fn config() -> RouterConfig {
    let mut config = RouterConfig::default();
    config.realms.push(RealmConfig {
        auth: auth(Perms::SUBSCRIBE | Perms::PUBLISH),
        ..RealmConfig::new("app")
    });
    config
}

fn harness() -> Harness {
    Harness::with_config(config())
}

/// An anonymous session of realm `app` (role `frontend`).
fn frontend(h: &mut Harness) -> usize {
    h.join_with("app", FEATURES).0
}

/// The ticket principal `svc` of realm `app` (role `backend`).
fn backend(h: &mut Harness) -> usize {
    let conn = h.open();
    h.send(
        conn,
        &format!(
            r#"[1, "app", {{"roles": {FEATURES}, "authmethods": ["ticket"], "authid": "svc"}}]"#
        ),
    );
    assert_eq!(h.take_one(conn)[0], 4, "CHALLENGE");
    h.send(conn, r#"[5, "svc-ticket", {}]"#);
    let welcome = h.take_one(conn);
    assert_eq!(welcome[0], 2, "{welcome}");
    assert_eq!(welcome[2]["authrole"], "backend");
    conn
}

/// SUBSCRIBE and its answer (SUBSCRIBED's subscription ID, or the ERROR's URI).
fn subscribe(h: &mut Harness, conn: usize, topic: &str, options: Value) -> Result<u64, String> {
    h.send(conn, &json!([32, 1, options, topic]).to_string());
    answer(h.take_one(conn))
}

fn answer(reply: Value) -> Result<u64, String> {
    match reply[0].as_u64() {
        Some(8) => Err(reply[4].as_str().unwrap_or_default().to_owned()),
        _ => Ok(reply[2].as_u64().unwrap_or_default()),
    }
}

fn publish(h: &mut Harness, conn: usize, topic: &str, options: Value) {
    h.send(conn, &json!([16, 7, options, topic, [topic]]).to_string());
}

/// The topics of the EVENTs `conn` received (their first argument, which `publish` sets to the topic).
fn events(h: &mut Harness, conn: usize) -> Vec<String> {
    h.take(conn)
        .into_iter()
        .filter(|m| m[0] == 36)
        .map(|m| m[4][0].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn a_prefix_subscription_receives_only_what_the_role_may_subscribe_to() {
    let mut h = harness();
    let (fe, svc) = (frontend(&mut h), backend(&mut h));
    assert!(subscribe(&mut h, fe, "app.", json!({"match": "prefix"})).is_ok());
    for topic in [
        "app.admin.users",
        "app.news.1",
        "app.adminx",
        "app.admin.x.y",
    ] {
        publish(&mut h, svc, topic, json!({}));
    }
    // app.adminx is under app. (allowed); app.admin.* is not.
    assert_eq!(events(&mut h, fe), ["app.news.1", "app.adminx"]);
}

#[test]
fn a_pattern_allowed_nowhere_is_refused() {
    let mut h = harness();
    let fe = frontend(&mut h);
    for (topic, policy) in [
        ("app.admin.", "prefix"),
        ("app.admin..x", "wildcard"),
        ("org.", "prefix"),
    ] {
        assert_eq!(
            subscribe(&mut h, fe, topic, json!({"match": policy})),
            Err("wamp.error.not_authorized".into()),
            "{topic}"
        );
    }
    assert!(subscribe(&mut h, fe, "app.news.", json!({"match": "prefix"})).is_ok());
}

#[test]
fn an_exact_grant_used_as_a_pattern_reaches_only_that_uri() {
    let mut h = harness();
    let (fe, svc) = (frontend(&mut h), backend(&mut h));
    assert!(subscribe(&mut h, fe, "dev.status", json!({"match": "prefix"})).is_ok());
    assert!(subscribe(&mut h, fe, "dev.", json!({"match": "wildcard"})).is_ok());
    for topic in ["dev.status", "dev.status2", "dev.statusx.y", "dev.other"] {
        publish(&mut h, svc, topic, json!({}));
    }
    // Once per matching subscription (prefix and wildcard), and only dev.status.
    assert_eq!(events(&mut h, fe), ["dev.status", "dev.status"]);
}

#[test]
fn get_retained_does_not_leak_what_the_role_may_not_subscribe_to() {
    let mut h = harness();
    let svc = backend(&mut h);
    for topic in ["app.admin.users", "app.news.1"] {
        publish(&mut h, svc, topic, json!({"retain": true}));
    }
    let fe = frontend(&mut h);
    let options = json!({"match": "prefix", "get_retained": true});
    assert!(subscribe_keeping_rest(&mut h, fe, "app.", options).is_ok());
    assert_eq!(events(&mut h, fe), ["app.news.1"]);
}

/// SUBSCRIBE and its answer, leaving what followed it (retained events) to be taken.
fn subscribe_keeping_rest(
    h: &mut Harness,
    conn: usize,
    topic: &str,
    options: Value,
) -> Result<u64, String> {
    h.send(conn, &json!([32, 1, options, topic]).to_string());
    let mut messages = h.take(conn);
    let first = messages.remove(0);
    for m in messages {
        h.out.sent.push((conn as u64, m));
    }
    answer(first)
}

#[test]
fn a_pattern_registration_takes_only_calls_the_role_may_register() {
    let mut h = harness();
    let (fe, svc) = (frontend(&mut h), backend(&mut h));
    h.send(fe, r#"[64, 1, {"match": "prefix"}, "app.proc"]"#);
    assert_eq!(h.take_one(fe)[0], 65, "REGISTERED");
    h.send(fe, r#"[64, 2, {"match": "prefix"}, "app.admin."]"#);
    assert_eq!(h.take_one(fe)[4], "wamp.error.not_authorized");
    // app.proc goes to the frontend; app.procx would have matched its prefix, but the role may not take it.
    h.send(svc, r#"[48, 10, {}, "app.proc", ["secret"]]"#);
    assert_eq!(h.take_one(fe)[0], 68, "INVOCATION");
    h.send(svc, r#"[48, 11, {}, "app.procx", ["secret"]]"#);
    assert_eq!(h.take_one(svc)[4], "wamp.error.no_such_procedure");
    h.assert_quiet();
    // A less specific registration the backend holds gets the call instead.
    h.send(svc, r#"[64, 3, {"match": "prefix"}, "app."]"#);
    assert_eq!(h.take_one(svc)[0], 65);
    h.send(svc, r#"[48, 12, {}, "app.procx", ["secret"]]"#);
    let invocation = h.take_one(svc);
    assert_eq!(invocation[0], 68, "{invocation}");
    assert_eq!(invocation[3]["procedure"], "app.procx");
    h.assert_quiet();
}

#[test]
fn testaments_need_the_right_to_publish() {
    let mut h = harness();
    let (fe, watcher) = (frontend(&mut h), backend(&mut h));
    assert!(subscribe(&mut h, watcher, "app.", json!({"match": "prefix"})).is_ok());
    h.send(
        fe,
        r#"[48, 1, {}, "wamp.session.add_testament", ["app.admin.alarm", ["gone"], {}]]"#,
    );
    assert_eq!(h.take_one(fe)[4], "wamp.error.not_authorized");
    h.send(
        fe,
        r#"[48, 2, {}, "wamp.session.add_testament", ["app.news.gone", ["gone"], {}]]"#,
    );
    assert_eq!(h.take_one(fe)[0], 50, "RESULT");
    h.close(fe);
    assert_eq!(events(&mut h, watcher), ["gone"]);
}

#[test]
fn a_testament_the_role_may_no_longer_publish_is_dropped() {
    let mut h = harness();
    let (fe, watcher) = (frontend(&mut h), backend(&mut h));
    assert!(subscribe(&mut h, watcher, "app.", json!({"match": "prefix"})).is_ok());
    h.send(
        fe,
        r#"[48, 2, {}, "wamp.session.add_testament", ["app.news.gone", ["gone"], {}]]"#,
    );
    assert_eq!(h.take_one(fe)[0], 50, "RESULT");
    let report = h
        .router
        .handle_auth_reload("app", &auth(Perms::SUBSCRIBE), &mut h.out)
        .unwrap();
    assert_eq!(report.sessions, 2);
    let before = h.router.stats().not_authorized;
    h.close(fe);
    assert_eq!(events(&mut h, watcher), Vec::<String>::new());
    assert_eq!(h.router.stats().not_authorized, before + 1);
}

#[test]
fn a_reload_restricts_existing_subscriptions() {
    let mut h = harness();
    let (fe, svc) = (frontend(&mut h), backend(&mut h));
    assert!(subscribe(&mut h, fe, "app.news.a", json!({})).is_ok());
    assert!(subscribe(&mut h, fe, "app.news.", json!({"match": "prefix"})).is_ok());
    publish(&mut h, svc, "app.news.a", json!({}));
    assert_eq!(events(&mut h, fe), ["app.news.a", "app.news.a"]);
    let report = h
        .router
        .handle_auth_reload("app", &auth(Perms::PUBLISH), &mut h.out)
        .unwrap();
    assert_eq!(report.memberships_restricted, 2);
    publish(&mut h, svc, "app.news.a", json!({}));
    assert_eq!(events(&mut h, fe), Vec::<String>::new());
    // And back.
    let report = h
        .router
        .handle_auth_reload("app", &auth(Perms::SUBSCRIBE), &mut h.out)
        .unwrap();
    assert_eq!(report.memberships_restricted, 0);
    publish(&mut h, svc, "app.news.a", json!({}));
    assert_eq!(events(&mut h, fe), ["app.news.a", "app.news.a"]);
}

#[test]
fn identification_requests_need_the_role_s_permission() {
    let mut h = harness();
    let (fe, svc) = (frontend(&mut h), backend(&mut h));
    let disclose = json!({"disclose_publisher": true});
    assert_eq!(
        subscribe(&mut h, fe, "app.news.x", disclose.clone()),
        Err("wamp.error.option_not_allowed".into())
    );
    assert!(subscribe(&mut h, fe, "app.chat", disclose.clone()).is_ok());
    publish(&mut h, svc, "app.chat", json!({}));
    let event = h.take_one(fe);
    assert_eq!(event[3]["publisher_authrole"], "backend", "{event}");
    // A callee's request to be told its callers: the frontend has no such permission.
    h.send(fe, r#"[64, 5, {"disclose_caller": true}, "app.proc"]"#);
    assert_eq!(h.take_one(fe)[4], "wamp.error.option_not_allowed");
    h.send(fe, r#"[64, 6, {}, "app.proc"]"#);
    assert_eq!(h.take_one(fe)[0], 65);
    // The backend may ask.
    h.send(svc, r#"[64, 7, {"disclose_caller": true}, "svc.proc"]"#);
    assert_eq!(h.take_one(svc)[0], 65);
}

#[test]
fn uris_are_bounded_before_any_lookup() {
    let mut config = RouterConfig::default();
    config.limits.uri_max = 64;
    config.limits.uri_components_max = 4;
    let mut h = Harness::with_config(config);
    let (a, _) = h.join_with("realm1", FEATURES);
    let long = format!("com.{}", "a".repeat(100));
    for (options, topic) in [
        (json!({}), long.as_str()),
        (json!({"match": "prefix"}), long.as_str()),
        (json!({"match": "wildcard"}), "a.b.c.d.e"),
        (json!({"match": "wildcard"}), "...."),
    ] {
        assert_eq!(
            subscribe(&mut h, a, topic, options),
            Err("wamp.error.invalid_uri".into()),
            "{topic}"
        );
    }
    publish(&mut h, a, &long, json!({"acknowledge": true}));
    let error = h.take_one(a);
    assert_eq!(error[4], "wamp.error.invalid_uri");
    let text = error[5][0].as_str().unwrap();
    assert!(
        text.contains("limits.uri_max") && text.len() < 200,
        "{text}"
    );
    h.send(a, r#"[48, 1, {}, "a.b.c.d.e", []]"#);
    let error = h.take_one(a);
    assert_eq!(error[4], "wamp.error.invalid_uri");
    assert!(error[5][0].as_str().unwrap().contains("uri_components_max"));
}

#[test]
fn subscriptions_and_registrations_are_bounded_in_bytes_per_session() {
    let mut config = RouterConfig::default();
    config.limits.uri_bytes_per_session_max = 4096;
    let mut h = Harness::with_config(config);
    let (a, _) = h.join_with("realm1", FEATURES);
    let cost = kreisel_engine::uri::footprint("com.topic.00", MatchPolicy::Exact);
    let fits = 4096 / cost;
    let mut ids = Vec::new();
    for i in 0..fits {
        ids.push(subscribe(&mut h, a, &format!("com.topic.{i:02}"), json!({})).unwrap());
    }
    assert_eq!(
        subscribe(&mut h, a, "com.topic.xx", json!({})),
        Err("kreisel.error.limit_exceeded".into())
    );
    h.send(a, r#"[64, 1, {}, "com.proc"]"#);
    assert_eq!(h.take_one(a)[4], "kreisel.error.limit_exceeded");
    // Subscribing again to a held subscription costs nothing; leaving one frees its bytes.
    assert_eq!(subscribe(&mut h, a, "com.topic.00", json!({})), Ok(ids[0]));
    h.send(a, &format!("[34, 9, {}]", ids[0]));
    assert_eq!(h.take_one(a)[0], 35);
    assert!(subscribe(&mut h, a, "com.topic.xx", json!({})).is_ok());
}

#[test]
fn testaments_are_bounded_in_bytes_per_session() {
    let mut config = RouterConfig::default();
    config.limits.testament_bytes_per_session_max = 1000;
    let mut h = Harness::with_config(config);
    let (a, _) = h.join_with("realm1", PLAIN_ROLES);
    let blob = "x".repeat(400);
    let add =
        format!(r#"[48, 1, {{}}, "wamp.session.add_testament", ["com.gone", ["{blob}"], {{}}]]"#);
    h.send(a, &add);
    assert_eq!(h.take_one(a)[0], 50);
    h.send(a, &add);
    assert_eq!(h.take_one(a)[0], 50);
    h.send(a, &add);
    assert_eq!(h.take_one(a)[4], "kreisel.error.limit_exceeded");
    h.send(a, r#"[48, 2, {}, "wamp.session.flush_testaments", [], {}]"#);
    assert_eq!(h.take_one(a)[0], 50);
    h.send(a, &add);
    assert_eq!(h.take_one(a)[0], 50);
}

/// A testament is stored as the bytes it arrived as and published in every subscriber's serializer.
#[test]
fn a_testament_reaches_subscribers_of_other_serializers() {
    use kreisel_codec::Serializer;
    let mut h = harness();
    let watcher = backend(&mut h);
    assert!(subscribe(&mut h, watcher, "app.news.gone", json!({})).is_ok());
    let fe = h.open_with(Serializer::MsgPack);
    let hello = json!([1, "app", {"roles": {"caller": {}, "publisher": {}}}]);
    h.send_as(fe, Serializer::MsgPack, &hello);
    assert_eq!(h.take(fe).len(), 1, "WELCOME");
    let add = json!([48, 1, {}, "wamp.session.add_testament",
        ["app.news.gone", [1, "two", {"three": 3.5}, null], {"k": [true]}]]);
    h.send_as(fe, Serializer::MsgPack, &add);
    assert_eq!(h.take(fe).len(), 1, "RESULT");
    h.close(fe);
    let event = h.take_one(watcher);
    assert_eq!(event[4], json!([1, "two", {"three": 3.5}, null]));
    assert_eq!(event[5], json!({"k": [true]}));
}
