//! # kreisel-engine
//!
//! The sans-IO core of the kreisel WAMP router: realms, sessions, the broker and the dealer. It never touches a
//! socket, a clock or a random source: the caller passes decoded [`Message`]s and the current time in, and the
//! engine pushes the messages it wants sent into a caller-provided [`Sink`].
//!
//! Call order for one transport connection: [`Router::handle_open`] once; then [`Router::handle_message`] for
//! every decoded message (or [`Router::handle_protocol_violation`] for a frame that did not decode);
//! [`Router::handle_close`] exactly once when the transport is gone, whether the engine asked for the close
//! ([`Sink::close`]) or the peer vanished. [`Router::handle_shutdown`] says GOODBYE to everyone.
//!
//! [`Message`]: kreisel_codec::Message
#![forbid(unsafe_code)]
#![deny(unused_must_use)]

pub mod auth;
pub mod authz;
mod broker;
pub mod cluster;
mod config;
mod dealer;
pub mod dynamic;
mod features;
pub mod ids;
pub mod link;
mod options;
mod retention;
mod router;
pub mod scram;
mod session;
pub mod uri;

pub use auth::{AuthConfig, AuthenticatorConfig, Method, PrincipalConfig, Salt, WampCraSecret};
pub use authz::{PermissionConfig, Perms, RoleConfig};
pub use config::{EngineLimits, RealmConfig, RouterConfig};
pub use dynamic::{AuthorizerConfig, CacheScope, Patterns};
pub use router::{
    errors, AuthReload, ConnId, Peer, RealmGauges, Recipients, Router, SessionInfo, Sink, Stats,
};
pub use session::{SessionHandle, TransportInfo};
