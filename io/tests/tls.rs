//! TLS listeners over real sockets: RawSocket over TLS and WebSocket over TLS (`wss`) with a certificate from a test
//! CA, client certificates required by `client_ca`, and refusals (no client certificate, untrusted server).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kreisel_io::config::{Address, Config};
use kreisel_io::Server;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

struct Pki {
    dir: PathBuf,
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

/// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, written as PEM files.
fn pki(tag: &str) -> Pki {
    let dir = std::env::temp_dir().join(format!("kreisel-tls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["client.example".to_string()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
    Pki {
        dir,
        ca_pem: ca.pem(),
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

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
