// autobahn-js clients authenticated and authorized by dynamic components through kreisel:
// node dynamic_auth.js URL SERIALIZER
//
// tests/interop/dynamic_components.py must be running (see tests/tests/dynamic_auth.rs for the router's realms).
// Ticket and WAMP-CRA logins (plain and salted) go through the dynamic authenticator, anonymous ones through its
// anonymous procedure; the authenticator's refusals reach autobahn-js as the ABORT it raised, a misbehaving one as
// wamp.error.authentication_failed; the authorizer allows, refuses and fails requests of role `frontend`.
'use strict';

const { autobahn, Collector, close, connect, run, within } = require('./common.js');

const [url, serializer] = process.argv.slice(2);
if (!url || !serializer) {
  console.log('usage: node dynamic_auth.js URL SERIALIZER');
  process.exit(2);
}

function ticket(authid, value) {
  return { authmethods: ['ticket'], authid, onchallenge: () => value };
}

function wampcra(authid, secret) {
  return {
    authmethods: ['wampcra'],
    authid,
    onchallenge: (session, method, extra) => {
      const key = extra.salt ? autobahn.auth_cra.derive_key(secret, extra.salt, extra.iterations, extra.keylen) : secret;
      return autobahn.auth_cra.sign(key, extra.challenge);
    },
  };
}

async function refused(check, what, reason, auth) {
  try {
    const peer = await connect(url, serializer, 'dynamic', auth);
    await close(peer);
  } catch (error) {
    if (!error.details) throw error;
    check.same(`${what}: ABORT`, error.details.reason, reason);
    return error.details;
  }
  throw new Error(`${what}: joined, expected ABORT ${reason}`);
}

function welcome(check, what, details, expected) {
  check.same(
    `${what}: WELCOME`,
    [details.authid, details.authrole, details.authmethod, details.authprovider],
    [...expected, 'dynamic'],
  );
}

run(`dynamic_auth ${url} ${serializer}`, async (check) => {
  const joe = await connect(url, serializer, 'dynamic', ticket('joe', 'secret!!!'));
  welcome(check, 'ticket', joe.details, ['joe', 'frontend', 'ticket']);
  const jim = await connect(url, serializer, 'dynamic', wampcra('jim', 'wampcra-secret'));
  welcome(check, 'wampcra', jim.details, ['jim', 'frontend', 'wampcra']);
  const salty = await connect(url, serializer, 'dynamic', wampcra('salty', 'salted password'));
  welcome(check, 'wampcra salted', salty.details, ['salty', 'frontend', 'wampcra']);
  const guest = await connect(url, serializer, 'dynamic', { authmethods: ['anonymous'] });
  check.same('anonymous: role and WELCOME extra', [guest.details.authrole, guest.details.authextra],
    ['guest', { welcome: 'to dynamic' }]);

  const wrong = await refused(check, 'wrong ticket', 'com.example.invalid_ticket', ticket('joe', 'wrong'));
  check.same("wrong ticket: the authenticator's message", wrong.message, "invalid ticket for 'joe'");
  await refused(check, 'wampcra wrong secret', 'wamp.error.authentication_failed', wampcra('jim', 'guess'));
  await refused(check, 'an answer of the wrong type', 'wamp.error.authentication_failed', ticket('wrongtype', 'x'));
  await refused(check, 'an answer without a role', 'wamp.error.no_such_role', ticket('nobody', 'x'));

  const news = new Collector();
  await within(joe.session.subscribe('com.example.public.news', news.handler), 'SUBSCRIBED');
  await within(jim.session.publish('com.example.public.news', ['hi'], {}, { acknowledge: true }), 'PUBLISHED');
  check.same('allowed: subscribe and publish', (await news.wait(1, 'the event')).args, ['hi']);
  await check.error('refused: publish to com.example.private',
    joe.session.publish('com.example.private', [], {}, { acknowledge: true }), 'wamp.error.not_authorized');
  await check.error('an authorizer answering a string', joe.session.call('com.example.broken'),
    'wamp.error.authorization_failed');
  await within(joe.session.register('com.example.mine.joe.echo', (args) => args), 'REGISTERED');
  check.same('allowed for its authid: call', await within(joe.session.call('com.example.mine.joe.echo', [1]), 'RESULT'), [1]);
  await check.error("another authid's namespace", jim.session.call('com.example.mine.joe.echo', [1]),
    'wamp.error.not_authorized');
  await close(joe, jim, salty, guest);
});
