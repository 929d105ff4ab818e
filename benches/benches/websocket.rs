//! permessage-deflate's cost and gain for JSON telemetry: 200-byte sensor EVENTs compressed as kreisel does it,
//! each message on its own with the shard's compressor (no context takeover, the default: one compression per
//! event however many subscribers) or with a connection's own context (context takeover: better ratio, one
//! compression per subscriber), at levels 1 and 6; and inflating what a client sends. Before the timings it prints
//! the bytes on the wire per event for each mode.
//!
//! Run: `cargo bench -p kreisel-benches --bench websocket`.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kreisel_benches::criterion as config;
use kreisel_io::deflate::{negotiate, ConnDeflate, DeflateConfig, Params, ShardDeflate};

/// 1024 telemetry EVENTs as kreisel sends them in JSON (about 200 bytes each), values varying like a sensor's.
fn events() -> Vec<Vec<u8>> {
    (0..1024u64)
        .map(|i| {
            let sensor = i % 64;
            format!(
                "[36,5512315355,{},{{}},[{{\"sensor\":\"sensor-{sensor:04}\",\"ts\":{},\"temperature\":{:.2},\
                 \"humidity\":{:.1},\"pressure\":{:.2},\"battery\":{:.2},\"status\":\"ok\",\
                 \"location\":{{\"lat\":52.52{:02},\"lon\":13.40{:02}}}}}]]",
                4_429_313_566 + i * 7919,
                1_733_570_000_123 + i * 250,
                18.0 + (i * 37 % 700) as f64 / 100.0,
                30.0 + (i * 13 % 400) as f64 / 10.0,
                990.0 + (i * 29 % 4000) as f64 / 100.0,
                3.2 + (i * 7 % 100) as f64 / 100.0,
                sensor,
                sensor * 3 % 100,
            )
            .into_bytes()
        })
        .collect()
}

fn params(takeover: bool, level: u32) -> Params {
    let config = DeflateConfig {
        server_context_takeover: takeover,
        client_context_takeover: takeover,
        level,
        min_size: 0,
    };
    let offer = b"permessage-deflate; client_max_window_bits";
    negotiate([&offer[..]].into_iter(), &config)
        .expect("accepted")
        .0
}

/// `count` readings in one EVENT (a batch of telemetry, about `200 * count` bytes), from `events`.
fn batches(events: &[Vec<u8>], count: usize) -> Vec<Vec<u8>> {
    events
        .chunks(count)
        .map(|chunk| {
            let mut batch = b"[36,5512315355,4429313566,{},[".to_vec();
            for (i, event) in chunk.iter().enumerate() {
                // The reading itself: between the args list's brackets.
                let text = std::str::from_utf8(event).unwrap_or_default();
                let start = text.find("[{").map_or(0, |i| i + 1);
                let end = text.len().saturating_sub(2);
                if i > 0 {
                    batch.push(b',');
                }
                batch.extend_from_slice(&event[start..end]);
            }
            batch.extend_from_slice(b"]]");
            batch
        })
        .collect()
}

/// Bytes on the wire per message (payload only; the WebSocket header is 2-4 bytes either way).
fn report(messages: &[Vec<u8>], what: &str) {
    let plain: usize = messages.iter().map(Vec::len).sum();
    println!(
        "{what}: {} bytes each on average (uncompressed JSON), {} messages",
        plain / messages.len(),
        messages.len()
    );
    for takeover in [false, true] {
        for level in [1, 2, 6, 9] {
            let params = params(takeover, level);
            let mut conn = ConnDeflate::new(params);
            let mut shard = ShardDeflate::default();
            let mut out = Vec::new();
            let mut total = 0;
            let started = std::time::Instant::now();
            for message in messages {
                shard.compress(Some(&mut conn), &params, message, &mut out);
                total += out.len();
            }
            let per_message = started.elapsed().as_nanos() as usize / messages.len();
            println!(
                "  level {level}, {:>19}: {:>6} bytes per message ({:>3.0}% of the JSON), ~{per_message} ns to compress",
                if takeover {
                    "context takeover"
                } else {
                    "no context takeover"
                },
                total / messages.len(),
                100.0 * total as f64 / plain as f64
            );
        }
    }
}

fn compress(c: &mut Criterion) {
    let events = events();
    report(&events, "telemetry events");
    report(&batches(&events, 10), "batches of 10 readings");
    report(&batches(&events, 80), "batches of 80 readings");
    let mut group = c.benchmark_group("websocket/deflate/compress");
    group.throughput(Throughput::Elements(1));
    for (takeover, level) in [(false, 1), (false, 6), (true, 1), (true, 6)] {
        let params = params(takeover, level);
        let mut conn = ConnDeflate::new(params);
        let mut shard = ShardDeflate::default();
        let mut out = Vec::with_capacity(512);
        let mut i = 0;
        let name = if takeover { "takeover" } else { "shared" };
        group.bench_function(BenchmarkId::new(name, format!("level{level}")), |b| {
            b.iter(|| {
                i = (i + 1) % events.len();
                shard.compress(Some(&mut conn), &params, black_box(&events[i]), &mut out)
            })
        });
    }
    group.finish();
}

fn inflate(c: &mut Criterion) {
    let events = events();
    let mut group = c.benchmark_group("websocket/deflate/inflate");
    group.throughput(Throughput::Elements(1));
    for takeover in [false, true] {
        let params = params(takeover, 6);
        // What a client would send: compressed with the same parameters, in order.
        let mut sender = ConnDeflate::new(params);
        let mut shard = ShardDeflate::default();
        let compressed: Vec<Vec<u8>> = events
            .iter()
            .map(|event| {
                let mut out = Vec::new();
                shard.compress(Some(&mut sender), &params, event, &mut out);
                out
            })
            .collect();
        let name = if takeover { "takeover" } else { "shared" };
        let mut out = Vec::new();
        // With context takeover the stream must be inflated in order from the start: one pass per iteration
        // batch over all events.
        group.throughput(Throughput::Elements(compressed.len() as u64));
        group.bench_function(BenchmarkId::new(name, "1024 events"), |b| {
            b.iter(|| {
                let mut receiver = ConnDeflate::new(params);
                let mut shard = ShardDeflate::default();
                for message in &compressed {
                    shard
                        .inflate(Some(&mut receiver), black_box(message), 1 << 20, &mut out)
                        .expect("valid");
                }
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = compress, inflate
}
criterion_main!(benches);
