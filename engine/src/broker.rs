//! The broker of one realm: subscriptions and the URI trie that matches publications to them.

use std::collections::HashMap;

use kreisel_codec::Id;
use slab::Slab;

use crate::router::Peer;
use crate::session::SessionHandle;
use crate::uri::{self, MatchPolicy, UriTrie};

/// One subscription: every session subscribed to the same topic with the same match policy shares it (and its
/// ID), so an EVENT is identical for all its subscribers and is encoded once per serializer.
#[derive(Debug)]
pub(crate) struct Subscription {
    pub id: Id,
    pub topic: Box<str>,
    pub policy: MatchPolicy,
    pub subscribers: Vec<Peer>,
    /// When the subscription was created (engine milliseconds; the meta API reports it).
    pub created_ms: u64,
    /// Subscribers that asked for the publisher's identity (SUBSCRIBE `disclose_publisher`); usually empty.
    pub disclosing: Vec<SessionHandle>,
}

#[derive(Debug, Default)]
pub(crate) struct Broker {
    pub subscriptions: Slab<Subscription>,
    pub trie: UriTrie<usize>,
    pub by_id: HashMap<Id, usize>,
    /// Subscriptions that may match a topic under `wamp.` (the router's meta events): while there are none, no meta
    /// event is built at all.
    pub reserved: usize,
}

/// What [`Broker::subscribe`] did.
pub(crate) struct Subscribed {
    pub index: usize,
    pub id: Id,
    /// The session was not subscribed before (false: a repeated SUBSCRIBE, answered with the same ID).
    pub added: bool,
    /// The subscription was created for this SUBSCRIBE.
    pub created: bool,
}

impl Broker {
    /// Subscribes `peer` to (topic, policy), creating the subscription if it does not exist with the ID and
    /// creation time (engine milliseconds) `new_id()` returns.
    /// `held` are the subscriptions the session already has (its own short list: checking it is O(its
    /// subscriptions), where scanning the subscribers would be O(everyone's)).
    pub fn subscribe(
        &mut self,
        topic: &str,
        policy: MatchPolicy,
        peer: Peer,
        disclose_publisher: bool,
        held: &[usize],
        new_id: impl FnOnce() -> (Id, u64),
    ) -> Subscribed {
        let existing = self.trie.get(topic, policy);
        let index = match existing {
            Some(index) => index,
            None => {
                let (id, now_ms) = new_id();
                let index = self.subscriptions.insert(Subscription {
                    id,
                    topic: topic.into(),
                    policy,
                    subscribers: Vec::with_capacity(1),
                    created_ms: now_ms,
                    disclosing: Vec::new(),
                });
                self.trie.insert(topic, policy, index);
                self.by_id.insert(id, index);
                if uri::may_match_reserved(topic, policy) {
                    self.reserved += 1;
                }
                index
            }
        };
        let subscription = &mut self.subscriptions[index];
        let added = !held.contains(&index);
        debug_assert_eq!(
            added,
            !subscription
                .subscribers
                .iter()
                .any(|p| p.session == peer.session)
        );
        if added {
            subscription.subscribers.push(peer);
        }
        // A repeated SUBSCRIBE's options replace the earlier ones.
        let position = subscription
            .disclosing
            .iter()
            .position(|&s| s == peer.session);
        match (disclose_publisher, position) {
            (true, None) => subscription.disclosing.push(peer.session),
            (false, Some(position)) => {
                subscription.disclosing.swap_remove(position);
            }
            _ => {}
        }
        Subscribed {
            index,
            id: subscription.id,
            added,
            created: existing.is_none(),
        }
    }

    /// Removes `session` from subscription `index`. Returns the subscription's ID if the subscription became
    /// empty and was deleted.
    pub fn unsubscribe(&mut self, index: usize, session: SessionHandle) -> Option<Id> {
        let subscription = self.subscriptions.get_mut(index)?;
        let position = subscription
            .subscribers
            .iter()
            .position(|p| p.session == session)?;
        subscription.subscribers.swap_remove(position);
        subscription.disclosing.retain(|&s| s != session);
        if !subscription.subscribers.is_empty() {
            return None;
        }
        let subscription = self.subscriptions.remove(index);
        self.trie.remove(&subscription.topic, subscription.policy);
        self.by_id.remove(&subscription.id);
        if uri::may_match_reserved(&subscription.topic, subscription.policy) {
            self.reserved -= 1;
        }
        Some(subscription.id)
    }
}
