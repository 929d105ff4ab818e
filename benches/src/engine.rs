//! Engine fixtures shared by the `engine` bench and the `instructions` example: sessions joined in memory, a
//! fan-out router, an RPC router, and two sinks standing in for the io layer.
//!
//! [`CountingSink`] only counts recipients (the engine's own cost); [`EncodingSink`] encodes each multicast once
//! per serializer into reused buffers, as io does before sharing the frame.

use kreisel_codec::{Dict, Field, Id, Message, Payload, Serializer};
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
