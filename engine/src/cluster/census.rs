//! The session meta API across nodes (`wamp.session.count`, `list`, `get`, `kill*`): a shard asks its sibling
//! shards and the backplane; the backplane asks every other node, whose backplane asks its shards, and each
//! answers what it gathered. A node that does not answer within `gather_timeout_ms` is left out and the answer
//! is marked partial (the caller's RESULT carries `x_kreisel_partial`), as between shards.

use super::*;
use crate::link::{SessionAnswer, SessionQuery};

#[derive(Debug)]
enum Reply {
    Shard { shard: ShardId, token: u64 },
    Node { slot: Slot, token: u64 },
}

/// A session question waiting for other nodes (asked by a local shard) or for local shards (asked by a node).
#[derive(Debug)]
pub(super) struct NodeGather {
    reply: Reply,
    nodes: Vec<Slot>,
    shards: usize,
    ids: Vec<u8>,
    details: Option<(Serializer, Vec<u8>)>,
    killed: u64,
    partial: bool,
    /// A `get` or a kill of one session: the first node that has it ends the question.
    one: bool,
    kind: Kind,
}

impl Node {
    pub(super) fn on_local_query(
        &mut self,
        from: ShardId,
        token: u64,
        realm: u16,
        query: SessionQuery<'_>,
        sink: &mut impl NodeSink,
    ) {
        let gather = NodeGather {
            reply: Reply::Shard { shard: from, token },
            nodes: self.live_peers(),
            shards: 0,
            ids: Vec::new(),
            details: None,
            killed: 0,
            partial: false,
            one: is_one(&query),
            kind: kind_of(&query),
        };
        if gather.nodes.is_empty() {
            return self.finish_gather(gather, sink);
        }
        let id = self.token();
        let msg = PeerMessage::SessionQuery {
            token: id,
            realm,
            query,
        };
        self.broadcast_link(&msg, sink);
        self.gather_deadlines
            .push_back((self.now_ms + self.gather_timeout_ms, id));
        self.gathers.insert(id, gather);
    }

    pub(super) fn on_remote_query(
        &mut self,
        from: Slot,
        token: u64,
        realm: u16,
        query: SessionQuery<'_>,
        sink: &mut impl NodeSink,
    ) {
        let gather = NodeGather {
            reply: Reply::Node { slot: from, token },
            nodes: Vec::new(),
            shards: self.shards,
            ids: Vec::new(),
            details: None,
            killed: 0,
            partial: false,
            one: is_one(&query),
            kind: kind_of(&query),
        };
        let id = self.token();
        let msg = PeerMessage::SessionQuery {
            token: id,
            realm,
            query,
        };
        sink.shards(self.local, &msg);
        // The shards answer among themselves within their own timeout; this node answers its asker sooner.
        self.gather_deadlines
            .push_back((self.now_ms + self.gather_timeout_ms * 2 / 3, id));
        self.gathers.insert(id, gather);
    }

    pub(super) fn on_shard_answer(
        &mut self,
        token: u64,
        answer: SessionAnswer<'_>,
        partial: bool,
        sink: &mut impl NodeSink,
    ) {
        let Some(gather) = self.gathers.get_mut(&token) else {
            return;
        };
        gather.shards = gather.shards.saturating_sub(1);
        merge(gather, answer, partial);
        self.maybe_finish(token, sink);
    }

    pub(super) fn on_node_answer(
        &mut self,
        from: Slot,
        token: u64,
        answer: SessionAnswer<'_>,
        partial: bool,
        sink: &mut impl NodeSink,
    ) {
        let Some(gather) = self.gathers.get_mut(&token) else {
            self.stats.messages_dropped += 1;
            return;
        };
        if !gather.nodes.contains(&from) {
            return;
        }
        gather.nodes.retain(|&slot| slot != from);
        merge(gather, answer, partial);
        self.maybe_finish(token, sink);
    }

    /// Node `slot` left: questions waiting for it go on without it (marked partial).
    pub(super) fn forget_node_in_gathers(&mut self, slot: Slot, sink: &mut impl NodeSink) {
        let tokens: Vec<u64> = (self.gathers.iter())
            .filter(|(_, g)| g.nodes.contains(&slot))
            .map(|(&token, _)| token)
            .collect();
        for token in tokens {
            if let Some(gather) = self.gathers.get_mut(&token) {
                gather.nodes.retain(|&s| s != slot);
                gather.partial = true;
            }
            self.maybe_finish(token, sink);
        }
    }

    fn maybe_finish(&mut self, token: u64, sink: &mut impl NodeSink) {
        let done = self.gathers.get(&token).is_some_and(|g| {
            (g.nodes.is_empty() && g.shards == 0)
                || (g.one && (g.details.is_some() || g.killed > 0))
        });
        if done {
            if let Some(gather) = self.gathers.remove(&token) {
                self.finish_gather(gather, sink);
            }
        }
    }

    pub(super) fn expire_gathers(&mut self, sink: &mut impl NodeSink) {
        while let Some(&(deadline, token)) = self.gather_deadlines.front() {
            if deadline > self.now_ms {
                break;
            }
            self.gather_deadlines.pop_front();
            if let Some(mut gather) = self.gathers.remove(&token) {
                warn!(
                    nodes = gather.nodes.len(),
                    shards = gather.shards,
                    "cluster: session meta question not answered by everyone in time"
                );
                gather.partial = true;
                self.finish_gather(gather, sink);
            }
        }
    }

    fn finish_gather(&mut self, gather: NodeGather, sink: &mut impl NodeSink) {
        let found = gather.details.is_some() || (gather.one && gather.killed > 0);
        let partial = gather.partial && !found;
        let answer = match gather.kind {
            Kind::Ids => SessionAnswer::Ids(&gather.ids),
            Kind::Details => SessionAnswer::Details(
                (gather.details.as_ref())
                    .map(|(serializer, bytes)| RawValue::trusted(*serializer, bytes)),
            ),
            Kind::Killed => SessionAnswer::Killed(gather.killed),
        };
        let msg = |token| PeerMessage::SessionAnswer {
            token,
            answer,
            partial,
        };
        match gather.reply {
            Reply::Shard { shard, token } => sink.shards(ShardSet::one(shard), &msg(token)),
            Reply::Node { slot, token } => self.direct_link(slot, 0, &msg(token), sink),
        }
    }
}

/// What a question's answer is.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Ids,
    Details,
    Killed,
}

fn kind_of(query: &SessionQuery<'_>) -> Kind {
    match query {
        SessionQuery::List { .. } => Kind::Ids,
        SessionQuery::Get { .. } => Kind::Details,
        SessionQuery::Kill { .. } => Kind::Killed,
    }
}

fn is_one(query: &SessionQuery<'_>) -> bool {
    matches!(
        query,
        SessionQuery::Get { .. }
            | SessionQuery::Kill {
                by: crate::link::KillBy::Session(_),
                ..
            }
    )
}

fn merge(gather: &mut NodeGather, answer: SessionAnswer<'_>, partial: bool) {
    gather.partial |= partial;
    match answer {
        SessionAnswer::Ids(ids) => gather.ids.extend_from_slice(ids),
        SessionAnswer::Details(Some(details)) => {
            if gather.details.is_none() {
                gather.details = Some((details.serializer(), details.bytes().to_vec()));
            }
        }
        SessionAnswer::Details(None) => {}
        SessionAnswer::Killed(count) => gather.killed += count,
    }
}
