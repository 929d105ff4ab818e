//! MQTT 3.1.1 (`mqtt://host:port`), so that the same generator measures an MQTT broker (mosquitto) and kreisel's
//! MQTT listener side by side: the packets a client sends (CONNECT, SUBSCRIBE, PUBLISH, PUBACK, PINGREQ,
//! DISCONNECT), the parser of what a server sends (CONNACK, SUBACK, PUBLISH, PUBACK, PINGRESP), and the session
//! driver that takes the place of the WAMP life cycle for an MQTT connection. Written here from the MQTT 3.1.1
//! specification, independently of kreisel's own MQTT code (the generator knows nothing of the router under test).
//!
//! A session goes through the WAMP states: `Connecting` (TCP connect), `Joining` (CONNECT sent, waiting for
//! CONNACK), `Setup` (a subscriber's SUBSCRIBE sent, waiting for SUBACK), `Ready`, `Closed` (DISCONNECT sent, the
//! connection closed). Topics are the WAMP topics with `.` as `/` (`sensors.3.temp` is `sensors/3/temp`; the
//! prefix `sensors.` is the filter `sensors/#`).
//!
//! QoS (`--qos`): with 1, every publication is acknowledged by its PUBACK, so the closed loop keeps `--window`
//! publications in flight as over WAMP, and subscribers subscribe at QoS 1 and acknowledge every delivery. With 0
//! nothing is acknowledged: a closed-loop publisher sends a window and a PINGREQ, and the next window when the
//! PINGRESP comes (the server handles a connection's packets in order), as the NATS mode does with PING/PONG.
//!
//! Payload of every PUBLISH: the load header of [`crate::nats`] (sender, sequence number, send time: 24 bytes),
//! then the `--size` bytes of padding.

use std::io;

use kreisel_codec::Id;

use crate::nats::{decode_load, encode_load, LOAD_LEN};
use crate::plan::{Plan, RoleSpec, ScenarioKind};
use crate::roles::{Ctx, Role};
use crate::session::{Env, Session, State};
use crate::transport::{Phase, Writer, MESSAGE_MAX};

/// The MQTT topic name or filter of a WAMP topic: `a.b.c` -> `a/b/c`, a prefix `a.b.` -> `a/b/#`.
pub fn topic(uri: &str, prefix: bool) -> String {
    match (prefix, uri.strip_suffix('.')) {
        (true, Some(parent)) => format!("{}/#", parent.replace('.', "/")),
        _ => uri.replace('.', "/"),
    }
}

/// Appends a variable byte integer (the remaining length).
fn push_length(out: &mut Writer, mut n: usize) {
    let mut bytes = [0u8; 4];
    let mut len = 0;
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        bytes[len] = byte;
        len += 1;
        if n == 0 || len == 4 {
            break;
        }
    }
    out.push_raw(&bytes[..len]);
}

fn push_string(out: &mut Writer, s: &[u8]) {
    out.push_raw(&(s.len() as u16).to_be_bytes());
    out.push_raw(s);
}

/// CONNECT: MQTT 3.1.1, clean session, no keep-alive, an empty client id (the server assigns one).
pub fn connect(out: &mut Writer) {
    out.push_raw(&[0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 0, 0, 0]);
}

/// SUBSCRIBE (packet id 1) to `filters` at `qos`.
pub fn subscribe(out: &mut Writer, filters: &[String], qos: u8) {
    let len = 2 + filters.iter().map(|f| 2 + f.len() + 1).sum::<usize>();
    out.push_raw(&[0x82]);
    push_length(out, len);
    out.push_raw(&[0, 1]);
    for filter in filters {
        push_string(out, filter.as_bytes());
        out.push_raw(&[qos]);
    }
}

/// PUBLISH of the load header and the padding; `packet_id` for QoS 1.
pub fn publish(
    out: &mut Writer,
    topic: &str,
    packet_id: Option<u16>,
    load: [u64; 3],
    padding: &str,
) {
    let id_len = if packet_id.is_some() { 2 } else { 0 };
    let len = 2 + topic.len() + id_len + LOAD_LEN + padding.len();
    out.push_raw(&[if packet_id.is_some() { 0x32 } else { 0x30 }]);
    push_length(out, len);
    push_string(out, topic.as_bytes());
    if let Some(id) = packet_id {
        out.push_raw(&id.to_be_bytes());
    }
    out.push_raw(&encode_load(load));
    out.push_raw(padding.as_bytes());
}

/// PINGREQ: its PINGRESP says the server handled everything sent before it.
pub fn ping(out: &mut Writer) {
    out.push_raw(&[0xC0, 0]);
}

pub fn disconnect(out: &mut Writer) {
    out.push_raw(&[0xE0, 0]);
}

/// One packet from the server, borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    ConnAck {
        code: u8,
    },
    SubAck {
        codes: &'a [u8],
    },
    Publish {
        qos: u8,
        packet_id: u16,
        topic: &'a [u8],
        payload: &'a [u8],
    },
    PubAck,
    PingResp,
    Other(u8),
}

/// Parses the packet at the start of `buf`: `Ok(None)` while it is incomplete, else the packet and the bytes it
/// took. Packets over `max` bytes are an error, so the buffer stays bounded.
pub fn parse(buf: &[u8], max: usize) -> Result<Option<(Packet<'_>, usize)>, String> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut len = 0usize;
    let mut header = 1;
    loop {
        let Some(&byte) = buf.get(header) else {
            return Ok(None);
        };
        len |= usize::from(byte & 0x7F) << (7 * (header - 1));
        header += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if header == 5 {
            return Err("remaining length longer than 4 bytes".into());
        }
    }
    if header + len > max {
        return Err(format!("packet of {} bytes exceeds {max}", header + len));
    }
    let Some(body) = buf.get(header..header + len) else {
        return Ok(None);
    };
    let short = || format!("packet type {} too short", first >> 4);
    let packet = match first >> 4 {
        2 => Packet::ConnAck {
            code: *body.get(1).ok_or_else(short)?,
        },
        9 => Packet::SubAck {
            codes: body.get(2..).ok_or_else(short)?,
        },
        3 => {
            let qos = (first >> 1) & 3;
            let topic_len = usize::from(u16::from_be_bytes([
                *body.first().ok_or_else(short)?,
                *body.get(1).ok_or_else(short)?,
            ]));
            let topic = body.get(2..2 + topic_len).ok_or_else(short)?;
            let mut at = 2 + topic_len;
            let mut packet_id = 0;
            if qos > 0 {
                let id = body.get(at..at + 2).ok_or_else(short)?;
                packet_id = u16::from_be_bytes([id[0], id[1]]);
                at += 2;
            }
            Packet::Publish {
                qos,
                packet_id,
                topic,
                payload: &body[at..],
            }
        }
        4 => Packet::PubAck,
        13 => Packet::PingResp,
        other => Packet::Other(other),
    };
    Ok(Some((packet, header + len)))
}

/// What a plan asks of MQTT: fanout, fanin and connect.
pub fn check_plan(plan: &Plan) -> Result<(), String> {
    if !matches!(
        plan.scenario,
        ScenarioKind::Fanout | ScenarioKind::Fanin | ScenarioKind::Connect
    ) {
        return Err(format!(
            "{}: an MQTT broker (mqtt://) runs the fanout, fanin and connect scenarios only",
            plan.scenario.name()
        ));
    }
    for role in &plan.roles {
        if let RoleSpec::Subscriber { topics, prefix } = role {
            if *prefix && topics.iter().any(|t| !t.ends_with('.')) {
                return Err("MQTT has no prefix match but for whole levels (`a.b.`)".into());
            }
        }
    }
    Ok(())
}

/// Handles readiness of an MQTT session (as [`crate::nats::handle_ready`] for NATS).
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
        connect(&mut conn.writer);
        wamp.state = State::Joining;
    }
    let mut read = 0;
    loop {
        while let Some((packet, used)) = parse(conn.reader.buffered(), MESSAGE_MAX)
            .map_err(|e| format!("protocol violation: {e}"))?
        {
            handle_packet(
                packet,
                &mut conn.writer,
                &mut wamp.state,
                &mut wamp.role,
                env,
            )?;
            conn.reader.consume(used);
        }
        if read >= budget {
            return Ok(true);
        }
        match conn.reader.read_from(&mut conn.stream) {
            Ok(0) => {
                if wamp.state == State::Leaving || wamp.state == State::Closed {
                    wamp.state = State::Closed;
                    return Ok(false);
                }
                return Err(format!(
                    "broker closed the connection while {}",
                    wamp.state.name()
                ));
            }
            Ok(n) => {
                read += n;
                env.now_ns = env.clock.now_ns();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading from the broker failed: {e}")),
        }
    }
}

fn handle_packet(
    packet: Packet<'_>,
    out: &mut Writer,
    state: &mut State,
    role: &mut Role,
    env: &mut Env<'_>,
) -> Result<(), String> {
    let mut unused = Id::FIRST;
    match (packet, *state) {
        (Packet::ConnAck { code: 0 }, State::Joining) => match role {
            Role::Subscriber(s) => {
                let (topics, prefix) = s.subscriptions();
                let filters: Vec<String> = topics.iter().map(|t| topic(t, prefix)).collect();
                subscribe(out, &filters, env.plan.qos);
                *state = State::Setup;
            }
            _ => *state = State::Ready,
        },
        (Packet::ConnAck { code }, _) => {
            return Err(format!(
                "broker refused the connection: CONNACK return code {code}"
            ))
        }
        (Packet::SubAck { codes }, State::Setup) => {
            if let Some(code) = codes.iter().find(|&&c| c >= 0x80) {
                return Err(format!(
                    "broker refused the subscription: SUBACK {code:#04x}"
                ));
            }
            *state = State::Ready;
        }
        (
            Packet::Publish {
                qos,
                packet_id,
                topic,
                payload,
            },
            _,
        ) => {
            if qos == 1 {
                out.push_raw(&[0x40, 2]);
                out.push_raw(&packet_id.to_be_bytes());
            }
            match role {
                Role::Subscriber(s) => {
                    s.handle_event(&mut ctx(out, &mut unused, env), decode_load(payload))
                }
                other => {
                    return Err(format!(
                        "{} got an unexpected PUBLISH on `{}`",
                        other.name(),
                        String::from_utf8_lossy(topic)
                    ))
                }
            }
        }
        (Packet::PubAck, _) => {
            let closed = matches!(env.plan.mode, crate::plan::Mode::Closed { .. });
            if let Role::Publisher(p) = role {
                if closed && p.outstanding() > 0 {
                    p.acknowledged(&mut ctx(out, &mut unused, env), 1)?;
                }
            }
        }
        (Packet::PingResp, _) => {
            if let Role::Publisher(p) = role {
                let n = p.outstanding();
                if n > 0 && env.plan.qos == 0 {
                    p.acknowledged(&mut ctx(out, &mut unused, env), n)?;
                }
            }
        }
        (other, _) => {
            return Err(format!(
                "unexpected packet from the broker while {}: {other:?}",
                state.name()
            ))
        }
    }
    Ok(())
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
    use crate::transport::Framing;

    fn wire(write: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::new(Framing::Nats, 1);
        write(&mut w);
        let mut out = Vec::new();
        w.flush_to(&mut out).expect("flush");
        out
    }

    #[test]
    fn topics_are_levels() {
        assert_eq!(topic("sensors.3.temp", false), "sensors/3/temp");
        assert_eq!(topic("sensors.", true), "sensors/#");
        assert_eq!(topic("loadtest.fanout", true), "loadtest/fanout");
    }

    #[test]
    fn packets_are_what_mqtt_3_1_1_says() {
        assert_eq!(
            wire(connect),
            [0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 0, 0, 0]
        );
        assert_eq!(
            wire(|w| subscribe(w, &["a/#".into()], 1)),
            [0x82, 8, 0, 1, 0, 3, b'a', b'/', b'#', 1]
        );
        let published = wire(|w| publish(w, "t", Some(7), [1, 2, 3], "xy"));
        assert_eq!(&published[..7], &[0x32, 31, 0, 1, b't', 0, 7]);
        // What a server would forward: the same PUBLISH parses back with its load.
        let Ok(Some((
            Packet::Publish {
                qos,
                packet_id,
                topic,
                payload,
            },
            used,
        ))) = parse(&published, 1 << 20)
        else {
            panic!("PUBLISH")
        };
        assert_eq!(
            (qos, packet_id, topic, used),
            (1, 7, &b"t"[..], published.len())
        );
        assert_eq!(decode_load(payload), Some((1, 2, 3)));
        assert_eq!(&payload[LOAD_LEN..], b"xy");
        // A remaining length of two bytes.
        let long = wire(|w| publish(w, "t", None, [0, 0, 0], &"p".repeat(200)));
        assert_eq!(&long[..3], &[0x30, 0xE3, 0x01]);
        assert_eq!(parse(&long[..100], 1 << 20), Ok(None));
        assert!(parse(&long, 100).is_err());
    }

    #[test]
    fn server_packets_parse() {
        assert_eq!(
            parse(&[0x20, 2, 0, 0], 64),
            Ok(Some((Packet::ConnAck { code: 0 }, 4)))
        );
        assert_eq!(
            parse(&[0x90, 3, 0, 1, 0x80], 64),
            Ok(Some((Packet::SubAck { codes: &[0x80] }, 5)))
        );
        assert_eq!(parse(&[0x40, 2, 0, 1], 64), Ok(Some((Packet::PubAck, 4))));
        assert_eq!(parse(&[0xD0, 0], 64), Ok(Some((Packet::PingResp, 2))));
        assert_eq!(parse(&[0x20, 2, 0], 64), Ok(None));
        assert!(parse(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 1], 1 << 30).is_err());
    }
}
