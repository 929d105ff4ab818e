//! Outgoing frames: a per-shard store of encoded messages shared by reference count, and per-connection queues
//! of (transport header, shared frame) flushed with `writev`.
//!
//! An EVENT for a subscription is encoded once per serializer into one [`FrameStore`] buffer; every recipient's
//! [`Outbox`] holds a reference to it plus its own small transport header (RawSocket: 4 octets; WebSocket: 2-10
//! octets), so fan-out costs one encode and one queue entry per subscriber, never a copy of the payload. Buffers
//! are pooled, and so are the queues themselves: a connection with nothing to send holds no queue memory, and in
//! the steady state nothing is allocated.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, IoSlice, Write};

/// A frame in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameId(u32);

#[derive(Debug)]
struct Frame {
    bytes: Vec<u8>,
    /// References held, or [`VACANT`] for a free slot (whose `bytes` is empty and holds no memory).
    refs: u32,
}

const VACANT: u32 = u32::MAX;

/// The frames' slots, numbered by [`FrameId`]. A new frame takes the lowest free slot, so the frames alive gather
/// at the bottom and the slots a burst added (a slow subscriber's full queue: a hundred thousand frames) come free
/// at the top once it drains; [`Slots::shrink`] then gives them back. (A free list that reuses the slot freed last
/// would leave a few frames alive scattered over the whole high-water mark, and its memory held for good.)
#[derive(Debug, Default)]
struct Slots {
    slots: Vec<Frame>,
    /// Free slots below `slots.len()`, lowest first, each once.
    free: BinaryHeap<Reverse<u32>>,
}

/// Fewest slots [`Slots::shrink`] keeps capacity for (32 bytes each).
const SLOTS_KEPT_MIN: usize = 1024;

impl Slots {
    fn insert(&mut self, bytes: Vec<u8>) -> u32 {
        let frame = Frame { bytes, refs: 0 };
        match self.free.pop() {
            Some(Reverse(index)) => {
                debug_assert_eq!(self.slots[index as usize].refs, VACANT);
                self.slots[index as usize] = frame;
                index
            }
            None => {
                self.slots.push(frame);
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn remove(&mut self, index: u32) -> Vec<u8> {
        let frame = &mut self.slots[index as usize];
        debug_assert_ne!(frame.refs, VACANT, "removal of a free slot");
        frame.refs = VACANT;
        self.free.push(Reverse(index));
        std::mem::take(&mut frame.bytes)
    }

    fn get(&self, index: u32) -> &Frame {
        let frame = &self.slots[index as usize];
        debug_assert_ne!(frame.refs, VACANT, "a free slot used");
        frame
    }

    fn get_mut(&mut self, index: u32) -> &mut Frame {
        let frame = &mut self.slots[index as usize];
        debug_assert_ne!(frame.refs, VACANT, "a free slot used");
        frame
    }

    /// Frames alive.
    fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Drops the free slots at the top, and frees the capacity of both the slots and the free list when it is
    /// more than four times what is used (down to twice, never under [`SLOTS_KEPT_MIN`]): a load that holds
    /// steady keeps its slots, a drained burst's go back. Returns the bytes of capacity freed.
    fn shrink(&mut self) -> usize {
        let top = self
            .slots
            .iter()
            .rposition(|frame| frame.refs != VACANT)
            .map_or(0, |last| last + 1);
        if top < self.slots.len() {
            self.slots.truncate(top);
            self.free.retain(|&Reverse(index)| (index as usize) < top);
        }
        let before = self.capacity_bytes();
        if let Some(to) = shrunk(self.slots.capacity(), self.slots.len()) {
            self.slots.shrink_to(to);
        }
        if let Some(to) = shrunk(self.free.capacity(), self.free.len()) {
            self.free.shrink_to(to);
        }
        before - self.capacity_bytes()
    }

    fn capacity_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Frame>()
            + self.free.capacity() * std::mem::size_of::<Reverse<u32>>()
    }
}

/// Reusable byte buffers, bounded by count, by each buffer's capacity and by their capacity together: after a
/// burst, a pool keeps at most `bytes_max`, and [`BufferPool::decay`] gives back what nobody took since its last
/// call.
#[derive(Debug)]
pub struct BufferPool {
    buffers: Vec<Vec<u8>>,
    /// Capacity of the pooled buffers together.
    bytes: usize,
    len_max: usize,
    buffer_max: usize,
    bytes_max: usize,
    /// The fewest buffers the pool held since the last [`BufferPool::decay`]: the bottom `low` were not needed.
    low: usize,
    /// Buffers at the bottom that [`BufferPool::decay`] chose to free, freed a few at a time by
    /// [`BufferPool::reap`].
    doomed: usize,
}

impl BufferPool {
    pub const fn new(len_max: usize, buffer_max: usize, bytes_max: usize) -> BufferPool {
        BufferPool {
            buffers: Vec::new(),
            bytes: 0,
            len_max,
            buffer_max,
            bytes_max,
            low: 0,
            doomed: 0,
        }
    }

    /// A buffer from the pool (empty, with whatever capacity it has), or a new one.
    pub fn take(&mut self) -> Vec<u8> {
        let mut buffer = self.buffers.pop().unwrap_or_default();
        self.bytes -= buffer.capacity();
        self.low = self.low.min(self.buffers.len());
        self.doomed = self.doomed.min(self.buffers.len());
        buffer.clear();
        buffer
    }

    /// Chooses half (rounded up) of the buffers that stayed in the pool since the last call, the ones at its
    /// bottom, to be freed by [`BufferPool::reap`], and returns how many. Called once a second, it gives back what a
    /// burst left behind within seconds (a slow subscriber's drained backlog, say), while a steady load keeps the
    /// buffers it takes and allocates nothing.
    pub fn decay(&mut self) -> usize {
        let idle = self.low.min(self.buffers.len());
        self.doomed = self.doomed.max(idle.div_ceil(2));
        self.low = self.buffers.len();
        self.doomed
    }

    /// Frees at most `max` of the buffers [`BufferPool::decay`] chose, and returns their capacity. Freeing thousands
    /// of cold buffers takes milliseconds (about a microsecond each), so a shard frees a few per loop turn.
    pub fn reap(&mut self, max: usize) -> usize {
        let count = self.doomed.min(self.buffers.len()).min(max);
        if count == 0 {
            return 0;
        }
        let freed: usize = self.buffers.drain(..count).map(|b| b.capacity()).sum();
        self.bytes -= freed;
        self.doomed -= count;
        self.low = self.low.saturating_sub(count);
        freed
    }

    /// Whether buffers chosen by [`BufferPool::decay`] are still to be freed.
    pub fn reaping(&self) -> bool {
        self.doomed > 0
    }

    /// Buffers in the pool.
    pub fn len(&self) -> usize {
        self.buffers.len()
    }

    /// Returns a buffer; it is freed instead when it is too big or the pool is full.
    pub fn give(&mut self, buffer: Vec<u8>) {
        let capacity = buffer.capacity();
        if capacity <= self.buffer_max
            && self.buffers.len() < self.len_max
            && self.bytes + capacity <= self.bytes_max
        {
            self.bytes += capacity;
            self.buffers.push(buffer);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.buffers.is_empty()
    }
}

/// The capacity to shrink a vector of `len` elements to, if its `capacity` is more than four times that (and more
/// than [`SLOTS_KEPT_MIN`]).
fn shrunk(capacity: usize, len: usize) -> Option<usize> {
    (capacity > SLOTS_KEPT_MIN && capacity > 4 * len).then(|| (2 * len).max(SLOTS_KEPT_MIN))
}

/// Reference-counted encoded messages with a pool of reusable buffers.
#[derive(Debug)]
pub struct FrameStore {
    frames: Slots,
    pool: BufferPool,
    /// Empty queues with capacity, for outboxes that get something to send.
    queues: Vec<VecDeque<Entry>>,
    /// Bytes of the frames some queue references.
    queued_bytes: usize,
    /// References held, i.e. queue entries over all outboxes.
    refs: usize,
    /// Closed connections' queues and held frames, whose references [`FrameStore::reap`] releases a few at a time.
    graves: Vec<Grave>,
    /// What the graves weigh in [`FrameStore::memory`], counted as they were queued: each entry's unwritten bytes
    /// and its [`ENTRY_COST`] (a frame shared with a live outbox is counted for both, so
    /// [`FrameStore::live_memory`] may be low until the graves are released).
    buried: usize,
}

/// References a closed connection still held, to be released by [`FrameStore::reap`].
#[derive(Debug)]
enum Grave {
    Queue(VecDeque<Entry>),
    Frames(Vec<FrameId>),
}

/// Most frames [`FrameStore::reap`] frees in one call (each buffer freed is about a microsecond when cold).
pub const REAP_FREES_MAX: usize = 64;
/// Most references [`FrameStore::reap`] releases in one call.
pub const REAP_RELEASES_MAX: usize = 1024;

/// What one queue entry costs besides its frame: the entry itself, rounded up for the queue's spare capacity.
pub const ENTRY_COST: usize = 48;

impl Default for FrameStore {
    fn default() -> FrameStore {
        FrameStore {
            frames: Slots::default(),
            // Buffers up to 64 KiB are kept (so one huge message does not pin memory), 4096 of them, 16 MiB in
            // all.
            pool: BufferPool::new(4096, 64 << 10, 16 << 20),
            queues: Vec::new(),
            queued_bytes: 0,
            refs: 0,
            graves: Vec::new(),
            buried: 0,
        }
    }
}

impl FrameStore {
    /// A new frame with zero references; fill it with [`FrameStore::bytes_mut`], then [`FrameStore::retain`] it
    /// once per queue entry. A frame never retained must be [`FrameStore::discard`]ed.
    pub fn alloc(&mut self) -> FrameId {
        let bytes = self.pool.take();
        FrameId(self.frames.insert(bytes))
    }

    pub fn bytes_mut(&mut self, id: FrameId) -> &mut Vec<u8> {
        &mut self.frames.get_mut(id.0).bytes
    }

    pub fn bytes(&self, id: FrameId) -> &[u8] {
        &self.frames.get(id.0).bytes
    }

    /// References held on a frame.
    pub fn refs(&self, id: FrameId) -> u32 {
        self.frames.get(id.0).refs
    }

    pub fn retain(&mut self, id: FrameId) {
        let frame = self.frames.get_mut(id.0);
        if frame.refs == 0 {
            self.queued_bytes += frame.bytes.len();
        }
        frame.refs += 1;
        self.refs += 1;
    }

    /// Drops one reference; the last one returns the buffer to the pool. Returns whether it was the last.
    pub fn release(&mut self, id: FrameId) -> bool {
        let frame = self.frames.get_mut(id.0);
        debug_assert!(frame.refs > 0, "release of an unreferenced frame");
        frame.refs -= 1;
        self.refs -= 1;
        if frame.refs == 0 {
            self.queued_bytes -= frame.bytes.len();
            self.discard(id);
            return true;
        }
        false
    }

    /// Takes references a closed connection held (one each), for [`FrameStore::reap`] to release: they count in
    /// [`FrameStore::memory`] until then.
    pub fn bury(&mut self, frames: Vec<FrameId>) {
        for &id in &frames {
            self.buried += self.bytes(id).len() + ENTRY_COST;
        }
        if !frames.is_empty() {
            self.graves.push(Grave::Frames(frames));
        }
    }

    /// Releases what closed connections held ([`Outbox::clear`], [`FrameStore::bury`]) and frees the buffers the
    /// pool's [`FrameStore::decay`] chose, a bounded amount per call ([`REAP_FREES_MAX`] frames freed,
    /// [`REAP_RELEASES_MAX`] references released), so that closing a connection with a backlog of a hundred
    /// thousand frames does not stall its shard for milliseconds. A shard calls it every loop turn, and turns
    /// without waiting while it returns true (more to do).
    pub fn reap(&mut self) -> bool {
        let mut frees = 0;
        let mut releases = 0;
        while let Some(mut grave) = self.graves.pop() {
            loop {
                if frees == REAP_FREES_MAX || releases == REAP_RELEASES_MAX {
                    self.graves.push(grave);
                    return true;
                }
                let next = match &mut grave {
                    Grave::Queue(queue) => queue.pop_back().map(|entry| {
                        let total = usize::from(entry.header_len) + self.bytes(entry.frame).len();
                        (entry.frame, total - entry.written)
                    }),
                    Grave::Frames(frames) => frames.pop().map(|id| (id, self.bytes(id).len())),
                };
                let Some((id, unwritten)) = next else { break };
                debug_assert!(self.buried >= unwritten + ENTRY_COST);
                self.buried = self.buried.saturating_sub(unwritten + ENTRY_COST);
                releases += 1;
                if self.release(id) {
                    frees += 1;
                }
            }
            if let Grave::Queue(queue) = grave {
                self.give_queue(queue);
            }
        }
        debug_assert_eq!(self.buried, 0, "the graves weighed what was buried");
        self.buried = 0;
        self.pool.reap(REAP_FREES_MAX - frees);
        self.pool.reaping()
    }

    /// What all outboxes hold together, in bytes: the frames they reference (each once, however many share
    /// it) plus [`ENTRY_COST`] per queue entry. Bounded by `limits.memory_max`.
    pub fn memory(&self) -> usize {
        self.queued_bytes + self.refs * ENTRY_COST
    }

    /// [`FrameStore::memory`] less what closed connections' queues still hold until [`FrameStore::reap`] releases
    /// it: what the limits (`limits.memory_max`) weigh, so that closing one large outbox is not taken for memory
    /// still in use and no second one is cut for it.
    pub fn live_memory(&self) -> usize {
        self.memory().saturating_sub(self.buried)
    }

    /// Frees a frame nobody references.
    pub fn discard(&mut self, id: FrameId) {
        debug_assert_eq!(self.frames.get(id.0).refs, 0);
        let bytes = self.frames.remove(id.0);
        self.pool.give(bytes);
    }

    /// An empty queue, with capacity when the pool has one.
    fn take_queue(&mut self) -> VecDeque<Entry> {
        self.queues.pop().unwrap_or_default()
    }

    /// Takes back an emptied queue (freed when the pool is full or the queue grew large).
    fn give_queue(&mut self, queue: VecDeque<Entry>) {
        debug_assert!(queue.is_empty());
        if queue.capacity() <= QUEUE_KEPT_MAX && self.queues.len() < QUEUES_KEPT {
            self.queues.push(queue);
        }
    }

    /// [`BufferPool::decay`] of the frame buffers (freed by [`FrameStore::reap`]), and the slots a drained burst
    /// left given back (`Slots::shrink`); the bytes of slots freed.
    pub fn decay(&mut self) -> usize {
        self.pool.decay();
        self.frames.shrink()
    }

    /// Slots for frames the store has capacity for (for tests and metrics).
    pub fn slots_capacity(&self) -> usize {
        self.frames.slots.capacity()
    }

    /// Frames alive (for tests and metrics).
    pub fn live(&self) -> usize {
        self.frames.len()
    }
}

/// Empty queues a store keeps, and the largest capacity (entries) it keeps: at most 1024 × 256 × 24 bytes.
const QUEUES_KEPT: usize = 1024;
const QUEUE_KEPT_MAX: usize = 256;

/// Longest transport header: a WebSocket frame with a 64-bit length.
pub const HEADER_MAX: usize = 10;

#[derive(Debug)]
struct Entry {
    header: [u8; HEADER_MAX],
    header_len: u8,
    frame: FrameId,
    /// Bytes of header + frame already written.
    written: usize,
}

/// One connection's queue of outgoing frames.
#[derive(Debug, Default)]
pub struct Outbox {
    entries: VecDeque<Entry>,
    /// Bytes queued and not yet written (headers included).
    queued: usize,
}

/// Slices handed to one `writev` call at most (two per entry: header and frame).
const IOVECS_MAX: usize = 64;

impl Outbox {
    /// Queues `frame` (retaining it) behind `header`.
    pub fn push(&mut self, store: &mut FrameStore, header: &[u8], frame: FrameId) {
        debug_assert!(header.len() <= HEADER_MAX);
        let mut entry = Entry {
            header: [0; HEADER_MAX],
            header_len: header.len() as u8,
            frame,
            written: 0,
        };
        entry.header[..header.len()].copy_from_slice(header);
        store.retain(frame);
        self.queued += header.len() + store.bytes(frame).len();
        if self.entries.capacity() == 0 {
            self.entries = store.take_queue();
        }
        self.entries.push_back(entry);
    }

    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes as much as the socket takes. Returns `Ok(true)` when the queue is empty, `Ok(false)` when the socket
    /// would block with bytes left.
    pub fn flush(&mut self, store: &mut FrameStore, socket: &mut impl Write) -> io::Result<bool> {
        while !self.entries.is_empty() {
            let mut slices = [IoSlice::new(&[]); IOVECS_MAX];
            let mut count = 0;
            for entry in self.entries.iter() {
                if count + 2 > IOVECS_MAX {
                    break;
                }
                let header = &entry.header[..entry.header_len as usize];
                let body = store.bytes(entry.frame);
                if entry.written < header.len() {
                    slices[count] = IoSlice::new(&header[entry.written..]);
                    slices[count + 1] = IoSlice::new(body);
                    count += 2;
                } else {
                    slices[count] = IoSlice::new(&body[entry.written - header.len()..]);
                    count += 1;
                }
            }
            let written = match socket.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.advance(store, written);
        }
        if self.entries.capacity() > 0 {
            store.give_queue(std::mem::take(&mut self.entries));
        }
        Ok(true)
    }

    fn advance(&mut self, store: &mut FrameStore, mut written: usize) {
        self.queued -= written;
        while written > 0 {
            let Some(entry) = self.entries.front_mut() else {
                return;
            };
            let total = entry.header_len as usize + store.bytes(entry.frame).len();
            let left = total - entry.written;
            if written < left {
                entry.written += written;
                return;
            }
            written -= left;
            let frame = entry.frame;
            self.entries.pop_front();
            store.release(frame);
        }
    }

    /// Drops everything queued (connection closed): the store releases the frames over its next
    /// [`FrameStore::reap`]s.
    pub fn clear(&mut self, store: &mut FrameStore) {
        let entries = std::mem::take(&mut self.entries);
        if !entries.is_empty() {
            store.buried += self.queued + entries.len() * ENTRY_COST;
            store.graves.push(Grave::Queue(entries));
        } else if entries.capacity() > 0 {
            store.give_queue(entries);
        }
        self.queued = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_gives_back_what_a_burst_left_and_keeps_what_a_steady_load_takes() {
        let mut pool = BufferPool::new(64, 1 << 10, 1 << 20);
        // A burst: 16 buffers taken at once and given back.
        let burst: Vec<Vec<u8>> = (0..16).map(|_| Vec::with_capacity(100)).collect();
        for buffer in burst {
            pool.give(buffer);
        }
        // decay chooses, reap frees: a bounded number at a time.
        let decay = |pool: &mut BufferPool| {
            pool.decay();
            let mut freed = 0;
            while pool.reaping() {
                let before = pool.len();
                freed += pool.reap(3);
                assert!(before - pool.len() <= 3, "at most 3 freed per reap");
            }
            freed
        };
        assert_eq!(decay(&mut pool), 0, "the first period saw the pool empty");
        // A steady load of one buffer at a time.
        let mut periods = 0;
        while pool.len() > 1 {
            let buffer = pool.take();
            pool.give(buffer);
            let before = pool.len();
            let freed = decay(&mut pool);
            assert_eq!(freed, (before - 1).div_ceil(2) * 100);
            periods += 1;
        }
        assert_eq!(periods, 4, "16 -> 8 -> 4 -> 2 -> 1");
        // What the load takes stays: nothing more is freed, and the buffer it takes is a pooled one.
        for _ in 0..3 {
            let buffer = pool.take();
            assert_eq!(buffer.capacity(), 100);
            pool.give(buffer);
            assert_eq!(decay(&mut pool), 0);
        }
        assert_eq!(pool.len(), 1);
        // Untouched, it empties.
        assert_eq!(decay(&mut pool), 100);
        assert!(pool.is_empty());
        // Buffers chosen but taken before they were freed are not freed.
        for _ in 0..8 {
            pool.give(Vec::with_capacity(100));
        }
        pool.decay();
        assert_eq!(pool.decay(), 4, "half of the 8 idle ones chosen");
        let taken: Vec<Vec<u8>> = (0..6).map(|_| pool.take()).collect();
        assert_eq!(pool.reap(usize::MAX), 200, "2 of the 4 chosen were left");
        assert!(!pool.reaping());
        drop(taken);
    }

    #[test]
    fn a_drained_burst_gives_its_frame_slots_back_and_a_steady_load_keeps_them() {
        let mut store = FrameStore::default();
        let frame = |store: &mut FrameStore, n: u32| {
            let id = store.alloc();
            store.bytes_mut(id).extend_from_slice(&n.to_le_bytes());
            store.retain(id);
            id
        };
        // A steady load: 10 frames alive at any time.
        let mut alive: VecDeque<FrameId> = (0..10).map(|n| frame(&mut store, n)).collect();
        // A slow subscriber's queue fills: 100 000 frames alive at once, and a few of the steady ones stay
        // alive past it.
        let burst: Vec<FrameId> = (0..100_000).map(|n| frame(&mut store, n)).collect();
        for n in 0..10 {
            alive.push_back(frame(&mut store, n));
        }
        assert_eq!(store.live(), 100_020);
        let high = store.slots_capacity();
        assert!(high >= 100_020);
        assert_eq!(
            store.decay(),
            0,
            "nothing to give back while the burst is alive"
        );
        // The queue is dropped; the steady load goes on: new frames take the lowest slots, so the ones alive
        // after the burst (at the top) are soon the only ones up there, and then gone.
        for id in burst {
            store.release(id);
        }
        for n in 0..100 {
            if let Some(old) = alive.pop_front() {
                store.release(old);
            }
            alive.push_back(frame(&mut store, n));
        }
        for id in &alive {
            assert!(id.0 < 20, "frame {} not among the lowest slots", id.0);
        }
        assert_eq!(store.live(), 20);
        let freed = store.decay();
        assert!(freed >= (high - SLOTS_KEPT_MIN) * std::mem::size_of::<Frame>());
        assert_eq!(store.slots_capacity(), SLOTS_KEPT_MIN);
        // Every frame alive still reads as written, and the store works on as before.
        for (n, id) in alive.iter().enumerate() {
            assert_eq!(store.bytes(*id), (80 + n as u32).to_le_bytes());
        }
        for id in alive.drain(..) {
            store.release(id);
        }
        assert_eq!(store.live(), 0);
        let id = frame(&mut store, 7);
        assert_eq!(id.0, 0);
        store.decay();
        assert_eq!(
            store.slots_capacity(),
            SLOTS_KEPT_MIN,
            "the fewest slots are kept"
        );
        store.release(id);
        // A load of 3000 frames alive keeps the slots it uses.
        let held: Vec<FrameId> = (0..3000).map(|n| frame(&mut store, n)).collect();
        let capacity = store.slots_capacity();
        for _ in 0..3 {
            store.decay();
            assert_eq!(store.slots_capacity(), capacity);
        }
        for id in held {
            store.release(id);
        }
    }

    /// A socket that takes at most `chunk` bytes per write and then would block after `budget` bytes.
    struct Trickle {
        out: Vec<u8>,
        chunk: usize,
        budget: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(self.chunk - n).min(self.budget - n);
                self.out.extend_from_slice(&buf[..take]);
                n += take;
                if n == self.chunk || n == self.budget {
                    break;
                }
            }
            self.budget -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn shared_frames_flush_in_order_through_partial_writes() {
        let mut store = FrameStore::default();
        let shared = store.alloc();
        store.bytes_mut(shared).extend_from_slice(b"EVENT-PAYLOAD");
        let mut a = Outbox::default();
        let mut b = Outbox::default();
        for i in 0..100u8 {
            let own = store.alloc();
            store.bytes_mut(own).extend_from_slice(&[b'r', i]);
            a.push(&mut store, &[0xAA, i], own);
            a.push(&mut store, &[0xBB], shared);
        }
        b.push(&mut store, &[0xCC], shared);
        assert_eq!(a.queued_bytes(), 100 * (2 + 2 + 1 + 13));
        // The shared frame counts once, every entry its cost.
        assert_eq!(store.memory(), 100 * 2 + 13 + 201 * ENTRY_COST);
        let mut socket = Trickle {
            out: Vec::new(),
            chunk: 7,
            budget: 1000,
        };
        assert!(
            !a.flush(&mut store, &mut socket).unwrap(),
            "budget runs out first"
        );
        socket.budget = usize::MAX;
        assert!(a.flush(&mut store, &mut socket).unwrap());
        let mut expected = Vec::new();
        for i in 0..100u8 {
            expected.extend_from_slice(&[0xAA, i, b'r', i, 0xBB]);
            expected.extend_from_slice(b"EVENT-PAYLOAD");
        }
        assert_eq!(socket.out, expected);
        assert_eq!(a.queued_bytes(), 0);
        assert_eq!(
            store.live(),
            1,
            "only the frame still queued for b is alive"
        );
        assert_eq!(store.memory(), 13 + ENTRY_COST);
        b.clear(&mut store);
        assert_eq!(store.live(), 1, "released by reap, not by clear");
        assert_eq!(store.live_memory(), 0);
        assert!(!store.reap(), "one frame: done in one reap");
        assert_eq!(store.live(), 0);
        assert_eq!(store.memory(), 0);
        assert!(!store.pool.is_empty(), "buffers return to the pool");
    }

    #[test]
    fn a_closed_backlog_is_released_a_bounded_amount_at_a_time() {
        let mut store = FrameStore::default();
        let mut slow = Outbox::default();
        let mut slower = Outbox::default();
        let mut fast = Outbox::default();
        // 20 000 frames queued for two slow subscribers, the last 10 also for one that reads.
        let count = 20_000u32;
        for n in 0..count {
            let id = store.alloc();
            store.bytes_mut(id).extend_from_slice(&n.to_le_bytes());
            slow.push(&mut store, &[1], id);
            slower.push(&mut store, &[2, 2], id);
            if n >= count - 10 {
                fast.push(&mut store, &[3], id);
            }
        }
        let memory = store.memory();
        assert_eq!(
            memory,
            count as usize * 4 + (2 * count as usize + 10) * ENTRY_COST
        );
        slow.clear(&mut store);
        slower.clear(&mut store);
        assert_eq!(slow.queued_bytes(), 0);
        assert_eq!(store.memory(), memory, "nothing released yet");
        // The graves weigh their unwritten bytes and their entries: each grave counts the shared frames once, so
        // together they weigh more than what goes away, and the limits see nothing held until they are released.
        assert_eq!(
            store.buried,
            count as usize * (1 + 4 + 2 + 4 + 2 * ENTRY_COST)
        );
        assert_eq!(store.live_memory(), 0);
        let mut reaps = 0;
        while store.reap() {
            reaps += 1;
            assert!(
                store.live() >= 10,
                "the frames the fast subscriber queued stay"
            );
        }
        // Every frame is released by one of the two graves: 19 990 of them freed, at most REAP_FREES_MAX a call,
        // and 40 000 references at most REAP_RELEASES_MAX a call.
        assert!(reaps >= (count as usize - 10) / REAP_FREES_MAX);
        assert!(reaps >= 2 * count as usize / REAP_RELEASES_MAX);
        assert_eq!(store.live(), 10);
        assert_eq!(store.memory(), 10 * (4 + ENTRY_COST));
        assert_eq!(store.live_memory(), store.memory());
        let mut socket = Trickle {
            out: Vec::new(),
            chunk: 1 << 20,
            budget: usize::MAX,
        };
        assert!(fast.flush(&mut store, &mut socket).unwrap());
        let expected: Vec<u8> = (count - 10..count)
            .flat_map(|n| std::iter::once(3).chain(n.to_le_bytes()))
            .collect();
        assert_eq!(
            socket.out, expected,
            "the shared frames still read as written"
        );
        assert_eq!(store.live(), 0);
        assert_eq!(store.memory(), 0);
    }
}
