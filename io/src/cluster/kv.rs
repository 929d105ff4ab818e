//! The JetStream key-value operations a node needs, as NATS requests (no client library): a bucket is a stream
//! `KV_<bucket>` over subjects `$KV.<bucket>.<key>` keeping the last message per subject; a write is a publish
//! with the header `Nats-Expected-Last-Subject-Sequence` (compare-and-set on the key's revision), a deletion a
//! publish with `KV-Operation: DEL`, a read a `STREAM.MSG.GET` of the subject's last message (answered by the
//! stream's leader, so a read follows every acknowledged write).
//!
//! A compare-and-set on the key's revision alone is not enough on a replicated stream: nats-server 2.9 (Debian's
//! package) checks `Nats-Expected-Last-Subject-Sequence` against what it stored, not against writes still being
//! replicated, so two writes expecting the same revision can both succeed (measured: 12 rounds of 30 with three
//! concurrent writers on an R3 stream). Its stream-wide check, `Nats-Expected-Last-Sequence`, does count writes in
//! flight (0 double winners in the same test). So a write takes three steps: `STREAM.INFO` for the stream's last
//! sequence, the publish with both headers, and when JetStream refuses it, a read of the key: the key still at
//! the expected revision means another key was written meanwhile and the write is tried again (a few times),
//! otherwise it is a conflict.
//!
//! Replies come to this node's inbox, `_INBOX.<random>.<n>`; a request without a reply within the timeout fails.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use kreisel_engine::cluster::KvOp;

use super::client::Client;

/// JetStream's error code for a compare-and-set on a revision that is not the key's.
const WRONG_LAST_SEQUENCE: u64 = 10071;
/// JetStream's error code for a message not found.
const NO_MESSAGE_FOUND: u64 = 10037;

/// A store answer, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvAnswer {
    Value {
        rev: u64,
        value: Option<Vec<u8>>,
    },
    Written {
        rev: u64,
    },
    Conflict,
    Failed(String),
    /// The JSON answer of an API request.
    Api(serde_json::Value),
}

/// A write (a put, or a deletion when `value` is `None`) on its way through its steps.
#[derive(Clone, Debug)]
struct Write {
    key: String,
    value: Option<Vec<u8>>,
    expect: u64,
    attempts: u32,
}

/// Attempts of a write whose stream moved on under it before it is reported as a conflict.
const WRITE_ATTEMPTS: u32 = 8;

#[derive(Clone, Debug)]
enum Kind {
    Get,
    Api,
    /// A write's first step: the stream's last sequence.
    Info(Write),
    /// The publish itself.
    Write(Write),
    /// JetStream refused the publish: is the key still where the write expects it?
    Check(Write),
}

struct Pending {
    deadline: Instant,
    kind: Kind,
    id: u64,
}

/// See the module documentation.
pub struct Kv {
    bucket: String,
    stream: String,
    inbox: String,
    timeout: Duration,
    next: u64,
    pending: HashMap<u64, Pending>,
    /// Next steps of writes, sent by [`Kv::send_steps`] (replies are read while the client is borrowed): reads
    /// (info, check), and publishes with the stream's last sequence.
    steps: Vec<(u64, Kind)>,
    writes: Vec<(u64, Write, u64)>,
}

impl Kv {
    /// `inbox`: this node's reply subject prefix (subscribed to as `<inbox>.*`).
    pub fn new(bucket: String, inbox: String, timeout: Duration) -> Kv {
        Kv {
            stream: format!("KV_{bucket}"),
            bucket,
            inbox,
            timeout,
            next: 0,
            pending: HashMap::new(),
            steps: Vec::new(),
            writes: Vec::new(),
        }
    }

    pub fn inbox_subscription(&self) -> String {
        format!("{}.*", self.inbox)
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    fn reply_to(&mut self, id: u64, kind: Kind, now: Instant) -> String {
        self.next += 1;
        self.pending.insert(
            self.next,
            Pending {
                deadline: now + self.timeout,
                kind,
                id,
            },
        );
        format!("{}.{}", self.inbox, self.next)
    }

    /// Sends `op` (the node's operation `id`). Returns an immediate failure when it cannot be sent.
    pub fn request(
        &mut self,
        client: &mut Client,
        id: u64,
        op: KvOp<'_>,
        now: Instant,
    ) -> Option<KvAnswer> {
        let kind = match op {
            KvOp::Get { key } => {
                let reply = self.reply_to(id, Kind::Get, now);
                let subject = format!("$JS.API.STREAM.MSG.GET.{}", self.stream);
                let body = format!("{{\"last_by_subj\":\"$KV.{}.{key}\"}}", self.bucket);
                if client.publish(&subject, Some(&reply), &[body.as_bytes()], false) {
                    return None;
                }
                self.pending.remove(&self.next);
                return Some(KvAnswer::Failed("no connection to NATS".into()));
            }
            KvOp::Put { key, value, expect } => Kind::Info(Write {
                key: key.to_owned(),
                value: Some(value.to_vec()),
                expect,
                attempts: 0,
            }),
            KvOp::Delete { key, expect } => Kind::Info(Write {
                key: key.to_owned(),
                value: None,
                expect,
                attempts: 0,
            }),
        };
        self.send_step(client, id, kind, now).err()
    }

    /// Sends one step of a write.
    fn send_step(
        &mut self,
        client: &mut Client,
        id: u64,
        kind: Kind,
        now: Instant,
    ) -> Result<(), KvAnswer> {
        let sent = match &kind {
            Kind::Info(_) => {
                let subject = format!("$JS.API.STREAM.INFO.{}", self.stream);
                let reply = self.reply_to(id, kind, now);
                client.publish(&subject, Some(&reply), &[], false)
            }
            Kind::Check(write) => {
                let subject = format!("$JS.API.STREAM.MSG.GET.{}", self.stream);
                let body = format!("{{\"last_by_subj\":\"$KV.{}.{}\"}}", self.bucket, write.key);
                let reply = self.reply_to(id, kind, now);
                client.publish(&subject, Some(&reply), &[body.as_bytes()], false)
            }
            Kind::Write(_) | Kind::Get | Kind::Api => {
                return Err(KvAnswer::Failed("not a write step".into()))
            }
        };
        if sent {
            Ok(())
        } else {
            self.pending.remove(&self.next);
            Err(KvAnswer::Failed("no connection to NATS".into()))
        }
    }

    /// The publish of a write, expecting the stream at `last` and the key at `write.expect`.
    fn send_write(
        &mut self,
        client: &mut Client,
        id: u64,
        write: Write,
        last: u64,
        now: Instant,
    ) -> Result<(), KvAnswer> {
        let subject = format!("$KV.{}.{}", self.bucket, write.key);
        let (expect, last) = (write.expect.to_string(), last.to_string());
        let value = write.value.clone();
        let reply = self.reply_to(id, Kind::Write(write), now);
        let mut headers = vec![
            ("Nats-Expected-Last-Subject-Sequence", expect.as_str()),
            ("Nats-Expected-Last-Sequence", last.as_str()),
        ];
        if value.is_none() {
            headers.insert(0, ("KV-Operation", "DEL"));
        }
        if client.publish_with_headers(
            &subject,
            Some(&reply),
            &headers,
            value.as_deref().unwrap_or(&[]),
        ) {
            Ok(())
        } else {
            self.pending.remove(&self.next);
            Err(KvAnswer::Failed("no connection to NATS".into()))
        }
    }

    /// Sends the next steps of writes whose previous step was answered; returns the answers of those that could
    /// not be sent.
    pub fn send_steps(&mut self, client: &mut Client, now: Instant) -> Vec<(u64, KvAnswer)> {
        let mut failed = Vec::new();
        for (id, step) in std::mem::take(&mut self.steps) {
            if let Err(answer) = self.send_step(client, id, step, now) {
                failed.push((id, answer));
            }
        }
        for (id, write, last) in std::mem::take(&mut self.writes) {
            if let Err(answer) = self.send_write(client, id, write, last, now) {
                failed.push((id, answer));
            }
        }
        failed
    }

    /// A JetStream API request (`$JS.API.<what>`) with a JSON body; the answer comes as [`KvAnswer::Api`].
    pub fn api(
        &mut self,
        client: &mut Client,
        id: u64,
        what: &str,
        body: &str,
        now: Instant,
    ) -> bool {
        let reply = self.reply_to(id, Kind::Api, now);
        let subject = format!("$JS.API.{what}");
        client.publish(&subject, Some(&reply), &[body.as_bytes()], false)
    }

    /// Whether `subject` is a reply to this node.
    pub fn is_reply(&self, subject: &[u8]) -> bool {
        subject.starts_with(self.inbox.as_bytes())
    }

    /// A reply: the operation it answers and the answer.
    pub fn on_reply(
        &mut self,
        subject: &[u8],
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> Option<(u64, KvAnswer)> {
        let token = subject
            .strip_prefix(self.inbox.as_bytes())?
            .strip_prefix(b".")
            .and_then(|n| std::str::from_utf8(n).ok())
            .and_then(|n| n.parse::<u64>().ok())?;
        let pending = self.pending.remove(&token)?;
        if let Some(status) = headers.and_then(kreisel_nats::status) {
            if status == 503 {
                return Some((
                    pending.id,
                    KvAnswer::Failed(
                        "JetStream does not answer (no responders: is it enabled?)".into(),
                    ),
                ));
            }
        }
        let json: serde_json::Value = match serde_json::from_slice(payload) {
            Ok(json) => json,
            Err(e) => {
                return Some((
                    pending.id,
                    KvAnswer::Failed(format!("unreadable answer: {e}")),
                ))
            }
        };
        let id = pending.id;
        let answer = match pending.kind {
            Kind::Api => KvAnswer::Api(json),
            Kind::Get => get_answer(&json),
            Kind::Info(write) => {
                if let Some((_, text)) = error_code(&json) {
                    return Some((id, KvAnswer::Failed(text)));
                }
                let last = (json.get("state"))
                    .and_then(|state| state.get("last_seq"))
                    .and_then(|seq| seq.as_u64());
                let Some(last) = last else {
                    return Some((
                        id,
                        KvAnswer::Failed("stream info without a last sequence".into()),
                    ));
                };
                self.writes.push((id, write, last));
                return None;
            }
            Kind::Write(write) => match write_answer(&json) {
                KvAnswer::Conflict => {
                    self.steps.push((id, Kind::Check(write)));
                    return None;
                }
                answer => answer,
            },
            Kind::Check(mut write) => match get_answer(&json) {
                KvAnswer::Value { rev, .. } if rev == write.expect => {
                    // Another key was written in between: the stream moved, this key did not.
                    write.attempts += 1;
                    if write.attempts >= WRITE_ATTEMPTS {
                        KvAnswer::Failed("the bucket kept changing under a write".into())
                    } else {
                        self.steps.push((id, Kind::Info(write)));
                        return None;
                    }
                }
                KvAnswer::Value { .. } => KvAnswer::Conflict,
                other => other,
            },
        };
        Some((id, answer))
    }

    /// Requests past their deadline: each fails.
    pub fn expire(&mut self, now: Instant) -> Vec<u64> {
        let late: Vec<u64> = (self.pending.iter())
            .filter(|(_, p)| p.deadline <= now)
            .map(|(&token, _)| token)
            .collect();
        late.into_iter()
            .filter_map(|token| self.pending.remove(&token))
            .map(|p| p.id)
            .collect()
    }

    /// Every request still waiting fails (the connection broke: their answers may never come).
    pub fn fail_all(&mut self) -> Vec<u64> {
        self.pending.drain().map(|(_, p)| p.id).collect()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }
}

fn error_code(json: &serde_json::Value) -> Option<(u64, String)> {
    let error = json.get("error")?;
    let code = error.get("err_code").and_then(|c| c.as_u64()).unwrap_or(0);
    let text = (error.get("description").and_then(|d| d.as_str()))
        .unwrap_or("JetStream error")
        .to_owned();
    Some((code, text))
}

fn write_answer(json: &serde_json::Value) -> KvAnswer {
    if let Some((code, text)) = error_code(json) {
        return if code == WRONG_LAST_SEQUENCE {
            KvAnswer::Conflict
        } else {
            KvAnswer::Failed(text)
        };
    }
    match json.get("seq").and_then(|s| s.as_u64()) {
        Some(rev) => KvAnswer::Written { rev },
        None => KvAnswer::Failed("an acknowledgment without a sequence number".into()),
    }
}

fn get_answer(json: &serde_json::Value) -> KvAnswer {
    if let Some((code, text)) = error_code(json) {
        return if code == NO_MESSAGE_FOUND {
            KvAnswer::Value {
                rev: 0,
                value: None,
            }
        } else {
            KvAnswer::Failed(text)
        };
    }
    let Some(message) = json.get("message") else {
        return KvAnswer::Failed("an answer without a message".into());
    };
    let Some(rev) = message.get("seq").and_then(|s| s.as_u64()) else {
        return KvAnswer::Failed("a message without a sequence number".into());
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let headers = (message.get("hdrs").and_then(|h| h.as_str())).and_then(|h| b64.decode(h).ok());
    let deleted = headers
        .as_deref()
        .and_then(|h| kreisel_nats::header(h, "KV-Operation"))
        .is_some();
    if deleted {
        return KvAnswer::Value { rev, value: None };
    }
    let data = message.get("data").and_then(|d| d.as_str()).unwrap_or("");
    match b64.decode(data) {
        Ok(value) => KvAnswer::Value {
            rev,
            value: Some(value),
        },
        Err(_) => KvAnswer::Failed("a value that is not base64".into()),
    }
}

/// The bucket's stream configuration (a KV bucket keeping one value per key).
pub fn stream_config(stream: &str, bucket: &str, replicas: u8, max_msg_size: usize) -> String {
    format!(
        "{{\"name\":\"{stream}\",\"subjects\":[\"$KV.{bucket}.>\"],\"retention\":\"limits\",\
         \"max_consumers\":-1,\"max_msgs\":-1,\"max_bytes\":-1,\"max_age\":0,\"max_msgs_per_subject\":1,\
         \"max_msg_size\":{max_msg_size},\"discard\":\"new\",\"storage\":\"file\",\"num_replicas\":{replicas},\
         \"duplicate_window\":120000000000,\"allow_rollup_hdrs\":true,\"deny_delete\":true,\"deny_purge\":false,\
         \"allow_direct\":true}}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read() {
        let conflict = serde_json::json!({"error": {"code": 400, "err_code": 10071, "description": "wrong last sequence: 4"}});
        assert_eq!(write_answer(&conflict), KvAnswer::Conflict);
        assert_eq!(
            write_answer(&serde_json::json!({"stream": "KV_x", "seq": 9})),
            KvAnswer::Written { rev: 9 }
        );
        let missing = serde_json::json!({"error": {"code": 404, "err_code": 10037, "description": "no message found"}});
        assert_eq!(
            get_answer(&missing),
            KvAnswer::Value {
                rev: 0,
                value: None
            }
        );
        let found =
            serde_json::json!({"message": {"subject": "$KV.b.k", "seq": 3, "data": "aGk="}});
        assert_eq!(
            get_answer(&found),
            KvAnswer::Value {
                rev: 3,
                value: Some(b"hi".to_vec())
            }
        );
        let deleted = serde_json::json!({"message": {"seq": 5, "hdrs": "TkFUUy8xLjANCktWLU9wZXJhdGlvbjogREVMDQoNCg=="}});
        assert_eq!(
            get_answer(&deleted),
            KvAnswer::Value {
                rev: 5,
                value: None
            }
        );
    }
}
