//! The core NATS protocol (`nats://host:port`), so that the same generator measures a NATS server's fan-out next
//! to a WAMP router's: the parser of what the server sends (`INFO`, `MSG`, `PING`, `PONG`, `+OK`, `-ERR`), the
//! writers of what the client sends (`CONNECT`, `SUB`, `PUB`, `PING`, `PONG`), the binary load payload, and the
//! session driver that takes the place of the WAMP life cycle for a NATS connection.
//!
//! A session goes through the same states as a WAMP one, so the worker and the coordinator need not know the
//! difference: `Connecting` (TCP connect), `Joining` (waiting for the server's `INFO`), `Setup` (`CONNECT`, the
//! `SUB`s and a `PING` sent: the `PONG` confirms that the server processed them, the NATS equivalent of SUBSCRIBED),
//! `Ready`, and `Closed` (NATS has no goodbye: the connection is closed). The publishing and the accounting are the
//! roles' own ([`crate::roles::Publisher`], [`crate::roles::Subscriber`]); over NATS a closed-loop publisher sends
//! a `PING` after each window of publications and publishes again when its `PONG` arrives.
//!
//! Payload of every `PUB`: `sender_index`, `seq` and `t_ns` as three little-endian `u64` (24 bytes), then the
//! `--size` bytes of padding.

use std::borrow::Cow;
use std::io;

use kreisel_codec::Id;
use serde::Deserialize;

use crate::plan::{Plan, RoleSpec, ScenarioKind};
use crate::roles::{Ctx, Role};
use crate::session::{Env, Session, State};
use crate::transport::{Phase, Writer, MESSAGE_MAX};

pub use kreisel_nats::{check_subject, parse, shown, Msg, Op, CONTROL_LINE_MAX};

/// Bytes of the load header in front of the padding.
pub const LOAD_LEN: usize = 24;

/// What the client sends after the server's `INFO`: no `+OK` for every operation (`verbose`), no deliveries of a
/// connection's own publications (`echo`), no headers (so no `HMSG`).
const CONNECT: &str = concat!(
    "CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false,\"tls_required\":false,",
    "\"name\":\"kreisel-loadtest\",\"lang\":\"rust\",\"version\":\"",
    env!("CARGO_PKG_VERSION"),
    "\",\"protocol\":1,\"headers\":false,\"no_responders\":false}\r\n"
);

/// The load header: sender index, sequence number and send time.
pub fn encode_load(load: [u64; 3]) -> [u8; LOAD_LEN] {
    let mut out = [0; LOAD_LEN];
    for (chunk, v) in out.chunks_exact_mut(8).zip(load) {
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    out
}

/// Reads `(sender_index, seq, t_ns)` back from a payload (`None`: too short to be ours).
pub fn decode_load(payload: &[u8]) -> Option<(u64, u64, u64)> {
    let word = |i: usize| {
        let bytes: [u8; 8] = payload.get(i * 8..i * 8 + 8)?.try_into().ok()?;
        Some(u64::from_le_bytes(bytes))
    };
    Some((word(0)?, word(1)?, word(2)?))
}

/// Queues `PUB <subject> <#bytes>` with the load header and the padding as payload.
pub fn publish(out: &mut Writer, subject: &str, load: [u64; 3], padding: &str) {
    out.push_raw(b"PUB ");
    out.push_raw(subject.as_bytes());
    out.push_raw(b" ");
    push_decimal(out, LOAD_LEN + padding.len());
    out.push_raw(b"\r\n");
    out.push_raw(&encode_load(load));
    out.push_raw(padding.as_bytes());
    out.push_raw(b"\r\n");
}

/// Queues a `PING` (the server answers `PONG` once it processed everything sent before).
pub fn ping(out: &mut Writer) {
    out.push_raw(b"PING\r\n");
}

fn push_decimal(out: &mut Writer, mut n: usize) {
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
    out.push_raw(&digits[i..]);
}

/// The subject a subscriber subscribes to: a WAMP topic as it is, a prefix `a.b.` as `a.b.>`.
pub fn subscription_subject(topic: &str, prefix: bool) -> Result<Cow<'_, str>, String> {
    let subject = if prefix {
        if !topic.ends_with('.') {
            return Err(format!(
                "NATS has no prefix match for `{topic}` (only for prefixes ending in `.`)"
            ));
        }
        Cow::Owned(format!("{topic}>"))
    } else {
        Cow::Borrowed(topic)
    };
    check_subject(&subject, true)?;
    Ok(subject)
}

/// What a plan asks of NATS: only the pub/sub scenarios, on valid subjects.
pub fn check_plan(plan: &Plan) -> Result<(), String> {
    if !matches!(plan.scenario, ScenarioKind::Fanout | ScenarioKind::Fanin) {
        return Err(format!(
            "{}: a NATS server (nats://) runs the fanout and fanin scenarios only",
            plan.scenario.name()
        ));
    }
    for role in &plan.roles {
        match role {
            RoleSpec::Publisher { topic, .. } => check_subject(topic, false)?,
            RoleSpec::Subscriber { topics, prefix } => {
                for topic in topics {
                    subscription_subject(topic, *prefix)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The parts of the server's `INFO` the client looks at.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Info {
    max_payload: Option<u64>,
    auth_required: bool,
    tls_required: bool,
}

/// Handles readiness of a NATS session: finishes the TCP connect, reads and handles operations. Reads at most
/// about `budget` bytes; returns `Ok(true)` when it stopped because of the budget (as
/// [`Session::handle_ready`], which hands NATS sessions over to this).
pub fn handle_ready(
    session: &mut Session,
    env: &mut Env<'_>,
    budget: usize,
) -> Result<bool, String> {
    let Session { conn, wamp, .. } = session;
    let Some(conn) = conn.as_mut() else {
        return Ok(false);
    };
    if conn.phase != Phase::Open {
        if !conn.handle_handshake()? {
            return Ok(false);
        }
        wamp.state = State::Joining;
    }
    let mut read = 0;
    loop {
        while let Some((op, used)) = parse(conn.reader.buffered(), MESSAGE_MAX)
            .map_err(|e| format!("protocol violation: {e}"))?
        {
            handle_op(op, &mut conn.writer, &mut wamp.state, &mut wamp.role, env)?;
            conn.reader.consume(used);
        }
        if read >= budget {
            return Ok(true);
        }
        match conn.reader.read_from(&mut conn.stream) {
            Ok(0) => {
                return Err(format!(
                    "server closed the connection while {}",
                    wamp.state.name()
                ))
            }
            Ok(n) => {
                read += n;
                env.now_ns = env.clock.now_ns();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading from the server failed: {e}")),
        }
    }
}

fn handle_op(
    op: Op<'_>,
    out: &mut Writer,
    state: &mut State,
    role: &mut Role,
    env: &mut Env<'_>,
) -> Result<(), String> {
    // NATS has no request IDs; the roles' WAMP request counter gets a throwaway.
    let mut unused = Id::FIRST;
    match (op, *state) {
        (Op::Ping, _) => out.push_raw(b"PONG\r\n"),
        (Op::Err(text), _) => return Err(format!("server sent -ERR '{}'", shown(text))),
        (Op::Info(json), State::Joining) => {
            start(json, out, role, env.plan)?;
            *state = State::Setup;
        }
        (other, State::Joining) => {
            return Err(format!(
                "protocol violation: expected INFO, got {}",
                op_name(&other)
            ))
        }
        // Later INFOs update the cluster's addresses: nothing for a load generator.
        (Op::Info(_) | Op::Ok, _) => {}
        (Op::Pong, State::Setup) => *state = State::Ready,
        (Op::Pong, _) => {
            if let Role::Publisher(p) = role {
                let n = p.outstanding();
                if n > 0 {
                    p.acknowledged(&mut ctx(out, &mut unused, env), n)?;
                }
            }
        }
        (Op::Msg(msg), _) => match role {
            Role::Subscriber(s) => {
                s.handle_event(&mut ctx(out, &mut unused, env), decode_load(msg.payload))
            }
            other => {
                return Err(format!(
                    "{} got an unexpected MSG on `{}`",
                    other.name(),
                    shown(msg.subject)
                ))
            }
        },
    }
    Ok(())
}

/// The server's `INFO` arrived: send `CONNECT`, the subscriber's `SUB`s and the `PING` that confirms them.
fn start(json: &[u8], out: &mut Writer, role: &Role, plan: &Plan) -> Result<(), String> {
    let info: Info = serde_json::from_slice(json)
        .map_err(|e| format!("unreadable INFO from the server ({e}): {}", shown(json)))?;
    if info.tls_required {
        return Err("server requires TLS; the load generator speaks plain TCP".into());
    }
    if info.auth_required {
        return Err(
            "server requires authentication; the load generator connects anonymously".into(),
        );
    }
    let payload = (LOAD_LEN + plan.padding.len()) as u64;
    match info.max_payload {
        Some(max) if payload > max && matches!(role, Role::Publisher(_)) => {
            return Err(format!(
                "a payload of {payload} bytes ({LOAD_LEN} + --size {}) exceeds the server's max_payload of {max}",
                plan.padding.len()
            ))
        }
        _ => {}
    }
    out.push_raw(CONNECT.as_bytes());
    if let Role::Subscriber(s) = role {
        let (topics, prefix) = s.subscriptions();
        for (sid, topic) in (1usize..).zip(topics) {
            out.push_raw(b"SUB ");
            out.push_raw(subscription_subject(topic, prefix)?.as_bytes());
            out.push_raw(b" ");
            push_decimal(out, sid);
            out.push_raw(b"\r\n");
        }
    }
    ping(out);
    Ok(())
}

fn op_name(op: &Op<'_>) -> &'static str {
    match op {
        Op::Info(_) => "INFO",
        Op::Msg(_) => "MSG",
        Op::Ping => "PING",
        Op::Pong => "PONG",
        Op::Ok => "+OK",
        Op::Err(_) => "-ERR",
    }
}

fn ctx<'a>(out: &'a mut Writer, next_request: &'a mut Id, env: &'a mut Env<'_>) -> Ctx<'a> {
    Ctx {
        out,
        ser: env.plan.ser,
        next_request,
        now_ns: env.now_ns,
        tally: env.tally,
        plan: env.plan,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{Framing, Reader};
    use std::io::Read;

    /// One operation, written out for comparisons.
    fn show(op: &Op<'_>) -> String {
        match op {
            Op::Info(json) => format!("INFO {}", shown(json)),
            Op::Msg(m) => format!(
                "MSG {} {} {:?} {}",
                shown(m.subject),
                shown(m.sid),
                m.reply_to.map(shown),
                shown(m.payload)
            ),
            Op::Ping => "PING".into(),
            Op::Pong => "PONG".into(),
            Op::Ok => "+OK".into(),
            Op::Err(text) => format!("-ERR {}", shown(text)),
        }
    }

    /// Hands out the chunks one `read` at a time.
    struct Chunks<'a>(Vec<&'a [u8]>);

    impl Read for Chunks<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some(first) = self.0.first_mut() else {
                return Err(io::ErrorKind::WouldBlock.into());
            };
            let n = first.len().min(buf.len());
            buf[..n].copy_from_slice(&first[..n]);
            *first = &first[n..];
            if first.is_empty() {
                self.0.remove(0);
            }
            Ok(n)
        }
    }

    /// Everything the chunks parse into, through the connection's own reader, parsed in place.
    fn parse_all(chunks: Vec<&[u8]>) -> Result<Vec<String>, String> {
        let mut reader = Reader::new(Framing::Nats);
        let mut source = Chunks(chunks);
        let mut out = Vec::new();
        loop {
            while let Some((op, used)) = parse(reader.buffered(), 1 << 20)? {
                out.push(show(&op));
                reader.consume(used);
            }
            match reader.read_from(&mut source) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        if !reader.buffered().is_empty() {
            out.push(format!("rest {}", shown(reader.buffered())));
        }
        Ok(out)
    }

    const WIRE: &[u8] = b"INFO {\"server_id\":\"x\",\"max_payload\":1048576}\r\n\
        +OK\r\n\
        MSG loadtest.fanout 1 5\r\nhello\r\n\
        PING\r\n\
        MSG a.b 22 reply.to 2\r\n\r\n\r\n\
        msg\tlow  7\t \t0\r\n\r\n\
        PONG\r\n\
        -ERR 'Unknown Protocol Operation'\r\n\
        MSG big 1 12\r\nline\r\nbreaks\r\n";

    fn expected() -> Vec<String> {
        [
            "INFO {\\\"server_id\\\":\\\"x\\\",\\\"max_payload\\\":1048576}",
            "+OK",
            "MSG loadtest.fanout 1 None hello",
            "PING",
            "MSG a.b 22 Some(\"reply.to\") \\r\\n",
            "MSG low 7 None ",
            "PONG",
            "-ERR Unknown Protocol Operation",
            "MSG big 1 None line\\r\\nbreaks",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn every_operation_in_one_read() {
        assert_eq!(parse_all(vec![WIRE]), Ok(expected()));
    }

    #[test]
    fn split_at_every_byte_boundary() {
        for k in 0..=WIRE.len() {
            assert_eq!(
                parse_all(vec![&WIRE[..k], &WIRE[k..]]),
                Ok(expected()),
                "split at {k}"
            );
        }
        let bytes: Vec<&[u8]> = WIRE.chunks(1).collect();
        assert_eq!(parse_all(bytes), Ok(expected()), "one byte per read");
    }

    #[test]
    fn incomplete_operations_wait() {
        for wire in [
            &b"MSG a 1 5\r\nhel"[..],
            b"MSG a 1 5\r\nhello",
            b"MSG a 1 5\r\nhello\r",
            b"MSG a 1 5",
            b"PIN",
            b"",
        ] {
            assert_eq!(parse(wire, 100), Ok(None), "{}", shown(wire));
        }
        // Operation names are case-insensitive; a bare LF ends a line too.
        let Ok(Some((op, used))) = parse(b"pong\nPING\r\n", 100) else {
            panic!("PONG")
        };
        assert_eq!((op, used), (Op::Pong, 5));
    }

    #[test]
    fn errors() {
        let cases: [(&[u8], &str); 7] = [
            (b"MSG a 1 500\r\n", "exceeds the limit of 100"),
            (b"MSG a 1 2\r\nabcd\r\n", "not followed by CRLF"),
            (b"MSG a 1 x\r\n", "bad byte count"),
            (b"MSG a 1\r\n", "MSG with 2 fields"),
            (b"MSG a 1 b c 2\r\n", "too many fields"),
            (b"HMSG a 1 3 2\r\n", "HMSG with a bad byte count"),
            (b"\x00\xff\r\n", "unknown operation `\\x00\\xff`"),
        ];
        for (wire, expected) in cases {
            match parse(wire, 100) {
                Err(e) => assert!(e.contains(expected), "{}: {e}", shown(wire)),
                Ok(other) => panic!("{}: {other:?}", shown(wire)),
            }
        }
        let long = vec![b'x'; CONTROL_LINE_MAX];
        assert!(parse(&long, 100)
            .err()
            .is_some_and(|e| e.contains("control line longer")));
        assert_eq!(parse(&long[..CONTROL_LINE_MAX - 1], 100), Ok(None));
    }

    #[test]
    fn publications_parse_back() {
        let mut w = Writer::new(Framing::Nats, 1);
        publish(&mut w, "loadtest.fanout", [3, 41, 123_456_789], "xxxx");
        ping(&mut w);
        let mut wire = Vec::new();
        w.flush_to(&mut wire).expect("flush");
        assert!(wire.starts_with(b"PUB loadtest.fanout 28\r\n"));
        assert!(wire.ends_with(b"xxxx\r\nPING\r\n"));
        // The server turns `PUB <subject> <n>` into `MSG <subject> <sid> <n>` with the same payload.
        let delivered = [b"MSG loadtest.fanout 1".as_slice(), &wire[19..]].concat();
        let Ok(Some((Op::Msg(msg), _))) = parse(&delivered, 100) else {
            panic!("MSG")
        };
        assert_eq!(msg.payload.len(), 28);
        assert_eq!(decode_load(msg.payload), Some((3, 41, 123_456_789)));
        assert_eq!(decode_load(&msg.payload[..23]), None);
    }

    #[test]
    fn subjects() {
        assert!(check_subject("loadtest.fanout", false).is_ok());
        assert!(check_subject("sensors.*.temp", true).is_ok());
        for (subject, wildcards) in [
            ("", true),
            ("a..b", true),
            (".a", true),
            ("a.", true),
            ("a b", true),
            ("a.*", false),
            ("a.>", false),
            ("a.>.b", true),
        ] {
            assert!(check_subject(subject, wildcards).is_err(), "{subject}");
        }
        assert_eq!(
            subscription_subject("sensors.", true).as_deref(),
            Ok("sensors.>")
        );
        assert_eq!(subscription_subject("a.b", false).as_deref(), Ok("a.b"));
        assert!(subscription_subject("sensors", true).is_err());
    }

    #[test]
    fn connect_is_one_line_of_json() {
        let json = CONNECT
            .strip_prefix("CONNECT ")
            .and_then(|c| c.strip_suffix("\r\n"))
            .expect("CONNECT line");
        let value: serde_json::Value = serde_json::from_str(json).expect("JSON");
        assert_eq!(value["verbose"], false);
        assert_eq!(value["echo"], false);
        assert_eq!(value["headers"], false);
    }
}
