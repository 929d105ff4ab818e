//! The backplane's figures for the metrics endpoint: the backplane thread stores them after each loop turn
//! (relaxed atomics, off the message path of the shards), a scrape reads them.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use kreisel_engine::cluster::NodeStats;

use super::client::ClientStats;

macro_rules! figures {
    ($($name:ident),* $(,)?) => {
        /// See the module documentation.
        #[derive(Debug, Default)]
        pub struct ClusterMetrics {
            $(pub $name: AtomicU64,)*
        }
    };
}

figures!(
    slot,
    connected,
    fenced,
    nodes,
    messages_sent,
    messages_received,
    messages_dropped,
    publications_sent,
    publications_received,
    calls_sent,
    calls_received,
    calls_failed,
    gaps,
    resyncs,
    nodes_lost,
    nodes_reaped,
    kv_ops,
    kv_conflicts,
    kv_failures,
    registrations_unavailable,
    nats_connects,
    nats_disconnects,
    nats_bytes_out,
    nats_bytes_in,
    nats_dropped,
    nats_dropped_too_long,
    nats_pending_bytes,
);

impl ClusterMetrics {
    pub fn store(&self, node: &NodeStats, client: &ClientStats, connected: bool, pending: usize) {
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&self.connected, u64::from(connected));
        set(&self.nodes, node.nodes);
        set(&self.messages_sent, node.messages_sent);
        set(&self.messages_received, node.messages_received);
        set(&self.messages_dropped, node.messages_dropped);
        set(&self.publications_sent, node.publications_sent);
        set(&self.publications_received, node.publications_received);
        set(&self.calls_sent, node.calls_sent);
        set(&self.calls_received, node.calls_received);
        set(&self.calls_failed, node.calls_failed);
        set(&self.gaps, node.gaps);
        set(&self.resyncs, node.resyncs);
        set(&self.nodes_lost, node.nodes_lost);
        set(&self.nodes_reaped, node.nodes_reaped);
        set(&self.kv_ops, node.kv_ops);
        set(&self.kv_conflicts, node.kv_conflicts);
        set(&self.kv_failures, node.kv_failures);
        set(
            &self.registrations_unavailable,
            node.registrations_unavailable,
        );
        set(&self.nats_connects, client.connects);
        set(&self.nats_disconnects, client.disconnects);
        set(&self.nats_bytes_out, client.bytes_out);
        set(&self.nats_bytes_in, client.bytes_in);
        set(&self.nats_dropped, client.dropped);
        set(&self.nats_dropped_too_long, client.dropped_too_long);
        set(&self.nats_pending_bytes, pending as u64);
    }

    /// The Prometheus lines (`kreisel_cluster_*`).
    pub fn render(&self, page: &mut String) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = write!(
                page,
                "# HELP kreisel_cluster_{name} {help}\n# TYPE kreisel_cluster_{name} {kind}\nkreisel_cluster_{name} {value}\n"
            );
        };
        let (g, c) = ("gauge", "counter");
        metric(
            "slot",
            g,
            "This node's slot in the cluster.",
            get(&self.slot),
        );
        metric(
            "connected",
            g,
            "1 while the node is connected to NATS.",
            get(&self.connected),
        );
        metric(
            "fenced",
            g,
            "1 once the node is fenced (declared dead, or NATS lost for dead_after_ms).",
            get(&self.fenced),
        );
        metric("nodes", g, "Other nodes this node hears.", get(&self.nodes));
        metric(
            "messages_sent_total",
            c,
            "Node messages sent (each destination counted).",
            get(&self.messages_sent),
        );
        metric(
            "messages_received_total",
            c,
            "Node messages received.",
            get(&self.messages_received),
        );
        metric(
            "messages_dropped_total",
            c,
            "Node messages received that did not decode or came from a dropped node.",
            get(&self.messages_dropped),
        );
        metric(
            "publications_sent_total",
            c,
            "Publications sent to other nodes (once per node).",
            get(&self.publications_sent),
        );
        metric(
            "publications_received_total",
            c,
            "Publications received from other nodes.",
            get(&self.publications_received),
        );
        metric(
            "calls_sent_total",
            c,
            "Calls sent to callees on other nodes.",
            get(&self.calls_sent),
        );
        metric(
            "calls_received_total",
            c,
            "Calls received for callees on this node.",
            get(&self.calls_received),
        );
        metric(
            "calls_failed_total",
            c,
            "Calls ended because a node left or the link lost messages.",
            get(&self.calls_failed),
        );
        metric(
            "gaps_total",
            c,
            "Gaps found in other nodes' numbered message streams.",
            get(&self.gaps),
        );
        metric(
            "resyncs_total",
            c,
            "Full state exchanges asked for (joins and gaps).",
            get(&self.resyncs),
        );
        metric(
            "nodes_lost_total",
            c,
            "Nodes dropped (silent for dead_after_ms, or left).",
            get(&self.nodes_lost),
        );
        metric(
            "nodes_reaped_total",
            c,
            "Dead nodes this node reaped (published their testaments and on_leave).",
            get(&self.nodes_reaped),
        );
        metric(
            "kv_operations_total",
            c,
            "Key-value operations (JetStream).",
            get(&self.kv_ops),
        );
        metric(
            "kv_conflicts_total",
            c,
            "Key-value writes that met a concurrent write.",
            get(&self.kv_conflicts),
        );
        metric(
            "kv_failures_total",
            c,
            "Key-value operations without an answer.",
            get(&self.kv_failures),
        );
        metric(
            "registrations_unavailable_total",
            c,
            "REGISTERs refused because the key-value store did not answer.",
            get(&self.registrations_unavailable),
        );
        metric(
            "nats_connects_total",
            c,
            "Connections to NATS made.",
            get(&self.nats_connects),
        );
        metric(
            "nats_disconnects_total",
            c,
            "Connections to NATS lost.",
            get(&self.nats_disconnects),
        );
        metric(
            "nats_bytes_out_total",
            c,
            "Bytes written to NATS.",
            get(&self.nats_bytes_out),
        );
        metric(
            "nats_bytes_in_total",
            c,
            "Bytes read from NATS.",
            get(&self.nats_bytes_in),
        );
        metric(
            "nats_dropped_total",
            c,
            "Messages not sent to NATS (no connection, or the buffer full).",
            get(&self.nats_dropped),
        );
        metric(
            "nats_dropped_too_long_total",
            c,
            "Messages not sent because they exceed NATS max_payload.",
            get(&self.nats_dropped_too_long),
        );
        metric(
            "nats_pending_bytes",
            g,
            "Bytes waiting to be written to NATS.",
            get(&self.nats_pending_bytes),
        );
    }
}
