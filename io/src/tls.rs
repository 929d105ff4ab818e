//! TLS for listeners (rustls with the `ring` provider): WebSocket over TLS (`wss`) and RawSocket over TLS.
//!
//! [`TlsStream`] wraps a non-blocking socket in a `rustls::ServerConnection` and offers plain `Read`/`Write`, so
//! the framers and the event loop do not change: the handshake advances inside `read`, plaintext written is
//! encrypted into rustls's buffer (bounded) and sent as far as the socket takes it. Ciphertext still held by rustls
//! when the outbox is empty is sent by [`TlsStream::flush_pending`] on the next writable event.

use std::io::{self, IoSlice, Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

/// Plaintext rustls buffers for one connection before `write` says WouldBlock (the outbox keeps the rest).
const PLAINTEXT_BUFFER_MAX: usize = 64 * 1024;

/// Builds a server configuration from PEM files: the certificate chain, its private key and, to require client
/// certificates, the CA certificates that sign them.
pub fn server_config(
    certificate: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .map_err(|e| format!("cannot read certificate {}: {e}", certificate.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate {}: {e}", certificate.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "certificate {}: no CERTIFICATE in the file",
            certificate.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("private key {}: {e}", key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            let cas = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read client CA {}: {e}", path.display()))?;
            for ca in cas {
                let ca = ca.map_err(|e| format!("client CA {}: {e}", path.display()))?;
                roots
                    .add(ca)
                    .map_err(|e| format!("client CA {}: {e}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("client CA {}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "certificate {} and key do not fit: {e}",
            certificate.display()
        )
    })?;
    Ok(Arc::new(config))
}

/// A server-side TLS connection over a non-blocking socket.
#[derive(Debug)]
pub struct TlsStream<S> {
    socket: S,
    tls: ServerConnection,
}

impl<S: Read + Write> TlsStream<S> {
    pub fn new(socket: S, config: Arc<ServerConfig>) -> io::Result<TlsStream<S>> {
        let mut tls = ServerConnection::new(config).map_err(io::Error::other)?;
        tls.set_buffer_limit(Some(PLAINTEXT_BUFFER_MAX));
        Ok(TlsStream { socket, tls })
    }

    pub fn socket(&self) -> &S {
        &self.socket
    }

    pub fn socket_mut(&mut self) -> &mut S {
        &mut self.socket
    }

    /// Sends ciphertext rustls holds. `Ok(true)` when nothing is left, `Ok(false)` when the socket would block.
    pub fn flush_pending(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// RFC 9266 `tls-exporter` channel binding data: 32 octets exported with the label `EXPORTER-Channel-Binding`
    /// and an empty context. Offered on TLS 1.3 only: over TLS 1.2 it is only safe with the extended master
    /// secret, which rustls does not report.
    pub fn tls_exporter(&self) -> Option<[u8; 32]> {
        if self.tls.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
            return None;
        }
        self.tls
            .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", Some(&[]))
            .ok()
    }

    /// Queues a close_notify alert and tries to send it.
    pub fn close_notify(&mut self) {
        self.tls.send_close_notify();
        let _ = self.flush_pending();
    }
}

impl<S: Read + Write> Read for TlsStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                // Ok(0) is the peer's close_notify: end of stream.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match self.tls.read_tls(&mut self.socket) {
                Ok(0) => return Ok(0),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            if let Err(error) = self.tls.process_new_packets() {
                // Send the alert rustls prepared, then fail the connection.
                let _ = self.flush_pending();
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
            // Handshake messages (and alerts) rustls wants to answer with.
            match self.flush_pending() {
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl<S: Read + Write> Write for TlsStream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if !self.flush_pending()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.tls.writer().write_vectored(bufs)?;
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            // rustls's buffer is full (or the handshake is not done): the outbox keeps the bytes.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.flush_pending()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_pending().map(|_| ())
    }
}
