//! Reliability over time against the `kreisel` binary itself, in a process of its own so that its memory and
//! descriptors can be read from `/proc`: a 30-second soak (pub/sub with patterns, RPC with progressive results and
//! cancels, churn with abrupt and mid-frame disconnects, slow subscribers, reconnect storms) and the slow-consumer
//! scenario under both policies. The assertions are counts and bounds derived from the configuration; timings
//! live in `docs/PERFORMANCE.md`.
//!
//! The binary is the one cargo built next to this test (`target/<profile>/kreisel`). `cargo test --workspace`
//! builds it, since kreisel-io has integration tests of its own; `tests/run.sh` builds it explicitly first. A
//! binary older than the router's sources fails the test rather than testing old code.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use kreisel_loadtest::cli::{Cli, Command as LoadCommand};
use kreisel_loadtest::summary::{RunResult, Status};
use kreisel_loadtest::timeline::MetricsUrl;
use kreisel_tests::TempDir;

/// The router's limits in these tests: small enough that slow subscribers reach them within seconds, large enough
/// that a fast subscriber has a second or more of traffic in hand when this shared machine holds the test up.
const MESSAGE_MAX: u64 = 65_536;
/// `outbox_max` of the soak (its subscribers that stay get at most 110 KB/s) and of the slow runs (2 MB/s).
const SOAK_OUTBOX_MAX: u64 = 512 * 1024;
const SLOW_OUTBOX_MAX: u64 = 1024 * 1024;

/// One router and one load at a time: these tests measure the router, and two of them at once on a small machine
/// would measure each other.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `target/<profile>/kreisel`, checked to be newer than every source file of the router.
fn kreisel_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test> -> target/<profile>/kreisel
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("kreisel"))
        .expect("target directory");
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: build the router first (`cargo build -p kreisel-io`; tests/run.sh does)",
                bin.display()
            )
        });
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for krate in ["codec", "engine", "io"] {
        let newest = newest_file(&root.join(krate).join("src"));
        assert!(
            newest <= built,
            "{} is older than the sources of {krate}/: rebuild it (`cargo build -p kreisel-io`; tests/run.sh does)",
            bin.display()
        );
    }
    bin
}

fn newest_file(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).expect("source directory").flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_file(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH)
        };
        newest = newest.max(time);
    }
    newest
}

/// The router in a process of its own, on ephemeral loopback ports; killed on drop.
struct Router {
    child: Child,
    outbox_max: u64,
    /// RawSocket, WebSocket and metrics listeners, in that order.
    rs: SocketAddr,
    ws: SocketAddr,
    metrics: SocketAddr,
    _dir: TempDir,
}

impl Router {
    fn start(outbox_max: u64, limits: &str) -> Router {
        let dir = TempDir::new("reliability");
        // The binary's defaults (a shard per core), unless the suite runs with `KREISEL_TEST_SHARDS`; a one-node
        // cluster with `KREISEL_TEST_NATS`.
        let mut router = String::new();
        if let Some(shards) = kreisel_tests::test_shards_set() {
            router += &format!("\n[router]\nshards = {shards}\n");
        }
        if let Some(cluster) = kreisel_tests::test_cluster_toml() {
            router += &format!("\n[cluster]\n{cluster}");
        }
        let config = dir.0.join("kreisel.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[[realms]]
name = "realm1"

[[listeners]]
listen = "127.0.0.1:0"
transports = ["rawsocket"]

[[listeners]]
listen = "127.0.0.1:0"
transports = ["websocket"]

[[listeners]]
listen = "127.0.0.1:0"
transports = ["websocket"]
metrics = "/metrics"

[limits]
message_max = {MESSAGE_MAX}
outbox_max = {outbox_max}
{limits}

[log]
level = "info"
{router}"#
            ),
        )
        .expect("write config");
        let mut child = Command::new(kreisel_binary())
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kreisel");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        // Drained for the whole run, so the router never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut addresses: Vec<SocketAddr> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while addresses.len() < 3 && Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                if line.contains("listening") {
                    if let Some(address) = line.split("address=").nth(1) {
                        addresses.push(address.trim().parse().expect("a TCP address"));
                    }
                }
            }
        }
        if addresses.len() < 3 {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the router did not log its three listeners: {addresses:?}");
        }
        Router {
            outbox_max,
            rs: addresses[0],
            ws: addresses[1],
            metrics: addresses[2],
            child,
            _dir: dir,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics)
    }

    fn metric(&self, name: &str) -> f64 {
        let url = MetricsUrl::parse(&self.metrics_url()).expect("metrics URL");
        let page = url.scrape(Duration::from_secs(5)).expect("metrics page");
        *page
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from the metrics page"))
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(args: &str) -> Cli {
    let argv = std::iter::once("kreisel-loadtest").chain(args.split_whitespace());
    Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args}: {e}"))
}

/// The most bytes the kernel can hold for one loopback connection that is not read: the sender's largest send
/// buffer plus the receiver's default receive buffer (it grows only while the application reads).
fn kernel_buffer_bound() -> u64 {
    (kreisel_tests::tcp_mem_setting("/proc/sys/net/ipv4/tcp_wmem", 2)
        + kreisel_tests::tcp_mem_setting("/proc/sys/net/ipv4/tcp_rmem", 1)) as u64
}

#[test]
fn soak_30_seconds_without_loss_or_leaks() {
    let _serial = one_at_a_time();
    let router = Router::start(SOAK_OUTBOX_MAX, "");
    // One never-reading subscriber stalls for a quarter of the run, one reads 16 KiB/s of about 330 KB/s.
    let args = format!(
        "soak -u rs://{} -s msgpack -d 30s --size 1024 --rate 300 --storm-sessions 50 --slow-subscribers 2 \
         --slow-read-rate 16384 --router-pid {} --metrics-url {} --timeout 20 -q",
        router.rs,
        router.pid(),
        router.metrics_url()
    );
    let invocation = cli(&args)
        .command
        .invocation()
        .expect("a scenario")
        .expect("valid parameters");
    let r: RunResult = kreisel_loadtest::run::execute(invocation.plan, &invocation.options);
    // What was measured (shown with --nocapture).
    eprintln!("{}", r.table());
    let soak = r.soak.as_ref().expect("soak outcome");
    let context = format!(
        "{:?}\nerrors by kind: {:#?}\n{}",
        r.errors,
        r.error_kinds,
        r.table()
    );

    // Nothing lost, duplicated, reordered or corrupt among the sessions that stayed (nor out of order for the
    // others), and no error the workload did not cause itself.
    assert_eq!(r.status, Status::Ok, "{context}");
    assert_eq!(
        (r.lost, r.duplicated, r.reordered, r.corrupt),
        (0, 0, 0, 0),
        "{context}"
    );
    assert!(r.error_kinds.iter().all(|e| e.own), "{context}");
    assert_eq!(soak.dead_sessions, 0, "{context}");

    // Every part of the workload happened.
    let c = &soak.counts;
    assert!(r.received > 0 && soak.calls > 0, "{context}");
    assert_eq!(soak.answers, soak.calls, "every call got one final answer");
    assert!(c.calls_completed > 0, "{context}");
    assert_eq!(
        c.progress_results,
        3 * c.calls_completed,
        "3 progressive results per completed call"
    );
    assert!(
        c.canceled_skip > 0 && c.canceled_kill > 0 && c.canceled_killnowait > 0,
        "{context}"
    );
    assert_eq!(
        c.calls_completed
            + c.canceled_skip
            + c.canceled_kill
            + c.canceled_killnowait
            + c.cancel_too_late,
        soak.calls
    );
    assert!(
        c.churn_goodbye > 0 && c.churn_abrupt > 0 && c.churn_mid_frame > 0,
        "{context}"
    );
    // Storms every quarter of the run: at 7.5, 15 and 22.5 s; every storm session joined again each time.
    assert_eq!(soak.storms, 3, "{context}");
    assert_eq!(c.storm_rejoined, 3 * 50, "{context}");
    assert!(soak.storm_rejoin_s.iter().all(Option::is_some), "{context}");

    // The rate-limited slow subscriber falls behind by at least 300 x 1 KiB - 16 KiB per second; the router holds
    // at most outbox_max for it, the kernel at most kernel_buffer_bound(): it must have been disconnected in
    // time. Its disconnection is the workload's own doing.
    let falls_behind = 300 * 1024 - 16_384;
    let seconds_to_cut = (SOAK_OUTBOX_MAX + kernel_buffer_bound()).div_ceil(falls_behind);
    assert!(seconds_to_cut < 25, "the test's own arithmetic");
    assert!(c.slow_disconnected >= 1, "{context}");
    assert!(
        r.error_kinds
            .iter()
            .any(|e| e.own && e.kind.contains("slow consumer")),
        "{context}"
    );
    assert!(r
        .metrics_delta
        .get("kreisel_slow_consumers_total")
        .is_some_and(|n| *n >= 1.0));

    // No descriptor leak: once every session left, the router holds exactly the descriptors it held before.
    assert!(soak.fds_before.is_some(), "{context}");
    assert_eq!(soak.fds_after, soak.fds_before, "{context}");
    // No session, subscription, registration or pending call is left behind.
    for gauge in [
        "kreisel_sessions",
        "kreisel_calls_pending",
        "kreisel_realm_subscriptions{realm=\"realm1\"}",
        "kreisel_realm_registrations{realm=\"realm1\"}",
    ] {
        assert_eq!(router.metric(gauge), 0.0, "{gauge}");
    }
    // No memory leak: after the warm-up, the router's RSS stays within what its limits let it hold beyond the
    // steady state: an outbox of outbox_max for each slow subscriber plus one, twice over for the queue entries
    // and the allocator's rounding.
    let steady: Vec<u64> = r
        .samples
        .iter()
        .filter(|s| s.t_s >= soak.warmup_s && s.t_s <= soak.duration_s)
        .filter_map(|s| s.rss_kib)
        .collect();
    let first = *steady.first().expect("samples after the warm-up");
    let max = *steady.iter().max().expect("samples");
    let bound_kib = (2 + 1) * SOAK_OUTBOX_MAX * 2 / 1024;
    assert!(
        max <= first + bound_kib,
        "RSS grew from {first} KiB to {max} KiB after the warm-up, more than {bound_kib} KiB\n{context}"
    );
}

/// Runs `slow` against `router` at `url` and returns the runs (K = 0, then K = 3). 10 000 events at 1 000/s: the
/// router under test is a debug build on a machine other tests share, and must keep up with its fast subscribers
/// without a producer stall (a subscriber that never reads stalls its publisher only at first).
fn slow_runs(router: &Router, url: &str, serializer: &str) -> kreisel_loadtest::slow::SlowReport {
    let args = format!(
        "slow -u {url} -s {serializer} --subscribers 4 --slow 0,3 --rate 1000 --size 1024 --duration 10 \
         --router-pid {} --metrics-url {} --outbox-max {} --pause 0.5 --timeout 20 -q",
        router.pid(),
        router.metrics_url(),
        router.outbox_max
    );
    let LoadCommand::Slow(a) = &cli(&args).command else {
        panic!("slow")
    };
    let report = kreisel_loadtest::slow::run(a).expect("valid parameters");
    // What was measured (shown with --nocapture).
    eprintln!("{}", report.table());
    report
}

/// Every slow subscriber is sent 10 000 events of more than 1 KiB, more than the kernel and the router together
/// may hold for it.
fn assert_more_than_buffers() {
    assert!(10_000 * 1024 > SLOW_OUTBOX_MAX + kernel_buffer_bound());
}

#[test]
fn slow_consumers_are_cut_off_and_fast_ones_get_everything() {
    let _serial = one_at_a_time();
    assert_more_than_buffers();
    let router = Router::start(SLOW_OUTBOX_MAX, "slow_consumer = \"disconnect\"");
    let report = slow_runs(&router, &format!("rs://{}", router.rs), "msgpack");
    let table = report.table();
    assert_eq!(report.runs.len(), 2, "{table}");
    for (run, k) in report.runs.iter().zip([0, 3]) {
        assert_eq!(run.status, Status::Ok, "K = {k}: {:?}\n{table}", run.errors);
        // The fast subscribers are not starved: each got every event, once, in order.
        assert_eq!(run.received, 4 * 10_000, "{table}");
        assert_eq!(
            (run.lost, run.duplicated, run.reordered, run.corrupt),
            (0, 0, 0, 0)
        );
    }
    let row = &report.rows[1];
    assert_eq!((row.disconnected, row.survived), (3, 0), "{table}");
    let slow = report.runs[1].slow.as_ref().expect("slow outcome");
    assert!(
        slow.fates
            .iter()
            .all(|f| f.received < 10_000 && f.regressed == 0),
        "{table}"
    );
    assert_eq!(
        report.runs[1]
            .metrics_delta
            .get("kreisel_slow_consumers_total"),
        Some(&3.0),
        "{table}"
    );
    // Memory: at most the baseline run's peak plus 3 x outbox_max per slow subscriber (the queued bytes, the
    // allocator's rounding, the queue entries; see kreisel_loadtest::slow::BUDGET_FACTOR).
    assert_eq!(row.within_budget, Some(true), "{table}");
}

#[test]
fn dropping_events_keeps_slow_consumers_and_fast_ones_get_everything() {
    let _serial = one_at_a_time();
    assert_more_than_buffers();
    let router = Router::start(SLOW_OUTBOX_MAX, "slow_consumer = \"drop\"");
    let report = slow_runs(&router, &format!("ws://{}/ws", router.ws), "json");
    let table = report.table();
    assert_eq!(report.runs.len(), 2, "{table}");
    for run in &report.runs {
        assert_eq!(run.status, Status::Ok, "{:?}\n{table}", run.errors);
        assert_eq!(run.received, 4 * 10_000, "{table}");
        assert_eq!(
            (run.lost, run.duplicated, run.reordered, run.corrupt),
            (0, 0, 0, 0)
        );
    }
    let row = &report.rows[1];
    assert_eq!((row.disconnected, row.survived), (0, 3), "{table}");
    // They missed what the router dropped for them, and got the rest in order.
    let slow = report.runs[1].slow.as_ref().expect("slow outcome");
    assert!(
        slow.fates
            .iter()
            .all(|f| f.lost > 0 && f.received + f.lost == 10_000 && f.regressed == 0),
        "{table}"
    );
    let dropped = report.runs[1]
        .metrics_delta
        .get("kreisel_events_dropped_total")
        .copied()
        .unwrap_or(0.0);
    assert_eq!(dropped as u64, slow.not_received, "{table}");
    assert_eq!(row.within_budget, Some(true), "{table}");
}

/// A router past `--router-rss-max` stops the run at once, with its own status (exit 5), whatever phase it is in.
#[test]
fn a_router_past_the_memory_ceiling_stops_the_run() {
    let _serial = one_at_a_time();
    let router = Router::start(SLOW_OUTBOX_MAX, "");
    let rss_kib = kreisel_loadtest::sys::rss_kib(router.pid()).expect("the router's RSS");
    // A ceiling of 1 MiB: below what any router process holds.
    assert!(rss_kib > 1024);
    let args = format!(
        "slow -u rs://{} -s msgpack --subscribers 2 --slow 0,2 --rate 100 --duration 5 --router-pid {} \
         --router-rss-max 1 --timeout 20 -q",
        router.rs,
        router.pid()
    );
    let LoadCommand::Slow(a) = &cli(&args).command else {
        panic!("slow")
    };
    let report = kreisel_loadtest::slow::run(a).expect("valid parameters");
    assert_eq!(
        report.runs.len(),
        1,
        "the runs after a ceiling do not start"
    );
    assert_eq!(report.runs[0].status, Status::Ceiling);
    assert_eq!(report.exit_code(), 5);
    assert!(
        report.runs[0].errors[0].contains("past the ceiling of 1 MiB"),
        "{:?}",
        report.runs[0].errors
    );
}
