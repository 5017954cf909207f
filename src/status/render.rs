//! The human summary of `zeod status`: one block per storage, each line a
//! label and what an operator asks first (how big, how busy, stuck?).
//!
//! ```text
//! zeod status of 127.0.0.1:8100: ZEO 5 (pickle), up since Wed Nov 25 15:02:11 2026
//!
//! storage "1"  /var/lib/zeo/Data.fs
//!   size         12.3 MiB, 10234 objects
//!   last commit  2026-11-25 15:20:01 UTC (12s ago)
//!   clients      3 connected, 1 in a transaction
//!   commit lock  held for 0.4s, 2 votes waiting
//!   since start  1234 loads, 56 stores, 12 commits, 1 abort, 2 conflicts (3 resolved)
//!   pack         running: copy, 42% (1m 3s so far, about 1m 27s left)
//! ```
//!
//! The `pack` line is there only while a pack runs.

use std::fmt::Write as _;

use serde_json::Value as Json;

use super::{PackSummary, StorageSummary, Summary};
use crate::ids::Tid;

/// `now` is the current unix time (for "ago"); `width` truncates long lines.
pub fn render(summary: &Summary, now: f64, width: usize) -> String {
    let protocol = match summary.protocol.as_str() {
        "M5" => "ZEO 5 (msgpack)",
        "Z5" => "ZEO 5 (pickle)",
        other => other,
    };
    let start = summary
        .storages
        .first()
        .and_then(|s| s.status.get("start"))
        .and_then(Json::as_str);
    let mut out = format!("zeod status of {}: {protocol}", summary.address);
    if let Some(start) = start {
        let _ = write!(out, ", up since {start}");
    }
    out.push('\n');
    if summary.storages.is_empty() {
        out.push_str("\nno storages\n");
    }
    for storage in &summary.storages {
        out.push('\n');
        for line in storage_lines(storage, now) {
            out.push_str(&clip(&line, width.max(40)));
            out.push('\n');
        }
    }
    out
}

fn storage_lines(s: &StorageSummary, now: f64) -> Vec<String> {
    let int = |key: &str| s.status.get(key).and_then(Json::as_u64).unwrap_or(0);
    let mut lines = vec![match &s.path {
        Some(path) => format!("storage {:?}  {path}", s.name),
        None => format!("storage {:?}", s.name),
    }];
    lines.push(match (s.size, s.objects, &s.info_error) {
        (Some(size), Some(objects), _) => {
            format!(
                "  size         {}, {}",
                bytes(size),
                plural(objects, "object")
            )
        }
        (_, _, Some(err)) => format!("  size         unknown ({err})"),
        _ => "  size         unknown".to_string(),
    });
    lines.push(format!("  last commit  {}", last_commit(s, now)));
    let active = int("active_txns");
    lines.push(format!(
        "  clients      {} connected, {active} in a transaction",
        int("connections")
    ));
    let waiting = int("waiting");
    let lock = match s.status.get("lock_time").and_then(Json::as_f64) {
        Some(since) => format!("held for {}", seconds((now - since).max(0.0))),
        None => "free".to_string(),
    };
    lines.push(match waiting {
        0 => format!("  commit lock  {lock}"),
        1 => format!("  commit lock  {lock}, 1 vote waiting"),
        n => format!("  commit lock  {lock}, {n} votes waiting"),
    });
    lines.push(format!(
        "  since start  {}, {}, {}, {}, {} ({} resolved)",
        plural(int("loads"), "load"),
        plural(int("stores"), "store"),
        plural(int("commits"), "commit"),
        plural(int("aborts"), "abort"),
        plural(int("conflicts"), "conflict"),
        int("conflicts_resolved"),
    ));
    if let Some(pack) = &s.pack {
        lines.push(format!("  pack         {}", pack_line(pack)));
    }
    lines
}

fn pack_line(pack: &PackSummary) -> String {
    let fraction = pack.fraction();
    let mut line = format!(
        "running: {}, {:.0}% ({} so far",
        pack.phase,
        fraction * 100.0,
        seconds(pack.elapsed_seconds.max(0.0))
    );
    // At the average rate so far, as the progress log lines estimate.
    if fraction > 0.0 && fraction < 1.0 {
        let left = pack.elapsed_seconds * (1.0 - fraction) / fraction;
        let _ = write!(line, ", about {} left", seconds(left));
    }
    line.push(')');
    line
}

fn last_commit(s: &StorageSummary, now: f64) -> String {
    let Some(hex) = s.status.get("last-transaction").and_then(Json::as_str) else {
        return "unknown".to_string();
    };
    let Ok(n) = u64::from_str_radix(hex, 16) else {
        return format!("tid {hex}");
    };
    if n == 0 {
        return "none (empty storage)".to_string();
    }
    let tid = Tid::from_u64(n);
    let stamp = tid.timestamp_string();
    let ago = seconds((now - tid.to_unix()).max(0.0));
    format!("{} UTC ({ago} ago)", stamp.get(..19).unwrap_or(&stamp))
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// `512 B`, `12.3 MiB`, `1.02 GiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let digits = if value < 10.0 { 2 } else { 1 };
    format!("{value:.digits$} {}", UNITS[unit])
}

/// `0.4s`, `12s`, `5m 3s`, `2h 10m`, `3d 4h`.
fn seconds(secs: f64) -> String {
    if secs < 10.0 {
        return format!("{secs:.1}s");
    }
    let s = secs as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn clip(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        return line.to_string();
    }
    let mut clipped: String = line.chars().take(width.saturating_sub(1)).collect();
    clipped.push('…');
    clipped
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn summary(status: Json) -> Summary {
        Summary {
            address: "127.0.0.1:8100".into(),
            protocol: "Z5".into(),
            storages: vec![StorageSummary {
                name: "1".into(),
                status: status.as_object().unwrap().clone(),
                size: Some(12_900_000),
                objects: Some(10_234),
                path: Some("/var/lib/zeo/Data.fs".into()),
                info_error: None,
                pack: None,
            }],
        }
    }

    #[test]
    fn renders_a_busy_storage() {
        let commit = Tid::from_unix(1_795_600_000.0);
        let text = render(
            &summary(serde_json::json!({
                "connections": 3, "loads": 1234, "stores": 56, "commits": 12,
                "aborts": 1, "active_txns": 1, "lock_time": 1_795_600_011.6,
                "conflicts": 2, "conflicts_resolved": 3,
                "start": "Wed Nov 25 15:02:11 2026", "waiting": 2,
                "timeout-thread-is-alive": "stub",
                "last-transaction": commit.to_string(),
            })),
            1_795_600_012.0,
            100,
        );
        let expected = "\
zeod status of 127.0.0.1:8100: ZEO 5 (pickle), up since Wed Nov 25 15:02:11 2026

storage \"1\"  /var/lib/zeo/Data.fs
  size         12.3 MiB, 10234 objects
  last commit  2026-11-25 09:46:40 UTC (12s ago)
  clients      3 connected, 1 in a transaction
  commit lock  held for 0.4s, 2 votes waiting
  since start  1234 loads, 56 stores, 12 commits, 1 abort, 2 conflicts (3 resolved)
";
        assert_eq!(text, expected);
    }

    #[test]
    fn renders_an_idle_empty_storage() {
        let text = render(
            &summary(serde_json::json!({
                "connections": 0, "lock_time": null, "waiting": 0,
                "last-transaction": "0000000000000000",
            })),
            0.0,
            100,
        );
        assert!(text.contains("  commit lock  free\n"), "{text}");
        assert!(
            text.contains("  last commit  none (empty storage)\n"),
            "{text}"
        );
    }

    #[test]
    fn shows_a_running_pack_only_while_it_runs() {
        let mut s = summary(serde_json::json!({"connections": 0}));
        assert!(!render(&s, 0.0, 100).contains("pack"));
        s.storages[0].pack = Some(PackSummary {
            phase: "copy".into(),
            done: 42,
            total: 100,
            elapsed_seconds: 63.0,
        });
        let text = render(&s, 0.0, 100);
        assert!(
            text.ends_with("  pack         running: copy, 42% (1m 3s so far, about 1m 27s left)\n"),
            "{text}"
        );
    }

    #[test]
    fn formats_sizes_and_durations() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(5 << 30), "5.00 GiB");
        assert_eq!(seconds(0.25), "0.2s");
        assert_eq!(seconds(303.0), "5m 3s");
        assert_eq!(seconds(90_000.0), "1d 1h");
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}
