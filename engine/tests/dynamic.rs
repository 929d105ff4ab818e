//! WAMP-SCRAM against static principals, dynamic authenticators and dynamic authorizers, driven through the
//! sans-IO engine on one shard (`shards.rs` has them across shards): what the authenticator or authorizer is
//! called with, every way it can answer (well, wrongly, late, never, not at all), the bounds, and the order of
//! requests that wait for an authorizer.

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::{Harness, PLAIN_ROLES};
use kreisel_engine::auth::{derive_key, hex};
use kreisel_engine::scram::{Credential, Kdf};
use kreisel_engine::{
    AuthConfig, AuthenticatorConfig, AuthorizerConfig, CacheScope, Method, Patterns,
    PrincipalConfig, RealmConfig, RoleConfig, RouterConfig, Salt, TransportInfo,
};
use ring::hmac;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};

const SALT: &[u8] = b"a-salt-16-octets";
const ITERATIONS: u32 = 64;
const CLIENT_NONCE: &str = "egVDf3DMJh0AAAAAAAAAAA==";
const CALLEE: &str = r#"{"callee": {"features": {"call_canceling": true}}, "caller": {}, "publisher": {}, "subscriber": {}}"#;

fn authenticator(methods: &[Method], procedure: &str) -> AuthenticatorConfig {
    AuthenticatorConfig {
        methods: methods.to_vec(),
        procedure: procedure.into(),
        realm: Some("auth".into()),
        timeout_ms: 1000,
        concurrency_max: 2,
    }
}

fn authorizer(procedure: &str, cache: CacheScope, patterns: Patterns) -> AuthorizerConfig {
    AuthorizerConfig {
        procedure: procedure.into(),
        realm: Some("auth".into()),
        timeout_ms: 1000,
        concurrency_max: 4,
        cache,
        patterns,
    }
}

fn role(name: &str, authorizer: Option<AuthorizerConfig>) -> RoleConfig {
    RoleConfig {
        name: name.into(),
        permissions: vec![kreisel_engine::PermissionConfig {
            uri: "".into(),
            policy: kreisel_engine::uri::MatchPolicy::Prefix,
            allow: kreisel_engine::Perms::ACTIONS,
        }],
        authorizer,
    }
}

fn scram_principal(authid: &str, password: &str) -> PrincipalConfig {
    PrincipalConfig {
        authid: authid.into(),
        role: "user".into(),
        ticket: None,
        wampcra: None,
        cryptosign: vec![],
        scram: Some(Credential::derive(password, Kdf::Pbkdf2, SALT, ITERATIONS, None).unwrap()),
    }
}

/// Realms: `auth` (open: where the authenticator and authorizer components live), `app` (dynamic authenticators
/// for every method, roles `user` and `admin`), `scram` (static SCRAM principals), `dapp` (anonymous sessions
/// get role `dyn`, whose authorizer is `com.authz`, remembered per role; `dyn_session`: remembered per session,
/// patterns refused).
fn config() -> RouterConfig {
    let mut config = RouterConfig::default();
    config.realms.push(RealmConfig::new("auth"));
    config.realms.push(RealmConfig {
        auth: AuthConfig {
            anonymous_role: None,
            principals: vec![],
            roles: Some(vec![role("user", None), role("admin", None)]),
            authenticators: vec![
                authenticator(&[Method::Ticket, Method::Anonymous], "com.auth.ticket"),
                authenticator(
                    &[Method::WampCra, Method::Cryptosign, Method::Scram],
                    "com.auth.credential",
                ),
            ],
        },
        ..RealmConfig::new("app")
    });
    config.realms.push(RealmConfig {
        auth: AuthConfig {
            anonymous_role: None,
            principals: vec![
                scram_principal("peter", "hunter2"),
                scram_principal("paula", "pencil"),
            ],
            roles: Some(vec![role("user", None)]),
            authenticators: vec![],
        },
        ..RealmConfig::new("scram")
    });
    config.realms.push(RealmConfig {
        auth: AuthConfig {
            anonymous_role: Some("dyn".into()),
            principals: vec![PrincipalConfig {
                authid: "s".into(),
                role: "dyn_session".into(),
                ticket: Some("t".into()),
                wampcra: None,
                cryptosign: vec![],
                scram: None,
            }],
            roles: Some(vec![
                role(
                    "dyn",
                    Some(authorizer("com.authz", CacheScope::Role, Patterns::Ask)),
                ),
                role(
                    "dyn_session",
                    Some(authorizer(
                        "com.authz",
                        CacheScope::Session,
                        Patterns::Refuse,
                    )),
                ),
            ]),
            authenticators: vec![],
        },
        ..RealmConfig::new("dapp")
    });
    config
}

fn hello(h: &mut Harness, realm: &str, mut details: Value) -> (usize, Vec<Value>) {
    let conn = h.open();
    details["roles"] = serde_json::from_str(PLAIN_ROLES).unwrap();
    h.send(conn, &json!([1, realm, details]).to_string());
    (conn, h.take(conn))
}

/// A component of realm `auth` that registered `procedures`.
fn component(h: &mut Harness, procedures: &[&str]) -> usize {
    let (conn, _) = h.join_with("auth", CALLEE);
    for (i, procedure) in procedures.iter().enumerate() {
        h.send(conn, &json!([64, i + 1, {}, procedure]).to_string());
        assert_eq!(h.take_one(conn)[0], 65, "REGISTERED");
    }
    conn
}

/// The INVOCATION `component` got: (request ID, positional arguments).
fn invocation(h: &mut Harness, component: usize) -> (u64, Value) {
    let invocation = h.take_one(component);
    assert_eq!(invocation[0], 68, "{invocation}");
    (invocation[1].as_u64().unwrap(), invocation[4].clone())
}

fn answer(h: &mut Harness, component: usize, request: u64, result: Value) {
    h.send(component, &json!([70, request, {}, [result]]).to_string());
}

fn assert_abort(reply: &Value, reason: &str) {
    assert_eq!(reply[0], 3, "{reply}");
    assert_eq!(reply[2], reason, "{reply}");
}

fn sign(key: &[u8], challenge: &str) -> String {
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, key),
        challenge.as_bytes(),
    );
    STANDARD.encode(tag.as_ref())
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message)
        .as_ref()
        .to_vec()
}

/// A SCRAM client written from the spec and from crossbar's code (not the router's): the proof for the CHALLENGE
/// extra `challenge`, and the server signature to expect. `spec`: the `wamp-scram` dialect (escaped authid,
/// `c=` with the GS2 header and the binding data), else crossbar's (`c=` empty).
fn scram_proof(
    password: &str,
    authid: &str,
    challenge: &Value,
    spec: bool,
    binding: Option<(&str, &[u8])>,
) -> (String, String) {
    let salt = STANDARD
        .decode(challenge["salt"].as_str().unwrap())
        .unwrap();
    let iterations = challenge["iterations"].as_u64().unwrap() as u32;
    let mut salted = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(iterations).unwrap(),
        &salt,
        password.as_bytes(),
        &mut salted,
    );
    let nonce = challenge["nonce"].as_str().unwrap();
    let channel = if spec {
        let header = match binding {
            None => b"n,,".to_vec(),
            Some((name, data)) => [format!("p={name},,").as_bytes(), data].concat(),
        };
        STANDARD.encode(header)
    } else {
        String::new()
    };
    let user = if spec {
        authid.replace('=', "=3D").replace(',', "=2C")
    } else {
        authid.to_string()
    };
    let auth_message = format!(
        "n={user},r={CLIENT_NONCE},r={nonce},s={},i={iterations},c={channel},r={nonce}",
        challenge["salt"].as_str().unwrap()
    );
    let client_key = hmac_sha256(&salted, b"Client Key");
    let stored_key = ring::digest::digest(&ring::digest::SHA256, &client_key);
    let signature = hmac_sha256(stored_key.as_ref(), auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(signature)
        .map(|(a, b)| a ^ b)
        .collect();
    let server_key = hmac_sha256(&salted, b"Server Key");
    let server_signature = hmac_sha256(&server_key, auth_message.as_bytes());
    (STANDARD.encode(proof), STANDARD.encode(server_signature))
}

// -------------------------------------------------------------------------------------------------------------
// WAMP-SCRAM against static principals

#[test]
fn scram_logins_in_both_dialects() {
    let mut h = Harness::with_config(config());
    for (method, spec, key) in [
        ("wamp-scram", true, "verifier"),
        ("scram", false, "scram_server_signature"),
    ] {
        let details = json!({"authmethods": [method], "authid": "peter", "authextra": {"nonce": CLIENT_NONCE}});
        let (conn, reply) = hello(&mut h, "scram", details.clone());
        let challenge = &reply[0];
        assert_eq!(challenge[0], 4, "{challenge}");
        assert_eq!(challenge[1], method);
        let extra = &challenge[2];
        assert_eq!(
            (extra["kdf"].as_str(), extra["iterations"].as_u64()),
            (Some("pbkdf2"), Some(64))
        );
        assert!(extra.get("memory").is_none(), "no memory for pbkdf2");
        assert_eq!(extra["salt"], STANDARD.encode(SALT));
        let (proof, server_signature) = scram_proof("hunter2", "peter", extra, spec, None);
        let nonce = extra["nonce"].clone();
        h.send(conn, &json!([5, proof, {"nonce": nonce}]).to_string());
        let welcome = h.take_one(conn);
        assert_eq!(welcome[0], 2, "{welcome}");
        assert_eq!(welcome[2]["authid"], "peter");
        assert_eq!(welcome[2]["authrole"], "user");
        assert_eq!(welcome[2]["authmethod"], method);
        assert_eq!(welcome[2]["authprovider"], "static");
        assert_eq!(welcome[2]["authextra"][key], server_signature);
        // A wrong password: ABORT authentication_failed, with the SCRAM error value.
        let (conn, reply) = hello(&mut h, "scram", details);
        let (proof, _) = scram_proof("hunter3", "peter", &reply[0][2], spec, None);
        h.send(
            conn,
            &json!([5, proof, {"nonce": reply[0][2]["nonce"]}]).to_string(),
        );
        let abort = h.take_one(conn);
        assert_abort(&abort, "wamp.error.authentication_failed");
        assert_eq!(abort[1]["scram"], "invalid-proof");
    }
}

#[test]
fn scram_unknown_authids_look_like_known_ones() {
    let mut h = Harness::with_config(config());
    let challenge = |h: &mut Harness, authid: &str| {
        let details = json!({"authmethods": ["scram"], "authid": authid, "authextra": {"nonce": CLIENT_NONCE}});
        let (conn, reply) = hello(h, "scram", details);
        (conn, reply[0].clone())
    };
    let (_, known) = challenge(&mut h, "peter");
    let (conn, unknown) = challenge(&mut h, "mallory");
    let (_, again) = challenge(&mut h, "mallory");
    assert_eq!(unknown[0], 4, "a challenge, like a known authid's");
    let keys = |c: &Value| {
        let mut keys: Vec<String> = c[2].as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&known), keys(&unknown));
    assert_eq!(
        (unknown[2]["kdf"].clone(), unknown[2]["iterations"].clone()),
        (known[2]["kdf"].clone(), known[2]["iterations"].clone())
    );
    assert_eq!(
        STANDARD
            .decode(unknown[2]["salt"].as_str().unwrap())
            .unwrap()
            .len(),
        SALT.len()
    );
    assert_ne!(unknown[2]["salt"], known[2]["salt"]);
    assert_eq!(
        unknown[2]["salt"], again[2]["salt"],
        "the same salt at every attempt"
    );
    // Whatever it answers: the refusal a wrong password gets.
    let (proof, _) = scram_proof("hunter2", "mallory", &unknown[2], false, None);
    h.send(conn, &json!([5, proof, {}]).to_string());
    let abort = h.take_one(conn);
    assert_abort(&abort, "wamp.error.authentication_failed");
    assert_eq!(abort[1]["scram"], "invalid-proof");
    // Without an authid, SCRAM is not offered; without a nonce, the attempt is refused.
    let (_, reply) = hello(&mut h, "scram", json!({"authmethods": ["scram"]}));
    assert_abort(&reply[0], "wamp.error.no_auth_method");
    let (_, reply) = hello(
        &mut h,
        "scram",
        json!({"authmethods": ["wamp-scram"], "authid": "peter"}),
    );
    assert_abort(&reply[0], "wamp.error.authentication_failed");
    assert_eq!(reply[0][1]["scram"], "invalid-encoding");
}

/// `tls-exporter` is offered where `io` says the TLS connection has exporter data; every other binding, and any
/// binding without it, is refused (the client asked for it: it must not get an unbound session).
#[test]
fn scram_channel_binding() {
    let mut h = Harness::with_config(config());
    let exporter = [7u8; 32];
    let conn = h.open();
    h.out.transports.insert(
        conn as u64,
        TransportInfo {
            framing: "websocket",
            channel: "tls",
            peer: "tcp4:127.0.0.1:5000".into(),
            websocket_protocol: Some("wamp.2.json"),
            tls_exporter: Some(exporter),
        },
    );
    let details = json!({"authmethods": ["wamp-scram"], "authid": "paula", "roles": {"caller": {}},
        "authextra": {"nonce": CLIENT_NONCE, "channel_binding": "tls-exporter"}});
    h.send(conn, &json!([1, "scram", details]).to_string());
    let challenge = h.take_one(conn);
    assert_eq!(challenge[0], 4, "{challenge}");
    let binding = Some(("tls-exporter", &exporter[..]));
    let (proof, signature) = scram_proof("pencil", "paula", &challenge[2], true, binding);
    let extra = json!({"nonce": challenge[2]["nonce"], "channel_binding": "tls-exporter", "cbind_data": STANDARD.encode(exporter)});
    h.send(conn, &json!([5, proof, extra]).to_string());
    let welcome = h.take_one(conn);
    assert_eq!(welcome[0], 2, "{welcome}");
    assert_eq!(welcome[2]["authextra"]["verifier"], signature);
    // Another channel's binding data: refused.
    let conn = h.open();
    h.out.transports.insert(
        conn as u64,
        TransportInfo {
            tls_exporter: Some([8; 32]),
            ..TransportInfo::default()
        },
    );
    h.send(conn, &json!([1, "scram", details]).to_string());
    let challenge = h.take_one(conn);
    let (proof, _) = scram_proof("pencil", "paula", &challenge[2], true, binding);
    let extra = json!({"nonce": challenge[2]["nonce"], "channel_binding": "tls-exporter", "cbind_data": STANDARD.encode(exporter)});
    h.send(conn, &json!([5, proof, extra]).to_string());
    let abort = h.take_one(conn);
    assert_abort(&abort, "wamp.error.authentication_failed");
    assert_eq!(abort[1]["scram"], "channel-bindings-dont-match");
    // No TLS (or TLS 1.2), tls-unique, or the crossbar dialect: the binding is refused at HELLO.
    for (method, binding, transport) in [
        ("wamp-scram", "tls-exporter", None),
        ("wamp-scram", "tls-unique", Some([7u8; 32])),
        ("scram", "tls-exporter", Some([7u8; 32])),
    ] {
        let conn = h.open();
        if let Some(exporter) = transport {
            h.out.transports.insert(
                conn as u64,
                TransportInfo {
                    tls_exporter: Some(exporter),
                    ..TransportInfo::default()
                },
            );
        }
        let details = json!({"authmethods": [method], "authid": "paula", "roles": {"caller": {}},
            "authextra": {"nonce": CLIENT_NONCE, "channel_binding": binding}});
        h.send(conn, &json!([1, "scram", details]).to_string());
        let abort = h.take_one(conn);
        assert_abort(&abort, "wamp.error.authentication_failed");
        assert_eq!(
            abort[1]["scram"], "unsupported-channel-binding-type",
            "{method} {binding}"
        );
    }
}

// -------------------------------------------------------------------------------------------------------------
// Dynamic authenticators

#[test]
fn dynamic_ticket_authenticator() {
    let mut h = Harness::with_config(config());
    let auth = component(&mut h, &["com.auth.ticket"]);
    let (conn, reply) = hello(
        &mut h,
        "app",
        json!({"authmethods": ["ticket"], "authid": "joe", "authextra": {"x": 1}}),
    );
    assert_eq!(
        reply,
        [json!([4, "ticket", {}])],
        "a ticket is asked for first"
    );
    h.assert_quiet();
    h.send(conn, r#"[5, "secret ticket", {}]"#);
    let (request, args) = invocation(&mut h, auth);
    assert_eq!(args[0], "app");
    assert_eq!(args[1], "joe");
    let details = &args[2];
    assert_eq!(details["ticket"], "secret ticket");
    assert_eq!(details["authmethod"], "ticket");
    assert_eq!(details["authextra"], json!({"x": 1}));
    assert!(details["session"].as_u64().is_some());
    assert_eq!(
        details["transport"],
        Value::Null,
        "io said nothing about it"
    );
    assert!(h.take(conn).is_empty(), "the client waits");
    // What io tells about the transport (when asked), in crossbar's form.
    let (told, _) = hello(
        &mut h,
        "app",
        json!({"authmethods": ["ticket"], "authid": "joe"}),
    );
    h.out.transports.insert(
        told as u64,
        TransportInfo {
            framing: "rawsocket",
            channel: "tcp",
            peer: "tcp4:127.0.0.1:5000".into(),
            websocket_protocol: None,
            tls_exporter: None,
        },
    );
    h.send(told, r#"[5, "t", {}]"#);
    let (told_request, told_args) = invocation(&mut h, auth);
    assert_eq!(
        told_args[2]["transport"],
        json!({"channel_type": "tcp", "channel_framing": "rawsocket", "channel_serializer": "json",
            "peer": "tcp4:127.0.0.1:5000", "is_server": true, "is_secure": false})
    );
    answer(&mut h, auth, told_request, json!("user"));
    assert_eq!(h.take_one(told)[0], 2);
    answer(
        &mut h,
        auth,
        request,
        json!({"role": "user", "extra": {"color": "blue"}}),
    );
    let welcome = h.take_one(conn);
    assert_eq!(welcome[0], 2, "{welcome}");
    assert_eq!(
        welcome[1], details["session"],
        "the session ID the authenticator was told"
    );
    assert_eq!(welcome[2]["authid"], "joe");
    assert_eq!(welcome[2]["authrole"], "user");
    assert_eq!(welcome[2]["authprovider"], "dynamic");
    assert_eq!(welcome[2]["authextra"], json!({"color": "blue"}));
    let stats = h.router.stats();
    assert_eq!(
        (stats.authenticator_calls, stats.authenticator_failures),
        (2, 0)
    );

    // Answers the authenticator may give, and what the client gets.
    for (result, expected) in [
        (json!("admin"), Ok(("joe", "admin", "app"))),
        (
            json!({"role": "user", "authid": "jim"}),
            Ok(("jim", "user", "app")),
        ),
        (
            json!({"role": "anyone", "realm": "realm1"}),
            Ok(("joe", "anyone", "realm1")),
        ),
        (json!({"authid": "jim"}), Err("wamp.error.no_such_role")),
        (json!({"role": "nobody"}), Err("wamp.error.no_such_role")),
        (
            json!({"role": "user", "realm": "nowhere"}),
            Err("wamp.error.no_such_realm"),
        ),
        (json!(42), Err("wamp.error.authentication_failed")),
        (json!({"role": 7}), Err("wamp.error.authentication_failed")),
        (
            json!({"role": "user", "extra": "not a dict"}),
            Err("wamp.error.authentication_failed"),
        ),
    ] {
        let (conn, _) = hello(
            &mut h,
            "app",
            json!({"authmethods": ["ticket"], "authid": "joe"}),
        );
        h.send(conn, r#"[5, "t", {}]"#);
        let (request, _) = invocation(&mut h, auth);
        answer(&mut h, auth, request, result.clone());
        let reply = h.take_one(conn);
        match expected {
            Ok((authid, authrole, realm)) => {
                assert_eq!(reply[0], 2, "{result}: {reply}");
                assert_eq!(
                    (
                        reply[2]["authid"].as_str(),
                        reply[2]["authrole"].as_str(),
                        reply[2]["realm"].as_str()
                    ),
                    (Some(authid), Some(authrole), Some(realm)),
                    "{result}"
                );
            }
            Err(reason) => assert_abort(&reply, reason),
        }
    }
    // The authenticator refuses with an error of its own: that error, and its message, in ABORT.
    let (conn, _) = hello(
        &mut h,
        "app",
        json!({"authmethods": ["ticket"], "authid": "joe"}),
    );
    h.send(conn, r#"[5, "t", {}]"#);
    let (request, _) = invocation(&mut h, auth);
    h.send(
        auth,
        &json!([
            8,
            68,
            request,
            {},
            "com.example.invalid_ticket",
            ["no such ticket"]
        ])
        .to_string(),
    );
    let abort = h.take_one(conn);
    assert_abort(&abort, "com.example.invalid_ticket");
    assert_eq!(abort[1]["message"], "no such ticket");
    // A second AUTHENTICATE while the authenticator decides is a protocol violation.
    let (conn, _) = hello(
        &mut h,
        "app",
        json!({"authmethods": ["ticket"], "authid": "joe"}),
    );
    h.send(conn, r#"[5, "t", {}]"#);
    let _ = invocation(&mut h, auth);
    h.send(conn, r#"[5, "t", {}]"#);
    assert_abort(&h.take_one(conn), "wamp.error.protocol_violation");
}

#[test]
fn absent_slow_busy_and_oversized_authenticators() {
    let mut h = Harness::with_config(config());
    // Not registered: refused at once, counted.
    let (conn, _) = hello(
        &mut h,
        "app",
        json!({"authmethods": ["ticket"], "authid": "joe"}),
    );
    h.send(conn, r#"[5, "t", {}]"#);
    let abort = h.take_one(conn);
    assert_abort(&abort, "wamp.error.authentication_failed");
    assert!(
        abort[1]["message"]
            .as_str()
            .unwrap()
            .contains("no callee registered"),
        "{abort}"
    );
    assert_eq!(h.router.stats().authenticator_failures, 1);

    let auth = component(&mut h, &["com.auth.ticket"]);
    // Never answering: after the authenticator's timeout (1 s) the client is refused and the authenticator
    // interrupted; its late answer changes nothing.
    let (slow, _) = hello(
        &mut h,
        "app",
        json!({"authmethods": ["ticket"], "authid": "joe"}),
    );
    h.send(slow, r#"[5, "t", {}]"#);
    let (request, _) = invocation(&mut h, auth);
    h.tick(999);
    h.assert_quiet();
    h.tick(1000);
    assert_abort(&h.take_one(slow), "wamp.error.authentication_failed");
    assert_eq!(h.take_one(auth)[0], 69, "INTERRUPT");
    answer(&mut h, auth, request, json!("user"));
    h.assert_quiet();

    // concurrency_max (2): a third attempt while two wait is refused at once.
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let (conn, _) = hello(
            &mut h,
            "app",
            json!({"authmethods": ["ticket"], "authid": "joe"}),
        );
        h.send(conn, r#"[5, "t", {}]"#);
        waiting.push((conn, invocation(&mut h, auth).0));
    }
    let (third, _) = hello(
        &mut h,
        "app",
        json!({"authmethods": ["ticket"], "authid": "joe"}),
    );
    h.send(third, r#"[5, "t", {}]"#);
    let abort = h.take_one(third);
    assert_abort(&abort, "wamp.error.authentication_failed");
    assert!(
        abort[1]["message"]
            .as_str()
            .unwrap()
            .contains("concurrency_max"),
        "{abort}"
    );
    // One of the two goes away: its call ends (INTERRUPT) and makes room.
    h.close(waiting[0].0);
    assert_eq!(h.take_one(auth)[0], 69, "INTERRUPT");
    let (fourth, _) = hello(
        &mut h,
        "app",
        json!({"authmethods": ["ticket"], "authid": "joe"}),
    );
    h.send(fourth, r#"[5, "t", {}]"#);
    let (request, _) = invocation(&mut h, auth);
    // A huge answer: refused.
    answer(
        &mut h,
        auth,
        request,
        json!({"role": "user", "extra": {"blob": "x".repeat(20_000)}}),
    );
    let abort = h.take_one(fourth);
    assert_abort(&abort, "wamp.error.authentication_failed");
    assert!(
        abort[1]["message"]
            .as_str()
            .unwrap()
            .contains("larger than"),
        "{abort}"
    );
    answer(&mut h, auth, waiting[1].1, json!("user"));
    assert_eq!(h.take_one(waiting[1].0)[0], 2);

    // The authentication timeout bounds the whole attempt, the wait for the authenticator included.
    let mut config = config();
    config.limits.auth_timeout_ms = 500;
    let mut h = Harness::with_config(config);
    let auth = component(&mut h, &["com.auth.ticket"]);
    let (conn, _) = hello(
        &mut h,
        "app",
        json!({"authmethods": ["ticket"], "authid": "joe"}),
    );
    h.send(conn, r#"[5, "t", {}]"#);
    let _ = invocation(&mut h, auth);
    h.tick(500);
    assert_abort(&h.take_one(conn), "wamp.error.authentication_failed");
    assert_eq!(h.take_one(auth)[0], 69, "INTERRUPT");
}

#[test]
fn dynamic_credentials_for_wampcra_cryptosign_scram_and_anonymous() {
    let mut h = Harness::with_config(config());
    let ticket = component(&mut h, &["com.auth.ticket"]);
    let credential = component(&mut h, &["com.auth.credential"]);

    // Anonymous: the authenticator decides at HELLO (here with a role name only).
    let (conn, reply) = hello(&mut h, "app", json!({"authmethods": ["anonymous"]}));
    assert!(reply.is_empty());
    let (request, args) = invocation(&mut h, ticket);
    assert_eq!(args[2]["authmethod"], "anonymous");
    let generated = args[1].as_str().unwrap().to_owned();
    answer(&mut h, ticket, request, json!("user"));
    let welcome = h.take_one(conn);
    assert_eq!(
        (
            welcome[2]["authid"].as_str(),
            welcome[2]["authmethod"].as_str()
        ),
        (Some(generated.as_str()), Some("anonymous"))
    );

    // WAMP-CRA: the authenticator gives the secret, the router challenges.
    for (secret, salted) in [("s3cret", false), ("hunter2", true)] {
        let (conn, reply) = hello(
            &mut h,
            "app",
            json!({"authmethods": ["wampcra"], "authid": "carl"}),
        );
        assert!(reply.is_empty());
        let (request, args) = invocation(&mut h, credential);
        assert_eq!(
            (args[1].as_str(), args[2]["authmethod"].as_str()),
            (Some("carl"), Some("wampcra"))
        );
        let mut result = json!({"secret": secret, "role": "user"});
        if salted {
            result = json!({"secret": secret, "role": "user", "salt": "salt123", "iterations": 100, "keylen": 32});
        }
        answer(&mut h, credential, request, result);
        let challenge = h.take_one(conn);
        assert_eq!(challenge[1], "wampcra");
        let key = match salted {
            true => {
                assert_eq!(challenge[2]["salt"], "salt123");
                derive_key(
                    secret,
                    &Salt {
                        salt: "salt123".into(),
                        iterations: 100,
                        keylen: 32,
                    },
                )
            }
            false => secret.to_string(),
        };
        let text = challenge[2]["challenge"].as_str().unwrap();
        h.send(
            conn,
            &json!([5, sign(key.as_bytes(), text), {}]).to_string(),
        );
        let welcome = h.take_one(conn);
        assert_eq!(
            (welcome[0].as_u64(), welcome[2]["authid"].as_str()),
            (Some(2), Some("carl"))
        );
        // The wrong secret.
        let (conn, _) = hello(
            &mut h,
            "app",
            json!({"authmethods": ["wampcra"], "authid": "carl"}),
        );
        let (request, _) = invocation(&mut h, credential);
        answer(
            &mut h,
            credential,
            request,
            json!({"secret": secret, "role": "user"}),
        );
        let challenge = h.take_one(conn);
        let text = challenge[2]["challenge"].as_str().unwrap();
        h.send(conn, &json!([5, sign(b"wrong", text), {}]).to_string());
        assert_abort(&h.take_one(conn), "wamp.error.authentication_failed");
    }

    // Cryptosign: the authenticator gives the public key (and, without a HELLO authid, the authid).
    let pair = Ed25519KeyPair::from_seed_unchecked(&[3; 32]).unwrap();
    let pubkey = hex(pair.public_key().as_ref());
    let (conn, _) = hello(
        &mut h,
        "app",
        json!({"authmethods": ["cryptosign"], "authextra": {"pubkey": pubkey}}),
    );
    let (request, args) = invocation(&mut h, credential);
    assert_eq!(args[2]["authextra"]["pubkey"], pubkey.as_str());
    answer(
        &mut h,
        credential,
        request,
        json!({"pubkey": pubkey, "authid": "dev", "role": "admin"}),
    );
    let challenge = h.take_one(conn);
    let bytes = kreisel_engine::auth::unhex(challenge[2]["challenge"].as_str().unwrap()).unwrap();
    let signature = hex(pair.sign(&bytes).as_ref()) + &hex(&bytes);
    h.send(conn, &json!([5, signature, {}]).to_string());
    let welcome = h.take_one(conn);
    assert_eq!(
        (
            welcome[2]["authid"].as_str(),
            welcome[2]["authrole"].as_str()
        ),
        (Some("dev"), Some("admin"))
    );

    // SCRAM: the authenticator gives the stored credential (hex, crossbar's keys); WELCOME carries the server
    // signature next to the authenticator's extra.
    let stored = Credential::derive("pw", Kdf::Pbkdf2, SALT, ITERATIONS, None).unwrap();
    let details =
        json!({"authmethods": ["scram"], "authid": "sam", "authextra": {"nonce": CLIENT_NONCE}});
    let (conn, _) = hello(&mut h, "app", details);
    let (request, args) = invocation(&mut h, credential);
    assert_eq!(args[2]["authmethod"], "scram");
    answer(
        &mut h,
        credential,
        request,
        json!({"kdf": "pbkdf2", "salt": stored.salt_hex(), "iterations": ITERATIONS, "memory": null,
            "stored-key": stored.stored_key_hex(), "server-key": stored.server_key_hex(), "role": "user",
            "extra": {"a": 1}}),
    );
    let challenge = h.take_one(conn);
    assert_eq!(challenge[0], 4, "{challenge}");
    let (proof, server_signature) = scram_proof("pw", "sam", &challenge[2], false, None);
    h.send(conn, &json!([5, proof, {}]).to_string());
    let welcome = h.take_one(conn);
    assert_eq!(welcome[0], 2, "{welcome}");
    assert_eq!(
        welcome[2]["authextra"],
        json!({"a": 1, "scram_server_signature": server_signature})
    );
    // A credential that is none: refused.
    let (conn, _) = hello(
        &mut h,
        "app",
        json!({"authmethods": ["wamp-scram"], "authid": "sam", "authextra": {"nonce": CLIENT_NONCE}}),
    );
    let (request, _) = invocation(&mut h, credential);
    answer(
        &mut h,
        credential,
        request,
        json!({"kdf": "md5", "salt": "00", "iterations": 1, "stored-key": "", "server-key": "", "role": "user"}),
    );
    assert_abort(&h.take_one(conn), "wamp.error.authentication_failed");
    // AUTHENTICATE before the CHALLENGE: a protocol violation (and the authenticator's call ends).
    let (conn, _) = hello(
        &mut h,
        "app",
        json!({"authmethods": ["wampcra"], "authid": "carl"}),
    );
    let _ = invocation(&mut h, credential);
    h.send(conn, r#"[5, "early", {}]"#);
    assert_abort(&h.take_one(conn), "wamp.error.protocol_violation");
    assert_eq!(h.take_one(credential)[0], 69, "INTERRUPT");
}

// -------------------------------------------------------------------------------------------------------------
// Dynamic authorizers

/// A session of realm `dapp` with role `dyn` (anonymous).
fn dyn_session(h: &mut Harness) -> usize {
    h.join_with("dapp", PLAIN_ROLES).0
}

#[test]
fn authorizer_decides_and_requests_wait_in_order() {
    let mut h = Harness::with_config(config());
    let authz = component(&mut h, &["com.authz"]);
    let conn = dyn_session(&mut h);
    h.send(conn, r#"[16, 1, {"acknowledge": true}, "com.x", [1]]"#);
    let (request, args) = invocation(&mut h, authz);
    assert_eq!(args[1], "com.x");
    assert_eq!(args[2], "publish");
    assert_eq!(args[3], json!({"acknowledge": true}));
    let details = &args[0];
    assert_eq!(details["authrole"], "dyn");
    assert_eq!(details["authmethod"], "anonymous");
    assert!(details["session"].as_u64().is_some());
    // Meanwhile: another publication (to the same topic) and a subscription wait behind the first.
    h.send(conn, r#"[16, 2, {"acknowledge": true}, "com.x", [2]]"#);
    h.send(conn, r#"[32, 3, {}, "com.y"]"#);
    assert!(h.take(conn).is_empty());
    h.assert_quiet();
    answer(
        &mut h,
        authz,
        request,
        json!({"allow": true, "cache": true}),
    );
    // PUBLISHED 1, then 2 (remembered: not asked again), then the SUBSCRIBE is asked about.
    let replies = h.take(conn);
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert_eq!(
        (replies[0][0].as_u64(), replies[0][1].as_u64()),
        (Some(17), Some(1))
    );
    assert_eq!(
        (replies[1][0].as_u64(), replies[1][1].as_u64()),
        (Some(17), Some(2))
    );
    let (request, args) = invocation(&mut h, authz);
    assert_eq!(
        (args[1].as_str(), args[2].as_str()),
        (Some("com.y"), Some("subscribe"))
    );
    answer(&mut h, authz, request, json!(false));
    let error = h.take_one(conn);
    assert_eq!(
        (error[0].as_u64(), error[4].as_str()),
        (Some(8), Some("wamp.error.not_authorized"))
    );
    let stats = h.router.stats();
    assert_eq!((stats.authorizer_calls, stats.authorizer_cached), (2, 1));
    // Another session of the role: the remembered decision applies to it too (cache per role).
    let other = dyn_session(&mut h);
    h.send(other, r#"[16, 1, {"acknowledge": true}, "com.x", [1]]"#);
    assert_eq!(h.take_one(other)[0], 17);
    h.assert_quiet();
    // An answer without `cache` is not remembered.
    h.send(other, r#"[32, 2, {}, "com.y"]"#);
    let (request, _) = invocation(&mut h, authz);
    answer(&mut h, authz, request, json!({"allow": true}));
    assert_eq!(h.take_one(other)[0], 33, "SUBSCRIBED");
    h.send(other, r#"[34, 3, 999]"#);
    let _ = h.take(other);
    h.send(other, r#"[32, 4, {}, "com.y"]"#);
    let _ = invocation(&mut h, authz);
}

#[test]
fn authorizer_failures_refuse_requests() {
    let mut h = Harness::with_config(config());
    let conn = dyn_session(&mut h);
    // Not registered: refused at once.
    h.send(conn, r#"[48, 1, {}, "com.proc", []]"#);
    let error = h.take_one(conn);
    assert_eq!(error[4], "wamp.error.authorization_failed", "{error}");
    let authz = component(&mut h, &["com.authz"]);
    for (answer_with, expected) in [
        (
            Some(json!({"allow": "yes"})),
            "wamp.error.authorization_failed",
        ),
        (
            Some(json!({"allow": true, "bogus": 1})),
            "wamp.error.authorization_failed",
        ),
        (Some(json!("allow")), "wamp.error.authorization_failed"),
        (
            Some(json!({"blob": "x".repeat(20_000)})),
            "wamp.error.authorization_failed",
        ),
        (None, "wamp.error.authorization_failed"),
        (
            Some(json!({"allow": false, "cache": false})),
            "wamp.error.not_authorized",
        ),
    ] {
        h.send(conn, r#"[48, 2, {}, "com.proc", []]"#);
        let (request, _) = invocation(&mut h, authz);
        match answer_with {
            Some(result) => answer(&mut h, authz, request, result),
            None => {
                h.send(
                    authz,
                    &json!([8, 68, request, {}, "com.example.error", []]).to_string(),
                );
            }
        }
        let error = h.take_one(conn);
        assert_eq!(
            (error[0].as_u64(), error[4].as_str()),
            (Some(8), Some(expected)),
            "{error}"
        );
    }
    // Never answering: refused after the authorizer's timeout; the session's next request goes on.
    h.send(conn, r#"[16, 3, {"acknowledge": true}, "com.t", []]"#);
    let _ = invocation(&mut h, authz);
    h.send(conn, r#"[48, 4, {}, "wamp.session.count", []]"#);
    h.tick(h.now_ms + 1000);
    let replies = h.take(conn);
    assert_eq!(
        replies[0][4], "wamp.error.authorization_failed",
        "{replies:?}"
    );
    let mut to_authz = h.take(authz);
    assert_eq!(to_authz.len(), 2, "{to_authz:?}");
    assert_eq!(to_authz[0][0], 69, "INTERRUPT");
    let next = to_authz.remove(1);
    assert_eq!(next[0], 68, "the next request is asked about");
    let (request, args) = (next[1].as_u64().unwrap(), next[4].clone());
    assert_eq!(args[1], "wamp.session.count");
    answer(&mut h, authz, request, json!(true));
    assert_eq!(h.take_one(conn)[0], 50, "RESULT");
    assert!(h.router.stats().authorizer_failures >= 6);
}

#[test]
fn authorizer_bounds_patterns_and_scopes() {
    let mut h = Harness::with_config(config());
    let authz = component(&mut h, &["com.authz"]);
    // Patterns: asked with `match` in the options; an allowed pattern reaches everything it matches.
    let subscriber = dyn_session(&mut h);
    h.send(subscriber, r#"[32, 1, {"match": "prefix"}, "com.feed."]"#);
    let (request, args) = invocation(&mut h, authz);
    assert_eq!(
        (args[1].as_str(), args[3]["match"].as_str()),
        (Some("com.feed."), Some("prefix"))
    );
    answer(
        &mut h,
        authz,
        request,
        json!({"allow": true, "cache": true}),
    );
    assert_eq!(h.take_one(subscriber)[0], 33);
    let publisher = dyn_session(&mut h);
    h.send(publisher, r#"[16, 1, {}, "com.feed.a.b", [1]]"#);
    let (request, _) = invocation(&mut h, authz);
    answer(&mut h, authz, request, json!(true));
    assert_eq!(h.take_one(subscriber)[0], 36, "EVENT");
    // patterns = "refuse" (role dyn_session): refused without asking.
    let (ticket, reply) = hello(
        &mut h,
        "dapp",
        json!({"authmethods": ["ticket"], "authid": "s"}),
    );
    assert_eq!(reply[0][0], 4);
    h.send(ticket, r#"[5, "t", {}]"#);
    assert_eq!(h.take_one(ticket)[0], 2);
    h.send(ticket, r#"[32, 1, {"match": "wildcard"}, "com..x"]"#);
    assert_eq!(h.take_one(ticket)[4], "wamp.error.not_authorized");
    h.assert_quiet();
    // Its decisions are remembered for the session only.
    h.send(ticket, r#"[16, 2, {"acknowledge": true}, "com.s", []]"#);
    let (request, _) = invocation(&mut h, authz);
    answer(
        &mut h,
        authz,
        request,
        json!({"allow": true, "cache": true}),
    );
    assert_eq!(h.take_one(ticket)[0], 17);
    h.send(ticket, r#"[16, 3, {"acknowledge": true}, "com.s", []]"#);
    assert_eq!(h.take_one(ticket)[0], 17, "remembered for this session");
    let (again, _) = hello(
        &mut h,
        "dapp",
        json!({"authmethods": ["ticket"], "authid": "s"}),
    );
    h.send(again, r#"[5, "t", {}]"#);
    let _ = h.take(again);
    h.send(again, r#"[16, 2, {"acknowledge": true}, "com.s", []]"#);
    let (request, _) = invocation(&mut h, authz);
    answer(&mut h, authz, request, json!(true));
    assert_eq!(h.take_one(again)[0], 17, "asked again for another session");

    // At most 256 requests wait (the undecided one included); beyond, refused (limit_exceeded).
    let conn = dyn_session(&mut h);
    h.send(conn, r#"[16, 1, {"acknowledge": true}, "com.slow", []]"#);
    let (request, _) = invocation(&mut h, authz);
    for i in 0..300 {
        h.send(
            conn,
            &json!([16, 2 + i, {"acknowledge": true}, "com.slow", []]).to_string(),
        );
    }
    let refused = h.take(conn);
    assert_eq!(refused.len(), 300 - 255, "{:?}", refused.first());
    assert!(refused
        .iter()
        .all(|r| r[4] == "kreisel.error.limit_exceeded"));
    answer(
        &mut h,
        authz,
        request,
        json!({"allow": true, "cache": true}),
    );
    let published = h.take(conn);
    assert_eq!(published.len(), 256);
    let ids: Vec<u64> = published.iter().map(|p| p[1].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order");

    // A session that leaves while waiting: the authorizer's call ends.
    let conn = dyn_session(&mut h);
    h.send(conn, r#"[16, 1, {"acknowledge": true}, "com.gone", []]"#);
    let _ = invocation(&mut h, authz);
    h.close(conn);
    assert_eq!(h.take_one(authz)[0], 69, "INTERRUPT");
}

/// Answers to invocations do not wait behind an undecided request; a testament's CALL and topic are both
/// decided, each once.
#[test]
fn authorizer_does_not_hold_back_yields_and_decides_testaments() {
    let mut h = Harness::with_config(config());
    let authz = component(&mut h, &["com.authz"]);
    let callee = dyn_session(&mut h);
    h.send(callee, r#"[64, 1, {}, "com.svc"]"#);
    let (request, _) = invocation(&mut h, authz);
    answer(
        &mut h,
        authz,
        request,
        json!({"allow": true, "cache": true}),
    );
    assert_eq!(h.take_one(callee)[0], 65);
    let (caller, _) = h.join_with("realm1", PLAIN_ROLES);
    let _ = caller;
    let (other_caller, _) = h.join_with("dapp", PLAIN_ROLES);
    // The callee's publication waits for the authorizer...
    h.send(callee, r#"[16, 2, {"acknowledge": true}, "com.p", []]"#);
    let (pending, _) = invocation(&mut h, authz);
    // ... while it answers a call (allowed from the cache for the caller's role).
    h.send(other_caller, r#"[48, 1, {}, "com.svc", []]"#);
    let (call, _) = {
        let (request, args) = invocation(&mut h, authz);
        answer(
            &mut h,
            authz,
            request,
            json!({"allow": true, "cache": true}),
        );
        (request, args)
    };
    let _ = call;
    let inv = h.take_one(callee);
    assert_eq!(inv[0], 68);
    h.send(callee, &json!([70, inv[1], {}, ["done"]]).to_string());
    let result = h.take_one(other_caller);
    assert_eq!(result[0], 50, "the YIELD went through: {result}");
    answer(&mut h, authz, pending, json!(true));
    assert_eq!(h.take_one(callee)[0], 17);
    // A testament: the CALL and the testament's topic are decided (neither remembered), each asked once.
    let conn = dyn_session(&mut h);
    h.send(
        conn,
        r#"[48, 1, {}, "wamp.session.add_testament", ["com.will", [], {}]]"#,
    );
    let (request, args) = invocation(&mut h, authz);
    assert_eq!(
        (args[1].as_str(), args[2].as_str()),
        (Some("wamp.session.add_testament"), Some("call"))
    );
    answer(&mut h, authz, request, json!(true));
    let (request, args) = invocation(&mut h, authz);
    assert_eq!(
        (args[1].as_str(), args[2].as_str()),
        (Some("com.will"), Some("publish"))
    );
    answer(&mut h, authz, request, json!(true));
    assert_eq!(h.take_one(conn)[0], 50, "RESULT");
    h.assert_quiet();
}
