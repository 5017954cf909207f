#![no_main]
//! cargo-fuzz target `zconfig`: see zeod::fuzzing::targets.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    zeod::fuzzing::run("zconfig", data);
});
