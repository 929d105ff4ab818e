//! placeholder
pub mod rawsocket;
