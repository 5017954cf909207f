#![no_main]
//! cargo-fuzz target `pickle3`: see zeod::fuzzing::targets.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    zeod::fuzzing::run("pickle3", data);
});
