//! Fuzz target `mqtt`: see [`kreisel_fuzz::checks::mqtt`] for the input format and the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kreisel_fuzz::checks::mqtt(data));
