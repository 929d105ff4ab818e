//! Calls between nodes. A call is owned by its callee's shard (as between shards); the backplanes relay.
//!
//! On the caller's node, the caller's shard names the call by its relay ID; the backplane gives it a cluster ID
//! (`xid`, never reused by this incarnation) and sends it to the callee's node, which gives it a relay ID of its
//! own towards the callee's shard. Answers travel back through both maps. When a node is dropped, each side ends
//! the calls it relays with it: callers get ERROR `wamp.error.canceled`, callees an INTERRUPT (caller gone).

use std::collections::HashMap;

use super::*;
use crate::router::errors::CANCELED;

/// A call of a local caller to a callee on another node.
#[derive(Debug)]
pub(super) struct CallOut {
    pub shard: ShardId,
    pub relay: u64,
    pub node: Slot,
}

/// A call of a caller on another node to a local callee.
#[derive(Debug)]
pub(super) struct CallIn {
    pub node: Slot,
    pub xid: u64,
    pub shard: ShardId,
}

#[derive(Debug, Default)]
pub(super) struct Calls {
    next_xid: u64,
    pub out: HashMap<u64, CallOut>,
    pub out_by_relay: HashMap<(ShardId, u64), u64>,
    next_relay: u64,
    pub into: HashMap<u64, CallIn>,
    pub into_by_xid: HashMap<(Slot, u64), u64>,
}

impl Node {
    /// A local shard's CALL (or chunk, cancel, caller gone) for a callee on another node.
    pub(super) fn on_local_call_message(
        &mut self,
        from: ShardId,
        msg: &PeerMessage<'_>,
        sink: &mut impl NodeSink,
    ) {
        match *msg {
            PeerMessage::Call { relay, callee, .. } => {
                let Some(target) = self.registry.remote_callee(callee) else {
                    // The callee left between routing and now.
                    let msg = PeerMessage::ToCaller {
                        relay,
                        last: true,
                        progress: false,
                        error: crate::router::errors::NO_SUCH_PROCEDURE,
                        text: "the callee no longer serves this procedure",
                        options: None,
                        args: None,
                        kwargs: None,
                    };
                    return sink.shards(ShardSet::one(from), &msg);
                };
                if !self.peers.contains_key(&target.slot) {
                    let msg = PeerMessage::ToCaller {
                        relay,
                        last: true,
                        progress: false,
                        error: CANCELED,
                        text: "the callee's node left the cluster",
                        options: None,
                        args: None,
                        kwargs: None,
                    };
                    return sink.shards(ShardSet::one(from), &msg);
                }
                self.calls.next_xid += 1;
                let xid = self.calls.next_xid;
                self.calls.out.insert(
                    xid,
                    CallOut {
                        shard: from,
                        relay,
                        node: target.slot,
                    },
                );
                self.calls.out_by_relay.insert((from, relay), xid);
                self.stats.calls_sent += 1;
                let mut forwarded = msg.with_relay(xid);
                if let PeerMessage::Call { callee, .. } = &mut forwarded {
                    *callee = target.handle;
                }
                self.direct_link(target.slot, target.shard, &forwarded, sink);
            }
            PeerMessage::CallChunk { relay, .. } | PeerMessage::Cancel { relay, .. } => {
                if let Some((xid, node)) = self.out_call(from, relay) {
                    self.direct_link(node, 0, &msg.with_relay(xid), sink);
                }
            }
            PeerMessage::CallerGone { relay } => {
                if let Some((xid, node)) = self.out_call(from, relay) {
                    self.calls.out.remove(&xid);
                    self.calls.out_by_relay.remove(&(from, relay));
                    self.direct_link(node, 0, &msg.with_relay(xid), sink);
                }
            }
            _ => {}
        }
    }

    fn out_call(&self, shard: ShardId, relay: u64) -> Option<(u64, Slot)> {
        let xid = *self.calls.out_by_relay.get(&(shard, relay))?;
        self.calls.out.get(&xid).map(|call| (xid, call.node))
    }

    /// A local callee's shard answers a call of a caller on another node.
    pub(super) fn on_local_to_caller(&mut self, msg: &PeerMessage<'_>, sink: &mut impl NodeSink) {
        let PeerMessage::ToCaller { relay, last, .. } = *msg else {
            return;
        };
        let Some(call) = self.calls.into.get(&relay) else {
            self.stats.messages_dropped += 1;
            return;
        };
        let (node, xid) = (call.node, call.xid);
        if last {
            self.calls.into.remove(&relay);
            self.calls.into_by_xid.remove(&(node, xid));
        }
        self.direct_link(node, 0, &msg.with_relay(xid), sink);
    }

    /// A call message from node `from` for a local callee (`shard`: the callee's shard, for a new call).
    pub(super) fn on_remote_call_message(
        &mut self,
        from: Slot,
        shard: ShardId,
        msg: &PeerMessage<'_>,
        sink: &mut impl NodeSink,
    ) {
        match *msg {
            PeerMessage::Call { relay: xid, .. } => {
                if usize::from(shard) >= self.shards
                    || self.calls.into_by_xid.contains_key(&(from, xid))
                {
                    self.stats.messages_dropped += 1;
                    return;
                }
                self.calls.next_relay += 1;
                let relay = self.calls.next_relay;
                self.calls.into.insert(
                    relay,
                    CallIn {
                        node: from,
                        xid,
                        shard,
                    },
                );
                self.calls.into_by_xid.insert((from, xid), relay);
                self.stats.calls_received += 1;
                sink.shards(ShardSet::one(shard), &msg.with_relay(relay));
            }
            PeerMessage::CallChunk { relay: xid, .. } | PeerMessage::Cancel { relay: xid, .. } => {
                if let Some((relay, shard)) = self.in_call(from, xid) {
                    sink.shards(ShardSet::one(shard), &msg.with_relay(relay));
                }
            }
            PeerMessage::CallerGone { relay: xid } => {
                if let Some((relay, shard)) = self.in_call(from, xid) {
                    self.calls.into.remove(&relay);
                    self.calls.into_by_xid.remove(&(from, xid));
                    sink.shards(ShardSet::one(shard), &msg.with_relay(relay));
                }
            }
            _ => {}
        }
    }

    fn in_call(&self, node: Slot, xid: u64) -> Option<(u64, ShardId)> {
        let relay = *self.calls.into_by_xid.get(&(node, xid))?;
        self.calls.into.get(&relay).map(|call| (relay, call.shard))
    }

    /// An answer from node `from` for a local caller.
    pub(super) fn on_remote_to_caller(
        &mut self,
        from: Slot,
        msg: &PeerMessage<'_>,
        sink: &mut impl NodeSink,
    ) {
        let PeerMessage::ToCaller {
            relay: xid, last, ..
        } = *msg
        else {
            return;
        };
        let Some(call) = self.calls.out.get(&xid).filter(|call| call.node == from) else {
            self.stats.messages_dropped += 1;
            return;
        };
        let (shard, relay) = (call.shard, call.relay);
        if last {
            self.calls.out.remove(&xid);
            self.calls.out_by_relay.remove(&(shard, relay));
        }
        sink.shards(ShardSet::one(shard), &msg.with_relay(relay));
    }

    /// Ends every call relayed with node `slot`: local callers get ERROR `wamp.error.canceled`, local callees an
    /// INTERRUPT as if the caller had left. `tell`: also tell that node to do the same (messages were lost).
    pub(super) fn reset_calls(&mut self, slot: Slot, tell: bool, sink: &mut impl NodeSink) {
        self.end_calls_with(slot, "the link to the callee's node lost messages", sink);
        if tell {
            self.direct(slot, wire::kind::CALLS_RESET, &[], sink);
        }
    }

    /// See [`Node::reset_calls`]; `text` says why to callers.
    pub(super) fn end_calls_with(&mut self, slot: Slot, text: &str, sink: &mut impl NodeSink) {
        let outs: Vec<u64> = (self.calls.out.iter())
            .filter(|(_, call)| call.node == slot)
            .map(|(&xid, _)| xid)
            .collect();
        for xid in outs {
            let Some(call) = self.calls.out.remove(&xid) else {
                continue;
            };
            self.calls.out_by_relay.remove(&(call.shard, call.relay));
            self.stats.calls_failed += 1;
            let msg = PeerMessage::ToCaller {
                relay: call.relay,
                last: true,
                progress: false,
                error: CANCELED,
                text,
                options: None,
                args: None,
                kwargs: None,
            };
            sink.shards(ShardSet::one(call.shard), &msg);
        }
        let ins: Vec<u64> = (self.calls.into.iter())
            .filter(|(_, call)| call.node == slot)
            .map(|(&relay, _)| relay)
            .collect();
        for relay in ins {
            let Some(call) = self.calls.into.remove(&relay) else {
                continue;
            };
            self.calls.into_by_xid.remove(&(slot, call.xid));
            self.stats.calls_failed += 1;
            sink.shards(
                ShardSet::one(call.shard),
                &PeerMessage::CallerGone { relay },
            );
        }
    }
}
