//! Who subscribes to what across nodes, and publications between nodes.
//!
//! Each backplane keeps two tables per realm, each a [`UriTrie`] over (match policy, topic) like a broker's: the
//! subscribers of its own shards (to hand other nodes' publications to the shards that want them) and the
//! subscribers of other nodes (to send a publication of its shards once to each node that wants it). Both hold
//! sessions, not counts, so that a node's departure removes exactly its subscribers, and the meta API on every
//! node lists every subscriber of the cluster.

use std::collections::{HashMap, VecDeque};

use kreisel_codec::Id;

use super::*;

/// Subscribers of this node's shards to one (policy, topic).
#[derive(Debug)]
pub(super) struct LocalSub {
    pub topic: Box<str>,
    pub policy: MatchPolicy,
    pub sessions: Vec<(ShardId, Id)>,
}

/// Subscribers of other nodes to one (policy, topic), with the generation they were last confirmed in
/// (see [`PeerNode::generation`]).
#[derive(Debug)]
pub(super) struct RemoteSub {
    pub topic: Box<str>,
    pub policy: MatchPolicy,
    pub sessions: Vec<(Slot, Id, u32)>,
}

/// The retained events of a realm as encoded `Publish` messages (a newly joined node gets them), bounded like
/// the shards' own copies: by count and bytes, oldest dropped first.
#[derive(Debug, Default)]
pub(super) struct RetainedCopies {
    events: HashMap<Box<str>, Vec<u8>>,
    order: VecDeque<Box<str>>,
    bytes: usize,
    count_max: usize,
    bytes_max: usize,
}

impl RetainedCopies {
    pub fn new(count_max: usize, bytes_max: usize) -> RetainedCopies {
        RetainedCopies {
            count_max,
            bytes_max,
            ..RetainedCopies::default()
        }
    }

    pub fn keep(&mut self, topic: &str, raw: &[u8]) {
        if raw.len() > self.bytes_max || self.count_max == 0 {
            return;
        }
        if let Some(old) = self.events.insert(topic.into(), raw.to_vec()) {
            self.bytes -= old.len();
            self.order.retain(|t| &**t != topic);
        }
        self.bytes += raw.len();
        self.order.push_back(topic.into());
        while self.events.len() > self.count_max || self.bytes > self.bytes_max {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.events.remove(&oldest) {
                self.bytes -= old.len();
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.order
            .iter()
            .filter_map(|t| self.events.get(t))
            .map(Vec::as_slice)
    }
}

impl Node {
    /// A subscriber of a local shard: every node learns it; with `ack`, the shard waits until every node has
    /// installed it (its SUBSCRIBED then goes out).
    pub(super) fn on_local_subscribed(
        &mut self,
        from: ShardId,
        (realm, policy, topic): (u16, MatchPolicy, &str),
        session: Id,
        ack: u64,
        sink: &mut impl NodeSink,
    ) {
        let Some(state) = self.realms.get_mut(usize::from(realm)) else {
            return;
        };
        let index = match state.local_trie.get(topic, policy) {
            Some(index) => index,
            None => {
                let index = state.local.insert(LocalSub {
                    topic: topic.into(),
                    policy,
                    sessions: Vec::with_capacity(1),
                });
                state.local_trie.insert(topic, policy, index);
                index
            }
        };
        let sessions = &mut state.local[index].sessions;
        if !sessions.contains(&(from, session)) {
            sessions.push((from, session));
        }
        let node_ack = if ack != 0 {
            let nodes = self.live_peers();
            self.wait_nodes(
                nodes,
                Then::AckShard {
                    shard: from,
                    token: ack,
                },
                sink,
            )
        } else {
            0
        };
        let msg = PeerMessage::Subscribed {
            realm,
            policy,
            topic,
            session,
            ack: if self.waits.contains_key(&node_ack) {
                node_ack
            } else {
                0
            },
        };
        self.broadcast_link(&msg, sink);
    }

    pub(super) fn on_local_unsubscribed(
        &mut self,
        from: ShardId,
        (realm, policy, topic): (u16, MatchPolicy, &str),
        session: Id,
        sink: &mut impl NodeSink,
    ) {
        let Some(state) = self.realms.get_mut(usize::from(realm)) else {
            return;
        };
        let Some(index) = state.local_trie.get(topic, policy) else {
            return;
        };
        let sub = &mut state.local[index];
        sub.sessions.retain(|&entry| entry != (from, session));
        if sub.sessions.is_empty() {
            state.local.remove(index);
            state.local_trie.remove(topic, policy);
        }
        let msg = PeerMessage::Unsubscribed {
            realm,
            policy,
            topic,
            session,
        };
        self.broadcast_link(&msg, sink);
    }

    /// A subscriber on node `from`: the local shards learn it (so they send its publications here), and with
    /// `ack` the node is told once they all have.
    pub(super) fn on_remote_subscribed(
        &mut self,
        from: Slot,
        (realm, policy, topic): (u16, MatchPolicy, &str),
        session: Id,
        ack: u64,
        sink: &mut impl NodeSink,
    ) {
        let generation = self.generation_of(from);
        let Some(state) = self.realms.get_mut(usize::from(realm)) else {
            return;
        };
        let index = match state.remote_trie.get(topic, policy) {
            Some(index) => index,
            None => {
                let index = state.remote.insert(RemoteSub {
                    topic: topic.into(),
                    policy,
                    sessions: Vec::with_capacity(1),
                });
                state.remote_trie.insert(topic, policy, index);
                index
            }
        };
        let sessions = &mut state.remote[index].sessions;
        match sessions
            .iter_mut()
            .find(|(s, id, _)| (*s, *id) == (from, session))
        {
            Some(entry) => entry.2 = generation,
            None => sessions.push((from, session, generation)),
        }
        let token = if ack != 0 {
            let then = Then::AckNode {
                slot: from,
                token: ack,
            };
            self.wait_shards(self.shards, then, sink)
        } else {
            0
        };
        let msg = PeerMessage::Subscribed {
            realm,
            policy,
            topic,
            session,
            ack: if self.waits.contains_key(&token) {
                token
            } else {
                0
            },
        };
        sink.shards(self.local, &msg);
    }

    pub(super) fn on_remote_unsubscribed(
        &mut self,
        from: Slot,
        (realm, policy, topic): (u16, MatchPolicy, &str),
        session: Id,
        sink: &mut impl NodeSink,
    ) {
        if self.remove_remote_subscriber(from, (realm, policy, topic), session) {
            let msg = PeerMessage::Unsubscribed {
                realm,
                policy,
                topic,
                session,
            };
            sink.shards(self.local, &msg);
        }
    }

    /// Forgets subscriber `session` of node `from`; returns whether it was known.
    fn remove_remote_subscriber(
        &mut self,
        from: Slot,
        (realm, policy, topic): (u16, MatchPolicy, &str),
        session: Id,
    ) -> bool {
        let Some(state) = self.realms.get_mut(usize::from(realm)) else {
            return false;
        };
        let Some(index) = state.remote_trie.get(topic, policy) else {
            return false;
        };
        let sub = &mut state.remote[index];
        let before = sub.sessions.len();
        sub.sessions
            .retain(|&(s, id, _)| (s, id) != (from, session));
        let removed = sub.sessions.len() < before;
        if sub.sessions.is_empty() {
            state.remote.remove(index);
            state.remote_trie.remove(topic, policy);
        }
        removed
    }

    /// Drops every subscriber of node `slot` (`stale_before`: only those not confirmed in that generation or
    /// later), telling the local shards.
    pub(super) fn drop_remote_subscribers(
        &mut self,
        slot: Slot,
        stale_before: Option<u32>,
        sink: &mut impl NodeSink,
    ) {
        for realm in 0..self.realms.len() {
            let mut dropped: Vec<(MatchPolicy, Box<str>, Id)> = Vec::new();
            for (_, sub) in &self.realms[realm].remote {
                for &(s, id, generation) in &sub.sessions {
                    if s == slot && stale_before.is_none_or(|g| generation < g) {
                        dropped.push((sub.policy, sub.topic.clone(), id));
                    }
                }
            }
            for (policy, topic, session) in dropped {
                self.remove_remote_subscriber(slot, (realm as u16, policy, &topic), session);
                let msg = PeerMessage::Unsubscribed {
                    realm: realm as u16,
                    policy,
                    topic: &topic,
                    session,
                };
                sink.shards(self.local, &msg);
            }
        }
    }

    /// The nodes with a subscriber matching `topic` (every node for a retained event).
    pub(super) fn interested_nodes(&self, realm: u16, topic: &str, retain: bool) -> Vec<Slot> {
        if retain {
            return self.live_peers();
        }
        let Some(state) = self.realms.get(usize::from(realm)) else {
            return Vec::new();
        };
        let mut nodes: Vec<Slot> = Vec::new();
        state.remote_trie.for_each_match(topic, |_, index| {
            for &(slot, _, _) in &state.remote[index].sessions {
                if !nodes.contains(&slot) {
                    nodes.push(slot);
                }
            }
        });
        nodes
    }

    /// Sends an encoded `Publish` once to each of `nodes` (not numbered: at most once).
    pub(super) fn send_publication(
        &mut self,
        nodes: &[Slot],
        raw: &[u8],
        sink: &mut impl NodeSink,
    ) {
        if nodes.is_empty() {
            return;
        }
        let header = wire::header(wire::kind::LINK, false, self.slot, self.epoch, 0);
        for &node in nodes {
            self.stats.publications_sent += 1;
            self.stats.messages_sent += 1;
            sink.node(Some(node), true, &[&header, &0u16.to_le_bytes(), raw]);
        }
    }

    /// A publication of a local shard for subscribers of other nodes (or retained: for every node).
    pub(super) fn on_local_publish(
        &mut self,
        realm: u16,
        msg: &PeerMessage<'_>,
        raw: &[u8],
        retain: bool,
        sink: &mut impl NodeSink,
    ) {
        let PeerMessage::Publish { topic, .. } = *msg else {
            return;
        };
        if retain {
            if let Some(state) = self.realms.get_mut(usize::from(realm)) {
                state.retained.keep(topic, raw);
            }
        }
        let nodes = self.interested_nodes(realm, topic, retain);
        self.send_publication(&nodes, raw, sink);
    }

    /// A publication of another node: to the local shards with a matching subscriber (all of them when retained).
    pub(super) fn on_remote_publish(
        &mut self,
        realm: u16,
        topic: &str,
        retain: bool,
        raw: &[u8],
        sink: &mut impl NodeSink,
    ) {
        self.stats.publications_received += 1;
        let Some(state) = self.realms.get_mut(usize::from(realm)) else {
            return;
        };
        let mut shards = ShardSet::EMPTY;
        if retain {
            state.retained.keep(topic, raw);
            shards = self.local;
        } else {
            state.local_trie.for_each_match(topic, |_, index| {
                for &(shard, _) in &state.local[index].sessions {
                    shards.insert(shard);
                }
            });
        }
        if !shards.is_empty() {
            sink.shards_raw(shards, raw);
        }
    }
}
