// Payloads exercising what serializers disagree on, for exact-equality checks (see common.mismatch).
//
// What autobahn-js itself cannot carry is left out per serializer, so a difference is the router's:
// - JSON: no binary (autobahn-js's JSONSerializer has no "\u0000"+base64 convention; a Buffer would arrive as
//   {type: "Buffer", data: [...]}), and -0 is written as "0" by JSON.stringify;
// - MessagePack (msgpack5): -0 is written as the integer 0;
// - every serializer: JavaScript numbers are doubles, so integers only up to 2^53 (no 64-bit extremes).
'use strict';

// A list/dict nest `depth` levels deep (kreisel allows 64 levels per message; the WAMP message adds 2).
function nested(depth) {
  let value = 'bottom';
  for (let level = 0; level < depth; level++) {
    value = level % 2 ? [level, value] : { level, inner: value };
  }
  return value;
}

const INTS = [0, 1, -1, 127, 128, -32, -33, 255, 256, 65535, 65536, 2 ** 31 - 1, -(2 ** 31), 2 ** 32, 2 ** 53, -(2 ** 53)];

function floats(serializer) {
  const values = [1.5, -0.25, 0.1, 1e300, -2.5e-300, Math.PI, 2 ** 60, 65504.5, 3.4e38];
  if (serializer === 'cbor') values.push(-0);
  return values;
}

const STRINGS = [
  '',
  'ascii',
  'ü€ and 😀', // BMP and astral
  '𝄞𝕏🇩🇪👩‍👩‍👧', // astral, flags and ZWJ sequences
  'quote " backslash \\ slash / newline \n tab \t',
  'controls \x01\x1f\x7f and a NUL \x00 inside',
  'separators \u2028\u2029 BOM \ufeff',
];

const BINARIES = [
  Buffer.alloc(0),
  Buffer.from([0]),
  Buffer.from([0, 1, 0xfe, 0xff]),
  Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
  Buffer.from('ü😀', 'utf8'),
];

function binary(serializer) {
  return serializer !== 'json';
}

function args(serializer) {
  const values = [
    1,
    'ü€ and 😀',
    { n: [null, true, false, 1.5, -7] },
    INTS,
    floats(serializer),
    STRINGS,
    [],
    {},
    null,
    true,
    false,
    nested(20),
  ];
  if (binary(serializer)) values.push(BINARIES);
  return values;
}

function kwargs(serializer) {
  const values = {
    unicode: 'ü€ and 😀',
    'ключ 🔑': 'non-ASCII key',
    '': 'empty key',
    nested: { a: [1, { b: [2, { c: 'deep' }] }], empty: {}, list: [] },
    ints: INTS,
    floats: floats(serializer),
    none: null,
    deep: nested(16),
  };
  if (binary(serializer)) values.bytes = Buffer.from([0, 0xff, 0x80, 0x7f]);
  return values;
}

const BYTES = Buffer.from([0, 1, 2, 0xfe, 0xff, 0x80]);

// What `bytes` look like to an autobahn-js peer on `serializer` (the WAMP spec's JSON convention for binary).
function binaryAs(serializer, bytes) {
  return serializer === 'json' ? `\u0000${bytes.toString('base64')}` : bytes;
}

// The payloads autobahn-js sessions on serializers `a` and `b` both carry exactly; between JSON and CBOR without
// integral numbers beyond 2^53 - 1 (±2^53, 2^60): see `bigAs`.
function shared(a, b) {
  const common = [a, b].includes('json') ? 'json' : 'msgpack';
  const big = (x) => Number.isInteger(x) && !Number.isSafeInteger(x);
  const safe = (v) => (Array.isArray(v) ? v.filter((x) => !big(x)) : v);
  const jsonCbor = [a, b].includes('json') && [a, b].includes('cbor');
  const sharedArgs = args(common).map((v) => (jsonCbor ? safe(v) : v));
  const kw = kwargs(common);
  if (jsonCbor) [kw.ints, kw.floats] = [safe(kw.ints), safe(kw.floats)];
  return { args: sharedArgs, kwargs: kw };
}

// What ±2^53 sent from `from` looks like at `to`. JSON.stringify writes any integral number without a fraction
// (2^60 as 1152921504606847000), so it is a JSON integer, which reaches a CBOR peer as a CBOR integer, and node-cbor decodes integers beyond Number.MAX_SAFE_INTEGER as BigInt. msgpack5 writes it as a
// float64 and node-cbor as a float32, which stay numbers everywhere.
function bigAs(from, to, n) {
  return from === 'json' && to === 'cbor' ? BigInt(n) : n;
}

module.exports = { args, kwargs, nested, shared, bigAs, binaryAs, BYTES, STRINGS, BINARIES };

