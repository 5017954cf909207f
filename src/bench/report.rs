//! The figures of a benchmark phase and how they are shown: a table for
//! people, JSON for scripts. CPU times come from `getrusage` (this
//! process) and `/proc/PID/stat` (the server, when its pid is given).

use std::time::Duration;

use serde_json::json;

use super::workload::Tally;

/// One row of the report.
pub struct PhaseReport {
    pub name: String,
    pub connections: usize,
    pub pipeline: usize,
    pub objects_per_txn: Option<usize>,
    pub tally: Tally,
    pub elapsed: Duration,
    /// CPU seconds this process used during the phase.
    pub client_cpu: f64,
    /// CPU seconds the server used, if its pid was given.
    pub server_cpu: Option<f64>,
    /// Operations the CPU times are divided by (a mixed phase's loads and
    /// commits share one figure).
    pub cpu_ops: u64,
}

impl PhaseReport {
    pub fn ops_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.tally.ops as f64 / secs
        } else {
            0.0
        }
    }

    fn quantile_us(&self, q: f64) -> u64 {
        if self.tally.ops == 0 {
            0
        } else {
            self.tally.latency.value_at_quantile(q)
        }
    }

    fn per_op_us(&self, cpu: f64) -> f64 {
        if self.cpu_ops == 0 {
            0.0
        } else {
            cpu * 1e6 / self.cpu_ops as f64
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "phase": self.name,
            "connections": self.connections,
            "pipeline": self.pipeline,
            "objects_per_txn": self.objects_per_txn,
            "ops": self.tally.ops,
            "errors": self.tally.errors,
            "first_error": self.tally.first_error,
            "seconds": self.elapsed.as_secs_f64(),
            "ops_per_sec": self.ops_per_sec(),
            "latency_us": {
                "p50": self.quantile_us(0.50),
                "p90": self.quantile_us(0.90),
                "p99": self.quantile_us(0.99),
                "max": if self.tally.ops == 0 { 0 } else { self.tally.latency.max() },
                "mean": if self.tally.ops == 0 { 0.0 } else { self.tally.latency.mean() },
            },
            "client_cpu_s": self.client_cpu,
            "client_cpu_us_per_op": self.per_op_us(self.client_cpu),
            "server_cpu_s": self.server_cpu,
            "server_cpu_us_per_op": self.server_cpu.map(|s| self.per_op_us(s)),
        })
    }
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// The human table.
pub fn table(reports: &[PhaseReport]) -> String {
    let mut out = format!(
        "{:<14} {:>5} {:>4} {:>9} {:>10} {:>8} {:>8} {:>8} {:>9} {:>6} {:>10} {:>10}\n",
        "phase",
        "conns",
        "pipe",
        "ops",
        "ops/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "errors",
        "cli us/op",
        "srv us/op",
    );
    for r in reports {
        let name = match r.objects_per_txn {
            Some(k) => format!("{} x{k}", r.name),
            None => r.name.clone(),
        };
        let server = r
            .server_cpu
            .map(|s| format!("{:.1}", r.per_op_us(s)))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<14} {:>5} {:>4} {:>9} {:>10.0} {:>8} {:>8} {:>8} {:>9} {:>6} {:>10.1} {:>10}\n",
            name,
            r.connections,
            r.pipeline,
            r.tally.ops,
            r.ops_per_sec(),
            ms(r.quantile_us(0.50)),
            ms(r.quantile_us(0.90)),
            ms(r.quantile_us(0.99)),
            ms(if r.tally.ops == 0 {
                0
            } else {
                r.tally.latency.max()
            }),
            r.tally.errors,
            r.per_op_us(r.client_cpu),
            server,
        ));
    }
    for r in reports {
        if let Some(err) = &r.tally.first_error {
            out.push_str(&format!("{}: first error: {err}\n", r.name));
        }
    }
    out
}

/// CPU seconds (user + system) this process has used so far.
pub fn own_cpu() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => {
            let secs = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            secs(usage.user_time()) + secs(usage.system_time())
        }
        Err(_) => 0.0,
    }
}

/// CPU seconds (utime + stime) process `pid` has used so far, from
/// `/proc/PID/stat`. Linux reports them in USER_HZ ticks, 100 per second
/// on every architecture we run on.
pub fn process_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields resume after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the full line are 12 and 13 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_is_visible_in_proc() {
        let mine = process_cpu(std::process::id()).unwrap();
        assert!(mine >= 0.0);
        // Burn a little CPU; both views must move forward together.
        let before = own_cpu();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(own_cpu() > before);
    }
}
