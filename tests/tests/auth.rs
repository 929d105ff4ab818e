//! Authentication and authorization end to end: autobahn-python (tests/interop/auth.py) against a realm with
//! ticket, WAMP-CRA (plain and salted) and cryptosign principals and two roles, over WebSocket and RawSocket with
//! JSON and MessagePack; and the authentication timeout over a real socket.

use kreisel_codec::Serializer;
use kreisel_tests::{python_check, Client, TestRouter};

/// Realm `secure`, as tests/interop/auth.py expects it. bob's secret is the key autobahn derives from "hunter2"
/// (salt123, 100 iterations, 32 bytes); dev's key is the public half of the spec's first cryptosign test vector.
const SECURE: &str = r#"
[[realms]]
name = "secure"

[[realms.principals]]
authid = "alice"
role = "user"
ticket = "open sesame"

[[realms.principals]]
authid = "carol"
role = "backend"
wampcra_secret = "carols secret"

[[realms.principals]]
authid = "bob"
role = "backend"
wampcra_secret = "0ZfvumR9vhoaKdsArNQmAm0BH30QY2aJm+n3N98NfLk="
wampcra_salt = "salt123"
wampcra_iterations = 100
wampcra_keylen = 32

[[realms.principals]]
authid = "dev"
role = "backend"
cryptosign_pubkeys = ["1adfc8bfe1d35616e64dffbd900096f23b066f914c8c2ffbb66f6075b96e116d"]

[[realms.roles]]
name = "user"
permissions = [
  { uri = "com.app.", match = "prefix", allow = ["call", "subscribe"] },
  { uri = "com.app.chat", allow = ["publish"], disclose = ["publisher"] },
  { uri = "com.app.audit", allow = ["call"], disclose = ["caller"] },
]

[[realms.roles]]
name = "backend"
permissions = [{ uri = "", match = "prefix", allow = ["call", "register", "publish", "subscribe"] }]
"#;

fn autobahn(websocket: bool, serializer: &str) {
    let router = TestRouter::start(SECURE);
    let url = if websocket {
        router.ws_url()
    } else {
        router.rs_url()
    };
    python_check("auth.py", &[&url, serializer]);
}

#[test]
fn autobahn_python_auth_websocket_json() {
    autobahn(true, "json");
}

#[test]
fn autobahn_python_auth_websocket_msgpack() {
    autobahn(true, "msgpack");
}

#[test]
fn autobahn_python_auth_rawsocket_json() {
    autobahn(false, "json");
}

#[test]
fn autobahn_python_auth_rawsocket_msgpack() {
    autobahn(false, "msgpack");
}

#[test]
fn silent_authenticating_client_is_aborted_and_others_join() {
    let router = TestRouter::start(&format!("{SECURE}\n[limits]\nauth_timeout_ms = 300\n"));
    let mut slow = Client::rawsocket(router.rs, Serializer::Json);
    slow.send(
        r#"[1, "secure", {"roles": {"caller": {}}, "authmethods": ["ticket"], "authid": "alice"}]"#,
    );
    assert_eq!(slow.expect()[0], 4, "CHALLENGE");
    // Meanwhile another client authenticates normally.
    let mut quick = Client::websocket(router.ws, Serializer::MsgPack);
    quick.send(
        r#"[1, "secure", {"roles": {"caller": {}}, "authmethods": ["ticket"], "authid": "alice"}]"#,
    );
    assert_eq!(quick.expect()[0], 4);
    quick.send(r#"[5, "open sesame", {}]"#);
    assert_eq!(quick.expect()[0], 2, "WELCOME");
    // The silent one gets ABORT after the timeout, then its transport closes.
    let rest = slow.expect_close();
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0][0], 3);
    assert_eq!(rest[0][2], "wamp.error.authentication_failed");
    // The joined one still works.
    quick.send(r#"[48, 1, {}, "com.app.nothing", []]"#);
    assert_eq!(quick.expect()[4], "wamp.error.no_such_procedure");
}
