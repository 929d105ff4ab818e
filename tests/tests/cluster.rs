//! A cluster end to end: 3 NATS servers (one NATS cluster with JetStream) and 3 kreisel nodes, each a process on
//! loopback ports, with autobahn-js and autobahn-python sessions joined to different nodes: the cross-serializer
//! programs of the single-router interop tests (`cross_serializer.js`, `cross_serializer.py`) with their two sides
//! on two nodes, then `tests/interop/cluster.py`: pub/sub and RPC across nodes, the meta API, kill -9 of a node and
//! of a NATS server; last, the loss of every NATS server (each node says so on `/readyz`, then fences itself and
//! exits). MQTT devices (paho-mqtt) and HTTP bridge requests (python-requests) on some nodes meet WAMP sessions on
//! others. Everything is stopped by PID when the test ends, whatever its outcome.

use std::time::{Duration, Instant};

use kreisel_tests::cluster::{LocalCluster, HTTP_TICKET};
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
        let ready = cluster.get(node, "/readyz");
        assert!(
            ready.starts_with("HTTP/1.1 200 ") && ready.ends_with("\r\n\r\nok\n"),
            "node {node}: /readyz of a node connected to NATS:\n{ready}"
        );
    }
    let config = serde_json::json!({
        "ws": cluster.nodes.iter().map(|n| n.ws.clone()).collect::<Vec<_>>(),
        "rs": cluster.nodes.iter().map(|n| n.rs.clone()).collect::<Vec<_>>(),
        "mqtt": cluster.nodes.iter().map(|n| n.mqtt.clone()).collect::<Vec<_>>(),
        "http": cluster.nodes.iter().map(|n| n.http.clone()).collect::<Vec<_>>(),
        "http_ticket": HTTP_TICKET,
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
    // NATS lost entirely: each node says so on /readyz (it is still alive: /healthz stays 200) while it tries the
    // servers again, then fences itself after dead_after and exits with an error that says why.
    for server in &mut cluster.nats {
        let _ = server.child.kill();
    }
    let deadline = Instant::now() + Duration::from_millis(DEAD_AFTER_MS + 5_000);
    let mut unready: [Option<(String, String)>; 2] = [None, None];
    let mut exited = [None, None];
    while exited.iter().any(Option::is_none) {
        for node in 0..2 {
            if exited[node].is_some() {
                continue;
            }
            if let Ok(Some(status)) = cluster.nodes[node].process.child.try_wait() {
                exited[node] = Some(status);
            } else if unready[node].is_none() {
                let ready = cluster.get(node, "/readyz");
                if ready.starts_with("HTTP/1.1 503 ") {
                    unready[node] = Some((ready, cluster.get(node, "/healthz")));
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "a node still runs without NATS:\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for node in 0..2 {
        let status = exited[node].expect("exited");
        assert!(!status.success(), "node {node}: {status}");
        let log = cluster.nodes[node].process.log_text();
        assert!(
            log.contains("fenced: lost the backplane"),
            "node {node}:\n{log}"
        );
        let (ready, live) = unready[node].take().unwrap_or_else(|| {
            panic!("node {node}: /readyz never said 503 between losing NATS and exiting")
        });
        assert!(
            ready.ends_with("\r\n\r\ncluster: backplane disconnected from NATS, reconnecting\n")
                || ready.ends_with("\r\n\r\ncluster: fenced, the node stops\n"),
            "node {node}: /readyz without NATS:\n{ready}"
        );
        assert!(
            live.is_empty() || live.starts_with("HTTP/1.1 200 "),
            "node {node}: /healthz without NATS (alive until it exits):\n{live}"
        );
    }
}
