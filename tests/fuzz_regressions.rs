//! Fuzzing in `cargo test`: every input saved under
//! `tests/fuzz_regressions/<target>/` (inputs that once made a target
//! panic, kept after the fix) runs through its target, and each target
//! runs a short seeded mutation burst over the real seeds. The long runs
//! are `zeod-fuzz` (tests/torture/run, docs/RELIABILITY.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use zeod::fuzzing::{self, seeds, Budget, TARGETS};

fn regressions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions")
}

#[test]
#[allow(clippy::unwrap_used)]
fn saved_inputs_do_not_panic() {
    let mut ran = 0;
    for target in TARGETS {
        let dir = regressions_dir().join(target.name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            // A panic fails the test with the file's name in the output.
            eprintln!("{}: {}", target.name, path.display());
            (target.run)(&data);
            ran += 1;
        }
    }
    assert!(
        ran > 0,
        "no saved inputs under {}",
        regressions_dir().display()
    );
}

#[test]
#[allow(clippy::unwrap_used)]
fn every_target_survives_a_short_mutation_burst() {
    let sources = seeds::Sources::discover(Path::new(env!("CARGO_MANIFEST_DIR")));
    let seeds = seeds::load(&sources);
    for target in TARGETS {
        assert!(
            !seeds[target.name].is_empty(),
            "target {} has no seeds",
            target.name
        );
    }
    let crash_dir = std::env::temp_dir().join(format!("zeod-fuzz-test-{}", std::process::id()));
    let budget = Budget {
        // Debug build, shared machine: a burst, not a campaign.
        total: Duration::from_secs(8),
        seed: 20261125,
        crash_dir: crash_dir.clone(),
    };
    let all: Vec<_> = TARGETS.iter().collect();
    let stats = fuzzing::run_all(&all, &seeds, &budget, |_| {});
    let _ = std::fs::remove_dir_all(&crash_dir);
    for s in &stats {
        eprintln!(
            "{}: {} seeds, {} executions, {} distinct, {} accepted",
            s.name, s.seeds, s.executions, s.distinct, s.accepted
        );
        assert!(
            s.findings.is_empty(),
            "{} panicked: {:?}",
            s.name,
            s.findings
        );
        assert!(
            s.executions > s.seeds as u64,
            "{} ran only its seeds",
            s.name
        );
        // The seeds are real inputs: the parser must accept some of them,
        // or the target is testing its error path only.
        assert!(s.accepted > 0, "{} accepted no input at all", s.name);
    }
}

#[test]
#[allow(clippy::unwrap_used)]
fn the_harness_catches_a_panic_and_saves_its_input() {
    use zeod::fuzzing::Target;
    fn fragile(data: &[u8]) -> bool {
        if data.first() == Some(&0xAB) {
            panic!("boom");
        }
        true
    }
    static FRAGILE: Target = Target {
        name: "fragile",
        run: fragile,
        about: "panics on a leading 0xAB",
    };
    let mut seeds = seeds::Seeds::new();
    seeds.insert("fragile", vec![vec![0xAB, 1, 2], vec![0, 1, 2]]);
    let crash_dir = std::env::temp_dir().join(format!("zeod-fuzz-fragile-{}", std::process::id()));
    let budget = Budget {
        total: Duration::from_millis(200),
        seed: 1,
        crash_dir: crash_dir.clone(),
    };
    let stats = fuzzing::run_all(&[&FRAGILE], &seeds, &budget, |_| {});
    let finding = &stats[0].findings[0];
    assert!(finding.message.contains("boom"), "{}", finding.message);
    let saved = std::fs::read(finding.saved.as_ref().unwrap()).unwrap();
    assert_eq!(saved.first(), Some(&0xAB));
    let _ = std::fs::remove_dir_all(&crash_dir);
}
