//! The authentication and authorization part of a realm's configuration: `[[realms.principals]]`,
//! `[[realms.roles]]` (static permissions or a dynamic authorizer) and `[[realms.authenticators]]` (see the
//! README's "Authentication and authorization").

use std::collections::HashSet;

use kreisel_engine::auth::parse_pubkey;
use kreisel_engine::scram::Credential;
use kreisel_engine::uri::{self, MatchPolicy, UriCheck};
use kreisel_engine::{
    AuthConfig, AuthenticatorConfig, AuthorizerConfig, CacheScope, Method, Patterns,
    PermissionConfig, Perms, PrincipalConfig, RoleConfig, Salt, WampCraSecret,
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
    /// WAMP-SCRAM (`wamp-scram`, and crossbar's `scram`): the stored credential `kreisel --derive-scram` prints.
    /// `scram_kdf` is `argon2id13` (the spec's), `argon2id-13` (autobahn's and crossbar's) or `pbkdf2`;
    /// `scram_salt`, `scram_stored_key` and `scram_server_key` are hex; `scram_memory` (KiB) is for Argon2 only.
    pub scram_kdf: Option<String>,
    pub scram_salt: Option<String>,
    pub scram_iterations: Option<u32>,
    pub scram_memory: Option<u32>,
    pub scram_stored_key: Option<String>,
    pub scram_server_key: Option<String>,
}

impl Principal {
    /// The SCRAM credential, if the principal has one (`Err`: which key is wrong or missing).
    pub fn scram(&self) -> Result<Option<Credential>, String> {
        let parts = (
            &self.scram_kdf,
            &self.scram_salt,
            self.scram_iterations,
            &self.scram_stored_key,
            &self.scram_server_key,
        );
        match parts {
            (None, None, None, None, None) if self.scram_memory.is_none() => Ok(None),
            (Some(kdf), Some(salt), Some(iterations), Some(stored), Some(server)) => {
                Credential::parse(kdf, salt, iterations, self.scram_memory, stored, server)
                    .map(Some)
                    .map_err(|e| format!("scram: {e}"))
            }
            _ => Err(
                "scram_kdf, scram_salt, scram_iterations, scram_stored_key and scram_server_key go together \
                 (and scram_memory with an Argon2 kdf): kreisel --derive-scram prints them"
                    .into(),
            ),
        }
    }
}

/// A dynamic authenticator: a procedure that authenticates the HELLOs choosing one of `methods`, called as
/// crossbar.io calls it (README, "Dynamic authentication").
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Authenticator {
    /// Any of "anonymous", "ticket", "wampcra", "cryptosign", "scram" ("wamp-scram" is the same: both SCRAM
    /// dialects go to it).
    pub methods: Vec<MethodName>,
    /// The procedure URI.
    pub procedure: String,
    /// The realm it is registered in (default: this realm).
    pub realm: Option<String>,
    /// How long the router waits for its answer (default 5000 ms).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Authentications waiting for its answer at once, on each shard (default 1000); beyond, refused at once.
    #[serde(default = "default_concurrency_max")]
    pub concurrency_max: usize,
}

/// An authentication method's name in the configuration.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
pub enum MethodName {
    #[serde(rename = "anonymous")]
    Anonymous,
    #[serde(rename = "ticket")]
    Ticket,
    #[serde(rename = "wampcra")]
    WampCra,
    #[serde(rename = "cryptosign")]
    Cryptosign,
    #[serde(rename = "scram", alias = "wamp-scram")]
    Scram,
}

impl MethodName {
    fn method(self) -> Method {
        match self {
            MethodName::Anonymous => Method::Anonymous,
            MethodName::Ticket => Method::Ticket,
            MethodName::WampCra => Method::WampCra,
            MethodName::Cryptosign => Method::Cryptosign,
            MethodName::Scram => Method::Scram,
        }
    }

    pub fn name(self) -> &'static str {
        self.method().name()
    }
}

/// A role's dynamic authorizer: a procedure that decides the role's requests, called as crossbar.io calls it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Authorizer {
    /// The procedure URI.
    pub procedure: String,
    /// The realm it is registered in (default: the role's realm).
    pub realm: Option<String>,
    /// How long a request waits for its answer (default 5000 ms); then it is refused.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Requests waiting for its answer at once, on each shard (default 1000); beyond, refused at once.
    #[serde(default = "default_concurrency_max")]
    pub concurrency_max: usize,
    /// Whom a decision answered with `cache: true` is remembered for: "role" (every session of the role, as
    /// crossbar does; the default) or "session".
    #[serde(default)]
    pub cache: CacheName,
    /// SUBSCRIBE/REGISTER with `match: prefix|wildcard`: "ask" the authorizer (the default; `options.match` tells
    /// it, and its answer covers every URI the pattern matches) or "refuse" them.
    #[serde(default)]
    pub patterns: PatternsName,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CacheName {
    #[default]
    Role,
    Session,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PatternsName {
    #[default]
    Ask,
    Refuse,
}

fn default_timeout_ms() -> u64 {
    AuthenticatorConfig::TIMEOUT_MS
}

fn default_concurrency_max() -> usize {
    AuthenticatorConfig::CONCURRENCY_MAX
}

/// Why `uri` cannot name a dynamic authenticator's or authorizer's procedure.
fn procedure_problem(uri: &str) -> Option<String> {
    if uri.starts_with("wamp.") {
        return Some(format!(
            "'{}' is under 'wamp.', the router's own namespace",
            uri::shown(uri)
        ));
    }
    uri_problem(uri, UriCheck::Loose, MatchPolicy::Exact).map(|problem| {
        format!(
            "'{}' is not a valid procedure URI: {problem}",
            uri::shown(uri)
        )
    })
}

/// A role and its permissions.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub name: String,
    #[serde(default)]
    pub permissions: Vec<Permission>,
    /// A procedure decides this role's requests instead of `permissions`.
    pub authorizer: Option<Authorizer>,
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

/// Why `uri` is not valid for `policy` under `check`, the rule of [`uri::is_valid`] (`None` when it is valid): the
/// first invalid component, which one it is and what is wrong with it.
pub fn uri_problem(uri: &str, check: UriCheck, policy: MatchPolicy) -> Option<String> {
    if uri.is_empty() {
        // The empty pattern matches every URI (prefix) or every URI of one component (wildcard).
        return (policy == MatchPolicy::Exact).then(|| "it is empty".into());
    }
    let components: Vec<&str> = uri.split('.').collect();
    let last = components.len() - 1;
    for (index, component) in components.iter().enumerate() {
        let number = index + 1;
        if component.is_empty() {
            let rule = match policy {
                MatchPolicy::Wildcard => continue,
                MatchPolicy::Prefix if index == last && last > 0 => continue,
                MatchPolicy::Prefix => {
                    "only the last component of a prefix may be empty (a trailing '.')"
                }
                MatchPolicy::Exact => "a URI has no empty components",
            };
            let place = if index == 0 {
                "it starts with '.'"
            } else if index == last {
                "it ends with '.'"
            } else {
                "two dots in a row"
            };
            return Some(format!("component {number} is empty ({place}): {rule}"));
        }
        for c in component.chars() {
            let what = if c.is_ascii_whitespace() {
                "whitespace".to_string()
            } else if c == '#' {
                "'#'".to_string()
            } else if check == UriCheck::Loose
                || c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || c == '_'
            {
                continue;
            } else if c.is_uppercase() {
                format!("the uppercase letter {c:?}")
            } else {
                format!("{c:?}")
            };
            let strict = match check {
                UriCheck::Strict => {
                    " (uri_check = \"strict\": lowercase letters, digits and '_' only)"
                }
                UriCheck::Loose => " (no whitespace, '.' or '#' in a component)",
            };
            return Some(format!(
                "component {number} ('{}') contains {what}{strict}",
                uri::shown(component)
            ));
        }
    }
    None
}

/// crossbar's starred URIs (a permission without `match`): `a.b.*` is a prefix, other stars are wildcards (as
/// autobahn reads them).
pub fn starred(uri: &str) -> (String, MatchPolicy) {
    let stars = uri.matches('*').count();
    if stars == 0 {
        (uri.to_string(), MatchPolicy::Exact)
    } else if stars == 1 && uri.ends_with('*') {
        (uri[..uri.len() - 1].to_string(), MatchPolicy::Prefix)
    } else {
        (uri.replace('*', ""), MatchPolicy::Wildcard)
    }
}

/// Why a role rule's URI pattern is refused in a realm with URI rule `check` (`None` when it is accepted): a
/// crossbar-style star (a `*` component or a trailing `*`) with the kreisel pattern to use instead, or the invalid
/// component, with the match policy under which the pattern would be valid, if any.
pub fn rule_problem(uri: &str, policy: MatchPolicy, check: UriCheck) -> Option<String> {
    let everything = uri.is_empty() && policy == MatchPolicy::Prefix;
    if everything {
        return None;
    }
    let valid = |uri: &str, policy: MatchPolicy| {
        (uri.is_empty() && policy == MatchPolicy::Prefix) || uri::is_valid(uri, check, policy)
    };
    if uri.split('.').any(|component| component == "*") || uri.ends_with('*') {
        let (instead, instead_policy) = starred(uri);
        let fix = match instead_policy {
            MatchPolicy::Prefix if valid(&instead, instead_policy) => {
                format!("use match = \"prefix\" with uri = \"{instead}\"")
            }
            MatchPolicy::Wildcard if valid(&instead, instead_policy) => format!(
                "use match = \"wildcard\" with an empty component for each `*` (uri = \"{instead}\")"
            ),
            _ => "use match = \"prefix\" (uri = \"com.example.\" for everything under com.example) or \
                  match = \"wildcard\" with an empty component (uri = \"com.example..x\")"
                .to_string(),
        };
        return Some(format!(
            "'{}' (match '{}'): kreisel has no `*` in URIs: {fix}",
            uri::shown(uri),
            policy.name()
        ));
    }
    let problem = uri_problem(uri, check, policy)?;
    let mut text = format!(
        "'{}' is not a valid URI pattern for match '{}': {problem}",
        uri::shown(uri),
        policy.name()
    );
    if uri.is_empty() {
        text.push_str(" (uri = \"\" with match = \"prefix\" matches every URI)");
    } else if let Some(other) = [MatchPolicy::Prefix, MatchPolicy::Wildcard]
        .into_iter()
        .find(|&other| other != policy && valid(uri, other))
    {
        let meaning = match other {
            MatchPolicy::Prefix => "every URI that starts with it",
            _ => "an empty component matches any one component",
        };
        text.push_str(&format!(
            " (valid with match = \"{}\": {meaning})",
            other.name()
        ));
    }
    Some(text)
}

/// Checks a realm's principals, roles and dynamic authenticators; `Err` explains the first mistake. `check` is the
/// realm's URI rule, which the roles' URI patterns must follow; `realms` are the names of every realm (an
/// authenticator or authorizer may be registered in another).
pub fn validate(
    realm: &str,
    check: UriCheck,
    anonymous_role: Option<&str>,
    (principals, roles, authenticators): (&[Principal], Option<&[Role]>, &[Authenticator]),
    realms: &[&str],
) -> Result<(), String> {
    let mut dynamic = HashSet::new();
    for (index, authenticator) in authenticators.iter().enumerate() {
        let which = format!(
            "realm '{realm}', authenticator {} ('{}')",
            index + 1,
            authenticator.procedure
        );
        if let Some(problem) = procedure_problem(&authenticator.procedure) {
            return Err(format!("{which}: {problem}"));
        }
        if authenticator.methods.is_empty() {
            return Err(format!("{which}: methods must name at least one method"));
        }
        if let Some(other) = (authenticator.realm.as_deref()).filter(|r| !realms.contains(r)) {
            return Err(format!("{which}: there is no realm '{other}' (realm = the realm its procedure is registered in)"));
        }
        if authenticator.timeout_ms == 0 || authenticator.concurrency_max == 0 {
            return Err(format!(
                "{which}: timeout_ms and concurrency_max must be at least 1"
            ));
        }
        for method in &authenticator.methods {
            if !dynamic.insert(*method) {
                return Err(format!(
                    "realm '{realm}': method '{}' has two dynamic authenticators",
                    method.name()
                ));
            }
            let static_too = match method {
                MethodName::Anonymous => anonymous_role.is_some(),
                MethodName::Ticket => principals.iter().any(|p| p.ticket.is_some()),
                MethodName::WampCra => principals.iter().any(|p| p.wampcra_secret.is_some()),
                MethodName::Cryptosign => {
                    principals.iter().any(|p| !p.cryptosign_pubkeys.is_empty())
                }
                MethodName::Scram => principals.iter().any(|p| p.scram_kdf.is_some()),
            };
            if static_too {
                let what = match method {
                    MethodName::Anonymous => "anonymous access (set anonymous = false)".to_string(),
                    other => format!("principals with {} credentials", other.name()),
                };
                return Err(format!(
                    "realm '{realm}': method '{}' has a dynamic authenticator and {what}: one of them decides \
                     a method",
                    method.name()
                ));
            }
        }
    }
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
        let scram = p.scram().map_err(|e| format!("{which}: {e}"))?;
        if p.ticket.is_none()
            && p.wampcra_secret.is_none()
            && p.cryptosign_pubkeys.is_empty()
            && scram.is_none()
        {
            return Err(format!(
                "{which}: needs a credential (ticket, wampcra_secret, cryptosign_pubkeys or scram_*)"
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
            if let Some(problem) = rule_problem(&rule.uri, rule.policy.policy(), check) {
                return Err(format!("realm '{realm}', role '{}': {problem}", role.name));
            }
        }
        if let Some(authorizer) = &role.authorizer {
            let which = format!("realm '{realm}', role '{}', authorizer", role.name);
            if !role.permissions.is_empty() {
                return Err(format!(
                    "{which}: a role has permissions or an authorizer, not both"
                ));
            }
            if let Some(problem) = procedure_problem(&authorizer.procedure) {
                return Err(format!("{which}: {problem}"));
            }
            if let Some(other) = (authorizer.realm.as_deref()).filter(|r| !realms.contains(r)) {
                return Err(format!("{which}: there is no realm '{other}'"));
            }
            if authorizer.timeout_ms == 0 || authorizer.concurrency_max == 0 {
                return Err(format!(
                    "{which}: timeout_ms and concurrency_max must be at least 1"
                ));
            }
        }
    }
    let mut defined: Vec<String> = roles.iter().map(|r| format!("'{}'", r.name)).collect();
    defined.sort();
    let defined = match defined.is_empty() {
        true => "it defines none".to_string(),
        false => format!("defined: {}", defined.join(", ")),
    };
    for p in principals {
        if !names.contains(p.role.as_str()) {
            return Err(format!(
                "realm '{realm}': role '{}' (of principal '{}') is not among the realm's [[realms.roles]] \
                 ({defined}); define the role or give the principal one of the roles",
                p.role, p.authid
            ));
        }
    }
    if let Some(role) = anonymous_role.filter(|role| !names.contains(role)) {
        let why = match principals.is_empty() {
            true => {
                "a realm without principals admits anonymous sessions unless anonymous = false; "
            }
            false => "",
        };
        return Err(format!(
            "realm '{realm}': role '{role}' (of anonymous sessions: anonymous_role) is not among the realm's \
             [[realms.roles]] ({defined}); {why}define the role, set anonymous_role to one of the roles, or set \
             anonymous = false"
        ));
    }
    Ok(())
}

/// The engine's form of a (validated) realm's authentication and authorization.
pub fn engine_config(
    anonymous_role: Option<&str>,
    principals: &[Principal],
    roles: Option<&[Role]>,
    authenticators: &[Authenticator],
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
                scram: p.scram().ok().flatten(),
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
                    authorizer: role.authorizer.as_ref().map(|a| AuthorizerConfig {
                        procedure: a.procedure.clone(),
                        realm: a.realm.clone(),
                        timeout_ms: a.timeout_ms,
                        concurrency_max: a.concurrency_max,
                        cache: match a.cache {
                            CacheName::Role => CacheScope::Role,
                            CacheName::Session => CacheScope::Session,
                        },
                        patterns: match a.patterns {
                            PatternsName::Ask => Patterns::Ask,
                            PatternsName::Refuse => Patterns::Refuse,
                        },
                    }),
                })
                .collect()
        }),
        authenticators: authenticators
            .iter()
            .map(|a| AuthenticatorConfig {
                methods: a.methods.iter().map(|m| m.method()).collect(),
                procedure: a.procedure.clone(),
                realm: a.realm.clone(),
                timeout_ms: a.timeout_ms,
                concurrency_max: a.concurrency_max,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICIES: [MatchPolicy; 3] = [
        MatchPolicy::Exact,
        MatchPolicy::Prefix,
        MatchPolicy::Wildcard,
    ];

    /// `uri_problem` explains exactly the URIs the engine's rule refuses: every string of up to five characters
    /// from an alphabet with each kind of character, under both rules and every match policy.
    #[test]
    fn uri_problem_agrees_with_the_engine() {
        let alphabet = ['a', 'Z', '_', '.', ' ', '#', '*', '-', 'é'];
        let mut frontier = vec![String::new()];
        let mut checked = 0;
        for _ in 0..=5 {
            for uri in &frontier {
                for check in [UriCheck::Loose, UriCheck::Strict] {
                    for policy in POLICIES {
                        let problem = uri_problem(uri, check, policy);
                        assert_eq!(
                            problem.is_none(),
                            uri::is_valid(uri, check, policy),
                            "{uri:?} {check:?} {policy:?}: {problem:?}"
                        );
                        checked += 1;
                    }
                }
            }
            frontier = frontier
                .iter()
                .flat_map(|uri| alphabet.iter().map(move |c| format!("{uri}{c}")))
                .collect();
        }
        assert_eq!(checked, 6 * (0..=5).map(|n| 9usize.pow(n)).sum::<usize>());
    }

    #[test]
    fn uri_problems_name_the_component_and_why() {
        let problem = |uri: &str, check, policy| uri_problem(uri, check, policy).unwrap();
        use MatchPolicy::*;
        use UriCheck::*;
        for (uri, check, policy, expected) in [
            ("", Loose, Exact, "it is empty"),
            (
                "a..b",
                Loose,
                Exact,
                "component 2 is empty (two dots in a row): a URI has no empty components",
            ),
            (".a", Loose, Exact, "component 1 is empty (it starts with '.')"),
            ("a.b.", Loose, Exact, "component 3 is empty (it ends with '.')"),
            (
                "a..",
                Loose,
                Prefix,
                "component 2 is empty (two dots in a row): only the last component of a prefix may be empty",
            ),
            (
                "app.Chat",
                Strict,
                Exact,
                "component 2 ('Chat') contains the uppercase letter 'C' (uri_check = \"strict\": lowercase \
                 letters, digits and '_' only)",
            ),
            ("app.my-topic", Strict, Prefix, "component 2 ('my-topic') contains '-'"),
            ("app.é", Strict, Wildcard, "component 2 ('é') contains 'é'"),
            (
                "app.my topic",
                Loose,
                Exact,
                "component 2 ('my topic') contains whitespace (no whitespace, '.' or '#' in a component)",
            ),
            ("app.\tx", Strict, Exact, "component 2 ('\tx') contains whitespace"),
            ("a#b", Loose, Wildcard, "component 1 ('a#b') contains '#'"),
        ] {
            let text = problem(uri, check, policy);
            assert!(text.contains(expected), "{uri:?}: {text}");
        }
    }

    #[test]
    fn rule_problems_hint_at_the_kreisel_pattern() {
        use MatchPolicy::*;
        use UriCheck::*;
        let problem = |uri: &str, policy, check| rule_problem(uri, policy, check).unwrap();
        // crossbar's stars: a trailing one is a prefix, others are wildcards; the match written does not matter.
        for (uri, policy, check, fix) in [
            (
                "com.example.*",
                Exact,
                Loose,
                "use match = \"prefix\" with uri = \"com.example.\"",
            ),
            ("com.example.*", Prefix, Strict, "uri = \"com.example.\""),
            ("*", Exact, Loose, "use match = \"prefix\" with uri = \"\""),
            ("com.exam*", Exact, Loose, "with uri = \"com.exam\""),
            (
                "com.*.status",
                Wildcard,
                Loose,
                "use match = \"wildcard\" with an empty component for each `*` (uri = \"com..status\")",
            ),
            ("*.status.*", Exact, Strict, "(uri = \".status.\")"),
            // The replacement would break the strict rule too: the general advice.
            ("com.Example.*", Exact, Strict, "or match = \"wildcard\" with an empty component"),
        ] {
            let text = problem(uri, policy, check);
            assert!(
                text.contains("kreisel has no `*` in URIs: ") && text.contains(fix),
                "{uri}: {text}"
            );
            assert!(text.contains(&format!("(match '{}')", policy.name())), "{text}");
        }
        // A star inside a component is a character like any other under the loose rule, not under the strict one.
        assert_eq!(rule_problem("com.a*b", Exact, Loose), None);
        assert!(problem("com.a*b", Exact, Strict).contains("component 2 ('a*b') contains '*'"));
        // The match policy under which the pattern would be valid.
        assert!(problem("com..x", Exact, Loose).ends_with(
            "(valid with match = \"wildcard\": an empty component matches any one component)"
        ));
        assert!(problem("com.x.", Exact, Strict)
            .ends_with("(valid with match = \"prefix\": every URI that starts with it)"));
        assert!(problem("com..x", Prefix, Loose).contains("valid with match = \"wildcard\""));
        assert!(!problem("com.X", Exact, Strict).contains("valid with"));
        assert!(problem("", Exact, Loose)
            .ends_with("it is empty (uri = \"\" with match = \"prefix\" matches every URI)"));
        assert_eq!(rule_problem("", Prefix, Strict), None);
        assert_eq!(rule_problem("com.example.", Prefix, Strict), None);
        assert_eq!(rule_problem("com..x", Wildcard, Strict), None);
    }
}
