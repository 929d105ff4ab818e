//! WAMP-SCRAM: salted challenge-response authentication (RFC 5802 with SHA-256 as in RFC 7677, Argon2id or
//! PBKDF2 as the key derivation function), as pure functions the router calls. No I/O, no clock, no randomness:
//! the router's nonce is an input.
//!
//! # What the router stores
//!
//! A principal's [`Credential`]: the KDF, its salt and cost parameters, and `StoredKey` and `ServerKey`. Never
//! the password, and nothing from which a login could be computed without the password or an eavesdropped
//! exchange (see the spec's security considerations). [`Credential::derive`] computes one from a password, for
//! an offline helper; [`Credential::parse`] reads one from the configuration's text forms (hex).
//!
//! # Cost
//!
//! The KDF (Argon2id with autobahn's default parameters: 4096 passes over 512 KiB; or PBKDF2) runs on the client,
//! and when the credential is made; never in the router. An attempt costs the router, at HELLO, the building of
//! the challenge (string formatting), and at AUTHENTICATE one HMAC-SHA256 (`ClientSignature`), one SHA-256
//! (`StoredKey` recovered from the proof), one constant-time comparison and one HMAC-SHA256 (`ServerSignature`,
//! computed whether the proof is right or not).
//!
//! # Dialects
//!
//! The router accepts two method names, and they are two protocols on the wire, not two spellings:
//!
//! | | `wamp-scram` ([`Dialect::Spec`]) | `scram` ([`Dialect::Crossbar`]) |
//! | --- | --- | --- |
//! | who speaks it | the WAMP spec (advanced profile, "WAMP-SCRAM") | crossbar.io; autobahn-python's `AuthScram` |
//! | CHALLENGE `nonce` | the client's nonce text followed by base64 of the router's nonce | base64 of the client's nonce octets followed by the router's |
//! | user in `AuthMessage` | `n=` + authid with `,` and `=` escaped as `=2C`, `=3D` | `n=` + SASLprep(authid), not escaped |
//! | channel binding in `AuthMessage` | `c=` + base64 of the GS2 header and binding data (`c=biws` without) | `c=` and nothing |
//! | AUTHENTICATE `Extra` | `nonce` must be the challenge's; `channel_binding` and `cbind_data` must match HELLO and the transport | ignored (autobahn sends none) |
//! | WELCOME `authextra` | `verifier`: base64 of `ServerSignature` | `scram_server_signature`: base64 of `ServerSignature` |
//!
//! And the key derivation functions ([`Kdf`]); the credential's KDF decides, whatever the dialect:
//!
//! | `kdf` | SaltedPassword | password |
//! | --- | --- | --- |
//! | `argon2id13` (spec) | Argon2id v1.3, parallelism 1, 32 octets | SASLprep |
//! | `argon2id-13` (autobahn, crossbar) | the same Argon2id, as unpadded base64 text: what autobahn's `AuthScram` and `derive_scram_credential` compute | UTF-8 as given |
//! | `pbkdf2` (spec) | PBKDF2-HMAC-SHA256, 32 octets | SASLprep |
//!
//! autobahn-python (26.10.2) speaks only `scram` with `argon2id-13`: it refuses a `kdf` of `argon2id13`, and its
//! `pbkdf2` branch fails before it computes anything (it passes the salt as text to a function that wants bytes).
//!
//! # Channel binding
//!
//! The spec lets HELLO ask for a binding type (`tls-unique`, `tls-server-end-point`; `tls-exporter` of RFC 9266 is
//! recognized too). The binding data must come from the transport ([`ChannelBindings`]); the router has none today,
//! so [`start`] refuses every binding request with [`Error::UnsupportedChannelBinding`] (the spec's answer:
//! ABORT) and accepts only `channel_binding` absent or `null`. The `scram` dialect never binds.
//!
//! # Unknown authids
//!
//! Run the same exchange against [`Credential::decoy`] (deterministic per authid under a secret key, shaped like
//! the realm's real credentials) with `known = false`: the challenge looks like a real one, the salt is the same at
//! every attempt, AUTHENTICATE costs what it costs for a known principal, and [`Pending::verify`] refuses with the
//! same [`Error::InvalidProof`] as for a wrong password.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use ring::{digest, hmac};
use subtle::ConstantTimeEq as _;

/// Length of `StoredKey`, `ServerKey`, `ClientProof` and `ServerSignature`, and of the KDF output.
pub const KEY_LEN: usize = 32;
/// Salt lengths [`Credential::parse`] and [`Credential::derive`] accept, in octets (Argon2 needs at least 8).
pub const SALT_LEN: std::ops::RangeInclusive<usize> = 8..=64;
/// The smallest Argon2 memory cost with parallelism 1, in KiB.
pub const ARGON2_MEMORY_MIN: u32 = 8;
/// The largest Argon2 memory cost accepted, in KiB (4 GiB): more than any client can be asked for.
pub const ARGON2_MEMORY_MAX: u32 = 4 * 1024 * 1024;
/// The router's nonce: at least this many random octets ...
pub const SERVER_NONCE_MIN: usize = 16;
/// ... and at most this many.
pub const SERVER_NONCE_MAX: usize = 64;
/// The longest client nonce accepted, in characters of its base64 text.
pub const CLIENT_NONCE_MAX: usize = 256;
/// autobahn's `derive_scram_credential` parameters (`argon2id-13`): passes ...
pub const AUTOBAHN_ITERATIONS: u32 = 4096;
/// ... memory in KiB ...
pub const AUTOBAHN_MEMORY: u32 = 512;
/// ... and salt length in octets.
pub const AUTOBAHN_SALT_LEN: usize = 16;

/// Which protocol an attempt speaks, chosen by the method name in HELLO's `authmethods`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// `wamp-scram`, as the WAMP spec defines it.
    Spec,
    /// `scram`, as crossbar.io and autobahn-python's `AuthScram` speak it.
    Crossbar,
}

impl Dialect {
    /// The dialect of an `authmethods` entry; `None` for other methods.
    pub fn from_method(name: &str) -> Option<Dialect> {
        match name {
            "wamp-scram" => Some(Dialect::Spec),
            "scram" => Some(Dialect::Crossbar),
            _ => None,
        }
    }

    /// The method name, for CHALLENGE and WELCOME.
    pub fn method(self) -> &'static str {
        match self {
            Dialect::Spec => "wamp-scram",
            Dialect::Crossbar => "scram",
        }
    }

    /// The WELCOME `authextra` key that carries the server signature.
    pub fn welcome_key(self) -> &'static str {
        match self {
            Dialect::Spec => "verifier",
            Dialect::Crossbar => "scram_server_signature",
        }
    }
}

/// A key derivation function, as named in the configuration and in CHALLENGE's `kdf`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kdf {
    /// `argon2id13`: the spec's Argon2id; SaltedPassword is the 32 raw octets.
    Argon2id13,
    /// `argon2id-13`: autobahn's and crossbar's Argon2id; SaltedPassword is the unpadded base64 text of the 32
    /// octets, and the password is not normalized.
    Argon2id13Autobahn,
    /// `pbkdf2`: PBKDF2-HMAC-SHA256, 32 octets.
    Pbkdf2,
}

impl Kdf {
    pub fn from_name(name: &str) -> Option<Kdf> {
        match name {
            "argon2id13" => Some(Kdf::Argon2id13),
            "argon2id-13" => Some(Kdf::Argon2id13Autobahn),
            "pbkdf2" => Some(Kdf::Pbkdf2),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kdf::Argon2id13 => "argon2id13",
            Kdf::Argon2id13Autobahn => "argon2id-13",
            Kdf::Pbkdf2 => "pbkdf2",
        }
    }

    pub fn is_argon2(self) -> bool {
        matches!(self, Kdf::Argon2id13 | Kdf::Argon2id13Autobahn)
    }
}

/// What is wrong with a credential or its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialError {
    /// `kdf` is none of `argon2id13`, `argon2id-13`, `pbkdf2`.
    UnknownKdf(String),
    /// The salt is not hex.
    SaltNotHex,
    /// The salt is not [`SALT_LEN`] octets long.
    SaltLength(usize),
    /// `iterations` is 0.
    Iterations,
    /// Argon2 without `memory`.
    MemoryMissing,
    /// `memory` with PBKDF2.
    MemoryNotApplicable,
    /// `memory` outside [`ARGON2_MEMORY_MIN`] ..= [`ARGON2_MEMORY_MAX`].
    MemoryRange(u32),
    /// `stored_key` or `server_key` (named) is not 64 hex digits.
    Key(&'static str),
    /// The password is not allowed by SASLprep (RFC 4013), which the spec's KDFs apply to it.
    Password(String),
    /// The KDF refused its inputs.
    Kdf(String),
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialError::UnknownKdf(kdf) => write!(
                f,
                "unknown kdf \"{kdf}\" (expected \"argon2id13\", \"argon2id-13\" or \"pbkdf2\")"
            ),
            CredentialError::SaltNotHex => write!(f, "the salt must be hex"),
            CredentialError::SaltLength(len) => write!(
                f,
                "the salt has {len} octets, it must have {} to {}",
                SALT_LEN.start(),
                SALT_LEN.end()
            ),
            CredentialError::Iterations => write!(f, "iterations must be at least 1"),
            CredentialError::MemoryMissing => write!(f, "argon2 needs memory (KiB)"),
            CredentialError::MemoryNotApplicable => {
                write!(f, "memory applies to argon2 only, not to pbkdf2")
            }
            CredentialError::MemoryRange(memory) => write!(
                f,
                "memory is {memory} KiB, it must be within {ARGON2_MEMORY_MIN} ..= {ARGON2_MEMORY_MAX}"
            ),
            CredentialError::Key(which) => write!(f, "{which} must be 64 hex digits (32 octets)"),
            CredentialError::Password(why) => write!(f, "the password is not allowed: {why}"),
            CredentialError::Kdf(why) => write!(f, "key derivation failed: {why}"),
        }
    }
}

impl std::error::Error for CredentialError {}

/// A principal's SCRAM credential: what the router stores instead of the password.
///
/// `PartialEq` compares everything, keys included, not in constant time: it is for configuration reloads, not
/// for authentication. `Debug` leaves the keys out.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    kdf: Kdf,
    salt: Box<[u8]>,
    iterations: u32,
    memory: Option<u32>,
    stored_key: [u8; KEY_LEN],
    server_key: [u8; KEY_LEN],
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("kdf", &self.kdf.name())
            .field("salt", &crate::auth::hex(&self.salt))
            .field("iterations", &self.iterations)
            .field("memory", &self.memory)
            .finish_non_exhaustive()
    }
}

/// What a credential looks like from outside (its CHALLENGE), for decoys: KDF, salt length, cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    pub kdf: Kdf,
    pub salt_len: usize,
    pub iterations: u32,
    pub memory: Option<u32>,
}

impl Default for Shape {
    /// What autobahn's `derive_scram_credential` makes: `argon2id-13`, 16-octet salt, 4096 passes, 512 KiB.
    fn default() -> Shape {
        Shape {
            kdf: Kdf::Argon2id13Autobahn,
            salt_len: AUTOBAHN_SALT_LEN,
            iterations: AUTOBAHN_ITERATIONS,
            memory: Some(AUTOBAHN_MEMORY),
        }
    }
}

fn check_params(
    kdf: Kdf,
    salt_len: usize,
    iterations: u32,
    memory: Option<u32>,
) -> Result<(), CredentialError> {
    if !SALT_LEN.contains(&salt_len) {
        return Err(CredentialError::SaltLength(salt_len));
    }
    if iterations == 0 {
        return Err(CredentialError::Iterations);
    }
    match (kdf.is_argon2(), memory) {
        (true, None) => Err(CredentialError::MemoryMissing),
        (false, Some(_)) => Err(CredentialError::MemoryNotApplicable),
        (true, Some(m)) if !(ARGON2_MEMORY_MIN..=ARGON2_MEMORY_MAX).contains(&m) => {
            Err(CredentialError::MemoryRange(m))
        }
        _ => Ok(()),
    }
}

impl Credential {
    /// A credential from the configuration's text forms: the KDF's name, the salt, `stored_key` and `server_key`
    /// in hex (either case; the forms autobahn's `derive_scram_credential` prints and crossbar's configuration
    /// holds), `iterations`, and `memory` in KiB (Argon2 only).
    pub fn parse(
        kdf: &str,
        salt: &str,
        iterations: u32,
        memory: Option<u32>,
        stored_key: &str,
        server_key: &str,
    ) -> Result<Credential, CredentialError> {
        let kdf = Kdf::from_name(kdf).ok_or_else(|| CredentialError::UnknownKdf(kdf.into()))?;
        let salt = crate::auth::unhex(salt).ok_or(CredentialError::SaltNotHex)?;
        check_params(kdf, salt.len(), iterations, memory)?;
        let key = |text: &str, which| {
            crate::auth::unhex(text)
                .and_then(|bytes| <[u8; KEY_LEN]>::try_from(bytes).ok())
                .ok_or(CredentialError::Key(which))
        };
        Ok(Credential {
            kdf,
            salt: salt.into(),
            iterations,
            memory,
            stored_key: key(stored_key, "stored_key")?,
            server_key: key(server_key, "server_key")?,
        })
    }

    /// Derives the credential of `password` (runs the KDF: Argon2id with autobahn's parameters takes about a
    /// second and 512 KiB). `salt` must be random and per principal (the caller draws it).
    pub fn derive(
        password: &str,
        kdf: Kdf,
        salt: &[u8],
        iterations: u32,
        memory: Option<u32>,
    ) -> Result<Credential, CredentialError> {
        check_params(kdf, salt.len(), iterations, memory)?;
        let salted = salted_password(password, kdf, salt, iterations, memory)?;
        let (stored_key, server_key) = keys(&salted);
        Ok(Credential {
            kdf,
            salt: salt.into(),
            iterations,
            memory,
            stored_key,
            server_key,
        })
    }

    /// A credential for an authid that has none, which no proof matches in practice (its keys are HMAC outputs
    /// under `key`, not derived from a password) and which looks like a real one: one of `shapes` (the realm's
    /// real credentials' [`Credential::shape`]s; [`Shape::default`] when empty), picked and filled by a keyed hash
    /// of `authid`, so an unknown authid gets the same salt at every attempt and after a restart with the same
    /// key. `key` must be secret (at least 32 random octets, or derived from the realm's secrets); nothing else
    /// tells decoys from real credentials.
    pub fn decoy(key: &[u8], authid: &str, shapes: &[Shape]) -> Credential {
        let key = hmac::Key::new(hmac::HMAC_SHA256, key);
        let tag = |label: &[u8], block: u32| {
            let mut ctx = hmac::Context::with_key(&key);
            ctx.update(b"kreisel scram decoy\0");
            ctx.update(label);
            ctx.update(&block.to_le_bytes());
            ctx.update(authid.as_bytes());
            ctx.sign()
        };
        let shape = if shapes.is_empty() {
            Shape::default()
        } else {
            let pick = tag(b"shape", 0).as_ref()[..8]
                .iter()
                .fold(0u64, |acc, &b| acc << 8 | u64::from(b));
            shapes[(pick % shapes.len() as u64) as usize]
        };
        let salt_len = shape.salt_len.clamp(*SALT_LEN.start(), *SALT_LEN.end());
        let mut salt = Vec::with_capacity(salt_len);
        let mut block = 0;
        while salt.len() < salt_len {
            let bytes = tag(b"salt", block);
            let take = (salt_len - salt.len()).min(KEY_LEN);
            salt.extend_from_slice(&bytes.as_ref()[..take]);
            block += 1;
        }
        let fill = |label| {
            let mut out = [0u8; KEY_LEN];
            out.copy_from_slice(tag(label, 0).as_ref());
            out
        };
        Credential {
            kdf: shape.kdf,
            salt: salt.into(),
            iterations: shape.iterations.max(1),
            memory: match shape.kdf {
                Kdf::Pbkdf2 => None,
                _ => Some(
                    shape
                        .memory
                        .unwrap_or(AUTOBAHN_MEMORY)
                        .clamp(ARGON2_MEMORY_MIN, ARGON2_MEMORY_MAX),
                ),
            },
            stored_key: fill(b"stored"),
            server_key: fill(b"server"),
        }
    }

    /// What this credential's challenge shows: for [`Credential::decoy`].
    pub fn shape(&self) -> Shape {
        Shape {
            kdf: self.kdf,
            salt_len: self.salt.len(),
            iterations: self.iterations,
            memory: self.memory,
        }
    }

    pub fn kdf(&self) -> Kdf {
        self.kdf
    }

    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Argon2 memory cost in KiB; `None` for PBKDF2.
    pub fn memory(&self) -> Option<u32> {
        self.memory
    }

    pub fn salt_hex(&self) -> String {
        crate::auth::hex(&self.salt)
    }

    pub fn stored_key_hex(&self) -> String {
        crate::auth::hex(&self.stored_key)
    }

    pub fn server_key_hex(&self) -> String {
        crate::auth::hex(&self.server_key)
    }
}

/// `SaltedPassword` (see [`Kdf`]).
fn salted_password(
    password: &str,
    kdf: Kdf,
    salt: &[u8],
    iterations: u32,
    memory: Option<u32>,
) -> Result<Vec<u8>, CredentialError> {
    let normalized;
    let password = match kdf {
        Kdf::Argon2id13Autobahn => password,
        Kdf::Argon2id13 | Kdf::Pbkdf2 => {
            normalized = stringprep::saslprep(password)
                .map_err(|e| CredentialError::Password(e.to_string()))?;
            &normalized
        }
    };
    let mut out = [0u8; KEY_LEN];
    match kdf {
        Kdf::Pbkdf2 => {
            let iterations =
                std::num::NonZeroU32::new(iterations).ok_or(CredentialError::Iterations)?;
            ring::pbkdf2::derive(
                ring::pbkdf2::PBKDF2_HMAC_SHA256,
                iterations,
                salt,
                password.as_bytes(),
                &mut out,
            );
            Ok(out.to_vec())
        }
        Kdf::Argon2id13 | Kdf::Argon2id13Autobahn => {
            let memory = memory.ok_or(CredentialError::MemoryMissing)?;
            let params = argon2::Params::new(memory, iterations, 1, Some(KEY_LEN))
                .map_err(|e| CredentialError::Kdf(e.to_string()))?;
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password_into(password.as_bytes(), salt, &mut out)
                .map_err(|e| CredentialError::Kdf(e.to_string()))?;
            Ok(match kdf {
                Kdf::Argon2id13Autobahn => STANDARD_NO_PAD.encode(out).into_bytes(),
                _ => out.to_vec(),
            })
        }
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    out.copy_from_slice(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message).as_ref());
    out
}

fn sha256(data: &[u8]) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

/// `(StoredKey, ServerKey)` of a `SaltedPassword`.
fn keys(salted_password: &[u8]) -> ([u8; KEY_LEN], [u8; KEY_LEN]) {
    let client_key = hmac_sha256(salted_password, b"Client Key");
    (
        sha256(&client_key),
        hmac_sha256(salted_password, b"Server Key"),
    )
}

/// A channel binding type (RFC 5929, RFC 9266).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelBindingType {
    TlsUnique,
    TlsServerEndPoint,
    TlsExporter,
}

impl ChannelBindingType {
    pub fn from_name(name: &str) -> Option<ChannelBindingType> {
        match name {
            "tls-unique" => Some(ChannelBindingType::TlsUnique),
            "tls-server-end-point" => Some(ChannelBindingType::TlsServerEndPoint),
            "tls-exporter" => Some(ChannelBindingType::TlsExporter),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ChannelBindingType::TlsUnique => "tls-unique",
            ChannelBindingType::TlsServerEndPoint => "tls-server-end-point",
            ChannelBindingType::TlsExporter => "tls-exporter",
        }
    }
}

/// The channel binding data the transport vouches for. Without TLS, and today with it too, none
/// ([`ChannelBindings::NONE`]): then every binding request is refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelBindings<'a> {
    pub tls_unique: Option<&'a [u8]>,
    pub tls_server_end_point: Option<&'a [u8]>,
    pub tls_exporter: Option<&'a [u8]>,
}

impl<'a> ChannelBindings<'a> {
    pub const NONE: ChannelBindings<'static> = ChannelBindings {
        tls_unique: None,
        tls_server_end_point: None,
        tls_exporter: None,
    };

    fn get(&self, kind: ChannelBindingType) -> Option<&'a [u8]> {
        match kind {
            ChannelBindingType::TlsUnique => self.tls_unique,
            ChannelBindingType::TlsServerEndPoint => self.tls_server_end_point,
            ChannelBindingType::TlsExporter => self.tls_exporter,
        }
    }
}

/// Why an attempt failed. Every variant is about the client's messages or the caller's inputs, never about
/// whether the authid exists: an unknown authid fails exactly as a wrong password does ([`Error::InvalidProof`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// HELLO: no `authextra.nonce`.
    MissingNonce,
    /// HELLO: `authextra.nonce` is not canonical base64 of at least one octet, or longer than
    /// [`CLIENT_NONCE_MAX`].
    InvalidNonce,
    /// HELLO: a `channel_binding` the router cannot honour (unknown type, no binding data, or the `scram`
    /// dialect).
    UnsupportedChannelBinding,
    /// HELLO, `scram` dialect: SASLprep refuses the authid.
    InvalidAuthid,
    /// The caller's nonce is not [`SERVER_NONCE_MIN`] ..= [`SERVER_NONCE_MAX`] octets (a bug in the caller).
    ServerNonceLength,
    /// AUTHENTICATE: the signature is not canonical base64 of 32 octets.
    InvalidProofEncoding,
    /// AUTHENTICATE (`wamp-scram`): `Extra.nonce` is missing or is not the challenge's.
    NonceMismatch,
    /// AUTHENTICATE (`wamp-scram`): `Extra.channel_binding` is not HELLO's, or `cbind_data` is missing, present
    /// without a binding, or not the transport's.
    ChannelBindingMismatch,
    /// AUTHENTICATE: the proof is wrong, or the authid unknown.
    InvalidProof,
}

impl Error {
    /// The RFC 5802 `server-error-value` for ABORT's optional `Details.scram`.
    pub fn scram_error(self) -> &'static str {
        match self {
            Error::MissingNonce
            | Error::InvalidNonce
            | Error::InvalidProofEncoding
            | Error::NonceMismatch => "invalid-encoding",
            Error::UnsupportedChannelBinding => "unsupported-channel-binding-type",
            Error::InvalidAuthid => "invalid-username-encoding",
            Error::ServerNonceLength => "other-error",
            Error::ChannelBindingMismatch => "channel-bindings-dont-match",
            Error::InvalidProof => "invalid-proof",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::MissingNonce => "HELLO.Details.authextra.nonce is missing",
            Error::InvalidNonce => "HELLO.Details.authextra.nonce must be canonical base64",
            Error::UnsupportedChannelBinding => "the requested channel binding is not supported",
            Error::InvalidAuthid => "the authid is not allowed by SASLprep",
            Error::ServerNonceLength => "the router nonce has the wrong length",
            Error::InvalidProofEncoding => "the signature must be base64 of 32 octets",
            Error::NonceMismatch => "AUTHENTICATE.Extra.nonce is not the challenge's",
            Error::ChannelBindingMismatch => "the channel binding does not match",
            Error::InvalidProof => "authentication failed",
        })
    }
}

impl std::error::Error for Error {}

/// What HELLO carried for SCRAM. `None`: absent or `null`. The caller refuses values of other types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello<'a> {
    /// `HELLO.Details.authid` (SCRAM needs one).
    pub authid: &'a str,
    /// `HELLO.Details.authextra.nonce`.
    pub nonce: Option<&'a str>,
    /// `HELLO.Details.authextra.channel_binding`.
    pub channel_binding: Option<&'a str>,
}

/// What AUTHENTICATE carried. `None`: absent or `null`. The caller refuses values of other types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Authenticate<'a> {
    /// `AUTHENTICATE.Signature`: base64 of `ClientProof`.
    pub signature: &'a str,
    /// `AUTHENTICATE.Extra.nonce`.
    pub nonce: Option<&'a str>,
    /// `AUTHENTICATE.Extra.channel_binding`.
    pub channel_binding: Option<&'a str>,
    /// `AUTHENTICATE.Extra.cbind_data`.
    pub cbind_data: Option<&'a str>,
}

/// The fields of `CHALLENGE.Extra`. Send exactly these (autobahn refuses a challenge with any other key);
/// `memory` only when `Some` (autobahn fails on a `null` one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Challenge<'a> {
    pub nonce: &'a str,
    /// Base64 of the salt.
    pub salt: &'a str,
    pub kdf: &'static str,
    pub iterations: u32,
    pub memory: Option<u32>,
}

/// An attempt between CHALLENGE and AUTHENTICATE: everything [`Pending::verify`] needs, the keys included (so
/// a configuration reload does not change an attempt under way). `Debug` leaves the keys out.
#[derive(Clone)]
pub struct Pending {
    dialect: Dialect,
    known: bool,
    /// The combined nonce (CHALLENGE's).
    nonce: String,
    /// Base64 of the salt.
    salt: String,
    kdf: Kdf,
    iterations: u32,
    memory: Option<u32>,
    /// `client-first-message-bare "," server-first-message`: the start of `AuthMessage`.
    prefix: String,
    binding: Option<(ChannelBindingType, Box<[u8]>)>,
    stored_key: [u8; KEY_LEN],
    server_key: [u8; KEY_LEN],
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("dialect", &self.dialect)
            .field("nonce", &self.nonce)
            .field("prefix", &self.prefix)
            .field("binding", &self.binding.as_ref().map(|(kind, _)| kind))
            .finish_non_exhaustive()
    }
}

/// A successful AUTHENTICATE: the server signature for WELCOME.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    dialect: Dialect,
    server_signature: [u8; KEY_LEN],
}

impl Verified {
    /// The WELCOME `authextra` key: `verifier` (`wamp-scram`) or `scram_server_signature` (`scram`).
    pub fn authextra_key(&self) -> &'static str {
        self.dialect.welcome_key()
    }

    /// Its value: base64 of `ServerSignature`.
    pub fn server_signature(&self) -> String {
        STANDARD.encode(self.server_signature)
    }
}

/// Decodes canonical base64 (RFC 4648, padded, no whitespace, no stray bits).
fn unbase64(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text).ok()
}

/// `Escape(str)` of the spec: `,` and `=` as `=2C` and `=3D`.
fn escape(authid: &str) -> String {
    let mut out = String::with_capacity(authid.len());
    for c in authid.chars() {
        match c {
            ',' => out.push_str("=2C"),
            '=' => out.push_str("=3D"),
            c => out.push(c),
        }
    }
    out
}

/// SASLprep (RFC 4013) as passlib's `saslprep` computes it, which autobahn's `AuthScram` and crossbar apply to the
/// authid. U+200B ZERO WIDTH SPACE is in both of the RFC's mapping tables (non-ASCII spaces, C.1.2, mapped to a
/// space; "commonly mapped to nothing", B.1): passlib removes it, the `stringprep` crate makes it a space. It is
/// the only character in both tables, so removing it first and then running the crate gives passlib's result
/// (checked against passlib in the tests). `None`: refused (prohibited characters, bidirectional rules).
fn saslprep_as_passlib(text: &str) -> Option<String> {
    if text.contains('\u{200b}') {
        let removed: String = text.chars().filter(|&c| c != '\u{200b}').collect();
        return stringprep::saslprep(&removed).ok().map(|s| s.into_owned());
    }
    stringprep::saslprep(text).ok().map(|s| s.into_owned())
}

/// HELLO: checks what the client sent and prepares the challenge. `credential` is the principal's, or a
/// [`Credential::decoy`] with `known = false` for an authid without one; `server_nonce` is
/// [`SERVER_NONCE_MIN`] ..= [`SERVER_NONCE_MAX`] random octets from the caller; `bindings` is what the transport
/// offers for channel binding ([`ChannelBindings::NONE`] today). An error means ABORT (none depends on the
/// authid's existence).
pub fn start(
    dialect: Dialect,
    hello: &Hello<'_>,
    credential: &Credential,
    known: bool,
    server_nonce: &[u8],
    bindings: &ChannelBindings<'_>,
) -> Result<Pending, Error> {
    if !(SERVER_NONCE_MIN..=SERVER_NONCE_MAX).contains(&server_nonce.len()) {
        return Err(Error::ServerNonceLength);
    }
    let client_nonce = hello.nonce.ok_or(Error::MissingNonce)?;
    let client_octets = (client_nonce.len() <= CLIENT_NONCE_MAX)
        .then(|| unbase64(client_nonce))
        .flatten()
        .filter(|octets| !octets.is_empty())
        .ok_or(Error::InvalidNonce)?;
    let binding = match (dialect, hello.channel_binding) {
        (_, None) => None,
        (Dialect::Crossbar, Some(_)) => return Err(Error::UnsupportedChannelBinding),
        (Dialect::Spec, Some(name)) => {
            let kind =
                ChannelBindingType::from_name(name).ok_or(Error::UnsupportedChannelBinding)?;
            let data = bindings.get(kind).ok_or(Error::UnsupportedChannelBinding)?;
            Some((kind, data.into()))
        }
    };
    let (user, nonce) = match dialect {
        Dialect::Spec => (
            escape(hello.authid),
            format!("{client_nonce}{}", STANDARD.encode(server_nonce)),
        ),
        Dialect::Crossbar => {
            let user = saslprep_as_passlib(hello.authid).ok_or(Error::InvalidAuthid)?;
            let mut octets = client_octets;
            octets.extend_from_slice(server_nonce);
            (user, STANDARD.encode(octets))
        }
    };
    Ok(Pending::new(
        dialect,
        &user,
        client_nonce,
        nonce,
        credential,
        known,
        binding,
    ))
}

impl Pending {
    /// `user` is the `AuthMessage`'s form of the authid (escaped or SASLprep'd), `nonce` the combined nonce.
    fn new(
        dialect: Dialect,
        user: &str,
        client_nonce: &str,
        nonce: String,
        credential: &Credential,
        known: bool,
        binding: Option<(ChannelBindingType, Box<[u8]>)>,
    ) -> Pending {
        let salt = STANDARD.encode(&credential.salt);
        let prefix = format!(
            "n={user},r={client_nonce},r={nonce},s={salt},i={}",
            credential.iterations
        );
        Pending {
            dialect,
            known,
            nonce,
            salt,
            kdf: credential.kdf,
            iterations: credential.iterations,
            memory: credential.memory,
            prefix,
            binding,
            stored_key: credential.stored_key,
            server_key: credential.server_key,
        }
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// `CHALLENGE.Extra`.
    pub fn challenge(&self) -> Challenge<'_> {
        Challenge {
            nonce: &self.nonce,
            salt: &self.salt,
            kdf: self.kdf.name(),
            iterations: self.iterations,
            memory: self.memory,
        }
    }

    /// `AuthMessage` = client-first-message-bare, server-first-message, client-final-message-without-proof.
    fn auth_message(&self) -> String {
        let mut message = String::with_capacity(self.prefix.len() + self.nonce.len() + 64);
        message.push_str(&self.prefix);
        message.push_str(",c=");
        if self.dialect == Dialect::Spec {
            let mut input = match &self.binding {
                None => b"n,,".to_vec(),
                Some((kind, _)) => format!("p={},,", kind.name()).into_bytes(),
            };
            if let Some((_, data)) = &self.binding {
                input.extend_from_slice(data);
            }
            message.push_str(&STANDARD.encode(input));
        }
        message.push_str(",r=");
        message.push_str(&self.nonce);
        message
    }

    /// AUTHENTICATE: checks the proof (and, in the `wamp-scram` dialect, the echoed nonce and channel binding).
    /// The cryptographic work is the same whether the proof is right, wrong, or made for an unknown authid: one
    /// HMAC and one SHA-256 to recover `StoredKey`, compared in constant time, and one HMAC for the server
    /// signature. Errors before it depend on the message only.
    pub fn verify(&self, message: &Authenticate<'_>) -> Result<Verified, Error> {
        // Canonical base64 of 32 octets is 44 characters: nothing longer is decoded.
        let proof: [u8; KEY_LEN] = (message.signature.len() == KEY_LEN.div_ceil(3) * 4)
            .then(|| unbase64(message.signature))
            .flatten()
            .and_then(|octets| octets.try_into().ok())
            .ok_or(Error::InvalidProofEncoding)?;
        if self.dialect == Dialect::Spec {
            if message.nonce != Some(self.nonce.as_str()) {
                return Err(Error::NonceMismatch);
            }
            let name = self.binding.as_ref().map(|(kind, _)| kind.name());
            if message.channel_binding != name {
                return Err(Error::ChannelBindingMismatch);
            }
            let bound = match (&self.binding, message.cbind_data) {
                (None, None) => true,
                (Some((_, expected)), Some(data)) => {
                    unbase64(data).is_some_and(|data| bool::from(data.ct_eq(expected)))
                }
                _ => false,
            };
            if !bound {
                return Err(Error::ChannelBindingMismatch);
            }
        }
        let auth_message = self.auth_message();
        let client_signature = hmac_sha256(&self.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; KEY_LEN];
        for (key, (sig, proof)) in client_key
            .iter_mut()
            .zip(client_signature.iter().zip(proof.iter()))
        {
            *key = sig ^ proof;
        }
        let matches = bool::from(sha256(&client_key).ct_eq(&self.stored_key));
        let server_signature = hmac_sha256(&self.server_key, auth_message.as_bytes());
        if matches && self.known {
            Ok(Verified {
                dialect: self.dialect,
                server_signature,
            })
        } else {
            Err(Error::InvalidProof)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Made by `tests/interop/scram_vectors.py` with autobahn-python 26.10.2, argon2-cffi and passlib (see there).
    const VECTORS: &str = include_str!("../tests/data/scram_vectors.json");

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).unwrap()
    }

    fn text(value: &Value) -> &str {
        value.as_str().unwrap()
    }

    fn number(value: &Value) -> u32 {
        value.as_u64().unwrap().try_into().unwrap()
    }

    fn unhex(value: &Value) -> Vec<u8> {
        crate::auth::unhex(text(value)).unwrap()
    }

    fn hello<'a>(authid: &'a str, nonce: &'a str) -> Hello<'a> {
        Hello {
            authid,
            nonce: Some(nonce),
            channel_binding: None,
        }
    }

    fn answer<'a>(signature: &'a str, nonce: Option<&'a str>) -> Authenticate<'a> {
        Authenticate {
            signature,
            nonce,
            channel_binding: None,
            cbind_data: None,
        }
    }

    /// A client written from the spec's "SCRAM Algorithms" section, for the `wamp-scram` dialect (which no client
    /// at hand speaks): its AuthMessage is built from the CHALLENGE it got, not with the router's code.
    /// Returns (ClientProof, ServerSignature) in base64.
    fn spec_client(
        salted_password: &[u8],
        authid: &str,
        client_nonce: &str,
        challenge: &Challenge<'_>,
        binding: Option<(&str, &[u8])>,
    ) -> (String, String) {
        let escaped = authid.replace('=', "=3D").replace(',', "=2C");
        let cbind_input = match binding {
            None => b"n,,".to_vec(),
            Some((name, data)) => [format!("p={name},,").as_bytes(), data].concat(),
        };
        let auth_message = format!(
            "n={escaped},r={client_nonce},r={},s={},i={},c={},r={}",
            challenge.nonce,
            challenge.salt,
            challenge.iterations,
            STANDARD.encode(cbind_input),
            challenge.nonce
        );
        let client_key = hmac_sha256(salted_password, b"Client Key");
        let stored_key = sha256(&client_key);
        let signature = hmac_sha256(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac_sha256(salted_password, b"Server Key");
        let server_signature = hmac_sha256(&server_key, auth_message.as_bytes());
        (STANDARD.encode(proof), STANDARD.encode(server_signature))
    }

    const CLIENT_NONCE: &str = "egVDf3DMJh0AAAAAAAAAAA==";
    const SERVER_NONCE: [u8; 16] = [7; 16];

    fn pbkdf2_credential(password: &str) -> Credential {
        Credential::derive(password, Kdf::Pbkdf2, b"NaCl-salt", 64, None).unwrap()
    }

    fn pbkdf2_salted(password: &str) -> Vec<u8> {
        salted_password(password, Kdf::Pbkdf2, b"NaCl-salt", 64, None).unwrap()
    }

    #[test]
    fn names() {
        for dialect in [Dialect::Spec, Dialect::Crossbar] {
            assert_eq!(Dialect::from_method(dialect.method()), Some(dialect));
        }
        assert_eq!(Dialect::from_method("wamp-scram"), Some(Dialect::Spec));
        assert_eq!(Dialect::from_method("scram"), Some(Dialect::Crossbar));
        assert_eq!(Dialect::from_method("wampcra"), None);
        assert_eq!(Dialect::Spec.welcome_key(), "verifier");
        assert_eq!(Dialect::Crossbar.welcome_key(), "scram_server_signature");
        for kdf in [Kdf::Argon2id13, Kdf::Argon2id13Autobahn, Kdf::Pbkdf2] {
            assert_eq!(Kdf::from_name(kdf.name()), Some(kdf));
        }
        assert_eq!(Kdf::from_name("argon2id13"), Some(Kdf::Argon2id13));
        assert_eq!(Kdf::from_name("argon2id-13"), Some(Kdf::Argon2id13Autobahn));
        assert_eq!(Kdf::from_name("argon2"), None);
        assert!(!Kdf::Pbkdf2.is_argon2());
        for kind in [
            ChannelBindingType::TlsUnique,
            ChannelBindingType::TlsServerEndPoint,
            ChannelBindingType::TlsExporter,
        ] {
            assert_eq!(ChannelBindingType::from_name(kind.name()), Some(kind));
        }
        assert_eq!(ChannelBindingType::from_name("tls-something"), None);
    }

    /// autobahn's `derive_scram_credential` output parses, and prints back as it was.
    #[test]
    fn parse_reads_autobahns_credentials() {
        for case in vectors()["credentials"].as_array().unwrap() {
            let c = &case["credential"];
            let credential = Credential::parse(
                text(&c["kdf"]),
                text(&c["salt"]),
                number(&c["iterations"]),
                Some(number(&c["memory"])),
                text(&c["stored-key"]),
                &text(&c["server-key"]).to_uppercase(),
            )
            .unwrap();
            assert_eq!(credential.kdf(), Kdf::Argon2id13Autobahn);
            assert_eq!(credential.salt_hex(), text(&c["salt"]));
            assert_eq!(credential.stored_key_hex(), text(&c["stored-key"]));
            assert_eq!(credential.server_key_hex(), text(&c["server-key"]));
            assert_eq!(
                (credential.iterations(), credential.memory()),
                (AUTOBAHN_ITERATIONS, Some(AUTOBAHN_MEMORY))
            );
            assert_eq!(credential.salt().len(), AUTOBAHN_SALT_LEN);
        }
    }

    #[test]
    fn parse_refuses_bad_fields() {
        let key = "ab".repeat(32);
        let salt = "00".repeat(16);
        let parse = |kdf, salt: &str, iterations, memory, stored: &str, server: &str| {
            Credential::parse(kdf, salt, iterations, memory, stored, server)
        };
        assert!(parse("pbkdf2", &salt, 4096, None, &key, &key).is_ok());
        assert!(parse("argon2id13", &salt, 1, Some(8), &key, &key).is_ok());
        let cases = [
            (
                parse("scrypt", &salt, 1, None, &key, &key),
                CredentialError::UnknownKdf("scrypt".into()),
            ),
            (
                parse("pbkdf2", "xyz", 1, None, &key, &key),
                CredentialError::SaltNotHex,
            ),
            (
                parse("pbkdf2", "00", 1, None, &key, &key),
                CredentialError::SaltLength(1),
            ),
            (
                parse("pbkdf2", &"00".repeat(65), 1, None, &key, &key),
                CredentialError::SaltLength(65),
            ),
            (
                parse("pbkdf2", &salt, 0, None, &key, &key),
                CredentialError::Iterations,
            ),
            (
                parse("argon2id-13", &salt, 1, None, &key, &key),
                CredentialError::MemoryMissing,
            ),
            (
                parse("pbkdf2", &salt, 1, Some(512), &key, &key),
                CredentialError::MemoryNotApplicable,
            ),
            (
                parse("argon2id13", &salt, 1, Some(7), &key, &key),
                CredentialError::MemoryRange(7),
            ),
            (
                parse(
                    "argon2id13",
                    &salt,
                    1,
                    Some(ARGON2_MEMORY_MAX + 1),
                    &key,
                    &key,
                ),
                CredentialError::MemoryRange(ARGON2_MEMORY_MAX + 1),
            ),
            (
                parse("pbkdf2", &salt, 1, None, &key[2..], &key),
                CredentialError::Key("stored_key"),
            ),
            (
                parse("pbkdf2", &salt, 1, None, &key, &format!("{key}00")),
                CredentialError::Key("server_key"),
            ),
            (
                parse("pbkdf2", &salt, 1, None, &key, &"zz".repeat(32)),
                CredentialError::Key("server_key"),
            ),
        ];
        for (got, expected) in cases {
            assert_eq!(got, Err(expected.clone()));
            assert!(!expected.to_string().is_empty());
        }
    }

    /// Argon2id (the `argon2` crate) against argon2-cffi's reference implementation, in both forms.
    #[test]
    fn argon2id_matches_argon2_cffi() {
        for case in vectors()["argon2id"].as_array().unwrap() {
            let (salt, iterations, memory) = (
                unhex(&case["salt"]),
                number(&case["iterations"]),
                Some(number(&case["memory"])),
            );
            let hash = unhex(&case["hash"]);
            // The spec's argon2id13: SASLprep, then the 32 raw octets.
            let spec = salted_password(
                text(&case["password"]),
                Kdf::Argon2id13,
                &salt,
                iterations,
                memory,
            )
            .unwrap();
            assert_eq!(spec, hash);
            // autobahn's argon2id-13: the password as given, and the unpadded base64 text of the hash.
            let autobahn = salted_password(
                text(&case["normalized"]),
                Kdf::Argon2id13Autobahn,
                &salt,
                iterations,
                memory,
            )
            .unwrap();
            assert_eq!(autobahn, STANDARD_NO_PAD.encode(&hash).into_bytes());
        }
        // autobahn does not normalize: a password SASLprep changes gives another hash.
        let case = &vectors()["argon2id"][2];
        assert_ne!(case["password"], case["normalized"]);
        let raw = salted_password(
            text(&case["password"]),
            Kdf::Argon2id13Autobahn,
            &unhex(&case["salt"]),
            number(&case["iterations"]),
            Some(number(&case["memory"])),
        )
        .unwrap();
        assert_ne!(
            raw,
            STANDARD_NO_PAD.encode(unhex(&case["hash"])).into_bytes()
        );
    }

    #[test]
    fn pbkdf2_matches_hashlib() {
        for case in vectors()["pbkdf2"].as_array().unwrap() {
            let salted = salted_password(
                text(&case["password"]),
                Kdf::Pbkdf2,
                &unhex(&case["salt"]),
                number(&case["iterations"]),
                None,
            )
            .unwrap();
            assert_eq!(salted, unhex(&case["hash"]));
        }
    }

    /// SASLprep of the `scram` dialect's authid against passlib's (which autobahn and crossbar apply to it).
    #[test]
    fn saslprep_matches_passlib() {
        for case in vectors()["saslprep"].as_array().unwrap() {
            let input = text(&case["input"]);
            assert_eq!(
                saslprep_as_passlib(input).as_deref(),
                case["output"].as_str(),
                "SASLprep of {input:?}"
            );
            // The `stringprep` crate alone (used for the spec KDFs' passwords) agrees except on U+200B.
            if !input.contains('\u{200b}') {
                assert_eq!(
                    stringprep::saslprep(input).ok().as_deref(),
                    case["output"].as_str()
                );
            }
        }
        assert_eq!(stringprep::saslprep("a\u{200b}b").unwrap(), "a b");
    }

    /// autobahn's `derive_scram_credential` with its own parameters (Argon2id, 4096 passes, 512 KiB).
    #[test]
    fn derive_matches_autobahns_derive_scram_credential() {
        for case in vectors()["credentials"].as_array().unwrap() {
            let c = &case["credential"];
            let derived = Credential::derive(
                text(&case["password"]),
                Kdf::from_name(text(&c["kdf"])).unwrap(),
                &unhex(&c["salt"]),
                number(&c["iterations"]),
                Some(number(&c["memory"])),
            )
            .unwrap();
            assert_eq!(derived.stored_key_hex(), text(&c["stored-key"]));
            assert_eq!(derived.server_key_hex(), text(&c["server-key"]));
        }
    }

    #[test]
    fn derive_refuses_what_sasl_prep_refuses_for_the_spec_kdfs() {
        for kdf in [Kdf::Pbkdf2, Kdf::Argon2id13] {
            let memory = kdf.is_argon2().then_some(8);
            assert!(matches!(
                Credential::derive("bell\u{7}", kdf, &[1; 8], 1, memory),
                Err(CredentialError::Password(_))
            ));
        }
        // autobahn's argon2id-13 takes the password as it is.
        assert!(
            Credential::derive("bell\u{7}", Kdf::Argon2id13Autobahn, &[1; 8], 1, Some(8)).is_ok()
        );
        assert_eq!(
            Credential::derive("x", Kdf::Pbkdf2, &[1; 4], 1, None),
            Err(CredentialError::SaltLength(4))
        );
    }

    /// RFC 7677's SCRAM-SHA-256 example, which the spec says WAMP-SCRAM reproduces (its nonces are not base64,
    /// so they are set below [`start`]'s checks).
    #[test]
    fn rfc7677_example() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credential = Credential::derive("pencil", Kdf::Pbkdf2, &salt, 4096, None).unwrap();
        let nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let pending = Pending::new(
            Dialect::Spec,
            "user",
            "rOprNGfwEbeRWgbNEkqO",
            nonce.into(),
            &credential,
            true,
            None,
        );
        assert_eq!(
            pending.auth_message(),
            format!(
                "n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r={nonce}"
            )
        );
        let verified = pending
            .verify(&answer(
                "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                Some(nonce),
            ))
            .unwrap();
        assert_eq!(
            verified.server_signature(),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert_eq!(verified.authextra_key(), "verifier");
    }

    /// autobahn's AuthScram, answering challenges shaped like crossbar's: kreisel's `scram` dialect makes the
    /// same challenge, accepts autobahn's proof, and answers with the server signature autobahn accepted.
    #[test]
    fn autobahn_exchanges() {
        for case in vectors()["exchanges"].as_array().unwrap() {
            let ch = &case["challenge"];
            let (kdf, salt, iterations, memory) = (
                Kdf::from_name(text(&ch["kdf"])).unwrap(),
                STANDARD.decode(text(&ch["salt"])).unwrap(),
                number(&ch["iterations"]),
                Some(number(&ch["memory"])),
            );
            let credential = match case.get("credential") {
                Some(c) => Credential::parse(
                    text(&c["kdf"]),
                    text(&c["salt"]),
                    number(&c["iterations"]),
                    c["memory"].as_u64().map(|m| m as u32),
                    text(&c["stored-key"]),
                    text(&c["server-key"]),
                )
                .unwrap(),
                None => Credential::derive(text(&case["password"]), kdf, &salt, iterations, memory)
                    .unwrap(),
            };
            let authid = text(&case["authid"]);
            let client_nonce = text(&case["hello_authextra"]["nonce"]);
            let pending = start(
                Dialect::Crossbar,
                &hello(authid, client_nonce),
                &credential,
                true,
                &unhex(&case["server_nonce"]),
                &ChannelBindings::NONE,
            )
            .unwrap();
            let challenge = pending.challenge();
            assert_eq!(challenge.nonce, text(&ch["nonce"]), "{authid:?}");
            assert_eq!(challenge.salt, text(&ch["salt"]));
            assert_eq!(challenge.kdf, text(&ch["kdf"]));
            assert_eq!(
                (challenge.iterations, challenge.memory),
                (iterations, memory)
            );
            assert_eq!(pending.auth_message(), text(&case["auth_message"]));
            // autobahn sends AUTHENTICATE with an empty Extra.
            let signature = text(&case["signature"]);
            let verified = pending.verify(&answer(signature, None)).unwrap();
            assert_eq!(verified.authextra_key(), "scram_server_signature");
            assert_eq!(
                verified.server_signature(),
                text(&case["scram_server_signature"])
            );
            // Extras are not looked at in this dialect.
            assert!(pending.verify(&answer(signature, Some("other"))).is_ok());
            // One bit off: refused.
            let mut proof = STANDARD.decode(signature).unwrap();
            proof[31] ^= 0x80;
            assert_eq!(
                pending.verify(&answer(&STANDARD.encode(proof), None)),
                Err(Error::InvalidProof)
            );
            // The same exchange for an authid that is not known: refused, with the same error.
            let unknown = start(
                Dialect::Crossbar,
                &hello(authid, client_nonce),
                &credential,
                false,
                &unhex(&case["server_nonce"]),
                &ChannelBindings::NONE,
            )
            .unwrap();
            assert_eq!(
                unknown.verify(&answer(signature, None)),
                Err(Error::InvalidProof)
            );
        }
    }

    #[test]
    fn spec_exchange() {
        let credential = pbkdf2_credential("hunter2");
        let pending = start(
            Dialect::Spec,
            &hello("peter", CLIENT_NONCE),
            &credential,
            true,
            &SERVER_NONCE,
            &ChannelBindings::NONE,
        )
        .unwrap();
        let challenge = pending.challenge();
        // The combined nonce starts with the client's (the client must check that).
        assert_eq!(
            challenge.nonce,
            format!("{CLIENT_NONCE}{}", STANDARD.encode(SERVER_NONCE))
        );
        assert_eq!(challenge.salt, STANDARD.encode(b"NaCl-salt"));
        assert_eq!(
            (challenge.kdf, challenge.iterations, challenge.memory),
            ("pbkdf2", 64, None)
        );
        let (proof, server_signature) = spec_client(
            &pbkdf2_salted("hunter2"),
            "peter",
            CLIENT_NONCE,
            &challenge,
            None,
        );
        let verified = pending
            .verify(&answer(&proof, Some(challenge.nonce)))
            .unwrap();
        assert_eq!(verified.authextra_key(), "verifier");
        assert_eq!(verified.server_signature(), server_signature);
        // A wrong password.
        let (wrong, _) = spec_client(
            &pbkdf2_salted("hunter3"),
            "peter",
            CLIENT_NONCE,
            &challenge,
            None,
        );
        assert_eq!(
            pending.verify(&answer(&wrong, Some(challenge.nonce))),
            Err(Error::InvalidProof)
        );
        // The right proof for an authid the router does not know (its decoy stands in): the same refusal.
        let unknown = start(
            Dialect::Spec,
            &hello("peter", CLIENT_NONCE),
            &credential,
            false,
            &SERVER_NONCE,
            &ChannelBindings::NONE,
        )
        .unwrap();
        assert_eq!(
            unknown.verify(&answer(&proof, Some(challenge.nonce))),
            Err(Error::InvalidProof)
        );
    }

    #[test]
    fn spec_escapes_the_authid_and_crossbar_sasl_preps_it() {
        let credential = pbkdf2_credential("pw");
        let message = |dialect, authid| {
            start(
                dialect,
                &hello(authid, CLIENT_NONCE),
                &credential,
                true,
                &SERVER_NONCE,
                &ChannelBindings::NONE,
            )
            .unwrap()
            .auth_message()
        };
        assert!(message(Dialect::Spec, "a=b,c").starts_with("n=a=3Db=2Cc,r="));
        assert!(message(Dialect::Spec, "I\u{ad}X").starts_with("n=I\u{ad}X,r="));
        assert!(message(Dialect::Spec, "x").contains(",c=biws,r="));
        assert!(message(Dialect::Crossbar, "a=b,c").starts_with("n=a=b,c,r="));
        assert!(message(Dialect::Crossbar, "I\u{ad}X").starts_with("n=IX,r="));
        assert!(message(Dialect::Crossbar, "x").contains(",c=,r="));
        // SASLprep refuses control characters: the `scram` dialect refuses such an authid at HELLO.
        assert_eq!(
            start(
                Dialect::Crossbar,
                &hello("bell\u{7}", CLIENT_NONCE),
                &credential,
                true,
                &SERVER_NONCE,
                &ChannelBindings::NONE,
            )
            .map(|_| ()),
            Err(Error::InvalidAuthid)
        );
    }

    #[test]
    fn crossbar_nonce_is_base64_of_both_nonces() {
        let pending = start(
            Dialect::Crossbar,
            &hello("x", CLIENT_NONCE),
            &pbkdf2_credential("pw"),
            true,
            &SERVER_NONCE,
            &ChannelBindings::NONE,
        )
        .unwrap();
        let octets = STANDARD.decode(pending.challenge().nonce).unwrap();
        assert_eq!(
            octets,
            [
                STANDARD.decode(CLIENT_NONCE).unwrap(),
                SERVER_NONCE.to_vec()
            ]
            .concat()
        );
    }

    #[test]
    fn hello_checks() {
        let credential = pbkdf2_credential("pw");
        let try_start = |dialect, nonce: Option<&str>, server_nonce: &[u8]| {
            start(
                dialect,
                &Hello {
                    authid: "x",
                    nonce,
                    channel_binding: None,
                },
                &credential,
                true,
                server_nonce,
                &ChannelBindings::NONE,
            )
            .map(|_| ())
        };
        for dialect in [Dialect::Spec, Dialect::Crossbar] {
            assert_eq!(try_start(dialect, Some("QQ=="), &SERVER_NONCE), Ok(()));
            assert_eq!(
                try_start(dialect, None, &SERVER_NONCE),
                Err(Error::MissingNonce)
            );
            let long = "A".repeat(CLIENT_NONCE_MAX + 4);
            for bad in [
                "", "QQ", "QQ=", "QR==", " QQ==", "QQ==\n", "Q!==", "QQ==QQ==", &long,
            ] {
                assert_eq!(
                    try_start(dialect, Some(bad), &SERVER_NONCE),
                    Err(Error::InvalidNonce),
                    "{bad:?}"
                );
            }
            assert_eq!(
                try_start(dialect, Some("QQ=="), &[0; SERVER_NONCE_MIN - 1]),
                Err(Error::ServerNonceLength)
            );
            assert_eq!(
                try_start(dialect, Some("QQ=="), &[0; SERVER_NONCE_MAX + 1]),
                Err(Error::ServerNonceLength)
            );
        }
    }

    #[test]
    fn channel_binding_is_refused_without_binding_data() {
        let credential = pbkdf2_credential("pw");
        let exporter = [9u8; 32];
        let with_exporter = ChannelBindings {
            tls_exporter: Some(&exporter),
            ..ChannelBindings::default()
        };
        let try_start = |dialect, binding, bindings: &ChannelBindings<'_>| {
            start(
                dialect,
                &Hello {
                    authid: "x",
                    nonce: Some(CLIENT_NONCE),
                    channel_binding: Some(binding),
                },
                &credential,
                true,
                &SERVER_NONCE,
                bindings,
            )
            .map(|_| ())
        };
        for binding in [
            "tls-unique",
            "tls-server-end-point",
            "tls-exporter",
            "bogus",
        ] {
            assert_eq!(
                try_start(Dialect::Spec, binding, &ChannelBindings::NONE),
                Err(Error::UnsupportedChannelBinding)
            );
            assert_eq!(
                try_start(Dialect::Crossbar, binding, &with_exporter),
                Err(Error::UnsupportedChannelBinding)
            );
        }
        // Data for one type does not serve another.
        assert_eq!(
            try_start(Dialect::Spec, "tls-unique", &with_exporter),
            Err(Error::UnsupportedChannelBinding)
        );
        assert_eq!(
            try_start(Dialect::Spec, "tls-exporter", &with_exporter),
            Ok(())
        );
    }

    /// With binding data from the transport (none today): the binding enters the AuthMessage, and AUTHENTICATE
    /// must repeat the type and carry the same data. tls-unique data is a 12-octet TLS Finished message (its GS2
    /// input is not a multiple of 3 octets long, so its base64 is padded); tls-exporter's is 32 octets.
    #[test]
    fn channel_binding_with_data() {
        let credential = pbkdf2_credential("pw");
        let (unique, exporter) = ([3u8; 12], [9u8; 32]);
        for (name, data, bindings) in [
            (
                "tls-unique",
                unique.as_slice(),
                ChannelBindings {
                    tls_unique: Some(&unique),
                    ..ChannelBindings::default()
                },
            ),
            (
                "tls-exporter",
                exporter.as_slice(),
                ChannelBindings {
                    tls_exporter: Some(&exporter),
                    ..ChannelBindings::default()
                },
            ),
        ] {
            let pending = start(
                Dialect::Spec,
                &Hello {
                    authid: "x",
                    nonce: Some(CLIENT_NONCE),
                    channel_binding: Some(name),
                },
                &credential,
                true,
                &SERVER_NONCE,
                &bindings,
            )
            .unwrap();
            let challenge = pending.challenge();
            let gs2 = STANDARD.encode([format!("p={name},,").as_bytes(), data].concat());
            assert!(pending.auth_message().contains(&format!(",c={gs2},r=")));
            let (proof, server_signature) = spec_client(
                &pbkdf2_salted("pw"),
                "x",
                CLIENT_NONCE,
                &challenge,
                Some((name, data)),
            );
            let cbind = STANDARD.encode(data);
            let other = STANDARD.encode([8u8; 32]);
            let message = |channel_binding, cbind_data| Authenticate {
                signature: &proof,
                nonce: Some(challenge.nonce),
                channel_binding,
                cbind_data,
            };
            let verified = pending.verify(&message(Some(name), Some(&cbind))).unwrap();
            assert_eq!(verified.server_signature(), server_signature);
            let wrong_type = if name == "tls-unique" {
                "tls-exporter"
            } else {
                "tls-unique"
            };
            for (channel_binding, cbind_data) in [
                (Some(name), Some(other.as_str())),
                (Some(name), Some("not base64")),
                (Some(name), None),
                (Some(wrong_type), Some(cbind.as_str())),
                (None, Some(cbind.as_str())),
                (None, None),
            ] {
                assert_eq!(
                    pending.verify(&message(channel_binding, cbind_data)),
                    Err(Error::ChannelBindingMismatch),
                    "{channel_binding:?} {cbind_data:?}"
                );
            }
        }
    }

    /// In the `wamp-scram` dialect AUTHENTICATE must echo the challenge's nonce, and no binding unless HELLO
    /// asked for one.
    #[test]
    fn spec_authenticate_checks() {
        let pending = start(
            Dialect::Spec,
            &hello("x", CLIENT_NONCE),
            &pbkdf2_credential("pw"),
            true,
            &SERVER_NONCE,
            &ChannelBindings::NONE,
        )
        .unwrap();
        let challenge = pending.challenge();
        let (proof, _) = spec_client(&pbkdf2_salted("pw"), "x", CLIENT_NONCE, &challenge, None);
        assert!(pending
            .verify(&answer(&proof, Some(challenge.nonce)))
            .is_ok());
        for nonce in [None, Some(CLIENT_NONCE), Some("")] {
            assert_eq!(
                pending.verify(&answer(&proof, nonce)),
                Err(Error::NonceMismatch)
            );
        }
        let mut bound = answer(&proof, Some(challenge.nonce));
        bound.channel_binding = Some("tls-unique");
        assert_eq!(pending.verify(&bound), Err(Error::ChannelBindingMismatch));
        let mut data = answer(&proof, Some(challenge.nonce));
        data.cbind_data = Some("AAAA");
        assert_eq!(pending.verify(&data), Err(Error::ChannelBindingMismatch));
        // The proof must be canonical base64 of 32 octets.
        let short = STANDARD.encode([1u8; 31]);
        let padded = format!("{proof}\n");
        for bad in [short.as_str(), "", "not base64", padded.as_str()] {
            assert_eq!(
                pending.verify(&answer(bad, Some(challenge.nonce))),
                Err(Error::InvalidProofEncoding),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn decoys() {
        let key = [5u8; 32];
        let a = Credential::decoy(&key, "mallory", &[]);
        assert_eq!(a, Credential::decoy(&key, "mallory", &[]), "stable");
        assert_eq!(a.shape(), Shape::default());
        assert_ne!(a.salt(), Credential::decoy(&key, "trudy", &[]).salt());
        assert_ne!(a.salt(), Credential::decoy(&[6; 32], "mallory", &[]).salt());
        assert_ne!(a.stored_key_hex(), a.server_key_hex());
        let shapes = [
            Shape {
                kdf: Kdf::Pbkdf2,
                salt_len: 12,
                iterations: 100_000,
                memory: None,
            },
            Shape {
                kdf: Kdf::Argon2id13,
                salt_len: 40,
                iterations: 3,
                memory: Some(65536),
            },
        ];
        let mut seen = [0usize; 2];
        for i in 0..200 {
            let decoy = Credential::decoy(&key, &format!("user{i}"), &shapes);
            let shape = decoy.shape();
            let index = shapes.iter().position(|s| *s == shape).unwrap();
            seen[index] += 1;
            assert_eq!(decoy.salt().len(), shapes[index].salt_len);
            // Its challenge has the fields a real one has.
            let pending = start(
                Dialect::Spec,
                &hello("x", CLIENT_NONCE),
                &decoy,
                false,
                &SERVER_NONCE,
                &ChannelBindings::NONE,
            )
            .unwrap();
            assert_eq!(pending.challenge().kdf, shapes[index].kdf.name());
            assert_eq!(pending.challenge().memory, shapes[index].memory);
        }
        assert!(seen.iter().all(|&n| (60..=140).contains(&n)), "{seen:?}");
    }

    #[test]
    fn debug_output_leaves_the_keys_out() {
        let credential = pbkdf2_credential("pw");
        let pending = start(
            Dialect::Spec,
            &hello("x", CLIENT_NONCE),
            &credential,
            true,
            &SERVER_NONCE,
            &ChannelBindings::NONE,
        )
        .unwrap();
        for shown in [format!("{credential:?}"), format!("{pending:?}")] {
            assert!(!shown.contains(&credential.stored_key_hex()), "{shown}");
            assert!(!shown.contains(&credential.server_key_hex()), "{shown}");
            assert!(
                !shown.contains(&format!("{:?}", credential.stored_key)),
                "{shown}"
            );
        }
        assert!(format!("{credential:?}").contains("pbkdf2"));
    }

    #[test]
    fn error_texts_and_scram_values() {
        assert_eq!(Error::InvalidProof.scram_error(), "invalid-proof");
        assert_eq!(
            Error::UnsupportedChannelBinding.scram_error(),
            "unsupported-channel-binding-type"
        );
        assert_eq!(
            Error::ChannelBindingMismatch.scram_error(),
            "channel-bindings-dont-match"
        );
        assert_eq!(Error::InvalidProof.to_string(), "authentication failed");
    }
}
