//! Authentication: anonymous, ticket, WAMP-CRA (with salted secrets) and cryptosign (Ed25519) against static
//! principals from the config.
//!
//! Cost to the router of an attempt: HELLO costs a table lookup and one HMAC (the nonce); nothing expensive
//! happens before the client has answered the challenge, and the answer costs one HMAC (ticket, WAMP-CRA) or one
//! Ed25519 verification (cryptosign). Secrets are compared in constant time (`ring::hmac::verify`).
//!
//! Nobody can list the principals: a HELLO for an unknown `authid` (or an unknown cryptosign key) gets a
//! challenge like any other and fails only at AUTHENTICATE, after the same work a known one costs (it is checked
//! against a decoy principal). A WAMP-CRA challenge names no role, and its salt (or the absence of one) for an
//! unknown authid is one of the realm's own presentations, picked by a keyed hash of the authid: with a mix of
//! salted and unsalted principals, an unknown authid looks salted or unsalted as often as known ones do, with a
//! salt of the same length, alphabet, iterations and key length as a real one, the same at every attempt and
//! across restarts (the key is derived from the realm's secrets).

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
    /// A session the router's own code opens (the HTTP bridge): joined without credentials, never chosen for a
    /// client ([`Method::from_name`] does not know it).
    Trusted,
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
            Method::Trusted => "trusted",
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
    /// How WAMP-CRA challenges look in this realm: each WAMP-CRA principal's salt (`None`: unsalted). An authid
    /// that is not a WAMP-CRA principal is shown one of them (see [`Principals::salt`]).
    shapes: Vec<Option<Salt>>,
    /// Key of the decoys, derived from the realm's secrets: stable across restarts, unknown to outsiders.
    decoy_key: hmac::Key,
    /// What an unknown authid or key is checked against, so that a refusal costs what an acceptance does.
    decoy: Principal,
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
        let decoy_key = decoy_key(config);
        let decoy_secret = hmac::sign(&decoy_key, b"decoy principal");
        let decoy_pubkey =
            ring::signature::Ed25519KeyPair::from_seed_unchecked(&decoy_secret.as_ref()[..32])
                .map(|pair| {
                    let mut key = [0u8; 32];
                    key.copy_from_slice(ring::signature::KeyPair::public_key(&pair).as_ref());
                    key
                })
                .unwrap_or([0; 32]);
        let mut principals = Principals {
            list: Vec::new(),
            by_authid: HashMap::new(),
            by_pubkey: HashMap::new(),
            anonymous_role: config.anonymous_role.as_deref().map(Into::into),
            shapes: (config.principals.iter())
                .filter_map(|p| p.wampcra.as_ref().map(|w| w.salt.clone()))
                .collect(),
            decoy: Principal {
                authid: "".into(),
                role: "".into(),
                ticket: Some(hmac::sign(key, decoy_secret.as_ref())),
                wampcra: Some((
                    hmac::Key::new(hmac::HMAC_SHA256, decoy_secret.as_ref()),
                    None,
                )),
                pubkeys: vec![decoy_pubkey],
            },
            decoy_key,
            tickets: config.principals.iter().any(|p| p.ticket.is_some()),
            wampcra: config.principals.iter().any(|p| p.wampcra.is_some()),
        };
        for p in &config.principals {
            let index = principals.list.len();
            principals.by_authid.insert(p.authid.as_str().into(), index);
            for key in &p.cryptosign {
                principals.by_pubkey.insert(*key, index);
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
            Method::Trusted => false,
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
                    if pubkey.is_none() || !self.offers(method) {
                        continue;
                    }
                    // An unknown key, or one of another principal than `authid`: a challenge all the same
                    // (it fails at AUTHENTICATE), so keys cannot be probed.
                    let principal = pubkey
                        .and_then(|key| self.by_pubkey.get(&key).copied())
                        .filter(|&index| authid.is_none_or(|a| *self.list[index].authid == *a));
                    return Some(Choice::Challenge { method, principal });
                }
                Method::Trusted => {}
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

    /// WAMP-CRA salt parameters to send: the principal's; for any other authid one of the realm's
    /// presentations (unsalted, or a salt shaped like one of the real ones), picked and filled by a keyed hash of
    /// the authid, so it is the same at every attempt. The decoy is computed in every case, so a known authid
    /// costs what an unknown one does.
    pub fn salt(&self, principal: Option<usize>, authid: &str) -> Option<Salt> {
        let tag = hmac::sign(&self.decoy_key, authid.as_bytes());
        let decoy = (!self.shapes.is_empty())
            .then(|| {
                let pick = u64::from_le_bytes(tag.as_ref()[..8].try_into().unwrap_or_default());
                let shape = self.shapes[(pick % self.shapes.len() as u64) as usize].as_ref()?;
                Some(Salt {
                    salt: mimic(&shape.salt, &self.decoy_key, tag.as_ref()),
                    iterations: shape.iterations,
                    keylen: shape.keylen,
                })
            })
            .flatten();
        match principal.and_then(|index| self.list[index].wampcra.as_ref()) {
            Some((_, salt)) => salt.clone(),
            None => decoy,
        }
    }

    /// Checks AUTHENTICATE's `signature` against the pending challenge.
    pub fn verify(
        &self,
        pending: &Pending,
        signature: &str,
        key: &hmac::Key,
    ) -> Option<Authenticated<'_>> {
        // An unknown authid is checked against the decoy, which nothing matches: the same work, the same answer.
        let (principal, known) = match pending.principal {
            Some(index) => (&self.list[index], true),
            None => (&self.decoy, false),
        };
        let verified = match pending.method {
            Method::Anonymous | Method::Trusted => false,
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
        (known && verified).then_some(Authenticated {
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

    /// Continues from `counter` (when it is ahead).
    pub fn skip_to(&mut self, counter: u64) {
        self.counter = self.counter.max(counter);
    }

    pub fn next(&mut self) -> [u8; 32] {
        self.counter += 1;
        let tag = hmac::sign(&self.key, &self.counter.to_le_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

/// The key of a realm's decoys: a hash of its secrets (so it is the same after a restart and nobody without the
/// configuration can compute it).
fn decoy_key(config: &AuthConfig) -> hmac::Key {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    digest.update(b"kreisel decoys\0");
    for p in &config.principals {
        for part in [
            p.authid.as_str(),
            p.ticket.as_deref().unwrap_or(""),
            p.wampcra.as_ref().map_or("", |w| w.secret.as_str()),
        ] {
            digest.update(&(part.len() as u64).to_le_bytes());
            digest.update(part.as_bytes());
        }
    }
    hmac::Key::new(hmac::HMAC_SHA256, digest.finish().as_ref())
}

/// A string as long as `template`, of characters drawn from `template`'s own, filled from a keyed stream seeded
/// with `seed` (a decoy salt shaped like a real one).
fn mimic(template: &str, key: &hmac::Key, seed: &[u8]) -> String {
    let mut alphabet: Vec<char> = template.chars().collect();
    alphabet.sort_unstable();
    alphabet.dedup();
    let len = template.chars().count();
    let mut out = String::with_capacity(template.len());
    let mut block = 0u32;
    while out.chars().count() < len && !alphabet.is_empty() {
        let mut input = seed.to_vec();
        input.extend_from_slice(&block.to_le_bytes());
        let bytes = hmac::sign(key, &input);
        for &b in bytes.as_ref().iter().take(len - out.chars().count()) {
            out.push(alphabet[usize::from(b) % alphabet.len()]);
        }
        block += 1;
    }
    out
}

/// The WAMP-CRA challenge string: a JSON object (keys in a fixed order; values escaped as JSON strings). It names
/// no role: the role is revealed only in WELCOME.
pub(crate) fn wampcra_challenge(authid: &str, nonce: &[u8], unix_ms: u64, session: u64) -> String {
    let mut out = String::with_capacity(192);
    out.push_str("{\"authid\":");
    json_string(&mut out, authid);
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
        let text = wampcra_challenge("pe\"ter", &[1, 2, 3], 0, 42);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["authid"], "pe\"ter");
        assert!(
            value.get("authrole").is_none(),
            "the role is told only in WELCOME"
        );
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
        // Cryptosign by key, with or without the matching authid; an unknown key, or the key of another
        // principal than the authid, gets a challenge all the same (it fails at AUTHENTICATE).
        assert!(matches!(
            p.choose(methods(&["cryptosign"]), None, Some([9; 32])),
            Some(Choice::Challenge {
                method: Method::Cryptosign,
                principal: Some(1)
            })
        ));
        for (authid, key) in [(Some("alice"), [9; 32]), (None, [8; 32])] {
            assert!(matches!(
                p.choose(methods(&["cryptosign", "ticket"]), authid, Some(key)),
                Some(Choice::Challenge {
                    method: Method::Cryptosign,
                    principal: None
                })
            ));
        }
        // Without a key, cryptosign is skipped.
        assert!(matches!(
            p.choose(methods(&["cryptosign", "ticket"]), Some("alice"), None),
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
        let challenge = wampcra_challenge("bob", b"nonce", 0, 1);
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
        let other = wampcra_challenge("bob", b"other", 0, 1);
        assert!(p
            .verify(
                &pending(Method::WampCra, Some(1), other.as_bytes()),
                &signature,
                &k
            )
            .is_none());
        // A wrong signature for an unknown authid is refused after the same checks (against the decoy).
        assert!(p
            .verify(
                &pending(Method::WampCra, None, challenge.as_bytes()),
                &signature,
                &k
            )
            .is_none());
    }

    /// A realm with one salted and one unsalted WAMP-CRA principal: unknown authids look salted about as often as
    /// not, with salts shaped like the real one, the same at every attempt and after a restart (another router
    /// key).
    #[test]
    fn unknown_authids_look_like_known_ones() {
        let salted = |authid: &str, salt: &str| PrincipalConfig {
            authid: authid.into(),
            role: "backend".into(),
            ticket: None,
            wampcra: Some(WampCraSecret {
                secret: "derived".into(),
                salt: (!salt.is_empty()).then(|| Salt {
                    salt: salt.into(),
                    iterations: 1000,
                    keylen: 32,
                }),
            }),
            cryptosign: vec![],
        };
        let config = AuthConfig {
            principals: vec![salted("carol", ""), salted("bob", "q7ZtVb3kLp0xWn2R")],
            ..AuthConfig::default()
        };
        let mixed = Principals::new(&config, &key());
        let restarted = Principals::new(&config, &hmac::Key::new(hmac::HMAC_SHA256, b"other"));
        assert_eq!(mixed.salt(Some(0), "carol"), None);
        let real = mixed.salt(Some(1), "bob").unwrap();
        let alphabet = |s: &str| {
            let mut chars: Vec<char> = s.chars().collect();
            chars.sort_unstable();
            chars.dedup();
            chars
        };
        let mut shown_salted = 0;
        for i in 0..200 {
            let authid = format!("user{i}");
            let decoy = mixed.salt(None, &authid);
            assert_eq!(decoy, mixed.salt(None, &authid), "stable");
            assert_eq!(
                decoy,
                restarted.salt(None, &authid),
                "the same after a restart"
            );
            if let Some(decoy) = decoy {
                shown_salted += 1;
                assert_eq!(
                    (decoy.iterations, decoy.keylen),
                    (real.iterations, real.keylen)
                );
                assert_eq!(decoy.salt.len(), real.salt.len());
                assert!(alphabet(&decoy.salt)
                    .iter()
                    .all(|c| alphabet(&real.salt).contains(c)));
            }
        }
        assert!(
            (60..=140).contains(&shown_salted),
            "{shown_salted} of 200 salted"
        );
    }

    #[test]
    fn nonces_differ() {
        let mut n = Nonces::new(&[1; 32]);
        let (a, b) = (n.next(), n.next());
        assert_ne!(a, b);
        assert_ne!(Nonces::new(&[2; 32]).next(), a);
    }
}
