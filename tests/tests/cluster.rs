//! A cluster end to end: 3 NATS servers (one NATS cluster with JetStream) and 3 kreisel nodes, each a process on
//! loopback ports, with autobahn-js and autobahn-python sessions joined to different nodes: the cross-serializer
//! programs of the single-router interop tests (`cross_serializer.js`, `cross_serializer.py`) with their two sides
//! on two nodes, then `tests/interop/cluster.py`: pub/sub and RPC across nodes, the meta API, kill -9 of a node and
//! of a NATS server; last, the loss of every NATS server (each node fences itself and exits). Everything is stopped by PID when
//! the test ends, whatever its outcome.

use std::time::{Duration, Instant};

use kreisel_tests::cluster::LocalCluster;
use kreisel_tests::programs::node_check;
use kreisel_tests::python_check;

/// Small, so that the kill -9 part takes seconds: nodes heartbeat every dead_after/8.
const DEAD_AFTER_MS: u64 = 2_000;

#[test]
fn three_nodes_three_nats_servers_with_autobahn_python() {
    let mut cluster = LocalCluster::start(3, 3, DEAD_AFTER_MS, "");
    // Every node has heard the two others before the clients come.
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in 0..3 {
        while !cluster.metrics(node).contains("kreisel_cluster_nodes 2") {
            assert!(
                Instant::now() < deadline,
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
    let (ws, rs): (Vec<&str>, Vec<&str>) = (cluster.nodes.iter())
        .map(|n| (n.ws.as_str(), n.rs.as_str()))
        .unzip();
    let outcome = std::panic::catch_unwind(|| {
        // Programs written for one router, with their sessions on different nodes.
        node_check("cross_serializer.js", &[ws[0], "msgpack", rs[2], "json"]);
        node_check("cross_serializer.js", &[ws[1], "cbor", ws[0], "json"]);
        python_check(
            "cross_serializer.py",
            &[ws[1], rs[2], "json", "msgpack", "cbor"],
        );
        python_check("cluster.py", &[&config.to_string()])
    });
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
    // NATS lost entirely: each node fences itself after dead_after and exits with an error that says why.
    for server in &mut cluster.nats {
        let _ = server.child.kill();
    }
    let deadline = Instant::now() + Duration::from_millis(DEAD_AFTER_MS + 5_000);
    for node in 0..2 {
        let status = loop {
            if let Ok(Some(status)) = cluster.nodes[node].process.child.try_wait() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "node {node} still runs without NATS:\n{}",
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!status.success(), "node {node}: {status}");
        let log = cluster.nodes[node].process.log_text();
        assert!(
            log.contains("fenced: lost the backplane"),
            "node {node}:\n{log}"
        );
    }
}
