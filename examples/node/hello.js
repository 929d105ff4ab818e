// A complete autobahn-js session on Node.js against kreisel: it joins realm1, subscribes to a topic, publishes to
// it, registers a procedure, calls it (plain and with progressive results), and leaves; the process exits 0 when
// all of that worked.
//
// Start a router first (`cargo run --release` in the repository: WebSocket on ws://127.0.0.1:8080/ws, RawSocket on
// 127.0.0.1:8081), then, in this folder:
//
//   npm ci                                        # autobahn-js, pinned in package-lock.json
//   node hello.js                                 # WebSocket, JSON
//   node hello.js ws://127.0.0.1:8080/ws msgpack  # WebSocket, MessagePack (or cbor)
//   node hello.js rs://127.0.0.1:8081 json        # RawSocket: autobahn-js on Node speaks JSON only there
'use strict';

const autobahn = require('autobahn');

const [url = 'ws://127.0.0.1:8080/ws', serializerName = 'json', realm = 'realm1'] = process.argv.slice(2);

const serializers = {
  json: () => new autobahn.serializer.JSONSerializer(),
  msgpack: () => new autobahn.serializer.MsgpackSerializer(),
  cbor: () => new autobahn.serializer.CBORSerializer(),
};
if (!(serializerName in serializers)) {
  console.error(`unknown serializer ${serializerName} (json, msgpack or cbor)`);
  process.exit(2);
}

function transport() {
  const parsed = new URL(url);
  if (parsed.protocol === 'rs:') {
    if (serializerName !== 'json') {
      console.error("autobahn-js's RawSocket transport on Node speaks JSON only");
      process.exit(2);
    }
    return { type: 'rawsocket', host: parsed.hostname, port: Number(parsed.port) };
  }
  return { type: 'websocket', url, serializers: [serializers[serializerName]()] };
}

// A promise that fails after `ms`, so that nothing waits forever.
function within(promise, what, ms = 5000) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function main(session) {
  // Publish and subscribe. The publisher does not get its own events unless it says so (exclude_me).
  let onGreeting;
  const greeting = new Promise((resolve) => {
    onGreeting = resolve;
  });
  await session.subscribe('com.example.greeting', (args, kwargs) => onGreeting({ args, kwargs }));
  await session.publish('com.example.greeting', ['hello from Node.js'], { count: 1 }, { acknowledge: true, exclude_me: false });
  const event = await within(greeting, 'event');
  console.log(`event on com.example.greeting: ${JSON.stringify(event.args[0])} (count=${event.kwargs.count})`);

  // Register and call.
  await session.register('com.example.add', (args) => args[0] + args[1]);
  const sum = await within(session.call('com.example.add', [2, 3]), 'result');
  console.log(`com.example.add(2, 3) = ${sum}`);

  // Progressive results: the callee sends partial results before the final one. autobahn-js (when.js promises)
  // hands them to the third function given to then(), unwrapped like a final result: a single positional value
  // as itself, anything more as an autobahn.Result with args and kwargs.
  await session.register('com.example.countdown', (args, kwargs, details) => {
    for (let i = args[0]; i > 0; i--) {
      if (details.progress) details.progress([i]);
    }
    return 'liftoff';
  });
  const progress = [];
  const final = await within(
    session.call('com.example.countdown', [3], {}, { receive_progress: true }).then(
      (result) => result,
      (error) => Promise.reject(error),
      (partial) => progress.push(partial),
    ),
    'final result',
  );
  console.log(`com.example.countdown(3): progress ${JSON.stringify(progress)}, then ${JSON.stringify(final)}`);

  return event.args[0] === 'hello from Node.js' && event.kwargs.count === 1 && sum === 5 &&
    JSON.stringify(progress) === '[3,2,1]' && final === 'liftoff';
}

// autobahn-js reports connection state changes on console.warn ("connection closed ...", "auto-reconnect
// disabled!"); this program prints what happened itself.
autobahn.log.warn = () => {};

let ok = false;
let joined = false;
let closed = false;
const connection = new autobahn.Connection({
  transports: [transport()],
  realm,
  // One attempt: this program runs once. A long-running service would keep autobahn-js's retries.
  max_retries: 0,
  retry_if_unreachable: false,
});

connection.onopen = (session, details) => {
  joined = true;
  console.log(`joined realm ${realm} as session ${session.id} (${url}, ${serializerName}, authrole ${details.authrole})`);
  main(session)
    .then((passed) => {
      ok = passed;
    })
    .catch((error) => console.log(`failed: ${error && error.stack ? error.stack : JSON.stringify(error)}`))
    .finally(() => connection.close()); // GOODBYE, then the transport closes
};

connection.onclose = (reason) => {
  // autobahn-js 22.11 may report an unreachable router twice.
  if (closed) return true;
  closed = true;
  console.log(`closed: ${reason}`);
  if (!joined) console.log(`FAILED: could not join ${realm} at ${url}: is the router running?`);
  else console.log(ok ? 'done' : 'FAILED');
  process.exitCode = ok ? 0 : 1;
  return true; // do not reconnect
};

connection.open();
