//! Interoperability of kreisel's sans-socket WebSocket server side with an independent client implementation:
//! tungstenite's client talks to `handle_upgrade`, `FrameReader` and the frame writers over an in-memory pipe.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::rc::Rc;

use kreisel_codec::Serializer;
use kreisel_io::websocket::{
    close_frame, control_frame, handle_upgrade, write_header, Event, FrameReader, OpCode,
    UpgradeConfig, UpgradeOutcome,
};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode as TOpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame};
use tungstenite::{Message, WebSocket};

/// The client's end of an in-memory connection: what it writes goes to the server, it reads what the server
/// wrote; an empty read is `WouldBlock`, as on a non-blocking socket.
#[derive(Clone, Default)]
struct Pipe {
    to_server: Rc<RefCell<Vec<u8>>>,
    to_client: Rc<RefCell<VecDeque<u8>>>,
}

impl Pipe {
    fn take_to_server(&self) -> Vec<u8> {
        std::mem::take(&mut *self.to_server.borrow_mut())
    }

    fn send_to_client(&self, bytes: &[u8]) {
        self.to_client.borrow_mut().extend(bytes);
    }
}

impl Read for Pipe {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut queue = self.to_client.borrow_mut();
        if queue.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = out.len().min(queue.len());
        for (dst, src) in out.iter_mut().zip(queue.drain(..n)) {
            *dst = src;
        }
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.to_server.borrow_mut().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn connect(protocols: &'static str) -> (WebSocket<Pipe>, Pipe, Serializer) {
    let pipe = Pipe::default();
    let mut request = "ws://localhost:8080/ws?x=1".into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(protocols),
    );
    let mid = match tungstenite::client(request, pipe.clone()) {
        Err(HandshakeError::Interrupted(mid)) => mid,
        Err(error) => panic!("client handshake failed: {error}"),
        Ok(_) => panic!("client handshake completed without a response"),
    };
    let head = pipe.take_to_server();
    let cfg = UpgradeConfig::new("/ws", Serializer::ALL.to_vec());
    let UpgradeOutcome::Accept {
        serializer,
        consumed,
        response,
        ..
    } = handle_upgrade(&head, &cfg)
    else {
        panic!("upgrade refused: {}", String::from_utf8_lossy(&head));
    };
    assert_eq!(consumed, head.len());
    pipe.send_to_client(&response);
    let (ws, response) = mid.handshake().unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        serializer.subprotocol()
    );
    (ws, pipe, serializer)
}

#[derive(Debug, PartialEq)]
enum Owned {
    Message(Vec<u8>, bool),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
    Fragment,
}

/// Reads every complete frame the client has sent so far.
fn server_reads(reader: &mut FrameReader, pipe: &Pipe) -> Vec<Owned> {
    let mut buf = pipe.take_to_server();
    let mut pos = 0;
    let mut events = Vec::new();
    while let Some((consumed, event)) = reader.read(&mut buf[pos..]).unwrap() {
        events.push(match event {
            Event::Message { data, text } | Event::Compressed { data, text } => {
                Owned::Message(data.to_vec(), text)
            }
            Event::Ping(data) => Owned::Ping(data.to_vec()),
            Event::Pong(data) => Owned::Pong(data.to_vec()),
            Event::Close { code, reason } => Owned::Close(code, reason.to_owned()),
            Event::Fragment => Owned::Fragment,
        });
        pos += consumed;
    }
    assert_eq!(pos, buf.len(), "the client sent only complete frames");
    events
}

fn server_sends(pipe: &Pipe, opcode: OpCode, payload: &[u8]) {
    let mut header = [0; 10];
    let header_len = write_header(opcode, true, payload.len(), &mut header);
    pipe.send_to_client(&header[..header_len]);
    pipe.send_to_client(payload);
}

#[test]
fn tungstenite_client_negotiates_the_first_subprotocol_it_offers() {
    assert_eq!(
        connect("wamp.2.msgpack, wamp.2.json").2,
        Serializer::MsgPack
    );
    assert_eq!(
        connect("wamp.2.cbor, wamp.2.json, wamp.2.msgpack").2,
        Serializer::Cbor
    );
    // Names kreisel does not speak are skipped.
    assert_eq!(
        connect("wamp.2.ubjson, wamp.2.cbor.batched, wamp.2.json").2,
        Serializer::Json
    );
}

#[test]
fn tungstenite_client_frames_are_read_in_place() {
    let (mut ws, pipe, _) = connect("wamp.2.json");
    let mut reader = FrameReader::new(1 << 20);
    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::text(r#"[1,"realm1",{}]"#)).unwrap();
    ws.send(Message::binary(big.clone())).unwrap();
    ws.send(Message::Ping(b"keepalive".to_vec().into()))
        .unwrap();
    let first = Frame::message(
        "caf\u{e9}".as_bytes()[..4].to_vec(),
        TOpCode::Data(Data::Text),
        false,
    );
    let last = Frame::message(
        "caf\u{e9}".as_bytes()[4..].to_vec(),
        TOpCode::Data(Data::Continue),
        true,
    );
    ws.send(Message::Frame(first)).unwrap();
    ws.send(Message::Ping(Vec::new().into())).unwrap();
    ws.send(Message::Frame(last)).unwrap();
    assert_eq!(
        server_reads(&mut reader, &pipe),
        [
            Owned::Message(br#"[1,"realm1",{}]"#.to_vec(), true),
            Owned::Message(big, false),
            Owned::Ping(b"keepalive".to_vec()),
            Owned::Fragment,
            Owned::Ping(Vec::new()),
            Owned::Message("caf\u{e9}".as_bytes().to_vec(), true),
        ]
    );

    ws.close(Some(CloseFrame {
        code: CloseCode::Away,
        reason: "tab closed".into(),
    }))
    .unwrap();
    assert_eq!(
        server_reads(&mut reader, &pipe),
        [Owned::Close(Some(1001), "tab closed".to_owned())]
    );
}

#[test]
fn tungstenite_client_reads_server_frames() {
    let (mut ws, pipe, _) = connect("wamp.2.json");
    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
    server_sends(&pipe, OpCode::Text, br#"[2,1,{}]"#);
    server_sends(&pipe, OpCode::Binary, &big);
    server_sends(&pipe, OpCode::Binary, &big[..126]);
    let mut ping = Vec::new();
    control_frame(OpCode::Ping, b"are you there", &mut ping);
    pipe.send_to_client(&ping);

    assert_eq!(ws.read().unwrap(), Message::text(r#"[2,1,{}]"#));
    assert_eq!(ws.read().unwrap(), Message::binary(big.clone()));
    assert_eq!(ws.read().unwrap(), Message::binary(big[..126].to_vec()));
    assert_eq!(
        ws.read().unwrap(),
        Message::Ping(b"are you there".to_vec().into())
    );
    // tungstenite answers the ping with a pong on its next write.
    ws.flush().unwrap();
    let mut reader = FrameReader::new(1024);
    assert_eq!(
        server_reads(&mut reader, &pipe),
        [Owned::Pong(b"are you there".to_vec())]
    );

    let mut close = Vec::new();
    close_frame(1001, "wamp.close.system_shutdown", &mut close);
    pipe.send_to_client(&close);
    let Message::Close(Some(frame)) = ws.read().unwrap() else {
        panic!("expected a close frame");
    };
    assert_eq!(frame.code, CloseCode::Away);
    assert_eq!(frame.reason.as_str(), "wamp.close.system_shutdown");
}
