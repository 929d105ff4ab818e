// Remote procedure calls with autobahn-js against kreisel: node rpc.js URL SERIALIZER
//
// Calls with the payloads of pubsub.js echoed back exactly (args and kwargs, through autobahn.Result); a single
// positional result; concurrent calls; INVOCATION details.procedure for a pattern registration; application errors
// (custom URI and a wamp.error.* URI) with args and kwargs reaching the caller; wamp.error.no_such_procedure;
// wamp.error.procedure_already_exists; progressive call results (receive_progress, several progress chunks then
// the final result, in order); unregister.
'use strict';

const { autobahn, checkWelcome, close, connect, run, within } = require('./common.js');
const payloads = require('./payloads.js');

const [url, serializer] = process.argv.slice(2);
if (!url || !serializer) {
  console.log('usage: node rpc.js URL SERIALIZER');
  process.exit(2);
}

function call(peer, procedure, args, kwargs, options) {
  return within(peer.session.call(procedure, args, kwargs, options), `the result of ${procedure}`);
}

async function registerAll(check, callee) {
  const registrations = {};
  const register = async (procedure, endpoint, options) => {
    registrations[procedure] = await within(callee.session.register(procedure, endpoint, options), `REGISTERED ${procedure}`);
  };
  await register('com.kreisel.js.echo', (args, kwargs) => new autobahn.Result(args, kwargs));
  await register('com.kreisel.js.add', (args) => args[0] + args[1]);
  await register('com.kreisel.js.slow', (args) => new Promise((resolve) => setTimeout(() => resolve(args[0] * 2), 50)));
  await register('com.kreisel.js.fail', (args) => {
    throw new autobahn.Error('com.kreisel.js.error.custom', ['why ü', args[0], { nested: [1, null] }], { code: 42, where: 'callee' });
  });
  await register('com.kreisel.js.invalid', () => {
    throw new autobahn.Error('wamp.error.invalid_argument', ['bad argument'], { got: 'nothing' });
  });
  await register('com.kreisel.js.countdown', (args, kwargs, details) => {
    if (!details.progress) throw new autobahn.Error('com.kreisel.js.error.no_progress', ['caller did not ask for progress']);
    for (let i = args[0]; i > 0; i--) details.progress([i], { left: i, ü: 'ü' });
    return new autobahn.Result(['liftoff'], { done: true });
  });
  await register('com.kreisel.js.pattern', (args, kwargs, details) => details.procedure, { match: 'prefix' });
  check.true('REGISTERED: registration IDs in 1..2^53', Object.values(registrations).every((r) => r.id >= 1 && r.id <= 2 ** 53));
  return registrations;
}

async function results(check, caller) {
  const args = payloads.args(serializer);
  const kwargs = payloads.kwargs(serializer);
  const echoed = await call(caller, 'com.kreisel.js.echo', args, kwargs);
  check.true('echo: result is an autobahn.Result', echoed instanceof autobahn.Result);
  check.same('echo: result args', echoed.args, args);
  check.same('echo: result kwargs', echoed.kwargs, kwargs);

  const kwOnly = await call(caller, 'com.kreisel.js.echo', [], { only: 'kwargs', list: [1, [2, [3]]] });
  check.same('echo: kwargs only', [kwOnly.args, kwOnly.kwargs], [[], { only: 'kwargs', list: [1, [2, [3]]] }]);

  check.same('add: single positional result', await call(caller, 'com.kreisel.js.add', [2, 40]), 42);
  check.same('add: strings', await call(caller, 'com.kreisel.js.add', ['ü', '😀']), 'ü😀');

  const concurrent = await within(
    Promise.all(Array.from({ length: 20 }, (_, i) => caller.session.call('com.kreisel.js.slow', [i]))),
    '20 concurrent calls',
  );
  check.same('20 concurrent calls, each its own result', concurrent, Array.from({ length: 20 }, (_, i) => i * 2));

  check.same(
    'prefix registration: INVOCATION details.procedure is the called URI',
    await call(caller, 'com.kreisel.js.pattern.a.b'),
    'com.kreisel.js.pattern.a.b',
  );
}

async function errors(check, caller, callee, registrations) {
  await check.error(
    'callee error with custom URI',
    caller.session.call('com.kreisel.js.fail', ['input']),
    'com.kreisel.js.error.custom',
    ['why ü', 'input', { nested: [1, null] }],
    { code: 42, where: 'callee' },
  );
  await check.error(
    'callee error with a wamp.error URI',
    caller.session.call('com.kreisel.js.invalid'),
    'wamp.error.invalid_argument',
    ['bad argument'],
    { got: 'nothing' },
  );
  await check.error('unregistered procedure', caller.session.call('com.kreisel.js.nobody', [1]), 'wamp.error.no_such_procedure');
  await check.error(
    'second registration of a procedure',
    caller.session.register('com.kreisel.js.echo', () => null),
    'wamp.error.procedure_already_exists',
  );

  await within(registrations['com.kreisel.js.add'].unregister(), 'UNREGISTERED');
  check.passed('UNREGISTER');
  await check.error('call after UNREGISTER', caller.session.call('com.kreisel.js.add', [1, 2]), 'wamp.error.no_such_procedure');
  void callee;
}

// autobahn-js reports progressive results through when.js's (deprecated) progress handler, the third argument of
// then(); without when.js installed it has no way to deliver them.
async function progress(check, caller) {
  const chunks = [];
  const final = await within(
    caller.session.call('com.kreisel.js.countdown', [3], {}, { receive_progress: true }).then(
      (result) => result,
      (error) => Promise.reject(error),
      (chunk) => chunks.push(chunk),
    ),
    'the progressive call',
  );
  check.same(
    'progressive results: three chunks in order',
    chunks.map((c) => [c.args, c.kwargs]),
    [3, 2, 1].map((i) => [[i], { left: i, ü: 'ü' }]),
  );
  check.same('progressive results: final result', [final.args, final.kwargs], [['liftoff'], { done: true }]);

  await check.error(
    'without receive_progress the callee gets no progress function',
    caller.session.call('com.kreisel.js.countdown', [3]),
    'com.kreisel.js.error.no_progress',
    ['caller did not ask for progress'],
  );
}

run(`rpc ${url} ${serializer}`, async (check) => {
  const callee = await connect(url, serializer);
  const caller = await connect(url, serializer);
  checkWelcome(check, 'callee', callee, serializer);
  checkWelcome(check, 'caller', caller, serializer);
  check.true('dealer announces progressive_call_results', caller.details.roles.dealer.features.progressive_call_results);

  const registrations = await registerAll(check, callee);
  await results(check, caller);
  await errors(check, caller, callee, registrations);
  await progress(check, caller);
  await close(caller, callee);
  check.passed('GOODBYE and transport close');
});
