//! HTTP/1.1 requests, sans socket: the head parsed with `httparse`, the body framed by `Content-Length` or
//! `Transfer-Encoding: chunked` (decoded in place), everything bounded.
//!
//! The caller keeps a connection's unread bytes and calls [`Reader::read`] with all of them (the current request
//! always starts at the first byte) until it returns a request or a refusal. A chunked body is scanned
//! incrementally: the reader remembers how far it got, so a body trickling in costs linear time, and each
//! complete chunk's data is moved down in place to follow the previous one, so the decoded body ends up
//! contiguous right after the head without a copy elsewhere.

/// Largest request head accepted (request line and headers), as for WebSocket upgrades.
pub const HEAD_MAX: usize = crate::websocket::HEAD_MAX_DEFAULT;
/// Most request headers accepted; more is refused with 431.
pub const HEADERS_MAX: usize = 48;
/// What chunked framing may add to a body (chunk-size lines, extensions, trailers) beyond `body_max`.
pub const CHUNKED_OVERHEAD_MAX: usize = 64 * 1024;
/// Bytes a request may occupy in a connection's buffer beyond its body: the head and chunked framing.
pub const INPUT_SLACK: usize = HEAD_MAX + CHUNKED_OVERHEAD_MAX;
/// Longest chunk-size line (size, extensions) or trailer line.
const LINE_MAX: usize = 1024;

/// One complete request. The body borrows the connection's buffer.
#[derive(Debug)]
pub struct Request<'b> {
    pub method: String,
    /// The path of the request target (before `?`).
    pub path: String,
    /// The query string (after `?`, not decoded), empty without one.
    pub query: String,
    /// Every header as sent (name, raw value), in order.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: &'b [u8],
    /// Whether the connection stays open after the answer (HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
    /// `Connection: keep-alive`).
    pub keep_alive: bool,
}

impl Request<'_> {
    /// The trimmed values of every header called `name` (any case).
    pub fn header_values<'r>(&'r self, name: &'r str) -> impl Iterator<Item = &'r [u8]> + 'r {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim_ascii())
    }

    /// The value of a header that appears once (trimmed); `None` when absent or repeated.
    pub fn header<'r>(&'r self, name: &'r str) -> Option<&'r [u8]> {
        let mut values = self.header_values(name);
        match (values.next(), values.next()) {
            (Some(value), None) => Some(value),
            _ => None,
        }
    }

    /// The header as text (`None` when absent, repeated or not UTF-8).
    pub fn header_str<'r>(&'r self, name: &'r str) -> Option<&'r str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// What [`Reader::read`] found.
#[derive(Debug)]
pub enum Parse<'b> {
    /// Not complete yet: read more and call again with everything. `send_continue`: the client waits for
    /// `100 Continue` before it sends the body (sent once).
    Incomplete { send_continue: bool },
    /// A complete request that occupied `consumed` bytes.
    Complete(Request<'b>, usize),
    /// A request the router refuses: answer `status` with `reason`, then close the connection.
    Reject { status: u16, reason: String },
}

/// The state of one connection's current request.
#[derive(Debug, Default)]
pub struct Reader {
    /// Chunked body: the offset of the next chunk-size line, and where the decoded data ends (offsets from the
    /// start of the request; both 0 until the head was read).
    chunk_next: usize,
    chunk_end: usize,
    /// The last chunk was read; trailers follow.
    chunks_done: bool,
    continue_sent: bool,
}

/// How the body is framed.
enum Framing {
    Length(usize),
    Chunked,
}

/// The parts of a head that outlive the parse.
struct Head {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, Vec<u8>)>,
    keep_alive: bool,
    framing: Framing,
    expects_continue: bool,
    len: usize,
}

fn reject<'b>(status: u16, reason: impl Into<String>) -> Parse<'b> {
    Parse::Reject {
        status,
        reason: reason.into(),
    }
}

impl Reader {
    /// Reads the request at the start of `buf` (every unread byte of the connection), with bodies of at most
    /// `body_max` bytes.
    pub fn read<'b>(&mut self, buf: &'b mut [u8], body_max: usize) -> Parse<'b> {
        let head = match parse_head(buf, body_max) {
            Ok(Some(head)) => head,
            Ok(None) => {
                return Parse::Incomplete {
                    send_continue: false,
                }
            }
            Err((status, reason)) => return reject(status, reason),
        };
        let body_end = match head.framing {
            Framing::Length(len) => {
                let end = head.len + len;
                if buf.len() < end {
                    return self.incomplete(&head);
                }
                end
            }
            Framing::Chunked => match self.scan_chunks(buf, head.len, body_max) {
                Ok(Some(consumed)) => consumed,
                Ok(None) => return self.incomplete(&head),
                Err((status, reason)) => return reject(status, reason),
            },
        };
        let body = match head.framing {
            Framing::Length(_) => &buf[head.len..body_end],
            Framing::Chunked => &buf[head.len..self.chunk_end],
        };
        *self = Reader::default();
        Parse::Complete(
            Request {
                method: head.method,
                path: head.path,
                query: head.query,
                headers: head.headers,
                body,
                keep_alive: head.keep_alive,
            },
            body_end,
        )
    }

    fn incomplete<'b>(&mut self, head: &Head) -> Parse<'b> {
        let send_continue = head.expects_continue && !self.continue_sent;
        self.continue_sent |= send_continue;
        Parse::Incomplete { send_continue }
    }

    /// Scans the chunks that arrived since the last call, moving each one's data down to follow the data before
    /// it. Returns the end of the whole chunked body (trailers included) once it is complete.
    fn scan_chunks(
        &mut self,
        buf: &mut [u8],
        head_len: usize,
        body_max: usize,
    ) -> Result<Option<usize>, (u16, String)> {
        if self.chunk_next == 0 {
            self.chunk_next = head_len;
            self.chunk_end = head_len;
        }
        loop {
            if self.chunk_next - head_len > body_max + CHUNKED_OVERHEAD_MAX {
                return Err((
                    413,
                    format!("the chunked body exceeds {body_max} bytes with its framing"),
                ));
            }
            let Some(line_len) = find_crlf(&buf[self.chunk_next..], LINE_MAX)? else {
                return Ok(None);
            };
            let line_start = self.chunk_next;
            let after_line = line_start + line_len + 2;
            if self.chunks_done {
                // Trailer fields, ended by an empty line.
                self.chunk_next = after_line;
                if line_len == 0 {
                    return Ok(Some(after_line));
                }
                continue;
            }
            let line = &buf[line_start..line_start + line_len];
            let size_text = line
                .split(|&b| b == b';')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            let size = parse_hex(size_text)
                .ok_or((400, "malformed chunk size in a chunked body".to_owned()))?;
            if size == 0 {
                self.chunks_done = true;
                self.chunk_next = after_line;
                continue;
            }
            let data_len = self.chunk_end - head_len;
            if size > body_max.saturating_sub(data_len) {
                return Err((413, format!("the request body exceeds {body_max} bytes")));
            }
            let data_end = after_line + size;
            if buf.len() < data_end + 2 {
                return Ok(None);
            }
            if &buf[data_end..data_end + 2] != b"\r\n" {
                return Err((400, "a chunk is not followed by CRLF".to_owned()));
            }
            buf.copy_within(after_line..data_end, self.chunk_end);
            self.chunk_end += size;
            self.chunk_next = data_end + 2;
        }
    }
}

/// The length of the line at the start of `bytes` (before its CRLF), `None` when no CRLF arrived yet; an error
/// for a line longer than `max`.
fn find_crlf(bytes: &[u8], max: usize) -> Result<Option<usize>, (u16, String)> {
    let window = &bytes[..bytes.len().min(max + 2)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(at) => Ok(Some(at)),
        None if bytes.len() >= max + 2 => {
            Err((400, "a line of the chunked body is too long".into()))
        }
        None => Ok(None),
    }
}

fn parse_hex(text: &[u8]) -> Option<usize> {
    if text.is_empty() || text.len() > 8 {
        return None;
    }
    text.iter().try_fold(0usize, |n, &b| {
        let digit = (b as char).to_digit(16)?;
        Some(n * 16 + digit as usize)
    })
}

/// Parses the head at the start of `buf`: `Ok(None)` while it is incomplete, an error status and reason for a
/// request refused from its head alone.
fn parse_head(buf: &[u8], body_max: usize) -> Result<Option<Head>, (u16, String)> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut request = httparse::Request::new(&mut headers);
    let window = &buf[..buf.len().min(HEAD_MAX)];
    let len = match request.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < HEAD_MAX => return Ok(None),
        Ok(httparse::Status::Partial) => {
            return Err((431, format!("request head exceeds {HEAD_MAX} octets")))
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err((431, format!("more than {HEADERS_MAX} request headers")))
        }
        Err(error) => return Err((400, format!("malformed HTTP request: {error}"))),
    };
    let http_1_1 = match request.version {
        Some(1) => true,
        Some(0) => false,
        _ => return Err((505, "HTTP/1.0 or HTTP/1.1 only".into())),
    };
    let headers: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
        .collect();
    let values = |name: &'static str| {
        headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    };
    let tokens = |name: &'static str| {
        values(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
    };
    let close = tokens("connection").any(|t| t.eq_ignore_ascii_case(b"close"));
    let keep = tokens("connection").any(|t| t.eq_ignore_ascii_case(b"keep-alive"));
    let keep_alive = if http_1_1 { !close } else { keep && !close };
    let expects_continue =
        http_1_1 && tokens("expect").any(|t| t.eq_ignore_ascii_case(b"100-continue"));
    let transfer_encodings: Vec<&[u8]> = tokens("transfer-encoding").collect();
    let lengths: Vec<&[u8]> = values("content-length").map(<[u8]>::trim_ascii).collect();
    let framing = if !transfer_encodings.is_empty() {
        if !lengths.is_empty() {
            return Err((
                400,
                "a request with both Transfer-Encoding and Content-Length".into(),
            ));
        }
        if transfer_encodings.len() != 1 || !transfer_encodings[0].eq_ignore_ascii_case(b"chunked")
        {
            return Err((
                501,
                "only the chunked transfer encoding is supported".into(),
            ));
        }
        Framing::Chunked
    } else {
        let mut length = None;
        for value in &lengths {
            let parsed = std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or((400, "malformed Content-Length".to_owned()))?;
            if length.is_some_and(|l| l != parsed) {
                return Err((400, "conflicting Content-Length headers".into()));
            }
            length = Some(parsed);
        }
        let length = length.unwrap_or(0);
        if length > body_max as u64 {
            return Err((
                413,
                format!("the request body of {length} bytes exceeds {body_max} bytes"),
            ));
        }
        Framing::Length(length as usize)
    };
    let target = request.path.unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Some(Head {
        method: request.method.unwrap_or("").to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        keep_alive,
        framing,
        expects_continue,
        len,
    }))
}

/// The path of the request line at the start of `buf`: `None` while the line is incomplete, `Some(None)` when it
/// is not a request line (or too long to wait for).
pub fn request_path(buf: &[u8]) -> Option<Option<&str>> {
    let window = &buf[..buf.len().min(HEAD_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return (buf.len() >= HEAD_MAX).then_some(None);
    };
    let line = std::str::from_utf8(&window[..end]).ok();
    let target = line.and_then(|line| line.split(' ').nth(1));
    Some(target.map(|t| t.split_once('?').map_or(t, |(path, _)| path)))
}

/// The `(name, value)` pairs of a query string, percent-decoded (`+` is a space), in order. Pairs that do not
/// decode to UTF-8 keep their replacement characters, so they can never match a signature.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| {
                    let h = std::str::from_utf8(h).ok()?;
                    u8::from_str_radix(h, 16).ok()
                });
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(reader: &mut Reader, buf: &mut [u8]) -> (String, Vec<u8>, bool, usize) {
        match reader.read(buf, 1024) {
            Parse::Complete(request, consumed) => (
                format!("{} {}?{}", request.method, request.path, request.query),
                request.body.to_vec(),
                request.keep_alive,
                consumed,
            ),
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn status(reader: &mut Reader, buf: &mut [u8]) -> u16 {
        match reader.read(buf, 1024) {
            Parse::Reject { status, .. } => status,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn content_length_bodies_and_keep_alive() {
        let mut reader = Reader::default();
        let mut buf =
            b"POST /publish?key=a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET"
                .to_vec();
        let (line, body, keep_alive, consumed) = complete(&mut reader, &mut buf);
        assert_eq!(line, "POST /publish?key=a");
        assert_eq!(body, b"hello");
        assert!(keep_alive);
        assert_eq!(&buf[consumed..], b"GET");
        // Every prefix is incomplete.
        let full =
            b"POST /p HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc".to_vec();
        for cut in 0..full.len() {
            let mut part = full[..cut].to_vec();
            assert!(
                matches!(reader.read(&mut part, 1024), Parse::Incomplete { .. }),
                "{cut}"
            );
        }
        let mut all = full.clone();
        let (_, body, keep_alive, _) = complete(&mut reader, &mut all);
        assert_eq!((body.as_slice(), keep_alive), (&b"abc"[..], true));
        let mut http10 = b"POST /p HTTP/1.0\r\nContent-Length: 0\r\n\r\n".to_vec();
        assert!(
            !complete(&mut reader, &mut http10).2,
            "HTTP/1.0 closes by default"
        );
        let mut close = b"POST /p HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec();
        assert!(!complete(&mut reader, &mut close).2);
    }

    #[test]
    fn bounds_and_malformed_framing_are_refused() {
        let mut reader = Reader::default();
        let mut big = b"POST /p HTTP/1.1\r\nContent-Length: 1025\r\n\r\n".to_vec();
        assert_eq!(
            status(&mut reader, &mut big),
            413,
            "refused from the head alone"
        );
        let mut two =
            b"POST /p HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".to_vec();
        assert_eq!(status(&mut reader, &mut two), 400);
        let mut both =
            b"POST /p HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        assert_eq!(status(&mut reader, &mut both), 400);
        let mut gzip = b"POST /p HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec();
        assert_eq!(status(&mut reader, &mut gzip), 501);
        let mut sign = b"POST /p HTTP/1.1\r\nContent-Length: +1\r\n\r\nx".to_vec();
        assert_eq!(status(&mut reader, &mut sign), 400);
        let mut garbage = b"\x16\x03\x01 hello\r\n\r\n".to_vec();
        assert_eq!(status(&mut reader, &mut garbage), 400);
        let mut long = b"POST /p HTTP/1.1\r\nX: ".to_vec();
        long.resize(HEAD_MAX + 10, b'a');
        assert_eq!(status(&mut reader, &mut long), 431);
        let mut many = b"POST /p HTTP/1.1\r\n".to_vec();
        for i in 0..=HEADERS_MAX {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(status(&mut reader, &mut many), 431);
        let mut http2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        assert!(matches!(
            reader.read(&mut http2, 1024),
            Parse::Reject { .. }
        ));
    }

    #[test]
    fn chunked_bodies_decode_in_place_incrementally() {
        let full = b"POST /hook HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
                     5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\nNEXT"
            .to_vec();
        // Fed one byte at a time into a buffer that keeps what came before (as a connection's buffer does).
        let mut reader = Reader::default();
        let mut buf = Vec::new();
        let mut done = None;
        for &byte in &full {
            buf.push(byte);
            match reader.read(&mut buf, 1024) {
                Parse::Incomplete { .. } => {}
                Parse::Complete(request, consumed) => {
                    done = Some((request.body.to_vec(), consumed));
                    break;
                }
                Parse::Reject { status, reason } => panic!("{status} {reason}"),
            }
        }
        let (body, consumed) = done.expect("complete");
        assert_eq!(body, b"hello 0123456789");
        assert_eq!(consumed, full.len() - 4);
        // At once, with the next request behind it.
        let mut all = full.clone();
        let (_, body, _, consumed) = complete(&mut Reader::default(), &mut all);
        assert_eq!(body, b"hello 0123456789");
        assert_eq!(&all[consumed..], b"NEXT");
        // Over the body limit, counted over the chunks.
        let mut over = b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n200\r\n".to_vec();
        over.extend_from_slice(&[b'a'; 512]);
        over.extend_from_slice(b"\r\n201\r\n");
        assert_eq!(status(&mut Reader::default(), &mut over), 413);
        let mut bad = b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec();
        assert_eq!(status(&mut Reader::default(), &mut bad), 400);
        let mut no_crlf =
            b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n".to_vec();
        assert_eq!(status(&mut Reader::default(), &mut no_crlf), 400);
    }

    #[test]
    fn expect_continue_is_answered_once() {
        let mut reader = Reader::default();
        let mut head =
            b"POST /p HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n".to_vec();
        assert!(matches!(
            reader.read(&mut head, 1024),
            Parse::Incomplete {
                send_continue: true
            }
        ));
        assert!(matches!(
            reader.read(&mut head, 1024),
            Parse::Incomplete {
                send_continue: false
            }
        ));
        head.extend_from_slice(b"abc");
        assert_eq!(complete(&mut reader, &mut head).1, b"abc");
    }

    #[test]
    fn request_lines_name_their_path() {
        assert_eq!(
            request_path(b"POST /publish?key=1 HTTP/1.1\r\nHost"),
            Some(Some("/publish"))
        );
        assert_eq!(request_path(b"GET /ws HTTP/1.1\r\n"), Some(Some("/ws")));
        assert_eq!(request_path(b"POST /publ"), None);
        assert_eq!(request_path(b"garbage\r\n"), Some(None));
        assert_eq!(request_path(&vec![b'a'; HEAD_MAX]), Some(None));
    }

    #[test]
    fn query_strings_are_percent_decoded() {
        assert_eq!(
            query_pairs("key=a%20b&signature=Zm9v%3D&seq=1&&flag&x=1+2"),
            [
                ("key".into(), "a b".into()),
                ("signature".into(), "Zm9v=".into()),
                ("seq".into(), "1".into()),
                ("flag".into(), String::new()),
                ("x".into(), "1 2".into()),
            ]
        );
        assert_eq!(query_pairs("bad=%zz%4"), [("bad".into(), "%zz%4".into())]);
    }
}
