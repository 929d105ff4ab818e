//! The backplane thread of a cluster node: the engine's [`Node`] between the shards (through one more mailbox of
//! the mesh, as shard number `shards`) and NATS (the client of `crate::cluster`). Its own mio `Poll` waits on the
//! NATS socket, its doorbell and the node's timers; nothing is shared with the shards but the mailboxes.
//!
//! Bounds: the mailboxes to the shards as between shards; while they back up, the backplane stops reading NATS
//! (the server then holds, and past its own limit drops the connection: a reconnection and resynchronisation).
//! Messages to NATS wait in the client's bounded buffer.

use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kreisel_engine::cluster::{KvOp, KvResult, Node, NodeSink, Slot};
use kreisel_engine::link::{PeerMessage, ShardSet};
use mio::{Events, Poll};
use tracing::{error, info, warn};

use super::link::{Envelope, Link, INBOX_BATCH};
use super::Shared;
use crate::cluster::client::{Client, ClientEvent};
use crate::cluster::join::{Joined, NATS, SID_ALL, SID_NODE};
use crate::cluster::kv::{Kv, KvAnswer};
use crate::cluster::metrics::ClusterMetrics;

/// How long a backplane whose mailboxes to the shards are full waits before reading NATS again.
const CONGESTION_RETRY: Duration = Duration::from_millis(1);
/// After the shards ended (shutdown), how long the backplane has to say goodbye.
const GOODBYE_GRACE: Duration = Duration::from_millis(500);

pub(super) struct Backplane {
    poll: Poll,
    client: Client,
    kv: Kv,
    node: Node,
    link: Link,
    shared: Arc<Shared>,
    subject_all: String,
    subject_prefix: String,
    subjects: Vec<String>,
    metrics: Arc<ClusterMetrics>,
    ready: Option<Sender<()>>,
    /// Received node messages of this turn, copied out of the client's buffer (the node may write to the client
    /// while it handles them): their bytes back to back, and (start, end, is a store reply).
    inbound: Vec<u8>,
    inbound_at: Vec<Inbound>,
    fenced: Option<String>,
    /// NATS has data to read that was left for later (the mailboxes were full).
    read_later: bool,
    /// How long joining may wait for the other members' state.
    join_timeout: Duration,
}

impl Backplane {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        joined: Joined,
        node: Node,
        link: Link,
        shared: Arc<Shared>,
        cluster: &crate::cluster::ClusterConfig,
        metrics: Arc<ClusterMetrics>,
        ready: Sender<()>,
    ) -> Backplane {
        let Joined {
            poll,
            mut client,
            kv,
            slot,
            ..
        } = joined;
        let subject_all = cluster.subject_all();
        let mine = cluster.subject_node(slot);
        client.subscribe(&subject_all, SID_ALL);
        client.subscribe(&mine, SID_NODE);
        metrics.slot.store(u64::from(slot), Ordering::Relaxed);
        Backplane {
            poll,
            client,
            kv,
            node,
            link,
            shared,
            subject_all,
            subject_prefix: cluster.subject_node(0).trim_end_matches('0').to_owned(),
            subjects: Vec::new(),
            metrics,
            ready: Some(ready),
            inbound: Vec::new(),
            inbound_at: Vec::new(),
            fenced: None,
            read_later: false,
            join_timeout: Duration::from_millis(cluster.dead_after_ms + 1_000),
        }
    }

    fn now_ms(&self) -> u64 {
        self.shared.start.elapsed().as_millis() as u64
    }

    /// Runs until the shards have ended (shutdown, or fencing). Returns why it was fenced, if it was.
    pub(super) fn run(mut self) -> Option<String> {
        let mut events = Events::with_capacity(256);
        let start_ms = self.now_ms();
        {
            let (mut out, node) = self.split();
            node.start(start_ms, &mut out);
        }
        self.finish_turn();
        let ready_by = Instant::now() + self.join_timeout;
        let mut stopping: Option<Instant> = None;
        loop {
            let timeout = self.timeout();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    error!(error = %e, "cluster: the backplane's poll failed");
                    self.fence_now(&format!("poll failed: {e}"));
                }
            }
            let me = self.shared.shards;
            self.shared.doorbells[me].answer();
            let nats = events.iter().any(|e| e.token() == NATS);
            if nats || self.read_later {
                self.read_nats();
            }
            self.drain_inbox();
            self.timers();
            self.finish_turn();
            if self.ready.is_some() && (self.node.ready() || Instant::now() >= ready_by) {
                if !self.node.ready() {
                    warn!("cluster: not every member sent its state in time; serving all the same");
                }
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(());
                }
            }
            if self.fenced.is_some() && !self.shared.stop.load(Ordering::SeqCst) {
                self.shared.stop.store(true, Ordering::SeqCst);
                self.shared.ring_all();
            }
            if self.shared.stop.load(Ordering::SeqCst) {
                // Stopped before it was ready: the shards start and stop at once.
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(());
                }
                if self.shared.running.load(Ordering::SeqCst) == 0 {
                    match stopping {
                        None => {
                            stopping = Some(Instant::now());
                            if self.fenced.is_none() {
                                let (mut out, node) = self.split();
                                node.handle_shutdown(&mut out);
                                self.finish_turn();
                            }
                        }
                        Some(since)
                            if since.elapsed() >= GOODBYE_GRACE || self.fenced.is_some() =>
                        {
                            self.client.close(self.poll.registry());
                            return self.fenced;
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }

    fn timeout(&self) -> Duration {
        let now = Instant::now();
        let now_ms = self.now_ms();
        let mut wake = now + Duration::from_millis(self.node.poll_timeout().saturating_sub(now_ms));
        if let Some(at) = self.client.poll_timeout() {
            wake = wake.min(at);
        }
        if let Some(at) = self.kv.next_deadline() {
            wake = wake.min(at);
        }
        let mut timeout = wake.saturating_duration_since(now);
        if self.read_later || self.link.congested() {
            timeout = timeout.min(CONGESTION_RETRY);
        }
        if self.shared.stop.load(Ordering::SeqCst) {
            timeout = timeout.min(Duration::from_millis(10));
        }
        timeout
    }

    /// The node and a sink over everything else (split borrows).
    fn split(&mut self) -> (Out<'_>, &mut Node) {
        (
            Out {
                link: &mut self.link,
                client: &mut self.client,
                kv: &mut self.kv,
                subject_all: &self.subject_all,
                subject_prefix: &self.subject_prefix,
                subjects: &mut self.subjects,
                fenced: &mut self.fenced,
                failed: Vec::new(),
            },
            &mut self.node,
        )
    }

    fn read_nats(&mut self) {
        if self.link.congested() {
            self.read_later = true;
            return;
        }
        self.read_later = false;
        let now = Instant::now();
        self.inbound.clear();
        self.inbound_at.clear();
        let (inbound, inbound_at, kv) = (&mut self.inbound, &mut self.inbound_at, &mut self.kv);
        self.client
            .handle_event(self.poll.registry(), now, &mut |msg| {
                if kv.is_reply(msg.subject) {
                    let reply = kv.on_reply(msg.subject, msg.headers, msg.payload);
                    if reply.is_some() {
                        inbound_at.push((0, 0, reply));
                    }
                    return;
                }
                let start = inbound.len();
                inbound.extend_from_slice(msg.payload);
                inbound_at.push((start, inbound.len(), None));
            });
        // Writes go on with their next step (see kv.rs); one that cannot be sent fails.
        for failed in self.kv.send_steps(&mut self.client, now) {
            self.inbound_at.push((0, 0, Some(failed)));
        }
        self.connection_events();
        let now_ms = self.now_ms();
        let messages = std::mem::take(&mut self.inbound_at);
        let bytes = std::mem::take(&mut self.inbound);
        for (start, end, reply) in &messages {
            let (mut out, node) = self.split();
            match reply {
                Some((id, answer)) => node.handle_kv(*id, result(answer), now_ms, &mut out),
                None => node.handle_remote(&bytes[*start..*end], now_ms, &mut out),
            }
            let failed = std::mem::take(&mut out.failed);
            self.fail_kv(failed);
        }
        self.inbound = bytes;
        self.inbound_at = messages;
    }

    /// Connection changes: the node learns them; requests in flight on a broken connection fail.
    fn connection_events(&mut self) {
        for event in self.client.take_events() {
            let now_ms = self.now_ms();
            match event {
                ClientEvent::Connected { .. } => self.node.handle_connection(true, now_ms),
                ClientEvent::Disconnected(_) => {
                    self.node.handle_connection(false, now_ms);
                    let failed = self.kv.fail_all();
                    self.fail_kv(failed);
                }
            }
        }
    }

    fn fail_kv(&mut self, mut failed: Vec<u64>) {
        while let Some(id) = failed.pop() {
            let now_ms = self.now_ms();
            let (mut out, node) = self.split();
            node.handle_kv(id, KvResult::Failed, now_ms, &mut out);
            failed.append(&mut out.failed);
        }
    }

    fn drain_inbox(&mut self) {
        for _ in 0..INBOX_BATCH {
            let Some(envelope) = self.link.receive() else {
                return;
            };
            match envelope {
                Envelope::Peer { from, frame } => {
                    let now_ms = self.now_ms();
                    match kreisel_engine::link::decode(&frame, true) {
                        Ok(msg) => {
                            let (mut out, node) = self.split();
                            node.handle_shard(from, &msg, &frame, now_ms, &mut out);
                            let failed = std::mem::take(&mut out.failed);
                            self.fail_kv(failed);
                        }
                        Err(e) => {
                            warn!(from, error = %e.0, "cluster: undecodable message from a shard")
                        }
                    }
                    self.link.handled(from, frame.len());
                }
                // Shards send the backplane nothing else; a scrape is answered by the metrics they read.
                Envelope::Scrape { .. }
                | Envelope::Scraped { .. }
                | Envelope::Reload(_)
                | Envelope::Conn(_) => {}
            }
        }
    }

    fn timers(&mut self) {
        let now = Instant::now();
        self.client.handle_timeout(self.poll.registry(), now);
        self.connection_events();
        let late = self.kv.expire(now);
        self.fail_kv(late);
        let now_ms = self.now_ms();
        if self.node.poll_timeout() <= now_ms {
            let (mut out, node) = self.split();
            node.handle_timeout(now_ms, &mut out);
            let failed = std::mem::take(&mut out.failed);
            self.fail_kv(failed);
        }
    }

    fn finish_turn(&mut self) {
        self.link.flush(&self.shared.doorbells);
        self.client.flush(self.poll.registry(), Instant::now());
        self.connection_events();
        if self.fenced.is_some() {
            self.metrics.fenced.store(1, Ordering::Relaxed);
        }
        self.metrics.store(
            &self.node.stats(),
            &self.client.stats,
            self.client.is_connected(),
            self.client.pending(),
        );
    }

    fn fence_now(&mut self, reason: &str) {
        if self.fenced.is_none() {
            self.fenced = Some(reason.to_owned());
        }
    }
}

/// One message received this turn: a node message (its bytes in `Backplane::inbound`, start and end), or a
/// store reply (the operation and its answer).
type Inbound = (usize, usize, Option<(u64, KvAnswer)>);

/// What the node asks, carried out.
struct Out<'a> {
    link: &'a mut Link,
    client: &'a mut Client,
    kv: &'a mut Kv,
    subject_all: &'a str,
    subject_prefix: &'a str,
    subjects: &'a mut Vec<String>,
    fenced: &'a mut Option<String>,
    /// Store operations that could not even be sent (no connection): they fail once the node is done.
    failed: Vec<u64>,
}

impl NodeSink for Out<'_> {
    fn shards(&mut self, to: ShardSet, msg: &PeerMessage<'_>) {
        self.link
            .send_peer(to, |buffer| kreisel_engine::link::encode(msg, buffer));
    }

    fn shards_raw(&mut self, to: ShardSet, raw: &[u8]) {
        self.link
            .send_peer(to, |buffer| buffer.extend_from_slice(raw));
    }

    fn node(&mut self, to: Option<Slot>, droppable: bool, parts: &[&[u8]]) {
        let subject = match to {
            None => self.subject_all,
            Some(slot) => {
                let slot = usize::from(slot);
                if self.subjects.len() <= slot {
                    let prefix = self.subject_prefix;
                    let more = self.subjects.len()..=slot;
                    self.subjects.extend(more.map(|s| format!("{prefix}{s}")));
                }
                &self.subjects[slot]
            }
        };
        self.client.publish(subject, None, parts, droppable);
    }

    fn kv(&mut self, id: u64, op: KvOp<'_>) {
        if self
            .kv
            .request(self.client, id, op, Instant::now())
            .is_some()
        {
            self.failed.push(id);
        }
    }

    fn fenced(&mut self, reason: &str) {
        if self.fenced.is_none() {
            error!(
                reason,
                "cluster: fenced; every session ends and the node stops (restart it to rejoin)"
            );
            *self.fenced = Some(reason.to_owned());
        }
    }
}

/// A store answer as the node takes it.
fn result(answer: &KvAnswer) -> KvResult<'_> {
    match answer {
        KvAnswer::Value { rev, value } => KvResult::Value {
            rev: *rev,
            value: value.as_deref(),
        },
        KvAnswer::Written { rev } => KvResult::Written { rev: *rev },
        KvAnswer::Conflict => KvResult::Conflict,
        KvAnswer::Failed(text) => {
            info!(error = %text, "cluster: key-value operation failed");
            KvResult::Failed
        }
        KvAnswer::Api(_) => KvResult::Failed,
    }
}
