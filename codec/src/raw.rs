use std::borrow::Cow;

use crate::{cbor, json, msgpack, Serializer, Value};

/// What a [`RawValue`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    /// Any integer (signed or unsigned).
    Int,
    Float,
    /// A string (in JSON also a `"\u0000"`-prefixed binary string: check [`RawValue::as_bytes`]).
    Str,
    Bin,
    List,
    Dict,
}

/// One encoded value inside a decoded frame: the serializer plus the exact bytes of the value. It was validated
/// when its message was decoded, so every accessor is infallible in the sense that it never sees malformed input;
/// accessors return `None` only when the value has another kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawValue<'a> {
    ser: Serializer,
    bytes: &'a [u8],
}

impl<'a> RawValue<'a> {
    /// Wraps bytes that the serializer's validator accepted (crate-internal: outside code gets `RawValue`s only
    /// from decoded messages).
    pub(crate) fn new(ser: Serializer, bytes: &'a [u8]) -> RawValue<'a> {
        RawValue { ser, bytes }
    }

    /// Wraps bytes that were validated as one value of `ser` earlier in this process (a router handing a decoded
    /// value to another of its threads). The accessors rely on validity: never use this for bytes from elsewhere;
    /// use [`RawValue::parse`].
    pub fn trusted(ser: Serializer, bytes: &'a [u8]) -> RawValue<'a> {
        debug_assert!(
            RawValue::parse(ser, bytes).is_ok(),
            "RawValue::trusted on bytes that are not one valid value"
        );
        RawValue { ser, bytes }
    }

    /// Validates `bytes` as exactly one value of serializer `ser` and wraps it.
    pub fn parse(ser: Serializer, bytes: &'a [u8]) -> Result<RawValue<'a>, crate::DecodeError> {
        match ser {
            Serializer::Json => json::validate(bytes)?,
            Serializer::MsgPack => msgpack::validate(bytes)?,
            Serializer::Cbor => cbor::validate(bytes)?,
        }
        Ok(RawValue { ser, bytes })
    }

    pub fn serializer(&self) -> Serializer {
        self.ser
    }

    /// The encoded bytes of this value.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn kind(&self) -> Kind {
        match self.ser {
            Serializer::Json => json::kind(self.bytes),
            Serializer::MsgPack => msgpack::kind(self.bytes),
            Serializer::Cbor => cbor::kind(self.bytes),
        }
    }

    pub fn is_null(&self) -> bool {
        self.kind() == Kind::Null
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.ser {
            Serializer::Json => json::as_bool(self.bytes),
            Serializer::MsgPack => msgpack::as_bool(self.bytes),
            Serializer::Cbor => cbor::as_bool(self.bytes),
        }
    }

    /// A non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match self.ser {
            Serializer::Json => json::as_u64(self.bytes),
            Serializer::MsgPack => msgpack::as_u64(self.bytes),
            Serializer::Cbor => cbor::as_u64(self.bytes),
        }
    }

    /// An integer that fits in `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self.ser {
            Serializer::Json => json::as_i64(self.bytes),
            Serializer::MsgPack => msgpack::as_i64(self.bytes),
            Serializer::Cbor => cbor::as_i64(self.bytes),
        }
    }

    /// Any number, as a float.
    pub fn as_f64(&self) -> Option<f64> {
        match self.ser {
            Serializer::Json => json::as_f64(self.bytes),
            Serializer::MsgPack => msgpack::as_f64(self.bytes),
            Serializer::Cbor => cbor::as_f64(self.bytes),
        }
    }

    /// A string; borrowed unless JSON escapes had to be resolved.
    pub fn as_str(&self) -> Option<Cow<'a, str>> {
        match self.ser {
            Serializer::Json => json::as_str(self.bytes),
            Serializer::MsgPack => msgpack::as_str(self.bytes),
            Serializer::Cbor => cbor::as_str(self.bytes),
        }
    }

    /// Binary: MessagePack `bin`, a CBOR byte string, or a JSON string `"\u0000" + base64` decoded.
    pub fn as_bytes(&self) -> Option<Cow<'a, [u8]>> {
        match self.ser {
            Serializer::Json => json::as_bytes(self.bytes),
            Serializer::MsgPack => msgpack::as_bytes(self.bytes),
            Serializer::Cbor => cbor::as_bytes(self.bytes),
        }
    }

    /// The elements of a list.
    pub fn list(&self) -> Option<ListIter<'a>> {
        let (rest, remaining) = match self.ser {
            Serializer::Json => json::list_start(self.bytes)?,
            Serializer::MsgPack => msgpack::list_start(self.bytes)?,
            Serializer::Cbor => cbor::list_start(self.bytes)?,
        };
        Some(ListIter {
            ser: self.ser,
            rest,
            remaining,
        })
    }

    /// The entries of a dictionary, in encoded order. Keys are strings (validated at decode).
    pub fn dict(&self) -> Option<DictIter<'a>> {
        let (rest, remaining) = match self.ser {
            Serializer::Json => json::dict_start(self.bytes)?,
            Serializer::MsgPack => msgpack::dict_start(self.bytes)?,
            Serializer::Cbor => cbor::dict_start(self.bytes)?,
        };
        Some(DictIter {
            ser: self.ser,
            rest,
            remaining,
        })
    }

    /// The first entry `key` of a dictionary (`None` for a missing key or a non-dictionary).
    pub fn get(&self, key: &str) -> Option<RawValue<'a>> {
        self.dict()?.find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// An owned copy (one pass over the bytes, whatever the nesting: see `walk_one_pass`).
    pub fn to_value(&self) -> Value {
        let mut builder = ValueBuilder::default();
        walk_one_pass(*self, &mut builder);
        builder.finish()
    }
}

/// Iterator over a list's elements. See [`RawValue::list`].
#[derive(Clone, Debug)]
pub struct ListIter<'a> {
    ser: Serializer,
    rest: &'a [u8],
    remaining: usize,
}

impl<'a> Iterator for ListIter<'a> {
    type Item = RawValue<'a>;

    fn next(&mut self) -> Option<RawValue<'a>> {
        let bytes = match self.ser {
            Serializer::Json => json::list_next(&mut self.rest, &mut self.remaining)?,
            Serializer::MsgPack => msgpack::list_next(&mut self.rest, &mut self.remaining)?,
            Serializer::Cbor => cbor::list_next(&mut self.rest, &mut self.remaining)?,
        };
        Some(RawValue {
            ser: self.ser,
            bytes,
        })
    }
}

/// Iterator over a dictionary's entries. See [`RawValue::dict`].
#[derive(Clone, Debug)]
pub struct DictIter<'a> {
    ser: Serializer,
    rest: &'a [u8],
    remaining: usize,
}

impl<'a> Iterator for DictIter<'a> {
    type Item = (Cow<'a, str>, RawValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let (key, bytes) = match self.ser {
            Serializer::Json => json::dict_next(&mut self.rest, &mut self.remaining)?,
            Serializer::MsgPack => msgpack::dict_next(&mut self.rest, &mut self.remaining)?,
            Serializer::Cbor => cbor::dict_next(&mut self.rest, &mut self.remaining)?,
        };
        Some((
            key,
            RawValue {
                ser: self.ser,
                bytes,
            },
        ))
    }
}

/// The exact decoded length of padded standard base64 text, if its length and padding are well-formed (used by
/// the binary writers' `bin_base64` to size the output before decoding into it).
pub(crate) fn base64_decoded_len(base64: &[u8]) -> Option<usize> {
    if !base64.len().is_multiple_of(4) {
        return None;
    }
    let padding = base64
        .iter()
        .rev()
        .take(2)
        .take_while(|&&b| b == b'=')
        .count();
    Some(base64.len() / 4 * 3 - padding)
}

/// The output side shared by every serializer: a length-prefixed, streaming writer. `array(n)` / `map(n)` open a
/// container that closes itself after exactly `n` values (`n` key/value pairs); JSON writers insert separators and
/// closing brackets themselves.
pub(crate) trait Writer {
    fn serializer(&self) -> Serializer;
    fn array(&mut self, len: usize);
    fn map(&mut self, len: usize);
    /// A map key; must be followed by its value.
    fn key(&mut self, key: &str);
    fn null(&mut self);
    fn bool(&mut self, v: bool);
    fn u64(&mut self, v: u64);
    fn i64(&mut self, v: i64);
    fn f64(&mut self, v: f64);
    fn str(&mut self, v: &str);
    fn bin(&mut self, v: &[u8]);
    /// Binary given as the standard, padded base64 text of a JSON binary string (the part after `\u0000`).
    /// Writers override this to avoid a temporary buffer; text that does not decode is written as the JSON
    /// string it was (`"\u0000" + text`).
    fn bin_base64(&mut self, base64: &[u8]) {
        use base64::Engine;
        match base64::engine::general_purpose::STANDARD.decode(base64) {
            Ok(bytes) => self.bin(&bytes),
            Err(_) => {
                let mut text = String::from("\u{0}");
                text.push_str(&String::from_utf8_lossy(base64));
                self.str(&text);
            }
        }
    }
    /// An already-encoded value in this writer's serializer, copied verbatim.
    fn encoded(&mut self, bytes: &[u8]);
    /// Opens an array (`map: false`) or map whose length is known only when it ends; returns a mark for
    /// [`Writer::close_container`]. MessagePack and CBOR reserve room for the longest length head and shorten it
    /// at the end; JSON just closes the bracket. With these, every source transcodes in one pass (`walk_one_pass`
    /// of each codec): JSON and CBOR's indefinite-length containers need not be counted before they are written,
    /// and no container's elements are skipped over to find their ends before they are walked, which would read
    /// nested bytes once per level.
    fn open_container(&mut self, map: bool) -> usize;
    /// Closes the container opened at `mark`, after its `len` elements (map entries) were written.
    fn close_container(&mut self, mark: usize, len: usize, map: bool);

    /// Any raw value: copied when serializers match, transcoded in one pass otherwise.
    fn raw(&mut self, v: RawValue<'_>)
    where
        Self: Sized,
    {
        if v.ser == self.serializer() {
            self.encoded(v.bytes);
        } else {
            walk_one_pass(v, self);
        }
    }
}

/// Reserves `RESERVED` octets for a container head whose length is not known yet; returns the mark for
/// [`patch_head`].
pub(crate) fn reserve_head<const RESERVED: usize>(out: &mut Vec<u8>) -> usize {
    let mark = out.len();
    out.extend_from_slice(&[0; RESERVED]);
    mark
}

/// Writes a container's head (`head[..head_len]`) where `RESERVED` octets were held for it at `mark`, moving the
/// container's content back over the unused ones.
pub(crate) fn patch_head<const RESERVED: usize>(out: &mut Vec<u8>, mark: usize, head: &[u8]) {
    debug_assert!(head.len() <= RESERVED && mark + RESERVED <= out.len());
    let unused = RESERVED - head.len();
    if unused > 0 {
        out.copy_within(mark + RESERVED.., mark + head.len());
        out.truncate(out.len() - unused);
    }
    out[mark..mark + head.len()].copy_from_slice(head);
}

/// Replays a raw value into a writer in one pass over its bytes (each codec's `walk_one_pass`), so that the cost
/// is linear in its size at any nesting depth.
pub(crate) fn walk_one_pass<W: Writer>(v: RawValue<'_>, w: &mut W) {
    match v.ser {
        Serializer::Json => json::walk_one_pass(v.bytes, w),
        Serializer::MsgPack => msgpack::walk_one_pass(v.bytes, w),
        Serializer::Cbor => cbor::walk_one_pass(v.bytes, w),
    };
}

/// Replays a raw value into a writer of any serializer, splitting every element off before walking it. The
/// routing code uses [`walk_one_pass`]; this is the reference the one-pass walks are tested against.
#[cfg(test)]
pub(crate) fn walk<W: Writer>(v: RawValue<'_>, w: &mut W) {
    match v.ser {
        Serializer::Json => json::walk(v.bytes, w),
        Serializer::MsgPack => msgpack::walk(v.bytes, w),
        Serializer::Cbor => cbor::walk(v.bytes, w),
    }
}

pub(crate) fn transcode(v: RawValue<'_>, to: Serializer, out: &mut Vec<u8>) {
    match to {
        Serializer::Json => json::Writer::new(out).raw(v),
        Serializer::MsgPack => msgpack::Writer::new(out).raw(v),
        Serializer::Cbor => cbor::Writer::new(out).raw(v),
    }
}

/// A [`Writer`] that builds a [`Value`] tree (used by [`RawValue::to_value`]).
#[derive(Default)]
struct ValueBuilder {
    /// Open containers: the container, its expected length, and a pending key for dictionaries.
    stack: Vec<(Value, usize, Option<String>)>,
    done: Option<Value>,
}

impl ValueBuilder {
    fn finish(self) -> Value {
        self.done.unwrap_or(Value::Null)
    }

    fn push(&mut self, value: Value) {
        let mut value = value;
        loop {
            let Some((container, len, key)) = self.stack.last_mut() else {
                self.done = Some(value);
                return;
            };
            match container {
                Value::List(items) => items.push(value),
                Value::Dict(entries) => entries.push((key.take().unwrap_or_default(), value)),
                _ => unreachable!("only containers are stacked"),
            }
            let full = match container {
                Value::List(items) => items.len() == *len,
                Value::Dict(entries) => entries.len() == *len,
                _ => false,
            };
            if !full {
                return;
            }
            // The container is complete: pop it and push it into its parent.
            let Some((complete, _, _)) = self.stack.pop() else {
                return;
            };
            value = complete;
        }
    }

    fn open(&mut self, container: Value, len: usize) {
        if len == 0 {
            self.push(container);
        } else {
            self.stack.push((container, len, None));
        }
    }
}

impl Writer for ValueBuilder {
    fn open_container(&mut self, map: bool) -> usize {
        let container = if map {
            Value::Dict(Vec::new())
        } else {
            Value::List(Vec::new())
        };
        // Never full: `close_container` completes it.
        self.stack.push((container, usize::MAX, None));
        0
    }

    fn close_container(&mut self, _mark: usize, _len: usize, _map: bool) {
        if let Some((complete, _, _)) = self.stack.pop() {
            self.push(complete);
        }
    }

    fn serializer(&self) -> Serializer {
        // The builder has no serializer of its own. It claims MessagePack so that `encoded` has a defined input
        // format; `raw` is overridden below and never relies on it.
        Serializer::MsgPack
    }
    fn raw(&mut self, v: RawValue<'_>) {
        // Always replay, whatever the source serializer: a builder never copies bytes.
        walk_one_pass(v, self)
    }
    fn array(&mut self, len: usize) {
        self.open(Value::List(Vec::with_capacity(len.min(64))), len);
    }
    fn map(&mut self, len: usize) {
        self.open(Value::Dict(Vec::with_capacity(len.min(64))), len);
    }
    fn key(&mut self, key: &str) {
        if let Some((_, _, pending)) = self.stack.last_mut() {
            *pending = Some(key.to_owned());
        }
    }
    fn null(&mut self) {
        self.push(Value::Null)
    }
    fn bool(&mut self, v: bool) {
        self.push(Value::Bool(v))
    }
    fn u64(&mut self, v: u64) {
        self.push(Value::UInt(v))
    }
    fn i64(&mut self, v: i64) {
        self.push(Value::from(v))
    }
    fn f64(&mut self, v: f64) {
        self.push(Value::Float(v))
    }
    fn str(&mut self, v: &str) {
        self.push(Value::Str(v.to_owned()))
    }
    fn bin(&mut self, v: &[u8]) {
        self.push(Value::Bytes(v.to_vec()))
    }
    /// Bytes in this writer's serializer, i.e. MessagePack (see `serializer`). Nothing calls this: `raw` walks.
    fn encoded(&mut self, bytes: &[u8]) {
        walk_one_pass(RawValue::new(Serializer::MsgPack, bytes), self)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{cbor, msgpack};

    /// JSON text of every kind the scanner accepts: scalars, escaped and binary strings, nested containers, with
    /// whitespace between tokens.
    fn json_text() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            (-1e9f64..1e9).prop_map(|f| format!("{f:e}")),
            "[a-z\"\\\\\u{e9}\u{1F600}]{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            "[A-Za-z0-9+/]{0,3}".prop_map(|s| format!("\"\\u0000{s}\"")),
            Just("\"\\u0000AAECAw==\"".to_owned()),
        ];
        leaf.prop_recursive(5, 64, 20, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..20)
                    .prop_map(|items| format!("[ {} ]", items.join(" ,\n"))),
                proptest::collection::vec(("[a-z\"]{0,5}", inner), 0..20).prop_map(|entries| {
                    let entries: Vec<String> = entries
                        .into_iter()
                        .map(|(k, v)| format!("{} : {v}", serde_json::to_string(&k).unwrap()))
                        .collect();
                    format!("{{{}}}", entries.join(","))
                }),
            ]
        })
    }

    /// The two-pass walk (each container counted before it is written) and the one-pass walk give the same bytes.
    fn both_walks(json: &str) -> [(Vec<u8>, Vec<u8>); 2] {
        let v = RawValue::parse(Serializer::Json, json.as_bytes()).expect("valid JSON");
        let (mut counted, mut one_pass) = (Vec::new(), Vec::new());
        json::walk(v.bytes, &mut msgpack::Writer::new(&mut counted));
        json::walk_one_pass(v.bytes, &mut msgpack::Writer::new(&mut one_pass));
        let msgpack = (counted, one_pass);
        let (mut counted, mut one_pass) = (Vec::new(), Vec::new());
        json::walk(v.bytes, &mut cbor::Writer::new(&mut counted));
        json::walk_one_pass(v.bytes, &mut cbor::Writer::new(&mut one_pass));
        [msgpack, (counted, one_pass)]
    }

    /// From MessagePack and CBOR (made from `json`) into the other two serializers: the old walk and the one-pass
    /// walk give the same bytes.
    fn both_walks_from_binary(json: &str) -> Vec<(String, Vec<u8>, Vec<u8>)> {
        let v = RawValue::parse(Serializer::Json, json.as_bytes()).expect("valid JSON");
        let mut pairs = Vec::new();
        for from in [Serializer::MsgPack, Serializer::Cbor] {
            let mut src = Vec::new();
            transcode(v, from, &mut src);
            pairs.extend(walks_from(from, &src));
        }
        pairs
    }

    /// `src` (a valid value in `from`) into every other serializer by the old walk and by the one-pass walk.
    fn walks_from(from: Serializer, src: &[u8]) -> Vec<(String, Vec<u8>, Vec<u8>)> {
        let v = RawValue::parse(from, src).expect("valid value");
        let mut pairs = Vec::new();
        for to in Serializer::ALL.into_iter().filter(|&to| to != from) {
            let (mut old, mut new) = (Vec::new(), Vec::new());
            match to {
                Serializer::Json => walk(v, &mut json::Writer::new(&mut old)),
                Serializer::MsgPack => walk(v, &mut msgpack::Writer::new(&mut old)),
                Serializer::Cbor => walk(v, &mut cbor::Writer::new(&mut old)),
            }
            match to {
                Serializer::Json => json::Writer::new(&mut new).raw(v),
                Serializer::MsgPack => msgpack::Writer::new(&mut new).raw(v),
                Serializer::Cbor => cbor::Writer::new(&mut new).raw(v),
            }
            pairs.push((format!("{from:?} -> {to:?}"), old, new));
        }
        pairs
    }

    /// `to_value` (one pass) builds what the old walk built, from every serializer.
    fn values_agree(json: &str) -> Result<(), String> {
        let v = RawValue::parse(Serializer::Json, json.as_bytes()).expect("valid JSON");
        for ser in Serializer::ALL {
            let mut src = Vec::new();
            transcode(v, ser, &mut src);
            let raw = RawValue::parse(ser, &src).expect("valid");
            let mut old = ValueBuilder::default();
            walk(raw, &mut old);
            let old = old.finish();
            if raw.to_value() != old {
                return Err(format!("{ser:?}: {json}"));
            }
        }
        Ok(())
    }

    #[test]
    fn one_pass_from_cbor_indefinite_lengths_and_tags() {
        // [_ 1, [_ 2, 3], {_ "a": [_ ], "b": 24(h'01')}, 1(0)]; an indefinite map with a tagged key; chunked
        // text and byte strings in an indefinite array.
        let cases: [&[u8]; 3] = [
            &[
                0x9f, 0x01, 0x9f, 0x02, 0x03, 0xff, 0xbf, 0x61, b'a', 0x9f, 0xff, 0x61, b'b', 0xd8,
                0x18, 0x41, 0x01, 0xff, 0xc1, 0x00, 0xff,
            ],
            &[0xbf, 0xc0, 0x61, b'k', 0x82, 0x9f, 0xff, 0xa0, 0xff],
            &[
                0x9f, 0x7f, 0x61, b'a', 0x61, b'b', 0xff, 0x5f, 0x41, 0x01, 0xff, 0xff,
            ],
        ];
        for src in cases {
            for (what, old, new) in walks_from(Serializer::Cbor, src) {
                assert_eq!(old, new, "{what}: {src:02x?}");
            }
            let raw = RawValue::parse(Serializer::Cbor, src).expect("valid");
            let mut old = ValueBuilder::default();
            walk(raw, &mut old);
            assert_eq!(raw.to_value(), old.finish(), "{src:02x?}");
        }
    }

    #[test]
    fn one_pass_heads_at_every_length_boundary() {
        // MessagePack: fixarray/fixmap below 16, 16-bit up to 65535, 32-bit beyond; CBOR: immediate below 24, then
        // 1, 2 and 4 octets from 24, 256 and 65536.
        for len in [0, 1, 15, 16, 23, 24, 255, 256, 65535, 65536] {
            let list = format!("[{}]", vec!["1"; len].join(","));
            let dict = format!(
                "{{{}}}",
                (0..len)
                    .map(|i| format!("\"k{i}\":[{i}]"))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            for json in [
                list,
                dict,
                format!("[[{}], {{}}, []]", vec!["0"; len].join(",")),
            ] {
                for (counted, one_pass) in both_walks(&json) {
                    assert!(
                        counted == one_pass,
                        "{len}: {:?}",
                        &json[..json.len().min(40)]
                    );
                }
                for (what, old, new) in both_walks_from_binary(&json) {
                    assert!(
                        old == new,
                        "{what} {len}: {:?}",
                        &json[..json.len().min(40)]
                    );
                }
            }
        }
    }

    proptest! {
        #[test]
        fn one_pass_transcoding_equals_the_counting_walk(json in json_text()) {
            for (counted, one_pass) in both_walks(&json) {
                prop_assert_eq!(counted, one_pass, "{}", json);
            }
            for (what, old, new) in both_walks_from_binary(&json) {
                prop_assert_eq!(old, new, "{}: {}", what, json);
            }
            prop_assert_eq!(values_agree(&json), Ok(()));
        }
    }
}
