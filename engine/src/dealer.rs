//! The dealer of one realm: registrations, and the lookup of the registration a CALL goes to.

use std::collections::HashMap;

use kreisel_codec::Id;
use slab::Slab;

use crate::router::Peer;
use crate::uri::{MatchPolicy, UriTrie};

#[derive(Debug)]
pub(crate) struct Registration {
    pub id: Id,
    pub procedure: Box<str>,
    pub policy: MatchPolicy,
    pub callee: Peer,
}

#[derive(Debug, Default)]
pub(crate) struct Dealer {
    pub registrations: Slab<Registration>,
    pub trie: UriTrie<usize>,
    pub by_id: HashMap<Id, usize>,
}

impl Dealer {
    /// Registers (procedure, policy) for `callee`; `None` if that registration already exists.
    pub fn register(
        &mut self,
        procedure: &str,
        policy: MatchPolicy,
        callee: Peer,
        id: Id,
    ) -> Option<usize> {
        if self.trie.get(procedure, policy).is_some() {
            return None;
        }
        let index = self.registrations.insert(Registration {
            id,
            procedure: procedure.into(),
            policy,
            callee,
        });
        self.trie.insert(procedure, policy, index);
        self.by_id.insert(id, index);
        Some(index)
    }

    pub fn unregister(&mut self, index: usize) -> Option<Registration> {
        let registration = self.registrations.try_remove(index)?;
        self.trie
            .remove(&registration.procedure, registration.policy);
        self.by_id.remove(&registration.id);
        Some(registration)
    }

    /// The registration a CALL to `procedure` goes to, by the spec's precedence: an exact registration; else the
    /// longest matching prefix registration; else the most specific wildcard registration (comparing components
    /// left to right, a literal component beats a wildcard at the first position where they differ).
    pub fn lookup(&self, procedure: &str) -> Option<usize> {
        if let Some(index) = self.trie.get(procedure, MatchPolicy::Exact) {
            return Some(index);
        }
        let mut prefix: Option<usize> = None;
        let mut wildcard: Option<usize> = None;
        self.trie.for_each_match(procedure, |policy, index| {
            let slot = match policy {
                MatchPolicy::Exact => return,
                MatchPolicy::Prefix => &mut prefix,
                MatchPolicy::Wildcard => &mut wildcard,
            };
            let better = match *slot {
                None => true,
                Some(current) => {
                    let (new, old) = (
                        &self.registrations[index].procedure,
                        &self.registrations[current].procedure,
                    );
                    match policy {
                        MatchPolicy::Prefix => new.len() > old.len(),
                        _ => wildcard_more_specific(new, old),
                    }
                }
            };
            if better {
                *slot = Some(index);
            }
        });
        prefix.or(wildcard)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_specificity_is_left_to_right() {
        assert!(wildcard_more_specific("a.b..d", "a..c.d"));
        assert!(!wildcard_more_specific("a..c.d", "a.b..d"));
        assert!(wildcard_more_specific("a.b.c.", "a.b..d"));
        assert!(!wildcard_more_specific("a..c", "a..c"));
    }
}
