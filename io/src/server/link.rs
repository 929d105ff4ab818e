//! The mailboxes between the shards of one process.
//!
//! Each shard has one bounded inbox (a `std::sync::mpsc::sync_channel`: a preallocated ring, no allocation per
//! message) that every other shard sends to, and a [`Doorbell`] (a mio `Waker` behind a flag, so a busy
//! receiver is not woken once per message: one `eventfd` write per destination and loop turn at most). What one
//! shard sends to another arrives in the order it was sent.
//!
//! The engine's peer messages travel encoded ([`kreisel_engine::link::encode`]) in shared, pooled buffers: a
//! message for three shards is encoded once, and a buffer goes back to its sender's pool when the last receiver
//! is done with it, so the steady state allocates nothing.
//!
//! A shard never blocks on another. When a destination's inbox is full, envelopes wait in the sender's backlog
//! (in order, ahead of anything sent later) and the sender stops reading from its connections until the backlog
//! has drained: the backlog grows by at most what one read of one connection produces.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use kreisel_engine::link::{ShardId, ShardSet};

use super::scrape::Snapshot;
use crate::config::Config;
use crate::conn::Stream;

/// Envelopes a shard's inbox holds.
pub(super) const INBOX_CAPACITY: usize = 8192;
/// Envelopes a shard takes from its inbox in one loop turn at most (connections get their turn in between).
pub(super) const INBOX_BATCH: usize = 4096;
/// Buffers a shard keeps for its peer messages, the largest it keeps (a bigger one is freed after use), and the
/// capacity they may hold together.
const POOL_MAX: usize = 1024;
const POOL_BUFFER_MAX: usize = 64 << 10;
const POOL_BYTES_MAX: usize = 4 << 20;
/// Bytes of peer messages one shard may have sent and not yet seen handled (a message for several shards counts
/// once per destination): past it, the shard stops reading from its connections until receivers catch up. The
/// mailboxes bound messages by count; this bounds them by size (a few large publications must not pile up
/// gigabytes).
pub(super) const IN_FLIGHT_MAX: usize = 4 << 20;

/// What one shard sends another.
pub(super) enum Envelope {
    /// An engine message for [`kreisel_engine::Router::handle_peer`].
    Peer { from: ShardId, frame: Arc<Vec<u8>> },
    /// An accepted connection, for the receiver to serve from now on.
    Conn(Box<Handoff>),
    /// A reloaded configuration (SIGHUP on shard 0) to apply.
    Reload(Arc<Config>),
    /// A metrics scrape on shard `from` asks for this shard's figures.
    Scrape { from: ShardId, token: u64 },
    /// The answer.
    Scraped { token: u64, snapshot: Box<Snapshot> },
}

/// An accepted connection on its way to the shard that will serve it.
pub(super) struct Handoff {
    pub stream: Stream,
    pub listener: usize,
    pub peer: crate::conn::PeerAddr,
    /// Its IP address is counted in `Shared::per_ip` (with `limits.connections_per_ip_max`).
    pub ip_counted: bool,
}

/// Wakes a shard's loop; rings at most once until the shard answers.
pub(super) struct Doorbell {
    waker: mio::Waker,
    rung: AtomicBool,
}

impl Doorbell {
    pub fn new(registry: &mio::Registry, token: mio::Token) -> std::io::Result<Doorbell> {
        Ok(Doorbell {
            waker: mio::Waker::new(registry, token)?,
            rung: AtomicBool::new(false),
        })
    }

    pub fn ring(&self) {
        if !self.rung.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }

    /// The shard is about to look at its inbox and flags: later news rings again.
    pub fn answer(&self) {
        self.rung.store(false, Ordering::SeqCst);
    }
}

/// One shard's end of the mesh.
pub(super) struct Link {
    shard: ShardId,
    inbox: Receiver<Envelope>,
    outlets: Vec<Outlet>,
    /// Buffers of peer messages sent, oldest first: reused once every receiver dropped its reference.
    pool: VecDeque<Arc<Vec<u8>>>,
    /// Their capacity together (bounded by [`POOL_BYTES_MAX`]).
    pool_bytes: usize,
    /// Destinations sent to since the last [`Link::flush`] (to ring then).
    to_ring: ShardSet,
    /// Envelopes waiting in the outlets' backlogs.
    backlog: usize,
    /// Envelopes that found a full inbox.
    pub mailbox_full: u64,
    /// Per sending shard: bytes of peer messages sent and not yet handled ([`IN_FLIGHT_MAX`]).
    in_flight: Arc<[AtomicUsize]>,
}

struct Outlet {
    tx: SyncSender<Envelope>,
    backlog: VecDeque<Envelope>,
}

impl Link {
    /// The links of `shards` shards, each able to send to every other.
    pub fn mesh(shards: usize) -> Vec<Link> {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..shards).map(|_| sync_channel(INBOX_CAPACITY)).unzip();
        let in_flight: Arc<[AtomicUsize]> = (0..shards).map(|_| AtomicUsize::new(0)).collect();
        receivers
            .into_iter()
            .enumerate()
            .map(|(shard, inbox)| Link {
                shard: shard as ShardId,
                inbox,
                outlets: senders
                    .iter()
                    .map(|tx| Outlet {
                        tx: tx.clone(),
                        backlog: VecDeque::new(),
                    })
                    .collect(),
                pool: VecDeque::new(),
                pool_bytes: 0,
                to_ring: ShardSet::EMPTY,
                backlog: 0,
                mailbox_full: 0,
                in_flight: in_flight.clone(),
            })
            .collect()
    }

    /// Sends a peer message to every shard in `to`; `write` encodes it (once, into a pooled buffer).
    pub fn send_peer(&mut self, to: ShardSet, write: impl FnOnce(&mut Vec<u8>)) {
        let mut frame = self.take_buffer();
        match Arc::get_mut(&mut frame) {
            Some(buffer) => write(buffer),
            None => {
                let mut buffer = Vec::new();
                write(&mut buffer);
                frame = Arc::new(buffer);
            }
        }
        self.in_flight[usize::from(self.shard)]
            .fetch_add(frame.len() * to.len(), Ordering::Relaxed);
        for shard in to.iter() {
            let envelope = Envelope::Peer {
                from: self.shard,
                frame: frame.clone(),
            };
            // A peer message for a shard that has ended (shutdown) has nobody to reach.
            if let Err(envelope) = self.post(shard, envelope) {
                self.forget(envelope);
            }
        }
        let capacity = frame.capacity();
        if self.pool.len() < POOL_MAX
            && capacity <= POOL_BUFFER_MAX
            && self.pool_bytes + capacity <= POOL_BYTES_MAX
        {
            self.pool_bytes += capacity;
            self.pool.push_back(frame);
        }
    }

    /// An empty buffer: the oldest pooled one if every receiver is done with it, else a new one.
    fn take_buffer(&mut self) -> Arc<Vec<u8>> {
        let reusable = self
            .pool
            .front_mut()
            .is_some_and(|front| Arc::get_mut(front).is_some());
        if reusable {
            if let Some(mut frame) = self.pool.pop_front() {
                self.pool_bytes -= frame.capacity();
                if let Some(buffer) = Arc::get_mut(&mut frame) {
                    buffer.clear();
                }
                return frame;
            }
        }
        Arc::new(Vec::with_capacity(256))
    }

    /// Sends `envelope` to shard `to`, behind whatever waits for it already. Returns the envelope when that shard
    /// has ended.
    pub fn post(&mut self, to: ShardId, envelope: Envelope) -> Result<(), Envelope> {
        let Some(outlet) = self.outlets.get_mut(usize::from(to)) else {
            return Err(envelope);
        };
        self.to_ring.insert(to);
        if !outlet.backlog.is_empty() {
            outlet.backlog.push_back(envelope);
            self.backlog += 1;
            return Ok(());
        }
        match outlet.tx.try_send(envelope) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(envelope)) => {
                self.mailbox_full += 1;
                outlet.backlog.push_back(envelope);
                self.backlog += 1;
                Ok(())
            }
            Err(TrySendError::Disconnected(envelope)) => Err(envelope),
        }
    }

    /// A peer message from this shard that will never be handled: no longer in flight.
    fn forget(&self, envelope: Envelope) {
        if let Envelope::Peer { frame, .. } = envelope {
            self.in_flight[usize::from(self.shard)].fetch_sub(frame.len(), Ordering::Relaxed);
        }
    }

    /// A peer message from shard `from`, of `len` bytes, was handled here.
    pub fn handled(&self, from: ShardId, len: usize) {
        if let Some(counter) = self.in_flight.get(usize::from(from)) {
            counter.fetch_sub(len, Ordering::Relaxed);
        }
    }

    /// Bytes of this shard's peer messages not handled yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight[usize::from(self.shard)].load(Ordering::Relaxed)
    }

    /// Moves what the backlogs hold into inboxes with room, and rings every shard sent to since the last call.
    pub fn flush(&mut self, doorbells: &[Doorbell]) {
        if self.backlog > 0 {
            let mut gone = Vec::new();
            for outlet in &mut self.outlets {
                while let Some(envelope) = outlet.backlog.pop_front() {
                    match outlet.tx.try_send(envelope) {
                        Ok(()) => self.backlog -= 1,
                        Err(TrySendError::Full(envelope)) => {
                            outlet.backlog.push_front(envelope);
                            break;
                        }
                        Err(TrySendError::Disconnected(envelope)) => {
                            self.backlog -= outlet.backlog.len() + 1;
                            gone.push(envelope);
                            gone.extend(outlet.backlog.drain(..));
                        }
                    }
                }
            }
            for envelope in gone {
                self.forget(envelope);
            }
        }
        for shard in self.to_ring.iter() {
            if let Some(doorbell) = doorbells.get(usize::from(shard)) {
                doorbell.ring();
            }
        }
        self.to_ring = ShardSet::EMPTY;
    }

    /// Whether envelopes wait for a full inbox, or too many bytes of peer messages are not handled yet (the
    /// shard then stops reading from its connections).
    pub fn congested(&self) -> bool {
        self.backlog > 0 || self.in_flight() > IN_FLIGHT_MAX
    }

    /// Envelopes waiting in the backlogs.
    pub fn backlog(&self) -> usize {
        self.backlog
    }

    /// The next envelope in this shard's inbox, if any.
    pub fn receive(&mut self) -> Option<Envelope> {
        self.inbox.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer_bytes(envelope: Envelope) -> (ShardId, Vec<u8>) {
        match envelope {
            Envelope::Peer { from, frame } => (from, frame.to_vec()),
            _ => panic!("not a peer message"),
        }
    }

    #[test]
    fn a_message_for_several_shards_is_encoded_once_and_its_buffer_comes_back() {
        let mut links = Link::mesh(3);
        let to = {
            let mut set = ShardSet::EMPTY;
            set.insert(1);
            set.insert(2);
            set
        };
        let mut encodings = 0;
        links[0].send_peer(to, |buf| {
            encodings += 1;
            buf.extend_from_slice(b"abc");
        });
        assert_eq!(encodings, 1);
        let at_1 = links[1].receive().expect("delivered to 1");
        let at_2 = links[2].receive().expect("delivered to 2");
        let pointer = match (&at_1, &at_2) {
            (Envelope::Peer { frame: a, .. }, Envelope::Peer { frame: b, .. }) => {
                assert!(Arc::ptr_eq(a, b), "one shared buffer");
                Arc::as_ptr(a)
            }
            _ => panic!("peer messages"),
        };
        assert_eq!(peer_bytes(at_1), (0, b"abc".to_vec()));
        assert_eq!(peer_bytes(at_2), (0, b"abc".to_vec()));
        // Both receivers are done: the next message reuses the buffer.
        links[0].send_peer(ShardSet::one(1), |buf| buf.extend_from_slice(b"d"));
        match links[1].receive() {
            Some(Envelope::Peer { frame, .. }) => {
                assert_eq!(Arc::as_ptr(&frame), pointer);
                assert_eq!(frame.as_slice(), b"d");
            }
            _ => panic!("peer message"),
        }
    }

    #[test]
    fn a_full_inbox_backs_up_in_order_and_drains() {
        let mut links = Link::mesh(2);
        let doorbells: Vec<Doorbell> = Vec::new();
        let total = INBOX_CAPACITY + 10;
        for i in 0..total {
            links[0].send_peer(ShardSet::one(1), |buf| {
                buf.extend_from_slice(&(i as u32).to_be_bytes())
            });
        }
        assert!(links[0].congested());
        assert_eq!(links[0].backlog(), 10);
        assert_eq!(links[0].mailbox_full, 1);
        let mut next = 0u32;
        while next < total as u32 {
            match links[1].receive() {
                Some(envelope) => {
                    let (_, bytes) = peer_bytes(envelope);
                    assert_eq!(bytes, next.to_be_bytes(), "in order");
                    next += 1;
                }
                None => {
                    assert!(links[0].congested());
                    links[0].flush(&doorbells);
                }
            }
        }
        links[0].flush(&doorbells);
        assert!(!links[0].congested());
    }

    #[test]
    fn bytes_in_flight_are_bounded_and_released_when_handled() {
        let mut links = Link::mesh(3);
        let to = {
            let mut set = ShardSet::EMPTY;
            set.insert(1);
            set.insert(2);
            set
        };
        let big = vec![7u8; IN_FLIGHT_MAX / 2];
        links[0].send_peer(to, |buf| buf.extend_from_slice(&big));
        assert_eq!(links[0].in_flight(), IN_FLIGHT_MAX, "once per destination");
        assert!(!links[0].congested());
        links[0].send_peer(ShardSet::one(1), |buf| buf.push(1));
        assert!(links[0].congested(), "past the bound");
        for receiver in [1, 2] {
            while let Some(envelope) = links[receiver].receive() {
                if let Envelope::Peer { from, frame } = envelope {
                    links[receiver].handled(from, frame.len());
                }
            }
        }
        assert_eq!(links[0].in_flight(), 0);
        assert!(!links[0].congested());
    }

    #[test]
    fn an_ended_shard_gives_the_envelope_back() {
        let mut links = Link::mesh(2);
        drop(links.pop());
        let envelope = Envelope::Scrape { from: 0, token: 1 };
        assert!(links[0].post(1, envelope).is_err());
    }
}
