//! # kreisel-benches
//!
//! Shared fixtures of the criterion benches in `benches/benches/`: realistic WAMP messages as JSON text (and their
//! MessagePack encodings, made by the codec itself), and the switch between a real benchmark run and the single
//! smoke pass that `cargo test --all-targets` makes of every bench.
//!
//! * `codec`: decode/encode per serializer, payload transcoding, and the JSON parser comparison (the codec's span
//!   scanner against serde_json and simd-json).
//! * `trie`: `UriTrie` matching by size (10 .. 1M entries), hit/miss, prefix, wildcard, depth, and churn.
//! * `engine`: in-memory fan-out of one publication to 1 .. 10k subscribers, and an RPC round trip.
//! * `scram`: a WAMP-SCRAM attempt (HELLO to CHALLENGE, AUTHENTICATE right, wrong, unknown authid), a decoy, and
//!   deriving a credential with autobahn's Argon2id parameters.
pub mod engine;

use std::fmt::Write as _;
use std::time::Duration;

use criterion::Criterion;
use kreisel_codec::Serializer;

/// Whether criterion measures (`cargo bench`, which passes `--bench`) rather than smoke-tests each benchmark once
/// (`cargo test --benches`). Setups that take seconds (a million trie entries, ten thousand sessions) shrink in
/// test mode so the test suite stays fast.
pub fn is_bench_mode() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

/// Criterion with short warm-up and measurement times: the benches share a 2-core machine with builds. Command
/// line flags (`--warm-up-time`, `--measurement-time`) still override these.
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
        .configure_from_args()
}

/// `text` (one JSON WAMP message) encoded by the codec in serializer `ser`.
pub fn encode_as(ser: Serializer, text: &str) -> Vec<u8> {
    let msg = Serializer::Json
        .decode(text.as_bytes())
        .expect("fixture is a valid WAMP message");
    let mut out = Vec::new();
    ser.encode(&msg, &mut out);
    out
}

/// The small PUBLISH of the codec benches (70 bytes of JSON).
pub const PUBLISH_SMALL: &str =
    r#"[16, 123, {}, "com.myapp.sensor.temp", [21.5, "celsius"], {"id": 7}]"#;

/// EVENT as a router sends it to a subscriber.
pub const EVENT_SMALL: &str = r#"[36, 5512315355, 4429313566, {}, [21.5, "celsius"], {"id": 7}]"#;

/// CALL with positional and keyword arguments.
pub const CALL_SMALL: &str = r#"[48, 7814135, {"timeout": 5000}, "com.myapp.user.get", [42, "full"], {"fields": ["name", "email"]}]"#;

/// RESULT carrying a small record.
pub const RESULT_SMALL: &str = r#"[50, 7814135, {}, [{"id": 42, "name": "Ada Lovelace", "email": "ada@example.org", "active": true}]]"#;

/// PUBLISH whose single positional argument is a 1 KiB ASCII string.
pub fn publish_string_1k() -> String {
    let payload: String = (0..1024)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    format!(r#"[16, 124, {{}}, "com.myapp.log.line", ["{payload}"]]"#)
}

/// The `args` of a decoded PUBLISH fixture.
pub fn publish_args<'a>(msg: &kreisel_codec::Message<'a>) -> kreisel_codec::RawValue<'a> {
    match msg {
        kreisel_codec::Message::Publish { payload, .. } => payload
            .args
            .and_then(|args| args.as_raw())
            .expect("fixture has args"),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// A realistic PUBLISH of about `target` bytes of JSON: options with `acknowledge`, a topic, and a payload of
/// sensor readings (nested objects, floats, integers, strings, a boolean) that grows until the frame reaches the
/// target. ~100 B, ~1 KiB and ~16 KiB are the sizes of the parser comparison.
pub fn publish_readings(target: usize) -> String {
    let head = r#"[16, 7814135, {"acknowledge": true}, "com.myapp.sensor.temperature", ["#;
    let tail = r#"], {"site": "plant-3", "batch": 42}]"#;
    let mut readings = String::new();
    let mut i = 0u32;
    loop {
        let mut next = readings.clone();
        if i > 0 {
            next.push_str(", ");
        }
        write!(
            next,
            r#"{{"t": {}, "v": {}.{}, "unit": "celsius", "ok": {}}}"#,
            1_732_521_600 + i,
            18 + i % 9,
            i % 10,
            !i.is_multiple_of(7)
        )
        .expect("writing to a String cannot fail");
        if i > 0 && head.len() + next.len() + tail.len() > target {
            break;
        }
        readings = next;
        i += 1;
    }
    format!("{head}{readings}{tail}")
}

/// Number of events (recipient deliveries) as criterion elements.
pub fn elements(count: usize) -> criterion::Throughput {
    criterion::Throughput::Elements(count as u64)
}
