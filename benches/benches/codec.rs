//! Codec benchmarks: decode and encode per serializer, payload transcoding, and the JSON parser comparison behind
//! the codec's choice of parser (its span scanner against serde_json and simd-json on real WAMP messages; see
//! `docs/PERFORMANCE.md`).
//!
//! Run: `cargo bench -p kreisel-benches --bench codec`.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use kreisel_benches::{
    criterion as config, encode_as, publish_args, publish_readings, publish_string_1k, CALL_SMALL,
    EVENT_SMALL, PUBLISH_SMALL, RESULT_SMALL,
};
use kreisel_codec::{transcode, Message, Serializer};
use simd_json::prelude::*;

/// The messages of the decode/encode benches: (name, JSON text).
fn messages() -> Vec<(&'static str, String)> {
    vec![
        ("publish_small", PUBLISH_SMALL.to_owned()),
        ("publish_string_1k", publish_string_1k()),
        ("event_small", EVENT_SMALL.to_owned()),
        ("call_small", CALL_SMALL.to_owned()),
        ("result_small", RESULT_SMALL.to_owned()),
    ]
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec/decode");
    for (name, text) in messages() {
        for ser in Serializer::ALL {
            let frame = encode_as(ser, &text);
            group.throughput(Throughput::Bytes(frame.len() as u64));
            group.bench_with_input(BenchmarkId::new(name, ser.name()), &frame, |b, frame| {
                b.iter(|| ser.decode(black_box(frame)).expect("valid frame"))
            });
        }
    }
    group.finish();
}

/// Encoding a decoded message into the same serializer: the raw spans are copied, scalars written.
fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec/encode");
    let mut out = Vec::with_capacity(4096);
    for (name, text) in messages() {
        for ser in Serializer::ALL {
            let frame = encode_as(ser, &text);
            let msg = ser.decode(&frame).expect("valid frame");
            group.throughput(Throughput::Bytes(frame.len() as u64));
            group.bench_function(BenchmarkId::new(name, ser.name()), |b| {
                b.iter(|| {
                    out.clear();
                    ser.encode(black_box(&msg), &mut out);
                    out.len()
                })
            });
        }
    }
    group.finish();
}

/// Encoding a decoded message into the *other* serializer: every raw span is transcoded on the way.
fn encode_cross(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec/encode_cross");
    let mut out = Vec::with_capacity(4096);
    for (name, text) in messages() {
        for (from, to) in [
            (Serializer::Json, Serializer::MsgPack),
            (Serializer::MsgPack, Serializer::Json),
        ] {
            let frame = encode_as(from, &text);
            let msg = from.decode(&frame).expect("valid frame");
            group.throughput(Throughput::Bytes(frame.len() as u64));
            let id = format!("{}_to_{}", from.name(), to.name());
            group.bench_function(BenchmarkId::new(name, id), |b| {
                b.iter(|| {
                    out.clear();
                    to.encode(black_box(&msg), &mut out);
                    out.len()
                })
            });
        }
    }
    group.finish();
}

/// The `args` span of a PUBLISH frame.
/// Transcoding one payload (`args`) between JSON and MessagePack, as the router does once per publication when
/// subscribers use another serializer than the publisher.
fn transcode_payload(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec/transcode_args");
    let mut out = Vec::with_capacity(32 * 1024);
    let payloads = [
        ("small", PUBLISH_SMALL.to_owned()),
        ("readings_1k", publish_readings(1024)),
        ("readings_16k", publish_readings(16 * 1024)),
    ];
    for (name, text) in payloads {
        for (from, to) in [
            (Serializer::Json, Serializer::MsgPack),
            (Serializer::MsgPack, Serializer::Json),
        ] {
            let frame = encode_as(from, &text);
            let msg = from.decode(&frame).expect("valid frame");
            let args = publish_args(&msg);
            group.throughput(Throughput::Bytes(args.bytes().len() as u64));
            let id = format!("{}_to_{}", from.name(), to.name());
            group.bench_function(BenchmarkId::new(name, id), |b| {
                b.iter(|| {
                    out.clear();
                    transcode(black_box(args), to, &mut out);
                    out.len()
                })
            });
        }
    }
    group.finish();
}

/// What routing a PUBLISH needs: the request ID, the topic, the `acknowledge` option; the payload is kept as a
/// handle (span or tree) and black-boxed.
///
/// The `route_*` functions are `#[inline(never)]` so that a profiler (callgrind) can count instructions per call.
type Routing = (u64, usize, bool);

#[inline(never)]
fn route_kreisel(frame: &[u8]) -> Routing {
    let msg = Serializer::Json.decode(frame).expect("valid frame");
    let Message::Publish {
        request,
        options,
        topic,
        payload,
    } = msg
    else {
        panic!("expected PUBLISH")
    };
    let acknowledge = options
        .get("acknowledge")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    black_box(payload);
    (request.get(), topic.len(), acknowledge)
}

#[inline(never)]
fn route_serde_value(frame: &[u8], forward: Option<&mut Vec<u8>>) -> Routing {
    let value: serde_json::Value = serde_json::from_slice(frame).expect("valid frame");
    let items = value.as_array().expect("array");
    let request = items[1].as_u64().expect("request");
    let topic = items[3].as_str().expect("topic").len();
    let acknowledge = items[2]
        .get("acknowledge")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    if let Some(out) = forward {
        out.clear();
        serde_json::to_writer(&mut *out, &items[4]).expect("write to a Vec");
        serde_json::to_writer(&mut *out, &items[5]).expect("write to a Vec");
    }
    black_box(&items[4..]);
    (request, topic, acknowledge)
}

#[inline(never)]
fn route_serde_raw(frame: &[u8]) -> Routing {
    let items: Vec<&serde_json::value::RawValue> =
        serde_json::from_slice(frame).expect("valid frame");
    let request: u64 = serde_json::from_str(items[1].get()).expect("request");
    let topic: &str = serde_json::from_str(items[3].get()).expect("topic without escapes");
    let options = items[2].get();
    // An options dictionary is parsed only when it is not empty (`{}` is the common case).
    let acknowledge = options != "{}"
        && serde_json::from_str::<serde_json::Value>(options)
            .expect("options")
            .get("acknowledge")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
    black_box(&items[4..]);
    (request, topic.len(), acknowledge)
}

#[inline(never)]
fn route_simd_borrowed(
    frame: &mut [u8],
    buffers: Option<&mut simd_json::Buffers>,
    forward: Option<&mut Vec<u8>>,
) -> Routing {
    let value = match buffers {
        Some(buffers) => simd_json::to_borrowed_value_with_buffers(frame, buffers),
        None => simd_json::to_borrowed_value(frame),
    }
    .expect("valid frame");
    let items = value.as_array().expect("array");
    let request = items[1].as_u64().expect("request");
    let topic = items[3].as_str().expect("topic").len();
    let acknowledge = items[2].get_bool("acknowledge").unwrap_or(false);
    if let Some(out) = forward {
        out.clear();
        items[4].write(&mut *out).expect("write to a Vec");
        items[5].write(&mut *out).expect("write to a Vec");
    }
    black_box(&items[4..]);
    (request, topic, acknowledge)
}

#[inline(never)]
fn route_simd_tape(frame: &mut [u8], buffers: &mut simd_json::Buffers) -> Routing {
    let tape = simd_json::to_tape_with_buffers(frame, buffers).expect("valid frame");
    let value = tape.as_value();
    let request = value.get_idx(1).and_then(|v| v.as_u64()).expect("request");
    let topic = value
        .get_idx(3)
        .and_then(|v| v.into_string())
        .expect("topic")
        .len();
    let acknowledge = value
        .get_idx(2)
        .and_then(|v| v.get_bool("acknowledge"))
        .unwrap_or(false);
    black_box(value.get_idx(4));
    black_box(value.get_idx(5));
    (request, topic, acknowledge)
}

/// The design question: which JSON parser turns a PUBLISH frame into a routing-ready form fastest, on real WAMP
/// messages of 70 B (the small PUBLISH of the codec benches), ~170 B, ~1 KiB and ~16 KiB.
///
/// * `kreisel_scanner`: the codec's validating span scanner (`Serializer::Json.decode`); the payload stays a
///   span, forwarded without re-encoding.
/// * `serde_value`: `serde_json::from_slice::<Value>` (allocates a tree). `serde_value_forward` also re-encodes
///   `args`/`kwargs` into a reused buffer: what a router built on a tree must do to forward the payload.
/// * `serde_raw`: `serde_json::from_slice::<Vec<&RawValue>>` (spans per element, closest to the scanner), then
///   the request ID, topic and (non-empty) options parsed from their spans.
/// * `simd_borrowed*`: `simd_json::to_borrowed_value` on a fresh copy of the frame (simd-json parses in place);
///   the copy is made (and dropped) by `iter_batched_ref` outside the timed section; its cost alone is
///   `copy_only`.
///   `_buffers` reuses the parser's scratch buffers; `_forward` re-encodes the payload as above.
/// * `simd_tape`: `simd_json::to_tape_with_buffers` (flat tape, reused scratch buffers).
fn json_parsers(c: &mut Criterion) {
    let mut group = c.benchmark_group("json_parsers");
    let sizes = [
        ("tiny", PUBLISH_SMALL.to_owned()),
        ("small", publish_readings(100)),
        ("1k", publish_readings(1024)),
        ("16k", publish_readings(16 * 1024)),
    ];
    for (size, text) in sizes {
        let frame = text.into_bytes();
        let expected = route_kreisel(&frame);
        assert_eq!(route_serde_value(&frame, None), expected);
        assert_eq!(route_serde_raw(&frame), expected);
        assert_eq!(
            route_simd_borrowed(&mut frame.clone(), None, None),
            expected
        );
        let mut buffers = simd_json::Buffers::new(frame.len());
        assert_eq!(route_simd_tape(&mut frame.clone(), &mut buffers), expected);
        let mut out = Vec::with_capacity(frame.len());

        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_function(BenchmarkId::new("kreisel_scanner", size), |b| {
            b.iter(|| route_kreisel(black_box(&frame)))
        });
        group.bench_function(BenchmarkId::new("serde_value", size), |b| {
            b.iter(|| route_serde_value(black_box(&frame), None))
        });
        group.bench_function(BenchmarkId::new("serde_value_forward", size), |b| {
            b.iter(|| route_serde_value(black_box(&frame), Some(&mut out)))
        });
        group.bench_function(BenchmarkId::new("serde_raw", size), |b| {
            b.iter(|| route_serde_raw(black_box(&frame)))
        });
        group.bench_function(BenchmarkId::new("copy_only", size), |b| {
            b.iter(|| black_box(&frame).clone())
        });
        group.bench_function(BenchmarkId::new("simd_borrowed", size), |b| {
            b.iter_batched_ref(
                || frame.clone(),
                |copy| route_simd_borrowed(copy, None, None),
                BatchSize::SmallInput,
            )
        });
        group.bench_function(BenchmarkId::new("simd_borrowed_buffers", size), |b| {
            b.iter_batched_ref(
                || frame.clone(),
                |copy| route_simd_borrowed(copy, Some(&mut buffers), None),
                BatchSize::SmallInput,
            )
        });
        group.bench_function(BenchmarkId::new("simd_borrowed_forward", size), |b| {
            b.iter_batched_ref(
                || frame.clone(),
                |copy| route_simd_borrowed(copy, Some(&mut buffers), Some(&mut out)),
                BatchSize::SmallInput,
            )
        });
        group.bench_function(BenchmarkId::new("simd_tape", size), |b| {
            b.iter_batched_ref(
                || frame.clone(),
                |copy| route_simd_tape(copy, &mut buffers),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = decode, encode, encode_cross, transcode_payload, json_parsers
}
criterion_main!(benches);
