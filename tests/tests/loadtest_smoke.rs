//! A short run of every load-test scenario against kreisel, over each transport and serializer: the generator and
//! the router agree on every event and result (no loss, duplicate or reordering). Counts are small and nothing is
//! timed here; throughput lives in `docs/PERFORMANCE.md`.

use clap::Parser;
use kreisel_loadtest::cli::Cli;
use kreisel_loadtest::summary::Status;
use kreisel_tests::TestRouter;

fn run(args: &str) -> kreisel_loadtest::summary::RunResult {
    let argv = std::iter::once("kreisel-loadtest").chain(args.split_whitespace());
    let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args}: {e}"));
    let invocation = cli
        .command
        .invocation()
        .expect("a scenario")
        .expect("valid parameters");
    let mut options = invocation.options;
    options.quiet = true;
    kreisel_loadtest::run::execute(invocation.plan, &options)
}

#[test]
fn every_scenario_runs_clean_against_kreisel() {
    let router = TestRouter::start("");
    let urls = [
        router.ws_url(),
        router.rs_url(),
        format!("unix://{}", router.unix.display()),
    ];
    let scenarios = [
        (
            "fanout --subscribers 4 --publishers 2 --events 200 --size 64",
            4 * 2 * 200,
        ),
        ("fanout --subscribers 3 --events 100 --rate 2000", 3 * 100),
        ("fanin --publishers 5 --events 100", 5 * 100),
        ("fanin --publishers 5 --events 100 --exact", 5 * 100),
        (
            "rpc --callers 2 --callees 2 --calls 200 --window 4",
            2 * 200,
        ),
        ("connect --sessions 20", 20),
        ("churn --sessions 2 --cycles 5 --duration 5", 0),
    ];
    for url in &urls {
        for serializer in ["json", "msgpack", "cbor"] {
            for (scenario, expected) in scenarios {
                let args = format!("{scenario} --url {url} --serializer {serializer} --timeout 10");
                let result = run(&args);
                assert_eq!(result.status, Status::Ok, "{args}: {:?}", result.errors);
                assert_eq!(
                    result.lost + result.duplicated + result.reordered + result.corrupt,
                    0,
                    "{args}"
                );
                if expected > 0 {
                    assert_eq!(result.received, expected, "{args}: deliveries");
                } else {
                    assert!(result.received > 0, "{args}: some cycles");
                }
            }
        }
    }
}

/// The generator's MQTT mode against kreisel's MQTT listener: QoS 0 and 1, closed and open loop, fan-out, fan-in
/// (prefix and exact filters) and connect.
#[test]
fn the_mqtt_mode_runs_clean_against_kreisels_mqtt_listener() {
    let router = TestRouter::start(
        "[[listeners]]\nlisten = \"127.0.0.1:0\"\ntransports = [\"mqtt\"]\nrealm = \"realm1\"\n",
    );
    let url = format!("mqtt://{}", router.tcp_address(3));
    for (scenario, expected) in [
        (
            "fanout --subscribers 4 --publishers 2 --events 200",
            4 * 2 * 200,
        ),
        (
            "fanout --subscribers 3 --events 200 --qos 1 --window 16",
            3 * 200,
        ),
        (
            "fanout --subscribers 3 --events 100 --rate 2000 --qos 1",
            3 * 100,
        ),
        ("fanin --publishers 20 --events 50 --qos 1", 20 * 50),
        ("fanin --publishers 5 --events 100 --exact", 5 * 100),
        ("connect --sessions 20", 20),
    ] {
        let args = format!("{scenario} --url {url} --timeout 10");
        let result = run(&args);
        assert_eq!(result.status, Status::Ok, "{args}: {:?}", result.errors);
        assert_eq!(result.transport, "mqtt");
        assert_eq!(
            result.lost + result.duplicated + result.reordered + result.corrupt,
            0,
            "{args}"
        );
        assert_eq!(result.received, expected, "{args}: deliveries");
    }
}
