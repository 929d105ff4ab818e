//! Authentication (ticket, WAMP-CRA plain and salted, cryptosign, anonymous), its failures and timeout, and
//! authorization by role, driven through the sans-IO engine.

mod common;

use base64::Engine as _;
use common::{Harness, PLAIN_ROLES};
use kreisel_engine::auth::{derive_key, hex, unhex};
use kreisel_engine::uri::MatchPolicy;
use kreisel_engine::{
    AuthConfig, PermissionConfig, Perms, PrincipalConfig, RealmConfig, RoleConfig, RouterConfig,
    Salt, WampCraSecret,
};
use ring::hmac;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};

const CLIENT_SEED: &str = "4d57d97a68f555696620a6d849c0ce582568518d729eb753dc7c732de2804510";

fn salt() -> Salt {
    Salt {
        salt: "salt123".into(),
        iterations: 100,
        keylen: 32,
    }
}

fn keypair() -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&unhex(CLIENT_SEED).unwrap()).unwrap()
}

fn principal(authid: &str, role: &str) -> PrincipalConfig {
    PrincipalConfig {
        authid: authid.into(),
        role: role.into(),
        ticket: None,
        wampcra: None,
        cryptosign: vec![],
        scram: None,
    }
}

/// Realm `secure`: no anonymous; alice (ticket), carol (WAMP-CRA), bob (salted WAMP-CRA), dev (cryptosign);
/// roles `user` (call and subscribe under com.app., publish to com.app.chat disclosing the publisher, call
/// com.app.audit disclosing the caller) and `backend` (everything).
fn config() -> RouterConfig {
    let mut config = RouterConfig::default();
    let rule = |uri: &str, policy, allow| PermissionConfig {
        uri: uri.into(),
        policy,
        allow,
    };
    let pubkey: [u8; 32] = keypair().public_key().as_ref().try_into().unwrap();
    config.realms.push(RealmConfig {
        auth: AuthConfig {
            anonymous_role: None,
            principals: vec![
                PrincipalConfig {
                    ticket: Some("open sesame".into()),
                    ..principal("alice", "user")
                },
                PrincipalConfig {
                    wampcra: Some(WampCraSecret {
                        secret: "carols secret".into(),
                        salt: None,
                    }),
                    ..principal("carol", "backend")
                },
                PrincipalConfig {
                    wampcra: Some(WampCraSecret {
                        secret: derive_key("hunter2", &salt()),
                        salt: Some(salt()),
                    }),
                    ..principal("bob", "backend")
                },
                PrincipalConfig {
                    cryptosign: vec![pubkey],
                    ..principal("dev", "backend")
                },
            ],
            roles: Some(vec![
                RoleConfig {
                    name: "user".into(),
                    permissions: vec![
                        rule(
                            "com.app.",
                            MatchPolicy::Prefix,
                            Perms::CALL | Perms::SUBSCRIBE,
                        ),
                        rule(
                            "com.app.chat",
                            MatchPolicy::Exact,
                            Perms::PUBLISH | Perms::DISCLOSE_PUBLISHER,
                        ),
                        rule(
                            "com.app.audit",
                            MatchPolicy::Exact,
                            Perms::CALL | Perms::DISCLOSE_CALLER,
                        ),
                    ],
                    authorizer: None,
                },
                RoleConfig {
                    name: "backend".into(),
                    permissions: vec![rule("", MatchPolicy::Prefix, Perms::ACTIONS)],
                    authorizer: None,
                },
            ]),
            authenticators: Vec::new(),
        },
        ..RealmConfig::new("secure")
    });
    config.epoch_unix_ms = 1_403_455_001_000;
    config
}

fn hello(h: &mut Harness, details: Value) -> (usize, Value) {
    let conn = h.open();
    let mut details = details;
    details["roles"] = serde_json::from_str(PLAIN_ROLES).unwrap();
    h.send(conn, &json!([1, "secure", details]).to_string());
    let reply = h.take_one(conn);
    (conn, reply)
}

fn authenticate(h: &mut Harness, conn: usize, signature: &str) -> Value {
    h.send(conn, &json!([5, signature, {}]).to_string());
    h.take_one(conn)
}

fn assert_abort(reply: &Value, reason: &str) {
    assert_eq!(reply[0], 3, "{reply}");
    assert_eq!(reply[2], reason, "{reply}");
}

fn assert_welcome(reply: &Value, authid: &str, authrole: &str, authmethod: &str) {
    assert_eq!(reply[0], 2, "{reply}");
    let details = &reply[2];
    assert_eq!(details["authid"], authid);
    assert_eq!(details["authrole"], authrole);
    assert_eq!(details["authmethod"], authmethod);
    assert_eq!(details["authprovider"], "static");
}

fn wampcra_signature(key: &[u8], challenge: &str) -> String {
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, key),
        challenge.as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

/// Joins `secure` as alice (role `user`) by ticket.
fn join_alice(h: &mut Harness) -> (usize, u64) {
    let (conn, challenge) = hello(h, json!({"authmethods": ["ticket"], "authid": "alice"}));
    assert_eq!(challenge, json!([4, "ticket", {}]));
    let welcome = authenticate(h, conn, "open sesame");
    assert_welcome(&welcome, "alice", "user", "ticket");
    (conn, welcome[1].as_u64().unwrap())
}

/// Joins `secure` as carol (role `backend`) by WAMP-CRA.
fn join_carol(h: &mut Harness) -> usize {
    let (conn, challenge) = hello(h, json!({"authmethods": ["wampcra"], "authid": "carol"}));
    let signature = wampcra_signature(
        b"carols secret",
        challenge[2]["challenge"].as_str().unwrap(),
    );
    assert_eq!(authenticate(h, conn, &signature)[0], 2, "WELCOME");
    conn
}

#[test]
fn ticket_authentication() {
    let mut h = Harness::with_config(config());
    join_alice(&mut h);
    // A wrong ticket: ABORT authentication_failed, transport closed.
    let (conn, _) = hello(
        &mut h,
        json!({"authmethods": ["ticket"], "authid": "alice"}),
    );
    assert_abort(
        &authenticate(&mut h, conn, "open sesame!"),
        "wamp.error.authentication_failed",
    );
    assert!(h.out.closed.contains(&(conn as u64)));
    // An unknown authid is challenged like a known one and fails at AUTHENTICATE.
    let (conn, challenge) = hello(
        &mut h,
        json!({"authmethods": ["ticket"], "authid": "mallory"}),
    );
    assert_eq!(challenge, json!([4, "ticket", {}]));
    assert_abort(
        &authenticate(&mut h, conn, "open sesame"),
        "wamp.error.authentication_failed",
    );
    // Another principal's ticket does not open alice's account.
    assert_eq!(h.router.stats().auth_failures, 2);
}

#[test]
fn wampcra_authentication() {
    let mut h = Harness::with_config(config());
    let (conn, challenge) = hello(
        &mut h,
        json!({"authmethods": ["wampcra"], "authid": "carol"}),
    );
    assert_eq!(challenge[0], 4);
    assert_eq!(challenge[1], "wampcra");
    assert!(
        challenge[2].get("salt").is_none(),
        "no salt for a plain secret"
    );
    let text = challenge[2]["challenge"].as_str().unwrap();
    let fields: Value = serde_json::from_str(text).unwrap();
    assert_eq!(fields["authid"], "carol");
    assert!(
        fields.get("authrole").is_none(),
        "the role is told in WELCOME only"
    );
    assert_eq!(fields["authmethod"], "wampcra");
    assert_eq!(fields["timestamp"], "2014-06-22T16:36:41.000Z");
    let signature = wampcra_signature(b"carols secret", text);
    let welcome = authenticate(&mut h, conn, &signature);
    assert_welcome(&welcome, "carol", "backend", "wampcra");
    // The session ID is the one the challenge announced.
    assert_eq!(welcome[1], fields["session"]);

    // A signature over the challenge with the wrong secret fails.
    let (conn, challenge) = hello(
        &mut h,
        json!({"authmethods": ["wampcra"], "authid": "carol"}),
    );
    let text = challenge[2]["challenge"].as_str().unwrap();
    let signature = wampcra_signature(b"carols secreT", text);
    assert_abort(
        &authenticate(&mut h, conn, &signature),
        "wamp.error.authentication_failed",
    );
    // Replaying an old signature fails: every challenge has a fresh nonce.
    let (conn, _) = hello(
        &mut h,
        json!({"authmethods": ["wampcra"], "authid": "carol"}),
    );
    let old = wampcra_signature(b"carols secret", text);
    assert_abort(
        &authenticate(&mut h, conn, &old),
        "wamp.error.authentication_failed",
    );
    // Not base64 at all.
    let (conn, _) = hello(
        &mut h,
        json!({"authmethods": ["wampcra"], "authid": "carol"}),
    );
    assert_abort(
        &authenticate(&mut h, conn, "%%%"),
        "wamp.error.authentication_failed",
    );
}

#[test]
fn wampcra_salted_secret() {
    let mut h = Harness::with_config(config());
    let (conn, challenge) = hello(&mut h, json!({"authmethods": ["wampcra"], "authid": "bob"}));
    let extra = &challenge[2];
    assert_eq!(extra["salt"], "salt123");
    assert_eq!(extra["iterations"], 100);
    assert_eq!(extra["keylen"], 32);
    // The client derives the key from its password with the announced parameters.
    let key = derive_key("hunter2", &salt());
    let signature = wampcra_signature(key.as_bytes(), extra["challenge"].as_str().unwrap());
    assert_welcome(
        &authenticate(&mut h, conn, &signature),
        "bob",
        "backend",
        "wampcra",
    );
    // An unknown authid gets one of the realm's presentations (carol's: unsalted, bob's: salted), the same at
    // every attempt, and fails later.
    let mut presentations = std::collections::HashSet::new();
    for i in 0..40 {
        let authid = format!("nobody{i}");
        let (_, first) = hello(
            &mut h,
            json!({"authmethods": ["wampcra"], "authid": authid}),
        );
        let (conn, again) = hello(
            &mut h,
            json!({"authmethods": ["wampcra"], "authid": authid}),
        );
        for field in ["salt", "iterations", "keylen"] {
            assert_eq!(first[2][field], again[2][field]);
        }
        if again[2].get("salt").is_some() {
            assert_eq!(again[2]["iterations"], 100);
            assert_eq!(again[2]["keylen"], 32);
            assert_eq!(again[2]["salt"].as_str().unwrap().len(), "salt123".len());
        }
        presentations.insert(again[2].get("salt").is_some());
        let key = derive_key("guess", &salt());
        let signature = wampcra_signature(key.as_bytes(), again[2]["challenge"].as_str().unwrap());
        assert_abort(
            &authenticate(&mut h, conn, &signature),
            "wamp.error.authentication_failed",
        );
    }
    assert_eq!(presentations.len(), 2, "both presentations occur");
}

#[test]
fn cryptosign_authentication() {
    let mut h = Harness::with_config(config());
    let pair = keypair();
    let pubkey = hex(pair.public_key().as_ref());
    // authid optional: the principal is found by its key.
    let (conn, challenge) = hello(
        &mut h,
        json!({"authmethods": ["cryptosign"], "authextra": {"pubkey": pubkey}}),
    );
    assert_eq!(challenge[1], "cryptosign");
    let bytes = unhex(challenge[2]["challenge"].as_str().unwrap()).unwrap();
    assert_eq!(bytes.len(), 32);
    let mut signed = pair.sign(&bytes).as_ref().to_vec();
    signed.extend_from_slice(&bytes);
    assert_welcome(
        &authenticate(&mut h, conn, &hex(&signed)),
        "dev",
        "backend",
        "cryptosign",
    );

    // A signature over something else fails.
    let (conn, challenge) = hello(
        &mut h,
        json!({"authmethods": ["cryptosign"], "authid": "dev", "authextra": {"pubkey": pubkey}}),
    );
    let bytes = unhex(challenge[2]["challenge"].as_str().unwrap()).unwrap();
    let wrong = pair.sign(b"something else");
    assert_abort(
        &authenticate(&mut h, conn, &hex(wrong.as_ref())),
        "wamp.error.authentication_failed",
    );
    assert_eq!(bytes.len(), 32);

    // An unknown key, or a key that is not the named authid's: a challenge like any other (keys cannot be
    // probed), and even a signature by that key fails.
    for details in [
        json!({"authmethods": ["cryptosign"], "authextra": {"pubkey": "00".repeat(32)}}),
        json!({"authmethods": ["cryptosign"], "authid": "alice", "authextra": {"pubkey": pubkey}}),
    ] {
        let (conn, challenge) = hello(&mut h, details);
        assert_eq!(challenge[1], "cryptosign", "{challenge}");
        let bytes = unhex(challenge[2]["challenge"].as_str().unwrap()).unwrap();
        assert_eq!(bytes.len(), 32);
        let signature = pair.sign(&bytes);
        assert_abort(
            &authenticate(&mut h, conn, &hex(signature.as_ref())),
            "wamp.error.authentication_failed",
        );
    }
}

#[test]
fn method_negotiation_and_anonymous() {
    let mut h = Harness::with_config(config());
    // No authmethods means anonymous, which `secure` refuses.
    let (conn, reply) = hello(&mut h, json!({}));
    assert_abort(&reply, "wamp.error.no_auth_method");
    assert!(reply[1]["message"]
        .as_str()
        .unwrap()
        .contains("ticket, wampcra, cryptosign"));
    assert!(h.out.closed.contains(&(conn as u64)));
    // The first method the realm can perform wins, in the client's order; unknown names are skipped.
    let (_, reply) = hello(
        &mut h,
        json!({"authmethods": ["anonymous", "scram", "wampcra", "ticket"], "authid": "alice"}),
    );
    assert_eq!(reply[1], "wampcra");
    // Ticket without an authid cannot work.
    let (_, reply) = hello(&mut h, json!({"authmethods": ["ticket"]}));
    assert_abort(&reply, "wamp.error.no_auth_method");
    // A malformed authid is a protocol violation.
    let (_, reply) = hello(&mut h, json!({"authmethods": ["ticket"], "authid": 7}));
    assert_abort(&reply, "wamp.error.protocol_violation");
    // realm1 keeps its anonymous default, with or without authmethods.
    let conn = h.open();
    h.send(
        conn,
        &json!([1, "realm1", {"roles": {"caller": {}}, "authmethods": ["ticket", "anonymous"], "authid": "x"}])
            .to_string(),
    );
    let welcome = h.take_one(conn);
    assert_eq!(welcome[2]["authmethod"], "anonymous");
    assert_eq!(welcome[2]["authrole"], "anonymous");
}

#[test]
fn authentication_times_out() {
    let mut h = Harness::with_config(config());
    let (conn, _) = hello(
        &mut h,
        json!({"authmethods": ["ticket"], "authid": "alice"}),
    );
    assert_eq!(h.router.poll_timeout(), Some(10_000));
    h.tick(9_999);
    h.assert_quiet();
    h.tick(10_000);
    assert_abort(&h.take_one(conn), "wamp.error.authentication_failed");
    assert!(h.out.closed.contains(&(conn as u64)));
    // An attempt that ended in time leaves nothing due.
    let (conn, _) = hello(
        &mut h,
        json!({"authmethods": ["ticket"], "authid": "alice"}),
    );
    assert_welcome(
        &authenticate(&mut h, conn, "open sesame"),
        "alice",
        "user",
        "ticket",
    );
    h.tick(30_000);
    h.assert_quiet();
}

#[test]
fn only_authenticate_is_accepted_while_authenticating() {
    let mut h = Harness::with_config(config());
    let (conn, _) = hello(
        &mut h,
        json!({"authmethods": ["ticket"], "authid": "alice"}),
    );
    h.send(conn, r#"[16, 1, {}, "com.app.chat", ["early"]]"#);
    assert_abort(&h.take_one(conn), "wamp.error.protocol_violation");
    // A second HELLO too.
    let (conn, _) = hello(
        &mut h,
        json!({"authmethods": ["ticket"], "authid": "alice"}),
    );
    h.send(conn, r#"[1, "secure", {"roles": {"caller": {}}}]"#);
    assert_abort(&h.take_one(conn), "wamp.error.protocol_violation");
    // ABORT from the client just closes.
    let (conn, _) = hello(
        &mut h,
        json!({"authmethods": ["ticket"], "authid": "alice"}),
    );
    h.send(conn, r#"[3, {}, "wamp.close.goodbye_and_out"]"#);
    h.assert_quiet();
    assert!(h.out.closed.contains(&(conn as u64)));
}

#[test]
fn roles_decide_what_a_session_may_do() {
    let mut h = Harness::with_config(config());
    let (alice, alice_id) = join_alice(&mut h);
    let backend = join_carol(&mut h);

    // user: REGISTER and SUBSCRIBE outside com.app. are refused with not_authorized.
    h.send(alice, r#"[64, 1, {}, "com.app.add"]"#);
    let reply = h.take_one(alice);
    assert_eq!(reply[0], 8);
    assert_eq!(reply[4], "wamp.error.not_authorized");
    assert!(reply[5][0].as_str().unwrap().contains("role 'user'"));
    h.send(alice, r#"[32, 2, {}, "org.other"]"#);
    assert_eq!(h.take_one(alice)[4], "wamp.error.not_authorized");
    // Pattern subscriptions are checked on the pattern.
    h.send(alice, r#"[32, 3, {"match": "prefix"}, "com.app."]"#);
    assert_eq!(h.take_one(alice)[0], 33);
    // PUBLISH outside what is allowed: ERROR with acknowledge, silence without.
    h.send(
        alice,
        r#"[16, 4, {"acknowledge": true}, "com.app.news", []]"#,
    );
    assert_eq!(h.take_one(alice)[4], "wamp.error.not_authorized");
    h.send(alice, r#"[16, 5, {}, "com.app.news", []]"#);
    h.assert_quiet();

    // backend may do anything: it registers, alice calls; calls to com.app.audit disclose alice.
    h.send(backend, r#"[64, 1, {}, "com.app.add"]"#);
    h.send(backend, r#"[64, 2, {}, "com.app.audit"]"#);
    h.send(backend, r#"[32, 3, {}, "com.app.chat"]"#);
    assert_eq!(h.take(backend).len(), 3);
    h.send(alice, r#"[48, 6, {}, "com.app.add", [1, 2]]"#);
    let invocation = h.take_one(backend);
    assert_eq!(invocation[0], 68);
    assert!(invocation[3].get("caller").is_none(), "{invocation}");
    h.send(alice, r#"[48, 7, {}, "com.app.audit", []]"#);
    let invocation = h.take_one(backend);
    assert_eq!(invocation[3]["caller"], alice_id);
    assert_eq!(invocation[3]["caller_authid"], "alice");
    assert_eq!(invocation[3]["caller_authrole"], "user");
    // Publishing to com.app.chat is allowed, and discloses the publisher.
    h.send(
        alice,
        r#"[16, 8, {"acknowledge": true}, "com.app.chat", ["hi"]]"#,
    );
    assert_eq!(h.take_one(alice)[0], 17);
    let event = h.take_one(backend);
    assert_eq!(event[0], 36);
    assert_eq!(event[3]["publisher_authid"], "alice");
    // A CALL to a procedure the role may not call: not_authorized, even if nobody registered it.
    h.send(alice, r#"[48, 9, {}, "org.other.proc", []]"#);
    assert_eq!(h.take_one(alice)[4], "wamp.error.not_authorized");
    assert_eq!(h.router.stats().not_authorized, 5);
}

#[test]
fn anonymous_sessions_get_their_role() {
    let mut config = config();
    // realm1 with roles: anonymous may only subscribe.
    config.realms[0].auth.roles = Some(vec![RoleConfig {
        name: "anonymous".into(),
        permissions: vec![PermissionConfig {
            uri: "".into(),
            policy: MatchPolicy::Prefix,
            allow: Perms::SUBSCRIBE,
        }],
        authorizer: None,
    }]);
    let mut h = Harness::with_config(config);
    let (conn, _) = h.join();
    h.send(conn, r#"[32, 1, {}, "any.topic"]"#);
    assert_eq!(h.take_one(conn)[0], 33);
    h.send(conn, r#"[64, 2, {}, "any.proc"]"#);
    assert_eq!(h.take_one(conn)[4], "wamp.error.not_authorized");
    // A role the realm does not define (a config the io layer refuses): the join is refused.
    let mut config = RouterConfig::default();
    config.realms[0].auth.roles = Some(vec![]);
    let mut h = Harness::with_config(config);
    let conn = h.open();
    h.send(
        conn,
        &format!(r#"[1, "realm1", {{"roles": {PLAIN_ROLES}}}]"#),
    );
    assert_abort(&h.take_one(conn), "wamp.error.not_authorized");
}

#[test]
fn meta_api_needs_permissions_and_reports_authentication() {
    let mut h = Harness::with_config(config());
    let (alice, alice_id) = join_alice(&mut h);
    // user has no rule for wamp.*: the router's procedures and topics are refused like any other URI.
    h.send(alice, r#"[48, 1, {}, "wamp.session.count", []]"#);
    assert_eq!(h.take_one(alice)[4], "wamp.error.not_authorized");
    h.send(alice, r#"[32, 2, {}, "wamp.session.on_join"]"#);
    assert_eq!(h.take_one(alice)[4], "wamp.error.not_authorized");
    // backend may: it sees alice's authentication in wamp.session.get.
    let backend = join_carol(&mut h);
    h.send(
        backend,
        &json!([48, 3, {}, "wamp.session.get", [alice_id]]).to_string(),
    );
    let result = h.take_one(backend);
    assert_eq!(result[0], 50, "{result}");
    let details = &result[3][0];
    assert_eq!(details["authid"], "alice");
    assert_eq!(details["authrole"], "user");
    assert_eq!(details["authmethod"], "ticket");
    assert_eq!(details["authprovider"], "static");
}

/// A configuration reload replaces principals and roles: joined sessions keep their identity and get the new
/// role's permissions (none when the role is gone, all when the realm drops roles); remembered decisions go with
/// the old roles; attempts in progress are aborted; new principals can authenticate.
#[test]
fn reload_replaces_principals_and_roles() {
    let mut h = Harness::with_config(config());
    let (alice, _) = join_alice(&mut h);
    let publish = |h: &mut Harness, request: u64| {
        h.send(
            alice,
            &json!([16, request, {"acknowledge": true}, "com.app.chat", []]).to_string(),
        );
        h.take_one(alice)
    };
    assert_eq!(
        publish(&mut h, 1)[0],
        17,
        "PUBLISHED: user may publish to com.app.chat"
    );
    // An attempt in progress when the reload comes.
    let (pending, challenge) = hello(
        &mut h,
        json!({"authmethods": ["ticket"], "authid": "alice"}),
    );
    assert_eq!(challenge[0], 4);

    // `user` loses publishing; a new principal `eve` (ticket) appears; `alice` is gone from the principals.
    let mut reloaded = config().realms.pop().unwrap().auth;
    reloaded.principals.retain(|p| p.authid != "alice");
    reloaded.principals.push(PrincipalConfig {
        ticket: Some("eves ticket".into()),
        ..principal("eve", "user")
    });
    let roles = reloaded.roles.as_mut().unwrap();
    roles[0]
        .permissions
        .retain(|rule| rule.uri != "com.app.chat");
    let report = h
        .router
        .handle_auth_reload("secure", &reloaded, &mut h.out)
        .unwrap();
    assert_eq!(report.sessions, 1);
    assert_eq!(report.sessions_without_role, 0);
    assert_eq!(report.attempts_aborted, 1);
    assert_abort(&h.take_one(pending), "wamp.error.authentication_failed");

    // The remembered "allowed" is gone with the old role: alice (still joined) is refused now.
    let refused = publish(&mut h, 2);
    assert_eq!(refused[0], 8, "{refused}");
    assert_eq!(refused[4], "wamp.error.not_authorized");
    // alice can no longer authenticate; eve can.
    let (conn, _) = hello(
        &mut h,
        json!({"authmethods": ["ticket"], "authid": "alice"}),
    );
    assert_abort(
        &authenticate(&mut h, conn, "open sesame"),
        "wamp.error.authentication_failed",
    );
    let (conn, _) = hello(&mut h, json!({"authmethods": ["ticket"], "authid": "eve"}));
    assert_welcome(
        &authenticate(&mut h, conn, "eves ticket"),
        "eve",
        "user",
        "ticket",
    );

    // The role itself removed: its sessions may do nothing.
    let mut without_user = reloaded.clone();
    without_user
        .roles
        .as_mut()
        .unwrap()
        .retain(|role| role.name != "user");
    let report = h
        .router
        .handle_auth_reload("secure", &without_user, &mut h.out)
        .unwrap();
    assert_eq!((report.sessions, report.sessions_without_role), (2, 2));
    h.send(alice, &json!([32, 3, {}, "com.app.news"]).to_string());
    assert_eq!(h.take_one(alice)[4], "wamp.error.not_authorized");

    // No roles at all: everything is allowed again.
    let open = AuthConfig {
        roles: None,
        ..without_user
    };
    h.router
        .handle_auth_reload("secure", &open, &mut h.out)
        .unwrap();
    assert_eq!(publish(&mut h, 4)[0], 17, "PUBLISHED");
    assert!(h
        .router
        .handle_auth_reload("nowhere", &open, &mut h.out)
        .is_none());
}

/// Shards share the secret seed (a ticket check or a decoy must not depend on the shard a client lands on), but
/// never issue the same challenge: a signature captured on one shard cannot be replayed on another.
#[test]
fn shards_sharing_secrets_issue_different_challenges() {
    let pubkey = hex(keypair().public_key().as_ref());
    let mut challenges = Vec::new();
    for shard in 0..3u16 {
        let mut h = Harness::with_config(RouterConfig {
            shard,
            shards: 3,
            ..config()
        });
        for _ in 0..2 {
            let (_, challenge) = hello(
                &mut h,
                json!({"authmethods": ["cryptosign"], "authextra": {"pubkey": pubkey}}),
            );
            assert_eq!(challenge[0], 4, "{challenge}");
            challenges.push(challenge[2]["challenge"].as_str().unwrap().to_owned());
        }
    }
    let distinct: std::collections::HashSet<&String> = challenges.iter().collect();
    assert_eq!(distinct.len(), challenges.len(), "{challenges:?}");
}
