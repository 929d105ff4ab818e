//! The options of a PUBLISH or CALL, read in one pass over the dictionary (the hot path: a lookup per option name
//! would re-scan the encoded dictionary each time).

use kreisel_codec::{Dict, Field, Kind};

/// What the router reads from a request's options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RequestOptions {
    pub acknowledge: bool,
    /// PUBLISH `exclude_me` (default true).
    pub exclude_me: bool,
    /// CALL `receive_progress`.
    pub receive_progress: bool,
    /// CALL `timeout` in milliseconds (0: none).
    pub timeout_ms: u64,
    /// The first option present with a non-default value that the router does not implement for this request.
    pub unsupported: Option<&'static str>,
}

impl RequestOptions {
    /// Reads `options` once; `unsupported` names the options this request type refuses when set.
    pub fn parse(options: &Dict<'_>, unsupported: &[&'static str]) -> RequestOptions {
        let mut parsed = RequestOptions {
            exclude_me: true,
            ..RequestOptions::default()
        };
        options.for_each(|key, value| match key {
            "acknowledge" => parsed.acknowledge = value.as_bool() == Some(true),
            "exclude_me" => parsed.exclude_me = value.as_bool() != Some(false),
            "receive_progress" => parsed.receive_progress = value.as_bool() == Some(true),
            "timeout" => parsed.timeout_ms = value.as_u64().unwrap_or(0),
            _ => {
                if parsed.unsupported.is_none() && is_set(&value) {
                    parsed.unsupported = unsupported.iter().find(|name| **name == key).copied();
                }
            }
        });
        parsed
    }
}

/// Whether an option value is something other than its "off" default (`false`, `null`, `0`, an empty list).
pub(crate) fn is_set(value: &Field<'_>) -> bool {
    if let Some(raw) = value.as_raw() {
        return match raw.kind() {
            Kind::Null => false,
            Kind::Bool => raw.as_bool() == Some(true),
            Kind::Int => raw.as_u64() != Some(0),
            Kind::List => raw.list().is_some_and(|mut items| items.next().is_some()),
            _ => true,
        };
    }
    !matches!(value, Field::Bool(false) | Field::UInt(0))
}

#[cfg(test)]
mod tests {
    use kreisel_codec::Serializer;

    use super::*;

    fn parse(json: &str, unsupported: &[&'static str]) -> RequestOptions {
        let raw = kreisel_codec::RawValue::parse(Serializer::Json, json.as_bytes()).unwrap();
        RequestOptions::parse(&Dict::Raw(raw), unsupported)
    }

    #[test]
    fn one_pass_reads_every_option() {
        assert_eq!(
            parse("{}", &[]),
            RequestOptions {
                exclude_me: true,
                ..RequestOptions::default()
            }
        );
        let options = parse(
            r#"{"acknowledge": true, "exclude_me": false, "x_custom": 1}"#,
            &["retain"],
        );
        assert!(options.acknowledge);
        assert!(!options.exclude_me);
        assert_eq!(options.unsupported, None, "unknown options are ignored");
        let options = parse(
            r#"{"retain": false, "eligible": [], "timeout": 0}"#,
            &["retain", "eligible", "timeout"],
        );
        assert_eq!(
            options.unsupported, None,
            "options at their off value are fine"
        );
        let options = parse(
            r#"{"retain": true, "eligible": [1]}"#,
            &["retain", "eligible"],
        );
        assert_eq!(options.unsupported, Some("retain"));
        assert!(parse(r#"{"receive_progress": true}"#, &[]).receive_progress);
    }
}
