//! # kreisel-fuzz
//!
//! The properties kreisel's fuzz targets check ([`checks`]), one function per target. The libFuzzer entry
//! points in `fuzz_targets/` are one line each; `tests/tests/fuzz_regressions.rs` replays committed inputs through
//! the same functions. See `docs/FUZZING.md`.
#![forbid(unsafe_code)]

pub mod checks;
