//! Transport handshakes: the RawSocket hello and the HTTP upgrade (or a metrics or health request) on WebSocket
//! listeners.

use std::sync::atomic::Ordering;

use kreisel_codec::Serializer;
use tracing::{debug, info};

use super::shard::Shard;
use crate::conn::{CloseCause, Framing, Transport};
use crate::deflate::ConnDeflate;
use crate::framer::{AnyFramer, Batched, RawSocketFramer, WebSocketFramer};
use crate::{rawsocket, websocket};

impl Shard {
    /// Answers a WebSocket upgrade with 503 and closes the connection when the router is draining (lame duck) or
    /// the connection is over `connections_max`; true when it did. `client` names the kind of client in the log.
    fn refuse_upgrade(&mut self, index: usize, client: &str) -> bool {
        let draining = self.shared.draining.load(Ordering::Relaxed);
        if !self.conns[index].over_limit && !draining {
            return false;
        }
        let body = if draining {
            debug!(peer = %self.conns[index].peer, "draining (lame duck); refusing {client} client");
            "draining: not accepting sessions\n"
        } else {
            self.stats.refused_over_limit += 1;
            info!(peer = %self.conns[index].peer, "connection limit reached; refusing {client} client");
            "connection limit reached\n"
        };
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.send_raw(index, &[], response.as_bytes());
        self.conns[index].closing = Some(CloseCause::ConnectionLimit);
        true
    }

    fn open_session(&mut self, index: usize, serializer: Serializer) {
        let conn = &self.conns[index];
        let handle = self
            .router
            .handle_open(super::conn_id(index, conn.generation), serializer);
        self.conns[index].session = Some(handle);
    }

    /// The longest message a connection may send before its session joins a realm.
    pub(super) fn before_welcome(&self) -> usize {
        let limits = &self.config.limits;
        limits.unjoined_message_max.min(limits.message_max)
    }

    pub(super) fn rawsocket_handshake(
        &mut self,
        index: usize,
        input: &mut [u8],
        transport: &mut Transport,
    ) -> Option<usize> {
        let hello: [u8; 4] = input.get(..4)?.try_into().ok()?;
        let draining = self.shared.draining.load(Ordering::Relaxed);
        if self.conns[index].over_limit || draining {
            if draining {
                // A listener kept open for the probes during a drain takes no new sessions.
                debug!(peer = %self.conns[index].peer, "draining (lame duck); refusing RawSocket client");
            } else {
                self.stats.refused_over_limit += 1;
                info!(peer = %self.conns[index].peer, "connection limit reached; refusing RawSocket client");
            }
            self.send_raw(
                index,
                &[],
                &rawsocket::reject_reply(rawsocket::ERROR_CONNECTION_LIMIT),
            );
            self.conns[index].closing = Some(CloseCause::ConnectionLimit);
            return None;
        }
        let listener = &self.shared.listeners[usize::from(self.conns[index].listener)];
        match rawsocket::handle_handshake(hello, &listener.serializers, self.rawsocket_exponent) {
            rawsocket::HandshakeOutcome::Accept {
                serializer,
                peer_max_len,
                reply,
            } => {
                self.send_raw(index, &[], &reply);
                self.conns[index].framing = Framing::RawSocket {
                    // At most 2^24 (the RawSocket handshake's largest length).
                    peer_max_len: peer_max_len.min(rawsocket::LEN_MAX) as u32,
                };
                let framer = RawSocketFramer::new(
                    rawsocket::max_len(self.rawsocket_exponent),
                    self.before_welcome(),
                );
                *transport = Transport::Framed {
                    serializer,
                    framer: AnyFramer::RawSocket(framer),
                };
                self.open_session(index, serializer);
                debug!(peer = %self.conns[index].peer, serializer = serializer.name(), "RawSocket open");
                Some(4)
            }
            rawsocket::HandshakeOutcome::Reject { reply, reason } => {
                info!(peer = %self.conns[index].peer, %reason, "RawSocket handshake refused");
                self.send_raw(index, &[], &reply);
                self.conns[index].closing = Some(CloseCause::Handshake);
                None
            }
            rawsocket::HandshakeOutcome::NotRawSocket => {
                self.abandon(index, CloseCause::Handshake);
                None
            }
        }
    }

    pub(super) fn http_upgrade(
        &mut self,
        index: usize,
        input: &mut [u8],
        transport: &mut Transport,
    ) -> Option<usize> {
        let shared = self.shared.clone();
        let listener = &shared.listeners[usize::from(self.conns[index].listener)];
        if let Some(services) = &listener.http {
            // A request for one of the listener's HTTP services rather than the WebSocket path.
            let path = crate::http::request::request_path(input)?;
            if path.is_some_and(|path| services.find(path).is_some()) {
                *transport = Transport::Http(Default::default());
                return Some(0);
            }
        }
        let upgrade = listener.websocket.as_ref()?;
        match websocket::handle_upgrade(input, upgrade) {
            websocket::UpgradeOutcome::Incomplete => None,
            websocket::UpgradeOutcome::Accept {
                serializer,
                batched,
                deflate,
                consumed,
                response,
            } => {
                if self.refuse_upgrade(index, "WebSocket") {
                    return None;
                }
                self.send_raw(index, &[], &response);
                let batched = match (batched, serializer) {
                    (false, _) => Batched::No,
                    (true, Serializer::Json) => Batched::Json {
                        separator: crate::framer::RECORD_SEPARATOR,
                    },
                    (true, _) => Batched::Length,
                };
                self.conns[index].framing = Framing::WebSocket {
                    text: serializer.is_text(),
                    batched,
                    deflate: deflate.is_some(),
                };
                if deflate.is_some() {
                    self.stats.deflate_negotiated += 1;
                }
                self.conns[index].deflate =
                    deflate.map(|params| Box::new(ConnDeflate::new(params)));
                // Until the session joins, messages are held to the smaller limit (see `Shard::framed`).
                let framer = match deflate {
                    Some(_) => WebSocketFramer::with_deflate(self.before_welcome()),
                    None => WebSocketFramer::new(self.before_welcome()),
                };
                *transport = Transport::Framed {
                    serializer,
                    framer: AnyFramer::WebSocket(framer),
                };
                self.open_session(index, serializer);
                debug!(
                    peer = %self.conns[index].peer,
                    serializer = serializer.name(),
                    ?batched,
                    deflate = ?deflate,
                    "WebSocket open"
                );
                Some(consumed)
            }
            websocket::UpgradeOutcome::Mqtt { consumed, response } => {
                if self.refuse_upgrade(index, "MQTT-over-WebSocket") {
                    return None;
                }
                self.send_raw(index, &[], &response);
                self.conns[index].framing = Framing::websocket(false);
                self.mqtt_open(index, Some(WebSocketFramer::new(self.before_welcome())));
                debug!(peer = %self.conns[index].peer, "MQTT over WebSocket open");
                Some(consumed)
            }
            websocket::UpgradeOutcome::Metrics { .. } => {
                // No more input from this connection: it gets the page, then is closed.
                *transport = Transport::Closed;
                self.scrape(index);
                None
            }
            websocket::UpgradeOutcome::Health { probe, head, .. } => {
                *transport = Transport::Closed;
                let (status, body) = crate::health::answer(probe, &self.shared.health());
                debug!(peer = %self.conns[index].peer, ?probe, status, %body, "health probe");
                self.send_raw(index, &[], &crate::health::response(status, &body, head));
                self.conns[index].closing = Some(CloseCause::Served);
                None
            }
            websocket::UpgradeOutcome::Reject {
                status,
                response,
                reason,
            } => {
                if status == 403 {
                    self.stats.origins_refused += 1;
                }
                if matches!(status, 404 | 405 | 426) {
                    // Not a WebSocket upgrade of this listener's path, nor metrics or health: scanners, browsers,
                    // misdirected checks. Counted, and logged only at debug so they cannot flood the log.
                    self.stats.http_stray += 1;
                    debug!(peer = %self.conns[index].peer, status, %reason, "stray HTTP request");
                } else {
                    info!(peer = %self.conns[index].peer, status, %reason, "WebSocket upgrade refused");
                }
                self.send_raw(index, &[], &response);
                self.conns[index].closing = Some(CloseCause::Handshake);
                None
            }
        }
    }
}
