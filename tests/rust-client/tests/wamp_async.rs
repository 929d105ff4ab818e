//! Interop with `wamp_async` (a Rust WAMP client from crates.io, tokio-based) over WebSocket and RawSocket with
//! JSON and MessagePack: join, pub/sub with args and kwargs, RPC, a callee error, an unregistered procedure.

use std::time::Duration;

use kreisel_tests::TestRouter;
use serde_json::json;
use wamp_async::{Client, ClientConfig, SerializerType, WampArgs, WampError, WampKwArgs};

async fn echo(
    args: Option<WampArgs>,
    kwargs: Option<WampKwArgs>,
) -> Result<(Option<WampArgs>, Option<WampKwArgs>), WampError> {
    Ok((args, kwargs))
}

async fn fail(
    _: Option<WampArgs>,
    _: Option<WampKwArgs>,
) -> Result<(Option<WampArgs>, Option<WampKwArgs>), WampError> {
    Err(WampError::UnknownError("boom".into()))
}

/// Connects and joins realm1; spawns the client's event loop and, for callees, its RPC event handler.
async fn session(url: &str, serializer: SerializerType) -> Client<'static> {
    let config = ClientConfig::default().set_serializers(vec![serializer]);
    let (mut client, (event_loop, rpc_events)) =
        Client::connect(url, Some(config)).await.expect("connect");
    tokio::spawn(event_loop);
    if let Some(mut rpc_events) = rpc_events {
        tokio::spawn(async move {
            while let Some(call) = rpc_events.recv().await {
                tokio::spawn(call);
            }
        });
    }
    client.join_realm("realm1").await.expect("join");
    client
}

async fn scenario(url: String, serializer: SerializerType) {
    let mut subscriber = session(&url, serializer).await;
    let mut publisher = session(&url, serializer).await;
    let topic = "com.example.rs.topic";
    let (subscription, mut events) = subscriber.subscribe(topic).await.expect("subscribe");
    let args = vec![
        json!(1),
        json!("ü😀"),
        json!({"nested": [1, 2, {"x": null}]}),
        json!(9007199254740992u64),
    ];
    let mut kwargs = WampKwArgs::new();
    kwargs.insert("key".into(), json!("value"));
    let publication = publisher
        .publish(topic, Some(args.clone()), Some(kwargs.clone()), true)
        .await
        .expect("publish");
    assert!(publication.is_some(), "acknowledged publication has an ID");
    let (_, event_args, event_kwargs) = events.recv().await.expect("an event");
    assert_eq!(event_args, Some(args.clone()));
    assert_eq!(event_kwargs, Some(kwargs.clone()));
    subscriber
        .unsubscribe(subscription)
        .await
        .expect("unsubscribe");

    let registration = subscriber
        .register("com.example.rs.echo", echo)
        .await
        .expect("register");
    let (result_args, result_kwargs) = publisher
        .call(
            "com.example.rs.echo",
            Some(args.clone()),
            Some(kwargs.clone()),
        )
        .await
        .expect("call");
    assert_eq!(result_args, Some(args));
    assert_eq!(result_kwargs, Some(kwargs));
    subscriber
        .register("com.example.rs.fail", fail)
        .await
        .expect("register fail");
    match publisher.call("com.example.rs.fail", None, None).await {
        Err(WampError::ServerError(uri, _)) => {
            assert_eq!(uri, "wamp.async.rs.rpc.failed", "the callee's error URI")
        }
        other => panic!("expected the callee's error, got {other:?}"),
    }
    match publisher.call("com.example.rs.nobody", None, None).await {
        Err(WampError::ServerError(uri, _)) => assert_eq!(uri, "wamp.error.no_such_procedure"),
        other => panic!("expected no_such_procedure, got {other:?}"),
    }
    subscriber
        .unregister(registration)
        .await
        .expect("unregister");
    publisher.leave_realm().await.expect("leave");
    subscriber.leave_realm().await.expect("leave");
    publisher.disconnect().await;
    subscriber.disconnect().await;
}

fn run(url: String, serializer: SerializerType) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), scenario(url, serializer))
            .await
            .expect("wamp_async scenario timed out")
    });
}

#[test]
fn wamp_async_over_websocket_json() {
    let router = TestRouter::start("");
    run(router.ws_url(), SerializerType::Json);
}

#[test]
fn wamp_async_over_websocket_msgpack() {
    let router = TestRouter::start("");
    run(router.ws_url(), SerializerType::MsgPack);
}

/// wamp_async 0.3.1 refuses a RawSocket handshake reply unless its second octet equals the client's own
/// (`HandshakeCtx::validate`: `server[1] != client[1]` is an error), i.e. unless the router announces the same
/// maximum length the client did (16 MiB). The spec lets the router announce its own maximum, as kreisel does
/// (1 MiB by default); for this client, kreisel is configured with a 16 MiB maximum.
const RAWSOCKET_16MIB: &str = "[limits]\nmessage_max = 16777216\noutbox_max = 33554432";

#[test]
fn wamp_async_over_rawsocket_json() {
    let router = TestRouter::start(RAWSOCKET_16MIB);
    run(format!("tcp://{}", router.rs), SerializerType::Json);
}

#[test]
fn wamp_async_over_rawsocket_msgpack() {
    let router = TestRouter::start(RAWSOCKET_16MIB);
    run(format!("tcp://{}", router.rs), SerializerType::MsgPack);
}
