//! The server's built-in pack schedule: zeo.conf `<filestorage>` keys
//! `pack-schedule` (`daily HH:MM`, UTC, or an interval such as `24h`,
//! `90m`, `3600s`, `2d`) and `pack-days N` (keep N days of history, like
//! `zeopack -d N`). One background task per scheduled storage sleeps until
//! the next time, then packs on the blocking pool while the server keeps
//! serving, exactly as a `pack` RPC would.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::ids::Tid;
use crate::progress::Reporter;
use crate::storage::FileStorage;

const DAY: u64 = 86_400;

/// When to pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackSchedule {
    /// Every day at this UTC time, in seconds after midnight.
    Daily { seconds_after_midnight: u64 },
    /// Every interval, counted from the server's start.
    Every(Duration),
}

/// What is wrong with a `pack-schedule` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pack-schedule {value:?}: expected \"daily HH:MM\" (UTC) or an interval like \"24h\", \"90m\", \"2d\"")]
pub struct ScheduleError {
    pub value: String,
}

impl FromStr for PackSchedule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ScheduleError {
            value: text.to_owned(),
        };
        let text_l = text.trim().to_ascii_lowercase();
        if let Some(rest) = text_l.strip_prefix("daily") {
            let (h, m) = rest.trim().split_once(':').ok_or_else(bad)?;
            let h: u64 = h.trim().parse().map_err(|_| bad())?;
            let m: u64 = m.trim().parse().map_err(|_| bad())?;
            if h > 23 || m > 59 {
                return Err(bad());
            }
            return Ok(PackSchedule::Daily {
                seconds_after_midnight: h * 3600 + m * 60,
            });
        }
        let unit_at = text_l
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text_l.len());
        let (n, unit) = text_l.split_at(unit_at);
        let n: u64 = n.parse().map_err(|_| bad())?;
        let scale = match unit.trim() {
            "s" => 1,
            "m" => 60,
            "h" | "" => 3600,
            "d" => DAY,
            _ => return Err(bad()),
        };
        let seconds = n.checked_mul(scale).filter(|s| *s > 0).ok_or_else(bad)?;
        Ok(PackSchedule::Every(Duration::from_secs(seconds)))
    }
}

impl fmt::Display for PackSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackSchedule::Daily {
                seconds_after_midnight: s,
            } => write!(f, "daily {:02}:{:02} UTC", s / 3600, s % 3600 / 60),
            PackSchedule::Every(d) => write!(f, "every {}s", d.as_secs()),
        }
    }
}

impl PackSchedule {
    /// Seconds from `now` (Unix seconds) to the next pack; never zero, so
    /// a pack that ends within its own minute does not run twice.
    pub fn wait_from(&self, now: f64) -> Duration {
        match self {
            PackSchedule::Every(d) => *d,
            PackSchedule::Daily {
                seconds_after_midnight,
            } => {
                let now = now.max(0.0);
                let midnight = (now / DAY as f64).floor() * DAY as f64;
                let mut at = midnight + *seconds_after_midnight as f64;
                if at <= now {
                    at += DAY as f64;
                }
                Duration::from_secs_f64(at - now)
            }
        }
    }
}

/// A storage's schedule: when, and how much history to keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScheduledPack {
    pub schedule: PackSchedule,
    /// Keep this many days of history (`pack-days`, default 0).
    pub days: f64,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Called after each successful pack (the server tells its clients the
/// new size, as after a `pack` call).
pub type OnPacked = Box<dyn Fn() + Send + Sync>;

/// Packs `storage` on `plan` until `shutdown` is cancelled. A failed pack
/// (another pack running, disk full…) is logged and retried at the next
/// scheduled time. A pack already running when shutdown comes is waited
/// for by the caller's task tracker, as the blocking task cannot be
/// interrupted halfway.
pub async fn run(
    name: String,
    storage: Arc<FileStorage>,
    plan: ScheduledPack,
    gc: bool,
    shutdown: CancellationToken,
    on_packed: OnPacked,
) {
    info!(storage = %name, schedule = %plan.schedule, keep_days = plan.days, "pack schedule active");
    loop {
        let wait = plan.schedule.wait_from(unix_now());
        info!(storage = %name, in_seconds = wait.as_secs(), "next scheduled pack");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
        let pack_time = unix_now() - plan.days * DAY as f64;
        let tid = Tid::from_unix(pack_time);
        let before = storage.size();
        info!(storage = %name, pack_time = %tid.timestamp_string(), size = before, gc, "scheduled pack started");
        let started = Instant::now();
        let packing = storage.clone();
        let packed = tokio::task::spawn_blocking(move || {
            let _shown = Reporter::log(packing.pack_progress());
            packing.pack(tid, gc)
        });
        match packed.await {
            Ok(Ok(())) => {
                info!(
                    storage = %name,
                    before,
                    after = storage.size(),
                    seconds = started.elapsed().as_secs_f64(),
                    "scheduled pack finished"
                );
                on_packed();
            }
            Ok(Err(err)) => warn!(storage = %name, %err, "scheduled pack failed"),
            Err(err) => warn!(storage = %name, %err, "scheduled pack task failed"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_daily_and_intervals() {
        assert_eq!(
            "daily 03:30".parse::<PackSchedule>().unwrap(),
            PackSchedule::Daily {
                seconds_after_midnight: 3 * 3600 + 30 * 60
            }
        );
        assert_eq!(
            " Daily 0:05 ".parse::<PackSchedule>().unwrap(),
            PackSchedule::Daily {
                seconds_after_midnight: 300
            }
        );
        let every = |s: &str| s.parse::<PackSchedule>().unwrap();
        assert_eq!(every("24h"), PackSchedule::Every(Duration::from_secs(DAY)));
        assert_eq!(every("24"), PackSchedule::Every(Duration::from_secs(DAY)));
        assert_eq!(every("90m"), PackSchedule::Every(Duration::from_secs(5400)));
        assert_eq!(
            every("2d"),
            PackSchedule::Every(Duration::from_secs(2 * DAY))
        );
        assert_eq!(every("60s"), PackSchedule::Every(Duration::from_secs(60)));
        assert_eq!(every("2s"), PackSchedule::Every(Duration::from_secs(2)));
        for bad in [
            "daily 24:00",
            "daily 3",
            "daily 03:60",
            "weekly",
            "0s",
            "h",
            "-1h",
            "",
        ] {
            assert!(bad.parse::<PackSchedule>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn daily_waits_until_the_next_occurrence_in_utc() {
        let at_0330 = PackSchedule::Daily {
            seconds_after_midnight: 3 * 3600 + 30 * 60,
        };
        // 2023-11-14 22:13:20 UTC.
        let now = 1_700_000_000.0;
        let midnight = 1_699_920_000.0;
        // 03:30 today has passed: tomorrow's.
        let next = now + at_0330.wait_from(now).as_secs_f64();
        assert_eq!(next, midnight + DAY as f64 + 12_600.0);
        // Before 03:30: today's.
        let early = midnight + 3600.0;
        assert_eq!(at_0330.wait_from(early), Duration::from_secs(9000));
        // Exactly at the time (the pack just ran): a day later, not now.
        let on_time = midnight + 12_600.0;
        assert_eq!(at_0330.wait_from(on_time), Duration::from_secs(DAY));
    }

    #[test]
    fn interval_waits_the_interval() {
        let every = PackSchedule::Every(Duration::from_secs(3600));
        assert_eq!(every.wait_from(1_700_000_000.0), Duration::from_secs(3600));
    }
}
