//! The steady-state publish and call paths allocate nothing: decode (codec) → route (engine) → encode once per
//! serializer (codec, into reused buffers, as the io layer does with its frame pool). Across shards too: a
//! publication or a call from a session on one shard to sessions on another goes through the peer-message
//! encoding into reused buffers (as the io layer's pooled link buffers) and the receiving shard's engine.
//!
//! A counting global allocator counts allocations made by this thread while `COUNTING` is set.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use std::collections::VecDeque;

use kreisel_codec::{Message, Serializer};
use kreisel_engine::link::{self, PeerMessage, ShardSet};
use kreisel_engine::{
    ConnId, Peer, PermissionConfig, Perms, Recipients, RoleConfig, Router, RouterConfig,
    SessionHandle, Sink,
};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the wrapper only bumps a thread-local
// counter (const-initialized thread locals with no destructor, so touching them never allocates or recurses).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn count() {
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCATIONS.with(|n| n.get())
}

/// Encodes like the io layer: once per serializer per multicast, into buffers that are cleared and reused.
#[derive(Default)]
struct EncodingSink {
    buffers: [Vec<u8>; Serializer::ALL.len()],
    delivered: u64,
    last: Vec<u8>,
}

impl Sink for EncodingSink {
    fn send(&mut self, to: Peer, msg: &Message<'_>) {
        self.last.clear();
        to.serializer.encode(msg, &mut self.last);
        self.delivered += 1;
    }
    fn send_many(&mut self, to: Recipients<'_>, msg: &Message<'_>) {
        let mut encoded = [false; Serializer::ALL.len()];
        for peer in to.iter() {
            let slot = peer.serializer as usize;
            if !encoded[slot] {
                self.buffers[slot].clear();
                peer.serializer.encode(msg, &mut self.buffers[slot]);
                encoded[slot] = true;
            }
            self.delivered += 1;
        }
    }
    fn close(&mut self, _to: Peer) {}
}

fn join(
    router: &mut Router,
    sink: &mut EncodingSink,
    conn: u64,
    serializer: Serializer,
) -> SessionHandle {
    let handle = router.handle_open(ConnId(conn), serializer);
    let hello = encode(
        serializer,
        r#"[1, "realm1", {"roles": {"publisher": {}, "subscriber": {}, "caller": {}, "callee": {}}}]"#,
    );
    router.handle_message(handle, &serializer.decode(&hello).unwrap(), 0, sink);
    handle
}

fn encode(serializer: Serializer, json_text: &str) -> Vec<u8> {
    let msg = Serializer::Json.decode(json_text.as_bytes()).unwrap();
    let mut out = Vec::new();
    serializer.encode(&msg, &mut out);
    out
}

fn deliver(
    router: &mut Router,
    sink: &mut EncodingSink,
    handle: SessionHandle,
    serializer: Serializer,
    frame: &[u8],
) {
    let msg = serializer.decode(frame).expect("valid frame");
    router.handle_message(handle, &msg, 0, sink);
}

/// The embedded default (no authorization), and realm1 with roles: every PUBLISH, SUBSCRIBE, CALL and REGISTER
/// of the anonymous role is then checked against prefix, wildcard and exact rules.
fn configs() -> [RouterConfig; 2] {
    use kreisel_engine::uri::MatchPolicy::*;
    let rule = |uri: &str, policy, allow| PermissionConfig {
        uri: uri.into(),
        policy,
        allow,
    };
    let mut enforced = RouterConfig::default();
    enforced.realms[0].auth.roles = Some(vec![RoleConfig {
        name: "anonymous".into(),
        permissions: vec![
            rule("com.", Prefix, Perms::ACTIONS),
            rule("com.sensor.", Prefix, Perms::PUBLISH | Perms::SUBSCRIBE),
            rule("com..admin", Wildcard, Perms::NONE),
            rule("com.secret", Exact, Perms::NONE),
        ],
        authorizer: None,
    }]);
    [RouterConfig::default(), enforced]
}

#[test]
fn steady_state_publish_allocates_nothing() {
    for (publisher_serializer, config) in Serializer::ALL
        .into_iter()
        .flat_map(|s| configs().map(|c| (s, c)))
    {
        let mut router = Router::new(config);
        let mut sink = EncodingSink::default();
        for i in 0..100 {
            // Subscribers of every serializer, so each publication is encoded (and transcoded) once per serializer.
            let serializer = Serializer::ALL[i % Serializer::ALL.len()];
            let handle = join(&mut router, &mut sink, i as u64, serializer);
            deliver(
                &mut router,
                &mut sink,
                handle,
                serializer,
                &encode(serializer, r#"[32, 1, {}, "com.sensor.temp"]"#),
            );
        }
        let publisher = join(&mut router, &mut sink, 1000, publisher_serializer);
        let publish = encode(
            publisher_serializer,
            r#"[16, 2, {"acknowledge": true}, "com.sensor.temp", [21.5, "celsius", "\u0000AQID"], {"id": 7}]"#,
        );
        // Warm up: buffers reach their steady-state capacity.
        for _ in 0..10 {
            deliver(
                &mut router,
                &mut sink,
                publisher,
                publisher_serializer,
                &publish,
            );
        }
        let before = sink.delivered;
        let count = allocations(|| {
            for _ in 0..1000 {
                deliver(
                    &mut router,
                    &mut sink,
                    publisher,
                    publisher_serializer,
                    &publish,
                );
            }
        });
        assert_eq!(
            sink.delivered - before,
            1000 * 101,
            "100 events and one PUBLISHED per publication"
        );
        assert_eq!(
            count,
            0,
            "{}: allocations on the steady-state publish path",
            publisher_serializer.name()
        );
    }
}

#[test]
fn steady_state_filtered_publish_allocates_nothing() {
    // Black/white lists and a subscriber asking for the publisher's identity: recipients are collected into the
    // router's reused buffers, and every event is still encoded once per serializer per group.
    for publisher_serializer in Serializer::ALL {
        let mut router = Router::new(RouterConfig::default());
        let mut sink = EncodingSink::default();
        let mut excluded = Vec::new();
        for i in 0..100 {
            let serializer = Serializer::ALL[i % Serializer::ALL.len()];
            let handle = join(&mut router, &mut sink, i as u64, serializer);
            let welcome = serializer.decode(&sink.last).expect("WELCOME");
            let Message::Welcome { session, .. } = welcome else {
                panic!("expected WELCOME")
            };
            if i % 10 == 0 {
                excluded.push(session.get());
            }
            let options = if i == 1 {
                r#"{"disclose_publisher": true}"#
            } else {
                "{}"
            };
            deliver(
                &mut router,
                &mut sink,
                handle,
                serializer,
                &encode(
                    serializer,
                    &format!(r#"[32, 1, {options}, "com.sensor.temp"]"#),
                ),
            );
        }
        let publisher = join(&mut router, &mut sink, 1000, publisher_serializer);
        let publish = encode(
            publisher_serializer,
            &format!(
                r#"[16, 2, {{"acknowledge": true, "exclude": {excluded:?}, "eligible_authrole": ["anonymous"], "exclude_authid": ["nobody"]}}, "com.sensor.temp", [21.5], {{"id": 7}}]"#
            ),
        );
        for _ in 0..10 {
            deliver(
                &mut router,
                &mut sink,
                publisher,
                publisher_serializer,
                &publish,
            );
        }
        let before = sink.delivered;
        let count = allocations(|| {
            for _ in 0..1000 {
                deliver(
                    &mut router,
                    &mut sink,
                    publisher,
                    publisher_serializer,
                    &publish,
                );
            }
        });
        assert_eq!(
            sink.delivered - before,
            1000 * 91,
            "90 admitted subscribers and one PUBLISHED per publication"
        );
        assert_eq!(
            count,
            0,
            "{}: allocations on the filtered publish path",
            publisher_serializer.name()
        );
    }
}

#[test]
fn steady_state_call_allocates_nothing() {
    for (serializer, config) in Serializer::ALL
        .into_iter()
        .flat_map(|s| configs().map(|c| (s, c)))
    {
        let mut router = Router::new(config);
        let mut sink = EncodingSink::default();
        let callee = join(&mut router, &mut sink, 1, serializer);
        let caller = join(&mut router, &mut sink, 2, serializer);
        deliver(
            &mut router,
            &mut sink,
            callee,
            serializer,
            &encode(serializer, r#"[64, 1, {}, "com.echo"]"#),
        );
        let call = encode(
            serializer,
            r#"[48, 7, {}, "com.echo", [1, "two"], {"three": 3}]"#,
        );
        let round_trip = |router: &mut Router, sink: &mut EncodingSink| {
            deliver(router, sink, caller, serializer, &call);
            // The INVOCATION's request ID is the callee's next invocation ID: read it back from the encoded bytes.
            let invocation = serializer.decode(&sink.last).expect("INVOCATION");
            let Message::Invocation { request, .. } = invocation else {
                panic!("expected INVOCATION")
            };
            let mut yield_frame = [0u8; 64];
            let len = yield_message(serializer, request.get(), &mut yield_frame);
            deliver(router, sink, callee, serializer, &yield_frame[..len]);
            assert!(matches!(
                serializer.decode(&sink.last),
                Ok(Message::Result { .. })
            ));
        };
        for _ in 0..10 {
            round_trip(&mut router, &mut sink);
        }
        let count = allocations(|| {
            for _ in 0..1000 {
                round_trip(&mut router, &mut sink);
            }
        });
        assert_eq!(
            count,
            0,
            "{}: allocations on the steady-state call path",
            serializer.name()
        );
    }
}

/// `[70, request, {}, [1]]` written into a stack buffer without allocating.
fn yield_message(serializer: Serializer, request: u64, out: &mut [u8; 64]) -> usize {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(&mut out[..]);
    match serializer {
        Serializer::Json => {
            write!(cursor, "[70,{request},{{}},[1]]").unwrap();
        }
        Serializer::MsgPack => {
            rmp::encode::write_array_len(&mut cursor, 4).unwrap();
            rmp::encode::write_uint(&mut cursor, 70).unwrap();
            rmp::encode::write_uint(&mut cursor, request).unwrap();
            rmp::encode::write_map_len(&mut cursor, 0).unwrap();
            rmp::encode::write_array_len(&mut cursor, 1).unwrap();
            rmp::encode::write_uint(&mut cursor, 1).unwrap();
        }
        Serializer::Cbor => {
            // [70, request, {}, [1]]: array(4), uint 70 (one-byte argument), request as a uint64 (a valid, if not
            // the shortest, head), empty map, array(1) holding 1.
            cursor.write_all(&[0x84, 0x18, 70, 0x1b]).unwrap();
            cursor.write_all(&request.to_be_bytes()).unwrap();
            cursor.write_all(&[0xa0, 0x81, 0x01]).unwrap();
        }
    }
    cursor.position() as usize
}

/// One shard's sink: WAMP messages as [`EncodingSink`], peer messages encoded into reused buffers, queued for the
/// other shard.
#[derive(Default)]
struct ShardSink {
    wamp: EncodingSink,
    queue: VecDeque<Vec<u8>>,
    free: Vec<Vec<u8>>,
}

impl Sink for ShardSink {
    fn send(&mut self, to: Peer, msg: &Message<'_>) {
        self.wamp.send(to, msg);
    }
    fn send_many(&mut self, to: Recipients<'_>, msg: &Message<'_>) {
        self.wamp.send_many(to, msg);
    }
    fn close(&mut self, to: Peer) {
        self.wamp.close(to);
    }
    fn peer(&mut self, to: ShardSet, msg: &PeerMessage<'_>) {
        assert_eq!(to.len(), 1, "two shards: only the other one");
        let mut buffer = self.free.pop().unwrap_or_default();
        buffer.clear();
        link::encode(msg, &mut buffer);
        self.queue.push_back(buffer);
    }
}

/// Two shards of one router.
fn two_shards(config: &RouterConfig) -> ([Router; 2], [ShardSink; 2]) {
    let shard = |id| {
        Router::new(RouterConfig {
            shard: id,
            shards: 2,
            ..config.clone()
        })
    };
    ([shard(0), shard(1)], Default::default())
}

/// Delivers peer messages between the two shards until none is left.
fn pump(routers: &mut [Router; 2], sinks: &mut [ShardSink; 2]) {
    loop {
        let mut moved = false;
        for from in 0..2 {
            let to = 1 - from;
            while let Some(buffer) = sinks[from].queue.pop_front() {
                moved = true;
                let msg = link::decode(&buffer, true).expect("a peer message");
                routers[to].handle_peer(from as u16, &msg, 0, &mut sinks[to]);
                sinks[from].free.push(buffer);
            }
        }
        if !moved {
            return;
        }
    }
}

/// A session of shard `shard`, joined and known to the other shard.
fn join_on(
    routers: &mut [Router; 2],
    sinks: &mut [ShardSink; 2],
    shard: usize,
    conn: u64,
    serializer: Serializer,
) -> SessionHandle {
    let handle = routers[shard].handle_open(ConnId(conn), serializer);
    let hello = encode(
        serializer,
        r#"[1, "realm1", {"roles": {"publisher": {}, "subscriber": {}, "caller": {}, "callee": {}}}]"#,
    );
    let msg = serializer.decode(&hello).unwrap();
    routers[shard].handle_message(handle, &msg, 0, &mut sinks[shard]);
    pump(routers, sinks);
    handle
}

fn deliver_on(
    routers: &mut [Router; 2],
    sinks: &mut [ShardSink; 2],
    shard: usize,
    (handle, serializer): (SessionHandle, Serializer),
    frame: &[u8],
) {
    let msg = serializer.decode(frame).expect("valid frame");
    routers[shard].handle_message(handle, &msg, 0, &mut sinks[shard]);
    pump(routers, sinks);
}

#[test]
fn steady_state_publish_to_another_shard_allocates_nothing() {
    for (publisher_serializer, config) in Serializer::ALL
        .into_iter()
        .flat_map(|s| configs().map(|c| (s, c)))
    {
        let (mut routers, mut sinks) = two_shards(&config);
        for i in 0..100 {
            let serializer = Serializer::ALL[i % Serializer::ALL.len()];
            let handle = join_on(&mut routers, &mut sinks, 1, i as u64, serializer);
            deliver_on(
                &mut routers,
                &mut sinks,
                1,
                (handle, serializer),
                &encode(serializer, r#"[32, 1, {}, "com.sensor.temp"]"#),
            );
        }
        let publisher = join_on(&mut routers, &mut sinks, 0, 1000, publisher_serializer);
        let publish = encode(
            publisher_serializer,
            r#"[16, 2, {"acknowledge": true}, "com.sensor.temp", [21.5, "celsius", "\u0000AQID"], {"id": 7}]"#,
        );
        let publish_once = |routers: &mut [Router; 2], sinks: &mut [ShardSink; 2]| {
            deliver_on(
                routers,
                sinks,
                0,
                (publisher, publisher_serializer),
                &publish,
            );
        };
        for _ in 0..10 {
            publish_once(&mut routers, &mut sinks);
        }
        let (events, published) = (sinks[1].wamp.delivered, sinks[0].wamp.delivered);
        let count = allocations(|| {
            for _ in 0..1000 {
                publish_once(&mut routers, &mut sinks);
            }
        });
        assert_eq!(
            sinks[1].wamp.delivered - events,
            1000 * 100,
            "events on shard 1"
        );
        assert_eq!(
            sinks[0].wamp.delivered - published,
            1000,
            "PUBLISHED on shard 0"
        );
        assert_eq!(
            count,
            0,
            "{}: allocations on the steady-state publish path across shards",
            publisher_serializer.name()
        );
    }
}

#[test]
fn steady_state_call_to_another_shard_allocates_nothing() {
    for (serializer, config) in Serializer::ALL
        .into_iter()
        .flat_map(|s| configs().map(|c| (s, c)))
    {
        let (mut routers, mut sinks) = two_shards(&config);
        let callee = join_on(&mut routers, &mut sinks, 1, 1, serializer);
        let caller = join_on(&mut routers, &mut sinks, 0, 2, serializer);
        deliver_on(
            &mut routers,
            &mut sinks,
            1,
            (callee, serializer),
            &encode(serializer, r#"[64, 1, {}, "com.echo"]"#),
        );
        let call = encode(
            serializer,
            r#"[48, 7, {}, "com.echo", [1, "two"], {"three": 3}]"#,
        );
        let round_trip = |routers: &mut [Router; 2], sinks: &mut [ShardSink; 2]| {
            deliver_on(routers, sinks, 0, (caller, serializer), &call);
            let invocation = serializer.decode(&sinks[1].wamp.last).expect("INVOCATION");
            let Message::Invocation { request, .. } = invocation else {
                panic!("expected INVOCATION on shard 1")
            };
            let mut yield_frame = [0u8; 64];
            let len = yield_message(serializer, request.get(), &mut yield_frame);
            deliver_on(routers, sinks, 1, (callee, serializer), &yield_frame[..len]);
            assert!(matches!(
                serializer.decode(&sinks[0].wamp.last),
                Ok(Message::Result { .. })
            ));
        };
        for _ in 0..10 {
            round_trip(&mut routers, &mut sinks);
        }
        let count = allocations(|| {
            for _ in 0..1000 {
                round_trip(&mut routers, &mut sinks);
            }
        });
        assert_eq!(
            count,
            0,
            "{}: allocations on the steady-state call path across shards",
            serializer.name()
        );
    }
}
