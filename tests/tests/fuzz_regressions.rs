//! Replays the committed fuzz inputs through the fuzz targets' own checks (`fuzz/src/checks.rs`, included below
//! with `#[path]`, so stable `cargo test` runs exactly what the libFuzzer targets run): every file under
//! `fuzz/regressions/<target>/` (inputs that once broke a property, named after what they broke) and under
//! `fuzz/seeds/<target>/` (the seed corpora). A failing input is reported with its file name. See
//! docs/FUZZING.md.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[allow(dead_code)] // `codec` and `CHUNK_SEPARATOR` are for the fuzz targets and the seed generator.
#[path = "../../fuzz/src/checks.rs"]
mod checks;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted (none if the directory does not exist).
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `check` on each file; fails naming every file whose check panicked.
fn replay(target: &str, files: &[PathBuf], check: fn(&[u8])) {
    let mut failures = Vec::new();
    for path in files {
        let data = std::fs::read(path).expect("read fuzz input");
        if panic::catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failures.push(path.display().to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "fuzz target {target}: these inputs fail (see the panics above):\n  {}",
        failures.join("\n  ")
    );
}

fn replay_target(target: &str, check: fn(&[u8])) {
    let seeds = inputs("seeds", target);
    // A missing or empty seed directory would make this test pass without checking anything.
    assert!(!seeds.is_empty(), "no seeds for fuzz target {target}");
    let regressions = inputs("regressions", target);
    replay(target, &regressions, check);
    replay(target, &seeds, check);
    println!(
        "fuzz target {target}: {} regressions and {} seeds replayed",
        regressions.len(),
        seeds.len()
    );
}

#[test]
fn rawsocket() {
    replay_target("rawsocket", checks::rawsocket);
}

#[test]
fn websocket() {
    replay_target("websocket", checks::websocket);
}

#[test]
fn json() {
    replay_target("json", checks::json);
}

#[test]
fn msgpack() {
    replay_target("msgpack", checks::msgpack);
}

#[test]
fn cbor() {
    replay_target("cbor", checks::cbor);
}

#[test]
fn engine() {
    replay_target("engine", checks::engine);
}

#[test]
fn mqtt() {
    replay_target("mqtt", checks::mqtt);
}

/// The engine seeds reach past the handshake: sessions join, and events, calls and timeouts happen (otherwise the
/// fuzzer would start from inputs that test little).
#[test]
fn engine_seeds_reach_routing() {
    let mut total = kreisel_engine::Stats::default();
    for path in inputs("seeds", "engine") {
        let stats = checks::engine_stats(&std::fs::read(path).expect("read seed"));
        total.sessions_joined += stats.sessions_joined;
        total.events_sent += stats.events_sent;
        total.calls += stats.calls;
        total.errors_sent += stats.errors_sent;
        total.protocol_violations += stats.protocol_violations;
    }
    assert!(total.sessions_joined >= 20, "{total:?}");
    assert!(total.events_sent > 0, "{total:?}");
    assert!(total.calls > 0, "{total:?}");
    assert!(total.errors_sent > 0, "{total:?}");
    assert!(total.protocol_violations > 0, "{total:?}");
}

/// The authentication seed reaches every outcome in the realm with principals and roles: a ticket join, an
/// anonymous join with its role, a refused REGISTER (not authorized), a failed WAMP-CRA answer and a timed-out
/// challenge.
#[test]
fn engine_auth_seed_reaches_authentication_and_authorization() {
    let path = fuzz_dir().join("seeds/engine/auth_ticket_wampcra_anonymous_roles");
    let stats = checks::engine_stats(&std::fs::read(path).expect("read seed"));
    assert_eq!(stats.sessions_joined, 2, "{stats:?}");
    assert_eq!(stats.auth_failures, 2, "{stats:?}");
    assert_eq!(stats.not_authorized, 1, "{stats:?}");
}

/// The reload seed: an anonymous session in `secure` (role `g`) subscribes; a reload removes `g`, so its next
/// SUBSCRIBE is refused; a reload without roles lets its PUBLISH through; a reload without principals aborts a
/// ticket attempt between CHALLENGE and AUTHENTICATE.
#[test]
fn engine_reload_seed_rebinds_sessions_and_aborts_attempts() {
    let path = fuzz_dir().join("seeds/engine/auth_reload_rebinds_and_aborts");
    let stats = checks::engine_stats(&std::fs::read(path).expect("read seed"));
    assert_eq!(stats.sessions_joined, 1, "{stats:?}");
    assert_eq!(stats.not_authorized, 1, "{stats:?}");
    assert_eq!(stats.publications, 1, "{stats:?}");
    assert_eq!(stats.aborts_sent, 1, "{stats:?}");
}

/// The long and deep URIs seed (`DEEP_URIS` in fuzz/examples/make_seeds.rs): deep wildcard patterns and a long
/// prefix match and get their events and calls, and each URI past a bound (the 9-component publication, the
/// 98-byte call, the 9-component pattern) is refused, acknowledged with `wamp.error.invalid_uri`.
#[test]
fn engine_deep_uri_seed_reaches_matching_and_the_bounds() {
    let path = fuzz_dir().join("seeds/engine/deep_uris");
    let stats = checks::engine_stats(&std::fs::read(path).expect("read seed"));
    assert_eq!(stats.sessions_joined, 3, "{stats:?}");
    // a.a.a.a.a.a.a.a matches three wildcard patterns; com.aaaa… matches the prefix subscription.
    assert_eq!(stats.events_sent, 4, "{stats:?}");
    assert_eq!(stats.calls, 2, "{stats:?}");
    // Refused: the 9-component publication, the 98-byte call, the 9-component pattern; and the call its callee
    // never answered ends with wamp.error.canceled when the callee's transport closes.
    assert_eq!(stats.errors_sent, 4, "{stats:?}");
}

/// The MQTT seeds decode to whole sessions: the two paho-mqtt recordings (9 packets each) and the router's
/// packets (8 in 3.1.1, 10 in MQTT 5), so the fuzzer starts from inputs that reach every packet type.
#[test]
fn mqtt_seeds_decode_whole_sessions() {
    use kreisel_io::mqtt::{Decoder, Side, Version, PACKET_SIZE_MAX};
    for (seed, version, from, expected) in [
        ("paho_v311_session", Version::V311, Side::Client, 9),
        ("paho_v5_session", Version::V5, Side::Client, 9),
        ("router_v311", Version::V311, Side::Server, 6),
        ("router_v5", Version::V5, Side::Server, 8),
    ] {
        let data = std::fs::read(fuzz_dir().join("seeds/mqtt").join(seed)).expect("read seed");
        let stream = &data[3..];
        let decoder = Decoder {
            version,
            from,
            max_packet_size: PACKET_SIZE_MAX,
        };
        let (mut pos, mut count) = (0, 0);
        while let Ok(Some((n, _))) = decoder.decode(&stream[pos..]) {
            pos += n;
            count += 1;
        }
        assert_eq!((pos, count), (stream.len(), expected), "{seed}");
    }
}
