//! # kreisel-io
//!
//! Everything of the kreisel router that touches the operating system: the mio event loop ([`server`]), the
//! RawSocket and WebSocket transports ([`rawsocket`], [`websocket`]: sans-socket framers), per-connection
//! outboxes of shared frames ([`outbox`]), the configuration file ([`config`], with [`secrets`] from the
//! environment and files), what operations need ([`health`] probes, systemd's [`notify`] protocol, non-blocking
//! [`log`] output) and the `kreisel` binary.
//!
//! The routing itself is the sans-IO [`kreisel_engine::Router`]; this crate feeds it decoded messages and
//! writes out what it answers.
#![deny(unused_must_use)]

pub mod auth_config;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod deflate;
pub mod framer;
pub mod health;
pub mod heap;
pub mod http;
pub mod import_crossbar;
pub mod log;
pub mod metrics;
pub mod mqtt;
pub mod notify;
pub mod outbox;
pub mod rawsocket;
pub mod secrets;
pub mod server;
pub mod tls;
pub mod websocket;

pub use config::Config;
pub use server::Server;

/// A seed for the engine's ID generator, drawn from the OS (std's hasher keys are randomly seeded per process).
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}
