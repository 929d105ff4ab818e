//! Engine benchmarks in memory (no sockets): one publication fanned out to 1, 100 and 10 000 subscribers of one
//! subscription, and an RPC round trip (CALL → INVOCATION → YIELD → RESULT); the same across two shards.
//!
//! The fixtures (routers, sessions, the counting and encoding sinks) are in `kreisel_benches::engine`.
//! Throughput is in events delivered (fan-out) or round trips (RPC).
//!
//! Run: `cargo bench -p kreisel-benches --bench engine`.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kreisel_benches::engine::{
    decode, fanout_router, fanout_router_with, join, rpc_round_trip, rpc_router, shard_fanout,
    shard_rpc, yield_frame, yield_message, CountingSink, EncodingSink, SinkCount, CALL,
    PUBLISH_ACK,
};
use kreisel_benches::{criterion as config, elements, encode_as, is_bench_mode, PUBLISH_SMALL};
use kreisel_codec::{Message, Serializer};
use kreisel_engine::{Router, RouterConfig, SessionHandle};

fn subscriber_counts() -> Vec<usize> {
    if is_bench_mode() {
        vec![1, 100, 10_000]
    } else {
        vec![1, 100]
    }
}

/// One publication, already decoded, through the engine into a sink; `expected` events per publication (plus a
/// PUBLISHED when acknowledged).
fn bench_publish(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: String,
    (router, publisher): &mut (Router, SessionHandle),
    sink: &mut impl SinkCount,
    publish: &Message<'_>,
    expected: u64,
) {
    let before = sink.delivered();
    router.handle_message(*publisher, publish, 0, sink);
    assert_eq!(
        sink.delivered() - before,
        expected,
        "{id:?}: every subscriber gets the event"
    );
    group.bench_function(&id, |b| {
        b.iter(|| router.handle_message(*publisher, black_box(publish), 0, sink))
    });
}

fn publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine/publish");
    let plain = decode(PUBLISH_SMALL);
    let acknowledged = decode(PUBLISH_ACK);
    for n in subscriber_counts() {
        let events = n as u64;
        group.throughput(elements(n));
        let mut json_only = fanout_router(n, false);
        for (name, msg, ack) in [("count", &plain, 0), ("count_ack", &acknowledged, 1)] {
            let mut sink = CountingSink::default();
            let id = format!("{name}/{n}");
            bench_publish(&mut group, id, &mut json_only, &mut sink, msg, events + ack);
        }
        for (name, msg, ack) in [
            ("encode_json", &plain, 0),
            ("encode_json_ack", &acknowledged, 1),
        ] {
            let mut sink = EncodingSink::default();
            let id = format!("{name}/{n}");
            bench_publish(&mut group, id, &mut json_only, &mut sink, msg, events + ack);
        }
        drop(json_only);
        if n > 1 {
            let mut mixed = fanout_router(n, true);
            let mut sink = EncodingSink::default();
            let id = format!("encode_mixed/{n}");
            bench_publish(&mut group, id, &mut mixed, &mut sink, &plain, events);
            // The whole per-publication path: decode the frame, route, encode once per serializer.
            let frame = encode_as(Serializer::Json, PUBLISH_SMALL);
            let (router, publisher) = &mut mixed;
            group.bench_function(BenchmarkId::new("decode_encode_mixed", n), |b| {
                b.iter(|| {
                    let msg = Serializer::Json
                        .decode(black_box(&frame))
                        .expect("valid frame");
                    router.handle_message(*publisher, &msg, 0, &mut sink)
                })
            });
        }
    }
    group.finish();
}

fn rpc(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine/rpc");
    group.throughput(elements(1));

    // The engine alone: decoded CALL in, YIELD built in memory, recipients counted.
    let mut sink = CountingSink::default();
    let (mut router, callee, caller) = rpc_router(Serializer::Json, &mut sink);
    let call = decode(CALL);
    let round_trip = |router: &mut Router, sink: &mut CountingSink| {
        rpc_round_trip(router, sink, (caller, callee), &call)
    };
    let before = sink.delivered;
    round_trip(&mut router, &mut sink);
    assert_eq!(sink.delivered - before, 2, "INVOCATION and RESULT");
    group.bench_function("engine_only", |b| {
        b.iter(|| round_trip(&mut router, &mut sink))
    });

    // Decode each frame, route, encode each answer: the whole in-memory path per serializer.
    for serializer in Serializer::ALL {
        let mut sink = EncodingSink::default();
        let (mut router, callee, caller) = rpc_router(serializer, &mut sink);
        let call_frame = encode_as(serializer, CALL);
        let mut yield_buf = Vec::with_capacity(64);
        let mut round_trip = |router: &mut Router, sink: &mut EncodingSink| {
            let call = serializer.decode(&call_frame).expect("valid frame");
            router.handle_message(caller, &call, 0, sink);
            let request = sink
                .invocation
                .take()
                .expect("INVOCATION sent to the callee");
            yield_frame(serializer, request, &mut yield_buf);
            let yield_msg = serializer.decode(&yield_buf).expect("valid frame");
            router.handle_message(callee, &yield_msg, 0, sink);
        };
        round_trip(&mut router, &mut sink);
        assert!(matches!(
            serializer.decode(&sink.single),
            Ok(Message::Result { .. })
        ));
        group.bench_function(BenchmarkId::new("codec", serializer.name()), |b| {
            b.iter(|| round_trip(&mut router, &mut sink))
        });
    }
    group.finish();
}

/// The cost of authorization: an acknowledged publication to one subscriber in realm1 without roles, and with
/// roles (every PUBLISH and SUBSCRIBE of the anonymous role checked against exact, prefix and wildcard rules; the
/// deciding rule is a prefix one, found after the exact map and both pattern trees are consulted).
fn authorization(c: &mut Criterion) {
    use kreisel_engine::uri::MatchPolicy::*;
    use kreisel_engine::{PermissionConfig, Perms, RoleConfig};
    let mut group = c.benchmark_group("engine/authz");
    group.throughput(elements(1));
    let rule = |uri: &str, policy, allow| PermissionConfig {
        uri: uri.into(),
        policy,
        allow,
    };
    let mut enforced = RouterConfig::default();
    enforced.realms[0].auth.roles = Some(vec![RoleConfig {
        name: "anonymous".into(),
        permissions: vec![
            rule("com.myapp.", Prefix, Perms::ACTIONS),
            rule(
                "com.myapp.sensor.",
                Prefix,
                Perms::PUBLISH | Perms::SUBSCRIBE,
            ),
            rule("com.myapp..admin", Wildcard, Perms::NONE),
            rule("com.myapp.sensor.secret", Exact, Perms::NONE),
            rule("com.other", Exact, Perms::CALL),
        ],
        authorizer: None,
    }]);
    let acknowledged = decode(PUBLISH_ACK);
    for (name, config) in [("open", RouterConfig::default()), ("roles", enforced)] {
        let mut router = fanout_router_with(config, 1, false);
        let mut sink = CountingSink::default();
        bench_publish(
            &mut group,
            format!("publish_ack/{name}"),
            &mut router,
            &mut sink,
            &acknowledged,
            2,
        );
    }
    group.finish();
}

/// The cost of delivering to subscribers whose role allows a pattern only in part: 100 subscribers of a prefix
/// subscription their role may use everywhere (`com.myapp.sensor.`: no check at delivery) against 100 of one it
/// may use only in part (`com.myapp.`, whose `com.myapp.admin.` is off limits: each publication's topic is
/// checked for each of them, a trie walk per subscriber).
fn restricted_delivery(c: &mut Criterion) {
    use kreisel_engine::uri::MatchPolicy::*;
    use kreisel_engine::{PermissionConfig, Perms, RoleConfig};
    const SUBSCRIBERS: usize = 100;
    let mut group = c.benchmark_group("engine/authz_delivery");
    group.throughput(elements(SUBSCRIBERS));
    let rule = |uri: &str, policy, allow| PermissionConfig {
        uri: uri.into(),
        policy,
        allow,
    };
    let plain = decode(PUBLISH_SMALL);
    for (name, pattern) in [
        ("everywhere", "com.myapp.sensor."),
        ("in_part", "com.myapp."),
    ] {
        let mut config = RouterConfig::default();
        config.limits.sessions_per_realm_max = SUBSCRIBERS + 1;
        config.realms[0].auth.roles = Some(vec![RoleConfig {
            name: "anonymous".into(),
            permissions: vec![
                rule("com.myapp.", Prefix, Perms::PUBLISH | Perms::SUBSCRIBE),
                rule("com.myapp.admin.", Prefix, Perms::NONE),
            ],
            authorizer: None,
        }]);
        let mut router = Router::new(config);
        let mut sink = CountingSink::default();
        let subscribe = format!(r#"[32, 1, {{"match": "prefix"}}, "{pattern}"]"#);
        let subscribe = decode(&subscribe);
        for i in 0..SUBSCRIBERS {
            let handle = join(&mut router, &mut sink, i as u64, Serializer::Json);
            router.handle_message(handle, &subscribe, 0, &mut sink);
        }
        let publisher = join(&mut router, &mut sink, SUBSCRIBERS as u64, Serializer::Json);
        let mut fixture = (router, publisher);
        let id = format!("publish/{name}/{SUBSCRIBERS}");
        bench_publish(
            &mut group,
            id,
            &mut fixture,
            &mut sink,
            &plain,
            SUBSCRIBERS as u64,
        );
    }
    group.finish();
}

/// Two shards in memory (peer messages encoded and decoded as the io layer's link does, without the threads):
/// a publication to subscribers on the publisher's shard against subscribers on the other shard, and an RPC round
/// trip with the callee on the caller's shard against the other shard. The difference is what crossing costs.
fn shards(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine/shards");
    let publish = decode(PUBLISH_SMALL);
    for n in [1, 100] {
        group.throughput(elements(n));
        for (name, on) in [("publish_same_shard", 0), ("publish_other_shard", 1)] {
            let (mut pair, publisher) = shard_fanout(n, on);
            let before = pair.delivered();
            pair.handle(0, publisher, &publish);
            assert_eq!(
                pair.delivered() - before,
                n as u64,
                "{name}: every subscriber"
            );
            group.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| pair.handle(0, publisher, black_box(&publish)))
            });
        }
    }
    group.throughput(elements(1));
    let call = decode(CALL);
    for (name, on) in [("rpc_same_shard", 0), ("rpc_other_shard", 1)] {
        let (mut pair, callee, caller) = shard_rpc(on);
        group.bench_function(name, |b| {
            b.iter(|| {
                pair.handle(0, caller, black_box(&call));
                let request = pair.sinks[on].wamp.invocation.take().expect("INVOCATION");
                pair.handle(on, callee, &yield_message(request));
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = publish, rpc, authorization, restricted_delivery, shards
}
criterion_main!(benches);
