#![no_main]
//! cargo-fuzz target `pickle1`: see zeod::fuzzing::targets.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    zeod::fuzzing::run("pickle1", data);
});
