//! The cluster backplane's I/O: the `[cluster]` configuration, a mio-native NATS client (core protocol, TLS,
//! reconnection across servers), the JetStream key-value requests the engine's [`kreisel_engine::cluster::Node`]
//! asks for, and the start of a node (joining the members record). The backplane thread that runs a node is in
//! `server/backplane.rs`.

pub mod client;
pub mod config;
pub mod join;
pub mod kv;
pub mod metrics;

pub use config::ClusterConfig;
