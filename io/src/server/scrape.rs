//! The metrics endpoint over several shards: the shard that got the request asks every other for its figures
//! (through the link, off the message path) and answers once all have replied, so counters are exact at the
//! moment of the scrape.

use kreisel_engine::link::ShardId;
use kreisel_engine::{RealmGauges, Stats};

use super::IoStats;
use crate::metrics;

/// One shard's figures.
#[derive(Clone, Debug, Default)]
pub(super) struct Snapshot {
    pub shard: ShardId,
    pub engine: Stats,
    pub io: IoStats,
    pub connections: usize,
    pub outbox_bytes: usize,
    pub partial_frame_bytes: usize,
    pub calls_pending: usize,
    pub link_backlog: usize,
    /// Per realm, in configuration order: sessions on this shard, subscriptions, registrations, retained events.
    pub realms: Vec<[usize; 4]>,
}

/// A scrape waiting for the other shards.
pub(super) struct PendingScrape {
    pub token: u64,
    pub index: usize,
    pub generation: u32,
    pub snapshots: Vec<Snapshot>,
}

/// The metrics page from every shard's snapshot. Counters and per-shard quantities (connections, sessions,
/// outboxes) are summed; what every shard knows in full (subscriptions, registrations and retained events, which
/// are replicated) is taken from the shard that knows most. Per-shard gauges follow.
pub(super) fn render(
    snapshots: &[Snapshot],
    realm_names: &[&str],
    uptime_seconds: f64,
    draining: bool,
) -> String {
    let mut engine = Stats::default();
    let mut io = IoStats::default();
    let mut realms: Vec<RealmGauges<'_>> = realm_names
        .iter()
        .map(|name| RealmGauges {
            name,
            sessions: 0,
            subscriptions: 0,
            registrations: 0,
            retained: 0,
        })
        .collect();
    let mut gauges = metrics::Gauges {
        uptime_seconds,
        draining,
        log_lines_dropped: crate::log::dropped(),
        ..metrics::Gauges::default()
    };
    let mut sorted: Vec<&Snapshot> = snapshots.iter().collect();
    sorted.sort_by_key(|s| s.shard);
    for snapshot in &sorted {
        engine += snapshot.engine;
        io += snapshot.io;
        gauges.connections += snapshot.connections;
        gauges.outbox_bytes += snapshot.outbox_bytes;
        gauges.partial_frame_bytes += snapshot.partial_frame_bytes;
        gauges.calls_pending += snapshot.calls_pending;
        for (realm, [sessions, subscriptions, registrations, retained]) in
            realms.iter_mut().zip(&snapshot.realms)
        {
            realm.sessions += sessions;
            realm.subscriptions = realm.subscriptions.max(*subscriptions);
            realm.registrations = realm.registrations.max(*registrations);
            realm.retained = realm.retained.max(*retained);
        }
        gauges.shards.push(metrics::ShardGauges {
            shard: snapshot.shard,
            connections: snapshot.connections,
            sessions: snapshot.engine.sessions_active,
            outbox_bytes: snapshot.outbox_bytes,
            link_backlog: snapshot.link_backlog,
            peer_messages: snapshot.engine.peer_messages,
        });
    }
    gauges.realms = realms;
    metrics::render(&engine, &io, &gauges)
}
