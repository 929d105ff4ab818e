// autobahn-js talking to autobahn-python through kreisel: node with_python.js URL SERIALIZER PYTHON_SERIALIZER
//
// python_peer.py must be joined (it printed READY). autobahn-js publishes to the peer's inbox and gets the event
// back on the outbox (unicode, nesting, binary as bytes on the Python side and back), calls its echo procedure
// with the payloads both serializers carry, gets its ApplicationError with args and kwargs, and finally calls its
// stop procedure.
'use strict';

const { Collector, checkWelcome, close, connect, run, within } = require('./common.js');
const payloads = require('./payloads.js');

const [url, serializer, pythonSerializer] = process.argv.slice(2);
if (!url || !serializer || !pythonSerializer) {
  console.log('usage: node with_python.js URL SERIALIZER PYTHON_SERIALIZER');
  process.exit(2);
}

const { binaryAs } = payloads;

run(`with_python ${url} ${serializer} <-> python ${pythonSerializer}`, async (check) => {
  const peer = await connect(url, serializer);
  checkWelcome(check, `autobahn-js (${serializer})`, peer, serializer);
  const { session } = peer;

  // The same literal as INBOX_ARGS/INBOX_KWARGS in python_peer.py.
  const inboxArgs = ['from js ü😀', { nested: [1, 2.5, null, true, '\u2028'] }, 2 ** 40];
  const inboxKwargs = { 'key ключ': 'value', list: [[], {}], bytes: binaryAs(serializer, Buffer.from([0, 1, 0xfe, 0xff])) };
  const outbox = new Collector();
  await within(session.subscribe('com.kreisel.py.outbox', outbox.handler), 'SUBSCRIBED');
  await within(session.publish('com.kreisel.py.inbox', inboxArgs, inboxKwargs, { acknowledge: true }), 'PUBLISHED');
  const event = await outbox.wait(1, 'the event republished by autobahn-python');
  check.same('event through autobahn-python and back: args', event.args, inboxArgs);
  check.same('event through autobahn-python and back: kwargs', event.kwargs, inboxKwargs);

  const { args, kwargs } = payloads.shared(serializer, pythonSerializer);
  const echoed = await within(session.call('com.kreisel.py.echo', args, kwargs), 'the echo from autobahn-python');
  check.same('call to autobahn-python: result args', echoed.args, args);
  check.same('call to autobahn-python: result kwargs', echoed.kwargs, kwargs);

  await check.error(
    'ApplicationError from autobahn-python',
    session.call('com.kreisel.py.fail', ['x', 1]),
    'com.kreisel.py.error',
    ['from python ü', ['x', 1]],
    { detail: { bytes: binaryAs(serializer, Buffer.from([0xff, 0])) } },
  );
  await check.error('unregistered procedure', session.call('com.kreisel.py.nobody'), 'wamp.error.no_such_procedure');

  await within(session.call('com.kreisel.py.stop'), 'the stop call');
  check.passed('autobahn-python told to stop');
  await close(peer);
});
