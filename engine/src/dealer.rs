//! The dealer of one realm: registrations (shared by several callees when their invocation policy allows it), and
//! the lookup of the registration and callee a CALL goes to.

use std::collections::HashMap;

use kreisel_codec::Id;
use slab::Slab;

use crate::authz::RoleIndex;
use crate::link::ShardId;
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

    /// The policy's number on the link between shards.
    pub fn code(self) -> u8 {
        match self {
            Invoke::Single => 0,
            Invoke::RoundRobin => 1,
            Invoke::Random => 2,
            Invoke::First => 3,
            Invoke::Last => 4,
        }
    }

    pub fn from_code(code: u8) -> Option<Invoke> {
        [
            Invoke::Single,
            Invoke::RoundRobin,
            Invoke::Random,
            Invoke::First,
            Invoke::Last,
        ]
        .into_iter()
        .find(|invoke| invoke.code() == code)
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
    /// Callees with `restricted` set.
    restricted: usize,
}

/// One callee of a registration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Callee {
    pub at: CalleeAt,
    /// Its session ID (a callee is the same on every shard's copy of the registration).
    pub session: Id,
    /// REGISTER `disclose_caller`: INVOCATIONs carry the caller's identity.
    pub disclose_caller: bool,
    /// The callee's role may register only some of the procedures the registration matches: each CALL's
    /// procedure is checked for it, and a call it may not take goes elsewhere, as if it had not registered.
    pub restricted: bool,
    /// Its role in this shard's copy of the realm's roles (for the check a restricted callee needs).
    pub role: RoleIndex,
}

/// Where a callee is: a session of this shard, or of another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CalleeAt {
    Local(Peer),
    Remote {
        shard: ShardId,
        handle: SessionHandle,
        /// Its role's name (`Router::role_name`), so that this shard's copy can find its role again after a
        /// reload.
        authrole: u32,
    },
}

impl Callee {
    /// The callee's peer, if it is a session of this shard.
    pub fn local(&self) -> Option<Peer> {
        match self.at {
            CalleeAt::Local(peer) => Some(peer),
            CalleeAt::Remote { .. } => None,
        }
    }
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
    /// Restricted callees over all registrations: while there are none, routing checks no permission.
    restricted: usize,
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
                    .any(|c| c.session == callee.session)
            {
                return Registered::Exists;
            }
            if registration.invoke != invoke {
                return Registered::DifferentPolicy(registration.invoke);
            }
            registration.callees.push(callee);
            registration.restricted += usize::from(callee.restricted);
            self.restricted += usize::from(callee.restricted);
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
            restricted: usize::from(callee.restricted),
        });
        self.restricted += usize::from(callee.restricted);
        self.trie.insert(procedure, policy, index);
        self.by_id.insert(id, index);
        Registered::Created(index)
    }

    /// Another shard's owner decided registration `id` (creating it, or adding `callee` to it): this shard's
    /// copy follows. Returns its index and whether it was created here.
    pub fn install(
        &mut self,
        (id, procedure, policy): (Id, &str, MatchPolicy),
        invoke: Invoke,
        created_ms: u64,
        callee: Callee,
    ) -> (usize, bool) {
        let (index, created) = match self.by_id.get(&id) {
            Some(&index) => (index, false),
            None => {
                // A copy of an older registration of the same URI whose removal has not arrived yet gives way.
                if let Some(stale) = self.trie.get(procedure, policy) {
                    let stale = self.registrations.remove(stale);
                    self.trie.remove(procedure, policy);
                    self.by_id.remove(&stale.id);
                    self.restricted -= stale.restricted;
                }
                let index = self.registrations.insert(Registration {
                    id,
                    procedure: procedure.into(),
                    policy,
                    invoke,
                    callees: Vec::new(),
                    created_ms,
                    next: 0,
                    restricted: 0,
                });
                self.trie.insert(procedure, policy, index);
                self.by_id.insert(id, index);
                (index, true)
            }
        };
        let registration = &mut self.registrations[index];
        if !registration
            .callees
            .iter()
            .any(|c| c.session == callee.session)
        {
            registration.callees.push(callee);
            registration.restricted += usize::from(callee.restricted);
            self.restricted += usize::from(callee.restricted);
        }
        (index, created)
    }

    /// Removes `session` as a callee of registration `index`. Returns the registration's ID if it has no callee
    /// left and was deleted.
    pub fn unregister(&mut self, index: usize, session: Id) -> Option<Id> {
        let registration = self.registrations.get_mut(index)?;
        let position = registration
            .callees
            .iter()
            .position(|c| c.session == session)?;
        let callee = registration.callees.remove(position);
        registration.restricted -= usize::from(callee.restricted);
        self.restricted -= usize::from(callee.restricted);
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

    /// Sets whether callee `session` of registration `index` is restricted, and its role (a reload reclassifies
    /// callees).
    pub fn set_restricted(&mut self, index: usize, session: Id, role: RoleIndex, restricted: bool) {
        let Some(registration) = self.registrations.get_mut(index) else {
            return;
        };
        if let Some(callee) = (registration.callees.iter_mut()).find(|c| c.session == session) {
            callee.role = role;
            let was = std::mem::replace(&mut callee.restricted, restricted);
            registration.restricted =
                registration.restricted + usize::from(restricted) - usize::from(was);
            self.restricted = self.restricted + usize::from(restricted) - usize::from(was);
        }
    }

    /// Forgets callee `session`'s request to be told its callers on registration `index` (its role lost the
    /// permission on a reload).
    pub fn stop_disclosing(&mut self, index: usize, session: Id) {
        if let Some(registration) = self.registrations.get_mut(index) {
            (registration.callees.iter_mut())
                .filter(|c| c.session == session)
                .for_each(|c| c.disclose_caller = false);
        }
    }

    /// The registration and callee a CALL to `procedure` goes to: the registration by the spec's precedence
    /// (an exact registration; else the longest matching prefix; else the most specific wildcard, comparing
    /// components left to right), the callee by its invocation policy. `random(n)` draws a number below `n`
    /// (the engine's seeded generator).
    ///
    /// A restricted callee takes the call only if `admit(callee)` says its role may register `procedure`; a
    /// registration without such a callee is passed over as if it did not match. Without restricted callees
    /// (the rule) this is one trie lookup and no permission check.
    pub fn route(
        &mut self,
        procedure: &str,
        mut admit: impl FnMut(&Callee) -> bool,
        random: impl FnOnce(usize) -> usize,
    ) -> Option<(usize, Callee)> {
        let registrations = &self.registrations;
        let index = if self.restricted == 0 {
            self.trie
                .best_match(procedure, |index| &registrations[index].procedure)?
        } else {
            self.trie.best_match_where(
                procedure,
                |index| &registrations[index].procedure,
                |index| {
                    let registration = &registrations[index];
                    registration.restricted == 0
                        || (registration.callees.iter()).any(|c| !c.restricted || admit(c))
                },
            )?
        };
        let callee = self.pick(index, admit, random)?;
        Some((index, callee))
    }

    /// The callee of registration `index` that gets the next call, by its invocation policy, among those
    /// `admit` lets take it (see [`Dealer::route`]).
    fn pick(
        &mut self,
        index: usize,
        mut admit: impl FnMut(&Callee) -> bool,
        random: impl FnOnce(usize) -> usize,
    ) -> Option<Callee> {
        let registration = &mut self.registrations[index];
        let callees = &registration.callees;
        debug_assert!(
            !callees.is_empty(),
            "a registration without callees is deleted"
        );
        if registration.restricted == 0 {
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
            return callees.get(chosen).copied();
        }
        let admitted: smallvec::SmallVec<[usize; 8]> = (callees.iter().enumerate())
            .filter(|(_, c)| !c.restricted || admit(c))
            .map(|(position, _)| position)
            .collect();
        let chosen = match registration.invoke {
            Invoke::Single | Invoke::First => *admitted.first()?,
            Invoke::Last => *admitted.last()?,
            Invoke::Random => *admitted.get(random(admitted.len().max(1)))?,
            Invoke::RoundRobin => {
                let cursor = registration.next % callees.len();
                let chosen = (admitted.iter().copied())
                    .find(|&position| position >= cursor)
                    .or_else(|| admitted.first().copied())?;
                registration.next = chosen + 1;
                chosen
            }
        };
        callees.get(chosen).copied()
    }

    /// The registration a CALL to `procedure` would go to, without checking callees' permissions (the meta
    /// API's `wamp.registration.match`).
    pub fn lookup(&self, procedure: &str) -> Option<usize> {
        self.trie
            .best_match(procedure, |index| &self.registrations[index].procedure)
    }
}
