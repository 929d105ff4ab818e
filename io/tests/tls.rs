//! TLS listeners over real sockets: RawSocket over TLS and WebSocket over TLS (`wss`) with a certificate from a test
//! CA, client certificates required by `client_ca`, and refusals (no client certificate, untrusted server).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::{pki, Pki};
use kreisel_io::config::{Address, Config};
use kreisel_io::Server;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A router with one TLS listener speaking both transports; returns its address and the stop handle.
fn router(
    pki: &Pki,
    require_client_cert: bool,
) -> (
    SocketAddr,
    kreisel_io::server::StopHandle,
    std::thread::JoinHandle<()>,
) {
    let client_ca = if require_client_cert {
        format!("client_ca = \"{}\"", pki.dir.join("ca.pem").display())
    } else {
        String::new()
    };
    let toml = format!(
        r#"
[[listeners]]
listen = "127.0.0.1:0"
transports = ["websocket", "rawsocket"]
[listeners.tls]
certificate = "{}"
key = "{}"
{client_ca}
"#,
        pki.dir.join("server.pem").display(),
        pki.dir.join("server.key").display()
    );
    let config = Config::from_toml(&toml).expect("valid TLS config");
    let server = Server::bind(config, 1).expect("bind");
    let Address::Tcp(addr) = server.local_addresses()[0].clone() else {
        panic!("TCP listener")
    };
    let stop = server.stop_handle();
    let thread = std::thread::spawn(move || {
        let mut server = server;
        server.run().expect("router loop");
    });
    (addr, stop, thread)
}

fn client_config(pki: &Pki, with_client_cert: bool) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if with_client_cert {
        let cert = CertificateDer::from_pem_slice(pki.client_cert_pem.as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(pki.client_key_pem.as_bytes()).unwrap();
        builder.with_client_auth_cert(vec![cert], key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(config)
}

fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> StreamOwned<ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    StreamOwned::new(ClientConnection::new(config, name).unwrap(), tcp)
}

/// RawSocket JSON handshake, HELLO, WELCOME over any stream; returns the WELCOME.
fn rawsocket_join(stream: &mut (impl Read + Write)) -> std::io::Result<serde_json::Value> {
    stream.write_all(&[0x7F, 0xF1, 0, 0])?;
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply)?;
    if reply[0] != 0x7F {
        // E.g. a TLS alert (content type 21) to a plaintext client.
        return Err(std::io::Error::other(format!(
            "not a RawSocket handshake reply: {reply:?}"
        )));
    }
    let hello = br#"[1, "realm1", {"roles": {"caller": {}}}]"#;
    let mut frame = (hello.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(hello);
    stream.write_all(&frame)?;
    let mut header = [0u8; 4];
    stream.read_exact(&mut header)?;
    let len = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload)?;
    Ok(serde_json::from_slice(&payload).unwrap())
}

#[test]
fn rawsocket_and_websocket_over_tls() {
    let pki = pki("plain");
    let (addr, stop, thread) = router(&pki, false);
    let config = client_config(&pki, false);

    let mut stream = connect(addr, config.clone());
    let welcome = rawsocket_join(&mut stream).expect("RawSocket over TLS");
    assert_eq!(welcome[0], 2);

    let stream = connect(addr, config);
    let request = tungstenite::http::Request::builder()
        .uri(format!("wss://localhost:{}/ws", addr.port()))
        .header("Host", "localhost")
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tungstenite::handshake::client::generate_key(),
        )
        .header("Sec-WebSocket-Protocol", "wamp.2.json")
        .body(())
        .unwrap();
    let (mut ws, _) = tungstenite::client(request, stream).expect("wss handshake");
    ws.send(tungstenite::Message::text(
        r#"[1, "realm1", {"roles": {"caller": {}}}]"#,
    ))
    .unwrap();
    let welcome = ws.read().unwrap();
    let welcome: serde_json::Value = serde_json::from_str(welcome.to_text().unwrap()).unwrap();
    assert_eq!(welcome[0], 2);

    // A plaintext client on the TLS port gets no WAMP service.
    let mut plain = TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(
        rawsocket_join(&mut plain).is_err(),
        "plaintext RawSocket on a TLS listener must fail"
    );

    stop.stop();
    thread.join().unwrap();
}

#[test]
fn client_certificates_are_required_when_configured() {
    let pki = pki("mutual");
    let (addr, stop, thread) = router(&pki, true);

    let mut without = connect(addr, client_config(&pki, false));
    assert!(
        rawsocket_join(&mut without).is_err(),
        "no client certificate: refused"
    );

    let mut with = connect(addr, client_config(&pki, true));
    let welcome = rawsocket_join(&mut with).expect("client certificate accepted");
    assert_eq!(welcome[0], 2);

    stop.stop();
    thread.join().unwrap();
}

#[test]
fn bad_tls_files_are_explained() {
    let pki = pki("bad");
    let toml = |cert: &str, key: &str| {
        format!(
            "[[listeners]]\nlisten = \"127.0.0.1:0\"\ntransports = [\"rawsocket\"]\n[listeners.tls]\ncertificate = \"{cert}\"\nkey = \"{key}\"\n"
        )
    };
    let missing = Config::from_toml(&toml("/nonexistent.pem", "/nonexistent.key"))
        .unwrap_err()
        .0;
    assert!(missing.contains("cannot read certificate"), "{missing}");
    let server_pem = pki.dir.join("server.pem").display().to_string();
    let swapped = Config::from_toml(&toml(&server_pem, &server_pem))
        .unwrap_err()
        .0;
    assert!(swapped.contains("private key"), "{swapped}");
}

fn send_frame(stream: &mut impl Write, value: serde_json::Value) {
    let bytes = value.to_string().into_bytes();
    let mut frame = (bytes.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&bytes);
    stream.write_all(&frame).unwrap();
}

fn recv_frame(stream: &mut impl Read) -> serde_json::Value {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).unwrap();
    let len = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).unwrap();
    serde_json::from_slice(&payload).unwrap()
}

/// A router with a TLS RawSocket listener and realm `scram`, whose principal paula's password is "pencil"
/// (PBKDF2, 4096 iterations).
fn scram_router(
    pki: &Pki,
) -> (
    SocketAddr,
    kreisel_io::server::StopHandle,
    std::thread::JoinHandle<()>,
) {
    let credential = kreisel_engine::scram::Credential::derive(
        "pencil",
        kreisel_engine::scram::Kdf::Pbkdf2,
        b"paula's salt",
        4096,
        None,
    )
    .unwrap();
    let toml = format!(
        r#"
[[realms]]
name = "scram"
[[realms.principals]]
authid = "paula"
role = "user"
scram_kdf = "pbkdf2"
scram_salt = "{}"
scram_iterations = 4096
scram_stored_key = "{}"
scram_server_key = "{}"

[[listeners]]
listen = "127.0.0.1:0"
transports = ["rawsocket"]
[listeners.tls]
certificate = "{}"
key = "{}"
"#,
        credential.salt_hex(),
        credential.stored_key_hex(),
        credential.server_key_hex(),
        pki.dir.join("server.pem").display(),
        pki.dir.join("server.key").display()
    );
    let server = Server::bind(Config::from_toml(&toml).unwrap(), 1).expect("bind");
    let Address::Tcp(addr) = server.local_addresses()[0].clone() else {
        panic!("TCP listener")
    };
    let stop = server.stop_handle();
    let thread = std::thread::spawn(move || {
        let mut server = server;
        server.run().expect("router loop");
    });
    (addr, stop, thread)
}

/// The client side of a `wamp-scram` login bound to `binding` (RFC 9266 `tls-exporter` data), written from the
/// spec: the proof for the CHALLENGE extra, computed with `password`.
fn scram_proof(
    password: &str,
    client_nonce: &str,
    extra: &serde_json::Value,
    binding: &[u8],
) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let salt = b64.decode(extra["salt"].as_str().unwrap()).unwrap();
    let iterations = extra["iterations"].as_u64().unwrap() as u32;
    let mut salted = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(iterations).unwrap(),
        &salt,
        password.as_bytes(),
        &mut salted,
    );
    let nonce = extra["nonce"].as_str().unwrap();
    let header = [b"p=tls-exporter,,".as_slice(), binding].concat();
    let auth_message = format!(
        "n=paula,r={client_nonce},r={nonce},s={},i={iterations},c={},r={nonce}",
        extra["salt"].as_str().unwrap(),
        b64.encode(header)
    );
    let hmac = |key: &[u8], data: &[u8]| {
        ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), data)
    };
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = ring::digest::digest(&ring::digest::SHA256, client_key.as_ref());
    let signature = hmac(stored_key.as_ref(), auth_message.as_bytes());
    let proof: Vec<u8> = (client_key.as_ref().iter())
        .zip(signature.as_ref())
        .map(|(a, b)| a ^ b)
        .collect();
    b64.encode(proof)
}

/// WAMP-SCRAM bound to the TLS channel: on TLS 1.3 the router offers `tls-exporter` and a login bound to this
/// connection succeeds, one bound to another connection (a relayed exchange) fails; on TLS 1.2 the binding is
/// refused at HELLO, so a client that requires it never gets an unbound session.
#[test]
fn scram_binds_to_the_tls_channel() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let pki = pki("scram");
    let (addr, stop, thread) = scram_router(&pki);
    let exporter = |stream: &StreamOwned<ClientConnection, TcpStream>| {
        stream
            .conn
            .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", Some(&[]))
            .unwrap()
    };
    const NONCE: &str = "egVDf3DMJh0AAAAAAAAAAA==";
    let hello = |stream: &mut StreamOwned<ClientConnection, TcpStream>| {
        stream.write_all(&[0x7F, 0xF1, 0, 0]).unwrap();
        let mut reply = [0u8; 4];
        stream.read_exact(&mut reply).unwrap();
        send_frame(
            stream,
            serde_json::json!([1, "scram", {"roles": {"caller": {}}, "authmethods": ["wamp-scram"],
                "authid": "paula", "authextra": {"nonce": NONCE, "channel_binding": "tls-exporter"}}]),
        );
        recv_frame(stream)
    };
    let mut good = connect(addr, client_config(&pki, false));
    let challenge = hello(&mut good);
    assert_eq!(challenge[0], 4, "{challenge}");
    let binding = exporter(&good);
    let proof = scram_proof("pencil", NONCE, &challenge[2], &binding);
    let extra = serde_json::json!({"nonce": challenge[2]["nonce"], "channel_binding": "tls-exporter",
        "cbind_data": b64.encode(binding)});
    send_frame(&mut good, serde_json::json!([5, proof, extra]));
    let welcome = recv_frame(&mut good);
    assert_eq!(welcome[0], 2, "{welcome}");
    assert!(welcome[2]["authextra"]["verifier"].is_string());

    // The exchange relayed onto another connection: its channel's data does not match.
    let mut first = connect(addr, client_config(&pki, false));
    let mut second = connect(addr, client_config(&pki, false));
    let _ = hello(&mut first);
    let challenge = hello(&mut second);
    let foreign = exporter(&first);
    let proof = scram_proof("pencil", NONCE, &challenge[2], &foreign);
    let extra = serde_json::json!({"nonce": challenge[2]["nonce"], "channel_binding": "tls-exporter",
        "cbind_data": b64.encode(foreign)});
    send_frame(&mut second, serde_json::json!([5, proof, extra]));
    let abort = recv_frame(&mut second);
    assert_eq!(abort[0], 3, "{abort}");
    assert_eq!(abort[1]["scram"], "channel-bindings-dont-match");

    // TLS 1.2: no exporter binding is offered.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let tls12 = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut old = connect(addr, Arc::new(tls12));
    let abort = hello(&mut old);
    assert_eq!(abort[0], 3, "{abort}");
    assert_eq!(abort[2], "wamp.error.authentication_failed");
    assert_eq!(abort[1]["scram"], "unsupported-channel-binding-type");

    stop.stop();
    thread.join().unwrap();
}
