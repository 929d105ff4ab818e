//! The health probes `/healthz` and `/readyz` (served where a listener's `health` is on; see the README,
//! "Deploying"): what they answer, from router-wide state every shard can read without asking the others.
//!
//! - `/healthz` (liveness): 200 while every shard's event loop turns; 503 naming a shard whose loop has not turned
//!   for [`STALL_LIMIT_MS`] (a stuck loop: restart the process). Draining and shutting down are alive.
//! - `/readyz` (readiness): 200 when the router takes new sessions: every shard runs and turns, the listeners
//!   accept, it is neither draining (lame duck) nor shutting down, and (in a cluster) the node's backplane is
//!   connected to NATS and not fenced; else 503 with the reason. A node that lost NATS keeps its local sessions
//!   while it reconnects (up to the cluster's `dead_after_ms`, then it fences itself and exits): it is alive, but a
//!   load balancer should send new sessions to a node that can reach the rest of the cluster.

use std::fmt::Write as _;

use crate::websocket::Probe;

/// A shard whose event loop has not turned for this long is stuck. Every loop turns at least once a second (more
/// often with a systemd watchdog), so this is ten missed turns in a row.
pub const STALL_LIMIT_MS: u64 = 10_000;

/// What the probes look at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub shards: usize,
    /// Shards whose event loop has started.
    pub started: usize,
    /// A shard whose loop has not turned for [`STALL_LIMIT_MS`], and for how long (ms).
    pub stalled: Option<(usize, u64)>,
    /// Lame-duck drain: listeners closed, sessions being sent away.
    pub draining: bool,
    /// Shutting down (SIGTERM or the end of a drain).
    pub stopping: bool,
    /// In a cluster: the state of the node's backplane.
    pub backplane: Option<Backplane>,
}

/// The backplane of a cluster node, as the probes see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backplane {
    /// Connected to a NATS server.
    pub connected: bool,
    /// Fenced: it lost the backplane for `dead_after_ms` or was dropped from the members record, and stops.
    pub fenced: bool,
}

/// The status and one-line body answering `probe` in `state`.
pub fn answer(probe: Probe, state: &State) -> (u16, String) {
    let stalled = state
        .stalled
        .map(|(shard, ms)| format!("shard {shard}: event loop stalled (no turn for {ms} ms)"));
    let unready = match probe {
        Probe::Live => stalled,
        Probe::Ready => {
            if state.stopping {
                Some("shutting down".to_string())
            } else if state.draining {
                Some("draining (lame duck): not accepting sessions".to_string())
            } else if stalled.is_some() {
                stalled
            } else if state.started < state.shards {
                Some(format!(
                    "starting: {} of {} shards run",
                    state.started, state.shards
                ))
            } else {
                state.backplane.and_then(|backplane| {
                    if backplane.fenced {
                        Some("cluster: fenced, the node stops".to_string())
                    } else if !backplane.connected {
                        Some("cluster: backplane disconnected from NATS, reconnecting".to_string())
                    } else {
                        None
                    }
                })
            }
        }
    };
    match unready {
        Some(reason) => (503, reason),
        None => (200, "ok".to_string()),
    }
}

/// The HTTP response (`Connection: close`; without the body for `HEAD`).
pub fn response(status: u16, body: &str, head: bool) -> Vec<u8> {
    let phrase = match status {
        200 => "OK",
        _ => "Service Unavailable",
    };
    let mut response = String::with_capacity(160 + body.len());
    // Writing into a String cannot fail.
    let _ = write!(
        response,
        "HTTP/1.1 {status} {phrase}\r\nServer: kreisel\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len() + 1
    );
    if !head {
        response.push_str(body);
        response.push('\n');
    }
    response.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_answer_what_load_balancers_expect() {
        let running = State {
            shards: 4,
            started: 4,
            ..State::default()
        };
        assert_eq!(answer(Probe::Live, &running), (200, "ok".into()));
        assert_eq!(answer(Probe::Ready, &running), (200, "ok".into()));
        let starting = State {
            started: 3,
            ..running
        };
        assert_eq!(answer(Probe::Live, &starting).0, 200);
        assert_eq!(
            answer(Probe::Ready, &starting),
            (503, "starting: 3 of 4 shards run".into())
        );
        let stuck = State {
            stalled: Some((2, 12_000)),
            ..running
        };
        for probe in [Probe::Live, Probe::Ready] {
            assert_eq!(
                answer(probe, &stuck),
                (
                    503,
                    "shard 2: event loop stalled (no turn for 12000 ms)".into()
                )
            );
        }
        let draining = State {
            draining: true,
            ..running
        };
        assert_eq!(answer(Probe::Live, &draining).0, 200, "draining is alive");
        assert_eq!(
            answer(Probe::Ready, &draining),
            (503, "draining (lame duck): not accepting sessions".into())
        );
        let stopping = State {
            stopping: true,
            ..draining
        };
        assert_eq!(
            answer(Probe::Ready, &stopping),
            (503, "shutting down".into())
        );
        // A cluster node is ready while its backplane is connected and not fenced; losing NATS is not death.
        let connected = Backplane {
            connected: true,
            fenced: false,
        };
        let node = State {
            backplane: Some(connected),
            ..running
        };
        assert_eq!(answer(Probe::Ready, &node), (200, "ok".into()));
        let cut_off = State {
            backplane: Some(Backplane {
                connected: false,
                ..connected
            }),
            ..running
        };
        assert_eq!(answer(Probe::Live, &cut_off).0, 200);
        assert_eq!(
            answer(Probe::Ready, &cut_off),
            (
                503,
                "cluster: backplane disconnected from NATS, reconnecting".into()
            )
        );
        let fenced = State {
            backplane: Some(Backplane {
                fenced: true,
                ..connected
            }),
            ..running
        };
        assert_eq!(
            answer(Probe::Ready, &fenced),
            (503, "cluster: fenced, the node stops".into())
        );

        let ok = String::from_utf8(response(200, "ok", false)).unwrap();
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with(
            "\r\nContent-Length: 3\r\nCache-Control: no-store\r\nConnection: close\r\n\r\nok\n"
        ));
        let head = String::from_utf8(response(503, "draining", true)).unwrap();
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(head.ends_with(
            "Content-Length: 9\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        ));
    }
}
