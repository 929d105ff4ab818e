// Shared helpers for kreisel's autobahn-js interop checks (Node, autobahn from npm, pinned in package-lock.json).
//
// Every check program connects real autobahn-js sessions to a running kreisel, checks, prints one line per passed
// check and exits 0 only if everything passed ("PASSED <name>: <n> checks" last); any failed check, exception,
// unhandled rejection or the hard timeout prints "FAILED ..." and exits non-zero. Nothing is skipped.
//
// Transport URLs: ws://HOST:PORT/PATH (WebSocket), rs://HOST:PORT (RawSocket over TCP) or unix:/PATH (RawSocket
// over a Unix domain socket).
'use strict';

const util = require('node:util');
const autobahn = require('autobahn');

// autobahn-js logs connection state changes with console.warn; the checks' own lines are what matters.
autobahn.log.warn = () => {};

// How long one awaited step (a reply, an event) may take before the check fails.
const STEP_TIMEOUT_MS = 5000;

const SERIALIZERS = {
  json: () => new autobahn.serializer.JSONSerializer(),
  msgpack: () => new autobahn.serializer.MsgpackSerializer(),
  cbor: () => new autobahn.serializer.CBORSerializer(),
};

function show(value, limit = 300) {
  const text = util.inspect(value, { depth: 8, breakLength: Infinity, maxArrayLength: 40, maxStringLength: 200 });
  return text.length <= limit ? text : `${text.slice(0, limit)}... (${text.length} chars)`;
}

function kind(value) {
  if (value === null) return 'null';
  if (Buffer.isBuffer(value)) return 'Buffer';
  if (value instanceof Uint8Array) return 'Uint8Array';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

// Where `got` differs from `expected`, with kinds compared strictly (a Buffer is not a string, -0 is not 0,
// Number and BigInt differ); null when they are the same.
function mismatch(got, expected, path = 'value') {
  const [g, e] = [kind(got), kind(expected)];
  if (g !== e) return `${path}: ${g} ${show(got)} != expected ${e} ${show(expected)}`;
  if (e === 'array') {
    if (got.length !== expected.length) {
      return `${path}: length ${got.length} != expected ${expected.length} (${show(got)} vs ${show(expected)})`;
    }
    for (let i = 0; i < expected.length; i++) {
      const found = mismatch(got[i], expected[i], `${path}[${i}]`);
      if (found) return found;
    }
    return null;
  }
  if (e === 'Buffer' || e === 'Uint8Array') {
    return Buffer.compare(Buffer.from(got), Buffer.from(expected)) === 0
      ? null
      : `${path}: bytes ${show(got)} != expected ${show(expected)}`;
  }
  if (e === 'object') {
    const [gk, ek] = [Object.keys(got).sort(), Object.keys(expected).sort()];
    if (JSON.stringify(gk) !== JSON.stringify(ek)) {
      return `${path}: keys ${show(gk)} != expected ${show(ek)}`;
    }
    for (const key of ek) {
      const found = mismatch(got[key], expected[key], `${path}[${JSON.stringify(key)}]`);
      if (found) return found;
    }
    return null;
  }
  return Object.is(got, expected) ? null : `${path}: ${show(got)} != expected ${show(expected)}`;
}

class Checks {
  constructor(name) {
    this.name = name;
    this.count = 0;
  }

  passed(what) {
    this.count += 1;
    console.log(`ok  ${what}`);
  }

  // Exact equality, kinds included (see `mismatch`).
  same(what, got, expected) {
    const found = mismatch(got, expected);
    if (found) throw new Error(`${what}: ${found}`);
    this.passed(what);
  }

  true(what, value) {
    if (!value) throw new Error(`${what}: not true (${show(value)})`);
    this.passed(what);
  }

  // `promise` must reject with an autobahn.Error `uri` (and, when given, exactly these args/kwargs).
  async error(what, promise, uri, args, kwargs) {
    let result;
    try {
      result = await within(promise, `${what}: the reply`);
    } catch (error) {
      if (!(error instanceof autobahn.Error)) throw error;
      if (error.error !== uri) {
        throw new Error(`${what}: expected error ${uri}, got ${error.error} ${show(error.args)} ${show(error.kwargs)}`);
      }
      if (args !== undefined) this.noMismatch(what, mismatch(error.args, args, 'error args'));
      if (kwargs !== undefined) this.noMismatch(what, mismatch(error.kwargs, kwargs, 'error kwargs'));
      this.passed(`${what}: ${uri}`);
      return error;
    }
    throw new Error(`${what}: expected error ${uri}, but it succeeded with ${show(result)}`);
  }

  noMismatch(what, found) {
    if (found) throw new Error(`${what}: ${found}`);
  }
}

// `promise`, or a rejection naming `what` after `ms`.
function within(promise, what, ms = STEP_TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([Promise.resolve(promise), timeout]).finally(() => clearTimeout(timer));
}

// An event handler recording {args, kwargs, details} that lets a check wait for the n-th event. Handlers must not
// throw: autobahn-js swallows exceptions from event handlers.
class Collector {
  constructor() {
    this.events = [];
    this.waiters = [];
    this.handler = (args, kwargs, details) => {
      this.events.push({ args, kwargs, details });
      this.waiters = this.waiters.filter(([count, resolve]) => {
        if (this.events.length < count) return true;
        resolve();
        return false;
      });
    };
  }

  async wait(count, what) {
    if (this.events.length < count) {
      await within(new Promise((resolve) => this.waiters.push([count, resolve])), what);
    }
    return this.events[count - 1];
  }
}

// The autobahn-js transport description for `url` with only `serializer` offered.
function transportOf(url, serializer) {
  if (!(serializer in SERIALIZERS)) throw new Error(`unknown serializer ${serializer}`);
  if (url.startsWith('unix:')) {
    if (serializer !== 'json') throw new Error(`autobahn-js RawSocket supports only json, not ${serializer}`);
    return { type: 'rawsocket', path: url.slice('unix:'.length) };
  }
  const parsed = new URL(url);
  if (parsed.protocol === 'ws:') {
    return { type: 'websocket', url, serializers: [SERIALIZERS[serializer]()] };
  }
  if (parsed.protocol === 'rs:') {
    // autobahn-js's Node RawSocket transport speaks JSON only (serializer 1, hard-wired in
    // lib/transport/rawsocket.js); asking it for anything else is a test bug, not something to paper over.
    if (serializer !== 'json') throw new Error(`autobahn-js RawSocket supports only json, not ${serializer}`);
    return { type: 'rawsocket', host: parsed.hostname, port: Number(parsed.port) };
  }
  throw new Error(`unsupported URL ${url}`);
}

// Opens a transport to `url` and joins `realm`; resolves to {session, details, connection, closed} where `details`
// is WELCOME.Details and `closed` resolves (with the close reason) once the transport is gone. `auth` is added to
// the connection's options (authmethods, authid, authextra, onchallenge). A refused join rejects with an error
// whose `details` are autobahn-js's close details (`details.reason`: the ABORT's URI).
function connect(url, serializer, realm = 'realm1', auth = {}) {
  return within(
    new Promise((resolve, reject) => {
      let resolveClosed;
      const closed = new Promise((r) => {
        resolveClosed = r;
      });
      const connection = new autobahn.Connection({
        transports: [transportOf(url, serializer)],
        realm,
        max_retries: 0,
        retry_if_unreachable: false,
        ...auth,
      });
      let joined = false;
      connection.onopen = (session, details) => {
        joined = true;
        resolve({ session, details, connection, closed });
      };
      connection.onclose = (reason, details) => {
        if (!joined) {
          const error = new Error(`${url} (${serializer}) closed before joining: ${reason} ${show(details)}`);
          error.details = details;
          reject(error);
        }
        resolveClosed(reason);
        return true; // no reconnect
      };
      connection.open();
    }),
    `WELCOME from ${url} (${serializer})`,
    10000,
  );
}

// GOODBYE from each peer (as returned by `connect`), then waits until its transport is closed.
async function close(...peers) {
  for (const peer of peers) peer.connection.close();
  for (const peer of peers) await within(peer.closed, 'the transport to close after GOODBYE');
}

// What every joined session must have got in WELCOME, and the serializer the transport really uses.
function checkWelcome(check, label, peer, serializer) {
  const { session, details } = peer;
  check.same(`${label}: WELCOME authmethod`, details.authmethod, 'anonymous');
  check.same(`${label}: WELCOME authrole`, details.authrole, 'anonymous');
  check.true(
    `${label}: session ID in 1..2^53`,
    Number.isInteger(session.id) && session.id >= 1 && session.id <= 2 ** 53,
  );
  check.true(`${label}: WELCOME announces broker and dealer`, details.roles && details.roles.broker && details.roles.dealer);
  check.same(`${label}: negotiated serializer`, session._socket.serializer.SERIALIZER_ID, serializer);
}

// Runs `main(check)` with a hard timeout; exits 0 on success, 1 on failure or timeout.
function run(name, main, timeoutMs = 30000) {
  const check = new Checks(name);
  const fail = (why) => {
    console.log(`FAILED ${name} after ${check.count} passed checks: ${why}`);
    process.exit(1);
  };
  const timer = setTimeout(() => fail(`overall timeout of ${timeoutMs} ms`), timeoutMs);
  process.on('unhandledRejection', (error) => fail(`unhandled rejection: ${error && error.stack ? error.stack : show(error)}`));
  process.on('uncaughtException', (error) => fail(`uncaught exception: ${error && error.stack ? error.stack : show(error)}`));
  main(check).then(
    () => {
      clearTimeout(timer);
      if (check.count === 0) fail('no check ran');
      console.log(`PASSED ${name}: ${check.count} checks`);
      process.exit(0);
    },
    (error) => fail(error && error.stack ? error.stack : show(error)),
  );
}

module.exports = { autobahn, Checks, Collector, checkWelcome, close, connect, mismatch, run, show, within };
