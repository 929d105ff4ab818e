//! A cluster: several kreisel nodes acting as one router, linked by a message backplane (NATS in `io`) and a
//! key-value store with compare-and-set (NATS JetStream KV) for what must be consistent.
//!
//! A node's shards do not know the other nodes. Each shard has one more peer beside its sibling shards: the
//! node's *backplane*, which takes shard number `shards` in every [`crate::link::ShardSet`]
//! ([`crate::RouterConfig::cluster_slot`]). To the shards the backplane is a shard like the others: it is told every
//! session, subscription and testament, it decides every registration (as the owner shard does in a router on its
//! own), and it brings the other nodes' publications, calls, subscribers and answers as if they came from one more
//! shard. The [`Node`] here is that backplane's logic, sans-IO like the rest of the engine: `io` feeds it what
//! the shards and the other nodes send ([`Node::handle_shard`], [`Node::handle_remote`]), the store's answers
//! ([`Node::handle_kv`]) and the time ([`Node::handle_timeout`]), and carries out what it asks through a
//! [`NodeSink`].
//!
//! What crosses the backplane:
//! - **Interest.** Every subscriber is told to every node (as between shards), so each node knows, per (realm,
//!   match policy, topic), which other nodes have subscribers. A publication goes once to each node with a
//!   matching subscriber, carrying the publisher's bytes; the receiving node hands it to its shards with matching
//!   subscribers. WAMP matching (prefix by string, wildcards, lists, disclosure) is done by the nodes, exactly as
//!   in one router; the backplane only carries bytes. SUBSCRIBED waits until every node has installed a new
//!   subscriber (acknowledgments, as between shards).
//! - **Registrations.** One record per (realm, policy, procedure) in the store, written with compare-and-set by the
//!   node whose callee registers or leaves, then broadcast; every node keeps a mirror and tells its shards the
//!   callees. `single` is exclusive because two writes cannot both succeed on one revision.
//! - **Calls.** A call crosses to the callee's node, whose shard owns it (timeouts, cancel, progressive chunks),
//!   as between shards; each backplane keeps the relay between the shard's relay IDs and the cluster's.
//! - **Sessions.** Every node keeps a compact record of every session of the cluster (ID, realm, authid, authrole
//!   and testaments), so that when a node dies another publishes its sessions' testaments and `on_leave`. The
//!   session meta API asks every node (scatter-gather with a timeout) as shards ask each other.
//! - **Membership.** Nodes own a slot in the members record (slot, epoch); they heartbeat; one not heard for
//!   `dead_after_ms` is dropped by every node, and the one that removes it from the members record (compare-and-set)
//!   reaps it: its callees leave the records, its testaments and `on_leave` are published. A node that finds itself
//!   removed, or that lost the backplane for `dead_after_ms`, is fenced.
//!
//! Messages from one node to another arrive in order or not at all (one connection each); numbered streams
//! reveal losses: a lost broadcast makes the receiver ask for the sender's whole state again, a lost directed
//! message ends the calls between the two nodes.

use std::collections::{HashMap, HashSet, VecDeque};

use kreisel_codec::{Field, Id, RawValue, Serializer};
use slab::Slab;
use tracing::{debug, info, warn};

use crate::ids::IdGenerator;
use crate::link::{self, PeerMessage, ShardId, ShardSet};
use crate::session::SessionHandle;
use crate::uri::{MatchPolicy, UriTrie};

mod calls;
mod census;
mod interest;
mod members;
pub mod record;
mod registry;
mod wire;

pub use wire::HEADER_LEN;

/// A node's place in the cluster (0..[`NODE_SLOTS`]).
pub type Slot = u16;

/// Most nodes a cluster may have (session IDs are split among them).
pub const NODE_SLOTS: usize = 1024;

/// Error URI of requests the cluster cannot serve right now (the key-value store does not answer).
pub const CLUSTER_UNAVAILABLE: &str = "kreisel.error.cluster_unavailable";

/// How a node starts.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's slot and incarnation (from the members record it joined).
    pub slot: Slot,
    pub epoch: u64,
    /// The other members when it joined: it asks each for its state before it is ready.
    pub members: Vec<(Slot, u64)>,
    /// Local shards (the backplane is shard number `shards`).
    pub shards: usize,
    /// The realms, in configuration order (every node must have the same), with their retention bounds.
    pub realms: Vec<crate::RealmConfig>,
    pub heartbeat_ms: u64,
    pub dead_after_ms: u64,
    /// How long a session meta question waits for the other nodes (below the shards' own 2 s).
    pub gather_timeout_ms: u64,
    /// The cluster's shared seed (registration IDs).
    pub seed: u64,
    /// Unix milliseconds at engine time 0 (registration creation times are kept in Unix time in the store).
    pub epoch_unix_ms: u64,
}

/// What a [`Node`] asks of its `io` layer.
pub trait NodeSink {
    /// A link message for local shards.
    fn shards(&mut self, to: ShardSet, msg: &PeerMessage<'_>);
    /// A link message, already encoded, for local shards.
    fn shards_raw(&mut self, to: ShardSet, link: &[u8]);
    /// A node message (the concatenation of `parts`) for node `to`, or for every node (`None`). `droppable`:
    /// the message may be dropped when the backplane is congested (events: at most once); others only when it
    /// cannot be sent at all (the receiver then finds a gap in the numbered stream).
    fn node(&mut self, to: Option<Slot>, droppable: bool, parts: &[&[u8]]);
    /// A key-value store operation; its result comes back through [`Node::handle_kv`] with `id`.
    fn kv(&mut self, id: u64, op: KvOp<'_>);
    /// This node may no longer serve (it was declared dead, or lost the backplane): `io` ends every session.
    fn fenced(&mut self, reason: &str);
}

/// An operation on the key-value store (one key; revisions are the store's sequence numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvOp<'a> {
    Get {
        key: &'a str,
    },
    /// Writes `value` if the key's latest revision is `expect` (0: the key has never been written).
    Put {
        key: &'a str,
        value: &'a [u8],
        expect: u64,
    },
    /// Deletes the key if its latest revision is `expect` (a deletion is itself a revision).
    Delete {
        key: &'a str,
        expect: u64,
    },
}

/// The store's answer to a [`KvOp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvResult<'a> {
    /// `Get`: the latest revision (0: never written) and the value (`None`: absent or deleted).
    Value { rev: u64, value: Option<&'a [u8]> },
    /// `Put`/`Delete` done, as revision `rev`.
    Written { rev: u64 },
    /// `Put`/`Delete` refused: the key's revision is not the expected one.
    Conflict,
    /// No answer (timeout, no quorum, no connection).
    Failed,
}

/// Counters of a node's backplane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Other nodes this node currently hears.
    pub nodes: u64,
    /// Node messages sent and received (each destination counted).
    pub messages_sent: u64,
    pub messages_received: u64,
    /// Received messages that did not decode, came from an unknown or dropped node, or referred to nothing.
    pub messages_dropped: u64,
    /// Publications sent to other nodes (once per node) and received from them.
    pub publications_sent: u64,
    pub publications_received: u64,
    /// Calls sent to callees on other nodes, and received for callees here.
    pub calls_sent: u64,
    pub calls_received: u64,
    /// Calls failed because their callee's (or caller's) node left or the link between the nodes lost messages.
    pub calls_failed: u64,
    /// Gaps found in other nodes' numbered streams, and full state exchanges they caused (or a join did).
    pub gaps: u64,
    pub resyncs: u64,
    /// Nodes dropped (not heard for `dead_after_ms`, or said goodbye), and those this node reaped.
    pub nodes_lost: u64,
    pub nodes_reaped: u64,
    /// Key-value operations, those that met a concurrent write, and those that failed.
    pub kv_ops: u64,
    pub kv_conflicts: u64,
    pub kv_failures: u64,
    /// REGISTERs refused because the store did not answer.
    pub registrations_unavailable: u64,
}

/// A node's backplane logic. See the module documentation.
#[derive(Debug)]
pub struct Node {
    slot: Slot,
    epoch: u64,
    /// The backplane's number among the shards, and every local shard.
    me: ShardId,
    local: ShardSet,
    shards: usize,
    realm_names: Vec<String>,
    realms: Vec<RealmState>,
    fingerprint: u64,
    heartbeat_ms: u64,
    dead_after_ms: u64,
    gather_timeout_ms: u64,
    seed: u64,
    epoch_unix_ms: u64,
    now_ms: u64,
    /// The backplane connection is up; when it went down.
    connected: bool,
    disconnected_since: Option<u64>,
    fenced: bool,
    /// Shutting down: the members record is read and written without this node.
    leaving: bool,
    next_heartbeat_ms: u64,
    /// The other nodes heard from.
    peers: HashMap<Slot, PeerNode>,
    /// Incarnations dropped (their late messages are ignored), with when.
    gone: HashMap<(Slot, u64), u64>,
    /// The members record as last read (slot, epoch), and its revision.
    members: Vec<(Slot, u64)>,
    members_rev: u64,
    members_op: Option<u64>,
    next_members_check_ms: u64,
    /// Incarnations to remove from the members record (this node reaps those it removes), and those the write
    /// in flight removes.
    to_reap: Vec<(Slot, u64)>,
    reaping: Vec<(Slot, u64)>,
    /// Members this node waits for before it is ready (their state).
    startup: HashSet<Slot>,
    /// Sequence numbers of this node's broadcast stream.
    bseq_out: u64,
    /// Every session of the cluster (see the module documentation).
    sessions: HashMap<Id, SessionRecord>,
    /// Sessions of dropped nodes, waiting for the reaper's decision.
    orphans: HashMap<(Slot, u64), Vec<(Id, SessionRecord)>>,
    next_token: u64,
    waits: HashMap<u64, Wait>,
    registry: registry::Registry,
    calls: calls::Calls,
    gathers: HashMap<u64, census::NodeGather>,
    gather_deadlines: VecDeque<(u64, u64)>,
    ids: IdGenerator,
    stats: NodeStats,
    /// Reused buffers.
    buf: Vec<u8>,
}

/// Another node, as this one knows it.
#[derive(Debug)]
struct PeerNode {
    epoch: u64,
    last_heard_ms: u64,
    /// Next expected numbers of its broadcast stream and of its stream to this node (0: not known yet).
    bseq_in: u64,
    dseq_in: u64,
    /// Last number this node sent it.
    dseq_out: u64,
    /// Its state is being (re)sent: entries it repeats are marked with `generation`, the rest dropped at the end.
    syncing: bool,
    generation: u32,
    /// A state request is outstanding.
    requested: bool,
    /// Tokens below this one were taken before this node last sent that node its state: that node's
    /// `STATE_ACK` stands for its acknowledgments of them.
    state_mark: u64,
}

/// One session of the cluster.
#[derive(Debug, Clone)]
struct SessionRecord {
    slot: Slot,
    realm: u16,
    authid: Box<str>,
    authrole: Box<str>,
    authmethod: Box<str>,
    /// A [`link::pack_testament`] list (empty: none).
    testaments: Box<[u8]>,
    generation: u32,
}

/// Per realm: who subscribes to what, here and on other nodes, and the retained events.
#[derive(Debug, Default)]
struct RealmState {
    local: Slab<interest::LocalSub>,
    local_trie: UriTrie<usize>,
    remote: Slab<interest::RemoteSub>,
    remote_trie: UriTrie<usize>,
    retained: interest::RetainedCopies,
}

/// Something waiting for acknowledgments: from other nodes (`nodes`), or from local shards (`shards`, a count).
#[derive(Debug)]
struct Wait {
    nodes: Vec<Slot>,
    shards: usize,
    then: Then,
}

#[derive(Debug)]
enum Then {
    /// Ack `token` to a local shard.
    AckShard { shard: ShardId, token: u64 },
    /// Ack `token` to another node.
    AckNode { slot: Slot, token: u64 },
}

impl Node {
    pub fn new(config: NodeConfig) -> Node {
        let shards = config.shards.clamp(1, crate::link::SHARDS_MAX - 1);
        let mut fingerprint = 0xcbf2_9ce4_8422_2325u64 ^ u64::from(wire::VERSION);
        for realm in &config.realms {
            for &b in realm.name.as_bytes().iter().chain(&[0]) {
                fingerprint = (fingerprint ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        let realms = config
            .realms
            .iter()
            .map(|r| RealmState {
                retained: interest::RetainedCopies::new(r.retained_max, r.retained_bytes_max),
                ..RealmState::default()
            })
            .collect();
        Node {
            slot: config.slot,
            epoch: config.epoch,
            me: shards as ShardId,
            local: ShardSet::all_but(shards + 1, shards as ShardId),
            shards,
            realm_names: config.realms.iter().map(|r| r.name.clone()).collect(),
            realms,
            fingerprint,
            heartbeat_ms: config.heartbeat_ms.max(1),
            dead_after_ms: config.dead_after_ms.max(2 * config.heartbeat_ms.max(1)),
            gather_timeout_ms: config.gather_timeout_ms,
            seed: config.seed,
            epoch_unix_ms: config.epoch_unix_ms,
            now_ms: 0,
            connected: true,
            disconnected_since: None,
            fenced: false,
            leaving: false,
            next_heartbeat_ms: 0,
            peers: HashMap::new(),
            gone: HashMap::new(),
            members: config.members.clone(),
            members_rev: 0,
            members_op: None,
            next_members_check_ms: 0,
            to_reap: Vec::new(),
            reaping: Vec::new(),
            startup: config
                .members
                .iter()
                .map(|&(slot, _)| slot)
                .filter(|&slot| slot != config.slot)
                .collect(),
            bseq_out: 0,
            sessions: HashMap::new(),
            orphans: HashMap::new(),
            next_token: 0,
            waits: HashMap::new(),
            registry: registry::Registry::default(),
            calls: calls::Calls::default(),
            gathers: HashMap::new(),
            gather_deadlines: VecDeque::new(),
            ids: IdGenerator::new(config.seed ^ (u64::from(config.slot) << 32) ^ config.epoch),
            stats: NodeStats::default(),
            buf: Vec::new(),
        }
    }

    pub fn slot(&self) -> Slot {
        self.slot
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn stats(&self) -> NodeStats {
        NodeStats {
            nodes: self.peers.len() as u64,
            ..self.stats
        }
    }

    /// Whether this node has the state of every member it found when it joined (or has given up on them): the
    /// shards may serve clients.
    pub fn ready(&self) -> bool {
        self.startup.is_empty()
    }

    pub fn is_fenced(&self) -> bool {
        self.fenced
    }

    /// The other nodes this node hears, with their epochs.
    pub fn peers(&self) -> impl Iterator<Item = (Slot, u64)> + '_ {
        self.peers.iter().map(|(&slot, peer)| (slot, peer.epoch))
    }

    /// Joins: tells every node this one is here, and asks each member for its state.
    pub fn start(&mut self, now_ms: u64, sink: &mut impl NodeSink) {
        self.now_ms = now_ms;
        self.next_heartbeat_ms = now_ms;
        self.next_members_check_ms = now_ms + self.dead_after_ms / 2;
        self.broadcast(wire::kind::HELLO, &self.fingerprint.to_le_bytes(), sink);
        let members: Vec<(Slot, u64)> = self.members.clone();
        for (slot, epoch) in members {
            if slot != self.slot {
                self.add_peer(slot, epoch);
                self.request_state(slot, true, sink);
            }
        }
        info!(
            slot = self.slot,
            epoch = self.epoch,
            members = self.startup.len(),
            "cluster: joined; asking the other members for their state"
        );
    }

    /// The backplane connection went down (`false`) or came back (`true`).
    pub fn handle_connection(&mut self, up: bool, now_ms: u64) {
        self.now_ms = now_ms;
        self.connected = up;
        if up {
            self.disconnected_since = None;
            // Nobody could be heard while we were away: everyone gets a fresh grace period.
            for peer in self.peers.values_mut() {
                peer.last_heard_ms = now_ms;
            }
        } else if self.disconnected_since.is_none() {
            self.disconnected_since = Some(now_ms);
        }
    }

    /// The earliest time [`Node::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> u64 {
        let mut at = self.next_heartbeat_ms.min(self.next_members_check_ms);
        if let Some(&(deadline, _)) = self.gather_deadlines.front() {
            at = at.min(deadline);
        }
        if let Some(retry) = self.registry.next_retry() {
            at = at.min(retry);
        }
        at
    }

    /// Heartbeats, dropping silent nodes, reaping, fencing, expired questions, retries.
    pub fn handle_timeout(&mut self, now_ms: u64, sink: &mut impl NodeSink) {
        self.now_ms = now_ms;
        if self.fenced {
            return;
        }
        if let Some(since) = self.disconnected_since {
            if now_ms.saturating_sub(since) >= self.dead_after_ms {
                let reason = format!(
                    "lost the backplane for {} ms (cluster.dead_after_ms)",
                    now_ms - since
                );
                return self.fence(&reason, sink);
            }
        }
        if now_ms >= self.next_heartbeat_ms {
            self.next_heartbeat_ms = now_ms + self.heartbeat_ms;
            if self.connected {
                self.heartbeat(sink);
            }
        }
        if self.connected {
            let silent: Vec<(Slot, u64)> = (self.peers.iter())
                .filter(|(_, p)| now_ms.saturating_sub(p.last_heard_ms) >= self.dead_after_ms)
                .map(|(&slot, p)| (slot, p.epoch))
                .collect();
            for (slot, epoch) in silent {
                warn!(
                    slot,
                    epoch,
                    dead_after_ms = self.dead_after_ms,
                    "cluster: node not heard from; dropping it"
                );
                self.drop_peer(slot, true, sink);
            }
        }
        if now_ms >= self.next_members_check_ms {
            self.next_members_check_ms = now_ms + self.dead_after_ms / 2;
            self.check_members(sink);
        }
        self.expire_gathers(sink);
        self.retry_registry(sink);
        self.gone
            .retain(|_, &mut when| now_ms.saturating_sub(when) < 3_600_000);
    }

    /// This node leaves on purpose (shutdown): every node forgets it at once, and it leaves the members record.
    pub fn handle_shutdown(&mut self, sink: &mut impl NodeSink) {
        self.broadcast(wire::kind::GOODBYE, &[], sink);
        self.leaving = true;
        self.members_op = None;
        self.check_members(sink);
    }

    fn fence(&mut self, reason: &str, sink: &mut impl NodeSink) {
        if self.fenced {
            return;
        }
        self.fenced = true;
        warn!(reason, "cluster: this node is fenced");
        sink.fenced(reason);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Sending

    fn kv_id(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// Sends a sequenced node message to every node.
    fn broadcast(&mut self, kind: u8, body: &[u8], sink: &mut impl NodeSink) {
        self.bseq_out += 1;
        let header = wire::header(kind, true, self.slot, self.epoch, self.bseq_out);
        self.stats.messages_sent += self.peers.len() as u64;
        sink.node(None, false, &[&header, body]);
    }

    /// Sends a sequenced node message to node `to` (if it is known).
    fn direct(&mut self, to: Slot, kind: u8, parts: &[&[u8]], sink: &mut impl NodeSink) {
        let Some(peer) = self.peers.get_mut(&to) else {
            return;
        };
        peer.dseq_out += 1;
        let header = wire::header(kind, false, self.slot, self.epoch, peer.dseq_out);
        self.stats.messages_sent += 1;
        match parts {
            [a] => sink.node(Some(to), false, &[&header, a]),
            [a, b] => sink.node(Some(to), false, &[&header, a, b]),
            _ => {
                let mut all: Vec<&[u8]> = vec![&header];
                all.extend_from_slice(parts);
                sink.node(Some(to), false, &all);
            }
        }
    }

    /// A link message to every node (sequenced).
    fn broadcast_link(&mut self, msg: &PeerMessage<'_>, sink: &mut impl NodeSink) {
        let mut body = std::mem::take(&mut self.buf);
        body.clear();
        body.extend_from_slice(&0u16.to_le_bytes());
        link::encode(msg, &mut body);
        self.broadcast(wire::kind::LINK, &body, sink);
        self.buf = body;
    }

    /// A link message to node `to` (sequenced), for its shard `shard` where that matters (calls).
    fn direct_link(
        &mut self,
        to: Slot,
        shard: ShardId,
        msg: &PeerMessage<'_>,
        sink: &mut impl NodeSink,
    ) {
        let mut body = std::mem::take(&mut self.buf);
        body.clear();
        body.extend_from_slice(&shard.to_le_bytes());
        link::encode(msg, &mut body);
        self.direct(to, wire::kind::LINK, &[&body], sink);
        self.buf = body;
    }

    /// Waits for acknowledgments from `nodes` (none: done at once).
    fn wait_nodes(&mut self, nodes: Vec<Slot>, then: Then, sink: &mut impl NodeSink) -> u64 {
        let token = self.token();
        if nodes.is_empty() {
            self.finish(then, sink);
        } else {
            self.waits.insert(
                token,
                Wait {
                    nodes,
                    shards: 0,
                    then,
                },
            );
        }
        token
    }

    /// Waits for `count` acknowledgments from local shards (0: done at once).
    fn wait_shards(&mut self, count: usize, then: Then, sink: &mut impl NodeSink) -> u64 {
        let token = self.token();
        if count == 0 {
            self.finish(then, sink);
        } else {
            self.waits.insert(
                token,
                Wait {
                    nodes: Vec::new(),
                    shards: count,
                    then,
                },
            );
        }
        token
    }

    fn finish(&mut self, then: Then, sink: &mut impl NodeSink) {
        match then {
            Then::AckShard { shard, token } => {
                sink.shards(ShardSet::one(shard), &PeerMessage::Ack { token })
            }
            Then::AckNode { slot, token } => {
                self.direct_link(slot, 0, &PeerMessage::Ack { token }, sink)
            }
        }
    }

    /// An acknowledgment for `token` from node `from` (`Some`) or from a local shard.
    fn on_ack(&mut self, token: u64, from: Option<Slot>, sink: &mut impl NodeSink) {
        let Some(wait) = self.waits.get_mut(&token) else {
            return;
        };
        match from {
            Some(slot) => wait.nodes.retain(|&s| s != slot),
            None => wait.shards = wait.shards.saturating_sub(1),
        }
        if wait.nodes.is_empty() && wait.shards == 0 {
            if let Some(wait) = self.waits.remove(&token) {
                self.finish(wait.then, sink);
            }
        }
    }

    /// Node `from` has this node's state: every wait for it older than that state is over.
    fn on_state_ack(&mut self, from: Slot, sink: &mut impl NodeSink) {
        let Some(mark) = self.peers.get(&from).map(|p| p.state_mark) else {
            return;
        };
        let tokens: Vec<u64> = (self.waits.iter())
            .filter(|(&token, wait)| token < mark && wait.nodes.contains(&from))
            .map(|(&token, _)| token)
            .collect();
        for token in tokens {
            self.on_ack(token, Some(from), sink);
        }
    }

    /// The nodes a broadcast now reaches (and whose acknowledgments it may wait for).
    fn live_peers(&self) -> Vec<Slot> {
        self.peers.keys().copied().collect()
    }

    // ---------------------------------------------------------------------------------------------------------
    // From local shards

    /// A link message from local shard `from`.
    pub fn handle_shard(
        &mut self,
        from: ShardId,
        msg: &PeerMessage<'_>,
        raw: &[u8],
        now_ms: u64,
        sink: &mut impl NodeSink,
    ) {
        self.now_ms = now_ms;
        match *msg {
            PeerMessage::SessionJoined {
                realm,
                who,
                authmethod,
                ..
            } => {
                self.sessions.insert(
                    who.id,
                    SessionRecord {
                        slot: self.slot,
                        realm,
                        authid: who.authid.into(),
                        authrole: who.authrole.into(),
                        authmethod: authmethod.into(),
                        testaments: Box::default(),
                        generation: 0,
                    },
                );
                self.broadcast_raw_link(raw, sink);
            }
            PeerMessage::SessionLeft { session, .. } => {
                self.sessions.remove(&session);
                self.broadcast_raw_link(raw, sink);
            }
            PeerMessage::Testaments { session, items, .. } => {
                if let Some(record) = self.sessions.get_mut(&session) {
                    record.testaments = items.into();
                    self.broadcast_raw_link(raw, sink);
                }
            }
            PeerMessage::Subscribed {
                realm,
                policy,
                topic,
                session,
                ack,
            } => self.on_local_subscribed(from, (realm, policy, topic), session, ack, sink),
            PeerMessage::Unsubscribed {
                realm,
                policy,
                topic,
                session,
            } => self.on_local_unsubscribed(from, (realm, policy, topic), session, sink),
            PeerMessage::Publish { realm, retain, .. } => {
                self.on_local_publish(realm, msg, raw, retain, sink)
            }
            PeerMessage::Ack { token } => self.on_ack(token, None, sink),
            PeerMessage::Register {
                realm,
                policy,
                procedure,
                invoke,
                callee,
                token,
            } => self.on_register(
                from,
                (realm, policy, procedure),
                invoke,
                callee,
                token,
                sink,
            ),
            PeerMessage::Unregister {
                realm,
                registration,
                session,
            } => self.on_unregister(from, realm, registration, session, sink),
            PeerMessage::Call { .. }
            | PeerMessage::CallChunk { .. }
            | PeerMessage::Cancel { .. }
            | PeerMessage::CallerGone { .. } => self.on_local_call_message(from, msg, sink),
            PeerMessage::ToCaller { .. } => self.on_local_to_caller(msg, sink),
            PeerMessage::SessionQuery {
                token,
                realm,
                query,
            } => self.on_local_query(from, token, realm, query, sink),
            PeerMessage::SessionAnswer {
                token,
                answer,
                partial,
            } => self.on_shard_answer(token, answer, partial, sink),
            // Only owners send these, and the backplane is the owner in a cluster; a kill by handle is for
            // sessions of the same node.
            PeerMessage::RegisterRefused { .. }
            | PeerMessage::RegistrationAdded { .. }
            | PeerMessage::RegistrationRemoved { .. }
            | PeerMessage::Kill { .. } => {
                debug!(from, "cluster: unexpected message from a shard");
            }
        }
    }

    /// A link message from a local shard, as it is, to every node.
    fn broadcast_raw_link(&mut self, raw: &[u8], sink: &mut impl NodeSink) {
        let mut body = std::mem::take(&mut self.buf);
        body.clear();
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(raw);
        self.broadcast(wire::kind::LINK, &body, sink);
        self.buf = body;
    }

    // ---------------------------------------------------------------------------------------------------------
    // From other nodes

    /// A node message from the backplane (any bytes: nothing in it is trusted).
    pub fn handle_remote(&mut self, bytes: &[u8], now_ms: u64, sink: &mut impl NodeSink) {
        self.now_ms = now_ms;
        if self.fenced {
            return;
        }
        self.stats.messages_received += 1;
        let Some(env) = wire::envelope(bytes) else {
            self.stats.messages_dropped += 1;
            return;
        };
        if env.from == self.slot {
            if env.epoch != self.epoch {
                // Another incarnation of this slot: this node was replaced.
                self.fence("another node holds this node's slot", sink);
            }
            return;
        }
        if self.gone.contains_key(&(env.from, env.epoch)) {
            self.stats.messages_dropped += 1;
            if env.kind == wire::kind::HEARTBEAT || env.kind == wire::kind::HELLO {
                // A node we dropped is still talking: if it is still a member, it comes back.
                self.check_members(sink);
            }
            return;
        }
        if !self.accept(&env, sink) {
            self.stats.messages_dropped += 1;
            return;
        }
        match env.kind {
            wire::kind::HELLO | wire::kind::HEARTBEAT => self.on_heartbeat(&env, sink),
            wire::kind::STATE_REQUEST => {
                let fresh = env.body.first().is_some_and(|&b| b != 0);
                self.send_state(env.from, fresh, sink);
            }
            wire::kind::STATE_BEGIN => self.on_state_begin(env.from),
            wire::kind::STATE_END => {
                self.on_state_end(env.from, sink);
                self.direct(env.from, wire::kind::STATE_ACK, &[], sink);
            }
            wire::kind::STATE_ACK => self.on_state_ack(env.from, sink),
            wire::kind::LINK => self.on_remote_link(&env, sink),
            wire::kind::RECORD => self.on_remote_record(env.from, env.body, sink),
            wire::kind::CALLS_RESET => self.reset_calls(env.from, false, sink),
            wire::kind::GOODBYE => {
                info!(slot = env.from, "cluster: node left");
                self.drop_peer(env.from, false, sink);
            }
            _ => self.stats.messages_dropped += 1,
        }
    }

    /// Checks the envelope against what is known of its sender: a new node or incarnation is taken in (and asked
    /// for its state), sequence numbers are checked. Returns whether the message is to be handled.
    fn accept(&mut self, env: &wire::Envelope<'_>, sink: &mut impl NodeSink) -> bool {
        let known = self.peers.get(&env.from).map(|p| p.epoch);
        match known {
            Some(epoch) if epoch == env.epoch => {}
            Some(_) => {
                // A new incarnation: the old one is gone (it restarted).
                info!(slot = env.from, "cluster: node restarted");
                self.drop_peer(env.from, true, sink);
                self.add_peer(env.from, env.epoch);
                if env.kind != wire::kind::HELLO {
                    self.request_state(env.from, false, sink);
                }
            }
            None => {
                self.add_peer(env.from, env.epoch);
                if env.kind == wire::kind::HELLO {
                    info!(slot = env.from, "cluster: node joined");
                } else {
                    self.request_state(env.from, !self.ready(), sink);
                }
            }
        }
        let now_ms = self.now_ms;
        let Some(peer) = self.peers.get_mut(&env.from) else {
            return false;
        };
        peer.last_heard_ms = now_ms;
        if env.seq == 0 {
            return true;
        }
        if env.broadcast {
            let gap = peer.bseq_in != 0 && env.seq != peer.bseq_in;
            peer.bseq_in = env.seq + 1;
            if gap {
                self.stats.gaps += 1;
                warn!(
                    slot = env.from,
                    "cluster: lost broadcast messages from a node; asking for its state"
                );
                self.request_state(env.from, false, sink);
            }
        } else {
            let gap = env.seq != peer.dseq_in;
            peer.dseq_in = env.seq + 1;
            if gap {
                self.on_direct_gap(env.from, sink);
            }
        }
        true
    }

    fn on_direct_gap(&mut self, from: Slot, sink: &mut impl NodeSink) {
        self.stats.gaps += 1;
        warn!(
            slot = from,
            "cluster: lost messages from a node; ending the calls between the two"
        );
        self.reset_calls(from, true, sink);
    }

    fn on_remote_link(&mut self, env: &wire::Envelope<'_>, sink: &mut impl NodeSink) {
        let mut cursor = wire::Cursor(env.body);
        let Some(shard) = cursor.u16() else {
            self.stats.messages_dropped += 1;
            return;
        };
        let raw = cursor.rest();
        let msg = match link::decode(raw, false) {
            Ok(msg) => msg,
            Err(e) => {
                self.stats.messages_dropped += 1;
                debug!(from = env.from, error = %e, "cluster: undecodable message");
                return;
            }
        };
        if !self.realm_ok(&msg) {
            self.stats.messages_dropped += 1;
            return;
        }
        let from = env.from;
        match msg {
            PeerMessage::SessionJoined {
                realm,
                who,
                authmethod,
                ..
            } => {
                let generation = self.generation_of(from);
                self.sessions.insert(
                    who.id,
                    SessionRecord {
                        slot: from,
                        realm,
                        authid: who.authid.into(),
                        authrole: who.authrole.into(),
                        authmethod: authmethod.into(),
                        testaments: Box::default(),
                        generation,
                    },
                );
                // The shards count the realm's sessions (sessions_per_realm_max is cluster-wide).
                sink.shards_raw(self.local, raw);
            }
            PeerMessage::SessionLeft { session, .. } => {
                if self.sessions.get(&session).is_some_and(|s| s.slot == from) {
                    self.sessions.remove(&session);
                    sink.shards_raw(self.local, raw);
                }
            }
            PeerMessage::Testaments { session, items, .. } => {
                if let Some(record) = self.sessions.get_mut(&session).filter(|s| s.slot == from) {
                    record.testaments = items.into();
                }
            }
            PeerMessage::Subscribed {
                realm,
                policy,
                topic,
                session,
                ack,
            } => self.on_remote_subscribed(from, (realm, policy, topic), session, ack, sink),
            PeerMessage::Unsubscribed {
                realm,
                policy,
                topic,
                session,
            } => self.on_remote_unsubscribed(from, (realm, policy, topic), session, sink),
            PeerMessage::Publish {
                realm,
                topic,
                retain,
                ..
            } => self.on_remote_publish(realm, topic, retain, raw, sink),
            PeerMessage::Ack { token } => self.on_ack(token, Some(from), sink),
            PeerMessage::Call { .. }
            | PeerMessage::CallChunk { .. }
            | PeerMessage::Cancel { .. }
            | PeerMessage::CallerGone { .. } => {
                self.on_remote_call_message(from, shard, &msg, sink)
            }
            PeerMessage::ToCaller { .. } => self.on_remote_to_caller(from, &msg, sink),
            PeerMessage::SessionQuery {
                token,
                realm,
                query,
            } => self.on_remote_query(from, token, realm, query, sink),
            PeerMessage::SessionAnswer {
                token,
                answer,
                partial,
            } => self.on_node_answer(from, token, answer, partial, sink),
            _ => self.stats.messages_dropped += 1,
        }
    }

    /// Whether a message's realm index is one of ours (nodes with other realms are refused by fingerprint; this
    /// guards the indexes all the same).
    fn realm_ok(&self, msg: &PeerMessage<'_>) -> bool {
        let realm = match *msg {
            PeerMessage::SessionJoined { realm, .. }
            | PeerMessage::SessionLeft { realm, .. }
            | PeerMessage::Subscribed { realm, .. }
            | PeerMessage::Unsubscribed { realm, .. }
            | PeerMessage::Publish { realm, .. }
            | PeerMessage::Call { realm, .. }
            | PeerMessage::SessionQuery { realm, .. }
            | PeerMessage::Testaments { realm, .. } => realm,
            _ => return true,
        };
        usize::from(realm) < self.realms.len()
    }

    /// The generation entries from node `slot` get now (see [`PeerNode::generation`]).
    fn generation_of(&self, slot: Slot) -> u32 {
        self.peers.get(&slot).map_or(0, |p| p.generation)
    }

    // ---------------------------------------------------------------------------------------------------------
    // Publishing on behalf of the cluster (testaments and `on_leave` of a dead node's sessions)

    /// Routes an encoded `Publish` from this backplane: to local shards with a matching subscriber and to the
    /// nodes with one (to all of them when retained).
    fn publish_from_here(
        &mut self,
        realm: u16,
        topic: &str,
        retain: bool,
        raw: &[u8],
        sink: &mut impl NodeSink,
    ) {
        let Some(state) = self.realms.get_mut(usize::from(realm)) else {
            return;
        };
        let mut shards = ShardSet::EMPTY;
        state.local_trie.for_each_match(topic, |_, index| {
            for &(shard, _) in &state.local[index].sessions {
                shards.insert(shard);
            }
        });
        if retain {
            shards = self.local;
            state.retained.keep(topic, raw);
        }
        if !shards.is_empty() {
            sink.shards_raw(shards, raw);
        }
        let nodes = self.interested_nodes(realm, topic, retain);
        self.send_publication(&nodes, raw, sink);
    }

    /// Publishes a meta event with JSON arguments `args` (no publisher).
    fn publish_meta(
        &mut self,
        realm: u16,
        topic: &str,
        args: &[Field<'_>],
        sink: &mut impl NodeSink,
    ) {
        let mut encoded = Vec::new();
        kreisel_codec::encode_field(Serializer::Json, &Field::List(args), &mut encoded);
        let publication = self.ids.random_id();
        let msg = PeerMessage::Publish {
            realm,
            publication,
            topic,
            publisher: None,
            disclose: false,
            retain: false,
            options: None,
            args: Some(RawValue::trusted(Serializer::Json, &encoded)),
            kwargs: None,
        };
        let mut raw = Vec::new();
        link::encode(&msg, &mut raw);
        self.publish_from_here(realm, topic, false, &raw, sink);
    }
}
