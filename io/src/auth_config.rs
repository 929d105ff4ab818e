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

/// Checks a realm's principals and roles; `Err` explains the first mistake. `check` is the realm's URI rule, which
/// the roles' URI patterns must follow.
pub fn validate(
    realm: &str,
    check: UriCheck,
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
            if let Some(problem) = rule_problem(&rule.uri, rule.policy.policy(), check) {
                return Err(format!("realm '{realm}', role '{}': {problem}", role.name));
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
