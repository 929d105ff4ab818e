//! Interop with `wampire` (0.2, a Rust WAMP client from crates.io; WebSocket, JSON and MessagePack) against an
//! in-process kreisel over real sockets: join, publish/subscribe with args and kwargs (acknowledged and not),
//! publisher exclusion, prefix and wildcard subscriptions, unsubscribe, register/call with args and kwargs, a
//! callee's error with its URI, args and kwargs, wamp.error.no_such_procedure,
//! wamp.error.procedure_already_exists, unregister and GOODBYE; on JSON, on MessagePack, and across the two.
//!
//! Why wampire and not `wamp_async` (which also speaks RawSocket): wamp_async 0.3.1 needs rmp-serde 0.15, which
//! only builds against rmp <= 0.8.10, and a workspace has one rmp 0.8 (kreisel's codec is on a current one). Its
//! interop tests live outside the workspace, in `tests/rust-client/`.
//!
//! wampire's quirks, worked around here:
//! - it offers both `wamp.2.msgpack` and `wamp.2.json` and lets the router pick, so each serializer gets a
//!   WebSocket listener of its own that offers only that one;
//! - its `Value` has no null and no binary (a message carrying them fails to decode in the client), so the
//!   payloads here carry neither (autobahn-python covers them, see interop_python.rs);
//! - it decodes every non-negative integer as `UnsignedInteger`, so values are compared after mapping
//!   non-negative `Integer`s to `UnsignedInteger`;
//! - its API blocks (connect) and its futures are not `Send`: each scenario runs on a thread of its own with a
//!   current-thread tokio runtime, every step under a timeout and the whole scenario under another.

use std::future::Future;
use std::net::TcpListener;
use std::sync::mpsc::{self as std_mpsc, RecvTimeoutError};
use std::time::Duration;

use kreisel_tests::TestRouter;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use wampire::{CallError, Client, Connection, Dict, List, MatchingPolicy, Reason, Value, URI};

/// One step (a reply, an event) may take this long.
const STEP: Duration = Duration::from_secs(5);
/// A whole scenario may take this long.
const SCENARIO: Duration = Duration::from_secs(30);
/// How long a check that something does *not* arrive waits.
const QUIET: Duration = Duration::from_millis(200);

/// kreisel with a WebSocket listener for JSON only and one for MessagePack only.
struct Router {
    _router: TestRouter,
    json: String,
    msgpack: String,
}

fn start() -> Router {
    // Ports for the extra listeners: taken from the OS, released just before kreisel binds them.
    let probes = [
        TcpListener::bind("127.0.0.1:0").unwrap(),
        TcpListener::bind("127.0.0.1:0").unwrap(),
    ];
    let [json, msgpack] = probes.map(|probe| probe.local_addr().unwrap().port());
    let extra = format!(
        r#"
[[listeners]]
listen = "127.0.0.1:{json}"
transports = ["websocket"]
serializers = ["json"]

[[listeners]]
listen = "127.0.0.1:{msgpack}"
transports = ["websocket"]
serializers = ["msgpack"]
"#
    );
    Router {
        _router: TestRouter::start(&extra),
        json: format!("ws://127.0.0.1:{json}/ws"),
        msgpack: format!("ws://127.0.0.1:{msgpack}/ws"),
    }
}

/// Runs `scenario` on a thread of its own (wampire's connect blocks) with a current-thread tokio runtime; fails
/// if it panics or takes longer than [`SCENARIO`].
fn run<F, Fut>(scenario: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (done, finished) = std_mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(scenario());
        let _ = done.send(());
    });
    match finished.recv_timeout(SCENARIO) {
        Ok(()) => thread.join().unwrap(),
        Err(RecvTimeoutError::Disconnected) => {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(RecvTimeoutError::Timeout) => {
            panic!("wampire scenario still running after {SCENARIO:?}")
        }
    }
}

async fn step<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("no reply within {STEP:?}: {what}"))
}

fn join(url: &str) -> Client {
    Connection::new(url, "realm1")
        .connect()
        .unwrap_or_else(|e| panic!("joining realm1 at {url}: {e:?}"))
}

/// An error's URI as it was on the wire.
fn uri(reason: &Reason) -> String {
    match serde_json::to_value(reason) {
        Ok(serde_json::Value::String(uri)) => uri,
        other => panic!("reason {reason:?} serialized as {other:?}"),
    }
}

fn expect_error<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, CallError>,
    expected: &str,
) -> CallError {
    match result {
        Err(error) => {
            assert_eq!(uri(error.get_reason()), expected, "{what}: {error:?}");
            error
        }
        Ok(value) => panic!("{what}: expected {expected}, got {value:?}"),
    }
}

/// wampire decodes every non-negative integer as `UnsignedInteger`: compare in that form.
fn norm(value: &Value) -> Value {
    match value {
        Value::Integer(i) if *i >= 0 => Value::UnsignedInteger(*i as u64),
        Value::List(list) => Value::List(norm_list(list)),
        Value::Dict(dict) => Value::Dict(norm_dict(dict)),
        other => other.clone(),
    }
}

fn norm_list(list: &List) -> List {
    list.iter().map(norm).collect()
}

fn norm_dict(dict: &Dict) -> Dict {
    dict.iter().map(|(k, v)| (k.clone(), norm(v))).collect()
}

fn s(text: &str) -> Value {
    Value::String(text.to_string())
}

fn dict(entries: Vec<(&str, Value)>) -> Dict {
    entries
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// Args and kwargs with what serializers disagree on (minus null and binary, which wampire lacks); the 64-bit
/// extremes only when both ends speak MessagePack.
fn payload(wide_ints: bool) -> (List, Dict) {
    let mut ints = vec![
        Value::Integer(0),
        Value::Integer(-1),
        Value::Integer(-33),
        Value::Integer(255),
        Value::Integer(65536),
        Value::Integer(-(1 << 31)),
        Value::UnsignedInteger(1 << 53),
        Value::Integer(-(1 << 53)),
    ];
    if wide_ints {
        ints.extend([
            Value::Integer(i64::MAX),
            Value::Integer(i64::MIN),
            Value::UnsignedInteger(u64::MAX),
        ]);
    }
    let args = vec![
        Value::Integer(1),
        s("ü€ and 😀 𝄞"),
        s(""),
        s("quote \" backslash \\ newline \n tab \t NUL \0 inside"),
        Value::List(ints),
        Value::List(vec![
            Value::Float(1.5),
            Value::Float(-0.25),
            Value::Float(0.1),
            Value::Float(1e300),
        ]),
        Value::Boolean(true),
        Value::Boolean(false),
        Value::List(vec![]),
        Value::Dict(Dict::new()),
        Value::List(vec![Value::List(vec![Value::Dict(dict(vec![(
            "deep",
            Value::List(vec![Value::Integer(3)]),
        )]))])]),
    ];
    let kwargs = dict(vec![
        ("key", s("value")),
        ("ключ", s("значение")),
        ("😀", Value::Dict(dict(vec![("n", Value::Integer(-7))]))),
        ("", s("empty key")),
    ]);
    (args, kwargs)
}

type Events = UnboundedReceiver<(List, Dict)>;

fn collector() -> (Box<dyn FnMut(List, Dict)>, Events) {
    let (tx, rx) = unbounded_channel();
    (
        Box::new(move |args, kwargs| {
            let _ = tx.send((args, kwargs));
        }),
        rx,
    )
}

async fn next_event(what: &str, events: &mut Events) -> (List, Dict) {
    step(what, events.recv())
        .await
        .unwrap_or_else(|| panic!("{what}: event channel closed"))
}

async fn assert_quiet(what: &str, events: &mut Events) {
    tokio::time::sleep(QUIET).await;
    if let Ok(event) = events.try_recv() {
        panic!("{what}: unexpected event {event:?}");
    }
}

/// Subscriber and callee at `callee_url`, publisher and caller at `caller_url`.
async fn scenario(callee_url: String, caller_url: String, wide_ints: bool) {
    let mut sub = join(&callee_url);
    let mut publ = join(&caller_url);
    let (args, kwargs) = payload(wide_ints);
    let topic = "com.example.rs.topic";

    // Publish/subscribe with args and kwargs, acknowledged.
    let (on_event, mut events) = collector();
    let subscription = step("SUBSCRIBE", sub.subscribe(URI::new(topic), on_event))
        .await
        .expect("SUBSCRIBED");
    let publication = step(
        "acknowledged PUBLISH",
        publ.publish_and_acknowledge(URI::new(topic), Some(args.clone()), Some(kwargs.clone())),
    )
    .await
    .expect("PUBLISHED");
    assert!(
        (1..=1 << 53).contains(&publication),
        "publication ID {publication}"
    );
    let (got_args, got_kwargs) = next_event("EVENT", &mut events).await;
    assert_eq!(norm_list(&got_args), norm_list(&args), "EVENT args");
    assert_eq!(norm_dict(&got_kwargs), norm_dict(&kwargs), "EVENT kwargs");

    // Unacknowledged, in order.
    for i in 0..5 {
        publ.publish(URI::new(topic), Some(vec![Value::Integer(i)]), None)
            .expect("PUBLISH");
    }
    for i in 0..5 {
        let (got, _) = next_event("unacknowledged EVENT", &mut events).await;
        assert_eq!(got, vec![Value::UnsignedInteger(i)], "events in order");
    }

    // Publisher exclusion (the default): a publisher subscribed to its own topic gets no event.
    let (on_own, mut own) = collector();
    step(
        "SUBSCRIBE (publisher)",
        publ.subscribe(URI::new(topic), on_own),
    )
    .await
    .expect("SUBSCRIBED");
    step(
        "PUBLISH to own topic",
        publ.publish_and_acknowledge(URI::new(topic), Some(vec![s("excluded")]), None),
    )
    .await
    .expect("PUBLISHED");
    next_event("EVENT at the subscriber", &mut events).await;
    assert_quiet("publisher excluded from its own publication", &mut own).await;

    // Prefix and wildcard subscriptions.
    let (on_prefix, mut prefixed) = collector();
    step(
        "SUBSCRIBE prefix",
        sub.subscribe_with_pattern(
            URI::new("com.example.rs.sensors."),
            on_prefix,
            MatchingPolicy::Prefix,
        ),
    )
    .await
    .expect("SUBSCRIBED (prefix)");
    let (on_wild, mut wild) = collector();
    step(
        "SUBSCRIBE wildcard",
        sub.subscribe_with_pattern(
            URI::new("com.example.rs..temp"),
            on_wild,
            MatchingPolicy::Wildcard,
        ),
    )
    .await
    .expect("SUBSCRIBED (wildcard)");
    for topic in [
        "com.example.rs.kitchen.humidity",
        "com.example.rs.a.b.temp",
        "com.example.rs.kitchen.temp",
        "com.example.rs.sensors.7",
    ] {
        step(
            "PUBLISH to a pattern",
            publ.publish_and_acknowledge(URI::new(topic), Some(vec![s(topic)]), None),
        )
        .await
        .expect("PUBLISHED");
    }
    let (got, _) = next_event("prefix EVENT", &mut prefixed).await;
    assert_eq!(got, vec![s("com.example.rs.sensors.7")], "prefix match");
    let (got, _) = next_event("wildcard EVENT", &mut wild).await;
    assert_eq!(
        got,
        vec![s("com.example.rs.kitchen.temp")],
        "wildcard match"
    );
    assert_quiet("prefix subscription: nothing else", &mut prefixed).await;
    assert_quiet("wildcard subscription: nothing else", &mut wild).await;

    // Unsubscribe: a later event on a still-subscribed topic arrives, the unsubscribed one does not (kreisel
    // delivers one publisher's events to one subscriber in order).
    step("UNSUBSCRIBE", sub.unsubscribe(subscription))
        .await
        .expect("UNSUBSCRIBED");
    publ.publish(URI::new(topic), Some(vec![s("after unsubscribe")]), None)
        .expect("PUBLISH");
    publ.publish(
        URI::new("com.example.rs.sensors.after"),
        Some(vec![s("witness")]),
        None,
    )
    .expect("PUBLISH");
    next_event("witness EVENT after UNSUBSCRIBE", &mut prefixed).await;
    assert!(
        events.try_recv().is_err(),
        "an event reached an unsubscribed handler"
    );

    // RPC with args and kwargs.
    let registration = step(
        "REGISTER echo",
        sub.register(
            URI::new("com.example.rs.echo"),
            Box::new(|args, kwargs| Ok((Some(args), Some(kwargs)))),
        ),
    )
    .await
    .expect("REGISTERED");
    let (got_args, got_kwargs) = step(
        "CALL echo",
        publ.call(
            URI::new("com.example.rs.echo"),
            Some(args.clone()),
            Some(kwargs.clone()),
        ),
    )
    .await
    .expect("RESULT");
    assert_eq!(norm_list(&got_args), norm_list(&args), "RESULT args");
    assert_eq!(norm_dict(&got_kwargs), norm_dict(&kwargs), "RESULT kwargs");

    // Registering it again.
    let again = step(
        "REGISTER echo again",
        publ.register(
            URI::new("com.example.rs.echo"),
            Box::new(|_, _| Ok((None, None))),
        ),
    )
    .await;
    expect_error(
        "second REGISTER",
        again.map(|r| r.procedure),
        "wamp.error.procedure_already_exists",
    );

    // A callee's error reaches the caller with its URI, args and kwargs.
    step(
        "REGISTER fail",
        sub.register(
            URI::new("com.example.rs.fail"),
            Box::new(|_, _| {
                Err(CallError::new(
                    Reason::CustomReason(URI::new("com.myapp.error.custom")),
                    Some(vec![s("text ü😀")]),
                    Some(dict(vec![("code", Value::Integer(7))])),
                ))
            }),
        ),
    )
    .await
    .expect("REGISTERED");
    let result = step(
        "CALL fail",
        publ.call(URI::new("com.example.rs.fail"), None, None),
    )
    .await;
    let error = expect_error("callee error", result, "com.myapp.error.custom");
    assert_eq!(error.get_args(), &Some(vec![s("text ü😀")]), "error args");
    assert_eq!(
        error.get_kwargs().as_ref().map(norm_dict),
        Some(dict(vec![("code", Value::UnsignedInteger(7))])),
        "error kwargs"
    );

    let result = step(
        "CALL nobody",
        publ.call(URI::new("com.example.rs.nobody"), None, None),
    )
    .await;
    expect_error(
        "unregistered procedure",
        result,
        "wamp.error.no_such_procedure",
    );

    // Unregister: the procedure is gone.
    step("UNREGISTER", sub.unregister(registration))
        .await
        .expect("UNREGISTERED");
    let result = step(
        "CALL after UNREGISTER",
        publ.call(URI::new("com.example.rs.echo"), None, None),
    )
    .await;
    expect_error(
        "call after UNREGISTER",
        result,
        "wamp.error.no_such_procedure",
    );

    // GOODBYE, answered by GOODBYE.
    step("GOODBYE", publ.shutdown()).await.expect("GOODBYE");
    step("GOODBYE", sub.shutdown()).await.expect("GOODBYE");
}

#[test]
fn wampire_websocket_json() {
    let router = start();
    let url = router.json.clone();
    run(move || scenario(url.clone(), url, false));
}

#[test]
fn wampire_websocket_msgpack() {
    let router = start();
    let url = router.msgpack.clone();
    run(move || scenario(url.clone(), url, true));
}

/// Subscriber and callee on JSON, publisher and caller on MessagePack.
#[test]
fn wampire_msgpack_caller_json_callee() {
    let router = start();
    let (json, msgpack) = (router.json.clone(), router.msgpack.clone());
    run(move || scenario(json, msgpack, false));
}

/// Subscriber and callee on MessagePack, publisher and caller on JSON.
#[test]
fn wampire_json_caller_msgpack_callee() {
    let router = start();
    let (json, msgpack) = (router.json.clone(), router.msgpack.clone());
    run(move || scenario(msgpack, json, false));
}
