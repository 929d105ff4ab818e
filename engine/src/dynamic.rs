//! Dynamic authentication and authorization: how the router reads what a dynamic authenticator or authorizer
//! answers, following crossbar.io's contract so that components written for crossbar work unchanged. The calls
//! themselves (arguments, timeouts, limits, the router as a caller of its own dealer) are in `router/dynamic.rs`.
//!
//! # Authenticator
//!
//! Called as `authenticate(realm, authid, details)`. The answer (the first positional result) is a role name, or a
//! dictionary with any of `role`, `authid` (replaces the client's), `realm` (another realm of this router to join
//! instead), `extra` (a dictionary sent to the client as WELCOME `authextra`), and what the method needs from it:
//!
//! | method | keys | the router then |
//! | --- | --- | --- |
//! | `anonymous`, `ticket` | none | joins (ticket: the authenticator checked `details.ticket`) |
//! | `wampcra` | `secret`; `salt`, `iterations`, `keylen` (all three or none) | challenges with the secret (salted: the key PBKDF2 derives from it, as crossbar does) |
//! | `cryptosign` | `pubkey` (hex Ed25519 public key) | challenges the client to sign with that key |
//! | `scram` / `wamp-scram` | `kdf`, `salt` (hex), `iterations`, `memory`, `stored-key`, `server-key` (hex) | runs the SCRAM exchange with that credential |
//!
//! An ERROR from the authenticator is the ABORT the client gets (its URI, and its first argument as the message).
//!
//! # Authorizer
//!
//! Called as `authorize(session_details, uri, action, options)`. The answer is a boolean (allow or not, not
//! remembered) or a dictionary with `allow` (a boolean, required), `disclose` and `cache` (booleans; `cache`:
//! the router may reuse the decision), and `validate` (accepted and ignored: kreisel does not validate payloads).
//! Any other key or type is a failure, as in crossbar.

use kreisel_codec::{Kind, RawValue, Serializer};

use crate::auth::{Method, Salt};
use crate::scram;

/// The largest answer (the first positional result, encoded) the router reads from an authenticator or authorizer;
/// a larger one is a failure.
pub const ANSWER_BYTES_MAX: usize = 16 << 10;
/// The most PBKDF2 iterations the router runs for a salted WAMP-CRA secret an authenticator returns (the router
/// derives the key, as crossbar does; more would stall the shard).
pub const WAMPCRA_ITERATIONS_MAX: u32 = 100_000;
/// The longest error message taken from an authenticator's ERROR into the ABORT.
pub const MESSAGE_MAX: usize = 1024;

/// A role whose permissions a procedure decides (`authorizer` on a role).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// The procedure URI.
    pub procedure: String,
    /// The realm it is registered in (`None`: the role's realm).
    pub realm: Option<String>,
    /// How long a request waits for its answer, in milliseconds; then it is refused.
    pub timeout_ms: u64,
    /// Requests waiting for its answer at once (on each shard); beyond, a request is refused at once.
    pub concurrency_max: usize,
    /// What a decision with `cache: true` is remembered for.
    pub cache: CacheScope,
    /// What happens to SUBSCRIBE and REGISTER with `match: prefix|wildcard`.
    pub patterns: Patterns,
}

impl AuthorizerConfig {
    pub const TIMEOUT_MS: u64 = 5_000;
    pub const CONCURRENCY_MAX: usize = 1_000;
}

/// Whom a cached decision applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheScope {
    /// Every session of the role (crossbar's choice: the key is realm, role, URI and action).
    #[default]
    Role,
    /// The session that asked only (for authorizers whose answer depends on the authid or the session).
    Session,
}

/// Pattern subscriptions and registrations of a role with an authorizer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Patterns {
    /// The authorizer is asked about the pattern, with `options.match` saying it is one (as crossbar asks); its
    /// `allow` covers every URI the pattern can reach.
    #[default]
    Ask,
    /// Refused without asking (`wamp.error.not_authorized`).
    Refuse,
}

/// What a dynamic authenticator said about a principal.
#[derive(Clone, Debug, Default)]
pub struct Assigned {
    pub role: Option<String>,
    pub authid: Option<String>,
    pub realm: Option<String>,
    /// WELCOME `authextra`, as MessagePack bytes of a dictionary.
    pub extra: Option<Box<[u8]>>,
    pub credential: Credential,
}

/// What the method needs from the authenticator's answer.
#[derive(Clone, Debug, Default)]
pub enum Credential {
    #[default]
    None,
    /// WAMP-CRA: the secret the client signs with (already derived when salted), and the salt parameters to put
    /// into the challenge.
    WampCra {
        key: String,
        salt: Option<Salt>,
    },
    Cryptosign([u8; 32]),
    Scram(scram::Credential),
}

/// An authorizer's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    pub disclose: bool,
    pub cache: bool,
}

/// Reads an authenticator's answer (the RESULT's positional arguments) for `method`. `Err` says what is wrong
/// (the client gets ABORT `wamp.error.authentication_failed`).
pub fn authenticator_answer(
    method: Method,
    args: Option<RawValue<'_>>,
) -> Result<Assigned, String> {
    let answer = first(args)?;
    let mut assigned = Assigned::default();
    let dict = match answer.kind() {
        Kind::Str => {
            assigned.role = answer.as_str().map(|role| role.into_owned());
            return match method {
                Method::Anonymous | Method::Ticket => Ok(assigned),
                _ => Err(format!(
                    "the authenticator answered a role only; {} needs its credential in a dictionary",
                    method.name()
                )),
            };
        }
        Kind::Dict => answer,
        other => {
            return Err(format!(
                "got invalid return type {} from the dynamic authenticator (expected a role or a dictionary)",
                kind_name(other)
            ))
        }
    };
    let text = |key: &str| -> Result<Option<String>, String> {
        match dict.get(key) {
            None => Ok(None),
            Some(value) if value.is_null() => Ok(None),
            Some(value) => value
                .as_str()
                .map(|s| Some(s.into_owned()))
                .ok_or_else(|| format!("'{key}' in the authenticator's answer must be a string")),
        }
    };
    let number = |key: &str| -> Result<Option<u64>, String> {
        match dict.get(key) {
            None => Ok(None),
            Some(value) if value.is_null() => Ok(None),
            Some(value) => value.as_u64().map(Some).ok_or_else(|| {
                format!("'{key}' in the authenticator's answer must be a non-negative integer")
            }),
        }
    };
    assigned.role = text("role")?;
    assigned.authid = text("authid")?;
    assigned.realm = text("realm")?;
    if let Some(extra) = dict.get("extra").filter(|extra| !extra.is_null()) {
        if extra.kind() != Kind::Dict {
            return Err("'extra' in the authenticator's answer must be a dictionary".into());
        }
        let mut bytes = Vec::new();
        kreisel_codec::transcode(extra, Serializer::MsgPack, &mut bytes);
        assigned.extra = Some(bytes.into());
    }
    let required = |value: Option<String>, key: &str| {
        value.ok_or_else(|| {
            format!(
                "{} needs '{key}' in the authenticator's answer",
                method.name()
            )
        })
    };
    assigned.credential = match method {
        Method::Anonymous | Method::Ticket | Method::Trusted => Credential::None,
        Method::WampCra => {
            let secret = required(text("secret")?, "secret")?;
            let salt = match (text("salt")?, number("iterations")?, number("keylen")?) {
                (Some(salt), Some(iterations), Some(keylen)) => {
                    let iterations = u32::try_from(iterations)
                        .ok()
                        .filter(|i| (1..=WAMPCRA_ITERATIONS_MAX).contains(i))
                        .ok_or_else(|| {
                            format!("'iterations' must be within 1 ..= {WAMPCRA_ITERATIONS_MAX}")
                        })?;
                    let keylen = u32::try_from(keylen)
                        .ok()
                        .filter(|k| (1..=64).contains(k))
                        .ok_or("'keylen' must be within 1 ..= 64")?;
                    Some(Salt {
                        salt,
                        iterations,
                        keylen,
                    })
                }
                _ => None,
            };
            // As crossbar: with a salt, the secret is the password and the client signs with the derived key.
            let key = match &salt {
                Some(salt) => crate::auth::derive_key(&secret, salt),
                None => secret,
            };
            Credential::WampCra { key, salt }
        }
        Method::Cryptosign => {
            let pubkey = required(text("pubkey")?, "pubkey")?;
            Credential::Cryptosign(crate::auth::parse_pubkey(&pubkey).ok_or(
                "'pubkey' in the authenticator's answer must be 64 hex digits (an Ed25519 public key)",
            )?)
        }
        Method::WampScram | Method::Scram => {
            let kdf = required(text("kdf")?, "kdf")?;
            let salt = required(text("salt")?, "salt")?;
            let iterations = number("iterations")?
                .and_then(|i| u32::try_from(i).ok())
                .ok_or("scram needs 'iterations' (an integer) in the authenticator's answer")?;
            let memory = match number("memory")? {
                Some(0) | None => None,
                Some(memory) => Some(u32::try_from(memory).map_err(|_| "'memory' is too large")?),
            };
            let stored = required(text("stored-key")?, "stored-key")?;
            let server = required(text("server-key")?, "server-key")?;
            let credential =
                scram::Credential::parse(&kdf, &salt, iterations, memory, &stored, &server)
                    .map_err(|e| format!("the authenticator's SCRAM credential: {e}"))?;
            Credential::Scram(credential)
        }
    };
    Ok(assigned)
}

/// Reads an authorizer's answer. `Err` says what is wrong (the request is refused with
/// `wamp.error.authorization_failed`).
pub fn authorizer_answer(args: Option<RawValue<'_>>) -> Result<Decision, String> {
    let answer = first(args)?;
    match answer.kind() {
        Kind::Bool => Ok(Decision {
            allow: answer.as_bool() == Some(true),
            disclose: false,
            cache: false,
        }),
        Kind::Dict => {
            let mut decision = Decision {
                allow: false,
                disclose: false,
                cache: false,
            };
            let mut allow = None;
            for (key, value) in answer.dict().into_iter().flatten() {
                let flag = || {
                    value
                        .as_bool()
                        .ok_or_else(|| format!("the authorizer must answer a boolean for '{key}'"))
                };
                match &*key {
                    "allow" => allow = Some(flag()?),
                    "disclose" => decision.disclose = flag()?,
                    "cache" => decision.cache = flag()?,
                    "validate" if value.is_null() || value.kind() == Kind::Dict => {}
                    "validate" => {
                        return Err("the authorizer must answer a dictionary for 'validate'".into())
                    }
                    other => {
                        return Err(format!(
                            "the authorizer returned unknown key '{}'",
                            crate::uri::shown(other)
                        ))
                    }
                }
            }
            decision.allow = allow.ok_or("the authorizer must answer 'allow'")?;
            Ok(decision)
        }
        other => Err(format!(
            "the authorizer returned {} (expected a boolean or a dictionary)",
            kind_name(other)
        )),
    }
}

/// The first positional result, bounded in size.
fn first(args: Option<RawValue<'_>>) -> Result<RawValue<'_>, String> {
    let Some(args) = args else {
        return Err("the answer has no result".into());
    };
    if args.bytes().len() > ANSWER_BYTES_MAX {
        return Err(format!(
            "the answer is larger than {ANSWER_BYTES_MAX} bytes"
        ));
    }
    args.list()
        .and_then(|mut list| list.next())
        .ok_or_else(|| "the answer has no result".into())
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Null => "null",
        Kind::Bool => "a boolean",
        Kind::Int | Kind::Float => "a number",
        Kind::Str => "a string",
        Kind::Bin => "binary",
        Kind::List => "a list",
        Kind::Dict => "a dictionary",
    }
}

/// The message of an authenticator's ERROR: its first positional argument as text (a string as it is, another
/// value as JSON), at most [`MESSAGE_MAX`] bytes.
pub fn error_message(args: Option<RawValue<'_>>) -> Option<String> {
    let first = args?.list()?.next()?;
    let mut text = match first.as_str() {
        Some(text) => text.into_owned(),
        None => {
            let mut json = Vec::new();
            kreisel_codec::transcode(first, Serializer::Json, &mut json);
            String::from_utf8(json).ok()?
        }
    };
    if text.len() > MESSAGE_MAX {
        let mut end = MESSAGE_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(json: &str) -> Option<RawValue<'_>> {
        Some(RawValue::parse(Serializer::Json, json.as_bytes()).unwrap())
    }

    #[test]
    fn authenticator_answers() {
        let role = authenticator_answer(Method::Ticket, args(r#"["user"]"#)).unwrap();
        assert_eq!(role.role.as_deref(), Some("user"));
        let full = authenticator_answer(
            Method::Anonymous,
            args(r#"[{"role": "r", "authid": "a", "realm": "x", "extra": {"k": [1, 2]}}]"#),
        )
        .unwrap();
        assert_eq!(
            (
                full.role.as_deref(),
                full.authid.as_deref(),
                full.realm.as_deref()
            ),
            (Some("r"), Some("a"), Some("x"))
        );
        let extra = RawValue::trusted(Serializer::MsgPack, full.extra.as_deref().unwrap());
        assert_eq!(extra.get("k").unwrap().list().unwrap().count(), 2);
        for (method, answer, why) in [
            (Method::Ticket, "[42]", "invalid return type a number"),
            (Method::Ticket, "[]", "no result"),
            (
                Method::Ticket,
                r#"[{"role": 7}]"#,
                "'role' in the authenticator's answer must be a string",
            ),
            (Method::Ticket, r#"[{"extra": []}]"#, "'extra'"),
            (Method::WampCra, r#"["user"]"#, "needs its credential"),
            (
                Method::WampCra,
                r#"[{"role": "u"}]"#,
                "wampcra needs 'secret'",
            ),
            (
                Method::WampCra,
                r#"[{"secret": "s", "salt": "x", "iterations": 1000000000, "keylen": 32}]"#,
                "'iterations' must be within",
            ),
            (
                Method::Cryptosign,
                r#"[{"pubkey": "abc"}]"#,
                "64 hex digits",
            ),
            (
                Method::Scram,
                r#"[{"kdf": "argon2id-13"}]"#,
                "scram needs 'salt'",
            ),
        ] {
            let error = authenticator_answer(method, args(answer)).unwrap_err();
            assert!(error.contains(why), "{answer}: {error}");
        }
        let huge = format!(r#"["{}"]"#, "x".repeat(ANSWER_BYTES_MAX));
        assert!(authenticator_answer(Method::Ticket, args(&huge))
            .unwrap_err()
            .contains("larger than"));
        // A salted WAMP-CRA secret is derived as crossbar does it.
        let salted = authenticator_answer(
            Method::WampCra,
            args(r#"[{"secret": "hunter2", "salt": "salt123", "iterations": 100, "keylen": 32, "role": "r"}]"#),
        )
        .unwrap();
        let Credential::WampCra { key, salt } = salted.credential else {
            panic!()
        };
        assert_eq!(key, "0ZfvumR9vhoaKdsArNQmAm0BH30QY2aJm+n3N98NfLk=");
        assert_eq!(salt.unwrap().iterations, 100);
    }

    #[test]
    fn authorizer_answers() {
        let yes = authorizer_answer(args("[true]")).unwrap();
        assert!(yes.allow && !yes.cache && !yes.disclose);
        let dict = authorizer_answer(args(
            r#"[{"allow": true, "cache": true, "disclose": true, "validate": null}]"#,
        ))
        .unwrap();
        assert!(dict.allow && dict.cache && dict.disclose);
        assert!(
            !authorizer_answer(args(r#"[{"allow": false}]"#))
                .unwrap()
                .allow
        );
        for (answer, why) in [
            (r#"[{"cache": true}]"#, "must answer 'allow'"),
            (r#"[{"allow": "yes"}]"#, "a boolean for 'allow'"),
            (r#"[{"allow": true, "bogus": 1}]"#, "unknown key 'bogus'"),
            (r#"["yes"]"#, "a string"),
            ("[null]", "null"),
            ("[]", "no result"),
        ] {
            let error = authorizer_answer(args(answer)).unwrap_err();
            assert!(error.contains(why), "{answer}: {error}");
        }
        assert!(authorizer_answer(None).is_err());
    }

    #[test]
    fn error_messages() {
        assert_eq!(error_message(args(r#"["nope"]"#)).as_deref(), Some("nope"));
        assert_eq!(
            error_message(args(r#"[{"a": 1}]"#)).as_deref(),
            Some(r#"{"a": 1}"#)
        );
        assert_eq!(error_message(args("[]")), None);
        let long = format!(r#"["{}"]"#, "é".repeat(MESSAGE_MAX));
        assert!(error_message(args(&long)).unwrap().len() <= MESSAGE_MAX);
    }
}
