//! Accepting connections (shard 0) and adopting them (the shard that serves each).

use std::io;
use std::sync::atomic::Ordering;

use kreisel_engine::link::ShardId;
use kreisel_engine::Router;
use mio::{Interest, Token};
use slab::Slab;
use tracing::{debug, warn};

use super::link::{Envelope, Handoff};
use super::shard::{Shard, Unjoined};
use super::{ListenerSocket, OVER_LIMIT_SLACK};
use crate::conn::{CloseCause, Conn, PeerAddr, Stream};

impl Shard {
    /// Accepts what listener `listener` has and hands each connection to the next shard in turn.
    pub(super) fn accept(&mut self, listener: usize) {
        loop {
            let Some(state) = self.listeners.get(listener) else {
                return;
            };
            let accepted = match &state.socket {
                Some(ListenerSocket::Tcp(s)) => s.accept().and_then(|(stream, addr)| {
                    let _ = stream.set_nodelay(true);
                    set_unsent_max(&stream, self.config.limits.tcp_unsent_max);
                    let stream = match &self.shared.listeners[listener].tls {
                        Some(config) => Stream::Tls(Box::new(crate::tls::TlsStream::new(
                            stream,
                            config.clone(),
                        )?)),
                        None => Stream::Tcp(stream),
                    };
                    Ok((stream, PeerAddr::from(addr)))
                }),
                Some(ListenerSocket::Unix(s, _)) => s
                    .accept()
                    .map(|(stream, _)| (Stream::Unix(stream), PeerAddr::Unix)),
                None => return,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: log and try again on the next readiness event.
                    warn!(error = %e, "accept failed");
                    return;
                }
            };
            self.stats.accepted += 1;
            let per_ip_max = self.config.limits.connections_per_ip_max;
            let ip = peer.ip().filter(|_| per_ip_max > 0);
            if let Some(ip) = ip {
                let mut per_ip = self.shared.per_ip.lock().unwrap_or_else(|e| e.into_inner());
                let count = per_ip.entry(ip).or_default();
                if *count as usize >= per_ip_max {
                    drop(per_ip);
                    self.stats.refused_per_ip += 1;
                    debug!(%peer, limit = per_ip_max, "limits.connections_per_ip_max reached; closing");
                    drop(stream);
                    continue;
                }
                *count += 1;
            }
            let open = self.shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
            if open > self.config.limits.connections_max + OVER_LIMIT_SLACK {
                // Far over the limit: not even a polite refusal.
                self.shared.connections.fetch_sub(1, Ordering::SeqCst);
                if let Some(ip) = ip {
                    self.shared.release_ip(ip);
                }
                self.stats.refused_over_limit += 1;
                drop(stream);
                continue;
            }
            let handoff = Handoff {
                stream,
                listener,
                peer,
                ip_counted: ip.is_some(),
            };
            let target = self.next_target;
            self.next_target = (self.next_target + 1) % self.shards();
            if target == usize::from(self.id) {
                self.adopt(handoff);
            } else if let Err(Envelope::Conn(handoff)) = self
                .link
                .post(target as ShardId, Envelope::Conn(Box::new(handoff)))
            {
                // That shard has ended (shutting down): serve it here.
                self.adopt(*handoff);
            }
        }
    }

    /// Starts serving an accepted connection (counted in `Shared::connections` already). Over
    /// `connections_max`, the oldest connection of this shard that has not joined a realm is closed to make
    /// room; if there is none, the new one is refused at its transport handshake.
    pub(super) fn adopt(&mut self, handoff: Handoff) {
        let Handoff {
            stream,
            listener,
            peer,
            ip_counted,
        } = handoff;
        let connections_max = self.config.limits.connections_max;
        let over_limit = self.shared.connections.load(Ordering::SeqCst) > connections_max
            && !self.evict_unjoined();
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let now_ms = self.now_ms();
        let entry = self.conns.vacant_entry();
        let index = entry.key();
        let conn = entry.insert(Conn::new(
            stream,
            listener,
            generation,
            (peer, ip_counted),
            over_limit,
        ));
        conn.last_rx_ms = now_ms as u32;
        let registered = self.poll.registry().register(
            conn.stream.source(),
            Token(index),
            Interest::READABLE | Interest::WRITABLE,
        );
        if let Err(e) = registered {
            warn!(error = %e, "cannot register connection");
            let conn = self.conns.remove(index);
            self.shared.connections.fetch_sub(1, Ordering::SeqCst);
            if let Some(ip) = conn.counted_ip() {
                self.shared.release_ip(ip);
            }
            return;
        }
        self.unjoined.push_back(Unjoined {
            index: index as u32,
            generation,
            accepted_ms: now_ms as u32,
        });
        if self.unjoined.len() > 2 * self.conns.len() + 64 {
            let (conns, router) = (&self.conns, &self.router);
            self.unjoined.retain(|entry| unjoined(conns, router, entry));
        }
        debug!(peer = %self.conns[index].peer, shard = self.id, index, "connection accepted");
    }

    /// At `connections_max`: closes the oldest connection that has not joined a realm, to make room for a new
    /// one (a peer holding sockets that never handshake cannot lock others out). Returns whether it closed one.
    fn evict_unjoined(&mut self) -> bool {
        while let Some(entry) = self.unjoined.pop_front() {
            if !unjoined(&self.conns, &self.router, &entry) {
                continue;
            }
            let index = entry.index as usize;
            self.stats.evicted_unjoined += 1;
            debug!(peer = %self.conns[index].peer, "connections_max reached: closing the oldest connection that has not joined");
            self.remove(index, Some(CloseCause::Evicted));
            return true;
        }
        false
    }
}

/// Whether the connection of `entry` is open, not closing, and has no session joined to a realm.
fn unjoined(conns: &Slab<Conn>, router: &Router, entry: &Unjoined) -> bool {
    conns.get(entry.index as usize).is_some_and(|conn| {
        conn.generation == entry.generation
            && conn.closing.is_none()
            && conn
                .session
                .is_none_or(|h| router.session_info(h).is_none())
    })
}

/// Bounds what the kernel holds unsent for `stream` ([`crate::config::Limits::tcp_unsent_max`]; 0 leaves it be).
/// A failure only leaves the kernel's default, so it is logged at debug and otherwise ignored.
fn set_unsent_max(stream: &mio::net::TcpStream, bytes: usize) {
    #[cfg(target_os = "linux")]
    if bytes > 0 {
        use std::os::fd::AsRawFd;
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: a valid socket descriptor, and a pointer to a c_int with its size, as setsockopt requires.
        let rc = unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NOTSENT_LOWAT,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            debug!(error = %io::Error::last_os_error(), "TCP_NOTSENT_LOWAT not set");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (stream, bytes);
}
