//! The MQTT packet layer allocates nothing: decoding borrows the input (properties, filters and user properties
//! are read lazily from it), and encoding writes into the caller's buffer only, without growing it once it has
//! room.
//!
//! A counting global allocator counts allocations made by this thread while `COUNTING` is set.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use kreisel_io::mqtt::{
    encode, encode_publish_header, Decoder, Packet, Properties, Property, Publish, QoS, Version,
    PACKET_SIZE_MAX,
};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the wrapper only bumps a thread-local
// counter (const-initialized thread locals with no destructor, so touching them never allocates or recurses).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn count() {
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCATIONS.with(|n| n.get())
}

fn recording(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mqtt-vectors")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The counter sees allocations at all (so the zeros below mean something).
#[test]
fn the_counter_counts() {
    assert!(allocations(|| drop(std::hint::black_box(vec![1u8; 10]))) >= 1);
}

/// Whole client sessions (CONNECT with will and properties, SUBSCRIBE, PUBLISH with properties, ...) decode, and
/// every property, filter and user property is read, without an allocation.
#[test]
fn decoding_and_reading_allocates_nothing() {
    for (name, version) in [
        ("paho-v311.bin", Version::V311),
        ("paho-v5.bin", Version::V5),
    ] {
        let stream = recording(name);
        let decoder = Decoder::server(version, PACKET_SIZE_MAX);
        let mut packets = 0;
        let mut items = 0;
        let n = allocations(|| {
            let mut pos = 0;
            while let Ok(Some((len, packet))) = decoder.decode(&stream[pos..]) {
                pos += len;
                packets += 1;
                items += match &packet {
                    Packet::Connect(c) => {
                        c.properties.iter().count()
                            + c.properties.user_properties().count()
                            + c.will.as_ref().map_or(0, |w| w.properties.iter().count())
                    }
                    Packet::Publish(p) => p.properties.iter().count() + p.payload.len(),
                    Packet::Subscribe(s) => s.filters.iter().count() + s.properties.iter().count(),
                    Packet::Unsubscribe(u) => u.filters.iter().count(),
                    _ => 0,
                };
            }
            assert_eq!(pos, stream.len());
        });
        assert_eq!(n, 0, "{name}: {n} allocations");
        assert_eq!(packets, 9, "{name}");
        assert!(items > 0);
    }
}

/// Encoding what the router sends into a buffer with room allocates nothing.
#[test]
fn encoding_allocates_nothing() {
    let props = [
        Property::SubscriptionIdentifier(42),
        Property::UserProperty("unit", "C"),
        Property::ContentType("application/json"),
    ];
    let payload = vec![7u8; 200];
    let mut out = Vec::with_capacity(4096);
    for version in [Version::V311, Version::V5] {
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "factory/line-3/sensor-0042/telemetry",
            packet_id: 17,
            properties: Properties::new(&props),
            payload: &payload,
        };
        let packet = Packet::Publish(publish.clone());
        let n = allocations(|| {
            for _ in 0..10 {
                out.clear();
                encode(&packet, version, &mut out).expect("encodes");
                out.clear();
                encode_publish_header(&publish, version, &mut out).expect("encodes");
            }
        });
        assert_eq!(n, 0, "{version:?}: {n} allocations");
        assert!(!out.is_empty());
    }
}
