//! Values from outside the configuration file: `${ENV_VAR}` in any string, and `*_file` keys for secrets.
//!
//! [`resolve`] runs on the parsed TOML document before it becomes a [`crate::Config`], so every string of every
//! table (those added later included) gets the same treatment:
//! - `${NAME}` is replaced by the environment variable `NAME` (letters, digits and `_`, not starting with a digit);
//!   `$${` stands for a literal `${`; a `$` not followed by `{` is itself. A variable that is not set, an unclosed
//!   `${` or an invalid name is an error naming the key.
//! - For each key of [`SECRET_KEYS`], `KEY_file = "/path"` reads the value from that file (its trailing line breaks
//!   removed), as container platforms mount secrets (`/run/secrets/...`). The path may use `${...}`; the file's
//!   content is taken as it is. A missing or unreadable file, or both `KEY` and `KEY_file`, is an error naming the
//!   key.
//!
//! Errors name the key and the variable or file, never a value.

use std::io::Read;

/// Keys whose value may come from a file (`ticket_file`, ...): the secrets of a principal and of an HTTP service's
/// principal (`ticket`, `wampcra_secret`, the SCRAM keys, `secret`) and webhook (`github_secret`), and the NATS
/// credentials of `[cluster]` (`password`, `token`). A new secret key is added here.
pub const SECRET_KEYS: &[&str] = &[
    "ticket",
    "wampcra_secret",
    "scram_stored_key",
    "scram_server_key",
    "secret",
    "github_secret",
    "password",
    "token",
];

/// The largest secret file read (a path to something huge must not exhaust memory at load).
pub const SECRET_FILE_MAX: u64 = 64 << 10;

/// Resolves every `${...}` and `*_file` key in `table`; `env` looks variables up (the process environment in
/// [`crate::Config::from_toml`]). Returns whether anything changed.
pub fn resolve(
    table: &mut toml::Table,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<bool, String> {
    let mut path = Vec::new();
    resolve_table(table, env, &mut path)
}

/// One step of the path to a value, for error messages.
enum Step {
    Key(String),
    /// An array element (0-based).
    Index(usize, Element),
}

enum Element {
    /// A table, with its `name`, `authid` or `listen` when it has one.
    Table(Option<String>),
    Value,
}

fn resolve_table(
    table: &mut toml::Table,
    env: &dyn Fn(&str) -> Option<String>,
    path: &mut Vec<Step>,
) -> Result<bool, String> {
    let mut changed = false;
    for (key, value) in table.iter_mut() {
        path.push(Step::Key(key.clone()));
        changed |= resolve_value(value, env, path)?;
        path.pop();
    }
    for key in SECRET_KEYS {
        let file_key = format!("{key}_file");
        let Some(file) = table.remove(&file_key) else {
            continue;
        };
        changed = true;
        path.push(Step::Key(file_key.clone()));
        let result = secret_file(key, &file_key, &file, table.contains_key(*key));
        let described = describe(path);
        path.pop();
        let secret = result.map_err(|problem| format!("{described}: {problem}"))?;
        table.insert((*key).to_string(), toml::Value::String(secret));
    }
    Ok(changed)
}

fn resolve_value(
    value: &mut toml::Value,
    env: &dyn Fn(&str) -> Option<String>,
    path: &mut Vec<Step>,
) -> Result<bool, String> {
    match value {
        toml::Value::String(text) => match substitute(text, env) {
            Ok(Some(resolved)) => {
                *text = resolved;
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(problem) => Err(format!("{}: {problem}", describe(path))),
        },
        toml::Value::Array(items) => {
            let mut changed = false;
            for (index, item) in items.iter_mut().enumerate() {
                let element = match item.as_table() {
                    Some(table) => Element::Table(name_of(table)),
                    None => Element::Value,
                };
                path.push(Step::Index(index, element));
                changed |= resolve_value(item, env, path)?;
                path.pop();
            }
            Ok(changed)
        }
        toml::Value::Table(table) => resolve_table(table, env, path),
        _ => Ok(false),
    }
}

/// What names a table in an array: its `name`, `authid` or `listen`, if written out (not from the environment).
fn name_of(table: &toml::Table) -> Option<String> {
    ["name", "authid", "listen"]
        .iter()
        .find_map(|key| table.get(*key)?.as_str())
        .filter(|name| !name.contains('$'))
        .map(str::to_string)
}

/// `realm 'app', principal 'alice', ticket`: the path to a value as a reader finds it in the file.
fn describe(path: &[Step]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut keys: Vec<&str> = Vec::new();
    let mut steps = path.iter().peekable();
    while let Some(step) = steps.next() {
        match step {
            Step::Key(key) => {
                if let Some(Step::Index(index, Element::Table(name))) = steps.peek() {
                    steps.next();
                    if !keys.is_empty() {
                        parts.push(keys.join("."));
                        keys.clear();
                    }
                    let singular = key.strip_suffix('s').unwrap_or(key);
                    parts.push(match name {
                        Some(name) => format!("{singular} '{name}'"),
                        None => format!("{singular} {}", index + 1),
                    });
                } else {
                    keys.push(key);
                }
            }
            Step::Index(index, _) => {
                if !keys.is_empty() {
                    parts.push(keys.join("."));
                    keys.clear();
                }
                parts.push(format!("item {}", index + 1));
            }
        }
    }
    if !keys.is_empty() {
        parts.push(keys.join("."));
    }
    parts.join(", ")
}

/// `text` with its `${NAME}` references replaced and `$${` unescaped; `None` when it has neither.
pub fn substitute(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, String> {
    if !text.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            // `$${`: a literal `${`.
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            return Err("'${' without a closing '}' (write $${ for a literal ${)".into());
        };
        let name = &after[..end];
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            let shown: String = name.chars().take(64).collect();
            return Err(format!(
                "'${{{shown}}}' is not an environment variable reference: a name is letters, digits and '_', not \
                 starting with a digit (write $${{ for a literal ${{)"
            ));
        }
        match env(name) {
            Some(value) => out.push_str(&value),
            None => return Err(format!("the environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

/// The secret `key` read from the file `file` names (the value of `file_key`).
fn secret_file(
    key: &str,
    file_key: &str,
    file: &toml::Value,
    inline_too: bool,
) -> Result<String, String> {
    if inline_too {
        return Err(format!("{key} and {file_key} are both set: use one"));
    }
    let Some(path) = file.as_str() else {
        return Err("must be a string: the path of a file holding the secret".into());
    };
    let path = std::path::Path::new(path);
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(SECRET_FILE_MAX + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > SECRET_FILE_MAX {
        return Err(format!(
            "{} is larger than {} KiB: not a secret",
            path.display(),
            SECRET_FILE_MAX >> 10
        ));
    }
    let text =
        String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TICKET" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            "DIR" => Some(std::env::temp_dir().display().to_string()),
            "DOLLAR" => Some("${TICKET}".into()),
            _ => None,
        }
    }

    #[test]
    fn references_escapes_and_mistakes() {
        let sub = |text: &str| substitute(text, &env);
        assert_eq!(sub("plain $ text {}"), Ok(None));
        assert_eq!(sub("${TICKET}"), Ok(Some("s3cret".into())));
        assert_eq!(sub("a${TICKET}b${EMPTY}c"), Ok(Some("as3cretbc".into())));
        assert_eq!(sub("$${TICKET}"), Ok(Some("${TICKET}".into())));
        assert_eq!(sub("$$${TICKET}"), Ok(Some("$${TICKET}".into())));
        // A value is never substituted again.
        assert_eq!(sub("${DOLLAR}"), Ok(Some("${TICKET}".into())));
        assert_eq!(
            sub("${NOPE}"),
            Err("the environment variable NOPE is not set".into())
        );
        assert!(sub("${TICKET").unwrap_err().contains("without a closing"));
        assert!(sub("${}")
            .unwrap_err()
            .contains("not an environment variable reference"));
        assert!(sub("${1A}")
            .unwrap_err()
            .contains("not starting with a digit"));
        assert!(sub("${A-B}").unwrap_err().contains("'${A-B}'"));
    }

    #[test]
    fn every_string_is_resolved_and_errors_name_the_key() {
        let mut table: toml::Table = toml::from_str(
            r#"
            [log]
            level = "${TICKET}"
            [[realms]]
            name = "app"
            [[realms.principals]]
            authid = "alice"
            ticket = "${TICKET}"
            cryptosign_pubkeys = ["${TICKET}", "x"]
            "#,
        )
        .unwrap();
        assert_eq!(resolve(&mut table, &env), Ok(true));
        let alice = &table["realms"][0]["principals"][0];
        assert_eq!(alice["ticket"].as_str(), Some("s3cret"));
        assert_eq!(alice["cryptosign_pubkeys"][0].as_str(), Some("s3cret"));
        assert_eq!(table["log"]["level"].as_str(), Some("s3cret"));
        let error = |text: &str| {
            let mut table: toml::Table = toml::from_str(text).unwrap();
            resolve(&mut table, &env).unwrap_err()
        };
        assert_eq!(
            error("[[realms]]\nname = \"app\"\n[[realms.principals]]\nauthid = \"alice\"\nticket = \"${ALICE}\""),
            "realm 'app', principal 'alice', ticket: the environment variable ALICE is not set"
        );
        assert_eq!(
            error("[[realms]]\nname = \"${X}\""),
            "realm 1, name: the environment variable X is not set"
        );
        assert_eq!(
            error("[[listeners]]\nlisten = \"127.0.0.1:1\"\n[listeners.tls]\nkey = \"${KEY}\""),
            "listener '127.0.0.1:1', tls.key: the environment variable KEY is not set"
        );
        assert_eq!(
            error("[[realms]]\nname = \"r\"\n[[realms.principals]]\nauthid = \"a\"\ncryptosign_pubkeys = [\"ok\", \"${K}\"]"),
            "realm 'r', principal 'a', cryptosign_pubkeys, item 2: the environment variable K is not set"
        );
        let mut plain: toml::Table = toml::from_str("[log]\nlevel = \"info\"").unwrap();
        assert_eq!(resolve(&mut plain, &env), Ok(false));
    }

    #[test]
    fn secret_files() {
        let dir = std::env::temp_dir().join(format!("kreisel-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ticket"), "from a file\r\n\n").unwrap();
        std::fs::write(dir.join("big"), vec![b'x'; SECRET_FILE_MAX as usize + 1]).unwrap();
        let principal = |keys: &str| {
            let mut table: toml::Table = toml::from_str(&format!(
                "[[realms]]\nname = \"app\"\n[[realms.principals]]\nauthid = \"alice\"\n{keys}"
            ))
            .unwrap();
            resolve(&mut table, &env).map(|_| table["realms"][0]["principals"][0].clone())
        };
        let file = dir.join("ticket");
        let from_file =
            principal(&format!("ticket_file = {:?}", file.display().to_string())).unwrap();
        assert_eq!(from_file["ticket"].as_str(), Some("from a file"));
        assert!(from_file.get("ticket_file").is_none());
        // The path may come from the environment; the content is taken as it is.
        let via_env = principal(&format!(
            "wampcra_secret_file = \"${{DIR}}/kreisel-secrets-{}/ticket\"",
            std::process::id()
        ))
        .unwrap();
        assert_eq!(via_env["wampcra_secret"].as_str(), Some("from a file"));
        let scram = principal(&format!(
            "scram_stored_key_file = {0:?}\nscram_server_key_file = {0:?}",
            file.display().to_string()
        ))
        .unwrap();
        assert_eq!(scram["scram_stored_key"].as_str(), Some("from a file"));
        assert_eq!(scram["scram_server_key"].as_str(), Some("from a file"));
        let missing = principal("ticket_file = \"/nonexistent/secret\"").unwrap_err();
        assert!(
            missing.starts_with(
                "realm 'app', principal 'alice', ticket_file: cannot read /nonexistent/secret: "
            ),
            "{missing}"
        );
        let both = principal(&format!(
            "ticket = \"x\"\nticket_file = {:?}",
            file.display().to_string()
        ));
        assert_eq!(
            both.unwrap_err(),
            "realm 'app', principal 'alice', ticket_file: ticket and ticket_file are both set: use one"
        );
        let big = principal(&format!(
            "ticket_file = {:?}",
            dir.join("big").display().to_string()
        ));
        assert!(big.unwrap_err().contains("larger than 64 KiB"));
        assert!(principal("ticket_file = 5")
            .unwrap_err()
            .contains("must be a string"));
    }
}
