//! Differential test against real Python: random (old, committed, new)
//! triples of every BTrees family and kind, and of `BTrees.Length`, made by
//! two ZODB connections (tests/conflict_support/btrees_cases.py). For each,
//! our `try_resolve` must agree with ZODB's `tryToResolveConflict`: the same
//! resolved state (compared unpickled, in Python), or both failing — with
//! the same BTreesConflictError reason when Python gives one.
//!
//! Needs ZEOD_PYTHON (the venv of tests/python/venv.sh; the python stage
//! sets it). ZEOD_CONFLICT_CASES (cases per family and kind, default 30)
//! and ZEOD_CONFLICT_SEED (default 1) vary the run.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use zeod::conflict::{try_resolve, Unresolved};
use zeod::ids::Oid;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/conflict_support/btrees_cases.py"
);

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

#[test]
fn resolution_matches_python_btrees() {
    let Ok(python) = std::env::var("ZEOD_PYTHON") else {
        // Written to the real stderr: libtest captures eprintln! of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED conflict_python: ZEOD_PYTHON is not set (bash tests/python/venv.sh) ***\n"
        );
        return;
    };
    let per_kind = env_or("ZEOD_CONFLICT_CASES", "30");
    let seed = env_or("ZEOD_CONFLICT_SEED", "1");
    let out = Command::new(&python)
        .args([SCRIPT, "generate", &per_kind, &seed])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "case generator failed");
    let cases: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut mismatches = Vec::new();
    let mut pairs = Vec::new();
    let mut identical = 0;
    // Equal states pickled differently (memo sharing): shown, not failed.
    let mut identical_misses = Vec::new();
    for case in &cases {
        let field = |k: &str| hex(case[k].as_str().unwrap());
        let oid = Oid::from_slice(&field("oid")).unwrap();
        let ours = try_resolve(oid, &field("old"), &field("committed"), &field("new"));
        let kind = format!(
            "{} {}",
            case["kind"].as_str().unwrap(),
            case["form"].as_str().unwrap()
        );
        let python = &case["reason"];
        let agree = match (case["resolved"].as_str(), &ours) {
            (Some(theirs), Ok(mine)) => {
                if hex(theirs) == *mine {
                    identical += 1;
                } else if identical_misses.len() < 3 {
                    identical_misses.push(format!(
                        "{}\n  zodb {theirs}\n  ours {}",
                        case["class"],
                        to_hex(mine)
                    ));
                }
                pairs.push((case, theirs.to_string(), to_hex(mine)));
                *outcomes.entry(format!("{kind} resolved")).or_default() += 1;
                true
            }
            (None, Err(Unresolved::BTrees(r))) => {
                *outcomes.entry(format!("{kind} reason {r}")).or_default() += 1;
                python.as_u64() == Some(u64::from(*r))
            }
            (None, Err(other)) => {
                *outcomes.entry(format!("{kind} {python}")).or_default() += 1;
                // Python raised something other than BTreesConflictError.
                python.is_string() && !matches!(other, Unresolved::NotResolvable(_))
            }
            _ => false,
        };
        if !agree {
            mismatches.push(format!(
                "{} {kind}: python {} / {python}, ours {ours:?}\n  old {}\n  committed {}\n  new {}",
                case["class"],
                if case["resolved"].is_string() { "resolved" } else { "failed" },
                case["old"],
                case["committed"],
                case["new"],
            ));
        }
    }

    // Resolved states are compared by Python, unpickled.
    let mut child = Command::new(&python)
        .args([SCRIPT, "compare"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::new();
    for (_, a, b) in &pairs {
        input.push_str(&serde_json::json!({"a": a, "b": b}).to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let verdicts = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let verdicts = String::from_utf8(verdicts.stdout).unwrap();
    let verdicts: Vec<&str> = verdicts.lines().collect();
    assert_eq!(verdicts.len(), pairs.len(), "compare answered every pair");
    for ((case, theirs, mine), verdict) in pairs.iter().zip(&verdicts) {
        if *verdict != "same" {
            mismatches.push(format!(
                "{} {}: resolved states differ ({verdict})\n  python {theirs}\n  ours   {mine}",
                case["class"], case["kind"]
            ));
        }
    }

    eprintln!(
        "conflict_python: {} cases (seed {seed}), {} resolved ({identical} byte-identical to ZODB's re-pickle)",
        cases.len(),
        pairs.len()
    );
    for miss in &identical_misses {
        eprintln!("  not byte-identical: {miss}");
    }
    for (outcome, n) in &outcomes {
        eprintln!("  {outcome}: {n}");
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} cases disagree with Python:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
    // The generator must exercise both outcomes and many reasons.
    assert!(pairs.len() > 100, "too few resolved cases");
    let reasons = outcomes.keys().filter(|k| k.contains("reason")).count();
    assert!(
        reasons > 10,
        "too few distinct failure reasons: {outcomes:?}"
    );
}
