//! Registrations across nodes: the backplane owns every registration of its node's shards (as the owner shard
//! does in a router on its own) and decides them against the cluster's record in the key-value store.
//!
//! A REGISTER or UNREGISTER becomes an operation on the record's key, run one at a time per key: the new record is
//! computed from the mirror and written with compare-and-set on the mirror's revision. A conflict (another node
//! wrote first) reads the key and runs the operation again. A written record is broadcast to every node; each
//! applies the difference between what its shards hold and the record's live callees, appending new callees in the
//! record's order, so every node sees the callees of a registration in one order. REGISTERED waits until every
//! node has installed the callee. Callees of nodes that are gone are left out of what shards hold at once, and
//! removed from the record by the node that reaps them.

use std::collections::{HashMap, VecDeque};

use kreisel_codec::Id;

use super::record::{registration_key, Record, RecordCallee};
use super::*;
use crate::dealer::Invoke;
use crate::link::RemoteCallee;
use crate::router::errors::{
    PROCEDURE_ALREADY_EXISTS, PROCEDURE_EXISTS_WITH_DIFFERENT_INVOCATION_POLICY,
};

/// Attempts of one operation against concurrent writers before it gives up.
const ATTEMPTS_MAX: u32 = 16;
/// How long a removal the store did not take waits before it is tried again.
const RETRY_MS: u64 = 1_000;

#[derive(Debug, Default)]
pub(super) struct Registry {
    keys: HashMap<String, KeyState>,
    /// Registration ID → key.
    by_id: HashMap<Id, String>,
    /// Store operation → key.
    pending: HashMap<u64, String>,
    /// Callees of other nodes as the local shards know them (their handles index this slab).
    remote: Slab<RemoteCalleeRef>,
    remote_index: HashMap<(Slot, u64, Id), usize>,
    next_generation: u32,
}

#[derive(Debug, Default)]
struct KeyState {
    /// The record as last read or written (revision 0: never written).
    rev: u64,
    record: Option<Record>,
    /// What the local shards hold: the registration's ID and its callees, in order.
    installed_id: Option<Id>,
    installed_realm: Option<u16>,
    installed: Vec<Installed>,
    /// Local callees leaving whose removal is not written yet (already left out of what shards hold).
    leaving: Vec<Id>,
    ops: VecDeque<Op>,
    inflight: Option<Inflight>,
    /// The mirror may be behind the store: read before the next write.
    stale: bool,
    attempts: u32,
    retry_at: Option<u64>,
}

/// A callee the local shards hold: its session, and its node and epoch if it is another node's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Installed {
    session: Id,
    remote: Option<(Slot, u64)>,
}

#[derive(Debug)]
enum Op {
    Add {
        shard: ShardId,
        token: u64,
        realm: u16,
        policy: MatchPolicy,
        procedure: Box<str>,
        invoke: Invoke,
        callee: RecordCallee,
    },
    Remove {
        session: Id,
    },
    Purge {
        slot: Slot,
        epoch: u64,
    },
}

#[derive(Debug)]
enum Inflight {
    Read,
    Write(Option<Record>),
}

#[derive(Debug)]
struct RemoteCalleeRef {
    slot: Slot,
    shard: ShardId,
    handle: SessionHandle,
    generation: u32,
    refs: u32,
}

/// Where a callee of another node is.
#[derive(Clone, Copy, Debug)]
pub(super) struct Target {
    pub slot: Slot,
    pub shard: ShardId,
    pub handle: SessionHandle,
}

impl Registry {
    /// The callee a local shard's handle names.
    pub fn remote_callee(&self, handle: SessionHandle) -> Option<Target> {
        self.remote
            .get(handle.index as usize)
            .filter(|r| r.generation == handle.generation)
            .map(|r| Target {
                slot: r.slot,
                shard: r.shard,
                handle: r.handle,
            })
    }

    pub fn next_retry(&self) -> Option<u64> {
        self.keys.values().filter_map(|k| k.retry_at).min()
    }

    /// Every key and its record (for a state dump).
    fn records(&self) -> impl Iterator<Item = (&String, u64, &Record)> {
        (self.keys.iter()).filter_map(|(key, k)| k.record.as_ref().map(|r| (key, k.rev, r)))
    }

    fn acquire(&mut self, c: &RecordCallee) -> SessionHandle {
        let index = match self.remote_index.get(&(c.slot, c.epoch, c.session)) {
            Some(&index) => index,
            None => {
                self.next_generation = self.next_generation.wrapping_add(1);
                let index = self.remote.insert(RemoteCalleeRef {
                    slot: c.slot,
                    shard: c.shard,
                    handle: c.handle,
                    generation: self.next_generation,
                    refs: 0,
                });
                self.remote_index
                    .insert((c.slot, c.epoch, c.session), index);
                index
            }
        };
        let entry = &mut self.remote[index];
        entry.refs += 1;
        SessionHandle {
            index: index as u32,
            generation: entry.generation,
        }
    }

    fn release(&mut self, slot: Slot, epoch: u64, session: Id) {
        let Some(&index) = self.remote_index.get(&(slot, epoch, session)) else {
            return;
        };
        let entry = &mut self.remote[index];
        entry.refs = entry.refs.saturating_sub(1);
        if entry.refs == 0 {
            self.remote.remove(index);
            self.remote_index.remove(&(slot, epoch, session));
        }
    }
}

impl Node {
    /// A local callee asks to register (policy, procedure).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_register(
        &mut self,
        from: ShardId,
        (realm, policy, procedure): (u16, MatchPolicy, &str),
        invoke: u8,
        callee: RemoteCallee<'_>,
        token: u64,
        sink: &mut impl NodeSink,
    ) {
        let (Some(name), Some(invoke)) = (
            self.realm_names.get(usize::from(realm)),
            Invoke::from_code(invoke),
        ) else {
            return;
        };
        let key = registration_key(name, policy, procedure);
        let op = Op::Add {
            shard: from,
            token,
            realm,
            policy,
            procedure: procedure.into(),
            invoke,
            callee: RecordCallee {
                slot: self.slot,
                epoch: self.epoch,
                shard: callee.shard,
                handle: callee.handle,
                session: callee.session,
                authrole: callee.authrole.into(),
                disclose_caller: callee.disclose_caller,
            },
        };
        let state = self.registry.keys.entry(key.clone()).or_default();
        state.ops.push_back(op);
        // A client waits: whatever waited for a retry is tried again now.
        state.retry_at = None;
        self.drive(&key, sink);
    }

    /// A local callee left registration `id` (UNREGISTER, or its session left): the other local shards stop
    /// routing to it now, the record follows.
    pub(super) fn on_unregister(
        &mut self,
        from: ShardId,
        realm: u16,
        id: Id,
        session: Id,
        sink: &mut impl NodeSink,
    ) {
        let Some(key) = self.registry.by_id.get(&id).cloned() else {
            return;
        };
        let Some(state) = self.registry.keys.get_mut(&key) else {
            return;
        };
        if let Some(position) = state.installed.iter().position(|i| i.session == session) {
            state.installed.remove(position);
        }
        state.leaving.push(session);
        state.ops.push_back(Op::Remove { session });
        let mut others = self.local;
        others.remove(from);
        let msg = PeerMessage::RegistrationRemoved {
            realm,
            registration: id,
            session,
        };
        if !others.is_empty() {
            sink.shards(others, &msg);
        }
        self.drive(&key, sink);
    }

    /// Whether callee (slot, epoch) is alive as far as this node knows: this node, a node it hears, or (never
    /// heard, never dropped) a member of the members record.
    pub(super) fn alive(&self, slot: Slot, epoch: u64) -> bool {
        if slot == self.slot {
            return epoch == self.epoch;
        }
        if let Some(peer) = self.peers.get(&slot) {
            return peer.epoch == epoch;
        }
        !self.gone.contains_key(&(slot, epoch)) && self.members.contains(&(slot, epoch))
    }

    /// Runs the next operation of `key`, if none is in flight.
    fn drive(&mut self, key: &str, sink: &mut impl NodeSink) {
        let Some(state) = self.registry.keys.get_mut(key) else {
            return;
        };
        if state.inflight.is_some() || state.ops.is_empty() || state.retry_at.is_some() {
            return;
        }
        if state.stale {
            state.inflight = Some(Inflight::Read);
            let id = self.kv_id();
            self.registry.pending.insert(id, key.to_owned());
            self.stats.kv_ops += 1;
            return sink.kv(id, KvOp::Get { key });
        }
        let Some(op) = state.ops.pop_front() else {
            return;
        };
        let current = state.record.clone();
        let rev = state.rev;
        let decision = self.decide(current, &op);
        let Some(state) = self.registry.keys.get_mut(key) else {
            return;
        };
        match decision {
            Decision::Done => {
                state.attempts = 0;
                self.drive(key, sink)
            }
            Decision::Refuse(error, text) => {
                state.attempts = 0;
                if let Op::Add { shard, token, .. } = op {
                    let msg = PeerMessage::RegisterRefused {
                        token,
                        error,
                        text: &text,
                    };
                    sink.shards(ShardSet::one(shard), &msg);
                }
                self.drive(key, sink)
            }
            Decision::Write(new) => {
                state.ops.push_front(op);
                let mut value = Vec::new();
                if let Some(new) = &new {
                    new.encode(&mut value);
                }
                let id = self.kv_id();
                self.registry.pending.insert(id, key.to_owned());
                self.stats.kv_ops += 1;
                if let Some(state) = self.registry.keys.get_mut(key) {
                    state.inflight = Some(Inflight::Write(new.clone()));
                }
                let op = match new {
                    Some(_) => KvOp::Put {
                        key,
                        value: &value,
                        expect: rev,
                    },
                    None => KvOp::Delete { key, expect: rev },
                };
                sink.kv(id, op);
            }
        }
    }

    /// What the operation at the head of a key's queue does to `current`.
    fn decide(&self, current: Option<Record>, op: &Op) -> Decision {
        let live = |record: &Record| -> Vec<RecordCallee> {
            (record.callees.iter())
                .filter(|c| self.alive(c.slot, c.epoch))
                .cloned()
                .collect()
        };
        match op {
            Op::Add {
                realm,
                policy,
                procedure,
                invoke,
                callee,
                ..
            } => {
                let Some(name) = self.realm_names.get(usize::from(*realm)) else {
                    return Decision::Done;
                };
                let existing = current.filter(|r| {
                    *r.realm == **name && r.policy == *policy && r.procedure == *procedure
                });
                let callees = existing.as_ref().map(live).unwrap_or_default();
                if let Some(record) = existing.as_ref().filter(|_| !callees.is_empty()) {
                    if record.invoke == Invoke::Single
                        || callees.iter().any(|c| c.session == callee.session)
                    {
                        return Decision::Refuse(
                            PROCEDURE_ALREADY_EXISTS,
                            format!(
                                "procedure '{}' (match '{}') is already registered",
                                crate::uri::shown(procedure),
                                policy.name()
                            ),
                        );
                    }
                    if record.invoke != *invoke {
                        return Decision::Refuse(
                            PROCEDURE_EXISTS_WITH_DIFFERENT_INVOCATION_POLICY,
                            format!(
                                "procedure '{}' is registered with invocation policy '{}', not '{}'",
                                crate::uri::shown(procedure),
                                record.invoke.name(),
                                invoke.name()
                            ),
                        );
                    }
                    let mut new = record.clone();
                    new.callees = callees;
                    new.callees.push(callee.clone());
                    return Decision::Write(Some(new));
                }
                Decision::Write(Some(Record {
                    realm: name.as_str().into(),
                    policy: *policy,
                    procedure: procedure.clone(),
                    invoke: *invoke,
                    id: registration_id(self.seed, name, *policy, procedure),
                    created_unix_ms: self.epoch_unix_ms + self.now_ms,
                    callees: vec![callee.clone()],
                }))
            }
            Op::Remove { session } => {
                let Some(record) = current else {
                    return Decision::Done;
                };
                let ours = |c: &RecordCallee| c.slot == self.slot && c.session == *session;
                if !record.callees.iter().any(ours) {
                    return Decision::Done;
                }
                let mut new = record.clone();
                new.callees = live(&record).into_iter().filter(|c| !ours(c)).collect();
                Decision::Write((!new.callees.is_empty()).then_some(new))
            }
            Op::Purge { slot, epoch } => {
                let Some(record) = current else {
                    return Decision::Done;
                };
                let theirs = |c: &RecordCallee| (c.slot, c.epoch) == (*slot, *epoch);
                if !record.callees.iter().any(theirs) {
                    return Decision::Done;
                }
                let mut new = record.clone();
                new.callees.retain(|c| !theirs(c));
                Decision::Write((!new.callees.is_empty()).then_some(new))
            }
        }
    }

    /// The store's answer to one of the registry's operations; false if `id` is not one of them.
    pub(super) fn on_registry_kv(
        &mut self,
        id: u64,
        result: KvResult<'_>,
        sink: &mut impl NodeSink,
    ) -> bool {
        let Some(key) = self.registry.pending.remove(&id) else {
            return false;
        };
        let Some(state) = self.registry.keys.get_mut(&key) else {
            return true;
        };
        let inflight = state.inflight.take();
        match (inflight, result) {
            (Some(Inflight::Read), KvResult::Value { rev, value }) => {
                state.stale = false;
                let record = value.and_then(Record::decode);
                if rev >= state.rev {
                    state.rev = rev;
                    state.record = record;
                }
                self.apply(&key, None, None, sink);
            }
            (Some(Inflight::Write(new)), KvResult::Written { rev }) => {
                state.rev = rev;
                state.record = new;
                state.attempts = 0;
                let op = state.ops.pop_front();
                if let Some(Op::Remove { session }) = &op {
                    state.leaving.retain(|s| s != session);
                }
                let added = match op {
                    Some(Op::Add {
                        shard,
                        token,
                        callee,
                        ..
                    }) => Some((shard, token, callee.session)),
                    _ => None,
                };
                // Every node installs the change; a REGISTER is answered once all have.
                let nodes = self.live_peers();
                let node_token = match added {
                    Some((shard, token, _)) => {
                        self.wait_nodes(nodes, Then::AckShard { shard, token }, sink)
                    }
                    None => 0,
                };
                let ack = if self.waits.contains_key(&node_token) {
                    node_token
                } else {
                    0
                };
                self.apply(&key, added, None, sink);
                self.broadcast_record(&key, ack, sink);
            }
            (_, KvResult::Conflict) => {
                self.stats.kv_conflicts += 1;
                state.stale = true;
                state.attempts += 1;
                if state.attempts > ATTEMPTS_MAX {
                    state.attempts = 0;
                    self.give_up(&key, "too many concurrent changes", sink);
                }
            }
            (inflight, _) => {
                self.stats.kv_failures += 1;
                state.stale = true;
                let adding = matches!(state.ops.front(), Some(Op::Add { .. }))
                    && matches!(inflight, Some(Inflight::Write(_)) | Some(Inflight::Read));
                if adding {
                    self.give_up(&key, "the cluster's registry did not answer", sink);
                } else {
                    state.retry_at = Some(self.now_ms + RETRY_MS);
                }
            }
        }
        self.drive(&key, sink);
        true
    }

    /// Refuses the REGISTER at the head of `key`'s queue (the store did not take it); if it was written after
    /// all, the record is cleaned up by a removal.
    fn give_up(&mut self, key: &str, why: &str, sink: &mut impl NodeSink) {
        let Some(state) = self.registry.keys.get_mut(key) else {
            return;
        };
        match state.ops.pop_front() {
            Some(Op::Add {
                shard,
                token,
                callee,
                ..
            }) => {
                state.ops.push_back(Op::Remove {
                    session: callee.session,
                });
                self.stats.registrations_unavailable += 1;
                warn!(key, why, "cluster: REGISTER refused");
                let text = format!("the cluster cannot register now: {why}");
                let msg = PeerMessage::RegisterRefused {
                    token,
                    error: CLUSTER_UNAVAILABLE,
                    text: &text,
                };
                sink.shards(ShardSet::one(shard), &msg);
            }
            Some(other) => {
                state.ops.push_front(other);
                state.retry_at = Some(self.now_ms + RETRY_MS);
            }
            None => {}
        }
    }

    /// Retries operations whose wait is over.
    pub(super) fn retry_registry(&mut self, sink: &mut impl NodeSink) {
        let now = self.now_ms;
        let due: Vec<String> = (self.registry.keys.iter_mut())
            .filter(|(_, k)| k.retry_at.is_some_and(|at| at <= now))
            .map(|(key, k)| {
                k.retry_at = None;
                key.clone()
            })
            .collect();
        for key in due {
            self.drive(&key, sink);
        }
    }

    fn broadcast_record(&mut self, key: &str, ack: u64, sink: &mut impl NodeSink) {
        let mut body = Vec::new();
        self.encode_record(key, ack, &mut body);
        self.broadcast(wire::kind::RECORD, &body, sink);
    }

    fn encode_record(&self, key: &str, ack: u64, body: &mut Vec<u8>) {
        let Some(state) = self.registry.keys.get(key) else {
            return;
        };
        wire::put_str(body, key);
        wire::put_u64(body, state.rev);
        wire::put_u64(body, ack);
        let mut value = Vec::new();
        if let Some(record) = &state.record {
            record.encode(&mut value);
        }
        wire::put_bytes(body, &value);
    }

    /// Sends every record this node knows to node `to` (a state dump).
    pub(super) fn send_records(&mut self, to: Slot, sink: &mut impl NodeSink) {
        let keys: Vec<String> = self
            .registry
            .records()
            .map(|(key, ..)| key.clone())
            .collect();
        for key in keys {
            let mut body = Vec::new();
            self.encode_record(&key, 0, &mut body);
            self.direct(to, wire::kind::RECORD, &[&body], sink);
        }
    }

    /// A record from node `from`: newer than the mirror, it replaces it; with `ack`, `from` is told once the local
    /// shards installed its new callees.
    pub(super) fn on_remote_record(&mut self, from: Slot, body: &[u8], sink: &mut impl NodeSink) {
        let mut c = wire::Cursor(body);
        let (Some(key), Some(rev), Some(ack), Some(value)) = (c.str(), c.u64(), c.u64(), c.bytes())
        else {
            self.stats.messages_dropped += 1;
            return;
        };
        let record = if value.is_empty() {
            None
        } else {
            match Record::decode(value) {
                Some(record) => Some(record),
                None => {
                    self.stats.messages_dropped += 1;
                    return;
                }
            }
        };
        let key = key.to_owned();
        let state = self.registry.keys.entry(key.clone()).or_default();
        let node_ack = (ack != 0).then_some((from, ack));
        if rev > state.rev {
            state.rev = rev;
            state.record = record;
            self.apply(&key, None, node_ack, sink);
        } else if let Some((slot, token)) = node_ack {
            self.finish(Then::AckNode { slot, token }, sink);
        }
        if self
            .registry
            .keys
            .get(&key)
            .is_some_and(|k| k.record.is_none() && k.ops.is_empty() && k.installed.is_empty())
        {
            self.registry.keys.remove(&key);
        }
    }

    /// Membership changed: what the shards hold follows every record's live callees.
    pub(super) fn reapply_all(&mut self, sink: &mut impl NodeSink) {
        let keys: Vec<String> = self.registry.keys.keys().cloned().collect();
        for key in keys {
            self.apply(&key, None, None, sink);
        }
    }

    /// Keys whose record holds a callee of (slot, epoch): the reaper removes them.
    pub(super) fn purge_node(&mut self, slot: Slot, epoch: u64, sink: &mut impl NodeSink) {
        let keys: Vec<String> = (self.registry.keys.iter())
            .filter(|(_, k)| {
                k.record
                    .as_ref()
                    .is_some_and(|r| r.callees.iter().any(|c| (c.slot, c.epoch) == (slot, epoch)))
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            if let Some(state) = self.registry.keys.get_mut(&key) {
                state.ops.push_back(Op::Purge { slot, epoch });
            }
            self.drive(&key, sink);
        }
    }

    /// Brings what the local shards hold for `key` in line with the record's live callees. `added`: the local
    /// REGISTER just written (origin shard, its token, the callee's session). `node_ack`: a node to tell once
    /// the shards installed the new callees of other nodes.
    fn apply(
        &mut self,
        key: &str,
        added: Option<(ShardId, u64, Id)>,
        node_ack: Option<(Slot, u64)>,
        sink: &mut impl NodeSink,
    ) {
        let Some(state) = self.registry.keys.get(key) else {
            return;
        };
        let record = state.record.clone();
        let old_id = state.installed_id;
        let installed_realm = state.installed_realm;
        let installed = state.installed.clone();
        let leaving = state.leaving.clone();
        let realm = record
            .as_ref()
            .and_then(|r| self.realm_names.iter().position(|n| **n == *r.realm));
        let live: Vec<RecordCallee> = match (&record, realm) {
            (Some(record), Some(_)) => (record.callees.iter())
                .filter(|c| self.alive(c.slot, c.epoch))
                .filter(|c| !(c.slot == self.slot && leaving.contains(&c.session)))
                .cloned()
                .collect(),
            _ => Vec::new(),
        };
        let new_id = record.as_ref().filter(|_| !live.is_empty()).map(|r| r.id);
        // Removals: everything when the registration changed identity, else the callees no longer live.
        let mut kept: Vec<Installed> = Vec::new();
        for entry in installed {
            let stays = new_id == old_id
                && live.iter().any(|c| {
                    c.session == entry.session
                        && entry.remote == (c.slot != self.slot).then_some((c.slot, c.epoch))
                });
            if stays {
                kept.push(entry);
                continue;
            }
            if let (Some(id), Some(realm)) = (old_id, installed_realm) {
                let msg = PeerMessage::RegistrationRemoved {
                    realm,
                    registration: id,
                    session: entry.session,
                };
                sink.shards(self.local, &msg);
            }
            if let Some((slot, epoch)) = entry.remote {
                self.registry.release(slot, epoch, entry.session);
            }
        }
        if old_id != new_id {
            if let Some(id) = old_id {
                self.registry.by_id.remove(&id);
            }
        }
        let (Some(record), Some(realm), Some(id)) = (record, realm, new_id) else {
            if let Some(state) = self.registry.keys.get_mut(key) {
                state.installed = kept;
                state.installed_id = None;
                state.installed_realm = None;
            }
            if let Some((slot, token)) = node_ack {
                self.finish(Then::AckNode { slot, token }, sink);
            }
            return;
        };
        self.registry.by_id.insert(id, key.to_owned());
        // Additions, in the record's order.
        let additions: Vec<RecordCallee> = (live.iter())
            .filter(|c| !kept.iter().any(|k| k.session == c.session))
            .cloned()
            .collect();
        let remote_added = additions.iter().filter(|c| c.slot != self.slot).count();
        let node_token = match node_ack {
            Some((slot, token)) => {
                let then = Then::AckNode { slot, token };
                let t = self.wait_shards(remote_added * self.shards, then, sink);
                if self.waits.contains_key(&t) {
                    t
                } else {
                    0
                }
            }
            None => 0,
        };
        let created_ms = record.created_unix_ms.saturating_sub(self.epoch_unix_ms);
        let mut now_installed = kept;
        for callee in additions {
            let (shard, handle, token) = if callee.slot == self.slot {
                match added {
                    Some((_, token, session)) if session == callee.session => {
                        (callee.shard, callee.handle, token)
                    }
                    _ => {
                        // A callee of this node the record holds but no REGISTER of ours is waiting for (a
                        // write reported as failed that was done after all): it goes.
                        if let Some(state) = self.registry.keys.get_mut(key) {
                            if !state.ops.iter().any(|op| matches!(op, Op::Remove { session } if *session == callee.session)) {
                                state.ops.push_back(Op::Remove {
                                    session: callee.session,
                                });
                            }
                        }
                        continue;
                    }
                }
            } else {
                (self.me, self.registry.acquire(&callee), node_token)
            };
            let msg = PeerMessage::RegistrationAdded {
                realm: realm as u16,
                registration: id,
                policy: record.policy,
                procedure: &record.procedure,
                invoke: record.invoke.code(),
                created_ms,
                callee: RemoteCallee {
                    shard,
                    handle,
                    session: callee.session,
                    authrole: &callee.authrole,
                    disclose_caller: callee.disclose_caller,
                },
                token,
            };
            sink.shards(self.local, &msg);
            now_installed.push(Installed {
                session: callee.session,
                remote: (callee.slot != self.slot).then_some((callee.slot, callee.epoch)),
            });
        }
        if let Some(state) = self.registry.keys.get_mut(key) {
            state.installed = now_installed;
            state.installed_id = Some(id);
            state.installed_realm = Some(realm as u16);
        }
    }
}

enum Decision {
    /// Nothing to write.
    Done,
    Refuse(&'static str, String),
    /// The new record (`None`: delete the key).
    Write(Option<Record>),
}

/// The ID of registration (realm, policy, procedure) when it is created: a hash under the cluster's seed (any
/// node creating it picks the same), kept in the record afterwards.
fn registration_id(seed: u64, realm: &str, policy: MatchPolicy, procedure: &str) -> Id {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    digest.update(&seed.to_le_bytes());
    digest.update(b"registration");
    digest.update(realm.as_bytes());
    digest.update(&[0]);
    digest.update(policy.name().as_bytes());
    digest.update(procedure.as_bytes());
    let hash = digest.finish();
    let mut word = [0u8; 8];
    word.copy_from_slice(&hash.as_ref()[..8]);
    let value = (u64::from_le_bytes(word) & (kreisel_codec::ID_MAX - 1)) + 1;
    Id::new(value).unwrap_or(Id::FIRST)
}
