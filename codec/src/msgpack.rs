//! MessagePack (`wamp.2.msgpack`): a validating marker walker over the frame and a streaming writer.
//!
//! Decoding walks the markers of the whole frame once (via [`rmp::Marker`]) without allocating or recursing:
//! truncated input, trailing bytes, the reserved marker `0xc1`, `ext` types, strings that are not UTF-8, map keys
//! that are not strings and nesting deeper than [`DEPTH_MAX`] are refused. Every declared length is checked against
//! the bytes that remain before anything else happens, so a header claiming 4 GiB costs nothing.
//!
//! The accessors only ever see spans that passed the walker; they still never panic on anything.
use std::borrow::Cow;

use rmp::Marker;

use crate::raw::Kind;
use crate::{DecodeError, Serializer, DEPTH_MAX};

const TRUNCATED: DecodeError = DecodeError::Syntax("truncated msgpack value");

/// Validates the whole input as one top-level array and stores the byte span of each element in `out`.
/// Returns the number of elements. Errors: not an array / empty: `NotAMessage`; more than `out.len()`
/// elements: `Syntax("too many elements")`; malformed anywhere (including trailing bytes): `Syntax`;
/// nesting deeper than `DEPTH_MAX`: `TooDeep`.
pub(crate) fn split_array<'a>(bytes: &'a [u8], out: &mut [&'a [u8]]) -> Result<usize, DecodeError> {
    let mut c = Cursor { bytes, pos: 0 };
    let len = match c.head() {
        Ok(Head::Array(len)) => len,
        _ => {
            // Malformed input is a syntax error; a well-formed non-array is not a message.
            validate(bytes)?;
            return Err(DecodeError::NotAMessage);
        }
    };
    if len == 0 {
        c.end()?;
        return Err(DecodeError::NotAMessage);
    }
    if len > out.len() {
        return Err(DecodeError::Syntax("too many elements"));
    }
    for slot in &mut out[..len] {
        let start = c.pos;
        c.value(1, true)?;
        *slot = &bytes[start..c.pos];
    }
    c.end()?;
    Ok(len)
}

/// Validates that `bytes` is exactly one well-formed value.
pub(crate) fn validate(bytes: &[u8]) -> Result<(), DecodeError> {
    let mut c = Cursor { bytes, pos: 0 };
    c.value(0, true)?;
    c.end()
}

pub(crate) fn kind(v: &[u8]) -> Kind {
    match head(v) {
        Some(Head::Nil) | None => Kind::Null,
        Some(Head::Bool(_)) => Kind::Bool,
        Some(Head::UInt(_) | Head::Int(_)) => Kind::Int,
        Some(Head::F32(_) | Head::F64(_)) => Kind::Float,
        Some(Head::Str(_)) => Kind::Str,
        Some(Head::Bin(_)) => Kind::Bin,
        Some(Head::Array(_)) => Kind::List,
        Some(Head::Map(_)) => Kind::Dict,
    }
}

pub(crate) fn as_bool(v: &[u8]) -> Option<bool> {
    match head(v)? {
        Head::Bool(b) => Some(b),
        _ => None,
    }
}

pub(crate) fn as_u64(v: &[u8]) -> Option<u64> {
    match head(v)? {
        Head::UInt(n) => Some(n),
        Head::Int(n) => u64::try_from(n).ok(),
        _ => None,
    }
}

pub(crate) fn as_i64(v: &[u8]) -> Option<i64> {
    match head(v)? {
        Head::UInt(n) => i64::try_from(n).ok(),
        Head::Int(n) => Some(n),
        _ => None,
    }
}

pub(crate) fn as_f64(v: &[u8]) -> Option<f64> {
    match head(v)? {
        Head::F32(f) => Some(f64::from(f)),
        Head::F64(f) => Some(f),
        // Any number converts, as in JSON (rounding to the nearest double).
        Head::UInt(n) => Some(n as f64),
        Head::Int(n) => Some(n as f64),
        _ => None,
    }
}

pub(crate) fn as_str(v: &[u8]) -> Option<Cow<'_, str>> {
    let mut c = Cursor { bytes: v, pos: 0 };
    match c.head().ok()? {
        Head::Str(len) => std::str::from_utf8(c.take(len).ok()?)
            .ok()
            .map(Cow::Borrowed),
        _ => None,
    }
}

pub(crate) fn as_bytes(v: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut c = Cursor { bytes: v, pos: 0 };
    match c.head().ok()? {
        Head::Bin(len) => c.take(len).ok().map(Cow::Borrowed),
        _ => None,
    }
}

/// For a list: the bytes after the header and the element count.
pub(crate) fn list_start(v: &[u8]) -> Option<(&[u8], usize)> {
    let mut c = Cursor { bytes: v, pos: 0 };
    match c.head().ok()? {
        Head::Array(len) => Some((&v[c.pos..], len)),
        _ => None,
    }
}

pub(crate) fn list_next<'a>(rest: &mut &'a [u8], remaining: &mut usize) -> Option<&'a [u8]> {
    if *remaining == 0 {
        return None;
    }
    *remaining -= 1;
    Some(next_value(rest))
}

/// For a dictionary: the bytes after the header and the entry count.
pub(crate) fn dict_start(v: &[u8]) -> Option<(&[u8], usize)> {
    let mut c = Cursor { bytes: v, pos: 0 };
    match c.head().ok()? {
        Head::Map(len) => Some((&v[c.pos..], len)),
        _ => None,
    }
}

pub(crate) fn dict_next<'a>(
    rest: &mut &'a [u8],
    remaining: &mut usize,
) -> Option<(Cow<'a, str>, &'a [u8])> {
    if *remaining == 0 {
        return None;
    }
    *remaining -= 1;
    let key = next_value(rest);
    let value = next_value(rest);
    Some((as_str(key)?, value))
}

/// Replays a validated value into any writer (used to transcode and to build `Value`s).
pub(crate) fn walk<W: crate::raw::Writer>(v: &[u8], w: &mut W) {
    // Recursion is bounded: the value passed the walker, so it nests at most `DEPTH_MAX` deep.
    let mut c = Cursor { bytes: v, pos: 0 };
    let Ok(head) = c.head() else {
        w.null();
        return;
    };
    match head {
        Head::Nil => w.null(),
        Head::Bool(b) => w.bool(b),
        Head::UInt(n) => w.u64(n),
        Head::Int(n) => match u64::try_from(n) {
            Ok(n) => w.u64(n),
            Err(_) => w.i64(n),
        },
        Head::F32(f) => w.f64(f64::from(f)),
        Head::F64(f) => w.f64(f),
        // A validated value always has its payload; `null` keeps the writer's counts right regardless.
        Head::Str(_) => match as_str(v) {
            Some(s) => w.str(&s),
            None => w.null(),
        },
        Head::Bin(_) => match as_bytes(v) {
            Some(b) => w.bin(&b),
            None => w.null(),
        },
        Head::Array(len) => {
            let mut rest = &v[c.pos..];
            w.array(len);
            for _ in 0..len {
                walk(next_value(&mut rest), w);
            }
        }
        Head::Map(len) => {
            let mut rest = &v[c.pos..];
            w.map(len);
            for _ in 0..len {
                let key = next_value(&mut rest);
                w.key(&as_str(key).unwrap_or_default());
                walk(next_value(&mut rest), w);
            }
        }
    }
}

/// Replays the validated value at the start of `v` into `w` in one pass and returns what follows it. ([`walk`]
/// splits every element off before descending into it, which reads nested bytes once per level: a deeply nested
/// value from a peer would cost the router a multiple of its size.)
pub(crate) fn walk_one_pass<'v, W: crate::raw::Writer>(v: &'v [u8], w: &mut W) -> &'v [u8] {
    // Recursion is bounded: the value passed the walker, so it nests at most `DEPTH_MAX` deep.
    let mut c = Cursor { bytes: v, pos: 0 };
    let (len, map) = match c.head() {
        Ok(Head::Array(len)) => (len, false),
        Ok(Head::Map(len)) => (len, true),
        _ => {
            let mut rest = v;
            walk(next_value(&mut rest), w);
            return rest;
        }
    };
    if map {
        w.map(len);
    } else {
        w.array(len);
    }
    let mut rest = &v[c.pos..];
    for _ in 0..len {
        if map {
            // A validated key is a string; "" keeps the writer's counts right regardless.
            w.key(&as_str(next_value(&mut rest)).unwrap_or_default());
        }
        rest = walk_one_pass(rest, w);
    }
    rest
}

/// Streaming writer (see `crate::raw::Writer`): the most compact encoding of each value. MessagePack containers
/// are length-prefixed, so the writer keeps no state beyond `out`.
pub struct Writer<'o> {
    out: &'o mut Vec<u8>,
}

impl<'o> Writer<'o> {
    pub fn new(out: &'o mut Vec<u8>) -> Self {
        Writer { out }
    }
}

// Every `rmp::encode` call below writes into a `Vec<u8>`, which cannot fail: the results are ignored on purpose.
impl crate::raw::Writer for Writer<'_> {
    fn open_container(&mut self, _map: bool) -> usize {
        crate::raw::reserve_head::<CONTAINER_HEAD_MAX>(self.out)
    }

    fn close_container(&mut self, mark: usize, len: usize, map: bool) {
        let len = len32(len);
        let mut head = [0u8; CONTAINER_HEAD_MAX];
        let head_len = if len < 16 {
            head[0] = if map { 0x80 } else { 0x90 } | len as u8;
            1
        } else if let Ok(len) = u16::try_from(len) {
            head[0] = if map { 0xde } else { 0xdc };
            head[1..3].copy_from_slice(&len.to_be_bytes());
            3
        } else {
            head[0] = if map { 0xdf } else { 0xdd };
            head[1..5].copy_from_slice(&len.to_be_bytes());
            5
        };
        crate::raw::patch_head::<CONTAINER_HEAD_MAX>(self.out, mark, &head[..head_len]);
    }

    fn serializer(&self) -> Serializer {
        Serializer::MsgPack
    }

    fn array(&mut self, len: usize) {
        let _ = rmp::encode::write_array_len(self.out, len32(len));
    }

    fn map(&mut self, len: usize) {
        let _ = rmp::encode::write_map_len(self.out, len32(len));
    }

    fn key(&mut self, key: &str) {
        let _ = rmp::encode::write_str(self.out, key);
    }

    fn null(&mut self) {
        let _ = rmp::encode::write_nil(self.out);
    }

    fn bool(&mut self, v: bool) {
        let _ = rmp::encode::write_bool(self.out, v);
    }

    fn u64(&mut self, v: u64) {
        let _ = rmp::encode::write_uint(self.out, v);
    }

    fn i64(&mut self, v: i64) {
        let _ = rmp::encode::write_sint(self.out, v);
    }

    fn f64(&mut self, v: f64) {
        let _ = rmp::encode::write_f64(self.out, v);
    }

    fn str(&mut self, v: &str) {
        let _ = rmp::encode::write_str(self.out, v);
    }

    fn bin_base64(&mut self, base64: &[u8]) {
        use base64::Engine;
        // Decode straight into the output, behind a `bin` header of the exact decoded length.
        let start = self.out.len();
        // (A `bin` holds at most 2^32 - 1 bytes.)
        let len = crate::raw::base64_decoded_len(base64).filter(|&len| u32::try_from(len).is_ok());
        if let Some(len) = len {
            let _ = rmp::encode::write_bin_len(self.out, len as u32);
            let data = self.out.len();
            self.out.resize(data + len, 0);
            let decoded = base64::engine::general_purpose::STANDARD
                .decode_slice(base64, &mut self.out[data..]);
            if decoded == Ok(len) {
                return;
            }
            self.out.truncate(start);
        }
        // Not valid base64: the string it was, "\u0000" + text.
        let _ = rmp::encode::write_str_len(self.out, (1 + base64.len()) as u32);
        self.out.push(0);
        self.out.extend_from_slice(base64);
    }

    fn bin(&mut self, v: &[u8]) {
        let _ = rmp::encode::write_bin(self.out, v);
    }

    fn encoded(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }
}

/// The longest container head: `array 32` / `map 32`, a marker and a 4-octet length.
const CONTAINER_HEAD_MAX: usize = 5;

/// A container length as MessagePack encodes it. More than 2^32 - 1 elements cannot be encoded (nor held in a
/// frame); such a length would be a bug of ours, so it is asserted in debug builds.
fn len32(len: usize) -> u32 {
    debug_assert!(
        u32::try_from(len).is_ok(),
        "msgpack container of {len} elements"
    );
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// What a marker (with its fixed-size data) says a value is. Strings and binaries carry their payload length,
/// containers their element (array) or entry (map) count.
#[derive(Clone, Copy, Debug)]
enum Head {
    Nil,
    Bool(bool),
    UInt(u64),
    /// A value of a signed integer format (may be non-negative).
    Int(i64),
    F32(f32),
    F64(f64),
    Str(usize),
    Bin(usize),
    Array(usize),
    Map(usize),
}

/// The head of a validated value.
fn head(v: &[u8]) -> Option<Head> {
    Cursor { bytes: v, pos: 0 }.head().ok()
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

/// A position in the input.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
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

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_be_bytes)
    }

    /// A 32-bit length as `usize`.
    fn len32(&mut self) -> Result<usize, DecodeError> {
        usize::try_from(self.u32()?).map_err(|_| TRUNCATED)
    }

    /// Nothing may follow.
    fn end(&self) -> Result<(), DecodeError> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(DecodeError::Syntax("trailing bytes after the value"))
        }
    }

    /// Reads a marker and its fixed-size data (not the payload of strings, binaries and containers).
    fn head(&mut self) -> Result<Head, DecodeError> {
        Ok(match Marker::from_u8(self.u8()?) {
            Marker::FixPos(n) => Head::UInt(u64::from(n)),
            Marker::FixNeg(n) => Head::Int(i64::from(n)),
            Marker::Null => Head::Nil,
            Marker::False => Head::Bool(false),
            Marker::True => Head::Bool(true),
            Marker::U8 => Head::UInt(u64::from(self.u8()?)),
            Marker::U16 => Head::UInt(u64::from(self.u16()?)),
            Marker::U32 => Head::UInt(u64::from(self.u32()?)),
            Marker::U64 => Head::UInt(self.u64()?),
            Marker::I8 => Head::Int(i64::from(i8::from_be_bytes(self.array()?))),
            Marker::I16 => Head::Int(i64::from(i16::from_be_bytes(self.array()?))),
            Marker::I32 => Head::Int(i64::from(i32::from_be_bytes(self.array()?))),
            Marker::I64 => Head::Int(i64::from_be_bytes(self.array()?)),
            Marker::F32 => Head::F32(f32::from_be_bytes(self.array()?)),
            Marker::F64 => Head::F64(f64::from_be_bytes(self.array()?)),
            Marker::FixStr(n) => Head::Str(usize::from(n)),
            Marker::Str8 => Head::Str(usize::from(self.u8()?)),
            Marker::Str16 => Head::Str(usize::from(self.u16()?)),
            Marker::Str32 => Head::Str(self.len32()?),
            Marker::Bin8 => Head::Bin(usize::from(self.u8()?)),
            Marker::Bin16 => Head::Bin(usize::from(self.u16()?)),
            Marker::Bin32 => Head::Bin(self.len32()?),
            Marker::FixArray(n) => Head::Array(usize::from(n)),
            Marker::Array16 => Head::Array(usize::from(self.u16()?)),
            Marker::Array32 => Head::Array(self.len32()?),
            Marker::FixMap(n) => Head::Map(usize::from(n)),
            Marker::Map16 => Head::Map(usize::from(self.u16()?)),
            Marker::Map32 => Head::Map(self.len32()?),
            Marker::FixExt1
            | Marker::FixExt2
            | Marker::FixExt4
            | Marker::FixExt8
            | Marker::FixExt16
            | Marker::Ext8
            | Marker::Ext16
            | Marker::Ext32 => {
                return Err(DecodeError::Syntax("msgpack ext types are not supported"))
            }
            Marker::Reserved => return Err(DecodeError::Syntax("reserved msgpack marker 0xc1")),
        })
    }

    /// Reads one value; `depth` containers are already open around it. With `check`, strings must be UTF-8 and map
    /// keys strings (validation); without, the value is only skipped. Iterative: the containers this value opens
    /// are kept in a fixed array.
    fn value(&mut self, depth: usize, check: bool) -> Result<(), DecodeError> {
        // Fast path: a scalar or string (most message elements) needs no container stack.
        let first = *self.bytes.get(self.pos).ok_or(TRUNCATED)?;
        if !matches!(first, 0x80..=0x9f | 0xdc..=0xdf) {
            return match self.head()? {
                Head::Str(len) => {
                    let s = self.take(len)?;
                    if check && std::str::from_utf8(s).is_err() {
                        return Err(DecodeError::Syntax("invalid UTF-8 in msgpack string"));
                    }
                    Ok(())
                }
                Head::Bin(len) => self.take(len).map(|_| ()),
                _ => Ok(()),
            };
        }
        // Items (array elements; map keys and values) still to read in each open container, innermost last;
        // bit `i` of `is_map` says whether container `i` is a map. (Counts fit u32: they are bounded by the input
        // length, checked below.)
        let mut remaining = [0u32; DEPTH_MAX];
        let mut is_map = 0u64;
        let mut open = 0;
        loop {
            // A map's items alternate key, value, counting down from an even number: keys come at even counts.
            let key = open > 0 && is_map & (1 << (open - 1)) != 0 && remaining[open - 1] % 2 == 0;
            match self.head()? {
                Head::Str(len) => {
                    let s = self.take(len)?;
                    if check && std::str::from_utf8(s).is_err() {
                        return Err(DecodeError::Syntax("invalid UTF-8 in msgpack string"));
                    }
                }
                _ if key && check => return Err(DecodeError::Syntax("map key is not a string")),
                Head::Bin(len) => {
                    self.take(len)?;
                }
                head @ (Head::Array(len) | Head::Map(len)) => {
                    if depth + open >= DEPTH_MAX {
                        return Err(DecodeError::TooDeep);
                    }
                    let map = matches!(head, Head::Map(_));
                    // Every item takes at least one byte: refuse counts the input cannot hold at once.
                    let items = if map {
                        len.checked_mul(2).ok_or(TRUNCATED)?
                    } else {
                        len
                    };
                    if items > self.bytes.len() - self.pos {
                        return Err(TRUNCATED);
                    }
                    if items > 0 {
                        remaining[open] = u32::try_from(items).map_err(|_| TRUNCATED)?;
                        if map {
                            is_map |= 1 << open;
                        } else {
                            is_map &= !(1 << open);
                        }
                        open += 1;
                        continue;
                    }
                }
                // Scalars are complete with their head.
                _ => {}
            }
            // An item is complete: count it off, closing every container that this completes.
            loop {
                if open == 0 {
                    return Ok(());
                }
                remaining[open - 1] -= 1;
                if remaining[open - 1] > 0 {
                    break;
                }
                open -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::Writer as _;

    fn syntax(input: &[u8]) {
        assert!(
            matches!(validate(input), Err(DecodeError::Syntax(_))),
            "{input:02x?} should be a syntax error"
        );
    }

    #[test]
    fn validates() {
        assert_eq!(validate(&[0x92, 0x01, 0x81, 0xa1, b'a', 0xc0]), Ok(()));
        assert_eq!(validate(&[0xcb, 0, 0, 0, 0, 0, 0, 0, 0]), Ok(()));
        syntax(&[]);
        syntax(&[0xc1]);
        syntax(&[0xd4, 0x01, 0x00]);
        syntax(&[0xc7, 0x01, 0x01, 0x00]);
        syntax(&[0x92, 0x01]);
        syntax(&[0x01, 0x01]);
        syntax(&[0xa2, 0xc3, 0x28]);
        syntax(&[0x81, 0x01, 0x01]);
        syntax(&[0xdb, 0xff, 0xff, 0xff, 0xff, b'a']);
        syntax(&[0xc6, 0xff, 0xff, 0xff, 0xff]);
        syntax(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01]);
        syntax(&[0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, b'a', 0x01]);
        assert_eq!(
            validate(&[0x81, 0x01, 0x01]),
            Err(DecodeError::Syntax("map key is not a string"))
        );
    }

    #[test]
    fn depth_limit() {
        let mut deep = vec![0x91; DEPTH_MAX - 1];
        deep.push(0x90);
        assert_eq!(validate(&deep), Ok(()));
        deep.insert(0, 0x91);
        assert_eq!(validate(&deep), Err(DecodeError::TooDeep));
    }

    #[test]
    fn accessors() {
        assert_eq!(
            as_u64(&[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Some(u64::MAX)
        );
        assert_eq!(
            as_i64(&[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            None
        );
        assert_eq!(as_u64(&[0xd0, 0x05]), Some(5));
        assert_eq!(as_u64(&[0xff]), None);
        assert_eq!(as_i64(&[0xff]), Some(-1));
        assert_eq!(as_f64(&[0xca, 0x3f, 0xc0, 0, 0]), Some(1.5));
        assert_eq!(kind(&[0xc4, 0x00]), Kind::Bin);
        assert_eq!(as_bytes(&[0xc4, 0x02, 1, 2]).as_deref(), Some(&[1, 2][..]));
        assert_eq!(as_str(&[0xa2, b'h', b'i']).as_deref(), Some("hi"));
        assert_eq!(as_bytes(&[0xa2, b'h', b'i']), None);
        let (mut rest, mut remaining) =
            dict_start(&[0x82, 0xa1, b'a', 0x91, 0x01, 0xa1, b'b', 0xc0]).unwrap();
        let entries: Vec<_> = std::iter::from_fn(|| dict_next(&mut rest, &mut remaining)).collect();
        assert_eq!(
            entries,
            [
                (Cow::Borrowed("a"), &[0x91, 0x01][..]),
                (Cow::Borrowed("b"), &[0xc0][..])
            ]
        );
    }

    #[test]
    fn writer_is_compact() {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        w.array(5);
        w.u64(1);
        w.u64(1 << 53);
        w.i64(-1);
        w.i64(-200);
        w.bin(&[7]);
        assert_eq!(
            out,
            [0x95, 0x01, 0xcf, 0, 0x20, 0, 0, 0, 0, 0, 0, 0xff, 0xd1, 0xff, 0x38, 0xc4, 0x01, 7]
        );
    }
}
