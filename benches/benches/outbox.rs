//! The outgoing side of a shard without sockets: one EVENT frame taken from the frame store, queued for 100
//! subscribers' outboxes and written out (into `io::sink`, so the frame is released), per iteration. Measured with
//! the store as a steady load leaves it, and right after a slow subscriber's backlog of 100 000 frames drained
//! (every slot it took is free until the store next gives slots back), where taking and freeing a slot costs most.
//!
//! Then what closing a slow subscriber's connection costs: its backlog of 15 000 frames of 1 KiB (what a 16 MiB
//! `outbox_max` holds) released at once, against the most one loop turn now does (`Outbox::clear`, then one
//! `FrameStore::reap`; the rest follows over the next turns).
//!
//! Run: `cargo bench -p kreisel-benches --bench outbox`.
use std::hint::black_box;
use std::io;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kreisel_benches::criterion as config;
use kreisel_io::outbox::{FrameStore, Outbox};

const SUBSCRIBERS: usize = 100;
const BACKLOG: usize = 100_000;
const CLOSED_BACKLOG: usize = 15_000;

/// One event: a frame encoded once, queued for every outbox behind a RawSocket header, and written.
fn fan_out(store: &mut FrameStore, outboxes: &mut [Outbox], payload: &[u8]) {
    let frame = store.alloc();
    store.bytes_mut(frame).extend_from_slice(payload);
    for outbox in outboxes.iter_mut() {
        outbox.push(store, &[0, 0, 0, payload.len() as u8], frame);
    }
    for outbox in outboxes.iter_mut() {
        let _ = black_box(outbox.flush(store, &mut io::sink()));
    }
}

fn bench(c: &mut Criterion) {
    let payload = vec![b'x'; 200];
    let mut group = c.benchmark_group("outbox");
    group.throughput(Throughput::Elements(SUBSCRIBERS as u64));

    let mut store = FrameStore::default();
    let mut outboxes: Vec<Outbox> = (0..SUBSCRIBERS).map(|_| Outbox::default()).collect();
    group.bench_function("fan-out to 100, steady", |b| {
        b.iter(|| fan_out(&mut store, &mut outboxes, &payload))
    });

    // A slow subscriber's queue of 100 000 frames, then dropped: its slots are all free.
    let mut store = FrameStore::default();
    let mut slow = Outbox::default();
    for _ in 0..BACKLOG {
        let frame = store.alloc();
        store.bytes_mut(frame).extend_from_slice(&payload[..16]);
        slow.push(&mut store, &[0, 0, 0, 16], frame);
    }
    slow.clear(&mut store);
    while store.reap() {}
    group.bench_function("fan-out to 100, after a drained backlog", |b| {
        b.iter(|| fan_out(&mut store, &mut outboxes, &payload))
    });
    group.finish();

    let mut group = c.benchmark_group("close");
    let event = vec![b'x'; 1024];
    let backlog = || {
        let mut store = FrameStore::default();
        let mut slow = Outbox::default();
        for _ in 0..CLOSED_BACKLOG {
            let frame = store.alloc();
            store.bytes_mut(frame).extend_from_slice(&event);
            slow.push(&mut store, &[0, 0, 4, 0], frame);
        }
        (store, slow)
    };
    group.bench_function("a backlog of 15 000 frames released at once", |b| {
        b.iter_batched(
            backlog,
            |(mut store, mut slow)| {
                slow.clear(&mut store);
                while store.reap() {}
                (store, slow)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("the same, one turn's share (clear, one reap)", |b| {
        b.iter_batched(
            backlog,
            |(mut store, mut slow)| {
                slow.clear(&mut store);
                black_box(store.reap());
                (store, slow)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench
}
criterion_main!(benches);
