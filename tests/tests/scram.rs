//! WAMP-SCRAM end to end: autobahn-python's own SCRAM client (tests/interop/scram.py) against static principals
//! whose credentials kreisel derived (what `kreisel --derive-scram` prints), over WebSocket and RawSocket with JSON
//! and MessagePack.

use kreisel_engine::scram::{Credential, Kdf};
use kreisel_tests::{python_check, TestRouter};

/// autobahn's `derive_scram_credential` takes SHA-256(email)[:16] as the salt when it is given none: carol's.
const CAROL_SALT: &str = "4c26d9074c27d89ede59270c0ac14b71";

fn principal(authid: &str, credential: &Credential) -> String {
    let memory = credential
        .memory()
        .map_or(String::new(), |m| format!("scram_memory = {m}\n"));
    format!(
        "[[realms.principals]]\nauthid = \"{authid}\"\nrole = \"user\"\nscram_kdf = \"{}\"\nscram_salt = \"{}\"\n\
         scram_iterations = {}\n{memory}scram_stored_key = \"{}\"\nscram_server_key = \"{}\"\n",
        credential.kdf().name(),
        credential.salt_hex(),
        credential.iterations(),
        credential.stored_key_hex(),
        credential.server_key_hex()
    )
}

/// `carol`: also log carol in (autobahn's default Argon2 costs: seconds of the client's CPU; one test does it).
fn autobahn(websocket: bool, serializer: &str, carol: bool) {
    // peter: small Argon2 costs (the CHALLENGE tells the client); carol: autobahn's defaults.
    let peter = Credential::derive(
        "hunter2",
        Kdf::Argon2id13Autobahn,
        b"peter's salt 16B",
        8,
        Some(1024),
    )
    .unwrap();
    let carol_salt = kreisel_engine::auth::unhex(CAROL_SALT).unwrap();
    let carol_credential = Credential::derive(
        "pencil",
        Kdf::Argon2id13Autobahn,
        &carol_salt,
        kreisel_engine::scram::AUTOBAHN_ITERATIONS,
        Some(kreisel_engine::scram::AUTOBAHN_MEMORY),
    )
    .unwrap();
    let config = format!(
        // autobahn's default costs take the client seconds on a loaded machine: more than the default 10 s must
        // not fail the test.
        "[[realms]]\nname = \"scram\"\n{}{}[[realms.roles]]\nname = \"user\"\n[limits]\nauth_timeout_ms = 60000\n",
        principal("peter", &peter),
        principal("carol", &carol_credential)
    );
    let router = TestRouter::start(&config);
    let url = if websocket {
        router.ws_url()
    } else {
        router.rs_url()
    };
    let carol = match carol {
        true => carol_credential.stored_key_hex(),
        false => "-".to_string(),
    };
    python_check("scram.py", &[&url, serializer, &carol]);
}

#[test]
fn autobahn_python_scram_websocket_json() {
    autobahn(true, "json", true);
}

#[test]
fn autobahn_python_scram_websocket_msgpack() {
    autobahn(true, "msgpack", false);
}

#[test]
fn autobahn_python_scram_rawsocket_json() {
    autobahn(false, "json", false);
}

#[test]
fn autobahn_python_scram_rawsocket_msgpack() {
    autobahn(false, "msgpack", false);
}
