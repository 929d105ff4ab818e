//! Authorization: roles with permissions per URI pattern, decided on the hot path without allocating.
//!
//! A realm either has no roles (every session may do everything: the embedded default) or a set of roles; then a
//! session's `authrole` selects one, and every PUBLISH, SUBSCRIBE, CALL and REGISTER is checked against the role's
//! rules. The rule that decides is the one that would win as a registration (exact, else the longest prefix,
//! else the most specific wildcard); a URI no rule matches is denied. The decision is a lookup in the role's URI
//! trie (a hash-map probe for exact rules, a walk along the URI's components for patterns), remembered per role
//! and URI: the steady state of a session publishing to the same topics is one hash-map probe. The remembered
//! decisions live in the roles themselves, so a configuration reload, which builds a new `Authorizer`, drops them
//! with the old rules (`Router::handle_auth_reload`). Their memory is bounded in bytes, per role
//! ([`CACHE_ROLE_BYTES_MAX`]) and for the whole realm ([`CACHE_BYTES_MAX`]): a role over its budget starts over,
//! and so does every role when the realm's budget is reached, so a peer sending unique URIs cannot make the
//! router remember more than that.
//!
//! Patterns (SUBSCRIBE and REGISTER with `match: prefix|wildcard`) are decided by what they can reach
//! ([`Authorizer::reach`]): the rules that may decide some URI the pattern matches are collected, and the pattern
//! is allowed everywhere (every such rule allows the action), nowhere (none does), or in part. In part means the
//! router checks each concrete URI at delivery, so no event, retained event or invocation reaches a session
//! whose role may not subscribe to or register that URI.

use std::collections::HashMap;

use crate::dynamic::AuthorizerConfig;
use crate::uri::{matches, MatchPolicy, UriTrie};

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
    /// This role, as a callee, may ask to be told its callers (REGISTER `disclose_caller`) on the URI.
    pub const IDENTIFY_CALLER: Perms = Perms(64);
    /// This role, as a subscriber, may ask to be told the publishers (SUBSCRIBE `disclose_publisher`) on the URI.
    pub const IDENTIFY_PUBLISHER: Perms = Perms(128);
    /// The four actions.
    pub const ACTIONS: Perms = Perms(15);
    /// What a realm without roles allows everyone: the four actions and both identification requests.
    pub const OPEN: Perms = Perms(15 | 64 | 128);
    /// Every bit.
    const EVERYTHING: Perms = Perms(u8::MAX);

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
            Perms::IDENTIFY_CALLER => "be told the callers of",
            Perms::IDENTIFY_PUBLISHER => "be told the publishers of",
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

impl std::ops::BitAnd for Perms {
    type Output = Perms;
    fn bitand(self, other: Perms) -> Perms {
        Perms(self.0 & other.0)
    }
}

/// What a role may do on the URIs a pattern can match ([`Authorizer::reach`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reach {
    /// Allowed on every URI the pattern can match.
    pub everywhere: Perms,
    /// Allowed on at least one URI the pattern can match (a superset: a rule that may decide somewhere counts).
    pub somewhere: Perms,
}

impl Reach {
    fn of(perms: Perms) -> Reach {
        Reach {
            everywhere: perms,
            somewhere: perms,
        }
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

/// A role, as configured: static permissions, or (with `authorizer`) a procedure that decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleConfig {
    pub name: String,
    pub permissions: Vec<PermissionConfig>,
    /// A dynamic authorizer decides this role's requests (`permissions` is then ignored).
    pub authorizer: Option<AuthorizerConfig>,
}

#[derive(Debug)]
struct Role {
    /// Rules by pattern; values index `rules`.
    trie: UriTrie<u32>,
    rules: Vec<Rule>,
    /// The `""` prefix rule (matches everything; loses to any other matching rule).
    fallback: Option<Perms>,
    /// Decisions already made, by URI.
    cache: HashMap<Box<str>, Perms>,
    /// What `cache` holds, in bytes (see [`cache_cost`]).
    cache_bytes: usize,
}

#[derive(Debug)]
struct Rule {
    uri: Box<str>,
    policy: MatchPolicy,
    perms: Perms,
}

/// Bytes of remembered decisions one role may hold; beyond, its memory starts over.
pub const CACHE_ROLE_BYTES_MAX: usize = 256 << 10;
/// Bytes of remembered decisions all roles of a realm may hold together; beyond, every role starts over.
pub const CACHE_BYTES_MAX: usize = 4 << 20;

/// What remembering the decision for `uri` costs: its bytes plus the map slot and the allocation's overhead.
fn cache_cost(uri: &str) -> usize {
    uri.len() + 48
}

/// A realm's roles, compiled. A session holds the index of its role ([`Authorizer::role`]).
#[derive(Debug, Default)]
pub struct Authorizer {
    /// `None`: the realm has no roles, everything is allowed.
    roles: Option<Vec<Role>>,
    by_name: HashMap<Box<str>, RoleIndex>,
    /// What the roles' caches hold together, in bytes.
    cache_bytes: usize,
    /// Roles whose requests a dynamic authorizer decides.
    dynamic: Vec<DynamicRole>,
    /// What those authorizers let the router remember.
    decisions: Decisions,
}

#[derive(Debug)]
struct DynamicRole {
    config: AuthorizerConfig,
    /// Requests waiting for the authorizer's answer on this shard.
    in_flight: usize,
}

/// Decisions of dynamic authorizers answered with `cache: true`, per [`DecisionKey`] and URI, bounded in bytes
/// ([`CACHE_BYTES_MAX`] per realm; beyond, it starts over).
#[derive(Debug, Default)]
struct Decisions {
    maps: HashMap<u64, HashMap<Box<str>, Perms>>,
    bytes: usize,
}

/// Whom and what a remembered dynamic decision is for: a role (every session of it) or one session (by its
/// serial), an action and the match policy of the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecisionKey(u64);

impl DecisionKey {
    /// `scope`: the role's [`RoleIndex::number`], or (`session` true) the session's serial.
    pub fn new(scope: u64, session: bool, action: Perms, policy: MatchPolicy) -> DecisionKey {
        let policy = match policy {
            MatchPolicy::Exact => 0,
            MatchPolicy::Prefix => 1,
            MatchPolicy::Wildcard => 2,
        };
        DecisionKey(scope << 8 | u64::from(session) << 7 | policy << 4 | u64::from(action.0 & 15))
    }
}

/// A session's role in its realm: an index into the realm's [`Authorizer`] (static or dynamic), or `OPEN` (the
/// realm has no roles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoleIndex(u32);

impl RoleIndex {
    pub const OPEN: RoleIndex = RoleIndex(u32::MAX);
    /// A role the realm does not have (a reload removed it): nothing is allowed.
    pub const NONE: RoleIndex = RoleIndex(u32::MAX - 1);
    /// The bit that marks a role decided by a dynamic authorizer.
    const DYNAMIC: u32 = 1 << 30;

    /// Whether a dynamic authorizer decides this role's requests.
    pub fn is_dynamic(self) -> bool {
        self.0 & RoleIndex::DYNAMIC != 0 && self.0 < RoleIndex::NONE.0
    }

    /// The number the role is known by in [`DecisionKey`]s.
    pub fn number(self) -> u64 {
        u64::from(self.0)
    }
}

impl Authorizer {
    /// `roles`: `None` for a realm without authorization. Rules with the same (uri, match) are merged.
    pub fn new(roles: Option<&[RoleConfig]>) -> Authorizer {
        let Some(configs) = roles else {
            return Authorizer::default();
        };
        let mut by_name = HashMap::new();
        let mut compiled = Vec::with_capacity(configs.len());
        let mut dynamic = Vec::new();
        for config in configs {
            if let Some(authorizer) = &config.authorizer {
                let index = RoleIndex(RoleIndex::DYNAMIC | dynamic.len() as u32);
                by_name.insert(config.name.as_str().into(), index);
                dynamic.push(DynamicRole {
                    config: authorizer.clone(),
                    in_flight: 0,
                });
                continue;
            }
            let mut role = Role {
                trie: UriTrie::new(),
                rules: Vec::new(),
                fallback: None,
                cache: HashMap::new(),
                cache_bytes: 0,
            };
            for rule in &config.permissions {
                if rule.uri.is_empty() && rule.policy == MatchPolicy::Prefix {
                    role.fallback = Some(role.fallback.unwrap_or_default() | rule.allow);
                    continue;
                }
                match role.trie.get(&rule.uri, rule.policy) {
                    Some(index) => {
                        let perms = &mut role.rules[index as usize].perms;
                        *perms = *perms | rule.allow;
                    }
                    None => {
                        let index = role.rules.len() as u32;
                        role.rules.push(Rule {
                            uri: rule.uri.as_str().into(),
                            policy: rule.policy,
                            perms: rule.allow,
                        });
                        role.trie.insert(&rule.uri, rule.policy, index);
                    }
                }
            }
            by_name.insert(
                config.name.as_str().into(),
                RoleIndex(compiled.len() as u32),
            );
            compiled.push(role);
        }
        Authorizer {
            roles: Some(compiled),
            by_name,
            cache_bytes: 0,
            dynamic,
            decisions: Decisions::default(),
        }
    }

    /// The authorizer of a dynamic role.
    pub fn authorizer(&self, role: RoleIndex) -> Option<&AuthorizerConfig> {
        self.dynamic_role(role).map(|d| &d.config)
    }

    fn dynamic_role(&self, role: RoleIndex) -> Option<&DynamicRole> {
        role.is_dynamic()
            .then(|| self.dynamic.get((role.0 & !RoleIndex::DYNAMIC) as usize))
            .flatten()
    }

    /// Counts a request waiting for `role`'s authorizer; `false` (nothing counted) when its `concurrency_max`
    /// requests are waiting already.
    pub fn begin_asking(&mut self, role: RoleIndex) -> bool {
        let index = (role.0 & !RoleIndex::DYNAMIC) as usize;
        match self.dynamic.get_mut(index).filter(|_| role.is_dynamic()) {
            Some(d) if d.in_flight < d.config.concurrency_max => {
                d.in_flight += 1;
                true
            }
            _ => false,
        }
    }

    /// A request counted by [`Authorizer::begin_asking`] got its answer (or gave up).
    pub fn end_asking(&mut self, role: RoleIndex) {
        let index = (role.0 & !RoleIndex::DYNAMIC) as usize;
        if let Some(d) = self.dynamic.get_mut(index).filter(|_| role.is_dynamic()) {
            d.in_flight = d.in_flight.saturating_sub(1);
        }
    }

    /// A dynamic decision remembered for `key` and `uri` (allocates nothing).
    pub fn remembered(&self, key: DecisionKey, uri: &str) -> Option<Perms> {
        self.decisions.maps.get(&key.0)?.get(uri).copied()
    }

    /// Remembers a dynamic decision (bounded: over [`CACHE_BYTES_MAX`], everything remembered is forgotten first).
    pub fn remember(&mut self, key: DecisionKey, uri: &str, perms: Perms) {
        let cost = cache_cost(uri) + 16;
        if cost > CACHE_ROLE_BYTES_MAX {
            return;
        }
        let decisions = &mut self.decisions;
        if decisions.bytes + cost > CACHE_BYTES_MAX {
            decisions.maps.clear();
            decisions.bytes = 0;
        }
        let map = decisions.maps.entry(key.0).or_default();
        if map.insert(uri.into(), perms).is_none() {
            decisions.bytes += cost;
        }
    }

    /// Bytes the remembered dynamic decisions hold.
    pub fn dynamic_cache_bytes(&self) -> usize {
        self.decisions.bytes
    }

    /// Whether the realm checks permissions at all.
    pub fn enforced(&self) -> bool {
        self.roles.is_some()
    }

    /// The role called `name`: `OPEN` in a realm without roles, `None` if the realm has roles but not this one.
    pub fn role(&self, name: &str) -> Option<RoleIndex> {
        match &self.roles {
            None => Some(RoleIndex::OPEN),
            Some(_) => self.by_name.get(name).copied(),
        }
    }

    /// What `role` may do on `uri`. Allocates only the first time a role meets a URI (until its memory starts
    /// over; see the module documentation).
    pub fn permissions(&mut self, role: RoleIndex, uri: &str) -> Perms {
        let Some(roles) = &mut self.roles else {
            return Perms::OPEN;
        };
        let index = role.0 as usize;
        // A dynamic role's index is past every static one: nothing here (its authorizer decides).
        let Some(role) = roles.get_mut(index) else {
            return Perms::NONE;
        };
        if let Some(perms) = role.cache.get(uri) {
            return *perms;
        }
        let perms = role.decide(uri);
        let cost = cache_cost(uri);
        if role.cache_bytes + cost > CACHE_ROLE_BYTES_MAX {
            self.cache_bytes -= role.cache_bytes;
            role.forget();
        }
        if self.cache_bytes + cost > CACHE_BYTES_MAX {
            roles.iter_mut().for_each(Role::forget);
            self.cache_bytes = 0;
        }
        if cost <= CACHE_ROLE_BYTES_MAX {
            let role = &mut roles[index];
            role.cache.insert(uri.into(), perms);
            role.cache_bytes += cost;
            self.cache_bytes += cost;
        }
        perms
    }

    /// What `role` may do on `uri`, decided afresh (nothing remembered; for checks at delivery, where the
    /// router holds the realm only for reading). Linear in the URI's length.
    pub fn decide(&self, role: RoleIndex, uri: &str) -> Perms {
        match &self.roles {
            None => Perms::OPEN,
            Some(roles) => roles
                .get(role.0 as usize)
                .map_or(Perms::NONE, |role| role.decide(uri)),
        }
    }

    /// What `role` may do on the URIs `pattern` (with `policy`) can match: see [`Reach`].
    ///
    /// A dynamic role's memberships were granted by its authorizer for all a pattern reaches: everywhere.
    pub fn reach(&self, role: RoleIndex, pattern: &str, policy: MatchPolicy) -> Reach {
        if role.is_dynamic() {
            return Reach::of(Perms::OPEN);
        }
        match &self.roles {
            None => Reach::of(Perms::OPEN),
            Some(roles) => roles
                .get(role.0 as usize)
                .map_or(Reach::of(Perms::NONE), |role| role.reach(pattern, policy)),
        }
    }

    /// Bytes the remembered decisions hold (for tests and metrics).
    pub fn cache_bytes(&self) -> usize {
        self.cache_bytes
    }
}

impl Role {
    fn decide(&self, uri: &str) -> Perms {
        match self
            .trie
            .best_match(uri, |index| &self.rules[index as usize].uri)
        {
            Some(index) => self.rules[index as usize].perms,
            None => self.fallback.unwrap_or(Perms::NONE),
        }
    }

    fn forget(&mut self) {
        self.cache.clear();
        self.cache_bytes = 0;
    }

    /// The rules that may decide some URI `pattern` matches, folded into a [`Reach`]. A superset of the deciding
    /// rules is safe: it can only make the answer "in part" where it is "everywhere" or "nowhere", never the
    /// reverse. (Precedence: exact > longest prefix > most specific wildcard > the `""` fallback > nothing.)
    fn reach(&self, pattern: &str, policy: MatchPolicy) -> Reach {
        let mut reach = Reach {
            everywhere: Perms::EVERYTHING,
            somewhere: Perms::NONE,
        };
        let mut add = |perms: Perms| {
            reach.everywhere = reach.everywhere & perms;
            reach.somewhere = reach.somewhere | perms;
        };
        // A prefix rule matching every URI the pattern matches: below it, no wildcard rule and no fallback
        // decides anything.
        let mut covered = false;
        // A wildcard rule matching every URI the pattern matches: the fallback decides nothing.
        let mut covered_by_wildcard = false;
        if policy == MatchPolicy::Exact {
            return Reach::of(self.decide(pattern));
        }
        // The longest prefix rule matching every URI the pattern matches decides wherever no longer one does.
        let mut base: Option<&Rule> = None;
        for rule in &self.rules {
            let meets = match (rule.policy, policy) {
                (MatchPolicy::Exact, _) if matches(pattern, policy, &rule.uri) => Meets::Somewhere,
                (MatchPolicy::Prefix, MatchPolicy::Prefix) if pattern.starts_with(&*rule.uri) => {
                    Meets::Everywhere
                }
                (MatchPolicy::Prefix, MatchPolicy::Prefix) if rule.uri.starts_with(pattern) => {
                    Meets::Somewhere
                }
                (MatchPolicy::Prefix, MatchPolicy::Wildcard) => {
                    prefix_meets_wildcard(&rule.uri, pattern)
                }
                _ => Meets::Nowhere,
            };
            match meets {
                Meets::Everywhere if base.is_none_or(|b| rule.uri.len() > b.uri.len()) => {
                    base = Some(rule)
                }
                Meets::Everywhere | Meets::Nowhere => {}
                Meets::Somewhere => add(rule.perms),
            }
        }
        if let Some(base) = base {
            add(base.perms);
            covered = true;
        }
        if !covered {
            for rule in self
                .rules
                .iter()
                .filter(|rule| rule.policy == MatchPolicy::Wildcard)
            {
                match wildcard_meets(&rule.uri, pattern, policy) {
                    Meets::Everywhere => {
                        covered_by_wildcard = true;
                        add(rule.perms);
                    }
                    Meets::Somewhere => add(rule.perms),
                    Meets::Nowhere => {}
                }
            }
            if !covered_by_wildcard {
                add(self.fallback.unwrap_or(Perms::NONE));
            }
        }
        reach
    }
}

/// How the URIs one pattern matches relate to those a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Meets {
    /// The rule matches every URI the pattern matches.
    Everywhere,
    /// The rule may match some of them.
    Somewhere,
    /// The rule matches none of them.
    Nowhere,
}

/// A prefix rule against a wildcard pattern (same number of components as every URI it matches).
fn prefix_meets_wildcard(rule: &str, pattern: &str) -> Meets {
    let rule: Vec<&str> = rule.split('.').collect();
    let pattern: Vec<&str> = pattern.split('.').collect();
    let Some((last, full)) = rule.split_last() else {
        return Meets::Somewhere;
    };
    if rule.len() > pattern.len() {
        return Meets::Nowhere;
    }
    let mut everywhere = true;
    for (r, p) in full.iter().zip(&pattern) {
        if p.is_empty() {
            everywhere = false;
        } else if p != r {
            return Meets::Nowhere;
        }
    }
    let p = pattern[full.len()];
    if last.is_empty() {
        // A trailing "." only asks for one more component, which every matched URI has.
    } else if p.is_empty() {
        everywhere = false;
    } else if !p.starts_with(last) {
        return Meets::Nowhere;
    }
    if everywhere {
        Meets::Everywhere
    } else {
        Meets::Somewhere
    }
}

/// A wildcard rule against a prefix or wildcard pattern.
fn wildcard_meets(rule: &str, pattern: &str, policy: MatchPolicy) -> Meets {
    let rule: Vec<&str> = rule.split('.').collect();
    let pattern: Vec<&str> = pattern.split('.').collect();
    match policy {
        MatchPolicy::Wildcard => {
            if rule.len() != pattern.len() {
                return Meets::Nowhere;
            }
            let mut everywhere = true;
            for (r, p) in rule.iter().zip(&pattern) {
                match (r.is_empty(), p.is_empty()) {
                    (true, _) => {}
                    (false, true) => everywhere = false,
                    (false, false) if r == p => {}
                    (false, false) => return Meets::Nowhere,
                }
            }
            if everywhere {
                Meets::Everywhere
            } else {
                Meets::Somewhere
            }
        }
        // A prefix pattern matches URIs of any length: a wildcard rule, of one length, never covers them all.
        _ => {
            let Some((last, full)) = pattern.split_last() else {
                return Meets::Somewhere;
            };
            if pattern.len() > rule.len() {
                return Meets::Nowhere;
            }
            for (p, r) in full.iter().zip(&rule) {
                if !r.is_empty() && r != p {
                    return Meets::Nowhere;
                }
            }
            let r = rule[full.len()];
            if r.is_empty() || r.starts_with(last) {
                Meets::Somewhere
            } else {
                Meets::Nowhere
            }
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
                authorizer: None,
            },
            RoleConfig {
                name: "backend".into(),
                permissions: vec![rule("", Prefix, Perms::ACTIONS)],
                authorizer: None,
            },
            RoleConfig {
                name: "nobody".into(),
                permissions: vec![],
                authorizer: None,
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
            authorizer: None,
        }]));
        let r = authz.role("r").unwrap();
        assert_eq!(authz.permissions(r, "a.b.c"), Perms::PUBLISH);
        assert_eq!(authz.permissions(r, "a.b.d"), Perms::NONE);
    }

    #[test]
    fn remembered_decisions_match_fresh_ones_and_stay_bounded() {
        let mut authz = authorizer();
        let user = authz.role("user").unwrap();
        let uris: Vec<String> = (0..20_000)
            .map(|i| match i % 4 {
                0 => format!("com.app.admin.x{i}"),
                1 => format!("com.app.{i}.events"),
                2 => format!("org.x{i}"),
                _ => format!("com.app.p{i}"),
            })
            .collect();
        for round in 0..2 {
            for uri in &uris {
                let expected = authz.decide(user, uri);
                assert_eq!(
                    authz.permissions(user, uri),
                    expected,
                    "{uri} (round {round})"
                );
                assert!(authz.cache_bytes() <= CACHE_ROLE_BYTES_MAX);
            }
        }
    }

    /// A peer sending unique, long URIs makes every role start over rather than grow: neither one role nor all
    /// of them together hold more than their budgets.
    #[test]
    fn remembered_decisions_are_bounded_in_bytes() {
        let roles: Vec<RoleConfig> = (0..40)
            .map(|i| RoleConfig {
                name: format!("r{i}"),
                permissions: vec![rule("com.", MatchPolicy::Prefix, Perms::PUBLISH)],
                authorizer: None,
            })
            .collect();
        let mut authz = Authorizer::new(Some(&roles));
        let long = "x".repeat(4000);
        for i in 0..2000 {
            let role = authz.role(&format!("r{}", i % 40)).unwrap();
            let uri = format!("com.{long}{i}");
            assert_eq!(authz.permissions(role, &uri), Perms::PUBLISH);
            assert!(authz.cache_bytes() <= CACHE_BYTES_MAX);
            let held: usize = authz
                .roles
                .as_ref()
                .unwrap()
                .iter()
                .map(|r| r.cache_bytes)
                .sum();
            assert_eq!(held, authz.cache_bytes());
            assert!(authz
                .roles
                .as_ref()
                .unwrap()
                .iter()
                .all(|r| r.cache_bytes <= CACHE_ROLE_BYTES_MAX));
        }
        // A URI bigger than a role's whole budget is decided but never remembered.
        let huge = format!("com.{}", "y".repeat(CACHE_ROLE_BYTES_MAX));
        let r0 = authz.role("r0").unwrap();
        assert_eq!(authz.permissions(r0, &huge), Perms::PUBLISH);
        assert!(!authz.roles.as_ref().unwrap()[0].cache.contains_key(&*huge));
    }

    fn reach(authz: &Authorizer, role: &str, pattern: &str, policy: MatchPolicy) -> (bool, bool) {
        let reach = authz.reach(authz.role(role).unwrap(), pattern, policy);
        (
            reach.everywhere.contains(Perms::SUBSCRIBE),
            reach.somewhere.contains(Perms::SUBSCRIBE),
        )
    }

    #[test]
    fn patterns_are_allowed_everywhere_nowhere_or_in_part() {
        use MatchPolicy::*;
        let authz = authorizer();
        // "user": subscribe under com.app., nothing under com.app.admin.
        assert_eq!(reach(&authz, "user", "com.app.news.", Prefix), (true, true));
        assert_eq!(
            reach(&authz, "user", "com.app.admin.", Prefix),
            (false, false)
        );
        // com.app.ad also matches com.app.admin.*: allowed in part.
        assert_eq!(reach(&authz, "user", "com.app.ad", Prefix), (false, true));
        assert_eq!(reach(&authz, "user", "com.app.", Prefix), (false, true));
        assert_eq!(reach(&authz, "user", "com.", Prefix), (false, true));
        assert_eq!(reach(&authz, "user", "org.", Prefix), (false, false));
        assert_eq!(reach(&authz, "user", "com.app..x", Wildcard), (false, true));
        assert_eq!(
            reach(&authz, "user", "com.app.news.", Wildcard),
            (true, true)
        );
        assert_eq!(reach(&authz, "user", ".app.news", Wildcard), (false, true));
        assert_eq!(reach(&authz, "user", "org..x", Wildcard), (false, false));
        assert_eq!(reach(&authz, "backend", "", Prefix), (true, true));
        assert_eq!(reach(&authz, "backend", "..", Wildcard), (true, true));
        assert_eq!(reach(&authz, "nobody", "com.", Prefix), (false, false));
    }

    /// The reach of a pattern agrees with the decisions for the concrete URIs it matches: "everywhere" means
    /// every sampled URI allows, "nowhere" means none does.
    #[test]
    fn reach_agrees_with_concrete_decisions() {
        use MatchPolicy::*;
        let authz = Authorizer::new(Some(&[RoleConfig {
            name: "r".into(),
            permissions: vec![
                rule("a.", Prefix, Perms::SUBSCRIBE),
                rule("a.b", Prefix, Perms::NONE),
                rule("a.b.c", Exact, Perms::SUBSCRIBE),
                rule("x..z", Wildcard, Perms::SUBSCRIBE),
                rule("x.y.", Prefix, Perms::NONE),
                rule(".q", Wildcard, Perms::SUBSCRIBE),
            ],
            authorizer: None,
        }]));
        let r = authz.role("r").unwrap();
        let parts = ["a", "b", "c", "x", "y", "z", "q", "bc"];
        let mut uris = Vec::new();
        for &p in &parts {
            uris.push(p.to_owned());
            for &q in &parts {
                uris.push(format!("{p}.{q}"));
                for &t in &parts {
                    uris.push(format!("{p}.{q}.{t}"));
                }
            }
        }
        let patterns = [
            ("a.", Prefix),
            ("a.b", Prefix),
            ("a.b.", Prefix),
            ("a.c", Prefix),
            ("x.", Prefix),
            ("x..z", Wildcard),
            ("x.y.z", Wildcard),
            ("..", Wildcard),
            ("a..", Wildcard),
            (".q", Wildcard),
            ("y.", Prefix),
            ("b.q", Wildcard),
        ];
        for (pattern, policy) in patterns {
            let reach = authz.reach(r, pattern, policy);
            for uri in uris.iter().filter(|uri| matches(pattern, policy, uri)) {
                let allowed = authz.decide(r, uri).contains(Perms::SUBSCRIBE);
                if reach.everywhere.contains(Perms::SUBSCRIBE) {
                    assert!(allowed, "{pattern} ({policy:?}) everywhere, but not {uri}");
                }
                if !reach.somewhere.contains(Perms::SUBSCRIBE) {
                    assert!(!allowed, "{pattern} ({policy:?}) nowhere, but {uri}");
                }
            }
        }
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
        assert_eq!(authz.permissions(role, "x.y"), Perms::OPEN);
        assert!(Perms::OPEN.contains(Perms::ACTIONS));
    }

    fn rule_strategy() -> impl proptest::strategy::Strategy<Value = PermissionConfig> {
        use proptest::prelude::*;
        (
            proptest::collection::vec("(|a|b|ab)", 1..4),
            0..3usize,
            any::<bool>(),
        )
            .prop_filter_map("valid rule", |(components, policy, allow)| {
                let policy = [
                    MatchPolicy::Exact,
                    MatchPolicy::Prefix,
                    MatchPolicy::Wildcard,
                ][policy];
                let uri = components.join(".");
                let valid = (uri.is_empty() && policy == MatchPolicy::Prefix)
                    || crate::uri::is_valid(&uri, crate::uri::UriCheck::Loose, policy);
                let allow = if allow { Perms::SUBSCRIBE } else { Perms::NONE };
                valid.then_some(rule(&uri, policy, allow))
            })
    }

    fn pattern_strategy() -> impl proptest::strategy::Strategy<Value = (String, MatchPolicy)> {
        use proptest::prelude::*;
        (
            proptest::collection::vec("(|a|b|ab|abc)", 1..4),
            any::<bool>(),
        )
            .prop_filter_map("valid pattern", |(components, prefix)| {
                let policy = if prefix {
                    MatchPolicy::Prefix
                } else {
                    MatchPolicy::Wildcard
                };
                let pattern = components.join(".");
                crate::uri::is_valid(&pattern, crate::uri::UriCheck::Loose, policy)
                    .then_some((pattern, policy))
            })
    }

    proptest::proptest! {
        /// For random rule sets and patterns, checked against every URI of up to four components over the same
        /// alphabet: "everywhere" never hides a URI that is denied, "nowhere" never hides one that is allowed.
        #[test]
        fn reach_is_sound_for_random_rules(
            rules in proptest::collection::vec(rule_strategy(), 0..8),
            (pattern, policy) in pattern_strategy(),
        ) {
            let authz = Authorizer::new(Some(&[RoleConfig { name: "r".into(), permissions: rules, authorizer: None }]));
            let r = authz.role("r").unwrap();
            let reach = authz.reach(r, &pattern, policy);
            let parts = ["a", "b", "ab", "abc", "c"];
            let mut uris: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
            for _ in 0..3 {
                let longer: Vec<String> = uris
                    .iter()
                    .filter(|u| u.split('.').count() == uris.last().map_or(1, |l| l.split('.').count()))
                    .flat_map(|u| parts.iter().map(move |p| format!("{u}.{p}")))
                    .collect();
                uris.extend(longer);
            }
            for uri in uris.iter().filter(|uri| matches(&pattern, policy, uri)) {
                let allowed = authz.decide(r, uri).contains(Perms::SUBSCRIBE);
                if reach.everywhere.contains(Perms::SUBSCRIBE) {
                    proptest::prop_assert!(allowed, "{} ({:?}) everywhere, but not {}", pattern, policy, uri);
                }
                if !reach.somewhere.contains(Perms::SUBSCRIBE) {
                    proptest::prop_assert!(!allowed, "{} ({:?}) nowhere, but {}", pattern, policy, uri);
                }
            }
        }
    }
}
