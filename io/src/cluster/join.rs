//! A node's start, before its shards run: connect to NATS, check that a WAMP message of `message_max` fits what
//! the servers accept, make sure the key-value bucket exists, read (or create) the cluster's secret, and take a
//! slot in the members record. Each step waits, bounded by `connect_timeout_ms`; a failure is a clear error and the
//! node does not start.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use kreisel_engine::cluster::{record, KvOp};
use mio::{Events, Poll, Token};
use tracing::{info, warn};

use super::client::{Client, ClientOptions};
use super::kv::{stream_config, Kv, KvAnswer};
use crate::config::Config;

/// The NATS connection's token in the backplane's poll.
pub const NATS: Token = Token(0);
/// Subscription IDs of the backplane's connection.
pub const SID_ALL: u64 = 1;
pub const SID_NODE: u64 = 2;
pub const SID_INBOX: u64 = 3;

/// Bytes a backplane message may add to a WAMP message: its envelope, the link message's own fields (topic,
/// publisher identity, options) and NATS's own headers.
pub fn overhead(config: &Config) -> usize {
    config.limits.uri_max + 4096
}

/// What a node has when it joined.
pub struct Joined {
    pub poll: Poll,
    pub client: Client,
    pub kv: Kv,
    pub slot: u16,
    pub epoch: u64,
    /// The other members when it joined.
    pub others: Vec<(u16, u64)>,
    /// The cluster's secret (IDs and authentication decoys are the same on every node).
    pub secret: [u8; 32],
}

/// Joins the cluster of `config.cluster` (which must be set).
pub fn join(config: &Config) -> anyhow::Result<Joined> {
    let Some(cluster) = &config.cluster else {
        bail!("no [cluster] section");
    };
    let mut random = [0u8; 40];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
        .map_err(|_| anyhow!("the operating system's random number generator failed"))?;
    let epoch = u64::from_le_bytes(random[..8].try_into().unwrap_or_default()) | 1;
    let inbox: String = random[8..24].iter().map(|b| format!("{b:02x}")).collect();
    let name = format!("kreisel-{}-{}", cluster.name, &inbox[..8]);
    let options = ClientOptions::from_config(cluster, name).map_err(anyhow::Error::msg)?;
    let poll = Poll::new()?;
    let mut client = Client::new(options, NATS);
    let timeout = Duration::from_millis(cluster.request_timeout_ms);
    let kv = Kv::new(cluster.bucket(), format!("_INBOX.kr.{inbox}"), timeout);
    client.subscribe(&kv.inbox_subscription(), SID_INBOX);
    let mut joining = Joining {
        poll,
        client,
        kv,
        deadline: Instant::now() + Duration::from_millis(cluster.connect_timeout_ms),
        events: Events::with_capacity(64),
    };
    joining.wait(|j| j.client.is_connected()).map_err(|_| {
        anyhow!(
            "cluster: cannot reach NATS at {} within {} ms ({}); is nats-server running?",
            cluster.nats.join(", "),
            cluster.connect_timeout_ms,
            joining.client.last_error()
        )
    })?;
    // A maximal WAMP message must fit into one NATS message.
    let needed = config.limits.message_max + overhead(config);
    let max_payload = joining.client.max_payload();
    if max_payload < needed {
        bail!(
            "cluster: the NATS servers accept messages of up to {max_payload} bytes (max_payload), but a WAMP \
             message of limits.message_max = {} bytes needs up to {needed} on the backplane: raise max_payload in \
             nats-server.conf (e.g. max_payload: {}) or lower limits.message_max",
            config.limits.message_max,
            needed.next_power_of_two()
        );
    }
    // The bucket.
    let stream = joining.kv.stream().to_owned();
    let body = stream_config(&stream, &cluster.bucket(), cluster.replicas, max_payload);
    // A NATS cluster that just started elects its JetStream leaders first: transient errors are retried.
    let created = loop {
        let answer = joining.api(&format!("STREAM.CREATE.{stream}"), &body)?;
        let transient = match &answer {
            KvAnswer::Failed(_) => true,
            KvAnswer::Api(json) => (json.get("error"))
                .and_then(|e| e.get("description"))
                .and_then(|d| d.as_str())
                .is_some_and(|d| {
                    d.contains("temporarily unavailable") || d.contains("no suitable peers")
                }),
            _ => false,
        };
        if !transient || Instant::now() >= joining.deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    match created {
        KvAnswer::Api(json) => {
            if let Some(error) = json.get("error") {
                let code = error.get("err_code").and_then(|c| c.as_u64()).unwrap_or(0);
                let text = error.get("description").and_then(|d| d.as_str()).unwrap_or("");
                if code == 10058 {
                    // The bucket exists with other settings (another replicas count): it serves all the same.
                    warn!(stream = %stream, error = text, "cluster: the key-value bucket exists with other settings; using it");
                } else if text.contains("replicas") {
                    bail!(
                        "cluster: JetStream cannot keep {} replicas of the bucket ({text}): run a NATS cluster \
                         of at least {} servers, or set cluster.replicas = 1 for a single server",
                        cluster.replicas,
                        cluster.replicas
                    );
                } else {
                    bail!("cluster: cannot create the key-value bucket {stream}: {text} (error {code})");
                }
            }
        }
        KvAnswer::Failed(text) => bail!(
            "cluster: JetStream does not answer ({text}); enable it on the NATS servers (jetstream {{}} in \
             nats-server.conf)"
        ),
        other => bail!("cluster: unexpected answer to the bucket's creation: {other:?}"),
    }
    let secret = joining.secret(&random[24..40])?;
    // A slot in the members record (compare-and-set: two nodes starting at once take different slots).
    for _ in 0..64 {
        let (rev, current) = match joining.kv_op(KvOp::Get {
            key: record::MEMBERS_KEY,
        })? {
            KvAnswer::Value { rev, value } => (rev, value),
            other => bail!("cluster: cannot read the members record: {other:?}"),
        };
        // A write of this node's claim that timed out (a JetStream leader being elected) may have been applied
        // all the same: the record then holds this node's epoch already, and that is its slot.
        let members = (current.as_deref())
            .and_then(record::decode_members)
            .unwrap_or_default();
        if let Some(&(slot, _)) = members.iter().find(|(_, e)| *e == epoch) {
            info!(cluster = %cluster.name, slot, members = members.len() - 1, "cluster: joined");
            return Ok(Joined {
                poll: joining.poll,
                client: joining.client,
                kv: joining.kv,
                slot,
                epoch,
                others: members.into_iter().filter(|(_, e)| *e != epoch).collect(),
                secret,
            });
        }
        let Some(claim) = record::claim_slot(current.as_deref(), epoch) else {
            bail!(
                "cluster: every one of the {} node slots is taken",
                kreisel_engine::cluster::NODE_SLOTS
            );
        };
        let put = KvOp::Put {
            key: record::MEMBERS_KEY,
            value: &claim.value,
            expect: rev,
        };
        match joining.kv_op(put)? {
            KvAnswer::Written { .. } => {
                info!(
                    cluster = %cluster.name,
                    slot = claim.slot,
                    members = claim.others.len(),
                    "cluster: joined"
                );
                return Ok(Joined {
                    poll: joining.poll,
                    client: joining.client,
                    kv: joining.kv,
                    slot: claim.slot,
                    epoch,
                    others: claim.others,
                    secret,
                });
            }
            KvAnswer::Conflict => continue,
            other => bail!("cluster: cannot write the members record: {other:?}"),
        }
    }
    bail!("cluster: the members record changed 64 times while this node tried to join")
}

struct Joining {
    poll: Poll,
    client: Client,
    kv: Kv,
    deadline: Instant,
    events: Events,
}

impl Joining {
    /// Runs the connection until `done` holds or the deadline passes. Replies to requests go to `replies`.
    fn run(
        &mut self,
        replies: &mut Vec<(u64, KvAnswer)>,
        mut done: impl FnMut(&Joining, &[(u64, KvAnswer)]) -> bool,
    ) -> Result<(), ()> {
        loop {
            if done(self, replies) {
                return Ok(());
            }
            let now = Instant::now();
            self.client.flush(self.poll.registry(), now);
            if now >= self.deadline {
                return Err(());
            }
            let mut wake = self.deadline;
            if let Some(at) = self.client.poll_timeout() {
                wake = wake.min(at);
            }
            if let Some(at) = self.kv.next_deadline() {
                wake = wake.min(at);
            }
            let _ = self
                .poll
                .poll(&mut self.events, Some(wake.saturating_duration_since(now)));
            let now = Instant::now();
            let readable = self.events.iter().any(|e| e.token() == NATS);
            let kv = &mut self.kv;
            if readable {
                self.client
                    .handle_event(self.poll.registry(), now, &mut |msg| {
                        if let Some(reply) = kv.on_reply(msg.subject, msg.headers, msg.payload) {
                            replies.push(reply);
                        }
                    });
                replies.extend(self.kv.send_steps(&mut self.client, now));
            }
            self.client.handle_timeout(self.poll.registry(), now);
            self.client.flush(self.poll.registry(), now);
            for id in self.kv.expire(now) {
                replies.push((id, KvAnswer::Failed("no answer in time".into())));
            }
            self.client.take_events();
        }
    }

    fn wait(&mut self, done: impl Fn(&Joining) -> bool) -> Result<(), ()> {
        let mut replies = Vec::new();
        self.run(&mut replies, |j, _| done(j))
    }

    fn answer(&mut self, id: u64) -> anyhow::Result<KvAnswer> {
        let mut replies = Vec::new();
        self.run(&mut replies, |_, replies| {
            replies.iter().any(|(r, _)| *r == id)
        })
        .map_err(|_| {
            anyhow!(
                "cluster: NATS did not answer in time ({})",
                self.client.last_error()
            )
        })?;
        replies
            .into_iter()
            .find(|(r, _)| *r == id)
            .map(|(_, answer)| answer)
            .ok_or_else(|| anyhow!("cluster: no answer"))
    }

    fn api(&mut self, what: &str, body: &str) -> anyhow::Result<KvAnswer> {
        let now = Instant::now();
        if !self.kv.api(&mut self.client, 1, what, body, now) {
            bail!("cluster: lost the connection to NATS while joining");
        }
        self.answer(1)
    }

    /// A store operation; a failure (a stream leader being elected) is retried until the deadline.
    fn kv_op(&mut self, op: KvOp<'_>) -> anyhow::Result<KvAnswer> {
        loop {
            let now = Instant::now();
            let answer = match self.kv.request(&mut self.client, 2, op, now) {
                Some(failed) => failed,
                None => self.answer(2)?,
            };
            if !matches!(answer, KvAnswer::Failed(_)) || Instant::now() >= self.deadline {
                return Ok(answer);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The cluster's secret: read, or (the first node) written.
    fn secret(&mut self, fresh: &[u8]) -> anyhow::Result<[u8; 32]> {
        for _ in 0..8 {
            match self.kv_op(KvOp::Get {
                key: record::SECRET_KEY,
            })? {
                KvAnswer::Value {
                    value: Some(value), ..
                } => {
                    let mut secret = [0u8; 32];
                    if value.len() != 32 {
                        bail!("cluster: the bucket's secret is not 32 bytes; was the bucket made by something else?");
                    }
                    secret.copy_from_slice(&value);
                    return Ok(secret);
                }
                KvAnswer::Value { rev, value: None } => {
                    let mut value = [0u8; 32];
                    let digest = ring::digest::digest(&ring::digest::SHA256, fresh);
                    value.copy_from_slice(digest.as_ref());
                    let put = KvOp::Put {
                        key: record::SECRET_KEY,
                        value: &value,
                        expect: rev,
                    };
                    match self.kv_op(put)? {
                        KvAnswer::Written { .. } => return Ok(value),
                        KvAnswer::Conflict => continue,
                        other => bail!("cluster: cannot write the cluster's secret: {other:?}"),
                    }
                }
                other => bail!("cluster: cannot read the cluster's secret: {other:?}"),
            }
        }
        bail!("cluster: the cluster's secret keeps changing")
    }
}
