//! WAMP-over-WebSocket, sans socket: the HTTP/1.1 upgrade, an in-place frame reader and frame writers
//! (RFC 6455, server side).
//!
//! * [`handle_upgrade`] answers a client's opening handshake from the bytes read so far: it waits for the whole
//!   request head, checks it, negotiates the WAMP subprotocol (which fixes the [`Serializer`]) and returns the
//!   complete `101` or error response. Bytes after the head stay with the caller.
//! * [`FrameReader`] takes unread bytes, unmasks client frames *in place* and returns [`Event`]s that borrow the
//!   caller's buffer: an unfragmented message is handed out without a copy. Only fragmented messages are
//!   assembled in a buffer the reader owns (bounded by `message_max`, trimmed after use).
//! * [`write_header`], [`control_frame`] and [`close_frame`] build server frames (never masked).
//!
//! Every violation of RFC 6455 by the peer is a [`CloseReason`]: the status code and text the router sends in its
//! Close frame before it closes the connection. Nothing here panics on peer input.

use std::fmt;
use std::fmt::Write as _;

use kreisel_codec::Serializer;

/// Default limit on the size of an HTTP request head (request line and headers). Real clients send well under
/// 1 KiB; 8 KiB leaves room for cookies and stops a peer from making the router buffer an endless head.
pub const HEAD_MAX_DEFAULT: usize = 8 * 1024;
/// Most request headers accepted; more is refused with 431. Browsers send about 15.
pub const HEADERS_MAX: usize = 32;
/// The paths of the health probes (see [`UpgradeConfig::health`]): liveness, then readiness.
pub const HEALTH_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// What the upgrade accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeConfig {
    /// Request path of the WebSocket endpoint, e.g. `/ws`. A query string on the request is ignored.
    pub path: String,
    /// Serializers offered, i.e. the WAMP subprotocols accepted. The client's order of preference decides.
    pub serializers: Vec<Serializer>,
    /// Largest request head accepted, in octets (see [`HEAD_MAX_DEFAULT`]).
    pub head_max: usize,
    /// Path of the metrics endpoint on this listener, if any: a plain `GET` of it is answered with the router's
    /// counters ([`UpgradeOutcome::Metrics`]) instead of a WebSocket upgrade.
    pub metrics_path: Option<String>,
    /// Whether a `GET` or `HEAD` of [`HEALTH_PATHS`] is answered as a health probe ([`UpgradeOutcome::Health`]).
    pub health: bool,
    /// Origins a browser may open a WebSocket from (`None`: any). A request without an `Origin` header (not a
    /// browser) is not affected; one with an origin not listed gets 403.
    pub allowed_origins: Option<Vec<OriginPattern>>,
    /// permessage-deflate with clients that offer it (`None`: never negotiated).
    pub deflate: Option<crate::deflate::DeflateConfig>,
    /// Also accept the batched subprotocols (`wamp.2.json.batched`, ...) of `serializers`.
    pub batched: bool,
    /// Also accept the subprotocol `mqtt` (MQTT over WebSocket): [`UpgradeOutcome::Mqtt`].
    pub mqtt: bool,
}

impl UpgradeConfig {
    /// A configuration with the default head limit.
    pub fn new(path: impl Into<String>, serializers: Vec<Serializer>) -> UpgradeConfig {
        UpgradeConfig {
            path: path.into(),
            serializers,
            head_max: HEAD_MAX_DEFAULT,
            metrics_path: None,
            health: false,
            allowed_origins: None,
            deflate: None,
            batched: false,
            mqtt: false,
        }
    }
}

/// One entry of a listener's `allowed_origins`: `scheme://host[:port]`, where the host may start with `*.` (one
/// or more DNS labels), or `null`. Compared case-insensitively, with the scheme's default port implied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginPattern {
    Null,
    Origin {
        scheme: String,
        /// The host, or with `wildcard` the domain every matching host must be a subdomain of.
        host: String,
        wildcard: bool,
        port: Option<u16>,
    },
}

impl OriginPattern {
    pub fn parse(text: &str) -> Result<OriginPattern, String> {
        if text == "null" {
            return Ok(OriginPattern::Null);
        }
        let (scheme, host, port) = split_origin(text).ok_or_else(|| {
            format!(
                "'{text}' is not an origin: {} (an origin is scheme://host[:port], e.g. https://app.example.com, \
                 or null)",
                origin_problem(text)
            )
        })?;
        let (host, wildcard) = match host.strip_prefix("*.") {
            Some(domain) => (domain, true),
            None => (host, false),
        };
        if host.is_empty() || host.contains('*') {
            return Err(format!(
                "'{text}': a wildcard may only stand for the leading labels of the host (https://*.example.com)"
            ));
        }
        Ok(OriginPattern::Origin {
            scheme: scheme.to_ascii_lowercase(),
            host: host.to_ascii_lowercase(),
            wildcard,
            port,
        })
    }

    /// Whether a request's `Origin` header value is allowed by this pattern.
    pub fn allows(&self, origin: &[u8]) -> bool {
        let Ok(origin) = std::str::from_utf8(origin) else {
            return false;
        };
        match self {
            OriginPattern::Null => origin == "null",
            OriginPattern::Origin {
                scheme,
                host,
                wildcard,
                port,
            } => {
                let Some((their_scheme, their_host, their_port)) = split_origin(origin) else {
                    return false;
                };
                let default_port = |scheme: &str| match scheme {
                    "https" | "wss" => Some(443),
                    "http" | "ws" => Some(80),
                    _ => None,
                };
                let their_scheme = their_scheme.to_ascii_lowercase();
                let their_host = their_host.to_ascii_lowercase();
                let host_matches = if *wildcard {
                    their_host
                        .strip_suffix(host.as_str())
                        .is_some_and(|labels| labels.len() > 1 && labels.ends_with('.'))
                } else {
                    their_host == *host
                };
                their_scheme == *scheme
                    && host_matches
                    && port.or(default_port(scheme)) == their_port.or(default_port(&their_scheme))
            }
        }
    }
}

/// Why `split_origin` refuses `text`, for the configuration's error message.
fn origin_problem(text: &str) -> String {
    if text == "*" {
        return "to allow every origin, leave allowed_origins unset".into();
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return format!("it has no scheme (https://{text}, say)");
    };
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return format!("'{scheme}' is not a scheme");
    }
    if let Some(at) = rest.find(['/', '?', '#']).filter(|&at| at > 0) {
        return format!(
            "a browser's Origin has no path, query or fragment: write '{scheme}://{}'",
            &rest[..at]
        );
    }
    if rest.contains('@') {
        return "a browser's Origin has no user name".into();
    }
    if rest.is_empty() || rest.starts_with([':', '/', '?', '#']) {
        return "the host is missing".into();
    }
    match rest.rfind(':') {
        Some(colon) if !rest[colon..].contains(']') => {
            let port = &rest[colon + 1..];
            if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
                format!("port {port} is out of range 0..=65535")
            } else {
                format!("port '{port}' is not a number")
            }
        }
        _ => "it does not have the form scheme://host[:port]".into(),
    }
}

/// `scheme://host[:port]` split into its parts (no path, no user info).
fn split_origin(text: &str) -> Option<(&str, &str, Option<u16>)> {
    let (scheme, rest) = text.split_once("://")?;
    let valid_scheme = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !valid_scheme || rest.is_empty() || rest.contains(['/', '@', '?', '#']) {
        return None;
    }
    // An IPv6 literal keeps its colons inside brackets.
    let (host, port) = match rest.rfind(':') {
        Some(colon) if !rest[colon..].contains(']') => {
            (&rest[..colon], Some(rest[colon + 1..].parse().ok()?))
        }
        _ => (rest, None),
    };
    (!host.is_empty()).then_some((scheme, host, port))
}

/// Result of [`handle_upgrade`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpgradeOutcome {
    /// The request head is not complete: read more and call again with everything read so far.
    Incomplete,
    /// Write `response` (`101 Switching Protocols`), then speak WebSocket with WAMP in `serializer`. The request
    /// head was `buf[..consumed]`; any bytes after it are already WebSocket frames.
    Accept {
        serializer: Serializer,
        /// The batched variant of the subprotocol (`wamp.2.json.batched`, ...): several WAMP messages per
        /// WebSocket message.
        batched: bool,
        /// permessage-deflate, when it was negotiated.
        deflate: Option<crate::deflate::Params>,
        consumed: usize,
        response: Vec<u8>,
    },
    /// Like `Accept`, for the subprotocol `mqtt` (see [`UpgradeConfig::mqtt`]): then speak MQTT in binary
    /// WebSocket messages.
    Mqtt { consumed: usize, response: Vec<u8> },
    /// A `GET` of the metrics path (see [`UpgradeConfig::metrics_path`]): answer with the metrics and
    /// `Connection: close`, then close. The request head was `buf[..consumed]`.
    Metrics { consumed: usize },
    /// A `GET` (or `HEAD`: the answer without its body) of a health probe's path (see [`UpgradeConfig::health`]):
    /// answer with its status and `Connection: close`, then close. The request head was `buf[..consumed]`.
    Health {
        consumed: usize,
        probe: Probe,
        head: bool,
    },
    /// Write `response` (a complete HTTP/1.1 error response with `Connection: close`), then close. `reason` is the
    /// one-line body, for the log.
    Reject {
        status: u16,
        response: Vec<u8>,
        reason: String,
    },
}

/// Which health probe a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// `/healthz`: is the process serving?
    Live,
    /// `/readyz`: should it get new sessions?
    Ready,
}

/// Answers a WebSocket opening handshake. `buf` holds every byte read from the connection so far.
///
/// Only the first `head_max` octets are parsed: the head must end within them. So the outcome never depends on
/// how the bytes arrived (a request over the limit gets 431 whether it came in one read or many, not 400 for a
/// malformed token the parser happened to reach beyond the limit), and the parsing work is bounded by the limit.
pub fn handle_upgrade(buf: &[u8], cfg: &UpgradeConfig) -> UpgradeOutcome {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut request = httparse::Request::new(&mut headers);
    let head = &buf[..buf.len().min(cfg.head_max)];
    let consumed = match request.parse(head) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() <= cfg.head_max => {
            return UpgradeOutcome::Incomplete
        }
        Ok(httparse::Status::Partial) => {
            let reason = format!("request head exceeds {} octets", cfg.head_max);
            return reject(431, reason);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return reject(431, format!("more than {HEADERS_MAX} request headers"));
        }
        Err(error) => return reject(400, format!("malformed HTTP request: {error}")),
    };
    let target = request.path.unwrap_or("");
    let path = target.split_once('?').map_or(target, |(path, _query)| path);
    if request.method == Some("GET") && cfg.metrics_path.as_deref() == Some(path) {
        return UpgradeOutcome::Metrics { consumed };
    }
    let head = request.method == Some("HEAD");
    if cfg.health && (head || request.method == Some("GET")) {
        let probe = match path {
            p if p == HEALTH_PATHS[0] => Some(Probe::Live),
            p if p == HEALTH_PATHS[1] => Some(Probe::Ready),
            _ => None,
        };
        if let Some(probe) = probe {
            return UpgradeOutcome::Health {
                consumed,
                probe,
                head,
            };
        }
    }
    match check_request(&request, cfg) {
        Ok((Some((serializer, batched)), key)) => {
            let deflate = cfg.deflate.as_ref().and_then(|config| {
                crate::deflate::negotiate(
                    values(request.headers, "sec-websocket-extensions"),
                    config,
                )
            });
            let extension = deflate.as_ref().map(|(_, response)| response.as_str());
            UpgradeOutcome::Accept {
                serializer,
                batched,
                deflate: deflate.as_ref().map(|(params, _)| *params),
                consumed,
                response: accept_response(key, subprotocol(serializer, batched), extension),
            }
        }
        // MQTT over WebSocket: no extensions (MQTT packets are small; nothing to negotiate).
        Ok((None, key)) => UpgradeOutcome::Mqtt {
            consumed,
            response: accept_response(key, MQTT_SUBPROTOCOL, None),
        },
        Err((status, reason)) => reject(status, reason),
    }
}

/// The WebSocket subprotocol of MQTT 3.1.1 and 5.
pub const MQTT_SUBPROTOCOL: &str = "mqtt";

/// The subprotocol name of a serializer, batched or not.
pub fn subprotocol(serializer: Serializer, batched: bool) -> &'static str {
    match (serializer, batched) {
        (_, false) => serializer.subprotocol(),
        (Serializer::Json, true) => "wamp.2.json.batched",
        (Serializer::MsgPack, true) => "wamp.2.msgpack.batched",
        (Serializer::Cbor, true) => "wamp.2.cbor.batched",
    }
}

/// The negotiated WAMP serializer and whether it is batched (`None`: the subprotocol `mqtt`), and the
/// `Sec-WebSocket-Key`, or the status and reason of a refusal.
type Checked<'b> = Result<(Option<(Serializer, bool)>, &'b [u8]), (u16, String)>;

/// Checks a complete request head.
fn check_request<'b>(request: &httparse::Request<'_, 'b>, cfg: &UpgradeConfig) -> Checked<'b> {
    let headers = &*request.headers;
    if request.method != Some("GET") {
        let method = request.method.unwrap_or("");
        return Err((
            405,
            format!("method {method} not allowed: a WebSocket upgrade is a GET"),
        ));
    }
    if request.version != Some(1) {
        return Err((505, "a WebSocket upgrade needs HTTP/1.1".to_owned()));
    }
    let target = request.path.unwrap_or("");
    let path = target.split_once('?').map_or(target, |(path, _query)| path);
    if path != cfg.path {
        return Err((
            404,
            format!("no WebSocket endpoint at {path} (try {})", cfg.path),
        ));
    }
    if values(headers, "host").next().is_none() {
        return Err((400, "missing Host header".to_owned()));
    }
    let upgrade = tokens(headers, "upgrade").any(|t| t.eq_ignore_ascii_case(b"websocket"));
    let connection = tokens(headers, "connection").any(|t| t.eq_ignore_ascii_case(b"upgrade"));
    if !upgrade || !connection {
        let reason =
            "this is a WebSocket endpoint: send Upgrade: websocket and Connection: Upgrade";
        return Err((426, reason.to_owned()));
    }
    if single(headers, "sec-websocket-version") != Some(b"13") {
        return Err((
            426,
            "unsupported WebSocket version (this router speaks 13)".to_owned(),
        ));
    }
    let key = single(headers, "sec-websocket-key")
        .filter(|key| is_base64_of_16_octets(key))
        .ok_or_else(|| (400, "missing or malformed Sec-WebSocket-Key".to_owned()))?;
    if let Some(allowed) = &cfg.allowed_origins {
        // Browsers always send Origin; other clients usually do not, and they are not what the check is for.
        let mut origins = values(headers, "origin");
        if let Some(origin) = origins.next() {
            let origin = origin.trim_ascii();
            if origins.next().is_some() || !allowed.iter().any(|pattern| pattern.allows(origin)) {
                let shown = String::from_utf8_lossy(&origin[..origin.len().min(128)]).into_owned();
                return Err((
                    403,
                    format!("origin '{shown}' is not allowed to connect here"),
                ));
            }
        }
    }
    // The client's first offered subprotocol that this listener speaks wins.
    let protocol = tokens(headers, "sec-websocket-protocol")
        .filter_map(|t| {
            let name = std::str::from_utf8(t).ok()?;
            if name == MQTT_SUBPROTOCOL {
                return cfg.mqtt.then_some(None);
            }
            let (serializer, batched) = match name.strip_suffix(".batched") {
                Some(base) if cfg.batched => Serializer::from_subprotocol(base).map(|s| (s, true)),
                Some(_) => None,
                None => Serializer::from_subprotocol(name).map(|s| (s, false)),
            }?;
            cfg.serializers
                .contains(&serializer)
                .then_some(Some((serializer, batched)))
        })
        .next()
        .ok_or_else(|| (400, no_subprotocol_reason(cfg)))?;
    Ok((protocol, key))
}

fn no_subprotocol_reason(cfg: &UpgradeConfig) -> String {
    let mut reason = "no supported WAMP subprotocol offered (this router speaks: ".to_owned();
    for (i, serializer) in cfg.serializers.iter().enumerate() {
        if i > 0 {
            reason.push_str(", ");
        }
        reason.push_str(serializer.subprotocol());
    }
    if cfg.batched {
        for serializer in &cfg.serializers {
            reason.push_str(", ");
            reason.push_str(subprotocol(*serializer, true));
        }
    }
    if cfg.mqtt {
        reason.push_str(", ");
        reason.push_str(MQTT_SUBPROTOCOL);
    }
    reason.push(')');
    reason
}

/// The values of every header called `name` (lowercase), in order.
fn values<'h, 'b>(
    headers: &'h [httparse::Header<'b>],
    name: &'h str,
) -> impl Iterator<Item = &'b [u8]> + 'h {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// The comma-separated, whitespace-trimmed, non-empty tokens of every header called `name`, in order.
fn tokens<'h, 'b>(
    headers: &'h [httparse::Header<'b>],
    name: &'h str,
) -> impl Iterator<Item = &'b [u8]> + 'h {
    values(headers, name)
        .flat_map(|value| value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// The trimmed value of a header that must appear exactly once.
fn single<'b>(headers: &[httparse::Header<'b>], name: &str) -> Option<&'b [u8]> {
    let mut found = values(headers, name);
    match (found.next(), found.next()) {
        (Some(value), None) => Some(value.trim_ascii()),
        _ => None,
    }
}

/// Whether `key` is the base64 encoding of 16 octets: 22 alphabet characters and `==`. (Like common base64
/// decoders, the two unused bits of the last character are not required to be zero.)
fn is_base64_of_16_octets(key: &[u8]) -> bool {
    match key.split_last_chunk::<2>() {
        Some((data, b"==")) => {
            data.len() == 22
                && data
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        }
        _ => false,
    }
}

fn accept_response(key: &[u8], subprotocol: &str, extension: Option<&str>) -> Vec<u8> {
    let accept = tungstenite::handshake::derive_accept_key(key);
    let extension = extension
        .map(|value| format!("Sec-WebSocket-Extensions: {value}\r\n"))
        .unwrap_or_default();
    format!(
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\
         Sec-WebSocket-Protocol: {subprotocol}\r\n\
         {extension}\
         Server: kreisel\r\n\
         \r\n"
    )
    .into_bytes()
}

fn reject(status: u16, reason: String) -> UpgradeOutcome {
    let (phrase, extra_headers) = match status {
        403 => ("Forbidden", ""),
        404 => ("Not Found", ""),
        405 => ("Method Not Allowed", "Allow: GET\r\n"),
        426 => (
            "Upgrade Required",
            "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
        ),
        431 => ("Request Header Fields Too Large", ""),
        505 => ("HTTP Version Not Supported", ""),
        _ => ("Bad Request", ""),
    };
    let mut response = String::with_capacity(256 + reason.len());
    // Writing into a String cannot fail.
    let _ = write!(
        response,
        "HTTP/1.1 {status} {phrase}\r\n\
         Server: kreisel\r\n\
         Connection: close\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         {extra_headers}\
         \r\n\
         {reason}\n",
        reason.len() + 1
    );
    UpgradeOutcome::Reject {
        status,
        response: response.into_bytes(),
        reason,
    }
}

/// Longest frame header a client can send: 2 octets, a 64-bit length and the 4-octet mask.
pub const HEADER_LEN_MAX: usize = 14;
/// Longest payload of a control frame (Close, Ping, Pong).
pub const CONTROL_PAYLOAD_MAX: usize = 125;
/// Capacity the fragment assembly buffer keeps between fragmented messages; more is released after each one,
/// so an idle connection does not hold on to the memory of its largest message.
pub const ASSEMBLY_KEEP: usize = 4 * 1024;

/// Close status 1000: normal closure.
pub const CLOSE_NORMAL: u16 = 1000;
/// Close status 1001: the endpoint is going away (e.g. the router shuts down).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close status 1002: protocol error.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close status 1003: a data type the endpoint cannot accept.
pub const CLOSE_UNSUPPORTED_DATA: u16 = 1003;
/// Close status 1007: payload inconsistent with its type (invalid UTF-8 in text).
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
/// Close status 1008: policy violation.
pub const CLOSE_POLICY_VIOLATION: u16 = 1008;
/// Close status 1009: message too big.
pub const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;
/// Close status 1011: internal error.
pub const CLOSE_INTERNAL_ERROR: u16 = 1011;

/// Whether a peer may send `code` in a Close frame (RFC 6455 §7.4: 1000-1003, 1007-1011 and the registered or
/// private range 3000-4999; 1004-1006 and 1015 must never be sent, the rest is unassigned).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// A frame opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    /// The 4-bit opcode.
    pub fn code(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// The opcode of a 4-bit code, if RFC 6455 defines it.
    pub fn from_code(code: u8) -> Option<OpCode> {
        match code {
            0x0 => Some(OpCode::Continuation),
            0x1 => Some(OpCode::Text),
            0x2 => Some(OpCode::Binary),
            0x8 => Some(OpCode::Close),
            0x9 => Some(OpCode::Ping),
            0xA => Some(OpCode::Pong),
            _ => None,
        }
    }

    /// Close, Ping and Pong.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// Why the router closes a WebSocket connection: send a Close frame with `code` and `reason`
/// ([`close_frame`]), then close. Returned for every protocol violation of the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
}

impl CloseReason {
    const fn protocol_error(reason: &'static str) -> CloseReason {
        CloseReason {
            code: CLOSE_PROTOCOL_ERROR,
            reason,
        }
    }

    const fn message_too_big() -> CloseReason {
        CloseReason {
            code: CLOSE_MESSAGE_TOO_BIG,
            reason: "message too big",
        }
    }

    const fn invalid_utf8(reason: &'static str) -> CloseReason {
        CloseReason {
            code: CLOSE_INVALID_PAYLOAD,
            reason,
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebSocket close {}: {}", self.code, self.reason)
    }
}

impl std::error::Error for CloseReason {}

/// What one complete frame meant, from [`FrameReader::read`]. Borrows the caller's buffer, or, for the last
/// frame of a fragmented message, the reader's assembly buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'b> {
    /// A complete message; `text` for a text message (already checked to be UTF-8), else binary.
    Message { data: &'b [u8], text: bool },
    /// A ping: answer with a Pong carrying the same payload ([`control_frame`]).
    Ping(&'b [u8]),
    /// A pong (unsolicited or answering our ping).
    Pong(&'b [u8]),
    /// The peer closes. Echo a Close (with `code`, or empty if `code` is `None`), then close.
    Close { code: Option<u16>, reason: &'b str },
    /// A non-final fragment of a message was taken into the assembly buffer; nothing to do.
    Fragment,
    /// A complete message compressed with permessage-deflate (only from a reader with
    /// [`FrameReader::set_deflate`]): inflate it (`crate::deflate`); a `text` message must be UTF-8 once inflated.
    Compressed { data: &'b [u8], text: bool },
}

/// The server side of RFC 6455 framing, in place.
///
/// The caller keeps the unread bytes of the connection in its own buffer and calls [`FrameReader::read`] with
/// them, handles the event, drops the consumed prefix, and repeats until `read` returns `Ok(None)` (read more
/// from the socket) or an error (send the Close it names and close the connection; the reader is not to be used
/// again). The buffer must be able to grow to [`HEADER_LEN_MAX`] + `message_max` octets, or a maximal frame
/// never completes.
#[derive(Debug)]
pub struct FrameReader {
    /// In 32 bits (messages are at most 16 MiB): every connection holds one.
    message_max: u32,
    assembly: Assembly,
    /// The payload of a fragmented message so far. Empty and at most [`ASSEMBLY_KEEP`] of capacity when no
    /// fragmented message is open or just delivered.
    assembled: Vec<u8>,
    /// permessage-deflate was negotiated: RSV1 marks a compressed message.
    deflate: bool,
}

/// Where the reader stands with fragmented messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Assembly {
    /// No fragmented message is open.
    Idle,
    /// A fragmented text or binary message is open (compressed with permessage-deflate, or not); continuation
    /// frames append to it.
    Open { text: bool, compressed: bool },
    /// A fragmented message was just returned from the assembly buffer; release it on the next read.
    Delivered,
}

/// A client frame header, checked for everything that does not depend on the reader's state.
#[derive(Clone, Copy, Debug)]
struct Head {
    fin: bool,
    opcode: OpCode,
    len: u64,
    mask: [u8; 4],
    header_len: usize,
    /// RSV1: the message is compressed (permessage-deflate).
    compressed: bool,
}

impl FrameReader {
    /// A reader refusing messages (assembled or not) longer than `message_max` octets with 1009.
    pub fn new(message_max: usize) -> FrameReader {
        FrameReader {
            message_max: u32::try_from(message_max).unwrap_or(u32::MAX),
            assembly: Assembly::Idle,
            assembled: Vec::new(),
            deflate: false,
        }
    }

    /// permessage-deflate was negotiated: messages whose first frame has RSV1 set are compressed
    /// ([`Event::Compressed`]).
    pub fn set_deflate(&mut self, deflate: bool) {
        self.deflate = deflate;
    }

    /// The message size limit.
    pub fn message_max(&self) -> usize {
        self.message_max as usize
    }

    /// Changes the message size limit (a session that joined may send larger messages than one that has not).
    pub fn set_message_max(&mut self, message_max: usize) {
        self.message_max = u32::try_from(message_max).unwrap_or(u32::MAX);
    }

    /// Whether a fragmented message is open (started, not complete).
    pub fn assembling(&self) -> bool {
        matches!(self.assembly, Assembly::Open { .. })
    }

    /// Bytes the reader holds for fragmented messages (its assembly buffer's capacity).
    pub fn held_bytes(&self) -> usize {
        self.assembled.capacity()
    }

    /// Reads the first frame in `buf` (the unread bytes).
    ///
    /// * `Ok(None)`: the frame is incomplete. Nothing was consumed or changed; call again with more bytes.
    /// * `Ok(Some((consumed, event)))`: the frame occupied `buf[..consumed]` (its payload now unmasked); handle
    ///   `event`, then drop those bytes. The event borrows both `buf` and the reader until it is dropped.
    /// * `Err(close)`: the peer broke the protocol or a limit. A frame declaring a payload above the limit is
    ///   refused as soon as its header is complete, so its payload is never buffered.
    pub fn read<'b>(
        &'b mut self,
        buf: &'b mut [u8],
    ) -> Result<Option<(usize, Event<'b>)>, CloseReason> {
        self.release_delivered();
        let Some(head) = parse_head(buf, self.deflate)? else {
            return Ok(None);
        };
        let len = self.check_sequence_and_size(&head)?;
        let end = head
            .header_len
            .checked_add(len)
            .ok_or(CloseReason::message_too_big())?;
        let Some(payload) = buf.get_mut(head.header_len..end) else {
            return Ok(None);
        };
        unmask(payload, head.mask);
        let payload: &'b [u8] = payload;
        let event = match head.opcode {
            OpCode::Ping => Event::Ping(payload),
            OpCode::Pong => Event::Pong(payload),
            OpCode::Close => parse_close(payload)?,
            OpCode::Text | OpCode::Binary if head.fin => {
                let text = head.opcode == OpCode::Text;
                if head.compressed {
                    Event::Compressed {
                        data: payload,
                        text,
                    }
                } else {
                    message(payload, text)?
                }
            }
            OpCode::Text | OpCode::Binary => {
                self.assembly = Assembly::Open {
                    text: head.opcode == OpCode::Text,
                    compressed: head.compressed,
                };
                self.append_fragment(payload);
                Event::Fragment
            }
            OpCode::Continuation => {
                self.append_fragment(payload);
                match self.assembly {
                    Assembly::Open {
                        text,
                        compressed: true,
                    } if head.fin => {
                        self.assembly = Assembly::Delivered;
                        Event::Compressed {
                            data: &self.assembled,
                            text,
                        }
                    }
                    Assembly::Open { text, .. } if head.fin => {
                        self.assembly = Assembly::Delivered;
                        message(&self.assembled, text)?
                    }
                    _ => Event::Fragment,
                }
            }
        };
        Ok(Some((end, event)))
    }

    /// Checks a header against the fragmentation state and the size limit; returns the payload length.
    fn check_sequence_and_size(&self, head: &Head) -> Result<usize, CloseReason> {
        let open = matches!(self.assembly, Assembly::Open { .. });
        let already = match head.opcode {
            OpCode::Continuation if !open => {
                return Err(CloseReason::protocol_error(
                    "continuation frame without a message to continue",
                ));
            }
            OpCode::Text | OpCode::Binary if open => {
                return Err(CloseReason::protocol_error(
                    "new message before the fragmented one ended",
                ));
            }
            OpCode::Continuation => self.assembled.len(),
            // Control frames are at most 125 octets (checked in parse_head), data frames start afresh.
            _ => 0,
        };
        let room = self.message_max().saturating_sub(already);
        match usize::try_from(head.len) {
            Ok(len) if len <= room || head.opcode.is_control() => Ok(len),
            _ => Err(CloseReason::message_too_big()),
        }
    }

    /// Appends a fragment's payload (already checked to fit `message_max`) to the assembly buffer, growing it
    /// geometrically but never beyond `message_max` of capacity.
    fn append_fragment(&mut self, payload: &[u8]) {
        let needed = self.assembled.len().saturating_add(payload.len());
        let capacity = self.assembled.capacity();
        if needed > capacity {
            let target = capacity
                .saturating_mul(2)
                .min(self.message_max())
                .max(needed);
            self.assembled
                .reserve_exact(target.saturating_sub(self.assembled.len()));
        }
        self.assembled.extend_from_slice(payload);
    }

    /// Forgets a fragmented message returned by the previous read, trimming the buffer it took.
    fn release_delivered(&mut self) {
        if self.assembly == Assembly::Delivered {
            self.assembly = Assembly::Idle;
            self.assembled.clear();
            self.assembled.shrink_to(ASSEMBLY_KEEP);
        }
    }
}

const FIN: u8 = 0b1000_0000;
const RSV: u8 = 0b0111_0000;
const RSV1: u8 = 0b0100_0000;
/// The bit of a server frame's first octet that marks a message compressed with permessage-deflate (RSV1).
pub const COMPRESSED: u8 = RSV1;
const OPCODE: u8 = 0b0000_1111;
const MASKED: u8 = 0b1000_0000;
const LEN_7: u8 = 0b0111_1111;

/// Parses a client frame header at the start of `buf`. `Ok(None)`: not all of the header has arrived. The
/// checks that need only the first two octets are made as soon as they are there.
fn parse_head(buf: &[u8], deflate: bool) -> Result<Option<Head>, CloseReason> {
    let Some(&[b0, b1]) = buf.first_chunk::<2>() else {
        return Ok(None);
    };
    let opcode =
        OpCode::from_code(b0 & OPCODE).ok_or(CloseReason::protocol_error("unknown opcode"))?;
    // With permessage-deflate, RSV1 marks the first frame of a compressed message; every other use of a
    // reserved bit is an error.
    let compressed = deflate && b0 & RSV1 != 0 && matches!(opcode, OpCode::Text | OpCode::Binary);
    if b0 & RSV != 0 && !(compressed && b0 & RSV == RSV1) {
        return Err(CloseReason::protocol_error(if deflate {
            "reserved bits set (RSV1 only on the first frame of a data message)"
        } else {
            "reserved bits set (no extension was negotiated)"
        }));
    }
    let fin = b0 & FIN != 0;
    if b1 & MASKED == 0 {
        return Err(CloseReason::protocol_error("client frame not masked"));
    }
    let len_7 = b1 & LEN_7;
    if opcode.is_control() && (!fin || usize::from(len_7) > CONTROL_PAYLOAD_MAX) {
        return Err(CloseReason::protocol_error(
            "fragmented or oversized control frame",
        ));
    }
    let rest = buf.get(2..).unwrap_or_default();
    let (len, rest, len_octets) = match len_7 {
        126 => match rest.split_first_chunk::<2>() {
            Some((len, rest)) => (u64::from(u16::from_be_bytes(*len)), rest, 2),
            None => return Ok(None),
        },
        127 => match rest.split_first_chunk::<8>() {
            Some((len, rest)) => (u64::from_be_bytes(*len), rest, 8),
            None => return Ok(None),
        },
        len => (u64::from(len), rest, 0),
    };
    if len >> 63 != 0 {
        return Err(CloseReason::protocol_error(
            "64-bit payload length with the top bit set",
        ));
    }
    let Some(&mask) = rest.first_chunk::<4>() else {
        return Ok(None);
    };
    Ok(Some(Head {
        fin,
        opcode,
        len,
        mask,
        header_len: 2 + len_octets + 4,
        compressed,
    }))
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let mut words = payload.chunks_exact_mut(4);
    for word in &mut words {
        for (byte, m) in word.iter_mut().zip(mask) {
            *byte ^= m;
        }
    }
    for (byte, m) in words.into_remainder().iter_mut().zip(mask) {
        *byte ^= m;
    }
}

fn message(data: &[u8], text: bool) -> Result<Event<'_>, CloseReason> {
    if text && std::str::from_utf8(data).is_err() {
        return Err(CloseReason::invalid_utf8("text message is not valid UTF-8"));
    }
    Ok(Event::Message { data, text })
}

fn parse_close(payload: &[u8]) -> Result<Event<'_>, CloseReason> {
    let Some((code, reason)) = payload.split_first_chunk::<2>() else {
        if payload.is_empty() {
            return Ok(Event::Close {
                code: None,
                reason: "",
            });
        }
        return Err(CloseReason::protocol_error(
            "close frame with a 1-octet payload",
        ));
    };
    let code = u16::from_be_bytes(*code);
    if !is_valid_close_code(code) {
        return Err(CloseReason::protocol_error("invalid close code"));
    }
    let reason = std::str::from_utf8(reason)
        .map_err(|_| CloseReason::invalid_utf8("close reason is not valid UTF-8"))?;
    Ok(Event::Close {
        code: Some(code),
        reason,
    })
}

/// Writes the header of a server frame (never masked) carrying `len` payload octets into `out`; returns the
/// header's length: 2 (up to 125 octets), 4 (up to 65535) or 10.
pub fn write_header(opcode: OpCode, fin: bool, len: usize, out: &mut [u8; 10]) -> usize {
    out[0] = if fin { FIN } else { 0 } | opcode.code();
    if len <= 125 {
        out[1] = len as u8;
        2
    } else if let Ok(len) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// Appends a control frame (Ping, Pong or Close) with `payload` (at most 125 octets; the rest is cut off) to
/// `out`. A Pong answering [`Event::Ping`] carries the ping's payload.
pub fn control_frame(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    debug_assert!(opcode.is_control(), "{opcode:?} is not a control opcode");
    debug_assert!(
        payload.len() <= CONTROL_PAYLOAD_MAX,
        "control payload of {} octets",
        payload.len()
    );
    let payload = payload.get(..CONTROL_PAYLOAD_MAX).unwrap_or(payload);
    let mut header = [0; 10];
    let header_len = write_header(opcode, true, payload.len(), &mut header);
    out.extend_from_slice(header.get(..header_len).unwrap_or_default());
    out.extend_from_slice(payload);
}

/// Appends a Close frame with status `code` and `reason` to `out`. The reason is cut, at a character boundary,
/// to the 123 octets a control frame leaves for it.
pub fn close_frame(code: u16, reason: &str, out: &mut Vec<u8>) {
    const REASON_MAX: usize = CONTROL_PAYLOAD_MAX - 2;
    let mut cut = reason.len().min(REASON_MAX);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let reason = reason.as_bytes().get(..cut).unwrap_or_default();
    let mut payload = [0; CONTROL_PAYLOAD_MAX];
    let [hi, lo] = code.to_be_bytes();
    payload[0] = hi;
    payload[1] = lo;
    let len = 2 + reason.len();
    if let Some(dst) = payload.get_mut(2..len) {
        dst.copy_from_slice(reason);
    }
    control_frame(OpCode::Close, payload.get(..len).unwrap_or_default(), out);
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: [Serializer; 2] = [Serializer::Json, Serializer::MsgPack];
    /// The masking key of RFC 6455 §5.7's examples.
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn config() -> UpgradeConfig {
        UpgradeConfig::new("/ws", BOTH.to_vec())
    }

    fn accepted(outcome: UpgradeOutcome) -> (Serializer, usize, String) {
        match outcome {
            UpgradeOutcome::Accept {
                serializer,
                consumed,
                response,
                ..
            } => (serializer, consumed, String::from_utf8(response).unwrap()),
            other => panic!("expected Accept, got {other:?}"),
        }
    }

    /// Checks the response is a well-formed error response and returns its status and text.
    fn rejected(outcome: UpgradeOutcome) -> (u16, String) {
        let UpgradeOutcome::Reject {
            status,
            response,
            reason,
        } = outcome
        else {
            panic!("expected Reject, got {outcome:?}");
        };
        let response = String::from_utf8(response).unwrap();
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status} ")),
            "{response}"
        );
        assert!(response.contains("\r\nConnection: close\r\n"), "{response}");
        assert!(
            response.contains("\r\nContent-Type: text/plain"),
            "{response}"
        );
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, format!("{reason}\n"));
        assert!(format!("{head}\r\n").contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
        assert!(!reason.contains('\n'));
        (status, response)
    }

    fn request(lines: &[&str]) -> Vec<u8> {
        let mut request = String::new();
        for line in lines {
            request.push_str(line);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        request.into_bytes()
    }

    /// A minimal valid upgrade request, with `extra` headers and `path`.
    fn upgrade_request(method_path: &str, extra: &[&str]) -> Vec<u8> {
        let mut lines = vec![
            method_path,
            "Host: localhost:8080",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ];
        lines.extend_from_slice(extra);
        request(&lines)
    }

    #[test]
    fn accept_key_is_rfc_6455_s_example() {
        assert_eq!(
            tungstenite::handshake::derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn upgrade_from_firefox() {
        let req = request(&[
            "GET /ws HTTP/1.1",
            "Host: localhost:8080",
            "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0",
            "Accept: */*",
            "Accept-Language: en-US,en;q=0.5",
            "Accept-Encoding: gzip, deflate, br, zstd",
            "Sec-WebSocket-Version: 13",
            "Origin: http://localhost:3000",
            "Sec-WebSocket-Protocol: wamp.2.json",
            "Sec-WebSocket-Extensions: permessage-deflate",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Connection: keep-alive, Upgrade",
            "Sec-Fetch-Dest: empty",
            "Sec-Fetch-Mode: websocket",
            "Sec-Fetch-Site: same-site",
            "Pragma: no-cache",
            "Cache-Control: no-cache",
            "Upgrade: websocket",
        ]);
        let (serializer, consumed, response) = accepted(handle_upgrade(&req, &config()));
        assert_eq!(serializer, Serializer::Json);
        assert_eq!(consumed, req.len());
        assert_eq!(
            response,
            "HTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Protocol: wamp.2.json\r\n\
             Server: kreisel\r\n\
             \r\n"
        );
    }

    #[test]
    fn upgrade_from_chrome() {
        let req = request(&[
            "GET /ws?token=abc HTTP/1.1",
            "Host: router.example.com",
            "Connection: Upgrade",
            "Pragma: no-cache",
            "Cache-Control: no-cache",
            "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36",
            "Upgrade: websocket",
            "Origin: https://app.example.com",
            "Sec-WebSocket-Version: 13",
            "Accept-Encoding: gzip, deflate, br, zstd",
            "Accept-Language: de-DE,de;q=0.9,en;q=0.8",
            "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
            "Sec-WebSocket-Protocol: wamp.2.msgpack",
        ]);
        let (serializer, consumed, response) = accepted(handle_upgrade(&req, &config()));
        assert_eq!(serializer, Serializer::MsgPack);
        assert_eq!(consumed, req.len());
        let accept = tungstenite::handshake::derive_accept_key(b"x3JJHMbDL1EzLkh9GBhXDw==");
        assert!(response.contains(&format!("\r\nSec-WebSocket-Accept: {accept}\r\n")));
        assert!(response.contains("\r\nSec-WebSocket-Protocol: wamp.2.msgpack\r\n"));
        assert!(!response.contains("Extensions"), "no extension is offered");
    }

    #[test]
    fn upgrade_from_python_websockets() {
        // Captured from websockets 15.0.1: `connect(url, subprotocols=["wamp.2.msgpack", "wamp.2.json"])`.
        let req = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:41383\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Key: fB2S9vIGwzK9+1Cx8TZOSg==\r\nSec-WebSocket-Version: 13\r\n\
                    Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
                    Sec-WebSocket-Protocol: wamp.2.msgpack, wamp.2.json\r\n\
                    User-Agent: Python/3.11 websockets/15.0.1\r\n\r\n";
        let (serializer, consumed, response) = accepted(handle_upgrade(req, &config()));
        assert_eq!(serializer, Serializer::MsgPack);
        assert_eq!(consumed, req.len());
        let accept = tungstenite::handshake::derive_accept_key(b"fB2S9vIGwzK9+1Cx8TZOSg==");
        assert!(response.contains(&format!("\r\nSec-WebSocket-Accept: {accept}\r\n")));
        assert!(response.contains("\r\nSec-WebSocket-Protocol: wamp.2.msgpack\r\n"));
    }

    #[test]
    fn subprotocol_is_the_client_s_first_supported_choice() {
        let pick = |extra: &[&str], cfg: &UpgradeConfig| {
            accepted(handle_upgrade(
                &upgrade_request("GET /ws HTTP/1.1", extra),
                cfg,
            ))
            .0
        };
        let cfg = config();
        let msgpack = Serializer::MsgPack;
        assert_eq!(
            pick(
                &["Sec-WebSocket-Protocol: wamp.2.msgpack, wamp.2.json"],
                &cfg
            ),
            msgpack
        );
        assert_eq!(
            pick(
                &["Sec-WebSocket-Protocol: wamp.2.msgpack,wamp.2.json"],
                &cfg
            ),
            msgpack
        );
        // Several headers: their lists concatenate in order; unknown names are skipped.
        let two_headers = [
            "Sec-WebSocket-Protocol: wamp.2.cbor, wamp.2.msgpack.batched",
            "sec-websocket-protocol: wamp.2.msgpack, wamp.2.json",
        ];
        assert_eq!(pick(&two_headers, &cfg), msgpack);
        // autobahn-python's WampWebSocketClientFactory default offer (joined without spaces), and its
        // Component's default (cbor, json).
        let autobahn = ["Sec-WebSocket-Protocol: wamp.2.cbor.batched,wamp.2.cbor,wamp.2.msgpack.batched,\
                         wamp.2.msgpack,wamp.2.ubjson.batched,wamp.2.ubjson,wamp.2.json.batched,wamp.2.json"];
        assert_eq!(pick(&autobahn, &cfg), msgpack);
        let component = ["Sec-WebSocket-Protocol: wamp.2.cbor,wamp.2.json"];
        assert_eq!(pick(&component, &cfg), Serializer::Json);
        // A listener with CBOR (the default) takes it when the client offers it first.
        let all = UpgradeConfig::new("/ws", Serializer::ALL.to_vec());
        assert_eq!(pick(&autobahn, &all), Serializer::Cbor);
        assert_eq!(pick(&component, &all), Serializer::Cbor);
        assert_eq!(pick(&two_headers, &all), Serializer::Cbor);
        // Only what the listener offers counts.
        let json_only = UpgradeConfig::new("/ws", vec![Serializer::Json]);
        assert_eq!(
            pick(
                &["Sec-WebSocket-Protocol: wamp.2.msgpack, wamp.2.json"],
                &json_only
            ),
            Serializer::Json
        );
    }

    #[test]
    fn upgrade_without_a_supported_subprotocol_is_refused() {
        for extra in [
            &[][..],
            &["Sec-WebSocket-Protocol: wamp.2.cbor, mqtt"][..],
            &["Sec-WebSocket-Protocol:"][..],
        ] {
            let (status, response) = rejected(handle_upgrade(
                &upgrade_request("GET /ws HTTP/1.1", extra),
                &config(),
            ));
            assert_eq!(status, 400);
            assert!(response.ends_with(
                "\r\n\r\nno supported WAMP subprotocol offered (this router speaks: wamp.2.json, wamp.2.msgpack)\n"
            ));
        }
    }

    /// With `mqtt`, the subprotocol `mqtt` is accepted too: the client's first offered one that the listener
    /// speaks wins.
    #[test]
    fn upgrade_to_mqtt_when_the_listener_speaks_it() {
        let cfg = UpgradeConfig {
            mqtt: true,
            ..config()
        };
        let offer = |protocols: &str| {
            handle_upgrade(
                &upgrade_request(
                    "GET /ws HTTP/1.1",
                    &[&format!("Sec-WebSocket-Protocol: {protocols}")],
                ),
                &cfg,
            )
        };
        let UpgradeOutcome::Mqtt { consumed, response } = offer("mqtt") else {
            panic!("not MQTT")
        };
        assert_eq!(
            consumed,
            upgrade_request("GET /ws HTTP/1.1", &["Sec-WebSocket-Protocol: mqtt"]).len()
        );
        let response = String::from_utf8(response).unwrap();
        assert!(
            response.contains("\r\nSec-WebSocket-Protocol: mqtt\r\n"),
            "{response}"
        );
        assert!(matches!(
            offer("mqttv3.1, mqtt"),
            UpgradeOutcome::Mqtt { .. }
        ));
        assert!(matches!(
            offer("wamp.2.json, mqtt"),
            UpgradeOutcome::Accept {
                serializer: Serializer::Json,
                ..
            }
        ));
        let (status, response) = rejected(offer("mqttv3.1"));
        assert_eq!(status, 400);
        assert!(
            response.ends_with("wamp.2.json, wamp.2.msgpack, mqtt)\n"),
            "{response}"
        );
    }

    #[test]
    fn origins_are_checked_when_listed() {
        let patterns = [
            "https://app.example.com",
            "https://*.example.org",
            "http://localhost:3000",
        ];
        let cfg = UpgradeConfig {
            allowed_origins: Some(
                patterns
                    .iter()
                    .map(|p| OriginPattern::parse(p).unwrap())
                    .collect(),
            ),
            ..config()
        };
        let with_origin = |origin: Option<&str>| {
            let header = origin.map(|o| format!("Origin: {o}"));
            let mut extra = vec!["Sec-WebSocket-Protocol: wamp.2.json"];
            extra.extend(header.as_deref());
            handle_upgrade(&upgrade_request("GET /ws HTTP/1.1", &extra), &cfg)
        };
        for allowed in [
            None,
            Some("https://app.example.com"),
            Some("HTTPS://App.Example.com:443"),
            Some("https://a.example.org"),
            Some("https://a.b.example.org"),
            Some("http://localhost:3000"),
        ] {
            accepted(with_origin(allowed));
        }
        for refused in [
            "https://evil.com",
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://example.org",
            "https://xexample.org",
            "https://app.example.com.evil.com",
            "http://localhost:3001",
            "null",
            "not an origin",
        ] {
            let (status, response) = rejected(with_origin(Some(refused)));
            assert_eq!(status, 403, "{refused}");
            assert!(response.contains("is not allowed"), "{response}");
        }
        // Two Origin headers: refused.
        let request = upgrade_request(
            "GET /ws HTTP/1.1",
            &[
                "Sec-WebSocket-Protocol: wamp.2.json",
                "Origin: https://app.example.com",
                "Origin: https://evil.com",
            ],
        );
        assert_eq!(rejected(handle_upgrade(&request, &cfg)).0, 403);
        // "null" only when listed.
        let cfg = UpgradeConfig {
            allowed_origins: Some(vec![OriginPattern::parse("null").unwrap()]),
            ..config()
        };
        let request = |origin: &str| {
            let header = format!("Origin: {origin}");
            upgrade_request(
                "GET /ws HTTP/1.1",
                &["Sec-WebSocket-Protocol: wamp.2.json", &header],
            )
        };
        accepted(handle_upgrade(&request("null"), &cfg));
        assert_eq!(
            rejected(handle_upgrade(&request("https://a.com"), &cfg)).0,
            403
        );
        // Without a list, any origin.
        accepted(handle_upgrade(&request("https://evil.com"), &config()));
    }

    #[test]
    fn origin_patterns_are_validated() {
        for (bad, why) in [
            ("example.com", "it has no scheme (https://example.com, say)"),
            ("*", "leave allowed_origins unset"),
            ("https://", "the host is missing"),
            ("https://:443", "the host is missing"),
            ("https:///x", "the host is missing"),
            (
                "https://a.com/path",
                "has no path, query or fragment: write 'https://a.com'",
            ),
            ("https://a.com/", "write 'https://a.com'"),
            ("https://a.com?q", "write 'https://a.com'"),
            ("https://user@a.com", "no user name"),
            ("ht tp://a.com", "'ht tp' is not a scheme"),
            ("https://a.*.com", "leading labels"),
            ("https://*", "leading labels"),
            ("https://a.com:x", "port 'x' is not a number"),
            ("https://a.com:", "port '' is not a number"),
            (
                "https://a.com:70000",
                "port 70000 is out of range 0..=65535",
            ),
        ] {
            let err = OriginPattern::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(OriginPattern::parse("https://[::1]:8443").is_ok());
        assert!(OriginPattern::parse("https://[::1]:8443")
            .unwrap()
            .allows(b"https://[::1]:8443"));
    }

    #[test]
    fn upgrade_refusals() {
        let proto = "Sec-WebSocket-Protocol: wamp.2.json";
        let cases: &[(u16, Vec<u8>)] = &[
            (404, upgrade_request("GET /other HTTP/1.1", &[proto])),
            (404, upgrade_request("GET /ws/ HTTP/1.1", &[proto])),
            (405, upgrade_request("POST /ws HTTP/1.1", &[proto])),
            (505, upgrade_request("GET /ws HTTP/1.0", &[proto])),
            (
                400,
                request(&[
                    "GET /ws HTTP/1.1",
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    proto,
                ]),
            ),
            (
                400,
                request(&[
                    "GET /ws HTTP/1.1",
                    "Host: h",
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    "Sec-WebSocket-Version: 13",
                    proto,
                ]),
            ),
            (
                400,
                upgrade_request(
                    "GET /ws HTTP/1.1",
                    &[proto, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="],
                ),
            ),
            (
                426,
                request(&[
                    "GET /ws HTTP/1.1",
                    "Host: h",
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Version: 13",
                    proto,
                ]),
            ),
            (
                426,
                request(&[
                    "GET /ws HTTP/1.1",
                    "Host: h",
                    "Upgrade: websocket",
                    "Connection: keep-alive",
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Version: 13",
                    proto,
                ]),
            ),
            (
                426,
                request(&[
                    "GET /ws HTTP/1.1",
                    "Host: h",
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Version: 8",
                    proto,
                ]),
            ),
            (400, b"GET /ws HTTP/1.1\r\nHost h\r\n\r\n".to_vec()),
            (
                400,
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
            ),
        ];
        for (expected, req) in cases {
            let (status, _) = rejected(handle_upgrade(req, &config()));
            assert_eq!(status, *expected, "{}", String::from_utf8_lossy(req));
        }
    }

    #[test]
    fn refusal_responses_carry_the_status_s_headers() {
        let version_8 = request(&[
            "GET /ws HTTP/1.1",
            "Host: h",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 8",
        ]);
        let (_, response) = rejected(handle_upgrade(&version_8, &config()));
        assert!(response.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(response.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        let (_, response) = rejected(handle_upgrade(
            &upgrade_request("POST /ws HTTP/1.1", &[]),
            &config(),
        ));
        assert!(response.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(response.contains("\r\nAllow: GET\r\n"));
    }

    #[test]
    fn key_must_be_base64_of_16_octets() {
        assert!(is_base64_of_16_octets(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(is_base64_of_16_octets(b"9T6LQx/bX2D0wX+ZgIQbtA=="));
        for key in [
            &b""[..],
            b"dGhlIHNhbXBsZSBub25jZQ=",
            b"dGhlIHNhbXBsZSBub25jZQ",
            b"dGhlIHNhbXBsZSBub25jZQ===",
            b"dGhlIHNhbXBsZSBub25jZ===",
            b"dGhlIHNhbXBsZSBub25j*Q==",
            b"dGhlIHNhbXBsZSBub25jZQAA",
            b"dGhlIHNhbXBsZSBub25jZQ==dGhl",
        ] {
            assert!(
                !is_base64_of_16_octets(key),
                "{}",
                String::from_utf8_lossy(key)
            );
            let header = format!("Sec-WebSocket-Key: {}", String::from_utf8_lossy(key));
            let req = request(&[
                "GET /ws HTTP/1.1",
                "Host: h",
                "Upgrade: websocket",
                "Connection: Upgrade",
                &header,
                "Sec-WebSocket-Version: 13",
                "Sec-WebSocket-Protocol: wamp.2.json",
            ]);
            assert_eq!(rejected(handle_upgrade(&req, &config())).0, 400);
        }
    }

    #[test]
    fn bytes_after_the_head_are_not_consumed() {
        let mut buf = upgrade_request("GET /ws HTTP/1.1", &["Sec-WebSocket-Protocol: wamp.2.json"]);
        let head_len = buf.len();
        buf.extend_from_slice(&[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ]);
        let (_, consumed, _) = accepted(handle_upgrade(&buf, &config()));
        assert_eq!(consumed, head_len);
    }

    #[test]
    fn incomplete_head_waits() {
        let req = upgrade_request("GET /ws HTTP/1.1", &["Sec-WebSocket-Protocol: wamp.2.json"]);
        for cut in 0..req.len() {
            assert_eq!(
                handle_upgrade(&req[..cut], &config()),
                UpgradeOutcome::Incomplete,
                "cut {cut}"
            );
        }
        accepted(handle_upgrade(&req, &config()));
    }

    #[test]
    fn metrics_path_is_answered_only_where_configured() {
        let request = b"GET /metrics?x=1 HTTP/1.1\r\nHost: h\r\n\r\nrest";
        let with = UpgradeConfig {
            metrics_path: Some("/metrics".into()),
            ..config()
        };
        assert_eq!(
            handle_upgrade(request, &with),
            UpgradeOutcome::Metrics {
                consumed: request.len() - 4
            }
        );
        // Without it, the path is just not the WebSocket endpoint.
        assert_eq!(rejected(handle_upgrade(request, &config())).0, 404);
        // Only GET; the WebSocket endpoint still upgrades.
        let post = b"POST /metrics HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(rejected(handle_upgrade(post, &with)).0, 405);
        let upgrade = upgrade_request("GET /ws HTTP/1.1", &["Sec-WebSocket-Protocol: wamp.2.json"]);
        accepted(handle_upgrade(&upgrade, &with));
    }

    #[test]
    fn health_paths_are_answered_only_where_configured() {
        let with = UpgradeConfig {
            health: true,
            ..config()
        };
        // HTTP/1.0 too: HAProxy's checks use it by default. Without health: not the WebSocket endpoint.
        for (request, probe, head, without) in [
            (
                &b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n"[..],
                Probe::Live,
                false,
                404,
            ),
            (
                b"GET /readyz?verbose HTTP/1.0\r\n\r\n",
                Probe::Ready,
                false,
                505,
            ),
            (
                b"HEAD /readyz HTTP/1.1\r\nHost: h\r\n\r\n",
                Probe::Ready,
                true,
                405,
            ),
        ] {
            assert_eq!(
                handle_upgrade(request, &with),
                UpgradeOutcome::Health {
                    consumed: request.len(),
                    probe,
                    head
                }
            );
            assert_eq!(rejected(handle_upgrade(request, &config())).0, without);
        }
        let post = b"POST /healthz HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(rejected(handle_upgrade(post, &with)).0, 405);
        let upgrade = upgrade_request("GET /ws HTTP/1.1", &["Sec-WebSocket-Protocol: wamp.2.json"]);
        accepted(handle_upgrade(&upgrade, &with));
    }

    #[test]
    fn oversized_head_is_refused_with_431() {
        let cfg = UpgradeConfig {
            head_max: 256,
            ..config()
        };
        // Incomplete and already longer than the limit.
        let mut endless = b"GET /ws HTTP/1.1\r\nHost: h\r\nX-Padding: ".to_vec();
        endless.resize(257, b'a');
        assert_eq!(rejected(handle_upgrade(&endless, &cfg)).0, 431);
        assert_eq!(
            handle_upgrade(&endless[..256], &cfg),
            UpgradeOutcome::Incomplete
        );
        // What lies beyond the limit is not looked at: a malformed request line there does not turn the 431 into
        // a 400 (found by the fuzzer: the status depended on how the bytes were split into reads).
        let mut malformed_late = b"GET /".to_vec();
        malformed_late.resize(300, b'a');
        malformed_late.extend_from_slice(b" HTTP\\1.1\r\n\r\n");
        assert_eq!(rejected(handle_upgrade(&malformed_late, &cfg)).0, 431);
        assert_eq!(
            rejected(handle_upgrade(&malformed_late[..257], &cfg)).0,
            431
        );
        // Complete, but longer than the limit.
        let padding = format!("X-Padding: {}", "a".repeat(300));
        let req = upgrade_request(
            "GET /ws HTTP/1.1",
            &["Sec-WebSocket-Protocol: wamp.2.json", &padding],
        );
        assert_eq!(rejected(handle_upgrade(&req, &cfg)).0, 431);
        // Too many headers.
        let many: Vec<String> = (0..HEADERS_MAX).map(|i| format!("X-H{i}: v")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            rejected(handle_upgrade(
                &upgrade_request("GET /ws HTTP/1.1", &many),
                &config()
            ))
            .0,
            431
        );
    }

    /// A masked client frame with first octet `b0` (FIN, RSV, opcode), in the shortest length form.
    fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![b0];
        match payload.len() {
            len @ 0..=125 => frame.push(0x80 | len as u8),
            len @ 126..=0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&MASK);
        frame.extend(payload.iter().zip(MASK.iter().cycle()).map(|(b, m)| b ^ m));
        frame
    }

    /// An [`Event`] that owns its bytes, to compare across buffers.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Owned {
        Message(Vec<u8>, bool),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<u16>, String),
        Fragment,
    }

    fn owned(event: Event<'_>) -> Owned {
        match event {
            Event::Message { data, text } | Event::Compressed { data, text } => {
                Owned::Message(data.to_vec(), text)
            }
            Event::Ping(data) => Owned::Ping(data.to_vec()),
            Event::Pong(data) => Owned::Pong(data.to_vec()),
            Event::Close { code, reason } => Owned::Close(code, reason.to_owned()),
            Event::Fragment => Owned::Fragment,
        }
    }

    /// Reads everything in `bytes` at once; returns the events, then the error if one stopped the reading.
    fn read_all(message_max: usize, mut bytes: Vec<u8>) -> (Vec<Owned>, Option<CloseReason>) {
        let mut reader = FrameReader::new(message_max);
        let mut events = Vec::new();
        let mut pos = 0;
        loop {
            match reader.read(&mut bytes[pos..]) {
                Ok(Some((consumed, event))) => {
                    assert!(consumed > 0);
                    events.push(owned(event));
                    pos += consumed;
                }
                Ok(None) => return (events, None),
                Err(close) => return (events, Some(close)),
            }
        }
    }

    /// Reads `bytes` as if they arrived one octet at a time.
    fn read_byte_by_byte(
        message_max: usize,
        mut bytes: Vec<u8>,
    ) -> (Vec<Owned>, Option<CloseReason>) {
        let mut reader = FrameReader::new(message_max);
        let mut events = Vec::new();
        let mut pos = 0;
        for end in 0..=bytes.len() {
            loop {
                match reader.read(&mut bytes[pos..end]) {
                    Ok(Some((consumed, event))) => {
                        events.push(owned(event));
                        pos += consumed;
                    }
                    Ok(None) => break,
                    Err(close) => return (events, Some(close)),
                }
            }
        }
        (events, None)
    }

    fn read_one(message_max: usize, bytes: &[u8]) -> Result<Option<(usize, Owned)>, CloseReason> {
        let mut buf = bytes.to_vec();
        FrameReader::new(message_max)
            .read(&mut buf)
            .map(|read| read.map(|(consumed, event)| (consumed, owned(event))))
    }

    fn close_code_of(bytes: &[u8], message_max: usize) -> u16 {
        match read_one(message_max, bytes) {
            Err(close) => close.code,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn reads_rfc_6455_s_masked_hello() {
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(client_frame(0x81, b"Hello"), frame);
        let mut buf = frame.to_vec();
        buf.push(0x82); // the start of the next frame stays unread
        let mut reader = FrameReader::new(1024);
        let (consumed, event) = reader.read(&mut buf).unwrap().unwrap();
        assert_eq!(consumed, frame.len());
        assert_eq!(
            event,
            Event::Message {
                data: b"Hello",
                text: true
            }
        );
        assert_eq!(&buf[6..11], b"Hello", "unmasked in place");
    }

    #[test]
    fn reads_messages_of_every_length_form() {
        for (len, header_len) in [(0, 6), (125, 6), (126, 8), (65_535, 8), (65_536, 14)] {
            let text: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let binary: Vec<u8> = (0..len).map(|i| (i * 7 + i / 256) as u8).collect();
            for (b0, payload, is_text) in [(0x81, &text, true), (0x82, &binary, false)] {
                let frame = client_frame(b0, payload);
                assert_eq!(frame.len(), header_len + len);
                let expected = Owned::Message(payload.clone(), is_text);
                assert_eq!(
                    read_one(65_536, &frame),
                    Ok(Some((frame.len(), expected))),
                    "{len}"
                );
                // Incomplete by one octet: nothing happens.
                assert_eq!(read_one(65_536, &frame[..frame.len() - 1]), Ok(None));
            }
        }
    }

    fn sequence() -> Vec<u8> {
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.extend_from_slice("tschüss".as_bytes());
        [
            client_frame(0x81, b"[1,\"realm\",{}]"),
            client_frame(0x89, b"ping"),
            client_frame(0x02, b"ab"),
            client_frame(0x89, b""),
            client_frame(0x00, b"cd"),
            client_frame(0x8A, b"pong"),
            client_frame(0x80, b"ef"),
            client_frame(0x01, &"caf\u{e9}".as_bytes()[..4]),
            client_frame(0x80, &"caf\u{e9}".as_bytes()[4..]),
            client_frame(0x82, &[0xFF; 126]),
            client_frame(0x88, &close),
        ]
        .concat()
    }

    #[test]
    fn fragmented_messages_with_interleaved_control_frames() {
        let (events, error) = read_all(1024, sequence());
        assert_eq!(error, None);
        assert_eq!(
            events,
            [
                Owned::Message(b"[1,\"realm\",{}]".to_vec(), true),
                Owned::Ping(b"ping".to_vec()),
                Owned::Fragment,
                Owned::Ping(vec![]),
                Owned::Fragment,
                Owned::Pong(b"pong".to_vec()),
                Owned::Message(b"abcdef".to_vec(), false),
                Owned::Fragment,
                Owned::Message("caf\u{e9}".as_bytes().to_vec(), true),
                Owned::Message(vec![0xFF; 126], false),
                Owned::Close(Some(1000), "tschüss".to_owned()),
            ]
        );
    }

    #[test]
    fn every_split_point_yields_the_same_events() {
        let whole = read_all(1024, sequence());
        assert_eq!(read_byte_by_byte(1024, sequence()), whole);
        for cut in 0..sequence().len() {
            let mut bytes = sequence();
            let mut reader = FrameReader::new(1024);
            let mut events = Vec::new();
            let mut pos = 0;
            for end in [cut, bytes.len()] {
                while let Some((consumed, event)) = reader.read(&mut bytes[pos..end]).unwrap() {
                    events.push(owned(event));
                    pos += consumed;
                }
            }
            assert_eq!(events, whole.0, "cut {cut}");
        }
    }

    #[test]
    fn protocol_errors_close_with_1002() {
        let protocol_error = |bytes: &[u8]| close_code_of(bytes, 1024);
        // Unmasked client frame.
        assert_eq!(
            protocol_error(&[0x81, 0x05, b'H', b'e', b'l', b'l', b'o']),
            1002
        );
        assert_eq!(protocol_error(&[0x81, 0x05]), 1002, "known from two octets");
        // RSV1..3.
        for rsv in [0x40, 0x20, 0x10] {
            assert_eq!(protocol_error(&client_frame(0x81 | rsv, b"x")), 1002);
        }
        // Reserved opcodes.
        for opcode in [0x3, 0x7, 0xB, 0xF] {
            assert_eq!(protocol_error(&client_frame(0x80 | opcode, b"")), 1002);
        }
        // Control frames: FIN clear, or more than 125 octets.
        assert_eq!(protocol_error(&client_frame(0x09, b"")), 1002);
        assert_eq!(protocol_error(&client_frame(0x08, &[0x03, 0xE8])), 1002);
        assert_eq!(protocol_error(&client_frame(0x89, &[0; 126])), 1002);
        assert_eq!(protocol_error(&client_frame(0x8A, &[0; 126])[..2]), 1002);
        // 64-bit length with the top bit set.
        let mut huge = vec![0x82, 0xFF];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        huge.extend_from_slice(&MASK);
        assert_eq!(protocol_error(&huge), 1002);
    }

    #[test]
    fn fragmentation_errors_close_with_1002() {
        let continuation_without_start = client_frame(0x80, b"x");
        assert_eq!(
            read_all(1024, continuation_without_start).1.unwrap().code,
            1002
        );
        let new_message_inside_fragmented =
            [client_frame(0x01, b"a"), client_frame(0x81, b"b")].concat();
        let (events, error) = read_all(1024, new_message_inside_fragmented);
        assert_eq!(events, [Owned::Fragment]);
        assert_eq!(error.unwrap().code, 1002);
        let continuation_after_end = [
            client_frame(0x01, b"a"),
            client_frame(0x80, b"b"),
            client_frame(0x80, b"c"),
        ]
        .concat();
        let (events, error) = read_all(1024, continuation_after_end);
        assert_eq!(
            events,
            [Owned::Fragment, Owned::Message(b"ab".to_vec(), true)]
        );
        assert_eq!(error.unwrap().code, 1002);
    }

    #[test]
    fn oversized_messages_close_with_1009_before_the_payload() {
        // 64-bit length, no payload sent at all.
        let mut header = vec![0x82, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 40).to_be_bytes());
        header.extend_from_slice(&MASK);
        assert_eq!(close_code_of(&header, 1 << 20), 1009);
        // 16-bit length just over the limit, header only.
        assert_eq!(
            close_code_of(&client_frame(0x81, &[b'a'; 1001])[..8], 1000),
            1009
        );
        assert_eq!(
            read_one(1001, &client_frame(0x81, &[b'a'; 1001])[..8]),
            Ok(None)
        );
        // Fragments adding up to more than the limit: refused at the header of the fragment that overflows.
        let fragments = [client_frame(0x02, &[1; 600]), client_frame(0x80, &[2; 401])].concat();
        let (events, error) = read_all(1000, fragments[..8 + 600 + 8].to_vec());
        assert_eq!(events, [Owned::Fragment]);
        assert_eq!(error.unwrap().code, 1009);
        let fits = [client_frame(0x02, &[1; 600]), client_frame(0x80, &[2; 400])].concat();
        assert_eq!(read_all(1000, fits).0.len(), 2);
        // Control frames are bounded by 125, not by message_max.
        assert_eq!(
            read_one(10, &client_frame(0x89, &[0; 125]))
                .unwrap()
                .unwrap()
                .0,
            131
        );
    }

    #[test]
    fn invalid_utf8_text_closes_with_1007() {
        assert_eq!(
            close_code_of(&client_frame(0x81, &[b'a', 0xC3]), 1024),
            1007
        );
        assert_eq!(
            close_code_of(&client_frame(0x81, &[0xED, 0xA0, 0x80]), 1024),
            1007,
            "surrogate"
        );
        // Binary is not checked.
        assert!(read_one(1024, &client_frame(0x82, &[0xC3]))
            .unwrap()
            .is_some());
        // Fragmented: checked when complete; a character may span fragments, a truncated one may not.
        let split_char = [client_frame(0x01, &[0xC3]), client_frame(0x80, &[0xA9])].concat();
        assert_eq!(read_all(1024, split_char).1, None);
        let truncated = [client_frame(0x01, b"a"), client_frame(0x80, &[0xC3])].concat();
        assert_eq!(read_all(1024, truncated).1.unwrap().code, 1007);
    }

    #[test]
    fn close_frames_are_validated() {
        let close = |payload: &[u8]| read_one(1024, &client_frame(0x88, payload));
        assert_eq!(
            close(b"").unwrap().unwrap().1,
            Owned::Close(None, String::new())
        );
        for code in [1000u16, 1001, 1003, 1007, 1011, 3000, 4999] {
            assert_eq!(
                close(&code.to_be_bytes()).unwrap().unwrap().1,
                Owned::Close(Some(code), String::new())
            );
        }
        assert_eq!(close(&[0x03]).unwrap_err().code, 1002);
        for code in [
            0u16,
            999,
            1004,
            1005,
            1006,
            1012,
            1015,
            2999,
            5000,
            u16::MAX,
        ] {
            assert_eq!(
                close(&code.to_be_bytes()).unwrap_err().code,
                1002,
                "code {code}"
            );
        }
        assert_eq!(close(&[0x03, 0xE8, 0xFF]).unwrap_err().code, 1007);
    }

    #[test]
    fn assembly_buffer_is_trimmed_after_a_large_message() {
        let mut bytes = [
            client_frame(0x02, &[7; 40_000]),
            client_frame(0x80, &[8; 40_000]),
        ]
        .concat();
        let mut reader = FrameReader::new(100_000);
        let (consumed, _) = reader.read(&mut bytes).unwrap().unwrap();
        let (_, event) = reader.read(&mut bytes[consumed..]).unwrap().unwrap();
        assert!(matches!(event, Event::Message { data, text: false } if data.len() == 80_000));
        assert!(reader.assembled.capacity() >= 80_000);
        assert!(
            reader.assembled.capacity() <= 100_000,
            "never beyond message_max"
        );
        assert_eq!(reader.read(&mut []), Ok(None));
        assert!(reader.assembled.is_empty());
        assert!(reader.assembled.capacity() <= ASSEMBLY_KEEP);
        assert_eq!(reader.assembly, Assembly::Idle);
    }

    #[test]
    fn server_headers_use_the_shortest_length_form() {
        let mut out = [0; 10];
        assert_eq!(write_header(OpCode::Text, true, 0, &mut out), 2);
        assert_eq!(out[..2], [0x81, 0]);
        assert_eq!(write_header(OpCode::Binary, true, 125, &mut out), 2);
        assert_eq!(out[..2], [0x82, 125]);
        assert_eq!(write_header(OpCode::Binary, false, 126, &mut out), 4);
        assert_eq!(out[..4], [0x02, 126, 0, 126]);
        assert_eq!(
            write_header(OpCode::Continuation, true, 65_535, &mut out),
            4
        );
        assert_eq!(out[..4], [0x80, 126, 0xFF, 0xFF]);
        assert_eq!(write_header(OpCode::Text, true, 65_536, &mut out), 10);
        assert_eq!(out, [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    /// Turns a server frame into the client frame the reader expects: set the mask bit, insert `MASK`, mask.
    fn as_client_frame(server_frame: &[u8]) -> Vec<u8> {
        let header_len = match server_frame[1] {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        let mut frame = server_frame[..header_len].to_vec();
        frame[1] |= 0x80;
        frame.extend_from_slice(&MASK);
        frame.extend(
            server_frame[header_len..]
                .iter()
                .zip(MASK.iter().cycle())
                .map(|(b, m)| b ^ m),
        );
        frame
    }

    #[test]
    fn control_frames_round_trip() {
        let mut out = Vec::new();
        control_frame(OpCode::Pong, b"ping payload", &mut out);
        assert_eq!(out[..2], [0x8A, 12]);
        assert_eq!(
            read_one(0, &as_client_frame(&out)).unwrap().unwrap().1,
            Owned::Pong(b"ping payload".to_vec())
        );

        out.clear();
        close_frame(CLOSE_NORMAL, "wamp.close.normal", &mut out);
        assert_eq!(out[..4], [0x88, 19, 0x03, 0xE8]);
        let expected = Owned::Close(Some(1000), "wamp.close.normal".to_owned());
        assert_eq!(
            read_one(0, &as_client_frame(&out)).unwrap().unwrap().1,
            expected
        );

        // A long reason is cut to 123 octets at a character boundary (ü is two octets).
        out.clear();
        let reason = "ü".repeat(100);
        close_frame(CLOSE_GOING_AWAY, &reason, &mut out);
        assert_eq!(out.len(), 2 + 2 + 122);
        let expected = Owned::Close(Some(1001), "ü".repeat(61));
        assert_eq!(
            read_one(0, &as_client_frame(&out)).unwrap().unwrap().1,
            expected
        );
    }

    #[test]
    fn close_reason_displays() {
        let close = CloseReason::protocol_error("client frame not masked");
        assert_eq!(
            close.to_string(),
            "WebSocket close 1002: client frame not masked"
        );
    }

    /// One frame header with arbitrary bits and a small payload, masked or not.
    fn arbitrary_frame() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let b0 = prop_oneof![
            3 => prop::sample::select(vec![0x00u8, 0x01, 0x02, 0x80, 0x81, 0x82, 0x88, 0x89, 0x8A]),
            1 => any::<u8>(),
        ];
        (b0, prop::collection::vec(any::<u8>(), 0..300), any::<u8>()).prop_map(
            |(b0, payload, twist)| {
                let mut frame = client_frame(b0, &payload);
                match twist {
                    0..=3 => frame[1] &= 0x7F,                // unmasked
                    4..=7 => frame.truncate(frame.len() / 2), // cut short
                    8..=11 => frame.push(twist),              // trailing garbage
                    _ => {}
                }
                frame
            },
        )
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512), max in 0usize..400) {
            let mut bytes = bytes;
            let mut reader = FrameReader::new(max);
            let mut pos = 0;
            while let Ok(Some((consumed, event))) = reader.read(&mut bytes[pos..]) {
                proptest::prop_assert!(consumed > 0);
                if let Event::Message { data, .. } = event {
                    proptest::prop_assert!(data.len() <= max);
                }
                pos += consumed;
            }
        }

        #[test]
        fn frame_sequences_read_the_same_byte_by_byte(
            frames in proptest::collection::vec(arbitrary_frame(), 0..8),
            max in 0usize..700,
        ) {
            let bytes = frames.concat();
            proptest::prop_assert_eq!(read_byte_by_byte(max, bytes.clone()), read_all(max, bytes));
        }
    }
}
