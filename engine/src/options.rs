//! Request options read in one pass over the dictionary (the hot path: a lookup per option name would re-scan the
//! encoded dictionary each time), the subscriber black/white lists they carry, the payload passthru attributes the
//! router forwards untouched, and [`Details`], a details dictionary built on the stack.

use kreisel_codec::{Dict, Field, Id, Kind, RawValue, Value};
use smallvec::SmallVec;

/// What the router reads from the options of a PUBLISH, CALL or YIELD (and the details of an ERROR). Keys a request
/// type does not use are ignored, like unknown keys.
///
/// Small on purpose (it is built for every PUBLISH, CALL and YIELD): the black/white lists and the passthru
/// attributes, which few requests carry, are only noted as present here and read from the dictionary again by
/// [`RequestOptions::filter`] and [`RequestOptions::passthru`] when they are.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct RequestOptions<'a> {
    pub acknowledge: bool,
    /// PUBLISH `exclude_me` (default true).
    pub exclude_me: bool,
    /// PUBLISH/CALL `disclose_me`.
    pub disclose_me: bool,
    /// PUBLISH `retain`.
    pub retain: bool,
    /// PUBLISH `x_retain_clear` (kreisel's, with `retain`): forget the topic's retained event instead of
    /// keeping this one (what MQTT's retained message with an empty payload means).
    pub retain_clear: bool,
    /// CALL `receive_progress`.
    pub receive_progress: bool,
    /// CALL `progress` (progressive call invocations), YIELD `progress` (progressive results).
    pub progress: bool,
    /// CALL `timeout` in milliseconds (0: none).
    pub timeout_ms: u64,
    /// The dictionary read, for the lists and attributes below.
    dict: Dict<'a>,
    /// Which PUBLISH black/white lists are present (bit `i`: `Filter::NAMES[i]`).
    filter_present: u8,
    /// Which payload passthru attributes (`ppt_*`, crossbar's `enc_*`) are present (bit `i`: `Passthru::NAMES[i]`).
    passthru_present: u8,
    /// The first option present with a non-default value that the router does not implement for this request.
    pub unsupported: Option<&'static str>,
    /// The first option whose value has the wrong type (e.g. `exclude` not a list, `timeout` not an integer).
    pub invalid: Option<&'static str>,
}

impl Default for RequestOptions<'_> {
    /// No options at all (for the router's own publications).
    fn default() -> Self {
        RequestOptions {
            acknowledge: false,
            exclude_me: false,
            disclose_me: false,
            retain: false,
            retain_clear: false,
            receive_progress: false,
            progress: false,
            timeout_ms: 0,
            dict: Dict::EMPTY,
            filter_present: 0,
            passthru_present: 0,
            unsupported: None,
            invalid: None,
        }
    }
}

impl<'a> RequestOptions<'a> {
    /// Reads `options` once; `unsupported` names the options this request type refuses when set.
    pub fn parse(options: &Dict<'a>, unsupported: &[&'static str]) -> RequestOptions<'a> {
        let mut parsed = RequestOptions {
            exclude_me: true,
            dict: *options,
            ..RequestOptions::default()
        };
        options.for_each(|key, value| parsed.read(key, value, unsupported));
        parsed
    }

    /// The black/white lists, if any is present (an empty `eligible` list is present: it admits nobody).
    pub fn filter(&self) -> Option<Filter<'a>> {
        (self.filter_present != 0).then(|| {
            let mut filter = Filter::default();
            self.dict.for_each(|key, value| {
                filter.set(key, value);
            });
            filter
        })
    }

    /// The payload passthru attributes, if any is present.
    pub fn passthru(&self) -> Option<Passthru<'a>> {
        (self.passthru_present != 0).then(|| Passthru::from_dict(&self.dict))
    }

    /// Whether the request uses payload passthru mode (see [`Passthru::is_active`]).
    pub fn passthru_active(&self) -> bool {
        self.passthru().is_some_and(|passthru| passthru.is_active())
    }

    /// The first option that breaks the rules: of the wrong type, or a passthru attribute not valid.
    pub fn invalid(&self) -> Option<&'static str> {
        self.invalid
            .or_else(|| self.passthru().and_then(|passthru| passthru.invalid()))
    }

    fn read(&mut self, key: &str, value: Field<'a>, unsupported: &[&'static str]) {
        let flag = value.as_bool() == Some(true);
        match key {
            "acknowledge" => self.acknowledge = flag,
            "exclude_me" => self.exclude_me = value.as_bool() != Some(false),
            "disclose_me" => self.disclose_me = flag,
            "retain" => self.retain = flag,
            "x_retain_clear" => self.retain_clear = flag,
            "receive_progress" => self.receive_progress = flag,
            "progress" => self.progress = flag,
            "timeout" => match value.as_u64() {
                Some(ms) => self.timeout_ms = ms,
                None if is_null(&value) => {}
                None => self.set_invalid("timeout"),
            },
            _ => {
                if let Some(slot) = Filter::slot(key) {
                    self.filter_present |= 1 << slot;
                    if !is_list(&value) {
                        self.set_invalid(Filter::NAMES[slot]);
                    }
                } else if let Some(slot) = Passthru::slot(key) {
                    self.passthru_present |= 1 << slot;
                } else if self.unsupported.is_none() && is_set(&value) {
                    self.unsupported = unsupported.iter().find(|name| **name == key).copied();
                }
            }
        }
    }

    fn set_invalid(&mut self, name: &'static str) {
        self.invalid.get_or_insert(name);
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
    match value {
        Field::Bool(false) | Field::UInt(0) => false,
        Field::Value(Value::Null | Value::Bool(false) | Value::UInt(0)) => false,
        Field::Value(Value::List(items)) => !items.is_empty(),
        _ => true,
    }
}

fn is_null(value: &Field<'_>) -> bool {
    match value {
        Field::Raw(raw) => raw.is_null(),
        Field::Value(Value::Null) => true,
        _ => false,
    }
}

fn is_list(value: &Field<'_>) -> bool {
    match value {
        Field::Raw(raw) => raw.kind() == Kind::List,
        Field::Value(Value::List(_)) | Field::List(_) => true,
        _ => false,
    }
}

/// An owned copy of a decoded or owned option value.
pub(crate) fn owned(field: &Field<'_>) -> Value {
    match field {
        Field::Raw(raw) => raw.to_value(),
        Field::Value(value) => (*value).clone(),
        other => Dict::Fields(&[("", *other)])
            .to_value()
            .get("")
            .cloned()
            .unwrap_or(Value::Null),
    }
}

/// One element of a list option, decoded or owned.
#[derive(Clone, Copy)]
enum Item<'x> {
    Raw(RawValue<'x>),
    Value(&'x Value),
}

impl Item<'_> {
    fn as_u64(&self) -> Option<u64> {
        match self {
            Item::Raw(raw) => raw.as_u64(),
            Item::Value(value) => value.as_u64(),
        }
    }

    fn eq_str(&self, s: &str) -> bool {
        match self {
            Item::Raw(raw) => raw.as_str().is_some_and(|item| item == s),
            Item::Value(value) => value.as_str() == Some(s),
        }
    }
}

/// Whether any element of the list `field` satisfies `f` (false for a non-list).
fn list_any(field: &Field<'_>, mut f: impl FnMut(Item<'_>) -> bool) -> bool {
    match field {
        Field::Raw(raw) => raw
            .list()
            .is_some_and(|mut items| items.any(|v| f(Item::Raw(v)))),
        Field::Value(Value::List(items)) => items.iter().any(|v| f(Item::Value(v))),
        _ => false,
    }
}

/// PUBLISH black/white lists (subscriber black- and whitelisting): which subscribers may receive the event.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Filter<'a> {
    lists: [Option<Field<'a>>; 6],
}

impl<'a> Filter<'a> {
    /// The option names, in the order of `lists`.
    const NAMES: [&'static str; 6] = [
        "exclude",
        "exclude_authid",
        "exclude_authrole",
        "eligible",
        "eligible_authid",
        "eligible_authrole",
    ];

    /// The position of the list option `key` in [`Filter::NAMES`].
    fn slot(key: &str) -> Option<usize> {
        Self::NAMES.iter().position(|name| *name == key)
    }

    /// Stores `value` if `key` is one of the list options.
    fn set(&mut self, key: &str, value: Field<'a>) {
        if let Some(slot) = Self::slot(key) {
            self.lists[slot] = Some(value);
        }
    }

    /// Whether a subscriber with this identity receives the event: in every present `eligible*` list and in no
    /// `exclude*` list.
    pub fn admits(&self, session: Id, authid: &str, authrole: &str) -> bool {
        let [exclude, exclude_authid, exclude_authrole, eligible, eligible_authid, eligible_authrole] =
            &self.lists;
        let has_id = |list: &Field<'_>| list_any(list, |item| item.as_u64() == Some(session.get()));
        let has_authid = |list: &Field<'_>| list_any(list, |item| item.eq_str(authid));
        let has_authrole = |list: &Field<'_>| list_any(list, |item| item.eq_str(authrole));
        eligible.as_ref().is_none_or(has_id)
            && eligible_authid.as_ref().is_none_or(has_authid)
            && eligible_authrole.as_ref().is_none_or(has_authrole)
            && !exclude.as_ref().is_some_and(has_id)
            && !exclude_authid.as_ref().is_some_and(has_authid)
            && !exclude_authrole.as_ref().is_some_and(has_authrole)
    }

    /// An owned copy (a dictionary of the present lists), e.g. for a retained event.
    pub fn to_value(self) -> Value {
        let entries = Self::NAMES
            .iter()
            .zip(&self.lists)
            .filter_map(|(name, list)| list.as_ref().map(|list| (name.to_string(), owned(list))))
            .collect();
        Value::Dict(entries)
    }

    /// The filter stored by [`Filter::to_value`].
    pub fn from_value(value: &'a Value) -> Filter<'a> {
        let mut filter = Filter::default();
        Dict::Value(value).for_each(|key, list| {
            filter.set(key, list);
        });
        filter
    }
}

/// Longest value of a passthru attribute, in bytes: longer ones are refused like malformed ones
/// (`wamp.error.option_not_allowed`).
pub(crate) const PASSTHRU_VALUE_MAX: usize = 256;

/// Payload passthru mode attributes: the spec's `ppt_*` and crossbar's payload transparency `enc_*`. The router
/// forwards the present ones from CALL/PUBLISH/YIELD/ERROR into INVOCATION/EVENT/RESULT/ERROR details untouched.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Passthru<'a> {
    values: [Option<Field<'a>>; 7],
}

impl<'a> Passthru<'a> {
    const NAMES: [&'static str; 7] = [
        "ppt_scheme",
        "ppt_serializer",
        "ppt_cipher",
        "ppt_keyid",
        "enc_algo",
        "enc_key",
        "enc_serializer",
    ];

    /// The position of the attribute `key` in [`Passthru::NAMES`].
    fn slot(key: &str) -> Option<usize> {
        Self::NAMES.iter().position(|name| *name == key)
    }

    fn set(&mut self, key: &str, value: Field<'a>) {
        if let Some(slot) = Self::slot(key) {
            self.values[slot] = Some(value);
        }
    }

    /// The attributes of an ERROR's details (where the other request options do not apply).
    pub fn from_dict(details: &Dict<'a>) -> Passthru<'a> {
        let mut passthru = Passthru::default();
        details.for_each(|key, value| {
            passthru.set(key, value);
        });
        passthru
    }

    /// Whether the message uses passthru mode: `ppt_scheme` (or `enc_algo`) is a non-empty string.
    pub fn is_active(&self) -> bool {
        [self.values[0], self.values[4]]
            .iter()
            .flatten()
            .any(|value| value.as_str().is_some_and(|s| !s.is_empty()))
    }

    /// The first attribute that breaks the rules, if any: every attribute is a string; `ppt_*` attributes need
    /// `ppt_scheme`, which is one of the spec's predefined schemes (`mqtt`, with `ppt_serializer` native, json,
    /// msgpack or cbor if given; `wamp`, end-to-end encryption, with `ppt_serializer` cbor or flatbuffers and
    /// `ppt_cipher` xsalsa20poly1305 or aes256gcm if given) or a custom one (`x_` + lowercase letters, digits and
    /// `_`); `enc_*` attributes (payload transparency) need `enc_algo`, which is cryptobox, mqtt, xbr or custom,
    /// and `enc_serializer`, if given, is json, msgpack, cbor, ubjson, opaque, flatbuffers or custom (autobahn's
    /// rules).
    pub fn invalid(&self) -> Option<&'static str> {
        if self.values.iter().all(Option::is_none) {
            return None; // the common case: no passthru at all
        }
        let mut text: [Option<std::borrow::Cow<'a, str>>; 7] = Default::default();
        for (slot, value) in self.values.iter().enumerate() {
            if let Some(value) = value {
                match value.as_str() {
                    // A key ID or scheme name is short; a long one would only be copied into every INVOCATION
                    // of a progressive call and kept with the call while it is pending.
                    Some(s) if s.len() <= PASSTHRU_VALUE_MAX => text[slot] = Some(s),
                    _ => return Some(Self::NAMES[slot]),
                }
            }
        }
        let [scheme, serializer, cipher, keyid, algo, key, enc_serializer] = &text;
        let is = |value: &Option<std::borrow::Cow<'_, str>>, allowed: &[&str]| {
            value
                .as_deref()
                .is_none_or(|v| allowed.contains(&v) || is_custom(v))
        };
        let ppt_used =
            scheme.is_some() || serializer.is_some() || cipher.is_some() || keyid.is_some();
        if ppt_used {
            let Some(scheme) = scheme.as_deref() else {
                return Some("ppt_scheme");
            };
            match scheme {
                "mqtt" => {
                    if !is(serializer, &["native", "json", "msgpack", "cbor"]) {
                        return Some("ppt_serializer");
                    }
                }
                "wamp" => {
                    if serializer.is_none() || !is(serializer, &["cbor", "flatbuffers"]) {
                        return Some("ppt_serializer");
                    }
                    if !is(cipher, &["xsalsa20poly1305", "aes256gcm"]) {
                        return Some("ppt_cipher");
                    }
                }
                custom if is_custom(custom) => {}
                _ => return Some("ppt_scheme"),
            }
        }
        if algo.is_some() || key.is_some() || enc_serializer.is_some() {
            if algo.is_none() || !is(algo, &["cryptobox", "mqtt", "xbr"]) {
                return Some("enc_algo");
            }
            let serializers = ["json", "msgpack", "cbor", "ubjson", "opaque", "flatbuffers"];
            if !is(enc_serializer, &serializers) {
                return Some("enc_serializer");
            }
        }
        None
    }

    /// The present attributes as (name, value).
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, Field<'a>)> + '_ {
        Self::NAMES
            .iter()
            .zip(&self.values)
            .filter_map(|(name, value)| value.map(|value| (*name, value)))
    }
}

/// A custom payload passthru identifier: `x_`, then optionally a lowercase letter followed by lowercase letters,
/// digits and `_` (autobahn's rule).
fn is_custom(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("x_") else {
        return false;
    };
    let mut chars = rest.chars();
    match chars.next() {
        None => true,
        Some(first) => {
            first.is_ascii_lowercase()
                && chars.clone().next().is_some()
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        }
    }
}

/// Most entries a details dictionary the router builds has (INVOCATION: procedure, receive_progress, progress,
/// timeout, three caller identity keys, seven passthru attributes).
const DETAILS_MAX: usize = 16;

/// A details dictionary under construction, on the stack (an inline buffer that is not initialized up front):
/// building INVOCATION or EVENT details allocates nothing.
pub(crate) struct Details<'a> {
    entries: SmallVec<[(&'a str, Field<'a>); DETAILS_MAX]>,
}

impl<'a> Details<'a> {
    pub fn new() -> Details<'a> {
        Details {
            entries: SmallVec::new(),
        }
    }

    pub fn push(&mut self, key: &'a str, value: Field<'a>) {
        debug_assert!(
            self.entries.len() < DETAILS_MAX,
            "DETAILS_MAX covers every detail"
        );
        self.entries.push((key, value));
    }

    /// Appends the present passthru attributes.
    pub fn passthru(&mut self, passthru: Option<&Passthru<'a>>) {
        for (key, value) in passthru.iter().flat_map(|passthru| passthru.fields()) {
            self.push(key, value);
        }
    }

    /// Appends every entry of an owned dictionary (frozen or stored details).
    pub fn extend(&mut self, stored: &'a Value) {
        if let Value::Dict(entries) = stored {
            for (key, value) in entries {
                self.push(key, Field::Value(value));
            }
        }
    }

    /// Appends `publisher`/`caller` identity: `{prefix}`, `{prefix}_authid`, `{prefix}_authrole`.
    pub fn identity(&mut self, keys: &IdentityKeys, who: &Identity<'a>) {
        self.push(keys.0, Field::UInt(who.id.get()));
        self.push(keys.1, Field::Str(who.authid));
        self.push(keys.2, Field::Str(who.authrole));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Drops entries beyond the first `len`.
    pub fn truncate(&mut self, len: usize) {
        self.entries.truncate(len);
    }

    pub fn dict(&self) -> Dict<'_> {
        Dict::Fields(&self.entries)
    }
}

/// The identity of a session as disclosed to others.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Identity<'a> {
    pub id: Id,
    pub authid: &'a str,
    pub authrole: &'a str,
}

/// The detail names of a disclosed identity.
pub(crate) struct IdentityKeys(&'static str, &'static str, &'static str);

pub(crate) const CALLER_KEYS: IdentityKeys =
    IdentityKeys("caller", "caller_authid", "caller_authrole");
pub(crate) const PUBLISHER_KEYS: IdentityKeys =
    IdentityKeys("publisher", "publisher_authid", "publisher_authrole");

#[cfg(test)]
mod tests {
    use kreisel_codec::Serializer;

    use super::*;

    fn raw(json: &str) -> RawValue<'_> {
        RawValue::parse(Serializer::Json, json.as_bytes()).unwrap()
    }

    fn parse<'a>(json: &'a str, unsupported: &[&'static str]) -> RequestOptions<'a> {
        RequestOptions::parse(&Dict::Raw(raw(json)), unsupported)
    }

    #[test]
    fn one_pass_reads_every_option() {
        assert_eq!(
            parse("{}", &[]),
            RequestOptions {
                exclude_me: true,
                dict: Dict::Raw(raw("{}")),
                ..RequestOptions::default()
            }
        );
        let options = parse(
            r#"{"acknowledge": true, "exclude_me": false, "x_custom": 1}"#,
            &["force_reregister"],
        );
        assert!(options.acknowledge);
        assert!(!options.exclude_me);
        assert_eq!(options.unsupported, None, "unknown options are ignored");
        let options = parse(
            r#"{"force_reregister": false, "timeout": 0}"#,
            &["force_reregister"],
        );
        assert_eq!(
            options.unsupported, None,
            "options at their off value are fine"
        );
        let options = parse(r#"{"force_reregister": true}"#, &["force_reregister"]);
        assert_eq!(options.unsupported, Some("force_reregister"));
        let options = parse(
            r#"{"receive_progress": true, "progress": true, "timeout": 250, "disclose_me": true, "retain": true}"#,
            &[],
        );
        assert!(
            options.receive_progress && options.progress && options.disclose_me && options.retain
        );
        assert_eq!(options.timeout_ms, 250);
        assert_eq!(
            parse(r#"{"timeout": "soon"}"#, &[]).invalid,
            Some("timeout")
        );
        assert_eq!(parse(r#"{"timeout": null}"#, &[]).invalid, None);
        assert_eq!(parse(r#"{"exclude": 5}"#, &[]).invalid, Some("exclude"));
    }

    #[test]
    fn filters_follow_the_six_rules() {
        let id = |n| Id::new(n).unwrap();
        let filter = parse(r#"{"exclude": [1, 2], "eligible": [2, 3, 4]}"#, &[]).filter();
        let filter = filter.expect("lists present");
        assert!(!filter.admits(id(1), "a", "r"), "excluded");
        assert!(!filter.admits(id(2), "a", "r"), "excluded beats eligible");
        assert!(filter.admits(id(3), "a", "r"));
        assert!(!filter.admits(id(5), "a", "r"), "not eligible");
        let filter = parse(
            r#"{"eligible_authrole": ["staff", "boss"], "exclude_authid": ["mallory"]}"#,
            &[],
        )
        .filter()
        .expect("lists present");
        assert!(filter.admits(id(9), "alice", "staff"));
        assert!(!filter.admits(id(9), "mallory", "staff"));
        assert!(!filter.admits(id(9), "bob", "guest"));
        let nobody = parse(r#"{"eligible": []}"#, &[]).filter();
        let nobody = nobody.expect("an empty list is present");
        assert!(
            !nobody.admits(id(1), "a", "r"),
            "an empty whitelist admits nobody"
        );
        assert!(parse(r#"{"acknowledge": true}"#, &[]).filter().is_none());
        // Stored and restored (retained events) it decides the same.
        let filter = parse(r#"{"exclude_authrole": ["guest"], "eligible": [7]}"#, &[]).filter();
        let filter = filter.expect("lists present");
        let stored = filter.to_value();
        let restored = Filter::from_value(&stored);
        assert!(restored.admits(id(7), "x", "staff"));
        assert!(!restored.admits(id(7), "x", "guest"));
        assert!(!restored.admits(id(8), "x", "staff"));
    }

    #[test]
    fn passthru_attributes_are_collected_in_order() {
        let options = parse(
            r#"{"ppt_keyid": "k1", "ppt_scheme": "wamp.eth", "acknowledge": true}"#,
            &[],
        );
        assert!(options.passthru_active());
        let passthru = options.passthru().expect("attributes present");
        let names: Vec<&str> = passthru.fields().map(|(name, _)| name).collect();
        assert_eq!(names, ["ppt_scheme", "ppt_keyid"]);
        assert!(!parse(r#"{"ppt_scheme": ""}"#, &[]).passthru_active());
        assert!(parse(r#"{"enc_algo": "cryptobox"}"#, &[]).passthru_active());
        assert!(!parse(r#"{"ppt_cipher": "x"}"#, &[]).passthru_active());
        assert!(parse(r#"{"acknowledge": true}"#, &[]).passthru().is_none());
    }

    #[test]
    fn passthru_schemes_follow_the_spec() {
        let invalid = |json: &str| parse(json, &[]).invalid();
        for valid in [
            r#"{}"#,
            r#"{"ppt_scheme": "mqtt"}"#,
            r#"{"ppt_scheme": "mqtt", "ppt_serializer": "native"}"#,
            r#"{"ppt_scheme": "wamp", "ppt_serializer": "cbor", "ppt_cipher": "xsalsa20poly1305", "ppt_keyid": "0xAb"}"#,
            r#"{"ppt_scheme": "x_my_ppt", "ppt_serializer": "custom", "ppt_cipher": "x"}"#,
            r#"{"enc_algo": "cryptobox", "enc_serializer": "msgpack", "enc_key": "k"}"#,
            r#"{"enc_algo": "x_test", "enc_serializer": "json"}"#,
            r#"{"enc_algo": "x_"}"#,
        ] {
            assert_eq!(invalid(valid), None, "{valid}");
        }
        for (bad, name) in [
            (r#"{"ppt_scheme": 5}"#, "ppt_scheme"),
            (r#"{"ppt_scheme": "mine"}"#, "ppt_scheme"),
            (r#"{"ppt_scheme": "x_Mine"}"#, "ppt_scheme"),
            (r#"{"ppt_scheme": "x_a"}"#, "ppt_scheme"),
            (r#"{"ppt_serializer": "cbor"}"#, "ppt_scheme"),
            (
                r#"{"ppt_scheme": "mqtt", "ppt_serializer": "flatbuffers"}"#,
                "ppt_serializer",
            ),
            (r#"{"ppt_scheme": "wamp"}"#, "ppt_serializer"),
            (
                r#"{"ppt_scheme": "wamp", "ppt_serializer": "json"}"#,
                "ppt_serializer",
            ),
            (
                r#"{"ppt_scheme": "wamp", "ppt_serializer": "cbor", "ppt_cipher": "rot13"}"#,
                "ppt_cipher",
            ),
            (r#"{"ppt_scheme": "mqtt", "ppt_keyid": 1}"#, "ppt_keyid"),
            (r#"{"enc_algo": "invalid"}"#, "enc_algo"),
            (r#"{"enc_serializer": "cbor"}"#, "enc_algo"),
            (
                r#"{"enc_algo": "cryptobox", "enc_serializer": "yaml"}"#,
                "enc_serializer",
            ),
        ] {
            assert_eq!(invalid(bad), Some(name), "{bad}");
        }
    }
}
