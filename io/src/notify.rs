//! systemd's notification protocol (`Type=notify`, `sd_notify(3)`), without libsystemd: a datagram of
//! `KEY=VALUE` lines to the Unix socket named by `$NOTIFY_SOCKET` (a path, or an abstract socket name when it starts
//! with `@`). kreisel sends `READY=1` once its listeners are bound and every shard runs, `STOPPING=1` when it starts
//! to shut down or drain, and `WATCHDOG=1` every half `$WATCHDOG_USEC` while every shard's event loop turns (see
//! `docs/DESIGN.md`, "Operations").

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where to send notifications.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
    /// The socket's name as `$NOTIFY_SOCKET` gave it (for the log).
    name: String,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for: `Ok(None)` when it is unset or empty (not started by systemd, or
    /// not as `Type=notify`), an error when it names nothing usable.
    pub fn from_env() -> io::Result<Option<Notifier>> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(name) if !name.is_empty() => {
                let name = name.into_string().map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, "NOTIFY_SOCKET is not UTF-8")
                })?;
                Notifier::new(&name).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// A notifier for the socket `name`: a path, or `@name` for an abstract socket (Linux).
    pub fn new(name: &str) -> io::Result<Notifier> {
        let address = match name.strip_prefix('@') {
            Some(abstract_name) => abstract_address(abstract_name.as_bytes())?,
            None => SocketAddr::from_pathname(name)?,
        };
        let socket = UnixDatagram::unbound()?;
        // A notification must never stall an event loop: a full socket buffer loses it instead.
        socket.set_nonblocking(true)?;
        Ok(Notifier {
            socket,
            address,
            name: name.to_string(),
        })
    }

    /// The socket's name, as `$NOTIFY_SOCKET` gave it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends one notification (`KEY=VALUE` lines, e.g. `"READY=1\nSTATUS=serving"`).
    pub fn notify(&self, state: &str) -> io::Result<()> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.address)
            .map(|_| ())
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_address(name: &[u8]) -> io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_address(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract socket names (NOTIFY_SOCKET=@...) exist on Linux only",
    ))
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when it is set for this process (`$WATCHDOG_PID` unset
/// or this process's ID), as `sd_watchdog_enabled(3)` reads them.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_reach_a_path_and_an_abstract_socket() {
        let dir = std::env::temp_dir().join(format!("kreisel-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::new(path.to_str().unwrap()).unwrap();
        notifier.notify("READY=1\nSTATUS=ready").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=ready");
        let _ = std::fs::remove_file(&path);

        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let name = format!("kreisel-notify-test-{}", std::process::id());
            let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            let listener = UnixDatagram::bind_addr(&address).unwrap();
            let notifier = Notifier::new(&format!("@{name}")).unwrap();
            notifier.notify("WATCHDOG=1").unwrap();
            let n = listener.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"WATCHDOG=1");
        }
        // Nobody listening: an error to log, not a panic or a hang.
        let gone = Notifier::new(dir.join("nobody.sock").to_str().unwrap()).unwrap();
        assert!(gone.notify("READY=1").is_err());
    }
}
