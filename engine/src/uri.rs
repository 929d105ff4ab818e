//! URI validation (the spec's loose and strict rules) and the URI trie used for subscription and registration
//! matching.
//!
//! The trie keys nodes by URI component. Exact matches are answered by a hash map beside the trie (the common
//! case); the trie holds prefix and wildcard patterns and is walked component by component without allocating.

use std::collections::HashMap;

/// Which URI rule a realm enforces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UriCheck {
    /// Components are non-empty and contain no whitespace, `.` or `#` (the spec's default).
    #[default]
    Loose,
    /// Components consist of lowercase letters, digits and `_` only.
    Strict,
}

/// How a subscription or registration matches URIs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MatchPolicy {
    #[default]
    Exact,
    Prefix,
    Wildcard,
}

impl MatchPolicy {
    /// The policy named by the `match` option, if known.
    pub fn from_option(name: &str) -> Option<MatchPolicy> {
        match name {
            "exact" => Some(MatchPolicy::Exact),
            "prefix" => Some(MatchPolicy::Prefix),
            "wildcard" => Some(MatchPolicy::Wildcard),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MatchPolicy::Exact => "exact",
            MatchPolicy::Prefix => "prefix",
            MatchPolicy::Wildcard => "wildcard",
        }
    }
}

/// Whether `b` may appear in a URI component (every byte other than `.`).
fn byte_ok(b: u8, check: UriCheck) -> bool {
    match check {
        UriCheck::Loose => !b.is_ascii_whitespace() && b != b'#',
        UriCheck::Strict => b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_',
    }
}

/// Whether `uri` is valid for `policy` under `check`: exact URIs have no empty component; wildcard patterns may
/// have empty components (the wildcards); prefix patterns may end with `.` (a trailing empty component).
///
/// One pass over the bytes (this runs for every PUBLISH and CALL).
pub fn is_valid(uri: &str, check: UriCheck, policy: MatchPolicy) -> bool {
    if uri.is_empty() {
        return false;
    }
    let mut component_len = 0usize;
    let mut components = 1usize;
    for &b in uri.as_bytes() {
        if b == b'.' {
            // An empty component before a `.`: only a wildcard may have one there.
            if component_len == 0 && policy != MatchPolicy::Wildcard {
                return false;
            }
            components += 1;
            component_len = 0;
        } else if byte_ok(b, check) {
            component_len += 1;
        } else {
            return false;
        }
    }
    component_len > 0
        || match policy {
            MatchPolicy::Exact => false,
            MatchPolicy::Wildcard => true,
            MatchPolicy::Prefix => components > 1,
        }
}

/// Whether the pattern (with its match policy) matches `uri`, by the rules of [`UriTrie::for_each_match`]: equal
/// for exact, a string prefix for prefix, and for wildcard as many components with every non-empty one equal.
/// (For the rare path that starts from the pattern: retained events for a new pattern subscription.)
pub fn matches(pattern: &str, policy: MatchPolicy, uri: &str) -> bool {
    match policy {
        MatchPolicy::Exact => pattern == uri,
        MatchPolicy::Prefix => uri.starts_with(pattern),
        MatchPolicy::Wildcard => {
            let (mut pattern, mut uri) = (pattern.split('.'), uri.split('.'));
            loop {
                match (pattern.next(), uri.next()) {
                    (None, None) => return true,
                    (Some(p), Some(u)) if p.is_empty() || p == u => {}
                    _ => return false,
                }
            }
        }
    }
}

/// Whether `uri` lies in the router's reserved `wamp.` namespace.
pub fn is_reserved(uri: &str) -> bool {
    uri.starts_with("wamp.")
}

/// Whether a subscription (pattern and policy) may match some URI under `wamp.`, where the router's meta events
/// are published.
pub fn may_match_reserved(pattern: &str, policy: MatchPolicy) -> bool {
    match policy {
        MatchPolicy::Exact => is_reserved(pattern),
        MatchPolicy::Prefix => is_reserved(pattern) || "wamp.".starts_with(pattern),
        MatchPolicy::Wildcard => matches!(pattern.split('.').next(), Some("" | "wamp")),
    }
}

/// A set of URI patterns with values `T`, matched by exact URI, by prefix and by wildcard. Values are small
/// handles (indexes of a slab owned by the broker or dealer).
///
/// Exact entries live in a hash map. Prefix and wildcard patterns live in two trees keyed by URI component; a
/// match walks each tree once along the URI's components without allocating.
#[derive(Debug)]
pub struct UriTrie<T> {
    exact: HashMap<Box<str>, T>,
    prefix: Tree<T>,
    wildcard: Tree<T>,
}

#[derive(Debug)]
struct Tree<T> {
    nodes: Vec<Node<T>>,
    free: Vec<usize>,
    len: usize,
}

#[derive(Debug)]
struct Node<T> {
    /// Children by literal component. In the prefix tree a trailing `.` of a pattern is a child `""`.
    children: HashMap<Box<str>, usize>,
    /// Child for an empty component (wildcard tree only).
    any: Option<usize>,
    value: Option<T>,
    /// Number of patterns at or below this node; a non-root node without any is freed.
    weight: usize,
    /// Number of direct children holding a value (prefix tree: lets a walk skip string-prefix probes).
    valued_children: usize,
}

impl<T> Node<T> {
    fn new() -> Node<T> {
        Node {
            children: HashMap::new(),
            any: None,
            value: None,
            weight: 0,
            valued_children: 0,
        }
    }
}

const ROOT: usize = 0;

impl<T: Copy> Tree<T> {
    fn new() -> Tree<T> {
        Tree {
            nodes: vec![Node::new()],
            free: Vec::new(),
            len: 0,
        }
    }

    /// `wildcards`: empty components go to the `any` child instead of a literal child `""`.
    fn child(&self, node: usize, component: &str, wildcards: bool) -> Option<usize> {
        let node = &self.nodes[node];
        if wildcards && component.is_empty() {
            node.any
        } else {
            node.children.get(component).copied()
        }
    }

    fn find(&self, uri: &str, wildcards: bool) -> Option<usize> {
        uri.split('.').try_fold(ROOT, |node, component| {
            self.child(node, component, wildcards)
        })
    }

    fn insert(&mut self, uri: &str, wildcards: bool, value: T) -> Option<T> {
        let mut path = vec![ROOT];
        let mut node = ROOT;
        for component in uri.split('.') {
            node = match self.child(node, component, wildcards) {
                Some(child) => child,
                None => self.add_child(node, component, wildcards),
            };
            path.push(node);
        }
        let previous = self.nodes[node].value.replace(value);
        if previous.is_none() {
            self.len += 1;
            path.iter().for_each(|&index| self.nodes[index].weight += 1);
            if let Some(&parent) = path.iter().rev().nth(1) {
                self.nodes[parent].valued_children += 1;
            }
        }
        previous
    }

    fn remove(&mut self, uri: &str, wildcards: bool) -> Option<T> {
        let mut path = vec![(ROOT, "")];
        let mut node = ROOT;
        for component in uri.split('.') {
            node = self.child(node, component, wildcards)?;
            path.push((node, component));
        }
        let removed = self.nodes[node].value.take()?;
        self.len -= 1;
        if let Some(&(parent, _)) = path.iter().rev().nth(1) {
            self.nodes[parent].valued_children -= 1;
        }
        for position in (0..path.len()).rev() {
            let (index, component) = path[position];
            self.nodes[index].weight -= 1;
            if index != ROOT && self.nodes[index].weight == 0 {
                let parent = path[position - 1].0;
                if wildcards && component.is_empty() {
                    self.nodes[parent].any = None;
                } else {
                    self.nodes[parent].children.remove(component);
                }
                self.nodes[index] = Node::new();
                self.free.push(index);
            }
        }
        Some(removed)
    }

    fn add_child(&mut self, node: usize, component: &str, wildcards: bool) -> usize {
        let child = match self.free.pop() {
            Some(index) => index,
            None => {
                self.nodes.push(Node::new());
                self.nodes.len() - 1
            }
        };
        if wildcards && component.is_empty() {
            self.nodes[node].any = Some(child);
        } else {
            self.nodes[node].children.insert(component.into(), child);
        }
        child
    }

    /// Prefix patterns matching `uri`: a pattern matches when it is a string prefix of `uri` (the spec's rule:
    /// `a.b` matches `a.b`, `a.b.c` and `a.bc`).
    fn for_each_prefix(&self, uri: &str, f: &mut impl FnMut(MatchPolicy, T)) {
        let mut node = ROOT;
        let mut components = uri.split('.').peekable();
        while let Some(component) = components.next() {
            let here = &self.nodes[node];
            if here.valued_children > 0 {
                // Patterns whose last component is a proper string prefix of this component (including a
                // trailing "." pattern, stored as the child "", when more components follow... handled below).
                for (end, _) in component.char_indices().skip(1) {
                    if let Some(&child) = here.children.get(&component[..end]) {
                        if let Some(value) = self.nodes[child].value {
                            f(MatchPolicy::Prefix, value);
                        }
                    }
                }
                if !component.is_empty() {
                    if let Some(&child) = here.children.get("") {
                        // Pattern "x." at this node: matches any URI continuing after "x.".
                        if let Some(value) = self.nodes[child].value {
                            f(MatchPolicy::Prefix, value);
                        }
                    }
                }
            }
            let Some(&child) = here.children.get(component) else {
                return;
            };
            node = child;
            if let Some(value) = self.nodes[node].value {
                f(MatchPolicy::Prefix, value);
            }
            if components.peek().is_none() {
                return;
            }
        }
    }

    /// Wildcard patterns matching `uri`: same number of components, every non-empty pattern component equal.
    fn for_each_wildcard(&self, node: usize, rest: &str, f: &mut impl FnMut(MatchPolicy, T)) {
        let (component, tail) = match rest.split_once('.') {
            Some((component, tail)) => (component, Some(tail)),
            None => (rest, None),
        };
        let here = &self.nodes[node];
        for child in [here.children.get(component).copied(), here.any]
            .into_iter()
            .flatten()
        {
            match tail {
                Some(tail) => self.for_each_wildcard(child, tail, f),
                None => {
                    if let Some(value) = self.nodes[child].value {
                        f(MatchPolicy::Wildcard, value);
                    }
                }
            }
        }
    }
}

impl<T: Copy> UriTrie<T> {
    pub fn new() -> UriTrie<T> {
        UriTrie {
            exact: HashMap::new(),
            prefix: Tree::new(),
            wildcard: Tree::new(),
        }
    }

    /// The value stored for exactly this (uri, policy), if any.
    pub fn get(&self, uri: &str, policy: MatchPolicy) -> Option<T> {
        match policy {
            MatchPolicy::Exact => self.exact.get(uri).copied(),
            MatchPolicy::Prefix => self
                .prefix
                .find(uri, false)
                .and_then(|n| self.prefix.nodes[n].value),
            MatchPolicy::Wildcard => self
                .wildcard
                .find(uri, true)
                .and_then(|n| self.wildcard.nodes[n].value),
        }
    }

    /// Stores `value` for (uri, policy). Returns the previous value, if any.
    pub fn insert(&mut self, uri: &str, policy: MatchPolicy, value: T) -> Option<T> {
        match policy {
            MatchPolicy::Exact => self.exact.insert(uri.into(), value),
            MatchPolicy::Prefix => self.prefix.insert(uri, false, value),
            MatchPolicy::Wildcard => self.wildcard.insert(uri, true, value),
        }
    }

    /// Removes (uri, policy). Returns the removed value, if any.
    pub fn remove(&mut self, uri: &str, policy: MatchPolicy) -> Option<T> {
        match policy {
            MatchPolicy::Exact => self.exact.remove(uri),
            MatchPolicy::Prefix => self.prefix.remove(uri, false),
            MatchPolicy::Wildcard => self.wildcard.remove(uri, true),
        }
    }

    /// Calls `f(policy, value)` for every pattern matching `uri`: the exact entry, every prefix pattern that is a
    /// string prefix of `uri`, every wildcard pattern with as many components whose non-empty components equal
    /// `uri`'s. Allocates nothing.
    pub fn for_each_match(&self, uri: &str, mut f: impl FnMut(MatchPolicy, T)) {
        if let Some(value) = self.exact.get(uri) {
            f(MatchPolicy::Exact, *value);
        }
        if self.prefix.len > 0 {
            self.prefix.for_each_prefix(uri, &mut f);
        }
        if self.wildcard.len > 0 {
            self.wildcard.for_each_wildcard(ROOT, uri, &mut f);
        }
    }

    /// The one pattern that wins for `uri` by the spec's precedence for registrations: the exact entry, else the
    /// longest matching prefix pattern, else the most specific matching wildcard pattern (see
    /// `wildcard_more_specific`). `pattern(value)` gives the pattern a value was stored under. Allocates nothing.
    pub fn best_match<'p>(&self, uri: &str, pattern: impl Fn(T) -> &'p str) -> Option<T> {
        if let Some(value) = self.exact.get(uri) {
            return Some(*value);
        }
        let mut prefix: Option<T> = None;
        let mut wildcard: Option<T> = None;
        self.for_each_match(uri, |policy, value| {
            let slot = match policy {
                MatchPolicy::Exact => return,
                MatchPolicy::Prefix => &mut prefix,
                MatchPolicy::Wildcard => &mut wildcard,
            };
            let better = match *slot {
                None => true,
                Some(current) => {
                    let (new, old) = (pattern(value), pattern(current));
                    match policy {
                        MatchPolicy::Prefix => new.len() > old.len(),
                        _ => wildcard_more_specific(new, old),
                    }
                }
            };
            if better {
                *slot = Some(value);
            }
        });
        prefix.or(wildcard)
    }

    /// Number of stored entries (exact and patterns).
    pub fn len(&self) -> usize {
        self.exact.len() + self.prefix.len + self.wildcard.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether wildcard pattern `a` is more specific than `b` (both match the same URI, so they have as many
/// components): at the first component where one is a wildcard and the other is not, the literal one wins.
fn wildcard_more_specific(a: &str, b: &str) -> bool {
    for (x, y) in a.split('.').zip(b.split('.')) {
        match (x.is_empty(), y.is_empty()) {
            (false, true) => return true,
            (true, false) => return false,
            _ => {}
        }
    }
    false
}

impl<T: Copy> Default for UriTrie<T> {
    fn default() -> Self {
        UriTrie::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_that_may_match_meta_topics() {
        use MatchPolicy::*;
        for (pattern, policy) in [
            ("wamp.session.on_join", Exact),
            ("wamp.", Prefix),
            ("wamp.subscription", Prefix),
            ("wa", Prefix),
            ("wamp", Prefix),
            ("..on_join", Wildcard),
            ("wamp..on_join", Wildcard),
        ] {
            assert!(may_match_reserved(pattern, policy), "{pattern}");
        }
        for (pattern, policy) in [
            ("com.wamp", Exact),
            ("wampx", Prefix),
            ("com.", Prefix),
            ("com..on_join", Wildcard),
            ("wampx..on_join", Wildcard),
        ] {
            assert!(!may_match_reserved(pattern, policy), "{pattern}");
        }
    }

    #[test]
    fn loose_and_strict_rules() {
        use MatchPolicy::*;
        use UriCheck::*;
        assert!(is_valid("com.myapp.topic1", Loose, Exact));
        assert!(is_valid("com.MyApp.Topic-1", Loose, Exact));
        assert!(!is_valid("com.MyApp.Topic-1", Strict, Exact));
        assert!(is_valid("com.my_app.topic1", Strict, Exact));
        for bad in [
            "",
            "com..topic",
            ".com",
            "com.",
            "com.my app",
            "com.#",
            "com.\ttab",
        ] {
            assert!(!is_valid(bad, Loose, Exact), "{bad:?}");
        }
        assert!(is_valid("com..topic", Loose, Wildcard));
        assert!(is_valid("com.myapp.", Loose, Prefix));
        assert!(is_valid("com.my", Loose, Prefix));
        assert!(!is_valid("com..my", Loose, Prefix));
        assert!(is_reserved("wamp.session.count"));
        assert!(!is_reserved("wampx.foo"));
    }

    /// The rule of [`is_valid`] stated component by component.
    fn is_valid_by_components(uri: &str, check: UriCheck, policy: MatchPolicy) -> bool {
        let components: Vec<&str> = uri.split('.').collect();
        !uri.is_empty()
            && components.iter().enumerate().all(|(index, component)| {
                if component.is_empty() {
                    match policy {
                        MatchPolicy::Exact => false,
                        MatchPolicy::Wildcard => true,
                        MatchPolicy::Prefix => {
                            index + 1 == components.len() && components.len() > 1
                        }
                    }
                } else {
                    component.bytes().all(|b| byte_ok(b, check))
                }
            })
    }

    proptest::proptest! {
        #[test]
        fn one_pass_validation_agrees_with_the_component_rule(
            uri in "[a-zA-Z0-9_.# \\t-]{0,12}",
            strict: bool,
            policy in 0..3usize,
        ) {
            let check = if strict { UriCheck::Strict } else { UriCheck::Loose };
            let policy = [MatchPolicy::Exact, MatchPolicy::Prefix, MatchPolicy::Wildcard][policy];
            proptest::prop_assert_eq!(
                is_valid(&uri, check, policy),
                is_valid_by_components(&uri, check, policy),
                "{:?} {:?} {:?}", uri, check, policy
            );
        }
    }

    fn matches(trie: &UriTrie<u32>, uri: &str) -> Vec<(MatchPolicy, u32)> {
        let mut out = Vec::new();
        trie.for_each_match(uri, |policy, value| out.push((policy, value)));
        out.sort_by_key(|(_, value)| *value);
        out
    }

    #[test]
    fn exact_prefix_and_wildcard_matching() {
        use MatchPolicy::*;
        let mut trie = UriTrie::new();
        trie.insert("a.b.c", Exact, 1);
        trie.insert("a.b", Prefix, 2);
        trie.insert("a..c", Wildcard, 3);
        trie.insert("a.b.", Prefix, 4);
        trie.insert("x", Prefix, 5);
        trie.insert("..", Wildcard, 6);
        assert_eq!(
            matches(&trie, "a.b.c"),
            vec![
                (Exact, 1),
                (Prefix, 2),
                (Wildcard, 3),
                (Prefix, 4),
                (Wildcard, 6)
            ]
        );
        assert_eq!(matches(&trie, "a.bc"), vec![(Prefix, 2)]);
        assert_eq!(matches(&trie, "a.b"), vec![(Prefix, 2)]);
        assert_eq!(matches(&trie, "a.x.c"), vec![(Wildcard, 3), (Wildcard, 6)]);
        assert_eq!(matches(&trie, "xyz.q"), vec![(Prefix, 5)]);
        assert_eq!(matches(&trie, "b"), vec![]);
        assert_eq!(trie.len(), 6);
        assert_eq!(trie.remove("a.b", Prefix), Some(2));
        assert_eq!(trie.remove("a.b", Prefix), None);
        assert_eq!(
            matches(&trie, "a.b.c"),
            vec![(Exact, 1), (Wildcard, 3), (Prefix, 4), (Wildcard, 6)]
        );
        for (uri, policy) in [
            ("a.b.c", Exact),
            ("a..c", Wildcard),
            ("a.b.", Prefix),
            ("x", Prefix),
            ("..", Wildcard),
        ] {
            assert!(trie.remove(uri, policy).is_some());
        }
        assert!(trie.is_empty());
        // Every node but the roots was freed.
        assert_eq!(trie.prefix.free.len(), trie.prefix.nodes.len() - 1);
        assert_eq!(trie.wildcard.free.len(), trie.wildcard.nodes.len() - 1);
    }

    #[test]
    fn wildcard_specificity_is_left_to_right() {
        assert!(wildcard_more_specific("a.b..d", "a..c.d"));
        assert!(!wildcard_more_specific("a..c.d", "a.b..d"));
        assert!(wildcard_more_specific("a.b.c.", "a.b..d"));
        assert!(!wildcard_more_specific("a..c", "a..c"));
    }

    #[test]
    fn matches_agrees_with_the_trie() {
        let patterns = [
            ("a.b", MatchPolicy::Exact),
            ("a", MatchPolicy::Prefix),
            ("a.b", MatchPolicy::Prefix),
            ("a.", MatchPolicy::Prefix),
            ("a..c", MatchPolicy::Wildcard),
            (".b.", MatchPolicy::Wildcard),
            ("a.b.c", MatchPolicy::Wildcard),
        ];
        let mut trie = UriTrie::new();
        for (index, (pattern, policy)) in patterns.iter().enumerate() {
            trie.insert(pattern, *policy, index);
        }
        for uri in [
            "a.b", "a.b.c", "a.bc", "ab", "a.x.c", "x.b.y", "a.b.c.d", "a",
        ] {
            let mut from_trie = Vec::new();
            trie.for_each_match(uri, |_, index| from_trie.push(index));
            from_trie.sort();
            let direct: Vec<usize> = (0..patterns.len())
                .filter(|&i| super::matches(patterns[i].0, patterns[i].1, uri))
                .collect();
            assert_eq!(from_trie, direct, "{uri}");
        }
    }
}
