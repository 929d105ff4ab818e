//! # kreisel-nats
//!
//! The core NATS client protocol, sans-IO: [`parse`] reads what a server sends (`INFO`, `MSG`, `HMSG`, `PING`,
//! `PONG`, `+OK`, `-ERR`) from a buffer without copying, and the writers append what a client sends (`CONNECT`,
//! `PUB`, `HPUB`, `SUB`, `UNSUB`, `PING`, `PONG`) to one. Used by the cluster backplane of `kreisel-io` and by the
//! NATS mode of `kreisel-loadtest`; neither needs more of NATS than this, so no client library is pulled in.
//!
//! Everything a server sends is bounded before it is buffered: a control line by [`CONTROL_LINE_MAX`], a payload
//! by the caller's `payload_max` (the server's own `max_payload`), and malformed input is an error, never a panic.
#![forbid(unsafe_code)]

/// Longest control line accepted from the server (an `INFO` of a large cluster can be long): a bound on the bytes
/// buffered while looking for its end.
pub const CONTROL_LINE_MAX: usize = 64 * 1024;

/// One operation from the server, borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Op<'a> {
    /// `INFO {json}`: the JSON.
    Info(&'a [u8]),
    Msg(Msg<'a>),
    Ping,
    Pong,
    /// `+OK` (only sent in verbose mode).
    Ok,
    /// `-ERR 'text'`: the text without the quotes.
    Err(&'a [u8]),
}

/// `MSG <subject> <sid> [reply-to] <#bytes>` or `HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>`,
/// and its payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Msg<'a> {
    pub subject: &'a [u8],
    pub sid: &'a [u8],
    pub reply_to: Option<&'a [u8]>,
    /// The header block of an `HMSG` (`NATS/1.0 ...` up to and including the empty line).
    pub headers: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

/// Parses the operation at the start of `buf`: `Ok(None)` while it is incomplete, else the operation and the number
/// of bytes it took. Payloads longer than `payload_max` and control lines longer than [`CONTROL_LINE_MAX`] are
/// errors, so a caller that buffers until an operation is complete holds at most about that much.
pub fn parse(buf: &[u8], payload_max: usize) -> Result<Option<(Op<'_>, usize)>, String> {
    let window = &buf[..buf.len().min(CONTROL_LINE_MAX)];
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() >= CONTROL_LINE_MAX {
            return Err(format!(
                "control line longer than {CONTROL_LINE_MAX} bytes: `{}...`",
                shown(&buf[..40])
            ));
        }
        return Ok(None);
    };
    // Lines end with CRLF; a bare LF is accepted too.
    let line = &buf[..newline];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let after = newline + 1;
    let (name, rest) = match line.iter().position(|&b| is_blank(b)) {
        Some(i) => (&line[..i], trim(&line[i..])),
        None => (line, &line[line.len()..]),
    };
    let op = if name.eq_ignore_ascii_case(b"MSG") {
        return parse_msg(buf, rest, after, payload_max, false);
    } else if name.eq_ignore_ascii_case(b"HMSG") {
        return parse_msg(buf, rest, after, payload_max, true);
    } else if name.eq_ignore_ascii_case(b"PING") {
        Op::Ping
    } else if name.eq_ignore_ascii_case(b"PONG") {
        Op::Pong
    } else if name.eq_ignore_ascii_case(b"+OK") {
        Op::Ok
    } else if name.eq_ignore_ascii_case(b"-ERR") {
        let text = rest
            .strip_prefix(b"'")
            .and_then(|t| t.strip_suffix(b"'"))
            .unwrap_or(rest);
        Op::Err(text)
    } else if name.eq_ignore_ascii_case(b"INFO") {
        Op::Info(rest)
    } else {
        return Err(format!(
            "unknown operation `{}`",
            shown(&line[..line.len().min(40)])
        ));
    };
    Ok(Some((op, after)))
}

/// The rest of a `MSG` (or `HMSG`) whose control line ends at `after`.
fn parse_msg<'a>(
    buf: &'a [u8],
    args: &'a [u8],
    after: usize,
    payload_max: usize,
    headers: bool,
) -> Result<Option<(Op<'a>, usize)>, String> {
    let name = if headers { "HMSG" } else { "MSG" };
    let mut fields = [&args[..0]; 5];
    let most = if headers { 5 } else { 4 };
    let mut n = 0;
    for field in args.split(|&b| is_blank(b)).filter(|f| !f.is_empty()) {
        if n == most {
            return Err(format!(
                "{name} with too many fields: `{name} {}`",
                shown(args)
            ));
        }
        fields[n] = field;
        n += 1;
    }
    let counts = usize::from(headers) + 1;
    let (subject, sid, reply_to) = match n.checked_sub(counts) {
        Some(2) => (fields[0], fields[1], None),
        Some(3) => (fields[0], fields[1], Some(fields[2])),
        _ => return Err(format!("{name} with {n} fields: `{name} {}`", shown(args))),
    };
    let bad_count = || format!("{name} with a bad byte count: `{name} {}`", shown(args));
    let len = parse_len(fields[n - 1]).ok_or_else(bad_count)?;
    let header_len = if headers {
        let header_len = parse_len(fields[n - 2]).ok_or_else(bad_count)?;
        if header_len > len {
            return Err(bad_count());
        }
        header_len
    } else {
        0
    };
    if len > payload_max + header_len {
        return Err(format!(
            "{name} of {len} bytes exceeds the limit of {payload_max}"
        ));
    }
    let end = after + len;
    if buf.len() < end + 2 {
        return Ok(None);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(format!(
            "{name} payload of {len} bytes is not followed by CRLF"
        ));
    }
    let msg = Msg {
        subject,
        sid,
        reply_to,
        headers: headers.then(|| &buf[after..after + header_len]),
        payload: &buf[after + header_len..end],
    };
    Ok(Some((Op::Msg(msg), end + 2)))
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_blank(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_blank(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// A decimal byte count (at most 19 digits, so it cannot overflow).
fn parse_len(field: &[u8]) -> Option<usize> {
    if field.is_empty() || field.len() > 19 {
        return None;
    }
    field.iter().try_fold(0usize, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(usize::from(b - b'0')))
            .flatten()
    })
}

/// Bytes from the server, printable in a message.
pub fn shown(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// The status code of a header block (`NATS/1.0 503` → 503; none for a plain `NATS/1.0`).
pub fn status(headers: &[u8]) -> Option<u16> {
    let first = headers.split(|&b| b == b'\n').next()?;
    let rest = first.strip_prefix(b"NATS/1.0")?;
    let code = trim(rest.strip_suffix(b"\r").unwrap_or(rest));
    let code = code.get(..3)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// The value of header `name` (case-insensitive) in a header block.
pub fn header<'a>(headers: &'a [u8], name: &str) -> Option<&'a [u8]> {
    headers.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let (key, value) = line.split_at(colon);
        key.eq_ignore_ascii_case(name.as_bytes())
            .then(|| trim(&value[1..]))
    })
}

/// Checks a subject: non-empty tokens separated by `.`, no white space or control characters; wildcard tokens
/// (`*`, and `>` as the last token) only where `wildcards` are allowed (subscriptions).
pub fn check_subject(subject: &str, wildcards: bool) -> Result<(), String> {
    let bad = |why: &str| Err(format!("`{subject}` is not a valid NATS subject: {why}"));
    if subject.is_empty() {
        return bad("it is empty");
    }
    if subject.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return bad("it contains white space or control characters");
    }
    let tokens = subject.split('.').count();
    for (i, token) in subject.split('.').enumerate() {
        match token {
            "" => return bad("it has an empty token"),
            "*" | ">" if !wildcards => return bad("publications take no wildcards"),
            ">" if i + 1 != tokens => return bad("`>` must be the last token"),
            _ => {}
        }
    }
    Ok(())
}

fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// `PUB <subject> [reply-to] <#bytes>` and the payload (the concatenation of `payload`).
pub fn publish(out: &mut Vec<u8>, subject: &str, reply_to: Option<&str>, payload: &[&[u8]]) {
    let len: usize = payload.iter().map(|p| p.len()).sum();
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(subject.as_bytes());
    if let Some(reply_to) = reply_to {
        out.push(b' ');
        out.extend_from_slice(reply_to.as_bytes());
    }
    out.push(b' ');
    push_decimal(out, len);
    out.extend_from_slice(b"\r\n");
    for part in payload {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
}

/// `HPUB <subject> [reply-to] <#header bytes> <#total bytes>`, the headers (`name: value` pairs, after
/// `NATS/1.0`) and the payload.
pub fn publish_with_headers(
    out: &mut Vec<u8>,
    subject: &str,
    reply_to: Option<&str>,
    headers: &[(&str, &str)],
    payload: &[u8],
) {
    let mut block = Vec::with_capacity(64);
    block.extend_from_slice(b"NATS/1.0\r\n");
    for (name, value) in headers {
        block.extend_from_slice(name.as_bytes());
        block.extend_from_slice(b": ");
        block.extend_from_slice(value.as_bytes());
        block.extend_from_slice(b"\r\n");
    }
    block.extend_from_slice(b"\r\n");
    out.extend_from_slice(b"HPUB ");
    out.extend_from_slice(subject.as_bytes());
    if let Some(reply_to) = reply_to {
        out.push(b' ');
        out.extend_from_slice(reply_to.as_bytes());
    }
    out.push(b' ');
    push_decimal(out, block.len());
    out.push(b' ');
    push_decimal(out, block.len() + payload.len());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&block);
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// `SUB <subject> <sid>`.
pub fn subscribe(out: &mut Vec<u8>, subject: &str, sid: u64) {
    out.extend_from_slice(b"SUB ");
    out.extend_from_slice(subject.as_bytes());
    out.push(b' ');
    push_decimal(out, sid as usize);
    out.extend_from_slice(b"\r\n");
}

pub fn ping(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PING\r\n");
}

pub fn pong(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PONG\r\n");
}

/// A JSON string literal (for `CONNECT`).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_parse_whole_or_not_at_all() {
        let buf = b"MSG a.b 1 _INBOX.x 3\r\nabc\r\nPING\r\n";
        let (op, used) = parse(buf, 1024).unwrap().unwrap();
        assert_eq!(
            op,
            Op::Msg(Msg {
                subject: b"a.b",
                sid: b"1",
                reply_to: Some(b"_INBOX.x"),
                headers: None,
                payload: b"abc",
            })
        );
        assert_eq!(parse(&buf[used..], 1024).unwrap().unwrap().0, Op::Ping);
        for cut in 0..used {
            assert_eq!(parse(&buf[..cut], 1024).unwrap(), None, "{cut}");
        }
        assert!(parse(b"MSG a 1 5000\r\n", 1024).is_err(), "over the limit");
        assert!(
            parse(b"MSG a 1 3\r\nabcXY", 1024).is_err(),
            "no CRLF after the payload"
        );
        assert!(parse(b"BOGUS\r\n", 1024).is_err());
    }

    #[test]
    fn headers_are_split_from_the_payload() {
        let buf = b"HMSG _INBOX.a 2 26 28\r\nNATS/1.0 503\r\nX-A: b c\r\n\r\nhi\r\n";
        let (op, used) = parse(buf, 1024).unwrap().unwrap();
        assert_eq!(used, buf.len());
        let Op::Msg(msg) = op else {
            panic!("a message");
        };
        assert_eq!(msg.payload, b"hi");
        let headers = msg.headers.unwrap();
        assert_eq!(status(headers), Some(503));
        assert_eq!(header(headers, "x-a"), Some(&b"b c"[..]));
        assert_eq!(status(b"NATS/1.0\r\n\r\n"), None);
        assert!(
            parse(b"HMSG a 1 9 3\r\n", 1024).is_err(),
            "headers longer than the total"
        );
    }

    #[test]
    fn writers_write_the_protocol() {
        let mut out = Vec::new();
        publish(&mut out, "a.b", Some("r"), &[b"he", b"llo"]);
        subscribe(&mut out, "x.>", 7);
        publish_with_headers(&mut out, "s", None, &[("K", "v")], b"p");
        assert_eq!(
            out,
            b"PUB a.b r 5\r\nhello\r\nSUB x.> 7\r\nHPUB s 18 19\r\nNATS/1.0\r\nK: v\r\n\r\np\r\n"
        );
        assert_eq!(json_string("a\"b\\\n"), r#""a\"b\\\u000a""#);
        assert!(check_subject("a.*", true).is_ok());
        assert!(check_subject("a..b", true).is_err());
    }
}
