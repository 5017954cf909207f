//! Fuzz targets for everything zeod parses from outside: frames, the two
//! pickle dialects and msgpack of the wire, data-record pickles, the
//! `zeo.conf` parser and schema, `Data.fs` and its `.index`. Each target is
//! a plain `fn(&[u8])` that must return for any input, never panic, hang
//! or allocate without bound; errors are the expected outcome.
//!
//! The targets are driven on stable Rust by `zeod-fuzz` (`src/bin`): a
//! seeded mutation loop over real inputs (the spec's wire captures and the
//! Python-written fixtures) with a time budget, execution counts, and every
//! panicking input saved as a file that `tests/fuzz_regressions.rs` replays.
//! A `fuzz/` directory of cargo-fuzz targets can call the same functions:
//! `fuzz_target!(|data: &[u8]| zeod::fuzzing::run("pickle3", data));`.
//!
//! - [`targets`]: the harness functions, one per input format;
//! - [`seeds`]: starting inputs from captures, fixtures and built-ins;
//! - [`mutate`]: a small deterministic PRNG and byte-level mutations;
//! - [`runner`]: the loop, panic capture, statistics.

pub mod mutate;
pub mod runner;
pub mod seeds;
pub mod targets;

pub use runner::{run_all, Budget, Finding, TargetStats};
pub use targets::{run, Target, TARGETS};
