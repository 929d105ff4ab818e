//! # kreisel-loadtest
//!
//! A router-agnostic WAMP v2 load generator: it speaks RawSocket (TCP and Unix) and WebSocket with JSON or
//! MessagePack to any router, runs the scenarios of the command line (`fanout`, `fanin`, `rpc`, `connect`,
//! `churn`) on one mio event loop per thread, and reports throughput, latency percentiles (coordinated-omission
//! corrected in open loop), loss/duplicate/reorder counts, its own CPU cost per message, and optionally the
//! router's CPU and memory.
//!
//! Layout, from the wire up: [`endpoint`] (URLs), [`rawsocket`] and [`websocket`] (client framing, pure),
//! [`transport`] (a connection: stream, handshake, reader, writer), [`session`] (the WAMP session life cycle),
//! [`roles`] (what each session does), [`worker`] (one thread's event loop), [`run`] (the coordinator and its
//! phases), [`stats`] (accounting and histograms), [`summary`] and [`report`] (output). [`nats`] speaks the core
//! NATS protocol instead of WAMP (`nats://`), to compare a NATS server's fan-out with a router's.
#![deny(unused_must_use)]

pub mod cli;
pub mod endpoint;
pub mod mqtt;
pub mod nats;
pub mod plan;
pub mod rawsocket;
pub mod report;
pub mod roles;
pub mod run;
pub mod session;
pub mod slow;
pub mod soak;
pub mod stats;
pub mod summary;
pub mod sys;
pub mod timeline;
pub mod transport;
pub mod websocket;
pub mod worker;
