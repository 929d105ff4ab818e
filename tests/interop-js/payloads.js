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

module.exports = { args, kwargs, nested, STRINGS, BINARIES };
