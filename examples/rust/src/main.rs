//! A complete WAMP client in Rust against kreisel, with `wamp_async` from crates.io: it joins realm1, subscribes to
//! a topic, publishes to it, registers a procedure, calls it, and leaves; the process exits 0 when all of that
//! worked.
//!
//! Start a router first (`cargo run --release` in the repository: WebSocket on ws://127.0.0.1:8080/ws), then:
//!
//! ```text
//! cargo run --manifest-path examples/rust/Cargo.toml                              # WebSocket, JSON
//! cargo run --manifest-path examples/rust/Cargo.toml -- ws://127.0.0.1:8080/ws msgpack
//! cargo run --manifest-path examples/rust/Cargo.toml -- tcp://127.0.0.1:8081 json  # RawSocket: see below
//! ```
//!
//! RawSocket: wamp_async 0.3 accepts the router's handshake reply only when the router announces the maximum
//! message length the client asked for (16 MiB), while kreisel announces its own `limits.message_max` (1 MiB by
//! default). Over RawSocket, run kreisel with `message_max = 16777216` in `[limits]`; WebSocket works with the
//! defaults.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;
use wamp_async::{Client, ClientConfig, SerializerType, WampArgs, WampError, WampKwArgs};

/// The procedure this client registers: the sum of its two arguments.
async fn add(
    args: Option<WampArgs>,
    _kwargs: Option<WampKwArgs>,
) -> Result<(Option<WampArgs>, Option<WampKwArgs>), WampError> {
    let numbers: Vec<i64> = args
        .unwrap_or_default()
        .iter()
        .filter_map(|value| value.as_i64())
        .collect();
    match numbers[..] {
        [a, b] => Ok((Some(vec![json!(a + b)]), None)),
        _ => Err(WampError::UnknownError("add takes two integers".into())),
    }
}

async fn run(url: &str, serializer: SerializerType) -> Result<bool, String> {
    let config = ClientConfig::default().set_serializers(vec![serializer]);
    let (mut client, (event_loop, rpc_events)) =
        Client::connect(url, Some(config)).await.map_err(|e| {
            format!(
                "cannot connect to {url}: {e:?} (is the router running? RawSocket also needs \
                 message_max = 16777216, see the top of examples/rust/src/main.rs)"
            )
        })?;
    // wamp_async leaves the driving to the application: its event loop, and a task per invocation.
    tokio::spawn(event_loop);
    if let Some(mut rpc_events) = rpc_events {
        tokio::spawn(async move {
            while let Some(invocation) = rpc_events.recv().await {
                tokio::spawn(invocation);
            }
        });
    }
    client
        .join_realm("realm1")
        .await
        .map_err(|e| format!("cannot join realm1: {e:?}"))?;
    println!("joined realm realm1 ({url}, {serializer:?})");

    // Publish and subscribe. wamp_async sends no publish options, so the router's default applies: a publisher
    // does not receive its own events (exclude_me). A second session subscribes.
    let (mut listener, (listener_loop, _)) = Client::connect(
        url,
        Some(ClientConfig::default().set_serializers(vec![serializer])),
    )
    .await
    .map_err(|e| format!("cannot connect the listener: {e:?}"))?;
    tokio::spawn(listener_loop);
    listener
        .join_realm("realm1")
        .await
        .map_err(|e| format!("listener cannot join: {e:?}"))?;
    let (_subscription, mut events) = listener
        .subscribe("com.example.greeting")
        .await
        .map_err(|e| format!("subscribe: {e:?}"))?;
    let mut kwargs = WampKwArgs::new();
    kwargs.insert("count".into(), json!(1));
    client
        .publish(
            "com.example.greeting",
            Some(vec![json!("hello from Rust")]),
            Some(kwargs),
            true, // acknowledge: wait for PUBLISHED
        )
        .await
        .map_err(|e| format!("publish: {e:?}"))?;
    let (_, args, kwargs) = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .map_err(|_| "no event within 5 s".to_string())?
        .ok_or("the subscription ended")?;
    let text = args
        .unwrap_or_default()
        .first()
        .cloned()
        .unwrap_or_default();
    let count = kwargs
        .and_then(|k| k.get("count").cloned())
        .unwrap_or_default();
    println!("event on com.example.greeting: {text} (count={count})");

    // Register and call.
    client
        .register("com.example.add", add)
        .await
        .map_err(|e| format!("register: {e:?}"))?;
    let (result, _) = client
        .call("com.example.add", Some(vec![json!(2), json!(3)]), None)
        .await
        .map_err(|e| format!("call: {e:?}"))?;
    let sum = result
        .unwrap_or_default()
        .first()
        .cloned()
        .unwrap_or_default();
    println!("com.example.add(2, 3) = {sum}");

    for session in [&mut listener, &mut client] {
        session
            .leave_realm()
            .await
            .map_err(|e| format!("leave: {e:?}"))?;
    }
    println!("left realm1");
    listener.disconnect().await;
    client.disconnect().await;
    Ok(text == json!("hello from Rust") && count == json!(1) && sum == json!(5))
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:8080/ws".into());
    let serializer = match args.next().as_deref() {
        None | Some("json") => SerializerType::Json,
        Some("msgpack") => SerializerType::MsgPack,
        Some(other) => {
            eprintln!("unknown serializer {other} (json or msgpack)");
            return ExitCode::from(2);
        }
    };
    match tokio::time::timeout(Duration::from_secs(30), run(&url, serializer)).await {
        Ok(Ok(true)) => {
            println!("done");
            ExitCode::SUCCESS
        }
        Ok(Ok(false)) => {
            println!("FAILED: unexpected values");
            ExitCode::FAILURE
        }
        Ok(Err(error)) => {
            println!("FAILED: {error}");
            ExitCode::FAILURE
        }
        Err(_) => {
            println!("FAILED: not done within 30 s");
            ExitCode::FAILURE
        }
    }
}
