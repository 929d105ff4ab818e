//! `[[listeners.services]]`: the HTTP bridge's services in the configuration file, their validation and their
//! warnings.

use serde::{Deserialize, Serialize};

/// One HTTP service on a listener (crossbar's `publisher`, `caller` and `webhook` path services).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The request path, e.g. `/publish` (a query string on the request is not part of it).
    pub path: String,
    /// `"publisher"`, `"caller"` or `"webhook"`.
    #[serde(rename = "type")]
    pub kind: ServiceKind,
    /// The realm the service's session joins.
    pub realm: String,
    /// The role of the service's session: what it may publish or call is decided by this role's permissions
    /// (default `anonymous`, as in crossbar).
    #[serde(default = "default_role")]
    pub role: String,
    /// The authid of the service's session (default `http-publisher`, `http-caller` or `http-webhook`).
    #[serde(default)]
    pub authid: Option<String>,
    /// Webhook: the topic every request is published to.
    #[serde(default)]
    pub topic: Option<String>,
    /// Caller: how long a call may take before the request is answered with `wamp.error.timeout` (HTTP 504), in
    /// milliseconds (default 10000). A request's `options.timeout` may ask for less.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Answer WAMP errors with HTTP 200 and the error as JSON, as crossbar does, instead of a status that fits
    /// the error (default false).
    #[serde(default)]
    pub errors_as_200: bool,
    /// Signed requests: how far a request's `timestamp` may be from the router's clock, in seconds (default 300,
    /// crossbar's `timestamp_delta_limit`). A signed request is accepted once within this window.
    #[serde(default = "default_replay_window_s")]
    pub replay_window_s: u64,
    /// Webhook: also require GitHub's signature of the body (`X-Hub-Signature-256`, or the older SHA-1
    /// `X-Hub-Signature`) made with this secret.
    #[serde(default)]
    pub github_secret: Option<String>,
    /// Webhook: the body of the answer to a request that was published (default `OK`, HTTP 202).
    #[serde(default)]
    pub success_response: Option<String>,
    /// Webhook: the body of the answer to a request that could not be published (default `NOT OK`, HTTP 500).
    #[serde(default)]
    pub error_response: Option<String>,
    /// Who may use the service. Without principals, anyone who reaches the listener may (a warning says so).
    #[serde(default)]
    pub principals: Vec<HttpPrincipal>,
}

/// A client of an HTTP service: a bearer ticket (`Authorization: Bearer <ticket>`) and/or a key and secret for
/// crossbar's signed requests.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpPrincipal {
    /// The principal's name: the `key` query parameter of its signed requests, and what the log shows.
    pub key: String,
    /// The bearer ticket.
    #[serde(default)]
    pub ticket: Option<String>,
    /// The secret of its signed requests (HMAC-SHA256).
    #[serde(default)]
    pub secret: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    Publisher,
    Caller,
    Webhook,
}

impl ServiceKind {
    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Publisher => "publisher",
            ServiceKind::Caller => "caller",
            ServiceKind::Webhook => "webhook",
        }
    }
}

fn default_role() -> String {
    "anonymous".into()
}

fn default_replay_window_s() -> u64 {
    300
}

/// The default call timeout of a caller service.
pub const CALL_TIMEOUT_MS_DEFAULT: u64 = 10_000;

impl ServiceConfig {
    /// The authid of the service's session.
    pub fn authid(&self) -> String {
        self.authid
            .clone()
            .unwrap_or_else(|| format!("http-{}", self.kind.name()))
    }

    /// The caller's call timeout.
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms.unwrap_or(CALL_TIMEOUT_MS_DEFAULT)
    }

    /// Checks the service against the realms of the configuration (`realm_roles`: a realm's name and the names of
    /// its roles, `None` for a realm without roles). `which` names the listener.
    pub fn validate(
        &self,
        which: &str,
        realm_roles: &dyn Fn(&str) -> Option<Option<Vec<String>>>,
    ) -> Result<(), String> {
        let this = format!("{which}: service {} ('{}')", self.kind.name(), self.path);
        if !self.path.starts_with('/') || self.path.contains(['?', '#', ' ']) {
            return Err(format!(
                "{this}: path must start with '/' and have no query, fragment or space"
            ));
        }
        let Some(roles) = realm_roles(&self.realm) else {
            return Err(format!("{this}: no realm '{}' is configured", self.realm));
        };
        if let Some(roles) = roles {
            if !roles.contains(&self.role) {
                return Err(format!(
                    "{this}: realm '{}' has no role '{}' (it defines: {})",
                    self.realm,
                    self.role,
                    roles.join(", ")
                ));
            }
        }
        if self.authid.as_deref().is_some_and(str::is_empty) {
            return Err(format!("{this}: authid must not be empty"));
        }
        match (self.kind, &self.topic) {
            (ServiceKind::Webhook, None) => {
                return Err(format!(
                    "{this}: a webhook needs the topic its requests are published to"
                ))
            }
            (ServiceKind::Webhook, Some(topic)) => {
                if let Some(problem) = crate::auth_config::uri_problem(
                    topic,
                    kreisel_engine::uri::UriCheck::Loose,
                    kreisel_engine::uri::MatchPolicy::Exact,
                ) {
                    return Err(format!(
                        "{this}: topic '{topic}' is not a valid URI: {problem}"
                    ));
                }
            }
            (_, Some(_)) => {
                return Err(format!(
                    "{this}: topic is for webhooks (a publisher's requests name their topic)"
                ))
            }
            (_, None) => {}
        }
        if self.kind != ServiceKind::Caller && self.timeout_ms.is_some() {
            return Err(format!("{this}: timeout_ms is for callers"));
        }
        if self.timeout_ms == Some(0) {
            return Err(format!("{this}: timeout_ms must be at least 1"));
        }
        if self.kind != ServiceKind::Webhook
            && (self.github_secret.is_some()
                || self.success_response.is_some()
                || self.error_response.is_some())
        {
            return Err(format!(
                "{this}: github_secret, success_response and error_response are for webhooks"
            ));
        }
        if self.replay_window_s == 0 || self.replay_window_s > 86_400 {
            return Err(format!(
                "{this}: replay_window_s = {} is outside 1 ..= 86400",
                self.replay_window_s
            ));
        }
        if self.github_secret.as_deref().is_some_and(str::is_empty) {
            return Err(format!("{this}: github_secret must not be empty"));
        }
        let mut keys = std::collections::HashSet::new();
        for principal in &self.principals {
            if principal.key.is_empty() {
                return Err(format!("{this}: a principal's key must not be empty"));
            }
            if !keys.insert(&principal.key) {
                return Err(format!(
                    "{this}: principal '{}' is listed twice",
                    principal.key
                ));
            }
            if principal.ticket.is_none() && principal.secret.is_none() {
                return Err(format!(
                    "{this}: principal '{}' needs a ticket (bearer) or a secret (signed requests)",
                    principal.key
                ));
            }
            if principal.ticket.as_deref().is_some_and(str::is_empty)
                || principal.secret.as_deref().is_some_and(str::is_empty)
            {
                return Err(format!(
                    "{this}: principal '{}': ticket and secret must not be empty",
                    principal.key
                ));
            }
        }
        Ok(())
    }

    /// What is valid but probably not meant.
    pub fn warnings(&self, which: &str) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.principals.is_empty() && self.github_secret.is_none() {
            warnings.push(format!(
                "{which}: service {} ('{}') has no principals: anyone who reaches the listener may {} as '{}' in \
                 realm '{}'",
                self.kind.name(),
                self.path,
                match self.kind {
                    ServiceKind::Caller => "call",
                    _ => "publish",
                },
                self.role,
                self.realm
            ));
        }
        warnings
    }
}
