//! The metrics endpoint: the engine's and the I/O layer's counters in the Prometheus text exposition format
//! (version 0.0.4), served on a listener's `metrics` path (see the README's configuration reference). Rendered per
//! scrape, off the hot path.

use std::fmt::Write as _;

use kreisel_engine::{RealmGauges, Stats};

use crate::server::IoStats;

/// Gauges read when the scrape is answered.
#[derive(Clone, Debug, Default)]
pub struct Gauges<'r> {
    /// Open transport connections.
    pub connections: usize,
    /// Seconds since the router started.
    pub uptime_seconds: f64,
    /// Calls waiting for their callee's answer.
    pub calls_pending: usize,
    /// Per realm: sessions, subscriptions, registrations, retained events.
    pub realms: Vec<RealmGauges<'r>>,
    /// What all outboxes hold (bounded by `limits.memory_max`).
    pub outbox_bytes: usize,
    /// What all incomplete frames hold (bounded by `limits.partial_frames_max`).
    pub partial_frame_bytes: usize,
    /// Per shard (empty: not shown).
    pub shards: Vec<ShardGauges>,
    /// 1 during a lame-duck drain.
    pub draining: bool,
    /// Log lines dropped because stderr did not keep up ([`crate::log::dropped`]).
    pub log_lines_dropped: u64,
}

/// One shard's share.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShardGauges {
    pub shard: u16,
    pub connections: usize,
    pub sessions: u64,
    pub outbox_bytes: usize,
    /// Messages to other shards waiting for room in their mailboxes.
    pub link_backlog: usize,
    /// Messages from other shards handled.
    pub peer_messages: u64,
}

/// The metrics page.
pub fn render(engine: &Stats, io: &IoStats, gauges: &Gauges) -> String {
    let mut page = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        // Writing into a String cannot fail.
        let _ = write!(
            page,
            "# HELP kreisel_{name} {help}\n# TYPE kreisel_{name} {kind}\nkreisel_{name} {value}\n"
        );
    };
    let (gauge, counter) = ("gauge", "counter");
    let count = |n: u64| n as f64;
    metric(
        "connections",
        gauge,
        "Open transport connections.",
        gauges.connections as f64,
    );
    metric(
        "sessions",
        gauge,
        "WAMP sessions joined to a realm.",
        count(engine.sessions_active),
    );
    metric(
        "uptime_seconds",
        gauge,
        "Seconds since the router started.",
        gauges.uptime_seconds,
    );
    for (name, help, value) in [
        ("connections_accepted_total", "Transport connections accepted.", io.accepted),
        (
            "connections_refused_total",
            "Connections refused for limits.connections_max.",
            io.refused_over_limit,
        ),
        ("sessions_joined_total", "Sessions that joined a realm (WELCOME sent).", engine.sessions_joined),
        ("aborts_total", "ABORT messages sent.", engine.aborts_sent),
        (
            "protocol_violations_total",
            "Sessions ended for a protocol violation (malformed or unexpected messages).",
            engine.protocol_violations,
        ),
        ("publications_total", "PUBLISH messages routed.", engine.publications),
        ("events_total", "EVENT messages sent.", engine.events_sent),
        ("calls_total", "CALL messages routed.", engine.calls),
        ("errors_total", "ERROR messages sent.", engine.errors_sent),
        (
            "limits_hit_total",
            "Requests and joins refused for a per-realm or per-session limit.",
            engine.limits_hit,
        ),
        (
            "retained_evicted_total",
            "Retained events dropped for a realm's retention limits.",
            engine.retained_evicted,
        ),
        ("auth_failures_total", "Failed authentication attempts.", engine.auth_failures),
        ("not_authorized_total", "Requests refused by authorization.", engine.not_authorized),
        (
            "slow_consumers_total",
            "Connections closed because their outbox exceeded limits.outbox_max.",
            io.slow_consumers,
        ),
        (
            "events_dropped_total",
            "EVENTs dropped for a full outbox (slow_consumer = \"drop\").",
            io.events_dropped,
        ),
        (
            "producer_stalls_total",
            "Times a producer's input was paused because a recipient's outbox passed 3/4 of its limit.",
            io.producer_stalls,
        ),
        (
            "handshake_timeouts_total",
            "Connections closed for no transport handshake and HELLO within limits.handshake_timeout_ms.",
            io.handshake_timeouts,
        ),
        (
            "idle_timeouts_total",
            "Connections closed for silence beyond limits.idle_timeout_ms.",
            io.idle_timeouts,
        ),
        ("transport_errors_total", "Connections ended by a socket error.", io.transport_errors),
        (
            "origins_refused_total",
            "WebSocket handshakes refused for an Origin not in the listener's allowed_origins.",
            io.origins_refused,
        ),
        (
            "evicted_unjoined_total",
            "Connections without a joined session closed, oldest first, to make room at limits.connections_max.",
            io.evicted_unjoined,
        ),
        (
            "refused_per_ip_total",
            "Connections closed at once for limits.connections_per_ip_max.",
            io.refused_per_ip,
        ),
        (
            "frame_timeouts_total",
            "Connections closed for a frame not complete within limits.frame_timeout_ms.",
            io.frame_timeouts,
        ),
        (
            "partial_frames_refused_total",
            "Connections closed because incomplete frames would pass limits.partial_frames_max.",
            io.partial_frames_refused,
        ),
        (
            "memory_cuts_total",
            "Connections with the largest outboxes closed because all outboxes reached limits.memory_max.",
            io.memory_cuts,
        ),
        (
            "peer_messages_total",
            "Messages between shards handled (subscriptions, publications, calls and their answers crossing shards).",
            engine.peer_messages,
        ),
        (
            "peer_messages_dropped_total",
            "Messages between shards about something already gone (a session that just left, a call that just ended).",
            engine.peer_messages_dropped,
        ),
        (
            "mailbox_full_total",
            "Messages to another shard that found its mailbox full and waited in the sender's backlog.",
            io.mailbox_full,
        ),
        (
            "link_stalls_total",
            "Times a shard stopped reading a connection because messages to other shards were waiting.",
            io.link_stalls,
        ),
        (
            "http_stray_requests_total",
            "HTTP requests that were neither a WebSocket upgrade nor metrics or health (answered 404, 405 or 426).",
            io.http_stray,
        ),
        (
            "websocket_deflate_total",
            "WebSocket connections that negotiated permessage-deflate.",
            io.deflate_negotiated,
        ),
        (
            "log_lines_dropped_total",
            "Log lines dropped because stderr did not keep up (the logging queue was full).",
            gauges.log_lines_dropped,
        ),
    ] {
        metric(name, counter, help, count(value));
    }
    metric(
        "draining",
        gauge,
        "1 during a lame-duck drain (SIGUSR2), else 0.",
        f64::from(u8::from(gauges.draining)),
    );
    metric(
        "calls_pending",
        gauge,
        "Calls waiting for their callee's answer.",
        gauges.calls_pending as f64,
    );
    metric(
        "outbox_bytes",
        gauge,
        "Bytes all outboxes hold (queued frames, each once, plus queue entries).",
        gauges.outbox_bytes as f64,
    );
    metric(
        "partial_frame_bytes",
        gauge,
        "Bytes held for incomplete frames and fragmented messages.",
        gauges.partial_frame_bytes as f64,
    );
    type Field = fn(&RealmGauges<'_>) -> usize;
    let per_realm: [(&str, &str, Field); 4] = [
        ("realm_sessions", "Sessions joined to the realm.", |r| {
            r.sessions
        }),
        (
            "realm_subscriptions",
            "Subscriptions in the realm (one per topic and match policy).",
            |r| r.subscriptions,
        ),
        (
            "realm_registrations",
            "Registrations in the realm (one per procedure and match policy).",
            |r| r.registrations,
        ),
        (
            "realm_retained_events",
            "Retained events in the realm.",
            |r| r.retained,
        ),
    ];
    for (name, help, field) in per_realm {
        let _ = write!(
            page,
            "# HELP kreisel_{name} {help}\n# TYPE kreisel_{name} gauge\n"
        );
        for realm in &gauges.realms {
            let _ = writeln!(
                page,
                "kreisel_{name}{{realm=\"{}\"}} {}",
                label_value(realm.name),
                field(realm)
            );
        }
    }
    type ShardField = fn(&ShardGauges) -> f64;
    let per_shard: [(&str, &str, ShardField); 5] = [
        (
            "shard_connections",
            "Open connections served by the shard.",
            |s| s.connections as f64,
        ),
        ("shard_sessions", "Sessions joined on the shard.", |s| {
            s.sessions as f64
        }),
        (
            "shard_outbox_bytes",
            "Bytes the shard's outboxes hold.",
            |s| s.outbox_bytes as f64,
        ),
        (
            "shard_link_backlog",
            "Messages from the shard to other shards waiting for room in their mailboxes.",
            |s| s.link_backlog as f64,
        ),
        (
            "shard_peer_messages_total",
            "Messages from other shards the shard handled.",
            |s| s.peer_messages as f64,
        ),
    ];
    if !gauges.shards.is_empty() {
        for (name, help, field) in per_shard {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = write!(
                page,
                "# HELP kreisel_{name} {help}\n# TYPE kreisel_{name} {kind}\n"
            );
            for shard in &gauges.shards {
                let _ = writeln!(
                    page,
                    "kreisel_{name}{{shard=\"{}\"}} {}",
                    shard.shard,
                    field(shard)
                );
            }
        }
    }
    page
}

/// A label value as the text format writes it: `\`, `"` and line feeds escaped.
fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The HTTP response carrying `page`.
pub fn response(page: &str) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        page.len()
    )
    .into_bytes();
    response.extend_from_slice(page.as_bytes());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_has_help_and_type_and_the_values_are_the_counters() {
        let engine = Stats {
            sessions_joined: 7,
            sessions_active: 3,
            events_sent: 12345678901,
            ..Stats::default()
        };
        let io = IoStats {
            accepted: 9,
            slow_consumers: 2,
            http_stray: 3,
            ..IoStats::default()
        };
        let gauges = Gauges {
            connections: 4,
            uptime_seconds: 1.5,
            calls_pending: 2,
            outbox_bytes: 4096,
            partial_frame_bytes: 12,
            draining: true,
            log_lines_dropped: 5,
            shards: vec![
                ShardGauges {
                    shard: 0,
                    connections: 3,
                    sessions: 2,
                    ..ShardGauges::default()
                },
                ShardGauges {
                    shard: 1,
                    connections: 1,
                    sessions: 1,
                    peer_messages: 17,
                    ..ShardGauges::default()
                },
            ],
            realms: vec![
                RealmGauges {
                    name: "realm1",
                    sessions: 3,
                    subscriptions: 5,
                    registrations: 1,
                    retained: 0,
                },
                RealmGauges {
                    name: "odd\"name\\",
                    sessions: 0,
                    subscriptions: 0,
                    registrations: 0,
                    retained: 7,
                },
            ],
        };
        let page = render(&engine, &io, &gauges);
        let samples: Vec<(&str, &str)> = page
            .lines()
            .filter(|line| !line.starts_with('#'))
            .map(|line| line.split_once(' ').expect("name value"))
            .collect();
        for (name, value) in [
            ("kreisel_sessions_joined_total", "7"),
            ("kreisel_sessions", "3"),
            ("kreisel_events_total", "12345678901"),
            ("kreisel_connections_accepted_total", "9"),
            ("kreisel_slow_consumers_total", "2"),
            ("kreisel_connections", "4"),
            ("kreisel_uptime_seconds", "1.5"),
            ("kreisel_calls_total", "0"),
            ("kreisel_calls_pending", "2"),
            ("kreisel_draining", "1"),
            ("kreisel_log_lines_dropped_total", "5"),
            ("kreisel_http_stray_requests_total", "3"),
            ("kreisel_realm_sessions{realm=\"realm1\"}", "3"),
            ("kreisel_shard_connections{shard=\"0\"}", "3"),
            ("kreisel_shard_sessions{shard=\"1\"}", "1"),
            ("kreisel_shard_peer_messages_total{shard=\"1\"}", "17"),
            ("kreisel_realm_subscriptions{realm=\"realm1\"}", "5"),
            (
                "kreisel_realm_retained_events{realm=\"odd\\\"name\\\\\"}",
                "7",
            ),
        ] {
            assert!(
                samples.contains(&(name, value)),
                "{name} {value} in\n{page}"
            );
        }
        for (sample, _) in &samples {
            let name = sample.split('{').next().unwrap_or(sample);
            assert!(page.contains(&format!("# HELP {name} ")), "{name}");
            assert!(page.contains(&format!("# TYPE {name} ")), "{name}");
        }
        let names: std::collections::HashSet<_> = samples.iter().map(|(name, _)| name).collect();
        assert_eq!(names.len(), samples.len(), "no metric twice");
        let response = response(&page);
        assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(response.ends_with(page.as_bytes()));
    }
}
