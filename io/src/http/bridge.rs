//! The services, sans socket: an HTTP request becomes a WAMP message of the service's session (or an answer right
//! away), and the router's reply to that message becomes the HTTP answer. The formats are crossbar's:
//!
//! * publisher: `{"topic": T, "args": [...], "kwargs": {...}, "options": {...}}` → PUBLISH with `acknowledge`
//!   → `200 {"id": <publication ID>}`;
//! * caller: `{"procedure": P, "args": [...], "kwargs": {...}}` → CALL → `200 {"args": [...], "kwargs": {...}}`
//!   shaped as autobahn hands a result to crossbar (a single result `x` as `{"args": [x]}`, none as
//!   `{"args": [null]}`, empty parts left out);
//! * webhook: any body → PUBLISH to the configured topic of `[{"headers": {name: [values]}, "body": text}]` →
//!   `202 OK`;
//! * a WAMP error → `{"error": URI, "args": [...], "kwargs": {...}}`, with a status that fits the error (or 200 as
//!   crossbar answers, with `errors_as_200`); a refused request → `{"error": text, "args": [], "kwargs": {}}`.

use std::borrow::Cow;

use kreisel_codec::{Dict, Field, Id, Message, Payload, RawValue, Serializer, Value};

use super::auth::{self, Guard, Proof, Signed};
use super::config::{ServiceConfig, ServiceKind};
use super::request::{query_pairs, Request};

/// A service, compiled for requests (shared by every shard).
#[derive(Debug)]
pub struct Service {
    pub path: String,
    pub kind: ServiceKind,
    pub realm: String,
    pub authid: String,
    pub role: String,
    topic: Option<String>,
    timeout_ms: u64,
    errors_as_200: bool,
    github_secret: Option<String>,
    success_response: String,
    error_response: String,
    pub guard: Guard,
}

/// An HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// More headers (name, value).
    pub headers: Vec<(&'static str, String)>,
}

const JSON: &str = "application/json; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

impl Response {
    /// crossbar's refusal: `{"error": reason, "args": [], "kwargs": {}}`.
    pub fn refusal(status: u16, reason: &str) -> Response {
        let mut body = b"{\"error\":".to_vec();
        json_string(reason, &mut body);
        body.extend_from_slice(b",\"args\":[],\"kwargs\":{}}");
        Response {
            status,
            content_type: JSON,
            body,
            headers: Vec::new(),
        }
    }

    fn json(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type: JSON,
            body,
            headers: Vec::new(),
        }
    }

    /// The whole answer: status line, headers (`Connection: close` unless `keep_alive`; CORS headers when
    /// `cors` names the origin to allow), body.
    pub fn to_bytes(&self, keep_alive: bool, cors: Option<&Cors>) -> Vec<u8> {
        use std::fmt::Write as _;
        let mut head = String::with_capacity(256);
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\nServer: kreisel\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store,no-cache,must-revalidate,max-age=0\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type,
            self.body.len()
        );
        if !keep_alive {
            head.push_str("Connection: close\r\n");
        }
        if let Some(cors) = cors {
            let _ = write!(
                head,
                "Access-Control-Allow-Origin: {}\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n",
                cors.origin
            );
            if let Some(headers) = &cors.request_headers {
                let _ = write!(head, "Access-Control-Allow-Headers: {headers}\r\n");
            }
        }
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// The CORS headers of an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cors {
    pub origin: String,
    pub request_headers: Option<String>,
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

/// What to do with a request.
#[derive(Debug)]
pub enum Outcome {
    /// Answer now.
    Respond(Response),
    /// Hand this WAMP message (JSON) to the service's session; [`Service::answer`] turns the router's reply into
    /// the answer. `who` names the principal, for the log.
    Wamp { message: Vec<u8>, who: String },
}

impl Service {
    pub fn new(config: &ServiceConfig) -> Service {
        Service {
            path: config.path.clone(),
            kind: config.kind,
            realm: config.realm.clone(),
            authid: config.authid(),
            role: config.role.clone(),
            topic: config.topic.clone(),
            timeout_ms: config.timeout_ms(),
            errors_as_200: config.errors_as_200,
            github_secret: config.github_secret.clone(),
            success_response: config
                .success_response
                .clone()
                .unwrap_or_else(|| "OK".into()),
            error_response: config
                .error_response
                .clone()
                .unwrap_or_else(|| "NOT OK".into()),
            guard: Guard::new(&config.principals, config.replay_window_s),
        }
    }

    /// The WAMP message for `request` (with request ID `id`), or the answer when it is refused. `now_ms` is the
    /// router's clock in Unix milliseconds.
    pub fn handle(&self, request: &Request<'_>, id: Id, now_ms: u64) -> Outcome {
        match self.prepare(request, id, now_ms) {
            Ok(outcome) => outcome,
            Err(response) => Outcome::Respond(response),
        }
    }

    fn prepare(&self, request: &Request<'_>, id: Id, now_ms: u64) -> Result<Outcome, Response> {
        match request.method.as_str() {
            "POST" | "PUT" => {}
            "OPTIONS" => {
                // A CORS preflight (crossbar answers it the same way, before authentication).
                let mut response = Response {
                    status: 200,
                    content_type: TEXT,
                    body: Vec::new(),
                    headers: vec![
                        ("Allow", "POST,PUT,OPTIONS".into()),
                        ("Access-Control-Allow-Methods", "POST,PUT,OPTIONS".into()),
                    ],
                };
                response
                    .headers
                    .push(("Access-Control-Max-Age", "600".into()));
                return Ok(Outcome::Respond(response));
            }
            other => {
                let mut response =
                    Response::refusal(405, &format!("method {other} not allowed: POST or PUT"));
                response.headers.push(("Allow", "POST,PUT,OPTIONS".into()));
                return Err(response);
            }
        }
        let pairs = query_pairs(&request.query);
        let param = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let signed = param("signature").map(|signature| {
            Ok(Signed {
                key: param("key").ok_or("key")?,
                timestamp: param("timestamp").ok_or("timestamp")?,
                seq: param("seq").ok_or("seq")?,
                nonce: param("nonce").ok_or("nonce")?,
                signature,
            })
        });
        let authorization = request.header("authorization");
        if request.header_values("authorization").count() > 1 {
            return Err(Response::refusal(400, "more than one Authorization header"));
        }
        let proof = self
            .guard
            .check(authorization, signed, request.body, now_ms)
            .map_err(|refusal| {
                let mut response = Response::refusal(refusal.status, &refusal.reason);
                if refusal.status == 401 {
                    response
                        .headers
                        .push(("WWW-Authenticate", "Bearer realm=\"kreisel\"".into()));
                }
                response
            })?;
        let who = self.guard.name(proof).to_owned();
        let message = match self.kind {
            ServiceKind::Publisher => self.publish(request, id)?,
            ServiceKind::Caller => self.call(request, id)?,
            ServiceKind::Webhook => self.webhook(request, id, proof)?,
        };
        Ok(Outcome::Wamp { message, who })
    }

    /// The JSON body of a publisher or caller request, as a dictionary.
    fn json_body<'b>(&self, request: &Request<'b>) -> Result<RawValue<'b>, Response> {
        if let Some(content_type) = request.header("content-type") {
            let mut parts = content_type.split(|&b| b == b';').map(<[u8]>::trim_ascii);
            let media = parts.next().unwrap_or_default();
            if !media.eq_ignore_ascii_case(b"application/json") {
                return Err(Response::refusal(
                    400,
                    &format!(
                        "content type must be application/json, not '{}'",
                        String::from_utf8_lossy(media)
                    ),
                ));
            }
            for parameter in parts {
                if let Some(charset) = parameter
                    .strip_prefix(b"charset=")
                    .or_else(|| parameter.strip_prefix(b"CHARSET="))
                {
                    let charset = charset.trim_ascii().to_ascii_lowercase();
                    if charset != b"utf-8" && charset != b"utf8" && charset != b"\"utf-8\"" {
                        return Err(Response::refusal(
                            400,
                            "the request body must be UTF-8 (charset=utf-8)",
                        ));
                    }
                }
            }
        }
        let body = RawValue::parse(Serializer::Json, request.body)
            .map_err(|e| Response::refusal(400, &format!("request body was invalid JSON: {e}")))?;
        if body.dict().is_none() {
            return Err(Response::refusal(
                400,
                "request body was valid JSON, but not well formed (must be a dict)",
            ));
        }
        Ok(body)
    }

    /// `args` (a list) and `kwargs` (a dictionary) of a body; absent, null or empty parts are left out.
    fn payload<'b>(body: &RawValue<'b>) -> Result<Payload<'b>, Response> {
        let args = match body.get("args") {
            None => None,
            Some(args) if args.is_null() => None,
            Some(args) => match args.list() {
                Some(mut items) => items.next().is_some().then_some(Field::Raw(args)),
                None => return Err(Response::refusal(400, "'args' must be a list")),
            },
        };
        let kwargs = match body.get("kwargs") {
            None => None,
            Some(kwargs) if kwargs.is_null() => None,
            Some(kwargs) => match kwargs.dict() {
                Some(mut entries) => entries.next().is_some().then_some(Field::Raw(kwargs)),
                None => return Err(Response::refusal(400, "'kwargs' must be a dict")),
            },
        };
        Ok(Payload { args, kwargs })
    }

    fn required_str<'b>(body: &RawValue<'b>, key: &str) -> Result<Cow<'b, str>, Response> {
        let value = body.get(key).ok_or_else(|| {
            Response::refusal(
                400,
                &format!("request body was valid JSON, but not well formed (missing key '{key}')"),
            )
        })?;
        value
            .as_str()
            .ok_or_else(|| Response::refusal(400, &format!("'{key}' must be a string")))
    }

    fn publish(&self, request: &Request<'_>, id: Id) -> Result<Vec<u8>, Response> {
        let body = self.json_body(request)?;
        let topic = Self::required_str(&body, "topic")?;
        let payload = Self::payload(&body)?;
        let options = match body.get("options") {
            None => None,
            Some(options) if options.is_null() => None,
            Some(options) if options.dict().is_some() => Some(options),
            Some(_) => return Err(Response::refusal(400, "'options' must be a dict")),
        };
        // The options crossbar's publisher passes on; the acknowledgment is the bridge's own.
        const PASSED: [&str; 8] = [
            "retain",
            "exclude_me",
            "exclude",
            "exclude_authid",
            "exclude_authrole",
            "eligible",
            "eligible_authid",
            "eligible_authrole",
        ];
        let mut fields: Vec<(&str, Field<'_>)> = vec![("acknowledge", Field::Bool(true))];
        for name in PASSED {
            if let Some(value) = options.and_then(|o| o.get(name)).filter(|v| !v.is_null()) {
                fields.push((name, Field::Raw(value)));
            }
        }
        let mut out = Vec::new();
        Serializer::Json.encode(
            &Message::Publish {
                request: id,
                options: Dict::Fields(&fields),
                topic,
                payload,
            },
            &mut out,
        );
        Ok(out)
    }

    fn call(&self, request: &Request<'_>, id: Id) -> Result<Vec<u8>, Response> {
        let body = self.json_body(request)?;
        let procedure = Self::required_str(&body, "procedure")?;
        let payload = Self::payload(&body)?;
        // A request may ask for a shorter timeout, never a longer one.
        let asked = body
            .get("options")
            .and_then(|o| o.get("timeout"))
            .and_then(|t| t.as_u64())
            .filter(|&t| t > 0);
        let timeout = asked.map_or(self.timeout_ms, |t| t.min(self.timeout_ms));
        let fields = [("timeout", Field::UInt(timeout))];
        let mut out = Vec::new();
        Serializer::Json.encode(
            &Message::Call {
                request: id,
                options: Dict::Fields(&fields),
                procedure,
                payload,
            },
            &mut out,
        );
        Ok(out)
    }

    fn webhook(&self, request: &Request<'_>, id: Id, proof: Proof) -> Result<Vec<u8>, Response> {
        if let Some(secret) = &self.github_secret {
            let valid = auth::github_signature_valid(
                secret,
                request.header("x-hub-signature-256"),
                request.header("x-hub-signature"),
                request.body,
            );
            if !valid {
                return Err(Response::refusal(
                    401,
                    "GitHub signature missing or invalid",
                ));
            }
        }
        let Ok(body) = std::str::from_utf8(request.body) else {
            return Err(Response::refusal(400, "request body was not UTF-8"));
        };
        // Headers by name (crossbar's canonical capitalization), every value in order. The bearer ticket that
        // authenticated the request is not passed on to subscribers.
        let mut headers: Vec<(String, Value)> = Vec::new();
        for (name, value) in &request.headers {
            if matches!(proof, Proof::Ticket(_)) && name.eq_ignore_ascii_case("authorization") {
                continue;
            }
            let name = canonical_header_name(name);
            let value = Value::Str(String::from_utf8_lossy(value).into_owned());
            match headers.iter_mut().find(|(n, _)| *n == name) {
                Some((_, Value::List(values))) => values.push(value),
                _ => headers.push((name, Value::List(vec![value]))),
            }
        }
        let event = Value::dict()
            .with("headers", Value::Dict(headers))
            .with("body", body);
        let args = [Field::Value(&event)];
        let fields = [("acknowledge", Field::Bool(true))];
        let mut out = Vec::new();
        Serializer::Json.encode(
            &Message::Publish {
                request: id,
                options: Dict::Fields(&fields),
                topic: Cow::Borrowed(self.topic.as_deref().unwrap_or_default()),
                payload: Payload {
                    args: Some(Field::List(&args)),
                    kwargs: None,
                },
            },
            &mut out,
        );
        Ok(out)
    }

    /// The HTTP answer to the router's reply `msg` (PUBLISHED, RESULT or ERROR) to a request of this service.
    pub fn answer(&self, msg: &Message<'_>) -> Response {
        match (self.kind, msg) {
            (ServiceKind::Publisher, Message::Published { publication, .. }) => Response::json(
                200,
                format!("{{\"id\":{}}}", publication.get()).into_bytes(),
            ),
            (ServiceKind::Webhook, Message::Published { .. }) => Response {
                status: 202,
                content_type: TEXT,
                body: self.success_response.as_bytes().to_vec(),
                headers: Vec::new(),
            },
            (ServiceKind::Webhook, Message::Error { .. }) => Response {
                status: 500,
                content_type: TEXT,
                body: self.error_response.as_bytes().to_vec(),
                headers: Vec::new(),
            },
            (ServiceKind::Caller, Message::Result { payload, .. }) => {
                Response::json(200, call_result(payload))
            }
            (_, Message::Error { error, payload, .. }) => {
                let status = if self.errors_as_200 {
                    200
                } else {
                    error_status(error)
                };
                Response::json(status, error_body(error, payload))
            }
            _ => Response::refusal(502, "unexpected reply from the router"),
        }
    }
}

/// The HTTP status that fits a WAMP error URI.
pub fn error_status(uri: &str) -> u16 {
    match uri {
        "wamp.error.not_authorized" => 403,
        "wamp.error.no_such_procedure" | "wamp.error.no_such_registration" => 404,
        "wamp.error.invalid_uri"
        | "wamp.error.invalid_argument"
        | "wamp.error.option_not_allowed"
        | "wamp.error.feature_not_supported"
        | "wamp.error.protocol_violation" => 400,
        "wamp.error.payload_size_exceeded" => 413,
        "kreisel.error.limit_exceeded" => 429,
        "wamp.error.canceled" => 502,
        "wamp.error.no_available_callee" => 503,
        "wamp.error.timeout" => 504,
        // Raised by the callee: the call failed.
        _ => 500,
    }
}

/// A RESULT's payload as crossbar's caller answers it (autobahn's view of a result: several values or keyword
/// results as a `CallResult`, one value as itself, none as `None`).
fn call_result(payload: &Payload<'_>) -> Vec<u8> {
    let args = payload.args.and_then(|a| a.as_raw());
    let kwargs = payload.kwargs.and_then(|k| k.as_raw());
    let arg_count = args.and_then(|a| a.list()).map_or(0, |items| items.count());
    let has_kwargs = kwargs
        .and_then(|k| k.dict())
        .is_some_and(|mut entries| entries.next().is_some());
    let mut out = Vec::new();
    match (args, arg_count, has_kwargs) {
        (_, 0, false) => out.extend_from_slice(b"{\"args\":[null]}"),
        (Some(args), _, _) if !has_kwargs || arg_count > 0 => {
            out.extend_from_slice(b"{\"args\":");
            out.extend_from_slice(args.bytes());
            if let (true, Some(kwargs)) = (has_kwargs, kwargs) {
                out.extend_from_slice(b",\"kwargs\":");
                out.extend_from_slice(kwargs.bytes());
            }
            out.push(b'}');
        }
        (_, _, _) => {
            out.extend_from_slice(b"{\"kwargs\":");
            out.extend_from_slice(kwargs.map_or(&b"{}"[..], |k| k.bytes()));
            out.push(b'}');
        }
    }
    out
}

fn error_body(error: &str, payload: &Payload<'_>) -> Vec<u8> {
    let mut out = b"{\"error\":".to_vec();
    json_string(error, &mut out);
    out.extend_from_slice(b",\"args\":");
    match payload.args.and_then(|a| a.as_raw()) {
        Some(args) => out.extend_from_slice(args.bytes()),
        None => out.extend_from_slice(b"[]"),
    }
    out.extend_from_slice(b",\"kwargs\":");
    match payload.kwargs.and_then(|k| k.as_raw()) {
        Some(kwargs) => out.extend_from_slice(kwargs.bytes()),
        None => out.extend_from_slice(b"{}"),
    }
    out.push(b'}');
    out
}

fn json_string(text: &str, out: &mut Vec<u8>) {
    kreisel_codec::encode_field(Serializer::Json, &Field::Str(text), out);
}

/// A header name as Twisted (crossbar's web server) capitalizes it: each dash-separated word capitalized.
fn canonical_header_name(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::config::HttpPrincipal;
    use crate::http::request::{Parse, Reader};

    fn service(kind: ServiceKind, principals: Vec<HttpPrincipal>) -> Service {
        Service::new(&ServiceConfig {
            path: "/svc".into(),
            kind,
            realm: "realm1".into(),
            role: "anonymous".into(),
            authid: None,
            topic: (kind == ServiceKind::Webhook).then(|| "com.example.hook".into()),
            timeout_ms: None,
            errors_as_200: false,
            replay_window_s: 300,
            github_secret: None,
            success_response: None,
            error_response: None,
            principals,
        })
    }

    /// Runs `text` (a whole request) through a reader and `service`.
    fn handle(service: &Service, text: &str) -> Outcome {
        let mut buf = text.as_bytes().to_vec();
        match Reader::default().read(&mut buf, 4096) {
            Parse::Complete(request, _) => service.handle(&request, Id::FIRST, 0),
            other => panic!("{other:?}"),
        }
    }

    fn post(body: &str, extra: &str) -> String {
        format!(
            "POST /svc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    fn wamp(outcome: Outcome) -> serde_json::Value {
        match outcome {
            Outcome::Wamp { message, .. } => serde_json::from_slice(&message).unwrap(),
            Outcome::Respond(r) => {
                panic!("answered {} {}", r.status, String::from_utf8_lossy(&r.body))
            }
        }
    }

    fn refused(outcome: Outcome) -> (u16, serde_json::Value) {
        match outcome {
            Outcome::Respond(r) => (
                r.status,
                serde_json::from_slice(&r.body).unwrap_or_default(),
            ),
            Outcome::Wamp { message, .. } => {
                panic!("accepted: {}", String::from_utf8_lossy(&message))
            }
        }
    }

    #[test]
    fn publisher_requests_become_acknowledged_publications() {
        let publisher = service(ServiceKind::Publisher, vec![]);
        let message = wamp(handle(
            &publisher,
            &post(
                r#"{"topic": "com.example.t", "args": [1, "x"], "kwargs": {"k": true}, "options": {"retain": true, "exclude_me": false, "disclose_me": true}}"#,
                "",
            ),
        ));
        assert_eq!(
            message,
            serde_json::json!([16, 1, {"acknowledge": true, "retain": true, "exclude_me": false}, "com.example.t", [1, "x"], {"k": true}])
        );
        let message = wamp(handle(
            &publisher,
            &post(r#"{"topic": "t", "args": [], "kwargs": null}"#, ""),
        ));
        assert_eq!(
            message,
            serde_json::json!([16, 1, {"acknowledge": true}, "t"])
        );
        let message = wamp(handle(
            &publisher,
            &post(r#"{"topic": "t", "kwargs": {"a": 1}}"#, ""),
        ));
        assert_eq!(
            message,
            serde_json::json!([16, 1, {"acknowledge": true}, "t", [], {"a": 1}])
        );
        for (body, text) in [
            (r#"{"args": []}"#, "missing key 'topic'"),
            ("[1]", "must be a dict"),
            ("{", "invalid JSON"),
            (r#"{"topic": 1}"#, "'topic' must be a string"),
            (r#"{"topic": "t", "args": "abc"}"#, "'args' must be a list"),
            (r#"{"topic": "t", "kwargs": []}"#, "'kwargs' must be a dict"),
        ] {
            let (status, body) = refused(handle(&publisher, &post(body, "")));
            assert_eq!(status, 400, "{body}");
            assert!(body["error"].as_str().unwrap().contains(text), "{body}");
            assert_eq!(
                (&body["args"], &body["kwargs"]),
                (&serde_json::json!([]), &serde_json::json!({}))
            );
        }
        let wrong_type = post(r#"{"topic": "t"}"#, "").replace("application/json", "text/plain");
        assert_eq!(refused(handle(&publisher, &wrong_type)).0, 400);
        let latin1 = post(r#"{"topic": "t"}"#, "")
            .replace("application/json", "application/json; charset=latin-1");
        assert_eq!(refused(handle(&publisher, &latin1)).0, 400);
        let (status, _) = refused(handle(&publisher, "GET /svc HTTP/1.1\r\n\r\n"));
        assert_eq!(status, 405);
        match handle(&publisher, "OPTIONS /svc HTTP/1.1\r\n\r\n") {
            Outcome::Respond(r) => assert_eq!(r.status, 200),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            publisher.answer(&Message::Published {
                request: Id::FIRST,
                publication: Id::new(77).unwrap()
            }),
            Response::json(200, br#"{"id":77}"#.to_vec())
        );
    }

    #[test]
    fn caller_requests_and_results() {
        let caller = service(ServiceKind::Caller, vec![]);
        let message = wamp(handle(
            &caller,
            &post(r#"{"procedure": "com.example.add", "args": [1, 2]}"#, ""),
        ));
        assert_eq!(
            message,
            serde_json::json!([48, 1, {"timeout": 10000}, "com.example.add", [1, 2]])
        );
        let message = wamp(handle(
            &caller,
            &post(r#"{"procedure": "p", "options": {"timeout": 50}}"#, ""),
        ));
        assert_eq!(message, serde_json::json!([48, 1, {"timeout": 50}, "p"]));
        let message = wamp(handle(
            &caller,
            &post(
                r#"{"procedure": "p", "options": {"timeout": 99999999}}"#,
                "",
            ),
        ));
        assert_eq!(
            message[2]["timeout"], 10000,
            "never longer than the service's"
        );
        let result = |json: &str| {
            let msg = Serializer::Json.decode(json.as_bytes()).unwrap();
            let response = caller.answer(&msg);
            (response.status, String::from_utf8(response.body).unwrap())
        };
        assert_eq!(result(r#"[50, 1, {}]"#), (200, r#"{"args":[null]}"#.into()));
        assert_eq!(
            result(r#"[50, 1, {}, []]"#),
            (200, r#"{"args":[null]}"#.into())
        );
        assert_eq!(
            result(r#"[50, 1, {}, [3]]"#),
            (200, r#"{"args":[3]}"#.into())
        );
        assert_eq!(
            result(r#"[50, 1, {}, [3, 4]]"#),
            (200, r#"{"args":[3, 4]}"#.into())
        );
        assert_eq!(
            result(r#"[50, 1, {}, [], {"a": 1}]"#),
            (200, r#"{"kwargs":{"a": 1}}"#.into())
        );
        assert_eq!(
            result(r#"[50, 1, {}, [3], {"a": 1}]"#),
            (200, r#"{"args":[3],"kwargs":{"a": 1}}"#.into())
        );
        assert_eq!(
            result(r#"[50, 1, {}, [3], {}]"#),
            (200, r#"{"args":[3]}"#.into())
        );
        assert_eq!(
            result(r#"[8, 48, 1, {}, "com.example.error.oops", ["bad"], {"code": 7}]"#),
            (
                500,
                r#"{"error":"com.example.error.oops","args":["bad"],"kwargs":{"code": 7}}"#.into()
            )
        );
        assert_eq!(
            result(r#"[8, 48, 1, {}, "wamp.error.no_such_procedure", ["no callee"]]"#),
            (
                404,
                r#"{"error":"wamp.error.no_such_procedure","args":["no callee"],"kwargs":{}}"#
                    .into()
            )
        );
        assert_eq!(result(r#"[8, 48, 1, {}, "wamp.error.timeout"]"#).0, 504);
        assert_eq!(
            result(r#"[8, 48, 1, {}, "wamp.error.not_authorized"]"#).0,
            403
        );
        let crossbar = Service {
            errors_as_200: true,
            ..service(ServiceKind::Caller, vec![])
        };
        let msg = Serializer::Json
            .decode(br#"[8, 48, 1, {}, "wamp.error.timeout"]"#)
            .unwrap();
        assert_eq!(crossbar.answer(&msg).status, 200);
    }

    #[test]
    fn webhooks_publish_headers_and_body() {
        let hook = service(
            ServiceKind::Webhook,
            vec![HttpPrincipal {
                key: "gh".into(),
                ticket: Some("t0ken".into()),
                secret: None,
            }],
        );
        let request = "POST /svc HTTP/1.1\r\nHost: x\r\nx-github-event: push\r\nAuthorization: Bearer t0ken\r\n\
                       X-Many: 1\r\nx-many: 2\r\nContent-Length: 9\r\n\r\nnot json!";
        let message = wamp(handle(&hook, request));
        assert_eq!(
            message,
            serde_json::json!([16, 1, {"acknowledge": true}, "com.example.hook", [{
                "headers": {"Host": ["x"], "X-Github-Event": ["push"], "X-Many": ["1", "2"], "Content-Length": ["9"]},
                "body": "not json!"
            }]])
        );
        let unauthenticated = request.replace("Authorization: Bearer t0ken\r\n", "");
        let (status, body) = refused(handle(&hook, &unauthenticated));
        assert_eq!(status, 401, "{body}");
        let binary =
            "POST /svc HTTP/1.1\r\nAuthorization: Bearer t0ken\r\nContent-Length: 2\r\n\r\n\u{ff}";
        let mut bytes = binary.as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last - 1] = 0xff;
        bytes[last] = 0xfe;
        let outcome = match Reader::default().read(&mut bytes, 4096) {
            Parse::Complete(request, _) => hook.handle(&request, Id::FIRST, 0),
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(outcome).0, 400);
        let published = hook.answer(&Message::Published {
            request: Id::FIRST,
            publication: Id::FIRST,
        });
        assert_eq!(
            (published.status, published.body.as_slice()),
            (202, &b"OK"[..])
        );
        let msg = Serializer::Json
            .decode(br#"[8, 16, 1, {}, "wamp.error.not_authorized"]"#)
            .unwrap();
        let failed = hook.answer(&msg);
        assert_eq!(
            (failed.status, failed.body.as_slice()),
            (500, &b"NOT OK"[..])
        );
    }

    #[test]
    fn answers_are_complete_http_responses() {
        let response = Response::refusal(401, "invalid \"ticket\"");
        let text = String::from_utf8(response.to_bytes(false, None)).unwrap();
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
        assert!(text.contains("\r\nConnection: close\r\n"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert_eq!(
            body,
            r#"{"error":"invalid \"ticket\"","args":[],"kwargs":{}}"#
        );
        let cors = Cors {
            origin: "https://app.example.com".into(),
            request_headers: Some("authorization".into()),
        };
        let text = String::from_utf8(response.to_bytes(true, Some(&cors))).unwrap();
        assert!(!text.contains("Connection: close"));
        assert!(text.contains("Access-Control-Allow-Origin: https://app.example.com\r\n"));
        assert!(text.contains("Access-Control-Allow-Headers: authorization\r\n"));
        assert_eq!(
            canonical_header_name("x-hub-SIGNATURE-256"),
            "X-Hub-Signature-256"
        );
    }
}
