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
//! `{"acknowledge": true}`), `rpc` (CALL → INVOCATION → YIELD → RESULT, engine only). Setup (joining sessions,
//! subscribing, registering) happens outside `measured`, so only the steady state is counted.

use std::hint::black_box;

use kreisel_benches::engine::{
    decode, fanout_router, rpc_round_trip, rpc_router, CountingSink, CALL, PUBLISH_ACK,
};
use kreisel_benches::PUBLISH_SMALL;
use kreisel_codec::Serializer;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: instructions publish|publish_ack|rpc <iterations>";
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
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
    println!(
        "{scenario}: {count} iterations, {} messages delivered",
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
