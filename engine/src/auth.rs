//! Authentication: anonymous, ticket, WAMP-CRA (with salted secrets) and cryptosign (Ed25519) against static
//! principals from the config.
//!
//! Cost to the router of an attempt: HELLO costs a table lookup and one HMAC (the nonce); nothing expensive
//! happens before the client has answered the challenge, and the answer costs one HMAC (ticket, WAMP-CRA) or one
//! Ed25519 verification (cryptosign). Secrets are compared in constant time (`ring::hmac::verify`). A HELLO for
//! an unknown `authid` gets a challenge like any other (ticket, WAMP-CRA: with a salt derived from the authid if
//! the realm salts its secrets) and fails only at AUTHENTICATE, so an attacker cannot list principals.

use std::collections::HashMap;
use std::fmt::Write as _;

use base64::Engine as _;
use ring::hmac;
use ring::signature::{UnparsedPublicKey, ED25519};

use crate::authz::RoleConfig;

/// A realm's authentication and authorization settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    /// The role of anonymous sessions; `None`: anonymous sessions are refused.
    pub anonymous_role: Option<String>,
    pub principals: Vec<PrincipalConfig>,
    /// `None`: no authorization, every session may do everything.
    pub roles: Option<Vec<RoleConfig>>,
}

impl Default for AuthConfig {
    /// Anonymous sessions with role `anonymous`, no principals, no authorization.
    fn default() -> AuthConfig {
        AuthConfig {
            anonymous_role: Some("anonymous".into()),
            principals: Vec::new(),
            roles: None,
        }
    }
}

/// A static principal: an authid, its role, and the credentials it may authenticate with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrincipalConfig {
    pub authid: String,
    pub role: String,
    pub ticket: Option<String>,
    pub wampcra: Option<WampCraSecret>,
    /// Ed25519 public keys (cryptosign).
    pub cryptosign: Vec<[u8; 32]>,
}

/// A WAMP-CRA secret. Without `salt` the client signs with the secret itself; with it, `secret` is the derived
/// key (base64 of PBKDF2-HMAC-SHA256(password, salt, iterations, keylen)), which the client derives from its
/// password with the parameters the CHALLENGE carries. The router never stores or derives the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WampCraSecret {
    pub secret: String,
    pub salt: Option<Salt>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Salt {
    pub salt: String,
    pub iterations: u32,
    pub keylen: u32,
}

/// The derived key for a salted WAMP-CRA secret, as clients compute it (autobahn's `derive_key`): base64 of
/// PBKDF2-HMAC-SHA256. For the `kreisel --derive-key` helper and tests.
pub fn derive_key(password: &str, salt: &Salt) -> String {
    let mut key = vec![0u8; salt.keylen as usize];
    let iterations =
        std::num::NonZeroU32::new(salt.iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt.salt.as_bytes(),
        password.as_bytes(),
        &mut key,
    );
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// An authentication method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Anonymous,
    Ticket,
    WampCra,
    Cryptosign,
}

impl Method {
    pub fn from_name(name: &str) -> Option<Method> {
        match name {
            "anonymous" => Some(Method::Anonymous),
            "ticket" => Some(Method::Ticket),
            "wampcra" => Some(Method::WampCra),
            "cryptosign" => Some(Method::Cryptosign),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Anonymous => "anonymous",
            Method::Ticket => "ticket",
            Method::WampCra => "wampcra",
            Method::Cryptosign => "cryptosign",
        }
    }
}

#[derive(Debug)]
struct Principal {
    authid: Box<str>,
    role: Box<str>,
    /// HMAC of the ticket under the router's key: comparing tags compares tickets in constant time, whatever
    /// their lengths.
    ticket: Option<hmac::Tag>,
    wampcra: Option<(hmac::Key, Option<Salt>)>,
    pubkeys: Vec<[u8; 32]>,
}

/// A realm's principals, compiled for lookups.
#[derive(Debug)]
pub(crate) struct Principals {
    list: Vec<Principal>,
    by_authid: HashMap<Box<str>, usize>,
    by_pubkey: HashMap<[u8; 32], usize>,
    anonymous_role: Option<Box<str>>,
    /// Salt parameters to show an unknown authid when the realm salts WAMP-CRA secrets.
    decoy_salt: Option<(u32, u32)>,
    /// Whether any principal has a ticket / a WAMP-CRA secret (decided once, not per HELLO).
    tickets: bool,
    wampcra: bool,
}

/// What HELLO leads to.
#[derive(Debug)]
pub(crate) enum Choice {
    Anonymous {
        role: Box<str>,
    },
    /// Send CHALLENGE; `principal` is `None` for an unknown authid (the attempt fails at AUTHENTICATE).
    Challenge {
        method: Method,
        principal: Option<usize>,
    },
}

/// A session waiting for its AUTHENTICATE.
#[derive(Debug)]
pub(crate) struct Pending {
    pub method: Method,
    pub principal: Option<usize>,
    pub authid: Box<str>,
    /// WAMP-CRA: the challenge string; cryptosign: the 32 challenge bytes; ticket: empty.
    pub challenge: Box<[u8]>,
}

/// The result of a successful authentication.
pub(crate) struct Authenticated<'a> {
    pub authid: &'a str,
    pub role: &'a str,
}

impl Principals {
    /// Compiles `config`; `key` is the router's secret key (for ticket tags).
    pub fn new(config: &AuthConfig, key: &hmac::Key) -> Principals {
        let mut principals = Principals {
            list: Vec::new(),
            by_authid: HashMap::new(),
            by_pubkey: HashMap::new(),
            anonymous_role: config.anonymous_role.as_deref().map(Into::into),
            decoy_salt: None,
            tickets: config.principals.iter().any(|p| p.ticket.is_some()),
            wampcra: config.principals.iter().any(|p| p.wampcra.is_some()),
        };
        for p in &config.principals {
            let index = principals.list.len();
            principals.by_authid.insert(p.authid.as_str().into(), index);
            for key in &p.cryptosign {
                principals.by_pubkey.insert(*key, index);
            }
            if let Some(salt) = p.wampcra.as_ref().and_then(|w| w.salt.as_ref()) {
                principals
                    .decoy_salt
                    .get_or_insert((salt.iterations, salt.keylen));
            }
            principals.list.push(Principal {
                authid: p.authid.as_str().into(),
                role: p.role.as_str().into(),
                ticket: p.ticket.as_ref().map(|t| hmac::sign(key, t.as_bytes())),
                wampcra: p.wampcra.as_ref().map(|w| {
                    (
                        hmac::Key::new(hmac::HMAC_SHA256, w.secret.as_bytes()),
                        w.salt.clone(),
                    )
                }),
                pubkeys: p.cryptosign.clone(),
            });
        }
        principals
    }

    fn offers(&self, method: Method) -> bool {
        match method {
            Method::Anonymous => self.anonymous_role.is_some(),
            Method::Ticket => self.tickets,
            Method::WampCra => self.wampcra,
            Method::Cryptosign => !self.by_pubkey.is_empty(),
        }
    }

    /// The methods this realm accepts, for error texts.
    pub fn available(&self) -> String {
        let methods = [
            Method::Anonymous,
            Method::Ticket,
            Method::WampCra,
            Method::Cryptosign,
        ];
        let names: Vec<&str> = methods
            .into_iter()
            .filter(|&m| self.offers(m))
            .map(Method::name)
            .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    /// Picks the first of the client's methods (in its order) this realm can perform with what HELLO carries:
    /// `authid` (ticket, WAMP-CRA: required; cryptosign: optional) and `pubkey` (cryptosign: required, and it
    /// must belong to a principal, to `authid`'s if given). `None`: no method fits.
    pub fn choose(
        &self,
        offered: impl Iterator<Item = Method>,
        authid: Option<&str>,
        pubkey: Option<[u8; 32]>,
    ) -> Option<Choice> {
        for method in offered {
            match method {
                Method::Anonymous => {
                    if let Some(role) = &self.anonymous_role {
                        return Some(Choice::Anonymous { role: role.clone() });
                    }
                }
                Method::Ticket | Method::WampCra => {
                    if authid.is_none() || !self.offers(method) {
                        continue;
                    }
                    let principal = authid.and_then(|a| self.by_authid.get(a).copied()).filter(
                        |&i| match method {
                            Method::Ticket => self.list[i].ticket.is_some(),
                            _ => self.list[i].wampcra.is_some(),
                        },
                    );
                    return Some(Choice::Challenge { method, principal });
                }
                Method::Cryptosign => {
                    let Some(key) = pubkey else { continue };
                    let Some(&index) = self.by_pubkey.get(&key) else {
                        continue;
                    };
                    if authid.is_some_and(|a| *self.list[index].authid != *a) {
                        continue;
                    }
                    return Some(Choice::Challenge {
                        method,
                        principal: Some(index),
                    });
                }
            }
        }
        None
    }

    /// The authid a challenge is for: the principal's, else the one the client asked for.
    pub fn authid<'a>(&'a self, principal: Option<usize>, asked: Option<&'a str>) -> &'a str {
        match principal {
            Some(index) => &self.list[index].authid,
            None => asked.unwrap_or(""),
        }
    }

    /// The role a challenge names (WAMP-CRA puts it into the challenge string). An unknown authid gets a
    /// plausible one.
    pub fn role(&self, principal: Option<usize>) -> &str {
        match principal {
            Some(index) => &self.list[index].role,
            None => "user",
        }
    }

    /// WAMP-CRA salt parameters to send: the principal's, or, for an unknown authid in a realm with salted
    /// secrets, a decoy salt derived from the authid (stable across attempts, so it looks real).
    pub fn salt(&self, principal: Option<usize>, authid: &str, key: &hmac::Key) -> Option<Salt> {
        match principal {
            Some(index) => self.list[index].wampcra.as_ref()?.1.clone(),
            None => {
                let (iterations, keylen) = self.decoy_salt?;
                let tag = hmac::sign(key, authid.as_bytes());
                Some(Salt {
                    salt: hex(&tag.as_ref()[..8]),
                    iterations,
                    keylen,
                })
            }
        }
    }

    /// Checks AUTHENTICATE's `signature` against the pending challenge.
    pub fn verify(
        &self,
        pending: &Pending,
        signature: &str,
        key: &hmac::Key,
    ) -> Option<Authenticated<'_>> {
        let principal = &self.list[pending.principal?];
        let ok = match pending.method {
            Method::Anonymous => false,
            Method::Ticket => principal
                .ticket
                .as_ref()
                .is_some_and(|tag| hmac::verify(key, signature.as_bytes(), tag.as_ref()).is_ok()),
            Method::WampCra => {
                let expected = base64::engine::general_purpose::STANDARD.decode(signature.trim());
                match (&principal.wampcra, expected) {
                    (Some((secret, _)), Ok(mac)) => {
                        hmac::verify(secret, &pending.challenge, &mac).is_ok()
                    }
                    _ => false,
                }
            }
            Method::Cryptosign => {
                verify_cryptosign(&principal.pubkeys, &pending.challenge, signature)
            }
        };
        ok.then_some(Authenticated {
            authid: &principal.authid,
            role: &principal.role,
        })
    }
}

/// `signature` is the hex of the 64-byte Ed25519 signature over the challenge, followed (as the spec requires,
/// autobahn does it) by the 32 challenge bytes; the signature alone is accepted too.
fn verify_cryptosign(pubkeys: &[[u8; 32]], challenge: &[u8], signature: &str) -> bool {
    let Some(bytes) = unhex(signature) else {
        return false;
    };
    let sig = match bytes.len() {
        64 => &bytes[..],
        96 if &bytes[64..] == challenge => &bytes[..64],
        _ => return false,
    };
    pubkeys.iter().any(|key| {
        UnparsedPublicKey::new(&ED25519, key)
            .verify(challenge, sig)
            .is_ok()
    })
}

/// A deterministic stream of unpredictable bytes: HMAC-SHA256 of a counter under a secret key (the binary draws
/// the key from the OS). Deterministic for a fixed key, so engine tests replay; unpredictable without the key.
#[derive(Debug)]
pub(crate) struct Nonces {
    key: hmac::Key,
    counter: u64,
}

impl Nonces {
    pub fn new(seed: &[u8; 32]) -> Nonces {
        Nonces {
            key: hmac::Key::new(hmac::HMAC_SHA256, seed),
            counter: 0,
        }
    }

    pub fn next(&mut self) -> [u8; 32] {
        self.counter += 1;
        let tag = hmac::sign(&self.key, &self.counter.to_le_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

/// The WAMP-CRA challenge string: a JSON object (keys in a fixed order; values escaped as JSON strings).
pub(crate) fn wampcra_challenge(
    authid: &str,
    authrole: &str,
    nonce: &[u8],
    unix_ms: u64,
    session: u64,
) -> String {
    let mut out = String::with_capacity(192);
    out.push_str("{\"authid\":");
    json_string(&mut out, authid);
    out.push_str(",\"authrole\":");
    json_string(&mut out, authrole);
    out.push_str(",\"authmethod\":\"wampcra\",\"authprovider\":\"static\",\"nonce\":\"");
    out.push_str(&base64::engine::general_purpose::STANDARD.encode(nonce));
    out.push_str("\",\"timestamp\":\"");
    out.push_str(&iso8601(unix_ms));
    let _ = write!(out, "\",\"session\":{session}}}");
    out
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `2014-06-22T16:36:25.448Z` for a Unix time in milliseconds (proleptic Gregorian calendar).
pub(crate) fn iso8601(unix_ms: u64) -> String {
    let (secs, ms) = (unix_ms / 1000, unix_ms % 1000);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (the era-based method: 400-year eras of 146097 days).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Decodes hex (either case); `None` for odd length or a non-hex digit.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// A 32-byte Ed25519 public key from hex.
pub fn parse_pubkey(text: &str) -> Option<[u8; 32]> {
    unhex(text)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn key() -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, b"router key")
    }

    #[test]
    fn iso8601_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_403_455_001_643), "2014-06-22T16:36:41.643Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn challenge_is_json() {
        let text = wampcra_challenge("pe\"ter", "user", &[1, 2, 3], 0, 42);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["authid"], "pe\"ter");
        assert_eq!(value["authmethod"], "wampcra");
        assert_eq!(value["session"], 42);
        assert_eq!(value["nonce"], "AQID");
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(unhex("00ff10Ab"), Some(vec![0, 255, 16, 171]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
        assert!(parse_pubkey(&"ab".repeat(32)).is_some());
        assert!(parse_pubkey(&"ab".repeat(31)).is_none());
    }

    /// The spec's test vector: private key seed 4d57..., challenge ff..ff.
    #[test]
    fn cryptosign_spec_vector() {
        let seed =
            unhex("4d57d97a68f555696620a6d849c0ce582568518d729eb753dc7c732de2804510").unwrap();
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
        let pubkey: [u8; 32] = pair.public_key().as_ref().try_into().unwrap();
        let challenge = [0xffu8; 32];
        let signature = "b32675b221f08593213737bef8240e7c15228b07028e19595294678c90d11c0cae80a357331bfc5cc9fb71081464e6e75013517c2cf067ad566a6b7b728e5d03ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
        assert!(verify_cryptosign(&[pubkey], &challenge, signature));
        assert!(verify_cryptosign(&[pubkey], &challenge, &signature[..128]));
        // A different challenge, a tampered signature, a wrong key: refused.
        assert!(!verify_cryptosign(
            &[pubkey],
            &[0xfe; 32],
            &signature[..128]
        ));
        let mut tampered = signature.to_string();
        tampered.replace_range(0..2, "b4");
        assert!(!verify_cryptosign(&[pubkey], &challenge, &tampered));
        assert!(!verify_cryptosign(&[[7; 32]], &challenge, signature));
        assert!(!verify_cryptosign(&[pubkey], &challenge, "not hex"));
    }

    fn principals() -> Principals {
        Principals::new(
            &AuthConfig {
                anonymous_role: None,
                principals: vec![
                    PrincipalConfig {
                        authid: "alice".into(),
                        role: "user".into(),
                        ticket: Some("open sesame".into()),
                        wampcra: None,
                        cryptosign: vec![],
                    },
                    PrincipalConfig {
                        authid: "bob".into(),
                        role: "admin".into(),
                        ticket: None,
                        wampcra: Some(WampCraSecret {
                            secret: derive_key(
                                "hunter2",
                                &Salt {
                                    salt: "salt123".into(),
                                    iterations: 100,
                                    keylen: 32,
                                },
                            ),
                            salt: Some(Salt {
                                salt: "salt123".into(),
                                iterations: 100,
                                keylen: 32,
                            }),
                        }),
                        cryptosign: vec![[9; 32]],
                    },
                ],
                roles: None,
            },
            &key(),
        )
    }

    #[test]
    fn choice_follows_the_clients_order_and_what_hello_carries() {
        let p = principals();
        let methods = |names: &[&str]| {
            names
                .iter()
                .filter_map(|n| Method::from_name(n))
                .collect::<Vec<_>>()
                .into_iter()
        };
        // Anonymous is off: skipped.
        assert!(p.choose(methods(&["anonymous"]), None, None).is_none());
        // Ticket needs an authid.
        assert!(p.choose(methods(&["ticket"]), None, None).is_none());
        assert!(matches!(
            p.choose(methods(&["anonymous", "ticket"]), Some("alice"), None),
            Some(Choice::Challenge {
                method: Method::Ticket,
                principal: Some(0)
            })
        ));
        // Unknown authid: still a challenge (fails later).
        assert!(matches!(
            p.choose(methods(&["wampcra"]), Some("mallory"), None),
            Some(Choice::Challenge {
                method: Method::WampCra,
                principal: None
            })
        ));
        // Cryptosign by key, with or without the matching authid; an unknown key skips to the next method.
        assert!(matches!(
            p.choose(methods(&["cryptosign"]), None, Some([9; 32])),
            Some(Choice::Challenge {
                method: Method::Cryptosign,
                principal: Some(1)
            })
        ));
        assert!(p
            .choose(methods(&["cryptosign"]), Some("alice"), Some([9; 32]))
            .is_none());
        assert!(matches!(
            p.choose(
                methods(&["cryptosign", "ticket"]),
                Some("alice"),
                Some([8; 32])
            ),
            Some(Choice::Challenge {
                method: Method::Ticket,
                ..
            })
        ));
        assert_eq!(p.available(), "ticket, wampcra, cryptosign");
    }

    #[test]
    fn ticket_and_wampcra_verification() {
        let p = principals();
        let pending = |method, principal, challenge: &[u8]| Pending {
            method,
            principal,
            authid: "x".into(),
            challenge: challenge.into(),
        };
        let k = key();
        assert!(p
            .verify(&pending(Method::Ticket, Some(0), b""), "open sesame", &k)
            .is_some());
        assert!(p
            .verify(&pending(Method::Ticket, Some(0), b""), "open sesam", &k)
            .is_none());
        assert!(p
            .verify(&pending(Method::Ticket, None, b""), "open sesame", &k)
            .is_none());
        let challenge = wampcra_challenge("bob", "admin", b"nonce", 0, 1);
        let derived = derive_key(
            "hunter2",
            &Salt {
                salt: "salt123".into(),
                iterations: 100,
                keylen: 32,
            },
        );
        let mac = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, derived.as_bytes()),
            challenge.as_bytes(),
        );
        let signature = base64::engine::general_purpose::STANDARD.encode(mac.as_ref());
        let ok = p.verify(
            &pending(Method::WampCra, Some(1), challenge.as_bytes()),
            &signature,
            &k,
        );
        assert_eq!(ok.map(|a| (a.authid, a.role)), Some(("bob", "admin")));
        let other = wampcra_challenge("bob", "admin", b"other", 0, 1);
        assert!(p
            .verify(
                &pending(Method::WampCra, Some(1), other.as_bytes()),
                &signature,
                &k
            )
            .is_none());
        // The decoy salt for an unknown authid is stable and looks like a salt.
        let decoy = p.salt(None, "mallory", &k).unwrap();
        assert_eq!(decoy, p.salt(None, "mallory", &k).unwrap());
        assert_eq!((decoy.iterations, decoy.keylen), (100, 32));
        assert_ne!(decoy.salt, p.salt(None, "eve", &k).unwrap().salt);
    }

    #[test]
    fn nonces_differ() {
        let mut n = Nonces::new(&[1; 32]);
        let (a, b) = (n.next(), n.next());
        assert_ne!(a, b);
        assert_ne!(Nonces::new(&[2; 32]).next(), a);
    }
}
