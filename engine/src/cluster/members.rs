//! Membership: heartbeats, joining (state exchange), dropping silent nodes, reaping them, fencing.

use kreisel_codec::Id;

use super::record::{decode_members, encode_members, MEMBERS_KEY};
use super::*;

impl Node {
    pub(super) fn add_peer(&mut self, slot: Slot, epoch: u64) {
        self.peers.insert(
            slot,
            PeerNode {
                epoch,
                last_heard_ms: self.now_ms,
                bseq_in: 0,
                dseq_in: 1,
                dseq_out: 0,
                syncing: false,
                generation: 0,
                requested: false,
                state_mark: 0,
            },
        );
        self.gone.remove(&(slot, epoch));
    }

    /// Asks node `slot` for its whole state (`fresh`: this node is new and wants the retained events too).
    pub(super) fn request_state(&mut self, slot: Slot, fresh: bool, sink: &mut impl NodeSink) {
        let Some(peer) = self.peers.get_mut(&slot) else {
            return;
        };
        if peer.requested {
            return;
        }
        peer.requested = true;
        self.stats.resyncs += 1;
        self.direct(slot, wire::kind::STATE_REQUEST, &[&[u8::from(fresh)]], sink);
    }

    /// Sends this node's state to node `to`: its sessions (with testaments), their subscriptions, every record,
    /// and (`fresh`) the retained events. The receiver drops whatever of this node's it holds and does not see
    /// again.
    pub(super) fn send_state(&mut self, to: Slot, fresh: bool, sink: &mut impl NodeSink) {
        let mark = self.next_token + 1;
        if let Some(peer) = self.peers.get_mut(&to) {
            peer.state_mark = mark;
        }
        self.direct(to, wire::kind::STATE_BEGIN, &[], sink);
        let mine: Vec<(Id, SessionRecord)> = (self.sessions.iter())
            .filter(|(_, s)| s.slot == self.slot)
            .map(|(&id, s)| (id, s.clone()))
            .collect();
        for (id, session) in &mine {
            let msg = PeerMessage::SessionJoined {
                realm: session.realm,
                handle: SessionHandle {
                    index: 0,
                    generation: 0,
                },
                who: link::Who {
                    id: *id,
                    authid: &session.authid,
                    authrole: &session.authrole,
                },
                authmethod: &session.authmethod,
            };
            self.direct_link(to, 0, &msg, sink);
            if !session.testaments.is_empty() {
                let msg = PeerMessage::Testaments {
                    realm: session.realm,
                    session: *id,
                    items: &session.testaments,
                };
                self.direct_link(to, 0, &msg, sink);
            }
        }
        let mut subscriptions: Vec<(u16, MatchPolicy, Box<str>, Id)> = Vec::new();
        for (realm, state) in self.realms.iter().enumerate() {
            for (_, sub) in &state.local {
                for &(_, session) in &sub.sessions {
                    subscriptions.push((realm as u16, sub.policy, sub.topic.clone(), session));
                }
            }
        }
        for (realm, policy, topic, session) in subscriptions {
            let msg = PeerMessage::Subscribed {
                realm,
                policy,
                topic: &topic,
                session,
                ack: 0,
            };
            self.direct_link(to, 0, &msg, sink);
        }
        self.send_records(to, sink);
        if fresh {
            let retained: Vec<Vec<u8>> = (self.realms.iter())
                .flat_map(|state| state.retained.iter().map(<[u8]>::to_vec))
                .collect();
            for raw in retained {
                let mut body = 0u16.to_le_bytes().to_vec();
                body.extend_from_slice(&raw);
                self.direct(to, wire::kind::LINK, &[&body], sink);
            }
        }
        self.direct(to, wire::kind::STATE_END, &[], sink);
    }

    pub(super) fn on_state_begin(&mut self, from: Slot) {
        if let Some(peer) = self.peers.get_mut(&from) {
            peer.generation = peer.generation.wrapping_add(1);
            peer.syncing = true;
        }
    }

    /// The end of node `from`'s state: what it did not repeat is gone.
    pub(super) fn on_state_end(&mut self, from: Slot, sink: &mut impl NodeSink) {
        let Some(peer) = self.peers.get_mut(&from) else {
            return;
        };
        peer.syncing = false;
        peer.requested = false;
        let generation = peer.generation;
        self.drop_remote_subscribers(from, Some(generation), sink);
        let stale: Vec<Id> = (self.sessions.iter())
            .filter(|(_, s)| s.slot == from && s.generation != generation)
            .map(|(&id, _)| id)
            .collect();
        for id in stale {
            if let Some(record) = self.sessions.remove(&id) {
                let msg = PeerMessage::SessionLeft {
                    realm: record.realm,
                    session: id,
                };
                sink.shards(self.local, &msg);
            }
        }
        if self.startup.remove(&from) && self.startup.is_empty() {
            info!(
                slot = self.slot,
                "cluster: ready (every member's state is here)"
            );
        }
        self.reapply_all(sink);
    }

    pub(super) fn heartbeat(&mut self, sink: &mut impl NodeSink) {
        let mut body = Vec::with_capacity(10 + 10 * self.peers.len());
        wire::put_u64(&mut body, self.fingerprint);
        wire::put_u16(&mut body, self.peers.len() as u16);
        for (&slot, peer) in &self.peers {
            wire::put_u16(&mut body, slot);
            wire::put_u64(&mut body, peer.dseq_out);
        }
        self.broadcast(wire::kind::HEARTBEAT, &body, sink);
    }

    /// A heartbeat (or a joining node's hello): checks the realms match, and finds lost messages to this node.
    pub(super) fn on_heartbeat(&mut self, env: &wire::Envelope<'_>, sink: &mut impl NodeSink) {
        let mut c = wire::Cursor(env.body);
        let Some(fingerprint) = c.u64() else {
            return;
        };
        if fingerprint != self.fingerprint {
            warn!(
                slot = env.from,
                "cluster: a node with other realms (or another version of the backplane) is ignored"
            );
            self.peers.remove(&env.from);
            self.gone.insert((env.from, env.epoch), self.now_ms);
            return;
        }
        if env.kind == wire::kind::HELLO {
            // A new node: it has nothing yet, and wants everything of ours.
            self.startup.remove(&env.from);
            self.send_state(env.from, true, sink);
            self.reapply_all(sink);
            return;
        }
        let Some(count) = c.u16() else {
            return;
        };
        for _ in 0..count {
            let (Some(slot), Some(sent)) = (c.u16(), c.u64()) else {
                return;
            };
            if slot != self.slot {
                continue;
            }
            let behind = self
                .peers
                .get(&env.from)
                .is_some_and(|peer| peer.dseq_in <= sent);
            if behind {
                if let Some(peer) = self.peers.get_mut(&env.from) {
                    peer.dseq_in = sent + 1;
                }
                self.on_direct_gap(env.from, sink);
            }
        }
    }

    /// Drops node `slot`: its subscribers, callees and calls go at once; `reap`: it died (rather than said
    /// goodbye), so the members record decides who publishes its sessions' testaments and `on_leave`.
    pub(super) fn drop_peer(&mut self, slot: Slot, reap: bool, sink: &mut impl NodeSink) {
        let Some(peer) = self.peers.remove(&slot) else {
            return;
        };
        let epoch = peer.epoch;
        self.stats.nodes_lost += 1;
        self.gone.insert((slot, epoch), self.now_ms);
        self.startup.remove(&slot);
        // Waits for its acknowledgments go on without it.
        let tokens: Vec<u64> = (self.waits.iter())
            .filter(|(_, w)| w.nodes.contains(&slot))
            .map(|(&t, _)| t)
            .collect();
        for token in tokens {
            self.on_ack(token, Some(slot), sink);
        }
        self.forget_node_in_gathers(slot, sink);
        self.end_calls_with(slot, "the callee's node left the cluster", sink);
        self.drop_remote_subscribers(slot, None, sink);
        let sessions: Vec<(Id, SessionRecord)> = (self.sessions.iter())
            .filter(|(_, s)| s.slot == slot)
            .map(|(&id, s)| (id, s.clone()))
            .collect();
        for (id, record) in &sessions {
            self.sessions.remove(id);
            let msg = PeerMessage::SessionLeft {
                realm: record.realm,
                session: *id,
            };
            sink.shards(self.local, &msg);
        }
        self.reapply_all(sink);
        if reap {
            self.orphans.insert((slot, epoch), sessions);
            if !self.to_reap.contains(&(slot, epoch)) {
                self.to_reap.push((slot, epoch));
            }
            self.check_members(sink);
        } else {
            // A node that said goodbye removed itself; the lowest remaining slot cleans its callees up.
            let lowest = self.peers.keys().all(|&s| s > self.slot);
            if lowest {
                self.purge_node(slot, epoch, sink);
            }
        }
    }

    /// Reads the members record (periodically: to find out whether this node was declared dead; and to reap).
    pub(super) fn check_members(&mut self, sink: &mut impl NodeSink) {
        if self.members_op.is_some() {
            return;
        }
        let id = self.kv_id();
        self.members_op = Some(id);
        self.stats.kv_ops += 1;
        sink.kv(id, KvOp::Get { key: MEMBERS_KEY });
    }

    /// The store's answer for `id`.
    pub fn handle_kv(
        &mut self,
        id: u64,
        result: KvResult<'_>,
        now_ms: u64,
        sink: &mut impl NodeSink,
    ) {
        self.now_ms = now_ms;
        if self.fenced {
            return;
        }
        if self.members_op == Some(id) {
            self.members_op = None;
            return self.on_members(result, sink);
        }
        self.on_registry_kv(id, result, sink);
    }

    fn on_members(&mut self, result: KvResult<'_>, sink: &mut impl NodeSink) {
        match result {
            KvResult::Value { rev, value } => {
                let members = value.and_then(decode_members).unwrap_or_default();
                self.members = members;
                self.members_rev = rev;
                if self.leaving {
                    let mut members = self.members.clone();
                    members.retain(|&entry| entry != (self.slot, self.epoch));
                    let mut value = Vec::new();
                    encode_members(&members, &mut value);
                    let id = self.kv_id();
                    self.members_op = Some(id);
                    return sink.kv(
                        id,
                        KvOp::Put {
                            key: MEMBERS_KEY,
                            value: &value,
                            expect: rev,
                        },
                    );
                }
                if !self.members.contains(&(self.slot, self.epoch)) {
                    return self.fence("the cluster declared this node dead", sink);
                }
                // Dropped nodes still listed: reap them.
                let pending: Vec<(Slot, u64)> = (self.to_reap.iter().copied())
                    .filter(|entry| self.members.contains(entry))
                    .collect();
                let settled: Vec<(Slot, u64)> = (self.to_reap.iter().copied())
                    .filter(|entry| !self.members.contains(entry))
                    .collect();
                for entry in settled {
                    // Someone else reaped it.
                    self.to_reap.retain(|&e| e != entry);
                    self.orphans.remove(&entry);
                }
                if !pending.is_empty() {
                    let mut members = self.members.clone();
                    members.retain(|entry| !pending.contains(entry));
                    let mut value = Vec::new();
                    encode_members(&members, &mut value);
                    let id = self.kv_id();
                    self.members_op = Some(id);
                    self.stats.kv_ops += 1;
                    self.reaping = pending;
                    sink.kv(
                        id,
                        KvOp::Put {
                            key: MEMBERS_KEY,
                            value: &value,
                            expect: rev,
                        },
                    );
                }
                self.reapply_all(sink);
            }
            KvResult::Written { .. } if self.leaving => {
                info!(slot = self.slot, "cluster: left the members record");
            }
            KvResult::Written { rev } => {
                self.members_rev = rev;
                let reaped = std::mem::take(&mut self.reaping);
                self.members.retain(|entry| !reaped.contains(entry));
                for (slot, epoch) in reaped {
                    self.to_reap.retain(|&e| e != (slot, epoch));
                    self.reap(slot, epoch, sink);
                }
            }
            KvResult::Conflict => {
                self.stats.kv_conflicts += 1;
                self.reaping.clear();
                self.check_members(sink);
            }
            KvResult::Failed => {
                self.stats.kv_failures += 1;
                self.reaping.clear();
            }
        }
    }

    /// This node removed (slot, epoch) from the members: it publishes its sessions' testaments and `on_leave`
    /// (once for the cluster), and removes its callees from the records.
    fn reap(&mut self, slot: Slot, epoch: u64, sink: &mut impl NodeSink) {
        self.stats.nodes_reaped += 1;
        let sessions = self.orphans.remove(&(slot, epoch)).unwrap_or_default();
        info!(
            slot,
            epoch,
            sessions = sessions.len(),
            "cluster: reaping a dead node (its testaments and on_leave)"
        );
        for (id, session) in &sessions {
            self.publish_testaments(*id, session, sink);
            let args = [
                Field::UInt(id.get()),
                Field::Str(&session.authid),
                Field::Str(&session.authrole),
            ];
            self.publish_meta(session.realm, "wamp.session.on_leave", &args, sink);
        }
        self.purge_node(slot, epoch, sink);
    }

    fn publish_testaments(&mut self, id: Id, session: &SessionRecord, sink: &mut impl NodeSink) {
        if session.testaments.is_empty() {
            return;
        }
        let Some(items) = link::unpack_testaments(&session.testaments, true) else {
            return;
        };
        for item in items {
            let options = item
                .options
                .map_or(kreisel_codec::Dict::EMPTY, kreisel_codec::Dict::Raw);
            let parsed = crate::options::RequestOptions::parse(&options, &[]);
            let publication = self.ids.random_id();
            let msg = PeerMessage::Publish {
                realm: session.realm,
                publication,
                topic: item.topic,
                publisher: Some(link::Who {
                    id,
                    authid: &session.authid,
                    authrole: &session.authrole,
                }),
                disclose: item.disclose || parsed.disclose_me,
                retain: parsed.retain,
                options: item.options,
                args: item.args,
                kwargs: item.kwargs,
            };
            let mut raw = Vec::new();
            link::encode(&msg, &mut raw);
            self.publish_from_here(session.realm, item.topic, parsed.retain, &raw, sink);
        }
    }
}
