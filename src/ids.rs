//! Object ids and transaction ids: 8-byte big-endian values, never confused
//! with each other. A `Tid` is also a ZODB `TimeStamp`, so the conversions to
//! and from wall-clock time live here too.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// An object id: 8 bytes, compared as a big-endian unsigned number.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Oid(pub [u8; 8]);

/// A transaction id (a ZODB TimeStamp): 8 bytes, strictly increasing in a storage.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tid(pub [u8; 8]);

macro_rules! id_impl {
    ($t:ident) => {
        impl $t {
            pub const ZERO: $t = $t([0; 8]);

            pub fn from_u64(n: u64) -> $t {
                $t(n.to_be_bytes())
            }

            pub fn as_u64(self) -> u64 {
                u64::from_be_bytes(self.0)
            }

            pub fn as_bytes(&self) -> &[u8; 8] {
                &self.0
            }

            /// Accepts exactly 8 bytes; anything else is not an id.
            pub fn from_slice(b: &[u8]) -> Option<$t> {
                <[u8; 8]>::try_from(b).ok().map($t)
            }

            /// ZODB's `oid_repr`/`tid_repr`: `0x` + hex with leading zero
            /// pairs stripped (`0x00` for zero). Used in blob file names.
            pub fn repr(self) -> String {
                let hex = format!("{:016x}", self.as_u64());
                let trimmed = hex.trim_start_matches("00");
                if trimmed.is_empty() {
                    "0x00".to_string()
                } else {
                    format!("0x{trimmed}")
                }
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:016x})", stringify!($t), self.as_u64())
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:016x}", self.as_u64())
            }
        }
    };
}

id_impl!(Oid);
id_impl!(Tid);

impl Tid {
    /// The largest tid (`7fff…ff`): `loadBefore(oid, MAX)` loads the current revision.
    pub const MAX: Tid = Tid([0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

    /// The TimeStamp of a UTC wall-clock instant.
    pub fn from_unix(secs: f64) -> Tid {
        let secs = secs.max(0.0);
        let whole = secs.floor() as i64;
        let (y, mo, d) = civil_from_days(whole.div_euclid(86_400));
        let sod = whole.rem_euclid(86_400);
        let (h, mi) = (sod / 3600, (sod % 3600) / 60);
        let s = (sod % 60) as f64 + (secs - secs.floor());
        let a = ((((y - 1900) * 12 + mo - 1) * 31 + d - 1) * 24 + h) * 60 + mi;
        let b = (s * (4_294_967_296.0 / 60.0)) as u64;
        Tid::from_u64(((a as u64) << 32) | b.min(0xffff_ffff))
    }

    /// The TimeStamp of now.
    pub fn now() -> Tid {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Tid::from_unix(secs)
    }

    /// Seconds since the Unix epoch (ZODB's `TimeStamp.timeTime()`).
    pub fn to_unix(self) -> f64 {
        let n = self.as_u64();
        let a = (n >> 32) as i64;
        let b = (n & 0xffff_ffff) as f64;
        let minute = a % 60;
        let hour = a / 60 % 24;
        let day = a / 1440 % 31 + 1;
        let month = a / 44_640 % 12 + 1;
        let year = a / 535_680 + 1900;
        let days = days_from_civil(year, month, day);
        (days * 86_400 + hour * 3600 + minute * 60) as f64 + b * 60.0 / 4_294_967_296.0
    }

    /// ZODB's `TimeStamp.laterThan`: `self` if it is after `other`, else the
    /// tick after `other`. Commits use it so tids increase even when the
    /// clock goes backwards. The carry into the next minute is the C
    /// implementation's; the month-length corner it handles is unreachable
    /// with real clocks, so a plain increment of the minute suffices.
    pub fn later_than(self, other: Tid) -> Tid {
        if self > other {
            return self;
        }
        let n = other.as_u64();
        if n & 0xffff_ffff == 0xffff_ffff {
            Tid::from_u64(((n >> 32) + 1) << 32)
        } else {
            Tid::from_u64(n + 1)
        }
    }

    /// `str(TimeStamp)`: `YYYY-MM-DD HH:MM:SS.ffffff` (UTC).
    pub fn timestamp_string(self) -> String {
        let n = self.as_u64();
        let a = (n >> 32) as i64;
        let secs = (n & 0xffff_ffff) as f64 * 60.0 / 4_294_967_296.0;
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:09.6}",
            a / 535_680 + 1900,
            a / 44_640 % 12 + 1,
            a / 1440 % 31 + 1,
            a / 60 % 24,
            a % 60,
            secs
        )
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_matches_zodb_fixture() {
        // 2024-01-01 00:00:01 UTC is the first tid of the fixtures.
        let tid = Tid::from_unix(1_704_067_201.0);
        assert_eq!(tid, Tid::from_u64(0x03f5_8e00_0444_4444));
        assert_eq!(tid.timestamp_string(), "2024-01-01 00:00:01.000000");
        assert!((tid.to_unix() - 1_704_067_201.0).abs() < 1e-6);
    }

    #[test]
    fn later_than_carries_into_next_minute() {
        let t = Tid::from_u64(0x0000_0001_ffff_ffff);
        assert_eq!(
            Tid::ZERO.later_than(t),
            Tid::from_u64(0x0000_0002_0000_0000)
        );
        let later = Tid::from_u64(0x0000_0003_0000_0000);
        assert_eq!(later.later_than(t), later);
    }

    #[test]
    fn repr_strips_leading_zero_pairs() {
        assert_eq!(Oid::ZERO.repr(), "0x00");
        assert_eq!(Oid::from_u64(1).repr(), "0x01");
        assert_eq!(
            Tid::from_u64(0x03f5_8e00_0ccc_cccc).repr(),
            "0x03f58e000ccccccc"
        );
    }
}
