//! Engine fixtures shared by the `engine` bench and the `instructions` example: sessions joined in memory, a
//! fan-out router, an RPC router, and two sinks standing in for the io layer.
//!
//! [`CountingSink`] only counts recipients (the engine's own cost); [`EncodingSink`] encodes each multicast once
//! per serializer into reused buffers, as io does before sharing the frame.

use kreisel_codec::{Dict, Field, Id, Message, Payload, Serializer};
use kreisel_engine::link::{PeerMessage, ShardSet};
use kreisel_engine::{ConnId, Peer, Recipients, Router, RouterConfig, SessionHandle, Sink};

pub const HELLO: &str =
    r#"[1, "realm1", {"roles": {"publisher": {}, "subscriber": {}, "caller": {}, "callee": {}}}]"#;
pub const SUBSCRIBE: &str = r#"[32, 1, {}, "com.myapp.sensor.temp"]"#;
pub const PUBLISH_ACK: &str =
    r#"[16, 123, {"acknowledge": true}, "com.myapp.sensor.temp", [21.5, "celsius"], {"id": 7}]"#;
pub const REGISTER: &str = r#"[64, 1, {}, "com.myapp.echo"]"#;
pub const CALL: &str = r#"[48, 7, {}, "com.myapp.echo", [1, "two"], {"three": 3}]"#;

/// Counts what the engine hands out; remembers the last INVOCATION's request ID (the callee must answer it).
#[derive(Default)]
pub struct CountingSink {
    pub delivered: u64,
    pub invocation: Option<Id>,
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
pub struct EncodingSink {
    pub frames: [Vec<u8>; Serializer::ALL.len()],
    pub single: Vec<u8>,
    pub delivered: u64,
    pub invocation: Option<Id>,
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

pub fn decode(text: &str) -> Message<'_> {
    Serializer::Json
        .decode(text.as_bytes())
        .expect("fixture is a valid WAMP message")
}

/// Opens a session on `serializer` and joins realm1.
pub fn join(
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
pub fn fanout_router(subscribers: usize, mixed: bool) -> (Router, SessionHandle) {
    fanout_router_with(RouterConfig::default(), subscribers, mixed)
}

pub fn fanout_router_with(
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

pub trait SinkCount: Sink {
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

/// A router with one callee (registered `com.myapp.echo`) and one caller, both on `serializer`.
pub fn rpc_router(
    serializer: Serializer,
    sink: &mut impl Sink,
) -> (Router, SessionHandle, SessionHandle) {
    let mut router = Router::new(RouterConfig::default());
    let callee = join(&mut router, sink, 1, serializer);
    let caller = join(&mut router, sink, 2, serializer);
    router.handle_message(callee, &decode(REGISTER), 0, sink);
    (router, callee, caller)
}

/// `[70, request, {}, [1]]`.
pub fn yield_message(request: Id) -> Message<'static> {
    Message::Yield {
        request,
        options: Dict::EMPTY,
        payload: Payload {
            args: Some(Field::List(&YIELD_ARGS)),
            kwargs: None,
        },
    }
}

/// [`yield_message`] written into `out`, in `serializer`.
pub fn yield_frame(serializer: Serializer, request: Id, out: &mut Vec<u8>) {
    out.clear();
    serializer.encode(&yield_message(request), out);
}

/// One RPC round trip in the engine alone: the decoded `call` from `caller`, the INVOCATION answered by `callee`
/// with a YIELD built in memory (CALL → INVOCATION → YIELD → RESULT).
pub fn rpc_round_trip(
    router: &mut Router,
    sink: &mut CountingSink,
    (caller, callee): (SessionHandle, SessionHandle),
    call: &Message<'_>,
) {
    router.handle_message(caller, call, 0, sink);
    let request = sink
        .invocation
        .take()
        .expect("INVOCATION sent to the callee");
    router.handle_message(callee, &yield_message(request), 0, sink);
}

const YIELD_ARGS: [Field<'static>; 1] = [Field::UInt(1)];

/// One shard's sink in a [`ShardPair`]: WAMP messages as [`EncodingSink`], peer messages encoded into reused
/// buffers and queued for the other shard (as the io layer's pooled link buffers).
#[derive(Default)]
pub struct ShardSink {
    pub wamp: EncodingSink,
    queue: std::collections::VecDeque<Vec<u8>>,
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
    fn peer(&mut self, _to: ShardSet, msg: &PeerMessage<'_>) {
        let mut buffer = self.free.pop().unwrap_or_default();
        buffer.clear();
        kreisel_engine::link::encode(msg, &mut buffer);
        self.queue.push_back(buffer);
    }
}

/// Two shards of one router, linked in memory: what one shard sends the other is encoded, and delivered by
/// [`ShardPair::pump`] (decoded and handed to the other engine), as the io layer's link does between threads.
pub struct ShardPair {
    pub routers: [Router; 2],
    pub sinks: [ShardSink; 2],
}

impl ShardPair {
    pub fn new(config: RouterConfig) -> ShardPair {
        let shard = |id| {
            Router::new(RouterConfig {
                shard: id,
                shards: 2,
                ..config.clone()
            })
        };
        ShardPair {
            routers: [shard(0), shard(1)],
            sinks: Default::default(),
        }
    }

    /// Delivers the messages between the shards until none is left.
    pub fn pump(&mut self) {
        loop {
            let mut moved = false;
            for from in 0..2 {
                while let Some(buffer) = self.sinks[from].queue.pop_front() {
                    moved = true;
                    let msg = kreisel_engine::link::decode(&buffer, true).expect("a peer message");
                    self.routers[1 - from].handle_peer(
                        from as u16,
                        &msg,
                        0,
                        &mut self.sinks[1 - from],
                    );
                    self.sinks[from].free.push(buffer);
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// A joined session on `shard`, known to the other shard.
    pub fn join(&mut self, shard: usize, conn: u64, serializer: Serializer) -> SessionHandle {
        let handle = self.routers[shard].handle_open(ConnId(conn), serializer);
        self.routers[shard].handle_message(handle, &decode(HELLO), 0, &mut self.sinks[shard]);
        self.pump();
        handle
    }

    /// `msg` from `session` on `shard`, then everything it causes on both shards.
    pub fn handle(&mut self, shard: usize, session: SessionHandle, msg: &Message<'_>) {
        self.routers[shard].handle_message(session, msg, 0, &mut self.sinks[shard]);
        self.pump();
    }

    /// Events and other messages delivered on both shards so far.
    pub fn delivered(&self) -> u64 {
        self.sinks[0].wamp.delivered + self.sinks[1].wamp.delivered
    }
}

/// Two shards with `subscribers` JSON sessions on one subscription, all on `subscribers_on`, and a JSON publisher
/// on shard 0.
pub fn shard_fanout(subscribers: usize, subscribers_on: usize) -> (ShardPair, SessionHandle) {
    let mut config = RouterConfig::default();
    config.limits.sessions_per_realm_max =
        config.limits.sessions_per_realm_max.max(subscribers + 1);
    let mut pair = ShardPair::new(config);
    let subscribe = decode(SUBSCRIBE);
    for i in 0..subscribers {
        let handle = pair.join(subscribers_on, i as u64, Serializer::Json);
        pair.handle(subscribers_on, handle, &subscribe);
    }
    let publisher = pair.join(0, subscribers as u64, Serializer::Json);
    (pair, publisher)
}

/// Two shards with the callee (registered `com.myapp.echo`) on `callee_on` and the caller on shard 0.
pub fn shard_rpc(callee_on: usize) -> (ShardPair, SessionHandle, SessionHandle) {
    let mut pair = ShardPair::new(RouterConfig::default());
    let callee = pair.join(callee_on, 1, Serializer::Json);
    let caller = pair.join(0, 2, Serializer::Json);
    pair.handle(callee_on, callee, &decode(REGISTER));
    (pair, callee, caller)
}
