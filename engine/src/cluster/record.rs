//! What the cluster's key-value store holds: the members (node slots and their incarnations) and one record per
//! registration, keyed by a hash of (realm, match policy, procedure), with its callees in the order they
//! registered. Writes are compare-and-set on the key's revision, so two nodes never both add a callee to a `single`
//! registration, and every node sees one order of callees (`first`, `last`).
//!
//! Values are a small binary layout (little endian), versioned by their first byte. They come from other nodes
//! through the store: every read is checked, and a value that does not decode is treated as absent.

use kreisel_codec::Id;

use super::wire::{put_bytes, put_str, put_u16, put_u32, put_u64, Cursor};
use super::Slot;
use crate::dealer::Invoke;
use crate::link::ShardId;
use crate::session::SessionHandle;
use crate::uri::MatchPolicy;

const RECORD_VERSION: u8 = 1;
const MEMBERS_VERSION: u8 = 1;
/// The key of the members record.
pub const MEMBERS_KEY: &str = "members";
/// The key of the cluster's shared secret (ID seeds, authentication decoys).
pub const SECRET_KEY: &str = "secret";

/// One callee of a registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RecordCallee {
    pub slot: Slot,
    pub epoch: u64,
    pub shard: ShardId,
    pub handle: SessionHandle,
    pub session: Id,
    pub authrole: Box<str>,
    pub disclose_caller: bool,
}

/// A registration as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub realm: Box<str>,
    pub policy: MatchPolicy,
    pub procedure: Box<str>,
    pub invoke: Invoke,
    pub id: Id,
    pub created_unix_ms: u64,
    pub callees: Vec<RecordCallee>,
}

fn policy_code(policy: MatchPolicy) -> u8 {
    match policy {
        MatchPolicy::Exact => 0,
        MatchPolicy::Prefix => 1,
        MatchPolicy::Wildcard => 2,
    }
}

fn policy_of(code: u8) -> Option<MatchPolicy> {
    Some(match code {
        0 => MatchPolicy::Exact,
        1 => MatchPolicy::Prefix,
        2 => MatchPolicy::Wildcard,
        _ => return None,
    })
}

/// The key of registration (realm, policy, procedure): `reg.` and 32 hex digits of a SHA-256 (keys must be short
/// and of few characters; the record repeats the full names, and a mismatch is treated as a different key's).
pub(crate) fn registration_key(realm: &str, policy: MatchPolicy, procedure: &str) -> String {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    digest.update(&(realm.len() as u64).to_le_bytes());
    digest.update(realm.as_bytes());
    digest.update(&[policy_code(policy)]);
    digest.update(procedure.as_bytes());
    let hash = digest.finish();
    let mut key = String::with_capacity(36);
    key.push_str("reg.");
    for byte in &hash.as_ref()[..16] {
        key.push_str(&format!("{byte:02x}"));
    }
    key
}

impl Record {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(RECORD_VERSION);
        put_str(out, &self.realm);
        out.push(policy_code(self.policy));
        put_str(out, &self.procedure);
        out.push(self.invoke.code());
        put_u64(out, self.id.get());
        put_u64(out, self.created_unix_ms);
        put_u32(out, self.callees.len() as u32);
        for c in &self.callees {
            put_u16(out, c.slot);
            put_u64(out, c.epoch);
            put_u16(out, c.shard);
            put_u32(out, c.handle.index);
            put_u32(out, c.handle.generation);
            put_u64(out, c.session.get());
            put_bytes(out, c.authrole.as_bytes());
            out.push(u8::from(c.disclose_caller));
        }
    }

    pub fn decode(bytes: &[u8]) -> Option<Record> {
        let mut c = Cursor(bytes);
        if c.u8()? != RECORD_VERSION {
            return None;
        }
        let realm = c.str()?.into();
        let policy = policy_of(c.u8()?)?;
        let procedure = c.str()?.into();
        let invoke = Invoke::from_code(c.u8()?)?;
        let id = Id::new(c.u64()?)?;
        let created_unix_ms = c.u64()?;
        let count = c.u32()? as usize;
        // Each callee takes at least 35 bytes: a count beyond what the value can hold is malformed.
        if count > bytes.len() / 35 {
            return None;
        }
        let mut callees = Vec::with_capacity(count);
        for _ in 0..count {
            callees.push(RecordCallee {
                slot: c.u16()?,
                epoch: c.u64()?,
                shard: c.u16()?,
                handle: SessionHandle {
                    index: c.u32()?,
                    generation: c.u32()?,
                },
                session: Id::new(c.u64()?)?,
                authrole: c.str()?.into(),
                disclose_caller: c.u8()? != 0,
            });
        }
        c.is_empty().then_some(Record {
            realm,
            policy,
            procedure,
            invoke,
            id,
            created_unix_ms,
            callees,
        })
    }
}

/// The members record: every node of the cluster, (slot, epoch).
pub fn encode_members(members: &[(Slot, u64)], out: &mut Vec<u8>) {
    out.push(MEMBERS_VERSION);
    put_u16(out, members.len() as u16);
    for &(slot, epoch) in members {
        put_u16(out, slot);
        put_u64(out, epoch);
    }
}

/// The members of a members record (`None`: malformed).
pub fn decode_members(bytes: &[u8]) -> Option<Vec<(Slot, u64)>> {
    let mut c = Cursor(bytes);
    if c.u8()? != MEMBERS_VERSION {
        return None;
    }
    let count = c.u16()? as usize;
    let mut members = Vec::with_capacity(count.min(super::NODE_SLOTS));
    for _ in 0..count {
        members.push((c.u16()?, c.u64()?));
    }
    c.is_empty().then_some(members)
}

/// What [`claim_slot`] decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub slot: Slot,
    /// The members before this node.
    pub others: Vec<(Slot, u64)>,
    /// The members record to write.
    pub value: Vec<u8>,
}

/// A node joining: the lowest slot the members record (`None`: absent) does not hold, and the record with this
/// node added as `(slot, epoch)`. `None` when every slot is taken.
pub fn claim_slot(current: Option<&[u8]>, epoch: u64) -> Option<Claim> {
    let mut members = current.and_then(decode_members).unwrap_or_default();
    let slot =
        (0..super::NODE_SLOTS as Slot).find(|slot| members.iter().all(|(s, _)| s != slot))?;
    let others = members.clone();
    members.push((slot, epoch));
    let mut value = Vec::new();
    encode_members(&members, &mut value);
    Some(Claim {
        slot,
        others,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let record = Record {
            realm: "realm1".into(),
            policy: MatchPolicy::Prefix,
            procedure: "com.ex".into(),
            invoke: Invoke::First,
            id: Id::new(77).unwrap(),
            created_unix_ms: 1_700_000_000_000,
            callees: vec![RecordCallee {
                slot: 3,
                epoch: 9,
                shard: 1,
                handle: SessionHandle {
                    index: 4,
                    generation: 5,
                },
                session: Id::new(8).unwrap(),
                authrole: "backend".into(),
                disclose_caller: true,
            }],
        };
        let mut bytes = Vec::new();
        record.encode(&mut bytes);
        assert_eq!(Record::decode(&bytes), Some(record));
        for cut in 0..bytes.len() {
            assert_eq!(Record::decode(&bytes[..cut]), None);
        }
        assert_eq!(Record::decode(&[1, 255, 255, 255, 255]), None);
    }

    #[test]
    fn slots_are_claimed_lowest_free_first() {
        let first = claim_slot(None, 5).unwrap();
        assert_eq!((first.slot, first.others.len()), (0, 0));
        let second = claim_slot(Some(&first.value), 6).unwrap();
        assert_eq!((second.slot, second.others), (1, vec![(0, 5)]));
        assert_eq!(decode_members(&second.value), Some(vec![(0, 5), (1, 6)]));
        assert_ne!(
            registration_key("r", MatchPolicy::Exact, "a"),
            registration_key("r", MatchPolicy::Prefix, "a")
        );
    }
}
