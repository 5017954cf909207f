//! The fuzz loop: each target gets its share of the time budget; its seeds
//! run first, unmodified, then mutants of seeds and of earlier mutants the
//! parser accepted (the only feedback there is without coverage
//! instrumentation: it walks mutations past the first checks). A panic is
//! caught, its input saved; an execution that takes longer than
//! [`HANG_LIMIT`] is a hang, saved by a watchdog that then ends the
//! process.

use std::cell::RefCell;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::mutate::{self, Rng};
use super::seeds::Seeds;
use super::targets::Target;

/// One execution longer than this is a hang.
pub const HANG_LIMIT: Duration = Duration::from_secs(20);
/// Accepted mutants kept for further mutation, per target.
const POOL: usize = 512;
/// Distinct inputs are counted up to this many per target.
const DISTINCT_CAP: usize = 4 << 20;
/// Panicking inputs saved per target (more are counted, not saved).
const FINDINGS_SAVED: usize = 20;

/// How long to run, from which seed.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Split evenly among the targets run.
    pub total: Duration,
    pub seed: u64,
    /// Where panicking and hanging inputs are written.
    pub crash_dir: PathBuf,
}

/// What one target did.
#[derive(Debug, Clone, Default)]
pub struct TargetStats {
    pub name: &'static str,
    pub seeds: usize,
    pub executions: u64,
    /// Distinct inputs among the executions (by hash).
    pub distinct: u64,
    /// Inputs the parser accepted (the rest were refused with an error).
    pub accepted: u64,
    pub elapsed: Duration,
    pub findings: Vec<Finding>,
}

/// An input that made a target panic.
#[derive(Debug, Clone)]
pub struct Finding {
    pub target: &'static str,
    pub message: String,
    pub saved: Option<PathBuf>,
}

thread_local! {
    /// Set while this thread runs a target: the panic hook stores the
    /// message here instead of printing it.
    static CAPTURED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A process-wide hook that captures panics of fuzzing threads and hands
/// every other panic to the hook that was there before.
fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let captured = CAPTURED.with(|c| match c.borrow_mut().as_mut() {
                Some(slot) => {
                    *slot = info.to_string();
                    true
                }
                None => false,
            });
            if !captured {
                previous(info);
            }
        }));
    });
}

/// The execution in progress, for the watchdog.
struct Current {
    target: &'static str,
    input: Vec<u8>,
    started: Option<Instant>,
}

/// Runs `targets` within `budget`; `progress` gets each target's figures
/// as it finishes.
pub fn run_all(
    targets: &[&'static Target],
    seeds: &Seeds,
    budget: &Budget,
    mut progress: impl FnMut(&TargetStats),
) -> Vec<TargetStats> {
    let current = Arc::new(Mutex::new(Current {
        target: "",
        input: Vec::new(),
        started: None,
    }));
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = spawn_watchdog(current.clone(), done.clone(), budget.crash_dir.clone());
    install_hook();
    let share = budget.total / targets.len().max(1) as u32;
    let mut all = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let empty = Vec::new();
        let list = seeds.get(target.name).unwrap_or(&empty);
        let mut rng = Rng::new(budget.seed ^ (i as u64).wrapping_mul(0x9e37_79b9));
        CAPTURED.with(|c| *c.borrow_mut() = Some(String::new()));
        let stats = fuzz_one(target, list, share, &mut rng, budget, &current);
        CAPTURED.with(|c| *c.borrow_mut() = None);
        progress(&stats);
        all.push(stats);
    }
    done.store(true, Ordering::Release);
    let _ = watchdog.join();
    all
}

fn fuzz_one(
    target: &'static Target,
    seeds: &[Vec<u8>],
    share: Duration,
    rng: &mut Rng,
    budget: &Budget,
    current: &Mutex<Current>,
) -> TargetStats {
    let began = Instant::now();
    let mut stats = TargetStats {
        name: target.name,
        seeds: seeds.len(),
        ..TargetStats::default()
    };
    let mut seen: HashSet<u64> = HashSet::new();
    let mut pool: Vec<Vec<u8>> = Vec::new();
    let fallback = [Vec::new()];
    let seeds = if seeds.is_empty() {
        &fallback[..]
    } else {
        seeds
    };
    let mut queue = seeds.iter().cloned();
    loop {
        let input = match queue.next() {
            Some(seed) => seed,
            None => {
                if began.elapsed() >= share {
                    break;
                }
                let from_pool = !pool.is_empty() && rng.chance(2);
                let base = if from_pool {
                    &pool[rng.below(pool.len())]
                } else {
                    &seeds[rng.below(seeds.len())]
                };
                let other = &seeds[rng.below(seeds.len())];
                mutate::mutate(rng, base, other, target.name)
            }
        };
        let hash = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            input.hash(&mut h);
            h.finish()
        };
        if seen.len() < DISTINCT_CAP && seen.insert(hash) {
            stats.distinct += 1;
        }
        {
            let mut now = current.lock();
            now.target = target.name;
            now.input.clear();
            now.input.extend_from_slice(&input);
            now.started = Some(Instant::now());
        }
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| (target.run)(&input)));
        current.lock().started = None;
        stats.executions += 1;
        match outcome {
            Ok(true) => {
                stats.accepted += 1;
                if pool.len() < POOL {
                    pool.push(input);
                } else {
                    let slot = rng.below(POOL);
                    pool[slot] = input;
                }
            }
            Ok(false) => {}
            Err(_) => {
                let text = CAPTURED
                    .with(|c| c.borrow_mut().as_mut().map(std::mem::take))
                    .unwrap_or_default();
                let saved = (stats.findings.len() < FINDINGS_SAVED)
                    .then(|| save(&budget.crash_dir, target.name, "crash", hash, &input))
                    .flatten();
                stats.findings.push(Finding {
                    target: target.name,
                    message: text,
                    saved,
                });
            }
        }
    }
    stats.elapsed = began.elapsed();
    stats
}

fn save(dir: &Path, target: &str, kind: &str, hash: u64, input: &[u8]) -> Option<PathBuf> {
    std::fs::create_dir_all(dir).ok()?;
    let path = dir.join(format!("{target}-{kind}-{hash:016x}"));
    std::fs::write(&path, input).ok()?;
    Some(path)
}

fn spawn_watchdog(
    current: Arc<Mutex<Current>>,
    done: Arc<AtomicBool>,
    crash_dir: PathBuf,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !done.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(200));
            let now = current.lock();
            if now.started.is_some_and(|t| t.elapsed() > HANG_LIMIT) {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                now.input.hash(&mut h);
                let saved = save(&crash_dir, now.target, "hang", h.finish(), &now.input);
                eprintln!(
                    "HANG: target {} ran one input for more than {HANG_LIMIT:?}; input saved to {}",
                    now.target,
                    saved.map_or("(nowhere)".to_string(), |p| p.display().to_string())
                );
                std::process::exit(3);
            }
        }
    })
}
