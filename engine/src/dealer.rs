//! The dealer of one realm: registrations (shared by several callees when their invocation policy allows it), and
//! the lookup of the registration and callee a CALL goes to.

use std::collections::HashMap;

use kreisel_codec::Id;
use slab::Slab;

use crate::router::Peer;
use crate::session::SessionHandle;
use crate::uri::{MatchPolicy, UriTrie};

/// REGISTER `invoke`: who among the callees of a shared registration gets a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Invoke {
    /// One callee only: further REGISTERs of the URI fail.
    Single,
    RoundRobin,
    Random,
    /// The earliest registered callee (hot stand-by).
    First,
    /// The latest registered callee.
    Last,
}

impl Invoke {
    pub fn from_option(name: &str) -> Option<Invoke> {
        Some(match name {
            "single" => Invoke::Single,
            "roundrobin" => Invoke::RoundRobin,
            "random" => Invoke::Random,
            "first" => Invoke::First,
            "last" => Invoke::Last,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Invoke::Single => "single",
            Invoke::RoundRobin => "roundrobin",
            Invoke::Random => "random",
            Invoke::First => "first",
            Invoke::Last => "last",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Registration {
    pub id: Id,
    pub procedure: Box<str>,
    pub policy: MatchPolicy,
    pub invoke: Invoke,
    /// Callees in order of registration.
    pub callees: Vec<Callee>,
    /// When the registration was created (engine milliseconds; the meta API reports it).
    pub created_ms: u64,
    /// Round-robin cursor into `callees`.
    next: usize,
}

/// One callee of a registration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Callee {
    pub peer: Peer,
    /// REGISTER `disclose_caller`: INVOCATIONs carry the caller's identity.
    pub disclose_caller: bool,
}

/// What [`Dealer::register`] did.
pub(crate) enum Registered {
    /// A new registration (its ID came from `new_id`).
    Created(usize),
    /// The callee joined an existing shared registration.
    Joined(usize),
    /// The URI is taken by a `single` registration, or this callee already holds it.
    Exists,
    /// The URI is registered with another invocation policy.
    DifferentPolicy(Invoke),
}

#[derive(Debug, Default)]
pub(crate) struct Dealer {
    pub registrations: Slab<Registration>,
    pub trie: UriTrie<usize>,
    pub by_id: HashMap<Id, usize>,
}

impl Dealer {
    /// Registers `callee` for (procedure, policy) with invocation policy `invoke`.
    pub fn register(
        &mut self,
        procedure: &str,
        policy: MatchPolicy,
        invoke: Invoke,
        callee: Callee,
        now_ms: u64,
        new_id: impl FnOnce() -> Id,
    ) -> Registered {
        if let Some(index) = self.trie.get(procedure, policy) {
            let registration = &mut self.registrations[index];
            if registration.invoke == Invoke::Single
                || registration
                    .callees
                    .iter()
                    .any(|c| c.peer.session == callee.peer.session)
            {
                return Registered::Exists;
            }
            if registration.invoke != invoke {
                return Registered::DifferentPolicy(registration.invoke);
            }
            registration.callees.push(callee);
            return Registered::Joined(index);
        }
        let id = new_id();
        let index = self.registrations.insert(Registration {
            id,
            procedure: procedure.into(),
            policy,
            invoke,
            callees: vec![callee],
            created_ms: now_ms,
            next: 0,
        });
        self.trie.insert(procedure, policy, index);
        self.by_id.insert(id, index);
        Registered::Created(index)
    }

    /// Removes `session` as a callee of registration `index`. Returns the registration's ID if it has no callee
    /// left and was deleted.
    pub fn unregister(&mut self, index: usize, session: SessionHandle) -> Option<Id> {
        let registration = self.registrations.get_mut(index)?;
        let position = registration
            .callees
            .iter()
            .position(|c| c.peer.session == session)?;
        registration.callees.remove(position);
        if position < registration.next {
            registration.next -= 1;
        }
        if !registration.callees.is_empty() {
            return None;
        }
        let registration = self.registrations.remove(index);
        self.trie
            .remove(&registration.procedure, registration.policy);
        self.by_id.remove(&registration.id);
        Some(registration.id)
    }

    /// The callee of registration `index` that gets the next call, by its invocation policy. `random(n)` draws a
    /// number below `n` (the engine's seeded generator).
    pub fn pick(&mut self, index: usize, random: impl FnOnce(usize) -> usize) -> Callee {
        let registration = &mut self.registrations[index];
        let callees = &registration.callees;
        debug_assert!(
            !callees.is_empty(),
            "a registration without callees is deleted"
        );
        let chosen = match registration.invoke {
            Invoke::Single | Invoke::First => 0,
            Invoke::Last => callees.len() - 1,
            Invoke::Random => random(callees.len()),
            Invoke::RoundRobin => {
                let chosen = registration.next % callees.len();
                registration.next = chosen + 1;
                chosen
            }
        };
        callees[chosen]
    }

    /// The registration a CALL to `procedure` goes to, by the spec's precedence: an exact registration; else the
    /// longest matching prefix registration; else the most specific wildcard registration (comparing components
    /// left to right, a literal component beats a wildcard at the first position where they differ).
    pub fn lookup(&self, procedure: &str) -> Option<usize> {
        self.trie
            .best_match(procedure, |index| &self.registrations[index].procedure)
    }
}
