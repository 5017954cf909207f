//! `zeod-fuzz`: runs zeod's fuzz targets (`zeod::fuzzing`) on stable Rust
//! for a time budget and prints executions and distinct inputs per target.
//! Exit status 1 if any input panicked (saved under `--crash-dir`; copy it
//! to `tests/fuzz_regressions/<target>/` once fixed), 3 on a hang.
//!
//! ```text
//! zeod-fuzz --seconds 60                  # CI: all targets, 60 s in total
//! zeod-fuzz --seconds 3600 --target datafs
//! zeod-fuzz --replay FILE --target pickle3
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use zeod::fuzzing::{self, seeds, Budget, Target, TARGETS};

#[derive(Parser)]
#[command(version, about = "Fuzz zeod's parsers (stable Rust, seeded mutation)")]
struct Args {
    /// Total time, split evenly among the targets.
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// Run only these targets (repeat); default: all.
    #[arg(long = "target", value_name = "NAME")]
    targets: Vec<String>,
    /// PRNG seed (default: from the clock; printed, so a run can be replayed).
    #[arg(long)]
    seed: Option<u64>,
    /// Where panicking inputs are saved.
    #[arg(long, default_value = "target/fuzz-crashes")]
    crash_dir: PathBuf,
    /// Extra seeds: files under DIR/<target>/.
    #[arg(long, value_name = "DIR")]
    corpus: Option<PathBuf>,
    /// Run one input through the targets and exit (a saved crash).
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,
    /// Also write the figures as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// List the targets and exit.
    #[arg(long)]
    list: bool,
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    if args.list {
        for t in TARGETS {
            println!("{:<8} {}", t.name, t.about);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let targets: Vec<&'static Target> = if args.targets.is_empty() {
        TARGETS.iter().collect()
    } else {
        let mut chosen = Vec::new();
        for name in &args.targets {
            match TARGETS.iter().find(|t| t.name == name) {
                Some(t) => chosen.push(t),
                None => bail!("no target {name:?} (see --list)"),
            }
        }
        chosen
    };
    if let Some(path) = &args.replay {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        for t in &targets {
            let accepted = (t.run)(&data);
            println!("{}: returned (accepted: {accepted})", t.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let here = std::env::current_dir().context("current directory")?;
    let mut sources = seeds::Sources::discover(&here);
    sources.corpus = args.corpus.clone();
    let seeds = seeds::load(&sources);
    if !args.seconds.is_finite() || args.seconds < 0.0 {
        bail!("--seconds must be a number >= 0");
    }
    let budget = Budget {
        total: Duration::from_secs_f64(args.seconds),
        seed,
        crash_dir: args.crash_dir.clone(),
    };
    println!(
        "zeod-fuzz: seed {seed}, {:.0} s over {} targets; captures {}, fixtures {}",
        args.seconds,
        targets.len(),
        shown(&sources.captures),
        shown(&sources.fixtures),
    );
    println!(
        "{:<8} {:>6} {:>11} {:>11} {:>9} {:>8} {:>8}",
        "target", "seeds", "executions", "distinct", "accepted", "exec/s", "panics"
    );
    let stats = fuzzing::run_all(&targets, &seeds, &budget, |s| {
        let rate = s.executions as f64 / s.elapsed.as_secs_f64().max(1e-9);
        println!(
            "{:<8} {:>6} {:>11} {:>11} {:>9} {:>8.0} {:>8}",
            s.name,
            s.seeds,
            s.executions,
            s.distinct,
            s.accepted,
            rate,
            s.findings.len()
        );
        for f in s.findings.iter().take(3) {
            println!(
                "  PANIC {}: {} (input: {})",
                f.target,
                f.message,
                f.saved
                    .as_ref()
                    .map_or("not saved".to_string(), |p| p.display().to_string())
            );
        }
    });
    let executions: u64 = stats.iter().map(|s| s.executions).sum();
    let distinct: u64 = stats.iter().map(|s| s.distinct).sum();
    let panics: usize = stats.iter().map(|s| s.findings.len()).sum();
    println!("total: {executions} executions, {distinct} distinct inputs, {panics} panics");
    if let Some(path) = &args.json {
        let rows: Vec<_> = stats
            .iter()
            .map(|s| {
                serde_json::json!({
                    "target": s.name,
                    "seeds": s.seeds,
                    "executions": s.executions,
                    "distinct": s.distinct,
                    "accepted": s.accepted,
                    "seconds": s.elapsed.as_secs_f64(),
                    "panics": s.findings.len(),
                })
            })
            .collect();
        let doc = serde_json::json!({"seed": seed, "targets": rows});
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if panics > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn shown(dir: &Option<PathBuf>) -> String {
    dir.as_ref()
        .map_or("(none)".to_string(), |d| d.display().to_string())
}
