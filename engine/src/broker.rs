//! The broker of one realm: subscriptions and the URI trie that matches publications to them.

use std::collections::HashMap;

use kreisel_codec::Id;
use slab::Slab;

use crate::link::{ShardId, ShardSet};
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
    /// Per subscriber (same positions as `subscribers`): [`SubscriberFlags`].
    pub flags: Vec<SubscriberFlags>,
    /// How many subscribers have each flag (so a publication checks the flags only when some are set).
    pub disclosing: usize,
    pub restricted: usize,
    /// Subscribers on other shards: (shard, session ID), and the shards they are on (a publication goes to each
    /// of those once).
    pub remote: Vec<(ShardId, Id)>,
    pub remote_shards: ShardSet,
    /// When the subscription was created (engine milliseconds; the meta API reports it).
    pub created_ms: u64,
}

/// What sets one subscriber of a subscription apart from the others.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SubscriberFlags {
    /// It asked for the publisher's identity (SUBSCRIBE `disclose_publisher`).
    pub disclose_publisher: bool,
    /// Its role may subscribe to only some of the URIs the subscription matches: each publication's topic is
    /// checked for it at delivery.
    pub restricted: bool,
}

impl Subscription {
    fn set_flags(&mut self, position: usize, flags: SubscriberFlags) {
        let old = std::mem::replace(&mut self.flags[position], flags);
        self.disclosing = self.disclosing + usize::from(flags.disclose_publisher)
            - usize::from(old.disclose_publisher);
        self.restricted =
            self.restricted + usize::from(flags.restricted) - usize::from(old.restricted);
    }

    /// The position of `session` among the subscribers.
    pub fn position(&self, session: SessionHandle) -> Option<usize> {
        self.subscribers.iter().position(|p| p.session == session)
    }

    /// Whether nobody subscribes any more, on any shard.
    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty() && self.remote.is_empty()
    }

    /// Replaces the flags of subscriber `session` (a reload reclassifies subscribers).
    pub fn update(&mut self, session: SessionHandle, flags: SubscriberFlags) {
        if let Some(position) = self.position(session) {
            self.set_flags(position, flags);
        }
    }
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
    /// The session is the subscription's first subscriber on this shard (the other shards learn that this shard
    /// wants its publications).
    pub first_here: bool,
}

impl Broker {
    /// Subscribes `peer` to (topic, policy), creating the subscription if it does not exist with the ID and
    /// creation time (engine milliseconds) `new_id()` returns. A repeated SUBSCRIBE replaces the subscriber's
    /// flags.
    /// `held` are the subscriptions the session already has (its own short list: checking it is O(its
    /// subscriptions), where scanning the subscribers would be O(everyone's)).
    pub fn subscribe(
        &mut self,
        (topic, policy): (&str, MatchPolicy),
        peer: Peer,
        flags: SubscriberFlags,
        held: &[u32],
        new_id: impl FnOnce() -> (Id, u64),
    ) -> Subscribed {
        let (index, created) = self.find_or_create(topic, policy, new_id);
        let subscription = &mut self.subscriptions[index];
        let first_here = subscription.subscribers.is_empty();
        let added = !held.contains(&(index as u32));
        debug_assert_eq!(added, subscription.position(peer.session).is_none());
        let position = if added {
            subscription.subscribers.push(peer);
            subscription.flags.push(SubscriberFlags::default());
            subscription.subscribers.len() - 1
        } else {
            subscription.position(peer.session).unwrap_or_default()
        };
        subscription.set_flags(position, flags);
        Subscribed {
            index,
            id: subscription.id,
            added,
            created,
            first_here,
        }
    }

    /// The subscription for (topic, policy), created with the ID and time `new_id()` gives if there is none;
    /// returns its index and whether it was created.
    fn find_or_create(
        &mut self,
        topic: &str,
        policy: MatchPolicy,
        new_id: impl FnOnce() -> (Id, u64),
    ) -> (usize, bool) {
        if let Some(index) = self.trie.get(topic, policy) {
            return (index, false);
        }
        let (id, now_ms) = new_id();
        let index = self.subscriptions.insert(Subscription {
            id,
            topic: topic.into(),
            policy,
            subscribers: Vec::with_capacity(1),
            flags: Vec::with_capacity(1),
            disclosing: 0,
            restricted: 0,
            remote: Vec::new(),
            remote_shards: ShardSet::EMPTY,
            created_ms: now_ms,
        });
        self.trie.insert(topic, policy, index);
        self.by_id.insert(id, index);
        if uri::may_match_reserved(topic, policy) {
            self.reserved += 1;
        }
        (index, true)
    }

    /// A session of another shard subscribed to (topic, policy). Returns the subscription's index and whether it
    /// was created.
    pub fn add_remote(
        &mut self,
        (topic, policy): (&str, MatchPolicy),
        (shard, session): (ShardId, Id),
        new_id: impl FnOnce() -> (Id, u64),
    ) -> (usize, bool) {
        let (index, created) = self.find_or_create(topic, policy, new_id);
        let subscription = &mut self.subscriptions[index];
        if !subscription.remote.contains(&(shard, session)) {
            subscription.remote.push((shard, session));
            subscription.remote_shards.insert(shard);
        }
        (index, created)
    }

    /// A session of another shard left subscription (topic, policy). Returns the subscription's ID if that
    /// deleted it.
    pub fn remove_remote(
        &mut self,
        (topic, policy): (&str, MatchPolicy),
        (shard, session): (ShardId, Id),
    ) -> Option<Id> {
        let index = self.trie.get(topic, policy)?;
        let subscription = &mut self.subscriptions[index];
        let position = (subscription.remote.iter()).position(|&entry| entry == (shard, session))?;
        subscription.remote.swap_remove(position);
        if !subscription.remote.iter().any(|&(s, _)| s == shard) {
            subscription.remote_shards.remove(shard);
        }
        self.delete_if_empty(index)
    }

    /// Deletes subscription `index` if nobody subscribes any more; returns its ID then.
    fn delete_if_empty(&mut self, index: usize) -> Option<Id> {
        if !self.subscriptions[index].is_empty() {
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

    /// Removes `session` from subscription `index`. Returns the subscription's ID if the subscription became
    /// empty and was deleted.
    pub fn unsubscribe(&mut self, index: usize, session: SessionHandle) -> Option<Id> {
        let subscription = self.subscriptions.get_mut(index)?;
        let position = subscription.position(session)?;
        subscription.set_flags(position, SubscriberFlags::default());
        subscription.subscribers.swap_remove(position);
        subscription.flags.swap_remove(position);
        self.delete_if_empty(index)
    }
}
