//! The HTTP bridge: crossbar's `publisher`, `caller` and `webhook` services on a listener, each acting as a WAMP
//! session of a configured realm, authid and role.
//!
//! * [`config`]: `[[listeners.services]]` in the configuration file;
//! * [`request`]: HTTP/1.1 requests read in place from a connection's buffer, bounded (head, body, chunks);
//! * [`auth`]: bearer tickets, crossbar's signed requests and their replay memory, GitHub signatures;
//! * [`bridge`]: a request becomes a WAMP message, the router's reply becomes the answer.
//!
//! The event loop's side is `server/http.rs`: every shard opens one session per service (when its first request
//! arrives) through the engine's [`kreisel_engine::Router::join_trusted`], and hands it the requests of the HTTP
//! connections it serves through [`kreisel_engine::Router::handle_message`], like a network session's messages;
//! the engine's answers come back through the shard's sink.

pub mod auth;
pub mod bridge;
pub mod config;
pub mod request;

use kreisel_engine::ConnId;

pub use bridge::{Response, Service};
pub use config::{HttpPrincipal, ServiceConfig, ServiceKind};

/// The services of one listener, compiled (shared by every shard).
#[derive(Debug)]
pub struct Services {
    pub services: Vec<Service>,
    /// The number of the listener's first service among all services of the router (each service has one
    /// session per shard, numbered so).
    pub first: usize,
}

impl Services {
    pub fn new(configs: &[ServiceConfig], first: usize) -> Services {
        Services {
            services: configs.iter().map(Service::new).collect(),
            first,
        }
    }

    /// The service at `path`, with its router-wide number.
    pub fn find(&self, path: &str) -> Option<(usize, &Service)> {
        self.services
            .iter()
            .enumerate()
            .find(|(_, s)| s.path == path)
            .map(|(i, s)| (self.first + i, s))
    }
}

/// Connection IDs of the services' sessions: slab indexes no connection can have (a shard would need 4 billion
/// connections), so the sink tells them from sockets where a connection lookup fails.
const SESSION_BASE: u64 = 0xFFFF_0000;

/// The engine's connection ID of service `number`'s session.
pub fn session_conn(number: usize) -> ConnId {
    ConnId(SESSION_BASE + number as u64)
}

/// The service whose session `conn` is, if it is one.
pub fn service_of(conn: ConnId) -> Option<usize> {
    conn.0
        .checked_sub(SESSION_BASE)
        .filter(|&n| n < 0x1_0000)
        .map(|n| n as usize)
}
