//! placeholder
pub mod rawsocket;
pub mod websocket;
