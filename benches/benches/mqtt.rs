//! MQTT packet layer benchmarks (`kreisel_io::mqtt`): decoding a typical telemetry PUBLISH as a client sends it
//! (QoS 0 and 1, MQTT 3.1.1 and 5), and encoding one as the router sends it to a subscriber (whole, and the
//! header alone with the payload left where it is).
//!
//! Run: `cargo bench -p kreisel-benches --bench mqtt`.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kreisel_benches::criterion as config;
use kreisel_io::mqtt::{
    encode, encode_publish_header, Decoder, Packet, Properties, Property, Publish, QoS, Version,
    PACKET_SIZE_MAX,
};

/// A sensor reading as JSON, 96 octets.
const PAYLOAD: &[u8] = br#"{"device":"d-0042","ts":1765102030123,"temp":21.53,"hum":48.2,"bat":3.71,"rssi":-67,"seq":90211}"#;
const TOPIC: &str = "factory/line-3/sensor-0042/telemetry";
/// What an MQTT 5 telemetry client typically adds: content type, a message expiry and one user property.
const CLIENT_PROPS: &[Property<'static>] = &[
    Property::PayloadFormatIndicator(true),
    Property::MessageExpiryInterval(300),
    Property::ContentType("application/json"),
    Property::UserProperty("site", "plant-7"),
];
/// What the router adds for a subscriber: its subscription identifier.
const ROUTER_PROPS: &[Property<'static>] = &[Property::SubscriptionIdentifier(42)];

fn publish(qos: QoS, version: Version, props: &'static [Property<'static>]) -> Publish<'static> {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: TOPIC,
        packet_id: if qos == QoS::AtMostOnce { 0 } else { 17 },
        properties: match version {
            Version::V311 => Properties::EMPTY,
            Version::V5 => Properties::new(props),
        },
        payload: PAYLOAD,
    }
}

const CASES: [(&str, QoS, Version); 4] = [
    ("qos0_v311", QoS::AtMostOnce, Version::V311),
    ("qos1_v311", QoS::AtLeastOnce, Version::V311),
    ("qos0_v5", QoS::AtMostOnce, Version::V5),
    ("qos1_v5", QoS::AtLeastOnce, Version::V5),
];

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("mqtt/decode_publish");
    for (name, qos, version) in CASES {
        let mut frame = Vec::new();
        encode(
            &Packet::Publish(publish(qos, version, CLIENT_PROPS)),
            version,
            &mut frame,
        )
        .expect("encodes");
        let decoder = Decoder::server(version, PACKET_SIZE_MAX);
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &frame, |b, frame| {
            b.iter(|| match decoder.decode(black_box(frame)) {
                Ok(Some((n, Packet::Publish(p)))) => n + p.payload.len(),
                other => panic!("not a PUBLISH: {other:?}"),
            })
        });
        // Decoding and then reading every property, as a session layer would.
        group.bench_with_input(
            BenchmarkId::new("with_properties_read", name),
            &frame,
            |b, frame| {
                b.iter(|| match decoder.decode(black_box(frame)) {
                    Ok(Some((_, Packet::Publish(p)))) => {
                        p.properties.iter().count()
                            + usize::from(p.properties.topic_alias().is_some())
                    }
                    other => panic!("not a PUBLISH: {other:?}"),
                })
            },
        );
    }
    group.finish();
}

fn encode_publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("mqtt/encode_publish");
    let mut out = Vec::with_capacity(1024);
    for (name, qos, version) in CASES {
        let packet = Packet::Publish(publish(qos, version, ROUTER_PROPS));
        let Packet::Publish(ref p) = packet else {
            unreachable!()
        };
        group.bench_function(BenchmarkId::new("whole", name), |b| {
            b.iter(|| {
                out.clear();
                encode(black_box(&packet), version, &mut out).expect("encodes")
            })
        });
        group.bench_function(BenchmarkId::new("header_only", name), |b| {
            b.iter(|| {
                out.clear();
                encode_publish_header(black_box(p), version, &mut out).expect("encodes")
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = decode, encode_publish
}
criterion_main!(benches);
