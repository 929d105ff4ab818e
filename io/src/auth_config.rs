//! The authentication and authorization part of a realm's configuration: `[[realms.principals]]` and
//! `[[realms.roles]]` (see the README's "Authentication and authorization").

use std::collections::HashSet;

use kreisel_engine::auth::parse_pubkey;
use kreisel_engine::uri::{self, MatchPolicy, UriCheck};
use kreisel_engine::{
    AuthConfig, PermissionConfig, Perms, PrincipalConfig, RoleConfig, Salt, WampCraSecret,
};
use serde::Deserialize;

/// A static principal: who may authenticate, how, and under which role.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    pub authid: String,
    pub role: String,
    /// Ticket authentication: the ticket (compared in constant time).
    pub ticket: Option<String>,
    /// WAMP-CRA: the shared secret; with `wampcra_salt`, the derived key (`kreisel --derive-key`).
    pub wampcra_secret: Option<String>,
    /// WAMP-CRA salted secret: the salt; `wampcra_iterations` (default 1000) and `wampcra_keylen` (default 32)
    /// are the PBKDF2 parameters the client derives its key with.
    pub wampcra_salt: Option<String>,
    pub wampcra_iterations: Option<u32>,
    pub wampcra_keylen: Option<u32>,
    /// Cryptosign: Ed25519 public keys, hex (64 digits each).
    #[serde(default)]
    pub cryptosign_pubkeys: Vec<String>,
}

/// A role and its permissions.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub name: String,
    #[serde(default)]
    pub permissions: Vec<Permission>,
}

/// One rule: what a role may do on the URIs a pattern matches. The most specific matching rule decides
/// (exact, else the longest prefix, else the most specific wildcard); `uri = ""` with `match = "prefix"` matches
/// everything. A URI no rule matches is denied.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Permission {
    pub uri: String,
    #[serde(default, rename = "match")]
    pub policy: Match,
    /// Any of "call", "register", "publish", "subscribe".
    #[serde(default)]
    pub allow: Vec<Action>,
    /// Any of "caller", "publisher": disclose this role's identity on these URIs to callees / subscribers.
    #[serde(default)]
    pub disclose: Vec<Disclose>,
    /// Any of "caller", "publisher": this role may ask to be told who calls its procedures (REGISTER
    /// `disclose_caller`) / who publishes (SUBSCRIBE `disclose_publisher`) on these URIs. Without it, such a
    /// request is refused with `wamp.error.option_not_allowed`; a pattern needs it on every URI it can match.
    #[serde(default)]
    pub identify: Vec<Disclose>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Match {
    #[default]
    Exact,
    Prefix,
    Wildcard,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Call,
    Register,
    Publish,
    Subscribe,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Disclose {
    Caller,
    Publisher,
}

impl Match {
    fn policy(self) -> MatchPolicy {
        match self {
            Match::Exact => MatchPolicy::Exact,
            Match::Prefix => MatchPolicy::Prefix,
            Match::Wildcard => MatchPolicy::Wildcard,
        }
    }
}

/// Checks a realm's principals and roles; `Err` explains the first mistake.
pub fn validate(
    realm: &str,
    anonymous_role: Option<&str>,
    principals: &[Principal],
    roles: Option<&[Role]>,
) -> Result<(), String> {
    let mut authids = HashSet::new();
    let mut pubkeys = HashSet::new();
    for p in principals {
        let which = format!("realm '{realm}', principal '{}'", p.authid);
        if p.authid.is_empty() || p.role.is_empty() {
            return Err(format!("{which}: authid and role must not be empty"));
        }
        if !authids.insert(&p.authid) {
            return Err(format!("{which}: defined twice"));
        }
        if p.ticket.is_none() && p.wampcra_secret.is_none() && p.cryptosign_pubkeys.is_empty() {
            return Err(format!(
                "{which}: needs a credential (ticket, wampcra_secret or cryptosign_pubkeys)"
            ));
        }
        if p.ticket.as_deref() == Some("") || p.wampcra_secret.as_deref() == Some("") {
            return Err(format!("{which}: an empty secret is no secret"));
        }
        let salted = p.wampcra_iterations.is_some() || p.wampcra_keylen.is_some();
        if salted && p.wampcra_salt.is_none() {
            return Err(format!(
                "{which}: wampcra_iterations/wampcra_keylen need wampcra_salt"
            ));
        }
        if p.wampcra_salt.is_some() && p.wampcra_secret.is_none() {
            return Err(format!("{which}: wampcra_salt needs wampcra_secret"));
        }
        if p.wampcra_iterations == Some(0)
            || p.wampcra_keylen.is_some_and(|k| !(1..=64).contains(&k))
        {
            return Err(format!(
                "{which}: wampcra_iterations must be at least 1 and wampcra_keylen within 1 ..= 64"
            ));
        }
        for key in &p.cryptosign_pubkeys {
            let Some(bytes) = parse_pubkey(key) else {
                return Err(format!(
                    "{which}: cryptosign public key '{key}' is not 64 hex digits"
                ));
            };
            if !pubkeys.insert(bytes) {
                return Err(format!(
                    "{which}: cryptosign public key '{key}' belongs to two principals"
                ));
            }
        }
    }
    let Some(roles) = roles else {
        return Ok(());
    };
    let mut names = HashSet::new();
    for role in roles {
        if !names.insert(role.name.as_str()) {
            return Err(format!(
                "realm '{realm}': role '{}' is defined twice",
                role.name
            ));
        }
        for rule in &role.permissions {
            let policy = rule.policy.policy();
            let everything = rule.uri.is_empty() && policy == MatchPolicy::Prefix;
            if !everything && !uri::is_valid(&rule.uri, UriCheck::Loose, policy) {
                return Err(format!(
                    "realm '{realm}', role '{}': '{}' is not a valid URI pattern for match '{}'",
                    role.name,
                    rule.uri,
                    policy.name()
                ));
            }
        }
    }
    let needed = principals
        .iter()
        .map(|p| (p.role.as_str(), format!("principal '{}'", p.authid)))
        .chain(anonymous_role.map(|role| (role, "anonymous sessions".to_string())));
    for (role, user) in needed {
        if !names.contains(role) {
            return Err(format!(
                "realm '{realm}': role '{role}' (of {user}) is not among the realm's [[realms.roles]]"
            ));
        }
    }
    Ok(())
}

/// The engine's form of a (validated) realm's authentication and authorization.
pub fn engine_config(
    anonymous_role: Option<&str>,
    principals: &[Principal],
    roles: Option<&[Role]>,
) -> AuthConfig {
    AuthConfig {
        anonymous_role: anonymous_role.map(str::to_owned),
        principals: principals
            .iter()
            .map(|p| PrincipalConfig {
                authid: p.authid.clone(),
                role: p.role.clone(),
                ticket: p.ticket.clone(),
                wampcra: p.wampcra_secret.as_ref().map(|secret| WampCraSecret {
                    secret: secret.clone(),
                    salt: p.wampcra_salt.as_ref().map(|salt| Salt {
                        salt: salt.clone(),
                        iterations: p.wampcra_iterations.unwrap_or(1000),
                        keylen: p.wampcra_keylen.unwrap_or(32),
                    }),
                }),
                cryptosign: p
                    .cryptosign_pubkeys
                    .iter()
                    .filter_map(|key| parse_pubkey(key))
                    .collect(),
            })
            .collect(),
        roles: roles.map(|roles| {
            roles
                .iter()
                .map(|role| RoleConfig {
                    name: role.name.clone(),
                    permissions: role
                        .permissions
                        .iter()
                        .map(|rule| PermissionConfig {
                            uri: rule.uri.clone(),
                            policy: rule.policy.policy(),
                            allow: rule
                                .allow
                                .iter()
                                .map(|action| match action {
                                    Action::Call => Perms::CALL,
                                    Action::Register => Perms::REGISTER,
                                    Action::Publish => Perms::PUBLISH,
                                    Action::Subscribe => Perms::SUBSCRIBE,
                                })
                                .chain(rule.disclose.iter().map(|d| match d {
                                    Disclose::Caller => Perms::DISCLOSE_CALLER,
                                    Disclose::Publisher => Perms::DISCLOSE_PUBLISHER,
                                }))
                                .chain(rule.identify.iter().map(|d| match d {
                                    Disclose::Caller => Perms::IDENTIFY_CALLER,
                                    Disclose::Publisher => Perms::IDENTIFY_PUBLISHER,
                                }))
                                .fold(Perms::NONE, |all, p| all | p),
                        })
                        .collect(),
                })
                .collect()
        }),
    }
}
