//! MQTT topic names and filters: validation (MQTT 3.1.1 section 4.7, MQTT 5 sections 4.7 and 4.8.2) and the
//! mapping to WAMP URIs and back.
//!
//! # Mapping
//!
//! MQTT levels become WAMP URI components: `a/b/c` <-> `a.b.c`. A level or component that the other side cannot
//! express is refused ([`MapError`]), never rewritten, so the mapping is a bijection on what it accepts:
//!
//! | MQTT | WAMP | why |
//! | --- | --- | --- |
//! | name `a/b/c` | `a.b.c` | |
//! | filter `a/b/c` | exact `a.b.c` | |
//! | filter `a/+/c` | wildcard `a..c` | `+` is one whole level, an empty wildcard component one whole component |
//! | filter `+` | wildcard `` (one empty component) | see "the empty pattern" below |
//! | filter `a/b/#` | exact `a.b` **and** prefix `a.b.` | `#` also matches its parent level (`a/b`): two WAMP subscriptions. They never both match one URI, so no event arrives twice |
//! | filter `#` | prefix `` | everything; see below |
//! | filter `a/+/#` | refused | WAMP has no pattern with a fixed level and then any number of levels |
//! | anything starting with `$` (`$SYS/...`, `$share/...`) | refused | reserved for the server (MQTT 4.7.2); wildcards at the start of a filter never match them, so no `$` topic may cross either way |
//! | a level that is empty (`a//b`, `/a`, `a/`), or contains `.`, `#`, `+` or ASCII whitespace | refused | WAMP's loose URI rule: components non-empty, no whitespace, `.` or `#` (the engine's rule, `kreisel_engine::uri`) |
//! | WAMP component containing `/`, `+`, `#` or U+0000, an empty component, a URI starting with `$` | refused | not a valid MQTT topic name, or not the image of one |
//!
//! The empty pattern: the engine accepts the empty URI as a prefix pattern (every URI) and as a wildcard pattern
//! (one empty component: every URI of one component), so `#` and `+` are subscribable as mapped.
//!
//! The mapping checks the structure only. A realm with strict URIs (lowercase letters, digits, `_`) refuses
//! more; the engine checks that when the session subscribes or publishes.

use std::fmt;

use kreisel_engine::uri::MatchPolicy;

/// Longest topic name or filter: the length prefix of a string is 2 octets.
pub const TOPIC_LEN_MAX: usize = 65_535;

/// Why a topic name or filter is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicError {
    /// Zero length.
    Empty,
    /// More than 65,535 octets.
    TooLong { len: usize },
    /// A topic name with `+` or `#`.
    Wildcard,
    /// `#` not alone in its level, or not in the last level.
    MultiLevelWildcardMisplaced,
    /// `+` not alone in its level.
    SingleLevelWildcardMisplaced,
    /// U+0000.
    NullCharacter,
    /// MQTT 5 shared subscription `$share/{name}/{filter}`: the share name is empty or contains `+` or `#`.
    ShareNameInvalid,
    /// MQTT 5 shared subscription without a `/` and a topic filter after the share name.
    SharedFilterMissing,
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicError::Empty => f.write_str("empty topic"),
            TopicError::TooLong { len } => write!(f, "topic of {len} octets (at most 65535)"),
            TopicError::Wildcard => f.write_str("wildcard in a topic name"),
            TopicError::MultiLevelWildcardMisplaced => {
                f.write_str("'#' must be a whole level and the last one")
            }
            TopicError::SingleLevelWildcardMisplaced => f.write_str("'+' must be a whole level"),
            TopicError::NullCharacter => f.write_str("U+0000 in a topic"),
            TopicError::ShareNameInvalid => f.write_str("invalid share name"),
            TopicError::SharedFilterMissing => {
                f.write_str("shared subscription without a topic filter")
            }
        }
    }
}

impl std::error::Error for TopicError {}

fn check_common(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > TOPIC_LEN_MAX {
        return Err(TopicError::TooLong { len: topic.len() });
    }
    if topic.as_bytes().contains(&0) {
        return Err(TopicError::NullCharacter);
    }
    Ok(())
}

/// A topic name (of a PUBLISH or a will): at least one character, at most 65,535 octets, no wildcards, no
/// U+0000. Empty levels and `$` at the start are allowed (the latter reserved for the server by convention).
pub fn check_name(name: &str) -> Result<(), TopicError> {
    check_common(name)?;
    if name.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(TopicError::Wildcard);
    }
    Ok(())
}

/// A topic filter: like a name, but `+` may be a whole level anywhere and `#` a whole last level.
pub fn check_filter(filter: &str) -> Result<(), TopicError> {
    check_common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::MultiLevelWildcardMisplaced);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::SingleLevelWildcardMisplaced);
        }
    }
    Ok(())
}

/// MQTT 5 shared subscriptions: `Some((share name, topic filter))` for a (valid) filter of the form
/// `$share/{name}/{filter}`, `None` for an ordinary filter. `filter` must already be a valid topic filter.
pub fn shared_subscription(filter: &str) -> Result<Option<(&str, &str)>, TopicError> {
    let Some(rest) = filter.strip_prefix("$share/") else {
        return Ok(None);
    };
    let Some((name, filter)) = rest.split_once('/') else {
        return Err(TopicError::SharedFilterMissing);
    };
    if name.is_empty() || name.contains(['+', '#']) {
        return Err(TopicError::ShareNameInvalid);
    }
    if filter.is_empty() {
        return Err(TopicError::SharedFilterMissing);
    }
    Ok(Some((name, filter)))
}

/// Whether the (valid) topic filter matches the (valid) topic name, by MQTT's rules: `+` matches one level,
/// `#` the rest including the parent level, and a filter starting with a wildcard matches no name starting with
/// `$` (section 4.7.2).
pub fn matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut names = name.split('/');
    for level in filter.split('/') {
        if level == "#" {
            return true;
        }
        match names.next() {
            Some(n) if level == "+" || level == n => {}
            _ => return false,
        }
    }
    names.next().is_none()
}

// -------------------------------------------------------------------------------------------------------------
// Mapping to WAMP

/// Why a topic, filter or URI does not map (see the module documentation's table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Not a valid MQTT topic name or filter in the first place.
    Invalid(TopicError),
    /// The empty URI.
    Empty,
    /// An empty MQTT level or WAMP component.
    EmptyLevel,
    /// A level with `.`, `#`, `+` or whitespace (MQTT to WAMP), or a component with `/`, `+`, `#` or U+0000
    /// (WAMP to MQTT).
    InvalidCharacter,
    /// Starts with `$`: reserved for the server in MQTT (this includes `$share/` shared subscriptions).
    Reserved,
    /// A filter with both `+` and a trailing `#`: no WAMP pattern expresses it.
    SingleAndMultiLevelWildcard,
    /// A URI longer than a topic name may be.
    TooLong { len: usize },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::Invalid(e) => write!(f, "{e}"),
            MapError::Empty => f.write_str("empty URI"),
            MapError::EmptyLevel => f.write_str("empty level (WAMP URI components are non-empty)"),
            MapError::InvalidCharacter => {
                f.write_str("a character that MQTT or WAMP cannot carry in a level")
            }
            MapError::Reserved => f.write_str("'$' topics are reserved for the server"),
            MapError::SingleAndMultiLevelWildcard => {
                f.write_str("'+' together with '#' has no WAMP pattern")
            }
            MapError::TooLong { len } => write!(f, "URI of {len} octets (at most 65535)"),
        }
    }
}

impl std::error::Error for MapError {}

/// The WAMP subscription(s) for one MQTT topic filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WampFilter {
    /// One exact subscription.
    Exact(String),
    /// One wildcard subscription (empty components are the wildcards).
    Wildcard(String),
    /// A prefix subscription, plus an exact one for the parent level `#` also matches (none for `#` alone).
    Prefix {
        prefix: String,
        parent: Option<String>,
    },
}

impl WampFilter {
    /// The one or two WAMP subscriptions (URI and match policy) that together match what the filter matches.
    pub fn subscriptions(&self) -> impl Iterator<Item = (&str, MatchPolicy)> {
        let (first, second) = match self {
            WampFilter::Exact(uri) => ((uri.as_str(), MatchPolicy::Exact), None),
            WampFilter::Wildcard(uri) => ((uri.as_str(), MatchPolicy::Wildcard), None),
            WampFilter::Prefix { prefix, parent } => (
                (prefix.as_str(), MatchPolicy::Prefix),
                parent.as_deref().map(|p| (p, MatchPolicy::Exact)),
            ),
        };
        std::iter::once(first).chain(second)
    }
}

/// Whether an MQTT level can be a WAMP URI component (loose rule): non-empty, no `.`, `#`, `+` or ASCII
/// whitespace (the engine's definition of whitespace in URIs).
fn check_level(level: &str) -> Result<(), MapError> {
    if level.is_empty() {
        return Err(MapError::EmptyLevel);
    }
    if level
        .bytes()
        .any(|b| b == b'.' || b == b'#' || b == b'+' || b.is_ascii_whitespace())
    {
        return Err(MapError::InvalidCharacter);
    }
    Ok(())
}

fn join_levels<'a>(
    levels: impl Iterator<Item = &'a str>,
    capacity: usize,
    wildcard: bool,
) -> Result<String, MapError> {
    let mut uri = String::with_capacity(capacity);
    for (i, level) in levels.enumerate() {
        if i > 0 {
            uri.push('.');
        }
        if !(wildcard && level == "+") {
            check_level(level)?;
            uri.push_str(level);
        }
    }
    Ok(uri)
}

/// The WAMP URI of an MQTT topic name: `a/b/c` -> `a.b.c`.
pub fn name_to_uri(name: &str) -> Result<String, MapError> {
    check_name(name).map_err(MapError::Invalid)?;
    if name.starts_with('$') {
        return Err(MapError::Reserved);
    }
    join_levels(name.split('/'), name.len(), false)
}

/// The WAMP subscription(s) of an MQTT topic filter (see the module documentation).
pub fn filter_to_wamp(filter: &str) -> Result<WampFilter, MapError> {
    check_filter(filter).map_err(MapError::Invalid)?;
    if filter.starts_with('$') {
        return Err(MapError::Reserved);
    }
    if filter == "#" {
        return Ok(WampFilter::Prefix {
            prefix: String::new(),
            parent: None,
        });
    }
    if let Some(parent) = filter.strip_suffix("/#") {
        if parent.split('/').any(|level| level == "+") {
            return Err(MapError::SingleAndMultiLevelWildcard);
        }
        let parent = join_levels(parent.split('/'), parent.len() + 1, false)?;
        let mut prefix = parent.clone();
        prefix.push('.');
        return Ok(WampFilter::Prefix {
            prefix,
            parent: Some(parent),
        });
    }
    if filter.split('/').any(|level| level == "+") {
        return Ok(WampFilter::Wildcard(join_levels(
            filter.split('/'),
            filter.len(),
            true,
        )?));
    }
    Ok(WampFilter::Exact(join_levels(
        filter.split('/'),
        filter.len(),
        false,
    )?))
}

/// The MQTT topic name of a (concrete) WAMP URI: `a.b.c` -> `a/b/c`.
pub fn uri_to_name(uri: &str) -> Result<String, MapError> {
    if uri.is_empty() {
        return Err(MapError::Empty);
    }
    if uri.len() > TOPIC_LEN_MAX {
        return Err(MapError::TooLong { len: uri.len() });
    }
    if uri.starts_with('$') {
        return Err(MapError::Reserved);
    }
    let mut name = String::with_capacity(uri.len());
    for (i, component) in uri.split('.').enumerate() {
        if component.is_empty() {
            return Err(MapError::EmptyLevel);
        }
        if component
            .bytes()
            .any(|b| matches!(b, b'/' | b'+' | b'#' | 0) || b.is_ascii_whitespace())
        {
            return Err(MapError::InvalidCharacter);
        }
        if i > 0 {
            name.push('/');
        }
        name.push_str(component);
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kreisel_engine::uri::{is_valid, UriCheck};

    #[test]
    fn names() {
        for ok in [
            "a",
            "a/b/c",
            "/",
            "a//b",
            "/a",
            "a/",
            "$SYS/x",
            "sport/tennis",
            "ü/€",
        ] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_name(""), Err(TopicError::Empty));
        assert_eq!(check_name("a/+"), Err(TopicError::Wildcard));
        assert_eq!(check_name("a/#"), Err(TopicError::Wildcard));
        assert_eq!(check_name("a+b"), Err(TopicError::Wildcard));
        assert_eq!(check_name("a\0b"), Err(TopicError::NullCharacter));
        let long = "x".repeat(TOPIC_LEN_MAX);
        assert_eq!(check_name(&long), Ok(()));
        assert_eq!(
            check_name(&format!("{long}y")),
            Err(TopicError::TooLong {
                len: TOPIC_LEN_MAX + 1
            })
        );
    }

    #[test]
    fn filters() {
        for ok in [
            "#", "+", "+/+", "a/#", "a/+/c", "/+", "+/", "a//#", "$SYS/#", "a/b", "/", "+/#",
        ] {
            assert_eq!(check_filter(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_filter(""), Err(TopicError::Empty));
        for bad in ["a/#/b", "#/", "a#", "a/b#", "##", "#/#"] {
            assert_eq!(
                check_filter(bad),
                Err(TopicError::MultiLevelWildcardMisplaced),
                "{bad}"
            );
        }
        for bad in ["a+", "a/+b", "++", "+a/b"] {
            assert_eq!(
                check_filter(bad),
                Err(TopicError::SingleLevelWildcardMisplaced),
                "{bad}"
            );
        }
        assert_eq!(check_filter("a/\0"), Err(TopicError::NullCharacter));
        assert_eq!(
            check_filter(&"+/".repeat(40_000)),
            Err(TopicError::TooLong { len: 80_000 })
        );
    }

    #[test]
    fn shared_subscriptions() {
        assert_eq!(shared_subscription("a/b"), Ok(None));
        assert_eq!(shared_subscription("$share"), Ok(None));
        assert_eq!(shared_subscription("$share/g/a/+"), Ok(Some(("g", "a/+"))));
        assert_eq!(shared_subscription("$share/g/#"), Ok(Some(("g", "#"))));
        assert_eq!(
            shared_subscription("$share/g"),
            Err(TopicError::SharedFilterMissing)
        );
        assert_eq!(
            shared_subscription("$share/g/"),
            Err(TopicError::SharedFilterMissing)
        );
        assert_eq!(
            shared_subscription("$share//a"),
            Err(TopicError::ShareNameInvalid)
        );
        assert_eq!(
            shared_subscription("$share/+/a"),
            Err(TopicError::ShareNameInvalid)
        );
        assert_eq!(
            shared_subscription("$share/#"),
            Err(TopicError::SharedFilterMissing)
        );
    }

    #[test]
    fn matching_follows_mqtt() {
        let cases = [
            ("a/b/c", "a/b/c", true),
            ("a/+/c", "a/b/c", true),
            ("a/+/c", "a/b/d", false),
            ("a/b/#", "a/b", true),
            ("a/b/#", "a/b/c/d", true),
            ("a/b/#", "a/bc", false),
            ("#", "a", true),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("+", "a/b", false),
            ("+/+", "/a", true),
            ("a/b", "a/b/c", false),
            ("a/b/c", "a/b", false),
        ];
        for (filter, name, expected) in cases {
            assert_eq!(matches(filter, name), expected, "{filter} {name}");
        }
    }

    #[test]
    fn names_map_to_uris_and_back() {
        assert_eq!(name_to_uri("a/b/c").as_deref(), Ok("a.b.c"));
        assert_eq!(name_to_uri("sensor").as_deref(), Ok("sensor"));
        assert_eq!(name_to_uri("ü/€").as_deref(), Ok("ü.€"));
        assert_eq!(uri_to_name("a.b.c").as_deref(), Ok("a/b/c"));
        assert_eq!(uri_to_name("com").as_deref(), Ok("com"));
        for name in ["a/b/c", "x", "ü/€", "wamp/session/on_join"] {
            let uri = name_to_uri(name).expect("maps");
            assert!(is_valid(&uri, UriCheck::Loose, MatchPolicy::Exact), "{uri}");
            assert_eq!(uri_to_name(&uri).as_deref(), Ok(name));
        }
    }

    #[test]
    fn names_that_cannot_map_are_refused() {
        assert_eq!(name_to_uri(""), Err(MapError::Invalid(TopicError::Empty)));
        assert_eq!(
            name_to_uri("a/+"),
            Err(MapError::Invalid(TopicError::Wildcard))
        );
        for (name, error) in [
            ("a//b", MapError::EmptyLevel),
            ("/a", MapError::EmptyLevel),
            ("a/", MapError::EmptyLevel),
            ("/", MapError::EmptyLevel),
            ("a.b/c", MapError::InvalidCharacter),
            ("a b/c", MapError::InvalidCharacter),
            ("a/\tb", MapError::InvalidCharacter),
            ("a/b\n", MapError::InvalidCharacter),
            ("$SYS/x", MapError::Reserved),
            ("$share/g/a", MapError::Reserved),
        ] {
            assert_eq!(name_to_uri(name), Err(error), "{name:?}");
        }
    }

    #[test]
    fn uris_that_cannot_map_are_refused() {
        for (uri, error) in [
            ("", MapError::Empty),
            ("a..b", MapError::EmptyLevel),
            (".a", MapError::EmptyLevel),
            ("a.", MapError::EmptyLevel),
            ("a/b.c", MapError::InvalidCharacter),
            ("a.b+c", MapError::InvalidCharacter),
            ("a.#", MapError::InvalidCharacter),
            ("a.\0", MapError::InvalidCharacter),
            ("a b", MapError::InvalidCharacter),
            ("$x.y", MapError::Reserved),
        ] {
            assert_eq!(uri_to_name(uri), Err(error), "{uri:?}");
        }
        let long = "x".repeat(TOPIC_LEN_MAX + 1);
        assert_eq!(
            uri_to_name(&long),
            Err(MapError::TooLong {
                len: TOPIC_LEN_MAX + 1
            })
        );
        assert!(uri_to_name(&long[1..]).is_ok());
    }

    fn subscriptions(filter: &str) -> Vec<(String, MatchPolicy)> {
        filter_to_wamp(filter)
            .expect("maps")
            .subscriptions()
            .map(|(uri, policy)| (uri.to_owned(), policy))
            .collect()
    }

    #[test]
    fn filters_map_to_wamp_subscriptions() {
        use MatchPolicy::*;
        let cases: &[(&str, &[(&str, MatchPolicy)])] = &[
            ("a/b/c", &[("a.b.c", Exact)]),
            ("a/+/c", &[("a..c", Wildcard)]),
            ("+/b", &[(".b", Wildcard)]),
            ("a/+", &[("a.", Wildcard)]),
            ("+/+", &[(".", Wildcard)]),
            ("+", &[("", Wildcard)]),
            ("a/b/#", &[("a.b.", Prefix), ("a.b", Exact)]),
            ("a/#", &[("a.", Prefix), ("a", Exact)]),
            ("#", &[("", Prefix)]),
        ];
        for &(filter, expected) in cases {
            let expected: Vec<_> = expected.iter().map(|&(u, p)| (u.to_owned(), p)).collect();
            let got = subscriptions(filter);
            assert_eq!(got, expected, "{filter}");
            // Every pattern is one the engine accepts, the empty pattern included.
            for (uri, policy) in got {
                assert!(
                    is_valid(&uri, UriCheck::Loose, policy),
                    "{filter} -> {uri:?} {policy:?}"
                );
            }
        }
    }

    #[test]
    fn mapped_filters_match_what_mqtt_matches() {
        let names = [
            "a", "a/b", "a/b/c", "a/b/c/d", "a/x/c", "b/b", "ab/b", "a/bc",
        ];
        let filters = [
            "a/b", "a/+", "a/+/c", "+/b", "a/#", "a/b/#", "#", "+", "+/+/+", "a/b/c",
        ];
        for filter in filters {
            let wamp = filter_to_wamp(filter).expect("maps");
            for name in names {
                let uri = name_to_uri(name).expect("maps");
                let wamp_matches = wamp
                    .subscriptions()
                    .filter(|&(pattern, policy)| {
                        kreisel_engine::uri::matches(pattern, policy, &uri)
                    })
                    .count();
                assert!(wamp_matches <= 1, "{filter} matches {name} twice");
                assert_eq!(
                    wamp_matches == 1,
                    matches(filter, name),
                    "{filter} vs {name} ({uri})"
                );
            }
        }
    }

    #[test]
    fn filters_that_cannot_map_are_refused() {
        for (filter, error) in [
            ("a/+/#", MapError::SingleAndMultiLevelWildcard),
            ("+/#", MapError::SingleAndMultiLevelWildcard),
            ("$SYS/#", MapError::Reserved),
            ("$share/g/a", MapError::Reserved),
            ("a//b", MapError::EmptyLevel),
            ("a//#", MapError::EmptyLevel),
            ("/#", MapError::EmptyLevel),
            ("+/", MapError::EmptyLevel),
            ("a.b/+", MapError::InvalidCharacter),
            ("a b/#", MapError::InvalidCharacter),
            ("a/\r", MapError::InvalidCharacter),
            (
                "a/#/b",
                MapError::Invalid(TopicError::MultiLevelWildcardMisplaced),
            ),
            (
                "a+",
                MapError::Invalid(TopicError::SingleLevelWildcardMisplaced),
            ),
            ("", MapError::Invalid(TopicError::Empty)),
        ] {
            assert_eq!(filter_to_wamp(filter), Err(error), "{filter:?}");
        }
    }
}
