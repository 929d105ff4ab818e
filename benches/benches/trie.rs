//! `UriTrie` benchmarks: matching by number of entries (10 .. 1M), exact hit and miss, prefix and wildcard
//! patterns mixed in, URI depth, and subscribe/unsubscribe churn.
//!
//! Every trie is built once per size, outside the timed loop; each iteration matches the next URI of a fixed,
//! scattered list of 4096 URIs, so large tries are measured with realistic cache misses rather than one hot path.
//! `cargo test` (no `--bench`) builds only the small sizes.
//!
//! Run: `cargo bench -p kreisel-benches --bench trie`.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kreisel_benches::{criterion as config, is_bench_mode};
use kreisel_engine::uri::{MatchPolicy, UriTrie};

/// Number of URIs each benchmark cycles through (a power of two).
const LOOKUPS: usize = 4096;

fn sizes() -> Vec<usize> {
    if is_bench_mode() {
        vec![10, 1_000, 100_000, 1_000_000]
    } else {
        vec![10, 1_000]
    }
}

fn sensor(i: usize) -> String {
    format!("com.app.sensor.{i}.temp")
}

/// `LOOKUPS` indexes in `0..n`, scattered over the whole range (multiplicative hashing).
fn scattered(n: usize) -> impl Iterator<Item = usize> {
    (0..LOOKUPS).map(move |k| (k as u64).wrapping_mul(2_654_435_761) as usize % n)
}

/// Which policy entry `i` of a mixed trie has: every tenth is a pattern, the rest are exact.
fn is_pattern(i: usize) -> bool {
    i.is_multiple_of(10)
}

/// Matches the URIs of `uris` one per iteration and sums what matched (so nothing is optimized away).
fn bench_matches(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: String,
    trie: &UriTrie<u32>,
    uris: &[String],
    expect_match: bool,
) {
    let matched = uris
        .iter()
        .filter(|uri| count_matches(trie, uri) > 0)
        .count();
    assert_eq!(matched > 0, expect_match, "{id:?}: fixture sanity");
    let mut k = 0usize;
    c.bench_function(&id, |b| {
        b.iter(|| {
            let uri = &uris[k % LOOKUPS];
            k = k.wrapping_add(1);
            count_matches(trie, black_box(uri))
        })
    });
}

fn count_matches(trie: &UriTrie<u32>, uri: &str) -> u32 {
    let mut sum = 0;
    trie.for_each_match(uri, |_, value| sum += value + 1);
    sum
}

fn by_size(c: &mut Criterion) {
    let mut group = c.benchmark_group("trie/match");
    for n in sizes() {
        let hits: Vec<String> = scattered(n).map(sensor).collect();
        {
            let mut exact = UriTrie::new();
            for i in 0..n {
                exact.insert(&sensor(i), MatchPolicy::Exact, i as u32);
            }
            let misses: Vec<String> = scattered(n)
                .map(|i| format!("com.app.sensor.{i}.humidity"))
                .collect();
            bench_matches(
                &mut group,
                format!("{}/{n}", "exact_hit"),
                &exact,
                &hits,
                true,
            );
            bench_matches(
                &mut group,
                format!("{}/{n}", "exact_miss"),
                &exact,
                &misses,
                false,
            );
        }
        {
            // 10% prefix patterns `com.app.sensor.<i>` (string prefixes, per the spec), 90% exact.
            let mut mixed = UriTrie::new();
            for i in 0..n {
                match is_pattern(i) {
                    true => mixed.insert(
                        &format!("com.app.sensor.{i}"),
                        MatchPolicy::Prefix,
                        i as u32,
                    ),
                    false => mixed.insert(&sensor(i), MatchPolicy::Exact, i as u32),
                };
            }
            bench_matches(
                &mut group,
                format!("{}/{n}", "prefix10_hit"),
                &mixed,
                &hits,
                true,
            );
        }
        {
            // 10% wildcard patterns `com.app..<i>.temp`, 90% exact.
            let mut mixed = UriTrie::new();
            for i in 0..n {
                match is_pattern(i) {
                    true => mixed.insert(
                        &format!("com.app..{i}.temp"),
                        MatchPolicy::Wildcard,
                        i as u32,
                    ),
                    false => mixed.insert(&sensor(i), MatchPolicy::Exact, i as u32),
                };
            }
            let misses: Vec<String> = scattered(n)
                .map(|i| format!("com.app.sensor.{i}.humidity"))
                .collect();
            bench_matches(
                &mut group,
                format!("{}/{n}", "wildcard10_hit"),
                &mixed,
                &hits,
                true,
            );
            bench_matches(
                &mut group,
                format!("{}/{n}", "wildcard10_miss"),
                &mixed,
                &misses,
                false,
            );
        }
    }
    group.finish();
}

/// A URI of `depth` components ending in sensor `i`: `com.s<i>.temp` (3), `com.l1.l2.l3.l4.l5.s<i>.temp` (8).
fn deep(depth: usize, i: usize) -> String {
    let mut uri = String::from("com");
    for level in 1..depth - 2 {
        uri.push_str(&format!(".l{level}"));
    }
    uri.push_str(&format!(".s{i}.temp"));
    uri
}

/// Depth 3 against depth 8, 1000 entries of one policy each: exact (hash of the whole URI), prefix (the pattern
/// is the whole URI: the walk visits every component) and wildcard (last component empty).
fn by_depth(c: &mut Criterion) {
    const N: usize = 1000;
    let mut group = c.benchmark_group("trie/depth");
    for depth in [3, 8] {
        let uris: Vec<String> = scattered(N).map(|i| deep(depth, i)).collect();
        for policy in [
            MatchPolicy::Exact,
            MatchPolicy::Prefix,
            MatchPolicy::Wildcard,
        ] {
            let mut trie = UriTrie::new();
            for i in 0..N {
                let uri = deep(depth, i);
                let pattern = match policy {
                    MatchPolicy::Wildcard => uri.trim_end_matches("temp").to_owned(),
                    _ => uri,
                };
                trie.insert(&pattern, policy, i as u32);
            }
            let id = format!("{}/{depth}", policy.name());
            bench_matches(&mut group, id, &trie, &uris, true);
        }
    }
    group.finish();
}

/// The worst case a peer can make of one match against the typical case, within the default URI bounds (1024
/// bytes, 64 components): a typical 4-component topic; one 1020-byte component under prefix patterns that share
/// its first bytes (the walk compares each byte once, where a lookup per string prefix would hash 1020 prefixes);
/// and a 64-component URI against wildcard patterns that all match it plus dead ends that diverge only at the last
/// component (the walk visits each tree node once, iteratively). Each trie also holds 1000 unrelated entries.
fn worst_case(c: &mut Criterion) {
    let mut group = c.benchmark_group("trie/worst_case");
    let mut trie = UriTrie::new();
    for i in 0..1000u32 {
        trie.insert(&sensor(i as usize), MatchPolicy::Exact, i);
    }
    let long = format!("com.{}", "a".repeat(1020));
    let deep = vec!["a"; 64].join(".");
    let patterns = [
        ("com.app.", MatchPolicy::Prefix),
        ("com.app..temp", MatchPolicy::Wildcard),
        ("com.", MatchPolicy::Prefix),
        ("com.aaaaaaaa", MatchPolicy::Prefix),
        (&long[..512], MatchPolicy::Prefix),
        (&deep, MatchPolicy::Wildcard),
    ];
    let mut value = 1000u32;
    for (pattern, policy) in patterns {
        trie.insert(pattern, policy, value);
        value += 1;
    }
    // Wildcard patterns of 64 components with every other component a wildcard, matching `deep`, and dead ends
    // that share 63 components with it and differ in the last.
    for shift in 0..2 {
        let pattern: Vec<&str> = (0..64)
            .map(|i| if (i + shift) % 2 == 0 { "" } else { "a" })
            .collect();
        trie.insert(&pattern.join("."), MatchPolicy::Wildcard, value);
        value += 1;
    }
    for last in 0..32 {
        let mut pattern = vec!["a"; 63].join(".");
        pattern.push_str(&format!(".b{last}"));
        trie.insert(&pattern, MatchPolicy::Wildcard, value);
        value += 1;
    }
    for (id, uri, matches) in [
        ("typical", "com.app.sensor.temp".to_owned(), 3),
        ("long_component", long, 3),
        ("deep", deep, 3),
    ] {
        let mut found = 0;
        trie.for_each_match(&uri, |_, _| found += 1);
        assert_eq!(found, matches, "{id}: fixture sanity");
        group.bench_function(id, |b| b.iter(|| count_matches(&trie, black_box(&uri))));
    }
    group.finish();
}

/// Subscribe/unsubscribe churn: insert a new entry into a filled trie and remove it again, per policy.
fn churn(c: &mut Criterion) {
    let mut group = c.benchmark_group("trie/churn");
    let sizes = if is_bench_mode() {
        vec![1_000, 100_000]
    } else {
        vec![1_000]
    };
    for n in sizes {
        for policy in [
            MatchPolicy::Exact,
            MatchPolicy::Prefix,
            MatchPolicy::Wildcard,
        ] {
            let mut trie = UriTrie::new();
            for i in 0..n {
                trie.insert(&sensor(i), policy, i as u32);
            }
            let fresh: Vec<String> = (0..LOOKUPS)
                .map(|k| match policy {
                    MatchPolicy::Wildcard => format!("com.app..{k}.churn"),
                    _ => format!("com.app.churn.{k}.temp"),
                })
                .collect();
            let mut k = 0usize;
            group.bench_function(BenchmarkId::new(policy.name(), n), |b| {
                b.iter(|| {
                    let uri = &fresh[k % LOOKUPS];
                    k = k.wrapping_add(1);
                    trie.insert(black_box(uri), policy, 7);
                    trie.remove(black_box(uri), policy)
                })
            });
            assert_eq!(trie.len(), n, "churn leaves the trie as it was");
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = by_size, by_depth, worst_case, churn
}
criterion_main!(benches);
