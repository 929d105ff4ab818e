//! Router addresses: `rs://host:port`, `ws://host:port/path`, `unix:///path`, and `nats://host:port` (a NATS
//! server instead of a WAMP router, see [`crate::nats`]).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Where the router listens and which transport to speak there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// RawSocket over TCP.
    RawSocketTcp { host: String, port: u16 },
    /// WebSocket over TCP; `path` starts with `/`.
    WebSocket {
        host: String,
        port: u16,
        path: String,
    },
    /// RawSocket over a Unix domain socket.
    RawSocketUnix { path: PathBuf },
    /// The core NATS protocol over TCP (fanout and fanin only).
    Nats { host: String, port: u16 },
    /// MQTT 3.1.1 over TCP (fanout, fanin and connect; see [`crate::mqtt`]).
    Mqtt { host: String, port: u16 },
}

/// The transport family of an endpoint, as it appears in results (`rawsocket`, `websocket`, `rawsocket-unix`,
/// `nats`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    RawSocket,
    WebSocket,
    RawSocketUnix,
    Nats,
    Mqtt,
}

impl TransportKind {
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::RawSocket => "rawsocket",
            TransportKind::WebSocket => "websocket",
            TransportKind::RawSocketUnix => "rawsocket-unix",
            TransportKind::Nats => "nats",
            TransportKind::Mqtt => "mqtt",
        }
    }
}

impl Endpoint {
    /// Parses `rs://host:port`, `ws://host[:port][/path]` (port 80 and path `/` by default), `unix:///path` or
    /// `nats://host[:port]` (port 4222 by default). IPv6 hosts are written in brackets: `rs://[::1]:8081`.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("`{url}`: expected scheme://..."))?;
        match scheme {
            "rs" | "rawsocket" => {
                let (host, port) = split_host_port(rest, None)?;
                if rest.contains('/') {
                    return Err(format!("`{url}`: a RawSocket URL has no path"));
                }
                Ok(Endpoint::RawSocketTcp { host, port })
            }
            "ws" => {
                let (authority, path) = match rest.find('/') {
                    Some(i) => (&rest[..i], &rest[i..]),
                    None => (rest, "/"),
                };
                let (host, port) = split_host_port(authority, Some(80))?;
                Ok(Endpoint::WebSocket {
                    host,
                    port,
                    path: path.to_owned(),
                })
            }
            "unix" => {
                if !rest.starts_with('/') || rest.len() < 2 {
                    return Err(format!("`{url}`: expected unix:///absolute/path"));
                }
                Ok(Endpoint::RawSocketUnix {
                    path: PathBuf::from(rest),
                })
            }
            "nats" => {
                if rest.contains('/') {
                    return Err(format!("`{url}`: a NATS URL has no path"));
                }
                if rest.contains('@') {
                    return Err(format!(
                        "`{url}`: no credentials: the load generator connects anonymously"
                    ));
                }
                let (host, port) = split_host_port(rest, Some(4222))?;
                Ok(Endpoint::Nats { host, port })
            }
            "mqtt" => {
                if rest.contains('/') || rest.contains('@') {
                    return Err(format!("`{url}`: an MQTT URL is mqtt://host[:port]"));
                }
                let (host, port) = split_host_port(rest, Some(1883))?;
                Ok(Endpoint::Mqtt { host, port })
            }
            "wss" => Err(format!("`{url}`: TLS is not supported; use ws://")),
            "tls" => Err(format!("`{url}`: TLS is not supported; use nats://")),
            other => Err(format!(
                "`{url}`: unknown scheme `{other}` (rs, ws, unix, nats or mqtt)"
            )),
        }
    }

    pub fn kind(&self) -> TransportKind {
        match self {
            Endpoint::RawSocketTcp { .. } => TransportKind::RawSocket,
            Endpoint::WebSocket { .. } => TransportKind::WebSocket,
            Endpoint::RawSocketUnix { .. } => TransportKind::RawSocketUnix,
            Endpoint::Nats { .. } => TransportKind::Nats,
            Endpoint::Mqtt { .. } => TransportKind::Mqtt,
        }
    }

    /// An MQTT broker (or listener) rather than a WAMP router.
    pub fn is_mqtt(&self) -> bool {
        matches!(self, Endpoint::Mqtt { .. })
    }

    /// A protocol of its own on a bare connection (NATS, MQTT): no WAMP, no serializer.
    pub fn is_raw(&self) -> bool {
        self.is_nats() || self.is_mqtt()
    }

    /// A NATS server rather than a WAMP router.
    pub fn is_nats(&self) -> bool {
        matches!(self, Endpoint::Nats { .. })
    }

    /// Resolves a TCP endpoint to its first socket address (`None` for Unix sockets).
    pub fn resolve(&self) -> Result<Option<SocketAddr>, String> {
        let (host, port) = match self {
            Endpoint::RawSocketTcp { host, port }
            | Endpoint::WebSocket { host, port, .. }
            | Endpoint::Nats { host, port }
            | Endpoint::Mqtt { host, port } => (host, *port),
            Endpoint::RawSocketUnix { .. } => return Ok(None),
        };
        let mut addrs = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve `{host}`: {e}"))?;
        addrs
            .next()
            .map(Some)
            .ok_or_else(|| format!("`{host}` resolves to no address"))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::RawSocketTcp { host, port } => write!(f, "rs://{}:{port}", bracket(host)),
            Endpoint::WebSocket { host, port, path } => {
                write!(f, "ws://{}:{port}{path}", bracket(host))
            }
            Endpoint::RawSocketUnix { path } => write!(f, "unix://{}", path.display()),
            Endpoint::Nats { host, port } => write!(f, "nats://{}:{port}", bracket(host)),
            Endpoint::Mqtt { host, port } => write!(f, "mqtt://{}:{port}", bracket(host)),
        }
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn split_host_port(authority: &str, default_port: Option<u16>) -> Result<(String, u16), String> {
    let authority = authority.split('/').next().unwrap_or_default();
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{authority}`: unclosed `[`"))?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err(format!("`{authority}`: junk after `]`")),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("`{authority}`: missing host"));
    }
    let port = match (port, default_port) {
        (Some(port), _) => port
            .parse::<u16>()
            .map_err(|_| format!("`{authority}`: bad port `{port}`"))?,
        (None, Some(port)) => port,
        (None, None) => return Err(format!("`{authority}`: missing port")),
    };
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rawsocket_tcp() {
        assert_eq!(
            Endpoint::parse("rs://127.0.0.1:8081"),
            Ok(Endpoint::RawSocketTcp {
                host: "127.0.0.1".into(),
                port: 8081
            })
        );
        assert_eq!(
            Endpoint::parse("rs://[::1]:9"),
            Ok(Endpoint::RawSocketTcp {
                host: "::1".into(),
                port: 9
            })
        );
        assert!(
            Endpoint::parse("rs://localhost").is_err(),
            "port is required"
        );
        assert!(Endpoint::parse("rs://localhost:80/x").is_err(), "no path");
        assert!(Endpoint::parse("rs://:80").is_err(), "host is required");
        assert!(Endpoint::parse("rs://h:99999").is_err());
    }

    #[test]
    fn websocket() {
        assert_eq!(
            Endpoint::parse("ws://localhost:8080/ws"),
            Ok(Endpoint::WebSocket {
                host: "localhost".into(),
                port: 8080,
                path: "/ws".into()
            })
        );
        assert_eq!(
            Endpoint::parse("ws://localhost"),
            Ok(Endpoint::WebSocket {
                host: "localhost".into(),
                port: 80,
                path: "/".into()
            })
        );
        assert_eq!(
            Endpoint::parse("ws://[::1]/a/b?x=1"),
            Ok(Endpoint::WebSocket {
                host: "::1".into(),
                port: 80,
                path: "/a/b?x=1".into()
            })
        );
        assert!(Endpoint::parse("wss://localhost/ws").is_err());
    }

    #[test]
    fn unix() {
        assert_eq!(
            Endpoint::parse("unix:///tmp/k.sock"),
            Ok(Endpoint::RawSocketUnix {
                path: "/tmp/k.sock".into()
            })
        );
        assert!(Endpoint::parse("unix://relative").is_err());
        assert!(Endpoint::parse("http://x:1").is_err());
        assert!(Endpoint::parse("nothing").is_err());
    }

    #[test]
    fn nats() {
        let e = Endpoint::parse("nats://127.0.0.1:4222").expect("valid");
        assert_eq!(
            e,
            Endpoint::Nats {
                host: "127.0.0.1".into(),
                port: 4222
            }
        );
        assert!(e.is_nats());
        assert_eq!(e.kind().name(), "nats");
        assert_eq!(
            Endpoint::parse("nats://localhost"),
            Ok(Endpoint::Nats {
                host: "localhost".into(),
                port: 4222
            })
        );
        assert!(!Endpoint::parse("rs://h:1").expect("valid").is_nats());
        assert!(Endpoint::parse("nats://h:1/x").is_err(), "no path");
        assert!(
            Endpoint::parse("nats://user:pw@h:1").is_err(),
            "no credentials"
        );
        assert!(Endpoint::parse("tls://h:4222").is_err());
    }

    #[test]
    fn display_round_trips() {
        for url in [
            "rs://127.0.0.1:8081",
            "ws://[::1]:80/ws",
            "unix:///tmp/k.sock",
            "nats://127.0.0.1:4222",
        ] {
            assert_eq!(
                Endpoint::parse(url).map(|e| e.to_string()),
                Ok(url.to_owned())
            );
        }
    }

    #[test]
    fn resolves_loopback() {
        let e = Endpoint::parse("rs://127.0.0.1:8081").expect("valid");
        assert_eq!(
            e.resolve(),
            Ok(Some("127.0.0.1:8081".parse().expect("addr")))
        );
    }
}
