//! WAMP-SCRAM (`kreisel_engine::scram`): what an attempt costs the router, next to what deriving a credential
//! costs (the KDF, which only clients and the offline helper run).
//!
//! * `scram/start`: HELLO to CHALLENGE (checks, combined nonce, the start of the AuthMessage).
//! * `scram/verify/{ok,wrong_proof,unknown_authid}`: AUTHENTICATE. The login is one that autobahn-python made
//!   (`engine/tests/data/scram_vectors.json`, first exchange): its real proof, the proof with one bit flipped,
//!   and the real proof against a decoy for an unknown authid. The three should cost the same.
//! * `scram/decoy`: a decoy credential for an unknown authid.
//! * `scram/derive/argon2id-13`: `Credential::derive` with autobahn's parameters (4096 passes, 512 KiB); in test
//!   mode (`cargo test --benches`) with 1 pass over 8 KiB instead.
//!
//! Run: `cargo bench -p kreisel-benches --bench scram`.
use std::hint::black_box;

use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use kreisel_benches::{criterion as config, is_bench_mode};
use kreisel_engine::scram::{self, Authenticate, ChannelBindings, Credential, Dialect, Hello, Kdf};
use serde_json::Value;

const VECTORS: &str = include_str!("../../engine/tests/data/scram_vectors.json");

fn field<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().expect("a string in the vector file")
}

fn benches(c: &mut Criterion) {
    let vectors: Value = serde_json::from_str(VECTORS).expect("the vector file is JSON");
    let case = &vectors["exchanges"][0];
    let cred = &case["credential"];
    let number = |key: &str| cred[key].as_u64().expect("a number") as u32;
    let credential = Credential::parse(
        field(cred, "kdf"),
        field(cred, "salt"),
        number("iterations"),
        Some(number("memory")),
        field(cred, "stored-key"),
        field(cred, "server-key"),
    )
    .expect("autobahn's credential parses");
    let server_nonce = kreisel_engine::auth::unhex(field(case, "server_nonce")).expect("hex");
    let hello = Hello {
        authid: field(case, "authid"),
        nonce: Some(field(&case["hello_authextra"], "nonce")),
        channel_binding: None,
    };
    let start = |credential: &Credential, known: bool| {
        scram::start(
            Dialect::Crossbar,
            &hello,
            credential,
            known,
            &server_nonce,
            &ChannelBindings::NONE,
        )
        .expect("the vector's HELLO is valid")
    };
    let signature = field(case, "signature");
    let mut wrong = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .expect("base64");
    wrong[0] ^= 1;
    let wrong = base64::engine::general_purpose::STANDARD.encode(wrong);
    let answer = |signature| Authenticate {
        signature,
        nonce: None,
        channel_binding: None,
        cbind_data: None,
    };
    let key = [42u8; 32];
    let shapes = [credential.shape()];
    let decoy = Credential::decoy(&key, "mallory", &shapes);

    let pending = start(&credential, true);
    assert!(pending.verify(&answer(signature)).is_ok());
    let unknown = start(&decoy, false);
    assert!(unknown.verify(&answer(signature)).is_err());

    let mut group = c.benchmark_group("scram");
    group.bench_function("start", |b| b.iter(|| start(black_box(&credential), true)));
    group.bench_function("verify/ok", |b| {
        b.iter(|| pending.verify(black_box(&answer(signature))))
    });
    group.bench_function("verify/wrong_proof", |b| {
        b.iter(|| pending.verify(black_box(&answer(&wrong))))
    });
    group.bench_function("verify/unknown_authid", |b| {
        b.iter(|| unknown.verify(black_box(&answer(signature))))
    });
    group.bench_function("decoy", |b| {
        b.iter(|| Credential::decoy(&key, black_box("mallory"), &shapes))
    });
    let (iterations, memory) = if is_bench_mode() {
        (scram::AUTOBAHN_ITERATIONS, scram::AUTOBAHN_MEMORY)
    } else {
        (1, scram::ARGON2_MEMORY_MIN)
    };
    group.sample_size(10);
    group.bench_function("derive/argon2id-13", |b| {
        b.iter(|| {
            Credential::derive(
                black_box("correct horse battery staple"),
                Kdf::Argon2id13Autobahn,
                &[7; 16],
                iterations,
                Some(memory),
            )
        })
    });
    group.finish();
}

criterion_group! {
    name = scram_benches;
    config = config();
    targets = benches
}
criterion_main!(scram_benches);
