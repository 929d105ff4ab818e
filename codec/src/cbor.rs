//! CBOR (`wamp.2.cbor`, RFC 8949): a validating head walker over the frame and a streaming writer.
//!
//! Decoding walks the heads of the whole frame once, without allocating or recursing, and refuses: truncated input
//! and trailing bytes; reserved additional information (28-30); indefinite-length integers and tags; unassigned and
//! reserved simple values; a break (`0xff`) anywhere but at the end of an indefinite-length item; chunks of an
//! indefinite-length string that are not definite strings of the same type; text that is not UTF-8 (each chunk on
//! its own, as RFC 8949 §3.2.3 demands); map keys that are not text (WAMP dictionaries have string keys); an
//! indefinite-length map that ends between a key and its value; nesting deeper than [`DEPTH_MAX`]. Every declared
//! length is checked against the bytes that remain before anything else happens, so a header claiming 2^64 bytes
//! or elements costs nothing.
//!
//! Choices, for what a WAMP peer may send:
//!
//! * **Tags (major type 6) are accepted and transparent.** The validator skips tag numbers and checks the tagged
//!   item; the accessors, iterators and transcoding (`walk`) see the item as if untagged. Plain WAMP data from
//!   autobahn-python (cbor2) carries no tags, but cbor2 tags integers beyond 64 bits (bignums, tag 2/3), `Decimal`s
//!   and `datetime`s, and some encoders prefix a frame with the self-described-CBOR tag 55799. Refusing those would
//!   end the session for data the router never looks at. A CBOR peer receives such a value byte for byte (spans
//!   are copied verbatim between CBOR sessions); a JSON or MessagePack peer receives the untagged item (a bignum
//!   arrives as its binary magnitude, a datetime as its string or number).
//! * **Indefinite lengths are accepted** for strings, arrays and maps. Arrays and maps are iterated to their break
//!   without allocating; an indefinite-length string is concatenated into an owned `Cow` when read (like a JSON
//!   string with escapes), so only such strings allocate. The writer only ever writes definite lengths.
//! * **Floats**: half, single and double precision are read (half precision converted exactly); the writer writes
//!   every float as a double (`0xfb`), as cbor2 does, so a float survives any round trip bit for bit.
//! * Integers: major types 0 and 1 cover -2^64..2^64-1. A negative integer below `i64::MIN` has no 64-bit form in
//!   the other serializers: it is replayed as the nearest double (as JSON replays integers beyond 64 bits).
//! * `undefined` (`0xf7`) reads as null.
//!
//! Why hand-written rather than a crate: the router needs one allocation-free pass that validates *and* yields byte
//! spans of the message elements, with UTF-8 checks, string-only map keys and the codec-wide nesting limit.
//! `ciborium` builds values (allocates); `minicbor`'s `Decoder::skip` gives positions without allocating, but skips
//! indefinite-length containers only partially without its `alloc` feature and checks neither UTF-8 of skipped
//! strings nor map keys nor depth, so a second walk would still be needed. The walker below is the size of the
//! MessagePack one and shares its shape.
//!
//! The accessors only ever see spans that passed the walker; they still never panic on anything.
use std::borrow::Cow;

use crate::raw::Kind;
use crate::{DecodeError, Serializer, DEPTH_MAX};

const TRUNCATED: DecodeError = DecodeError::Syntax("truncated cbor value");
const INVALID_UTF8: DecodeError = DecodeError::Syntax("invalid UTF-8 in cbor text");

/// The stop code that ends an indefinite-length item.
const BREAK: u8 = 0xff;

/// The `remaining` count that marks an indefinite-length list or dictionary in [`list_start`] / [`dict_start`]: no
/// definite count reaches it, since counts are checked against the input length.
const INDEFINITE: usize = usize::MAX;

// The walker keeps one bit per open container in a `u64`.
const _: () = assert!(DEPTH_MAX <= 64);

/// Validates the whole input as one top-level array and stores the byte span of each element in `out`.
/// Returns the number of elements. Errors: not an array / empty: `NotAMessage`; more than `out.len()`
/// elements: `Syntax("too many elements")`; malformed anywhere (including trailing bytes): `Syntax`;
/// nesting deeper than `DEPTH_MAX`: `TooDeep`.
pub(crate) fn split_array<'a>(bytes: &'a [u8], out: &mut [&'a [u8]]) -> Result<usize, DecodeError> {
    let mut c = Cursor { bytes, pos: 0 };
    let len = loop {
        match c.head() {
            Ok(Head::Tag) => continue,
            Ok(Head::Array(len)) => break len,
            _ => {
                // Malformed input is a syntax error; a well-formed non-array is not a message.
                validate(bytes)?;
                return Err(DecodeError::NotAMessage);
            }
        }
    };
    let mut count = 0;
    match len {
        Some(len) => {
            if len > out.len() {
                if len > bytes.len() - c.pos {
                    return Err(TRUNCATED);
                }
                return Err(DecodeError::Syntax("too many elements"));
            }
            for slot in &mut out[..len] {
                let start = c.pos;
                c.value(1, true)?;
                *slot = &bytes[start..c.pos];
            }
            count = len;
        }
        None => loop {
            if c.peek() == Some(BREAK) {
                c.pos += 1;
                break;
            }
            let slot = out
                .get_mut(count)
                .ok_or(DecodeError::Syntax("too many elements"))?;
            let start = c.pos;
            c.value(1, true)?;
            *slot = &bytes[start..c.pos];
            count += 1;
        },
    }
    c.end()?;
    if count == 0 {
        return Err(DecodeError::NotAMessage);
    }
    Ok(count)
}

/// Validates that `bytes` is exactly one well-formed value.
pub(crate) fn validate(bytes: &[u8]) -> Result<(), DecodeError> {
    let mut c = Cursor { bytes, pos: 0 };
    c.value(0, true)?;
    c.end()
}

pub(crate) fn kind(v: &[u8]) -> Kind {
    match item(v) {
        Some((Head::UInt(_) | Head::NegInt(_), _)) => Kind::Int,
        Some((Head::Float(_), _)) => Kind::Float,
        Some((Head::Bool(_), _)) => Kind::Bool,
        Some((Head::Text(_), _)) => Kind::Str,
        Some((Head::Bytes(_), _)) => Kind::Bin,
        Some((Head::Array(_), _)) => Kind::List,
        Some((Head::Map(_), _)) => Kind::Dict,
        Some((Head::Null | Head::Tag | Head::Break, _)) | None => Kind::Null,
    }
}

pub(crate) fn as_bool(v: &[u8]) -> Option<bool> {
    match item(v)?.0 {
        Head::Bool(b) => Some(b),
        _ => None,
    }
}

pub(crate) fn as_u64(v: &[u8]) -> Option<u64> {
    match item(v)?.0 {
        Head::UInt(n) => Some(n),
        _ => None,
    }
}

pub(crate) fn as_i64(v: &[u8]) -> Option<i64> {
    match item(v)?.0 {
        Head::UInt(n) => i64::try_from(n).ok(),
        Head::NegInt(n) => i64::try_from(n).ok().map(|n| -1 - n),
        _ => None,
    }
}

pub(crate) fn as_f64(v: &[u8]) -> Option<f64> {
    match item(v)?.0 {
        Head::Float(f) => Some(f),
        // Any number converts, as in JSON (rounding to the nearest double).
        Head::UInt(n) => Some(n as f64),
        Head::NegInt(n) => Some(-1.0 - n as f64),
        _ => None,
    }
}

/// Text: borrowed when definite, concatenated when sent in chunks.
pub(crate) fn as_str(v: &[u8]) -> Option<Cow<'_, str>> {
    let (head, pos) = item(v)?;
    let Head::Text(len) = head else {
        return None;
    };
    let mut chunks = Chunks::new(&v[pos..], len);
    let first = std::str::from_utf8(first_chunk(&mut chunks, len)?).ok()?;
    let Some(second) = chunks.next() else {
        return Some(Cow::Borrowed(first));
    };
    let mut text = String::from(first);
    for chunk in std::iter::once(second).chain(chunks) {
        text.push_str(std::str::from_utf8(chunk).ok()?);
    }
    Some(Cow::Owned(text))
}

/// A byte string: borrowed when definite, concatenated when sent in chunks.
pub(crate) fn as_bytes(v: &[u8]) -> Option<Cow<'_, [u8]>> {
    let (head, pos) = item(v)?;
    let Head::Bytes(len) = head else {
        return None;
    };
    let mut chunks = Chunks::new(&v[pos..], len);
    let first = first_chunk(&mut chunks, len)?;
    let Some(second) = chunks.next() else {
        return Some(Cow::Borrowed(first));
    };
    let mut bytes = first.to_vec();
    for chunk in std::iter::once(second).chain(chunks) {
        bytes.extend_from_slice(chunk);
    }
    Some(Cow::Owned(bytes))
}

/// The first chunk of a string; empty for an indefinite-length string without chunks.
fn first_chunk<'a>(chunks: &mut Chunks<'a>, len: Option<usize>) -> Option<&'a [u8]> {
    match (chunks.next(), len) {
        (Some(chunk), _) => Some(chunk),
        (None, None) => Some(&[]),
        (None, Some(_)) => None,
    }
}

/// For a list: the bytes after the header and the element count ([`INDEFINITE`]: up to a break).
pub(crate) fn list_start(v: &[u8]) -> Option<(&[u8], usize)> {
    match item(v)? {
        (Head::Array(len), pos) => Some((&v[pos..], len.unwrap_or(INDEFINITE))),
        _ => None,
    }
}

pub(crate) fn list_next<'a>(rest: &mut &'a [u8], remaining: &mut usize) -> Option<&'a [u8]> {
    if !count_off(rest, remaining) {
        return None;
    }
    Some(next_value(rest))
}

/// For a dictionary: the bytes after the header and the entry count ([`INDEFINITE`]: up to a break).
pub(crate) fn dict_start(v: &[u8]) -> Option<(&[u8], usize)> {
    match item(v)? {
        (Head::Map(len), pos) => Some((&v[pos..], len.unwrap_or(INDEFINITE))),
        _ => None,
    }
}

pub(crate) fn dict_next<'a>(
    rest: &mut &'a [u8],
    remaining: &mut usize,
) -> Option<(Cow<'a, str>, &'a [u8])> {
    if !count_off(rest, remaining) {
        return None;
    }
    let key = next_value(rest);
    let value = next_value(rest);
    Some((as_str(key)?, value))
}

/// Whether another element follows in a list or dictionary iteration, counting it off a definite count or
/// consuming the break of an indefinite one.
fn count_off(rest: &mut &[u8], remaining: &mut usize) -> bool {
    match *remaining {
        0 => false,
        INDEFINITE => {
            if matches!(rest.first(), None | Some(&BREAK)) {
                *rest = &[];
                *remaining = 0;
                return false;
            }
            true
        }
        _ => {
            *remaining -= 1;
            true
        }
    }
}

/// Replays a validated value into any writer (used to transcode and to build `Value`s).
pub(crate) fn walk<W: crate::raw::Writer>(v: &[u8], w: &mut W) {
    // Recursion is bounded: the value passed the walker, so it nests at most `DEPTH_MAX` deep.
    let Some((head, _)) = item(v) else {
        w.null();
        return;
    };
    match head {
        Head::UInt(n) => w.u64(n),
        Head::NegInt(n) => match i64::try_from(n) {
            Ok(n) => w.i64(-1 - n),
            Err(_) => w.f64(-1.0 - n as f64),
        },
        Head::Float(f) => w.f64(f),
        Head::Bool(b) => w.bool(b),
        Head::Null | Head::Tag | Head::Break => w.null(),
        // A validated value always has its payload; `null` keeps the writer's counts right regardless.
        Head::Text(_) => match as_str(v) {
            Some(s) => w.str(&s),
            None => w.null(),
        },
        Head::Bytes(_) => match as_bytes(v) {
            Some(b) => w.bin(&b),
            None => w.null(),
        },
        Head::Array(len) => {
            let items = || {
                let (mut rest, mut remaining) = list_start(v).unwrap_or((&[], 0));
                std::iter::from_fn(move || list_next(&mut rest, &mut remaining))
            };
            let count = len.unwrap_or_else(|| items().count());
            w.array(count);
            let mut items = items();
            for _ in 0..count {
                match items.next() {
                    Some(item) => walk(item, w),
                    None => w.null(),
                }
            }
        }
        Head::Map(len) => {
            let entries = || {
                let (mut rest, mut remaining) = dict_start(v).unwrap_or((&[], 0));
                std::iter::from_fn(move || {
                    count_off(&mut rest, &mut remaining)
                        .then(|| (next_value(&mut rest), next_value(&mut rest)))
                })
            };
            let count = len.unwrap_or_else(|| entries().count());
            w.map(count);
            let mut entries = entries();
            for _ in 0..count {
                let (key, value) = entries.next().unwrap_or((&[], &[]));
                w.key(&as_str(key).unwrap_or_default());
                walk(value, w);
            }
        }
    }
}

/// Replays the validated value at the start of `v` into `w` in one pass and returns what follows it: definite
/// containers with their length, indefinite ones closed at their break (`Writer::open_container`). ([`walk`]
/// splits every element off, and counts indefinite containers, before descending, which reads nested bytes once
/// per level.)
pub(crate) fn walk_one_pass<'v, W: crate::raw::Writer>(v: &'v [u8], w: &mut W) -> &'v [u8] {
    // Recursion is bounded: the value passed the walker, so it nests at most `DEPTH_MAX` deep.
    let (len, map, pos) = match item(v) {
        Some((Head::Array(len), pos)) => (len, false, pos),
        Some((Head::Map(len), pos)) => (len, true, pos),
        _ => {
            let mut rest = v;
            walk(next_value(&mut rest), w);
            return rest;
        }
    };
    let mark = match len {
        Some(len) if map => {
            w.map(len);
            None
        }
        Some(len) => {
            w.array(len);
            None
        }
        None => Some(w.open_container(map)),
    };
    let mut rest = &v[pos..];
    let mut count = 0;
    loop {
        match len {
            Some(len) if count == len => break,
            None if rest.first().is_none_or(|&b| b == BREAK) => {
                rest = rest.get(1..).unwrap_or_default();
                break;
            }
            _ => {}
        }
        if map {
            // A validated key is a text string; "" keeps the writer's counts right regardless.
            w.key(&as_str(next_value(&mut rest)).unwrap_or_default());
        }
        rest = walk_one_pass(rest, w);
        count += 1;
    }
    if let Some(mark) = mark {
        w.close_container(mark, count, map);
    }
    rest
}

/// Streaming writer (see `crate::raw::Writer`): preferred (shortest) heads, definite lengths only, floats as
/// doubles. CBOR containers are length-prefixed, so the writer keeps no state beyond `out`.
pub struct Writer<'o> {
    out: &'o mut Vec<u8>,
}

impl<'o> Writer<'o> {
    pub fn new(out: &'o mut Vec<u8>) -> Self {
        Writer { out }
    }

    /// A head of major type `major` with argument `n`, in its shortest form.
    fn head(&mut self, major: Major, n: u64) {
        let (head, len) = head_bytes(major, n);
        self.out.extend_from_slice(&head[..len]);
    }

    fn text(&mut self, v: &str) {
        self.head(Major::Text, v.len() as u64);
        self.out.extend_from_slice(v.as_bytes());
    }
}

/// The longest head: an initial octet and an 8-octet argument.
const HEAD_MAX: usize = 9;

/// The head of major type `major` with argument `n`, in its shortest form: the octets and how many are used.
fn head_bytes(major: Major, n: u64) -> ([u8; HEAD_MAX], usize) {
    let initial = (major as u8) << 5;
    let mut head = [0u8; HEAD_MAX];
    let len = if n < 24 {
        // `n < 24` fits the additional information.
        head[0] = initial | n as u8;
        1
    } else if let Ok(n) = u8::try_from(n) {
        head[..2].copy_from_slice(&[initial | 24, n]);
        2
    } else if let Ok(n) = u16::try_from(n) {
        head[0] = initial | 25;
        head[1..3].copy_from_slice(&n.to_be_bytes());
        3
    } else if let Ok(n) = u32::try_from(n) {
        head[0] = initial | 26;
        head[1..5].copy_from_slice(&n.to_be_bytes());
        5
    } else {
        head[0] = initial | 27;
        head[1..9].copy_from_slice(&n.to_be_bytes());
        9
    };
    (head, len)
}

impl crate::raw::Writer for Writer<'_> {
    fn open_container(&mut self, _map: bool) -> usize {
        crate::raw::reserve_head::<HEAD_MAX>(self.out)
    }

    fn close_container(&mut self, mark: usize, len: usize, map: bool) {
        let major = if map { Major::Map } else { Major::Array };
        let (head, head_len) = head_bytes(major, len as u64);
        crate::raw::patch_head::<HEAD_MAX>(self.out, mark, &head[..head_len]);
    }

    fn serializer(&self) -> Serializer {
        Serializer::Cbor
    }

    fn array(&mut self, len: usize) {
        self.head(Major::Array, len as u64);
    }

    fn map(&mut self, len: usize) {
        self.head(Major::Map, len as u64);
    }

    fn key(&mut self, key: &str) {
        self.text(key);
    }

    fn null(&mut self) {
        self.out.push(0xf6);
    }

    fn bool(&mut self, v: bool) {
        self.out.push(if v { 0xf5 } else { 0xf4 });
    }

    fn u64(&mut self, v: u64) {
        self.head(Major::UInt, v);
    }

    fn i64(&mut self, v: i64) {
        if v < 0 {
            // -1 - v, which is in 0..=i64::MAX.
            self.head(Major::NegInt, v.unsigned_abs() - 1);
        } else {
            self.head(Major::UInt, v.unsigned_abs());
        }
    }

    fn f64(&mut self, v: f64) {
        self.out.push(0xfb);
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    fn str(&mut self, v: &str) {
        self.text(v);
    }

    fn bin(&mut self, v: &[u8]) {
        self.head(Major::Bytes, v.len() as u64);
        self.out.extend_from_slice(v);
    }

    fn bin_base64(&mut self, base64: &[u8]) {
        use base64::Engine;
        // Decode straight into the output, behind a byte-string head of the exact decoded length.
        let start = self.out.len();
        if let Some(len) = crate::raw::base64_decoded_len(base64) {
            self.head(Major::Bytes, len as u64);
            let data = self.out.len();
            self.out.resize(data + len, 0);
            let decoded = base64::engine::general_purpose::STANDARD
                .decode_slice(base64, &mut self.out[data..]);
            if decoded == Ok(len) {
                return;
            }
            self.out.truncate(start);
        }
        // Not valid base64: the string it was, "\u0000" + text (UTF-8: it came from a validated JSON string).
        match std::str::from_utf8(base64) {
            Ok(text) => {
                self.head(Major::Text, 1 + text.len() as u64);
                self.out.push(0);
                self.out.extend_from_slice(text.as_bytes());
            }
            Err(_) => self.text(&format!("\u{0}{}", String::from_utf8_lossy(base64))),
        }
    }

    fn encoded(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }
}

/// The major types the writer uses (the high 3 bits of an initial byte).
#[derive(Clone, Copy)]
enum Major {
    UInt = 0,
    NegInt = 1,
    Bytes = 2,
    Text = 3,
    Array = 4,
    Map = 5,
}

/// What an initial byte (with its argument) says an item is. Strings carry their payload length, containers their
/// element (array) or entry (map) count; `None` is an indefinite length.
#[derive(Clone, Copy, Debug)]
enum Head {
    UInt(u64),
    /// Major type 1: the integer `-1 - n`.
    NegInt(u64),
    Bytes(Option<usize>),
    Text(Option<usize>),
    Array(Option<usize>),
    Map(Option<usize>),
    /// A tag (its number is read and ignored); the tagged item follows.
    Tag,
    Bool(bool),
    /// `null`, and `undefined`.
    Null,
    Float(f64),
    /// The stop code of indefinite-length items.
    Break,
}

/// The head of a validated value with its tags skipped, and the position after it.
fn item(v: &[u8]) -> Option<(Head, usize)> {
    let mut c = Cursor { bytes: v, pos: 0 };
    loop {
        match c.head().ok()? {
            Head::Tag => continue,
            head => return Some((head, c.pos)),
        }
    }
}

/// Splits the validated value at the start of `rest` off it.
fn next_value<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
    let mut c = Cursor {
        bytes: rest,
        pos: 0,
    };
    // Skipping cannot fail on validated input; on failure the rest is taken as one (invalid) value.
    let end = match c.value(0, false) {
        Ok(()) => c.pos,
        Err(_) => rest.len(),
    };
    let (value, tail) = rest.split_at(end);
    *rest = tail;
    value
}

/// The payload chunks of a validated string whose head has been read: one for a definite length, up to the break
/// for an indefinite one (each chunk is a definite string of the same type, checked at validation).
struct Chunks<'a> {
    c: Cursor<'a>,
    /// The length of a definite string, not yet taken.
    definite: Option<usize>,
    indefinite: bool,
}

impl<'a> Chunks<'a> {
    fn new(rest: &'a [u8], len: Option<usize>) -> Chunks<'a> {
        Chunks {
            c: Cursor {
                bytes: rest,
                pos: 0,
            },
            definite: len,
            indefinite: len.is_none(),
        }
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if let Some(len) = self.definite.take() {
            return self.c.take(len).ok();
        }
        if !self.indefinite {
            return None;
        }
        match self.c.head().ok()? {
            Head::Text(Some(len)) | Head::Bytes(Some(len)) => self.c.take(len).ok(),
            _ => {
                self.indefinite = false;
                None
            }
        }
    }
}

/// A position in the input.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// The next `len` bytes; a length beyond the input is an error before anything else happens.
    fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(TRUNCATED)?;
        let taken = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| TRUNCATED)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// Nothing may follow.
    fn end(&self) -> Result<(), DecodeError> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(DecodeError::Syntax("trailing bytes after the value"))
        }
    }

    /// The argument of a head of major type 0-6 whose initial byte has additional information `info`:
    /// `None` for an indefinite length (31).
    fn argument(&mut self, info: u8) -> Result<Option<u64>, DecodeError> {
        Ok(Some(match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.u8()?),
            25 => u64::from(u16::from_be_bytes(self.array()?)),
            26 => u64::from(u32::from_be_bytes(self.array()?)),
            27 => u64::from_be_bytes(self.array()?),
            31 => return Ok(None),
            _ => return Err(DecodeError::Syntax("reserved cbor additional information")),
        }))
    }

    /// Reads an initial byte and its argument (not the payload of strings and containers, nor a tagged item).
    fn head(&mut self) -> Result<Head, DecodeError> {
        let initial = self.u8()?;
        let (major, info) = (initial >> 5, initial & 0x1f);
        if major == 7 {
            return self.simple(info);
        }
        let argument = self.argument(info)?;
        // A length as `usize`; on targets where it does not fit, it cannot fit the input either.
        let len = |n: Option<u64>| n.map(usize::try_from).transpose().map_err(|_| TRUNCATED);
        Ok(match (major, argument) {
            (0, Some(n)) => Head::UInt(n),
            (1, Some(n)) => Head::NegInt(n),
            (2, n) => Head::Bytes(len(n)?),
            (3, n) => Head::Text(len(n)?),
            (4, n) => Head::Array(len(n)?),
            (5, n) => Head::Map(len(n)?),
            (6, Some(_)) => Head::Tag,
            _ => {
                return Err(DecodeError::Syntax(
                    "indefinite length on a cbor integer or tag",
                ))
            }
        })
    }

    /// Major type 7: simple values, floats and the break.
    fn simple(&mut self, info: u8) -> Result<Head, DecodeError> {
        Ok(match info {
            20 => Head::Bool(false),
            21 => Head::Bool(true),
            22 | 23 => Head::Null,
            25 => Head::Float(f16_to_f64(u16::from_be_bytes(self.array()?))),
            26 => Head::Float(f64::from(f32::from_be_bytes(self.array()?))),
            27 => Head::Float(f64::from_be_bytes(self.array()?)),
            31 => Head::Break,
            24 if self.u8()? < 32 => {
                return Err(DecodeError::Syntax("malformed cbor simple value"));
            }
            0..=19 | 24 => return Err(DecodeError::Syntax("unassigned cbor simple value")),
            _ => return Err(DecodeError::Syntax("reserved cbor additional information")),
        })
    }

    /// The payload of a string whose head has been read. An indefinite-length string is a run of definite chunks
    /// of the same type up to a break. With `check`, text must be UTF-8, chunk by chunk.
    fn string(&mut self, text: bool, len: Option<usize>, check: bool) -> Result<(), DecodeError> {
        let Some(len) = len else {
            loop {
                match self.head()? {
                    Head::Break => return Ok(()),
                    Head::Text(Some(len)) if text => self.chunk(true, len, check)?,
                    Head::Bytes(Some(len)) if !text => self.chunk(false, len, check)?,
                    _ => {
                        return Err(DecodeError::Syntax(
                            "invalid chunk in an indefinite-length cbor string",
                        ))
                    }
                }
            }
        };
        self.chunk(text, len, check)
    }

    fn chunk(&mut self, text: bool, len: usize, check: bool) -> Result<(), DecodeError> {
        let payload = self.take(len)?;
        if text && check && std::str::from_utf8(payload).is_err() {
            return Err(INVALID_UTF8);
        }
        Ok(())
    }

    /// Reads one value; `depth` containers are already open around it. With `check`, text must be UTF-8 and map
    /// keys text (validation); without, the value is only skipped. Iterative: the containers this value opens are
    /// kept in fixed arrays.
    fn value(&mut self, depth: usize, check: bool) -> Result<(), DecodeError> {
        // Fast path: a scalar or string (most message elements) needs no container stack.
        let first = self.peek().ok_or(TRUNCATED)?;
        if !matches!(first >> 5, 4..=6) {
            return match self.head()? {
                Head::Bytes(len) => self.string(false, len, check),
                Head::Text(len) => self.string(true, len, check),
                Head::Break => Err(DecodeError::Syntax("unexpected cbor break")),
                _ => Ok(()),
            };
        }
        // Per open container, innermost last: a definite one counts the items (array elements; map keys and
        // values) still to read down to zero; an indefinite one counts the items read so far modulo 2. Either way
        // a map expects a key when its count is even. Bit `i` of `is_map` / `indefinite` describes container `i`.
        // (Definite counts fit u32: they are bounded by the input length, checked below.)
        let mut count = [0u32; DEPTH_MAX];
        let mut is_map = 0u64;
        let mut indefinite = 0u64;
        let mut open = 0usize;
        loop {
            let innermost = open.checked_sub(1);
            let key = innermost.is_some_and(|i| is_map & (1 << i) != 0 && count[i] % 2 == 0);
            // Tags are transparent: the item is what follows them.
            let mut tagged = false;
            let mut head = self.head()?;
            while let Head::Tag = head {
                tagged = true;
                head = self.head()?;
            }
            match head {
                Head::Break => {
                    // Ends the innermost container if it is indefinite and (a map) not between key and value.
                    let closes = innermost.is_some_and(|i| {
                        indefinite & (1 << i) != 0 && (is_map & (1 << i) == 0 || key)
                    });
                    if tagged || !closes {
                        return Err(DecodeError::Syntax("unexpected cbor break"));
                    }
                    open -= 1;
                }
                Head::Text(len) => self.string(true, len, check)?,
                _ if key && check => return Err(DecodeError::Syntax("map key is not a string")),
                Head::Bytes(len) => self.string(false, len, check)?,
                Head::Array(len) | Head::Map(len) => {
                    if depth + open >= DEPTH_MAX {
                        return Err(DecodeError::TooDeep);
                    }
                    let map = matches!(head, Head::Map(_));
                    let bit = 1u64 << open;
                    match len {
                        None => {
                            count[open] = 0;
                            indefinite |= bit;
                        }
                        Some(len) => {
                            // Every item takes at least one byte: refuse counts the input cannot hold at once.
                            let items = if map {
                                len.checked_mul(2).ok_or(TRUNCATED)?
                            } else {
                                len
                            };
                            if items > self.bytes.len() - self.pos {
                                return Err(TRUNCATED);
                            }
                            count[open] = u32::try_from(items).map_err(|_| TRUNCATED)?;
                            indefinite &= !bit;
                        }
                    }
                    // An empty definite container is complete with its head; any other stays open.
                    if count[open] > 0 || indefinite & bit != 0 {
                        if map {
                            is_map |= bit;
                        } else {
                            is_map &= !bit;
                        }
                        open += 1;
                        continue;
                    }
                }
                // Scalars are complete with their head.
                _ => {}
            }
            // An item is complete: count it off, closing every definite container that this completes.
            while let Some(i) = open.checked_sub(1) {
                if indefinite & (1 << i) != 0 {
                    count[i] ^= 1;
                    break;
                }
                count[i] -= 1;
                if count[i] > 0 {
                    break;
                }
                open = i;
            }
            if open == 0 {
                return Ok(());
            }
        }
    }
}

/// An IEEE 754 half-precision float, exactly (every half is a double).
fn f16_to_f64(half: u16) -> f64 {
    let exponent = i32::from((half >> 10) & 0x1f);
    let mantissa = f64::from(half & 0x3ff);
    let magnitude = match exponent {
        // Subnormal: mantissa × 2^-24.
        0 => mantissa * 2f64.powi(-24),
        31 if mantissa == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        // Normal: (1 + mantissa / 2^10) × 2^(exponent - 15).
        _ => (1024.0 + mantissa) * 2f64.powi(exponent - 25),
    };
    if half & 0x8000 != 0 {
        -magnitude
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::Writer as _;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn syntax(input: &str) {
        let bytes = hex(input);
        assert!(
            matches!(validate(&bytes), Err(DecodeError::Syntax(_))),
            "{input} should be a syntax error, got {:?}",
            validate(&bytes)
        );
    }

    fn ok(input: &str) {
        assert_eq!(validate(&hex(input)), Ok(()), "{input} should be valid");
    }

    fn value(input: &str) -> crate::Value {
        let bytes = hex(input);
        validate(&bytes).unwrap_or_else(|e| panic!("{input}: {e}"));
        crate::RawValue::new(Serializer::Cbor, &bytes).to_value()
    }

    /// The examples of RFC 8949 Appendix A that WAMP can carry, read back.
    #[test]
    fn reads_every_major_type() {
        use crate::Value as V;
        for (input, expected) in [
            ("00", V::UInt(0)),
            ("17", V::UInt(23)),
            ("1818", V::UInt(24)),
            ("1903e8", V::UInt(1000)),
            ("1a000f4240", V::UInt(1_000_000)),
            ("1b000000e8d4a51000", V::UInt(1_000_000_000_000)),
            ("1bffffffffffffffff", V::UInt(u64::MAX)),
            ("20", V::Int(-1)),
            ("3863", V::Int(-100)),
            ("3903e7", V::Int(-1000)),
            ("3b7fffffffffffffff", V::Int(i64::MIN)),
            ("3bffffffffffffffff", V::Float(-18446744073709551616.0)),
            ("f90000", V::Float(0.0)),
            ("f93c00", V::Float(1.0)),
            ("f93e00", V::Float(1.5)),
            ("f97bff", V::Float(65504.0)),
            ("f90001", V::Float(5.960464477539063e-8)),
            ("f90400", V::Float(6.103515625e-5)),
            ("f9c400", V::Float(-4.0)),
            ("f97c00", V::Float(f64::INFINITY)),
            ("f9fc00", V::Float(f64::NEG_INFINITY)),
            ("fa47c35000", V::Float(100000.0)),
            ("fa7f7fffff", V::Float(3.4028234663852886e38)),
            ("fb3ff199999999999a", V::Float(1.1)),
            ("fb7e37e43c8800759c", V::Float(1.0e300)),
            ("f4", V::Bool(false)),
            ("f5", V::Bool(true)),
            ("f6", V::Null),
            ("f7", V::Null),
            ("40", V::Bytes(vec![])),
            ("4401020304", V::Bytes(vec![1, 2, 3, 4])),
            ("60", V::Str(String::new())),
            ("6449455446", V::Str("IETF".into())),
            ("62c3bc", V::Str("ü".into())),
            ("64f0908591", V::Str("\u{10151}".into())),
            ("80", V::List(vec![])),
            (
                "83010203",
                V::List(vec![V::UInt(1), V::UInt(2), V::UInt(3)]),
            ),
            ("a0", V::Dict(vec![])),
            (
                "a26161016162820203",
                V::Dict(vec![
                    ("a".into(), V::UInt(1)),
                    ("b".into(), V::List(vec![V::UInt(2), V::UInt(3)])),
                ]),
            ),
        ] {
            let got = value(input);
            assert_eq!(got, expected, "{input}");
        }
        assert!(matches!(value("f97e00"), crate::Value::Float(f) if f.is_nan()));
        assert_eq!(
            as_f64(&hex("f98000")).map(f64::is_sign_negative),
            Some(true)
        );
    }

    #[test]
    fn indefinite_lengths() {
        use crate::Value as V;
        assert_eq!(value("5f42010243030405ff"), V::Bytes(vec![1, 2, 3, 4, 5]));
        assert_eq!(value("5fff"), V::Bytes(vec![]));
        assert_eq!(
            value("7f657374726561646d696e67ff"),
            V::Str("streaming".into())
        );
        assert_eq!(value("7f6161ff"), V::Str("a".into()));
        assert_eq!(value("9fff"), V::List(vec![]));
        let nested = V::List(vec![
            V::UInt(1),
            V::List(vec![V::UInt(2), V::UInt(3)]),
            V::List(vec![V::UInt(4), V::UInt(5)]),
        ]);
        assert_eq!(value("9f018202039f0405ffff"), nested);
        assert_eq!(value("9f01820203820405ff"), nested);
        assert_eq!(value("83018202039f0405ff"), nested);
        assert_eq!(value("83019f0203ff820405"), nested);
        let dict = V::Dict(vec![
            ("a".into(), V::UInt(1)),
            ("b".into(), V::List(vec![V::UInt(2), V::UInt(3)])),
        ]);
        assert_eq!(value("bf61610161629f0203ffff"), dict);
        assert_eq!(value("bfff"), V::Dict(vec![]));
        // An indefinite-length text key.
        assert_eq!(
            value("bf7f6161ff01ff"),
            V::Dict(vec![("a".into(), V::UInt(1))])
        );
        // Accessors see through chunks, and iterate to the break.
        assert_eq!(
            as_str(&hex("7f626162616360ff")),
            Some(Cow::Owned("abc".into()))
        );
        assert_eq!(as_str(&hex("6161")), Some(Cow::Borrowed("a")));
        let list = hex("9f0102ff");
        let (mut rest, mut remaining) = list_start(&list).unwrap();
        assert_eq!(remaining, INDEFINITE);
        let items: Vec<_> = std::iter::from_fn(|| list_next(&mut rest, &mut remaining)).collect();
        assert_eq!(items, [&[0x01][..], &[0x02]]);
        assert_eq!(list_next(&mut rest, &mut remaining), None);
    }

    #[test]
    fn tags_are_transparent() {
        use crate::Value as V;
        assert_eq!(
            value("c074323031332d30332d32315432303a30343a30305a"),
            V::Str("2013-03-21T20:04:00Z".into())
        );
        assert_eq!(value("c11a514b67b0"), V::UInt(1_363_896_240));
        assert_eq!(value("d74401020304"), V::Bytes(vec![1, 2, 3, 4]));
        // A bignum arrives as its magnitude.
        assert_eq!(
            value("c249010000000000000000"),
            V::Bytes(vec![1, 0, 0, 0, 0, 0, 0, 0, 0])
        );
        // Self-described CBOR (tag 55799), nested tags, a tagged key, a tagged container.
        assert_eq!(value("d9d9f7c1c20a"), V::UInt(10));
        assert_eq!(
            value("a1c16161d9d9f78101"),
            V::Dict(vec![("a".into(), V::List(vec![V::UInt(1)]))])
        );
        assert_eq!(kind(&hex("c1fb3ff8000000000000")), Kind::Float);
        assert_eq!(as_u64(&hex("d9d9f71864")), Some(100));
        assert_eq!(
            as_str(&hex("c16161")).as_deref(),
            Some("a"),
            "a tagged string"
        );
    }

    #[test]
    fn refuses_malformed_input() {
        for input in [
            "",
            // Truncated heads and payloads.
            "18",
            "19 01",
            "1a 0000 00",
            "1b 00000000 000000",
            "62 61",
            "43 0102",
            "82 01",
            "a1 6161",
            "f9 00",
            "fa 0000 00",
            "fb 00000000 000000",
            "c1",
            // Reserved additional information 28-30, in every major type.
            "1c",
            "3d",
            "5e",
            "7c",
            "9d",
            "be",
            "dc",
            "fc",
            "fd",
            "fe",
            // Indefinite integers and tags.
            "1f",
            "3f",
            "df 01",
            // Simple values: unassigned, and the two-byte form of values below 32.
            "e0",
            "f3",
            "f8 10",
            "f8 20",
            "f8 ff",
            // Breaks where none may be.
            "ff",
            "82 01 ff",
            "9f c1 ff",
            "bf 6161 ff",
            "a1 ff 01",
            // Bad chunks.
            "5f 6161 ff",
            "7f 4161 ff",
            "7f 7f6161ff ff",
            "5f 01 ff",
            "5f 41 01",
            // Unterminated indefinite items.
            "9f 01",
            "bf 6161 01",
            "7f 6161",
            // Invalid UTF-8, also split across chunks.
            "61 ff",
            "62 c328",
            "63 eda080",
            "7f 61c3 61bc ff",
            // Trailing bytes.
            "01 01",
            "80 00",
            // Lengths beyond the input.
            "5b ffffffffffffffff 00",
            "7b ffffffffffffffff 61",
            "9b ffffffffffffffff 01",
            "bb ffffffffffffffff 6161 01",
            "bb 8000000000000000 6161 01",
            "5a ffffffff 00",
            "9a ffffffff 01",
        ] {
            syntax(input);
        }
        // Map keys must be text: integers, byte strings, arrays, null, also under a tag.
        for input in [
            "a1 01 01",
            "a1 4161 01",
            "a1 80 01",
            "a1 f6 01",
            "bf 01 01 ff",
            "a1 c1 01 01",
        ] {
            assert_eq!(
                validate(&hex(input)),
                Err(DecodeError::Syntax("map key is not a string")),
                "{input}"
            );
        }
    }

    #[test]
    fn depth_limit() {
        for (open, close) in [("81", "80"), ("9f", "9fff"), ("a16161", "80")] {
            let mut deep = open.repeat(DEPTH_MAX - 1);
            deep.push_str(close);
            if open == "9f" {
                deep.push_str(&"ff".repeat(DEPTH_MAX - 1));
            }
            assert_eq!(validate(&hex(&deep)), Ok(()), "{open}");
            deep.insert_str(0, open);
            if open == "9f" {
                deep.push_str("ff");
            }
            assert_eq!(validate(&hex(&deep)), Err(DecodeError::TooDeep), "{open}");
        }
        // A million unclosed openers: refused at the limit, without recursion.
        assert_eq!(validate(&[0x9f; 1_000_000]), Err(DecodeError::TooDeep));
        // Tags do not nest containers: many of them are fine.
        let mut tagged = "c1".repeat(1000);
        tagged.push_str("01");
        ok(&tagged);
    }

    #[test]
    fn split_array_handles_both_lengths() {
        let mut out: [&[u8]; 7] = [&[]; 7];
        let definite = hex("83 1821 01 02");
        assert_eq!(split_array(&definite, &mut out), Ok(3));
        assert_eq!(out[..3], [&[0x18, 0x21][..], &[0x01], &[0x02]]);
        let indefinite = hex("d9d9f7 9f 1821 9f01ff 02 ff");
        assert_eq!(split_array(&indefinite, &mut out), Ok(3));
        assert_eq!(out[..3], [&[0x18, 0x21][..], &[0x9f, 0x01, 0xff], &[0x02]]);
        let split = |input: &str| split_array(&hex(input), &mut [&[][..]; 7]);
        assert_eq!(split("80"), Err(DecodeError::NotAMessage));
        assert_eq!(split("9fff"), Err(DecodeError::NotAMessage));
        assert_eq!(split("a0"), Err(DecodeError::NotAMessage));
        assert!(matches!(split("9f01"), Err(DecodeError::Syntax(_))));
        assert!(matches!(split("9f01ff00"), Err(DecodeError::Syntax(_))));
        assert_eq!(
            split("9f 01 01 01 01 01 01 01 01 ff"),
            Err(DecodeError::Syntax("too many elements"))
        );
        // A header claiming 2^64 - 1 elements is refused at once.
        assert_eq!(split("9b ffffffffffffffff 01"), Err(TRUNCATED));
    }

    #[test]
    fn accessors() {
        assert_eq!(as_u64(&hex("1bffffffffffffffff")), Some(u64::MAX));
        assert_eq!(as_i64(&hex("1bffffffffffffffff")), None);
        assert_eq!(as_u64(&hex("20")), None);
        assert_eq!(as_i64(&hex("20")), Some(-1));
        assert_eq!(as_i64(&hex("3b8000000000000000")), None);
        assert_eq!(as_f64(&hex("fa3fc00000")), Some(1.5));
        assert_eq!(as_f64(&hex("1864")), Some(100.0));
        assert_eq!(kind(&hex("3bffffffffffffffff")), Kind::Int);
        assert_eq!(kind(&hex("40")), Kind::Bin);
        assert_eq!(kind(&hex("f7")), Kind::Null);
        assert_eq!(as_bool(&hex("f5")), Some(true));
        assert_eq!(as_bytes(&hex("420102")).as_deref(), Some(&[1, 2][..]));
        assert_eq!(as_str(&hex("626869")).as_deref(), Some("hi"));
        assert_eq!(as_bytes(&hex("626869")), None);
        assert_eq!(as_str(&hex("420102")), None);
        let map = hex("bf 6161 8101 7f6162ff f6 ff");
        let (mut rest, mut remaining) = dict_start(&map).unwrap();
        let entries: Vec<_> = std::iter::from_fn(|| dict_next(&mut rest, &mut remaining)).collect();
        assert_eq!(
            entries,
            [
                (Cow::Borrowed("a"), &[0x81, 0x01][..]),
                (Cow::Owned("b".into()), &[0xf6][..])
            ]
        );
        assert_eq!(list_start(&map), None);
        assert_eq!(dict_start(&hex("80")), None);
    }

    #[test]
    fn writer_is_compact() {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        w.array(12);
        w.u64(23);
        w.u64(24);
        w.u64(1 << 53);
        w.i64(-1);
        w.i64(-1000);
        w.i64(i64::MIN);
        w.f64(1.5);
        w.bin(&[7]);
        w.str("ü");
        w.map(1);
        w.key("a");
        w.null();
        w.bool(true);
        w.bin_base64(b"AQI=");
        assert_eq!(
            out,
            hex("8c 17 1818 1b0020000000000000 20 3903e7 3b7fffffffffffffff fb3ff8000000000000 4107 62c3bc
                 a1 6161 f6 f5 420102")
        );
        // Invalid base64 stays the string it was.
        let mut out = Vec::new();
        Writer::new(&mut out).bin_base64(b"A===");
        assert_eq!(out, hex("65 00 413d3d3d"));
        // Heads at every width boundary.
        for (n, expected) in [
            (255u64, "18ff"),
            (256, "190100"),
            (65535, "19ffff"),
            (65536, "1a00010000"),
            (u64::from(u32::MAX), "1affffffff"),
            (1 << 32, "1b0000000100000000"),
        ] {
            let mut out = Vec::new();
            Writer::new(&mut out).u64(n);
            assert_eq!(out, hex(expected), "{n}");
        }
    }

    #[test]
    fn half_floats_convert_exactly() {
        for bits in 0..=u16::MAX {
            let f = f16_to_f64(bits);
            let exponent = (bits >> 10) & 0x1f;
            if exponent == 31 && bits & 0x3ff != 0 {
                assert!(f.is_nan());
                continue;
            }
            // A half's value has at most 11 significant bits: it is exact in f32 too.
            assert_eq!(f64::from(f as f32), f, "{bits:04x}");
            assert_eq!(f.is_sign_negative(), bits & 0x8000 != 0, "{bits:04x}");
        }
        assert_eq!(f16_to_f64(0x3555), 0.333251953125);
        assert_eq!(f16_to_f64(0x0001), 2f64.powi(-24));
        assert_eq!(f16_to_f64(0x03ff), 1023.0 * 2f64.powi(-24));
    }
}
