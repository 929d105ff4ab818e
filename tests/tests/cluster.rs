//! A cluster end to end: 3 NATS servers (one NATS cluster with JetStream) and 3 kreisel nodes, each a process on
//! loopback ports, with autobahn-python sessions joined to different nodes (`tests/interop/cluster.py`): pub/sub
//! and RPC across nodes, the meta API, kill -9 of a node and of a NATS server. Everything is stopped by PID when
//! the test ends, whatever its outcome.

use std::time::Duration;

use kreisel_tests::cluster::LocalCluster;
use kreisel_tests::python_check;

/// Small, so that the kill -9 part takes seconds: nodes heartbeat every dead_after/8.
const DEAD_AFTER_MS: u64 = 2_000;

#[test]
fn three_nodes_three_nats_servers_with_autobahn_python() {
    let mut cluster = LocalCluster::start(3, 3, DEAD_AFTER_MS, "");
    // Every node has heard the two others before the clients come.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for node in 0..3 {
        while !cluster.metrics(node).contains("kreisel_cluster_nodes 2") {
            assert!(
                std::time::Instant::now() < deadline,
                "node {node} does not hear the two others:\n{}",
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let config = serde_json::json!({
        "ws": cluster.nodes.iter().map(|n| n.ws.clone()).collect::<Vec<_>>(),
        "rs": cluster.nodes.iter().map(|n| n.rs.clone()).collect::<Vec<_>>(),
        "kreisel_pids": cluster.nodes.iter().map(|n| n.process.pid()).collect::<Vec<_>>(),
        "nats_pids": cluster.nats.iter().map(|p| p.pid()).collect::<Vec<_>>(),
        "dead_after_ms": DEAD_AFTER_MS,
    });
    let outcome = std::panic::catch_unwind(|| python_check("cluster.py", &[&config.to_string()]));
    if let Err(panic) = outcome {
        eprintln!("{}", cluster.logs());
        std::panic::resume_unwind(panic);
    }
    // Nodes 1 and 2 survived the loss of node 3 and of a NATS server, and were not fenced.
    for node in 0..2 {
        assert!(
            cluster.nodes[node].process.alive(),
            "node {node} exited:\n{}",
            cluster.logs()
        );
        let metrics = cluster.metrics(node);
        assert!(
            metrics.contains("kreisel_cluster_fenced 0"),
            "node {node}:\n{metrics}"
        );
    }
}
