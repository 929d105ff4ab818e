// Two autobahn-js sessions on different serializers (and transports) talking through kreisel:
//   node cross_serializer.js URL_A SERIALIZER_A URL_B SERIALIZER_B
//
// Each side publishes to the other and calls the other's procedures: payloads (unicode, nesting, numbers)
// arrive exactly, errors with URI, args and kwargs cross, progressive results cross, pattern subscriptions get
// details.topic. Binary crosses as the spec says: a bin/byte string on MessagePack/CBOR is "\u0000"+base64 on
// JSON and back.
'use strict';

const { autobahn, Collector, checkWelcome, close, connect, run, within } = require('./common.js');
const payloads = require('./payloads.js');

const [urlA, serA, urlB, serB] = process.argv.slice(2);
if (!urlA || !serA || !urlB || !serB) {
  console.log('usage: node cross_serializer.js URL_A SERIALIZER_A URL_B SERIALIZER_B');
  process.exit(2);
}

const { BYTES, binaryAs } = payloads;

async function oneWay(check, from, fromSer, to, toSer, tag) {
  const label = `${fromSer} -> ${toSer}`;
  const { args, kwargs } = payloads.shared(fromSer, toSer);

  // Pub/sub, exact and prefix.
  const exact = new Collector();
  const prefix = new Collector();
  await within(to.session.subscribe(`com.kreisel.cross.${tag}.topic`, exact.handler), 'SUBSCRIBED');
  await within(to.session.subscribe(`com.kreisel.cross.${tag}.pre`, prefix.handler, { match: 'prefix' }), 'SUBSCRIBED');
  const publication = await within(
    from.session.publish(`com.kreisel.cross.${tag}.topic`, args, kwargs, { acknowledge: true }),
    'PUBLISHED',
  );
  let event = await exact.wait(1, `the EVENT ${label}`);
  check.same(`${label}: EVENT args`, event.args, args);
  check.same(`${label}: EVENT kwargs`, event.kwargs, kwargs);
  check.same(`${label}: EVENT publication ID`, event.details.publication, publication.id);

  await from.session.publish(`com.kreisel.cross.${tag}.pre.x`, ['pattern ü'], { n: 1 }, { acknowledge: true });
  event = await prefix.wait(1, `the prefix EVENT ${label}`);
  check.same(`${label}: prefix EVENT details.topic`, event.details.topic, `com.kreisel.cross.${tag}.pre.x`);
  check.same(`${label}: prefix EVENT payload`, [event.args, event.kwargs], [['pattern ü'], { n: 1 }]);

  // Binary, transcoded per the spec.
  await from.session.publish(`com.kreisel.cross.${tag}.topic`, [binaryAs(fromSer, BYTES)], { b: binaryAs(fromSer, BYTES) }, {
    acknowledge: true,
  });
  event = await exact.wait(2, `the binary EVENT ${label}`);
  check.same(`${label}: binary in EVENT`, [event.args, event.kwargs], [[binaryAs(toSer, BYTES)], { b: binaryAs(toSer, BYTES) }]);

  await from.session.publish(`com.kreisel.cross.${tag}.topic`, [2 ** 53, -(2 ** 53)], {}, { acknowledge: true });
  event = await exact.wait(3, `the 2^53 EVENT ${label}`);
  check.same(`${label}: ±2^53 in EVENT`, event.args, [payloads.bigAs(fromSer, toSer, 2 ** 53), payloads.bigAs(fromSer, toSer, -(2 ** 53))]);

  // RPC: `to` is the callee.
  await within(to.session.register(`com.kreisel.cross.${tag}.echo`, (a, kw) => new autobahn.Result(a, kw)), 'REGISTERED');
  await within(
    to.session.register(`com.kreisel.cross.${tag}.fail`, (a) => {
      throw new autobahn.Error('com.kreisel.cross.error', ['from ' + toSer, a[0]], { deep: { list: [1, 'ü'] } });
    }),
    'REGISTERED',
  );
  await within(
    to.session.register(`com.kreisel.cross.${tag}.progress`, (a, kw, details) => {
      details.progress([1], { step: 'one' });
      details.progress([2], { step: 'two' });
      return new autobahn.Result(['done ' + toSer]);
    }),
    'REGISTERED',
  );
  const echoed = await within(from.session.call(`com.kreisel.cross.${tag}.echo`, args, kwargs), `the echo ${label}`);
  check.same(`${label}: call result args`, echoed.args, args);
  check.same(`${label}: call result kwargs`, echoed.kwargs, kwargs);

  const binary = await within(
    from.session.call(`com.kreisel.cross.${tag}.echo`, [binaryAs(fromSer, BYTES)], { b: binaryAs(fromSer, BYTES) }),
    `the binary echo ${label}`,
  );
  check.same(`${label}: binary through a call and back`, [binary.args, binary.kwargs], [[binaryAs(fromSer, BYTES)], { b: binaryAs(fromSer, BYTES) }]);

  await check.error(
    `${label}: callee error`,
    from.session.call(`com.kreisel.cross.${tag}.fail`, ['x ü']),
    'com.kreisel.cross.error',
    ['from ' + toSer, 'x ü'],
    { deep: { list: [1, 'ü'] } },
  );

  const chunks = [];
  const final = await within(
    from.session.call(`com.kreisel.cross.${tag}.progress`, [], {}, { receive_progress: true }).then(
      (r) => r,
      (e) => Promise.reject(e),
      (chunk) => chunks.push([chunk.args, chunk.kwargs]),
    ),
    `the progressive call ${label}`,
  );
  check.same(`${label}: progressive results`, chunks, [[[1], { step: 'one' }], [[2], { step: 'two' }]]);
  check.same(`${label}: final result after progress`, final, 'done ' + toSer);
}

run(`cross_serializer ${urlA} ${serA} <-> ${urlB} ${serB}`, async (check) => {
  const a = await connect(urlA, serA);
  const b = await connect(urlB, serB);
  checkWelcome(check, `A (${serA})`, a, serA);
  checkWelcome(check, `B (${serB})`, b, serB);
  await oneWay(check, a, serA, b, serB, 'ab');
  await oneWay(check, b, serB, a, serA, 'ba');
  await close(a, b);
  check.passed('GOODBYE and transport close');
});
