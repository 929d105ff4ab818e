//! Event retention: the last event published with `retain: true` on each topic of one realm, delivered to a
//! SUBSCRIBE with `get_retained: true`. Bounded by a count and a byte budget per realm; when either would be
//! exceeded, the events retained longest ago go first.

use std::collections::{BTreeMap, HashMap};

use kreisel_codec::{Id, Value};

use crate::uri::{self, MatchPolicy};

/// One retained event, owned (the publication's frame is long gone when a subscriber asks for it).
#[derive(Debug)]
pub(crate) struct Retained {
    pub publication: Id,
    /// The publisher's identity, and whether the publication disclosed it (a subscriber that asks with
    /// `disclose_publisher` gets it either way, as it would have for the live event).
    pub publisher: (Id, Box<str>, Box<str>),
    pub disclosed: bool,
    /// The publisher's session when `exclude_me` kept the event from it: it is not eligible for it later either.
    pub excluded: Option<Id>,
    /// The publication's black/white lists (a dictionary of the present lists).
    pub filter: Value,
    /// Passthru attributes to repeat in the EVENT details.
    pub passthru: Value,
    pub args: Option<Value>,
    pub kwargs: Option<Value>,
}

#[derive(Debug)]
struct Entry {
    event: Retained,
    /// Retention order (older first), the key in `order`.
    seq: u64,
    bytes: usize,
}

/// The retained events of one realm.
#[derive(Debug)]
pub(crate) struct RetainedEvents {
    events: HashMap<Box<str>, Entry>,
    /// seq → topic, oldest first (for eviction and for a deterministic delivery order).
    order: BTreeMap<u64, Box<str>>,
    next_seq: u64,
    bytes: usize,
    count_max: usize,
    bytes_max: usize,
}

impl RetainedEvents {
    pub fn new(count_max: usize, bytes_max: usize) -> RetainedEvents {
        RetainedEvents {
            events: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            bytes: 0,
            count_max,
            bytes_max,
        }
    }

    /// Makes `event` the retained event of `topic`, replacing the previous one. Evicts the oldest events while a
    /// limit is exceeded. Returns how many other topics' events were evicted, or `None` if the event alone is over
    /// the byte budget (or retention is off) and was not kept.
    pub fn retain(&mut self, topic: &str, event: Retained) -> Option<usize> {
        let bytes = topic.len() + size_of_event(&event);
        self.remove(topic);
        if self.count_max == 0 || bytes > self.bytes_max {
            return None;
        }
        let mut evicted = 0;
        while self.events.len() >= self.count_max || self.bytes + bytes > self.bytes_max {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(entry) = self.events.remove(&oldest) {
                self.bytes -= entry.bytes;
                evicted += 1;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, topic.into());
        self.events
            .insert(topic.into(), Entry { event, seq, bytes });
        self.bytes += bytes;
        Some(evicted)
    }

    /// Forgets the retained event of `topic`, if there is one.
    pub fn clear(&mut self, topic: &str) {
        self.remove(topic);
    }

    fn remove(&mut self, topic: &str) {
        if let Some(entry) = self.events.remove(topic) {
            self.order.remove(&entry.seq);
            self.bytes -= entry.bytes;
        }
    }

    /// The retained events a subscription to (`pattern`, `policy`) matches, oldest first, with their topics.
    pub fn matching(&self, pattern: &str, policy: MatchPolicy) -> Vec<(&str, &Retained)> {
        if policy == MatchPolicy::Exact {
            return self
                .events
                .get_key_value(pattern)
                .map(|(topic, entry)| (&**topic, &entry.event))
                .into_iter()
                .collect();
        }
        self.order
            .values()
            .filter(|topic| uri::matches(pattern, policy, topic))
            .filter_map(|topic| {
                let entry = self.events.get(topic)?;
                Some((&**topic, &entry.event))
            })
            .collect()
    }

    #[allow(dead_code)] // for the meta API (in progress)
    pub fn len(&self) -> usize {
        self.events.len()
    }
}

/// An estimate of the memory an event holds, for the byte budget.
fn size_of_event(event: &Retained) -> usize {
    let (_, authid, authrole) = &event.publisher;
    64 + authid.len()
        + authrole.len()
        + size_of_value(&event.filter)
        + size_of_value(&event.passthru)
        + event.args.as_ref().map_or(0, size_of_value)
        + event.kwargs.as_ref().map_or(0, size_of_value)
}

fn size_of_value(value: &Value) -> usize {
    const SCALAR: usize = std::mem::size_of::<Value>();
    SCALAR
        + match value {
            Value::Str(s) => s.len(),
            Value::Bytes(b) => b.len(),
            Value::List(items) => items.iter().map(size_of_value).sum(),
            Value::Dict(entries) => entries
                .iter()
                .map(|(k, v)| k.len() + size_of_value(v))
                .sum(),
            _ => 0,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64, payload: &str) -> Retained {
        Retained {
            publication: Id::new(n).unwrap(),
            publisher: (Id::FIRST, "a".into(), "r".into()),
            disclosed: false,
            excluded: None,
            filter: Value::dict(),
            passthru: Value::dict(),
            args: Some(Value::List(vec![Value::from(payload)])),
            kwargs: None,
        }
    }

    fn publications(store: &RetainedEvents, pattern: &str, policy: MatchPolicy) -> Vec<u64> {
        store
            .matching(pattern, policy)
            .iter()
            .map(|(_, e)| e.publication.get())
            .collect()
    }

    #[test]
    fn one_event_per_topic_oldest_evicted_first() {
        let mut store = RetainedEvents::new(3, 1 << 20);
        for (n, topic) in [(1, "a.x"), (2, "a.y"), (3, "b.x")] {
            assert_eq!(store.retain(topic, event(n, "")), Some(0));
        }
        assert_eq!(
            store.retain("a.x", event(4, "")),
            Some(0),
            "replaces, evicts nothing"
        );
        assert_eq!(publications(&store, "a.x", MatchPolicy::Exact), [4]);
        assert_eq!(publications(&store, "a.", MatchPolicy::Prefix), [2, 4]);
        assert_eq!(publications(&store, ".x", MatchPolicy::Wildcard), [3, 4]);
        assert_eq!(
            store.retain("c.x", event(5, "")),
            Some(1),
            "a.y was the oldest"
        );
        assert_eq!(
            publications(&store, "a.y", MatchPolicy::Exact),
            Vec::<u64>::new()
        );
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn the_byte_budget_holds() {
        let big = "x".repeat(400);
        let mut store = RetainedEvents::new(100, 1000);
        assert_eq!(store.retain("t.1", event(1, &big)), Some(0));
        assert_eq!(store.retain("t.2", event(2, &big)), Some(1));
        assert_eq!(store.len(), 1);
        assert!(store.bytes <= 1000);
        assert_eq!(
            store.retain("t.3", event(3, &"y".repeat(2000))),
            None,
            "too big alone"
        );
        assert_eq!(store.len(), 1);
        assert_eq!(RetainedEvents::new(0, 1000).retain("t", event(1, "")), None);
    }
}
