//! Deterministic simulation of the engine: a seeded random workload of joins, leaves, abrupt disconnects,
//! subscriptions, publications, registrations, calls, yields and callee errors on a virtual clock, checking:
//! - every CALL gets exactly one RESULT or ERROR (unless its caller left first);
//! - events from one publisher reach each subscriber in publication order, exactly once, and only subscribers
//!   (never the publisher, which excludes itself by default);
//! - after everyone leaves, nothing is left (no connection, no active session).
//!
//! `KREISEL_SIM_SEED=<n>` replays one seed; otherwise a fixed range of seeds runs.

use std::collections::{BTreeMap, HashMap, HashSet};

use kreisel_codec::{Message, Serializer};
use kreisel_engine::{ConnId, Peer, Recipients, Router, RouterConfig, SessionHandle, Sink};

/// A small deterministic generator for the workload (independent of the engine's own).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Default)]
struct Outbox {
    /// (connection, message as JSON) in send order.
    sent: Vec<(u64, serde_json::Value)>,
    closed: Vec<u64>,
}

impl Outbox {
    fn record(&mut self, to: Peer, msg: &Message<'_>) {
        let mut bytes = Vec::new();
        to.serializer.encode(msg, &mut bytes);
        // Decode in the peer's serializer (what the peer would see), then look at it as JSON.
        let decoded = to
            .serializer
            .decode(&bytes)
            .expect("the router sends decodable messages");
        let mut json = Vec::new();
        Serializer::Json.encode(&decoded, &mut json);
        self.sent
            .push((to.conn.0, serde_json::from_slice(&json).expect("JSON")));
    }
}

impl Sink for Outbox {
    fn send(&mut self, to: Peer, msg: &Message<'_>) {
        self.record(to, msg);
    }
    fn send_many(&mut self, to: Recipients<'_>, msg: &Message<'_>) {
        for peer in to.iter() {
            self.record(*peer, msg);
        }
    }
    fn close(&mut self, to: Peer) {
        self.closed.push(to.conn.0);
    }
}

/// What the simulated client `conn` knows.
#[derive(Default)]
struct ClientState {
    joined: bool,
    next_request: u64,
    /// Subscription IDs (from SUBSCRIBED).
    subscribed: Vec<u64>,
    /// Pending calls: request → procedure index.
    calls: HashMap<u64, usize>,
    /// Invocations received and not answered: (request, procedure arg).
    invocations: Vec<u64>,
    /// Last publication sequence seen per (publisher conn, topic).
    last_seq: HashMap<(u64, u64), u64>,
}

const TOPICS: usize = 3;
const PROCEDURES: usize = 3;

struct Sim {
    router: Router,
    out: Outbox,
    rng: Rng,
    handles: BTreeMap<u64, SessionHandle>,
    clients: HashMap<u64, ClientState>,
    next_conn: u64,
    /// Publication sequence per publisher connection.
    published: HashMap<u64, u64>,
    now: u64,
    answered: HashSet<(u64, u64)>,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let config = RouterConfig {
            seed,
            ..RouterConfig::default()
        };
        Sim {
            router: Router::new(config),
            out: Outbox::default(),
            rng: Rng(seed | 1),
            handles: BTreeMap::new(),
            clients: HashMap::new(),
            next_conn: 1,
            published: HashMap::new(),
            now: 0,
            answered: HashSet::new(),
        }
    }

    fn send(&mut self, conn: u64, json: &str) {
        let handle = self.handles[&conn];
        let msg = Serializer::Json
            .decode(json.as_bytes())
            .expect("test message");
        self.router
            .handle_message(handle, &msg, self.now, &mut self.out);
    }

    fn request(&mut self, conn: u64) -> u64 {
        let client = self.clients.get_mut(&conn).expect("client");
        client.next_request += 1;
        client.next_request
    }

    fn random_conn(&mut self) -> Option<u64> {
        let joined: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| c.joined)
            .map(|(k, _)| *k)
            .collect();
        if joined.is_empty() {
            return None;
        }
        let mut sorted = joined;
        sorted.sort();
        Some(sorted[self.rng.below(sorted.len())])
    }

    fn step(&mut self) {
        self.now += 1;
        let action = self.rng.below(100);
        match action {
            0..=9 => self.open_and_join(),
            10..=13 => self.leave(false),
            14..=16 => self.leave(true),
            17..=29 => self.subscribe(),
            30..=34 => self.unsubscribe(),
            35..=54 => self.publish(),
            55..=61 => self.register(),
            62..=79 => self.call(),
            _ => self.answer_invocation(),
        }
        self.deliver();
    }

    fn open_and_join(&mut self) {
        let conn = self.next_conn;
        self.next_conn += 1;
        let serializer = Serializer::ALL[self.rng.below(Serializer::ALL.len())];
        let handle = self.router.handle_open(ConnId(conn), serializer);
        self.handles.insert(conn, handle);
        self.clients.insert(conn, ClientState::default());
        self.send(conn, r#"[1, "realm1", {"roles": {"publisher": {}, "subscriber": {}, "caller": {}, "callee": {}}}]"#);
    }

    /// `abrupt`: the transport vanishes; else GOODBYE then close.
    fn leave(&mut self, abrupt: bool) {
        let Some(conn) = self.random_conn() else {
            return;
        };
        if !abrupt {
            self.send(conn, r#"[6, {}, "wamp.close.close_realm"]"#);
            self.deliver();
        }
        let handle = self.handles.remove(&conn).expect("handle");
        self.router.handle_close(handle, &mut self.out);
        self.clients.remove(&conn);
    }

    fn subscribe(&mut self) {
        let Some(conn) = self.random_conn() else {
            return;
        };
        let topic = self.rng.below(TOPICS);
        let request = self.request(conn);
        self.send(
            conn,
            &format!(r#"[32, {request}, {{}}, "sim.topic.{topic}"]"#),
        );
    }

    fn unsubscribe(&mut self) {
        let Some(conn) = self.random_conn() else {
            return;
        };
        let client = self.clients.get_mut(&conn).unwrap();
        if client.subscribed.is_empty() {
            return;
        }
        let id = client.subscribed.remove(0);
        let request = self.request(conn);
        self.send(conn, &format!("[34, {request}, {id}]"));
    }

    fn publish(&mut self) {
        let Some(conn) = self.random_conn() else {
            return;
        };
        let topic = self.rng.below(TOPICS);
        let seq = {
            let seq = self.published.entry(conn).or_insert(0);
            *seq += 1;
            *seq
        };
        let request = self.request(conn);
        self.send(
            conn,
            &format!(r#"[16, {request}, {{}}, "sim.topic.{topic}", [{conn}, {topic}, {seq}]]"#),
        );
    }

    fn register(&mut self) {
        let Some(conn) = self.random_conn() else {
            return;
        };
        let procedure = self.rng.below(PROCEDURES);
        let request = self.request(conn);
        self.send(
            conn,
            &format!(r#"[64, {request}, {{}}, "sim.proc.{procedure}"]"#),
        );
    }

    fn call(&mut self) {
        let Some(conn) = self.random_conn() else {
            return;
        };
        let procedure = self.rng.below(PROCEDURES);
        let request = self.request(conn);
        self.clients
            .get_mut(&conn)
            .unwrap()
            .calls
            .insert(request, procedure);
        self.send(
            conn,
            &format!(r#"[48, {request}, {{}}, "sim.proc.{procedure}", [{conn}, {request}]]"#),
        );
    }

    fn answer_invocation(&mut self) {
        let Some(conn) = self.random_conn() else {
            return;
        };
        let client = self.clients.get_mut(&conn).unwrap();
        if client.invocations.is_empty() {
            return;
        }
        let request = client.invocations.remove(0);
        if self.rng.below(4) == 0 {
            self.send(
                conn,
                &format!(r#"[8, 68, {request}, {{}}, "sim.error.failed", ["no"]]"#),
            );
        } else {
            self.send(conn, &format!("[70, {request}, {{}}, [{request}]]"));
        }
    }

    /// Hands every message the router sent to the simulated clients, checking each.
    fn deliver(&mut self) {
        let sent = std::mem::take(&mut self.out.sent);
        for (conn, msg) in sent {
            let Some(client) = self.clients.get_mut(&conn) else {
                panic!("message to connection {conn}, which is gone: {msg}");
            };
            let code = msg[0].as_u64().unwrap();
            match code {
                2 => client.joined = true,
                33 => {
                    // Subscribing twice to a topic returns the same ID: keep each once.
                    let id = msg[2].as_u64().unwrap();
                    if !client.subscribed.contains(&id) {
                        client.subscribed.push(id);
                    }
                }
                35 | 65 | 67 | 17 => {}
                36 => {
                    let args = &msg[4];
                    let publisher = args[0].as_u64().unwrap();
                    let topic = args[1].as_u64().unwrap();
                    let seq = args[2].as_u64().unwrap();
                    assert_ne!(
                        publisher, conn,
                        "a publisher never receives its own event (exclude_me default)"
                    );
                    let last = client.last_seq.entry((publisher, topic)).or_insert(0);
                    assert!(seq > *last, "conn {conn}: event {seq} from {publisher} after {last}: order or duplicate");
                    *last = seq;
                }
                68 => client.invocations.push(msg[1].as_u64().unwrap()),
                50 => {
                    let request = msg[1].as_u64().unwrap();
                    assert!(
                        client.calls.remove(&request).is_some(),
                        "RESULT for unknown call {request}: {msg}"
                    );
                    assert!(
                        self.answered.insert((conn, request)),
                        "second answer to call {request}"
                    );
                }
                8 => {
                    let request = msg[2].as_u64().unwrap();
                    let kind = msg[1].as_u64().unwrap();
                    if kind == 48 {
                        assert!(
                            client.calls.remove(&request).is_some(),
                            "ERROR for unknown call {request}: {msg}"
                        );
                        assert!(
                            self.answered.insert((conn, request)),
                            "second answer to call {request}"
                        );
                        let uri = msg[4].as_str().unwrap();
                        assert!(
                            [
                                "wamp.error.no_such_procedure",
                                "wamp.error.canceled",
                                "sim.error.failed"
                            ]
                            .contains(&uri),
                            "{msg}"
                        );
                    } else {
                        // Errors to SUBSCRIBE/REGISTER/UNSUBSCRIBE: only `procedure_already_exists` is expected.
                        assert_eq!(msg[4], "wamp.error.procedure_already_exists", "{msg}");
                    }
                }
                6 => client.joined = false,
                other => panic!("unexpected message type {other} to {conn}: {msg}"),
            }
        }
        assert!(
            self.out.closed.is_empty(),
            "no session was aborted: {:?}",
            self.out.closed
        );
    }

    /// Every pending call of a remaining client must still be answerable: let callees answer everything.
    fn drain(&mut self) {
        for _ in 0..1000 {
            let pending: Vec<(u64, u64)> = self
                .clients
                .iter()
                .flat_map(|(&conn, c)| c.invocations.iter().map(move |&r| (conn, r)))
                .collect();
            if pending.is_empty() {
                break;
            }
            for (conn, request) in pending {
                self.clients
                    .get_mut(&conn)
                    .unwrap()
                    .invocations
                    .retain(|&r| r != request);
                self.send(conn, &format!("[70, {request}, {{}}, []]"));
            }
            self.deliver();
        }
        for (conn, client) in &self.clients {
            assert!(
                client.calls.is_empty(),
                "conn {conn}: calls never answered: {:?}",
                client.calls
            );
        }
    }

    fn finish(&mut self) {
        let conns: Vec<u64> = self.handles.keys().copied().collect();
        for conn in conns {
            let handle = self.handles.remove(&conn).unwrap();
            self.router.handle_close(handle, &mut self.out);
        }
        self.clients.clear();
        assert!(
            self.out.sent.is_empty(),
            "nothing is sent to sessions that are gone: {:?}",
            self.out.sent
        );
        assert_eq!(self.router.connections(), 0);
        assert_eq!(self.router.stats().sessions_active, 0);
    }
}

fn run(seed: u64, steps: usize) {
    let mut sim = Sim::new(seed);
    for _ in 0..steps {
        sim.step();
    }
    sim.drain();
    sim.finish();
}

#[test]
fn seeded_workloads_keep_every_promise() {
    if let Some(seed) = std::env::var("KREISEL_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        run(seed, 5000);
        return;
    }
    for seed in 1..=40 {
        run(seed, 1500);
    }
}
