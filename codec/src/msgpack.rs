//! STUB: to be implemented (see the codec helper task).
use std::borrow::Cow;

use crate::raw::Kind;
use crate::{DecodeError, Serializer};

/// Validates the whole input as one top-level array and stores the byte span of each element in `out`.
/// Returns the number of elements. Errors: not an array / empty: `NotAMessage`; more than `out.len()`
/// elements: `Syntax("too many elements")`; malformed anywhere (including trailing bytes): `Syntax`;
/// nesting deeper than `DEPTH_MAX`: `TooDeep`.
pub(crate) fn split_array<'a>(bytes: &'a [u8], out: &mut [&'a [u8]]) -> Result<usize, DecodeError> {
    let _ = (bytes, out);
    todo!()
}
/// Validates that `bytes` is exactly one well-formed value.
pub(crate) fn validate(bytes: &[u8]) -> Result<(), DecodeError> {
    let _ = bytes;
    todo!()
}
pub(crate) fn kind(v: &[u8]) -> Kind {
    let _ = v;
    todo!()
}
pub(crate) fn as_bool(v: &[u8]) -> Option<bool> {
    let _ = v;
    todo!()
}
pub(crate) fn as_u64(v: &[u8]) -> Option<u64> {
    let _ = v;
    todo!()
}
pub(crate) fn as_i64(v: &[u8]) -> Option<i64> {
    let _ = v;
    todo!()
}
pub(crate) fn as_f64(v: &[u8]) -> Option<f64> {
    let _ = v;
    todo!()
}
pub(crate) fn as_str(v: &[u8]) -> Option<Cow<'_, str>> {
    let _ = v;
    todo!()
}
pub(crate) fn as_bytes(v: &[u8]) -> Option<Cow<'_, [u8]>> {
    let _ = v;
    todo!()
}
/// For a list: (bytes after the opening of the list, element count or any value the _next function wants).
pub(crate) fn list_start(v: &[u8]) -> Option<(&[u8], usize)> {
    let _ = v;
    todo!()
}
pub(crate) fn list_next<'a>(rest: &mut &'a [u8], remaining: &mut usize) -> Option<&'a [u8]> {
    let _ = (rest, remaining);
    todo!()
}
pub(crate) fn dict_start(v: &[u8]) -> Option<(&[u8], usize)> {
    let _ = v;
    todo!()
}
pub(crate) fn dict_next<'a>(
    rest: &mut &'a [u8],
    remaining: &mut usize,
) -> Option<(Cow<'a, str>, &'a [u8])> {
    let _ = (rest, remaining);
    todo!()
}
/// Replays a validated value into any writer (used to transcode and to build `Value`s).
pub(crate) fn walk<W: crate::raw::Writer>(v: &[u8], w: &mut W) {
    let _ = (v, w);
    todo!()
}

/// Streaming writer (see `crate::raw::Writer`).
pub struct Writer<'o> {
    out: &'o mut Vec<u8>,
}
impl<'o> Writer<'o> {
    pub fn new(out: &'o mut Vec<u8>) -> Self {
        Writer { out }
    }
}
impl crate::raw::Writer for Writer<'_> {
    fn serializer(&self) -> Serializer {
        todo!()
    }
    fn array(&mut self, len: usize) {
        let _ = (len, &self.out);
        todo!()
    }
    fn map(&mut self, len: usize) {
        let _ = len;
        todo!()
    }
    fn key(&mut self, key: &str) {
        let _ = key;
        todo!()
    }
    fn null(&mut self) {
        todo!()
    }
    fn bool(&mut self, v: bool) {
        let _ = v;
        todo!()
    }
    fn u64(&mut self, v: u64) {
        let _ = v;
        todo!()
    }
    fn i64(&mut self, v: i64) {
        let _ = v;
        todo!()
    }
    fn f64(&mut self, v: f64) {
        let _ = v;
        todo!()
    }
    fn str(&mut self, v: &str) {
        let _ = v;
        todo!()
    }
    fn bin(&mut self, v: &[u8]) {
        let _ = v;
        todo!()
    }
    fn encoded(&mut self, bytes: &[u8]) {
        let _ = bytes;
        todo!()
    }
}
