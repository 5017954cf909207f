#![no_main]
//! cargo-fuzz target `msgpack`: see zeod::fuzzing::targets.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    zeod::fuzzing::run("msgpack", data);
});
