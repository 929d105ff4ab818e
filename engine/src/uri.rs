//! URI validation (the spec's loose and strict rules, plus size bounds) and the URI trie used for subscription,
//! registration and authorization matching.
//!
//! Exact URIs are answered by a hash map (the common case). Prefix patterns live in a radix tree over the URI's
//! bytes (a prefix pattern matches every URI it is a string prefix of, so one walk along the URI finds them all);
//! wildcard patterns live in a tree keyed by URI component. Every walk is iterative, visits each byte of the URI
//! a bounded number of times and allocates nothing, whatever a peer sends: the cost of matching is linear in the
//! URI's length (and in the number of wildcard patterns that share its components).

use std::collections::HashMap;

use smallvec::SmallVec;

/// Which URI rule a realm enforces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UriCheck {
    /// Components are non-empty and contain no whitespace, `.` or `#` (the spec's default).
    #[default]
    Loose,
    /// Components consist of lowercase letters, digits and `_` only.
    Strict,
}

/// A realm's rule for the URIs peers send: the character rule and the size bounds. Checked before any map or
/// trie sees the URI, so the work matching does per message is bounded by `bytes_max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UriRules {
    pub check: UriCheck,
    /// Longest URI, in bytes (`limits.uri_max`).
    pub bytes_max: usize,
    /// Most components (dot-separated parts) of a URI (`limits.uri_components_max`).
    pub components_max: usize,
}

impl UriRules {
    /// The character rule alone, without size bounds (for URIs from the configuration file).
    pub const fn unbounded(check: UriCheck) -> UriRules {
        UriRules {
            check,
            bytes_max: usize::MAX,
            components_max: usize::MAX,
        }
    }

    /// Checks `uri` for `policy` in one pass: the size bounds first, then the rule of [`is_valid`].
    pub fn validate(&self, uri: &str, policy: MatchPolicy) -> Result<(), UriError> {
        if uri.len() > self.bytes_max {
            return Err(UriError::TooLong {
                len: uri.len(),
                max: self.bytes_max,
            });
        }
        match scan(uri, self.check, policy) {
            Some(components) if components > self.components_max => {
                Err(UriError::TooManyComponents {
                    components,
                    max: self.components_max,
                })
            }
            Some(_) => Ok(()),
            None => Err(UriError::Invalid),
        }
    }
}

/// Why a URI was refused (every case is answered with `wamp.error.invalid_uri`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UriError {
    /// It breaks the realm's character rule or has an empty component where its match policy allows none.
    Invalid,
    TooLong {
        len: usize,
        max: usize,
    },
    TooManyComponents {
        components: usize,
        max: usize,
    },
}

impl UriError {
    /// A one-line explanation naming the URI (shortened) and, for a size bound, the limit to raise.
    pub fn describe(&self, what: &str, uri: &str, policy: MatchPolicy) -> String {
        match *self {
            UriError::Invalid => format!(
                "'{}' is not a valid {what} URI for match '{}'",
                shown(uri),
                policy.name()
            ),
            UriError::TooLong { len, max } => format!(
                "the {what} URI '{}' has {len} octets, more than this router accepts (limits.uri_max = {max})",
                shown(uri)
            ),
            UriError::TooManyComponents { components, max } => format!(
                "the {what} URI '{}' has {components} components, more than this router accepts \
                 (limits.uri_components_max = {max})",
                shown(uri)
            ),
        }
    }
}

/// What one subscription or registration of `uri` (with `policy`) may make the router hold, in bytes, counted
/// against `limits.uri_bytes_per_session_max`: the URI twice (the subscription and its index), the fixed
/// structures (subscription, map slots, the session's list), and for a wildcard pattern one tree node per
/// component. An estimate from above, so the budget holds however the allocator rounds.
pub fn footprint(uri: &str, policy: MatchPolicy) -> usize {
    const FIXED: usize = 320;
    const PER_WILDCARD_COMPONENT: usize = 384;
    let nodes = match policy {
        MatchPolicy::Wildcard => uri.bytes().filter(|&b| b == b'.').count() + 1,
        _ => 0,
    };
    2 * uri.len() + FIXED + nodes * PER_WILDCARD_COMPONENT
}

/// At most the first 64 characters of a URI, for error texts and logs (a peer's URI may be long).
pub fn shown(uri: &str) -> std::borrow::Cow<'_, str> {
    const SHOWN_MAX: usize = 64;
    match uri.char_indices().nth(SHOWN_MAX) {
        None => uri.into(),
        Some((end, _)) => format!("{}…", &uri[..end]).into(),
    }
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
/// have empty components (the wildcards); prefix patterns may end with `.` (a trailing empty component). The
/// empty string is a valid pattern: as a prefix it matches every URI, as a wildcard (one empty component) every
/// URI of one component (what MQTT's `#` and `+` filters map to; crossbar accepts both too). No size bound: see
/// [`UriRules::validate`] for URIs from peers.
pub fn is_valid(uri: &str, check: UriCheck, policy: MatchPolicy) -> bool {
    scan(uri, check, policy).is_some()
}

/// The rule of [`is_valid`] in one pass over the bytes (this runs for every PUBLISH and CALL); returns the number
/// of components of a valid URI.
fn scan(uri: &str, check: UriCheck, policy: MatchPolicy) -> Option<usize> {
    if uri.is_empty() {
        return (policy != MatchPolicy::Exact).then_some(1);
    }
    let mut component_len = 0usize;
    let mut components = 1usize;
    for &b in uri.as_bytes() {
        if b == b'.' {
            // An empty component before a `.`: only a wildcard may have one there.
            if component_len == 0 && policy != MatchPolicy::Wildcard {
                return None;
            }
            components += 1;
            component_len = 0;
        } else if byte_ok(b, check) {
            component_len += 1;
        } else {
            return None;
        }
    }
    let valid = component_len > 0
        || match policy {
            MatchPolicy::Exact => false,
            MatchPolicy::Wildcard => true,
            MatchPolicy::Prefix => components > 1,
        };
    valid.then_some(components)
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
/// Exact entries live in a hash map, prefix patterns in a radix tree over bytes, wildcard patterns in a tree keyed
/// by URI component; a match walks each once along the URI without allocating (see the module documentation).
#[derive(Debug)]
pub struct UriTrie<T> {
    exact: HashMap<Box<str>, T>,
    prefix: Radix<T>,
    wildcard: Tree<T>,
}

/// Index of a tree's root node.
const ROOT: usize = 0;

/// Prefix patterns: a radix tree (a trie whose edges carry byte strings) over the patterns' bytes. A pattern
/// matches a URI when it is a string prefix of it (the spec's rule: `a.b` matches `a.b`, `a.b.c` and `a.bc`),
/// so the patterns matching a URI are exactly the valued nodes on the URI's path from the root: one walk,
/// comparing each byte of the URI at most once. A pattern costs at most two nodes, so memory is linear in the
/// patterns' total length.
#[derive(Debug)]
struct Radix<T> {
    nodes: Vec<RadixNode<T>>,
    free: Vec<usize>,
    len: usize,
}

#[derive(Debug)]
struct RadixNode<T> {
    /// The bytes on the edge into this node (empty for the root).
    label: Box<[u8]>,
    /// Children by the first byte of their label (distinct), sorted.
    children: Vec<(u8, usize)>,
    value: Option<T>,
}

impl<T> RadixNode<T> {
    fn new(label: &[u8], value: Option<T>) -> RadixNode<T> {
        RadixNode {
            label: label.into(),
            children: Vec::new(),
            value,
        }
    }
}

impl<T: Copy> Radix<T> {
    fn new() -> Radix<T> {
        Radix {
            nodes: vec![RadixNode::new(b"", None)],
            free: Vec::new(),
            len: 0,
        }
    }

    fn child(&self, node: usize, first: u8) -> Option<usize> {
        let children = &self.nodes[node].children;
        children
            .binary_search_by_key(&first, |&(b, _)| b)
            .ok()
            .map(|position| children[position].1)
    }

    /// Calls `f(node)` for every node on `key`'s path whose edges spell a prefix of `key` (the root first), and
    /// returns the node whose path spells `key` exactly, if there is one.
    fn walk(&self, key: &[u8], mut f: impl FnMut(usize)) -> Option<usize> {
        let (mut node, mut pos) = (ROOT, 0);
        loop {
            f(node);
            if pos == key.len() {
                return Some(node);
            }
            let child = self.child(node, key[pos])?;
            let label = &self.nodes[child].label;
            if !key[pos..].starts_with(label) {
                return None;
            }
            pos += label.len();
            node = child;
        }
    }

    fn get(&self, key: &[u8]) -> Option<T> {
        self.walk(key, |_| {})
            .and_then(|node| self.nodes[node].value)
    }

    /// Every value whose pattern is a string prefix of `key`, shortest pattern first.
    fn for_each_prefix(&self, key: &[u8], f: &mut impl FnMut(MatchPolicy, T)) {
        self.walk(key, |node| {
            if let Some(value) = self.nodes[node].value {
                f(MatchPolicy::Prefix, value);
            }
        });
    }

    fn alloc(&mut self, node: RadixNode<T>) -> usize {
        match self.free.pop() {
            Some(index) => {
                self.nodes[index] = node;
                index
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        }
    }

    fn set_child(&mut self, node: usize, first: u8, child: usize) {
        let children = &mut self.nodes[node].children;
        match children.binary_search_by_key(&first, |&(b, _)| b) {
            Ok(position) => children[position].1 = child,
            Err(position) => children.insert(position, (first, child)),
        }
    }

    fn insert(&mut self, key: &[u8], value: T) -> Option<T> {
        let (mut node, mut pos) = (ROOT, 0);
        while pos < key.len() {
            let Some(child) = self.child(node, key[pos]) else {
                let leaf = self.alloc(RadixNode::new(&key[pos..], Some(value)));
                self.set_child(node, key[pos], leaf);
                self.len += 1;
                return None;
            };
            let label = &self.nodes[child].label;
            let common = label
                .iter()
                .zip(&key[pos..])
                .take_while(|(a, b)| a == b)
                .count();
            if common < label.len() {
                // Split the edge: a new node for the common part, the old child below it.
                let (head, tail) = label.split_at(common);
                let (head, tail): (Box<[u8]>, Box<[u8]>) = (head.into(), tail.into());
                let mut middle = RadixNode::new(&head, None);
                middle.children.push((tail[0], child));
                self.nodes[child].label = tail;
                let middle = self.alloc(middle);
                self.set_child(node, key[pos], middle);
                node = middle;
            } else {
                node = child;
            }
            pos += common;
        }
        let previous = self.nodes[node].value.replace(value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    fn remove(&mut self, key: &[u8]) -> Option<T> {
        let (mut parent, mut node, mut pos) = (ROOT, ROOT, 0);
        while pos < key.len() {
            let child = self.child(node, key[pos])?;
            let label = &self.nodes[child].label;
            if !key[pos..].starts_with(label) {
                return None;
            }
            pos += label.len();
            (parent, node) = (node, child);
        }
        let removed = self.nodes[node].value.take()?;
        self.len -= 1;
        if node != ROOT {
            if self.nodes[node].children.is_empty() {
                let first = self.nodes[node].label[0];
                let children = &mut self.nodes[parent].children;
                if let Ok(position) = children.binary_search_by_key(&first, |&(b, _)| b) {
                    children.remove(position);
                }
                self.release(node);
                // The parent may now be a plain pass-through node.
                self.merge_with_only_child(parent);
            } else {
                self.merge_with_only_child(node);
            }
        }
        Some(removed)
    }

    /// A non-root node without a value and with one child is merged with that child (the tree stays compact).
    fn merge_with_only_child(&mut self, node: usize) {
        let here = &self.nodes[node];
        if node == ROOT || here.value.is_some() || here.children.len() != 1 {
            return;
        }
        let child = here.children[0].1;
        let mut label = Vec::with_capacity(here.label.len() + self.nodes[child].label.len());
        label.extend_from_slice(&here.label);
        label.extend_from_slice(&self.nodes[child].label);
        let grandchild = std::mem::replace(&mut self.nodes[child], RadixNode::new(b"", None));
        self.nodes[node] = RadixNode {
            label: label.into(),
            children: grandchild.children,
            value: grandchild.value,
        };
        self.release(child);
    }

    fn release(&mut self, node: usize) {
        self.nodes[node] = RadixNode::new(b"", None);
        self.free.push(node);
    }
}

/// Wildcard patterns: a tree keyed by URI component, with a separate child for an empty component (the wildcard).
#[derive(Debug)]
struct Tree<T> {
    nodes: Vec<Node<T>>,
    free: Vec<usize>,
    len: usize,
}

#[derive(Debug)]
struct Node<T> {
    /// Children by literal component.
    children: HashMap<Box<str>, usize>,
    /// Child for an empty component.
    any: Option<usize>,
    value: Option<T>,
    /// Number of patterns at or below this node; a non-root node without any is freed.
    weight: usize,
}

impl<T> Node<T> {
    fn new() -> Node<T> {
        Node {
            children: HashMap::new(),
            any: None,
            value: None,
            weight: 0,
        }
    }
}

impl<T: Copy> Tree<T> {
    fn new() -> Tree<T> {
        Tree {
            nodes: vec![Node::new()],
            free: Vec::new(),
            len: 0,
        }
    }

    fn child(&self, node: usize, component: &str) -> Option<usize> {
        let node = &self.nodes[node];
        if component.is_empty() {
            node.any
        } else {
            node.children.get(component).copied()
        }
    }

    fn find(&self, uri: &str) -> Option<usize> {
        uri.split('.')
            .try_fold(ROOT, |node, component| self.child(node, component))
    }

    fn insert(&mut self, uri: &str, value: T) -> Option<T> {
        let mut path = vec![ROOT];
        let mut node = ROOT;
        for component in uri.split('.') {
            node = match self.child(node, component) {
                Some(child) => child,
                None => self.add_child(node, component),
            };
            path.push(node);
        }
        let previous = self.nodes[node].value.replace(value);
        if previous.is_none() {
            self.len += 1;
            path.iter().for_each(|&index| self.nodes[index].weight += 1);
        }
        previous
    }

    fn remove(&mut self, uri: &str) -> Option<T> {
        let mut path = vec![(ROOT, "")];
        let mut node = ROOT;
        for component in uri.split('.') {
            node = self.child(node, component)?;
            path.push((node, component));
        }
        let removed = self.nodes[node].value.take()?;
        self.len -= 1;
        for position in (0..path.len()).rev() {
            let (index, component) = path[position];
            self.nodes[index].weight -= 1;
            if index != ROOT && self.nodes[index].weight == 0 {
                let parent = path[position - 1].0;
                if component.is_empty() {
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

    fn add_child(&mut self, node: usize, component: &str) -> usize {
        let child = match self.free.pop() {
            Some(index) => index,
            None => {
                self.nodes.push(Node::new());
                self.nodes.len() - 1
            }
        };
        if component.is_empty() {
            self.nodes[node].any = Some(child);
        } else {
            self.nodes[node].children.insert(component.into(), child);
        }
        child
    }

    /// Wildcard patterns matching `uri`: same number of components, every non-empty pattern component equal.
    ///
    /// Depth first with an explicit stack of (node, offset of the next component): a node is reached by at most
    /// one path, so the walk visits each tree node at most once, and the stack holds at most one entry per
    /// component plus one (a popped entry pushes at most two). Nothing recurses, whatever the URI's depth.
    fn for_each_wildcard(&self, uri: &str, f: &mut impl FnMut(MatchPolicy, T)) {
        let mut stack: SmallVec<[(usize, usize); 16]> = SmallVec::new();
        stack.push((ROOT, 0));
        while let Some((node, start)) = stack.pop() {
            let rest = &uri[start..];
            let (component, next) = match rest.find('.') {
                Some(dot) => (&rest[..dot], Some(start + dot + 1)),
                None => (rest, None),
            };
            let here = &self.nodes[node];
            let literal = here.children.get(component).copied();
            match next {
                // Pushed in reverse, so the literal child is walked first.
                Some(next) => {
                    stack.extend(here.any.map(|child| (child, next)));
                    stack.extend(literal.map(|child| (child, next)));
                }
                None => {
                    for child in [literal, here.any].into_iter().flatten() {
                        if let Some(value) = self.nodes[child].value {
                            f(MatchPolicy::Wildcard, value);
                        }
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
            prefix: Radix::new(),
            wildcard: Tree::new(),
        }
    }

    /// The value stored for exactly this (uri, policy), if any.
    pub fn get(&self, uri: &str, policy: MatchPolicy) -> Option<T> {
        match policy {
            MatchPolicy::Exact => self.exact.get(uri).copied(),
            MatchPolicy::Prefix => self.prefix.get(uri.as_bytes()),
            MatchPolicy::Wildcard => self
                .wildcard
                .find(uri)
                .and_then(|n| self.wildcard.nodes[n].value),
        }
    }

    /// Stores `value` for (uri, policy). Returns the previous value, if any.
    pub fn insert(&mut self, uri: &str, policy: MatchPolicy, value: T) -> Option<T> {
        match policy {
            MatchPolicy::Exact => self.exact.insert(uri.into(), value),
            MatchPolicy::Prefix => self.prefix.insert(uri.as_bytes(), value),
            MatchPolicy::Wildcard => self.wildcard.insert(uri, value),
        }
    }

    /// Removes (uri, policy). Returns the removed value, if any.
    pub fn remove(&mut self, uri: &str, policy: MatchPolicy) -> Option<T> {
        match policy {
            MatchPolicy::Exact => self.exact.remove(uri),
            MatchPolicy::Prefix => self.prefix.remove(uri.as_bytes()),
            MatchPolicy::Wildcard => self.wildcard.remove(uri),
        }
    }

    /// Calls `f(policy, value)` for every pattern matching `uri`: the exact entry, every prefix pattern that is a
    /// string prefix of `uri` (shortest first), every wildcard pattern with as many components whose non-empty
    /// components equal `uri`'s. Allocates nothing for URIs of up to 15 components.
    pub fn for_each_match(&self, uri: &str, mut f: impl FnMut(MatchPolicy, T)) {
        if let Some(value) = self.exact.get(uri) {
            f(MatchPolicy::Exact, *value);
        }
        if self.prefix.len > 0 {
            self.prefix.for_each_prefix(uri.as_bytes(), &mut f);
        }
        if self.wildcard.len > 0 {
            self.wildcard.for_each_wildcard(uri, &mut f);
        }
    }

    /// The one pattern that wins for `uri` by the spec's precedence for registrations: the exact entry, else the
    /// longest matching prefix pattern, else the most specific matching wildcard pattern (see
    /// [`wildcard_more_specific`]). `pattern(value)` gives the pattern a value was stored under. Allocates
    /// nothing.
    pub fn best_match<'p>(&self, uri: &str, pattern: impl Fn(T) -> &'p str) -> Option<T> {
        self.best_match_where(uri, pattern, |_| true)
    }

    /// [`UriTrie::best_match`] among the values `admit` accepts: a value it refuses is passed over as if its
    /// pattern did not match.
    pub fn best_match_where<'p>(
        &self,
        uri: &str,
        pattern: impl Fn(T) -> &'p str,
        mut admit: impl FnMut(T) -> bool,
    ) -> Option<T> {
        if let Some(&value) = self.exact.get(uri) {
            if admit(value) {
                return Some(value);
            }
        }
        let mut prefix: Option<T> = None;
        if self.prefix.len > 0 {
            // Shortest first: the last admitted one is the longest.
            self.prefix
                .for_each_prefix(uri.as_bytes(), &mut |_, value| {
                    if admit(value) {
                        prefix = Some(value);
                    }
                });
        }
        if prefix.is_some() {
            return prefix;
        }
        let mut wildcard: Option<T> = None;
        if self.wildcard.len > 0 {
            self.wildcard.for_each_wildcard(uri, &mut |_, value| {
                let better = match wildcard {
                    None => true,
                    Some(current) => wildcard_more_specific(pattern(value), pattern(current)),
                };
                if better && admit(value) {
                    wildcard = Some(value);
                }
            });
        }
        wildcard
    }

    /// Every exact entry.
    pub fn exact_entries(&self) -> impl Iterator<Item = (&str, T)> + '_ {
        self.exact.iter().map(|(uri, value)| (&**uri, *value))
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
pub fn wildcard_more_specific(a: &str, b: &str) -> bool {
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
        // The empty pattern: every URI (prefix), every one-component URI (wildcard); never an exact URI.
        assert!(is_valid("", Loose, Prefix) && is_valid("", Strict, Prefix));
        assert!(is_valid("", Loose, Wildcard) && !is_valid("", Loose, Exact));
        assert!(
            super::matches("", Prefix, "a.b")
                && super::matches("", Wildcard, "a")
                && !super::matches("", Wildcard, "a.b")
        );
        assert!(is_reserved("wamp.session.count"));
        assert!(!is_reserved("wampx.foo"));
    }

    /// The rule of [`is_valid`] stated component by component.
    fn is_valid_by_components(uri: &str, check: UriCheck, policy: MatchPolicy) -> bool {
        let components: Vec<&str> = uri.split('.').collect();
        if uri.is_empty() {
            return policy != MatchPolicy::Exact;
        }
        components.iter().enumerate().all(|(index, component)| {
            if component.is_empty() {
                match policy {
                    MatchPolicy::Exact => false,
                    MatchPolicy::Wildcard => true,
                    MatchPolicy::Prefix => index + 1 == components.len() && components.len() > 1,
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

    /// The empty prefix pattern (MQTT `#`) matches everything, the empty wildcard pattern (MQTT `+`) every
    /// URI of one component; both can be removed again.
    #[test]
    fn empty_patterns_match_everything_or_one_component() {
        use MatchPolicy::*;
        let mut trie = UriTrie::new();
        trie.insert("", Prefix, 1);
        trie.insert("", Wildcard, 2);
        trie.insert("a", Exact, 3);
        assert_eq!(
            matches(&trie, "a"),
            vec![(Prefix, 1), (Wildcard, 2), (Exact, 3)]
        );
        assert_eq!(matches(&trie, "a.b"), vec![(Prefix, 1)]);
        assert_eq!(trie.get("", Prefix), Some(1));
        assert_eq!(trie.remove("", Prefix), Some(1));
        assert_eq!(matches(&trie, "b"), vec![(Wildcard, 2)]);
        assert_eq!(trie.remove("", Wildcard), Some(2));
        assert_eq!(matches(&trie, "b"), vec![]);
        assert_eq!(trie.len(), 1);
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

    #[test]
    fn size_bounds_are_checked_first() {
        let rules = UriRules {
            check: UriCheck::Loose,
            bytes_max: 16,
            components_max: 3,
        };
        assert_eq!(rules.validate("a.b.c", MatchPolicy::Exact), Ok(()));
        assert_eq!(
            rules.validate("a.b.c.d", MatchPolicy::Exact),
            Err(UriError::TooManyComponents {
                components: 4,
                max: 3
            })
        );
        assert_eq!(
            rules.validate("abcdefghijklmnopq", MatchPolicy::Exact),
            Err(UriError::TooLong { len: 17, max: 16 })
        );
        // Longer than the bound and invalid: the bound is reported, and nothing walks the rest.
        assert!(matches!(
            rules.validate(&"a ".repeat(100), MatchPolicy::Exact),
            Err(UriError::TooLong { .. })
        ));
        assert_eq!(
            rules.validate("a..b", MatchPolicy::Exact),
            Err(UriError::Invalid)
        );
        let text = UriError::TooLong { len: 200, max: 16 }.describe(
            "topic",
            &"x".repeat(200),
            MatchPolicy::Exact,
        );
        assert!(
            text.contains("limits.uri_max") && text.len() < 200,
            "{text}"
        );
    }

    /// Deep and long URIs reach the trie's walks without recursion or per-prefix work: 100,000 components (the
    /// size bounds stop such URIs from peers first; the walks must not depend on that).
    #[test]
    fn deep_and_long_uris_are_walked_iteratively() {
        let deep = vec!["a"; 100_000].join(".");
        let any = ".".repeat(99_999);
        let mut trie = UriTrie::new();
        trie.insert(&deep, MatchPolicy::Wildcard, 1);
        trie.insert(&any, MatchPolicy::Wildcard, 2);
        trie.insert(&deep[..1001], MatchPolicy::Prefix, 3);
        assert_eq!(matches(&trie, &deep).len(), 3);
        let long = format!("com.{}", "a".repeat(1 << 20));
        trie.insert("com.", MatchPolicy::Prefix, 4);
        trie.insert("com.aa", MatchPolicy::Prefix, 5);
        assert_eq!(
            matches(&trie, &long),
            vec![(MatchPolicy::Prefix, 4), (MatchPolicy::Prefix, 5)]
        );
        assert_eq!(
            trie.best_match(&long, |v| ["", "", "", "", "com.", "com.aa"][v as usize]),
            Some(5)
        );
    }

    #[test]
    fn best_match_where_passes_over_refused_values() {
        use MatchPolicy::*;
        let patterns = ["a.b.c", "a.", "a.b", "a..c", "..c"];
        let mut trie = UriTrie::new();
        trie.insert(patterns[0], Exact, 0);
        trie.insert(patterns[1], Prefix, 1);
        trie.insert(patterns[2], Prefix, 2);
        trie.insert(patterns[3], Wildcard, 3);
        trie.insert(patterns[4], Wildcard, 4);
        let pattern = |v: usize| patterns[v];
        let best =
            |refused: &[usize]| trie.best_match_where("a.b.c", pattern, |v| !refused.contains(&v));
        assert_eq!(best(&[]), Some(0));
        assert_eq!(best(&[0]), Some(2));
        assert_eq!(best(&[0, 2]), Some(1));
        assert_eq!(best(&[0, 1, 2]), Some(3));
        assert_eq!(best(&[0, 1, 2, 3]), Some(4));
        assert_eq!(best(&[0, 1, 2, 3, 4]), None);
    }

    /// A pattern of up to 4 components over a small alphabet, so that patterns share prefixes and collide.
    fn pattern_strategy() -> impl proptest::strategy::Strategy<Value = (String, MatchPolicy)> {
        use proptest::prelude::*;
        (proptest::collection::vec("(|a|ab|b|abc)", 1..5), 0..3usize).prop_filter_map(
            "valid pattern",
            |(components, policy)| {
                let policy = [
                    MatchPolicy::Exact,
                    MatchPolicy::Prefix,
                    MatchPolicy::Wildcard,
                ][policy];
                let uri = components.join(".");
                is_valid(&uri, UriCheck::Loose, policy).then_some((uri, policy))
            },
        )
    }

    proptest::proptest! {
        /// The trie agrees with [`super::matches`] after any sequence of inserts and removals, and frees every
        /// node once it is empty.
        #[test]
        fn trie_agrees_with_direct_matching(
            inserts in proptest::collection::vec(pattern_strategy(), 0..24),
            removals in proptest::collection::vec(0..24usize, 0..24),
            uris in proptest::collection::vec("(a|ab|b|abc|abcd)(\\.(a|ab|b|abc|abcd)){0,4}", 1..8),
        ) {
            let mut trie = UriTrie::new();
            let mut live: Vec<(String, MatchPolicy)> = Vec::new();
            for (uri, policy) in &inserts {
                if trie.get(uri, *policy).is_none() {
                    trie.insert(uri, *policy, live.len());
                    live.push((uri.clone(), *policy));
                }
            }
            let mut removed = std::collections::HashSet::new();
            for index in removals.into_iter().filter(|&i| i < live.len()) {
                let (uri, policy) = &live[index];
                let expected = (!removed.contains(&index)).then_some(index);
                proptest::prop_assert_eq!(trie.remove(uri, *policy), expected);
                removed.insert(index);
            }
            for (index, (uri, policy)) in live.iter().enumerate() {
                let expected = (!removed.contains(&index)).then_some(index);
                proptest::prop_assert_eq!(trie.get(uri, *policy), expected);
            }
            for uri in &uris {
                let mut from_trie = Vec::new();
                trie.for_each_match(uri, |_, index| from_trie.push(index));
                from_trie.sort();
                let direct: Vec<usize> = (0..live.len())
                    .filter(|i| !removed.contains(i) && super::matches(&live[*i].0, live[*i].1, uri))
                    .collect();
                proptest::prop_assert_eq!(from_trie, direct, "{}", uri);
            }
            for (index, (uri, policy)) in live.iter().enumerate() {
                if !removed.contains(&index) {
                    trie.remove(uri, *policy);
                }
            }
            proptest::prop_assert!(trie.is_empty());
            proptest::prop_assert_eq!(trie.prefix.free.len(), trie.prefix.nodes.len() - 1);
            proptest::prop_assert_eq!(trie.wildcard.free.len(), trie.wildcard.nodes.len() - 1);
        }
    }
}
