//! Sessions the router's own code drives (`Router::join_trusted`, used by the HTTP bridge): they join without
//! credentials as a configured authid and role, and are then authorized like any other session.

mod common;

use common::Harness;
use kreisel_engine::uri::MatchPolicy;
use kreisel_engine::{AuthConfig, PermissionConfig, Perms, RealmConfig, RoleConfig, RouterConfig};
use serde_json::json;

/// realm1 (open) and `secure`: no anonymous access, role `publisher` may publish under com.app. only.
fn config() -> RouterConfig {
    let mut config = RouterConfig::default();
    config.realms.push(RealmConfig {
        auth: AuthConfig {
            anonymous_role: None,
            principals: vec![],
            roles: Some(vec![RoleConfig {
                name: "publisher".into(),
                permissions: vec![PermissionConfig {
                    uri: "com.app.".into(),
                    policy: MatchPolicy::Prefix,
                    allow: Perms::PUBLISH,
                }],
            }]),
        },
        ..RealmConfig::new("secure")
    });
    config
}

/// Opens a connection and joins it trusted; returns (conn, result).
fn trusted(h: &mut Harness, realm: &str, authid: &str, role: &str) -> (usize, Result<u64, String>) {
    let conn = h.open();
    let handle = h.handles[conn];
    let result = h
        .router
        .join_trusted(handle, (realm, authid, role), 0, &mut h.out)
        .map(|id| id.get());
    (conn, result)
}

#[test]
fn a_trusted_session_joins_with_its_role_and_is_authorized_by_it() {
    let mut h = Harness::with_config(config());
    let (bridge, joined) = trusted(&mut h, "secure", "http-bridge", "publisher");
    let id = joined.expect("joins");
    let welcome = h.take_one(bridge);
    assert_eq!(welcome[0], 2);
    assert_eq!(welcome[1], id);
    assert_eq!(welcome[2]["authid"], "http-bridge");
    assert_eq!(welcome[2]["authrole"], "publisher");
    assert_eq!(welcome[2]["authmethod"], "trusted");
    let info = h.router.session_info(h.handles[bridge]).expect("joined");
    assert_eq!((info.realm, info.authmethod), ("secure", "trusted"));
    // Allowed: an acknowledged publication.
    h.send(
        bridge,
        r#"[16, 1, {"acknowledge": true}, "com.app.news", ["hello"]]"#,
    );
    assert_eq!(h.take_one(bridge)[0], 17, "PUBLISHED");
    // Not allowed by the role.
    h.send(bridge, r#"[16, 2, {"acknowledge": true}, "com.other", []]"#);
    let error = h.take_one(bridge);
    assert_eq!(error[0], 8);
    assert_eq!(error[4], "wamp.error.not_authorized");
    h.send(bridge, r#"[48, 3, {}, "com.app.rpc", []]"#);
    assert_eq!(h.take_one(bridge)[4], "wamp.error.not_authorized");
}

#[test]
fn trusted_joins_are_refused_with_a_reason() {
    let mut h = Harness::with_config(config());
    let (_, result) = trusted(&mut h, "nowhere", "a", "publisher");
    assert!(result.unwrap_err().contains("no realm 'nowhere'"));
    let (_, result) = trusted(&mut h, "secure", "a", "admin");
    assert!(result.unwrap_err().contains("role 'admin'"));
    // A realm without roles takes any role name.
    let (conn, result) = trusted(&mut h, "realm1", "a", "whatever");
    assert!(result.is_ok());
    h.take(conn);
    // Joined already: refused.
    let handle = h.handles[conn];
    let again = h
        .router
        .join_trusted(handle, ("realm1", "a", "whatever"), 0, &mut h.out);
    assert!(again.is_err());
    // A session that sent HELLO is not waiting to join.
    let conn = h.open();
    h.send(
        conn,
        r#"[1, "secure", {"roles": {"caller": {}}, "authmethods": ["ticket"], "authid": "x"}]"#,
    );
    h.take(conn);
    let handle = h.handles[conn];
    assert!(h
        .router
        .join_trusted(handle, ("secure", "a", "publisher"), 0, &mut h.out)
        .is_err());
    h.assert_quiet();
}

#[test]
fn the_meta_api_shows_trusted_sessions() {
    let mut h = Harness::with_config(config());
    let (_, result) = trusted(&mut h, "realm1", "http-caller", "bridge");
    let id = result.expect("joins");
    h.out.sent.clear();
    let (conn, _) = h.join();
    h.send(
        conn,
        &json!([48, 1, {}, "wamp.session.get", [id]]).to_string(),
    );
    let result = h.take_one(conn);
    assert_eq!(result[0], 50, "{result}");
    assert_eq!(result[3][0]["authid"], "http-caller");
    assert_eq!(result[3][0]["authmethod"], "trusted");
}
