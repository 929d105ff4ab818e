//! Timers (handshake deadline, linger, end of a producer stall), the sweep for silent and trickling
//! connections, and shutdown.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use tracing::info;

use super::output::begin_close;
use super::shard::Shard;
use crate::conn::{CloseCause, Framing, Transport};
use crate::framer::Control;
use crate::websocket;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerKind {
    /// An HTTP connection's idle check (see `Shard::http_idle`).
    HttpIdle,
    Linger,
    /// End of a producer stall (see [`super::input::STALL`]).
    Resume,
    /// A session sent away by a lame-duck drain had `limits.shutdown_grace_ms` to answer GOODBYE.
    Goodbye,
}

impl Shard {
    pub(super) fn fire_timers(&mut self) {
        self.handshake_deadlines();
        let now = Instant::now();
        while let Some(Reverse((at, index, generation, kind))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(conn) = self.conns.get(index).filter(|c| c.generation == generation) else {
                continue;
            };
            match kind {
                TimerKind::HttpIdle => self.http_idle(index),
                TimerKind::Linger => {
                    if conn.closing.is_some() {
                        self.remove(index, conn.closing);
                    }
                }
                TimerKind::Resume => {
                    if conn.stalled {
                        self.conns[index].stalled = false;
                        self.read(index);
                    }
                }
                TimerKind::Goodbye => {
                    // Answered: closing already, under the linger timer.
                    if conn.closing.is_none() {
                        info!(peer = %conn.peer, "lame duck: no GOODBYE in answer within limits.shutdown_grace_ms; closing");
                        self.remove(index, Some(CloseCause::Shutdown));
                    }
                }
            }
        }
        self.settle();
    }

    /// Closes the connections that have not completed the transport handshake and sent HELLO within
    /// `handshake_timeout_ms` of their acceptance (the front of [`Shard::unjoined`], oldest first).
    fn handshake_deadlines(&mut self) {
        let now32 = self.now_ms() as u32;
        let timeout = self.config.limits.handshake_timeout_ms;
        while let Some(&first) = self.unjoined.front() {
            if u64::from(now32.wrapping_sub(first.accepted_ms)) < timeout {
                break;
            }
            self.unjoined.pop_front();
            let index = first.index as usize;
            let Some(conn) = self
                .conns
                .get(index)
                .filter(|c| c.generation == first.generation)
            else {
                continue;
            };
            if matches!(conn.transport, crate::conn::Transport::Http(_)) {
                // An HTTP connection has no HELLO to send: from now on it is closed when idle.
                self.http_idle(index);
                continue;
            }
            let hello = conn.session.is_some_and(|h| self.router.hello_received(h));
            if !hello && conn.closing.is_none() {
                self.stats.handshake_timeouts += 1;
                info!(peer = %conn.peer, "no handshake and HELLO in time; closing");
                self.remove(index, Some(CloseCause::HandshakeTimeout));
            }
        }
    }

    /// Period of the silent-connection sweep: a quarter of the shortest configured interval.
    pub(super) fn sweep_period(&self) -> Option<Duration> {
        let limits = &self.config.limits;
        // MQTT keep-alives (1.5 times a client's interval) are checked every second.
        let mqtt = self.shared.listeners.iter().any(|l| l.mqtt.is_some());
        let shortest = [
            limits.auto_ping_ms,
            limits.idle_timeout_ms,
            limits.frame_timeout_ms,
            if mqtt { 4000 } else { 0 },
        ]
        .into_iter()
        .filter(|&ms| ms > 0)
        .min()?;
        Some(Duration::from_millis((shortest / 4).max(10)))
    }

    /// Pings connections silent for `auto_ping_ms`, closes those silent for `idle_timeout_ms` and those whose
    /// current frame has been incomplete for `frame_timeout_ms`.
    pub(super) fn sweep(&mut self) {
        let now_ms = self.now_ms();
        let (ping_ms, idle_ms, frame_ms) = (
            self.config.limits.auto_ping_ms,
            self.config.limits.idle_timeout_ms,
            self.config.limits.frame_timeout_ms,
        );
        let mut idle = Vec::new();
        let mut ping = Vec::new();
        let mut trickling = Vec::new();
        let mut mqtt_silent = Vec::new();
        // Connections keep their times as wrapping 32-bit milliseconds.
        let now32 = now_ms as u32;
        let since = |then: u32| u64::from(now32.wrapping_sub(then));
        for (index, conn) in &self.conns {
            if conn.closing.is_some() {
                continue;
            }
            if conn
                .input_since_ms
                .is_some_and(|start| since(start) >= frame_ms)
            {
                trickling.push(index);
                continue;
            }
            if matches!(conn.transport, Transport::Mqtt(_)) {
                // MQTT clients keep themselves alive (PINGREQ); the router only enforces it.
                if Shard::mqtt_expired(conn, since(conn.last_rx_ms), idle_ms) {
                    mqtt_silent.push(index);
                }
                continue;
            }
            if conn.framing == Framing::None {
                continue;
            }
            let silent = since(conn.last_rx_ms);
            if idle_ms > 0 && silent >= idle_ms {
                idle.push(index);
            } else if ping_ms > 0 && silent >= ping_ms && since(conn.last_ping_ms) >= ping_ms {
                ping.push(index);
            }
        }
        for index in trickling {
            self.stats.frame_timeouts += 1;
            if self.is_http(index) {
                let response = crate::http::Response::refusal(
                    408,
                    "the request did not complete within limits.frame_timeout_ms",
                );
                self.send_raw(index, &[], &response.to_bytes(false, None));
            }
            let conn = &mut self.conns[index];
            info!(peer = %conn.peer, limit_ms = frame_ms, "frame not complete within limits.frame_timeout_ms; closing");
            conn.ws_close = Some(Box::new((
                websocket::CLOSE_POLICY_VIOLATION,
                "frame timeout",
            )));
            if begin_close(conn, &mut self.frames, CloseCause::FrameTimeout) {
                self.dirty.push(index);
            }
        }
        for index in mqtt_silent {
            self.mqtt_keep_alive_timeout(index);
        }
        for index in idle {
            self.stats.idle_timeouts += 1;
            let conn = &mut self.conns[index];
            info!(peer = %conn.peer, "idle timeout; closing");
            conn.ws_close = Some(Box::new((websocket::CLOSE_GOING_AWAY, "idle timeout")));
            if begin_close(conn, &mut self.frames, CloseCause::IdleTimeout) {
                self.dirty.push(index);
            }
        }
        let mut frame = Vec::new();
        for index in ping {
            self.conns[index].last_ping_ms = now_ms as u32;
            frame.clear();
            self.conns[index]
                .framing
                .control(Control::Ping, &now_ms.to_be_bytes(), &mut frame);
            self.send_raw(index, &[], &frame);
        }
        self.next_sweep = self.sweep_period().map(|period| Instant::now() + period);
        self.settle();
    }

    /// Stops accepting, says GOODBYE (`wamp.close.system_shutdown`) to every session of this shard and gives
    /// them `limits.shutdown_grace_ms` to answer and drain.
    pub(super) fn begin_shutdown(&mut self) {
        info!(
            shard = self.id,
            connections = self.conns.len(),
            "shutting down"
        );
        self.close_listeners(false);
        self.drain = None;
        self.systemd_stopping("STOPPING=1\nSTATUS=shutting down");
        self.with_sink(|router, sink| router.handle_shutdown(sink));
        self.shutdown_deadline =
            Some(Instant::now() + Duration::from_millis(self.config.limits.shutdown_grace_ms));
        self.settle();
    }

    pub(super) fn finish_shutdown(&mut self) {
        let left: Vec<usize> = self.conns.iter().map(|(index, _)| index).collect();
        for index in left {
            self.remove(index, Some(CloseCause::Shutdown));
        }
        self.beat_ended();
        info!(shard = self.id, "shutdown complete");
    }
}
