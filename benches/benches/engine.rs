//! Engine benchmarks in memory (no sockets): one publication fanned out to 1, 100 and 10 000 subscribers of one
//! subscription, and an RPC round trip (CALL → INVOCATION → YIELD → RESULT).
//!
//! Two sinks stand in for the io layer: [`CountingSink`] only counts recipients (the engine's own cost);
//! [`EncodingSink`] encodes each multicast once per serializer into reused buffers, as io does before sharing the
//! frame. Throughput is in events delivered (fan-out) or round trips (RPC).
//!
//! Run: `cargo bench -p kreisel-benches --bench engine`.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kreisel_benches::{criterion as config, elements, encode_as, is_bench_mode, PUBLISH_SMALL};
use kreisel_codec::{Dict, Field, Id, Message, Payload, Serializer};
use kreisel_engine::{ConnId, Peer, Recipients, Router, RouterConfig, SessionHandle, Sink};

const HELLO: &str =
    r#"[1, "realm1", {"roles": {"publisher": {}, "subscriber": {}, "caller": {}, "callee": {}}}]"#;
const SUBSCRIBE: &str = r#"[32, 1, {}, "com.myapp.sensor.temp"]"#;
const PUBLISH_ACK: &str =
    r#"[16, 123, {"acknowledge": true}, "com.myapp.sensor.temp", [21.5, "celsius"], {"id": 7}]"#;
const REGISTER: &str = r#"[64, 1, {}, "com.myapp.echo"]"#;
const CALL: &str = r#"[48, 7, {}, "com.myapp.echo", [1, "two"], {"three": 3}]"#;

/// Counts what the engine hands out; remembers the last INVOCATION's request ID (the callee must answer it).
#[derive(Default)]
struct CountingSink {
    delivered: u64,
    invocation: Option<Id>,
}

impl Sink for CountingSink {
    fn send(&mut self, _to: Peer, msg: &Message<'_>) {
        if let Message::Invocation { request, .. } = msg {
            self.invocation = Some(*request);
        }
        self.delivered += 1;
    }
    fn send_many(&mut self, to: Recipients<'_>, _msg: &Message<'_>) {
        self.delivered += to.iter().count() as u64;
    }
    fn close(&mut self, _to: Peer) {}
}

/// Encodes like the io layer: a multicast once per serializer present among its recipients, a unicast once,
/// always into cleared, reused buffers.
#[derive(Default)]
struct EncodingSink {
    frames: [Vec<u8>; Serializer::ALL.len()],
    single: Vec<u8>,
    delivered: u64,
    invocation: Option<Id>,
}

impl Sink for EncodingSink {
    fn send(&mut self, to: Peer, msg: &Message<'_>) {
        if let Message::Invocation { request, .. } = msg {
            self.invocation = Some(*request);
        }
        self.single.clear();
        to.serializer.encode(msg, &mut self.single);
        self.delivered += 1;
    }
    fn send_many(&mut self, to: Recipients<'_>, msg: &Message<'_>) {
        let mut encoded = [false; Serializer::ALL.len()];
        for peer in to.iter() {
            let slot = peer.serializer as usize;
            if !encoded[slot] {
                self.frames[slot].clear();
                peer.serializer.encode(msg, &mut self.frames[slot]);
                encoded[slot] = true;
            }
            self.delivered += 1;
        }
    }
    fn close(&mut self, _to: Peer) {}
}

fn decode(text: &str) -> Message<'_> {
    Serializer::Json
        .decode(text.as_bytes())
        .expect("fixture is a valid WAMP message")
}

/// Opens a session on `serializer` and joins realm1.
fn join(
    router: &mut Router,
    sink: &mut impl Sink,
    conn: u64,
    serializer: Serializer,
) -> SessionHandle {
    let handle = router.handle_open(ConnId(conn), serializer);
    router.handle_message(handle, &decode(HELLO), 0, sink);
    handle
}

/// A router with `subscribers` sessions on one subscription (serializers alternate when `mixed`, else JSON) and
/// one publisher (JSON, not subscribed).
fn fanout_router(subscribers: usize, mixed: bool) -> (Router, SessionHandle) {
    fanout_router_with(RouterConfig::default(), subscribers, mixed)
}

fn fanout_router_with(
    config: RouterConfig,
    subscribers: usize,
    mixed: bool,
) -> (Router, SessionHandle) {
    let mut config = config;
    // Room for every subscriber and the publisher beyond the default per-realm limit.
    let limit = &mut config.limits.sessions_per_realm_max;
    *limit = (*limit).max(subscribers + 1);
    let mut router = Router::new(config);
    let mut sink = CountingSink::default();
    let subscribe = decode(SUBSCRIBE);
    for i in 0..subscribers {
        let serializer = if mixed {
            Serializer::ALL[i % 2]
        } else {
            Serializer::Json
        };
        let handle = join(&mut router, &mut sink, i as u64, serializer);
        router.handle_message(handle, &subscribe, 0, &mut sink);
    }
    let publisher = join(&mut router, &mut sink, subscribers as u64, Serializer::Json);
    (router, publisher)
}

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

trait SinkCount: Sink {
    fn delivered(&self) -> u64;
}

impl SinkCount for CountingSink {
    fn delivered(&self) -> u64 {
        self.delivered
    }
}

impl SinkCount for EncodingSink {
    fn delivered(&self) -> u64 {
        self.delivered
    }
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

/// A router with one callee (registered `com.myapp.echo`) and one caller, both on `serializer`.
fn rpc_router(
    serializer: Serializer,
    sink: &mut impl Sink,
) -> (Router, SessionHandle, SessionHandle) {
    let mut router = Router::new(RouterConfig::default());
    let callee = join(&mut router, sink, 1, serializer);
    let caller = join(&mut router, sink, 2, serializer);
    router.handle_message(callee, &decode(REGISTER), 0, sink);
    (router, callee, caller)
}

/// `[70, request, {}, [1]]` written into `out`, in `serializer`.
fn yield_frame(serializer: Serializer, request: Id, out: &mut Vec<u8>) {
    out.clear();
    let payload = Payload {
        args: Some(Field::List(&YIELD_ARGS)),
        kwargs: None,
    };
    serializer.encode(
        &Message::Yield {
            request,
            options: Dict::EMPTY,
            payload,
        },
        out,
    );
}

const YIELD_ARGS: [Field<'static>; 1] = [Field::UInt(1)];

fn rpc(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine/rpc");
    group.throughput(elements(1));

    // The engine alone: decoded CALL in, YIELD built in memory, recipients counted.
    let mut sink = CountingSink::default();
    let (mut router, callee, caller) = rpc_router(Serializer::Json, &mut sink);
    let call = decode(CALL);
    let round_trip = |router: &mut Router, sink: &mut CountingSink| {
        router.handle_message(caller, &call, 0, sink);
        let request = sink
            .invocation
            .take()
            .expect("INVOCATION sent to the callee");
        let yield_msg = Message::Yield {
            request,
            options: Dict::EMPTY,
            payload: Payload {
                args: Some(Field::List(&YIELD_ARGS)),
                kwargs: None,
            },
        };
        router.handle_message(callee, &yield_msg, 0, sink);
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

criterion_group! {
    name = benches;
    config = config();
    targets = publish, rpc, authorization
}
criterion_main!(benches);
