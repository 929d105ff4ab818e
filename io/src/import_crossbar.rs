//! `kreisel --import-crossbar FILE`: turns a crossbar.io node configuration (`.crossbar/config.json` or
//! `config.yaml`) into an equivalent kreisel configuration (TOML text).
//!
//! What is carried over: the realms of every router worker with their roles and static permissions (`match`
//! exact/prefix/wildcard or starred URIs, `allow`, `disclose`), the static principals of the transports'
//! authentication (ticket, WAMP-CRA plain and salted, cryptosign `authorized_keys`), anonymous access and its
//! role, and the listening transports (WebSocket, RawSocket, universal, the WebSocket paths of Web transports) on
//! TCP or Unix endpoints with their serializers and TLS files, and the message size and auto-ping options.
//!
//! Everything else (dynamic authenticators and authorizers, components, non-router workers, HTTP services, MQTT,
//! router-to-router links, options kreisel lacks) becomes a `# not carried over: ...` comment at its place in the
//! output and a warning, so nothing disappears silently. Where crossbar and kreisel decide differently on the same
//! configuration, the importer either writes rules that make kreisel decide like crossbar (and says so in a
//! comment), or warns.
//!
//! Crossbar's authentication is configured per transport, kreisel's per realm: the importer gives every realm of a
//! router worker the principals of all its transports (those whose role the realm has, and whose `realm`, if set,
//! is that realm), and warns when the transports did not all accept the same.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use kreisel_engine::uri::{self, MatchPolicy, UriCheck};
use serde_json::{Map, Value};

use crate::auth_config::{rule_problem, starred};

/// The result of an import: the kreisel configuration and what could not be carried over.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The kreisel configuration (TOML), with `#` comments at the places where something was not carried over.
    pub toml: String,
    /// One line per thing not carried over (or carried over with a difference), for stderr.
    pub warnings: Vec<String>,
}

/// Reads a crossbar configuration file (JSON, or YAML for `.yaml`/`.yml`) and imports it. Relative paths in it
/// (TLS files, Unix sockets) are relative to the file's directory, as crossbar takes them.
pub fn import_file(path: &Path) -> Result<Imported, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let doc = parse(path, &text)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    import(&doc, &dir, &path.display().to_string())
}

/// Parses the file's text: YAML when the name ends in `.yaml` or `.yml`, JSON otherwise.
pub fn parse(path: &Path, text: &str) -> Result<Value, String> {
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    if yaml {
        yaml_serde::from_str(text).map_err(|e| format!("{}: not valid YAML: {e}", path.display()))
    } else {
        serde_json::from_str(text).map_err(|e| format!("{}: not valid JSON: {e}", path.display()))
    }
}

/// Imports a parsed crossbar configuration. `dir` is the directory relative paths are resolved against (crossbar's
/// node directory, where the configuration file lives); `source` names the file in the output's header.
pub fn import(doc: &Value, dir: &Path, source: &str) -> Result<Imported, String> {
    let top = doc
        .as_object()
        .ok_or("a crossbar configuration is a JSON/YAML object (with \"workers\")")?;
    let mut importer = Importer {
        dir: dir.to_path_buf(),
        out: Output::default(),
    };
    importer.node(top)?;
    let Importer { out, .. } = importer;
    if out.realms.is_empty() {
        return Err(
            "the crossbar configuration has no router realm kreisel could take over (a router worker with \"realms\")"
                .into(),
        );
    }
    if out.listeners.is_empty() {
        return Err(format!(
            "the crossbar configuration has no listening transport kreisel could take over (WebSocket, RawSocket, \
             universal, or a Web transport with a WebSocket path){}",
            if out.warnings.is_empty() {
                String::new()
            } else {
                format!(":\n  {}", out.warnings.join("\n  "))
            }
        ));
    }
    let toml = out.render(source);
    Ok(Imported {
        toml,
        warnings: out.warnings,
    })
}

/// Checks that an imported configuration loads in kreisel (parses, no unknown keys, valid), leaving the TLS files
/// aside: `Err` is a mistake of the importer. Returns what is wrong with the TLS files (they may not exist on this
/// machine yet), for warnings.
pub fn check(toml_text: &str) -> Result<Vec<String>, String> {
    let bug = |e: String| {
        format!("the imported configuration does not load in kreisel (a bug of the importer): {e}")
    };
    let mut config: crate::Config = toml::from_str(toml_text).map_err(|e| bug(e.to_string()))?;
    let mut problems = Vec::new();
    for listener in &mut config.listeners {
        if let Some(tls) = listener.tls.take() {
            if let Err(e) =
                crate::tls::server_config(&tls.certificate, &tls.key, tls.client_ca.as_deref())
            {
                problems.push(format!(
                    "listener '{}': the TLS files do not load here ({e}); `kreisel --check` fails until they do",
                    listener.listen
                ));
            }
        }
    }
    config.validate().map_err(|e| bug(e.0))?;
    Ok(problems)
}

/// What the output will hold, built from the crossbar configuration before it is written as TOML.
#[derive(Default)]
struct Output {
    /// Comments at the top: things of the node as a whole not carried over.
    notes: Vec<String>,
    realms: Vec<RealmOut>,
    listeners: Vec<ListenerOut>,
    limits: Limits,
    warnings: Vec<String>,
}

#[derive(Default)]
struct Limits {
    /// The largest `max_message_size` of any transport, and which one.
    message_max: Option<(u64, String)>,
    /// `auto_ping_interval`, `auto_ping_timeout` (ms) of the first WebSocket that pings, and which one.
    auto_ping: Option<(u64, u64, String)>,
}

struct RealmOut {
    name: String,
    uri_check: Option<&'static str>,
    anonymous_role: Option<String>,
    principals: Vec<PrincipalOut>,
    roles: Vec<RoleOut>,
    notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
struct PrincipalOut {
    authid: String,
    role: String,
    ticket: Option<String>,
    wampcra: Option<WampCra>,
    pubkeys: Vec<String>,
    /// The realm the crossbar principal was restricted to (`realm` in its configuration).
    realm: Option<String>,
    notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
struct WampCra {
    /// The secret (plain), or the key derived from crossbar's password (salted).
    secret: String,
    salt: Option<(String, u32, u32)>,
}

#[derive(Clone)]
struct RoleOut {
    name: String,
    rules: Vec<RuleOut>,
    notes: Vec<String>,
}

#[derive(Clone)]
struct RuleOut {
    uri: String,
    policy: MatchPolicy,
    allow: Vec<&'static str>,
    disclose: Vec<&'static str>,
    note: Option<String>,
}

struct ListenerOut {
    origin: String,
    listen: String,
    transports: Vec<&'static str>,
    path: Option<String>,
    serializers: Option<Vec<&'static str>>,
    tls: Option<TlsOut>,
    notes: Vec<String>,
}

struct TlsOut {
    certificate: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

/// The authentication one router worker's transports accept, merged.
#[derive(Default)]
struct WorkerAuth {
    /// The anonymous role, if every transport lets anonymous clients in with the same role.
    anonymous: Option<String>,
    /// The anonymous role of each transport (`None`: no anonymous access there), while merging.
    anonymous_per_transport: Vec<(String, Option<String>)>,
    principals: Vec<PrincipalOut>,
}

struct Importer {
    dir: PathBuf,
    out: Output,
}

/// The four actions of crossbar's `allow`, in kreisel's order.
const ACTIONS: [&str; 4] = ["call", "register", "publish", "subscribe"];

/// Crossbar's built-in roles: every realm has `trusted` (everything allowed, caller and publisher disclosed);
/// `anonymous` need not exist for a session to join with it (it may then do nothing).
const TRUSTED: &str = "trusted";
const ANONYMOUS: &str = "anonymous";

impl Importer {
    /// Adds a note (a comment in the output) and the warning that goes with it.
    fn warn(&mut self, notes: &mut Vec<String>, context: &str, text: String) {
        self.out.warnings.push(format!("{context}: {text}"));
        notes.push(format!("not carried over: {text}"));
    }

    /// A warning for the top of the output (where no place of its own is), with its context.
    fn warn_top(&mut self, context: &str, text: String) {
        self.out.warnings.push(format!("{context}: {text}"));
        self.out
            .notes
            .push(format!("not carried over: {context}: {text}"));
    }

    fn node(&mut self, top: &Map<String, Value>) -> Result<(), String> {
        match top.get("version") {
            Some(Value::Number(n)) if n.as_u64() == Some(2) => {}
            None => self.warn_top(
                "node",
                "the configuration has no \"version\": read as crossbar's version 2 format".into(),
            ),
            Some(other) => self.warn_top(
                "node",
                format!("configuration version {other}: read as crossbar's version 2 format"),
            ),
        }
        for (key, value) in top {
            match key.as_str() {
                "version" | "$schema" | "workers" => {}
                "controller" => self.controller(value),
                other => self.warn_top("node", format!("top-level \"{other}\"")),
            }
        }
        let Some(workers) = top.get("workers") else {
            return Ok(());
        };
        let workers = workers.as_array().ok_or("\"workers\" must be a list")?;
        for (index, worker) in workers.iter().enumerate() {
            let context = format!("worker {}", index + 1);
            let worker = worker
                .as_object()
                .ok_or_else(|| format!("{context}: must be an object"))?;
            let kind = worker.get("type").and_then(Value::as_str).unwrap_or("");
            if kind == "router" {
                self.router(&context, worker)?;
            } else {
                let what = match kind {
                    "container" => "a container worker (it runs application components)",
                    "guest" => "a guest worker (it runs a program)",
                    "proxy" => "a proxy worker (kreisel has no proxy workers; run kreisel instances instead)",
                    "" => "a worker without \"type\"",
                    _ => "a worker of this type",
                };
                self.warn_top(
                    &context,
                    format!(
                        "{what}: type \"{kind}\" (kreisel runs no workers, components or programs)"
                    ),
                );
            }
        }
        Ok(())
    }

    fn controller(&mut self, controller: &Value) {
        let Some(controller) = controller.as_object() else {
            return;
        };
        let keys: Vec<&str> = controller
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "id")
            .collect();
        if !keys.is_empty() {
            self.warn_top(
                "controller",
                format!(
                    "node controller settings {} (kreisel has no node controller)",
                    list(&keys)
                ),
            );
        }
    }

    fn router(&mut self, context: &str, worker: &Map<String, Value>) -> Result<(), String> {
        for (key, value) in worker {
            match key.as_str() {
                "type" | "id" | "realms" | "transports" => {}
                "components" => {
                    let n = value.as_array().map_or(0, Vec::len);
                    if n > 0 {
                        self.warn_top(
                            context,
                            format!("{n} router component(s) (kreisel runs no components)"),
                        );
                    }
                }
                "connections" => self.warn_top(
                    context,
                    "router \"connections\" (kreisel runs no components)".into(),
                ),
                "options" => {
                    let keys: Vec<&str> = value
                        .as_object()
                        .map(|o| o.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    if !keys.is_empty() {
                        self.warn_top(context, format!("router worker options {}", list(&keys)));
                    }
                }
                "manhole" => self.warn_top(context, "the manhole (a debugging shell)".into()),
                other => self.warn_top(context, format!("router \"{other}\"")),
            }
        }
        let empty = Vec::new();
        let transports = match worker.get("transports") {
            Some(t) => t
                .as_array()
                .ok_or_else(|| format!("{context}: \"transports\" must be a list"))?,
            None => &empty,
        };
        // Listeners, and the authentication of every transport that speaks WAMP.
        let mut auths: Vec<(String, Option<Value>)> = Vec::new();
        for (index, transport) in transports.iter().enumerate() {
            let tcontext = format!("{context}, transport {}", index + 1);
            let transport = transport
                .as_object()
                .ok_or_else(|| format!("{tcontext}: must be an object"))?;
            self.transport(&tcontext, transport, &mut auths)?;
        }
        let auth = self.merge_auth(context, &auths);
        let realms = match worker.get("realms") {
            Some(r) => r
                .as_array()
                .ok_or_else(|| format!("{context}: \"realms\" must be a list"))?,
            None => &empty,
        };
        for realm in realms {
            let realm = realm
                .as_object()
                .ok_or_else(|| format!("{context}: every realm must be an object"))?;
            self.realm(context, realm, &auth)?;
        }
        Ok(())
    }

    // ---- realms, roles, permissions ------------------------------------------------------------------------------

    fn realm(
        &mut self,
        context: &str,
        realm: &Map<String, Value>,
        auth: &WorkerAuth,
    ) -> Result<(), String> {
        let name = realm
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{context}: a realm without \"name\""))?
            .to_string();
        let context = format!("realm '{name}'");
        let mut notes = Vec::new();
        if self.out.realms.iter().any(|r| r.name == name) {
            self.warn_top(
                &context,
                "defined by two router workers: the second is left out (kreisel is one router)"
                    .into(),
            );
            return Ok(());
        }
        let mut uri_check = None;
        for (key, value) in realm {
            match key.as_str() {
                "name" | "roles" => {}
                "options" => {
                    for (option, value) in value.as_object().into_iter().flatten() {
                        match (option.as_str(), value.as_str()) {
                            ("uri_check", Some("strict")) => uri_check = Some("strict"),
                            ("uri_check", Some("loose")) => uri_check = Some("loose"),
                            ("enable_meta_api", _) if value == &Value::Bool(true) => {}
                            ("enable_meta_api", _) => self.warn(
                                &mut notes,
                                &context,
                                "enable_meta_api = false (kreisel always offers the meta API; protect it with \
                                 permissions on wamp.*)"
                                    .into(),
                            ),
                            _ => self.warn(
                                &mut notes,
                                &context,
                                format!("realm option \"{option}\" = {value}"),
                            ),
                        }
                    }
                }
                "store" => self.warn(
                    &mut notes,
                    &context,
                    "the realm store (event history; kreisel keeps only retained events)".into(),
                ),
                "rlinks" => self.warn(
                    &mut notes,
                    &context,
                    "router-to-router links (rlinks)".into(),
                ),
                other => self.warn(&mut notes, &context, format!("realm \"{other}\"")),
            }
        }
        let mut roles: Vec<RoleOut> = Vec::new();
        for role in realm
            .get("roles")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let role = role
                .as_object()
                .ok_or_else(|| format!("{context}: every role must be an object"))?;
            let check = match uri_check {
                Some("strict") => UriCheck::Strict,
                _ => UriCheck::Loose,
            };
            let out = self.role(&context, role, check)?;
            // crossbar keeps the last role of a name.
            if let Some(at) = roles.iter().position(|r| r.name == out.name) {
                let name = out.name.clone();
                self.warn(
                    &mut notes,
                    &context,
                    format!("role '{name}' is defined twice: the last definition counts, as in crossbar"),
                );
                roles.remove(at);
            }
            roles.push(out);
        }
        let defined: HashSet<String> = roles.iter().map(|r| r.name.clone()).collect();
        let builtin = |name: &str, roles: &mut Vec<RoleOut>| {
            if !defined.contains(name) && !roles.iter().any(|r| r.name == name) {
                roles.push(builtin_role(name));
            }
        };
        // Anonymous access.
        let mut anonymous_role = None;
        if let Some(role) = &auth.anonymous {
            if role == TRUSTED || role == ANONYMOUS || defined.contains(role) {
                builtin(role, &mut roles);
                anonymous_role = Some(role.clone());
            } else {
                self.warn(
                    &mut notes,
                    &context,
                    format!(
                        "anonymous access with role '{role}', which the realm does not have (crossbar refuses \
                         such sessions, so anonymous access stays off)"
                    ),
                );
            }
        }
        // Principals: those whose role the realm has (or a built-in one) and that are not meant for another realm.
        let mut principals = Vec::new();
        let mut pubkeys: HashSet<String> = HashSet::new();
        for principal in &auth.principals {
            if principal.realm.as_ref().is_some_and(|r| r != &name) {
                continue;
            }
            let role = &principal.role;
            if !(role == TRUSTED || role == ANONYMOUS || defined.contains(role)) {
                self.warn(
                    &mut notes,
                    &context,
                    format!(
                        "principal '{}': its role '{role}' is not a role of the realm (crossbar refuses it here)",
                        principal.authid
                    ),
                );
                continue;
            }
            builtin(role, &mut roles);
            let mut principal = principal.clone();
            let before = principal.pubkeys.len();
            principal.pubkeys.retain(|k| pubkeys.insert(k.clone()));
            if principal.pubkeys.len() < before {
                self.warn(
                    &mut notes,
                    &context,
                    format!(
                        "principal '{}': a cryptosign key that an earlier principal has too (kreisel finds the \
                         principal by its key)",
                        principal.authid
                    ),
                );
            }
            if principal.ticket.is_none()
                && principal.wampcra.is_none()
                && principal.pubkeys.is_empty()
            {
                continue;
            }
            principals.push(principal);
        }
        self.out.realms.push(RealmOut {
            name,
            uri_check,
            anonymous_role,
            principals,
            roles,
            notes,
        });
        Ok(())
    }

    fn role(
        &mut self,
        context: &str,
        role: &Map<String, Value>,
        check: UriCheck,
    ) -> Result<RoleOut, String> {
        let name = role
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{context}: a role without \"name\""))?
            .to_string();
        let context = format!("{context}, role '{name}'");
        let mut notes = Vec::new();
        for key in role.keys() {
            match key.as_str() {
                "name" | "permissions" => {}
                "authorizer" => self.warn(
                    &mut notes,
                    &context,
                    format!(
                        "the dynamic authorizer {} (kreisel has static permissions only; the role allows nothing)",
                        role.get("authorizer").unwrap_or(&Value::Null)
                    ),
                ),
                other => self.warn(&mut notes, &context, format!("role \"{other}\"")),
            }
        }
        // crossbar keeps one permission per URI among exact and prefix rules (the last), and one wildcard rule per
        // part before the first "..": the later ones replace the earlier ones.
        let mut rules: Vec<RuleOut> = Vec::new();
        for permission in role
            .get("permissions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(permission) = permission.as_object() else {
                return Err(format!("{context}: every permission must be an object"));
            };
            let Some(rule) = self.permission(&context, &mut notes, permission, check) else {
                continue;
            };
            let key = crossbar_key(&rule);
            if let Some(at) = rules.iter().position(|r| crossbar_key(r) == key) {
                let earlier = &rules[at];
                let text = format!(
                    "the rule for '{}' ({}) is replaced by the later one for '{}' ({}), as crossbar does",
                    earlier.uri,
                    earlier.policy.name(),
                    rule.uri,
                    rule.policy.name()
                );
                self.warn(&mut notes, &context, text);
                rules.remove(at);
            }
            rules.push(rule);
        }
        self.crossbar_precedence(&context, &mut notes, &mut rules);
        Ok(RoleOut { name, rules, notes })
    }

    fn permission(
        &mut self,
        context: &str,
        notes: &mut Vec<String>,
        permission: &Map<String, Value>,
        check: UriCheck,
    ) -> Option<RuleOut> {
        let Some(uri) = permission.get("uri").and_then(Value::as_str) else {
            self.warn(notes, context, "a permission without \"uri\"".into());
            return None;
        };
        let (uri, policy) = match permission.get("match").and_then(Value::as_str) {
            Some("exact") => (uri.to_string(), MatchPolicy::Exact),
            Some("prefix") => (uri.to_string(), MatchPolicy::Prefix),
            Some("wildcard") => (uri.to_string(), MatchPolicy::Wildcard),
            Some(other) => {
                self.warn(
                    notes,
                    context,
                    format!("the permission for '{uri}' with match \"{other}\""),
                );
                return None;
            }
            None => starred(uri),
        };
        let flags = |key: &str, names: &[&'static str]| -> Vec<&'static str> {
            let map = permission.get(key).and_then(Value::as_object);
            names
                .iter()
                .copied()
                .filter(|n| map.and_then(|m| m.get(*n)) == Some(&Value::Bool(true)))
                .collect()
        };
        let allow = flags("allow", &ACTIONS);
        let disclose = flags("disclose", &["caller", "publisher"]);
        let mut note = None;
        if permission.contains_key("validate") {
            let text = format!("payload validation (\"validate\") of the rule for '{uri}'");
            self.out.warnings.push(format!("{context}: {text}"));
            note = Some(format!("not carried over: {text}"));
        }
        if let Some(problem) = rule_problem(&uri, policy, check) {
            self.warn(
                notes,
                context,
                format!(
                    "the rule for '{uri}' ({}): not a URI pattern kreisel accepts: {problem} (a URI no rule \
                     matches is denied)",
                    policy.name()
                ),
            );
            return None;
        }
        Some(RuleOut {
            uri,
            policy,
            allow,
            disclose,
            note,
        })
    }

    /// Makes kreisel decide like crossbar where their precedence differs, or warns where it cannot:
    /// - crossbar looks up the longest rule URI that is a string prefix of the requested URI among exact and prefix
    ///   rules; an exact rule found that way for a longer URI denies it (it does not fall back to a shorter
    ///   prefix rule). kreisel would apply the shorter prefix rule, so for an exact rule under a prefix rule the
    ///   importer adds a prefix rule on the same URI that allows nothing.
    /// - a matching wildcard rule wins over a prefix rule in crossbar, a prefix rule over a wildcard rule in
    ///   kreisel: warned when both could match one URI.
    fn crossbar_precedence(
        &mut self,
        context: &str,
        notes: &mut Vec<String>,
        rules: &mut Vec<RuleOut>,
    ) {
        let mut added = Vec::new();
        for rule in rules.iter() {
            if rule.policy != MatchPolicy::Exact {
                continue;
            }
            let covered = rules.iter().any(|p| {
                p.policy == MatchPolicy::Prefix
                    && p.uri.len() < rule.uri.len()
                    && rule.uri.starts_with(&p.uri)
            });
            let taken = rules
                .iter()
                .any(|p| p.policy == MatchPolicy::Prefix && p.uri == rule.uri);
            if covered && !taken && uri::is_valid(&rule.uri, UriCheck::Loose, MatchPolicy::Prefix) {
                added.push(RuleOut {
                    uri: rule.uri.clone(),
                    policy: MatchPolicy::Prefix,
                    allow: Vec::new(),
                    disclose: Vec::new(),
                    note: Some(format!(
                        "added: crossbar denies the URIs that start with '{}' but are longer (its exact rule \
                         shadows shorter prefix rules)",
                        rule.uri
                    )),
                });
            }
        }
        rules.extend(added);
        for wildcard in rules.iter().filter(|r| r.policy == MatchPolicy::Wildcard) {
            let head = wildcard_head(&wildcard.uri);
            let overlapping = rules.iter().find(|p| {
                p.policy == MatchPolicy::Prefix
                    && (head.starts_with(&p.uri) || p.uri.starts_with(head))
            });
            if let Some(prefix) = overlapping {
                let text = format!(
                    "precedence of the wildcard rule '{}' over the prefix rule '{}' (crossbar lets a matching \
                     wildcard rule win, kreisel the prefix rule: URIs both match are decided by the prefix rule)",
                    wildcard.uri, prefix.uri
                );
                self.out.warnings.push(format!("{context}: {text}"));
                notes.push(format!("not carried over: {text}"));
            }
        }
    }

    // ---- transports ----------------------------------------------------------------------------------------------

    fn transport(
        &mut self,
        context: &str,
        transport: &Map<String, Value>,
        auths: &mut Vec<(String, Option<Value>)>,
    ) -> Result<(), String> {
        let kind = transport.get("type").and_then(Value::as_str).unwrap_or("");
        let context = format!("{context} ({kind})");
        let mut notes = Vec::new();
        let mut listener = ListenerOut {
            origin: format!("crossbar {context}"),
            listen: String::new(),
            transports: Vec::new(),
            path: None,
            serializers: None,
            tls: None,
            notes: Vec::new(),
        };
        let mut serializers: Vec<Vec<&'static str>> = Vec::new();
        let mut all_serializers = false;
        match kind {
            "websocket" => {
                listener.transports.push("websocket");
                let path = transport
                    .get("url")
                    .and_then(Value::as_str)
                    .and_then(url_path)
                    .unwrap_or_else(|| "/".into());
                let text = format!(
                    "WebSocket on every URL path (crossbar's WebSocket transport answers on any path; kreisel only \
                     on \"{path}\")"
                );
                self.warn(&mut notes, &context, text);
                listener.path = Some(path);
                self.websocket_service(
                    &context,
                    &mut notes,
                    transport,
                    &mut serializers,
                    &mut all_serializers,
                    &["url"],
                );
                auths.push((context.clone(), transport.get("auth").cloned()));
            }
            "rawsocket" => {
                listener.transports.push("rawsocket");
                self.rawsocket_service(
                    &context,
                    &mut notes,
                    transport,
                    &mut serializers,
                    &mut all_serializers,
                );
                auths.push((context.clone(), transport.get("auth").cloned()));
            }
            "web" => {
                let paths = transport.get("paths").and_then(Value::as_object);
                let found = self.web_paths(
                    &context,
                    &mut notes,
                    paths,
                    "",
                    auths,
                    &mut serializers,
                    &mut all_serializers,
                );
                if let Some(path) = found {
                    listener.transports.push("websocket");
                    listener.path = Some(path);
                }
                self.web_options(&context, &mut notes, transport);
            }
            "universal" => {
                for (key, value) in transport {
                    match key.as_str() {
                        "type" | "id" | "endpoint" | "max_connections" => {}
                        "rawsocket" => {
                            let Some(raw) = value.as_object() else {
                                continue;
                            };
                            listener.transports.push("rawsocket");
                            let rcontext = format!("{context}, rawsocket");
                            self.rawsocket_service(
                                &rcontext,
                                &mut notes,
                                raw,
                                &mut serializers,
                                &mut all_serializers,
                            );
                            auths.push((rcontext, raw.get("auth").cloned()));
                        }
                        "websocket" => {
                            let paths = value.as_object();
                            let found = self.web_paths(
                                &context,
                                &mut notes,
                                paths,
                                "",
                                auths,
                                &mut serializers,
                                &mut all_serializers,
                            );
                            if let Some(path) = found {
                                if listener.path.is_none() {
                                    listener.path = Some(path);
                                    listener.transports.push("websocket");
                                }
                            }
                        }
                        "web" => {
                            let Some(web) = value.as_object() else {
                                continue;
                            };
                            let paths = web.get("paths").and_then(Value::as_object);
                            if listener.path.is_some() {
                                let extra = self.web_paths(
                                    &context,
                                    &mut notes,
                                    paths,
                                    "",
                                    auths,
                                    &mut serializers,
                                    &mut all_serializers,
                                );
                                if let Some(path) = extra {
                                    self.warn(&mut notes, &context, format!("the WebSocket path \"{path}\" (kreisel serves one WebSocket path per listener)"));
                                }
                            } else if let Some(path) = self.web_paths(
                                &context,
                                &mut notes,
                                paths,
                                "",
                                auths,
                                &mut serializers,
                                &mut all_serializers,
                            ) {
                                listener.path = Some(path);
                                listener.transports.push("websocket");
                            }
                            self.web_options(&context, &mut notes, web);
                        }
                        "mqtt" => self.warn(
                            &mut notes,
                            &context,
                            "the MQTT transport (kreisel speaks WAMP only)".into(),
                        ),
                        other => self.warn(
                            &mut notes,
                            &context,
                            format!("universal transport \"{other}\""),
                        ),
                    }
                }
            }
            "mqtt" => {
                self.warn_top(
                    &context,
                    "the MQTT transport (kreisel speaks WAMP only)".into(),
                );
                return Ok(());
            }
            other => {
                self.warn_top(&context, format!("a transport of type \"{other}\""));
                return Ok(());
            }
        }
        if let Some(n) = transport.get("max_connections") {
            self.warn(
                &mut notes,
                &context,
                format!("max_connections = {n} per transport (kreisel's limit is limits.connections_max, for all listeners)"),
            );
        }
        if listener.transports.is_empty() {
            self.warn_top(
                &context,
                "the transport carries no WAMP (no WebSocket path, no RawSocket): no listener"
                    .into(),
            );
            self.out.notes.extend(notes);
            return Ok(());
        }
        // Serializers: what the crossbar services offered (all of kreisel's when one offered every serializer).
        if !all_serializers {
            let mut union: Vec<&'static str> = Vec::new();
            for list in &serializers {
                for s in list {
                    if !union.contains(s) {
                        union.push(s);
                    }
                }
            }
            if serializers.len() > 1 && serializers.iter().any(|l| sorted(l) != sorted(&union)) {
                self.warn(
                    &mut notes,
                    &context,
                    format!("different serializers on RawSocket and WebSocket (kreisel offers {} on both)", union.join(", ")),
                );
            }
            if union.is_empty() {
                self.warn_top(&context, "none of its serializers is one kreisel speaks (json, msgpack, cbor): no listener".into());
                self.out.notes.extend(notes);
                return Ok(());
            }
            listener.serializers = Some(union);
        }
        let Some(endpoint) = transport.get("endpoint").and_then(Value::as_object) else {
            self.warn_top(
                &context,
                "a transport without \"endpoint\": no listener".into(),
            );
            self.out.notes.extend(notes);
            return Ok(());
        };
        match self.endpoint(&context, &mut notes, endpoint) {
            Some((listen, tls)) => {
                listener.listen = listen;
                listener.tls = tls;
            }
            None => {
                self.out.notes.extend(notes);
                return Ok(());
            }
        }
        if self
            .out
            .listeners
            .iter()
            .any(|l| l.listen == listener.listen)
        {
            let text = format!(
                "the listener on {}: its address is taken by an earlier transport",
                listener.listen
            );
            self.warn_top(&context, text);
            self.out.notes.extend(notes);
            return Ok(());
        }
        listener.notes = notes;
        self.out.listeners.push(listener);
        Ok(())
    }

    /// The WebSocket paths of a Web transport's `paths` (recursing into `path` services): returns the first one
    /// (kreisel serves one per listener) and warns about the others and every HTTP service.
    #[allow(clippy::too_many_arguments)]
    fn web_paths(
        &mut self,
        context: &str,
        notes: &mut Vec<String>,
        paths: Option<&Map<String, Value>>,
        prefix: &str,
        auths: &mut Vec<(String, Option<Value>)>,
        serializers: &mut Vec<Vec<&'static str>>,
        all_serializers: &mut bool,
    ) -> Option<String> {
        let mut found: Option<String> = None;
        for (key, service) in sorted_entries(paths) {
            let path = if key == "/" {
                if prefix.is_empty() {
                    "/".to_string()
                } else {
                    prefix.to_string()
                }
            } else {
                format!("{prefix}/{}", key.trim_start_matches('/'))
            };
            let Some(service) = service.as_object() else {
                continue;
            };
            let kind = service.get("type").and_then(Value::as_str).unwrap_or("");
            match kind {
                "websocket" => {
                    if let Some(first) = &found {
                        self.warn(
                            notes,
                            context,
                            format!(
                                "the WebSocket path \"{path}\" (kreisel serves one WebSocket path per listener: \
                                 \"{first}\")"
                            ),
                        );
                        continue;
                    }
                    let pcontext = format!("{context}, path \"{path}\"");
                    self.websocket_service(
                        &pcontext,
                        notes,
                        service,
                        serializers,
                        all_serializers,
                        &["url"],
                    );
                    auths.push((pcontext, service.get("auth").cloned()));
                    found = Some(path);
                }
                "path" => {
                    let nested = service.get("paths").and_then(Value::as_object);
                    let inner = self.web_paths(
                        context,
                        notes,
                        nested,
                        &path,
                        auths,
                        serializers,
                        all_serializers,
                    );
                    match (&found, inner) {
                        (None, Some(inner)) => found = Some(inner),
                        (Some(first), Some(inner)) => self.warn(
                            notes,
                            context,
                            format!(
                                "the WebSocket path \"{inner}\" (kreisel serves one WebSocket path per listener: \
                                 \"{first}\")"
                            ),
                        ),
                        _ => {}
                    }
                }
                other => {
                    let why = match other {
                        "publisher" | "caller" | "webhook" => "HTTP bridge services",
                        "static" | "archive" | "resource" | "json" | "redirect" | "nodeinfo" => {
                            "web content"
                        }
                        "wsgi" | "cgi" | "reverseproxy" | "websocket-reverseproxy" | "upload" => {
                            "web applications"
                        }
                        "longpoll" => "WAMP long-poll",
                        _ => "HTTP services",
                    };
                    self.warn(
                        notes,
                        context,
                        format!(
                            "the HTTP service \"{other}\" at \"{path}\" (kreisel serves no {why})"
                        ),
                    );
                }
            }
        }
        found
    }

    fn websocket_service(
        &mut self,
        context: &str,
        notes: &mut Vec<String>,
        service: &Map<String, Value>,
        serializers: &mut Vec<Vec<&'static str>>,
        all_serializers: &mut bool,
        known: &[&str],
    ) {
        for (key, value) in service {
            match key.as_str() {
                "type" | "id" | "serializers" | "auth" | "endpoint" | "max_connections" => {}
                "options" => self.websocket_options(context, notes, value),
                "cookie" => self.warn(
                    notes,
                    context,
                    "cookie tracking and cookie authentication".into(),
                ),
                "debug" => {}
                k if known.contains(&k) => {}
                other => self.warn(notes, context, format!("WebSocket \"{other}\"")),
            }
        }
        self.serializers(context, notes, service, serializers, all_serializers);
    }

    fn rawsocket_service(
        &mut self,
        context: &str,
        notes: &mut Vec<String>,
        service: &Map<String, Value>,
        serializers: &mut Vec<Vec<&'static str>>,
        all_serializers: &mut bool,
    ) {
        for (key, value) in service {
            match key.as_str() {
                "type" | "id" | "serializers" | "auth" | "endpoint" | "max_connections"
                | "debug" => {}
                "max_message_size" => self.message_max(context, notes, value),
                "options" => {
                    for (option, value) in value.as_object().into_iter().flatten() {
                        match option.as_str() {
                            "max_message_size" => self.message_max(context, notes, value),
                            other => self.warn(
                                notes,
                                context,
                                format!("RawSocket option \"{other}\" = {value}"),
                            ),
                        }
                    }
                }
                other => self.warn(notes, context, format!("RawSocket \"{other}\"")),
            }
        }
        self.serializers(context, notes, service, serializers, all_serializers);
    }

    fn serializers(
        &mut self,
        context: &str,
        notes: &mut Vec<String>,
        service: &Map<String, Value>,
        serializers: &mut Vec<Vec<&'static str>>,
        all_serializers: &mut bool,
    ) {
        let Some(list) = service.get("serializers").and_then(Value::as_array) else {
            // crossbar offers every serializer it has when none are named; so does kreisel.
            *all_serializers = true;
            return;
        };
        let mut kept = Vec::new();
        for name in list {
            match name.as_str() {
                Some("json") => kept.push("json"),
                Some("msgpack") => kept.push("msgpack"),
                Some("cbor") => kept.push("cbor"),
                _ => self.warn(
                    notes,
                    context,
                    format!("the serializer {name} (kreisel speaks json, msgpack, cbor)"),
                ),
            }
        }
        serializers.push(kept);
    }

    fn websocket_options(&mut self, context: &str, notes: &mut Vec<String>, options: &Value) {
        let Some(options) = options.as_object() else {
            return;
        };
        let mut ignored = Vec::new();
        for (option, value) in options {
            match option.as_str() {
                "max_message_size" => self.message_max(context, notes, value),
                "auto_ping_interval" => {
                    let interval = value.as_u64().unwrap_or(0);
                    let timeout = options
                        .get("auto_ping_timeout")
                        .and_then(Value::as_u64)
                        .unwrap_or(0);
                    if interval > 0 {
                        self.auto_ping(context, notes, interval, timeout);
                    }
                }
                "auto_ping_timeout" => {}
                _ => ignored.push(option.as_str()),
            }
        }
        if !ignored.is_empty() {
            self.warn(
                notes,
                context,
                format!("WebSocket options {}", list(&ignored)),
            );
        }
    }

    fn web_options(&mut self, context: &str, notes: &mut Vec<String>, web: &Map<String, Value>) {
        if let Some(options) = web.get("options").and_then(Value::as_object) {
            let keys: Vec<&str> = options.keys().map(String::as_str).collect();
            if !keys.is_empty() {
                self.warn(
                    notes,
                    context,
                    format!("Web transport options {}", list(&keys)),
                );
            }
        }
    }

    fn message_max(&mut self, context: &str, notes: &mut Vec<String>, value: &Value) {
        let Some(size) = value.as_u64() else {
            self.warn(notes, context, format!("max_message_size = {value}"));
            return;
        };
        let clamped = size.clamp(512, 1 << 24);
        if clamped != size {
            self.warn(
                notes,
                context,
                format!("max_message_size = {size} exactly (kreisel's limits.message_max is within 512 ..= 16777216: {clamped})"),
            );
        }
        match &self.out.limits.message_max {
            Some((max, _)) if *max >= clamped => {
                if *max != clamped {
                    let text = format!(
                        "max_message_size = {size} for this transport alone (kreisel's limits.message_max holds for \
                         every listener: the largest, {max}, is taken)"
                    );
                    self.warn(notes, context, text);
                }
            }
            Some((max, _)) => {
                let text = format!(
                    "max_message_size = {max} of an earlier transport (kreisel's limits.message_max holds for every \
                     listener: the largest, {clamped}, is taken)"
                );
                self.warn(notes, context, text);
                self.out.limits.message_max = Some((clamped, context.to_string()));
            }
            None => self.out.limits.message_max = Some((clamped, context.to_string())),
        }
    }

    fn auto_ping(&mut self, context: &str, notes: &mut Vec<String>, interval: u64, timeout: u64) {
        match &self.out.limits.auto_ping {
            Some((i, t, first)) if (*i, *t) != (interval, timeout) => {
                let text = format!(
                    "auto_ping_interval = {interval}, auto_ping_timeout = {timeout} (kreisel's limits hold for every \
                     listener: those of {first} are taken)"
                );
                self.warn(notes, context, text);
            }
            Some(_) => {}
            None => self.out.limits.auto_ping = Some((interval, timeout, context.to_string())),
        }
    }

    /// The listen address and TLS files of a listening endpoint, or `None` (warned) when kreisel cannot listen
    /// there.
    fn endpoint(
        &mut self,
        context: &str,
        notes: &mut Vec<String>,
        endpoint: &Map<String, Value>,
    ) -> Option<(String, Option<TlsOut>)> {
        let kind = endpoint.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "tcp" => {
                let port = match endpoint.get("port") {
                    Some(Value::Number(n)) => n
                        .as_u64()
                        .and_then(|p| u16::try_from(p).ok())
                        .filter(|p| *p > 0),
                    _ => None,
                };
                let Some(port) = port else {
                    let what = match endpoint.get("port") {
                        Some(Value::String(s)) => format!(
                            "the port from the environment variable {s} (kreisel needs the number)"
                        ),
                        Some(other) => format!("the port {other}"),
                        None if endpoint.contains_key("portrange") => {
                            "a port range (kreisel listens on one port)".into()
                        }
                        None => "an endpoint without port".into(),
                    };
                    self.warn_top(context, format!("{what}: no listener"));
                    return None;
                };
                let v6 = endpoint.get("version").and_then(Value::as_u64) == Some(6);
                let interface = endpoint
                    .get("interface")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .trim();
                let ip: IpAddr = match interface {
                    "" if v6 => IpAddr::from([0u16; 8]),
                    "" => IpAddr::from([0u8; 4]),
                    "localhost" if v6 => IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1u16]),
                    "localhost" => IpAddr::from([127, 0, 0, 1]),
                    other => match other.parse() {
                        Ok(ip) => ip,
                        Err(_) => {
                            self.warn_top(
                                context,
                                format!("the interface \"{other}\" (kreisel needs a numeric IP address): no listener"),
                            );
                            return None;
                        }
                    },
                };
                if interface.is_empty() {
                    notes.push(
                        "every interface, as crossbar listens when the endpoint names none".into(),
                    );
                }
                let listen = std::net::SocketAddr::new(ip, port).to_string();
                let mut ignored = Vec::new();
                for key in endpoint.keys() {
                    match key.as_str() {
                        "type" | "port" | "interface" | "version" | "tls" => {}
                        other => ignored.push(other),
                    }
                }
                if !ignored.is_empty() {
                    self.warn(
                        notes,
                        context,
                        format!("endpoint options {}", list(&ignored)),
                    );
                }
                let tls = match endpoint.get("tls").and_then(Value::as_object) {
                    Some(tls) => Some(self.tls(context, notes, tls)?),
                    None => None,
                };
                Some((listen, tls))
            }
            "unix" => {
                let Some(path) = endpoint.get("path").and_then(Value::as_str) else {
                    self.warn_top(context, "a Unix endpoint without path: no listener".into());
                    return None;
                };
                if path.contains('$') {
                    self.warn(
                        notes,
                        context,
                        format!(
                            "environment variables in the socket path \"{path}\" (taken literally)"
                        ),
                    );
                }
                if endpoint.contains_key("backlog") {
                    self.warn(notes, context, "endpoint options \"backlog\"".into());
                }
                Some((format!("unix:{}", self.dir.join(path).display()), None))
            }
            other => {
                self.warn_top(
                    context,
                    format!("an endpoint of type \"{other}\": no listener"),
                );
                None
            }
        }
    }

    fn tls(
        &mut self,
        context: &str,
        notes: &mut Vec<String>,
        tls: &Map<String, Value>,
    ) -> Option<TlsOut> {
        let file = |key: &str| {
            tls.get(key)
                .and_then(Value::as_str)
                .map(|p| self.dir.join(p))
        };
        let (Some(certificate), Some(key)) = (file("certificate"), file("key")) else {
            self.warn_top(
                context,
                "a TLS endpoint without certificate or key: no listener".into(),
            );
            return None;
        };
        let mut client_ca = None;
        for (name, value) in tls {
            match name.as_str() {
                "certificate" | "key" => {}
                "ca_certificates" => {
                    let files: Vec<&str> = value
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    match files.as_slice() {
                        [] => {}
                        [one] => client_ca = Some(self.dir.join(one)),
                        [first, ..] => {
                            client_ca = Some(self.dir.join(first));
                            let text = format!(
                                "ca_certificates after the first ({}): kreisel reads the client CAs from one PEM \
                                 file (client_ca): put them all into one file",
                                files[1..].join(", ")
                            );
                            self.warn(notes, context, text);
                        }
                    }
                }
                "chain_certificates" => {
                    let files: Vec<&str> = value
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    let text = format!(
                        "chain_certificates {} (kreisel reads the chain from the certificate file, leaf first: \
                         append them to {})",
                        files.join(", "),
                        certificate.display()
                    );
                    self.warn(notes, context, text);
                }
                "dhparam" | "ciphers" => self.warn(
                    notes,
                    context,
                    format!("TLS \"{name}\" (kreisel uses rustls' cipher suites and key exchange)"),
                ),
                other => self.warn(notes, context, format!("TLS \"{other}\"")),
            }
        }
        Some(TlsOut {
            certificate,
            key,
            client_ca,
        })
    }

    // ---- authentication ------------------------------------------------------------------------------------------

    /// Merges the authentication of a router worker's transports.
    fn merge_auth(&mut self, context: &str, auths: &[(String, Option<Value>)]) -> WorkerAuth {
        let mut merged = WorkerAuth::default();
        if auths.is_empty() {
            return merged;
        }
        let first = &auths[0].1;
        if auths.iter().any(|(_, auth)| auth != first) {
            let which: Vec<String> = auths
                .iter()
                .map(|(c, a)| {
                    let methods: Vec<&str> = match a {
                        Some(Value::Object(m)) => m.keys().map(String::as_str).collect(),
                        _ => vec!["anonymous (no \"auth\")"],
                    };
                    format!("{c}: {}", methods.join(", "))
                })
                .collect();
            self.warn_top(
                context,
                format!(
                    "authentication per transport (kreisel authenticates per realm: every listener accepts the \
                     principals of all these transports) [{}]",
                    which.join("; ")
                ),
            );
        }
        for (tcontext, auth) in auths {
            let Some(auth) = auth else {
                // crossbar lets anyone in as "anonymous" on a transport without "auth".
                merged
                    .anonymous_per_transport
                    .push((tcontext.clone(), Some(ANONYMOUS.into())));
                continue;
            };
            let Some(auth) = auth.as_object() else {
                continue;
            };
            let mut anonymous = None;
            for (method, config) in by_method(auth) {
                let mcontext = format!("{tcontext}, auth {method}");
                let kind = config.get("type").and_then(Value::as_str).unwrap_or("");
                let static_ones = ["anonymous", "ticket", "wampcra", "cryptosign"];
                if static_ones.contains(&method.as_str()) && kind != "static" {
                    let what = match kind {
                        "dynamic" => format!(
                            "the dynamic authenticator {} (kreisel has static principals only)",
                            config.get("authenticator").unwrap_or(&Value::Null)
                        ),
                        "function" => {
                            "the function authenticator (kreisel has static principals only)".into()
                        }
                        _ => format!("authentication of type \"{kind}\""),
                    };
                    self.warn_top(&mcontext, what);
                    continue;
                }
                let default_role = config.get("default-role").and_then(Value::as_str);
                match method.as_str() {
                    "anonymous" => {
                        let role = config.get("role").and_then(Value::as_str).unwrap_or(ANONYMOUS);
                        if let Some(authid) = config.get("authid") {
                            self.warn_top(
                                &mcontext,
                                format!("the fixed anonymous authid {authid} (kreisel names anonymous sessions anonymous-<session>)"),
                            );
                        }
                        anonymous = Some(role.to_string());
                    }
                    "ticket" => {
                        for (authid, p) in principals(config, "principals") {
                            let Some(ticket) = self.secret(&mcontext, authid, p, "ticket") else { continue };
                            let principal = PrincipalOut {
                                ticket: Some(ticket),
                                ..self.principal(authid, p, default_role)
                            };
                            self.add_principal(&mcontext, &mut merged, principal);
                        }
                    }
                    "wampcra" => {
                        for (authid, p) in principals(config, "users") {
                            let Some(secret) = self.secret(&mcontext, authid, p, "secret") else { continue };
                            let Some(wampcra) = self.wampcra(&mcontext, authid, p, secret) else { continue };
                            let principal = PrincipalOut {
                                wampcra: Some(wampcra),
                                ..self.principal(authid, p, default_role)
                            };
                            self.add_principal(&mcontext, &mut merged, principal);
                        }
                    }
                    "cryptosign" => {
                        if config.get("trustroots").is_some() {
                            self.warn_top(&mcontext, "cryptosign trustroots (certificates; kreisel checks raw public keys only)".into());
                        }
                        for (authid, p) in principals(config, "principals") {
                            let mut keys = Vec::new();
                            for key in p.get("authorized_keys").and_then(Value::as_array).into_iter().flatten() {
                                match key.as_str().map(|k| k.trim().to_ascii_lowercase()) {
                                    Some(k) if kreisel_engine::auth::parse_pubkey(&k).is_some() => keys.push(k),
                                    _ => self.warn_top(
                                        &mcontext,
                                        format!("principal '{authid}': the key {key} (not 64 hex digits)"),
                                    ),
                                }
                            }
                            if keys.is_empty() {
                                continue;
                            }
                            let principal = PrincipalOut {
                                pubkeys: keys,
                                ..self.principal(authid, p, default_role)
                            };
                            self.add_principal(&mcontext, &mut merged, principal);
                        }
                    }
                    "scram" => self.warn_top(&mcontext, "WAMP-SCRAM principals (kreisel has no SCRAM)".into()),
                    "tls" => self.warn_top(&mcontext, "TLS client certificate authentication (kreisel checks client certificates against client_ca, but does not authenticate WAMP sessions with them)".into()),
                    "cookie" => self.warn_top(&mcontext, "cookie authentication".into()),
                    other => self.warn_top(&mcontext, format!("the authentication method \"{other}\"")),
                }
            }
            merged
                .anonymous_per_transport
                .push((tcontext.clone(), anonymous));
        }
        self.decide_anonymous(context, &mut merged);
        merged
    }

    /// Anonymous access: kreisel has one anonymous role per realm for all listeners, so it is on only when every
    /// crossbar transport let anonymous clients in with the same role. Otherwise it stays off (a listener must not
    /// let in, unauthenticated, whom its crossbar transport refused, or give them another transport's role).
    fn decide_anonymous(&mut self, context: &str, merged: &mut WorkerAuth) {
        let per_transport = std::mem::take(&mut merged.anonymous_per_transport);
        let Some((_, first)) = per_transport.first() else {
            return;
        };
        if per_transport.iter().all(|(_, role)| role == first) {
            merged.anonymous = first.clone();
            return;
        }
        if per_transport.iter().all(|(_, role)| role.is_none()) {
            return;
        }
        let which: Vec<String> = per_transport
            .iter()
            .map(|(c, role)| match role {
                Some(role) => format!("{c}: role '{role}'"),
                None => format!("{c}: none"),
            })
            .collect();
        self.warn_top(
            context,
            format!(
                "anonymous access, which differs per transport (kreisel has one anonymous role per realm for every \
                 listener, so anonymous access stays off; set `anonymous` and `anonymous_role` if you want it) [{}]",
                which.join("; ")
            ),
        );
    }

    fn principal(
        &self,
        authid: &str,
        p: &Map<String, Value>,
        default_role: Option<&str>,
    ) -> PrincipalOut {
        PrincipalOut {
            authid: authid.to_string(),
            role: p
                .get("role")
                .and_then(Value::as_str)
                .or(default_role)
                .unwrap_or("")
                .to_string(),
            ticket: None,
            wampcra: None,
            pubkeys: Vec::new(),
            realm: p.get("realm").and_then(Value::as_str).map(str::to_string),
            notes: Vec::new(),
        }
    }

    /// A principal's secret, unless it is missing or taken from an environment variable at crossbar's start.
    fn secret(
        &mut self,
        context: &str,
        authid: &str,
        p: &Map<String, Value>,
        key: &str,
    ) -> Option<String> {
        match p.get(key).and_then(Value::as_str) {
            Some(s) if s.starts_with('$') => {
                self.warn_top(
                    context,
                    format!(
                        "principal '{authid}': its {key} comes from the environment variable {s} when crossbar starts \
                         (write the value into the kreisel configuration)"
                    ),
                );
                None
            }
            Some("") | None => {
                self.warn_top(context, format!("principal '{authid}': no {key}"));
                None
            }
            Some(s) => Some(s.to_string()),
        }
    }

    fn wampcra(
        &mut self,
        context: &str,
        authid: &str,
        p: &Map<String, Value>,
        secret: String,
    ) -> Option<WampCra> {
        let salt = p.get("salt").and_then(Value::as_str);
        let iterations = p.get("iterations").and_then(Value::as_u64);
        let keylen = p.get("keylen").and_then(Value::as_u64);
        let (Some(salt), Some(iterations), Some(keylen)) = (salt, iterations, keylen) else {
            if salt.is_some() || iterations.is_some() || keylen.is_some() {
                // crossbar salts only with all three; otherwise the secret is used as it is.
                self.warn_top(
                    context,
                    format!(
                        "principal '{authid}': salt, iterations and keylen only in part (crossbar ignores them then, and \
                         so does the import: the secret is a plain one)"
                    ),
                );
            }
            return Some(WampCra { secret, salt: None });
        };
        let (Ok(iterations), Ok(keylen)) = (u32::try_from(iterations), u32::try_from(keylen))
        else {
            self.warn_top(
                context,
                format!("principal '{authid}': iterations or keylen out of range"),
            );
            return None;
        };
        if iterations == 0 || !(1..=64).contains(&keylen) {
            self.warn_top(
                context,
                format!("principal '{authid}': iterations = {iterations}, keylen = {keylen} (kreisel needs iterations >= 1 and keylen within 1 ..= 64)"),
            );
            return None;
        }
        let params = kreisel_engine::Salt {
            salt: salt.to_string(),
            iterations,
            keylen,
        };
        Some(WampCra {
            secret: kreisel_engine::auth::derive_key(&secret, &params),
            salt: Some((salt.to_string(), iterations, keylen)),
        })
    }

    /// Adds a principal of one method, merging it with the same authid's principal of another method.
    fn add_principal(&mut self, context: &str, merged: &mut WorkerAuth, principal: PrincipalOut) {
        if principal.role.is_empty() {
            self.warn_top(
                context,
                format!(
                    "principal '{}': no role (crossbar refuses it)",
                    principal.authid
                ),
            );
            return;
        }
        if let Some(realm) = &principal.realm {
            let text = format!(
                "principal '{}': crossbar puts it into realm '{realm}' whatever realm its HELLO names; kreisel \
                 lets it into '{realm}' only, when it asks for that realm",
                principal.authid
            );
            self.warn_top(context, text);
        }
        let Some(existing) = merged
            .principals
            .iter_mut()
            .find(|p| p.authid == principal.authid)
        else {
            merged.principals.push(principal);
            return;
        };
        if existing.role != principal.role || existing.realm != principal.realm {
            let text = format!(
                "principal '{}' with role '{}' (kreisel has one role per authid: '{}' of an earlier entry is kept)",
                principal.authid, principal.role, existing.role
            );
            self.warn_top(context, text);
            return;
        }
        let mut clash = false;
        if let Some(ticket) = principal.ticket {
            clash |= existing.ticket.as_ref().is_some_and(|t| t != &ticket);
            existing.ticket.get_or_insert(ticket);
        }
        if let Some(wampcra) = principal.wampcra {
            clash |= existing.wampcra.as_ref().is_some_and(|w| w != &wampcra);
            existing.wampcra.get_or_insert(wampcra);
        }
        for key in principal.pubkeys {
            if !existing.pubkeys.contains(&key) {
                existing.pubkeys.push(key);
            }
        }
        if clash {
            let text = format!(
                "a second, different secret for principal '{}' (kreisel has one per method and authid: the earlier \
                 one is kept)",
                principal.authid
            );
            self.warn_top(context, text);
        }
    }
}

/// The principals of a static authentication configuration: `(authid, settings)`.
fn principals<'a>(config: &'a Value, key: &str) -> Vec<(&'a str, &'a Map<String, Value>)> {
    sorted_entries(config.get(key).and_then(Value::as_object))
        .into_iter()
        .filter_map(|(authid, p)| Some((authid.as_str(), p.as_object()?)))
        .collect()
}

/// A map's entries sorted by key (the same order whatever serde_json's features).
fn sorted_entries(map: Option<&Map<String, Value>>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.into_iter().flatten().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// The authentication methods of a transport in a fixed order: anonymous, ticket, wampcra, cryptosign, then the
/// others by name (when one authid appears under several, the first one's role is kept).
fn by_method(auth: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let rank = |m: &str| {
        ["anonymous", "ticket", "wampcra", "cryptosign"]
            .iter()
            .position(|k| *k == m)
            .unwrap_or(4)
    };
    let mut entries: Vec<_> = auth.iter().collect();
    entries.sort_by(|a, b| (rank(a.0), a.0).cmp(&(rank(b.0), b.0)));
    entries
}

/// A crossbar role that exists without being configured.
fn builtin_role(name: &str) -> RoleOut {
    if name == TRUSTED {
        RoleOut {
            name: name.into(),
            rules: vec![RuleOut {
                uri: String::new(),
                policy: MatchPolicy::Prefix,
                allow: ACTIONS.to_vec(),
                disclose: vec!["caller", "publisher"],
                note: None,
            }],
            notes: vec![
                "crossbar's built-in role 'trusted': everything, caller and publisher disclosed"
                    .into(),
            ],
        }
    } else {
        RoleOut {
            name: name.into(),
            rules: Vec::new(),
            notes: vec![format!(
                "crossbar lets sessions join with role '{name}' although the realm does not define it; they may do nothing"
            )],
        }
    }
}

/// What crossbar keys a permission by: the URI for exact and prefix rules (one trie), the part before the first
/// `..` for wildcard rules (another trie).
fn crossbar_key(rule: &RuleOut) -> (bool, &str) {
    if rule.uri.contains("..") {
        (true, wildcard_head(&rule.uri))
    } else {
        (false, rule.uri.as_str())
    }
}

fn wildcard_head(uri: &str) -> &str {
    match uri.find("..") {
        Some(at) => &uri[..at],
        None => uri,
    }
}

/// The path of a `ws://host:port/path` URL.
fn url_path(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let path = rest.find('/').map_or("/", |at| &rest[at..]);
    let path = path.split(['?', '#']).next().unwrap_or("/");
    Some(if path.is_empty() {
        "/".into()
    } else {
        path.into()
    })
}

fn sorted<'a>(list: &[&'a str]) -> Vec<&'a str> {
    let mut list = list.to_vec();
    list.sort_unstable();
    list
}

fn list(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A TOML string literal, with `${` escaped as `$${` (kreisel reads `${NAME}` as an environment variable).
fn q(text: &str) -> String {
    toml::Value::String(text.replace("${", "$${")).to_string()
}

fn q_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", quoted.join(", "))
}

fn comments(out: &mut String, notes: &[String], indent: &str) {
    for note in notes {
        let _ = writeln!(out, "{indent}# {note}");
    }
}

impl Output {
    fn render(&self, source: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# kreisel configuration imported from the crossbar.io configuration {source}\n\
             # by `kreisel --import-crossbar`. Lines starting with \"# not carried over:\" mark what kreisel does not\n\
             # do; each was also a warning. Check the result with `kreisel --check FILE`."
        );
        if !self.notes.is_empty() {
            out.push('\n');
            comments(&mut out, &self.notes, "");
        }
        for realm in &self.realms {
            out.push_str("\n[[realms]]\n");
            let _ = writeln!(out, "name = {}", q(&realm.name));
            if let Some(check) = realm.uri_check {
                let _ = writeln!(out, "uri_check = {}", q(check));
            }
            match &realm.anonymous_role {
                Some(role) => {
                    let _ = writeln!(out, "anonymous = true\nanonymous_role = {}", q(role));
                }
                None => out.push_str("anonymous = false\n"),
            }
            if realm.roles.is_empty() {
                out.push_str(
                    "roles = []                   # crossbar: a realm without roles lets its sessions do nothing\n",
                );
            }
            comments(&mut out, &realm.notes, "");
            for p in &realm.principals {
                out.push_str("\n[[realms.principals]]\n");
                comments(&mut out, &p.notes, "");
                let _ = writeln!(out, "authid = {}", q(&p.authid));
                let _ = writeln!(out, "role = {}", q(&p.role));
                if let Some(ticket) = &p.ticket {
                    let _ = writeln!(out, "ticket = {}", q(ticket));
                }
                if let Some(wampcra) = &p.wampcra {
                    match &wampcra.salt {
                        None => {
                            let _ = writeln!(out, "wampcra_secret = {}", q(&wampcra.secret));
                        }
                        Some((salt, iterations, keylen)) => {
                            let _ = writeln!(
                                out,
                                "# the key derived from crossbar's salted secret (as `kreisel --derive-key` prints it)\n\
                                 wampcra_secret = {}\nwampcra_salt = {}\nwampcra_iterations = {iterations}\n\
                                 wampcra_keylen = {keylen}",
                                q(&wampcra.secret),
                                q(salt)
                            );
                        }
                    }
                }
                if !p.pubkeys.is_empty() {
                    let keys: Vec<&str> = p.pubkeys.iter().map(String::as_str).collect();
                    let _ = writeln!(out, "cryptosign_pubkeys = {}", q_list(&keys));
                }
            }
            for role in &realm.roles {
                out.push_str("\n[[realms.roles]]\n");
                let _ = writeln!(out, "name = {}", q(&role.name));
                comments(&mut out, &role.notes, "");
                if role.rules.is_empty() {
                    out.push_str("permissions = []\n");
                    continue;
                }
                out.push_str("permissions = [\n");
                for rule in &role.rules {
                    if let Some(note) = &rule.note {
                        let _ = writeln!(out, "  # {note}");
                    }
                    let _ = write!(out, "  {{ uri = {}", q(&rule.uri));
                    if rule.policy != MatchPolicy::Exact {
                        let _ = write!(out, ", match = {}", q(rule.policy.name()));
                    }
                    let _ = write!(out, ", allow = {}", q_list(&rule.allow));
                    if !rule.disclose.is_empty() {
                        let _ = write!(out, ", disclose = {}", q_list(&rule.disclose));
                    }
                    out.push_str(" },\n");
                }
                out.push_str("]\n");
            }
        }
        for listener in &self.listeners {
            let _ = writeln!(out, "\n# {}", listener.origin);
            out.push_str("[[listeners]]\n");
            let _ = writeln!(out, "listen = {}", q(&listener.listen));
            let _ = writeln!(out, "transports = {}", q_list(&listener.transports));
            if let Some(path) = &listener.path {
                let _ = writeln!(out, "path = {}", q(path));
            }
            if let Some(serializers) = &listener.serializers {
                let _ = writeln!(out, "serializers = {}", q_list(serializers));
            }
            comments(&mut out, &listener.notes, "");
            if let Some(tls) = &listener.tls {
                out.push_str("[listeners.tls]\n");
                let _ = writeln!(
                    out,
                    "certificate = {}",
                    q(&tls.certificate.display().to_string())
                );
                let _ = writeln!(out, "key = {}", q(&tls.key.display().to_string()));
                if let Some(ca) = &tls.client_ca {
                    let _ = writeln!(
                        out,
                        "client_ca = {}   # crossbar's ca_certificates: clients must present a certificate",
                        q(&ca.display().to_string())
                    );
                }
            }
        }
        let limits = &self.limits;
        if limits.message_max.is_some() || limits.auto_ping.is_some() {
            out.push_str("\n[limits]\n");
            if let Some((max, from)) = &limits.message_max {
                let _ = writeln!(out, "message_max = {max}   # max_message_size of {from}");
            }
            if let Some((interval, timeout, from)) = &limits.auto_ping {
                let _ = writeln!(
                    out,
                    "auto_ping_ms = {interval}   # auto_ping_interval of {from}"
                );
                if *timeout > 0 {
                    let _ = writeln!(
                        out,
                        "idle_timeout_ms = {}   # auto_ping_interval + auto_ping_timeout: a peer silent that long \
                         (no pong either) is closed",
                        interval + timeout
                    );
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth_config::{Action, Disclose, Match, Permission};
    use crate::config::{Config, Realm};
    use serde_json::json;

    /// Imports `doc` (as if from `/srv/node/.crossbar/config.json`), checks that kreisel loads the result, and
    /// returns the parsed configuration with the import.
    fn import_ok(doc: Value) -> (Config, Imported) {
        let imported = import(&doc, Path::new("/srv/node/.crossbar"), "config.json")
            .unwrap_or_else(|e| panic!("import failed: {e}"));
        check(&imported.toml).unwrap_or_else(|e| panic!("{e}\n{}", imported.toml));
        let config: Config = toml::from_str(&imported.toml).unwrap();
        (config, imported)
    }

    /// A router worker with these realms and transports.
    fn node(realms: Value, transports: Value) -> Value {
        json!({"version": 2, "workers": [{"type": "router", "realms": realms, "transports": transports}]})
    }

    fn rawsocket(port: u16, auth: Option<Value>) -> Value {
        let mut t = json!({"type": "rawsocket", "endpoint": {"type": "tcp", "port": port, "interface": "127.0.0.1"}});
        if let Some(auth) = auth {
            t["auth"] = auth;
        }
        t
    }

    fn open_role(name: &str) -> Value {
        json!({"name": name, "permissions": [{"uri": "", "match": "prefix",
            "allow": {"call": true, "register": true, "publish": true, "subscribe": true}}]})
    }

    /// The warning containing all of `parts` (panics with every warning otherwise).
    fn warned(imported: &Imported, parts: &[&str]) {
        assert!(
            imported
                .warnings
                .iter()
                .any(|w| parts.iter().all(|p| w.contains(p))),
            "no warning with {parts:?} among:\n{}",
            imported.warnings.join("\n")
        );
        // Every warning is also a comment in the output (the last part is of the warning's text, not its context).
        let comment = parts.last().unwrap();
        assert!(
            imported
                .toml
                .lines()
                .any(|l| l.trim_start().starts_with('#') && l.contains(comment)),
            "no comment with {comment:?} in:\n{}",
            imported.toml
        );
    }

    fn rule(uri: &str, policy: Match, allow: &[Action], disclose: &[Disclose]) -> Permission {
        Permission {
            uri: uri.into(),
            policy,
            allow: allow.to_vec(),
            disclose: disclose.to_vec(),
            identify: Vec::new(),
        }
    }

    fn role<'a>(realm: &'a Realm, name: &str) -> &'a [Permission] {
        &realm
            .roles
            .as_ref()
            .unwrap()
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no role {name}"))
            .permissions
    }

    /// What `crossbar init` writes (crossbar 26.10), shortened to what matters here.
    #[test]
    fn the_init_template() {
        let doc = json!({
            "$schema": "https://example.invalid/crossbar.json",
            "version": 2,
            "controller": {},
            "workers": [{
                "type": "router",
                "realms": [{"name": "realm1", "roles": [{"name": "anonymous", "permissions": [{
                    "uri": "", "match": "prefix",
                    "allow": {"call": true, "register": true, "publish": true, "subscribe": true},
                    "disclose": {"caller": false, "publisher": false}, "cache": true}]}]}],
                "transports": [
                    {"type": "rawsocket", "endpoint": {"type": "tcp", "port": 8081, "backlog": 1024},
                     "options": {"max_message_size": 1048576}, "serializers": ["cbor", "msgpack", "json"]},
                    {"type": "web", "endpoint": {"type": "tcp", "port": 8080, "backlog": 1024},
                     "paths": {
                        "/": {"type": "static", "directory": "../web"},
                        "ws": {"type": "websocket", "serializers": ["cbor", "msgpack", "json"],
                               "options": {"allowed_origins": ["*"], "max_message_size": 1048576,
                                           "auto_ping_interval": 10000, "auto_ping_timeout": 5000,
                                           "compression": {"deflate": {}}}},
                        "info": {"type": "nodeinfo"}}}]
            }]
        });
        let (config, imported) = import_ok(doc);
        let realm = &config.realms[0];
        assert_eq!(realm.name, "realm1");
        assert_eq!(realm.anonymous_role(), Some("anonymous"));
        assert!(realm.principals.is_empty());
        let all = [
            Action::Call,
            Action::Register,
            Action::Publish,
            Action::Subscribe,
        ];
        assert_eq!(
            role(realm, "anonymous"),
            [rule("", Match::Prefix, &all, &[])]
        );
        let [raw, ws] = &config.listeners[..] else {
            panic!("{:?}", config.listeners)
        };
        assert_eq!(raw.listen, "0.0.0.0:8081");
        assert_eq!(raw.transports, [crate::config::Transport::Rawsocket]);
        assert_eq!(ws.listen, "0.0.0.0:8080");
        assert_eq!(ws.transports, [crate::config::Transport::Websocket]);
        assert_eq!(ws.path, "/ws");
        assert_eq!(ws.serializers.len(), 3);
        assert_eq!(config.limits.message_max, 1 << 20);
        assert_eq!(config.limits.auto_ping_ms, 10_000);
        assert_eq!(config.limits.idle_timeout_ms, 15_000);
        warned(
            &imported,
            &["transport 2 (web)", "\"static\" at \"/\"", "no web content"],
        );
        warned(&imported, &["\"nodeinfo\" at \"/info\""]);
        warned(
            &imported,
            &[
                "path \"/ws\"",
                "WebSocket options \"allowed_origins\", \"compression\"",
            ],
        );
        warned(
            &imported,
            &["transport 1 (rawsocket)", "endpoint options \"backlog\""],
        );
        assert_eq!(imported.warnings.len(), 5, "{:#?}", imported.warnings);
        assert!(imported.toml.contains("every interface"));
    }

    #[test]
    fn roles_and_permissions() {
        let doc = node(
            json!([{"name": "app", "options": {"uri_check": "strict"}, "roles": [
                {"name": "user", "permissions": [
                    {"uri": "com.app.", "match": "prefix", "allow": {"call": true, "subscribe": true}, "cache": true},
                    {"uri": "com.app.chat", "match": "exact", "allow": {"publish": true, "subscribe": true},
                     "disclose": {"publisher": true}},
                    {"uri": "com.app.audit", "allow": {"call": true}, "disclose": {"caller": true}},
                    {"uri": "com.other.*", "allow": {"subscribe": true}},
                    {"uri": "com.*.status.*", "allow": {"call": true}},
                    {"uri": "com.app..x", "match": "wildcard", "allow": {"register": true},
                     "validate": {"call": "foo"}},
                    {"uri": "bad uri", "match": "exact", "allow": {"call": true}},
                    {"uri": "com.App.x", "match": "exact", "allow": {"call": true}},
                    {"uri": "com.stars.*", "match": "prefix", "allow": {"call": true}},
                    {"uri": "com.app.news", "match": "regex"}
                ]},
                {"name": "dyn", "authorizer": "com.app.authorize"},
                {"name": "twice", "permissions": [
                    {"uri": "a.b", "match": "exact", "allow": {"call": true}},
                    {"uri": "a.b", "match": "prefix", "allow": {"publish": true}},
                    {"uri": "w..x", "match": "wildcard", "allow": {"call": true}},
                    {"uri": "w..y", "match": "wildcard", "allow": {"subscribe": true}}
                ]},
                {"name": "twice", "permissions": [
                    {"uri": "a.b", "match": "exact", "allow": {"call": true}},
                    {"uri": "a.b", "match": "prefix", "allow": {"publish": true}},
                    {"uri": "w..x", "match": "wildcard", "allow": {"call": true}},
                    {"uri": "w..y", "match": "wildcard", "allow": {"subscribe": true}}
                ]},
                open_role("anonymous")
            ]}]),
            json!([rawsocket(9000, None)]),
        );
        let (config, imported) = import_ok(doc);
        let realm = &config.realms[0];
        assert_eq!(realm.uri_check, crate::config::UriRule::Strict);
        use Action::*;
        assert_eq!(
            role(realm, "user"),
            [
                rule("com.app.", Match::Prefix, &[Call, Subscribe], &[]),
                rule(
                    "com.app.chat",
                    Match::Exact,
                    &[Publish, Subscribe],
                    &[Disclose::Publisher]
                ),
                rule("com.app.audit", Match::Exact, &[Call], &[Disclose::Caller]),
                rule("com.other.", Match::Prefix, &[Subscribe], &[]),
                rule("com..status.", Match::Wildcard, &[Call], &[]),
                rule("com.app..x", Match::Wildcard, &[Register], &[]),
                // crossbar denies URIs that only start with an exact rule's URI: added rules say so to kreisel.
                rule("com.app.chat", Match::Prefix, &[], &[]),
                rule("com.app.audit", Match::Prefix, &[], &[]),
            ]
        );
        assert!(imported
            .toml
            .contains("# added: crossbar denies the URIs that start with 'com.app.chat'"));
        warned(
            &imported,
            &[
                "role 'user'",
                "payload validation (\"validate\") of the rule for 'com.app..x'",
            ],
        );
        warned(
            &imported,
            &[
                "role 'user'",
                "the rule for 'bad uri' (exact): not a URI pattern",
            ],
        );
        // The realm's strict URI rule applies to the rules; a star with an explicit match is no pattern.
        warned(
            &imported,
            &[
                "role 'user'",
                "the rule for 'com.App.x' (exact)",
                "component 2 ('App') contains the uppercase letter 'A'",
            ],
        );
        warned(
            &imported,
            &[
                "role 'user'",
                "the rule for 'com.stars.*' (prefix)",
                "kreisel has no `*` in URIs: use match = \"prefix\" with uri = \"com.stars.\"",
            ],
        );
        warned(&imported, &["role 'user'", "match \"regex\""]);
        warned(
            &imported,
            &["wildcard rule 'com.app..x' over the prefix rule 'com.app.'"],
        );
        assert_eq!(role(realm, "dyn"), []);
        warned(
            &imported,
            &["role 'dyn'", "the dynamic authorizer \"com.app.authorize\""],
        );
        // One exact/prefix rule per URI and one wildcard rule per part before "..": the later ones count.
        assert_eq!(
            role(realm, "twice"),
            [
                rule("a.b", Match::Prefix, &[Publish], &[]),
                rule("w..y", Match::Wildcard, &[Subscribe], &[])
            ]
        );
        warned(
            &imported,
            &[
                "role 'twice'",
                "'a.b' (exact) is replaced by the later one for 'a.b' (prefix)",
            ],
        );
        warned(
            &imported,
            &[
                "role 'twice'",
                "'w..x' (wildcard) is replaced by the later one for 'w..y'",
            ],
        );
        warned(&imported, &["realm 'app'", "role 'twice' is defined twice"]);
    }

    /// kreisel reads `${NAME}` in any string as an environment variable: a literal one is written `$${`.
    #[test]
    fn dollar_braces_are_escaped() {
        let auth = json!({"ticket": {"type": "static", "principals": {
            "alice": {"ticket": "a${HOME}b$${c}", "role": "user"}
        }}});
        let doc = node(
            json!([{"name": "app", "roles": [open_role("user")]}]),
            json!([rawsocket(9000, Some(auth))]),
        );
        let imported = import(&doc, Path::new("/srv/node/.crossbar"), "config.json").unwrap();
        let config = Config::from_toml(&imported.toml).unwrap();
        assert_eq!(
            config.realms[0].principals[0].ticket.as_deref(),
            Some("a${HOME}b$${c}")
        );
    }

    #[test]
    fn static_principals_of_every_method() {
        let auth = json!({
            "ticket": {"type": "static", "principals": {
                "alice": {"ticket": "open \"sesame\" \\ now", "role": "user"},
                "carol": {"ticket": "carols ticket", "role": "backend"},
                "envy": {"ticket": "$TICKET_ENVY", "role": "user"},
                "nobody": {"ticket": "x"},
                "stranger": {"ticket": "x", "role": "no-such-role"}
            }},
            "wampcra": {"type": "static", "users": {
                "carol": {"secret": "carols secret", "role": "backend"},
                "bob": {"secret": "hunter2", "role": "backend", "salt": "salt123", "iterations": 100, "keylen": 32},
                "half": {"secret": "plain", "role": "backend", "salt": "s"},
                "huge": {"secret": "p", "role": "backend", "salt": "s", "iterations": 10, "keylen": 100},
                "clash": {"secret": "c", "role": "user"}
            }},
            "cryptosign": {"type": "static", "principals": {
                "dev": {"authorized_keys": ["1ADFC8BFE1D35616E64DFFBD900096F23B066F914C8C2FFBB66F6075B96E116D"],
                        "role": "backend"},
                "elsewhere": {"authorized_keys": ["aa".repeat(32)], "role": "backend", "realm": "other"},
                "badkey": {"authorized_keys": ["abcd"], "role": "backend"},
                "clash": {"authorized_keys": ["bb".repeat(32)], "role": "backend"}
            }},
            "anonymous": {"type": "static", "role": "guest", "authid": "visitor"},
            "scram": {"type": "static", "principals": {}},
            "tls": {"type": "static"},
            "cookie": {}
        });
        let doc = node(
            json!([
                {"name": "app", "roles": [open_role("user"), open_role("backend"), open_role("guest")]},
                {"name": "other", "roles": [open_role("backend")]}
            ]),
            json!([rawsocket(9000, Some(auth))]),
        );
        let (config, imported) = import_ok(doc);
        let app = &config.realms[0];
        assert_eq!(app.anonymous_role(), Some("guest"));
        warned(&imported, &["the fixed anonymous authid \"visitor\""]);
        let get = |realm: &Realm, authid: &str| {
            realm
                .principals
                .iter()
                .find(|p| p.authid == authid)
                .cloned()
        };
        let alice = get(app, "alice").unwrap();
        assert_eq!(
            (alice.role.as_str(), alice.ticket.as_deref()),
            ("user", Some("open \"sesame\" \\ now"))
        );
        // One principal for ticket and WAMP-CRA of the same authid and role.
        let carol = get(app, "carol").unwrap();
        assert_eq!(carol.ticket.as_deref(), Some("carols ticket"));
        assert_eq!(carol.wampcra_secret.as_deref(), Some("carols secret"));
        assert_eq!(carol.wampcra_salt, None);
        // Salted: the derived key, as autobahn derives it from the password (the value tests/tests/auth.rs uses).
        let bob = get(app, "bob").unwrap();
        assert_eq!(
            bob.wampcra_secret.as_deref(),
            Some("0ZfvumR9vhoaKdsArNQmAm0BH30QY2aJm+n3N98NfLk=")
        );
        assert_eq!(
            (
                bob.wampcra_salt.as_deref(),
                bob.wampcra_iterations,
                bob.wampcra_keylen
            ),
            (Some("salt123"), Some(100), Some(32))
        );
        // A salt without iterations and keylen: crossbar uses the secret as it is.
        let half = get(app, "half").unwrap();
        assert_eq!(
            (half.wampcra_secret.as_deref(), half.wampcra_salt.as_deref()),
            (Some("plain"), None)
        );
        warned(
            &imported,
            &[
                "principal 'half'",
                "salt, iterations and keylen only in part",
            ],
        );
        assert!(get(app, "huge").is_none());
        warned(&imported, &["principal 'huge'", "keylen = 100"]);
        let dev = get(app, "dev").unwrap();
        assert_eq!(
            dev.cryptosign_pubkeys,
            ["1adfc8bfe1d35616e64dffbd900096f23b066f914c8c2ffbb66f6075b96e116d"]
        );
        warned(
            &imported,
            &["principal 'badkey'", "\"abcd\" (not 64 hex digits)"],
        );
        // Restricted to realm "other".
        assert!(get(app, "elsewhere").is_none());
        let other = &config.realms[1];
        assert_eq!(
            get(other, "elsewhere").unwrap().cryptosign_pubkeys,
            ["aa".repeat(32)]
        );
        warned(
            &imported,
            &["principal 'elsewhere'", "whatever realm its HELLO names"],
        );
        // "other" has no role "user" or "guest": those principals and anonymous access are not there.
        assert!(get(other, "alice").is_none());
        warned(
            &imported,
            &[
                "realm 'other'",
                "principal 'alice': its role 'user' is not a role of the realm",
            ],
        );
        assert_eq!(other.anonymous_role(), None);
        warned(
            &imported,
            &["realm 'other'", "anonymous access with role 'guest'"],
        );
        assert_eq!(
            get(other, "carol").unwrap().ticket.as_deref(),
            Some("carols ticket")
        );
        // Secrets from the environment, principals without role or with a role the realm lacks, other methods.
        assert!(get(app, "envy").is_none());
        warned(
            &imported,
            &["principal 'envy'", "environment variable $TICKET_ENVY"],
        );
        assert!(get(app, "nobody").is_none());
        warned(&imported, &["principal 'nobody': no role"]);
        warned(
            &imported,
            &[
                "realm 'app'",
                "principal 'stranger': its role 'no-such-role'",
            ],
        );
        // One role per authid: the cryptosign 'clash' (backend) loses to the WAMP-CRA one (user).
        let clash = get(app, "clash").unwrap();
        assert_eq!(
            (clash.role.as_str(), clash.cryptosign_pubkeys.len()),
            ("user", 0)
        );
        warned(
            &imported,
            &[
                "principal 'clash' with role 'backend'",
                "one role per authid",
            ],
        );
        warned(&imported, &["auth scram", "WAMP-SCRAM"]);
        warned(
            &imported,
            &["auth tls", "TLS client certificate authentication"],
        );
        warned(&imported, &["auth cookie", "cookie authentication"]);
    }

    #[test]
    fn dynamic_authentication_and_builtin_roles() {
        let doc = node(
            json!([
                {"name": "r1", "roles": [open_role("user")]},
                {"name": "r2"}
            ]),
            json!([
                rawsocket(9000, Some(json!({
                    "ticket": {"type": "dynamic", "authenticator": "com.app.authenticate"},
                    "wampcra": {"type": "function", "create": "mymodule.create"},
                    "cryptosign": {"type": "static", "trustroots": {}},
                    "anonymous": {"type": "static", "role": "trusted"}
                }))),
                {"type": "rawsocket", "endpoint": {"type": "unix", "path": "local.sock"},
                 "auth": {"anonymous": {"type": "static", "role": "trusted"},
                          "ticket": {"type": "static", "principals": {"svc": {"ticket": "t", "role": "anonymous"}}}}}
            ]),
        );
        let (config, imported) = import_ok(doc);
        warned(
            &imported,
            &[
                "auth ticket",
                "the dynamic authenticator \"com.app.authenticate\"",
            ],
        );
        warned(&imported, &["auth wampcra", "the function authenticator"]);
        warned(&imported, &["auth cryptosign", "trustroots"]);
        warned(
            &imported,
            &[
                "worker 1",
                "authentication per transport",
                "transport 2 (rawsocket): anonymous, ticket",
            ],
        );
        for realm in &config.realms {
            // Both transports let anonymous clients in as "trusted": crossbar's built-in role, made explicit.
            assert_eq!(realm.anonymous_role(), Some("trusted"));
            let all = [
                Action::Call,
                Action::Register,
                Action::Publish,
                Action::Subscribe,
            ];
            let disclose = [Disclose::Caller, Disclose::Publisher];
            assert_eq!(
                role(realm, "trusted"),
                [rule("", Match::Prefix, &all, &disclose)]
            );
            // A principal with role "anonymous" joins in crossbar even where no such role is defined, and may do
            // nothing.
            assert_eq!(realm.principals[0].authid, "svc");
            assert_eq!(role(realm, "anonymous"), []);
        }
        // A realm without roles: nothing is allowed in crossbar (but for the built-in roles).
        assert_eq!(config.realms[1].roles.as_ref().unwrap().len(), 2);
        assert_eq!(
            config.listeners[1].listen, "unix:/srv/node/.crossbar/local.sock",
            "relative to the node directory"
        );
        let doc = node(
            json!([{"name": "empty"}]),
            json!([rawsocket(9000, Some(json!({})))]),
        );
        let (config, imported) = import_ok(doc);
        assert_eq!(config.realms[0].roles, Some(Vec::new()));
        assert_eq!(config.realms[0].anonymous_role(), None);
        assert!(imported.toml.contains("roles = []"));
    }

    #[test]
    fn anonymous_access_differing_per_transport_stays_off() {
        let realms = json!([{"name": "r", "roles": [open_role("anonymous"), open_role("user")]}]);
        let ticket = json!({"ticket": {"type": "static", "principals": {"u": {"ticket": "t", "role": "user"}}}});
        // No "auth" on one transport (anonymous for everyone), ticket only on the other.
        let doc = node(
            realms.clone(),
            json!([rawsocket(9000, None), rawsocket(9001, Some(ticket))]),
        );
        let (config, imported) = import_ok(doc);
        assert_eq!(config.realms[0].anonymous_role(), None);
        assert_eq!(config.realms[0].principals.len(), 1);
        warned(
            &imported,
            &[
                "anonymous access, which differs per transport",
                "transport 1 (rawsocket): role 'anonymous'",
                "transport 2 (rawsocket): none",
            ],
        );
        // The same anonymous role everywhere: on.
        let doc = node(
            realms,
            json!([rawsocket(9000, None), rawsocket(9001, None)]),
        );
        let (config, imported) = import_ok(doc);
        assert_eq!(config.realms[0].anonymous_role(), Some("anonymous"));
        assert!(
            imported
                .warnings
                .iter()
                .all(|w| !w.contains("authentication per transport")),
            "{:?}",
            imported.warnings
        );
    }

    #[test]
    fn transports_endpoints_and_tls() {
        let realms = json!([{"name": "r", "roles": [open_role("anonymous")]}]);
        let doc = node(
            realms,
            json!([
                {"type": "websocket", "endpoint": {"type": "tcp", "port": 9001, "interface": "::1", "version": 6},
                 "url": "ws://example.com:9001/wamp?x=1", "serializers": ["json", "ubjson"],
                 "cookie": {"store": {"type": "memory"}}, "max_connections": 100},
                {"type": "universal", "endpoint": {"type": "tcp", "port": 9002, "interface": "localhost"},
                 "rawsocket": {"serializers": ["msgpack"], "max_message_size": 65536},
                 "websocket": {"ws": {"type": "websocket", "serializers": ["json"]},
                               "ws2": {"type": "websocket"}},
                 "mqtt": {}},
                {"type": "web", "endpoint": {"type": "tcp", "port": 9003, "tls": {
                    "certificate": "server.crt", "key": "/etc/keys/server.key",
                    "ca_certificates": ["ca1.pem", "ca2.pem"], "chain_certificates": ["inter.pem"],
                    "dhparam": "dh.pem", "ciphers": "HIGH"}},
                 "paths": {"api": {"type": "path", "paths": {"wamp": {"type": "websocket"},
                                                             "pub": {"type": "publisher", "realm": "r"}}},
                           "call": {"type": "caller"}, "hook": {"type": "webhook"}, "lp": {"type": "longpoll"},
                           "wsgi": {"type": "wsgi"}},
                 "options": {"hsts": true}},
                {"type": "web", "endpoint": {"type": "tcp", "port": 9004, "tls": {
                    "certificate": "c.pem", "key": "k.pem", "ca_certificates": ["ca.pem"]}},
                 "paths": {"/": {"type": "websocket"}}},
                {"type": "web", "endpoint": {"type": "tcp", "port": 9005}, "paths": {"/": {"type": "static"}}},
                {"type": "mqtt", "endpoint": {"type": "tcp", "port": 1883}},
                {"type": "flashpolicy", "endpoint": {"type": "tcp", "port": 843}},
                {"type": "rawsocket", "endpoint": {"type": "tcp", "port": "$PORT"}},
                {"type": "rawsocket", "endpoint": {"type": "tcp", "portrange": [9100, 9200]}},
                {"type": "rawsocket", "endpoint": {"type": "tcp", "port": 9006, "interface": "eth0"}},
                {"type": "rawsocket", "endpoint": {"type": "tcp", "port": 9002, "interface": "127.0.0.1"}},
                {"type": "rawsocket", "endpoint": {"type": "onion", "port": 9007}},
                {"type": "rawsocket", "endpoint": {"type": "tcp", "port": 9008}, "serializers": ["ubjson"]},
                {"type": "rawsocket", "endpoint": {"type": "unix", "path": "/run/$USER/cb.sock", "backlog": 5},
                 "options": {"max_message_size": 100}}
            ]),
        );
        let imported = import(&doc, Path::new("/srv/node/.crossbar"), "config.json").unwrap();
        // The TLS files do not exist here: the check says so, everything else loads.
        let problems = check(&imported.toml).unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        let config: Config = toml::from_str(&imported.toml).unwrap();
        let listeners: Vec<(&str, &str)> = config
            .listeners
            .iter()
            .map(|l| (l.listen.as_str(), l.path.as_str()))
            .collect();
        assert_eq!(
            listeners,
            [
                ("[::1]:9001", "/wamp"),
                ("127.0.0.1:9002", "/ws"),
                ("0.0.0.0:9003", "/api/wamp"),
                ("0.0.0.0:9004", "/"),
                ("unix:/run/$USER/cb.sock", "/ws"),
            ]
        );
        use crate::config::{SerializerName::*, Transport::*};
        let [ws, universal, web, root, unix] = &config.listeners[..] else {
            unreachable!()
        };
        assert_eq!(ws.serializers, [Json]);
        warned(
            &imported,
            &["transport 1 (websocket)", "the serializer \"ubjson\""],
        );
        warned(
            &imported,
            &[
                "transport 1 (websocket)",
                "WebSocket on every URL path",
                "only on \"/wamp\"",
            ],
        );
        warned(&imported, &["transport 1 (websocket)", "cookie tracking"]);
        warned(
            &imported,
            &["transport 1 (websocket)", "max_connections = 100"],
        );
        assert_eq!(universal.transports, [Rawsocket, Websocket]);
        assert_eq!(universal.serializers, [Msgpack, Json]);
        warned(
            &imported,
            &[
                "transport 2 (universal)",
                "different serializers on RawSocket and WebSocket",
            ],
        );
        warned(
            &imported,
            &[
                "transport 2 (universal)",
                "the WebSocket path \"/ws2\"",
                "one WebSocket path per listener",
            ],
        );
        warned(
            &imported,
            &["transport 2 (universal)", "the MQTT transport"],
        );
        assert_eq!(web.transports, [Websocket]);
        let tls = web.tls.as_ref().unwrap();
        assert_eq!(tls.certificate, Path::new("/srv/node/.crossbar/server.crt"));
        assert_eq!(tls.key, Path::new("/etc/keys/server.key"));
        assert_eq!(
            tls.client_ca.as_deref(),
            Some(Path::new("/srv/node/.crossbar/ca1.pem"))
        );
        warned(
            &imported,
            &[
                "transport 3 (web)",
                "ca_certificates after the first (ca2.pem)",
            ],
        );
        warned(
            &imported,
            &["transport 3 (web)", "chain_certificates inter.pem"],
        );
        warned(&imported, &["transport 3 (web)", "TLS \"dhparam\""]);
        warned(&imported, &["transport 3 (web)", "TLS \"ciphers\""]);
        warned(
            &imported,
            &[
                "transport 3 (web)",
                "\"publisher\" at \"/api/pub\"",
                "HTTP bridge services",
            ],
        );
        warned(&imported, &["transport 3 (web)", "\"caller\" at \"/call\""]);
        warned(
            &imported,
            &["transport 3 (web)", "\"webhook\" at \"/hook\""],
        );
        warned(&imported, &["transport 3 (web)", "\"longpoll\" at \"/lp\""]);
        warned(
            &imported,
            &[
                "transport 3 (web)",
                "\"wsgi\" at \"/wsgi\"",
                "web applications",
            ],
        );
        warned(
            &imported,
            &["transport 3 (web)", "Web transport options \"hsts\""],
        );
        assert_eq!(
            root.tls.as_ref().unwrap().client_ca.as_deref(),
            Some(Path::new("/srv/node/.crossbar/ca.pem"))
        );
        assert_eq!(
            root.serializers.len(),
            3,
            "crossbar's default: every serializer"
        );
        warned(&imported, &["transport 5 (web)", "carries no WAMP"]);
        warned(&imported, &["transport 6 (mqtt)", "the MQTT transport"]);
        warned(
            &imported,
            &[
                "transport 7 (flashpolicy)",
                "a transport of type \"flashpolicy\"",
            ],
        );
        warned(
            &imported,
            &["transport 8 (rawsocket)", "environment variable $PORT"],
        );
        warned(&imported, &["transport 9 (rawsocket)", "a port range"]);
        warned(
            &imported,
            &["transport 10 (rawsocket)", "the interface \"eth0\""],
        );
        warned(
            &imported,
            &[
                "transport 11 (rawsocket)",
                "127.0.0.1:9002",
                "taken by an earlier transport",
            ],
        );
        warned(
            &imported,
            &["transport 12 (rawsocket)", "an endpoint of type \"onion\""],
        );
        warned(
            &imported,
            &["transport 13 (rawsocket)", "none of its serializers"],
        );
        assert_eq!(unix.transports, [Rawsocket]);
        warned(
            &imported,
            &[
                "transport 14 (rawsocket)",
                "environment variables in the socket path",
            ],
        );
        warned(
            &imported,
            &["transport 14 (rawsocket)", "endpoint options \"backlog\""],
        );
        // The largest message size of any transport holds for all (a smaller one is warned about).
        assert_eq!(config.limits.message_max, 65536);
        warned(
            &imported,
            &["transport 14 (rawsocket)", "max_message_size = 100 exactly"],
        );
        warned(
            &imported,
            &[
                "transport 14 (rawsocket)",
                "max_message_size = 100 for this transport alone",
            ],
        );
    }

    #[test]
    fn workers_node_and_realm_settings() {
        let doc = json!({
            "controller": {"id": "node1", "options": {"title": "x"}, "manhole": {}},
            "extra": 1,
            "workers": [
                {"type": "router", "options": {"pythonpath": [".."]}, "manhole": {},
                 "components": [{"type": "class", "classname": "app.Backend", "realm": "r"}],
                 "connections": [],
                 "realms": [{"name": "r", "roles": [open_role("anonymous")],
                             "options": {"enable_meta_api": false, "event_dispatching_chunk_size": 100},
                             "store": {"type": "memory"}, "rlinks": [{"id": "up"}]}],
                 "transports": [rawsocket(9000, None)]},
                {"type": "router",
                 "realms": [{"name": "r"}, {"name": "s", "options": {"uri_check": "loose", "enable_meta_api": true}}],
                 "transports": [rawsocket(9001, None)]},
                {"type": "container", "components": []},
                {"type": "guest", "executable": "/usr/bin/node"},
                {"type": "proxy"},
                {"type": "websocket-testee"}
            ]
        });
        let (config, imported) = import_ok(doc);
        assert_eq!(
            config
                .realms
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            ["r", "s"]
        );
        assert_eq!(config.listeners.len(), 2);
        warned(&imported, &["node", "no \"version\""]);
        warned(&imported, &["node", "top-level \"extra\""]);
        warned(
            &imported,
            &[
                "controller",
                "node controller settings \"manhole\", \"options\"",
            ],
        );
        warned(
            &imported,
            &["worker 1", "router worker options \"pythonpath\""],
        );
        warned(&imported, &["worker 1", "the manhole"]);
        warned(&imported, &["worker 1", "1 router component(s)"]);
        warned(&imported, &["worker 1", "router \"connections\""]);
        warned(&imported, &["realm 'r'", "enable_meta_api = false"]);
        warned(
            &imported,
            &[
                "realm 'r'",
                "realm option \"event_dispatching_chunk_size\" = 100",
            ],
        );
        warned(&imported, &["realm 'r'", "the realm store"]);
        warned(&imported, &["realm 'r'", "router-to-router links"]);
        warned(&imported, &["realm 'r'", "defined by two router workers"]);
        warned(&imported, &["worker 3", "a container worker"]);
        warned(&imported, &["worker 4", "a guest worker"]);
        warned(&imported, &["worker 5", "a proxy worker"]);
        warned(&imported, &["worker 6", "type \"websocket-testee\""]);
        // Realm "s" (of worker 2): no roles in crossbar, so only the anonymous role (built in, allowing nothing).
        assert_eq!(role(&config.realms[1], "anonymous"), []);
        assert_eq!(config.realms[1].uri_check, crate::config::UriRule::Loose);
    }

    #[test]
    fn the_rest_of_the_mappings() {
        let key = "cc".repeat(32);
        let auth = json!({
            "ticket": {"type": "static", "default-role": "user", "principals": {"dora": {"ticket": "t"}}},
            "cryptosign": {"type": "static", "principals": {
                "k1": {"authorized_keys": [key], "role": "user"},
                "k2": {"authorized_keys": [key], "role": "user"}
            }}
        });
        let doc = node(
            json!([{"name": "r", "roles": [open_role("user")]}]),
            json!([
                {"type": "universal", "endpoint": {"type": "tcp", "port": 9000, "version": 6},
                 "rawsocket": {"auth": auth.clone()},
                 "web": {"paths": {"app": {"type": "path", "paths": {"/": {"type": "websocket", "auth": auth,
                     "options": {"auto_ping_interval": 1000, "auto_ping_timeout": 500,
                                 "max_message_size": 4096}}}}}}},
                {"type": "websocket", "endpoint": {"type": "tcp", "port": 9001},
                 "options": {"auto_ping_interval": 2000, "max_message_size": 8192}, "auth": auth.clone()}
            ]),
        );
        let (config, imported) = import_ok(doc);
        let realm = &config.realms[0];
        let dora = realm
            .principals
            .iter()
            .find(|p| p.authid == "dora")
            .unwrap();
        assert_eq!(dora.role, "user", "the ticket configuration's default-role");
        let keys: Vec<usize> = realm
            .principals
            .iter()
            .map(|p| p.cryptosign_pubkeys.len())
            .collect();
        assert_eq!(keys, [0, 1], "k2 has no key left: {:?}", realm.principals);
        warned(
            &imported,
            &[
                "realm 'r'",
                "principal 'k2': a cryptosign key that an earlier principal has too",
            ],
        );
        let universal = &config.listeners[0];
        assert_eq!(universal.listen, "[::]:9000");
        assert_eq!(universal.path, "/app");
        use crate::config::Transport::*;
        assert_eq!(universal.transports, [Rawsocket, Websocket]);
        // The first WebSocket that pings sets the limits; the largest message size wins.
        assert_eq!(
            (config.limits.auto_ping_ms, config.limits.idle_timeout_ms),
            (1000, 1500)
        );
        warned(
            &imported,
            &[
                "transport 2 (websocket)",
                "auto_ping_interval = 2000, auto_ping_timeout = 0",
            ],
        );
        assert_eq!(config.limits.message_max, 8192);
        warned(
            &imported,
            &[
                "transport 2 (websocket)",
                "max_message_size = 4096 of an earlier transport",
            ],
        );
    }

    #[test]
    fn yaml_and_mistakes() {
        let yaml = "version: 2\nworkers:\n  - type: router\n    realms:\n      - name: realm1\n    transports:\n      \
                    - type: websocket\n        endpoint: {type: tcp, port: 8080}\n";
        let doc = parse(Path::new("config.yaml"), yaml).unwrap();
        let imported = import(&doc, Path::new("/srv"), "config.yaml").unwrap();
        check(&imported.toml).unwrap();
        assert!(imported.toml.contains("listen = \"0.0.0.0:8080\""));
        assert!(parse(Path::new("config.yaml"), "a: [")
            .unwrap_err()
            .contains("not valid YAML"));
        assert!(parse(Path::new("config.json"), "{")
            .unwrap_err()
            .contains("not valid JSON"));
        let err = |doc: Value| import(&doc, Path::new("/srv"), "c").unwrap_err();
        assert!(err(json!([])).contains("is a JSON/YAML object"));
        assert!(
            err(json!({"version": 2, "workers": [{"type": "container"}]}))
                .contains("no router realm")
        );
        assert!(err(node(json!([{"name": "r"}]), json!([{"type": "mqtt"}])))
            .contains("no listening transport"));
        assert!(err(json!({"workers": {}})).contains("\"workers\" must be a list"));
        assert!(err(node(json!([{"roles": []}]), json!([]))).contains("a realm without \"name\""));
    }

    #[test]
    fn starred_uris_follow_autobahn() {
        assert_eq!(starred("a.b"), ("a.b".into(), MatchPolicy::Exact));
        assert_eq!(starred("a.b.*"), ("a.b.".into(), MatchPolicy::Prefix));
        assert_eq!(starred("*"), ("".into(), MatchPolicy::Prefix));
        assert_eq!(starred("a.*.c"), ("a..c".into(), MatchPolicy::Wildcard));
        assert_eq!(starred("a.*.c.*"), ("a..c.".into(), MatchPolicy::Wildcard));
        assert_eq!(url_path("ws://h:1"), Some("/".into()));
        assert_eq!(url_path("wss://h/a/b?q#f"), Some("/a/b".into()));
    }
}
