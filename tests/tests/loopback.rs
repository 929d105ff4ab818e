//! End to end over loopback with kreisel's own test client: every transport (WebSocket, RawSocket over TCP and
//! Unix) and serializer (JSON, MessagePack, CBOR), cross-serializer routing, and a fan-out burst to 1000
//! subscribers.

use kreisel_codec::Serializer;
use kreisel_tests::{Client, TestRouter};
use serde_json::json;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Ws,
    Rs,
    Unix,
}

const KINDS: [Kind; 3] = [Kind::Ws, Kind::Rs, Kind::Unix];

fn connect(router: &TestRouter, kind: Kind, serializer: Serializer) -> Client {
    match kind {
        Kind::Ws => Client::websocket(router.ws, serializer),
        Kind::Rs => Client::rawsocket(router.rs, serializer),
        Kind::Unix => Client::rawsocket_unix(&router.unix, serializer),
    }
}

#[test]
fn pubsub_and_rpc_on_every_transport_and_serializer() {
    let router = TestRouter::start("");
    for kind in KINDS {
        for serializer in Serializer::ALL {
            let what = format!("{kind:?}/{}", serializer.name());
            let mut sub = connect(&router, kind, serializer);
            let mut publ = connect(&router, kind, serializer);
            sub.join();
            publ.join();
            sub.send(r#"[32, 1, {}, "com.example.t"]"#);
            let subscription = sub.expect()[2].clone();
            publ.send(
                r#"[16, 1, {"acknowledge": true}, "com.example.t", [1, "ü😀", {"n": [null, true, 1.5]}, 9007199254740992], {"k": "v"}]"#,
            );
            let event = sub.expect();
            assert_eq!(event[1], subscription, "{what}");
            assert_eq!(
                event[4],
                json!([1, "ü😀", {"n": [null, true, 1.5]}, 9007199254740992u64]),
                "{what}"
            );
            assert_eq!(event[5], json!({"k": "v"}), "{what}");
            assert_eq!(publ.expect()[0], 17, "{what}: PUBLISHED");

            sub.send(r#"[64, 2, {}, "com.example.echo"]"#);
            assert_eq!(sub.expect()[0], 65, "{what}");
            publ.send(r#"[48, 2, {}, "com.example.echo", ["x"], {"y": 1}]"#);
            let invocation = sub.expect();
            assert_eq!(invocation[0], 68, "{what}");
            sub.send(&format!(
                r#"[70, {}, {{}}, ["x"], {{"y": 1}}]"#,
                invocation[1]
            ));
            assert_eq!(publ.expect(), json!([50, 2, {}, ["x"], {"y": 1}]), "{what}");

            publ.send(r#"[6, {}, "wamp.close.close_realm"]"#);
            assert_eq!(
                publ.expect(),
                json!([6, {}, "wamp.close.goodbye_and_out"]),
                "{what}"
            );
            sub.send(r#"[6, {}, "wamp.close.close_realm"]"#);
            assert_eq!(sub.expect()[0], 6, "{what}");
        }
    }
}

#[test]
fn json_and_msgpack_sessions_exchange_binary_and_unicode() {
    let router = TestRouter::start("");
    let mut json_sub = Client::websocket(router.ws, Serializer::Json);
    let mut pack_sub = Client::rawsocket(router.rs, Serializer::MsgPack);
    let mut json_pub = Client::rawsocket(router.rs, Serializer::Json);
    for client in [&mut json_sub, &mut pack_sub, &mut json_pub] {
        client.join();
        client.send(r#"[32, 1, {}, "com.example.bin"]"#);
        assert_eq!(client.expect()[0], 33);
    }
    // JSON binary convention: "\u0000" + base64 of [1, 2, 3] is "\u0000AQID". MessagePack peers receive `bin`,
    // which the test client's decoder turns back into the JSON convention for comparison.
    json_pub.send(
        r#"[16, 2, {"exclude_me": false}, "com.example.bin", ["\u0000AQID", "€"], {"big": 18446744073709551615}]"#,
    );
    for client in [&mut json_sub, &mut pack_sub, &mut json_pub] {
        let event = client.expect();
        assert_eq!(
            event[4],
            json!(["\u{0}AQID", "€"]),
            "{:?}",
            client.serializer
        );
        assert_eq!(event[5]["big"].as_u64(), Some(u64::MAX));
    }
    // And the reverse: a MessagePack publisher with real `bin` reaches JSON subscribers as base64 strings.
    let mut pack_pub = Client::websocket(router.ws, Serializer::MsgPack);
    pack_pub.join();
    pack_pub.send(r#"[16, 3, {}, "com.example.bin", ["\u0000/wA="]]"#);
    for client in [&mut json_sub, &mut pack_sub, &mut json_pub] {
        assert_eq!(client.expect()[4], json!(["\u{0}/wA="]));
    }
}

#[test]
fn json_publisher_reaches_cbor_subscribers_with_binary_and_unicode() {
    let router = TestRouter::start("");
    let mut cbor_ws = Client::websocket(router.ws, Serializer::Cbor);
    let mut cbor_rs = Client::rawsocket(router.rs, Serializer::Cbor);
    let mut cbor_unix = Client::rawsocket_unix(&router.unix, Serializer::Cbor);
    let mut pack_sub = Client::rawsocket(router.rs, Serializer::MsgPack);
    let mut json_sub = Client::websocket(router.ws, Serializer::Json);
    let mut subscribers = [
        &mut cbor_ws,
        &mut cbor_rs,
        &mut cbor_unix,
        &mut pack_sub,
        &mut json_sub,
    ];
    for client in subscribers.iter_mut() {
        client.join();
        client.send(r#"[32, 1, {}, "com.example.cbor"]"#);
        assert_eq!(client.expect()[0], 33);
    }
    let mut json_pub = Client::websocket(router.ws, Serializer::Json);
    json_pub.join();
    json_pub.send(
        r#"[16, 2, {}, "com.example.cbor", ["\u0000AQID", "\u0000", "ü€😀\u0000x", -1.5, 18446744073709551615, -9223372036854775808], {"bin": "\u0000/wA=", "日本": [null, true]}]"#,
    );
    let args = json!([
        "\u{0}AQID",
        "\u{0}",
        "ü€😀\u{0}x",
        -1.5,
        18446744073709551615u64,
        -9223372036854775808i64
    ]);
    let kwargs = json!({"bin": "\u{0}/wA=", "日本": [null, true]});
    // On the wire a CBOR subscriber gets real byte strings (major type 2) and UTF-8 text (major type 3).
    let frame = cbor_ws.recv_frame().expect("EVENT");
    for (needle, what) in [
        (&[0x43, 1, 2, 3][..], "bytes [1, 2, 3]"),
        (&[0x40], "empty bytes"),
        (&[0x42, 0xff, 0x00], "bytes [255, 0]"),
        ("\u{fc}\u{20ac}\u{1f600}\u{0}x".as_bytes(), "UTF-8 text"),
    ] {
        assert!(
            frame.windows(needle.len()).any(|w| w == needle),
            "{what} in {frame:02x?}"
        );
    }
    let event = kreisel_tests::decode(Serializer::Cbor, &frame);
    assert_eq!(
        (&event[4], &event[5]),
        (&args, &kwargs),
        "CBOR over WebSocket"
    );
    for client in [&mut cbor_rs, &mut cbor_unix, &mut pack_sub, &mut json_sub] {
        let event = client.expect();
        assert_eq!(event[0], 36);
        assert_eq!(
            (&event[4], &event[5]),
            (&args, &kwargs),
            "{:?}",
            client.serializer
        );
    }

    // And the reverse: a CBOR publisher with native byte strings, an indefinite-length list and a tag reaches the
    // JSON subscriber as base64 strings; CBOR subscribers receive its payload bytes verbatim.
    let mut cbor_pub = Client::rawsocket(router.rs, Serializer::Cbor);
    cbor_pub.join();
    let payload = [
        0x9f, 0x42, 0xff, 0x00, 0xc1, 0x1a, 0x00, 0x01, 0x00, 0x00, 0x63, 0xe2, 0x82, 0xac, 0xff,
    ];
    let mut publish = vec![0x85, 0x10, 0x03, 0xa0, 0x70];
    publish.extend_from_slice(b"com.example.cbor");
    publish.extend_from_slice(&payload);
    cbor_pub.send_bytes(&publish);
    let expected = json!(["\u{0}/wA=", 65536, "€"]);
    assert_eq!(json_sub.expect()[4], expected);
    assert_eq!(pack_sub.expect()[4], expected);
    for client in [&mut cbor_ws, &mut cbor_rs, &mut cbor_unix] {
        let frame = client.recv_frame().expect("EVENT");
        assert!(
            frame.ends_with(&payload),
            "payload copied verbatim: {frame:02x?}"
        );
        assert_eq!(kreisel_tests::decode(Serializer::Cbor, &frame)[4], expected);
    }
}

#[test]
fn a_thousand_subscribers_receive_every_event_on_each_transport() {
    const SUBSCRIBERS: usize = 1000;
    const EVENTS: usize = 20;
    let router = TestRouter::start("");
    for kind in KINDS {
        let mut subscribers: Vec<Client> = (0..SUBSCRIBERS)
            .map(|i| {
                let serializer = Serializer::ALL[i % Serializer::ALL.len()];
                let mut client = connect(&router, kind, serializer);
                client.join();
                client.send(r#"[32, 1, {}, "com.example.fanout"]"#);
                assert_eq!(client.expect()[0], 33);
                client
            })
            .collect();
        let mut publisher = connect(&router, kind, Serializer::Json);
        publisher.join();
        for seq in 0..EVENTS {
            publisher.send(&format!(
                r#"[16, {}, {{}}, "com.example.fanout", [{seq}, "payload"]]"#,
                seq + 1
            ));
        }
        publisher.send(r#"[16, 999, {"acknowledge": true}, "com.example.done", []]"#);
        assert_eq!(publisher.expect()[0], 17);
        for (i, client) in subscribers.iter_mut().enumerate() {
            for seq in 0..EVENTS {
                let event = client.expect();
                assert_eq!(event[0], 36, "{kind:?} subscriber {i}");
                assert_eq!(
                    event[4][0], seq,
                    "{kind:?} subscriber {i}: events in publication order"
                );
            }
        }
        drop(subscribers);
    }
}

#[test]
fn callee_disconnect_fails_pending_calls_over_sockets() {
    let router = TestRouter::start("");
    let mut callee = Client::rawsocket(router.rs, Serializer::MsgPack);
    let mut caller = Client::websocket(router.ws, Serializer::Json);
    callee.join();
    caller.join();
    callee.send(r#"[64, 1, {}, "com.example.slow"]"#);
    assert_eq!(callee.expect()[0], 65);
    caller.send(r#"[48, 7, {}, "com.example.slow", []]"#);
    assert_eq!(callee.expect()[0], 68);
    drop(callee);
    let error = caller.expect();
    assert_eq!(error[0], 8);
    assert_eq!(error[1], 48);
    assert_eq!(error[2], 7);
    assert_eq!(error[4], "wamp.error.canceled");
}
