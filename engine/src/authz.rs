//! Authorization: roles with permissions per URI pattern, decided on the hot path without allocating.
//!
//! A realm either has no roles (every session may do everything: the embedded default) or a set of roles; then a
//! session's `authrole` selects one, and every PUBLISH, SUBSCRIBE, CALL and REGISTER is checked against the role's
//! rules. The rule that decides is the one that would win as a registration (exact, else the longest prefix,
//! else the most specific wildcard); a URI no rule matches is denied. The decision is a lookup in the role's URI
//! trie (a hash-map probe for exact rules, a walk along the URI's components for patterns), remembered per role
//! and URI: the steady state of a session publishing to the same topics is one hash-map probe. The remembered
//! decisions live in the roles themselves, so a configuration reload, which builds a new `Authorizer`, drops them
//! with the old rules (`Router::handle_auth_reload`); the memory is bounded (`CACHE_MAX` URIs per role, then it
//! starts over).

use std::collections::HashMap;

use crate::uri::{MatchPolicy, UriTrie};

/// What a rule allows, as a bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Perms(u8);

impl Perms {
    pub const NONE: Perms = Perms(0);
    pub const CALL: Perms = Perms(1);
    pub const REGISTER: Perms = Perms(2);
    pub const PUBLISH: Perms = Perms(4);
    pub const SUBSCRIBE: Perms = Perms(8);
    /// Calls of this role to the URI disclose the caller to the callee, asked for or not.
    pub const DISCLOSE_CALLER: Perms = Perms(16);
    /// Publications of this role to the URI disclose the publisher to subscribers, asked for or not.
    pub const DISCLOSE_PUBLISHER: Perms = Perms(32);
    /// The four actions (what a realm without roles allows everyone).
    pub const ACTIONS: Perms = Perms(15);

    pub fn contains(self, other: Perms) -> bool {
        self.0 & other.0 == other.0
    }

    /// The action's name, for error texts.
    pub fn verb(self) -> &'static str {
        match self {
            Perms::CALL => "call",
            Perms::REGISTER => "register",
            Perms::PUBLISH => "publish to",
            Perms::SUBSCRIBE => "subscribe to",
            _ => "use",
        }
    }
}

impl std::ops::BitOr for Perms {
    type Output = Perms;
    fn bitor(self, other: Perms) -> Perms {
        Perms(self.0 | other.0)
    }
}

/// One rule of a role, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PermissionConfig {
    /// The URI pattern; `""` with `match = prefix` matches every URI.
    pub uri: String,
    pub policy: MatchPolicy,
    pub allow: Perms,
}

/// A role, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleConfig {
    pub name: String,
    pub permissions: Vec<PermissionConfig>,
}

#[derive(Debug)]
struct Role {
    /// Rules by pattern; values index `rules`.
    trie: UriTrie<u32>,
    rules: Vec<(Box<str>, Perms)>,
    /// The `""` prefix rule (matches everything; loses to any other matching rule).
    fallback: Option<Perms>,
    /// Decisions already made, by URI.
    cache: HashMap<Box<str>, Perms>,
}

/// URIs whose decision a role remembers.
const CACHE_MAX: usize = 4096;

/// A realm's roles, compiled. A session holds the index of its role ([`Authorizer::role`]).
#[derive(Debug, Default)]
pub struct Authorizer {
    /// `None`: the realm has no roles, everything is allowed.
    roles: Option<Vec<Role>>,
    by_name: HashMap<Box<str>, u32>,
}

/// A session's role in its realm: an index into the realm's [`Authorizer`], or `OPEN` (the realm has no roles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoleIndex(u32);

impl RoleIndex {
    pub const OPEN: RoleIndex = RoleIndex(u32::MAX);
    /// A role the realm does not have (a reload removed it): nothing is allowed.
    pub const NONE: RoleIndex = RoleIndex(u32::MAX - 1);
}

impl Authorizer {
    /// `roles`: `None` for a realm without authorization. Rules with the same (uri, match) are merged.
    pub fn new(roles: Option<&[RoleConfig]>) -> Authorizer {
        let Some(configs) = roles else {
            return Authorizer::default();
        };
        let mut by_name = HashMap::new();
        let mut compiled = Vec::with_capacity(configs.len());
        for config in configs {
            let mut role = Role {
                trie: UriTrie::new(),
                rules: Vec::new(),
                fallback: None,
                cache: HashMap::new(),
            };
            for rule in &config.permissions {
                if rule.uri.is_empty() && rule.policy == MatchPolicy::Prefix {
                    role.fallback = Some(role.fallback.unwrap_or_default() | rule.allow);
                    continue;
                }
                match role.trie.get(&rule.uri, rule.policy) {
                    Some(index) => {
                        let perms = &mut role.rules[index as usize].1;
                        *perms = *perms | rule.allow;
                    }
                    None => {
                        let index = role.rules.len() as u32;
                        role.rules.push((rule.uri.as_str().into(), rule.allow));
                        role.trie.insert(&rule.uri, rule.policy, index);
                    }
                }
            }
            by_name.insert(config.name.as_str().into(), compiled.len() as u32);
            compiled.push(role);
        }
        Authorizer {
            roles: Some(compiled),
            by_name,
        }
    }

    /// Whether the realm checks permissions at all.
    pub fn enforced(&self) -> bool {
        self.roles.is_some()
    }

    /// The role called `name`: `OPEN` in a realm without roles, `None` if the realm has roles but not this one.
    pub fn role(&self, name: &str) -> Option<RoleIndex> {
        match &self.roles {
            None => Some(RoleIndex::OPEN),
            Some(_) => self.by_name.get(name).map(|&index| RoleIndex(index)),
        }
    }

    /// What `role` may do on `uri`. Allocates only the first time a role meets a URI.
    pub fn permissions(&mut self, role: RoleIndex, uri: &str) -> Perms {
        let Some(roles) = &mut self.roles else {
            return Perms::ACTIONS;
        };
        let Some(role) = roles.get_mut(role.0 as usize) else {
            return Perms::NONE;
        };
        if let Some(perms) = role.cache.get(uri) {
            return *perms;
        }
        let perms = role.decide(uri);
        if role.cache.len() >= CACHE_MAX {
            role.cache.clear();
        }
        role.cache.insert(uri.into(), perms);
        perms
    }
}

impl Role {
    fn decide(&self, uri: &str) -> Perms {
        match self
            .trie
            .best_match(uri, |index| &self.rules[index as usize].0)
        {
            Some(index) => self.rules[index as usize].1,
            None => self.fallback.unwrap_or(Perms::NONE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(uri: &str, policy: MatchPolicy, allow: Perms) -> PermissionConfig {
        PermissionConfig {
            uri: uri.into(),
            policy,
            allow,
        }
    }

    fn authorizer() -> Authorizer {
        use MatchPolicy::*;
        Authorizer::new(Some(&[
            RoleConfig {
                name: "user".into(),
                permissions: vec![
                    rule("com.app.", Prefix, Perms::CALL | Perms::SUBSCRIBE),
                    rule("com.app.admin.", Prefix, Perms::NONE),
                    rule("com.app.admin.status", Exact, Perms::CALL),
                    rule("com.app..events", Wildcard, Perms::PUBLISH),
                    rule("com.app.chat", Exact, Perms::PUBLISH),
                    rule("com.app.chat", Exact, Perms::DISCLOSE_PUBLISHER),
                ],
            },
            RoleConfig {
                name: "backend".into(),
                permissions: vec![rule("", Prefix, Perms::ACTIONS)],
            },
            RoleConfig {
                name: "nobody".into(),
                permissions: vec![],
            },
        ]))
    }

    #[test]
    fn most_specific_rule_decides() {
        let mut authz = authorizer();
        let user = authz.role("user").unwrap();
        assert_eq!(
            authz.permissions(user, "com.app.add"),
            Perms::CALL | Perms::SUBSCRIBE
        );
        // The longer prefix takes everything away, the exact rule gives one thing back.
        assert_eq!(authz.permissions(user, "com.app.admin.kill"), Perms::NONE);
        assert_eq!(authz.permissions(user, "com.app.admin.status"), Perms::CALL);
        // A matching prefix beats a matching wildcard, as for registrations.
        assert_eq!(
            authz.permissions(user, "com.app.x.events"),
            Perms::CALL | Perms::SUBSCRIBE
        );
        // Rules for the same pattern merge.
        assert_eq!(
            authz.permissions(user, "com.app.chat"),
            Perms::PUBLISH | Perms::DISCLOSE_PUBLISHER
        );
        assert_eq!(authz.permissions(user, "org.other"), Perms::NONE);
    }

    #[test]
    fn wildcard_applies_where_no_prefix_matches() {
        use MatchPolicy::*;
        let mut authz = Authorizer::new(Some(&[RoleConfig {
            name: "r".into(),
            permissions: vec![rule("a..c", Wildcard, Perms::PUBLISH)],
        }]));
        let r = authz.role("r").unwrap();
        assert_eq!(authz.permissions(r, "a.b.c"), Perms::PUBLISH);
        assert_eq!(authz.permissions(r, "a.b.d"), Perms::NONE);
    }

    #[test]
    fn remembered_decisions_match_fresh_ones_and_stay_bounded() {
        let mut authz = authorizer();
        let user = authz.role("user").unwrap();
        let uris: Vec<String> = (0..CACHE_MAX + 10)
            .map(|i| match i % 4 {
                0 => format!("com.app.admin.x{i}"),
                1 => format!("com.app.{i}.events"),
                2 => format!("org.x{i}"),
                _ => format!("com.app.p{i}"),
            })
            .collect();
        for round in 0..2 {
            for uri in &uris {
                let expected = authz.roles.as_ref().unwrap()[user.0 as usize].decide(uri);
                assert_eq!(
                    authz.permissions(user, uri),
                    expected,
                    "{uri} (round {round})"
                );
            }
        }
        assert!(authz.roles.as_ref().unwrap()[user.0 as usize].cache.len() <= CACHE_MAX);
    }

    #[test]
    fn empty_prefix_is_the_fallback() {
        let mut authz = authorizer();
        let backend = authz.role("backend").unwrap();
        assert_eq!(
            authz.permissions(backend, "anything.at.all"),
            Perms::ACTIONS
        );
        let nobody = authz.role("nobody").unwrap();
        assert_eq!(authz.permissions(nobody, "com.app.add"), Perms::NONE);
        assert_eq!(authz.role("ghost"), None);
    }

    #[test]
    fn a_realm_without_roles_allows_every_action() {
        let mut authz = Authorizer::new(None);
        assert!(!authz.enforced());
        let role = authz.role("whatever").unwrap();
        assert_eq!(role, RoleIndex::OPEN);
        assert_eq!(authz.permissions(role, "x.y"), Perms::ACTIONS);
    }
}
