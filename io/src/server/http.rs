//! The HTTP bridge in a shard: requests read from HTTP connections, one session per service on this shard (opened
//! with the first request, again after it was closed), the engine's answers turned into HTTP answers.
//!
//! A connection takes one request at a time: while a request waits for the router's answer its input is not read
//! (a pipelined request waits in the connection's buffer and is handled once the answer is written). The answers
//! to a service's session reach [`Shard::bridge_mail`] through the sink, which tells them from sockets by their
//! connection IDs ([`crate::http::session_conn`]).

use std::cmp::Reverse;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use kreisel_codec::{Dict, Field, Id, Message, Serializer};
use kreisel_engine::SessionHandle;
use tracing::{debug, info};

use super::shard::Shard;
use super::timers::TimerKind;
use crate::conn::{CloseCause, Transport};
use crate::http::bridge::{Cors, Outcome, Response};
use crate::http::request::{Parse, Reader, Request};
use crate::http::{Service, ServiceKind};

/// What the sink hands the bridge: a message for service `n`'s session (JSON), or the engine closing it.
#[derive(Debug)]
pub(super) enum Mail {
    Message(usize, Vec<u8>),
    Close(usize),
}

/// A request waiting for the router's answer.
#[derive(Debug)]
struct Waiting {
    index: usize,
    generation: u32,
    keep_alive: bool,
    cors: Option<Cors>,
}

/// One service's session on this shard.
#[derive(Debug, Default)]
struct Session {
    handle: Option<SessionHandle>,
    next_request: u64,
    waiting: HashMap<u64, Waiting>,
}

/// Every service's session on this shard, and what the sink brought them.
#[derive(Debug, Default)]
pub(super) struct Bridges {
    sessions: Vec<Session>,
    pub(super) mail: Vec<Mail>,
}

impl Bridges {
    pub(super) fn new(services: usize) -> Bridges {
        Bridges {
            sessions: (0..services).map(|_| Session::default()).collect(),
            mail: Vec::new(),
        }
    }
}

/// The router's clock in Unix milliseconds (signed requests carry wall-clock timestamps).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Shard {
    /// Service `number`, wherever its listener is.
    fn service(&self, number: usize) -> Option<(std::sync::Arc<crate::http::Services>, usize)> {
        self.shared
            .listeners
            .iter()
            .filter_map(|l| l.http.as_ref())
            .find(|s| (s.first..s.first + s.services.len()).contains(&number))
            .map(|s| (s.clone(), number - s.first))
    }

    /// The next request of HTTP connection `index` (all its unread bytes are `input`).
    pub(super) fn http_request(
        &mut self,
        index: usize,
        input: &mut [u8],
        reader: &mut Reader,
    ) -> Option<usize> {
        if self.conns[index].http_busy {
            return None;
        }
        let (request, consumed) = match reader.read(input, self.config.limits.message_max) {
            Parse::Incomplete { send_continue } => {
                if send_continue {
                    self.send_raw(index, &[], b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                return None;
            }
            Parse::Reject { status, reason } => {
                info!(peer = %self.conns[index].peer, status, %reason, "HTTP request refused");
                self.http_answer(index, &Response::refusal(status, &reason), false, None);
                return None;
            }
            Parse::Complete(request, consumed) => (request, consumed),
        };
        self.conns[index].progressed = true;
        let keep_alive = request.keep_alive;
        if self.conns[index].over_limit || self.shutdown_deadline.is_some() {
            if self.conns[index].over_limit {
                self.stats.refused_over_limit += 1;
            }
            let reason = match self.shutdown_deadline {
                Some(_) => "the router is shutting down",
                None => "connection limit reached",
            };
            self.http_answer(index, &Response::refusal(503, reason), false, None);
            return None;
        }
        let listener = usize::from(self.conns[index].listener);
        let cors = match self.cors(listener, &request) {
            Ok(cors) => cors,
            Err(response) => {
                self.stats.origins_refused += 1;
                self.http_answer(index, &response, keep_alive, None);
                return Some(consumed);
            }
        };
        let shared = self.shared.clone();
        let found = (shared.listeners[listener].http.as_ref()).and_then(|s| s.find(&request.path));
        let Some((number, service)) = found else {
            let reason = format!("no service at {}", request.path);
            self.http_answer(
                index,
                &Response::refusal(404, &reason),
                keep_alive,
                cors.as_ref(),
            );
            return Some(consumed);
        };
        self.http_dispatch(index, &request, (number, service), (keep_alive, cors));
        Some(consumed)
    }

    /// Answers `request` for `service` at once, or hands its WAMP message to the service's session.
    fn http_dispatch(
        &mut self,
        index: usize,
        request: &Request<'_>,
        (number, service): (usize, &Service),
        (keep_alive, cors): (bool, Option<Cors>),
    ) {
        let handle = match self.bridge_session(number, service) {
            Ok(handle) => handle,
            Err(reason) => {
                info!(service = %service.path, %reason, "HTTP service's session cannot join");
                let response = Response::refusal(503, &reason);
                self.http_answer(index, &response, keep_alive, cors.as_ref());
                return;
            }
        };
        let session = &mut self.bridges.sessions[number];
        session.next_request = session.next_request % kreisel_codec::ID_MAX + 1;
        let id = Id::new(session.next_request).unwrap_or(Id::FIRST);
        let (message, who) = match service.handle(request, id, unix_ms()) {
            Outcome::Respond(response) => {
                if response.status >= 400 {
                    debug!(peer = %self.conns[index].peer, service = %service.path, status = response.status, "HTTP request refused");
                }
                self.http_answer(index, &response, keep_alive, cors.as_ref());
                return;
            }
            Outcome::Wamp { message, who } => (message, who),
        };
        debug!(peer = %self.conns[index].peer, service = %service.path, principal = %who, "HTTP request");
        let Ok(msg) = Serializer::Json.decode(&message) else {
            // The bridge wrote it from validated parts: never happens.
            let response = Response::refusal(500, "the request could not be encoded");
            self.http_answer(index, &response, keep_alive, cors.as_ref());
            return;
        };
        let generation = self.conns[index].generation;
        self.bridges.sessions[number].waiting.insert(
            id.get(),
            Waiting {
                index,
                generation,
                keep_alive,
                cors,
            },
        );
        self.conns[index].http_busy = true;
        let now_ms = self.now_ms();
        self.with_sink(|router, sink| router.handle_message(handle, &msg, now_ms, sink));
    }

    /// The CORS headers of an answer to `request`; a request from an origin `allowed_origins` does not list is
    /// refused (403) before it does anything.
    fn cors(&self, listener: usize, request: &Request<'_>) -> Result<Option<Cors>, Response> {
        let Some(origin) = request.header("origin") else {
            return Ok(None);
        };
        if let Some(allowed) = &self.shared.listeners[listener].origins {
            if !allowed.iter().any(|pattern| pattern.allows(origin)) {
                let shown = String::from_utf8_lossy(&origin[..origin.len().min(128)]).into_owned();
                return Err(Response::refusal(
                    403,
                    &format!("origin '{shown}' is not allowed here"),
                ));
            }
        }
        let text = |value: &[u8]| {
            std::str::from_utf8(value)
                .ok()
                .filter(|v| v.bytes().all(|b| (b' '..=b'~').contains(&b)))
                .map(str::to_owned)
        };
        Ok(text(origin).map(|origin| Cors {
            origin,
            request_headers: request
                .header("access-control-request-headers")
                .and_then(text),
        }))
    }

    /// Service `number`'s session on this shard, joined now if it is not.
    fn bridge_session(
        &mut self,
        number: usize,
        service: &Service,
    ) -> Result<SessionHandle, String> {
        if let Some(handle) = self.bridges.sessions[number].handle {
            return Ok(handle);
        }
        let handle = self
            .router
            .handle_open(crate::http::session_conn(number), Serializer::Json);
        let now_ms = self.now_ms();
        let who = (
            service.realm.as_str(),
            service.authid.as_str(),
            service.role.as_str(),
        );
        match self.with_sink(|router, sink| router.join_trusted(handle, who, now_ms, sink)) {
            Ok(id) => {
                debug!(shard = self.id, service = %service.path, session = id.get(), "HTTP service session joined");
                self.bridges.sessions[number].handle = Some(handle);
                Ok(handle)
            }
            Err(reason) => {
                self.with_sink(|router, sink| router.handle_close(handle, sink));
                Err(reason)
            }
        }
    }

    /// Handles what the sink brought the services' sessions.
    pub(super) fn bridge_mail(&mut self) {
        while !self.bridges.mail.is_empty() {
            for mail in std::mem::take(&mut self.bridges.mail) {
                match mail {
                    Mail::Message(number, bytes) => self.bridge_message(number, &bytes),
                    Mail::Close(number) => self.bridge_closed(number),
                }
            }
        }
    }

    fn bridge_message(&mut self, number: usize, bytes: &[u8]) {
        let Ok(msg) = Serializer::Json.decode(bytes) else {
            return;
        };
        let request = match &msg {
            Message::Published { request, .. }
            | Message::Result { request, .. }
            | Message::Error { request, .. } => *request,
            Message::Goodbye { .. } | Message::Abort { .. } => {
                // Killed (wamp.session.kill*), or the router shuts down: the session is gone.
                return self.bridge_closed(number);
            }
            _ => return,
        };
        let Some(session) = self.bridges.sessions.get_mut(number) else {
            return;
        };
        let Some(waiting) = session.waiting.remove(&request.get()) else {
            return;
        };
        let Some((services, local)) = self.service(number) else {
            return;
        };
        let response = services.services[local].answer(&msg);
        self.http_reply(waiting, &response);
    }

    /// Service `number`'s session ended: its waiting requests get 503, and the next request opens a new one.
    fn bridge_closed(&mut self, number: usize) {
        let Some(session) = self.bridges.sessions.get_mut(number) else {
            return;
        };
        let Some(handle) = session.handle.take() else {
            return;
        };
        let waiting: Vec<Waiting> = session.waiting.drain().map(|(_, w)| w).collect();
        self.with_sink(|router, sink| router.handle_close(handle, sink));
        for waiting in waiting {
            let response = Response::refusal(503, "the service's session was closed");
            self.http_reply(waiting, &response);
        }
    }

    /// The answer to a request that waited: written if its connection is still there, which then reads on.
    fn http_reply(&mut self, waiting: Waiting, response: &Response) {
        let alive =
            (self.conns.get(waiting.index)).is_some_and(|c| c.generation == waiting.generation);
        if !alive {
            return;
        }
        self.conns[waiting.index].http_busy = false;
        self.http_answer(
            waiting.index,
            response,
            waiting.keep_alive,
            waiting.cors.as_ref(),
        );
        if waiting.keep_alive {
            // A request that arrived meanwhile, then whatever the socket has.
            self.reprocess(waiting.index);
            self.pending_read.push(waiting.index);
        }
    }

    /// Writes an answer; without keep-alive the connection closes once it is written.
    fn http_answer(
        &mut self,
        index: usize,
        response: &Response,
        keep_alive: bool,
        cors: Option<&Cors>,
    ) {
        if self.conns[index].closing.is_some() {
            return;
        }
        self.send_raw(index, &[], &response.to_bytes(keep_alive, cors));
        if !keep_alive {
            self.conns[index].closing = Some(CloseCause::Served);
        }
    }

    /// An HTTP connection closed with a request waiting: a call is canceled (its callee told, where it listens),
    /// a publication needs nothing.
    pub(super) fn http_abandoned(&mut self, index: usize, generation: u32) {
        for number in 0..self.bridges.sessions.len() {
            let session = &mut self.bridges.sessions[number];
            let Some(request) = session
                .waiting
                .iter()
                .find(|(_, w)| w.index == index && w.generation == generation)
                .map(|(id, _)| *id)
            else {
                continue;
            };
            session.waiting.remove(&request);
            let (Some(handle), Some(id)) = (session.handle, Id::new(request)) else {
                continue;
            };
            let caller = self
                .service(number)
                .is_some_and(|(s, local)| s.services[local].kind == ServiceKind::Caller);
            if caller {
                let options = [("mode", Field::Str("killnowait"))];
                let cancel = Message::Cancel {
                    request: id,
                    options: Dict::Fields(&options),
                };
                let mut bytes = Vec::new();
                Serializer::Json.encode(&cancel, &mut bytes);
                if let Ok(msg) = Serializer::Json.decode(&bytes) {
                    let now_ms = self.now_ms();
                    self.with_sink(|router, sink| {
                        router.handle_message(handle, &msg, now_ms, sink)
                    });
                }
            }
        }
    }

    /// The handshake timer of an HTTP connection: one idle between requests for `handshake_timeout_ms` is closed;
    /// one waiting for an answer, or that was active since, gets the timer again.
    pub(super) fn http_idle(&mut self, index: usize) {
        let timeout_ms = self.config.limits.handshake_timeout_ms;
        let now_ms = self.now_ms();
        let conn = &self.conns[index];
        let idle_ms = u64::from((now_ms as u32).wrapping_sub(conn.last_rx_ms));
        if !conn.http_busy && conn.filled == 0 && idle_ms >= timeout_ms {
            debug!(peer = %conn.peer, "idle HTTP connection closed");
            self.remove(index, Some(CloseCause::Served));
            return;
        }
        let wait = if conn.http_busy || conn.filled > 0 {
            timeout_ms
        } else {
            timeout_ms - idle_ms
        };
        let generation = conn.generation;
        self.timers.push(Reverse((
            Instant::now() + Duration::from_millis(wait.max(1)),
            index,
            generation,
            TimerKind::HttpIdle,
        )));
    }

    /// Whether connection `index` serves HTTP requests.
    pub(super) fn is_http(&self, index: usize) -> bool {
        self.conns
            .get(index)
            .is_some_and(|c| matches!(c.transport, Transport::Http(_)))
    }
}
