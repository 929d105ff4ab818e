//! The engine's hot paths, run a fixed number of times inside one `#[inline(never)]` function each, for
//! instruction counts that do not depend on the machine's load (criterion's wall-clock numbers on a shared 2-core
//! machine scatter by ±30%):
//!
//! ```sh
//! cargo build --release -p kreisel-benches --example instructions
//! valgrind --tool=callgrind --callgrind-out-file=cg.out --toggle-collect='instructions::measured' \
//!     target/release/examples/instructions rpc 100000
//! callgrind_annotate cg.out | head   # PROGRAM TOTALS / 100000 = instructions per round trip
//! ```
//!
//! Scenarios: `publish` (the small PUBLISH with `{}` options to one subscriber), `publish_ack` (the same with
//! `{"acknowledge": true}`), `rpc` (CALL → INVOCATION → YIELD → RESULT, engine only), and the payload
//! transcoding a publication needs once per other serializer among its subscribers: `transcode_<from>_<to>`
//! with `<from>`, `<to>` among `json`, `msgpack`, `cbor` (the `args` of the ~1 KiB PUBLISH of sensor readings).
//! Setup (joining sessions, subscribing, registering, encoding the fixture) happens outside `measured`, so only
//! the steady state is counted.

use std::hint::black_box;

use kreisel_benches::engine::{
    decode, fanout_router, rpc_round_trip, rpc_router, CountingSink, CALL, PUBLISH_ACK,
};
use kreisel_benches::{encode_as, publish_args, publish_readings, PUBLISH_SMALL};
use kreisel_codec::{transcode, Serializer};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: instructions publish|publish_ack|rpc|transcode_<from>_<to> <iterations>";
    let (Some(scenario), Some(count)) = (args.get(1), args.get(2)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let Ok(count) = count.parse::<u64>() else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let mut sink = CountingSink::default();
    match scenario.as_str() {
        "publish" | "publish_ack" => {
            let text = if scenario == "publish" {
                PUBLISH_SMALL
            } else {
                PUBLISH_ACK
            };
            let msg = decode(text);
            let (mut router, publisher) = fanout_router(1, false);
            measured(count, || {
                router.handle_message(publisher, black_box(&msg), 0, &mut sink)
            });
        }
        "rpc" => {
            let (mut router, callee, caller) = rpc_router(Serializer::Json, &mut sink);
            let call = decode(CALL);
            measured(count, || {
                rpc_round_trip(&mut router, &mut sink, (caller, callee), black_box(&call))
            });
        }
        other => {
            let serializer = |name| Serializer::ALL.into_iter().find(|s| s.name() == name);
            let pair = other
                .strip_prefix("transcode_")
                .and_then(|pair| pair.split_once('_'));
            let Some((Some(from), Some(to))) =
                pair.map(|(from, to)| (serializer(from), serializer(to)))
            else {
                eprintln!("{usage}");
                std::process::exit(2);
            };
            let frame = encode_as(from, &publish_readings(1024));
            let msg = from.decode(&frame).expect("valid frame");
            let args = publish_args(&msg);
            let mut out = Vec::with_capacity(4096);
            measured(count, || {
                out.clear();
                transcode(black_box(args), to, &mut out);
            });
            sink.delivered = out.len() as u64;
        }
    }
    println!(
        "{scenario}: {count} iterations, result {} (messages delivered, or octets of the last transcoding)",
        sink.delivered
    );
}

/// The measured loop: callgrind's `--toggle-collect` counts only what runs in here.
#[inline(never)]
fn measured(count: u64, mut step: impl FnMut()) {
    for _ in 0..count {
        step();
    }
}
