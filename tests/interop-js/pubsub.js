// Publish/subscribe with autobahn-js against kreisel: node pubsub.js URL SERIALIZER
//
// WELCOME details; acknowledged publications (PUBLISHED ID = EVENT publication ID); events with unicode, nesting,
// integers up to 2^53, floats, booleans, null and (binary serializers) bytes compared exactly; args-only,
// kwargs-only, empty and 256 KiB events; publisher exclusion; unsubscribe; prefix and wildcard subscriptions with
// the concrete topic in EVENT details.topic.
'use strict';

const { Collector, checkWelcome, close, connect, run, within } = require('./common.js');
const payloads = require('./payloads.js');

const [url, serializer] = process.argv.slice(2);
if (!url || !serializer) {
  console.log('usage: node pubsub.js URL SERIALIZER');
  process.exit(2);
}

async function subscribe(peer, topic, options) {
  const collector = new Collector();
  const subscription = await within(peer.session.subscribe(topic, collector.handler, options), `SUBSCRIBED ${topic}`);
  return { collector, subscription };
}

function publish(peer, topic, args, kwargs, options = {}) {
  return within(peer.session.publish(topic, args, kwargs, { acknowledge: true, ...options }), `PUBLISHED ${topic}`);
}

async function exact(check, publisher, subscriber) {
  const topic = 'com.kreisel.js.exact';
  const { collector, subscription } = await subscribe(subscriber, topic);
  check.true('SUBSCRIBED: subscription ID in 1..2^53', subscription.id >= 1 && subscription.id <= 2 ** 53);

  const args = payloads.args(serializer);
  const kwargs = payloads.kwargs(serializer);
  const publication = await publish(publisher, topic, args, kwargs);
  check.true('PUBLISHED: publication ID in 1..2^53', publication.id >= 1 && publication.id <= 2 ** 53);
  let event = await collector.wait(1, 'the EVENT');
  check.same('EVENT args', event.args, args);
  check.same('EVENT kwargs', event.kwargs, kwargs);
  check.same('EVENT publication ID = PUBLISHED ID', event.details.publication, publication.id);
  check.same('EVENT topic', event.details.topic, topic);

  await publish(publisher, topic, ['only', 'args']);
  event = await collector.wait(2, 'the args-only EVENT');
  check.same('args-only EVENT', [event.args, event.kwargs], [['only', 'args'], {}]);

  await publish(publisher, topic, [], { only: 'kwargs' });
  event = await collector.wait(3, 'the kwargs-only EVENT');
  check.same('kwargs-only EVENT', [event.args, event.kwargs], [[], { only: 'kwargs' }]);

  await publish(publisher, topic);
  event = await collector.wait(4, 'the empty EVENT');
  check.same('empty EVENT', [event.args, event.kwargs], [[], {}]);

  // Spans many TCP reads on both ends (and RawSocket frames split across 'data' chunks in autobahn-js).
  const big = 'ü😀x'.repeat(256 * 1024 / 8);
  await publish(publisher, topic, [big], { size: big.length });
  event = await collector.wait(5, 'the 256 KiB EVENT');
  check.same('256 KiB EVENT', [event.args, event.kwargs], [[big], { size: big.length }]);
  return { topic, collector };
}

async function exclusion(check, publisher, subscriber, exactTopic, subscriberEvents) {
  const own = await subscribe(publisher, exactTopic);
  await publish(publisher, exactTopic, ['excluded']);
  await publish(publisher, exactTopic, ['included'], {}, { exclude_me: false });
  const first = await own.collector.wait(1, "the publisher's own EVENT with exclude_me false");
  check.same('publisher exclusion: first own EVENT is the exclude_me=false one', first.args, ['included']);
  const seen = await subscriberEvents.wait(7, 'both EVENTs at the other subscriber');
  check.same('other subscriber got the excluded publication too', subscriberEvents.events[5].args, ['excluded']);
  check.same('other subscriber got exclude_me=false', seen.args, ['included']);
  await within(own.subscription.unsubscribe(), 'UNSUBSCRIBED');
}

async function unsubscribe(check, publisher, subscriber) {
  const gone = await subscribe(subscriber, 'com.kreisel.js.gone');
  const stays = await subscribe(subscriber, 'com.kreisel.js.stays');
  await within(gone.subscription.unsubscribe(), 'UNSUBSCRIBED');
  check.passed('UNSUBSCRIBE');
  await publish(publisher, 'com.kreisel.js.gone', ['after unsubscribe']);
  await publish(publisher, 'com.kreisel.js.stays', ['marker']);
  await stays.collector.wait(1, 'the marker EVENT');
  check.same('no EVENT after UNSUBSCRIBE', gone.collector.events.length, 0);
}

async function patterns(check, publisher, subscriber) {
  const prefix = await subscribe(subscriber, 'com.kreisel.js.prefix', { match: 'prefix' });
  const wildcard = await subscribe(subscriber, 'com.kreisel.js..end', { match: 'wildcard' });
  check.true('prefix and wildcard subscriptions are distinct', prefix.subscription.id !== wildcard.subscription.id);

  await publish(publisher, 'com.kreisel.js.prefix.a.b', ['prefixed ü'], { deep: { x: [1] } });
  let event = await prefix.collector.wait(1, 'the prefix EVENT');
  check.same('prefix EVENT details.topic', event.details.topic, 'com.kreisel.js.prefix.a.b');
  check.same('prefix EVENT payload', [event.args, event.kwargs], [['prefixed ü'], { deep: { x: [1] } }]);

  await publish(publisher, 'com.kreisel.js.not.matching.end', ['nope']); // four components: no wildcard match
  await publish(publisher, 'com.kreisel.js.middle.end', ['wild']);
  event = await wildcard.collector.wait(1, 'the wildcard EVENT');
  check.same('wildcard EVENT details.topic', event.details.topic, 'com.kreisel.js.middle.end');
  check.same('wildcard EVENT payload (the non-matching topic got nothing)', event.args, ['wild']);

  // One topic matching both patterns: an EVENT per subscription.
  await publish(publisher, 'com.kreisel.js.prefix.end', ['both']);
  const viaPrefix = await prefix.collector.wait(2, 'the prefix EVENT for a topic matching both');
  const viaWildcard = await wildcard.collector.wait(2, 'the wildcard EVENT for a topic matching both');
  check.same('a topic matching both patterns reaches both subscriptions', [viaPrefix.args, viaWildcard.args], [['both'], ['both']]);
  check.same('both carry the concrete topic', [viaPrefix.details.topic, viaWildcard.details.topic], ['com.kreisel.js.prefix.end', 'com.kreisel.js.prefix.end']);
}

run(`pubsub ${url} ${serializer}`, async (check) => {
  const publisher = await connect(url, serializer);
  const subscriber = await connect(url, serializer);
  checkWelcome(check, 'publisher', publisher, serializer);
  checkWelcome(check, 'subscriber', subscriber, serializer);
  check.true('publisher and subscriber have different session IDs', publisher.session.id !== subscriber.session.id);

  const { topic, collector } = await exact(check, publisher, subscriber);
  await exclusion(check, publisher, subscriber, topic, collector);
  await unsubscribe(check, publisher, subscriber);
  await patterns(check, publisher, subscriber);
  await close(publisher, subscriber);
  check.passed('GOODBYE and transport close');
});
