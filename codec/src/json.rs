//! JSON (`wamp.2.json`): a validating scanner over the frame and a streaming writer.
//!
//! Decoding validates the whole frame once, strictly by RFC 8259 (no trailing commas, comments, `NaN`, leading
//! zeros, raw control characters in strings, invalid escapes or lone surrogates; strings must be UTF-8), and
//! records the byte span of each element of the top-level array. Nothing is allocated and nothing recurses: the
//! scanner keeps its open containers in a fixed array of [`DEPTH_MAX`] entries.
//!
//! The accessors below (`kind`, `as_*`, `list_*`, `dict_*`, `walk`) only ever see spans that passed the scanner,
//! so they re-read them without re-validating; they still never panic on anything.
//!
//! Binary travels as a string whose first character is U+0000 followed by standard, padded base64.
use std::borrow::Cow;
use std::io::Write as _;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use smallvec::SmallVec;

use crate::raw::Kind;
use crate::{DecodeError, Serializer, DEPTH_MAX};

const END: DecodeError = DecodeError::Syntax("unexpected end of input");
const UNTERMINATED: DecodeError = DecodeError::Syntax("unterminated string");
const LONE_SURROGATE: DecodeError = DecodeError::Syntax("lone surrogate in \\u escape");

/// The escape that starts a binary string: `\u0000`.
const BINARY_PREFIX: &[u8] = b"\\u0000";

/// Validates the whole input as one top-level array and stores the byte span of each element in `out`.
/// Returns the number of elements. Errors: not an array / empty: `NotAMessage`; more than `out.len()`
/// elements: `Syntax("too many elements")`; malformed anywhere (including trailing bytes): `Syntax`;
/// nesting deeper than `DEPTH_MAX`: `TooDeep`.
pub(crate) fn split_array<'a>(bytes: &'a [u8], out: &mut [&'a [u8]]) -> Result<usize, DecodeError> {
    let mut s = Scanner { bytes, pos: 0 };
    s.skip_ws();
    if s.peek() != Some(b'[') {
        // Malformed input is a syntax error; a well-formed non-array is not a message.
        validate(bytes)?;
        return Err(DecodeError::NotAMessage);
    }
    s.pos += 1;
    s.skip_ws();
    if s.peek() == Some(b']') {
        s.pos += 1;
        s.end()?;
        return Err(DecodeError::NotAMessage);
    }
    let mut len = 0;
    loop {
        let slot = out
            .get_mut(len)
            .ok_or(DecodeError::Syntax("too many elements"))?;
        let start = s.pos;
        s.value(1)?;
        *slot = &bytes[start..s.pos];
        len += 1;
        s.skip_ws();
        match s.peek() {
            Some(b',') => {
                s.pos += 1;
                s.skip_ws();
            }
            Some(b']') => {
                s.pos += 1;
                break;
            }
            None => return Err(END),
            Some(_) => return Err(DecodeError::Syntax("expected ',' or ']'")),
        }
    }
    s.end()?;
    Ok(len)
}

/// Validates that `bytes` is exactly one well-formed value (whitespace around it allowed).
pub(crate) fn validate(bytes: &[u8]) -> Result<(), DecodeError> {
    let mut s = Scanner { bytes, pos: 0 };
    s.skip_ws();
    s.value(0)?;
    s.end()
}

pub(crate) fn kind(v: &[u8]) -> Kind {
    let v = v.trim_ascii();
    match v.first() {
        Some(b'"') => Kind::Str,
        Some(b'[') => Kind::List,
        Some(b'{') => Kind::Dict,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'n') | None => Kind::Null,
        Some(_) => match number(v) {
            Number::UInt(_) | Number::Int(_) => Kind::Int,
            Number::Float => Kind::Float,
        },
    }
}

pub(crate) fn as_bool(v: &[u8]) -> Option<bool> {
    match v.trim_ascii() {
        b"true" => Some(true),
        b"false" => Some(false),
        _ => None,
    }
}

pub(crate) fn as_u64(v: &[u8]) -> Option<u64> {
    let (negative, magnitude) = integer(v.trim_ascii())?;
    // `-0` is the integer zero.
    (!negative || magnitude == 0).then_some(magnitude)
}

pub(crate) fn as_i64(v: &[u8]) -> Option<i64> {
    let (negative, magnitude) = integer(v.trim_ascii())?;
    let magnitude = i128::from(magnitude);
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

pub(crate) fn as_f64(v: &[u8]) -> Option<f64> {
    let v = v.trim_ascii();
    match v.first() {
        Some(b'-' | b'0'..=b'9') => std::str::from_utf8(v).ok()?.parse().ok(),
        _ => None,
    }
}

pub(crate) fn as_str(v: &[u8]) -> Option<Cow<'_, str>> {
    let content = string_content(v.trim_ascii())?;
    if content.contains(&b'\\') {
        unescape(content).map(Cow::Owned)
    } else {
        std::str::from_utf8(content).ok().map(Cow::Borrowed)
    }
}

pub(crate) fn as_bytes(v: &[u8]) -> Option<Cow<'_, [u8]>> {
    let base64 = string_content(v.trim_ascii())?.strip_prefix(BINARY_PREFIX)?;
    let decoded = if base64.contains(&b'\\') {
        // Some encoders escape the `/` of base64 as `\/`.
        STANDARD.decode(unescape(base64)?)
    } else {
        STANDARD.decode(base64)
    };
    decoded.ok().map(Cow::Owned)
}

/// The base64 text of a JSON binary string (`"\u0000" + base64`) without escapes in the base64 part, borrowed.
fn binary_base64(v: &[u8]) -> Option<&[u8]> {
    let base64 = string_content(v.trim_ascii())?.strip_prefix(BINARY_PREFIX)?;
    (!base64.contains(&b'\\')).then_some(base64)
}

/// For a list: the bytes after `[` (the count is not needed: the iteration stops at the closing `]`).
pub(crate) fn list_start(v: &[u8]) -> Option<(&[u8], usize)> {
    let v = v.trim_ascii();
    match v.split_first() {
        Some((b'[', rest)) => Some((rest, 0)),
        _ => None,
    }
}

pub(crate) fn list_next<'a>(rest: &mut &'a [u8], remaining: &mut usize) -> Option<&'a [u8]> {
    let _ = remaining;
    let r = skip_separators(rest);
    if matches!(r.first(), None | Some(b']')) {
        *rest = &[];
        return None;
    }
    let (value, tail) = r.split_at(value_end(r));
    *rest = tail;
    Some(value)
}

pub(crate) fn dict_start(v: &[u8]) -> Option<(&[u8], usize)> {
    let v = v.trim_ascii();
    match v.split_first() {
        Some((b'{', rest)) => Some((rest, 0)),
        _ => None,
    }
}

pub(crate) fn dict_next<'a>(
    rest: &mut &'a [u8],
    remaining: &mut usize,
) -> Option<(Cow<'a, str>, &'a [u8])> {
    let _ = remaining;
    let r = skip_separators(rest);
    if matches!(r.first(), None | Some(b'}')) {
        *rest = &[];
        return None;
    }
    let (key, tail) = r.split_at(value_end(r));
    // Whitespace, the colon, whitespace.
    let tail = tail.trim_ascii_start();
    let tail = tail.strip_prefix(b":").unwrap_or(tail).trim_ascii_start();
    let (value, tail) = tail.split_at(value_end(tail));
    *rest = tail;
    Some((as_str(key)?, value))
}

/// Replays a validated value into any writer (used to transcode and to build `Value`s).
pub(crate) fn walk<W: crate::raw::Writer>(v: &[u8], w: &mut W) {
    // Recursion is bounded: the value passed the scanner, so it nests at most `DEPTH_MAX` deep.
    let v = v.trim_ascii();
    match v.first() {
        Some(b'[') => {
            let items = || {
                let (mut rest, mut remaining) = list_start(v).unwrap_or((&[], 0));
                std::iter::from_fn(move || list_next(&mut rest, &mut remaining))
            };
            w.array(items().count());
            items().for_each(|item| walk(item, w));
        }
        Some(b'{') => {
            let entries = || {
                let (mut rest, mut remaining) = dict_start(v).unwrap_or((&[], 0));
                std::iter::from_fn(move || dict_next(&mut rest, &mut remaining))
            };
            w.map(entries().count());
            for (key, value) in entries() {
                w.key(&key);
                walk(value, w);
            }
        }
        Some(b'"') => match binary_base64(v) {
            Some(base64) => w.bin_base64(base64),
            None => match as_bytes(v) {
                Some(bytes) => w.bin(&bytes),
                // A validated string always unescapes; `null` keeps the writer's counts right regardless.
                None => match as_str(v) {
                    Some(s) => w.str(&s),
                    None => w.null(),
                },
            },
        },
        Some(b't') => w.bool(true),
        Some(b'f') => w.bool(false),
        Some(b'n') | None => w.null(),
        Some(_) => match number(v) {
            Number::UInt(n) => w.u64(n),
            Number::Int(n) => w.i64(n),
            Number::Float => w.f64(as_f64(v).unwrap_or(f64::NAN)),
        },
    }
}

/// Transcodes the validated JSON value at the start of `v` into `w` in one pass over its bytes: containers are
/// written as they are read and get their length when they close. Returns what follows the value.
pub(crate) fn walk_one_pass<'v, W: crate::raw::Writer>(v: &'v [u8], w: &mut W) -> &'v [u8] {
    // Recursion is bounded: the value passed the scanner, so it nests at most `DEPTH_MAX` deep.
    let v = v.trim_ascii_start();
    let map = match v.first() {
        Some(b'[') => false,
        Some(b'{') => true,
        _ => {
            let (scalar, rest) = v.split_at(value_end(v));
            walk(scalar, w);
            return rest;
        }
    };
    let close = if map { b'}' } else { b']' };
    let mark = w.open_container(map);
    let mut rest = &v[1..];
    let mut len = 0;
    loop {
        rest = skip_separators(rest);
        match rest.first() {
            None => break,
            Some(&b) if b == close => {
                rest = &rest[1..];
                break;
            }
            Some(_) => {}
        }
        if map {
            let (key, tail) = rest.split_at(value_end(rest));
            // A validated key is a string; "" keeps the writer's counts right regardless.
            w.key(&as_str(key).unwrap_or_default());
            let tail = tail.trim_ascii_start();
            rest = tail.strip_prefix(b":").unwrap_or(tail);
        }
        rest = walk_one_pass(rest, w);
        len += 1;
    }
    w.close_container(mark, len, map);
    rest
}

/// Streaming writer (see `crate::raw::Writer`): compact JSON, no whitespace. It appends to `out` and allocates
/// nothing else unless containers nest deeper than 16.
pub struct Writer<'o> {
    out: &'o mut Vec<u8>,
    /// Open containers, innermost last.
    open: SmallVec<[Open; 16]>,
}

/// An open array or object of a [`Writer`].
#[derive(Clone, Copy, Debug)]
struct Open {
    /// Values (arrays) or key/value pairs (objects) still to come; at least 1 while open.
    remaining: usize,
    object: bool,
    /// Whether an element was started, so the next one needs a `,`.
    started: bool,
}

impl<'o> Writer<'o> {
    pub fn new(out: &'o mut Vec<u8>) -> Self {
        Writer {
            out,
            open: SmallVec::new(),
        }
    }

    /// Writes the separator a value needs (keys of objects write their own).
    fn before_value(&mut self) {
        if let Some(top) = self.open.last_mut() {
            if !top.object {
                if top.started {
                    self.out.push(b',');
                }
                top.started = true;
            }
        }
    }

    /// Counts a finished value off its container, closing every container that this completes.
    fn after_value(&mut self) {
        while let Some(top) = self.open.last_mut() {
            debug_assert!(
                top.remaining > 0,
                "more values written than the container announced"
            );
            top.remaining = top.remaining.saturating_sub(1);
            if top.remaining > 0 {
                return;
            }
            self.out.push(if top.object { b'}' } else { b']' });
            self.open.pop();
        }
    }

    fn open(&mut self, len: usize, object: bool) {
        self.before_value();
        if len == 0 {
            self.out
                .extend_from_slice(if object { b"{}" } else { b"[]" });
            self.after_value();
        } else {
            self.out.push(if object { b'{' } else { b'[' });
            self.open.push(Open {
                remaining: len,
                object,
                started: false,
            });
        }
    }

    /// A value made of ASCII bytes that need no escaping (numbers, literals).
    fn token(&mut self, token: &[u8]) {
        self.before_value();
        self.out.extend_from_slice(token);
        self.after_value();
    }
}

impl crate::raw::Writer for Writer<'_> {
    fn open_container(&mut self, map: bool) -> usize {
        self.before_value();
        self.out.push(if map { b'{' } else { b'[' });
        // Never counted down to zero: `close_container` closes it.
        self.open.push(Open {
            remaining: usize::MAX,
            object: map,
            started: false,
        });
        0
    }

    fn close_container(&mut self, _mark: usize, _len: usize, map: bool) {
        debug_assert!(
            self.open.last().is_some_and(|top| top.object == map),
            "closing the container opened last"
        );
        self.open.pop();
        self.out.push(if map { b'}' } else { b']' });
        self.after_value();
    }

    fn serializer(&self) -> Serializer {
        Serializer::Json
    }

    fn array(&mut self, len: usize) {
        self.open(len, false);
    }

    fn map(&mut self, len: usize) {
        self.open(len, true);
    }

    fn key(&mut self, key: &str) {
        if let Some(top) = self.open.last_mut() {
            debug_assert!(top.object, "key outside an object");
            if top.started {
                self.out.push(b',');
            }
            top.started = true;
        }
        write_string(self.out, key);
        self.out.push(b':');
    }

    fn null(&mut self) {
        self.token(b"null");
    }

    fn bool(&mut self, v: bool) {
        self.token(if v { b"true" } else { b"false" });
    }

    fn u64(&mut self, v: u64) {
        let mut buf = [0; 20];
        let digits = format_u64(v, &mut buf);
        self.token(digits);
    }

    fn i64(&mut self, v: i64) {
        let mut buf = [0; 20];
        self.before_value();
        if v < 0 {
            self.out.push(b'-');
        }
        self.out
            .extend_from_slice(format_u64(v.unsigned_abs(), &mut buf));
        self.after_value();
    }

    fn f64(&mut self, v: f64) {
        self.before_value();
        if v.is_finite() {
            // `{:?}` is the shortest representation that round-trips, keeps a `.0` on integral values (so a float
            // stays a float) and switches to an exponent for very large and small magnitudes: always valid JSON.
            // Writing into a `Vec` cannot fail.
            let _ = write!(self.out, "{v:?}");
        } else {
            self.out.extend_from_slice(b"null");
        }
        self.after_value();
    }

    fn str(&mut self, v: &str) {
        self.before_value();
        write_string(self.out, v);
        self.after_value();
    }

    fn bin(&mut self, v: &[u8]) {
        self.before_value();
        self.out.push(b'"');
        self.out.extend_from_slice(BINARY_PREFIX);
        let start = self.out.len();
        // `encoded_len` is `None` only for inputs near `usize::MAX` bytes, which cannot exist in memory.
        let len = base64::encoded_len(v.len(), true).unwrap_or(0);
        self.out.resize(start + len, 0);
        // The buffer has exactly the encoded length, so this cannot fail.
        let _ = STANDARD.encode_slice(v, &mut self.out[start..]);
        self.out.push(b'"');
        self.after_value();
    }

    fn bin_base64(&mut self, base64: &[u8]) {
        // JSON to JSON: the text stays what it was.
        self.before_value();
        self.out.push(b'"');
        self.out.extend_from_slice(BINARY_PREFIX);
        self.out.extend_from_slice(base64);
        self.out.push(b'"');
        self.after_value();
    }

    fn encoded(&mut self, bytes: &[u8]) {
        self.token(bytes.trim_ascii());
    }
}

/// The validating scanner: a position in the input.
struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
    }

    /// Only whitespace may follow.
    fn end(&mut self) -> Result<(), DecodeError> {
        self.skip_ws();
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(DecodeError::Syntax("trailing bytes after the value"))
        }
    }

    /// Scans one value starting at the current position; `depth` containers are already open around it.
    /// Iterative: the containers this value opens are kept in a fixed array.
    fn value(&mut self, depth: usize) -> Result<(), DecodeError> {
        // Whether each open container is an object, innermost last.
        let mut objects = [false; DEPTH_MAX];
        let mut open = 0;
        'value: loop {
            self.skip_ws();
            match self.peek() {
                Some(c @ (b'[' | b'{')) => {
                    if depth + open >= DEPTH_MAX {
                        return Err(DecodeError::TooDeep);
                    }
                    let object = c == b'{';
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(if object { b'}' } else { b']' }) {
                        // Empty: complete at once.
                        self.pos += 1;
                    } else {
                        objects[open] = object;
                        open += 1;
                        if object {
                            self.key()?;
                        }
                        continue 'value;
                    }
                }
                Some(b'"') => self.string()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(_) => return Err(DecodeError::Syntax("unexpected character")),
                None => return Err(END),
            }
            // A value is complete: go on in its container, closing containers as the input says.
            while open > 0 {
                self.skip_ws();
                let object = objects[open - 1];
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if object {
                            self.key()?;
                        }
                        continue 'value;
                    }
                    Some(b']') if !object => self.pos += 1,
                    Some(b'}') if object => self.pos += 1,
                    None => return Err(END),
                    Some(_) if object => return Err(DecodeError::Syntax("expected ',' or '}'")),
                    Some(_) => return Err(DecodeError::Syntax("expected ',' or ']'")),
                }
                open -= 1;
            }
            return Ok(());
        }
    }

    /// An object key and its colon (whitespace around both).
    fn key(&mut self) -> Result<(), DecodeError> {
        self.skip_ws();
        match self.peek() {
            Some(b'"') => self.string()?,
            None => return Err(END),
            Some(_) => return Err(DecodeError::Syntax("object key is not a string")),
        }
        self.skip_ws();
        match self.peek() {
            Some(b':') => {
                self.pos += 1;
                Ok(())
            }
            None => Err(END),
            Some(_) => Err(DecodeError::Syntax("expected ':'")),
        }
    }

    fn literal(&mut self, literal: &[u8]) -> Result<(), DecodeError> {
        if self.bytes[self.pos..].starts_with(literal) {
            self.pos += literal.len();
            Ok(())
        } else {
            Err(DecodeError::Syntax("invalid literal"))
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`. What follows is checked by the caller.
    fn number(&mut self) -> Result<(), DecodeError> {
        let b = self.bytes;
        let mut i = self.pos;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => {
                i += 1;
                if b.get(i).is_some_and(u8::is_ascii_digit) {
                    return Err(DecodeError::Syntax("leading zero in number"));
                }
            }
            Some(b'1'..=b'9') => i = digits_end(b, i),
            _ => return Err(DecodeError::Syntax("invalid number")),
        }
        if b.get(i) == Some(&b'.') {
            let end = digits_end(b, i + 1);
            if end == i + 1 {
                return Err(DecodeError::Syntax("invalid number: no digit after '.'"));
            }
            i = end;
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let end = digits_end(b, i);
            if end == i {
                return Err(DecodeError::Syntax("invalid number: no digit in exponent"));
            }
            i = end;
        }
        self.pos = i;
        Ok(())
    }

    /// A string starting at its opening quote: no raw control characters, valid escapes, valid UTF-8.
    fn string(&mut self) -> Result<(), DecodeError> {
        let b = self.bytes;
        let start = self.pos + 1;
        let mut i = start;
        let mut ascii = true;
        loop {
            match b.get(i) {
                Some(b'"') => break,
                Some(b'\\') => i = check_escape(b, i)?,
                Some(0..=0x1f) => return Err(DecodeError::Syntax("control character in string")),
                Some(c) => {
                    ascii &= c.is_ascii();
                    i += 1;
                }
                None => return Err(UNTERMINATED),
            }
        }
        // Escapes are ASCII, so the raw content is UTF-8 exactly when the string is.
        if !ascii && std::str::from_utf8(&b[start..i]).is_err() {
            return Err(DecodeError::Syntax("invalid UTF-8 in string"));
        }
        self.pos = i + 1;
        Ok(())
    }
}

const fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn digits_end(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// Checks the escape at `b[i] == '\\'` and returns the index after it (after both halves of a surrogate pair).
fn check_escape(b: &[u8], i: usize) -> Result<usize, DecodeError> {
    match b.get(i + 1) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 2),
        Some(b'u') => match hex4(b, i + 2).ok_or_else(|| bad_hex(b, i + 2))? {
            0xD800..=0xDBFF => {
                if b.get(i + 6) == Some(&b'\\') && b.get(i + 7) == Some(&b'u') {
                    let low = hex4(b, i + 8).ok_or_else(|| bad_hex(b, i + 8))?;
                    if (0xDC00..=0xDFFF).contains(&low) {
                        return Ok(i + 12);
                    }
                }
                Err(LONE_SURROGATE)
            }
            0xDC00..=0xDFFF => Err(LONE_SURROGATE),
            _ => Ok(i + 6),
        },
        Some(_) => Err(DecodeError::Syntax("invalid escape in string")),
        None => Err(UNTERMINATED),
    }
}

/// Why four hex digits at `b[i..]` are missing: the input ended, or a character is not a hex digit.
fn bad_hex(b: &[u8], i: usize) -> DecodeError {
    if b.len() < i + 4 {
        UNTERMINATED
    } else {
        DecodeError::Syntax("invalid \\u escape")
    }
}

/// The value of four hex digits at `b[i..]`.
fn hex4(b: &[u8], i: usize) -> Option<u32> {
    let digits = b.get(i..i + 4)?;
    digits
        .iter()
        .try_fold(0, |acc, &d| Some((acc << 4) | char::from(d).to_digit(16)?))
}

/// The content between the quotes of a string span.
fn string_content(v: &[u8]) -> Option<&[u8]> {
    v.strip_prefix(b"\"")?.strip_suffix(b"\"")
}

/// Resolves the escapes of validated string content.
fn unescape(content: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(content.len());
    let mut run = 0;
    let mut i = 0;
    while i < content.len() {
        if content[i] != b'\\' {
            i += 1;
            continue;
        }
        out.push_str(std::str::from_utf8(&content[run..i]).ok()?);
        let (c, next) = unescape_one(content, i)?;
        out.push(c);
        i = next;
        run = next;
    }
    out.push_str(std::str::from_utf8(&content[run..]).ok()?);
    Some(out)
}

/// The character of the (validated) escape at `b[i] == '\\'` and the index after it.
fn unescape_one(b: &[u8], i: usize) -> Option<(char, usize)> {
    let c = match b.get(i + 1)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let unit = hex4(b, i + 2)?;
            if (0xD800..=0xDBFF).contains(&unit) {
                let low = hex4(b, i + 8)?;
                let c = 0x10000 + ((unit - 0xD800) << 10) + (low.checked_sub(0xDC00)?);
                return Some((char::from_u32(c)?, i + 12));
            }
            return Some((char::from_u32(unit)?, i + 6));
        }
        _ => return None,
    };
    Some((c, i + 2))
}

/// A validated number, as `walk` replays it.
enum Number {
    /// A non-negative integer (or `-0`) that fits `u64`.
    UInt(u64),
    /// A negative integer that fits `i64`.
    Int(i64),
    /// A fraction, an exponent, or an integer too large for both.
    Float,
}

fn number(v: &[u8]) -> Number {
    match integer(v) {
        Some((false, n)) | Some((true, n @ 0)) => Number::UInt(n),
        Some((true, _)) => as_i64(v).map_or(Number::Float, Number::Int),
        None => Number::Float,
    }
}

/// An integer without fraction or exponent that fits 64 bits: (negative, magnitude).
fn integer(v: &[u8]) -> Option<(bool, u64)> {
    let (negative, digits) = match v.split_first()? {
        (b'-', digits) => (true, digits),
        _ => (false, v),
    };
    if digits.is_empty() {
        return None;
    }
    let magnitude = digits.iter().try_fold(0u64, |acc, &d| {
        let digit = char::from(d).to_digit(10)?;
        acc.checked_mul(10)?.checked_add(u64::from(digit))
    })?;
    Some((negative, magnitude))
}

/// Skips whitespace and commas between validated elements.
fn skip_separators(r: &[u8]) -> &[u8] {
    let start = r
        .iter()
        .position(|&b| !(is_ws(b) || b == b','))
        .unwrap_or(r.len());
    &r[start..]
}

/// The length of the validated value at the start of `r`.
fn value_end(r: &[u8]) -> usize {
    match r.first() {
        Some(b'"') => string_end(r, 0),
        Some(b'[' | b'{') => {
            let mut depth = 0usize;
            let mut i = 0;
            while i < r.len() {
                match r[i] {
                    b'"' => {
                        i = string_end(r, i);
                        continue;
                    }
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            r.len()
        }
        _ => r
            .iter()
            .position(|&b| matches!(b, b',' | b']' | b'}' | b':') || is_ws(b))
            .unwrap_or(r.len()),
    }
}

/// The index after the closing quote of the validated string starting at `r[start] == '"'`.
fn string_end(r: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < r.len() {
        match r[i] {
            b'"' => return i + 1,
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    r.len()
}

/// Appends `s` as a JSON string: `"`, `\` and control characters escaped, everything else (UTF-8) as is.
fn write_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let b = s.as_bytes();
    out.push(b'"');
    let mut run = 0;
    for (i, &c) in b.iter().enumerate() {
        let short: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&b[run..i]);
        if short.is_empty() {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(c >> 4)],
                HEX[usize::from(c & 0xf)],
            ]);
        } else {
            out.extend_from_slice(short);
        }
        run = i + 1;
    }
    out.extend_from_slice(&b[run..]);
    out.push(b'"');
}

/// The decimal digits of `v`, written at the end of `buf`.
fn format_u64(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        // `v % 10 < 10`, so the cast is exact.
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::Writer as _;

    fn ok(input: &str) {
        assert_eq!(
            validate(input.as_bytes()),
            Ok(()),
            "{input:?} should be valid"
        );
    }

    fn bad(input: &[u8]) {
        assert!(
            matches!(validate(input), Err(DecodeError::Syntax(_))),
            "{:?} should be a syntax error",
            input
        );
    }

    #[test]
    fn accepts_rfc8259() {
        for input in [
            "0",
            "-0",
            "-0.0e+5",
            "1.5E-3",
            "123456789012345678901234567890",
            " \t\r\n[ 1 , 2 ] \n",
            "{}",
            "[]",
            "{\"a\":[{},[],null,true,false,\"\"]}",
            "\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\ud83d\\ude00\"",
            "\"caf\u{e9} \u{1f600}\"",
        ] {
            ok(input);
        }
    }

    #[test]
    fn rejects_what_rfc8259_forbids() {
        for input in [
            &b""[..],
            b"   ",
            b"[1,]",
            b"{\"a\":1,}",
            b"[,1]",
            b"[1 2]",
            b"{\"a\" 1}",
            b"{1:1}",
            b"01",
            b"-",
            b"1.",
            b".5",
            b"1e",
            b"+1",
            b"NaN",
            b"Infinity",
            b"nul",
            b"truee",
            b"[1] x",
            b"/* c */ 1",
            b"\"a\nb\"",
            b"\"\\x\"",
            b"\"\\u12\"",
            b"\"\\u12g4\"",
            b"\"\\ud800\"",
            b"\"\\udc00\"",
            b"\"\\ud800\\u0041\"",
            b"\"\xff\"",
            b"\"\xc3\"",
            b"\xef\xbb\xbf1",
            b"\"abc",
            b"[",
            b"{",
            b"{\"a\"",
            b"{\"a\":",
        ] {
            bad(input);
        }
    }

    #[test]
    fn depth_limit() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        ok(&deep(DEPTH_MAX));
        assert_eq!(
            validate(deep(DEPTH_MAX + 1).as_bytes()),
            Err(DecodeError::TooDeep)
        );
        assert_eq!(
            validate("[".repeat(100_000).as_bytes()),
            Err(DecodeError::TooDeep)
        );
    }

    #[test]
    fn split() {
        let mut out = [&b""[..]; 3];
        let input = b" [ 36 , {\"a\": [1, 2]} ,\"x\\\"y\" ] ";
        assert_eq!(split_array(input, &mut out), Ok(3));
        assert_eq!(out, [&b"36"[..], b"{\"a\": [1, 2]}", b"\"x\\\"y\""]);
        assert_eq!(
            split_array(b"[1,2,3,4]", &mut out),
            Err(DecodeError::Syntax("too many elements"))
        );
        assert_eq!(split_array(b"[]", &mut out), Err(DecodeError::NotAMessage));
        assert_eq!(split_array(b"{}", &mut out), Err(DecodeError::NotAMessage));
        assert!(matches!(
            split_array(b"[] x", &mut out),
            Err(DecodeError::Syntax(_))
        ));
        assert!(matches!(
            split_array(b"{", &mut out),
            Err(DecodeError::Syntax(_))
        ));
    }

    #[test]
    fn accessors() {
        assert_eq!(as_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(as_u64(b"18446744073709551616"), None);
        assert_eq!(as_u64(b"-1"), None);
        assert_eq!(as_u64(b"1.0"), None);
        assert_eq!(as_u64(b"1e3"), None);
        assert_eq!(as_u64(b"\"1\""), None);
        assert_eq!(as_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(as_i64(b"-9223372036854775809"), None);
        assert_eq!(as_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(as_f64(b"-1.5e2"), Some(-150.0));
        assert_eq!(as_f64(b"7"), Some(7.0));
        assert_eq!(kind(b"18446744073709551616"), Kind::Float);
        assert_eq!(kind(b"-3"), Kind::Int);
        assert_eq!(kind(b"3.0"), Kind::Float);
        assert_eq!(kind(b"\"\\u0000AQID\""), Kind::Str);
        assert!(matches!(as_str(b"\"plain\""), Some(Cow::Borrowed("plain"))));
        assert_eq!(
            as_str(b"\"a\\u00e9\\ud83d\\ude00\\n\"").as_deref(),
            Some("a\u{e9}\u{1f600}\n")
        );
        assert_eq!(
            as_bytes(b"\"\\u0000AQID\"").as_deref(),
            Some(&[1, 2, 3][..])
        );
        assert_eq!(as_bytes(b"\"\\u0000\"").as_deref(), Some(&[][..]));
        assert_eq!(
            as_bytes(b"\"\\u0000P\\/8=\"").as_deref(),
            Some(&[0x3f, 0xff][..])
        );
        assert_eq!(as_bytes(b"\"\\u0000AQI\""), None);
        assert_eq!(as_bytes(b"\"AQID\""), None);
        let mut rest = &b" 1 , [2,3] ,{\"a\":\"]\"} ]"[..];
        let mut remaining = 0;
        let items: Vec<_> = std::iter::from_fn(|| list_next(&mut rest, &mut remaining)).collect();
        assert_eq!(items, [&b"1"[..], b"[2,3]", b"{\"a\":\"]\"}"]);
        let (mut rest, mut remaining) = dict_start(b"{ \"k\\n\" : 1 , \"b\":{}}").unwrap();
        let entries: Vec<_> = std::iter::from_fn(|| dict_next(&mut rest, &mut remaining)).collect();
        assert_eq!(
            entries,
            [
                (Cow::Borrowed("k\n"), &b"1"[..]),
                (Cow::Borrowed("b"), b"{}")
            ]
        );
    }

    #[test]
    fn writer() {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        w.array(6);
        w.map(2);
        w.key("a\"");
        w.array(0);
        w.key("b");
        w.map(0);
        w.f64(1.0);
        w.f64(f64::NAN);
        w.i64(i64::MIN);
        w.str("\u{1}\u{1f600}\\");
        w.bin(&[1, 2, 3]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[{\"a\\\"\":[],\"b\":{}},1.0,null,-9223372036854775808,\"\\u0001\u{1f600}\\\\\",\"\\u0000AQID\"]"
        );
    }
}
