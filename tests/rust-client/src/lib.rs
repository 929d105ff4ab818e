//! See tests/wamp_async.rs.
