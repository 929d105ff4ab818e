//! What nodes send each other over the backplane: a small envelope (sender, its epoch, a sequence number) in front
//! of a node message. Messages that also travel between shards (publications, calls, subscriptions, sessions) are
//! carried as their [`crate::link`] encoding, unchanged, so a publication crosses the cluster with the bytes its
//! publisher sent.
//!
//! Layout (little endian): `version u8 = 1`, `kind u8` (its top bit set for a message to every node),
//! `from u16` (the sender's slot), `epoch u64` (the sender's incarnation), `seq u64` (0: not numbered; else the
//! next number of the sender's broadcast stream, or of its stream to the receiver), then the body of the kind.

use super::Slot;

pub(crate) const VERSION: u8 = 1;
/// Bytes of the envelope in front of every body.
pub const HEADER_LEN: usize = 20;

/// Node message kinds.
pub(crate) mod kind {
    /// Broadcast by a node that just joined: every other node sends it its state.
    pub const HELLO: u8 = 1;
    /// Broadcast every `heartbeat_ms`: `fingerprint u64`, then `n u16` and `n` × (`slot u16`, `seq u64`): the
    /// last sequence number sent to each node.
    pub const HEARTBEAT: u8 = 2;
    /// To a node: send me your state (`fresh u8`: I am new, send the retained events too).
    pub const STATE_REQUEST: u8 = 3;
    /// To a node: my state follows, up to `STATE_END` (everything of mine you hold and I do not repeat is gone).
    pub const STATE_BEGIN: u8 = 4;
    pub const STATE_END: u8 = 5;
    /// A [`crate::link::PeerMessage`]: `shard u16` (on the receiver: the shard a call is for; else unused),
    /// then its link encoding.
    pub const LINK: u8 = 6;
    /// A registration record as the key-value store holds it: `key str`, `rev u64`, `ack u64` (0: no ack
    /// wanted), `value bytes` (empty: the key is gone).
    pub const RECORD: u8 = 7;
    /// To a node: messages of mine to you were lost; calls between us have ended (each side tells its callers
    /// and callees).
    pub const CALLS_RESET: u8 = 8;
    /// Broadcast by a node that leaves on purpose (shutdown): forget it at once, nothing to reap.
    pub const GOODBYE: u8 = 9;
    /// To a node whose state arrived (after its `STATE_END`): what it waited for from me before it sent its
    /// state, I have (a broadcast of it lost on the way is in the state).
    pub const STATE_ACK: u8 = 10;
}

/// The kind bit of a message sent to every node.
const BROADCAST: u8 = 0x80;

/// A decoded envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Envelope<'a> {
    pub kind: u8,
    pub broadcast: bool,
    pub from: Slot,
    pub epoch: u64,
    pub seq: u64,
    pub body: &'a [u8],
}

/// Writes an envelope header.
pub(crate) fn header(
    kind: u8,
    broadcast: bool,
    from: Slot,
    epoch: u64,
    seq: u64,
) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[0] = VERSION;
    out[1] = kind | if broadcast { BROADCAST } else { 0 };
    out[2..4].copy_from_slice(&from.to_le_bytes());
    out[4..12].copy_from_slice(&epoch.to_le_bytes());
    out[12..20].copy_from_slice(&seq.to_le_bytes());
    out
}

pub(crate) fn envelope(bytes: &[u8]) -> Option<Envelope<'_>> {
    let (head, body) = bytes.split_first_chunk::<HEADER_LEN>()?;
    if head[0] != VERSION {
        return None;
    }
    Some(Envelope {
        kind: head[1] & !BROADCAST,
        broadcast: head[1] & BROADCAST != 0,
        from: u16::from_le_bytes([head[2], head[3]]),
        epoch: u64::from_le_bytes(head[4..12].try_into().ok()?),
        seq: u64::from_le_bytes(head[12..20].try_into().ok()?),
        body,
    })
}

/// A little reader over a body (every read checks the length).
pub(crate) struct Cursor<'a>(pub &'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    }
    pub fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    }
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    pub fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
pub(crate) fn put_bytes(out: &mut Vec<u8>, v: &[u8]) {
    put_u32(out, v.len() as u32);
    out.extend_from_slice(v);
}
pub(crate) fn put_str(out: &mut Vec<u8>, v: &str) {
    put_bytes(out, v.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_short_or_foreign_bytes_are_refused() {
        let mut bytes = header(kind::LINK, true, 7, 99, 5).to_vec();
        bytes.extend_from_slice(b"body");
        let env = envelope(&bytes).expect("decodes");
        assert_eq!(
            (
                env.kind,
                env.broadcast,
                env.from,
                env.epoch,
                env.seq,
                env.body
            ),
            (kind::LINK, true, 7, 99, 5, &b"body"[..])
        );
        assert!(envelope(&bytes[..HEADER_LEN - 1]).is_none());
        bytes[0] = 2;
        assert!(envelope(&bytes).is_none());
        let mut c = Cursor(&[3, 0, 0, 0, b'a', b'b']);
        assert_eq!(c.str(), None, "length past the end");
    }
}
