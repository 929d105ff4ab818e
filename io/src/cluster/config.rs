//! `[cluster]`: the node's place in a cluster of kreisel nodes linked over NATS. Without the section, kreisel is
//! a router on its own and none of this runs.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::ConfigError;

/// The `[cluster]` section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster's name: every node of one cluster has the same (letters, digits, `-`, `_`; at most 32). It
    /// names the NATS subjects (`kr.<name>.>`) and the JetStream key-value bucket (`kreisel_<name>`), so several
    /// clusters can share NATS servers.
    pub name: String,
    /// NATS servers to connect to, tried in order (`nats://host:port`, or `tls://host:port` for TLS).
    pub nats: Vec<String>,
    /// Credentials for NATS: a user and password, or a token.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    /// TLS to NATS: the CA certificates (PEM) the servers' certificates are checked against. Setting it (or a
    /// `tls://` URL) makes TLS mandatory.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// A client certificate and its key (PEM) for servers that verify clients (`verify: true`).
    #[serde(default)]
    pub tls_certificate: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// How often a node tells the others it is alive, in milliseconds (default 250).
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// A node not heard from for this long is dropped by the others (its callees, subscribers and calls end, its
    /// sessions' testaments and `on_leave` are published), and a node that lost NATS for this long fences itself
    /// (default 3000).
    #[serde(default = "default_dead_after_ms")]
    pub dead_after_ms: u64,
    /// Replicas of the key-value bucket on the NATS servers (1-5; default 3: `single` registrations stay
    /// exclusive and registrations keep working when one of three servers is lost).
    #[serde(default = "default_replicas")]
    pub replicas: u8,
    /// How long a node waits for NATS when it starts before it gives up (default 10000).
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long a key-value operation may take (default 2000); REGISTER fails with
    /// `kreisel.error.cluster_unavailable` past it.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Bytes waiting to be written to NATS at most (default 64 MiB). Events are dropped (counted) past half of
    /// it, everything past all of it.
    #[serde(default = "default_pending_max")]
    pub pending_max: usize,
}

fn default_heartbeat_ms() -> u64 {
    250
}
fn default_dead_after_ms() -> u64 {
    3_000
}
fn default_replicas() -> u8 {
    3
}
fn default_connect_timeout_ms() -> u64 {
    10_000
}
fn default_request_timeout_ms() -> u64 {
    2_000
}
fn default_pending_max() -> usize {
    64 << 20
}

/// A NATS server address from `nats`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsUrl {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl NatsUrl {
    pub fn parse(url: &str) -> Result<NatsUrl, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("'{url}': expected nats://host:port or tls://host:port"))?;
        let tls = match scheme {
            "nats" => false,
            "tls" => true,
            other => return Err(format!("'{url}': unknown scheme '{other}' (nats or tls)")),
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('@') {
            return Err(format!(
                "'{url}': put credentials in cluster.user/password or cluster.token, not in the URL"
            ));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("'{url}': bad port '{port}'"))?;
                (host, port)
            }
            _ => (rest, 4222),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("'{url}': no host"));
        }
        Ok(NatsUrl {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

impl ClusterConfig {
    pub fn validate(&self, shards: usize) -> Result<(), ConfigError> {
        let fail = |text: String| Err(ConfigError(format!("cluster: {text}")));
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && (self.name.bytes()).all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return fail(format!(
                "name '{}' must be 1 to 32 letters, digits, '-' or '_'",
                self.name
            ));
        }
        if self.nats.is_empty() {
            return fail("nats must list at least one server (nats://host:port)".into());
        }
        for url in &self.nats {
            NatsUrl::parse(url).map_err(|e| ConfigError(format!("cluster.nats: {e}")))?;
        }
        if self.token.is_some() && (self.user.is_some() || self.password.is_some()) {
            return fail("give either user and password or a token, not both".into());
        }
        if self.user.is_some() != self.password.is_some() {
            return fail("user and password go together".into());
        }
        if self.tls_certificate.is_some() != self.tls_key.is_some() {
            return fail("tls_certificate and tls_key go together".into());
        }
        for path in [&self.tls_ca, &self.tls_certificate, &self.tls_key]
            .into_iter()
            .flatten()
        {
            if !path.exists() {
                return fail(format!("{} does not exist", path.display()));
            }
        }
        if self.heartbeat_ms == 0 || self.heartbeat_ms > 60_000 {
            return fail("heartbeat_ms must be 1 to 60000".into());
        }
        if self.dead_after_ms < 2 * self.heartbeat_ms {
            return fail(format!(
                "dead_after_ms ({}) must be at least twice heartbeat_ms ({})",
                self.dead_after_ms, self.heartbeat_ms
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return fail("replicas must be 1 to 5".into());
        }
        if self.request_timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return fail("request_timeout_ms and connect_timeout_ms must be at least 1".into());
        }
        if self.pending_max < 1 << 20 {
            return fail("pending_max must be at least 1 MiB".into());
        }
        if shards >= kreisel_engine::link::SHARDS_MAX {
            return fail(format!(
                "a node of a cluster runs at most {} shards (router.shards)",
                kreisel_engine::link::SHARDS_MAX - 1
            ));
        }
        Ok(())
    }

    /// Whether connections to NATS use TLS.
    pub fn tls(&self) -> bool {
        self.tls_ca.is_some() || self.nats.iter().any(|url| url.starts_with("tls://"))
    }

    /// The subjects of this cluster: every node's (`kr.<name>.all`) and one node's (`kr.<name>.node.<slot>`).
    pub fn subject_all(&self) -> String {
        format!("kr.{}.all", self.name)
    }

    pub fn subject_node(&self, slot: u16) -> String {
        format!("kr.{}.node.{slot}", self.name)
    }

    /// The key-value bucket (and its stream, `KV_<bucket>`).
    pub fn bucket(&self) -> String {
        format!("kreisel_{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!(
            NatsUrl::parse("nats://127.0.0.1:4223").unwrap(),
            NatsUrl {
                host: "127.0.0.1".into(),
                port: 4223,
                tls: false
            }
        );
        assert_eq!(NatsUrl::parse("tls://nats.example").unwrap().port, 4222);
        assert!(NatsUrl::parse("tls://nats.example").unwrap().tls);
        assert_eq!(NatsUrl::parse("nats://[::1]:5000").unwrap().host, "::1");
        assert!(NatsUrl::parse("http://x").is_err());
        assert!(NatsUrl::parse("nats://u:p@x:1").is_err());
        assert!(NatsUrl::parse("nats://x:99999").is_err());
    }
}
